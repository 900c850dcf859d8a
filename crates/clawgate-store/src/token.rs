//! Device token material. Pure functions, so they are unit-tested without a database.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// Random bytes per token: 256 bits, beyond guessing.
const TOKEN_BYTES: usize = 32;

/// A fresh token: 32 bytes from the OS RNG, base64url without padding (43 characters).
pub(crate) fn generate_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What is stored instead of the token. The token already has full entropy, so a plain
/// SHA-256 is enough; a slow KDF would only slow down every connect.
pub(crate) fn hash_token(plain: &str) -> [u8; 32] {
    Sha256::digest(plain.as_bytes()).into()
}

/// Constant-time comparison of a presented token's hash with a stored hash.
pub(crate) fn hash_matches(presented: &[u8; 32], stored: &[u8]) -> bool {
    // `ct_eq` on slices of different lengths is simply false, so a malformed stored hash
    // cannot panic or match.
    bool::from(presented.as_slice().ct_eq(stored))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_url_safe_43_chars_and_distinct() {
        let a = generate_token();
        let b = generate_token();
        assert_eq!(a.len(), 43);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).map(|v| v.len()).ok(), Some(TOKEN_BYTES));
    }

    #[test]
    fn hash_matches_only_the_same_token() {
        let token = generate_token();
        let stored = hash_token(&token);
        assert!(hash_matches(&hash_token(&token), &stored));
        assert!(!hash_matches(&hash_token("other"), &stored));
    }

    #[test]
    fn malformed_stored_hash_never_matches() {
        let presented = hash_token("x");
        assert!(!hash_matches(&presented, &presented[..31]));
        assert!(!hash_matches(&presented, &[]));
    }
}
