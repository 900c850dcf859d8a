//! The `comfy.worker.*` methods: a ComfyUI worker that joined by itself (`clawgate worker`,
//! authenticated with a worker token) announces itself, pulls jobs, reports progress, uploads
//! outputs and says when a job is done, over its own connection. The pool and the dispatcher of
//! `clawgate-comfy` do the rest ([`clawgate_comfy::joined`]): the worker is chosen like a
//! configured one, and when its socket closes or its heartbeats stop its jobs are requeued.
//!
//! Every method but `join` needs the connection to have joined; every call counts as a sign of
//! life.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::json;

use clawgate_comfy::dispatch::Dispatcher;
use clawgate_comfy::joined::{HEARTBEAT_EVERY, JobFailure, JoinRequest, ReportError};
use clawgate_comfy::pool::Worker;
use clawgate_protocol::methods::comfy_worker::{
    MAX_OUTPUT_CHUNK, MAX_PULL_WAIT_MS, WorkerDoneParams, WorkerDoneResult, WorkerHeartbeatParams,
    WorkerHeartbeatResult, WorkerJoinParams, WorkerJoinResult, WorkerOutputParams, WorkerOutputResult,
    WorkerProgressParams, WorkerProgressResult, WorkerPullParams, WorkerPullResult,
};

use super::ComfyService;
use super::host::Host;
use crate::dispatch::CallContext;
use crate::error::CoreError;
use crate::time::now_ms;

/// Longest worker name.
const MAX_NAME: usize = 64;

/// Longest error text a worker may report (longer ones are cut).
const MAX_ERROR: usize = 2_000;

