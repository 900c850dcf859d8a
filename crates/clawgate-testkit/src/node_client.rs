//! A node as `openclaw node run` is one on the wire, for tests that need a node they control:
//! it connects with `role: "node"` and a v2-signed Ed25519 device identity, announces its
//! commands, and answers the `node.invoke.request`s the gateway sends it with
//! `node.invoke.result` (contract `openclaw-protocol.md` §3.4, `openclaw-live.md` §11).
//!
//! The identity is built here from the contract's rules (device id = hex SHA-256 of the raw
//! public key; signature over `v2|deviceId|clientId|mode|role|scopes|signedAt|token|nonce`), not
//! taken from clawgate's client crate, so a test checks the gateway against the contract.
//!
//! ```no_run
//! # async fn demo(gw: &clawgate_testkit::TestGateway) -> anyhow::Result<()> {
//! use clawgate_testkit::node_client::{NodeClient, NodeIdentity};
//! use serde_json::json;
//!
//! let identity = NodeIdentity::generate();
//! let mut node = NodeClient::connect(&gw.ws_url(), gw.expect_token(), &identity).await?;
//! // … an operator approves it (`node.pair.approve`) and invokes `system.which` …
//! let invoke = node.next_invoke(std::time::Duration::from_secs(10)).await?;
//! node.answer(&invoke, json!({"bins": {"sh": "/bin/sh"}})).await?;
//! # Ok(())
//! # }
//! ```

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::raw::RawClient;

/// What the node host sends as `client.id` and `client.mode`.
const CLIENT_ID: &str = "node-host";
const CLIENT_MODE: &str = "node";
/// The commands a node announces unless told otherwise.
pub const DEFAULT_COMMANDS: &[&str] = &["system.run", "system.which"];
/// The display name a node announces unless told otherwise.
pub const DEFAULT_DISPLAY_NAME: &str = "raw-node";
/// Bound for the handshake's own waits.
const HANDSHAKE_WAIT: Duration = Duration::from_secs(10);

/// A node's Ed25519 device identity. Keep it to reconnect as the same node (after a restart the
/// gateway recognises it by its key). `Debug` shows only the device id.
#[derive(Clone)]
pub struct NodeIdentity {
    key: SigningKey,
    device_id: String,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity").field("device_id", &self.device_id).finish_non_exhaustive()
    }
}

impl NodeIdentity {
    /// A fresh random identity.
    pub fn generate() -> Self {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let device_id = hex::encode(Sha256::digest(key.verifying_key().as_bytes()));
        Self { key, device_id }
    }

    /// The device id, which is also the node id the gateway lists.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// The `device` object of `connect`, signed with the v2 payload over the challenge.
    fn proof(&self, token: &str, nonce: &str, signed_at: i64) -> Value {
        let payload = format!("v2|{}|{CLIENT_ID}|{CLIENT_MODE}|node||{signed_at}|{token}|{nonce}", self.device_id);
        let signature = URL_SAFE_NO_PAD.encode(self.key.sign(payload.as_bytes()).to_bytes());
        json!({"id": self.device_id, "publicKey": URL_SAFE_NO_PAD.encode(self.key.verifying_key().as_bytes()),
               "signature": signature, "signedAt": signed_at, "nonce": nonce})
    }
}

/// What a node announces when it connects.
#[derive(Debug, Clone)]
pub struct NodeAnnouncement {
    /// `client.displayName`.
    pub display_name: String,
    /// The commands it offers (`commands`).
    pub commands: Vec<String>,
}

impl Default for NodeAnnouncement {
    fn default() -> Self {
        Self {
            display_name: DEFAULT_DISPLAY_NAME.to_owned(),
            commands: DEFAULT_COMMANDS.iter().map(|c| (*c).to_owned()).collect(),
        }
    }
}

/// A `node.invoke.request` the gateway sent.
#[derive(Debug, Clone)]
pub struct Invoke {
    /// The invoke id to answer.
    pub id: String,
    /// The command to run (`system.which`, …).
    pub command: String,
    /// Its params, decoded from `paramsJSON` (`None` when none were sent).
    pub params: Option<Value>,
    /// The whole event frame.
    pub frame: Value,
}

/// A connected node. Dereferences to its [`RawClient`] for anything this type does not wrap
/// (`request`, `recv_event`, …).
#[derive(Debug)]
pub struct NodeClient {
    raw: RawClient,
    node_id: String,
}

impl NodeClient {
    /// Connects as a node with the default announcement ([`DEFAULT_DISPLAY_NAME`],
    /// [`DEFAULT_COMMANDS`]) and the gateway's shared `token`; an error (with the gateway's
    /// answer) unless the connect is accepted. A node not yet approved is accepted too — it then
    /// waits for `node.pair.approve`.
    pub async fn connect(ws_url: &str, token: &str, identity: &NodeIdentity) -> anyhow::Result<NodeClient> {
        Self::connect_as(ws_url, token, identity, &NodeAnnouncement::default()).await
    }

