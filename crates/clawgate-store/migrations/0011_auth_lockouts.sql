-- Failed-auth lockouts shared by the gateways of one database: a lockout one gateway starts
-- (too many wrong secrets from one address bucket) is applied by every gateway, so a guesser
-- cannot move on to the next gateway behind the load balancer. Counting stays per gateway; only
-- the (rare) lockouts are written. `bucket` is the limiter bucket's address text.
CREATE TABLE auth_lockouts (
    bucket      TEXT PRIMARY KEY NOT NULL,
    until_ms    INTEGER NOT NULL
) STRICT;
