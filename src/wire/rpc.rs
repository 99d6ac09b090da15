//! `/rpc`: request arrays, result shapes and the error envelope.
//!
//! The client builds requests with the `*_args` functions and reads results
//! with the `decode_*` functions; the server (feature `server`) writes results
//! with the `encode_*` functions. Shapes follow protocol §3–§5: messages are
//! 7-element arrays (`stream.get`, `stream.last`) or 8-element arrays with
//! the stream name (`category.get`); results are objects with sorted keys.

use std::time::SystemTime;

use serde_json::{json, Map, Value};

use crate::error::{Error, Result, TransportErrorKind};
use crate::message::{Message, NewMessage, WriteOptions, WriteResult};
use crate::namespace::{CreatedNamespace, DeletedNamespace, NamespaceInfo};
use crate::store::{CategoryInfo, CategoryQuery, StreamInfo, StreamListQuery, StreamQuery};
use crate::time::parse_rfc3339;
use crate::token::Token;

/// An answer that does not have the shape EventoDB gives.
pub(crate) fn unexpected(what: &str, value: &Value) -> Error {
    let mut shown = value.to_string();
    if shown.len() > 200 {
        let mut cut = 200;
        while !shown.is_char_boundary(cut) {
            cut -= 1;
        }
        shown.truncate(cut);
        shown.push('…');
    }
    Error::Transport {
        kind: TransportErrorKind::Protocol,
        message: format!("unexpected {what} in the store's answer: {shown}"),
    }
}

/// The body of an RPC request: `[method, args…]`.
pub(crate) fn request(method: &str, args: Vec<Value>) -> Vec<u8> {
    let mut array = Vec::with_capacity(args.len() + 1);
    array.push(Value::String(method.to_string()));
    array.extend(args);
    serde_json::to_vec(&Value::Array(array)).expect("encoding a JSON value cannot fail")
}

// ----- request arguments (client) -----

/// `stream.write` arguments.
pub(crate) fn write_args(stream: &str, message: &NewMessage, options: &WriteOptions) -> Vec<Value> {
    let mut m = Map::new();
    m.insert("type".into(), message.message_type().into());
    m.insert("data".into(), message.data().clone());
    if let Some(metadata) = message.metadata() {
        m.insert("metadata".into(), metadata.clone());
    }
    let mut args = vec![Value::String(stream.to_string()), Value::Object(m)];
    let mut opts = Map::new();
    if let Some(id) = &options.id {
        opts.insert("id".into(), id.as_str().into());
    }
    if let Some(v) = options.expected_version {
        opts.insert("expectedVersion".into(), v.into());
    }
    if !opts.is_empty() {
        args.push(Value::Object(opts));
    }
    args
}

/// `stream.get` arguments.
pub(crate) fn stream_get_args(stream: &str, query: &StreamQuery) -> Vec<Value> {
    let mut opts = json!({ "position": query.position, "batchSize": query.batch_size });
    if let Some(gp) = query.global_position {
        opts["globalPosition"] = gp.into();
    }
    vec![stream.into(), opts]
}

/// `stream.last` arguments.
pub(crate) fn stream_last_args(stream: &str, message_type: Option<&str>) -> Vec<Value> {
    match message_type {
        Some(t) => vec![stream.into(), json!({ "type": t })],
        None => vec![stream.into()],
    }
}

/// `category.get` arguments.
pub(crate) fn category_get_args(category: &str, query: &CategoryQuery) -> Vec<Value> {
    let mut opts = json!({ "position": query.position, "batchSize": query.batch_size });
    if let Some(c) = &query.correlation {
        opts["correlation"] = c.as_str().into();
    }
    if let Some(g) = query.consumer_group {
        opts["consumerGroup"] = json!({ "member": g.member(), "size": g.size() });
    }
    vec![category.into(), opts]
}

