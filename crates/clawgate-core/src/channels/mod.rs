//! Chat channels in the gateway: starting and stopping platform accounts, the durable inbound
//! path (inbox → gate → command or agent run → reply into the outbox) and the outbox senders.
//!
//! ```text
//! adapter ──deliver──▶ inbox row (unique per platform message) ──▶ router ──▶ gate
//!     ──▶ /command reply | pairing code | agent run in the chat's session
//!     ──▶ reply chunks into the outbox (one transaction, idempotency key per chunk)
//!     ──▶ sender (per account, in order, only while the channel is ready) ──▶ marked sent
//! ```
//!
//! Every step is recorded before the next starts, so after a crash [`ChannelService::recover`] picks each
//! inbound message up where it stood. The one window no sender can close is between the
//! platform accepting a send and the outbox row being marked sent: a crash there repeats that
//! one chunk. That mark is a single-row UPDATE (`ChannelStore::mark_outbound_sent`) directly
//! after the send returns, so the window is one local write wide.

pub(crate) mod commands;
mod control;
mod ingress;
mod outbox;
mod router;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use clawgate_backoff::Backoff;
use clawgate_channels::{AccountConfig, AccountKey, Channel, ChannelError};
use clawgate_store::ChannelStore;

use crate::agent::AgentService;
use crate::config_service::ConfigService;
use crate::gateway::Store;
use crate::tasks::Tasks;

pub use commands::{ComfyCommands, Commands};
pub use control::{AccountControl, Hold};
pub use ingress::GatewayIngress;
pub use outbox::Outbox;
pub(crate) use router::PAIRING_TTL_MS;
pub use router::session_key_for;

/// One running platform account.
pub struct AccountRuntime {
    /// Its config.
    pub cfg: AccountConfig,
    /// The adapter.
    pub channel: Arc<dyn Channel>,
    cancel: CancellationToken,
    /// The account's receive loop and sender, so a stop can wait until both are gone (a start
    /// right after must not overlap an old sender still sending the same outbox head).
    tasks: TaskTracker,
    /// Wakes the outbox sender (shared with the [`Outbox`] while the account runs).
    pub(crate) outbox_kick: Arc<Notify>,
    limiter: Mutex<RateWindows>,
    /// A fatal error from `run` (bad token): the account stays stopped until the config changes.
    fatal: Mutex<Option<String>>,
    started_at_ms: i64,
    running: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for AccountRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountRuntime").field("key", &self.cfg.key).finish()
    }
}

/// Sliding one-minute windows per sender and per chat.
#[derive(Default)]
struct RateWindows {
    hits: HashMap<String, VecDeque<Instant>>,
}

impl RateWindows {
    /// Count a hit for `key`; false if `limit` hits already happened in the last minute.
    fn allow(&mut self, key: String, limit: u32, now: Instant) -> bool {
        if limit == 0 {
            return true;
        }
        if self.hits.len() > 10_000 {
            self.hits.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < Duration::from_secs(60)));
        }
        let q = self.hits.entry(key).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60)) {
            q.pop_front();
        }
        if q.len() as u32 >= limit {
            return false;
        }
        q.push_back(now);
        true
    }
}

