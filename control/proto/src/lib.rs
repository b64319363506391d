//! The contract between Outpost's control service, its CLI and edge nodes: snapshot and bundle types, admin API bodies, and QUIC framing.
//!
//! Domain types ([`Snapshot`], [`BundleArchive`]) are checked here, in pure code, so
//! control refuses an inconsistent snapshot before publishing it and a node checks
//! what it receives before applying it. KV limits ([`kv`]) and name rules ([`names`])
//! are checked here too, so control and the node refuse the same things. Only the
//! control service and the node's sync client see the [`wire`] messages.

pub mod api;
mod bundle;
pub mod kv;
pub mod names;
mod snapshot;
pub mod tls;
pub mod wire;

pub use bundle::BundleArchive;
pub use bundle::BundleError;
pub use bundle::BundleHash;
pub use bundle::MAX_BUNDLE_BYTES;
pub use snapshot::Deployment;
pub use snapshot::FunctionRelease;
pub use snapshot::KvBinding;
pub use snapshot::OriginSpec;
pub use snapshot::Secrets;
pub use snapshot::Snapshot;
pub use snapshot::SnapshotError;
pub use snapshot::pick_deployment;

/// The name control's QUIC certificate is issued for; nodes verify it whatever address they dial.
pub const CONTROL_SERVER_NAME: &str = "outpost-control";

/// ALPN protocol of the node ↔ control QUIC connection.
pub const SYNC_ALPN: &[u8] = b"outpost-sync/1";
