//! `outpost-bench`: Outpost side by side with deno, workerd and nginx, plus cold start and memory per isolate.

mod coldstart;
mod handlers;
mod outpost;
mod peers;
mod report;
mod wrk;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, ValueEnum};

use crate::handlers::{HELLO_BODY, HandlerFiles};
use crate::outpost::{Node, NodeConfig, NodeSettings};
use crate::peers::Peer;
use crate::report::{Report, Row, Stat, Target, Unit};
use crate::wrk::{WrkConfig, WrkStats};

/// Length of the discarded warm-up run before each measurement, in seconds.
const WARMUP_SECS: u64 = 1;

/// Command-line flags.
#[derive(Debug, Parser)]
#[command(
    name = "outpost-bench",
    about = "Benchmarks Outpost against deno, workerd and nginx on loopback; prints a markdown table"
)]
struct Args {
    /// Length of each measured wrk run, in seconds.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// wrk connections.
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// Smoke run: 3 s wrk runs (overrides --duration).
    #[arg(long)]
    quick: bool,
    /// Measured runs per target and throughput benchmark; the median run is reported.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Run only one benchmark.
    #[arg(long, value_enum)]
    only: Option<Only>,
    /// The peers script [default: <workspace>/../shared/peers/peers].
    #[arg(long)]
    peers: Option<PathBuf>,
    /// Directory holding `outpost-edge`; relative paths are taken from the workspace root.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Number of functions for the cold-start and memory benchmarks.
    #[arg(long, default_value_t = 100)]
    cold_functions: usize,
    /// CPU the servers (Outpost and peers) are pinned to.
    #[arg(long, default_value_t = 0)]
    server_cpu: u32,
    /// CPU wrk is pinned to.
    #[arg(long, default_value_t = 1)]
    client_cpu: u32,
    /// Outpost `[server] threads` (workers: each accepts connections and runs isolates).
    #[arg(long, default_value_t = 1)]
    threads: u32,
    /// Outpost `[engine] memory_budget_mb`.
    #[arg(long, default_value_t = 1024)]
    memory_budget_mb: u32,
    /// Keep the temporary directory (handlers, configs, node logs).
    #[arg(long)]
    keep_temp: bool,
}

/// The benchmarks `--only` can pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Only {
    /// Hello world throughput and latency.
    Hello,
    /// JSON-parsing handler throughput and latency.
    Realistic,
    /// Cold-start latency.
    Cold,
    /// Memory per idle isolate.
    Memory,
}

/// Everything the benchmarks share.
struct Ctx {
    /// Temporary directory for handlers, configs and logs.
    tmp: PathBuf,
    /// Handlers and wrk script written into `tmp`.
    files: HandlerFiles,
    /// The peers script.
    peers: PathBuf,
    /// How Outpost nodes are run.
    node: NodeSettings,
    /// How wrk is run.
    wrk: WrkConfig,
    /// Measured run length, seconds.
    duration: u64,
    /// Measured runs per target (median reported).
    rounds: u32,
    /// Functions in the cold-start and memory benchmarks.
    cold_functions: usize,
    /// Client for readiness checks and response validation.
    http: reqwest::Client,
    /// Pids of peers currently running, stopped on Ctrl-C.
    live_peers: Mutex<Vec<u32>>,
}

/// Which handler a throughput benchmark serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    /// hello.js, GET.
    Hello,
    /// realistic.js, POST with the JSON order.
    Realistic,
    /// GET on a path no route matches: the 404 Outpost writes in `request_filter`
    /// without running JavaScript — the node's HTTP floor (pingora + routing).
    NoRoute,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Hello => "hello",
            Workload::Realistic => "realistic",
            Workload::NoRoute => "no-route 404 (pingora, no JS)",
        }
    }
}

/// A server under test.
enum Server {
    Outpost(Node),
    Peer(Peer),
}

