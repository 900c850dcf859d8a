//! What the OpenClaw Control UI asks at start-up. `progressCard.get`, `sessions.observer.visibility`,
//! `update.status`, `sessions.companion.state`, `exec.approval.list`, `openclaw.approval.list`,
//! `talk.catalog`, `tasks.list` and `sessions.branches.list` are about features clawgate does not
//! have: each answers the schema's empty state — no card, no update, no approvals, no voice, no
//! tasks, no branches — rather than an error the UI would show as a toast. `models.authStatus` and
//! `chat.metadata` answer from the configured providers, models and chat commands.

use clawgate_protocol::methods::control_ui::*;

use clawgate_protocol::methods::AnyParams;
use serde_json::json;

use crate::agent::AgentService;
use crate::error::CoreError;
use crate::methods::catalog::{commands_list, models_list};
use crate::methods::chat::resolve_session_key;
use crate::time::now_ms;

/// `progressCard.get {sessionKey}` → `{card: null}`: clawgate's agents keep no progress cards.
pub async fn progress_card_get(p: ProgressCardGetParams) -> Result<ProgressCardGetResult, CoreError> {
    if p.session_key.trim().is_empty() {
        return Err(CoreError::invalid("invalid progressCard.get params: sessionKey must not be empty"));
    }
    Ok(ProgressCardGetResult { card: None })
}

/// `sessions.observer.visibility {visible}` → `{ok: true}`: a display hint; clawgate sends the
/// same session events whether the observer is on screen or not.
pub async fn sessions_observer_visibility(
    _: SessionsObserverVisibilityParams,
) -> Result<SessionsObserverVisibilityResult, CoreError> {
    Ok(SessionsObserverVisibilityResult { ok: true })
}

/// `update.status` → `{sentinel: null, updateAvailable: null}`: clawgate does not update itself
/// and never looks for a newer version.
pub async fn update_status(_: UpdateStatusParams) -> Result<UpdateStatusResult, CoreError> {
    Ok(UpdateStatusResult { sentinel: None, update_available: None })
}

/// `sessions.companion.state {sessionKey}` → `{exchanges: []}`: clawgate sessions have no
/// companion to ask side questions of.
pub async fn sessions_companion_state(
    p: SessionsCompanionStateParams,
) -> Result<SessionsCompanionStateResult, CoreError> {
    if p.session_key.trim().is_empty() {
        return Err(CoreError::invalid("invalid sessions.companion.state params: sessionKey must not be empty"));
    }
    Ok(SessionsCompanionStateResult { exchanges: Vec::new() })
}

/// `exec.approval.list` → `[]`: exec approvals come from nodes, and clawgate has none yet.
pub async fn exec_approval_list(_: ExecApprovalListParams) -> Result<ExecApprovalListResult, CoreError> {
    Ok(Vec::new())
}

/// `openclaw.approval.list` → `[]`: clawgate has no system agent asking for approvals.
pub async fn openclaw_approval_list(_: OpenclawApprovalListParams) -> Result<OpenclawApprovalListResult, CoreError> {
    Ok(Vec::new())
}

/// `talk.catalog` → the empty catalog: clawgate has no voice providers.
pub async fn talk_catalog(_: TalkCatalogParams) -> Result<TalkCatalogResult, CoreError> {
    Ok(TalkCatalogResult::empty())
}

/// `tasks.list` → `{tasks: []}`: clawgate keeps no task registry.
pub async fn tasks_list(p: TasksListParams) -> Result<TasksListResult, CoreError> {
    if p.limit.is_some_and(|l| !(1..=500).contains(&l)) {
        return Err(CoreError::invalid("invalid tasks.list params: limit must be between 1 and 500"));
    }
    Ok(TasksListResult { tasks: Vec::new() })
}

