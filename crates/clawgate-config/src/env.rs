//! Environment variables: where they are read from, and the overlay applied on top of the file.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::decode::Issue;
use crate::error::ConfigError;
use crate::model::Config;
use crate::path::KeyPath;
use crate::secret::Secret;

/// Overrides `gateway.auth.token`.
pub const ENV_GATEWAY_TOKEN: &str = "CLAWGATE_GATEWAY_TOKEN";
/// Overrides `gateway.auth.password`.
pub const ENV_GATEWAY_PASSWORD: &str = "CLAWGATE_GATEWAY_PASSWORD";
/// Overrides `gateway.port`.
pub const ENV_GATEWAY_PORT: &str = "CLAWGATE_GATEWAY_PORT";

/// A source of environment variables.
///
/// Everything in this crate that reads the environment takes an `Env`, so tests can pass
/// [`Env::from_pairs`] instead of mutating the process environment (which is shared by all
/// test threads).
#[derive(Clone)]
pub struct Env(Arc<Lookup>);

type Lookup = dyn Fn(&str) -> Option<String> + Send + Sync;

impl Env {
    /// The real process environment (non-UTF-8 values count as unset).
    #[must_use]
    pub fn process() -> Self {
        Self(Arc::new(|name| std::env::var(name).ok()))
    }

    /// No variables at all.
    #[must_use]
    pub fn empty() -> Self {
        Self(Arc::new(|_| None))
    }

    /// Exactly these variables.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars: HashMap<String, String> = pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        Self(Arc::new(move |name| vars.get(name).cloned()))
    }

    /// Variables looked up by a function.
    pub fn from_fn(lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Self(Arc::new(lookup))
    }

    /// The value of `name`, if set.
    #[must_use]
    pub fn var(&self, name: &str) -> Option<String> {
        (self.0)(name)
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may be secrets; there is nothing useful to show.
        f.write_str("Env")
    }
}

/// Applies the `CLAWGATE_GATEWAY_*` environment overrides to `config`.
///
/// Set-but-empty variables are ignored, so `CLAWGATE_GATEWAY_TOKEN=` does not blank a token.
/// The loaders ([`crate::load_with_env`]) call this before semantic validation, so a password
/// given only through the environment satisfies `gateway.auth.mode: "password"`.
///
/// # Errors
/// [`ConfigError::Invalid`] when `CLAWGATE_GATEWAY_PORT` is not a port number.
pub fn apply_env_overlay(config: &mut Config, env: &Env) -> Result<(), ConfigError> {
    let issues = overlay(config, env);
    if issues.is_empty() { Ok(()) } else { Err(crate::decode::unlocated(issues)) }
}

pub(crate) fn overlay(config: &mut Config, env: &Env) -> Vec<Issue> {
    let mut issues = Vec::new();
    let set = |name: &str| env.var(name).filter(|v| !v.is_empty());
    if let Some(token) = set(ENV_GATEWAY_TOKEN) {
        config.gateway.auth.token = Some(Secret::Plain(token));
    }
    if let Some(password) = set(ENV_GATEWAY_PASSWORD) {
        config.gateway.auth.password = Some(Secret::Plain(password));
    }
    if let Some(port) = set(ENV_GATEWAY_PORT) {
        match port.trim().parse::<u16>() {
            Ok(port) => config.gateway.port = port,
            Err(_) => issues.push(Issue::unlocated(
                KeyPath::from(&["gateway", "port"][..]),
                format!(
                    "environment variable {ENV_GATEWAY_PORT}={port:?} is not a port number; \
                     set it to a number from 0 to 65535 (0 picks a free port) or unset it"
                ),
            )),
        }
    }
    issues
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_replaces_token_password_and_port() {
        let mut config = Config::default();
        let env =
            Env::from_pairs([(ENV_GATEWAY_TOKEN, "tok"), (ENV_GATEWAY_PASSWORD, "pw"), (ENV_GATEWAY_PORT, "4242")]);
        apply_env_overlay(&mut config, &env).unwrap();
        assert_eq!(config.gateway.port, 4242);
        assert_eq!(config.gateway.auth.token, Some(Secret::Plain("tok".into())));
        assert_eq!(config.gateway.auth.password, Some(Secret::Plain("pw".into())));
    }

    #[test]
    fn empty_variables_are_ignored() {
        let mut config = Config::default();
        config.gateway.auth.token = Some(Secret::Plain("from-file".into()));
        let env = Env::from_pairs([(ENV_GATEWAY_TOKEN, ""), (ENV_GATEWAY_PORT, "")]);
        apply_env_overlay(&mut config, &env).unwrap();
        assert_eq!(config.gateway.auth.token, Some(Secret::Plain("from-file".into())));
        assert_eq!(config.gateway.port, 18789);
    }

    #[test]
    fn bad_port_variable_names_the_variable_and_key() {
        let mut config = Config::default();
        let env = Env::from_pairs([(ENV_GATEWAY_PORT, "eighty")]);
        let err = apply_env_overlay(&mut config, &env).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("CLAWGATE_GATEWAY_PORT"), "{text}");
        assert!(text.starts_with("gateway.port: "), "{text}");
        assert_eq!(config.gateway.port, 18789);
    }
}
