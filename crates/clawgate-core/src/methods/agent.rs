//! `agent` (two responses), `agent.wait`, `agent.identity.get`, `agents.list`.

use std::time::Duration;

use serde_json::json;

use clawgate_protocol::frames::ResponseFrame;
use clawgate_protocol::methods::agent::*;
use clawgate_store::RunKind;

use crate::agent::{AbortReason, AgentService, RunOutcome, RunRequest, Submitted, TurnContext};
use crate::dispatch::CallContext;
use crate::error::CoreError;
use crate::methods::chat::{client_tag, resolve_session_key};
use crate::time::now_ms;

/// How long `agent` waits for the end of a run it accepted, beyond the run's own timeout.
const AGENT_FINAL_GRACE: Duration = Duration::from_secs(30);

/// The final response of a terminal run; a failed one is an error response.
fn final_result(run_id: &str, outcome: RunOutcome) -> Result<AgentResult, CoreError> {
    match outcome {
        RunOutcome::Completed(c) => Ok(AgentResult::Ok {
            run_id: run_id.to_owned(),
            summary: AgentSummary::Completed,
            result: AgentRunResult {
                payloads: vec![AgentPayload { text: c.text, media_url: None }],
                meta: AgentRunMeta {
                    duration_ms: c.duration_ms,
                    agent_meta: AgentMeta {
                        session_id: c.session_id,
                        provider: c.provider,
                        model: c.model,
                        usage: c.usage,
                    },
                },
            },
        }),
        RunOutcome::Aborted(a) => Ok(AgentResult::Timeout {
            run_id: run_id.to_owned(),
            summary: AgentSummary::Aborted,
            stop_reason: a.stop_reason,
            timeout_phase: if a.reason == AbortReason::Timeout { TimeoutPhase::Run } else { TimeoutPhase::Aborted },
            provider_started: !a.text.is_empty(),
        }),
        RunOutcome::Interrupted => {
            Err(CoreError::Unavailable("the run was interrupted by a gateway restart; send it again".into()))
        }
        RunOutcome::Failed(f) if !f.error.is_empty() => Err(CoreError::Unavailable(f.error)),
        RunOutcome::Failed(_) => Err(CoreError::Unavailable("the agent run failed".into())),
        RunOutcome::Queued | RunOutcome::Running => Err(CoreError::Unavailable("the agent run failed".into())),
    }
}

/// `agent {message, idempotencyKey, agentId?, sessionKey?, timeout? (s), extraSystemPrompt?}`:
/// first `res` `{runId, sessionKey, agentId, status:"accepted", acceptedAt}`, then (same id) the
/// final result. `runId` = the idempotency key; a repeated key replays the stored result.
pub async fn agent(agents: &AgentService, ctx: &CallContext, p: AgentParams) -> Result<AgentResult, CoreError> {
    let run_id = p.idempotency_key;
    let key_param = p.session_key.as_deref().unwrap_or("main");
    let (session_key, agent_id) = resolve_session_key(agents, key_param, p.agent_id.as_deref())?;
    let timeout = p.timeout.map(Duration::from_secs);
    let context = p.context.map(|c| TurnContext::capture(c, agents.agents().context_max_chars)).transpose()?;
    let req = RunRequest {
        run_id: run_id.clone(),
        session_key: session_key.clone(),
        agent_id: agent_id.clone(),
        message: p.message,
        kind: RunKind::Agent,
        timeout,
        extra_system: p.extra_system_prompt,
        client: client_tag(ctx),
        context,
    };
    let submitted = agents.submit(req).await;
    // Enqueued (or refused): the connection's next ordered request may go while this one waits.
    ctx.end_turn();
    match submitted? {
        Submitted::Done(rec) => return final_result(&run_id, RunOutcome::from_record(&rec)),
        Submitted::Started | Submitted::InFlight => {}
    }
    let accepted = AgentAccepted {
        run_id: run_id.clone(),
        session_key,
        agent_id,
        status: AcceptedStatus::Accepted,
        accepted_at: now_ms(),
    };
    let accepted = serde_json::to_value(accepted).map_err(CoreError::internal)?;
    let _ = ctx.client.send(ResponseFrame::ok(ctx.request_id.clone(), accepted).to_text());
    let limit = timeout.unwrap_or(Duration::from_secs(agents.agents().timeout_secs)) + AGENT_FINAL_GRACE;
    // A queued run may wait for earlier ones in its lane; keep waiting while it is alive.
    loop {
        match agents.wait(&run_id, limit).await? {
            Some(o) if o.is_terminal() => return final_result(&run_id, o),
            Some(_) if !agents.is_stopping() => continue,
            _ => return Err(CoreError::Unavailable("the gateway is stopping; the run did not finish".into())),
        }
    }
}

