//! `comfy`: what the gateway adds to every ComfyUI job, against zero-latency fake workers.
//!
//! This tool starts the gateway (`--gateway-bin`, a temp state dir, a generated config with
//! `comfy.workers` pointing at `--workers` fake ComfyUI servers served here and the repo's
//! `templates/`), then drives it over the protocol with `comfy.run` and reads the `comfy.job`
//! events every operator client receives:
//!
//! - **unloaded latency** (`--probe-jobs`, one at a time): `comfy.run` sent → `POST /prompt`
//!   arrived at a fake (render, store, dispatch), and that arrival → the `completed` event here
//!   (history, `/view`, file write, store, broadcast). A fake finishes a prompt the moment it
//!   arrives, so these are the gateway's own costs plus loopback;
//! - **throughput** (`--jobs`, all queued at once): jobs/s from the first `comfy.run` to the
//!   last `completed`, and the *cycle* of each worker slot: the time between two consecutive
//!   `POST /prompt` on the same fake, i.e. the whole per-job overhead while work is waiting;
//! - **spread**: jobs per worker;
//! - **memory**: the gateway's RSS before the burst, its peak (sampled every 100 ms) and after.
//!
//! Why not `clawgate-testkit`'s `FakeComfy`: it simulates ComfyUI faithfully — it validates each
//! graph against node classes, runs jobs on a timer, encodes a real PNG per job and keeps every
//! submitted prompt — and it does not timestamp a prompt's arrival, which is the figure wanted
//! here. This fake answers only what the gateway's client calls (`GET /queue`, `POST /prompt`,
//! `GET /history/{id}`, `GET /view`, `/ws`), finishes every prompt on arrival with one fixed
//! 1×1 PNG, and records (prompt id → worker, arrival instant) and nothing else.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::conn::{self, Target, Ws};
use crate::http::Reader;
use crate::procfs::{self, maybe_sample};
use crate::progress::Progress;
use crate::report::{Report, client_cpu};
use crate::stats::{Summary, round3};

/// The gateway's shared token.
const GATEWAY_TOKEN: &str = "bench-token-0123456789";

/// A valid 1×1 RGBA PNG: the gateway stores and serves bytes, it never decodes them.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0A, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00, 0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00,
    0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

#[derive(Args, Debug)]
pub struct ComfyArgs {
    /// The gateway binary to start (with a temp state dir and a generated config).
    #[arg(long, default_value = "target/release/clawgate")]
    pub gateway_bin: PathBuf,
    /// Pin the started gateway to these CPUs (`taskset -c LIST`), e.g. `0`; pin this tool
    /// (and with it the fake workers) with `taskset -c 1 clawgate-bench …`.
    #[arg(long)]
    pub gateway_cpus: Option<String>,
    /// The ComfyUI templates directory the gateway loads (must hold `invert`).
    #[arg(long, default_value = "templates")]
    pub templates_dir: PathBuf,
    /// Fake ComfyUI workers.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// `maxConcurrent` of each worker in the gateway's config.
    #[arg(long, default_value_t = 1)]
    pub max_concurrent: u32,
    /// Jobs queued at once in the measured burst.
    #[arg(long, default_value_t = 1000)]
    pub jobs: u64,
    /// Jobs run one at a time before the burst (warm-up and the unloaded latencies).
    #[arg(long, default_value_t = 50)]
    pub probe_jobs: u64,
    /// Give up when no job completes for this long, in ms.
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: u64,
    /// Abort when the gateway's process tree grows past this RSS (MiB), or the machine's
    /// MemAvailable drops under 1 GiB.
    #[arg(long, default_value_t = 4096)]
    pub max_server_rss_mb: u64,
    /// Keep the temp dir (config, state, gateway log) and print its path.
    #[arg(long)]
    pub keep_state: bool,
    /// Also print one JSON object line on stdout (the human summary then goes to stderr).
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value = "")]
    pub label: String,
    #[arg(long, default_value = "")]
    pub run_id: String,
}

// ---------------------------------------------------------------------------------------------
// The fake workers

/// One prompt as it arrived at a fake.
#[derive(Clone, Copy)]
struct Arrival {
    worker: usize,
    at: Instant,
}

