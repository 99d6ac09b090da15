//! Re-delivering a range of a category to one consumer:
//! [`Checkpoints::plan_replay_range`], [`Checkpoints::apply_replay_range`]
//! and [`Checkpoints::replay_range`].
//!
//! The consumer's position moves back to just before the range and its
//! processed records of the range are deleted; its records after the range
//! stay, so when it runs again its handler runs on the range and skips the
//! later messages it had already handled.

use rusqlite::params;

use crate::consumer_group::ConsumerGroup;
use crate::error::{Error, Result};
use crate::store::{CategoryQuery, MAX_BATCH_SIZE};

use super::position::{key_of, load, ConsumerKey};
use super::processed;
use super::Checkpoints;

/// Most messages after the range that a plan reads from the store to find
/// the ones without a processed record.
const CHECK_LIMIT: u64 = 100_000;

/// What [`Checkpoints::replay_range`] does to a consumer, worked out before
/// anything changes (see [`Checkpoints::plan_replay_range`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplayRangePlan {
    /// The category the consumer follows.
    pub category: String,
    /// The consumer's id.
    pub consumer_id: String,
    /// First global position of the range (inclusive).
    pub from_position: i64,
    /// Last global position of the range (inclusive); `None`: to the end.
    pub to_position: Option<i64>,
    /// The consumer group saved with the position, if any.
    pub consumer_group: Option<ConsumerGroup>,
    /// The consumer's position now.
    pub current_position: i64,
    /// Its position afterwards: `from_position - 1`.
    pub new_position: i64,
    /// Processed records of the range, deleted: these messages are handled
    /// again.
    pub forgotten_records: u64,
    /// Processed records after the range (up to the current position),
    /// kept: these messages are skipped.
    pub kept_records: u64,
    /// Messages of the category (of the consumer's share, in a group) after
    /// the range up to `checked_through` that have no processed record. The
    /// consumer passed them over (type or metadata filters), dead-lettered
    /// them, or retention pruned their records; they are delivered again,
    /// and those with pruned records or dead letters run the handler again.
    pub unrecorded_after_range: u64,
    /// Of those, messages this consumer dead-lettered (still in the
    /// dead-letter table).
    pub dead_letters_after_range: u64,
    /// Global position up to which messages after the range were checked
    /// against the records (at most 100 000 messages are read); equal to
    /// `current_position` when every one was, or when there is nothing
    /// after the range.
    pub checked_through: i64,
}

impl ReplayRangePlan {
    /// Whether messages after the range may run the handler again: some
    /// have no processed record, or not all of them were checked.
    pub fn may_rerun_after_range(&self) -> bool {
        self.unrecorded_after_range > 0 || !self.checked_completely()
    }

    /// Whether every message after the range up to the current position
    /// was checked.
    pub fn checked_completely(&self) -> bool {
        self.checked_through >= self.current_position
    }
}

impl Checkpoints {
    /// Works out what [`Checkpoints::replay_range`] would do, changing
    /// nothing: the positions, how many processed records are forgotten and
    /// kept, and how many later messages have no record (those are
    /// delivered again too; see [`ReplayRangePlan::unrecorded_after_range`]).
    /// Reads the category after the range from the store (at most 100 000
    /// messages).
    ///
    /// Errors: [`Error::NotFound`] when the consumer has no position (it
    /// never ran); [`Error::InvalidInput`] for `from_position < 1`, `to`
    /// before `from`, or a range the consumer has not reached yet.
    pub fn plan_replay_range(
        &self,
        category: &str,
        consumer_id: &str,
        from_position: i64,
        to_position: Option<i64>,
    ) -> Result<ReplayRangePlan> {
        if from_position < 1 {
            return Err(Error::invalid(
                "a replay range starts at global position 1 or later",
            ));
        }
        if to_position.is_some_and(|to| to < from_position) {
            return Err(Error::invalid(format!(
                "the replay range ends ({}) before it starts ({from_position})",
                to_position.unwrap_or_default()
            )));
        }
        let key = self.key(category, consumer_id);
        let Some(checkpoint) = self.kit.db().read(|c| load(c, &key))? else {
            return Err(Error::NotFound(format!(
                "position of consumer {consumer_id:?} of category {category:?} (it never ran)"
            )));
        };
        let current = checkpoint.position;
        if from_position > current {
            return Err(Error::invalid(format!(
                "consumer {consumer_id:?} of category {category:?} is at global position {current}; \
                 nothing from {from_position} on has been delivered to it yet, so there is nothing to replay"
            )));
        }
        let range_end = to_position.unwrap_or(i64::MAX);
        let (forgotten, kept) = self.kit.db().read(|c| {
            let consumer_key = key_of(c, &key)?;
            let count = |lo: i64, hi: i64| -> Result<u64> {
                match consumer_key {
                    Some(k) => processed::count_between(c, k, lo, hi),
                    None => Ok(0),
                }
            };
            let kept = if range_end < current {
                count(range_end + 1, current)?
            } else {
                0
            };
            Ok((count(from_position, range_end)?, kept))
        })?;
        let mut plan = ReplayRangePlan {
            category: category.to_string(),
            consumer_id: consumer_id.to_string(),
            from_position,
            to_position,
            consumer_group: checkpoint.consumer_group,
            current_position: current,
            new_position: from_position - 1,
            forgotten_records: forgotten,
            kept_records: kept,
            unrecorded_after_range: 0,
            dead_letters_after_range: 0,
            checked_through: current,
        };
        if range_end < current {
            self.check_after_range(&key, &mut plan, range_end)?;
        }
        Ok(plan)
    }

