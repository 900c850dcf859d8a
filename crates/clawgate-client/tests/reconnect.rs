//! Reconnecting, session streams and typed calls against a scripted fake gateway that accepts
//! any number of connections on 127.0.0.1:0, over real sockets. Each test drives the gateway's
//! side of every connection and bounds every wait, so a hang fails instead of stalling.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use clawgate_client::{
    AgentRequest, AgentResult, Client, ClientError, ClientOptions, ClientPool, ConnectionState, ReconnectPolicy,
    SessionEvent,
};

/// Bound on anything a test waits for.
const WAIT: Duration = Duration::from_secs(10);

struct ServerConn {
    ws: WebSocketStream<TcpStream>,
}

impl ServerConn {
    async fn send(&mut self, value: Value) {
        self.ws.send(Message::Text(value.to_string().into())).await.unwrap();
    }

    async fn recv(&mut self) -> Option<Value> {
        loop {
            match timeout(WAIT, self.ws.next()).await.expect("client frame in time")? {
                Ok(Message::Text(t)) => return Some(serde_json::from_str(t.as_str()).unwrap()),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    async fn handshake(&mut self, conn_id: &str) {
        self.send(json!({"type":"event","event":"connect.challenge","payload":{"nonce":"n-1","ts":1}})).await;
        let connect = self.recv().await.expect("connect frame");
        assert_eq!(connect["method"], "connect");
        self.send(json!({"type":"res","id":connect["id"],"ok":true,"payload":hello_ok(conn_id)})).await;
    }

    async fn answer(&mut self, req: &Value, payload: Value) {
        self.send(json!({"type":"res","id":req["id"],"ok":true,"payload":payload})).await;
    }

    async fn close(mut self, code: u16, reason: &str) {
        let frame = CloseFrame { code: CloseCode::from(code), reason: reason.to_owned().into() };
        let _ = self.ws.send(Message::Close(Some(frame))).await;
        let _ = timeout(WAIT, async { while let Some(Ok(_)) = self.ws.next().await {} }).await;
    }
}

fn hello_ok(conn_id: &str) -> Value {
    json!({
        "type":"hello-ok","protocol":4,
        "server":{"version":"0.1.0-test","bootId":"boot-1","controlUiBuildSource":"bundled","connId":conn_id},
        "features":{"methods":["health","agent"],"events":["tick"],"capabilities":[]},
        "snapshot":{"presence":[],"health":{},"stateVersion":{"presence":1,"health":1},"uptimeMs":5,
                    "suspension":{"phase":"accepting"},
                    "sessionDefaults":{"defaultAgentId":"main","mainKey":"main","mainSessionKey":"agent:main:main"}},
        "auth":{"method":"token","role":"operator","scopes":["operator.read","operator.write"]},
        "policy":{"maxPayload":26214400,"maxBufferedBytes":52428800,"tickIntervalMs":30000,"attachments":{"maxBytes":1,"maxImageBytes":1}}
    })
}

/// A fake gateway: every accepted connection is handed to the test, which scripts it.
struct FakeGateway {
    url: String,
    conns: mpsc::Receiver<ServerConn>,
    listener_task: tokio::task::JoinHandle<()>,
}

impl FakeGateway {
    async fn start() -> FakeGateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let (tx, conns) = mpsc::channel(8);
        let listener_task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await
                    && tx.send(ServerConn { ws }).await.is_err()
                {
                    return;
                }
            }
        });
        FakeGateway { url, conns, listener_task }
    }

    async fn accept(&mut self) -> ServerConn {
        timeout(WAIT, self.conns.recv()).await.expect("a connection in time").expect("listener alive")
    }

    /// Stop listening: reconnect attempts are refused from now on.
    fn go_down(&self) {
        self.listener_task.abort();
    }
}

fn opts(url: &str) -> ClientOptions {
    ClientOptions::new(url)
        .token("tok")
        .scopes(["operator.read", "operator.write"])
        .reconnect(ReconnectPolicy::default().backoff(Duration::from_millis(10), Duration::from_millis(50)))
}

