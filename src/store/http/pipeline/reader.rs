//! The reader of one pipelined connection: reads the answers in order,
//! answers each write, and when the connection ends answers (or hands
//! back) the writes still on it.

use std::io::{self, Read};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;

use super::{broken_kind, unknown_outcome, write_result, End, Line, MAX_ANSWER};
use crate::error::TransportErrorKind;
use crate::store::http::connection::{self, Connection};
use crate::store::http::pipelining::PipeliningState;
use crate::store::http::response::{ReadError, Response, ResponseReader};
use crate::store::pipeline::PipelinedAnswer;

/// The reader thread's state.
pub(super) struct ReaderThread {
    line: Arc<Line>,
    responses: ResponseReader<Progress>,
    answers: Sender<PipelinedAnswer>,
    store: Arc<PipeliningState>,
    poke: Sender<()>,
    socket: TcpStream,
}

/// The connection's byte stream, noting progress on the line and telling
/// the writer when TLS records wait to be sent.
struct Progress {
    inner: connection::Reader,
    line: Arc<Line>,
    poke: Sender<()>,
}

impl Read for Progress {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(out)?;
        if n > 0 {
            self.line.lock().last_progress = Instant::now();
        }
        if self.inner.wants_write() {
            let _ = self.poke.try_send(());
        }
        Ok(n)
    }
}

impl ReaderThread {
    pub(super) fn new(
        line: Arc<Line>,
        reader: connection::Reader,
        socket: TcpStream,
        answers: Sender<PipelinedAnswer>,
        store: Arc<PipeliningState>,
        poke: Sender<()>,
    ) -> ReaderThread {
        let progress = Progress {
            inner: reader,
            line: Arc::clone(&line),
            poke: poke.clone(),
        };
        ReaderThread {
            line,
            responses: ResponseReader::new(progress, MAX_ANSWER),
            answers,
            store,
            poke,
            socket,
        }
    }

    /// Reads answers until the connection ends, then settles what is left.
    pub(super) fn run(mut self) {
        let end = loop {
            match self.responses.read_response() {
                Ok(Some(response)) => {
                    if let Some(end) = self.answer(response) {
                        break end;
                    }
                }
                Ok(None) => {
                    break End::broken(
                        TransportErrorKind::ConnectionReset,
                        "the store closed the connection",
                    )
                }
                // A refusal the server sends after the handshake (TLS 1.3:
                // a client certificate it does not accept) is TLS's.
                Err(ReadError::Io(e)) => match crate::tls::rustls_error(&e) {
                    Some(tls) => {
                        break End::broken(TransportErrorKind::Tls, crate::tls::describe(tls))
                    }
                    None => {
                        break End::broken(
                            broken_kind(&e),
                            format!("the connection to the store failed: {e}"),
                        )
                    }
                },
                Err(ReadError::Malformed(m)) => {
                    break End::broken(
                        TransportErrorKind::ConnectionReset,
                        format!("an answer of the store could not be read ({m})"),
                    )
                }
            }
        };
        self.finish(end);
    }

    /// Answers the oldest write with `response`; `Some` when the
    /// connection ends with it.
    fn answer(&mut self, response: Response) -> Option<End> {
        let mut line = self.line.lock();
        let Some(sent) = line.in_flight.pop_front() else {
            return Some(End::broken(
                TransportErrorKind::ConnectionReset,
                "the store sent an answer to no request",
            ));
        };
        let now = Instant::now();
        if sent.timed {
            self.store.rtt_sample(now.duration_since(sent.sent_at));
        }
        line.answered += 1;
        line.last_progress = now;
        if line.answered == 1 {
            line.behind_first = line.due();
        }
        let result = write_result(&response, &sent.write.item);
        // Under the lock, so that no answer of the writer's or of `finish`
        // can overtake it.
        let _ = self.answers.send(PipelinedAnswer {
            tag: sent.write.tag,
            result,
        });
        // The refused writes that waited for this answer.
        line.answer_refused(&self.answers);
        // The first answer arms the stall deadline; a waiting writer has room.
        let wake = line.answered == 1 || std::mem::take(&mut line.writer_waits);
        drop(line);
        if response.http10 {
            self.store.fall_back("it answers with HTTP/1.0");
        }
        if response.close {
            return Some(End::Closed);
        }
        if wake {
            let _ = self.poke.try_send(());
        }
        None
    }

    /// Records how the connection ended (unless the writer did first),
    /// answers or hands back the writes still on it, and wakes the writer.
    fn finish(self, end: End) {
        let mut line = self.line.lock();
        let end = line.end.get_or_insert(end).clone();
        let outstanding = line.due();
        let left: Vec<_> = line.in_flight.drain(..).collect();
        match &end {
            // Refused writes too: checked again when they come up.
            End::Closed => line.handback.extend(left.into_iter().map(|f| f.write)),
            End::Broken { kind, message } => {
                for f in left {
                    let _ = self.answers.send(PipelinedAnswer {
                        tag: f.write.tag,
                        result: Err(f.refused.unwrap_or_else(|| unknown_outcome(*kind, message))),
                    });
                }
            }
            // Nobody waits for answers any more.
            End::Stopped => {}
        }
        let answered = line.answered;
        drop(line);
        if !matches!(end, End::Stopped) {
            let said = matches!(end, End::Closed);
            self.store.connection_ended(answered, outstanding, said);
        }
        if let End::Broken { message, .. } = &end {
            log::debug!(
                target: "eventodb_kit::store::http",
                "pipelined connection ended with {outstanding} writes unanswered: {message}"
            );
        }
        Connection::shutdown(&self.socket);
        let _ = self.poke.try_send(());
    }
}
