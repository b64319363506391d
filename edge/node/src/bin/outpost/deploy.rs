//! `outpost deploy`: bundle the project, upload it once (by hash), publish a version, and follow the nodes until they all serve it — or roll back if any refuses it.

use std::path::PathBuf;
use std::time::Duration;
use std::time::Instant;

use outpost_proto::BundleArchive;
use outpost_proto::BundleHash;
use outpost_proto::api::BundleStored;
use outpost_proto::api::FunctionInfo;
use outpost_proto::api::NewVersion;
use outpost_proto::api::NodeInfo;
use outpost_proto::api::Published;
use outpost_proto::api::Rollback;
use reqwest::Method;
use reqwest::StatusCode;
use serde::Serialize;

use crate::api::CliError;
use crate::api::Control;

/// `outpost deploy` arguments.
#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// Project folder (with outpost.toml) or handler file.
    #[arg(default_value = ".")]
    path: PathBuf,
    /// Gradual deploy: serve the new version to this percentage of clients (sticky per
    /// client IP); `outpost promote` finishes it.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=100))]
    percent: Option<u8>,
    /// A note shown by `outpost versions`.
    #[arg(long, short)]
    message: Option<String>,
    /// Seconds to wait for every connected node to apply the version.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Return once control has published, without waiting for nodes.
    #[arg(long)]
    no_wait: bool,
}

/// What `outpost deploy --json` prints.
#[derive(Debug, Serialize)]
struct DeployReport {
    function: String,
    version: Option<u64>,
    bundle: String,
    snapshot_version: u64,
    nodes_applied: usize,
    nodes_connected: usize,
    nacks: Vec<NodeNack>,
    rolled_back: bool,
}

#[derive(Debug, Serialize)]
struct NodeNack {
    node: String,
    error: String,
}

