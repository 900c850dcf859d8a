//! `gateway.tls` over the real binary (issue 14, item 1): a CA and server certificates are made
//! with the `openssl` CLI in each test; clients connect over `wss://` trusting that CA.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use clawgate_testkit::{OpenClawPeers, RawClient, TestGateway, connect_params, wait_until};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const TOKEN: &str = "T-tls";
const WAIT: Duration = Duration::from_secs(30);

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA named `name` and a server certificate it signed for `localhost` / 127.0.0.1:
/// `<name>-ca.pem`, `<name>.pem`, `<name>.key` in `dir`.
fn make_pair(dir: &Path, name: &str) {
    let ca_key = format!("{name}-ca.key");
    let ca = format!("{name}-ca.pem");
    let (key, csr, cert) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    let subj = format!("/CN={name} test CA");
    openssl(
        dir,
        &[&["req", "-x509"], &ec[..], &["-keyout", &ca_key, "-out", &ca, "-days", "2", "-subj", &subj]].concat(),
    );
    openssl(dir, &[&["req"], &ec[..], &["-keyout", &key, "-out", &csr, "-subj", "/CN=localhost"]].concat());
    let ext = format!("{name}.ext");
    std::fs::write(
        dir.join(&ext),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &["x509", "-req", "-in", &csr, "-CA", &ca, "-CAkey", &ca_key, "-CAcreateserial", "-out", &cert, "-days", "2"]
            .into_iter()
            .chain(["-extfile", &ext])
            .collect::<Vec<_>>(),
    );
}

/// Installs `<name>.pem` / `<name>.key` as the served `server.pem` / `server.key` (each by rename).
fn install(dir: &Path, name: &str) {
    for (from, to) in [(format!("{name}.pem"), "server.pem"), (format!("{name}.key"), "server.key")] {
        std::fs::copy(dir.join(&from), dir.join(format!("{to}.new"))).unwrap();
        std::fs::rename(dir.join(format!("{to}.new")), dir.join(to)).unwrap();
    }
}

fn tls_config(dir: &Path) -> String {
    let path = |f: &str| dir.join(f).to_string_lossy().into_owned();
    json!({"gateway": {"tls": {"certPath": path("server.pem"), "keyPath": path("server.key")}}}).to_string()
}

async fn start(dir: &Path) -> TestGateway {
    TestGateway::builder(BIN).token(TOKEN).config(tls_config(dir)).start().await.expect("start clawgate over TLS")
}

type Wss = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// A `wss://` connection to `port` trusting only `ca`; the TLS or upgrade error as text.
async fn wss(port: u16, ca: &Path) -> Result<Wss, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(ca).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let url = format!("wss://localhost:{port}/");
    let (ws, _) = tokio_tungstenite::client_async(url, tls).await.map_err(|e| format!("upgrade: {e}"))?;
    Ok(ws)
}

async fn recv(ws: &mut Wss) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next()).await.expect("a frame in time").expect("open").expect("frame");
        if let Message::Text(text) = msg {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// The challenge, `connect` and a `health` request; returns the `health` response.
async fn handshake_and_health(ws: &mut Wss) -> Value {
    let challenge = recv(ws).await;
    assert_eq!(challenge["event"], "connect.challenge", "{challenge}");
    let connect =
        json!({"type": "req", "id": "c1", "method": "connect", "params": connect_params(Some(TOKEN), &json!({}))});
    ws.send(Message::text(connect.to_string())).await.unwrap();
    let mut hello = recv(ws).await;
    while hello["id"] != "c1" {
        hello = recv(ws).await;
    }
    assert_eq!(hello["ok"], true, "{hello}");
    assert_eq!(hello["payload"]["type"], "hello-ok", "{hello}");
    ws.send(Message::text(json!({"type": "req", "id": "h1", "method": "health"}).to_string())).await.unwrap();
    loop {
        let frame = recv(ws).await;
        if frame["id"] == "h1" {
            return frame;
        }
    }
}

fn tempdir_with(names: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    for name in names {
        make_pair(&path, name);
    }
    install(&path, names[0]);
    (dir, path)
}

#[tokio::test]
async fn wss_handshake_and_health_with_a_generated_ca() {
    let (_keep, dir) = tempdir_with(&["one"]);
    let gw = start(&dir).await;
    let mut ws = wss(gw.port(), &dir.join("one-ca.pem")).await.expect("wss connect");
    let health = handshake_and_health(&mut ws).await;
    assert_eq!(health["ok"], true, "{health}");
    // The HTTP routes are served over the same TLS port.
    let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.join("one-ca.pem")).unwrap()).unwrap();
    let client = reqwest::Client::builder().tls_certs_only([ca]).build().unwrap();
    let res = client.get(format!("https://localhost:{}/healthz", gw.port())).timeout(WAIT).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
}

