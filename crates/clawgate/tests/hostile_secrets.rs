//! Secrets in configuration and output (issue 10, defects 2, 14, 15 and 16 in part).
//!
//! An `operator.read` client, the log file and the CLI must never see a secret from the config:
//! every secret-typed key the schema knows and every URL password is set to a canary, the real
//! gateway runs with it, and no read path may contain a canary.

use std::process::Command;
use std::time::Duration;

use clawgate_testkit::fake_comfy::FakeComfy;
use clawgate_testkit::fake_telegram::FakeTelegram;
use clawgate_testkit::{RawClient, TestGateway};
use serde_json::{Map, Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");

fn ok_payload(res: &Value) -> &Value {
    assert_eq!(res["ok"], true, "expected ok: {res}");
    &res["payload"]
}

/// `http://host…` → `http://canary-user:<password>@host…`.
fn with_userinfo(url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    format!("{scheme}://canary-user:{password}@{rest}")
}

/// The concrete key a `*` of a secret/URL path stands for in the test config, by the key before it.
fn instance(previous: &str) -> &'static str {
    match previous {
        "channels" => "telegram",
        "accounts" => "work",
        "providers" => "fake",
        "workers" | "models" | "workerTokens" => "0",
        "headers" => "X-Canary-Header",
        other => panic!("no test instance for `*` after `{other}`: extend instance()"),
    }
}

/// Sets `value` at a dotted path (numeric segments index arrays), creating what is missing.
fn set_path(root: &mut Value, path: &[String], value: Value) {
    let (first, rest) = path.split_first().expect("a non-empty path");
    let slot = if let Ok(i) = first.parse::<usize>() {
        if !root.is_array() {
            *root = json!([]);
        }
        let items = root.as_array_mut().unwrap();
        while items.len() <= i {
            items.push(json!({}));
        }
        &mut items[i]
    } else {
        if !root.is_object() {
            *root = Value::Object(Map::new());
        }
        root.as_object_mut().unwrap().entry(first.clone()).or_insert(Value::Null)
    };
    if rest.is_empty() {
        *slot = value;
    } else {
        set_path(slot, rest, value);
    }
}

fn concrete(pattern: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for segment in pattern.split('.') {
        let s =
            if segment == "*" { instance(out.last().expect("`*` is never first")).to_owned() } else { segment.into() };
        out.push(s);
    }
    out
}

