//! Several gateways on one database (issue 16): who is there, and who drives what.
//!
//! Each gateway is a member under its boot id. It writes a heartbeat row every
//! `cluster.heartbeatMs`; a member whose row is older than `cluster.leaseTtlMs` is dead, and the
//! others take its work over: runs it left running are ended as interrupted by a periodic sweep
//! ([`clawgate_store::RunStore::mark_interrupted_running`]), and the leases it held expire.
//!
//! A **lease** is a named right with an expiry, held by one member at a time
//! ([`ClusterStore::try_acquire_lease`]: one atomic statement). A service asks for one with
//! [`Cluster::hold`] and follows the `watch` it gets: `true` while this gateway holds it. The
//! keeper renews it every third of the ttl; it turns `false` at once when the store says another
//! member holds it, and when renewals fail for two thirds of the ttl — before the lease can
//! expire and a peer take it, so two members never act on one lease at once (as long as their
//! clocks agree: lease times are each member's own clock).
//!
//! State that is cheap to keep per gateway but must hold for all of them (failed-auth lockouts)
//! is exchanged on every heartbeat by the [`Exchange`]s registered with
//! [`Cluster::exchange_on_beat`], so a gateway runs one periodic loop for the cluster, not one
//! per thing it shares.
//!
//! On SQLite there is one member only (the state lock keeps a second process off the file):
//! the same service runs, registers and heartbeats, but every lease is granted at once and
//! without a store round trip, so a storage hiccup never stops a channel there. Nothing about
//! a single gateway's behaviour changes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;

use clawgate_config::ClusterConfig;
use clawgate_protocol::methods::health::{StatusCluster, StatusClusterGateway, StatusClusterLease};
use clawgate_store::{ClusterStore, GatewayRecord, RateBucketStore, RunStore};

use crate::gateway::Store;
use crate::tasks::Tasks;
use crate::time::now_ms;

/// Gateways not seen for this long are deleted from the registry (until then `status` lists
/// them as not alive, which tells an operator one died).
const FORGET_AFTER_MS: i64 = 60 * 60 * 1000;

/// The cluster timings in force (from `cluster.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterSettings {
    /// How often the heartbeat row is written and dead peers are looked for.
    pub heartbeat: Duration,
    /// How long a lease lasts unrenewed, and a silent member still counts as alive.
    pub lease_ttl: Duration,
}

impl ClusterSettings {
    /// The timings a config asks for.
    pub fn from_config(cfg: &ClusterConfig) -> Self {
        Self { heartbeat: Duration::from_millis(cfg.heartbeat_ms), lease_ttl: Duration::from_millis(cfg.lease_ttl_ms) }
    }

    /// Every third of the ttl: a holder renews, a waiting member tries again.
    fn renew_every(&self) -> Duration {
        (self.lease_ttl / 3).max(Duration::from_millis(50))
    }

    /// How long renewals may fail before the holder stops acting: a renewal interval short of
    /// the ttl, so it has stopped before anyone else may take the lease.
    fn give_up_after(&self) -> Duration {
        self.lease_ttl.saturating_sub(self.renew_every())
    }

    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.lease_ttl.as_millis()).unwrap_or(i64::MAX)
    }
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self::from_config(&ClusterConfig::default())
    }
}

/// Something a gateway exchanges with its peers through the store on every heartbeat, after its
/// heartbeat row is written (e.g. the failed-auth lockouts it started and those they started).
#[async_trait::async_trait]
pub trait Exchange: Send + Sync + 'static {
    /// What is exchanged, for the log.
    fn name(&self) -> &'static str;

    /// One exchange. A failure is logged (once until the next success) and retried on the next
    /// beat.
    async fn exchange(&self) -> Result<(), clawgate_store::StoreError>;
}

/// Who this gateway is, as the registry shows it.
#[derive(Debug, Clone)]
pub struct Member {
    /// The boot id.
    pub id: String,
    /// clawgate's version.
    pub version: String,
    /// Start time (ms).
    pub started_at_ms: i64,
    /// Where it listens.
    pub listen_addr: String,
}

