//! `clawgate-bench`: a load generator for OpenClaw-protocol gateways (clawgate, the real
//! OpenClaw gateway, or the bundled echo server), speaking the real protocol-4 handshake.
//!
//! It only ever connects to the loopback URL it is given, and every loop in it is bounded by a
//! count and a timeout. Results are benchmarks to compare servers measured in the same run on
//! the same machine, not pass/fail tests; see docs/PERFORMANCE.md.

mod conn;
mod echo_server;
mod fake_model;
mod http;
mod procfs;
mod progress;
mod report;
mod scenario;
mod stats;
mod table;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde_json::json;

use scenario::chat::ChatArgs;
use scenario::comfy::ComfyArgs;
use scenario::direct::DirectArgs;
use scenario::fanout::FanoutArgs;
use scenario::handshake::HandshakeArgs;
use scenario::history::HistoryArgs;
use scenario::idle::IdleArgs;
use scenario::line::LineArgs;
use scenario::ready::ReadyArgs;
use scenario::rpc::RpcArgs;
use scenario::slack::SlackArgs;
use scenario::telegram::TelegramArgs;
use scenario::whatsapp::WhatsappArgs;

const EXAMPLES: &str = "\
Examples (T is the gateway's shared token; P the server's pid):
  clawgate-bench echo-server --port 18799 &
  clawgate-bench handshake --url ws://127.0.0.1:18799 --token T --count 2000 --concurrency 16
  clawgate-bench rpc --url ws://127.0.0.1:18789 --token T --connections 16 --requests 500 --depth 8 --pid P
  clawgate-bench idle --url ws://127.0.0.1:18789 --token T --connections 1000 --pid P
  clawgate-bench fanout --url ws://127.0.0.1:18789 --token T --listeners 1000 --rounds 10 --pid P
  clawgate-bench ready --url ws://127.0.0.1:18789 --token T --start-ns \"$(date +%s%N)\" --pid P
  clawgate-bench rss --pid P --json --label clawgate
  clawgate-bench fake-model --port 28804 --chunks 8 &
  clawgate-bench chat --url ws://127.0.0.1:18789 --token T --sessions 100 --turns 10 --pid P
  clawgate-bench direct --model-url http://127.0.0.1:28804/v1 --sessions 100 --turns 10
  clawgate-bench history --url ws://127.0.0.1:18789 --token T --rows 100000 --limit 50 --pid P
  clawgate-bench telegram --gateway-bin target/release/clawgate --chats 100 --messages 1000
  clawgate-bench slack --gateway-bin target/release/clawgate --chats 100 --messages 1000
  clawgate-bench line --gateway-bin target/release/clawgate --chats 100 --messages 1000
  clawgate-bench whatsapp --gateway-bin target/release/clawgate --chats 100 --messages 1000
  clawgate-bench comfy --gateway-bin target/release/clawgate --workers 4 --jobs 1000
  clawgate-bench table bench/results/2026-11-22.jsonl

Add --json to any scenario for one JSON line on stdout (the summary then goes to stderr);
--label/--run-id tag that line. Pin the server and this tool to different cores
(taskset -c 0 / taskset -c 1): see scripts/bench-compare.sh and docs/PERFORMANCE.md.";