    /// Counts the messages in (range_end, current] that have no processed
    /// record, and this consumer's dead letters among them.
    fn check_after_range(
        &self,
        key: &ConsumerKey,
        plan: &mut ReplayRangePlan,
        range_end: i64,
    ) -> Result<()> {
        let store = self.kit.store();
        let current = plan.current_position;
        let mut next = range_end + 1;
        let mut messages = 0u64;
        let mut checked_through = range_end;
        loop {
            if next > current {
                checked_through = current;
                break;
            }
            if messages >= CHECK_LIMIT {
                break;
            }
            let mut query = CategoryQuery::new()
                .position(next)
                .batch_size(MAX_BATCH_SIZE);
            query.consumer_group = plan.consumer_group;
            let batch = store.get_category(&plan.category, &query)?;
            let Some(last) = batch.last() else {
                checked_through = current;
                break;
            };
            let within = batch
                .iter()
                .take_while(|m| m.global_position <= current)
                .count();
            messages += within as u64;
            if within < batch.len() || (batch.len() as i64) < MAX_BATCH_SIZE {
                checked_through = current;
                break;
            }
            checked_through = last.global_position;
            next = last.global_position + 1;
        }
        plan.checked_through = checked_through;
        let (recorded, dead): (i64, i64) = self.kit.db().read(|c| {
            let recorded = match key_of(c, key)? {
                Some(k) => processed::count_between(c, k, range_end + 1, checked_through)? as i64,
                None => 0,
            };
            let dead = c.query_row(
                "SELECT COUNT(*) FROM evento_dead_letters
                 WHERE source = 'consumer' AND namespace = ?1 AND category = ?2 AND consumer_id = ?3
                   AND CAST(json_extract(message, '$.globalPosition') AS INTEGER) BETWEEN ?4 AND ?5",
                params![
                    key.namespace,
                    key.category,
                    key.consumer_id,
                    range_end + 1,
                    checked_through
                ],
                |r| r.get(0),
            )?;
            Ok((recorded, dead))
        })?;
        plan.unrecorded_after_range = messages.saturating_sub(recorded.max(0) as u64);
        plan.dead_letters_after_range = (dead.max(0) as u64).min(plan.unrecorded_after_range);
        Ok(())
    }

    /// Carries out `plan`: moves the consumer's position to
    /// `plan.new_position` and deletes its processed records of the range,
    /// in one transaction. Returns how many records were deleted.
    ///
    /// Run it while the consumer is stopped. Errors:
    /// [`Error::InvalidInput`] when the position is no longer
    /// `plan.current_position` (the consumer ran meanwhile — stop it and
    /// plan again); [`Error::NotFound`] when the position is gone.
    pub fn apply_replay_range(&self, plan: &ReplayRangePlan) -> Result<u64> {
        let key = self.key(&plan.category, &plan.consumer_id);
        self.kit.db().write(|tx| {
            let Some(now) = load(tx, &key)? else {
                return Err(Error::NotFound(format!(
                    "position of consumer {:?} of category {:?}",
                    plan.consumer_id, plan.category
                )));
            };
            if now.position != plan.current_position {
                return Err(Error::invalid(format!(
                    "consumer {:?} of category {:?} moved from global position {} to {} since the replay \
                     was planned; it is probably running: stop it, then replay again",
                    plan.consumer_id, plan.category, plan.current_position, now.position
                )));
            }
            let deleted = match key_of(tx, &key)? {
                Some(k) => processed::forget_between(
                    tx,
                    k,
                    plan.from_position,
                    plan.to_position.unwrap_or(i64::MAX),
                )?,
                None => 0,
            };
            tx.execute(
                "UPDATE evento_consumer_positions SET position = ?4, updated_at = ?5
                 WHERE namespace = ?1 AND category = ?2 AND consumer_id = ?3",
                params![
                    key.namespace,
                    key.category,
                    key.consumer_id,
                    plan.new_position,
                    crate::time::now_ms()
                ],
            )?;
            Ok(deleted as u64)
        })
    }

