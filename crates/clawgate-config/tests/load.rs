//! Loading config files from disk: defaults, located errors, environment overlay, secrets.

use std::fs;
use std::path::{Path, PathBuf};

use clawgate_config::{
    AuthMode, Bind, ConfigError, ENV_GATEWAY_PASSWORD, ENV_GATEWAY_PORT, ENV_GATEWAY_TOKEN, Env, Secret, hash_text,
    load, load_with_env, parse_str,
};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

fn invalid(err: ConfigError) -> Vec<String> {
    match err {
        ConfigError::Invalid { issues } => issues.iter().map(ToString::to_string).collect(),
        other => panic!("expected validation errors, got {other}"),
    }
}

#[test]
fn unknown_auth_mode_reports_line_and_key() {
    let text = r#"// clawgate config
{
  gateway: {
    port: 18789,
    // auth
    auth: {
      mode: "tokn",
    },
  },
}
"#;
    let err = parse_str(text, Path::new("clawgate.json5")).unwrap_err();
    assert_eq!(
        invalid(err),
        vec![
            "clawgate.json5:7:13: gateway.auth.mode: unknown value \"tokn\" (expected one of: \
             none, token, password); did you mean \"token\"?"
        ]
    );
}

#[test]
fn missing_file_gives_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = load(&dir.path().join("nope.json5")).unwrap();
    assert!(!loaded.exists);
    assert_eq!(loaded.config.gateway.port, 18789);
    assert_eq!(loaded.config.gateway.bind, Bind::Loopback);
    assert_eq!(loaded.config.gateway.auth.mode, AuthMode::Token);
    assert_eq!(loaded.value, serde_json::json!({}));
}

#[test]
fn empty_object_file_gives_defaults_and_hashes_the_raw_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "c.json5", "{}\n");
    let loaded = load(&path).unwrap();
    assert!(loaded.exists);
    assert_eq!(loaded.config, clawgate_config::Config::default());
    assert_eq!(loaded.raw, "{}\n");
    assert_eq!(loaded.hash, hash_text("{}\n"));
    assert_eq!(loaded.hash.len(), 64);
}

#[test]
fn all_problems_are_reported_in_document_order_with_positions() {
    let text = "{\n  logging: { level: 'loud' },\n  gateway: {\n    prot: 1,\n    bind: 'lan',\n    auth: { mode: 'none' },\n    controlUi: { allowedOrigins: ['https://ok.example', 'https://x.example/path'] },\n  },\n}\n";
    let lines = invalid(parse_str(text, Path::new("c.json5")).unwrap_err());
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(lines[0].starts_with("c.json5:2:21: logging.level: unknown log level \"loud\""), "{}", lines[0]);
    assert!(
        lines[1].starts_with("c.json5:4:5: gateway.prot: unknown key \"prot\"; did you mean \"port\"?"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("c.json5:6:19: gateway.auth.mode: refusing to bind to a non-loopback address"),
        "{}",
        lines[2]
    );
    assert!(lines[3].starts_with("c.json5:7:57: gateway.controlUi.allowedOrigins[1]: "), "{}", lines[3]);
    assert!(lines[3].contains("use \"https://x.example\""), "{}", lines[3]);
}

#[test]
fn missing_password_points_at_the_mode_that_needs_it() {
    let text = "{\n  gateway: {\n    auth: {\n      mode: 'password',\n    },\n  },\n}";
    let err = parse_str(text, Path::new("c.json5")).unwrap_err();
    let issue = &err.issues()[0];
    assert_eq!(issue.key, "gateway.auth.password");
    assert_eq!((issue.line(), issue.column()), (Some(4), Some(13)));
}

#[test]
fn syntax_errors_name_file_line_and_enclosing_key() {
    let text = "{\n  gateway: {\n    port: 1\n    bind: 'lan',\n  },\n}\n";
    let err = parse_str(text, Path::new("c.json5")).unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }));
    assert!(err.to_string().starts_with("c.json5:4:5: gateway: syntax error: expected \",\""), "{err}");
}

#[test]
fn unreadable_files_are_read_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.json5");
    fs::write(&path, b"{a: '\xff'}").unwrap();
    let err = load(&path).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    assert!(err.to_string().contains("UTF-8"), "{err}");
    assert!(matches!(load(dir.path()).unwrap_err(), ConfigError::Read { .. }));
}

