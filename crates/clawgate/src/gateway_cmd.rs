//! `clawgate gateway`: run the gateway in the foreground.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

use clawgate_config::{Env, LoadedConfig};
use clawgate_core::Gateway;
use clawgate_core::config_service::{ConfigService, Overrides};
use clawgate_core::settings::{AuthMode, GatewaySettings};
use clawgate_store::KvStore;

use crate::state_lock::StateLock;
use crate::{logging, paths};

/// Run the gateway in the foreground.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawgate gateway                       # 127.0.0.1:18789, state in ~/.clawgate, token generated on first start
  clawgate gateway --port 28789 --state-dir /tmp/cg
  clawgate gateway --bind lan            # all interfaces; requires auth, and gateway.tls, gateway.trustedProxies
                                         # or gateway.allowInsecureBind
  CLAWGATE_GATEWAY_TOKEN=s3cret clawgate gateway")]
pub struct GatewayArgs {
    /// Port to listen on (0 picks a free port) [default: gateway.port or 18789]
    #[arg(long)]
    pub port: Option<u16>,
    /// Where to listen: loopback, lan (all interfaces) or an IP address [default: gateway.bind or loopback]
    #[arg(long)]
    pub bind: Option<String>,
    /// Config file (JSON5) [default: $CLAWGATE_CONFIG or <state-dir>/clawgate.json5]
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// State directory (database, token, logs) [default: $CLAWGATE_STATE_DIR or ~/.clawgate]
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Gateway token, overriding the config and the stored one
    #[arg(long, env = "CLAWGATE_GATEWAY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

const TOKEN_KEY: &str = "gateway.token";
/// How long the stop waits for every service's tasks (connections closing, runs recording their
/// end) before the store is closed anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

pub async fn run(args: GatewayArgs) -> anyhow::Result<i32> {
    let t0 = Instant::now();
    let state_dir = paths::state_dir(args.state_dir.as_deref());
    paths::create_private_dir(&state_dir)
        .with_context(|| format!("cannot create state dir {}", state_dir.display()))?;
    // Held until this function returns, after the store is closed; released by the OS however
    // the process ends.
    let mut state_lock = StateLock::acquire(&state_dir)?;
    let config_path = paths::config_path(args.config.as_deref(), &state_dir);
    let loaded = match clawgate_config::load_with_env(&config_path, &Env::process()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("clawgate: fix the config above (check it with `clawgate config validate`), then start again");
            return Ok(2);
        }
    };
    let log_file = loaded
        .config
        .logging
        .file
        .clone()
        .map(|f| resolve_relative(&config_path, f))
        .unwrap_or_else(|| paths::log_file(&state_dir));
    let _guard = logging::init_gateway(&loaded.config.logging.level, Some(&log_file), &loaded.config.logging.rotate)?;

    if !loaded.exists {
        tracing::info!(path = %config_path.display(), "no config file; running with defaults (create this file to configure clawgate)");
    }
    let overrides = Overrides { token: args.token.clone(), port: args.port, bind: args.bind.clone() };
    let port = args.port.unwrap_or(loaded.config.gateway.port);
    let ip = bind_ip(args.bind.as_deref(), &loaded)?;

    let location = crate::store_cmd::Location::resolve(&loaded.config.storage, &config_path, &state_dir);
    let store = crate::store_cmd::open(&location).await?;

