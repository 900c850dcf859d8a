//! `clawgate import connector-env`: turn a ComfyUI-OpenClaw connector `.env` into clawgate config.
//!
//! The connector (`python -m connector`) is configured only by `OPENCLAW_CONNECTOR_*` and
//! `OPENCLAW_COMMAND_*` variables (`../shared/contracts/comfyui-openclaw.md` §3.2–3.3). This
//! command reads such a file **without** putting it in the environment and writes the clawgate
//! config that does the same job. Secrets are written as `{env: "NAME"}` references to the same
//! variables, never copied: the file keeps being the one place they live.
//!
//! How the connector's three decisions map (§3.3):
//! - *Trust for `/run`* (allowed users and chats per platform) → `comfy.commands.trustedUsers` /
//!   `trustedChats` as `platform:id`, admins → `comfy.commands.adminUsers` (unscoped: the
//!   connector compares admin ids across platforms).
//! - *Command authorization* (`OPENCLAW_COMMAND_OVERRIDES`, `…_ALLOW_FROM_*`) →
//!   `comfy.commands.overrides` / `allowFrom`.
//! - *Ingress*: the connector answers everyone and only logs strangers. clawgate does not: a
//!   platform with an allowlist gets `dmPolicy: "allowlist"` (its allowed users and the admins)
//!   and its allowed chats as groups answered without a mention; a platform without one keeps
//!   clawgate's default (`pairing`: strangers get a code the operator approves). Said in the notes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use crate::paths;

/// Bring configuration over from other tools.
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Convert a ComfyUI-OpenClaw connector `.env` (OPENCLAW_CONNECTOR_*) into clawgate config.
    #[command(after_help = "Secrets are not copied: the config refers to the same variables
