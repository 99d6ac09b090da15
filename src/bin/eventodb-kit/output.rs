//! Output: human-readable by default, one JSON document with `--json`;
//! tables, times and ages for people.

use std::io::Write;
use std::time::{Duration, SystemTime};

use clap::Args;
use serde::Serialize;
use serde_json::Value;

/// `println!` for the operator commands: when stdout is closed early (`… |
/// head`), the tool ends quietly instead of panicking.
macro_rules! outln {
    () => { $crate::output::write_line(format_args!("")) };
    ($($arg:tt)*) => { $crate::output::write_line(format_args!($($arg)*)) };
}

/// Writes one line to stdout; exits quietly if stdout was closed.
pub fn write_line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{args}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// `--json`, shared by every operator command.
#[derive(Debug, Clone, Copy, Args)]
pub struct OutputArgs {
    /// Print one JSON document on stdout instead of text (errors go to
    /// stderr as JSON too).
    #[arg(long)]
    pub json: bool,
}

impl OutputArgs {
    /// Prints `value` as JSON, or runs `human` to print text.
    pub fn emit(&self, value: &impl Serialize, human: impl FnOnce()) {
        if self.json {
            outln!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            );
        } else {
            human();
        }
    }
}

/// A text table: left-aligned columns separated by two spaces.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Self {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn print(&self) {
        self.print_indented("");
    }

    pub fn print_indented(&self, indent: &str) {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let last = cells.len().saturating_sub(1);
            let mut out = String::from(indent);
            for (i, cell) in cells.iter().enumerate() {
                out.push_str(cell);
                if i < last {
                    let pad = widths[i] - cell.chars().count() + 2;
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            outln!("{}", out.trim_end());
        };
        line(self.headers.clone());
        for row in &self.rows {
            line(row.iter().map(String::as_str).collect());
        }
    }
}

/// `s` cut to `max` characters (with `…`), on one line.
pub fn short(s: &str, max: usize) -> String {
    let one_line = s.replace(['\n', '\r'], " ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// RFC 3339, UTC (for JSON): the library's format, as in `status --json`.
pub fn rfc3339(t: SystemTime) -> String {
    eventodb_kit::time::format_rfc3339_nanos(t)
}

/// Optional time as JSON.
pub fn rfc3339_opt(t: Option<SystemTime>) -> Value {
    t.map_or(Value::Null, |t| Value::String(rfc3339(t)))
}

/// A duration for people: `3m 12s`, `250ms`, `2days 4h`.
pub fn age(d: Duration) -> String {
    let rounded = if d >= Duration::from_secs(1) {
        Duration::from_secs(d.as_secs())
    } else {
        Duration::from_millis(d.as_millis() as u64)
    };
    // The two largest units are enough to read.
    let text = humantime::format_duration(rounded).to_string();
    text.split(' ').take(2).collect::<Vec<_>>().join(" ")
}

/// How long ago `t` was, for people: `3m 12s ago` (or `in 5s`).
pub fn ago(t: SystemTime) -> String {
    match SystemTime::now().duration_since(t) {
        Ok(d) => format!("{} ago", age(d)),
        Err(e) => format!("in {}", age(e.duration())),
    }
}

/// A time for people: `2026-03-01 12:34:56 UTC (3m ago)`.
pub fn when(t: SystemTime) -> String {
    let text = humantime::format_rfc3339_seconds(t).to_string();
    format!(
        "{} UTC ({})",
        text.trim_end_matches('Z').replace('T', " "),
        ago(t)
    )
}

/// "1 message" / "2 messages".
pub fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

/// Parses a humantime duration (`90s`, `5m`, `1h 30m`, `7days`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{e}; write durations like 90s, 5m, 1h30m or 7days"))
}
