//! Lanes: threads that deliver rows in the order the dispatcher hands them
//! out; all rows of a stream that are in flight go through one lane.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{unbounded, Receiver, Sender, TryRecvError};

use super::deliver::{deliver, Outcome};
use super::queue::OutboxRow;
use crate::error::Result;
use crate::store::MessageStore;

/// Work for a lane.
#[derive(Debug)]
pub(crate) enum LaneMsg {
    /// Deliver this row (unless its stream already failed here).
    Deliver(Box<OutboxRow>),
    /// The stream was settled and resumes: deliver its rows again (sent to
    /// every lane).
    Resume(String),
    /// Forget every failed stream (after taking the lease over).
    ResumeAll,
}

/// A row back from a lane.
#[derive(Debug)]
pub(crate) struct LaneResult {
    /// The lane it went through.
    pub(crate) lane: usize,
    pub(crate) row: Box<OutboxRow>,
    pub(crate) outcome: Outcome,
}

/// Flags the dispatcher raises for all lanes.
#[derive(Debug, Default)]
pub(crate) struct LaneFlags {
    /// The store is unreachable: skip queued rows until the pause ends.
    pub(crate) paused: AtomicBool,
    /// Stopping or lost the lease: skip every queued row.
    pub(crate) halted: AtomicBool,
}

/// Which lane carries which stream: a stream with rows in flight stays on
/// its lane (so its rows go out in order); a stream with none goes to the
/// least loaded lane (so a few busy streams do not pile up on one lane).
#[derive(Debug)]
pub(crate) struct LaneRouter {
    load: Vec<usize>,
    /// Streams with rows in flight: (lane, rows in flight).
    assigned: HashMap<String, (usize, usize)>,
}

impl LaneRouter {
    pub(crate) fn new(lanes: usize) -> Self {
        LaneRouter {
            load: vec![0; lanes.max(1)],
            assigned: HashMap::new(),
        }
    }

    /// The lane for the next row of `stream`.
    pub(crate) fn route(&mut self, stream: &str) -> usize {
        let lane = match self.assigned.get_mut(stream) {
            Some((lane, rows)) => {
                *rows += 1;
                *lane
            }
            None => {
                let lane = (0..self.load.len())
                    .min_by_key(|&l| self.load[l])
                    .unwrap_or(0);
                self.assigned.insert(stream.to_string(), (lane, 1));
                lane
            }
        };
        self.load[lane] += 1;
        lane
    }

    /// A row of `stream` came back from `lane`.
    pub(crate) fn done(&mut self, lane: usize, stream: &str) {
        if let Some(load) = self.load.get_mut(lane) {
            *load = load.saturating_sub(1);
        }
        if let Some((_, rows)) = self.assigned.get_mut(stream) {
            *rows -= 1;
            if *rows == 0 {
                self.assigned.remove(stream);
            }
        }
    }
}

/// A running lane.
#[derive(Debug)]
pub(crate) struct Lane {
    pub(crate) tx: Sender<LaneMsg>,
    pub(crate) thread: JoinHandle<()>,
}

/// Starts lane `index`.
pub(crate) fn spawn(
    index: usize,
    store: Arc<dyn MessageStore>,
    flags: Arc<LaneFlags>,
    results: Sender<Vec<LaneResult>>,
) -> Result<Lane> {
    let (tx, rx) = unbounded();
    let thread = thread::Builder::new()
        .name(format!("outbox-lane-{index}"))
        .spawn(move || run(index, rx, &*store, &flags, &results))?;
    Ok(Lane { tx, thread })
}

/// Results a lane collects before handing them over while it has more
/// queued work (fewer wake-ups of the dispatcher under load).
const RESULT_BATCH: usize = 32;

/// Delivers rows until the dispatcher drops the channel.
///
/// Once a row of a stream is not delivered (failed or skipped), the stream's
/// later rows in the queue are skipped too, so none overtakes it; the
/// dispatcher says when the stream resumes. Results go back in small
/// batches, and at once whenever the queue runs empty.
fn run(
    index: usize,
    rx: Receiver<LaneMsg>,
    store: &dyn MessageStore,
    flags: &LaneFlags,
    results: &Sender<Vec<LaneResult>>,
) {
    let mut failed: HashSet<String> = HashSet::new();
    let mut done: Vec<LaneResult> = Vec::new();
    loop {
        let msg = if done.is_empty() {
            match rx.recv() {
                Ok(msg) => msg,
                Err(_) => return,
            }
        } else {
            match rx.try_recv() {
                Ok(msg) => msg,
                Err(TryRecvError::Empty) => {
                    if results.send(std::mem::take(&mut done)).is_err() {
                        return;
                    }
                    continue;
                }
                Err(TryRecvError::Disconnected) => {
                    let _ = results.send(done);
                    return;
                }
            }
        };
        let row = match msg {
            LaneMsg::Resume(stream) => {
                failed.remove(&stream);
                continue;
            }
            LaneMsg::ResumeAll => {
                failed.clear();
                continue;
            }
            LaneMsg::Deliver(row) => row,
        };
        let skip = failed.contains(&row.stream)
            || flags.halted.load(Ordering::Acquire)
            || flags.paused.load(Ordering::Acquire);
        let outcome = if skip {
            Outcome::Skipped
        } else {
            deliver(store, &row)
        };
        if !matches!(outcome, Outcome::Delivered { .. }) {
            failed.insert(row.stream.clone());
        }
        done.push(LaneResult {
            lane: index,
            row,
            outcome,
        });
        if done.len() >= RESULT_BATCH && results.send(std::mem::take(&mut done)).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LaneRouter;

    #[test]
    fn streams_stick_while_in_flight_and_spread_otherwise() {
        let mut router = LaneRouter::new(3);
        let a = router.route("a-1");
        assert_eq!(router.route("a-1"), a, "a-1 has rows in flight: same lane");
        let b = router.route("b-1");
        let c = router.route("c-1");
        assert!(a != b && b != c && a != c, "new streams go to idle lanes");
        router.done(a, "a-1");
        router.done(a, "a-1");
        router.done(b, "b-1");
        // a-1 has nothing in flight now and may move to the least loaded lane.
        let again = router.route("a-1");
        assert_ne!(again, c, "c-1's lane is the busy one");
    }
}
