//! Outpost's JavaScript engine: Workers-style handlers in V8 isolates (deno_core) on sharded worker threads, with limits.
//!
//! The only crate of the node that names V8 or deno_core types. The rest of the node
//! holds an [`Engine`] (a `Send + Sync` handle), deploys [`FunctionSpec`]s to it and
//! dispatches [`EngineRequest`]s, getting an [`EngineResponse`] (head + streaming body)
//! or a [`FunctionFailure`] back.

mod bundle;
mod exchange;
mod ext;
mod isolate;
pub mod kv;
mod limits;
mod loader;
mod shard;
mod watchdog;

use std::hash::Hasher;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::mpsc;
use tokio::sync::oneshot;

pub use crate::bundle::Bundle;
pub use crate::bundle::BundleError;
pub use crate::bundle::FunctionSpec;
pub use crate::exchange::BODY_CHANNEL_CHUNKS;
pub use crate::exchange::BodyChunk;
pub use crate::exchange::EngineRequest;
pub use crate::exchange::EngineResponse;
pub use crate::exchange::FunctionFailure;
pub use crate::exchange::RequestBody;
pub use crate::exchange::ResponseBody;
pub use crate::isolate::BootError;
pub use crate::limits::Limits;
pub use crate::limits::LimitsError;
use crate::shard::Command;
use crate::shard::Shard;
pub use crate::shard::ShardStats;
use crate::watchdog::SliceClock;
use crate::watchdog::Watchdog;

/// How the engine is sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Worker threads; 0 means one per available core.
    pub threads: usize,
    /// V8 heap all isolates on the node may hold before idle ones are evicted (LRU), in bytes.
    pub memory_budget_bytes: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            threads: 0,
            memory_budget_bytes: 1024 * 1024 * 1024,
        }
    }
}

/// Why a function could not be deployed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeployError {
    /// The limits are unusable.
    #[error(transparent)]
    Limits(#[from] LimitsError),
    /// The bundle does not boot.
    #[error(transparent)]
    Boot(#[from] BootError),
    /// The engine is shutting down.
    #[error("the engine is shutting down")]
    Stopped,
}

/// The engine: worker threads, each owning the isolates of the functions sharded to it.
pub struct Engine {
    shards: Vec<mpsc::UnboundedSender<Command>>,
    // Dropped before the workers are joined (field order), so clocks outlive their use.
    _watchdog: Watchdog,
    workers: Vec<JoinHandle<()>>,
}

impl Engine {
    /// Starts the worker threads and the CPU watchdog.
    pub fn start(config: EngineConfig) -> std::io::Result<Engine> {
        let threads = match config.threads {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            n => n,
        };
        let budget = config.memory_budget_bytes / threads;
        let mut shards = Vec::with_capacity(threads);
        let mut workers = Vec::with_capacity(threads);
        let mut clocks = Vec::with_capacity(threads);
        for index in 0..threads {
            let (tx, rx) = mpsc::unbounded_channel();
            let (clock_tx, clock_rx) = std::sync::mpsc::channel();
            let worker = std::thread::Builder::new()
                .name(format!("outpost-engine-{index}"))
                .spawn(move || {
                    let clock = match SliceClock::for_current_thread() {
                        Ok(clock) => Arc::new(clock),
                        Err(error) => {
                            let _ = clock_tx.send(Err(error));
                            return;
                        }
                    };
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => runtime,
                        Err(error) => {
                            let _ = clock_tx.send(Err(error));
                            return;
                        }
                    };
                    let _ = clock_tx.send(Ok(clock.clone()));
                    let local = tokio::task::LocalSet::new();
                    local.block_on(&runtime, Shard::new(clock, budget).run(rx));
                })?;
            let clock = clock_rx
                .recv()
                .map_err(|_| std::io::Error::other("engine worker exited during start"))??;
            clocks.push(clock);
            shards.push(tx);
            workers.push(worker);
        }
        Ok(Engine {
            shards,
            _watchdog: Watchdog::start(clocks)?,
            workers,
        })
    }

    /// Worker threads.
    pub fn threads(&self) -> usize {
        self.shards.len()
    }

    /// Boots `spec` on its worker (validating the bundle) and makes it the version that
    /// serves; requests in flight on the previous version finish there.
    pub async fn deploy(&self, spec: FunctionSpec) -> Result<(), DeployError> {
        spec.limits.validate()?;
        let (reply, result) = oneshot::channel();
        self.shard_for(&spec.name)
            .send(Command::Deploy {
                spec: Arc::new(spec),
                reply,
            })
            .map_err(|_| DeployError::Stopped)?;
        result
            .await
            .map_err(|_| DeployError::Stopped)?
            .map_err(DeployError::from)
    }

    /// Stops serving `function`: new requests get [`FunctionFailure::NotDeployed`]; those in
    /// flight finish, then its isolate is discarded.
    pub fn remove(&self, function: &str) {
        let _ = self.shard_for(function).send(Command::Remove {
            name: function.to_string(),
        });
    }

    /// Runs `request` through `function`. Resolves with the response head (the body may
    /// still be streaming) or the reason there is none.
    pub fn dispatch(
        &self,
        function: &str,
        request: EngineRequest,
    ) -> impl Future<Output = Result<EngineResponse, FunctionFailure>> + Send + 'static {
        let (responder, response) = oneshot::channel();
        let sent = self.shard_for(function).send(Command::Dispatch {
            function: Arc::from(function),
            request,
            responder,
        });
        async move {
            if sent.is_err() {
                return Err(FunctionFailure::BootFailed(
                    "the engine is shutting down".into(),
                ));
            }
            response.await.unwrap_or(Err(FunctionFailure::IsolateLost))
        }
    }

    /// What each worker holds right now.
    pub async fn stats(&self) -> Vec<ShardStats> {
        let mut all = Vec::with_capacity(self.shards.len());
        for shard in &self.shards {
            let (reply, stats) = oneshot::channel();
            if shard.send(Command::Stats { reply }).is_ok()
                && let Ok(stats) = stats.await
            {
                all.push(stats);
            }
        }
        all
    }

    fn shard_for(&self, function: &str) -> &mpsc::UnboundedSender<Command> {
        // FNV-1a: stable across runs, so a function keeps its thread (and warm isolate).
        let mut hasher = StableHasher::default();
        hasher.write(function.as_bytes());
        let index = usize::try_from(hasher.finish() % self.shards.len() as u64).unwrap_or(0);
        &self.shards[index]
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shards.clear();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// FNV-1a: a hash that is the same on every node and every run, for placing work
/// (functions on threads, clients on versions) consistently.
pub struct StableHasher(u64);

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for StableHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Handlers may reach the network with `fetch()` and nothing else: no files, env, subprocesses.
fn fetch_permissions() -> deno_permissions::PermissionsContainer {
    let permissions = deno_permissions::Permissions {
        net: deno_permissions::UnaryPermission::allow_all(),
        ..deno_permissions::Permissions::none_without_prompt()
    };
    let parser =
        deno_permissions::RuntimePermissionDescriptorParser::new(sys_traits::impls::RealSys);
    deno_permissions::PermissionsContainer::new(Arc::new(parser), permissions)
}
