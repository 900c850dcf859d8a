-- Per-turn token usage, for `usage.cost`, `sessions.usage` and `clawgate usage`.
--
-- One row per assistant transcript entry that carries a `usage` object (the provider's token
-- counts of that turn, with the entry's `provider` and `model`). The rows are written by a
-- trigger on `transcript_entries`, so a turn's usage is stored in the same transaction as its
-- assistant message by construction, whatever code path appends it, and a crash can never
-- leave one without the other.
--
-- The rows outlive their transcript entries on purpose: compaction and session deletion drop
-- messages, not the record of what was spent. Costs are not stored: they are computed when
-- asked, from the prices in the config in force (`models.providers.*.models[].cost`), as
-- upstream does, so a price added later applies to past turns too.
--
-- Days are not stored either: a day is a calendar day in the zone the caller asks for,
-- computed from `ts` (Unix epoch milliseconds of the entry).
CREATE TABLE turn_usage (
    id          INTEGER PRIMARY KEY,
    ts          INTEGER NOT NULL,
    agent_id    TEXT NOT NULL,
    session_key TEXT NOT NULL,
    session_id  TEXT NOT NULL,
    run_id      TEXT,
    provider    TEXT NOT NULL,
    model       TEXT NOT NULL,
    input       INTEGER NOT NULL CHECK (input >= 0),
    output      INTEGER NOT NULL CHECK (output >= 0),
    cache_read  INTEGER NOT NULL CHECK (cache_read >= 0),
    cache_write INTEGER NOT NULL CHECK (cache_write >= 0)
) STRICT;

-- Every query is a time range, optionally for one agent or one session.
CREATE INDEX turn_usage_by_ts ON turn_usage (ts);
CREATE INDEX turn_usage_by_agent ON turn_usage (agent_id, ts);
CREATE INDEX turn_usage_by_session ON turn_usage (session_key, ts);

-- The owner of a transcript is the session whose current transcript it is, else the key that
-- owned it when its first entry was written (a reset generation). Token counts are read
-- defensively: a missing or non-numeric count is 0, a fraction is truncated, a negative one is
-- 0, so no content an entry may hold can make its append fail. `CASE json_valid(..)` guards
-- every JSON function (SQLite does not promise to short-circuit AND).
CREATE TRIGGER transcript_entries_record_usage
AFTER INSERT ON transcript_entries
WHEN NEW.role = 'assistant'
 AND (CASE WHEN json_valid(NEW.content) THEN json_type(NEW.content, '$.usage') END) = 'object'
BEGIN
    INSERT INTO turn_usage (ts, agent_id, session_key, session_id, run_id, provider, model,
                            input, output, cache_read, cache_write)
    SELECT NEW.created_at_ms,
           COALESCE(
               (SELECT agent_id FROM sessions WHERE session_id = NEW.session_id),
               (SELECT s.agent_id FROM transcript_heads h JOIN sessions s ON s.key = h.session_key
                 WHERE h.session_id = NEW.session_id),
               'unknown'),
           COALESCE(
               (SELECT key FROM sessions WHERE session_id = NEW.session_id),
               (SELECT session_key FROM transcript_heads WHERE session_id = NEW.session_id),
               ''),
           NEW.session_id,
           NEW.run_id,
           COALESCE(CAST(json_extract(NEW.content, '$.provider') AS TEXT), 'unknown'),
           COALESCE(CAST(json_extract(NEW.content, '$.model') AS TEXT), 'unknown'),
           MAX(0, COALESCE(CAST(json_extract(NEW.content, '$.usage.input') AS INTEGER), 0)),
           MAX(0, COALESCE(CAST(json_extract(NEW.content, '$.usage.output') AS INTEGER), 0)),
           MAX(0, COALESCE(CAST(json_extract(NEW.content, '$.usage.cacheRead') AS INTEGER), 0)),
           MAX(0, COALESCE(CAST(json_extract(NEW.content, '$.usage.cacheWrite') AS INTEGER), 0));
END;

-- Backfill: the usage of every assistant entry already stored (entries that compaction or
-- deletion removed before this migration are gone and cannot be counted). One pass over the
-- assistant rows, the same rules as the trigger.
INSERT INTO turn_usage (ts, agent_id, session_key, session_id, run_id, provider, model,
                        input, output, cache_read, cache_write)
SELECT e.created_at_ms,
       COALESCE(
           (SELECT agent_id FROM sessions WHERE session_id = e.session_id),
           (SELECT s.agent_id FROM transcript_heads h JOIN sessions s ON s.key = h.session_key
             WHERE h.session_id = e.session_id),
           'unknown'),
       COALESCE(
           (SELECT key FROM sessions WHERE session_id = e.session_id),
           (SELECT session_key FROM transcript_heads WHERE session_id = e.session_id),
           ''),
       e.session_id,
       e.run_id,
       COALESCE(CAST(json_extract(e.content, '$.provider') AS TEXT), 'unknown'),
       COALESCE(CAST(json_extract(e.content, '$.model') AS TEXT), 'unknown'),
       MAX(0, COALESCE(CAST(json_extract(e.content, '$.usage.input') AS INTEGER), 0)),
       MAX(0, COALESCE(CAST(json_extract(e.content, '$.usage.output') AS INTEGER), 0)),
       MAX(0, COALESCE(CAST(json_extract(e.content, '$.usage.cacheRead') AS INTEGER), 0)),
       MAX(0, COALESCE(CAST(json_extract(e.content, '$.usage.cacheWrite') AS INTEGER), 0))
  FROM transcript_entries e
 WHERE e.role = 'assistant'
   AND (CASE WHEN json_valid(e.content) THEN json_type(e.content, '$.usage') END) = 'object'
 ORDER BY e.id;
