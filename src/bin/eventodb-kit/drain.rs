//! `eventodb-kit drain`: send the outbox backlog now — a sender runs until
//! the backlog is empty or the timeout passes.

use std::time::{Duration, Instant, SystemTime};

use clap::Args;
use eventodb_kit::outbox::SenderConfig;
use eventodb_kit::Error;
use serde_json::json;

use crate::exit::{CliError, CliResult, INCOMPLETE};
use crate::output::{self, plural, OutputArgs};
use crate::progress::Progress;
use crate::target::TargetArgs;

/// How often progress is updated while waiting for the sender.
const STEP: Duration = Duration::from_millis(250);

#[derive(Debug, Args)]
pub struct DrainArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    out: OutputArgs,
    /// Give up after this long (e.g. 30s, 5m); what is left stays in the
    /// outbox.
    #[arg(long, default_value = "5m", value_parser = output::parse_duration)]
    timeout: Duration,
}

pub fn run(args: DrainArgs) -> CliResult {
    let (kit, store) = args.target.open_kit_checked()?;
    let outbox = kit.outbox();
    let before = outbox.status()?;
    if before.unsent == 0 {
        let value = json!({
            "namespace": kit.namespace(),
            "store": store.label(),
            "drained": true,
            "sent": 0,
            "dead_lettered": 0,
            "remaining": 0,
        });
        args.out.emit(&value, || {
            outln!(
                "Nothing to send: the outbox of namespace {:?} is empty.",
                kit.namespace()
            );
        });
        return Ok(());
    }
    store.check_reachable()?;
    if let Some(lease) = outbox.sender_lease()? {
        if lease.is_held_at(SystemTime::now()) {
            eprintln!(
                "drain: another sender ({}) holds the lease until {}; this drain stands by and takes over \
                 when it stops — or that sender drains the outbox itself.",
                lease.holder,
                output::when(lease.expires_at)
            );
        }
    }
    // The app's OUTBOX_* settings, but no pruning: drain only sends.
    let config = SenderConfig::from_env()
        .map_err(|e| CliError::from(e).hint("fix the OUTBOX_* environment variable named above"))?
        .retention(None);
    eprintln!(
        "drain: sending {} to {} (namespace {:?})",
        plural(before.unsent, "message", "messages"),
        store.label(),
        kit.namespace()
    );
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
    // Ctrl-C ends the drain cleanly: sends in flight finish and are recorded.
    let _ = ctrlc::set_handler(move || {
        let _ = stop_tx.try_send(());
    });
    let sender = kit.spawn_sender(config)?;
    let mut progress = Progress::new("drain", Some(before.unsent), "messages");
    let deadline = crate::far_deadline(args.timeout);
    let mut total = before.unsent;
    let mut interrupted = false;
    let drained = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match sender.wait_until_drained(left.min(STEP)) {
            Ok(()) => break true,
            Err(Error::Timeout(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let stats = sender.stats()?;
        // Messages written meanwhile may grow the backlog past the start.
        if stats.backlog > total {
            total = stats.backlog;
            progress.set_total(total);
        }
        let note = match sender.health().last_error {
            Some(e) if stats.backlog > 0 => format!("(last error: {})", output::short(&e, 60)),
            _ => String::new(),
        };
        progress.set(total - stats.backlog, &note);
        if stop_rx.try_recv().is_ok() {
            interrupted = true;
            break false;
        }
        if left.is_zero() {
            break false;
        }
    };
    let stats = sender.stats()?;
    let last_error = sender.health().last_error;
    sender.shutdown();
    let remaining = outbox.status()?.unsent;
    progress.finish(total.saturating_sub(remaining), "");
    let value = json!({
        "namespace": kit.namespace(),
        "store": store.label(),
        "drained": drained && remaining == 0,
        "sent": stats.sent,
        "dead_lettered": stats.dead_lettered,
        "remaining": remaining,
        "last_error": last_error,
    });
    if drained || remaining == 0 {
        args.out.emit(&value, || {
            outln!(
                "Drained: {} sent, {} dead-lettered, 0 left.",
                stats.sent,
                stats.dead_lettered
            );
            if stats.dead_lettered > 0 {
                outln!(
                    "The store refused some: `eventodb-kit dlq list --source outbox` shows why."
                );
            }
        });
        return Ok(());
    }
    // Not drained: say why, after the report.
    args.out.emit(&value, || {
        outln!(
            "Not drained: {} sent, {} dead-lettered, {} left in the outbox.",
            stats.sent,
            stats.dead_lettered,
            remaining
        );
    });
    if interrupted {
        return Err(
            CliError::new(INCOMPLETE, "interrupted; the rest stays in the outbox")
                .hint("run `eventodb-kit drain` again to go on"),
        );
    }
    store.check_reachable()?;
    let why = match &last_error {
        Some(e) => format!("; the last error was: {e}"),
        None => String::new(),
    };
    Err(CliError::new(
        INCOMPLETE,
        format!(
            "{} still in the outbox after {}{why}",
            plural(remaining, "message", "messages"),
            output::age(args.timeout)
        ),
    )
    .hint("run drain again with a longer --timeout; `eventodb-kit outbox list --unsent` shows what waits and why"))
}
