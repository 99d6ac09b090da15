//! Dead letters: a poison message in a consumer and one in the outbox,
//! inspected, then requeued (after a fix) or purged.
//!
//! ```text
//! cargo run --example dead_letters
//! ```

use std::time::{Duration, Instant};

use eventodb_kit::dlq::DeadLetterFilter;
use eventodb_kit::outbox::{Delivery, SenderConfig};
use eventodb_kit::{Error, Kit, NewMessage, RetryPolicy, WriteOptions};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let kit = Kit::builder().database(dir.path().join("app.db")).build()?;
    kit.db().write(|tx| {
        tx.execute_batch(
            "CREATE TABLE balances (account TEXT PRIMARY KEY, cents INTEGER NOT NULL);
             CREATE TABLE settings (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
             INSERT INTO settings VALUES ('allow_overdraft', 0);",
        )?;
        Ok(())
    })?;

    // --- A consumer whose handler refuses one message --------------------
    for (account, cents) in [("a-1", 500), ("a-2", -300), ("a-3", 200)] {
        let msg = NewMessage::new("Adjusted", json!({ "cents": cents }));
        kit.store()
            .write(&format!("balance-{account}"), &msg, &WriteOptions::new())?;
    }
    let consumer = kit
        .consumer("balance", "balances")
        // Three quick attempts, then the dead-letter queue.
        .retry_policy(
            RetryPolicy::new()
                .initial_delay(Duration::from_millis(20))
                .max_attempts(3),
        )
        .poll_interval(Duration::from_millis(100))
        .spawn(|msg, tx| {
            let cents = msg.data["cents"].as_i64().unwrap_or(0);
            let allowed: i64 = tx.query_row(
                "SELECT value FROM settings WHERE name = 'allow_overdraft'",
                [],
                |r| r.get(0),
            )?;
            if cents < 0 && allowed == 0 {
                return Err(Error::InvalidInput(format!(
                    "{} would overdraw {} (overdrafts are off)",
                    cents, msg.stream_name
                )));
            }
            tx.execute(
                "INSERT INTO balances VALUES (?1, ?2)
                 ON CONFLICT (account) DO UPDATE SET cents = cents + excluded.cents",
                (msg.stream_name.as_str(), cents),
            )?;
            Ok(())
        })?;
    consumer.wait_for_position(3, Duration::from_secs(10))?;
    println!(
        "consumer: {} handled, {} dead-lettered — the rest of the category went on",
        consumer.stats().processed,
        consumer.stats().dead_lettered
    );

    let dlq = kit.dlq();
    for letter in dlq.list(&DeadLetterFilter::new())? {
        println!(
            "dead letter #{} from the {}: {} on {} after {} attempts: {}",
            letter.id,
            letter.source,
            letter.message_type,
            letter.stream,
            letter.attempts,
            letter.error
        );
    }

    // Fix the cause, then requeue: the handler runs once more.
    kit.db().write(|tx| {
        tx.execute(
            "UPDATE settings SET value = 1 WHERE name = 'allow_overdraft'",
            [],
        )?;
        Ok(())
    })?;
    let requeued = dlq.requeue_all()?;
    println!("overdrafts allowed; requeued {requeued} dead letter(s)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while dlq.count(&DeadLetterFilter::new())? > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let cents: i64 = kit.db().read(|c| {
        Ok(c.query_row(
            "SELECT cents FROM balances WHERE account = 'balance-a-2'",
            [],
            |r| r.get(0),
        )?)
    })?;
    println!(
        "after the requeue balance-a-2 holds {cents} cents; dead letters left: {}",
        dlq.count(&DeadLetterFilter::new())?
    );
    consumer.shutdown();

    // --- An outbox message the store refuses ----------------------------
    let sender = kit.spawn_sender(SenderConfig::new())?;
    let outbox = kit.outbox();
    let opened = outbox.write_with(
        "account-9",
        &NewMessage::new("Opened", json!({})),
        &WriteOptions::new().expected_version(-1),
    )?;
    // A second "first event" of the same stream: a version conflict.
    let again = outbox.write_with(
        "account-9",
        &NewMessage::new("Opened", json!({})),
        &WriteOptions::new().expected_version(-1),
    )?;
    let other = outbox.write("account-10", &NewMessage::new("Opened", json!({})))?;
    for id in [&opened, &again, &other] {
        match sender.wait_until_sent(id, Duration::from_secs(10))? {
            Delivery::Sent => println!("outbox: {id} delivered"),
            Delivery::DeadLettered { error } => println!("outbox: {id} dead-lettered: {error}"),
        }
    }
    // A conflict will not go away by retrying: inspect it and purge it.
    for letter in dlq.list(&DeadLetterFilter::new())? {
        println!(
            "purging dead letter #{} ({} on {})",
            letter.id, letter.message_type, letter.stream
        );
        dlq.purge(letter.id)?;
    }
    println!(
        "dead letters left: {}",
        dlq.count(&DeadLetterFilter::new())?
    );
    sender.shutdown();
    Ok(())
}
