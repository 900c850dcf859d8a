//! `clawgate doctor` over the real binary: every provider, chat account and ComfyUI worker it
//! checks is a testkit fake (or a closed port), and the report (`--json`) must tell a good
//! credential from a rejected one and from a server that is down, with what to do. `--fix` is
//! checked on a real directory's mode, TLS on certificates made with the `openssl` CLI.

use std::path::Path;

use serde_json::{Value, json};

use clawgate_testkit::fake_anthropic::{FakeAnthropic, Script as AnthropicScript};
use clawgate_testkit::fake_comfy::FakeComfy;
use clawgate_testkit::fake_discord::FakeDiscord;
use clawgate_testkit::fake_line::FakeLine;
use clawgate_testkit::fake_openai::{FakeOpenAi, Script};
use clawgate_testkit::fake_openclaw::FakeOpenClaw;
use clawgate_testkit::fake_slack::FakeSlack;
use clawgate_testkit::fake_telegram::FakeTelegram;
use clawgate_testkit::fake_whatsapp::FakeWhatsApp;

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");

/// A loopback URL nothing listens on (the port was just free).
fn closed_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// Writes `config` next to a state directory in `dir` and runs `clawgate doctor --json` on them.
async fn doctor(dir: &Path, config: &Value, extra: &[&str]) -> (i32, Value) {
    let state = dir.join("state");
    let config_path = dir.join("clawgate.json5");
    // Private like a config holding tokens should be (a test that wants it open makes it so first).
    #[cfg(unix)]
    if !config_path.exists() {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&config_path).expect("create config");
    }
    std::fs::write(&config_path, config.to_string()).expect("write config");
    let out = tokio::process::Command::new(BIN)
        .arg("doctor")
        .arg("--json")
        .arg("--state-dir")
        .arg(&state)
        .arg("--config")
        .arg(&config_path)
        .args(extra)
        .output()
        .await
        .expect("run clawgate doctor");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("--json prints JSON ({e}): {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr))
    });
    (out.status.code().expect("exit code"), report)
}

fn check<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["id"] == id))
        .unwrap_or_else(|| panic!("no check {id} in {report:#}"))
}

fn assert_check(report: &Value, id: &str, status: &str, says: &str) {
    let c = check(report, id);
    assert_eq!(c["status"], status, "{id}: {c:#}");
    let message = c["message"].as_str().unwrap_or_default();
    assert!(message.contains(says), "{id} says {says:?}: {c:#}");
    if status == "warn" || status == "fail" {
        assert!(c["fix"].as_str().is_some_and(|f| !f.is_empty()), "{id} says what to do: {c:#}");
    }
}

#[tokio::test]
async fn providers_accepted_rejected_down_and_missing_a_model_are_told_apart() {
    let model = FakeOpenAi::start(Script::new().models(["m", "other"]).require_api_key("k")).await.unwrap();
    let claude = FakeAnthropic::start(AnthropicScript::new().models(["claude-x"]).require_api_key("ak")).await.unwrap();
    let down = closed_url();
    let dir = tempfile::tempdir().unwrap();
    let cfg = json!({
        "models": {"providers": {
            "good": {"baseUrl": model.base_url(), "apiKey": "k", "api": "openai-completions", "models": [{"id": "m"}]},
            "badkey": {"baseUrl": model.base_url(), "apiKey": "wrong", "api": "openai-completions"},
            "down": {"baseUrl": format!("{down}/v1"), "api": "openai-completions"},
            "anthropic": {"baseUrl": claude.base_url(), "apiKey": "ak", "models": [{"id": "claude-x"}]},
            "claudebad": {"baseUrl": claude.base_url(), "apiKey": "nope", "api": "anthropic-messages"},
            "nomodel": {"baseUrl": model.base_url(), "apiKey": "k", "api": "openai-completions",
                        "models": [{"id": "absent"}]},
        }},
        "agents": {"defaults": {"model": {"primary": "good/m"}}},
    });
    let (code, report) = doctor(dir.path(), &cfg, &[]).await;
    assert_check(&report, "providers.good", "ok", "key accepted");
    assert_check(&report, "providers.badkey", "fail", "key rejected");
    assert_check(&report, "providers.down", "fail", &format!("not reachable at {down}/v1"));
    assert_check(&report, "providers.nomodel", "warn", "does not offer absent");
    assert_check(&report, "providers.anthropic", "ok", "key accepted, 1 model offered");
    assert_check(&report, "providers.claudebad", "fail", "key rejected");
    assert!(check(&report, "providers.nomodel")["fix"].as_str().unwrap().contains("other"), "{report:#}");
    assert!(!report.to_string().contains("\"wrong\""), "keys are never printed");
    assert_eq!(code, 1, "a failed check makes the exit code 1");
    assert_eq!(report["ok"], false);
}

