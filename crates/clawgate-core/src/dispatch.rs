//! Authorization from the static method table, then dispatch to the handler named after the
//! method. The only place that maps a method name to code.

use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;

use clawgate_protocol::ErrorShape;
use clawgate_protocol::connect::roles;
use clawgate_protocol::frames::ResponseFrame;
use clawgate_protocol::methods::health::{HealthParams, HealthResult};
use clawgate_protocol::methods::{FieldsOf, Requirement, names as m, requirement};
use clawgate_protocol::scopes;

use crate::broadcast::ClientHandle;
use crate::error::{CoreError, parse_params};
use crate::gateway::Gateway;
use crate::methods;

/// Who is calling, and which request this is.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The caller's connection.
    pub client: Arc<ClientHandle>,
    /// The request id (two-phase methods answer it twice).
    pub request_id: String,
    /// This request's place in its connection's order, for [`is_ordered`] methods.
    pub turn: Option<Arc<Turn>>,
}

impl CallContext {
    /// Let the connection's next ordered request go: called by a handler once its ordered part
    /// (e.g. the enqueue of a run) is done and only waiting remains. Dropping the context does
    /// the same.
    pub fn end_turn(&self) {
        if let Some(turn) = &self.turn {
            turn.end();
        }
    }
}

/// Whether a method changes a session's transcript or run queue, so that requests of one
/// connection must take effect in the order they were sent.
///
/// Class closed: reordering of pipelined requests. Every request runs on its own task (a slow one
/// must not stall the socket), so without this, ten `chat.send` sent in order landed in the
/// transcript in whatever order their tasks reached the store.
pub fn is_ordered(method: &str) -> bool {
    matches!(
        method,
        m::CHAT_SEND
            | m::CHAT_INJECT
            | m::CHAT_ABORT
            | m::AGENT
            | m::SESSIONS_PATCH
            | m::SESSIONS_RESET
            | m::SESSIONS_DELETE
    )
}

/// One ordered request's turn: it starts once the previous ordered request of its connection has
/// finished its ordered part, and lets the next one start when it finishes its own.
#[derive(Debug)]
pub struct Turn {
    after: Mutex<Option<oneshot::Receiver<()>>>,
    done: Mutex<Option<oneshot::Sender<()>>>,
}

impl Turn {
    /// The next turn after `last` (the connection's latest turn); `last` becomes this one.
    pub fn next(last: &mut Option<oneshot::Receiver<()>>) -> Arc<Self> {
        let (done, next) = oneshot::channel();
        let after = last.replace(next);
        Arc::new(Self { after: Mutex::new(after), done: Mutex::new(Some(done)) })
    }

    /// Wait until the previous ordered request is done (or gone).
    pub async fn wait(&self) {
        let after = self.after.lock().take();
        if let Some(after) = after {
            let _ = after.await;
        }
    }

    /// Let the next ordered request go.
    pub fn end(&self) {
        self.done.lock().take();
    }
}

/// Why a call was refused before reaching a handler.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Wrong role (counted: repeated ones close the connection).
    WrongRole(ErrorShape),
    /// Missing scope.
    MissingScope(ErrorShape),
    /// Refused by the connection's rate limit or its access token's restrictions (answered,
    /// not counted as a wrong role).
    Denied(ErrorShape),
}

