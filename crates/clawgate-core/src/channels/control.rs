//! Operator control of channel accounts without a restart: `channels.stop`, `channels.start`
//! and `channels.logout`.
//!
//! An account an operator stops is *held*: neither a config reload nor (for a logout) a
//! gateway restart starts it again; only `channels.start` does.
//!
//! * **stop** holds it for the life of this process only: the next gateway start runs every
//!   configured account, as the config says. A stop is an operator's pause, not a setting.
//! * **logout** holds it across restarts (persisted in the KvStore under [`LOGGED_OUT_KEY`]) and
//!   forgets the session the gateway kept for the account: what the adapter stored between runs
//!   (every KvStore key under `channel:<channel>:<account>:` — Telegram's update offset) and
//!   what it held in memory (Discord's session id, sequence and resume URL; Slack's Socket Mode
//!   URL), which goes with the stopped adapter. The next start begins a fresh session (Telegram
//!   asks for unconfirmed updates from the start: the inbox drops any it has already seen).
//!   Tokens and every other setting stay in the config: the gateway never rewrites secrets.
//!   Approved pairings and the outbox are not session state and stay too.
//!
//! While an account is held nothing of its traffic is lost: inbound messages already in the
//! inbox wait there and are routed when it starts, replies and `send`s wait in the outbox and go
//! out after the start, and the platform keeps what was not fetched (Telegram holds unconfirmed
//! updates; webhook platforms get 404 from the gateway and redeliver by their own rules).

use serde_json::json;

use clawgate_channels::{AccountConfig, AccountKey};
use clawgate_store::{ChannelStore, KvStore};

use super::ChannelService;
use super::ingress::state_prefix;
use crate::error::CoreError;

/// KvStore key of the logged-out accounts: a JSON array of `[channel, account]` pairs.
pub(crate) const LOGGED_OUT_KEY: &str = "channels.loggedOut";

/// Why an operator keeps an account from running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// `channels.stop`: until `channels.start` or the gateway's next start.
    Stopped,
    /// `channels.logout`: until `channels.start`, across restarts.
    LoggedOut,
}

impl Hold {
    /// As `channels.status` shows it (`healthState`).
    pub fn as_str(self) -> &'static str {
        match self {
            Hold::Stopped => "stopped",
            Hold::LoggedOut => "loggedOut",
        }
    }
}

/// What the gateway remembers of an account across its runs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Control {
    /// Held stopped by an operator.
    pub(crate) hold: Option<Hold>,
    /// When it last started (ms).
    pub(crate) last_start_at: Option<i64>,
    /// When it last stopped (ms).
    pub(crate) last_stop_at: Option<i64>,
    /// What its adapter last reported, kept at the stop so `channels.status` still shows when
    /// the stopped account last received and sent.
    pub(crate) last_seen: Option<clawgate_channels::ChannelSnapshot>,
}

/// One account after a control call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountControl {
    /// The account.
    pub key: AccountKey,
    /// Its receive loop runs.
    pub running: bool,
    /// Why an operator holds it stopped, if one does.
    pub hold: Option<Hold>,
    /// When it last started (ms).
    pub last_start_at: Option<i64>,
    /// When it last stopped (ms).
    pub last_stop_at: Option<i64>,
    /// `channels.logout`: whether session state was there and is now forgotten (stored keys
    /// deleted or a running session dropped).
    pub cleared: bool,
}

impl ChannelService {
    /// Change what the service remembers of `key`.
    pub(super) fn control_of(&self, key: &AccountKey, f: impl FnOnce(&mut Control)) {
        f(self.inner.control.lock().entry(key.clone()).or_default());
    }

    /// Whether an operator holds `key` stopped.
    pub(super) fn is_held(&self, key: &AccountKey) -> bool {
        self.inner.control.lock().get(key).is_some_and(|c| c.hold.is_some())
    }

