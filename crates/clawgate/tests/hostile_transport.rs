//! Hostile tests of the transport: browser origins, sockets, frames and bodies (issue 10,
//! defects 4, 6, 7, 11, 12 and the close codes of 15), plus the attacks that already failed so
//! they keep failing. Everything runs against the real binary over loopback, with bounded load.
//! See docs/SECURITY.md, "Transport: origins, sockets, frames and bodies".

use std::time::Duration;

use clawgate_testkit::fake_openai::{FakeOpenAi, Script, Turn};
use clawgate_testkit::{RawClient, TestGateway, Upgrade, connect_params, merge_patch};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
/// Bound for every single wait (generous: CI machines are slow and shared).
const WAIT: Duration = Duration::from_secs(30);

// ---- setup ----

/// A fake model and a gateway in `auth.mode: none` with the HTTP API on, patched with `extra`.
async fn open_gateway(extra: Value) -> (FakeOpenAi, TestGateway) {
    let fake = FakeOpenAi::start(Script::always(Turn::hello())).await.expect("starting the fake model");
    let mut config = json!({
        "models": {"providers": {"fake": {
            "baseUrl": fake.base_url(), "apiKey": "fake-key", "api": "openai-completions",
            "models": [{"id": "fake-model", "name": "Fake Model"}],
        }}},
        "agents": {"defaults": {"model": {"primary": "fake/fake-model"}}},
        "gateway": {
            "auth": {"mode": "none"},
            "http": {"endpoints": {"chatCompletions": {"enabled": true}, "responses": {"enabled": true}}},
        },
    });
    merge_patch(&mut config, &extra);
    let text = config.to_string();
    let gw = TestGateway::builder(BIN)
        .no_token()
        .config(text.clone())
        .start()
        .await
        .unwrap_or_else(|e| panic!("starting clawgate with {text}: {e:#}"));
    (fake, gw)
}

/// An HTTP answer read to the end.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }
}

/// One HTTP/1.1 request with `Connection: close`, raw, so every header is exactly what a browser
/// would send. `headers` come after `Host`.
async fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        let _ = stream.write_all(req.as_bytes()).await;
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw).await;
        raw
    };
    let raw = tokio::time::timeout(WAIT, exchange).await.expect("an answer in time");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status: {text:?}"));
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.into() };
    Answer { status, head: head.to_owned(), body }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn chat_body(text: &str) -> String {
    json!({"model": "openclaw", "messages": [{"role": "user", "content": text}]}).to_string()
}

// ---- defect 4: DNS rebinding and cross-site requests ----

#[tokio::test]
async fn dns_rebound_upgrade_is_refused_in_auth_mode_none() {
    let (_fake, gw) = open_gateway(json!({})).await;
    // What a browser sends once evil.example resolves to 127.0.0.1: Origin and Host agree.
    let evil = format!("evil.example:{}", gw.port());
    let origin = format!("http://{evil}");
    let upgrade = RawClient::connect_with_headers(&gw.ws_url(), &[("Origin", &origin), ("Host", &evil)])
        .await
        .expect("upgrade attempt");
    let mut client = match upgrade {
        Upgrade::Accepted(c) => *c,
        Upgrade::Refused { status, body } => panic!("the origin is refused at connect, got HTTP {status}: {body}"),
    };
    let res = client.try_handshake(None, &json!({})).await.expect("a res to connect");
    assert_eq!(res["ok"], false, "a rebound page must not be admitted: {res}");
    assert_eq!(res["error"]["details"]["code"], "CONTROL_UI_ORIGIN_NOT_ALLOWED", "{res}");
    let (code, _) = client.expect_close(WAIT).await.expect("close");
    assert_eq!(code, 1008);
}

