//! The one session-key rule, for every surface that names a session: WS methods (`chat.*`,
//! `sessions.*`, `agent`), the HTTP API (`x-openclaw-session-key`) and hooks.
//!
//! A stored session key is `agent:<agentId>:<rest>`. Clients may write it that way, as
//! `agent:<agentId>` (that agent's `main` session), or bare (`<rest>`, under the agent the
//! surface chooses, usually the default one). What a client writes is trimmed and holds
//! 1 to [`SessionKey::MAX_LEN`] characters: upstream's contract allows 512 (`ChatSendParams`
//! `sessionKey: string(min1,max512)`), the only limit it states, so every surface uses it
//! (the HTTP API used to stop at 256 bytes and hooks had no limit).
//!
//! Keys whose `<rest>` starts with a [reserved prefix](SessionKey::RESERVED_PREFIXES) belong to
//! the gateway's own sessions (sub-agents, cron jobs, ACP); [`SessionKey::is_reserved`] says so,
//! and the surfaces open to outside callers refuse them.

use std::fmt;

/// Why a client's session key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionKeyError {
    /// Empty (after trimming) or longer than [`SessionKey::MAX_LEN`] characters.
    #[error("sessionKey must be 1 to {} characters", SessionKey::MAX_LEN)]
    Length,
    /// `agent:` without an agent id, or with an empty rest (`agent:`, `agent::x`, `agent:x:`).
    #[error("invalid session key \"{0}\": expected agent:<agentId>:<key>")]
    Malformed(String),
}

/// A canonical session key: `agent:<agentId>:<rest>`, both parts non-empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey {
    full: String,
    /// Byte length of `<agentId>` (it starts after `agent:`).
    agent_len: usize,
}

const PREFIX: &str = "agent:";