    /// Read the persisted logouts (at start, before any account starts).
    pub(super) async fn load_holds(&self) {
        let stored = match self.inner.store.get(LOGGED_OUT_KEY).await {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "cannot read which channel accounts are logged out; starting every configured one");
                return;
            }
        };
        let pairs: Vec<(String, String)> = match stored.as_deref().map(serde_json::from_str).transpose() {
            Ok(p) => p.unwrap_or_default(),
            Err(e) => {
                tracing::error!(error = %e, "the stored list of logged-out channel accounts is unreadable; ignoring it");
                return;
            }
        };
        for (channel, account) in pairs {
            let key = AccountKey::new(&channel, &account);
            tracing::info!(account = %key, "channel account is logged out; `clawgate channels start` runs it again");
            self.control_of(&key, |c| c.hold = Some(Hold::LoggedOut));
        }
    }

    /// Persist the set of logged-out accounts.
    async fn save_logouts(&self) -> Result<(), CoreError> {
        let pairs: Vec<(String, String)> = self
            .inner
            .control
            .lock()
            .iter()
            .filter(|(_, c)| c.hold == Some(Hold::LoggedOut))
            .map(|(k, _)| (k.channel.clone(), k.account.clone()))
            .collect();
        self.inner.store.set(LOGGED_OUT_KEY, &json!(pairs).to_string()).await.map_err(CoreError::internal)
    }

    /// The configured accounts `channel` and `account` name: that one account, or every account
    /// of the channel when `account` is `None`. Unknown names are `INVALID_REQUEST` naming the
    /// configured ones.
    pub fn resolve_accounts(&self, channel: &str, account: Option<&str>) -> Result<Vec<AccountConfig>, CoreError> {
        let configured = self.configured_accounts().map_err(|e| CoreError::invalid(format!("channels config: {e}")))?;
        let mut channels: Vec<&str> = configured.iter().map(|a| a.key.channel.as_str()).collect();
        channels.dedup();
        if channel == "webchat" {
            return Err(CoreError::invalid(
                "the web chat is served by the gateway itself; it has no account to start, stop or log out",
            ));
        }
        let of_channel: Vec<&AccountConfig> = configured.iter().filter(|a| a.key.channel == channel).collect();
        if of_channel.is_empty() {
            let known: Vec<&str> = channels.into_iter().filter(|c| *c != "webchat").collect();
            return Err(CoreError::invalid(if known.is_empty() {
                format!("unknown channel \"{channel}\": no chat channel is configured (add one under channels.*)")
            } else {
                format!("unknown channel \"{channel}\"; configured channels: {}", known.join(", "))
            }));
        }
        match account {
            None => Ok(of_channel.into_iter().cloned().collect()),
            Some(id) => match of_channel.iter().find(|a| a.key.account == id) {
                Some(a) => Ok(vec![(*a).clone()]),
                None => {
                    let ids: Vec<&str> = of_channel.iter().map(|a| a.key.account.as_str()).collect();
                    Err(CoreError::invalid(format!(
                        "channel {channel} has no account \"{id}\"; configured accounts: {}",
                        ids.join(", ")
                    )))
                }
            },
        }
    }

    /// `channels.stop`: stop these accounts (waiting until their tasks ended) and hold them
    /// stopped for the life of this process. Idempotent.
    pub async fn stop_accounts(&self, channel: &str, account: Option<&str>) -> Result<Vec<AccountControl>, CoreError> {
        let _ops = self.inner.ops.lock().await;
        let targets = self.resolve_accounts(channel, account)?;
        let mut out = Vec::new();
        for cfg in targets {
            let key = cfg.key;
            // A logout stays a logout: stopping it again must not let the next restart run it.
            self.control_of(&key, |c| {
                c.hold.get_or_insert(Hold::Stopped);
            });
            if self.stop_account(&key).await {
                tracing::info!(account = %key, "channel account stopped by an operator");
            }
            out.push(self.control_state(&key, false));
        }
        Ok(out)
    }

    /// `channels.start`: start these accounts if they are not running (a running one is left
    /// as it is; one whose receive loop ended on a fatal error is restarted), lift any hold,
    /// and route the inbound messages that waited for them. `INVALID_REQUEST` naming every
    /// account that cannot run (disabled, no token, bad settings); the others are started.
    pub async fn start_accounts(&self, channel: &str, account: Option<&str>) -> Result<Vec<AccountControl>, CoreError> {
        let _ops = self.inner.ops.lock().await;
        let targets = self.resolve_accounts(channel, account)?;
        let mut lifted_logout = false;
        let mut failed = Vec::new();
        let mut out = Vec::new();
        for cfg in targets {
            let key = cfg.key.clone();
            let was = self.inner.control.lock().get_mut(&key).and_then(|c| c.hold.take());
            lifted_logout |= was == Some(Hold::LoggedOut);
            let running = self.account(&key).is_some_and(|rt| rt.running.load(std::sync::atomic::Ordering::Relaxed));
            if !running {
                // Gone after a fatal error, or never started: start it afresh.
                self.stop_account(&key).await;
                match self.start_account(cfg) {
                    Ok(()) => {
                        tracing::info!(account = %key, "channel account started by an operator");
                        self.resume_inbound(&key).await;
                    }
                    Err(reason) => failed.push(format!("{key}: {reason}")),
                }
            }
            out.push(self.control_state(&key, false));
        }
        if lifted_logout {
            self.save_logouts().await?;
        }
        if !failed.is_empty() {
            return Err(CoreError::invalid(format!("cannot start {}", failed.join("; "))));
        }
        Ok(out)
    }

    /// `channels.logout`: hold these accounts stopped across restarts, stop them, and forget
    /// the session the gateway kept for them (see the module docs for exactly what).
    pub async fn logout_accounts(
        &self,
        channel: &str,
        account: Option<&str>,
    ) -> Result<Vec<AccountControl>, CoreError> {
        let _ops = self.inner.ops.lock().await;
        let targets = self.resolve_accounts(channel, account)?;
        for cfg in &targets {
            self.control_of(&cfg.key, |c| c.hold = Some(Hold::LoggedOut));
        }
        // Recorded before anything stops: a crash from here on leaves the accounts logged out.
        self.save_logouts().await?;
        let mut out = Vec::new();
        for cfg in targets {
            let key = cfg.key;
            let was_running = self.stop_account(&key).await;
            let deleted = self.inner.store.delete_prefix(&state_prefix(&key)).await.map_err(CoreError::internal)?;
            tracing::info!(account = %key, stored_keys = deleted, "channel account logged out by an operator");
            out.push(self.control_state(&key, was_running || deleted > 0));
        }
        Ok(out)
    }

    /// Where `key` stands now.
    fn control_state(&self, key: &AccountKey, cleared: bool) -> AccountControl {
        let running = self.account(key).is_some_and(|rt| rt.running.load(std::sync::atomic::Ordering::Relaxed));
        let c = self.inner.control.lock().get(key).cloned().unwrap_or_default();
        AccountControl {
            key: key.clone(),
            running,
            hold: c.hold,
            last_start_at: c.last_start_at,
            last_stop_at: c.last_stop_at,
            cleared,
        }
    }

    /// Route the inbox rows of `key` that waited while it was held.
    pub(super) async fn resume_inbound(&self, key: &AccountKey) {
        match self.inner.store.pending_inbound(10_000).await {
            Ok(rows) => {
                for rec in rows.into_iter().filter(|r| r.channel == key.channel && r.account == key.account) {
                    self.spawn_route(rec);
                }
            }
            Err(e) => {
                tracing::error!(account = %key, error = %e, "cannot read the inbox; waiting messages are routed at the next start");
            }
        }
    }
}
