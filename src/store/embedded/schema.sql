-- eventodb-kit: tables of the embedded message store (component 'store').
-- Same migration format as the kit's schema.sql. Times are Unix milliseconds
-- (namespaces: nanoseconds, for EventoDB's RFC3339Nano `createdAt`).

-- migrate:up 1

-- Namespaces known to a server; only sha256 hashes of tokens are kept.
CREATE TABLE evento_store_namespaces (
    namespace     TEXT    PRIMARY KEY,
    token_hash    TEXT    NOT NULL,
    description   TEXT    NOT NULL DEFAULT '',
    created_at_ns INTEGER NOT NULL
);

-- Every message of every namespace. `global_position` is per namespace,
-- from 1, gapless; `position` per stream, from 0, gapless. `cg_hash` is the
-- non-negative MD5 consumer-group hash of the cardinal id (NULL: none).
CREATE TABLE evento_store_messages (
    namespace       TEXT    NOT NULL,
    global_position INTEGER NOT NULL,
    stream_name     TEXT    NOT NULL,
    position        INTEGER NOT NULL,
    id              TEXT    NOT NULL,
    category        TEXT    NOT NULL,
    cg_hash         INTEGER,
    type            TEXT    NOT NULL,
    data            TEXT,
    metadata        TEXT,
    time_ms         INTEGER NOT NULL
);
CREATE UNIQUE INDEX evento_store_messages_global
    ON evento_store_messages (namespace, global_position);
CREATE UNIQUE INDEX evento_store_messages_stream
    ON evento_store_messages (namespace, stream_name, position);
CREATE UNIQUE INDEX evento_store_messages_id
    ON evento_store_messages (namespace, id);
CREATE INDEX evento_store_messages_category
    ON evento_store_messages (namespace, category, global_position);

-- migrate:down 1

DROP TABLE evento_store_messages;
DROP TABLE evento_store_namespaces;
