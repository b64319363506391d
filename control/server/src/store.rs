//! Control's state in SQLite (functions, versions, live sets, secrets, routes, origins, bundles, nodes, join tokens, snapshots, KV namespaces and entries); every change publishes one checked snapshot.
//!
//! Every change runs in one `IMMEDIATE` transaction: apply it, rebuild the whole
//! [`Snapshot`] from the tables, [`Snapshot::check`] it, store it under the next
//! version, commit, and only then publish it on the watch channel (still under the
//! connection lock, so versions are published in order). A change that leaves the
//! snapshot as it was commits without a new version, so nodes get nothing to apply.
//! KV writes are not snapshot changes: they commit, then announce the keys on a
//! broadcast channel of invalidations (see [`kv`]).
//! Calls block: async callers run them on the blocking pool.

mod kv;

use std::collections::BTreeMap;
use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::sync::PoisonError;
use std::time::Duration;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use outpost_proto::BundleHash;
use outpost_proto::Deployment;
use outpost_proto::FunctionRelease;
use outpost_proto::KvBinding;
use outpost_proto::OriginSpec;
use outpost_proto::Secrets;
use outpost_proto::Snapshot;
use outpost_proto::api::BundleStored;
use outpost_proto::api::FunctionInfo;
use outpost_proto::api::LiveVersion;
use outpost_proto::api::Nack;
use outpost_proto::api::NewVersion;
use outpost_proto::api::NodeInfo;
use outpost_proto::api::Published;
use outpost_proto::api::RouteInfo;
use outpost_proto::api::SecretInfo;
use outpost_proto::api::Status;
use outpost_proto::api::VersionInfo;
use outpost_proto::wire::ControlMessage;
use outpost_routing::RouteRule;
use outpost_routing::RouteTable;
use rusqlite::Connection;
use rusqlite::OpenFlags;
use rusqlite::OptionalExtension;
use rusqlite::Transaction;
use rusqlite::TransactionBehavior;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;
use tokio::sync::watch;
use tracing::info;

use crate::LOG_TARGET;
use crate::credentials::sha256_hex;
use crate::error::ControlError;
use crate::names::check_function_name;
use crate::names::check_node_name;
use crate::names::check_secret_name;
use crate::pki::NodeCert;
use crate::release;
use crate::route_order::sort_most_specific_first;
pub(crate) use crate::store::kv::KvInvalidation;
pub(crate) use crate::store::kv::KvRecord;
pub(crate) use crate::store::kv::unix_now;

/// The database file in the data directory.
pub(crate) const DB_FILE: &str = "control.db";

/// The directory (in the data directory) holding bundle archives by hash.
const BUNDLES_DIR: &str = "bundles";

/// Largest secret value accepted, in bytes.
const MAX_SECRET_BYTES: usize = 64 * 1024;

/// Longest NACK reason kept, in bytes.
const MAX_NACK_BYTES: usize = 8 * 1024;

/// How many published snapshots are kept (the newest is the one that counts).
const KEPT_SNAPSHOTS: u64 = 20;

/// Schema version in `PRAGMA user_version`: 1 before KV, 2 with it. A version 1
/// database is upgraded in place when opened.
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE bundles (hash TEXT PRIMARY KEY, size INTEGER NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE functions (name TEXT PRIMARY KEY, created_ms INTEGER NOT NULL);
-- Versions outlive their function's deletion, so a name never reuses a version number.
CREATE TABLE versions (
    function TEXT NOT NULL,
    version INTEGER NOT NULL,
    bundle TEXT NOT NULL REFERENCES bundles(hash),
    vars TEXT NOT NULL,
    limits TEXT NOT NULL,
    message TEXT,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (function, version)
);
CREATE TABLE live (
    function TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    percent INTEGER NOT NULL,
    PRIMARY KEY (function, version),
    FOREIGN KEY (function, version) REFERENCES versions(function, version)
);
CREATE TABLE live_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    function TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    live TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX live_history_by_function ON live_history(function, id);
CREATE TABLE secrets (
    function TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (function, name)
);
CREATE TABLE routes (
    function TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    rule TEXT NOT NULL,
    PRIMARY KEY (function, position)
);
CREATE TABLE origins (
    function TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    PRIMARY KEY (function, position)
);
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    cert_sha256 TEXT NOT NULL UNIQUE,
    joined_ms INTEGER NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    connected INTEGER NOT NULL DEFAULT 0,
    address TEXT,
    applied_version INTEGER,
    nack_version INTEGER,
    nack_error TEXT,
    nack_ms INTEGER,
    last_seen_ms INTEGER
);
CREATE TABLE join_tokens (hash TEXT PRIMARY KEY, created_ms INTEGER NOT NULL);
CREATE TABLE snapshots (version INTEGER PRIMARY KEY, snapshot TEXT NOT NULL, created_ms INTEGER NOT NULL);
";

/// What schema version 2 adds to version 1: KV bindings per version, KV namespaces and
/// entries. Keys are BLOBs (their UTF-8 bytes), so SQLite orders them by bytes, as `list`
/// must; `expiration` is absolute Unix seconds.
const KV_SCHEMA: &str = "
ALTER TABLE versions ADD COLUMN kv TEXT NOT NULL DEFAULT '[]';
CREATE TABLE kv_namespaces (name TEXT PRIMARY KEY, created_ms INTEGER NOT NULL);
CREATE TABLE kv_entries (
    namespace TEXT NOT NULL REFERENCES kv_namespaces(name) ON DELETE CASCADE,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    expiration INTEGER,
    metadata TEXT,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX kv_entries_by_expiration ON kv_entries(expiration) WHERE expiration IS NOT NULL;
";

const ADMIN_TOKEN_HASH: &str = "admin_token_sha256";
const PUBLISHED_VERSION: &str = "published_version";

/// A joined node as the QUIC service needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeRecord {
    /// Node id (its certificate's subject).
    pub(crate) id: String,
    /// Display name.
    pub(crate) name: String,
}

/// Control's database plus the bundle directory, the published snapshot and the KV
/// invalidations.
pub(crate) struct Store {
    conn: Mutex<Connection>,
    bundles: PathBuf,
    published: watch::Sender<PublishedSnapshot>,
    invalidations: broadcast::Sender<KvInvalidation>,
}

