//! An offline device: the store becomes unreachable for a while, the app
//! keeps writing to its outbox — a day of readings — and the backlog drains
//! once the store is back: every event exactly once, in order, many writes
//! in flight at a time (pipelined) instead of one per round trip.
//!
//! ```text
//! cargo run --example offline_device
//! ```
//!
//! The "remote" store is `eventodb-kit serve` started in-process on
//! 127.0.0.1 (the same protocol as a real EventoDB); stopping it is the
//! network going away.

use std::time::Duration;

use eventodb_kit::outbox::{OutboxEntry, SenderConfig};
use eventodb_kit::server::{Server, ServerConfig};
use eventodb_kit::{Kit, MessageStore, NewMessage, StreamQuery};
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
    // Default settings: while the store is unreachable the sender pauses
    // (nothing dead-lettered, no attempt used up) and checks at most a
    // second apart whether it is back.
    let sender = kit.spawn_sender(SenderConfig::new())?;
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
    // A reading every minute for a day, a batch at a time.
    const READINGS: u32 = 3 + 24 * 60;
    for chunk in (3..READINGS).collect::<Vec<_>>().chunks(100) {
        let entries: Vec<OutboxEntry> = chunk
            .iter()
            .map(|&n| OutboxEntry::new("sensor-7", reading(n)))
            .collect();
        outbox.write_batch(&entries)?;
    }
    // The sender notices on its next attempt, and pauses.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sender.stats()?.pause.is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = sender.stats()?;
    let pause = stats.pause.as_ref().map_or("not paused".to_string(), |p| {
        format!("paused ({}): {}", p.reason, p.error)
    });
    println!(
        "offline: writes keep committing locally — backlog {}, oldest waiting {:?}; sender {pause}",
        stats.backlog,
        stats.oldest_unsent_age.unwrap_or_default(),
    );

    let server = start_server(port)?;
    let back = std::time::Instant::now();
    println!("store back online at {}", server.url());
    sender.wait_until_drained(Duration::from_secs(30))?;
    let stats = sender.stats()?;
    println!(
        "drained {} readings {:?} after the store came back: {} delivered in all, {} retried \
         attempts, a window of {} writes",
        READINGS - 3,
        back.elapsed(),
        stats.sent,
        stats.retried,
        stats.windows.iter().max().copied().unwrap_or(0),
    );

    let stored = server
        .http_store()?
        .get_stream("sensor-7", &StreamQuery::new().batch_size(-1))?;
    let numbers: Vec<u64> = stored.iter().filter_map(|m| m.data["n"].as_u64()).collect();
    assert_eq!(numbers, (0..u64::from(READINGS)).collect::<Vec<_>>());
    println!(
        "the store holds sensor-7 readings 0..{} — each once, in order",
        READINGS - 1
    );

    sender.shutdown();
    server.shutdown();
    Ok(())
}
