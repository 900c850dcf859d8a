//! Scoped access tokens and request rate limits (issue 15, item 3): least privilege for
//! backends that use the gateway as a client.
//!
//! An operator creates a token (`clawgate tokens create`, the `tokens.*` methods) limited to
//! scopes, session-key patterns (`compose:*`), method patterns (`agent`, `chat.*`) and a rate
//! (`60/min`). A client presenting it as `auth.token` in `connect` is admitted with at most the
//! token's scopes, and its connection carries the rest as a [`ConnAccess`]:
//!
//! - **methods** outside the token's patterns are `FORBIDDEN` ([`ConnAccess::check`]);
//! - **sessions**: a method naming a session (`sessionKey`, `key`, `keys`) outside the patterns
//!   is `FORBIDDEN`, a method that would fall back to a default session must name one, a
//!   listing (`sessions.list`) shows only matching sessions ([`ConnAccess::filter_result`]), and
//!   any other method that reads across sessions is refused outright — default deny, so a method
//!   added later leaks nothing until it is classified here ([`session_use`]);
//! - **events** about other sessions are never queued to it: the broadcaster asks
//!   [`ConnAccess::sees_event`] per connection, and an event that names no session reaches it
//!   only when it is one of the few that carry nothing of any session (`tick`, `shutdown`, the
//!   public `health`).
//!
//! Rate limits are token buckets ([`TokenBucket`]): one per connection
//! (`gateway.rateLimit.perConnection`) and one per token shared by all its connections, kept in a
//! bounded map ([`AccessTokens`]). When several gateways share one database
//! ([`AccessTokens::share_buckets`]) a token's bucket is a row of that database instead, so the
//! token's rate holds across all of them: one atomic statement per request of a rate-limited
//! token ([`clawgate_store::RateBucketStore`]); tokens without a rate and every connection's own
//! bucket never touch the store. Over a limit a request is answered `UNAVAILABLE` with
//! `retryable: true` and `retryAfterMs` — the shape upstream uses for "come back later"
//! (`gateway starting; retry shortly`); upstream has no per-request limiter of its own.
//!
//! Revocation ([`AccessTokens::revoke`]) flags the token's shared state, so its live
//! connections stop hearing events and are closed with 1008 at once, and a new connect fails at
//! the store. The other gateways of a cluster flag and close theirs on their next heartbeat
//! ([`AccessTokens::revoked_elsewhere`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::{Value, json};

use clawgate_protocol::methods::names as m;
use clawgate_protocol::{ErrorShape, codes};
use clawgate_store::{AccessTokenRecord, AccessTokenStore, BucketRate, NewAccessToken, RateBucketStore, RateTake};

use crate::error::CoreError;
use crate::gateway::Store;
use crate::session_key::SessionKey;
use crate::time::now_ms;

/// `details.code` of a request refused by a token's restrictions.
pub const DETAIL_ACCESS_TOKEN_RESTRICTED: &str = "ACCESS_TOKEN_RESTRICTED";
/// `details.code` of a request refused by a rate limit.
pub const DETAIL_RATE_LIMITED: &str = "RATE_LIMITED";
/// Close reason of a connection whose access token was revoked.
pub const REASON_TOKEN_REVOKED: &str = "access token revoked";

/// Most per-token states kept at once. A state in use by a live connection is never dropped;
/// past the bound the states of tokens nobody is connected with go first (their buckets refill
/// long before anyone could notice), so memory stays bounded however many tokens exist.
const MAX_TOKEN_STATES: usize = 1024;
/// Most patterns of each kind a token may hold, and the longest pattern: a token is small.
pub const MAX_PATTERNS: usize = 64;
/// See [`MAX_PATTERNS`].
pub const MAX_PATTERN_LEN: usize = 256;
/// Longest token name.
pub const MAX_NAME_LEN: usize = 64;
/// How long a request waits for the shared bucket's answer before the gateway's own bucket
/// decides (a database that does not answer must not stall the connection's reader).
const SHARED_TAKE_TIMEOUT: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------
// Patterns

/// Whether `text` matches `pattern`: `*` matches everything, `prefix*` every text starting with
/// `prefix`, anything else only itself. No other wildcard: what a pattern admits is obvious.
pub fn pattern_matches(pattern: &str, text: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => text.starts_with(prefix),
        None => pattern == text,
    }
}

