//! The CLI's own device identity and device token (issue 10, defect 9).
//!
//! All of loopback is one failed-auth bucket, so any local process that sends ten bad bearers
//! locks loopback out — and a CLI that authenticates with the shared secret alone would be locked
//! out with it. The class this closes: *an operator whose only credential is the one a guesser
//! is guessing*. Like the upstream CLI, the CLI therefore keeps an Ed25519 device identity and the
//! device token the gateway issued to it, and presents the token (with a signature) on every later
//! connect; the gateway admits a proven device token even while the bucket is locked out.
//!
//! Both live in the gateway's state dir, next to the `gateway-token` the CLI already reads:
//! `<state-dir>/identity/device.json` (the key pair, 0600) and
//! `<state-dir>/identity/device-auth.json` (device tokens keyed by gateway URL, 0600; the
//! directory is 0700). A state dir that does not exist is not created: with no gateway state on
//! this machine the CLI has nothing to belong to and uses the shared secret alone, as before.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use clawgate_client::DeviceIdentity;

/// `client.displayName` of the CLI's device: how it is labelled in `devices list`.
pub const DISPLAY_NAME: &str = "clawgate CLI";

const FILE_VERSION: u32 = 1;

/// A device token. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeviceToken(String);

impl DeviceToken {
    /// The token, to send in `auth.deviceToken`.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for DeviceToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceToken(<redacted>)")
    }
}

/// One gateway's token for this device.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredToken {
    role: String,
    token: DeviceToken,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    issued_at_ms: Option<i64>,
}

/// `device-auth.json`: the tokens this device holds, keyed by gateway URL (one identity may be
/// paired with several gateways; presenting one gateway's token to another would only count as a
/// failed attempt there).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeviceAuthFile {
    version: u32,
    device_id: String,
    #[serde(default)]
    gateways: BTreeMap<String, StoredToken>,
}

/// The CLI's identity and its token store in one state dir.
#[derive(Debug)]
pub struct CliDevice {
    identity: DeviceIdentity,
    auth_path: PathBuf,
}

/// `<state-dir>/identity/device.json`.
pub fn identity_file(state_dir: &Path) -> PathBuf {
    state_dir.join("identity").join("device.json")
}

/// `<state-dir>/identity/device-auth.json`.
pub fn device_auth_file(state_dir: &Path) -> PathBuf {
    state_dir.join("identity").join("device-auth.json")
}

impl CliDevice {
    /// Load (or create on first use) the identity in `state_dir`. `Ok(None)` when the state dir
    /// does not exist; `Err` when an identity file exists but is unusable (it is never replaced:
    /// that would orphan the device's pairing).
    pub fn load(state_dir: &Path) -> Result<Option<CliDevice>, clawgate_client::IdentityError> {
        if !state_dir.is_dir() {
            return Ok(None);
        }
        let identity = DeviceIdentity::load_or_create(identity_file(state_dir))?;
        Ok(Some(CliDevice { identity, auth_path: device_auth_file(state_dir) }))
    }

    /// The key pair, to sign `connect`.
    pub fn identity(&self) -> &DeviceIdentity {
        &self.identity
    }

    fn read(&self) -> Option<DeviceAuthFile> {
        let text = std::fs::read_to_string(&self.auth_path).ok()?;
        let file: DeviceAuthFile = serde_json::from_str(&text).ok()?;
        // A token file left from another identity is of no use to this one.
        (file.version == FILE_VERSION && file.device_id == self.identity.device_id()).then_some(file)
    }

    /// The token stored for the gateway at `url` and `role`, if any.
    pub fn token_for(&self, url: &str, role: &str) -> Option<DeviceToken> {
        self.read()?.gateways.get(url).filter(|t| t.role == role).map(|t| t.token.clone())
    }

