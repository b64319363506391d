//! `outpost-edge`: runs an edge node from a config file, from control, or with the embedded hello example when given neither.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use outpost_edge::config::NodeConfig;
use outpost_edge::sync::SyncConfig;

/// Runs an Outpost edge node.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Node config (TOML). Without it (and without --control) the node serves the
    /// built-in hello example. Under --control only its [server], [engine] and [kv] apply.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Listen address [default: the config's, else 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Follow the control service at this QUIC address (host:port).
    #[arg(long, env = "OUTPOST_CONTROL")]
    control: Option<String>,
    /// One-time join token from `outpost-control init` (needed on first start only).
    #[arg(long, env = "OUTPOST_JOIN_TOKEN", requires = "control")]
    join_token: Option<String>,
    /// Where the node keeps its identity, last good snapshot and bundles.
    #[arg(long, default_value = "outpost-node-data")]
    data_dir: PathBuf,
    /// Name shown by `outpost nodes` (default: the host name).
    #[arg(long)]
    name: Option<String>,
}

fn main() -> anyhow::Result<()> {
    outpost_edge::init_logging();
    let args = Args::parse();
    let default_listen = || {
        outpost_edge::config::DEFAULT_LISTEN
            .parse()
            .context("default listen address")
    };
    let setup = match &args.config {
        Some(path) => {
            let base = path
                .parent()
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."));
            let config = NodeConfig::load(path)?;
            let config = match args.listen {
                Some(listen) => config.with_listen(listen),
                None => config,
            };
            config.into_setup(&base)?
        }
        None if args.control.is_some() => NodeConfig::default()
            .with_listen(args.listen.map_or_else(default_listen, Ok)?)
            .into_setup(std::path::Path::new("."))?,
        None => outpost_edge::embedded_setup(args.listen.map_or_else(default_listen, Ok)?)
            .context("building the embedded example")?,
    };
    match args.control {
        Some(control) => {
            let name = args.name.unwrap_or_else(host_name);
            let kv = setup.kv.clone();
            outpost_edge::serve_controlled(
                setup,
                SyncConfig {
                    control,
                    join_token: args.join_token,
                    data_dir: args.data_dir,
                    name,
                    kv,
                },
            )
        }
        None => outpost_edge::serve(setup),
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "edge".into())
}
