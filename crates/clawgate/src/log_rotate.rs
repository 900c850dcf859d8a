//! The log file, rotated by size: `clawgate.log` → `clawgate.log.1` → … → `clawgate.log.<keep>`.
//!
//! `tracing_appender::rolling` rotates by time only (minutely/hourly/daily), which bounds
//! neither a burst nor a quiet month; an operator asks "how much disk may the logs take", which
//! is `maxBytes × (keep + 1)`. This writer sits behind `tracing_appender::non_blocking`, so it
//! runs on that crate's writer thread and never blocks a request: the renames happen there.
//!
//! Each `write` carries one whole formatted event (the fmt layer formats an event into a buffer
//! and the non-blocking worker hands that buffer over in one call), and rotation happens only
//! between writes, so a line never straddles two files and none is lost across a rotation: the
//! old file is renamed while still open (its handle keeps pointing at the renamed file), and
//! only a successfully opened new file replaces it. When a rename or the open fails (permissions,
//! a full disk), the writer keeps appending to the file it has — a log that grows past its cap
//! is better than a lost line — says so once on stderr, and tries again at the next cap.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A log file that rotates itself when the next write would take it past `max_bytes`.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    /// 0: never rotate (an external `logrotate` with `copytruncate` owns the file).
    max_bytes: u64,
    /// Rotated files kept besides the live one.
    keep: u32,
    file: File,
    /// Bytes in the live file: its size at open plus what this writer appended.
    len: u64,
    /// Whether a failed rotation was already reported (once per failing streak).
    failure_reported: bool,
}

impl RotatingFile {
    /// Opens (creating) `path` for appending.
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> io::Result<RotatingFile> {
        let file = open_append(path)?;
        let len = file.metadata()?.len();
        Ok(RotatingFile { path: path.to_path_buf(), max_bytes, keep, file, len, failure_reported: false })
    }

    /// `<path>.<n>`.
    fn numbered(&self, n: u32) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        if self.keep == 0 {
            // Nothing to keep: start the same file over (appends go to the new end).
            self.file.set_len(0)?;
            self.len = 0;
            return Ok(());
        }
        remove_if_present(&self.numbered(self.keep))?;
        for n in (1..self.keep).rev() {
            rename_if_present(&self.numbered(n), &self.numbered(n + 1))?;
        }
        std::fs::rename(&self.path, self.numbered(1))?;
        // Until this succeeds, `self.file` still writes into the renamed `.1`: nothing is lost.
        self.file = open_append(&self.path)?;
        self.len = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let incoming = u64::try_from(buf.len()).unwrap_or(u64::MAX);
        // A line longer than the cap still goes whole into a file of its own.
        if self.max_bytes > 0 && self.len > 0 && self.len.saturating_add(incoming) > self.max_bytes {
            match self.rotate() {
                Ok(()) => self.failure_reported = false,
                Err(e) if !self.failure_reported => {
                    self.failure_reported = true;
                    eprintln!("clawgate: cannot rotate the log file {}: {e}; still writing to it", self.path.display());
                }
                Err(_) => {}
            }
        }
        self.file.write_all(buf)?;
        self.len = self.len.saturating_add(incoming);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_present(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(i: usize) -> String {
        format!("{{\"n\":{i},\"message\":\"{}\"}}\n", "x".repeat(i % 37))
    }

    /// Every line of the live file and the kept ones, oldest first.
    fn all_lines(path: &Path, keep: u32) -> Vec<String> {
        let mut files: Vec<PathBuf> =
            (1..=keep).rev().map(|n| PathBuf::from(format!("{}.{n}", path.display()))).collect();
        files.push(path.to_path_buf());
        files
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .flat_map(|text| text.lines().map(str::to_owned).collect::<Vec<_>>())
            .collect()
    }

    #[test]
    fn writing_past_the_cap_rotates_keeps_at_most_keep_files_and_splits_no_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clawgate.log");
        let (max, keep) = (1000u64, 3u32);
        let mut w = RotatingFile::open(&path, max, keep).unwrap();
        let written: Vec<String> = (0..400).map(line).collect();
        for l in &written {
            w.write_all(l.as_bytes()).unwrap();
        }
        w.flush().unwrap();

        let mut names: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        names.sort();
        assert_eq!(names, ["clawgate.log", "clawgate.log.1", "clawgate.log.2", "clawgate.log.3"]);
        for name in &names {
            let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
            assert!(text.len() as u64 <= max, "{name} is {} bytes, over the cap", text.len());
            assert!(text.ends_with('\n'), "{name} ends on a whole line");
        }
        // What is kept is exactly the newest lines, in order, none missing or torn.
        let kept = all_lines(&path, keep);
        let tail: Vec<&str> = written[written.len() - kept.len()..].iter().map(|l| l.trim_end()).collect();
        assert_eq!(kept, tail);
        assert!(kept.len() > 30, "the kept files hold most of their cap: {}", kept.len());
    }

    #[test]
    fn nothing_is_lost_across_a_single_rotation_and_reopening_continues_the_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.log");
        std::fs::write(&path, "old-1\nold-2\n").unwrap();
        // The size already on disk counts: the first write past the cap rotates.
        let mut w = RotatingFile::open(&path, 4096, 5).unwrap();
        let big = format!("{}\n", "y".repeat(4080));
        w.write_all(big.as_bytes()).unwrap();
        w.write_all(b"after\n").unwrap();
        w.flush().unwrap();
        assert_eq!(std::fs::read_to_string(format!("{}.1", path.display())).unwrap(), format!("old-1\nold-2\n{big}"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
        assert!(!PathBuf::from(format!("{}.2", path.display())).exists());
    }

    #[test]
    fn keep_zero_starts_the_file_over_and_zero_max_never_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut w = RotatingFile::open(&path, 4096, 0).unwrap();
        for i in 0..200 {
            w.write_all(line(i).as_bytes()).unwrap();
        }
        w.flush().unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no rotated files");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() <= 4096 && text.ends_with(&line(199)), "the newest lines, under the cap");

        let path = dir.path().join("b.log");
        let mut w = RotatingFile::open(&path, 0, 5).unwrap();
        for i in 0..200 {
            w.write_all(line(i).as_bytes()).unwrap();
        }
        w.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 200);
        assert!(!PathBuf::from(format!("{}.1", path.display())).exists());
    }

    #[test]
    fn a_failing_rotation_keeps_writing_to_the_current_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut w = RotatingFile::open(&path, 4096, 2).unwrap();
        // `.2` is a non-empty directory: removing it fails, so the rotation cannot happen.
        std::fs::create_dir_all(dir.path().join("c.log.2").join("x")).unwrap();
        for i in 0..300 {
            w.write_all(line(i).as_bytes()).unwrap();
        }
        w.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 300, "every line is still in the live file");
    }
}
