//! Outpost's JavaScript engine: Workers-style handlers in V8 isolates (deno_core) on worker threads, with limits.
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
mod response_cache;
mod shard;
mod spare;
mod watchdog;

use std::cell::RefCell;
use std::hash::Hasher;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
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
pub use crate::exchange::RequestId;
pub use crate::exchange::ResponseBody;
use crate::ext::cache::ResponseCache;
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
    /// Keep one blank isolate per worker ready for the first request of a function, so
    /// a cold start loads the bundle without creating an isolate first. Used by functions
    /// with the default heap limit; costs one idle isolate per worker.
    pub spare_isolate: bool,
    /// Bytes the Cache API (`caches.default`, `caches.open`) may hold on the node, shared
    /// by all functions (each sees only its own entries); 0 switches it off.
    pub cache_api_bytes: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            threads: 0,
            memory_budget_bytes: 1024 * 1024 * 1024,
            spare_isolate: true,
            cache_api_bytes: 64 * 1024 * 1024,
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

/// The engine: worker threads, each owning isolates of the functions it serves.
///
/// Work that starts on a worker thread (the node runs its HTTP listeners there, see
/// [`Engine::runtimes`]) runs on that thread's isolates without changing threads.
pub struct Engine {
    id: u64,
    shards: Vec<ShardHandle>,
    next_ticket: AtomicU64,
    // Dropped before the workers are joined (field order), so clocks outlive their use.
    _watchdog: Watchdog,
    workers: Vec<JoinHandle<()>>,
}

struct ShardHandle {
    commands: mpsc::UnboundedSender<Command>,
    runtime: tokio::runtime::Handle,
}

thread_local! {
    /// The shard of the engine whose worker this thread is, if any: (engine id, shard).
    static LOCAL_SHARD: RefCell<Option<(u64, Rc<RefCell<Shard>>)>> = const { RefCell::new(None) };
}

impl Engine {
    /// Starts the worker threads and the CPU watchdog.
    pub fn start(config: EngineConfig) -> std::io::Result<Engine> {
        static ENGINES: AtomicU64 = AtomicU64::new(1);
        let id = ENGINES.fetch_add(1, Ordering::Relaxed);
        let threads = match config.threads {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            n => n,
        };
        let budget = config.memory_budget_bytes / threads;
        let cache: Option<Arc<dyn ResponseCache>> = (config.cache_api_bytes > 0).then(|| {
            Arc::new(response_cache::NodeResponseCache::new(
                config.cache_api_bytes,
            )) as Arc<dyn ResponseCache>
        });
        let spare_orders = if config.spare_isolate {
            Some(spare::start_factory()?)
        } else {
            None
        };
        let mut shards = Vec::with_capacity(threads);
        let mut workers = Vec::with_capacity(threads);
        let mut clocks = Vec::with_capacity(threads);
        for index in 0..threads {
            let (tx, rx) = mpsc::unbounded_channel();
            let (started_tx, started_rx) = std::sync::mpsc::channel();
            let spare_orders = spare_orders.clone();
            let cache = cache.clone();
            let worker = std::thread::Builder::new()
                .name(format!("outpost-worker-{index}"))
                .spawn(move || {
                    let started = SliceClock::for_current_thread().and_then(|clock| {
                        let runtime = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()?;
                        Ok((Arc::new(clock), runtime))
                    });
                    let (clock, runtime) = match started {
                        Ok(started) => started,
                        Err(error) => {
                            let _ = started_tx.send(Err(error));
                            return;
                        }
                    };
                    let shard = Shard::new(clock.clone(), budget, cache, spare_orders);
                    LOCAL_SHARD.with(|local| *local.borrow_mut() = Some((id, shard.clone())));
                    let _ = started_tx.send(Ok((clock, runtime.handle().clone())));
                    runtime.block_on(async {
                        shard.borrow_mut().refill_spare();
                        shard::serve_commands(shard, rx).await;
                    });
                    // Isolates go before the runtime whose tasks drive them.
                    LOCAL_SHARD.with(|local| local.borrow_mut().take());
                })?;
            let (clock, runtime) = started_rx
                .recv()
                .map_err(|_| std::io::Error::other("engine worker exited during start"))??;
            clocks.push(clock);
            shards.push(ShardHandle {
                commands: tx,
                runtime,
            });
            workers.push(worker);
        }
        Ok(Engine {
            id,
            shards,
            next_ticket: AtomicU64::new(1),
            _watchdog: Watchdog::start(clocks)?,
            workers,
        })
    }

    /// Worker threads.
    pub fn threads(&self) -> usize {
        self.shards.len()
    }

