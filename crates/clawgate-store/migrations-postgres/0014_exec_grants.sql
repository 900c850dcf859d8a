-- Same as migrations/0014_exec_grants.sql: each node's own exec approvals policy (and with it the
-- allow-always grants made for that node), written only over the hash it was read at.
CREATE TABLE exec_node_policies (
    node_id       TEXT PRIMARY KEY NOT NULL,
    file          JSON NOT NULL,
    hash          TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
