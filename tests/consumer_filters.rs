//! What a consumer hands its handler: type filters with wildcards,
//! correlation, metadata predicates, and typed dispatch (including data that
//! does not deserialize and unknown types).

mod consumer_support;

use std::time::Duration;

use crossbeam_channel::unbounded;
use eventodb_kit::consumer::{Dispatcher, UnknownTypes};
use eventodb_kit::dlq::DeadLetterFilter;
use eventodb_kit::{NewMessage, RetryPolicy};
use serde::Deserialize;
use serde_json::json;

use consumer_support::{effects, kit, record_effect, write, write_msg, DEADLINE};

#[test]
fn type_filters_take_exact_names_and_prefix_wildcards() {
    let (kit, _dir) = kit();
    for t in [
        "UserCreated",
        "UserDeleted",
        "product.added",
        "UserCreatedV2",
        "product.removed",
        "productAdded",
    ] {
        write(&kit, "catalog-1", t, json!({}));
    }
    let (tx, rx) = unbounded();
    let c = kit
        .consumer("catalog", "typed")
        .types(["UserCreated", "product.*"])
        .spawn(move |msg, _tx| {
            tx.send(msg.message_type.clone()).unwrap();
            Ok(())
        })
        .unwrap();
    c.wait_for_position(6, DEADLINE).unwrap();
    let seen: Vec<String> = rx.try_iter().collect();
    assert_eq!(seen, ["UserCreated", "product.added", "product.removed"]);
    let stats = c.stats();
    assert_eq!((stats.processed, stats.filtered), (3, 3));
    c.shutdown();
    assert_eq!(
        kit.checkpoints()
            .get("catalog", "typed")
            .unwrap()
            .unwrap()
            .position,
        6,
        "filtered messages move the position too"
    );

    let err = kit
        .consumer("catalog", "bad")
        .types(["pro*duct"])
        .spawn(|_, _| Ok(()))
        .unwrap_err();
    assert!(err.to_string().contains("only allowed at the end"), "{err}");
}

#[test]
fn correlation_and_metadata_predicates_select_messages() {
    let (kit, _dir) = kit();
    let msg = |wf: &str, corr: &str| {
        NewMessage::new("Step", json!({}))
            .correlation_stream_name(corr)
            .metadata_value("workflowId", wf)
    };
    write_msg(&kit, "job-1", msg("wf-1", "workflow-1"));
    write_msg(&kit, "job-1", msg("wf-2", "other-2"));
    write_msg(&kit, "job-2", msg("wf-3", "workflow-3"));
    write_msg(&kit, "job-2", NewMessage::new("Step", json!({})));
    let last = write_msg(&kit, "job-3", msg("wf-2", "workflow-9")).global_position;

    let correlated = kit
        .consumer("job", "correlated")
        .correlation("workflow")
        .spawn(|msg, tx| record_effect("correlated", msg, tx))
        .unwrap();
    let mine = kit
        .consumer("job", "mine")
        .metadata_in("workflowId", ["wf-2", "wf-3"])
        .spawn(|msg, tx| record_effect("mine", msg, tx))
        .unwrap();
    let custom = kit
        .consumer("job", "custom")
        .metadata_filter(|m| m.is_null())
        .spawn(|msg, tx| record_effect("custom", msg, tx))
        .unwrap();
    correlated.wait_for_position(last, DEADLINE).unwrap();
    mine.wait_for_position(last, DEADLINE).unwrap();
    custom.wait_for_position(last, DEADLINE).unwrap();
    assert_eq!(effects(&kit, "correlated"), [1, 3, 5]);
    assert_eq!(effects(&kit, "mine"), [2, 3, 5]);
    assert_eq!(
        effects(&kit, "custom"),
        [4],
        "no metadata: the predicate sees null"
    );
    for c in [correlated, mine, custom] {
        c.shutdown();
    }
}

#[derive(Debug, Deserialize)]
struct UserCreated {
    name: String,
}

#[derive(Debug, Deserialize)]
struct UserRenamed {
    name: String,
}

#[test]
fn the_dispatcher_routes_types_to_typed_handlers_and_rejects_bad_data() {
    let (kit, _dir) = kit();
    write(&kit, "user-1", "UserCreated", json!({ "name": "ann" }));
    write(&kit, "user-1", "UserRenamed", json!({ "name": "anne" }));
    write(&kit, "user-2", "UserCreated", json!({ "nme": "typo" }));
    write(&kit, "user-2", "UserLoggedIn", json!({}));
    let last = write(&kit, "user-3", "UserCreated", json!({ "name": "bob" })).global_position;

    let (tx, rx) = unbounded();
    let renamed = tx.clone();
    let dispatcher = Dispatcher::new()
        .on("UserCreated", move |e: UserCreated, msg, _tx| {
            tx.send(format!("created {} at {}", e.name, msg.global_position))
                .unwrap();
            Ok(())
        })
        .on("UserRenamed", move |e: UserRenamed, _msg, _tx| {
            renamed.send(format!("renamed to {}", e.name)).unwrap();
            Ok(())
        });
    assert_eq!(dispatcher.types(), ["UserCreated", "UserRenamed"]);
    let c = kit
        .consumer("user", "users")
        .retry_policy(
            RetryPolicy::new()
                .initial_delay(Duration::from_millis(1))
                .max_attempts(2),
        )
        .spawn(dispatcher.into_handler())
        .unwrap();
    c.wait_for_position(last, DEADLINE).unwrap();
    // The bad message fails its batch's transaction, which is then done
    // again message by message: the handlers before it run twice, and only
    // the second run's work counts.
    let mut seen: Vec<String> = Vec::new();
    for line in rx.try_iter() {
        if !seen.contains(&line) {
            seen.push(line);
        }
    }
    assert_eq!(
        seen,
        ["created ann at 1", "renamed to anne", "created bob at 5"]
    );
    let letters = kit.dlq().list(&DeadLetterFilter::new()).unwrap();
    assert_eq!(letters.len(), 1, "only the bad data is dead-lettered");
    let error = &letters[0].error;
    assert!(
        error.contains("UserCreated") && error.contains("missing field `name`"),
        "a clear error: {error}"
    );
    assert_eq!(c.stats().processed, 4, "the unknown type counts as handled");
    c.shutdown();
}

#[test]
fn the_dispatcher_can_refuse_unknown_types() {
    let (kit, _dir) = kit();
    write(&kit, "user-1", "UserLoggedIn", json!({}));
    let mut dispatcher = Dispatcher::new()
        .on("UserCreated", |_: UserCreated, _, _| Ok(()))
        .unknown_types(UnknownTypes::Fail);
    let msg = kit
        .store()
        .get_category("user", &Default::default())
        .unwrap()
        .remove(0);
    kit.db()
        .write(|tx| {
            let err = dispatcher.handle(&msg, tx).unwrap_err();
            assert!(
                err.to_string()
                    .contains("no handler for message type \"UserLoggedIn\""),
                "{err}"
            );
            Ok(())
        })
        .unwrap();
}
