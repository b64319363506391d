//! `outpost`: the developer CLI — `dev` serves a handler locally; `deploy`, `versions`, `rollback`, `promote`, `routes`, `secret`, `vars`, `kv`, `nodes`, `status` talk to control.

mod api;
mod deploy;
mod init;
mod kv;

use std::net::IpAddr;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use clap::Subcommand;
use outpost_proto::api::FunctionInfo;
use outpost_proto::api::NodeInfo;
use outpost_proto::api::Published;
use outpost_proto::api::RouteInfo;
use outpost_proto::api::SecretInfo;
use outpost_proto::api::SecretValue;
use outpost_proto::api::Status;
use outpost_proto::api::VersionInfo;
use reqwest::Method;
use serde::Serialize;

use crate::api::CliError;
use crate::api::Control;
use crate::api::ControlArgs;

/// Outpost CLI: develop handlers locally and deploy them to every edge node.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print JSON instead of text (for scripts).
    #[arg(long, global = true)]
    json: bool,
    #[command(flatten)]
    control: ControlArgs,
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
    /// Create a TypeScript project: handler, outpost.toml, tsconfig.json and a test.
    Init {
        /// Folder to create; its name is the function's name.
        path: PathBuf,
    },
    #[command(flatten)]
    Control(ControlCommand),
}

/// Commands that talk to control.
#[derive(Debug, Subcommand)]
enum ControlCommand {
    /// Upload a project (folder with outpost.toml, or a handler file) as a new version and
    /// wait until every connected node serves it.
    Deploy(deploy::DeployArgs),
    /// List a function's versions.
    Versions {
        /// The function.
        function: String,
    },
    /// Make an earlier version live again (default: the one before the current).
    Rollback {
        /// The function.
        function: String,
        /// The version to make live.
        version: Option<u64>,
    },
    /// Finish a gradual deploy: the newest version serves everyone.
    Promote {
        /// The function.
        function: String,
    },
    /// List every route in match order.
    Routes,
    /// Manage a function's secrets (values are write-only).
    Secret {
        #[command(subcommand)]
        command: SecretCommand,
    },
    /// Show the vars of a function's live version.
    Vars {
        /// The function.
        function: String,
    },
    /// Manage KV namespaces and their entries.
    Kv {
        #[command(subcommand)]
        command: kv::KvCommand,
    },
    /// List nodes: connected, applied snapshot, last NACK.
    Nodes,
    /// Snapshot version, functions and node counts.
    Status,
}

#[derive(Debug, Subcommand)]
enum SecretCommand {
    /// Set a secret; the value is read from stdin unless --value is given.
    Put {
        /// The function.
        function: String,
        /// The binding name (`env.NAME`).
        name: String,
        /// The value (prefer stdin: it stays out of shell history).
        #[arg(long)]
        value: Option<String>,
    },
    /// List secret names.
    List {
        /// The function.
        function: String,
    },
    /// Delete a secret.
    Delete {
        /// The function.
        function: String,
        /// The binding name.
        name: String,
    },
}

fn main() {
    outpost_edge::init_logging();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Dev { path, port, host } => {
            dev(&path, SocketAddr::new(host, port)).map_err(|error| (1, format!("{error:#}")))
        }
        Command::Init { path } => init::init(&path)
            .map(|()| {
                println!(
                    "created {0}: `cd {0} && npm install && npm test`, then `outpost dev {0}`",
                    path.display()
                )
            })
            .map_err(|error| (error.exit_code(), error.to_string())),
        Command::Control(command) => control(command, &cli.control, cli.json)
            .map_err(|error| (error.exit_code(), error.to_string())),
    };
    if let Err((code, message)) = outcome {
        eprintln!("error: {message}");
        std::process::exit(code);
    }
}

/// Runs one control command on a single-threaded runtime.
fn control(command: ControlCommand, args: &ControlArgs, json: bool) -> Result<(), CliError> {
    let control = Control::from_args(args)?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| CliError::Input(format!("starting the runtime: {error}")))?
        .block_on(run(&control, command, json))
}

fn dev(path: &std::path::Path, listen: SocketAddr) -> anyhow::Result<()> {
    eprintln!(
        "outpost dev: serving {} on http://{listen}/ (reloads on save)",
        path.display()
    );
    outpost_edge::serve_dev(path, listen)
}

