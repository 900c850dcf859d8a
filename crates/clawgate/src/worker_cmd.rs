//! `clawgate worker`: run next to a ComfyUI server and join a gateway by yourself.
//!
//! The worker connects *out* to the gateway's WebSocket with a worker token (one of the
//! gateway's `comfy.workerTokens`), so a GPU box behind NAT needs no inbound port. It announces
//! itself (`comfy.worker.join`: name, ComfyUI version, capacity), heartbeats with how its ComfyUI
//! answers, and long-polls for jobs (`comfy.worker.pull`) whenever it has room. Each job runs on
//! the local ComfyUI through the native client: `POST /prompt` (tagged `<job>-<attempt>`),
//! progress over ComfyUI's WebSocket forwarded as `comfy.worker.progress`, outputs fetched from
//! `/view` and uploaded in bounded base64 chunks (`comfy.worker.output`), then
//! `comfy.worker.done`.
//!
//! When the connection drops, the worker interrupts what it was running (the gateway has
//! requeued those jobs already) and reconnects with backoff. A refused token or name is final:
//! the worker exits with status 2 and says why.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use clap::Args;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use clawgate_backoff::Backoff;
use clawgate_client::{Client, ClientError, ClientOptions};
use clawgate_comfy::client::{ComfyClient, ComfyEvent, JobStatus};
use clawgate_protocol::methods::comfy_worker::{
    MAX_OUTPUT_CHUNK, WorkerDoneParams, WorkerJob, WorkerJoinResult, WorkerProgressResult, WorkerPullResult,
};
use clawgate_protocol::methods::names;

/// How long a job may run on the local ComfyUI.
const JOB_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// How long a heartbeat's look at the local ComfyUI may take.
const COMFY_LOOK: Duration = Duration::from_secs(3);

/// How long one pull waits for a job at the gateway.
const PULL_WAIT: Duration = Duration::from_secs(20);

/// Reconnect waits: from half a second, doubling, up to 30 s.
const RECONNECT: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));

/// A connection that lasted this long starts the next reconnect from the shortest wait again.
const STABLE: Duration = Duration::from_secs(30);

/// Run a ComfyUI worker that joins a gateway by itself.
#[derive(Debug, Args)]
#[command(after_help = "Example (on the GPU box, next to ComfyUI):
  clawgate worker --gateway wss://gateway.example.net --token \"$CLAWGATE_WORKER_TOKEN\" \\
      --comfy http://127.0.0.1:8188 --name gpu1 --capacity 1

The token is one of the gateway's comfy.workerTokens. The worker connects out (no inbound port),
takes jobs while it has room, and reconnects by itself; `clawgate workers` on the gateway lists it.")]
pub struct WorkerArgs {
    /// The gateway's WebSocket URL
    #[arg(long, env = "CLAWGATE_GATEWAY_URL", default_value = "ws://127.0.0.1:18789")]
    pub gateway: String,
    /// A worker token: one of the gateway's comfy.workerTokens
    #[arg(long, env = "CLAWGATE_WORKER_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The local ComfyUI's base URL
    #[arg(long, default_value = "http://127.0.0.1:8188")]
    pub comfy: String,
    /// This worker's name among the gateway's workers (letters, digits, '-', '_', '.')
    #[arg(long)]
    pub name: String,
    /// Jobs run at once
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub capacity: u16,
}

/// Why a connection ended.
enum End {
    /// Try again after a while (network, gateway restart).
    Retry(String),
    /// Trying again cannot help (token or name refused).
    Fatal(String),
}

/// Progress and log lines on stderr: `info` unless `CLAWGATE_LOG` says otherwise.
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_env("CLAWGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .try_init();
}

