//! A real PostgreSQL server for tests: Debian's `postgresql` binaries (`scripts/install-postgres.sh`),
//! a cluster `initdb`'d into a temporary directory, listening on a free loopback port, with its
//! unix socket inside that directory — no system service, nothing outside the temp dir.
//!
//! [`TestPostgres::shared`] starts one server per test process (nextest runs each test in its own
//! process, so in practice one per test; starting one costs well under a second) and
//! [`TestPostgres::create_database`] hands each caller a fresh, empty database on it, so tests
//! that share a process never see each other's rows. A server is stopped (`pg_ctl stop -m
//! immediate`) and its directory removed when its [`TestPostgres`] is dropped, and — for the shared
//! one, which lives in a static and is never dropped — by a watchdog child that waits for the
//! test process to exit (its stdin pipe closes, however the process ends, even on `kill -9`).
//!
//! PostgreSQL refuses to run as root. When the tests run as root (CI containers), the server runs
//! as the unprivileged `postgres` user that the Debian package creates (else `nobody`), through
//! `setpriv`, and the temp dir is handed to that user.
//!
//! When the binaries are missing, [`TestPostgres::shared`] prints why and returns `None` so the
//! test can skip — unless `CLAWGATE_REQUIRE_PEERS` is set (as `scripts/test.sh` does), which turns
//! the skip into a failure.

use std::io::Write as _;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, bail};

/// The superuser `initdb` creates; tests connect as it (trust authentication on loopback).
pub const SUPERUSER: &str = "postgres";

/// How many times a start is retried when the free port it picked was taken in between.
const START_ATTEMPTS: u32 = 4;

/// A running PostgreSQL server in a temporary directory.
#[derive(Debug)]
pub struct TestPostgres {
    /// The directory holding the binaries (`initdb`, `pg_ctl`, `createdb`, …).
    bin: PathBuf,
    /// The cluster's temp dir (data, socket, log). Removed by the watchdog once the server is
    /// stopped, so the server never runs on a deleted directory.
    dir: PathBuf,
    port: u16,
    /// Prefix that runs a server-side program as the unprivileged owner (empty unless root).
    run_as: Vec<String>,
    /// Stops the server and removes `dir` when this pipe closes: on drop, or when the process
    /// exits without dropping (the shared server).
    watchdog: Option<(Child, ChildStdin)>,
}

