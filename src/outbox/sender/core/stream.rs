//! What the sender knows about one stream while it owns rows of it: the
//! rows waiting and in flight, the stream's version, and the rule that
//! decides the next write and its `expectedVersion`.
//!
//! Order inside a window comes from chaining: the k-th row of a stream in
//! flight is sent with `expectedVersion = v + k`, so once one row of the
//! stream is not written, every later one in flight fails with a conflict
//! instead of overtaking it. A write is sent without an expected version
//! when nothing of its stream is in flight and the version is not known
//! (after a failure or a restart) — its answer tells the version, and the
//! rest of the stream follows chained.
//!
//! A chain starts only from a version learned that very moment (an answer
//! or a read just in): a version known from earlier may be stale — another
//! writer may have appended since — and a chain on a stale version lines up
//! with the other writer's messages (its k-th row expects what the stream
//! reached after k foreign appends) and overtakes the rows before it. So
//! when nothing of a stream is in flight, its head goes alone, without an
//! expected version, and the rest chain on its answer. A stream that
//! another writer is seen appending to is sent one row at a time from then
//! on. (One race remains, and no scheme over `expectedVersion` can close
//! it: another writer appending in the round trip between the answer a
//! chain starts from and the chain's arrival. The sender reports it.)

use std::collections::{BTreeSet, VecDeque};

/// The `expectedVersion` of a write, and whether the sender chose it (a
/// conflict on a sender-chosen version is the sender's own, never the
/// application's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Expectation {
    pub(crate) version: Option<i64>,
    pub(crate) chained: bool,
}

/// Where a row sent with an unknown outcome can be in its stream: after
/// the stream's version known when it was first sent (a position that
/// existed then — positions only grow, so whatever the row's write did, it
/// did after it). A read of the stream from there finds the row if this
/// sender's writes stored it; a row sent while nothing was known of its
/// stream, or claimed again after another process may have sent it, can
/// be anywhere. (A row can also be in the store before this sender ever
/// sent it — another process sent it, and its attempt was given back —
/// so a read from the floor that does not find a row the store says it
/// has is followed by one of the whole stream before anything is
/// concluded.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Floor {
    /// Never sent by this sender.
    NotSent,
    /// Every write of it was sent when the stream had reached this version.
    After(i64),
    /// Anywhere.
    Unknown,
}

impl Floor {
    /// The floor after one more send, with the stream's version then known
    /// (or last known) being `known`.
    pub(crate) fn sent(self, known: Option<i64>) -> Floor {
        match (self, known) {
            (Floor::NotSent, Some(v)) => Floor::After(v),
            (Floor::NotSent, None) => Floor::Unknown,
            // A later send lands after the earlier floor too.
            (Floor::After(f), Some(v)) => Floor::After(f.min(v)),
            (floor, _) => floor,
        }
    }

    /// Where a read that settles rows in doubt with these two floors
    /// starts (a row in doubt that this sender never sent can be anywhere).
    pub(crate) fn lowest(self, other: Floor) -> Floor {
        match (self, other) {
            (Floor::After(a), Floor::After(b)) => Floor::After(a.min(b)),
            _ => Floor::Unknown,
        }
    }
}

/// A reconciliation with the store: reading the stream to learn which of
/// the rows in doubt it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Reconcile {
    #[default]
    None,
    /// Wanted once the rows in flight are back.
    Wanted,
    /// This read, of this part of the stream, is under way.
    Running {
        read: super::ReadId,
        tail: super::TailRead,
    },
}

/// One stream, while the sender owns rows of it.
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    /// Rows claimed and waiting, in commit order.
    pub(crate) queue: BTreeSet<i64>,
    /// Rows in flight, in the order sent (commit order).
    pub(crate) in_flight: VecDeque<i64>,
    /// The lane carrying the rows in flight.
    pub(crate) lane: Option<usize>,
    /// The stream's version after every answered write, when known.
    pub(crate) version: Option<i64>,
    /// The last version known before it became unknown (a failure).
    pub(crate) last_known: Option<i64>,
    /// `version` was learned in the event being handled (an answer or a
    /// read just in): a chain may start from it.
    pub(crate) fresh: bool,
    /// Its version once every write in flight is stored, when known.
    pub(crate) tip: Option<i64>,
    /// A row of the current flight was not written: the rest of the flight
    /// is not trusted (its answers only return rows to the queue).
    pub(crate) broken: bool,
    /// Another writer appends to this stream: one row in flight at a time.
    pub(crate) shared: bool,
    pub(crate) reconcile: Reconcile,
    /// The next reads are of the whole stream, until one succeeds: a read
    /// of part of it did not find a row the store said it has (an id
    /// taken, a version passed) — stored, perhaps, before this sender ever
    /// sent it, or further back than the part read.
    pub(crate) whole_read: bool,
    /// Reads of the tail that failed in a row.
    pub(crate) reconcile_failures: u32,
    /// Rows of this stream dead-lettered but not yet written back: nothing
    /// later goes out before that is durable (else, after a crash, the row
    /// would be tried again behind the rows that went on without it — and
    /// an application's expected version might then hold).
    pub(crate) dead_pending: BTreeSet<i64>,
    /// The key of the stream's entry in the core's ready set.
    pub(crate) ready_at: Option<i64>,
    /// Where the rows delivered lately landed (a row landing on the wrong
    /// side of one of them is out of order).
    pub(crate) delivered: DeliveredOrder,
}

