//! Messages a reader cannot decode, on the wire.
//!
//! EventoDB stores any JSON it is given; serde_json reads at most 127
//! levels per document. A message whose data (or metadata) nests deeper —
//! written by another client, or before the kit refused such data — would
//! make a whole `stream.get` or `category.get` answer unreadable, and a
//! consumer of its category would stop there for good. So the answer of a
//! read is decoded message by message when it must be: the messages before
//! the one that cannot be decoded are returned, and a read that starts at
//! it fails with [`Error::Undecodable`], naming it — the contract of the
//! embedded store's reads, so a consumer treats it the same over HTTP (a
//! failure of that one message; the rest of the category flows).
//!
//! `eventodb-kit serve` cannot put such a message in an answer (it reads
//! it through the same decoder): it answers a read that starts at it with
//! a `MESSAGE_UNDECODABLE` error whose details name it, which the client
//! turns back into [`Error::Undecodable`].

use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::error::ErrorBody;
use super::json::is_too_deep;
use super::rpc::{decode_message, decode_messages};
use crate::error::{Error, Result, TransportErrorKind};
use crate::message::Message;

/// The error code of `serve`'s answer to a read starting at a message it
/// cannot decode.
pub(crate) const CODE: &str = "MESSAGE_UNDECODABLE";

/// The messages of a `stream.get` (`stream` given) or `category.get`
/// answer: all of them, or those before the first that cannot be decoded
/// — or, when that is the first, its [`Error::Undecodable`].
pub(crate) fn decode_message_list(
    method: &str,
    body: &[u8],
    stream: Option<&str>,
) -> Result<Vec<Message>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => decode_messages(&v, stream),
        Err(e) if is_too_deep(&e) => {
            let raw: Vec<Vec<Box<RawValue>>> =
                serde_json::from_slice(body).map_err(|e| not_json(method, &e))?;
            let mut out = Vec::with_capacity(raw.len());
            for items in &raw {
                match decode_raw_message(items, stream)? {
                    Ok(message) => out.push(message),
                    Err(e) if out.is_empty() => return Err(e),
                    Err(_) => break,
                }
            }
            Ok(out)
        }
        Err(e) => Err(not_json(method, &e)),
    }
}

/// The message of a `stream.last` answer (`null`: none), or the
/// [`Error::Undecodable`] of a last message that cannot be decoded.
pub(crate) fn decode_last_message(
    method: &str,
    body: &[u8],
    stream: &str,
) -> Result<Option<Message>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Null) => Ok(None),
        Ok(v) => decode_message(&v, Some(stream)).map(Some),
        Err(e) if is_too_deep(&e) => {
            let items: Vec<Box<RawValue>> =
                serde_json::from_slice(body).map_err(|e| not_json(method, &e))?;
            decode_raw_message(&items, Some(stream))?.map(Some)
        }
        Err(e) => Err(not_json(method, &e)),
    }
}

/// One message array, element by element: the message, or — when its data
/// or metadata cannot be decoded — its [`Error::Undecodable`] (the outer
/// error: the array is not a message at all).
fn decode_raw_message(
    items: &[Box<RawValue>],
    stream: Option<&str>,
) -> Result<std::result::Result<Message, Error>> {
    let mut failure = None;
    let values: Vec<Value> = items
        .iter()
        .map(|raw| {
            serde_json::from_str(raw.get()).unwrap_or_else(|e| {
                failure.get_or_insert_with(|| e.to_string());
                Value::Null
            })
        })
        .collect();
    let message = decode_message(&Value::Array(values), stream)?;
    Ok(match failure {
        None => Ok(message),
        Some(reason) => Err(undecodable(message, reason)),
    })
}

/// The error naming `message` (its identity; its data did not decode).
fn undecodable(message: Message, reason: String) -> Error {
    Error::Undecodable {
        id: message.id,
        stream: message.stream_name,
        message_type: message.message_type,
        position: message.position,
        global_position: message.global_position,
        reason,
    }
}

