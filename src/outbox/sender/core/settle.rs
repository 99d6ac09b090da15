//! Settling rows in doubt — written, or not? — by reading their stream:
//! which part of the tail to read ([`TailRead`]: after the rows'
//! [`Floor`](super::stream::Floor)s, or the last messages), reads named by
//! a [`ReadId`] so only the read asked for last counts, and what a read
//! found ([`Reconciliation`]) does to the rows: delivered, sent again, or
//! (only after a read of the whole tail) dead-lettered.

use std::collections::HashMap;

use super::answer::is_link_failure;
use super::pause::LINK_STREAK_PAUSE;
use super::stream::{Floor, Reconcile};
use super::{Core, Effect, Now};
use crate::disposition::{Disposition, PauseReason};
use crate::error::Result;

/// Messages of the stream's tail a reconciling read looks at besides the
/// rows in doubt (room for other writers' appends since).
const RECONCILE_SLACK: usize = 1_000;

/// Failed reads of a stream's tail retried at once before the stream waits:
/// as many as the broken connections in a row that pause the sender, so
/// that a store gone behind a proxy pauses the sender (and is probed)
/// before any stream backs off on its own.
const QUICK_RECONCILES: u32 = LINK_STREAK_PAUSE;

/// Names one read of a stream's tail; what it found carries it (a read
/// asked for before a lease was lost, or before the checker restarted,
/// settles nothing: it may have run before the writes it would settle).
pub(crate) type ReadId = u64;

/// Which part of a stream a reconciling read looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TailRead {
    /// The messages after this position (one that existed before any row
    /// in doubt was first sent: those can only have landed after it).
    After(i64),
    /// The last `lookback` messages; `hint` is the stream's version as last
    /// known (saves a read when right).
    Last { lookback: usize, hint: Option<i64> },
    /// Every message of the stream: the only read that may conclude that
    /// an id the store says is taken is not this sender's message.
    Whole,
}

impl TailRead {
    /// Whether a read of this part settles `verdict` on a row (with the
    /// application's expected version `expected`) that it did not find.
    fn concludes(self, verdict: &Verdict, expected: Option<i64>) -> bool {
        match (self, verdict) {
            (TailRead::Whole, _) => true,
            // Written with expectedVersion e, a message is at e + 1.
            (TailRead::After(after), Verdict::Conflict { .. }) => {
                expected.is_some_and(|e| after <= e)
            }
            _ => false,
        }
    }
}

/// What a read of a stream's tail found.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reconciliation {
    /// The stream's version (`None`: empty).
    pub(crate) version: Option<i64>,
    /// Ids (lower case) of the messages read, with their type and position.
    pub(crate) messages: HashMap<String, (String, i64)>,
}

impl Reconciliation {
    /// Nothing read yet, the version known to be at least `version`.
    pub(crate) fn at(version: Option<i64>) -> Self {
        Reconciliation {
            version,
            messages: HashMap::new(),
        }
    }
}

/// What the store said about a row that needs a read to settle.
#[derive(Debug)]
pub(super) enum Verdict {
    /// "Id already exists": ours, or another message's?
    Duplicate,
    /// The application's expected version did not hold (the stream was
    /// at `actual`): is our message already at that position?
    Conflict { error: String, actual: Option<i64> },
}

impl Core {
    /// Leaves `seq` at the head of its stream until a read of the stream
    /// says whether the store has it.
    pub(super) fn settle_by_reading(&mut self, seq: i64, verdict: Verdict) {
        let Some(owned) = self.rows.get_mut(&seq) else {
            return;
        };
        owned.verdict = Some(verdict);
        owned.doubt = true;
        let stream = owned.row.stream.clone();
        if let Some(st) = self.streams.get_mut(&stream) {
            st.break_flight(None);
        }
        self.want_reconcile(&stream);
        self.requeue(seq);
    }

    /// `stream`'s tail is to be read once its writes in flight are back.
    pub(super) fn want_reconcile(&mut self, stream: &str) {
        if let Some(st) = self.streams.get_mut(stream) {
            st.reconcile = Reconcile::Wanted;
        }
        self.reconciles.insert(stream.to_string());
    }