    /// The tokio runtime of each worker thread (current-thread runtimes). Tasks spawned
    /// there run on that worker, and requests they dispatch run on its isolates directly.
    pub fn runtimes(&self) -> impl Iterator<Item = &tokio::runtime::Handle> {
        self.shards.iter().map(|shard| &shard.runtime)
    }

    /// Boots `spec` (validating the bundle) and makes it the version that serves on every
    /// worker; requests in flight on the previous version finish there. Either every
    /// worker switches to the new version or none does.
    pub async fn deploy(&self, spec: FunctionSpec) -> Result<(), DeployError> {
        spec.limits.validate()?;
        let spec = Arc::new(spec);
        let mut ticket = Ticket {
            engine: self,
            id: self.next_ticket.fetch_add(1, Ordering::Relaxed),
            committed: false,
        };
        let home = self.home(&spec.name);
        let mut prepared = Vec::with_capacity(self.shards.len());
        for (index, shard) in self.shards.iter().enumerate() {
            let (reply, result) = oneshot::channel();
            shard
                .commands
                .send(Command::Prepare {
                    ticket: ticket.id,
                    spec: spec.clone(),
                    // Preloaded functions boot everywhere; others boot once, to validate.
                    boot: spec.preload || index == home,
                    reply,
                })
                .map_err(|_| DeployError::Stopped)?;
            prepared.push(result);
        }
        for result in prepared {
            // Dropping the ticket on the way out forgets the deploy on every worker.
            result
                .await
                .map_err(|_| DeployError::Stopped)?
                .map_err(DeployError::from)?;
        }
        let mut committed = Vec::with_capacity(self.shards.len());
        for shard in &self.shards {
            let (reply, done) = oneshot::channel();
            shard
                .commands
                .send(Command::Commit {
                    ticket: ticket.id,
                    reply,
                })
                .map_err(|_| DeployError::Stopped)?;
            committed.push(done);
        }
        ticket.committed = true;
        for done in committed {
            done.await.map_err(|_| DeployError::Stopped)?;
        }
        Ok(())
    }

    /// Stops serving `function`: new requests get [`FunctionFailure::NotDeployed`]; those in
    /// flight finish, then its isolates are discarded.
    pub fn remove(&self, function: &str) {
        for shard in &self.shards {
            let _ = shard.commands.send(Command::Remove {
                name: function.to_string(),
            });
        }
    }

    /// Runs `request` through `function`. Resolves with the response head (the body may
    /// still be streaming) or the reason there is none.
    ///
    /// On a worker thread the handler runs right away, on that worker's isolate, and a
    /// handler that does not await I/O has answered before this returns; from any other
    /// thread the request goes to a worker over a channel.
    pub fn dispatch(
        &self,
        function: &str,
        request: EngineRequest,
    ) -> impl Future<Output = Result<EngineResponse, FunctionFailure>> + Send + 'static {
        let (responder, response) = oneshot::channel();
        let local = LOCAL_SHARD.with(|local| match &*local.borrow() {
            Some((engine, shard)) if *engine == self.id => Some(shard.clone()),
            _ => None,
        });
        let command = match local.as_ref().map(|shard| shard.try_borrow_mut()) {
            Some(Ok(mut shard)) => {
                shard.dispatch(function, request, responder);
                None
            }
            // Off the workers (or, defensively, re-entered while the shard is busy).
            _ => Some(Command::Dispatch {
                function: Arc::from(function),
                request,
                responder,
            }),
        };
        let sent = match command {
            None => true,
            Some(command) => self.shards[self.home(function)]
                .commands
                .send(command)
                .is_ok(),
        };
        async move {
            if !sent {
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
            if shard.commands.send(Command::Stats { reply }).is_ok()
                && let Ok(stats) = stats.await
            {
                all.push(stats);
            }
        }
        all
    }

    /// The worker that validates `function`'s deploys and serves its requests from other threads.
    fn home(&self, function: &str) -> usize {
        // FNV-1a: stable across runs, so a function keeps its worker.
        let mut hasher = StableHasher::default();
        hasher.write(function.as_bytes());
        usize::try_from(hasher.finish() % self.shards.len() as u64).unwrap_or(0)
    }
}

