//! Becoming and ceasing to be the active sender: standing by until the
//! lease is free, starting afresh on taking it, letting go of everything in
//! flight on losing it.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::select;

use super::Dispatcher;
use crate::outbox::sender::core::Event;
use crate::time::now_ms;

/// How often a standby looks whether the holder's process is gone.
const HOLDER_CHECK: Duration = Duration::from_millis(50);

impl Dispatcher {
    /// Tries to take the lease; when another sender holds it, waits a
    /// fifth of the lease duration (or until told to stop) — looking every
    /// 50 ms whether the holder's process died (its OS lock came free), so
    /// that a standby on the same machine takes over at once. Answers to
    /// writes made before the lease was lost are taken (and ignored)
    /// meanwhile.
    pub(super) fn stand_by(&mut self) {
        let acquired = self.db.write(|tx| self.lease.try_acquire(tx, now_ms()));
        match acquired {
            Ok(true) => return self.took_lease(),
            Ok(false) => {}
            Err(e) => self
                .shared
                .counters
                .error(format!("taking the sender lease: {e}")),
        }
        let until =
            Instant::now() + (self.config.lease_duration_value() / 5).max(Duration::from_millis(5));
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || self.lease.holder_gone() {
                break;
            }
            select! {
                recv(self.stop) -> _ => break,
                default(left.min(HOLDER_CHECK)) => {}
            }
        }
        for pipeline in &self.pipelines {
            while pipeline.answers().try_recv().is_ok() {}
        }
        while self.checker.results.try_recv().is_ok() {}
        // Wake-ups meant for the active sender are of no use here.
        while self.wake.try_recv().is_ok() {}
    }

    /// Starts afresh as the active sender: every stream open again, the
    /// whole outbox to scan, dead letters reloaded.
    pub(super) fn took_lease(&mut self) {
        log::info!(
            "outbox sender {} took the lease {} (fencing token {:?})",
            self.lease.holder(),
            self.lease.name(),
            self.lease.token()
        );
        self.shared.counters.active.store(true, Ordering::Release);
        // Whatever the row says about a pause is stored anew.
        self.stored_pause = None;
        self.rescans_seen = self.hub.rescan_generation();
        let held = self.load_dead_letters().unwrap_or_default();
        self.feed(Event::LeaseTaken { held });
        let now = Instant::now();
        self.next_renew = now + self.renew_every();
        self.next_poll = now + self.config.poll_interval_value();
        self.next_retention = now;
    }

    /// Someone else holds the lease now: forget everything in flight (their
    /// sender will resend it; the store recognises the ids) and stand by.
    pub(super) fn lost_lease(&mut self) {
        log::warn!(
            "outbox sender {} lost the lease {}",
            self.lease.holder(),
            self.lease.name()
        );
        self.shared.counters.active.store(false, Ordering::Release);
        self.shared
            .counters
            .error("lost the sender lease to another sender");
        self.lease.forget();
        self.stored_pause = None;
        self.feed(Event::LeaseLost);
    }
}
