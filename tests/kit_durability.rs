//! Durability is set once: a kit given an embedded store adopts its
//! `synchronous` setting, and refuses settings that say otherwise; a kit
//! that talks to an `HttpStore` keeps only its own tables in its file.

use eventodb_kit::server::{Server, ServerConfig};
use eventodb_kit::{Db, DbOptions, EmbeddedStore, Error, Kit, Synchronous};

fn synchronous(kit: &Kit) -> i64 {
    kit.db()
        .read(|c| Ok(c.query_row("PRAGMA synchronous", [], |r| r.get(0))?))
        .unwrap()
}

fn tables(kit: &Kit) -> Vec<String> {
    kit.db()
        .read(|c| {
            let mut stmt = c.prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'evento_%' ORDER BY name",
            )?;
            let names = stmt.query_map([], |r| r.get(0))?;
            Ok(names.collect::<rusqlite::Result<Vec<String>>>()?)
        })
        .unwrap()
}

#[test]
fn a_kit_adopts_its_embedded_stores_durability() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let full = DbOptions::new().synchronous(Synchronous::Full);
    let store = EmbeddedStore::open_with(&path, full.clone()).unwrap();
    assert_eq!(store.synchronous(), Synchronous::Full);
    let kit = Kit::builder()
        .database(&path)
        .store(store.clone())
        .build()
        .unwrap();
    assert_eq!(kit.db().synchronous(), Synchronous::Full);
    assert_eq!(synchronous(&kit), 2, "FULL on the kit's connections too");

    // Saying the same twice is fine; saying otherwise is refused.
    Kit::builder()
        .database(&path)
        .db_options(full)
        .store(store.clone())
        .build()
        .unwrap();
    let err = Kit::builder()
        .database(&path)
        .db_options(DbOptions::new().synchronous(Synchronous::Normal))
        .store(store.clone())
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput(m) if m.contains("synchronous")),
        "{err}"
    );
    let normal_db = Db::open(&path).unwrap();
    let err = Kit::builder()
        .db(normal_db)
        .store(store)
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
}

#[test]
fn the_store_a_kit_opens_uses_the_kits_durability() {
    let dir = tempfile::tempdir().unwrap();
    let kit = Kit::builder()
        .database(dir.path().join("app.db"))
        .db_options(DbOptions::new().synchronous(Synchronous::Full))
        .build()
        .unwrap();
    assert_eq!(synchronous(&kit), 2);
    let store = kit.store().clone();
    let tables = tables(&kit);
    assert!(
        tables.contains(&"evento_store_messages".to_string()),
        "{tables:?}"
    );
    drop(store);
}

#[test]
fn a_kit_with_an_http_store_has_no_embedded_store_tables() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::new()).unwrap();
    let kit = Kit::builder()
        .database(dir.path().join("app.db"))
        .store(server.http_store().unwrap())
        .build()
        .unwrap();
    assert_eq!(
        tables(&kit),
        [
            "evento_consumer_positions",
            "evento_dead_letters",
            "evento_leases",
            "evento_outbox",
            "evento_processed_events",
            "evento_schema_versions",
        ]
    );
    drop(kit);
    server.shutdown();
}
