//! ComfyUI workers that join by themselves (`clawgate worker`): a GPU box, often behind NAT,
//! connects *out* to the gateway with a worker token and announces itself; the dispatcher
//! treats it like a configured worker (least-loaded choice, requeue when it goes away), but
//! instead of calling its ComfyUI over HTTP it hands the job to the worker's connection.
//!
//! ```text
//! Dispatcher (claims a queued job for worker `gpu1`, kind joined)
//!   → JoinedLink::assign: the job waits in the link's mailbox, a Run is opened for its reports
//!   ← comfy.worker.pull (the worker's long poll) takes it
//!   ← comfy.worker.progress {promptId} / {value,max}   → Report::Started / Report::Progress
//!   ← comfy.worker.output (chunks, bounded)             → kept in the Run
//!   ← comfy.worker.done {ok}                            → Report::Done(files) → stored, delivered
//! socket closed / heartbeats stopped → JoinedLink::leave: every Run ends → the dispatcher
//!   requeues the job (the durable queue's usual failover), and it runs elsewhere
//! ```
//!
//! Why pull, not push: the worker asks for a job only when it has room, so jobs never pile up
//! on a connection that cannot take them, the request/response client needs no event routing,
//! and a pull that finds the link gone simply fails — nothing is in flight on the wire that the
//! gateway has to take back.
//!
//! Every report names the job and its attempt (`<job>-<attempt>`): once a job was requeued
//! (its attempt went up), a late report of the old attempt is refused, so no job completes twice.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use clawgate_protocol::methods::comfy_worker::{MAX_OUTPUT_CHUNK, WorkerJob};

use crate::pool::{Worker, WorkerError};

/// How often a joined worker heartbeats.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// Heartbeats a joined worker may miss before it is given up on (its jobs requeued).
pub const MISSED_HEARTBEATS: u32 = 3;

/// What a joined worker reports about the job it runs, in the order it happens.
#[derive(Debug)]
pub enum Report {
    /// Its ComfyUI accepted the prompt (the prompt id there).
    Started(String),
    /// Progress of the prompt (`{value, max}`).
    Progress(Value),
    /// The job ended: its output files, or why it failed.
    Done(Result<OutputFiles, JobFailure>),
}

/// A finished job's output files: (name, bytes).
pub type OutputFiles = Vec<(String, Vec<u8>)>;

/// Why a job failed on a joined worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFailure {
    /// What went wrong.
    pub message: String,
    /// The worker's fault, not the job's (its ComfyUI is unreachable): run it elsewhere.
    pub transient: bool,
}

/// Why a worker's report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// The job (at that attempt) is not this worker's: never given, requeued, or finished.
    #[error("job {job} attempt {attempt} is not running on this worker")]
    NotYours {
        /// The job id.
        job: String,
        /// The attempt named.
        attempt: u32,
    },
    /// An output chunk broke the rules (order, size, count).
    #[error("{0}")]
    Output(String),
}

/// Limits on what a job's outputs may be, taken from `comfy.delivery` when the job is assigned.
#[derive(Debug, Clone, Copy)]
pub struct OutputBounds {
    /// Files kept per job.
    pub max_files: usize,
    /// Bytes per file.
    pub max_bytes: u64,
}

/// One job handed to the worker: where its reports go and the outputs received so far.
struct Run {
    attempt: u32,
    reports: mpsc::UnboundedSender<Report>,
    bounds: OutputBounds,
    files: Vec<(String, Vec<u8>)>,
    /// A file whose last chunk has not come yet.
    open: Option<String>,
}

/// A joined worker's connection as the gateway sees it: the jobs waiting for its pull, the jobs
/// it runs, its last heartbeat, and whether it is gone.
pub struct JoinedLink {
    /// The worker's connection (a rejoin on another connection replaces this link).
    conn_id: String,
    mailbox: Mutex<VecDeque<WorkerJob>>,
    arrived: Notify,
    runs: Mutex<HashMap<String, Run>>,
    last_seen_ms: AtomicI64,
    gone: CancellationToken,
}

impl std::fmt::Debug for JoinedLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinedLink").field("conn_id", &self.conn_id).finish_non_exhaustive()
    }
}

impl JoinedLink {
    fn new(conn_id: &str, now_ms: i64) -> Self {
        Self {
            conn_id: conn_id.to_owned(),
            mailbox: Mutex::default(),
            arrived: Notify::new(),
            runs: Mutex::default(),
            last_seen_ms: AtomicI64::new(now_ms),
            gone: CancellationToken::new(),
        }
    }

