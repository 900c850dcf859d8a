//! The heartbeat as configured: `agents.defaults.heartbeat` and `agents.list[].heartbeat`
//! (`{every: "30m", prompt?, target?, ackMaxChars?, activeHours?}`, upstream's names), resolved
//! once per config version with the agents.
//!
//! Which agents beat follows upstream: when any `agents.list[]` entry has a `heartbeat` block,
//! exactly those agents do (each over the defaults); otherwise only the default agent does, with
//! `agents.defaults.heartbeat`. Unlike upstream, nothing beats unless the config says so: a
//! heartbeat is a model turn every interval, and turning one on for every existing install by an
//! upgrade would spend their tokens unasked.

use serde_json::{Map, Value};

/// Upstream's default heartbeat prompt (recorded from 2026.9.6's `health`).
pub const DEFAULT_PROMPT: &str = "Follow the heartbeat monitor scratch context when provided. Recurring tasks are \
automations; create or change their schedules with the automations tool, not heartbeat scratch. Do not infer or \
repeat old tasks from prior chats. If nothing needs attention, reply NO_REPLY.";
/// Upstream's default `every`.
pub const DEFAULT_EVERY: &str = "30m";
/// Replies up to this many characters beside an acknowledgement token count as "nothing to say".
pub const DEFAULT_ACK_MAX_CHARS: usize = 300;
/// Where a heartbeat reply goes when `target` is not set: nowhere but the transcript.
pub const DEFAULT_TARGET: &str = "none";
/// The tokens a reply that means "nothing needs attention" consists of (upstream's prompt asks for
/// `NO_REPLY`; older prompts and models say `HEARTBEAT_OK`).
pub const ACK_TOKENS: &[&str] = &["NO_REPLY", "HEARTBEAT_OK"];

/// One agent's heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatSpec {
    /// The interval as written (`"30m"`).
    pub every: String,
    /// The interval in milliseconds (never 0: a zero interval means "off" and yields no spec).
    pub every_ms: u64,
    /// The message of each heartbeat turn.
    pub prompt: String,
    /// Where a reply worth delivering goes (`none`: only the transcript and the event).
    pub target: String,
    /// See [`DEFAULT_ACK_MAX_CHARS`].
    pub ack_max_chars: usize,
    /// Minutes of the day (UTC) `[start, end)` in which heartbeats run; `None`: always.
    pub active_hours: Option<(u32, u32)>,
}

impl HeartbeatSpec {
    /// Whether `minute_of_day` (UTC) lies in the active hours (wrapping past midnight when
    /// `end < start`).
    pub fn active_at(&self, minute_of_day: u32) -> bool {
        match self.active_hours {
            None => true,
            Some((start, end)) if start <= end => (start..end).contains(&minute_of_day),
            Some((start, end)) => minute_of_day >= start || minute_of_day < end,
        }
    }

    /// Whether `reply` is an acknowledgement ("nothing needs attention"): it contains one of
    /// [`ACK_TOKENS`] and at most `ack_max_chars` of other text.
    pub fn is_ack(&self, reply: &str) -> bool {
        if !ACK_TOKENS.iter().any(|t| reply.contains(t)) {
            return false;
        }
        let rest = ACK_TOKENS.iter().fold(reply.to_owned(), |s, t| s.replace(t, ""));
        rest.trim().chars().count() <= self.ack_max_chars
    }
}

/// Parse `"30m"`, `"1h"`, `"45s"`, `"1d"`, `"500ms"` or a bare number of minutes.
pub fn parse_every(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("\"{text}\" is not a duration like \"30m\""))?;
    let factor = match unit.trim() {
        "" | "m" | "min" => 60_000,
        "ms" => 1,
        "s" => 1_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => return Err(format!("unknown duration unit \"{other}\" in \"{text}\" (use ms, s, m, h or d)")),
    };
    n.checked_mul(factor).ok_or_else(|| format!("\"{text}\" is too long"))
}

