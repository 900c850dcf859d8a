//! Latency summaries from raw samples (a sorted `Vec`; the sample counts here stay well below
//! a few million, so exact percentiles are cheaper than a histogram's bookkeeping).

use std::time::Duration;

use serde_json::{Value, json};

/// Exact percentiles over a set of durations.
#[derive(Default)]
pub struct Summary {
    sorted_ns: Vec<u64>,
}

impl Summary {
    pub fn new(mut samples_ns: Vec<u64>) -> Self {
        samples_ns.sort_unstable();
        Self { sorted_ns: samples_ns }
    }

    pub fn from_durations(samples: &[Duration]) -> Self {
        Self::new(samples.iter().map(|d| d.as_nanos() as u64).collect())
    }

    pub fn count(&self) -> usize {
        self.sorted_ns.len()
    }

    /// Nearest-rank percentile in milliseconds (`p` in 0..=100). 0 when empty.
    pub fn pct_ms(&self, p: f64) -> f64 {
        let n = self.sorted_ns.len();
        if n == 0 {
            return 0.0;
        }
        // The epsilon keeps float noise (0.999 * 1000 = 999.000…1) from skipping a rank.
        let rank = ((p / 100.0) * n as f64 - 1e-9).ceil() as usize;
        let idx = rank.clamp(1, n) - 1;
        ns_to_ms(self.sorted_ns[idx])
    }

    pub fn mean_ms(&self) -> f64 {
        if self.sorted_ns.is_empty() {
            return 0.0;
        }
        let sum: u128 = self.sorted_ns.iter().map(|&v| u128::from(v)).sum();
        ns_to_ms((sum / self.sorted_ns.len() as u128) as u64)
    }

    pub fn max_ms(&self) -> f64 {
        self.sorted_ns.last().map_or(0.0, |&v| ns_to_ms(v))
    }

    /// The figures every scenario reports, as JSON (milliseconds, 3 decimals).
    pub fn to_json(&self) -> Value {
        json!({
            "n": self.count(),
            "p50_ms": round3(self.pct_ms(50.0)),
            "p90_ms": round3(self.pct_ms(90.0)),
            "p99_ms": round3(self.pct_ms(99.0)),
            "p999_ms": round3(self.pct_ms(99.9)),
            "max_ms": round3(self.max_ms()),
            "mean_ms": round3(self.mean_ms()),
        })
    }

    /// One human line: `p50 0.120 ms  p99 0.300 ms  p99.9 0.700 ms  max 1.2 ms  (n=…)`.
    pub fn human(&self) -> String {
        format!(
            "p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms  (n={})",
            self.pct_ms(50.0),
            self.pct_ms(99.0),
            self.pct_ms(99.9),
            self.max_ms(),
            self.count()
        )
    }
}

fn ns_to_ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s = Summary::new((1..=1000).map(|i| i * 1_000_000).collect());
        assert_eq!(s.pct_ms(50.0), 500.0);
        assert_eq!(s.pct_ms(99.0), 990.0);
        assert_eq!(s.pct_ms(99.9), 999.0);
        assert_eq!(s.max_ms(), 1000.0);
        assert_eq!(Summary::default().pct_ms(50.0), 0.0);
    }
}
