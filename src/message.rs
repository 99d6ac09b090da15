//! Messages: what you write ([`NewMessage`], [`WriteOptions`]), what a write
//! returns ([`WriteResult`]) and what you read ([`Message`]).

use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::stream_name;

/// Metadata key of the correlation stream (used by `category.get`'s `correlation` filter).
pub const CORRELATION_STREAM_NAME: &str = "correlationStreamName";
/// Metadata key of the stream of the message that caused this one.
pub const CAUSATION_MESSAGE_STREAM_NAME: &str = "causationMessageStreamName";
/// Metadata key of the stream position of the message that caused this one.
pub const CAUSATION_MESSAGE_POSITION: &str = "causationMessagePosition";
/// Metadata key of the global position of the message that caused this one.
pub const CAUSATION_MESSAGE_GLOBAL_POSITION: &str = "causationMessageGlobalPosition";
/// Metadata key of the id of the message that caused this one.
pub const CAUSATION_MESSAGE_ID: &str = "causationMessageId";
/// Metadata key of the stream a reply should go to.
pub const REPLY_STREAM_NAME: &str = "replyStreamName";
/// Metadata key of a distributed-tracing id.
pub const TRACE_ID: &str = "traceId";
/// Metadata key of the user on whose behalf the message was written.
pub const USER_ID: &str = "userId";
/// Metadata key of the version of the event's data schema.
pub const SCHEMA_VERSION: &str = "schemaVersion";

/// The deepest nesting of arrays and objects accepted in a message's `data`
/// and `metadata`: 125 levels (`{}` is one level, `{"a":[]}` two).
///
/// A deeper value could be written but not read back: serde_json (and so
/// the kit, and `eventodb-kit serve`) reads at most 127 levels per JSON
/// document, and over HTTP a message's data sits two levels down — in the
/// `["stream.write", stream, {"data": …}]` request and in the `[[…, data,
/// …]]` answer of `stream.get` and `category.get`. Every entry point
/// (outbox, stores, `serve`, import) refuses deeper data with
/// [`Error::InvalidInput`] before anything is stored.
pub const MAX_JSON_DEPTH: usize = 125;

/// A message to write: a type, a JSON object of data and optional metadata.
///
/// ```
/// use eventodb_kit::NewMessage;
/// use serde_json::json;
///
/// let msg = NewMessage::new("Deposited", json!({ "amount": 10 }))
///     .correlation_stream_name("transfer-7")
///     .trace_id("4bf92f35")
///     .user_id("alice")
///     .schema_version(2);
/// assert_eq!(msg.metadata().unwrap()["correlationStreamName"], "transfer-7");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    message_type: String,
    data: Value,
    metadata: Option<Value>,
}

impl NewMessage {
    /// A message of `message_type` carrying `data` (must be a JSON object when written).
    pub fn new(message_type: impl Into<String>, data: Value) -> Self {
        NewMessage {
            message_type: message_type.into(),
            data,
            metadata: None,
        }
    }

    /// A message whose data is `data` serialized with serde.
    ///
    /// ```
    /// #[derive(serde::Serialize)]
    /// struct Opened { owner: String }
    /// let msg = eventodb_kit::NewMessage::from_serialize("Opened", &Opened { owner: "ann".into() })?;
    /// assert_eq!(msg.data()["owner"], "ann");
    /// # Ok::<(), eventodb_kit::Error>(())
    /// ```
    pub fn from_serialize<T: Serialize + ?Sized>(
        message_type: impl Into<String>,
        data: &T,
    ) -> Result<Self> {
        Ok(Self::new(message_type, serde_json::to_value(data)?))
    }

    /// Replaces the metadata (must be a JSON object when written).
    pub fn with_metadata(mut self, metadata: Value) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Sets one metadata key, creating the metadata object if needed.
    ///
    /// If the metadata was set to something other than an object, it is
    /// replaced by an object.
    pub fn metadata_value(mut self, key: &str, value: impl Into<Value>) -> Self {
        let map = match &mut self.metadata {
            Some(Value::Object(map)) => map,
            slot => {
                *slot = Some(Value::Object(Map::new()));
                match slot {
                    Some(Value::Object(map)) => map,
                    _ => unreachable!(),
                }
            }
        };
        map.insert(key.to_string(), value.into());
        self
    }