async fn connected(gw: &mut FakeGateway, options: ClientOptions) -> (Client, ServerConn) {
    let connecting = tokio::spawn(Client::connect(options));
    let mut conn = gw.accept().await;
    conn.handshake("conn-1").await;
    let client = timeout(WAIT, connecting).await.unwrap().unwrap().unwrap();
    (client, conn)
}

async fn wait_state(client: &Client, want: ConnectionState) {
    let mut rx = client.state();
    timeout(WAIT, rx.wait_for(|s| *s == want)).await.unwrap_or_else(|_| panic!("state {want:?} in time")).unwrap();
}

#[tokio::test]
async fn shutdown_fails_in_flight_requests_then_the_client_reconnects_and_replays_subscriptions() {
    let mut gw = FakeGateway::start().await;
    let (client, mut conn) = {
        let o = opts(&gw.url);
        connected(&mut gw, o)
    }
    .await;

    let subscribing = tokio::spawn({
        let client = client.clone();
        async move { client.subscribe("sessions.subscribe", json!({})).await }
    });
    let sub = conn.recv().await.unwrap();
    assert_eq!(sub["method"], "sessions.subscribe");
    conn.answer(&sub, json!({"subscribed": true})).await;
    subscribing.await.unwrap().unwrap();

    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.request("status", json!({})).await }
    });
    let status = conn.recv().await.unwrap();
    assert_eq!(status["method"], "status");
    conn.send(json!({"type":"event","event":"shutdown","payload":{"reason":"service restart","restartExpectedMs":20},"seq":1}))
        .await;
    // The waiting request fails at once with a typed error, before the socket even closes.
    let err = timeout(WAIT, in_flight).await.expect("in-flight request resolves").unwrap().unwrap_err();
    assert!(
        matches!(&err, ClientError::ConnectionLost { method, code: Some(1012), .. } if method == "status"),
        "{err:?}"
    );
    assert!(err.is_transient());
    conn.close(1012, "service restart").await;

    // A new connection: the handshake again, then the replayed subscription before anything else.
    let mut conn2 = gw.accept().await;
    conn2.handshake("conn-2").await;
    let replay = conn2.recv().await.unwrap();
    assert_eq!((replay["method"].as_str(), &replay["params"]), (Some("sessions.subscribe"), &json!({})));
    conn2.answer(&replay, json!({"subscribed": true})).await;
    wait_state(&client, ConnectionState::Connected).await;
    assert_eq!(client.hello().server.conn_id, "conn-2");

    let health = tokio::spawn({
        let client = client.clone();
        async move { client.request("health", json!({})).await }
    });
    let req = conn2.recv().await.unwrap();
    assert_eq!(req["method"], "health");
    conn2.answer(&req, json!({"ok": true})).await;
    assert_eq!(timeout(WAIT, health).await.unwrap().unwrap().unwrap(), json!({"ok": true}));
}

