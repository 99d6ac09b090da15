//! The RPC methods: argument validation in EventoDB's order and with its
//! messages (protocol §4), then the embedded store.

use serde_json::{json, Map, Value};

use super::router::Caller;
use super::rpc::{RpcError, RpcResult};
use super::Shared;
use crate::consumer_group::ConsumerGroup;
use crate::message::{NewMessage, WriteOptions, WriteResult};
use crate::store::{
    check_batch_size, CategoryQuery, EmbeddedStore, MessageStore, StreamListQuery, StreamQuery,
    WriteItem,
};
use crate::token::Token;
use crate::wire::json::truncate_to_i64;
use crate::wire::rpc as enc;

/// Runs `method` with `args` for `caller`.
pub(crate) fn dispatch(
    shared: &Shared,
    caller: &Caller,
    method: &str,
    args: &[Value],
) -> RpcResult {
    match method {
        "stream.write" => stream_write(shared, caller, args),
        "stream.get" => stream_get(shared, caller, args),
        "stream.last" => stream_last(shared, caller, args),
        "stream.version" => stream_version(shared, caller, args),
        "category.get" => category_get(shared, caller, args),
        "ns.create" => ns_create(shared, args),
        "ns.delete" => ns_delete(shared, args),
        "ns.list" => ns_list(shared),
        "ns.info" => ns_info(shared, args),
        "ns.streams" => ns_streams(shared, caller, args),
        "ns.categories" => {
            let store = namespace_store(shared, caller, "list categories")?;
            let cats = store
                .list_categories()
                .map_err(|e| RpcError::from_kit(e, "list categories"))?;
            Ok(enc::encode_category_infos(&cats))
        }
        "sys.version" => Ok(Value::String(shared.version.clone())),
        "sys.health" => Ok(json!({ "backend": "unknown", "connections": 0, "status": "ok" })),
        _ => Err(RpcError::new(
            "METHOD_NOT_FOUND",
            format!("Unknown method: {method}"),
        )),
    }
}

/// The caller's namespace for a data method. In test mode a token of an
/// unknown namespace gets this far; EventoDB then fails every data call.
fn namespace_store(shared: &Shared, caller: &Caller, op: &str) -> Result<EmbeddedStore, RpcError> {
    if !caller.exists {
        return Err(RpcError::backend(op, "namespace not found"));
    }
    Ok(shared.store.with_namespace(&caller.namespace))
}

/// The options object at `args[index]`, if any (`null` is refused).
fn options(args: &[Value], index: usize) -> Result<Option<&Map<String, Value>>, RpcError> {
    match args.get(index) {
        None => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(RpcError::invalid("options must be an object")),
    }
}

/// A number option, truncated toward zero; present but not a number: `message`.
fn number(
    opts: Option<&Map<String, Value>>,
    key: &str,
    message: &str,
) -> Result<Option<i64>, RpcError> {
    match opts.and_then(|o| o.get(key)) {
        None => Ok(None),
        Some(v) => truncate_to_i64(v)
            .map(Some)
            .ok_or_else(|| RpcError::invalid(message)),
    }
}

/// A string option; present but not a string: `message`.
fn string<'a>(
    opts: Option<&'a Map<String, Value>>,
    key: &str,
    message: &str,
) -> Result<Option<&'a str>, RpcError> {
    match opts.and_then(|o| o.get(key)) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .map(Some)
            .ok_or_else(|| RpcError::invalid(message)),
    }
}

fn stream_name(args: &[Value]) -> Result<&str, RpcError> {
    match args.first().and_then(Value::as_str) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(RpcError::invalid("streamName must be a non-empty string")),
    }
}

fn namespace_id(args: &[Value]) -> Result<&str, RpcError> {
    match args.first().and_then(Value::as_str) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(RpcError::invalid("namespace ID must be a non-empty string")),
    }
}

fn batch_size(opts: Option<&Map<String, Value>>) -> Result<Option<i64>, RpcError> {
    let size = number(opts, "batchSize", "options.batchSize must be a number")?;
    if let Some(n) = size {
        check_batch_size(n).map_err(|e| RpcError::from_kit(e, "get messages"))?;
    }
    Ok(size)
}

fn stream_write(shared: &Shared, caller: &Caller, args: &[Value]) -> RpcResult {
    let item = write_item(args)?;
    let store = write_store(shared, caller)?;
    write_answer(store.write(&item.stream, &item.message, &item.options))
}

