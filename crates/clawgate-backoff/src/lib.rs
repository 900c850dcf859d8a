//! The one retry-delay policy of clawgate: capped exponential backoff with **equal jitter**.
//!
//! Every loop that waits before trying again (a channel's receive loop, the outbox, ComfyUI's
//! WebSocket reconnect, the model-call retry, cron, the agent's storage retries) asks
//! [`Backoff::delay`] for the wait before attempt `n`. It is a pure function of the attempt
//! number (no iterator state), so it serves sync and async code alike and a caller keeps only a
//! counter; [`Backoff::delay_with`] takes the random draw as an argument so tests are exact.
//!
//! Why equal jitter (`d/2 + rand(0..=d/2)` with `d = min(cap, base·2ⁿ)`) rather than full jitter
//! (`rand(0..=d)`): both spread clients that failed together, but full jitter can draw a wait
//! near zero, which turns a reconnect loop against a server that is down into a hot loop now and
//! then. Equal jitter keeps at least half of the exponential wait and never more than `cap`.
//!
//! This is a crate of its own because its users sit side by side in the dependency graph
//! (`clawgate-llm`, `clawgate-channels`, `clawgate-comfy` and `clawgate-core`) and share no lower
//! clawgate crate; the crates.io candidates do not fit (`backon` yields delays from a stateful
//! iterator and its jitter adds up to a whole extra delay, past the cap; `backoff` is no longer
//! maintained).

use std::time::Duration;

/// Exponents past this give `base · 2^16`, far beyond any cap in use; it keeps the multiplication
/// from overflowing for any attempt number.
const MAX_EXPONENT: u32 = 16;

/// A capped exponential backoff: before attempt `n` (0 for the first retry) wait about
/// `base · 2ⁿ`, never more than `cap`, with equal jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait before the first retry (before jitter).
    pub base: Duration,
    /// The longest wait.
    pub cap: Duration,
}

impl Backoff {
    /// A policy starting at `base` and doubling up to `cap`.
    pub const fn new(base: Duration, cap: Duration) -> Self {
        Self { base, cap }
    }

    /// The wait before retry `attempt` (0-based), drawn from the thread's random generator:
    /// between half of and the whole of `min(cap, base · 2^attempt)`.
    pub fn delay(&self, attempt: u32) -> Duration {
        use rand::Rng;
        self.delay_with(attempt, rand::thread_rng().r#gen::<f64>())
    }

    /// The same wait for a given random draw `unit` in `[0, 1]` (clamped; NaN counts as 0):
    /// `d/2 + unit · d/2` with `d = min(cap, base · 2^attempt)`. Deterministic, for tests.
    pub fn delay_with(&self, attempt: u32, unit: f64) -> Duration {
        let full = self.ceiling(attempt);
        let half = full / 2;
        let unit = if unit.is_nan() { 0.0 } else { unit.clamp(0.0, 1.0) };
        (half + (full - half).mul_f64(unit)).min(self.cap)
    }

    /// The un-jittered wait before retry `attempt`: `min(cap, base · 2^attempt)`, the upper bound
    /// of [`Backoff::delay`].
    pub fn ceiling(&self, attempt: u32) -> Duration {
        self.base.saturating_mul(1u32 << attempt.min(MAX_EXPONENT)).min(self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn policy() -> Backoff {
        Backoff::new(100 * MS, 5000 * MS)
    }

    #[test]
    fn the_first_retry_waits_between_half_and_all_of_base() {
        let b = policy();
        assert_eq!(b.delay_with(0, 0.0), 50 * MS);
        assert_eq!(b.delay_with(0, 1.0), 100 * MS);
        assert_eq!(b.delay_with(0, 0.5), 75 * MS);
    }

    #[test]
    fn the_wait_doubles_per_attempt_until_the_cap() {
        let b = policy();
        let ceilings: Vec<_> = (0..8).map(|n| b.ceiling(n)).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 3200, 5000, 5000].map(|m| m * MS));
        for n in 0..8 {
            assert_eq!(b.delay_with(n, 1.0), b.ceiling(n));
            assert_eq!(b.delay_with(n, 0.0), b.ceiling(n) / 2);
        }
    }

    #[test]
    fn random_draws_stay_within_half_and_the_ceiling() {
        let b = policy();
        for n in 0..40 {
            for _ in 0..50 {
                let d = b.delay(n);
                assert!(d >= b.ceiling(n) / 2 && d <= b.ceiling(n), "attempt {n}: {d:?}");
                assert!(d <= b.cap);
            }
        }
    }

    #[test]
    fn huge_attempt_numbers_neither_overflow_nor_pass_the_cap() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        for n in [16, 17, 31, 32, 63, 64, u32::MAX] {
            assert_eq!(b.ceiling(n), Duration::from_secs(300));
            assert!(b.delay(n) <= Duration::from_secs(300));
        }
        // A base so large that base · 2^16 overflows saturates instead of panicking.
        let big = Backoff::new(Duration::MAX / 2, Duration::MAX);
        assert_eq!(big.ceiling(u32::MAX), Duration::MAX);
    }

    #[test]
    fn out_of_range_draws_are_clamped() {
        let b = policy();
        assert_eq!(b.delay_with(2, -3.0), 200 * MS);
        assert_eq!(b.delay_with(2, 7.0), 400 * MS);
        assert_eq!(b.delay_with(2, f64::NAN), 200 * MS);
    }

    #[test]
    fn a_cap_below_base_wins() {
        let b = Backoff::new(Duration::from_secs(10), Duration::from_secs(1));
        assert_eq!(b.ceiling(0), Duration::from_secs(1));
        assert!(b.delay(0) <= Duration::from_secs(1));
    }
}