    /// Remember the token `url` issued (replacing any earlier one for that gateway).
    pub fn store(
        &self,
        url: &str,
        role: &str,
        token: &str,
        scopes: &[String],
        issued_at_ms: Option<i64>,
    ) -> std::io::Result<()> {
        let mut file = self.read().unwrap_or_else(|| DeviceAuthFile {
            version: FILE_VERSION,
            device_id: self.identity.device_id().to_owned(),
            gateways: BTreeMap::new(),
        });
        let entry = StoredToken {
            role: role.to_owned(),
            token: DeviceToken(token.to_owned()),
            scopes: scopes.to_vec(),
            issued_at_ms,
        };
        file.gateways.insert(url.to_owned(), entry);
        let mut text = serde_json::to_string_pretty(&file).map_err(std::io::Error::other)?;
        text.push('\n');
        write_private(&self.auth_path, text.as_bytes())
    }

    /// Forget the token of `url` (the gateway refused it).
    pub fn forget(&self, url: &str) -> std::io::Result<()> {
        let Some(mut file) = self.read() else { return Ok(()) };
        if file.gateways.remove(url).is_none() {
            return Ok(());
        }
        let mut text = serde_json::to_string_pretty(&file).map_err(std::io::Error::other)?;
        text.push('\n');
        write_private(&self.auth_path, text.as_bytes())
    }
}

/// Replace `path` atomically with `bytes`, never readable by others: a sibling file created 0600
/// is renamed over it (concurrent CLI runs each write a whole file; the last one wins).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}-{:016x}", std::process::id(), rand::random::<u64>()));
    let result = (|| {
        let mut f = open_private(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(unix)]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().write(true).create_new(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_state_dir_means_no_identity_and_nothing_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-gateway-here");
        assert!(CliDevice::load(&missing).unwrap().is_none());
        assert!(!missing.exists(), "the CLI must not create a state dir");
    }

    #[test]
    fn tokens_are_kept_per_gateway_and_role_in_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let device = CliDevice::load(dir.path()).unwrap().expect("state dir exists");
        assert_eq!(device.token_for("ws://a", "operator"), None);
        device.store("ws://a", "operator", "tok-a", &["operator.read".to_owned()], Some(1)).unwrap();
        device.store("ws://b", "operator", "tok-b", &[], None).unwrap();
        assert_eq!(device.token_for("ws://a", "operator").unwrap().expose(), "tok-a");
        assert_eq!(device.token_for("ws://a", "node"), None, "a token is for its role");
        assert_eq!(device.token_for("ws://b", "operator").unwrap().expose(), "tok-b");
        device.forget("ws://a").unwrap();
        assert_eq!(device.token_for("ws://a", "operator"), None);
        assert_eq!(device.token_for("ws://b", "operator").unwrap().expose(), "tok-b");

        // The same identity is loaded again, and it still finds its tokens.
        let again = CliDevice::load(dir.path()).unwrap().unwrap();
        assert_eq!(again.identity().device_id(), device.identity().device_id());
        assert_eq!(again.token_for("ws://b", "operator").unwrap().expose(), "tok-b");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in [identity_file(dir.path()), device_auth_file(dir.path())] {
                assert_eq!(std::fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o600, "{}", f.display());
            }
        }
        let entries = std::fs::read_dir(dir.path().join("identity")).unwrap().count();
        assert_eq!(entries, 2, "no temp file left behind");
        assert!(!format!("{:?}", again.token_for("ws://b", "operator")).contains("tok-b"), "Debug redacts");
    }

    #[test]
    fn a_token_file_of_another_identity_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let device = CliDevice::load(dir.path()).unwrap().unwrap();
        device.store("ws://a", "operator", "tok-a", &[], None).unwrap();
        std::fs::remove_file(identity_file(dir.path())).unwrap();
        let other = CliDevice::load(dir.path()).unwrap().unwrap();
        assert_ne!(other.identity().device_id(), device.identity().device_id());
        assert_eq!(other.token_for("ws://a", "operator"), None);
    }
}
