//! Waiting for a fact instead of sleeping: tests poll an observable (a fake's record, a row read
//! over the protocol, a log line) until it holds, within a generous deadline.
//!
//! ```no_run
//! # async fn demo(comfy: &clawgate_testkit::fake_comfy::FakeComfy) -> anyhow::Result<()> {
//! use std::time::Duration;
//! use clawgate_testkit::{eventually, wait_until};
//!
//! // A synchronous probe: `Some(value)` ends the wait.
//! let running = eventually(Duration::from_secs(30), "a job starts", || comfy.running_id()).await?;
//! // An asynchronous probe (e.g. a request to the gateway).
//! wait_until(Duration::from_secs(30), "the fake answers", || async { Some(()) }).await?;
//! # Ok(()) }
//! ```

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How often a probe is asked again. Short enough that a wait ends soon after the fact holds;
/// the probes are cheap (a lock on a fake's record, one loopback request).
pub const POLL: Duration = Duration::from_millis(20);

/// Polls the asynchronous `probe` until it yields `Some`, every [`POLL`]; an error naming `what`
/// once `timeout` has passed. The probe runs at least once, and once more at the deadline.
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: impl Display, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting until {what}");
        }
        tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

/// [`wait_until`] for a synchronous probe.
pub async fn eventually<T>(
    timeout: Duration,
    what: impl Display,
    mut probe: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    wait_until(timeout, what, || std::future::ready(probe())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_first_value_the_probe_yields() {
        let mut n = 0;
        let got = eventually(Duration::from_secs(5), "n reaches 3", || {
            n += 1;
            (n >= 3).then_some(n)
        })
        .await
        .unwrap();
        assert_eq!(got, 3);
    }

    #[tokio::test]
    async fn fails_naming_the_fact_after_the_timeout() {
        let mut calls = 0;
        let err = wait_until(Duration::from_millis(100), "pigs fly", || {
            calls += 1;
            async { None::<()> }
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("pigs fly"), "{err}");
        assert!(calls >= 2, "asked again before giving up: {calls}");
    }
}
