//! A real nginx (Debian's package, `scripts/install-nginx.sh`) in front of the real binary
//! (issue 14, item 2), configured with the example in `docs/OPERATIONS.md` read from the doc
//! itself, so the doc is checked to work. Only the site-specific lines are replaced (the TLS
//! `listen 443 ssl` and certificate lines become a plain loopback `listen`, and `proxy_pass` names
//! the test gateway's port); the upgrade headers, `X-Forwarded-For` and `X-Forwarded-Proto` are the
//! doc's, byte for byte.
//!
//! nginx listens on 127.0.0.1 and clawgate trusts 127.0.0.1 as its proxy. A test client connects
//! to nginx from another loopback address (127.0.0.2), so nginx forwards a real client address
//! that is not the proxy's: what clawgate must record, lock out and refuse local trust to. Clients
//! with addresses of their own (198.51.100.x) sit behind an outer trusted hop on 127.0.0.1 (as
//! behind a load balancer in front of nginx), since all of loopback is one lockout bucket.
//!
//! Without nginx the tests are skipped with the reason printed, unless `CLAWGATE_REQUIRE_PEERS` is
//! set (as `scripts/test.sh` does), which turns the skip into a failure.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use clawgate_testkit::{RawClient, TestGateway, connect_params, wait_until};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const TOKEN: &str = "T-nginx-proxy";
const WAIT: Duration = Duration::from_secs(30);
const RATE_LIMITED: &str = "AUTH_RATE_LIMITED";
const CLIENT_A: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// This repository's root (this crate's, so a worktree reads its own doc and script).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The nginx binary, or `None` (after printing why) when the test is to be skipped.
fn nginx_binary() -> Option<PathBuf> {
    let script = workspace_root().join("scripts/install-nginx.sh");
    let out = std::process::Command::new("bash").arg(&script).arg("--check").output();
    let why = match out {
        Ok(out) if out.status.success() => {
            let path = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim().to_owned();
            return Some(PathBuf::from(path));
        }
        Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        Err(e) => format!("cannot run {}: {e}", script.display()),
    };
    if std::env::var("CLAWGATE_REQUIRE_PEERS").is_ok_and(|v| !v.is_empty() && v != "0") {
        panic!("the nginx reverse-proxy test needs nginx (scripts/install-nginx.sh): {why}");
    }
    eprintln!(
        "\n*** SKIPPED nginx reverse-proxy test: {why}\n\
         *** run scripts/install-nginx.sh (CLAWGATE_REQUIRE_PEERS=1 turns this skip into a failure)\n"
    );
    None
}

/// The nginx example of `docs/OPERATIONS.md` ("Behind nginx or Caddy"), as written.
fn documented_nginx_config() -> String {
    let doc = std::fs::read_to_string(workspace_root().join("docs/OPERATIONS.md")).unwrap();
    let section = &doc[doc.find("### Behind nginx or Caddy").expect("the proxy section of OPERATIONS.md")..];
    let start = section.find("```nginx\n").expect("an nginx example") + "```nginx\n".len();
    let end = start + section[start..].find("```").expect("the end of the nginx example");
    section[start..end].to_owned()
}

/// `text` with `from` replaced by `to`; `from` must occur exactly once (else the doc changed in a
/// way this test no longer understands, and it says so).
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "the documented nginx config has exactly one {from:?}:\n{text}");
    text.replacen(from, to, 1)
}

