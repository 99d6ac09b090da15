-- eventodb-kit: the tables of the kit's local SQLite database.
--
-- Versioned migrations. Each `-- migrate:up N` section takes the schema from
-- version N-1 to N; the matching `-- migrate:down N` section takes it back.
-- The applied version is kept in `evento_schema_versions` (component 'kit').
-- Times are Unix milliseconds (INTEGER); JSON is stored as TEXT.

-- migrate:up 1

-- Events written by the application, delivered later by the sender.
-- `seq` is the commit order; `id` is the EventoDB message id (UUID v7).
CREATE TABLE evento_outbox (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT    NOT NULL UNIQUE,
    namespace        TEXT    NOT NULL,
    stream           TEXT    NOT NULL,
    type             TEXT    NOT NULL,
    data             TEXT    NOT NULL,
    metadata         TEXT,
    expected_version INTEGER,
    idempotency_key  TEXT,
    created_at       INTEGER NOT NULL,
    sent_at          INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    next_attempt_at  INTEGER,
    dead_lettered_at INTEGER,
    first_failed_at  INTEGER
);
-- Idempotency keys are unique per namespace (no lookup race).
CREATE UNIQUE INDEX evento_outbox_idempotency
    ON evento_outbox (namespace, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- "Unsent, in commit order" is a range scan of this partial index. A row
-- moved to the dead-letter table keeps its place (and its id and key) but
-- leaves the index until it is requeued.
CREATE INDEX evento_outbox_unsent
    ON evento_outbox (namespace, seq) WHERE sent_at IS NULL AND dead_lettered_at IS NULL;
-- Retention deletes sent rows by age.
CREATE INDEX evento_outbox_sent_at ON evento_outbox (sent_at) WHERE sent_at IS NOT NULL;
-- Streams held back behind a dead-lettered row (sender policy "hold").
CREATE INDEX evento_outbox_dead_lettered
    ON evento_outbox (namespace, stream) WHERE dead_lettered_at IS NOT NULL;

-- Where each consumer is: the last processed global position of a category.
-- `group_size` 0 = the consumer has no group; NULL = not recorded yet (the
-- next start records its group). `correlation` is the consumer's
-- correlation filter (recorded at each start), so that its lag can be
-- counted without it running.
CREATE TABLE evento_consumer_positions (
    namespace    TEXT    NOT NULL,
    category     TEXT    NOT NULL,
    consumer_id  TEXT    NOT NULL,
    position     INTEGER NOT NULL,
    group_member INTEGER,
    group_size   INTEGER,
    correlation  TEXT,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (namespace, category, consumer_id)
);

-- Events a consumer has processed, per consumer (two consumers of one
-- category each see every event). `global_position` lets a reset to an
-- earlier position forget exactly the records after it.
CREATE TABLE evento_processed_events (
    namespace       TEXT    NOT NULL,
    category        TEXT    NOT NULL,
    consumer_id     TEXT    NOT NULL,
    event_id        TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    global_position INTEGER NOT NULL,
    processed_at    INTEGER NOT NULL,
    PRIMARY KEY (namespace, category, consumer_id, event_id)
) WITHOUT ROWID;
-- Retention deletes old records by processed_at. (The index costs each
-- handled message a second b-tree insert; dropping it would make the
-- consumer ~15 % faster but turn every retention pass into a scan.)
CREATE INDEX evento_processed_events_processed_at ON evento_processed_events (processed_at);

-- migrate:down 1

DROP TABLE evento_processed_events;
DROP TABLE evento_consumer_positions;
DROP TABLE evento_outbox;

-- migrate:up 2

-- Messages that failed permanently, from the outbox (source 'outbox') or a
-- consumer's handler (source 'consumer'). `message` is the full message as
-- JSON. `requeued_at` marks a consumer dead letter whose handler should run
-- once more (outbox requeues go straight back to the outbox).
CREATE TABLE evento_dead_letters (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    source          TEXT    NOT NULL CHECK (source IN ('outbox', 'consumer')),
    namespace       TEXT    NOT NULL,
    message_id      TEXT    NOT NULL,
    stream          TEXT    NOT NULL,
    type            TEXT    NOT NULL,
    category        TEXT,
    consumer_id     TEXT,
    message         TEXT    NOT NULL,
    error           TEXT    NOT NULL,
    attempts        INTEGER NOT NULL,
    first_failed_at INTEGER NOT NULL,
    last_failed_at  INTEGER NOT NULL,
    requeued_at     INTEGER
);
CREATE INDEX evento_dead_letters_source ON evento_dead_letters (source, namespace, stream);
CREATE INDEX evento_dead_letters_message ON evento_dead_letters (message_id);

-- Who may run a singleton job (e.g. the sender of a namespace) until when.
-- `fencing_token` grows with every change of holder.
CREATE TABLE evento_leases (
    name          TEXT    PRIMARY KEY,
    holder        TEXT    NOT NULL,
    fencing_token INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    acquired_at   INTEGER NOT NULL,
    renewed_at    INTEGER NOT NULL
);

-- migrate:down 2

DROP TABLE evento_leases;
DROP TABLE evento_dead_letters;

-- migrate:up 3

-- Consumers get an integer key (`consumer_key`, never reused), which names
-- them in their processed records and their lease (`consumer:<key>`).
-- `recorded_through` is the highest global position any of the consumer's
-- processed records holds (0: none): reading past it, there is nothing to
-- look up.
CREATE TABLE evento_consumer_positions_v3 (
    consumer_key     INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace        TEXT    NOT NULL,
    category         TEXT    NOT NULL,
    consumer_id      TEXT    NOT NULL,
    position         INTEGER NOT NULL,
    group_member     INTEGER,
    group_size       INTEGER,
    correlation      TEXT,
    updated_at       INTEGER NOT NULL,
    recorded_through INTEGER NOT NULL DEFAULT 0,
    UNIQUE (namespace, category, consumer_id)
);
INSERT INTO evento_consumer_positions_v3
    (namespace, category, consumer_id, position, group_member, group_size, correlation, updated_at,
     recorded_through)
SELECT p.namespace, p.category, p.consumer_id, p.position, p.group_member, p.group_size,
       p.correlation, p.updated_at,
       coalesce((SELECT max(e.global_position) FROM evento_processed_events e
                  WHERE e.namespace = p.namespace AND e.category = p.category
                    AND e.consumer_id = p.consumer_id), 0)
  FROM evento_consumer_positions p
 ORDER BY p.namespace, p.category, p.consumer_id;

-- Processed records: the messages (by global position, which names a
-- message within a namespace) a consumer's handler handled, one row per
-- transaction rather than per message: its first and last positions, how
-- many, and each one as an offset from the first (a JSON array). A row
-- spans at most 65 536 positions, so the rows that may hold a position are
-- a bounded range of the key. Retention deletes rows from a consumer's
-- first position on (positions grow with processing time): no time index.
CREATE TABLE evento_processed_events_v3 (
    consumer_key   INTEGER NOT NULL,
    first_position INTEGER NOT NULL,
    last_position  INTEGER NOT NULL,
    messages       INTEGER NOT NULL,
    offsets        TEXT    NOT NULL,
    processed_at   INTEGER NOT NULL,
    PRIMARY KEY (consumer_key, first_position)
) WITHOUT ROWID;
INSERT OR IGNORE INTO evento_processed_events_v3
    (consumer_key, first_position, last_position, messages, offsets, processed_at)
SELECT p.consumer_key, e.global_position, e.global_position, 1, '[0]', e.processed_at
  FROM evento_processed_events e
  JOIN evento_consumer_positions_v3 p
    ON p.namespace = e.namespace AND p.category = e.category AND p.consumer_id = e.consumer_id;

DROP TABLE evento_processed_events;
DROP TABLE evento_consumer_positions;
ALTER TABLE evento_consumer_positions_v3 RENAME TO evento_consumer_positions;
ALTER TABLE evento_processed_events_v3 RENAME TO evento_processed_events;

-- Whether the holder also holds the OS lock on the file beside the
-- database (`<file>.lease-<hash>`): a would-be holder that gets that lock
-- knows such a holder is gone and takes over before the expiry.
ALTER TABLE evento_leases ADD COLUMN locked INTEGER NOT NULL DEFAULT 0;

-- migrate:down 3

ALTER TABLE evento_leases DROP COLUMN locked;

-- Version 2's records name the event by id, which version 3 no longer
-- keeps: they come back with 'gp:<global position>' as the id (so an older
-- build skips nothing it should not, and may handle those messages again
-- after a position moved back).
CREATE TABLE evento_processed_events_v2 (
    namespace       TEXT    NOT NULL,
    category        TEXT    NOT NULL,
    consumer_id     TEXT    NOT NULL,
    event_id        TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    global_position INTEGER NOT NULL,
    processed_at    INTEGER NOT NULL,
    PRIMARY KEY (namespace, category, consumer_id, event_id)
) WITHOUT ROWID;
INSERT OR IGNORE INTO evento_processed_events_v2
SELECT p.namespace, p.category, p.consumer_id, 'gp:' || (e.first_position + j.value), '',
       e.first_position + j.value, e.processed_at
  FROM evento_processed_events e
  JOIN evento_consumer_positions p ON p.consumer_key = e.consumer_key,
       json_each(e.offsets) j;
CREATE TABLE evento_consumer_positions_v2 (
    namespace    TEXT    NOT NULL,
    category     TEXT    NOT NULL,
    consumer_id  TEXT    NOT NULL,
    position     INTEGER NOT NULL,
    group_member INTEGER,
    group_size   INTEGER,
    correlation  TEXT,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (namespace, category, consumer_id)
);
INSERT INTO evento_consumer_positions_v2
SELECT namespace, category, consumer_id, position, group_member, group_size, correlation, updated_at
  FROM evento_consumer_positions;
DROP TABLE evento_processed_events;
DROP TABLE evento_consumer_positions;
ALTER TABLE evento_consumer_positions_v2 RENAME TO evento_consumer_positions;
ALTER TABLE evento_processed_events_v2 RENAME TO evento_processed_events;
CREATE INDEX evento_processed_events_processed_at ON evento_processed_events (processed_at);

-- migrate:up 4

-- The holder's pause, for a sender (NULL: not paused): why
-- ('unreachable', 'auth_refused', 'tls_refused'), since when (Unix ms),
-- and the error that started it or the latest probe's (short, never a
-- token). Written with the lease's renewal whenever it changes, cleared on
-- release, so a tool with nothing running sees that the sender is paused.
ALTER TABLE evento_leases ADD COLUMN pause_reason TEXT;
ALTER TABLE evento_leases ADD COLUMN paused_since INTEGER;
ALTER TABLE evento_leases ADD COLUMN pause_error TEXT;

-- migrate:down 4

ALTER TABLE evento_leases DROP COLUMN pause_error;
ALTER TABLE evento_leases DROP COLUMN paused_since;
ALTER TABLE evento_leases DROP COLUMN pause_reason;
