//! The gateway: the set of services the composition root builds, and its own long-running
//! duties (tick, health refresh, pruning).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use clawgate_store::{AnyStore, ChannelStore, IdempotencyStore};

use crate::agent::AgentService;
use crate::agent::tools::{ComfyGenerate, ComfyQueued, TemplateInfo, ToolHost};
use crate::broadcast::Broadcaster;
use crate::channels::ComfyCommands;
use crate::channels::commands::CommandCaller;
use crate::config_service::{ConfigService, Overrides, Reconfigure};
use crate::events::Events;
use crate::handshake::AuthService;
use crate::health::{GatewayInfo, HealthService};
use crate::pairing::PairingService;
use crate::presence::PresenceState;
use crate::settings::{GatewaySettings, SharedSettings};
use crate::tasks::Tasks;
use crate::time::now_ms;
use clawgate_comfy::command::{Command, CommandPolicy};

/// The storage backend: SQLite or PostgreSQL, chosen by `storage.url`. Handlers only use the
/// `clawgate-store` traits; this alias is the one place that names the implementation.
pub type Store = AnyStore;

/// How often the health snapshot is refreshed and broadcast.
const HEALTH_REFRESH: Duration = Duration::from_secs(60);

/// Finished channel inbox/outbox rows older than this are deleted.
const CHANNEL_ROW_TTL_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// The services of one gateway process. Only the composition root, the dispatcher (it routes a
/// method to the handles its handler takes) and the server's router setup name it; everything
/// else takes the handles it uses.
pub struct Gateway {
    /// clawgate's version.
    pub version: String,
    /// Changes on every start.
    pub boot_id: String,
    /// Start time (ms since epoch).
    pub started_at_ms: i64,
    settings: SharedSettings,
    /// Durable state.
    pub store: Store,
    /// Every broadcast, the connected clients and presence go through this handle; services
    /// hold a clone of it.
    pub events: Events,
    /// Who may connect: secrets, device proofs, pairing, the failed-auth limiters.
    pub auth: AuthService,
    /// The health snapshot and the `hello-ok` an admitted client gets.
    pub health: HealthService,
    /// Device pairing requests and decisions.
    pub pairing: PairingService,
    /// The config file and its edits (shared with the services that read their sections).
    pub config: ConfigService,
    /// Signed `/media/<token>` links to job outputs.
    pub media: crate::media::MediaSigner,
    /// Agents, providers and runs.
    pub agents: AgentService,
    /// Chat channel accounts.
    pub channels: crate::channels::ChannelService,
    /// ComfyUI workers and jobs (shared with the agent's tools, see [`ComfyTools`]).
    pub comfy: crate::comfy::ComfyService,
    /// The cron scheduler's wake-up and health.
    pub cron: crate::cron::CronService,
    /// The Prometheus series the services count into (`/metrics`).
    pub metrics: crate::metrics::Metrics,
    /// The heartbeat runner (`last-heartbeat`, `set-heartbeats`, `wake`).
    pub heartbeat: crate::heartbeat_runner::HeartbeatService,
    /// Connected nodes, their approvals and the invokes waiting for them.
    pub nodes: crate::nodes::NodeService,
    /// The gateways sharing the store, and the leases this one holds (started by the
    /// composition root before run recovery).
    pub cluster: crate::cluster::Cluster,
    /// Exec approvals and their policy (the agent's node tool asks through it).
    pub exec_approvals: crate::exec_approvals::ExecApprovals,
    overrides: Overrides,
    tasks: Tasks,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("boot_id", &self.boot_id)
            .field("clients", &self.events.clients().len())
            .finish()
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
        let info = GatewayInfo::starting_now(version);
        let metrics = crate::metrics::Metrics::new();
        let host = hostname();
        let self_entry = json!({
            "host": host,
            "version": version,
            "platform": std::env::consts::OS,
            "mode": "gateway",
            "reason": "self",
            "instanceId": info.boot_id,
            "text": format!("Gateway: {host} · clawgate {version} · mode gateway · reason self"),
            "ts": info.started_at_ms,
        });
        let events = Events::new(Arc::new(Broadcaster::default()), Arc::new(PresenceState::new(self_entry)));
        let settings = SharedSettings::new(settings);
        let pairing = PairingService::new(store.clone(), events.clone());
        let nodes = crate::nodes::NodeService::persistent(store.clone(), events.clone());
        let tasks = Tasks::new();
        let outbox = crate::channels::Outbox::new(store.clone(), metrics.clone());
        let media = crate::media::MediaSigner::new(store.clone(), &settings.get().state_dir, config.clone());
        let comfy = crate::comfy::ComfyService::new(
            store.clone(),
            events.clone(),
            tasks.clone(),
            outbox.clone(),
            media.clone(),
            config.clone(),
            metrics.clone(),
        );
        let exec_approvals = crate::exec_approvals::ExecApprovals::new(store.clone(), events.clone(), tasks.clone());
        let tools: Arc<dyn ToolHost> =
            Arc::new(ComfyTools { comfy: comfy.clone(), nodes: nodes.clone(), exec_approvals: exec_approvals.clone() });
        let member = crate::cluster::Member {
            id: info.boot_id.clone(),
            version: version.to_owned(),
            started_at_ms: info.started_at_ms,
            listen_addr: settings.get().listen_addr.clone(),
        };
        let cluster_settings = crate::cluster::ClusterSettings::from_config(&config.current().config.cluster);
        let cluster = crate::cluster::Cluster::new(store.clone(), tasks.clone(), member, cluster_settings);
        let agents = AgentService::in_cluster(
            store.clone(),
            events.clone(),
            tasks.clone(),
            agents,
            tools.clone(),
            metrics.clone(),
            cluster.clone(),
        );
        let cron = crate::cron::CronService::new(
            store.clone(),
            events.clone(),
            tasks.clone(),
            agents.clone(),
            outbox.clone(),
            tools,
            &cluster,
        );
        let comfy_commands = Arc::new(ComfyChatCommands { comfy: comfy.clone(), cron: cron.clone() });
        let commands =
            crate::channels::Commands::new(store.clone(), events.clone(), agents.clone(), comfy_commands, version);
        let channels = crate::channels::ChannelService::new(
            store.clone(),
            tasks.clone(),
            config.clone(),
            outbox.clone(),
            agents.clone(),
            commands,
            cluster.clone(),
        );
        let auth = AuthService::new(settings.clone(), pairing.clone());
        let heartbeat = crate::heartbeat_runner::HeartbeatService::new(
            store.clone(),
            agents.clone(),
            events.clone(),
            tasks.clone(),
            outbox,
        );
        if !cluster.is_solo() {
            // Several gateways on one database: each ComfyUI worker is driven by the holder of
            // its lease, interval heartbeats run on the holder of `heartbeat`, access tokens'
            // rates are counted once for all, and failed-auth lockouts and access-token
            // revocations are exchanged on every cluster heartbeat.
            comfy.share_workers(Arc::new(crate::cluster::WorkerLeasesOf(cluster.clone())));
            heartbeat.beat_only_while(cluster.hold("heartbeat"));
            auth.access_tokens().share_buckets();
            cluster.exchange_on_beat(Arc::new(LockoutExchange { auth: auth.clone(), written: Default::default() }));
            let tokens = auth.access_tokens().clone();
            cluster.exchange_on_beat(Arc::new(RevocationExchange { tokens, events: events.clone() }));
        }
        let observed = crate::health::Observed {
            agents: agents.clone(),
            channels: channels.clone(),
            comfy: comfy.clone(),
            cluster: cluster.clone(),
        };
        let health =
            HealthService::new(info.clone(), settings.clone(), store.clone(), config.clone(), events.clone(), observed);
        Arc::new(Self {
            version: info.version,
            boot_id: info.boot_id,
            started_at_ms: info.started_at_ms,
            settings,
            store,
            events,
            auth,
            health,
            pairing,
            config,
            media,
            agents,
            channels,
            comfy,
            cron,
            metrics,
            heartbeat,
            nodes,
            cluster,
            exec_approvals,
            overrides,
            tasks,
        })
    }

    /// Current settings.
    pub fn settings(&self) -> Arc<GatewaySettings> {
        self.settings.get()
    }

    /// The settings handle services share (swapped on a hot reload).
    pub fn shared_settings(&self) -> &SharedSettings {
        &self.settings
    }

    /// The command-line overrides (kept across config reloads).
    pub fn overrides(&self) -> Overrides {
        self.overrides.clone()
    }

    /// What a config change reconfigures (see [`ConfigService::apply_changes`]).
    pub fn reconfigure(&self) -> Reconfigure<'_> {
        Reconfigure {
            settings: &self.settings,
            overrides: &self.overrides,
            agents: &self.agents,
            channels: &self.channels,
            comfy: &self.comfy,
            events: &self.events,
            tasks: &self.tasks,
        }
    }

    /// Cancelled when the gateway is stopping.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.tasks.token()
    }

    /// The tracker every long-lived task runs under (see [`Tasks`]).
    pub fn tasks(&self) -> &Tasks {
        &self.tasks
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
                    let default_agent = self.agents.agents().default_id.clone();
                    self.health.refresh_and_publish(&default_agent).await;
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

/// Failed-auth lockouts exchanged with the other gateways of a shared database on every cluster
/// heartbeat ([`AuthService::share_lockouts`]): counting stays per gateway, a lockout started on
/// any holds on all.
struct LockoutExchange {
    auth: AuthService,
    /// The lockouts written already, kept between exchanges (only the cluster loop calls this,
    /// one exchange at a time).
    written: parking_lot::Mutex<std::collections::HashMap<std::net::IpAddr, std::time::Instant>>,
}

#[async_trait::async_trait]
impl crate::cluster::Exchange for LockoutExchange {
    fn name(&self) -> &'static str {
        "failed-auth lockouts"
    }

    async fn exchange(&self) -> Result<(), clawgate_store::StoreError> {
        let mut written = std::mem::take(&mut *self.written.lock());
        let result = self.auth.share_lockouts(&mut written).await;
        *self.written.lock() = written;
        result
    }
}

