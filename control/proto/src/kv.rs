//! Workers-KV limits and names, checked in pure code so control and the node refuse exactly the same keys, values, metadata, list limits and expirations.
//!
//! | Limit | Value |
//! |---|---|
//! | key | 1 to [`MAX_KEY_BYTES`] bytes of UTF-8, not `.` or `..` |
//! | value | at most [`MAX_VALUE_BYTES`] (25 MiB) |
//! | metadata | at most [`MAX_METADATA_BYTES`] of compact serialized JSON |
//! | list `limit` | 1 to [`MAX_LIST_LIMIT`], [`DEFAULT_LIST_LIMIT`] when omitted |
//! | `expiration` | absolute Unix seconds, later than now, at most [`MAX_EXPIRATION`] |
//! | `expirationTtl` | seconds from now, at least [`MIN_EXPIRATION_TTL`] |
//!
//! Cloudflare requires `expiration`/`expirationTtl` to be at least 60 seconds away;
//! Outpost accepts anything from one second on (expirations are exact: an expired key
//! is never returned, whatever a cache holds).
//!
//! List cursors are opaque to callers: [`encode_cursor`] turns the last key of a page
//! into one, [`decode_cursor`] turns it back; the next page starts after that key.

use serde::Deserialize;
use serde::Serialize;

use crate::names::is_identifier;
use crate::names::is_plain_name;
use crate::names::shorten;

/// Longest key, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 512;

/// Largest value, in bytes (25 MiB).
pub const MAX_VALUE_BYTES: usize = 25 * 1024 * 1024;

/// Largest metadata, in bytes of compact serialized JSON.
pub const MAX_METADATA_BYTES: usize = 1024;

/// Most keys one `list` page returns.
pub const MAX_LIST_LIMIT: u32 = 1000;

/// Keys per `list` page when the caller gives no limit.
pub const DEFAULT_LIST_LIMIT: u32 = 1000;

/// Shortest `expirationTtl`, in seconds (Workers requires 60; Outpost accepts 1).
pub const MIN_EXPIRATION_TTL: u64 = 1;

/// Latest accepted `expiration`: JavaScript's `Number.MAX_SAFE_INTEGER`, so every
/// expiration survives the trip through a handler unchanged.
pub const MAX_EXPIRATION: u64 = (1 << 53) - 1;

/// Longest namespace name.
pub const MAX_NAMESPACE_NAME: usize = 63;

/// Longest binding name (`env.NAME`).
pub const MAX_BINDING_NAME: usize = 128;

/// One key of a listing (`list()` in a handler, `GET /v1/kv/{ns}/keys`, [`Response::KvKeys`](crate::wire::Response::KvKeys)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvKey {
    /// The key.
    pub name: String,
    /// When it expires, Unix seconds; absent when it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<u64>,
    /// The metadata stored with it; absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

/// A KV argument outside the limits; the message is meant for the handler's author.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvLimitError {
    /// The key is the empty string.
    #[error("KV key is empty")]
    EmptyKey,
    /// The key is `.` or `..`.
    #[error("KV key cannot be \".\" or \"..\"")]
    DotKey,
    /// The key is longer than [`MAX_KEY_BYTES`].
    #[error("KV key exceeds {MAX_KEY_BYTES} bytes (it has {0})")]
    KeyTooLong(usize),
    /// The value is larger than [`MAX_VALUE_BYTES`].
    #[error("KV value exceeds 25 MiB ({MAX_VALUE_BYTES} bytes; it has {0})")]
    ValueTooLarge(usize),
    /// The metadata serializes to more than [`MAX_METADATA_BYTES`].
    #[error("KV metadata exceeds {MAX_METADATA_BYTES} bytes of serialized JSON (it has {0})")]
    MetadataTooLarge(usize),
    /// The metadata is not JSON.
    #[error("KV metadata is not valid JSON: {0}")]
    MetadataNotJson(String),
    /// A list limit outside 1..=[`MAX_LIST_LIMIT`].
    #[error("KV list limit must be between 1 and {MAX_LIST_LIMIT}, not {0}")]
    ListLimit(u64),
    /// Both `expiration` and `expiration_ttl` were given.
    #[error("give either a KV expiration or an expiration TTL, not both")]
    BothExpirations,
    /// An `expiration_ttl` below [`MIN_EXPIRATION_TTL`].
    #[error("KV expiration TTL must be at least {MIN_EXPIRATION_TTL} second(s), not {0}")]
    TtlTooShort(u64),
    /// An `expiration` that is not later than now.
    #[error("KV expiration {expiration} is not in the future (now is {now}, Unix seconds)")]
    ExpirationPassed {
        /// The expiration asked for.
        expiration: u64,
        /// Now, Unix seconds.
        now: u64,
    },
    /// An `expiration` (or now + TTL) later than [`MAX_EXPIRATION`].
    #[error("KV expiration {0} is too far in the future (the latest is {MAX_EXPIRATION})")]
    ExpirationTooLate(u64),
    /// A cursor that [`encode_cursor`] did not make.
    #[error("invalid KV list cursor")]
    BadCursor,
    /// A namespace name outside `[A-Za-z0-9_-]{1,63}`.
    #[error(
        "invalid KV namespace name {0:?}: use 1 to {MAX_NAMESPACE_NAME} letters, digits, `_` or `-`"
    )]
    NamespaceName(String),
    /// A binding name that is not a JavaScript identifier.
    #[error(
        "invalid KV binding name {0:?}: use a JavaScript identifier (letters, digits, `_`, `$`; not starting with a digit)"
    )]
    BindingName(String),
}