    /// Sets `correlationStreamName`, which `category.get`'s correlation filter matches.
    pub fn correlation_stream_name(self, stream: impl Into<String>) -> Self {
        self.metadata_value(CORRELATION_STREAM_NAME, stream.into())
    }

    /// Sets `causationMessageId`.
    pub fn causation_message_id(self, id: impl Into<String>) -> Self {
        self.metadata_value(CAUSATION_MESSAGE_ID, id.into())
    }

    /// Sets `replyStreamName`.
    pub fn reply_stream_name(self, stream: impl Into<String>) -> Self {
        self.metadata_value(REPLY_STREAM_NAME, stream.into())
    }

    /// Sets `traceId`.
    pub fn trace_id(self, trace_id: impl Into<String>) -> Self {
        self.metadata_value(TRACE_ID, trace_id.into())
    }

    /// Sets `userId`.
    pub fn user_id(self, user_id: impl Into<String>) -> Self {
        self.metadata_value(USER_ID, user_id.into())
    }

    /// Sets `schemaVersion`, the version of the event's data schema.
    pub fn schema_version(self, version: u32) -> Self {
        self.metadata_value(SCHEMA_VERSION, version)
    }

    /// Records that `cause` caused this message: copies its id, stream and
    /// positions into the causation keys, and carries over its
    /// `correlationStreamName`, `traceId` and `userId` when present.
    ///
    /// ```
    /// # use eventodb_kit::{Message, NewMessage};
    /// # fn handle(cause: &Message) {
    /// let reply = NewMessage::new("Shipped", serde_json::json!({})).follows(cause);
    /// # }
    /// ```
    pub fn follows(mut self, cause: &Message) -> Self {
        self = self
            .causation_message_id(cause.id.clone())
            .metadata_value(CAUSATION_MESSAGE_STREAM_NAME, cause.stream_name.clone())
            .metadata_value(CAUSATION_MESSAGE_POSITION, cause.position)
            .metadata_value(CAUSATION_MESSAGE_GLOBAL_POSITION, cause.global_position);
        for key in [CORRELATION_STREAM_NAME, TRACE_ID, USER_ID] {
            if let Some(v) = cause.metadata_str(key) {
                self = self.metadata_value(key, v.to_string());
            }
        }
        self
    }

    /// The message type.
    pub fn message_type(&self) -> &str {
        &self.message_type
    }

    /// The data.
    pub fn data(&self) -> &Value {
        &self.data
    }

    /// The metadata, if any.
    pub fn metadata(&self) -> Option<&Value> {
        self.metadata.as_ref()
    }

    /// Checks the message the way EventoDB does, with its messages: a
    /// non-empty type, data that is an object, metadata that is an object —
    /// and, beyond EventoDB, data and metadata nested at most
    /// [`MAX_JSON_DEPTH`] levels deep (deeper JSON could not be read back).
    ///
    /// Every write of the kit runs this check before anything is stored or
    /// sent: the outbox, both stores and `serve`.
    ///
    /// ```
    /// use eventodb_kit::{Error, NewMessage};
    /// use serde_json::json;
    ///
    /// assert!(NewMessage::new("Opened", json!({ "a": [1] })).validate().is_ok());
    /// let mut deep = json!({});
    /// for _ in 0..eventodb_kit::message::MAX_JSON_DEPTH {
    ///     deep = json!({ "a": deep });
    /// }
    /// let err = NewMessage::new("Opened", deep).validate().unwrap_err();
    /// assert!(matches!(err, Error::InvalidInput(m) if m.contains("125 levels")));
    /// ```
    pub fn validate(&self) -> Result<()> {
        if self.message_type.is_empty() {
            return Err(Error::invalid("message.type must be a non-empty string"));
        }
        if !self.data.is_object() {
            return Err(Error::invalid("message.data must be an object"));
        }
        if let Some(m) = &self.metadata {
            if !m.is_object() {
                return Err(Error::invalid("message.metadata must be an object"));
            }
        }
        check_depth("message.data", &self.data)?;
        if let Some(m) = &self.metadata {
            check_depth("message.metadata", m)?;
        }
        Ok(())
    }
}

