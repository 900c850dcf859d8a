//! Ed25519 device identity and the device-proof signature payloads (contract §3.4).
//!
//! A device proves who it is by signing a pipe-separated string that binds the challenge nonce,
//! the client's self-description and its credential. The server rebuilds the same string from
//! the `connect` params, so a single byte of difference (scope order, platform case) makes the
//! signature invalid: the payload builders here are the one place that spells those bytes.

use std::fs;
use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use clawgate_protocol::connect::DeviceProof;

/// Version of the identity file format written by [`DeviceIdentity::load_or_create`].
const IDENTITY_FILE_VERSION: u32 = 1;

/// Decodes base64url with or without padding: identity files written by hand or by other tools
/// are not always consistent about it.
const B64URL_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Which signature payload a device signs. The server tries v3 first, then v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignatureVersion {
    /// `v3|…|platform|deviceFamily` — what current clients send.
    #[default]
    V3,
    /// The legacy `v2|…|nonce` payload (what `openclaw-node` sends).
    V2,
}

/// The connect fields a device signature covers, besides the device id.
#[derive(Debug, Clone, Copy)]
pub struct SignatureInput<'a> {
    /// `client.id`.
    pub client_id: &'a str,
    /// `client.mode`.
    pub client_mode: &'a str,
    /// The role sent in `connect` (`operator` when absent).
    pub role: &'a str,
    /// The requested scopes, in the order sent.
    pub scopes: &'a [String],
    /// `device.signedAt` (ms).
    pub signed_at_ms: i64,
    /// `auth.token ?? auth.deviceToken ?? auth.bootstrapToken ?? ""`
    /// (see [`ConnectAuth::signed_token`](clawgate_protocol::connect::ConnectAuth::signed_token)).
    pub token: &'a str,
    /// The challenge nonce.
    pub nonce: &'a str,
    /// `client.platform` (v3 only).
    pub platform: Option<&'a str>,
    /// `client.deviceFamily` (v3 only).
    pub device_family: Option<&'a str>,
}

/// v3 normalisation of platform and device family: trim, ASCII-lowercase, `""` when absent.
fn norm(value: Option<&str>) -> String {
    value.map(|v| v.trim().to_ascii_lowercase()).unwrap_or_default()
}

/// The exact v3 payload string: `v3|deviceId|clientId|clientMode|role|scopes|signedAtMs|token|nonce|platform|deviceFamily`.
pub fn v3_payload(device_id: &str, input: &SignatureInput<'_>) -> String {
    format!("{}|{}|{}", v2_body("v3", device_id, input), norm(input.platform), norm(input.device_family))
}

/// The exact legacy v2 payload string: `v2|deviceId|clientId|clientMode|role|scopes|signedAtMs|token|nonce`.
pub fn v2_payload(device_id: &str, input: &SignatureInput<'_>) -> String {
    v2_body("v2", device_id, input)
}

fn v2_body(version: &str, device_id: &str, input: &SignatureInput<'_>) -> String {
    format!(
        "{version}|{device_id}|{}|{}|{}|{}|{}|{}|{}",
        input.client_id,
        input.client_mode,
        input.role,
        input.scopes.join(","),
        input.signed_at_ms,
        input.token,
        input.nonce
    )
}

/// Why an identity file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading, writing or creating the file (or its directory) failed.
    #[error("identity file {path}: {source}")]
    Io {
        /// The file involved.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file exists but is not a usable identity; it is left untouched.
    #[error("identity file {path} is invalid: {reason}")]
    Invalid {
        /// The file involved.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// On-disk form: raw keys as unpadded base64url, plus the derived id so a human can match the
/// file to a pairing request without running code.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdentityFile {
    version: u32,
    device_id: String,
    public_key: String,
    private_key: String,
}

/// An Ed25519 device keypair.
///
/// `Debug` shows only the device id: the private key never reaches logs.
#[derive(Clone)]
pub struct DeviceIdentity {
    key: SigningKey,
    device_id: String,
}

impl std::fmt::Debug for DeviceIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceIdentity").field("device_id", &self.device_id).finish_non_exhaustive()
    }
}

