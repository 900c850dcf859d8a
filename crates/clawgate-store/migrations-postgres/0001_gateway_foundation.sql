-- PostgreSQL twin of migrations/0001_gateway_foundation.sql: same tables, columns and rules.
-- Types: BIGINT for counts and Unix epoch milliseconds (the records read them as i64), TEXT for
-- text, BYTEA for hashes, JSON for JSON-valued columns nothing queries into (kept as written).

CREATE TABLE kv (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE paired_devices (
    device_id       TEXT PRIMARY KEY NOT NULL,
    public_key      TEXT NOT NULL,
    display_name    TEXT,
    platform        TEXT,
    device_family   TEXT,
    client_id       TEXT,
    client_mode     TEXT,
    roles           JSON NOT NULL,
    scopes          JSON NOT NULL,
    approved_via    TEXT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    approved_at_ms  BIGINT NOT NULL,
    last_seen_at_ms BIGINT
);

CREATE TABLE pairing_requests (
    request_id     TEXT PRIMARY KEY NOT NULL,
    device_id      TEXT NOT NULL,
    public_key     TEXT NOT NULL,
    display_name   TEXT,
    platform       TEXT,
    device_family  TEXT,
    client_id      TEXT,
    client_mode    TEXT,
    role           TEXT NOT NULL,
    scopes         JSON NOT NULL,
    remote_ip      TEXT,
    reason         TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    created_at_ms  BIGINT NOT NULL,
    updated_at_ms  BIGINT NOT NULL,
    resolved_at_ms BIGINT,
    resolved_by    TEXT
);

CREATE UNIQUE INDEX pairing_requests_one_pending_per_device
    ON pairing_requests (device_id) WHERE status = 'pending';
CREATE INDEX pairing_requests_by_status ON pairing_requests (status, updated_at_ms);

CREATE TABLE device_tokens (
    device_id     TEXT NOT NULL REFERENCES paired_devices (device_id) ON DELETE CASCADE,
    role          TEXT NOT NULL,
    token_hash    BYTEA NOT NULL,
    scopes        JSON NOT NULL,
    issued_at_ms  BIGINT NOT NULL,
    revoked_at_ms BIGINT,
    PRIMARY KEY (device_id, role)
);

CREATE TABLE idempotency (
    key           TEXT PRIMARY KEY NOT NULL,
    status        TEXT NOT NULL,
    payload       JSON NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

CREATE INDEX idempotency_by_age ON idempotency (updated_at_ms);
