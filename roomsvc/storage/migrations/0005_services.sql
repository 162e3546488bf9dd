-- Service specs (issue 13), per room: the validated spec document as JSON. A spec holds
-- references to secrets (room secret ids, project secret ids), never their values;
-- templates store their secret variables as room secrets and never render them here.
CREATE TABLE services (
    room        TEXT NOT NULL,
    name        TEXT NOT NULL,
    spec        TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (room, name)
);