#[derive(Parser, Debug)]
#[command(name = "clawgate-bench", version, about, after_help = EXAMPLES)]
struct Cli {
    /// Tokio worker threads for the load scenarios; 1 = a single-threaded runtime (the
    /// measured setup: one pinned core for the tool).
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Connections per second and open→hello-ok latency; each connection is closed after.
    #[command(
        after_help = "Example:\n  clawgate-bench handshake --url ws://127.0.0.1:18789 --token T --count 2000 --concurrency 16 --pid P"
    )]
    Handshake(HandshakeArgs),
    /// Request rate and latency over authenticated connections, optionally pipelined.
    #[command(
        after_help = "Example:\n  clawgate-bench rpc --url ws://127.0.0.1:18789 --token T --connections 16 --requests 1000 --depth 1 --method health --params '{}'"
    )]
    Rpc(RpcArgs),
    /// Server RSS per idle authenticated connection (needs --pid).
    #[command(
        after_help = "Example:\n  clawgate-bench idle --url ws://127.0.0.1:18789 --token T --connections 1000 --pid P --settle-secs 5"
    )]
    Idle(IdleArgs),
    /// `system-event` → `presence` broadcast latency to many listeners.
    #[command(
        after_help = "Example:\n  clawgate-bench fanout --url ws://127.0.0.1:18789 --token T --listeners 1000 --rounds 10 --pid P"
    )]
    Fanout(FanoutArgs),
    /// Start-up time of a just-launched server: TCP listening, then first hello-ok.
    #[command(
        after_help = "Example:\n  T0=$(date +%s%N); taskset -c 0 clawgate gateway --port 18790 ... & \n  clawgate-bench ready --url ws://127.0.0.1:18790 --token T --start-ns $T0 --pid $!"
    )]
    Ready(ReadyArgs),
    /// One RSS/CPU snapshot of a server's process tree (e.g. idle RSS after start-up).
    #[command(after_help = "Example:\n  clawgate-bench rss --pid P --json --label openclaw")]
    Rss(RssArgs),
    /// The baseline server: canned challenge, hello-ok, results and presence broadcasts.
    #[command(after_help = "Example:\n  taskset -c 0 clawgate-bench echo-server --port 18799")]
    EchoServer(echo_server::EchoArgs),
    /// A zero-delay OpenAI-compatible model server (SSE chat completions, /v1/models).
    #[command(after_help = "Example:\n  taskset -c 1 clawgate-bench fake-model --port 28804 --chunks 8 --delay-ms 0")]
    FakeModel(fake_model::FakeModelArgs),
    /// Agent chat turns through a gateway: time to first delta, inter-delta, turn latency.
    #[command(
        after_help = "Example:\n  clawgate-bench chat --url ws://127.0.0.1:18789 --token T --sessions 100 --turns 10 --pid P"
    )]
    Chat(ChatArgs),
    /// The same turns sent straight to the model (the baseline for gateway overhead).
    #[command(
        after_help = "Example:\n  clawgate-bench direct --model-url http://127.0.0.1:28804/v1 --sessions 100 --turns 10"
    )]
    Direct(DirectArgs),
    /// Fill a transcript with chat.inject, then time chat.history.
    #[command(
        after_help = "Example:\n  clawgate-bench history --url ws://127.0.0.1:18789 --token T --rows 100000 --limit 50 --pid P"
    )]
    History(HistoryArgs),
    /// Inbound Telegram message → reply latency, throughput and RSS growth, against a fake Bot
    /// API and a fake model (starts the gateway itself unless --api-root/--pid are given).
    #[command(
        after_help = "Example:\n  taskset -c 1 clawgate-bench telegram --gateway-bin target/release/clawgate --gateway-cpus 0 --chats 100 --messages 1000"
    )]
    Telegram(TelegramArgs),
    /// Inbound Slack message → reply, like `telegram`: signed Events API POSTs to the gateway's
    /// webhook (or Socket Mode envelopes with --mode socket), replies on a fake Web API.
    #[command(
        after_help = "Example:\n  taskset -c 1 clawgate-bench slack --gateway-bin target/release/clawgate --gateway-cpus 0 --chats 100 --messages 1000"
    )]
    Slack(SlackArgs),
    /// Inbound LINE message → reply, like `telegram`: signed webhook POSTs, replies by reply
    /// token (push fallbacks counted) on a fake Messaging API.
    #[command(
        after_help = "Example:\n  taskset -c 1 clawgate-bench line --gateway-bin target/release/clawgate --gateway-cpus 0 --chats 100 --messages 1000"
    )]
    Line(LineArgs),
    /// Inbound WhatsApp message → reply, like `telegram`: signed Cloud API webhook POSTs,
    /// replies on a fake Graph API.
    #[command(
        after_help = "Example:\n  taskset -c 1 clawgate-bench whatsapp --gateway-bin target/release/clawgate --gateway-cpus 0 --chats 100 --messages 1000"
    )]
    Whatsapp(WhatsappArgs),
    /// ComfyUI job dispatch overhead, throughput, spread and RSS against zero-latency fake
    /// workers served by this tool (starts the gateway itself).
    #[command(
        after_help = "Example:\n  taskset -c 1 clawgate-bench comfy --gateway-bin target/release/clawgate --gateway-cpus 0 --workers 4 --jobs 1000"
    )]
    Comfy(ComfyArgs),
    /// A throwaway PostgreSQL for the cluster benchmarks: `initdb` into a temp dir, a free
    /// loopback port, one fresh database; prints its URL and keeps the server until interrupted.
    #[command(after_help = "Example:\n  clawgate-bench postgres > pg.url &   # then storage.url = $(cat pg.url)")]
    Postgres,
    /// Markdown table (and target check) from collected JSON lines.
    #[command(after_help = "Example:\n  clawgate-bench table bench/results/2026-11-22.jsonl --run-id 20261122T101500")]
    Table(table::TableArgs),
}

