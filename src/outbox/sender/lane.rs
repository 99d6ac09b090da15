//! Lanes: threads that deliver rows, each stream always through the same
//! lane, in the order the dispatcher hands them out.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
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
    /// The stream was settled and resumes: deliver its rows again.
    Resume(String),
    /// Forget every failed stream (after taking the lease over).
    ResumeAll,
}

/// A row back from a lane.
#[derive(Debug)]
pub(crate) struct LaneResult {
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

/// The lane that carries `stream` (a stable hash of the name).
pub(crate) fn lane_of(stream: &str, lanes: usize) -> usize {
    let mut h = DefaultHasher::new();
    stream.hash(&mut h);
    (h.finish() % lanes.max(1) as u64) as usize
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
        .spawn(move || run(rx, &*store, &flags, &results))?;
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
        done.push(LaneResult { row, outcome });
        if done.len() >= RESULT_BATCH && results.send(std::mem::take(&mut done)).is_err() {
            return;
        }
    }
}
