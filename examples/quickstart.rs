//! Quickstart: write events to the embedded EventoDB-compatible store and
//! read a category back, split between the two members of a consumer group.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use eventodb_kit::{
    CategoryQuery, ConsumerGroup, EmbeddedStore, MessageStore, NewMessage, WriteOptions,
};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // An in-memory store with EventoDB's semantics; `EmbeddedStore::open(path)`
    // keeps it in a file instead.
    let store = EmbeddedStore::open_in_memory()?;
    println!("embedded store ready (namespace {:?})", store.namespace());

    for account in 1..=4 {
        let stream = format!("account-{account}");
        let opened = NewMessage::new("Opened", json!({ "owner": format!("owner {account}") }));
        let deposited = NewMessage::new("Deposited", json!({ "amount": account * 10 }))
            .correlation_stream_name(format!("transfer-{account}"));
        // expected_version(-1): the account stream must not exist yet.
        let first = store.write(&stream, &opened, &WriteOptions::new().expected_version(-1))?;
        let second = store.write(&stream, &deposited, &WriteOptions::new())?;
        println!(
            "wrote {stream}: Opened at position {} (global {}), Deposited at position {} (global {})",
            first.position, first.global_position, second.position, second.global_position
        );
    }

    let all = store.get_category("account", &CategoryQuery::new())?;
    println!("category \"account\" holds {} messages", all.len());

    for member in 0..2 {
        let group = ConsumerGroup::new(member, 2)?;
        let share = store.get_category("account", &CategoryQuery::new().consumer_group(group))?;
        let mut streams: Vec<&str> = share.iter().map(|m| m.stream_name.as_str()).collect();
        streams.dedup();
        println!(
            "consumer-group member {member} of 2 reads {} messages from {}",
            share.len(),
            streams.join(", ")
        );
    }
    Ok(())
}
