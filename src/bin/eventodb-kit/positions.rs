//! `eventodb-kit positions list|reset`: consumer positions (checkpoints).

use std::time::SystemTime;

use clap::{Args, Subcommand};
use eventodb_kit::consumer::Checkpoint;
use eventodb_kit::ConsumerGroup;
use serde_json::{json, Value};

use crate::confirm::ConfirmArgs;
use crate::exit::{CliError, CliResult};
use crate::output::{self, OutputArgs, Table};
use crate::target::TargetArgs;

#[derive(Debug, Subcommand)]
pub enum PositionsCommand {
    /// List every consumer's saved position.
    List(ListArgs),
    /// Move a consumer back (or forward) so it handles messages again.
    Reset(ResetArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    out: OutputArgs,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("to").required(true))]
pub struct ResetArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    out: OutputArgs,
    #[command(flatten)]
    confirm: ConfirmArgs,
    /// The consumer's category.
    #[arg(long, value_name = "CATEGORY")]
    category: String,
    /// The consumer's id.
    #[arg(long, value_name = "ID")]
    consumer: String,
    /// Resume after this global position: every later message is handled
    /// again (their processed records are forgotten).
    #[arg(long, group = "to", value_name = "GP")]
    to_position: Option<i64>,
    /// Resume at the first message written at or after this time: an RFC
    /// 3339 time (2026-03-01T12:00:00Z) or an age (2h = two hours ago).
    #[arg(long, group = "to", value_name = "TIME", value_parser = parse_time)]
    to_time: Option<SystemTime>,
    /// Forget the consumer entirely: position and processed records; its
    /// next run starts at its configured start position.
    #[arg(long, group = "to")]
    to_start: bool,
    /// Show what would change and change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// An RFC 3339 time, or a duration meaning "that long ago".
pub fn parse_time(s: &str) -> Result<SystemTime, String> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t);
    }
    match humantime::parse_duration(s) {
        Ok(ago) => Ok(SystemTime::now() - ago),
        Err(_) => Err(
            "write a time as RFC 3339 (2026-03-01T12:00:00Z) or an age such as 90m or 2days (that long ago)"
                .to_string(),
        ),
    }
}

pub fn run(command: PositionsCommand) -> CliResult {
    match command {
        PositionsCommand::List(args) => list(args),
        PositionsCommand::Reset(args) => reset(args),
    }
}

fn checkpoint_json(c: &Checkpoint) -> Value {
    json!({
        "category": c.category,
        "consumer_id": c.consumer_id,
        "position": c.position,
        "consumer_group": c.consumer_group.map(|g| json!({ "member": g.member(), "size": g.size() })),
        "updated_at": output::rfc3339(c.updated_at),
    })
}

/// A consumer group as `member/size`, `-` without one.
pub fn group_text(group: Option<ConsumerGroup>) -> String {
    group.map_or("-".into(), |g| format!("{}/{}", g.member(), g.size()))
}

fn list(args: ListArgs) -> CliResult {
    let (kit, _) = args.target.open_kit_checked()?;
    let checkpoints = kit.checkpoints().list()?;
    let value = json!({
        "namespace": kit.namespace(),
        "positions": checkpoints.iter().map(checkpoint_json).collect::<Vec<_>>(),
    });
    args.out.emit(&value, || {
        if checkpoints.is_empty() {
            outln!(
                "No consumer positions (namespace {:?}): no consumer has run on this database.",
                kit.namespace()
            );
            return;
        }
        let mut table = Table::new(&["CATEGORY", "CONSUMER", "POSITION", "GROUP", "LAST PROGRESS"]);
        for c in &checkpoints {
            table.row(vec![
                display_category(&c.category),
                c.consumer_id.clone(),
                c.position.to_string(),
                group_text(c.consumer_group),
                output::ago(c.updated_at),
            ]);
        }
        table.print();
        outln!("\n`eventodb-kit status` adds each consumer's lag; `positions reset` moves one.");
    });
    Ok(())
}

/// `""` (every category) shown as `(all)`.
pub fn display_category(category: &str) -> String {
    if category.is_empty() {
        "(all)".into()
    } else {
        category.to_string()
    }
}

fn reset(args: ResetArgs) -> CliResult {
    let (kit, store) = args.target.open_kit_checked()?;
    let checkpoints = kit.checkpoints();
    let current = checkpoints.get(&args.category, &args.consumer)?;
    let Some(current) = current else {
        return Err(CliError::new(
            crate::exit::NOT_FOUND,
            format!(
                "consumer {:?} of category {:?} has no position (it never ran on this database)",
                args.consumer, args.category
            ),
        )
        .hint(
            "`eventodb-kit positions list` shows the consumers; check --category and --consumer",
        ));
    };
    let target = if let Some(gp) = args.to_position {
        if gp < 0 {
            return Err(CliError::usage("--to-position must be 0 or more"));
        }
        Some(gp)
    } else if let Some(time) = args.to_time {
        store.check_reachable()?;
        Some(checkpoints.position_at_time(&args.category, time)?)
    } else {
        None
    };
    let effect = match target {
        Some(gp) if gp > current.position => format!(
            "moves consumer {:?} of category {:?} forward from global position {} to {gp}: it skips \
             the messages up to {gp} without handling them and goes on from {}",
            args.consumer,
            args.category,
            current.position,
            gp + 1
        ),
        Some(gp) => format!(
            "moves consumer {:?} of category {:?} from global position {} to {gp}: it forgets its processed \
             records after {gp} and handles every message from {} on again",
            args.consumer,
            args.category,
            current.position,
            gp + 1
        ),
        None => format!(
            "forgets consumer {:?} of category {:?} entirely (position {}, group and processed records): its \
             next run starts at its configured start position and handles everything again",
            args.consumer, args.category, current.position
        ),
    };
    let plan = json!({
        "namespace": kit.namespace(),
        "category": args.category,
        "consumer_id": args.consumer,
        "previous_position": current.position,
        "new_position": target,
        "to_start": target.is_none(),
    });
    if args.dry_run {
        let mut value = plan;
        value["dry_run"] = json!(true);
        args.out.emit(&value, || {
            outln!("Dry run: this {effect}.");
            outln!("Nothing was changed.");
        });
        return Ok(());
    }
    if !args.confirm.yes {
        eprintln!("This {effect}.");
        eprintln!("Stop the app's consumer first: a running consumer overwrites its position with its own.");
    }
    args.confirm.confirm("Reset the position?")?;
    match target {
        Some(gp) => checkpoints.reset_to_position(&args.category, &args.consumer, gp)?,
        None => checkpoints.reset(&args.category, &args.consumer)?,
    }
    args.out.emit(&plan, || {
        match target {
            Some(gp) => outln!(
                "Consumer {:?} of category {:?} moved from {} to {gp}; its next run handles messages from {} on.",
                args.consumer,
                args.category,
                current.position,
                gp + 1
            ),
            None => outln!(
                "Consumer {:?} of category {:?} forgotten (was at {}); its next run starts afresh.",
                args.consumer, args.category, current.position
            ),
        }
    });
    Ok(())
}
