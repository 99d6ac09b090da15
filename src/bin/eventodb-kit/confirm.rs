//! Asking before destructive actions: on a terminal, a y/N question; with
//! `--yes`, no question; without a terminal and without `--yes`, refusal
//! (exit code 4), so a script never deletes anything by accident.

use std::io::{BufRead, IsTerminal, Write};

use clap::Args;

use crate::exit::{CliError, CliResult, NOT_CONFIRMED};

/// `--yes`, for commands that change or delete things.
#[derive(Debug, Clone, Copy, Args)]
pub struct ConfirmArgs {
    /// Go ahead without asking (needed when not run from a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

impl ConfirmArgs {
    /// Asks `question` (the plan has been shown); `Ok` to go ahead.
    pub fn confirm(&self, question: &str) -> CliResult {
        if self.yes {
            return Ok(());
        }
        let stdin = std::io::stdin();
        if !stdin.is_terminal() || !std::io::stderr().is_terminal() {
            return Err(CliError::new(
                NOT_CONFIRMED,
                format!("not confirmed: {question} — nothing was changed"),
            )
            .hint("this is not an interactive terminal, so nobody can answer the question; pass --yes to go ahead"));
        }
        eprint!("{question} [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        stdin.lock().read_line(&mut answer)?;
        match answer.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" => Ok(()),
            _ => Err(CliError::new(NOT_CONFIRMED, "aborted: nothing was changed")
                .hint("answer y to go ahead, or pass --yes")),
        }
    }
}
