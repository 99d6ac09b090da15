//! Versioned, reversible schema migrations kept in one SQL file.
//!
//! A script is split at `-- migrate:up N` / `-- migrate:down N` markers. The
//! applied version of each component (the kit's tables, the embedded store's
//! tables) is a row of `evento_schema_versions`, so both can share one file.
//! Every step runs inside one `BEGIN IMMEDIATE` transaction that re-reads the
//! version first, so concurrent openers apply each step once.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::error::{Error, Result};

/// One step of a schema; the `n`-th (from 1) takes version `n - 1` to `n`.
#[derive(Debug)]
pub(crate) struct Migration {
    pub(crate) up: String,
    pub(crate) down: String,
}

/// The migrations of one component.
#[derive(Debug)]
pub(crate) struct Schema {
    pub(crate) component: &'static str,
    pub(crate) migrations: Vec<Migration>,
}

impl Schema {
    /// Parses a migration script. Panics on a malformed script: scripts are
    /// compiled into the crate and covered by tests.
    pub(crate) fn parse(component: &'static str, script: &str) -> Schema {
        let mut migrations: Vec<Migration> = Vec::new();
        let mut current: Option<(bool, u32)> = None;
        for line in script.lines() {
            let marker = line.trim();
            if let Some(rest) = marker.strip_prefix("-- migrate:") {
                let (dir, num) = rest
                    .split_once(' ')
                    .expect("migration marker has a version");
                let version: u32 = num.trim().parse().expect("migration version is a number");
                let is_up = match dir {
                    "up" => true,
                    "down" => false,
                    other => panic!("unknown migration direction {other}"),
                };
                if is_up {
                    assert_eq!(
                        version as usize,
                        migrations.len() + 1,
                        "migrations must be numbered 1, 2, 3, …"
                    );
                    migrations.push(Migration {
                        up: String::new(),
                        down: String::new(),
                    });
                } else {
                    assert_eq!(version as usize, migrations.len(), "down follows its up");
                }
                current = Some((is_up, version));
                continue;
            }
            if let Some((is_up, _)) = current {
                let m = migrations.last_mut().expect("a section is open");
                let text = if is_up { &mut m.up } else { &mut m.down };
                text.push_str(line);
                text.push('\n');
            }
        }
        Schema {
            component,
            migrations,
        }
    }

    /// The newest version this schema knows.
    pub(crate) fn latest(&self) -> u32 {
        self.migrations.len() as u32
    }
}

const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS evento_schema_versions (
    component  TEXT    PRIMARY KEY,
    version    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
)";

/// The applied version of `component` (0 = nothing applied).
pub(crate) fn current_version(conn: &Connection, component: &str) -> Result<u32> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'evento_schema_versions')",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(0);
    }
    let v: Option<u32> = conn
        .query_row(
            "SELECT version FROM evento_schema_versions WHERE component = ?1",
            [component],
            |r| r.get(0),
        )
        .optional()?;
    Ok(v.unwrap_or(0))
}

/// Moves `schema` to `target`, applying `up` or `down` steps one at a time.
/// Running it again at the target version does nothing.
pub(crate) fn migrate_to(conn: &mut Connection, schema: &Schema, target: u32) -> Result<()> {
    if target > schema.latest() {
        return Err(Error::invalid(format!(
            "schema version {target} of {} does not exist (latest is {})",
            schema.component,
            schema.latest()
        )));
    }
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(VERSION_TABLE)?;
        let current = current_version(&tx, schema.component)?;
        if current > schema.latest() {
            return Err(Error::invalid(format!(
                "the database has {} schema version {current}, newer than this build knows ({}); upgrade eventodb-kit",
                schema.component,
                schema.latest()
            )));
        }
        let next = match current.cmp(&target) {
            std::cmp::Ordering::Equal => return Ok(()),
            std::cmp::Ordering::Less => {
                let m = &schema.migrations[current as usize];
                tx.execute_batch(&m.up)?;
                current + 1
            }
            std::cmp::Ordering::Greater => {
                let m = &schema.migrations[current as usize - 1];
                tx.execute_batch(&m.down)?;
                current - 1
            }
        };
        tx.execute(
            "INSERT INTO evento_schema_versions (component, version, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (component) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at",
            params![schema.component, next, crate::time::now_ms()],
        )?;
        tx.commit()?;
        log::info!(
            target: "eventodb_kit::db",
            "migrated {} schema from version {current} to {next}",
            schema.component
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "-- header\n-- migrate:up 1\nCREATE TABLE a (x);\n-- migrate:down 1\nDROP TABLE a;\n-- migrate:up 2\nCREATE TABLE b (y);\n-- migrate:down 2\nDROP TABLE b;\n";

    fn tables(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type='table' AND name IN ('a','b') ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn up_down_and_idempotent() {
        let schema = Schema::parse("t", SCRIPT);
        assert_eq!(schema.latest(), 2);
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_to(&mut conn, &schema, 2).unwrap();
        migrate_to(&mut conn, &schema, 2).unwrap();
        assert_eq!(tables(&conn), ["a", "b"]);
        migrate_to(&mut conn, &schema, 1).unwrap();
        assert_eq!(tables(&conn), ["a"]);
        assert_eq!(current_version(&conn, "t").unwrap(), 1);
        migrate_to(&mut conn, &schema, 0).unwrap();
        assert!(tables(&conn).is_empty());
        assert!(migrate_to(&mut conn, &schema, 3).is_err());
    }
}
