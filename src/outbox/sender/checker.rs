//! The sender's reads, on a thread of their own so that the dispatcher
//! never waits for the network: reading a stream's tail to settle rows in
//! doubt, and probing whether a store that failed answers again.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};

use super::core::Reconciliation;
use crate::error::Result;
use crate::store::{MessageStore, StreamQuery, MAX_BATCH_SIZE};

/// A read for the checker.
#[derive(Debug)]
pub(crate) enum Check {
    /// The version of `stream` and its last `lookback` messages.
    Reconcile { stream: String, lookback: usize },
    /// Whether the store answers an authenticated read.
    Probe { stream: String },
}

/// What a read found.
#[derive(Debug)]
pub(crate) enum Checked {
    Reconciled {
        stream: String,
        result: Result<Reconciliation>,
    },
    Probed {
        result: Result<()>,
    },
}

/// The running checker: requests in, results out.
pub(crate) struct Checker {
    requests: Option<Sender<Check>>,
    pub(crate) results: Receiver<Checked>,
    done: Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl Checker {
    pub(crate) fn spawn(store: Arc<dyn MessageStore>) -> Result<Checker> {
        let (requests, queue) = unbounded::<Check>();
        let (results_tx, results) = unbounded();
        let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
        let thread = thread::Builder::new()
            .name("outbox-checker".into())
            .spawn(move || {
                let _done = done_tx;
                for check in queue {
                    let checked = run(&*store, check);
                    if results_tx.send(checked).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Checker {
            requests: Some(requests),
            results,
            done,
            thread: Some(thread),
        })
    }

    pub(crate) fn request(&self, check: Check) {
        if let Some(requests) = &self.requests {
            let _ = requests.send(check);
        }
    }

    /// Stops the thread: joins it if it ends within `wait` (a read in
    /// progress ends by the store's own time-outs; it is not waited for
    /// longer).
    pub(crate) fn stop(&mut self, wait: Duration) {
        self.requests.take();
        if let Err(RecvTimeoutError::Disconnected) = self.done.recv_timeout(wait) {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

fn run(store: &dyn MessageStore, check: Check) -> Checked {
    match check {
        Check::Reconcile { stream, lookback } => {
            let result = read_tail(store, &stream, lookback);
            Checked::Reconciled { stream, result }
        }
        Check::Probe { stream } => Checked::Probed {
            result: store.stream_version(&stream).map(|_| ()),
        },
    }
}

/// The stream's version and the ids and types of its last `lookback`
/// messages (and any written since the version was read).
fn read_tail(store: &dyn MessageStore, stream: &str, lookback: usize) -> Result<Reconciliation> {
    let Some(version) = store.stream_version(stream)? else {
        return Ok(Reconciliation::default());
    };
    let mut found = Reconciliation {
        version: Some(version),
        messages: HashMap::new(),
    };
    let mut position = (version + 1 - lookback as i64).max(0);
    loop {
        let page = store.get_stream(
            stream,
            &StreamQuery::new()
                .position(position)
                .batch_size(MAX_BATCH_SIZE),
        )?;
        for m in &page {
            found.messages.insert(
                m.id.to_ascii_lowercase(),
                (m.message_type.clone(), m.position),
            );
            found.version = found.version.max(Some(m.position));
        }
        match page.last() {
            Some(last) if page.len() as i64 == MAX_BATCH_SIZE => position = last.position + 1,
            _ => return Ok(found),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{NewMessage, WriteOptions};
    use crate::store::EmbeddedStore;
    use serde_json::json;

    #[test]
    fn reads_the_tail_and_the_version() {
        let store = EmbeddedStore::open_in_memory().unwrap();
        for n in 0..5 {
            let id = format!("0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a8{n}");
            store
                .write(
                    "a-1",
                    &NewMessage::new(format!("T{n}"), json!({})),
                    &WriteOptions::new().id(id),
                )
                .unwrap();
        }
        let tail = read_tail(&store, "a-1", 2).unwrap();
        assert_eq!(tail.version, Some(4));
        assert_eq!(tail.messages.len(), 2);
        assert_eq!(
            tail.messages["0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a84"],
            ("T4".to_string(), 4)
        );
        let empty = read_tail(&store, "b-1", 10).unwrap();
        assert_eq!(empty.version, None);
    }
}
