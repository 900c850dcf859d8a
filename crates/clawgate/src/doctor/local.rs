//! The checks that need no network: the config file, the state directory and database,
//! permissions, free disk, the port, the TLS files and the form of public URLs. With `--fix`
//! the state directory is created when missing and permissions are tightened; nothing else is
//! ever written.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clawgate_core::config_service::Overrides;
use clawgate_core::settings::GatewaySettings;
use clawgate_store::{BackupError, SqliteStore};

use super::report::{Finding, Outcome, Section};
use super::{Ctx, cert};
use crate::paths;

/// Warn when the state directory's filesystem has less free space than this, and fail below
/// [`CRITICAL_DISK_BYTES`] (upstream's doctor uses the same two thresholds).
const LOW_DISK_BYTES: u64 = 500 * 1024 * 1024;
const CRITICAL_DISK_BYTES: u64 = 100 * 1024 * 1024;
/// Warn when the gateway's certificate expires within this many days.
const CERT_WARN_DAYS: i64 = 14;

/// Runs every local check in report order; leaves the loaded config in `ctx` when it is valid.
pub(crate) async fn run(ctx: &mut Ctx) -> Vec<Outcome> {
    let mut out = Vec::new();
    config_file(ctx, &mut out);
    config_permissions(ctx, &mut out);
    state_dir(ctx, &mut out);
    lock(ctx, &mut out);
    database(ctx, &mut out).await;
    token_file(ctx, &mut out);
    disk_free(ctx, &mut out);
    if let Some(loaded) = &ctx.loaded {
        bind_and_port(loaded, &mut out);
        tls(loaded, &ctx.config_path, &mut out);
        public_urls(loaded, &mut out);
        super::control_ui::check(loaded, &mut out);
        comfy_templates(loaded, &mut out);
    }
    out
}

/// The local templates `/run` renders for native ComfyUI workers: they load, and say which do not.
fn comfy_templates(loaded: &clawgate_config::LoadedConfig, out: &mut Vec<Outcome>) {
    let Ok(Some(cfg)) = clawgate_core::comfy::ComfyConfig::from_config(&loaded.config, loaded.base_dir()) else {
        return;
    };
    if !cfg.workers.iter().any(|w| w.openclaw.is_none()) {
        return;
    }
    let dir = cfg.templates_dir.display().to_string();
    match clawgate_comfy::templates::TemplateLibrary::load(&cfg.templates_dir) {
        Ok(lib) => {
            let n = lib.list().len();
            let finding = if n == 0 {
                Finding::warn(
                    format!("no templates in {dir}"),
                    "add workflow templates there (or set comfy.templatesDir): /run has nothing to run",
                )
            } else {
                Finding::ok(format!("{n} template{} load from {dir}", if n == 1 { "" } else { "s" }))
            };
            out.push(Outcome::new("comfy.templates", Section::Comfy, finding));
            for p in lib.problems() {
                out.push(Outcome::new(
                    format!("comfy.templates.{}", p.name),
                    Section::Comfy,
                    Finding::warn(format!("template {} does not load: {}", p.name, p.error), "fix or remove that file"),
                ));
            }
        }
        Err(e) => out.push(Outcome::new(
            "comfy.templates",
            Section::Comfy,
            Finding::warn(format!("templates: {e}"), "create the directory or set comfy.templatesDir"),
        )),
    }
}

fn config_file(ctx: &mut Ctx, out: &mut Vec<Outcome>) {
    let id = "config.file";
    let invalid = |e: &dyn std::fmt::Display| {
        Outcome::new(
            id,
            Section::Config,
            Finding::fail(
                format!("config file is invalid:\n{e}"),
                "edit the lines named above (`clawgate config validate` re-checks)",
            ),
        )
    };
    let loaded = match clawgate_config::load_with_env(&ctx.config_path, &clawgate_config::Env::process()) {
        Ok(l) => l,
        Err(e) => {
            out.push(invalid(&e));
            return;
        }
    };
    // The same whole check as `clawgate gateway` at start (secrets resolved, channels, agents,
    // ComfyUI): a config that loads but would not start is not valid.
    let base = GatewaySettings::for_tests("", ctx.state_dir.clone());
    if let Err(e) = crate::config_cmd::check(&loaded, &base, &Overrides::default()) {
        out.push(invalid(&e));
        return;
    }
    let finding =
        if loaded.exists { Finding::ok("config file is valid") } else { Finding::ok("no config file; defaults apply") };
    out.push(Outcome::new(id, Section::Config, finding));
    for (i, w) in loaded.warnings.iter().enumerate() {
        out.push(Outcome::new(
            format!("config.warning.{i}"),
            Section::Config,
            Finding::warn(w.to_string(), "edit the line named (clawgate ignores this key as written)"),
        ));
    }
    ctx.loaded = Some(loaded);
}

