//! `GET /metrics` on `eventodb-kit serve` (an addition to EventoDB's
//! surface): who may read it, that it parses, and that its counters and
//! gauges follow the traffic; and a kit's metrics and health over HTTP.
#![cfg(feature = "server")]

mod prometheus_support;
mod support;

use std::time::Duration;

use eventodb_kit::health::HealthStatus;
use eventodb_kit::server::{Server, ServerConfig};
use eventodb_kit::{Kit, NewMessage, SubscribeTarget, WriteOptions};
use prometheus_support::{parse, value};
use serde_json::json;
use support::{expect_error, get, post_with_header, rpc, server};

#[test]
fn metrics_need_the_default_token_unless_public_or_test_mode() {
    let (server, token) = server();
    let url = server.url();
    expect_error(
        &get(&url, "/metrics", None),
        401,
        "AUTH_REQUIRED",
        "Authorization header required",
    );
    let store = server.http_store().unwrap();
    let tenant = store.create_namespace("tenant-a", "", None).unwrap();
    let a = get(&url, "/metrics", Some(tenant.token.expose_secret()));
    assert_eq!(a.status, 403, "{a:?}");
    assert_eq!(a.error().0, "AUTH_UNAUTHORIZED");
    let a = get(&url, "/metrics", Some(&token));
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        a.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let a = get(&url, &format!("/metrics?token={token}"), None);
    assert_eq!(a.status, 200, "the token may come as a query parameter");
    let a = post_with_header(&url, "/metrics", &format!("Bearer {token}"), "");
    assert_eq!(a.status, 405, "{a:?}");
    // The rest of EventoDB's surface is unchanged.
    assert_eq!(get(&url, "/metricz", Some(&token)).status, 404);

    let public = Server::start(ServerConfig::new().public_metrics(true)).unwrap();
    assert_eq!(get(&public.url(), "/metrics", None).status, 200);
    let relaxed = Server::start(ServerConfig::new().test_mode(true)).unwrap();
    assert_eq!(get(&relaxed.url(), "/metrics", None).status, 200);
}

#[test]
fn metrics_follow_the_traffic() {
    let (server, token) = server();
    let url = server.url();
    for i in 0..3 {
        let body =
            format!(r#"["stream.write", "account-{i}", {{"type": "Opened", "data": {{}}}}]"#);
        assert_eq!(rpc(&url, Some(&token), &body).status, 200);
    }
    assert_eq!(
        rpc(&url, Some(&token), r#"["stream.get", "account-1"]"#).status,
        200
    );
    assert_eq!(
        rpc(&url, Some(&token), r#"["drop.everything"]"#).status,
        404
    );
    let store = server.http_store().unwrap();
    store.create_namespace("tenant-a", "", None).unwrap();
    let sse = store
        .subscribe_sse(&SubscribeTarget::category("account", 1))
        .unwrap();
    // Three replayed pokes prove the stream is registered.
    for _ in 0..3 {
        sse.subscription()
            .recv_timeout(Duration::from_secs(20))
            .unwrap();
    }

    let a = get(&url, "/metrics", Some(&token));
    let samples = parse(&a.body);
    let rpc_calls = |method: &str, status: &str| {
        value(
            &samples,
            "eventodb_kit_server_rpc_calls_total",
            &[("method", method), ("status", status)],
        )
    };
    assert_eq!(rpc_calls("stream.write", "200"), Some(3.0));
    assert_eq!(rpc_calls("stream.get", "200"), Some(1.0));
    assert_eq!(rpc_calls("unknown", "404"), Some(1.0));
    assert_eq!(rpc_calls("ns.create", "200"), Some(1.0));
    let posts = value(
        &samples,
        "eventodb_kit_server_requests_total",
        &[("path", "/rpc"), ("method", "POST"), ("status", "200")],
    )
    .unwrap();
    assert!(posts >= 5.0, "{posts}");
    assert_eq!(
        value(
            &samples,
            "eventodb_kit_server_requests_total",
            &[("path", "/subscribe"), ("method", "GET"), ("status", "200")],
        ),
        Some(1.0)
    );
    assert!(value(
        &samples,
        "eventodb_kit_server_request_duration_seconds",
        &[("path", "/rpc"), ("quantile", "0.99")]
    )
    .is_some());
    assert_eq!(
        value(&samples, "eventodb_kit_server_namespaces", &[]),
        Some(2.0)
    );
    let head = |ns: &str| {
        value(
            &samples,
            "eventodb_kit_server_namespace_head_position",
            &[("namespace", ns)],
        )
    };
    assert_eq!(head("default"), Some(3.0));
    assert_eq!(head("tenant-a"), Some(0.0));
    assert_eq!(
        value(&samples, "eventodb_kit_server_sse_subscribers", &[]),
        Some(1.0)
    );
    assert!(value(&samples, "eventodb_kit_server_open_connections", &[]).unwrap() >= 1.0);
    assert_eq!(
        value(
            &samples,
            "eventodb_kit_server_info",
            &[("version", "0.7.0")]
        ),
        Some(1.0)
    );
    drop(sse);
    server.shutdown();
}

#[test]
fn a_kit_over_http_counts_lag_through_the_store_and_reports_health() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::new().data_dir(data.path())).unwrap();
    let token = server.default_token().unwrap().expose_secret().to_string();
    let dir = tempfile::tempdir().unwrap();
    let kit = Kit::builder()
        .database(dir.path().join("app.db"))
        .url(server.url())
        .token(token.as_str())
        .stalled_after(Duration::ZERO)
        .build()
        .unwrap();
    for i in 0..6 {
        kit.store()
            .write(
                &format!("order-{i}"),
                &NewMessage::new("Placed", json!({})),
                &WriteOptions::new(),
            )
            .unwrap();
    }
    kit.checkpoints().set("order", "late", 2).unwrap();
    let consumer = kit
        .consumer("order", "live")
        .spawn(|_m, _tx| Ok(()))
        .unwrap();
    consumer.wait_for_position(6, support_wait()).unwrap();
    let m = kit.metrics().unwrap();
    assert_eq!(m.store_error, None);
    let late = m.consumer("order", "late").unwrap();
    assert_eq!(late.lag.as_ref().unwrap().messages, 4);
    assert!(late.stalled, "lagging, nothing runs it, zero threshold");
    let live = m.consumer("order", "live").unwrap();
    assert_eq!(live.lag.as_ref().unwrap().messages, 0);
    assert!(!live.stalled);
    assert_eq!(kit.health().status, HealthStatus::Ok);

    // The server goes away: the outbox keeps writes, the sender fails.
    let sender = kit.spawn_sender(eventodb_kit::SenderConfig::new()).unwrap();
    server.shutdown();
    kit.outbox()
        .write("order-9", &NewMessage::new("Placed", json!({})))
        .unwrap();
    let health = kit.health();
    assert_eq!(
        health.status,
        HealthStatus::Degraded,
        "{:?}",
        health.reasons
    );
    assert!(!health.store_reachable);
    let m = kit.metrics().unwrap();
    assert_eq!(m.outbox.backlog, 1);
    assert!(m.store_error.is_some());
    sender.shutdown();
    consumer.shutdown();
}

fn support_wait() -> Duration {
    Duration::from_secs(20)
}
