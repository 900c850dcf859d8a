//! `progressCard.get`, `sessions.observer.visibility`, `update.status`, `sessions.companion.state`: what the OpenClaw Control
//! UI asks at start-up about features clawgate does not have. Each answers the schema's empty
//! state — no card, no update — rather than an error the UI would show as a toast.

use clawgate_protocol::methods::control_ui::*;

use crate::error::CoreError;

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
