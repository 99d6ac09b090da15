//! The model's world: the outbox, the store, the lanes, the clocks — and
//! the run: random steps of chaos, then healing, then the checks.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use super::super::{Core, Effect, Event, Now, ReadId, Settings, Tag, TailRead};
use crate::error::{Error, Result, TransportErrorKind};
use crate::message::WriteResult;
use crate::outbox::config::AfterDeadLetter;
use crate::outbox::sender::queue::OutboxRow;
use crate::retry::RetryPolicy;
use crate::store::WriteItem;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RowState {
    Unsent,
    Sent,
    Dead,
}

#[derive(Debug, Clone)]
pub(super) struct SimRow {
    pub(super) row: OutboxRow,
    pub(super) state: RowState,
    /// Refused by the store for good (type "Invalid").
    pub(super) invalid: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Stored {
    pub(super) id: String,
    pub(super) message_type: String,
}

#[derive(Debug, Default)]
pub(super) struct SimLane {
    /// Sent, not yet processed by the store.
    pub(super) requests: VecDeque<(Tag, WriteItem)>,
    /// Processed (or failed on the way), answer not yet delivered.
    pub(super) answers: VecDeque<(Tag, Result<WriteResult>)>,
}

#[derive(Debug)]
pub(super) enum Check {
    Reconcile {
        stream: String,
        read: ReadId,
        tail: TailRead,
        ids: Vec<String>,
    },
    Probe,
}

/// What kind of chaos a run has.
#[derive(Debug, Clone, Copy)]
pub(super) struct Chaos {
    pub(super) foreign_writers: bool,
    /// The lease is lost now and then (writes in flight then race the
    /// next holder's; without it every reorder must be reported).
    pub(super) lease_loss: bool,
    pub(super) hold: bool,
    /// The sender is told it is the only writer of its streams.
    pub(super) exclusive: bool,
    pub(super) lanes: usize,
    pub(super) depth: usize,
}

pub(super) struct Sim {
    pub(super) chaos: Chaos,
    pub(super) core: Core,
    pub(super) rng: fastrand::Rng,
    pub(super) outbox: BTreeMap<i64, SimRow>,
    pub(super) next_seq: i64,
    pub(super) store: HashMap<String, Vec<Stored>>,
    pub(super) ids: HashSet<String>,
    pub(super) lanes: Vec<SimLane>,
    pub(super) checks: VecDeque<Check>,
    pub(super) store_down: bool,
    pub(super) auth_refused: bool,
    pub(super) active: bool,
    pub(super) book_ms: i64,
    pub(super) wall_ms: i64,
    pub(super) reordered: HashSet<String>,
    /// Rows the store had before the sender saw them.
    pub(super) pre_stored: HashSet<i64>,
    pub(super) in_flight_tags: HashMap<Tag, i64>,
    pub(super) retry: RetryPolicy,
    pub(super) foreign: u64,
}

pub(super) const STREAMS: [&str; 4] = ["a-1", "a-2", "b-1", "c-1"];

impl Sim {
    pub(super) fn new(seed: u64, chaos: Chaos) -> Sim {
        let retry = RetryPolicy::new()
            .initial_delay(Duration::from_millis(10))
            .max_delay(Duration::from_millis(400));
        let settings = Settings {
            lanes: chaos.lanes,
            depth: chaos.depth,
            batch_size: 8,
            retry: retry.clone(),
            after_dead_letter: if chaos.hold {
                AfterDeadLetter::HoldStream
            } else {
                AfterDeadLetter::Continue
            },
            flush_interval_ms: 10,
            exclusive_streams: chaos.exclusive,
        };
        Sim {
            chaos,
            core: Core::new(settings, seed),
            rng: fastrand::Rng::with_seed(seed),
            outbox: BTreeMap::new(),
            next_seq: 1,
            store: HashMap::new(),
            ids: HashSet::new(),
            lanes: (0..chaos.lanes).map(|_| SimLane::default()).collect(),
            checks: VecDeque::new(),
            store_down: false,
            auth_refused: false,
            active: false,
            book_ms: 0,
            wall_ms: 1_000_000_000,
            reordered: HashSet::new(),
            pre_stored: HashSet::new(),
            in_flight_tags: HashMap::new(),
            retry,
            foreign: 0,
        }
    }