#[tokio::test]
async fn no_read_path_shows_a_secret_from_the_config() {
    let tg = FakeTelegram::start().await.expect("fake telegram");
    let comfy = FakeComfy::start().await.expect("fake comfy");
    // A startable base: the sections whose secrets are set below, pointed at fakes.
    let mut config = json!({
        "gateway": {"auth": {"mode": "token"}},
        "channels": {"telegram": {"pollTimeoutSeconds": 1, "accounts": {"work": {}}}},
        "models": {"providers": {"fake": {"api": "openai-completions", "models": [{"id": "m"}]}}},
        "agents": {"defaults": {"model": {"primary": "fake/m"}}},
        "hooks": {"enabled": true},
        "comfy": {"workers": [{"name": "gpu", "mode": "openclaw", "device": {"id": "gw"}}]},
    });
    let mut canaries = Vec::new();
    // Every key the schema marks sensitive (the same table redaction uses)…
    let hints = clawgate_config::ui_hints();
    let secret_keys: Vec<&String> =
        hints.as_object().unwrap().iter().filter(|(_, h)| h["sensitive"] == true).map(|(k, _)| k).collect();
    assert!(secret_keys.len() >= clawgate_config::SECRET_PATHS.len(), "{secret_keys:?}");
    for key in secret_keys {
        let canary = format!("canary_{}_secret", canaries.len());
        set_path(&mut config, &concrete(key), json!(canary));
        canaries.push((key.clone(), canary));
    }
    // …and every URL key, with a password in its userinfo.
    for key in clawgate_config::URL_PATHS {
        let canary = format!("canary_{}_urlpass", canaries.len());
        let target = match *key {
            k if k.starts_with("comfy.") => comfy.base_url(),
            k if k.ends_with("apiRoot") => tg.api_root(),
            k if k.starts_with("models.") => "http://127.0.0.1:9/v1".to_owned(),
            _ => "https://hooks.invalid/telegram".to_owned(),
        };
        set_path(&mut config, &concrete(key), json!(with_userinfo(&target, &canary)));
        canaries.push(((*key).to_owned(), canary));
    }
    let token =
        canaries.iter().find(|(k, _)| k == "gateway.auth.token").expect("the gateway token is a secret").1.clone();
    let config_text = serde_json::to_string_pretty(&config).unwrap();

    let gw = TestGateway::builder(BIN).no_token().config(config_text).start().await.expect("start");
    let mut reader = RawClient::connect(&gw.ws_url()).await.expect("ws");
    reader
        .handshake(Some(&token), &json!({"scopes": ["operator.read"]}))
        .await
        .unwrap_or_else(|e| panic!("handshake: {e:#}"));
    let mut shown = Vec::new();
    for method in ["config.get", "config.schema", "comfy.workers.list", "channels.status", "health", "status"] {
        let res = reader.request(method, Some(json!({}))).await.expect(method);
        shown.push((method.to_owned(), res.to_string()));
    }
    let got = reader.request("config.get", None).await.unwrap();
    let got = ok_payload(&got);
    assert_eq!(got["config"]["channels"]["telegram"]["webhookSecret"], clawgate_config::REDACTED, "{got}");
    let url = got["config"]["comfy"]["workers"][0]["url"].as_str().unwrap();
    assert!(url.contains(clawgate_config::REDACTED) && url.contains("canary-user"), "{url}");
    // The worker has been probed (it answers, its extension does not), so errors exist too.
    let workers = reader.request("comfy.workers.list", None).await.unwrap();
    assert!(ok_payload(&workers)["workers"][0]["url"].as_str().unwrap().contains(clawgate_config::REDACTED));

    let validate = Command::new(BIN).args(["config", "validate", "--config"]).arg(gw.config_path().unwrap()).output();
    let validate = validate.expect("config validate");
    shown.push(("config validate".into(), String::from_utf8_lossy(&validate.stdout).into_owned()));
    shown.push(("config validate (stderr)".into(), String::from_utf8_lossy(&validate.stderr).into_owned()));
    shown.push(("log file".into(), gw.read_log()));
    shown.push(("gateway output".into(), gw.describe_output()));
    for (place, text) in &shown {
        for (key, canary) in &canaries {
            assert!(!text.contains(canary.as_str()), "{key} shown in clear by {place}: {text}");
        }
    }
}

#[tokio::test]
async fn saving_a_redacted_config_keeps_the_stored_secrets() {
    let comfy = FakeComfy::start().await.expect("fake comfy");
    let url = with_userinfo(&comfy.base_url(), "keep_this_pw");
    let config = json!({
        "gateway": {"auth": {"mode": "token", "token": "keep-this-token-1"}},
        "channels": {"telegram": {"enabled": false, "botToken": "1:keep", "webhookSecret": "keep_this_secret"}},
        "comfy": {"workers": [{"name": "gpu", "url": url}]},
    });
    let gw = TestGateway::builder(BIN).no_token().config(config.to_string()).start().await.expect("start");
    let mut admin = RawClient::connect(&gw.ws_url()).await.expect("ws");
    admin.handshake(Some("keep-this-token-1"), &json!({})).await.expect("hello");
    let got = admin.request("config.get", None).await.unwrap();
    let got = ok_payload(&got).clone();
    // The Control UI way: send back what config.get gave, with one edit.
    let mut edited = got["config"].clone();
    edited["logging"] = json!({"level": "debug"});
    let res =
        admin.request("config.set", Some(json!({"raw": edited.to_string(), "baseHash": got["hash"]}))).await.unwrap();
    ok_payload(&res);
    let written = std::fs::read_to_string(gw.config_path().unwrap()).unwrap();
    for secret in ["keep-this-token-1", "1:keep", "keep_this_secret", "keep_this_pw"] {
        assert!(written.contains(secret), "{secret} kept: {written}");
    }
    assert!(!written.contains(clawgate_config::REDACTED), "{written}");
    // A placeholder with nothing stored behind it is refused, naming the key.
    let hash = ok_payload(&admin.request("config.get", None).await.unwrap())["hash"].clone();
    let patch = json!({"hooks": {"token": clawgate_config::REDACTED}});
    let res = admin.request("config.patch", Some(json!({"raw": patch.to_string(), "baseHash": hash}))).await.unwrap();
    assert_eq!(res["ok"], false, "{res}");
    assert!(res["error"]["message"].as_str().unwrap().contains("hooks.token"), "{res}");
}

