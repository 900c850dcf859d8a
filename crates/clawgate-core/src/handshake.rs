//! Admission of a `connect`: protocol negotiation, Origin check, failed-auth lockout, shared
//! secret, device identity, pairing and the scope grant (contract §3.3–3.6, §4.4).
//!
//! The result is either an [`Admission`] (what `hello-ok.auth` reports and what every later
//! authorization uses) or a [`Rejection`] carrying the exact error shape and close code.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::json;

use clawgate_protocol::connect::{ConnectParams, roles};
use clawgate_protocol::{ErrorShape, close, codes, details};
use clawgate_store::{DeviceStore, DeviceTokenStore, NewPairingRequest, PairedDevice, PairingStore};

use crate::access_tokens::{AccessTokens, ConnAccess};
use crate::auth::{self, FailedAuthLimiter, PasswordGate, Peer, VerifiedDevice};
use crate::broadcast::AuthKind;
use crate::pairing::PairingService;
use crate::settings::{AuthMode, GatewaySettings, SharedSettings};
use crate::time::now_ms;

/// Who may connect: the shared-secret checks, device proofs, pairing and the failed-auth
/// limiter, for WebSocket connects and HTTP bearers alike. Cheap to clone: clones share the
/// limiter, the password gate and the pairing lock.
#[derive(Debug, Clone)]
pub struct AuthService {
    inner: Arc<AuthInner>,
}

#[derive(Debug)]
struct AuthInner {
    /// The settings in force: auth mode, secrets, lockout policy, allowed origins.
    settings: SharedSettings,
    /// Pairing requests (and the lock that orders them with approvals); its store holds the
    /// paired devices and their tokens.
    pairing: PairingService,
    /// Failed-auth lockout per address bucket (gateway token/password, device proofs, pairing
    /// attempts without credentials), shared by WS connects and HTTP bearers.
    limiter: Mutex<FailedAuthLimiter>,
    /// Failed chat-platform webhook secrets per address bucket: a different secret with its own
    /// budget, so a webhook guesser does not lock the operator's connects out.
    webhook_failures: Mutex<FailedAuthLimiter>,
    /// Bounds concurrent argon2 password checks (and the memory they take).
    password_gate: PasswordGate,
    /// Scoped access tokens (`cgt_…`), verified against the same store as devices.
    access_tokens: AccessTokens,
}

