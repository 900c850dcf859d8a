//! `clawgate store …`: the state store itself — `migrate`, which brings the schema of the
//! configured store (the SQLite file, or a PostgreSQL database shared by several gateways) up to
//! date before the gateways are started or upgraded, and `copy`, which moves a SQLite state file
//! into PostgreSQL (`clawgate_store::copy` does the work; this prints it). Also where the gateway
//! resolves `storage.url` into the store it opens.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use clawgate_config::{Env, SecretUrl, StorageBackend, StorageConfig, storage_url_problem};
use clawgate_store::copy::{Copier, CopyEvent, CopyOptions, CopyOutcome, TableCheck};
use clawgate_store::{AnyStore, StoreLocation};

use crate::paths;

/// The state store.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Bring the store's schema up to date and print which migrations were applied.
    Migrate(MigrateArgs),
    /// Copy a SQLite state file into PostgreSQL (online, resumable) and verify the copy.
    Copy(CopyArgs),
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

/// Copy a SQLite state file into PostgreSQL and verify it.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  # the gateway's SQLite file into a new PostgreSQL database
  clawgate store copy --to postgres://clawgate:s3cret@db.internal/clawgate
  # the config already names PostgreSQL (storage.url): the source is <state-dir>/clawgate.db
  clawgate store copy
  clawgate store copy --from sqlite:/srv/clawgate/clawgate.db --to postgres://clawgate@db.internal/clawgate
  # compare only (row counts and checksums per table), e.g. before switching the gateways over
  clawgate store copy --verify-only --to postgres://clawgate@db.internal/clawgate

Online: the source may be in use by a running gateway (it is only read, in short batches). The
target is migrated to the source's schema, and every batch is committed with the copy's
progress, so an interrupted copy continues where it stopped when run again. A finished copy run
again is a new pass that brings the target up to date with the source (rows added, changed or
deleted since): copy while the gateway runs, stop it, run the copy again, then start the
gateways on PostgreSQL. A target holding anything but this source's copy is refused.

Every run ends with a verification: per table, row counts and a SHA-256 digest of the rows on
both sides. Exit status: 0 copied and verified; 1 a table differs (named) or the copy failed;
2 bad arguments or config; 3 stopped by --limit (run again to continue).")]
pub struct CopyArgs {
    /// The SQLite state file: sqlite:<path>
    /// [default: storage.url of the config when it is SQLite, else <state-dir>/clawgate.db]
    #[arg(long)]
    pub from: Option<String>,
    /// The PostgreSQL database: postgres://user:password@host:port/database
    /// [default: storage.url of the config when it is PostgreSQL]
    #[arg(long, env = "CLAWGATE_COPY_TO", hide_env_values = true)]
    pub to: Option<String>,
    /// Rows per batch (one read of the source, one transaction on the target)
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=50_000))]
    pub batch: u32,
    /// Stop after copying this many rows (the copy stays resumable; exit status 3)
    #[arg(long)]
    pub limit: Option<u64>,
    /// Only compare source and target (row counts and checksums); write nothing
    #[arg(long)]
    pub verify_only: bool,
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
        StoreCommand::Copy(args) => copy(args).await,
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

/// How often a long table's progress is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

