//! Who may log in (the users file) and who may open which document (the ACL file).
//!
//! Users file, one per line: `name:<argon2 PHC hash>` (make one with `compose-relay
//! hash-password`). ACL file, one document per line: `doc-id: ann bob`. `#` starts a comment.
//! Names and document ids are `[A-Za-z0-9_-]{1,64}`: they become parts of session keys
//! (`compose:doc:<doc>:<user>`), so nothing else may appear in them; `shared` is reserved for a
//! document's shared chat.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use anyhow::{Context, bail};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};

/// The name of a document's shared chat in its session key; no user may be called so.
pub const SHARED: &str = "shared";

/// Whether `s` may be a user name or a document id.
pub fn is_name(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// An argon2id hash of a password, in PHC form.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))
}

/// The users and the documents each may open.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    hashes: HashMap<String, String>,
    acl: BTreeMap<String, BTreeSet<String>>,
}

/// Lines of a file without comments and blanks, with their 1-based numbers.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split('#').next().unwrap_or_default().trim()))
        .filter(|(_, l)| !l.is_empty())
}

impl Accounts {
    /// Read both files; an error names the file and line.
    pub fn load(users: &Path, acl: &Path) -> anyhow::Result<Self> {
        let users_text = std::fs::read_to_string(users).with_context(|| format!("reading {}", users.display()))?;
        let acl_text = std::fs::read_to_string(acl).with_context(|| format!("reading {}", acl.display()))?;
        Self::parse(&users_text, &acl_text).with_context(|| format!("in {} or {}", users.display(), acl.display()))
    }

    /// Parse the two files' text.
    pub fn parse(users: &str, acl: &str) -> anyhow::Result<Self> {
        let mut hashes = HashMap::new();
        for (n, line) in lines(users) {
            let Some((name, hash)) = line.split_once(':') else {
                bail!("users line {n}: expected `name:<argon2 hash>`");
            };
            let name = name.trim();
            if !is_name(name) || name == SHARED {
                bail!("users line {n}: {name:?} is not a usable name ([A-Za-z0-9_-], 1-64, not \"shared\")");
            }
            PasswordHash::new(hash.trim()).map_err(|e| {
                anyhow::anyhow!("users line {n}: not an argon2 hash ({e}); make one with `compose-relay hash-password`")
            })?;
            if hashes.insert(name.to_owned(), hash.trim().to_owned()).is_some() {
                bail!("users line {n}: {name} is listed twice");
            }
        }
        let mut docs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (n, line) in lines(acl) {
            let Some((doc, who)) = line.split_once(':') else {
                bail!("ACL line {n}: expected `doc-id: user user …`");
            };
            let doc = doc.trim();
            if !is_name(doc) {
                bail!("ACL line {n}: {doc:?} is not a usable document id ([A-Za-z0-9_-], 1-64)");
            }
            let entry = docs.entry(doc.to_owned()).or_default();
            for user in who.split_whitespace() {
                if !hashes.contains_key(user) {
                    bail!("ACL line {n}: {user} is not in the users file");
                }
                entry.insert(user.to_owned());
            }
        }
        Ok(Self { hashes, acl: docs })
    }

    /// Whether `password` is `user`'s. Costs one argon2 verification whether or not the user
    /// exists, so timing does not tell which names exist.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        // A hash of a random password, checked when the user is unknown.
        static DUMMY: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| hash_password(&uuid::Uuid::new_v4().to_string()).unwrap_or_default());
        let (hash, known) = match self.hashes.get(user) {
            Some(h) => (h.as_str(), true),
            None => (DUMMY.as_str(), false),
        };
        let Ok(parsed) = PasswordHash::new(hash) else { return false };
        argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok() && known
    }

    /// Whether `user` may open `doc`.
    pub fn may_open(&self, user: &str, doc: &str) -> bool {
        self.acl.get(doc).is_some_and(|users| users.contains(user))
    }

    /// The documents `user` may open.
    pub fn documents_of(&self, user: &str) -> Vec<String> {
        self.acl.iter().filter(|(_, users)| users.contains(user)).map(|(doc, _)| doc.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts() -> Accounts {
        let users =
            format!("# users\nann:{}\nbob:{}\n", hash_password("a-pw").unwrap(), hash_password("b-pw").unwrap());
        Accounts::parse(&users, "plan: ann bob  # both\nsecret: ann\n").expect("parses")
    }

    #[test]
    fn passwords_and_the_acl_decide() {
        let a = accounts();
        assert!(a.verify("ann", "a-pw"));
        assert!(!a.verify("ann", "b-pw"));
        assert!(!a.verify("nobody", "a-pw"));
        assert!(a.may_open("bob", "plan") && !a.may_open("bob", "secret") && !a.may_open("bob", "nope"));
        assert_eq!(a.documents_of("ann"), ["plan", "secret"]);
    }

    #[test]
    fn bad_files_are_refused_with_the_line() {
        let hash = hash_password("x").unwrap();
        for (users, acl, needle) in [
            ("ann".to_owned(), String::new(), "users line 1"),
            (format!("shared:{hash}"), String::new(), "not a usable name"),
            (format!("a:b:{hash}"), String::new(), "not an argon2 hash"),
            (format!("ann:{hash}\nann:{hash}"), String::new(), "line 2: ann is listed twice"),
            (format!("ann:{hash}"), "\n\ndoc x: ann".to_owned(), "ACL line 3"),
            (format!("ann:{hash}"), "doc: bob".to_owned(), "bob is not in the users file"),
        ] {
            let e = Accounts::parse(&users, &acl).expect_err("refused").to_string();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn names_cannot_smuggle_key_parts() {
        assert!(is_name("ann_1-x"));
        for bad in ["", "a:b", "a b", "ann\n", &"x".repeat(65), "ü"] {
            assert!(!is_name(bad), "{bad:?}");
        }
    }
}