/// A deploy between its phases: unless it was committed, dropping it (a worker refused
/// the version, or the caller gave up waiting) makes every worker forget it.
struct Ticket<'a> {
    engine: &'a Engine,
    id: u64,
    committed: bool,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.committed {
            for shard in &self.engine.shards {
                let _ = shard.commands.send(Command::Abort { ticket: self.id });
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shards.clear();
        let current = std::thread::current().id();
        for worker in self.workers.drain(..) {
            // A worker dropping the last handle cannot wait for itself; it stops on its own.
            if worker.thread().id() != current {
                let _ = worker.join();
            }
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

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

    use super::*;

    /// Function `name` with a one-module bundle, not preloaded.
    fn bundle_spec(name: &str, source: &str, limits: Limits) -> FunctionSpec {
        FunctionSpec {
            name: name.into(),
            version: "v1".into(),
            bundle: Arc::new(
                Bundle::new("index.js", [("index.js".to_string(), source.into())]).unwrap(),
            ),
            env: serde_json::Map::new(),
            limits,
            preload: false,
            kv: None,
        }
    }

    /// Function `f`, a handler answering `<version> <id of this isolate>`.
    fn spec(version: &str, preload: bool) -> FunctionSpec {
        let source = format!(
            "const id = crypto.randomUUID();\n\
             export default {{ fetch() {{ return new Response(`{version} ${{id}}`); }} }};"
        );
        FunctionSpec {
            version: version.into(),
            preload,
            ..bundle_spec("f", &source, Limits::default())
        }
    }

    fn request() -> EngineRequest {
        EngineRequest {
            method: http::Method::GET,
            url: "http://test/".into(),
            headers: http::HeaderMap::new(),
            body: RequestBody::Empty,
            request_id: RequestId { worker: 0, seq: 0 },
        }
    }

    fn body(response: EngineResponse) -> String {
        match response.body {
            ResponseBody::Full(bytes) => String::from_utf8(bytes.to_vec()).unwrap(),
            other => panic!("unexpected body {other:?}"),
        }
    }

    /// Dispatches one request on each worker (as the node's listeners do) and returns the bodies.
    async fn on_every_worker(engine: &Arc<Engine>) -> Vec<String> {
        let mut bodies = Vec::new();
        for runtime in engine.runtimes() {
            let engine = engine.clone();
            let answer = runtime
                .spawn(async move { engine.dispatch("f", request()).await })
                .await
                .unwrap();
            bodies.push(body(answer.unwrap()));
        }
        bodies
    }

    #[tokio::test]
    async fn every_worker_runs_its_own_isolate_and_all_switch_versions_together() {
        let engine = Arc::new(
            Engine::start(EngineConfig {
                threads: 2,
                ..EngineConfig::default()
            })
            .unwrap(),
        );
        engine.deploy(spec("v1", true)).await.unwrap();
        let stats = engine.stats().await;
        assert_eq!(
            stats.iter().map(|s| s.isolates).sum::<usize>(),
            2,
            "{stats:?}"
        );

        let first = on_every_worker(&engine).await;
        assert!(first.iter().all(|b| b.starts_with("v1 ")), "{first:?}");
        assert_ne!(
            first[0], first[1],
            "each worker answers from its own isolate"
        );
        // The same worker keeps its warm isolate.
        assert_eq!(on_every_worker(&engine).await, first);

        // A bundle that throws at startup is refused and changes nothing anywhere.
        let mut broken = spec("v2", true);
        broken.bundle = Arc::new(
            Bundle::new(
                "index.js",
                [("index.js".to_string(), "throw new Error('boom');".into())],
            )
            .unwrap(),
        );
        let error = engine.deploy(broken).await.unwrap_err();
        assert!(error.to_string().contains("boom"), "{error}");
        assert_eq!(on_every_worker(&engine).await, first);

        // A good version replaces the old one on every worker at once; one that does not
        // preload is validated, then booted by each worker on its first request.
        engine.deploy(spec("v2", false)).await.unwrap();
        let second = on_every_worker(&engine).await;
        assert!(second.iter().all(|b| b.starts_with("v2 ")), "{second:?}");

        // A request from a thread that is no worker still reaches one.
        let answer = engine.dispatch("f", request()).await.unwrap();
        assert!(body(answer).starts_with("v2 "));

        engine.remove("f");
        let gone = engine.dispatch("f", request()).await.unwrap_err();
        assert_eq!(gone, FunctionFailure::NotDeployed);
    }

    /// Polls the single worker's stats until `ready` holds (the spare is made by a task).
    async fn settled(engine: &Engine, ready: impl Fn(&ShardStats) -> bool) -> ShardStats {
        for _ in 0..2_000 {
            let stats = engine.stats().await[0];
            if ready(&stats) {
                return stats;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("worker stats never settled: {:?}", engine.stats().await);
    }

    #[tokio::test]
    async fn cold_starts_take_a_blank_spare_isolate_and_a_new_one_is_made() {
        let engine = Arc::new(
            Engine::start(EngineConfig {
                threads: 1,
                ..EngineConfig::default()
            })
            .unwrap(),
        );
        settled(&engine, |s| s.spare_isolates == 1).await;
        let leaky = "globalThis.mark = 'leaky was here';\n\
                     export default { fetch() { return new Response('leaky'); } };";
        let probe = "export default { fetch() { return new Response(String(globalThis.mark)); } };";
        engine
            .deploy(bundle_spec("leaky", leaky, Limits::default()))
            .await
            .unwrap();
        engine
            .deploy(bundle_spec("probe", probe, Limits::default()))
            .await
            .unwrap();
        let ask = |function: &'static str| {
            let engine = engine.clone();
            let runtime = engine.runtimes().next().unwrap().clone();
            async move {
                let answer = runtime
                    .spawn(async move { engine.dispatch(function, request()).await })
                    .await
                    .unwrap();
                body(answer.unwrap())
            }
        };

        assert_eq!(ask("leaky").await, "leaky");
        let stats = settled(&engine, |s| s.spare_isolates == 1).await;
        assert_eq!(stats.spare_boots, 1, "{stats:?}");
        // The next spare is fresh: nothing the previous function did is in it.
        assert_eq!(ask("probe").await, "undefined");
        let stats = settled(&engine, |s| s.spare_isolates == 1).await;
        assert_eq!(stats.spare_boots, 2, "{stats:?}");
        assert_eq!(stats.isolates, 2, "{stats:?}");

        // A spare is made on another thread: on this one, deep recursion must still end
        // in a RangeError (not a crash, not at once) and timers must fire here.
        let deep = "export default { async fetch() {\n\
                      let depth = 0;\n\
                      const down = () => { depth += 1; down(); };\n\
                      let caught = 'nothing';\n\
                      try { down(); } catch (error) { caught = error.constructor.name; }\n\
                      await new Promise((resolve) => setTimeout(resolve, 5));\n\
                      return new Response(`${caught} ${depth > 1000}`);\n\
                    } };";
        engine
            .deploy(bundle_spec("deep", deep, Limits::default()))
            .await
            .unwrap();
        assert_eq!(ask("deep").await, "RangeError true");
        let stats = settled(&engine, |s| s.spare_isolates == 1).await;
        assert_eq!(stats.spare_boots, 3, "{stats:?}");

        // A heap limit other than the spare's needs an isolate of its own.
        let big = Limits {
            heap_mb: 256,
            ..Limits::default()
        };
        let own = "export default { fetch() { return new Response('own heap'); } };";
        engine.deploy(bundle_spec("own", own, big)).await.unwrap();
        assert_eq!(ask("own").await, "own heap");
        let stats = engine.stats().await[0];
        assert_eq!(
            (stats.spare_boots, stats.spare_isolates),
            (3, 1),
            "{stats:?}"
        );
    }

    #[tokio::test]
    async fn no_spare_isolate_when_turned_off() {
        let engine = Engine::start(EngineConfig {
            threads: 1,
            spare_isolate: false,
            ..EngineConfig::default()
        })
        .unwrap();
        engine.deploy(spec("v1", false)).await.unwrap();
        let answer = engine.dispatch("f", request()).await.unwrap();
        assert!(body(answer).starts_with("v1 "));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let stats = engine.stats().await[0];
        assert_eq!(
            (stats.spare_isolates, stats.spare_boots),
            (0, 0),
            "{stats:?}"
        );
    }

    /// A worker that handles many deploys in a row never yields to tokio, so its
    /// cooperative budget runs out; booting must not depend on that budget (it once
    /// refused about one function in fifteen at the startup of a node with 100).
    #[tokio::test]
    async fn a_task_out_of_tokio_budget_still_boots_isolates() {
        let clock = crate::watchdog::SliceClock::for_current_thread().unwrap();
        let spec = Arc::new(spec("v1", false));
        let booted = std::future::poll_fn(|cx| {
            // Ready oneshot receivers each take a unit of the task's budget; once it is
            // gone they answer Pending until the task yields.
            let mut exhausted = false;
            for _ in 0..1_000 {
                let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
                let _ = tx.send(());
                if std::pin::Pin::new(&mut rx).poll(cx).is_pending() {
                    exhausted = true;
                    break;
                }
            }
            assert!(exhausted, "the budget never ran out");
            std::task::Poll::Ready(
                crate::isolate::FunctionIsolate::boot(spec.clone(), &clock, None, None).map(drop),
            )
        })
        .await;
        assert_eq!(booted, Ok(()));
    }
}