fn heartbeat_ms() -> u64 {
    u64::try_from(HEARTBEAT_EVERY.as_millis()).unwrap_or(u64::MAX)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn refused(e: ReportError) -> CoreError {
    CoreError::invalid(e.to_string())
}

impl ComfyService {
    fn worker_dispatcher(&self) -> Result<Dispatcher<Host>, CoreError> {
        self.dispatcher().ok_or_else(|| {
            CoreError::Unavailable("ComfyUI is not configured on this gateway; add a comfy section".into())
        })
    }

    /// The worker that joined on the caller's connection (seen now).
    fn caller(&self, ctx: &CallContext) -> Result<Arc<Worker>, CoreError> {
        let worker = self
            .worker_dispatcher()?
            .joined()
            .by_conn(&ctx.client.conn_id)
            .ok_or_else(|| CoreError::invalid("this connection has not joined; call comfy.worker.join first"))?;
        if let Some(link) = worker.link() {
            link.seen(now_ms());
        }
        Ok(worker)
    }

    /// `comfy.worker.join`: the worker enters the pool (replacing one of the same name). When
    /// its connection ends, it leaves and its jobs are requeued.
    pub async fn worker_join(&self, ctx: &CallContext, p: WorkerJoinParams) -> Result<WorkerJoinResult, CoreError> {
        if !valid_name(&p.name) {
            return Err(CoreError::invalid(format!(
                "invalid worker name {:?}: 1 to {MAX_NAME} letters, digits, '-', '_' or '.'",
                p.name
            )));
        }
        if !(1..=64).contains(&p.capacity) {
            return Err(CoreError::invalid("capacity must be 1 to 64"));
        }
        let dispatcher = self.worker_dispatcher()?;
        if let Some(configured) = dispatcher.pool().worker(&p.name) {
            return Err(CoreError::invalid(format!(
                "{} is the name of a configured worker (comfy.workers); join under another name",
                configured.cfg.name
            )));
        }
        let conn_id = ctx.client.conn_id.clone();
        if let Some(other) = dispatcher.joined().by_conn(&conn_id)
            && other.cfg.name != p.name
        {
            return Err(CoreError::invalid(format!("this connection joined as {} already", other.cfg.name)));
        }
        let req = JoinRequest {
            name: p.name.clone(),
            conn_id: conn_id.clone(),
            comfy_version: p.comfy_version.map(|v| v.chars().take(64).collect()),
            templates: p.templates.map(|t| t.into_iter().take(1_000).collect()),
            capacity: p.capacity,
        };
        let (_, replaced) = dispatcher.join(req).map_err(CoreError::internal)?;
        let (client, name, shutdown) = (ctx.client.clone(), p.name.clone(), self.inner.host.tasks().token());
        self.inner.host.tasks().spawn("comfy", async move {
            tokio::select! {
                () = client.closed() => dispatcher.leave(&name, &client.conn_id),
                () = shutdown.cancelled() => {}
            }
        });
        Ok(WorkerJoinResult { name: p.name, heartbeat_ms: heartbeat_ms(), replaced })
    }

    /// `comfy.worker.pull`: the next job for the caller, waiting for one up to `waitMs`.
    pub async fn worker_pull(&self, ctx: &CallContext, p: WorkerPullParams) -> Result<WorkerPullResult, CoreError> {
        let worker = self.caller(ctx)?;
        let Some(link) = worker.link() else { return Ok(WorkerPullResult { job: None }) };
        let wait = Duration::from_millis(p.wait_ms.unwrap_or(MAX_PULL_WAIT_MS).min(MAX_PULL_WAIT_MS));
        // A gateway that is stopping answers at once (its shutdown waits for requests in flight).
        let stopping = self.inner.host.tasks().token();
        let job = tokio::select! {
            job = link.pull(wait) => job,
            () = stopping.cancelled() => None,
        };
        if let Some(job) = &job {
            tracing::info!(worker = %worker.cfg.name, job = %job.job_id, attempt = job.attempt, "job handed to a joined worker");
        }
        Ok(WorkerPullResult { job })
    }

    /// `comfy.worker.progress`: the prompt started and/or progressed. `continue: false` tells the
    /// worker to interrupt it (cancelled, or no longer its job).
    pub async fn worker_progress(
        &self,
        ctx: &CallContext,
        p: WorkerProgressParams,
    ) -> Result<WorkerProgressResult, CoreError> {
        let worker = self.caller(ctx)?;
        let Some(link) = worker.link() else { return Ok(WorkerProgressResult { go_on: false }) };
        let mut go_on = true;
        if let Some(prompt) = &p.prompt_id {
            go_on &= link.started(&p.job_id, p.attempt, prompt).is_ok();
        }
        if let (Some(value), Some(max)) = (p.value, p.max) {
            go_on &= link.progress(&p.job_id, p.attempt, json!({"value": value, "max": max})).is_ok();
        }
        if p.prompt_id.is_none() && p.value.is_none() {
            go_on = link.progress_allowed(&p.job_id, p.attempt);
        }
        Ok(WorkerProgressResult { go_on })
    }

    /// `comfy.worker.output`: one chunk of one output file.
    pub async fn worker_output(
        &self,
        ctx: &CallContext,
        p: WorkerOutputParams,
    ) -> Result<WorkerOutputResult, CoreError> {
        let worker = self.caller(ctx)?;
        let Some(link) = worker.link() else { return Err(CoreError::invalid("not a joined worker")) };
        // Base64 of a chunk is 4/3 its size: refuse a longer text before decoding it.
        if p.data.len() > MAX_OUTPUT_CHUNK / 3 * 4 + 4 {
            return Err(CoreError::invalid(format!("a chunk is at most {MAX_OUTPUT_CHUNK} bytes")));
        }
        let chunk = base64::engine::general_purpose::STANDARD
            .decode(p.data.as_bytes())
            .map_err(|e| CoreError::invalid(format!("data is not base64: {e}")))?;
        let bytes = link.output(&p.job_id, p.attempt, &p.filename, p.offset, &chunk, p.last).map_err(refused)?;
        Ok(WorkerOutputResult { bytes })
    }

    /// `comfy.worker.done`: the job ended on the worker. Counts once per job and attempt.
    pub async fn worker_done(&self, ctx: &CallContext, p: WorkerDoneParams) -> Result<WorkerDoneResult, CoreError> {
        let worker = self.caller(ctx)?;
        let Some(link) = worker.link() else { return Ok(WorkerDoneResult { accepted: false }) };
        let result = if p.ok {
            Ok(())
        } else {
            let error = p.error.unwrap_or_else(|| "the worker reported a failure".into());
            let error: String = error.chars().take(MAX_ERROR).collect();
            Err(JobFailure { message: format!("worker {}: {error}", worker.cfg.name), transient: p.transient })
        };
        let accepted = match link.done(&p.job_id, p.attempt, result) {
            Ok(()) => true,
            Err(e) => {
                tracing::info!(worker = %worker.cfg.name, error = %e, "a joined worker's completion was not counted");
                false
            }
        };
        Ok(WorkerDoneResult { accepted })
    }

    /// `comfy.worker.heartbeat`: alive, and how its ComfyUI is.
    pub async fn worker_heartbeat(
        &self,
        ctx: &CallContext,
        p: WorkerHeartbeatParams,
    ) -> Result<WorkerHeartbeatResult, CoreError> {
        let worker = self.caller(ctx)?;
        let was = worker.healthy();
        let error = p.comfy_error.map(|e| e.chars().take(MAX_ERROR).collect());
        worker.heartbeat(now_ms(), error, p.queue_remaining);
        if !was && worker.healthy() {
            self.kick();
        }
        Ok(WorkerHeartbeatResult { heartbeat_ms: heartbeat_ms() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_names_are_short_and_plain() {
        assert!(valid_name("gpu1"));
        assert!(valid_name("box-2.lan_a"));
        assert!(!valid_name(""));
        assert!(!valid_name("a b"));
        assert!(!valid_name(&"x".repeat(65)));
    }
}
