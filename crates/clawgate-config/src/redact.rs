//! Hiding secrets before a config is shown to a client, and putting them back on the way in.

use serde_json::{Map, Value};

/// What a redacted secret is replaced with. OpenClaw's Control UI knows this exact string and
/// sends it back unchanged for secrets the user did not edit.
pub const REDACTED: &str = "__OPENCLAW_REDACTED__";

/// Key names whose string values are secrets, wherever they appear. Compared ignoring case,
/// `_` and `-`, so `api_key` and `API-KEY` count as `apiKey`.
const SECRET_KEYS: &[&str] = &["token", "bottoken", "apikey", "password", "secret", "admintoken"];

/// A copy of `value` with every secret string replaced by [`REDACTED`]: the values of keys
/// named `token`, `botToken`, `apiKey`, `password`, `secret` or `adminToken` at any depth
/// (which covers `gateway.auth.token` and `gateway.auth.password`). Secret references such as
/// `{"env": "NAME"}` are not strings and are kept: they say where a secret is, not what.
#[must_use]
pub fn redacted(value: &Value) -> Value {
    let mut out = value.clone();
    redact_in_place(&mut out);
    out
}

fn redact_in_place(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if child.is_string() && is_secret_key(key) {
                    *child = Value::String(REDACTED.to_owned());
                } else {
                    redact_in_place(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_in_place),
        _ => {}
    }
}

fn is_secret_key(key: &str) -> bool {
    let normalized: String = key.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect();
    SECRET_KEYS.contains(&normalized.as_str())
}

/// Puts secrets back into a document that went through [`redacted`] and came back edited:
/// every [`REDACTED`] string in `edited` is replaced by the value at the same place in
/// `original`. Returns the key paths where there was nothing to restore (the client sent the
/// placeholder for a secret that does not exist); those are left as they are for the caller
/// to reject.
pub fn restore_redacted(edited: &mut Value, original: &Value) -> Vec<String> {
    let mut missing = Vec::new();
    restore_at(&crate::KeyPath::root(), edited, Some(original), &mut missing);
    missing
}

fn restore_at(path: &crate::KeyPath, edited: &mut Value, original: Option<&Value>, missing: &mut Vec<String>) {
    match edited {
        Value::String(s) if s == REDACTED => match original {
            Some(value) if value.as_str() != Some(REDACTED) => *edited = value.clone(),
            _ => missing.push(path.to_string()),
        },
        Value::Object(map) => {
            let empty = Map::new();
            let original = original.and_then(Value::as_object).unwrap_or(&empty);
            for (key, child) in map.iter_mut() {
                restore_at(&path.child(key), child, original.get(key), missing);
            }
        }
        Value::Array(items) => {
            let original = original.and_then(Value::as_array);
            for (i, child) in items.iter_mut().enumerate() {
                restore_at(&path.index(i), child, original.and_then(|o| o.get(i)), missing);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secrets_are_replaced_at_any_depth() {
        let doc = json!({
            "gateway": {"port": 1, "auth": {"mode": "token", "token": "t", "password": "p"}},
            "channels": {"telegram": {"botToken": "b", "accounts": [{"apiKey": "k", "name": "n"}]}},
            "models": {"providers": {"x": {"api_key": "k2", "secret": "s", "adminToken": "a"}}}
        });
        let out = redacted(&doc);
        assert_eq!(out["gateway"]["auth"]["token"], REDACTED);
        assert_eq!(out["gateway"]["auth"]["password"], REDACTED);
        assert_eq!(out["gateway"]["auth"]["mode"], "token");
        assert_eq!(out["gateway"]["port"], 1);
        assert_eq!(out["channels"]["telegram"]["botToken"], REDACTED);
        assert_eq!(out["channels"]["telegram"]["accounts"][0]["apiKey"], REDACTED);
        assert_eq!(out["channels"]["telegram"]["accounts"][0]["name"], "n");
        assert_eq!(out["models"]["providers"]["x"]["api_key"], REDACTED);
        assert_eq!(out["models"]["providers"]["x"]["secret"], REDACTED);
        assert_eq!(out["models"]["providers"]["x"]["adminToken"], REDACTED);
        assert!(!out.to_string().contains("\"t\""));
    }

    #[test]
    fn secret_references_are_kept() {
        let doc = json!({"gateway": {"auth": {"token": {"env": "TOK"}, "password": {"file": "pw.txt"}}}});
        assert_eq!(redacted(&doc), doc);
    }

    #[test]
    fn restore_puts_back_untouched_secrets() {
        let original = json!({"gateway": {"auth": {"token": "t"}}, "list": [{"apiKey": "k"}]});
        let mut edited = redacted(&original);
        edited["gateway"]["port"] = json!(2);
        let missing = restore_redacted(&mut edited, &original);
        assert!(missing.is_empty());
        assert_eq!(edited["gateway"]["auth"]["token"], "t");
        assert_eq!(edited["list"][0]["apiKey"], "k");
        assert_eq!(edited["gateway"]["port"], 2);
    }

    #[test]
    fn restore_reports_placeholders_with_nothing_behind_them() {
        let mut edited = json!({"channels": {"slack": {"botToken": REDACTED}}});
        let missing = restore_redacted(&mut edited, &json!({}));
        assert_eq!(missing, vec!["channels.slack.botToken".to_owned()]);
    }
}