    /// The connection it joined on.
    pub fn conn_id(&self) -> &str {
        &self.conn_id
    }

    /// When it was last heard from (ms since the epoch).
    pub fn last_seen_ms(&self) -> i64 {
        self.last_seen_ms.load(Ordering::Relaxed)
    }

    /// It was heard from now.
    pub fn seen(&self, now_ms: i64) {
        self.last_seen_ms.fetch_max(now_ms, Ordering::Relaxed);
    }

    /// Has it left (socket closed, silent, or replaced)?
    pub fn is_gone(&self) -> bool {
        self.gone.is_cancelled()
    }

    /// Hand `job` to the worker: it waits for the worker's next pull; its reports come out of
    /// the returned receiver, which ends (`None`) when the worker leaves.
    pub fn assign(&self, job: WorkerJob, bounds: OutputBounds) -> mpsc::UnboundedReceiver<Report> {
        let (tx, rx) = mpsc::unbounded_channel();
        if self.is_gone() {
            return rx;
        }
        self.runs.lock().insert(
            job.job_id.clone(),
            Run { attempt: job.attempt, reports: tx, bounds, files: Vec::new(), open: None },
        );
        self.mailbox.lock().push_back(job);
        self.arrived.notify_one();
        rx
    }

    /// Take the job back (cancelled, timed out): a pull no longer gets it, reports of it are
    /// refused.
    pub fn withdraw(&self, job_id: &str) {
        self.mailbox.lock().retain(|j| j.job_id != job_id);
        self.runs.lock().remove(job_id);
    }

    /// The worker's long poll: the next job handed to it, waiting up to `wait`; `None` when none
    /// came or the worker left meanwhile.
    pub async fn pull(&self, wait: Duration) -> Option<WorkerJob> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let arrived = self.arrived.notified();
            if self.is_gone() {
                return None;
            }
            if let Some(job) = self.mailbox.lock().pop_front() {
                return Some(job);
            }
            tokio::select! {
                () = arrived => {}
                () = self.gone.cancelled() => return None,
                () = tokio::time::sleep_until(deadline) => return None,
            }
        }
    }

    fn with_run<T>(
        &self,
        job_id: &str,
        attempt: u32,
        f: impl FnOnce(&mut Run) -> Result<T, ReportError>,
    ) -> Result<T, ReportError> {
        let mut runs = self.runs.lock();
        match runs.get_mut(job_id) {
            Some(run) if run.attempt == attempt && !run.reports.is_closed() => f(run),
            _ => Err(ReportError::NotYours { job: job_id.to_owned(), attempt }),
        }
    }

    /// Is the job (at that attempt) still this worker's to run?
    pub fn progress_allowed(&self, job_id: &str, attempt: u32) -> bool {
        self.with_run(job_id, attempt, |_| Ok(())).is_ok()
    }

    /// The worker's ComfyUI accepted the job's prompt.
    pub fn started(&self, job_id: &str, attempt: u32, prompt_id: &str) -> Result<(), ReportError> {
        self.with_run(job_id, attempt, |run| {
            let _ = run.reports.send(Report::Started(prompt_id.to_owned()));
            Ok(())
        })
    }

    /// Progress of the job's prompt.
    pub fn progress(&self, job_id: &str, attempt: u32, progress: Value) -> Result<(), ReportError> {
        self.with_run(job_id, attempt, |run| {
            let _ = run.reports.send(Report::Progress(progress));
            Ok(())
        })
    }

    /// One chunk of an output file (chunks of a file come in order, one file after another).
    /// Returns the file's bytes so far.
    pub fn output(
        &self,
        job_id: &str,
        attempt: u32,
        filename: &str,
        offset: u64,
        chunk: &[u8],
        last: bool,
    ) -> Result<u64, ReportError> {
        self.with_run(job_id, attempt, |run| {
            if chunk.len() > MAX_OUTPUT_CHUNK {
                return Err(ReportError::Output(format!("a chunk is at most {MAX_OUTPUT_CHUNK} bytes")));
            }
            if filename.is_empty() || filename.len() > 255 || filename.trim_matches('.').is_empty() {
                return Err(ReportError::Output("a file name is 1 to 255 bytes, not only dots".into()));
            }
            if run.open.as_deref() != Some(filename) {
                if offset != 0 {
                    return Err(ReportError::Output(format!("{filename}: its first chunk must be at offset 0")));
                }
                if run.files.iter().any(|(n, _)| n == filename) {
                    return Err(ReportError::Output(format!("{filename} was sent already")));
                }
                if run.files.len() >= run.bounds.max_files {
                    return Err(ReportError::Output(format!("at most {} files per job", run.bounds.max_files)));
                }
                run.files.push((filename.to_owned(), Vec::new()));
                run.open = Some(filename.to_owned());
            }
            let Some((_, bytes)) = run.files.last_mut() else {
                return Err(ReportError::Output("no file is open".into()));
            };
            if offset != bytes.len() as u64 {
                return Err(ReportError::Output(format!(
                    "{filename}: chunk at offset {offset}, expected {}",
                    bytes.len()
                )));
            }
            if (bytes.len() + chunk.len()) as u64 > run.bounds.max_bytes {
                let over = std::mem::take(bytes);
                drop(over);
                run.open = None;
                return Err(ReportError::Output(format!("{filename} is over the {}-byte limit", run.bounds.max_bytes)));
            }
            bytes.extend_from_slice(chunk);
            let total = bytes.len() as u64;
            if last {
                run.open = None;
            }
            Ok(total)
        })
    }

    /// The job ended on the worker. Its run closes: later reports of it are refused.
    pub fn done(&self, job_id: &str, attempt: u32, result: Result<(), JobFailure>) -> Result<(), ReportError> {
        let run = {
            let mut runs = self.runs.lock();
            match runs.get(job_id) {
                Some(run) if run.attempt == attempt && !run.reports.is_closed() => runs.remove(job_id),
                _ => None,
            }
        };
        let Some(run) = run else { return Err(ReportError::NotYours { job: job_id.to_owned(), attempt }) };
        // A file whose upload was cut off, or refused as too big, is not an output.
        let files =
            run.files.into_iter().filter(|(name, bytes)| run.open.as_deref() != Some(name) && !bytes.is_empty());
        let report = match result {
            Ok(()) => Report::Done(Ok(files.collect())),
            Err(e) => Report::Done(Err(e)),
        };
        let _ = run.reports.send(report);
        Ok(())
    }

    /// The worker left: every job handed to it ends (its receiver yields `None`), pulls return.
    fn leave(&self) {
        self.gone.cancel();
        self.mailbox.lock().clear();
        self.runs.lock().clear();
        self.arrived.notify_waiters();
    }
}

