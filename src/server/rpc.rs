//! `POST /rpc`: the request envelope (protocol §3), the mapping of the
//! kit's errors to EventoDB's codes, statuses and messages, and the answer.

use serde_json::{json, Value};

use super::http::{Response, JSON};
use super::router::{error_body, Caller};
use super::Shared;
use crate::error::Error;
use crate::wire::error::ErrorBody;
use crate::wire::json::to_go_vec;

/// An RPC failure: the envelope and its HTTP status.
#[derive(Debug)]
pub(crate) struct RpcError {
    pub(crate) status: u16,
    pub(crate) body: ErrorBody,
}

/// A method's result.
pub(crate) type RpcResult = Result<Value, RpcError>;

/// EventoDB's code → status table (§3).
fn status_for(code: &str) -> u16 {
    match code {
        "INVALID_REQUEST" => 400,
        "AUTH_REQUIRED" | "AUTH_INVALID_TOKEN" => 401,
        "AUTH_UNAUTHORIZED" => 403,
        "METHOD_NOT_FOUND" | "STREAM_NOT_FOUND" | "NAMESPACE_NOT_FOUND" => 404,
        "STREAM_VERSION_CONFLICT" | "NAMESPACE_EXISTS" => 409,
        _ => 500,
    }
}

impl RpcError {
    pub(crate) fn new(code: &str, message: impl Into<String>) -> Self {
        RpcError {
            status: status_for(code),
            body: ErrorBody::new(code, message),
        }
    }

    /// 400 `INVALID_REQUEST`.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new("INVALID_REQUEST", message)
    }

    /// 500 `BACKEND_ERROR` `Failed to <op>: <cause>`.
    pub(crate) fn backend(op: &str, cause: impl std::fmt::Display) -> Self {
        Self::new("BACKEND_ERROR", format!("Failed to {op}: {cause}"))
    }

    /// The answer EventoDB gives for what the embedded store reported.
    pub(crate) fn from_kit(e: Error, op: &str) -> Self {
        match e {
            Error::InvalidInput(m) => Self::invalid(m),
            Error::Conflict {
                expected, actual, ..
            } => {
                let actual = actual.unwrap_or(-1);
                RpcError {
                    status: 409,
                    body: ErrorBody::new(
                        "STREAM_VERSION_CONFLICT",
                        format!("Expected version {expected}, stream is at version {actual}"),
                    )
                    .with_details(json!({ "actual": actual, "expected": expected })),
                }
            }
            Error::DuplicateId { .. } => Self::backend(
                op,
                "failed to insert message: constraint failed: UNIQUE constraint failed: messages.id (2067)",
            ),
            Error::NotFound(m) => Self::new("NAMESPACE_NOT_FOUND", m),
            Error::Store { code, message, .. } => Self::new(&code, message),
            Error::Db(e) => Self::backend(op, e),
            e @ Error::Undecodable { .. } => RpcError {
                status: 500,
                body: crate::wire::undecodable::error_body(&e)
                    .expect("an undecodable message's error body"),
            },
            other => Self::backend(op, other),
        }
    }
}

/// Answers one `/rpc` request body.
pub(crate) fn handle(shared: &Shared, caller: &Caller, body: &[u8]) -> Response {
    let mut method = "none";
    let result = envelope(body).and_then(|items| {
        let (name, args) = method_and_args(&items)?;
        method = super::metrics::rpc_method_label(name);
        super::methods::dispatch(shared, caller, name, args)
    });
    let response = respond(result);
    shared.metrics.rpc_call(method, response.status);
    response
}

/// The answer to a call: its result as JSON with a trailing newline, or
/// its error envelope.
pub(crate) fn respond(result: RpcResult) -> Response {
    match result {
        Ok(value) => {
            let mut bytes = to_go_vec(&value);
            bytes.push(b'\n');
            Response::new(200, JSON, bytes)
        }
        Err(e) => error_body(e.status, e.body),
    }
}

/// The request array of a body, as EventoDB reads it (`null` is empty).
pub(crate) fn envelope(body: &[u8]) -> Result<Vec<Value>, RpcError> {
    // Go replaces invalid UTF-8 with U+FFFD; so does this.
    let text = String::from_utf8_lossy(body);
    let parsed = super::decode::parse(&text).map_err(malformed)?;
    match parsed {
        Value::Array(items) => Ok(items),
        Value::Null => Ok(Vec::new()),
        other => {
            let kind = match other {
                Value::Object(_) => "object",
                Value::String(_) => "string",
                Value::Number(_) => "number",
                _ => "bool",
            };
            Err(malformed(format!(
                "json: cannot unmarshal {kind} into Go value of type []interface {{}}"
            )))
        }
    }
}

/// The method name and its arguments.
pub(crate) fn method_and_args(items: &[Value]) -> Result<(&str, &[Value]), RpcError> {
    let Some((first, args)) = items.split_first() else {
        return Err(RpcError::invalid("Missing method name"));
    };
    let Some(name) = first.as_str() else {
        return Err(RpcError::invalid("Method name must be a string"));
    };
    Ok((name, args))
}

fn malformed(detail: String) -> RpcError {
    RpcError {
        status: 400,
        body: ErrorBody::new("INVALID_REQUEST", "Malformed JSON request")
            .with_details(json!({ "error": detail })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_codes() {
        assert_eq!(RpcError::new("NAMESPACE_EXISTS", "x").status, 409);
        assert_eq!(RpcError::new("METHOD_NOT_FOUND", "x").status, 404);
        assert_eq!(RpcError::new("WHATEVER", "x").status, 500);
        let dup = RpcError::from_kit(Error::DuplicateId { id: "i".into() }, "write message");
        assert_eq!(
            dup.body.message,
            "Failed to write message: failed to insert message: constraint failed: UNIQUE constraint failed: messages.id (2067)"
        );
        let conflict = RpcError::from_kit(
            Error::Conflict {
                stream: "s".into(),
                expected: 5,
                actual: Some(1),
            },
            "write message",
        );
        assert_eq!(
            conflict.body.message,
            "Expected version 5, stream is at version 1"
        );
    }
}