/// Check the caller may call `method` with `params` (contract §4.1–4.3), after counting the call
/// against the connection's rate limits and checking its access token's restrictions
/// ([`crate::access_tokens`]). It waits only for a rate-limited token's bucket when several
/// gateways share it (one store round trip); otherwise it completes at once.
pub async fn authorize(client: &ClientHandle, method: &str, params: &Value) -> Result<(), Refusal> {
    client.limits().admit_request(method, params).await.map_err(Refusal::Denied)?;
    let wrong_role = || Refusal::WrongRole(ErrorShape::invalid_request(format!("unauthorized role: {}", client.role)));
    // A ComfyUI worker's connection (worker token) may call its own methods and nothing else,
    // not even the methods any client may call.
    if client.scopes.iter().any(|s| s == scopes::WORKER) && requirement(method) != Requirement::Scope(scopes::WORKER) {
        let scope = match requirement(method) {
            Requirement::Scope(scope) => scope,
            Requirement::Dynamic => clawgate_protocol::methods::dynamic_scope(method, params),
            Requirement::Exempt | Requirement::Node => scopes::ADMIN,
        };
        return Err(Refusal::MissingScope(ErrorShape::missing_scope(scope, &[scope])));
    }
    match requirement(method) {
        Requirement::Exempt => Ok(()),
        Requirement::Node if client.role == roles::NODE => Ok(()),
        Requirement::Node => Err(wrong_role()),
        Requirement::Scope(_) if client.role != roles::OPERATOR => Err(wrong_role()),
        Requirement::Scope(scope) if scopes::satisfied(scope, &client.scopes) => Ok(()),
        Requirement::Scope(scope) => Err(Refusal::MissingScope(ErrorShape::missing_scope(scope, &[scope]))),
        Requirement::Dynamic if client.role != roles::OPERATOR => Err(wrong_role()),
        Requirement::Dynamic => {
            let scope = clawgate_protocol::methods::dynamic_scope(method, params);
            if scopes::satisfied(scope, &client.scopes) {
                Ok(())
            } else {
                Err(Refusal::MissingScope(ErrorShape::missing_scope(scope, &[scope])))
            }
        }
    }
}

/// The adapter between the wire and a typed handler: decode `params` into the handler's params
/// type (a decode error is `INVALID_REQUEST "invalid <method> params: …"`, the one text every
/// typed method shares), run it, encode its result. A method plugs in with one line in
/// [`dispatch`]: `m::NAME => typed(method, params, |p| handler(gw, ctx, p)).await`.
async fn typed<P, R, Fut>(method: &str, params: Value, handler: impl FnOnce(P) -> Fut) -> Result<Value, CoreError>
where
    P: DeserializeOwned,
    R: Serialize,
    Fut: Future<Output = Result<R, CoreError>>,
{
    let params: P = parse_params(method, params)?;
    let result = handler(params).await?;
    serde_json::to_value(result).map_err(CoreError::internal)
}

/// The method router as the server holds it: the one handle that carries the gateway (the set
/// of services), so it can hand each handler exactly the handles that handler takes. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    gw: Arc<Gateway>,
}

impl Dispatcher {
    /// The router over a gateway's services.
    pub fn new(gw: Arc<Gateway>) -> Self {
        Self { gw }
    }

    /// Run an authorized call (see [`dispatch`]), counted in the request metrics by method and
    /// outcome.
    pub async fn dispatch(&self, ctx: &CallContext, method: &str, params: Value) -> Result<Value, ErrorShape> {
        let start = std::time::Instant::now();
        // Boxed: the router's future holds the state of every method's handler, which makes it
        // large; inline, each request's task would copy all of it several times as tokio moves
        // the task into place (callgrind: memcpy was 59% of a `health` call's instructions).
        let mut result = Box::pin(dispatch(&self.gw, ctx, method, params)).await;
        self.gw.metrics.request(method, result.is_ok(), start.elapsed());
        // A listing shows an access token only its own sessions.
        if let (Ok(value), Some(access)) = (&mut result, ctx.client.access()) {
            access.filter_result(method, value);
        }
        result
    }

    /// Run an authorized call (see [`Dispatcher::dispatch`]) and give its `res` frame's wire text.
    /// `health` without `probe` is answered from the snapshot's cached encoding
    /// ([`crate::health::HealthService::result_text`]): the same bytes, without building and
    /// encoding the tree on every call.
    pub async fn respond(&self, ctx: &CallContext, id: String, method: &str, params: Value) -> String {
        let start = std::time::Instant::now();
        if method == m::HEALTH
            && let Some(text) = self.cached_health(ctx, &params)
        {
            self.gw.metrics.request(method, true, start.elapsed());
            return ResponseFrame::ok_text(&id, &text);
        }
        match self.dispatch(ctx, method, params).await {
            Ok(payload) => ResponseFrame::ok(id, payload),
            Err(err) => ResponseFrame::err(id, err),
        }
        .to_text()
    }

