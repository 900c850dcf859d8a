//! The edit cycle a `config.patch` goes through: redact for the client, restore, patch,
//! validate, write, load again.

use std::path::Path;

use clawgate_config::{
    Config, REDACTED, ReloadClass, diff, load, merge_patch, parse_str, redacted, restore_redacted, write_atomic,
};
use serde_json::json;

#[test]
fn patched_config_is_written_and_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clawgate.json5");
    write_atomic(&path, "// hand-written\n{gateway: {port: 1000, auth: {token: 'abc'}}}\n").unwrap();
    let before = load(&path).unwrap();

    let mut value = before.value.clone();
    merge_patch(&mut value, &json!({"gateway": {"port": 1001, "auth": {"token": null}}}));
    Config::from_value(&value).unwrap();
    let text = serde_json::to_string_pretty(&value).unwrap();
    write_atomic(&path, &text).unwrap();

    let after = load(&path).unwrap();
    assert_eq!(after.config.gateway.port, 1001);
    assert_eq!(after.config.gateway.auth.token, None);
    let changes = diff(&before.value, &after.value);
    let summary: Vec<(&str, ReloadClass)> = changes.iter().map(|c| (c.path.as_str(), c.class)).collect();
    assert_eq!(summary, vec![("gateway.auth.token", ReloadClass::Hot), ("gateway.port", ReloadClass::RestartProcess)]);
}

#[test]
fn invalid_patch_is_caught_before_writing() {
    let mut value = json!({});
    merge_patch(&mut value, &json!({"gateway": {"bind": "lan", "auth": {"mode": "none"}}}));
    let err = Config::from_value(&value).unwrap_err();
    assert!(err.to_string().starts_with("gateway.auth.mode: refusing to bind"), "{err}");
}

#[test]
fn redacted_config_round_trips_through_a_client() {
    let loaded =
        parse_str("{gateway: {auth: {token: 'tok'}}, channels: {telegram: {botToken: 'bot'}}}", Path::new("c.json5"))
            .unwrap();
    let shown = redacted(&loaded.value);
    assert_eq!(shown["gateway"]["auth"]["token"], REDACTED);
    assert!(!shown.to_string().contains("tok\""));

    // The client edits something else and sends everything back.
    let mut edited = shown.clone();
    edited["gateway"]["port"] = json!(9999);
    assert!(restore_redacted(&mut edited, &loaded.value).is_empty());
    let config = Config::from_value(&edited).unwrap();
    assert_eq!(config.gateway.port, 9999);
    assert_eq!(edited["channels"]["telegram"]["botToken"], "bot");
}
