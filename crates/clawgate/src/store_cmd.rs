//! `clawgate store …`: the state store itself — today `migrate`, which brings the schema of the
//! configured store (the SQLite file, or a PostgreSQL database shared by several gateways) up to
//! date before the gateways are started or upgraded. Also where the gateway resolves
//! `storage.url` into the store it opens.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use clawgate_config::{Env, SecretUrl, StorageBackend, StorageConfig, storage_url_problem};
use clawgate_store::{AnyStore, StoreLocation};

use crate::paths;

/// The state store.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Bring the store's schema up to date and print which migrations were applied.
    Migrate(MigrateArgs),
}

/// Bring the store's schema up to date.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawgate store migrate                       # the store of the config (storage.url), else ~/.clawgate/clawgate.db
  CLAWGATE_STORAGE_URL=postgres://clawgate:s3cret@db.internal/clawgate clawgate store migrate
  clawgate store migrate --url sqlite:/srv/clawgate/clawgate.db

Safe to run while gateways use the store: migrations are applied once, under a lock. A gateway
also migrates at start; run this first when several gateways share one PostgreSQL database, so
an upgrade is applied once, before any new gateway starts.")]
pub struct MigrateArgs {
    /// The store: sqlite:<path> or postgres://user:password@host:port/database
    /// [default: storage.url of the config, else <state-dir>/clawgate.db]
    #[arg(long, env = "CLAWGATE_STORAGE_URL", hide_env_values = true)]
    pub url: Option<String>,
    /// State directory [default: $CLAWGATE_STATE_DIR or ~/.clawgate]
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Config file [default: $CLAWGATE_CONFIG or <state-dir>/clawgate.json5]
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// A store to open, resolved from `storage.url` (relative SQLite paths against the config file's
/// directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database.
    Postgres(SecretUrl),
}

impl Location {
    /// Where `storage` points: the default file in `state_dir` when it names nothing.
    pub fn resolve(storage: &StorageConfig, config_path: &Path, state_dir: &Path) -> Location {
        match storage.backend() {
            StorageBackend::DefaultSqlite => Location::Sqlite(paths::database(state_dir)),
            StorageBackend::Sqlite(path) => Location::Sqlite(if path.is_absolute() {
                path.to_owned()
            } else {
                config_path.parent().map(|d| d.join(path)).unwrap_or_else(|| path.to_owned())
            }),
            StorageBackend::Postgres(url) => Location::Postgres(url.clone()),
        }
    }

    fn as_store_location(&self) -> StoreLocation<'_> {
        match self {
            Location::Sqlite(path) => StoreLocation::Sqlite(path),
            Location::Postgres(url) => StoreLocation::Postgres(url.expose()),
        }
    }

    /// The location as shown to people (a password is redacted).
    pub fn shown(&self) -> String {
        match self {
            Location::Sqlite(path) => format!("sqlite:{}", path.display()),
            Location::Postgres(url) => url.shown().into_owned(),
        }
    }

    /// An error message about this store, with any password scrubbed out of it.
    fn scrub(&self, text: &str) -> String {
        match self {
            Location::Sqlite(_) => text.to_owned(),
            Location::Postgres(url) => url.scrub(text),
        }
    }
}

/// Opens (and migrates) the store the gateway runs on.
pub async fn open(location: &Location) -> anyhow::Result<AnyStore> {
    match AnyStore::open_at(location.as_store_location()).await {
        Ok(store) => Ok(store),
        Err(e) => {
            let detail = location.scrub(&format!("{:#}", anyhow::Error::new(e)));
            match location {
                Location::Sqlite(path) => {
                    bail!("cannot open the state database {} (is another clawgate using it?): {detail}", path.display())
                }
                Location::Postgres(_) => {
                    bail!("cannot open the PostgreSQL state database {}: {detail}", location.shown())
                }
            }
        }
    }
}

pub async fn run(cmd: StoreCommand) -> anyhow::Result<i32> {
    match cmd {
        StoreCommand::Migrate(args) => migrate(args).await,
    }
}

async fn migrate(args: MigrateArgs) -> anyhow::Result<i32> {
    let state_dir = paths::state_dir(args.state_dir.as_deref());
    let config_path = paths::config_path(args.config.as_deref(), &state_dir);
    let storage = match args.url {
        Some(url) => {
            if let Some(problem) = storage_url_problem(&url) {
                bail!("--url {problem}");
            }
            StorageConfig { url: Some(SecretUrl::new(url)) }
        }
        None => match clawgate_config::load_with_env(&config_path, &Env::process()) {
            Ok(loaded) => loaded.config.storage,
            Err(e) => {
                eprintln!("{e}");
                eprintln!("clawgate: fix the config above (or name the store with --url), then run again");
                return Ok(2);
            }
        },
    };
    let location = Location::resolve(&storage, &config_path, &state_dir);
    if let Location::Sqlite(path) = &location
        && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
    {
        paths::create_private_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    println!("store: {}", location.shown());
    let applied = AnyStore::migrate_at(location.as_store_location())
        .await
        .map_err(|e| anyhow::anyhow!("{}", location.scrub(&format!("{:#}", anyhow::Error::new(e)))))
        .context("migration failed")?;
    if applied.is_empty() {
        println!("schema up to date; nothing applied");
    }
    for (version, description) in &applied {
        println!("applied {version:04} {description}");
    }
    Ok(0)
}