async fn copy(args: CopyArgs) -> anyhow::Result<i32> {
    let state_dir = paths::state_dir(args.state_dir.as_deref());
    let config_path = paths::config_path(args.config.as_deref(), &state_dir);
    let configured = if args.from.is_none() || args.to.is_none() {
        match clawgate_config::load_with_env(&config_path, &Env::process()) {
            Ok(loaded) => Some(Location::resolve(&loaded.config.storage, &config_path, &state_dir)),
            Err(e) => {
                eprintln!("{e}");
                eprintln!("clawgate: fix the config above (or name both stores with --from and --to), then run again");
                return Ok(2);
            }
        }
    } else {
        None
    };
    let source = match (&args.from, &configured) {
        (Some(from), _) => match from.strip_prefix("sqlite:") {
            Some(path) if !path.trim().is_empty() => PathBuf::from(path),
            _ => {
                eprintln!("clawgate: --from must name a SQLite file: sqlite:<path>");
                return Ok(2);
            }
        },
        (None, Some(Location::Sqlite(path))) => path.clone(),
        (None, _) => paths::database(&state_dir),
    };
    let url = match (args.to, &configured) {
        (Some(to), _) => {
            if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
                eprintln!(
                    "clawgate: --to must name a PostgreSQL database: postgres://user:password@host:port/database"
                );
                return Ok(2);
            }
            SecretUrl::new(to)
        }
        (None, Some(Location::Postgres(url))) => url.clone(),
        (None, _) => {
            eprintln!(
                "clawgate: name the PostgreSQL database to copy into with --to postgres://… \
                 (the config's storage.url is not PostgreSQL)"
            );
            return Ok(2);
        }
    };
    let target = Location::Postgres(url.clone());
    println!("from: sqlite:{}", source.display());
    println!("to:   {}", target.shown());

    let scrub = |e: anyhow::Error| anyhow::anyhow!("{}", target.scrub(&format!("{e:#}")));
    let copier = Copier::open(&source, url.expose()).await.map_err(|e| scrub(e.into()))?;
    println!("source schema: version {}", copier.schema());
    let batch = usize::try_from(args.batch).unwrap_or(500);
    let outcome = async {
        if !args.verify_only {
            for (version, description) in copier.prepare().await? {
                println!("target: applied {version:04} {description}");
            }
            println!("copying (batches of {batch} rows)");
            let mut last_print = Instant::now();
            let mut report = |event: CopyEvent<'_>| match event {
                CopyEvent::Skipped { table } => println!("  {table:<22} not in the source (older schema), skipped"),
                CopyEvent::Progress { table, done, total } => {
                    if last_print.elapsed() >= PROGRESS_EVERY && done < total {
                        last_print = Instant::now();
                        println!("  {table:<22} {done:>10} / {total} rows ({}%)", done * 100 / total.max(1));
                    }
                }
                CopyEvent::Finished { table, rows } => {
                    last_print = Instant::now();
                    println!("  {table:<22} {rows:>10} rows (100%)");
                }
            };
            match copier.copy(CopyOptions { batch, limit: args.limit }, &mut report).await? {
                CopyOutcome::Stopped { rows } => {
                    println!("stopped after {rows} rows (--limit); run the same command again to continue");
                    return Ok(None);
                }
                CopyOutcome::Complete { rows } => println!("copied: {rows} rows read from the source in this run"),
            }
        }
        println!("verifying");
        println!(
            "  {:<22} {:>12} {:>12}  {:<16}  {:<16}",
            "table", "source rows", "target rows", "source sha256", "target sha256"
        );
        let checks = copier.verify(batch, &mut |check| print_check(check)).await?;
        Ok::<_, clawgate_store::copy::CopyError>(Some(checks))
    }
    .await;
    copier.close().await;
    let Some(checks) = outcome.map_err(|e| scrub(e.into()))? else { return Ok(3) };
    let differ: Vec<&str> = checks.iter().filter(|c| !c.matches()).map(|c| c.table).collect();
    if differ.is_empty() {
        println!("verified: every table matches");
        return Ok(0);
    }
    eprintln!(
        "clawgate: verification failed: {} differ between source and target. If a gateway was writing to the \
         source, stop it and run `clawgate store copy` again (without --verify-only): a new pass brings the \
         target up to date.",
        differ.join(", ")
    );
    Ok(1)
}

fn print_check(check: &TableCheck) {
    let rows = |side: Option<clawgate_store::copy::Tally>| side.map_or_else(|| "-".to_owned(), |t| t.rows.to_string());
    let digest = |side: Option<clawgate_store::copy::Tally>| side.map_or_else(|| "-".to_owned(), |t| t.short());
    println!(
        "  {:<22} {:>12} {:>12}  {:<16}  {:<16}  {}",
        check.table,
        rows(check.source),
        rows(check.target),
        digest(check.source),
        digest(check.target),
        if check.matches() { "ok" } else { "DIFFERS" }
    );
}
