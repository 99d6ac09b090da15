//! The writer of a pipeline: takes writes from the queue, keeps one
//! connection (opened when there is something to send, reopened after it
//! ended), writes what is queued back to back, and ends a connection whose
//! answers are overdue.

use std::collections::VecDeque;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crossbeam_channel::{at, bounded, never, select, Receiver, Sender};

use super::reader::ReaderThread;
use super::{broken_kind, check, transport_parts, End, InFlight, Line, LineState, Target};
use crate::error::{Error, Result, TransportErrorKind};
use crate::store::http::connection::{self, encode_request, Connection};
use crate::store::http::failure::io_transport_error;
use crate::store::http::pipelining::PipeliningState;
use crate::store::pipeline::{PipelinedAnswer, PipelinedWrite};
use crate::wire::rpc;

/// Most writes in one socket write.
const BATCH_WRITES: usize = 1024;
/// Bytes after which a batch is written (one request may be larger).
const BATCH_BYTES: usize = 256 * 1024;

/// The open connection.
struct Live {
    line: Arc<Line>,
    writer: connection::Writer,
    socket: TcpStream,
    reader: JoinHandle<()>,
    /// Something was written on it already.
    has_sent: bool,
}

/// The writer thread's state.
pub(super) struct WriterThread {
    target: Arc<Target>,
    store: Arc<PipeliningState>,
    requests: Receiver<PipelinedWrite>,
    answers: Sender<PipelinedAnswer>,
    stop: Receiver<()>,
    stopping: Arc<AtomicBool>,
    current: Arc<Mutex<Option<TcpStream>>>,
    /// The reader's wake-ups: an answer when the writer waits for room,
    /// the first answer on a connection, its end, TLS records to send.
    poke: Sender<()>,
    poked: Receiver<()>,
    /// Taken from the queue (or handed back) and not written yet, in order.
    pending: VecDeque<PipelinedWrite>,
    live: Option<Live>,
    buf: Vec<u8>,
}

impl WriterThread {
    pub(super) fn new(
        target: Arc<Target>,
        store: Arc<PipeliningState>,
        requests: Receiver<PipelinedWrite>,
        answers: Sender<PipelinedAnswer>,
        stop: Receiver<()>,
        stopping: Arc<AtomicBool>,
        current: Arc<Mutex<Option<TcpStream>>>,
    ) -> WriterThread {
        let (poke, poked) = bounded(1);
        WriterThread {
            target,
            store,
            requests,
            answers,
            stop,
            stopping,
            current,
            poke,
            poked,
            pending: VecDeque::new(),
            live: None,
            buf: Vec::new(),
        }
    }

    pub(super) fn run(mut self) {
        while !self.stopping.load(Ordering::Acquire) {
            self.reap_if_ended();
            let room = self.room();
            if room > 0 && !self.pending.is_empty() {
                self.send(room);
                continue;
            }
            let none = never();
            let requests = if room > 0 { &self.requests } else { &none };
            let timer = match self.deadline() {
                Some((deadline, _)) => at(deadline),
                None => never(),
            };
            select! {
                recv(requests) -> write => match write {
                    Ok(write) => {
                        self.pending.push_back(write);
                        let more = self.requests.try_iter().take(BATCH_WRITES - 1);
                        self.pending.extend(more);
                    }
                    Err(_) => break,
                },
                recv(self.stop) -> _ => break,
                recv(self.poked) -> _ => self.flush_tls(),
                recv(timer) -> _ => self.check_deadline(),
            }
        }
        self.close();
    }

    /// How many more writes the connection may have unanswered; when none,
    /// asks the reader for a wake-up at the next answer.
    fn room(&self) -> usize {
        let depth = self.store.depth();
        let Some(live) = &self.live else {
            return depth;
        };
        let mut line = live.line.lock();
        let room = depth.saturating_sub(line.in_flight.len());
        line.writer_waits = room == 0;
        room
    }

