//! `clawgate import connector-env`: a realistic ComfyUI-OpenClaw connector `.env` becomes a
//! config that `clawgate config validate` accepts, with no secret copied into it.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");

/// What an operator of the connector has today: every platform the connector serves that
/// clawgate has an adapter for, quoting styles dotenv files use, and settings that do not carry
/// over.
const CONNECTOR_ENV: &str = r#"# ComfyUI-OpenClaw connector (python -m connector)
OPENCLAW_CONNECTOR_URL=http://127.0.0.1:8188/
OPENCLAW_CONNECTOR_ADMIN_TOKEN="adm-9f2c-secret"
OPENCLAW_CONNECTOR_ADMIN_USERS=111111111
export OPENCLAW_CONNECTOR_TELEGRAM_TOKEN=123456:ABC-telegram-secret
OPENCLAW_CONNECTOR_TELEGRAM_ALLOWED_USERS=111111111,222222222
OPENCLAW_CONNECTOR_TELEGRAM_ALLOWED_CHATS=-1001234567890
OPENCLAW_CONNECTOR_DISCORD_TOKEN='MTAx.discord-secret'
OPENCLAW_CONNECTOR_DISCORD_ALLOWED_USERS=81384788765712384
OPENCLAW_CONNECTOR_LINE_CHANNEL_SECRET=line-channel-secret
OPENCLAW_CONNECTOR_LINE_CHANNEL_ACCESS_TOKEN=line-access-secret
OPENCLAW_CONNECTOR_LINE_ALLOWED_USERS=U4af4980629
OPENCLAW_CONNECTOR_LINE_PORT=8099
OPENCLAW_CONNECTOR_WHATSAPP_ACCESS_TOKEN=EAAG-whatsapp-secret
OPENCLAW_CONNECTOR_WHATSAPP_VERIFY_TOKEN=verify-secret
OPENCLAW_CONNECTOR_WHATSAPP_APP_SECRET=app-secret
OPENCLAW_CONNECTOR_WHATSAPP_PHONE_NUMBER_ID=1098765
OPENCLAW_CONNECTOR_WHATSAPP_ALLOWED_USERS=15551234567
OPENCLAW_CONNECTOR_SLACK_BOT_TOKEN=xoxb-slack-secret
OPENCLAW_CONNECTOR_SLACK_SIGNING_SECRET=slack-signing-secret
OPENCLAW_CONNECTOR_SLACK_APP_TOKEN=xapp-slack-secret
OPENCLAW_CONNECTOR_SLACK_MODE=socket
OPENCLAW_CONNECTOR_SLACK_ALLOWED_CHANNELS=C0123456
OPENCLAW_CONNECTOR_PUBLIC_BASE_URL=https://bot.example.com
OPENCLAW_CONNECTOR_DELIVERY_MAX_IMAGES=6
OPENCLAW_CONNECTOR_MEDIA_TTL_SEC=900
OPENCLAW_CONNECTOR_RATE_LIMIT_USER_RPM=15
OPENCLAW_CONNECTOR_DEBUG=1
OPENCLAW_COMMAND_OVERRIDES='{"status": "admin"}'
OPENCLAW_COMMAND_ALLOW_FROM_ADMIN=111111111
"#;

const SECRETS: &[&str] = &[
    "adm-9f2c-secret",
    "ABC-telegram-secret",
    "MTAx.discord-secret",
    "line-channel-secret",
    "line-access-secret",
    "EAAG-whatsapp-secret",
    "verify-secret",
    "app-secret",
    "xoxb-slack-secret",
    "slack-signing-secret",
    "xapp-slack-secret",
];

#[test]
fn a_connector_env_becomes_a_valid_config_without_copied_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("connector.env");
    std::fs::write(&env_file, CONNECTOR_ENV).unwrap();
    let out = dir.path().join("clawgate.json5");

    let run = Command::new(BIN)
        .args(["import", "connector-env"])
        .arg(&env_file)
        .arg("--out")
        .arg(&out)
        .env_remove("CLAWGATE_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "import failed: {stderr}");
    assert!(stderr.contains("platforms: telegram, discord, line, whatsapp, slack"), "{stderr}");
    // Settings that do not carry over are named with the reason.
    assert!(stderr.contains("OPENCLAW_CONNECTOR_DEBUG not carried over"), "{stderr}");
    assert!(stderr.contains("OPENCLAW_CONNECTOR_LINE_PORT not carried over"), "{stderr}");

    let written = std::fs::read_to_string(&out).unwrap();
    for secret in SECRETS {
        assert!(!written.contains(secret), "secret {secret} was copied into the config:\n{written}");
    }
    // Comment lines first (JSON5), then plain JSON.
    let body: String = written.lines().filter(|l| !l.starts_with("//")).collect::<Vec<_>>().join("\n");
    let config: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        config["channels"]["telegram"]["botToken"],
        serde_json::json!({"env": "OPENCLAW_CONNECTOR_TELEGRAM_TOKEN"})
    );
    assert_eq!(config["channels"]["telegram"]["allowFrom"], serde_json::json!(["111111111", "222222222"]));
    assert_eq!(config["channels"]["line"]["allowFrom"], serde_json::json!(["U4af4980629", "111111111"]));
    assert_eq!(config["comfy"]["workers"][0]["mode"], "openclaw");
    assert_eq!(config["comfy"]["delivery"]["maxImages"], 6);
    assert_eq!(config["comfy"]["media"]["ttlSeconds"], 900);
    assert_eq!(config["comfy"]["commands"]["overrides"], serde_json::json!({"/status": "admin"}));
    assert_eq!(config["comfy"]["commands"]["allowFrom"], serde_json::json!({"admin": ["111111111"]}));
    assert_eq!(config["gateway"]["publicUrl"], "https://bot.example.com");
    assert_eq!(config["channels"]["slack"]["mode"], "socket");
    assert_eq!(config["channels"]["slack"]["channels"], serde_json::json!({"C0123456": {"requireMention": false}}));

    // The written config passes the one validator, with the .env's variables in the environment
    // as the import tells the operator to run it.
    let mut validate = Command::new(BIN);
    validate.args(["config", "validate", "--config"]).arg(&out).arg("--state-dir").arg(dir.path().join("state"));
    for line in CONNECTOR_ENV.lines().filter(|l| !l.starts_with('#') && l.contains('=')) {
        let line = line.trim_start_matches("export ");
        let (k, v) = line.split_once('=').unwrap();
        validate.env(k, v.trim_matches(|c| c == '"' || c == '\''));
    }
    let checked = validate.output().unwrap();
    assert!(
        checked.status.success(),
        "config validate refused the imported config:\n{}\n{}\n{written}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // A second import does not overwrite the file without --force.
    let again =
        Command::new(BIN).args(["import", "connector-env"]).arg(&env_file).arg("--out").arg(&out).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"), "{}", String::from_utf8_lossy(&again.stderr));
}

#[test]
fn an_env_without_any_platform_is_refused_with_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join(".env");
    std::fs::write(&env_file, "OPENCLAW_CONNECTOR_URL=http://127.0.0.1:8188\n").unwrap();
    let run = Command::new(BIN).args(["import", "connector-env"]).arg(&env_file).output().unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("configures no platform") && stderr.contains("TELEGRAM_TOKEN"), "{stderr}");
}