#[test]
fn environment_overrides_token_password_and_port() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "c.json5", "{gateway: {port: 1000, auth: {mode: 'password', token: 'file-token'}}}");
    // Without the environment, password mode has no password.
    assert!(load(&path).is_err());
    let env =
        Env::from_pairs([(ENV_GATEWAY_PASSWORD, "pw"), (ENV_GATEWAY_TOKEN, "env-token"), (ENV_GATEWAY_PORT, "2000")]);
    let loaded = load_with_env(&path, &env).unwrap();
    assert_eq!(loaded.config.gateway.port, 2000);
    assert_eq!(loaded.config.gateway.auth.password, Some(Secret::Plain("pw".into())));
    assert_eq!(loaded.config.gateway.auth.token, Some(Secret::Plain("env-token".into())));
    // The raw document still shows what the file says.
    assert_eq!(loaded.value["gateway"]["port"], 1000);
}

#[test]
fn invalid_port_in_environment_is_reported_alongside_file_problems() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "c.json5", "{\n  gateway: { tick: 1 },\n}");
    let env = Env::from_pairs([(ENV_GATEWAY_PORT, "http")]);
    let lines = invalid(load_with_env(&path, &env).unwrap_err());
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[0].contains(":2:14: gateway.tick: unknown key"), "{}", lines[0]);
    assert!(lines[1].contains(": gateway.port: environment variable CLAWGATE_GATEWAY_PORT"), "{}", lines[1]);
}

#[test]
fn environment_applies_to_a_missing_file_too() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::from_pairs([(ENV_GATEWAY_PORT, "0")]);
    let loaded = load_with_env(&dir.path().join("none.json5"), &env).unwrap();
    assert_eq!(loaded.config.gateway.port, 0);
    assert!(!loaded.exists);
}

#[test]
fn file_secrets_resolve_relative_to_the_config_directory() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("secrets")).unwrap();
    write(dir.path(), "secrets/token", "from-file\n");
    let path = write(
        dir.path(),
        "c.json5",
        "{gateway: {auth: {token: {file: 'secrets/token'}, password: {env: 'CLAWGATE_TEST_UNSET_VAR_1'}}}}",
    );
    let loaded = load(&path).unwrap();
    let token = loaded.config.gateway.auth.token.clone().unwrap();
    assert_eq!(loaded.resolve_secret(&token).unwrap(), "from-file");
    let password = loaded.config.gateway.auth.password.clone().unwrap();
    let err = password.resolve_with(loaded.base_dir(), &Env::empty()).unwrap_err();
    assert!(err.to_string().contains("CLAWGATE_TEST_UNSET_VAR_1"), "{err}");
}

#[test]
fn argon2_password_hashes_are_stored_verbatim() {
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";
    let text = format!("{{gateway: {{auth: {{mode: 'password', password: '{hash}'}}}}}}");
    let loaded = parse_str(&text, Path::new("c.json5")).unwrap();
    assert_eq!(loaded.config.gateway.auth.password, Some(Secret::Plain(hash.to_owned())));
}

#[test]
fn open_sections_keep_keys_clawgate_does_not_read() {
    let text = "{channels: {telegram: {botToken: 'x', anything: [1, {deep: true}]}}, comfy: {workers: []}, tools: {}}";
    let loaded = parse_str(text, Path::new("c.json5")).unwrap();
    assert_eq!(loaded.config.channels.telegram.as_ref().unwrap().base.extra["anything"][1]["deep"], true);
    let err = parse_str("{\n  agents: 'main',\n}", Path::new("c.json5")).unwrap_err();
    assert_eq!(err.issues()[0].key, "agents");
    assert_eq!(err.issues()[0].line(), Some(2));
}

#[test]
fn debug_output_never_contains_secret_values() {
    let text = "{gateway: {auth: {token: 'tok-SECRET-1', password: 'pw-SECRET-2'}}, channels: {x: {botToken: 'bot-SECRET-3'}}, models: {p: {apiKey: 'key-SECRET-4'}}}";
    let loaded = parse_str(text, Path::new("c.json5")).unwrap();
    let debug = format!("{loaded:?} {:?}", loaded.config);
    assert!(!debug.contains("SECRET"), "{debug}");
}