    /// Writes up to `room` pending writes (opening a connection first if
    /// needed) in one socket write. Writes that fail [`check`] are not
    /// sent: each is answered with its error in its turn.
    fn send(&mut self, room: usize) {
        if self.live.is_none() {
            // Nothing is in flight: refusals first in line are answered
            // now, without connecting for them.
            while let Some(Err(e)) = self.pending.front().map(|w| check(&w.item)) {
                if let Some(write) = self.pending.pop_front() {
                    let _ = self.answers.send(PipelinedAnswer {
                        tag: write.tag,
                        result: Err(e),
                    });
                }
            }
            if self.pending.is_empty() {
                return;
            }
            match self.connect() {
                Ok(live) => self.live = Some(live),
                Err(e) => return self.fail_queued(&e),
            }
        }
        let Some(live) = self.live.as_mut() else {
            return;
        };
        self.buf.clear();
        let mut batch = Vec::new();
        while batch.len() < room.min(BATCH_WRITES) && self.buf.len() < BATCH_BYTES {
            let Some(write) = self.pending.pop_front() else {
                break;
            };
            let item = &write.item;
            let refused = check(item).err();
            if refused.is_none() {
                let args = rpc::write_args(&item.stream, &item.message, &item.options);
                let body = rpc::request("stream.write", args);
                encode_request(&mut self.buf, &self.target.head, &body);
            }
            batch.push((write, refused));
        }
        let count;
        {
            let mut line = live.line.lock();
            if let Some(end) = &line.end {
                // Ended meanwhile: these go out on the next connection —
                // unless this one ended before anything was sent on it (a
                // server that closes every connection at once), which is a
                // failure to connect, not a reason to try again at once.
                let refused = (!live.has_sent).then(|| match end {
                    End::Broken { kind, message } => Error::Transport {
                        kind: *kind,
                        message: message.clone(),
                    },
                    _ => Error::Transport {
                        kind: TransportErrorKind::ConnectionReset,
                        message: "the store closed the connection".into(),
                    },
                });
                drop(line);
                for (write, _) in batch.into_iter().rev() {
                    self.pending.push_front(write);
                }
                if let Some(e) = refused {
                    self.fail_queued(&e);
                }
                return;
            }
            let now = Instant::now();
            let before = line.in_flight.len();
            for (write, refused) in batch {
                let timed = refused.is_none() && line.in_flight.is_empty();
                line.in_flight.push_back(InFlight {
                    write,
                    sent_at: now,
                    timed,
                    refused,
                });
                // A refusal with nothing sent ahead of it is answered now.
                line.answer_refused(&self.answers);
            }
            count = line.in_flight.len() - before;
        }
        if self.buf.is_empty() {
            // Only refusals: nothing to write.
            return;
        }
        let sent = live.writer.send(&self.buf);
        let has_sent = std::mem::replace(&mut live.has_sent, true);
        let Err(failed) = sent else {
            return;
        };
        let mut line = live.line.lock();
        if line.end.is_none() {
            // None of this batch left, on a connection that worked before
            // (the server closed it while idle): sure not processed, so it
            // goes out again. On a fresh connection it is answered with the
            // error instead, so a server that resets every connection
            // cannot make this a loop.
            if !failed.sent_any && has_sent {
                // The batch is the tail of the line; the reader may have
                // answered refusals at its head meanwhile (after the
                // answers of everything ahead of it).
                let keep = line.in_flight.len().saturating_sub(count);
                let unsent: Vec<_> = line.in_flight.drain(keep..).map(|f| f.write).collect();
                for write in unsent.into_iter().rev() {
                    self.pending.push_front(write);
                }
            }
            line.end = Some(End::broken(
                broken_kind(&failed.error),
                format!("writing to the store failed: {}", failed.error),
            ));
        }
        drop(line);
        Connection::shutdown(&live.socket);
    }

    /// Opens a connection and starts its reader.
    fn connect(&mut self) -> Result<Live> {
        let conn = connection::connect(&self.target.url, &self.target.connect)?;
        let io = |e: std::io::Error| io_transport_error(&e);
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(conn.socket.try_clone().map_err(io)?);
        if self.stopping.load(Ordering::Acquire) {
            // The pipeline's drop may have missed this socket.
            Connection::shutdown(&conn.socket);
        }
        let line = Arc::new(Line::new());
        let reader = ReaderThread::new(
            Arc::clone(&line),
            conn.reader,
            conn.socket.try_clone().map_err(io)?,
            self.answers.clone(),
            Arc::clone(&self.store),
            self.poke.clone(),
        );
        let reader = thread::Builder::new()
            .name("eventodb-pipe-read".into())
            .spawn(move || reader.run())
            .map_err(io)?;
        Ok(Live {
            line,
            writer: conn.writer,
            socket: conn.socket,
            reader,
            has_sent: false,
        })
    }