pub async fn deploy(control: &Control, args: DeployArgs, json: bool) -> Result<(), CliError> {
    let (manifest, base) = outpost_edge::config::load_project(&args.path)
        .map_err(|error| CliError::Input(error.to_string()))?;
    manifest
        .limits
        .validate()
        .map_err(|error| CliError::Input(format!("outpost.toml: {error}")))?;
    let bundle = outpost_edge::bundler::load_entry(&base.join(&manifest.main), &base)
        .map_err(|error| CliError::Input(error.to_string()))?;
    let archive = BundleArchive {
        main: bundle.main().to_string(),
        modules: bundle
            .modules()
            .map(|(path, source)| (path.to_string(), source.to_string()))
            .collect(),
    };
    let bytes = archive.to_bytes();
    let hash = BundleHash::of(&bytes);
    let name = manifest.name.clone();
    let say = |line: String| {
        if !json {
            eprintln!("{line}");
        }
    };

    // The version to roll back to if the nodes refuse the new one: the live one, or the
    // stable (oldest) side of a gradual deploy.
    let previous = match control
        .get::<FunctionInfo>(&format!("/v1/functions/{name}"))
        .await
    {
        Ok(info) => info.live.last().map(|live| live.version),
        Err(CliError::Api {
            status: StatusCode::NOT_FOUND,
            ..
        }) => None,
        Err(error) => return Err(error),
    };

    let bundle_path = format!("/v1/bundles/{hash}");
    if control.exists(&bundle_path).await? {
        say(format!("bundle {} already uploaded", short(&hash)));
    } else {
        let size = bytes.len();
        let _: BundleStored = control.put_bytes(&bundle_path, bytes).await?;
        say(format!("uploaded bundle {} ({size} bytes)", short(&hash)));
    }

    let mut vars = serde_json::Map::new();
    for (key, value) in manifest.vars {
        let value = serde_json::to_value(value)
            .map_err(|error| CliError::Input(format!("outpost.toml: vars.{key}: {error}")))?;
        vars.insert(key, value);
    }
    let limits = match serde_json::to_value(manifest.limits) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let published: Published = control
        .call(
            Method::POST,
            &format!("/v1/functions/{name}/versions"),
            &NewVersion {
                bundle: Some(hash.clone()),
                vars,
                limits,
                routes: Some(manifest.routes),
                origins: Some(manifest.origins),
                percent: args.percent,
                message: args.message,
                kv_namespaces: Some(manifest.kv_namespaces),
            },
        )
        .await?;
    let version = published.live.first().map(|live| live.version);
    say(format!(
        "published {name} v{} (snapshot {}){}",
        version.map_or("?".into(), |v| v.to_string()),
        published.snapshot_version,
        args.percent
            .filter(|p| *p < 100)
            .map_or(String::new(), |p| format!(", serving {p}% of clients"))
    ));

    let mut report = DeployReport {
        function: name.clone(),
        version,
        bundle: hash.to_string(),
        snapshot_version: published.snapshot_version,
        nodes_applied: 0,
        nodes_connected: 0,
        nacks: Vec::new(),
        rolled_back: false,
    };
    if args.no_wait {
        return finish(json, &report, Ok(()));
    }

    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut last_progress = None;
    loop {
        let nodes: Vec<NodeInfo> = control.get("/v1/nodes").await?;
        let target = published.snapshot_version;
        let connected: Vec<&NodeInfo> = nodes.iter().filter(|node| node.connected).collect();
        report.nodes_connected = connected.len();
        report.nodes_applied = connected
            .iter()
            .filter(|node| node.applied_version.is_some_and(|v| v >= target))
            .count();
        report.nacks = nodes
            .iter()
            .filter_map(|node| {
                let nack = node.last_nack.as_ref()?;
                (nack.version >= target).then(|| NodeNack {
                    node: node.name.clone(),
                    error: nack.error.clone(),
                })
            })
            .collect();
        let progress = (report.nodes_applied, report.nodes_connected);
        if last_progress != Some(progress) {
            say(format!("{}/{} nodes applied", progress.0, progress.1));
            last_progress = Some(progress);
        }
        if !report.nacks.is_empty() {
            for nack in &report.nacks {
                say(format!(
                    "node {} refused v{}: {}",
                    nack.node,
                    version.unwrap_or(0),
                    nack.error
                ));
            }
            let undo = match previous {
                Some(previous) => {
                    control
                        .call::<_, Published>(
                            Method::POST,
                            &format!("/v1/functions/{name}/rollback"),
                            &Rollback {
                                version: Some(previous),
                            },
                        )
                        .await
                }
                None => {
                    control
                        .delete::<Published>(&format!("/v1/functions/{name}"))
                        .await
                }
            };
            let outcome = match undo {
                Ok(_) => {
                    report.rolled_back = true;
                    let back = previous.map_or(
                        "removed the function (it had no earlier version)".into(),
                        |v| format!("rolled back to v{v}"),
                    );
                    say(back.clone());
                    Err(CliError::Refused(format!(
                        "deploy refused by {} node(s); {back}",
                        report.nacks.len()
                    )))
                }
                Err(error) => Err(CliError::Refused(format!(
                    "deploy refused by {} node(s), and undoing it failed: {error}",
                    report.nacks.len()
                ))),
            };
            return finish(json, &report, outcome);
        }
        if report.nodes_applied == report.nodes_connected {
            say(format!(
                "{name} v{} is live on every connected node",
                version.unwrap_or(0)
            ));
            return finish(json, &report, Ok(()));
        }
        if Instant::now() >= deadline {
            let outcome = Err(CliError::Timeout(format!(
                "timed out after {}s: {}/{} nodes applied",
                args.timeout, report.nodes_applied, report.nodes_connected
            )));
            return finish(json, &report, outcome);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn finish(
    json: bool,
    report: &DeployReport,
    outcome: Result<(), CliError>,
) -> Result<(), CliError> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        );
    }
    outcome
}

fn short(hash: &BundleHash) -> String {
    hash.as_str().chars().take(12).collect()
}
