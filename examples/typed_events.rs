//! Typed events: serde types per message type, routed by a `Dispatcher`,
//! building a read model in the kit's database. A message whose data does not
//! fit its type is dead-lettered with a clear error; after a fixed handler is
//! deployed, requeuing it runs the handler on it once more.
//!
//! ```text
//! cargo run --example typed_events
//! ```

use std::time::{Duration, Instant};

use eventodb_kit::consumer::Dispatcher;
use eventodb_kit::dlq::DeadLetterFilter;
use eventodb_kit::{ConsumerHandle, Kit, NewMessage, RetryPolicy, WriteOptions};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct UserRegistered {
    name: String,
    email: String,
}

/// Version 2 of the handler's type also reads the `mail` key an old
/// producer wrote by mistake.
#[derive(Debug, Deserialize)]
struct UserRegisteredLenient {
    name: String,
    #[serde(alias = "mail")]
    email: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct EmailChanged {
    email: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct UserDeactivated {
    reason: String,
}

fn register(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    name: &str,
    email: &str,
) -> eventodb_kit::Result<()> {
    println!("  {id} registered {name} <{email}>");
    tx.execute(
        "INSERT INTO users (id, name, email, active) VALUES (?1, ?2, ?3, 1)",
        (id, name, email),
    )?;
    Ok(())
}

/// The read model's handlers; `lenient` is the fixed version.
fn dispatcher(lenient: bool) -> Dispatcher {
    let d = if lenient {
        Dispatcher::new().on("UserRegistered", |e: UserRegisteredLenient, msg, tx| {
            register(tx, &msg.stream_name, &e.name, &e.email)
        })
    } else {
        Dispatcher::new().on("UserRegistered", |e: UserRegistered, msg, tx| {
            register(tx, &msg.stream_name, &e.name, &e.email)
        })
    };
    d.on("EmailChanged", |e: EmailChanged, msg, tx| {
        println!("  {} changed email to <{}>", msg.stream_name, e.email);
        tx.execute(
            "UPDATE users SET email = ?2 WHERE id = ?1",
            (&msg.stream_name, &e.email),
        )?;
        Ok(())
    })
    .on("UserDeactivated", |e: UserDeactivated, msg, tx| {
        println!("  {} deactivated ({})", msg.stream_name, e.reason);
        tx.execute(
            "UPDATE users SET active = 0 WHERE id = ?1",
            [&msg.stream_name],
        )?;
        Ok(())
    })
}

fn start(kit: &Kit, lenient: bool) -> eventodb_kit::Result<ConsumerHandle> {
    let dispatcher = dispatcher(lenient);
    kit.consumer("user", "users-table")
        .types(dispatcher.types())
        .retry_policy(
            RetryPolicy::new()
                .max_attempts(2)
                .initial_delay(Duration::from_millis(10)),
        )
        .poll_interval(Duration::from_millis(20))
        .spawn(dispatcher.into_handler())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let kit = Kit::builder().database(dir.path().join("app.db")).build()?;
    kit.db().write(|tx| {
        tx.execute_batch(
            "CREATE TABLE users (id TEXT PRIMARY KEY, name TEXT, email TEXT, active INTEGER)",
        )?;
        Ok(())
    })?;

    let write =
        |stream: &str, msg: NewMessage| kit.store().write(stream, &msg, &WriteOptions::new());
    let registered = |name: &str, email: &str| {
        NewMessage::from_serialize(
            "UserRegistered",
            &UserRegistered {
                name: name.into(),
                email: email.into(),
            },
        )
    };
    write("user-1", registered("Ann", "ann@example.com")?)?;
    write("user-2", registered("Bob", "bob@example.com")?)?;
    write(
        "user-1",
        NewMessage::from_serialize(
            "EmailChanged",
            &EmailChanged {
                email: "ann@example.org".into(),
            },
        )?,
    )?;
    // A producer with a bug: `mail` instead of `email`.
    write(
        "user-3",
        NewMessage::new(
            "UserRegistered",
            serde_json::json!({ "name": "Cy", "mail": "cy@example.com" }),
        ),
    )?;
    write(
        "user-2",
        NewMessage::from_serialize(
            "UserDeactivated",
            &UserDeactivated {
                reason: "left".into(),
            },
        )?,
    )?;
    let last = write(
        "user-1",
        NewMessage::new("UserLoggedIn", serde_json::json!({})),
    )?;
    println!("wrote 6 events to 3 user streams");

    println!("consumer v1:");
    let consumer = start(&kit, false)?;
    consumer.wait_for_position(last.global_position, Duration::from_secs(10))?;
    let stats = consumer.stats();
    println!(
        "v1 processed {}, passed over {} (no handler for its type), dead-lettered {}",
        stats.processed, stats.filtered, stats.dead_lettered
    );
    consumer.shutdown();

    let dlq = kit.dlq();
    let letters = dlq.list(&DeadLetterFilter::new())?;
    for letter in &letters {
        println!(
            "dead letter #{}: {} on {} after {} attempts: {}",
            letter.id, letter.message_type, letter.stream, letter.attempts, letter.error
        );
    }
    print_users(&kit)?;

    println!("consumer v2 (reads `mail` too), dead letters requeued:");
    let consumer = start(&kit, true)?;
    dlq.requeue_all()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while dlq.count(&DeadLetterFilter::new())? > 0 && Instant::now() < deadline {
        // Requeued letters are picked up on the consumer's poll interval.
        std::thread::sleep(Duration::from_millis(10));
    }
    println!(
        "dead letters left after the requeue: {}",
        dlq.count(&DeadLetterFilter::new())?
    );
    consumer.shutdown();
    print_users(&kit)?;
    Ok(())
}

fn print_users(kit: &Kit) -> eventodb_kit::Result<()> {
    kit.db().read(|c| {
        let mut stmt = c.prepare("SELECT id, name, email, active FROM users ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, bool>(3)?,
            ))
        })?;
        println!("users table:");
        for row in rows {
            let (id, name, email, active) = row?;
            println!(
                "  {id}: {name} <{email}>{}",
                if active { "" } else { " (inactive)" }
            );
        }
        Ok(())
    })
}
