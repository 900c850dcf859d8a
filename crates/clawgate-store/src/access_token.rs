//! Scoped access tokens ([`AccessTokenStore`]): bearer credentials the gateway's operator hands
//! to a backend (`clawgate tokens create`), each limited to scopes, session-key patterns, method
//! patterns and a request rate.
//!
//! The store keeps the token's record and a SHA-256 of its secret, never the secret. What the
//! restrictions *mean* (pattern matching, rate limiting, who may create tokens) belongs to
//! `clawgate-core`; here they are plain data.
//!
//! A token reads `cgt_<id>_<secret>`: the id (16 lowercase hex characters) finds the row, and
//! the secret (32 bytes from the OS RNG, base64url) is compared by hash in constant time. The
//! secret has full entropy, so a plain SHA-256 is enough — nobody can search for a preimage —
//! and every connect stays cheap.

use std::future::Future;

use rand::RngCore as _;

use crate::Result;
use crate::token::{generate_token, hash_matches, hash_token};

/// What every access token starts with, so a presented token is recognised at a glance (and
/// by secret scanners) and never mistaken for a shared secret or a device token.
pub const ACCESS_TOKEN_PREFIX: &str = "cgt_";

/// Longest token text that is even looked at: `cgt_` + 16 + `_` + 43 characters, with room to
/// spare. Anything longer is refused before it is parsed or hashed.
const MAX_TOKEN_LEN: usize = 128;

/// A token to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAccessToken {
    /// A name for people (`compose`), unique among live tokens.
    pub name: String,
    /// Scopes the token may be granted (a connect gets at most these).
    pub scopes: Vec<String>,
    /// Session-key patterns it may address (`compose:*`); empty: every session.
    pub sessions: Vec<String>,
    /// Method patterns it may call (`agent`, `chat.*`); empty: every method its scopes allow.
    pub methods: Vec<String>,
    /// Requests allowed per `rate_per_ms` (with [`NewAccessToken::rate_per_ms`]); `None`: only
    /// the per-connection limit applies.
    pub rate_requests: Option<i64>,
    /// The window of [`NewAccessToken::rate_requests`], in milliseconds.
    pub rate_per_ms: Option<i64>,
}

/// A stored access token (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AccessTokenRecord {
    /// Public id: the `<id>` part of the token, shown by `tokens list`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Scopes it may be granted.
    #[sqlx(json)]
    pub scopes: Vec<String>,
    /// Session-key patterns (empty: every session).
    #[sqlx(json)]
    pub sessions: Vec<String>,
    /// Method patterns (empty: every method its scopes allow).
    #[sqlx(json)]
    pub methods: Vec<String>,
    /// Requests per window, if limited.
    pub rate_requests: Option<i64>,
    /// The window, in milliseconds.
    pub rate_per_ms: Option<i64>,
    /// When it was created.
    pub created_at_ms: i64,
    /// When a connect last presented it.
    pub last_used_at_ms: Option<i64>,
    /// When it was revoked; a revoked token never verifies.
    pub revoked_at_ms: Option<i64>,
}

/// Scoped access tokens, kept as hashes.
pub trait AccessTokenStore: Send + Sync {
    /// Creates a token and returns its secret text — the only time it exists outside the
    /// client — with its record. [`crate::StoreError::Conflict`] if a live token has that name.
    fn create_access_token(
        &self,
        new: &NewAccessToken,
        now_ms: i64,
    ) -> impl Future<Output = Result<(String, AccessTokenRecord)>> + Send;

    /// The live token that `presented` is, or `None` (unknown, revoked, malformed, wrong
    /// secret — all alike). Records the use (`last_used_at_ms`).
    fn verify_access_token(
        &self,
        presented: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<AccessTokenRecord>>> + Send;

    /// Every token, revoked ones included, oldest first.
    fn list_access_tokens(&self) -> impl Future<Output = Result<Vec<AccessTokenRecord>>> + Send;

    /// Revokes the live token with this id, or else the live token with this name. Returns the
    /// revoked record; `None` if no live token matched.
    fn revoke_access_token(
        &self,
        id_or_name: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<AccessTokenRecord>>> + Send;
}

/// A fresh id (8 random bytes as hex) and token text, and the hash to store.
pub(crate) fn new_secret() -> (String, String, [u8; 32]) {
    let mut id_bytes = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut id_bytes);
    let id: String = id_bytes.iter().map(|b| format!("{b:02x}")).collect();
    let secret = generate_token();
    let hash = hash_token(&secret);
    (format!("{ACCESS_TOKEN_PREFIX}{id}_{secret}"), id, hash)
}

/// The id and secret of a presented token, if it has the shape of one.
pub(crate) fn split_token(presented: &str) -> Option<(&str, &str)> {
    if presented.len() > MAX_TOKEN_LEN {
        return None;
    }
    let rest = presented.strip_prefix(ACCESS_TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let id_ok = id.len() == 16 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (id_ok && !secret.is_empty()).then_some((id, secret))
}

/// Whether `secret` hashes to `stored`, in constant time.
pub(crate) fn secret_matches(secret: &str, stored: &[u8]) -> bool {
    hash_matches(&hash_token(secret), stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_token_splits_into_its_id_and_a_secret_matching_the_hash() {
        let (text, id, hash) = new_secret();
        assert!(text.starts_with("cgt_"));
        let (got_id, secret) = split_token(&text).expect("its own shape");
        assert_eq!(got_id, id);
        assert!(secret_matches(secret, &hash));
        assert!(!secret_matches("x", &hash));
    }

    #[test]
    fn odd_texts_are_not_tokens() {
        for odd in [
            "",
            "cgt_",
            "cgt__x",
            "cgt_0123456789abcdef",
            "cgt_0123456789ABCDEF_x",
            "xyz_0123456789abcdef_x",
            "cgt_0123456789abcdeé_x",
            "cgt_0123456789abcdef_",
        ] {
            assert_eq!(split_token(odd), None, "{odd:?}");
        }
        assert_eq!(split_token(&format!("cgt_0123456789abcdef_{}", "a".repeat(200))), None);
        assert_eq!(split_token("cgt_0123456789abcdef_s3cret"), Some(("0123456789abcdef", "s3cret")));
    }
}
