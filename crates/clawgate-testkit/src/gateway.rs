//! Runs the real `clawgate` binary for black-box tests.
//!
//! `clawgate gateway --port 0 --bind loopback --state-dir DIR [--config PATH] [--token T]` runs in
//! the foreground and prints a line containing `listening on ws://127.0.0.1:PORT` on stdout when it
//! accepts connections. [`TestGateway`] starts it in a temporary directory, waits (bounded) for
//! that line, and keeps stdout/stderr in files whose tails go into every failure message. The child
//! is killed when the handle is dropped, so a panicking test leaves nothing behind.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::time::timeout;

/// How long to wait for the `listening on` line by default.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How long `terminate` waits for a graceful exit.
pub const TERMINATE_TIMEOUT: Duration = Duration::from_secs(15);

/// The marker the binary prints on stdout when it is ready (`ws://`, or `wss://` with
/// `gateway.tls`).
const READY_MARKER: &str = "listening on ws";

/// Options for starting a [`TestGateway`].
#[derive(Debug, Clone)]
pub struct TestGatewayBuilder {
    bin: PathBuf,
    token: Option<String>,
    config: Option<String>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    ready_timeout: Duration,
    state_dir: Option<PathBuf>,
}

impl TestGatewayBuilder {
    /// Passes `--token T` (the default is a random token).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Passes no `--token` (auth then comes from the config, or is off).
    pub fn no_token(mut self) -> Self {
        self.token = None;
        self
    }

    /// Writes this JSON5 text to a config file and passes `--config PATH`.
    pub fn config(mut self, json5: impl Into<String>) -> Self {
        self.config = Some(json5.into());
        self
    }

    /// Appends an extra command-line argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Sets an environment variable for the gateway process.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Uses `dir` (which must exist) as the `--state-dir` instead of a fresh one in the temp dir,
    /// e.g. a small filesystem the test mounted to make the disk fill up. The test owns `dir`; the
    /// captured output and the config file stay in the gateway's own temp dir.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// How long to wait for readiness.
    pub fn ready_timeout(mut self, wait: Duration) -> Self {
        self.ready_timeout = wait;
        self
    }

    /// Starts the gateway and waits until it listens.
    pub async fn start(self) -> anyhow::Result<TestGateway> {
        let root =
            tempfile::Builder::new().prefix("clawgate-test-").tempdir().context("creating the gateway temp dir")?;
        let state_dir = self.state_dir.clone().unwrap_or_else(|| root.path().join("state"));
        std::fs::create_dir_all(&state_dir)?;
        let config_path = match &self.config {
            Some(text) => {
                let path = root.path().join("clawgate.json5");
                std::fs::write(&path, text)?;
                Some(path)
            }
            None => None,
        };
        let mut gateway = TestGateway { options: self, root, state_dir, config_path, child: None, port: 0, starts: 0 };
        gateway.spawn(0).await?;
        Ok(gateway)
    }
}

/// A running `clawgate gateway` process.
#[derive(Debug)]
pub struct TestGateway {
    options: TestGatewayBuilder,
    /// Holds the state dir, the config file and the captured output; removed on drop.
    root: TempDir,
    state_dir: PathBuf,
    config_path: Option<PathBuf>,
    child: Option<Child>,
    port: u16,
    /// Number of spawns, to name each run's output files.
    starts: u32,
}

