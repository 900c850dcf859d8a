//! Watching the config file and reloading it when it changes.
//!
//! We watch the file's directory, not the file: editors often save by writing a new file and
//! renaming it over the old one, which would silently end a watch on the old inode. Events are
//! debounced (an editor save is several events), then the file is read and compared by hash,
//! so only real content changes produce a [`WatchEvent`].

use std::collections::{HashSet, VecDeque};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::edit::write_atomic;
use crate::env::Env;
use crate::error::ConfigError;
use crate::load::{LoadedConfig, hash_text, load_with_env, parse_str_with_env, read_text};
use crate::reload::{ConfigChange, diff};

/// What the watcher reports after the file changed.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "a handful of events per config edit; boxing would only complicate matching"
)]
pub enum WatchEvent {
    /// The file changed and the new version is valid. `changes` is relative to the previous
    /// valid version (it may be empty, e.g. when only comments changed or a broken file was
    /// restored).
    Reloaded {
        /// The new config.
        config: LoadedConfig,
        /// What changed, with reload classes.
        changes: Vec<ConfigChange>,
    },
    /// The file changed but cannot be used; the previous config stays in force.
    Invalid(ConfigError),
}

/// How many self-written hashes to remember; writes are rare, this is only a safety bound.
const MAX_NOTED: usize = 8;
/// Events waiting for the consumer; the watcher waits (and keeps coalescing) when full.
const EVENT_CAPACITY: usize = 16;

/// Watches a config file and sends a [`WatchEvent`] for each change of its content.
///
/// The file's directory is watched, not the file, so editors that save by writing a new file
/// and renaming it over the old one are seen. Events are debounced (a save is several events)
/// and compared by content hash, so only real changes are reported. Dropping the watcher
/// stops watching and closes the event channel.
#[derive(Debug)]
pub struct ConfigWatcher {
    path: PathBuf,
    /// Hashes of versions we wrote ourselves, whose reload must not be reported.
    written: Arc<Mutex<VecDeque<String>>>,
    /// Kept alive for the OS watch; dropping it ends the event stream into the task.
    _watcher: RecommendedWatcher,
    task: tokio::task::AbortHandle,
}

/// Options for [`ConfigWatcher`]; start with [`ConfigWatcher::builder`].
#[derive(Debug)]
pub struct ConfigWatcherBuilder {
    path: PathBuf,
    debounce: Duration,
    env: Env,
    baseline: Option<LoadedConfig>,
}

impl ConfigWatcherBuilder {
    /// How long the file must be quiet before it is read (default 300 ms).
    #[must_use]
    pub fn debounce(mut self, debounce: Duration) -> Self {
        self.debounce = debounce;
        self
    }

    /// The environment overlay to apply on reload (default: none). Pass the same [`Env`] the
    /// initial load used, or reloads will differ from it.
    #[must_use]
    pub fn env(mut self, env: Env) -> Self {
        self.env = env;
        self
    }

    /// The config currently in force, which changes are diffed against. Without it the
    /// watcher loads the file itself when spawned; passing the caller's own load also means a
    /// change made between that load and the spawn is still reported.
    #[must_use]
    pub fn baseline(mut self, loaded: LoadedConfig) -> Self {
        self.baseline = Some(loaded);
        self
    }

