-- Token revocations (roomsvc token revoke): by token id (kind 'jti', value = the jti)
-- or by identity (kind 'identity', value = the identity, optionally one room): tokens of
-- that identity issued before revoked_before are refused. Loaded at start; kept for good
-- (only operators add rows).
CREATE TABLE token_revocations (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('jti', 'identity')),
    value           TEXT NOT NULL,
    room            TEXT,
    revoked_before  REAL NOT NULL,
    actor           TEXT NOT NULL,
    created_at      REAL NOT NULL
);
