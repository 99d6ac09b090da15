//! The SSE client: one thread per `/subscribe` connection that reads pokes,
//! hands them to a sink, and reconnects when the connection fails, resuming
//! after the last poke it saw.
//!
//! Each connection is a socket of its own ([`stream`]): TCP keepalive on,
//! TLS with the store's settings, every read bounded by the silence timeout
//! so that a quiet stream is checked ([`liveness`]) instead of trusted for
//! ever. A connection that had been up is followed by an immediate
//! reconnect; only consecutive failures wait, with growing backoff.
//!
//! Stopping: the owner sets a flag, shuts down the socket or the probe in
//! progress (which wakes a blocked read), closes the channel the backoff
//! waits on, and joins the thread.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use ureq::Agent;

use super::client::CallContext;
use super::failure::{answer_error, io_transport_error};
use super::status::ConnectionStatus;
use crate::error::{Error, Result, TransportErrorKind};
use crate::retry::RetryPolicy;
use crate::store::{Poke, SubscribeTarget};
use crate::wire::sse::{decode_poke, EventParser};

pub(crate) mod liveness;
pub(crate) mod stream;

use liveness::{Prober, Silence};
use stream::{BaseUrl, Connection, Interrupt, Read, SocketSettings};

/// Where pokes go.
pub(crate) trait PokeSink: Send + Sync + 'static {
    /// Delivers one poke; returns `false` when nobody listens any more.
    fn deliver(&self, poke: Poke) -> bool;

    /// The connection came up (`true`, not said of the first one) or an
    /// established one broke (`false`). Does nothing by default.
    fn link_changed(&self, _up: bool) {}
}

impl PokeSink for Sender<Poke> {
    fn deliver(&self, poke: Poke) -> bool {
        // A full channel drops the poke: the reader has wake-ups pending.
        !matches!(
            self.try_send(poke),
            Err(crossbeam_channel::TrySendError::Disconnected(_))
        )
    }
}

/// Where `/subscribe` is, with what credentials, and how to watch it.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub(crate) target: Arc<BaseUrl>,
    pub(crate) authorization: String,
    pub(crate) socket: SocketSettings,
    /// Longest wait for each read of a refusal's body.
    pub(crate) read_timeout: Duration,
    pub(crate) reconnect: RetryPolicy,
    pub(crate) silence: Silence,
    pub(crate) prober: Prober,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("target", &self.target)
            .field("silence", &self.silence)
            .finish_non_exhaustive()
    }
}

/// Whether a refusal (4xx other than 408/429) ends the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnRefusal {
    /// Stop (a subscription: the caller asked for something impossible).
    Stop,
    /// Keep retrying with backoff (the shared hub: it must come back).
    Retry,
}

/// What the thread is blocked on, to wake it.
enum Current {
    Socket(Interrupt),
    Probe(Agent),
}

impl Current {
    fn wake(self) {
        match self {
            Current::Socket(socket) => socket.interrupt(),
            Current::Probe(agent) => agent.shutdown(),
        }
    }
}

struct Control {
    stopped: AtomicBool,
    /// The socket and the probe in progress, to shut them down.
    current: Mutex<Vec<Current>>,
}

/// A running SSE connection thread. Dropping it stops and joins the thread.
pub(crate) struct SseWorker {
    control: Arc<Control>,
    wake: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    status: ConnectionStatus,
}

impl fmt::Debug for SseWorker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseWorker")
            .field("status", &self.status)
            .finish()
    }
}

impl SseWorker {
    /// Starts a thread that keeps `target` subscribed and feeds `sink`.
    pub(crate) fn spawn(
        endpoint: Endpoint,
        target: SubscribeTarget,
        sink: Arc<dyn PokeSink>,
        on_refusal: OnRefusal,
        name: &str,
    ) -> Result<SseWorker> {
        let control = Arc::new(Control {
            stopped: AtomicBool::new(false),
            current: Mutex::new(Vec::new()),
        });
        let status = ConnectionStatus::new();
        let (wake, wait) = bounded::<()>(0);
        let run = Runner {
            endpoint,
            target,
            sink,
            on_refusal,
            control: Arc::clone(&control),
            status: status.clone(),
            wait,
            head_known: false,
            missing: None,
        };
        let thread = thread::Builder::new()
            .name(name.to_string())
            .spawn(move || run.run())?;
        Ok(SseWorker {
            control,
            wake: Some(wake),
            thread: Some(thread),
            status,
        })
    }