/// Whether a session key matches a session pattern. A pattern written in full (`agent:main:…`)
/// is matched against the canonical key; a bare pattern (`compose:*`) against the part after
/// the agent (`agent:<any agent>:compose:…`), the way clients write keys.
///
/// `raw` is a key as a client wrote it: a bare key belongs to an agent chosen later, so it can
/// only satisfy bare patterns (deny when in doubt).
fn session_matches(patterns: &[String], raw: &str) -> bool {
    let raw = raw.trim();
    let canonical = if SessionKey::is_qualified(raw) { SessionKey::parse(raw, SessionKey::MAIN).ok() } else { None };
    patterns.iter().any(|p| match &canonical {
        Some(key) if p.starts_with("agent:") => pattern_matches(p, key.as_str()),
        Some(key) => pattern_matches(p, key.rest()),
        None => !p.starts_with("agent:") && !raw.starts_with("agent:") && pattern_matches(p, raw),
    })
}

/// Check patterns given to `tokens.create`: not empty, not too many, not too long, and `*` only
/// at the end.
pub fn check_patterns(kind: &str, patterns: &[String]) -> Result<(), CoreError> {
    if patterns.len() > MAX_PATTERNS {
        return Err(CoreError::invalid(format!("at most {MAX_PATTERNS} {kind} patterns")));
    }
    for p in patterns {
        if p.trim().is_empty() || p.len() > MAX_PATTERN_LEN || p != p.trim() {
            return Err(CoreError::invalid(format!(
                "invalid {kind} pattern {p:?}: 1 to {MAX_PATTERN_LEN} characters, no surrounding spaces"
            )));
        }
        if p.trim_end_matches('*').contains('*') {
            return Err(CoreError::invalid(format!(
                "invalid {kind} pattern {p:?}: '*' is only allowed at the end (prefix match)"
            )));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Rates

/// A rate: `requests` per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed in one window (also the burst).
    pub requests: u32,
    /// The window.
    pub per: Duration,
}

impl Rate {
    /// The per-connection default (`gateway.rateLimit.perConnection`): 60 000 requests a minute
    /// (a sustained 1 000 a second). High on purpose: the socket's backpressure already bounds
    /// what one client costs, benchmarks and busy backends send thousands a second, and a
    /// tighter limit belongs on the tokens handed to backends (`--rate`).
    pub const PER_CONNECTION_DEFAULT: Rate = Rate { requests: 60_000, per: Duration::from_secs(60) };

    /// Read `60/min`, `600/1m`, `10/s`, `5000/h`, `10/30s`.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let bad = || format!("invalid rate {text:?}: expected <requests>/<window>, e.g. 60/min, 600/1m or 10/s");
        let (n, window) = text.trim().split_once('/').ok_or_else(bad)?;
        let requests: u32 = n.trim().parse().map_err(|_| bad())?;
        let per = clawgate_config::rate_window_ms(window).map(Duration::from_millis).ok_or_else(bad)?;
        Rate::new(requests, per).map_err(|e| format!("invalid rate {text:?}: {e}"))
    }

    /// A checked rate: at least one request, a window of 1 s to 1 day.
    pub fn new(requests: u32, per: Duration) -> Result<Rate, String> {
        if requests == 0 {
            return Err("at least 1 request per window".into());
        }
        if per < Duration::from_secs(1) || per > Duration::from_secs(86_400) {
            return Err("the window must be from 1s to 1d".into());
        }
        Ok(Rate { requests, per })
    }

    /// `60/1m`-style text.
    pub fn display(&self) -> String {
        let secs = self.per.as_secs();
        let window = if secs.is_multiple_of(86_400) {
            format!("{}d", secs / 86_400)
        } else if secs.is_multiple_of(3_600) {
            format!("{}h", secs / 3_600)
        } else if secs.is_multiple_of(60) {
            format!("{}m", secs / 60)
        } else {
            format!("{secs}s")
        };
        format!("{}/{window}", self.requests)
    }
}

/// A token bucket: holds up to `requests` tokens, refilled continuously at `requests` per
/// `per`; each request takes one.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: Rate,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: Rate, now: Instant) -> Self {
        Self { rate, tokens: f64::from(rate.requests), last: now }
    }

    /// Take one token, or say how long until one is there.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let capacity = f64::from(self.rate.requests);
        let per_sec = capacity / self.rate.per.as_secs_f64();
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_sec).min(capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / per_sec))
        }
    }
}

fn rate_limited(whose: &str, rate: Rate, wait: Duration) -> ErrorShape {
    // Rounded up: a client retrying after exactly this long finds a token.
    let after_ms = (wait.as_micros().div_ceil(1000)).max(1) as u64;
    ErrorShape::unavailable(format!(
        "rate limit exceeded: {whose} allows {} requests (retry in {after_ms} ms)",
        rate.display()
    ))
    .with_details(json!({
        "code": DETAIL_RATE_LIMITED,
        "limit": whose,
        "requests": rate.requests,
        "windowMs": rate.per.as_millis() as u64,
    }))
    .retry(Some(after_ms))
}

// ---------------------------------------------------------------------------------------------
// Per-connection restrictions

