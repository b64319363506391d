//! JSON bodies of control's admin HTTP API (`/v1/...`, bearer token), shared by the server and the `outpost` CLI.
//!
//! | Method and path | Body → answer |
//! |---|---|
//! | `GET /v1/status` | → [`Status`] |
//! | `PUT /v1/bundles/{sha256}` | archive bytes → [`BundleStored`] (400 if the hash or archive is wrong) |
//! | `HEAD /v1/bundles/{sha256}` | → 200 if stored, 404 if not |
//! | `GET /v1/functions` | → `[`[`FunctionInfo`]`]` |
//! | `GET /v1/functions/{name}` | → [`FunctionInfo`] |
//! | `DELETE /v1/functions/{name}` | → [`Published`] |
//! | `POST /v1/functions/{name}/versions` | [`NewVersion`] → [`Published`] |
//! | `GET /v1/functions/{name}/versions` | → `[`[`VersionInfo`]`]` |
//! | `POST /v1/functions/{name}/rollback` | [`Rollback`] → [`Published`] |
//! | `POST /v1/functions/{name}/promote` | → [`Published`] |
//! | `GET /v1/functions/{name}/secrets` | → `[`[`SecretInfo`]`]` (names only) |
//! | `PUT /v1/functions/{name}/secrets/{key}` | [`SecretValue`] → [`Published`] |
//! | `DELETE /v1/functions/{name}/secrets/{key}` | → [`Published`] |
//! | `GET /v1/routes` | → `[`[`RouteInfo`]`]` in match order |
//! | `GET /v1/nodes` | → `[`[`NodeInfo`]`]` |
//! | `POST /v1/join-tokens` | → [`JoinToken`] |
//! | `GET /v1/kv/namespaces` | → `[`[`KvNamespaceInfo`]`]` |
//! | `POST /v1/kv/namespaces` | [`NewKvNamespace`] → [`KvNamespaceChanged`] (409 if it exists) |
//! | `DELETE /v1/kv/namespaces/{ns}` | → [`KvNamespaceChanged`] (409 while a live version binds it) |
//! | `GET /v1/kv/{ns}/keys?prefix=&limit=&cursor=` | → [`KvKeyList`] (`limit` 1..=1000, default 1000; `cursor` from the previous page) |
//! | `GET /v1/kv/{ns}/values/{key}` | → the raw value; metadata in [`KV_METADATA_HEADER`], expiration in [`KV_EXPIRATION_HEADER`] (404 if missing or expired) |
//! | `PUT /v1/kv/{ns}/values/{key}?expiration=&expiration_ttl=` | raw value, metadata in [`KV_METADATA_HEADER`] → [`KvWritten`] (at most one of `expiration`, absolute Unix seconds in the future, and `expiration_ttl`, at least 1 second from now) |
//! | `DELETE /v1/kv/{ns}/values/{key}` | → [`KvWritten`] (404 if missing or expired) |
//! | `POST /v1/kv/{ns}/bulk` | `[`[`KvBulkEntry`]`]` → [`KvWritten`] (all or nothing) |
//! | `GET /v1/kv/{ns}/export` | → `[`[`KvBulkEntry`]`]` (every live key, in byte order) |
//!
//! KV keys in paths are percent-encoded (one path segment; `/` may stay as is). KV
//! namespace changes publish a snapshot (nodes learn which namespaces exist); KV
//! writes do not: nodes get an invalidation instead.
//!
//! Errors answer with a status (400 bad input, 401 no/wrong token, 404 unknown
//! function/version/bundle/namespace/key, 409 conflict, 413 too large) and an
//! [`ApiError`] body.

use outpost_routing::RouteRule;
use serde::Deserialize;
use serde::Serialize;

use crate::bundle::BundleHash;
use crate::kv::KvKey;
use crate::snapshot::KvBinding;
use crate::snapshot::OriginSpec;

/// Response header (`GET` a value) and request header (`PUT` a value) carrying a KV
/// value's metadata as JSON (non-ASCII characters `\u`-escaped, see [`crate::kv::ascii_json`]).
pub const KV_METADATA_HEADER: &str = "x-outpost-kv-metadata";

