//! Credential checks: shared secrets in constant time, argon2id passwords, Ed25519 device
//! signatures (v3 and v2 payloads), and the failed-auth limiter.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

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

/// The limiter bucket an address belongs to (issue 10, defect 9: a lockout keyed on the exact
/// socket address was bypassed by moving to another address the attacker also owns).
///
/// - All of loopback (`127.0.0.0/8`, `::1`, IPv4-mapped loopback) is **one** bucket: any local
///   process can use any 127.x.y.z source address, so per-address keys would give it sixteen
///   million buckets. The operator's own CLI is not locked out with the attacker because a client
///   presenting a valid device token is admitted before the lockout is consulted (see
///   `handshake::admit`).
/// - IPv6 is keyed by its /64: one host is routinely handed a whole /64.
/// - Other IPv4 addresses are keyed exactly.
pub fn limiter_bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            if v6.is_loopback() {
                return IpAddr::V4(Ipv4Addr::LOCALHOST);
            }
            if let Some(v4) = v6.to_ipv4_mapped() {
                return limiter_bucket(IpAddr::V4(v4));
            }
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::V6(Ipv6Addr::from(segments))
        }
    }
}

/// Counts failed authentications per address bucket ([`limiter_bucket`]) and locks a bucket out
/// after too many. Hand-written rather than `governor`: the semantics (count failures only, lock
/// out for a fixed time, report when to retry) are upstream's and a GCRA limiter models request
/// rates.
///
/// Expensive checks (argon2) go through [`begin_attempt`], which counts the attempt *before* the
/// secret is verified: a check-then-record limiter lets any number of concurrent guesses walk past
/// it while they are all being verified (issue 10, defect 3).
#[derive(Debug, Default)]
pub struct FailedAuthLimiter {
    entries: HashMap<IpAddr, FailureEntry>,
}

#[derive(Debug)]
struct FailureEntry {
    window_start: Instant,
    /// Failures in the window, plus attempts reserved and still being verified.
    failures: u32,
    locked_until: Option<Instant>,
}

/// What recording a failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recorded {
    /// The first failure of the bucket's current window: worth one log line.
    pub first_in_window: bool,
    /// The lockout this failure started.
    pub lockout: Option<Duration>,
}

impl FailedAuthLimiter {
    fn exempt(peer: Peer, policy: &RateLimitSettings) -> bool {
        policy.exempt_loopback && peer.is_direct_loopback()
    }

    /// The bucket's live entry, with an expired lockout or window reset.
    fn entry(&mut self, key: IpAddr, policy: &RateLimitSettings, now: Instant) -> &mut FailureEntry {
        if self.entries.len() > 100_000 {
            // Bound memory under an address-spraying attack: forget entries that no longer matter.
            self.entries.retain(|_, e| e.locked_until.is_some_and(|u| u > now) || now - e.window_start < policy.window);
        }
        let entry =
            self.entries.entry(key).or_insert(FailureEntry { window_start: now, failures: 0, locked_until: None });
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
        entry
    }

