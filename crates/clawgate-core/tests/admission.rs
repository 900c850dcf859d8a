//! Admission and health as services, in process on an in-memory store: the handles the
//! WebSocket connection holds (`AuthService`, `HealthService`, `Events`) see what the config
//! service and the method handlers change, without a gateway passed around.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

use clawgate_core::Gateway;
use clawgate_core::agent::AgentSetup;
use clawgate_core::broadcast::{AuthKind, ClientHandle, Outbound};
use clawgate_core::config_service::{ConfigService, Overrides};
use clawgate_core::dispatch::{CallContext, dispatch};
use clawgate_core::handshake::ConnMeta;
use clawgate_core::settings::GatewaySettings;
use clawgate_protocol::connect::{ConnectParams, parse_connect_params};
use clawgate_store::{AnyStore, SessionStore};

const OLD_TOKEN: &str = "T-old-admission-token";
const NEW_TOKEN: &str = "T-new-admission-token";

async fn gateway(dir: &tempfile::TempDir) -> Arc<Gateway> {
    let path = dir.path().join("clawgate.json5");
    let loaded = clawgate_config::parse_str("{}", &path).expect("config parses");
    let agents = AgentSetup::from_config(&loaded.config, dir.path()).expect("agents");
    let store = AnyStore::open_in_memory().await.expect("in-memory store");
    let settings = GatewaySettings::for_tests(OLD_TOKEN, dir.path().to_path_buf());
    Gateway::new("test", settings, store, ConfigService::new(path, loaded), agents, Overrides::default())
}

fn client(gw: &Gateway, conn: &str, scopes: &[&str]) -> (Arc<ClientHandle>, UnboundedReceiver<Outbound>) {
    let scopes = scopes.iter().map(|s| s.to_string()).collect();
    let (client, rx, _) =
        ClientHandle::new(conn.into(), "operator".into(), scopes, None, AuthKind::SharedSecret, 1 << 20);
    gw.events.clients().add(client.clone());
    (client, rx)
}

fn connect(token: &str) -> ConnectParams {
    parse_connect_params(&json!({
        "minProtocol": 4, "maxProtocol": 4,
        "client": {"id": "cli", "version": "1", "platform": "linux", "mode": "cli"},
        "role": "operator", "scopes": ["operator.read"],
        "auth": {"token": token},
    }))
    .expect("connect params")
}

fn loopback(conn: &str) -> ConnMeta {
    ConnMeta {
        conn_id: conn.into(),
        remote_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        origin: None,
        host: None,
        scopes_header: None,
        forwarded: false,
        nonce: "nonce".into(),
    }
}

/// The next event frame named `event` on a client's queue (or the close it got), waiting for it.
async fn next_outbound(rx: &mut UnboundedReceiver<Outbound>, wanted: impl Fn(&Outbound) -> bool) -> Outbound {
    let found = async {
        loop {
            match rx.recv().await {
                Some(o) if wanted(&o) => return o,
                Some(_) => continue,
                None => panic!("the client's queue ended"),
            }
        }
    };
    // A bound on a failure only: the fact waited for is the frame itself.
    tokio::time::timeout(Duration::from_secs(30), found).await.expect("the awaited frame arrived")
}

fn event_named(name: &'static str) -> impl Fn(&Outbound) -> bool {
    move |o| {
        o.text().is_some_and(|t| {
            serde_json::from_str::<Value>(&t).is_ok_and(|f| f["type"] == "event" && f["event"] == name)
        })
    }
}

fn payload(o: &Outbound) -> Value {
    match o {
        o @ (Outbound::Text(_) | Outbound::Event(..)) => {
            serde_json::from_str::<Value>(&o.text().expect("text")).expect("JSON frame")["payload"].clone()
        }
        other => panic!("not a text frame: {other:?}"),
    }
}

/// `config.patch` swaps the settings the admission handle reads: the next connect needs the new
/// token, the old one is refused, and clients that authenticated with the old secret are closed.
#[tokio::test]
async fn a_token_patched_over_the_protocol_is_the_one_the_next_connect_needs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gw = gateway(&dir).await;
    assert!(gw.auth.admit(&loopback("c1"), &connect(OLD_TOKEN)).await.is_ok(), "old token before the change");

    let (admin, mut admin_rx) = client(&gw, "admin", &["operator.admin"]);
    let ctx = CallContext { client: admin, request_id: "1".into(), turn: None };
    let raw = format!("{{ gateway: {{ auth: {{ mode: 'token', token: '{NEW_TOKEN}' }} }} }}");
    let applied = dispatch(&gw, &ctx, "config.patch", json!({"raw": raw})).await.expect("config.patch");
    assert_eq!(applied["ok"], true, "{applied}");

    let refused = gw.auth.admit(&loopback("c2"), &connect(OLD_TOKEN)).await.expect_err("old token after the change");
    assert_eq!(refused.error.detail_code(), Some("AUTH_TOKEN_MISMATCH"), "{:?}", refused.error);
    let admitted = gw.auth.admit(&loopback("c3"), &connect(NEW_TOKEN)).await.expect("new token");
    assert_eq!(admitted.method, "token");

    let changed = next_outbound(&mut admin_rx, event_named("config.changed")).await;
    assert!(payload(&changed)["changes"].to_string().contains("gateway.auth.token"), "{:?}", payload(&changed));
    let closed = next_outbound(&mut admin_rx, |o| matches!(o, Outbound::Close(..))).await;
    assert!(matches!(closed, Outbound::Close(4001, _)), "{closed:?}");
}

/// One refresh, one `health` event per client: the full snapshot to `operator.read` holders,
/// the public projection (no database path, no session keys) to everyone else; `hello-ok`
/// carries the same split.
#[tokio::test]
async fn health_goes_out_in_full_to_readers_and_projected_to_the_rest() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gw = gateway(&dir).await;
    gw.store.ensure_session("agent:main:private-chat", "main", 1).await.expect("a session");
    let (_reader, mut reader_rx) = client(&gw, "reader", &["operator.read"]);
    let (_probe, mut probe_rx) = client(&gw, "probe", &[]);

    gw.health.refresh_and_publish("main").await;

    let full = payload(&next_outbound(&mut reader_rx, event_named("health")).await);
    assert!(full["sessions"]["path"].as_str().is_some_and(|p| p.ends_with("clawgate.db")), "{full}");
    assert_eq!(full["sessions"]["recent"][0]["key"], "agent:main:private-chat", "{full}");
    let public = payload(&next_outbound(&mut probe_rx, event_named("health")).await);
    assert_eq!(public["sessions"], json!({"path": "", "count": 1, "recent": []}), "{public}");
    assert_eq!(public["defaultAgentId"], "main");

    let admission = gw.auth.admit(&loopback("c1"), &connect(OLD_TOKEN)).await.expect("admitted");
    let hello = serde_json::to_value(gw.health.hello_ok("c1", &admission)).expect("hello-ok");
    assert_eq!(hello["snapshot"]["health"], full, "a reader's hello-ok carries the full snapshot");
}
