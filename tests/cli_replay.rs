//! `eventodb-kit replay`, run as a user runs it: a range of a category is
//! re-delivered to one consumer (proved by running the consumer afterwards
//! and counting handler calls), the plan is shown and confirmation refused
//! without a terminal, pruned records are warned about, and `--wait`
//! follows the consumer.
#![cfg(feature = "cli")]

mod cli_support;

use std::time::Duration;

use cli_support::{cli, kit, position, run_consumer, s, write_messages};

#[test]
fn replay_redelivers_only_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let (kit, path) = kit(dir.path());
    let db = s(&path);
    write_messages(&kit, "order", 10);
    assert_eq!(run_consumer(&kit, "order", "audit", 10).len(), 10);
    let replay = [
        "replay",
        "--db",
        db,
        "--category",
        "order",
        "--consumer",
        "audit",
        "--from",
        "3",
        "--to",
        "5",
    ];
    let with = |extra: &[&str]| {
        let mut args = replay.to_vec();
        args.extend_from_slice(extra);
        cli(&args)
    };

    // Without a terminal and --yes: the plan is shown, nothing changes.
    let run = with(&[]).expect(4);
    assert!(run.stderr.contains("position        10 -> 2"), "{run:?}");
    assert!(
        run.stderr.contains("6..=10: 5 processed records kept"),
        "{run:?}"
    );
    assert_eq!(position(&kit, "order", "audit"), Some(10));
    let dry = with(&["--dry-run", "--json"]).expect(0).json();
    assert_eq!(dry["forgotten_records"], 3);
    assert_eq!(position(&kit, "order", "audit"), Some(10));

    let done = with(&["--yes", "--json"]).expect(0).json();
    assert_eq!(done["new_position"], 2);
    assert_eq!(done["forgotten_records"], 3);
    assert_eq!(done["kept_records"], 5);
    assert_eq!(done["may_rerun_after_range"], false);
    // The consumer's next run handles 3..=5 again, and only them.
    assert_eq!(run_consumer(&kit, "order", "audit", 10), [3, 4, 5]);

    // Out of range or unknown consumers are refused with what to do.
    let run = cli(&[
        "replay",
        "--db",
        db,
        "--category",
        "order",
        "--consumer",
        "audit",
        "--from",
        "11",
        "--yes",
    ])
    .expect(1);
    assert!(run.stderr.contains("nothing to replay"), "{run:?}");
    cli(&[
        "replay",
        "--db",
        db,
        "--category",
        "order",
        "--consumer",
        "nobody",
        "--from",
        "1",
        "--yes",
    ])
    .expect(3);
}

#[test]
fn replay_wait_follows_the_consumer_through_the_range() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let dir = tempfile::tempdir().unwrap();
    let (kit, path) = kit(dir.path());
    write_messages(&kit, "order", 6);
    run_consumer(&kit, "order", "audit", 6);
    let args = [
        "replay",
        "--db",
        s(&path),
        "--category",
        "order",
        "--consumer",
        "audit",
        "--from",
        "2",
        "--to",
        "4",
        "--yes",
        "--json",
        "--wait",
    ];
    // Nobody runs the consumer: --wait gives up (exit 6) and says the
    // replay itself is done.
    let mut quick = args.to_vec();
    quick.extend(["--timeout", "300ms"]);
    let run = cli(&quick).expect(6);
    assert!(run.stderr.contains("the replay itself is done"), "{run:?}");
    assert_eq!(position(&kit, "order", "audit"), Some(1));
    // Back to 6, as before (the records of 2..=4 stay forgotten).
    kit.checkpoints().set("order", "audit", 6).unwrap();

    let mut child = cli_support::command()
        .args(args)
        .args(["--timeout", "20s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("Waiting for the consumer") {
        line.clear();
        assert_ne!(
            stderr.read_line(&mut line).unwrap(),
            0,
            "the tool ended early"
        );
    }
    // The position has moved; now the app starts its consumer.
    assert_eq!(run_consumer(&kit, "order", "audit", 6), [2, 3, 4]);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["done"], true);
    assert_eq!(report["reached_position"], 6);
}

#[test]
fn replay_warns_when_records_after_the_range_were_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let (kit, path) = kit(dir.path());
    write_messages(&kit, "order", 8);
    run_consumer(&kit, "order", "audit", 8);
    // Retention pruned every processed record.
    kit.checkpoints()
        .delete_processed_older_than(Duration::ZERO)
        .unwrap();
    let args = [
        "replay",
        "--db",
        s(&path),
        "--category",
        "order",
        "--consumer",
        "audit",
        "--from",
        "2",
        "--to",
        "3",
    ];
    let run = cli(&args).expect(4);
    assert!(
        run.stderr.contains("WARNING: 5 messages after 3"),
        "{run:?}"
    );
    assert!(run.stderr.contains("pruned by retention"), "{run:?}");
    let mut yes = args.to_vec();
    yes.extend(["--yes", "--json"]);
    let run = cli(&yes).expect(0);
    assert_eq!(run.json()["unrecorded_after_range"], 5);
    assert!(
        run.stderr.contains("WARNING"),
        "--yes does not hide the warning: {run:?}"
    );
    assert_eq!(
        run_consumer(&kit, "order", "audit", 8),
        [2, 3, 4, 5, 6, 7, 8]
    );
}
