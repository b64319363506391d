//! Outpost edge node: composition of config, the V8 engine and the pingora proxy into a serving process.

pub mod bundler;
pub mod config;
mod dev;
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
use pingora::server::Server;
use pingora::server::configuration::ServerConf;

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
        server_threads: 0,
        engine_threads: 0,
        memory_budget_bytes: 1024 * 1024 * 1024,
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
/// do not boot) and serves HTTP until the process is told to stop. Never returns on success.
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

    let engine = Arc::new(Engine::start(EngineConfig {
        threads: setup.engine_threads,
        memory_budget_bytes: setup.memory_budget_bytes,
    })?);
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

    let threads = match setup.server_threads {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        n => n,
    };
    let conf = ServerConf {
        threads,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let proxy = EdgeProxy::new(engine, state, setup.max_body_bytes, setup.cache_bytes);
    let mut service = pingora::proxy::http_proxy_service(&server.configuration, proxy);
    service.add_tcp(&setup.listen.to_string());
    server.add_service(service);
    tracing::info!(target: "outpost::node", listen = %setup.listen, "serving");
    server.run_forever()
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
