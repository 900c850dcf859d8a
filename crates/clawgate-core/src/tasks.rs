//! Every long-lived task of the gateway, and a shutdown that waits for them.
//!
//! A service never calls `tokio::spawn` for work that outlives the call: it hands the future to
//! [`Tasks::spawn`] with its own name. The composition root (`gateway_cmd.rs`) stops the process
//! in this order:
//!
//! ```text
//! cancel (every loop sees its token) → close the tracker → await every task (bounded grace,
//! naming each service that did not stop) → close the store
//! ```
//!
//! Class closed: *writes after the store is closed*. A detached task (a lane worker finishing a
//! run, a channel router queueing a reply, a cron run recording its receipt) used to race the
//! final WAL checkpoint; now the store is closed only once every task has returned.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The gateway's task tracker and its cancellation token. Cheap to clone: clones share both.
#[derive(Clone, Default)]
pub struct Tasks {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    tracker: TaskTracker,
    cancel: CancellationToken,
    /// Running tasks per service; a service stays listed (with 0) once it ran a task, so the
    /// shutdown can say it stopped. A counter per service, so a spawn (one per WS request)
    /// takes only a shared read lock and an atomic add, and a task's end only the atomic.
    live: RwLock<BTreeMap<&'static str, Arc<AtomicUsize>>>,
}

impl std::fmt::Debug for Tasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tasks")
            .field("running", &self.inner.tracker.len())
            .field("stopping", &self.inner.cancel.is_cancelled())
            .finish()
    }
}

/// Counts one running task of a service; uncounts it when the task ends (or is dropped).
struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Tasks {
    /// A tracker with no task and a fresh token.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancelled when the gateway is stopping. Loops select on it and return.
    pub fn token(&self) -> CancellationToken {
        self.inner.cancel.clone()
    }

    /// Whether the stop has begun.
    pub fn is_stopping(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// Run `fut` as a task of `service`; the shutdown waits for it. Tasks must watch
    /// [`Tasks::token`] (or end on their own soon).
    pub fn spawn<F>(&self, service: &'static str, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let counter = self.inner.live.read().get(service).cloned();
        let counter = counter.unwrap_or_else(|| self.inner.live.write().entry(service).or_default().clone());
        counter.fetch_add(1, Ordering::AcqRel);
        let running = Running(counter);
        self.inner.tracker.spawn(async move {
            let _running = running;
            fut.await;
        });
    }

    /// Tell every task to stop (without waiting).
    pub fn cancel(&self) {
        self.inner.cancel.cancel();
    }

    /// Running tasks per service (services that ran a task and have none left show 0).
    pub fn running(&self) -> Vec<(&'static str, usize)> {
        self.inner.live.read().iter().map(|(s, n)| (*s, n.load(Ordering::Acquire))).collect()
    }

    /// Cancel, close the tracker and wait up to `grace` for every task. Logs one line per
    /// service (stopped, or still running); returns the services that did not stop with their
    /// task counts (empty when everything stopped). Tasks spawned during the wait (a run
    /// finishing its bookkeeping) are waited for too.
    pub async fn shutdown(&self, grace: Duration) -> Vec<(&'static str, usize)> {
        self.cancel();
        self.inner.tracker.close();
        let all_done = tokio::time::timeout(grace, self.inner.tracker.wait()).await.is_ok();
        let mut stuck = Vec::new();
        for (service, n) in self.running() {
            if n == 0 {
                tracing::info!(service, "service stopped");
            } else {
                tracing::warn!(service, tasks = n, grace_ms = grace.as_millis() as u64, "service did not stop in time");
                stuck.push((service, n));
            }
        }
        if all_done && stuck.is_empty() {
            tracing::info!("every service stopped");
        }
        stuck
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    /// The order the composition root relies on: a task's clean-up (here: its last "write")
    /// happens before `shutdown` returns, so the store is closed after it.
    #[tokio::test]
    async fn shutdown_waits_for_every_task_before_the_store_closes() {
        let tasks = Tasks::new();
        let log = Arc::new(Mutex::new(Vec::<String>::new()));
        let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel();
        for (service, i) in [("cron", 0), ("channels", 1), ("channels", 2)] {
            let (token, log, started) = (tasks.token(), log.clone(), started_tx.clone());
            tasks.spawn(service, async move {
                let _ = started.send(());
                token.cancelled().await;
                // Clean-up that takes a few scheduler turns, as a store write does.
                for _ in 0..10 {
                    tokio::task::yield_now().await;
                }
                log.lock().push(format!("{service}-{i} wrote its last row"));
            });
        }
        for _ in 0..3 {
            started_rx.recv().await.expect("task started");
        }
        assert_eq!(tasks.running(), vec![("channels", 2), ("cron", 1)]);
        let stuck = tasks.shutdown(Duration::from_secs(30)).await;
        log.lock().push("store closed".into());
        assert!(stuck.is_empty(), "{stuck:?}");
        let log = log.lock().clone();
        assert_eq!(log.len(), 4, "{log:?}");
        assert_eq!(log.last().map(String::as_str), Some("store closed"), "{log:?}");
        assert_eq!(tasks.running(), vec![("channels", 0), ("cron", 0)]);
    }

    /// A task that ignores the token is named after the grace period instead of blocking the
    /// stop for ever.
    #[tokio::test]
    async fn a_task_that_ignores_cancel_is_reported_by_service() {
        let tasks = Tasks::new();
        let token = tasks.token();
        tasks.spawn("good", async move { token.cancelled().await });
        tasks.spawn("stubborn", std::future::pending());
        // The grace only bounds the wait; the fact checked is which service is named.
        let stuck = tasks.shutdown(Duration::from_millis(100)).await;
        assert_eq!(stuck, vec![("stubborn", 1)]);
        assert_eq!(tasks.running(), vec![("good", 0), ("stubborn", 1)]);
    }

    /// Work spawned while the stop is under way (a finishing run's bookkeeping) is awaited too.
    #[tokio::test]
    async fn tasks_spawned_during_the_stop_are_awaited() {
        let tasks = Tasks::new();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (t2, token, d) = (tasks.clone(), tasks.token(), done.clone());
        tasks.spawn("agent", async move {
            token.cancelled().await;
            t2.spawn("agent", async move {
                tokio::task::yield_now().await;
                d.store(true, std::sync::atomic::Ordering::SeqCst);
            });
        });
        assert!(tasks.shutdown(Duration::from_secs(30)).await.is_empty());
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
    }
}
