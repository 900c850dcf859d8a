-- Events relayed between several gateways on one PostgreSQL database (issue 16; see
-- `migrations-postgres/0008_cluster_events.sql`). A gateway on SQLite is alone and relays
-- nothing, so this table stays empty here; it exists so both backends keep the same list of
-- migration versions.
CREATE TABLE cluster_events (
    id         INTEGER PRIMARY KEY,
    origin     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    body       TEXT NOT NULL
) STRICT;

CREATE INDEX cluster_events_by_created_at ON cluster_events (created_at);