/// Run `clawgate worker`: join, take jobs, reconnect when the connection drops, until Ctrl-C.
pub async fn run(args: WorkerArgs) -> anyhow::Result<i32> {
    let comfy = ComfyClient::new(&args.comfy, format!("clawgate-worker-{}", args.name))
        .map_err(|e| anyhow::anyhow!("--comfy {}: {e}", args.comfy))?;
    let mut attempt = 0u32;
    loop {
        let began = Instant::now();
        let end = tokio::select! {
            end = session(&args, &comfy) => end,
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("stopping");
                return Ok(0);
            }
        };
        match end {
            End::Fatal(why) => {
                tracing::error!("{why}");
                eprintln!("clawgate worker: {why}");
                return Ok(2);
            }
            End::Retry(why) => {
                if began.elapsed() > STABLE {
                    attempt = 0;
                }
                let wait = RECONNECT.delay(attempt);
                attempt = attempt.saturating_add(1);
                tracing::warn!(gateway = %args.gateway, error = %why, retry_in_ms = wait.as_millis() as u64,
                    "not connected to the gateway; retrying");
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = tokio::signal::ctrl_c() => return Ok(0),
                }
            }
        }
    }
}

/// Whether a refused connect is about the credentials (final) rather than the moment.
fn refused_for_good(e: &ClientError) -> bool {
    match e {
        ClientError::Handshake { error, .. } => {
            !matches!(error.detail_code(), Some(code) if code.contains("RATE_LIMIT")) && error.code != "UNAVAILABLE"
        }
        ClientError::InvalidUrl(_) => true,
        _ => false,
    }
}

/// One connection: join, heartbeat, pull and run jobs until the connection ends.
async fn session(args: &WorkerArgs, comfy: &ComfyClient) -> End {
    let opts = ClientOptions::new(&args.gateway)
        .token(&args.token)
        .mode("worker")
        .request_timeout(Duration::from_secs(30))
        // A join belongs to one connection: this loop reconnects and joins again itself.
        .reconnect(clawgate_client::ReconnectPolicy::never());
    let client = match Client::connect(opts).await {
        Ok(c) => Arc::new(c),
        Err(e) if refused_for_good(&e) => return End::Fatal(format!("the gateway refused this worker: {e}")),
        Err(e) => return End::Retry(e.to_string()),
    };
    let comfy_version = comfy
        .system_stats()
        .await
        .ok()
        .and_then(|s| s.pointer("/system/comfyui_version").and_then(Value::as_str).map(str::to_owned));
    let mut join = json!({"name": args.name, "capacity": args.capacity});
    if let Some(v) = &comfy_version {
        join["comfyVersion"] = json!(v);
    }
    let joined: WorkerJoinResult = match client.request(names::COMFY_WORKER_JOIN, join).await {
        Ok(v) => match serde_json::from_value(v) {
            Ok(j) => j,
            Err(e) => return End::Retry(format!("unexpected join answer: {e}")),
        },
        // Not ready (ComfyUI starting, storage busy): later. Anything else is about this worker.
        Err(ClientError::Rpc(e)) if e.code == "UNAVAILABLE" => return End::Retry(e.message.clone()),
        Err(ClientError::Rpc(e)) => {
            return End::Fatal(format!("the gateway refused to let {} join: {}", args.name, e.message));
        }
        Err(e) => return End::Retry(e.to_string()),
    };
    tracing::info!(gateway = %args.gateway, name = %joined.name, capacity = args.capacity, rejoined = joined.replaced,
        comfy = %args.comfy, comfy_version = comfy_version.as_deref().unwrap_or("unknown"), "joined the gateway");

    let running: Running = Arc::default();
    let mut tasks = JoinSet::new();
    tasks.spawn(heartbeat(client.clone(), comfy.clone(), Duration::from_millis(joined.heartbeat_ms.max(1_000))));
    let slots = Arc::new(Semaphore::new(usize::from(args.capacity)));
    let end = loop {
        while tasks.try_join_next().is_some() {}
        // A connection that ends is noticed at once, whatever the worker is waiting for.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p,
            info = client.closed() => break End::Retry(format!("connection closed ({info})")),
        };
        let Ok(permit) = permit else { break End::Retry("stopped".into()) };
        let wait = u64::try_from(PULL_WAIT.as_millis()).unwrap_or(20_000);
        let pulled = tokio::select! {
            r = client.request_with_timeout(names::COMFY_WORKER_PULL, json!({"waitMs": wait}), PULL_WAIT * 2) => r,
            info = client.closed() => break End::Retry(format!("connection closed ({info})")),
        };
        match pulled {
            Ok(v) => match serde_json::from_value::<WorkerPullResult>(v) {
                Ok(WorkerPullResult { job: Some(job) }) => {
                    tracing::info!(job = %job.job_id, attempt = job.attempt, "took a job");
                    let (client, comfy, running) = (client.clone(), comfy.clone(), running.clone());
                    tasks.spawn(async move {
                        run_job(&client, &comfy, &running, job).await;
                        drop(permit);
                    });
                }
                Ok(WorkerPullResult { job: None }) => {}
                Err(e) => break End::Retry(format!("unexpected pull answer: {e}")),
            },
            Err(ClientError::Timeout { .. }) => {}
            Err(e) => break End::Retry(e.to_string()),
        }
    };
    // The gateway requeued what this connection ran: free the GPU of it.
    tasks.abort_all();
    let prompts: Vec<String> = running.lock().unwrap_or_else(|e| e.into_inner()).drain().collect();
    for prompt in prompts {
        tracing::info!(prompt = %prompt, "connection lost: interrupting the prompt (the gateway requeued its job)");
        let _ = comfy.cancel_pending(&prompt).await;
        let _ = comfy.interrupt_prompt(&prompt).await;
    }
    end
}

