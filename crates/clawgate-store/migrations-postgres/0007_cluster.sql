-- Several gateways on one database: the same tables as SQLite's 0007, see there.
CREATE TABLE cluster_gateways (
    id            TEXT PRIMARY KEY NOT NULL,
    started_at_ms BIGINT NOT NULL,
    seen_at_ms    BIGINT NOT NULL,
    listen_addr   TEXT NOT NULL,
    version       TEXT NOT NULL
);

CREATE TABLE cluster_leases (
    name           TEXT PRIMARY KEY NOT NULL,
    holder         TEXT NOT NULL,
    expires_at_ms  BIGINT NOT NULL,
    acquired_at_ms BIGINT NOT NULL
);

ALTER TABLE runs ADD COLUMN owner TEXT;