#[tokio::test]
async fn chat_tokens_are_checked_with_each_platform_and_the_bot_is_named() {
    let tg = FakeTelegram::start().await.unwrap();
    let dc = FakeDiscord::start().await.unwrap();
    let slack = FakeSlack::start().await.unwrap();
    let line = FakeLine::start().await.unwrap();
    let wa = FakeWhatsApp::start().await.unwrap();
    let model = FakeOpenAi::start(Script::new().models(["m"])).await.unwrap();
    let down = closed_url();
    let dir = tempfile::tempdir().unwrap();
    let mut whatsapp = wa.account_config();
    whatsapp["accounts"] = json!({"bad": {"accessToken": "EAAnotTheToken"}, "down": {"apiRoot": down}});
    let cfg = json!({
        "gateway": {"publicUrl": "https://bot.example.com"},
        "models": {"providers": {"fake": {"baseUrl": model.base_url(), "api": "openai-completions"}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}}},
        "channels": {
            "telegram": {"botToken": tg.token(), "apiRoot": tg.api_root(), "accounts": {
                "bad": {"botToken": "123:nope"},
                "down": {"botToken": tg.token(), "apiRoot": down},
                "off": {"botToken": tg.token(), "enabled": false},
            }},
            "discord": {"token": dc.token(), "apiRoot": dc.api_root(), "gatewayUrl": dc.gateway_url(),
                        "accounts": {"bad": {"token": "not-the-token"}, "down": {"apiRoot": down}}},
            "slack": {"botToken": slack.bot_token(), "appToken": slack.app_token(), "apiRoot": slack.api_root(),
                      "accounts": {"bad": {"botToken": "xoxb-not-the-token"}, "down": {"apiRoot": down}}},
            "line": {"channelAccessToken": line.token(), "channelSecret": line.secret(), "apiRoot": line.api_root(),
                     "accounts": {"bad": {"channelAccessToken": "not-the-token"}, "down": {"apiRoot": down}}},
            "whatsapp": whatsapp,
        },
    });
    let (code, report) = doctor(dir.path(), &cfg, &[]).await;
    assert_check(&report, "channels.telegram.default", "ok", "token valid, bot @clawgate_test_bot");
    assert_check(&report, "channels.telegram.bad", "fail", "token rejected");
    assert_check(&report, "channels.telegram.down", "fail", "not reachable");
    assert_check(&report, "channels.telegram.off", "skipped", "disabled");
    assert_check(&report, "channels.discord.default", "ok", "token valid, bot ");
    assert_check(&report, "channels.discord.bad", "fail", "token rejected");
    assert_check(&report, "channels.slack.default", "ok", "token valid, bot clawbot");
    assert_check(&report, "channels.slack.bad", "fail", "token rejected");
    assert_check(&report, "channels.line.default", "ok", "token valid, bot clawgate test bot");
    assert_check(&report, "channels.line.bad", "fail", "token rejected");
    assert_check(&report, "channels.whatsapp.default", "ok", "token valid, bot ");
    assert_check(&report, "channels.whatsapp.bad", "fail", "token rejected");
    for platform in ["discord", "slack", "line", "whatsapp"] {
        assert_check(&report, &format!("channels.{platform}.down"), "fail", "not reachable");
    }
    assert_check(&report, "network.publicUrl", "ok", "https://bot.example.com");
    let text = report.to_string();
    for secret in [tg.token(), dc.token(), slack.bot_token(), line.token()] {
        assert!(!text.contains(secret), "tokens are never printed");
    }
    assert_eq!(code, 1);
}