#[tokio::test]
async fn host_header_origin_fallback_is_an_explicit_opt_in() {
    let (_fake, gw) =
        open_gateway(json!({"gateway": {"controlUi": {"dangerouslyAllowHostHeaderOriginFallback": true}}})).await;
    let host = format!("gw.example:{}", gw.port());
    let origin = format!("http://{host}");
    let mut client = RawClient::connect_with_headers(&gw.ws_url(), &[("Origin", &origin), ("Host", &host)])
        .await
        .expect("upgrade attempt")
        .accepted()
        .expect("upgrade accepted");
    let res = client.try_handshake(None, &json!({})).await.expect("a res to connect");
    assert_eq!(res["ok"], true, "with the opt-in the Host-matching origin is admitted: {res}");
}

#[tokio::test]
async fn cross_site_text_plain_posts_are_refused_before_any_run_or_tool() {
    let (fake, gw) = open_gateway(json!({})).await;
    let port = gw.port();
    let chat = chat_body("run for the attacker");
    let tool = json!({"tool": "current_time"}).to_string();
    let cross_site: &[(&str, &str)] = &[("Origin", "http://evil.example"), ("Content-Type", "text/plain")];
    let no_origin_but_cross_site: &[(&str, &str)] = &[("Sec-Fetch-Site", "cross-site"), ("Content-Type", "text/plain")];
    for (path, body) in [("/v1/chat/completions", &chat), ("/v1/responses", &chat), ("/tools/invoke", &tool)] {
        for headers in [cross_site, no_origin_but_cross_site] {
            let answer = http(port, "POST", path, headers, body).await;
            assert_eq!(answer.status, 403, "{path} with {headers:?}: {answer:?}");
            let message = answer.json()["error"]["message"].as_str().unwrap_or_default().to_owned();
            assert!(message.contains("gateway.controlUi.allowedOrigins"), "the error says what to change: {message}");
        }
    }
    // The same request from a CLI (no Origin) still runs: the gate only stops browsers.
    let answer = http(port, "POST", "/tools/invoke", &[("Content-Type", "application/json")], &tool).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(fake.chat_requests().is_empty(), "no refused request may reach the model");
}

#[tokio::test]
async fn same_origin_loopback_browser_post_still_works() {
    let (fake, gw) = open_gateway(json!({})).await;
    let port = gw.port();
    let origin = gw.http_url();
    let answer = http(
        port,
        "POST",
        "/v1/chat/completions",
        &[
            ("Origin", origin.trim_end_matches('/')),
            ("Sec-Fetch-Site", "same-origin"),
            ("Content-Type", "application/json"),
        ],
        &chat_body("hello"),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.json()["choices"][0]["message"]["content"].is_string(), "{}", answer.head);
    assert_eq!(fake.chat_requests().len(), 1);
}

// ---- raw WebSocket over TCP (hand-written frames: no client library limits or reads) ----

/// A client frame: FIN set, masked with a zero key (legal, and the payload stays readable).
fn ws_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x80 | opcode];
    let n = payload.len();
    if n < 126 {
        frame.push(0x80 | n as u8);
    } else if n <= usize::from(u16::MAX) {
        frame.push(0x80 | 126);
        frame.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        frame.push(0x80 | 127);
        frame.extend_from_slice(&(n as u64).to_be_bytes());
    }
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(payload);
    frame
}

fn text_frame(text: &str) -> Vec<u8> {
    ws_frame(0x1, text.as_bytes())
}

/// Opens a TCP connection and completes the WebSocket upgrade by hand.
async fn raw_ws(port: u16) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let upgrade = format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(upgrade.as_bytes()).await.expect("write upgrade");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n =
            tokio::time::timeout(WAIT, stream.read(&mut byte)).await.expect("upgrade answer in time").expect("read");
        assert_eq!(n, 1, "the server closed during the upgrade: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    stream
}

/// A raw socket that has sent `connect` with the gateway's token (answers left unread).
async fn raw_connected(gw: &TestGateway) -> TcpStream {
    let mut stream = raw_ws(gw.port()).await;
    let connect =
        json!({"type": "req", "id": "c1", "method": "connect", "params": connect_params(gw.token(), &json!({}))});
    stream.write_all(&text_frame(&connect.to_string())).await.expect("send connect");
    stream
}