/// `ns.streams` arguments.
pub(crate) fn ns_streams_args(query: &StreamListQuery) -> Vec<Value> {
    let mut opts = json!({ "limit": query.limit });
    if let Some(p) = &query.prefix {
        opts["prefix"] = p.as_str().into();
    }
    if let Some(c) = &query.cursor {
        opts["cursor"] = c.as_str().into();
    }
    vec![opts]
}

/// `ns.create` arguments.
pub(crate) fn ns_create_args(id: &str, description: &str, token: Option<&str>) -> Vec<Value> {
    let mut opts = Map::new();
    if !description.is_empty() {
        opts.insert("description".into(), description.into());
    }
    if let Some(t) = token {
        opts.insert("token".into(), t.into());
    }
    let mut args = vec![Value::from(id)];
    if !opts.is_empty() {
        args.push(Value::Object(opts));
    }
    args
}

// ----- results (client) -----

/// An integer field; servers send integers, but a float with an integral
/// value is accepted too.
pub(crate) fn int(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
}

fn field<'a>(v: &'a Value, key: &str, what: &str) -> Result<&'a Value> {
    v.get(key).ok_or_else(|| unexpected(what, v))
}

fn int_field(v: &Value, key: &str, what: &str) -> Result<i64> {
    int(field(v, key, what)?).ok_or_else(|| unexpected(what, v))
}

fn str_field<'a>(v: &'a Value, key: &str, what: &str) -> Result<&'a str> {
    field(v, key, what)?
        .as_str()
        .ok_or_else(|| unexpected(what, v))
}

fn time_field(v: &Value, key: &str, what: &str) -> Result<SystemTime> {
    parse_rfc3339(str_field(v, key, what)?).map_err(|_| unexpected(what, v))
}

/// `stream.write`'s `{"globalPosition":G,"position":P}`.
pub(crate) fn decode_write_result(v: &Value) -> Result<WriteResult> {
    Ok(WriteResult {
        position: int_field(v, "position", "write result")?,
        global_position: int_field(v, "globalPosition", "write result")?,
    })
}

/// One message array: 7 elements with `stream` given (`stream.get`,
/// `stream.last`), 8 elements with the stream name inside (`category.get`).
pub(crate) fn decode_message(v: &Value, stream: Option<&str>) -> Result<Message> {
    let bad = || unexpected("message", v);
    let items = v.as_array().ok_or_else(bad)?;
    // [id, type, position, globalPosition, data, metadata, time], with the
    // stream name after the id in the 8-element shape.
    let (stream_name, r) = match stream {
        Some(s) if items.len() == 7 => (s.to_string(), &items[1..]),
        None if items.len() == 8 => (items[1].as_str().ok_or_else(bad)?.to_string(), &items[2..]),
        _ => return Err(bad()),
    };
    Ok(Message {
        id: items[0].as_str().ok_or_else(bad)?.to_string(),
        stream_name,
        message_type: r[0].as_str().ok_or_else(bad)?.to_string(),
        position: int(&r[1]).ok_or_else(bad)?,
        global_position: int(&r[2]).ok_or_else(bad)?,
        data: r[3].clone(),
        metadata: (!r[4].is_null()).then(|| r[4].clone()),
        time: parse_rfc3339(r[5].as_str().ok_or_else(bad)?).map_err(|_| bad())?,
    })
}

/// An array of message arrays.
pub(crate) fn decode_messages(v: &Value, stream: Option<&str>) -> Result<Vec<Message>> {
    v.as_array()
        .ok_or_else(|| unexpected("message list", v))?
        .iter()
        .map(|m| decode_message(m, stream))
        .collect()
}

/// `stream.version`: an integer or `null`.
pub(crate) fn decode_version(v: &Value) -> Result<Option<i64>> {
    if v.is_null() {
        return Ok(None);
    }
    int(v)
        .map(Some)
        .ok_or_else(|| unexpected("stream version", v))
}

/// `ns.streams` entries.
pub(crate) fn decode_stream_infos(v: &Value) -> Result<Vec<StreamInfo>> {
    let what = "stream list";
    v.as_array()
        .ok_or_else(|| unexpected(what, v))?
        .iter()
        .map(|s| {
            Ok(StreamInfo {
                stream: str_field(s, "stream", what)?.to_string(),
                version: int_field(s, "version", what)?,
                last_activity: time_field(s, "lastActivity", what)?,
            })
        })
        .collect()
}