    let base = GatewaySettings {
        log_file: Some(log_file.clone()),
        listen_addr: SocketAddr::new(ip, port).to_string(),
        ..GatewaySettings::for_tests("", state_dir.clone())
    };
    // The same checks as `clawgate config validate`, with the same file:line messages.
    let checked = match crate::config_cmd::check(&loaded, &GatewaySettings { token: None, ..base.clone() }, &overrides)
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("clawgate: fix the config above (check it with `clawgate config validate`), then start again");
            return Ok(2);
        }
    };
    let crate::config_cmd::Checked { mut settings, agents } = checked;
    let mut generated_token = false;
    if settings.auth_mode == AuthMode::Token && settings.token.is_none() {
        let token = store.get_or_init(TOKEN_KEY, generate_token).await.context("cannot store the gateway token")?;
        settings.token = Some(token);
        generated_token = true;
    }
    if !ip.is_loopback() && settings.auth_mode == AuthMode::None {
        bail!(
            "refusing to listen on {ip} without auth: set gateway.auth.mode to \"token\" or \"password\", or bind to loopback"
        );
    }
    let g = &loaded.config.gateway;
    if !ip.is_loopback() && g.tls_files().is_none() && g.trusted_proxies.is_empty() && !g.allow_insecure_bind {
        bail!(
            "refusing to listen on {ip} in plain text: set gateway.tls {{certPath, keyPath}}, list the reverse proxy \
             in front of it in gateway.trustedProxies, or set gateway.allowInsecureBind to true (only on a network \
             you trust)"
        );
    }
    // Loaded before the port is taken: a bad certificate or key stops the start with its reason.
    let tls = match g.tls_files() {
        Some((cert, key)) => {
            let (cert, key) =
                (resolve_relative(&config_path, cert.clone()), resolve_relative(&config_path, key.clone()));
            match clawgate_server::Tls::load(cert, key) {
                Ok(tls) => Some(tls),
                Err(e) => bail!("{e} (from gateway.tls in {})", config_path.display()),
            }
        }
        None => None,
    };
    // A Control UI directory that cannot be served stops the start, naming the key and the fix.
    if let Err(e) = clawgate_server::control_ui::check_root(&loaded) {
        bail!("{e} (in {})", config_path.display());
    }
    let token_path = paths::token_file(&state_dir);
    if let (true, Some(token)) = (generated_token, &settings.token) {
        paths::write_private_file(&token_path, token)
            .with_context(|| format!("cannot write {}", token_path.display()))?;
    }

    let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, port)).await.with_context(|| {
        format!("cannot listen on {ip}:{port} (is another gateway running? pick another port with --port)")
    })?;
    let local = listener.local_addr()?;
    if let Err(e) = state_lock.set_port(local.port()) {
        tracing::warn!(error = %e, "cannot write the port into the state lock file");
    }
    settings.listen_addr = local.to_string();
    let auth_mode = settings.auth_mode;
    // The unauthenticated metrics listener: loopback only (the config refuses other addresses).
    let metrics_listener = match loaded.config.gateway.metrics.listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} for gateway.metrics.listen"))?,
        ),
        None => None,
    };

    let node_presence_timeout = Duration::from_millis(loaded.config.gateway.nodes.presence_timeout_ms);
    let mdns_mode = loaded.config.discovery.mdns.effective_mode();
    let config = ConfigService::new(config_path.clone(), loaded);
    let gw = Gateway::new(env!("CARGO_PKG_VERSION"), settings, store.clone(), config, agents, overrides.clone());
    // Registered before run recovery: recovery spares the runs of live gateways, this one's too.
    gw.cluster.start().await;
    // Several gateways may share a PostgreSQL store: relay events about shared state to the
    // others' clients (before anything runs that emits one). SQLite means one gateway: no relay.
    // `CLAWGATE_EVENT_RELAY=off` spares a gateway known to be alone on its database the writes.
    let relay_off = std::env::var("CLAWGATE_EVENT_RELAY").is_ok_and(|v| v.eq_ignore_ascii_case("off"));
    match store.postgres() {
        Some(pg) if !relay_off => {
            clawgate_core::event_relay::EventRelay::start(pg.clone(), gw.boot_id.clone(), &gw.events, gw.tasks());
        }
        Some(_) => tracing::info!("event relay off (CLAWGATE_EVENT_RELAY=off): other gateways' clients hear nothing"),
        None => {}
    }
    if let Err(e) = gw.agents.recover().await {
        tracing::error!(error = %e, "cannot resume queued runs");
    }
    gw.nodes.set_presence_timeout(node_presence_timeout);
    if let Err(e) = gw.nodes.restore().await {
        tracing::error!(error = %e.log_chain(), "cannot read the kept node pairings");
    }
    gw.tasks().spawn("maintenance", gw.clone().run_maintenance());
    gw.channels.start().await;
    gw.comfy.start(&gw.boot_id, &gw.settings().state_dir).await;
    gw.cron.start().await;
    gw.heartbeat.start().await;
    spawn_config_watcher(gw.clone(), config_path.clone());
    let facts = clawgate_core::discovery::GatewayFacts {
        port: local.port(),
        tls: tls.is_some(),
        direct_reachable: !local.ip().is_loopback(),
    };
    let discovery_env = clawgate_core::discovery::DiscoveryEnv::from_process();
    if let Some(ad) = clawgate_core::discovery::advertisement(mdns_mode, &facts, &discovery_env) {
        gw.tasks().spawn("discovery", clawgate_core::discovery::run(ad, gw.shutdown_token()));
    }
    gw.health.refresh(&gw.agents.agents().default_id).await;

    match auth_mode {
        AuthMode::Token if generated_token => {
            println!("auth: token (stored in {}; read it with: cat {})", token_path.display(), token_path.display())
        }
        AuthMode::Token => println!("auth: token (from config, flag or environment)"),
        AuthMode::Password => println!("auth: password"),
        AuthMode::None => println!("auth: none (loopback only)"),
    }
    println!("state: {}  config: {}  log: {}", state_dir.display(), config_path.display(), log_file.display());
    // Printed last: tools and tests wait for this line to know the gateway is ready.
    println!("clawgate {} {}", env!("CARGO_PKG_VERSION"), listening_line(local, tls.is_some()));
    tracing::info!(addr = %local, startup_ms = t0.elapsed().as_millis() as u64, "clawgate listening");

    if let Some(listener) = metrics_listener {
        tracing::info!(addr = %listener.local_addr()?, "metrics listening (GET /metrics, no authentication)");
        let server = clawgate_server::serve_metrics(listener, gw.clone());
        gw.tasks().spawn("metrics-server", async move {
            if let Err(e) = server.await {
                tracing::warn!(error = %e, "metrics server stopped with an error");
            }
        });
    }
    let gw_for_server = gw.clone();
    let server = async move {
        match tls {
            Some(tls) => clawgate_server::serve_tls(listener, gw_for_server, tls).await,
            None => clawgate_server::serve(listener, gw_for_server).await,
        }
    };
    gw.tasks().spawn("server", async move {
        if let Err(e) = server.await {
            tracing::warn!(error = %e, "server stopped with an error");
        }
    });
    wait_for_signal().await;
    tracing::info!("stopping: telling clients, closing sockets with 1012");
    gw.begin_shutdown("gateway stopping");
    // Every service's tasks end before the store closes: nothing writes after the checkpoint.
    let stuck = gw.tasks().shutdown(SHUTDOWN_GRACE).await;
    if !stuck.is_empty() {
        tracing::warn!(?stuck, "stopping with tasks still running; their unfinished work resumes at the next start");
    }
    if let Err(e) = store.close().await {
        tracing::warn!(error = %e, "closing the state database failed");
    }
    tracing::info!("stopped");
    Ok(0)
}

