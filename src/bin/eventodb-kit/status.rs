//! `eventodb-kit status`: the outbox backlog, dead letters, consumers with
//! their lag, and who holds the sender lease and each consumer's — in one
//! screen.
//!
//! Everything comes from the library's [`Kit::metrics`] snapshot, read from
//! the kit's database and the store with nothing running, so the tool shows
//! what the app's own metrics show: the same lag, the same stalled flag.

use std::time::{Duration, SystemTime};

use clap::Args;
use eventodb_kit::metrics::ConsumerMetrics;
use eventodb_kit::{Kit, Metrics, PauseReason};
use serde::Serialize;

use crate::exit::{CliError, CliResult, UNREACHABLE};
use crate::output::{self, plural, OutputArgs, Table};
use crate::positions::{display_category, group_text};
use crate::target::TargetArgs;

/// Most messages counted per consumer for its lag: the most one read of a
/// category returns (EventoDB's largest batch size).
pub const LAG_COUNT_LIMIT: u32 = 10_000;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    out: OutputArgs,
    /// A consumer that lags and whose position has not moved for this long
    /// is stalled (e.g. 30s, 5m, 1h). Defaults to the kit's default, 60s.
    #[arg(
        long,
        env = "CONSUMER_STALLED_AFTER",
        value_name = "DURATION",
        value_parser = output::parse_duration
    )]
    stalled_after: Option<Duration>,
}

/// What `status --json` prints: the [`Metrics`] snapshot, with the
/// database, the store and the stalled threshold in front. `store_error`
/// also says why the store could not be checked when no lag was read.
#[derive(Serialize)]
struct StatusJson<'a> {
    database: String,
    store: String,
    stalled_after_seconds: f64,
    #[serde(flatten)]
    metrics: &'a Metrics,
}

pub fn run(args: StatusArgs) -> CliResult {
    let mut builder = Kit::builder().lag_count_limit(LAG_COUNT_LIMIT);
    if let Some(after) = args.stalled_after {
        builder = builder.stalled_after(after);
    }
    let (kit, store) = args.target.open_kit_checked_with(builder)?;
    let database = args.target.db_path()?;
    let mut metrics = kit.metrics()?;

    // The snapshot reads the store only for the lags, and records why it
    // could not; ask the store directly then (the error says whether it is
    // unreachable or refused the token), and when there was no lag to read.
    let store_problem = if metrics.store_error.is_some() || metrics.consumers.is_empty() {
        store.check_reachable().err()
    } else {
        None
    };
    let library_store_error = metrics.store_error.clone();
    if metrics.store_error.is_none() {
        metrics.store_error = store_problem.as_ref().map(|e| e.message.clone());
    }
    let value = StatusJson {
        database: database.display().to_string(),
        store: store.label(),
        stalled_after_seconds: kit.stalled_after().as_secs_f64(),
        metrics: &metrics,
    };

    args.out.emit(&value, || {
        outln!(
            "eventodb-kit status — namespace {:?}, database {}, store {}",
            metrics.namespace,
            database.display(),
            store.label()
        );
        print_outbox(&metrics);
        print_dead_letters(&metrics);
        print_consumers(&metrics);
        let unreachable = store_problem
            .as_ref()
            .is_some_and(|e| e.code == UNREACHABLE);
        print_notes(&metrics, unreachable, kit.stalled_after());
    });

    match (store_problem, library_store_error) {
        (Some(e), _) => Err(e),
        (None, Some(e)) => Err(CliError::failure(format!(
            "the consumers' lags could not be read: {e}"
        ))
        .hint("the rest of the status is shown; run the command again, and check the store if it persists")),
        (None, None) => Ok(()),
    }
}

fn print_outbox(m: &Metrics) {
    let outbox = &m.outbox;
    outln!("\nOutbox");
    match outbox.oldest_unsent_at {
        Some(t) => outln!(
            "  backlog        {}, the oldest written {}",
            plural(outbox.backlog, "message", "messages"),
            output::when(t)
        ),
        None => outln!("  backlog        0 messages"),
    }
    match &outbox.lease {
        Some(l) if l.held => outln!(
            "  sender lease   held by {} (fencing token {}) until {}",
            l.holder,
            l.fencing_token,
            output::when(l.expires_at)
        ),
        Some(l) => outln!(
            "  sender lease   free (last holder {}, fencing token {}): no sender is running",
            l.holder,
            l.fencing_token
        ),
        None => outln!("  sender lease   none: no sender has run on this database"),
    }
    if let Some(p) = outbox.sender_pause() {
        outln!(
            "  sender paused  ({}) since {}: {}",
            p.reason,
            output::when(p.since),
            p.error
        );
    }
}

fn print_dead_letters(m: &Metrics) {
    let dl = &m.dead_letters;
    outln!("\nDead letters");
    let requeued = if dl.requeued > 0 {
        format!(
            "; {} requeued, waiting for {} consumer",
            dl.requeued,
            if dl.requeued == 1 { "its" } else { "their" }
        )
    } else {
        String::new()
    };
    outln!(
        "  {} (outbox {}, consumer {}{requeued})",
        plural(dl.total(), "dead letter", "dead letters"),
        dl.outbox,
        dl.consumer
    );
}