impl AuthService {
    /// Admission over these settings and pairing requests (and devices), with fresh limiters.
    pub fn new(settings: SharedSettings, pairing: PairingService) -> Self {
        let access_tokens = AccessTokens::new(pairing.store().clone());
        Self {
            inner: Arc::new(AuthInner {
                settings,
                access_tokens,
                pairing,
                limiter: Mutex::new(FailedAuthLimiter::default()),
                webhook_failures: Mutex::new(FailedAuthLimiter::default()),
                password_gate: PasswordGate::default(),
            }),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> Arc<GatewaySettings> {
        self.inner.settings.get()
    }

    /// The failed-auth limiter of gateway secrets (WS connects and HTTP bearers).
    pub fn limiter(&self) -> &Mutex<FailedAuthLimiter> {
        &self.inner.limiter
    }

    /// The failed-auth limiter of chat-platform webhook secrets.
    pub fn webhook_failures(&self) -> &Mutex<FailedAuthLimiter> {
        &self.inner.webhook_failures
    }

    /// Scoped access tokens: what `tokens.*` manage and what admission verifies.
    pub fn access_tokens(&self) -> &AccessTokens {
        &self.inner.access_tokens
    }

    /// The bounded argon2 verifier.
    pub fn password_gate(&self) -> &PasswordGate {
        &self.inner.password_gate
    }

    /// One exchange of failed-auth lockouts with the other gateways of a shared database: the
    /// lockouts this gateway started are written, and those the others wrote are applied here.
    /// Counting stays per gateway; a lockout started anywhere holds everywhere. `written`
    /// remembers what was written already (the caller keeps it between exchanges).
    pub async fn share_lockouts(
        &self,
        written: &mut HashMap<IpAddr, Instant>,
    ) -> Result<(), clawgate_store::StoreError> {
        use clawgate_store::LockoutStore;
        let store = self.inner.pairing.store();
        let (now, now_ms) = (Instant::now(), now_ms());
        written.retain(|_, until| *until > now);
        let mine = self.inner.limiter.lock().lockouts(now);
        for (bucket, until) in mine {
            if written.get(&bucket).is_some_and(|w| *w >= until) {
                continue;
            }
            let until_ms = now_ms.saturating_add(i64::try_from((until - now).as_millis()).unwrap_or(i64::MAX));
            store.share_lockout(&bucket.to_string(), until_ms).await?;
            written.insert(bucket, until);
        }
        // Bounded: a flood of lockouts costs one page per exchange.
        let shared = store.active_lockouts(now_ms, 10_000).await?;
        let mut limiter = self.inner.limiter.lock();
        for (bucket, until_ms) in shared {
            let Ok(ip) = bucket.parse::<IpAddr>() else { continue };
            let until = now + Duration::from_millis(u64::try_from(until_ms - now_ms).unwrap_or(0));
            limiter.lock_out(ip, until, now);
            // Known to the store already: not written back.
            written.entry(ip).and_modify(|w| *w = (*w).max(until)).or_insert(until);
        }
        Ok(())
    }

    /// A successful authentication clears the address's failure count.
    pub fn clear_failures(&self, ip: IpAddr) {
        self.inner.limiter.lock().record_success(ip);
    }

    /// Decide whether a `connect` is admitted: an [`Admission`] (what `hello-ok.auth` reports),
    /// or the [`Rejection`] to answer and close with.
    pub async fn admit(&self, meta: &ConnMeta, p: &ConnectParams) -> Result<Admission, Rejection> {
        admit(&self.inner, meta, p).await
    }
}

/// Facts about the socket that admission depends on.
#[derive(Debug, Clone)]
pub struct ConnMeta {
    /// Connection id.
    pub conn_id: String,
    /// Peer address.
    pub remote_ip: IpAddr,
    /// `Origin` header of the upgrade, if any.
    pub origin: Option<String>,
    /// `Host` header of the upgrade, if any.
    pub host: Option<String>,
    /// `x-openclaw-scopes` header of the upgrade, if any (caps granted scopes).
    pub scopes_header: Option<String>,
    /// A proxy's forwarding header was on the upgrade (see [`crate::auth::Peer`]).
    pub forwarded: bool,
    /// The nonce sent in `connect.challenge`.
    pub nonce: String,
}

impl ConnMeta {
    /// The peer as the auth checks see it.
    pub fn peer(&self) -> Peer {
        Peer { ip: self.remote_ip, forwarded: self.forwarded }
    }
}

/// A successful admission.
#[derive(Debug, Clone)]
pub struct Admission {
    /// Granted role.
    pub role: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// `hello-ok.auth.method`.
    pub method: &'static str,
    /// How it authenticated.
    pub auth_kind: AuthKind,
    /// The proven device.
    pub device: Option<VerifiedDevice>,
    /// Device token for `hello-ok.auth.deviceToken` and when it was issued.
    pub device_token: Option<(String, i64)>,
    /// The access token's restrictions, when the client presented one.
    pub access: Option<Arc<ConnAccess>>,
}

/// A refused connect: the `res` error, then the close.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// The error sent in the `res`.
    pub error: ErrorShape,
    /// Close code.
    pub close_code: u16,
    /// Close reason (truncated to 123 bytes when sent).
    pub close_reason: String,
}

impl Rejection {
    /// Close 1008 with the error's message as the reason (the common case).
    pub fn policy(error: ErrorShape) -> Self {
        let reason = error.message.clone();
        Self { error, close_code: close::POLICY_VIOLATION, close_reason: reason }
    }
}

fn auth_failure(code: &str, reason: &str, message: &str, next: &str, retry_with_device_token: bool) -> Rejection {
    Rejection::policy(ErrorShape::invalid_request(message).with_details(json!({
        "code": code,
        "authReason": reason,
        "canRetryWithDeviceToken": retry_with_device_token,
        "recommendedNextStep": next,
    })))
}

/// Whether a browser `Origin` may drive the gateway: open a control connection, or POST to the
/// HTTP API. The one rule for both (class closed: DNS rebinding and cross-site requests). A page
/// is trusted only when its origin is
/// - listed in `gateway.controlUi.allowedOrigins` (or `*`), or
/// - a loopback origin (`localhost`, `*.localhost`, `127.x.y.z`, `[::1]`) on a loopback connection.
///
/// An origin equal to the request's `Host` header is *not* trusted by default: after DNS rebinding
/// a hostile page at `http://evil.example:P` reaches 127.0.0.1 with `Host: evil.example:P`, so the
/// two always match. `gateway.controlUi.dangerouslyAllowHostHeaderOriginFallback` (`host_fallback`)
/// turns that fallback back on for deployments behind a name that has no other protection.
pub fn origin_allowed(
    origin: &str,
    host: Option<&str>,
    remote_is_loopback: bool,
    allowed: &[String],
    host_fallback: bool,
) -> bool {
    let origin_trimmed = origin.trim_end_matches('/');
    if allowed.iter().any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin_trimmed)) {
        return true;
    }
    let Some((scheme, rest)) = origin_trimmed.split_once("://") else { return false };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return false;
    }
    if host_fallback
        && let Some(host) = host
        && rest.eq_ignore_ascii_case(host)
    {
        return true;
    }
    let hostname = if let Some(stripped) = rest.strip_prefix('[') {
        stripped.split(']').next().unwrap_or("")
    } else {
        rest.split(':').next().unwrap_or("")
    };
    let hostname = hostname.to_ascii_lowercase();
    let loopback_origin = hostname == "localhost"
        || hostname.ends_with(".localhost")
        || hostname.parse::<IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false);
    loopback_origin && remote_is_loopback
}