#[derive(clap::Args, Debug)]
struct RssArgs {
    /// Server pid.
    #[arg(long)]
    pid: u32,
    /// Print one JSON line on stdout (summary to stderr).
    #[arg(long)]
    json: bool,
    #[arg(long, default_value = "")]
    label: String,
    #[arg(long, default_value = "")]
    run_id: String,
}

fn rss(args: RssArgs) -> Result<()> {
    let s = procfs::Sample::take(args.pid)?;
    let mut r = report::Report::new("rss", &args.label, &args.run_id);
    r.param("pid", args.pid);
    if let serde_json::Value::Object(m) = s.to_json() {
        for (k, v) in m {
            r.figure(&k, v);
        }
    }
    r.line(format!(
        "RSS main {:.1} MB, tree {:.1} MB ({} procs, {} threads in main), CPU so far {:.2} s",
        s.rss_main_kb as f64 / 1024.0,
        s.rss_tree_kb as f64 / 1024.0,
        s.pids.len(),
        s.threads_main,
        s.cpu_tree_s
    ));
    r.emit(args.json);
    Ok(())
}

/// `postgres`: the testkit's throwaway server (stopped with this process, however it ends).
fn postgres() -> Result<()> {
    let server = clawgate_testkit::TestPostgres::start().context("starting PostgreSQL")?;
    let url = server.create_database().context("creating the database")?;
    println!("{url}");
    eprintln!("clawgate-bench: PostgreSQL on port {} until interrupted", server.port());
    let rt = runtime(1)?;
    rt.block_on(async { tokio::signal::ctrl_c().await }).context("waiting for an interrupt")?;
    drop(server);
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clawgate-bench: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The load tool's runtime: single-threaded unless `--threads` asks for more.
fn runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()
    }
    .context("building the tokio runtime")
}

