//! The local database: pragmas, and versioned migrations applied on open,
//! idempotent, reversible, and upgrading files left at an older version.

use eventodb_kit::db::SCHEMA_VERSION;
use eventodb_kit::{Db, DbOptions, Synchronous};
use rusqlite::Connection;

fn tables(db: &Db) -> Vec<String> {
    db.read(|c| {
        let mut stmt = c.prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'evento_%'
             AND name <> 'evento_schema_versions' ORDER BY name",
        )?;
        let names = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(names)
    })
    .unwrap()
}

fn insert_outbox_row(db: &Db, id: &str) {
    db.write(|tx| {
        tx.execute(
            "INSERT INTO evento_outbox (id, namespace, stream, type, data, created_at)
             VALUES (?1, 'default', 'account-1', 'Opened', '{}', 0)",
            [id],
        )?;
        Ok(())
    })
    .unwrap();
}

fn outbox_ids(db: &Db) -> Vec<String> {
    db.read(|c| {
        let mut stmt = c.prepare("SELECT id FROM evento_outbox ORDER BY seq")?;
        let ids = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(ids)
    })
    .unwrap()
}

const ALL_TABLES: [&str; 5] = [
    "evento_consumer_positions",
    "evento_dead_letters",
    "evento_leases",
    "evento_outbox",
    "evento_processed_events",
];

#[test]
fn open_migrates_an_empty_file_and_reopening_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kit.db");
    let db = Db::open(&path).unwrap();
    assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(tables(&db), ALL_TABLES);
    insert_outbox_row(&db, "row-1");
    db.migrate_to(SCHEMA_VERSION).unwrap();
    drop(db);
    let again = Db::open(&path).unwrap();
    assert_eq!(again.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(outbox_ids(&again), ["row-1"], "re-running keeps the data");
}

#[test]
fn down_then_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("kit.db")).unwrap();
    insert_outbox_row(&db, "row-1");
    db.migrate_to(1).unwrap();
    assert_eq!(db.schema_version().unwrap(), 1);
    assert_eq!(
        tables(&db),
        [
            "evento_consumer_positions",
            "evento_outbox",
            "evento_processed_events"
        ]
    );
    assert_eq!(
        outbox_ids(&db),
        ["row-1"],
        "version 1's tables keep their rows"
    );
    db.migrate_to(0).unwrap();
    assert!(tables(&db).is_empty());
    db.migrate_to(SCHEMA_VERSION).unwrap();
    assert_eq!(tables(&db), ALL_TABLES);
    assert!(outbox_ids(&db).is_empty());
}

#[test]
fn opening_a_file_at_an_older_version_upgrades_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let old = Db::open_with(&path, DbOptions::new().migrate(false)).unwrap();
        assert_eq!(old.schema_version().unwrap(), 0);
        old.migrate_to(1).unwrap();
        insert_outbox_row(&old, "from-v1");
    }
    let db = Db::open(&path).unwrap();
    assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(tables(&db), ALL_TABLES);
    assert_eq!(outbox_ids(&db), ["from-v1"]);
}

#[test]
fn a_newer_schema_than_this_build_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.db");
    Db::open(&path).unwrap();
    let conn = Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE evento_schema_versions SET version = 99 WHERE component = 'kit'",
        [],
    )
    .unwrap();
    drop(conn);
    let err = Db::open(&path).unwrap_err().to_string();
    assert!(err.contains("newer than this build knows"), "{err}");
}

#[test]
fn connections_get_the_pragmas() {
    let dir = tempfile::tempdir().unwrap();
    let normal = Db::open(dir.path().join("a.db")).unwrap();
    let full = Db::open_with(
        dir.path().join("b.db"),
        DbOptions::new().synchronous(Synchronous::Full),
    )
    .unwrap();
    let pragma = |db: &Db, name: &str| -> String {
        db.read(|c| {
            Ok(c.query_row(&format!("PRAGMA {name}"), [], |r| {
                r.get::<_, rusqlite::types::Value>(0)
            })?)
        })
        .map(|v| match v {
            rusqlite::types::Value::Integer(i) => i.to_string(),
            rusqlite::types::Value::Text(t) => t,
            other => format!("{other:?}"),
        })
        .unwrap()
    };
    assert_eq!(pragma(&normal, "journal_mode"), "wal");
    assert_eq!(pragma(&normal, "synchronous"), "1");
    assert_eq!(pragma(&full, "synchronous"), "2");
    assert_eq!(pragma(&normal, "foreign_keys"), "1");
    assert_eq!(pragma(&normal, "busy_timeout"), "5000");
}

