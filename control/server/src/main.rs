//! `outpost-control`: the control service binary (init a data directory, make join tokens, serve).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use clap::Subcommand;
use outpost_control::DEFAULT_API_LISTEN;
use outpost_control::DEFAULT_QUIC_LISTEN;
use outpost_control::ServeConfig;

/// Outpost control: state, admin API and the QUIC service edge nodes sync from.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a data directory: database, CA, certificates, admin token, first join token.
    Init {
        /// The data directory to create.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Print a new one-time join token for an edge node.
    JoinToken {
        /// The data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Refuse a node's certificate from its next connection on.
    RevokeNode {
        /// The data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The node id (`node-...`, see `GET /v1/nodes`).
        node_id: String,
    },
    /// Serve the admin API and the QUIC service until interrupted.
    Serve {
        /// The data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Admin HTTP API address.
        #[arg(long, default_value = DEFAULT_API_LISTEN)]
        api: SocketAddr,
        /// QUIC address edge nodes connect to.
        #[arg(long, default_value = DEFAULT_QUIC_LISTEN)]
        quic: SocketAddr,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Init { data_dir } => {
            let info = outpost_control::init(&data_dir)
                .with_context(|| format!("cannot initialize {}", data_dir.display()))?;
            println!("Initialized control in {}", data_dir.display());
            println!();
            println!("Admin token (shown only now; only its hash is stored):");
            println!("  {}", info.admin_token);
            println!();
            println!(
                "One-time join token for an edge node (`outpost-control join-token` makes more):"
            );
            println!("  {}", info.join_token);
        }
        Command::JoinToken { data_dir } => {
            let token = outpost_control::create_join_token(&data_dir)
                .context("cannot create a join token")?;
            println!("{token}");
        }
        Command::RevokeNode { data_dir, node_id } => {
            outpost_control::revoke_node(&data_dir, &node_id)
                .with_context(|| format!("cannot revoke {node_id}"))?;
            println!("Revoked {node_id}; its certificate is refused from its next connection on.");
        }
        Command::Serve {
            data_dir,
            api,
            quic,
        } => {
            let control = outpost_control::start(ServeConfig {
                data_dir,
                api_listen: api,
                quic_listen: quic,
            })
            .await
            .context("cannot start control")?;
            tokio::signal::ctrl_c()
                .await
                .context("cannot wait for Ctrl-C")?;
            control.shutdown().await;
        }
    }
    Ok(())
}
