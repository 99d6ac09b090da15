//! [`CliError`]: what went wrong, what to do next, and the exit code.
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | done |
//! | 1 | failed (database error, the store refused, bad input, …) |
//! | 2 | usage: unknown flag, missing or conflicting options |
//! | 3 | not found: the database file, a dead letter, a message, a consumer |
//! | 4 | not confirmed: refused at the prompt, or no terminal and no `--yes` |
//! | 5 | the store is unreachable |
//! | 6 | not finished in time: `drain` left a backlog, `replay --wait` timed out |

use std::fmt;

use eventodb_kit::{Error, TransportErrorKind};
use serde_json::json;

/// Exit code: failed.
pub const FAILURE: u8 = 1;
/// Exit code: usage error (clap uses 2 as well).
pub const USAGE: u8 = 2;
/// Exit code: something named on the command line does not exist.
pub const NOT_FOUND: u8 = 3;
/// Exit code: a destructive action was not confirmed.
pub const NOT_CONFIRMED: u8 = 4;
/// Exit code: the store could not be reached.
pub const UNREACHABLE: u8 = 5;
/// Exit code: the work did not finish before the timeout.
pub const INCOMPLETE: u8 = 6;

/// A failed command: its exit code, what happened and what to do next.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
    pub hint: Option<String>,
}

impl CliError {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
            hint: None,
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(USAGE, message)
    }

    pub fn failure(message: impl Into<String>) -> Self {
        Self::new(FAILURE, message)
    }

    /// Replaces the hint (what to do next).
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    fn kind(&self) -> &'static str {
        match self.code {
            USAGE => "usage",
            NOT_FOUND => "not_found",
            NOT_CONFIRMED => "not_confirmed",
            UNREACHABLE => "unreachable",
            INCOMPLETE => "incomplete",
            _ => "failed",
        }
    }

    /// Prints the error to stderr, as JSON with `--json`.
    pub fn print(&self, json: bool) {
        if json {
            let v = json!({ "error": {
                "kind": self.kind(),
                "exit_code": self.code,
                "message": self.message,
                "hint": self.hint,
            }});
            eprintln!("{v}");
        } else {
            eprintln!("eventodb-kit: error: {}", self.message);
            if let Some(hint) = &self.hint {
                eprintln!("  what to do: {hint}");
            }
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match &e {
            Error::NotFound(_) => CliError::new(NOT_FOUND, message)
                .hint("check the name or id; the `list` commands show what exists"),
            Error::Transport { kind, .. } if *kind != TransportErrorKind::InvalidUrl => {
                CliError::new(UNREACHABLE, format!("the store is unreachable: {message}")).hint(
                    "check that the store is running and that --url (or EVENTODB_URL) points at it, \
                     then run the command again",
                )
            }
            Error::Unavailable { retry_after, .. } => CliError::new(UNREACHABLE, message).hint(
                match retry_after {
                    Some(d) => format!(
                        "the store (or a proxy before it) asks to wait {}s; run the command again then",
                        d.as_secs_f64().ceil() as u64
                    ),
                    None => "the store (or a proxy before it) is busy; run the command again later"
                        .to_string(),
                },
            ),
            Error::Transport { .. } => CliError::usage(message)
                .hint("pass --url http(s)://host:port, embedded:///abs/path.db or embedded:rel/path.db"),
            Error::Auth { .. } => CliError::failure(format!("the store refused the token: {message}"))
                .hint("pass a token of the namespace with --token (or EVENTODB_TOKEN)"),
            Error::Db(_) | Error::Pool(_) => CliError::failure(message).hint(
                "the database may be busy (the app holds a long write) or damaged; run the command \
                 again, and check the file with `sqlite3 FILE 'PRAGMA integrity_check'` if it persists",
            ),
            Error::Timeout(_) => CliError::new(INCOMPLETE, message),
            _ => CliError::failure(message),
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return CliError::failure("the output was closed before everything was written");
        }
        CliError::failure(format!("I/O error: {e}"))
    }
}

/// The result of a command.
pub type CliResult<T = ()> = Result<T, CliError>;
