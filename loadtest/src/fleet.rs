//! `outpost-fleet`: deploy propagation across N real edge nodes on loopback (control and nodes as real processes, QUIC + mutual TLS), and control's cost per idle node.
//!
//! For each fleet size it starts `outpost-control serve` and N `outpost-edge --control`
//! processes (one pingora and one engine thread each), then times deploys: from the
//! admin API's `POST /v1/functions/{name}/versions` returning until every node has ACKed
//! the new snapshot (a node ACKs only after it serves it; a sample of nodes is checked
//! over HTTP). Prints a markdown table.

mod cluster;

use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context as _;
use anyhow::Result;
use anyhow::bail;
use clap::Parser;

use crate::cluster::Api;
use crate::cluster::Cluster;
use crate::cluster::ms;
use crate::cluster::percentile;
use crate::cluster::rss_kib;

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

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let bin_dir = cluster::bin_dir(&args.bin_dir)?;
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
    let cluster = Cluster::start(bin_dir, dir, count, "").await?;
    let (api, control_pid, ports) = (&cluster.api, cluster.control_pid, &cluster.ports);
    let rss_before = cluster.control_rss_at_start_kib;
    // Warm-up deploy (first bundle fetch, first isolate), then the idle measurements.
    deploy(api, "warm-up", count).await?;
    let rss_after = rss_kib(control_pid)?;
    let cpu_before = cpu_ticks(control_pid)?;
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let cpu_after = cpu_ticks(control_pid)?;
    let cpu_seconds = (cpu_after.saturating_sub(cpu_before)) as f64 / CLOCK_TICKS_PER_SEC;

    let mut all = Vec::new();
    let mut per_node = Vec::new();
    for k in 0..args.deploys {
        let (total, nodes) = deploy(api, &format!("deploy {k}"), count).await?;
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

/// Publishes a handler answering `body` and waits until all `count` nodes ACK it.
/// Returns the time until the last ACK and each node's time.
async fn deploy(api: &Api, body: &str, count: usize) -> Result<(Duration, Vec<Duration>)> {
    let source = format!(
        "export default {{ fetch() {{ return new Response({}); }} }};\n",
        serde_json::to_string(body)?
    );
    let published = api.publish("fleet", source, Vec::new()).await?;
    let times = api
        .until_applied(published.snapshot_version, count, Instant::now())
        .await?;
    Ok((times.last().copied().unwrap_or_default(), times))
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
