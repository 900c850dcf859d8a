//! Progress lines on stderr while a scenario runs (every 2 s), so long runs against a slow
//! server are visibly alive.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

pub struct Progress {
    pub done: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Progress {
    pub fn start(what: &'static str, total: u64) -> Self {
        let done = Arc::new(AtomicU64::new(0));
        let counter = done.clone();
        let task = tokio::spawn(async move {
            let t0 = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            tick.tick().await;
            loop {
                tick.tick().await;
                let n = counter.load(Ordering::Relaxed);
                let secs = t0.elapsed().as_secs_f64();
                eprintln!("  {what}: {n}/{total} in {secs:.1} s ({:.0}/s)", n as f64 / secs.max(1e-9));
            }
        });
        Self { done, task }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.task.abort();
    }
}
