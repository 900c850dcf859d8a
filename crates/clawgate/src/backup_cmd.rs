//! `clawgate backup FILE` and `clawgate restore FILE`: the state database and the config file in
//! one file, taken while the gateway runs, put back only while none does.
//!
//! The backup is itself a SQLite database (an online `VACUUM INTO` copy, see
//! `clawgate_store::SqliteStore::backup_into`) with the config file's text attached as written,
//! so `{env: …}`/`{file: …}` secret references stay references. What the database holds in clear
//! (the generated gateway token, the media signing key) is in the backup too: it is written
//! readable by its owner only. Media files, logs and the CLI's device identity are not included.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Args;
use clawgate_store::SqliteStore;

use crate::paths;
use crate::state_lock::{LockError, StateLock};

/// The attachment holding the config file's text.
const CONFIG: &str = "config";
/// The attachment naming the config file the text came from.
const CONFIG_PATH: &str = "config.path";
/// The attachment naming the clawgate version that took the backup.
const VERSION: &str = "clawgate.version";

/// Back up the state database and config file into one file, while the gateway runs.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawgate backup ~/clawgate.backup                 # state in ~/.clawgate, gateway running or not
  clawgate backup /srv/backup/cg-$(date +%F).backup --state-dir /srv/clawgate
  clawgate backup ~/clawgate.backup --force         # replace an older backup file

The copy is consistent (one moment of the database) even while the gateway writes. It holds
the database's secrets (the generated gateway token, device records): it is written mode 0600.
Media files and logs are not included. Put it back with `clawgate restore FILE`.")]
pub struct BackupArgs {
    /// The backup file to write
    pub file: PathBuf,
    /// State directory [default: $CLAWGATE_STATE_DIR or ~/.clawgate]
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Config file to include [default: $CLAWGATE_CONFIG or <state-dir>/clawgate.json5]
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Replace FILE if it already exists
    #[arg(long)]
    pub force: bool,
}

/// Put a backup back into a state directory (no gateway may be running on it).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawgate restore ~/clawgate.backup                # into ~/.clawgate; stop the gateway first
  clawgate restore cg.backup --state-dir /srv/clawgate-new
  clawgate restore cg.backup --no-config            # only the database; keep the current config

The file is checked first (a clawgate state this version can run). The current database and
config are kept beside the restored ones as `*.<unix-time>.bak`.")]
pub struct RestoreArgs {
    /// The backup file (from `clawgate backup`)
    pub file: PathBuf,
    /// State directory to restore into [default: $CLAWGATE_STATE_DIR or ~/.clawgate]
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Where the config goes [default: $CLAWGATE_CONFIG or <state-dir>/clawgate.json5]
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Restore only the database; leave the config file as it is
    #[arg(long)]
    pub no_config: bool,
}

pub async fn backup(args: BackupArgs) -> anyhow::Result<i32> {
    let state_dir = paths::state_dir(args.state_dir.as_deref());
    let config_path = paths::config_path(args.config.as_deref(), &state_dir);
    let db = paths::database(&state_dir);
    if !db.is_file() {
        bail!("no state database at {} (has a gateway run with this --state-dir?)", db.display());
    }
    if args.file.exists() && !args.force {
        bail!("{} already exists; pass --force to replace it", args.file.display());
    }
    let mut attachments = BTreeMap::from([(VERSION.to_owned(), env!("CARGO_PKG_VERSION").to_owned())]);
    match std::fs::read_to_string(&config_path) {
        Ok(text) => {
            attachments.insert(CONFIG.to_owned(), text);
            attachments.insert(CONFIG_PATH.to_owned(), config_path.display().to_string());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read the config file {}", config_path.display())),
    }

    // Written under a temporary name and renamed: FILE is never a half-written backup.
    let partial = with_suffix(&args.file, ".partial");
    remove_if_present(&partial)?;
    // SQLite writes into an existing empty file, which keeps the owner-only mode.
    paths::write_private_file(&partial, "").with_context(|| format!("cannot create {}", partial.display()))?;
    let total = file_len(&db) + file_len(&with_suffix(&db, "-wal"));
    let copied = with_progress("backup", &partial, total, SqliteStore::backup_into(&db, &partial, &attachments)).await;
    let info = match copied {
        Ok(info) => info,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            bail!("cannot back up {}: {e}", db.display());
        }
    };
    if args.file.exists() {
        remove_if_present(&args.file)?;
    }
    std::fs::rename(&partial, &args.file)
        .with_context(|| format!("cannot move {} to {}", partial.display(), args.file.display()))?;
    let config_note = if attachments.contains_key(CONFIG) {
        format!("and {}", config_path.display())
    } else {
        format!("(no config file at {})", config_path.display())
    };
    println!(
        "backed up {} (schema {}, {}) {config_note} to {}",
        db.display(),
        info.schema_version,
        size_text(file_len(&args.file)),
        args.file.display()
    );
    println!("it holds the gateway's stored secrets: keep it private (mode 0600)");
    Ok(0)
}

