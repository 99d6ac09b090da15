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

use serde_json::{json, Value};
use ureq::Agent;

use super::super::client::{post_rpc, AgentSettings, CallContext};
use crate::error::Result;
use crate::store::SubscribeTarget;
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
                let args = vec![
                    stream.as_str().into(),
                    json!({"position": position, "batchSize": 1}),
                ];
                let messages =
                    rpc::decode_messages(&self.call(agent, "stream.get", args)?, Some(stream))?;
                Ok(messages.first().map(|m| m.position))
            }
            SubscribeTarget::Category {
                category,
                position,
                consumer_group,
            } => {
                let mut options = json!({"position": position, "batchSize": 1});
                if let Some(g) = consumer_group {
                    options["consumerGroup"] = json!({"member": g.member(), "size": g.size()});
                }
                let args = vec![category.as_str().into(), options];
                let messages =
                    rpc::decode_messages(&self.call(agent, "category.get", args)?, None)?;
                Ok(messages.first().map(|m| m.global_position))
            }
            SubscribeTarget::All { position } => {
                let args = vec!["".into(), json!({"position": position, "batchSize": 1})];
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
            let args = vec!["".into(), json!({"position": head + 1, "batchSize": 1000})];
            let messages = rpc::decode_messages(&self.call(agent, "category.get", args)?, None)?;
            match messages.last() {
                Some(m) => head = m.global_position,
                None => break,
            }
        }
        Ok(head)
    }
}
