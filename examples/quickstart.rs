//! Quickstart: the whole pipeline on the embedded default, printing what
//! happens.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! 1. An app writes an order and its `OrderPlaced` event in ONE transaction
//!    of its local SQLite database (the transactional outbox).
//! 2. A sender thread delivers committed events to the message store — here
//!    the embedded EventoDB-compatible store in the same file; point the kit
//!    at a real EventoDB with `EVENTODB_URL`/`EVENTODB_TOKEN` instead.
//! 3. A consumer follows the `order` category and keeps a read model up to
//!    date; its writes and its position commit together.
//! 4. The kit's metrics: backlog, delivery latency, consumer lag.

use std::time::Duration;

use eventodb_kit::outbox::SenderConfig;
use eventodb_kit::{Error, Kit, NewMessage, WriteOptions};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("shop.db");
    // The kit's tables and an embedded store, both in one SQLite file.
    let kit = Kit::builder().database(&path).build()?;
    println!(
        "[kit]      database and embedded store in {}",
        path.display()
    );

    kit.db().write(|tx| {
        tx.execute_batch(
            "CREATE TABLE orders (id TEXT PRIMARY KEY, customer TEXT NOT NULL, cents INTEGER NOT NULL);
             CREATE TABLE revenue (customer TEXT PRIMARY KEY, cents INTEGER NOT NULL, orders INTEGER NOT NULL);",
        )?;
        Ok(())
    })?;

    // The sender: woken by every outbox commit, delivers in order per stream.
    let sender = kit.spawn_sender(SenderConfig::new())?;

    // The consumer: a read model of revenue per customer.
    let consumer = kit.consumer("order", "revenue").spawn(|msg, tx| {
        let customer = msg.data["customer"].as_str().unwrap_or("?");
        let cents = msg.data["cents"].as_i64().unwrap_or(0);
        tx.execute(
            "INSERT INTO revenue (customer, cents, orders) VALUES (?1, ?2, 1)
             ON CONFLICT (customer) DO UPDATE SET cents = cents + ?2, orders = orders + 1",
            (customer, cents),
        )?;
        println!(
            "[consumer] handled {} #{} of {} (global position {}) (its writes and position commit together)",
            msg.message_type, msg.position, msg.stream_name, msg.global_position
        );
        Ok(())
    })?;

    // The app: each order row and its event commit together.
    let outbox = kit.outbox();
    let orders = [
        ("o-1", "ann", 4200),
        ("o-2", "bob", 1250),
        ("o-3", "ann", 990),
    ];
    for (order, customer, cents) in orders {
        let id = kit.db().write(|tx| {
            tx.execute(
                "INSERT INTO orders (id, customer, cents) VALUES (?1, ?2, ?3)",
                (order, customer, cents),
            )?;
            let event = NewMessage::new(
                "OrderPlaced",
                json!({ "order": order, "customer": customer, "cents": cents }),
            )
            .user_id(customer);
            outbox.write_in_with(
                tx,
                &format!("order-{order}"),
                &event,
                &WriteOptions::new().expected_version(-1),
            )
        })?;
        println!("[app]      committed order {order} and its event {id} in one transaction");
    }

    // A business step that fails rolls back both the row and the event.
    let failed: eventodb_kit::Result<()> = kit.db().write(|tx| {
        tx.execute(
            "INSERT INTO orders (id, customer, cents) VALUES ('o-4', 'eve', 100)",
            [],
        )?;
        outbox.write_in(tx, "order-o-4", &NewMessage::new("OrderPlaced", json!({})))?;
        Err(Error::InvalidInput("card declined".into()))
    });
    println!(
        "[app]      order o-4 failed ({}): neither the row nor the event were kept",
        failed.unwrap_err()
    );

    sender.wait_until_drained(Duration::from_secs(10))?;
    let delivered = sender.stats()?;
    println!(
        "[sender]   delivered {} events, backlog {}",
        delivered.sent, delivered.backlog
    );

    let head = kit
        .store()
        .last_message("order-o-3", None)?
        .map(|m| m.global_position);
    consumer.wait_for_position(head.unwrap_or(0), Duration::from_secs(10))?;
    let revenue: Vec<(String, i64, i64)> = kit.db().read(|c| {
        let mut stmt =
            c.prepare("SELECT customer, cents, orders FROM revenue ORDER BY customer")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<eventodb_kit::rusqlite::Result<_>>()?;
        Ok(rows)
    })?;
    for (customer, cents, orders) in revenue {
        println!("[app]      read model: {customer} spent {cents} cents in {orders} order(s)");
    }

    let m = kit.metrics()?;
    println!(
        "[metrics]  outbox backlog {}, sent {}, delivery latency p50 {:?} p99 {:?}",
        m.outbox.backlog,
        m.outbox.sender.as_ref().map_or(0, |s| s.sent),
        m.outbox
            .sender
            .as_ref()
            .and_then(|s| s.latency.p50)
            .unwrap_or_default(),
        m.outbox
            .sender
            .as_ref()
            .and_then(|s| s.latency.p99)
            .unwrap_or_default(),
    );
    for c in &m.consumers {
        println!(
            "[metrics]  consumer {} on {:?} at position {}, lag {} message(s), stalled: {}",
            c.consumer_id,
            c.category,
            c.position,
            c.lag.as_ref().map_or(0, |l| l.messages),
            c.stalled
        );
    }
    println!("[health]   {:?}", kit.health().status);

    consumer.shutdown();
    sender.shutdown();
    Ok(())
}
