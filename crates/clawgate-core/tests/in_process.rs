//! The core's services and method handlers in process, on an in-memory SQLite store: a request
//! goes through the same `dispatch` a WebSocket request does (typed params decoded, result
//! encoded, errors mapped once), without a binary, a socket or a model server. Domain rules are
//! tested here; `crates/clawgate/tests/` keeps the end-to-end checks over real sockets.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

use clawgate_core::Gateway;
use clawgate_core::agent::AgentSetup;
use clawgate_core::broadcast::{AuthKind, ClientHandle, Outbound};
use clawgate_core::config_service::{ConfigService, Overrides};
use clawgate_core::dispatch::{CallContext, dispatch};
use clawgate_core::settings::GatewaySettings;
use clawgate_protocol::ErrorShape;
use clawgate_store::AnyStore;

/// A gateway on an in-memory store with `config` (JSON5 text), and one connected operator.
struct Harness {
    gw: Arc<Gateway>,
    ctx: CallContext,
    events: UnboundedReceiver<Outbound>,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn new(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("clawgate.json5");
        let loaded = clawgate_config::parse_str(config, &path).expect("config parses");
        let agents = AgentSetup::from_config(&loaded.config, dir.path()).expect("agents");
        let store = AnyStore::open_in_memory().await.expect("in-memory store");
        let settings = GatewaySettings::for_tests("", dir.path().to_path_buf());
        let gw = Gateway::new("test", settings, store, ConfigService::new(path, loaded), agents, Overrides::default());
        let scopes = ["operator.admin", "operator.read", "operator.write"].map(String::from).to_vec();
        let (client, events, _) =
            ClientHandle::new("conn-1".into(), "operator".into(), scopes, None, AuthKind::SharedSecret, 1 << 20);
        gw.events.clients().add(client.clone());
        let ctx = CallContext { client, request_id: "1".into(), turn: None };
        Self { gw, ctx, events, _dir: dir }
    }

    async fn call(&self, method: &str, params: Value) -> Result<Value, ErrorShape> {
        dispatch(&self.gw, &self.ctx, method, params).await
    }

    async fn ok(&self, method: &str, params: Value) -> Value {
        self.call(method, params).await.unwrap_or_else(|e| panic!("{method}: {e:?}"))
    }

    /// Every event frame queued for the operator so far.
    fn drain_events(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Ok(o) = self.events.try_recv() {
            if let Some(text) = o.text() {
                let frame: Value = serde_json::from_str(&text).expect("a JSON frame");
                if frame["type"] == "event" {
                    out.push(frame);
                }
            }
        }
        out
    }
}

#[tokio::test]
async fn an_injected_message_is_stored_listed_broadcast_and_gone_with_its_session() {
    let mut h = Harness::new("{}").await;
    let key = "agent:main:notes";
    let injected = h.ok("chat.inject", json!({"sessionKey": key, "message": "remember the milk"})).await;
    assert_eq!(injected["ok"], true, "{injected}");

    let history = h.ok("chat.history", json!({"sessionKey": key})).await;
    let messages = history["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 1, "{history}");
    assert_eq!(messages[0]["role"], "assistant");
    assert!(messages[0].to_string().contains("remember the milk"), "{history}");

    let listed = h.ok("sessions.list", json!({})).await;
    assert_eq!(listed["count"], 1, "{listed}");
    assert_eq!(listed["sessions"][0]["key"], key, "{listed}");

    let events = h.drain_events();
    let chat_final = events
        .iter()
        .find(|e| e["event"] == "chat" && e["payload"]["sessionKey"] == key)
        .unwrap_or_else(|| panic!("no chat event for {key}: {events:?}"));
    assert_eq!(chat_final["payload"]["state"], "final");

    h.ok("sessions.delete", json!({"key": key})).await;
    let listed = h.ok("sessions.list", json!({})).await;
    assert_eq!(listed["count"], 0, "{listed}");
}

#[tokio::test]
async fn a_short_agent_key_names_that_agents_main_session() {
    let h = Harness::new("{}").await;
    h.ok("chat.inject", json!({"sessionKey": "agent:main", "message": "hi"})).await;
    let listed = h.ok("sessions.list", json!({})).await;
    assert_eq!(listed["sessions"][0]["key"], "agent:main:main", "{listed}");
}

#[tokio::test]
async fn bad_params_and_unknown_methods_get_the_documented_errors() {
    let h = Harness::new("{}").await;
    let e = h.call("chat.inject", json!({"sessionKey": "agent:main:x", "message": ""})).await.unwrap_err();
    assert_eq!(e.code, "INVALID_REQUEST");
    assert_eq!(e.message, "invalid chat.inject params: message must not be empty");

    let e = h.call("chat.history", json!({})).await.unwrap_err();
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("INVALID_REQUEST", "invalid chat.history params: missing field `sessionKey`")
    );

    let e = h.call("no.such.method", json!({})).await.unwrap_err();
    assert_eq!(e.code, "INVALID_REQUEST");
    assert!(e.message.contains("no.such.method"), "{e:?}");
}

#[tokio::test]
async fn a_cron_job_is_added_listed_and_removed() {
    let h = Harness::new("{}").await;
    let added = h
        .ok(
            "cron.add",
            json!({
                "name": "morning",
                "schedule": {"kind": "cron", "expr": "0 7 * * *"},
                "payload": {"kind": "agentTurn", "message": "good morning"},
            }),
        )
        .await;
    let id = added["id"].as_str().unwrap_or_else(|| panic!("an id: {added}")).to_owned();

    let listed = h.ok("cron.list", json!({})).await;
    let jobs = listed["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 1, "{listed}");
    assert_eq!(jobs[0]["name"], "morning");

    h.ok("cron.remove", json!({"id": id})).await;
    let listed = h.ok("cron.list", json!({})).await;
    assert_eq!(listed["jobs"].as_array().map(Vec::len), Some(0), "{listed}");
}

#[tokio::test]
async fn the_store_is_the_in_memory_one() {
    // Nothing lands next to the config: the harness's state lives in memory only.
    let h = Harness::new("{}").await;
    h.ok("chat.inject", json!({"sessionKey": "agent:main:x", "message": "m"})).await;
    assert!(!Path::new(&h.gw.settings().state_dir.join("clawgate.db")).exists());
}
