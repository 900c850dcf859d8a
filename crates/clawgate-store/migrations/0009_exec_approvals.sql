-- Exec approvals (issue 13 item 4) are rows of the same `approvals` table as the ComfyUI and
-- plugin approvals (kind 'exec'): one engine, one expiry rule, one place a waiter reads after a
-- restart. What the table could not say is which "allow" an operator chose: allow-once or
-- allow-always (the latter also adds an allowlist entry). NULL for the older kinds.
ALTER TABLE approvals ADD COLUMN decision TEXT
    CHECK (decision IS NULL OR decision IN ('allow-once', 'allow-always', 'deny'));

-- The exec approvals policy (upstream's exec-approvals.json: defaults, per-agent security/ask
-- modes and allowlists) as one JSON document. `hash` is what `exec.approvals.set` compares its
-- `baseHash` with, so two writers (two operators, or two gateways on one database) never
-- overwrite each other unseen.
CREATE TABLE exec_approval_policy (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    file          TEXT NOT NULL,
    hash          TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT;
