//! `eventodb-kit status`: the outbox backlog, dead letters, consumers with
//! their lag, and who holds the sender lease — in one screen.
//!
//! Lag and the stalled flag are worked out here by [`consumer_lag`] (until
//! the library's `Kit::metrics()` provides them): a consumer's lag is the
//! number of messages of its category (of its share, in a group) after its
//! position; it is stalled when it lags and its position has not moved for
//! `--stalled-after`.

use std::time::{Duration, SystemTime};

use clap::Args;
use eventodb_kit::consumer::Checkpoint;
use eventodb_kit::dlq::{DeadLetterFilter, DeadLetterSource};
use eventodb_kit::{CategoryQuery, Error, MessageStore};
use serde_json::{json, Value};

use crate::exit::{CliError, CliResult};
use crate::output::{self, plural, OutputArgs, Table};
use crate::positions::{checkpoint_json, display_category, group_text};
use crate::target::TargetArgs;

/// Most messages counted per consumer for its lag (10 reads).
const LAG_COUNT_LIMIT: u64 = 100_000;
const LAG_BATCH: i64 = 10_000;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    out: OutputArgs,
    /// A consumer that lags and has not moved for this long is stalled
    /// (e.g. 30s, 5m, 1h).
    #[arg(long, default_value = "5m", value_parser = output::parse_duration)]
    stalled_after: Duration,
}

/// A consumer's lag behind the head of its category.
#[derive(Debug, Clone, PartialEq)]
pub struct Lag {
    /// Messages after the position (at least this many when `capped`).
    pub messages: u64,
    /// More messages than were counted.
    pub capped: bool,
    /// Global position of the newest message of the category (its share),
    /// when all were counted.
    pub head: Option<i64>,
    /// How long the oldest message after the position has been waiting.
    pub oldest_waiting: Option<Duration>,
}

/// Reads the category after the consumer's position (at most 100 000
/// messages). To be replaced by the library's `Kit::metrics()`.
pub fn consumer_lag(
    store: &dyn MessageStore,
    checkpoint: &Checkpoint,
) -> eventodb_kit::Result<Lag> {
    let mut next = checkpoint.position + 1;
    let mut lag = Lag {
        messages: 0,
        capped: false,
        head: Some(checkpoint.position),
        oldest_waiting: None,
    };
    loop {
        let mut query = CategoryQuery::new().position(next).batch_size(LAG_BATCH);
        query.consumer_group = checkpoint.consumer_group;
        let batch = store.get_category(&checkpoint.category, &query)?;
        let Some(last) = batch.last() else {
            return Ok(lag);
        };
        if lag.oldest_waiting.is_none() {
            lag.oldest_waiting = Some(
                SystemTime::now()
                    .duration_since(batch[0].time)
                    .unwrap_or_default(),
            );
        }
        lag.messages += batch.len() as u64;
        lag.head = Some(last.global_position);
        next = last.global_position + 1;
        if (batch.len() as i64) < LAG_BATCH {
            return Ok(lag);
        }
        if lag.messages >= LAG_COUNT_LIMIT {
            lag.capped = true;
            lag.head = None;
            return Ok(lag);
        }
    }
}

/// Stalled: behind, and no progress for `after`.
pub fn is_stalled(lag: &Lag, checkpoint: &Checkpoint, after: Duration) -> bool {
    let idle = SystemTime::now()
        .duration_since(checkpoint.updated_at)
        .unwrap_or_default();
    lag.messages > 0 && idle >= after
}