impl TestPostgres {
    /// The server shared by every test of this process, started on first use; `None` (after
    /// printing the reason) when PostgreSQL is not installed and `CLAWGATE_REQUIRE_PEERS` is not
    /// set. Panics when it is required but missing, or when it is installed but fails to start.
    pub fn shared() -> Option<&'static TestPostgres> {
        static SHARED: OnceLock<Option<TestPostgres>> = OnceLock::new();
        SHARED
            .get_or_init(|| match find_binaries() {
                Ok(_) => Some(TestPostgres::start().expect("start the test PostgreSQL server")),
                Err(why) => {
                    if peers_required() {
                        panic!("this test needs PostgreSQL (scripts/install-postgres.sh): {why:#}");
                    }
                    eprintln!(
                        "\n*** SKIPPED PostgreSQL test: {why:#}\n\
                         *** run scripts/install-postgres.sh (CLAWGATE_REQUIRE_PEERS=1 turns this skip into a failure)\n"
                    );
                    None
                }
            })
            .as_ref()
    }

    /// Starts a new server of its own (stopped on drop).
    pub fn start() -> anyhow::Result<TestPostgres> {
        let bin = find_binaries()?;
        let run_as = unprivileged_prefix()?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(&bin, &run_as) {
                Ok(server) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no start attempted")))
    }

    fn start_once(bin: &Path, run_as: &[String]) -> anyhow::Result<TestPostgres> {
        let dir = tempfile::Builder::new().prefix("clawgate-pg-").tempdir()?.keep();
        let mut server = TestPostgres { bin: bin.to_owned(), dir, port: 0, run_as: run_as.to_vec(), watchdog: None };
        // The watchdog first, so the directory goes away whatever fails next.
        server.watchdog = Some(server.spawn_watchdog()?);
        if let Some((uid, gid)) = owner_ids(run_as)? {
            std::os::unix::fs::chown(&server.dir, Some(uid), Some(gid))
                .context("hand the temp dir to the server user")?;
        }
        let data = server.dir.join("data");
        let out = server
            .server_command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", SUPERUSER, "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"])
            .output()
            .context("run initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        server.port = free_port()?;
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            server.port,
            server.dir.display()
        );
        // `-w`: pg_ctl returns once the server accepts connections (or has failed to start).
        let out = server
            .server_command("pg_ctl")
            .arg("start")
            .args(["-w", "-t", "60", "-s", "-D"])
            .arg(&data)
            .arg("-l")
            .arg(server.dir.join("server.log"))
            .arg("-o")
            .arg(options)
            .output()
            .context("run pg_ctl start")?;
        if !out.status.success() {
            let log = std::fs::read_to_string(server.dir.join("server.log")).unwrap_or_default();
            bail!("pg_ctl start failed: {}\n{log}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(server)
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates a fresh, empty database and returns its URL.
    pub fn create_database(&self) -> anyhow::Result<String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("t{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let out = Command::new(self.bin.join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", SUPERUSER, &name])
            .output()
            .context("run createdb")?;
        if !out.status.success() {
            bail!("createdb {name} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(self.url(&name))
    }

    /// A server-side program (`initdb`, `pg_ctl`) run as the unprivileged owner.
    fn server_command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        let mut cmd = match self.run_as.split_first() {
            Some((first, rest)) => {
                let mut cmd = Command::new(first);
                cmd.args(rest).arg(program);
                cmd
            }
            None => Command::new(program),
        };
        cmd.stdin(Stdio::null());
        cmd
    }

    /// A shell that waits for EOF on its stdin, then stops the server and removes the directory.
    fn spawn_watchdog(&self) -> anyhow::Result<(Child, ChildStdin)> {
        let mut stop: Vec<String> = self.run_as.clone();
        stop.push(self.bin.join("pg_ctl").display().to_string());
        stop.extend(["stop", "-s", "-m", "immediate", "-D"].map(str::to_owned));
        stop.push(self.dir.join("data").display().to_string());
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"cat >/dev/null; dir="$1"; shift; [ -d "$dir/data" ] && "$@" >/dev/null 2>&1; rm -rf "$dir""#)
            .arg("clawgate-pg-watchdog")
            .arg(&self.dir)
            .args(stop)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: a Ctrl-C to the test run must not stop it before it cleans up.
            .process_group(0)
            .spawn()
            .context("spawn the PostgreSQL watchdog")?;
        let stdin = child.stdin.take().context("watchdog stdin")?;
        Ok((child, stdin))
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        if let Some((mut child, mut stdin)) = self.watchdog.take() {
            let _ = stdin.flush();
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// Whether a missing peer is a failure rather than a skip.
fn peers_required() -> bool {
    std::env::var("CLAWGATE_REQUIRE_PEERS").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The directory with `initdb` and `pg_ctl`: from `PATH`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian installs them there, off `PATH`).
pub fn find_binaries() -> anyhow::Result<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_both(&dir) {
                // Follow symlinks (`/usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb`) to
                // the directory that also holds `createdb` and `postgres`.
                let real = std::fs::canonicalize(dir.join("initdb")).ok().and_then(|p| p.parent().map(Path::to_owned));
                return Ok(real.filter(|d| d.join("createdb").is_file()).unwrap_or(dir));
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| has_both(bin))
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!("initdb and pg_ctl are not on PATH nor under /usr/lib/postgresql/*/bin"),
    }
}

/// `setpriv …` to drop to an unprivileged user when running as root (PostgreSQL refuses root);
/// empty otherwise.
fn unprivileged_prefix() -> anyhow::Result<Vec<String>> {
    if id(&["-u"])? != 0 {
        return Ok(Vec::new());
    }
    let user = ["postgres", "nobody"]
        .into_iter()
        .find(|u| id(&["-u", u]).is_ok())
        .context("running as root and neither a `postgres` nor a `nobody` user exists to run PostgreSQL as")?;
    let uid = id(&["-u", user])?;
    let gid = id(&["-g", user])?;
    Ok(vec![
        "setpriv".to_owned(),
        format!("--reuid={uid}"),
        format!("--regid={gid}"),
        "--clear-groups".to_owned(),
        "--".to_owned(),
    ])
}

/// The (uid, gid) the prefix runs as, if any.
fn owner_ids(run_as: &[String]) -> anyhow::Result<Option<(u32, u32)>> {
    let field = |name: &str| -> anyhow::Result<Option<u32>> {
        run_as.iter().find_map(|a| a.strip_prefix(name)).map(|v| v.parse::<u32>().context("numeric id")).transpose()
    };
    Ok(field("--reuid=")?.zip(field("--regid=")?))
}

/// `id <args>` as a number.
fn id(args: &[&str]) -> anyhow::Result<u32> {
    let out = Command::new("id").args(args).output().context("run id")?;
    if !out.status.success() {
        bail!("id {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().context("id printed a number")
}

/// A loopback port nothing listens on right now (the start is retried if another process takes
/// it before the server binds it).
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_starts_serves_fresh_databases_and_is_gone_after_drop() {
        let Ok(_) = find_binaries() else {
            if peers_required() {
                panic!("PostgreSQL is required (CLAWGATE_REQUIRE_PEERS) but not installed");
            }
            eprintln!("*** SKIPPED: PostgreSQL is not installed (scripts/install-postgres.sh)");
            return;
        };
        let server = TestPostgres::start().expect("start");
        let a = server.create_database().expect("first database");
        let b = server.create_database().expect("second database");
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("postgres://postgres@127.0.0.1:{}/", server.port())));
        let dir = server.dir.clone();
        let port = server.port();
        assert!(std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok(), "accepts connections");
        drop(server);
        assert!(!dir.exists(), "temp dir removed");
        assert!(std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(), "server stopped");
    }
}
