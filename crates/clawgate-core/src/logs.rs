//! Reading clawgate's own log file by cursor, for `logs.tail` (contract `LogsTailResult`).

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// One page of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPage {
    /// Byte offset to ask for next time.
    pub cursor: u64,
    /// File size now.
    pub size: u64,
    /// Complete lines.
    pub lines: Vec<String>,
    /// Whether lines were left out because of `limit` or `max_bytes`.
    pub truncated: bool,
    /// Whether the cursor was past the end (the file was rotated or truncated).
    pub reset: bool,
    /// Bytes skipped before the first returned line.
    pub skipped_bytes: u64,
}

/// Read lines from `path`. Without a cursor: the last `limit` lines within the last `max_bytes`.
/// With a cursor: the complete lines after it, at most `limit` / `max_bytes`.
pub fn tail(path: &Path, cursor: Option<u64>, limit: usize, max_bytes: u64) -> std::io::Result<LogPage> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(LogPage { cursor: 0, size: 0, lines: vec![], truncated: false, reset: false, skipped_bytes: 0 });
        }
        Err(e) => return Err(e),
    };
    let size = file.metadata()?.len();
    let limit = limit.max(1);
    let (mut start, reset) = match cursor {
        Some(c) if c > size => (0, true),
        Some(c) => (c, false),
        None => (size.saturating_sub(max_bytes), false),
    };
    let tail_mode = cursor.is_none();
    let end = if tail_mode { size } else { (start + max_bytes).min(size) };
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::with_capacity((end - start) as usize);
    file.by_ref().take(end - start).read_to_end(&mut buf)?;
    let mut skipped = 0u64;
    // Starting mid-file in tail mode: drop the partial first line.
    if tail_mode && start > 0 {
        match buf.iter().position(|b| *b == b'\n') {
            Some(nl) => {
                skipped = nl as u64 + 1;
                buf.drain(..=nl);
                start += skipped;
            }
            None => buf.clear(),
        }
    }
    // Only complete lines: stop at the last newline.
    let complete = buf.iter().rposition(|b| *b == b'\n').map(|i| i + 1).unwrap_or(0);
    buf.truncate(complete);
    let mut lines: Vec<String> =
        String::from_utf8_lossy(&buf).lines().filter(|l| !l.is_empty()).map(str::to_owned).collect();
    let mut truncated = skipped > 0 || (!tail_mode && end < size);
    let mut next_cursor = start + complete as u64;
    if lines.len() > limit {
        truncated = true;
        if tail_mode {
            lines.drain(..lines.len() - limit);
        } else {
            // Cursor mode pages forward: keep the first `limit` lines and point after them.
            let kept: usize = lines[..limit].iter().map(|l| l.len() + 1).sum();
            lines.truncate(limit);
            next_cursor = start + kept as u64;
        }
    }
    if tail_mode {
        next_cursor = size;
    }
    Ok(LogPage { cursor: next_cursor, size, lines, truncated, reset, skipped_bytes: skipped })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(lines: &[&str]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        for l in lines {
            writeln!(f, "{l}").unwrap();
        }
        f
    }

    #[test]
    fn tail_returns_last_lines_and_cursor_at_end() {
        let f = file_with(&["a", "b", "c", "d"]);
        let page = tail(f.path(), None, 2, 1_000).unwrap();
        assert_eq!(page.lines, vec!["c", "d"]);
        assert_eq!(page.cursor, page.size);
        assert!(page.truncated);
    }

    #[test]
    fn cursor_reads_only_new_complete_lines() {
        let mut f = file_with(&["a", "b"]);
        let first = tail(f.path(), None, 10, 1_000).unwrap();
        write!(f, "c\npartial").unwrap();
        let next = tail(f.path(), Some(first.cursor), 10, 1_000).unwrap();
        assert_eq!(next.lines, vec!["c"]);
        assert_eq!(next.cursor, first.cursor + 2);
    }

    #[test]
    fn small_max_bytes_drops_partial_first_line() {
        let f = file_with(&["aaaaaaaa", "bb", "cc"]);
        let page = tail(f.path(), None, 10, 7).unwrap();
        assert_eq!(page.lines, vec!["bb", "cc"]);
        assert!(page.skipped_bytes > 0);
    }

    #[test]
    fn cursor_past_end_resets() {
        let f = file_with(&["a"]);
        let page = tail(f.path(), Some(10_000), 10, 1_000).unwrap();
        assert!(page.reset);
        assert_eq!(page.lines, vec!["a"]);
    }

    #[test]
    fn missing_file_is_empty() {
        let page = tail(Path::new("/nonexistent/clawgate.log"), None, 10, 1_000).unwrap();
        assert!(page.lines.is_empty());
    }
}
