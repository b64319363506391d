//! `outpost-kv`: KV cost on real nodes following control (processes on loopback): a cache hit inside a handler, a miss fetched from control, and a write's invalidation reaching every node.
//!
//! * **Hit cost:** one handler answers `?gets=N` by awaiting `env.CACHE.get` N times on
//!   keys the node has cached. The cost of one hit is the difference between the median
//!   latency of `?gets=1000` and `?gets=0`, divided by 1000: it includes the JS call,
//!   the op, the cache lookup and decoding the value, and nothing of HTTP.
//! * **Miss latency:** `?key=K` for keys the node has never read: the request's latency
//!   (handler + one QUIC round trip to control + SQLite read), next to the same request
//!   for a cached key.
//! * **Invalidation:** every node has `flag` cached; a write through control's admin API
//!   returns once committed; then every node is polled (1 ms apart) until it reads the
//!   new value. Reported: time from the write's answer until the last node reads it.

#[expect(
    dead_code,
    reason = "shared with outpost-fleet, which reads every field"
)]
mod cluster;

use std::path::PathBuf;
use std::time::Duration;
use std::time::Instant;

use anyhow::Result;
use anyhow::bail;
use clap::Parser;
use outpost_proto::KvBinding;
use outpost_proto::api::KvBulkEntry;
use outpost_proto::api::NewKvNamespace;

use crate::cluster::Api;
use crate::cluster::Cluster;
use crate::cluster::ms;
use crate::cluster::percentile;

/// Command-line flags.
#[derive(Debug, Parser)]
#[command(
    name = "outpost-kv",
    about = "KV hit cost, miss latency and invalidation time"
)]
struct Args {
    /// Nodes the invalidation must reach.
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// Gets per request when measuring the cost of a hit.
    #[arg(long, default_value_t = 1000)]
    gets: usize,
    /// Requests per hit-cost sample.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Distinct keys read once each for the miss latency.
    #[arg(long, default_value_t = 300)]
    misses: usize,
    /// Writes timed until every node reads them.
    #[arg(long, default_value_t = 30)]
    writes: usize,
    /// Directory holding `outpost-edge` and `outpost-control`.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
}

const NAMESPACE: &str = "bench";
const HOT_KEYS: usize = 100;

const HANDLER: &str = r#"const HOT = Array.from({ length: 100 }, (_, i) => `hot:${i}`);
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const key = url.searchParams.get("key");
    if (key !== null) return new Response((await env.CACHE.get(key)) ?? "");
    const gets = Number(url.searchParams.get("gets") ?? 0);
    let bytes = 0;
    for (let i = 0; i < gets; i++) bytes += (await env.CACHE.get(HOT[i % HOT.length])).length;
    return new Response(String(bytes));
  },
};
"#;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let bin_dir = cluster::bin_dir(&args.bin_dir)?;
    let tmp = std::env::temp_dir().join(format!("outpost-kv-{}", std::process::id()));
    eprintln!("starting control and {} nodes...", args.nodes);
    let cluster = Cluster::start(&bin_dir, &tmp, args.nodes.max(1), "").await?;
    let result = run(&args, &cluster).await;
    drop(cluster);
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

