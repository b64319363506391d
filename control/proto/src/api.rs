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
//!
//! Errors answer with a status (400 bad input, 401 no/wrong token, 404 unknown
//! function/version/bundle, 409 conflict) and an [`ApiError`] body.

use outpost_routing::RouteRule;
use serde::Deserialize;
use serde::Serialize;

use crate::bundle::BundleHash;
use crate::snapshot::OriginSpec;

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