#[test]
fn in_memory_database_is_migrated_and_usable() {
    let db = Db::open_in_memory().unwrap();
    assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
    insert_outbox_row(&db, "mem-1");
    assert_eq!(outbox_ids(&db), ["mem-1"]);
}

#[test]
fn write_rolls_back_on_error() {
    let db = Db::open_in_memory().unwrap();
    let result: eventodb_kit::Result<()> = db.write(|tx| {
        tx.execute(
            "INSERT INTO evento_outbox (id, namespace, stream, type, data, created_at)
             VALUES ('x', 'default', 's-1', 'T', '{}', 0)",
            [],
        )?;
        Err(eventodb_kit::Error::InvalidInput("changed my mind".into()))
    });
    assert!(result.is_err());
    assert!(outbox_ids(&db).is_empty());
}

#[test]
fn version_3_keeps_positions_and_processed_records_and_goes_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.db");
    {
        let old = Db::open_with(&path, DbOptions::new().migrate(false)).unwrap();
        old.migrate_to(2).unwrap();
        old.write(|tx| {
            tx.execute_batch(
                "INSERT INTO evento_consumer_positions
                   (namespace, category, consumer_id, position, group_member, group_size, updated_at)
                 VALUES ('default', 'order', 'ledger', 7, 0, 0, 1000),
                        ('default', 'order', 'audit', 3, 0, 0, 1000);
                 INSERT INTO evento_processed_events
                   (namespace, category, consumer_id, event_id, event_type, global_position, processed_at)
                 VALUES ('default', 'order', 'ledger', 'e5', 'T', 5, 2000),
                        ('default', 'order', 'ledger', 'e7', 'T', 7, 2000),
                        ('default', 'order', 'audit', 'e3', 'T', 3, 2000);",
            )?;
            Ok(())
        })
        .unwrap();
    }
    let db = Db::open(&path).unwrap();
    assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
    let records = |db: &Db| -> Vec<(String, i64)> {
        db.read(|c| {
            let mut stmt = c.prepare(
                "SELECT p.consumer_id, e.first_position + j.value FROM evento_processed_events e
                   JOIN evento_consumer_positions p USING (consumer_key), json_each(e.offsets) j
                  ORDER BY 1, 2",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .unwrap()
    };
    assert_eq!(
        records(&db),
        [
            ("audit".into(), 3),
            ("ledger".into(), 5),
            ("ledger".into(), 7)
        ]
    );
    let kit = eventodb_kit::Kit::builder().db(db.clone()).build().unwrap();
    assert_eq!(
        kit.checkpoints()
            .get("order", "ledger")
            .unwrap()
            .unwrap()
            .position,
        7
    );

    db.migrate_to(2).unwrap();
    let ids: Vec<(String, i64)> = db
        .read(|c| {
            let mut stmt = c.prepare(
                "SELECT event_id, global_position FROM evento_processed_events ORDER BY 2",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .unwrap();
    assert_eq!(
        ids,
        [("gp:3".into(), 3), ("gp:5".into(), 5), ("gp:7".into(), 7)]
    );
}

#[test]
fn version_4_stores_a_pause_with_the_lease_and_goes_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("kit.db")).unwrap();
    let columns = |db: &Db| -> Vec<String> {
        db.read(|c| {
            let mut stmt = c.prepare("SELECT name FROM pragma_table_info('evento_leases')")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .unwrap()
    };
    let pause_columns = ["pause_reason", "paused_since", "pause_error"];
    assert!(pause_columns
        .iter()
        .all(|c| columns(&db).contains(&c.to_string())));
    db.write(|tx| {
        tx.execute(
            "INSERT INTO evento_leases
               (name, holder, fencing_token, expires_at, acquired_at, renewed_at, locked,
                pause_reason, paused_since, pause_error)
             VALUES ('outbox-sender:default', 'h', 1, 9, 1, 1, 0, 'auth_refused', 5, 'no')",
            [],
        )?;
        Ok(())
    })
    .unwrap();
    db.migrate_to(3).unwrap();
    assert!(!pause_columns
        .iter()
        .any(|c| columns(&db).contains(&c.to_string())));
    db.migrate_to(SCHEMA_VERSION).unwrap();
    let holder: String = db
        .read(|c| Ok(c.query_row("SELECT holder FROM evento_leases", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(holder, "h", "the lease row stays");
}