/// Where a token's requests are counted.
#[derive(Debug)]
enum Bucket {
    /// One gateway: in memory, never a store round trip.
    Local(Mutex<TokenBucket>),
    /// Several gateways on one database: one row for all of them. While the store does not
    /// answer, this gateway's own bucket decides (the limit then holds per gateway, as it did
    /// before buckets were shared; nothing is unlimited).
    Shared {
        store: Store,
        /// The row: `token:<id>`.
        key: String,
        fallback: Mutex<TokenBucket>,
        /// The store failed last time (logged once per outage, not per request).
        failing: AtomicBool,
    },
}

impl Bucket {
    /// Take one token, or say how long until one is there.
    async fn take(&self, rate: Rate, now: Instant) -> Result<(), Duration> {
        let (store, key, fallback, failing) = match self {
            Bucket::Local(bucket) => return bucket.lock().take(now),
            Bucket::Shared { store, key, fallback, failing } => (store, key, fallback, failing),
        };
        let shared = BucketRate { requests: rate.requests, per_ms: rate.per.as_millis() as u64 };
        match tokio::time::timeout(SHARED_TAKE_TIMEOUT, store.take_rate_token(key, shared, now_us())).await {
            Ok(Ok(answer)) => {
                if failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(bucket = %key, "the shared rate bucket answers again");
                }
                match answer {
                    RateTake::Granted => Ok(()),
                    RateTake::Refused { retry_after_us } => {
                        Err(Duration::from_micros(u64::try_from(retry_after_us).unwrap_or(1)))
                    }
                }
            }
            failed => {
                if !failing.swap(true, Ordering::Relaxed) {
                    let error = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => format!("no answer within {} ms", SHARED_TAKE_TIMEOUT.as_millis()),
                    };
                    tracing::warn!(bucket = %key, %error, "cannot reach the shared rate bucket; counting on this gateway");
                }
                fallback.lock().take(now)
            }
        }
    }
}

/// Microseconds since the Unix epoch: the clock shared buckets are kept in (the gateways of a
/// cluster agree on wall time, as their leases already assume).
fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// The state one token shares among its live connections: its request bucket and whether it
/// was revoked.
#[derive(Debug)]
pub struct TokenState {
    bucket: Option<Bucket>,
    revoked: AtomicBool,
}

impl TokenState {
    /// The state of token `id` at `rate`; its bucket is a row of `shared` when given.
    fn new(id: &str, rate: Option<Rate>, shared: Option<&Store>) -> Self {
        let bucket = rate.map(|r| {
            let local = Mutex::new(TokenBucket::new(r, Instant::now()));
            match shared {
                None => Bucket::Local(local),
                Some(store) => Bucket::Shared {
                    store: store.clone(),
                    key: format!("token:{id}"),
                    fallback: local,
                    failing: AtomicBool::new(false),
                },
            }
        });
        Self { bucket, revoked: AtomicBool::new(false) }
    }

    /// Whether the token was revoked while connections held it.
    pub fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }
}

/// What an access token restricts on one connection.
#[derive(Debug)]
pub struct ConnAccess {
    /// The token's id.
    pub token_id: String,
    /// The token's name (in messages and logs).
    pub name: String,
    /// The scopes the token may grant.
    pub scopes: Vec<String>,
    /// Session patterns; empty: every session.
    pub sessions: Vec<String>,
    /// Method patterns; empty: every method its scopes allow.
    pub methods: Vec<String>,
    /// The token's rate, if limited.
    pub rate: Option<Rate>,
    /// Shared with the token's other connections.
    pub state: Arc<TokenState>,
}