    /// Re-delivers global positions `from_position..=to_position` of
    /// `category` (to the end when `to_position` is `None`) to consumer
    /// `consumer_id`: its position moves back to `from_position - 1` and its
    /// processed records of the range are deleted, so its next run handles
    /// the range again and skips the later messages it had already handled
    /// (their records stay). The saved consumer group is kept.
    ///
    /// Messages after the range whose records are gone (pruned by
    /// [retention](super::ConsumerBuilder::processed_retention)) or that the
    /// consumer dead-lettered run the handler again too; the returned plan
    /// counts them ([`ReplayRangePlan::unrecorded_after_range`]). Use
    /// [`Checkpoints::plan_replay_range`] to look first.
    ///
    /// Run it while the consumer is stopped.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    /// use eventodb_kit::{Kit, MessageStore, NewMessage, WriteOptions};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let kit = Kit::builder().database(dir.path().join("app.db")).build()?;
    /// for n in 1..=6 {
    ///     kit.store().write("order-1", &NewMessage::new("Placed", serde_json::json!({ "n": n })), &WriteOptions::new())?;
    /// }
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let run = |kit: &Kit| -> eventodb_kit::Result<()> {
    ///     let seen = Arc::clone(&seen);
    ///     let consumer = kit.consumer("order", "audit").spawn(move |msg, _tx| {
    ///         seen.lock().unwrap().push(msg.global_position);
    ///         Ok(())
    ///     })?;
    ///     consumer.wait_for_position(6, Duration::from_secs(10))?;
    ///     consumer.shutdown();
    ///     Ok(())
    /// };
    /// run(&kit)?;
    /// let plan = kit.checkpoints().replay_range("order", "audit", 2, Some(3))?;
    /// assert_eq!((plan.new_position, plan.forgotten_records, plan.kept_records), (1, 2, 3));
    /// run(&kit)?;
    /// assert_eq!(*seen.lock().unwrap(), [1, 2, 3, 4, 5, 6, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn replay_range(
        &self,
        category: &str,
        consumer_id: &str,
        from_position: i64,
        to_position: Option<i64>,
    ) -> Result<ReplayRangePlan> {
        let plan = self.plan_replay_range(category, consumer_id, from_position, to_position)?;
        self.apply_replay_range(&plan)?;
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use crate::kit::Kit;
    use crate::message::{NewMessage, WriteOptions};
    use crate::Error;

    fn kit_with_messages(dir: &tempfile::TempDir, n: usize) -> Kit {
        let kit = Kit::builder()
            .database(dir.path().join("app.db"))
            .build()
            .unwrap();
        for i in 0..n {
            kit.store()
                .write(
                    &format!("order-{}", i % 3),
                    &NewMessage::new("Placed", serde_json::json!({ "n": i })),
                    &WriteOptions::new(),
                )
                .unwrap();
        }
        kit
    }

    /// Runs consumer "audit" until it reaches `until`; returns the handled positions.
    fn run(kit: &Kit, until: i64) -> Vec<i64> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let consumer = kit
            .consumer("order", "audit")
            .spawn(move |msg, _tx| {
                sink.lock().unwrap().push(msg.global_position);
                Ok(())
            })
            .unwrap();
        consumer
            .wait_for_position(until, Duration::from_secs(10))
            .unwrap();
        consumer.shutdown();
        let seen = seen.lock().unwrap().clone();
        seen
    }

    #[test]
    fn pruned_records_after_the_range_are_counted_and_rerun() {
        let dir = tempfile::tempdir().unwrap();
        let kit = kit_with_messages(&dir, 10);
        assert_eq!(run(&kit, 10).len(), 10);
        let checkpoints = kit.checkpoints();
        let plan = checkpoints
            .plan_replay_range("order", "audit", 3, Some(5))
            .unwrap();
        assert_eq!(
            (
                plan.forgotten_records,
                plan.kept_records,
                plan.unrecorded_after_range
            ),
            (3, 5, 0)
        );
        assert!(!plan.may_rerun_after_range());
        // Retention prunes every record: the messages after the range have
        // nothing to be skipped by any more.
        checkpoints
            .delete_processed_older_than(Duration::ZERO)
            .unwrap();
        let plan = checkpoints
            .replay_range("order", "audit", 3, Some(5))
            .unwrap();
        assert_eq!((plan.forgotten_records, plan.kept_records), (0, 0));
        assert_eq!(plan.unrecorded_after_range, 5);
        assert!(plan.may_rerun_after_range() && plan.checked_completely());
        assert_eq!(run(&kit, 10), [3, 4, 5, 6, 7, 8, 9, 10]);
    }

    #[test]
    fn refuses_ranges_not_reached_and_positions_that_moved() {
        let dir = tempfile::tempdir().unwrap();
        let kit = kit_with_messages(&dir, 4);
        let checkpoints = kit.checkpoints();
        assert!(matches!(
            checkpoints.plan_replay_range("order", "audit", 1, None),
            Err(Error::NotFound(_))
        ));
        run(&kit, 4);
        for (from, to) in [(5, None), (0, None), (3, Some(2))] {
            assert!(matches!(
                checkpoints.plan_replay_range("order", "audit", from, to),
                Err(Error::InvalidInput(_))
            ));
        }
        let plan = checkpoints
            .plan_replay_range("order", "audit", 2, None)
            .unwrap();
        assert_eq!((plan.new_position, plan.forgotten_records), (1, 3));
        checkpoints.set("order", "audit", 3).unwrap();
        let err = checkpoints.apply_replay_range(&plan).unwrap_err();
        assert!(err.to_string().contains("stop it"), "{err}");
        assert_eq!(
            checkpoints.get("order", "audit").unwrap().unwrap().position,
            3
        );
    }
}