/// Rows of one stream delivered lately and their positions: enough to tell
/// whether a row just delivered landed out of commit order.
///
/// Every entry counts, not only the highest: a row held back (a write whose
/// answer was lost, resent after a pause) may land after rows behind it
/// *and* after rows later still, so only its nearest neighbours in commit
/// order tell. Entries are kept while the stream is busy, at most
/// [`DeliveredOrder::CAP`]; when the sender owns nothing of the stream only
/// the highest is kept.
#[derive(Debug, Default)]
pub(crate) struct DeliveredOrder {
    positions: std::collections::BTreeMap<i64, i64>,
}

impl DeliveredOrder {
    /// Entries kept per stream; beyond this the oldest are forgotten.
    const CAP: usize = 4096;

    /// Records `seq` delivered at `position`; returns whether it landed out
    /// of order with a row recorded before.
    pub(crate) fn record(&mut self, seq: i64, position: i64) -> bool {
        let before = self.positions.range(..seq).next_back();
        let after = self.positions.range(seq + 1..).next();
        let out_of_order =
            before.is_some_and(|(_, &p)| p > position) || after.is_some_and(|(_, &p)| p < position);
        self.positions.insert(seq, position);
        if self.positions.len() > Self::CAP {
            self.positions.pop_first();
        }
        out_of_order
    }

    /// Keeps only the highest row (the stream went idle).
    pub(crate) fn settle(&mut self) {
        while self.positions.len() > 1 {
            self.positions.pop_first();
        }
    }
}

impl StreamState {
    /// Whether the sender owns no row of the stream and waits for nothing.
    pub(crate) fn idle(&self) -> bool {
        self.queue.is_empty()
            && self.in_flight.is_empty()
            && self.reconcile == Reconcile::None
            && self.dead_pending.is_empty()
    }

    /// The expected version for the stream's next row (whose own,
    /// application-set expected version is `own`), or `None` when it must
    /// wait for answers first.
    pub(crate) fn next_expectation(&self, own: Option<i64>) -> Option<Expectation> {
        if self.broken || self.reconcile != Reconcile::None || !self.dead_pending.is_empty() {
            return None;
        }
        if self.in_flight.is_empty() {
            return Some(match own {
                Some(v) => Expectation {
                    version: Some(v),
                    chained: false,
                },
                None if !self.shared && self.fresh => Expectation {
                    version: self.version,
                    chained: self.version.is_some(),
                },
                None => Expectation {
                    version: None,
                    chained: false,
                },
            });
        }
        if self.shared {
            return None;
        }
        let tip = self.tip?;
        match own {
            // The application's expectation is where the chain stands: the
            // same request either way.
            Some(v) if v == tip => Some(Expectation {
                version: Some(v),
                chained: false,
            }),
            Some(_) => None,
            None => Some(Expectation {
                version: Some(tip),
                chained: true,
            }),
        }
    }

    /// Records a write of `seq` sent with `expectation` on `lane`.
    ///
    /// Later rows chain on it only when its expected version is where the
    /// stream stands (known, or the chain's tip): a write that expects
    /// anything else — an application's stale expectation, or none —
    /// anchors nothing (were it to fail, rows chained on it could line up
    /// with the real version and overtake it).
    pub(crate) fn sent(&mut self, seq: i64, lane: usize, expectation: Expectation) {
        let base = if self.in_flight.is_empty() {
            self.version.filter(|_| self.fresh)
        } else {
            self.tip
        };
        self.queue.remove(&seq);
        self.in_flight.push_back(seq);
        self.lane = Some(lane);
        self.tip = match expectation.version {
            Some(v) if Some(v) == base => Some(v + 1),
            _ => None,
        };
    }

    /// Takes `seq` off the flight (answers come in the order sent).
    pub(crate) fn answered(&mut self, seq: i64) {
        if self.in_flight.front() == Some(&seq) {
            self.in_flight.pop_front();
        } else {
            self.in_flight.retain(|&s| s != seq);
        }
        if self.in_flight.is_empty() {
            self.lane = None;
            self.broken = false;
        }
    }

    /// The first failure of a flight: the rest of it is not trusted, and
    /// the version is `version` (`None`: unknown).
    pub(crate) fn break_flight(&mut self, version: Option<i64>) {
        self.broken = !self.in_flight.is_empty();
        if let Some(v) = self.version {
            self.last_known = Some(v);
        }
        self.version = version;
        self.tip = None;
    }

