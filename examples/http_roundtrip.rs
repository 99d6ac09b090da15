//! The kit over HTTP: start `eventodb-kit serve` in-process, create a
//! namespace, write through `HttpStore`, and receive the SSE poke.
//!
//! ```text
//! cargo run --example http_roundtrip --features server
//! ```

use std::time::Duration;

use eventodb_kit::server::{Server, ServerConfig};
use eventodb_kit::{MessageStore, NewMessage, StreamQuery, SubscribeTarget, WriteOptions};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // In memory, on 127.0.0.1 and a free port; the `default` token is generated.
    let server = Server::start(ServerConfig::new())?;
    println!("serving on {}", server.url());
    let admin = server.http_store()?;

    // A namespace of its own, with the token only this call returns.
    let tenant = admin.create_namespace("shop", "example tenant", None)?;
    let shop = admin.with_token(&tenant.token);
    println!(
        "namespace {:?} created ({})",
        tenant.namespace, tenant.token
    );

    let sub = shop.subscribe(&SubscribeTarget::category("order", 0))?;
    let written = shop.write(
        "order-42",
        &NewMessage::new("Placed", json!({ "total": 19.9 })),
        &WriteOptions::new().expected_version(-1),
    )?;
    let poke = sub.recv_timeout(Duration::from_secs(5))?;
    println!(
        "wrote order-42 at global position {}; poke for {} at {}",
        written.global_position, poke.stream, poke.global_position
    );
    let read = shop.get_stream("order-42", &StreamQuery::new())?;
    println!("read back: {} {}", read[0].message_type, read[0].data);

    drop(sub);
    server.shutdown();
    Ok(())
}