async fn run(args: &Args, cluster: &Cluster) -> Result<()> {
    let api = &cluster.api;
    let _: serde_json::Value = api
        .post(
            "/v1/kv/namespaces",
            &NewKvNamespace {
                name: NAMESPACE.into(),
            },
        )
        .await?;
    let value = "v".repeat(100);
    let mut entries: Vec<KvBulkEntry> = (0..HOT_KEYS)
        .map(|i| entry(&format!("hot:{i}"), &value))
        .collect();
    entries.extend((0..args.misses).map(|i| entry(&format!("cold:{i}"), &value)));
    entries.push(entry("flag", "0"));
    let _: serde_json::Value = api
        .post(&format!("/v1/kv/{NAMESPACE}/bulk"), &entries)
        .await?;
    let published = api
        .publish(
            "kv",
            HANDLER.into(),
            vec![KvBinding {
                binding: "CACHE".into(),
                namespace: NAMESPACE.into(),
            }],
        )
        .await?;
    api.until_applied(
        published.snapshot_version,
        cluster.ports.len(),
        Instant::now(),
    )
    .await?;
    let node = format!("http://127.0.0.1:{}", cluster.ports[0]);
    let http = reqwest::Client::new();

    // Hit cost: warm every hot key, then compare 0 and N gets per request.
    let expected = (args.gets * value.len()).to_string();
    let warm = get(&http, &format!("{node}/?gets={}", args.gets)).await?;
    if warm.1 != expected {
        bail!("the handler answered {:?}, not {expected:?}", warm.1);
    }
    let mut baseline = Vec::new();
    let mut loaded = Vec::new();
    for _ in 0..args.requests {
        baseline.push(get(&http, &format!("{node}/?gets=0")).await?.0);
        loaded.push(get(&http, &format!("{node}/?gets={}", args.gets)).await?.0);
    }
    baseline.sort();
    loaded.sort();
    let per_hit = loaded[loaded.len() / 2].saturating_sub(baseline[baseline.len() / 2])
        / u32::try_from(args.gets)?;

    // Miss latency next to a hit, same request shape.
    let mut misses = Vec::new();
    let mut hits = Vec::new();
    for i in 0..args.misses {
        let (took, body) = get(&http, &format!("{node}/?key=cold:{i}")).await?;
        if body != value {
            bail!("cold:{i} read {body:?}");
        }
        misses.push(took);
        hits.push(get(&http, &format!("{node}/?key=hot:0")).await?.0);
    }
    misses.sort();
    hits.sort();

    // A write reaching every node.
    let mut reach = Vec::new();
    for round in 1..=args.writes {
        let wanted = round.to_string();
        write(api, "flag", &wanted).await?;
        let start = Instant::now();
        let polls = cluster.ports.iter().map(|port| {
            let (http, wanted) = (http.clone(), wanted.clone());
            let url = format!("http://127.0.0.1:{port}/?key=flag");
            async move {
                loop {
                    if get(&http, &url).await?.1 == wanted {
                        return Ok::<Duration, anyhow::Error>(start.elapsed());
                    }
                    if start.elapsed() > Duration::from_secs(30) {
                        bail!("{url} never read {wanted:?}");
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        });
        let times = futures::future::try_join_all(polls).await?;
        reach.push(times.into_iter().max().unwrap_or_default());
    }
    reach.sort();

    println!(
        "| KV measurement ({} nodes, loopback) | result |",
        args.nodes
    );
    println!("|---|---|");
    println!(
        "| cost of one cache hit inside a handler (`await env.CACHE.get`, 100-byte value) | {:.2} µs |",
        per_hit.as_secs_f64() * 1e6
    );
    println!(
        "| request p50 with 0 / {} hits | {:.3} ms / {:.3} ms |",
        args.gets,
        ms(baseline[baseline.len() / 2]),
        ms(loaded[loaded.len() / 2])
    );
    println!(
        "| request reading one cached key p50 / p99 | {:.3} ms / {:.3} ms |",
        ms(percentile(&hits, 50)),
        ms(percentile(&hits, 99))
    );
    println!(
        "| request reading one uncached key (miss → control over QUIC) p50 / p99 | {:.3} ms / {:.3} ms |",
        ms(percentile(&misses, 50)),
        ms(percentile(&misses, 99))
    );
    println!(
        "| write committed → all {} nodes read the new value p50 / p99 | {:.2} ms / {:.2} ms |",
        args.nodes,
        ms(percentile(&reach, 50)),
        ms(percentile(&reach, 99))
    );
    println!(
        "\n{} requests per hit sample, {} misses, {} writes. Target: a hit ≤ 5 µs.",
        args.requests, args.misses, args.writes
    );
    Ok(())
}

fn entry(key: &str, value: &str) -> KvBulkEntry {
    KvBulkEntry {
        key: key.into(),
        value: value.into(),
        base64: false,
        expiration: None,
        expiration_ttl: None,
        metadata: None,
    }
}

/// One GET: its latency and body (a non-200 status is an error).
async fn get(http: &reqwest::Client, url: &str) -> Result<(Duration, String)> {
    let start = Instant::now();
    let response = http.get(url).send().await?;
    let status = response.status();
    let body = response.text().await?;
    let took = start.elapsed();
    if !status.is_success() {
        bail!("GET {url}: {status}: {body}");
    }
    Ok((took, body))
}

/// Writes `value` under `key` through the admin API; returns once committed.
async fn write(api: &Api, key: &str, value: &str) -> Result<()> {
    api.http
        .put(format!("{}/v1/kv/{NAMESPACE}/values/{key}", api.base))
        .bearer_auth(&api.token)
        .body(value.to_string())
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}