impl DeviceIdentity {
    /// A fresh random identity (from the OS RNG).
    pub fn generate() -> Self {
        Self::from_signing_key(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// An identity from a 32-byte Ed25519 seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self::from_signing_key(SigningKey::from_bytes(seed))
    }

    fn from_signing_key(key: SigningKey) -> Self {
        let device_id = device_id_for(&key.verifying_key());
        Self { key, device_id }
    }

    /// Load the identity stored at `path`, or create one there (mode 0600, parent directories
    /// created) when the file does not exist. A file that exists but cannot be parsed is an
    /// error, never silently replaced: replacing it would orphan the device's pairing.
    pub fn load_or_create(path: impl AsRef<Path>) -> Result<Self, IdentityError> {
        let path = path.as_ref();
        match fs::read_to_string(path) {
            Ok(text) => Self::parse_file(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let identity = Self::generate();
                identity.save(path)?;
                Ok(identity)
            }
            Err(source) => Err(IdentityError::Io { path: path.display().to_string(), source }),
        }
    }

    fn parse_file(path: &Path, text: &str) -> Result<Self, IdentityError> {
        let invalid = |reason: String| IdentityError::Invalid { path: path.display().to_string(), reason };
        let file: IdentityFile = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if file.version != IDENTITY_FILE_VERSION {
            return Err(invalid(format!("unsupported version {}", file.version)));
        }
        let seed = B64URL_LENIENT.decode(file.private_key.trim()).map_err(|e| invalid(format!("privateKey: {e}")))?;
        let seed: [u8; 32] =
            seed.try_into().map_err(|_| invalid("privateKey must be a 32-byte Ed25519 seed".to_owned()))?;
        let identity = Self::from_seed(&seed);
        if B64URL_LENIENT.decode(file.public_key.trim()).ok().as_deref() != Some(identity.public_key_bytes().as_slice())
        {
            return Err(invalid("publicKey does not belong to privateKey".to_owned()));
        }
        if !file.device_id.eq_ignore_ascii_case(&identity.device_id) {
            return Err(invalid("deviceId does not match publicKey".to_owned()));
        }
        Ok(identity)
    }

    /// Write this identity to `path` (mode 0600 on Unix, parent directories created), replacing
    /// the file atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), IdentityError> {
        let path = path.as_ref();
        let io = |source| IdentityError::Io { path: path.display().to_string(), source };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_private_dir(parent).map_err(io)?;
        }
        let file = IdentityFile {
            version: IDENTITY_FILE_VERSION,
            device_id: self.device_id.clone(),
            public_key: self.public_key_b64url(),
            private_key: URL_SAFE_NO_PAD.encode(self.key.to_bytes()),
        };
        let mut text = serde_json::to_string_pretty(&file).map_err(|e| io(std::io::Error::other(e)))?;
        text.push('\n');
        // Write a sibling temp file created with 0600 and rename it over the target, so a crash
        // never leaves a half-written key and the key is never readable by others, not even briefly.
        let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
        let result = (|| {
            let mut f = open_private(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(io)
    }

    /// `hex(sha256(raw public key))`, 64 lowercase hex digits.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// The raw 32-byte public key.
    pub fn public_key_bytes(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The public key as unpadded base64url, as sent in `device.publicKey`.
    pub fn public_key_b64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.public_key_bytes())
    }

    /// The verifying half of the keypair.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Sign an arbitrary payload; the signature is unpadded base64url.
    pub fn sign_payload(&self, payload: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.key.sign(payload.as_bytes()).to_bytes())
    }

    /// Sign the v3 payload of `input` (see [`v3_payload`]); unpadded base64url.
    pub fn sign_v3(&self, input: &SignatureInput<'_>) -> String {
        self.sign_payload(&v3_payload(&self.device_id, input))
    }

    /// Sign the legacy v2 payload of `input` (see [`v2_payload`]); unpadded base64url.
    pub fn sign_v2(&self, input: &SignatureInput<'_>) -> String {
        self.sign_payload(&v2_payload(&self.device_id, input))
    }

    /// The complete `device` object of `connect` params.
    pub fn proof(&self, version: SignatureVersion, input: &SignatureInput<'_>) -> DeviceProof {
        let signature = match version {
            SignatureVersion::V3 => self.sign_v3(input),
            SignatureVersion::V2 => self.sign_v2(input),
        };
        DeviceProof {
            id: self.device_id.clone(),
            public_key: self.public_key_b64url(),
            signature,
            signed_at: input.signed_at_ms,
            nonce: input.nonce.to_owned(),
        }
    }
}

