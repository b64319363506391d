//! The node's control client: joins once, restores the last good snapshot from disk, then keeps a QUIC connection to control and applies what it pushes.
//!
//! Only this module sees wire types. A snapshot is validated whole (bundles fetched
//! by hash and verified, every new version booted) before it replaces what the node
//! serves; it is then ACKed, or NACKed with the reason while the previous one keeps
//! serving. The last good snapshot and its bundles live on disk, so a node restarted
//! while control is down serves at once.

mod apply;
mod backoff;
pub(crate) mod client;
pub mod disk;

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use outpost_engine::Engine;

use crate::kv::KvCacheSettings;
use crate::kv::RemoteKv;
use crate::serving::ServingState;
pub use crate::sync::apply::Applier;
pub use crate::sync::backoff::Backoff;
use crate::sync::client::SyncClient;
pub use crate::sync::client::SyncError;
use crate::sync::disk::NodeStore;

/// How a node reaches control.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Control's QUIC address, `host:port`.
    pub control: String,
    /// One-time join token, needed only until the node has joined.
    pub join_token: Option<String>,
    /// Where identity, the last good snapshot and bundles are kept.
    pub data_dir: PathBuf,
    /// The node's display name.
    pub name: String,
    /// The cache in front of control's KV namespaces.
    pub kv: KvCacheSettings,
}

/// Joins if needed, serves the snapshot saved on disk (if any) right away, and starts
/// the thread that follows control. Returns once the node can serve.
pub fn start(
    config: SyncConfig,
    engine: Arc<Engine>,
    state: Arc<ArcSwap<ServingState>>,
) -> anyhow::Result<()> {
    let store = NodeStore::open(&config.data_dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let identity = match store.identity()? {
        Some(identity) => identity,
        None => {
            let Some(token) = &config.join_token else {
                anyhow::bail!(
                    "this node has not joined control yet: pass --join-token (data dir {})",
                    config.data_dir.display()
                );
            };
            let identity = runtime.block_on(client::join(&config.control, token, &config.name))?;
            store.save_identity(&identity)?;
            tracing::info!(target: "outpost::sync", node_id = %identity.node_id, "joined control");
            identity
        }
    };
    let kv = RemoteKv::new(config.kv.clone(), runtime.handle().clone());
    let mut applier = Applier::new(engine, state, Arc::new(kv.clone()));
    let mut applied = None;
    match store.snapshot() {
        Ok(Some(snapshot)) => match runtime.block_on(applier.apply(&snapshot, &store)) {
            Ok(()) => {
                tracing::info!(target: "outpost::sync", version = snapshot.version, "serving the last good snapshot from disk");
                applied = Some(snapshot.version);
            }
            Err(error) => {
                tracing::error!(target: "outpost::sync", version = snapshot.version, "the snapshot on disk does not apply: {error}")
            }
        },
        Ok(None) => {}
        Err(error) => {
            tracing::error!(target: "outpost::sync", "the snapshot on disk is unreadable: {error}")
        }
    }
    let client = SyncClient::new(config, identity, store, applier, kv, applied);
    std::thread::Builder::new()
        .name("outpost-sync".into())
        .spawn(move || runtime.block_on(client.run()))?;
    Ok(())
}
