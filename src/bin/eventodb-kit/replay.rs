//! `eventodb-kit replay`: re-deliver a range of a category to one consumer.
//!
//! The tool cannot run the app's handler, so a replay is a re-delivery:
//! the consumer's position moves back to `from - 1` and its processed
//! records of `[from, to]` are deleted. When the app's consumer runs next,
//! its handler runs on the range again and skips the later messages it had
//! already handled (their processed records remain). The work is
//! [`Checkpoints::replay_range`](eventodb_kit::Checkpoints::replay_range).

use std::time::{Duration, Instant};

use clap::Args;
use eventodb_kit::consumer::ReplayRangePlan;
use serde_json::{json, Value};

use crate::confirm::ConfirmArgs;
use crate::exit::{CliError, CliResult, INCOMPLETE};
use crate::output::{self, plural, OutputArgs};
use crate::progress::Progress;
use crate::target::TargetArgs;

/// How often `--wait` looks at the consumer's position (it runs in another
/// process, so there is nothing to be woken by).
const WAIT_POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    out: OutputArgs,
    #[command(flatten)]
    confirm: ConfirmArgs,
    /// The category the consumer follows.
    #[arg(long, value_name = "CATEGORY")]
    category: String,
    /// The consumer id to re-deliver to.
    #[arg(long, value_name = "ID")]
    consumer: String,
    /// First global position of the range (inclusive).
    #[arg(long, value_name = "GP")]
    from: i64,
    /// Last global position of the range (inclusive). Defaults to the end:
    /// everything from --from on is handled again.
    #[arg(long, value_name = "GP")]
    to: Option<i64>,
    /// Show what would change and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// After the change, follow the consumer (started by the app) until it
    /// has handled the range again.
    #[arg(long)]
    wait: bool,
    /// How long --wait follows the consumer (e.g. 30s, 10m).
    #[arg(long, default_value = "10m", value_parser = output::parse_duration)]
    timeout: Duration,
}

fn plan_json(plan: &ReplayRangePlan, namespace: &str) -> Value {
    json!({
        "namespace": namespace,
        "category": plan.category,
        "consumer_id": plan.consumer_id,
        "from": plan.from_position,
        "to": plan.to_position,
        "previous_position": plan.current_position,
        "new_position": plan.new_position,
        "forgotten_records": plan.forgotten_records,
        "kept_records": plan.kept_records,
        "unrecorded_after_range": plan.unrecorded_after_range,
        "dead_letters_after_range": plan.dead_letters_after_range,
        "checked_through": plan.checked_through,
        "may_rerun_after_range": plan.may_rerun_after_range(),
    })
}

/// The plan for people (to stderr when asking, stdout for a dry run).
fn describe(plan: &ReplayRangePlan) -> Vec<String> {
    let range = match plan.to_position {
        Some(to) => format!("{}..={to}", plan.from_position),
        None => format!("{} to the end", plan.from_position),
    };
    let mut lines = vec![
        format!(
            "Replay of global positions {range} of category {:?} to consumer {:?}:",
            plan.category, plan.consumer_id
        ),
        format!(
            "  position        {} -> {} (its next run fetches from {})",
            plan.current_position, plan.new_position, plan.from_position
        ),
        format!(
            "  handled again   the range: {} forgotten",
            plural(
                plan.forgotten_records,
                "processed record",
                "processed records"
            )
        ),
    ];
    if let Some(to) = plan.to_position.filter(|to| *to < plan.current_position) {
        lines.push(format!(
            "  skipped         {}..={}: {} kept, so those messages are not handled again",
            to + 1,
            plan.current_position,
            plural(plan.kept_records, "processed record", "processed records")
        ));
        if plan.unrecorded_after_range > 0 {
            lines.push(format!(
                "  WARNING: {} after {to} (up to {}) {} no processed record, so {} delivered again: \
                 passed over by the consumer's type/metadata filters (harmless), dead-lettered by it \
                 ({} of them: the handler runs on them again), or their records were already pruned by \
                 retention (the handler runs on them again).",
                plural(plan.unrecorded_after_range, "message", "messages"),
                plan.checked_through,
                if plan.unrecorded_after_range == 1 { "has" } else { "have" },
                if plan.unrecorded_after_range == 1 { "it is" } else { "they are" },
                plan.dead_letters_after_range,
            ));
        }
        if !plan.checked_completely() {
            lines.push(format!(
                "  WARNING: only messages up to {} were checked for processed records; later ones \
                 (up to {}) whose records were pruned would run the handler again too.",
                plan.checked_through, plan.current_position
            ));
        }
    }
    lines
}

