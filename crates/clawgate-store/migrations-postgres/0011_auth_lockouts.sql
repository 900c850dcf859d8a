-- Failed-auth lockouts shared by the gateways of one database (see the SQLite migration of the
-- same number).
CREATE TABLE auth_lockouts (
    bucket      TEXT PRIMARY KEY NOT NULL,
    until_ms    BIGINT NOT NULL
);