/// How a method addresses sessions, for a session-restricted token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionUse {
    /// Touches no session's data.
    None,
    /// Names one session in this param; without it the method would use a default session, so
    /// a restricted token must name one.
    Key(&'static str),
    /// Names sessions in this list param.
    Keys(&'static str),
    /// Lists sessions: the result is filtered.
    Listing,
    /// Reads or changes data across sessions and cannot be narrowed: refused.
    Unscoped,
}

/// The closed classification of methods for session-restricted tokens; anything not named is
/// [`SessionUse::Unscoped`].
fn session_use(method: &str) -> SessionUse {
    match method {
        m::HEALTH
        | m::MODELS_LIST
        | m::AGENTS_LIST
        | m::AGENT_IDENTITY_GET
        | m::COMMANDS_LIST
        | m::SESSIONS_SUBSCRIBE => SessionUse::None,
        m::AGENT | m::CHAT_SEND | m::CHAT_HISTORY | m::CHAT_STARTUP | m::CHAT_ABORT | m::CHAT_INJECT => {
            SessionUse::Key("sessionKey")
        }
        m::SESSIONS_DESCRIBE
        | m::SESSIONS_PATCH
        | m::SESSIONS_RESET
        | m::SESSIONS_DELETE
        | m::SESSIONS_MESSAGES_SUBSCRIBE
        | m::SESSIONS_MESSAGES_UNSUBSCRIBE => SessionUse::Key("key"),
        m::SESSIONS_PREVIEW => SessionUse::Keys("keys"),
        m::SESSIONS_LIST => SessionUse::Listing,
        // `agent.wait {runId}` answers for a run of any session (with its reply): a restricted
        // token waits on `agent` itself, whose final answer comes on the same request.
        _ => SessionUse::Unscoped,
    }
}

impl ConnAccess {
    fn refuse(&self, message: String, reason: &str, extra: Value) -> ErrorShape {
        let mut details = json!({"code": DETAIL_ACCESS_TOKEN_RESTRICTED, "reason": reason, "token": self.name});
        if let (Some(d), Some(e)) = (details.as_object_mut(), extra.as_object()) {
            d.extend(e.clone());
        }
        ErrorShape::new(codes::FORBIDDEN, message).with_details(details)
    }

    /// Whether the token limits sessions at all.
    pub fn restricts_sessions(&self) -> bool {
        !self.sessions.is_empty()
    }

    /// Whether the token allows this session key (as a client wrote it, or canonical).
    pub fn allows_session(&self, key: &str) -> bool {
        !self.restricts_sessions() || session_matches(&self.sessions, key)
    }

    /// Check a call against the token's method and session patterns.
    pub fn check(&self, method: &str, params: &Value) -> Result<(), ErrorShape> {
        // `health` is exempt, as it is from scopes (a liveness probe); its answer is public.
        if method != m::HEALTH && !self.methods.is_empty() && !self.methods.iter().any(|p| pattern_matches(p, method)) {
            return Err(self.refuse(
                format!("method not allowed by access token {:?}: {method}", self.name),
                "method",
                json!({"method": method, "allowedMethods": self.methods}),
            ));
        }
        if !self.restricts_sessions() {
            return Ok(());
        }
        let outside = |key: &str| {
            self.refuse(
                format!("session not allowed by access token {:?}: {key}", self.name),
                "session",
                json!({"sessionKey": key, "allowedSessions": self.sessions}),
            )
        };
        match session_use(method) {
            SessionUse::None | SessionUse::Listing => Ok(()),
            SessionUse::Key(field) => {
                // `sessions.messages.*` take `sessionKey` as an alias of `key`.
                let given = params.get(field).or_else(|| params.get("sessionKey"));
                match given.and_then(Value::as_str).filter(|k| !k.trim().is_empty()) {
                    Some(key) if self.allows_session(key) => Ok(()),
                    Some(key) => Err(outside(key)),
                    None => Err(self.refuse(
                        format!("access token {:?} must name its session: {method} needs {field}", self.name),
                        "session-required",
                        json!({"method": method, "allowedSessions": self.sessions}),
                    )),
                }
            }
            SessionUse::Keys(field) => {
                let keys = params.get(field).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
                match keys.iter().find(|k| !k.as_str().is_some_and(|k| self.allows_session(k))) {
                    Some(k) => Err(outside(k.as_str().unwrap_or("(not a string)"))),
                    None => Ok(()),
                }
            }
            SessionUse::Unscoped => Err(self.refuse(
                format!("method not available to an access token limited to sessions ({:?}): {method}", self.name),
                "cross-session",
                json!({"method": method, "allowedSessions": self.sessions}),
            )),
        }
    }

    /// Narrow a listing's result to the token's sessions.
    pub fn filter_result(&self, method: &str, result: &mut Value) {
        if !self.restricts_sessions() || session_use(method) != SessionUse::Listing {
            return;
        }
        let Some(obj) = result.as_object_mut() else { return };
        let visible = match obj.get_mut("sessions").and_then(Value::as_array_mut) {
            Some(list) => {
                list.retain(|s| s.get("key").and_then(Value::as_str).is_some_and(|k| self.allows_session(k)));
                list.len()
            }
            None => 0,
        };
        // The counts would tell how many other sessions exist.
        obj.insert("count".into(), json!(visible));
        obj.insert("totalCount".into(), json!(visible));
    }

    /// Whether an event may be queued to this connection: never once the token is revoked;
    /// with sessions restricted, only when it names an allowed session (`sessionKey`) or is one
    /// of the events that carry nothing of any session.
    pub fn sees_event(&self, event: &str, payload: &Value) -> bool {
        if self.state.is_revoked() {
            return false;
        }
        if !self.restricts_sessions() {
            return true;
        }
        match payload.get("sessionKey").and_then(Value::as_str) {
            Some(key) => self.allows_session(key),
            // `health` reaches restricted clients in its public form only (see
            // `Broadcaster::broadcast_split`).
            None => matches!(event, "tick" | "shutdown" | "health"),
        }
    }
}

/// The limits one connection runs under: its own request bucket and, when it authenticated with
/// an access token, the token's restrictions.
#[derive(Debug, Default)]
pub struct ConnLimits {
    /// The access token's restrictions, if any.
    pub access: Option<Arc<ConnAccess>>,
    /// The per-connection bucket (`gateway.rateLimit.perConnection`).
    connection: Option<(Rate, Mutex<TokenBucket>)>,
}

impl ConnLimits {
    /// Limits with a per-connection rate and an optional token.
    pub fn new(per_connection: Option<Rate>, access: Option<Arc<ConnAccess>>) -> Self {
        Self { access, connection: per_connection.map(|r| (r, Mutex::new(TokenBucket::new(r, Instant::now())))) }
    }

    /// Count one request against the connection's and the token's buckets, then check the
    /// token's restrictions. A refused request still counts: a flood of refused requests is a
    /// flood. Completes without waiting unless the token's bucket is shared (one store round
    /// trip, see [`AccessTokens::share_buckets`]).
    pub async fn admit_request(&self, method: &str, params: &Value) -> Result<(), ErrorShape> {
        let now = Instant::now();
        if let Some((rate, bucket)) = &self.connection {
            bucket.lock().take(now).map_err(|wait| rate_limited("connection", *rate, wait))?;
        }
        let Some(access) = &self.access else { return Ok(()) };
        if access.state.is_revoked() {
            return Err(access.refuse(format!("access token {:?} was revoked", access.name), "revoked", json!({})));
        }
        if let (Some(rate), Some(bucket)) = (access.rate, &access.state.bucket) {
            bucket.take(rate, now).await.map_err(|wait| rate_limited("token", rate, wait))?;
        }
        access.check(method, params)
    }
}

// ---------------------------------------------------------------------------------------------
// The service

/// Scoped access tokens: verifying a presented token at connect, the per-token shared state of
/// live connections (bounded), and creating, listing and revoking tokens. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AccessTokens {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    /// Per-token state of tokens with live connections (and recently used ones), bounded by
    /// [`MAX_TOKEN_STATES`].
    states: Mutex<HashMap<String, Arc<TokenState>>>,
    /// Other gateways share the store: tokens' buckets are rows of it.
    shared: AtomicBool,
}

