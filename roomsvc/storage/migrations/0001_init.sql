-- rooms exist as records so a deployment can require them to be created first
CREATE TABLE rooms (
    name        TEXT PRIMARY KEY,
    created_at  REAL NOT NULL
);

-- key-encryption keys, each wrapped by the master key (which is never stored here)
CREATE TABLE keys (
    id          TEXT PRIMARY KEY,
    wrapped     BLOB NOT NULL,
    created_at  REAL NOT NULL,
    active      INTEGER NOT NULL DEFAULT 0
);

-- room secrets: one row per (room, owner, id, delegated_to); '' = not delegated
CREATE TABLE room_secrets (
    pk            INTEGER PRIMARY KEY,
    room          TEXT NOT NULL,
    owner         TEXT NOT NULL,
    secret_id     TEXT NOT NULL,
    delegated_to  TEXT NOT NULL DEFAULT '',
    type          TEXT NOT NULL,
    name          TEXT NOT NULL,
    kind          TEXT NOT NULL,
    version       INTEGER NOT NULL,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    UNIQUE (room, owner, secret_id, delegated_to)
);
CREATE INDEX room_secrets_by_delegate ON room_secrets (room, secret_id, delegated_to);

-- every kept version of a room secret, envelope-encrypted
CREATE TABLE room_secret_versions (
    pk           INTEGER PRIMARY KEY,
    secret_pk    INTEGER NOT NULL REFERENCES room_secrets (pk) ON DELETE CASCADE,
    version      INTEGER NOT NULL,
    kek_id       TEXT NOT NULL REFERENCES keys (id),
    wrapped_dek  BLOB NOT NULL,
    ciphertext   BLOB NOT NULL,
    created_at   REAL NOT NULL,
    UNIQUE (secret_pk, version)
);
CREATE INDEX room_secret_versions_by_key ON room_secret_versions (kek_id);

-- project secrets: 'keys' bags for services and 'pull' registry credentials
CREATE TABLE project_secrets (
    pk           INTEGER PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    name         TEXT NOT NULL,
    kind         TEXT NOT NULL,
    version      INTEGER NOT NULL,
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL,
    kek_id       TEXT NOT NULL REFERENCES keys (id),
    wrapped_dek  BLOB NOT NULL,
    ciphertext   BLOB NOT NULL
);
CREATE INDEX project_secrets_by_key ON project_secrets (kek_id);

-- the audit log: who did what to which secret, never the value
CREATE TABLE audit (
    pk         INTEGER PRIMARY KEY,
    time       REAL NOT NULL,
    room       TEXT,
    actor      TEXT NOT NULL,
    owner      TEXT,
    secret_id  TEXT,
    action     TEXT NOT NULL,
    channel    TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    detail     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_by_time ON audit (time);
CREATE INDEX audit_by_room ON audit (room, time);
