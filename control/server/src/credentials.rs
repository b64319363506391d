//! Admin and join tokens: generated at random, stored only as SHA-256, compared in constant time.

use sha2::Digest;

/// SHA-256 of `bytes` as lowercase hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A new admin token: 32 random bytes as hex.
pub(crate) fn new_admin_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// A new join-token secret: 16 random bytes as hex (the token adds the CA fingerprint).
pub(crate) fn new_join_secret() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// The join token handed to a node: `<secret>.<CA sha256>`.
pub(crate) fn join_token(secret: &str, ca_sha256: &str) -> String {
    format!("{secret}.{ca_sha256}")
}

/// Whether `presented` hashes to `expected_sha256_hex`, without an early exit that
/// would leak how many leading bytes matched.
pub(crate) fn token_matches(presented: &str, expected_sha256_hex: &str) -> bool {
    let actual = sha256_hex(presented.as_bytes());
    let (a, b) = (actual.as_bytes(), expected_sha256_hex.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_their_hash() {
        let token = new_admin_token();
        assert_eq!(token.len(), 64);
        let stored = sha256_hex(token.as_bytes());
        assert!(token_matches(&token, &stored));
        assert!(!token_matches("wrong", &stored));
        assert!(!token_matches(&token, "short"));
        assert_ne!(new_admin_token(), token);
    }

    #[test]
    fn join_tokens_parse_back() -> Result<(), outpost_proto::tls::TlsError> {
        let ca = sha256_hex(b"ca");
        let secret = new_join_secret();
        let parts = outpost_proto::tls::parse_join_token(&join_token(&secret, &ca))?;
        assert_eq!(parts.secret, secret);
        assert_eq!(parts.ca_sha256, ca);
        Ok(())
    }
}