    /// `Err(retry_after)` while the peer's bucket is locked out. Only a direct loopback client
    /// is exempt (`exemptLoopback`), never one behind a same-host proxy.
    pub fn check(&mut self, peer: impl Into<Peer>, policy: &RateLimitSettings, now: Instant) -> Result<(), Duration> {
        let peer = peer.into();
        if Self::exempt(peer, policy) {
            return Ok(());
        }
        match self.entries.get(&limiter_bucket(peer.ip)).and_then(|e| e.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Count an attempt before its secret is verified. `Err(retry_after)` when the bucket is
    /// locked out, or when the attempts already counted (failed or still in flight) use up the
    /// budget; `Ok(true)` when counted, `Ok(false)` when the peer is exempt.
    pub fn reserve(
        &mut self,
        peer: impl Into<Peer>,
        policy: &RateLimitSettings,
        now: Instant,
    ) -> Result<bool, Duration> {
        let peer = peer.into();
        if Self::exempt(peer, policy) {
            return Ok(false);
        }
        let max = policy.max_attempts.max(1);
        let entry = self.entry(limiter_bucket(peer.ip), policy, now);
        if let Some(until) = entry.locked_until {
            return Err(until - now);
        }
        if entry.failures >= max {
            // Every attempt of the budget is in flight: refuse until they are decided (a
            // verification takes well under a second).
            return Err(Duration::from_secs(1));
        }
        entry.failures += 1;
        Ok(true)
    }

    /// Give back a reserved attempt that was never verified (no verification slot was free).
    pub fn release(&mut self, peer: impl Into<Peer>) {
        if let Some(e) = self.entries.get_mut(&limiter_bucket(peer.into().ip)) {
            e.failures = e.failures.saturating_sub(1);
        }
    }

    /// A reserved attempt failed: lock the bucket out if the budget is used up.
    pub fn confirm_failure(&mut self, peer: impl Into<Peer>, policy: &RateLimitSettings, now: Instant) -> Recorded {
        let peer = peer.into();
        let entry = self.entry(limiter_bucket(peer.ip), policy, now);
        if entry.failures == 0 {
            // The bucket was cleared (or its window ended) while this attempt was verified.
            entry.failures = 1;
        }
        let first_in_window = entry.failures == 1;
        if entry.locked_until.is_none() && entry.failures >= policy.max_attempts.max(1) {
            entry.locked_until = Some(now + policy.lockout);
            return Recorded { first_in_window, lockout: Some(policy.lockout) };
        }
        Recorded { first_in_window, lockout: None }
    }

    /// Record a failure of a cheap check (counted after the fact: nothing is spent verifying it);
    /// reports whether it started a lockout.
    pub fn record_failure(&mut self, peer: impl Into<Peer>, policy: &RateLimitSettings, now: Instant) -> Recorded {
        let peer = peer.into();
        if Self::exempt(peer, policy) {
            return Recorded::default();
        }
        let entry = self.entry(limiter_bucket(peer.ip), policy, now);
        entry.failures += 1;
        let first_in_window = entry.failures == 1;
        if entry.locked_until.is_none() && entry.failures >= policy.max_attempts.max(1) {
            entry.locked_until = Some(now + policy.lockout);
            return Recorded { first_in_window, lockout: Some(policy.lockout) };
        }
        Recorded { first_in_window, lockout: None }
    }

    /// A success clears the failures of the client's bucket — except the shared loopback bucket:
    /// one local client's success does not forgive another local process's guesses (else a
    /// guesser gets a fresh budget every time the operator's CLI connects).
    pub fn record_success(&mut self, ip: IpAddr) {
        let key = limiter_bucket(ip);
        if key == IpAddr::V4(Ipv4Addr::LOCALHOST) {
            return;
        }
        self.entries.remove(&key);
    }
}

impl FailedAuthLimiter {
    /// The buckets locked out at `now`, with when each lockout ends (for sharing them with the
    /// other gateways of a cluster).
    pub fn lockouts(&self, now: Instant) -> Vec<(IpAddr, Instant)> {
        self.entries.iter().filter_map(|(ip, e)| Some((*ip, e.locked_until.filter(|u| *u > now)?))).collect()
    }

    /// Lock `bucket` out until `until` (a lockout another gateway of the cluster started); an
    /// existing later lockout is kept.
    pub fn lock_out(&mut self, bucket: IpAddr, until: Instant, now: Instant) {
        if self.entries.len() > 100_000 && !self.entries.contains_key(&bucket) {
            // Bounded like `entry`: a flood of shared lockouts cannot grow the map without end.
            self.entries.retain(|_, e| e.locked_until.is_some_and(|u| u > now));
        }
        let entry =
            self.entries.entry(bucket).or_insert(FailureEntry { window_start: now, failures: 0, locked_until: None });
        if entry.locked_until.is_none_or(|u| u < until) {
            entry.locked_until = Some(until);
        }
    }
}

/// An attempt counted in a [`FailedAuthLimiter`] before its secret is verified. Dropping it
/// undecided (the client went away mid-check) counts it as failed.
#[derive(Debug)]
pub struct Attempt<'a> {
    limiter: &'a Mutex<FailedAuthLimiter>,
    peer: Peer,
    policy: RateLimitSettings,
    counted: bool,
    decided: bool,
}

/// Count an attempt from `peer` before verifying its secret; `Err(retry_after)` when the bucket
/// may not try now.
pub fn begin_attempt<'a>(
    limiter: &'a Mutex<FailedAuthLimiter>,
    peer: Peer,
    policy: &RateLimitSettings,
) -> Result<Attempt<'a>, Duration> {
    let counted = limiter.lock().reserve(peer, policy, Instant::now())?;
    Ok(Attempt { limiter, peer, policy: *policy, counted, decided: false })
}