/// A token just created: its record and its secret text, shown once.
#[derive(Debug)]
pub struct CreatedToken {
    /// The record.
    pub record: AccessTokenRecord,
    /// The token text (`cgt_…`). Only here, once.
    pub secret: String,
}

impl AccessTokens {
    /// Tokens in this store.
    pub fn new(store: Store) -> Self {
        Self { inner: Arc::new(Inner { store, states: Mutex::new(HashMap::new()), shared: AtomicBool::new(false) }) }
    }

    /// Several gateways share the store ([`crate::cluster::Cluster::is_solo`] is false): from now
    /// on a token's rate is counted in the store, once for the whole cluster, instead of on each
    /// gateway. Called by the composition root before any client connects.
    pub fn share_buckets(&self) {
        self.inner.shared.store(true, Ordering::Release);
    }

    /// Whether `presented` is meant as an access token (by its prefix), so admission takes this
    /// path and never compares it with the gateway's shared secret.
    pub fn looks_like_token(presented: &str) -> bool {
        presented.starts_with(clawgate_store::ACCESS_TOKEN_PREFIX)
    }

    /// The live token `presented` is, as a connection's restrictions; `None` when it is not one
    /// (or was revoked).
    pub async fn verify(&self, presented: &str) -> Result<Option<Arc<ConnAccess>>, clawgate_store::StoreError> {
        let Some(record) = self.inner.store.verify_access_token(presented, now_ms()).await? else { return Ok(None) };
        let rate = record_rate(&record);
        let state = self.state_for(&record.id, rate);
        if state.is_revoked() {
            return Ok(None);
        }
        Ok(Some(Arc::new(ConnAccess {
            token_id: record.id,
            name: record.name,
            scopes: record.scopes,
            sessions: record.sessions,
            methods: record.methods,
            rate,
            state,
        })))
    }

    /// The shared state of a token, made when absent. Past the bound, states no live connection
    /// holds are dropped; if every one is held, the new one is not kept (its connection still
    /// gets a bucket of its own, so memory stays bounded and nothing is unlimited).
    fn state_for(&self, id: &str, rate: Option<Rate>) -> Arc<TokenState> {
        let mut states = self.inner.states.lock();
        if let Some(s) = states.get(id) {
            return s.clone();
        }
        if states.len() >= MAX_TOKEN_STATES {
            states.retain(|_, s| Arc::strong_count(s) > 1 || s.is_revoked());
            if states.len() >= MAX_TOKEN_STATES {
                states.retain(|_, s| Arc::strong_count(s) > 1);
            }
        }
        let shared = self.inner.shared.load(Ordering::Acquire).then_some(&self.inner.store);
        let state = Arc::new(TokenState::new(id, rate, shared));
        if states.len() < MAX_TOKEN_STATES {
            states.insert(id.to_owned(), state.clone());
        }
        state
    }