impl TestGateway {
    /// Options for a gateway run from the binary at `bin` (in integration tests:
    /// `env!("CARGO_BIN_EXE_clawgate")`), with a random token.
    ///
    /// Two environment variables allow differential runs of a suite against another
    /// implementation with the same command line (`tests/node/openclaw-gateway-shim.mjs` runs the
    /// real OpenClaw gateway): `CLAWGATE_TEST_BIN` replaces `bin`, and
    /// `CLAWGATE_TEST_READY_TIMEOUT_SECS` the readiness bound.
    pub fn builder(bin: impl Into<PathBuf>) -> TestGatewayBuilder {
        let bin = std::env::var_os("CLAWGATE_TEST_BIN").map(PathBuf::from).unwrap_or_else(|| bin.into());
        let ready_timeout = std::env::var("CLAWGATE_TEST_READY_TIMEOUT_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_READY_TIMEOUT);
        TestGatewayBuilder {
            bin,
            token: Some(random_token()),
            config: None,
            args: Vec::new(),
            envs: Vec::new(),
            ready_timeout,
            state_dir: None,
        }
    }

    /// Starts a gateway with token auth (random token) and no config file.
    pub async fn start(bin: impl Into<PathBuf>) -> anyhow::Result<TestGateway> {
        Self::builder(bin).start().await
    }

    fn stdout_path(&self) -> PathBuf {
        self.root.path().join(format!("stdout.{}.log", self.starts))
    }

    /// Where this run's stderr goes.
    pub fn stderr_path(&self) -> PathBuf {
        self.root.path().join(format!("stderr.{}.log", self.starts))
    }

    async fn spawn(&mut self, port: u16) -> anyhow::Result<()> {
        self.starts += 1;
        let stderr = std::fs::File::create(self.stderr_path())?;
        let mut cmd = Command::new(&self.options.bin);
        cmd.arg("gateway")
            .arg("--port")
            .arg(port.to_string())
            .arg("--bind")
            .arg("loopback")
            .arg("--state-dir")
            .arg(&self.state_dir);
        if let Some(path) = &self.config_path {
            cmd.arg("--config").arg(path);
        }
        if let Some(token) = &self.options.token {
            cmd.arg("--token").arg(token);
        }
        cmd.args(&self.options.args)
            .envs(self.options.envs.iter().map(|(k, v)| (k, v)))
            .env("NO_COLOR", "1")
            .current_dir(self.root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true);
        let mut child = cmd.spawn().with_context(|| format!("spawning {}", self.options.bin.display()))?;
        let stdout = child.stdout.take().context("child stdout")?;
        let (ready_tx, ready_rx) = oneshot::channel::<String>();
        let stdout_path = self.stdout_path();
        // Keep draining stdout for the life of the process so it never blocks on a full pipe.
        tokio::spawn(async move {
            let mut file = tokio::fs::File::create(&stdout_path).await.ok();
            let mut lines = BufReader::new(stdout).lines();
            let mut ready_tx = Some(ready_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(file) = file.as_mut() {
                    let _ = file.write_all(format!("{line}\n").as_bytes()).await;
                    let _ = file.flush().await;
                }
                if let Some(at) = line.find(READY_MARKER) {
                    let url: String =
                        line[at + "listening on ".len()..].chars().take_while(|c| !c.is_whitespace()).collect();
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(url);
                    }
                }
            }
        });
        let waited = tokio::select! {
            url = timeout(self.options.ready_timeout, ready_rx) => match url {
                Ok(Ok(url)) => Ok(url),
                Ok(Err(_)) => Err(format!("stdout closed before a {READY_MARKER:?} line")),
                Err(_) => Err(format!(
                    "no {READY_MARKER:?} line on stdout within {:?}",
                    self.options.ready_timeout
                )),
            },
            status = child.wait() => Err(format!("exited before it was ready: {status:?}")),
        };
        let url = match waited {
            Ok(url) => url,
            Err(why) => {
                let _ = child.start_kill();
                let _ = timeout(Duration::from_secs(5), child.wait()).await;
                bail!("clawgate gateway {why}\n{}", self.describe_output());
            }
        };
        self.port = parse_port(&url)
            .with_context(|| format!("cannot read the port from {url:?}\n{}", self.describe_output()))?;
        self.child = Some(child);
        Ok(())
    }

    /// `ws://127.0.0.1:PORT`.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The token passed with `--token`, if any.
    pub fn token(&self) -> Option<&str> {
        self.options.token.as_deref()
    }

    /// The token, for tests that always start with one.
    ///
    /// # Panics
    /// When the gateway was started with [`TestGatewayBuilder::no_token`].
    pub fn expect_token(&self) -> &str {
        self.token().expect("gateway was started without --token")
    }

    /// The `--state-dir`.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The `--config` file, if one was written.
    pub fn config_path(&self) -> Option<&Path> {
        self.config_path.as_deref()
    }

    /// The gateway's own JSON log file (`STATE_DIR/logs/clawgate.log`).
    pub fn log_path(&self) -> PathBuf {
        self.state_dir.join("logs").join("clawgate.log")
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills the process with SIGKILL and waits for it.
    pub async fn kill9(&mut self) -> anyhow::Result<ExitStatus> {
        let mut child = self.child.take().context("gateway is not running")?;
        child.start_kill().context("sending SIGKILL")?;
        timeout(TERMINATE_TIMEOUT, child.wait())
            .await
            .context("gateway did not die after SIGKILL")?
            .context("waiting for the gateway")
    }

    /// Sends SIGTERM and waits (15 s) for a graceful exit; kills it and fails if it hangs.
    pub async fn terminate(&mut self) -> anyhow::Result<ExitStatus> {
        let mut child = self.child.take().context("gateway is not running")?;
        let pid = child.id().context("gateway already exited")?;
        // `kill(1)` keeps this crate free of `unsafe` and of a libc binding.
        let status = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .context("running kill -TERM")?;
        anyhow::ensure!(status.success(), "kill -TERM {pid} failed: {status}");
        match timeout(TERMINATE_TIMEOUT, child.wait()).await {
            Ok(status) => status.context("waiting for the gateway"),
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                bail!("gateway did not exit within {TERMINATE_TIMEOUT:?} of SIGTERM\n{}", self.describe_output())
            }
        }
    }

    /// Waits for the process to exit on its own.
    pub async fn wait_exit(&mut self, wait: Duration) -> anyhow::Result<ExitStatus> {
        let child = self.child.as_mut().context("gateway is not running")?;
        let status =
            timeout(wait, child.wait()).await.with_context(|| format!("gateway still running after {wait:?}"))??;
        self.child = None;
        Ok(status)
    }