/// The chat channels: the running accounts, what keeps others from starting, the inbound
/// routing and the outbox. Cheap to clone (clones share one state).
///
/// It holds no pointer back to the gateway: it is built with what it uses, the tasks [`start`]
/// spawns own clones of it, and a config change reaches them through
/// [`ChannelService::reload`] (serialised with `channels.start|stop|logout`, so two changes never
/// interleave their stops and starts).
#[derive(Clone)]
pub struct ChannelService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// Every account's receive loop, sender and routing task runs under it.
    tasks: Tasks,
    /// Where `channels.*` is read from (at start and at each reload).
    config: ConfigService,
    /// The durable outbox; each running account's sender is attached to it.
    outbox: Outbox,
    /// Answers an inbound message with an agent turn.
    agents: AgentService,
    /// Answers an inbound command.
    commands: Commands,
    accounts: RwLock<BTreeMap<AccountKey, Arc<AccountRuntime>>>,
    /// Per account, what outlives its runs: an operator's hold and the last start and stop.
    control: Mutex<BTreeMap<AccountKey, control::Control>>,
    /// Serialises what starts and stops accounts (reloads, `channels.start|stop|logout`),
    /// so a reload never restarts an account an operator is stopping.
    ops: tokio::sync::Mutex<()>,
    /// Accounts configured but not startable (missing token, bad config), with the reason.
    problems: RwLock<BTreeMap<AccountKey, String>>,
    /// Inbound rows being routed now (so recovery and a live delivery never route one twice).
    in_flight: Mutex<std::collections::HashSet<i64>>,
    /// The gateways sharing the store: an account runs only while this one holds its lease.
    cluster: crate::cluster::Cluster,
    /// The accounts this gateway wants to run, each following its lease (cancelled when the
    /// account is stopped or removed; the lease is released with it). An account here without
    /// a runtime is on standby: another gateway drives it.
    followers: Mutex<BTreeMap<AccountKey, CancellationToken>>,
}

impl std::fmt::Debug for ChannelService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelService").field("accounts", &self.inner.accounts.read().len()).finish_non_exhaustive()
    }
}

impl ChannelService {
    /// No account running yet; [`ChannelService::start`] starts the configured ones.
    pub fn new(
        store: Store,
        tasks: Tasks,
        config: ConfigService,
        outbox: Outbox,
        agents: AgentService,
        commands: Commands,
        cluster: crate::cluster::Cluster,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                tasks,
                config,
                outbox,
                agents,
                commands,
                accounts: RwLock::default(),
                problems: RwLock::default(),
                control: Mutex::default(),
                ops: tokio::sync::Mutex::new(()),
                in_flight: Mutex::default(),
                cluster,
                followers: Mutex::default(),
            }),
        }
    }

    /// The outbox handle (for services that deliver to chats).
    pub fn outbox(&self) -> &Outbox {
        &self.inner.outbox
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The chat-command dispatcher (the web chat answers commands through it too).
    pub fn commands(&self) -> &Commands {
        &self.inner.commands
    }

    /// Where adapters (and the webhook route) hand inbound messages.
    pub fn ingress(&self) -> GatewayIngress {
        GatewayIngress::new(self.clone())
    }

    /// The running account with this key.
    pub fn account(&self, key: &AccountKey) -> Option<Arc<AccountRuntime>> {
        self.inner.accounts.read().get(key).cloned()
    }

    /// Every running account.
    pub fn accounts(&self) -> Vec<Arc<AccountRuntime>> {
        self.inner.accounts.read().values().cloned().collect()
    }

    /// Wake an account's outbox sender (something was queued for it).
    pub fn kick_outbox(&self, key: &AccountKey) {
        self.inner.outbox.wake(key);
    }

    /// Stop every account (shutdown).
    pub fn stop_all(&self) {
        for rt in self.accounts() {
            rt.cancel.cancel();
        }
    }

    /// Stop one account and wait (bounded) until its receive loop and sender have ended; it no
    /// longer follows its lease (which is released). Returns whether it was running here.
    async fn stop_account(&self, key: &AccountKey) -> bool {
        if let Some(follower) = self.inner.followers.lock().remove(key) {
            follower.cancel();
        }
        self.stop_runtime(key).await
    }

    /// Whether this gateway wants to run `key` (it follows the account's lease), running it or
    /// not.
    pub(crate) fn is_following(&self, key: &AccountKey) -> bool {
        self.inner.followers.lock().contains_key(key)
    }

    /// Stop the account's adapter and sender (it may start again when its lease comes back).
    async fn stop_runtime(&self, key: &AccountKey) -> bool {
        let stopped = self.inner.accounts.write().remove(key);
        let Some(rt) = stopped else { return false };
        self.inner.outbox.detach(key, &rt.outbox_kick);
        rt.cancel.cancel();
        rt.tasks.close();
        if tokio::time::timeout(STOP_GRACE, rt.tasks.wait()).await.is_err() {
            tracing::warn!(account = %key, "channel account did not stop within {STOP_GRACE:?}; left to end on its own");
        }
        let last_seen = rt.channel.status().snapshot();
        rt.channel.status().mark_disconnected(None);
        self.control_of(key, |c| {
            c.last_start_at = Some(rt.started_at_ms);
            c.last_stop_at = Some(crate::time::now_ms());
            c.last_seen = Some(last_seen);
        });
        true
    }

    /// Claim an inbox row for routing; false if another task routes it.
    fn claim(&self, id: i64) -> bool {
        self.inner.in_flight.lock().insert(id)
    }

    fn release(&self, id: i64) {
        self.inner.in_flight.lock().remove(&id);
    }

    /// Read `channels.*` from the current config.
    fn configured_accounts(&self) -> Result<Vec<AccountConfig>, String> {
        let current = self.inner.config.current();
        clawgate_channels::accounts_from_config(&current.config.channels, current.base_dir()).map_err(|e| e.to_string())
    }
}