/// What a worker says of itself when it joins.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Its name.
    pub name: String,
    /// The connection it joins on.
    pub conn_id: String,
    /// Its ComfyUI's version.
    pub comfy_version: Option<String>,
    /// Template ids it has.
    pub templates: Option<Vec<String>>,
    /// Jobs it runs at once.
    pub capacity: usize,
}

/// The joined workers, by name. Outlives pool rebuilds (a config reload does not drop them).
#[derive(Debug, Default)]
pub struct Joined {
    workers: RwLock<Vec<Arc<Worker>>>,
}

impl Joined {
    /// The joined workers now.
    pub fn workers(&self) -> Vec<Arc<Worker>> {
        self.workers.read().clone()
    }

    /// The joined worker named `name`.
    pub fn worker(&self, name: &str) -> Option<Arc<Worker>> {
        self.workers.read().iter().find(|w| w.cfg.name == name).cloned()
    }

    /// Add a worker; one of the same name already there is replaced (it leaves: its jobs are
    /// requeued). Returns the new worker and whether it replaced one.
    pub fn join(&self, req: JoinRequest, now_ms: i64) -> Result<(Arc<Worker>, bool), WorkerError> {
        let link = Arc::new(JoinedLink::new(&req.conn_id, now_ms));
        let worker = Arc::new(Worker::joined(&req, link)?);
        let old = {
            let mut workers = self.workers.write();
            let old = workers.iter().position(|w| w.cfg.name == req.name).map(|i| workers.remove(i));
            workers.push(worker.clone());
            old
        };
        let replaced = old.is_some();
        if let Some(old) = old
            && let Some(link) = old.link()
        {
            tracing::info!(worker = %req.name, "ComfyUI worker rejoined; the old connection's jobs are requeued");
            link.leave();
        }
        Ok((worker, replaced))
    }

    /// The worker named `name` left on connection `conn_id` (a later join of the same name on
    /// another connection is not touched). Its jobs end and are requeued by their runs.
    pub fn leave(&self, name: &str, conn_id: &str) -> bool {
        let gone = {
            let mut workers = self.workers.write();
            let at = workers.iter().position(|w| w.cfg.name == name && w.link().is_some_and(|l| l.conn_id == conn_id));
            at.map(|i| workers.remove(i))
        };
        match gone.as_ref().and_then(|w| w.link()) {
            Some(link) => {
                link.leave();
                true
            }
            None => false,
        }
    }