pub async fn restore(args: RestoreArgs) -> anyhow::Result<i32> {
    let state_dir = paths::state_dir(args.state_dir.as_deref());
    let config_path = paths::config_path(args.config.as_deref(), &state_dir);
    // Checked before anything is touched.
    let info = SqliteStore::inspect_state_file(&args.file)
        .await
        .with_context(|| format!("{} is not a clawgate backup this version can restore", args.file.display()))?;
    paths::create_private_dir(&state_dir)
        .with_context(|| format!("cannot create state dir {}", state_dir.display()))?;
    // Held for the whole restore: no gateway can start on the directory halfway through.
    let _lock = match StateLock::acquire(&state_dir) {
        Ok(lock) => lock,
        Err(LockError::Held { holder, .. }) => {
            let who = holder.map_or_else(|| "a gateway".to_owned(), |h| format!("a gateway ({})", h.describe()));
            bail!(
                "{who} is running on {}: stop it first (systemctl --user stop clawgate, or kill its pid), \
                 then run restore again",
                state_dir.display()
            );
        }
        Err(e) => return Err(e.into()),
    };

    let db = paths::database(&state_dir);
    let incoming = with_suffix(&db, ".restoring");
    remove_if_present(&incoming)?;
    paths::write_private_file(&incoming, "").with_context(|| format!("cannot create {}", incoming.display()))?;
    let total = file_len(&args.file);
    with_progress("restore", &incoming, total, copy_into(&args.file, &incoming))
        .await
        .with_context(|| format!("cannot copy {} into {}", args.file.display(), state_dir.display()))?;
    SqliteStore::strip_backup_attachments(&incoming)
        .await
        .with_context(|| format!("cannot prepare {}", incoming.display()))?;

    let stamp = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    let kept = with_suffix(&db, &format!(".{stamp}.bak"));
    if db.exists() {
        // The WAL goes with its database (a killed gateway may have left committed pages in
        // it): a stale WAL beside the restored file would be replayed into it.
        std::fs::rename(&db, &kept).with_context(|| format!("cannot move {} aside", db.display()))?;
        for suffix in ["-wal", "-shm"] {
            let from = with_suffix(&db, suffix);
            if from.exists() {
                std::fs::rename(&from, with_suffix(&kept, suffix))
                    .with_context(|| format!("cannot move {} aside", from.display()))?;
            }
        }
        println!("kept the old database as {}", kept.display());
    }
    std::fs::rename(&incoming, &db)
        .with_context(|| format!("cannot move the restored database to {}", db.display()))?;

    match info.attachments.get(CONFIG) {
        Some(text) if !args.no_config => {
            if config_path.exists() {
                let kept = with_suffix(&config_path, &format!(".{stamp}.bak"));
                std::fs::rename(&config_path, &kept)
                    .with_context(|| format!("cannot move {} aside", config_path.display()))?;
                println!("kept the old config as {}", kept.display());
            }
            if let Some(dir) = config_path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            }
            // It may hold secrets written in clear.
            paths::write_private_file(&config_path, text)
                .with_context(|| format!("cannot write {}", config_path.display()))?;
            let from = info.attachments.get(CONFIG_PATH).map(String::as_str).unwrap_or("the backup");
            println!("restored the config (from {from}) to {}", config_path.display());
        }
        Some(_) => println!("kept the current config (--no-config)"),
        None => println!("the backup has no config file; kept the current one"),
    }
    let upgrade = if info.needs_upgrade { "; the gateway upgrades its schema at the next start" } else { "" };
    println!("restored {} (schema {}){upgrade}", db.display(), info.schema_version);
    println!("start the gateway: clawgate gateway --state-dir {}", state_dir.display());
    Ok(0)
}

/// Copies `from` over the (empty, private) file `to`, keeping `to`'s mode.
async fn copy_into(from: &Path, to: &Path) -> std::io::Result<()> {
    let mut src = tokio::fs::File::open(from).await?;
    let mut dst = tokio::fs::OpenOptions::new().write(true).truncate(true).open(to).await?;
    tokio::io::copy(&mut src, &mut dst).await?;
    dst.sync_all().await
}

/// Runs `work`, and while it takes more than a second prints how far `file` has grown towards
/// `total` bytes, once a second, on stderr.
async fn with_progress<T>(what: &str, file: &Path, total: u64, work: impl Future<Output = T>) -> T {
    with_progress_to(what, file, total, Duration::from_secs(1), work, |line| eprintln!("{line}")).await
}

async fn with_progress_to<T>(
    what: &str,
    file: &Path,
    total: u64,
    every: Duration,
    work: impl Future<Output = T>,
    mut report: impl FnMut(String),
) -> T {
    let mut work = std::pin::pin!(work);
    let started = Instant::now();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tick.tick() => {
                let done = file_len(file);
                let percent = done.saturating_mul(100).checked_div(total).unwrap_or(0).min(100);
                report(format!(
                    "{what}: {} of about {} ({percent}%), {}s",
                    size_text(done),
                    size_text(total),
                    started.elapsed().as_secs()
                ));
            }
        }
    }
}

fn size_text(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB { format!("{:.1} MiB", bytes as f64 / MIB as f64) } else { format!("{} KiB", bytes.div_ceil(1024)) }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// `path` with `suffix` appended to its file name (`clawgate.db` → `clawgate.db-wal`).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_long_copy_reports_its_progress_until_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("partial");
        std::fs::write(&file, vec![0u8; 512 * 1024]).unwrap();
        // The "copy" ends once it has been reported on three times.
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<u32>();
        let mut done_tx = Some(done_tx);
        let mut lines = Vec::new();
        let every = Duration::from_millis(10);
        let out = with_progress_to("backup", &file, 1024 * 1024, every, async { done_rx.await.unwrap_or(0) }, |line| {
            lines.push(line);
            if lines.len() == 3 {
                let _ = done_tx.take().map(|tx| tx.send(7));
            }
        })
        .await;
        assert_eq!(out, 7);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].starts_with("backup: 512 KiB of about 1.0 MiB (50%), "), "{lines:?}");

        let mut quiet = Vec::new();
        with_progress_to("backup", &file, 1, Duration::from_secs(3600), async {}, |line| quiet.push(line)).await;
        assert!(quiet.is_empty(), "a copy that ends first prints nothing: {quiet:?}");
    }
}