/// `agent.wait {runId, timeoutMs?}` → `{runId, status: "ok"|"error"|"timeout"|"pending", …}`.
pub async fn agent_wait(agents: &AgentService, p: AgentWaitParams) -> Result<AgentWaitResult, CoreError> {
    let timeout = Duration::from_millis(p.timeout_ms.unwrap_or(30_000).min(600_000));
    let Some(o) = agents.wait(&p.run_id, timeout).await? else {
        return Err(CoreError::invalid("agent run was not found"));
    };
    let run_id = p.run_id;
    Ok(match o {
        RunOutcome::Completed(c) => AgentWaitResult::Ok {
            run_id,
            ended_at: c.ended_at,
            stop_reason: c.stop_reason,
            terminal_reply: TerminalReply { disposition: Disposition::Visible, text: c.text },
        },
        RunOutcome::Aborted(a) => AgentWaitResult::Timeout { run_id, ended_at: a.ended_at, stop_reason: a.stop_reason },
        RunOutcome::Failed(f) => AgentWaitResult::Error { run_id, ended_at: f.ended_at, error: Some(f.error) },
        RunOutcome::Interrupted => AgentWaitResult::Error { run_id, ended_at: None, error: None },
        RunOutcome::Queued | RunOutcome::Running => AgentWaitResult::Pending { run_id },
    })
}

/// `agent.identity.get {agentId?, sessionKey?}` → `{agentId, name, nameSource}`.
pub async fn agent_identity_get(
    agents: &AgentService,
    p: AgentIdentityGetParams,
) -> Result<AgentIdentityGetResult, CoreError> {
    let config = agents.agents();
    let id = match (p.agent_id, p.session_key) {
        (Some(id), _) => id,
        (None, Some(key)) => resolve_session_key(agents, &key, None)?.1,
        (None, None) => config.default_id.clone(),
    };
    let Some(a) = config.get(&id) else {
        return Err(CoreError::InvalidRequest {
            message: format!("unknown agent id \"{id}\""),
            details: Some(json!({"code": "UNKNOWN_AGENT_ID", "agentId": id})),
        });
    };
    Ok(match &a.name {
        Some(n) => AgentIdentityGetResult { agent_id: a.id.clone(), name: n.clone(), name_source: NameSource::Config },
        None => AgentIdentityGetResult { agent_id: a.id.clone(), name: a.id.clone(), name_source: NameSource::Default },
    })
}

/// `agents.list` → `{defaultId, mainKey, scope, agents:[{id, name?, model:{primary}}]}`.
pub async fn agents_list(agents: &AgentService, _: AgentsListParams) -> Result<AgentsListResult, CoreError> {
    let agents = agents.agents();
    let list = agents
        .agents
        .iter()
        .map(|a| AgentEntry {
            id: a.id.clone(),
            kind: AgentKind::Agent,
            name: a.name.clone(),
            model: AgentModel { primary: agents.model_for(a) },
        })
        .collect();
    Ok(AgentsListResult {
        default_id: agents.default_id.clone(),
        ownership: AgentOwnership::Sole,
        selection_required: false,
        main_key: "main".into(),
        scope: SessionScope::PerSender,
        agents: list,
    })
}