/// Dotted paths of the string values in `value` that are secrets written in the file itself
/// (not `{env}` or `{file}` references).
fn literal_secrets(value: &serde_json::Value, at: &str, found: &mut Vec<String>) {
    match value {
        serde_json::Value::String(_) if clawgate_config::is_secret_path(at) => found.push(at.to_owned()),
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let path = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                literal_secrets(v, &path, found);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                literal_secrets(v, &format!("{at}.{i}"), found);
            }
        }
        _ => {}
    }
}

fn config_permissions(ctx: &Ctx, out: &mut Vec<Outcome>) {
    let Some(loaded) = ctx.loaded.as_ref().filter(|l| l.exists) else { return };
    let mut secrets = Vec::new();
    literal_secrets(&loaded.value, "", &mut secrets);
    let id = "config.permissions";
    let path = &ctx.config_path;
    if secrets.is_empty() {
        out.push(Outcome::new(id, Section::Config, Finding::ok("config file holds no secrets in plain text")));
        return;
    }
    let Some(mode) = mode_of(path) else { return };
    let shown = secrets.iter().take(3).map(String::as_str).collect::<Vec<_>>().join(", ");
    let more = if secrets.len() > 3 { format!(" and {} more", secrets.len() - 3) } else { String::new() };
    if mode & 0o077 == 0 {
        out.push(Outcome::new(
            id,
            Section::Config,
            Finding::ok(format!("config file holds secrets ({shown}{more}) and is private (mode {mode:o})")),
        ));
        return;
    }
    let what = format!("chmod 600 {}", path.display());
    out.push(Outcome::new(
        id,
        Section::Config,
        fix_mode(ctx.fix, path, 0o600, &what).unwrap_or_else(|| {
            Finding::fail(
                format!("config file holds secrets ({shown}{more}) and is readable by others (mode {mode:o})"),
                format!("{what}, or move the secrets to {{env: \"NAME\"}} references (`clawgate doctor --fix` chmods)"),
            )
        }),
    ));
}

fn state_dir(ctx: &Ctx, out: &mut Vec<Outcome>) {
    let dir = &ctx.state_dir;
    let id = "state.dir";
    if !dir.exists() {
        let finding = if ctx.fix {
            match paths::create_private_dir(dir) {
                Ok(()) => Finding::fixed(
                    "state directory exists and is private (mode 700)",
                    format!("created {} (mode 700)", dir.display()),
                ),
                Err(e) => Finding::fail(
                    format!("cannot create the state directory: {e}"),
                    format!("create {} yourself, or choose another --state-dir", dir.display()),
                ),
            }
        } else {
            Finding::warn(
                "state directory does not exist yet",
                "run `clawgate gateway` once (it creates it) or `clawgate doctor --fix`",
            )
        };
        out.push(Outcome::new(id, Section::State, finding));
        return;
    }
    if !dir.is_dir() {
        out.push(Outcome::new(
            id,
            Section::State,
            Finding::fail(
                format!("{} is not a directory", dir.display()),
                "move it aside or choose another --state-dir",
            ),
        ));
        return;
    }
    if let Some(mode) = mode_of(dir) {
        let finding = if mode & 0o077 == 0 {
            Finding::ok(format!("state directory is private (mode {mode:o})"))
        } else {
            let what = format!("chmod 700 {}", dir.display());
            fix_mode(ctx.fix, dir, 0o700, &what).unwrap_or_else(|| {
                Finding::warn(
                    format!(
                        "state directory is open to other users (mode {mode:o}); it holds the database with device tokens"
                    ),
                    format!("{what} (or `clawgate doctor --fix`)"),
                )
            })
        };
        out.push(Outcome::new("state.permissions", Section::State, finding));
    }
    let probe = dir.join(".doctor-write-test");
    let finding = match std::fs::write(&probe, b"x") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            Finding::ok("state directory exists and is writable")
        }
        Err(e) => Finding::fail(
            format!("state directory is not writable: {e}"),
            format!("chown/chmod {} for the user that runs clawgate", dir.display()),
        ),
    };
    out.push(Outcome::new(id, Section::State, finding));
}

