//! The node's durable copy of what control gave it: identity (key and certificates), the last good snapshot, and bundles by hash.
//!
//! Every file is written atomically (temporary file, fsync, rename, fsync of the
//! directory), so a crash leaves either the old or the new copy, never half of one.

use std::io::Write;
use std::path::Path;
use std::path::PathBuf;

use outpost_proto::BundleArchive;
use outpost_proto::BundleHash;
use outpost_proto::Snapshot;
use serde::Deserialize;
use serde::Serialize;

/// The node's certificate and the CA it trusts, issued when it joined.
#[derive(Clone, Serialize, Deserialize)]
pub struct Identity {
    /// Node id assigned by control.
    pub node_id: String,
    /// The node's private key, PEM.
    pub key_pem: String,
    /// The node's certificate, PEM.
    pub cert_pem: String,
    /// Control's CA, PEM.
    pub ca_pem: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// The node's data directory.
#[derive(Debug, Clone)]
pub struct NodeStore {
    dir: PathBuf,
}

impl NodeStore {
    /// Opens (creating if needed) the data directory.
    pub fn open(dir: &Path) -> std::io::Result<NodeStore> {
        std::fs::create_dir_all(dir.join("bundles"))?;
        Ok(NodeStore {
            dir: dir.to_path_buf(),
        })
    }

    /// The identity saved at join, if the node has joined.
    pub fn identity(&self) -> std::io::Result<Option<Identity>> {
        self.read_json("identity.json")
    }

    /// Saves the identity (readable by the node's user only).
    pub fn save_identity(&self, identity: &Identity) -> std::io::Result<()> {
        self.write_json("identity.json", identity)
    }

    /// The last snapshot this node applied, if any.
    pub fn snapshot(&self) -> std::io::Result<Option<Snapshot>> {
        self.read_json("snapshot.json")
    }

    /// Records `snapshot` as the last good one (it carries secrets: owner-only file).
    pub fn save_snapshot(&self, snapshot: &Snapshot) -> std::io::Result<()> {
        self.write_json("snapshot.json", snapshot)
    }

    /// Whether the bundle is on disk.
    pub fn has_bundle(&self, hash: &BundleHash) -> bool {
        self.bundle_path(hash).exists()
    }

    /// Stores a bundle's bytes after checking they hash to `hash`.
    pub fn save_bundle(&self, hash: &BundleHash, bytes: &[u8]) -> Result<(), String> {
        BundleArchive::verified(hash, bytes).map_err(|error| error.to_string())?;
        write_atomically(&self.bundle_path(hash), bytes)
            .map_err(|error| format!("storing bundle {hash}: {error}"))
    }

    /// Reads and checks a stored bundle.
    pub fn bundle(&self, hash: &BundleHash) -> Result<BundleArchive, String> {
        let bytes = std::fs::read(self.bundle_path(hash))
            .map_err(|error| format!("bundle {hash} is not on this node: {error}"))?;
        BundleArchive::verified(hash, &bytes).map_err(|error| format!("bundle {hash}: {error}"))
    }

    /// Deletes stored bundles that `keep` does not name.
    pub fn prune_bundles<'a>(&self, keep: impl IntoIterator<Item = &'a BundleHash>) {
        let keep: std::collections::HashSet<&str> =
            keep.into_iter().map(BundleHash::as_str).collect();
        let Ok(entries) = std::fs::read_dir(self.dir.join("bundles")) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !keep.contains(name.to_string_lossy().as_ref()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    fn bundle_path(&self, hash: &BundleHash) -> PathBuf {
        self.dir.join("bundles").join(hash.as_str())
    }

    fn read_json<T: serde::de::DeserializeOwned>(&self, name: &str) -> std::io::Result<Option<T>> {
        let path = self.dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|error| std::io::Error::other(format!("{}: {error}", path.display()))),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    fn write_json<T: Serialize>(&self, name: &str, value: &T) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
        write_atomically(&self.dir.join(name), &bytes)
    }
}

/// Writes `bytes` to `path` so that readers see the old file or the whole new one.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let temp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("outpost-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn snapshot_and_bundles_survive_reopening() -> Result<(), Box<dyn std::error::Error>> {
        let dir = temp_dir("reopen");
        let store = NodeStore::open(&dir)?;
        assert!(store.snapshot()?.is_none());
        let archive = BundleArchive {
            main: "index.js".into(),
            modules: [("index.js".to_string(), "export default {}".to_string())].into(),
        };
        let bytes = archive.to_bytes();
        let hash = BundleHash::of(&bytes);
        store.save_bundle(&hash, &bytes)?;
        let snapshot = Snapshot {
            version: 9,
            ..Snapshot::default()
        };
        store.save_snapshot(&snapshot)?;

        let reopened = NodeStore::open(&dir)?;
        assert_eq!(reopened.snapshot()?.map(|s| s.version), Some(9));
        assert_eq!(reopened.bundle(&hash)?, archive);
        reopened.prune_bundles([]);
        assert!(!reopened.has_bundle(&hash));
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn bundle_bytes_must_match_their_hash() -> std::io::Result<()> {
        let dir = temp_dir("hash");
        let store = NodeStore::open(&dir)?;
        let hash = BundleHash::of(b"one");
        assert!(store.save_bundle(&hash, b"two").is_err());
        assert!(!store.has_bundle(&hash));
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
