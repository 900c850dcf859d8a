//! The shared request-rate bucket's arithmetic ([`crate::RateBucketStore`]): both backends run
//! the same statement with the numbers worked out here.
//!
//! A bucket is kept as GCRA's *theoretical arrival time* (`tat`), one integer per bucket instead
//! of a token count and a timestamp: each granted request pushes `tat` one interval further, and a
//! request is granted while `tat` runs at most `requests - 1` intervals ahead of now. That is a
//! token bucket of `requests` tokens refilled at `requests` per window — the in-memory
//! `TokenBucket` of a single gateway — written so that one `UPDATE` can take a token atomically.

/// A rate as a shared bucket applies it: `requests` per `per_ms`, with a burst of `requests`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketRate {
    /// Requests per window (also the burst). At least 1.
    pub requests: u32,
    /// The window, in milliseconds.
    pub per_ms: u64,
}

impl BucketRate {
    /// Microseconds between two requests at the sustained rate (at least 1).
    pub fn interval_us(&self) -> i64 {
        let per_us = i64::try_from(self.per_ms).unwrap_or(i64::MAX / 1000).saturating_mul(1000);
        (per_us / i64::from(self.requests.max(1))).max(1)
    }

    /// How far `tat` may run ahead of now with a request still granted: `requests - 1` intervals,
    /// so exactly `requests` are granted at once from a full bucket.
    pub fn tolerance_us(&self) -> i64 {
        self.interval_us().saturating_mul(i64::from(self.requests.max(1) - 1))
    }
}

/// What taking a token from a shared bucket did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateTake {
    /// A token was taken: the request may go.
    Granted,
    /// The bucket is empty; a token is there again after this long.
    Refused {
        /// Microseconds until the next request would be granted (at least 1).
        retry_after_us: i64,
    },
}

impl RateTake {
    /// The answer of the take statement: whether it granted, and the bucket's `tat` after it.
    pub(crate) fn from_row(granted: bool, tat_us: i64, rate: BucketRate, now_us: i64) -> Self {
        if granted {
            RateTake::Granted
        } else {
            RateTake::Refused { retry_after_us: (tat_us - rate.tolerance_us() - now_us).max(1) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_and_tolerances_give_exactly_the_burst() {
        let r = BucketRate { requests: 10, per_ms: 60_000 };
        assert_eq!((r.interval_us(), r.tolerance_us()), (6_000_000, 54_000_000));
        let one = BucketRate { requests: 1, per_ms: 1_000 };
        assert_eq!((one.interval_us(), one.tolerance_us()), (1_000_000, 0));
        // More requests than microseconds in the window: one microsecond apart, never zero.
        let dense = BucketRate { requests: u32::MAX, per_ms: 1_000 };
        assert_eq!(dense.interval_us(), 1);
    }
}