/// The write a `stream.write` call asks for, its arguments checked in
/// EventoDB's order and with its messages. Every way the server writes
/// (one call, or pipelined calls in one transaction) starts here.
pub(crate) fn write_item(args: &[Value]) -> Result<WriteItem, RpcError> {
    if args.len() < 2 {
        return Err(RpcError::invalid(
            "stream.write requires at least 2 arguments: streamName and message",
        ));
    }
    let stream = stream_name(args)?;
    let Some(message) = args[1].as_object() else {
        return Err(RpcError::invalid("message must be an object"));
    };
    let message_type = match message.get("type").and_then(Value::as_str) {
        Some(t) if !t.is_empty() => t,
        _ => return Err(RpcError::invalid("message.type must be a non-empty string")),
    };
    let data = match message.get("data") {
        Some(d @ Value::Object(_)) => d.clone(),
        _ => return Err(RpcError::invalid("message.data must be an object")),
    };
    let metadata = match message.get("metadata") {
        None => None,
        Some(m @ Value::Object(_)) => Some(m.clone()),
        Some(_) => return Err(RpcError::invalid("message.metadata must be an object")),
    };
    let opts = options(args, 2)?;
    let id = string(opts, "id", "options.id must be a string")?;
    let expected = number(
        opts,
        "expectedVersion",
        "options.expectedVersion must be a number",
    )?;

    // The store keeps data numbers as float64s, as EventoDB does.
    let mut new = NewMessage::new(message_type, data);
    if let Some(m) = metadata {
        new = new.with_metadata(m);
    }
    let mut write_options = WriteOptions::new();
    write_options.id = id.map(str::to_string);
    write_options.expected_version = expected;
    Ok(WriteItem::new(stream, new, write_options))
}

/// The store a caller's writes go to (refused for a namespace test mode
/// let in but that does not exist, as EventoDB does).
pub(crate) fn write_store(shared: &Shared, caller: &Caller) -> Result<EmbeddedStore, RpcError> {
    namespace_store(shared, caller, "write message")
}

/// The result of a `stream.write`, as EventoDB answers it.
pub(crate) fn write_answer(written: crate::Result<WriteResult>) -> RpcResult {
    let written = written.map_err(|e| RpcError::from_kit(e, "write message"))?;
    Ok(enc::encode_write_result(&written))
}

fn stream_get(shared: &Shared, caller: &Caller, args: &[Value]) -> RpcResult {
    if args.is_empty() {
        return Err(RpcError::invalid(
            "stream.get requires at least 1 argument: streamName",
        ));
    }
    let stream = stream_name(args)?;
    let opts = options(args, 1)?;
    let mut query = StreamQuery::new();
    if let Some(p) = number(opts, "position", "options.position must be a number")? {
        query.position = p;
    }
    query.global_position = number(
        opts,
        "globalPosition",
        "options.globalPosition must be a number",
    )?;
    if let Some(b) = batch_size(opts)? {
        query.batch_size = b;
    }
    let store = namespace_store(shared, caller, "get messages")?;
    let messages = store
        .get_stream(stream, &query)
        .map_err(|e| RpcError::from_kit(e, "get messages"))?;
    Ok(messages
        .iter()
        .map(|m| enc::encode_message(m, false))
        .collect())
}

fn stream_last(shared: &Shared, caller: &Caller, args: &[Value]) -> RpcResult {
    if args.is_empty() {
        return Err(RpcError::invalid(
            "stream.last requires at least 1 argument: streamName",
        ));
    }
    let stream = stream_name(args)?;
    let opts = options(args, 1)?;
    let message_type = string(opts, "type", "options.type must be a string")?;
    let store = namespace_store(shared, caller, "get last message")?;
    let last = store
        .last_message(stream, message_type)
        .map_err(|e| RpcError::from_kit(e, "get last message"))?;
    Ok(last.map_or(Value::Null, |m| enc::encode_message(&m, false)))
}

fn stream_version(shared: &Shared, caller: &Caller, args: &[Value]) -> RpcResult {
    if args.is_empty() {
        return Err(RpcError::invalid(
            "stream.version requires 1 argument: streamName",
        ));
    }
    let stream = stream_name(args)?;
    let store = namespace_store(shared, caller, "get stream version")?;
    let version = store
        .stream_version(stream)
        .map_err(|e| RpcError::from_kit(e, "get stream version"))?;
    Ok(version.map_or(Value::Null, Value::from))
}

fn category_get(shared: &Shared, caller: &Caller, args: &[Value]) -> RpcResult {
    let Some(category) = args.first() else {
        return Err(RpcError::invalid(
            "category.get requires at least 1 argument: categoryName",
        ));
    };
    let Some(category) = category.as_str() else {
        return Err(RpcError::invalid("categoryName must be a string"));
    };
    let opts = options(args, 1)?;
    let mut query = CategoryQuery::new();
    if let Some(p) = number(opts, "position", "options.position must be a number")? {
        query.position = p;
    }
    if let Some(gp) = number(
        opts,
        "globalPosition",
        "options.globalPosition must be a number",
    )? {
        query.position = gp;
    }
    if let Some(b) = batch_size(opts)? {
        query.batch_size = b;
    }
    query.correlation = string(opts, "correlation", "options.correlation must be a string")?
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    query.consumer_group = consumer_group(opts)?;
    let store = namespace_store(shared, caller, "get category messages")?;
    let messages = store
        .get_category(category, &query)
        .map_err(|e| RpcError::from_kit(e, "get category messages"))?;
    Ok(messages
        .iter()
        .map(|m| enc::encode_message(m, true))
        .collect())
}

