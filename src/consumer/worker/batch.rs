//! Handling one fetched batch: transactions over as many messages as go
//! through in [`max_transaction_time`](crate::ConsumerBuilder::max_transaction_time),
//! each renewing the lease first and saving the position last.
//!
//! A transaction runs optimistically — a processed record and the handler
//! per message, nothing else — because handlers nearly always succeed. When
//! one fails, the transaction rolls back whole, and the messages before the
//! failing one run again carefully: each in a savepoint, so that a failure
//! now undoes that message's work alone and commits the ones before it.
//! Only then is the failure dealt with (see `failure`). Handlers of messages
//! before a failing one may therefore run twice, of which only the second
//! run's work is committed — as after any rolled-back transaction.

use std::time::Instant;

use rusqlite::Transaction;

use crate::error::Result;
use crate::hooks::Handled;
use crate::message::Message;
use crate::write_scope::WriteScope;

use crate::consumer::handler::{self, Failure, Savepoints};
use crate::consumer::position;
use crate::consumer::processed::ProcessedRecords;
use crate::consumer::stats::BatchCounts;
use crate::time::now_ms;

use super::{Flow, Worker};

/// How a batch transaction ended.
enum BatchEnd {
    /// Every message was handled or passed over, or the transaction's time
    /// ran out after at least one (the caller goes on with the rest).
    Done,
    /// The handler failed on the message at this index (of the slice the
    /// transaction was given). Optimistically: nothing was committed.
    /// Carefully: the messages before it were.
    Failed(usize, Failure),
    /// Shutdown was requested; what was done is committed.
    Interrupted,
    /// Another instance holds the lease: nothing was committed.
    LeaseLost,
}

/// How a transaction runs its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No savepoints: a failure rolls the whole transaction back.
    Optimistic,
    /// A savepoint per message: a failure undoes that message alone.
    Careful,
}

impl Worker {
    /// Handles a fetched batch to its end (or until shutdown, a halt or the
    /// loss of the lease).
    pub(super) fn process(&mut self, batch: &[Message]) -> Flow {
        let mut start = 0;
        let mut db_failures = 0u32;
        // Messages below this index run carefully (after a failure at it,
        // whose failure is kept to deal with once they are committed).
        let mut careful_until = 0;
        let mut failed_at_end: Option<Failure> = None;
        while start < batch.len() {
            let mode = if start < careful_until {
                Mode::Careful
            } else {
                Mode::Optimistic
            };
            let end = if mode == Mode::Careful {
                careful_until
            } else {
                batch.len()
            };
            let result = match self.run_batch(&batch[start..end], mode) {
                Ok(r) => r,
                Err(e) => {
                    db_failures = db_failures.saturating_add(1);
                    log::warn!(
                        "consumer {:?}: committing a batch failed: {e}",
                        self.key.consumer_id
                    );
                    self.shared.set_db_error(Some(e.to_string()));
                    let delay = self.config.io_retry.jittered_delay_after(db_failures);
                    if self.pause(delay) == Flow::Exit {
                        return Flow::Exit;
                    }
                    continue;
                }
            };
            db_failures = 0;
            let (consumed, end_state) = result;
            if consumed > 0 {
                if self.retry.take().is_some() {
                    self.shared.set_retrying(None);
                }
                if self.paused_since.take().is_some() {
                    log::info!("consumer {:?} resumes", self.key.consumer_id);
                    self.shared.set_store_error(None);
                }
            }
            start += consumed;
            let failure = match end_state {
                BatchEnd::Done => {
                    if start == careful_until {
                        match failed_at_end.take() {
                            // The careful run reached the message that
                            // failed: deal with that failure now.
                            Some(f) => f,
                            None => continue,
                        }
                    } else {
                        continue;
                    }
                }
                BatchEnd::Interrupted => return Flow::Exit,
                BatchEnd::LeaseLost => return Flow::LeaseLost,
                BatchEnd::Failed(at, failure) if mode == Mode::Optimistic && at > 0 => {
                    careful_until = start + at;
                    failed_at_end = Some(failure);
                    continue;
                }
                BatchEnd::Failed(_, failure) => {
                    // At `start`: carefully, what came before is committed.
                    careful_until = 0;
                    failed_at_end = None;
                    failure
                }
            };
            match self.on_failure(&batch[start], failure) {
                Ok(true) => start += 1,
                Ok(false) => {}
                Err(flow) => return flow,
            }
        }
        Flow::Continue
    }