/// A running nginx; killed (one process: `master_process off`) when dropped.
struct Nginx {
    _child: tokio::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// nginx with the documented config on a free loopback port, proxying to `gateway_port`;
    /// returns once it accepts connections.
    async fn start(bin: &Path, gateway_port: u16) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut site = documented_nginx_config();
        site = replace_once(&site, "    listen 443 ssl;\n", &format!("    listen 127.0.0.1:{port};\n"));
        site = replace_once(
            &site,
            "    ssl_certificate     /etc/letsencrypt/live/gateway.example.com/fullchain.pem;\n",
            "",
        );
        site =
            replace_once(&site, "    ssl_certificate_key /etc/letsencrypt/live/gateway.example.com/privkey.pem;\n", "");
        site = replace_once(&site, "http://127.0.0.1:18789;", &format!("http://127.0.0.1:{gateway_port};"));
        let tmp = dir.path().display();
        // Everything nginx writes goes under the temp dir (Debian compiles in /var/lib/nginx).
        let conf = format!(
            "error_log {tmp}/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n\
             access_log {tmp}/access.log;\n\
             client_body_temp_path {tmp}/body;\n\
             proxy_temp_path {tmp}/proxy;\n\
             fastcgi_temp_path {tmp}/fastcgi;\n\
             uwsgi_temp_path {tmp}/uwsgi;\n\
             scgi_temp_path {tmp}/scgi;\n\
             {site}\n\
             }}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let mut child = tokio::process::Command::new(bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-g")
            .arg(format!("daemon off; master_process off; pid {tmp}/nginx.pid;"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start nginx");
        let error_log = dir.path().join("error.log");
        let log = || std::fs::read_to_string(&error_log).unwrap_or_default();
        tokio::select! {
            status = child.wait() => panic!("nginx exited ({status:?}): {}", log()),
            up = wait_until(WAIT, "nginx accepting connections", || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(|_| ())
            }) => up.unwrap_or_else(|e| panic!("{e:#}: {}", log())),
        }
        Nginx { _child: child, port, dir }
    }

    fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    /// The request lines nginx logged (for failure messages).
    fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }
}

/// clawgate trusting nginx on 127.0.0.1, with a small failed-auth budget, and nginx in front.
async fn start() -> Option<(TestGateway, Nginx)> {
    let bin = nginx_binary()?;
    let config = json!({"gateway": {
        "trustedProxies": ["127.0.0.1"],
        "auth": {"rateLimit": {"maxAttempts": 3, "windowMs": 60000, "lockoutMs": 60000}},
    }});
    let gw = TestGateway::builder(BIN).token(TOKEN).config(config.to_string()).start().await.expect("start clawgate");
    let nginx = Nginx::start(&bin, gw.port()).await;
    Some((gw, nginx))
}

/// A WebSocket through nginx from the loopback address `source`, with extra request headers;
/// the `connect` answer (`res` frame) for `token` with the connect-params `overrides`.
async fn connect_through(nginx: &Nginx, source: IpAddr, headers: &[(&str, &str)], token: &str) -> Value {
    let mut request = nginx.ws_url().into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((source, 0).into()).unwrap();
    let tcp = socket.connect(([127, 0, 0, 1], nginx.port).into()).await.expect("connect to nginx");
    let (mut ws, _) = tokio_tungstenite::client_async(request, tcp).await.expect("upgrade through nginx");
    let challenge = next_text(&mut ws).await;
    assert_eq!(challenge["event"], "connect.challenge", "{challenge}");
    let params = connect_params(Some(token), &json!({}));
    let frame = json!({"type": "req", "id": "c1", "method": "connect", "params": params});
    ws.send(Message::text(frame.to_string())).await.unwrap();
    loop {
        let frame = next_text(&mut ws).await;
        if frame["type"] == "res" && frame["id"] == "c1" {
            return frame;
        }
    }
}