    /// Sets (`Some`) or removes (`None`) an environment variable for the next (re)start, e.g. to
    /// drop a `CLAWGATE_CRASH_AT` crash point before restarting after the crash.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.options.envs.retain(|(k, _)| k != key);
        if let Some(v) = value {
            self.options.envs.push((key.to_owned(), v.to_owned()));
        }
    }

    /// Stops the gateway (SIGTERM) if it runs and starts it again on the same port with the same
    /// state dir, config and token.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            self.terminate().await?;
        }
        let port = self.port;
        let mut last_err = None;
        // The port can linger for a moment after the old process exits.
        for attempt in 0..5u64 {
            match self.spawn(port).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    last_err = Some(e);
                    tokio::time::sleep(Duration::from_millis(200 * (attempt + 1))).await;
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("restart failed")))
    }

    /// The tail of this run's stdout and stderr plus the gateway log, for failure messages.
    pub fn describe_output(&self) -> String {
        format!(
            "--- clawgate stdout (tail) ---\n{}\n--- clawgate stderr (tail) ---\n{}\n--- {} (tail) ---\n{}",
            tail_of(&self.stdout_path(), 4000),
            tail_of(&self.stderr_path(), 8000),
            self.log_path().display(),
            tail_of(&self.log_path(), 4000),
        )
    }

    /// The gateway's log file as text (empty when it does not exist yet).
    pub fn read_log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.describe_output());
        }
    }
}

fn parse_port(url: &str) -> Option<u16> {
    let rest = url.strip_prefix("ws://").or_else(|| url.strip_prefix("wss://"))?;
    let host_port = rest.split('/').next()?;
    host_port.rsplit(':').next()?.parse().ok()
}

fn tail_of(path: &Path, max: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(max);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// A random token without pulling in a RNG crate: `RandomState` is seeded from the OS.
pub fn random_token() -> String {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0),
    );
    let a = hasher.finish();
    let b = RandomState::new().build_hasher().finish();
    format!("tk-{a:016x}{b:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_is_read_from_the_listening_url() {
        assert_eq!(parse_port("ws://127.0.0.1:40123"), Some(40123));
        assert_eq!(parse_port("ws://127.0.0.1:40123/"), Some(40123));
        assert_eq!(parse_port("wss://127.0.0.1:40124"), Some(40124));
        assert_eq!(parse_port("http://127.0.0.1:1"), None);
    }

    #[test]
    fn random_tokens_differ() {
        assert_ne!(random_token(), random_token());
    }

    /// A stand-in "binary" that prints the ready line for the port it was given (or 45999 for 0),
    /// records its arguments, and sleeps.
    fn fake_gateway_script(dir: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("fake-clawgate");
        std::fs::write(
            &path,
            "#!/bin/sh\nport=$3\n[ \"$port\" = 0 ] && port=45999\necho \"$@\" >> \"$(dirname \"$0\")/args\"\necho \"INFO clawgate: listening on ws://127.0.0.1:$port (pid $$)\"\nexec sleep 60\n",
        )
        .expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    #[tokio::test]
    async fn gateway_is_ready_on_the_printed_port_and_restarts_on_the_same_port() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = fake_gateway_script(dir.path());
        let mut gw = TestGateway::builder(&script)
            .token("secret")
            .config("{gateway: {auth: {mode: 'token'}}}")
            .start()
            .await
            .expect("start");
        assert_eq!(gw.ws_url(), "ws://127.0.0.1:45999");
        assert_eq!(gw.http_url(), "http://127.0.0.1:45999");
        assert_eq!(gw.token(), Some("secret"));
        assert!(gw.state_dir().is_dir());
        let config = std::fs::read_to_string(gw.config_path().expect("config")).expect("read");
        assert!(config.contains("auth"));
        let first_pid = gw.pid().expect("pid");
        gw.restart().await.expect("restart");
        assert_ne!(gw.pid(), Some(first_pid));
        assert_eq!(gw.port(), 45999);
        let args = std::fs::read_to_string(dir.path().join("args")).expect("args");
        let lines: Vec<&str> = args.lines().collect();
        assert_eq!(lines.len(), 2, "{args}");
        assert!(lines[0].starts_with("gateway --port 0 --bind loopback --state-dir "), "{args}");
        assert!(lines[0].contains("--config ") && lines[0].ends_with("--token secret"), "{args}");
        assert!(lines[1].starts_with("gateway --port 45999 "), "{args}");
        let status = gw.terminate().await.expect("terminate");
        assert!(!status.success());
        assert!(!gw.is_running());
    }

    #[tokio::test]
    async fn kill9_stops_the_gateway() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = fake_gateway_script(dir.path());
        let mut gw = TestGateway::builder(&script).start().await.expect("start");
        assert!(gw.is_running());
        gw.kill9().await.expect("kill9");
        assert!(!gw.is_running());
        assert!(gw.pid().is_none());
    }

    #[tokio::test]
    async fn a_binary_that_never_gets_ready_fails_with_its_output() {
        // `sh -c` ignores our arguments after the script; it prints and exits without the marker.
        let err = TestGateway::builder("/bin/sh")
            .arg("-c")
            .ready_timeout(Duration::from_secs(5))
            .start()
            .await
            .expect_err("sh is not a gateway");
        let text = format!("{err:#}");
        assert!(text.contains("clawgate gateway"), "{text}");
    }
}