/// `ns.categories` entries.
pub(crate) fn decode_category_infos(v: &Value) -> Result<Vec<CategoryInfo>> {
    let what = "category list";
    v.as_array()
        .ok_or_else(|| unexpected(what, v))?
        .iter()
        .map(|c| {
            Ok(CategoryInfo {
                category: str_field(c, "category", what)?.to_string(),
                message_count: int_field(c, "messageCount", what)?,
                stream_count: int_field(c, "streamCount", what)?,
            })
        })
        .collect()
}

/// `ns.create`'s `{"createdAt","namespace","token"}`.
pub(crate) fn decode_created_namespace(v: &Value) -> Result<CreatedNamespace> {
    let what = "ns.create result";
    let namespace = str_field(v, "namespace", what)?.to_string();
    // EventoDB mints `ns_<base64url(id)>_<hex>` even when the base64url
    // form holds '_' (ids with '?', '>', '~', DEL), and then cannot parse it.
    let token = Token::parse(str_field(v, "token", what)?).map_err(|_| {
        Error::invalid(format!(
            "namespace {namespace:?} was created, but its token does not parse, so the \
             server will refuse it too (the base64url form of the id contains '_'); \
             delete the namespace and use an id without '?', '>', '~' or DEL"
        ))
    })?;
    Ok(CreatedNamespace {
        namespace,
        token,
        created_at: time_field(v, "createdAt", what)?,
    })
}

/// `ns.delete`'s `{"deletedAt","messagesDeleted","namespace"}`.
pub(crate) fn decode_deleted_namespace(v: &Value) -> Result<DeletedNamespace> {
    let what = "ns.delete result";
    Ok(DeletedNamespace {
        namespace: str_field(v, "namespace", what)?.to_string(),
        deleted_at: time_field(v, "deletedAt", what)?,
    })
}

/// One `ns.list` entry or an `ns.info` result.
pub(crate) fn decode_namespace_info(v: &Value) -> Result<NamespaceInfo> {
    let what = "namespace info";
    Ok(NamespaceInfo {
        namespace: str_field(v, "namespace", what)?.to_string(),
        description: v
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        created_at: time_field(v, "createdAt", what)?,
        message_count: v.get("messageCount").and_then(int).unwrap_or(0),
    })
}

/// `ns.list`.
pub(crate) fn decode_namespace_list(v: &Value) -> Result<Vec<NamespaceInfo>> {
    v.as_array()
        .ok_or_else(|| unexpected("namespace list", v))?
        .iter()
        .map(decode_namespace_info)
        .collect()
}

// ----- results (server) -----

#[cfg(feature = "server")]
pub(crate) use server::*;

#[cfg(feature = "server")]
mod server {
    use super::*;
    use crate::time::{format_rfc3339_nanos, format_rfc3339_seconds};
    use crate::wire::json::normalize_numbers;

    /// `{"globalPosition":G,"position":P}`.
    pub(crate) fn encode_write_result(r: &WriteResult) -> Value {
        json!({ "globalPosition": r.global_position, "position": r.position })
    }

    /// A 7-element (`with_stream == false`) or 8-element message array.
    pub(crate) fn encode_message(m: &Message, with_stream: bool) -> Value {
        let mut items = Vec::with_capacity(8);
        items.push(Value::String(m.id.clone()));
        if with_stream {
            items.push(Value::String(m.stream_name.clone()));
        }
        items.push(Value::String(m.message_type.clone()));
        items.push(m.position.into());
        items.push(m.global_position.into());
        // The embedded store keeps data numbers as float64s, but a file
        // written by an older kit may hold integers beyond 2^53; EventoDB
        // reads data into float64s.
        let mut data = m.data.clone();
        normalize_numbers(&mut data);
        items.push(data);
        let mut metadata = m.metadata.clone().unwrap_or(Value::Null);
        normalize_numbers(&mut metadata);
        items.push(metadata);
        items.push(format_rfc3339_seconds(m.time).into());
        Value::Array(items)
    }

