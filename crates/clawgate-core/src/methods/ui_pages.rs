//! What the Control UI's skills, systems and config pages call. clawgate has no skills, no skill
//! registry and no skill library, and keeps no themes: those answer the honest empty state (the
//! UI then shows "no skills" and its own built-in themes). `environments.list` reports what
//! clawgate has: the gateway host, which runs the agent sessions, and the nodes it knows.

use serde_json::json;

use clawgate_protocol::methods::nodes::NodeEntry;
use clawgate_protocol::methods::ui_pages::*;

use crate::agent::AgentService;
use crate::error::CoreError;
use crate::methods::chat::resolve_session_key;
use crate::nodes::NodeService;

/// The agent a request names (not blank, known), or the default one.
pub(crate) fn known_agent(agents: &AgentService, method: &str, agent_id: Option<&str>) -> Result<String, CoreError> {
    let config = agents.agents();
    let id = match agent_id {
        Some(id) if id.trim().is_empty() => {
            return Err(CoreError::invalid(format!("invalid {method} params: agentId must not be empty")));
        }
        Some(id) => id.to_owned(),
        None => config.default_id.clone(),
    };
    if config.get(&id).is_none() {
        return Err(CoreError::InvalidRequest {
            message: format!("unknown agent id \"{id}\""),
            details: Some(json!({"code": "UNKNOWN_AGENT_ID", "agentId": id})),
        });
    }
    Ok(id)
}

/// A session key the UI sent: not blank, at most `max` characters, routable; its canonical form.
fn session(
    agents: &AgentService,
    method: &str,
    key: &str,
    agent_id: Option<&str>,
    max: usize,
) -> Result<String, CoreError> {
    if key.trim().is_empty() || key.chars().count() > max {
        return Err(CoreError::invalid(format!("invalid {method} params: sessionKey must be 1 to {max} characters")));
    }
    resolve_session_key(agents, key, agent_id).map(|(key, _)| key)
}

/// `skills.status {agentId?, sessionKey?}` → the agent's skills: none (clawgate's agents load no
/// skills, so none is ready, missing a requirement or disabled).
pub async fn skills_status(agents: &AgentService, p: SkillsStatusParams) -> Result<SkillsStatusResult, CoreError> {
    let agent_id = known_agent(agents, "skills.status", p.agent_id.as_deref())?;
    if let Some(key) = &p.session_key {
        session(agents, "skills.status", key, Some(&agent_id), usize::MAX)?;
    }
    Ok(SkillsStatusResult { agent_id, skills: Vec::new() })
}

/// `skills.search {query?, limit?}` → no results: upstream searches ClawHub, which clawgate does
/// not reach (it installs no skills).
pub async fn skills_search(p: SkillsSearchParams) -> Result<SkillsSearchResult, CoreError> {
    if p.query.as_deref().is_some_and(str::is_empty) {
        return Err(CoreError::invalid("invalid skills.search params: query must not be empty"));
    }
    if p.limit.is_some_and(|n| !(1..=100).contains(&n)) {
        return Err(CoreError::invalid("invalid skills.search params: limit must be between 1 and 100"));
    }
    Ok(SkillsSearchResult { results: Vec::new() })
}

/// `skills.library.list {sessionKey?, scope?}` → an empty library with nowhere to save to:
/// clawgate keeps no skill library (and no user profiles to own entries).
pub async fn skills_library_list(
    agents: &AgentService,
    p: SkillsLibraryListParams,
) -> Result<SkillsLibraryListResult, CoreError> {
    let session = match &p.session_key {
        None => None,
        Some(key) => Some(LibrarySession {
            session_key: session(agents, "skills.library.list", key, None, 512)?,
            selections: Vec::new(),
            attachable: Vec::new(),
        }),
    };
    Ok(SkillsLibraryListResult {
        entries: Vec::new(),
        profile_id: None,
        multiple_profiles: false,
        default_target: LibraryTarget::Unavailable,
        can_manage_workspace: false,
        default_selection_limit: 64,
        session,
    })
}

/// What the gateway host offers: it runs agent sessions (with their tools).
const GATEWAY_CAPABILITIES: &[&str] = &["agent.run", "sessions", "tools"];

/// `environments.list {runtimeId?, projection?, includeDesktopSetup?}` → the gateway host, then
/// every node clawgate knows (connected ones available). `projection: "profiles"` asks only for
/// cloud-worker profiles, of which clawgate has none. A `runtimeId` (checked for length; the
/// dispatcher asked `operator.write` for it) changes nothing: clawgate places no runtimes.
pub async fn environments_list(
    nodes: &NodeService,
    p: EnvironmentsListParams,
) -> Result<EnvironmentsListResult, CoreError> {
    if p.runtime_id.as_ref().is_some_and(|id| id.is_empty() || id.chars().count() > 128) {
        return Err(CoreError::invalid("invalid environments.list params: runtimeId must be 1 to 128 characters"));
    }
    if p.projection == Some(EnvironmentsProjection::Profiles) {
        return Ok(EnvironmentsListResult { environments: Vec::new() });
    }
    let mut environments = vec![gateway_environment()];
    environments.extend(nodes.list().iter().map(node_environment));
    Ok(EnvironmentsListResult { environments })
}