/// What a `channels.*` reload did, account by account ([`ChannelService::reload`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelReload {
    /// Running accounts whose config changed: stopped and started again with the new config.
    pub restarted: Vec<AccountKey>,
    /// Accounts new in the config (or newly startable), started.
    pub started: Vec<AccountKey>,
    /// Accounts removed or disabled, or that cannot start any more: no longer running.
    pub stopped: Vec<AccountKey>,
    /// Accounts that cannot start (no token, bad settings), with why.
    pub failed: Vec<(AccountKey, String)>,
    /// Accounts an operator holds stopped (`channels.stop`/`logout`): their new config applies
    /// at their next `channels.start`.
    pub held: Vec<AccountKey>,
    /// The whole `channels` section could not be read; every account runs as it was.
    pub error: Option<String>,
}

impl ChannelReload {
    /// Accounts of `channel` (every channel for `None`) this reload started, stopped or
    /// restarted.
    pub fn touched(&self, channel: Option<&str>) -> bool {
        let of = |k: &AccountKey| channel.is_none_or(|c| k.channel == c);
        self.restarted.iter().chain(&self.started).chain(&self.stopped).any(of)
    }

    /// Why accounts of `channel` (every channel for `None`) could not start, one line each.
    pub fn failures(&self, channel: Option<&str>) -> Vec<String> {
        self.failed
            .iter()
            .filter(|(k, _)| channel.is_none_or(|c| k.channel == c))
            .map(|(k, e)| format!("{k}: {e}"))
            .collect()
    }
}

/// How long a stop waits for an account's tasks (a send in flight finishes first).
const STOP_GRACE: Duration = Duration::from_secs(15);

/// The lease that lets one gateway of several drive an account.
fn lease_name(key: &AccountKey) -> String {
    format!("channel:{}:{}", key.channel, key.account)
}

/// Build the adapter for one account.
fn build_channel(cfg: &AccountConfig) -> Result<Arc<dyn Channel>, String> {
    match cfg.key.channel.as_str() {
        "telegram" => clawgate_channels::telegram::TelegramChannel::new(cfg)
            .map(|c| Arc::new(c) as Arc<dyn Channel>)
            .map_err(|e| e.to_string()),
        "discord" => clawgate_channels::discord::DiscordChannel::new(cfg)
            .map(|c| Arc::new(c) as Arc<dyn Channel>)
            .map_err(|e| e.to_string()),
        "line" => clawgate_channels::line::LineChannel::new(cfg)
            .map(|c| Arc::new(c) as Arc<dyn Channel>)
            .map_err(|e| e.to_string()),
        "whatsapp" => clawgate_channels::whatsapp::WhatsAppChannel::new(cfg)
            .map(|c| Arc::new(c) as Arc<dyn Channel>)
            .map_err(|e| e.to_string()),
        "slack" => clawgate_channels::slack::SlackChannel::new(cfg)
            .map(|c| Arc::new(c) as Arc<dyn Channel>)
            .map_err(|e| e.to_string()),
        "webhook" => clawgate_channels::webhook::WebhookChannel::new(cfg)
            .map(|c| Arc::new(c) as Arc<dyn Channel>)
            .map_err(|e| e.to_string()),
        other => Err(format!("channel \"{other}\" has no adapter in this build")),
    }
}

