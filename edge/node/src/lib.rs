//! Outpost edge node: composition of config, the V8 engine and the pingora proxy into a serving process.

pub mod bundler;
pub mod config;
mod dev;
pub mod front;
pub mod kv;
pub mod proxy;
pub mod serving;
pub mod sync;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use outpost_engine::Bundle;
use outpost_engine::Engine;
use outpost_engine::EngineConfig;
use outpost_engine::FunctionSpec;
use outpost_engine::Limits;
use outpost_routing::RouteRule;
use outpost_routing::RouteTable;

use crate::config::LocalSetup;
use crate::config::NodeSetup;
use crate::proxy::EdgeProxy;
use crate::serving::FunctionEntry;
use crate::serving::LiveKey;
use crate::serving::ServingState;
use crate::sync::SyncConfig;
use arc_swap::ArcSwap;

/// The hello-world example, compiled in so a node runs with no files at all.
pub const EMBEDDED_HELLO: &str = include_str!("../../../examples/hello/index.js");

/// The setup a node serves when started without a config: the hello example on every path.
pub fn embedded_setup(listen: std::net::SocketAddr) -> anyhow::Result<NodeSetup> {
    let bundle = Bundle::new(
        "index.js",
        [("index.js".to_string(), EMBEDDED_HELLO.to_string())],
    )?;
    let routes = RouteTable::new(vec![RouteRule {
        function: Some("hello".into()),
        ..RouteRule::default()
    }])?;
    Ok(NodeSetup {
        listen,
        engine: EngineConfig::default(),
        max_body_bytes: config::DEFAULT_MAX_BODY_BYTES,
        cache_bytes: 0,
        kv: config::KvSection::default().settings()?,
        local: LocalSetup {
            default_origin: None,
            functions: vec![FunctionSpec {
                name: "hello".into(),
                version: "embedded".into(),
                bundle: Arc::new(bundle),
                env: serde_json::Map::new(),
                limits: Limits::default(),
                preload: true,
                kv: None,
            }],
            refused: Vec::new(),
            origins: HashMap::new(),
            routes,
        },
    })
}

/// Starts the engine, deploys every function (refusing, with a logged reason, those that
/// do not boot) and serves HTTP until the process is told to stop (SIGTERM: after the
/// requests in flight are answered; SIGINT: at once). Never returns on success.
pub fn serve(setup: NodeSetup) -> anyhow::Result<()> {
    run(setup, Source::Local)
}

/// `outpost dev`: serves the handler or project at `path` on `listen`, rebuilding and
/// swapping in a new isolate whenever a source file changes (requests in flight finish
/// on the old one). A build that fails is reported and the last good one keeps serving.
pub fn serve_dev(path: &Path, listen: SocketAddr) -> anyhow::Result<()> {
    let (config, base) = config::dev_config(path, listen)?;
    let setup = config.into_setup(&base)?;
    run(
        setup,
        Source::Dev {
            path: path.to_path_buf(),
            listen,
            watch: base,
        },
    )
}

/// Serves what control publishes (and, until control answers, the last good snapshot on
/// disk); `setup` supplies the listener and engine settings only.
pub fn serve_controlled(setup: NodeSetup, sync: SyncConfig) -> anyhow::Result<()> {
    run(setup, Source::Control(sync))
}

/// Where a node's functions and routes come from.
enum Source {
    /// The local config in the setup.
    Local,
    /// The local config, rebuilt from `path` whenever a file under `watch` changes.
    Dev {
        path: PathBuf,
        listen: SocketAddr,
        watch: PathBuf,
    },
    /// Control.
    Control(SyncConfig),
}

fn run(setup: NodeSetup, source: Source) -> anyhow::Result<()> {
    // deno_crypto brings aws-lc-rs next to ring: pick ring for rustls explicitly, before
    // pingora or quinn build any TLS config.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let engine = Arc::new(Engine::start(setup.engine)?);
    // Bound before anything is deployed, so a taken port fails the start at once.
    let listeners = front::Listeners::bind(setup.listen, engine.threads())?;
    let state = Arc::new(ArcSwap::from_pointee(ServingState::default()));
    match source {
        Source::Control(sync) => sync::start(sync, engine.clone(), state.clone())?,
        Source::Local => state.store(Arc::new(deploy_local(&engine, setup.local)?)),
        Source::Dev {
            path,
            listen,
            watch,
        } => {
            state.store(Arc::new(deploy_local(&engine, setup.local)?));
            let (engine, state) = (engine.clone(), state.clone());
            std::thread::Builder::new()
                .name("outpost-dev-reload".into())
                .spawn(move || dev::reload_on_change(&engine, &state, &path, listen, &watch))?;
        }
    }

    let listen = listeners.addr();
    let proxy = EdgeProxy::new(
        engine.clone(),
        state,
        setup.max_body_bytes,
        setup.cache_bytes,
    );
    let front = front::Front::start(&engine, listeners, &proxy);
    tracing::info!(target: "outpost::node", %listen, workers = engine.threads(), "serving");
    // The main thread only waits for a signal, then (SIGTERM) for the work in flight.
    let main = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    main.block_on(async {
        let signal = stop_signal().await?;
        tracing::info!(target: "outpost::node", "{signal}: stopping");
        if signal == StopSignal::Terminate {
            front.shutdown(&engine, SHUTDOWN_GRACE).await;
        }
        std::io::Result::Ok(())
    })?;
    std::process::exit(0)
}

/// How long a node told to terminate waits for the requests in flight (and their
/// `ctx.waitUntil` work); as long as a request may run by default (`wall_ms`).
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// How the node was told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopSignal {
    /// SIGTERM: finish the requests in flight first.
    Terminate,
    /// SIGINT (Ctrl-C): stop now.
    Interrupt,
}

impl std::fmt::Display for StopSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopSignal::Terminate => "SIGTERM",
            StopSignal::Interrupt => "SIGINT",
        })
    }
}

async fn stop_signal() -> std::io::Result<StopSignal> {
    use tokio::signal::unix::SignalKind;
    use tokio::signal::unix::signal;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = terminate.recv() => StopSignal::Terminate,
        _ = interrupt.recv() => StopSignal::Interrupt,
    })
}

/// Deploys a local config's functions and builds the state that serves them.
pub(crate) fn deploy_local(engine: &Engine, local: LocalSetup) -> anyhow::Result<ServingState> {
    let mut functions = HashMap::new();
    for refused in local.refused {
        tracing::error!(target: "outpost::node", function = %refused.name, "function refused: {}", refused.reason);
        functions.insert(refused.name, FunctionEntry::Refused(refused.reason));
    }
    let deployer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for spec in local.functions {
        let name = spec.name.clone();
        let entry = match deployer.block_on(engine.deploy(spec)) {
            Ok(()) => {
                tracing::info!(target: "outpost::node", function = %name, "function deployed");
                FunctionEntry::Live(vec![LiveKey {
                    key: Arc::from(name.as_str()),
                    version: Arc::from("local"),
                    percent: 100,
                }])
            }
            Err(error) => {
                tracing::error!(target: "outpost::node", function = %name, "function refused: {error}");
                FunctionEntry::Refused(error.to_string())
            }
        };
        functions.insert(name, entry);
    }
    let default_origin = local
        .default_origin
        .and_then(|name| local.origins.get(&name).cloned());
    Ok(ServingState {
        version: None,
        routes: local.routes,
        functions,
        origins: local.origins,
        default_origin,
    })
}

/// Logs go to stderr; `RUST_LOG` filters them (default: info).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}
