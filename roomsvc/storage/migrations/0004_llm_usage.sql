-- LLM proxy usage: one row per proxied call (refusals before the upstream are not rows,
-- only audit lines). day is the UTC date of the call's start, the unit of the daily
-- token budgets; outcome is ok, upstream_<status>, upstream_failed, timeout or cancelled.
CREATE TABLE llm_usage (
    pk             INTEGER PRIMARY KEY,
    time           REAL NOT NULL,
    day            TEXT NOT NULL,
    room           TEXT NOT NULL,
    identity       TEXT NOT NULL,
    provider       TEXT NOT NULL,
    model          TEXT NOT NULL,
    input_tokens   INTEGER NOT NULL,
    output_tokens  INTEGER NOT NULL,
    outcome        TEXT NOT NULL,
    stream         INTEGER NOT NULL
);
CREATE INDEX llm_usage_by_identity ON llm_usage (identity, day);
CREATE INDEX llm_usage_by_room ON llm_usage (room, day);
CREATE INDEX llm_usage_by_time ON llm_usage (time);
