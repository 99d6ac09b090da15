//! `sender_delivery_1` and `sender_delivery_4` over HTTP: the sender
//! delivering a backlog to the project's server, against a raw loop of ureq
//! `stream.write` calls (same messages, same ids) to the same kind of
//! server, on as many threads as the sender has lanes.

use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use eventodb_kit::server::{Server, ServerConfig};
use eventodb_kit::Kit;
use serde_json::json;

use crate::outbox::{drain_rate, message, STREAMS};
use crate::report::{best_of_pair, Report};

const ROWS: usize = 5_000;

pub fn run(report: &mut Report, dir: &Path) {
    for lanes in [1, 4] {
        delivery(report, dir, lanes);
    }
}

fn delivery(report: &mut Report, dir: &Path, lanes: usize) {
    let mut round = 0;
    let (kit_rate, limit) = best_of_pair(
        3,
        || {
            round += 1;
            deliver_backlog(dir, lanes, round)
        },
        || raw_ureq_writes(lanes),
    );
    report.ratio(&format!("sender_delivery_{lanes}"), kit_rate, limit);
}

/// The sender delivering a backlog of `ROWS` to a fresh server over HTTP;
/// messages per second.
fn deliver_backlog(dir: &Path, lanes: usize, round: usize) -> f64 {
    let server = Server::start(ServerConfig::new()).unwrap();
    let kit = Kit::builder()
        .database(dir.join(format!("http-{lanes}-{round}.db")))
        .store(server.http_store().unwrap())
        .build()
        .unwrap();
    let rate = drain_rate(&kit, ROWS, lanes);
    server.shutdown();
    rate
}

/// The raw limit: `lanes` threads posting `stream.write` with ureq (encode,
/// post, decode — what any client does per call); messages per second.
fn raw_ureq_writes(lanes: usize) -> f64 {
    let server = Server::start(ServerConfig::new()).unwrap();
    let url = format!("{}/rpc", server.url());
    let auth = format!("Bearer {}", server.default_token().unwrap().expose_secret());
    let messages: Vec<_> = (0..ROWS)
        .map(|n| {
            (
                format!("account-{}", n % STREAMS),
                message(n),
                uuid::Uuid::now_v7().to_string(),
            )
        })
        .collect();
    let messages = Arc::new(messages);
    let start = Instant::now();
    let threads: Vec<_> = (0..lanes)
            .map(|lane| {
                let (messages, url, auth) = (Arc::clone(&messages), url.clone(), auth.clone());
                thread::spawn(move || {
                    let agent = ureq::Agent::new_with_defaults();
                    for (stream, m, id) in messages.iter().skip(lane).step_by(lanes) {
                        // What any client does per call: encode, post, decode.
                        let msg = json!({ "type": m.message_type(), "data": m.data(), "metadata": m.metadata() });
                        let body = serde_json::to_vec(&json!(["stream.write", stream, msg, { "id": id }])).unwrap();
                        let response = agent
                            .post(&url)
                            .header("Authorization", &auth)
                            .header("Content-Type", "application/json")
                            .send(&body[..])
                            .unwrap();
                        assert_eq!(response.status(), 200);
                        let answer: serde_json::Value =
                            serde_json::from_slice(&response.into_body().read_to_vec().unwrap()).unwrap();
                        assert!(answer["globalPosition"].is_i64());
                    }
                })
            })
            .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let rate = ROWS as f64 / start.elapsed().as_secs_f64();
    server.shutdown();
    rate
}
