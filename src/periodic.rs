//! A named thread that does some work now and then every interval until its
//! owner stops it — the shape of the cleanup thread and the metrics
//! reporter.
//!
//! Closing the stop channel is the stop signal: `select!` over it and the
//! interval, so the thread wakes at once. Dropping the owner signals without
//! waiting; `shutdown` signals and joins.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{bounded, select, Sender};

use crate::error::Result;

/// Asks a periodic thread's work whether to stop early.
#[derive(Debug, Clone)]
pub(crate) struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The owner of a periodic thread.
#[derive(Debug)]
pub(crate) struct Periodic {
    stop: Option<Sender<()>>,
    flag: StopFlag,
    thread: Option<JoinHandle<()>>,
}

impl Periodic {
    /// Starts thread `name`: `start`, then `work` at once and every
    /// `interval` until stopped, then `finish`.
    pub(crate) fn spawn(
        name: &str,
        interval: Duration,
        start: impl FnOnce() + Send + 'static,
        mut work: impl FnMut(&StopFlag) + Send + 'static,
        finish: impl FnOnce() + Send + 'static,
    ) -> Result<Periodic> {
        let (stop_tx, stop_rx) = bounded::<()>(0);
        let flag = StopFlag(Arc::new(AtomicBool::new(false)));
        let thread_flag = flag.clone();
        let interval = interval.max(Duration::from_millis(1));
        let thread = thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                start();
                loop {
                    let pass = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        work(&thread_flag)
                    }));
                    if pass.is_err() {
                        log::error!("a pass of a periodic thread panicked; it goes on");
                    }
                    select! {
                        recv(stop_rx) -> _ => break,
                        default(interval) => {}
                    }
                }
                finish();
            })?;
        Ok(Periodic {
            stop: Some(stop_tx),
            flag,
            thread: Some(thread),
        })
    }

    fn signal(&mut self) {
        self.flag.0.store(true, Ordering::Release);
        self.stop.take();
    }

    /// Stops the thread after its current pass and waits for it.
    pub(crate) fn shutdown(mut self) {
        self.signal();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("a periodic thread panicked");
            }
        }
    }

    /// Whether the thread has ended.
    pub(crate) fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl Drop for Periodic {
    fn drop(&mut self) {
        self.signal();
    }
}