/// Every fake's arrivals, keyed by the prompt id it answered with.
#[derive(Default)]
struct Arrivals(Mutex<HashMap<String, Arrival>>);

impl Arrivals {
    fn record(&self, prompt_id: &str, a: Arrival) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(prompt_id.to_owned(), a);
    }

    fn get(&self, prompt_id: &str) -> Option<Arrival> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).get(prompt_id).copied()
    }

    fn all(&self) -> Vec<Arrival> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).values().copied().collect()
    }
}

/// A zero-latency ComfyUI: a prompt is finished (in history, announced on every socket) when
/// its `POST /prompt` is answered.
struct FakeWorker {
    index: usize,
    arrivals: Arc<Arrivals>,
    next: AtomicU64,
    /// prompt id → serialized history entry.
    history: Mutex<HashMap<String, String>>,
    /// Open `/ws` sockets (the gateway keeps one per worker).
    sockets: Mutex<Vec<mpsc::UnboundedSender<String>>>,
}

impl FakeWorker {
    fn prompt(&self, body: &[u8]) -> String {
        let at = Instant::now();
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("w{}-{n:08}", self.index);
        self.arrivals.record(&id, Arrival { worker: self.index, at });
        let client_id = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|b| b.get("client_id").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        let file = json!({"filename": format!("bench_{id}_.png"), "subfolder": "", "type": "output"});
        let entry = json!({
            "prompt": [n, id, {}, {"client_id": client_id}, ["3"]],
            "outputs": {"3": {"images": [file]}},
            "status": {"status_str": "success", "completed": true,
                       "messages": [["execution_start", {"prompt_id": id}], ["execution_success", {"prompt_id": id}]]},
            "meta": {},
        });
        self.history.lock().unwrap_or_else(PoisonError::into_inner).insert(id.clone(), entry.to_string());
        let frames = [
            json!({"type": "execution_start", "data": {"prompt_id": id}}).to_string(),
            json!({"type": "executed", "data": {"node": "3", "display_node": "3", "prompt_id": id,
                                                "output": {"images": [file]}}})
            .to_string(),
            json!({"type": "execution_success", "data": {"prompt_id": id}}).to_string(),
            json!({"type": "executing", "data": {"node": null, "prompt_id": id}}).to_string(),
        ];
        self.sockets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|tx| frames.iter().all(|f| tx.send(f.clone()).is_ok()));
        json!({"prompt_id": id, "number": n, "node_errors": {}}).to_string()
    }

    fn answer(&self, method: &str, path: &str, body: &[u8]) -> (u16, &'static str, Vec<u8>) {
        let json_ok = |s: String| (200, "application/json", s.into_bytes());
        match (method, path) {
            ("POST", "/prompt") => json_ok(self.prompt(body)),
            ("GET", "/queue") => json_ok(r#"{"queue_running":[],"queue_pending":[]}"#.to_owned()),
            ("GET", "/view") => (200, "image/png", PNG.to_vec()),
            ("GET", p) if p.starts_with("/history/") => {
                let id = &p["/history/".len()..];
                let history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
                json_ok(match history.get(id) {
                    Some(entry) => format!(r#"{{"{id}":{entry}}}"#),
                    None => "{}".to_owned(),
                })
            }
            ("POST", "/queue" | "/interrupt") => json_ok("{}".to_owned()),
            _ => (404, "application/json", b"{}".to_vec()),
        }
    }
}

async fn serve_worker(listener: TcpListener, worker: Arc<FakeWorker>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let worker = worker.clone();
        tokio::spawn(async move {
            // A connection error only ends that connection; the gateway reconnects.
            let _ = worker_connection(tcp, &worker).await;
        });
    }
}

async fn worker_connection(mut tcp: TcpStream, worker: &FakeWorker) -> Result<()> {
    tcp.set_nodelay(true)?;
    let mut peek = [0u8; 7];
    let n = tcp.peek(&mut peek).await?;
    if &peek[..n] == b"GET /ws" {
        return worker_socket(tcp, worker).await;
    }
    let mut reader = Reader::new();
    // Bounded by the client: each iteration consumes one request or ends at EOF.
    loop {
        let Some(head) = reader.head(&mut tcp).await? else { return Ok(()) };
        let body = reader.body(&mut tcp, &head).await?;
        let path = head.second.split('?').next().unwrap_or_default();
        let (status, content_type, out) = worker.answer(&head.first, path, &body);
        let reason = if status == 200 { "OK" } else { "Not Found" };
        let close = head.wants_close();
        let mut msg = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n{}\r\n",
            out.len(),
            if close { "connection: close\r\n" } else { "" }
        )
        .into_bytes();
        msg.extend_from_slice(&out);
        tcp.write_all(&msg).await?;
        if close {
            return Ok(());
        }
    }
}

