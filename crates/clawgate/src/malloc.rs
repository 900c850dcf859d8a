//! The gateway's malloc settings (glibc on Linux).
//!
//! glibc's malloc raises its mmap threshold to the size of every large block freed (up to
//! 32 MiB). After the first large request body is freed, buffers of that size (a 20 MB chat
//! completion, a 25 MiB WebSocket frame, the JSON sent to the model) come from the heap arenas
//! instead of their own mappings, fragment them, and stay resident after they are freed. Measured
//! (tests/hostile_bodies.rs): one 25 MiB `chat.send` left VmRSS at 489 MB (VmHWM 514 MB); with
//! the threshold pinned at 1 MiB it stays under 250 MB and four concurrent 20 MB chat
//! completions fall back to 49 MB resident after they finish (205 MB before). mimalloc as the
//! global allocator was measured too and did worse (VmHWM 431 MB, 381 MB retained).
//!
//! glibc reads the setting from `MALLOC_MMAP_THRESHOLD_` at process start, and calling
//! `mallopt` would need `unsafe` (forbidden in this workspace), so the gateway re-executes itself
//! once with the variable set. Closes the class "memory taken by one burst of large requests is
//! kept for the life of the process". An operator who sets the variable keeps their value.

/// The environment variable glibc reads.
const VAR: &str = "MALLOC_MMAP_THRESHOLD_";
/// Blocks from this size up get their own mapping, returned to the system when freed.
const THRESHOLD: &str = "1048576";

/// Re-execute the running binary with the threshold pinned, unless it is set already. Returns
/// only when the re-exec was not needed or failed (the binary was replaced or removed); the
/// gateway then runs with glibc's defaults.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn pin_mmap_threshold() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(VAR).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    let error = command.args(args).env(VAR, THRESHOLD).exec();
    eprintln!("clawgate: cannot pin the malloc mmap threshold ({error}); large requests may stay resident");
}

/// Other platforms: their allocators need no setting.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn pin_mmap_threshold() {}
