//! How the client subcommands reach the gateway: shared flags, credential lookup, and
//! connection errors phrased as what to do next.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use clawgate_client::{Client, ClientError, ClientOptions, ReconnectPolicy};
use clawgate_protocol::details;

use super::device_auth::{self, CliDevice};
use crate::paths;

/// Where the gateway is and how to authenticate.
#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// Gateway WebSocket URL
    #[arg(long, env = "CLAWGATE_URL", default_value = clawgate_client::DEFAULT_URL)]
    pub url: String,
    /// Gateway token [default: the one `clawgate gateway` stored in <state-dir>/gateway-token]
    #[arg(long, env = "CLAWGATE_GATEWAY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Gateway password (when the gateway uses password auth)
    #[arg(long, env = "CLAWGATE_GATEWAY_PASSWORD", hide_env_values = true, conflicts_with = "token")]
    pub password: Option<String>,
    /// State directory holding the generated gateway token and the CLI's device identity and
    /// device token (identity/) [default: ~/.clawgate]
    #[arg(long, env = "CLAWGATE_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Bound on connecting and on each request, in milliseconds
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_ms: u64,
}

impl ConnArgs {
    /// `--timeout-ms` as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// The credential the CLI presents, and where it came from (for error messages).
enum Credential {
    Token { value: String, from_file: Option<PathBuf> },
    Password(String),
}

fn credential(args: &ConnArgs) -> anyhow::Result<Credential> {
    if let Some(token) = args.token.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Credential::Token { value: token.to_owned(), from_file: None });
    }
    if let Some(password) = args.password.as_deref().filter(|p| !p.is_empty()) {
        return Ok(Credential::Password(password.to_owned()));
    }
    let path = paths::token_file(&paths::state_dir(args.state_dir.as_deref()));
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => {
            Ok(Credential::Token { value: text.trim().to_owned(), from_file: Some(path) })
        }
        Ok(_) => anyhow::bail!("no gateway token: {} is empty; pass --token", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            anyhow::bail!("no gateway token: pass --token or run `clawgate gateway` once to create {}", path.display())
        }
        Err(e) => anyhow::bail!("no gateway token: cannot read {}: {e}; pass --token", path.display()),
    }
}

/// Connect as the local CLI (`client.id:"cli"`, `mode:"cli"`) with the CLI's default scopes.
///
/// With a state dir on this machine the CLI is a paired device (see [`device_auth`]): it first
/// presents its stored device token, which the gateway admits even while another local process
/// has locked loopback out; a refused token falls back to the shared secret once, which (direct
/// loopback) pairs the CLI again silently, and the new token is stored.
pub async fn connect(args: &ConnArgs, scopes: &[&str]) -> anyhow::Result<Client> {
    let cred = credential(args)?;
    let base = ClientOptions::new(&args.url)
        .client_id("cli")
        .mode("cli")
        .display_name(device_auth::DISPLAY_NAME)
        .version(env!("CARGO_PKG_VERSION"))
        .scopes(scopes.iter().copied())
        .connect_timeout(args.timeout())
        .request_timeout(args.timeout())
        // A CLI command is one exchange: when the gateway goes away it reports that and exits
        // rather than waiting for it to come back.
        .reconnect(ReconnectPolicy::never());
    let device = match CliDevice::load(&paths::state_dir(args.state_dir.as_deref())) {
        Ok(device) => device,
        Err(e) => {
            eprintln!(
                "clawgate: warning: {e}; connecting with the gateway token alone (move the file away to let the CLI create a new identity)"
            );
            None
        }
    };
    let role = clawgate_protocol::connect::roles::OPERATOR;

    if let Some(device) = &device
        && let Some(token) = device.token_for(&args.url, role)
    {
        let opts = base.clone().device(device.identity().clone()).device_token(token.expose());
        match Client::connect(opts).await {
            Ok(client) => return Ok(client),
            Err(e @ ClientError::Handshake { .. }) => {
                if e.detail_code() == Some(details::AUTH_DEVICE_TOKEN_MISMATCH) {
                    // Revoked, or the gateway's state was reset: the token is dead.
                    let _ = device.forget(&args.url);
                }
            }
            Err(e) => return Err(anyhow::anyhow!(explain(&e, args, &cred))),
        }
    }

    let with_secret = match &cred {
        Credential::Token { value, .. } => base.token(value),
        Credential::Password(p) => base.password(p),
    };
    let Some(device) = device else {
        return Client::connect(with_secret).await.map_err(|e| anyhow::anyhow!(explain(&e, args, &cred)));
    };
    match Client::connect(with_secret.clone().device(device.identity().clone())).await {
        Ok(client) => {
            let auth = &client.hello().auth;
            if let Some(token) = &auth.device_token
                && let Err(e) = device.store(&args.url, &auth.role, token, &auth.scopes, auth.issued_at_ms)
            {
                eprintln!("clawgate: warning: cannot store the CLI's device token: {e}");
            }
            Ok(client)
        }
        Err(e) if e.detail_code() == Some(details::PAIRING_REQUIRED) => {
            // Not paired silently (a remote gateway, or `autoApproveLoopback` off): the request
            // waits for an operator; until then the CLI connects with the shared secret alone.
            eprintln!(
                "clawgate: note: this CLI asked {} to pair it (see `clawgate devices list`); once approved it keeps working during a failed-auth lockout",
                args.url
            );
            Client::connect(with_secret).await.map_err(|e| anyhow::anyhow!(explain(&e, args, &cred)))
        }
        Err(e) => Err(anyhow::anyhow!(explain(&e, args, &cred))),
    }
}