/// `/ws?clientId=`: a `status` frame, then every frame the worker announces.
async fn worker_socket(tcp: TcpStream, worker: &FakeWorker) -> Result<()> {
    let mut ws = tokio_tungstenite::accept_async(tcp).await.context("fake ComfyUI websocket upgrade")?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    worker.sockets.lock().unwrap_or_else(PoisonError::into_inner).push(tx);
    let status = json!({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "bench"}});
    ws.send(Message::text(status.to_string())).await?;
    loop {
        tokio::select! {
            frame = rx.recv() => match frame {
                Some(f) => ws.send(Message::text(f)).await?,
                None => return Ok(()),
            },
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Ok(()),
                Some(Ok(_)) => {}
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The gateway

/// The gateway child; stopped with SIGTERM (by pid) when dropped, `kill_on_drop` as backstop.
struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(pid) = self.0.id() {
            let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(self.0.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn gateway_config(templates: &Path, workers: &[String], max_concurrent: u32) -> String {
    let workers: Vec<Value> = workers
        .iter()
        .enumerate()
        .map(|(i, url)| json!({"name": format!("w{i}"), "url": url, "maxConcurrent": max_concurrent}))
        .collect();
    json!({"comfy": {"templatesDir": templates, "workers": workers}}).to_string()
}

// ---------------------------------------------------------------------------------------------
// The driver

/// A `comfy.job` event or `res` the driver cares about.
enum Seen {
    /// `comfy.run` answered: request id → job id.
    Queued {
        req: u64,
        job: String,
    },
    /// A job reached `completed`.
    Completed {
        job: String,
        prompt: String,
        at: Instant,
    },
    Other,
}

fn parse(text: &str) -> Result<Seen> {
    let v: Value = serde_json::from_str(text).context("frame is not JSON")?;
    match v.get("type").and_then(Value::as_str) {
        Some("res") => {
            let req =
                v.get("id").and_then(Value::as_str).and_then(|s| s.strip_prefix('r')).and_then(|s| s.parse().ok());
            let Some(req) = req else { return Ok(Seen::Other) };
            if v.get("ok").and_then(Value::as_bool) != Some(true) {
                bail!("comfy.run refused: {}", v.get("error").cloned().unwrap_or_default());
            }
            let job =
                v.pointer("/payload/jobId").and_then(Value::as_str).context("comfy.run answered without jobId")?;
            Ok(Seen::Queued { req, job: job.to_owned() })
        }
        Some("event") if v.get("event").and_then(Value::as_str) == Some("comfy.job") => {
            let p = v.get("payload").cloned().unwrap_or_default();
            if p.get("status").and_then(Value::as_str) != Some("completed") {
                return Ok(Seen::Other);
            }
            let field = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
            Ok(Seen::Completed { job: field("jobId"), prompt: field("promptId"), at: Instant::now() })
        }
        _ => Ok(Seen::Other),
    }
}

fn run_frame(req: u64) -> String {
    json!({"type": "req", "id": format!("r{req}"), "method": "comfy.run",
           "params": {"templateId": "invert", "inputs": {"color": req % 16_777_216, "width": 1, "height": 1}}})
    .to_string()
}

struct Driver {
    ws: Ws,
    arrivals: Arc<Arrivals>,
    op_timeout: Duration,
    next_req: u64,
}

/// One job's timeline.
struct Done {
    sent: Instant,
    arrival: Arrival,
    completed: Instant,
}

impl Driver {
    async fn next(&mut self) -> Result<Seen> {
        let Some(text) = conn::next_text(&mut self.ws, self.op_timeout).await? else {
            bail!("the gateway closed the connection");
        };
        parse(&text)
    }

    async fn send_run(&mut self) -> Result<(u64, Instant)> {
        let req = self.next_req;
        self.next_req += 1;
        let at = Instant::now();
        self.ws.send(Message::text(run_frame(req))).await.context("sending comfy.run")?;
        Ok((req, at))
    }

    /// Sends `n` jobs (all at once) and waits until each one completed; `done` counts them.
    async fn run(&mut self, n: u64, done: Option<&AtomicU64>) -> Result<Vec<Done>> {
        let mut sent_at: HashMap<u64, Instant> = HashMap::with_capacity(n as usize);
        for _ in 0..n {
            let (req, at) = self.send_run().await?;
            sent_at.insert(req, at);
        }
        self.collect(sent_at, done).await
    }

    async fn collect(&mut self, mut sent_at: HashMap<u64, Instant>, done: Option<&AtomicU64>) -> Result<Vec<Done>> {
        let n = sent_at.len();
        let mut by_job: HashMap<String, Instant> = HashMap::with_capacity(n);
        // A `completed` event can outrun its `res` only in theory; keep it until the res comes.
        let mut early: HashMap<String, (String, Instant)> = HashMap::new();
        let mut out = Vec::with_capacity(n);
        let arrivals = self.arrivals.clone();
        let finish = |sent: Instant, prompt: &str, at: Instant| -> Result<Done> {
            let arrival = arrivals.get(prompt).with_context(|| format!("no fake saw prompt {prompt:?}"))?;
            Ok(Done { sent, arrival, completed: at })
        };
        // Bounded: each iteration reads one frame, and a silent gateway times out.
        while out.len() < n {
            match self.next().await? {
                Seen::Queued { req, job } => {
                    let Some(sent) = sent_at.remove(&req) else { continue };
                    match early.remove(&job) {
                        Some((prompt, at)) => out.push(finish(sent, &prompt, at)?),
                        None => {
                            by_job.insert(job, sent);
                        }
                    }
                }
                Seen::Completed { job, prompt, at } => match by_job.remove(&job) {
                    Some(sent) => {
                        out.push(finish(sent, &prompt, at)?);
                        if let Some(d) = done {
                            d.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    None => {
                        early.insert(job, (prompt, at));
                    }
                },
                Seen::Other => {}
            }
        }
        Ok(out)
    }
}

pub async fn run(args: ComfyArgs) -> Result<()> {
    let n_workers = args.workers.max(1);
    let jobs = args.jobs.max(1);
    let templates = std::fs::canonicalize(&args.templates_dir)
        .with_context(|| format!("--templates-dir {}", args.templates_dir.display()))?;

    let arrivals = Arc::new(Arrivals::default());
    let mut urls = Vec::new();
    let mut servers = Vec::new();
    for index in 0..n_workers {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        urls.push(format!("http://{}", listener.local_addr()?));
        let worker = Arc::new(FakeWorker {
            index,
            arrivals: arrivals.clone(),
            next: AtomicU64::new(1),
            history: Mutex::new(HashMap::new()),
            sockets: Mutex::new(Vec::new()),
        });
        servers.push(tokio::spawn(serve_worker(listener, worker)));
    }

    let state = tempfile::Builder::new().prefix("clawgate-bench-comfy.").tempdir()?;
    let config = state.path().join("clawgate.json5");
    std::fs::write(&config, gateway_config(&templates, &urls, args.max_concurrent))?;
    let (log, err) = (state.path().join("gateway.log"), state.path().join("gateway.err"));
    let port = free_port()?;
    let mut cmd = match &args.gateway_cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpus).arg(&args.gateway_bin);
            c
        }
        None => Command::new(&args.gateway_bin),
    };
    cmd.arg("gateway")
        .args(["--port", &port.to_string(), "--token", GATEWAY_TOKEN])
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(state.path().join("state"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::fs::File::create(&err)?)
        .kill_on_drop(true);
    let child = cmd.spawn().with_context(|| format!("starting {}", args.gateway_bin.display()))?;
    let pid = child.id().context("gateway pid")?;
    let mut gateway = Gateway(child);
    eprintln!(
        "comfy: gateway {} (pid {pid}) on port {port}, {n_workers} fake workers, state {}",
        args.gateway_bin.display(),
        state.path().display()
    );

    let target = Target::parse(&format!("ws://127.0.0.1:{port}"))?;
    let op_timeout = Duration::from_millis(args.timeout_ms.max(1));
    let connect = conn::connect_frame("c1", GATEWAY_TOKEN, &["operator.read", "operator.write"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let ws = loop {
        match conn::connect(&target, &connect, Duration::from_secs(5)).await {
            Ok((ws, _)) => break ws,
            Err(e) => {
                if let Some(status) = gateway.0.try_wait()? {
                    bail!("the gateway exited ({status}):\n{}\n{}", log_tail(&log), log_tail(&err));
                }
                if Instant::now() > deadline {
                    return Err(e.context("the gateway did not accept a connection within 60 s"));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let mut driver = Driver { ws, arrivals: arrivals.clone(), op_timeout, next_req: 0 };

    let work = async {
        eprintln!("comfy: {} jobs one at a time", args.probe_jobs);
        let mut probe = Vec::new();
        for _ in 0..args.probe_jobs {
            probe.extend(driver.run(1, None).await.context("unloaded jobs")?);
        }
        eprintln!("comfy: {jobs} jobs queued at once over {n_workers} workers");
        let probe_arrivals = arrivals.all().len();
        let before = maybe_sample(Some(pid))?;
        let peak = Arc::new(AtomicU64::new(before.as_ref().map_or(0, |s| s.rss_tree_kb)));
        let sampler = {
            let peak = peak.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                loop {
                    tick.tick().await;
                    let rss: u64 = procfs::tree(pid).into_iter().filter_map(|p| procfs::rss_kb(p).ok()).sum();
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
            })
        };
        let progress = Progress::start("jobs", jobs);
        let cpu0 = client_cpu();
        let t0 = Instant::now();
        let burst = driver.run(jobs, Some(&progress.done)).await?;
        let wall = t0.elapsed();
        let client_cpu_s = client_cpu() - cpu0;
        drop(progress);
        sampler.abort();
        let after = maybe_sample(Some(pid))?;
        Ok::<_, anyhow::Error>((
            probe,
            probe_arrivals,
            burst,
            wall,
            before,
            after,
            peak.load(Ordering::Relaxed),
            client_cpu_s,
        ))
    };
    let result = tokio::select! {
        r = work => r,
        e = super::memory_guard(Some(pid), args.max_server_rss_mb) => Err(e),
    };
    let (probe, probe_arrivals, burst, wall, before, after, peak_kb, client_cpu_s) =
        result.map_err(|e| e.context(format!("gateway log tail:\n{}\n{}", log_tail(&log), log_tail(&err))))?;

    let ns = |d: Duration| d.as_nanos() as u64;
    let to_post = Summary::new(probe.iter().map(|d| ns(d.arrival.at.saturating_duration_since(d.sent))).collect());
    let to_done = Summary::new(probe.iter().map(|d| ns(d.completed.saturating_duration_since(d.arrival.at))).collect());
    let burst_done =
        Summary::new(burst.iter().map(|d| ns(d.completed.saturating_duration_since(d.arrival.at))).collect());
    let mut per_worker: Vec<Vec<Instant>> = vec![Vec::new(); n_workers];
    for d in &burst {
        per_worker[d.arrival.worker].push(d.arrival.at);
    }
    let mut gaps = Vec::new();
    for w in &mut per_worker {
        w.sort();
        gaps.extend(w.windows(2).map(|p| ns(p[1] - p[0])));
    }
    let cycle = Summary::new(gaps);
    let spread: Vec<u64> = per_worker.iter().map(|w| w.len() as u64).collect();
    let rate = burst.len() as f64 / wall.as_secs_f64().max(1e-9);
    // Every prompt the fakes saw belongs to exactly one job: none was dispatched twice.
    let extra_prompts = arrivals.all().len() - probe_arrivals - burst.len();

    let mut r = Report::new("comfy", &args.label, &args.run_id);
    r.param("workers", n_workers as u64)
        .param("max_concurrent", args.max_concurrent)
        .param("jobs", jobs)
        .param("probe_jobs", args.probe_jobs)
        .param("gateway", args.gateway_bin.display().to_string());
    r.figure("completed", burst.len() as u64)
        .figure("wall_s", round3(wall.as_secs_f64()))
        .figure("jobs_per_s", round3(rate))
        .figure("per_worker", json!(spread))
        .figure("extra_prompts", extra_prompts as u64)
        .figure("unloaded_run_to_post", to_post.to_json())
        .figure("unloaded_post_to_completed", to_done.to_json())
        .figure("burst_post_to_completed", burst_done.to_json())
        .figure("burst_worker_cycle", cycle.to_json());
    r.line(format!(
        "{} jobs in {:.2} s: {rate:.1} jobs/s over {n_workers} workers (per worker {spread:?}; {extra_prompts} extra prompts)",
        burst.len(),
        wall.as_secs_f64()
    ))
    .line(format!("unloaded comfy.run → POST /prompt: {}", to_post.human()))
    .line(format!("unloaded POST /prompt → completed event: {}", to_done.human()))
    .line(format!("burst POST /prompt → completed event: {}", burst_done.human()))
    .line(format!("burst POST → next POST on the same worker (per-job cycle): {}", cycle.human()));
    if let (Some(b), Some(a)) = (&before, &after) {
        r.figure("rss", json!({"before_kb": b.rss_tree_kb, "peak_kb": peak_kb, "after_kb": a.rss_tree_kb}));
        r.line(format!(
            "gateway RSS: {:.1} MB before the burst, peak {:.1} MB, {:.1} MB after",
            b.rss_tree_kb as f64 / 1024.0,
            peak_kb as f64 / 1024.0,
            a.rss_tree_kb as f64 / 1024.0
        ));
    }
    r.cpu(before.as_ref(), after.as_ref(), burst.len() as u64, "job", wall, client_cpu_s);
    r.emit(args.json);
    for s in servers {
        s.abort();
    }
    drop(gateway);
    if args.keep_state {
        eprintln!("comfy: kept {}", state.keep().display());
    }
    if extra_prompts > 0 {
        bail!("{extra_prompts} prompts reached the workers more than once");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_prompt_is_finished_on_arrival_and_recorded() {
        let arrivals = Arc::new(Arrivals::default());
        let w = FakeWorker {
            index: 2,
            arrivals: arrivals.clone(),
            next: AtomicU64::new(1),
            history: Mutex::new(HashMap::new()),
            sockets: Mutex::new(Vec::new()),
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        w.sockets.lock().unwrap().push(tx);
        let (status, _, body) = w.answer("POST", "/prompt", br#"{"prompt":{},"client_id":"c"}"#);
        assert_eq!(status, 200);
        let res: Value = serde_json::from_slice(&body).unwrap();
        let id = res["prompt_id"].as_str().unwrap().to_owned();
        assert_eq!(arrivals.get(&id).map(|a| a.worker), Some(2));
        let (_, _, hist) = w.answer("GET", &format!("/history/{id}"), b"");
        let hist: Value = serde_json::from_slice(&hist).unwrap();
        assert_eq!(hist[&id]["status"]["status_str"], "success");
        assert_eq!(hist[&id]["outputs"]["3"]["images"][0]["type"], "output");
        let (_, _, none) = w.answer("GET", "/history/nope", b"");
        assert_eq!(none, b"{}");
        let mut last = String::new();
        while let Ok(f) = rx.try_recv() {
            last = f;
        }
        let last: Value = serde_json::from_str(&last).unwrap();
        assert_eq!((last["type"].as_str(), last["data"]["node"].is_null()), (Some("executing"), true));
    }

    #[test]
    fn res_and_completed_events_are_told_apart() {
        let res = r#"{"type":"res","id":"r7","ok":true,"payload":{"jobId":"job_1","status":"queued"}}"#;
        assert!(matches!(parse(res).unwrap(), Seen::Queued { req: 7, job } if job == "job_1"));
        let ev = r#"{"type":"event","event":"comfy.job","payload":{"jobId":"job_1","status":"completed","promptId":"w0-1"}}"#;
        assert!(
            matches!(parse(ev).unwrap(), Seen::Completed { job, prompt, .. } if job == "job_1" && prompt == "w0-1")
        );
        let running = r#"{"type":"event","event":"comfy.job","payload":{"jobId":"job_1","status":"running"}}"#;
        assert!(matches!(parse(running).unwrap(), Seen::Other));
        assert!(parse(r#"{"type":"res","id":"r1","ok":false,"error":{"code":"INVALID_REQUEST"}}"#).is_err());
    }
}