/// The next text frame, as JSON.
async fn next_text(ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next()).await.expect("a frame in time").expect("open").expect("frame");
        if let Message::Text(text) = msg {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

fn detail_code(res: &Value) -> &str {
    res["error"]["details"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_websocket_through_nginx_works_and_is_recorded_with_the_forwarded_address() {
    let Some((gw, nginx)) = start().await else { return };
    // An operator straight over loopback watches presence.
    let mut watcher = RawClient::connect(&gw.ws_url()).await.unwrap();
    watcher.handshake(Some(TOKEN), &json!({})).await.expect("direct hello");

    let mut c = RawClient::connect_from(&nginx.ws_url(), CLIENT_A).await.expect("upgrade through nginx");
    let ui = json!({"client": {"id": "test", "mode": "test", "instanceId": "behind-nginx"}});
    let hello = c.handshake(Some(TOKEN), &ui).await.unwrap_or_else(|e| panic!("{e:#}\n{}", nginx.access_log()));
    assert_eq!(hello["type"], "hello-ok", "{hello}");
    let health = c.request("health", None).await.expect("health through nginx");
    assert_eq!(health["ok"], true, "{health}");

    let res = watcher.request("system-presence", None).await.expect("system-presence");
    let entries = res["payload"].as_array().unwrap_or_else(|| panic!("{res}"));
    let me = entries.iter().find(|e| e["instanceId"] == "behind-nginx").unwrap_or_else(|| panic!("{res}"));
    assert_eq!(me["ip"], CLIENT_A.to_string(), "the forwarded client address, not nginx's: {me}");
}

/// Three wrong tokens through nginx from `source` with `headers`; the fourth attempt (right
/// token) is locked out.
async fn lock_out(nginx: &Nginx, source: IpAddr, headers: &[(&str, &str)]) {
    for i in 0..3 {
        let res = connect_through(nginx, source, headers, &format!("wrong-{i}")).await;
        assert_eq!(res["ok"], false, "{res}");
        assert_ne!(detail_code(&res), RATE_LIMITED, "attempt {i} is not locked out yet: {res}");
    }
    let locked = connect_through(nginx, source, headers, TOKEN).await;
    assert_eq!(detail_code(&locked), RATE_LIMITED, "{source} {headers:?} is locked out: {locked}");
}

#[tokio::test]
async fn a_lockout_through_nginx_is_per_client_and_a_forged_header_does_not_escape_it() {
    let Some((_gw, nginx)) = start().await else { return };
    // Clients behind an outer hop that clawgate also trusts (a load balancer in front of nginx;
    // here the test itself on 127.0.0.1): nginx appends that hop to the client's address, and
    // each client has its own bucket.
    let outer = IpAddr::V4(Ipv4Addr::LOCALHOST);
    lock_out(&nginx, outer, &[("X-Forwarded-For", "198.51.100.1")]).await;
    let other = connect_through(&nginx, outer, &[("X-Forwarded-For", "198.51.100.2")], TOKEN).await;
    assert_eq!(other["ok"], true, "another client through the same nginx: {other}");

    // A client nginx sees directly (127.0.0.2, not a listed proxy; all of loopback is one
    // bucket) is locked out, and naming another address in its own X-Forwarded-For does not
    // help: nginx appends the real peer, which clawgate takes as the client.
    lock_out(&nginx, CLIENT_A, &[]).await;
    let forged = connect_through(&nginx, CLIENT_A, &[("X-Forwarded-For", "198.51.100.2")], TOKEN).await;
    assert_eq!(detail_code(&forged), RATE_LIMITED, "a forged X-Forwarded-For buys no new bucket: {forged}");
    let other = connect_through(&nginx, outer, &[("X-Forwarded-For", "198.51.100.2")], TOKEN).await;
    assert_eq!(other["ok"], true, "the address it named is not locked out by it: {other}");
}

#[tokio::test]
async fn a_client_through_nginx_on_loopback_is_not_local() {
    let Some((gw, nginx)) = start().await else { return };
    let admin = json!({"scopes": ["operator.admin"]});
    let mut direct = RawClient::connect(&gw.ws_url()).await.unwrap();
    let hello = direct.handshake(Some(TOKEN), &admin).await.unwrap();
    assert_eq!(hello["auth"]["scopes"], json!(["operator.admin"]), "the local CLI keeps its scopes: {hello}");
    // Through nginx, even from 127.0.0.1 (nginx's own address, which clawgate trusts as the proxy).
    for source in [IpAddr::V4(Ipv4Addr::LOCALHOST), CLIENT_A] {
        let mut proxied = RawClient::connect_from(&nginx.ws_url(), source).await.unwrap();
        let hello = proxied.handshake(Some(TOKEN), &admin).await.unwrap();
        assert_eq!(hello["auth"]["scopes"], json!([]), "{source} through nginx gets no local trust: {hello}");
    }
}
