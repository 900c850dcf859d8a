//! The gateway's shared state and long-running duties (tick, health refresh, pruning), and the
//! `hello-ok` it sends.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use clawgate_protocol::connect::ConnectParams;
use clawgate_protocol::hello::{self, Features, HelloAuth, HelloOk, Policy, ServerInfo, Snapshot};
use clawgate_protocol::{events, methods, scopes};
use clawgate_store::{ChannelStore, IdempotencyStore, SessionQuery, SessionStore, SqliteStore};

use crate::agent::AgentService;
use crate::agent::tools::{ComfyGenerate, ComfyQueued, TemplateInfo, ToolHost};
use crate::auth::FailedAuthLimiter;
use crate::broadcast::{Broadcaster, ClientHandle};
use crate::channels::ComfyCommands;
use crate::channels::commands::CommandCaller;
use crate::config_service::{ConfigService, Overrides};
use crate::events::Events;
use crate::handshake::Admission;
use crate::pairing::PairingService;
use crate::presence::PresenceState;
use crate::settings::GatewaySettings;
use crate::tasks::Tasks;
use crate::time::now_ms;
use clawgate_comfy::command::{Command, CommandPolicy};

/// The storage backend. Handlers only use the `clawgate-store` traits; this alias is the one
/// place that names the implementation.
pub type Store = SqliteStore;

/// How often the health snapshot is refreshed and broadcast.
const HEALTH_REFRESH: Duration = Duration::from_secs(60);

/// Finished channel inbox/outbox rows older than this are deleted.
const CHANNEL_ROW_TTL_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// Shared state of one gateway process.
pub struct Gateway {
    /// clawgate's version.
    pub version: String,
    /// Changes on every start.
    pub boot_id: String,
    started: Instant,
    /// Start time (ms since epoch).
    pub started_at_ms: i64,
    settings: RwLock<Arc<GatewaySettings>>,
    /// Durable state.
    pub store: Store,
    /// Connected clients (shared with [`Gateway::events`]).
    pub clients: Arc<Broadcaster>,
    /// Presence and health versions (shared with [`Gateway::events`]).
    pub presence: Arc<PresenceState>,
    /// Every broadcast goes through this handle; services hold a clone of it.
    pub events: Events,
    /// Failed-auth lockout per address bucket (gateway token/password, device proofs, pairing
    /// attempts without credentials).
    pub limiter: Mutex<FailedAuthLimiter>,
    /// Failed chat-platform webhook secrets per address bucket: a different secret with its own
    /// budget, so a webhook guesser does not lock the operator's connects out.
    pub webhook_failures: Mutex<FailedAuthLimiter>,
    /// Bounds concurrent argon2 password checks (and the memory they take).
    pub password_gate: crate::auth::PasswordGate,
    /// Device pairing requests and decisions.
    pub pairing: PairingService,
    /// The config file and its edits (shared with the services that read their sections).
    pub config: Arc<ConfigService>,
    /// Signed `/media/<token>` links to job outputs.
    pub media: crate::media::MediaSigner,
    /// Agents, providers and runs.
    pub agents: AgentService,
    /// Chat channel accounts.
    pub channels: crate::channels::ChannelService,
    /// ComfyUI workers and jobs (shared with the agent's tools, see [`ComfyTools`]).
    pub comfy: Arc<crate::comfy::ComfyService>,
    /// The cron scheduler's wake-up and health.
    pub cron: crate::cron::CronService,
    overrides: Overrides,
    health: RwLock<Value>,
    tasks: Tasks,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("boot_id", &self.boot_id).field("clients", &self.clients.len()).finish()
    }
}