impl Server {
    /// Starts `target` serving `workload` on `port`.
    async fn start(ctx: &Ctx, target: Target, workload: Workload, port: u16) -> Result<Self> {
        let handler = match workload {
            Workload::Hello | Workload::NoRoute => &ctx.files.hello,
            Workload::Realistic => &ctx.files.realistic,
        };
        match target {
            Target::Outpost => {
                let mut config = NodeConfig::single(&ctx.node, port, "handler", handler);
                if workload == Workload::NoRoute {
                    config.routes[0].path = Some("/function/*".into());
                }
                let tag = format!("{:?}-node", workload).to_lowercase();
                let node = Node::start(&ctx.node, &config, &ctx.tmp, &tag, &ctx.http).await?;
                Ok(Server::Outpost(node))
            }
            peer => {
                let handler = (peer != Target::Nginx).then_some(handler.as_path());
                let p = Peer::start(&ctx.peers, peer.name(), handler, port, ctx.node.cpu).await?;
                lock(&ctx.live_peers).push(p.pid);
                Ok(Server::Peer(p))
            }
        }
    }

    /// Stops the server.
    async fn stop(self, ctx: &Ctx) {
        match self {
            Server::Outpost(node) => node.stop().await,
            Server::Peer(p) => {
                let pid = p.pid;
                p.stop().await;
                lock(&ctx.live_peers).retain(|&x| x != pid);
            }
        }
        // Let the core settle before the next target.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Locks a mutex, recovering the data if a holder panicked.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Deletes the temporary directory when dropped, unless asked to keep it.
struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("kept temporary files in {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.cold_functions < 2 {
        bail!("--cold-functions must be at least 2");
    }
    let root = workspace_root()?;
    let tmp = std::env::temp_dir().join(format!("outpost-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let tmp = tmp
        .canonicalize()
        .with_context(|| format!("resolving {}", tmp.display()))?;
    let _guard = TempDir {
        path: tmp.clone(),
        keep: args.keep_temp,
    };
    let files = HandlerFiles::write(&tmp)?;
    let peers = match &args.peers {
        Some(p) => p.clone(),
        None => root.join("../shared/peers/peers"),
    };
    let peers = peers.canonicalize().unwrap_or(peers);
    let bin_dir = if args.bin_dir.is_absolute() {
        args.bin_dir.clone()
    } else {
        root.join(&args.bin_dir)
    };
    let ctx = Ctx {
        tmp,
        files,
        peers,
        node: NodeSettings {
            binary: bin_dir.join("outpost-edge"),
            cpu: args.server_cpu,
            threads: args.threads,
            memory_budget_mb: args.memory_budget_mb,
        },
        wrk: WrkConfig {
            cpu: args.client_cpu,
            threads: 1,
            connections: args.connections,
        },
        duration: if args.quick { 3 } else { args.duration },
        rounds: args.rounds.max(1),
        cold_functions: args.cold_functions,
        http: reqwest::Client::builder()
            .no_proxy()
            .build()
            .context("building HTTP client")?,
        live_peers: Mutex::new(Vec::new()),
    };

    let report = tokio::select! {
        report = run(&ctx, &args) => report,
        _ = tokio::signal::ctrl_c() => {
            let pids = lock(&ctx.live_peers).clone();
            for pid in pids {
                let _ = tokio::process::Command::new("kill").arg(pid.to_string()).output().await;
            }
            bail!("interrupted");
        }
    };
    print!("{}", report.render());
    Ok(())
}

/// Runs the selected benchmarks and collects the report.
async fn run(ctx: &Ctx, args: &Args) -> Report {
    let wants = |b: Only| args.only.is_none_or(|o| o == b);
    let mut report = Report {
        header: header(ctx),
        ..Report::default()
    };
    if wants(Only::Hello) {
        let results = throughput(ctx, Workload::Hello, &Target::ALL).await;
        add_throughput(&mut report, Workload::Hello, results);
        let results = throughput(ctx, Workload::NoRoute, &[Target::Outpost]).await;
        add_throughput(&mut report, Workload::NoRoute, results);
    }
    if wants(Only::Realistic) {
        let targets = [Target::Outpost, Target::Deno, Target::Workerd];
        let results = throughput(ctx, Workload::Realistic, &targets).await;
        add_throughput(&mut report, Workload::Realistic, results);
    }
    let bundles = if wants(Only::Cold) || wants(Only::Memory) {
        coldstart::write_bundles(&ctx.tmp.join("bundles"), ctx.cold_functions)
    } else {
        Ok(Vec::new())
    };
    if wants(Only::Cold) {
        let result = match &bundles {
            Ok(b) => cold(ctx, b).await,
            Err(e) => Err(anyhow::anyhow!("writing bundles: {e:#}")),
        };
        add_cold(&mut report, ctx.cold_functions, result);
    }
    if wants(Only::Memory) {
        let result = match &bundles {
            Ok(b) => memory(ctx, b).await,
            Err(e) => Err(anyhow::anyhow!("writing bundles: {e:#}")),
        };
        add_memory(&mut report, result);
    }
    report
}

/// Lines above the table: command, machine, method.
fn header(ctx: &Ctx) -> Vec<String> {
    let command: Vec<String> = std::env::args().map(|a| shell_quote(&a)).collect();
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let wrk = ctx.wrk.command(ctx.duration, None).join(" ");
    vec![
        format!("command: `{}`", command.join(" ")),
        format!("machine: {cpus} CPUs (nproc), {model}, Linux {kernel}"),
        format!(
            "load: `{wrk} URL` (realistic adds `-s post.lua`: POST of a {}-item JSON order); \
             one discarded {WARMUP_SECS} s warm-up run before each run; {} rounds with the targets \
             interleaved, each target's median round (by req/s) reported",
            handlers::ORDER_ITEMS,
            ctx.rounds
        ),
        format!(
            "servers pinned to CPU {} (`taskset`); outpost: `{}`, {} worker thread(s), \
             memory budget {} MiB; deno: `deno serve` (one isolate); workerd: one worker; nginx: fixed 200 (ceiling)",
            ctx.node.cpu,
            ctx.node.binary.display(),
            ctx.node.threads,
            ctx.node.memory_budget_mb
        ),
        format!(
            "cold start / memory: {n} functions f1..f{n} (distinct copies of hello.js, preload = false); \
             a cold then a warm GET per function, each over a fresh TCP connection, timed from connect \
             to full response; the first half back to back, the second half {pause} ms apart",
            n = ctx.cold_functions,
            pause = SPACED_COLD_PAUSE.as_millis()
        ),
        "ratios are outpost ÷ peer (req/s: higher is better for outpost; latency: lower is better)"
            .to_owned(),
    ]
}

/// Quotes an argument for display as a shell word.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The workspace root: the parent of this crate's manifest dir, else the current dir.
fn workspace_root() -> Result<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    if let Some(parent) = manifest.parent()
        && parent.join("Cargo.toml").is_file()
    {
        return Ok(parent.to_owned());
    }
    std::env::current_dir().context("reading the current directory")
}

/// A loopback port nobody listens on right now.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    Ok(listener.local_addr().context("local_addr")?.port())
}

/// Runs `workload` against each target, `rounds` times in turn (targets interleaved, so
/// a slow spell of the machine hits them alike), and keeps each target's median round.
async fn throughput(
    ctx: &Ctx,
    workload: Workload,
    targets: &[Target],
) -> Vec<(Target, Result<WrkStats>)> {
    let mut runs: Vec<(Target, Vec<WrkStats>, Option<anyhow::Error>)> =
        targets.iter().map(|&t| (t, Vec::new(), None)).collect();
    for round in 1..=ctx.rounds {
        for (target, stats, failed) in &mut runs {
            if failed.is_some() {
                continue;
            }
            let (name, who) = (workload.name(), target.name());
            eprintln!("[{name}] {who}: round {round}/{}", ctx.rounds);
            match bench_target(ctx, workload, *target).await {
                Ok(s) => {
                    eprintln!(
                        "[{name}] {who}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms",
                        s.requests_per_sec, s.p50_ms, s.p99_ms
                    );
                    stats.push(s);
                }
                Err(e) => {
                    eprintln!("[{name}] {who}: FAILED: {e:#}");
                    *failed = Some(e);
                }
            }
        }
    }
    runs.into_iter()
        .map(|(target, stats, failed)| match failed {
            Some(e) => (target, Err(e)),
            None => (target, median_run(stats).context("no runs")),
        })
        .collect()
}

/// The run with the median request rate (the lower middle one for an even count).
fn median_run(mut runs: Vec<WrkStats>) -> Option<WrkStats> {
    runs.sort_by(|a, b| a.requests_per_sec.total_cmp(&b.requests_per_sec));
    let middle = runs.len().checked_sub(1)? / 2;
    Some(runs.swap_remove(middle))
}

/// Starts one target, checks its answer, warms it up, measures it, stops it.
async fn bench_target(ctx: &Ctx, workload: Workload, target: Target) -> Result<WrkStats> {
    let port = free_port()?;
    let server = Server::start(ctx, target, workload, port).await?;
    let url = format!("http://127.0.0.1:{port}/");
    let script = (workload == Workload::Realistic).then_some(ctx.files.post_lua.as_path());
    let result = async {
        validate(ctx, workload, target, &url).await?;
        ctx.wrk
            .run(&url, WARMUP_SECS, script)
            .await
            .context("warm-up run")?;
        ctx.wrk.run(&url, ctx.duration, script).await
    }
    .await;
    server.stop(ctx).await;
    result
}

/// Checks that the target gives the expected answer before it is measured.
async fn validate(ctx: &Ctx, workload: Workload, target: Target, url: &str) -> Result<()> {
    match workload {
        Workload::NoRoute => {
            let res = ctx.http.get(url).send().await.context("GET")?;
            let status = res.status();
            let body = res.text().await.context("reading body")?;
            if status != reqwest::StatusCode::NOT_FOUND || !body.starts_with("no route matches") {
                bail!("GET {url}: {status} {body:?}, want 404 \"no route matches ...\"");
            }
        }
        Workload::Hello => {
            let res = ctx.http.get(url).send().await.context("GET")?;
            let status = res.status();
            let body = res.text().await.context("reading body")?;
            let want = if target == Target::Nginx {
                "ok"
            } else {
                HELLO_BODY
            };
            if status != reqwest::StatusCode::OK || body != want {
                bail!("GET {url}: {status} {body:?}, want 200 {want:?}");
            }
        }
        Workload::Realistic => {
            let order = &ctx.files.order;
            let res = ctx
                .http
                .post(url)
                .header("content-type", "application/json")
                .body(order.body.clone())
                .send()
                .await
                .context("POST")?;
            let status = res.status();
            let header = |name: &str| {
                res.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let content_type = header("content-type").unwrap_or_default();
            let cache_control = header("cache-control").unwrap_or_default();
            let total = header("x-request-total");
            let body = res.text().await.context("reading body")?;
            if status != reqwest::StatusCode::OK {
                bail!("POST {url}: {status} {body:?}, want 200");
            }
            order
                .check_response(&body)
                .with_context(|| format!("POST {url}"))?;
            if !content_type.starts_with("application/json") {
                bail!("POST {url}: content-type {content_type:?}, want application/json");
            }
            if cache_control != "no-store" {
                bail!("POST {url}: cache-control {cache_control:?}, want no-store");
            }
            let total = total.context("no x-request-total header")?;
            let total: f64 = total
                .parse()
                .with_context(|| format!("bad x-request-total {total:?}"))?;
            if (total - order.total).abs() > 1e-9 {
                bail!("x-request-total {total}, want {}", order.total);
            }
            let get = ctx.http.get(url).send().await.context("GET")?;
            if get.status() != reqwest::StatusCode::METHOD_NOT_ALLOWED {
                bail!("GET {url}: {}, want 405", get.status());
            }
        }
    }
    Ok(())
}

/// Adds the req/s, p50 and p99 rows of a throughput benchmark.
fn add_throughput(
    report: &mut Report,
    workload: Workload,
    results: Vec<(Target, Result<WrkStats>)>,
) {
    let name = workload.name();
    let mut rps = Row::new(format!("{name} req/s"), Unit::Rate);
    let mut p50 = Row::new(format!("{name} p50 ms"), Unit::Millis);
    let mut p99 = Row::new(format!("{name} p99 ms"), Unit::Millis);
    for (target, result) in results {
        match result {
            Ok(s) => {
                rps.set(target, Stat::Num(s.requests_per_sec));
                p50.set(target, Stat::Num(s.p50_ms));
                p99.set(target, Stat::Num(s.p99_ms));
                if s.non_2xx > 0 && workload != Workload::NoRoute {
                    report.notes.push(format!(
                        "{name} {}: {} of {} responses were not 2xx/3xx",
                        target.name(),
                        s.non_2xx,
                        s.requests
                    ));
                }
                if let Some(errors) = s.socket_errors {
                    report
                        .notes
                        .push(format!("{name} {}: socket errors: {errors}", target.name()));
                }
            }
            Err(e) => {
                for row in [&mut rps, &mut p50, &mut p99] {
                    row.set(target, Stat::Failed);
                }
                report
                    .notes
                    .push(format!("{name} {}: {e:#}", target.name()));
            }
        }
    }
    report.rows.extend([rps, p50, p99]);
}

/// Pause between functions in the spaced cold-start run: long enough for the node to
/// have its spare isolate ready again, as when cold starts are occasional.
const SPACED_COLD_PAUSE: Duration = Duration::from_millis(50);

/// Runs the cold-start benchmark on a fresh lazy node: the first half of the functions
/// back to back, the second half [`SPACED_COLD_PAUSE`] apart.
async fn cold(
    ctx: &Ctx,
    bundles: &[PathBuf],
) -> Result<(coldstart::ColdStats, coldstart::ColdStats)> {
    eprintln!("[cold] outpost: {} functions", bundles.len());
    let port = free_port()?;
    let config = coldstart::lazy_config(&ctx.node, port, bundles);
    let node = Node::start(&ctx.node, &config, &ctx.tmp, "cold-node", &ctx.http).await?;
    let half = bundles.len() / 2;
    let back_to_back = coldstart::measure_cold(&node, 1..=half, Duration::ZERO).await;
    let spaced = coldstart::measure_cold(&node, half + 1..=bundles.len(), SPACED_COLD_PAUSE).await;
    if !back_to_back.failures.is_empty() || !spaced.failures.is_empty() {
        eprintln!("[cold] node log tail:\n{}", node.log_tail());
    }
    node.stop().await;
    Ok((back_to_back, spaced))
}

/// Adds the cold-start rows.
fn add_cold(
    report: &mut Report,
    functions: usize,
    result: Result<(coldstart::ColdStats, coldstart::ColdStats)>,
) {
    match result {
        Ok((back_to_back, spaced)) => {
            add_cold_rows(report, "back to back", functions / 2, back_to_back);
            let label = format!("{} ms apart", SPACED_COLD_PAUSE.as_millis());
            add_cold_rows(report, &label, functions - functions / 2, spaced);
        }
        Err(e) => {
            eprintln!("[cold] outpost: FAILED: {e:#}");
            let mut row = Row::new("cold start p50 / p99 ms", Unit::Millis);
            row.set(Target::Outpost, Stat::Failed);
            report.rows.push(row);
            report.notes.push(format!("cold start outpost: {e:#}"));
        }
    }
}

/// Adds the rows of one cold-start run.
fn add_cold_rows(report: &mut Report, how: &str, functions: usize, stats: coldstart::ColdStats) {
    let mut cold_row = Row::new(format!("cold start p50 / p99 ms ({how})"), Unit::Millis);
    let mut warm_row = Row::new(
        format!("warm request p50 ms, fresh connection ({how})"),
        Unit::Millis,
    );
    let p = |s: &[f64], q| coldstart::percentile(s, q);
    match (p(&stats.cold_ms, 50.0), p(&stats.cold_ms, 99.0)) {
        (Some(p50), Some(p99)) => cold_row.set(Target::Outpost, Stat::Pair(p50, p99)),
        _ => cold_row.set(Target::Outpost, Stat::Failed),
    }
    warm_row.set(
        Target::Outpost,
        p(&stats.warm_ms, 50.0).map_or(Stat::Failed, Stat::Num),
    );
    eprintln!(
        "[cold] outpost ({how}): {} cold and {} warm samples, {} failures",
        stats.cold_ms.len(),
        stats.warm_ms.len(),
        stats.failures.len()
    );
    if let (Some(min), Some(max)) = (p(&stats.cold_ms, 0.0), p(&stats.cold_ms, 100.0)) {
        report.notes.push(format!(
            "cold start ({how}): {} of {functions} functions answered; min {min:.2} ms, max {max:.2} ms",
            stats.cold_ms.len()
        ));
    }
    if !stats.failures.is_empty() {
        let shown: Vec<&str> = stats.failures.iter().take(3).map(String::as_str).collect();
        report.notes.push(format!(
            "cold start ({how}): {} failed requests, e.g. {}",
            stats.failures.len(),
            shown.join("; ")
        ));
    }
    report.rows.extend([cold_row, warm_row]);
}

/// Runs the memory benchmark on a fresh lazy node.
async fn memory(ctx: &Ctx, bundles: &[PathBuf]) -> Result<coldstart::MemoryStats> {
    eprintln!("[memory] outpost: {} functions", bundles.len());
    let port = free_port()?;
    let config = coldstart::lazy_config(&ctx.node, port, bundles);
    let node = Node::start(&ctx.node, &config, &ctx.tmp, "memory-node", &ctx.http).await?;
    let result = coldstart::measure_memory(&node, bundles.len()).await;
    if result.is_err() {
        eprintln!("[memory] node log tail:\n{}", node.log_tail());
    }
    node.stop().await;
    result
}

/// Adds the memory row.
fn add_memory(report: &mut Report, result: Result<coldstart::MemoryStats>) {
    let mut row = Row::new("memory per idle isolate MiB", Unit::Mib);
    match result {
        Ok(m) => {
            let per = m.per_isolate_mib();
            eprintln!("[memory] outpost: {per:.2} MiB per isolate");
            row.set(Target::Outpost, Stat::Num(per));
            report.notes.push(format!(
                "memory: node VmRSS {:.1} MiB with f1 booted, {:.1} MiB with all {} booted",
                m.before_kib as f64 / 1024.0,
                m.after_kib as f64 / 1024.0,
                m.functions
            ));
        }
        Err(e) => {
            eprintln!("[memory] outpost: FAILED: {e:#}");
            row.set(Target::Outpost, Stat::Failed);
            report.notes.push(format!("memory outpost: {e:#}"));
        }
    }
    report.rows.push(row);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_shell_words() {
        assert_eq!(shell_quote("--quick"), "--quick");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn reports_the_median_run() {
        let run = |rate: f64| WrkStats {
            requests_per_sec: rate,
            p50_ms: rate / 1000.0,
            p99_ms: 1.0,
            requests: 1,
            non_2xx: 0,
            socket_errors: None,
        };
        let median = median_run(vec![run(30.0), run(10.0), run(20.0)]);
        assert_eq!(median.map(|m| m.p50_ms), Some(0.02));
        let lower = median_run(vec![run(40.0), run(10.0)]);
        assert_eq!(lower.map(|m| m.requests_per_sec), Some(10.0));
        assert!(median_run(Vec::new()).is_none());
    }

    #[test]
    fn finds_workspace_root() -> Result<()> {
        assert!(workspace_root()?.join("loadtest/Cargo.toml").is_file());
        Ok(())
    }
}
