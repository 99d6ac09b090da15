//! [`Replay`]: running a handler over a range of a category without touching
//! any consumer's position or processed records.

use std::time::SystemTime;

use rusqlite::Transaction;

use crate::error::{Error, Result};
use crate::kit::Kit;
use crate::message::Message;
use crate::store::{CategoryQuery, MAX_BATCH_SIZE};
use crate::write_scope::WriteScope;

use super::filter::MessageFilter;
use super::handler::{self, Failure, Savepoints};
use super::position::position_at_time;

/// Runs a handler over a range of a category — between global positions,
/// between times, of some types — in the caller's thread. Made by
/// [`Kit::replay`].
///
/// Each fetched batch is handled in one transaction on the kit's database
/// with a savepoint per message, like a consumer, but no position moves and
/// no processed record is written: use it to rebuild a read model or to run a
/// new projection over history.
///
/// ```
/// use eventodb_kit::{Kit, MessageStore, NewMessage, WriteOptions};
///
/// let dir = tempfile::tempdir()?;
/// let kit = Kit::builder().database(dir.path().join("app.db")).build()?;
/// for n in 1..=10 {
///     let t = if n % 2 == 0 { "Deposited" } else { "Withdrawn" };
///     kit.store().write("account-1", &NewMessage::new(t, serde_json::json!({ "n": n })), &WriteOptions::new())?;
/// }
/// let mut seen = Vec::new();
/// let report = kit
///     .replay("account")
///     .from_position(3)
///     .to_position(8)
///     .types(["Deposited"])
///     .run(|msg, _tx| {
///         seen.push(msg.global_position);
///         Ok(())
///     })?;
/// assert_eq!(seen, [4, 6, 8]);
/// assert_eq!(report.handled, 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use = "a replay does nothing until run"]
pub struct Replay {
    kit: Kit,
    category: String,
    from_position: i64,
    to_position: Option<i64>,
    from_time: Option<SystemTime>,
    to_time: Option<SystemTime>,
    types: Option<Vec<String>>,
    correlation: Option<String>,
    batch_size: i64,
}

/// What a [`Replay`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ReplayReport {
    /// Messages the handler ran for.
    pub handled: u64,
    /// Messages in the range passed over by the type filter.
    pub skipped: u64,
    /// Global position of the last message in the range, if any.
    pub last_position: Option<i64>,
}

impl Replay {
    pub(crate) fn new(kit: Kit, category: &str) -> Self {
        Replay {
            kit,
            category: category.to_string(),
            from_position: 1,
            to_position: None,
            from_time: None,
            to_time: None,
            types: None,
            correlation: None,
            batch_size: 1000,
        }
    }

    /// The first global position (inclusive). Defaults to 1.
    pub fn from_position(mut self, global_position: i64) -> Self {
        self.from_position = global_position.max(1);
        self
    }

    /// The last global position (inclusive). Defaults to the end.
    pub fn to_position(mut self, global_position: i64) -> Self {
        self.to_position = Some(global_position);
        self
    }

    /// Starts at the first message recorded at or after `time`. Defaults to
    /// the beginning.
    pub fn from_time(mut self, time: SystemTime) -> Self {
        self.from_time = Some(time);
        self
    }

    /// Stops after the last message recorded at or before `time`. Defaults
    /// to the end.
    pub fn to_time(mut self, time: SystemTime) -> Self {
        self.to_time = Some(time);
        self
    }

    /// Only these message types: exact names and prefixes ending in `*`.
    /// Defaults to every type.
    pub fn types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.types = Some(types.into_iter().map(Into::into).collect());
        self
    }

    /// Only messages correlated with category `category`. Defaults to none.
    pub fn correlation(mut self, category: impl Into<String>) -> Self {
        self.correlation = Some(category.into());
        self
    }

    /// Messages fetched (and committed) at a time (1..=10 000). Defaults to 1000.
    pub fn batch_size(mut self, batch_size: i64) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Runs `handler` on every message of the range, in global order.
    ///
    /// Errors: [`Error::Handler`] when the handler fails or panics on a
    /// message (what came before it is committed; replay again from its
    /// position to go on); [`Error::InvalidInput`] for a bad type pattern or
    /// batch size; store and database errors.
    pub fn run<F>(self, mut handler: F) -> Result<ReplayReport>
    where
        F: FnMut(&Message, &Transaction<'_>) -> Result<()>,
    {
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            return Err(Error::invalid(format!(
                "replay batch size must be between 1 and {MAX_BATCH_SIZE}, not {}",
                self.batch_size
            )));
        }
        let filter = MessageFilter::new(self.types.as_deref(), Vec::new())?;
        let mut handler = |m: &Message, tx: &Transaction<'_>| handler(m, tx).map_err(Failure::from);
        let store = self.kit.store();
        let mut next = self.from_position;
        if let Some(t) = self.from_time {
            next = next.max(position_at_time(store.as_ref(), &self.category, t)? + 1);
        }
        let in_range = |m: &Message| {
            self.to_position.is_none_or(|to| m.global_position <= to)
                && self.to_time.is_none_or(|to| m.time <= to)
        };
        let mut report = ReplayReport::default();
        loop {
            if self.to_position.is_some_and(|to| next > to) {
                return Ok(report);
            }
            let mut query = CategoryQuery::new()
                .position(next)
                .batch_size(self.batch_size);
            query.correlation = self.correlation.clone();
            let batch = store.get_category(&self.category, &query)?;
            let Some(last) = batch.last() else {
                return Ok(report);
            };
            next = last.global_position + 1;
            let in_batch = batch.iter().take_while(|m| in_range(m)).count();
            run_batch(
                &self.kit,
                &batch[..in_batch],
                &filter,
                &mut handler,
                &mut report,
            )?;
            if in_batch < batch.len() {
                return Ok(report);
            }
        }
    }
}

fn run_batch<H>(
    kit: &Kit,
    messages: &[Message],
    filter: &MessageFilter,
    handler: &mut H,
    report: &mut ReplayReport,
) -> Result<()>
where
    H: FnMut(&Message, &Transaction<'_>) -> Result<(), Failure>,
{
    if messages.is_empty() {
        return Ok(());
    }
    let mut conn = kit.db().connection()?;
    let scope = WriteScope::enter(kit.db().file())?;
    let tx = conn.transaction()?;
    let mut done = *report;
    let mut failed = None;
    {
        let mut savepoints = Savepoints::prepare(&tx)?;
        for message in messages {
            if !filter.accepts(message) {
                done.skipped += 1;
                done.last_position = Some(message.global_position);
                continue;
            }
            let work = savepoints.begin()?;
            match handler::run(handler, message, &tx) {
                Ok(()) => {
                    work.keep()?;
                    done.handled += 1;
                    done.last_position = Some(message.global_position);
                }
                Err(failure) => {
                    work.undo()?;
                    failed = Some(Error::Handler {
                        message_id: message.id.clone(),
                        global_position: message.global_position,
                        message: failure.error,
                    });
                    break;
                }
            }
        }
    }
    tx.commit()?;
    scope.committed();
    *report = done;
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
