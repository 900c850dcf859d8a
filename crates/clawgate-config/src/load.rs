//! Reading a config file: parse, decode, overlay the environment, validate.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::decode::{decode_with_warnings, located, place_key, placed, validate};
use crate::env::{Env, overlay};
use crate::error::{ConfigError, ConfigIssue};
use crate::model::Config;
use crate::path::KeyPath;
use crate::secret::Secret;
use crate::source_map::{Position, SourceMap, from_json5};

/// A config as loaded from a file, with what is needed to edit and watch it.
#[derive(Clone)]
pub struct LoadedConfig {
    /// The typed, validated config (with any environment overlay applied).
    pub config: Config,
    /// The file's text as read (empty when the file does not exist).
    pub raw: String,
    /// The file's contents as JSON, before defaults and environment overlay: what
    /// `config.get` shows (after [`crate::redacted`]) and what patches apply to.
    pub value: Value,
    /// SHA-256 of `raw`, lowercase hex: identifies this version of the file.
    pub hash: String,
    /// The file this was loaded from.
    pub path: PathBuf,
    /// Whether the file exists; `false` means everything is a default.
    pub exists: bool,
    /// What is worth fixing but does not make the config invalid, placed like errors (e.g. a
    /// key clawgate ignores that looks like a typo of one it reads).
    pub warnings: Vec<ConfigIssue>,
}

impl LoadedConfig {
    /// All defaults, for a file that does not exist (yet).
    #[must_use]
    pub fn defaults(path: &Path) -> Self {
        Self {
            config: Config::default(),
            raw: String::new(),
            value: Value::Object(Map::new()),
            hash: hash_text(""),
            path: path.to_path_buf(),
            exists: false,
            warnings: Vec::new(),
        }
    }

    /// The directory relative paths in the config are resolved against.
    #[must_use]
    pub fn base_dir(&self) -> &Path {
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        }
    }

    /// Resolves a secret from this config (relative files against [`base_dir`](Self::base_dir)).
    ///
    /// # Errors
    /// As [`Secret::resolve`].
    pub fn resolve_secret(&self, secret: &Secret) -> Result<String, ConfigError> {
        secret.resolve(self.base_dir())
    }

    /// A problem with `key` (a key path such as `agents.list[0].model`) found by a check this
    /// crate cannot make (the gateway's: a model reference, a secret that cannot be read),
    /// placed at the key's position in the file like the decoder's own issues, or at its
    /// closest parent's. A key that does not parse leaves the issue without key and position.
    #[must_use]
    pub fn issue_at(&self, key: &str, message: impl Into<String>) -> ConfigIssue {
        let message = message.into();
        match KeyPath::parse(key) {
            Some(path) => place_key(path, message, &SourceMap::new(&self.raw), &self.path),
            None => ConfigIssue { file: self.path.clone(), position: None, key: String::new(), message },
        }
    }

    /// [`issue_at`](Self::issue_at) for a message written `key.path: what is wrong`.
    #[must_use]
    pub fn issue_from_message(&self, text: &str) -> ConfigIssue {
        match text.split_once(": ") {
            Some((key, message)) if KeyPath::parse(key.trim()).is_some() => self.issue_at(key.trim(), message),
            _ => self.issue_at("", text),
        }
    }
}

impl fmt::Debug for LoadedConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `raw` and `value` may hold secrets in plain text; `config` prints them as `***`.
        f.debug_struct("LoadedConfig")
            .field("path", &self.path)
            .field("exists", &self.exists)
            .field("hash", &self.hash)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// SHA-256 of a config file's text, lowercase hex (the `hash` of [`LoadedConfig`]).
#[must_use]
pub fn hash_text(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Loads the config file at `path`; a missing file gives the defaults with `exists: false`.
/// Applies no environment overlay (see [`load_with_env`]).
///
/// # Errors
/// [`ConfigError::Read`], [`ConfigError::Syntax`] or [`ConfigError::Invalid`] (every problem,
/// each with file, line, column and key).
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
    load_with_env(path, &Env::empty())
}

