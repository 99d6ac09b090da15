//! The dispatcher thread: the edges around the sender's [`Core`] — the
//! lease and the outbox in SQLite, the lanes' [`WritePipeline`]s, the
//! checker's reads, wake-ups and time. It feeds the core events and carries
//! out its effects; every decision about rows is the core's.
//!
//! The steps live in submodules:
//!
//! * `leadership` — standing by, taking the lease, losing it;
//! * `claim` — the one transaction per turn: renew the lease, write
//!   outcomes back, claim the next rows;
//! * `report` — counters, hooks and waiters once outcomes are committed,
//!   and the pause's log lines;
//! * `housekeeping` — the fallback poll, rescans, retention;
//! * `shutdown` — waiting for the writes in flight (a bounded while), the
//!   last write-back, releasing the lease.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select};

use super::checker::{Check, Checked, Checker};
use super::core::{Core, Effect, Event, Now};
use super::watch::ChangeWatch;
use super::Shared;
use crate::db::Db;
use crate::error::{Error, TransportErrorKind};
use crate::hooks::{Component, Hooks};
use crate::lease::Lease;
use crate::outbox::config::SenderConfig;
use crate::outbox::stats::PauseState;
use crate::outbox::wake::{Listener, WakeHub};
use crate::store::{MessageStore, PipelinedAnswer, WritePipeline};
use crate::time::now_ms;

mod claim;
mod housekeeping;
mod leadership;
mod report;
mod shutdown;

/// The dispatcher thread's state (see the module docs).
pub(crate) struct Dispatcher {
    pub(crate) db: Db,
    pub(crate) namespace: String,
    pub(crate) config: SenderConfig,
    pub(crate) hub: Arc<WakeHub>,
    pub(crate) wake: Listener,
    pub(crate) stop: Receiver<()>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) hooks: Hooks,
    pub(crate) lease: Lease,
    pub(crate) store: Arc<dyn MessageStore>,
    /// One pipeline per lane.
    pub(crate) pipelines: Vec<WritePipeline>,
    pub(crate) checker: Checker,
    pub(crate) watch: ChangeWatch,
    pub(crate) core: Core,
    /// The database failed: no transaction before this.
    pub(crate) db_pause_until: Option<Instant>,
    pub(crate) db_failures: u32,
    /// The pause as last stored with the lease (`Some(None)`: stored as
    /// not paused; `None`: unknown, stored with the next transaction).
    pub(crate) stored_pause: Option<Option<PauseState>>,
    pub(crate) rescans_seen: u64,
    pub(crate) next_poll: Instant,
    pub(crate) next_renew: Instant,
    pub(crate) next_retention: Instant,
    /// Where the core's monotonic clock starts.
    pub(crate) origin: Instant,
}

/// What one wait brought.
enum Woken {
    Answer(PipelinedAnswer),
    /// A lane's pipeline stopped (its threads ended).
    LaneDown(usize),
    Checked(Checked),
    /// The checker's thread ended.
    CheckerDown,
    Wake,
    Stop,
    Nothing,
}