pub fn run(args: ReplayArgs) -> CliResult {
    let (kit, store) = args.target.open_kit_checked()?;
    store.check_reachable()?;
    let checkpoints = kit.checkpoints();
    let plan = checkpoints
        .plan_replay_range(&args.category, &args.consumer, args.from, args.to)
        .map_err(|e| match e {
            eventodb_kit::Error::NotFound(_) => CliError::from(e).hint(
                "`eventodb-kit positions list` shows the consumers that have run; check --category and --consumer",
            ),
            eventodb_kit::Error::InvalidInput(m) => CliError::failure(m)
                .hint("pick a range the consumer has already handled (`eventodb-kit positions list` shows its position)"),
            other => other.into(),
        })?;
    let mut value = plan_json(&plan, kit.namespace());
    if args.dry_run {
        value["dry_run"] = json!(true);
        args.out.emit(&value, || {
            for line in describe(&plan) {
                outln!("{line}");
            }
            outln!("Dry run: nothing was changed.");
        });
        return Ok(());
    }
    if !args.confirm.yes {
        for line in describe(&plan) {
            eprintln!("{line}");
        }
        eprintln!("Stop the app's consumer first: a running consumer overwrites its position with its own.");
    } else if plan.may_rerun_after_range() {
        // Warnings are not skipped by --yes.
        for line in describe(&plan).iter().filter(|l| l.contains("WARNING")) {
            eprintln!("{}", line.trim_start());
        }
    }
    args.confirm.confirm("Replay?")?;
    let deleted = checkpoints.apply_replay_range(&plan).map_err(|e| {
        CliError::from(e).hint("stop the app's consumer, then run the replay again")
    })?;
    value["forgotten_records"] = json!(deleted);
    let target = plan.to_position.unwrap_or(plan.current_position);
    if !args.wait {
        args.out.emit(&value, || {
            outln!(
                "Consumer {:?} of category {:?} moved from {} to {}; {} forgotten.",
                plan.consumer_id,
                plan.category,
                plan.current_position,
                plan.new_position,
                plural(deleted, "processed record", "processed records")
            );
            outln!("Start the app: its consumer handles the range again. (`replay --wait` follows it.)");
        });
        return Ok(());
    }
    eprintln!(
        "Position moved to {}. Waiting for the consumer to handle up to {target} (start the app now).",
        plan.new_position
    );
    let reached = follow(&kit, &plan, target, args.timeout)?;
    value["reached_position"] = json!(reached);
    value["done"] = json!(reached >= target);
    if reached < target {
        return Err(CliError::new(
            INCOMPLETE,
            format!(
                "the consumer reached {reached} of {target} within {}",
                output::age(args.timeout)
            ),
        )
        .hint("the replay itself is done: start the app so its consumer runs, and follow it with `eventodb-kit status`"));
    }
    args.out.emit(&value, || {
        outln!(
            "Consumer {:?} of category {:?} handled the range again (now at {reached}).",
            plan.consumer_id,
            plan.category
        );
    });
    Ok(())
}

/// Follows the consumer's position until it reaches `target` or `timeout`
/// passes; returns the last position seen.
fn follow(
    kit: &eventodb_kit::Kit,
    plan: &ReplayRangePlan,
    target: i64,
    timeout: Duration,
) -> CliResult<i64> {
    let start = plan.new_position;
    let span = (target - start).max(1) as u64;
    let mut progress = Progress::new("replay", Some(span), "positions");
    let deadline = crate::far_deadline(timeout);
    loop {
        let position = kit
            .checkpoints()
            .get(&plan.category, &plan.consumer_id)?
            .map_or(start, |c| c.position);
        let done = (position - start).clamp(0, span as i64) as u64;
        if position >= target || Instant::now() >= deadline {
            progress.finish(done, &format!("(position {position})"));
            return Ok(position);
        }
        progress.set(done, &format!("(position {position})"));
        std::thread::sleep(WAIT_POLL.min(deadline.saturating_duration_since(Instant::now())));
    }
}
