-- Scoped access tokens (`clawgate tokens create`): bearer credentials for backends that use
-- the gateway as a client, each limited to scopes, session-key patterns, method patterns and a
-- request rate.
--
-- Only a SHA-256 of the secret is stored. The secret is 32 random bytes from the OS RNG, so it
-- cannot be guessed or found from its hash by brute force; a slow password hash would only slow
-- every connect. The presented token names its row by `id` (`cgt_<id>_<secret>`), and the
-- hash is then compared in constant time.
--
-- Lists are JSON arrays of strings (`scopes`, `sessions`, `methods`); an empty `sessions` or
-- `methods` list means "no restriction" of that kind. A name is unique among live tokens, so
-- a revoked name can be reused.
CREATE TABLE access_tokens (
    id              TEXT PRIMARY KEY NOT NULL,
    name            TEXT NOT NULL,
    token_hash      BLOB NOT NULL,
    scopes          TEXT NOT NULL,
    sessions        TEXT NOT NULL,
    methods         TEXT NOT NULL,
    rate_requests   INTEGER,
    rate_per_ms     INTEGER,
    created_at_ms   INTEGER NOT NULL,
    last_used_at_ms INTEGER,
    revoked_at_ms   INTEGER
) STRICT;

CREATE UNIQUE INDEX access_tokens_live_name ON access_tokens (name) WHERE revoked_at_ms IS NULL;
