//! `clawgate doctor`: check what a gateway needs and say how to fix what is wrong.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::paths;

/// Check config, state directory, database and port, and print what to fix.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawgate doctor
  clawgate doctor --state-dir /srv/clawgate")]
pub struct DoctorArgs {
    /// Config file [default: $CLAWGATE_CONFIG or <state-dir>/clawgate.json5]
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// State directory [default: $CLAWGATE_STATE_DIR or ~/.clawgate]
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

struct Report {
    failures: usize,
}

impl Report {
    fn ok(&self, what: &str) {
        println!("  ok    {what}");
    }
    fn warn(&self, what: &str, fix: &str) {
        println!("  warn  {what}\n        fix: {fix}");
    }
    fn fail(&mut self, what: &str, fix: &str) {
        self.failures += 1;
        println!("  FAIL  {what}\n        fix: {fix}");
    }
}

pub async fn run(args: DoctorArgs) -> anyhow::Result<i32> {
    let mut r = Report { failures: 0 };
    let state_dir = paths::state_dir(args.state_dir.as_deref());
    let config_path = paths::config_path(args.config.as_deref(), &state_dir);
    println!("clawgate doctor\n  state dir: {}\n  config:    {}", state_dir.display(), config_path.display());

    // State directory.
    if state_dir.is_dir() {
        let probe = state_dir.join(".doctor-write-test");
        match std::fs::write(&probe, b"x") {
            Ok(()) => {
                let _ = std::fs::remove_file(&probe);
                r.ok("state directory exists and is writable");
            }
            Err(e) => r.fail(
                &format!("state directory is not writable: {e}"),
                &format!("chown/chmod {}", state_dir.display()),
            ),
        }
    } else {
        r.warn("state directory does not exist yet", "run `clawgate gateway` once; it creates it");
    }

    // The state lock: is a gateway running on this directory?
    match crate::state_lock::holder(&state_dir) {
        Ok(Some(h)) => r.ok(&format!("a gateway is running on this state directory ({})", h.describe())),
        Ok(None) => r.ok("no gateway is running on this state directory"),
        Err(e) => r.warn(&e.to_string(), "check the permissions of the state directory"),
    }

    // Config.
    let loaded = match clawgate_config::load_with_env(&config_path, &clawgate_config::Env::process()) {
        Ok(l) => {
            if l.exists {
                r.ok("config file is valid")
            } else {
                r.ok("no config file; defaults apply")
            }
            Some(l)
        }
        Err(e) => {
            r.fail(
                &format!("config file is invalid:\n{e}"),
                "edit the lines named above (`clawgate config validate` re-checks)",
            );
            None
        }
    };

    // Database.
    let db = paths::database(&state_dir);
    if db.exists() {
        match clawgate_store::SqliteStore::open(&db).await {
            Ok(store) => {
                match store.integrity_check().await {
                    Ok(true) => r.ok("state database opens and passes integrity_check"),
                    Ok(false) => r.fail(
                        "state database failed integrity_check",
                        "stop clawgate, move clawgate.db aside, restart (devices must re-pair)",
                    ),
                    Err(e) => r.fail(
                        &format!("state database check failed: {e}"),
                        "stop other clawgate processes using this state dir",
                    ),
                }
                let _ = store.close().await;
            }
            Err(e) => r.fail(
                &format!("cannot open state database: {e}"),
                "check permissions, or whether another process holds it",
            ),
        }
    } else {
        r.warn("no state database yet", "run `clawgate gateway` once");
    }

    // Token.
    let token_file = paths::token_file(&state_dir);
    if token_file.exists() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&token_file).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
            if mode & 0o077 != 0 {
                r.fail(
                    &format!("{} is readable by others (mode {mode:o})", token_file.display()),
                    &format!("chmod 600 {}", token_file.display()),
                );
            } else {
                r.ok("gateway token file is private (0600)");
            }
        }
    }

    // Auth and bind, port.
    if let Some(l) = &loaded {
        let g = &l.config.gateway;
        let ip = g.bind_host().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        if !ip.is_loopback() && matches!(g.auth.mode, clawgate_config::AuthMode::None) {
            r.fail(
                "non-loopback bind without auth",
                "set gateway.auth.mode to token or password, or gateway.bind to loopback",
            );
        } else {
            r.ok(&format!("bind {ip} with auth mode {:?}", g.auth.mode));
        }
        let probe_ip = if ip.is_unspecified() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { ip };
        let addr = SocketAddr::new(probe_ip, g.port);
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Ok(_) => r.ok(&format!("something is listening on {addr} (a running gateway?) — `clawgate status` tells")),
            Err(_) => match std::net::TcpListener::bind(SocketAddr::new(ip, g.port)) {
                Ok(_) => r.ok(&format!("port {} is free", g.port)),
                Err(e) => r.fail(
                    &format!("cannot listen on {ip}:{}: {e}", g.port),
                    "pick another port with --port or gateway.port",
                ),
            },
        }
    }

    if r.failures == 0 {
        println!("all checks passed");
        Ok(0)
    } else {
        println!("{} problem(s) found", r.failures);
        Ok(1)
    }
}
