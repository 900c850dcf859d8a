//! Signed media URLs, `/media/{token}` (contract comfyui-openclaw §3.8, with its gaps closed).
//!
//! A token names one stored output of one job and carries its own expiry and the channel it
//! was minted for; it is `base64url(payload) "." base64url(HMAC-SHA256(key, payload))` with
//! `payload = "v1\n<job>\n<file>\n<expiresAtMs>\n<binding>"`. The key is 32 random bytes made
//! once and kept in the KvStore, so links survive restarts and no config secret is reused.
//!
//! Serving checks, in order: the MAC (constant time), the expiry, that the job still exists and
//! is still bound to the channel the link names (upstream signs the channel but never checks
//! it), that the file is one of the job's recorded outputs, and that the resolved path lies
//! inside `<state_dir>/media/<job>/`. Forged, expired and wrongly bound links are refused
//! (403); links to jobs or files that are gone are not found (404).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde_json::Value;
use sha2::Sha256;

use clawgate_store::{JobRecord, JobStore, KvStore};

use crate::config_service::ConfigService;
use crate::gateway::Store;
use crate::time::now_ms;

/// KvStore key of the hex-encoded signing key.
pub const KEY_NAME: &str = "media.signingKey";
/// How long a link is good for without `comfy.media.ttlSeconds`.
const DEFAULT_TTL_SECS: u64 = 24 * 60 * 60;
/// Longest configurable lifetime of a link.
const MAX_TTL_SECS: u64 = 7 * 24 * 60 * 60;
/// Format tag, so the payload layout can change without old links being misread.
const VERSION: &str = "v1";

type HmacSha256 = Hmac<Sha256>;

/// Why a token does not give access, by what the server answers.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// Not a token this gateway could have made.
    #[error("malformed media link")]
    Malformed,
    /// The signature does not match: tampered or made with another key.
    #[error("invalid media link signature")]
    Forged,
    /// Past its expiry.
    #[error("media link expired")]
    Expired,
    /// Made for another channel than the job now belongs to.
    #[error("media link is not valid for this job's channel")]
    WrongBinding,
    /// The job or the file is gone (or never existed).
    #[error("media not found")]
    NotFound,
    /// Storage failed; the detail is logged, not shown.
    #[error("media storage unavailable: {0}")]
    Unavailable(String),
}

impl MediaError {
    /// Refused (403) rather than missing (404) or broken (503).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, MediaError::Malformed | MediaError::Forged | MediaError::Expired | MediaError::WrongBinding)
    }
}

/// What a valid token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The job whose output it is.
    pub job_id: String,
    /// The stored file name (as in the job's outputs).
    pub filename: String,
    /// The channel it was minted for (see [`binding_for`]).
    pub binding: String,
    /// Not valid at or after this moment.
    pub expires_at_ms: i64,
}

/// A file ready to be served.
#[derive(Debug, Clone)]
pub struct MediaFile {
    /// Where it is (inside the media directory).
    pub path: PathBuf,
    /// Its name, for `Content-Disposition`.
    pub filename: String,
    /// From its extension.
    pub content_type: &'static str,
    /// Its length.
    pub size: u64,
}

/// The channel a job's media is bound to: where it is delivered (`telegram:default:200`), or
/// `operator` for a job only operator clients see.
pub fn binding_for(job: &JobRecord) -> String {
    let d = job.deliver_to.as_ref();
    let part = |k: &str| d.and_then(|d| d.get(k)).and_then(Value::as_str).filter(|s| !s.is_empty());
    match (part("channel"), part("chatId")) {
        (Some(ch), Some(chat)) => format!("{ch}:{}:{chat}", part("account").unwrap_or("default")),
        _ => "operator".to_owned(),
    }
}

/// A job id or stored file name: plain characters only, never `.`/`..` or a path.
fn safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && !s.starts_with('.')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

fn mac(key: &[u8], payload: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; this cannot fail.
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key"));
    m.update(payload);
    m
}

/// The token for `grant` under `key`.
pub fn encode(key: &[u8], grant: &Grant) -> String {
    let binding: String = grant.binding.chars().map(|c| if c == '\n' { ' ' } else { c }).collect();
    let payload = format!("{VERSION}\n{}\n{}\n{}\n{binding}", grant.job_id, grant.filename, grant.expires_at_ms);
    let sig = mac(key, payload.as_bytes()).finalize().into_bytes();
    format!("{}.{}", B64.encode(payload.as_bytes()), B64.encode(sig))
}