impl SessionKey {
    /// The longest key a client may write, in characters.
    pub const MAX_LEN: usize = 512;
    /// The name of every agent's main session.
    pub const MAIN: &'static str = "main";
    /// `<rest>` prefixes reserved for the gateway's own sessions (contract §8).
    pub const RESERVED_PREFIXES: [&'static str; 3] = ["subagent:", "cron:", "acp:"];

    /// Read a key a client wrote. A bare key belongs to `agent_id`; `agent:<id>` is that agent's
    /// main session.
    pub fn parse(raw: &str, agent_id: &str) -> Result<Self, SessionKeyError> {
        let key = raw.trim();
        if key.is_empty() || key.chars().count() > Self::MAX_LEN {
            return Err(SessionKeyError::Length);
        }
        match key.strip_prefix(PREFIX) {
            Some(rest) => {
                let (id, tail) = rest.split_once(':').unwrap_or((rest, Self::MAIN));
                if id.is_empty() || tail.is_empty() {
                    return Err(SessionKeyError::Malformed(key.to_owned()));
                }
                Ok(Self::join(id, tail))
            }
            None => Self::for_agent(agent_id, key),
        }
    }

    /// The key of `rest` under `agent_id` (e.g. `openai-user:alice`), which the gateway itself
    /// composes; `rest` is held to the same limit as a client's key.
    pub fn for_agent(agent_id: &str, rest: &str) -> Result<Self, SessionKeyError> {
        if rest.is_empty() || rest.chars().count() > Self::MAX_LEN {
            return Err(SessionKeyError::Length);
        }
        if agent_id.is_empty() {
            return Err(SessionKeyError::Malformed(format!("{PREFIX}:{rest}")));
        }
        Ok(Self::join(agent_id, rest))
    }

    /// A key already in canonical form (`agent:<agentId>:<rest>`, as stored); `None` for
    /// anything else. Nothing is trimmed, completed or limited: stored keys passed the rule
    /// when they were made.
    pub fn from_canonical(full: &str) -> Option<Self> {
        let (id, rest) = full.strip_prefix(PREFIX)?.split_once(':')?;
        (!id.is_empty() && !rest.is_empty()).then(|| Self::join(id, rest))
    }

    fn join(agent_id: &str, rest: &str) -> Self {
        Self { full: format!("{PREFIX}{agent_id}:{rest}"), agent_len: agent_id.len() }
    }

    /// Whether the key is written in full (`agent:…`), rather than bare.
    pub fn is_qualified(raw: &str) -> bool {
        raw.trim().starts_with(PREFIX)
    }

    /// `agent:<agentId>:<rest>`.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The owning agent.
    pub fn agent_id(&self) -> &str {
        &self.full[PREFIX.len()..PREFIX.len() + self.agent_len]
    }

    /// What follows the agent id.
    pub fn rest(&self) -> &str {
        &self.full[PREFIX.len() + self.agent_len + 1..]
    }

    /// Whether the key names one of the gateway's own sessions.
    pub fn is_reserved(&self) -> bool {
        Self::RESERVED_PREFIXES.iter().any(|p| self.rest().starts_with(p))
    }

    /// The key and its agent, owned.
    pub fn into_parts(self) -> (String, String) {
        let agent = self.agent_id().to_owned();
        (self.full, agent)
    }
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl From<SessionKey> for String {
    fn from(k: SessionKey) -> Self {
        k.full
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<(String, String), SessionKeyError> {
        SessionKey::parse(raw, "main").map(SessionKey::into_parts)
    }

    #[test]
    fn bare_keys_go_under_the_given_agent() {
        assert_eq!(parse("room").unwrap(), ("agent:main:room".into(), "main".into()));
        let k = SessionKey::parse("  room:7 ", "beta").unwrap();
        assert_eq!((k.as_str(), k.agent_id(), k.rest()), ("agent:beta:room:7", "beta", "room:7"));
    }

    #[test]
    fn full_keys_keep_their_agent_and_an_agent_alone_means_its_main_session() {
        assert_eq!(parse("agent:beta:x:y").unwrap(), ("agent:beta:x:y".into(), "beta".into()));
        assert_eq!(parse("agent:beta").unwrap(), ("agent:beta:main".into(), "beta".into()));
        assert_eq!(SessionKey::parse("agent:beta", "main").unwrap().rest(), "main");
    }

    #[test]
    fn malformed_full_keys_are_refused_with_the_key_named() {
        for bad in ["agent:", "agent::x", "agent:x:"] {
            assert_eq!(parse(bad), Err(SessionKeyError::Malformed(bad.into())), "{bad}");
        }
        assert_eq!(
            SessionKeyError::Malformed("agent::x".into()).to_string(),
            "invalid session key \"agent::x\": expected agent:<agentId>:<key>"
        );
    }

    #[test]
    fn keys_hold_1_to_512_characters_after_trimming() {
        assert_eq!(parse("   "), Err(SessionKeyError::Length));
        assert_eq!(parse(""), Err(SessionKeyError::Length));
        assert!(parse(&"k".repeat(512)).is_ok());
        assert_eq!(parse(&"k".repeat(513)), Err(SessionKeyError::Length));
        // Characters, not bytes: 512 two-byte characters are one key.
        assert!(parse(&"é".repeat(512)).is_ok());
        assert_eq!(SessionKeyError::Length.to_string(), "sessionKey must be 1 to 512 characters");
        assert_eq!(SessionKey::for_agent("main", &"k".repeat(513)), Err(SessionKeyError::Length));
    }

    #[test]
    fn reserved_prefixes_are_recognised_in_the_rest_only() {
        for reserved in ["cron:nightly", "agent:main:subagent:x", "acp:1"] {
            assert!(SessionKey::parse(reserved, "main").unwrap().is_reserved(), "{reserved}");
        }
        for open in ["team-room", "agent:cron:x", "my-cron:x"] {
            assert!(!SessionKey::parse(open, "main").unwrap().is_reserved(), "{open}");
        }
    }

    #[test]
    fn canonical_keys_split_into_agent_and_rest_and_nothing_else_does() {
        let k = SessionKey::from_canonical("agent:main:openai:x").unwrap();
        assert_eq!((k.agent_id(), k.rest()), ("main", "openai:x"));
        for other in ["agent::x", "agent:main:", "agent:main", "main", " agent:main:x"] {
            assert_eq!(SessionKey::from_canonical(other), None, "{other}");
        }
    }

    #[test]
    fn qualified_means_written_in_full() {
        assert!(SessionKey::is_qualified(" agent:main:x"));
        assert!(!SessionKey::is_qualified("main"));
    }
}
