//! `outpost-fleet`: deploy propagation across N real edge nodes on loopback (control and nodes as real processes, QUIC + mutual TLS), and control's cost per idle node.
//!
//! For each fleet size it starts `outpost-control serve` and N `outpost-edge --control`
//! processes (one pingora and one engine thread each), then times deploys: from the
//! admin API's `POST /v1/functions/{name}/versions` returning until every node has ACKed
//! the new snapshot (a node ACKs only after it serves it; a sample of nodes is checked
//! over HTTP). Prints a markdown table.

use std::path::Path;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context as _;
use anyhow::Result;
use anyhow::bail;
use clap::Parser;
use outpost_proto::BundleArchive;
use outpost_proto::BundleHash;
use outpost_proto::api::JoinToken;
use outpost_proto::api::NewVersion;
use outpost_proto::api::NodeInfo;
use outpost_proto::api::Published;
use outpost_routing::RouteRule;

/// Command-line flags.
#[derive(Debug, Parser)]
#[command(
    name = "outpost-fleet",
    about = "Deploy propagation to N edge nodes on loopback"
)]
struct Args {
    /// Fleet sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    nodes: Vec<usize>,
    /// Timed deploys per fleet size.
    #[arg(long, default_value_t = 20)]
    deploys: usize,
    /// Seconds of idle time over which control's CPU per node is measured.
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
    /// Directory holding `outpost-edge` and `outpost-control`.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Keep the temporary directory (data dirs and logs).
    #[arg(long)]
    keep_temp: bool,
}

