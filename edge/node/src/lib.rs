//! Outpost edge node: composition of config, the V8 engine and the pingora proxy into a serving process.

pub mod config;
pub mod proxy;

use std::collections::HashMap;
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

use crate::config::NodeSetup;
use crate::proxy::EdgeProxy;

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
        default_origin: None,
        functions: vec![FunctionSpec {
            name: "hello".into(),
            version: "embedded".into(),
            bundle: Arc::new(bundle),
            env: serde_json::Map::new(),
            limits: Limits::default(),
            preload: true,
        }],
        refused: Vec::new(),
        origins: HashMap::new(),
        routes,
    })
}

/// Starts the engine, deploys every function (refusing, with a logged reason, those that
/// do not boot) and serves HTTP until the process is told to stop. Never returns on success.
pub fn serve(setup: NodeSetup) -> anyhow::Result<()> {
    // deno_crypto brings aws-lc-rs next to ring: pick ring for rustls explicitly, before
    // pingora builds any TLS config.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let engine = Arc::new(Engine::start(EngineConfig {
        threads: setup.engine_threads,
        memory_budget_bytes: setup.memory_budget_bytes,
    })?);
    let mut refused: HashMap<String, String> = setup
        .refused
        .into_iter()
        .map(|refused| (refused.name, refused.reason))
        .collect();
    for (name, reason) in &refused {
        tracing::error!(target: "outpost::node", function = %name, "function refused: {reason}");
    }
    let deployer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for spec in setup.functions {
        let name = spec.name.clone();
        match deployer.block_on(engine.deploy(spec)) {
            Ok(()) => {
                tracing::info!(target: "outpost::node", function = %name, "function deployed")
            }
            Err(error) => {
                tracing::error!(target: "outpost::node", function = %name, "function refused: {error}");
                refused.insert(name, error.to_string());
            }
        }
    }
    drop(deployer);

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
    let proxy = EdgeProxy::new(
        engine,
        setup.routes,
        setup.origins,
        setup.default_origin,
        refused,
        setup.max_body_bytes,
        setup.cache_bytes,
    );
    let mut service = pingora::proxy::http_proxy_service(&server.configuration, proxy);
    service.add_tcp(&setup.listen.to_string());
    server.add_service(service);
    tracing::info!(target: "outpost::node", listen = %setup.listen, "serving");
    server.run_forever()
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