    /// The worker that joined on connection `conn_id`.
    pub fn by_conn(&self, conn_id: &str) -> Option<Arc<Worker>> {
        self.workers.read().iter().find(|w| w.link().is_some_and(|l| l.conn_id == conn_id)).cloned()
    }

    /// Workers not heard from since `cutoff_ms`: they leave. Returns their names.
    pub fn expire(&self, cutoff_ms: i64) -> Vec<String> {
        let silent: Vec<(String, String)> = self
            .workers
            .read()
            .iter()
            .filter_map(|w| {
                w.link().filter(|l| l.last_seen_ms() < cutoff_ms).map(|l| (w.cfg.name.clone(), l.conn_id.clone()))
            })
            .collect();
        silent.into_iter().filter(|(name, conn)| self.leave(name, conn)).map(|(name, _)| name).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(name: &str, conn: &str) -> JoinRequest {
        JoinRequest { name: name.into(), conn_id: conn.into(), comfy_version: None, templates: None, capacity: 1 }
    }

    fn job(id: &str, attempt: u32) -> WorkerJob {
        WorkerJob { job_id: id.into(), attempt, workflow: json!({}), tag: format!("{id}-{attempt}") }
    }

    const BOUNDS: OutputBounds = OutputBounds { max_files: 2, max_bytes: 10 };

    #[tokio::test]
    async fn a_rejoin_replaces_the_old_entry_and_ends_its_jobs() {
        let joined = Joined::default();
        let (a, replaced) = joined.join(req("gpu1", "c1"), 0).unwrap();
        assert!(!replaced);
        let mut reports = a.link().unwrap().assign(job("j", 1), BOUNDS);
        let (b, replaced) = joined.join(req("gpu1", "c2"), 0).unwrap();
        assert!(replaced);
        assert_eq!(joined.workers().len(), 1, "one entry per name");
        assert!(reports.recv().await.is_none(), "the old connection's job ends (and is requeued)");
        assert!(!joined.leave("gpu1", "c1"), "the old connection closing later leaves the new entry alone");
        assert!(Arc::ptr_eq(&joined.worker("gpu1").unwrap(), &b));
        assert!(joined.leave("gpu1", "c2"));
        assert!(joined.workers().is_empty());
    }

    #[tokio::test]
    async fn reports_name_the_attempt_and_outputs_are_bounded() {
        let joined = Joined::default();
        let (w, _) = joined.join(req("gpu1", "c1"), 0).unwrap();
        let link = w.link().unwrap();
        let mut reports = link.assign(job("j", 2), BOUNDS);
        assert_eq!(link.pull(Duration::from_secs(1)).await.unwrap().attempt, 2);
        assert!(matches!(link.started("j", 1, "p"), Err(ReportError::NotYours { .. })), "a stale attempt");
        link.started("j", 2, "p").unwrap();
        assert_eq!(link.output("j", 2, "a.png", 0, b"12345", false).unwrap(), 5);
        assert!(link.output("j", 2, "a.png", 9, b"x", false).is_err(), "out of order");
        assert!(link.output("j", 2, "..", 0, b"x", true).is_err(), "not a file name");
        assert_eq!(link.output("j", 2, "a.png", 5, b"678", true).unwrap(), 8);
        assert!(link.output("j", 2, "b.png", 0, b"12345678901", true).is_err(), "over max_bytes");
        assert!(link.output("j", 2, "c.png", 0, b"1", true).is_err(), "over max_files");
        link.done("j", 2, Ok(())).unwrap();
        assert!(link.done("j", 2, Ok(())).is_err(), "completion counts once");
        assert!(matches!(reports.recv().await, Some(Report::Started(p)) if p == "p"));
        match reports.recv().await {
            Some(Report::Done(Ok(files))) => assert_eq!(files, vec![("a.png".to_owned(), b"12345678".to_vec())]),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn silent_workers_expire_and_pulls_end_when_they_leave() {
        let joined = Joined::default();
        let (w, _) = joined.join(req("gpu1", "c1"), 1_000).unwrap();
        let link = w.link().unwrap();
        assert!(joined.expire(500).is_empty());
        link.seen(2_000);
        let pull = tokio::spawn({
            let link = link.clone();
            async move { link.pull(Duration::from_secs(30)).await }
        });
        assert_eq!(joined.expire(3_000), vec!["gpu1".to_owned()]);
        assert!(pull.await.unwrap().is_none());
        assert!(link.is_gone());
    }
}