    /// Create a token.
    pub async fn create(&self, new: NewAccessToken) -> Result<CreatedToken, CoreError> {
        let name = new.name.trim();
        if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
            return Err(CoreError::invalid(format!("invalid token name: 1 to {MAX_NAME_LEN} printable characters")));
        }
        if new.scopes.is_empty() {
            return Err(CoreError::invalid("a token needs at least one scope (e.g. operator.write)"));
        }
        if let Some(bad) = new.scopes.iter().find(|s| !clawgate_protocol::scopes::ALL.contains(&s.as_str())) {
            return Err(CoreError::invalid(format!(
                "unknown scope {bad:?} (one of {})",
                clawgate_protocol::scopes::ALL.join(", ")
            )));
        }
        check_patterns("session", &new.sessions)?;
        check_patterns("method", &new.methods)?;
        let new = NewAccessToken { name: name.to_owned(), ..new };
        match self.inner.store.create_access_token(&new, now_ms()).await {
            Ok((secret, record)) => {
                tracing::info!(id = %record.id, name = %record.name, scopes = ?record.scopes, "access token created");
                Ok(CreatedToken { record, secret })
            }
            Err(clawgate_store::StoreError::Conflict(_)) => {
                Err(CoreError::invalid(format!("a token named {:?} exists already (revoke it first)", new.name)))
            }
            Err(e) => Err(CoreError::internal(e)),
        }
    }

    /// Every token, revoked ones included (never a secret).
    pub async fn list(&self) -> Result<Vec<AccessTokenRecord>, CoreError> {
        self.inner.store.list_access_tokens().await.map_err(CoreError::internal)
    }

    /// Revoke a token by id or name: no new connect succeeds, and its live connections stop
    /// hearing events at once. The caller closes them ([`crate::events::Events`]); `None` when no
    /// live token matched.
    pub async fn revoke(&self, id_or_name: &str) -> Result<Option<AccessTokenRecord>, CoreError> {
        let Some(record) =
            self.inner.store.revoke_access_token(id_or_name, now_ms()).await.map_err(CoreError::internal)?
        else {
            return Ok(None);
        };
        // Flag it even when no connection holds it yet: a connect verified just before the
        // revocation finds the flag when it registers.
        self.state_for(&record.id, None).revoked.store(true, Ordering::Release);
        tracing::info!(id = %record.id, name = %record.name, "access token revoked");
        Ok(Some(record))
    }
}

impl AccessTokens {
    /// Several gateways on one database: flags the tokens in use here that were revoked through
    /// another gateway (so their connections stop hearing events and their requests are refused)
    /// and returns their ids, for the caller to close their connections. No store round trip
    /// while no token is in use here.
    pub async fn revoked_elsewhere(&self) -> Result<Vec<String>, clawgate_store::StoreError> {
        let in_use: Vec<String> =
            self.inner.states.lock().iter().filter(|(_, s)| !s.is_revoked()).map(|(id, _)| id.clone()).collect();
        if in_use.is_empty() {
            return Ok(Vec::new());
        }
        let revoked: Vec<String> = self
            .inner
            .store
            .list_access_tokens()
            .await?
            .into_iter()
            .filter(|r| r.revoked_at_ms.is_some() && in_use.contains(&r.id))
            .map(|r| r.id)
            .collect();
        let states = self.inner.states.lock();
        for id in &revoked {
            if let Some(state) = states.get(id) {
                state.revoked.store(true, Ordering::Release);
                tracing::info!(id = %id, "access token revoked through another gateway");
            }
        }
        Ok(revoked)
    }
}

/// Closes the live connections of token `token_id` with 1008 "access token revoked"; returns
/// how many.
pub fn close_connections_of(events: &crate::events::Events, token_id: &str) -> usize {
    let mut closed = 0;
    for client in events.clients().clients() {
        if client.access().is_some_and(|a| a.token_id == token_id) {
            // Out of band: the close does not wait behind frames already queued to it.
            client.abort(clawgate_protocol::close::POLICY_VIOLATION, REASON_TOKEN_REVOKED);
            closed += 1;
        }
    }
    closed
}

/// A record's rate, if it has a valid one.
pub fn record_rate(record: &AccessTokenRecord) -> Option<Rate> {
    let requests = u32::try_from(record.rate_requests?).ok()?;
    let per = Duration::from_millis(u64::try_from(record.rate_per_ms?).ok()?);
    Rate::new(requests, per).ok()
}

