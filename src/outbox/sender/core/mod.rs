//! The sender's core: a pure state machine. The dispatcher thread feeds it
//! [`Event`]s (rows claimed, answers from the store, reads done, time
//! passing) with the time, and carries out the [`Effect`]s it returns
//! (writes to send, reads to make) and the [`Mark`]s it hands out for the
//! outbox. The core never touches SQLite, a socket or a clock, so every
//! interleaving of outcomes can be replayed in a test (see `model`).
//!
//! Per row: claimed → queued → in flight on a lane → answered: delivered
//! (mark sent), dead-lettered, waiting for a retry (mark retry, the stream
//! backs off), or back in the queue (a conflict the sender made itself, a
//! connection that broke, a pause) — never lost, never sent twice at once.
//! Per stream: see [`stream`]. Per sender: a pause while the store is
//! unreachable or refuses the token ([`pause`]); one window of writes in
//! flight per lane ([`window`]).

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::disposition::PauseReason;
use crate::error::Result;
use crate::message::WriteResult;
use crate::outbox::config::AfterDeadLetter;
use crate::outbox::sender::queue::{Mark, OutboxRow};
use crate::retry::RetryPolicy;
use crate::store::WriteItem;

mod answer;
pub(crate) mod book;
mod dispatch;
mod lane;
#[cfg(test)]
mod model;
mod ownership;
mod pause;
mod settle;
mod stream;
mod window;

pub(crate) use book::{Now, ScanPlan};
pub(crate) use pause::Pause;
pub(crate) use settle::{ReadId, Reconciliation, TailRead};

use book::Book;
use lane::Lane;
use settle::Verdict;
use stream::{Expectation, Floor, StreamState};
use window::Window;

/// Names one write sent into a lane; its answer carries it.
pub(crate) type Tag = u64;

/// The sender's settings, as the core needs them.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) lanes: usize,
    /// Most writes in flight per lane.
    pub(crate) depth: usize,
    pub(crate) batch_size: usize,
    pub(crate) retry: RetryPolicy,
    pub(crate) after_dead_letter: AfterDeadLetter,
    /// Longest wait before outcomes are written back while others are in flight.
    pub(crate) flush_interval_ms: i64,
    /// The sender is the only writer of its streams: several rows of a
    /// stream may be in flight (chained). Otherwise one at a time.
    pub(crate) exclusive_streams: bool,
}

/// What happened, for the core.
#[derive(Debug)]
pub(crate) enum Event {
    /// This sender holds the lease now; `held` are the streams behind a
    /// dead letter (policy "hold").
    LeaseTaken { held: HashSet<String> },
    /// Another sender holds the lease now: forget everything.
    LeaseLost,
    /// A claim committed: these rows (attempt recorded) are the sender's.
    Claimed {
        plan: ScanPlan,
        rows: Vec<OutboxRow>,
        exhausted: bool,
    },
    /// Writing these marks back failed; they are to be written again.
    MarksFailed(Vec<Mark>),
    /// Marks were written back; among them the dead letters of these rows
    /// (with their streams).
    WrittenBack { dead_letters: Vec<(i64, String)> },
    /// The answer to a write.
    Answer {
        tag: Tag,
        result: Result<WriteResult>,
    },
    /// What read `read` of `stream` found.
    Reconciled {
        stream: String,
        read: ReadId,
        result: Result<Reconciliation>,
    },
    /// How a probe of the store went.
    Probed { result: Result<()> },
    /// The streams behind a dead letter changed (requeue, purge).
    Held(HashSet<String>),
    /// Rows behind the scan may be sendable again (requeued dead letters).
    Rescan,
    /// New rows may be waiting.
    MoreWork,
    /// Time passed.
    Tick,
    /// Stop sending; answers still come in.
    Stop,
    /// Lane `lane`'s pipeline stopped: its writes in flight will not be
    /// answered (outcome unknown).
    LaneReset { lane: usize },
    /// The reads under way were lost (the checker restarted).
    CheckerReset,
}

