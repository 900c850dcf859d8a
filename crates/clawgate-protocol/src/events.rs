//! Event names and the per-recipient scope guards (contract §7).

use crate::scopes;

pub mod pairing;

#[allow(missing_docs)]
pub mod names {
    pub const CONNECT_CHALLENGE: &str = "connect.challenge";
    pub const TICK: &str = "tick";
    pub const HEALTH: &str = "health";
    /// A heartbeat ran (or was skipped): `{ts, status, reason?, durationMs?, message?}`.
    pub const HEARTBEAT: &str = "heartbeat";
    pub const PRESENCE: &str = "presence";
    pub const SHUTDOWN: &str = "shutdown";
    pub const CONFIG_CHANGED: &str = "config.changed";
    pub const DEVICE_PAIR_REQUESTED: &str = "device.pair.requested";
    pub const DEVICE_PAIR_RESOLVED: &str = "device.pair.resolved";
    pub const NODE_PAIR_REQUESTED: &str = "node.pair.requested";
    pub const NODE_PAIR_RESOLVED: &str = "node.pair.resolved";
    /// A node's host stats changed: `{nodeId, hostStats}` (relayed from its `node.event`).
    pub const NODE_HOST_STATS: &str = "node.hostStats";
    /// A node's input activity: `{nodeId, lastActiveAtMs, presenceUpdatedAtMs}` (relayed from
    /// its `node.event`; both `null` when cleared).
    pub const NODE_PRESENCE: &str = "node.presence";
    /// Sent to one node only: run a command (`NodeInvokeRequestEvent`).
    pub const NODE_INVOKE_REQUEST: &str = "node.invoke.request";
    pub const AGENT: &str = "agent";
    pub const CHAT: &str = "chat";
    pub const SESSION_MESSAGE: &str = "session.message";
    pub const SESSIONS_CHANGED: &str = "sessions.changed";
    pub const PLUGIN_APPROVAL_REQUESTED: &str = "plugin.approval.requested";
    pub const PLUGIN_APPROVAL_RESOLVED: &str = "plugin.approval.resolved";
    pub const EXEC_APPROVAL_REQUESTED: &str = "exec.approval.requested";
    pub const EXEC_APPROVAL_RESOLVED: &str = "exec.approval.resolved";
    pub const CRON: &str = "cron";
}

/// Events clawgate emits (`hello-ok.features.events`).
pub const EMITTED: &[&str] = &[
    names::CONNECT_CHALLENGE,
    names::PRESENCE,
    names::TICK,
    names::SHUTDOWN,
    names::HEALTH,
    names::HEARTBEAT,
    names::CONFIG_CHANGED,
    names::DEVICE_PAIR_REQUESTED,
    names::DEVICE_PAIR_RESOLVED,
    names::NODE_PAIR_REQUESTED,
    names::NODE_PAIR_RESOLVED,
    names::NODE_INVOKE_REQUEST,
    names::NODE_HOST_STATS,
    names::NODE_PRESENCE,
    names::AGENT,
    names::CHAT,
    names::SESSION_MESSAGE,
    names::SESSIONS_CHANGED,
    names::PLUGIN_APPROVAL_REQUESTED,
    names::PLUGIN_APPROVAL_RESOLVED,
    names::EXEC_APPROVAL_REQUESTED,
    names::EXEC_APPROVAL_RESOLVED,
    names::CRON,
];

/// Who may receive an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// Every connected client, any role.
    Everyone,
    /// Operators holding this scope.
    Scope(&'static str),
    /// Never broadcast (unknown event names).
    Nobody,
}

/// The guard of an event name. Unknown names are never broadcast, as upstream.
pub fn guard(event: &str) -> Guard {
    match event {
        names::TICK
        | names::HEALTH
        | names::SHUTDOWN
        | names::HEARTBEAT
        | "gateway.suspension"
        | "update.available" => Guard::Everyone,
        names::PRESENCE
        | names::CONFIG_CHANGED
        | "agent"
        | "chat"
        | "cron"
        | "sessions.changed"
        | "session.message"
        | names::NODE_HOST_STATS
        | names::NODE_PRESENCE => Guard::Scope(scopes::READ),
        names::DEVICE_PAIR_REQUESTED
        | names::DEVICE_PAIR_RESOLVED
        | "device.pair.changed"
        | names::NODE_PAIR_REQUESTED
        | names::NODE_PAIR_RESOLVED => Guard::Scope(scopes::PAIRING),
        "plugin.approval.requested"
        | "plugin.approval.resolved"
        | names::EXEC_APPROVAL_REQUESTED
        | names::EXEC_APPROVAL_RESOLVED => Guard::Scope(scopes::APPROVALS),
        // clawgate's own: ComfyUI job state and progress.
        "comfy.job" => Guard::Scope(scopes::READ),
        _ => Guard::Nobody,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_emitted_event_except_challenge_has_a_guard() {
        for e in EMITTED.iter().filter(|e| **e != names::CONNECT_CHALLENGE && **e != names::NODE_INVOKE_REQUEST) {
            assert_ne!(guard(e), Guard::Nobody, "{e}");
        }
        assert_eq!(guard("made.up"), Guard::Nobody);
    }
}