impl Dispatcher {
    fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::Acquire)
    }

    /// The time on both clocks.
    fn now(&self) -> Now {
        let max_wait = self.config.retry_policy().max_delay_value();
        Now::at(self.origin, now_ms(), max_wait)
    }

    fn renew_every(&self) -> Duration {
        self.config.lease_duration_value() / 3
    }

    fn component(&self) -> Component<'_> {
        Component::Sender {
            namespace: &self.namespace,
            holder: self.lease.holder(),
        }
    }

    /// The thread's body: stand by or lead until told to stop, then finish.
    pub(crate) fn run(mut self) {
        self.shared.counters.running.store(true, Ordering::Release);
        self.hooks.emit(|h| h.on_started(&self.component()));
        while !self.stopping() {
            if self.lease.token().is_none() {
                self.stand_by();
            } else {
                self.lead();
            }
        }
        self.finish();
        self.shared.counters.active.store(false, Ordering::Release);
        self.hooks.emit(|h| h.on_stopped(&self.component()));
        self.shared.counters.running.store(false, Ordering::Release);
    }

    /// Hands `event` to the core and carries out what it says.
    pub(crate) fn feed(&mut self, event: Event) {
        let mut events = vec![event];
        while let Some(event) = events.pop() {
            let now = self.now();
            let trace = log::log_enabled!(log::Level::Trace);
            if trace && !matches!(event, Event::Tick | Event::MoreWork) {
                log::trace!("{} {event:?}", now.book_ms);
            }
            let effects = self.core.handle(event, now);
            if trace {
                for e in &effects {
                    match e {
                        Effect::Send { lane, tag, item } => log::trace!(
                            "  send lane {lane} tag {tag} {} {} expected {:?}",
                            item.stream,
                            item.options.id.as_deref().unwrap_or(""),
                            item.options.expected_version
                        ),
                        other => log::trace!("  {other:?}"),
                    }
                }
            }
            for effect in effects {
                if let Some(follow_up) = self.carry_out(effect) {
                    events.push(follow_up);
                }
            }
        }
    }

    /// Carries out one effect; a send into a pipeline that has stopped
    /// comes back as a failed answer (and the lane gets a new pipeline).
    fn carry_out(&mut self, effect: Effect) -> Option<Event> {
        match effect {
            Effect::Send { lane, tag, item } => {
                if self.pipelines[lane].send(tag, item).is_err() {
                    self.reopen(lane);
                    return Some(Event::Answer {
                        tag,
                        result: Err(Error::Transport {
                            kind: TransportErrorKind::ConnectionReset,
                            message: "the lane's pipeline stopped; opened a new one".into(),
                        }),
                    });
                }
            }
            Effect::Reconcile {
                stream,
                read,
                tail,
                ids,
            } => self.checker.request(Check::Reconcile {
                stream,
                read,
                tail,
                ids,
            }),
            Effect::Probe { stream } => self.checker.request(Check::Probe { stream }),
            Effect::Paused { reason, error } => self.paused(reason, &error),
            Effect::Resumed { reason, paused_ms } => self.resumed(reason, paused_ms),
            Effect::Reordered { stream, id } => self.reordered(&stream, &id),
        }
        None
    }

    /// Replaces lane `lane`'s pipeline (its threads stopped).
    fn reopen(&mut self, lane: usize) {
        match WritePipeline::open(Arc::clone(&self.store)) {
            Ok(pipeline) => self.pipelines[lane] = pipeline,
            Err(e) => self
                .shared
                .counters
                .error(format!("opening a write pipeline: {e}")),
        }
    }

    /// Replaces the checker (its thread ended).
    fn restart_checker(&mut self) {
        match Checker::spawn(Arc::clone(&self.store)) {
            Ok(checker) => self.checker = checker,
            Err(e) => self
                .shared
                .counters
                .error(format!("starting the outbox checker: {e}")),
        }
    }

    /// One turn as the active sender: take what arrived, then do the first
    /// thing due — a transaction (write back, claim, renew), retention —
    /// or wait.
    fn lead(&mut self) {
        self.take_arrived();
        self.publish_state();
        let generation = self.hub.rescan_generation();
        if generation != self.rescans_seen {
            self.rescans_seen = generation;
            self.rescan();
        }
        if self.lease.token().is_none() {
            return;
        }
        let now = Instant::now();
        let db_ok = self.db_pause_until.is_none_or(|t| now >= t);
        let claim = self.core.claim_limit();
        let flush = self.core.marks_due(self.now());
        let pause_changed = self.pause_changed();
        if db_ok && (flush || claim.is_some() || pause_changed || now >= self.next_renew) {
            self.cycle(claim);
            return;
        }
        if db_ok && now >= self.next_retention {
            self.retention();
            return;
        }
        self.wait(now);
    }

    /// Feeds the core everything that arrived, without waiting.
    fn take_arrived(&mut self) {
        loop {
            let mut any = false;
            for lane in 0..self.pipelines.len() {
                while let Ok(answer) = self.pipelines[lane].answers().try_recv() {
                    any = true;
                    self.feed(Event::Answer {
                        tag: answer.tag,
                        result: answer.result,
                    });
                }
            }
            while let Ok(checked) = self.checker.results.try_recv() {
                any = true;
                self.feed(checked_event(checked));
            }
            if !any {
                return;
            }
        }
    }

    /// Blocks until an answer, a read, a write wakes us, it is time for
    /// something, or we are told to stop.
    fn wait(&mut self, now: Instant) {
        let mut deadline = self.next_poll;
        match self.db_pause_until {
            // The database failed: nothing that needs it before this.
            Some(t) if now < t => deadline = deadline.min(t),
            _ => deadline = deadline.min(self.next_renew).min(self.next_retention),
        }
        if let Some(due) = self.core.next_due_ms() {
            let wait = Duration::from_millis((due - self.now().book_ms).max(0) as u64);
            deadline = deadline.min(now + wait);
        }
        let timeout = deadline.saturating_duration_since(now);
        match self.wait_for(timeout) {
            Woken::Answer(answer) => self.feed(Event::Answer {
                tag: answer.tag,
                result: answer.result,
            }),
            Woken::LaneDown(lane) => {
                self.reopen(lane);
                self.feed(Event::LaneReset { lane });
            }
            Woken::Checked(checked) => self.feed(checked_event(checked)),
            Woken::CheckerDown => {
                self.restart_checker();
                self.feed(Event::CheckerReset);
            }
            Woken::Wake => self.feed(Event::MoreWork),
            Woken::Stop | Woken::Nothing => self.feed(Event::Tick),
        }
        if Instant::now() >= self.next_poll {
            self.poll();
        }
    }

    fn wait_for(&self, timeout: Duration) -> Woken {
        let mut select = Select::new();
        for pipeline in &self.pipelines {
            select.recv(pipeline.answers());
        }
        let checked = select.recv(&self.checker.results);
        let wake = select.recv(&*self.wake);
        let stop = select.recv(&self.stop);
        let Ok(op) = select.select_timeout(timeout) else {
            return Woken::Nothing;
        };
        let index = op.index();
        if index < self.pipelines.len() {
            return match op.recv(self.pipelines[index].answers()) {
                Ok(answer) => Woken::Answer(answer),
                Err(_) => Woken::LaneDown(index),
            };
        }
        if index == checked {
            return op
                .recv(&self.checker.results)
                .map_or(Woken::CheckerDown, Woken::Checked);
        }
        if index == wake {
            let _ = op.recv(&*self.wake);
            return Woken::Wake;
        }
        debug_assert_eq!(index, stop);
        let _ = op.recv(&self.stop);
        Woken::Stop
    }
}

fn checked_event(checked: Checked) -> Event {
    match checked {
        Checked::Reconciled {
            stream,
            read,
            result,
        } => Event::Reconciled {
            stream,
            read,
            result,
        },
        Checked::Probed { result } => Event::Probed { result },
    }
}
