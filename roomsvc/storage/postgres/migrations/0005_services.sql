-- PostgreSQL twin of roomsvc/storage/migrations/0005_services.sql.
-- Service specs (issue 13), per room: the validated spec document as JSON. A spec holds
-- references to secrets (room secret ids, project secret ids), never their values;
-- templates store their secret variables as room secrets and never render them here.
CREATE TABLE services (
    room        text NOT NULL,
    name        text NOT NULL,
    spec        text NOT NULL,
    created_by  text NOT NULL,
    created_at  double precision NOT NULL,
    updated_at  double precision NOT NULL,
    PRIMARY KEY (room, name)
);
