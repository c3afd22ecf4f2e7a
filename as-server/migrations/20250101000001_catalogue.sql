-- Channel catalogue and viewing sessions.
-- Portable SQL: runs unchanged on SQLite and PostgreSQL (TEXT, BIGINT, epoch milliseconds).

CREATE TABLE channels (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('producer', 'personal', 'personalized')),
    owner       TEXT NULL,
    created_ms  BIGINT NOT NULL,
    ingest_addr TEXT NULL,
    relay       TEXT NULL
);

CREATE INDEX channels_created ON channels (created_ms, id);

-- Sessions outlive their channel (accounting history), so no foreign key.
CREATE TABLE sessions (
    id          TEXT PRIMARY KEY NOT NULL,
    channel_id  TEXT NOT NULL,
    viewer_uri  TEXT NOT NULL,
    call_id     TEXT NOT NULL,
    relay       TEXT NULL,
    started_ms  BIGINT NOT NULL,
    switched_ms BIGINT NULL,
    zaps        BIGINT NOT NULL DEFAULT 0,
    ended_ms    BIGINT NULL
);

CREATE INDEX sessions_active ON sessions (ended_ms, started_ms);
CREATE INDEX sessions_channel ON sessions (channel_id);
CREATE INDEX sessions_call ON sessions (call_id);