fn gateway_environment() -> EnvironmentSummary {
    let platform = match std::env::consts::OS {
        "macos" => "darwin",
        "windows" => "win32",
        other => other,
    };
    EnvironmentSummary {
        id: "gateway".into(),
        kind: "local",
        label: Some("Gateway local".into()),
        status: EnvironmentStatus::Available,
        platform: Some(platform.into()),
        session_host: true,
        last_connected_at_ms: None,
        last_disconnected_at_ms: None,
        trust: EnvironmentTrust::Persistent,
        capabilities: GATEWAY_CAPABILITIES.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// A node as an environment: available while connected; what it declared as capabilities.
fn node_environment(node: &NodeEntry) -> EnvironmentSummary {
    let mut capabilities: Vec<String> =
        node.caps.iter().chain(&node.commands).filter(|c| !c.is_empty()).cloned().collect();
    capabilities.sort();
    capabilities.dedup();
    let ms = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
    EnvironmentSummary {
        id: format!("node:{}", node.node_id),
        kind: "node",
        label: Some(node.display_name.clone().unwrap_or_else(|| node.node_id.clone())).filter(|l| !l.is_empty()),
        status: if node.connected { EnvironmentStatus::Available } else { EnvironmentStatus::Unavailable },
        platform: node.platform.clone().filter(|p| !p.trim().is_empty()),
        session_host: false,
        last_connected_at_ms: ms(node.last_connected_at_ms),
        last_disconnected_at_ms: ms(node.last_disconnected_at_ms),
        trust: EnvironmentTrust::Persistent,
        capabilities,
    }
}

/// `themes.list {}` → no themes stored on the gateway (no imported, no plugin themes; the UI
/// offers its built-in ones), and the UI's default theme in force: clawgate stores no theme
/// choice, for lack of user profiles to keep one under.
pub async fn themes_list(_: NoParams) -> Result<ThemesListResult, CoreError> {
    Ok(ThemesListResult {
        current: ThemeSelection { id: "claw", mode: "system", scope: "gateway", overrides: Overrides {} },
        theme: ThemeDescriptor {
            id: "claw",
            name: "Claw",
            description: "The Control UI's default theme, built into the UI.",
            source: "builtin",
            modes: ["light", "dark"],
        },
        themes: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn search_limits_follow_the_schema() {
        let search =
            |query: Option<&str>, limit| skills_search(SkillsSearchParams { query: query.map(Into::into), limit });
        assert!(search(Some(""), None).await.is_err());
        assert!(search(None, Some(0)).await.is_err());
        assert!(search(None, Some(101)).await.is_err());
        assert_eq!(search(Some("git"), Some(20)).await.map(|r| r.results.len()).ok(), Some(0));
        assert_eq!(search(None, None).await.map(|r| r.results.len()).ok(), Some(0));
    }

    #[tokio::test]
    async fn a_profiles_projection_or_a_bad_runtime_id_lists_no_gateway() {
        let events = crate::events::Events::new(
            std::sync::Arc::new(crate::broadcast::Broadcaster::default()),
            std::sync::Arc::new(crate::presence::PresenceState::new(serde_json::Value::Null)),
        );
        let nodes = NodeService::new(events);
        let p = EnvironmentsListParams { projection: Some(EnvironmentsProjection::Profiles), ..Default::default() };
        assert_eq!(environments_list(&nodes, p).await.map(|r| r.environments.len()).ok(), Some(0));
        let p = EnvironmentsListParams { runtime_id: Some("x".repeat(129)), ..Default::default() };
        assert!(environments_list(&nodes, p).await.is_err());
        let all = environments_list(&nodes, EnvironmentsListParams::default()).await.expect("list");
        assert_eq!(all.environments.len(), 1);
        let gateway = &all.environments[0];
        assert_eq!((gateway.id.as_str(), gateway.kind, gateway.session_host), ("gateway", "local", true));
    }

    #[test]
    fn a_node_is_available_while_connected_with_what_it_declared() {
        let node = NodeEntry {
            node_id: "n1".into(),
            caps: vec!["system".into(), "browser".into()],
            commands: vec!["system.which".into(), "browser".into()],
            approval_state: "approved",
            paired: true,
            connected: false,
            last_connected_at_ms: Some(5),
            platform: Some("linux".into()),
            ..NodeEntry::default()
        };
        let env = node_environment(&node);
        assert_eq!(env.id, "node:n1");
        assert_eq!(env.status, EnvironmentStatus::Unavailable);
        assert_eq!(env.capabilities, ["browser", "system", "system.which"]);
        assert_eq!((env.label.as_deref(), env.last_connected_at_ms), (Some("n1"), Some(5)));
    }
}
