//! `tokens.create`, `tokens.list`, `tokens.revoke`: scoped access tokens (operator.admin).

use clawgate_protocol::methods::tokens::{
    AccessTokenInfo, TokensCreateParams, TokensCreateResult, TokensListParams, TokensListResult, TokensRevokeParams,
    TokensRevokeResult,
};
use clawgate_store::{AccessTokenRecord, NewAccessToken};

use crate::access_tokens::{AccessTokens, Rate, close_connections_of, record_rate};
use crate::error::CoreError;
use crate::events::Events;

fn info(r: AccessTokenRecord) -> AccessTokenInfo {
    AccessTokenInfo {
        rate: record_rate(&r).map(|rate| rate.display()),
        id: r.id,
        name: r.name,
        scopes: r.scopes,
        sessions: r.sessions,
        methods: r.methods,
        created_at: r.created_at_ms,
        last_used_at: r.last_used_at_ms,
        revoked_at: r.revoked_at_ms,
    }
}

/// `tokens.create {name, scopes, sessions?, methods?, rate?}` → the token, with its secret shown
/// this once.
pub async fn tokens_create(tokens: &AccessTokens, p: TokensCreateParams) -> Result<TokensCreateResult, CoreError> {
    let rate = p.rate.as_deref().map(Rate::parse).transpose().map_err(CoreError::invalid)?;
    let new = NewAccessToken {
        name: p.name,
        scopes: p.scopes,
        sessions: p.sessions,
        methods: p.methods,
        rate_requests: rate.map(|r| i64::from(r.requests)),
        rate_per_ms: rate.map(|r| r.per.as_millis() as i64),
    };
    let created = tokens.create(new).await?;
    Ok(TokensCreateResult { token: created.secret, info: info(created.record) })
}

/// `tokens.list {includeRevoked?}` → the tokens, oldest first, never a secret.
pub async fn tokens_list(tokens: &AccessTokens, p: TokensListParams) -> Result<TokensListResult, CoreError> {
    let all = tokens.list().await?;
    let tokens =
        all.into_iter().filter(|r| p.include_revoked || r.revoked_at_ms.is_none()).map(info).collect::<Vec<_>>();
    Ok(TokensListResult { tokens })
}

/// `tokens.revoke {token}` (an id or a name) → the token stops working: new connects fail and
/// its live connections are closed now with 1008 "access token revoked".
pub async fn tokens_revoke(
    tokens: &AccessTokens,
    events: &Events,
    p: TokensRevokeParams,
) -> Result<TokensRevokeResult, CoreError> {
    let Some(record) = tokens.revoke(p.token.trim()).await? else {
        return Err(CoreError::NotFound(format!("no live access token with id or name {:?}", p.token)));
    };
    let closed = close_connections_of(events, &record.id);
    Ok(TokensRevokeResult { ok: true, info: info(record), closed })
}
