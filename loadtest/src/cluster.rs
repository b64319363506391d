//! A control service and N edge nodes as real processes on loopback, for the fleet and KV benchmarks.

use std::path::Path;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context as _;
use anyhow::Result;
use anyhow::bail;
use outpost_proto::BundleArchive;
use outpost_proto::BundleHash;
use outpost_proto::KvBinding;
use outpost_proto::api::JoinToken;
use outpost_proto::api::NewVersion;
use outpost_proto::api::NodeInfo;
use outpost_proto::api::Published;
use outpost_routing::RouteRule;

/// The directory (relative to the workspace root) holding the release binaries the
/// benchmarks start, checked to hold them.
pub fn bin_dir(relative: &Path) -> Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?;
    let bin_dir = root.join(relative);
    for bin in ["outpost-edge", "outpost-control"] {
        if !bin_dir.join(bin).exists() {
            bail!(
                "{} is missing: cargo build --release -p outpost-edge -p outpost-control",
                bin_dir.join(bin).display()
            );
        }
    }
    Ok(bin_dir)
}

/// Kills its processes on drop.
struct Processes(Vec<std::process::Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

/// `outpost-control serve` plus `count` joined `outpost-edge --control` processes, each
/// node with one proxy and one engine thread.
pub struct Cluster {
    /// Killed when the cluster is dropped.
    _processes: Processes,
    /// Control's admin API.
    pub api: Api,
    /// Control's process id.
    pub control_pid: u32,
    /// Each node's HTTP port.
    pub ports: Vec<u16>,
    /// Control's resident memory before any node joined, KiB.
    pub control_rss_at_start_kib: u64,
}

impl Cluster {
    /// Starts control in `dir/control` and `count` nodes (config `node_toml` plus one
    /// thread each); returns once every node is connected.
    pub async fn start(
        bin_dir: &Path,
        dir: &Path,
        count: usize,
        node_toml: &str,
    ) -> Result<Cluster> {
        std::fs::create_dir_all(dir)?;
        let control_dir = dir.join("control");
        let init = outpost_control::init(&control_dir)?;
        let api_port = free_port()?;
        let quic_port = free_port()?;
        let mut processes = Processes(Vec::new());
        processes.0.push(
            std::process::Command::new(bin_dir.join("outpost-control"))
                .arg("serve")
                .arg("--data-dir")
                .arg(&control_dir)
                .arg("--api")
                .arg(format!("127.0.0.1:{api_port}"))
                .arg("--quic")
                .arg(format!("127.0.0.1:{quic_port}"))
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join("control.log"))?)
                .spawn()
                .context("starting outpost-control")?,
        );
        let control_pid = processes.0[0].id();
        let api = Api {
            base: format!("http://127.0.0.1:{api_port}"),
            token: init.admin_token.clone(),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while api.nodes().await.is_err() {
            if Instant::now() > deadline {
                bail!(
                    "control did not start; see {}",
                    dir.join("control.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let control_rss_at_start_kib = rss_kib(control_pid)?;

        let node_config = dir.join("node.toml");
        std::fs::write(
            &node_config,
            format!("[server]\nthreads = 1\n\n[engine]\nmemory_budget_mb = 256\n\n{node_toml}"),
        )?;
        let mut ports = Vec::with_capacity(count);
        for i in 0..count {
            let token: JoinToken = api.post("/v1/join-tokens", &serde_json::json!({})).await?;
            let port = free_port()?;
            ports.push(port);
            processes.0.push(
                std::process::Command::new(bin_dir.join("outpost-edge"))
                    .arg("--config")
                    .arg(&node_config)
                    .arg("--listen")
                    .arg(format!("127.0.0.1:{port}"))
                    .arg("--control")
                    .arg(format!("127.0.0.1:{quic_port}"))
                    .arg("--join-token")
                    .arg(&token.token)
                    .arg("--data-dir")
                    .arg(dir.join(format!("node-{i}")))
                    .arg("--name")
                    .arg(format!("fleet-{i}"))
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(dir.join(format!("node-{i}.log")))?)
                    .spawn()
                    .context("starting outpost-edge")?,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let connected = api.nodes().await?.iter().filter(|n| n.connected).count();
            if connected == count {
                break;
            }
            if Instant::now() > deadline {
                bail!("only {connected}/{count} nodes connected");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Cluster {
            _processes: processes,
            api,
            control_pid,
            ports,
            control_rss_at_start_kib,
        })
    }
}

/// Control's admin API.
pub struct Api {
    /// `http://127.0.0.1:port`.
    pub base: String,
    /// The admin token.
    pub token: String,
    /// A shared HTTP client.
    pub http: reqwest::Client,
}

impl Api {
    /// `GET /v1/nodes`.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        Ok(self
            .http
            .get(format!("{}/v1/nodes", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// POSTs JSON and reads a JSON answer; a non-2xx status is an error with the body.
    pub async fn post<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("POST {path}: {status}: {text}");
        }
        Ok(serde_json::from_str(&text)?)
    }

    /// Uploads a one-module handler and publishes it as the only version of `function`,
    /// answering every path, with `kv` bound.
    pub async fn publish(
        &self,
        function: &str,
        source: String,
        kv: Vec<KvBinding>,
    ) -> Result<Published> {
        let archive = BundleArchive {
            main: "index.js".into(),
            modules: [("index.js".to_string(), source)].into(),
        };
        let bytes = archive.to_bytes();
        let hash = BundleHash::of(&bytes);
        self.http
            .put(format!("{}/v1/bundles/{hash}", self.base))
            .bearer_auth(&self.token)
            .body(bytes)
            .send()
            .await?
            .error_for_status()?;
        self.post(
            &format!("/v1/functions/{function}/versions"),
            &NewVersion {
                bundle: Some(hash),
                routes: Some(vec![RouteRule {
                    function: Some(function.into()),
                    ..RouteRule::default()
                }]),
                kv_namespaces: (!kv.is_empty()).then_some(kv),
                ..NewVersion::default()
            },
        )
        .await
    }

    /// Waits until `count` nodes have applied snapshot `version`; returns each node's time
    /// from `start`. A node's NACK is an error.
    pub async fn until_applied(
        &self,
        version: u64,
        count: usize,
        start: Instant,
    ) -> Result<Vec<Duration>> {
        let mut seen: std::collections::HashMap<String, Duration> =
            std::collections::HashMap::new();
        let deadline = start + Duration::from_secs(60);
        loop {
            let nodes = self.nodes().await?;
            let elapsed = start.elapsed();
            for node in &nodes {
                if node.applied_version.is_some_and(|v| v >= version) {
                    seen.entry(node.id.clone()).or_insert(elapsed);
                }
                if let Some(nack) = node.last_nack.as_ref().filter(|n| n.version >= version) {
                    bail!("node {} refused: {}", node.name, nack.error);
                }
            }
            if seen.len() >= count {
                let mut times: Vec<Duration> = seen.into_values().collect();
                times.sort();
                return Ok(times);
            }
            if Instant::now() > deadline {
                bail!(
                    "only {}/{count} nodes applied version {version}",
                    seen.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// The `p`th percentile of sorted samples (nearest rank).
pub fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() * p).div_ceil(100)).saturating_sub(1);
    sorted[index.min(sorted.len() - 1)]
}

/// Milliseconds, fractional.
pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// A free TCP port on loopback.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Resident memory of a process, KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .context("VmRSS")
}