    /// The cached `health` answer for this call, when one applies: no `probe` (that refreshes
    /// first), and no access token (its restrictions may filter a result).
    fn cached_health(&self, ctx: &CallContext, params: &Value) -> Option<Arc<str>> {
        if ctx.client.access().is_some() {
            return None;
        }
        let p = HealthParams::deserialize(params).ok()?;
        if p.probe == Some(true) {
            return None;
        }
        self.gw.health.result_text(ctx.client.has_scope_across_sessions(scopes::READ))
    }
}

/// Run an authorized call.
pub async fn dispatch(gw: &Arc<Gateway>, ctx: &CallContext, method: &str, params: Value) -> Result<Value, ErrorShape> {
    if let Some(turn) = &ctx.turn {
        turn.wait().await;
    }
    let result = match method {
        // The snapshot is a JSON tree already: handed over as one, not encoded a second time.
        m::HEALTH => match parse_params(method, params) {
            Ok(p) => methods::health::health(&gw.health, &gw.agents, ctx, p).await.map(HealthResult::into_value),
            Err(e) => Err(e),
        },
        m::STATUS => {
            typed(method, params, |p| methods::health::status(&gw.health, &gw.pairing, &gw.heartbeat, ctx, p)).await
        }
        m::SYSTEM_PRESENCE => typed(method, params, |p| methods::system::system_presence(&gw.events, p)).await,
        m::SYSTEM_EVENT => typed(method, params, |p| methods::system::system_event(&gw.events, ctx, p)).await,
        m::LAST_HEARTBEAT => typed(method, params, |p| methods::system::last_heartbeat(&gw.heartbeat, p)).await,
        m::SET_HEARTBEATS => typed(method, params, |p| methods::system::set_heartbeats(&gw.heartbeat, p)).await,
        m::WAKE => typed(method, params, |p| methods::system::wake(&gw.heartbeat, &gw.agents, p)).await,
        m::LOGS_TAIL => typed(method, params, |p| methods::logs::logs_tail(gw.shared_settings(), p)).await,
        m::CONFIG_GET => typed(method, params, |p| methods::config::config_get(&gw.config, ctx, p)).await,
        m::CONFIG_SCHEMA => typed(method, params, |p| methods::config::config_schema(gw.health.info(), p)).await,
        m::CONFIG_SET => typed(method, params, |p| methods::config::config_set(&gw.config, gw.reconfigure(), p)).await,
        m::CONFIG_PATCH => {
            typed(method, params, |p| methods::config::config_patch(&gw.config, gw.reconfigure(), p)).await
        }
        m::CONFIG_APPLY => {
            typed(method, params, |p| methods::config::config_apply(&gw.config, gw.reconfigure(), p)).await
        }
        m::DEVICE_PAIR_LIST => typed(method, params, |p| methods::devices::device_pair_list(&gw.pairing, p)).await,
        m::DEVICE_PAIR_APPROVE => {
            typed(method, params, |p| methods::devices::device_pair_approve(&gw.pairing, ctx, p)).await
        }
        m::DEVICE_PAIR_REJECT => {
            typed(method, params, |p| methods::devices::device_pair_reject(&gw.pairing, ctx, p)).await
        }
        m::DEVICE_PAIR_REMOVE => {
            typed(method, params, |p| methods::devices::device_pair_remove(&gw.pairing, &gw.events, p)).await
        }
        m::DEVICE_TOKEN_ROTATE => {
            typed(method, params, |p| methods::devices::device_token_rotate(&gw.pairing, ctx, p)).await
        }
        m::DEVICE_TOKEN_REVOKE => {
            typed(method, params, |p| methods::devices::device_token_revoke(&gw.pairing, &gw.events, p)).await
        }
        m::NODE_PAIR_LIST => typed(method, params, |p| methods::nodes::node_pair_list(&gw.nodes, p)).await,
        m::NODE_PAIR_APPROVE => typed(method, params, |p| methods::nodes::node_pair_approve(&gw.nodes, p)).await,
        m::NODE_PAIR_REJECT => typed(method, params, |p| methods::nodes::node_pair_reject(&gw.nodes, p)).await,
        m::NODE_PAIR_REMOVE => typed(method, params, |p| methods::nodes::node_pair_remove(&gw.nodes, p)).await,
        m::NODE_RENAME => typed(method, params, |p| methods::nodes::node_rename(&gw.nodes, p)).await,
        m::NODE_LIST => typed(method, params, |p| methods::nodes::node_list(&gw.nodes, p)).await,
        m::NODE_DESCRIBE => typed(method, params, |p| methods::nodes::node_describe(&gw.nodes, p)).await,
        m::NODE_INVOKE => typed(method, params, |p| methods::nodes::node_invoke(&gw.nodes, p)).await,
        m::NODE_INVOKE_RESULT => typed(method, params, |p| methods::nodes::node_invoke_result(&gw.nodes, ctx, p)).await,
        m::NODE_EVENT => typed(method, params, |p| methods::nodes::node_event(&gw.nodes, ctx, p)).await,
        m::NODE_SKILLS_UPDATE => typed(method, params, |p| methods::nodes::node_skills_update(&gw.nodes, ctx, p)).await,
        m::NODE_PLUGIN_TOOLS_UPDATE => {
            typed(method, params, |p| methods::nodes::node_plugin_tools_update(&gw.nodes, ctx, p)).await
        }
        m::NODE_RUNNER_INVENTORY_UPDATE => {
            typed(method, params, |p| methods::nodes::node_runner_inventory_update(&gw.nodes, ctx, p)).await
        }
        m::CHANNELS_STATUS => {
            typed(method, params, |FieldsOf(p)| methods::channels::channels_status(&gw.channels, p)).await
        }
        m::CHANNELS_START => typed(method, params, |p| methods::channels::channels_start(&gw.channels, p)).await,
        m::CHANNELS_STOP => typed(method, params, |p| methods::channels::channels_stop(&gw.channels, p)).await,
        m::CHANNELS_LOGOUT => typed(method, params, |p| methods::channels::channels_logout(&gw.channels, p)).await,
        m::CHANNELS_PAIRING_LIST => {
            typed(method, params, |FieldsOf(p)| methods::channels::pairing_list(&gw.channels, p)).await
        }
        m::CHANNELS_PAIRING_APPROVE => {
            typed(method, params, |FieldsOf(p)| methods::channels::pairing_approve(&gw.channels, p)).await
        }
        m::CHANNELS_PAIRING_DISMISS => {
            typed(method, params, |FieldsOf(p)| methods::channels::pairing_dismiss(&gw.channels, p)).await
        }
        m::SEND => typed(method, params, |FieldsOf(p)| methods::channels::send(&gw.channels, p)).await,
        m::COMFY_RUN => typed(method, params, |FieldsOf(p)| methods::comfy::run(&gw.comfy, ctx, p)).await,
        m::COMFY_JOBS_GET => typed(method, params, |FieldsOf(p)| methods::comfy::jobs_get(&gw.comfy, p)).await,
        m::COMFY_JOBS_LIST => typed(method, params, |FieldsOf(p)| methods::comfy::jobs_list(&gw.comfy, p)).await,
        m::COMFY_JOBS_CANCEL => typed(method, params, |FieldsOf(p)| methods::comfy::jobs_cancel(&gw.comfy, p)).await,
        m::COMFY_TEMPLATES_LIST => typed(method, params, |p| methods::comfy::templates_list(&gw.comfy, p)).await,
        m::COMFY_WORKERS_LIST => typed(method, params, |p| methods::comfy::workers_list(&gw.comfy, p)).await,
        m::COMFY_WORKER_JOIN => typed(method, params, |p| gw.comfy.worker_join(ctx, p)).await,
        m::COMFY_WORKER_PULL => typed(method, params, |p| gw.comfy.worker_pull(ctx, p)).await,
        m::COMFY_WORKER_PROGRESS => typed(method, params, |p| gw.comfy.worker_progress(ctx, p)).await,
        m::COMFY_WORKER_OUTPUT => typed(method, params, |p| gw.comfy.worker_output(ctx, p)).await,
        m::COMFY_WORKER_DONE => typed(method, params, |p| gw.comfy.worker_done(ctx, p)).await,
        m::COMFY_WORKER_HEARTBEAT => typed(method, params, |p| gw.comfy.worker_heartbeat(ctx, p)).await,
        m::CRON_LIST => typed(method, params, |FieldsOf(p)| methods::cron::cron_list(&gw.cron, p)).await,
        m::CRON_STATUS => typed(method, params, |p| methods::cron::cron_status(&gw.cron, p)).await,
        m::CRON_ADD => typed(method, params, |FieldsOf(p)| methods::cron::cron_add(&gw.cron, p)).await,
        m::CRON_UPDATE => typed(method, params, |FieldsOf(p)| methods::cron::cron_update(&gw.cron, p)).await,
        m::CRON_REMOVE => typed(method, params, |FieldsOf(p)| methods::cron::cron_remove(&gw.cron, p)).await,
        m::CRON_RUN => typed(method, params, |FieldsOf(p)| methods::cron::cron_run(&gw.cron, p)).await,
        m::CRON_RUNS => typed(method, params, |FieldsOf(p)| methods::cron::cron_runs(&gw.cron, p)).await,
        m::AGENT => typed(method, params, |p| methods::agent::agent(&gw.agents, ctx, p)).await,
        m::AGENT_WAIT => typed(method, params, |p| methods::agent::agent_wait(&gw.agents, p)).await,
        m::AGENT_IDENTITY_GET => typed(method, params, |p| methods::agent::agent_identity_get(&gw.agents, p)).await,
        m::AGENTS_LIST => typed(method, params, |p| methods::agent::agents_list(&gw.agents, p)).await,
        m::CHAT_SEND => {
            let h = methods::chat::ChatSend {
                agents: &gw.agents,
                store: &gw.store,
                events: &gw.events,
                commands: gw.channels.commands(),
            };
            typed(method, params, |p| methods::chat::chat_send(h, ctx, p)).await
        }
        // The Control UI opens a chat with `chat.startup`: upstream answers it as `chat.history`.
        m::CHAT_HISTORY | m::CHAT_STARTUP => {
            typed(method, params, |p| methods::chat::chat_history(&gw.agents, &gw.store, &gw.media, p)).await
        }
        m::CHAT_ABORT => typed(method, params, |p| methods::chat::chat_abort(&gw.agents, p)).await,
        m::CHAT_INJECT => {
            typed(method, params, |p| methods::chat::chat_inject(&gw.agents, &gw.store, &gw.events, p)).await
        }
        m::SESSIONS_LIST => typed(method, params, |p| methods::sessions::sessions_list(&gw.agents, &gw.store, p)).await,
        m::SESSIONS_DESCRIBE => {
            typed(method, params, |p| methods::sessions::sessions_describe(&gw.agents, &gw.store, p)).await
        }
        m::SESSIONS_PREVIEW => {
            typed(method, params, |p| methods::sessions::sessions_preview(&gw.agents, &gw.store, p)).await
        }
        m::SESSIONS_PATCH => {
            typed(method, params, |p| methods::sessions::sessions_patch(&gw.agents, &gw.store, &gw.events, p)).await
        }
        m::SESSIONS_RESET => {
            typed(method, params, |p| methods::sessions::sessions_reset(&gw.agents, &gw.store, &gw.events, p)).await
        }
        m::SESSIONS_DELETE => {
            typed(method, params, |p| methods::sessions::sessions_delete(&gw.agents, &gw.store, &gw.events, p)).await
        }
        m::SESSIONS_SUBSCRIBE => typed(method, params, |p| methods::sessions::sessions_subscribe(ctx, p)).await,
        m::SESSIONS_MESSAGES_SUBSCRIBE => {
            typed(method, params, |p| methods::sessions::sessions_messages_subscribe(&gw.agents, ctx, p, true)).await
        }
        m::SESSIONS_MESSAGES_UNSUBSCRIBE => {
            typed(method, params, |p| methods::sessions::sessions_messages_subscribe(&gw.agents, ctx, p, false)).await
        }
        m::COMMANDS_LIST => typed(method, params, methods::catalog::commands_list).await,
        m::MODELS_LIST => typed(method, params, |p| methods::catalog::models_list(&gw.agents, p)).await,
        m::QUESTION_LIST => typed(method, params, methods::catalog::question_list).await,
        m::PLUGIN_APPROVAL_LIST => {
            typed(method, params, |FieldsOf(p)| methods::approvals::plugin_approval_list(&gw.store, p)).await
        }
        m::PLUGIN_APPROVAL_REQUEST => {
            typed(method, params, |FieldsOf(p)| {
                methods::approvals::plugin_approval_request(&gw.store, &gw.events, gw.tasks(), ctx, p)
            })
            .await
        }
        m::PLUGIN_APPROVAL_WAIT_DECISION => {
            typed(method, params, |FieldsOf(p)| {
                methods::approvals::plugin_approval_wait_decision(&gw.store, gw.tasks(), p)
            })
            .await
        }
        m::PLUGIN_APPROVAL_RESOLVE => {
            typed(method, params, |FieldsOf(p)| methods::approvals::plugin_approval_resolve(&gw.comfy, ctx, p)).await
        }
        m::TASK_SUGGESTIONS_LIST => typed(method, params, methods::catalog::task_suggestions_list).await,
        m::USAGE_COST => {
            typed(method, params, |p| methods::usage::usage_cost(&gw.config, &gw.agents, &gw.store, p)).await
        }
        m::USAGE_STATUS => {
            typed(method, params, |p| methods::usage::usage_status(&gw.config, &gw.agents, &gw.store, p)).await
        }
        m::PROGRESS_CARD_GET => typed(method, params, methods::control_ui::progress_card_get).await,
        m::SESSIONS_OBSERVER_VISIBILITY => {
            typed(method, params, methods::control_ui::sessions_observer_visibility).await
        }
        m::UPDATE_STATUS => typed(method, params, methods::control_ui::update_status).await,
        m::SESSIONS_COMPANION_STATE => typed(method, params, methods::control_ui::sessions_companion_state).await,
        m::EXEC_APPROVAL_LIST => {
            typed(method, params, |p| methods::exec_approvals::exec_approval_list(&gw.exec_approvals, ctx, p)).await
        }
        m::EXEC_APPROVAL_REQUEST => {
            typed(method, params, |p| methods::exec_approvals::exec_approval_request(&gw.exec_approvals, ctx, p)).await
        }
        m::EXEC_APPROVAL_WAIT_DECISION => {
            typed(method, params, |p| methods::exec_approvals::exec_approval_wait_decision(&gw.exec_approvals, ctx, p))
                .await
        }
        m::EXEC_APPROVAL_RESOLVE => {
            typed(method, params, |p| methods::exec_approvals::exec_approval_resolve(&gw.exec_approvals, ctx, p)).await
        }
        m::EXEC_APPROVAL_GET => {
            typed(method, params, |p| methods::exec_approvals::exec_approval_get(&gw.exec_approvals, ctx, p)).await
        }
        m::EXEC_APPROVALS_GET => {
            typed(method, params, |p| methods::exec_approvals::exec_approvals_get(&gw.exec_approvals, p)).await
        }
        m::EXEC_APPROVALS_SET => {
            typed(method, params, |p| methods::exec_approvals::exec_approvals_set(&gw.exec_approvals, p)).await
        }
        m::EXEC_APPROVAL_GRANTS_LIST => typed(method, params, methods::exec_approvals::exec_approval_grants_list).await,
        m::EXEC_APPROVAL_GRANTS_REVOKE => {
            typed(method, params, methods::exec_approvals::exec_approval_grants_revoke).await
        }
        m::EXEC_APPROVALS_NODE_GET => {
            typed(method, params, |p| {
                methods::exec_approvals::exec_approvals_node_get(&gw.exec_approvals, &gw.nodes, p)
            })
            .await
        }
        m::EXEC_APPROVALS_NODE_SET => {
            typed(method, params, |p| {
                methods::exec_approvals::exec_approvals_node_set(&gw.exec_approvals, &gw.nodes, p)
            })
            .await
        }
        m::APPROVAL_GET => {
            typed(method, params, |p| methods::exec_approvals::approval_get(&gw.exec_approvals, p)).await
        }
        m::APPROVAL_RESOLVE => {
            typed(method, params, |p| methods::exec_approvals::approval_resolve(&gw.exec_approvals, ctx, p)).await
        }
        m::OPENCLAW_APPROVAL_LIST => typed(method, params, methods::control_ui::openclaw_approval_list).await,
        m::TALK_CATALOG => typed(method, params, methods::control_ui::talk_catalog).await,
        m::TASKS_LIST => typed(method, params, methods::control_ui::tasks_list).await,
        m::MODELS_AUTH_STATUS => {
            typed(method, params, |p| methods::control_ui::models_auth_status(&gw.agents, p)).await
        }
        m::CHAT_METADATA => typed(method, params, |p| methods::control_ui::chat_metadata(&gw.agents, p)).await,
        m::SESSIONS_BRANCHES_LIST => {
            typed(method, params, |p| methods::control_ui::sessions_branches_list(&gw.agents, p)).await
        }
        m::PLUGINS_CONTROL_UI_LIST => typed(method, params, methods::ui_startup::plugins_control_ui_list).await,
        m::BOARD_GET => typed(method, params, |p| methods::ui_startup::board_get(&gw.agents, p)).await,
        m::PROJECTS_LIST => typed(method, params, methods::ui_startup::projects_list).await,
        m::SESSIONS_VIEWERS_SET => typed(method, params, methods::ui_startup::sessions_viewers_set).await,
        m::SESSIONS_GITHUB_OPTIONS => {
            typed(method, params, |p| methods::ui_startup::sessions_github_options(&gw.agents, p)).await
        }
        m::SESSION_MEMBERS_LIST_EVIDENCE => {
            typed(method, params, |p| methods::ui_startup::session_members_list_evidence(&gw.agents, ctx, p)).await
        }
        m::CONTROL_UI_SESSION_PULL_REQUESTS_SUBSCRIBE => {
            typed(method, params, methods::ui_startup::session_pull_requests_subscribe).await
        }
        m::USERS_PREFS_GET => typed(method, params, methods::ui_startup::users_prefs_get).await,
        m::USERS_PREFS_SET => typed(method, params, methods::ui_startup::users_prefs_set).await,
        m::SESSIONS_GROUPS_LIST => typed(method, params, methods::ui_startup::sessions_groups_list).await,
        m::SESSIONS_GROUPS_DEFAULTS => typed(method, params, methods::ui_startup::sessions_groups_defaults).await,
        m::SYSTEM_INFO => typed(method, params, |p| methods::ui_startup::system_info(gw.health.info(), p)).await,
        m::SESSION_DISCUSSION_INFO => {
            typed(method, params, |p| methods::ui_startup::session_discussion_info(&gw.agents, p)).await
        }
        m::MENTIONS_LIST => typed(method, params, |p| methods::ui_startup::mentions_list(gw.health.info(), p)).await,
        m::SESSIONS_CATALOG_LIST => typed(method, params, methods::ui_startup::sessions_catalog_list).await,
        m::PLUGINS_LIST => typed(method, params, methods::ui_startup::plugins_list).await,
        m::PLUGINS_CATALOG_BROWSE => typed(method, params, methods::ui_startup::plugins_catalog_browse).await,
        m::DIAGNOSTICS_LANES => typed(method, params, |p| methods::ui_startup::diagnostics_lanes(&gw.agents, p)).await,
        m::SESSIONS_USAGE => {
            typed(method, params, |p| methods::usage::sessions_usage(&gw.config, &gw.agents, &gw.store, p)).await
        }
        m::SKILLS_STATUS => typed(method, params, |p| methods::ui_pages::skills_status(&gw.agents, p)).await,
        m::SKILLS_SEARCH => typed(method, params, methods::ui_pages::skills_search).await,
        m::SKILLS_LIBRARY_LIST => {
            typed(method, params, |p| methods::ui_pages::skills_library_list(&gw.agents, p)).await
        }
        m::ENVIRONMENTS_LIST => typed(method, params, |p| methods::ui_pages::environments_list(&gw.nodes, p)).await,
        m::THEMES_LIST => typed(method, params, methods::ui_pages::themes_list).await,
        m::TOKENS_CREATE => typed(method, params, |p| methods::tokens::tokens_create(gw.auth.access_tokens(), p)).await,
        m::TOKENS_LIST => typed(method, params, |p| methods::tokens::tokens_list(gw.auth.access_tokens(), p)).await,
        m::TOKENS_REVOKE => {
            typed(method, params, |p| methods::tokens::tokens_revoke(gw.auth.access_tokens(), &gw.events, p)).await
        }
        m::CONNECT => return Err(ErrorShape::invalid_request("connect is only valid as the first request")),
        other => return Err(ErrorShape::unknown_method(other)),
    };
    result.map_err(|e| e.to_error_shape(method))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broadcast::AuthKind;

    fn client(role: &str, scopes: &[&str]) -> Arc<ClientHandle> {
        ClientHandle::new(
            "c".into(),
            role.into(),
            scopes.iter().map(|s| s.to_string()).collect(),
            None,
            AuthKind::SharedSecret,
            1 << 20,
        )
        .0
    }

    #[tokio::test]
    async fn turns_run_in_the_order_they_were_taken() {
        let mut last = None;
        let turns: Vec<Arc<Turn>> = (0..3).map(|_| Turn::next(&mut last)).collect();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (i, turn) in turns.into_iter().enumerate().rev() {
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                turn.wait().await;
                order.lock().push(i);
                turn.end();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock(), [0, 1, 2]);
    }

    #[tokio::test]
    async fn typed_adapter_decodes_params_and_encodes_results() {
        use clawgate_protocol::methods::devices::{DevicePairRemoveParams, DevicePairRemoveResult};
        let remove = |p: DevicePairRemoveParams| async move {
            Ok(DevicePairRemoveResult { ok: true, device_id: p.device_id, removed: false })
        };
        let ok = typed(m::DEVICE_PAIR_REMOVE, serde_json::json!({"deviceId": "d"}), remove).await.unwrap();
        assert_eq!(ok, serde_json::json!({"ok": true, "deviceId": "d", "removed": false}));
        let err = typed(m::DEVICE_PAIR_REMOVE, serde_json::json!({"deviceId": "d", "x": 1}), remove)
            .await
            .unwrap_err()
            .to_error_shape(m::DEVICE_PAIR_REMOVE);
        assert_eq!(err.code, "INVALID_REQUEST");
        assert_eq!(err.message, "invalid device.pair.remove params: unknown field `x`, expected `deviceId`");
    }

    #[tokio::test]
    async fn probe_without_scopes_may_call_health_but_not_status() {
        let c = client("operator", &[]);
        assert!(authorize(&c, "health", &Value::Null).await.is_ok());
        match authorize(&c, "status", &Value::Null).await {
            Err(Refusal::MissingScope(e)) => {
                assert_eq!(e.code, "FORBIDDEN");
                assert_eq!(e.message, "missing scope: operator.read");
                assert_eq!(e.detail_code(), Some("MISSING_SCOPE"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn nodes_may_only_call_node_methods() {
        let n = client("node", &[]);
        assert!(
            matches!(authorize(&n, "status", &Value::Null).await, Err(Refusal::WrongRole(e)) if e.message == "unauthorized role: node")
        );
        assert!(authorize(&n, "node.event", &Value::Null).await.is_ok());
        let o = client("operator", &["operator.admin"]);
        assert!(matches!(authorize(&o, "node.event", &Value::Null).await, Err(Refusal::WrongRole(_))));
    }

    #[tokio::test]
    async fn a_worker_connection_may_call_only_the_worker_methods() {
        let w = client("operator", &[scopes::WORKER]);
        assert!(authorize(&w, m::COMFY_WORKER_PULL, &Value::Null).await.is_ok());
        for method in ["health", "status", "comfy.run", "agent", "node.event", "no.such.method"] {
            match authorize(&w, method, &serde_json::json!({"message": "hi"})).await {
                Err(Refusal::MissingScope(e)) => assert_eq!(e.code, "FORBIDDEN", "{method}"),
                other => panic!("{method}: {other:?}"),
            }
        }
        let admin = client("operator", &["operator.admin"]);
        assert!(
            matches!(authorize(&admin, m::COMFY_WORKER_JOIN, &Value::Null).await, Err(Refusal::MissingScope(e)) if e.message == "missing scope: comfy.worker")
        );
    }

    #[tokio::test]
    async fn unknown_methods_need_admin_before_they_are_reported_unknown() {
        assert!(matches!(
            authorize(&client("operator", &["operator.read"]), "no.such.method", &Value::Null).await,
            Err(Refusal::MissingScope(_))
        ));
        assert!(authorize(&client("operator", &["operator.admin"]), "no.such.method", &Value::Null).await.is_ok());
    }
}
