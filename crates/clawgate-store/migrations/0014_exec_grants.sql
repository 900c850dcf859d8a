-- Per-node exec approvals policies (issue 13 item 4, `exec.approvals.node.get|set`): upstream
-- keeps a policy and allowlists per node; the agent's node tool uses a node's own policy when one
-- is set, else the gateway's (`exec_approval_policy`). The allow-always grants made for a node
-- with its own policy are allowlist entries in its document, so they are listed and revoked
-- there. Same shape and the same hash rule as the gateway's policy: a write names the hash it
-- read, so two writers (operators, or two gateways on one database) never overwrite unseen.
CREATE TABLE exec_node_policies (
    node_id       TEXT PRIMARY KEY NOT NULL,
    file          TEXT NOT NULL,
    hash          TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT;
