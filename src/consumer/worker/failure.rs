//! A failed handler run: retry with backoff, then — by the failure
//! policy — dead-letter the message (with the position past it, in one
//! transaction) or halt the consumer before it.

use std::time::Instant;

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

    /// A failed attempt at `message`. `Ok(true)`: it was dead-lettered (move
    /// on); `Ok(false)`: retry it now; `Err(flow)`: stop.
    pub(super) fn on_failure(&mut self, message: &Message, failure: Failure) -> Result<bool, Flow> {
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
        let give_up = (failure.permanent && !self.config.retry_permanent_errors)
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
                Flow::Exit => Err(Flow::Exit),
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
                        Ok(()) => break,
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

    /// Records the dead letter and moves the position past it, together.
    fn dead_letter(
        &self,
        message: &Message,
        failing: &FailingMessage,
        first_ms: i64,
    ) -> Result<()> {
        let json = dlq::message_to_json(message);
        self.db.write(|tx| {
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
            position::save(tx, &self.key, message.global_position)
        })
    }
}
