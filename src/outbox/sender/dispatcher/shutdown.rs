//! Letting the lanes run dry (on shutdown, or after losing the lease) and,
//! on shutdown, the last write-back and the release of the lease.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Dispatcher;
use crate::error::Result;
use crate::outbox::sender::deliver::Outcome;
use crate::outbox::sender::lane::LaneResult;
use crate::outbox::sender::queue::{self, Mark};
use crate::time::now_ms;

impl Dispatcher {
    /// Waits until every row handed to a lane has come back (lanes skip
    /// what they have not started) and returns what is worth writing back:
    /// deliveries, and the attempts given back for skipped rows. (A failed
    /// row keeps its recorded attempt and backoff.)
    pub(super) fn drain_lanes(&mut self) -> Vec<Mark> {
        self.flags.halted.store(true, Ordering::Release);
        let mut marks = Vec::new();
        while self.book.in_flight() > 0 {
            match self.results.recv_timeout(Duration::from_millis(200)) {
                Ok(results) => {
                    for LaneResult { lane, row, outcome } in results {
                        self.book.finish(&row);
                        self.router.done(lane, &row.stream);
                        match outcome {
                            Outcome::Delivered { duplicate } => marks.push(Mark::Sent {
                                seq: row.seq,
                                created_at_ms: row.created_at_ms,
                                duplicate,
                                id: row.id.clone(),
                                stream: row.stream.clone(),
                            }),
                            Outcome::Skipped => marks.push(Mark::Unclaim {
                                seq: row.seq,
                                attempts: row.attempts.saturating_sub(1),
                                next_attempt_at_ms: row.next_attempt_at_ms,
                            }),
                            Outcome::Failed { .. } => {}
                        }
                    }
                }
                Err(_) if self.lanes.iter().all(|l| l.thread.is_finished()) => break,
                Err(_) => {}
            }
        }
        marks
    }

    /// Shutting down: let in-flight sends finish, write back what they did,
    /// release the lease, stop the lanes.
    pub(super) fn finish(&mut self) {
        let mut marks = std::mem::take(&mut self.pending);
        marks.append(&mut self.drain_lanes());
        if self.lease.token().is_some() {
            match self.final_write(&marks) {
                Ok(()) => self.written_back(&marks),
                Err(e) => log::warn!("outbox sender: could not record the last outcomes: {e}"),
            }
        }
        for lane in self.lanes.drain(..) {
            drop(lane.tx);
            let _ = lane.thread.join();
        }
    }

    pub(super) fn final_write(&mut self, marks: &[Mark]) -> Result<()> {
        let lease = &mut self.lease;
        let namespace = &self.namespace;
        self.db.write(|tx| {
            if lease.renew(tx, now_ms())? {
                queue::apply(tx, namespace, marks, now_ms())?;
                lease.release(tx)?;
            }
            Ok(())
        })
    }
}