    /// One transaction over `messages` until the end, a failure or shutdown.
    /// Returns how many messages it committed (handled or passed over).
    fn run_batch(&mut self, messages: &[Message], mode: Mode) -> Result<(usize, BatchEnd)> {
        let mut conn = self.db.connection()?;
        let scope = WriteScope::enter(self.db.file())?;
        let tx = conn.transaction()?;
        if !self.hold_lease_in(&tx)? {
            return Ok((0, BatchEnd::LeaseLost));
        }
        let began = Instant::now();
        // One clock reading per message: when the previous one's handler
        // ended is when this one's starts (the kit's own work in between is
        // well below the histogram's microsecond resolution).
        let mut clock = began;
        let mut counts = BatchCounts::default();
        let mut last = None;
        let mut end = BatchEnd::Done;
        let mut consumed = 0;
        self.handled.clear();
        let (Some(first), Some(last_message)) = (messages.first(), messages.last()) else {
            return Ok((0, BatchEnd::Done));
        };
        let mut records = ProcessedRecords::load(
            &tx,
            self.consumer_key,
            self.recorded_through,
            first.global_position,
            last_message.global_position,
        )?;
        {
            let mut savepoints = match mode {
                Mode::Careful => Some(Savepoints::prepare(&tx)?),
                Mode::Optimistic => None,
            };
            for (i, message) in messages.iter().enumerate() {
                if self.shared.stopping() {
                    end = BatchEnd::Interrupted;
                    break;
                }
                // Commit what is done before the write lock is held too long;
                // the caller goes on with the rest in a new transaction.
                if consumed > 0 && clock.duration_since(began) >= self.config.max_transaction_time {
                    break;
                }
                if !self.filter.accepts(message) {
                    counts.filtered += 1;
                } else {
                    let work = match savepoints.as_mut() {
                        Some(s) => Some(s.begin()?),
                        None => None,
                    };
                    if records.contains(message) {
                        counts.duplicates += 1;
                    } else if let Err(failure) = self.handle(i, message, &tx, &mut clock) {
                        if let Some(work) = work {
                            work.undo()?;
                        }
                        end = BatchEnd::Failed(i, failure);
                        break;
                    } else {
                        records.add(message);
                        counts.processed += 1;
                    }
                    if let Some(work) = work {
                        work.keep()?;
                    }
                }
                last = Some(message.global_position);
                consumed += 1;
            }
        }
        if mode == Mode::Optimistic && matches!(end, BatchEnd::Failed(..)) {
            // Roll back whole; the caller redoes the messages before the
            // failing one carefully.
            drop(tx);
            self.handled.clear();
            return Ok((0, end));
        }
        let now = now_ms();
        let recorded = records.write(&tx, now)?;
        // A message recorded was consumed, so `last` is set whenever
        // `recorded` is: the position row is updated once, for both.
        debug_assert!(recorded.is_none() || last.is_some());
        if let Some(position) = last {
            position::advance_with(&tx, self.consumer_key, position, recorded, now)?;
        }
        tx.commit()?;
        scope.committed();
        if let Some(gp) = recorded {
            self.recorded_through = self.recorded_through.max(gp);
        }
        self.shared.committed(last, counts);
        self.emit_handled(messages);
        Ok((consumed, end))
    }

    /// Runs the handler on the `i`-th message of the transaction; `clock`
    /// is when it starts, and becomes when it ended.
    fn handle(
        &mut self,
        i: usize,
        message: &Message,
        tx: &Transaction<'_>,
        clock: &mut Instant,
    ) -> Result<(), Failure> {
        let result = handler::run(&mut self.handler, message, tx);
        let now = Instant::now();
        let took = now.duration_since(*clock);
        *clock = now;
        result?;
        self.shared.handler_ran(took);
        if self.hooks.any() {
            self.handled.push((i, took));
        }
        Ok(())
    }

    /// Tells the hooks about the messages a committed transaction handled.
    fn emit_handled(&mut self, messages: &[Message]) {
        for &(i, took) in &self.handled {
            self.hooks.emit(|h| {
                h.on_handled(&Handled {
                    category: &self.key.category,
                    consumer_id: &self.key.consumer_id,
                    message: &messages[i],
                    took,
                })
            });
        }
        self.handled.clear();
    }
}
