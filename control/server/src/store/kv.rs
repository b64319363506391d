//! KV namespaces and entries in control's SQLite: namespace changes publish snapshots, entry writes commit and then announce invalidations.
//!
//! Every read, list and export filters `expiration IS NULL OR expiration > now` with the
//! caller's `now` (Unix seconds), so an expired entry is never returned even before
//! [`Store::kv_purge_expired`] removes it. Keys are stored as BLOBs of their UTF-8
//! bytes: SQLite compares BLOBs with `memcmp`, which gives the byte order `list`
//! promises, and a prefix becomes a key range (`prefix <= key < upper bound`).
//!
//! After a committed write the changed keys go out on a broadcast channel (still under
//! the connection lock, so in commit order); the QUIC service forwards them to every
//! connected node as `KvInvalidate`. Deleting a namespace announces it with no keys,
//! meaning "all of them".

use std::collections::BTreeSet;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use outpost_proto::KvBinding;
use outpost_proto::api::KvKeyList;
use outpost_proto::api::KvNamespaceChanged;
use outpost_proto::api::KvNamespaceInfo;
use outpost_proto::kv::KvKey;
use outpost_proto::kv::MAX_EXPIRATION;
use outpost_proto::kv::check_binding_name;
use outpost_proto::kv::check_key;
use outpost_proto::kv::check_metadata;
use outpost_proto::kv::check_namespace_name;
use outpost_proto::kv::check_value_size;
use outpost_proto::kv::decode_cursor;
use outpost_proto::kv::encode_cursor;
use outpost_proto::wire::ControlMessage;
use rusqlite::Connection;
use rusqlite::OptionalExtension;
use rusqlite::Transaction;
use rusqlite::TransactionBehavior;
use tokio::sync::broadcast;
use tracing::error;
use tracing::info;

use super::Store;
use super::from_json;
use super::now_ms;
use crate::LOG_TARGET;
use crate::error::ControlError;

/// How many invalidation messages a node's sync task may fall behind before it has
/// missed some (and is disconnected so that it resyncs).
pub(crate) const INVALIDATION_BACKLOG: usize = 1024;

/// Most keys in one invalidation message (a bulk import is split).
const INVALIDATION_CHUNK: usize = 1000;

/// Names a namespace may not take: `/v1/kv/namespaces/...` would be ambiguous.
const RESERVED_NAMESPACES: &[&str] = &["namespaces"];

/// Expired entries removed per transaction by [`Store::kv_purge_expired`], so a large
/// purge never holds the connection for long.
const PURGE_BATCH: usize = 1000;

/// Keys of a namespace that changed (none: the whole namespace went away), as the JSON
/// of a [`ControlMessage::KvInvalidate`], serialized once for every node.
pub(crate) type KvInvalidation = Arc<[u8]>;

/// One entry with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KvRecord {
    /// The key.
    pub(crate) key: String,
    /// The value's bytes.
    pub(crate) value: Vec<u8>,
    /// Absolute expiration, Unix seconds.
    pub(crate) expiration: Option<u64>,
    /// JSON metadata.
    pub(crate) metadata: Option<serde_json::Value>,
}

/// Now, Unix seconds.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

impl Store {
    /// Invalidations from now on; a receiver that falls [`INVALIDATION_BACKLOG`]
    /// messages behind gets `Lagged`.
    pub(crate) fn subscribe_kv(&self) -> broadcast::Receiver<KvInvalidation> {
        self.invalidations.subscribe()
    }

    /// Announces changed keys, at most [`INVALIDATION_CHUNK`] per message (no message
    /// for no keys). Call after the commit, while still holding the connection lock, so
    /// announcements follow commit order.
    fn announce(&self, namespace: &str, keys: &[String]) {
        for chunk in keys.chunks(INVALIDATION_CHUNK) {
            self.invalidate(namespace, chunk.to_vec());
        }
    }