fn lock(ctx: &Ctx, out: &mut Vec<Outcome>) {
    let finding = match crate::state_lock::holder(&ctx.state_dir) {
        Ok(Some(h)) => Finding::ok(format!("a gateway is running on this state directory ({})", h.describe())),
        Ok(None) => Finding::ok("no gateway is running on this state directory"),
        Err(e) => Finding::warn(e.to_string(), "check the permissions of the state directory"),
    };
    out.push(Outcome::new("state.lock", Section::State, finding));
}

/// Inspects the database without migrating it; runs `integrity_check` only on a database whose
/// schema is current (opening the store of an older one would upgrade it).
async fn database(ctx: &mut Ctx, out: &mut Vec<Outcome>) {
    let db = paths::database(&ctx.state_dir);
    let id = "state.database";
    if !db.exists() {
        out.push(Outcome::new(
            id,
            Section::State,
            Finding::warn("no state database yet", "run `clawgate gateway` once"),
        ));
        return;
    }
    let restore = "stop clawgate and `clawgate restore` a backup, or move clawgate.db aside (devices must re-pair)";
    let finding = match SqliteStore::inspect_state_file(&db).await {
        Ok(info) if info.needs_upgrade => Finding::warn(
            format!(
                "state database schema version {} is older than this clawgate's; the gateway upgrades it when it starts",
                info.schema_version
            ),
            "take a backup first: `clawgate backup <file>` with the old clawgate",
        ),
        Ok(info) => match SqliteStore::open(&db).await {
            Ok(store) => {
                let f = match store.integrity_check().await {
                    Ok(true) => Finding::ok(format!(
                        "state database opens (schema version {}) and passes integrity_check",
                        info.schema_version
                    )),
                    Ok(false) => Finding::fail("state database failed integrity_check", restore),
                    Err(e) => Finding::fail(
                        format!("state database check failed: {e}"),
                        "stop other clawgate processes using this state dir",
                    ),
                };
                ctx.scheduled_templates = scheduled_templates(&store).await;
                let _ = store.close().await;
                f
            }
            Err(e) => Finding::fail(
                format!("cannot open state database: {e}"),
                "check permissions, or whether another process holds it",
            ),
        },
        Err(e @ BackupError::Newer { .. }) => Finding::fail(
            format!("state database: {e}"),
            "run the clawgate that wrote it, or restore a backup of this version",
        ),
        Err(BackupError::Store(e)) => Finding::fail(
            format!("cannot read the state database: {e}"),
            "check permissions, or whether another process holds it",
        ),
        Err(e) => Finding::fail(format!("state database {}: {e}", db.display()), restore),
    };
    out.push(Outcome::new(id, Section::State, finding));
}

/// (name, template id) of the enabled ComfyUI schedules; none when they cannot be read (the
/// database check says why).
async fn scheduled_templates(store: &SqliteStore) -> Vec<(String, String)> {
    use clawgate_store::CronStore;
    let Ok(jobs) = store.list_cron_jobs(false).await else { return Vec::new() };
    jobs.into_iter()
        .filter(|j| j.kind == clawgate_core::cron::KIND_COMFY_RUN)
        .filter_map(|j| {
            let template = j.payload.get("templateId").and_then(serde_json::Value::as_str)?.to_owned();
            Some((j.name, template))
        })
        .collect()
}