/// Decide whether a `connect` is admitted.
async fn admit(svc: &AuthInner, meta: &ConnMeta, p: &ConnectParams) -> Result<Admission, Rejection> {
    let settings = svc.settings.get();
    let role = p.role().to_owned();
    if !p.supports_protocol() {
        let error = ErrorShape::invalid_request(close::REASON_PROTOCOL_MISMATCH).with_details(json!({
            "code": details::PROTOCOL_MISMATCH,
            "clientMinProtocol": p.min_protocol,
            "clientMaxProtocol": p.max_protocol,
            "expectedProtocol": clawgate_protocol::PROTOCOL_VERSION,
            "minimumProbeProtocol": clawgate_protocol::MIN_PROBE_PROTOCOL,
        }));
        return Err(Rejection {
            error,
            close_code: close::PROTOCOL_ERROR,
            close_reason: close::REASON_PROTOCOL_MISMATCH.into(),
        });
    }
    if role != roles::OPERATOR && role != roles::NODE {
        return Err(Rejection {
            error: ErrorShape::invalid_request(format!("invalid role: {role}")),
            close_code: close::POLICY_VIOLATION,
            close_reason: close::REASON_INVALID_ROLE.into(),
        });
    }
    if let Some(origin) = &meta.origin
        && !origin_allowed(
            origin,
            meta.host.as_deref(),
            meta.peer().is_direct_loopback(),
            &settings.allowed_origins,
            settings.allow_host_header_origin,
        )
    {
        tracing::warn!(origin = %origin, ip = %meta.remote_ip, "refusing a browser origin not in gateway.controlUi.allowedOrigins");
        let message = "origin not allowed (open the Control UI from the gateway host or allow it in gateway.controlUi.allowedOrigins)";
        return Err(Rejection::policy(
            ErrorShape::invalid_request(message)
                .with_details(json!({"code": details::CONTROL_UI_ORIGIN_NOT_ALLOWED, "reason": "origin not allowed"})),
        ));
    }
    // An access token (`cgt_…` in `auth.token`) is its own path: never compared with the shared
    // secret, never a device token.
    if let Some(token) = p.auth.as_ref().and_then(|a| a.token.as_deref())
        && AccessTokens::looks_like_token(token)
    {
        return admit_access_token(svc, meta, p, token, &settings).await;
    }
    // The lockout is consulted only after the cheap proofs: a paired device that proves its key
    // and presents its device token is admitted even while its address bucket is locked out
    // (issue 10, defect 9 — the bucket is all of loopback, so a local guesser would otherwise
    // lock the operator's own CLI out). Everything else from a locked bucket is refused
    // unverified.
    let locked = lockout(svc, meta.peer(), &settings).err();

    let device = match auth::verify_device(p, &meta.nonce, now_ms()) {
        Ok(d) => d,
        Err(e) => {
            if let Some(wait) = locked {
                return Err(rate_limited(wait));
            }
            record_failure(svc, meta.peer(), &settings);
            return Err(Rejection::policy(
                ErrorShape::invalid_request(e.message).with_details(json!({"code": e.code, "reason": e.reason})),
            ));
        }
    };
    let auth = p.auth.clone().unwrap_or_default();
    let token_candidate = auth.device_token.clone().or_else(|| auth.token.clone());

    if let Some(wait) = locked {
        if let (Some(device), Some(token)) = (&device, &token_candidate)
            && let Some(admission) = device_token_admission(svc, meta, p, device, token).await?
        {
            return Ok(admission);
        }
        return Err(rate_limited(wait));
    }

    if let Some(admission) = worker_admission(p, &settings) {
        return Ok(admission);
    }

    // The shared-secret attempt is counted before it is verified; it stays undecided until we
    // know whether the token was this device's token after all.
    let (shared, attempt) = check_shared_secret(svc, meta.peer(), p, &settings).await;
    match (shared, device) {
        (SharedSecret::Throttled(wait), _) => Err(rate_limited(wait)),
        (SharedSecret::Valid(method), None) => admit_without_device(p, meta, &settings, method),
        (SharedSecret::Valid(method), Some(device)) => {
            // Only a direct local client: behind a same-host reverse proxy every remote browser
            // would come from 127.0.0.1.
            let silent = meta.peer().is_direct_loopback() && settings.auto_approve_loopback;
            admit_device(svc, meta, p, device, method, silent, true).await
        }
        (shared, Some(device)) => {
            // A device may authenticate with its device token (sent as `auth.deviceToken`, or as
            // `auth.token` by clients such as openclaw-node), or by being paired already.
            if let Some(token) = token_candidate {
                if let Some(admission) = device_token_admission(svc, meta, p, &device, &token).await? {
                    if let Some(attempt) = attempt {
                        attempt.succeeded();
                    }
                    return Ok(admission);
                }
                // A wrong shared secret is counted by its attempt (dropped below); a wrong device
                // token alone is counted here.
                if attempt.is_none() {
                    record_failure(svc, meta.peer(), &settings);
                }
                return Err(match shared {
                    SharedSecret::Mismatch { password: true } => password_mismatch(),
                    _ if auth.device_token.is_some() => auth_failure(
                        details::AUTH_DEVICE_TOKEN_MISMATCH,
                        "device_token_mismatch",
                        "unauthorized: device token mismatch (rotate/reissue device token)",
                        "update_auth_credentials",
                        false,
                    ),
                    _ => token_mismatch(true),
                });
            }
            if let SharedSecret::Mismatch { password: true } = shared {
                return Err(password_mismatch());
            }
            // No credential at all: a paired device is admitted on its signature; an unknown one
            // gets a pairing request (never silently: nothing vouches for it).
            admit_device(svc, meta, p, device, "device-token", false, false).await
        }
        (SharedSecret::Missing, None) if p.auth.is_none() => Err(Rejection::policy(
            ErrorShape::new(codes::NOT_PAIRED, "device identity required")
                .with_details(json!({"code": details::DEVICE_IDENTITY_REQUIRED})),
        )),
        (SharedSecret::Missing, None) => {
            record_failure(svc, meta.peer(), &settings);
            Err(if settings.auth_mode == AuthMode::Password {
                auth_failure(
                    details::AUTH_PASSWORD_MISSING,
                    "password_missing",
                    "unauthorized: gateway password missing (set gateway.auth.password on the client)",
                    "update_auth_configuration",
                    false,
                )
            } else {
                auth_failure(
                    details::AUTH_TOKEN_MISSING,
                    "token_missing",
                    "unauthorized: gateway token missing (set gateway.auth.token on the client or pair the device)",
                    "update_auth_configuration",
                    false,
                )
            })
        }
        // Counted by the attempt, which is dropped undecided here.
        (SharedSecret::Mismatch { password }, None) => {
            Err(if password { password_mismatch() } else { token_mismatch(false) })
        }
        (SharedSecret::NotConfigured, None) => Err(auth_failure(
            details::AUTH_TOKEN_NOT_CONFIGURED,
            "token_missing_config",
            "unauthorized: gateway auth is not configured (set gateway.auth.token or gateway.auth.password)",
            "review_auth_configuration",
            false,
        )),
    }
}