/// The gateways sharing the store and the leases they hold: a cheap-clone handle.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    tasks: Tasks,
    me: Member,
    settings: ClusterSettings,
    /// SQLite: this gateway is the only member; leases are granted without the store.
    solo: bool,
    /// The leases this gateway asked for, each followed by a keeper task (none when solo).
    held: Mutex<BTreeMap<String, watch::Sender<bool>>>,
    /// Whether the last heartbeat was written (runs are swept only right after one, so our own
    /// row is fresh and our own runs are never taken for a dead member's).
    beating: std::sync::atomic::AtomicBool,
    /// Run on every heartbeat (none when solo), each with whether its last run failed.
    exchanges: Mutex<Vec<(Arc<dyn Exchange>, bool)>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("id", &self.inner.me.id)
            .field("solo", &self.inner.solo)
            .field("leases", &self.inner.held.lock().len())
            .finish()
    }
}

impl Cluster {
    /// This gateway as a member of the store's cluster: alone on SQLite, one of possibly several
    /// on PostgreSQL. Nothing runs until [`Cluster::start`].
    pub fn new(store: Store, tasks: Tasks, me: Member, settings: ClusterSettings) -> Self {
        let solo = matches!(store, clawgate_store::AnyStore::Sqlite(_));
        Self {
            inner: Arc::new(Inner {
                store,
                tasks,
                me,
                settings,
                solo,
                held: Mutex::default(),
                beating: std::sync::atomic::AtomicBool::new(false),
                exchanges: Mutex::default(),
            }),
        }
    }

    /// This gateway's id (its boot id): what it records as the owner of the runs it claims.
    pub fn id(&self) -> &str {
        &self.inner.me.id
    }

    /// The timings in force.
    pub fn settings(&self) -> ClusterSettings {
        self.inner.settings
    }

    /// Whether this gateway is alone on its store (SQLite).
    pub fn is_solo(&self) -> bool {
        self.inner.solo
    }

    /// Runs `exchange` on every heartbeat from now on. Nothing to exchange when solo: ignored.
    pub fn exchange_on_beat(&self, exchange: Arc<dyn Exchange>) {
        if !self.inner.solo {
            self.inner.exchanges.lock().push((exchange, false));
        }
    }

    /// The oldest heartbeat of a member still alive at `now_ms`.
    pub fn alive_since(&self, now_ms: i64) -> i64 {
        now_ms.saturating_sub(self.inner.settings.ttl_ms())
    }

    /// Registers this gateway (before anything recovers runs, so its own are never taken for a
    /// dead member's) and starts the heartbeat. On SQLite the rows a previous process left are
    /// dropped first: it was the only member, and it is gone.
    pub async fn start(&self) {
        let store = &self.inner.store;
        if self.inner.solo
            && let Err(e) = store.forget_gateways(i64::MAX).await
        {
            tracing::warn!(error = %e, "cannot clear the previous process's registration");
        }
        self.beat().await;
        let cluster = self.clone();
        self.inner.tasks.spawn("cluster", async move { cluster.run().await });
    }

    /// Writes the heartbeat row; remembers whether that worked.
    async fn beat(&self) -> bool {
        let me = &self.inner.me;
        let row = GatewayRecord {
            id: me.id.clone(),
            started_at_ms: me.started_at_ms,
            seen_at_ms: now_ms(),
            listen_addr: me.listen_addr.clone(),
            version: me.version.clone(),
        };
        let ok = match self.inner.store.upsert_gateway(&row).await {
            Ok(()) => true,
            Err(e) => {
                if self.inner.beating.load(std::sync::atomic::Ordering::Relaxed) {
                    tracing::warn!(error = %e, "cannot write the cluster heartbeat; retrying");
                }
                false
            }
        };
        self.inner.beating.store(ok, std::sync::atomic::Ordering::Relaxed);
        ok
    }

