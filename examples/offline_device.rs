//! An offline device: the store becomes unreachable for a while, the app
//! keeps writing to its outbox, and the backlog drains once the store is
//! back — every event exactly once, in order.
//!
//! ```text
//! cargo run --example offline_device
//! ```
//!
//! The "remote" store is `eventodb-kit serve` started in-process on
//! 127.0.0.1 (the same protocol as a real EventoDB); stopping it is the
//! network going away.

use std::time::Duration;

use eventodb_kit::outbox::SenderConfig;
use eventodb_kit::server::{Server, ServerConfig};
use eventodb_kit::{Kit, MessageStore, NewMessage, RetryPolicy, StreamQuery};
use serde_json::json;

const TOKEN: &str =
    "ns_ZGVmYXVsdA_0000000000000000000000000000000000000000000000000000000000000001";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let server_data = dir.path().join("server");
    let start_server = |port: u16| {
        Server::start(
            ServerConfig::new()
                .port(port)
                .token(TOKEN)
                .data_dir(&server_data),
        )
    };
    let server = start_server(0)?;
    let port = server.addr().port();
    println!("store online at {}", server.url());

    // The device: its own database file, delivering to the server over HTTP.
    let kit = Kit::builder()
        .database(dir.path().join("device.db"))
        .store(server.http_store()?)
        .build()?;
    // Retry quickly for the demo (the default backs off up to 30 s).
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(100))
        .max_delay(Duration::from_millis(500));
    let sender = kit.spawn_sender(SenderConfig::new().retry(retry))?;
    let outbox = kit.outbox();

    let reading =
        |n: u32| NewMessage::new("TemperatureRead", json!({ "n": n, "celsius": 20 + n % 5 }));
    for n in 0..3 {
        outbox.write("sensor-7", &reading(n))?;
    }
    sender.wait_until_drained(Duration::from_secs(10))?;
    println!("online: 3 readings delivered");

    server.shutdown();
    println!("store offline (server stopped)");
    for n in 3..10 {
        outbox.write("sensor-7", &reading(n))?;
    }
    // The sender notices on its next attempt.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sender.health().last_error.is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = sender.stats()?;
    println!(
        "offline: writes keep committing locally — backlog {}, oldest waiting {:?}, last error: {}",
        stats.backlog,
        stats.oldest_unsent_age.unwrap_or_default(),
        sender.health().last_error.as_deref().unwrap_or("none")
    );

    let server = start_server(port)?;
    println!("store back online at {}", server.url());
    sender.wait_until_drained(Duration::from_secs(30))?;
    let stats = sender.stats()?;
    println!(
        "drained: backlog {}, {} delivered in all, {} retried attempts",
        stats.backlog, stats.sent, stats.retried
    );

    let stored = server
        .http_store()?
        .get_stream("sensor-7", &StreamQuery::new().batch_size(-1))?;
    let numbers: Vec<u64> = stored.iter().filter_map(|m| m.data["n"].as_u64()).collect();
    println!("the store holds sensor-7 readings {numbers:?} — each once, in order");
    assert_eq!(numbers, (0..10).collect::<Vec<_>>());

    sender.shutdown();
    server.shutdown();
    Ok(())
}