/// Check a token's signature (constant time) and expiry as of `now_ms`.
pub fn decode(key: &[u8], token: &str, now_ms: i64) -> Result<Grant, MediaError> {
    let (payload_b64, sig_b64) = token.split_once('.').ok_or(MediaError::Malformed)?;
    let payload = B64.decode(payload_b64).map_err(|_| MediaError::Malformed)?;
    let sig = B64.decode(sig_b64).map_err(|_| MediaError::Malformed)?;
    mac(key, &payload).verify_slice(&sig).map_err(|_| MediaError::Forged)?;
    let payload = String::from_utf8(payload).map_err(|_| MediaError::Malformed)?;
    let mut parts = payload.splitn(5, '\n');
    let (Some(VERSION), Some(job), Some(file), Some(exp), Some(binding)) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(MediaError::Malformed);
    };
    let expires_at_ms: i64 = exp.parse().map_err(|_| MediaError::Malformed)?;
    if now_ms >= expires_at_ms {
        return Err(MediaError::Expired);
    }
    if !safe_name(job) || !safe_name(file) {
        return Err(MediaError::Malformed);
    }
    Ok(Grant { job_id: job.to_owned(), filename: file.to_owned(), binding: binding.to_owned(), expires_at_ms })
}

/// Signs links to job outputs and opens the file a link grants. Cheap to clone; built with
/// what it reads: the store (the signing key, the jobs), the media directory and the config
/// (`comfy.media.ttlSeconds`, read when a link is made, so a changed TTL applies at once).
#[derive(Clone)]
pub struct MediaSigner {
    store: Store,
    /// `<state_dir>/media`: every served file lies in `<media_dir>/<job>/`.
    media_dir: Arc<Path>,
    config: ConfigService,
}

impl std::fmt::Debug for MediaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaSigner").field("media_dir", &self.media_dir).finish_non_exhaustive()
    }
}

impl MediaSigner {
    /// A signer over `store` serving files under `<state_dir>/media`.
    pub fn new(store: Store, state_dir: &Path, config: ConfigService) -> Self {
        Self { store, media_dir: state_dir.join("media").into(), config }
    }

    /// Where the outputs of `job_id` are stored (and served from): `<state_dir>/media/<job>`.
    pub fn job_dir(&self, job_id: &str) -> PathBuf {
        self.media_dir.join(job_id)
    }

    /// The signing key, made on first use.
    async fn key(&self) -> Result<Vec<u8>, MediaError> {
        let stored = self
            .store
            .get_or_init(KEY_NAME, || {
                let mut bytes = [0u8; 32];
                rand::thread_rng().fill_bytes(&mut bytes);
                hex::encode(bytes)
            })
            .await
            .map_err(|e| MediaError::Unavailable(e.to_string()))?;
        hex::decode(stored.trim()).map_err(|_| MediaError::Unavailable(format!("{KEY_NAME} in the store is not hex")))
    }

    /// How long new links last: `comfy.media.ttlSeconds` (1 s … 7 days), else a day.
    fn ttl_ms(&self) -> i64 {
        let cfg = self.config.current();
        let secs = cfg.config.comfy.as_ref().and_then(|c| c.media.ttl_seconds).unwrap_or(DEFAULT_TTL_SECS);
        (secs.clamp(1, MAX_TTL_SECS) * 1000) as i64
    }

    /// The absolute `{gateway.publicUrl}/media/<token>` link to one stored output of `job`, for
    /// platforms that fetch images by URL (LINE).
    pub async fn public_link(&self, job: &JobRecord, filename: &str) -> Result<String, PublicUrlError> {
        let root = self.config.current().config.gateway.public_url.clone();
        public_url(root.as_deref(), self.signed_path(job, filename).await)
    }

    /// `/media/<token>` for one stored output of `job`, or `None` if no key can be had (logged).
    pub async fn signed_path(&self, job: &JobRecord, filename: &str) -> Option<String> {
        match self.key().await {
            Ok(k) => {
                let grant = Grant {
                    job_id: job.id.clone(),
                    filename: filename.to_owned(),
                    binding: binding_for(job),
                    expires_at_ms: now_ms() + self.ttl_ms(),
                };
                Some(format!("/media/{}", encode(&k, &grant)))
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot sign a media URL");
                None
            }
        }
    }

    /// The file a token grants, after every check in the module docs.
    pub async fn open(&self, token: &str) -> Result<MediaFile, MediaError> {
        let grant = decode(&self.key().await?, token, now_ms())?;
        let job = self
            .store
            .get_job(&grant.job_id)
            .await
            .map_err(|e| MediaError::Unavailable(e.to_string()))?
            .ok_or(MediaError::NotFound)?;
        if binding_for(&job) != grant.binding {
            return Err(MediaError::WrongBinding);
        }
        let recorded = job
            .outputs
            .as_array()
            .into_iter()
            .flatten()
            .any(|o| o.get("filename").and_then(Value::as_str) == Some(grant.filename.as_str()));
        if !recorded {
            return Err(MediaError::NotFound);
        }
        let dir = self.job_dir(&grant.job_id);
        let (dir, path) =
            match (tokio::fs::canonicalize(&dir).await, tokio::fs::canonicalize(dir.join(&grant.filename)).await) {
                (Ok(d), Ok(p)) => (d, p),
                _ => return Err(MediaError::NotFound),
            };
        if path.parent() != Some(dir.as_path()) {
            return Err(MediaError::NotFound);
        }
        let meta = tokio::fs::metadata(&path).await.map_err(|_| MediaError::NotFound)?;
        if !meta.is_file() {
            return Err(MediaError::NotFound);
        }
        Ok(MediaFile { path, content_type: content_type(&grant.filename), filename: grant.filename, size: meta.len() })
    }
}