/// Access tokens revoked through another gateway of a shared database: their connections here
/// are closed on the next cluster heartbeat, as the revoking gateway closes its own at once.
struct RevocationExchange {
    tokens: crate::access_tokens::AccessTokens,
    events: Events,
}

#[async_trait::async_trait]
impl crate::cluster::Exchange for RevocationExchange {
    fn name(&self) -> &'static str {
        "access-token revocations"
    }

    async fn exchange(&self) -> Result<(), clawgate_store::StoreError> {
        for id in self.tokens.revoked_elsewhere().await? {
            crate::access_tokens::close_connections_of(&self.events, &id);
        }
        Ok(())
    }
}

/// The agent's tools reach ComfyUI through the comfy service: the [`ToolHost`] the composition
/// wires into the agent service (the agent never holds the gateway or the comfy service).
struct ComfyTools {
    comfy: crate::comfy::ComfyService,
    /// The node tool runs commands on nodes …
    nodes: crate::nodes::NodeService,
    /// … behind exec approvals.
    exec_approvals: crate::exec_approvals::ExecApprovals,
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
        let (job, position) = self
            .comfy
            .submit(&job.template, &job.inputs, job.prompt.as_deref(), job.deliver_to, job.requested_by, None)
            .await
            .map_err(|e| e.to_string())?;
        Ok(ComfyQueued { job_id: job.id, status: job.status.as_str().to_owned(), position })
    }

    fn nodes(&self) -> Vec<crate::agent::tools::NodeInfo> {
        let approved = self.nodes.list().into_iter().filter(|n| n.connected && n.approval_state == "approved");
        approved
            .map(|n| crate::agent::tools::NodeInfo {
                node_id: n.node_id,
                display_name: n.display_name,
                commands: n.commands,
            })
            .collect()
    }

    async fn node_invoke(&self, call: crate::agent::tools::NodeCall) -> Result<Value, String> {
        self.exec_approvals.guarded_node_invoke(&self.nodes, call).await
    }
}

