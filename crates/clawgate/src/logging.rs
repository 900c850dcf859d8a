//! Logging: human-readable lines on stderr, JSON lines in the log file (`logs.tail` reads it).

use std::io::IsTerminal;
use std::path::Path;

use clawgate_config::LogRotateConfig;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::log_rotate::RotatingFile;

/// Lines a background log writer holds before it drops new ones (counted, never blocking a
/// request). `tracing_appender`'s default of 128 000 preallocates 4 MB per writer, which was a
/// third of the gateway's idle memory; 8 192 lines (256 KiB) absorb any burst the writer thread
/// cannot drain between two wake-ups.
const LOG_QUEUE_LINES: usize = 8192;

/// A background writer for `w` with the bounded queue above.
fn background<W: std::io::Write + Send + 'static>(
    w: W,
) -> (tracing_appender::non_blocking::NonBlocking, tracing_appender::non_blocking::WorkerGuard) {
    tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .lossy(true)
        .finish(w)
}

/// Keeps the background log writers flushing; drop it last.
pub struct Guards(#[allow(dead_code)] Vec<tracing_appender::non_blocking::WorkerGuard>);

/// Logging for short CLI commands: warnings and errors on stderr.
pub fn init_cli() {
    let filter = EnvFilter::try_from_env("CLAWGATE_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .try_init();
}

/// Logging for the gateway: `level` (or `CLAWGATE_LOG`) on stderr and as JSON into `file`,
/// rotated by size as `rotate` says.
pub fn init_gateway(level: &str, file: Option<&Path>, rotate: &LogRotateConfig) -> anyhow::Result<Guards> {
    let filter = || EnvFilter::try_from_env("CLAWGATE_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    // stderr goes through a background writer too: a burst of connection logs must never make a
    // request wait on the terminal.
    let (stderr_writer, stderr_guard) = background(std::io::stderr());
    let stderr = tracing_subscriber::fmt::layer().with_ansi(std::io::stderr().is_terminal()).with_writer(stderr_writer);
    match file {
        Some(path) => {
            let dir = path.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir)?;
            if path.file_name().is_none() {
                anyhow::bail!("log file path has no file name: {}", path.display());
            }
            let file = RotatingFile::open(path, rotate.max_bytes, rotate.keep)
                .map_err(|e| anyhow::anyhow!("cannot open the log file {}: {e}", path.display()))?;
            let (writer, guard) = background(file);
            let json = tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_writer(writer);
            tracing_subscriber::registry()
                .with(stderr.with_filter(filter()))
                .with(json.with_filter(filter()))
                .try_init()
                .map_err(|e| anyhow::anyhow!("logging already initialised: {e}"))?;
            Ok(Guards(vec![guard, stderr_guard]))
        }
        None => {
            tracing_subscriber::registry()
                .with(stderr.with_filter(filter()))
                .try_init()
                .map_err(|e| anyhow::anyhow!("logging already initialised: {e}"))?;
            Ok(Guards(vec![stderr_guard]))
        }
    }
}