/// The scopes a token grants a connect: those requested that the token covers (with the
/// usual implications), never more than asked and never `operator.admin` unless the token holds
/// it.
pub fn granted_scopes(requested: &[String], token_scopes: &[String]) -> Vec<String> {
    requested.iter().filter(|s| clawgate_protocol::scopes::satisfied(s, token_scopes)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(sessions: &[&str], methods: &[&str]) -> ConnAccess {
        ConnAccess {
            token_id: "t".into(),
            name: "compose".into(),
            scopes: vec!["operator.write".into()],
            sessions: sessions.iter().map(|s| s.to_string()).collect(),
            methods: methods.iter().map(|s| s.to_string()).collect(),
            rate: None,
            state: Arc::new(TokenState::new("t", None, None)),
        }
    }

    #[test]
    fn patterns_match_exactly_or_by_prefix() {
        assert!(pattern_matches("*", "anything"));
        assert!(pattern_matches("chat.*", "chat.send"));
        assert!(!pattern_matches("chat.*", "chatter"));
        assert!(pattern_matches("agent", "agent"));
        assert!(!pattern_matches("agent", "agent.wait"));
    }

    #[test]
    fn bare_session_patterns_match_under_any_agent_and_full_ones_pin_it() {
        let bare = ["compose:*".to_owned()];
        assert!(session_matches(&bare, "compose:doc:1:ann"));
        assert!(session_matches(&bare, "agent:main:compose:doc:1:ann"));
        assert!(session_matches(&bare, "agent:ops:compose:x"));
        assert!(!session_matches(&bare, "agent:main:main"));
        assert!(!session_matches(&bare, "main"));
        assert!(!session_matches(&bare, "agent:compose"), "agent:compose is the compose agent's main session");
        let full = ["agent:main:compose:*".to_owned()];
        assert!(session_matches(&full, "agent:main:compose:doc"));
        assert!(!session_matches(&full, "agent:ops:compose:doc"));
        assert!(!session_matches(&full, "compose:doc"), "a bare key's agent is not known here: denied");
    }

    #[test]
    fn methods_and_sessions_outside_the_token_are_forbidden() {
        let a = access(&["compose:*"], &["agent", "chat.*", "sessions.list"]);
        assert!(a.check("chat.send", &json!({"sessionKey": "compose:doc:1:ann"})).is_ok());
        let e = a.check("config.get", &json!({})).unwrap_err();
        assert_eq!((e.code.as_str(), e.detail_code()), ("FORBIDDEN", Some(DETAIL_ACCESS_TOKEN_RESTRICTED)));
        assert_eq!(e.message, "method not allowed by access token \"compose\": config.get");
        let e = a.check("chat.history", &json!({"sessionKey": "agent:main:main"})).unwrap_err();
        assert_eq!(e.details.unwrap()["reason"], "session");
        let e = a.check("agent", &json!({"message": "hi"})).unwrap_err();
        assert_eq!(e.details.unwrap()["reason"], "session-required");
        assert!(a.check("health", &json!({})).is_ok(), "health is exempt");
        assert!(a.check("sessions.list", &json!({})).is_ok());
        let wide = access(&["compose:*"], &[]);
        let e = wide.check("status", &json!({})).unwrap_err();
        assert_eq!(e.details.unwrap()["reason"], "cross-session");
        assert!(wide.check("sessions.preview", &json!({"keys": ["compose:a", "main"]})).is_err());
        assert!(wide.check("sessions.preview", &json!({"keys": ["compose:a"]})).is_ok());
        assert!(wide.check("sessions.messages.subscribe", &json!({"sessionKey": "compose:a"})).is_ok());
        assert!(wide.check("sessions.messages.subscribe", &json!({"key": "agent:main:main"})).is_err());
        assert!(access(&[], &[]).check("status", &json!({})).is_ok(), "no session patterns: no session limit");
    }

    #[test]
    fn listings_and_events_show_only_allowed_sessions() {
        let a = access(&["compose:*"], &[]);
        let mut list = json!({"count": 2, "totalCount": 9, "sessions": [
            {"key": "agent:main:compose:doc:1:ann"}, {"key": "agent:main:main"}]});
        a.filter_result("sessions.list", &mut list);
        assert_eq!(list["sessions"], json!([{"key": "agent:main:compose:doc:1:ann"}]));
        assert_eq!((list["count"].as_u64(), list["totalCount"].as_u64()), (Some(1), Some(1)));
        assert!(a.sees_event("chat", &json!({"sessionKey": "agent:main:compose:doc:1:ann"})));
        assert!(!a.sees_event("chat", &json!({"sessionKey": "agent:main:main"})));
        assert!(!a.sees_event("presence", &json!({"presence": []})));
        assert!(!a.sees_event("cron", &json!({"jobId": "x"})));
        assert!(a.sees_event("tick", &json!({"ts": 1})));
        a.state.revoked.store(true, Ordering::Release);
        assert!(!a.sees_event("tick", &json!({"ts": 1})), "a revoked token hears nothing");
    }

    #[test]
    fn rates_parse_and_buckets_refill() {
        assert_eq!(Rate::parse("60/min"), Ok(Rate { requests: 60, per: Duration::from_secs(60) }));
        assert_eq!(Rate::parse("600/1m").map(|r| r.display()), Ok("600/1m".into()));
        assert_eq!(Rate::parse("10/30s").map(|r| r.per), Ok(Duration::from_secs(30)));
        assert_eq!(Rate::parse("5/h").map(|r| r.per), Ok(Duration::from_secs(3600)));
        for bad in ["", "60", "0/min", "x/min", "60/fortnight", "60/0s", "60/2d", "-1/s"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
        let t0 = Instant::now();
        let mut b = TokenBucket::new(Rate { requests: 2, per: Duration::from_secs(1) }, t0);
        assert!(b.take(t0).is_ok() && b.take(t0).is_ok());
        let wait = b.take(t0).unwrap_err();
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500), "{wait:?}");
        assert!(b.take(t0 + Duration::from_millis(500)).is_ok(), "refilled");
    }

    #[tokio::test]
    async fn over_the_limit_answers_unavailable_with_retry_after() {
        let limits = ConnLimits::new(Some(Rate { requests: 1, per: Duration::from_secs(60) }), None);
        assert!(limits.admit_request("health", &json!({})).await.is_ok());
        let e = limits.admit_request("health", &json!({})).await.unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.retryable, e.detail_code()),
            ("UNAVAILABLE", Some(true), Some(DETAIL_RATE_LIMITED))
        );
        assert!(e.retry_after_ms.is_some_and(|ms| ms > 0 && ms <= 60_000), "{e:?}");
    }

    /// A connection of token `id` limited to `rate`, its bucket a row of `store`.
    fn shared_conn(store: &Store, id: &str, rate: Rate) -> ConnLimits {
        let mut a = access(&[], &[]);
        a.rate = Some(rate);
        a.state = Arc::new(TokenState::new(id, Some(rate), Some(store)));
        ConnLimits::new(None, Some(Arc::new(a)))
    }

    #[tokio::test]
    async fn a_shared_bucket_counts_the_requests_of_every_gateway_once() {
        let store = Store::open_in_memory().await.expect("store");
        let rate = Rate { requests: 3, per: Duration::from_secs(60) };
        // The same token on two gateways (two states over one store), and another token.
        let (on_a, on_b) = (shared_conn(&store, "tok", rate), shared_conn(&store, "tok", rate));
        let other = shared_conn(&store, "other", rate);
        for conn in [&on_a, &on_b, &on_a] {
            assert!(conn.admit_request("health", &json!({})).await.is_ok());
        }
        let e = on_b.admit_request("health", &json!({})).await.unwrap_err();
        assert_eq!((e.code.as_str(), e.detail_code()), ("UNAVAILABLE", Some(DETAIL_RATE_LIMITED)));
        assert_eq!(e.details.as_ref().map(|d| d["limit"].clone()), Some(json!("token")));
        assert!(e.retry_after_ms.is_some_and(|ms| ms > 0 && ms <= 20_000), "one interval at most: {e:?}");
        assert!(other.admit_request("health", &json!({})).await.is_ok(), "another token has its own bucket");
    }

    #[tokio::test]
    async fn a_shared_bucket_falls_back_to_the_gateway_s_own_while_the_store_fails() {
        let store = Store::open_in_memory().await.expect("store");
        let conn = shared_conn(&store, "tok", Rate { requests: 2, per: Duration::from_secs(60) });
        store.clone().close().await.expect("close");
        assert!(conn.admit_request("health", &json!({})).await.is_ok());
        assert!(conn.admit_request("health", &json!({})).await.is_ok());
        let e = conn.admit_request("health", &json!({})).await.unwrap_err();
        assert_eq!(e.detail_code(), Some(DETAIL_RATE_LIMITED), "still limited, by this gateway's count");
    }

    #[test]
    fn granted_scopes_never_exceed_the_request_or_the_token() {
        let token = vec!["operator.write".to_owned()];
        let ask = |s: &[&str]| granted_scopes(&s.iter().map(|s| s.to_string()).collect::<Vec<_>>(), &token);
        assert_eq!(ask(&["operator.read", "operator.write", "operator.admin"]), ["operator.read", "operator.write"]);
        assert_eq!(ask(&[]), Vec::<String>::new());
        assert_eq!(ask(&["operator.pairing"]), Vec::<String>::new());
    }
}