/// Response header carrying a KV value's expiration (Unix seconds) when it has one.
pub const KV_EXPIRATION_HEADER: &str = "x-outpost-kv-expiration";

/// Every error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong, for a human.
    pub error: String,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The published snapshot version.
    pub snapshot_version: u64,
    /// Functions with a live version.
    pub functions: usize,
    /// Nodes that have joined.
    pub nodes: usize,
    /// Nodes connected now.
    pub nodes_connected: usize,
    /// Connected nodes serving `snapshot_version`.
    pub nodes_current: usize,
}

/// `PUT /v1/bundles/{sha256}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleStored {
    /// The bundle's hash.
    pub hash: BundleHash,
    /// Its size in bytes.
    pub size: u64,
    /// Whether it was already stored (nothing was written).
    pub existed: bool,
}

/// `POST /v1/functions/{name}/versions`: a new immutable version, made live.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewVersion {
    /// The (already uploaded) bundle it runs.
    pub bundle: Option<BundleHash>,
    /// `env` vars.
    #[serde(default)]
    pub vars: serde_json::Map<String, serde_json::Value>,
    /// The `[limits]` table.
    #[serde(default)]
    pub limits: serde_json::Map<String, serde_json::Value>,
    /// Replaces the function's routes when given (as in `outpost.toml`).
    #[serde(default)]
    pub routes: Option<Vec<RouteRule>>,
    /// Replaces the function's origins when given.
    #[serde(default)]
    pub origins: Option<Vec<OriginSpec>>,
    /// Serve the new version to this percentage of clients only (gradual deploy); the
    /// previous live version keeps the rest until `promote`. `None` means 100.
    #[serde(default)]
    pub percent: Option<u8>,
    /// A note shown by `outpost versions`.
    #[serde(default)]
    pub message: Option<String>,
    /// KV namespaces the version binds (`[[kv_namespaces]]`): `Some` replaces the
    /// bindings; `None` keeps those of the newest live version (none for a first version).
    #[serde(default)]
    pub kv_namespaces: Option<Vec<KvBinding>>,
}

/// `POST /v1/functions/{name}/rollback`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    /// The version to make live; default: the one live before the current one.
    #[serde(default)]
    pub version: Option<u64>,
}

/// The answer to every change: what is live now and the snapshot that carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// The function changed.
    pub function: String,
    /// Its live versions after the change, newest first (empty if deleted).
    pub live: Vec<LiveVersion>,
    /// The snapshot version that carries the change; nodes ACK it.
    pub snapshot_version: u64,
}

/// A live version and its share of clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveVersion {
    /// The version number.
    pub version: u64,
    /// Its share of clients.
    pub percent: u8,
}

/// `GET /v1/functions[/{name}]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionInfo {
    /// The function.
    pub name: String,
    /// Live versions, newest first.
    pub live: Vec<LiveVersion>,
    /// Versions ever created.
    pub versions: u64,
    /// Vars of the newest live version.
    pub vars: serde_json::Map<String, serde_json::Value>,
    /// Secret names.
    pub secrets: Vec<String>,
    /// Its routes, in match order.
    pub routes: Vec<RouteRule>,
}

/// `GET /v1/functions/{name}/versions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// The version number.
    pub version: u64,
    /// Its bundle.
    pub bundle: BundleHash,
    /// Creation time, Unix milliseconds.
    pub created_ms: u64,
    /// The deploy note.
    pub message: Option<String>,
    /// `env` vars.
    pub vars: serde_json::Map<String, serde_json::Value>,
    /// Limits.
    pub limits: serde_json::Map<String, serde_json::Value>,
    /// Share of clients it serves now (0 when not live).
    pub percent: u8,
    /// KV namespaces it binds.
    #[serde(default)]
    pub kv_namespaces: Vec<KvBinding>,
}

/// `PUT /v1/functions/{name}/secrets/{key}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretValue {
    /// The value; stored, sent to nodes, never returned.
    pub value: String,
}

