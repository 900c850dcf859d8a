-- Chat-channel state: the inbox of inbound platform messages, the outbox of replies, and
-- pairing requests of unknown DM senders.
-- JSON-valued columns (message, payload) hold JSON text.
-- Timestamps are Unix epoch milliseconds supplied by the caller.

-- Every inbound message is recorded here before anything acts on it. The unique index on
-- (channel, account, message_id) is the dedup: a redelivered update finds its row and is not
-- processed again (for as long as the row is kept; pruning ends that window).
-- AUTOINCREMENT: ids are never reused after pruning, because callers derive outbox
-- idempotency keys from them and a reused id would collide with an old reply's key.
CREATE TABLE channel_inbox (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    channel        TEXT NOT NULL,
    account        TEXT NOT NULL,
    message_id     TEXT NOT NULL,
    chat_id        TEXT NOT NULL,
    sender_id      TEXT NOT NULL,
    message        TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('received', 'routed', 'answered', 'dropped')),
    reason         TEXT,
    run_id         TEXT,
    session_key    TEXT,
    received_at_ms INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL
) STRICT;

CREATE UNIQUE INDEX channel_inbox_by_message ON channel_inbox (channel, account, message_id);
-- Restart recovery reads the unfinished rows in id order.
CREATE INDEX channel_inbox_pending ON channel_inbox (id) WHERE status IN ('received', 'routed');
-- Pruning finds finished rows by age.
CREATE INDEX channel_inbox_finished ON channel_inbox (updated_at_ms) WHERE status IN ('answered', 'dropped');

-- Replies waiting to be (or already) delivered. A reply's chunks are queued in one
-- transaction with the inbox row they answer; the sender delivers each account's queued rows
-- strictly in id order. `idempotency_key` makes re-queueing the same reply a no-op.
CREATE TABLE channel_outbox (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key     TEXT NOT NULL,
    channel             TEXT NOT NULL,
    account             TEXT NOT NULL,
    chat_id             TEXT NOT NULL,
    payload             TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('queued', 'sent', 'failed')),
    attempts            INTEGER NOT NULL CHECK (attempts >= 0),
    next_attempt_at_ms  INTEGER NOT NULL,
    last_error          TEXT,
    platform_message_id TEXT,
    inbox_id            INTEGER,
    created_at_ms       INTEGER NOT NULL,
    updated_at_ms       INTEGER NOT NULL
) STRICT;

CREATE UNIQUE INDEX channel_outbox_by_key ON channel_outbox (idempotency_key);
-- The head of each account's queue.
CREATE INDEX channel_outbox_queued ON channel_outbox (channel, account, id) WHERE status = 'queued';
-- Status listings of one account.
CREATE INDEX channel_outbox_by_account ON channel_outbox (channel, account, status, id);
-- Pruning finds finished rows by age.
CREATE INDEX channel_outbox_finished ON channel_outbox (updated_at_ms) WHERE status IN ('sent', 'failed');

-- One row per (channel, account, sender): a pending request with its code, or the operator's
-- decision. Approved rows are the allow-list of DM senders; removing the row revokes it.
-- Codes are unique among pending, unexpired requests; the store checks that (expired pending
-- rows may still hold an old code, so a unique index cannot say it).
CREATE TABLE channel_pairings (
    channel        TEXT NOT NULL,
    account        TEXT NOT NULL,
    sender_id      TEXT NOT NULL,
    sender_name    TEXT,
    chat_id        TEXT NOT NULL,
    code           TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    created_at_ms  INTEGER NOT NULL,
    expires_at_ms  INTEGER NOT NULL,
    resolved_at_ms INTEGER,
    PRIMARY KEY (channel, account, sender_id)
) STRICT;

-- Codes are typed by people, so they match case-insensitively.
CREATE INDEX channel_pairings_by_code ON channel_pairings (code COLLATE NOCASE) WHERE status = 'pending';