/// Checks a key: non-empty, at most [`MAX_KEY_BYTES`] bytes, not `.` or `..`.
pub fn check_key(key: &str) -> Result<(), KvLimitError> {
    match key {
        "" => Err(KvLimitError::EmptyKey),
        "." | ".." => Err(KvLimitError::DotKey),
        _ if key.len() > MAX_KEY_BYTES => Err(KvLimitError::KeyTooLong(key.len())),
        _ => Ok(()),
    }
}

/// Checks a value's size.
pub fn check_value_size(bytes: usize) -> Result<(), KvLimitError> {
    if bytes > MAX_VALUE_BYTES {
        Err(KvLimitError::ValueTooLarge(bytes))
    } else {
        Ok(())
    }
}

/// Checks metadata and returns its compact serialization (what is stored and measured).
pub fn check_metadata(metadata: &serde_json::Value) -> Result<String, KvLimitError> {
    let text = serde_json::to_string(metadata)
        .map_err(|error| KvLimitError::MetadataNotJson(error.to_string()))?;
    if text.len() > MAX_METADATA_BYTES {
        return Err(KvLimitError::MetadataTooLarge(text.len()));
    }
    Ok(text)
}

/// Parses metadata given as JSON text, then checks it like [`check_metadata`].
pub fn parse_metadata(text: &str) -> Result<serde_json::Value, KvLimitError> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|error| KvLimitError::MetadataNotJson(error.to_string()))?;
    check_metadata(&value)?;
    Ok(value)
}

/// The page size for a list `limit`: [`DEFAULT_LIST_LIMIT`] when omitted, else 1..=[`MAX_LIST_LIMIT`].
pub fn list_limit(limit: Option<u64>) -> Result<u32, KvLimitError> {
    match limit {
        None => Ok(DEFAULT_LIST_LIMIT),
        Some(limit @ 1..) if limit <= u64::from(MAX_LIST_LIMIT) => {
            u32::try_from(limit).map_err(|_| KvLimitError::ListLimit(limit))
        }
        Some(limit) => Err(KvLimitError::ListLimit(limit)),
    }
}

/// Checks an absolute expiration against `now` (Unix seconds): later than now, at most
/// [`MAX_EXPIRATION`].
pub fn check_expiration(expiration: u64, now: u64) -> Result<(), KvLimitError> {
    if expiration > MAX_EXPIRATION {
        return Err(KvLimitError::ExpirationTooLate(expiration));
    }
    if expiration <= now {
        return Err(KvLimitError::ExpirationPassed { expiration, now });
    }
    Ok(())
}

/// The absolute expiration a put asks for with `expiration` (Unix seconds) or
/// `expiration_ttl` (seconds from `now`); `None` when the key never expires.
pub fn resolve_expiration(
    expiration: Option<u64>,
    expiration_ttl: Option<u64>,
    now: u64,
) -> Result<Option<u64>, KvLimitError> {
    let absolute = match (expiration, expiration_ttl) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => return Err(KvLimitError::BothExpirations),
        (Some(expiration), None) => expiration,
        (None, Some(ttl)) => {
            if ttl < MIN_EXPIRATION_TTL {
                return Err(KvLimitError::TtlTooShort(ttl));
            }
            now.saturating_add(ttl)
        }
    };
    check_expiration(absolute, now)?;
    Ok(Some(absolute))
}

