//! [`OutboxFilter`]: which outbox rows to list or count (by stream, state
//! and age), for inspecting the outbox without SQL.

use std::time::Duration;

use rusqlite::types::Value as SqlValue;
use rusqlite::{params_from_iter, Connection};

use super::record::{record_from_row, OutboxRecord, OutboxState, RECORD_COLUMNS};
use crate::error::Result;
use crate::time::{millis, now_ms};

/// Which outbox rows [`Outbox::list`](super::Outbox::list) and
/// [`Outbox::count`](super::Outbox::count) apply to. Every set field must
/// match; rows come oldest first (commit order).
///
/// ```
/// use std::time::Duration;
/// use eventodb_kit::outbox::{OutboxFilter, OutboxState};
///
/// let f = OutboxFilter::new()
///     .stream("account-7")
///     .state(OutboxState::Pending)
///     .older_than(Duration::from_secs(3600))
///     .limit(20);
/// assert_eq!(f.state, Some(OutboxState::Pending));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboxFilter {
    /// Only rows of this stream. Defaults to any.
    pub stream: Option<String>,
    /// Only rows in this state. Defaults to any.
    pub state: Option<OutboxState>,
    /// Only rows written at least this long ago. Defaults to any age.
    pub older_than: Option<Duration>,
    /// At most this many rows (for listing). Defaults to no limit.
    pub limit: Option<u32>,
}

impl OutboxFilter {
    /// Matches every row.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only rows of `stream`.
    pub fn stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = Some(stream.into());
        self
    }

    /// Only rows in `state`.
    pub fn state(mut self, state: OutboxState) -> Self {
        self.state = Some(state);
        self
    }

    /// Only rows written at least `age` ago.
    pub fn older_than(mut self, age: Duration) -> Self {
        self.older_than = Some(age);
        self
    }

    /// At most `limit` rows when listing.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// `WHERE …` and its parameters within `namespace`.
    fn where_clause(&self, namespace: &str) -> (String, Vec<SqlValue>) {
        let mut sql = String::from(" WHERE namespace = ?1");
        let mut args: Vec<SqlValue> = vec![namespace.to_string().into()];
        if let Some(stream) = &self.stream {
            args.push(stream.clone().into());
            sql.push_str(&format!(" AND stream = ?{}", args.len()));
        }
        match self.state {
            Some(OutboxState::Pending) => {
                sql.push_str(" AND sent_at IS NULL AND dead_lettered_at IS NULL")
            }
            Some(OutboxState::Sent) => sql.push_str(" AND sent_at IS NOT NULL"),
            Some(OutboxState::DeadLettered) => {
                sql.push_str(" AND sent_at IS NULL AND dead_lettered_at IS NOT NULL")
            }
            None => {}
        }
        if let Some(age) = self.older_than {
            let age_ms = millis(age);
            args.push(now_ms().saturating_sub(age_ms).into());
            sql.push_str(&format!(" AND created_at <= ?{}", args.len()));
        }
        (sql, args)
    }
}

/// Rows of `namespace` matching `filter`, in commit order.
pub(crate) fn list(
    conn: &Connection,
    namespace: &str,
    filter: &OutboxFilter,
) -> Result<Vec<OutboxRecord>> {
    let (clause, args) = filter.where_clause(namespace);
    let mut sql = format!("SELECT {RECORD_COLUMNS} FROM evento_outbox{clause} ORDER BY seq");
    if let Some(limit) = filter.limit {
        sql.push_str(&format!(" LIMIT {limit}"));
    }
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), record_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// How many rows of `namespace` match `filter` (its limit ignored).
pub(crate) fn count(conn: &Connection, namespace: &str, filter: &OutboxFilter) -> Result<u64> {
    let (clause, args) = filter.where_clause(namespace);
    let sql = format!("SELECT COUNT(*) FROM evento_outbox{clause}");
    let n: i64 = conn.query_row(&sql, params_from_iter(args), |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::db::Db;
    use crate::message::NewMessage;
    use crate::outbox::Outbox;

    #[test]
    fn filters_by_stream_state_and_age() {
        let db = Db::open_in_memory().unwrap();
        let outbox = Outbox::new(db.clone(), "default", Arc::default());
        let msg = NewMessage::new("T", serde_json::json!({}));
        let a = outbox.write("a-1", &msg).unwrap();
        let b = outbox.write("b-1", &msg).unwrap();
        let c = outbox.write("a-1", &msg).unwrap();
        db.write(|tx| {
            tx.execute("UPDATE evento_outbox SET sent_at = 1 WHERE id = ?1", [&b])?;
            tx.execute(
                "UPDATE evento_outbox SET dead_lettered_at = 1, created_at = 0 WHERE id = ?1",
                [&c],
            )?;
            Ok(())
        })
        .unwrap();
        let ids = |f: OutboxFilter| -> Vec<String> {
            outbox.list(&f).unwrap().into_iter().map(|r| r.id).collect()
        };
        assert_eq!(
            ids(OutboxFilter::new()),
            [a.as_str(), b.as_str(), c.as_str()]
        );
        assert_eq!(
            ids(OutboxFilter::new().stream("a-1")),
            [a.as_str(), c.as_str()]
        );
        assert_eq!(
            ids(OutboxFilter::new().state(OutboxState::Pending)),
            [a.as_str()]
        );
        assert_eq!(
            ids(OutboxFilter::new().state(OutboxState::Sent)),
            [b.as_str()]
        );
        assert_eq!(
            ids(OutboxFilter::new().state(OutboxState::DeadLettered)),
            [c.as_str()]
        );
        assert_eq!(
            ids(OutboxFilter::new().older_than(Duration::from_secs(3600))),
            [c.as_str()]
        );
        assert_eq!(ids(OutboxFilter::new().limit(1)), [a.as_str()]);
        assert_eq!(outbox.count(&OutboxFilter::new().limit(1)).unwrap(), 3);
        let other = Outbox::new(db, "other", Arc::default());
        assert_eq!(other.count(&OutboxFilter::new()).unwrap(), 0);
    }
}