/// Admit a client by a scoped access token: the scopes it asks for that the token covers (never
/// more), and the token's restrictions on the connection. A wrong, unknown or revoked token is
/// the ordinary token-mismatch failure, counted by the failed-auth limiter.
async fn admit_access_token(
    svc: &AuthInner,
    meta: &ConnMeta,
    p: &ConnectParams,
    token: &str,
    settings: &GatewaySettings,
) -> Result<Admission, Rejection> {
    if let Err(wait) = lockout(svc, meta.peer(), settings) {
        return Err(rate_limited(wait));
    }
    let access = match svc.access_tokens.verify(token).await {
        Ok(Some(access)) => access,
        Ok(None) => {
            record_failure(svc, meta.peer(), settings);
            return Err(token_mismatch(false));
        }
        Err(e) => return Err(internal(e)),
    };
    if p.role() != roles::OPERATOR {
        return Err(Rejection::policy(ErrorShape::invalid_request(format!(
            "unauthorized role: {} (access tokens are for operators)",
            p.role()
        ))));
    }
    svc.limiter.lock().record_success(meta.remote_ip);
    let scopes = crate::access_tokens::granted_scopes(&requested_scopes(p), &access.scopes);
    tracing::info!(token = %access.token_id, name = %access.name, "connect with an access token");
    Ok(Admission {
        role: roles::OPERATOR.to_owned(),
        scopes: cap_by_header(scopes, meta),
        method: "token",
        auth_kind: AuthKind::AccessToken,
        device: None,
        device_token: None,
        access: Some(access),
    })
}

