//! Being the one working instance of a consumer: standing by until its
//! lease is free, renewing it, letting it go.

use std::time::{Duration, Instant};

use crossbeam_channel::select;
use rusqlite::Connection;

use crate::error::Result;
use crate::time::now_ms;

use crate::consumer::{position, processed};

use super::{Flow, Worker};

/// How often a standby checks whether the holder's process is gone (a
/// system call on the lease's lock file, no database access).
const PROBE_EVERY: Duration = Duration::from_millis(50);

impl Worker {
    /// How often the lease is renewed while nothing else renews it.
    pub(super) fn renew_every(&self) -> Duration {
        (self.config.lease_duration / 3).max(Duration::from_millis(1))
    }

    /// Renews the lease inside `tx` (the transaction about to do the
    /// consumer's work): `false` when another instance holds it now.
    pub(super) fn hold_lease_in(&mut self, tx: &Connection) -> Result<bool> {
        let held = self.lease.renew(tx, now_ms())?;
        if held {
            self.next_renew = Instant::now() + self.renew_every();
        }
        Ok(held)
    }

    /// Renews the lease in a transaction of its own.
    pub(super) fn renew_lease(&mut self) -> Flow {
        let db = self.db.clone();
        match db.write(|tx| self.hold_lease_in(tx)) {
            Ok(true) => Flow::Continue,
            Ok(false) => Flow::LeaseLost,
            Err(e) => {
                // Retried at the next turn; if it keeps failing the lease
                // expires and another instance takes over (and this one
                // finds out at its next transaction).
                log::warn!(
                    "consumer {:?}: renewing its lease failed: {e}",
                    self.key.consumer_id
                );
                self.shared.set_db_error(Some(e.to_string()));
                self.next_renew = Instant::now() + self.renew_every() / 3;
                Flow::Continue
            }
        }
    }

    /// Waits until this instance holds the lease; returns the position it
    /// starts from, or `None` when told to stop. Meanwhile the consumer's
    /// health is [`Standby`](crate::ConsumerHealth::Standby) and its
    /// position follows the working instance's.
    pub(super) fn stand_by(&mut self) -> Option<i64> {
        self.shared.set_standby(true);
        let attempt_every = (self.config.lease_duration / 5).max(Duration::from_millis(5));
        let mut next_attempt = Instant::now();
        loop {
            if self.shared.stopping() {
                return None;
            }
            if Instant::now() >= next_attempt || self.lease.holder_gone() {
                next_attempt = Instant::now() + attempt_every;
                let (lease, consumer_key) = (&mut self.lease, self.consumer_key);
                let attempt = self.db.write(|tx| {
                    let held = lease.try_acquire(tx, now_ms())?;
                    let recorded = processed::recorded_through(tx, consumer_key)?;
                    Ok((held, position::load_by_key(tx, consumer_key)?, recorded))
                });
                match attempt {
                    Ok((held, Some(position), recorded_through)) => {
                        self.shared.set_position(position);
                        self.shared.set_db_error(None);
                        if held {
                            self.recorded_through = recorded_through;
                            self.took_lease();
                            return Some(position);
                        }
                    }
                    Ok((_, None, _)) => {
                        log::error!(
                            "consumer {:?} of {:?} stops: its checkpoint was reset while it ran",
                            self.key.consumer_id,
                            self.key.category
                        );
                        return None;
                    }
                    Err(e) => self.shared.set_db_error(Some(e.to_string())),
                }
            }
            select! {
                recv(self.shutdown) -> _ => return None,
                default(PROBE_EVERY.min(attempt_every)) => {}
            }
        }
    }

    fn took_lease(&mut self) {
        log::info!(
            "consumer {:?} of {:?}: {} took its lease (fencing token {:?})",
            self.key.consumer_id,
            self.key.category,
            self.lease.holder(),
            self.lease.token()
        );
        self.shared.set_standby(false);
        self.next_renew = Instant::now() + self.renew_every();
        self.retry = None;
        self.paused_since = None;
    }

    /// Another instance holds the lease now: forget it and stand by.
    pub(super) fn lost_lease(&mut self) {
        log::warn!(
            "consumer {:?} of {:?}: {} lost its lease to another instance; standing by",
            self.key.consumer_id,
            self.key.category,
            self.lease.holder()
        );
        self.lease.forget();
        self.retry = None;
        self.shared.set_retrying(None);
        self.shared.set_standby(true);
    }

    /// Lets go of the lease (if held), so a standby takes over at once.
    pub(super) fn release_lease(&mut self) {
        if self.lease.token().is_none() {
            return;
        }
        let db = self.db.clone();
        if let Err(e) = db.write(|tx| self.lease.release(tx)) {
            log::warn!(
                "consumer {:?}: releasing its lease failed (a standby takes over when it expires): {e}",
                self.key.consumer_id
            );
            self.lease.forget();
        }
    }
}
