-- Same as migrations/0009_exec_approvals.sql: exec approvals share the `approvals` table
-- (kind 'exec') and record which "allow" was chosen; the policy is one JSON document whose
-- hash guards concurrent writers (operators, or several gateways on this database).
ALTER TABLE approvals ADD COLUMN decision TEXT
    CHECK (decision IS NULL OR decision IN ('allow-once', 'allow-always', 'deny'));

CREATE TABLE exec_approval_policy (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    file          JSON NOT NULL,
    hash          TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
