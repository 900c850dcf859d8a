//! Crash points for the durability tests.
//!
//! The end-to-end tests prove that a `kill -9` at any step of the inbound → reply path loses
//! and repeats nothing. To stop the real binary at an exact step they start it with
//! `CLAWGATE_CRASH_AT=<point>`; when execution reaches that point the process aborts at once,
//! as a `kill -9` there would. Without the variable a point costs one load of a cached
//! `OnceLock`. The points, in path order:
//!
//! | point | where |
//! |---|---|
//! | `telegram.fetched` | updates fetched from `getUpdates`, none recorded yet |
//! | `inbox.recorded` | an inbound message recorded in the inbox, not yet routed |
//! | `run.finished` | the agent run finished, its reply not yet queued in the outbox |
//! | `outbox.queued` | a reply queued in the outbox, not yet sent |
//! | `outbox.accepted` | the platform accepted a send, the outbox row not yet marked sent (the one window in which a duplicate can arise) |
//! | `comfy.outputs_stored` | a finished ComfyUI job's images fetched into the state dir, not yet queued for delivery |
//! | `comfy.delivery_queued` | a finished job's images queued in the outbox, the job not yet marked completed |
//! | `comfy.prompt_accepted` | a worker accepted a job's prompt, the store not yet told (the job is still dispatched) |

use std::sync::OnceLock;

/// Name of the environment variable naming the crash point.
pub const CRASH_ENV: &str = "CLAWGATE_CRASH_AT";

fn armed() -> Option<&'static str> {
    static POINT: OnceLock<Option<String>> = OnceLock::new();
    POINT.get_or_init(|| std::env::var(CRASH_ENV).ok().filter(|s| !s.is_empty())).as_deref()
}

/// Abort the process here if `CLAWGATE_CRASH_AT` names this point.
pub fn crash_point(point: &str) {
    if armed() == Some(point) {
        eprintln!("clawgate: {CRASH_ENV}={point} reached; aborting as a kill -9 would");
        std::process::abort();
    }
}
