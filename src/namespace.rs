//! Namespaces: what `ns.create`, `ns.delete`, `ns.list` and `ns.info` return.

use std::time::SystemTime;

use crate::token::Token;

/// A namespace created by `ns.create`, with the only copy of its token.
#[derive(Debug, Clone)]
pub struct CreatedNamespace {
    /// The namespace id.
    pub namespace: String,
    /// Its token (the server keeps only a hash: store it now).
    pub token: Token,
    /// When it was created.
    pub created_at: SystemTime,
}

/// A namespace deleted by `ns.delete`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedNamespace {
    /// The namespace id.
    pub namespace: String,
    /// When it was deleted.
    pub deleted_at: SystemTime,
}

/// One namespace, as `ns.list` and `ns.info` describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceInfo {
    /// The namespace id.
    pub namespace: String,
    /// Its description (`""` when none was given).
    pub description: String,
    /// When it was created.
    pub created_at: SystemTime,
    /// Messages in it (`ns.info` only; `ns.list` always reports 0, like EventoDB).
    pub message_count: i64,
}

/// The result of checking a token against a server's namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCheck {
    /// The namespace exists and the token is its token.
    Valid,
    /// No namespace of that name exists.
    UnknownNamespace,
    /// The namespace exists but has another token.
    WrongToken,
}
