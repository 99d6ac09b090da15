//! Pipelined `stream.write` calls committed together.
//!
//! A client that pipelines (HTTP/1.1: the next requests sent before the
//! answers of the earlier ones are back) leaves requests waiting in the
//! connection's buffer. When the request just read is a `POST /rpc`
//! `stream.write` and the next complete requests in the buffer are too,
//! they are answered together: each is authenticated (a call with the same
//! credentials as the one before it in the batch shares that one's check),
//! checked and counted on its own and keeps its own answer, the valid writes of one namespace
//! in a row go through one [`EmbeddedStore::write_many`] (one transaction,
//! a savepoint each), and the answers leave in order, in one socket write.
//!
//! Nothing here waits for more bytes: what is not complete in the buffer,
//! and anything other than a `stream.write` (another method, `/subscribe`,
//! a body that is not JSON), is left to the connection loop, which serves
//! it alone.
//!
//! [`EmbeddedStore::write_many`]: crate::MessageStore::write_many

use std::io::{BufRead, BufReader, Read};
use std::time::Instant;

use serde_json::Value;

use super::http::{self, Request, Response};
use super::router::{authenticate, Caller};
use super::{methods, rpc, Shared};
use crate::store::{EmbeddedStore, MessageStore, WriteItem};

/// What [`serve`] did with a request.
pub(crate) enum Served {
    /// Not the start of a batch: serve it as usual.
    Alone(Request),
    /// The request and the writes buffered behind it, answered.
    Together {
        /// Every answer, in order, ready for one write.
        answers: Vec<u8>,
        /// Whether the connection stays open after them.
        keep_alive: bool,
    },
}

/// One pipelined `stream.write` request.
struct Call {
    started: Instant,
    request: Request,
    /// The request array after the method name.
    args: Vec<Value>,
}

/// Answers `first` (read at `started`) together with the `stream.write`
/// calls complete in `reader`'s buffer behind it, if it is one too and there
/// is at least one; otherwise gives it back. Never reads from the socket.
pub(crate) fn serve<R: Read>(
    shared: &Shared,
    first: Request,
    started: Instant,
    reader: &mut BufReader<R>,
) -> Served {
    if !first.keep_alive || !is_rpc_post(&first) {
        return Served::Alone(first);
    }
    // Cheap checks first: in the common case nothing is buffered.
    let Some((next, length)) = buffered_call(shared, reader.buffer()) else {
        return Served::Alone(first);
    };
    let Some(args) = write_args(&first) else {
        return Served::Alone(first);
    };
    let first = Call::new(first, args, started);
    reader.consume(length);
    let mut calls = vec![first, next];
    while calls.last().is_some_and(|c| c.request.keep_alive) {
        match buffered_call(shared, reader.buffer()) {
            Some((call, length)) => {
                reader.consume(length);
                calls.push(call);
            }
            None => break,
        }
    }
    let keep_alive = calls.last().is_some_and(|c| c.request.keep_alive) && !shared.stopping();
    Served::Together {
        answers: answer(shared, calls, keep_alive),
        keep_alive,
    }
}

fn is_rpc_post(request: &Request) -> bool {
    request.method == "POST" && request.path == "/rpc"
}

/// The `stream.write` call complete at the start of `buffered`, with its
/// length in bytes.
fn buffered_call(shared: &Shared, buffered: &[u8]) -> Option<(Call, usize)> {
    if buffered.is_empty() {
        return None;
    }
    let (request, length) = http::parse_buffered(buffered, shared.max_body)?;
    let args = write_args(&request)?;
    Some((Call::new(request, args, Instant::now()), length))
}

/// The arguments of `request` (after the method name) when it is a
/// `stream.write` call.
fn write_args(request: &Request) -> Option<Vec<Value>> {
    if !is_rpc_post(request) {
        return None;
    }
    match rpc::envelope(&request.body) {
        Ok(items) if items.first().and_then(Value::as_str) == Some("stream.write") => {
            Some(items.into_iter().skip(1).collect())
        }
        _ => None,
    }
}

impl Call {
    fn new(request: Request, args: Vec<Value>, started: Instant) -> Self {
        Call {
            started,
            request,
            args,
        }
    }
}

/// A call on its way to an answer.
enum Slot {
    /// Refused before any write (authentication, arguments, namespace).
    Answered(Response),
    /// A valid write into `store`'s namespace.
    Write {
        store: EmbeddedStore,
        item: WriteItem,
    },
}

/// Valid writes of one namespace, in a row, with their calls' indexes.
struct Run {
    store: EmbeddedStore,
    calls: Vec<usize>,
    items: Vec<WriteItem>,
}

