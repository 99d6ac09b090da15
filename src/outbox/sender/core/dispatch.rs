//! Deciding what to send: streams in the commit order of their first
//! waiting row, each on its lane while it has writes in flight (answers
//! come back in the order sent), as many of its rows as its chain and the
//! lane's window allow.

use std::ops::Bound::{Excluded, Unbounded};

use serde_json::Value;

use super::stream::Expectation;
use super::{Core, Effect, Now};
use crate::error::Result;
use crate::message::{NewMessage, WriteOptions};
use crate::outbox::sender::queue::OutboxRow;
use crate::store::WriteItem;

impl Core {
    pub(super) fn dispatch(&mut self, now: Now, out: &mut Vec<Effect>) {
        if !self.active || self.stopping || self.pause.is_some() {
            return;
        }
        self.issue_reconciles(out);
        let mut after: Option<(i64, String)> = None;
        loop {
            if self.lanes.iter().all(|l| !l.window.has_room(0)) {
                break;
            }
            let next = match &after {
                None => self.ready.iter().next(),
                Some(key) => self.ready.range((Excluded(key.clone()), Unbounded)).next(),
            };
            let Some(key) = next.cloned() else {
                break;
            };
            self.send_from(&key.1, now, out);
            after = Some(key);
        }
    }

    /// Sends what `stream` may send now on its lane.
    fn send_from(&mut self, stream: &str, now: Now, out: &mut Vec<Effect>) {
        let Some(st) = self.streams.get(stream) else {
            return;
        };
        let head_bytes = st
            .queue
            .first()
            .and_then(|s| self.rows.get(s))
            .map_or(0, |o| o.bytes);
        let lane = match st.lane {
            Some(lane) => lane,
            None => {
                let free = (0..self.lanes.len())
                    .filter(|&l| self.lanes[l].window.has_room(head_bytes))
                    .min_by_key(|&l| self.lanes[l].window.in_flight());
                match free {
                    Some(lane) => lane,
                    None => return,
                }
            }
        };
        while let Some(st) = self.streams.get(stream) {
            let Some(&seq) = st.queue.first() else {
                break;
            };
            let Some(owned) = self.rows.get(&seq) else {
                break;
            };
            let Some(expectation) = st.next_expectation(owned.row.expected_version) else {
                break;
            };
            if !self.lanes[lane].window.has_room(owned.bytes) {
                break;
            }
            let item = match write_item(&owned.row, expectation) {
                Ok(item) => item,
                Err(e) => {
                    // The row's JSON no longer parses (edited by hand):
                    // nothing will ever send it.
                    let error = format!("the outbox row cannot be read: {e}");
                    self.dead_letter(seq, error, now);
                    continue;
                }
            };
            let tag = self.next_tag;
            self.next_tag += 1;
            self.tags.insert(tag, seq);
            let bytes = owned.bytes;
            let known = self.streams.get(stream).and_then(|st| st.version_hint());
            if let Some(owned) = self.rows.get_mut(&seq) {
                owned.flight = Some((tag, lane, expectation));
                owned.floor = owned.floor.sent(known);
            }
            self.lanes[lane].window.sent(bytes);
            if let Some(st) = self.streams.get_mut(stream) {
                st.sent(seq, lane, expectation);
            }
            out.push(Effect::Send { lane, tag, item });
        }
        self.touch(stream);
    }
}

/// The write of `row` with `expectation`.
fn write_item(row: &OutboxRow, expectation: Expectation) -> Result<WriteItem> {
    let data: Value = serde_json::from_str(&row.data)?;
    let mut message = NewMessage::new(row.message_type.clone(), data);
    if let Some(metadata) = &row.metadata {
        message = message.with_metadata(serde_json::from_str(metadata)?);
    }
    let mut options = WriteOptions::new().id(row.id.clone());
    if let Some(v) = expectation.version {
        options = options.expected_version(v);
    }
    Ok(WriteItem::new(row.stream.clone(), message, options))
}
