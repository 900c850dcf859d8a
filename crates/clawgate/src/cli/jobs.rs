//! `clawgate jobs list|show|cancel` and `clawgate workers`: the ComfyUI job queue and its
//! workers, through `comfy.jobs.*` and `comfy.workers.list`.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use clawgate_client::ClientError;
use clawgate_protocol::methods::names;

use super::conn::{self, ConnArgs};
use super::output;

/// ComfyUI jobs: list, show, cancel.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawgate jobs list                          # newest first
  clawgate jobs list --status queued --status running
  clawgate jobs show job_3f2a…                # inputs, progress, outputs and their links
  clawgate jobs cancel job_3f2a…
  clawgate jobs list --json | jq '.jobs[].id'")]
pub struct JobsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: JobsCommand,
}

/// `clawgate jobs` subcommands.
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Jobs, newest first: id, status, template, worker, attempts, age.
    #[command(after_help = "Examples:
  clawgate jobs list
  clawgate jobs list --status awaiting_approval
  clawgate jobs list --limit 5 --json")]
    List(ListArgs),
    /// One job in full.
    #[command(after_help = "Example:
  clawgate jobs show job_3f2a9c0d1e2b4a5f8e7d6c5b4a392817")]
    Show(IdArgs),
    /// Cancel a job: a queued one never starts, a running one is interrupted on its worker.
    #[command(after_help = "Example:
  clawgate jobs cancel job_3f2a9c0d1e2b4a5f8e7d6c5b4a392817")]
    Cancel(IdArgs),
}

/// `jobs list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only jobs in this status (awaiting_approval, queued, dispatched, running, completed,
    /// failed, cancelled); repeat for several
    #[arg(long)]
    pub status: Vec<String>,
    /// At most this many jobs
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Print the gateway's answer as one compact JSON line
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `jobs show` / `jobs cancel`.
#[derive(Debug, Args)]
pub struct IdArgs {
    /// The job id
    pub job_id: String,
    /// Print the gateway's answer as one compact JSON line
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// ComfyUI workers: health, load, last error.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawgate workers
  clawgate workers --json | jq '.workers[] | select(.healthy | not)'")]
pub struct WorkersArgs {
    /// Print the gateway's answer as one compact JSON line
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Run `clawgate jobs …`.
pub async fn run_jobs(args: JobsArgs) -> anyhow::Result<i32> {
    match args.command {
        JobsCommand::List(a) => {
            let mut params = json!({"limit": a.limit});
            if !a.status.is_empty() {
                params["status"] = json!(a.status);
            }
            call_and_print(&a.conn, names::COMFY_JOBS_LIST, params, a.json, render_list).await
        }
        JobsCommand::Show(a) => {
            call_and_print(&a.conn, names::COMFY_JOBS_GET, json!({"jobId": a.job_id}), a.json, render_job).await
        }
        JobsCommand::Cancel(a) => {
            call_and_print(&a.conn, names::COMFY_JOBS_CANCEL, json!({"jobId": a.job_id}), a.json, render_cancel).await
        }
    }
}

/// Run `clawgate workers`.
pub async fn run_workers(args: WorkersArgs) -> anyhow::Result<i32> {
    call_and_print(&args.conn, names::COMFY_WORKERS_LIST, json!({}), args.json, render_workers).await
}

/// Call one method; print its answer as JSON or through `render`. A gateway error is printed
/// (exit 1), a transport failure is an `Err`.
async fn call_and_print(
    conn_args: &ConnArgs,
    method: &str,
    params: Value,
    as_json: bool,
    render: fn(&Value) -> String,
) -> anyhow::Result<i32> {
    let client = conn::connect_default(conn_args).await?;
    let result = client.request(method, params).await;
    client.close().await;
    match result {
        Ok(payload) if as_json => {
            output::print_json(&payload, true);
            Ok(0)
        }
        Ok(payload) => {
            print!("{}", render(&payload));
            Ok(0)
        }
        Err(ClientError::Rpc(error)) => {
            output::print_error(&error, as_json);
            Ok(1)
        }
        Err(e) => Err(anyhow::anyhow!("{method} failed: {e}")),
    }
}

fn cell(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) if s.is_empty() => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn render_list(payload: &Value) -> String {
    let jobs = payload.get("jobs").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    if jobs.is_empty() {
        return "No jobs.\n".to_owned();
    }
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            vec![
                cell(j, "id"),
                cell(j, "status"),
                cell(j, "template"),
                cell(j, "worker"),
                cell(j, "attempts"),
                output::age(j.get("createdAt").and_then(Value::as_i64)),
                cell(j, "error"),
            ]
        })
        .collect();
    let mut out = format!("Jobs ({}):\n", jobs.len());
    out.push_str(&output::table(&["ID", "STATUS", "TEMPLATE", "WORKER", "ATTEMPTS", "AGE", "ERROR"], &rows));
    out.push('\n');
    out
}