/// What the core wants done.
#[derive(Debug)]
pub(crate) enum Effect {
    /// Send a write on a lane.
    Send {
        lane: usize,
        tag: Tag,
        item: WriteItem,
    },
    /// Read the tail of `stream` (and its version), keeping the messages
    /// with these ids (lower case).
    Reconcile {
        stream: String,
        read: ReadId,
        tail: TailRead,
        ids: Vec<String>,
    },
    /// Check whether the store answers (a cheap authenticated read).
    Probe { stream: String },
    /// The sender paused.
    Paused { reason: PauseReason, error: String },
    /// The pause ended after `paused_ms`.
    Resumed { reason: PauseReason, paused_ms: i64 },
    /// A row reached the store after a later row of its stream (another
    /// writer's appends lined up with a chain whose head had failed).
    Reordered { stream: String, id: String },
}

/// A row the sender owns (claimed, not yet settled).
#[derive(Debug)]
struct Owned {
    row: OutboxRow,
    /// Bytes of data and metadata (for the window's byte budget).
    bytes: usize,
    /// It may be in the store already (sent before with an unknown outcome,
    /// or claimed again after a crash).
    doubt: bool,
    /// Waiting for a read to settle it.
    verdict: Option<Verdict>,
    /// While in flight: its tag, lane and expectation.
    flight: Option<(Tag, usize, Expectation)>,
    /// Broken connections it was the first unanswered write on.
    link_failures: u32,
    /// Failures the store said may pass that were retried at once.
    quick_retries: u32,
    /// Where in its stream it can have landed, if sent.
    floor: Floor,
}

/// The sender's state; see the module docs.
#[derive(Debug)]
pub(crate) struct Core {
    settings: Settings,
    /// Whether this sender holds the lease.
    active: bool,
    stopping: bool,
    rows: HashMap<i64, Owned>,
    streams: HashMap<String, StreamState>,
    /// Streams that may send now, by the commit order of their first row.
    ready: BTreeSet<(i64, String)>,
    tags: HashMap<Tag, i64>,
    next_tag: Tag,
    next_read: ReadId,
    /// Streams waiting for their writes in flight to come back, to be read.
    reconciles: BTreeSet<String>,
    /// Streams whose version was learned in the event being handled.
    fresh: Vec<String>,
    /// Rows given back to the outbox after they were sent, with their
    /// floors: claimed again, they are in doubt from there (their attempts
    /// were given back too, so the claim alone does not tell).
    sent_before: HashMap<i64, Floor>,
    lanes: Vec<Lane>,
    book: Book,
    pause: Option<Pause>,
    /// Connection failures in a row with no answer in between.
    link_streak: u32,
    marks: Vec<Mark>,
    /// When the oldest mark waiting to be written back was made (book ms).
    marks_since: Option<i64>,
    /// Unsent rows may be waiting (woken, polled, or the last scan stopped early).
    more_work: bool,
    /// Randomness for jitter (seeded: the model replays a run exactly).
    rng: fastrand::Rng,
    reordered: u64,
    /// The time of the event being handled.
    now: Now,
}

impl Core {
    pub(crate) fn new(settings: Settings, seed: u64) -> Self {
        let lanes = (0..settings.lanes.max(1))
            .map(|_| Lane {
                window: Window::new(settings.depth),
                broke_at: None,
            })
            .collect();
        Core {
            settings,
            active: false,
            stopping: false,
            rows: HashMap::new(),
            streams: HashMap::new(),
            ready: BTreeSet::new(),
            tags: HashMap::new(),
            next_tag: 1,
            reconciles: BTreeSet::new(),
            fresh: Vec::new(),
            sent_before: HashMap::new(),
            next_read: 0,
            lanes,
            book: Book::default(),
            pause: None,
            link_streak: 0,
            marks: Vec::new(),
            marks_since: None,
            more_work: true,
            rng: fastrand::Rng::with_seed(seed),
            reordered: 0,
            now: Now {
                book_ms: 0,
                wall_ms: 0,
                max_wait_ms: 0,
            },
        }
    }