impl Gateway {
    /// Assemble a gateway.
    pub fn new(
        version: &str,
        settings: GatewaySettings,
        store: Store,
        config: ConfigService,
        agents: crate::agent::AgentSetup,
        overrides: Overrides,
    ) -> Arc<Self> {
        let boot_id = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        let host = hostname();
        let self_entry = json!({
            "host": host,
            "version": version,
            "platform": std::env::consts::OS,
            "mode": "gateway",
            "reason": "self",
            "instanceId": boot_id,
            "text": format!("Gateway: {host} · clawgate {version} · mode gateway · reason self"),
            "ts": now,
        });
        let clients = Arc::new(Broadcaster::default());
        let presence = Arc::new(PresenceState::new(self_entry));
        let events = Events::new(clients.clone(), presence.clone());
        let pairing = PairingService::new(store.clone(), events.clone());
        let tasks = Tasks::new();
        let comfy = Arc::new(crate::comfy::ComfyService::default());
        let tools: Arc<dyn ToolHost> =
            Arc::new(ComfyTools { comfy: comfy.clone(), store: store.clone(), events: events.clone() });
        let agents = AgentService::new(store.clone(), events.clone(), tasks.clone(), agents, tools.clone());
        let outbox = crate::channels::Outbox::new(store.clone());
        let config = Arc::new(config);
        let media = crate::media::MediaSigner::new(store.clone(), &settings.state_dir, config.clone());
        let cron = crate::cron::CronService::new(
            store.clone(),
            events.clone(),
            tasks.clone(),
            agents.clone(),
            outbox.clone(),
            tools,
            boot_id.clone(),
        );
        Arc::new_cyclic(|gw| {
            let comfy_commands = Arc::new(ComfyCommandsBridge { comfy: comfy.clone(), gw: gw.clone() });
            let commands =
                crate::channels::Commands::new(store.clone(), events.clone(), agents.clone(), comfy_commands, version);
            let channels = crate::channels::ChannelService::new(
                store.clone(),
                tasks.clone(),
                config.clone(),
                outbox,
                agents.clone(),
                commands,
            );
            Self {
                version: version.to_owned(),
                boot_id,
                started: Instant::now(),
                started_at_ms: now,
                settings: RwLock::new(Arc::new(settings)),
                store,
                clients,
                presence,
                events,
                limiter: Mutex::new(FailedAuthLimiter::default()),
                webhook_failures: Mutex::new(FailedAuthLimiter::default()),
                password_gate: crate::auth::PasswordGate::default(),
                pairing,
                config,
                media,
                agents,
                channels,
                comfy,
                cron,
                overrides,
                health: RwLock::new(Value::Null),
                tasks,
            }
        })
    }

    /// Current settings.
    pub fn settings(&self) -> Arc<GatewaySettings> {
        self.settings.read().clone()
    }

    /// Swap in new settings (hot reload).
    pub fn replace_settings(&self, new: GatewaySettings) {
        *self.settings.write() = Arc::new(new);
    }

    /// The command-line overrides (kept across config reloads).
    pub fn overrides(&self) -> Overrides {
        self.overrides.clone()
    }