fn rate_limited(wait: std::time::Duration) -> Rejection {
    let mut r = auth_failure(
        details::AUTH_RATE_LIMITED,
        "rate_limited",
        "unauthorized: too many failed authentication attempts (retry later)",
        "wait_then_retry",
        false,
    );
    r.error = r.error.retry(Some(wait.as_millis().max(1) as u64));
    r
}

/// Admit a proven device by its device token: `Ok(None)` when the token is not this device's
/// token for this role.
async fn device_token_admission(
    svc: &AuthInner,
    meta: &ConnMeta,
    p: &ConnectParams,
    device: &VerifiedDevice,
    token: &str,
) -> Result<Option<Admission>, Rejection> {
    let role = p.role().to_owned();
    match svc.pairing.store().verify(&device.device_id, token).await {
        Ok(Some(record)) if record.role == role => {
            let requested = requested_scopes(p);
            if !clawgate_protocol::scopes::all_covered(&requested, &record.scopes) {
                return Err(auth_failure(
                    details::AUTH_SCOPE_MISMATCH,
                    "scope_mismatch",
                    "unauthorized: device token does not cover the requested scopes (re-pair the device)",
                    "review_auth_configuration",
                    false,
                ));
            }
            svc.limiter.lock().record_success(meta.remote_ip);
            let _ = svc.pairing.store().touch_last_seen(&device.device_id, now_ms()).await;
            Ok(Some(Admission {
                role,
                scopes: cap_by_header(requested, meta),
                method: "device-token",
                auth_kind: AuthKind::Device,
                device: Some(device.clone()),
                device_token: Some((token.to_owned(), record.issued_at_ms)),
                access: None,
            }))
        }
        Ok(_) => Ok(None),
        Err(e) => Err(internal(e)),
    }
}

/// The scopes a connect asks for that exist; the only form of the request any grant sees.
fn requested_scopes(p: &ConnectParams) -> Vec<String> {
    clawgate_protocol::scopes::known_only(p.requested_scopes())
}

fn token_mismatch(with_device: bool) -> Rejection {
    auth_failure(
        details::AUTH_TOKEN_MISMATCH,
        "token_mismatch",
        "unauthorized: gateway token mismatch (use this gateway's gateway.auth.token or pair the device)",
        "update_auth_credentials",
        with_device,
    )
}

fn password_mismatch() -> Rejection {
    auth_failure(
        details::AUTH_PASSWORD_MISMATCH,
        "password_mismatch",
        "unauthorized: gateway password mismatch (use this gateway's gateway.auth.password)",
        "update_auth_credentials",
        false,
    )
}

fn internal(e: impl std::fmt::Display) -> Rejection {
    tracing::error!(error = %e, "storage failure during connect");
    Rejection {
        error: ErrorShape::unavailable("gateway storage unavailable; retry shortly").retry(Some(1000)),
        close_code: close::TRY_AGAIN_LATER,
        close_reason: "gateway storage unavailable".into(),
    }
}

fn lockout(svc: &AuthInner, peer: Peer, s: &GatewaySettings) -> Result<(), std::time::Duration> {
    svc.limiter.lock().check(peer, &s.rate_limit, Instant::now())
}

fn record_failure(svc: &AuthInner, peer: Peer, s: &GatewaySettings) {
    let recorded = svc.limiter.lock().record_failure(peer, &s.rate_limit, Instant::now());
    if let Some(lock) = recorded.lockout {
        let bucket = auth::limiter_bucket(peer.ip);
        tracing::warn!(%bucket, lockout_ms = lock.as_millis() as u64, "too many failed authentication attempts; locking out");
    }
}

