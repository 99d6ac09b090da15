//! [CloudEvents](https://cloudevents.io) 1.0 JSON (structured mode) for
//! messages, so events can be handed to CloudEvents tooling and taken back.
//!
//! | CloudEvents attribute | from the message |
//! | --- | --- |
//! | `id` | message id |
//! | `source` | given by the caller (e.g. `eventodb://default`) |
//! | `type` | message type |
//! | `subject` | stream name |
//! | `time` | write time (RFC 3339, UTC) |
//! | `datacontenttype` | `application/json` |
//! | `data` | data |
//! | `stream` (extension) | stream name |
//! | `streamposition` (extension) | stream position, as a string |
//! | `globalposition` (extension) | global position, as a string |
//! | `correlation` (extension) | `metadata.correlationStreamName` |
//! | `causationid` (extension) | `metadata.causationMessageId` |
//! | `traceid` (extension) | `metadata.traceId` |
//! | `userid` (extension) | `metadata.userId` |
//! | `eventodbmetadata` (extension) | the whole metadata object, as a JSON string |
//!
//! Positions are strings because CloudEvents integers are 32-bit. Extension
//! names follow the spec (lowercase letters and digits, at most 20).
//!
//! ```
//! use eventodb_kit::cloudevents;
//! # use eventodb_kit::{EmbeddedStore, MessageStore, NewMessage, StreamQuery, WriteOptions};
//! # let store = EmbeddedStore::open_in_memory()?;
//! # let msg = NewMessage::new("Opened", serde_json::json!({"owner": "ann"})).trace_id("t-1");
//! # store.write("account-1", &msg, &WriteOptions::new())?;
//! # let message = store.get_stream("account-1", &StreamQuery::new())?.remove(0);
//! let event = cloudevents::to_cloud_event(&message, "eventodb://default");
//! assert_eq!(event["specversion"], "1.0");
//! assert_eq!(event["subject"], "account-1");
//! assert_eq!(event["traceid"], "t-1");
//! assert_eq!(cloudevents::from_cloud_event(&event)?, message);
//! # Ok::<(), eventodb_kit::Error>(())
//! ```

use serde_json::{json, Map, Value};

use crate::error::{Error, Result};
use crate::message::{
    Message, NewMessage, CAUSATION_MESSAGE_ID, CORRELATION_STREAM_NAME, TRACE_ID, USER_ID,
};
use crate::time::{format_rfc3339_nanos, parse_rfc3339};

/// The CloudEvents version produced.
pub const SPEC_VERSION: &str = "1.0";

const METADATA_EXTENSIONS: [(&str, &str); 4] = [
    ("correlation", CORRELATION_STREAM_NAME),
    ("causationid", CAUSATION_MESSAGE_ID),
    ("traceid", TRACE_ID),
    ("userid", USER_ID),
];

/// `message` as a structured-mode CloudEvent with `source` as its source.
pub fn to_cloud_event(message: &Message, source: &str) -> Value {
    let mut event = json!({
        "specversion": SPEC_VERSION,
        "id": message.id,
        "source": source,
        "type": message.message_type,
        "subject": message.stream_name,
        "time": format_rfc3339_nanos(message.time),
        "datacontenttype": "application/json",
        "data": message.data,
        "stream": message.stream_name,
        "streamposition": message.position.to_string(),
        "globalposition": message.global_position.to_string(),
    });
    let obj = event.as_object_mut().expect("built as an object");
    if let Some(metadata) = &message.metadata {
        for (ext, key) in METADATA_EXTENSIONS {
            if let Some(v) = metadata.get(key).and_then(Value::as_str) {
                obj.insert(ext.to_string(), Value::String(v.to_string()));
            }
        }
        obj.insert(
            "eventodbmetadata".to_string(),
            Value::String(metadata.to_string()),
        );
    }
    event
}

fn attribute<'a>(event: &'a Map<String, Value>, name: &str) -> Result<&'a str> {
    event
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::invalid(format!("CloudEvent has no string attribute {name:?}")))
}

fn as_object(event: &Value) -> Result<&Map<String, Value>> {
    let obj = event
        .as_object()
        .ok_or_else(|| Error::invalid("a CloudEvent must be a JSON object"))?;
    let version = attribute(obj, "specversion")?;
    if version != SPEC_VERSION {
        return Err(Error::invalid(format!(
            "unsupported CloudEvents specversion {version:?} (expected \"1.0\")"
        )));
    }
    Ok(obj)
}

