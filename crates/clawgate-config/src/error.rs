//! Errors, shaped by what the caller can do about them.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::source_map::Position;

/// One problem found in a config file, pointing at where it is.
///
/// Displays as `file:line:column: key.path: message`, leaving out the parts that are unknown
/// (an issue from an environment variable has no position; a problem with the whole document
/// has no key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The config file as the caller named it; empty when validating a value that did not
    /// come from a file.
    pub file: PathBuf,
    /// Line and column in the file, when the problem has a place there.
    pub position: Option<Position>,
    /// The key path the problem is about, e.g. `gateway.auth.mode`; empty for the document.
    pub key: String,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl ConfigIssue {
    /// The line number (1-based), if known.
    #[must_use]
    pub fn line(&self) -> Option<usize> {
        self.position.map(|p| p.line)
    }

    /// The column number (1-based, in characters), if known.
    #[must_use]
    pub fn column(&self) -> Option<usize> {
        self.position.map(|p| p.column)
    }
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display().to_string();
        match (file.is_empty(), self.position) {
            (false, Some(pos)) => write!(f, "{file}:{pos}: ")?,
            (false, None) => write!(f, "{file}: ")?,
            (true, Some(pos)) => write!(f, "{pos}: ")?,
            (true, None) => {}
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Everything that can go wrong loading, validating or resolving config.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file exists but could not be read (permissions, not UTF-8, a directory, …).
    #[error("{}: cannot read config file: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The file is not valid JSON5. Nothing was validated.
    #[error("{issue}")]
    Syntax {
        /// Where the parser gave up, and why.
        issue: Box<ConfigIssue>,
    },
    /// The file parsed but its contents are not a valid config. Holds every problem found,
    /// not just the first.
    #[error("{}", Lines(issues))]
    Invalid {
        /// All problems, in document order.
        issues: Vec<ConfigIssue>,
    },
    /// A secret refers to an environment variable that is not set (or is empty).
    #[error(
        "secret comes from environment variable {var}, which is not set or empty; \
         export it or put the value in the config"
    )]
    SecretEnvUnset {
        /// The variable name.
        var: String,
    },
    /// A secret file could not be read.
    #[error("cannot read secret file {}: {source}", path.display())]
    SecretFile {
        /// The resolved file path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A secret file exists but holds nothing (after trimming the trailing newline).
    #[error("secret file {} is empty", path.display())]
    SecretFileEmpty {
        /// The resolved file path.
        path: PathBuf,
    },
    /// The config file could not be watched.
    #[error("cannot watch config file {}: {source}", path.display())]
    Watch {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: notify::Error,
    },
}

impl ConfigError {
    /// The located problems this error carries (one for a syntax error, all of them for a
    /// validation error, none otherwise).
    #[must_use]
    pub fn issues(&self) -> &[ConfigIssue] {
        match self {
            Self::Syntax { issue } => std::slice::from_ref(issue),
            Self::Invalid { issues } => issues,
            _ => &[],
        }
    }
}

/// Displays issues one per line.
struct Lines<'a>(&'a [ConfigIssue]);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(file: &str, position: Option<(usize, usize)>, key: &str) -> ConfigIssue {
        ConfigIssue {
            file: PathBuf::from(file),
            position: position.map(|(line, column)| Position { line, column }),
            key: key.to_owned(),
            message: "msg".to_owned(),
        }
    }

    #[test]
    fn issue_display_leaves_out_unknown_parts() {
        assert_eq!(
            issue("c.json5", Some((7, 13)), "gateway.auth.mode").to_string(),
            "c.json5:7:13: gateway.auth.mode: msg"
        );
        assert_eq!(issue("c.json5", None, "gateway.port").to_string(), "c.json5: gateway.port: msg");
        assert_eq!(issue("", None, "gateway.port").to_string(), "gateway.port: msg");
        assert_eq!(issue("c.json5", Some((1, 1)), "").to_string(), "c.json5:1:1: msg");
        assert_eq!(issue("", Some((2, 3)), "").to_string(), "2:3: msg");
    }

    #[test]
    fn invalid_displays_one_issue_per_line() {
        let err = ConfigError::Invalid { issues: vec![issue("a", Some((1, 2)), "x"), issue("a", Some((3, 4)), "y")] };
        assert_eq!(err.to_string(), "a:1:2: x: msg\na:3:4: y: msg");
        assert_eq!(err.issues().len(), 2);
    }
}