/// The agent a request names, or the default one; an unknown id is refused as `agent.identity.get`
/// refuses it.
fn known_agent(agents: &AgentService, agent_id: Option<String>) -> Result<String, CoreError> {
    let config = agents.agents();
    let id = agent_id.unwrap_or_else(|| config.default_id.clone());
    if config.get(&id).is_none() {
        return Err(CoreError::InvalidRequest {
            message: format!("unknown agent id \"{id}\""),
            details: Some(json!({"code": "UNKNOWN_AGENT_ID", "agentId": id})),
        });
    }
    Ok(id)
}

/// `models.authStatus {agentId?}` → every provider clawgate can call, `static` (its credentials
/// come from the config and never expire), with `apiKey: {source: "config"}` when it has a key.
pub async fn models_auth_status(
    agents: &AgentService,
    p: ModelsAuthStatusParams,
) -> Result<ModelsAuthStatusResult, CoreError> {
    known_agent(agents, p.agent_id)?;
    let registry = agents.registry();
    let providers = registry
        .ids()
        .map(|id| ProviderAuth {
            provider: id.to_owned(),
            display_name: id.to_owned(),
            status: ProviderAuthState::Static,
            profiles: Vec::new(),
            api_key: registry
                .config(id)
                .and_then(|c| c.api_key.as_deref())
                .filter(|k| !k.is_empty())
                .map(|_| ApiKeySource { source: ApiKeySourceKind::Config }),
        })
        .collect();
    Ok(ModelsAuthStatusResult { ts: now_ms(), providers })
}

/// `chat.metadata {agentId?, sessionKey?}` → the models `models.list` lists and the commands
/// `commands.list` lists. clawgate has no saved model accounts, so `authProfileId` is refused.
pub async fn chat_metadata(agents: &AgentService, p: ChatMetadataParams) -> Result<ChatMetadataResult, CoreError> {
    if p.session_key.is_some() && p.auth_profile_id.is_some() {
        return Err(CoreError::invalid("invalid chat.metadata params: sessionKey and authProfileId are exclusive"));
    }
    if p.auth_profile_id.is_some() {
        return Err(CoreError::invalid("invalid chat.metadata params: clawgate has no saved model accounts"));
    }
    let agent_id = match p.session_key {
        Some(key) => Some(resolve_session_key(agents, &key, p.agent_id.as_deref())?.1),
        None => p.agent_id,
    };
    known_agent(agents, agent_id)?;
    Ok(ChatMetadataResult {
        models: models_list(agents, AnyParams).await?.models,
        commands: commands_list(AnyParams).await?.commands,
        swarm_enabled: false,
    })
}

/// `sessions.branches.list {sessionKey, agentId?}` → `{branches: []}`: clawgate's transcripts are
/// linear (no rewind, no fork), so no session has branches to switch to.
pub async fn sessions_branches_list(
    agents: &AgentService,
    p: SessionsBranchesListParams,
) -> Result<SessionsBranchesListResult, CoreError> {
    if p.session_key.trim().is_empty() {
        return Err(CoreError::invalid("invalid sessions.branches.list params: sessionKey must not be empty"));
    }
    resolve_session_key(agents, &p.session_key, p.agent_id.as_deref())?;
    Ok(SessionsBranchesListResult { branches: Vec::new() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_empty_session_key_is_refused() {
        let err = progress_card_get(ProgressCardGetParams { session_key: " ".into() }).await.unwrap_err();
        assert!(err.to_string().contains("sessionKey"), "{err}");
        let ok = progress_card_get(ProgressCardGetParams { session_key: "agent:main:main".into() }).await;
        assert_eq!(ok.ok(), Some(ProgressCardGetResult { card: None }));
    }

    #[tokio::test]
    async fn tasks_list_refuses_a_limit_out_of_range() {
        let p = |limit| TasksListParams { limit: Some(limit), ..TasksListParams::default() };
        assert!(tasks_list(p(0)).await.is_err());
        assert!(tasks_list(p(501)).await.is_err());
        assert_eq!(tasks_list(p(200)).await.ok(), Some(TasksListResult { tasks: Vec::new() }));
    }
}
