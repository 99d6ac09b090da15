//! Queries of the embedded store: `stream.get`, `stream.last`,
//! `category.get`, `ns.streams`, `ns.categories`.

use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::message::Message;
use crate::store::{
    check_batch_size, check_stream_name, CategoryInfo, CategoryQuery, StreamInfo, StreamListQuery,
    StreamQuery,
};
use crate::time::from_ms;

const COLUMNS: &str = "id, stream_name, type, position, global_position, data, metadata, time_ms";

/// A message row whose data or metadata did not decode.
struct Undecodable(Error);

/// Reads a message row; a row whose JSON does not decode (deeper than
/// serde_json reads, say) is [`Error::Undecodable`], naming it.
fn message_from_row(row: &Row<'_>) -> rusqlite::Result<std::result::Result<Message, Undecodable>> {
    let id: String = row.get(0)?;
    let stream_name: String = row.get(1)?;
    let message_type: String = row.get(2)?;
    let position: i64 = row.get(3)?;
    let global_position: i64 = row.get(4)?;
    let data: Option<String> = row.get(5)?;
    let metadata: Option<String> = row.get(6)?;
    let parse = |text: Option<String>, what: &str| -> std::result::Result<Option<Value>, String> {
        text.map(|t| serde_json::from_str(&t).map_err(|e| format!("its {what}: {e}")))
            .transpose()
    };
    let decoded = parse(data, "data").and_then(|d| Ok((d, parse(metadata, "metadata")?)));
    Ok(match decoded {
        Ok((data, metadata)) => Ok(Message {
            id,
            stream_name,
            message_type,
            position,
            global_position,
            data: data.unwrap_or(Value::Null),
            metadata,
            time: from_ms(row.get(7)?),
        }),
        Err(reason) => Err(Undecodable(Error::Undecodable {
            id,
            stream: stream_name,
            message_type,
            position,
            global_position,
            reason,
        })),
    })
}

/// Collects decoded rows up to the first that does not decode: the rows
/// before it, or — when it is the first — its [`Error::Undecodable`].
fn collect_until_undecodable(
    rows: impl Iterator<Item = rusqlite::Result<std::result::Result<Message, Undecodable>>>,
) -> Result<Vec<Message>> {
    let mut out = Vec::new();
    for row in rows {
        match row? {
            Ok(message) => out.push(message),
            Err(Undecodable(e)) if out.is_empty() => return Err(e),
            Err(_) => break,
        }
    }
    Ok(out)
}

/// SQLite's LIMIT for a `batchSize`: ≤ 0 means unlimited (-1).
fn limit(batch_size: i64) -> i64 {
    if batch_size > 0 {
        batch_size
    } else {
        -1
    }
}

/// `stream.get`.
pub(super) fn stream_messages(
    conn: &Connection,
    namespace: &str,
    stream: &str,
    query: &StreamQuery,
) -> Result<Vec<Message>> {
    check_stream_name(stream)?;
    check_batch_size(query.batch_size)?;
    let (filter, from) = match query.global_position {
        Some(gp) => ("global_position", gp),
        None => ("position", query.position),
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM evento_store_messages
         WHERE namespace = ?1 AND stream_name = ?2 AND {filter} >= ?3
         ORDER BY position LIMIT ?4"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![namespace, stream, from, limit(query.batch_size)],
        message_from_row,
    )?;
    collect_until_undecodable(rows)
}

/// `stream.last`.
pub(super) fn last_message(
    conn: &Connection,
    namespace: &str,
    stream: &str,
    message_type: Option<&str>,
) -> Result<Option<Message>> {
    check_stream_name(stream)?;
    let found = match message_type.filter(|t| !t.is_empty()) {
        Some(t) => conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM evento_store_messages
                 WHERE namespace = ?1 AND stream_name = ?2 AND type = ?3
                 ORDER BY position DESC LIMIT 1"
            ))?
            .query_row(params![namespace, stream, t], message_from_row)
            .optional()?,
        None => conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM evento_store_messages
                 WHERE namespace = ?1 AND stream_name = ?2
                 ORDER BY position DESC LIMIT 1"
            ))?
            .query_row(params![namespace, stream], message_from_row)
            .optional()?,
    };
    match found {
        None => Ok(None),
        Some(Ok(message)) => Ok(Some(message)),
        Some(Err(Undecodable(e))) => Err(e),
    }
}

/// `category.get`: filters in SQL so the batch limit applies after them.
pub(super) fn category_messages(
    conn: &Connection,
    namespace: &str,
    category: &str,
    query: &CategoryQuery,
) -> Result<Vec<Message>> {
    check_batch_size(query.batch_size)?;
    let mut sql = format!(
        "SELECT {COLUMNS} FROM evento_store_messages WHERE namespace = ?1 AND global_position >= ?2"
    );
    let mut args: Vec<SqlValue> = vec![namespace.to_string().into(), query.position.into()];
    if !category.is_empty() {
        args.push(category.to_string().into());
        sql.push_str(&format!(" AND category = ?{}", args.len()));
    }
    if let Some(corr) = query.correlation.as_deref().filter(|c| !c.is_empty()) {
        // EventoDB (SQLite): correlationStreamName LIKE 'X-%' — ASCII
        // case-insensitive, and % or _ in X act as wildcards.
        args.push(format!("{corr}-%").into());
        sql.push_str(&format!(
            " AND json_extract(metadata, '$.correlationStreamName') LIKE ?{}",
            args.len()
        ));
    }
    if let Some(group) = query.consumer_group {
        args.push(group.size().into());
        args.push(group.member().into());
        sql.push_str(&format!(
            " AND cg_hash IS NOT NULL AND cg_hash % ?{} = ?{}",
            args.len() - 1,
            args.len()
        ));
    }
    args.push(limit(query.batch_size).into());
    sql.push_str(&format!(" ORDER BY global_position LIMIT ?{}", args.len()));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), message_from_row)?;
    collect_until_undecodable(rows)
}

/// `ns.streams`.
pub(super) fn streams(
    conn: &Connection,
    namespace: &str,
    query: &StreamListQuery,
) -> Result<Vec<StreamInfo>> {
    if !(1..=1000).contains(&query.limit) {
        return Err(Error::invalid("limit must be between 1 and 1000"));
    }
    let prefix = format!("{}%", query.prefix.as_deref().unwrap_or(""));
    let cursor = query.cursor.as_deref().unwrap_or("");
    let mut stmt = conn.prepare_cached(
        "SELECT stream_name, MAX(position), MAX(time_ms) FROM evento_store_messages
         WHERE namespace = ?1 AND stream_name LIKE ?2 AND stream_name > ?3
         GROUP BY stream_name ORDER BY stream_name LIMIT ?4",
    )?;
    let rows = stmt.query_map(params![namespace, prefix, cursor, query.limit], |r| {
        Ok(StreamInfo {
            stream: r.get(0)?,
            version: r.get(1)?,
            last_activity: from_ms(r.get(2)?),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// `ns.categories`.
pub(super) fn categories(conn: &Connection, namespace: &str) -> Result<Vec<CategoryInfo>> {
    let mut stmt = conn.prepare_cached(
        "SELECT category, COUNT(*), COUNT(DISTINCT stream_name) FROM evento_store_messages
         WHERE namespace = ?1 GROUP BY category ORDER BY category",
    )?;
    let rows = stmt.query_map([namespace], |r| {
        Ok(CategoryInfo {
            category: r.get(0)?,
            message_count: r.get(1)?,
            stream_count: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
