//! The cleanup thread: applies the outbox's and the consumers' retention
//! settings periodically ([`Kit::spawn_cleanup`]), or once
//! ([`Kit::run_cleanup`]).
//!
//! A running sender and running consumers already prune their own rows; a
//! cleanup thread is for processes that run neither (a consumer-only
//! service still accumulating sent outbox rows, a tool) or that want one
//! place and one schedule for retention.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::consumer::delete_processed_before_until;
use crate::env::Vars;
use crate::error::{Error, Result};
use crate::hooks::Component;
use crate::kit::Kit;
use crate::metrics::units;
use crate::outbox::prune_sent;
use crate::periodic::{Periodic, StopFlag};
use crate::time::{now_ms, Deadline};

/// What the cleanup deletes, and how often it runs.
///
/// ```
/// use std::time::Duration;
/// use eventodb_kit::CleanupConfig;
///
/// let config = CleanupConfig::from_lookup(|name| match name {
///     "CLEANUP_INTERVAL" => Some("10m".into()),
///     "OUTBOX_RETENTION" => Some("off".into()),
///     _ => None,
/// })?
/// .processed_retention(Some(Duration::from_secs(24 * 3600)));
/// assert_eq!(config.interval_value(), Duration::from_secs(600));
/// assert_eq!(config.outbox_retention_value(), None);
/// # Ok::<(), eventodb_kit::Error>(())
/// ```
///
/// # Environment
///
/// | variable | setting | default |
/// | --- | --- | --- |
/// | `CLEANUP_INTERVAL` | [`interval`](CleanupConfig::interval) | `1h` |
/// | `OUTBOX_RETENTION` | [`outbox_retention`](CleanupConfig::outbox_retention) (`off` keeps sent rows) | `7days` |
/// | `CONSUMER_PROCESSED_RETENTION` | [`processed_retention`](CleanupConfig::processed_retention) (`off` keeps them) | `7days` |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanupConfig {
    interval: Duration,
    outbox_retention: Option<Duration>,
    processed_retention: Option<Duration>,
}

impl Default for CleanupConfig {
    fn default() -> Self {
        CleanupConfig {
            interval: Duration::from_secs(3600),
            outbox_retention: Some(Duration::from_secs(7 * 24 * 3600)),
            processed_retention: Some(Duration::from_secs(7 * 24 * 3600)),
        }
    }
}

impl CleanupConfig {
    /// The defaults (see the table above).
    pub fn new() -> Self {
        Self::default()
    }

    /// How often the thread runs (it also runs once when it starts).
    /// Defaults to 1 hour.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Deletes outbox rows sent at least this long ago (`None` keeps them).
    /// Defaults to 7 days.
    pub fn outbox_retention(mut self, age: Option<Duration>) -> Self {
        self.outbox_retention = age;
        self
    }

    /// Deletes consumers' processed-event records older than this (`None`
    /// keeps them). Defaults to 7 days.
    pub fn processed_retention(mut self, age: Option<Duration>) -> Self {
        self.processed_retention = age;
        self
    }

    /// The configured interval.
    pub fn interval_value(&self) -> Duration {
        self.interval
    }

    /// The configured outbox retention.
    pub fn outbox_retention_value(&self) -> Option<Duration> {
        self.outbox_retention
    }

    /// The configured processed-record retention.
    pub fn processed_retention_value(&self) -> Option<Duration> {
        self.processed_retention
    }

    /// The defaults overridden by `CLEANUP_INTERVAL`, `OUTBOX_RETENTION` and
    /// `CONSUMER_PROCESSED_RETENTION`.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(crate::env::process_env)
    }

    /// Like [`CleanupConfig::from_env`], reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let vars = Vars::new(&lookup);
        let mut c = CleanupConfig::default();
        if let Some(interval) = vars.duration("CLEANUP_INTERVAL")? {
            c = c.interval(interval);
        }
        if let Some(age) = vars.optional_duration("OUTBOX_RETENTION")? {
            c.outbox_retention = age;
        }
        if let Some(age) = vars.optional_duration("CONSUMER_PROCESSED_RETENTION")? {
            c.processed_retention = age;
        }
        Ok(c)
    }
}

/// What one cleanup pass did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CleanupReport {
    /// When the pass ended.
    #[serde(serialize_with = "units::time")]
    pub finished_at: SystemTime,
    /// Sent outbox rows deleted.
    pub outbox_rows_deleted: u64,
    /// Processed-event records deleted.
    pub processed_records_deleted: u64,
    /// What failed (the pass goes on with the other half).
    pub errors: Vec<String>,
}

fn cutoff(age: Duration) -> i64 {
    now_ms().saturating_sub(age.as_millis().min(i64::MAX as u128) as i64)
}