    /// As [`NodeClient::connect`], announcing `announcement`.
    pub async fn connect_as(
        ws_url: &str,
        token: &str,
        identity: &NodeIdentity,
        announcement: &NodeAnnouncement,
    ) -> anyhow::Result<NodeClient> {
        let mut raw = RawClient::connect(ws_url).await.context("node connects")?;
        let challenge = raw.challenge(HANDSHAKE_WAIT).await?;
        let nonce = challenge["nonce"].as_str().context("challenge without nonce")?.to_owned();
        let signed_at = challenge["ts"].as_i64().context("challenge without ts")?;
        let id = raw.next_id();
        let params = json!({
            "minProtocol": 4, "maxProtocol": 4,
            "client": {"id": CLIENT_ID, "displayName": announcement.display_name, "version": "2026.9.6",
                       "platform": "linux", "deviceFamily": "Linux", "mode": CLIENT_MODE},
            "caps": ["system"], "commands": announcement.commands, "pathEnv": "/usr/bin:/bin",
            "auth": {"token": token}, "role": "node", "scopes": [],
            "device": identity.proof(token, &nonce, signed_at),
        });
        raw.send_json(&json!({"type": "req", "id": id, "method": "connect", "params": params})).await?;
        let res = raw.recv_response(&id, HANDSHAKE_WAIT).await.context("connect answered")?;
        if res["ok"] != true {
            bail!("node not admitted: {res}");
        }
        Ok(NodeClient { raw, node_id: identity.device_id().to_owned() })
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The next `node.invoke.request` (one that arrived earlier first).
    pub async fn next_invoke(&mut self, wait: Duration) -> anyhow::Result<Invoke> {
        let frame = self.raw.recv_event("node.invoke.request", wait).await?;
        let payload = &frame["payload"];
        let id = payload["id"].as_str().context("node.invoke.request without id")?.to_owned();
        let command = payload["command"].as_str().context("node.invoke.request without command")?.to_owned();
        let params = match payload["paramsJSON"].as_str() {
            Some(text) => Some(serde_json::from_str(text).context("paramsJSON is JSON")?),
            None => None,
        };
        Ok(Invoke { id, command, params, frame })
    }

    /// Answers an invoke with success and `payload`; the gateway's `res` to the
    /// `node.invoke.result` (an error unless it is ok).
    pub async fn answer(&mut self, invoke: &Invoke, payload: Value) -> anyhow::Result<Value> {
        let result = json!({"id": invoke.id, "nodeId": self.node_id, "ok": true, "payload": payload});
        self.result(result).await
    }

    /// Answers an invoke with the node's error `{code, message}`.
    pub async fn fail(&mut self, invoke: &Invoke, code: &str, message: &str) -> anyhow::Result<Value> {
        let result = json!({"id": invoke.id, "nodeId": self.node_id, "ok": false,
                            "error": {"code": code, "message": message}});
        self.result(result).await
    }

    async fn result(&mut self, result: Value) -> anyhow::Result<Value> {
        let res = self.raw.request("node.invoke.result", Some(result)).await?;
        if res["ok"] != true {
            bail!("node.invoke.result refused: {res}");
        }
        Ok(res)
    }

    /// The raw client, by value (e.g. to close it).
    pub fn into_raw(self) -> RawClient {
        self.raw
    }
}

impl Deref for NodeClient {
    type Target = RawClient;

    fn deref(&self) -> &RawClient {
        &self.raw
    }
}

impl DerefMut for NodeClient {
    fn deref_mut(&mut self) -> &mut RawClient {
        &mut self.raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, Verifier};

    #[test]
    fn the_proof_is_a_v2_signature_by_the_device_key() {
        let id = NodeIdentity::generate();
        assert_eq!(id.device_id().len(), 64);
        let proof = id.proof("tok", "n-1", 42);
        assert_eq!((proof["id"].as_str(), proof["nonce"].as_str()), (Some(id.device_id()), Some("n-1")));
        let raw = URL_SAFE_NO_PAD.decode(proof["signature"].as_str().expect("signature")).expect("base64url");
        let signature = Signature::from_slice(&raw).expect("64 bytes");
        let signed = format!("v2|{}|node-host|node|node||42|tok|n-1", id.device_id());
        assert!(id.key.verifying_key().verify(signed.as_bytes(), &signature).is_ok());
        assert!(id.key.verifying_key().verify(b"v2|other", &signature).is_err());
        let public = URL_SAFE_NO_PAD.decode(proof["publicKey"].as_str().expect("key")).expect("base64url");
        assert_eq!(hex::encode(Sha256::digest(&public)), id.device_id());
    }
}