impl ChannelService {
    /// Start every enabled account and the recovery of unfinished inbound messages. Called once
    /// at startup, after agent recovery (so interrupted runs are already marked).
    pub async fn start(&self) {
        {
            let _ops = self.inner.ops.lock().await;
            self.load_holds().await;
            match self.configured_accounts() {
                Ok(accounts) => {
                    for cfg in accounts {
                        if !self.is_held(&cfg.key) {
                            let _ = self.start_account(cfg);
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "channels config is invalid; no channel started"),
            }
        }
        self.recover().await;
    }

    /// Apply the current `channels.*` config now and say what it did, account by account (the
    /// config service reports it per changed key).
    pub async fn reload(&self) -> ChannelReload {
        self.apply_reload().await
    }

    /// Restart accounts whose config changed, stop removed ones, start new ones — except those
    /// an operator holds stopped (`channels.stop`/`channels.logout`), which stay stopped. An
    /// account whose config is unchanged keeps running untouched.
    async fn apply_reload(&self) -> ChannelReload {
        let _ops = self.inner.ops.lock().await;
        let mut report = ChannelReload::default();
        let accounts = match self.configured_accounts() {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "channels config is invalid; channels keep running as they were");
                report.error = Some(e);
                return report;
            }
        };
        let wanted: BTreeMap<AccountKey, AccountConfig> = accounts.into_iter().map(|a| (a.key.clone(), a)).collect();
        let mut stopped = Vec::new();
        for rt in self.accounts() {
            let same = wanted.get(&rt.cfg.key).is_some_and(|w| same_config(w, &rt.cfg));
            if !same {
                if wanted.contains_key(&rt.cfg.key) {
                    tracing::info!(account = %rt.cfg.key, "channel account config changed; restarting it");
                } else {
                    tracing::info!(account = %rt.cfg.key, "channel account removed from the config; stopping it");
                }
                self.stop_account(&rt.cfg.key).await;
                if wanted.get(&rt.cfg.key).is_some_and(|w| w.token != rt.cfg.token) {
                    self.forget_session(&rt.cfg.key).await;
                }
                stopped.push(rt.cfg.key.clone());
            }
        }
        self.inner.problems.write().clear();
        for (key, cfg) in wanted {
            if self.account(&key).is_some() || key.channel == "webchat" {
                continue;
            }
            if self.is_held(&key) {
                report.held.push(key);
                continue;
            }
            match self.start_account(cfg) {
                Ok(()) => {
                    if let Some(i) = stopped.iter().position(|k| *k == key) {
                        stopped.remove(i);
                        report.restarted.push(key);
                    } else {
                        report.started.push(key);
                    }
                }
                Err(e) => {
                    // Disabled is what the config asks for, not a failure.
                    if self.inner.problems.read().contains_key(&key) {
                        report.failed.push((key, e));
                    }
                }
            }
        }
        report.stopped.extend(stopped);
        report
    }

    /// New credentials are a new session: what the adapter kept for the old ones (Telegram's
    /// update offset, which belongs to the old bot: kept, it would make the new bot's updates
    /// below it be skipped) is forgotten, as `channels.logout` does.
    async fn forget_session(&self, key: &AccountKey) {
        use clawgate_store::KvStore;
        match self.inner.store.delete_prefix(&ingress::state_prefix(key)).await {
            Ok(n) if n > 0 => {
                tracing::info!(account = %key, "token changed; the session kept for the old one is forgotten")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(account = %key, error = %e, "token changed but the old session state could not be cleared")
            }
        }
    }