#[tokio::test]
async fn a_request_made_while_the_gateway_is_down_waits_its_bound_then_is_unavailable() {
    let mut gw = FakeGateway::start().await;
    let options = opts(&gw.url).reconnect(
        ReconnectPolicy::default()
            .backoff(Duration::from_millis(10), Duration::from_millis(50))
            .request_wait(Duration::from_millis(300)),
    );
    let (client, conn) = connected(&mut gw, options).await;
    gw.go_down();
    conn.close(1012, "service restart").await;
    let mut state = client.state();
    let attempt =
        timeout(WAIT, state.wait_for(|s| matches!(s, ConnectionState::Reconnecting { attempt } if *attempt >= 2)))
            .await
            .expect("reconnect attempts go on")
            .unwrap()
            .to_owned();
    assert!(matches!(attempt, ConnectionState::Reconnecting { .. }));
    let err = timeout(WAIT, client.request("health", json!({}))).await.expect("bounded wait").unwrap_err();
    assert!(
        matches!(&err, ClientError::Unavailable { method, attempt } if method == "health" && *attempt >= 1),
        "{err:?}"
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn revoked_credentials_close_the_client_for_good() {
    let mut gw = FakeGateway::start().await;
    let (client, conn) = {
        let o = opts(&gw.url);
        connected(&mut gw, o)
    }
    .await;
    let mut events = client.session("compose:doc:a:u").events();
    conn.close(4001, "gateway auth changed").await;
    let info = timeout(WAIT, client.closed()).await.expect("client closes");
    assert_eq!((info.code, info.reason.as_str()), (Some(4001), "gateway auth changed"));
    assert_eq!(client.current_state(), ConnectionState::Closed);
    assert!(matches!(client.request("health", json!({})).await, Err(ClientError::Closed { code: Some(4001), .. })));
    assert!(timeout(WAIT, events.recv()).await.unwrap().is_none(), "session streams end");
    assert!(timeout(Duration::from_millis(200), gw.conns.recv()).await.is_err(), "no reconnect attempt");
}

#[tokio::test]
async fn session_streams_get_their_own_events_and_connection_markers_across_a_reconnect() {
    let mut gw = FakeGateway::start().await;
    let (client, mut conn) = {
        let o = opts(&gw.url);
        connected(&mut gw, o)
    }
    .await;
    let ann = client.session("compose:doc:abc:ann");
    assert_eq!(ann.event_key(), "agent:main:compose:doc:abc:ann");
    let mut ann_events = ann.events();
    let mut bob_events = client.session("agent:main:compose:doc:abc:bob").events();

    let chat = |key: &str, text: &str, seq: u64| {
        json!({"type":"event","event":"chat","seq":seq,
               "payload":{"runId":"r1","sessionKey":key,"state":"delta","deltaText":text,"seq":1}})
    };
    conn.send(chat("agent:main:compose:doc:abc:bob", "for bob", 1)).await;
    conn.send(chat("agent:main:compose:doc:abc:ann", "for ann", 2)).await;
    let first = timeout(WAIT, ann_events.recv()).await.unwrap().unwrap();
    assert!(matches!(&first, SessionEvent::Chat(c) if c.delta_text() == Some("for ann")), "{first:?}");
    let first = timeout(WAIT, bob_events.recv()).await.unwrap().unwrap();
    assert!(matches!(&first, SessionEvent::Chat(c) if c.delta_text() == Some("for bob")), "{first:?}");

    // The network drops: no close frame at all.
    drop(conn);
    let marker = timeout(WAIT, ann_events.recv()).await.unwrap();
    assert!(matches!(marker, Some(SessionEvent::Disconnected)), "{marker:?}");
    let mut conn2 = gw.accept().await;
    conn2.handshake("conn-2").await;
    assert!(matches!(timeout(WAIT, ann_events.recv()).await.unwrap(), Some(SessionEvent::Reconnected)));
    conn2.send(chat("agent:main:compose:doc:abc:ann", "after", 1)).await;
    let next = timeout(WAIT, ann_events.recv()).await.unwrap().unwrap();
    assert!(matches!(&next, SessionEvent::Chat(c) if c.delta_text() == Some("after")), "{next:?}");
    assert!(matches!(timeout(WAIT, bob_events.recv()).await.unwrap(), Some(SessionEvent::Disconnected)));
    assert!(matches!(timeout(WAIT, bob_events.recv()).await.unwrap(), Some(SessionEvent::Reconnected)));
}

#[tokio::test]
async fn agent_run_streams_its_deltas_and_resolves_with_the_typed_final_answer() {
    let mut gw = FakeGateway::start().await;
    let (client, mut conn) = {
        let o = opts(&gw.url);
        connected(&mut gw, o)
    }
    .await;
    let session = client.session("compose:doc:abc:ann");
    let starting = tokio::spawn({
        let session = session.clone();
        async move { session.agent(AgentRequest::new("hi").idempotency_key("run-1")).await }
    });
    let req = conn.recv().await.unwrap();
    assert_eq!(req["method"], "agent");
    assert_eq!(
        req["params"],
        json!({"message":"hi","idempotencyKey":"run-1","sessionKey":"compose:doc:abc:ann"}),
        "typed params, nulls left out"
    );
    let key = "agent:main:compose:doc:abc:ann";
    conn.answer(&req, json!({"runId":"run-1","sessionKey":key,"agentId":"main","status":"accepted","acceptedAt":1}))
        .await;
    let agent_event = |seq: u64, stream: &str, data: Value| {
        json!({"type":"event","event":"agent","seq":seq,
               "payload":{"runId":"run-1","seq":seq,"stream":stream,"data":data,"sessionKey":key}})
    };
    conn.send(agent_event(1, "lifecycle", json!({"phase":"start"}))).await;
    conn.send(agent_event(2, "assistant", json!({"text":"Hel","delta":"Hel"}))).await;
    // Another run of the same session is not this run's text.
    conn.send(json!({"type":"event","event":"agent","seq":3,
                     "payload":{"runId":"other","seq":1,"stream":"assistant","data":{"delta":"NO"},"sessionKey":key}}))
        .await;
    conn.send(agent_event(4, "assistant", json!({"text":"Hello","delta":"lo"}))).await;
    conn.send(agent_event(5, "lifecycle", json!({"phase":"end"}))).await;
    conn.send(json!({"type":"res","id":req["id"],"ok":true,"payload":{
        "runId":"run-1","status":"ok","summary":"completed","result":{
            "payloads":[{"text":"Hello","mediaUrl":null}],
            "meta":{"durationMs":3,"agentMeta":{"sessionId":"s-1","provider":"fake","model":"m","usage":null}}}}}))
        .await;

    let mut run = timeout(WAIT, starting).await.unwrap().unwrap().unwrap();
    assert_eq!(run.run_id(), "run-1");
    assert_eq!(run.accepted().session_key, key);
    let deltas: Vec<String> =
        timeout(WAIT, run.deltas().map(|d| d.unwrap()).collect::<Vec<_>>()).await.expect("deltas end with the run");
    assert_eq!(deltas, ["Hel", "lo"]);
    let result = timeout(WAIT, run.wait()).await.unwrap().unwrap();
    let AgentResult::Ok { result, .. } = result else { panic!("{result:?}") };
    assert_eq!(result.payloads[0].text, "Hello");
}

#[tokio::test]
async fn agent_run_cut_by_a_lost_connection_fails_with_a_typed_error_instead_of_hanging() {
    let mut gw = FakeGateway::start().await;
    let (client, mut conn) = {
        let o = opts(&gw.url);
        connected(&mut gw, o)
    }
    .await;
    let session = client.session("compose:doc:abc:ann");
    let starting = tokio::spawn({
        let session = session.clone();
        async move { session.agent(AgentRequest::new("hi").idempotency_key("run-2")).await }
    });
    let req = conn.recv().await.unwrap();
    conn.answer(
        &req,
        json!({"runId":"run-2","sessionKey":"agent:main:compose:doc:abc:ann","agentId":"main",
                             "status":"accepted","acceptedAt":1}),
    )
    .await;
    let mut run = timeout(WAIT, starting).await.unwrap().unwrap().unwrap();
    conn.close(1012, "service restart").await;
    let deltas: Vec<_> = timeout(WAIT, run.deltas().collect::<Vec<_>>()).await.expect("deltas end");
    assert!(matches!(deltas.as_slice(), [Err(ClientError::ConnectionLost { .. })]), "{deltas:?}");
    let err = timeout(WAIT, run.wait()).await.expect("wait resolves").unwrap_err();
    assert!(matches!(&err, ClientError::ConnectionLost { method, .. } if method == "agent"), "{err:?}");
}

#[tokio::test]
async fn a_slow_session_consumer_gets_lagged_not_unbounded_memory() {
    let mut gw = FakeGateway::start().await;
    let (client, mut conn) = {
        let o = opts(&gw.url).session_capacity(4);
        connected(&mut gw, o)
    }
    .await;
    let mut slow = client.session("agent:main:k").events();
    let mut all = client.subscribe_events();
    for seq in 1..=20u64 {
        conn.send(json!({"type":"event","event":"chat","seq":seq,
                         "payload":{"runId":"r","sessionKey":"agent:main:k","state":"delta","deltaText":seq.to_string()}}))
            .await;
    }
    // Everything arrived at the client before the slow consumer reads a thing.
    for _ in 1..=20 {
        timeout(WAIT, all.recv()).await.unwrap().unwrap();
    }
    let mut seen = Vec::new();
    while let Ok(Some(ev)) = timeout(Duration::from_millis(200), slow.recv()).await {
        seen.push(ev);
    }
    assert_eq!(seen.len(), 4, "the stream holds at most its capacity: {seen:?}");
    conn.send(json!({"type":"event","event":"chat","seq":21,
                     "payload":{"runId":"r","sessionKey":"agent:main:k","state":"delta","deltaText":"21"}}))
        .await;
    assert!(matches!(timeout(WAIT, slow.recv()).await.unwrap(), Some(SessionEvent::Lagged(16))));
    let next = timeout(WAIT, slow.recv()).await.unwrap().unwrap();
    assert!(matches!(&next, SessionEvent::Chat(c) if c.delta_text() == Some("21")), "{next:?}");
}

#[tokio::test]
async fn a_silent_gateway_is_left_after_two_tick_intervals_and_the_client_reconnects() {
    let mut gw = FakeGateway::start().await;
    let connecting = tokio::spawn(Client::connect(opts(&gw.url)));
    let mut conn = gw.accept().await;
    conn.send(json!({"type":"event","event":"connect.challenge","payload":{"nonce":"n-1","ts":1}})).await;
    let connect = conn.recv().await.unwrap();
    let mut hello = hello_ok("conn-1");
    hello["policy"]["tickIntervalMs"] = json!(50);
    conn.send(json!({"type":"res","id":connect["id"],"ok":true,"payload":hello})).await;
    let client = timeout(WAIT, connecting).await.unwrap().unwrap().unwrap();
    // No tick, no frame: the client gives up on this socket (4000) and dials again.
    let mut conn2 = gw.accept().await;
    conn2.handshake("conn-2").await;
    wait_state(&client, ConnectionState::Connected).await;
    assert_eq!(client.hello().server.conn_id, "conn-2");
    let close = timeout(WAIT, conn.ws.next()).await.unwrap();
    assert!(
        matches!(&close, Some(Ok(Message::Close(Some(f)))) if u16::from(f.code) == 4000 && f.reason == "tick timeout"),
        "{close:?}"
    );
}

#[tokio::test]
async fn a_pool_pins_each_session_to_one_connection() {
    let mut gw = FakeGateway::start().await;
    let opening = tokio::spawn(ClientPool::new(opts(&gw.url), 2));
    let mut a = gw.accept().await;
    a.handshake("conn-a").await;
    let mut b = gw.accept().await;
    b.handshake("conn-b").await;
    let pool = timeout(WAIT, opening).await.unwrap().unwrap().unwrap();
    assert_eq!(pool.clients().len(), 2);
    assert_eq!(pool.connected(), 2);

    pinned_requests_take_their_connection(&pool, "conn-a", &mut a, &mut b).await;
    pinned_requests_take_their_connection(&pool, "conn-b", &mut b, &mut a).await;
}

/// A key pinned to `conn_id` sends every request over `own`, none over `other`.
async fn pinned_requests_take_their_connection(
    pool: &ClientPool,
    conn_id: &str,
    own: &mut ServerConn,
    other: &mut ServerConn,
) {
    let key = (0..100)
        .map(|i| format!("compose:doc:{i}:u"))
        .find(|k| pool.client_for(k).hello().server.conn_id == conn_id)
        .expect("some key lands on each connection");
    for _ in 0..3 {
        let session = pool.session(key.clone());
        assert_eq!(session.client().hello().server.conn_id, conn_id);
        let sending = tokio::spawn(async move { session.chat_send("hi").await });
        let req = own.recv().await.unwrap();
        assert_eq!(
            (req["method"].as_str(), req["params"]["sessionKey"].as_str()),
            (Some("chat.send"), Some(key.as_str()))
        );
        own.answer(&req, json!({"runId": req["params"]["idempotencyKey"], "status": "started"})).await;
        timeout(WAIT, sending).await.unwrap().unwrap().unwrap();
    }
    assert!(timeout(Duration::from_millis(100), other.ws.next()).await.is_err(), "nothing on the other connection");
}