    /// Time since start.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Cancelled when the gateway is stopping.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.tasks.token()
    }

    /// The tracker every long-lived task runs under (see [`Tasks`]).
    pub fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    /// A successful authentication clears the address's failure count.
    pub fn clear_failures(&self, ip: IpAddr) {
        self.limiter.lock().record_success(ip);
    }

    /// The current health snapshot (same shape as the `health` result), in full: only for
    /// callers holding `operator.read` (see [`public_health`] for everyone else).
    pub fn health_snapshot(&self) -> Value {
        self.health.read().clone()
    }

    /// The health snapshot as `client_scopes` may see it: in full with `operator.read`, else the
    /// [`public_health`] form.
    pub fn health_for(&self, role: &str, client_scopes: &[String]) -> Value {
        let full = self.health_snapshot();
        if role == clawgate_protocol::connect::roles::OPERATOR && scopes::satisfied(scopes::READ, client_scopes) {
            full
        } else {
            public_health(&full)
        }
    }

    /// Recompute the health snapshot (the `HealthSnapshot` shape of the schema); returns it.
    pub async fn refresh_health(&self) -> Value {
        let started = Instant::now();
        let now = now_ms();
        let sessions = self.store.list_sessions(&SessionQuery { limit: 5, ..SessionQuery::default() }).await;
        let count = self.store.count_sessions().await.unwrap_or(0);
        let recent: Vec<Value> = sessions
            .unwrap_or_default()
            .iter()
            .map(|s| json!({"key": s.key, "updatedAt": s.updated_at_ms, "age": (now - s.updated_at_ms).max(0)}))
            .collect();
        let sessions = json!({"path": self.settings().state_dir.join("clawgate.db").display().to_string(), "count": count, "recent": recent});
        let agents = self.agents.agents();
        let snapshot = json!({
            "ok": true,
            "ts": now,
            "durationMs": started.elapsed().as_millis() as u64,
            "configReload": {"hotReloadStatus": if self.config.watching() { "active" } else { "disabled" }},
            "channels": {},
            "channelOrder": [],
            "channelLabels": {},
            "heartbeatSeconds": 0,
            "defaultAgentId": agents.default_id,
            "agents": [],
            "sessions": sessions,
        });
        *self.health.write() = snapshot.clone();
        snapshot
    }

    /// Build the `hello-ok` for an admitted client.
    pub fn hello_ok(&self, conn_id: &str, admission: &Admission) -> HelloOk {
        let settings = self.settings();
        let admin = admission.scopes.iter().any(|s| s == scopes::ADMIN);
        let cfg = self.config.current();
        HelloOk {
            kind: "hello-ok".into(),
            protocol: clawgate_protocol::PROTOCOL_VERSION,
            server: ServerInfo {
                version: self.version.clone(),
                build_id: Some(format!("clawgate-{}", self.version)),
                boot_id: self.boot_id.clone(),
                control_ui_build_source: "bundled".into(),
                conn_id: conn_id.to_owned(),
            },
            features: Features {
                methods: methods::advertised().into_iter().map(str::to_owned).collect(),
                events: events::EMITTED.iter().map(|s| s.to_string()).collect(),
                capabilities: hello::CAPABILITIES.iter().map(|s| s.to_string()).collect(),
            },
            snapshot: Snapshot {
                presence: self.presence.list(),
                health: self.health_for(&admission.role, &admission.scopes),
                state_version: self.presence.state_version(),
                uptime_ms: self.uptime().as_millis() as u64,
                suspension: json!({"phase": "accepting"}),
                session_defaults: Some(
                    json!({"defaultAgentId": "main", "mainKey": "main", "mainSessionKey": "agent:main:main"}),
                ),
                auth_mode: Some(settings.auth_mode.as_str().to_owned()),
                applied_config_hash: admin.then(|| cfg.hash.clone()),
                config_path: admin.then(|| settings.config_path.display().to_string()),
                state_dir: admin.then(|| settings.state_dir.display().to_string()),
            },
            auth: HelloAuth {
                method: admission.method.to_owned(),
                role: admission.role.clone(),
                scopes: admission.scopes.clone(),
                device_token: admission.device_token.as_ref().map(|(t, _)| t.clone()),
                issued_at_ms: admission.device_token.as_ref().map(|(_, at)| *at),
            },
            policy: Policy::standard(settings.tick_interval_ms),
        }
    }

    /// Register an admitted client and announce its presence. Short-lived tool connections (the
    /// CLI, backends, probes) get no presence entry, as upstream: announcing every one of them to
    /// every client would make connection storms quadratic.
    pub fn client_connected(&self, client: Arc<ClientHandle>, params: &ConnectParams, ip: &str) {
        if matches!(params.client.mode.as_str(), "cli" | "backend" | "probe") {
            self.clients.add(client);
            return;
        }
        let entry = crate::presence::client_entry(
            params,
            client.device_id.as_deref(),
            &client.role,
            &client.scopes,
            ip,
            now_ms(),
        );
        let key = client.conn_id.clone();
        self.clients.add(client);
        let version = self.presence.upsert(&key, entry);
        self.events.presence_changed(version);
    }

    /// Forget a client and announce it.
    pub fn client_disconnected(&self, conn_id: &str) {
        if self.clients.remove(conn_id).is_some()
            && let Some(version) = self.presence.remove(conn_id)
        {
            self.events.presence_changed(version);
        }
    }

    /// Run the periodic duties until shutdown: `tick`, health refresh + broadcast, pruning.
    pub async fn run_maintenance(self: Arc<Self>) {
        let tick_every = Duration::from_millis(self.settings().tick_interval_ms.max(1));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + tick_every, tick_every);
        let mut health = tokio::time::interval_at(tokio::time::Instant::now() + HEALTH_REFRESH, HEALTH_REFRESH);
        let cancel = self.tasks.token();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => self.events.tick(),
                _ = health.tick() => {
                    let snapshot = self.refresh_health().await;
                    let version = self.presence.bump_health();
                    self.events.health(&snapshot, version);
                    let now = now_ms();
                    if let Err(e) = self.store.prune(now - clawgate_protocol::DEDUPE_TTL_MS, clawgate_protocol::DEDUPE_MAX).await {
                        tracing::warn!(error = %e, "pruning idempotency keys failed");
                    }
                    // Answered inbound rows are kept a week: the window in which a platform's
                    // redelivery of an old update is still recognised as a duplicate.
                    if let Err(e) = self.store.prune_channel_rows(now - CHANNEL_ROW_TTL_MS).await {
                        tracing::warn!(error = %e, "pruning channel inbox/outbox rows failed");
                    }
                    if let Err(e) = self.pairing.expire(now).await {
                        tracing::warn!(error = %e, "expiring pairing requests failed");
                    }
                }
            }
        }
    }

    /// Begin a graceful stop: broadcast `shutdown`, close every socket with 1012, cancel every
    /// task. The caller then awaits them with [`Tasks::shutdown`] and closes the store.
    pub fn begin_shutdown(&self, reason: &str) {
        self.agents.cancel_all();
        self.channels.stop_all();
        self.events.shutdown(reason);
        self.tasks.cancel();
    }
}