/// Whether an entry with `expiration` is still live at `now` (it is not once `now`
/// reaches the expiration second).
pub fn is_live(expiration: Option<u64>, now: u64) -> bool {
    expiration.is_none_or(|expiration| expiration > now)
}

/// The cursor continuing a listing after `last_key`.
pub fn encode_cursor(last_key: &str) -> String {
    hex::encode(last_key.as_bytes())
}

/// The key a cursor continues after.
pub fn decode_cursor(cursor: &str) -> Result<String, KvLimitError> {
    let bytes = hex::decode(cursor).map_err(|_| KvLimitError::BadCursor)?;
    let key = String::from_utf8(bytes).map_err(|_| KvLimitError::BadCursor)?;
    check_key(&key).map_err(|_| KvLimitError::BadCursor)?;
    Ok(key)
}

/// Checks a namespace name: 1 to [`MAX_NAMESPACE_NAME`] of `[A-Za-z0-9_-]`.
pub fn check_namespace_name(name: &str) -> Result<(), KvLimitError> {
    if is_plain_name(name, MAX_NAMESPACE_NAME) {
        Ok(())
    } else {
        Err(KvLimitError::NamespaceName(shorten(name)))
    }
}

/// Checks a binding name: an (ASCII) JavaScript identifier, as it appears on `env`.
pub fn check_binding_name(name: &str) -> Result<(), KvLimitError> {
    if is_identifier(name, MAX_BINDING_NAME) {
        Ok(())
    } else {
        Err(KvLimitError::BindingName(shorten(name)))
    }
}

