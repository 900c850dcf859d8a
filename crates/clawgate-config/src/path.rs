//! Key paths such as `gateway.auth.mode` or `agents.list[2].model`.
//!
//! Paths are how every other part of this crate talks about a place in the config: error
//! messages, the source map, reload classes and diffs. The text form is the one users see, so it
//! stays readable for ordinary keys and falls back to a quoted form (`channels["my.bot"]`) for
//! keys that would otherwise be ambiguous; [`KeyPath::parse`] reads back exactly what
//! [`Display`](fmt::Display) writes.

use std::fmt;
use std::str::FromStr;

/// One step in a [`KeyPath`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Segment {
    /// A member of an object.
    Key(String),
    /// An element of an array (0-based).
    Index(usize),
}

/// A path from the root of the config document to a value.
///
/// The empty path is the document root.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyPath(Vec<Segment>);

impl KeyPath {
    /// The document root.
    #[must_use]
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// This path extended by an object member.
    #[must_use]
    pub fn child(&self, key: &str) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.to_owned()));
        Self(segments)
    }

    /// This path extended by an array element.
    #[must_use]
    pub fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        Self(segments)
    }

    /// The steps of this path, outermost first.
    #[must_use]
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// Whether this is the document root.
    #[must_use]
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path one step up, or `None` at the root.
    #[must_use]
    pub fn parent(&self) -> Option<Self> {
        let (_, rest) = self.0.split_last()?;
        Some(Self(rest.to_vec()))
    }

    /// Whether `prefix` is this path or one of its ancestors (segment-wise, so `gateway.auth`
    /// is a prefix of `gateway.auth.mode` but not of `gateway.authx`).
    #[must_use]
    pub fn starts_with(&self, prefix: &KeyPath) -> bool {
        self.0.starts_with(&prefix.0)
    }

    /// Parses the text form written by [`Display`](fmt::Display): `a.b[2].c`, with
    /// `["…"]` (a JSON string) for keys that are empty or contain `.`, `[`, `]`, `"`, `\` or
    /// whitespace. The empty string is the root. Returns `None` for malformed text.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let mut segments = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(after_bracket) = rest.strip_prefix('[') {
                if after_bracket.starts_with('"') {
                    let (key, after) = split_json_string(after_bracket)?;
                    segments.push(Segment::Key(key));
                    rest = after.strip_prefix(']')?;
                } else {
                    let close = after_bracket.find(']')?;
                    let digits = &after_bracket[..close];
                    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    segments.push(Segment::Index(digits.parse().ok()?));
                    rest = &after_bracket[close + 1..];
                }
            } else {
                let body = if segments.is_empty() { rest } else { rest.strip_prefix('.')? };
                let end = body.find(['.', '[']).unwrap_or(body.len());
                let key = &body[..end];
                if !is_plain_key(key) {
                    return None;
                }
                segments.push(Segment::Key(key.to_owned()));
                rest = &body[end..];
            }
        }
        Some(Self(segments))
    }
}

impl From<&[&str]> for KeyPath {
    fn from(keys: &[&str]) -> Self {
        Self(keys.iter().map(|k| Segment::Key((*k).to_owned())).collect())
    }
}

impl FromStr for KeyPath {
    type Err = InvalidKeyPath;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or_else(|| InvalidKeyPath(s.to_owned()))
    }
}

/// Returned by [`KeyPath::from_str`] for text that is not a key path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a config key path: {0:?} (expected something like `gateway.auth.mode`)")]
pub struct InvalidKeyPath(pub String);

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if is_plain_key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(key)?;
                }
                Segment::Key(key) => {
                    // serde_json writes a correctly escaped JSON string; it cannot fail for a str.
                    let quoted = serde_json::Value::String(key.clone()).to_string();
                    write!(f, "[{quoted}]")?;
                }
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// Keys that can be written bare in the dotted form.
fn is_plain_key(key: &str) -> bool {
    !key.is_empty() && !key.chars().any(|c| matches!(c, '.' | '[' | ']' | '"' | '\\') || c.is_whitespace())
}

/// Splits a leading JSON string literal (starting at `"`) off `text`.
fn split_json_string(text: &str) -> Option<(String, &str)> {
    let mut escaped = false;
    for (i, c) in text.char_indices().skip(1) {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            let literal = &text[..=i];
            let key: String = serde_json::from_str(literal).ok()?;
            return Some((key, &text[i + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(path: &KeyPath) {
        let text = path.to_string();
        assert_eq!(KeyPath::parse(&text).as_ref(), Some(path), "text form {text:?}");
    }

    #[test]
    fn dotted_paths_display_and_parse() {
        let path = KeyPath::root().child("gateway").child("auth").child("mode");
        assert_eq!(path.to_string(), "gateway.auth.mode");
        round_trip(&path);
    }

    #[test]
    fn array_indices_use_brackets() {
        let path = KeyPath::root().child("agents").child("list").index(2).child("model");
        assert_eq!(path.to_string(), "agents.list[2].model");
        round_trip(&path);
        let nested = KeyPath::root().child("a").index(0).index(1);
        assert_eq!(nested.to_string(), "a[0][1]");
        round_trip(&nested);
    }

    #[test]
    fn awkward_keys_are_quoted_and_round_trip() {
        for key in ["my.bot", "", "a b", "q\"uote", "back\\slash", "[x]", "ünï"] {
            let path = KeyPath::root().child("channels").child(key).child("token");
            round_trip(&path);
        }
        let path = KeyPath::root().child("channels").child("my.bot");
        assert_eq!(path.to_string(), r#"channels["my.bot"]"#);
        let first = KeyPath::root().child("a.b");
        assert_eq!(first.to_string(), r#"["a.b"]"#);
        round_trip(&first);
    }

    #[test]
    fn root_is_the_empty_string() {
        assert_eq!(KeyPath::root().to_string(), "");
        assert_eq!(KeyPath::parse(""), Some(KeyPath::root()));
    }

    #[test]
    fn malformed_paths_are_rejected() {
        for bad in [".a", "a.", "a..b", "a[", "a[x]", "a[1", "a[\"x\"", "a[-1]", "a]"] {
            assert_eq!(KeyPath::parse(bad), None, "{bad:?} should not parse");
        }
    }

    #[test]
    fn prefix_matching_is_per_segment() {
        let auth: KeyPath = "gateway.auth".parse().unwrap();
        assert!("gateway.auth.mode".parse::<KeyPath>().unwrap().starts_with(&auth));
        assert!(!"gateway.authx".parse::<KeyPath>().unwrap().starts_with(&auth));
        assert!(auth.starts_with(&KeyPath::root()));
    }

    #[test]
    fn parent_walks_up_to_root() {
        let path: KeyPath = "a[1].b".parse().unwrap();
        let parent = path.parent().unwrap();
        assert_eq!(parent.to_string(), "a[1]");
        assert_eq!(parent.parent().unwrap().parent(), Some(KeyPath::root()));
        assert_eq!(KeyPath::root().parent(), None);
    }
}