/// Runs the calls and renders their answers, in order.
fn answer(shared: &Shared, calls: Vec<Call>, keep_alive: bool) -> Vec<u8> {
    let mut responses: Vec<Option<Response>> = vec![None; calls.len()];
    // Consecutive writes of one namespace share a transaction; a refused
    // call between them writes nothing, so it does not split them.
    let mut run: Option<Run> = None;
    // Pipelined calls usually carry the same credentials: the check made
    // for one holds for the next identical one of the same batch.
    let mut last_auth: Option<(Credentials<'_>, Result<Caller, Response>)> = None;
    for (index, call) in calls.iter().enumerate() {
        let credentials = credentials(&call.request);
        let auth = match &last_auth {
            Some((previous, auth)) if *previous == credentials => auth.clone(),
            _ => {
                let auth = authenticate(shared, &call.request);
                last_auth = Some((credentials, auth.clone()));
                auth
            }
        };
        match check(shared, call, auth) {
            Slot::Answered(response) => responses[index] = Some(response),
            Slot::Write { store, item } => {
                if run
                    .as_ref()
                    .is_some_and(|r| r.store.namespace() != store.namespace())
                {
                    commit(shared, run.take(), &mut responses);
                }
                let run = run.get_or_insert_with(|| Run {
                    store,
                    calls: Vec::new(),
                    items: Vec::new(),
                });
                run.calls.push(index);
                run.items.push(item);
            }
        }
    }
    commit(shared, run, &mut responses);

    let last = calls.len() - 1;
    let mut out = Vec::with_capacity(calls.len() * 256);
    for (index, (call, response)) in calls.iter().zip(responses).enumerate() {
        // Each call was refused (answered then) or is in a run, whose
        // write_many gives one result per item.
        let response = response.expect("every call has its answer");
        shared.metrics.request(
            &call.request.path,
            &call.request.method,
            response.status,
            Some(call.started.elapsed()),
        );
        let keep = index < last || keep_alive;
        // Writing into a Vec cannot fail.
        let _ = response.write_to(&mut out, &shared.server_header, keep, false);
    }
    out
}

/// Writes a run in one transaction and puts each call's answer in place.
fn commit(shared: &Shared, run: Option<Run>, responses: &mut [Option<Response>]) {
    let Some(run) = run else {
        return;
    };
    let results = run.store.write_many(&run.items);
    shared.metrics.write_batch(run.items.len());
    for (index, result) in run.calls.into_iter().zip(results) {
        let response = rpc::respond(methods::write_answer(result));
        shared.metrics.rpc_call("stream.write", response.status);
        responses[index] = Some(response);
    }
}

/// What authentication looks at: the query (its `token`) and the
/// `Authorization` header.
type Credentials<'a> = (&'a str, Option<&'a [u8]>);

fn credentials(request: &Request) -> Credentials<'_> {
    (&request.query, request.header("authorization"))
}

