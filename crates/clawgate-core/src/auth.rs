//! Credential checks: shared secrets in constant time, argon2id passwords, Ed25519 device
//! signatures (v3 and v2 payloads), and the failed-auth limiter.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use clawgate_protocol::connect::ConnectParams;
use clawgate_protocol::details;

use crate::settings::{PasswordSecret, RateLimitSettings};

/// Compare a presented secret with the configured one in constant time. Both sides are hashed
/// first so neither the content nor the length leaks through timing.
pub fn secrets_match(presented: &str, configured: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(configured.as_bytes());
    a.ct_eq(&b).into()
}

/// Verify a presented password against the configured plain text or argon2id hash.
/// The argon2 path is CPU-heavy by design: call it from a blocking task.
pub fn password_matches(presented: &str, configured: &PasswordSecret) -> bool {
    match configured {
        PasswordSecret::Plain(p) => secrets_match(presented, p),
        PasswordSecret::Argon2Hash(hash) => {
            use argon2::password_hash::{PasswordHash, PasswordVerifier};
            match PasswordHash::new(hash) {
                Ok(parsed) => argon2::Argon2::default().verify_password(presented.as_bytes(), &parsed).is_ok(),
                Err(_) => false,
            }
        }
    }
}

/// Hash a password with argon2id (for `clawgate` tooling and tests).
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// A device-auth failure: the `details.code`, the reason and the message (also the close reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAuthError {
    /// `details.code`.
    pub code: &'static str,
    /// `details.reason`.
    pub reason: &'static str,
    /// Error message and close reason.
    pub message: &'static str,
}

const fn dev_err(code: &'static str, reason: &'static str, message: &'static str) -> DeviceAuthError {
    DeviceAuthError { code, reason, message }
}

/// A device whose proof checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedDevice {
    /// hex(sha256(raw key)).
    pub device_id: String,
    /// base64url of the raw key (normalised form we store).
    pub public_key: String,
    /// Which payload version was signed.
    pub signature_version: u8,
}

/// Decode a device public key: base64url (unpadded), standard/padded base64, or PEM SPKI.
pub fn parse_public_key(text: &str) -> Option<[u8; 32]> {
    let trimmed = text.trim();
    let bytes = if trimmed.starts_with("-----BEGIN") {
        let body: String = trimmed.lines().filter(|l| !l.starts_with("-----")).collect::<Vec<_>>().join("");
        base64::engine::general_purpose::STANDARD.decode(body.trim()).ok()?
    } else {
        let normalised: String = trimmed.replace('-', "+").replace('_', "/").trim_end_matches('=').to_owned();
        base64::engine::general_purpose::STANDARD_NO_PAD.decode(normalised).ok()?
    };
    // Raw 32-byte key, or an SPKI DER whose last 32 bytes are the key (12-byte Ed25519 prefix).
    const SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
    match bytes.len() {
        32 => bytes.try_into().ok(),
        44 if bytes[..12] == SPKI_PREFIX => bytes[12..].try_into().ok(),
        _ => None,
    }
}

/// `device.id` for a raw public key.
pub fn device_id_for(raw: &[u8; 32]) -> String {
    hex::encode(Sha256::digest(raw))
}

fn norm(s: Option<&str>) -> String {
    s.map(|v| v.trim().to_ascii_lowercase()).unwrap_or_default()
}

/// The v3 signed payload.
pub fn payload_v3(p: &ConnectParams, device_id: &str, signed_at: i64, nonce: &str) -> String {
    let token = p.auth.as_ref().map(|a| a.signed_token()).unwrap_or("");
    format!(
        "v3|{device_id}|{}|{}|{}|{}|{signed_at}|{token}|{nonce}|{}|{}",
        p.client.id,
        p.client.mode,
        p.role(),
        p.requested_scopes().join(","),
        norm(Some(&p.client.platform)),
        norm(p.client.device_family.as_deref()),
    )
}

