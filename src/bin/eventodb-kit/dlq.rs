//! `eventodb-kit dlq list|show|requeue|purge`: the dead letters of the
//! outbox and of consumers.

use clap::{Args, Subcommand};
use eventodb_kit::dlq::{DeadLetter, DeadLetterFilter, DeadLetterSource};
use serde_json::{json, Value};

use crate::confirm::ConfirmArgs;
use crate::exit::{CliError, CliResult, NOT_FOUND};
use crate::output::{self, plural, OutputArgs, Table};
use crate::target::TargetArgs;

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters, oldest first.
    List(ListArgs),
    /// Show one dead letter with its message and error.
    Show(ShowArgs),
    /// Send dead letters again: outbox ones go back to the outbox, consumer
    /// ones run their handler once more at the consumer's next run.
    Requeue(ActionArgs),
    /// Delete dead letters for good (an outbox message purged is never sent).
    Purge(ActionArgs),
}

/// Which dead letters (every given one must match).
#[derive(Debug, Args)]
pub struct Selection {
    /// Only from this source: outbox or consumer.
    #[arg(long, value_name = "SOURCE", value_parser = parse_source)]
    source: Option<DeadLetterSource>,
    /// Only of this stream.
    #[arg(long, value_name = "STREAM")]
    stream: Option<String>,
    /// Only consumer dead letters of this category.
    #[arg(long, value_name = "CATEGORY")]
    category: Option<String>,
    /// Only dead letters of this consumer id.
    #[arg(long, value_name = "ID")]
    consumer: Option<String>,
}

impl Selection {
    fn filter(&self) -> DeadLetterFilter {
        let mut f = DeadLetterFilter::new();
        f.source = self.source;
        f.stream = self.stream.clone();
        f.category = self.category.clone();
        f.consumer_id = self.consumer.clone();
        f
    }

    fn is_empty(&self) -> bool {
        self.source.is_none()
            && self.stream.is_none()
            && self.category.is_none()
            && self.consumer.is_none()
    }
}

fn parse_source(s: &str) -> Result<DeadLetterSource, String> {
    s.parse().map_err(|e: eventodb_kit::Error| e.to_string())
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    out: OutputArgs,
    #[command(flatten)]
    selection: Selection,
    /// Show at most this many.
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    out: OutputArgs,
    /// The dead letter's id (as printed by `dlq list`).
    id: i64,
}

#[derive(Debug, Args)]
pub struct ActionArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    out: OutputArgs,
    #[command(flatten)]
    confirm: ConfirmArgs,
    /// Dead-letter ids (as printed by `dlq list`).
    ids: Vec<i64>,
    #[command(flatten)]
    selection: Selection,
    /// Every dead letter of the namespace.
    #[arg(long, conflicts_with = "ids")]
    all: bool,
}

pub fn run(command: DlqCommand) -> CliResult {
    match command {
        DlqCommand::List(args) => list(args),
        DlqCommand::Show(args) => show(args),
        DlqCommand::Requeue(args) => act(args, Action::Requeue),
        DlqCommand::Purge(args) => act(args, Action::Purge),
    }
}

fn letter_json(d: &DeadLetter, with_message: bool) -> Value {
    let mut v = json!({
        "id": d.id,
        "source": d.source.as_str(),
        "message_id": d.message_id,
        "stream": d.stream,
        "type": d.message_type,
        "category": d.category,
        "consumer_id": d.consumer_id,
        "error": d.error,
        "attempts": d.attempts,
        "first_failed_at": output::rfc3339(d.first_failed_at),
        "last_failed_at": output::rfc3339(d.last_failed_at),
        "requeued_at": output::rfc3339_opt(d.requeued_at),
    });
    if with_message {
        v["message"] = d.message.clone();
    }
    v
}

fn list(args: ListArgs) -> CliResult {
    let (kit, _) = args.target.open_kit_checked()?;
    let dlq = kit.dlq();
    let filter = args.selection.filter();
    let total = dlq.count(&filter)?;
    let letters = dlq.list(&filter.limit(args.limit))?;
    let value = json!({
        "namespace": kit.namespace(),
        "total": total,
        "dead_letters": letters.iter().map(|d| letter_json(d, false)).collect::<Vec<_>>(),
    });
    args.out.emit(&value, || {
        if letters.is_empty() {
            outln!("No dead letters match (namespace {:?}).", kit.namespace());
            return;
        }
        let mut table = Table::new(&[
            "ID", "SOURCE", "STREAM", "TYPE", "CONSUMER", "ATTEMPTS", "LAST FAILED", "ERROR",
        ]);
        for d in &letters {
            let consumer = match (&d.category, &d.consumer_id) {
                (Some(c), Some(id)) => format!("{c}/{id}"),
                _ => "-".into(),
            };
            let requeued = if d.requeued_at.is_some() {
                " (requeued)"
            } else {
                ""
            };
            table.row(vec![
                d.id.to_string(),
                format!("{}{requeued}", d.source),
                d.stream.clone(),
                d.message_type.clone(),
                consumer,
                d.attempts.to_string(),
                output::ago(d.last_failed_at),
                output::short(&d.error, 60),
            ]);
        }
        table.print();
        if total > letters.len() as u64 {
            outln!("\n{} of {total} shown; pass --limit to see more.", letters.len());
        }
        outln!("\n`eventodb-kit dlq show ID` shows one; `dlq requeue ID` sends it again; `dlq purge ID` deletes it.");
    });
    Ok(())
}