/// A published snapshot and the sync-stream message that carries it, serialized once
/// for every node.
#[derive(Debug, Clone)]
pub(crate) struct PublishedSnapshot {
    /// The snapshot.
    pub(crate) snapshot: Arc<Snapshot>,
    /// [`ControlMessage::Snapshot`] with it, as JSON.
    pub(crate) message: Arc<[u8]>,
}

impl PublishedSnapshot {
    fn new(snapshot: Snapshot) -> Result<PublishedSnapshot, ControlError> {
        let message = to_json(&ControlMessage::Snapshot {
            snapshot: snapshot.clone(),
        })?;
        Ok(PublishedSnapshot {
            snapshot: Arc::new(snapshot),
            message: message.into_bytes().into(),
        })
    }
}

/// Creates the database of a new data directory with the admin token's hash.
pub(crate) fn create(dir: &Path, admin_token_hash: &str) -> Result<Connection, ControlError> {
    let path = dir.join(DB_FILE);
    if path.exists() {
        return Err(ControlError::AlreadyInitialized(dir.to_owned()));
    }
    let bundles = dir.join(BUNDLES_DIR);
    fs::create_dir_all(&bundles).map_err(ControlError::io(&bundles))?;
    let conn = Connection::open(&path)?;
    configure(&conn)?;
    conn.execute_batch(SCHEMA)?;
    conn.execute_batch(KV_SCHEMA)?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    conn.execute(
        "INSERT INTO settings (key, value) VALUES (?1, ?2), (?3, '0')",
        (ADMIN_TOKEN_HASH, admin_token_hash, PUBLISHED_VERSION),
    )?;
    Ok(conn)
}

/// Opens the database of an initialized data directory.
pub(crate) fn open_existing(dir: &Path) -> Result<Connection, ControlError> {
    let path = dir.join(DB_FILE);
    if !path.is_file() {
        return Err(ControlError::NotInitialized(dir.to_owned()));
    }
    let mut conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    configure(&conn)?;
    let mut version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version == 1 {
        version = upgrade_to_kv(&mut conn)?;
    }
    if version != SCHEMA_VERSION {
        return Err(ControlError::Corrupt(format!(
            "{}: schema version {version}, expected {SCHEMA_VERSION}",
            path.display()
        )));
    }
    Ok(conn)
}

/// Upgrades a schema version 1 database to version 2 (adds KV) and returns the version
/// it has now (another process may have upgraded it first).
fn upgrade_to_kv(conn: &mut Connection) -> Result<i64, ControlError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version == 1 {
        tx.execute_batch(KV_SCHEMA)?;
        tx.pragma_update(None, "user_version", 2)?;
    }
    tx.commit()?;
    Ok(if version == 1 { 2 } else { version })
}

/// Records a new one-time join token (only its hash is kept).
pub(crate) fn add_join_token(conn: &Connection, secret: &str) -> Result<(), ControlError> {
    conn.execute(
        "INSERT INTO join_tokens (hash, created_ms) VALUES (?1, ?2)",
        (sha256_hex(secret.as_bytes()), now_ms()),
    )?;
    Ok(())
}

/// Marks a node revoked: its certificate no longer connects.
pub(crate) fn revoke_node(conn: &Connection, id: &str) -> Result<(), ControlError> {
    let changed = conn.execute(
        "UPDATE nodes SET revoked = 1, connected = 0 WHERE id = ?1",
        [id],
    )?;
    if changed == 0 {
        return Err(ControlError::NotFound(format!("no node {id:?}")));
    }
    Ok(())
}

fn configure(conn: &Connection) -> Result<(), ControlError> {
    conn.busy_timeout(Duration::from_secs(10))?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(ControlError::Corrupt(format!(
            "the database refused WAL mode (got {mode})"
        )));
    }
    // FULL: a published snapshot version must survive a crash, or a later change could
    // reuse its number for different content.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

impl Store {
    /// Opens an initialized data directory and loads the last published snapshot
    /// (an empty version 0 if none). Every node starts disconnected.
    pub(crate) fn open(dir: &Path) -> Result<Store, ControlError> {
        let conn = open_existing(dir)?;
        let stored: Option<String> = conn
            .query_row(
                "SELECT snapshot FROM snapshots ORDER BY version DESC LIMIT 1",
                [],
                |row| row.get(0),
            )
            .optional()?;
        let snapshot = match stored {
            Some(text) => from_json::<Snapshot>(&text, "stored snapshot")?,
            None => Snapshot::default(),
        };
        conn.execute("UPDATE nodes SET connected = 0", [])?;
        let (published, _) = watch::channel(PublishedSnapshot::new(snapshot)?);
        let (invalidations, _) = broadcast::channel(kv::INVALIDATION_BACKLOG);
        Ok(Store {
            conn: Mutex::new(conn),
            bundles: dir.join(BUNDLES_DIR),
            published,
            invalidations,
        })
    }

    /// The published snapshot, now and as it changes.
    pub(crate) fn subscribe(&self) -> watch::Receiver<PublishedSnapshot> {
        self.published.subscribe()
    }

