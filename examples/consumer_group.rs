//! A consumer group: three members, each on its own thread, share the
//! streams of one category. The store assigns every stream to exactly one
//! member (EventoDB's MD5 rule), so members in other processes — or written
//! with another SDK — would agree on the split.
//!
//! ```text
//! cargo run --example consumer_group
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use crossbeam_channel::unbounded;
use eventodb_kit::{ConsumerGroup, Kit, NewMessage, WriteOptions};
use serde_json::json;

const MEMBERS: i64 = 3;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The kit's tables and an embedded store share one file.
    let dir = tempfile::tempdir()?;
    let kit = Kit::builder().database(dir.path().join("app.db")).build()?;

    // Twelve accounts, two events each.
    let mut last = 0;
    for account in 1..=12 {
        let stream = format!("account-{account}");
        let opened = NewMessage::new("Opened", json!({ "owner": format!("owner {account}") }));
        let deposited = NewMessage::new("Deposited", json!({ "amount": account * 10 }));
        kit.store().write(&stream, &opened, &WriteOptions::new())?;
        last = kit
            .store()
            .write(&stream, &deposited, &WriteOptions::new())?
            .global_position;
    }
    println!("wrote 24 events to 12 account streams (last global position {last})");

    // Each member is a consumer with its own id and its share of the group.
    let (done_tx, done_rx) = unbounded();
    let mut members = Vec::new();
    for member in 0..MEMBERS {
        let done = done_tx.clone();
        let handle = kit
            .consumer("account", &format!("statements-{member}"))
            .consumer_group(ConsumerGroup::new(member, MEMBERS)?)
            .spawn(move |msg, _tx| {
                println!(
                    "member {member} handles {:<11} {:<9} (global position {})",
                    msg.stream_name, msg.message_type, msg.global_position
                );
                done.send((member, msg.stream_name.clone(), msg.global_position))
                    .ok();
                Ok(())
            })?;
        members.push(handle);
    }
    drop(done_tx);

    // Wait until all 24 events were handled, by someone.
    let mut owners: BTreeMap<i64, (Vec<String>, i64)> = BTreeMap::new();
    for _ in 0..24 {
        let (member, stream, position) = done_rx.recv_timeout(Duration::from_secs(10))?;
        let (streams, last) = owners.entry(member).or_default();
        if !streams.contains(&stream) {
            streams.push(stream);
        }
        *last = position;
    }
    for (member, (streams, last)) in &owners {
        println!("member {member} owns {}", streams.join(", "));
        // The handler ran; wait for its transaction to commit.
        members[*member as usize].wait_for_position(*last, Duration::from_secs(10))?;
    }

    for handle in members {
        let stats = handle.stats();
        println!(
            "{}: processed {} messages, position {}",
            handle.consumer_id(),
            stats.processed,
            stats.position
        );
        handle.shutdown();
    }
    Ok(())
}
