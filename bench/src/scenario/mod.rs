//! The load scenarios. Each one connects with the real handshake, measures, and emits a
//! [`crate::report::Report`].

pub mod chat;
pub mod comfy;
pub mod direct;
pub mod fanout;
pub mod handshake;
pub mod history;
pub mod idle;
pub mod line;
pub mod platform;
pub mod ready;
pub mod rpc;
pub mod slack;
pub mod telegram;
pub mod whatsapp;

use std::time::Duration;

use clap::Args;

use crate::conn::Target;

/// Options every load scenario takes.
#[derive(Args, Clone, Debug)]
pub struct Common {
    /// Server URL; only loopback ws:// URLs are accepted.
    #[arg(long, default_value = "ws://127.0.0.1:18789")]
    pub url: String,
    /// Shared gateway token (sent as `auth.token`).
    #[arg(long, env = "CLAWGATE_BENCH_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Server pid: adds its RSS and CPU time (process tree, from /proc) to the report.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Also print one JSON object line on stdout (the human summary then goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Free-form name of the server under test, copied into the JSON line (e.g. `echo`).
    #[arg(long, default_value = "")]
    pub label: String,
    /// Free-form run id copied into the JSON line, to group the lines of one comparison run.
    #[arg(long, default_value = "")]
    pub run_id: String,
    /// Per-operation timeout (one connect, one response, one delivery round), in ms.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// With --pid: abort the scenario when the server's process tree grows past this RSS
    /// (MiB), or when the machine's MemAvailable drops under 1 GiB. The box is shared: a
    /// server that balloons under load must not take it down.
    #[arg(long, default_value_t = 4096)]
    pub max_server_rss_mb: u64,
}

/// Resolves with an error when the memory guard trips; never resolves otherwise.
pub async fn memory_guard(pid: Option<u32>, max_rss_mb: u64) -> anyhow::Error {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        if let Some(avail) = crate::procfs::mem_available_kb()
            && avail < 1024 * 1024
        {
            return anyhow::anyhow!("aborted: the machine has only {} MiB of memory left", avail / 1024);
        }
        let Some(pid) = pid else { continue };
        let rss: u64 = crate::procfs::tree(pid).into_iter().filter_map(|p| crate::procfs::rss_kb(p).ok()).sum();
        if rss > max_rss_mb * 1024 {
            return anyhow::anyhow!(
                "aborted: server RSS reached {} MiB (limit --max-server-rss-mb {max_rss_mb})",
                rss / 1024
            );
        }
    }
}

impl Common {
    pub fn target(&self) -> anyhow::Result<Target> {
        Target::parse(&self.url)
    }

    pub fn op_timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }
}
