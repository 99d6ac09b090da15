//! Namespace administration of the embedded store (what a server needs for
//! `ns.*` and for authenticating tokens). Only sha256 hashes of tokens are kept.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::error::{Error, Result};
use crate::namespace::{CreatedNamespace, DeletedNamespace, NamespaceInfo, TokenCheck};
use crate::token::Token;

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos().min(i64::MAX as u128) as i64)
        .unwrap_or(0)
}

fn from_ns(ns: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns.max(0) as u64)
}

fn not_found(id: &str) -> Error {
    Error::NotFound(format!("Namespace '{id}' not found"))
}

/// `ns.create`, with EventoDB's checks in its order.
pub(super) fn create(
    conn: &mut Connection,
    id: &str,
    description: &str,
    token: Option<&str>,
) -> Result<CreatedNamespace> {
    if id.is_empty() {
        return Err(Error::invalid("namespace ID must be a non-empty string"));
    }
    let token = match token {
        Some(text) => {
            let t = Token::parse(text).map_err(|e| match e {
                Error::InvalidInput(m) => Error::invalid(format!("Invalid token format: {m}")),
                other => other,
            })?;
            if t.namespace() != id {
                return Err(Error::invalid(format!(
                    "Token is for namespace '{}', not '{id}'",
                    t.namespace()
                )));
            }
            t
        }
        None => Token::generate(id)?,
    };
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let created_at_ns = now_ns();
    let inserted = tx.execute(
        "INSERT INTO evento_store_namespaces (namespace, token_hash, description, created_at_ns)
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (namespace) DO NOTHING",
        params![id, token.sha256_hex(), description, created_at_ns],
    )?;
    if inserted == 0 {
        return Err(Error::Store {
            status: 409,
            code: "NAMESPACE_EXISTS".into(),
            message: format!("Namespace '{id}' already exists"),
        });
    }
    tx.commit()?;
    Ok(CreatedNamespace {
        namespace: id.to_string(),
        token,
        created_at: from_ns(created_at_ns),
    })
}

/// `ns.delete`: removes the namespace, its token and all its messages.
pub(super) fn delete(conn: &mut Connection, id: &str) -> Result<DeletedNamespace> {
    if id.is_empty() {
        return Err(Error::invalid("namespace ID must be a non-empty string"));
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let removed = tx.execute(
        "DELETE FROM evento_store_namespaces WHERE namespace = ?1",
        [id],
    )?;
    if removed == 0 {
        return Err(not_found(id));
    }
    tx.execute(
        "DELETE FROM evento_store_messages WHERE namespace = ?1",
        [id],
    )?;
    tx.commit()?;
    Ok(DeletedNamespace {
        namespace: id.to_string(),
        deleted_at: SystemTime::now(),
    })
}

/// Every registered namespace with its newest global position (0 when
/// empty), by name — one index lookup per namespace.
pub(super) fn heads(conn: &Connection) -> Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT n.namespace,
                COALESCE((SELECT MAX(m.global_position) FROM evento_store_messages m
                           WHERE m.namespace = n.namespace), 0)
           FROM evento_store_namespaces n ORDER BY n.namespace",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// `ns.list`: newest first; `message_count` is 0 as in EventoDB.
pub(super) fn list(conn: &Connection) -> Result<Vec<NamespaceInfo>> {
    let mut stmt = conn.prepare_cached(
        "SELECT namespace, description, created_at_ns FROM evento_store_namespaces
         ORDER BY created_at_ns DESC, namespace",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(NamespaceInfo {
            namespace: r.get(0)?,
            description: r.get(1)?,
            created_at: from_ns(r.get(2)?),
            message_count: 0,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// `ns.info`, with the real message count.
pub(super) fn info(conn: &Connection, id: &str) -> Result<NamespaceInfo> {
    if id.is_empty() {
        return Err(Error::invalid("namespace ID must be a non-empty string"));
    }
    let found = conn
        .prepare_cached(
            "SELECT namespace, description, created_at_ns,
                    (SELECT COUNT(*) FROM evento_store_messages m WHERE m.namespace = n.namespace)
             FROM evento_store_namespaces n WHERE namespace = ?1",
        )?
        .query_row([id], |r| {
            Ok(NamespaceInfo {
                namespace: r.get(0)?,
                description: r.get(1)?,
                created_at: from_ns(r.get(2)?),
                message_count: r.get(3)?,
            })
        })
        .optional()?;
    found.ok_or_else(|| not_found(id))
}

/// Whether `token` is the token of its namespace.
pub(super) fn check_token(conn: &Connection, token: &Token) -> Result<TokenCheck> {
    let hash: Option<String> = conn
        .prepare_cached("SELECT token_hash FROM evento_store_namespaces WHERE namespace = ?1")?
        .query_row([token.namespace()], |r| r.get(0))
        .optional()?;
    Ok(match hash {
        None => TokenCheck::UnknownNamespace,
        Some(h) if h == token.sha256_hex() => TokenCheck::Valid,
        Some(_) => TokenCheck::WrongToken,
    })
}

/// Whether namespace `id` exists.
pub(super) fn exists(conn: &Connection, id: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM evento_store_namespaces WHERE namespace = ?1)",
        )?
        .query_row([id], |r| r.get(0))?)
}
