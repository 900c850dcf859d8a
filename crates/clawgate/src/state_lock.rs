//! One gateway per state directory: an exclusive advisory lock on `<state>/gateway.lock`.
//!
//! Two gateways on one state directory would both drive the same channel accounts (Telegram
//! answers the second poller with 409s, both send the outbox) and both run cron. The lock is the
//! operating system's (`flock` on Unix, through `std::fs::File::try_lock`), held by an open file,
//! so it dies with the process: a gateway killed with `kill -9` or by the OOM killer never leaves
//! a stale lock behind, and no pid check or cleanup is needed. The file's contents (pid and port
//! of the holder) are only there to tell the operator who holds it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The lock file's name inside the state directory.
pub const LOCK_FILE: &str = "gateway.lock";

/// Attempts to take the lock, [`LOCK_RETRY`] apart, before it counts as held.
const LOCK_TRIES: u32 = 5;
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(20);

/// What the lock file says about the gateway holding it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    /// The holder's process id.
    pub pid: u32,
    /// The port it listens on, once it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl Holder {
    /// `pid 1234, port 18789` (or `pid 1234` before it listens).
    pub fn describe(&self) -> String {
        match self.port {
            Some(port) => format!("pid {}, port {port}", self.pid),
            None => format!("pid {}", self.pid),
        }
    }
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it; `holder` is what its lock file says (`None` when it has not
    /// written it yet, or it cannot be read).
    #[error("{}", held_message(path, holder.as_ref()))]
    Held { path: PathBuf, holder: Option<Holder> },
    /// The lock file cannot be opened or locked at all (permissions, a filesystem without locks).
    #[error("cannot lock {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

fn held_message(path: &Path, holder: Option<&Holder>) -> String {
    let state = path.parent().unwrap_or(Path::new(".")).display();
    let who = holder.map_or_else(|| "another clawgate gateway".to_owned(), |h| format!("a gateway ({})", h.describe()));
    let stop = holder.map_or_else(|| "stop it".to_owned(), |h| format!("stop it (kill {})", h.pid));
    format!(
        "{who} is already running on the state directory {state}; {stop} or give this one its own --state-dir \
         (one gateway per state directory: both would drive the same chat accounts and cron)"
    )
}

/// The held lock. Dropping it (or the process ending, however it ends) releases it.
#[derive(Debug)]
pub struct StateLock {
    /// The open file the OS lock belongs to: closing it is what releases the lock.
    file: File,
}

impl StateLock {
    /// Takes the lock of `state_dir` without waiting, and writes this process's pid into it.
    pub fn acquire(state_dir: &Path) -> Result<StateLock, LockError> {
        let path = state_dir.join(LOCK_FILE);
        let io = |source| LockError::Io { path: path.clone(), source };
        // Not truncated on open: the holder's contents must survive a refused second opener.
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        // A few tries: `holder` (doctor) holds a shared lock for an instant to look, which
        // must not make a starting gateway give up. A running gateway holds it for good.
        let mut tries = LOCK_TRIES;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if tries > 1 => {
                    tries -= 1;
                    std::thread::sleep(LOCK_RETRY);
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(LockError::Held { holder: read_holder(&path), path });
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        let mut lock = StateLock { file };
        lock.record(&Holder { pid: std::process::id(), port: None }).map_err(io)?;
        Ok(lock)
    }

    /// Records the port this gateway listens on, for the message a second one prints.
    pub fn set_port(&mut self, port: u16) -> std::io::Result<()> {
        self.record(&Holder { pid: std::process::id(), port: Some(port) })
    }

    fn record(&mut self, holder: &Holder) -> std::io::Result<()> {
        let text = serde_json::to_string(holder).map_err(std::io::Error::other)?;
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(format!("{text}\n").as_bytes())?;
        self.file.flush()
    }
}

/// Whether a gateway holds the lock of `state_dir` right now, and what it wrote. Takes and
/// releases the lock when it is free, so the answer is exact at the moment of asking.
pub fn holder(state_dir: &Path) -> Result<Option<Holder>, LockError> {
    let path = state_dir.join(LOCK_FILE);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(LockError::Io { path, source }),
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(None),
        Err(TryLockError::WouldBlock) => Ok(Some(read_holder(&path).unwrap_or_default())),
        Err(TryLockError::Error(source)) => Err(LockError::Io { path, source }),
    }
}

fn read_holder(path: &Path) -> Option<Holder> {
    let mut text = String::new();
    File::open(path).ok()?.take(4096).read_to_string(&mut text).ok()?;
    serde_json::from_str(text.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = StateLock::acquire(dir.path()).expect("first lock");
        first.set_port(18789).unwrap();
        // flock locks belong to the open file, so a second open in the same process conflicts
        // exactly as another process would.
        let err = StateLock::acquire(dir.path()).expect_err("second lock refused");
        let LockError::Held { holder, .. } = &err else { panic!("{err}") };
        assert_eq!(holder.as_ref(), Some(&Holder { pid: std::process::id(), port: Some(18789) }));
        let message = err.to_string();
        assert!(message.contains(&format!("pid {}, port 18789", std::process::id())), "{message}");
        assert!(message.contains("--state-dir"), "says what to do: {message}");
        assert_eq!(holder_of(dir.path()), Some(Holder { pid: std::process::id(), port: Some(18789) }));
        drop(first);
        assert_eq!(holder_of(dir.path()), None, "released on drop");
        StateLock::acquire(dir.path()).expect("free again");
    }

    fn holder_of(dir: &Path) -> Option<Holder> {
        holder(dir).expect("probe")
    }
}