    /// Start one account's adapter, receive loop and sender. `Err` says why it cannot run
    /// (disabled, no token, bad settings); the reason is also what `channels.status` shows.
    fn start_account(&self, cfg: AccountConfig) -> Result<(), String> {
        let key = cfg.key.clone();
        if cfg.key.channel == "webchat" {
            // The web chat is the gateway's own page over WS; nothing to start.
            return Ok(());
        }
        if !cfg.enabled {
            tracing::info!(account = %key, "channel account disabled in config");
            return Err(format!("disabled in config (channels.{}.enabled is false)", key.channel));
        }
        if cfg.token.is_none() {
            let what = clawgate_channels::config::expected_token_key(&key.channel);
            let msg = format!("no {what} configured; set channels.{}.{what}", key.channel);
            tracing::warn!(account = %key, "{msg}");
            self.inner.problems.write().insert(key, msg.clone());
            return Err(msg);
        }
        let channel = match build_channel(&cfg) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(account = %key, error = %e, "channel account cannot start");
                self.inner.problems.write().insert(key, e.clone());
                return Err(e);
            }
        };
        self.inner.problems.write().remove(&key);
        let lease = self.inner.cluster.hold(&lease_name(&key));
        let follower = self.inner.tasks.token().child_token();
        if let Some(old) = self.inner.followers.lock().insert(key.clone(), follower.clone()) {
            old.cancel();
        }
        if *lease.borrow() {
            self.launch(cfg.clone(), channel);
        } else {
            tracing::info!(account = %key, "channel account on standby: another gateway drives it");
        }
        self.inner.tasks.spawn("channels", self.clone().follow_lease(cfg, lease, follower));
        Ok(())
    }

    /// Run the account while this gateway holds its lease: start it when the lease is gained
    /// (and route what waited in its inbox), stop it at once when it is lost. On a single
    /// gateway the lease is held from the start and this only waits for the account's stop.
    async fn follow_lease(self, cfg: AccountConfig, mut lease: watch::Receiver<bool>, follower: CancellationToken) {
        let key = cfg.key.clone();
        loop {
            tokio::select! {
                () = follower.cancelled() => return,
                changed = lease.changed() => if changed.is_err() { return },
            }
            let held = *lease.borrow_and_update();
            if !held && let Some(rt) = self.account(&key) {
                // At once, before anything else: another gateway may send from now on.
                rt.cancel.cancel();
            }
            let ops = self.inner.ops.lock().await;
            if follower.is_cancelled() {
                return;
            }
            match (held, self.account(&key).is_some()) {
                (true, false) => match build_channel(&cfg) {
                    Ok(channel) => {
                        tracing::info!(account = %key, "channel account lease gained; starting it");
                        self.launch(cfg.clone(), channel);
                        drop(ops);
                        self.resume_inbound(&key).await;
                    }
                    Err(e) => {
                        tracing::error!(account = %key, error = %e, "channel account cannot start");
                        self.inner.problems.write().insert(key.clone(), e);
                    }
                },
                (false, true) => {
                    tracing::warn!(account = %key, "channel account lease lost; stopped it");
                    self.stop_runtime(&key).await;
                }
                _ => {}
            }
        }
    }

    /// Start the account's receive loop and outbox sender now.
    fn launch(&self, cfg: AccountConfig, channel: Arc<dyn Channel>) {
        let key = cfg.key.clone();
        let rt = Arc::new(AccountRuntime {
            cfg,
            channel,
            cancel: self.inner.tasks.token().child_token(),
            tasks: TaskTracker::new(),
            outbox_kick: Arc::new(Notify::new()),
            limiter: Mutex::new(RateWindows::default()),
            fatal: Mutex::new(None),
            started_at_ms: crate::time::now_ms(),
            running: std::sync::atomic::AtomicBool::new(true),
        });
        self.inner.accounts.write().insert(key.clone(), rt.clone());
        self.inner.outbox.attach(key.clone(), rt.outbox_kick.clone(), rt.channel.capabilities());
        tracing::info!(account = %key, "channel account starting");
        self.inner.tasks.spawn("channels", rt.tasks.track_future(self.clone().supervise(rt.clone())));
        self.inner.tasks.spawn(
            "channels",
            rt.tasks.track_future(outbox::sender(
                self.inner.store.clone(),
                self.inner.outbox.metrics().clone(),
                rt.clone(),
            )),
        );
        self.control_of(&key, |c| c.last_start_at = Some(rt.started_at_ms));
    }

    /// Run the adapter's receive loop; restart it with backoff when it ends unexpectedly, stop
    /// for good on a credentials error.
    async fn supervise(self, rt: Arc<AccountRuntime>) {
        let ingress: Arc<dyn clawgate_channels::Ingress> = Arc::new(self.ingress());
        let mut attempt = 0u32;
        loop {
            let started = Instant::now();
            let result = rt.channel.run(ingress.clone(), rt.cancel.clone()).await;
            if rt.cancel.is_cancelled() {
                break;
            }
            match result {
                Err(ChannelError::Unauthorized(msg)) | Err(ChannelError::Config(msg)) => {
                    tracing::error!(account = %rt.cfg.key, error = %msg, "channel account stopped");
                    rt.channel.status().mark_disconnected(Some(msg.clone()));
                    *rt.fatal.lock() = Some(msg);
                    break;
                }
                Err(ChannelError::Fatal(msg)) => {
                    tracing::warn!(account = %rt.cfg.key, error = %msg, "channel receive loop failed; restarting");
                    rt.channel.status().mark_disconnected(Some(msg));
                }
                Ok(()) => {
                    tracing::warn!(account = %rt.cfg.key, "channel receive loop ended; restarting");
                    rt.channel.status().mark_disconnected(None);
                }
            }
            if started.elapsed() > Duration::from_secs(60) {
                attempt = 0;
            }
            let wait = Backoff::new(Duration::from_secs(1), Duration::from_secs(60)).delay(attempt);
            attempt = attempt.saturating_add(1);
            tokio::select! {
                () = rt.cancel.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        rt.running.store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// Pick up inbound messages a previous run of the gateway left unfinished.
    pub async fn recover(&self) {
        let pending = match self.inner.store.pending_inbound(10_000).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the channel inbox; unfinished messages wait for the next start");
                return;
            }
        };
        if !pending.is_empty() {
            tracing::info!(
                count = pending.len(),
                "resuming inbound chat messages left unfinished by the last shutdown"
            );
        }
        for rec in pending {
            self.spawn_route(rec);
        }
    }
}

