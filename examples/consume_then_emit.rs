//! Consume-then-emit: a consumer handles `OrderPlaced` by writing a row of
//! its own and emitting `InvoiceRequested` through the outbox — both in the
//! handler's transaction, so they commit together with its position — and
//! a second instance of the same consumer stands by until the first stops.
//!
//! ```text
//! cargo run --example consume_then_emit
//! ```
//!
//! Everything runs on the embedded default: the kit's tables and an
//! EventoDB-compatible store in one SQLite file (in a temporary directory
//! here; use a real path to keep it).

use std::time::Duration;

use eventodb_kit::outbox::SenderConfig;
use eventodb_kit::{ConsumerHealth, Kit, NewMessage, WriteOptions};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let kit = Kit::builder()
        .database(dir.path().join("shop.db"))
        .build()?;
    kit.db().write(|tx| {
        tx.execute_batch("CREATE TABLE invoices (order_stream TEXT PRIMARY KEY, cents INTEGER)")?;
        Ok(())
    })?;
    // Delivers what the handler emits; woken by the handler's commits.
    let sender = kit.spawn_sender(SenderConfig::new())?;

    for (n, cents) in [1250, 990, 4200].into_iter().enumerate() {
        let placed = NewMessage::new("OrderPlaced", json!({ "cents": cents }));
        kit.store()
            .write(&format!("order-{n}"), &placed, &WriteOptions::new())?;
    }

    let invoicer = |kit: &Kit| {
        let outbox = kit.outbox();
        kit.consumer("order", "invoicer").spawn(move |msg, tx| {
            let cents = msg.data["cents"].as_i64().unwrap_or(0);
            // The handler's own write…
            tx.execute(
                "INSERT INTO invoices (order_stream, cents) VALUES (?1, ?2)",
                (&msg.stream_name, cents),
            )?;
            // …and the message it emits, in the same transaction: neither
            // happens unless both do (and the position moves with them).
            // `outbox.write(..)` here would fail at once: the handler's
            // transaction holds the database's write lock.
            let request = NewMessage::new("InvoiceRequested", json!({ "cents": cents }))
                .causation_message_id(&msg.id);
            let invoice_stream = format!("invoice-{}", msg.stream_name);
            outbox.write_in(tx, &invoice_stream, &request)?;
            Ok(())
        })
    };
    let first = invoicer(&kit)?;
    // A second instance of the same consumer (in this process or another
    // one on the same file) only stands by.
    let second = invoicer(&kit)?;
    first.wait_until_caught_up(Duration::from_secs(10))?;
    println!(
        "first instance: {:?}, handled {}; second: {:?}",
        first.health(),
        first.stats().processed,
        second.health()
    );
    assert_eq!(second.health(), ConsumerHealth::Standby);

    sender.wait_until_drained(Duration::from_secs(10))?;
    for m in kit.store().get_category("invoice", &Default::default())? {
        println!("{} {} {}", m.stream_name, m.message_type, m.data);
    }

    // The first stops; the standby takes over where it left off.
    first.shutdown();
    kit.store().write(
        "order-3",
        &NewMessage::new("OrderPlaced", json!({ "cents": 700 })),
        &WriteOptions::new(),
    )?;
    second.wait_until_caught_up(Duration::from_secs(10))?;
    println!(
        "after the first stopped, the second is {:?} and handled {}",
        second.health(),
        second.stats().processed
    );
    second.shutdown();
    sender.shutdown();
    Ok(())
}
