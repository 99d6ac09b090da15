//! [`Kit::metrics`]: reading a snapshot from the database, the store and the
//! live components.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rusqlite::{params, Connection};

use super::snapshot::{
    ConsumerLag, ConsumerMetrics, DeadLetterMetrics, LeaseMetrics, LiveConsumerMetrics, Metrics,
    OutboxMetrics, SenderMetrics,
};
use super::Histogram;
use crate::consumer::consumer_lease_name;
use crate::consumer::ConsumerHealth;
use crate::consumer_group::ConsumerGroup;
use crate::error::Result;
use crate::kit::Kit;
use crate::lease::{self, LeaseInfo};
use crate::outbox::SenderShared;
use crate::store::{CategoryQuery, MessageStore};
use crate::time::from_ms;

/// A consumer's row in `evento_consumer_positions`.
#[derive(Debug, Clone)]
struct PositionRow {
    /// The consumer key (`None` for a live consumer without a row).
    consumer_key: Option<i64>,
    category: String,
    consumer_id: String,
    position: i64,
    group: Option<ConsumerGroup>,
    correlation: Option<String>,
    updated_at_ms: Option<i64>,
}

fn read_positions(conn: &Connection, namespace: &str) -> Result<Vec<PositionRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT category, consumer_id, position, group_member, group_size, correlation, updated_at,
                consumer_key
           FROM evento_consumer_positions WHERE namespace = ?1
          ORDER BY category, consumer_id",
    )?;
    let rows = stmt.query_map([namespace], |r| {
        let member: Option<i64> = r.get(3)?;
        let size: Option<i64> = r.get(4)?;
        Ok(PositionRow {
            consumer_key: Some(r.get(7)?),
            category: r.get(0)?,
            consumer_id: r.get(1)?,
            position: r.get(2)?,
            group: match size {
                Some(s) if s > 0 => ConsumerGroup::new(member.unwrap_or(0), s).ok(),
                _ => None,
            },
            correlation: r.get(5)?,
            updated_at_ms: Some(r.get(6)?),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Dead letters per (source, category, consumer id): (count, requeued).
type DeadLetterCounts = HashMap<(String, Option<String>, Option<String>), (u64, u64)>;

fn read_dead_letters(conn: &Connection, namespace: &str) -> Result<DeadLetterCounts> {
    let mut stmt = conn.prepare_cached(
        "SELECT source, category, consumer_id, COUNT(*), COUNT(requeued_at)
           FROM evento_dead_letters WHERE namespace = ?1
          GROUP BY source, category, consumer_id",
    )?;
    let rows = stmt.query_map(params![namespace], |r| {
        Ok((
            (r.get(0)?, r.get(1)?, r.get(2)?),
            (
                r.get::<_, i64>(3)?.max(0) as u64,
                r.get::<_, i64>(4)?.max(0) as u64,
            ),
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Counts a consumer's lag with one `category.get` from `position + 1`.
pub(crate) fn count_lag(
    store: &dyn MessageStore,
    category: &str,
    position: i64,
    group: Option<ConsumerGroup>,
    correlation: Option<&str>,
    limit: u32,
    now: SystemTime,
) -> Result<ConsumerLag> {
    let mut query = CategoryQuery::new()
        .position(position.saturating_add(1).max(1))
        .batch_size(i64::from(limit.max(1)));
    query.consumer_group = group;
    query.correlation = correlation.map(str::to_string);
    let ahead = store.get_category(category, &query)?;
    let oldest = ahead.first().map(|m| m.time);
    Ok(ConsumerLag {
        messages: ahead.len() as u64,
        at_least: ahead.len() as u64 >= u64::from(limit.max(1)),
        oldest_unprocessed_at: oldest,
        seconds: oldest.map_or(Duration::ZERO, |t| {
            now.duration_since(t).unwrap_or_default()
        }),
        head_position: ahead.last().map(|m| m.global_position),
    })
}

/// The live senders' figures, added up.
fn sender_metrics(senders: &[Arc<SenderShared>]) -> Option<SenderMetrics> {
    if senders.is_empty() {
        return None;
    }
    let mut m = SenderMetrics {
        senders: senders.len(),
        running: false,
        active: false,
        sent: 0,
        already_delivered: 0,
        retried: 0,
        dead_lettered: 0,
        latency: Histogram::merged_summary(senders.iter().map(|s| &s.counters.latency)),
        throughput: 0.0,
        last_success: None,
        last_error: None,
        last_error_at: None,
        pause: None,
    };
    for s in senders {
        let c = &s.counters;
        let (sent, already, retried, dead) = c.counts();
        m.sent += sent;
        m.already_delivered += already;
        m.retried += retried;
        m.dead_lettered += dead;
        m.throughput += c.rate.rate(Duration::from_secs(10));
        m.running |= c.running.load(Ordering::Acquire);
        m.active |= c.active.load(Ordering::Acquire);
        let health = c.health();
        m.last_success = m.last_success.max(health.last_success);
        if health.last_error_at > m.last_error_at {
            m.last_error_at = health.last_error_at;
            m.last_error = health.last_error;
        }
        if health.active && health.pause.is_some() {
            m.pause = health.pause;
        }
    }
    Some(m)
}

fn live_metrics(shared: &crate::consumer::ConsumerShared) -> LiveConsumerMetrics {
    let stats = shared.stats();
    let runs = stats.processed + stats.failed_attempts;
    let ratio = |n: u64| (runs > 0).then(|| n as f64 / runs as f64);
    LiveConsumerMetrics {
        health: shared.health(),
        processed: stats.processed,
        duplicates_skipped: stats.duplicates_skipped,
        filtered: stats.filtered,
        failed_attempts: stats.failed_attempts,
        retried: stats.retried,
        dead_lettered: stats.dead_lettered,
        processed_per_second: stats.processed_per_second,
        handler_time: stats.handler_time,
        success_rate: ratio(stats.processed),
        retry_rate: ratio(stats.retried),
    }
}

impl Kit {
    /// A snapshot of the namespace: the outbox, every consumer with a saved
    /// position, the dead letters, and the live figures of the senders and
    /// consumers this kit (or a clone) spawned.
    ///
    /// It works with nothing running — a command-line tool opening the
    /// database and the store sees backlogs, positions, lags and stalls from
    /// what is persisted — and adds latencies, rates and health for the
    /// components alive in this process.
    ///
    /// # What each figure means
    ///
    /// * **Outbox backlog** — rows neither sent nor dead-lettered; the
    ///   oldest one's age is now minus its write time.
    /// * **Consumer lag** — one `category.get` from the consumer's
    ///   position + 1 with its saved consumer group and correlation filter, of at most
    ///   [`KitBuilder::lag_count_limit`](crate::KitBuilder::lag_count_limit)
    ///   messages: `messages` is how many came back (`at_least` when the
    ///   limit was hit), `seconds` is the age of the first of them (the
    ///   oldest message the consumer has not handled yet; zero when caught
    ///   up). Messages its type or metadata filters will pass over count
    ///   too: the consumer still has to move past them.
    /// * **Last progress** — when the position last moved (saved with it).
    /// * **Stalled** — lag above zero (or the consumer halted) and no
    ///   progress for [`KitBuilder::stalled_after`](crate::KitBuilder::stalled_after).
    /// * **Sender and handler latencies, rates** — since the live component
    ///   was spawned; `None` (`outbox.sender`, `consumer.live`) for
    ///   components not running in this kit.
    ///
    /// # Cost
    ///
    /// A few indexed queries on the database, plus one `category.get` per
    /// consumer (an HTTP request with an [`HttpStore`](crate::HttpStore)),
    /// reading up to the lag count limit of messages when it lags. If the
    /// store fails, the remaining lags are not attempted: they are `None`
    /// and [`Metrics::store_error`] says why — the snapshot still succeeds,
    /// so it works offline.
    ///
    /// ```
    /// use std::time::Duration;
    /// use eventodb_kit::{Kit, MessageStore, NewMessage, WriteOptions};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let kit = Kit::builder().database(dir.path().join("app.db")).build()?;
    /// let consumer = kit.consumer("order", "audit").spawn(|_msg, _tx| Ok(()))?;
    /// let w = kit.store().write("order-1", &NewMessage::new("Placed", serde_json::json!({})), &WriteOptions::new())?;
    /// consumer.wait_for_position(w.global_position, Duration::from_secs(10))?;
    ///
    /// let m = kit.metrics()?;
    /// let audit = m.consumer("order", "audit").unwrap();
    /// assert_eq!(audit.position, w.global_position);
    /// assert_eq!(audit.lag.as_ref().unwrap().messages, 0);
    /// assert!(!audit.stalled);
    /// assert_eq!(audit.live.as_ref().unwrap().processed, 1);
    /// println!("{}", serde_json::to_string_pretty(&m)?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn metrics(&self) -> Result<Metrics> {
        let namespace = self.namespace().to_string();
        let now = SystemTime::now();
        let outbox = self.outbox();
        let status = outbox.status()?;
        let lease_metrics = |l: LeaseInfo| {
            let held = l.is_held_at(now);
            LeaseMetrics {
                held,
                holder: l.holder,
                fencing_token: l.fencing_token,
                expires_at: l.expires_at,
                // A holder that died while paused left its pause behind.
                pause: l.pause.filter(|_| held),
            }
        };
        let lease = outbox.sender_lease()?.map(lease_metrics);
        let (rows, dead, consumer_leases) = self.db().read(|c| {
            let rows = read_positions(c, &namespace)?;
            let mut leases = HashMap::new();
            for key in rows.iter().filter_map(|r| r.consumer_key) {
                if let Some(l) = lease::read(c, &consumer_lease_name(key))? {
                    leases.insert(key, lease_metrics(l));
                }
            }
            Ok((rows, read_dead_letters(c, &namespace)?, leases))
        })?;
        let live = self.runtime().registry.consumers();
        let settings = self.settings();

        // Every saved position, and live consumers without one (reset while running).
        let mut rows = rows;
        for l in &live {
            if !rows
                .iter()
                .any(|r| r.category == l.category && r.consumer_id == l.consumer_id)
            {
                rows.push(PositionRow {
                    consumer_key: None,
                    category: l.category.clone(),
                    consumer_id: l.consumer_id.clone(),
                    position: l.shared.position(),
                    group: None,
                    correlation: None,
                    updated_at_ms: None,
                });
            }
        }
        rows.sort_by(|a, b| (&a.category, &a.consumer_id).cmp(&(&b.category, &b.consumer_id)));

        let mut store_error: Option<String> = None;
        let mut consumers = Vec::with_capacity(rows.len());
        for row in rows {
            let live = live
                .iter()
                .find(|l| l.category == row.category && l.consumer_id == row.consumer_id)
                .map(|l| (l.shared.position(), live_metrics(&l.shared)));
            let position = live.as_ref().map_or(row.position, |(p, _)| *p);
            let lag = if store_error.is_some() {
                None
            } else {
                match count_lag(
                    self.store().as_ref(),
                    &row.category,
                    position,
                    row.group,
                    row.correlation.as_deref(),
                    settings.lag_count_limit,
                    now,
                ) {
                    Ok(lag) => Some(lag),
                    Err(e) => {
                        store_error = Some(e.to_string());
                        None
                    }
                }
            };
            let last_progress_at = row.updated_at_ms.map(from_ms);
            let idle_too_long = last_progress_at.is_none_or(|t| {
                now.duration_since(t).unwrap_or_default() >= settings.stalled_after
            });
            let halted = live
                .as_ref()
                .is_some_and(|(_, l)| matches!(l.health, ConsumerHealth::Halted { .. }));
            let behind = halted || lag.as_ref().is_some_and(|l| l.messages > 0);
            let (dead_letters, dead_letters_requeued) = dead
                .get(&(
                    "consumer".to_string(),
                    Some(row.category.clone()),
                    Some(row.consumer_id.clone()),
                ))
                .copied()
                .unwrap_or_default();
            consumers.push(ConsumerMetrics {
                category: row.category,
                consumer_id: row.consumer_id,
                consumer_group: row.group,
                correlation: row.correlation,
                position,
                last_progress_at,
                lag,
                stalled: behind && idle_too_long,
                dead_letters,
                dead_letters_requeued,
                lease: row
                    .consumer_key
                    .and_then(|k| consumer_leases.get(&k).cloned()),
                live: live.map(|(_, l)| l),
            });
        }

        let mut dead_letters = DeadLetterMetrics::default();
        for ((source, _, _), (count, requeued)) in &dead {
            match source.as_str() {
                "outbox" => dead_letters.outbox += count,
                _ => {
                    dead_letters.consumer += count;
                    dead_letters.requeued += requeued;
                }
            }
        }

        Ok(Metrics {
            namespace,
            taken_at: now,
            outbox: OutboxMetrics {
                backlog: status.unsent,
                oldest_unsent_at: status.oldest_unsent_at,
                oldest_unsent_age: status
                    .oldest_unsent_at
                    .map(|t| now.duration_since(t).unwrap_or_default()),
                dead_letters: status.dead_lettered,
                lease,
                sender: sender_metrics(&self.runtime().registry.senders()),
            },
            consumers,
            dead_letters,
            store_error,
        })
    }
}