pub fn run(args: StatusArgs) -> CliResult {
    let (kit, store) = args.target.open_kit_checked()?;
    let outbox = kit.outbox();
    let backlog = outbox.status()?;
    let lease = outbox.sender_lease()?;
    let dlq = kit.dlq();
    let dl_outbox = dlq.count(&DeadLetterFilter::new().source(DeadLetterSource::Outbox))?;
    let dl_consumer = dlq.count(&DeadLetterFilter::new().source(DeadLetterSource::Consumer))?;
    let checkpoints = kit.checkpoints().list()?;

    // The store is only needed for the lag; if it cannot be reached the rest
    // is still shown.
    let reachable = store.check_reachable();
    let store_error = reachable.as_ref().err().map(|e| e.message.clone());
    let mut consumers = Vec::new();
    let mut lag_error: Option<Error> = None;
    for c in &checkpoints {
        let lag = if reachable.is_ok() && lag_error.is_none() {
            match consumer_lag(store.as_dyn().as_ref(), c) {
                Ok(lag) => Some(lag),
                Err(e) => {
                    lag_error = Some(e);
                    None
                }
            }
        } else {
            None
        };
        consumers.push((c, lag));
    }
    let now = SystemTime::now();
    let stalled: Vec<&Checkpoint> = consumers
        .iter()
        .filter(|(c, lag)| {
            lag.as_ref()
                .is_some_and(|l| is_stalled(l, c, args.stalled_after))
        })
        .map(|(c, _)| *c)
        .collect();

    let consumers_json: Vec<Value> = consumers
        .iter()
        .map(|(c, lag)| {
            let mut v = checkpoint_json(c);
            v["last_progress_age_seconds"] =
                output::seconds(now.duration_since(c.updated_at).unwrap_or_default());
            match lag {
                Some(l) => {
                    v["lag_messages"] = json!(l.messages);
                    v["lag_capped"] = json!(l.capped);
                    v["head_position"] = json!(l.head);
                    v["lag_seconds"] = l.oldest_waiting.map_or(json!(0), output::seconds);
                    v["stalled"] = json!(is_stalled(l, c, args.stalled_after));
                }
                None => {
                    v["lag_messages"] = Value::Null;
                    v["lag_capped"] = Value::Null;
                    v["head_position"] = Value::Null;
                    v["lag_seconds"] = Value::Null;
                    v["stalled"] = Value::Null;
                }
            }
            v
        })
        .collect();
    let lease_json = lease.as_ref().map(|l| {
        json!({
            "name": format!("outbox-sender:{}", kit.namespace()),
            "holder": l.holder,
            "fencing_token": l.fencing_token,
            "expires_at": output::rfc3339(l.expires_at),
            "held": l.is_held_at(now),
        })
    });
    let value = json!({
        "database": args.target.db_path()?.display().to_string(),
        "namespace": kit.namespace(),
        "store": store.label(),
        "store_error": store_error.clone().or_else(|| lag_error.as_ref().map(|e| e.to_string())),
        "outbox": {
            "backlog": backlog.unsent,
            "oldest_unsent_at": output::rfc3339_opt(backlog.oldest_unsent_at),
            "oldest_unsent_age_seconds": backlog.oldest_unsent_age().map(output::seconds),
            "dead_lettered": backlog.dead_lettered,
        },
        "dead_letters": {
            "total": dl_outbox + dl_consumer,
            "by_source": { "outbox": dl_outbox, "consumer": dl_consumer },
        },
        "consumers": consumers_json,
        "stalled_after_seconds": output::seconds(args.stalled_after),
        "sender_lease": lease_json,
        "leases": lease_json.iter().collect::<Vec<_>>(),
    });

    args.out.emit(&value, || {
        outln!(
            "eventodb-kit status — namespace {:?}, database {}, store {}",
            kit.namespace(),
            args.target.db.as_ref().map_or(String::new(), |p| p.display().to_string()),
            store.label()
        );
        outln!("\nOutbox");
        match backlog.oldest_unsent_at {
            Some(t) => outln!(
                "  backlog        {}, the oldest written {}",
                plural(backlog.unsent, "message", "messages"),
                output::when(t)
            ),
            None => outln!("  backlog        0 messages"),
        }
        match &lease {
            Some(l) if l.is_held_at(now) => outln!(
                "  sender lease   held by {} (fencing token {}) until {}",
                l.holder,
                l.fencing_token,
                output::when(l.expires_at)
            ),
            Some(l) => outln!(
                "  sender lease   free (last holder {}, fencing token {}): no sender is running",
                l.holder, l.fencing_token
            ),
            None => outln!("  sender lease   none: no sender has run on this database"),
        }
        outln!("\nDead letters");
        outln!(
            "  {} (outbox {dl_outbox}, consumer {dl_consumer})",
            plural(dl_outbox + dl_consumer, "dead letter", "dead letters")
        );
        outln!("\nConsumers");
        if consumers.is_empty() {
            outln!("  none: no consumer has run on this database");
        } else {
            let mut table = Table::new(&[
                "CATEGORY", "CONSUMER", "GROUP", "POSITION", "HEAD", "LAG", "WAITING", "LAST PROGRESS",
                "STATE",
            ]);
            for (c, lag) in &consumers {
                let (head, lag_text, waiting, state) = match lag {
                    Some(l) => (
                        l.head.map_or("?".into(), |h| h.to_string()),
                        if l.capped {
                            format!("{}+", l.messages)
                        } else {
                            l.messages.to_string()
                        },
                        l.oldest_waiting.map_or("-".into(), output::age),
                        if is_stalled(l, c, args.stalled_after) {
                            "STALLED"
                        } else if l.messages > 0 {
                            "behind"
                        } else {
                            "caught up"
                        },
                    ),
                    None => ("?".into(), "?".into(), "?".into(), "unknown"),
                };
                table.row(vec![
                    display_category(&c.category),
                    c.consumer_id.clone(),
                    group_text(c),
                    c.position.to_string(),
                    head,
                    lag_text,
                    waiting,
                    output::ago(c.updated_at),
                    state.to_string(),
                ]);
            }
            table.print_indented("  ");
        }
        let mut notes = Vec::new();
        if let Some(e) = &store_error {
            notes.push(format!("the store is unreachable, so lags are unknown: {e}"));
        } else if let Some(e) = &lag_error {
            notes.push(format!("the lags could not be read: {e}"));
        }
        for c in &stalled {
            notes.push(format!(
                "consumer {:?} of {:?} is stalled: it lags and has not moved for {}. Is the app running? \
                 A consumer halted on a failing message stays there: `eventodb-kit dlq list --consumer {}` \
                 and the app's log say more.",
                c.consumer_id,
                display_category(&c.category),
                output::age(now.duration_since(c.updated_at).unwrap_or_default()),
                c.consumer_id
            ));
        }
        if backlog.unsent > 0 && !lease.as_ref().is_some_and(|l| l.is_held_at(now)) {
            notes.push("messages wait and no sender is running: start the app, or `eventodb-kit drain` sends them now".into());
        }
        if dl_outbox + dl_consumer > 0 {
            notes.push("`eventodb-kit dlq list` shows the dead letters; `dlq requeue` sends them again".into());
        }
        if !notes.is_empty() {
            outln!();
            for n in notes {
                outln!("note: {n}");
            }
        }
    });
    match (reachable, lag_error) {
        (Err(e), _) => Err(e),
        (Ok(()), Some(e)) => Err(CliError::from(e)),
        _ => Ok(()),
    }
}
