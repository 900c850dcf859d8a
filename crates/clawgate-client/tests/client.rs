//! The client against a scripted fake gateway on 127.0.0.1:0, over real sockets.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, VerifyingKey};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use clawgate_client::{
    Client, ClientError, ClientOptions, DeviceIdentity, ReconnectPolicy, SignatureVersion, SignedAtSource,
};

const NONCE: &str = "de925419-5522-41fa-8253-89f2cababb27";
const CHALLENGE_TS: i64 = 1_795_311_164_524;

/// One accepted connection, driven by the test script.
struct ServerConn {
    ws: WebSocketStream<TcpStream>,
}

impl ServerConn {
    async fn send(&mut self, value: Value) {
        self.ws.send(Message::Text(value.to_string().into())).await.unwrap();
    }

    /// Next JSON text frame; `None` once the client closed.
    async fn recv(&mut self) -> Option<Value> {
        loop {
            match self.ws.next().await? {
                Ok(Message::Text(t)) => return Some(serde_json::from_str(t.as_str()).unwrap()),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// The close frame the client sends (skipping other frames).
    async fn recv_close(&mut self) -> Option<CloseFrame> {
        loop {
            match self.ws.next().await? {
                Ok(Message::Close(frame)) => return frame,
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    async fn challenge(&mut self) {
        self.send(json!({"type":"event","event":"connect.challenge","payload":{"nonce":NONCE,"ts":CHALLENGE_TS,"capabilities":[]}}))
            .await;
    }

    /// Challenge, read `connect`, answer hello-ok; returns the connect frame.
    async fn handshake(&mut self) -> Value {
        self.handshake_with(hello_ok()).await
    }

    async fn handshake_with(&mut self, hello: Value) -> Value {
        self.challenge().await;
        let connect = self.recv().await.expect("connect frame");
        let id = connect["id"].clone();
        self.send(json!({"type":"res","id":id,"ok":true,"payload":hello})).await;
        connect
    }

    async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame { code: CloseCode::from(code), reason: reason.to_owned().into() };
        let _ = self.ws.send(Message::Close(Some(frame))).await;
        // Let the close handshake finish.
        while let Some(Ok(_)) = self.ws.next().await {}
    }
}

fn hello_ok() -> Value {
    json!({
        "type":"hello-ok","protocol":4,
        "server":{"version":"0.1.0-test","bootId":"boot-1","controlUiBuildSource":"bundled","connId":"conn-1"},
        "features":{"methods":["health","agent"],"events":["tick"],"capabilities":[]},
        "snapshot":{"presence":[],"health":{},"stateVersion":{"presence":1,"health":1},"uptimeMs":5,"suspension":{"phase":"accepting"}},
        "auth":{"method":"token","role":"operator","scopes":["operator.read","operator.write"],"deviceToken":"dt-1","issuedAtMs":1},
        "policy":{"maxPayload":26214400,"maxBufferedBytes":52428800,"tickIntervalMs":30000,"attachments":{"maxBytes":20971520,"maxImageBytes":6291456}}
    })
}

/// Start a fake gateway that accepts one connection and runs `script` on it.
async fn fake_gateway<F, Fut>(script: F) -> (String, JoinHandle<()>)
where
    F: FnOnce(ServerConn) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let handle = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        script(ServerConn { ws }).await;
    });
    (url, handle)
}

/// One-shot options: these tests pin what a single connection does (reconnecting is tested in
/// `reconnect.rs`).
fn opts(url: &str) -> ClientOptions {
    ClientOptions::new(url).token("tok").scopes(["operator.read", "operator.write"]).reconnect(ReconnectPolicy::never())
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// What the gateway does with `connect.params`: rebuild the payload from the frame alone and
/// verify the signature, with an implementation independent of the client's.
fn verify_device_proof(params: &Value, version: &str) {
    let device = &params["device"];
    let raw = URL_SAFE_NO_PAD.decode(device["publicKey"].as_str().unwrap()).unwrap();
    let key = VerifyingKey::from_bytes(&raw.clone().try_into().unwrap()).unwrap();
    assert_eq!(device["id"], hex::encode(Sha256::digest(&raw)), "device id is sha256 of the raw key");
    let client = &params["client"];
    let scopes: Vec<&str> = params["scopes"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    let auth = &params["auth"];
    let token =
        auth["token"].as_str().or(auth["deviceToken"].as_str()).or(auth["bootstrapToken"].as_str()).unwrap_or("");
    let norm = |v: &Value| v.as_str().map(|s| s.trim().to_ascii_lowercase()).unwrap_or_default();
    let mut payload = format!(
        "{version}|{}|{}|{}|{}|{}|{}|{}|{}",
        device["id"].as_str().unwrap(),
        client["id"].as_str().unwrap(),
        client["mode"].as_str().unwrap(),
        params["role"].as_str().unwrap_or("operator"),
        scopes.join(","),
        device["signedAt"].as_i64().unwrap(),
        token,
        device["nonce"].as_str().unwrap(),
    );
    if version == "v3" {
        payload.push_str(&format!("|{}|{}", norm(&client["platform"]), norm(&client["deviceFamily"])));
    }
    let sig = URL_SAFE_NO_PAD.decode(device["signature"].as_str().unwrap()).unwrap();
    key.verify_strict(payload.as_bytes(), &Signature::from_slice(&sig).unwrap())
        .unwrap_or_else(|e| panic!("signature over {payload:?} does not verify: {e}"));
}

#[tokio::test]
async fn v3_device_proof_signs_the_challenge_and_verifies_on_the_server() {
    let identity = DeviceIdentity::generate();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (url, server) = fake_gateway(|mut conn| async move {
        let connect = conn.handshake().await;
        tx.send(connect).unwrap();
        conn.recv().await;
    })
    .await;
    let client =
        Client::connect(opts(&url).platform(" Linux ").device_family("iPhone").device(identity.clone())).await.unwrap();
    let connect = rx.await.unwrap();

    assert_eq!(connect["type"], "req");
    assert_eq!(connect["method"], "connect");
    assert!(connect["id"].as_str().unwrap().starts_with("1:"));
    let params = &connect["params"];
    assert_eq!(params["minProtocol"], 4);
    assert_eq!(params["maxProtocol"], 4);
    assert_eq!(params["client"]["id"], "gateway-client");
    assert_eq!(params["client"]["mode"], "backend");
    assert_eq!(params["role"], "operator");
    assert_eq!(params["scopes"], json!(["operator.read", "operator.write"]));
    assert_eq!(params["auth"], json!({"token":"tok"}));
    assert_eq!(params["device"]["id"], identity.device_id());
    assert_eq!(params["device"]["nonce"], NONCE);
    assert_eq!(params["device"]["signedAt"], CHALLENGE_TS, "signedAt defaults to the challenge ts");
    verify_device_proof(params, "v3");
    // The connect params are what clawgate's own validator accepts.
    clawgate_protocol::connect::parse_connect_params(params).unwrap();

    assert_eq!(client.hello().server.conn_id, "conn-1");
    assert_eq!(client.hello().auth.device_token.as_deref(), Some("dt-1"));
    client.close().await;
    server.await.unwrap();
}

#[tokio::test]
async fn v2_device_proof_with_local_clock_and_device_token_verifies_on_the_server() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (url, server) = fake_gateway(|mut conn| async move {
        tx.send(conn.handshake().await).unwrap();
        conn.recv().await;
    })
    .await;
    let before = now_ms();
    let options = ClientOptions::new(&url)
        .client_id("cli")
        .mode("cli")
        .scopes(["operator.read"])
        .device_token("dt-1")
        .device(DeviceIdentity::generate())
        .signature_version(SignatureVersion::V2)
        .signed_at(SignedAtSource::LocalClock);
    let client = Client::connect(options).await.unwrap();
    let params = rx.await.unwrap()["params"].clone();
    let signed_at = params["device"]["signedAt"].as_i64().unwrap();
    assert!((before..=now_ms()).contains(&signed_at), "signedAt {signed_at} comes from the local clock");
    assert_eq!(params["auth"], json!({"deviceToken":"dt-1"}));
    verify_device_proof(&params, "v2");
    drop(client);
    server.await.unwrap();
}

#[tokio::test]
async fn refused_connect_keeps_the_error_shape_and_close_code() {
    let (url, server) = fake_gateway(|mut conn| async move {
        conn.challenge().await;
        let connect = conn.recv().await.unwrap();
        conn.send(json!({"type":"res","id":connect["id"],"ok":false,"error":{
            "code":"NOT_PAIRED","message":"pairing required: device is not approved yet",
            "details":{"code":"PAIRING_REQUIRED","reason":"not-paired","requestId":"req-42","deviceId":"abc"}}}))
            .await;
        conn.close(1008, "pairing required: device is not approved yet (requestId: req-42)").await;
    })
    .await;
    let err = Client::connect(opts(&url).device(DeviceIdentity::generate())).await.unwrap_err();
    let ClientError::Handshake { error, close_code, close_reason } = &err else {
        panic!("expected Handshake, got {err:?}")
    };
    assert_eq!(error.code, "NOT_PAIRED");
    assert_eq!(err.detail_code(), Some("PAIRING_REQUIRED"));
    assert_eq!(error.details.as_ref().unwrap()["requestId"], "req-42");
    assert_eq!(*close_code, Some(1008));
    assert_eq!(close_reason.as_deref(), Some("pairing required: device is not approved yet (requestId: req-42)"));
    server.await.unwrap();
}

#[tokio::test]
async fn missing_challenge_times_out() {
    let (url, server) = fake_gateway(|mut conn| async move {
        conn.recv_close().await;
    })
    .await;
    let err = Client::connect(opts(&url).connect_timeout(Duration::from_millis(200))).await.unwrap_err();
    assert!(matches!(&err, ClientError::Timeout { waiting_for, .. } if waiting_for == "connect.challenge"), "{err:?}");
    server.await.unwrap();
}

#[tokio::test]
async fn challenge_without_nonce_is_a_protocol_error() {
    let (url, server) = fake_gateway(|mut conn| async move {
        conn.send(json!({"type":"event","event":"connect.challenge","payload":{"ts":1}})).await;
        let close = conn.recv_close().await.unwrap();
        assert_eq!(u16::from(close.code), 1008);
    })
    .await;
    let err = Client::connect(opts(&url)).await.unwrap_err();
    assert!(matches!(&err, ClientError::Protocol(m) if m.contains("nonce")), "{err:?}");
    server.await.unwrap();
}

#[tokio::test]
async fn refused_tcp_connection_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = Client::connect(opts(&format!("ws://{addr}"))).await.unwrap_err();
    let ClientError::Connect(io) = &err else { panic!("expected Connect, got {err:?}") };
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn non_websocket_url_is_rejected_before_connecting() {
    let err = Client::connect(ClientOptions::new("http://127.0.0.1:1")).await.unwrap_err();
    assert!(matches!(err, ClientError::InvalidUrl(_)), "{err:?}");
}

#[tokio::test]
async fn request_returns_payload_and_error_res_keeps_the_gateway_error_shape() {
    let (url, server) = fake_gateway(|mut conn| async move {
        conn.handshake().await;
        let req = conn.recv().await.unwrap();
        assert_eq!(req, json!({"type":"req","id":req["id"],"method":"health","params":{"probe":true}}));
        conn.send(json!({"type":"res","id":req["id"],"ok":true,"payload":{"ok":true}})).await;
        let req = conn.recv().await.unwrap();
        conn.send(json!({"type":"res","id":req["id"],"ok":false,"error":{"code":"FORBIDDEN","message":"missing scope: operator.admin","details":{"code":"MISSING_SCOPE","missingScope":"operator.admin"}}}))
            .await;
        conn.recv().await;
    })
    .await;
    let client = Client::connect(opts(&url)).await.unwrap();
    assert_eq!(client.request("health", json!({"probe":true})).await.unwrap(), json!({"ok":true}));
    let err = client.request("config.set", json!({})).await.unwrap_err();
    let ClientError::Rpc(shape) = &err else { panic!("expected Rpc, got {err:?}") };
    assert_eq!(shape.code, "FORBIDDEN");
    assert_eq!(err.detail_code(), Some("MISSING_SCOPE"));
    drop(client);
    server.await.unwrap();
}

#[tokio::test]
async fn concurrent_requests_are_matched_by_id_when_answered_out_of_order() {
    // `health` is sent once the fake has read `status`, so the order on the wire is known
    // without waiting for a fixed time.
    let status_read = std::sync::Arc::new(tokio::sync::Notify::new());
    let read = status_read.clone();
    let (url, server) = fake_gateway(move |mut conn| async move {
        let connect = conn.handshake().await;
        let a = conn.recv().await.unwrap();
        read.notify_one();
        let b = conn.recv().await.unwrap();
        let ids: Vec<&str> = [&connect, &a, &b].iter().map(|f| f["id"].as_str().unwrap()).collect();
        for (n, id) in ids.iter().enumerate() {
            let (counter, uuid) = id.split_once(':').unwrap();
            assert_eq!(counter, (n + 1).to_string(), "ids count up per connection: {id}");
            assert!(uuid::Uuid::parse_str(uuid).is_ok(), "{id}");
        }
        for req in [&b, &a] {
            conn.send(json!({"type":"res","id":req["id"],"ok":true,"payload":{"method":req["method"]}})).await;
        }
        conn.recv().await;
    })
    .await;
    let client = Client::connect(opts(&url)).await.unwrap();
    let (a, b) = tokio::join!(client.request("status", json!({})), async {
        status_read.notified().await;
        client.request("health", json!({})).await
    });
    assert_eq!(a.unwrap(), json!({"method":"status"}));
    assert_eq!(b.unwrap(), json!({"method":"health"}));
    drop(client);
    server.await.unwrap();
}

#[tokio::test]
async fn two_responses_with_one_id_stream_until_the_final_one() {
    let (url, server) = fake_gateway(|mut conn| async move {
        conn.handshake().await;
        for _ in 0..2 {
            let req = conn.recv().await.unwrap();
            let id = req["id"].clone();
            conn.send(
                json!({"type":"res","id":id,"ok":true,"payload":{"runId":"r1","status":"accepted","acceptedAt":1}}),
            )
            .await;
            conn.send(
                json!({"type":"res","id":id,"ok":true,"payload":{"runId":"r1","status":"ok","summary":"completed"}}),
            )
            .await;
        }
        conn.recv().await;
    })
    .await;
    let client = Client::connect(opts(&url)).await.unwrap();

    let stream = client.request_stream("agent", json!({"message":"hi","idempotencyKey":"r1"})).await.unwrap();
    let frames: Vec<_> = stream.map(Result::unwrap).collect().await;
    let statuses: Vec<&str> = frames.iter().map(|f| f.payload.as_ref().unwrap()["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["accepted", "ok"]);
    assert_eq!(frames[0].id, frames[1].id);

    let final_payload = client.request_final("agent", json!({"message":"again","idempotencyKey":"r1"})).await.unwrap();
    assert_eq!(final_payload["summary"], "completed");
    drop(client);
    server.await.unwrap();
}

#[tokio::test]
async fn events_are_broadcast_filtered_by_session_and_seq_gaps_counted() {
    let (url, server) = fake_gateway(|mut conn| async move {
        conn.handshake().await;
        // Wait until the client has subscribed.
        let ready = conn.recv().await.unwrap();
        conn.send(json!({"type":"res","id":ready["id"],"ok":true,"payload":{}})).await;
        for (seq, key) in [(1, "compose:doc:1:u1"), (2, "compose:doc:2:u1"), (5, "compose:doc:1:u1"), (6, "other")] {
            conn.send(json!({"type":"event","event":"chat","payload":{"sessionKey":key,"seq":seq},"seq":seq})).await;
        }
        conn.send(json!({"type":"event","event":"tick","payload":{"ts":1},"seq":7})).await;
        conn.recv().await;
    })
    .await;
    let client = Client::connect(opts(&url)).await.unwrap();
    let mut all = client.subscribe_events();
    let session = client.events_for_session("compose:doc:1:u1");
    client.request("health", json!({})).await.unwrap();

    let seqs: Vec<u64> = session.take(2).map(|e| e.seq.unwrap()).collect().await;
    assert_eq!(seqs, [1, 5]);
    let mut names = Vec::new();
    for _ in 0..5 {
        names.push(all.recv().await.unwrap().event);
    }
    assert_eq!(names, ["chat", "chat", "chat", "chat", "tick"]);
    assert_eq!(client.gaps(), 1);
    assert_eq!(client.missed_events(), 2);
    assert_eq!(client.last_seq(), 7);
    drop(client);
    server.await.unwrap();
}

#[tokio::test]
async fn shutdown_event_fails_the_waiting_request_and_close_1012_closes_the_one_shot_client() {
    let (url, server) = fake_gateway(|mut conn| async move {
        conn.handshake().await;
        let _unanswered = conn.recv().await.unwrap();
        conn.send(json!({"type":"event","event":"shutdown","payload":{"reason":"service restart","restartExpectedMs":500},"seq":1}))
            .await;
        conn.close(1012, "service restart").await;
    })
    .await;
    let client = Client::connect(opts(&url)).await.unwrap();
    let mut events = client.subscribe_events();
    let err = client.request("status", json!({})).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::ConnectionLost { method, code: Some(1012), .. } if method == "status"),
        "{err:?}"
    );
    assert_eq!(events.recv().await.unwrap().event, "shutdown");

    let info = client.closed().await;
    assert_eq!(info.code, Some(1012));
    assert_eq!(info.reason, "service restart");
    assert!(matches!(events.recv().await, Err(tokio::sync::broadcast::error::RecvError::Closed)));
    let err = client.request("health", json!({})).await.unwrap_err();
    assert!(matches!(err, ClientError::Closed { code: Some(1012), .. }), "{err:?}");
    server.await.unwrap();
}

#[tokio::test]
async fn unanswered_request_times_out_and_later_requests_still_work() {
    let (url, server) = fake_gateway(|mut conn| async move {
        conn.handshake().await;
        let _ignored = conn.recv().await.unwrap();
        let req = conn.recv().await.unwrap();
        conn.send(json!({"type":"res","id":req["id"],"ok":true,"payload":1})).await;
        conn.recv().await;
    })
    .await;
    let client = Client::connect(opts(&url).request_timeout(Duration::from_millis(100))).await.unwrap();
    let err = client.request("status", json!({})).await.unwrap_err();
    assert!(matches!(&err, ClientError::Timeout { waiting_for, .. } if waiting_for == "response to status"), "{err:?}");
    assert_eq!(client.request("health", json!({})).await.unwrap(), json!(1));
    drop(client);
    server.await.unwrap();
}

#[tokio::test]
async fn close_sends_a_normal_close_frame() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (url, server) = fake_gateway(|mut conn| async move {
        conn.handshake().await;
        tx.send(conn.recv_close().await.map(|f| u16::from(f.code))).unwrap();
    })
    .await;
    let client = Client::connect(opts(&url)).await.unwrap();
    client.close().await;
    assert_eq!(rx.await.unwrap(), Some(1000));
    assert!(matches!(client.request("health", json!({})).await, Err(ClientError::Closed { .. })));
    server.await.unwrap();
}

#[tokio::test]
async fn silent_gateway_is_closed_with_4000_after_two_tick_intervals() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (url, server) = fake_gateway(|mut conn| async move {
        let mut hello = hello_ok();
        hello["policy"]["tickIntervalMs"] = json!(50);
        conn.handshake_with(hello).await;
        let close = conn.recv_close().await.unwrap();
        tx.send((u16::from(close.code), close.reason.to_string())).unwrap();
    })
    .await;
    let client = Client::connect(opts(&url)).await.unwrap();
    let info = tokio::time::timeout(Duration::from_secs(5), client.closed()).await.unwrap();
    assert_eq!(info.code, Some(4000));
    assert_eq!(rx.await.unwrap(), (4000, "tick timeout".to_owned()));
    server.await.unwrap();
}

#[tokio::test]
async fn malformed_response_fails_its_request_instead_of_timing_out() {
    let (url, server) = fake_gateway(|mut conn| async move {
        conn.handshake().await;
        let req = conn.recv().await.unwrap();
        conn.send(json!({"type":"res","id":req["id"],"ok":"yes"})).await;
        conn.recv().await;
    })
    .await;
    let client = Client::connect(opts(&url).request_timeout(Duration::from_secs(30))).await.unwrap();
    let err =
        tokio::time::timeout(Duration::from_secs(5), client.request("health", json!({}))).await.unwrap().unwrap_err();
    assert!(matches!(&err, ClientError::Protocol(m) if m.starts_with("malformed res frame")), "{err:?}");
    drop(client);
    server.await.unwrap();
}
