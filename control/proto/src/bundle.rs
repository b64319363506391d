//! Function bundles as uploaded and stored: a JSON archive of ES modules, addressed by its SHA-256.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::Serialize;
use sha2::Digest;

use crate::names::shorten;

/// Largest bundle archive accepted anywhere (upload, push, disk), in bytes.
pub const MAX_BUNDLE_BYTES: usize = 64 * 1024 * 1024;

/// The SHA-256 of a bundle archive, as 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BundleHash(String);

impl BundleHash {
    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> BundleHash {
        BundleHash(hex::encode(sha2::Sha256::digest(bytes)))
    }

    /// Parses 64 hex digits (either case).
    pub fn parse(text: &str) -> Result<BundleHash, BundleError> {
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(BundleHash(text.to_ascii_lowercase()))
        } else {
            Err(BundleError::BadHash(shorten(text)))
        }
    }

    /// The hex digits; safe to use as a file name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BundleHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for BundleHash {
    type Error = BundleError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        BundleHash::parse(&value)
    }
}

impl From<BundleHash> for String {
    fn from(value: BundleHash) -> Self {
        value.0
    }
}

/// The modules of one function version, as uploaded: entry module plus relative path → source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleArchive {
    /// Path of the entry module (one of `modules`).
    pub main: String,
    /// Every module (and source map), by relative path.
    pub modules: BTreeMap<String, String>,
}

/// A bundle that is malformed, too large, or not what its hash says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// Not a SHA-256 hex string.
    #[error("{0:?} is not a SHA-256 bundle hash (64 hex digits)")]
    BadHash(String),
    /// The bytes do not hash to the expected value.
    #[error("bundle content hashes to {actual}, not {expected}")]
    HashMismatch {
        /// The hash the bundle was named by.
        expected: BundleHash,
        /// The hash of the bytes received.
        actual: BundleHash,
    },
    /// Larger than [`MAX_BUNDLE_BYTES`].
    #[error("bundle of {0} bytes exceeds the limit of {MAX_BUNDLE_BYTES} bytes")]
    TooLarge(usize),
    /// Not a bundle archive.
    #[error("not a bundle archive: {0}")]
    Malformed(String),
}

impl BundleArchive {
    /// The canonical bytes (what is hashed, uploaded and stored).
    pub fn to_bytes(&self) -> Vec<u8> {
        // A map of strings always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses archive bytes, checking size, shape and that `main` is present.
    pub fn from_bytes(bytes: &[u8]) -> Result<BundleArchive, BundleError> {
        if bytes.len() > MAX_BUNDLE_BYTES {
            return Err(BundleError::TooLarge(bytes.len()));
        }
        let archive: BundleArchive = serde_json::from_slice(bytes)
            .map_err(|error| BundleError::Malformed(error.to_string()))?;
        if !archive.modules.contains_key(&archive.main) {
            return Err(BundleError::Malformed(format!(
                "the main module {:?} is not in the archive",
                archive.main
            )));
        }
        Ok(archive)
    }

    /// Parses archive bytes that must hash to `expected`.
    pub fn verified(expected: &BundleHash, bytes: &[u8]) -> Result<BundleArchive, BundleError> {
        let actual = BundleHash::of(bytes);
        if &actual != expected {
            return Err(BundleError::HashMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        BundleArchive::from_bytes(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive() -> BundleArchive {
        BundleArchive {
            main: "index.js".into(),
            modules: BTreeMap::from([("index.js".to_string(), "export default {}".to_string())]),
        }
    }

    #[test]
    fn round_trips_and_verifies_by_hash() -> Result<(), BundleError> {
        let bytes = archive().to_bytes();
        let hash = BundleHash::of(&bytes);
        assert_eq!(hash.as_str().len(), 64);
        assert_eq!(BundleArchive::verified(&hash, &bytes)?, archive());
        Ok(())
    }

    #[test]
    fn tampered_bytes_are_refused() {
        let bytes = archive().to_bytes();
        let hash = BundleHash::of(&bytes);
        let mut tampered = bytes.clone();
        tampered.push(b' ');
        assert!(matches!(
            BundleArchive::verified(&hash, &tampered),
            Err(BundleError::HashMismatch { .. })
        ));
    }

    #[test]
    fn archive_without_its_main_module_is_malformed() {
        let mut bad = archive();
        bad.main = "missing.js".into();
        let error = BundleArchive::from_bytes(&bad.to_bytes()).map(|_| ());
        assert!(matches!(error, Err(BundleError::Malformed(m)) if m.contains("missing.js")));
    }

    #[test]
    fn hashes_must_be_hex_of_the_right_length() {
        assert!(BundleHash::parse("abc").is_err());
        assert!(BundleHash::parse(&"g".repeat(64)).is_err());
        let upper = "A".repeat(64);
        assert_eq!(
            BundleHash::parse(&upper).map(|h| h.to_string()),
            Ok("a".repeat(64))
        );
        assert!(serde_json::from_str::<BundleHash>("\"../../etc/passwd\"").is_err());
    }
}
