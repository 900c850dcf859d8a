//! [`AccessTokenStore`] on PostgreSQL's `access_tokens` table (the SQLite file's twin).

use sqlx::types::Json;

use super::PgStore;
use crate::access_token::{new_secret, secret_matches, split_token};
use crate::{AccessTokenRecord, AccessTokenStore, NewAccessToken, Result, StoreError};

/// The record columns (everything but the hash).
const RECORD_COLUMNS: &str = "id, name, scopes, sessions, methods, rate_requests, rate_per_ms, created_at_ms, \
                              last_used_at_ms, revoked_at_ms";

/// An `access_tokens` row: the record and the hash a presented secret is checked against.
#[derive(sqlx::FromRow)]
struct AccessTokenRow {
    token_hash: Vec<u8>,
    #[sqlx(flatten)]
    record: AccessTokenRecord,
}

impl AccessTokenStore for PgStore {
    async fn create_access_token(&self, new: &NewAccessToken, now_ms: i64) -> Result<(String, AccessTokenRecord)> {
        let (text, id, hash) = new_secret();
        let mut tx = self.begin_write().await?;
        let taken: Option<String> =
            sqlx::query_scalar("SELECT id FROM access_tokens WHERE name = $1 AND revoked_at_ms IS NULL")
                .bind(&new.name)
                .fetch_optional(&mut *tx)
                .await?;
        if taken.is_some() {
            return Err(StoreError::Conflict(format!("a live access token is named {:?}", new.name)));
        }
        sqlx::query(
            "INSERT INTO access_tokens (id, name, token_hash, scopes, sessions, methods, rate_requests, \
                 rate_per_ms, created_at_ms, last_used_at_ms, revoked_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, NULL)",
        )
        .bind(&id)
        .bind(&new.name)
        .bind(hash.as_slice())
        .bind(Json(&new.scopes))
        .bind(Json(&new.sessions))
        .bind(Json(&new.methods))
        .bind(new.rate_requests)
        .bind(new.rate_per_ms)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        self.commit(tx).await?;
        tracing::debug!(id, name = %new.name, "access token created");
        let record = AccessTokenRecord {
            id,
            name: new.name.clone(),
            scopes: new.scopes.clone(),
            sessions: new.sessions.clone(),
            methods: new.methods.clone(),
            rate_requests: new.rate_requests,
            rate_per_ms: new.rate_per_ms,
            created_at_ms: now_ms,
            last_used_at_ms: None,
            revoked_at_ms: None,
        };
        Ok((text, record))
    }

    async fn verify_access_token(&self, presented: &str, now_ms: i64) -> Result<Option<AccessTokenRecord>> {
        let Some((id, secret)) = split_token(presented) else { return Ok(None) };
        let row = sqlx::query_as::<_, AccessTokenRow>(&format!(
            "SELECT token_hash, {RECORD_COLUMNS} FROM access_tokens WHERE id = $1 AND revoked_at_ms IS NULL"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        if !secret_matches(secret, &row.token_hash) {
            return Ok(None);
        }
        sqlx::query("UPDATE access_tokens SET last_used_at_ms = $1 WHERE id = $2")
            .bind(now_ms)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(Some(AccessTokenRecord { last_used_at_ms: Some(now_ms), ..row.record }))
    }

    async fn list_access_tokens(&self) -> Result<Vec<AccessTokenRecord>> {
        sqlx::query_as::<_, AccessTokenRecord>(&format!(
            "SELECT {RECORD_COLUMNS} FROM access_tokens ORDER BY created_at_ms, id"
        ))
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::from)
    }

    async fn revoke_access_token(&self, id_or_name: &str, now_ms: i64) -> Result<Option<AccessTokenRecord>> {
        let mut tx = self.begin_write().await?;
        // An id first: ids are 16 hex characters, so a name that looks like one is still found
        // by name when no token has that id.
        let mut found: Option<AccessTokenRecord> = sqlx::query_as(&format!(
            "SELECT {RECORD_COLUMNS} FROM access_tokens WHERE id = $1 AND revoked_at_ms IS NULL"
        ))
        .bind(id_or_name)
        .fetch_optional(&mut *tx)
        .await?;
        if found.is_none() {
            found = sqlx::query_as(&format!(
                "SELECT {RECORD_COLUMNS} FROM access_tokens WHERE name = $1 AND revoked_at_ms IS NULL"
            ))
            .bind(id_or_name)
            .fetch_optional(&mut *tx)
            .await?;
        }
        let Some(record) = found else { return Ok(None) };
        sqlx::query("UPDATE access_tokens SET revoked_at_ms = $1 WHERE id = $2")
            .bind(now_ms)
            .bind(&record.id)
            .execute(&mut *tx)
            .await?;
        self.commit(tx).await?;
        tracing::debug!(id = %record.id, name = %record.name, "access token revoked");
        Ok(Some(AccessTokenRecord { revoked_at_ms: Some(now_ms), ..record }))
    }
}
