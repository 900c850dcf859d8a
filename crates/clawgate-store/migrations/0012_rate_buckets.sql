-- Request-rate buckets shared by the gateways of one database (issue 16): an access token limited
-- to `60/min` allows 60 requests a minute across every gateway, not 60 on each. One row per
-- limited thing (`token:<id>`), kept as GCRA's "theoretical arrival time": the bucket is full when
-- `tat_us` is in the past, and a request is allowed while `tat_us - now` stays within the burst.
-- `granted` is the answer of the last take (a statement's RETURNING sees only the new row).
--
-- On SQLite there is one gateway, which keeps its buckets in memory: the table exists so both
-- backends have one schema (and the conformance suite runs the same statements on both).
CREATE TABLE rate_buckets (
    key      TEXT PRIMARY KEY NOT NULL,
    tat_us   INTEGER NOT NULL,
    granted  INTEGER NOT NULL
) STRICT;
