//! Secrets that may live in the config, the environment or a file.

use std::fmt;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::env::Env;
use crate::error::ConfigError;

/// A secret value: written inline, or a reference resolved when the secret is needed.
///
/// `Debug` and `Display` never show an inline value (`***`); references show where the value
/// comes from, which is not secret. `Serialize` writes an inline value as
/// [`crate::REDACTED`] (class closed: a secret serialised in clear into a reply, a log or an
/// error); config files are written from the text the user gave, never from this type.
#[derive(Clone, PartialEq, Eq, JsonSchema)]
#[schemars(description = "A secret: the value itself, {\"env\": \"NAME\"} (read from that environment \
                   variable) or {\"file\": \"path\"} (read from that file, relative to the config \
                   file's directory).")]
pub enum Secret {
    /// The value itself, written in the config.
    Plain(String),
    /// `{"env": "NAME"}`: read environment variable `NAME` when resolved.
    Env {
        /// The environment variable name.
        env: String,
    },
    /// `{"file": "path"}`: read this file when resolved, trimming one trailing newline. A
    /// relative path is relative to the config file's directory; `~/` is the home directory.
    File {
        /// The file path.
        file: PathBuf,
    },
}

impl Secret {
    /// The secret value, reading the process environment for `{"env": …}` secrets.
    ///
    /// `base_dir` is the config file's directory (see [`crate::LoadedConfig::base_dir`]).
    ///
    /// # Errors
    /// [`ConfigError::SecretEnvUnset`] naming the variable, [`ConfigError::SecretFile`] or
    /// [`ConfigError::SecretFileEmpty`] naming the file.
    pub fn resolve(&self, base_dir: &Path) -> Result<String, ConfigError> {
        self.resolve_with(base_dir, &Env::process())
    }

    /// Like [`resolve`](Self::resolve) but reading variables from `env` (for tests, or a
    /// captured environment).
    ///
    /// # Errors
    /// As for [`resolve`](Self::resolve).
    pub fn resolve_with(&self, base_dir: &Path, env: &Env) -> Result<String, ConfigError> {
        match self {
            Self::Plain(value) => Ok(value.clone()),
            Self::Env { env: var } => env
                .var(var)
                .filter(|value| !value.is_empty())
                .ok_or_else(|| ConfigError::SecretEnvUnset { var: var.clone() }),
            Self::File { file } => {
                let path = resolve_path(base_dir, file);
                let text = std::fs::read_to_string(&path)
                    .map_err(|source| ConfigError::SecretFile { path: path.clone(), source })?;
                let value = trim_one_newline(&text);
                if value.is_empty() {
                    return Err(ConfigError::SecretFileEmpty { path });
                }
                Ok(value.to_owned())
            }
        }
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Plain(_) => serializer.serialize_str(crate::REDACTED),
            Self::Env { env } => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("env", env)?;
                map.end()
            }
            Self::File { file } => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("file", file)?;
                map.end()
            }
        }
    }
}

/// Accepts the three forms the config file allows: `"value"`, `{"env": "NAME"}` and
/// `{"file": "path"}` (exactly one key). The config file itself is decoded by [`crate::load`],
/// which reports every problem with its place; this is for secrets that arrive elsewhere (a
/// typed request, a test). An error never echoes the value.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecretVisitor)
    }
}

struct SecretVisitor;