    /// `ns.streams` entries.
    pub(crate) fn encode_stream_infos(streams: &[StreamInfo]) -> Value {
        streams
            .iter()
            .map(|s| {
                json!({
                    "lastActivity": format_rfc3339_seconds(s.last_activity),
                    "stream": s.stream,
                    "version": s.version,
                })
            })
            .collect()
    }

    /// `ns.categories` entries.
    pub(crate) fn encode_category_infos(categories: &[CategoryInfo]) -> Value {
        categories
            .iter()
            .map(|c| {
                json!({
                    "category": c.category,
                    "messageCount": c.message_count,
                    "streamCount": c.stream_count,
                })
            })
            .collect()
    }

    /// `ns.create`'s result (the only time the token is sent).
    pub(crate) fn encode_created_namespace(c: &CreatedNamespace) -> Value {
        json!({
            "createdAt": format_rfc3339_nanos(c.created_at),
            "namespace": c.namespace,
            "token": c.token.expose_secret(),
        })
    }

    /// `ns.delete`'s result.
    pub(crate) fn encode_deleted_namespace(d: &DeletedNamespace) -> Value {
        json!({
            "deletedAt": format_rfc3339_nanos(d.deleted_at),
            "messagesDeleted": 0,
            "namespace": d.namespace,
        })
    }

    /// One `ns.list` entry (`messageCount` is always 0, as in EventoDB).
    pub(crate) fn encode_namespace_list_entry(n: &NamespaceInfo) -> Value {
        json!({
            "createdAt": format_rfc3339_seconds(n.created_at),
            "description": n.description,
            "messageCount": 0,
            "namespace": n.namespace,
        })
    }

    /// `ns.info`'s result.
    pub(crate) fn encode_namespace_info(n: &NamespaceInfo) -> Value {
        json!({
            "createdAt": format_rfc3339_seconds(n.created_at),
            "description": n.description,
            "lastActivity": null,
            "messageCount": n.message_count,
            "namespace": n.namespace,
            "streamCount": 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_both_message_shapes() {
        let seven = json!(["id-1", "Opened", 2, 9, {"a": 1}, null, "2026-03-01T12:34:56Z"]);
        let m = decode_message(&seven, Some("account-1")).unwrap();
        assert_eq!(
            (
                m.stream_name.as_str(),
                m.message_type.as_str(),
                m.position,
                m.global_position
            ),
            ("account-1", "Opened", 2, 9)
        );
        assert_eq!(m.metadata, None);
        let eight = json!(["id-2", "account-2", "Closed", 0, 10, {}, {"k": "v"}, "2026-03-01T12:34:56.123456Z"]);
        let m = decode_message(&eight, None).unwrap();
        assert_eq!(
            (m.id.as_str(), m.stream_name.as_str()),
            ("id-2", "account-2")
        );
        assert_eq!(m.metadata, Some(json!({"k": "v"})));
        assert_eq!(
            m.time,
            parse_rfc3339("2026-03-01T12:34:56.123456Z").unwrap(),
            "fractions are accepted"
        );
        assert!(decode_message(&seven, None).is_err());
        assert!(decode_message(&json!({}), Some("x")).is_err());
    }

    #[test]
    fn write_args_omit_what_is_unset() {
        let m = NewMessage::new("T", json!({}));
        assert_eq!(
            Value::Array(write_args("s-1", &m, &WriteOptions::new())),
            json!(["s-1", {"type": "T", "data": {}}])
        );
        let opts = WriteOptions::new().expected_version(-1).id("x");
        let m = m.with_metadata(json!({"a": 1}));
        assert_eq!(
            Value::Array(write_args("s-1", &m, &opts)),
            json!(["s-1", {"type": "T", "data": {}, "metadata": {"a": 1}}, {"id": "x", "expectedVersion": -1}])
        );
    }
}
