//! The dispatcher's chores besides delivering: the fallback poll for
//! changes made by other connections, rescans after requeues, and
//! retention of sent rows.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::Dispatcher;
use crate::outbox::config::AfterDeadLetter;
use crate::outbox::retention;
use crate::outbox::sender::core::Event;
use crate::outbox::sender::queue;
use crate::time::{millis, now_ms};

impl Dispatcher {
    /// The fallback poll: looks for changes made by other connections
    /// (another process writing or requeueing).
    pub(super) fn poll(&mut self) {
        self.next_poll = Instant::now() + self.config.poll_interval_value();
        match self.watch.changed(&self.db, &self.namespace) {
            Ok((false, _)) => {}
            Ok((true, dead_letters_changed)) => {
                self.feed(Event::MoreWork);
                if dead_letters_changed {
                    self.rescan();
                }
            }
            Err(e) => self
                .shared
                .counters
                .error(format!("polling the outbox: {e}")),
        }
    }

    /// Scans the whole outbox again (rows behind the scan position may be
    /// sendable again, e.g. requeued dead letters).
    pub(super) fn rescan(&mut self) {
        if let Some(held) = self.load_dead_letters() {
            self.feed(Event::Held(held));
        }
        self.feed(Event::Rescan);
    }

    /// The streams held behind a dead letter (policy "hold"), and the
    /// dead-letter count for the poll.
    pub(super) fn load_dead_letters(&mut self) -> Option<HashSet<String>> {
        let ns = self.namespace.clone();
        let policy = self.config.after_dead_letter_value();
        let loaded = self.db.read(|c| {
            let held = match policy {
                AfterDeadLetter::HoldStream => queue::streams_with_dead_letters(c, &ns)?,
                AfterDeadLetter::Continue => Default::default(),
            };
            Ok((held, queue::dead_letter_count(c, &ns)?))
        });
        match loaded {
            Ok((held, count)) => {
                self.watch.set_dead_letters(count);
                Some(held)
            }
            Err(e) => {
                self.shared
                    .counters
                    .error(format!("reading dead letters: {e}"));
                None
            }
        }
    }

    /// Deletes sent rows past the retention age, a batch per transaction.
    pub(super) fn retention(&mut self) {
        self.next_retention = Instant::now() + self.config.retention_interval;
        let Some(age) = self.config.retention_value() else {
            return;
        };
        let cutoff = now_ms().saturating_sub(millis(age));
        let stop = &self.shared.stop;
        match retention::prune_sent(&self.db, &self.namespace, cutoff, || {
            stop.load(Ordering::Acquire)
        }) {
            Ok(0) => {}
            Ok(n) => log::debug!("outbox retention deleted {n} sent rows"),
            Err(e) => self.shared.counters.error(format!("outbox retention: {e}")),
        }
    }
}