    /// The latest version known, even if it may be stale (where a read of
    /// the stream's tail may start).
    pub(crate) fn version_hint(&self) -> Option<i64> {
        self.version.or(self.last_known)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chained(v: i64) -> Option<Expectation> {
        Some(Expectation {
            version: Some(v),
            chained: true,
        })
    }

    const FREE: Option<Expectation> = Some(Expectation {
        version: None,
        chained: false,
    });

    #[test]
    fn unknown_version_sends_one_then_chains_on_its_answer() {
        let mut s = StreamState::default();
        s.queue.extend([1, 2, 3]);
        assert_eq!(s.next_expectation(None), FREE);
        s.sent(1, 0, FREE.unwrap());
        assert_eq!(s.next_expectation(None), None, "waits for the answer");
        s.answered(1);
        s.version = Some(7);
        assert_eq!(
            s.next_expectation(None),
            FREE,
            "a version from before may be stale"
        );
        s.fresh = true;
        assert_eq!(s.next_expectation(None), chained(7), "an answer just in");
        s.sent(2, 0, chained(7).unwrap());
        assert_eq!(s.next_expectation(None), chained(8));
    }

    #[test]
    fn a_broken_flight_sends_nothing_until_it_is_back() {
        let mut s = StreamState {
            version: Some(0),
            fresh: true,
            ..Default::default()
        };
        s.sent(1, 0, chained(0).unwrap());
        s.sent(2, 0, chained(1).unwrap());
        s.answered(1);
        s.break_flight(None);
        assert!(s.broken);
        assert_eq!(s.next_expectation(None), None);
        s.answered(2);
        assert!(!s.broken);
        assert_eq!(s.next_expectation(None), FREE, "version unknown again");
    }

    #[test]
    fn application_versions_join_the_chain_only_where_it_stands() {
        let mut s = StreamState {
            version: Some(4),
            fresh: true,
            ..Default::default()
        };
        assert_eq!(
            s.next_expectation(Some(9)),
            Some(Expectation {
                version: Some(9),
                chained: false
            }),
            "alone: its own version"
        );
        s.sent(1, 0, chained(4).unwrap());
        assert_eq!(s.next_expectation(Some(9)), None, "not where the chain is");
        assert_eq!(
            s.next_expectation(Some(5)),
            Some(Expectation {
                version: Some(5),
                chained: false
            })
        );
    }

    #[test]
    fn a_stale_application_version_anchors_no_chain() {
        let mut s = StreamState {
            version: Some(4),
            fresh: true,
            ..Default::default()
        };
        let own = Expectation {
            version: Some(1),
            chained: false,
        };
        s.sent(1, 0, own);
        assert_eq!(s.next_expectation(None), None, "waits for its answer");
    }

    #[test]
    fn a_row_landing_after_rows_behind_it_is_out_of_order_whatever_came_since() {
        let mut d = DeliveredOrder::default();
        assert!(!d.record(97, 50));
        assert!(!d.record(99, 51));
        assert!(!d.record(101, 55), "in order with everything so far");
        assert!(d.record(96, 54), "after 97 and 99, though before 101");
        let mut d = DeliveredOrder::default();
        assert!(!d.record(5, 10));
        assert!(!d.record(3, 8), "an earlier row landing earlier");
        assert!(
            d.record(4, 11),
            "between 3 and 5 in order, after both in the stream"
        );
    }

    #[test]
    fn an_idle_stream_keeps_its_highest_row() {
        let mut d = DeliveredOrder::default();
        d.record(1, 1);
        d.record(2, 2);
        d.settle();
        assert!(!d.record(3, 3));
        assert!(d.record(0, 9), "behind the highest row kept");
    }

    #[test]
    fn a_shared_stream_goes_one_at_a_time_without_expectation() {
        let mut s = StreamState {
            version: Some(4),
            fresh: true,
            shared: true,
            ..Default::default()
        };
        assert_eq!(s.next_expectation(None), FREE);
        s.sent(1, 0, FREE.unwrap());
        assert_eq!(s.next_expectation(None), None);
    }

    #[test]
    fn a_floor_is_the_lowest_version_known_at_any_send() {
        let first = Floor::NotSent.sent(Some(5));
        assert_eq!(first, Floor::After(5));
        assert_eq!(first.sent(Some(9)), Floor::After(5), "a resend lands later");
        assert_eq!(first.sent(None), Floor::After(5), "positions only grow");
        assert_eq!(Floor::NotSent.sent(None), Floor::Unknown);
        assert_eq!(Floor::Unknown.sent(Some(3)), Floor::Unknown);
        assert_eq!(Floor::After(4).lowest(Floor::After(2)), Floor::After(2));
        assert_eq!(Floor::After(4).lowest(Floor::Unknown), Floor::Unknown);
        assert_eq!(
            Floor::After(4).lowest(Floor::NotSent),
            Floor::Unknown,
            "a row in doubt this sender never sent can be anywhere"
        );
    }
}
