//! What a config change costs: applied live, a subsystem restart, or a process restart.
//!
//! Modelled on OpenClaw's hot-reload rules: each changed key is classified by the longest
//! matching prefix in [`RULES`]; anything not listed restarts the process, so a new key is
//! never silently ignored.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::path::{KeyPath, Segment};

/// How a changed key takes effect. Ordered by cost, so the `max` over a set of changes is
/// what the whole reload needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReloadClass {
    /// Applied to the running gateway without restarting anything.
    Hot,
    /// The owning subsystem restarts (one channel, the ComfyUI workers).
    RestartSubsystem,
    /// The whole process must restart (listen address, auth mode, log file, …).
    RestartProcess,
}

impl fmt::Display for ReloadClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Hot => "hot",
            Self::RestartSubsystem => "restart-subsystem",
            Self::RestartProcess => "restart-process",
        })
    }
}

/// Key prefix → class. Longest matching prefix wins; no match means restart-process.
pub const RULES: &[(&str, ReloadClass)] = &[
    ("$schema", ReloadClass::Hot),
    ("gateway", ReloadClass::RestartProcess),
    ("gateway.auth.token", ReloadClass::Hot),
    ("gateway.auth.password", ReloadClass::Hot),
    ("gateway.auth.rateLimit", ReloadClass::Hot),
    // Read when a connection opens: new connections get the new limit.
    ("gateway.rateLimit", ReloadClass::Hot),
    ("gateway.trustedProxies", ReloadClass::Hot),
    ("gateway.allowRealIpFallback", ReloadClass::Hot),
    ("gateway.controlUi.allowedOrigins", ReloadClass::Hot),
    ("gateway.controlUi.dangerouslyAllowHostHeaderOriginFallback", ReloadClass::Hot),
    ("gateway.http.endpoints", ReloadClass::Hot),
    // The log filter is built once at start too (no reload handle), so a new level is not
    // in force until a restart; saying "hot" here would report it applied when it is not.
    ("logging.level", ReloadClass::RestartProcess),
    ("logging.file", ReloadClass::RestartProcess),
    // The writer is built once at start, with the file.
    ("logging.rotate", ReloadClass::RestartProcess),
    ("agents", ReloadClass::Hot),
    ("models", ReloadClass::Hot),
    ("hooks", ReloadClass::Hot),
    ("session", ReloadClass::Hot),
    ("cron", ReloadClass::Hot),
    ("tools", ReloadClass::Hot),
    ("channels", ReloadClass::RestartSubsystem),
    ("comfy", ReloadClass::RestartSubsystem),
];

/// The reload class of a key path such as `gateway.auth.token` or `agents.list[0].model`.
/// Unparseable or unknown paths restart the process.
#[must_use]
pub fn reload_class(key_path: &str) -> ReloadClass {
    KeyPath::parse(key_path).map_or(ReloadClass::RestartProcess, |p| reload_class_of(&p))
}

/// [`reload_class`] for an already-parsed path.
#[must_use]
pub fn reload_class_of(path: &KeyPath) -> ReloadClass {
    RULES
        .iter()
        .filter_map(|(prefix, class)| {
            let prefix = KeyPath::parse(prefix)?;
            path.starts_with(&prefix).then_some((prefix.segments().len(), *class))
        })
        .max_by_key(|(len, _)| *len)
        .map_or(ReloadClass::RestartProcess, |(_, class)| class)
}

/// One changed key between two config versions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConfigChange {
    /// The changed key in [`KeyPath`] text form, e.g. `gateway.port`.
    pub path: String,
    /// What applying it takes.
    pub class: ReloadClass,
}

impl ConfigChange {
    /// For a change under `channels.<id>`, the channel id (the subsystem to restart).
    /// `None` for other keys and for `channels` itself (all channels).
    #[must_use]
    pub fn channel(&self) -> Option<String> {
        let path = KeyPath::parse(&self.path)?;
        match path.segments() {
            [Segment::Key(section), Segment::Key(id), ..] if section == "channels" => Some(id.clone()),
            _ => None,
        }
    }
}

/// The changed leaf paths between two config documents, in path order.
///
/// Objects are compared key by key; anything else (scalars, arrays) is compared whole. A key
/// that is absent, or `null`, on one side counts as an empty object when the other side is an
/// object, so adding `gateway: {auth: {token: …}}` reports `gateway.auth.token` (hot), not
/// `gateway` (restart). An object that is empty on both sides of such a comparison reports its
/// own path.
#[must_use]
pub fn diff(old: &Value, new: &Value) -> Vec<ConfigChange> {
    let mut paths = Vec::new();
    diff_into(&KeyPath::root(), Some(old), Some(new), &mut paths);
    paths.into_iter().map(|path| ConfigChange { class: reload_class_of(&path), path: path.to_string() }).collect()
}