/// Reads server frames until a close frame; returns its code (`None` when the socket ended
/// without one).
async fn read_close_code(stream: &mut TcpStream) -> Option<u16> {
    let read = async {
        loop {
            let mut head = [0u8; 2];
            stream.read_exact(&mut head).await.ok()?;
            let mut len = u64::from(head[1] & 0x7f);
            if len == 126 {
                let mut ext = [0u8; 2];
                stream.read_exact(&mut ext).await.ok()?;
                len = u64::from(u16::from_be_bytes(ext));
            } else if len == 127 {
                let mut ext = [0u8; 8];
                stream.read_exact(&mut ext).await.ok()?;
                len = u64::from_be_bytes(ext);
            }
            let mut payload = vec![0u8; usize::try_from(len).ok()?];
            stream.read_exact(&mut payload).await.ok()?;
            if head[0] & 0x0f == 0x8 {
                return payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
            }
        }
    };
    tokio::time::timeout(WAIT, read).await.expect("a close or the end of the socket in time")
}

/// The gateway's peak and current resident memory, in bytes (`VmHWM`, `VmRSS`).
fn memory(gw: &TestGateway) -> (u64, u64) {
    let pid = gw.pid().expect("the gateway runs");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or_else(|| panic!("no {name} in {status}"))
    };
    (field("VmHWM:"), field("VmRSS:"))
}

const MB: u64 = 1024 * 1024;
/// The issue's bound for the gateway's memory through any attack.
const RSS_BOUND: u64 = 250 * MB;

// ---- defect 7: slow consumers ----

/// Sends `health` requests as fast as the socket takes them and never reads an answer; returns
/// once a write fails, i.e. once the gateway has closed the socket.
async fn flood_without_reading(mut stream: TcpStream) -> usize {
    let mut batch = Vec::new();
    for i in 0..500 {
        batch.extend(text_frame(&json!({"type": "req", "id": format!("h{i}"), "method": "health"}).to_string()));
    }
    let mut sent = 0;
    while stream.write_all(&batch).await.is_ok() {
        sent += 500;
    }
    sent
}

#[tokio::test]
async fn clients_that_flood_requests_and_never_read_are_closed_and_memory_stays_bounded() {
    let gw = TestGateway::start(BIN).await.expect("start");
    let mut floods = Vec::new();
    for _ in 0..3 {
        let stream = raw_connected(&gw).await;
        floods.push(tokio::spawn(flood_without_reading(stream)));
    }
    for flood in floods {
        let sent = tokio::time::timeout(Duration::from_secs(90), flood)
            .await
            .expect("the gateway closes a client that never reads")
            .expect("flood task");
        assert!(sent > 0, "the flood got going before the close");
    }
    let (peak, _) = memory(&gw);
    assert!(peak < RSS_BOUND, "peak RSS {} MB through three slow consumers", peak / MB);
    // The gateway still serves everyone else.
    let mut client = RawClient::connect(&gw.ws_url()).await.expect("connect");
    client.handshake(gw.token(), &json!({})).await.expect("handshake");
    assert_eq!(client.request("health", None).await.expect("health")["ok"], true);
}

// ---- defect 6: sockets that never finish a request ----

async fn gateway_with(config: Value) -> TestGateway {
    let text = config.to_string();
    TestGateway::builder(BIN)
        .config(text.clone())
        .start()
        .await
        .unwrap_or_else(|e| panic!("starting clawgate with {text}: {e:#}"))
}

/// Waits until the server ends the connection (EOF or reset), never sending anything itself.
async fn closed_by_server(mut stream: TcpStream) {
    let mut buf = [0u8; 1024];
    let ended = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(WAIT, ended).await.expect("the server closes the connection");
}