enum SharedSecret {
    Valid(&'static str),
    Missing,
    Mismatch {
        password: bool,
    },
    NotConfigured,
    /// Locked out, or no verification slot free: not verified.
    Throttled(std::time::Duration),
}

/// Check the shared secret. A presented secret is counted in the failed-auth limiter *before* it
/// is verified (issue 10, defect 3: checking the lockout first and recording after let any
/// number of concurrent guesses through, each verified with 19 MiB of argon2 memory); a right
/// one settles its attempt at once, a wrong one is handed back undecided (dropping it counts
/// the failure).
async fn check_shared_secret<'g>(
    svc: &'g AuthInner,
    peer: Peer,
    p: &ConnectParams,
    s: &GatewaySettings,
) -> (SharedSecret, Option<auth::Attempt<'g>>) {
    let auth = p.auth.clone().unwrap_or_default();
    let (given, password) = match s.auth_mode {
        AuthMode::None => return (SharedSecret::Valid("none"), None),
        AuthMode::Token if s.token.is_none() => return (SharedSecret::NotConfigured, None),
        AuthMode::Password if s.password.is_none() => return (SharedSecret::NotConfigured, None),
        AuthMode::Token => (auth.token, false),
        // Browser clients send the secret as both token and password.
        AuthMode::Password => (auth.password, true),
    };
    let Some(given) = given else { return (SharedSecret::Missing, None) };
    let attempt = match auth::begin_attempt(&svc.limiter, peer, &s.rate_limit) {
        Ok(a) => a,
        Err(wait) => return (SharedSecret::Throttled(wait), None),
    };
    let ok = match (&s.token, &s.password) {
        (Some(want), _) if !password => auth::secrets_match(&given, want),
        (_, Some(configured)) => match svc.password_gate.verify(&given, configured).await {
            auth::PasswordCheck::Match => true,
            auth::PasswordCheck::Mismatch => false,
            auth::PasswordCheck::Busy => {
                attempt.abandoned();
                return (SharedSecret::Throttled(std::time::Duration::from_secs(1)), None);
            }
        },
        _ => false,
    };
    if ok {
        attempt.succeeded();
        (SharedSecret::Valid(if password { "password" } else { "token" }), None)
    } else {
        (SharedSecret::Mismatch { password }, Some(attempt))
    }
}

/// A ComfyUI worker (`clawgate worker`): an operator connect whose `auth.token` is one of
/// `comfy.workerTokens`. It gets scope `comfy.worker` alone, whatever it asked for, so it may
/// call the `comfy.worker.*` methods and nothing else. Any other token goes on to the
/// shared-secret check (a wrong one is refused and counted there).
fn worker_admission(p: &ConnectParams, s: &GatewaySettings) -> Option<Admission> {
    if p.role() != roles::OPERATOR || s.worker_tokens.is_empty() {
        return None;
    }
    let given = p.auth.as_ref()?.token.as_deref()?;
    // Every configured token is compared, so the time taken does not say which one matched.
    let matched = s.worker_tokens.iter().fold(false, |hit, want| auth::secrets_match(given, want) | hit);
    matched.then(|| Admission {
        role: roles::OPERATOR.to_owned(),
        scopes: vec![clawgate_protocol::scopes::WORKER.to_owned()],
        method: "worker-token",
        auth_kind: AuthKind::SharedSecret,
        device: None,
        device_token: None,
        access: None,
    })
}

/// Scopes requested by a client are capped by the `x-openclaw-scopes` upgrade header.
fn cap_by_header(scopes: Vec<String>, meta: &ConnMeta) -> Vec<String> {
    match &meta.scopes_header {
        None => scopes,
        Some(h) => {
            let allowed: Vec<&str> = h.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
            scopes.into_iter().filter(|s| allowed.contains(&s.as_str())).collect()
        }
    }
}

fn admit_without_device(
    p: &ConnectParams,
    meta: &ConnMeta,
    s: &GatewaySettings,
    method: &'static str,
) -> Result<Admission, Rejection> {
    let role = p.role();
    if role == roles::NODE {
        return Err(Rejection::policy(
            ErrorShape::new(codes::NOT_PAIRED, "device identity required")
                .with_details(json!({"code": details::DEVICE_IDENTITY_REQUIRED})),
        ));
    }
    let is_control_ui = matches!(p.client.id.as_str(), "openclaw-control-ui" | "webchat-ui");
    if is_control_ui && s.auth_mode != AuthMode::None {
        return Err(Rejection::policy(
            ErrorShape::invalid_request("control ui requires device identity (use HTTPS or localhost secure context)")
                .with_details(json!({"code": details::CONTROL_UI_DEVICE_IDENTITY_REQUIRED})),
        ));
    }
    let local = meta.peer().is_direct_loopback() && meta.origin.is_none();
    let trusted_local_client = local
        && ((p.client.id == "cli" && p.client.mode == "cli")
            || (p.client.id == "gateway-client" && p.client.mode == "backend"));
    let scopes = if s.auth_mode == AuthMode::None || trusted_local_client { requested_scopes(p) } else { Vec::new() };
    Ok(Admission {
        role: role.to_owned(),
        scopes: cap_by_header(scopes, meta),
        method,
        auth_kind: if s.auth_mode == AuthMode::None { AuthKind::None } else { AuthKind::SharedSecret },
        device: None,
        device_token: None,
        access: None,
    })
}

