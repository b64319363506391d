//! `outpost-edge`: runs an edge node from a config file, or the embedded hello example when given none.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use outpost_edge::config::NodeConfig;

/// Runs an Outpost edge node.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Node config (TOML). Without it the node serves the built-in hello example.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Listen address when running the built-in example.
    #[arg(long, default_value = outpost_edge::config::DEFAULT_LISTEN)]
    listen: std::net::SocketAddr,
}

fn main() -> anyhow::Result<()> {
    outpost_edge::init_logging();
    let args = Args::parse();
    let setup = match &args.config {
        Some(path) => {
            let base = path
                .parent()
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."));
            NodeConfig::load(path)?.into_setup(&base)?
        }
        None => {
            outpost_edge::embedded_setup(args.listen).context("building the embedded example")?
        }
    };
    outpost_edge::serve(setup)
}