    pub(super) fn now(&self) -> Now {
        Now {
            book_ms: self.book_ms,
            wall_ms: self.wall_ms,
            max_wait_ms: 400,
        }
    }

    pub(super) fn trace(&self, what: impl FnOnce() -> String) {
        if std::env::var_os("MODEL_TRACE").is_some() {
            eprintln!("[{}] {}", self.book_ms, what());
        }
    }

    pub(super) fn feed(&mut self, event: Event) {
        if !matches!(event, Event::Tick | Event::MoreWork) {
            self.trace(|| format!("event {event:?}").chars().take(300).collect());
        }
        let effects = self.core.handle(event, self.now());
        for e in &effects {
            self.trace(|| match e {
                Effect::Send { lane, tag, item } => format!(
                    "  send lane {lane} tag {tag} {} {} exp {:?}",
                    item.stream,
                    item.options
                        .id
                        .as_deref()
                        .unwrap_or("")
                        .rsplit('-')
                        .next()
                        .unwrap_or(""),
                    item.options.expected_version
                ),
                other => format!("  {other:?}"),
            });
        }
        for effect in effects {
            match effect {
                Effect::Send { lane, tag, item } => {
                    let id = item.options.id.clone().unwrap();
                    let seq = self
                        .outbox
                        .values()
                        .find(|r| r.row.id == id)
                        .map(|r| r.row.seq)
                        .unwrap();
                    assert!(
                        !self.in_flight_tags.values().any(|s| *s == seq),
                        "row {seq} sent while already in flight"
                    );
                    self.in_flight_tags.insert(tag, seq);
                    self.lanes[lane].requests.push_back((tag, item));
                }
                Effect::Reconcile {
                    stream,
                    read,
                    tail,
                    ids,
                } => self.checks.push_back(Check::Reconcile {
                    stream,
                    read,
                    tail,
                    ids,
                }),
                Effect::Probe { .. } => self.checks.push_back(Check::Probe),
                Effect::Paused { .. } | Effect::Resumed { .. } => {}
                Effect::Reordered { id, .. } => {
                    self.reordered.insert(id);
                }
            }
        }
    }

    // ----- the run -----

    pub(super) fn chaos_step(&mut self) {
        match self.rng.u8(..100) {
            0..=9 => self.write_rows(),
            10..=19 => self.claim(),
            20..=27 => self.flush(false),
            28..=49 => {
                let lane = self.rng.usize(..self.lanes.len());
                for _ in 0..self.rng.usize(1..8) {
                    self.process(lane);
                }
            }
            50..=69 => {
                let lane = self.rng.usize(..self.lanes.len());
                for _ in 0..self.rng.usize(1..8) {
                    self.deliver(lane);
                }
            }
            70..=74 => self.check(),
            75..=76 => {
                let lane = self.rng.usize(..self.lanes.len());
                self.break_connection(lane);
            }
            77..=79 if self.chaos.foreign_writers => self.foreign_write(),
            80 => self.store_down = !self.store_down,
            81 => self.auth_refused = !self.auth_refused && self.rng.u8(..4) == 0,
            82 if self.chaos.lease_loss && self.active && self.rng.u8(..4) == 0 => {
                self.active = false;
                // Writes on the way stay on the way; a row may be sent
                // again by the next holder meanwhile.
                self.in_flight_tags.clear();
                self.feed(Event::LeaseLost);
            }
            83 if !self.active => self.take_lease(),
            84 => {
                // The wall clock jumps (NTP, a user); the book clock does not.
                self.wall_ms += self.rng.i64(-3_600_000..3_600_000);
            }
            _ => {
                let ms = self.rng.i64(1..60);
                self.advance(ms);
            }
        }
    }

    pub(super) fn take_lease(&mut self) {
        self.active = true;
        let held = self.held_streams();
        self.feed(Event::LeaseTaken { held });
    }

    pub(super) fn advance(&mut self, ms: i64) {
        self.book_ms += ms;
        self.wall_ms += ms;
        self.feed(Event::Tick);
    }

    pub(super) fn settled(&self) -> bool {
        self.outbox.values().all(|r| r.state != RowState::Unsent)
    }