/// Refuses `value` (named `field` in the error) when it nests arrays and
/// objects deeper than [`MAX_JSON_DEPTH`] — the one depth rule of every
/// entry point.
pub(crate) fn check_depth(field: &str, value: &Value) -> Result<()> {
    if is_too_deep(value) {
        return Err(Error::invalid(too_deep_message(field)));
    }
    Ok(())
}

/// Whether `value` nests arrays and objects deeper than [`MAX_JSON_DEPTH`].
pub(crate) fn is_too_deep(value: &Value) -> bool {
    nested_deeper_than(value, MAX_JSON_DEPTH)
}

/// What [`check_depth`] says about `field`.
pub(crate) fn too_deep_message(field: &str) -> String {
    format!(
        "{field} is nested deeper than {MAX_JSON_DEPTH} levels (the limit: deeper JSON could not be read back)"
    )
}

/// Whether `value` nests arrays and objects more than `limit` levels deep.
/// Walks without recursion, holding at most `limit + 1` iterators, so no
/// value — however deep — can overflow the stack here.
fn nested_deeper_than(value: &Value, limit: usize) -> bool {
    enum Children<'a> {
        Array(std::slice::Iter<'a, Value>),
        Object(serde_json::map::Values<'a>),
    }
    fn children(v: &Value) -> Option<Children<'_>> {
        match v {
            Value::Array(items) => Some(Children::Array(items.iter())),
            Value::Object(map) => Some(Children::Object(map.values())),
            _ => None,
        }
    }
    let mut stack: Vec<Children<'_>> = Vec::new();
    stack.extend(children(value));
    if stack.len() > limit {
        return true;
    }
    while let Some(top) = stack.last_mut() {
        let next = match top {
            Children::Array(it) => it.next(),
            Children::Object(it) => it.next(),
        };
        match next {
            Some(child) => {
                if let Some(c) = children(child) {
                    stack.push(c);
                    if stack.len() > limit {
                        return true;
                    }
                }
            }
            None => {
                stack.pop();
            }
        }
    }
    false
}

/// Options of a write: optimistic concurrency, a custom id, an idempotency key.
///
/// ```
/// use eventodb_kit::WriteOptions;
/// let opts = WriteOptions::new().expected_version(-1).idempotency_key("order-7-created");
/// assert_eq!(opts.expected_version, Some(-1));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteOptions {
    /// The version the stream must be at (`-1`: the stream must be empty).
    pub expected_version: Option<i64>,
    /// The message id to use instead of a fresh UUID v7.
    pub id: Option<String>,
    /// A key that makes the write happen at most once per namespace (outbox only;
    /// stores ignore it).
    pub idempotency_key: Option<String>,
}

impl WriteOptions {
    /// No options: an unconditional append with a generated id.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires the stream to be at `version` (`-1` = empty). Defaults to none.
    pub fn expected_version(mut self, version: i64) -> Self {
        self.expected_version = Some(version);
        self
    }

    /// Uses `id` as the message id. Defaults to a new UUID v7.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Deduplicates outbox writes with this key. Defaults to none.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// Where a written message landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WriteResult {
    /// Position in its stream (0-based).
    pub position: i64,
    /// Position in the namespace (1-based).
    pub global_position: i64,
}

/// A message read from a store.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The message id (a UUID).
    pub id: String,
    /// The stream it belongs to.
    pub stream_name: String,
    /// The message type.
    pub message_type: String,
    /// Position in its stream (0-based, gapless).
    pub position: i64,
    /// Position in the namespace (1-based).
    pub global_position: i64,
    /// The data (a JSON object, except for oddities imported with `/import`).
    pub data: Value,
    /// The metadata, `None` when the message was written without any.
    pub metadata: Option<Value>,
    /// When the store recorded it.
    pub time: SystemTime,
}

impl Message {
    /// The stream's category.
    pub fn category(&self) -> &str {
        stream_name::category(&self.stream_name)
    }