    /// The published snapshot.
    pub(crate) fn current(&self) -> Arc<Snapshot> {
        self.published.borrow().snapshot.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock dropped its transaction, which rolled back.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The SHA-256 (hex) of the admin token.
    pub(crate) fn admin_token_hash(&self) -> Result<String, ControlError> {
        Ok(self.lock().query_row(
            "SELECT value FROM settings WHERE key = ?1",
            [ADMIN_TOKEN_HASH],
            |row| row.get(0),
        )?)
    }

    /// Records a new one-time join token.
    pub(crate) fn add_join_token(&self, secret: &str) -> Result<(), ControlError> {
        add_join_token(&self.lock(), secret)
    }

    // ---- changes -------------------------------------------------------------------

    /// Runs `apply` and publishes the resulting snapshot of a function's change, all in
    /// one transaction.
    fn change(
        &self,
        function: &str,
        apply: impl FnOnce(&Transaction<'_>) -> Result<(), ControlError>,
    ) -> Result<Published, ControlError> {
        let (live, snapshot_version) = self.publish(&format!("function {function}"), |tx| {
            apply(tx)?;
            read_live(tx, function)
        })?;
        Ok(Published {
            function: function.to_owned(),
            live,
            snapshot_version,
        })
    }

    /// Runs `apply` and publishes the resulting snapshot, all in one transaction;
    /// returns what `apply` returned and the snapshot version that carries the change
    /// (the current one if nothing changed).
    fn publish<T>(
        &self,
        what: &str,
        apply: impl FnOnce(&Transaction<'_>) -> Result<T, ControlError>,
    ) -> Result<(T, u64), ControlError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let applied = apply(&tx)?;
        let current = self.current();
        let mut next = read_snapshot(&tx, current.version)?;
        if next == *current {
            tx.commit()?;
            return Ok((applied, current.version));
        }
        next.check()?;
        next.version = current.version + 1;
        let version = next.version;
        tx.execute(
            "INSERT INTO snapshots (version, snapshot, created_ms) VALUES (?1, ?2, ?3)",
            (version, to_json(&next)?, now_ms()),
        )?;
        tx.execute(
            "DELETE FROM snapshots WHERE version <= ?1",
            [version.saturating_sub(KEPT_SNAPSHOTS)],
        )?;
        tx.execute(
            "UPDATE settings SET value = ?1 WHERE key = ?2",
            (version.to_string(), PUBLISHED_VERSION),
        )?;
        let published = PublishedSnapshot::new(next)?;
        tx.commit()?;
        self.published.send_replace(published);
        drop(conn);
        info!(target: LOG_TARGET, version, change = what, "published snapshot");
        Ok((applied, version))
    }

    /// Creates the function's next version and makes it live (see [`release::after_deploy`]);
    /// replaces its routes and origins when given. Without a bundle, the newest live
    /// version's bundle is reused.
    pub(crate) fn deploy(
        &self,
        name: &str,
        request: NewVersion,
    ) -> Result<Published, ControlError> {
        check_function_name(name)?;
        if let Some(routes) = &request.routes {
            check_own_routes(name, routes)?;
        }
        if let Some(origins) = &request.origins {
            check_origins(origins)?;
        }
        if let Some(bindings) = &request.kv_namespaces {
            kv::check_bindings(bindings)?;
        }
        let vars = to_json(&request.vars)?;
        let limits = to_json(&request.limits)?;
        self.change(name, |tx| {
            let current = read_live(tx, name)?;
            let bundle = match &request.bundle {
                Some(hash) => {
                    if !bundle_recorded(tx, hash)? {
                        return Err(ControlError::NotFound(format!(
                            "bundle {hash} has not been uploaded (PUT /v1/bundles/{hash})"
                        )));
                    }
                    hash.clone()
                }
                None => match current.first() {
                    Some(newest) => version_bundle(tx, name, newest.version)?,
                    None => {
                        return Err(ControlError::BadRequest(
                            "`bundle` is required for a function's first version".into(),
                        ));
                    }
                },
            };
            tx.execute(
                "INSERT OR IGNORE INTO functions (name, created_ms) VALUES (?1, ?2)",
                (name, now_ms()),
            )?;
            let version: u64 = tx.query_row(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE function = ?1",
                [name],
                |row| row.get(0),
            )?;
            let live = release::after_deploy(&current, version, request.percent)?;
            let kv = match &request.kv_namespaces {
                Some(bindings) => {
                    kv::ensure_bound_namespaces(tx, bindings)?;
                    bindings.clone()
                }
                None => match current.first() {
                    Some(newest) => version_kv(tx, name, newest.version)?,
                    None => Vec::new(),
                },
            };
            tx.execute(
                "INSERT INTO versions (function, version, bundle, vars, limits, message, created_ms, kv)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                (
                    name,
                    version,
                    bundle.as_str(),
                    &vars,
                    &limits,
                    &request.message,
                    now_ms(),
                    to_json(&kv)?,
                ),
            )?;
            write_live(tx, name, &live)?;
            if let Some(routes) = &request.routes {
                tx.execute("DELETE FROM routes WHERE function = ?1", [name])?;
                for (position, rule) in routes.iter().enumerate() {
                    tx.execute(
                        "INSERT INTO routes (function, position, rule) VALUES (?1, ?2, ?3)",
                        (name, position, to_json(rule)?),
                    )?;
                }
            }
            if let Some(origins) = &request.origins {
                tx.execute("DELETE FROM origins WHERE function = ?1", [name])?;
                for (position, origin) in origins.iter().enumerate() {
                    tx.execute(
                        "INSERT INTO origins (function, position, name, spec) VALUES (?1, ?2, ?3, ?4)",
                        (name, position, &origin.name, to_json(origin)?),
                    )?;
                }
            }
            Ok(())
        })
    }

    /// Ends a gradual deploy: its new version serves everyone.
    pub(crate) fn promote(&self, name: &str) -> Result<Published, ControlError> {
        self.change(name, |tx| {
            ensure_function(tx, name)?;
            let live = release::after_promote(&read_live(tx, name)?)?;
            write_live(tx, name, &live)
        })
    }

    /// Makes `version` (or, without one, see [`release::rollback_target`]) the only live version.
    pub(crate) fn rollback(
        &self,
        name: &str,
        version: Option<u64>,
    ) -> Result<Published, ControlError> {
        self.change(name, |tx| {
            ensure_function(tx, name)?;
            let current = read_live(tx, name)?;
            let target = match version {
                Some(version) => {
                    version_bundle(tx, name, version)?;
                    version
                }
                None => release::rollback_target(&current, &read_history(tx, name)?)?,
            };
            let live = vec![release::sole(target)];
            if live != current {
                write_live(tx, name, &live)?;
            }
            Ok(())
        })
    }

    /// Removes a function with its live set, routes, origins and secrets. Its versions
    /// stay (not listed anywhere), so re-creating the name continues their numbering
    /// and a node never sees one `name@version` with two different contents.
    pub(crate) fn delete_function(&self, name: &str) -> Result<Published, ControlError> {
        self.change(name, |tx| {
            ensure_function(tx, name)?;
            tx.execute("DELETE FROM functions WHERE name = ?1", [name])?;
            Ok(())
        })
    }

    /// Sets a secret of the function (every live deployment gets it).
    pub(crate) fn put_secret(
        &self,
        function: &str,
        key: &str,
        value: &str,
    ) -> Result<Published, ControlError> {
        check_secret_name(key)?;
        if value.len() > MAX_SECRET_BYTES {
            return Err(ControlError::BadRequest(format!(
                "secret {key} is {} bytes; the limit is {MAX_SECRET_BYTES}",
                value.len()
            )));
        }
        self.change(function, |tx| {
            ensure_function(tx, function)?;
            tx.execute(
                "INSERT INTO secrets (function, name, value, updated_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (function, name) DO UPDATE SET value = excluded.value, updated_ms = excluded.updated_ms",
                (function, key, value, now_ms()),
            )?;
            Ok(())
        })
    }

    /// Removes a secret of the function.
    pub(crate) fn delete_secret(
        &self,
        function: &str,
        key: &str,
    ) -> Result<Published, ControlError> {
        check_secret_name(key)?;
        self.change(function, |tx| {
            ensure_function(tx, function)?;
            let removed = tx.execute(
                "DELETE FROM secrets WHERE function = ?1 AND name = ?2",
                (function, key),
            )?;
            if removed == 0 {
                return Err(ControlError::NotFound(format!(
                    "function {function} has no secret {key:?}"
                )));
            }
            Ok(())
        })
    }

    // ---- reads ---------------------------------------------------------------------

    /// Every function, by name.
    pub(crate) fn functions(&self) -> Result<Vec<FunctionInfo>, ControlError> {
        let conn = self.lock();
        let names = function_names(&conn)?;
        names
            .iter()
            .map(|name| function_info(&conn, name))
            .collect()
    }

    /// One function.
    pub(crate) fn function(&self, name: &str) -> Result<FunctionInfo, ControlError> {
        let conn = self.lock();
        ensure_function(&conn, name)?;
        function_info(&conn, name)
    }

    /// The function's versions, newest first.
    pub(crate) fn versions(&self, name: &str) -> Result<Vec<VersionInfo>, ControlError> {
        let conn = self.lock();
        ensure_function(&conn, name)?;
        let live: BTreeMap<u64, u8> = read_live(&conn, name)?
            .into_iter()
            .map(|live| (live.version, live.percent))
            .collect();
        let mut statement = conn.prepare(
            "SELECT version, bundle, created_ms, message, vars, limits, kv FROM versions
             WHERE function = ?1 ORDER BY version DESC",
        )?;
        let rows = statement
            .query_map([name], |row| {
                Ok((
                    row.get::<_, u64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, u64>(2)?,
                    row.get::<_, Option<String>>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, String>(5)?,
                    row.get::<_, String>(6)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(version, bundle, created_ms, message, vars, limits, kv)| {
                Ok(VersionInfo {
                    version,
                    bundle: parse_hash(&bundle)?,
                    created_ms,
                    message,
                    vars: from_json(&vars, "version vars")?,
                    limits: from_json(&limits, "version limits")?,
                    percent: live.get(&version).copied().unwrap_or(0),
                    kv_namespaces: from_json(&kv, "version KV bindings")?,
                })
            })
            .collect()
    }

    /// The function's secret names (never values).
    pub(crate) fn secrets(&self, function: &str) -> Result<Vec<SecretInfo>, ControlError> {
        let conn = self.lock();
        ensure_function(&conn, function)?;
        let mut statement =
            conn.prepare("SELECT name, updated_ms FROM secrets WHERE function = ?1 ORDER BY name")?;
        let secrets = statement
            .query_map([function], |row| {
                Ok(SecretInfo {
                    name: row.get(0)?,
                    updated_ms: row.get(1)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(secrets)
    }

    /// Every route with its owner, in match order.
    pub(crate) fn routes(&self) -> Result<Vec<RouteInfo>, ControlError> {
        Ok(read_routes(&self.lock(), None)?
            .into_iter()
            .map(|(owner, rule)| RouteInfo { owner, rule })
            .collect())
    }

    /// Every joined (not revoked) node.
    pub(crate) fn nodes(&self) -> Result<Vec<NodeInfo>, ControlError> {
        let conn = self.lock();
        let mut statement = conn.prepare(
            "SELECT id, name, connected, address, applied_version, nack_version, nack_error, nack_ms, last_seen_ms
             FROM nodes WHERE revoked = 0 ORDER BY name, id",
        )?;
        let nodes = statement
            .query_map([], |row| {
                let nack = match (
                    row.get::<_, Option<u64>>(5)?,
                    row.get::<_, Option<String>>(6)?,
                    row.get::<_, Option<u64>>(7)?,
                ) {
                    (Some(version), Some(error), Some(at_ms)) => Some(Nack {
                        version,
                        error,
                        at_ms,
                    }),
                    _ => None,
                };
                Ok(NodeInfo {
                    id: row.get(0)?,
                    name: row.get(1)?,
                    connected: row.get(2)?,
                    address: row.get(3)?,
                    applied_version: row.get(4)?,
                    last_nack: nack,
                    last_seen_ms: row.get(8)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(nodes)
    }

    /// Counts for `GET /v1/status`.
    pub(crate) fn status(&self) -> Result<Status, ControlError> {
        let snapshot_version = self.current().version;
        let conn = self.lock();
        let functions: usize =
            conn.query_row("SELECT COUNT(*) FROM functions", [], |row| row.get(0))?;
        let (nodes, nodes_connected, nodes_current) = conn.query_row(
            "SELECT COUNT(*),
                    COALESCE(SUM(connected), 0),
                    COALESCE(SUM(connected AND applied_version IS ?1), 0)
             FROM nodes WHERE revoked = 0",
            [snapshot_version],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )?;
        Ok(Status {
            snapshot_version,
            functions,
            nodes,
            nodes_connected,
            nodes_current,
        })
    }

    // ---- bundles -------------------------------------------------------------------

    /// Where a bundle's bytes live.
    pub(crate) fn bundle_path(&self, hash: &BundleHash) -> PathBuf {
        self.bundles.join(hash.as_str())
    }

    /// Whether a bundle is stored.
    pub(crate) fn has_bundle(&self, hash: &BundleHash) -> Result<bool, ControlError> {
        Ok(bundle_recorded(&self.lock(), hash)? && self.bundle_path(hash).is_file())
    }

    /// Stores already verified archive bytes under their hash (idempotent).
    pub(crate) fn put_bundle(
        &self,
        hash: &BundleHash,
        bytes: &[u8],
    ) -> Result<BundleStored, ControlError> {
        let size = bytes.len() as u64;
        if self.has_bundle(hash)? {
            return Ok(BundleStored {
                hash: hash.clone(),
                size,
                existed: true,
            });
        }
        write_atomically(&self.bundles, hash.as_str(), bytes)?;
        self.lock().execute(
            "INSERT OR IGNORE INTO bundles (hash, size, created_ms) VALUES (?1, ?2, ?3)",
            (hash.as_str(), size, now_ms()),
        )?;
        Ok(BundleStored {
            hash: hash.clone(),
            size,
            existed: false,
        })
    }

    // ---- nodes ---------------------------------------------------------------------

    /// Consumes a join token and registers a node under a fresh id with the certificate
    /// `issue` makes for that id, all in one transaction.
    pub(crate) fn join(
        &self,
        secret: &str,
        name: &str,
        issue: impl FnOnce(&str) -> Result<NodeCert, ControlError>,
    ) -> Result<(String, NodeCert), ControlError> {
        check_node_name(name)?;
        let hash = sha256_hex(secret.as_bytes());
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let consumed = tx.execute("DELETE FROM join_tokens WHERE hash = ?1", [&hash])?;
        if consumed == 0 {
            return Err(ControlError::Denied(
                "unknown or already used join token".into(),
            ));
        }
        let id = format!("node-{}", hex::encode(rand::random::<[u8; 8]>()));
        let cert = issue(&id)?;
        tx.execute(
            "INSERT INTO nodes (id, name, cert_sha256, joined_ms) VALUES (?1, ?2, ?3, ?4)",
            (&id, name, &cert.sha256, now_ms()),
        )?;
        tx.commit()?;
        Ok((id, cert))
    }

    /// The node a certificate (by SHA-256 of its DER) belongs to, unless unknown or revoked.
    pub(crate) fn node_by_cert(&self, sha256: &str) -> Result<Option<NodeRecord>, ControlError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT id, name FROM nodes WHERE cert_sha256 = ?1 AND revoked = 0",
                [sha256],
                |row| {
                    Ok(NodeRecord {
                        id: row.get(0)?,
                        name: row.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    /// Runs a node-status write. Status is soft state (a crash loses at most the last
    /// few updates, and nodes report again), so these commits skip the fsync every
    /// other write pays: ACKs from a whole fleet arrive at once.
    fn write_status(
        &self,
        write: impl FnOnce(&mut Connection) -> Result<(), ControlError>,
    ) -> Result<(), ControlError> {
        let mut conn = self.lock();
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let written = write(&mut conn);
        let restored = conn.pragma_update(None, "synchronous", "FULL");
        written?;
        Ok(restored?)
    }

    /// A node connected from `address`.
    pub(crate) fn node_connected(&self, id: &str, address: &str) -> Result<(), ControlError> {
        self.write_status(|conn| {
            conn.execute(
                "UPDATE nodes SET connected = 1, address = ?2, last_seen_ms = ?3 WHERE id = ?1",
                (id, address, now_ms()),
            )?;
            Ok(())
        })
    }

    /// A node said hello (under `name`, kept when it is a valid node name).
    pub(crate) fn node_hello(&self, id: &str, name: &str) -> Result<(), ControlError> {
        let name = check_node_name(name).is_ok().then_some(name);
        self.write_status(|conn| {
            conn.execute(
                "UPDATE nodes SET name = COALESCE(?2, name), last_seen_ms = ?3 WHERE id = ?1",
                (id, name, now_ms()),
            )?;
            Ok(())
        })
    }

    /// A node serves `version`; a NACK of that or an older version no longer matters.
    pub(crate) fn node_acked(&self, id: &str, version: u64) -> Result<(), ControlError> {
        self.write_status(|conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "UPDATE nodes SET applied_version = ?2, last_seen_ms = ?3 WHERE id = ?1",
                (id, version, now_ms()),
            )?;
            tx.execute(
                "UPDATE nodes SET nack_version = NULL, nack_error = NULL, nack_ms = NULL
                 WHERE id = ?1 AND nack_version <= ?2",
                (id, version),
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    /// A node refused `version`.
    pub(crate) fn node_nacked(
        &self,
        id: &str,
        version: u64,
        error: &str,
    ) -> Result<(), ControlError> {
        let mut end = error.len().min(MAX_NACK_BYTES);
        while !error.is_char_boundary(end) {
            end -= 1;
        }
        let error = &error[..end];
        self.write_status(|conn| {
            conn.execute(
                "UPDATE nodes SET nack_version = ?2, nack_error = ?3, nack_ms = ?4, last_seen_ms = ?4
                 WHERE id = ?1",
                (id, version, error, now_ms()),
            )?;
            Ok(())
        })
    }

    /// A node's connection ended.
    pub(crate) fn node_disconnected(&self, id: &str) -> Result<(), ControlError> {
        self.write_status(|conn| {
            conn.execute(
                "UPDATE nodes SET connected = 0, last_seen_ms = ?2 WHERE id = ?1",
                (id, now_ms()),
            )?;
            Ok(())
        })
    }

    /// Control stops: no node is connected any more.
    pub(crate) fn all_disconnected(&self) -> Result<(), ControlError> {
        self.write_status(|conn| {
            conn.execute("UPDATE nodes SET connected = 0", [])?;
            Ok(())
        })
    }
}

// ---- table access (inside a transaction or not) -----------------------------------------

fn ensure_function(conn: &Connection, name: &str) -> Result<(), ControlError> {
    check_function_name(name)?;
    let found = conn
        .query_row(
            "SELECT 1 FROM functions WHERE name = ?1",
            [name],
            |_| Ok(()),
        )
        .optional()?;
    match found {
        Some(()) => Ok(()),
        None => Err(ControlError::NotFound(format!("no function {name:?}"))),
    }
}

/// Whether the bundles table lists `hash`.
fn bundle_recorded(conn: &Connection, hash: &BundleHash) -> Result<bool, ControlError> {
    let found = conn
        .query_row(
            "SELECT 1 FROM bundles WHERE hash = ?1",
            [hash.as_str()],
            |_| Ok(()),
        )
        .optional()?;
    Ok(found.is_some())
}

fn function_names(conn: &Connection) -> Result<Vec<String>, ControlError> {
    let mut statement = conn.prepare_cached("SELECT name FROM functions ORDER BY name")?;
    let names = statement
        .query_map([], |row| row.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(names)
}

fn version_bundle(conn: &Connection, name: &str, version: u64) -> Result<BundleHash, ControlError> {
    let bundle: Option<String> = conn
        .query_row(
            "SELECT bundle FROM versions WHERE function = ?1 AND version = ?2",
            (name, version),
            |row| row.get(0),
        )
        .optional()?;
    match bundle {
        Some(bundle) => parse_hash(&bundle),
        None => Err(ControlError::NotFound(format!(
            "function {name:?} has no version {version}"
        ))),
    }
}

/// The KV bindings of a version.
fn version_kv(conn: &Connection, name: &str, version: u64) -> Result<Vec<KvBinding>, ControlError> {
    let text: String = conn.query_row(
        "SELECT kv FROM versions WHERE function = ?1 AND version = ?2",
        (name, version),
        |row| row.get(0),
    )?;
    from_json(&text, "version KV bindings")
}

/// The function's live versions, newest first.
fn read_live(conn: &Connection, name: &str) -> Result<Vec<LiveVersion>, ControlError> {
    let mut statement = conn.prepare_cached(
        "SELECT version, percent FROM live WHERE function = ?1 ORDER BY version DESC",
    )?;
    let live = statement
        .query_map([name], |row| {
            Ok(LiveVersion {
                version: row.get(0)?,
                percent: row.get(1)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(live)
}

fn write_live(tx: &Transaction<'_>, name: &str, live: &[LiveVersion]) -> Result<(), ControlError> {
    tx.execute("DELETE FROM live WHERE function = ?1", [name])?;
    for entry in live {
        tx.execute(
            "INSERT INTO live (function, version, percent) VALUES (?1, ?2, ?3)",
            (name, entry.version, entry.percent),
        )?;
    }
    tx.execute(
        "INSERT INTO live_history (function, live, created_ms) VALUES (?1, ?2, ?3)",
        (name, to_json(&live)?, now_ms()),
    )?;
    Ok(())
}

/// Every live set the function had, oldest first.
fn read_history(conn: &Connection, name: &str) -> Result<Vec<Vec<LiveVersion>>, ControlError> {
    let mut statement =
        conn.prepare_cached("SELECT live FROM live_history WHERE function = ?1 ORDER BY id")?;
    let rows = statement
        .query_map([name], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    rows.iter()
        .map(|text| from_json(text, "live history"))
        .collect()
}

fn read_secrets(conn: &Connection, function: &str) -> Result<Secrets, ControlError> {
    let mut statement =
        conn.prepare_cached("SELECT name, value FROM secrets WHERE function = ?1")?;
    let secrets = statement
        .query_map([function], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<BTreeMap<String, String>, _>>()?;
    Ok(Secrets(secrets))
}

/// Routes with their owners in match order, of one function or all.
fn read_routes(
    conn: &Connection,
    owner: Option<&str>,
) -> Result<Vec<(String, RouteRule)>, ControlError> {
    let mut statement = conn.prepare_cached(
        "SELECT function, rule FROM routes WHERE ?1 IS NULL OR function = ?1 ORDER BY function, position",
    )?;
    let rows = statement
        .query_map([owner], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut routes = rows
        .into_iter()
        .map(|(owner, rule)| Ok((owner, from_json(&rule, "route")?)))
        .collect::<Result<Vec<_>, ControlError>>()?;
    sort_most_specific_first(&mut routes);
    Ok(routes)
}

/// The snapshot the tables describe, under `version`.
fn read_snapshot(conn: &Connection, version: u64) -> Result<Snapshot, ControlError> {
    let mut functions = Vec::new();
    for name in function_names(conn)? {
        let secrets = read_secrets(conn, &name)?;
        let mut statement = conn.prepare_cached(
            "SELECT l.version, l.percent, v.bundle, v.vars, v.limits, v.kv
             FROM live l JOIN versions v ON v.function = l.function AND v.version = l.version
             WHERE l.function = ?1 ORDER BY l.version DESC",
        )?;
        let rows = statement
            .query_map([&name], |row| {
                Ok((
                    row.get::<_, u64>(0)?,
                    row.get::<_, u8>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, String>(5)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let deployments = rows
            .into_iter()
            .map(|(version, percent, bundle, vars, limits, kv)| {
                Ok(Deployment {
                    version,
                    bundle: parse_hash(&bundle)?,
                    percent,
                    vars: from_json(&vars, "version vars")?,
                    secrets: secrets.clone(),
                    limits: from_json(&limits, "version limits")?,
                    kv: from_json(&kv, "version KV bindings")?,
                })
            })
            .collect::<Result<Vec<_>, ControlError>>()?;
        functions.push(FunctionRelease { name, deployments });
    }
    let routes = read_routes(conn, None)?
        .into_iter()
        .map(|(_, rule)| rule)
        .collect();
    let mut statement =
        conn.prepare_cached("SELECT spec FROM origins ORDER BY function, position")?;
    let origins = statement
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?
        .iter()
        .map(|spec| from_json::<OriginSpec>(spec, "origin"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Snapshot {
        version,
        functions,
        routes,
        origins,
        kv_namespaces: kv::namespace_names(conn)?,
    })
}

fn function_info(conn: &Connection, name: &str) -> Result<FunctionInfo, ControlError> {
    let live = read_live(conn, name)?;
    let versions: u64 = conn.query_row(
        "SELECT COUNT(*) FROM versions WHERE function = ?1",
        [name],
        |row| row.get(0),
    )?;
    let vars = match live.first() {
        Some(newest) => {
            let text: String = conn.query_row(
                "SELECT vars FROM versions WHERE function = ?1 AND version = ?2",
                (name, newest.version),
                |row| row.get(0),
            )?;
            from_json(&text, "version vars")?
        }
        None => serde_json::Map::new(),
    };
    let secrets = read_secrets(conn, name)?.0.into_keys().collect();
    let routes = read_routes(conn, Some(name))?
        .into_iter()
        .map(|(_, rule)| rule)
        .collect();
    Ok(FunctionInfo {
        name: name.to_owned(),
        live,
        versions,
        vars,
        secrets,
        routes,
    })
}

// ---- request checks that need no state ----------------------------------------------------

/// A function's routes must be valid and may only run the function itself (or name origins).
fn check_own_routes(name: &str, routes: &[RouteRule]) -> Result<(), ControlError> {
    for (index, rule) in routes.iter().enumerate() {
        if let Some(target) = &rule.function
            && target != name
        {
            return Err(ControlError::BadRequest(format!(
                "route #{} targets function {target:?}; a function's routes may only run that function or name origins",
                index + 1
            )));
        }
    }
    RouteTable::new(routes.to_vec())
        .map(|_| ())
        .map_err(|error| ControlError::BadRequest(format!("routes: {error}")))
}

fn check_origins(origins: &[OriginSpec]) -> Result<(), ControlError> {
    let mut names = HashSet::new();
    for origin in origins {
        if origin.name.trim().is_empty() {
            return Err(ControlError::BadRequest(
                "an origin has an empty name".into(),
            ));
        }
        if !names.insert(origin.name.as_str()) {
            return Err(ControlError::BadRequest(format!(
                "origin {:?} is declared twice",
                origin.name
            )));
        }
        if !(origin.url.starts_with("http://") || origin.url.starts_with("https://")) {
            return Err(ControlError::BadRequest(format!(
                "origin {:?}: url {:?} must start with http:// or https://",
                origin.name, origin.url
            )));
        }
    }
    Ok(())
}

// ---- small conversions ----------------------------------------------------------------------

fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String, ControlError> {
    serde_json::to_string(value).map_err(|error| ControlError::Corrupt(error.to_string()))
}

fn from_json<T: DeserializeOwned>(text: &str, what: &str) -> Result<T, ControlError> {
    serde_json::from_str(text).map_err(|error| ControlError::Corrupt(format!("{what}: {error}")))
}

fn parse_hash(text: &str) -> Result<BundleHash, ControlError> {
    BundleHash::parse(text).map_err(|error| ControlError::Corrupt(error.to_string()))
}

/// Now, Unix milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Writes `dir/name` so that it either does not exist or is complete: temp file, fsync,
/// rename, fsync of the directory.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ControlError> {
    let temp = dir.join(format!(
        ".{name}.{}.tmp",
        hex::encode(rand::random::<[u8; 8]>())
    ));
    let target = dir.join(name);
    let written = fs::File::create_new(&temp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| fs::rename(&temp, &target));
    if let Err(error) = written {
        let _ = fs::remove_file(&temp);
        return Err(ControlError::Io {
            path: target,
            source: error,
        });
    }
    // Persist the rename itself.
    fs::File::open(dir)
        .and_then(|directory| directory.sync_all())
        .map_err(ControlError::io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::tests::live;
    use outpost_proto::BundleArchive;

    /// A data directory with a database, removed on drop.
    pub(super) struct TempDir(pub(super) PathBuf);

    impl TempDir {
        pub(super) fn new() -> Result<TempDir, ControlError> {
            let path = std::env::temp_dir().join(format!(
                "outpost-control-store-{}-{}",
                std::process::id(),
                hex::encode(rand::random::<[u8; 6]>())
            ));
            fs::create_dir_all(&path).map_err(ControlError::io(&path))?;
            create(&path, &sha256_hex(b"admin"))?;
            Ok(TempDir(path))
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    pub(super) fn bundle(store: &Store, text: &str) -> Result<BundleHash, ControlError> {
        let archive = BundleArchive {
            main: "index.js".into(),
            modules: BTreeMap::from([("index.js".to_owned(), text.to_owned())]),
        };
        let bytes = archive.to_bytes();
        let hash = BundleHash::of(&bytes);
        store.put_bundle(&hash, &bytes)?;
        Ok(hash)
    }

    fn deploy(bundle: &BundleHash, percent: Option<u8>) -> NewVersion {
        NewVersion {
            bundle: Some(bundle.clone()),
            percent,
            ..NewVersion::default()
        }
    }

    #[test]
    fn deploy_split_promote_rollback_delete() -> Result<(), ControlError> {
        let dir = TempDir::new()?;
        let store = Store::open(&dir.0)?;
        assert_eq!(store.current().version, 0);
        let one = bundle(&store, "export default {}")?;
        let two = bundle(&store, "export default { fetch() {} }")?;

        let published = store.deploy("api", deploy(&one, None))?;
        assert_eq!(published.live, live(&[(1, 100)]));
        assert_eq!(published.snapshot_version, 1);

        let published = store.deploy("api", deploy(&two, Some(10)))?;
        assert_eq!(published.live, live(&[(2, 10), (1, 90)]));
        assert_eq!(published.snapshot_version, 2);
        let snapshot = store.current();
        assert_eq!(snapshot.version, 2);
        assert_eq!(snapshot.functions[0].deployments[0].bundle, two);
        assert_eq!(snapshot.functions[0].deployments[1].bundle, one);

        assert_eq!(store.promote("api")?.live, live(&[(2, 100)]));
        assert!(matches!(
            store.promote("api"),
            Err(ControlError::Conflict(_))
        ));

        let published = store.rollback("api", None)?;
        assert_eq!(published.live, live(&[(1, 100)]));
        assert_eq!(published.snapshot_version, 4);
        // Rolling back to what is live already publishes nothing new.
        assert_eq!(store.rollback("api", Some(1))?.snapshot_version, 4);
        assert!(matches!(
            store.rollback("api", Some(9)),
            Err(ControlError::NotFound(_))
        ));
        assert_eq!(store.rollback("api", Some(2))?.live, live(&[(2, 100)]));

        // Without a bundle, a new version reuses the newest live one's.
        let published = store.deploy("api", NewVersion::default())?;
        assert_eq!(published.live, live(&[(3, 100)]));
        assert_eq!(store.current().functions[0].deployments[0].bundle, two);

        let versions = store.versions("api")?;
        assert_eq!(
            versions
                .iter()
                .map(|v| (v.version, v.percent))
                .collect::<Vec<_>>(),
            [(3, 100), (2, 0), (1, 0)]
        );

        let published = store.delete_function("api")?;
        assert!(published.live.is_empty());
        assert!(store.current().functions.is_empty());
        assert!(matches!(
            store.function("api"),
            Err(ControlError::NotFound(_))
        ));
        // Re-creating the name continues the numbering.
        assert_eq!(
            store.deploy("api", deploy(&one, None))?.live,
            live(&[(4, 100)])
        );
        Ok(())
    }

    #[test]
    fn refused_changes_write_nothing() -> Result<(), ControlError> {
        let dir = TempDir::new()?;
        let store = Store::open(&dir.0)?;
        let one = bundle(&store, "export default {}")?;
        assert!(matches!(
            store.deploy("api", deploy(&one, Some(50))),
            Err(ControlError::Conflict(_))
        ));
        assert!(matches!(
            store.deploy("api", deploy(&BundleHash::of(b"missing"), None)),
            Err(ControlError::NotFound(_))
        ));
        assert!(matches!(
            store.deploy("bad name", deploy(&one, None)),
            Err(ControlError::BadRequest(_))
        ));
        assert!(matches!(
            store.deploy("api", deploy(&one, Some(0))),
            Err(ControlError::BadRequest(_))
        ));
        assert_eq!(store.current().version, 0);
        assert!(store.functions()?.is_empty());

        // A route to another function is refused up front.
        let mut request = deploy(&one, None);
        request.routes = Some(vec![RouteRule {
            function: Some("other".into()),
            ..RouteRule::default()
        }]);
        assert!(matches!(
            store.deploy("api", request),
            Err(ControlError::BadRequest(_))
        ));

        // Two functions declaring the same origin fail the snapshot check.
        let origin = OriginSpec {
            name: "site".into(),
            url: "http://127.0.0.1:9".into(),
            cache: true,
            host: None,
        };
        let mut request = deploy(&one, None);
        request.origins = Some(vec![origin.clone()]);
        store.deploy("a", request.clone())?;
        assert!(matches!(
            store.deploy("b", request),
            Err(ControlError::Inconsistent(_))
        ));
        assert_eq!(store.current().version, 1);
        assert!(matches!(
            store.function("b"),
            Err(ControlError::NotFound(_))
        ));
        Ok(())
    }

    #[test]
    fn secrets_reach_every_live_deployment_and_routes_are_ordered() -> Result<(), ControlError> {
        let dir = TempDir::new()?;
        let store = Store::open(&dir.0)?;
        let one = bundle(&store, "export default {}")?;
        let mut request = deploy(&one, None);
        request.routes = Some(vec![
            RouteRule {
                function: Some("api".into()),
                ..RouteRule::default()
            },
            RouteRule {
                host: Some("example.com".into()),
                path: Some("/api/*".into()),
                function: Some("api".into()),
                ..RouteRule::default()
            },
        ]);
        store.deploy("api", request)?;
        store.deploy("api", deploy(&one, Some(30)))?;
        store.put_secret("api", "TOKEN", "hunter2")?;
        let snapshot = store.current();
        assert!(
            snapshot.functions[0].deployments.iter().all(|d| d
                .secrets
                .0
                .get("TOKEN")
                .map(String::as_str)
                == Some("hunter2"))
        );
        assert_eq!(snapshot.routes[0].host.as_deref(), Some("example.com"));
        assert_eq!(store.secrets("api")?[0].name, "TOKEN");
        assert!(matches!(
            store.put_secret("api", "not-an-identifier", "x"),
            Err(ControlError::BadRequest(_))
        ));
        assert!(matches!(
            store.put_secret("nope", "TOKEN", "x"),
            Err(ControlError::NotFound(_))
        ));
        store.delete_secret("api", "TOKEN")?;
        assert!(matches!(
            store.delete_secret("api", "TOKEN"),
            Err(ControlError::NotFound(_))
        ));
        Ok(())
    }

    #[test]
    fn published_state_survives_reopening() -> Result<(), ControlError> {
        let dir = TempDir::new()?;
        {
            let store = Store::open(&dir.0)?;
            let one = bundle(&store, "export default {}")?;
            store.deploy("api", deploy(&one, None))?;
        }
        let store = Store::open(&dir.0)?;
        assert_eq!(store.current().version, 1);
        assert_eq!(store.functions()?.len(), 1);
        Ok(())
    }

    #[test]
    fn join_tokens_are_single_use() -> Result<(), ControlError> {
        let dir = TempDir::new()?;
        let store = Store::open(&dir.0)?;
        store.add_join_token("secret")?;
        let issue = |_: &str| {
            Ok(NodeCert {
                cert_pem: String::new(),
                sha256: "f".repeat(64),
            })
        };
        let (id, _) = store.join("secret", "pop-1", issue)?;
        assert!(id.starts_with("node-"));
        assert!(matches!(
            store.join("secret", "pop-2", issue),
            Err(ControlError::Denied(_))
        ));
        // A failed issue keeps the token.
        store.add_join_token("again")?;
        assert!(
            store
                .join("again", "pop-2", |_| Err(ControlError::BadRequest(
                    "bad csr".into()
                )))
                .is_err()
        );
        let issue_other = |_: &str| {
            Ok(NodeCert {
                cert_pem: String::new(),
                sha256: "e".repeat(64),
            })
        };
        store.join("again", "pop-2", issue_other)?;
        assert_eq!(
            store.node_by_cert(&"f".repeat(64))?.map(|n| n.id),
            Some(id.clone())
        );
        store.node_acked(&id, 3)?;
        store.node_nacked(&id, 4, "boom")?;
        let nodes = store.nodes()?;
        let node = nodes.iter().find(|n| n.id == id);
        assert_eq!(node.and_then(|n| n.applied_version), Some(3));
        assert_eq!(
            node.and_then(|n| n.last_nack.as_ref()).map(|n| n.version),
            Some(4)
        );
        store.node_acked(&id, 4)?;
        assert!(store.nodes()?.iter().all(|n| n.last_nack.is_none()));
        Ok(())
    }
}
