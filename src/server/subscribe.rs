//! `GET /subscribe`: SSE pokes (protocol §10).
//!
//! Headers go out at once (and `: ready` for `all=true`). Registration and
//! replay happen atomically in the embedded store, so no write between them
//! is missed, and consumer groups use the MD5 rule for replay and live pokes
//! alike (EventoDB's live filter uses another hash; clients treat pokes as
//! hints either way).

use std::io::Write;

use crossbeam_channel::{never, select};

use super::http::{self, Request, Response};
use super::router::{Caller, Outcome};
use super::transport::Transport;
use super::Shared;
use crate::consumer_group::ConsumerGroup;
use crate::store::{MessageStore, SubscribeTarget};
use crate::wire::sse::{encode_poke, READY};

/// Most pokes written in one chunk when many are waiting (a replay).
const POKES_PER_WRITE: usize = 256;

/// What the query asks for; `Ok(None)`: a valid request that can match
/// nothing (a negative consumer-group member).
fn target(request: &Request) -> Result<Option<SubscribeTarget>, &'static str> {
    let param = |k: &str| request.query_param(k).filter(|v| !v.is_empty());
    let stream = param("stream");
    let category = param("category");
    let all = request.query_param("all").as_deref() == Some("true");
    if stream.is_none() && category.is_none() && !all {
        return Err("Either 'stream', 'category', or 'all=true' parameter required");
    }
    if all && (stream.is_some() || category.is_some()) {
        return Err("Cannot combine 'all' with 'stream' or 'category'");
    }
    if stream.is_some() && category.is_some() {
        return Err("Cannot specify both 'stream' and 'category'");
    }
    let position = match param("position") {
        Some(p) => p.parse::<i64>().map_err(|_| "Invalid position parameter")?,
        None => 0,
    };
    if let Some(stream) = stream {
        return Ok(Some(SubscribeTarget::stream(stream, position)));
    }
    let Some(category) = category else {
        return Ok(Some(SubscribeTarget::all(position)));
    };
    let consumer = match param("consumer") {
        Some(c) => c.parse::<i64>().map_err(|_| "Invalid consumer parameter")?,
        None => 0,
    };
    let size = match param("size") {
        Some(s) => s.parse::<i64>().map_err(|_| "Invalid size parameter")?,
        None => 0,
    };
    if (consumer > 0 || size > 0) && (size == 0 || consumer >= size) {
        return Err("Invalid consumer group: member must be < size");
    }
    if size <= 0 {
        return Ok(Some(SubscribeTarget::category(category, position)));
    }
    Ok(ConsumerGroup::new(consumer, size)
        .ok()
        .map(|g| SubscribeTarget::category_group(category, position, g)))
}

/// Serves one subscription until the client goes or the server stops.
pub(crate) fn handle(
    shared: &Shared,
    caller: &Caller,
    request: &Request,
    out: &mut Transport,
) -> Outcome {
    let target = match target(request) {
        Ok(t) => t,
        Err(message) => {
            return Outcome::Respond(Response::new(400, http::TEXT, message.as_bytes().to_vec()))
        }
    };
    let is_all = matches!(target, Some(SubscribeTarget::All { .. }));
    let store = shared.store.with_namespace(&caller.namespace);
    let subscription = match target.map(|t| store.subscribe(&t)).transpose() {
        Ok(s) => s,
        Err(e) => {
            let e = super::rpc::RpcError::from_kit(e, "subscribe");
            return Outcome::Respond(super::router::error_body(e.status, e.body));
        }
    };
    let mut head = http::head(
        200,
        &shared.server_header,
        "text/event-stream",
        &[
            ("Cache-Control", "no-cache"),
            ("Connection", "keep-alive"),
            ("Access-Control-Allow-Origin", "*"),
            ("Transfer-Encoding", "chunked"),
        ],
    );
    head.extend_from_slice(b"\r\n");
    if is_all {
        head.extend_from_slice(&http::chunk(READY));
    }
    // Counted for `/metrics` once the stream is answered (it is not timed).
    shared
        .metrics
        .request(&request.path, &request.method, 200, None);
    if out.write_all(&head).is_err() {
        return Outcome::Streamed;
    }
    let none = never();
    let pokes = subscription.as_ref().map_or(&none, |s| s.receiver());
    loop {
        select! {
            recv(pokes) -> poke => {
                let Ok(poke) = poke else { break };
                let mut events = encode_poke(&poke);
                for more in pokes.try_iter().take(POKES_PER_WRITE - 1) {
                    events.extend_from_slice(&encode_poke(&more));
                }
                if out.write_all(&http::chunk(&events)).is_err() {
                    break;
                }
            }
            recv(shared.stop) -> _ => break,
            default(shared.sse_liveness_interval) => {
                if out.peer_closed() {
                    break;
                }
            }
        }
    }
    let _ = out.write_all(http::LAST_CHUNK);
    Outcome::Streamed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    fn parse(query: &str) -> Result<Option<SubscribeTarget>, &'static str> {
        let raw = format!("GET /subscribe?{query} HTTP/1.1\r\n\r\n");
        let mut reader = BufReader::new(raw.as_bytes());
        let request = http::read_request(&mut reader, &mut Vec::new(), 1024)
            .unwrap()
            .unwrap();
        target(&request)
    }

    #[test]
    fn parameters_in_eventodb_order() {
        assert_eq!(
            parse("").unwrap_err(),
            "Either 'stream', 'category', or 'all=true' parameter required"
        );
        assert_eq!(
            parse("all=yes").unwrap_err(),
            "Either 'stream', 'category', or 'all=true' parameter required"
        );
        assert_eq!(
            parse("all=true&stream=a").unwrap_err(),
            "Cannot combine 'all' with 'stream' or 'category'"
        );
        assert_eq!(
            parse("stream=a&category=b&position=x").unwrap_err(),
            "Cannot specify both 'stream' and 'category'"
        );
        assert_eq!(
            parse("stream=a&position=1.5").unwrap_err(),
            "Invalid position parameter"
        );
        assert_eq!(
            parse("category=a&consumer=x").unwrap_err(),
            "Invalid consumer parameter"
        );
        assert_eq!(
            parse("category=a&size=x").unwrap_err(),
            "Invalid size parameter"
        );
        assert_eq!(
            parse("category=a&consumer=2&size=2").unwrap_err(),
            "Invalid consumer group: member must be < size"
        );
        assert_eq!(
            parse("category=a&consumer=1").unwrap_err(),
            "Invalid consumer group: member must be < size"
        );
        assert_eq!(
            parse("stream=a-1&consumer=x").unwrap(),
            Some(SubscribeTarget::stream("a-1", 0)),
            "consumer and size are read only with category"
        );
        assert_eq!(
            parse("category=a&consumer=1&size=2&position=%2B7").unwrap(),
            Some(SubscribeTarget::category_group(
                "a",
                7,
                ConsumerGroup::new(1, 2).unwrap()
            ))
        );
        assert_eq!(
            parse("category=a&consumer=0").unwrap(),
            Some(SubscribeTarget::category("a", 0))
        );
        assert_eq!(
            parse("all=true&position=-3").unwrap(),
            Some(SubscribeTarget::all(-3))
        );
        assert_eq!(parse("category=a&consumer=-1&size=2").unwrap(), None);
    }
}
