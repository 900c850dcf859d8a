-- Events that several gateways on one database relay to each other's clients (issue 16): a
-- gateway writes each event it broadcasts here (the `Events` call, as JSON), then
-- `pg_notify('clawgate_events', <highest id written>)`; every other gateway, woken by the
-- notification, reads the rows after the last id it applied and delivers them to its own
-- clients. The notification carries only an id; the data is read from this table, so a gateway
-- whose listening connection dropped catches up from where it was, and a payload is never
-- bound by NOTIFY's 8000-byte limit.
--
-- Writers take a transaction-scoped advisory lock around the insert, so ids become visible in
-- the order they were handed out: a reader that has seen id N never later finds a smaller id
-- committed (which it would skip for good).
--
-- `body` is `JSON`, not `JSONB`: it is written once and read back whole, never queried inside,
-- so the exact text is kept and no conversion is paid per event. Rows are short-lived: each
-- gateway deletes those older than a few minutes.
CREATE TABLE cluster_events (
    id         BIGSERIAL PRIMARY KEY,
    origin     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    body       JSON NOT NULL
);

CREATE INDEX cluster_events_by_created_at ON cluster_events (created_at);