/// Prompts running on the local ComfyUI for this connection.
type Running = Arc<Mutex<HashSet<String>>>;

/// Tell the gateway every `every` that this worker lives, and how its ComfyUI answers.
async fn heartbeat(client: Arc<Client>, comfy: ComfyClient, every: Duration) {
    let mut was_ok = true;
    loop {
        tokio::time::sleep(every).await;
        // Bounded: a stalled ComfyUI must not delay the heartbeat past the gateway's patience.
        let looked = match tokio::time::timeout(COMFY_LOOK, comfy.queue()).await {
            Ok(Ok(q)) => Ok(q),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("ComfyUI did not answer within {} s", COMFY_LOOK.as_secs())),
        };
        let params = match looked {
            Ok(q) => {
                if !was_ok {
                    tracing::info!("ComfyUI answers again");
                }
                was_ok = true;
                json!({"queueRemaining": q.running.len() + q.pending.len()})
            }
            Err(e) => {
                if was_ok {
                    tracing::warn!(error = %e, "ComfyUI does not answer; the gateway sends no jobs until it does");
                }
                was_ok = false;
                json!({"comfyError": e})
            }
        };
        if let Err(e) = client.request(names::COMFY_WORKER_HEARTBEAT, params).await {
            tracing::debug!(error = %e, "heartbeat failed");
            if matches!(e, ClientError::Closed { .. }) {
                return;
            }
        }
    }
}

/// Report progress; `false` when the gateway says to stop (cancelled, or no longer ours).
async fn progress(client: &Client, job: &WorkerJob, extra: Value) -> bool {
    let mut params = json!({"jobId": job.job_id, "attempt": job.attempt});
    if let (Some(p), Some(extra)) = (params.as_object_mut(), extra.as_object()) {
        p.extend(extra.clone());
    }
    match client.request(names::COMFY_WORKER_PROGRESS, params).await {
        Ok(v) => serde_json::from_value::<WorkerProgressResult>(v).map(|r| r.go_on).unwrap_or(true),
        // A lost report is not a reason to stop: the job's end decides.
        Err(_) => true,
    }
}

async fn done(client: &Client, job: &WorkerJob, result: Result<(), (String, bool)>) {
    let params = match result {
        Ok(()) => WorkerDoneParams {
            job_id: job.job_id.clone(),
            attempt: job.attempt,
            ok: true,
            error: None,
            transient: false,
        },
        Err((error, transient)) => WorkerDoneParams {
            job_id: job.job_id.clone(),
            attempt: job.attempt,
            ok: false,
            error: Some(error),
            transient,
        },
    };
    let ok = params.ok;
    match client.request(names::COMFY_WORKER_DONE, serde_json::to_value(&params).unwrap_or_default()).await {
        Ok(v) if v.get("accepted").and_then(Value::as_bool) == Some(true) => {
            tracing::info!(job = %job.job_id, attempt = job.attempt, ok, "job done");
        }
        Ok(_) => {
            tracing::warn!(job = %job.job_id, attempt = job.attempt, "the gateway no longer counts this job as ours")
        }
        Err(e) => tracing::warn!(job = %job.job_id, error = %e, "could not report the job's end"),
    }
}