/// Platforms that fetch images themselves from an absolute HTTPS link (no upload API), with
/// the largest image each takes.
const URL_FETCHING: &[(&str, u64)] = &[
    ("line", clawgate_channels::line::MAX_IMAGE_BYTES),
    // The webhook channel's backend gets every file as a signed link, never the bytes.
    ("webhook", clawgate_channels::webhook::MAX_LINKED_FILE_BYTES),
];

/// For a platform that fetches images from a link rather than taking an upload: the largest
/// image it takes. `None` for platforms that take uploads.
pub fn fetched_by_url(channel: &str) -> Option<u64> {
    URL_FETCHING.iter().find(|(c, _)| *c == channel).map(|(_, max)| *max)
}

/// Why an absolute link cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublicUrlError {
    /// `gateway.publicUrl` is not set.
    #[error(
        "gateway.publicUrl is not set, so there is no public link to send; set it to the gateway's public https:// address"
    )]
    NotConfigured,
    /// No signing key (logged where it failed).
    #[error("cannot sign a media link")]
    Unsigned,
}

/// `{gateway.publicUrl}/media/<token>`: the absolute link a platform fetches a stored output
/// from (LINE's `originalContentUrl`), from the configured public root and the output's
/// [`signed_path`].
pub fn public_url(root: Option<&str>, signed_path: Option<String>) -> Result<String, PublicUrlError> {
    let root = root.ok_or(PublicUrlError::NotConfigured)?;
    let path = signed_path.ok_or(PublicUrlError::Unsigned)?;
    Ok(format!("{}{path}", root.trim_end_matches('/')))
}

/// `Content-Type` by extension. Anything that a browser could run (HTML, SVG, scripts) is
/// served as a download.
pub fn content_type(filename: &str) -> &'static str {
    let ext = filename.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "flac" => "audio/flac",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            job_id: "job_abc".into(),
            filename: "out_00001_.png".into(),
            binding: "telegram:default:200".into(),
            expires_at_ms: 10_000,
        }
    }

    #[test]
    fn a_token_round_trips_until_it_expires() {
        let t = encode(b"k", &grant());
        assert_eq!(decode(b"k", &t, 9_999).unwrap(), grant());
        assert!(matches!(decode(b"k", &t, 10_000), Err(MediaError::Expired)));
    }

    #[test]
    fn tampering_or_another_key_is_forged() {
        let t = encode(b"k", &grant());
        assert!(matches!(decode(b"other", &t, 0), Err(MediaError::Forged)));
        // Swap in the payload of another file under the same signature.
        let other = Grant { filename: "secret.png".into(), ..grant() };
        let (payload, _) = encode(b"k", &other).split_once('.').map(|(p, s)| (p.to_owned(), s.to_owned())).unwrap();
        let (_, sig) = t.split_once('.').unwrap();
        assert!(matches!(decode(b"k", &format!("{payload}.{sig}"), 0), Err(MediaError::Forged)));
        assert!(matches!(decode(b"k", "no-dot", 0), Err(MediaError::Malformed)));
        assert!(matches!(decode(b"k", "!!.??", 0), Err(MediaError::Malformed)));
    }

    #[test]
    fn signed_names_that_would_escape_the_directory_are_refused() {
        for bad in ["../etc/passwd", "..", ".hidden", "a/b.png", ""] {
            let t = encode(b"k", &Grant { filename: bad.into(), ..grant() });
            assert!(matches!(decode(b"k", &t, 0), Err(MediaError::Malformed)), "{bad}");
        }
    }

    #[test]
    fn bindings_name_the_delivery_chat_or_the_operator() {
        let mut job = JobRecord {
            id: "job_1".into(),
            template_id: "t".into(),
            inputs: Value::Null,
            workflow: Value::Null,
            status: clawgate_store::JobStatus::Completed,
            worker: None,
            prompt_id: None,
            attempts: 1,
            max_attempts: 3,
            error: None,
            outputs: Value::Null,
            deliver_to: None,
            requested_by: None,
            approval_id: None,
            progress: None,
            created_at_ms: 0,
            updated_at_ms: 0,
            started_at_ms: None,
            ended_at_ms: None,
            seq: 0,
        };
        assert_eq!(binding_for(&job), "operator");
        job.deliver_to = Some(serde_json::json!({"channel": "telegram", "account": "main", "chatId": "200"}));
        assert_eq!(binding_for(&job), "telegram:main:200");
    }

    #[test]
    fn active_content_is_never_served_as_such() {
        assert_eq!(content_type("a.PNG"), "image/png");
        assert_eq!(content_type("x.svg"), "application/octet-stream");
        assert_eq!(content_type("x.html"), "application/octet-stream");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }
}