    /// Starts watching. Must be called within a Tokio runtime. Creates the file's directory
    /// (mode 0700 on Unix) if it does not exist, since a directory is what is watched.
    ///
    /// # Errors
    /// [`ConfigError::Watch`] if the OS watch cannot be set up.
    pub fn spawn(self) -> Result<(ConfigWatcher, mpsc::Receiver<WatchEvent>), ConfigError> {
        let path = self.path;
        let watch_error = |source: notify::Error| ConfigError::Watch { path: path.clone(), source };

        // Watch the link's directory and, for a symlinked config, the target's too.
        let mut targets = vec![path.clone()];
        if let Ok(real) = std::fs::canonicalize(&path)
            && real.parent() != path.parent()
        {
            targets.push(real);
        }
        let names: HashSet<OsString> = targets.iter().filter_map(|p| p.file_name().map(ToOwned::to_owned)).collect();

        let (poke_tx, poke_rx) = mpsc::channel::<()>(1);
        let mut watcher = notify::recommended_watcher(move |result: notify::Result<notify::Event>| {
            let relevant = match &result {
                Ok(event) => {
                    is_content_event(event.kind)
                        && event.paths.iter().any(|p| p.file_name().is_some_and(|name| names.contains(name)))
                }
                Err(err) => {
                    // Possibly missed events: re-read to be sure.
                    tracing::warn!(error = %err, "config watcher error");
                    true
                }
            };
            if relevant {
                // Full means a check is already pending, which will see this change too.
                let _ = poke_tx.try_send(());
            }
        })
        .map_err(watch_error)?;
        for target in &targets {
            let dir = parent_dir(target);
            if !dir.exists() {
                create_dir(&dir).map_err(|e| watch_error(notify::Error::io(e)))?;
            }
            watcher.watch(&dir, RecursiveMode::NonRecursive).map_err(watch_error)?;
        }

        let (baseline, last_hash) = match self.baseline {
            Some(loaded) => {
                let hash = loaded.hash.clone();
                (loaded, Some(hash))
            }
            None => match load_with_env(&path, &self.env) {
                Ok(loaded) => {
                    let hash = loaded.hash.clone();
                    (loaded, Some(hash))
                }
                // Report the current problem through the channel on the first check.
                Err(_) => (LoadedConfig::defaults(&path), None),
            },
        };

        let written = Arc::new(Mutex::new(VecDeque::new()));
        let (events_tx, events_rx) = mpsc::channel(EVENT_CAPACITY);
        let reloader = Reloader {
            path: path.clone(),
            env: self.env,
            baseline,
            last_hash,
            written: Arc::clone(&written),
            events: events_tx,
            warned_missing: false,
        };
        // A change between the caller's load and the watch being set up is caught by
        // checking once right away.
        let task = tokio::spawn(reloader.run(poke_rx, self.debounce, true)).abort_handle();
        Ok((ConfigWatcher { path, written, _watcher: watcher, task }, events_rx))
    }
}

impl ConfigWatcher {
    /// Watches `path`, debouncing by `debounce`, with no environment overlay and the file's
    /// current contents as the baseline. See [`builder`](Self::builder) for more control.
    ///
    /// # Errors
    /// [`ConfigError::Watch`] if the OS watch cannot be set up.
    pub fn spawn(
        path: impl Into<PathBuf>,
        debounce: Duration,
    ) -> Result<(Self, mpsc::Receiver<WatchEvent>), ConfigError> {
        Self::builder(path).debounce(debounce).spawn()
    }

    /// Starts configuring a watcher for `path`.
    pub fn builder(path: impl Into<PathBuf>) -> ConfigWatcherBuilder {
        ConfigWatcherBuilder {
            path: path.into(),
            debounce: Duration::from_millis(300),
            env: Env::empty(),
            baseline: None,
        }
    }

    /// The watched file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Declares that the file version with this hash (see [`crate::hash_text`]) was written by
    /// us and already applied: when the watcher sees it, it adopts it as the new baseline
    /// without sending an event. Call it before writing, or use [`write`](Self::write).
    pub fn note_written(&self, hash: &str) {
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        if written.len() == MAX_NOTED {
            written.pop_front();
        }
        written.push_back(hash.to_owned());
    }

    /// Writes `text` to the watched file atomically (see [`write_atomic`]) as a self-write
    /// that produces no event, and returns its hash. Blocking file I/O.
    ///
    /// # Errors
    /// Any I/O error from the write.
    pub fn write(&self, text: &str) -> std::io::Result<String> {
        let hash = hash_text(text);
        self.note_written(&hash);
        write_atomic(&self.path, text)?;
        Ok(hash)
    }
}