/// `serve`'s error body for [`Error::Undecodable`].
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) fn error_body(e: &Error) -> Option<ErrorBody> {
    let Error::Undecodable {
        id,
        stream,
        message_type,
        position,
        global_position,
        reason,
    } = e
    else {
        return None;
    };
    Some(ErrorBody::new(CODE, e.to_string()).with_details(json!({
        "id": id,
        "streamName": stream,
        "type": message_type,
        "position": position,
        "globalPosition": global_position,
        "reason": reason,
    })))
}

/// [`Error::Undecodable`] back from `serve`'s error body, when it has the
/// details.
pub(crate) fn from_error_body(e: &ErrorBody) -> Option<Error> {
    let details = e.details.as_ref()?;
    let text = |key: &str| details.get(key)?.as_str().map(str::to_string);
    let int = |key: &str| details.get(key)?.as_i64();
    Some(Error::Undecodable {
        id: text("id")?,
        stream: text("streamName")?,
        message_type: text("type")?,
        position: int("position")?,
        global_position: int("globalPosition")?,
        reason: text("reason").unwrap_or_default(),
    })
}

/// The error of an answer to `method` that is not JSON (a proxy's page,
/// say): of every RPC answer, decoded whole or message by message.
pub(crate) fn not_json(method: &str, e: &serde_json::Error) -> Error {
    Error::Transport {
        kind: TransportErrorKind::Protocol,
        message: format!("the store's answer to {method} is not JSON: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, gp: i64, data: &str) -> String {
        format!(
            r#"["{id}","order-1","Placed",{p},{gp},{data},null,"2026-11-30T12:00:00.000000000Z"]"#,
            p = gp - 1
        )
    }

    fn deep() -> String {
        format!("{}{}", "[".repeat(300), "]".repeat(300))
    }

    fn answer(messages: &[String]) -> Vec<u8> {
        format!("[{}]", messages.join(",")).into_bytes()
    }

    #[test]
    fn a_read_returns_the_messages_before_one_it_cannot_decode() {
        let body = answer(&[
            message("a", 1, "{}"),
            message("b", 2, r#"{"n":2}"#),
            message("c", 3, &deep()),
            message("d", 4, "{}"),
        ]);
        let got = decode_message_list("category.get", &body, None).unwrap();
        assert_eq!(
            got.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(got[1].data, json!({"n": 2}));
    }

    #[test]
    fn a_read_starting_at_it_names_it() {
        let body = answer(&[message("c", 3, &deep()), message("d", 4, "{}")]);
        let err = decode_message_list("category.get", &body, None).unwrap_err();
        let Error::Undecodable {
            id,
            stream,
            message_type,
            position,
            global_position,
            reason,
        } = err
        else {
            panic!("{err}");
        };
        assert_eq!(
            (id.as_str(), stream.as_str(), message_type.as_str()),
            ("c", "order-1", "Placed")
        );
        assert_eq!((position, global_position), (2, 3));
        assert!(reason.contains("recursion limit"), "{reason}");
    }

    #[test]
    fn deep_metadata_counts_too_and_stream_last_names_it() {
        let m = format!(
            r#"["e","Placed",0,7,{{}},{},"2026-11-30T12:00:00Z"]"#,
            deep()
        );
        let err = decode_last_message("stream.last", m.as_bytes(), "order-1").unwrap_err();
        assert!(
            matches!(&err, Error::Undecodable { id, global_position: 7, .. } if id == "e"),
            "{err}"
        );
        assert_eq!(
            decode_last_message("stream.last", b"null", "order-1").unwrap(),
            None
        );
    }

    #[test]
    fn an_answer_that_is_not_messages_stays_a_protocol_error() {
        for body in [&b"{"[..], b"[1,2]", format!("[{}", deep()).as_bytes()] {
            let err = decode_message_list("category.get", body, None).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::Transport {
                        kind: TransportErrorKind::Protocol,
                        ..
                    }
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn the_error_body_round_trips() {
        let e = Error::Undecodable {
            id: "c".into(),
            stream: "order-1".into(),
            message_type: "Placed".into(),
            position: 2,
            global_position: 3,
            reason: "recursion limit exceeded".into(),
        };
        let body = error_body(&e).unwrap();
        assert_eq!(body.code, CODE);
        let back = from_error_body(&body).unwrap();
        assert_eq!(back.to_string(), e.to_string());
    }
}