/// `/proc/<pid>/stat` counts CPU time in clock ticks (Linux USER_HZ).
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// One fleet size's results.
struct FleetResult {
    nodes: usize,
    all_p50: Duration,
    all_p99: Duration,
    node_p50: Duration,
    node_p99: Duration,
    rss_per_node_kib: f64,
    cpu_per_node_pct: f64,
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

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?
        .to_path_buf();
    let bin_dir = root.join(&args.bin_dir);
    for bin in ["outpost-edge", "outpost-control"] {
        if !bin_dir.join(bin).exists() {
            bail!(
                "{} is missing: cargo build --release -p outpost-edge -p outpost-control",
                bin_dir.join(bin).display()
            );
        }
    }
    let tmp = std::env::temp_dir().join(format!("outpost-fleet-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let mut results = Vec::new();
    for &nodes in &args.nodes {
        eprintln!("fleet of {nodes} node(s)...");
        results.push(run_fleet(&args, &bin_dir, &tmp.join(format!("n{nodes}")), nodes).await?);
    }
    if !args.keep_temp {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    println!(
        "| nodes | deploy → all nodes serving p50 | p99 | per-node ACK p50 | p99 | control RSS per idle node | control CPU per idle node |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in &results {
        println!(
            "| {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.0} KiB | {:.3} % of a core |",
            r.nodes,
            ms(r.all_p50),
            ms(r.all_p99),
            ms(r.node_p50),
            ms(r.node_p99),
            r.rss_per_node_kib,
            r.cpu_per_node_pct
        );
    }
    println!(
        "\n{} deploys per fleet size; target: 100 nodes p99 ≤ 1000 ms.",
        args.deploys
    );
    Ok(())
}

async fn run_fleet(args: &Args, bin_dir: &Path, dir: &Path, count: usize) -> Result<FleetResult> {
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
    let rss_before = rss_kib(control_pid)?;

    let node_config = dir.join("node.toml");
    std::fs::write(
        &node_config,
        "[server]\nthreads = 1\n\n[engine]\nthreads = 1\nmemory_budget_mb = 256\n",
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

    // Warm-up deploy (first bundle fetch, first isolate), then the idle measurements.
    deploy(&api, "warm-up", count).await?;
    let rss_after = rss_kib(control_pid)?;
    let cpu_before = cpu_ticks(control_pid)?;
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let cpu_after = cpu_ticks(control_pid)?;
    let cpu_seconds = (cpu_after.saturating_sub(cpu_before)) as f64 / CLOCK_TICKS_PER_SEC;

    let mut all = Vec::new();
    let mut per_node = Vec::new();
    for k in 0..args.deploys {
        let (total, nodes) = deploy(&api, &format!("deploy {k}"), count).await?;
        all.push(total);
        per_node.extend(nodes);
    }
    // ACKed nodes really serve the last deploy: check some over HTTP.
    let last = format!("deploy {}", args.deploys.saturating_sub(1));
    for port in ports.iter().step_by(count.div_ceil(5).max(1)) {
        let body = api
            .http
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await?
            .text()
            .await?;
        if body != last {
            bail!("node on port {port} answers {body:?}, not {last:?}");
        }
    }
    all.sort();
    per_node.sort();
    Ok(FleetResult {
        nodes: count,
        all_p50: percentile(&all, 50),
        all_p99: percentile(&all, 99),
        node_p50: percentile(&per_node, 50),
        node_p99: percentile(&per_node, 99),
        rss_per_node_kib: (rss_after as f64 - rss_before as f64).max(0.0) / count as f64,
        cpu_per_node_pct: cpu_seconds / args.idle_secs as f64 * 100.0 / count as f64,
    })
}

/// Uploads a handler answering `body`, publishes it, and waits until all `count` nodes
/// ACK. Returns the time until the last ACK and each node's time.
async fn deploy(api: &Api, body: &str, count: usize) -> Result<(Duration, Vec<Duration>)> {
    let source = format!(
        "export default {{ fetch() {{ return new Response({}); }} }};\n",
        serde_json::to_string(body)?
    );
    let archive = BundleArchive {
        main: "index.js".into(),
        modules: [("index.js".to_string(), source)].into(),
    };
    let bytes = archive.to_bytes();
    let hash = BundleHash::of(&bytes);
    api.http
        .put(format!("{}/v1/bundles/{hash}", api.base))
        .bearer_auth(&api.token)
        .body(bytes)
        .send()
        .await?
        .error_for_status()?;
    let published: Published = api
        .post(
            "/v1/functions/fleet/versions",
            &NewVersion {
                bundle: Some(hash),
                routes: Some(vec![RouteRule {
                    function: Some("fleet".into()),
                    ..RouteRule::default()
                }]),
                ..NewVersion::default()
            },
        )
        .await?;
    let start = Instant::now();
    let target = published.snapshot_version;
    let mut seen: std::collections::HashMap<String, Duration> = std::collections::HashMap::new();
    let deadline = start + Duration::from_secs(60);
    loop {
        let nodes = api.nodes().await?;
        let elapsed = start.elapsed();
        for node in &nodes {
            if node.applied_version.is_some_and(|v| v >= target) {
                seen.entry(node.id.clone()).or_insert(elapsed);
            }
            if let Some(nack) = node.last_nack.as_ref().filter(|n| n.version >= target) {
                bail!("node {} refused: {}", node.name, nack.error);
            }
        }
        if seen.len() >= count {
            let mut times: Vec<Duration> = seen.into_values().collect();
            times.sort();
            return Ok((times.last().copied().unwrap_or_default(), times));
        }
        if Instant::now() > deadline {
            bail!("only {}/{count} nodes applied {body:?}", seen.len());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    async fn nodes(&self) -> Result<Vec<NodeInfo>> {
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

    async fn post<B: serde::Serialize, T: serde::de::DeserializeOwned>(
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
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() * p).div_ceil(100)).saturating_sub(1);
    sorted[index.min(sorted.len() - 1)]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .context("VmRSS")
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields after the name start at state (3); utime is 14, stime 15.
    let utime: u64 = fields
        .get(11)
        .and_then(|v| v.parse().ok())
        .context("utime")?;
    let stime: u64 = fields
        .get(12)
        .and_then(|v| v.parse().ok())
        .context("stime")?;
    Ok(utime + stime)
}