/// [`load`], then the `CLAWGATE_GATEWAY_*` overrides from `env`, then validation. This is
/// what the gateway uses, with [`Env::process`].
///
/// # Errors
/// As [`load`], plus invalid environment values.
pub fn load_with_env(path: &Path, env: &Env) -> Result<LoadedConfig, ConfigError> {
    match read_text(path)? {
        Some(text) => parse_str_with_env(&text, path, env),
        None => {
            let mut loaded = LoadedConfig::defaults(path);
            let mut issues = overlay(&mut loaded.config, env);
            validate(&loaded.config, &mut issues);
            if issues.is_empty() { Ok(loaded) } else { Err(located(issues, &SourceMap::default(), path)) }
        }
    }
}

/// Parses config text; `path` names the file in messages and becomes [`LoadedConfig::path`].
/// A text with no value at all (empty, or only comments) is the empty config.
///
/// # Errors
/// [`ConfigError::Syntax`] or [`ConfigError::Invalid`].
pub fn parse_str(text: &str, path: &Path) -> Result<LoadedConfig, ConfigError> {
    parse_str_with_env(text, path, &Env::empty())
}

/// [`parse_str`] with the environment overlay from `env`.
///
/// # Errors
/// As [`parse_str`].
pub fn parse_str_with_env(text: &str, path: &Path, env: &Env) -> Result<LoadedConfig, ConfigError> {
    let map = SourceMap::new(text);
    let value = if map.is_blank() {
        Value::Object(Map::new())
    } else {
        json5::from_str::<Value>(text).map_err(|e| syntax_error(&e, &map, path, text))?
    };
    let (mut config, mut issues, warnings) = decode_with_warnings(&value);
    issues.extend(overlay(&mut config, env));
    validate(&config, &mut issues);
    if !issues.is_empty() {
        return Err(located(issues, &map, path));
    }
    let warnings = placed(warnings, &map, path);
    Ok(LoadedConfig {
        config,
        raw: text.to_owned(),
        value,
        hash: hash_text(text),
        path: path.to_path_buf(),
        exists: true,
        warnings,
    })
}

/// The file's text, or `None` if it does not exist.
pub(crate) fn read_text(path: &Path) -> Result<Option<String>, ConfigError> {
    let read_error = |source| ConfigError::Read { path: path.to_path_buf(), source };
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_error(e)),
    };
    String::from_utf8(bytes).map(Some).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        read_error(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not valid UTF-8 (first bad byte at offset {at}); save the file as UTF-8"),
        ))
    })
}

fn syntax_error(err: &json5::Error, map: &SourceMap, path: &Path, text: &str) -> ConfigError {
    // The parser gives no position when the text ends inside a string or a comment: point at
    // the end of the file, where the missing quote or `*/` goes.
    let position = Some(err.position().map(from_json5).unwrap_or_else(|| end_of(text)));
    let key = position.and_then(|pos| map.enclosing_container(pos)).map(ToString::to_string).unwrap_or_default();
    ConfigError::Syntax {
        issue: Box::new(ConfigIssue {
            file: path.to_path_buf(),
            position,
            key,
            message: format!("syntax error: {}", syntax_message(err)),
        }),
    }
}

/// The position just after the last character of `text`.
fn end_of(text: &str) -> Position {
    let line = text.matches('\n').count() + 1;
    let last_line = text.rsplit('\n').next().unwrap_or("");
    Position { line, column: last_line.chars().count() + 1 }
}

