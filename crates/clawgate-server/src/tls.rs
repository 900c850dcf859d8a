//! TLS on the gateway port (`gateway.tls`): rustls through `tokio-rustls`, fed by the same
//! accept loop as plain connections (`listener`), so the connection cap, the header timeout and
//! graceful shutdown hold for `wss://` exactly as for `ws://`. A hand-rolled acceptor rather than
//! `axum-server`: the loop already owns every socket's life and slot, and `axum-server` would
//! bring its own loop without them.
//!
//! The certificate and key are re-read when either file changes (size or modification time,
//! looked at on each accept; two `stat` calls). A new pair that does not load or does not match
//! keeps the old one serving and logs an error once per change.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// What identifies one version of a file: its modification time, length and (on Unix) inode,
/// so a pair replaced by rename is seen even within one timestamp tick.
type Stamp = Option<(SystemTime, u64, u64)>;

/// The certificate and key files, and the acceptor built from their current contents.
#[derive(Debug)]
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    state: Mutex<State>,
}

struct State {
    acceptor: TlsAcceptor,
    stamps: (Stamp, Stamp),
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").field("stamps", &self.stamps).finish_non_exhaustive()
    }
}

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some((meta.modified().ok()?, meta.len(), inode))
}

impl Tls {
    /// Loads the pair; an error names the file and what is wrong with it.
    ///
    /// # Errors
    /// A readable sentence for the operator.
    pub fn load(cert: PathBuf, key: PathBuf) -> Result<Arc<Self>, String> {
        let stamps = (stamp(&cert), stamp(&key));
        let acceptor = build(&cert, &key)?;
        Ok(Arc::new(Self { cert, key, state: Mutex::new(State { acceptor, stamps }) }))
    }

    /// The acceptor for a new connection, reloading the pair first when a file changed.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        let now = (stamp(&self.cert), stamp(&self.key));
        let mut state = self.state.lock();
        if now != state.stamps {
            state.stamps = now;
            match build(&self.cert, &self.key) {
                Ok(acceptor) => {
                    state.acceptor = acceptor;
                    tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                }
                Err(e) => {
                    tracing::error!(error = %e, "TLS files changed but do not load; still serving the previous certificate")
                }
            }
        }
        state.acceptor.clone()
    }
}

fn build(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read the TLS certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("the TLS certificate file {} holds no PEM certificate", cert.display()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read the TLS private key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| {
            format!("the TLS key {} does not go with the certificate {}: {e}", key.display(), cert.display())
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