    /// Takes `event` into account at `now`; returns what to do.
    pub(crate) fn handle(&mut self, event: Event, now: Now) -> Vec<Effect> {
        let mut out = Vec::new();
        self.now = now;
        match event {
            Event::LeaseTaken { held } => self.take_lease(held, now),
            Event::LeaseLost => self.lose_lease(),
            Event::Claimed {
                plan,
                rows,
                exhausted,
            } => self.claimed(plan, rows, exhausted),
            Event::MarksFailed(mut marks) => {
                marks.append(&mut self.marks);
                self.marks = marks;
                self.marks_since.get_or_insert(now.book_ms);
            }
            Event::WrittenBack { dead_letters } => self.written_back(&dead_letters),
            Event::Answer { tag, result } => self.answer(tag, result, now, &mut out),
            Event::Reconciled {
                stream,
                read,
                result,
            } => self.reconciled(&stream, read, result, now, &mut out),
            Event::Probed { result } => self.probed(result, now, &mut out),
            Event::Held(held) => self.book.set_held(held, now.book_ms),
            Event::Rescan => {
                self.book.rewind_all();
                self.more_work = true;
            }
            Event::MoreWork => self.more_work = true,
            Event::Tick => {}
            Event::Stop => self.stopping = true,
            Event::LaneReset { lane } => self.lane_reset(lane, now, &mut out),
            Event::CheckerReset => self.checker_reset(),
        }
        self.tick(now, &mut out);
        self.dispatch(now, &mut out);
        // A version learned in this event is no longer fresh in the next.
        for stream in std::mem::take(&mut self.fresh) {
            if let Some(st) = self.streams.get_mut(&stream) {
                st.fresh = false;
            }
            self.touch(&stream);
        }
        out
    }

    /// `stream`'s version is `version`, learned just now.
    fn learned(&mut self, stream: &str, version: Option<i64>) {
        if let Some(st) = self.streams.get_mut(stream) {
            st.version = version;
            st.fresh = true;
            self.fresh.push(stream.to_string());
        }
    }

    fn take_lease(&mut self, held: HashSet<String>, now: Now) {
        self.lose_lease();
        self.active = true;
        self.book = Book::default();
        self.book.set_held(held, now.book_ms);
        self.more_work = true;
    }

    /// Forgets every row (another sender resends them; the store knows
    /// their ids) and every write in flight (their answers are ignored).
    fn lose_lease(&mut self) {
        self.active = false;
        self.rows.clear();
        self.streams.clear();
        self.ready.clear();
        self.tags.clear();
        self.reconciles.clear();
        self.fresh.clear();
        self.sent_before.clear();
        for lane in &mut self.lanes {
            lane.window.clear();
            lane.broke_at = None;
        }
        self.pause = None;
        self.link_streak = 0;
        self.marks.clear();
        self.marks_since = None;
    }

    fn claimed(&mut self, plan: ScanPlan, rows: Vec<OutboxRow>, exhausted: bool) {
        self.book.commit(&plan);
        self.more_work = !exhausted;
        for row in rows {
            let seq = row.seq;
            let bytes = row.data.len() + row.metadata.as_ref().map_or(0, String::len);
            let stream = row.stream.clone();
            // Claimed before (attempts was > 0 before this claim): an
            // earlier process may have stored it.
            let floor = match self.sent_before.remove(&seq) {
                Some(floor) => floor,
                None if row.attempts > 1 => Floor::Unknown,
                None => Floor::NotSent,
            };
            self.rows.insert(
                seq,
                Owned {
                    doubt: floor != Floor::NotSent,
                    floor,
                    row,
                    bytes,
                    verdict: None,
                    flight: None,
                    link_failures: 0,
                    quick_retries: 0,
                },
            );
            let exclusive = self.settings.exclusive_streams;
            self.streams
                .entry(stream.clone())
                .or_insert_with(|| StreamState {
                    shared: !exclusive,
                    ..Default::default()
                })
                .queue
                .insert(seq);
            self.touch(&stream);
        }
    }

    /// Resumes streams whose wait is over and runs the pause's probe.
    fn tick(&mut self, now: Now, out: &mut Vec<Effect>) {
        if !self.active {
            return;
        }
        let streams = &self.streams;
        let owned = |s: &str| streams.get(s).is_some_and(|st| !st.idle());
        if self.book.resume_due(now.book_ms, owned) > 0 {
            self.more_work = true;
        }
        let probe_due = !self.stopping
            && self
                .pause
                .as_ref()
                .is_some_and(|p| p.probe_due(now.book_ms));
        if probe_due {
            let stream = self.any_stream();
            if let Some(pause) = &mut self.pause {
                pause.next_probe_ms = None;
            }
            out.push(Effect::Probe { stream });
        }
    }