fn token_file(ctx: &Ctx, out: &mut Vec<Outcome>) {
    let path = paths::token_file(&ctx.state_dir);
    let Some(mode) = path.exists().then(|| mode_of(&path)).flatten() else { return };
    let finding = if mode & 0o077 == 0 {
        Finding::ok(format!("gateway token file is private (mode {mode:o})"))
    } else {
        let what = format!("chmod 600 {}", path.display());
        fix_mode(ctx.fix, &path, 0o600, &what).unwrap_or_else(|| {
            Finding::fail(
                format!("{} is readable by others (mode {mode:o})", path.display()),
                format!("{what} (or `clawgate doctor --fix`)"),
            )
        })
    };
    out.push(Outcome::new("state.token", Section::State, finding));
}

fn disk_free(ctx: &Ctx, out: &mut Vec<Outcome>) {
    // The directory may not exist yet: its filesystem is that of its nearest existing parent.
    let Some(existing) = ctx.state_dir.ancestors().find(|p| p.exists()) else { return };
    let finding = match free_bytes(existing) {
        Ok(free) => {
            if free < CRITICAL_DISK_BYTES {
                Finding::fail(
                    format!("only {} free on the state directory's filesystem", human_bytes(free)),
                    "free space now: writes to the database, transcripts and logs fail when it runs out",
                )
            } else if free < LOW_DISK_BYTES {
                Finding::warn(
                    format!("only {} free on the state directory's filesystem", human_bytes(free)),
                    "free some space: the database, logs and ComfyUI outputs grow there, and a full disk stops writes",
                )
            } else {
                Finding::ok(format!("{} free on the state directory's filesystem", human_bytes(free)))
            }
        }
        Err(e) => {
            Finding::warn(format!("cannot tell the free space of {}: {e}", existing.display()), "check it with `df -h`")
        }
    };
    out.push(Outcome::new("state.disk", Section::State, finding));
}

#[cfg(unix)]
fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(path)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

#[cfg(not(unix))]
fn free_bytes(_path: &Path) -> std::io::Result<u64> {
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "not measured on this platform"))
}

fn human_bytes(n: u64) -> String {
    const GIB: u64 = 1024 * 1024 * 1024;
    if n >= GIB { format!("{:.1} GiB", n as f64 / GIB as f64) } else { format!("{} MiB", n / (1024 * 1024)) }
}

fn bind_and_port(loaded: &clawgate_config::LoadedConfig, out: &mut Vec<Outcome>) {
    let g = &loaded.config.gateway;
    let ip = g.bind_host().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let finding = if !ip.is_loopback() && matches!(g.auth.mode, clawgate_config::AuthMode::None) {
        Finding::fail(
            "non-loopback bind without auth",
            "set gateway.auth.mode to token or password, or gateway.bind to loopback",
        )
    } else if !ip.is_loopback() && g.tls_files().is_none() && g.trusted_proxies.is_empty() && !g.allow_insecure_bind {
        Finding::fail(
            format!("bind {ip} in plain text: the gateway refuses to start so"),
            "set gateway.tls {certPath, keyPath}, list the reverse proxy in gateway.trustedProxies, or set \
             gateway.allowInsecureBind to true (only on a network you trust)",
        )
    } else {
        Finding::ok(format!("bind {ip} with auth mode {:?}", g.auth.mode))
    };
    out.push(Outcome::new("network.bind", Section::Network, finding));
    let probe_ip = if ip.is_unspecified() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { ip };
    let addr = SocketAddr::new(probe_ip, g.port);
    let finding = match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
        Ok(_) => {
            Finding::ok(format!("something is listening on {addr} (a running gateway?) — `clawgate status` tells"))
        }
        Err(_) => match std::net::TcpListener::bind(SocketAddr::new(ip, g.port)) {
            Ok(_) => Finding::ok(format!("port {} is free", g.port)),
            Err(e) => Finding::fail(
                format!("cannot listen on {ip}:{}: {e}", g.port),
                "pick another port with --port or gateway.port",
            ),
        },
    };
    out.push(Outcome::new("network.port", Section::Network, finding));
}

fn resolve_relative(config_path: &Path, file: &Path) -> PathBuf {
    if file.is_absolute() {
        file.to_owned()
    } else {
        config_path.parent().map_or_else(|| file.to_owned(), |d| d.join(file))
    }
}