/// Run one job on the local ComfyUI and report it to the end.
async fn run_job(client: &Client, comfy: &ComfyClient, running: &Running, job: WorkerJob) {
    let prompt = match comfy.submit_tagged(&job.workflow, &job.tag).await {
        Ok(s) => s.prompt_id,
        Err(e) => {
            tracing::warn!(job = %job.job_id, error = %e, "ComfyUI did not take the prompt");
            return done(client, &job, Err((e.to_string(), e.is_transient()))).await;
        }
    };
    running.lock().unwrap_or_else(|e| e.into_inner()).insert(prompt.clone());
    let result = follow(client, comfy, &job, &prompt).await;
    running.lock().unwrap_or_else(|e| e.into_inner()).remove(&prompt);
    match result {
        Some(result) => done(client, &job, result).await,
        None => {
            tracing::info!(job = %job.job_id, "the gateway took the job back; interrupting it");
            let _ = comfy.cancel_pending(&prompt).await;
            let _ = comfy.interrupt_prompt(&prompt).await;
        }
    }
}

/// Follow the prompt to its end, forwarding progress and uploading outputs. `None` when the
/// gateway said to stop.
async fn follow(
    client: &Client,
    comfy: &ComfyClient,
    job: &WorkerJob,
    prompt: &str,
) -> Option<Result<(), (String, bool)>> {
    if !progress(client, job, json!({"promptId": prompt})).await {
        return None;
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let wait = comfy.wait_for(prompt, JOB_TIMEOUT, move |ev| {
        if let ComfyEvent::Progress { value, max, .. } = ev {
            let _ = tx.send((*value, *max));
        }
    });
    tokio::pin!(wait);
    let entry = loop {
        tokio::select! {
            entry = &mut wait => break entry,
            Some((value, max)) = rx.recv() => {
                if !progress(client, job, json!({"value": value, "max": max})).await {
                    return None;
                }
            }
        }
    };
    let entry = match entry {
        Ok(entry) => entry,
        Err(e) => return Some(Err((e.to_string(), e.is_transient()))),
    };
    match entry.status {
        JobStatus::Completed => {}
        JobStatus::Failed { message, .. } => return Some(Err((message, false))),
        JobStatus::Interrupted => return Some(Err(("the prompt was interrupted on the worker".into(), false))),
        JobStatus::Other { status_str } => {
            return Some(Err((format!("ComfyUI ended the job with status {status_str:?}"), false)));
        }
    }
    for file in entry.outputs.iter().filter(|f| f.kind == "output") {
        match comfy.view(file).await {
            Ok(bytes) => {
                if let Err(e) = upload(client, job, &file.filename, &bytes).await {
                    tracing::warn!(job = %job.job_id, file = %file.filename, error = %e, "output not taken by the gateway");
                }
            }
            Err(e) => tracing::warn!(job = %job.job_id, file = %file.filename, error = %e, "cannot fetch an output"),
        }
    }
    Some(Ok(()))
}

/// Send one output file in chunks of at most [`MAX_OUTPUT_CHUNK`] bytes.
async fn upload(client: &Client, job: &WorkerJob, filename: &str, bytes: &[u8]) -> Result<(), ClientError> {
    let mut offset = 0usize;
    loop {
        let end = (offset + MAX_OUTPUT_CHUNK).min(bytes.len());
        let params = json!({
            "jobId": job.job_id, "attempt": job.attempt, "filename": filename, "offset": offset,
            "data": base64::engine::general_purpose::STANDARD.encode(&bytes[offset..end]), "last": end == bytes.len(),
        });
        client.request(names::COMFY_WORKER_OUTPUT, params).await?;
        if end == bytes.len() {
            return Ok(());
        }
        offset = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawgate_protocol::ErrorShape;

    #[test]
    fn a_refused_token_is_final_and_a_dropped_connection_is_not() {
        let refused = ClientError::Handshake {
            error: Box::new(ErrorShape::invalid_request("unauthorized: gateway token mismatch")),
            close_code: Some(1008),
            close_reason: None,
        };
        assert!(refused_for_good(&refused));
        assert!(!refused_for_good(&ClientError::Closed { code: Some(1012), reason: "restart".into() }));
        assert!(!refused_for_good(&ClientError::Connect(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))));
    }
}