    /// The heartbeat loop: beat, sweep dead members' runs, forget long-gone members; at
    /// shutdown, leave the registry (releasing every lease, so peers take over at once).
    async fn run(self) {
        let stop = self.inner.tasks.token();
        let every = self.inner.settings.heartbeat;
        let mut beats: u64 = 0;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(every) => {}
            }
            if !self.beat().await {
                continue;
            }
            beats = beats.wrapping_add(1);
            if !self.inner.solo {
                self.sweep().await;
                self.exchange().await;
            }
            if beats.is_multiple_of(100) {
                if let Err(e) = self.inner.store.forget_gateways(now_ms() - FORGET_AFTER_MS).await {
                    tracing::debug!(error = %e, "cannot forget long-gone gateways");
                }
                if !self.inner.solo
                    && let Err(e) = self.inner.store.prune_rate_buckets(now_us()).await
                {
                    tracing::debug!(error = %e, "cannot prune full rate buckets");
                }
            }
        }
        match self.inner.store.remove_gateway(&self.inner.me.id).await {
            Ok(_) => tracing::debug!("left the cluster registry"),
            Err(e) => tracing::warn!(error = %e, "cannot leave the cluster registry; peers take over after the ttl"),
        }
    }

    /// Runs every registered [`Exchange`] once, in order.
    async fn exchange(&self) {
        let exchanges: Vec<Arc<dyn Exchange>> = self.inner.exchanges.lock().iter().map(|(x, _)| x.clone()).collect();
        for (i, x) in exchanges.iter().enumerate() {
            let result = x.exchange().await;
            let mut all = self.inner.exchanges.lock();
            let Some((_, failing)) = all.get_mut(i) else { continue };
            match result {
                Ok(()) => *failing = false,
                Err(e) => {
                    if !*failing {
                        tracing::warn!(exchange = x.name(), error = %e, "cannot exchange state with the other gateways; retrying");
                    }
                    *failing = true;
                }
            }
        }
    }

    /// Ends the runs dead members left running (each member's sweep races the others';
    /// the statement is idempotent).
    pub async fn sweep(&self) {
        let now = now_ms();
        match self.inner.store.mark_interrupted_running(now, self.alive_since(now)).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(interrupted = n, "runs of a gateway that died were marked interrupted"),
            Err(e) => tracing::debug!(error = %e, "cannot sweep the runs of dead gateways"),
        }
    }

    /// Asks for the lease `name` and returns a receiver that is `true` while this gateway holds
    /// it. The lease is kept (renewed, or tried for while another member holds it) as long as a
    /// receiver lives; when the last is dropped it is released. On SQLite it is granted at once.
    pub fn hold(&self, name: &str) -> watch::Receiver<bool> {
        let mut held = self.inner.held.lock();
        if let Some(tx) = held.get(name) {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(self.inner.solo);
        held.insert(name.to_owned(), tx.clone());
        drop(held);
        if !self.inner.solo {
            let cluster = self.clone();
            let name = name.to_owned();
            self.inner.tasks.spawn("cluster", async move { cluster.keep(name, tx).await });
        }
        rx
    }

    /// Whether this gateway holds `name` now (as far as its keeper knows).
    pub fn holds(&self, name: &str) -> bool {
        self.inner.held.lock().get(name).is_some_and(|tx| *tx.borrow())
    }

    /// The keeper of one lease: take it when free, renew it while held, report each change.
    async fn keep(self, name: String, tx: watch::Sender<bool>) {
        let stop = self.inner.tasks.token();
        let settings = self.inner.settings;
        let me = self.inner.me.id.clone();
        let mut last_grant: Option<Instant> = None;
        let mut failing = false;
        loop {
            let asked = Instant::now();
            match self.inner.store.try_acquire_lease(&name, &me, settings.ttl_ms(), now_ms()).await {
                Ok(granted) => {
                    failing = false;
                    last_grant = granted.then_some(asked);
                    set(&tx, &name, granted);
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(lease = %name, error = %e, "cannot renew a lease; retrying");
                        failing = true;
                    }
                    // Measured from when the last granted call was sent: the lease may have
                    // been written as soon as that, so it expires a ttl after it at the latest.
                    if last_grant.is_none_or(|t| t.elapsed() >= settings.give_up_after()) {
                        last_grant = None;
                        set(&tx, &name, false);
                    }
                }
            }
            let wait = match last_grant {
                // Renew in time, but never later than the moment to give up.
                Some(t) => settings.renew_every().min(settings.give_up_after().saturating_sub(t.elapsed())),
                None => settings.renew_every(),
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tx.closed() => {}
                () = tokio::time::sleep(wait) => continue,
            }
            // Every receiver is gone: release, unless someone asked again meanwhile.
            let released = {
                let mut held = self.inner.held.lock();
                let unused = tx.receiver_count() == 0;
                if unused {
                    held.remove(&name);
                }
                unused
            };
            if !released {
                continue;
            }
            set(&tx, &name, false);
            if let Err(e) = self.inner.store.release_lease(&name, &me).await {
                tracing::debug!(lease = %name, error = %e, "cannot release a lease; it expires by itself");
            }
            return;
        }
    }

    /// The cluster as `status` shows it: the members (alive or not) and the leases.
    pub async fn status(&self) -> StatusCluster {
        let now = now_ms();
        let alive_since = self.alive_since(now);
        let store = &self.inner.store;
        let me = &self.inner.me;
        let mut error = None;
        let gateways = match store.list_gateways().await {
            Ok(rows) => rows
                .into_iter()
                .map(|g| StatusClusterGateway {
                    alive: g.seen_at_ms >= alive_since,
                    seen_ago_ms: (now - g.seen_at_ms).max(0),
                    is_self: g.id == me.id,
                    id: g.id,
                    addr: g.listen_addr,
                    version: g.version,
                    started_at_ms: g.started_at_ms,
                })
                .collect(),
            Err(e) => {
                error = Some(e.to_string());
                Vec::new()
            }
        };
        let leases = if self.inner.solo {
            let held = self.inner.held.lock();
            held.iter()
                .filter(|(_, tx)| *tx.borrow())
                .map(|(name, _)| StatusClusterLease { name: name.clone(), holder: me.id.clone(), expires_in_ms: None })
                .collect()
        } else {
            match store.list_leases().await {
                Ok(rows) => rows
                    .into_iter()
                    .filter(|l| l.expires_at_ms > now)
                    .map(|l| StatusClusterLease {
                        name: l.name,
                        holder: l.holder,
                        expires_in_ms: Some(l.expires_at_ms - now),
                    })
                    .collect(),
                Err(e) => {
                    error.get_or_insert(e.to_string());
                    Vec::new()
                }
            }
        };
        StatusCluster {
            id: me.id.clone(),
            mode: if self.inner.solo { "single" } else { "shared" }.to_owned(),
            heartbeat_ms: self.inner.settings.heartbeat.as_millis() as u64,
            lease_ttl_ms: self.inner.settings.lease_ttl.as_millis() as u64,
            gateways,
            leases,
            error,
        }
    }
}

/// Microseconds since the Unix epoch (the clock of the shared rate buckets).
fn now_us() -> i64 {
    now_ms().saturating_mul(1000)
}

/// Sends a change of a lease's state (and logs it).
fn set(tx: &watch::Sender<bool>, name: &str, held: bool) {
    let changed = tx.send_if_modified(|now| {
        let changed = *now != held;
        *now = held;
        changed
    });
    if changed {
        if held {
            tracing::info!(lease = %name, "lease taken: this gateway drives it now");
        } else {
            tracing::warn!(lease = %name, "lease lost: another gateway drives it now");
        }
    }
}

/// The cluster's leases as the ComfyUI dispatcher asks for them: worker `name` is driven under
/// lease `comfy-worker:<name>`, let go when the dispatcher drops its last receiver of it.
pub struct WorkerLeasesOf(pub Cluster);

impl clawgate_comfy::dispatch::WorkerLeases for WorkerLeasesOf {
    fn hold(&self, name: &str) -> watch::Receiver<bool> {
        self.0.hold(&format!("comfy-worker:{name}"))
    }
}