/// ComfyUI-OpenClaw's own `data/templates` layout (contracts/comfy-real.md §5): a manifest naming
/// `portrait_v1` and `sdxl_basic`, whose shipped files wrap the graph in `"key_idx"`, beside a
/// good template.
fn openclaw_templates_copy(dir: &std::path::Path) {
    let wrapped = json!({"key_idx": {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {}},
                                     "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{positive_prompt}}"}}}});
    std::fs::write(dir.join("portrait_v1.json"), wrapped.to_string()).unwrap();
    std::fs::write(dir.join("sdxl_basic.json"), wrapped.to_string()).unwrap();
    let solid = json!({"1": {"class_type": "EmptyImage", "inputs": {"width": "{{width}}", "height": 8, "batch_size": 1, "color": 0}},
                       "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "gw"}}});
    std::fs::write(dir.join("gw_solid.json"), solid.to_string()).unwrap();
    let manifest = json!({"version": 1, "templates": {
        "portrait_v1": {"path": "portrait_v1.json", "allowed_inputs": ["positive_prompt", "seed"], "defaults": {"seed": 0}},
        "sdxl_basic": {"path": "sdxl_basic.json", "allowed_inputs": ["positive_prompt", "negative_prompt", "seed"],
                       "defaults": {"seed": 1234}},
        "gw_solid": {"path": "gw_solid.json", "allowed_inputs": ["width"], "defaults": {"width": 64}}}});
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
}

fn ids(list: &Value, key: &str, field: &str) -> Vec<String> {
    list[key].as_array().unwrap().iter().map(|t| t[field].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn one_bad_template_never_takes_the_good_ones_down_and_a_fix_is_picked_up() {
    let comfy = FakeComfy::start().await.expect("fake comfy");
    let tg = FakeTelegram::start().await.expect("fake telegram");
    let dir = tempfile::tempdir().unwrap();
    openclaw_templates_copy(dir.path());
    let config = json!({
        "channels": {"telegram": {"botToken": tg.token(), "apiRoot": tg.api_root(), "pollTimeoutSeconds": 1,
                                  "dmPolicy": "open", "allowFrom": ["100"]}},
        "comfy": {"templatesDir": dir.path(), "workers": [{"name": "gpu", "url": comfy.base_url()}]},
    });
    let gw = TestGateway::builder(BIN).config(config.to_string()).start().await.expect("start");
    let mut c = RawClient::connect(&gw.ws_url()).await.expect("ws");
    c.handshake(gw.token(), &json!({})).await.expect("hello");

    let res = c.request("comfy.templates.list", None).await.unwrap();
    let list = ok_payload(&res);
    assert_eq!(ids(list, "templates", "id"), ["gw_solid"], "{list}");
    assert_eq!(ids(list, "errors", "id"), ["portrait_v1", "sdxl_basic"], "{list}");
    assert!(list["errors"][1]["error"].as_str().unwrap().contains("key_idx"), "{list}");
    let log = gw.read_log();
    assert!(log.contains("sdxl_basic") && log.contains("ComfyUI template not loaded"), "{log}");

    // The chat command lists the good one and names the bad ones, without the gateway's paths.
    tg.push_private_message(100, "owner", "/templates");
    let sent = tg
        .wait_for_sent(|c| c.param_str("text").is_some_and(|t| t.contains("gw_solid")), Duration::from_secs(20))
        .await
        .expect("a /templates reply");
    let text = sent.param_str("text").unwrap().to_owned();
    assert!(text.contains("sdxl_basic could not be loaded") && text.contains("portrait_v1"), "{text}");
    assert!(!text.contains(&dir.path().display().to_string()), "{text}");

    // Fixing a file is picked up without a restart.
    let fixed = json!({"1": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{positive_prompt}}"}}});
    std::fs::write(dir.path().join("sdxl_basic.json"), fixed.to_string()).unwrap();
    let res = c.request("comfy.templates.list", None).await.unwrap();
    let list = ok_payload(&res);
    assert_eq!(ids(list, "templates", "id"), ["gw_solid", "sdxl_basic"], "{list}");
    assert_eq!(ids(list, "errors", "id"), ["portrait_v1"], "{list}");
}

/// Runs `clawgate <args…> --config <path>` with no gateway secrets in the environment.
fn run_cli(args: &[&str], config: &std::path::Path, state: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .arg("--state-dir")
        .arg(state)
        .env_remove("CLAWGATE_GATEWAY_TOKEN")
        .env_remove("CLAWGATE_GATEWAY_PASSWORD")
        .env_remove("CLAWGATE_CONFIG")
        .output()
        .expect("run clawgate");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn config_validate_and_gateway_refuse_the_same_files_with_the_same_file_line_message() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let path = dir.path().join("clawgate.json5");
    // (config text, the key the error names, the line it is on)
    let cases = [
        (
            "{\n  gateway: {\n    auth: {\n      token: {env: \"CLAWGATE_TEST_NEVER_SET_VAR\"},\n    },\n  },\n}\n",
            "gateway.auth.token",
            4,
        ),
        (
            "{\n  gateway: {auth: {mode: \"password\",\n    password: {file: \"no-such-password.txt\"}}},\n}\n",
            "gateway.auth.password",
            3,
        ),
        (
            "{\n  models: {providers: {p: {api: \"openai-completions\", baseUrl: \"http://127.0.0.1:9\",\n    apiKey: {env: \"CLAWGATE_TEST_NEVER_SET_KEY\"}}}},\n}\n",
            "models.providers.p.apiKey",
            3,
        ),
        (
            "{\n  channels: {\n    telegram: {botToken: \"1:x\", dmPolicy: \"sometimes\"},\n  },\n}\n",
            "channels.telegram.dmPolicy",
            3,
        ),
        ("{\n  comfy: {\n    workers: [\n      {url: \"ftp://gpu\"},\n    ],\n  },\n}\n", "comfy.workers[0].url", 4),
        ("{\n  gateway: {\n    port: \"eighty\",\n  },\n}\n", "gateway.port", 3),
    ];
    for (text, key, line) in cases {
        std::fs::write(&path, text).unwrap();
        let (code, validate) = run_cli(&["config", "validate"], &path, &state);
        assert_eq!(code, Some(1), "validate must refuse {key}: {validate}");
        let first = validate.lines().next().unwrap_or_default().to_owned();
        assert!(
            first.contains(&format!("clawgate.json5:{line}:")) && first.contains(key),
            "validate for {key}: {validate}"
        );
        let (code, gateway) = run_cli(&["gateway", "--port", "0"], &path, &state);
        assert_eq!(code, Some(2), "gateway must refuse {key}: {gateway}");
        assert_eq!(gateway.lines().next().unwrap_or_default(), first, "same message for {key}: {gateway}");
    }
}

#[test]
fn the_banner_names_the_real_bind_and_a_usable_local_address() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    // Plain text off loopback has to be asked for (issue 14).
    let config = dir.path().join("clawgate.json5");
    std::fs::write(&config, "{gateway: {allowInsecureBind: true}}").unwrap();
    let mut child = Command::new(BIN)
        .args(["gateway", "--port", "0", "--bind", "lan", "--config"])
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.path())
        .env("CLAWGATE_GATEWAY_TOKEN", "banner-test-token-1")
        .env_remove("CLAWGATE_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().unwrap();
    // The gateway prints the line once it listens; a closed stdout (exit) ends the loop.
    let line = BufReader::new(stdout).lines().map_while(Result::ok).find(|l| l.contains("listening on"));
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("a listening line");
    assert!(line.contains("ws://0.0.0.0:") && line.contains("all interfaces"), "{line}");
    assert!(line.contains("ws://127.0.0.1:"), "a usable address for this machine: {line}");
}

#[tokio::test]
async fn first_start_without_a_config_file_says_defaults_not_gone() {
    let gw = TestGateway::builder(BIN).start().await.expect("start");
    // The watcher's first look at the missing file is logged; wait for it.
    let seen = clawgate_testkit::eventually(Duration::from_secs(20), "the watcher logs the missing file", || {
        gw.read_log().contains("no config file yet").then_some(())
    })
    .await;
    let log = gw.read_log();
    assert!(seen.is_ok(), "{log}");
    assert!(log.contains("no config file yet"), "{log}");
    assert!(log.contains("running with defaults"), "{log}");
    assert!(!log.contains("config file is gone"), "{log}");
}