impl Attempt<'_> {
    /// The secret was right: the bucket's failures are cleared (see
    /// [`FailedAuthLimiter::record_success`]) and this attempt is not counted.
    pub fn succeeded(mut self) {
        self.decided = true;
        let mut l = self.limiter.lock();
        if self.counted {
            l.release(self.peer);
        }
        l.record_success(self.peer.ip);
    }

    /// The secret was wrong.
    pub fn failed(mut self) -> Recorded {
        self.decided = true;
        self.fail()
    }

    /// The secret was never verified (no verification slot was free): not counted.
    pub fn abandoned(mut self) {
        self.decided = true;
        if self.counted {
            self.limiter.lock().release(self.peer);
        }
    }

    fn fail(&self) -> Recorded {
        if !self.counted {
            return Recorded::default();
        }
        let recorded = self.limiter.lock().confirm_failure(self.peer, &self.policy, Instant::now());
        if let Some(lockout) = recorded.lockout {
            tracing::warn!(
                bucket = %limiter_bucket(self.peer.ip),
                lockout_ms = lockout.as_millis() as u64,
                "too many failed authentication attempts; locking out"
            );
        }
        recorded
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.decided {
            self.fail();
        }
    }
}

/// How many argon2 verifications may run at once. Each holds the hash's memory cost (19 MiB
/// with the default parameters) for its duration; unbounded, sixty concurrent wrong passwords
/// took 1.2 GB (issue 10, defect 3).
pub const MAX_CONCURRENT_PASSWORD_CHECKS: usize = 2;

/// The outcome of a password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    /// Right password.
    Match,
    /// Wrong password.
    Mismatch,
    /// Every verification slot is busy; the attempt was not verified (answer "rate limited").
    Busy,
}

/// Verifies passwords against the configured secret with bounded memory: at most
/// [`MAX_CONCURRENT_PASSWORD_CHECKS`] argon2 runs at a time, each in one of as many reusable
/// memory areas, so the memory the checks ever take is fixed however many arrive (a freed
/// 19 MiB block per blocking thread would otherwise stay in that thread's malloc arena).
#[derive(Debug)]
pub struct PasswordGate {
    /// One reusable argon2 memory area per slot; a free slot is one in the pool.
    slots: Arc<Mutex<Vec<Vec<argon2::Block>>>>,
}

impl Default for PasswordGate {
    fn default() -> Self {
        Self { slots: Arc::new(Mutex::new((0..MAX_CONCURRENT_PASSWORD_CHECKS).map(|_| Vec::new()).collect())) }
    }
}

impl PasswordGate {
    /// Check `presented` against `configured`. A plain password is compared at once; an argon2
    /// hash is verified on a blocking thread if a slot is free, else [`PasswordCheck::Busy`].
    pub async fn verify(&self, presented: &str, configured: &PasswordSecret) -> PasswordCheck {
        let verdict = |ok: bool| if ok { PasswordCheck::Match } else { PasswordCheck::Mismatch };
        let hash = match configured {
            PasswordSecret::Plain(p) => return verdict(secrets_match(presented, p)),
            PasswordSecret::Argon2Hash(hash) => hash.clone(),
        };
        let Some(mut memory) = self.slots.lock().pop() else {
            return PasswordCheck::Busy;
        };
        let slots = self.slots.clone();
        let presented = presented.to_owned();
        // The slot goes back when the blocking work ends, even if the caller stopped waiting.
        let run = tokio::task::spawn_blocking(move || {
            let ok = verify_argon2_in(&presented, &hash, &mut memory);
            slots.lock().push(memory);
            ok
        });
        verdict(run.await.unwrap_or(false))
    }
}