    /// Starts the reads wanted by streams whose writes are all back.
    pub(super) fn issue_reconciles(&mut self, out: &mut Vec<Effect>) {
        let due: Vec<String> = self
            .reconciles
            .iter()
            .filter(|s| {
                self.streams
                    .get(*s)
                    .is_some_and(|st| st.in_flight.is_empty() && st.reconcile == Reconcile::Wanted)
            })
            .cloned()
            .collect();
        for stream in due {
            self.reconciles.remove(&stream);
            // Every queued row is looked for (one the store has already —
            // an earlier process sent it — is settled by the same read);
            // the rows in doubt decide where the read starts.
            let (mut ids, mut doubtful, mut floor) = (Vec::new(), 0, None::<Floor>);
            if let Some(st) = self.streams.get(&stream) {
                for owned in st.queue.iter().filter_map(|s| self.rows.get(s)) {
                    ids.push(owned.row.id.to_ascii_lowercase());
                    if owned.doubt {
                        doubtful += 1;
                        // A conflict on the application's expected version
                        // e, the stream at `actual`: were it ours, it would
                        // be at e + 1 — so a read from the lower of the two
                        // (a position that existed, or -1) settles it,
                        // whatever the row's floor.
                        let at = match (&owned.verdict, owned.row.expected_version) {
                            (Some(Verdict::Conflict { actual, .. }), Some(e)) => {
                                Floor::After(e.min(actual.unwrap_or(-1)))
                            }
                            _ => owned.floor,
                        };
                        floor = Some(floor.map_or(at, |f| f.lowest(at)));
                    }
                }
            }
            let Some(st) = self.streams.get_mut(&stream) else {
                continue;
            };
            if ids.is_empty() {
                // Nothing of the stream left to settle (given back meanwhile).
                st.reconcile = Reconcile::None;
                st.whole_read = false;
                continue;
            }
            let read = self.next_read;
            self.next_read += 1;
            let tail = match floor {
                _ if st.whole_read => TailRead::Whole,
                // Every row in doubt went out after the stream reached
                // this position: what this sender stored is after it.
                Some(Floor::After(v)) => TailRead::After(v),
                _ => TailRead::Last {
                    lookback: doubtful + RECONCILE_SLACK,
                    hint: st.version_hint(),
                },
            };
            st.reconcile = Reconcile::Running { read, tail };
            out.push(Effect::Reconcile {
                stream,
                read,
                tail,
                ids,
            });
        }
    }

    pub(super) fn reconciled(
        &mut self,
        stream: &str,
        read: ReadId,
        result: Result<Reconciliation>,
        now: Now,
        out: &mut Vec<Effect>,
    ) {
        let Some(st) = self.streams.get_mut(stream) else {
            return;
        };
        let tail = match st.reconcile {
            Reconcile::Running { read: r, tail } if r == read => tail,
            _ => return,
        };
        st.reconcile = Reconcile::None;
        let found = match result {
            Ok(found) => found,
            Err(e) => {
                let failures = self.streams.get_mut(stream).map_or(1, |st| {
                    st.reconcile_failures += 1;
                    st.reconcile_failures
                });
                // A broken read is a broken connection like a broken
                // write: when they keep breaking with no answer in
                // between, the store is gone — pause and probe, rather
                // than back each stream off for longer and longer.
                let link = is_link_failure(&e);
                if link {
                    self.link_streak += 1;
                }
                match e.disposition() {
                    Disposition::Pause(_) if link && self.link_streak >= LINK_STREAK_PAUSE => {
                        self.pause_for(PauseReason::Unreachable, &e, now, out);
                        self.want_reconcile(stream);
                    }
                    // The store as a whole (refused, token, certificate):
                    // pause, and read again once it answers.
                    Disposition::Pause(reason) if !link => {
                        self.pause_for(reason, &e, now, out);
                        self.want_reconcile(stream);
                    }
                    // A connection broke, or the store failed the read this
                    // once: read again at once, a few times.
                    _ if failures <= QUICK_RECONCILES => self.want_reconcile(stream),
                    // Try again later: the rows wait in the outbox and the
                    // next attempt reads again.
                    _ => {
                        let delay = self
                            .settings
                            .retry
                            .delay_with_jitter(failures - QUICK_RECONCILES, self.rng.f64());
                        let head = st_head(&self.streams, stream);
                        self.book.block(stream, head, now.after(delay));
                        self.give_back_queue(stream);
                    }
                }
                self.touch(stream);
                return;
            }
        };
        st.reconcile_failures = 0;
        if tail == TailRead::Whole {
            st.whole_read = false;
        }
        // The store answered.
        self.link_streak = 0;
        let queued: Vec<i64> = st.queue.iter().copied().collect();
        self.learned(stream, found.version);
        let mut widen = false;
        for seq in queued {
            let Some(owned) = self.rows.get_mut(&seq) else {
                continue;
            };
            let stored = found
                .messages
                .get(&owned.row.id.to_ascii_lowercase())
                .filter(|(t, _)| *t == owned.row.message_type)
                .map(|(_, position)| *position);
            if let Some(position) = stored {
                self.delivered(seq, true, position, out);
                continue;
            }
            if !owned.doubt {
                continue;
            }
            let expected = owned.row.expected_version;
            if let Some(verdict) = &owned.verdict {
                if !tail.concludes(verdict, expected) {
                    // The store has it, or another message with its id:
                    // only a read of the whole stream may say which.
                    widen = true;
                    continue;
                }
            }
            owned.doubt = false;
            match owned.verdict.take() {
                None => {}
                Some(Verdict::Duplicate) => {
                    let error = format!(
                        "id {} already used by another message (not this {} in {stream})",
                        owned.row.id, owned.row.message_type
                    );
                    self.refused(seq, error, now);
                }
                Some(Verdict::Conflict { error, .. }) => self.refused(seq, error, now),
            }
        }
        if widen {
            if let Some(st) = self.streams.get_mut(stream) {
                st.whole_read = true;
            }
            self.want_reconcile(stream);
        }
        self.touch(stream);
    }
}

/// The first row the sender holds of `stream` (where a rescan starts).
fn st_head(streams: &std::collections::HashMap<String, super::StreamState>, stream: &str) -> i64 {
    streams
        .get(stream)
        .and_then(|st| st.queue.first().copied())
        .unwrap_or(i64::MAX)
}