    /// Answers every write taken or queued with the failure to connect
    /// (no connection storm against a store that is down).
    /// A write that fails [`check`] gets its own error instead.
    fn fail_queued(&mut self, e: &Error) {
        let (kind, message) = transport_parts(e);
        let queued: Vec<_> = self
            .pending
            .drain(..)
            .chain(self.requests.try_iter())
            .collect();
        log::debug!(
            target: "eventodb_kit::store::http",
            "connecting for {} pipelined writes failed: {message}",
            queued.len()
        );
        for write in queued {
            let result = check(&write.item).and_then(|()| {
                Err(Error::Transport {
                    kind,
                    message: message.clone(),
                })
            });
            let _ = self.answers.send(PipelinedAnswer {
                tag: write.tag,
                result,
            });
        }
    }

    /// After the connection ended: joins its reader (which answered what
    /// was sent on it) and puts the writes it handed back first in line.
    fn reap_if_ended(&mut self) {
        let ended = self
            .live
            .as_ref()
            .is_some_and(|live| live.line.lock().end.is_some());
        if !ended {
            return;
        }
        let Some(live) = self.live.take() else {
            return;
        };
        Connection::shutdown(&live.socket);
        let _ = live.reader.join();
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let handback = std::mem::take(&mut live.line.lock().handback);
        for write in handback.into_iter().rev() {
            self.pending.push_front(write);
        }
    }

    /// When the oldest unanswered write is overdue, and whether that is a
    /// stall (see [`PipeliningState::stall_timeout`]).
    fn deadline(&self) -> Option<(Instant, bool)> {
        let live = self.live.as_ref()?;
        let line = live.line.lock();
        self.deadline_of(&line)
    }

    fn deadline_of(&self, line: &LineState) -> Option<(Instant, bool)> {
        if line.end.is_some() {
            return None;
        }
        let oldest = line.in_flight.front()?;
        let since = line.last_progress.max(oldest.sent_at);
        let read_timeout = self.target.read_timeout;
        // Answered its first request, then nothing more although others
        // had been sent before that answer.
        let stall = line.answered == 1 && line.behind_first > 0;
        if stall {
            let timeout = if read_timeout.is_zero() {
                self.store.stall_timeout(std::time::Duration::MAX)
            } else {
                self.store.stall_timeout(read_timeout)
            };
            return since.checked_add(timeout).map(|d| (d, true));
        }
        if read_timeout.is_zero() {
            return None;
        }
        since.checked_add(read_timeout).map(|d| (d, false))
    }

    /// Ends the connection if its answers are overdue; a stall also means
    /// the store does not pipeline.
    fn check_deadline(&mut self) {
        let Some(live) = &self.live else {
            return;
        };
        let mut line = live.line.lock();
        let Some((deadline, stall)) = self.deadline_of(&line) else {
            return;
        };
        let now = Instant::now();
        if now < deadline {
            return;
        }
        let silent = now.duration_since(line.last_progress.max(line.in_flight[0].sent_at));
        let message = if stall {
            format!(
                "the store answered the first of the pipelined requests and then nothing for {silent:.1?}"
            )
        } else {
            format!("no answer from the store for {silent:.1?} (the read timeout)")
        };
        line.end = Some(End::broken(TransportErrorKind::Timeout, message.clone()));
        drop(line);
        if stall {
            self.store.fall_back(&message);
        }
        Connection::shutdown(&live.socket);
    }

    fn flush_tls(&mut self) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        if let Err(e) = live.writer.flush_tls() {
            let mut line = live.line.lock();
            if line.end.is_none() {
                line.end = Some(End::broken(
                    broken_kind(&e),
                    format!("writing to the store failed: {e}"),
                ));
            }
            drop(line);
            Connection::shutdown(&live.socket);
        }
    }

    /// The pipeline is dropped: ends the connection and joins its reader.
    fn close(&mut self) {
        if let Some(live) = self.live.take() {
            live.line.lock().end.get_or_insert(End::Stopped);
            Connection::shutdown(&live.socket);
            let _ = live.reader.join();
        }
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}