    /// Sends one invalidation; no keys means every key of the namespace.
    fn invalidate(&self, namespace: &str, keys: Vec<String>) {
        let message = ControlMessage::KvInvalidate {
            namespace: namespace.to_owned(),
            keys,
        };
        match serde_json::to_vec(&message) {
            // Sending fails only when no node is connected, which is fine.
            Ok(bytes) => {
                let _ = self.invalidations.send(bytes.into());
            }
            Err(error) => {
                error!(target: LOG_TARGET, namespace, %error, "cannot serialize a KV invalidation")
            }
        }
    }

    // ---- namespaces -------------------------------------------------------------------

    /// Every namespace, by name, with the functions whose live versions bind it.
    pub(crate) fn kv_namespaces(&self) -> Result<Vec<KvNamespaceInfo>, ControlError> {
        let conn = self.lock();
        let bound = live_bindings(&conn)?;
        let mut statement =
            conn.prepare("SELECT name, created_ms FROM kv_namespaces ORDER BY name")?;
        let rows = statement
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, u64>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows
            .into_iter()
            .map(|(name, created_ms)| {
                let bound_by: BTreeSet<String> = bound
                    .iter()
                    .filter(|live| live.binds(&name))
                    .map(|live| live.function.clone())
                    .collect();
                KvNamespaceInfo {
                    name,
                    created_ms,
                    bound_by: bound_by.into_iter().collect(),
                }
            })
            .collect())
    }

    /// Creates a namespace (a snapshot change: nodes learn it exists).
    pub(crate) fn create_kv_namespace(
        &self,
        name: &str,
    ) -> Result<KvNamespaceChanged, ControlError> {
        check_namespace_name(name)?;
        if RESERVED_NAMESPACES.contains(&name) {
            return Err(ControlError::BadRequest(format!(
                "{name:?} is reserved; choose another KV namespace name"
            )));
        }
        let ((), snapshot_version) =
            self.publish(&format!("KV namespace {name} created"), |tx| {
                let inserted = tx.execute(
                    "INSERT OR IGNORE INTO kv_namespaces (name, created_ms) VALUES (?1, ?2)",
                    (name, now_ms()),
                )?;
                if inserted == 0 {
                    return Err(ControlError::Conflict(format!(
                        "KV namespace {name:?} exists already"
                    )));
                }
                Ok(())
            })?;
        info!(target: LOG_TARGET, namespace = name, "created KV namespace");
        Ok(KvNamespaceChanged {
            namespace: name.to_owned(),
            snapshot_version,
        })
    }

    /// Deletes a namespace and its entries (a snapshot change), unless a live version
    /// binds it.
    pub(crate) fn delete_kv_namespace(
        &self,
        name: &str,
    ) -> Result<KvNamespaceChanged, ControlError> {
        check_namespace_name(name)?;
        let ((), snapshot_version) = self.publish(&format!("KV namespace {name} deleted"), |tx| {
            ensure_namespace(tx, name)?;
            let users: Vec<String> = live_bindings(tx)?
                .into_iter()
                .filter(|live| live.binds(name))
                .map(|live| format!("{} v{}", live.function, live.version))
                .collect();
            if !users.is_empty() {
                return Err(ControlError::Conflict(format!(
                    "KV namespace {name:?} is bound by live version(s) {}; deploy them without it first",
                    users.join(", ")
                )));
            }
            tx.execute("DELETE FROM kv_namespaces WHERE name = ?1", [name])?;
            Ok(())
        })?;
        // Nodes must not keep entries of a namespace re-created under the same name. (No
        // write to it can have committed since: it does not exist.)
        self.invalidate(name, Vec::new());
        info!(target: LOG_TARGET, namespace = name, "deleted KV namespace");
        Ok(KvNamespaceChanged {
            namespace: name.to_owned(),
            snapshot_version,
        })
    }

    // ---- entries ----------------------------------------------------------------------

    /// The live entry under `key`, if any.
    pub(crate) fn kv_get(
        &self,
        namespace: &str,
        key: &str,
        now: u64,
    ) -> Result<Option<KvRecord>, ControlError> {
        check_key(key)?;
        let conn = self.lock();
        ensure_namespace(&conn, namespace)?;
        let row = conn
            .query_row(
                "SELECT value, expiration, metadata FROM kv_entries
                 WHERE namespace = ?1 AND key = ?2 AND (expiration IS NULL OR expiration > ?3)",
                (namespace, key.as_bytes(), now),
                |row| {
                    Ok((
                        row.get::<_, Vec<u8>>(0)?,
                        row.get::<_, Option<u64>>(1)?,
                        row.get::<_, Option<String>>(2)?,
                    ))
                },
            )
            .optional()?;
        row.map(|(value, expiration, metadata)| {
            Ok(KvRecord {
                key: key.to_owned(),
                value,
                expiration,
                metadata: parse_stored_metadata(metadata)?,
            })
        })
        .transpose()
    }

    /// Stores an entry (replacing value, expiration and metadata), then announces it.
    /// The caller has resolved the expiration against its clock; an expiration that
    /// has passed already stores an entry that is never returned.
    pub(crate) fn kv_put(&self, namespace: &str, record: KvRecord) -> Result<(), ControlError> {
        let metadata = check_record(&record)?;
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        ensure_namespace(&tx, namespace)?;
        upsert(&tx, namespace, &record, metadata.as_deref())?;
        tx.commit()?;
        self.announce(namespace, &[record.key]);
        Ok(())
    }

    /// Removes `key`; returns whether it held a live entry. Announces the key whenever
    /// a row (live or expired) was removed.
    pub(crate) fn kv_delete(
        &self,
        namespace: &str,
        key: &str,
        now: u64,
    ) -> Result<bool, ControlError> {
        check_key(key)?;
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        ensure_namespace(&tx, namespace)?;
        let expiration: Option<Option<u64>> = tx
            .query_row(
                "DELETE FROM kv_entries WHERE namespace = ?1 AND key = ?2 RETURNING expiration",
                (namespace, key.as_bytes()),
                |row| row.get(0),
            )
            .optional()?;
        tx.commit()?;
        let Some(expiration) = expiration else {
            return Ok(false);
        };
        self.announce(namespace, &[key.to_owned()]);
        Ok(outpost_proto::kv::is_live(expiration, now))
    }

    /// One page of live keys in byte order: those starting with `prefix`, after the
    /// key `cursor` encodes, at most `limit` (already checked to be 1..=1000).
    pub(crate) fn kv_list(
        &self,
        namespace: &str,
        prefix: &str,
        limit: u32,
        cursor: Option<&str>,
        now: u64,
    ) -> Result<KvKeyList, ControlError> {
        let after = cursor.map(decode_cursor).transpose()?;
        let upper = prefix_upper_bound(prefix.as_bytes());
        let conn = self.lock();
        ensure_namespace(&conn, namespace)?;
        let mut statement = conn.prepare_cached(
            "SELECT key, expiration, metadata FROM kv_entries
             WHERE namespace = ?1 AND key >= ?2 AND (?3 IS NULL OR key < ?3)
               AND (?4 IS NULL OR key > ?4) AND (expiration IS NULL OR expiration > ?5)
             ORDER BY key LIMIT ?6",
        )?;
        let rows = statement
            .query_map(
                (
                    namespace,
                    prefix.as_bytes(),
                    upper.as_deref(),
                    after.as_deref().map(str::as_bytes),
                    now,
                    u64::from(limit) + 1,
                ),
                |row| {
                    Ok((
                        row.get::<_, Vec<u8>>(0)?,
                        row.get::<_, Option<u64>>(1)?,
                        row.get::<_, Option<String>>(2)?,
                    ))
                },
            )?
            .collect::<Result<Vec<_>, _>>()?;
        drop(statement);
        drop(conn);
        let keys = rows
            .into_iter()
            .map(|(key, expiration, metadata)| {
                Ok(KvKey {
                    name: stored_key(key)?,
                    expiration,
                    metadata: parse_stored_metadata(metadata)?,
                })
            })
            .collect::<Result<Vec<_>, ControlError>>()?;
        Ok(page(keys, limit))
    }

    /// Stores every record or none (one transaction), then announces their keys;
    /// returns how many were written.
    pub(crate) fn kv_import(
        &self,
        namespace: &str,
        records: &[KvRecord],
    ) -> Result<usize, ControlError> {
        let metadata = records
            .iter()
            .map(check_record)
            .collect::<Result<Vec<_>, _>>()?;
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        ensure_namespace(&tx, namespace)?;
        for (record, metadata) in records.iter().zip(&metadata) {
            upsert(&tx, namespace, record, metadata.as_deref())?;
        }
        tx.commit()?;
        let keys: Vec<String> = records
            .iter()
            .map(|record| record.key.as_str())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(str::to_owned)
            .collect();
        self.announce(namespace, &keys);
        info!(target: LOG_TARGET, namespace, entries = records.len(), "imported KV entries");
        Ok(records.len())
    }

    /// Every live entry of a namespace, in byte order of the keys.
    pub(crate) fn kv_export(
        &self,
        namespace: &str,
        now: u64,
    ) -> Result<Vec<KvRecord>, ControlError> {
        let conn = self.lock();
        ensure_namespace(&conn, namespace)?;
        let mut statement = conn.prepare(
            "SELECT key, value, expiration, metadata FROM kv_entries
             WHERE namespace = ?1 AND (expiration IS NULL OR expiration > ?2) ORDER BY key",
        )?;
        let rows = statement
            .query_map((namespace, now), |row| {
                Ok((
                    row.get::<_, Vec<u8>>(0)?,
                    row.get::<_, Vec<u8>>(1)?,
                    row.get::<_, Option<u64>>(2)?,
                    row.get::<_, Option<String>>(3)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        drop(statement);
        drop(conn);
        rows.into_iter()
            .map(|(key, value, expiration, metadata)| {
                Ok(KvRecord {
                    key: stored_key(key)?,
                    value,
                    expiration,
                    metadata: parse_stored_metadata(metadata)?,
                })
            })
            .collect()
    }

    /// Removes entries expired at `now` (in small transactions); returns how many. Nodes
    /// need no invalidation: they never serve an entry past its expiration either.
    pub(crate) fn kv_purge_expired(&self, now: u64) -> Result<usize, ControlError> {
        let mut purged = 0;
        loop {
            let removed = self.lock().execute(
                "DELETE FROM kv_entries WHERE rowid IN (
                     SELECT rowid FROM kv_entries WHERE expiration IS NOT NULL AND expiration <= ?1 LIMIT ?2
                 )",
                (now, PURGE_BATCH),
            )?;
            purged += removed;
            if removed < PURGE_BATCH {
                return Ok(purged);
            }
        }
    }
}

// ---- helpers shared with the rest of the store ----------------------------------------------

/// Checks the bindings of a new version: JavaScript identifiers, each once, valid
/// namespace names (their existence is checked in the transaction).
pub(super) fn check_bindings(bindings: &[KvBinding]) -> Result<(), ControlError> {
    let mut names = HashSet::new();
    for binding in bindings {
        check_binding_name(&binding.binding)?;
        check_namespace_name(&binding.namespace)?;
        if !names.insert(binding.binding.as_str()) {
            return Err(ControlError::BadRequest(format!(
                "KV binding {:?} is declared twice",
                binding.binding
            )));
        }
    }
    Ok(())
}

/// Every bound namespace must exist.
pub(super) fn ensure_bound_namespaces(
    conn: &Connection,
    bindings: &[KvBinding],
) -> Result<(), ControlError> {
    for binding in bindings {
        if !namespace_exists(conn, &binding.namespace)? {
            return Err(ControlError::NotFound(format!(
                "KV binding {:?} names namespace {:?}, which does not exist (create it with `outpost kv namespace create {}`)",
                binding.binding, binding.namespace, binding.namespace
            )));
        }
    }
    Ok(())
}

/// Every namespace name, sorted (as the snapshot lists them).
pub(super) fn namespace_names(conn: &Connection) -> Result<Vec<String>, ControlError> {
    let mut statement = conn.prepare_cached("SELECT name FROM kv_namespaces ORDER BY name")?;
    let names = statement
        .query_map([], |row| row.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(names)
}

// ---- private helpers ------------------------------------------------------------------------

/// A live version's KV bindings.
struct LiveBindings {
    function: String,
    version: u64,
    bindings: Vec<KvBinding>,
}

impl LiveBindings {
    fn binds(&self, namespace: &str) -> bool {
        self.bindings
            .iter()
            .any(|binding| binding.namespace == namespace)
    }
}

fn live_bindings(conn: &Connection) -> Result<Vec<LiveBindings>, ControlError> {
    let mut statement = conn.prepare_cached(
        "SELECT l.function, l.version, v.kv
         FROM live l JOIN versions v ON v.function = l.function AND v.version = l.version
         ORDER BY l.function, l.version DESC",
    )?;
    let rows = statement
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, u64>(1)?,
                row.get::<_, String>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(function, version, kv)| {
            Ok(LiveBindings {
                function,
                version,
                bindings: from_json(&kv, "version KV bindings")?,
            })
        })
        .collect()
}

fn namespace_exists(conn: &Connection, name: &str) -> Result<bool, ControlError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM kv_namespaces WHERE name = ?1",
            [name],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

fn ensure_namespace(conn: &Connection, name: &str) -> Result<(), ControlError> {
    check_namespace_name(name)?;
    if namespace_exists(conn, name)? {
        Ok(())
    } else {
        Err(ControlError::NotFound(format!("no KV namespace {name:?}")))
    }
}

/// Checks a record against the limits; returns its metadata serialized.
fn check_record(record: &KvRecord) -> Result<Option<String>, ControlError> {
    check_key(&record.key)?;
    check_value_size(record.value.len())?;
    if let Some(expiration) = record.expiration
        && expiration > MAX_EXPIRATION
    {
        return Err(outpost_proto::kv::KvLimitError::ExpirationTooLate(expiration).into());
    }
    Ok(record.metadata.as_ref().map(check_metadata).transpose()?)
}

fn upsert(
    tx: &Transaction<'_>,
    namespace: &str,
    record: &KvRecord,
    metadata: Option<&str>,
) -> Result<(), ControlError> {
    tx.execute(
        "INSERT INTO kv_entries (namespace, key, value, expiration, metadata) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (namespace, key) DO UPDATE SET
             value = excluded.value, expiration = excluded.expiration, metadata = excluded.metadata",
        (
            namespace,
            record.key.as_bytes(),
            record.value.as_slice(),
            record.expiration,
            metadata,
        ),
    )?;
    Ok(())
}

fn stored_key(bytes: Vec<u8>) -> Result<String, ControlError> {
    String::from_utf8(bytes)
        .map_err(|_| ControlError::Corrupt("a stored KV key is not UTF-8".into()))
}

fn parse_stored_metadata(text: Option<String>) -> Result<Option<serde_json::Value>, ControlError> {
    text.map(|text| from_json(&text, "KV metadata")).transpose()
}

/// The first byte string after every string starting with `prefix`, or `None` when
/// there is none (empty prefix, or only `0xFF` bytes).
fn prefix_upper_bound(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut upper = prefix.to_vec();
    while let Some(last) = upper.pop() {
        if last < u8::MAX {
            upper.push(last + 1);
            return Some(upper);
        }
    }
    None
}

/// Turns up to `limit + 1` fetched keys into a page: the first `limit`, and a cursor
/// after the last of them when more followed.
fn page(mut keys: Vec<KvKey>, limit: u32) -> KvKeyList {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = keys.len() > limit;
    keys.truncate(limit);
    let cursor = if more {
        keys.last().map(|last| encode_cursor(&last.name))
    } else {
        None
    };
    KvKeyList {
        keys,
        list_complete: cursor.is_none(),
        cursor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::TempDir;
    use crate::store::tests::bundle;
    use outpost_proto::api::NewVersion;
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;

    fn record(key: &str, value: &str, expiration: Option<u64>) -> KvRecord {
        KvRecord {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            expiration,
            metadata: None,
        }
    }

    fn names(list: &KvKeyList) -> Vec<&str> {
        list.keys.iter().map(|key| key.name.as_str()).collect()
    }

    /// The next invalidation announced: its namespace and keys.
    fn next_invalidation(
        invalidations: &mut broadcast::Receiver<KvInvalidation>,
    ) -> Result<(String, Vec<String>), ControlError> {
        let message = invalidations
            .try_recv()
            .map_err(|e| ControlError::Task(e.to_string()))?;
        match serde_json::from_slice(&message) {
            Ok(ControlMessage::KvInvalidate { namespace, keys }) => Ok((namespace, keys)),
            other => Err(ControlError::Task(format!(
                "not an invalidation: {other:?}"
            ))),
        }
    }

    #[test]
    fn a_schema_1_database_is_upgraded_in_place() -> Result<(), ControlError> {
        let dir = TempDir::new()?;
        let path = dir.0.join(super::super::DB_FILE);
        std::fs::remove_file(&path).map_err(ControlError::io(&path))?;
        {
            let conn = Connection::open(&path)?;
            conn.execute_batch(super::super::SCHEMA)?;
            conn.pragma_update(None, "user_version", 1)?;
            conn.execute(
                "INSERT INTO settings (key, value) VALUES ('published_version', '0')",
                [],
            )?;
        }
        let store = Store::open(&dir.0)?;
        store.create_kv_namespace("cache")?;
        store.kv_put("cache", record("a", "1", None))?;
        assert!(store.kv_get("cache", "a", NOW)?.is_some());
        drop(store);
        // Opening again finds version 2 and leaves it be.
        let store = Store::open(&dir.0)?;
        assert_eq!(store.current().kv_namespaces, ["cache"]);
        Ok(())
    }

    #[test]
    fn prefix_bounds() {
        assert_eq!(prefix_upper_bound(b""), None);
        assert_eq!(prefix_upper_bound(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_upper_bound(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_upper_bound(b"\xff\xff"), None);
    }

    #[test]
    fn pages_carry_a_cursor_only_when_more_follow() {
        let key = |name: &str| KvKey {
            name: name.into(),
            expiration: None,
            metadata: None,
        };
        let page_of_two = page(vec![key("a"), key("b"), key("c")], 2);
        assert_eq!(names(&page_of_two), ["a", "b"]);
        assert!(!page_of_two.list_complete);
        assert_eq!(page_of_two.cursor, Some(encode_cursor("b")));
        let whole = page(vec![key("a"), key("b")], 2);
        assert!(whole.list_complete && whole.cursor.is_none());
        let empty = page(Vec::new(), 5);
        assert!(empty.list_complete && empty.keys.is_empty());
    }

    #[test]
    fn expired_entries_are_never_returned() -> Result<(), ControlError> {
        let dir = TempDir::new()?;
        let store = Store::open(&dir.0)?;
        store.create_kv_namespace("cache")?;
        store.kv_put("cache", record("short", "1", Some(NOW + 10)))?;
        store.kv_put("cache", record("forever", "2", None))?;

        assert!(store.kv_get("cache", "short", NOW + 9)?.is_some());
        assert_eq!(store.kv_get("cache", "short", NOW + 10)?, None);
        let listed = store.kv_list("cache", "", 1000, None, NOW + 10)?;
        assert_eq!(names(&listed), ["forever"]);
        assert_eq!(store.kv_export("cache", NOW + 10)?.len(), 1);
        assert_eq!(store.kv_list("cache", "", 1000, None, NOW)?.keys.len(), 2);

        // Purged once expired; live entries stay.
        assert_eq!(store.kv_purge_expired(NOW + 9)?, 0);
        assert_eq!(store.kv_purge_expired(NOW + 10)?, 1);
        assert_eq!(store.kv_list("cache", "", 1000, None, NOW)?.keys.len(), 1);

        // Deleting an expired (not yet purged) entry reports it missing.
        store.kv_put("cache", record("gone", "3", Some(NOW + 1)))?;
        assert!(!store.kv_delete("cache", "gone", NOW + 1)?);
        assert!(store.kv_delete("cache", "forever", NOW + 1)?);
        assert!(!store.kv_delete("cache", "forever", NOW + 1)?);
        Ok(())
    }

    #[test]
    fn list_pages_by_prefix_in_byte_order() -> Result<(), ControlError> {
        let dir = TempDir::new()?;
        let store = Store::open(&dir.0)?;
        store.create_kv_namespace("ns")?;
        let keys = ["a", "b/1", "b/2", "b/3", "bz", "B", "é", "b/\u{10000}", "c"];
        store.kv_import(
            "ns",
            &keys
                .iter()
                .map(|k| record(k, "v", None))
                .collect::<Vec<_>>(),
        )?;
        let all = store.kv_list("ns", "", 1000, None, NOW)?;
        // Byte order: uppercase before lowercase, multi-byte UTF-8 last.
        assert_eq!(
            names(&all),
            ["B", "a", "b/1", "b/2", "b/3", "b/\u{10000}", "bz", "c", "é"]
        );
        let first = store.kv_list("ns", "b/", 2, None, NOW)?;
        assert_eq!(names(&first), ["b/1", "b/2"]);
        let second = store.kv_list("ns", "b/", 2, first.cursor.as_deref(), NOW)?;
        assert_eq!(names(&second), ["b/3", "b/\u{10000}"]);
        assert!(second.list_complete && second.cursor.is_none());
        // A cursor from another prefix just continues after its key.
        let after_a = store.kv_list("ns", "", 2, Some(&encode_cursor("a")), NOW)?;
        assert_eq!(names(&after_a), ["b/1", "b/2"]);
        assert!(matches!(
            store.kv_list("ns", "", 10, Some("not-a-cursor"), NOW),
            Err(ControlError::BadRequest(_))
        ));
        Ok(())
    }

    #[test]
    fn writes_announce_their_keys_and_check_limits() -> Result<(), ControlError> {
        let dir = TempDir::new()?;
        let store = Store::open(&dir.0)?;
        let mut invalidations = store.subscribe_kv();
        assert!(matches!(
            store.kv_put("nope", record("a", "1", None)),
            Err(ControlError::NotFound(_))
        ));
        store.create_kv_namespace("ns")?;
        let mut with_metadata = record("a", "1", Some(NOW + 60));
        with_metadata.metadata = Some(json!({ "tag": "x" }));
        store.kv_put("ns", with_metadata.clone())?;
        assert_eq!(store.kv_get("ns", "a", NOW)?, Some(with_metadata));
        assert_eq!(
            next_invalidation(&mut invalidations)?,
            ("ns".into(), vec!["a".into()])
        );
        // Refused writes change nothing and announce nothing.
        let too_long = record(&"k".repeat(513), "1", None);
        assert!(matches!(
            store.kv_put("ns", too_long),
            Err(ControlError::BadRequest(message)) if message.contains("exceeds 512 bytes")
        ));
        let big = KvRecord {
            value: vec![0; outpost_proto::kv::MAX_VALUE_BYTES + 1],
            ..record("big", "", None)
        };
        assert!(matches!(
            store.kv_import("ns", &[record("ok", "1", None), big]),
            Err(ControlError::TooLarge(_))
        ));
        assert_eq!(store.kv_get("ns", "ok", NOW)?, None);
        let mut fat_metadata = record("m", "1", None);
        fat_metadata.metadata = Some(json!("x".repeat(2000)));
        assert!(matches!(
            store.kv_put("ns", fat_metadata),
            Err(ControlError::BadRequest(_))
        ));
        assert!(invalidations.try_recv().is_err());

        // A big import is announced in chunks.
        let many: Vec<KvRecord> = (0..2500)
            .map(|i| record(&format!("k{i:05}"), "v", None))
            .collect();
        assert_eq!(store.kv_import("ns", &many)?, 2500);
        let mut announced = 0;
        while let Ok((namespace, keys)) = next_invalidation(&mut invalidations) {
            assert_eq!(namespace, "ns");
            assert!(keys.len() <= INVALIDATION_CHUNK);
            announced += keys.len();
        }
        assert_eq!(announced, 2500);
        Ok(())
    }

    #[test]
    fn namespaces_are_snapshot_changes_and_bound_ones_stay() -> Result<(), ControlError> {
        let dir = TempDir::new()?;
        let store = Store::open(&dir.0)?;
        let one = bundle(&store, "export default {}")?;
        let created = store.create_kv_namespace("cache")?;
        assert_eq!(created.snapshot_version, 1);
        assert_eq!(store.current().kv_namespaces, ["cache"]);
        assert!(matches!(
            store.create_kv_namespace("cache"),
            Err(ControlError::Conflict(_))
        ));
        assert!(matches!(
            store.create_kv_namespace("namespaces"),
            Err(ControlError::BadRequest(_))
        ));
        assert!(matches!(
            store.create_kv_namespace("bad name"),
            Err(ControlError::BadRequest(_))
        ));

        let binding = |namespace: &str| {
            vec![KvBinding {
                binding: "CACHE".into(),
                namespace: namespace.into(),
            }]
        };
        let deploy = |kv: Option<Vec<KvBinding>>, bundle: Option<_>| NewVersion {
            bundle,
            kv_namespaces: kv,
            ..NewVersion::default()
        };
        assert!(matches!(
            store.deploy("api", deploy(Some(binding("missing")), Some(one.clone()))),
            Err(ControlError::NotFound(_))
        ));
        store.deploy("api", deploy(Some(binding("cache")), Some(one.clone())))?;
        assert_eq!(
            store.current().functions[0].deployments[0].kv,
            binding("cache")
        );
        // A vars-only release keeps the bindings.
        store.deploy("api", deploy(None, None))?;
        assert_eq!(
            store.current().functions[0].deployments[0].kv,
            binding("cache")
        );
        assert_eq!(store.versions("api")?[0].kv_namespaces, binding("cache"));
        assert_eq!(store.kv_namespaces()?[0].bound_by, ["api"]);

        store.kv_put("cache", record("a", "1", None))?;
        let version = store.current().version;
        assert!(matches!(
            store.delete_kv_namespace("cache"),
            Err(ControlError::Conflict(message)) if message.contains("api v2")
        ));
        // KV writes publish nothing.
        assert_eq!(store.current().version, version);

        store.deploy("api", deploy(Some(Vec::new()), None))?;
        assert!(store.current().functions[0].deployments[0].kv.is_empty());
        let mut invalidations = store.subscribe_kv();
        let deleted = store.delete_kv_namespace("cache")?;
        assert_eq!(deleted.snapshot_version, store.current().version);
        assert!(store.current().kv_namespaces.is_empty());
        assert_eq!(
            next_invalidation(&mut invalidations)?,
            ("cache".into(), Vec::new())
        );
        // Rolling back to a version that binds the deleted namespace is refused.
        assert!(matches!(
            store.rollback("api", Some(2)),
            Err(ControlError::Inconsistent(_))
        ));
        // Entries went with the namespace.
        store.create_kv_namespace("cache")?;
        assert_eq!(store.kv_get("cache", "a", NOW)?, None);
        assert!(matches!(
            store.delete_kv_namespace("nope"),
            Err(ControlError::NotFound(_))
        ));
        Ok(())
    }
}