/// Most pairing requests that may wait for an operator at once, and most from one address
/// bucket. A request is stored and broadcast before anyone has vouched for its sender (a fresh
/// Ed25519 key costs nothing), so both are bounded (issue 10, defect 5). Past a bound, new
/// requests are refused with a retryable error until pending ones are approved, rejected or
/// expire (after 24 hours); a device already waiting keeps its request.
pub const MAX_PENDING_PAIRING_REQUESTS: usize = 64;
/// See [`MAX_PENDING_PAIRING_REQUESTS`].
pub const MAX_PENDING_PAIRING_REQUESTS_PER_BUCKET: usize = 8;

/// Refuse a new pairing request when the pending ones are at a bound. A new request nothing
/// vouches for counts as a failed attempt of its address bucket (a device already waiting may
/// reconnect freely).
async fn pairing_room(svc: &AuthInner, meta: &ConnMeta, device_id: &str, vouched: bool) -> Result<(), Rejection> {
    // Bounded by the caps themselves, so listing is cheap.
    let pending = svc.pairing.store().list_pending().await.map_err(internal)?;
    if pending.iter().any(|r| r.device_id == device_id) {
        return Ok(());
    }
    if !vouched {
        record_failure(svc, meta.peer(), &svc.settings.get());
    }
    let bucket = auth::limiter_bucket(meta.remote_ip);
    let from_bucket = pending
        .iter()
        .filter(|r| {
            r.remote_ip.as_deref().and_then(|ip| ip.parse::<IpAddr>().ok()).map(auth::limiter_bucket) == Some(bucket)
        })
        .count();
    let full = if pending.len() >= MAX_PENDING_PAIRING_REQUESTS {
        Some("the gateway")
    } else if from_bucket >= MAX_PENDING_PAIRING_REQUESTS_PER_BUCKET {
        Some("this address")
    } else {
        None
    };
    let Some(whose) = full else { return Ok(()) };
    tracing::warn!(%bucket, pending = pending.len(), from_bucket, "pairing request refused: too many pending requests");
    let message = format!(
        "too many pending pairing requests for {whose}; approve or reject pending ones (clawgate devices list) or retry later"
    );
    Err(Rejection {
        error: ErrorShape::unavailable(message.clone())
            .with_details(json!({"code": details::PAIRING_REQUIRED, "reason": "too-many-pending-requests"}))
            .retry(Some(60_000)),
        close_code: close::TRY_AGAIN_LATER,
        close_reason: message,
    })
}