impl Drop for ConfigWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The state of the reload task.
struct Reloader {
    path: PathBuf,
    env: Env,
    /// The last valid config; changes are diffed against it.
    baseline: LoadedConfig,
    /// Hash of the last version acted on (valid or not), to skip events that changed nothing.
    last_hash: Option<String>,
    written: Arc<Mutex<VecDeque<String>>>,
    events: mpsc::Sender<WatchEvent>,
    warned_missing: bool,
}

/// What reading the file found.
enum Read {
    Missing,
    Failed(ConfigError),
    Text(String),
}

impl Reloader {
    async fn run(mut self, mut pokes: mpsc::Receiver<()>, debounce: Duration, check_first: bool) {
        let mut pending = check_first;
        loop {
            if !pending && pokes.recv().await.is_none() {
                return;
            }
            pending = false;
            // Wait until the file has been quiet for `debounce`.
            loop {
                match tokio::time::timeout(debounce, pokes.recv()).await {
                    Ok(Some(())) => {}
                    Ok(None) => return,
                    Err(_elapsed) => break,
                }
            }
            if !self.check().await {
                return;
            }
        }
    }

    /// Reads the file and reports a change if there is one. Returns `false` when nobody is
    /// listening any more.
    async fn check(&mut self) -> bool {
        let path = self.path.clone();
        let read = tokio::task::spawn_blocking(move || match read_text(&path) {
            Ok(Some(text)) => Read::Text(text),
            Ok(None) => Read::Missing,
            Err(err) => Read::Failed(err),
        })
        .await;
        let text = match read {
            Ok(Read::Text(text)) => text,
            Ok(Read::Missing) => {
                // Often a moment inside an editor's save; otherwise the user deleted the
                // file. Either way, falling back to defaults live would be a surprise.
                // A file that never existed is not "gone": the config in force is the defaults.
                if !self.warned_missing {
                    if self.baseline.exists {
                        tracing::warn!(path = %self.path.display(), "config file is gone; keeping the current config");
                    } else {
                        tracing::info!(path = %self.path.display(), "no config file yet; watching for it");
                    }
                    self.warned_missing = true;
                }
                return true;
            }
            Ok(Read::Failed(err)) => {
                self.last_hash = None;
                return self.events.send(WatchEvent::Invalid(err)).await.is_ok();
            }
            Err(join) => {
                tracing::error!(error = %join, "config reload task failed");
                return true;
            }
        };
        self.warned_missing = false;
        let hash = hash_text(&text);
        if self.last_hash.as_deref() == Some(hash.as_str()) {
            return true;
        }
        self.last_hash = Some(hash.clone());
        let self_written = {
            let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
            match written.iter().position(|h| *h == hash) {
                Some(i) => {
                    written.remove(i);
                    true
                }
                None => false,
            }
        };
        match parse_str_with_env(&text, &self.path, &self.env) {
            Ok(loaded) => {
                let changes = diff(&self.baseline.value, &loaded.value);
                self.baseline = loaded.clone();
                if self_written {
                    tracing::debug!(hash = %hash, "config reload skipped: written by us");
                    return true;
                }
                let event = WatchEvent::Reloaded { config: loaded, changes };
                self.events.send(event).await.is_ok()
            }
            Err(err) => self.events.send(WatchEvent::Invalid(err)).await.is_ok(),
        }
    }
}

/// Whether an event can mean the file's content changed. Our own reads produce `Open` and
/// `Close(Read)` events, which must not trigger a reload (that would loop).
fn is_content_event(kind: EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(unix)]
fn create_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_reads_do_not_count_as_changes() {
        use notify::event::{CreateKind, ModifyKind};
        assert!(!is_content_event(EventKind::Access(AccessKind::Open(AccessMode::Any))));
        assert!(!is_content_event(EventKind::Access(AccessKind::Close(AccessMode::Read))));
        assert!(is_content_event(EventKind::Access(AccessKind::Close(AccessMode::Write))));
        assert!(is_content_event(EventKind::Modify(ModifyKind::Any)));
        assert!(is_content_event(EventKind::Create(CreateKind::File)));
    }
}
