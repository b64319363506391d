//! KV namespaces in a local SQLite file, for `outpost dev` and nodes without control: same API and expiry rules, no cache, no network.

use std::path::Path;
use std::sync::Mutex;

use bytes::Bytes;
use outpost_engine::kv::KvEntry;
use outpost_engine::kv::KvError;
use outpost_engine::kv::KvFuture;
use outpost_engine::kv::KvListKey;
use outpost_engine::kv::KvListing;
use outpost_engine::kv::KvPutOptions;
use outpost_engine::kv::KvStore;
use outpost_proto::kv;
use rusqlite::OptionalExtension;

use crate::kv::invalid;
use crate::kv::ready;
use crate::kv::unix_now;

/// Every namespace of a node or project in one SQLite file.
pub struct LocalKv {
    db: Mutex<rusqlite::Connection>,
}

impl LocalKv {
    /// Opens (creating) the file.
    pub fn open(path: &Path) -> rusqlite::Result<LocalKv> {
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let db = rusqlite::Connection::open(path)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS kv (
                 namespace TEXT NOT NULL,
                 key TEXT NOT NULL,
                 value BLOB NOT NULL,
                 expiration INTEGER,
                 metadata TEXT,
                 PRIMARY KEY (namespace, key)
             ) WITHOUT ROWID;",
        )?;
        Ok(LocalKv { db: Mutex::new(db) })
    }

    fn with<T>(
        &self,
        call: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T, KvError> {
        let db = self
            .db
            .lock()
            .map_err(|_| KvError::Unavailable("the local KV store is unusable".into()))?;
        call(&db).map_err(|error| KvError::Unavailable(format!("local KV: {error}")))
    }
}

impl KvStore for LocalKv {
    fn get(
        &self,
        namespace: &str,
        key: &str,
        _cache_ttl: Option<u64>,
    ) -> KvFuture<Option<KvEntry>> {
        let result = kv::check_key(key)
            .map_err(invalid)
            .and_then(|()| {
                self.with(|db| {
                    db.query_row(
                        "SELECT value, metadata, expiration FROM kv
                         WHERE namespace = ?1 AND key = ?2 AND (expiration IS NULL OR expiration > ?3)",
                        rusqlite::params![namespace, key, unix_now()],
                        |row| {
                            Ok(KvEntry {
                                value: Bytes::from(row.get::<_, Vec<u8>>(0)?),
                                metadata: row.get(1)?,
                                expiration: row.get(2)?,
                            })
                        },
                    )
                    .optional()
                })
            });
        ready(result)
    }

    fn put(&self, namespace: &str, key: &str, value: Bytes, options: KvPutOptions) -> KvFuture<()> {
        let now = unix_now();
        let checked = (|| {
            kv::check_key(key)?;
            kv::check_value_size(value.len())?;
            if let Some(metadata) = options.metadata.as_deref() {
                kv::parse_metadata(metadata)?;
            }
            kv::resolve_expiration(options.expiration, options.expiration_ttl, now)
        })()
        .map_err(invalid);
        let result = checked.and_then(|expiration| {
            self.with(|db| {
                db.execute(
                    "INSERT OR REPLACE INTO kv (namespace, key, value, expiration, metadata)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    rusqlite::params![namespace, key, value.as_ref(), expiration, options.metadata],
                )
                .map(|_| ())
            })
        });
        ready(result)
    }

    fn delete(&self, namespace: &str, key: &str) -> KvFuture<()> {
        let result = kv::check_key(key).map_err(invalid).and_then(|()| {
            self.with(|db| {
                db.execute(
                    "DELETE FROM kv WHERE namespace = ?1 AND key = ?2",
                    rusqlite::params![namespace, key],
                )
                .map(|_| ())
            })
        });
        ready(result)
    }

    fn list(
        &self,
        namespace: &str,
        prefix: &str,
        limit: Option<u64>,
        cursor: Option<&str>,
    ) -> KvFuture<KvListing> {
        let checked = kv::list_limit(limit).and_then(|limit| {
            let after = cursor
                .map(kv::decode_cursor)
                .transpose()?
                .unwrap_or_default();
            Ok((limit, after))
        });
        let result = checked.map_err(invalid).and_then(|(limit, after)| {
            self.with(|db| {
                let mut statement = db.prepare_cached(
                    "SELECT key, expiration, metadata FROM kv
                         WHERE namespace = ?1 AND key > ?2 AND substr(key, 1, length(?3)) = ?3
                           AND (expiration IS NULL OR expiration > ?4)
                         ORDER BY key LIMIT ?5",
                )?;
                let rows = statement.query_map(
                    rusqlite::params![namespace, after, prefix, unix_now(), limit + 1],
                    |row| {
                        Ok(KvListKey {
                            name: row.get(0)?,
                            expiration: row.get(1)?,
                            metadata: row.get(2)?,
                        })
                    },
                )?;
                let mut keys = rows.collect::<rusqlite::Result<Vec<_>>>()?;
                let list_complete = keys.len() <= limit as usize;
                keys.truncate(limit as usize);
                let cursor = (!list_complete)
                    .then(|| keys.last().map(|key| kv::encode_cursor(&key.name)))
                    .flatten();
                Ok(KvListing {
                    keys,
                    list_complete,
                    cursor,
                })
            })
        });
        ready(result)
    }
}