fn diff_into(path: &KeyPath, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<KeyPath>) {
    let old = old.filter(|v| !v.is_null());
    let new = new.filter(|v| !v.is_null());
    let empty = Map::new();
    let (old_obj, new_obj) = match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => (a, b),
        (Some(Value::Object(a)), None) => (a, &empty),
        (None, Some(Value::Object(b))) => (&empty, b),
        (a, b) => {
            if a != b {
                out.push(path.clone());
            }
            return;
        }
    };
    if old_obj.is_empty() && new_obj.is_empty() {
        if old.is_some() != new.is_some() {
            out.push(path.clone());
        }
        return;
    }
    let keys: BTreeSet<&String> = old_obj.keys().chain(new_obj.keys()).collect();
    for key in keys {
        diff_into(&path.child(key), old_obj.get(key), new_obj.get(key), out);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn hot_keys_from_the_openclaw_rules() {
        for path in [
            "gateway.auth.token",
            "gateway.auth.password",
            "gateway.auth.rateLimit.maxAttempts",
            "gateway.controlUi.allowedOrigins",
            "gateway.http.endpoints.chatCompletions.enabled",
            "agents.list[0].model",
            "models.providers.openai",
            "hooks",
            "session.scope",
            "cron.jobs",
            "tools.allow",
            "$schema",
        ] {
            assert_eq!(reload_class(path), ReloadClass::Hot, "{path}");
        }
    }

    #[test]
    fn channel_and_comfy_changes_restart_their_subsystem() {
        assert_eq!(reload_class("channels.telegram.botToken"), ReloadClass::RestartSubsystem);
        assert_eq!(reload_class("channels"), ReloadClass::RestartSubsystem);
        assert_eq!(reload_class("comfy.workers"), ReloadClass::RestartSubsystem);
    }

    #[test]
    fn other_gateway_keys_and_unknown_paths_restart_the_process() {
        for path in [
            "gateway.port",
            "gateway.bind",
            "gateway.auth.mode",
            "gateway.auth",
            "gateway.controlUi.enabled",
            "gateway.controlUi.basePath",
            "gateway.reload.mode",
            "gateway.tickIntervalMs",
            "logging.file",
            "logging.level",
            "logging.rotate.maxBytes",
            "logging",
            "somethingNew",
            "gateway.authx",
            "not a [valid path",
        ] {
            assert_eq!(reload_class(path), ReloadClass::RestartProcess, "{path}");
        }
    }

    #[test]
    fn prefixes_match_whole_segments_only() {
        assert_eq!(reload_class("agentsx"), ReloadClass::RestartProcess);
        assert_eq!(reload_class("gateway.auth.tokenx"), ReloadClass::RestartProcess);
    }

    #[test]
    fn classes_order_by_cost() {
        assert!(ReloadClass::Hot < ReloadClass::RestartSubsystem);
        assert!(ReloadClass::RestartSubsystem < ReloadClass::RestartProcess);
        assert_eq!(ReloadClass::RestartSubsystem.to_string(), "restart-subsystem");
    }

    fn paths(old: Value, new: Value) -> Vec<(String, ReloadClass)> {
        diff(&old, &new).into_iter().map(|c| (c.path, c.class)).collect()
    }

    #[test]
    fn diff_lists_changed_leaves_with_classes() {
        let old = json!({"gateway": {"port": 1, "auth": {"token": "a", "mode": "token"}}});
        let new = json!({"gateway": {"port": 2, "auth": {"token": "b", "mode": "token"}}});
        assert_eq!(
            paths(old, new),
            vec![
                ("gateway.auth.token".to_owned(), ReloadClass::Hot),
                ("gateway.port".to_owned(), ReloadClass::RestartProcess),
            ]
        );
    }

    #[test]
    fn diff_of_equal_documents_is_empty() {
        let doc = json!({"a": {"b": [1, {"c": 2}]}, "d": null});
        assert!(diff(&doc, &doc.clone()).is_empty());
        assert!(diff(&json!({}), &json!({"x": null})).is_empty());
    }

    #[test]
    fn adding_a_nested_section_reports_its_leaves() {
        let new = json!({"gateway": {"auth": {"token": "t"}}});
        assert_eq!(paths(json!({}), new), vec![("gateway.auth.token".to_owned(), ReloadClass::Hot)]);
        let removed = paths(json!({"channels": {"telegram": {"botToken": "x"}}}), json!({}));
        assert_eq!(removed[0].0, "channels.telegram.botToken");
    }

    #[test]
    fn arrays_are_compared_whole() {
        let old = json!({"agents": {"list": [{"id": "a"}, {"id": "b"}]}});
        let new = json!({"agents": {"list": [{"id": "a"}, {"id": "c"}]}});
        assert_eq!(paths(old, new), vec![("agents.list".to_owned(), ReloadClass::Hot)]);
    }

    #[test]
    fn type_changes_are_leaf_changes() {
        let old = json!({"gateway": {"auth": {"token": "plain"}}});
        let new = json!({"gateway": {"auth": {"token": {"env": "T"}}}});
        let changes = paths(old, new);
        assert!(changes.iter().all(|(_, class)| *class == ReloadClass::Hot), "{changes:?}");
        assert!(changes.iter().any(|(p, _)| p == "gateway.auth.token"), "{changes:?}");
    }

    #[test]
    fn empty_objects_appearing_are_reported() {
        assert_eq!(
            paths(json!({}), json!({"channels": {"matrix": {}}})),
            vec![("channels.matrix".to_owned(), ReloadClass::RestartSubsystem)]
        );
    }

    #[test]
    fn channel_changes_name_the_channel() {
        let change = ConfigChange {
            path: "channels.telegram.accounts.main.botToken".to_owned(),
            class: ReloadClass::RestartSubsystem,
        };
        assert_eq!(change.channel().as_deref(), Some("telegram"));
        let all = ConfigChange { path: "channels".to_owned(), class: ReloadClass::RestartSubsystem };
        assert_eq!(all.channel(), None);
    }
}