/// `GET /v1/functions/{name}/secrets`: a secret's name, never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    /// The binding name.
    pub name: String,
    /// Last set, Unix milliseconds.
    pub updated_ms: u64,
}

/// `GET /v1/routes`: one route and the function whose deploy owns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteInfo {
    /// The owning function.
    pub owner: String,
    /// The rule.
    pub rule: RouteRule,
}

/// `GET /v1/nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Node id (its certificate's subject).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Connected now.
    pub connected: bool,
    /// Remote address of the current or last connection.
    pub address: Option<String>,
    /// Snapshot version the node ACKed last.
    pub applied_version: Option<u64>,
    /// The last NACK, if newer than the last ACK.
    pub last_nack: Option<Nack>,
    /// Last message, Unix milliseconds.
    pub last_seen_ms: Option<u64>,
}

/// A refused snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nack {
    /// The refused snapshot version.
    pub version: u64,
    /// The node's reason.
    pub error: String,
    /// When, Unix milliseconds.
    pub at_ms: u64,
}

/// `POST /v1/join-tokens`: a one-time token for `outpost-edge --join-token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinToken {
    /// The token (also pins control's CA for the joining node).
    pub token: String,
}

/// `GET /v1/kv/namespaces`: one KV namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvNamespaceInfo {
    /// The namespace's name.
    pub name: String,
    /// Creation time, Unix milliseconds.
    pub created_ms: u64,
    /// Functions whose live version(s) bind it, by name.
    pub bound_by: Vec<String>,
}

/// `POST /v1/kv/namespaces`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKvNamespace {
    /// 1 to 63 of `[A-Za-z0-9_-]`.
    pub name: String,
}

/// The answer to creating or deleting a KV namespace (a snapshot change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvNamespaceChanged {
    /// The namespace.
    pub namespace: String,
    /// The snapshot version that carries the change; nodes ACK it.
    pub snapshot_version: u64,
}

/// `GET /v1/kv/{ns}/keys`: one page of live keys in byte order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvKeyList {
    /// The keys.
    pub keys: Vec<KvKey>,
    /// No more keys after these.
    pub list_complete: bool,
    /// Pass as `cursor` for the next page; present when not complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// One entry of `POST /v1/kv/{ns}/bulk` and `GET /v1/kv/{ns}/export`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvBulkEntry {
    /// The key.
    pub key: String,
    /// The value: UTF-8 text, or base64 when `base64` is true.
    pub value: String,
    /// Whether `value` is base64 (standard alphabet, padded).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub base64: bool,
    /// Absolute expiration, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<u64>,
    /// Seconds from now (import only; export gives `expiration`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_ttl: Option<u64>,
    /// JSON metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

/// The answer to KV writes through the API (they publish no snapshot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvWritten {
    /// The namespace.
    pub namespace: String,
    /// How many keys were written or deleted.
    pub keys: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_version_without_kv_still_parses() -> Result<(), serde_json::Error> {
        let old: NewVersion = serde_json::from_str(r#"{"bundle":null,"vars":{}}"#)?;
        assert_eq!(old.kv_namespaces, None);
        let new: NewVersion =
            serde_json::from_str(r#"{"kv_namespaces":[{"binding":"CACHE","namespace":"cache"}]}"#)?;
        assert_eq!(
            new.kv_namespaces,
            Some(vec![KvBinding {
                binding: "CACHE".into(),
                namespace: "cache".into()
            }])
        );
        Ok(())
    }

    #[test]
    fn bulk_entries_leave_out_defaults() -> Result<(), serde_json::Error> {
        let entry = KvBulkEntry {
            key: "a".into(),
            value: "1".into(),
            base64: false,
            expiration: None,
            expiration_ttl: None,
            metadata: None,
        };
        let text = serde_json::to_string(&entry)?;
        assert_eq!(text, r#"{"key":"a","value":"1"}"#);
        assert_eq!(serde_json::from_str::<KvBulkEntry>(&text)?, entry);
        Ok(())
    }
}