/// The call's authentication, its arguments and its namespace, as a lone
/// call would check them.
fn check(shared: &Shared, call: &Call, auth: Result<Caller, Response>) -> Slot {
    let caller = match auth {
        Ok(caller) => caller,
        Err(denied) => return Slot::Answered(denied),
    };
    let checked = methods::write_item(&call.args)
        .and_then(|item| Ok((methods::write_store(shared, &caller)?, item)));
    match checked {
        Ok((store, item)) => Slot::Write { store, item },
        Err(e) => {
            let response = rpc::respond(Err(e));
            shared.metrics.rpc_call("stream.write", response.status);
            Slot::Answered(response)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::BufReader;

    use serde_json::json;

    use super::*;
    use crate::server::{Server, ServerConfig};

    /// A `POST /rpc` request with a bearer token and a JSON body.
    fn rpc(token: &str, body: &str, extra: &str) -> String {
        format!(
            "POST /rpc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    fn write(token: &str, stream: &str, data: serde_json::Value) -> String {
        rpc(
            token,
            &json!(["stream.write", stream, { "type": "T", "data": data }]).to_string(),
            "",
        )
    }

    /// Statuses and bodies of the responses in `bytes`, and whether the
    /// last says `Connection: close`.
    fn responses(mut bytes: &[u8]) -> (Vec<(u16, String)>, bool) {
        let mut out = Vec::new();
        let mut closes = false;
        while !bytes.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut response = httparse::Response::new(&mut headers);
            let httparse::Status::Complete(n) = response.parse(bytes).unwrap() else {
                panic!("a partial response");
            };
            let length: usize = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                .unwrap();
            closes = response
                .headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case("connection") && h.value == b"close");
            let body = String::from_utf8(bytes[n..n + length].to_vec()).unwrap();
            out.push((response.code.unwrap(), body));
            bytes = &bytes[n + length..];
        }
        (out, closes)
    }

    /// Reads the first request of `raw` as the connection loop does and
    /// hands it to [`serve`]; what was answered and what is left buffered.
    fn run(server: &Server, raw: &[u8]) -> (Option<(Vec<u8>, bool)>, Vec<u8>) {
        let shared = &server.shared;
        let mut reader = BufReader::with_capacity(64 * 1024, raw);
        let head = http::read_head(&mut reader, shared.max_body)
            .unwrap()
            .unwrap();
        let first = http::read_body(&mut reader, head, shared.max_body).unwrap();
        let served = match serve(shared, first, Instant::now(), &mut reader) {
            Served::Alone(_) => None,
            Served::Together {
                answers,
                keep_alive,
            } => Some((answers, keep_alive)),
        };
        (served, reader.buffer().to_vec())
    }

    fn start() -> (Server, String) {
        let server = Server::start(ServerConfig::new()).unwrap();
        let token = server.default_token().unwrap().expose_secret().to_string();
        (server, token)
    }

    #[test]
    fn pipelined_writes_commit_in_one_transaction() {
        let (server, token) = start();
        let raw: String = (0..100)
            .map(|n| write(&token, "p-1", json!({ "n": n })))
            .collect();
        let (served, left) = run(&server, raw.as_bytes());
        let (answers, keep_alive) = served.expect("answered together");
        assert!(keep_alive && left.is_empty());
        let (answers, _) = responses(&answers);
        let expected: Vec<(u16, String)> = (0..100)
            .map(|n| {
                let body = format!("{{\"globalPosition\":{},\"position\":{n}}}\n", n + 1);
                (200, body)
            })
            .collect();
        assert_eq!(answers, expected);
        assert_eq!(server.shared.metrics.write_batches(), (1, 100));
    }

    #[test]
    fn each_call_keeps_its_own_answer() {
        let (server, token) = start();
        let other = server
            .store()
            .create_namespace("other", "", None)
            .unwrap()
            .token;
        let raw = [
            write(&token, "m-1", json!({ "n": 0 })),
            write(&token, "m-1", json!([0])),
            write(other.expose_secret(), "m-1", json!({ "n": 1 })),
            write("ns_bm9wZQ_x", "m-1", json!({})),
            rpc(
                &token,
                &json!(["stream.write", "m-1", { "type": "T", "data": {} }, { "expectedVersion": 5 }])
                    .to_string(),
                "",
            ),
            write(&token, "m-1", json!({ "n": 2 })),
        ]
        .concat();
        let (served, left) = run(&server, raw.as_bytes());
        assert!(left.is_empty());
        let (answers, _) = responses(&served.unwrap().0);
        let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
        assert_eq!(statuses, [200, 400, 200, 401, 409, 200]);
        assert_eq!(answers[0].1, "{\"globalPosition\":1,\"position\":0}\n");
        assert!(answers[1].1.contains("message.data must be an object"));
        assert_eq!(
            answers[2].1, "{\"globalPosition\":1,\"position\":0}\n",
            "the other namespace's own positions"
        );
        assert!(answers[4].1.contains("STREAM_VERSION_CONFLICT"));
        assert_eq!(answers[5].1, "{\"globalPosition\":2,\"position\":1}\n");
        // default [0], other [2], default [4, 5]: a namespace change splits.
        assert_eq!(server.shared.metrics.write_batches(), (3, 4));
    }

    #[test]
    fn anything_else_is_left_for_the_connection() {
        let (server, token) = start();
        let get = rpc(&token, r#"["stream.get","s-1"]"#, "");
        let raw = [
            write(&token, "s-1", json!({})),
            write(&token, "s-1", json!({})),
            get.clone(),
            write(&token, "s-1", json!({})),
        ]
        .concat();
        let (served, left) = run(&server, raw.as_bytes());
        let (answers, _) = responses(&served.unwrap().0);
        assert_eq!(answers.len(), 2);
        assert!(left.starts_with(get.as_bytes()), "the get waits its turn");

        // A lone write, a write before something else, or before a partial
        // request: served alone.
        for raw in [
            write(&token, "s-2", json!({})),
            write(&token, "s-2", json!({})) + &get,
            write(&token, "s-2", json!({})) + "POST /rpc HTTP/1.1\r\nContent-Le",
            write(&token, "s-2", json!({})) + "GET /subscribe?all=true HTTP/1.1\r\n\r\n",
            rpc(&token, r#"["stream.get","s-1"]"#, "") + &write(&token, "s-2", json!({})),
            rpc(&token, "[not json", "") + &write(&token, "s-2", json!({})),
        ] {
            assert!(run(&server, raw.as_bytes()).0.is_none(), "{raw}");
        }
        // A partial request after complete ones stays buffered.
        let partial = "POST /rpc HTTP/1.1\r\nContent-Le";
        let raw = write(&token, "s-3", json!({})) + &write(&token, "s-3", json!({})) + partial;
        let (served, left) = run(&server, raw.as_bytes());
        assert_eq!(responses(&served.unwrap().0).0.len(), 2);
        assert_eq!(left, partial.as_bytes());
    }

    #[test]
    fn connection_close_ends_the_batch() {
        let (server, token) = start();
        let body = json!(["stream.write", "c-1", { "type": "T", "data": {} }]).to_string();
        let raw = [
            write(&token, "c-1", json!({})),
            rpc(&token, &body, "Connection: close\r\n"),
            write(&token, "c-1", json!({})),
        ]
        .concat();
        let (served, left) = run(&server, raw.as_bytes());
        let (answers, keep_alive) = served.unwrap();
        assert!(!keep_alive);
        let (answers, closes) = responses(&answers);
        assert_eq!(answers.len(), 2);
        assert!(closes, "the last answer says the connection closes");
        assert!(!left.is_empty(), "what follows a close is not run");
        assert_eq!(server.store().stream_version("c-1").unwrap(), Some(1));
    }
}
