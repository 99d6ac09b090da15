//! Routing (exact paths, as EventoDB) and authentication (protocol §2.2).

use serde_json::json;

use super::http::{Request, Response, JSON};
use super::transport::Transport;
use super::Shared;
use crate::namespace::TokenCheck;
use crate::store::embedded::DEFAULT_NAMESPACE;
use crate::token::Token;
use crate::wire::error::ErrorBody;

/// What a handler did with the request.
pub(crate) enum Outcome {
    /// Send this response.
    Respond(Response),
    /// The handler wrote a streamed response itself; close the connection.
    Streamed,
}

/// The namespace a request runs in.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) namespace: String,
    /// Whether the namespace is registered (test mode lets unknown ones in).
    pub(crate) exists: bool,
}

/// Routes one request.
pub(crate) fn route(shared: &Shared, request: Request, out: &mut Transport) -> Outcome {
    match request.path.as_str() {
        "/health" => Outcome::Respond(Response::new(200, JSON, br#"{"status":"ok"}"#.to_vec())),
        "/version" => Outcome::Respond(Response::new(
            200,
            JSON,
            crate::wire::json::to_go_vec(&json!({ "version": shared.version })),
        )),
        "/rpc" => Outcome::Respond(match authenticate(shared, &request) {
            Err(denied) => denied,
            Ok(_) if request.method != "POST" => {
                error(405, "INVALID_REQUEST", "Only POST method allowed")
            }
            Ok(caller) => super::rpc::handle(shared, &caller, &request.body),
        }),
        "/subscribe" => match authenticate(shared, &request) {
            Err(denied) => Outcome::Respond(denied),
            Ok(caller) => super::subscribe::handle(shared, &caller, &request, out),
        },
        "/import" => Outcome::Respond(match authenticate(shared, &request) {
            Err(denied) => denied,
            Ok(caller) => super::import::handle(shared, &caller, &request),
        }),
        "/metrics" => Outcome::Respond(metrics(shared, &request)),
        _ => Outcome::Respond(Response::new(
            404,
            JSON,
            ErrorBody::new("NOT_FOUND", "Endpoint not found").to_go_json(),
        )),
    }
}

/// `GET /metrics` (not an EventoDB endpoint): the server's figures, for the
/// `default` namespace's token unless public.
fn metrics(shared: &Shared, request: &Request) -> Response {
    if !shared.public_metrics {
        match authenticate(shared, request) {
            Err(denied) => return denied,
            Ok(caller) if caller.namespace != DEFAULT_NAMESPACE && !shared.test_mode => {
                return error_body(
                    403,
                    ErrorBody::new(
                        "AUTH_UNAUTHORIZED",
                        "Metrics need the token of the default namespace",
                    )
                    .with_details(json!({ "namespace": caller.namespace })),
                )
            }
            Ok(_) => {}
        }
    }
    if request.method != "GET" && request.method != "HEAD" {
        return error(405, "INVALID_REQUEST", "Only GET method allowed");
    }
    Response::new(
        200,
        crate::metrics::PROMETHEUS_CONTENT_TYPE,
        shared.metrics.render(shared).into_bytes(),
    )
}

/// An RPC-style error response (JSON envelope with a trailing newline).
pub(crate) fn error(status: u16, code: &str, message: &str) -> Response {
    error_body(status, ErrorBody::new(code, message))
}

/// An error response from an envelope (with a trailing newline).
pub(crate) fn error_body(status: u16, body: ErrorBody) -> Response {
    let mut bytes = body.to_go_json();
    bytes.push(b'\n');
    Response::new(status, JSON, bytes)
}

/// Protocol §2.2, with test mode's relaxations (§2.4).
pub(crate) fn authenticate(shared: &Shared, request: &Request) -> Result<Caller, Response> {
    let relaxed = shared.test_mode;
    let default = || Caller {
        namespace: DEFAULT_NAMESPACE.to_string(),
        exists: shared
            .store
            .namespace_exists(DEFAULT_NAMESPACE)
            .unwrap_or(true),
    };
    let text = match request.query_param("token").filter(|t| !t.is_empty()) {
        Some(t) => t,
        None => {
            let header = request.header("authorization").unwrap_or_default();
            let refusal = if header.is_empty() {
                Some("Authorization header required")
            } else if !header.starts_with(b"Bearer ") {
                Some("Authorization header must use Bearer scheme")
            } else if header.len() == "Bearer ".len() {
                Some("Token required")
            } else {
                None
            };
            if let Some(message) = refusal {
                return if relaxed {
                    Ok(default())
                } else {
                    Err(error(401, "AUTH_REQUIRED", message))
                };
            }
            String::from_utf8_lossy(&header["Bearer ".len()..]).into_owned()
        }
    };
    let token = match Token::parse(&text) {
        Ok(t) => t,
        Err(_) if relaxed => return Ok(default()),
        Err(e) => {
            let detail = match e {
                crate::Error::InvalidInput(m) => m,
                other => other.to_string(),
            };
            return Err(error_body(
                401,
                ErrorBody::new("AUTH_INVALID_TOKEN", "Invalid token format")
                    .with_details(json!({ "error": detail })),
            ));
        }
    };
    let check = match shared.store.check_token(&token) {
        Ok(c) => c,
        Err(e) => {
            return Err(error(
                500,
                "INTERNAL_ERROR",
                &format!("Failed to check token: {e}"),
            ))
        }
    };
    let namespace = token.namespace().to_string();
    match check {
        TokenCheck::Valid => Ok(Caller {
            namespace,
            exists: true,
        }),
        TokenCheck::WrongToken if relaxed => Ok(Caller {
            namespace,
            exists: true,
        }),
        TokenCheck::UnknownNamespace if relaxed => Ok(Caller {
            namespace,
            exists: false,
        }),
        _ => Err(error_body(
            403,
            ErrorBody::new("AUTH_UNAUTHORIZED", "Token not authorized for namespace")
                .with_details(json!({ "namespace": namespace })),
        )),
    }
}
