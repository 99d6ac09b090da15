//! What a dead letter is, where it came from, and how to select some.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::message::Message;

use super::record::message_from_json;

/// Where a dead letter came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetterSource {
    /// The outbox sender could not deliver it.
    Outbox,
    /// A consumer's handler could not process it.
    Consumer,
}

impl DeadLetterSource {
    /// `"outbox"` or `"consumer"`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterSource::Outbox => "outbox",
            DeadLetterSource::Consumer => "consumer",
        }
    }
}

impl fmt::Display for DeadLetterSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeadLetterSource {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "outbox" => Ok(DeadLetterSource::Outbox),
            "consumer" => Ok(DeadLetterSource::Consumer),
            other => Err(Error::invalid(format!(
                "unknown dead-letter source {other:?} (expected \"outbox\" or \"consumer\")"
            ))),
        }
    }
}

/// One dead letter.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Its id in the dead-letter table.
    pub id: i64,
    /// Outbox or consumer.
    pub source: DeadLetterSource,
    /// The namespace of the message.
    pub namespace: String,
    /// The message id.
    pub message_id: String,
    /// The message's stream.
    pub stream: String,
    /// The message type.
    pub message_type: String,
    /// The category the consumer follows (consumer dead letters).
    pub category: Option<String>,
    /// The consumer whose handler failed (consumer dead letters).
    pub consumer_id: Option<String>,
    /// The whole message as JSON (see [`DeadLetter::message`]).
    pub message: Value,
    /// The last error.
    pub error: String,
    /// Attempts made before giving up.
    pub attempts: u32,
    /// When the first attempt failed.
    pub first_failed_at: SystemTime,
    /// When the last attempt failed.
    pub last_failed_at: SystemTime,
    /// When it was requeued for its consumer (consumer dead letters waiting
    /// for their re-run).
    pub requeued_at: Option<SystemTime>,
}

impl DeadLetter {
    /// The message of a consumer dead letter, as the store delivered it.
    pub fn read_message(&self) -> Result<Message> {
        message_from_json(&self.message)
    }
}

/// Which dead letters an operation applies to. Every set field must match.
///
/// ```
/// use eventodb_kit::dlq::{DeadLetterFilter, DeadLetterSource};
/// let f = DeadLetterFilter::new().source(DeadLetterSource::Outbox).stream("account-7");
/// assert_eq!(f.stream.as_deref(), Some("account-7"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetterFilter {
    /// Only from this source. Defaults to both.
    pub source: Option<DeadLetterSource>,
    /// Only of this stream. Defaults to any.
    pub stream: Option<String>,
    /// Only of this consumer's category. Defaults to any.
    pub category: Option<String>,
    /// Only of this consumer. Defaults to any.
    pub consumer_id: Option<String>,
    /// Only these dead-letter ids. Defaults to any.
    pub ids: Vec<i64>,
    /// At most this many (for listing). Defaults to no limit.
    pub limit: Option<u32>,
}

impl DeadLetterFilter {
    /// Matches every dead letter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only dead letters from `source`.
    pub fn source(mut self, source: DeadLetterSource) -> Self {
        self.source = Some(source);
        self
    }

    /// Only dead letters of `stream`.
    pub fn stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = Some(stream.into());
        self
    }

    /// Only consumer dead letters of `category`.
    pub fn category(mut self, category: impl Into<String>) -> Self {
        self.category = Some(category.into());
        self
    }

    /// Only dead letters of consumer `consumer_id`.
    pub fn consumer_id(mut self, consumer_id: impl Into<String>) -> Self {
        self.consumer_id = Some(consumer_id.into());
        self
    }

    /// Only the dead letter with id `id` (may be called repeatedly).
    pub fn id(mut self, id: i64) -> Self {
        self.ids.push(id);
        self
    }

    /// At most `limit` dead letters when listing.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }
}