fn tls(loaded: &clawgate_config::LoadedConfig, config_path: &Path, out: &mut Vec<Outcome>) {
    let Some((cert, key)) = loaded.config.gateway.tls_files() else {
        out.push(Outcome::new("tls.files", Section::Tls, Finding::skipped("TLS is off (gateway.tls not set)")));
        return;
    };
    let (cert, key) = (resolve_relative(config_path, cert), resolve_relative(config_path, key));
    let cert_pem = match std::fs::read(&cert) {
        Ok(b) => b,
        Err(e) => {
            out.push(Outcome::new(
                "tls.files",
                Section::Tls,
                Finding::fail(
                    format!("cannot read the TLS certificate {}: {e}", cert.display()),
                    "fix gateway.tls.certPath, or let the user that runs clawgate read the file",
                ),
            ));
            return;
        }
    };
    if let Err(e) = std::fs::read(&key) {
        out.push(Outcome::new(
            "tls.files",
            Section::Tls,
            Finding::fail(
                format!("cannot read the TLS private key {}: {e}", key.display()),
                "fix gateway.tls.keyPath, or let the user that runs clawgate read the file",
            ),
        ));
        return;
    }
    // The gateway's own loader: the same parse and the same key/certificate match it starts with.
    let finding = match clawgate_server::Tls::load(cert.clone(), key.clone()) {
        Ok(_) => Finding::ok(format!("TLS certificate and key load and match ({})", cert.display())),
        Err(e) => Finding::fail(
            e,
            "use the PEM key the certificate was issued for (gateway.tls.keyPath) and a PEM certificate chain",
        ),
    };
    let loads = finding.status == super::Status::Ok;
    out.push(Outcome::new("tls.files", Section::Tls, finding));
    if !loads {
        return;
    }
    let finding = match cert::not_after(&cert_pem) {
        Some(expiry) => expiry_finding(expiry, SystemTime::now()),
        None => Finding::warn(
            "cannot read the certificate's expiry date",
            format!("check it with `openssl x509 -noout -enddate -in {}`", cert.display()),
        ),
    };
    out.push(Outcome::new("tls.expiry", Section::Tls, finding));
}

/// What to say about a certificate that expires at `expiry` (Unix seconds), seen at `now`.
fn expiry_finding(expiry: i64, now: SystemTime) -> Finding {
    let now = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let date = cert::format_date(expiry);
    let days = (expiry - now).div_euclid(86_400);
    if expiry <= now {
        Finding::fail(
            format!("the TLS certificate expired on {date}"),
            "renew it and replace the file: the gateway loads the new one without a restart",
        )
    } else if days < CERT_WARN_DAYS {
        Finding::warn(
            format!("the TLS certificate expires on {date} (in {days} day{})", if days == 1 { "" } else { "s" }),
            "renew it soon and replace the file: the gateway loads the new one without a restart",
        )
    } else {
        Finding::ok(format!("the TLS certificate is valid until {date} ({days} days)"))
    }
}

/// Whether `url` has the form a platform can call back: https, a host, no credentials, no
/// query or fragment and no `..` in its path. `Err` says what is wrong.
pub(crate) fn public_url_form(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("is not a URL ({e})"))?;
    if parsed.scheme() != "https" {
        return Err(format!("uses {}:// where the platforms call only https://", parsed.scheme()));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("carries credentials".into());
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err("has a query or fragment".into());
    }
    // The parser already folded plain `..`; what remains is an encoded one or a backslash,
    // which proxies and servers may decode into a traversal.
    let raw_path = url.split_once("://").map_or("", |(_, rest)| rest.find('/').map_or("", |i| &rest[i..]));
    let lower = raw_path.to_ascii_lowercase();
    if raw_path.split('/').any(|s| s == ".." || s == ".")
        || lower.contains("%2e")
        || lower.contains("%2f")
        || lower.contains("%5c")
        || raw_path.contains('\\')
    {
        return Err("has a path with dot segments or encoded separators".into());
    }
    Ok(())
}

