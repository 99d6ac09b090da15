//! The transactional outbox: a business row and its event commit together,
//! a rollback leaves neither, and a sender thread delivers what committed.
//!
//! ```text
//! cargo run --example outbox
//! ```
//!
//! Everything runs on the embedded default: the kit's tables and an
//! EventoDB-compatible store in one SQLite file (in a temporary directory
//! here; use a real path to keep it).

use std::time::Duration;

use eventodb_kit::outbox::{Delivery, SenderConfig};
use eventodb_kit::{Kit, NewMessage, StreamQuery, WriteOptions};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("shop.db");
    let kit = Kit::builder().database(&path).build()?;
    println!("kit database: {}", path.display());

    // The application's own table lives in the same database.
    kit.db().write(|tx| {
        tx.execute_batch(
            "CREATE TABLE orders (id TEXT PRIMARY KEY, total_cents INTEGER NOT NULL)",
        )?;
        Ok(())
    })?;

    // The sender delivers the outbox to the store; a commit wakes it.
    let sender = kit.spawn_sender(SenderConfig::new())?;
    let outbox = kit.outbox();

    // 1. The order and its event commit together.
    let placed = kit.db().write(|tx| {
        tx.execute(
            "INSERT INTO orders (id, total_cents) VALUES ('o-1', 4200)",
            [],
        )?;
        let event = NewMessage::new(
            "OrderPlaced",
            json!({ "orderId": "o-1", "totalCents": 4200 }),
        )
        .correlation_stream_name("checkout-77")
        .user_id("ann");
        // expected_version(-1): this must be the first event of the stream.
        let options = WriteOptions::new().expected_version(-1);
        outbox.write_in_with(tx, "order-o1", &event, &options)
    })?;
    println!("committed order o-1 with event {placed}");

    // 2. A failed business step rolls back: neither row nor event remain.
    let mut rolled_back = String::new();
    let result: eventodb_kit::Result<()> = kit.db().write(|tx| {
        tx.execute(
            "INSERT INTO orders (id, total_cents) VALUES ('o-2', 990)",
            [],
        )?;
        let id = outbox.write_in(
            tx,
            "order-o2",
            &NewMessage::new("OrderPlaced", json!({ "orderId": "o-2" })),
        )?;
        println!("wrote event {id} for order o-2, then the payment check fails…");
        rolled_back = id;
        Err(eventodb_kit::Error::InvalidInput("card declined".into()))
    });
    println!("order o-2: {}", result.unwrap_err());
    let orders: i64 = kit
        .db()
        .read(|c| Ok(c.query_row("SELECT COUNT(*) FROM orders", [], |r| r.get(0))?))?;
    let event_kept = outbox.get(&rolled_back).is_ok();
    println!(
        "orders in the table: {orders}; event {rolled_back} still in the outbox: {event_kept}"
    );

    // 3. An idempotency key: writing the same key again changes nothing.
    let key = WriteOptions::new().idempotency_key("o-1-paid");
    let paid = outbox.write_with(
        "order-o1",
        &NewMessage::new("OrderPaid", json!({ "orderId": "o-1" })),
        &key,
    )?;
    let again = outbox.write_with(
        "order-o1",
        &NewMessage::new("OrderPaid", json!({ "orderId": "o-1" })),
        &key,
    )?;
    println!(
        "OrderPaid written twice with one key: {paid} == {again}: {}",
        paid == again
    );

    // Delivery.
    for id in [&placed, &paid] {
        match sender.wait_until_sent(id, Duration::from_secs(10))? {
            Delivery::Sent => println!("delivered {id}"),
            Delivery::DeadLettered { error } => println!("{id} was refused: {error}"),
        }
    }
    for m in kit.store().get_stream("order-o1", &StreamQuery::new())? {
        println!(
            "store: order-o1 #{} {} {}",
            m.position, m.message_type, m.data
        );
    }
    println!(
        "store: order-o2 has {} messages",
        kit.store()
            .get_stream("order-o2", &StreamQuery::new())?
            .len()
    );

    let stats = sender.stats()?;
    println!(
        "sender: sent {}, backlog {}, write→delivered p50 {:?}",
        stats.sent, stats.backlog, stats.latency.p50
    );
    sender.shutdown();
    Ok(())
}