fn show(args: ShowArgs) -> CliResult {
    let (kit, _) = args.target.open_kit_checked()?;
    let d = kit.dlq().get(args.id).map_err(|e| {
        CliError::from(e).hint("list the dead letters with `eventodb-kit dlq list`")
    })?;
    let value = letter_json(&d, true);
    args.out.emit(&value, || {
        outln!("Dead letter {}", d.id);
        outln!("  source        {}", d.source);
        outln!("  message id    {}", d.message_id);
        outln!("  stream        {}", d.stream);
        outln!("  type          {}", d.message_type);
        if let (Some(c), Some(id)) = (&d.category, &d.consumer_id) {
            outln!("  consumer      {id} (category {c})");
        }
        outln!("  attempts      {}", d.attempts);
        outln!("  first failed  {}", output::when(d.first_failed_at));
        outln!("  last failed   {}", output::when(d.last_failed_at));
        if let Some(t) = d.requeued_at {
            outln!(
                "  requeued      {} (waits for its consumer's next run)",
                output::when(t)
            );
        }
        outln!("  error         {}", d.error);
        outln!(
            "  message       {}",
            serde_json::to_string_pretty(&d.message)
                .unwrap_or_default()
                .replace('\n', "\n                ")
        );
    });
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Requeue,
    Purge,
}

fn act(args: ActionArgs, action: Action) -> CliResult {
    let verb = match action {
        Action::Requeue => "requeue",
        Action::Purge => "purge",
    };
    if args.ids.is_empty() && args.selection.is_empty() && !args.all {
        return Err(CliError::usage(format!("say which dead letters to {verb}")).hint(format!(
            "pass ids (`dlq {verb} 12 13`), a selection (--stream, --source, --category, --consumer) or --all"
        )));
    }
    let (kit, _) = args.target.open_kit_checked()?;
    let dlq = kit.dlq();
    let mut filter = args.selection.filter();
    if !args.ids.is_empty() {
        let missing: Vec<String> = args
            .ids
            .iter()
            .filter(|id| dlq.get(**id).is_err())
            .map(i64::to_string)
            .collect();
        if !missing.is_empty() {
            return Err(CliError::new(
                NOT_FOUND,
                format!("no dead letter with id {}", missing.join(", ")),
            )
            .hint("list the dead letters with `eventodb-kit dlq list`; nothing was changed"));
        }
        for id in &args.ids {
            filter = filter.id(*id);
        }
    }
    let letters = dlq.list(&filter)?;
    let count = letters.len() as u64;
    if letters.is_empty() {
        let value = json!({ "namespace": kit.namespace(), format!("{verb}d"): 0, "ids": [] });
        args.out.emit(&value, || {
            outln!("No dead letters match; nothing to {verb}.")
        });
        return Ok(());
    }
    let outbox = letters
        .iter()
        .filter(|d| d.source == DeadLetterSource::Outbox)
        .count() as u64;
    let consumer = count - outbox;
    let single_requeue =
        action == Action::Requeue && args.ids.len() == 1 && args.selection.is_empty();
    if !single_requeue {
        if !args.confirm.yes {
            let what = format!(
                "{} of namespace {:?} ({outbox} from the outbox, {consumer} of consumers; ids {})",
                plural(count, "dead letter", "dead letters"),
                kit.namespace(),
                short_ids(&letters)
            );
            match action {
                Action::Requeue => eprintln!("This requeues {what}."),
                Action::Purge => eprintln!("This deletes {what} for good."),
            }
            if action == Action::Purge && outbox > 0 {
                eprintln!("Purged outbox messages are never sent.");
            }
        }
        args.confirm.confirm(&format!(
            "{} {}?",
            match action {
                Action::Requeue => "Requeue",
                Action::Purge => "Purge",
            },
            plural(count, "dead letter", "dead letters")
        ))?;
    }
    let done = match action {
        Action::Requeue => dlq.requeue_where(&filter)?,
        Action::Purge => dlq.purge_where(&filter)?,
    } as u64;
    let ids: Vec<i64> = letters.iter().map(|d| d.id).collect();
    let value = json!({
        "namespace": kit.namespace(),
        format!("{verb}d"): done,
        "outbox": outbox,
        "consumer": consumer,
        "ids": ids,
    });
    args.out.emit(&value, || match action {
        Action::Requeue => {
            outln!("Requeued {}.", plural(done, "dead letter", "dead letters"));
            if outbox > 0 {
                outln!(
                    "  {outbox} went back to the outbox: the app's sender delivers them (or run `eventodb-kit drain`)."
                );
            }
            if consumer > 0 {
                if consumer == 1 {
                    outln!("  1 waits for its consumer: the handler runs it once more when the consumer next runs.");
                } else {
                    outln!("  {consumer} wait for their consumers: each runs its handler once more when it next runs.");
                }
            }
        }
        Action::Purge => outln!("Purged {}.", plural(done, "dead letter", "dead letters")),
    });
    Ok(())
}

fn short_ids(letters: &[DeadLetter]) -> String {
    let mut ids: Vec<String> = letters.iter().take(10).map(|d| d.id.to_string()).collect();
    if letters.len() > 10 {
        ids.push("…".into());
    }
    ids.join(", ")
}