/// Admit a device with a valid signature: paired and covering the request → in; otherwise a
/// pairing request, approved on the spot when `silent`. `vouched`: a credential (shared secret)
/// backs the connect; without one, a new pairing request is bounded ([`pairing_room`]) and
/// counts as a failed attempt in the failed-auth limiter, so spraying fresh keys locks the
/// sprayer out.
async fn admit_device(
    svc: &AuthInner,
    meta: &ConnMeta,
    p: &ConnectParams,
    device: VerifiedDevice,
    method: &'static str,
    silent: bool,
    vouched: bool,
) -> Result<Admission, Rejection> {
    let role = p.role().to_owned();
    let requested = requested_scopes(p);
    let paired = svc.pairing.store().get_paired(&device.device_id).await.map_err(internal)?;
    let reason = pairing_reason(paired.as_ref(), &device, p, &role, &requested);
    if let Some(reason) = reason {
        let _pairing = svc.pairing.lock().lock().await;
        if !silent {
            pairing_room(svc, meta, &device.device_id, vouched).await?;
        }
        let new = NewPairingRequest {
            device_id: device.device_id.clone(),
            public_key: device.public_key.clone(),
            display_name: p.client.display_name.clone(),
            platform: Some(p.client.platform.clone()),
            device_family: p.client.device_family.clone(),
            client_id: Some(p.client.id.clone()),
            client_mode: Some(p.client.mode.clone()),
            role: role.clone(),
            scopes: requested.clone(),
            remote_ip: Some(meta.remote_ip.to_string()),
            reason: reason.to_owned(),
        };
        let request = svc.pairing.request(&new, silent).await.map_err(internal)?;
        if silent {
            tracing::info!(device = %short(&device.device_id), client = %p.client.id, "paired device silently (loopback with valid credentials)");
        } else {
            let requirement = match reason {
                "role-upgrade" => "device is asking for a higher role than currently approved",
                "scope-upgrade" => "device is asking for more scopes than currently approved",
                "metadata-upgrade" => "device identity changed and must be re-approved",
                _ => "device is not approved yet",
            };
            let mut d = json!({
                "code": details::PAIRING_REQUIRED,
                "reason": reason,
                "requestId": request.request_id,
                "remediationHint": format!("approve it with: clawgate devices approve {}", request.request_id),
                "deviceId": device.device_id,
                "requestedRole": role,
                "requestedScopes": requested,
                "recommendedNextStep": "wait_then_retry",
                "retryable": true,
                "pauseReconnect": true,
            });
            if let Some(pd) = &paired {
                d["approvedRoles"] = json!(pd.roles);
                d["approvedScopes"] = json!(pd.scopes);
            }
            tracing::info!(device = %short(&device.device_id), request = %request.request_id, reason, "pairing required");
            let error = ErrorShape::new(codes::NOT_PAIRED, format!("pairing required: {requirement}")).with_details(d);
            return Err(Rejection {
                error,
                close_code: close::POLICY_VIOLATION,
                close_reason: format!("pairing required: {requirement} (requestId: {})", request.request_id),
            });
        }
    }
    let now = now_ms();
    let _ = svc.pairing.store().touch_last_seen(&device.device_id, now).await;
    let (token, record) =
        svc.pairing.store().issue(&device.device_id, &role, &requested, now).await.map_err(internal)?;
    Ok(Admission {
        role,
        scopes: cap_by_header(requested, meta),
        method,
        auth_kind: if method == "none" {
            AuthKind::None
        } else if method == "device-token" {
            AuthKind::Device
        } else {
            AuthKind::SharedSecret
        },
        device: Some(device),
        device_token: Some((token, record.issued_at_ms)),
        access: None,
    })
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Why a device must (re-)pair, or `None` when its record covers this connect.
fn pairing_reason(
    paired: Option<&PairedDevice>,
    device: &VerifiedDevice,
    p: &ConnectParams,
    role: &str,
    requested: &[String],
) -> Option<&'static str> {
    let Some(pd) = paired else { return Some("not-paired") };
    let norm = |s: Option<&str>| s.map(|v| v.trim().to_ascii_lowercase());
    if pd.public_key != device.public_key
        || (pd.platform.is_some() && norm(pd.platform.as_deref()) != norm(Some(&p.client.platform)))
        || (pd.device_family.is_some() && norm(pd.device_family.as_deref()) != norm(p.client.device_family.as_deref()))
    {
        return Some("metadata-upgrade");
    }
    if !pd.roles.iter().any(|r| r == role) {
        return Some("role-upgrade");
    }
    if !clawgate_protocol::scopes::all_covered(requested, &pd.scopes) {
        return Some("scope-upgrade");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_allowed_by_list_or_loopback() {
        let allowed = vec!["https://chat.example.com".to_owned()];
        assert!(origin_allowed("https://chat.example.com", None, false, &allowed, false));
        assert!(origin_allowed("http://127.0.0.1:5173", Some("127.0.0.1:18789"), true, &[], false));
        assert!(origin_allowed("http://localhost:3000", None, true, &[], false));
        assert!(origin_allowed("http://app.localhost:3000", None, true, &[], false));
        assert!(origin_allowed("http://[::1]:3000", None, true, &[], false));
        assert!(
            !origin_allowed("http://localhost:3000", None, false, &[], false),
            "loopback origin from a remote peer"
        );
        assert!(!origin_allowed("https://evil.example", Some("127.0.0.1:18789"), true, &allowed, false));
        assert!(!origin_allowed("null", None, true, &[], false));
        assert!(!origin_allowed("file://localhost", None, true, &[], false));
        assert!(!origin_allowed("http://localhost.evil.example", None, true, &[], false));
    }

    #[test]
    fn host_header_fallback_is_opt_in_because_dns_rebinding_matches_it() {
        // What a browser sends after evil.example was rebound to 127.0.0.1.
        let (origin, host) = ("http://evil.example:18789", Some("evil.example:18789"));
        assert!(!origin_allowed(origin, host, true, &[], false));
        assert!(origin_allowed(origin, host, true, &[], true));
        assert!(origin_allowed("http://gw.lan:18789", Some("gw.lan:18789"), false, &[], true));
        assert!(!origin_allowed("http://gw.lan:18789", Some("other:18789"), false, &[], true));
    }
}
