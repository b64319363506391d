//! `outpost`: the developer CLI. `outpost dev <handler.js | dir>` serves one handler locally with the node's engine.

use std::net::IpAddr;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use clap::Subcommand;

/// Outpost developer CLI.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a handler file, or a folder with an outpost.toml, on 127.0.0.1 (like `wrangler dev`).
    Dev {
        /// Handler file (`export default { fetch }`) or project folder.
        path: PathBuf,
        /// Port to listen on.
        #[arg(long, short, default_value_t = 8787)]
        port: u16,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        host: IpAddr,
    },
}

fn main() -> anyhow::Result<()> {
    outpost_edge::init_logging();
    match Cli::parse().command {
        Command::Dev { path, port, host } => {
            let (config, base) =
                outpost_edge::config::dev_config(&path, SocketAddr::new(host, port))?;
            let setup = config.into_setup(&base)?;
            eprintln!(
                "outpost dev: serving {} on http://{host}:{port}/",
                path.display()
            );
            outpost_edge::serve(setup)
        }
    }
}