/// Connect with `clawgate_protocol::scopes::CLI_DEFAULT`.
pub async fn connect_default(args: &ConnArgs) -> anyhow::Result<Client> {
    connect(args, clawgate_protocol::scopes::CLI_DEFAULT).await
}

/// One sentence on what went wrong, and one on what to do about it.
fn explain(err: &ClientError, args: &ConnArgs, cred: &Credential) -> String {
    let url = &args.url;
    match err {
        ClientError::Connect(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => format!(
            "cannot connect to {url}: connection refused. Is `clawgate gateway` running on that port? (pass --url or set CLAWGATE_URL for another address)"
        ),
        ClientError::Connect(io) => format!("cannot connect to {url}: {io}. Check --url."),
        ClientError::InvalidUrl(e) => format!("{e}. Use a ws:// URL such as {}.", clawgate_client::DEFAULT_URL),
        ClientError::Timeout { waiting_for, after } => format!(
            "no answer from {url} within {} ms (waiting for {waiting_for}). Is it a clawgate gateway? Raise --timeout-ms if it is slow.",
            after.as_millis()
        ),
        ClientError::Handshake { error, .. } => {
            let code = err.detail_code().unwrap_or(error.code.as_str());
            match code {
                details::AUTH_TOKEN_MISMATCH | details::AUTH_TOKEN_MISSING | details::AUTH_UNAUTHORIZED => {
                    let source = match cred {
                        Credential::Token { from_file: Some(path), .. } => {
                            format!("the token in {} does not match the gateway's", path.display())
                        }
                        _ => "the token does not match the gateway's".to_owned(),
                    };
                    format!(
                        "{url} refused the connection: {}. Check the token: {source}; pass --token or set CLAWGATE_GATEWAY_TOKEN.",
                        error.message
                    )
                }
                details::AUTH_PASSWORD_MISMATCH | details::AUTH_PASSWORD_MISSING => format!(
                    "{url} refused the connection: {}. Check the password (--password or CLAWGATE_GATEWAY_PASSWORD).",
                    error.message
                ),
                details::AUTH_TOKEN_NOT_CONFIGURED | details::AUTH_PASSWORD_NOT_CONFIGURED => format!(
                    "{url} refused the connection: {}. The gateway uses a different auth mode; check gateway.auth in its config.",
                    error.message
                ),
                details::AUTH_RATE_LIMITED => {
                    let wait =
                        error.retry_after_ms.map(|ms| format!(" in {} s", ms.div_ceil(1000))).unwrap_or_default();
                    format!(
                        "{url} refused the connection: too many failed attempts. Try again{wait} with the right token."
                    )
                }
                _ => format!("{url} refused the connection: {} ({code})", error.message),
            }
        }
        ClientError::Closed { .. } => format!("{url} closed the connection during the handshake: {err}"),
        other => format!("{url}: {other}"),
    }
}

/// Call a method; an error answer is printed (exit 1), a transport failure is an `Err`.
pub async fn call(
    client: &Client,
    method: &str,
    params: serde_json::Value,
    as_json: bool,
) -> anyhow::Result<Result<serde_json::Value, i32>> {
    match client.request(method, params).await {
        Ok(v) => Ok(Ok(v)),
        Err(ClientError::Rpc(error)) => {
            super::output::print_error(&error, as_json);
            Ok(Err(1))
        }
        Err(e) => Err(anyhow::anyhow!("{method} failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(state_dir: &std::path::Path) -> ConnArgs {
        ConnArgs {
            url: "ws://127.0.0.1:1".to_owned(),
            token: None,
            password: None,
            state_dir: Some(state_dir.to_path_buf()),
            timeout_ms: 1000,
        }
    }

    #[test]
    fn missing_token_file_says_how_to_create_it() {
        let dir = std::env::temp_dir().join(format!("clawgate-cli-test-{}", std::process::id()));
        let err = credential(&args(&dir)).err().unwrap().to_string();
        assert!(err.starts_with("no gateway token: pass --token or run `clawgate gateway` once to create"), "{err}");
        assert!(err.contains("gateway-token"), "{err}");
    }

    #[test]
    fn flag_token_wins_over_the_token_file() {
        let mut a = args(std::path::Path::new("/nonexistent"));
        a.token = Some("t".to_owned());
        assert!(matches!(credential(&a).unwrap(), Credential::Token { value, from_file: None } if value == "t"));
    }

    #[test]
    fn refused_connection_asks_whether_the_gateway_runs() {
        let a = args(std::path::Path::new("/nonexistent"));
        let err = ClientError::Connect(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let msg = explain(&err, &a, &Credential::Password("p".to_owned()));
        assert!(msg.contains("Is `clawgate gateway` running on that port?"), "{msg}");
    }

    #[test]
    fn token_mismatch_points_at_the_token() {
        let a = args(std::path::Path::new("/s"));
        let error = clawgate_protocol::ErrorShape::invalid_request("unauthorized: gateway token mismatch")
            .with_details(serde_json::json!({"code": "AUTH_TOKEN_MISMATCH"}));
        let err = ClientError::Handshake { error: Box::new(error), close_code: Some(1008), close_reason: None };
        let cred = Credential::Token { value: "x".to_owned(), from_file: Some(PathBuf::from("/s/gateway-token")) };
        let msg = explain(&err, &a, &cred);
        assert!(msg.contains("Check the token: the token in /s/gateway-token does not match"), "{msg}");
    }
}
