//! Test harness for clawgate's black-box tests.
//!
//! It owns everything a test needs to drive the real `clawgate` binary from the outside:
//! [`TestGateway`] (spawn, wait for readiness, signal, restart), [`RawClient`] (frame-level
//! WebSocket client for protocol tests), [`RecordingProxy`] (puts a recorder between a real client
//! and the gateway), [`SchemaValidator`] (the vendored OpenClaw protocol schema, applied to every
//! frame the gateway sends) and [`OpenClawPeers`] (the real `openclaw` CLI and `openclaw-node`
//! installed from npm). It must not depend on clawgate's own crates: the tests it serves check
//! clawgate against the upstream contract, not against itself.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use clawgate_testkit::{RawClient, TestGateway};
//! use serde_json::json;
//!
//! // In an integration test of the `clawgate` package: `env!("CARGO_BIN_EXE_clawgate")`.
//! let gw = TestGateway::builder("target/debug/clawgate")
//!     .config("{gateway: {handshakeTimeoutMs: 1500}}")
//!     .start()
//!     .await?;
//! let mut client = RawClient::connect(&gw.ws_url()).await?;
//! let hello = client.handshake(gw.token(), &json!({})).await?; // every frame schema-checked
//! assert_eq!(hello["protocol"], 4);
//! let res = client.request("health", None).await?;
//! assert_eq!(res["ok"], true);
//! # Ok(())
//! # }
//! ```
//!
//! Differential runs: `CLAWGATE_TEST_BIN=tests/node/openclaw-gateway-shim.mjs` (with
//! `CLAWGATE_TEST_READY_TIMEOUT_SECS=150`) runs a suite against the real OpenClaw gateway through
//! clawgate's command line, to check the tests themselves against upstream.
#![warn(missing_docs)]

pub mod fake_anthropic;
pub mod fake_comfy;
pub mod fake_discord;
pub mod fake_line;
pub mod fake_openai;
pub mod fake_openclaw;
pub mod fake_slack;
pub mod fake_telegram;
pub mod fake_whatsapp;
pub mod gateway;
pub mod node_client;
pub mod peers;
pub mod postgres;
pub mod proxy;
pub mod raw;
pub mod schema;
pub mod wait;
pub mod webhook_backend;

pub use gateway::{TestGateway, TestGatewayBuilder};
pub use node_client::{Invoke, NodeClient, NodeIdentity};
pub use peers::{OpenClawPeers, PeerCommand, PeerOutput};
pub use postgres::TestPostgres;
pub use proxy::{ProxyRecord, RecordingProxy};
pub use raw::{DEFAULT_TIMEOUT, Incoming, RawClient, Upgrade, connect_params, merge_patch};
pub use schema::{ConnectionValidator, SchemaValidator, SchemaViolation};
pub use wait::{eventually, wait_until};
