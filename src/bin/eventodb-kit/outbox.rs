//! `eventodb-kit outbox list|show`: what waits in the outbox, what went out,
//! what was refused.

use std::time::Duration;

use clap::{Args, Subcommand};
use eventodb_kit::outbox::{OutboxFilter, OutboxRecord, OutboxState};
use serde_json::{json, Value};

use crate::exit::{CliError, CliResult};
use crate::output::{self, OutputArgs, Table};
use crate::target::TargetArgs;

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// List outbox messages, oldest first.
    List(ListArgs),
    /// Show one outbox message with its data, metadata, attempts and last error.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    out: OutputArgs,
    /// Only messages of this stream.
    #[arg(long, value_name = "STREAM")]
    stream: Option<String>,
    /// Only messages still waiting to be delivered.
    #[arg(long, group = "state")]
    unsent: bool,
    /// Only messages the store has accepted.
    #[arg(long, group = "state")]
    sent: bool,
    /// Only messages moved to the dead-letter queue.
    #[arg(long, group = "state")]
    dead: bool,
    /// Only messages written at least this long ago (e.g. 30s, 15m, 1h, 2days).
    #[arg(long, value_name = "AGE", value_parser = output::parse_duration)]
    older_than: Option<Duration>,
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
    /// The message ID (a UUID, as printed by `outbox list`).
    id: String,
}

pub fn run(command: OutboxCommand) -> CliResult {
    match command {
        OutboxCommand::List(args) => list(args),
        OutboxCommand::Show(args) => show(args),
    }
}

fn state_name(state: OutboxState) -> &'static str {
    match state {
        OutboxState::Pending => "unsent",
        OutboxState::Sent => "sent",
        OutboxState::DeadLettered => "dead-lettered",
    }
}

fn list(args: ListArgs) -> CliResult {
    let (kit, _) = args.target.open_kit_checked()?;
    let mut filter = OutboxFilter::new();
    if let Some(stream) = &args.stream {
        filter = filter.stream(stream.clone());
    }
    if args.unsent {
        filter = filter.state(OutboxState::Pending);
    } else if args.sent {
        filter = filter.state(OutboxState::Sent);
    } else if args.dead {
        filter = filter.state(OutboxState::DeadLettered);
    }
    if let Some(age) = args.older_than {
        filter = filter.older_than(age);
    }
    let outbox = kit.outbox();
    let total = outbox.count(&filter)?;
    let rows = outbox.list(&filter.limit(args.limit))?;
    let value = json!({
        "namespace": kit.namespace(),
        "total": total,
        "messages": rows.iter().map(summary_json).collect::<Vec<_>>(),
    });
    args.out.emit(&value, || {
        if rows.is_empty() {
            outln!(
                "No outbox messages match (namespace {:?}).",
                kit.namespace()
            );
            return;
        }
        let mut table = Table::new(&[
            "SEQ", "ID", "STREAM", "TYPE", "STATE", "WRITTEN", "ATTEMPTS", "LAST ERROR",
        ]);
        for r in &rows {
            table.row(vec![
                r.seq.to_string(),
                r.id.clone(),
                r.stream.clone(),
                r.message_type.clone(),
                state_name(r.state()).to_string(),
                output::ago(r.created_at),
                r.attempts.to_string(),
                output::short(r.last_error.as_deref().unwrap_or("-"), 60),
            ]);
        }
        table.print();
        if total > rows.len() as u64 {
            outln!(
                "\n{} of {total} shown; pass --limit to see more, or narrow with --stream/--unsent/--older-than.",
                rows.len()
            );
        }
    });
    Ok(())
}

fn summary_json(r: &OutboxRecord) -> Value {
    json!({
        "seq": r.seq,
        "id": r.id,
        "stream": r.stream,
        "type": r.message_type,
        "state": state_name(r.state()),
        "created_at": output::rfc3339(r.created_at),
        "sent_at": output::rfc3339_opt(r.sent_at),
        "attempts": r.attempts,
        "last_error": r.last_error,
        "next_attempt_at": output::rfc3339_opt(r.next_attempt_at),
        "dead_lettered_at": output::rfc3339_opt(r.dead_lettered_at),
    })
}

fn show(args: ShowArgs) -> CliResult {
    let (kit, _) = args.target.open_kit_checked()?;
    let r = kit.outbox().get(&args.id).map_err(|e| {
        let e = CliError::from(e);
        if args.id.parse::<u64>().is_ok() {
            e.hint(
                "pass the message's ID (the second column of `eventodb-kit outbox list`, a UUID), \
                 not its SEQ number",
            )
        } else {
            e.hint(
                "list the messages with `eventodb-kit outbox list`; sent messages are deleted after \
                 the sender's retention period (7 days by default)",
            )
        }
    })?;
    let mut value = summary_json(&r);
    value["data"] = r.data.clone();
    value["metadata"] = r.metadata.clone().unwrap_or(Value::Null);
    value["expected_version"] = json!(r.expected_version);
    value["idempotency_key"] = json!(r.idempotency_key);
    value["namespace"] = json!(kit.namespace());
    args.out.emit(&value, || {
        let opt = |t: Option<std::time::SystemTime>| t.map_or("-".to_string(), output::when);
        outln!("Outbox message {}", r.id);
        outln!("  seq               {}", r.seq);
        outln!("  stream            {}", r.stream);
        outln!("  type              {}", r.message_type);
        outln!("  state             {}", state_name(r.state()));
        outln!("  written           {}", output::when(r.created_at));
        outln!("  sent              {}", opt(r.sent_at));
        outln!("  attempts          {}", r.attempts);
        outln!("  next attempt      {}", opt(r.next_attempt_at));
        outln!("  dead-lettered     {}", opt(r.dead_lettered_at));
        outln!("  last error        {}", r.last_error.as_deref().unwrap_or("-"));
        outln!(
            "  expected version  {}",
            r.expected_version.map_or("-".into(), |v| v.to_string())
        );
        outln!(
            "  idempotency key   {}",
            r.idempotency_key.as_deref().unwrap_or("-")
        );
        outln!("  data              {}", r.data);
        outln!(
            "  metadata          {}",
            r.metadata.as_ref().map_or("-".into(), |m| m.to_string())
        );
        if r.state() == OutboxState::DeadLettered {
            outln!("\nIt is in the dead-letter queue: `eventodb-kit dlq list --stream {}` shows it; `dlq requeue ID` sends it again.", r.stream);
        }
    });
    Ok(())
}
