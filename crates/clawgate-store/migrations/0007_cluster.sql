-- Several gateways on one database (issue 16). On SQLite there is only ever one member (the state
-- lock keeps a second process off the file); the tables exist so the same code runs on both.
--
-- The members: each gateway upserts its row (id = its boot id) on every heartbeat. A member whose
-- `seen_at_ms` is older than the lease ttl is dead: its runs are recovered by the others.
CREATE TABLE cluster_gateways (
    id            TEXT PRIMARY KEY NOT NULL,
    started_at_ms INTEGER NOT NULL,
    seen_at_ms    INTEGER NOT NULL,
    listen_addr   TEXT NOT NULL,
    version       TEXT NOT NULL
) STRICT;

-- Named leases with expiry ("channel:telegram:default"): whoever holds an unexpired row drives
-- that thing; a holder renews before `expires_at_ms`, anyone may take an expired row.
CREATE TABLE cluster_leases (
    name           TEXT PRIMARY KEY NOT NULL,
    holder         TEXT NOT NULL,
    expires_at_ms  INTEGER NOT NULL,
    acquired_at_ms INTEGER NOT NULL
) STRICT;

-- The gateway that claimed a run (NULL: queued, or claimed before this migration): recovery only
-- touches runs of gateways that are gone, never a live peer's.
ALTER TABLE runs ADD COLUMN owner TEXT;
