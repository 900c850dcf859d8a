-- Gateway foundation: key/value settings, paired devices, pairing requests,
-- device tokens and idempotency entries.
-- List-valued columns (roles, scopes) hold JSON arrays of strings.
-- Timestamps are Unix epoch milliseconds supplied by the caller.

CREATE TABLE kv (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE paired_devices (
    device_id       TEXT PRIMARY KEY NOT NULL,
    public_key      TEXT NOT NULL,
    display_name    TEXT,
    platform        TEXT,
    device_family   TEXT,
    client_id       TEXT,
    client_mode     TEXT,
    roles           TEXT NOT NULL,
    scopes          TEXT NOT NULL,
    approved_via    TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    approved_at_ms  INTEGER NOT NULL,
    last_seen_at_ms INTEGER
) STRICT;

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
    scopes         TEXT NOT NULL,
    remote_ip      TEXT,
    reason         TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    created_at_ms  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL,
    resolved_at_ms INTEGER,
    resolved_by    TEXT
) STRICT;

-- At most one pending request per device: reconnect loops refresh it instead of piling up.
CREATE UNIQUE INDEX pairing_requests_one_pending_per_device
    ON pairing_requests (device_id) WHERE status = 'pending';
CREATE INDEX pairing_requests_by_status ON pairing_requests (status, updated_at_ms);

-- Only the SHA-256 of a token is kept; the plain token is shown once at issue time.
-- A token cannot outlive its device: the foreign key refuses tokens for unpaired devices.
CREATE TABLE device_tokens (
    device_id     TEXT NOT NULL REFERENCES paired_devices (device_id) ON DELETE CASCADE,
    role          TEXT NOT NULL,
    token_hash    BLOB NOT NULL,
    scopes        TEXT NOT NULL,
    issued_at_ms  INTEGER NOT NULL,
    revoked_at_ms INTEGER,
    PRIMARY KEY (device_id, role)
) STRICT;

CREATE TABLE idempotency (
    key           TEXT PRIMARY KEY NOT NULL,
    status        TEXT NOT NULL,
    payload       TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT;

CREATE INDEX idempotency_by_age ON idempotency (updated_at_ms);