/// Verify an argon2 PHC hash using `memory` as the work area (grown to the hash's memory cost
/// once, then reused).
fn verify_argon2_in(presented: &str, hash: &str, memory: &mut Vec<argon2::Block>) -> bool {
    use argon2::{Algorithm, Argon2, Params, PasswordHash, Version};
    let Ok(parsed) = PasswordHash::new(hash) else { return false };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else { return false };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else { return false };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else { return false };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else { return false };
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, argon2::Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params);
    if argon.hash_password_into_with_memory(presented.as_bytes(), salt, &mut out, &mut memory[..blocks]).is_err() {
        return false;
    }
    out.ct_eq(expected.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawgate_protocol::connect::parse_connect_params;
    use ed25519_dalek::{Signer, SigningKey};
    use serde_json::json;

    /// A 60 s window and a 30 s lockout after `max_attempts` failures.
    fn policy(max_attempts: u32, exempt_loopback: bool) -> RateLimitSettings {
        RateLimitSettings {
            max_attempts,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(30),
            exempt_loopback,
        }
    }

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
        let policy = policy(3, false);
        let mut l = FailedAuthLimiter::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        assert!(l.record_failure(ip, &policy, t0).lockout.is_none());
        assert!(l.record_failure(ip, &policy, t0).lockout.is_none());
        assert!(l.record_failure(ip, &policy, t0).lockout.is_some());
        assert!(l.check(ip, &policy, t0 + Duration::from_secs(1)).is_err());
        assert!(l.check(ip, &policy, t0 + Duration::from_secs(31)).is_ok());
    }

    #[test]
    fn loopback_is_one_bucket_and_ipv6_is_keyed_by_its_64() {
        let policy = policy(2, false);
        let mut l = FailedAuthLimiter::default();
        let t0 = Instant::now();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        l.record_failure(ip("127.0.0.1"), &policy, t0);
        assert!(l.record_failure(ip("127.9.8.7"), &policy, t0).lockout.is_some());
        for other in ["127.0.0.2", "::1", "::ffff:127.0.0.3"] {
            assert!(l.check(ip(other), &policy, t0).is_err(), "{other} shares the loopback bucket");
        }
        assert!(l.check(ip("10.0.0.2"), &policy, t0).is_ok());
        l.record_failure(ip("2001:db8:1:2::1"), &policy, t0);
        l.record_failure(ip("2001:db8:1:2:ffff::9"), &policy, t0);
        assert!(l.check(ip("2001:db8:1:2::77"), &policy, t0).is_err(), "same /64");
        assert!(l.check(ip("2001:db8:1:3::1"), &policy, t0).is_ok(), "another /64");
        l.record_success(ip("127.0.0.1"));
        assert!(l.check(ip("127.0.0.1"), &policy, t0).is_err(), "a local success does not forgive other local guesses");
    }

    #[test]
    fn attempts_are_counted_before_they_are_verified() {
        let policy = policy(3, false);
        let limiter = Mutex::new(FailedAuthLimiter::default());
        let peer = Peer::from("10.1.2.3".parse::<IpAddr>().unwrap());
        // Sixty concurrent guesses: only the budget's worth get to be verified.
        let mut in_flight = Vec::new();
        let mut refused = 0;
        for _ in 0..60 {
            match begin_attempt(&limiter, peer, &policy) {
                Ok(a) => in_flight.push(a),
                Err(_) => refused += 1,
            }
        }
        assert_eq!((in_flight.len(), refused), (3, 57));
        // They all fail (one is dropped undecided, as when the client goes away): locked out.
        let last = in_flight.pop().unwrap();
        for a in in_flight {
            a.failed();
        }
        drop(last);
        assert!(limiter.lock().check(peer, &policy, Instant::now()).is_err());
        // A slot that was never verified gives its attempt back.
        let other = Peer::from("10.9.9.9".parse::<IpAddr>().unwrap());
        for _ in 0..10 {
            begin_attempt(&limiter, other, &policy).unwrap().abandoned();
        }
        assert!(begin_attempt(&limiter, other, &policy).is_ok());
    }

    #[tokio::test]
    async fn the_password_gate_verifies_argon2_in_bounded_slots() {
        let hash = hash_password("hunter2").unwrap();
        let configured = PasswordSecret::from_config(hash);
        let gate = PasswordGate::default();
        assert_eq!(gate.verify("hunter2", &configured).await, PasswordCheck::Match);
        assert_eq!(gate.verify("hunter3", &configured).await, PasswordCheck::Mismatch);
        let checks: Vec<_> = (0..8).map(|_| gate.verify("wrong", &configured)).collect();
        let outcomes = futures_util::future::join_all(checks).await;
        assert_eq!(outcomes.iter().filter(|o| **o == PasswordCheck::Busy).count(), 8 - MAX_CONCURRENT_PASSWORD_CHECKS);
        assert_eq!(gate.verify("hunter2", &configured).await, PasswordCheck::Match, "slots come back");
        assert_eq!(gate.verify("hunter2", &PasswordSecret::from_config("hunter2".into())).await, PasswordCheck::Match);
    }

    #[test]
    fn the_loopback_exemption_does_not_cover_a_same_host_proxy() {
        let policy = policy(2, true);
        let mut l = FailedAuthLimiter::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(l.record_failure(ip, &policy, t0).lockout.is_none(), "a direct local client is exempt");
        }
        assert!(l.check(ip, &policy, t0).is_ok());
        let proxied = Peer { ip, forwarded: true };
        assert!(!proxied.is_direct_loopback());
        assert!(l.record_failure(proxied, &policy, t0).lockout.is_none());
        assert!(l.record_failure(proxied, &policy, t0).lockout.is_some(), "clients behind a proxy are counted");
        assert!(l.check(proxied, &policy, t0).is_err());
    }
}
