//! The heartbeat as configured: `agents.defaults.heartbeat` and `agents.list[].heartbeat`
//! (`{every: "30m", prompt?, target?, to?, accountId?, ackMaxChars?, activeHours?: {start, end,
//! timezone?}}`, upstream's names), resolved once per config version with the agents, and the
//! pure rules of a beat: whether it is inside the active hours, and whether a reply is an
//! acknowledgement (nothing to deliver) or text to deliver.
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

/// The zone `activeHours` are read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActiveZone {
    /// The host's zone (`timezone` omitted, `"user"` or `"local"`; upstream's `"user"` first
    /// tries `agents.defaults.userTimezone`, which clawgate does not have).
    Local,
    /// An IANA zone (`"Europe/Berlin"`).
    Iana(chrono_tz::Tz),
}

/// `activeHours`: minutes of the day `[start, end)` in `zone`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveHours {
    /// First minute of the day inside the window.
    pub start: u32,
    /// First minute past the window (`24:00` is 1440); before `start` the window wraps past
    /// midnight; equal to `start` it is empty (upstream: "always outside").
    pub end: u32,
    /// Where the minutes are counted.
    pub zone: ActiveZone,
}

/// What a heartbeat reply means once the acknowledgement rule is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Nothing needs attention: nothing is delivered.
    Ack,
    /// Text to deliver (with any acknowledgement token at its edges removed).
    Deliver(String),
}

/// One agent's heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatSpec {
    /// The interval as written (`"30m"`).
    pub every: String,
    /// The interval in milliseconds (never 0: a zero interval means "off" and yields no spec).
    pub every_ms: u64,
    /// The message of each heartbeat turn.
    pub prompt: String,
    /// Where a reply worth delivering goes: `none` (only the transcript and the event), `last`
    /// (the chat the agent last talked in), `owner` (upstream's operator DM; clawgate has no
    /// owner list, so it never resolves) or a channel id (`telegram`) with [`Self::to`].
    pub target: String,
    /// The chat of a channel target (`"123456789"`, Telegram topics as `<chat>:topic:<thread>`).
    pub to: Option<String>,
    /// The channel account of the target (`default` when unset).
    pub account_id: Option<String>,
    /// See [`DEFAULT_ACK_MAX_CHARS`].
    pub ack_max_chars: usize,
    /// When heartbeats run; `None`: always.
    pub active_hours: Option<ActiveHours>,
}

impl ActiveHours {
    /// Whether `minute_of_day` (in the zone) lies in the window (wrapping past midnight when
    /// `end < start`; empty when they are equal).
    pub fn contains_minute(&self, minute_of_day: u32) -> bool {
        if self.start <= self.end {
            (self.start..self.end).contains(&minute_of_day)
        } else {
            minute_of_day >= self.start || minute_of_day < self.end
        }
    }

    /// The minute of the day at the instant `ts_ms` (Unix milliseconds) in the zone.
    pub fn minute_of_day(&self, ts_ms: i64) -> u32 {
        use chrono::{TimeZone, Timelike};
        let Some(utc) = chrono::DateTime::from_timestamp_millis(ts_ms) else { return 0 };
        let (h, m) = match self.zone {
            ActiveZone::Iana(tz) => {
                let t = utc.with_timezone(&tz);
                (t.hour(), t.minute())
            }
            ActiveZone::Local => {
                let t = chrono::Local.from_utc_datetime(&utc.naive_utc());
                (t.hour(), t.minute())
            }
        };
        h * 60 + m
    }
}

impl HeartbeatSpec {
    /// Whether heartbeats run at the instant `ts_ms` (Unix milliseconds).
    pub fn active_at_ms(&self, ts_ms: i64) -> bool {
        self.active_hours.is_none_or(|h| h.contains_minute(h.minute_of_day(ts_ms)))
    }

