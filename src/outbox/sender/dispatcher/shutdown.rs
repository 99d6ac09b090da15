//! Stopping: the writes in flight get a bounded while to be answered, then
//! the last outcomes are written back, the rows still owned are given back
//! (their attempts too), the lease is released and every thread joined.

use std::time::{Duration, Instant};

use super::{checked_event, Dispatcher, Woken};
use crate::error::Result;
use crate::outbox::sender::core::Event;
use crate::outbox::sender::queue::{self, Mark};
use crate::time::now_ms;

/// How long a stopping checker may take to finish a read.
const CHECKER_WAIT: Duration = Duration::from_millis(500);

impl Dispatcher {
    /// Shutting down (see the module docs).
    pub(super) fn finish(&mut self) {
        self.feed(Event::Stop);
        let deadline = Instant::now() + self.config.shutdown_wait;
        while self.core.in_flight() > 0 && self.lease.token().is_some() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log::warn!(
                    "outbox sender: {} writes still unanswered at shutdown; they are resent later",
                    self.core.in_flight()
                );
                break;
            }
            match self.wait_for(left) {
                Woken::Answer(answer) => self.feed(Event::Answer {
                    tag: answer.tag,
                    result: answer.result,
                }),
                Woken::LaneDown(lane) => self.feed(Event::LaneReset { lane }),
                Woken::Checked(checked) => self.feed(checked_event(checked)),
                Woken::CheckerDown | Woken::Wake | Woken::Stop | Woken::Nothing => {}
            }
        }
        let marks = self.core.finish();
        if self.lease.token().is_some() {
            match self.final_write(&marks) {
                Ok(()) => self.written_back(&marks),
                Err(e) => log::warn!("outbox sender: could not record the last outcomes: {e}"),
            }
        }
        // Dropping a pipeline stops and joins its threads.
        self.pipelines.clear();
        self.checker.stop(CHECKER_WAIT);
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
