//! Bearer authentication for `/v1/*` and `/tools/invoke`: the gateway token (mode `token`) or
//! password (mode `password`), nothing in mode `none`. Failures count in the same per-address
//! limiter as WebSocket connects, so guessing over HTTP locks out WS too and the other way round.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};

use clawgate_core::auth::{PasswordCheck, begin_attempt, secrets_match};
use clawgate_core::client_addr::client_peer;
use clawgate_core::handshake::AuthService;
use clawgate_core::settings::AuthMode;

use super::error::OpenAiError;

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Denied {
    /// No or wrong credentials.
    Unauthorized,
    /// The address is locked out for this long.
    RateLimited(Duration),
}

impl From<Denied> for OpenAiError {
    fn from(d: Denied) -> Self {
        match d {
            Denied::Unauthorized => OpenAiError::unauthorized(),
            Denied::RateLimited(wait) => OpenAiError::auth_rate_limited(wait),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Checks the bearer against the gateway's shared secret. A locked-out address bucket is refused
/// before the secret is compared, even with the right one; a request without credentials is
/// refused without counting as a guess. A presented bearer is counted in the limiter before it
/// is verified, and argon2 checks run in the gateway's bounded [`PasswordGate`]: excess
/// concurrent guesses get 429 unverified instead of 19 MiB each (issue 10, defect 3).
///
/// [`PasswordGate`]: clawgate_core::auth::PasswordGate
pub(crate) async fn check(auth: &AuthService, headers: &HeaderMap, ip: IpAddr) -> Result<(), Denied> {
    let settings = auth.settings();
    if settings.auth_mode == AuthMode::None {
        return Ok(());
    }
    let peer = client_peer(ip, headers, &settings.proxy_trust);
    let locked = auth.limiter().lock().check(peer, &settings.rate_limit, Instant::now());
    if let Err(wait) = locked {
        return Err(Denied::RateLimited(wait));
    }
    let Some(presented) = bearer(headers) else { return Err(Denied::Unauthorized) };
    let attempt = begin_attempt(auth.limiter(), peer, &settings.rate_limit).map_err(Denied::RateLimited)?;
    let ok = match settings.auth_mode {
        AuthMode::None => true,
        AuthMode::Token => settings.token.as_deref().is_some_and(|t| secrets_match(presented, t)),
        AuthMode::Password => match &settings.password {
            Some(configured) => match auth.password_gate().verify(presented, configured).await {
                PasswordCheck::Match => true,
                PasswordCheck::Mismatch => false,
                PasswordCheck::Busy => {
                    attempt.abandoned();
                    return Err(Denied::RateLimited(Duration::from_secs(1)));
                }
            },
            None => false,
        },
    };
    if ok {
        attempt.succeeded();
        return Ok(());
    }
    attempt.failed();
    Err(Denied::Unauthorized)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_token_trimmed() {
        assert_eq!(bearer(&headers("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&headers("bearer   abc ")), Some("abc"));
        assert_eq!(bearer(&headers("Basic abc")), None);
        assert_eq!(bearer(&headers("Bearer ")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }
}