async fn healthz_ok(port: u16) {
    let answer = http(port, "GET", "/healthz", &[], "").await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

#[tokio::test]
async fn silent_half_sent_and_trickling_connections_are_closed_while_healthz_answers() {
    let gw = gateway_with(json!({"gateway": {"http": {"headerTimeoutMs": 1000}}})).await;
    let port = gw.port();
    let mut held = Vec::new();
    for _ in 0..50 {
        held.push(TcpStream::connect(("127.0.0.1", port)).await.expect("connect"));
        let mut half = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.expect("half a head");
        held.push(half);
    }
    // Slowloris: a head that keeps arriving, one byte at a time, never complete.
    let mut trickles = Vec::new();
    for _ in 0..5 {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        trickles.push(tokio::spawn(async move {
            let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\n").await;
            let mut interval = tokio::time::interval(Duration::from_millis(100));
            loop {
                interval.tick().await;
                if stream.write_all(b"X").await.is_err() {
                    return;
                }
                let mut probe = [0u8; 1];
                if let Ok(Ok(0) | Err(_)) =
                    tokio::time::timeout(Duration::from_millis(1), stream.read(&mut probe)).await
                {
                    return;
                }
            }
        }));
    }
    healthz_ok(port).await;
    for stream in held {
        closed_by_server(stream).await;
    }
    for trickle in trickles {
        tokio::time::timeout(WAIT, trickle).await.expect("a trickling head is cut off").expect("task");
    }
    healthz_ok(port).await;
}

#[tokio::test]
async fn strangers_cannot_take_the_connections_kept_for_the_local_cli() {
    let gw = gateway_with(json!({"gateway": {"http": {"maxConnections": 16, "headerTimeoutMs": 120000}}})).await;
    let port = gw.port();
    // Another local address stands in for any peer that is not the host's own 127.0.0.1.
    let stranger = || async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind("127.0.0.2:0".parse().expect("addr")).expect("bind 127.0.0.2");
        socket.connect(([127, 0, 0, 1], port).into()).await.expect("connect")
    };
    let mut held = Vec::new();
    for _ in 0..14 {
        held.push(stranger().await);
    }
    // Over the strangers' share: closed on accept.
    closed_by_server(stranger().await).await;
    // The local CLI still gets in, over HTTP and WebSocket.
    healthz_ok(port).await;
    let mut client = RawClient::connect(&gw.ws_url()).await.expect("the CLI connects");
    client.handshake(gw.token(), &json!({})).await.expect("handshake");
    assert_eq!(client.request("health", None).await.expect("health")["ok"], true);
    drop(held);
}

// ---- defect 12: pipelined requests keep their order ----

#[tokio::test]
async fn pipelined_chat_sends_on_one_socket_land_in_send_order() {
    let (fake, gw) = open_gateway(json!({})).await;
    let mut client = RawClient::connect(&gw.ws_url()).await.expect("connect");
    client.handshake(None, &json!({})).await.expect("handshake");
    let session = "main";
    let mut ids = Vec::new();
    for i in 0..10 {
        let id = client.next_id();
        let params =
            json!({"sessionKey": session, "message": format!("message {i}"), "idempotencyKey": format!("pipe-{i}")});
        client
            .send_json(&json!({"type": "req", "id": id, "method": "chat.send", "params": params}))
            .await
            .expect("send");
        ids.push(id);
    }
    for id in &ids {
        let res = client.recv_response(id, WAIT).await.expect("chat.send answered");
        assert_eq!(res["ok"], true, "{res}");
    }
    fake.wait_for_requests(10, WAIT).await.expect("ten runs reach the model");
    let users = async {
        loop {
            let res = client
                .request("chat.history", Some(json!({"sessionKey": session, "limit": 100})))
                .await
                .expect("chat.history");
            let messages = res["payload"]["messages"].as_array().cloned().unwrap_or_default();
            let users: Vec<String> = messages
                .iter()
                .filter(|m| m["role"] == "user")
                .map(|m| match &m["content"] {
                    Value::String(s) => s.clone(),
                    Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
                    _ => String::new(),
                })
                .collect();
            let assistants = messages.iter().filter(|m| m["role"] == "assistant").count();
            if users.len() == 10 && assistants == 10 {
                return users;
            }
            tokio::task::yield_now().await;
        }
    };
    let users = tokio::time::timeout(WAIT, users).await.expect("ten exchanges in the transcript");
    let expected: Vec<String> = (0..10).map(|i| format!("message {i}")).collect();
    assert_eq!(users, expected, "the transcript keeps the order the socket sent");
}