/// The legacy v2 signed payload.
pub fn payload_v2(p: &ConnectParams, device_id: &str, signed_at: i64, nonce: &str) -> String {
    let token = p.auth.as_ref().map(|a| a.signed_token()).unwrap_or("");
    format!(
        "v2|{device_id}|{}|{}|{}|{}|{signed_at}|{token}|{nonce}",
        p.client.id,
        p.client.mode,
        p.role(),
        p.requested_scopes().join(",")
    )
}

/// Check the `device` block of a connect against the challenge nonce and the clock.
pub fn verify_device(
    p: &ConnectParams,
    expected_nonce: &str,
    now_ms: i64,
) -> Result<Option<VerifiedDevice>, DeviceAuthError> {
    let Some(d) = p.device.as_ref() else { return Ok(None) };
    let raw = parse_public_key(&d.public_key).ok_or(dev_err(
        details::DEVICE_AUTH_PUBLIC_KEY_INVALID,
        "public-key-invalid",
        "device public key invalid",
    ))?;
    let device_id = device_id_for(&raw);
    if device_id != d.id {
        return Err(dev_err(details::DEVICE_AUTH_DEVICE_ID_MISMATCH, "device-id-mismatch", "device identity mismatch"));
    }
    if (now_ms - d.signed_at).abs() > clawgate_protocol::DEVICE_SIGNATURE_SKEW_MS {
        return Err(dev_err(details::DEVICE_AUTH_SIGNATURE_EXPIRED, "signature-expired", "device signature expired"));
    }
    let nonce = d.nonce.trim();
    if nonce.is_empty() {
        return Err(dev_err(details::DEVICE_AUTH_NONCE_REQUIRED, "nonce-required", "device nonce required"));
    }
    if nonce != expected_nonce {
        return Err(dev_err(details::DEVICE_AUTH_NONCE_MISMATCH, "nonce-mismatch", "device nonce mismatch"));
    }
    let invalid = dev_err(details::DEVICE_AUTH_SIGNATURE_INVALID, "signature-invalid", "device signature invalid");
    let key = VerifyingKey::from_bytes(&raw).map_err(|_| {
        dev_err(details::DEVICE_AUTH_PUBLIC_KEY_INVALID, "public-key-invalid", "device public key invalid")
    })?;
    let sig_bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(d.signature.trim().replace('-', "+").replace('_', "/").trim_end_matches('='))
        .map_err(|_| invalid.clone())?;
    let sig = Signature::from_slice(&sig_bytes).map_err(|_| invalid.clone())?;
    let public_key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    for (version, payload) in
        [(3u8, payload_v3(p, &device_id, d.signed_at, &d.nonce)), (2, payload_v2(p, &device_id, d.signed_at, &d.nonce))]
    {
        if key.verify(payload.as_bytes(), &sig).is_ok() {
            return Ok(Some(VerifiedDevice { device_id, public_key, signature_version: version }));
        }
    }
    Err(invalid)
}

/// Where a request comes from, as far as the gateway can tell: the socket's peer address, and
/// whether a proxy in front of it said it forwarded the request (`X-Forwarded-For`,
/// `X-Real-IP`, `Forwarded`). A loopback peer that forwarded is a same-host reverse proxy: the
/// client behind it is anywhere, so it gets none of the trust a local client gets (silent
/// pairing, the failed-auth exemption).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The socket's peer address.
    pub ip: IpAddr,
    /// A proxy's forwarding header was present.
    pub forwarded: bool,
}

