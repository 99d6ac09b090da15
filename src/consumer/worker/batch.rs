//! Handling one fetched batch: a transaction over as many messages as go
//! through, a savepoint per message, the position saved with them.

use std::time::Instant;

use crate::error::Result;
use crate::hooks::Handled;
use crate::message::Message;

use crate::consumer::handler::{self, Failure, Savepoints};
use crate::consumer::position::{self, ProcessedRecords};
use crate::consumer::stats::BatchCounts;

use super::{Flow, Worker};

/// How a batch transaction ended.
enum BatchEnd {
    /// Every message was handled or passed over, or the transaction's time
    /// ran out after at least one (the caller goes on with the rest).
    Done,
    /// The handler failed on the first message not consumed.
    Failed(Failure),
    /// Shutdown was requested; what was done is committed.
    Interrupted,
}

impl Worker {
    /// Handles a fetched batch to its end (or until shutdown or a halt).
    pub(super) fn process(&mut self, batch: &[Message]) -> Flow {
        let mut start = 0;
        let mut db_failures = 0u32;
        while start < batch.len() {
            match self.run_batch(&batch[start..]) {
                Ok((consumed, end)) => {
                    db_failures = 0;
                    if consumed > 0 && self.retry.take().is_some() {
                        self.shared.set_retrying(None);
                    }
                    start += consumed;
                    match end {
                        BatchEnd::Done => {}
                        BatchEnd::Interrupted => return Flow::Exit,
                        BatchEnd::Failed(failure) => {
                            match self.on_failure(&batch[start], failure) {
                                Ok(true) => start += 1,
                                Ok(false) => {}
                                Err(flow) => return flow,
                            }
                        }
                    }
                }
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
                }
            }
        }
        Flow::Continue
    }

    /// One transaction over `messages` until the end, a failure or shutdown.
    /// Returns how many messages it consumed (handled or passed over).
    fn run_batch(&mut self, messages: &[Message]) -> Result<(usize, BatchEnd)> {
        let mut conn = self.db.connection()?;
        let tx = conn.transaction()?;
        let began = Instant::now();
        let mut counts = BatchCounts::default();
        let mut last = None;
        let mut end = BatchEnd::Done;
        let mut consumed = 0;
        let observe = self.hooks.any();
        self.handled.clear();
        {
            let mut savepoints = Savepoints::prepare(&tx)?;
            let mut records = ProcessedRecords::prepare(&tx, &self.key)?;
            for message in messages {
                if self.shared.stopping() {
                    end = BatchEnd::Interrupted;
                    break;
                }
                // Commit what is done before the write lock is held too long;
                // the caller goes on with the rest in a new transaction.
                if consumed > 0 && began.elapsed() >= self.config.max_transaction_time {
                    break;
                }
                if !self.filter.accepts(message) {
                    counts.filtered += 1;
                } else {
                    savepoints.begin()?;
                    if !records.mark(message)? {
                        savepoints.keep()?;
                        counts.duplicates += 1;
                    } else {
                        let started = Instant::now();
                        match handler::run(&mut self.handler, message, &tx) {
                            Ok(()) => {
                                savepoints.keep()?;
                                let took = started.elapsed();
                                self.shared.handler_ran(took);
                                if observe {
                                    self.handled.push((consumed, took));
                                }
                                counts.processed += 1;
                            }
                            Err(failure) => {
                                savepoints.undo()?;
                                end = BatchEnd::Failed(failure);
                                break;
                            }
                        }
                    }
                }
                last = Some(message.global_position);
                consumed += 1;
            }
        }
        if let Some(position) = last {
            position::save(&tx, &self.key, position)?;
        }
        tx.commit()?;
        self.shared.committed(last, counts);
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
        Ok((consumed, end))
    }
}