fn parse_hhmm(text: &str, at: &str) -> Result<u32, String> {
    let bad = || format!("{at}: \"{text}\" is not a time like \"08:00\"");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 24 || m > 59 || h == 24 && m != 0 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// One agent's heartbeat from the defaults block overlaid by the agent's own; `Ok(None)` when it
/// is off (no `every`, or `every` of 0).
pub fn resolve(defaults: Option<&Value>, own: Option<&Value>, at: &str) -> Result<Option<HeartbeatSpec>, String> {
    let mut merged = Map::new();
    for block in [defaults, own].into_iter().flatten() {
        match block {
            Value::Object(m) => merged.extend(m.clone()),
            Value::Null => {}
            _ => return Err(format!("{at}: must be an object")),
        }
    }
    if merged.is_empty() {
        return Ok(None);
    }
    let every = match merged.get("every") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => format!("{n}m"),
        None => DEFAULT_EVERY.to_owned(),
        Some(_) => return Err(format!("{at}.every: must be a duration like \"30m\"")),
    };
    let every_ms = parse_every(&every).map_err(|e| format!("{at}.every: {e}"))?;
    if every_ms == 0 {
        return Ok(None);
    }
    let text = |key: &str, default: &str| -> Result<String, String> {
        match merged.get(key) {
            None | Some(Value::Null) => Ok(default.to_owned()),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
            Some(_) => Err(format!("{at}.{key}: must be a non-empty string")),
        }
    };
    let ack_max_chars = match merged.get("ackMaxChars") {
        None | Some(Value::Null) => DEFAULT_ACK_MAX_CHARS,
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| format!("{at}.ackMaxChars: must be a whole number"))?,
    };
    let active_hours = match merged.get("activeHours") {
        None | Some(Value::Null) => None,
        Some(Value::Object(h)) => {
            let get =
                |k: &str| h.get(k).and_then(Value::as_str).ok_or_else(|| format!("{at}.activeHours.{k}: required"));
            let start = parse_hhmm(get("start")?, &format!("{at}.activeHours.start"))?;
            let end = parse_hhmm(get("end")?, &format!("{at}.activeHours.end"))?;
            Some((start, end.min(24 * 60)))
        }
        Some(_) => return Err(format!("{at}.activeHours: must be {{start, end}}")),
    };
    Ok(Some(HeartbeatSpec {
        every,
        every_ms,
        prompt: text("prompt", DEFAULT_PROMPT)?,
        target: text("target", DEFAULT_TARGET)?,
        ack_max_chars,
        active_hours,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_read_like_upstream_config() {
        assert_eq!(parse_every("30m"), Ok(1_800_000));
        assert_eq!(parse_every("1h"), Ok(3_600_000));
        assert_eq!(parse_every("1s"), Ok(1_000));
        assert_eq!(parse_every("15"), Ok(900_000));
        assert_eq!(parse_every("0m"), Ok(0));
        assert!(parse_every("soon").is_err());
        assert!(parse_every("5y").is_err());
    }

    #[test]
    fn the_agent_block_overrides_the_defaults_and_zero_turns_it_off() {
        let d = json!({"every": "30m", "target": "owner"});
        let spec = resolve(Some(&d), Some(&json!({"every": "1h"})), "x").unwrap().unwrap();
        assert_eq!((spec.every.as_str(), spec.every_ms, spec.target.as_str()), ("1h", 3_600_000, "owner"));
        assert_eq!(spec.prompt, DEFAULT_PROMPT);
        assert_eq!(resolve(Some(&d), Some(&json!({"every": "0m"})), "x"), Ok(None));
        assert_eq!(resolve(None, None, "x"), Ok(None));
        assert!(
            resolve(Some(&json!({"every": "x"})), None, "agents.defaults.heartbeat").unwrap_err().contains("every")
        );
    }

    #[test]
    fn active_hours_wrap_past_midnight() {
        let spec =
            resolve(Some(&json!({"activeHours": {"start": "22:00", "end": "06:00"}})), None, "x").unwrap().unwrap();
        assert!(spec.active_at(23 * 60));
        assert!(spec.active_at(60));
        assert!(!spec.active_at(12 * 60));
        let day =
            resolve(Some(&json!({"activeHours": {"start": "08:00", "end": "20:00"}})), None, "x").unwrap().unwrap();
        assert!(day.active_at(8 * 60) && !day.active_at(20 * 60));
    }

    #[test]
    fn an_acknowledgement_is_the_token_with_little_else() {
        let spec = resolve(Some(&json!({"ackMaxChars": 10})), None, "x").unwrap().unwrap();
        assert!(spec.is_ack("NO_REPLY"));
        assert!(spec.is_ack("  HEARTBEAT_OK\n"));
        assert!(spec.is_ack("All good. NO_REPLY"));
        assert!(!spec.is_ack("The deploy failed twice tonight, look at it. NO_REPLY"));
        assert!(!spec.is_ack("The deploy failed."));
    }
}