({env: \"OPENCLAW_CONNECTOR_TELEGRAM_TOKEN\"}), so clawgate must run with that .env in its
environment (systemd: EnvironmentFile=/path/to/.env).

Examples:
  clawgate import connector-env                      # read ./.env, print the config
  clawgate import connector-env connector.env --write   # write <state-dir>/clawgate.json5
  clawgate import connector-env .env --out ./clawgate.json5")]
    ConnectorEnv(ConnectorEnvArgs),
}

/// Arguments of `import connector-env`.
#[derive(Debug, Args)]
pub struct ConnectorEnvArgs {
    /// The connector's `.env` file
    #[arg(default_value = ".env")]
    pub file: PathBuf,
    /// Write the config to this file instead of printing it
    #[arg(long, conflicts_with = "write")]
    pub out: Option<PathBuf>,
    /// Write the config to the config file clawgate reads ($CLAWGATE_CONFIG or <state-dir>/clawgate.json5)
    #[arg(long)]
    pub write: bool,
    /// Replace the output file if it exists
    #[arg(long)]
    pub force: bool,
    /// State directory [default: $CLAWGATE_STATE_DIR or ~/.clawgate]
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

pub fn run(cmd: ImportCommand) -> anyhow::Result<i32> {
    match cmd {
        ImportCommand::ConnectorEnv(args) => connector_env(&args),
    }
}

fn connector_env(args: &ConnectorEnvArgs) -> anyhow::Result<i32> {
    let vars = match read_env_file(&args.file) {
        Ok(vars) => vars,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(1);
        }
    };
    let converted = convert(&vars);
    if converted.platforms.is_empty() {
        eprintln!(
            "error: {} configures no platform the connector would start (no OPENCLAW_CONNECTOR_TELEGRAM_TOKEN, \
             _DISCORD_TOKEN, LINE secret + token, WhatsApp token + verify token or Slack bot token + signing \
             secret); nothing to import",
            args.file.display()
        );
        return Ok(1);
    }
    let text = format!(
        "// Imported from {} by `clawgate import connector-env`.\n// Secrets are read from the environment: {}.\n{}\n",
        args.file.display(),
        converted.env_refs.join(", "),
        serde_json::to_string_pretty(&converted.config)?
    );
    let target = match (&args.out, args.write) {
        (Some(out), _) => Some(out.clone()),
        (None, true) => {
            let state_dir = paths::state_dir(args.state_dir.as_deref());
            Some(paths::config_path(None, &state_dir))
        }
        (None, false) => None,
    };
    match target {
        None => print!("{text}"),
        Some(path) => {
            if path.exists() && !args.force {
                eprintln!("error: {} exists; pass --force to replace it, or --out to write elsewhere", path.display());
                return Ok(1);
            }
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::File::create(&path)?;
            f.write_all(text.as_bytes())?;
            eprintln!("wrote {}", path.display());
        }
    }
    eprintln!("platforms: {}", converted.platforms.join(", "));
    for note in &converted.notes {
        eprintln!("note: {note}");
    }
    eprintln!(
        "next: run clawgate with the .env in its environment (e.g. `set -a; . {}; set +a; clawgate gateway`)",
        args.file.display()
    );
    Ok(0)
}

/// The variables of a `.env` file (dotenv syntax: `KEY=value`, quotes, `export`, comments), read
/// without touching the process environment.
fn read_env_file(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let iter = dotenvy::from_path_iter(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut vars = BTreeMap::new();
    for item in iter {
        let (k, v) = item.map_err(|e| format!("{}: {e}", path.display()))?;
        vars.insert(k, v);
    }
    Ok(vars)
}

/// The result of a conversion.
#[derive(Debug, Default)]
pub struct Converted {
    /// The clawgate config.
    pub config: Value,
    /// Platforms that will start, in order.
    pub platforms: Vec<&'static str>,
    /// Variables the config refers to (`{env: …}`), sorted.
    pub env_refs: Vec<String>,
    /// What did not carry over, or carried over differently, and why.
    pub notes: Vec<String>,
}

const PREFIX: &str = "OPENCLAW_CONNECTOR_";

struct Env<'a> {
    vars: &'a BTreeMap<String, String>,
    refs: Vec<String>,
    used: std::collections::BTreeSet<String>,
}

impl<'a> Env<'a> {
    /// A set, non-empty value of `OPENCLAW_CONNECTOR_<name>`.
    fn get(&mut self, name: &str) -> Option<&'a str> {
        let key = format!("{PREFIX}{name}");
        self.used.insert(key.clone());
        self.vars.get(&key).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// A `{env: …}` reference to `OPENCLAW_CONNECTOR_<name>` if it is set.
    fn secret(&mut self, name: &str) -> Option<Value> {
        self.get(name)?;
        let key = format!("{PREFIX}{name}");
        self.refs.push(key.clone());
        Some(json!({ "env": key }))
    }

    /// A comma-separated list.
    fn list(&mut self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// A whole number clamped to `lo..=hi` as the connector does; `None` if unset or not a number.
    fn clamped(&mut self, name: &str, lo: u64, hi: u64) -> Option<u64> {
        self.get(name)?.parse::<u64>().ok().map(|n| n.clamp(lo, hi))
    }

    /// A boolean as the connector reads it (`true`/`1`/`yes`/`on`).
    fn flag(&mut self, name: &str) -> Option<bool> {
        self.get(name).map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
    }
}

/// Convert connector variables to clawgate config.
pub fn convert(vars: &BTreeMap<String, String>) -> Converted {
    let mut env = Env { vars, refs: Vec::new(), used: Default::default() };
    let mut out = Converted::default();
    let mut channels = Map::new();
    let mut trusted_users: Vec<String> = Vec::new();
    let mut trusted_chats: Vec<String> = Vec::new();
    let admins = env.list("ADMIN_USERS");
    let rate = json!({
        "perSenderPerMinute": env.clamped("RATE_LIMIT_USER_RPM", 1, 600).unwrap_or(10),
        "perChatPerMinute": env.clamped("RATE_LIMIT_CHANNEL_RPM", 1, 600).unwrap_or(30),
    });

    // Telegram: ids are integers in the connector; entries that are not are dropped there too.
    if let Some(token) = env.secret("TELEGRAM_TOKEN") {
        let users = integers(env.list("TELEGRAM_ALLOWED_USERS"), true, &mut out.notes, "TELEGRAM_ALLOWED_USERS");
        let chats = integers(env.list("TELEGRAM_ALLOWED_CHATS"), false, &mut out.notes, "TELEGRAM_ALLOWED_CHATS");
        let mut section = json!({ "botToken": token });
        ingress(&mut section, &users, &chats, &admins, "groups", &rate);
        trust("telegram", &users, &chats, &mut trusted_users, &mut trusted_chats);
        channels.insert("telegram".into(), section);
        out.platforms.push("telegram");
    }
    if let Some(token) = env.secret("DISCORD_TOKEN") {
        let users = env.list("DISCORD_ALLOWED_USERS");
        let chans = env.list("DISCORD_ALLOWED_CHANNELS");
        let mut section = json!({ "token": token });
        // Discord channels are not guilds: the connector allowlists channel ids, clawgate's
        // `guilds.<id>.channels.<id>` needs the guild id too, which the .env does not have.
        ingress(&mut section, &users, &[], &admins, "guilds", &rate);
        if !chans.is_empty() {
            section["groupPolicy"] = json!("open");
            out.notes.push(format!(
                "Discord: OPENCLAW_CONNECTOR_DISCORD_ALLOWED_CHANNELS ({}) are trusted for /run, but clawgate \
                 allowlists server channels under channels.discord.guilds.<guild id>.channels.<channel id>; the \
                 .env has no guild ids, so groupPolicy is \"open\" (mention required): list the guilds to narrow it",
                chans.join(", ")
            ));
        }
        trust("discord", &users, &chans, &mut trusted_users, &mut trusted_chats);
        channels.insert("discord".into(), section);
        out.platforms.push("discord");
    }
    if env.get("LINE_CHANNEL_SECRET").is_some() && env.get("LINE_CHANNEL_ACCESS_TOKEN").is_some() {
        let users = env.list("LINE_ALLOWED_USERS");
        let groups = env.list("LINE_ALLOWED_GROUPS");
        let mut section = json!({
            "channelAccessToken": env.secret("LINE_CHANNEL_ACCESS_TOKEN"),
            "channelSecret": env.secret("LINE_CHANNEL_SECRET"),
            "webhookPath": env.get("LINE_PATH").unwrap_or("/line/webhook"),
        });
        ingress(&mut section, &users, &groups, &admins, "groups", &rate);
        trust("line", &users, &groups, &mut trusted_users, &mut trusted_chats);
        channels.insert("line".into(), section);
        out.platforms.push("line");
    }
    if env.get("WHATSAPP_ACCESS_TOKEN").is_some() && env.get("WHATSAPP_VERIFY_TOKEN").is_some() {
        let users = env.list("WHATSAPP_ALLOWED_USERS");
        let mut section = json!({
            "accessToken": env.secret("WHATSAPP_ACCESS_TOKEN"),
            "verifyToken": env.secret("WHATSAPP_VERIFY_TOKEN"),
            "webhookPath": env.get("WHATSAPP_PATH").unwrap_or("/whatsapp/webhook"),
        });
        match env.secret("WHATSAPP_APP_SECRET") {
            Some(s) => section["appSecret"] = s,
            None => out.notes.push(
                "WhatsApp: no OPENCLAW_CONNECTOR_WHATSAPP_APP_SECRET. The connector then accepts unsigned \
                 webhooks; clawgate refuses to start the account without it: add the app secret from the Meta \
                 app's settings"
                    .into(),
            ),
        }
        if let Some(id) = env.get("WHATSAPP_PHONE_NUMBER_ID") {
            section["phoneNumberId"] = json!(id);
        }
        ingress(&mut section, &users, &[], &admins, "groups", &rate);
        trust("whatsapp", &users, &[], &mut trusted_users, &mut trusted_chats);
        channels.insert("whatsapp".into(), section);
        out.platforms.push("whatsapp");
    }
    if env.get("SLACK_BOT_TOKEN").is_some() && env.get("SLACK_SIGNING_SECRET").is_some() {
        let users = env.list("SLACK_ALLOWED_USERS");
        let chans = env.list("SLACK_ALLOWED_CHANNELS");
        let socket = env.get("SLACK_MODE").is_some_and(|m| m.eq_ignore_ascii_case("socket"));
        let mut section = json!({
            "mode": if socket { "socket" } else { "http" },
            "botToken": env.secret("SLACK_BOT_TOKEN"),
            "signingSecret": env.secret("SLACK_SIGNING_SECRET"),
            "webhookPath": env.get("SLACK_PATH").unwrap_or("/slack/events"),
            "requireMention": env.flag("SLACK_REQUIRE_MENTION").unwrap_or(true),
            "replyToMode": if env.flag("SLACK_REPLY_IN_THREAD").unwrap_or(true) { "all" } else { "off" },
        });
        if let Some(app) = env.secret("SLACK_APP_TOKEN") {
            section["appToken"] = app;
        }
        ingress(&mut section, &users, &[], &admins, "channels", &rate);
        if !chans.is_empty() {
            let map: Map<String, Value> = chans.iter().map(|c| (c.clone(), json!({"requireMention": false}))).collect();
            section["channels"] = Value::Object(map);
            section["groupPolicy"] = json!("allowlist");
        }
        trust("slack", &users, &chans, &mut trusted_users, &mut trusted_chats);
        channels.insert("slack".into(), section);
        out.platforms.push("slack");
    }
    for (platform, var) in [("WeChat", "WECHAT_TOKEN"), ("Kakao", "KAKAO_ENABLED"), ("Feishu", "FEISHU_APP_ID")] {
        if env.get(var).is_some() {
            out.notes.push(format!("{platform}: clawgate has no {platform} adapter; its variables were not imported"));
        }
    }

    let mut config = Map::new();
    let mut gateway = Map::new();
    if let Some(url) = env.get("PUBLIC_BASE_URL") {
        gateway.insert("publicUrl".into(), json!(url.trim_end_matches('/')));
        if !url.starts_with("https://") {
            out.notes.push(format!(
                "OPENCLAW_CONNECTOR_PUBLIC_BASE_URL is {url}: LINE and WhatsApp fetch images only over HTTPS, and \
                 clawgate refuses a plain-HTTP gateway.publicUrl for them; put clawgate behind HTTPS"
            ));
        }
    } else if out.platforms.iter().any(|p| matches!(*p, "line")) {
        out.notes.push(
            "LINE sends images as HTTPS links: set gateway.publicUrl to the HTTPS address LINE reaches clawgate at"
                .into(),
        );
    }
    if !gateway.is_empty() {
        config.insert("gateway".into(), Value::Object(gateway));
    }
    config.insert("channels".into(), Value::Object(channels));
    config.insert("comfy".into(), comfy(&mut env, admins, trusted_users, trusted_chats, &mut out.notes));

    for (var, why) in [
        ("DEBUG", "clawgate logs through RUST_LOG / --log-level; raw messages are never logged"),
        ("STATE_PATH", "clawgate keeps its state in its state directory (--state-dir)"),
        ("MEDIA_PATH", "clawgate serves media at /media on its own port"),
        ("MEDIA_MAX_MB", "the per-image cap is comfy.delivery.maxBytes"),
        ("DELIVERY_TIMEOUT_SEC", "clawgate follows a job until it ends and keeps it across restarts"),
        ("MAX_COMMAND_LENGTH", "clawgate bounds inbound messages per platform"),
        ("LINE_BIND", "every webhook arrives on clawgate's one port (gateway.bind / gateway.port)"),
        ("LINE_PORT", "every webhook arrives on clawgate's one port (gateway.bind / gateway.port)"),
        ("WHATSAPP_BIND", "every webhook arrives on clawgate's one port (gateway.bind / gateway.port)"),
        ("WHATSAPP_PORT", "every webhook arrives on clawgate's one port (gateway.bind / gateway.port)"),
        ("SLACK_BIND", "every webhook arrives on clawgate's one port (gateway.bind / gateway.port)"),
        ("SLACK_PORT", "every webhook arrives on clawgate's one port (gateway.bind / gateway.port)"),
    ] {
        if env.get(var).is_some() {
            out.notes.push(format!("OPENCLAW_CONNECTOR_{var} not carried over: {why}"));
        }
    }
    let unknown: Vec<&String> = vars
        .keys()
        .filter(|k| (k.starts_with(PREFIX) || k.starts_with("OPENCLAW_COMMAND_")) && !env.used.contains(*k))
        .collect();
    if !unknown.is_empty() {
        out.notes.push(format!(
            "not imported (unknown to the connector's documented settings): {}",
            unknown.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    env.refs.sort();
    env.refs.dedup();
    out.env_refs = env.refs;
    out.config = Value::Object(config);
    out
}

/// `comfy`: the connector's one ComfyUI (with the extension), delivery limits, command policy.
fn comfy(
    env: &mut Env<'_>,
    admins: Vec<String>,
    trusted_users: Vec<String>,
    trusted_chats: Vec<String>,
    notes: &mut Vec<String>,
) -> Value {
    let url = env.get("URL").unwrap_or("http://127.0.0.1:8188").trim_end_matches('/').to_owned();
    let mut worker = json!({ "name": "comfyui", "url": url, "mode": "openclaw" });
    match env.secret("ADMIN_TOKEN") {
        Some(t) => worker["adminToken"] = t,
        None => {
            // Driving the extension needs its admin token; without one clawgate drives ComfyUI's
            // own API and renders the templates itself.
            worker["mode"] = json!("comfyui");
            notes.push(
                "no OPENCLAW_CONNECTOR_ADMIN_TOKEN: the ComfyUI server is driven through its own API \
                 (mode \"comfyui\", templates from comfy.templatesDir); set comfy.workers[0].mode to \
                 \"openclaw\" with adminToken to go through the extension"
                    .into(),
            );
        }
    }
    let mut delivery = Map::new();
    delivery.insert("maxImages".into(), json!(env.clamped("DELIVERY_MAX_IMAGES", 1, 16).unwrap_or(4)));
    delivery
        .insert("maxBytes".into(), json!(env.clamped("DELIVERY_MAX_BYTES", 65_536, 52_428_800).unwrap_or(10_485_760)));
    let ttl = env.clamped("MEDIA_TTL_SEC", 60, 86_400).unwrap_or(300);

    let mut commands = Map::new();
    if !admins.is_empty() {
        commands.insert("adminUsers".into(), json!(admins));
    }
    if !trusted_users.is_empty() {
        commands.insert("trustedUsers".into(), json!(trusted_users));
    }
    if !trusted_chats.is_empty() {
        commands.insert("trustedChats".into(), json!(trusted_chats));
    }
    let mut allow = Map::new();
    for class in ["PUBLIC", "RUN", "ADMIN"] {
        let key = format!("OPENCLAW_COMMAND_ALLOW_FROM_{class}");
        env.used.insert(key.clone());
        let ids: Vec<&str> = env
            .vars
            .get(&key)
            .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        if !ids.is_empty() {
            allow.insert(class.to_ascii_lowercase(), json!(ids));
        }
    }
    if !allow.is_empty() {
        commands.insert("allowFrom".into(), Value::Object(allow));
    }
    env.used.insert("OPENCLAW_COMMAND_OVERRIDES".into());
    if let Some(raw) = env.vars.get("OPENCLAW_COMMAND_OVERRIDES").filter(|v| !v.trim().is_empty()) {
        // The connector ignores invalid JSON and invalid classes; so does the import, saying so.
        match serde_json::from_str::<Map<String, Value>>(raw) {
            Ok(map) => {
                let mut overrides = Map::new();
                for (cmd, class) in map {
                    match class.as_str().map(str::to_ascii_lowercase) {
                        Some(c) if matches!(c.as_str(), "public" | "run" | "admin") => {
                            let cmd = cmd.trim().to_ascii_lowercase();
                            let cmd = if cmd.starts_with('/') { cmd } else { format!("/{cmd}") };
                            overrides.insert(cmd, json!(c));
                        }
                        _ => notes.push(format!(
                            "OPENCLAW_COMMAND_OVERRIDES: \"{cmd}\": {class} is not public, run or admin; skipped"
                        )),
                    }
                }
                if !overrides.is_empty() {
                    commands.insert("overrides".into(), Value::Object(overrides));
                }
            }
            Err(e) => notes.push(format!(
                "OPENCLAW_COMMAND_OVERRIDES is not a JSON object ({e}); skipped, as the connector does (in a .env, \
                 quote it with single quotes: OPENCLAW_COMMAND_OVERRIDES='{{\"status\": \"admin\"}}')"
            )),
        }
    }
    let mut comfy = json!({
        "workers": [worker],
        "delivery": delivery,
        "media": { "ttlSeconds": ttl },
    });
    if !commands.is_empty() {
        comfy["commands"] = Value::Object(commands);
    }
    comfy
}

/// Connector ids that must be integers (Telegram); the rest are dropped with a note, as the
/// connector drops them.
fn integers(ids: Vec<String>, positive: bool, notes: &mut Vec<String>, var: &str) -> Vec<String> {
    let (ok, bad): (Vec<String>, Vec<String>) = ids.into_iter().partition(|id| {
        let digits = if positive { id.as_str() } else { id.strip_prefix('-').unwrap_or(id) };
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    });
    if !bad.is_empty() {
        notes.push(format!(
            "OPENCLAW_CONNECTOR_{var}: {} not numeric ids; dropped (the connector drops them too)",
            bad.join(", ")
        ));
    }
    ok
}

/// Who may talk to the bot on one platform: an allowlist when the connector had one.
fn ingress(section: &mut Value, users: &[String], chats: &[String], admins: &[String], groups_key: &str, rate: &Value) {
    if !users.is_empty() {
        let mut allow: Vec<String> = users.to_vec();
        for a in admins {
            if !allow.contains(a) {
                allow.push(a.clone());
            }
        }
        section["dmPolicy"] = json!("allowlist");
        section["allowFrom"] = json!(allow);
    }
    if !chats.is_empty() {
        let map: Map<String, Value> = chats.iter().map(|c| (c.clone(), json!({"requireMention": false}))).collect();
        section["groupPolicy"] = json!("allowlist");
        section[groups_key] = Value::Object(map);
    }
    section["rateLimit"] = rate.clone();
}

fn trust(platform: &str, users: &[String], chats: &[String], tu: &mut Vec<String>, tc: &mut Vec<String>) {
    tu.extend(users.iter().map(|u| format!("{platform}:{u}")));
    tc.extend(chats.iter().map(|c| format!("{platform}:{c}")));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn telegram_allowlists_become_ingress_and_trust_and_secrets_stay_references() {
        let c = convert(&vars(&[
            ("OPENCLAW_CONNECTOR_TELEGRAM_TOKEN", "123:secret"),
            ("OPENCLAW_CONNECTOR_TELEGRAM_ALLOWED_USERS", "42, 7, @bob"),
            ("OPENCLAW_CONNECTOR_TELEGRAM_ALLOWED_CHATS", "-1001"),
            ("OPENCLAW_CONNECTOR_ADMIN_USERS", "42,99"),
        ]));
        let tg = &c.config["channels"]["telegram"];
        assert_eq!(tg["botToken"], json!({"env": "OPENCLAW_CONNECTOR_TELEGRAM_TOKEN"}));
        assert_eq!(tg["dmPolicy"], "allowlist");
        assert_eq!(tg["allowFrom"], json!(["42", "7", "99"]));
        assert_eq!(tg["groups"], json!({"-1001": {"requireMention": false}}));
        assert_eq!(c.config["comfy"]["commands"]["adminUsers"], json!(["42", "99"]));
        assert_eq!(c.config["comfy"]["commands"]["trustedUsers"], json!(["telegram:42", "telegram:7"]));
        assert_eq!(c.config["comfy"]["commands"]["trustedChats"], json!(["telegram:-1001"]));
        assert!(!c.config.to_string().contains("123:secret"), "a secret was copied: {}", c.config);
        assert!(c.notes.iter().any(|n| n.contains("@bob")), "{:?}", c.notes);
        assert_eq!(c.platforms, ["telegram"]);
    }

    #[test]
    fn connector_clamps_and_defaults_carry_over() {
        let c = convert(&vars(&[
            ("OPENCLAW_CONNECTOR_DISCORD_TOKEN", "d"),
            ("OPENCLAW_CONNECTOR_DELIVERY_MAX_IMAGES", "99"),
            ("OPENCLAW_CONNECTOR_MEDIA_TTL_SEC", "5"),
            ("OPENCLAW_CONNECTOR_URL", "http://comfy.lan:8188/"),
        ]));
        let comfy = &c.config["comfy"];
        assert_eq!(comfy["delivery"]["maxImages"], 16);
        assert_eq!(comfy["delivery"]["maxBytes"], 10_485_760);
        assert_eq!(comfy["media"]["ttlSeconds"], 60);
        assert_eq!(comfy["workers"][0]["url"], "http://comfy.lan:8188");
        // Without the extension's admin token, ComfyUI is driven through its own API.
        assert_eq!(comfy["workers"][0]["mode"], "comfyui");
        assert!(c.notes.iter().any(|n| n.contains("ADMIN_TOKEN")), "{:?}", c.notes);
        // Without an allowlist the platform keeps clawgate's pairing default.
        assert!(c.config["channels"]["discord"].get("dmPolicy").is_none());
    }

    #[test]
    fn command_policy_variables_map_and_bad_overrides_are_skipped_with_a_note() {
        let c = convert(&vars(&[
            ("OPENCLAW_CONNECTOR_TELEGRAM_TOKEN", "t"),
            ("OPENCLAW_COMMAND_OVERRIDES", r#"{"Status": "admin", "run": "owner"}"#),
            ("OPENCLAW_COMMAND_ALLOW_FROM_RUN", "1,2"),
        ]));
        let cmds = &c.config["comfy"]["commands"];
        assert_eq!(cmds["overrides"], json!({"/status": "admin"}));
        assert_eq!(cmds["allowFrom"], json!({"run": ["1", "2"]}));
        assert!(c.notes.iter().any(|n| n.contains("\"run\"") && n.contains("owner")), "{:?}", c.notes);
    }

    #[test]
    fn line_and_whatsapp_need_both_credentials_and_a_plain_http_public_url_is_flagged() {
        let c = convert(&vars(&[
            ("OPENCLAW_CONNECTOR_LINE_CHANNEL_SECRET", "s"),
            ("OPENCLAW_CONNECTOR_WHATSAPP_ACCESS_TOKEN", "w"),
            ("OPENCLAW_CONNECTOR_PUBLIC_BASE_URL", "http://example.com/"),
        ]));
        assert!(c.platforms.is_empty(), "{:?}", c.platforms);
        assert_eq!(c.config["gateway"]["publicUrl"], "http://example.com");
        assert!(c.notes.iter().any(|n| n.contains("HTTPS")), "{:?}", c.notes);
    }
}
