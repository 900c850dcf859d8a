-- Chat sessions, their transcripts and the per-session run queue.
-- JSON-valued columns (meta, content, request, result) hold JSON text.
-- Timestamps are Unix epoch milliseconds supplied by the caller.

-- One row per session key ("agent:main:main"). `session_id` names the current transcript;
-- a reset gives the key a new one and leaves the old transcript rows where they are.
CREATE TABLE sessions (
    key           TEXT PRIMARY KEY NOT NULL,
    agent_id      TEXT NOT NULL,
    session_id    TEXT NOT NULL UNIQUE,
    label         TEXT,
    meta          TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT;

CREATE INDEX sessions_by_recency ON sessions (updated_at_ms DESC, key);

-- One row per transcript (session id): the last seq handed out, so seqs never restart even
-- when compaction has deleted every older entry, and the entry count, so neither counting
-- nor listing sessions ever scans a transcript. `session_key` is the key that owned the
-- session id when its first entry was written, so deleting a session can find the
-- transcripts of its earlier (reset) generations.
CREATE TABLE transcript_heads (
    session_id  TEXT PRIMARY KEY NOT NULL,
    session_key TEXT,
    last_seq    INTEGER NOT NULL,
    entry_count INTEGER NOT NULL,
    last_at_ms  INTEGER NOT NULL
) STRICT;

CREATE INDEX transcript_heads_by_session_key ON transcript_heads (session_key);

-- Append-only transcript entries. Readers fetch windows through the (session_id, seq) index,
-- never whole transcripts; the unique index also makes a duplicate seq impossible.
CREATE TABLE transcript_entries (
    id            INTEGER PRIMARY KEY,
    session_id    TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'tool', 'system')),
    content       TEXT NOT NULL,
    run_id        TEXT,
    status        TEXT NOT NULL CHECK (status IN ('final', 'aborted', 'error')),
    created_at_ms INTEGER NOT NULL
) STRICT;

CREATE UNIQUE INDEX transcript_entries_by_session_seq ON transcript_entries (session_id, seq);
CREATE INDEX transcript_entries_by_run ON transcript_entries (run_id) WHERE run_id IS NOT NULL;

-- The durable per-session lane queue. `queue_pos` is the enqueue order: a session's runs start
-- strictly in that order, one at a time.
CREATE TABLE runs (
    queue_pos     INTEGER PRIMARY KEY,
    run_id        TEXT NOT NULL UNIQUE,
    session_key   TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('chat', 'agent', 'http')),
    status        TEXT NOT NULL
        CHECK (status IN ('queued', 'running', 'completed', 'failed', 'aborted', 'interrupted')),
    request       TEXT NOT NULL,
    result        TEXT,
    created_at_ms INTEGER NOT NULL,
    started_at_ms INTEGER,
    ended_at_ms   INTEGER
) STRICT;

CREATE INDEX runs_by_session ON runs (session_key, status, queue_pos);
CREATE INDEX runs_by_status ON runs (status, ended_at_ms);
-- At most one running run per session, whatever a caller does.
CREATE UNIQUE INDEX runs_one_running_per_session ON runs (session_key) WHERE status = 'running';