/// The metadata carried by an event: `eventodbmetadata` if present, else
/// rebuilt from the known extensions; `None` when there is none.
fn metadata_of(obj: &Map<String, Value>) -> Result<Option<Value>> {
    if let Some(text) = obj.get("eventodbmetadata").and_then(Value::as_str) {
        let parsed: Value = serde_json::from_str(text)
            .map_err(|e| Error::invalid(format!("CloudEvent eventodbmetadata is not JSON: {e}")))?;
        return Ok(Some(parsed));
    }
    let mut metadata = Map::new();
    for (ext, key) in METADATA_EXTENSIONS {
        if let Some(v) = obj.get(ext).and_then(Value::as_str) {
            metadata.insert(key.to_string(), Value::String(v.to_string()));
        }
    }
    Ok((!metadata.is_empty()).then_some(Value::Object(metadata)))
}

fn data_of(obj: &Map<String, Value>) -> Result<Value> {
    if obj.contains_key("data_base64") {
        return Err(Error::invalid(
            "CloudEvents with binary data (data_base64) are not supported; data must be a JSON object",
        ));
    }
    Ok(obj.get("data").cloned().unwrap_or_else(|| json!({})))
}

/// Reads back a CloudEvent made by [`to_cloud_event`] (it needs the
/// `stream`, `streamposition`, `globalposition` and `time` attributes).
pub fn from_cloud_event(event: &Value) -> Result<Message> {
    let obj = as_object(event)?;
    let position = |name: &str| -> Result<i64> {
        attribute(obj, name)?
            .parse()
            .map_err(|_| Error::invalid(format!("CloudEvent attribute {name:?} is not an integer")))
    };
    Ok(Message {
        id: attribute(obj, "id")?.to_string(),
        stream_name: attribute(obj, "stream")?.to_string(),
        message_type: attribute(obj, "type")?.to_string(),
        position: position("streamposition")?,
        global_position: position("globalposition")?,
        data: data_of(obj)?,
        metadata: metadata_of(obj)?,
        time: parse_rfc3339(attribute(obj, "time")?)?,
    })
}

/// A message to write from any CloudEvent: its `type`, its `data` (a JSON
/// object) and its metadata (from `eventodbmetadata` or the known
/// extensions). Returns it with the event's `id`, which can be used as the
/// message id (`WriteOptions::id`) when it is a UUID.
///
/// ```
/// let event = serde_json::json!({
///     "specversion": "1.0", "id": "0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a87",
///     "source": "/shop", "type": "OrderPlaced", "data": { "total": 12 },
///     "traceid": "t-9",
/// });
/// let (id, msg) = eventodb_kit::cloudevents::new_message_from_cloud_event(&event)?;
/// assert_eq!(msg.message_type(), "OrderPlaced");
/// assert_eq!(msg.metadata().unwrap()["traceId"], "t-9");
/// # Ok::<(), eventodb_kit::Error>(())
/// ```
pub fn new_message_from_cloud_event(event: &Value) -> Result<(String, NewMessage)> {
    let obj = as_object(event)?;
    let mut message = NewMessage::new(attribute(obj, "type")?, data_of(obj)?);
    if let Some(metadata) = metadata_of(obj)? {
        message = message.with_metadata(metadata);
    }
    Ok((attribute(obj, "id")?.to_string(), message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::from_ms;

    fn message(metadata: Option<Value>) -> Message {
        Message {
            id: "0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a87".into(),
            stream_name: "account-1".into(),
            message_type: "Deposited".into(),
            position: 4,
            global_position: 9_000_000_000,
            data: json!({ "amount": 10 }),
            metadata,
            time: from_ms(1_767_225_600_250),
        }
    }

    #[test]
    fn round_trips_with_and_without_metadata() {
        for metadata in [
            None,
            Some(json!({})),
            Some(json!({ "correlationStreamName": "transfer-1", "userId": "u", "x": [1] })),
        ] {
            let m = message(metadata);
            let event = to_cloud_event(&m, "eventodb://default");
            assert_eq!(from_cloud_event(&event).unwrap(), m);
        }
    }

    #[test]
    fn attributes_follow_the_spec() {
        let m = message(Some(
            json!({ "correlationStreamName": "transfer-1", "traceId": "t" }),
        ));
        let event = to_cloud_event(&m, "eventodb://default");
        assert_eq!(event["time"], "2026-01-01T00:00:00.25Z");
        assert_eq!(event["globalposition"], "9000000000");
        assert_eq!(event["correlation"], "transfer-1");
        assert_eq!(event["traceid"], "t");
        for key in event.as_object().unwrap().keys() {
            assert!(key.len() <= 20, "{key}");
            assert!(
                key.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
                "{key}"
            );
        }
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(from_cloud_event(&json!([])).is_err());
        assert!(from_cloud_event(&json!({ "specversion": "0.3" })).is_err());
        let mut event = to_cloud_event(&message(None), "s");
        event["streamposition"] = json!("x");
        assert!(from_cloud_event(&event).is_err());
        let binary = json!({ "specversion": "1.0", "id": "1", "source": "s", "type": "T", "data_base64": "AA==" });
        assert!(new_message_from_cloud_event(&binary).is_err());
    }
}
