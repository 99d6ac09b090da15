//! The same code against a real EventoDB: the store comes from the
//! environment, so nothing below knows which store it talks to.
//!
//! ```text
//! cargo run --example real_eventodb                      # embedded default
//! EVENTODB_URL=http://127.0.0.1:8080 EVENTODB_TOKEN=ns_… cargo run --example real_eventodb
//! ```
//!
//! Variables (see the README's configuration table): `EVENTODB_URL`
//! (`http(s)://…` for an EventoDB server, `embedded:///path.db` or
//! `embedded::memory:`), `EVENTODB_TOKEN` (the namespace token; required for
//! HTTP), `EVENTODB_KIT_DB` (the local database; a temporary file here when
//! unset), and the `OUTBOX_*` / `CONSUMER_*` settings. `eventodb-kit serve`
//! stands in for a real server: `cargo run --features cli -- serve --port 8080`.

use std::time::Duration;

use crossbeam_channel::unbounded;
use eventodb_kit::{KitBuilder, NewMessage, StreamQuery};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut builder = KitBuilder::from_env()?;
    if std::env::var_os("EVENTODB_KIT_DB").is_none() {
        // The outbox must outlive restarts in a real app; a temp file will do here.
        builder = builder.database(dir.path().join("kit.db"));
    }
    let kit = builder.build()?;
    let url = std::env::var("EVENTODB_URL").unwrap_or_else(|_| "(embedded default)".into());
    println!("store: {url}, namespace {:?}", kit.namespace());

    // A category of its own per run, so a shared server's other data stays out.
    let category = format!(
        "kitdemo{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    );
    let stream = format!("{category}-1");

    let sender = kit.spawn_sender(kit.sender_config().clone())?;
    let (seen_tx, seen_rx) = unbounded();
    let consumer = kit.consumer(&category, "demo").spawn(move |msg, _tx| {
        seen_tx.send(msg.clone()).ok();
        Ok(())
    })?;

    let outbox = kit.outbox();
    for n in 1..=3 {
        let id = outbox.write(&stream, &NewMessage::new("Pinged", json!({ "n": n })))?;
        println!("outbox: wrote Pinged {n} as {id}");
    }
    sender.wait_until_drained(Duration::from_secs(30))?;
    let stored = kit.store().get_stream(&stream, &StreamQuery::new())?;
    println!("store: {stream} now holds {} messages", stored.len());

    for _ in 0..3 {
        let msg = seen_rx.recv_timeout(Duration::from_secs(30))?;
        println!(
            "consumer: handled {} n={} at global position {}",
            msg.message_type, msg.data["n"], msg.global_position
        );
    }

    let m = kit.metrics()?;
    println!(
        "metrics: backlog {}, consumers {}, store error: {}",
        m.outbox.backlog,
        m.consumers.len(),
        m.store_error.as_deref().unwrap_or("none")
    );
    consumer.shutdown();
    sender.shutdown();
    Ok(())
}
