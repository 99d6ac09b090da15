//! Progress of long commands on stderr: an indicatif bar when stderr is a
//! terminal, plain log lines (at most one a second, and the last) otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often plain progress lines are written.
const LINE_INTERVAL: Duration = Duration::from_secs(1);

pub struct Progress {
    label: &'static str,
    bar: Option<ProgressBar>,
    total: Option<u64>,
    last_line: Option<Instant>,
    /// What the last plain line said (not repeated at the end).
    last_done: Option<u64>,
    unit: &'static str,
}

impl Progress {
    /// Progress of `label` towards `total` `unit`s (unknown: a counter).
    pub fn new(label: &'static str, total: Option<u64>, unit: &'static str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(total) => ProgressBar::new(total).with_style(
                    ProgressStyle::with_template(
                        "{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                ),
                None => ProgressBar::new_spinner().with_style(
                    ProgressStyle::with_template("{prefix} {spinner} {pos} {msg} ({elapsed})")
                        .expect("valid template"),
                ),
            };
            bar.set_prefix(label);
            bar.set_message(unit);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            label,
            bar,
            total,
            last_line: None,
            last_done: None,
            unit,
        }
    }

    /// Reports `done` units and an optional note.
    pub fn set(&mut self, done: u64, note: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(done);
                let msg = if note.is_empty() {
                    self.unit.to_string()
                } else {
                    format!("{} {note}", self.unit)
                };
                bar.set_message(msg);
            }
            None => {
                if self.last_line.is_some_and(|t| t.elapsed() < LINE_INTERVAL) {
                    return;
                }
                self.last_line = Some(Instant::now());
                self.last_done = Some(done);
                self.line(done, note);
            }
        }
    }

    /// Changes the total (the backlog grew, say).
    pub fn set_total(&mut self, total: u64) {
        self.total = Some(total);
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
    }

    fn line(&self, done: u64, note: &str) {
        let of = self.total.map(|t| format!("/{t}")).unwrap_or_default();
        let note = if note.is_empty() {
            String::new()
        } else {
            format!(" {note}")
        };
        eprintln!("{}: {done}{of} {}{note}", self.label, self.unit);
    }

    /// Ends the bar (or writes the last line).
    pub fn finish(self, done: u64, note: &str) {
        match &self.bar {
            Some(bar) => bar.finish_and_clear(),
            None if self.last_done != Some(done) => self.line(done, note),
            None => {}
        }
    }
}