fn public_urls(loaded: &clawgate_config::LoadedConfig, out: &mut Vec<Outcome>) {
    let mut urls: Vec<(String, String, String)> = Vec::new();
    if let Some(u) = &loaded.config.gateway.public_url {
        urls.push(("network.publicUrl".into(), "gateway.publicUrl".into(), u.clone()));
    }
    if let Ok(accounts) = clawgate_channels::accounts_from_config(&loaded.config.channels, loaded.base_dir()) {
        // LINE and WhatsApp fetch images themselves, from links under gateway.publicUrl.
        let fetchers: Vec<String> = accounts
            .iter()
            .filter(|a| a.enabled && matches!(a.key.channel.as_str(), "line" | "whatsapp"))
            .map(|a| a.key.to_string())
            .collect();
        if loaded.config.gateway.public_url.is_none() && !fetchers.is_empty() {
            out.push(Outcome::new(
                "network.publicUrl",
                Section::Network,
                Finding::warn(
                    format!(
                        "gateway.publicUrl is not set, so {} cannot be sent images (the platform fetches them from a link)",
                        fetchers.join(", ")
                    ),
                    "set gateway.publicUrl to the https:// address the platforms reach this gateway at",
                ),
            ));
        }
        for a in accounts.iter().filter(|a| a.enabled) {
            if let Some(u) = &a.settings.webhook_url {
                urls.push((
                    format!("network.webhookUrl.{}.{}", a.key.channel, a.key.account),
                    format!("{} webhookUrl", a.key),
                    u.clone(),
                ));
            }
        }
    }
    for (id, what, url) in urls {
        let shown = clawgate_config::redact_url_userinfo(&url).into_owned();
        let finding = match public_url_form(&url) {
            Ok(()) => Finding::ok(format!("{what} {shown} has a usable form")),
            Err(why) => Finding::fail(
                format!("{what} {shown} {why}"),
                "use the https:// URL your reverse proxy or tunnel serves, with a plain path",
            ),
        };
        out.push(Outcome::new(id, Section::Network, finding));
    }
}

#[cfg(unix)]
fn mode_of(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).ok().map(|m| m.permissions().mode() & 0o777)
}

#[cfg(not(unix))]
fn mode_of(_path: &Path) -> Option<u32> {
    None
}

/// With `--fix`, sets `path`'s mode and returns the ok finding saying so (or the failure);
/// without it, `None`: the caller reports the problem.
fn fix_mode(fix: bool, path: &Path, mode: u32, what: &str) -> Option<Finding> {
    if !fix {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Some(match std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
            Ok(()) => Finding::fixed(format!("{} is private (mode {mode:o})", path.display()), what),
            Err(e) => Finding::fail(
                format!("cannot change the mode of {}: {e}", path.display()),
                format!("{what} as its owner"),
            ),
        })
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode, what);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    #[test]
    fn public_urls_must_be_plain_https() {
        assert_eq!(public_url_form("https://bot.example.com/telegram-webhook/main"), Ok(()));
        assert_eq!(public_url_form("https://bot.example.com"), Ok(()));
        for bad in [
            "http://bot.example.com/hook",
            "https://user:pw@bot.example.com/hook",
            "https://bot.example.com/hook?x=1",
            "https://bot.example.com/a/../hook",
            "https://bot.example.com/a/%2e%2e/hook",
            "https://bot.example.com/a%2fb",
            "bot.example.com/hook",
        ] {
            assert!(public_url_form(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn certificates_close_to_expiry_warn_and_expired_ones_fail() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let at = |days: i64| 1_800_000_000 + days * 86_400;
        assert_eq!(expiry_finding(at(90), now).status, Status::Ok);
        let soon = expiry_finding(at(3) + 60, now);
        assert_eq!(soon.status, Status::Warn);
        assert!(soon.message.contains("in 3 days"), "{}", soon.message);
        assert_eq!(expiry_finding(at(-1), now).status, Status::Fail);
    }

    #[test]
    fn literal_secrets_are_found_and_references_are_not() {
        let v = serde_json::json!({
            "gateway": {"auth": {"token": "abc"}},
            "channels": {"telegram": {"botToken": {"env": "TG"}, "accounts": {"b": {"botToken": "123:x"}}}},
            "models": {"providers": {"openai": {"apiKey": {"file": "k"}}}},
        });
        let mut found = Vec::new();
        literal_secrets(&v, "", &mut found);
        found.sort();
        assert_eq!(found, ["channels.telegram.accounts.b.botToken", "gateway.auth.token"]);
    }
}