    /// A string metadata value, if present.
    pub fn metadata_str(&self, key: &str) -> Option<&str> {
        self.metadata.as_ref()?.get(key)?.as_str()
    }

    /// `correlationStreamName` from the metadata, if present.
    pub fn correlation_stream_name(&self) -> Option<&str> {
        self.metadata_str(CORRELATION_STREAM_NAME)
    }

    /// The data deserialized into `T`.
    ///
    /// A mismatch is [`Error::InvalidInput`] naming the message type and id.
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T> {
        T::deserialize(&self.data).map_err(|e| {
            Error::invalid(format!(
                "data of {} message {} does not match the expected shape: {e}",
                self.message_type, self.id
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn validation_uses_protocol_messages() {
        let err = |m: NewMessage| m.validate().unwrap_err().to_string();
        assert!(
            err(NewMessage::new("", json!({}))).contains("message.type must be a non-empty string")
        );
        assert!(err(NewMessage::new("T", json!([]))).contains("message.data must be an object"));
        assert!(
            err(NewMessage::new("T", json!({})).with_metadata(json!(null)))
                .contains("message.metadata must be an object")
        );
        NewMessage::new("T", json!({}))
            .with_metadata(json!({}))
            .validate()
            .unwrap();
    }

    #[test]
    fn depth_counts_arrays_and_objects() {
        assert!(!nested_deeper_than(&json!(1), 0));
        assert!(nested_deeper_than(&json!({}), 0));
        assert!(!nested_deeper_than(&json!({}), 1));
        assert!(nested_deeper_than(&json!({"a": []}), 1));
        assert!(!nested_deeper_than(&json!({"a": [], "b": {"c": 1}}), 2));
        assert!(nested_deeper_than(&json!([1, {"x": [[2]]}, 3]), 3));
        assert!(!nested_deeper_than(&json!([1, {"x": [[2]]}, 3]), 4));
        let deep = |n: usize| (1..n).fold(json!({}), |v, _| json!({ "a": v }));
        let ok = NewMessage::new("T", deep(MAX_JSON_DEPTH));
        ok.validate().unwrap();
        let err = NewMessage::new("T", deep(MAX_JSON_DEPTH + 1))
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("message.data is nested deeper than 125 levels"),
            "{err}"
        );
        let err = NewMessage::new("T", json!({}))
            .with_metadata(deep(MAX_JSON_DEPTH + 1))
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("message.metadata"), "{err}");
    }

    #[test]
    fn serde_json_reads_back_exactly_the_limit_plus_the_http_wrapping() {
        // The limit is what serde_json reads (127 levels) minus the two
        // levels a message's data sits under in an RPC request or answer.
        let text = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(serde_json::from_str::<Value>(&text(MAX_JSON_DEPTH + 2)).is_ok());
        assert!(serde_json::from_str::<Value>(&text(MAX_JSON_DEPTH + 3)).is_err());
    }

    #[test]
    fn follows_copies_causation_and_correlation() {
        let cause = Message {
            id: "id-1".into(),
            stream_name: "order-1".into(),
            message_type: "Placed".into(),
            position: 3,
            global_position: 9,
            data: json!({}),
            metadata: Some(json!({"correlationStreamName": "flow-1", "traceId": "t"})),
            time: SystemTime::UNIX_EPOCH,
        };
        let m = NewMessage::new("Shipped", json!({})).follows(&cause);
        let md = m.metadata().unwrap();
        assert_eq!(md["causationMessageId"], "id-1");
        assert_eq!(md["causationMessageStreamName"], "order-1");
        assert_eq!(md["causationMessagePosition"], 3);
        assert_eq!(md["causationMessageGlobalPosition"], 9);
        assert_eq!(md["correlationStreamName"], "flow-1");
        assert_eq!(md["traceId"], "t");
        assert!(md.get("userId").is_none());
    }

    #[test]
    fn metadata_value_replaces_non_objects() {
        let m = NewMessage::new("T", json!({}))
            .with_metadata(json!(5))
            .user_id("u");
        assert_eq!(m.metadata(), Some(&json!({"userId": "u"})));
    }
}
