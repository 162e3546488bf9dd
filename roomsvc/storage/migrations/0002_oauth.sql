-- OAuth authorization-code flows (one row per request_oauth_token that asked someone).
-- Secrets of a flow are stored only as SHA-256 hashes (start ticket, state, browser
-- binding); the PKCE verifier (and an inline client's secret) is envelope-encrypted and
-- erased when the flow ends. Rows are purged a day after their deadline.
CREATE TABLE oauth_flows (
    id                     TEXT PRIMARY KEY,
    room                   TEXT NOT NULL,
    mode                   TEXT NOT NULL,
    status                 TEXT NOT NULL,
    requester              TEXT NOT NULL,
    requester_participant  TEXT NOT NULL,
    consenter              TEXT NOT NULL,
    consenter_participant  TEXT NOT NULL,
    owner                  TEXT NOT NULL,
    delegate_to            TEXT,
    credential_id          TEXT NOT NULL,
    client                 TEXT NOT NULL,
    redirect_uri           TEXT NOT NULL,
    start_hash             TEXT UNIQUE,
    state_hash             TEXT UNIQUE,
    binding_hash           TEXT,
    state_expires_at       REAL NOT NULL DEFAULT 0,
    created_at             REAL NOT NULL,
    expires_at             REAL NOT NULL,
    updated_at             REAL NOT NULL,
    error                  TEXT NOT NULL DEFAULT '',
    kek_id                 TEXT,
    wrapped_dek            BLOB,
    ciphertext             BLOB
);
CREATE INDEX oauth_flows_by_deadline ON oauth_flows (expires_at);
