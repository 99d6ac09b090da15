//! `eventodb-kit`: the kit's command-line tool (feature `cli`).
//!
//! ```text
//! eventodb-kit serve [--host H] [--port P] [--token T] [--data-dir DIR] [--test-mode] [--public-metrics]
//!                    [--tls-cert FILE --tls-key FILE [--client-ca FILE]]
//!                    [--max-connections N] [--max-body SIZE] [--head-timeout D] [--idle-timeout D] [--write-timeout D]
//! eventodb-kit status --db FILE [--stalled-after 5m]
//! eventodb-kit outbox list|show --db FILE …
//! eventodb-kit dlq list|show|requeue|purge --db FILE …
//! eventodb-kit positions list|reset --db FILE …
//! eventodb-kit replay --db FILE --category C --consumer ID --from GP [--to GP]
//! eventodb-kit drain --db FILE [--url URL --token T] [--timeout 5m]
//! eventodb-kit export --url SRC [--category C] [--output FILE]
//! eventodb-kit import --url DST [--force] [--input FILE]
//! ```
//!
//! Exit codes are listed in [`exit`].

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[macro_use]
mod output;
mod confirm;
mod dlq;
mod drain;
mod exit;
mod outbox;
mod positions;
mod progress;
mod replay;
mod serve;
mod status;
mod target;
mod transfer;

/// eventodb-kit: outbox, consumers and an embedded EventoDB-compatible store.
///
/// The operator commands work on the kit's local database (--db FILE, or
/// EVENTODB_KIT_DB) and its store (--url / EVENTODB_URL, --token /
/// EVENTODB_TOKEN; by default the embedded store inside the database file).
/// They print text, or one JSON document with --json.
///
/// Exit codes: 0 done, 1 failed, 2 usage, 3 not found, 4 not confirmed
/// (refused, or no terminal and no --yes), 5 store unreachable, 6 not
/// finished in time.
#[derive(Debug, Parser)]
#[command(name = "eventodb-kit", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the embedded store over HTTP, speaking EventoDB's protocol.
    ///
    /// It answers EventoDB's endpoints (/rpc, /subscribe, /import, /health,
    /// /version) and, as an addition, GET /metrics: the server's figures
    /// (requests, latencies, connections, namespaces) in the Prometheus
    /// text format, for the default namespace's token — or for anyone with
    /// --public-metrics.
    ///
    /// Pipelined requests are answered in order, and stream.write calls
    /// waiting on one connection are committed in one transaction. A client
    /// must send a request head within --head-timeout; when every connection
    /// slot is taken, the connection that has waited longest for a request
    /// makes way for the new one.
    ///
    /// It prints its address and, when it generated one, the default
    /// namespace's token, once. The flags also come from the environment,
    /// and Go-style flags (-port 8080) work, as with EventoDB. SIGINT or
    /// SIGTERM stops it cleanly.
    Serve(serve::ServeArgs),
    /// Show the outbox backlog, dead letters, consumers with their lag, and
    /// who holds the sender lease.
    ///
    /// It reads the kit's database and the store with the library's
    /// Kit::metrics(), so it shows what the app's own metrics show:
    ///
    /// - LAG: the messages of the consumer's category after its position
    ///   (of its share in a consumer group, with its correlation filter),
    ///   counted up to 10000 ("10000+" beyond). Messages the consumer's type
    ///   filters pass over count too: it still has to move past them.
    ///
    /// - HEAD: the global position of the newest of them.
    ///
    /// - WAITING (the lag in time): the age of the oldest message the
    ///   consumer has not handled yet; "-" when caught up.
    ///
    /// - DLQ: its messages in the dead-letter queue.
    ///
    /// - STALLED: it lags and its position has not moved for
    ///   --stalled-after.
    ///
    /// With --json it prints the library's Metrics snapshot as JSON (the
    /// consumers' "lag" has "messages", "at_least", "seconds",
    /// "oldest_unprocessed_at" and "head_position"; durations are seconds,
    /// times RFC 3339), plus "database", "store" and
    /// "stalled_after_seconds"; "store_error" also says why the store could
    /// not be checked when no lag was read.
    ///
    /// When the store cannot be reached, everything local is still shown
    /// (the lags are unknown: null in JSON) and the exit code is 5.
    Status(status::StatusArgs),
    /// Look at outbox messages.
    #[command(subcommand)]
    Outbox(outbox::OutboxCommand),
    /// Look at, requeue or purge dead letters.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// List or reset consumer positions.
    #[command(subcommand)]
    Positions(positions::PositionsCommand),
    /// Re-deliver a range of a category to one consumer: its position moves
    /// back and its processed records of the range are forgotten, so its
    /// next run handles the range again and skips what it already handled
    /// after it.
    Replay(replay::ReplayArgs),
    /// Send the outbox backlog now, until it is empty or the timeout passes.
    Drain(drain::DrainArgs),
    /// Write a store's messages as NDJSON (EventoDB's export format).
    Export(transfer::ExportArgs),
    /// Load NDJSON (EventoDB's export format) into a store, keeping ids,
    /// positions and times.
    Import(transfer::ImportArgs),
}

fn main() -> ExitCode {
    let args = go_style_args(std::env::args());
    let json = args.iter().skip(1).any(|a| a == "--json");
    let cli = Cli::parse_from(args);
    let result = match cli.command {
        Command::Serve(args) => {
            serve::run(args).map_err(|e| exit::CliError::failure(e.to_string()))
        }
        Command::Status(args) => status::run(args),
        Command::Outbox(command) => outbox::run(command),
        Command::Dlq(command) => dlq::run(command),
        Command::Positions(command) => positions::run(command),
        Command::Replay(args) => replay::run(args),
        Command::Drain(args) => drain::run(args),
        Command::Export(args) => transfer::export(args),
        Command::Import(args) => transfer::import(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            e.print(json);
            ExitCode::from(e.code)
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
        match out
            .iter()
            .skip(2)
            .position(|a| COMMANDS.contains(&a.as_str()))
        {
            // `--db app.db outbox list` is read as `outbox list --db app.db`.
            Some(i) => {
                let start = i + 2;
                let words = out[start..]
                    .iter()
                    .take_while(|a| !a.starts_with('-'))
                    .count();
                let flags: Vec<String> = out.drain(1..start).collect();
                let at = 1 + words;
                out.splice(at..at, flags);
            }
            None => out.insert(1, "serve".to_string()),
        }
    }
    out
}

/// The sub-commands' names.
const COMMANDS: &[&str] = &[
    "serve",
    "status",
    "outbox",
    "dlq",
    "positions",
    "replay",
    "drain",
    "export",
    "import",
];

/// `timeout` from now; a timeout too long to add (a `--timeout` meaning
/// "forever") gives a deadline a century away instead of a panic.
fn far_deadline(timeout: std::time::Duration) -> std::time::Instant {
    let now = std::time::Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + std::time::Duration::from_secs(100 * 365 * 24 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

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
        assert_eq!(
            args(&["kit", "--db", "app.db", "--json", "status"]),
            ["kit", "status", "--db", "app.db", "--json"]
        );
        assert_eq!(
            args(&["kit", "--db", "app.db", "dlq", "requeue", "12", "--yes"]),
            ["kit", "dlq", "requeue", "12", "--db", "app.db", "--yes"]
        );
        let cli = Cli::try_parse_from(args(&["kit", "serve", "--port=0", "--test-mode"])).unwrap();
        let Command::Serve(serve) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(serve.port, 0);
        assert!(serve.test_mode);
    }
}
