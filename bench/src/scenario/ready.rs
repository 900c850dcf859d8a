//! `ready`: start-up time of a server that was just launched.
//!
//! The caller records the launch time (`date +%s%N`) and passes it as `--start-ns`. We poll
//! a TCP connect every 2 ms until the port accepts ("listening"), then try the full handshake
//! every 50 ms until a `hello-ok` comes back ("ready": a starting gateway may still refuse
//! connect with a retryable UNAVAILABLE). With `--pid` it also reports the CPU the start-up
//! used and the RSS, at first hello and `--after-secs` later.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use clap::Args;
use tokio::net::TcpStream;

use super::Common;
use crate::conn::{self, ADMIN_SCOPES};
use crate::procfs::maybe_sample;
use crate::report::Report;
use crate::stats::round3;

#[derive(Args, Debug)]
pub struct ReadyArgs {
    #[command(flatten)]
    pub common: Common,
    /// When the server was launched, in ns since the Unix epoch (`date +%s%N`). Defaults to now.
    #[arg(long)]
    pub start_ns: Option<u128>,
    /// Give up after this long.
    #[arg(long, default_value_t = 120)]
    pub max_secs: u64,
    /// With --pid: also read CPU/RSS this long after the first hello-ok.
    #[arg(long, default_value_t = 3)]
    pub after_secs: u64,
}

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

fn since_ms(start_ns: u128) -> f64 {
    now_ns().saturating_sub(start_ns) as f64 / 1e6
}

pub async fn run(args: ReadyArgs) -> Result<()> {
    let c = &args.common;
    let target = c.target()?;
    let start_ns = args.start_ns.unwrap_or_else(now_ns);
    let deadline = Instant::now() + Duration::from_secs(args.max_secs);
    let connect = conn::connect_frame("c1", &c.token, ADMIN_SCOPES);

    let listen_ms = loop {
        if TcpStream::connect(target.addr).await.is_ok() {
            break since_ms(start_ns);
        }
        if Instant::now() > deadline {
            bail!("{} did not accept TCP within {} s", target.addr, args.max_secs);
        }
        if let Some(pid) = c.pid
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            bail!("server pid {pid} exited before listening");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    eprintln!("ready: TCP accepted after {listen_ms:.1} ms");

    let mut attempts = 0u64;
    let mut last_error: String;
    let hello_ms = loop {
        attempts += 1;
        match conn::connect(&target, &connect, c.op_timeout()).await {
            Ok((ws, _)) => {
                let t = since_ms(start_ns);
                conn::close(ws, Duration::from_secs(1)).await;
                break t;
            }
            Err(e) => last_error = format!("{e:#}"),
        }
        if Instant::now() > deadline {
            bail!("no hello-ok within {} s; last error: {last_error}", args.max_secs);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("ready: first hello-ok after {hello_ms:.1} ms ({attempts} attempts)");

    let at_hello = maybe_sample(c.pid)?;
    let mut r = Report::new("ready", &c.label, &c.run_id);
    r.param("url", c.url.as_str());
    r.figure("listen_ms", round3(listen_ms)).figure("hello_ms", round3(hello_ms)).figure("hello_attempts", attempts);
    r.line(format!("start → TCP listening: {listen_ms:.1} ms"))
        .line(format!("start → first hello-ok: {hello_ms:.1} ms ({attempts} attempts)"));
    if let Some(s) = at_hello {
        r.figure("at_hello", s.to_json());
        tokio::time::sleep(Duration::from_secs(args.after_secs)).await;
        if let Some(later) = maybe_sample(c.pid)? {
            r.figure("after_secs", args.after_secs)
                .figure("later", later.to_json())
                .figure("startup_cpu_s", round3(later.cpu_tree_s));
            r.line(format!(
                "CPU used so far ({} s after hello): {:.2} s; RSS main {:.1} MB, tree {:.1} MB ({} procs)",
                args.after_secs,
                later.cpu_tree_s,
                later.rss_main_kb as f64 / 1024.0,
                later.rss_tree_kb as f64 / 1024.0,
                later.pids.len()
            ));
        }
    }
    r.emit(c.json);
    Ok(())
}