fn same_config(a: &AccountConfig, b: &AccountConfig) -> bool {
    a.enabled == b.enabled
        && a.token == b.token
        && a.settings == b.settings
        && a.allow_from == b.allow_from
        && a.group_allow_from == b.group_allow_from
        && a.groups == b.groups
        && a.dm_policy == b.dm_policy
        && a.group_policy == b.group_policy
        && a.require_mention == b.require_mention
        && a.rate_limits == b.rate_limits
}

impl ChannelService {
    /// `channels.status` payload: the configured accounts, how each runs, its outbox counts.
    pub async fn status(&self) -> Value {
        let store = &self.inner.store;
        let configured = self.configured_accounts().unwrap_or_default();
        let running: BTreeMap<AccountKey, Arc<AccountRuntime>> =
            self.accounts().into_iter().map(|rt| (rt.cfg.key.clone(), rt)).collect();
        let problems = self.inner.problems.read().clone();
        let control = self.inner.control.lock().clone();
        let public_url = self.inner.config.current().config.gateway.public_url.clone();
        let mut order: Vec<String> = Vec::new();
        let mut accounts: serde_json::Map<String, Value> = serde_json::Map::new();
        let mut channels: serde_json::Map<String, Value> = serde_json::Map::new();
        let mut defaults: serde_json::Map<String, Value> = serde_json::Map::new();
        let mut issues: Vec<Value> = Vec::new();
        for cfg in &configured {
            let ch = cfg.key.channel.clone();
            if !order.contains(&ch) {
                order.push(ch.clone());
            }
            let rt = running.get(&cfg.key);
            let counts = store.outbox_counts(&cfg.key.channel, &cfg.key.account).await.ok();
            let mut entry = json!({
                "accountId": cfg.key.account,
                "enabled": cfg.enabled,
                "configured": cfg.token.is_some() || ch == "webchat",
                "running": rt.is_some_and(|r| r.running.load(std::sync::atomic::Ordering::Relaxed)),
                "connected": false,
                "dmPolicy": dm_policy_str(cfg.dm_policy),
                "allowFrom": cfg.allow_from,
                "mode": mode_of(cfg),
            });
            if ch == "telegram" {
                entry["botTokenSource"] = json!(if cfg.token.is_some() { "config" } else { "none" });
            } else {
                entry["tokenSource"] = json!(if cfg.token.is_some() { "config" } else { "none" });
            }
            let held = control.get(&cfg.key).and_then(|c| c.hold);
            if let Some(c) = control.get(&cfg.key) {
                entry["lastStartAt"] = json!(c.last_start_at);
                entry["lastStopAt"] = json!(c.last_stop_at);
                // A stopped account shows what its last run saw (a running one overwrites it).
                if let Some(s) = &c.last_seen {
                    entry["lastInboundAt"] = json!(s.last_inbound_at);
                    entry["lastOutboundAt"] = json!(s.last_outbound_at);
                    entry["lastTransportActivityAt"] = json!(s.last_received_at);
                }
            }
            // Where the platform must POST: the path here, and the full URL when it is known
            // (what to paste into the platform's console). Shown for a stopped account too.
            let webhook_path = match rt {
                Some(rt) => rt.channel.webhook_path(),
                None if takes_webhooks(cfg) => build_channel(cfg).ok().and_then(|c| c.webhook_path()),
                None => None,
            };
            if let Some(path) = webhook_path {
                if let Some(url) = webhook_url(cfg, public_url.as_deref(), &path) {
                    entry["webhookUrl"] = json!(url);
                }
                entry["webhookPath"] = json!(path);
            }
            if let Some(rt) = rt {
                let s = rt.channel.status().snapshot();
                entry["connected"] = json!(s.connected);
                entry["ready"] = json!(s.ready);
                entry["reconnectAttempts"] = json!(s.reconnects);
                entry["lastInboundAt"] = json!(s.last_inbound_at);
                entry["lastOutboundAt"] = json!(s.last_outbound_at);
                entry["lastTransportActivityAt"] = json!(s.last_received_at);
                entry["lastStartAt"] = json!(rt.started_at_ms);
                entry["inboundCount"] = json!(s.inbound_count);
                entry["outboundCount"] = json!(s.outbound_count);
                if let Some(id) = s.bot_id {
                    entry["botId"] = json!(id);
                }
                if let Some(u) = s.bot_username {
                    entry["botUsername"] = json!(u);
                }
                let fatal = rt.fatal.lock().clone();
                let last_error = fatal.clone().or(s.last_error);
                entry["lastError"] = json!(last_error);
                entry["lastErrorAt"] = json!(s.last_error_at);
                entry["healthState"] = json!(if fatal.is_some() {
                    "stopped"
                } else if s.connected {
                    "healthy"
                } else {
                    "connecting"
                });
                if let Some(f) = fatal {
                    issues.push(json!({"channel": ch, "accountId": cfg.key.account, "kind": "auth", "message": f}));
                }
            } else if let Some(hold) = held {
                entry["healthState"] = json!(hold.as_str());
                entry["loggedOut"] = json!(hold == Hold::LoggedOut);
            } else if self.is_following(&cfg.key) {
                // Several gateways share the store and another one holds the account's lease.
                entry["healthState"] = json!("standby");
            } else if let Some(p) = problems.get(&cfg.key) {
                entry["lastError"] = json!(p);
                entry["healthState"] = json!("stopped");
                issues.push(json!({"channel": ch, "accountId": cfg.key.account, "kind": "config", "message": p}));
            } else if ch == "webchat" {
                entry["connected"] = json!(true);
                entry["healthState"] = json!("healthy");
            }
            if let Some(c) = counts {
                entry["outbox"] = json!({"queued": c.queued, "failed": c.failed, "sent": c.sent});
                if ch == "webhook" {
                    dead_letters(store, cfg, c.failed, &mut entry).await;
                }
            }
            if let Some(list) = accounts.entry(ch.clone()).or_insert_with(|| json!([])).as_array_mut() {
                list.push(entry);
            }
            defaults.entry(ch.clone()).or_insert_with(|| json!("default"));
        }
        for ch in &order {
            let list = accounts.get(ch).and_then(Value::as_array).cloned().unwrap_or_default();
            let any_connected = list.iter().any(|a| a["connected"] == true);
            channels.insert(ch.clone(), json!({"configured": true, "connected": any_connected}));
        }
        let labels: serde_json::Map<String, Value> = order.iter().map(|c| (c.clone(), json!(label_of(c)))).collect();
        let mut out = json!({
            "ts": crate::time::now_ms(),
            "channelOrder": order,
            "channelLabels": labels,
            "channels": channels,
            "channelAccounts": accounts,
            "channelDefaultAccountId": defaults,
        });
        if !issues.is_empty() {
            out["statusIssues"] = json!(issues);
        }
        out
    }
}