/// The parser's complaint, with advice for the usual mistakes.
fn syntax_message(err: &json5::Error) -> String {
    use json5::ErrorCode as C;
    let Some(code) = err.code() else {
        // Custom messages come with " at line L column C" appended; we show the position
        // ourselves.
        let text = err.to_string();
        return match text.rfind(" at line ") {
            Some(cut) => text[..cut].to_owned(),
            None => text,
        };
    };
    let advice = match code {
        C::ExpectedComma => "expected \",\"; is a comma missing after the previous value?",
        C::ExpectedColon => {
            "expected \":\" after the key (keys containing \"-\", spaces or other punctuation \
             must be quoted, e.g. \"my-key\")"
        }
        C::ExpectedClosingBrace => "expected \"}\" or \",\"",
        C::ExpectedClosingBracket => "expected \"]\" or \",\"",
        C::InvalidKey | C::ExpectedIdentifier => {
            "invalid key; keys with spaces, dashes or other punctuation must be quoted, e.g. \
             \"my-key\""
        }
        C::ExpectedValue => {
            "expected a value (a string, number, true, false, null, object or array); strings \
             need quotes"
        }
        C::LineTerminatorInString => {
            "string not closed before the end of the line; add the closing quote (or end the \
             line with \\ to continue the string)"
        }
        C::TrailingCharacters => "unexpected text after the end of the top-level value",
        C::LeadingZero => "numbers cannot start with 0 (write 8, not 08; quote it if it is text)",
        C::InvalidEscapeSequence => "invalid escape sequence in a string (write \\\\ for a backslash)",
        C::EofParsingObject => "the file ended before this object was closed; is a \"}\" missing?",
        C::EofParsingArray => "the file ended before this array was closed; is a \"]\" missing?",
        C::EofParsingString => "the file ended inside a string; is a closing quote missing?",
        C::EofParsingComment => "the file ended inside a /* comment */; close it with */",
        C::EofParsingValue => "the file ended where a value was expected",
        _ => return code.to_string(),
    };
    advice.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syntax(text: &str) -> ConfigIssue {
        match parse_str(text, Path::new("c.json5")) {
            Err(ConfigError::Syntax { issue }) => *issue,
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn a_file_ending_inside_a_string_or_comment_points_at_its_end() {
        // The parser gives these no position; the issue still says where to look (found by the
        // property test `arbitrary_text_never_panics_and_errors_carry_a_location`).
        let issue = syntax("{a: 1}\n/* open");
        assert_eq!(issue.position, Some(Position { line: 2, column: 8 }), "{issue:?}");
        assert!(issue.message.contains("inside a /* comment */"), "{}", issue.message);
        let issue = syntax("'[]");
        assert_eq!(issue.position, Some(Position { line: 1, column: 4 }), "{issue:?}");
    }

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(hash_text(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn blank_and_comment_only_text_is_the_empty_config() {
        for text in ["", "   \n", "// nothing yet\n/* really */"] {
            let loaded = parse_str(text, Path::new("c.json5")).unwrap();
            assert_eq!(loaded.config, Config::default());
            assert!(loaded.exists);
        }
    }

    #[test]
    fn missing_comma_points_at_the_next_key_inside_its_object() {
        let issue = syntax("{\n  gateway: {\n    port: 1\n    bind: 'lan',\n  },\n}\n");
        assert_eq!(issue.line(), Some(4));
        assert_eq!(issue.key, "gateway");
        assert!(issue.message.contains("comma"), "{}", issue.message);
    }

    #[test]
    fn syntax_errors_keep_the_parser_position() {
        let text = "{\n  a: 1,\n  b: @,\n}";
        let parser = json5::from_str::<Value>(text).unwrap_err().position().unwrap();
        let issue = syntax(text);
        assert_eq!(issue.line(), Some(parser.line + 1));
        assert_eq!(issue.column(), Some(parser.column + 1));
        assert!(issue.to_string().starts_with("c.json5:3:6: "), "{issue}");
    }

    #[test]
    fn unclosed_object_says_what_is_missing() {
        let issue = syntax("{\n  gateway: {\n    port: 1,\n");
        assert!(issue.message.contains("missing"), "{}", issue.message);
    }

    #[test]
    fn debug_of_a_loaded_config_shows_no_secrets() {
        let loaded = parse_str("{gateway: {auth: {token: 'hunter2-token'}}}", Path::new("c.json5")).unwrap();
        let debug = format!("{loaded:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