impl Peer {
    /// Header names that mark a request as relayed by a proxy.
    pub const FORWARDING_HEADERS: [&'static str; 3] = ["x-forwarded-for", "x-real-ip", "forwarded"];

    /// A client on this machine talking to the gateway directly.
    pub fn is_direct_loopback(&self) -> bool {
        self.ip.is_loopback() && !self.forwarded
    }
}

impl From<IpAddr> for Peer {
    /// A direct connection from `ip`.
    fn from(ip: IpAddr) -> Self {
        Self { ip, forwarded: false }
    }
}

/// Counts failed authentications per client address and locks an address out after too many.
/// Hand-written rather than `governor`: the semantics (count failures only, lock out for a
/// fixed time, report when to retry) are upstream's and a GCRA limiter models request rates.
#[derive(Debug, Default)]
pub struct FailedAuthLimiter {
    entries: HashMap<IpAddr, FailureEntry>,
}

#[derive(Debug)]
struct FailureEntry {
    window_start: Instant,
    failures: u32,
    locked_until: Option<Instant>,
}

impl FailedAuthLimiter {
    /// `Err(retry_after)` while the peer's address is locked out. Only a direct loopback client
    /// is exempt (`exemptLoopback`), never one behind a same-host proxy.
    pub fn check(&mut self, peer: impl Into<Peer>, policy: &RateLimitSettings, now: Instant) -> Result<(), Duration> {
        let peer = peer.into();
        if policy.exempt_loopback && peer.is_direct_loopback() {
            return Ok(());
        }
        match self.entries.get(&peer.ip).and_then(|e| e.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Record a failure; returns the lockout if this failure triggered one.
    pub fn record_failure(
        &mut self,
        peer: impl Into<Peer>,
        policy: &RateLimitSettings,
        now: Instant,
    ) -> Option<Duration> {
        let peer = peer.into();
        if policy.exempt_loopback && peer.is_direct_loopback() {
            return None;
        }
        let ip = peer.ip;
        if self.entries.len() > 100_000 {
            // Bound memory under an address-spraying attack: forget entries that no longer matter.
            self.entries.retain(|_, e| e.locked_until.is_some_and(|u| u > now) || now - e.window_start < policy.window);
        }
        let entry =
            self.entries.entry(ip).or_insert(FailureEntry { window_start: now, failures: 0, locked_until: None });
        if let Some(until) = entry.locked_until
            && until <= now
        {
            entry.locked_until = None;
            entry.failures = 0;
            entry.window_start = now;
        }
        if now - entry.window_start > policy.window {
            entry.window_start = now;
            entry.failures = 0;
        }
        entry.failures += 1;
        if entry.failures >= policy.max_attempts.max(1) {
            entry.locked_until = Some(now + policy.lockout);
            return Some(policy.lockout);
        }
        None
    }

    /// A success clears the address's failures.
    pub fn record_success(&mut self, ip: IpAddr) {
        self.entries.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawgate_protocol::connect::parse_connect_params;
    use ed25519_dalek::{Signer, SigningKey};
    use serde_json::json;

    fn signed_params(version: u8, nonce: &str, signed_at: i64) -> (ConnectParams, SigningKey) {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let raw = key.verifying_key().to_bytes();
        let id = device_id_for(&raw);
        let pk = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let mut v = json!({"minProtocol":4,"maxProtocol":4,"client":{"id":"openclaw-tui","version":"1","platform":" Linux ","deviceFamily":"Linux","mode":"ui"},"role":"operator","scopes":["operator.read","operator.write"],"auth":{"token":"secret"},
            "device":{"id":id,"publicKey":pk,"signature":"x","signedAt":signed_at,"nonce":nonce}});
        let p = parse_connect_params(&v).unwrap();
        let payload =
            if version == 3 { payload_v3(&p, &id, signed_at, nonce) } else { payload_v2(&p, &id, signed_at, nonce) };
        let sig = key.sign(payload.as_bytes());
        v["device"]["signature"] = json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig.to_bytes()));
        (parse_connect_params(&v).unwrap(), key)
    }

    #[test]
    fn v3_payload_lowercases_and_trims_platform() {
        let (p, _) = signed_params(3, "n1", 1000);
        let id = p.device.as_ref().unwrap().id.clone();
        assert_eq!(
            payload_v3(&p, &id, 1000, "n1"),
            format!("v3|{id}|openclaw-tui|ui|operator|operator.read,operator.write|1000|secret|n1|linux|linux")
        );
    }

    #[test]
    fn v3_and_v2_signatures_both_verify() {
        for v in [3u8, 2] {
            let (p, _) = signed_params(v, "n1", 1_000_000);
            let d = verify_device(&p, "n1", 1_000_500).unwrap().unwrap();
            assert_eq!(d.signature_version, v);
        }
    }

    #[test]
    fn wrong_nonce_expired_and_tampered_signatures_are_rejected() {
        let (p, _) = signed_params(3, "n1", 1_000_000);
        assert_eq!(verify_device(&p, "other", 1_000_000).unwrap_err().code, details::DEVICE_AUTH_NONCE_MISMATCH);
        assert_eq!(
            verify_device(&p, "n1", 1_000_000 + 120_001).unwrap_err().code,
            details::DEVICE_AUTH_SIGNATURE_EXPIRED
        );
        let mut tampered = p.clone();
        tampered.scopes = Some(vec!["operator.admin".into()]);
        assert_eq!(verify_device(&tampered, "n1", 1_000_000).unwrap_err().code, details::DEVICE_AUTH_SIGNATURE_INVALID);
        let mut wrong_id = p.clone();
        wrong_id.device.as_mut().unwrap().id = "00".repeat(32);
        assert_eq!(
            verify_device(&wrong_id, "n1", 1_000_000).unwrap_err().code,
            details::DEVICE_AUTH_DEVICE_ID_MISMATCH
        );
    }

    #[test]
    fn pem_spki_and_padded_base64_keys_parse() {
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let raw = key.verifying_key().to_bytes();
        let mut der = vec![0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
        der.extend_from_slice(&raw);
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(&der)
        );
        assert_eq!(parse_public_key(&pem), Some(raw));
        assert_eq!(parse_public_key(&base64::engine::general_purpose::STANDARD.encode(raw)), Some(raw));
        assert_eq!(parse_public_key("not a key"), None);
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(secrets_match("abc", "abc"));
        assert!(!secrets_match("abc", "abd"));
        assert!(!secrets_match("", "abc"));
    }

    #[test]
    fn argon2id_hashed_password_verifies() {
        let hash = hash_password("hunter2").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(password_matches("hunter2", &PasswordSecret::from_config(hash.clone())));
        assert!(!password_matches("hunter3", &PasswordSecret::from_config(hash)));
    }

    #[test]
    fn limiter_locks_out_after_max_failures_including_loopback() {
        let policy = RateLimitSettings {
            max_attempts: 3,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(30),
            exempt_loopback: false,
        };
        let mut l = FailedAuthLimiter::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        assert!(l.record_failure(ip, &policy, t0).is_none());
        assert!(l.record_failure(ip, &policy, t0).is_none());
        assert!(l.record_failure(ip, &policy, t0).is_some());
        assert!(l.check(ip, &policy, t0 + Duration::from_secs(1)).is_err());
        assert!(l.check(ip, &policy, t0 + Duration::from_secs(31)).is_ok());
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(l.check(other, &policy, t0).is_ok());
    }

    #[test]
    fn the_loopback_exemption_does_not_cover_a_same_host_proxy() {
        let policy = RateLimitSettings {
            max_attempts: 2,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(30),
            exempt_loopback: true,
        };
        let mut l = FailedAuthLimiter::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(l.record_failure(ip, &policy, t0).is_none(), "a direct local client is exempt");
        }
        assert!(l.check(ip, &policy, t0).is_ok());
        let proxied = Peer { ip, forwarded: true };
        assert!(!proxied.is_direct_loopback());
        assert!(l.record_failure(proxied, &policy, t0).is_none());
        assert!(l.record_failure(proxied, &policy, t0).is_some(), "clients behind a proxy are counted");
        assert!(l.check(proxied, &policy, t0).is_err());
    }
}
