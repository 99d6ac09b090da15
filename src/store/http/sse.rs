//! The SSE client: one thread per `/subscribe` connection that reads pokes,
//! hands them to a sink, and reconnects with backoff when the connection
//! fails, resuming after the last poke it saw.
//!
//! Stopping: the owner sets a flag, shuts down the agent of the connection
//! in progress (which wakes a blocked read or a wait for response headers),
//! closes the channel the backoff waits on, and joins the thread.

use std::fmt;
use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use ureq::Agent;

use super::client::{
    answer_error, io_transport_error, transport_error, AgentSettings, CallContext,
};
use super::status::ConnectionStatus;
use crate::error::{Error, Result};
use crate::retry::RetryPolicy;
use crate::store::{Poke, SubscribeTarget};
use crate::wire::sse::{decode_poke, EventParser};

/// Where pokes go.
pub(crate) trait PokeSink: Send + Sync + 'static {
    /// Delivers one poke; returns `false` when nobody listens any more.
    fn deliver(&self, poke: Poke) -> bool;
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

/// URL and credentials of `/subscribe`.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub(crate) url: String,
    pub(crate) authorization: String,
    pub(crate) settings: AgentSettings,
    pub(crate) reconnect: RetryPolicy,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
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

struct Control {
    stopped: AtomicBool,
    /// The agent of the connection in progress, to shut it down.
    current: Mutex<Option<Agent>>,
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
            current: Mutex::new(None),
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
        if let Some(agent) = lock(&self.control.current).take() {
            agent.shutdown();
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
    /// Nobody listens any more.
    Unwanted,
    /// The store refused the subscription (4xx).
    Refused(Error),
    /// Failed or broke; `connected` says whether it had been up.
    Failed { error: Error, connected: bool },
}

struct Runner {
    endpoint: Endpoint,
    target: SubscribeTarget,
    sink: Arc<dyn PokeSink>,
    on_refusal: OnRefusal,
    control: Arc<Control>,
    status: ConnectionStatus,
    wait: Receiver<()>,
}

impl Runner {
    fn stopped(&self) -> bool {
        self.control.stopped.load(Ordering::SeqCst)
    }

    fn run(mut self) {
        let mut failures = 0u32;
        let mut final_error = None;
        while !self.stopped() {
            self.status.connecting();
            let agent = self.endpoint.settings.sse_agent();
            {
                let mut slot = lock(&self.control.current);
                if self.stopped() {
                    break;
                }
                *slot = Some(agent.clone());
            }
            let outcome = self.connect_and_read(&agent);
            lock(&self.control.current).take();
            if self.stopped() {
                break;
            }
            let error = match outcome {
                Outcome::Unwanted => break,
                Outcome::Refused(error) if self.on_refusal == OnRefusal::Stop => {
                    final_error = Some(error.to_string());
                    break;
                }
                Outcome::Refused(error) => error,
                Outcome::Failed { error, connected } => {
                    if connected {
                        failures = 0;
                    }
                    error
                }
            };
            failures = failures.saturating_add(1);
            log::debug!("SSE {}: {error}; reconnecting", self.endpoint.url);
            self.status.disconnected(error.to_string());
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

    /// After a poke, a reconnect resumes after it (the server replays the
    /// rest for stream and category subscriptions).
    fn advance(&mut self, poke: &Poke) {
        match &mut self.target {
            SubscribeTarget::Stream { position, .. } => *position = poke.position + 1,
            SubscribeTarget::Category { position, .. } | SubscribeTarget::All { position } => {
                *position = poke.global_position + 1
            }
        }
    }

    fn connect_and_read(&mut self, agent: &Agent) -> Outcome {
        let request = agent
            .get(&self.endpoint.url)
            .header("Authorization", &self.endpoint.authorization)
            .header("Accept", "text/event-stream")
            .query_pairs(self.query());
        let response = match request.call() {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Failed {
                    error: transport_error(e),
                    connected: false,
                }
            }
        };
        let status = response.status().as_u16();
        if status != 200 {
            let body = super::client::read_body(response).unwrap_or_default();
            let error = match answer_error(status, &body, CallContext::default()) {
                // /subscribe's parameter errors are plain text.
                Error::Store {
                    status: 400,
                    message,
                    ..
                } => Error::InvalidInput(message),
                other => other,
            };
            return if (400..500).contains(&status) && status != 408 && status != 429 {
                Outcome::Refused(error)
            } else {
                Outcome::Failed {
                    error,
                    connected: false,
                }
            };
        }
        self.status.connected();
        let mut reader = BufReader::new(response.into_body().into_reader());
        let mut parser = EventParser::default();
        let mut line = Vec::with_capacity(256);
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => {
                    return Outcome::Failed {
                        error: Error::Transport {
                            kind: crate::error::TransportErrorKind::ConnectionReset,
                            message: "the server ended the event stream".into(),
                        },
                        connected: true,
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    return Outcome::Failed {
                        error: io_transport_error(&e),
                        connected: true,
                    }
                }
            }
            while matches!(line.last(), Some(b'\n' | b'\r')) {
                line.pop();
            }
            let Some(event) = parser.line(&String::from_utf8_lossy(&line)) else {
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