// ---- defect 15 (close codes) and malformed frames ----

/// The protocol's limit on a frame after `connect` (`clawgate-protocol::MAX_PAYLOAD_BYTES`).
const MAX_PAYLOAD: u64 = 26_214_400;

#[tokio::test]
async fn a_frame_over_the_payload_limit_closes_1009_without_being_buffered() {
    let gw = TestGateway::start(BIN).await.expect("start");
    let mut stream = raw_connected(&gw).await;
    // Only the header and a few bytes: the frame must be refused from its declared length.
    let mut frame = vec![0x81, 0x80 | 127];
    frame.extend_from_slice(&(MAX_PAYLOAD + 1).to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(b"{\"pad\":\"");
    stream.write_all(&frame).await.expect("send the header");
    assert_eq!(read_close_code(&mut stream).await, Some(1009));
}

#[tokio::test]
async fn a_text_frame_that_is_not_utf8_closes_1007() {
    let gw = TestGateway::start(BIN).await.expect("start");
    let mut stream = raw_connected(&gw).await;
    stream.write_all(&ws_frame(0x1, &[b'"', 0xff, 0xfe, b'"'])).await.expect("send");
    assert_eq!(read_close_code(&mut stream).await, Some(1007));
}

#[tokio::test]
async fn an_oversized_frame_before_connect_closes_1009() {
    let gw = TestGateway::start(BIN).await.expect("start");
    let mut stream = raw_ws(gw.port()).await;
    let text = format!("{{\"pad\":\"{}\"}}", "x".repeat(70 * 1024));
    stream.write_all(&text_frame(&text)).await.expect("send");
    assert_eq!(read_close_code(&mut stream).await, Some(1009));
}

#[tokio::test]
async fn a_connection_that_never_sends_connect_is_closed_at_the_handshake_timeout() {
    let gw = gateway_with(json!({"gateway": {"handshakeTimeoutMs": 500}})).await;
    let mut stream = raw_ws(gw.port()).await;
    assert_eq!(read_close_code(&mut stream).await, Some(1000));
}

#[tokio::test]
async fn malformed_frames_get_the_documented_answers_and_the_socket_stays_usable() {
    let gw = TestGateway::start(BIN).await.expect("start");
    let mut client = RawClient::connect(&gw.ws_url()).await.expect("connect");
    client.handshake(gw.token(), &json!({})).await.expect("handshake");
    client.set_validation(false);
    // Not JSON: ignored, as upstream does after connect.
    client.send_text("this is not json").await.expect("send");
    client.send_text("{\"type\":\"req\",").await.expect("send");
    // Wrong types: answered with INVALID_REQUEST.
    client.send_text(r#"{"type":"req","id":"w1","method":42}"#).await.expect("send");
    let res = client.recv_response("w1", WAIT).await.expect("an answer");
    assert_eq!((res["ok"].as_bool(), res["error"]["code"].as_str()), (Some(false), Some("INVALID_REQUEST")), "{res}");
    client
        .send_text(r#"{"type":"req","id":"w2","method":"chat.send","params":{"sessionKey":"main","message":7}}"#)
        .await
        .expect("send");
    let res = client.recv_response("w2", WAIT).await.expect("an answer");
    assert_eq!((res["ok"].as_bool(), res["error"]["code"].as_str()), (Some(false), Some("INVALID_REQUEST")), "{res}");
    // A huge id is echoed or refused, never a crash.
    let id = "i".repeat(1024 * 1024);
    client.send_json(&json!({"type": "req", "id": id, "method": "health"})).await.expect("send");
    let res = client.recv_response(&id, WAIT).await.expect("an answer");
    assert!(res["ok"].is_boolean(), "answered");
    let res = client.request("health", None).await.expect("health");
    assert_eq!(res["ok"], true, "the socket is still usable: {res}");
}
