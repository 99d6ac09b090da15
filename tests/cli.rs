//! The `eventodb-kit` operator commands on a kit database, run as a user
//! runs them (the real binary, no terminal): `status`, `outbox`, `dlq`,
//! `positions` — human and `--json` output, exit codes,
//! confirmation refused without a terminal, `--yes`, and a missing
//! database refused rather than created.
#![cfg(feature = "cli")]

mod cli_support;

use std::time::Duration;

use eventodb_kit::consumer::FailurePolicy;
use eventodb_kit::outbox::{Delivery, SenderConfig};
use eventodb_kit::{Kit, NewMessage, RetryPolicy, WriteOptions};
use serde_json::json;

use cli_support::{cli, kit, position, run_consumer, s, write_messages, DEADLINE};

#[test]
fn a_missing_database_is_refused_and_never_created() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo.db");
    let run = cli(&["status", "--db", s(&missing)]).expect(3);
    assert!(run.stderr.contains("no database file"), "{run:?}");
    assert!(run.stderr.contains("what to do:"), "{run:?}");
    assert!(!missing.exists(), "the tool created the file");

    let run = cli(&["outbox", "list", "--db", s(&missing), "--json"]).expect(3);
    let e = run.error_json();
    assert_eq!(e["error"]["exit_code"], 3);
    assert_eq!(e["error"]["kind"], "not_found");
    assert!(e["error"]["hint"]
        .as_str()
        .unwrap()
        .contains("never creates"));
    assert!(!missing.exists());

    // No --db at all: a usage error that says how to give one.
    let run = cli(&["positions", "list"]).expect(2);
    assert!(run.stderr.contains("EVENTODB_KIT_DB"), "{run:?}");

    // An SQLite file that is not a kit database is not turned into one.
    let other = dir.path().join("other.db");
    eventodb_kit::rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    let run = cli(&["status", "--db", s(&other)]).expect(1);
    assert!(run.stderr.contains("no eventodb-kit tables"), "{run:?}");

    // The database also comes from EVENTODB_KIT_DB.
    let (_kit, path) = kit(dir.path());
    let run = cli_support::cli_env(
        &["positions", "list", "--json"],
        &[("EVENTODB_KIT_DB", s(&path))],
    )
    .expect(0);
    assert_eq!(run.json()["positions"], json!([]));
}

/// A kit whose outbox has one sent, one dead-lettered and two unsent
/// messages; returns their ids in that order.
fn outbox_with_every_state(kit: &Kit) -> Vec<String> {
    let outbox = kit.outbox();
    let sender = kit.spawn_sender(SenderConfig::new()).unwrap();
    let sent = outbox
        .write(
            "account-1",
            &NewMessage::new("Opened", json!({ "owner": "ann" })),
        )
        .unwrap();
    assert_eq!(
        sender.wait_until_sent(&sent, DEADLINE).unwrap(),
        Delivery::Sent
    );
    // The stream is at version 0: expecting 5 is refused → dead letter.
    let dead = outbox
        .write_with(
            "account-1",
            &NewMessage::new("Closed", json!({})),
            &WriteOptions::new().expected_version(5),
        )
        .unwrap();
    assert!(matches!(
        sender.wait_until_sent(&dead, DEADLINE).unwrap(),
        Delivery::DeadLettered { .. }
    ));
    sender.shutdown();
    let a = outbox
        .write(
            "account-2",
            &NewMessage::new("Opened", json!({ "owner": "bob" })),
        )
        .unwrap();
    let b = outbox
        .write(
            "order-9",
            &NewMessage::new("Placed", json!({ "total": 12 })),
        )
        .unwrap();
    vec![sent, dead, a, b]
}

