//! [`Kit::spawn_metrics_reporter`]: a thread that takes a metrics snapshot
//! every interval and hands it to the kit's hooks ([`KitHook::on_metrics`](crate::hooks::KitHook::on_metrics)).

use std::time::Duration;

use crate::error::Result;
use crate::hooks::Component;
use crate::kit::Kit;
use crate::periodic::Periodic;

/// The metrics reporter thread (`evento-metrics`), started by
/// [`Kit::spawn_metrics_reporter`].
///
/// [`ReporterHandle::shutdown`] stops and joins it; dropping the handle
/// stops it without waiting.
#[derive(Debug)]
pub struct ReporterHandle {
    thread: Periodic,
}

impl ReporterHandle {
    /// Stops the thread and waits for it.
    pub fn shutdown(self) {
        self.thread.shutdown();
    }
}

impl Kit {
    /// Starts a thread that takes [`Kit::metrics`] every `interval` (the
    /// first one at once) and calls every hook's
    /// [`on_metrics`](crate::hooks::KitHook::on_metrics) with it — to push
    /// figures to a system that does not scrape. A snapshot that fails is
    /// logged and skipped.
    pub fn spawn_metrics_reporter(&self, interval: Duration) -> Result<ReporterHandle> {
        let kit = self.clone();
        let hooks = self.runtime().hooks.clone();
        let (start_hooks, finish_hooks) = (hooks.clone(), hooks.clone());
        let thread = Periodic::spawn(
            "evento-metrics",
            interval,
            move || start_hooks.emit(|h| h.on_started(&Component::MetricsReporter)),
            move |_| match kit.metrics() {
                Ok(m) => hooks.emit(|h| h.on_metrics(&m)),
                Err(e) => {
                    log::warn!(target: "eventodb_kit::metrics", "taking a metrics snapshot failed: {e}")
                }
            },
            move || finish_hooks.emit(|h| h.on_stopped(&Component::MetricsReporter)),
        )?;
        Ok(ReporterHandle { thread })
    }
}