/// The webhook channel's dead letters (replies given up on after `maxAttempts`, or refused by
/// the backend): how many, and the newest one's error, chat and time.
async fn dead_letters(store: &Store, cfg: &AccountConfig, failed: u64, entry: &mut Value) {
    entry["deadLettered"] = json!(failed);
    if failed == 0 {
        return;
    }
    // Rows come oldest first; the newest failure is the last one updated.
    let limit = u32::try_from(failed.min(1000)).unwrap_or(1000);
    let rows = store
        .list_outbound(&cfg.key.channel, &cfg.key.account, Some(clawgate_store::OutboxStatus::Failed), limit)
        .await
        .unwrap_or_default();
    if let Some(last) = rows.iter().max_by_key(|r| (r.updated_at_ms, r.id)) {
        entry["lastDeadLetter"] = json!({
            "error": last.last_error,
            "chatId": last.chat_id,
            "attempts": last.attempts,
            "at": last.updated_at_ms,
        });
    }
}

fn dm_policy_str(p: clawgate_channels::DmPolicy) -> &'static str {
    use clawgate_channels::DmPolicy::*;
    match p {
        Pairing => "pairing",
        Allowlist => "allowlist",
        Open => "open",
        Disabled => "disabled",
    }
}

/// Whether the account takes its updates as webhooks on the gateway's port.
fn takes_webhooks(cfg: &AccountConfig) -> bool {
    matches!(mode_of(cfg), "webhook" | "http")
}