fn print_consumers(m: &Metrics) {
    outln!("\nConsumers");
    if m.consumers.is_empty() {
        outln!("  none: no consumer has run on this database");
        return;
    }
    let mut table = Table::new(&[
        "CATEGORY",
        "CONSUMER",
        "GROUP",
        "POSITION",
        "HEAD",
        "LAG",
        "WAITING",
        "DLQ",
        "LAST PROGRESS",
        "STATE",
        "RUN BY",
    ]);
    for c in &m.consumers {
        let (head, lag, waiting) = match &c.lag {
            Some(l) if l.messages == 0 => (c.position.to_string(), "0".into(), "-".into()),
            Some(l) if l.at_least => (
                "?".into(),
                format!("{}+", l.messages),
                output::age(l.seconds),
            ),
            Some(l) => (
                l.head_position.map_or("?".into(), |h| h.to_string()),
                l.messages.to_string(),
                output::age(l.seconds),
            ),
            None => ("?".into(), "?".into(), "?".into()),
        };
        table.row(vec![
            category_text(c),
            c.consumer_id.clone(),
            group_text(c.consumer_group),
            c.position.to_string(),
            head,
            lag,
            waiting,
            c.dead_letters.to_string(),
            c.last_progress_at.map_or("-".into(), output::ago),
            state(c).to_string(),
            run_by(c),
        ]);
    }
    table.print_indented("  ");
}

/// The category, with the correlation filter saved with the position.
fn category_text(c: &ConsumerMetrics) -> String {
    match &c.correlation {
        Some(correlation) => format!(
            "{} (correlation {correlation})",
            display_category(&c.category)
        ),
        None => display_category(&c.category),
    }
}

/// Who holds the consumer's lease: the process of its one working
/// instance (`pid <pid>`), or `-` when none does.
fn run_by(c: &ConsumerMetrics) -> String {
    match &c.lease {
        Some(l) if l.held => l.holder_process(),
        _ => "-".into(),
    }
}

fn state(c: &ConsumerMetrics) -> &'static str {
    match &c.lag {
        _ if c.stalled => "STALLED",
        None => "unknown",
        Some(l) if l.messages > 0 => "behind",
        Some(_) => "caught up",
    }
}

fn print_notes(m: &Metrics, unreachable: bool, stalled_after: Duration) {
    let now = SystemTime::now();
    let mut notes = Vec::new();
    if let Some(e) = &m.store_error {
        if unreachable {
            notes.push(format!(
                "the store is unreachable, so lags are unknown: {e}"
            ));
        } else {
            notes.push(format!(
                "the store could not be read, so lags are unknown: {e}"
            ));
        }
    }
    for c in m.consumers.iter().filter(|c| c.stalled) {
        let idle = c
            .last_progress_at
            .map_or(stalled_after, |t| now.duration_since(t).unwrap_or_default());
        let waiting = match &c.lag {
            Some(l) if l.at_least => format!("{}+ messages wait", l.messages),
            Some(l) => plural(l.messages, "message waits", "messages wait"),
            None => "it lags".to_string(),
        };
        let mut note = format!(
            "consumer {:?} of {:?} is stalled: {waiting} and its position has not moved for {}. \
             Is the app running? A consumer halted on a message its handler cannot process \
             stays there until the app is fixed and restarted; the app's log says why.",
            c.consumer_id,
            display_category(&c.category),
            output::age(idle),
        );
        if c.dead_letters > 0 {
            note.push_str(&format!(
                " `eventodb-kit dlq list --consumer {}` shows its {}.",
                c.consumer_id,
                plural(c.dead_letters, "dead letter", "dead letters")
            ));
        }
        notes.push(note);
    }
    if let Some(p) = m.outbox.sender_pause() {
        notes.push(match p.reason {
            PauseReason::AuthRefused => {
                "the sender is paused because the store refuses its token (a \
                 revoked or rotated token, or a deleted namespace): nothing is dead-lettered; it \
                 goes on by itself once the store accepts the token again, or after the app is \
                 restarted with a working one"
                    .to_string()
            }
            PauseReason::TlsRefused => {
                "the sender is paused because a TLS certificate was refused \
                 (by the app or by the store): it goes on by itself once the handshake works again"
                    .to_string()
            }
            _ => "the sender is paused because the store is unreachable: messages wait in the \
                 outbox and go out once it answers again"
                .to_string(),
        });
    }
    let sending = m.outbox.lease.as_ref().is_some_and(|l| l.held);
    if m.outbox.backlog > 0 && !sending {
        notes.push(
            "messages wait and no sender is running: start the app, or `eventodb-kit drain` sends them now"
                .into(),
        );
    }
    if m.dead_letters.total() > 0 {
        notes.push(
            "`eventodb-kit dlq list` shows the dead letters; `dlq requeue` sends them again".into(),
        );
    }
    if !notes.is_empty() {
        outln!();
        for n in notes {
            outln!("note: {n}");
        }
    }
}
