//! `/subscribe`: the server-sent-events framing of pokes.
//!
//! Each notification is
//!
//! ```text
//! event: poke
//! data: {"stream":"account-123","position":5,"globalPosition":1234}
//!
//! ```
//!
//! with the data keys always in that order. The server may also send comment
//! lines (`: ready`), which carry nothing.

use serde::{Deserialize, Serialize};

use crate::store::Poke;

/// The data of a poke event, keys in EventoDB's order.
#[derive(Serialize, Deserialize)]
struct PokeData<'a> {
    #[serde(borrow)]
    stream: std::borrow::Cow<'a, str>,
    position: i64,
    #[serde(rename = "globalPosition")]
    global_position: i64,
}

/// One poke as an SSE event block (ends with the blank line).
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) fn encode_poke(poke: &Poke) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 + poke.stream.len());
    out.extend_from_slice(b"event: poke\ndata: ");
    super::json::write_go(
        &mut out,
        &PokeData {
            stream: std::borrow::Cow::Borrowed(&poke.stream),
            position: poke.position,
            global_position: poke.global_position,
        },
    );
    out.extend_from_slice(b"\n\n");
    out
}

/// The comment EventoDB sends at once on an `all=true` subscription.
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) const READY: &[u8] = b": ready\n\n";

/// Reads the data of a `poke` event.
pub(crate) fn decode_poke(data: &str) -> Option<Poke> {
    let d: PokeData<'_> = serde_json::from_str(data).ok()?;
    Some(Poke {
        stream: d.stream.into_owned(),
        position: d.position,
        global_position: d.global_position,
    })
}

/// An event assembled from SSE lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    /// The `event:` field (`message` when absent).
    pub(crate) name: String,
    /// The `data:` lines joined with `\n`.
    pub(crate) data: String,
}

/// Assembles events from lines, per the SSE rules: `field: value` (one
/// optional space after the colon), comments start with `:`, `data` lines
/// accumulate, a blank line dispatches.
#[derive(Debug, Default)]
pub(crate) struct EventParser {
    name: Option<String>,
    data: Option<String>,
}

impl EventParser {
    /// Feeds one line (without its line ending); returns an event when the
    /// line completes one.
    pub(crate) fn line(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            let data = self.data.take();
            let name = self.name.take();
            return data.map(|data| Event {
                name: name.unwrap_or_else(|| "message".to_string()),
                data,
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.name = Some(value.to_string()),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poke_round_trip_with_go_escaping() {
        let poke = Poke {
            stream: "a<b>-1".into(),
            position: 5,
            global_position: 1234,
        };
        let block = String::from_utf8(encode_poke(&poke)).unwrap();
        assert_eq!(
            block,
            "event: poke\ndata: {\"stream\":\"a\\u003cb\\u003e-1\",\"position\":5,\"globalPosition\":1234}\n\n"
        );
        let mut parser = EventParser::default();
        let mut events = Vec::new();
        for line in ": ready\n\n".lines().chain(block.lines()).chain([""]) {
            events.extend(parser.line(line));
        }
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].name, "poke");
        assert_eq!(decode_poke(&events[0].data), Some(poke));
    }

    #[test]
    fn parser_rules() {
        let mut p = EventParser::default();
        assert_eq!(p.line("data:a"), None);
        assert_eq!(p.line("data: b"), None);
        assert_eq!(
            p.line(""),
            Some(Event {
                name: "message".into(),
                data: "a\nb".into()
            })
        );
        assert_eq!(p.line("event: x"), None);
        assert_eq!(p.line(""), None, "an event without data is not dispatched");
        assert_eq!(decode_poke("{}"), None);
    }
}