/// The agent's tools reach ComfyUI through the comfy service: the [`ToolHost`] the composition
/// wires into the agent service (the agent never holds the gateway or the comfy service).
struct ComfyTools {
    comfy: Arc<crate::comfy::ComfyService>,
    store: Store,
    events: Events,
}

#[async_trait::async_trait]
impl ToolHost for ComfyTools {
    fn comfy_templates(&self) -> Option<Vec<TemplateInfo>> {
        if !self.comfy.enabled() {
            return None;
        }
        let library = self.comfy.library();
        let list = library.map(|l| {
            l.list().into_iter().map(|t| TemplateInfo { id: t.id.clone(), inputs: t.allowed_inputs.clone() }).collect()
        });
        Some(list.unwrap_or_default())
    }

    async fn comfy_generate(&self, job: ComfyGenerate) -> Result<ComfyQueued, String> {
        let (job, position) = crate::comfy::submit_job(
            &self.comfy,
            &self.store,
            &self.events,
            &job.template,
            &job.inputs,
            job.prompt.as_deref(),
            job.deliver_to,
            job.requested_by,
            None,
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(ComfyQueued { job_id: job.id, status: job.status.as_str().to_owned(), position })
    }
}

/// Chat commands reach ComfyUI's command handler through this [`ComfyCommands`] bridge.
///
/// `comfy::run_command` still takes the gateway (the comfy step turns it into a method of the
/// comfy service); until then this bridge holds the one weak pointer to the gateway, here in
/// the composition root, so the channel service and the command registry hold no gateway.
struct ComfyCommandsBridge {
    comfy: Arc<crate::comfy::ComfyService>,
    gw: std::sync::Weak<Gateway>,
}

#[async_trait::async_trait]
impl ComfyCommands for ComfyCommandsBridge {
    fn enabled(&self) -> bool {
        self.comfy.enabled()
    }

    fn policy(&self) -> CommandPolicy {
        self.comfy.config().map(|c| c.policy.clone()).unwrap_or_default()
    }

    async fn run(&self, caller: &CommandCaller, policy: &CommandPolicy, cmd: Command) -> String {
        match self.gw.upgrade() {
            Some(gw) => crate::comfy::run_command(&gw, caller, policy, cmd).await,
            None => "The gateway is stopping; try again in a moment.".to_owned(),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The health snapshot with private data left out, for callers without `operator.read` (probes,
/// nodes, scope-less clients): the same shape and schema (`sessions.path` is a string, `recent` a
/// list) but no database path, no session keys (they carry chat-platform user ids), no agent or
/// channel account details.
///
/// Class closed: *state leaking through an exempt method*. `health` is callable without scopes
/// and its event goes to every client, so everything in it is public unless projected here; the
/// projection is an allowlist, so a field added to the snapshot later stays private by default.
pub fn public_health(full: &Value) -> Value {
    let mut out = json!({
        "ok": full.get("ok").cloned().unwrap_or(json!(true)),
        "channels": {},
        "channelOrder": [],
        "channelLabels": {},
        "agents": [],
        "sessions": {"path": "", "count": full["sessions"]["count"].as_u64().unwrap_or(0), "recent": []},
    });
    for key in ["ts", "durationMs", "configReload", "heartbeatSeconds", "defaultAgentId"] {
        if let Some(v) = full.get(key) {
            out[key] = v.clone();
        }
    }
    out
}
