//! `logs.tail`.

use clawgate_protocol::methods::logs::{LogsTailParams, LogsTailResult};

use crate::error::CoreError;
use crate::settings::SharedSettings;

/// `logs.tail {cursor?, limit? (1..5000), maxBytes? (1..1000000)}` → lines of clawgate's log.
pub async fn logs_tail(settings: &SharedSettings, p: LogsTailParams) -> Result<LogsTailResult, CoreError> {
    let limit = p.limit.unwrap_or(200);
    let max_bytes = p.max_bytes.unwrap_or(250_000);
    if !(1..=5000).contains(&limit) {
        return Err(CoreError::invalid("invalid logs.tail params: limit must be between 1 and 5000"));
    }
    if !(1..=1_000_000).contains(&max_bytes) {
        return Err(CoreError::invalid("invalid logs.tail params: maxBytes must be between 1 and 1000000"));
    }
    let Some(path) = settings.get().log_file.clone() else {
        return Err(CoreError::Unavailable("file logging is off (set logging.file or run with a state dir)".into()));
    };
    let cursor = p.cursor;
    let page = tokio::task::spawn_blocking({
        let path = path.clone();
        move || crate::logs::tail(&path, cursor, limit, max_bytes)
    })
    .await
    .map_err(CoreError::internal)?
    .map_err(CoreError::internal)?;
    Ok(LogsTailResult {
        file: path.display().to_string(),
        cursor: page.cursor,
        size: page.size,
        lines: page.lines,
        truncated: page.truncated,
        reset: page.reset,
        skipped_bytes: page.skipped_bytes,
    })
}