#[tokio::test]
async fn comfy_workers_report_their_version_extension_and_templates_or_that_they_are_down() {
    let comfy = FakeComfy::start().await.unwrap();
    let studio = FakeOpenClaw::start().await.unwrap();
    let model = FakeOpenAi::start(Script::new().models(["m"])).await.unwrap();
    let down = closed_url();
    let dir = tempfile::tempdir().unwrap();
    let cfg = json!({
        "models": {"providers": {"fake": {"baseUrl": model.base_url(), "api": "openai-completions"}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}}},
        "comfy": {
            "templatesDir": format!("{}/../../templates", env!("CARGO_MANIFEST_DIR")),
            "workers": [
                {"name": "gpu", "url": comfy.base_url()},
                {"name": "gone", "url": down},
                {"name": "studio", "url": studio.base_url(), "mode": "openclaw", "adminToken": "test-admin-token-123"},
            ],
        },
    });
    let (_, report) = doctor(dir.path(), &cfg, &[]).await;
    assert_check(&report, "comfy.gpu", "ok", "gpu: ComfyUI ");
    assert_check(&report, "comfy.gone", "fail", &format!("gone: not reachable at {down}"));
    assert_check(&report, "comfy.studio", "ok", "ComfyUI-OpenClaw ");
    assert!(check(&report, "comfy.studio")["message"].as_str().unwrap().contains("template"), "{report:#}");
    assert_check(&report, "comfy.templates", "ok", "load from");

    studio.set_health_down(true);
    let (_, report) = doctor(dir.path(), &cfg, &[]).await;
    assert_check(&report, "comfy.studio", "fail", "extension does not");
}

#[tokio::test]
async fn offline_skips_every_network_check() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = json!({
        "models": {"providers": {"fake": {"baseUrl": format!("{}/v1", closed_url()), "api": "openai-completions"}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}}},
        "channels": {"telegram": {"botToken": "123:abc", "apiRoot": closed_url()},
                     "line": {"channelAccessToken": "line-token", "channelSecret": "line-secret"}},
    });
    let (code, report) = doctor(dir.path(), &cfg, &["--offline"]).await;
    assert_check(&report, "providers.fake", "skipped", "--offline");
    assert_check(&report, "channels.telegram.default", "skipped", "--offline");
    assert_check(&report, "channels.line.default", "skipped", "--offline");
    assert_check(&report, "network.publicUrl", "warn", "line/default cannot be sent images");
    assert_eq!(code, 0, "nothing failed: {report:#}");
}

#[cfg(unix)]
#[tokio::test]
async fn fix_makes_an_open_state_dir_and_a_config_holding_secrets_private_and_says_so() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = json!({"gateway": {"auth": {"mode": "token", "token": "a-literal-secret"}}});
    let config_path = dir.path().join("clawgate.json5");
    std::fs::write(&config_path, cfg.to_string()).unwrap();
    std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o644)).unwrap();

    let (code, report) = doctor(dir.path(), &cfg, &["--offline"]).await;
    assert_check(&report, "state.permissions", "warn", "mode 755");
    assert_check(&report, "config.permissions", "fail", "gateway.auth.token");
    assert_eq!(code, 1);
    assert_eq!(std::fs::metadata(&state).unwrap().permissions().mode() & 0o777, 0o755, "no --fix, no change");

    let out = tokio::process::Command::new(BIN)
        .args(["doctor", "--fix", "--offline", "--state-dir"])
        .arg(&state)
        .arg("--config")
        .arg(&config_path)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("fixed: chmod 700 {}", state.display())), "{text}");
    assert!(text.contains(&format!("fixed: chmod 600 {}", config_path.display())), "{text}");
    assert!(!text.contains("a-literal-secret"), "{text}");
    assert_eq!(std::fs::metadata(&state).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(&config_path).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(out.status.code(), Some(0), "{text}");
}

