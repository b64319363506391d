//! Name rules control and nodes share: plain names, JavaScript identifiers, and how a refused name is echoed.

/// Whether `name` is 1 to `max` bytes of `[A-Za-z0-9_-]` (function and KV namespace names).
pub fn is_plain_name(name: &str, max: usize) -> bool {
    (1..=max).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether `name` is an ASCII JavaScript identifier of at most `max` bytes, as it
/// appears on `env` (secret and KV binding names).
pub fn is_identifier(name: &str, max: usize) -> bool {
    let mut bytes = name.bytes();
    name.len() <= max
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b'$')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
}

/// The start (80 characters) of a name too long to echo whole in an error message.
pub fn shorten(name: &str) -> String {
    name.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names() {
        for good in ["a", "api", "my_fn-2", &"x".repeat(63)] {
            assert!(is_plain_name(good, 63), "{good:?}");
        }
        for bad in ["", "a b", "a/b", "ü", "a.b", &"x".repeat(64)] {
            assert!(!is_plain_name(bad, 63), "{bad:?}");
        }
    }

    #[test]
    fn identifiers() {
        for good in ["TOKEN", "_x", "$y", "kv2", &"x".repeat(128)] {
            assert!(is_identifier(good, 128), "{good:?}");
        }
        for bad in ["", "2x", "a-b", "a b", "a.b", "ü", &"x".repeat(129)] {
            assert!(!is_identifier(bad, 128), "{bad:?}");
        }
    }

    #[test]
    fn shortened_names_keep_80_characters() {
        assert_eq!(shorten("short"), "short");
        assert_eq!(shorten(&"é".repeat(100)), "é".repeat(80));
    }
}
