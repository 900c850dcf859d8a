//! Whether the storage works: "degraded" from the first write that fails for a storage reason
//! (disk full, I/O) until the next write that succeeds.
//!
//! Class closed: *a storage outage that only the failing request knows about*. Without this, a
//! full disk showed up as one opaque error per request, readiness said "ready" throughout, and
//! nothing told the operator why. Here every degrading fault is recorded with its reason (which
//! `/readyz` reports), the log says so once per episode (not once per request), and the next
//! successful write ends the episode by itself — nothing is latched that needs a restart.

use std::sync::Mutex;

use crate::error::{Fault, StoreError};

/// The storage health of one store (shared by its clones).
#[derive(Debug, Default)]
pub struct StorageHealth {
    degraded: Mutex<Option<Degraded>>,
}

/// Why the store is degraded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Degraded {
    /// The kind of fault.
    pub fault: Fault,
    /// `"disk full: <driver detail>"`; safe to show to the operator (no data, no secrets).
    pub reason: String,
}

impl StorageHealth {
    /// Notes the outcome of a write: a degrading fault starts (or continues) an episode, a
    /// success ends one. Other errors (a constraint, a busy lock, not found) change nothing.
    pub fn observe<T>(&self, outcome: &Result<T, StoreError>) {
        match outcome {
            Ok(_) => self.write_succeeded(),
            Err(e) => self.write_failed(e),
        }
    }

    fn write_failed(&self, err: &StoreError) {
        let Some(fault) = err.fault().filter(|f| f.degrades()) else { return };
        let detail = match err {
            StoreError::Unavailable { source, .. } => source.to_string(),
            other => other.to_string(),
        };
        let reason = format!("{fault}: {detail}");
        let mut state = self.degraded.lock().unwrap_or_else(|p| p.into_inner());
        if state.is_none() {
            match fault {
                Fault::DiskFull => tracing::error!(
                    reason = %reason,
                    "disk full; storage degraded: writes fail until space is freed (clawgate recovers by itself)"
                ),
                _ => {
                    tracing::error!(reason = %reason, "storage I/O error; storage degraded: writes fail until it clears")
                }
            }
        }
        *state = Some(Degraded { fault, reason });
    }

    fn write_succeeded(&self) {
        let mut state = self.degraded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(was) = state.take() {
            tracing::warn!(was = %was.reason, "storage recovered: writes succeed again");
        }
    }

    /// `Some` while degraded.
    pub fn degraded(&self) -> Option<Degraded> {
        self.degraded.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_episode_starts_on_a_degrading_fault_and_ends_on_the_next_success() {
        let h = StorageHealth::default();
        h.observe::<()>(&Err(StoreError::Conflict("x".into())));
        assert_eq!(h.degraded(), None, "a conflict is an answer, not an outage");
        h.observe::<()>(&Err(StoreError::from(std::io::Error::from_raw_os_error(28))));
        let d = h.degraded().expect("degraded");
        assert_eq!(d.fault, Fault::DiskFull);
        assert!(d.reason.starts_with("disk full: "), "{}", d.reason);
        h.observe(&Ok(()));
        assert_eq!(h.degraded(), None);
    }
}
