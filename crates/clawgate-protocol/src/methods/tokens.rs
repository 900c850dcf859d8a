//! `tokens.create`, `tokens.list`, `tokens.revoke`: clawgate's scoped access tokens (no
//! upstream counterpart; scope `operator.admin`). A token's secret appears in exactly one
//! answer, `tokens.create`'s.

use serde::{Deserialize, Serialize};

/// `tokens.create {name, scopes, sessions?, methods?, rate?}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokensCreateParams {
    /// A name for people, unique among live tokens.
    pub name: String,
    /// Scopes a connect with the token may be granted (at most these).
    pub scopes: Vec<String>,
    /// Session-key patterns (`compose:*`); absent or empty: every session.
    #[serde(default)]
    pub sessions: Vec<String>,
    /// Method patterns (`agent`, `chat.*`); absent or empty: every method its scopes allow.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Request rate shared by the token's connections (`60/min`); absent: no per-token limit.
    #[serde(default)]
    pub rate: Option<String>,
}

/// A token as `tokens.*` show it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessTokenInfo {
    /// Public id (the `<id>` in `cgt_<id>_…`).
    pub id: String,
    /// Name.
    pub name: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Session patterns (empty: every session).
    pub sessions: Vec<String>,
    /// Method patterns (empty: every method its scopes allow).
    pub methods: Vec<String>,
    /// Rate (`60/1m`), if limited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
    /// Created (ms since the epoch).
    pub created_at: i64,
    /// Last used by a connect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<i64>,
    /// Revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
}

/// `tokens.create` → the token and, once, its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokensCreateResult {
    /// The token text to give the client (`cgt_…`): shown this once, never stored.
    pub token: String,
    /// What was stored.
    #[serde(flatten)]
    pub info: AccessTokenInfo,
}

/// `tokens.list {includeRevoked?}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokensListParams {
    /// Also list revoked tokens.
    #[serde(default)]
    pub include_revoked: bool,
}

/// `tokens.list` → the tokens, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokensListResult {
    /// The tokens.
    pub tokens: Vec<AccessTokenInfo>,
}

/// `tokens.revoke {token}`: a token's id or name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokensRevokeParams {
    /// The id or the name of a live token.
    pub token: String,
}

/// `tokens.revoke` → what was revoked and how many live connections were closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokensRevokeResult {
    /// Always true.
    pub ok: bool,
    /// The revoked token.
    #[serde(flatten)]
    pub info: AccessTokenInfo,
    /// Live connections closed.
    pub closed: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info() -> AccessTokenInfo {
        AccessTokenInfo {
            id: "0123456789abcdef".into(),
            name: "compose".into(),
            scopes: vec!["operator.write".into()],
            sessions: vec!["compose:*".into()],
            methods: vec![],
            rate: Some("60/1m".into()),
            created_at: 5,
            last_used_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn create_answers_the_token_beside_its_record_and_list_never_has_one() {
        let created = TokensCreateResult { token: "cgt_0123456789abcdef_s".into(), info: info() };
        assert_eq!(
            serde_json::to_value(&created).unwrap(),
            json!({"token": "cgt_0123456789abcdef_s", "id": "0123456789abcdef", "name": "compose",
                   "scopes": ["operator.write"], "sessions": ["compose:*"], "methods": [], "rate": "60/1m",
                   "createdAt": 5})
        );
        let listed = serde_json::to_value(TokensListResult { tokens: vec![info()] }).unwrap();
        assert!(listed["tokens"][0].get("token").is_none(), "{listed}");
        let revoked = serde_json::to_value(TokensRevokeResult { ok: true, info: info(), closed: 2 }).unwrap();
        assert_eq!(
            (revoked["ok"].clone(), revoked["closed"].clone(), revoked["name"].clone()),
            (json!(true), json!(2), json!("compose"))
        );
    }

    #[test]
    fn create_params_default_to_no_limits_and_refuse_unknown_fields() {
        let p: TokensCreateParams = serde_json::from_value(json!({"name": "n", "scopes": ["operator.read"]})).unwrap();
        assert_eq!((p.sessions.len(), p.methods.len(), p.rate), (0, 0, None));
        assert!(serde_json::from_value::<TokensCreateParams>(json!({"name": "n", "scopes": [], "x": 1})).is_err());
        assert!(serde_json::from_value::<TokensRevokeParams>(json!({})).is_err());
    }
}
