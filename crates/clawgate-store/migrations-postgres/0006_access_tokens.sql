-- Scoped access tokens (`clawgate tokens create`); the same table as SQLite's 0006, see there for
-- why a SHA-256 of the 32-byte random secret is what is stored.
CREATE TABLE access_tokens (
    id              TEXT PRIMARY KEY NOT NULL,
    name            TEXT NOT NULL,
    token_hash      BYTEA NOT NULL,
    scopes          JSON NOT NULL,
    sessions        JSON NOT NULL,
    methods         JSON NOT NULL,
    rate_requests   BIGINT,
    rate_per_ms     BIGINT,
    created_at_ms   BIGINT NOT NULL,
    last_used_at_ms BIGINT,
    revoked_at_ms   BIGINT
);

CREATE UNIQUE INDEX access_tokens_live_name ON access_tokens (name) WHERE revoked_at_ms IS NULL;