/// Ends a chat-platform scenario: its JSON error line when it failed (with --json), then the
/// runtime.
fn platform_result(
    rt: tokio::runtime::Runtime,
    scenario: &str,
    line: scenario::platform::ErrorLine,
    result: Result<()>,
) -> Result<()> {
    if let Err(e) = &result
        && line.json
    {
        report::emit_error(scenario, &line.label, &line.run_id, line.params, e);
    }
    rt.shutdown_background();
    result
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        // These two manage their own threads (or need none).
        Command::EchoServer(a) => return echo_server::run(a),
        Command::Table(a) => return table::run(a),
        Command::Rss(a) => return rss(a),
        Command::FakeModel(a) => return fake_model::run(a),
        Command::Postgres => return postgres(),
        _ => {}
    }
    // What identifies the run in an error line, so the table can show the failure in the
    // right cell.
    let (common, scenario, params) = match &cli.command {
        Command::Handshake(a) => {
            (a.common.clone(), "handshake", json!({"count": a.count, "concurrency": a.concurrency}))
        }
        Command::Rpc(a) => (
            a.common.clone(),
            "rpc",
            json!({"connections": a.connections, "requests": a.requests, "depth": a.depth, "method": a.method}),
        ),
        Command::Idle(a) => (a.common.clone(), "idle", json!({"connections": a.connections})),
        Command::Fanout(a) => (a.common.clone(), "fanout", json!({"listeners": a.listeners, "rounds": a.rounds})),
        Command::Ready(a) => (a.common.clone(), "ready", json!({})),
        Command::Chat(a) => (a.common.clone(), "chat", json!({"sessions": a.sessions, "turns": a.turns})),
        Command::History(a) => (a.common.clone(), "history", json!({"rows": a.rows, "limit": a.limit})),
        Command::Direct(a) => {
            let (json_out, label, run_id) = (a.json, a.label.clone(), a.run_id.clone());
            let params = json!({"sessions": a.sessions, "turns": a.turns});
            let rt = runtime(cli.threads)?;
            let Command::Direct(a) = cli.command else { unreachable!() };
            let result = rt.block_on(scenario::direct::run(a));
            if let Err(e) = &result
                && json_out
            {
                report::emit_error("direct", &label, &run_id, params, e);
            }
            rt.shutdown_background();
            return result;
        }
        Command::Telegram(a) => {
            let (scenario, params) = ("telegram", a.run.error_params());
            let rt = runtime(cli.threads)?;
            let Command::Telegram(a) = cli.command else { unreachable!() };
            let result = rt.block_on(scenario::telegram::run(a));
            return platform_result(rt, scenario, params, result);
        }
        Command::Slack(a) => {
            let (scenario, params) = ("slack", a.run.error_params());
            let rt = runtime(cli.threads)?;
            let Command::Slack(a) = cli.command else { unreachable!() };
            let result = rt.block_on(scenario::slack::run(a));
            return platform_result(rt, scenario, params, result);
        }
        Command::Line(a) => {
            let (scenario, params) = ("line", a.run.error_params());
            let rt = runtime(cli.threads)?;
            let Command::Line(a) = cli.command else { unreachable!() };
            let result = rt.block_on(scenario::line::run(a));
            return platform_result(rt, scenario, params, result);
        }
        Command::Whatsapp(a) => {
            let (scenario, params) = ("whatsapp", a.run.error_params());
            let rt = runtime(cli.threads)?;
            let Command::Whatsapp(a) = cli.command else { unreachable!() };
            let result = rt.block_on(scenario::whatsapp::run(a));
            return platform_result(rt, scenario, params, result);
        }
        Command::Comfy(a) => {
            let (json_out, label, run_id) = (a.json, a.label.clone(), a.run_id.clone());
            let params = json!({"workers": a.workers, "jobs": a.jobs});
            let rt = runtime(cli.threads)?;
            let Command::Comfy(a) = cli.command else { unreachable!() };
            let result = rt.block_on(scenario::comfy::run(a));
            if let Err(e) = &result
                && json_out
            {
                report::emit_error("comfy", &label, &run_id, params, e);
            }
            rt.shutdown_background();
            return result;
        }
        Command::EchoServer(_) | Command::Table(_) | Command::Rss(_) | Command::FakeModel(_) | Command::Postgres => {
            return Ok(());
        }
    };
    let rt = runtime(cli.threads)?;
    let result = rt.block_on(async move {
        let work = async move {
            match cli.command {
                Command::Handshake(a) => scenario::handshake::run(a).await,
                Command::Rpc(a) => scenario::rpc::run(a).await,
                Command::Idle(a) => scenario::idle::run(a).await,
                Command::Fanout(a) => scenario::fanout::run(a).await,
                Command::Ready(a) => scenario::ready::run(a).await,
                Command::Chat(a) => scenario::chat::run(a).await,
                Command::History(a) => scenario::history::run(a).await,
                Command::EchoServer(_)
                | Command::Table(_)
                | Command::Rss(_)
                | Command::FakeModel(_)
                | Command::Postgres
                | Command::Direct(_)
                | Command::Telegram(_)
                | Command::Slack(_)
                | Command::Line(_)
                | Command::Whatsapp(_)
                | Command::Comfy(_) => Ok(()),
            }
        };
        tokio::select! {
            r = work => r,
            e = scenario::memory_guard(common.pid, common.max_server_rss_mb) => Err(e),
        }
    });
    if let Err(e) = &result
        && common.json
    {
        report::emit_error(scenario, &common.label, &common.run_id, params, e);
    }
    // Do not wait for sockets still held by aborted tasks.
    rt.shutdown_background();
    result
}
