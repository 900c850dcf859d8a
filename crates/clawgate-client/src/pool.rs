//! [`ClientPool`]: several connections for a backend with more traffic than one socket carries.
//!
//! Each session key is pinned to one connection by a hash of the key, so a session's requests
//! and events always travel over the same socket and stay in order; different sessions spread
//! over the pool. Each connection reconnects on its own (see
//! [`ReconnectPolicy`](crate::ReconnectPolicy)).

use crate::client::{Client, ConnectionState};
use crate::error::ClientError;
use crate::options::ClientOptions;
use crate::session::SessionHandle;

/// `size` connections with the same options; sessions pinned by key.
///
/// ```no_run
/// use clawgate_client::{ClientOptions, ClientPool};
/// # async fn run() -> Result<(), clawgate_client::ClientError> {
/// let opts = ClientOptions::new("ws://127.0.0.1:18789").token("t").scopes(["operator.read", "operator.write"]);
/// let pool = ClientPool::new(opts, 4).await?;
/// let session = pool.session("compose:doc:abc:ann");
/// session.chat_send("Hello").await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ClientPool {
    clients: Vec<Client>,
}

impl ClientPool {
    /// Connect `size` clients (at least one). Fails with the first connect error, closing the
    /// ones already open.
    pub async fn new(options: ClientOptions, size: usize) -> Result<ClientPool, ClientError> {
        let size = size.max(1);
        let connects = (0..size).map(|_| Client::connect(options.clone()));
        let results = futures_util::future::join_all(connects).await;
        let mut clients = Vec::with_capacity(size);
        let mut first_err = None;
        for result in results {
            match result {
                Ok(client) => clients.push(client),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(err) = first_err {
            for client in &clients {
                client.close().await;
            }
            return Err(err);
        }
        Ok(ClientPool { clients })
    }

    /// A pool of clients already connected (e.g. with different options each).
    pub fn from_clients(clients: Vec<Client>) -> Option<ClientPool> {
        (!clients.is_empty()).then_some(ClientPool { clients })
    }

    /// The connection `session_key` is pinned to.
    pub fn client_for(&self, session_key: &str) -> &Client {
        &self.clients[pin(session_key, self.clients.len())]
    }

    /// A handle on one session, on its pinned connection (same API as [`Client::session`]).
    pub fn session(&self, key: impl Into<String>) -> SessionHandle {
        let key = key.into();
        self.client_for(key.trim()).session(key)
    }

    /// Every connection of the pool.
    pub fn clients(&self) -> &[Client] {
        &self.clients
    }

    /// How many connections are up right now.
    pub fn connected(&self) -> usize {
        self.clients.iter().filter(|c| c.current_state() == ConnectionState::Connected).count()
    }

    /// Close every connection.
    pub async fn close(&self) {
        futures_util::future::join_all(self.clients.iter().map(Client::close)).await;
    }
}

/// Which of `n` connections serves `key`: FNV-1a of the key, stable across runs and builds
/// (unlike `std`'s randomly seeded hasher), so a key's place does not move between processes.
fn pin(key: &str, n: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % n as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_always_lands_on_the_same_connection_and_keys_spread() {
        let n = 4;
        let mut used = [0usize; 4];
        for i in 0..400 {
            let key = format!("compose:doc:{i}:user");
            let slot = pin(&key, n);
            assert_eq!(slot, pin(&key, n));
            used[slot] += 1;
        }
        assert!(used.iter().all(|&c| c > 50), "keys spread over every connection: {used:?}");
        assert_eq!(pin("anything", 1), 0);
        // Stable across builds: a fixed key has a fixed place.
        assert_eq!(pin("compose:doc:abc:ann", 1_000_003), pin("compose:doc:abc:ann", 1_000_003));
    }
}
