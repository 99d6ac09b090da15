//! `eventodb-kit`: the kit's command-line tool (feature `cli`).
//!
//! ```text
//! eventodb-kit serve [--host H] [--port P] [--token T] [--data-dir DIR] [--test-mode]
//! ```

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod serve;

/// eventodb-kit: outbox, consumers and an embedded EventoDB-compatible store.
#[derive(Debug, Parser)]
#[command(name = "eventodb-kit", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the embedded store over HTTP, speaking EventoDB's protocol.
    Serve(serve::ServeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(go_style_args(std::env::args()));
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eventodb-kit: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Accepts EventoDB's Go-style flags too: `-port 8080` is read as
/// `--port 8080`, and flags without a sub-command mean `serve` (as
/// `eventodb -port 8080` does).
fn go_style_args(args: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = args
        .enumerate()
        .map(|(i, a)| {
            let single_dash_word = a.starts_with('-')
                && !a.starts_with("--")
                && a.len() > 2
                && a.as_bytes()[1].is_ascii_alphabetic();
            if i > 0 && single_dash_word {
                format!("-{a}")
            } else {
                a
            }
        })
        .collect();
    let first_is_flag = out
        .get(1)
        .is_some_and(|a| a.starts_with("--") && !matches!(a.as_str(), "--help" | "--version"));
    if first_is_flag {
        out.insert(1, "serve".to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        go_style_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn go_flags_are_accepted() {
        assert_eq!(
            args(&["kit", "-port", "6789", "-test-mode"]),
            ["kit", "serve", "--port", "6789", "--test-mode"]
        );
        assert_eq!(args(&["kit", "serve", "-h"]), ["kit", "serve", "-h"]);
        assert_eq!(args(&["kit", "--help"]), ["kit", "--help"]);
        let cli = Cli::try_parse_from(args(&["kit", "serve", "--port=0", "--test-mode"])).unwrap();
        let Command::Serve(serve) = cli.command;
        assert_eq!(serve.port, 0);
        assert!(serve.test_mode);
    }
}