async fn run(control: &Control, command: ControlCommand, json: bool) -> Result<(), CliError> {
    match command {
        ControlCommand::Deploy(args) => deploy::deploy(control, args, json).await,
        ControlCommand::Versions { function } => {
            let versions: Vec<VersionInfo> = control
                .get(&format!("/v1/functions/{function}/versions"))
                .await?;
            print(json, &versions, || {
                let mut out = format!(
                    "{:<8} {:<8} {:<14} {}\n",
                    "VERSION", "LIVE", "BUNDLE", "MESSAGE"
                );
                for v in &versions {
                    let live = if v.percent > 0 {
                        format!("{}%", v.percent)
                    } else {
                        "-".into()
                    };
                    let bundle: String = v.bundle.as_str().chars().take(12).collect();
                    out += &format!(
                        "{:<8} {:<8} {:<14} {}\n",
                        v.version,
                        live,
                        bundle,
                        v.message.as_deref().unwrap_or("")
                    );
                }
                out
            });
            Ok(())
        }
        ControlCommand::Rollback { function, version } => {
            let published: Published = control
                .call(
                    Method::POST,
                    &format!("/v1/functions/{function}/rollback"),
                    &outpost_proto::api::Rollback { version },
                )
                .await?;
            print_published(json, "rolled back", &published);
            Ok(())
        }
        ControlCommand::Promote { function } => {
            let published: Published = control
                .call(
                    Method::POST,
                    &format!("/v1/functions/{function}/promote"),
                    &serde_json::json!({}),
                )
                .await?;
            print_published(json, "promoted", &published);
            Ok(())
        }
        ControlCommand::Routes => {
            let routes: Vec<RouteInfo> = control.get("/v1/routes").await?;
            print(json, &routes, || {
                let mut out = format!(
                    "{:<4} {:<28} {:<20} {:<16} {}\n",
                    "#", "HOST", "PATH", "FUNCTION", "ORIGIN"
                );
                for (index, route) in routes.iter().enumerate() {
                    let rule = &route.rule;
                    out += &format!(
                        "{:<4} {:<28} {:<20} {:<16} {}\n",
                        index + 1,
                        rule.host.as_deref().unwrap_or("*"),
                        rule.path.as_deref().unwrap_or("*"),
                        rule.function.as_deref().unwrap_or("-"),
                        rule.origin.as_deref().unwrap_or("-"),
                    );
                }
                out
            });
            Ok(())
        }
        ControlCommand::Secret { command } => secret(control, command, json).await,
        ControlCommand::Kv { command } => kv::kv(control, command, json).await,
        ControlCommand::Vars { function } => {
            let info: FunctionInfo = control.get(&format!("/v1/functions/{function}")).await?;
            print(json, &info.vars, || {
                info.vars
                    .iter()
                    .map(|(key, value)| format!("{key} = {value}\n"))
                    .collect()
            });
            Ok(())
        }
        ControlCommand::Nodes => {
            let nodes: Vec<NodeInfo> = control.get("/v1/nodes").await?;
            print(json, &nodes, || {
                let mut out = format!(
                    "{:<22} {:<16} {:<10} {:<8} {}\n",
                    "ID", "NAME", "STATE", "APPLIED", "LAST NACK"
                );
                for node in &nodes {
                    out += &format!(
                        "{:<22} {:<16} {:<10} {:<8} {}\n",
                        node.id,
                        node.name,
                        if node.connected {
                            "connected"
                        } else {
                            "offline"
                        },
                        node.applied_version.map_or("-".into(), |v| v.to_string()),
                        node.last_nack
                            .as_ref()
                            .map_or(String::new(), |nack| format!(
                                "v{}: {}",
                                nack.version, nack.error
                            )),
                    );
                }
                out
            });
            Ok(())
        }
        ControlCommand::Status => {
            let status: Status = control.get("/v1/status").await?;
            print(json, &status, || {
                format!(
                    "snapshot version {}\nfunctions        {}\nnodes            {} joined, {} connected, {} current\n",
                    status.snapshot_version,
                    status.functions,
                    status.nodes,
                    status.nodes_connected,
                    status.nodes_current
                )
            });
            Ok(())
        }
    }
}

async fn secret(control: &Control, command: SecretCommand, json: bool) -> Result<(), CliError> {
    match command {
        SecretCommand::Put {
            function,
            name,
            value,
        } => {
            let value = match value {
                Some(value) => value,
                None => {
                    let mut text = String::new();
                    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(
                        |error| CliError::Input(format!("reading the secret from stdin: {error}")),
                    )?;
                    text.strip_suffix('\n')
                        .map(|t| t.strip_suffix('\r').unwrap_or(t))
                        .unwrap_or(&text)
                        .to_string()
                }
            };
            let published: Published = control
                .call(
                    Method::PUT,
                    &format!("/v1/functions/{function}/secrets/{name}"),
                    &SecretValue { value },
                )
                .await?;
            print_published(json, &format!("secret {name} set"), &published);
        }
        SecretCommand::List { function } => {
            let secrets: Vec<SecretInfo> = control
                .get(&format!("/v1/functions/{function}/secrets"))
                .await?;
            print(json, &secrets, || {
                secrets.iter().map(|s| format!("{}\n", s.name)).collect()
            });
        }
        SecretCommand::Delete { function, name } => {
            let published: Published = control
                .delete(&format!("/v1/functions/{function}/secrets/{name}"))
                .await?;
            print_published(json, &format!("secret {name} deleted"), &published);
        }
    }
    Ok(())
}

/// Prints `value` as JSON, or the human text.
fn print<T: Serialize>(json: bool, value: &T, human: impl FnOnce() -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    } else {
        print!("{}", human());
    }
}

fn print_published(json: bool, what: &str, published: &Published) {
    print(json, published, || {
        let live: Vec<String> = published
            .live
            .iter()
            .map(|live| format!("v{} ({}%)", live.version, live.percent))
            .collect();
        format!(
            "{}: {what}; live: {} (snapshot {})\n",
            published.function,
            if live.is_empty() {
                "nothing".into()
            } else {
                live.join(", ")
            },
            published.snapshot_version
        )
    });
}