/// `/schedule run|enable|disable` of the gateway's own schedules, lent to the ComfyUI commands
/// (the cron service runs ComfyUI jobs, so the comfy service cannot hold it).
impl crate::comfy::LocalSchedules for crate::cron::CronService {
    async fn run_now(&self, id: &str) -> Result<bool, crate::error::CoreError> {
        let run = clawgate_protocol::methods::cron::CronRunParams { id: Some(id.to_owned()), ..Default::default() };
        crate::methods::cron::cron_run(self, run).await.map(|_| true)
    }

    async fn set_enabled(&self, id: &str, on: bool) -> Result<bool, crate::error::CoreError> {
        let r = clawgate_store::CronStore::set_cron_enabled(self.store(), id, on, now_ms()).await;
        self.kick();
        Ok(r?)
    }
}

/// The chat commands' view of ComfyUI ([`ComfyCommands`]): the comfy service runs the command,
/// the cron service answers `/schedule` for the gateway's own schedules. Built here, in the
/// composition root, so neither the channel service nor the comfy service holds the other.
struct ComfyChatCommands {
    comfy: crate::comfy::ComfyService,
    cron: crate::cron::CronService,
}

#[async_trait::async_trait]
impl ComfyCommands for ComfyChatCommands {
    fn enabled(&self) -> bool {
        self.comfy.enabled()
    }

    fn policy(&self) -> CommandPolicy {
        self.comfy.config().map(|c| c.policy.clone()).unwrap_or_default()
    }

    async fn run(&self, caller: &CommandCaller, policy: &CommandPolicy, cmd: Command) -> String {
        self.comfy.run_command(caller, policy, cmd, &self.cron).await
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
