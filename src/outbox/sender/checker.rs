//! The sender's reads, on threads of their own so that the dispatcher
//! never waits for the network: reading a stream's tail to settle rows in
//! doubt, and probing whether a store that failed answers again. A few
//! threads share the requests (after a connection broke, many streams may
//! want a read at once; on a long link each read is a round trip).

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};

use super::core::{ReadId, Reconciliation, TailRead};
use crate::error::Result;
use crate::store::{MessageStore, StreamQuery, MAX_BATCH_SIZE};

use std::collections::HashSet;

/// A read for the checker.
#[derive(Debug)]
pub(crate) enum Check {
    /// The version of `stream` and which of `ids` (lower case) are in
    /// the part of it `tail` names.
    Reconcile {
        stream: String,
        read: ReadId,
        tail: TailRead,
        ids: Vec<String>,
    },
    /// Whether the store answers an authenticated read.
    Probe { stream: String },
}

/// What a read found.
#[derive(Debug)]
pub(crate) enum Checked {
    Reconciled {
        stream: String,
        read: ReadId,
        result: Result<Reconciliation>,
    },
    Probed {
        result: Result<()>,
    },
}

/// Threads a checker runs.
const THREADS: usize = 4;

/// The running checker: requests in, results out.
pub(crate) struct Checker {
    requests: Option<Sender<Check>>,
    pub(crate) results: Receiver<Checked>,
    /// Disconnected once every thread has ended.
    done: Receiver<()>,
    threads: Vec<JoinHandle<()>>,
}

impl Checker {
    pub(crate) fn spawn(store: Arc<dyn MessageStore>) -> Result<Checker> {
        let (requests, queue) = unbounded::<Check>();
        let (results_tx, results) = unbounded();
        let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
        let threads = (0..THREADS)
            .map(|_| {
                let (store, queue) = (Arc::clone(&store), queue.clone());
                let (results_tx, done_tx) = (results_tx.clone(), done_tx.clone());
                thread::Builder::new()
                    .name("outbox-checker".into())
                    .spawn(move || {
                        let _done = done_tx;
                        for check in queue {
                            let checked = run(&*store, check);
                            if results_tx.send(checked).is_err() {
                                return;
                            }
                        }
                    })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Checker {
            requests: Some(requests),
            results,
            done,
            threads,
        })
    }

    pub(crate) fn request(&self, check: Check) {
        if let Some(requests) = &self.requests {
            let _ = requests.send(check);
        }
    }

    /// Stops the threads: joins them if they end within `wait` (a read in
    /// progress ends by the store's own time-outs; it is not waited for
    /// longer).
    pub(crate) fn stop(&mut self, wait: Duration) {
        self.requests.take();
        if let Err(RecvTimeoutError::Disconnected) = self.done.recv_timeout(wait) {
            for thread in self.threads.drain(..) {
                let _ = thread.join();
            }
        }
    }
}

fn run(store: &dyn MessageStore, check: Check) -> Checked {
    match check {
        Check::Reconcile {
            stream,
            read,
            tail,
            ids,
        } => {
            let result = read_tail(store, &stream, tail, &ids);
            Checked::Reconciled {
                stream,
                read,
                result,
            }
        }
        Check::Probe { stream } => Checked::Probed {
            result: store.stream_version(&stream).map(|_| ()),
        },
    }
}

/// The stream's version and the types and positions of the messages with
/// one of `ids` (lower case; every message when empty) in part of it:
/// those after a position ([`TailRead::After`]: one read, up to the
/// stream's end), all of them ([`TailRead::Whole`], in pages), or (at
/// least) its last `lookback` messages. With a `hint` of its version, one
/// read from `lookback` before it usually does (the stream's end is where
/// the read ends); without one, the version is read first.
fn read_tail(
    store: &dyn MessageStore,
    stream: &str,
    tail: TailRead,
    ids: &[String],
) -> Result<Reconciliation> {
    let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let (mut found, mut position) = match tail {
        // The position existed: the stream's version is at least that.
        TailRead::After(after) => (
            Reconciliation::at(Some(after).filter(|a| *a >= 0)),
            after.max(-1) + 1,
        ),
        TailRead::Whole => (Reconciliation::default(), 0),
        TailRead::Last { lookback, hint } => {
            let version = match hint {
                Some(v) => v,
                None => match store.stream_version(stream)? {
                    Some(v) => v,
                    None => return Ok(Reconciliation::default()),
                },
            };
            let found = Reconciliation::at(hint.is_none().then_some(version));
            (found, (version + 1 - lookback as i64).max(0))
        }
    };
    loop {
        let page = store.get_stream(
            stream,
            &StreamQuery::new()
                .position(position)
                .batch_size(MAX_BATCH_SIZE),
        )?;
        for m in &page {
            let id = m.id.to_ascii_lowercase();
            if wanted.is_empty() || wanted.contains(id.as_str()) {
                found
                    .messages
                    .insert(id, (m.message_type.clone(), m.position));
            }
            found.version = found.version.max(Some(m.position));
        }
        // A read of the whole stream is what concludes that an id is not
        // ours: it goes on to an empty page, in case the store answers
        // fewer than asked for.
        let more = match tail {
            TailRead::Whole => !page.is_empty(),
            _ => page.len() as i64 == MAX_BATCH_SIZE,
        };
        match page.last() {
            Some(last) if more => position = last.position + 1,
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
        let last = |lookback, hint| TailRead::Last { lookback, hint };
        let tail = read_tail(&store, "a-1", last(2, None), &[]).unwrap();
        assert_eq!(tail.version, Some(4));
        assert_eq!(tail.messages.len(), 2);
        let hinted = read_tail(&store, "a-1", last(2, Some(2)), &[]).unwrap();
        assert_eq!(hinted.version, Some(4), "the read goes on to the end");
        assert_eq!(hinted.messages.len(), 4);
        assert_eq!(
            tail.messages["0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a84"],
            ("T4".to_string(), 4)
        );
        let empty = read_tail(&store, "b-1", last(10, None), &[]).unwrap();
        assert_eq!(empty.version, None);

        let after = read_tail(&store, "a-1", TailRead::After(2), &[]).unwrap();
        assert_eq!(after.version, Some(4));
        let mut ids: Vec<_> = after.messages.values().map(|(_, p)| *p).collect();
        ids.sort_unstable();
        assert_eq!(ids, [3, 4], "only what follows the position");
        let at_end = read_tail(&store, "a-1", TailRead::After(4), &[]).unwrap();
        assert_eq!(at_end.version, Some(4), "nothing after the end: the end");
        assert!(at_end.messages.is_empty());

        // The whole stream, keeping only the ids looked for.
        let wanted = ["0190b6a4-6a3e-7c3e-9b1a-3f2d1c0b9a80".to_string()];
        let whole = read_tail(&store, "a-1", TailRead::Whole, &wanted).unwrap();
        assert_eq!(whole.version, Some(4));
        assert_eq!(whole.messages.len(), 1);
        assert_eq!(whole.messages[&wanted[0]], ("T0".to_string(), 0));
        let from_start = read_tail(&store, "b-1", TailRead::After(-1), &[]).unwrap();
        assert_eq!(from_start.version, None, "an empty stream has no version");
    }
}