fn clean(kit: &Kit, config: &CleanupConfig, stop: &dyn Fn() -> bool) -> CleanupReport {
    let mut errors = Vec::new();
    let namespace = kit.namespace();
    let outbox_rows_deleted = match config.outbox_retention {
        Some(age) => prune_sent(kit.db(), namespace, cutoff(age), stop).unwrap_or_else(|e| {
            errors.push(format!("pruning sent outbox rows: {e}"));
            0
        }),
        None => 0,
    };
    let processed_records_deleted = match config.processed_retention {
        Some(age) => delete_processed_before_until(kit.db(), namespace, None, cutoff(age), stop)
            .map(|n| n as u64)
            .unwrap_or_else(|e| {
                errors.push(format!("pruning processed records: {e}"));
                0
            }),
        None => 0,
    };
    for e in &errors {
        log::warn!(target: "eventodb_kit::cleanup", "{e}");
    }
    if outbox_rows_deleted + processed_records_deleted > 0 {
        log::debug!(
            target: "eventodb_kit::cleanup",
            "deleted {outbox_rows_deleted} sent outbox rows and {processed_records_deleted} processed records"
        );
    }
    CleanupReport {
        finished_at: SystemTime::now(),
        outbox_rows_deleted,
        processed_records_deleted,
        errors,
    }
}

#[derive(Debug, Default)]
struct Progress {
    runs: u64,
    last: Option<CleanupReport>,
}

#[derive(Debug, Default)]
struct State {
    progress: Mutex<Progress>,
    changed: Condvar,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The cleanup thread (`evento-cleanup`), started by [`Kit::spawn_cleanup`].
///
/// [`CleanupHandle::shutdown`] stops it (a pass in progress stops after its
/// current batch) and joins it; dropping the handle stops it without waiting.
#[derive(Debug)]
pub struct CleanupHandle {
    thread: Periodic,
    state: Arc<State>,
}

impl CleanupHandle {
    /// Passes completed so far.
    pub fn runs(&self) -> u64 {
        self.state.lock().runs
    }

    /// What the last pass did.
    pub fn last_report(&self) -> Option<CleanupReport> {
        self.state.lock().last.clone()
    }

    /// Waits until at least `runs` passes have completed, at most `timeout`;
    /// returns the last pass's report.
    ///
    /// Errors: [`Error::Timeout`]; [`Error::Shutdown`] when the thread ended.
    pub fn wait_for_runs(&self, runs: u64, timeout: Duration) -> Result<CleanupReport> {
        let deadline = Deadline::after(timeout);
        let mut progress = self.state.lock();
        loop {
            if progress.runs >= runs {
                if let Some(last) = &progress.last {
                    return Ok(last.clone());
                }
            }
            if self.thread.is_finished() {
                return Err(Error::Shutdown);
            }
            let left = deadline.remaining();
            if left.is_zero() {
                return Err(Error::Timeout(format!(
                    "{} cleanup passes, not {runs}, within {timeout:?}",
                    progress.runs
                )));
            }
            // Woken by every pass; a short slice notices a thread that died.
            progress = self
                .state
                .changed
                .wait_timeout(progress, left.min(Duration::from_millis(100)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Stops the thread and waits for it.
    pub fn shutdown(self) {
        self.thread.shutdown();
    }
}

impl Kit {
    /// Starts a thread that applies `config`'s retention now and then every
    /// interval: deletes sent outbox rows and consumers' processed-event
    /// records older than their retention, a few hundred rows per short
    /// transaction. See [`CleanupHandle`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use eventodb_kit::{CleanupConfig, Kit};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let kit = Kit::builder().database(dir.path().join("app.db")).build()?;
    /// let cleanup = kit.spawn_cleanup(CleanupConfig::new().interval(Duration::from_secs(600)))?;
    /// let first = cleanup.wait_for_runs(1, Duration::from_secs(10))?;
    /// assert_eq!(first.outbox_rows_deleted, 0);
    /// cleanup.shutdown();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn spawn_cleanup(&self, config: CleanupConfig) -> Result<CleanupHandle> {
        let state = Arc::new(State::default());
        let (kit, work_state) = (self.clone(), Arc::clone(&state));
        let hooks = self.runtime().hooks.clone();
        let finish_hooks = hooks.clone();
        let thread = Periodic::spawn(
            "evento-cleanup",
            config.interval,
            move || hooks.emit(|h| h.on_started(&Component::Cleanup)),
            move |stop: &StopFlag| {
                let report = clean(&kit, &config, &|| stop.is_set());
                let mut progress = work_state.lock();
                progress.runs += 1;
                progress.last = Some(report);
                drop(progress);
                work_state.changed.notify_all();
            },
            move || finish_hooks.emit(|h| h.on_stopped(&Component::Cleanup)),
        )?;
        Ok(CleanupHandle { thread, state })
    }

    /// One cleanup pass in the calling thread (what the cleanup thread does
    /// at each interval).
    pub fn run_cleanup(&self, config: &CleanupConfig) -> CleanupReport {
        clean(self, config, &|| false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment() {
        let c = CleanupConfig::from_lookup(|name| match name {
            "CLEANUP_INTERVAL" => Some("5m".into()),
            "CONSUMER_PROCESSED_RETENTION" => Some("2days".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.interval_value(), Duration::from_secs(300));
        assert_eq!(
            c.processed_retention_value(),
            Some(Duration::from_secs(2 * 24 * 3600))
        );
        assert_eq!(
            c.outbox_retention_value(),
            CleanupConfig::default().outbox_retention_value()
        );
        let err = CleanupConfig::from_lookup(|name| {
            (name == "CLEANUP_INTERVAL").then(|| "often".to_string())
        })
        .unwrap_err();
        assert!(err.to_string().contains("CLEANUP_INTERVAL"), "{err}");
    }
}
