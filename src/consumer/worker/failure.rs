//! A failed handler run: a pause while the failure is about the store as a
//! whole (unreachable, token refused — [`Disposition::Pause`]), never using
//! up the message's attempts; otherwise retry with backoff, then — by the
//! failure policy — dead-letter the message (with the position past it, in
//! one transaction) or halt the consumer before it.

use std::time::{Duration, Instant};

use crate::disposition::Disposition;
use crate::dlq::{self, DeadLetterSource, NewDeadLetter};
use crate::error::Result;
use crate::hooks::{ConsumerDeadLetter, HandlerFailed, NextStep};
use crate::message::Message;
use crate::time::now_ms;

use crate::consumer::config::FailurePolicy;
use crate::consumer::handler::Failure;
use crate::consumer::position;
use crate::consumer::stats::FailingMessage;

use super::{Flow, Worker};

/// Retry state of the message at the head of the line.
#[derive(Debug)]
pub(super) struct Retry {
    message_id: String,
    failures: u32,
    first_failed: Instant,
    first_failed_ms: i64,
}

impl Worker {
    /// Tells the hooks about a handler failure.
    fn failed_event(&self, message: &Message, failing: &FailingMessage, next: NextStep) {
        self.hooks.emit(|h| {
            h.on_handler_failed(&HandlerFailed {
                category: &self.key.category,
                consumer_id: &self.key.consumer_id,
                message,
                attempts: failing.attempts,
                error: &failing.error,
                next,
            })
        });
    }

    /// A message the store cannot decode, as a failure of that message.
    pub(super) fn undecodable(&mut self, message: &Message, reason: String) -> Flow {
        let failure = Failure {
            error: format!("the message cannot be decoded: {reason}"),
            disposition: Disposition::DeadLetter,
        };
        loop {
            match self.on_failure(message, failure.clone()) {
                Ok(true) => return Flow::Continue,
                Ok(false) => {}
                Err(flow) => return flow,
            }
        }
    }

    /// A failure about the store as a whole: wait (without using up the
    /// message's attempts), then try the message again.
    fn paused_by(&mut self, message: &Message, failure: &Failure) -> Result<bool, Flow> {
        if self.paused_since.is_none() {
            log::warn!(
                "consumer {:?} pauses at message {} ({}): {}",
                self.key.consumer_id,
                message.id,
                failure.disposition_text(),
                failure.error
            );
        }
        let since = *self.paused_since.get_or_insert_with(Instant::now);
        self.shared.set_store_error(Some(failure.error.clone()));
        // Growing with the outage from 100 ms to 2 s: notice soon that the
        // store is back.
        let delay = (since.elapsed() / 4).clamp(Duration::from_millis(100), Duration::from_secs(2));
        match self.pause(delay) {
            Flow::Continue => Ok(false),
            flow => Err(flow),
        }
    }

    /// A failed attempt at `message`. `Ok(true)`: it was dead-lettered (move
    /// on); `Ok(false)`: retry it now; `Err(flow)`: stop.
    pub(super) fn on_failure(&mut self, message: &Message, failure: Failure) -> Result<bool, Flow> {
        if let Disposition::Pause(_) = failure.disposition {
            return self.paused_by(message, &failure);
        }
        if self.paused_since.take().is_some() {
            self.shared.set_store_error(None);
        }
        self.shared.handler_failed();
        let retry = match &mut self.retry {
            Some(r) if r.message_id == message.id => r,
            slot => slot.insert(Retry {
                message_id: message.id.clone(),
                failures: 0,
                first_failed: Instant::now(),
                first_failed_ms: now_ms(),
            }),
        };
        retry.failures = retry.failures.saturating_add(1);
        let failing = FailingMessage {
            message_id: message.id.clone(),
            global_position: message.global_position,
            attempts: retry.failures,
            error: failure.error.clone(),
        };
        let give_up = (failure.permanent() && !self.config.retry_permanent_errors)
            || self
                .config
                .retry
                .gives_up(retry.failures, retry.first_failed.elapsed());
        if !give_up {
            log::warn!(
                "consumer {:?}: handler failed on message {} (attempt {}): {}",
                self.key.consumer_id,
                message.id,
                retry.failures,
                failure.error
            );
            let delay = self.config.retry.jittered_delay_after(retry.failures);
            self.shared.handler_retried();
            self.failed_event(message, &failing, NextStep::Retry { after: delay });
            self.shared.set_retrying(Some(failing));
            return match self.pause(delay) {
                Flow::Continue => Ok(false),
                flow => Err(flow),
            };
        }
        match self.config.failure_policy {
            FailurePolicy::Stop => {
                log::error!(
                    "consumer {:?} halted at message {} (global position {}): {}",
                    self.key.consumer_id,
                    message.id,
                    message.global_position,
                    failure.error
                );
                self.failed_event(message, &failing, NextStep::Halt);
                self.shared.halt(failing);
                Err(Flow::Exit)
            }
            _ => {
                let first_failed_ms = retry.first_failed_ms;
                self.failed_event(message, &failing, NextStep::DeadLetter);
                let mut db_failures = 0u32;
                loop {
                    match self.dead_letter(message, &failing, first_failed_ms) {
                        Ok(true) => break,
                        Ok(false) => return Err(Flow::LeaseLost),
                        Err(e) => {
                            db_failures = db_failures.saturating_add(1);
                            self.shared.set_db_error(Some(e.to_string()));
                            let delay = self.config.io_retry.jittered_delay_after(db_failures);
                            if self.pause(delay) == Flow::Exit {
                                return Err(Flow::Exit);
                            }
                        }
                    }
                }
                log::warn!(
                    "consumer {:?}: message {} dead-lettered after {} attempts: {}",
                    self.key.consumer_id,
                    message.id,
                    failing.attempts,
                    failing.error
                );
                self.retry = None;
                self.shared.dead_lettered(message.global_position);
                self.hooks.emit(|h| {
                    h.on_consumer_dead_letter(&ConsumerDeadLetter {
                        category: &self.key.category,
                        consumer_id: &self.key.consumer_id,
                        message,
                        attempts: failing.attempts,
                        error: &failing.error,
                    })
                });
                Ok(true)
            }
        }
    }

    /// Records the dead letter and moves the position past it, together
    /// (`false`: not done, another instance holds the lease).
    fn dead_letter(
        &mut self,
        message: &Message,
        failing: &FailingMessage,
        first_ms: i64,
    ) -> Result<bool> {
        let json = dlq::message_to_json(message);
        let db = self.db.clone();
        db.write(|tx| {
            if !self.hold_lease_in(tx)? {
                return Ok(false);
            }
            dlq::record(
                tx,
                &NewDeadLetter {
                    source: DeadLetterSource::Consumer,
                    namespace: &self.key.namespace,
                    message_id: &message.id,
                    stream: &message.stream_name,
                    message_type: &message.message_type,
                    category: Some(&self.key.category),
                    consumer_id: Some(&self.key.consumer_id),
                    message: &json,
                    error: &failing.error,
                    attempts: failing.attempts,
                    first_failed_at_ms: first_ms,
                },
            )?;
            position::advance(tx, self.consumer_key, message.global_position)?;
            Ok(true)
        })
    }
}