    /// The connection's state.
    pub(crate) fn status(&self) -> &ConnectionStatus {
        &self.status
    }

    /// Stops the thread and waits for it to end.
    pub(crate) fn stop(&mut self) {
        self.control.stopped.store(true, Ordering::SeqCst);
        for current in lock(&self.control.current).drain(..) {
            current.wake();
        }
        self.wake.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for SseWorker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How one connection ended.
enum Outcome {
    /// Nobody listens any more, or the worker was stopped.
    Unwanted,
    /// The store refused the subscription (4xx).
    Refused(Error),
    /// Failed or broke; `connected`: it had been established (the stream
    /// had begun); `lasted`: for at least the reconnect policy's first delay.
    Failed {
        error: Error,
        connected: bool,
        lasted: bool,
    },
}

impl Outcome {
    /// An attempt that failed before the stream began.
    fn failed(error: Error) -> Outcome {
        Outcome::Failed {
            error,
            connected: false,
            lasted: false,
        }
    }
}

struct Runner {
    endpoint: Endpoint,
    target: SubscribeTarget,
    sink: Arc<dyn PokeSink>,
    on_refusal: OnRefusal,
    control: Arc<Control>,
    status: ConnectionStatus,
    wait: Receiver<()>,
    /// For an `all` stream: whether its position is the namespace's head
    /// as of this connection (a poke came or the head was looked up).
    head_known: bool,
    /// A message found by a liveness probe whose poke is awaited (in the
    /// target's position terms).
    missing: Option<i64>,
}

impl Runner {
    fn stopped(&self) -> bool {
        self.control.stopped.load(Ordering::SeqCst)
    }

    /// Forgets the probe's agent (the socket stays registered).
    fn probe_done(&self) {
        lock(&self.control.current).retain(|c| !matches!(c, Current::Probe(_)));
    }

    /// Registers what a stop must wake; `false` when already stopped.
    fn set_current(&self, current: Current) -> bool {
        let mut slot = lock(&self.control.current);
        if self.stopped() {
            current.wake();
            return false;
        }
        slot.push(current);
        true
    }

    fn run(mut self) {
        let mut failures = 0u32;
        // Whether the last break was already followed by an immediate
        // reconnect (a connection that lasted clears it).
        let mut immediate_used = false;
        let mut final_error = None;
        let mut ever_up = false;
        while !self.stopped() {
            self.status.connecting();
            let outcome = self.connect_and_read(&mut ever_up);
            lock(&self.control.current).clear();
            if self.stopped() {
                break;
            }
            let (error, immediate) = match outcome {
                Outcome::Unwanted => break,
                Outcome::Refused(error) if self.on_refusal == OnRefusal::Stop => {
                    final_error = Some(error.to_string());
                    break;
                }
                Outcome::Refused(error) => (error, false),
                Outcome::Failed {
                    error,
                    connected,
                    lasted,
                } => {
                    if lasted {
                        immediate_used = false;
                    }
                    (error, connected && !immediate_used)
                }
            };
            // After a connection that had been up: at once (once — a
            // connection that breaks again at once is a failure). Otherwise
            // the backoff grows with each consecutive failure.
            if immediate {
                immediate_used = true;
                failures = 0;
            } else {
                failures = failures.saturating_add(1);
            }
            log::debug!("SSE {:?}: {error}; reconnecting", self.endpoint.target);
            self.status.disconnected(error.to_string());
            if failures == 0 {
                continue;
            }
            let delay = self.endpoint.reconnect.jittered_delay_after(failures);
            match self.wait.recv_timeout(delay) {
                Err(RecvTimeoutError::Timeout) => continue,
                _ => break,
            }
        }
        self.status.stopped(final_error);
    }

    fn query(&self) -> Vec<(&'static str, String)> {
        match &self.target {
            SubscribeTarget::Stream { stream, position } => {
                vec![
                    ("stream", stream.clone()),
                    ("position", position.to_string()),
                ]
            }
            SubscribeTarget::Category {
                category,
                position,
                consumer_group,
            } => {
                let mut q = vec![
                    ("category", category.clone()),
                    ("position", position.to_string()),
                ];
                if let Some(g) = consumer_group {
                    q.push(("consumer", g.member().to_string()));
                    q.push(("size", g.size().to_string()));
                }
                q
            }
            SubscribeTarget::All { position } => {
                vec![("all", "true".into()), ("position", position.to_string())]
            }
        }
    }

    /// The position the subscription resumes from.
    fn resume_position(&self) -> i64 {
        match &self.target {
            SubscribeTarget::Stream { position, .. }
            | SubscribeTarget::Category { position, .. }
            | SubscribeTarget::All { position } => *position,
        }
    }

    /// After a poke, a reconnect resumes after it (the server replays the
    /// rest for stream and category subscriptions).
    fn advance(&mut self, poke: &Poke) {
        match &mut self.target {
            SubscribeTarget::Stream { position, .. } => {
                *position = (*position).max(poke.position + 1)
            }
            SubscribeTarget::Category { position, .. } | SubscribeTarget::All { position } => {
                *position = (*position).max(poke.global_position + 1);
                self.head_known = true;
            }
        }
    }

    /// For an `all` stream that just began: its position becomes the one
    /// after the namespace's head, so that a later check knows what it
    /// should have heard of. A failure leaves it to the first check.
    fn look_up_head(&mut self) -> std::result::Result<(), Error> {
        if !matches!(self.target, SubscribeTarget::All { .. }) || self.head_known {
            return Ok(());
        }
        let agent = self.endpoint.prober.settings.probe_agent();
        if !self.set_current(Current::Probe(agent.clone())) {
            return Err(Error::Shutdown);
        }
        let head = self
            .endpoint
            .prober
            .head(&agent, self.resume_position() - 1);
        self.probe_done();
        match head {
            Ok(head) => {
                self.advance_to(head + 1);
                self.head_known = true;
            }
            Err(e) => log::debug!("SSE: cannot look up the namespace's head: {e}"),
        }
        Ok(())
    }

    /// Moves an `all` stream's position forward to `next`.
    fn advance_to(&mut self, next: i64) {
        if let SubscribeTarget::All { position } = &mut self.target {
            *position = (*position).max(next);
        }
    }

    /// The stream was silent for the time it was given: decides whether it
    /// is quiet (returns how long to wait next) or dead (the error).
    fn silent(&mut self) -> std::result::Result<Duration, Error> {
        let silence = self.endpoint.silence;
        if let Some(missing) = self.missing.take() {
            return Err(Error::Transport {
                kind: TransportErrorKind::Timeout,
                message: format!(
                    "the event stream is dead: the store holds a message at position {missing} \
                     that it did not report within {:?} of silence and {:?} of grace",
                    silence.timeout, silence.grace
                ),
            });
        }
        self.status.liveness_checked();
        let agent = self.endpoint.prober.settings.probe_agent();
        if !self.set_current(Current::Probe(agent.clone())) {
            return Err(Error::Shutdown);
        }
        let prober = &self.endpoint.prober;
        let found = if matches!(self.target, SubscribeTarget::All { .. }) && !self.head_known {
            prober.head(&agent, self.resume_position() - 1).map(|head| {
                self.advance_to(head + 1);
                self.head_known = true;
                None
            })
        } else {
            prober.first_unpoked(&agent, &self.target)
        };
        self.probe_done();
        match found {
            Ok(None) => Ok(silence.timeout),
            Ok(Some(position)) => {
                self.missing = Some(position);
                Ok(silence.grace)
            }
            Err(e) => Err(Error::Transport {
                kind: TransportErrorKind::Timeout,
                message: format!(
                    "the event stream was silent for {:?} and the store did not answer a probe: {e}",
                    silence.timeout
                ),
            }),
        }
    }

    /// Whether a connection opened at `started` lasted at least the
    /// reconnect policy's first delay: then its break is followed by an
    /// immediate attempt even if the previous break was too (a connection
    /// that keeps breaking at once only gets one).
    fn lasted(&self, started: Instant) -> bool {
        started.elapsed() >= self.endpoint.reconnect.delay_after(1)
    }

    /// Something arrived: the connection is alive.
    fn heard(&mut self) {
        self.missing = None;
    }

    fn connect_and_read(&mut self, ever_up: &mut bool) -> Outcome {
        let endpoint = self.endpoint.clone();
        let started = Instant::now();
        let mut registered = true;
        let opened = Connection::open(&endpoint.target, &endpoint.socket, |interrupt| {
            registered = self.set_current(Current::Socket(interrupt));
        });
        let mut conn = match opened {
            Ok(c) if registered => c,
            Ok(_) => return Outcome::Unwanted,
            Err(error) => return Outcome::failed(error),
        };
        let query = stream::encode_query(&self.query());
        if let Err(e) = conn.send_request(
            &endpoint.target,
            &query,
            &endpoint.authorization,
            endpoint.socket.connect_timeout,
        ) {
            return Outcome::failed(io_transport_error(&e));
        }
        if matches!(self.target, SubscribeTarget::All { .. }) {
            // Not replayed: writes made while it was down are not poked.
            self.head_known = false;
        }
        self.missing = None;
        // The head: a real EventoDB sends it for a stream or category
        // subscription only with the first poke, so silence applies here too.
        let mut wait = endpoint.silence.timeout;
        loop {
            match conn.read_head(wait, endpoint.read_timeout) {
                Ok(Read::Ready(None)) => break,
                Ok(Read::Ready(Some(answer))) => return self.refusal(answer.status, &answer.body),
                Ok(Read::Silent) => match self.silent() {
                    Ok(next) => wait = next,
                    Err(Error::Shutdown) => return Outcome::Unwanted,
                    Err(error) => return Outcome::failed(error),
                },
                Ok(Read::End) => {
                    return Outcome::failed(Error::Transport {
                        kind: TransportErrorKind::ConnectionReset,
                        message: "the server closed the connection before answering".into(),
                    })
                }
                Err(e) => return Outcome::failed(io_transport_error(&e)),
            }
        }
        self.heard();
        if self.look_up_head().is_err() {
            return Outcome::Unwanted;
        }
        self.status.connected();
        if *ever_up {
            self.sink.link_changed(true);
        }
        *ever_up = true;
        let outcome = self.read_events(&mut conn, started);
        if !matches!(outcome, Outcome::Unwanted) && !self.stopped() {
            self.sink.link_changed(false);
        }
        outcome
    }

    fn refusal(&self, status: u16, body: &[u8]) -> Outcome {
        // The subscription's own backoff decides when to connect again.
        let error = match answer_error(status, body, None, CallContext::default()) {
            // /subscribe's parameter errors are plain text.
            Error::Store {
                status: 400,
                message,
                ..
            } => Error::InvalidInput(message),
            other => other,
        };
        if (400..500).contains(&status) && status != 408 && status != 429 {
            Outcome::Refused(error)
        } else {
            Outcome::failed(error)
        }
    }

    fn read_events(&mut self, conn: &mut Connection, started: Instant) -> Outcome {
        let mut parser = EventParser::default();
        let mut wait = self.endpoint.silence.timeout;
        loop {
            let line = match conn.next_line(wait) {
                Ok(Read::Ready(line)) => line,
                Ok(Read::Silent) => match self.silent() {
                    Ok(next) => {
                        wait = next;
                        continue;
                    }
                    Err(Error::Shutdown) => return Outcome::Unwanted,
                    Err(error) => {
                        return Outcome::Failed {
                            error,
                            connected: true,
                            lasted: self.lasted(started),
                        }
                    }
                },
                Ok(Read::End) => {
                    return Outcome::Failed {
                        error: Error::Transport {
                            kind: TransportErrorKind::ConnectionReset,
                            message: "the server ended the event stream".into(),
                        },
                        connected: true,
                        lasted: self.lasted(started),
                    }
                }
                Err(e) => {
                    return Outcome::Failed {
                        error: io_transport_error(&e),
                        connected: true,
                        lasted: self.lasted(started),
                    }
                }
            };
            self.heard();
            wait = self.endpoint.silence.timeout;
            let Some(event) = parser.line(&line) else {
                continue;
            };
            if event.name != "poke" {
                continue;
            }
            let Some(poke) = decode_poke(&event.data) else {
                log::debug!("SSE: ignoring a poke that does not parse: {}", event.data);
                continue;
            };
            self.advance(&poke);
            if !self.sink.deliver(poke) {
                return Outcome::Unwanted;
            }
        }
    }
}