/// The public URL the platform must call for `path`: Telegram's is its configured `webhookUrl`
/// (clawgate registers it with `setWebhook`; a password in it is a secret and shown redacted);
/// the others' is `gateway.publicUrl` + the path.
fn webhook_url(cfg: &AccountConfig, public_url: Option<&str>, path: &str) -> Option<String> {
    if cfg.key.channel == "telegram" {
        return cfg.settings.webhook_url.as_deref().map(|u| clawgate_config::redact_url_userinfo(u).into_owned());
    }
    public_url.map(|root| format!("{}{path}", root.trim_end_matches('/')))
}

fn mode_of(cfg: &AccountConfig) -> &'static str {
    match cfg.key.channel.as_str() {
        "telegram" if cfg.settings.webhook_url.is_some() => "webhook",
        "telegram" => "polling",
        "discord" => "gateway",
        "line" => "webhook",
        "whatsapp" => "webhook",
        "slack" if cfg.settings.mode.as_deref() == Some("http") => "http",
        "slack" => "socket",
        "webhook" => "webhook",
        _ => "builtin",
    }
}

/// The name users see for a platform.
pub(crate) fn label_of(channel: &str) -> &'static str {
    match channel {
        "telegram" => "Telegram",
        "discord" => "Discord",
        "webchat" => "Web chat",
        "line" => "LINE",
        "whatsapp" => "WhatsApp",
        "slack" => "Slack",
        "webhook" => "Webhook",
        _ => "Channel",
    }
}