fn consumer_group(opts: Option<&Map<String, Value>>) -> Result<Option<ConsumerGroup>, RpcError> {
    let Some(group) = opts.and_then(|o| o.get("consumerGroup")) else {
        return Ok(None);
    };
    let Some(group) = group.as_object() else {
        return Err(RpcError::invalid("options.consumerGroup must be an object"));
    };
    let member = number(
        Some(group),
        "member",
        "options.consumerGroup.member must be a number",
    )?;
    let size = number(
        Some(group),
        "size",
        "options.consumerGroup.size must be a number",
    )?;
    match (member, size) {
        (Some(m), Some(s)) => ConsumerGroup::new(m, s)
            .map(Some)
            .map_err(|e| RpcError::from_kit(e, "get category messages")),
        (None, None) => Ok(None),
        _ => Err(RpcError::invalid(
            "options.consumerGroup requires both member and size",
        )),
    }
}

fn ns_create(shared: &Shared, args: &[Value]) -> RpcResult {
    if args.is_empty() {
        return Err(RpcError::invalid(
            "ns.create requires at least 1 argument: namespace ID",
        ));
    }
    let id = namespace_id(args)?;
    let opts = options(args, 1)?;
    let description =
        string(opts, "description", "options.description must be a string")?.unwrap_or("");
    let token = string(opts, "token", "options.token must be a string")?;
    if let Some(text) = token {
        let parsed = Token::parse(text).map_err(|e| match e {
            crate::Error::InvalidInput(m) => {
                RpcError::invalid(format!("Invalid token format: {m}"))
            }
            other => RpcError::from_kit(other, "create namespace"),
        })?;
        if parsed.namespace() != id {
            return Err(RpcError::invalid(format!(
                "Token is for namespace '{}', not '{id}'",
                parsed.namespace()
            )));
        }
    }
    if opts
        .and_then(|o| o.get("metadata"))
        .is_some_and(|m| !m.is_object())
    {
        return Err(RpcError::invalid("options.metadata must be an object"));
    }
    let created = shared
        .store
        .create_namespace(id, description, token)
        .map_err(|e| RpcError::from_kit(e, "create namespace"))?;
    Ok(enc::encode_created_namespace(&created))
}

fn ns_delete(shared: &Shared, args: &[Value]) -> RpcResult {
    if args.is_empty() {
        return Err(RpcError::invalid(
            "ns.delete requires 1 argument: namespace ID",
        ));
    }
    let id = namespace_id(args)?;
    let deleted = shared
        .store
        .delete_namespace(id)
        .map_err(|e| RpcError::from_kit(e, "delete namespace"))?;
    Ok(enc::encode_deleted_namespace(&deleted))
}

fn ns_list(shared: &Shared) -> RpcResult {
    let list = shared
        .store
        .list_namespaces()
        .map_err(|e| RpcError::from_kit(e, "list namespaces"))?;
    Ok(list.iter().map(enc::encode_namespace_list_entry).collect())
}

fn ns_info(shared: &Shared, args: &[Value]) -> RpcResult {
    if args.is_empty() {
        return Err(RpcError::invalid(
            "ns.info requires 1 argument: namespace ID",
        ));
    }
    let id = namespace_id(args)?;
    let info = shared
        .store
        .namespace_info(id)
        .map_err(|e| RpcError::from_kit(e, "get namespace info"))?;
    Ok(enc::encode_namespace_info(&info))
}

fn ns_streams(shared: &Shared, caller: &Caller, args: &[Value]) -> RpcResult {
    let opts = options(args, 0)?;
    let mut query = StreamListQuery::new();
    query.prefix = string(opts, "prefix", "prefix must be a string")?.map(str::to_string);
    query.cursor = string(opts, "cursor", "cursor must be a string")?.map(str::to_string);
    if let Some(limit) = number(opts, "limit", "limit must be a number")? {
        query.limit = limit;
    }
    if !(1..=1000).contains(&query.limit) {
        return Err(RpcError::invalid("limit must be between 1 and 1000"));
    }
    let store = namespace_store(shared, caller, "list streams")?;
    let streams = store
        .list_streams(&query)
        .map_err(|e| RpcError::from_kit(e, "list streams"))?;
    Ok(enc::encode_stream_infos(&streams))
}
