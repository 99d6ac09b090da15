//! The model's store (EventoDB's version-then-id checks) and lanes
//! (writes processed in order, answers in order, answers lost when a
//! connection breaks, 500s before and after processing).

use super::super::{Event, Reconciliation, TailRead};
use crate::error::{Error, Result};
use crate::message::WriteResult;
use crate::store::WriteItem;

use super::sim::{refused, reset, Check, Sim, Stored, STREAMS};

impl Sim {
    // ----- the store and the lanes -----

    pub(super) fn store_write(&mut self, item: &WriteItem) -> Result<WriteResult> {
        if item.message.message_type() == "Invalid" {
            return Err(Error::InvalidInput("message.data must be an object".into()));
        }
        let messages = self.store.entry(item.stream.clone()).or_default();
        let version = messages.len() as i64 - 1;
        if let Some(expected) = item.options.expected_version {
            if expected != version {
                return Err(Error::Conflict {
                    stream: item.stream.clone(),
                    expected,
                    actual: Some(version),
                });
            }
        }
        let id = item.options.id.clone().unwrap();
        if !self.ids.insert(id.clone()) {
            return Err(Error::DuplicateId { id });
        }
        let shown = id.rsplit('-').next().unwrap_or("").to_string();
        messages.push(Stored {
            id,
            message_type: item.message.message_type().to_string(),
        });
        if std::env::var_os("MODEL_TRACE").is_some() {
            eprintln!("  store: {} {shown} at {}", item.stream, version + 1);
        }
        Ok(WriteResult {
            position: version + 1,
            global_position: 0,
        })
    }

    /// The store takes the next request of a lane.
    pub(super) fn process(&mut self, lane: usize) {
        let Some((tag, item)) = self.lanes[lane].requests.pop_front() else {
            return;
        };
        if self.store_down {
            // Connecting fails: this write and every one queued.
            let mut failed = vec![(tag, item)];
            failed.extend(self.lanes[lane].requests.drain(..));
            for (tag, _) in failed {
                self.lanes[lane].answers.push_back((tag, Err(refused())));
            }
            return;
        }
        let result = if self.auth_refused {
            Err(Error::Auth {
                status: 403,
                code: "AUTH_UNAUTHORIZED".into(),
                message: "Token not authorized for namespace".into(),
            })
        } else {
            match self.rng.u8(..100) {
                0..=2 => Err(Error::backend("database is locked (before)")),
                3..=5 => {
                    let _ = self.store_write(&item);
                    Err(Error::backend("answer lost (after)"))
                }
                _ => self.store_write(&item),
            }
        };
        self.lanes[lane].answers.push_back((tag, result));
    }

    /// The lane's connection breaks: answers not delivered are lost, the
    /// writes on the wire fail; the ones not yet written go on a new
    /// connection.
    pub(super) fn break_connection(&mut self, lane: usize) {
        for answer in self.lanes[lane].answers.iter_mut() {
            answer.1 = Err(reset());
        }
        let on_wire = self.rng.usize(..=self.lanes[lane].requests.len());
        for _ in 0..on_wire {
            let (tag, item) = self.lanes[lane].requests.pop_front().unwrap();
            // Some of them reached the store before the break.
            if self.rng.bool() && !self.store_down && !self.auth_refused {
                let _ = self.store_write(&item);
            }
            self.lanes[lane].answers.push_back((tag, Err(reset())));
        }
    }

    pub(super) fn deliver(&mut self, lane: usize) {
        let Some((tag, result)) = self.lanes[lane].answers.pop_front() else {
            return;
        };
        self.in_flight_tags.remove(&tag);
        self.feed(Event::Answer { tag, result });
    }

    pub(super) fn check(&mut self) {
        let Some(check) = self.checks.pop_front() else {
            return;
        };
        let failure = if self.store_down {
            Some(refused())
        } else if self.auth_refused {
            Some(Error::Auth {
                status: 401,
                code: "AUTH_REQUIRED".into(),
                message: "x".into(),
            })
        } else if self.rng.u8(..100) < 5 {
            // The read's connection broke.
            Some(reset())
        } else {
            None
        };
        match check {
            Check::Probe => self.feed(Event::Probed {
                result: failure.map_or(Ok(()), Err),
            }),
            Check::Reconcile {
                stream,
                read,
                tail,
                ids,
            } => {
                let result = match failure {
                    Some(e) => Err(e),
                    None => {
                        let messages = self.store.get(&stream).cloned().unwrap_or_default();
                        let from = match tail {
                            TailRead::After(after) => {
                                assert!(
                                    after < messages.len() as i64,
                                    "a read of {stream} after {after}, a position it never had"
                                );
                                (after + 1) as usize
                            }
                            TailRead::Last { lookback, .. } => {
                                messages.len().saturating_sub(lookback)
                            }
                            TailRead::Whole => 0,
                        };
                        Ok(Reconciliation {
                            version: (!messages.is_empty()).then(|| messages.len() as i64 - 1),
                            messages: messages
                                .iter()
                                .enumerate()
                                .skip(from)
                                .map(|(i, m)| {
                                    (
                                        m.id.to_ascii_lowercase(),
                                        (m.message_type.clone(), i as i64),
                                    )
                                })
                                .filter(|(id, _)| ids.is_empty() || ids.contains(id))
                                .collect(),
                        })
                    }
                };
                self.feed(Event::Reconciled {
                    stream,
                    read,
                    result,
                });
            }
        }
    }

    pub(super) fn foreign_write(&mut self) {
        let stream = STREAMS[self.rng.usize(..STREAMS.len())];
        self.foreign += 1;
        let id = format!("f0000000-0000-4000-8000-{:012}", self.foreign);
        self.ids.insert(id.clone());
        self.store
            .entry(stream.to_string())
            .or_default()
            .push(Stored {
                id,
                message_type: "Foreign".into(),
            });
    }
}