fn render_job(payload: &Value) -> String {
    let j = payload.get("job").unwrap_or(&Value::Null);
    let position = match j.get("position") {
        Some(p) if p.is_object() => format!("{} of {}", cell(p, "position"), cell(p, "total")),
        _ => "-".to_owned(),
    };
    let progress = match j.get("progress") {
        Some(p) if p.is_object() => format!("{}/{}", cell(p, "value"), cell(p, "max")),
        _ => "-".to_owned(),
    };
    let inputs = j.get("inputs").filter(|v| !v.is_null()).map_or("-".to_owned(), Value::to_string);
    let fields = [
        ("Job", cell(j, "id")),
        ("Status", cell(j, "status")),
        ("Template", cell(j, "template")),
        ("Inputs", inputs),
        ("Worker", cell(j, "worker")),
        ("Prompt", cell(j, "promptId")),
        ("Queue", position),
        ("Progress", progress),
        ("Attempts", cell(j, "attempts")),
        ("Error", cell(j, "error")),
        ("Created", output::age(j.get("createdAt").and_then(Value::as_i64)) + " ago"),
    ];
    let mut out = String::new();
    for (k, v) in fields {
        out.push_str(&format!("{:<10}{v}\n", format!("{k}:")));
    }
    let outputs = j.get("outputs").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    if !outputs.is_empty() {
        out.push_str(&format!("Outputs ({}):\n", outputs.len()));
        let rows: Vec<Vec<String>> =
            outputs.iter().map(|o| vec![cell(o, "filename"), cell(o, "bytes"), cell(o, "mediaUrl")]).collect();
        out.push_str(&output::table(&["FILE", "BYTES", "URL"], &rows));
        out.push('\n');
    }
    out
}

fn render_cancel(payload: &Value) -> String {
    let id = cell(payload, "jobId");
    if payload.get("cancelled").and_then(Value::as_bool) == Some(true) {
        format!("Cancelled job {id}.\n")
    } else {
        format!("Job {id} had already ended ({}); nothing to cancel.\n", cell(payload, "status"))
    }
}

fn render_workers(payload: &Value) -> String {
    let workers = payload.get("workers").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    if workers.is_empty() {
        return "No ComfyUI workers are configured or joined (add comfy.workers to the config, or run \
                `clawgate worker` next to a ComfyUI with one of comfy.workerTokens).\n"
            .to_owned();
    }
    let rows: Vec<Vec<String>> = workers
        .iter()
        .map(|w| {
            let health = if w.get("healthy").and_then(Value::as_bool) == Some(true) { "up" } else { "down" };
            let heartbeat = match w.get("lastHeartbeat").and_then(Value::as_i64) {
                Some(ts) if ts > 0 => output::age(Some(ts)) + " ago",
                _ => "-".to_owned(),
            };
            vec![
                cell(w, "name"),
                w.get("kind").and_then(Value::as_str).unwrap_or("configured").to_owned(),
                cell(w, "url"),
                health.to_owned(),
                format!("{}/{}", cell(w, "running"), cell(w, "maxConcurrent")),
                cell(w, "queueRemaining"),
                cell(w, "weight"),
                heartbeat,
                cell(w, "lastError"),
            ]
        })
        .collect();
    let mut out = format!("Workers ({}):\n", workers.len());
    out.push_str(&output::table(
        &["NAME", "KIND", "URL", "HEALTH", "RUNNING", "QUEUE", "WEIGHT", "HEARTBEAT", "LAST ERROR"],
        &rows,
    ));
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_is_a_table_of_jobs() {
        let payload = json!({"jobs": [
            {"id": "job_a", "status": "completed", "template": "invert", "worker": "w0", "attempts": 1,
             "createdAt": 0, "error": null},
            {"id": "job_b", "status": "failed", "template": "invert", "worker": null, "attempts": 3,
             "createdAt": 0, "error": "boom"}
        ]});
        let expected = "\
Jobs (2):
ID     STATUS     TEMPLATE  WORKER  ATTEMPTS  AGE  ERROR
job_a  completed  invert    w0      1         -    -
job_b  failed     invert    -       3         -    boom
";
        assert_eq!(render_list(&payload), expected);
        assert_eq!(render_list(&json!({"jobs": []})), "No jobs.\n");
    }

    #[test]
    fn show_lists_fields_and_outputs() {
        let payload = json!({"job": {"id": "job_a", "status": "queued", "template": "invert",
            "inputs": {"color": "255"}, "position": {"position": 2, "total": 3}, "attempts": 0,
            "outputs": [{"filename": "o.png", "bytes": 90, "mediaUrl": "/media/t"}]}});
        let text = render_job(&payload);
        assert!(text.contains("Status:   queued\n"), "{text}");
        assert!(text.contains("Queue:    2 of 3\n"), "{text}");
        assert!(text.contains("Inputs:   {\"color\":\"255\"}\n"), "{text}");
        assert!(text.contains("o.png  90     /media/t"), "{text}");
    }

    #[test]
    fn workers_show_health_and_load() {
        let payload = json!({"workers": [{"name": "w0", "kind": "configured", "url": "http://h:8188", "healthy": false,
            "running": 0, "maxConcurrent": 2, "queueRemaining": null, "weight": 1.0, "lastError": "refused",
            "lastHeartbeat": null},
            {"name": "gpu1", "kind": "joined", "url": "-", "healthy": true, "running": 1, "maxConcurrent": 1,
             "queueRemaining": 1, "weight": 1.0, "lastError": null, "lastHeartbeat": 0}]});
        let expected = "\
Workers (2):
NAME  KIND        URL            HEALTH  RUNNING  QUEUE  WEIGHT  HEARTBEAT  LAST ERROR
w0    configured  http://h:8188  down    0/2      -      1.0     -          refused
gpu1  joined      -              up      1/1      1      1.0     -          -
";
        assert_eq!(render_workers(&payload), expected);
        assert_eq!(render_cancel(&json!({"jobId": "j", "cancelled": true})), "Cancelled job j.\n");
    }
}
