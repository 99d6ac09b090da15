//! Which messages a consumer (or a replay) hands to its handler: message
//! types (exact names and prefix wildcards) and metadata predicates.
//!
//! The correlation filter is not here: it goes to the store with the
//! `category.get` query, as EventoDB defines it.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::message::Message;

/// A set of message types: exact names (`UserCreated`) and prefixes ending in
/// `*` (`product.*` matches `product.added`; `*` alone matches every type).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TypeFilter {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl TypeFilter {
    /// Parses `patterns`; a `*` anywhere but at the end is refused.
    pub(crate) fn parse<I, S>(patterns: I) -> Result<TypeFilter>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut filter = TypeFilter::default();
        for pattern in patterns {
            let pattern: String = pattern.into();
            if pattern.is_empty() {
                return Err(Error::invalid("a message type pattern must not be empty"));
            }
            match pattern.find('*') {
                None => filter.exact.push(pattern),
                Some(i) if i == pattern.len() - 1 => {
                    filter.prefixes.push(pattern[..i].to_string());
                }
                Some(_) => {
                    return Err(Error::invalid(format!(
                        "message type pattern {pattern:?}: `*` is only allowed at the end (as in \"product.*\")"
                    )))
                }
            }
        }
        Ok(filter)
    }

    /// Whether `message_type` is in the set.
    pub(crate) fn matches(&self, message_type: &str) -> bool {
        self.exact.iter().any(|t| t == message_type)
            || self.prefixes.iter().any(|p| message_type.starts_with(p))
    }
}

/// A predicate over a message's metadata (`Value::Null` when it has none).
pub(crate) type MetadataPredicate = Arc<dyn Fn(&Value) -> bool + Send + Sync>;

/// Everything that decides whether the handler sees a message.
#[derive(Clone, Default)]
pub(crate) struct MessageFilter {
    pub(crate) types: Option<TypeFilter>,
    pub(crate) metadata: Vec<MetadataPredicate>,
}

impl fmt::Debug for MessageFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageFilter")
            .field("types", &self.types)
            .field("metadata_predicates", &self.metadata.len())
            .finish()
    }
}

impl MessageFilter {
    /// A filter of type patterns (none: every type) and metadata predicates.
    pub(crate) fn new(
        type_patterns: Option<&[String]>,
        metadata: Vec<MetadataPredicate>,
    ) -> Result<MessageFilter> {
        let types = match type_patterns {
            Some(patterns) => Some(TypeFilter::parse(patterns.iter().cloned())?),
            None => None,
        };
        Ok(MessageFilter { types, metadata })
    }

    /// Whether the handler should see `message`.
    pub(crate) fn accepts(&self, message: &Message) -> bool {
        if let Some(types) = &self.types {
            if !types.matches(&message.message_type) {
                return false;
            }
        }
        if self.metadata.is_empty() {
            return true;
        }
        let metadata = message.metadata.as_ref().unwrap_or(&Value::Null);
        self.metadata.iter().all(|p| p(metadata))
    }
}

/// A predicate that keeps messages whose metadata `key` is a string in `values`.
pub(crate) fn metadata_in(key: String, values: Vec<String>) -> MetadataPredicate {
    Arc::new(move |metadata: &Value| {
        metadata
            .get(&key)
            .and_then(Value::as_str)
            .is_some_and(|v| values.iter().any(|x| x == v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_names_and_prefix_wildcards() {
        let f = TypeFilter::parse(["UserCreated", "product.*"]).unwrap();
        assert!(f.matches("UserCreated"));
        assert!(!f.matches("UserCreatedV2"));
        assert!(f.matches("product.added"));
        assert!(f.matches("product."));
        assert!(!f.matches("productAdded"));
        assert!(TypeFilter::parse(["*"]).unwrap().matches("anything"));
        let err = TypeFilter::parse(["pro*duct"]).unwrap_err().to_string();
        assert!(err.contains("only allowed at the end"), "{err}");
        assert!(TypeFilter::parse([""]).is_err());
    }

    #[test]
    fn metadata_in_matches_strings() {
        let p = metadata_in("workflowId".into(), vec!["a".into(), "b".into()]);
        assert!(p(&serde_json::json!({"workflowId": "a"})));
        assert!(!p(&serde_json::json!({"workflowId": "c"})));
        assert!(!p(&serde_json::json!({"workflowId": 1})));
        assert!(!p(&Value::Null));
    }
}
