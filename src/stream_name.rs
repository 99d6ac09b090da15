//! Stream-name rules, exactly as EventoDB (and Message DB) define them.
//!
//! A stream name is any non-empty string. Its **category** is the text before
//! the first `-` (the whole name when there is none), its **id** the text after
//! the first `-`, and its **cardinal id** the id up to the first `+`:
//!
//! ```
//! use eventodb_kit::stream_name::{cardinal_id, category, id};
//!
//! assert_eq!(category("account-123+retry"), "account");
//! assert_eq!(id("account-1-2"), Some("1-2"));
//! assert_eq!(cardinal_id("account-123+retry"), Some("123"));
//! assert_eq!(category("account"), "account");
//! assert_eq!(id("account"), None);
//! ```

/// The category of a stream: the text before the first `-`, or the whole name.
///
/// `:` has no special meaning: `account:command-9` is in category
/// `account:command`.
pub fn category(stream_name: &str) -> &str {
    match stream_name.find('-') {
        Some(i) => &stream_name[..i],
        None => stream_name,
    }
}

/// The id of a stream: the text after the first `-`, or `None` without a `-`.
pub fn id(stream_name: &str) -> Option<&str> {
    stream_name.find('-').map(|i| &stream_name[i + 1..])
}

/// The cardinal id: the id up to the first `+` (compound ids such as
/// `123+retry` share the cardinal id `123`). `None` without a `-`.
pub fn cardinal_id(stream_name: &str) -> Option<&str> {
    id(stream_name).map(|id| match id.find('+') {
        Some(i) => &id[..i],
        None => id,
    })
}

/// Whether `name` names a category rather than a stream (it has no `-`).
pub fn is_category(name: &str) -> bool {
    !name.contains('-')
}

/// Builds a stream name from a category and an id: `stream("account", "123")`
/// is `account-123`.
pub fn stream(category: &str, id: &str) -> String {
    format!("{category}-{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_examples() {
        assert_eq!(category("account-123+456"), "account");
        assert_eq!(category("account:command-9"), "account:command");
        assert_eq!(category(""), "");
        assert_eq!(id("account-"), Some(""));
        assert_eq!(cardinal_id("account-+x"), Some(""));
        assert_eq!(cardinal_id("account"), None);
        assert_eq!(cardinal_id("order-abc"), Some("abc"));
        assert!(is_category("account"));
        assert!(!is_category("account-1"));
        assert_eq!(stream("a", "1"), "a-1");
    }
}