    /// Whether `reply` is an acknowledgement ("nothing needs attention"); see [`Self::reply`].
    pub fn is_ack(&self, reply: &str) -> bool {
        self.reply(reply) == Reply::Ack
    }

    /// Upstream's acknowledgement rule (`stripHeartbeatToken` in heartbeat mode): an
    /// acknowledgement token counts only at the **start or end** of the reply (at the end with up
    /// to four trailing non-word characters, as in `HEARTBEAT_OK.`; Markdown emphasis around it is
    /// ignored); once stripped, a rest of at most `ack_max_chars` characters is an
    /// acknowledgement, a longer rest is delivered without the token. A token in the middle of
    /// the text is not special. Empty replies are acknowledgements.
    pub fn reply(&self, reply: &str) -> Reply {
        let trimmed = reply.trim();
        let unmarked = trimmed.trim_matches(|c| matches!(c, '*' | '`' | '~' | '_')).trim();
        let (rest, stripped) = strip_edge_tokens(unmarked);
        if unmarked.is_empty() || stripped && rest.chars().count() <= self.ack_max_chars {
            return Reply::Ack;
        }
        Reply::Deliver(if stripped { rest } else { trimmed.to_owned() })
    }
}

/// `text` with [`ACK_TOKENS`] removed from its start and end, repeatedly; whether any was.
fn strip_edge_tokens(text: &str) -> (String, bool) {
    let mut text = text.trim().to_owned();
    let mut stripped = false;
    loop {
        let before = text.clone();
        for token in ACK_TOKENS {
            if let Some(rest) = text.strip_prefix(token) {
                text = rest.trim_start().to_owned();
            }
            // At the end, followed by at most four characters that are not word characters.
            if let Some(at) = text.rfind(token) {
                let tail = &text[at + token.len()..];
                if tail.chars().count() <= 4 && tail.chars().all(|c| !c.is_alphanumeric() && c != '_') {
                    text = text[..at].trim_end().to_owned();
                }
            }
        }
        if text == before {
            return (text, stripped);
        }
        stripped = true;
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
            // Unlike upstream (which falls back to the host zone), an unknown zone is refused:
            // heartbeats at the wrong hours would go unnoticed until they wake someone.
            let zone = match h.get("timezone") {
                None | Some(Value::Null) => ActiveZone::Local,
                Some(Value::String(z)) if z == "user" || z == "local" => ActiveZone::Local,
                Some(Value::String(z)) => ActiveZone::Iana(z.parse::<chrono_tz::Tz>().map_err(|_| {
                    format!("{at}.activeHours.timezone: unknown time zone {z:?} (use an IANA name like \"Europe/Berlin\", or \"local\")")
                })?),
                Some(_) => return Err(format!("{at}.activeHours.timezone: must be a string")),
            };
            Some(ActiveHours { start, end: end.min(24 * 60), zone })
        }
        Some(_) => return Err(format!("{at}.activeHours: must be {{start, end, timezone?}}")),
    };
    let optional = |key: &str| -> Result<Option<String>, String> {
        match merged.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_owned())),
            Some(Value::Number(n)) if key == "to" => Ok(Some(n.to_string())),
            Some(_) => Err(format!("{at}.{key}: must be a non-empty string")),
        }
    };
    Ok(Some(HeartbeatSpec {
        every,
        every_ms,
        prompt: text("prompt", DEFAULT_PROMPT)?,
        target: text("target", DEFAULT_TARGET)?,
        to: optional("to")?,
        account_id: optional("accountId")?,
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

    fn hours(window: Value) -> ActiveHours {
        resolve(Some(&json!({"activeHours": window})), None, "x").unwrap().unwrap().active_hours.unwrap()
    }

    #[test]
    fn active_hours_wrap_past_midnight_and_an_empty_window_never_runs() {
        let night = hours(json!({"start": "22:00", "end": "06:00"}));
        assert!(night.contains_minute(23 * 60) && night.contains_minute(60) && !night.contains_minute(12 * 60));
        let day = hours(json!({"start": "08:00", "end": "20:00"}));
        assert!(day.contains_minute(8 * 60) && !day.contains_minute(20 * 60));
        let all = hours(json!({"start": "00:00", "end": "24:00"}));
        assert!(all.contains_minute(0) && all.contains_minute(24 * 60 - 1));
        let empty = hours(json!({"start": "08:00", "end": "08:00"}));
        assert!((0..24 * 60).all(|m| !empty.contains_minute(m)));
    }

    #[test]
    fn active_hours_are_read_in_their_time_zone_across_daylight_saving() {
        let spec = resolve(
            Some(&json!({"activeHours": {"start": "09:00", "end": "22:00", "timezone": "America/New_York"}})),
            None,
            "x",
        )
        .unwrap()
        .unwrap();
        // 2026-01-15 13:30Z is 08:30 in New York (EST, UTC-5): outside; 14:30Z is 09:30: inside.
        let jan = 1_768_483_800_000; // 2026-01-15T13:30:00Z
        assert!(!spec.active_at_ms(jan));
        assert!(spec.active_at_ms(jan + 3_600_000));
        // 2026-07-15 13:30Z is 09:30 in New York (EDT, UTC-4): inside.
        let jul = 1_784_122_200_000; // 2026-07-15T13:30:00Z
        assert!(spec.active_at_ms(jul));
        // 02:30Z on 2026-07-16 is 22:30 the day before: outside.
        assert!(!spec.active_at_ms(jul + 13 * 3_600_000));
        let bad = resolve(
            Some(&json!({"activeHours": {"start": "09:00", "end": "17:00", "timezone": "Mars/Base"}})),
            None,
            "x",
        );
        assert!(bad.unwrap_err().contains("unknown time zone \"Mars/Base\""));
        assert_eq!(hours(json!({"start": "09:00", "end": "17:00", "timezone": "local"})).zone, ActiveZone::Local);
    }

    #[test]
    fn an_acknowledgement_is_the_token_at_an_edge_with_little_else() {
        let spec = resolve(Some(&json!({"ackMaxChars": 10})), None, "x").unwrap().unwrap();
        assert!(spec.is_ack("NO_REPLY"));
        assert!(spec.is_ack("  HEARTBEAT_OK\n"));
        assert!(spec.is_ack("**HEARTBEAT_OK**"));
        assert!(spec.is_ack("HEARTBEAT_OK."));
        assert!(spec.is_ack("All good. NO_REPLY"));
        assert!(spec.is_ack("HEARTBEAT_OK all good"));
        assert!(spec.is_ack(""));
        // A longer rest is delivered, without the token.
        assert_eq!(
            spec.reply("The deploy failed twice tonight, look at it. HEARTBEAT_OK"),
            Reply::Deliver("The deploy failed twice tonight, look at it.".into())
        );
        assert_eq!(spec.reply("The deploy failed."), Reply::Deliver("The deploy failed.".into()));
        // In the middle a token is not special.
        assert_eq!(spec.reply("Said HEARTBEAT_OK but no"), Reply::Deliver("Said HEARTBEAT_OK but no".into()));
        // The default budget is upstream's 300 characters.
        let default = resolve(Some(&json!({"every": "30m"})), None, "x").unwrap().unwrap();
        assert!(default.is_ack(&format!("HEARTBEAT_OK {}", "x".repeat(300))));
        assert!(!default.is_ack(&format!("HEARTBEAT_OK {}", "x".repeat(301))));
    }

    #[test]
    fn a_channel_target_names_its_chat_and_account() {
        let spec =
            resolve(Some(&json!({"target": "telegram", "to": 12345, "accountId": "ops"})), None, "x").unwrap().unwrap();
        assert_eq!((spec.to.as_deref(), spec.account_id.as_deref()), (Some("12345"), Some("ops")));
        assert!(resolve(Some(&json!({"to": ""})), None, "x").unwrap_err().contains("x.to"));
    }
}