    /// Heals everything and runs until every row is settled.
    pub(super) fn heal_and_finish(&mut self) {
        self.store_down = false;
        self.auth_refused = false;
        if !self.active {
            self.take_lease();
        }
        if self.chaos.hold {
            // An operator purges the dead letters: their streams go on.
            self.feed(Event::Held(HashSet::new()));
            self.feed(Event::Rescan);
        }
        for _ in 0..200_000 {
            if self.settled() && self.core.owned() == 0 {
                self.flush(true);
                return;
            }
            self.claim();
            let mut progressed = false;
            for lane in 0..self.lanes.len() {
                progressed |=
                    !self.lanes[lane].requests.is_empty() || !self.lanes[lane].answers.is_empty();
                while !self.lanes[lane].requests.is_empty() {
                    self.process(lane);
                }
                while !self.lanes[lane].answers.is_empty() {
                    self.deliver(lane);
                }
            }
            while !self.checks.is_empty() {
                progressed = true;
                self.check();
            }
            self.flush(self.core.in_flight() == 0);
            if !progressed {
                if self.chaos.hold {
                    // An operator purges new dead letters too.
                    self.feed(Event::Held(HashSet::new()));
                }
                let next = self.core.next_due_ms().unwrap_or(self.book_ms + 10);
                self.advance((next - self.book_ms).max(1));
                self.feed(Event::MoreWork);
            }
        }
        let unsent: Vec<i64> = self
            .outbox
            .values()
            .filter(|r| r.state == RowState::Unsent)
            .map(|r| r.row.seq)
            .collect();
        panic!(
            "not settled: unsent rows {unsent:?}, core owns {}",
            self.core.owned()
        );
    }

    pub(super) fn check_promises(&self) {
        let positions: HashMap<&str, (&str, usize)> = self
            .store
            .iter()
            .flat_map(|(stream, messages)| {
                messages
                    .iter()
                    .enumerate()
                    .map(move |(i, m)| (m.id.as_str(), (stream.as_str(), i)))
            })
            .collect();
        let mut last_position: HashMap<&str, (usize, i64)> = HashMap::new();
        for r in self.outbox.values() {
            let row = &r.row;
            match r.state {
                RowState::Unsent => panic!("row {} never settled", row.seq),
                RowState::Dead => assert!(
                    !positions.contains_key(row.id.as_str()),
                    "row {} dead-lettered although the store has it",
                    row.seq
                ),
                RowState::Sent => {
                    let (stream, position) = *positions
                        .get(row.id.as_str())
                        .unwrap_or_else(|| panic!("row {} marked sent, not in the store", row.seq));
                    assert_eq!(stream, row.stream, "row {} in the wrong stream", row.seq);
                    if let Some(e) = row.expected_version {
                        assert_eq!(
                            position as i64,
                            e + 1,
                            "row {} not where the application expected",
                            row.seq
                        );
                    }
                    if let Some((before, seq_before)) = last_position.get(stream) {
                        if position < *before {
                            assert!(
                                self.chaos.foreign_writers,
                                "row {} (position {position}) before row {seq_before} (position {before}) of {stream}",
                                row.seq
                            );
                            let before_id = &self.outbox[seq_before].row.id;
                            assert!(
                                self.reordered.contains(&row.id)
                                    || self.reordered.contains(before_id),
                                "row {} overtaken by row {seq_before} and not reported",
                                row.seq
                            );
                        }
                    }
                    last_position.insert(stream, (position, row.seq));
                }
            }
        }
        // Exactly once: no id twice (the model's store refuses it anyway)
        // and no message of ours the outbox does not know.
        for (stream, messages) in &self.store {
            for m in messages {
                if m.message_type != "Foreign" {
                    let seq: i64 = m.id.rsplit('-').next().unwrap().parse().unwrap();
                    let r = &self.outbox[&seq];
                    assert_eq!(&r.row.stream, stream);
                    assert_eq!(
                        r.state,
                        RowState::Sent,
                        "row {seq} stored but not marked sent"
                    );
                }
            }
        }
    }
}

pub(super) fn refused() -> Error {
    Error::Transport {
        kind: TransportErrorKind::ConnectionRefused,
        message: "connection refused".into(),
    }
}

pub(super) fn reset() -> Error {
    Error::Transport {
        kind: TransportErrorKind::ConnectionReset,
        message: "connection reset".into(),
    }
}
