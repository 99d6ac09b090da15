//! EventoDB's error envelope: `{"error":{"code":C,"message":M,"details":{…}}}`
//! (protocol §3), keys in that order, `details` omitted when empty.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// EventoDB's error envelope: `{"error":{"code":C,"message":M,"details":{…}}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ErrorBody {
    /// Error code, e.g. `STREAM_VERSION_CONFLICT`.
    pub(crate) code: String,
    /// Human-readable message.
    pub(crate) message: String,
    /// Extra facts (omitted when empty).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "super::json::sorted_option"
    )]
    pub(crate) details: Option<Value>,
}

#[derive(Serialize, Deserialize)]
struct Envelope<E> {
    error: E,
}

impl ErrorBody {
    /// An error without details.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn new(code: &str, message: impl Into<String>) -> Self {
        ErrorBody {
            code: code.to_string(),
            message: message.into(),
            details: None,
        }
    }

    /// Adds details (an empty object counts as none, as in Go).
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn with_details(mut self, details: Value) -> Self {
        let empty = details.as_object().is_some_and(Map::is_empty) || details.is_null();
        self.details = (!empty).then_some(details);
        self
    }

    /// The envelope as the Go server writes it (keys `code`, `message`,
    /// `details` in that order; no trailing newline).
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn to_go_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        super::json::write_go(&mut out, &Envelope { error: self });
        out
    }

    /// Reads an error envelope; `None` when `body` is not one.
    pub(crate) fn parse(body: &[u8]) -> Option<ErrorBody> {
        serde_json::from_slice::<Envelope<ErrorBody>>(body)
            .ok()
            .map(|e| e.error)
    }

    /// A number from the details (e.g. `actual` of a version conflict).
    pub(crate) fn detail_i64(&self, key: &str) -> Option<i64> {
        self.details.as_ref()?.get(key).and_then(super::rpc::int)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_envelope_round_trip() {
        let body = ErrorBody::new(
            "STREAM_VERSION_CONFLICT",
            "Expected version 5, stream is at version 1",
        )
        .with_details(json!({"expected": 5, "actual": 1}));
        let text = String::from_utf8(body.to_go_json()).unwrap();
        assert_eq!(
            text,
            r#"{"error":{"code":"STREAM_VERSION_CONFLICT","message":"Expected version 5, stream is at version 1","details":{"actual":1,"expected":5}}}"#
        );
        let back = ErrorBody::parse(text.as_bytes()).unwrap();
        assert_eq!(back.detail_i64("actual"), Some(1));
        let plain = ErrorBody::new("NOT_FOUND", "Endpoint not found").with_details(json!({}));
        assert_eq!(
            String::from_utf8(plain.to_go_json()).unwrap(),
            r#"{"error":{"code":"NOT_FOUND","message":"Endpoint not found"}}"#
        );
        assert!(ErrorBody::parse(b"<html>").is_none());
    }
}