/// `listening on ws://ADDR/ …` naming the real bind address. An unspecified address (`0.0.0.0`,
/// `::`) is said to be all interfaces, with the loopback URL to use from this machine.
fn listening_line(local: SocketAddr, tls: bool) -> String {
    let (ws, http) = if tls { ("wss", "https") } else { ("ws", "http") };
    let port = local.port();
    let ip = local.ip();
    let host = |ip: IpAddr| if ip.is_ipv6() { format!("[{ip}]") } else { ip.to_string() };
    if ip.is_unspecified() {
        let here = if ip.is_ipv6() { "[::1]".to_owned() } else { "127.0.0.1".to_owned() };
        format!(
            "listening on {ws}://{}:{port}/ (all interfaces; from this machine: {ws}://{here}:{port}, {http}://{here}:{port}/)",
            host(ip)
        )
    } else {
        format!("listening on {ws}://{h}:{port} ({http}://{h}:{port}/)", h = host(ip))
    }
}

fn resolve_relative(config_path: &std::path::Path, file: PathBuf) -> PathBuf {
    if file.is_absolute() { file } else { config_path.parent().map(|d| d.join(&file)).unwrap_or(file) }
}

fn bind_ip(flag: Option<&str>, loaded: &LoadedConfig) -> anyhow::Result<IpAddr> {
    match flag {
        None => Ok(loaded.config.gateway.bind_host().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))),
        Some("loopback") => Ok(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        Some("lan") => Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        Some(other) => {
            other.parse().with_context(|| format!("--bind {other}: expected loopback, lan or an IP address"))
        }
    }
}

fn generate_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn spawn_config_watcher(gw: Arc<Gateway>, path: PathBuf) {
    // Reloads apply the same environment overlay as the first load, and start from the config
    // in force so the first event is a real change.
    let watcher = clawgate_config::ConfigWatcher::builder(&path)
        .debounce(Duration::from_millis(300))
        .env(Env::process())
        .baseline((*gw.config.current()).clone())
        .spawn();
    match watcher {
        Ok((watcher, mut rx)) => {
            gw.config.set_watching(true);
            gw.clone().tasks().spawn("config-watcher", async move {
                let _watcher = watcher;
                let cancel = gw.shutdown_token();
                loop {
                    let event = tokio::select! {
                        e = rx.recv() => e,
                        _ = cancel.cancelled() => None,
                    };
                    match event {
                        None => break,
                        Some(clawgate_config::WatchEvent::Reloaded { config, .. }) => {
                            if config.hash == gw.config.current().hash {
                                continue;
                            }
                            match gw.config.adopt_checked(config) {
                                Ok(changes) => {
                                    tracing::info!(changes = changes.len(), "config file changed; applying");
                                    gw.config.apply_changes(gw.reconfigure(), &changes).await;
                                }
                                Err(e) => tracing::error!(
                                    error = %e,
                                    "config file changed but is invalid; keeping the previous config"
                                ),
                            }
                        }
                        Some(clawgate_config::WatchEvent::Invalid(e)) => {
                            tracing::error!(error = %e, "config file changed but is invalid; keeping the previous config");
                        }
                    }
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "config file watching is off"),
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