    /// A stream to probe with: one the sender has rows of, else any name.
    fn any_stream(&self) -> String {
        self.rows
            .values()
            .next()
            .map_or_else(|| "outbox-probe".to_string(), |o| o.row.stream.clone())
    }

    // ----- what the dispatcher thread asks -----

    /// Rows to claim now, if any: enough to keep every lane's window full
    /// with a batch to spare.
    pub(crate) fn claim_limit(&self) -> Option<usize> {
        if !self.active || self.stopping || self.pause.is_some() || !self.more_work {
            return None;
        }
        let capacity: usize =
            self.lanes.iter().map(|l| l.window.size()).sum::<usize>() + self.settings.batch_size;
        let room = capacity.saturating_sub(self.rows.len());
        let batch = self.settings.batch_size.max(capacity / 4).min(capacity);
        (room >= batch.min(self.settings.batch_size).max(1)).then_some(room.min(batch))
    }

    /// Whether outcomes should be written back now: enough of them, or the
    /// oldest waited long enough, or nothing is in flight any more.
    pub(crate) fn marks_due(&self, now: Now) -> bool {
        if self.marks.is_empty() {
            return false;
        }
        self.in_flight() == 0
            || self.stopping
            || self.marks.len() >= self.settings.batch_size
            || self
                .marks_since
                .is_some_and(|t| now.book_ms >= t + self.settings.flush_interval_ms)
    }

    /// Takes the outcomes to write back.
    pub(crate) fn take_marks(&mut self) -> Vec<Mark> {
        self.marks_since = None;
        std::mem::take(&mut self.marks)
    }

    /// When something is due next without an event (book ms): a stream's
    /// wait, a probe, a write-back.
    pub(crate) fn next_due_ms(&self) -> Option<i64> {
        let streams = &self.streams;
        let owned = |s: &str| streams.get(s).is_some_and(|st| !st.idle());
        let mut due = self.book.next_resume_ms(owned);
        if let Some(t) = self.pause.as_ref().and_then(|p| p.next_probe_ms) {
            due = Some(due.map_or(t, |d| d.min(t)));
        }
        if let Some(t) = self.marks_since {
            let t = t + self.settings.flush_interval_ms;
            due = Some(due.map_or(t, |d| d.min(t)));
        }
        due
    }

    /// Writes in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.tags.len()
    }

    /// Rows the sender owns (queued and in flight).
    #[cfg(test)]
    pub(crate) fn owned(&self) -> usize {
        self.rows.len()
    }

    /// Whether `seq` is the sender's (for the claim scan).
    pub(crate) fn owns(&self, seq: i64) -> bool {
        self.rows.contains_key(&seq)
    }

    /// A scan plan for the next claim.
    pub(crate) fn scan_plan(&self) -> ScanPlan {
        self.book.plan()
    }

    /// Whether `row` may be claimed by `plan`.
    pub(crate) fn consider(&self, plan: &mut ScanPlan, row: &OutboxRow, now: &Now) -> bool {
        plan.consider(&self.book, row, self.owns(row.seq), now)
    }

    /// The pause in progress, if any.
    pub(crate) fn pause(&self) -> Option<&Pause> {
        self.pause.as_ref()
    }

    /// The windows of the lanes (writes allowed in flight).
    pub(crate) fn windows(&self) -> Vec<usize> {
        self.lanes.iter().map(|l| l.window.size()).collect()
    }

    /// Rows that reached the store after a later row of their stream.
    pub(crate) fn reordered(&self) -> u64 {
        self.reordered
    }

    /// Stopping: gives back every row still owned, those in flight too
    /// (their answers will not be waited for; the next sender resends them
    /// and the store knows their ids). Returns the marks to write back last.
    pub(crate) fn finish(&mut self) -> Vec<Mark> {
        self.stopping = true;
        let seqs: Vec<i64> = self.rows.keys().copied().collect();
        for seq in seqs {
            self.give_back(seq);
        }
        self.tags.clear();
        self.take_marks()
    }
}
