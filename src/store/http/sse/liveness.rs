//! Telling a quiet event stream from a dead one.
//!
//! EventoDB sends nothing on an idle `/subscribe` stream, so silence alone
//! says nothing: a healthy connection is silent whenever nothing is
//! written. What tells a half-open connection (the peer or a middlebox
//! forgot it: NAT timeout, Wi-Fi handover, a proxy whose upstream died)
//! from a quiet healthy one is one of two things:
//!
//! 1. **The path is gone**: TCP keepalive on the socket makes the operating
//!    system probe a quiet connection and end it (the read fails) when the
//!    peer stops answering. This needs no request and also keeps NAT
//!    mappings alive.
//! 2. **The stream missed something**: a write the subscription should have
//!    been poked about exists in the store, yet no poke came. Only the store
//!    knows; so after `silence_timeout` without a byte the kit asks it, over
//!    a fresh RPC connection, for the first message at the position the
//!    subscription would resume from ([`Prober::first_unpoked`]). Nothing
//!    there: the connection is quiet and stays. A message there: its poke
//!    may still be in flight, so the connection gets a short grace; nothing
//!    arriving by then means it is dead. A probe that fails means the store
//!    is unreachable, and the connection is treated as dead too.
//!
//! Any byte that arrives proves the connection alive. An `all=true` stream
//! (the watch hub) is not replayed, so what it should hear of starts after
//! the namespace's head as of its connection: looked up ([`Prober::head`])
//! as each connection begins, before it counts as connected (or at its
//! first silence if that failed), and moved on by every poke.

use std::time::Duration;

use serde_json::Value;
use ureq::Agent;

use super::super::client::{post_rpc, AgentSettings, CallContext};
use crate::error::Result;
use crate::store::{CategoryQuery, StreamQuery, SubscribeTarget};
use crate::wire::rpc;

/// How long a stream may be silent before it is checked, and how long a
/// poke found missing may still take.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Silence {
    pub(crate) timeout: Duration,
    pub(crate) grace: Duration,
}

impl Silence {
    /// `timeout` with its default grace: a quarter of it, at most 3 s.
    pub(crate) fn new(timeout: Duration) -> Self {
        Silence {
            timeout,
            grace: (timeout / 4).min(Duration::from_secs(3)),
        }
    }
}

/// Most `category.get` calls of one head lookup.
const HEAD_WALK_CALLS: usize = 10;

/// Asks the store what a subscription should have heard of.
#[derive(Clone)]
pub(crate) struct Prober {
    pub(crate) rpc_url: String,
    pub(crate) authorization: String,
    pub(crate) settings: AgentSettings,
    pub(crate) namespace: String,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober")
            .field("rpc_url", &self.rpc_url)
            .finish_non_exhaustive()
    }
}

impl Prober {
    fn call(&self, agent: &Agent, method: &str, args: Vec<Value>) -> Result<Value> {
        post_rpc(
            agent,
            &self.rpc_url,
            &self.authorization,
            method,
            args,
            CallContext::default(),
        )
    }

    /// The position (in `target`'s terms: stream position for a stream,
    /// global position otherwise) of the first message at or after the
    /// position `target` resumes from, if any.
    pub(crate) fn first_unpoked(
        &self,
        agent: &Agent,
        target: &SubscribeTarget,
    ) -> Result<Option<i64>> {
        match target {
            SubscribeTarget::Stream { stream, position } => {
                let query = StreamQuery::new().position(*position).batch_size(1);
                let args = rpc::stream_get_args(stream, &query);
                let messages =
                    rpc::decode_messages(&self.call(agent, "stream.get", args)?, Some(stream))?;
                Ok(messages.first().map(|m| m.position))
            }
            SubscribeTarget::Category {
                category,
                position,
                consumer_group,
            } => {
                let mut query = CategoryQuery::new().position(*position).batch_size(1);
                query.consumer_group = *consumer_group;
                let args = rpc::category_get_args(category, &query);
                let messages =
                    rpc::decode_messages(&self.call(agent, "category.get", args)?, None)?;
                Ok(messages.first().map(|m| m.global_position))
            }
            SubscribeTarget::All { position } => {
                let query = CategoryQuery::new().position(*position).batch_size(1);
                let args = rpc::category_get_args("", &query);
                let messages =
                    rpc::decode_messages(&self.call(agent, "category.get", args)?, None)?;
                Ok(messages.first().map(|m| m.global_position))
            }
        }
    }

    /// The namespace's last global position (0 when empty): from its
    /// message count (positions start at 1 without gaps, so the head is at
    /// least the count), then walking forward past whatever is beyond.
    pub(crate) fn head(&self, agent: &Agent, known: i64) -> Result<i64> {
        let count = self
            .call(agent, "ns.info", vec![self.namespace.as_str().into()])
            .ok()
            .and_then(|v| rpc::decode_namespace_info(&v).ok())
            .map_or(0, |info| info.message_count);
        let mut head = count.max(known).max(0);
        for _ in 0..HEAD_WALK_CALLS {
            let query = CategoryQuery::new().position(head + 1).batch_size(1000);
            let args = rpc::category_get_args("", &query);
            let messages = rpc::decode_messages(&self.call(agent, "category.get", args)?, None)?;
            match messages.last() {
                Some(m) => head = m.global_position,
                None => break,
            }
        }
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ConsumerGroup;

    /// The probes' reads are built by the same functions as the store's
    /// reads, and ask exactly what they did when they were built by hand.
    #[test]
    fn probe_arguments_are_the_reads_of_one_message() {
        let stream = StreamQuery::new().position(7).batch_size(1);
        assert_eq!(
            rpc::stream_get_args("a-1", &stream),
            [json!("a-1"), json!({"position": 7, "batchSize": 1})]
        );
        let mut category = CategoryQuery::new().position(12).batch_size(1);
        assert_eq!(
            rpc::category_get_args("a", &category),
            [json!("a"), json!({"position": 12, "batchSize": 1})]
        );
        category.consumer_group = Some(ConsumerGroup::new(1, 3).unwrap());
        assert_eq!(
            rpc::category_get_args("a", &category),
            [
                json!("a"),
                json!({"position": 12, "batchSize": 1, "consumerGroup": {"member": 1, "size": 3}})
            ]
        );
        let walk = CategoryQuery::new().position(101).batch_size(1000);
        assert_eq!(
            rpc::category_get_args("", &walk),
            [json!(""), json!({"position": 101, "batchSize": 1000})]
        );
    }
}
