//! Hiding secrets before a config is shown to anyone, and putting them back on the way in.
//!
//! Class closed: *a secret shown because its key was not on a list of names*. Redaction is
//! structural: [`SECRET_PATHS`] names every place in the config model that holds a secret
//! (typed keys and the keys of the sections the core decodes), and the same table marks those
//! keys `sensitive` in [`crate::ui_hints`], so the schema, the editor and `config.get` cannot
//! disagree. A password inside a URL (`http://user:PASS@host`) is redacted wherever a string
//! value is a URL, whatever its key ([`redact_url_userinfo`], [`SecretUrl`]). The old key-name
//! rule stays as a second net for keys no table knows yet.

use std::borrow::Cow;
use std::fmt;

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

/// What a redacted secret is replaced with. OpenClaw's Control UI knows this exact string and
/// sends it back unchanged for secrets the user did not edit.
pub const REDACTED: &str = "__OPENCLAW_REDACTED__";

/// Every config key that holds a secret, as key paths where `*` stands for any object key or
/// array index. A string there is shown as [`REDACTED`]; a reference (`{"env": …}`,
/// `{"file": …}`) says where the secret is, not what it is, and is shown as is.
pub const SECRET_PATHS: &[&str] = &[
    "gateway.auth.token",
    "gateway.auth.password",
    "channels.*.botToken",
    "channels.*.token",
    "channels.*.webhookSecret",
    "channels.*.accounts.*.botToken",
    "channels.*.accounts.*.token",
    "channels.*.accounts.*.webhookSecret",
    "channels.*.channelAccessToken",
    "channels.*.channelSecret",
    "channels.*.accounts.*.channelAccessToken",
    "channels.*.accounts.*.channelSecret",
    "channels.*.accessToken",
    "channels.*.appSecret",
    "channels.*.verifyToken",
    "channels.*.accounts.*.accessToken",
    "channels.*.accounts.*.appSecret",
    "channels.*.accounts.*.verifyToken",
    "channels.*.appToken",
    "channels.*.signingSecret",
    "channels.*.accounts.*.appToken",
    "channels.*.accounts.*.signingSecret",
    "models.providers.*.apiKey",
    "models.providers.*.headers.*",
    "models.providers.*.models.*.headers.*",
    "hooks.token",
    "comfy.workers.*.adminToken",
    "comfy.workers.*.obsToken",
    "comfy.workers.*.device.token",
];

/// Every config key that holds a URL. Their userinfo password is a secret (any string value
/// that is a URL with a password is redacted too; this table is for the schema and tests).
pub const URL_PATHS: &[&str] =
    &["models.providers.*.baseUrl", "comfy.workers.*.url", "channels.*.webhookUrl", "channels.*.accounts.*.webhookUrl"];

/// Key names whose string values are treated as secrets wherever they appear, as a second net
/// behind [`SECRET_PATHS`]. Compared ignoring case, `_` and `-`, so `api_key` counts as `apiKey`.
const SECRET_KEYS: &[&str] = &[
    "token",
    "bottoken",
    "apikey",
    "password",
    "secret",
    "admintoken",
    "obstoken",
    "webhooksecret",
    "clientsecret",
    "signingsecret",
    "apptoken",
    "accesstoken",
    "appsecret",
    "verifytoken",
];

/// Whether the key path `path` (dotted; array indexes as `[i]` or `.i`) is one of
/// [`SECRET_PATHS`].
#[must_use]
pub fn is_secret_path(path: &str) -> bool {
    let segments = split_path(path);
    SECRET_PATHS.iter().any(|pattern| pattern_matches(pattern, &segments))
}

fn split_path(path: &str) -> Vec<String> {
    path.replace('[', ".").replace(']', "").split('.').filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

fn pattern_matches(pattern: &str, segments: &[String]) -> bool {
    let parts: Vec<&str> = pattern.split('.').collect();
    parts.len() == segments.len() && parts.iter().zip(segments).all(|(p, s)| *p == "*" || p == s)
}

/// `url` with the password of its userinfo replaced by [`REDACTED`]
/// (`http://user:__OPENCLAW_REDACTED__@host/`); anything that is not such a URL is returned as is.
#[must_use]
pub fn redact_url_userinfo(url: &str) -> Cow<'_, str> {
    match userinfo_password(url) {
        Some((start, end)) if &url[start..end] != REDACTED => {
            Cow::Owned(format!("{}{REDACTED}{}", &url[..start], &url[end..]))
        }
        _ => Cow::Borrowed(url),
    }
}

/// The byte range of the password in `scheme://user:password@host…`, if there is one.
fn userinfo_password(url: &str) -> Option<(usize, usize)> {
    let scheme_end = url.find("://")?;
    let scheme = &url[..scheme_end];
    if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) {
        return None;
    }
    let authority_start = scheme_end + 3;
    let rest = &url[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let at = authority.rfind('@')?;
    let colon = authority[..at].find(':')?;
    Some((authority_start + colon + 1, authority_start + at))
}

/// A URL from the config whose password (if any) is a secret: `Display`, `Debug` and
/// `Serialize` show it with the password replaced by [`REDACTED`]; only [`SecretUrl::expose`]
/// gives the URL to connect to.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps a URL.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its password, for making requests. Never log or show it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL as shown: password redacted.
    #[must_use]
    pub fn shown(&self) -> Cow<'_, str> {
        redact_url_userinfo(&self.0)
    }
}

impl SecretUrl {
    /// `text` (an error message, say) with this URL's password replaced by [`REDACTED`], for
    /// errors from HTTP libraries that quote the URL they were given.
    #[must_use]
    pub fn scrub(&self, text: &str) -> String {
        match userinfo_password(&self.0) {
            Some((a, b)) if b > a => text.replace(&self.0[a..b], REDACTED),
            _ => text.to_owned(),
        }
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.shown(), f)
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.shown())
    }
}