#[tokio::test]
async fn plain_ws_to_the_tls_port_fails_cleanly_and_tls_keeps_working() {
    let (_keep, dir) = tempdir_with(&["one"]);
    let gw = start(&dir).await;
    for _ in 0..3 {
        let plain = RawClient::connect(&gw.ws_url()).await;
        assert!(plain.is_err(), "a plain ws:// upgrade is not answered on the TLS port");
    }
    // A client that does not trust the CA is refused by its own TLS check.
    make_pair(&dir, "stranger");
    let Err(err) = wss(gw.port(), &dir.join("stranger-ca.pem")).await else { panic!("an untrusted certificate") };
    assert!(err.starts_with("TLS:"), "{err}");
    // The gateway is still serving.
    let mut ws = wss(gw.port(), &dir.join("one-ca.pem")).await.expect("wss connect");
    assert_eq!(handshake_and_health(&mut ws).await["ok"], true);
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_restart_and_a_bad_one_is_not() {
    let (_keep, dir) = tempdir_with(&["one", "two"]);
    let gw = start(&dir).await;
    wss(gw.port(), &dir.join("one-ca.pem")).await.expect("the first certificate");

    // A broken certificate keeps the old pair serving, with an error in the log.
    std::fs::write(dir.join("server.pem.new"), "not a certificate").unwrap();
    std::fs::rename(dir.join("server.pem.new"), dir.join("server.pem")).unwrap();
    wss(gw.port(), &dir.join("one-ca.pem")).await.expect("still the first certificate");
    wait_until(WAIT, "the reload failure is logged", || async {
        gw.read_log().contains("TLS files changed but do not load").then_some(())
    })
    .await
    .unwrap();

    // The new pair is picked up by the next connection.
    install(&dir, "two");
    let mut ws = wait_until(WAIT, "the new certificate is served", || async {
        wss(gw.port(), &dir.join("two-ca.pem")).await.ok()
    })
    .await
    .unwrap();
    assert_eq!(handshake_and_health(&mut ws).await["ok"], true);
    assert!(wss(gw.port(), &dir.join("one-ca.pem")).await.is_err(), "the old certificate is gone");
}

fn start_fails(config: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clawgate.json5");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(BIN)
        .args(["gateway", "--port", "0", "--config"])
        .arg(&path)
        .arg("--state-dir")
        .arg(dir.path())
        .env("CLAWGATE_GATEWAY_TOKEN", TOKEN)
        .output()
        .expect("run clawgate");
    assert!(!out.status.success(), "the gateway must not start with {config}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn unreadable_or_mismatched_files_stop_the_start_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    make_pair(dir.path(), "one");
    make_pair(dir.path(), "two");
    let p = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    let missing = json!({"gateway": {"tls": {"certPath": p("nope.pem"), "keyPath": p("one.key")}}});
    let err = start_fails(&missing.to_string());
    assert!(err.contains("cannot read the TLS certificate") && err.contains("nope.pem"), "{err}");
    let mismatched = json!({"gateway": {"tls": {"certPath": p("one.pem"), "keyPath": p("two.key")}}});
    let err = start_fails(&mismatched.to_string());
    assert!(err.contains("does not go with the certificate"), "{err}");
    // A config problem is reported with its line.
    let err = start_fails("{\n  gateway: {\n    tls: {certPath: 'x.pem'},\n  },\n}\n");
    assert!(err.contains(":3:") && err.contains("gateway.tls.keyPath"), "{err}");
    let err = start_fails("{\n  gateway: {\n    bind: 'lan',\n  },\n}\n");
    assert!(err.contains(":3:") && err.contains("gateway.allowInsecureBind"), "{err}");
}

/// The real `openclaw` CLI over `wss://`, trusting the test CA through `NODE_EXTRA_CA_CERTS`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_openclaw_cli_calls_health_over_wss() {
    let peers = OpenClawPeers::get().await.unwrap_or_else(|e| panic!("the real OpenClaw CLI is required: {e:#}"));
    let (_keep, dir) = tempdir_with(&["one"]);
    let gw = start(&dir).await;
    let url = format!("wss://localhost:{}", gw.port());
    std::fs::create_dir_all(dir.join("home")).unwrap();
    let out = peers
        .cli(["gateway", "call", "health", "--url", &url, "--token", TOKEN, "--json"])
        .env("NODE_EXTRA_CA_CERTS", dir.join("one-ca.pem"))
        .home(dir.join("home"))
        .run()
        .await
        .expect("running openclaw");
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let printed = out.json().expect("JSON output");
    assert_eq!(printed["ok"], true, "{}", out.describe());
}