#[test]
fn outbox_list_and_show() {
    let dir = tempfile::tempdir().unwrap();
    let (kit, path) = kit(dir.path());
    let ids = outbox_with_every_state(&kit);
    let db = s(&path);

    let all = cli(&["outbox", "list", "--db", db, "--json"])
        .expect(0)
        .json();
    assert_eq!(all["total"], 4);
    let states: Vec<&str> = all["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["sent", "dead-lettered", "unsent", "unsent"]);

    let ids_of = |args: &[&str]| -> Vec<String> {
        let mut full = vec!["outbox", "list", "--db", db, "--json"];
        full.extend_from_slice(args);
        cli(&full).expect(0).json()["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids_of(&["--unsent"]), [ids[2].clone(), ids[3].clone()]);
    assert_eq!(ids_of(&["--sent"]), [ids[0].clone()]);
    assert_eq!(ids_of(&["--dead"]), [ids[1].clone()]);
    assert_eq!(ids_of(&["--stream", "order-9"]), [ids[3].clone()]);
    assert!(ids_of(&["--older-than", "1h"]).is_empty());
    assert_eq!(ids_of(&["--limit", "1"]).len(), 1);
    cli(&["outbox", "list", "--db", db, "--sent", "--dead"]).expect(2);

    let text = cli(&["outbox", "list", "--db", db, "--unsent"])
        .expect(0)
        .stdout;
    assert!(
        text.contains("STREAM") && text.contains("order-9") && text.contains(&ids[3]),
        "{text}"
    );
    assert!(!text.contains("account-1"), "{text}");

    let shown = cli(&["outbox", "show", &ids[1], "--db", db, "--json"])
        .expect(0)
        .json();
    assert_eq!(shown["state"], "dead-lettered");
    assert_eq!(shown["data"], json!({}));
    assert_eq!(shown["expected_version"], 5);
    assert!(
        shown["last_error"].as_str().unwrap().contains("version"),
        "{shown}"
    );
    let text = cli(&["outbox", "show", &ids[3], "--db", db])
        .expect(0)
        .stdout;
    assert!(
        text.contains("\"total\":12") && text.contains("unsent"),
        "{text}"
    );

    let run = cli(&["outbox", "show", "no-such-id", "--db", db]).expect(3);
    assert!(run.stderr.contains("outbox list"), "{run:?}");
}

/// Adds a consumer dead letter: consumer "mailer" of category "order"
/// fails on every message of stream order-9.
fn consumer_dead_letter(kit: &Kit) {
    let consumer = kit
        .consumer("order", "mailer")
        .retry_policy(RetryPolicy::new().max_attempts(1))
        .spawn_typed(|msg, _tx| {
            if msg.stream_name == "order-9" {
                Err("mail server said no".to_string())
            } else {
                Ok(())
            }
        })
        .unwrap();
    let written = kit
        .store()
        .write(
            "order-9",
            &NewMessage::new("Placed", json!({ "total": 3 })),
            &WriteOptions::new(),
        )
        .unwrap();
    consumer
        .wait_for_position(written.global_position, DEADLINE)
        .unwrap();
    consumer.shutdown();
}

#[test]
fn dlq_list_show_requeue_purge() {
    let dir = tempfile::tempdir().unwrap();
    let (kit, path) = kit(dir.path());
    let ids = outbox_with_every_state(&kit);
    consumer_dead_letter(&kit);
    let db = s(&path);

    let list = cli(&["dlq", "list", "--db", db, "--json"]).expect(0).json();
    assert_eq!(list["total"], 2);
    let letters = list["dead_letters"].as_array().unwrap();
    assert_eq!(letters[0]["source"], "outbox");
    assert_eq!(letters[0]["message_id"], ids[1].as_str());
    assert_eq!(letters[1]["source"], "consumer");
    assert_eq!(letters[1]["consumer_id"], "mailer");
    assert_eq!(letters[1]["error"], "mail server said no");
    let (outbox_dl, consumer_dl) = (
        letters[0]["id"].as_i64().unwrap(),
        letters[1]["id"].as_i64().unwrap(),
    );
    let consumers = cli(&["dlq", "list", "--db", db, "--source", "consumer", "--json"])
        .expect(0)
        .json();
    assert_eq!(consumers["total"], 1);
    let text = cli(&["dlq", "list", "--db", db]).expect(0).stdout;
    assert!(
        text.contains("mail server said no") && text.contains("order/mailer"),
        "{text}"
    );

    let shown = cli(&[
        "dlq",
        "show",
        &consumer_dl.to_string(),
        "--db",
        db,
        "--json",
    ])
    .expect(0)
    .json();
    assert_eq!(shown["message"]["data"], json!({ "total": 3 }));
    assert_eq!(shown["attempts"], 1);
    cli(&["dlq", "show", "999", "--db", db]).expect(3);

    // A selection is required; unknown ids are refused.
    let run = cli(&["dlq", "purge", "--db", db]).expect(2);
    assert!(run.stderr.contains("--all"), "{run:?}");
    cli(&["dlq", "requeue", "999", "--db", db]).expect(3);

    // Destructive without a terminal and without --yes: refused, nothing changes.
    let run = cli(&["dlq", "purge", "--all", "--db", db]).expect(4);
    assert!(run.stderr.contains("--yes"), "{run:?}");
    assert!(run.stderr.contains("2 dead letters"), "{run:?}");
    let run = cli(&[
        "dlq", "requeue", "--source", "consumer", "--db", db, "--json",
    ])
    .expect(4);
    assert_eq!(run.error_json()["error"]["kind"], "not_confirmed");
    assert_eq!(kit.dlq().count(&Default::default()).unwrap(), 2);

    // Requeuing one dead letter by id needs no confirmation: the outbox
    // message is back in line.
    let done = cli(&[
        "dlq",
        "requeue",
        &outbox_dl.to_string(),
        "--db",
        db,
        "--json",
    ])
    .expect(0)
    .json();
    assert_eq!(done["requeued"], 1);
    assert_eq!(
        kit.outbox().get(&ids[1]).unwrap().state(),
        eventodb_kit::outbox::OutboxState::Pending
    );
    // Bulk requeue with --yes marks the consumer dead letter for a re-run.
    cli(&[
        "dlq",
        "requeue",
        "--consumer",
        "mailer",
        "--yes",
        "--db",
        db,
    ])
    .expect(0);
    assert!(kit.dlq().get(consumer_dl).unwrap().requeued_at.is_some());

    let text = cli(&["dlq", "purge", "--all", "--yes", "--db", db])
        .expect(0)
        .stdout;
    assert!(text.contains("Purged 1 dead letter"), "{text}");
    assert_eq!(kit.dlq().count(&Default::default()).unwrap(), 0);
    let none = cli(&["dlq", "purge", "--all", "--yes", "--db", db, "--json"])
        .expect(0)
        .json();
    assert_eq!(none["purged"], 0);
}

#[test]
fn positions_list_and_reset() {
    let dir = tempfile::tempdir().unwrap();
    let (kit, path) = kit(dir.path());
    let db = s(&path);
    write_messages(&kit, "order", 5);
    assert_eq!(run_consumer(&kit, "order", "audit", 5).len(), 5);

    let list = cli(&["positions", "list", "--db", db, "--json"])
        .expect(0)
        .json();
    assert_eq!(list["positions"][0]["consumer_id"], "audit");
    assert_eq!(list["positions"][0]["position"], 5);
    let text = cli(&["positions", "list", "--db", db]).expect(0).stdout;
    assert!(
        text.contains("audit") && text.contains("POSITION"),
        "{text}"
    );

    let reset = [
        "positions",
        "reset",
        "--db",
        db,
        "--category",
        "order",
        "--consumer",
        "audit",
    ];
    let with = |extra: &[&str]| {
        let mut args = reset.to_vec();
        args.extend_from_slice(extra);
        cli(&args)
    };
    with(&[]).expect(2); // where to?
    with(&["--to-position", "2", "--to-start"]).expect(2);
    let run = with(&["--to-position", "2"]).expect(4);
    assert!(
        run.stderr.contains("from global position 5 to 2"),
        "{run:?}"
    );
    assert_eq!(position(&kit, "order", "audit"), Some(5));
    let dry = with(&["--to-position", "2", "--dry-run", "--json"])
        .expect(0)
        .json();
    assert_eq!(
        (
            dry["previous_position"].clone(),
            dry["new_position"].clone()
        ),
        (json!(5), json!(2))
    );
    assert_eq!(position(&kit, "order", "audit"), Some(5));

    let done = with(&["--to-position", "2", "--yes", "--json"])
        .expect(0)
        .json();
    assert_eq!(done["new_position"], 2);
    assert_eq!(position(&kit, "order", "audit"), Some(2));
    // Its records after 2 are gone: 3..=5 are handled again.
    assert_eq!(run_consumer(&kit, "order", "audit", 5), [3, 4, 5]);

    // To a time: an hour ago is before every message, so back to 0.
    with(&["--to-time", "1h", "--yes"]).expect(0);
    assert_eq!(position(&kit, "order", "audit"), Some(0));
    with(&["--to-start", "--yes"]).expect(0);
    assert_eq!(position(&kit, "order", "audit"), None);
    let run = with(&["--to-start", "--yes"]).expect(3);
    assert!(run.stderr.contains("positions list"), "{run:?}");
}

#[test]
fn status_shows_a_stalled_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let (kit, path) = kit(dir.path());
    let db = s(&path);
    write_messages(&kit, "order", 5);
    // "billing" halts on its poison message at global position 3.
    let billing = kit
        .consumer("order", "billing")
        .retry_policy(RetryPolicy::new().max_attempts(1))
        .failure_policy(FailurePolicy::Stop)
        .spawn_typed(|msg, _tx| {
            if msg.global_position == 3 {
                Err("cannot bill".to_string())
            } else {
                Ok(())
            }
        })
        .unwrap();
    assert!(billing.wait_for_position(5, DEADLINE).is_err());
    billing.shutdown();
    // "audit" is caught up.
    run_consumer(&kit, "order", "audit", 5);
    // The halt happened an hour ago.
    kit.db()
        .write(|tx| {
            tx.execute(
                "UPDATE evento_consumer_positions SET updated_at = updated_at - 3600000
                 WHERE consumer_id = 'billing'",
                [],
            )?;
            Ok(())
        })
        .unwrap();
    // A running sender (of the app, say) holds the lease.
    let sender = kit
        .spawn_sender(SenderConfig::new().lease_duration(Duration::from_secs(60)))
        .unwrap();
    kit.outbox()
        .write("invoice-1", &NewMessage::new("Sent", json!({})))
        .unwrap();
    sender.wait_until_drained(DEADLINE).unwrap();

    let status = cli(&["status", "--db", db, "--json"]).expect(0).json();
    let consumers = status["consumers"].as_array().unwrap();
    let find = |id: &str| {
        consumers
            .iter()
            .find(|c| c["consumer_id"] == id)
            .unwrap()
            .clone()
    };
    let billing = find("billing");
    assert_eq!(billing["position"], 2);
    assert_eq!(billing["lag"]["messages"], 3);
    assert_eq!(billing["lag"]["at_least"], false);
    assert_eq!(billing["lag"]["head_position"], 5);
    assert!(billing["lag"]["seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(billing["stalled"], true);
    let time =
        |v: &serde_json::Value| eventodb_kit::time::parse_rfc3339(v.as_str().unwrap()).unwrap();
    let idle = time(&status["taken_at"])
        .duration_since(time(&billing["last_progress_at"]))
        .unwrap();
    assert!(idle >= Duration::from_secs(3600), "{idle:?}");
    let audit = find("audit");
    assert_eq!(
        (audit["lag"]["messages"].clone(), audit["stalled"].clone()),
        (json!(0), json!(false))
    );
    assert_eq!(audit["lag"]["seconds"], 0.0);
    assert_eq!(status["outbox"]["lease"]["holder"], sender.holder_id());
    assert_eq!(status["outbox"]["lease"]["held"], true);
    assert_eq!(status["namespace"], "default");
    assert_eq!(status["database"], db);
    assert_eq!(status["store_error"], serde_json::Value::Null);
    assert_eq!(
        (
            &status["dead_letters"]["outbox"],
            &status["dead_letters"]["consumer"]
        ),
        (&json!(0), &json!(0))
    );

    let text = cli(&["status", "--db", db]).expect(0).stdout;
    assert!(text.contains("STALLED"), "{text}");
    assert!(
        text.contains("consumer \"billing\" of \"order\" is stalled"),
        "{text}"
    );
    assert!(text.contains(sender.holder_id()), "{text}");
    // With a longer threshold it is only behind.
    let status = cli(&["status", "--db", db, "--stalled-after", "2h", "--json"])
        .expect(0)
        .json();
    assert!(status["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["stalled"] == false));

    // No sender any more, and a message waits.
    sender.shutdown();
    kit.outbox()
        .write("invoice-2", &NewMessage::new("Sent", json!({})))
        .unwrap();
    let status = cli(&["status", "--db", db, "--json"]).expect(0).json();
    assert_eq!(status["outbox"]["backlog"], 1);
    assert!(status["outbox"]["oldest_unsent_age"].as_f64().unwrap() >= 0.0);
    assert_eq!(status["outbox"]["lease"]["held"], false);
    let text = cli(&["status", "--db", db]).expect(0).stdout;
    assert!(text.contains("backlog        1 message,"), "{text}");
    assert!(text.contains("no sender is running"), "{text}");
    assert!(text.contains("eventodb-kit drain"), "{text}");
}

#[test]
fn every_command_explains_itself() {
    for args in [
        vec!["--help"],
        vec!["status", "--help"],
        vec!["outbox", "list", "--help"],
        vec!["outbox", "show", "--help"],
        vec!["dlq", "list", "--help"],
        vec!["dlq", "show", "--help"],
        vec!["dlq", "requeue", "--help"],
        vec!["dlq", "purge", "--help"],
        vec!["positions", "list", "--help"],
        vec!["positions", "reset", "--help"],
        vec!["replay", "--help"],
        vec!["drain", "--help"],
        vec!["export", "--help"],
        vec!["import", "--help"],
    ] {
        let run = cli(&args).expect(0);
        assert!(run.stdout.contains("Usage:"), "{args:?}: {run:?}");
        if args.len() > 1 && args[0] != "dlq" && args[0] != "export" && args[0] != "import" {
            assert!(run.stdout.contains("--db <FILE>"), "{args:?}: {run:?}");
        }
    }
    let run = cli(&["--help"]).expect(0);
    assert!(run.stdout.contains("Exit codes"), "{run:?}");
    cli(&["status", "--no-such-flag"]).expect(2);
}

#[test]
fn the_apps_environment_is_all_the_tool_needs() {
    // An app configured by Kit::from_env with an embedded URL and a token:
    // its tables and store are in that file, in the token's namespace.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.db");
    let url = format!("embedded://{}", path.display());
    let token = eventodb_kit::Token::generate("tenant-a").unwrap();
    let token = token.expose_secret();
    let env = [("EVENTODB_URL", url.as_str()), ("EVENTODB_TOKEN", token)];
    let kit = eventodb_kit::KitBuilder::from_lookup(|name| {
        env.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_string())
    })
    .unwrap()
    .build()
    .unwrap();
    assert_eq!(kit.namespace(), "tenant-a");
    kit.outbox()
        .write("invoice-1", &NewMessage::new("Sent", json!({})))
        .unwrap();

    // The same environment, no flags: the same database, store and namespace.
    let run = cli_support::cli_env(&["status", "--json"], &env).expect(0);
    let status = run.json();
    assert_eq!(status["namespace"], "tenant-a");
    assert_eq!(status["database"], s(&path));
    assert_eq!(status["outbox"]["backlog"], 1);
    assert!(!run.stderr.contains("note:"), "{run:?}");

    // A store in memory cannot be seen from another process: said so.
    let run = cli_support::cli_env(
        &["status", "--db", s(&path)],
        &[("EVENTODB_URL", "embedded::memory:")],
    )
    .expect(2);
    assert!(run.stderr.contains("inside the process"), "{run:?}");
    assert!(run.stderr.contains("what to do:"), "{run:?}");
}