/// A copy of `value` (a whole config document) with every secret replaced by [`REDACTED`]:
/// strings at [`SECRET_PATHS`], strings under secret-looking key names, and URL passwords in
/// any string.
#[must_use]
pub fn redacted(value: &Value) -> Value {
    let mut out = value.clone();
    redact_in_place(&mut out, &mut Vec::new());
    out
}

/// [`redacted`] for the object at key path `at` (e.g. `"channels"` or `"channels.telegram"`),
/// so the secret paths still match.
#[must_use]
pub fn redacted_section(at: &str, section: &Map<String, Value>) -> Value {
    let mut out = Value::Object(section.clone());
    redact_in_place(&mut out, &mut split_path(at));
    out
}

fn redact_in_place(value: &mut Value, path: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                path.push(key.clone());
                if child.is_string() && (is_secret_key(key) || SECRET_PATHS.iter().any(|p| pattern_matches(p, path))) {
                    *child = Value::String(REDACTED.to_owned());
                } else {
                    redact_in_place(child, path);
                }
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter_mut().enumerate() {
                path.push(i.to_string());
                if child.is_string() && SECRET_PATHS.iter().any(|p| pattern_matches(p, path)) {
                    *child = Value::String(REDACTED.to_owned());
                } else {
                    redact_in_place(child, path);
                }
                path.pop();
            }
        }
        Value::String(s) => {
            if let Cow::Owned(shown) = redact_url_userinfo(s) {
                *s = shown;
            }
        }
        _ => {}
    }
}

fn is_secret_key(key: &str) -> bool {
    let normalized: String = key.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect();
    SECRET_KEYS.contains(&normalized.as_str())
}

/// Puts secrets back into a document that went through [`redacted`] and came back edited:
/// every [`REDACTED`] string in `edited` is replaced by the value at the same place in
/// `original`, and a URL whose password is [`REDACTED`] gets the original URL's password back.
/// Returns the key paths where there was nothing to restore (the client sent the placeholder
/// for a secret that does not exist); those are left as they are for the caller to reject.
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
        Value::String(s) if s.contains(REDACTED) => {
            let restored = userinfo_password(s).filter(|(a, b)| &s[*a..*b] == REDACTED).and_then(|(a, b)| {
                let old = original.and_then(Value::as_str)?;
                let (oa, ob) = userinfo_password(old)?;
                Some(format!("{}{}{}", &s[..a], &old[oa..ob], &s[b..]))
            });
            match restored {
                Some(url) => *s = url,
                None => missing.push(path.to_string()),
            }
        }
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

    #[test]
    fn secrets_are_found_by_place_not_only_by_name() {
        let doc = json!({
            "channels": {"telegram": {"webhookSecret": "ws", "accounts": {"b": {"webhookSecret": "ws2"}}}},
            "models": {"providers": {"p": {"headers": {"X-Custom-Auth": "h"}, "baseUrl": "http://u:pw@h:1/v1"}}},
            "comfy": {"workers": [{"url": "https://me:pw2@gpu:8188/x?y#z", "device": {"token": "d"}}]}
        });
        let out = redacted(&doc);
        let text = out.to_string();
        for secret in ["\"ws\"", "ws2", "\"h\"", ":pw@", ":pw2@", "\"d\""] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(out["models"]["providers"]["p"]["baseUrl"], format!("http://u:{REDACTED}@h:1/v1"));
        assert_eq!(out["comfy"]["workers"][0]["url"], format!("https://me:{REDACTED}@gpu:8188/x?y#z"));
        assert!(is_secret_path("comfy.workers[3].device.token"));
        assert!(!is_secret_path("comfy.workers[3].device.id"));
    }

    #[test]
    fn url_userinfo_is_redacted_only_where_there_is_a_password() {
        assert_eq!(redact_url_userinfo("http://h:1/a@b"), "http://h:1/a@b");
        assert_eq!(redact_url_userinfo("http://user@h"), "http://user@h");
        assert_eq!(redact_url_userinfo("not a url: a@b"), "not a url: a@b");
        assert_eq!(redact_url_userinfo("http://a:b:c@h"), format!("http://a:{REDACTED}@h"));
        let url = SecretUrl::new("http://a:s3cr3t@h:8188");
        for shown in [url.to_string(), format!("{url:?}"), serde_json::to_string(&url).unwrap()] {
            assert!(!shown.contains("s3cr3t"), "{shown}");
        }
        assert_eq!(url.expose(), "http://a:s3cr3t@h:8188");
        assert_eq!(
            url.scrub("GET http://a:s3cr3t@h:8188/x failed"),
            format!("GET http://a:{REDACTED}@h:8188/x failed")
        );
    }

    #[test]
    fn restore_puts_back_a_redacted_url_password() {
        let original = json!({"comfy": {"workers": [{"url": "http://a:pw@h:1"}]}});
        let mut edited = redacted(&original);
        assert!(restore_redacted(&mut edited, &original).is_empty());
        assert_eq!(edited, original);
        let mut edited = json!({"comfy": {"workers": [{"url": format!("http://a:{REDACTED}@other")}]}});
        assert!(restore_redacted(&mut edited, &original).is_empty());
        assert_eq!(edited["comfy"]["workers"][0]["url"], "http://a:pw@other");
        let mut edited = json!({"x": format!("http://a:{REDACTED}@h")});
        assert_eq!(restore_redacted(&mut edited, &json!({})), vec!["x".to_owned()]);
    }
}