/// Compact JSON with every non-ASCII character (and DEL) escaped (`\uXXXX`), so metadata
/// fits in an HTTP header (`x-outpost-kv-metadata`) and still parses to the same value.
pub fn ascii_json(value: &serde_json::Value) -> String {
    let text = value.to_string();
    let mut out = String::with_capacity(text.len());
    let mut units = [0u16; 2];
    for c in text.chars() {
        if c.is_ascii() && c != '\x7f' {
            out.push(c);
        } else {
            // Such characters only occur inside JSON strings, where escapes are valid
            // (serde_json escapes the other control characters already).
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys() {
        for good in ["a", "...", "a/b", "ü", &"x".repeat(MAX_KEY_BYTES)] {
            assert_eq!(check_key(good), Ok(()), "{good:?}");
        }
        assert_eq!(check_key(""), Err(KvLimitError::EmptyKey));
        assert_eq!(check_key("."), Err(KvLimitError::DotKey));
        assert_eq!(check_key(".."), Err(KvLimitError::DotKey));
        // 257 two-byte characters: 514 bytes.
        let long = "é".repeat(257);
        assert_eq!(check_key(&long), Err(KvLimitError::KeyTooLong(514)));
        assert_eq!(
            KvLimitError::KeyTooLong(514).to_string(),
            "KV key exceeds 512 bytes (it has 514)"
        );
    }

    #[test]
    fn values() {
        assert_eq!(check_value_size(0), Ok(()));
        assert_eq!(check_value_size(MAX_VALUE_BYTES), Ok(()));
        let error = check_value_size(MAX_VALUE_BYTES + 1);
        assert_eq!(error, Err(KvLimitError::ValueTooLarge(MAX_VALUE_BYTES + 1)));
        assert!(
            error
                .map_err(|e| e.to_string())
                .err()
                .is_some_and(|m| m.starts_with("KV value exceeds 25 MiB"))
        );
    }

    #[test]
    fn metadata() -> Result<(), KvLimitError> {
        assert_eq!(check_metadata(&json!({ "a": 1 }))?, r#"{"a":1}"#);
        // 1024 bytes exactly: `"` + 1022 + `"`.
        let fits = json!("x".repeat(MAX_METADATA_BYTES - 2));
        assert_eq!(check_metadata(&fits)?.len(), MAX_METADATA_BYTES);
        let over = json!("x".repeat(MAX_METADATA_BYTES - 1));
        assert_eq!(
            check_metadata(&over),
            Err(KvLimitError::MetadataTooLarge(MAX_METADATA_BYTES + 1))
        );
        assert_eq!(parse_metadata(" [1, 2] ")?, json!([1, 2]));
        assert!(matches!(
            parse_metadata("{nope"),
            Err(KvLimitError::MetadataNotJson(_))
        ));
        Ok(())
    }

    #[test]
    fn list_limits() {
        assert_eq!(list_limit(None), Ok(DEFAULT_LIST_LIMIT));
        assert_eq!(list_limit(Some(1)), Ok(1));
        assert_eq!(list_limit(Some(1000)), Ok(1000));
        assert_eq!(list_limit(Some(0)), Err(KvLimitError::ListLimit(0)));
        assert_eq!(list_limit(Some(1001)), Err(KvLimitError::ListLimit(1001)));
        assert_eq!(
            list_limit(Some(u64::MAX)),
            Err(KvLimitError::ListLimit(u64::MAX))
        );
    }

    #[test]
    fn expirations() {
        let now = 1_700_000_000;
        assert_eq!(resolve_expiration(None, None, now), Ok(None));
        assert_eq!(
            resolve_expiration(Some(now + 1), None, now),
            Ok(Some(now + 1))
        );
        assert_eq!(resolve_expiration(None, Some(1), now), Ok(Some(now + 1)));
        assert_eq!(resolve_expiration(None, Some(60), now), Ok(Some(now + 60)));
        assert_eq!(
            resolve_expiration(Some(now), None, now),
            Err(KvLimitError::ExpirationPassed {
                expiration: now,
                now
            })
        );
        assert_eq!(
            resolve_expiration(None, Some(0), now),
            Err(KvLimitError::TtlTooShort(0))
        );
        assert_eq!(
            resolve_expiration(Some(now + 5), Some(5), now),
            Err(KvLimitError::BothExpirations)
        );
        assert_eq!(
            resolve_expiration(None, Some(u64::MAX), now),
            Err(KvLimitError::ExpirationTooLate(u64::MAX))
        );
        assert_eq!(
            resolve_expiration(Some(MAX_EXPIRATION + 1), None, now),
            Err(KvLimitError::ExpirationTooLate(MAX_EXPIRATION + 1))
        );
    }

    #[test]
    fn liveness_is_exact() {
        assert!(is_live(None, u64::MAX));
        assert!(is_live(Some(10), 9));
        assert!(!is_live(Some(10), 10));
        assert!(!is_live(Some(10), 11));
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        for key in ["a", "ü/ß", &"z".repeat(MAX_KEY_BYTES)] {
            assert_eq!(decode_cursor(&encode_cursor(key)).as_deref(), Ok(key));
        }
        for bad in ["", "zz", "ff", "0", &encode_cursor(".")] {
            assert_eq!(decode_cursor(bad), Err(KvLimitError::BadCursor), "{bad:?}");
        }
    }

    #[test]
    fn namespace_and_binding_names() {
        for good in ["a", "CACHE", "my-ns_2", &"x".repeat(MAX_NAMESPACE_NAME)] {
            assert_eq!(check_namespace_name(good), Ok(()), "{good:?}");
        }
        for bad in ["", "a b", "a/b", "ü", "a.b", &"x".repeat(64)] {
            assert!(check_namespace_name(bad).is_err(), "{bad:?}");
        }
        for good in ["CACHE", "_x", "$y", "kv2"] {
            assert_eq!(check_binding_name(good), Ok(()), "{good:?}");
        }
        for bad in ["", "2x", "a-b", "a b", "a.b", "ü"] {
            assert!(check_binding_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ascii_json_escapes_and_parses_back() -> Result<(), serde_json::Error> {
        let value = json!({ "city": "Zürich", "emoji": "🦀", "n": [1, "a\"b\u{7f}"] });
        let text = ascii_json(&value);
        assert!(text.is_ascii(), "{text}");
        assert!(
            text.contains("\\u00fc") && text.contains("\\ud83e\\udd80"),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<serde_json::Value>(&text)?, value);
        Ok(())
    }

    #[test]
    fn list_keys_omit_absent_fields() -> Result<(), serde_json::Error> {
        let bare = KvKey {
            name: "a".into(),
            expiration: None,
            metadata: None,
        };
        assert_eq!(serde_json::to_string(&bare)?, r#"{"name":"a"}"#);
        assert_eq!(serde_json::from_str::<KvKey>(r#"{"name":"a"}"#)?, bare);
        Ok(())
    }
}