const SECRET_FORMS: &str = "a string, {\"env\": \"NAME\"} or {\"file\": \"path\"}";

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SECRET_FORMS)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Secret, E> {
        if value.is_empty() {
            return Err(E::custom(format!("secret is empty; expected {SECRET_FORMS}")));
        }
        Ok(Secret::Plain(value.to_owned()))
    }

    // The default type errors quote the value; a secret's never is.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Secret, E> {
        Err(E::custom(format!("expected {SECRET_FORMS}, found a boolean")))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Secret, E> {
        Err(E::custom(format!("expected {SECRET_FORMS}, found a number")))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Secret, E> {
        Err(E::custom(format!("expected {SECRET_FORMS}, found a number")))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Secret, E> {
        Err(E::custom(format!("expected {SECRET_FORMS}, found a number")))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Secret, A::Error> {
        let mut found: Option<Secret> = None;
        while let Some(key) = map.next_key::<String>()? {
            let secret = match key.as_str() {
                "env" => Secret::Env { env: map.next_value()? },
                "file" => Secret::File { file: map.next_value()? },
                other => return Err(de::Error::unknown_field(other, &["env", "file"])),
            };
            if found.replace(secret).is_some() {
                return Err(de::Error::custom("a secret has both \"env\" and \"file\"; keep one of them"));
            }
        }
        match found {
            Some(Secret::Env { env }) if env.is_empty() || env.contains(['=', '\0']) => {
                Err(de::Error::custom(format!("{env:?} is not an environment variable name")))
            }
            Some(secret) => Ok(secret),
            None => Err(de::Error::custom(format!("empty object; expected {SECRET_FORMS}"))),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Plain(_) => f.write_str("***"),
            Self::Env { env } => write!(f, "*** (from env {env})"),
            Self::File { file } => write!(f, "*** (from file {})", file.display()),
        }
    }
}

/// Resolves a path written in the config: `~/…` against the home directory, a relative path
/// against `base_dir` (the config file's directory), an absolute path as is.
#[must_use]
pub fn resolve_path(base_dir: &Path, path: &Path) -> PathBuf {
    if let Ok(rest) = path.strip_prefix("~")
        && let Some(home) = std::env::home_dir()
    {
        return home.join(rest);
    }
    base_dir.join(path)
}

/// Drops one trailing `\n` or `\r\n`, which editors and `echo` add to secret files.
fn trim_one_newline(text: &str) -> &str {
    text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_an_inline_value() {
        let secret = Secret::Plain("hunter2".to_owned());
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(secret.to_string(), "***");
        let env = Secret::Env { env: "TOKEN_VAR".to_owned() };
        assert!(!format!("{env:?}").contains("hunter2"));
        assert!(format!("{env:?}").contains("TOKEN_VAR"));
        assert_eq!(serde_json::to_value(&secret).unwrap(), crate::REDACTED);
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert_eq!(serde_json::to_value(&env).unwrap(), serde_json::json!({"env": "TOKEN_VAR"}));
    }

    #[test]
    fn env_secret_reads_the_given_environment() {
        let env = Env::from_pairs([("MY_TOKEN", "abc")]);
        let secret = Secret::Env { env: "MY_TOKEN".to_owned() };
        assert_eq!(secret.resolve_with(Path::new("/"), &env).unwrap(), "abc");
    }

    #[test]
    fn unset_env_secret_names_the_variable() {
        let secret = Secret::Env { env: "NOPE_NOT_SET".to_owned() };
        let err = secret.resolve_with(Path::new("/"), &Env::empty()).unwrap_err();
        assert!(matches!(&err, ConfigError::SecretEnvUnset { var } if var == "NOPE_NOT_SET"));
        assert!(err.to_string().contains("NOPE_NOT_SET"));
    }

    #[test]
    fn file_secret_is_relative_to_the_config_dir_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token.txt"), "s3cret\r\n").unwrap();
        let secret = Secret::File { file: PathBuf::from("token.txt") };
        assert_eq!(secret.resolve(dir.path()).unwrap(), "s3cret");
        // Only one newline is trimmed; inner whitespace is kept.
        std::fs::write(dir.path().join("t2"), " a b \n\n").unwrap();
        let secret = Secret::File { file: PathBuf::from("t2") };
        assert_eq!(secret.resolve(dir.path()).unwrap(), " a b \n");
    }

    #[test]
    fn missing_or_empty_secret_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Secret::File { file: PathBuf::from("missing.txt") };
        let err = missing.resolve(dir.path()).unwrap_err();
        assert!(matches!(err, ConfigError::SecretFile { .. }));
        assert!(err.to_string().contains("missing.txt"));
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let empty = Secret::File { file: PathBuf::from("empty") };
        assert!(matches!(empty.resolve(dir.path()).unwrap_err(), ConfigError::SecretFileEmpty { .. }));
    }

    #[test]
    fn absolute_paths_ignore_the_base_dir() {
        let abs = if cfg!(windows) { "C:\\x\\y" } else { "/x/y" };
        assert_eq!(resolve_path(Path::new("/base"), Path::new(abs)), PathBuf::from(abs));
        assert_eq!(resolve_path(Path::new("/base"), Path::new("rel/f")), Path::new("/base").join("rel/f"));
    }

    #[test]
    fn deserializes_the_three_forms_and_nothing_else() {
        let from = |v: serde_json::Value| serde_json::from_value::<Secret>(v);
        assert_eq!(from(serde_json::json!("s3cret")).unwrap(), Secret::Plain("s3cret".into()));
        assert_eq!(from(serde_json::json!({"env": "TOK"})).unwrap(), Secret::Env { env: "TOK".into() });
        assert_eq!(from(serde_json::json!({"file": "t.txt"})).unwrap(), Secret::File { file: "t.txt".into() });
        for bad in [
            serde_json::json!(""),
            serde_json::json!({}),
            serde_json::json!({"env": "A", "file": "b"}),
            serde_json::json!({"evn": "A"}),
            serde_json::json!({"env": ""}),
            serde_json::json!(123_456_789),
        ] {
            let err = from(bad.clone()).unwrap_err().to_string();
            assert!(!err.contains("123456789"), "{err}");
            assert!(from(bad).is_err());
        }
    }

    #[test]
    fn a_deserialized_secret_serializes_redacted_or_as_its_reference() {
        let plain: Secret = serde_json::from_str("\"hunter2\"").unwrap();
        assert_eq!(serde_json::to_string(&plain).unwrap(), format!("\"{}\"", crate::REDACTED));
        let env: Secret = serde_json::from_str("{\"env\": \"X\"}").unwrap();
        assert_eq!(serde_json::to_value(&env).unwrap(), serde_json::json!({"env": "X"}));
    }
}