/// `hex(sha256(raw32))` of a public key.
pub fn device_id_for(key: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Decode a base64url (padded or not) Ed25519 signature, e.g. to verify a proof in tests.
pub fn decode_signature(signature: &str) -> Option<ed25519_dalek::Signature> {
    let bytes = B64URL_LENIENT.decode(signature).ok()?;
    ed25519_dalek::Signature::from_slice(&bytes).ok()
}

/// Decode a base64url (padded or not) raw Ed25519 public key.
pub fn decode_public_key(public_key: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = B64URL_LENIENT.decode(public_key).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

#[cfg(unix)]
fn open_private(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new().write(true).create_new(true).open(path)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: [u8; 32] = [7; 32];

    fn scopes() -> Vec<String> {
        vec!["operator.read".to_owned(), "operator.write".to_owned()]
    }

    fn input(scopes: &[String]) -> SignatureInput<'_> {
        SignatureInput {
            client_id: "cli",
            client_mode: "cli",
            role: "operator",
            scopes,
            signed_at_ms: 1_795_311_164_524,
            token: "secret",
            nonce: "de925419-5522-41fa-8253-89f2cababb27",
            platform: Some("  Linux "),
            device_family: Some("MacBookPro"),
        }
    }

    #[test]
    fn device_id_is_lowercase_hex_sha256_of_raw_public_key() {
        let id = DeviceIdentity::from_seed(&SEED);
        let expected = hex::encode(Sha256::digest(id.public_key_bytes()));
        assert_eq!(id.device_id(), expected);
        assert_eq!(id.device_id().len(), 64);
        assert!(id.device_id().chars().all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()));
        assert_eq!(URL_SAFE_NO_PAD.decode(id.public_key_b64url()).unwrap(), id.public_key_bytes());
        assert!(!id.public_key_b64url().contains('='));
    }

    #[test]
    fn v3_payload_joins_scopes_in_order_and_normalises_platform_and_family() {
        let s = scopes();
        let payload = v3_payload("dev", &input(&s));
        assert_eq!(
            payload,
            "v3|dev|cli|cli|operator|operator.read,operator.write|1795311164524|secret|de925419-5522-41fa-8253-89f2cababb27|linux|macbookpro"
        );
    }

    #[test]
    fn v3_payload_uses_empty_strings_for_absent_platform_family_and_token() {
        let s: Vec<String> = Vec::new();
        let mut i = input(&s);
        i.platform = None;
        i.device_family = None;
        i.token = "";
        assert_eq!(
            v3_payload("dev", &i),
            "v3|dev|cli|cli|operator||1795311164524||de925419-5522-41fa-8253-89f2cababb27||"
        );
    }

    #[test]
    fn v2_payload_stops_after_nonce() {
        let s = scopes();
        assert_eq!(
            v2_payload("dev", &input(&s)),
            "v2|dev|cli|cli|operator|operator.read,operator.write|1795311164524|secret|de925419-5522-41fa-8253-89f2cababb27"
        );
    }

    #[test]
    fn v3_and_v2_signatures_verify_against_the_public_key() {
        let id = DeviceIdentity::from_seed(&SEED);
        let s = scopes();
        let i = input(&s);
        let key = decode_public_key(&id.public_key_b64url()).unwrap();
        for (sig, payload) in
            [(id.sign_v3(&i), v3_payload(id.device_id(), &i)), (id.sign_v2(&i), v2_payload(id.device_id(), &i))]
        {
            assert!(!sig.contains('=') && !sig.contains('+') && !sig.contains('/'), "base64url unpadded: {sig}");
            let sig = decode_signature(&sig).unwrap();
            key.verify_strict(payload.as_bytes(), &sig).unwrap();
        }
        // A v3 signature does not verify as v2: the server's fallback really distinguishes them.
        let v3 = decode_signature(&id.sign_v3(&i)).unwrap();
        assert!(key.verify_strict(v2_payload(id.device_id(), &i).as_bytes(), &v3).is_err());
    }

    #[test]
    fn proof_carries_id_key_nonce_and_signed_at() {
        let id = DeviceIdentity::generate();
        let s = scopes();
        let proof = id.proof(SignatureVersion::V2, &input(&s));
        assert_eq!(proof.id, id.device_id());
        assert_eq!(proof.public_key, id.public_key_b64url());
        assert_eq!(proof.signed_at, 1_795_311_164_524);
        assert_eq!(proof.nonce, "de925419-5522-41fa-8253-89f2cababb27");
        let sig = decode_signature(&proof.signature).unwrap();
        id.verifying_key().verify_strict(v2_payload(id.device_id(), &input(&s)).as_bytes(), &sig).unwrap();
    }

    #[test]
    fn load_or_create_creates_a_private_file_and_reloads_the_same_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/state/device.json");
        let created = DeviceIdentity::load_or_create(&path).unwrap();
        let loaded = DeviceIdentity::load_or_create(&path).unwrap();
        assert_eq!(created.device_id(), loaded.device_id());
        assert_eq!(created.public_key_bytes(), loaded.public_key_bytes());

        let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["deviceId"], created.device_id());
        assert_eq!(v["publicKey"], created.public_key_b64url());
        assert_eq!(URL_SAFE_NO_PAD.decode(v["privateKey"].as_str().unwrap()).unwrap().len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1, "no temp file left behind");
    }

    #[test]
    fn corrupt_identity_file_is_an_error_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.json");
        fs::write(&path, "{\"version\":1}").unwrap();
        assert!(matches!(DeviceIdentity::load_or_create(&path), Err(IdentityError::Invalid { .. })));
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"version\":1}");
    }

    #[test]
    fn identity_file_with_foreign_public_key_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.json");
        DeviceIdentity::from_seed(&SEED).save(&path).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        v["publicKey"] = DeviceIdentity::generate().public_key_b64url().into();
        fs::write(&path, v.to_string()).unwrap();
        let err = DeviceIdentity::load_or_create(&path).unwrap_err();
        assert!(err.to_string().contains("publicKey does not belong"), "{err}");
    }

    #[test]
    fn debug_output_does_not_contain_the_private_key() {
        let id = DeviceIdentity::from_seed(&SEED);
        let seed_b64 = URL_SAFE_NO_PAD.encode(SEED);
        let dbg = format!("{id:?}");
        assert!(dbg.contains(id.device_id()));
        assert!(!dbg.contains(&seed_b64));
    }
}
