-- Request-rate buckets shared by the gateways of one database (see the SQLite migration of the
-- same number).
CREATE TABLE rate_buckets (
    key      TEXT PRIMARY KEY NOT NULL,
    tat_us   BIGINT NOT NULL,
    granted  BOOLEAN NOT NULL
);