#[tokio::test]
async fn fix_creates_a_missing_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    let (_, report) = doctor(dir.path(), &json!({}), &["--offline", "--fix"]).await;
    assert_check(&report, "state.dir", "ok", "state directory");
    assert!(check(&report, "state.dir")["fixed"].as_str().unwrap().starts_with("created "), "{report:#}");
    assert!(dir.path().join("state").is_dir());
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn self_signed(dir: &Path, name: &str, days: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-days",
            days,
            "-subj",
            "/CN=localhost",
        ],
    );
}

#[tokio::test]
async fn tls_files_are_read_matched_and_their_expiry_is_warned() {
    let dir = tempfile::tempdir().unwrap();
    self_signed(dir.path(), "long", "365");
    self_signed(dir.path(), "short", "3");
    let tls = |cert: &str, key: &str| json!({"gateway": {"tls": {"enabled": true, "certPath": cert, "keyPath": key}}});

    let (_, report) = doctor(dir.path(), &tls("long.crt", "long.key"), &["--offline"]).await;
    assert_check(&report, "tls.files", "ok", "load and match");
    assert_check(&report, "tls.expiry", "ok", "valid until");

    let (_, report) = doctor(dir.path(), &tls("short.crt", "short.key"), &["--offline"]).await;
    assert_check(&report, "tls.expiry", "warn", "expires on");

    let (code, report) = doctor(dir.path(), &tls("long.crt", "short.key"), &["--offline"]).await;
    assert_check(&report, "tls.files", "fail", "does not go with");
    assert_eq!(code, 1);

    let (_, report) = doctor(dir.path(), &tls("missing.crt", "long.key"), &["--offline"]).await;
    assert_check(&report, "tls.files", "fail", "cannot read the TLS certificate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_whose_template_no_worker_has_is_a_failure() {
    let comfy = FakeComfy::start().await.unwrap();
    let model = FakeOpenAi::start(Script::new().models(["m"])).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let templates = format!("{}/../../templates", env!("CARGO_MANIFEST_DIR"));
    let cfg = |templates_dir: &str| {
        json!({
            "models": {"providers": {"fake": {"baseUrl": model.base_url(), "api": "openai-completions"}}},
            "agents": {"defaults": {"model": {"primary": "fake/m"}}},
            "comfy": {"templatesDir": templates_dir, "workers": [{"name": "gpu", "url": comfy.base_url()}]},
        })
    };
    let gw = clawgate_testkit::TestGateway::builder(BIN)
        .config(cfg(&templates).to_string())
        .state_dir(dir.path().join("state"))
        .start()
        .await
        .expect("starting clawgate");
    let mut c = clawgate_testkit::RawClient::connect(&gw.ws_url()).await.expect("ws");
    c.handshake(gw.token(), &json!({})).await.expect("handshake");
    // clawgate's own payload kind, which upstream's CronJob schema lacks.
    c.set_validation(false);
    let res = c
        .request(
            "cron.add",
            Some(json!({"name": "nightly image", "schedule": {"kind": "cron", "expr": "0 0 3 * * *"},
                        "sessionTarget": "isolated", "wakeMode": "now",
                        "payload": {"kind": "comfyRun", "templateId": "invert"}})),
        )
        .await
        .expect("cron.add");
    assert_eq!(res["ok"], true, "{res}");

    let (_, report) = doctor(dir.path(), &cfg(&templates), &[]).await;
    assert_check(&report, "comfy.schedules", "ok", "1 ComfyUI schedule run templates that exist");

    let empty = dir.path().join("no-templates");
    std::fs::create_dir(&empty).unwrap();
    let (code, report) = doctor(dir.path(), &cfg(empty.to_str().unwrap()), &[]).await;
    assert_check(&report, "comfy.schedules", "fail", "schedule \"nightly image\" runs invert, which no worker has");
    assert_eq!(code, 1);
    drop(gw);
}
