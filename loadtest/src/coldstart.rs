//! Cold-start latency and memory per idle isolate, measured on a node with many lazily booted functions.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::handlers::{HELLO_BODY, HELLO_JS, write_file};
use crate::outpost::{FunctionSpec, Node, NodeConfig, NodeSettings, RouteSpec};

/// Longest a single cold or warm request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Writes `n` distinct bundles `dir/fI/hello.js` (I = 1..=n) and returns the entry paths.
pub fn write_bundles(dir: &Path, n: usize) -> Result<Vec<PathBuf>> {
    (1..=n)
        .map(|i| {
            let sub = dir.join(format!("f{i}"));
            std::fs::create_dir_all(&sub).with_context(|| format!("creating {}", sub.display()))?;
            let main = sub.join("hello.js");
            // A leading comment makes every bundle's source distinct, so no
            // content-keyed cache can make later "cold" starts look warm.
            write_file(&main, &format!("// bundle f{i}\n{HELLO_JS}"))?;
            Ok(main)
        })
        .collect()
}

/// A node config with functions f1..fN (`preload = false`) routed at `/fI/*`.
pub fn lazy_config(settings: &NodeSettings, port: u16, bundles: &[PathBuf]) -> NodeConfig {
    let mut functions = Vec::new();
    let mut routes = Vec::new();
    for (i, main) in bundles.iter().enumerate() {
        let name = format!("f{}", i + 1);
        functions.push(FunctionSpec {
            name: name.clone(),
            main: main.clone(),
            preload: false,
        });
        routes.push(RouteSpec {
            path: Some(format!("/{name}/*")),
            function: name,
        });
    }
    NodeConfig {
        port,
        threads: settings.threads,
        memory_budget_mb: settings.memory_budget_mb,
        functions,
        routes,
    }
}

/// Result of the cold-start benchmark.
#[derive(Debug, Clone)]
pub struct ColdStats {
    /// First request to each function (connect to full response), ms.
    pub cold_ms: Vec<f64>,
    /// Second request to each function, ms.
    pub warm_ms: Vec<f64>,
    /// Requests that failed, with the reason.
    pub failures: Vec<String>,
}

/// Sends one cold and one warm request to each function in `functions` (indexes into
/// f1..fN of a running lazy node), then waits `pause` before the next function.
pub async fn measure_cold(
    node: &Node,
    functions: std::ops::RangeInclusive<usize>,
    pause: Duration,
) -> ColdStats {
    let mut stats = ColdStats {
        cold_ms: Vec::new(),
        warm_ms: Vec::new(),
        failures: Vec::new(),
    };
    for i in functions {
        let path = format!("/f{i}/");
        for (label, samples) in [("cold", &mut stats.cold_ms), ("warm", &mut stats.warm_ms)] {
            match timed_get(node.port, &path).await {
                Ok(ms) => samples.push(ms),
                Err(e) => stats.failures.push(format!("{label} GET {path}: {e:#}")),
            }
        }
        tokio::time::sleep(pause).await;
    }
    stats
}

/// Result of the memory benchmark.
#[derive(Debug, Clone)]
pub struct MemoryStats {
    /// VmRSS after startup and one request to f1, KiB.
    pub before_kib: u64,
    /// VmRSS after one request to every function, KiB.
    pub after_kib: u64,
    /// Number of functions.
    pub functions: usize,
}

impl MemoryStats {
    /// (after - before) / (N - 1), in MiB.
    pub fn per_isolate_mib(&self) -> f64 {
        let grown = self.after_kib.saturating_sub(self.before_kib) as f64;
        grown / (self.functions.saturating_sub(1).max(1) as f64) / 1024.0
    }
}

/// Boots f1, reads RSS, boots f2..fN, waits 1 s, reads RSS again.
pub async fn measure_memory(node: &Node, functions: usize) -> Result<MemoryStats> {
    if functions < 2 {
        bail!("memory benchmark needs at least 2 functions");
    }
    timed_get(node.port, "/f1/").await.context("GET /f1/")?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before_kib = node.rss_kib()?;
    for i in 1..=functions {
        let path = format!("/f{i}/");
        timed_get(node.port, &path)
            .await
            .with_context(|| format!("GET {path}"))?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after_kib = node.rss_kib()?;
    Ok(MemoryStats {
        before_kib,
        after_kib,
        functions,
    })
}

/// Nearest-rank percentile (`p` in 0..=100) of `samples`; `None` when empty.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// One `GET path` over a fresh TCP connection; returns ms from connect to the full
/// response, and fails unless the answer is 200 with the hello body.
pub async fn timed_get(port: u16, path: &str) -> Result<f64> {
    let start = Instant::now();
    let (status, body) = tokio::time::timeout(REQUEST_TIMEOUT, raw_get(port, path))
        .await
        .with_context(|| format!("no full response within {}s", REQUEST_TIMEOUT.as_secs()))??;
    let elapsed = start.elapsed().as_secs_f64() * 1000.0;
    if status != 200 {
        bail!(
            "status {status}: {}",
            String::from_utf8_lossy(&body)
                .chars()
                .take(200)
                .collect::<String>()
        );
    }
    if body != HELLO_BODY.as_bytes() {
        bail!("unexpected body {:?}", String::from_utf8_lossy(&body));
    }
    Ok(elapsed)
}

/// Minimal HTTP/1.1 GET: returns the status and the (de-chunked) body.
async fn raw_get(port: u16, path: &str) -> Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .context("connect")?;
    stream.set_nodelay(true).context("set_nodelay")?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .context("write")?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let mut head: Option<Head> = None;
    loop {
        if head.is_none() {
            head = parse_head(&buf)?;
        }
        if let Some(h) = &head {
            let body = &buf[h.len..];
            match h.framing {
                Framing::Length(n) if body.len() >= n => {
                    return Ok((h.status, body[..n].to_vec()));
                }
                Framing::Chunked => {
                    if let Some(decoded) = dechunk(body)? {
                        return Ok((h.status, decoded));
                    }
                }
                _ => {}
            }
        }
        let n = stream.read(&mut chunk).await.context("read")?;
        if n == 0 {
            return match head {
                Some(Head {
                    status,
                    len,
                    framing: Framing::UntilClose,
                }) => Ok((status, buf[len..].to_vec())),
                _ => Err(anyhow::anyhow!(
                    "connection closed before full response ({} bytes read)",
                    buf.len()
                )),
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// A parsed response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    status: u16,
    /// Bytes of the head, including the blank line.
    len: usize,
    framing: Framing,
}

/// Parses the response head once it is complete in `buf`.
fn parse_head(buf: &[u8]) -> Result<Option<Head>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&buf[..end]).context("response head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut framing = Framing::UntilClose;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            framing = Framing::Chunked;
        } else if name.eq_ignore_ascii_case("content-length") && framing != Framing::Chunked {
            framing = Framing::Length(
                value
                    .parse()
                    .with_context(|| format!("bad content-length {value:?}"))?,
            );
        }
    }
    // 1xx, 204 and 304 have no body.
    if status / 100 == 1 || status == 204 || status == 304 {
        framing = Framing::Length(0);
    }
    Ok(Some(Head {
        status,
        len: end + 4,
        framing,
    }))
}

/// Decodes a chunked body; `None` while it is incomplete.
fn dechunk(mut body: &[u8]) -> Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = body.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_line = std::str::from_utf8(&body[..eol]).context("bad chunk size line")?;
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .with_context(|| format!("bad chunk size {size_line:?}"))?;
        body = &body[eol + 2..];
        if size == 0 {
            // Trailers (usually none) end with a blank line.
            return Ok(
                if body.starts_with(b"\r\n") || body.windows(4).any(|w| w == b"\r\n\r\n") {
                    Some(out)
                } else {
                    None
                },
            );
        }
        if body.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let s: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&s, 50.0), Some(50.0));
        assert_eq!(percentile(&s, 99.0), Some(99.0));
        assert_eq!(percentile(&s, 0.0), Some(1.0));
        assert_eq!(percentile(&[3.0], 99.0), Some(3.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn heads_and_chunks() -> Result<()> {
        let head = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello")?;
        assert_eq!(
            head,
            Some(Head {
                status: 200,
                len: 39,
                framing: Framing::Length(13)
            })
        );
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le")?, None);
        let head = parse_head(b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n")?;
        assert_eq!(head.map(|h| h.framing), Some(Framing::Chunked));
        assert_eq!(dechunk(b"5\r\nHello\r\n8\r\n, world!\r\n")?, None);
        assert_eq!(
            dechunk(b"5\r\nHello\r\n8\r\n, world!\r\n0\r\n\r\n")?,
            Some(b"Hello, world!".to_vec())
        );
        Ok(())
    }

    #[tokio::test]
    async fn raw_get_against_local_server() -> Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let server = tokio::spawn(async move {
            for reply in [
                "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, world!",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nd\r\nHello, world!\r\n0\r\n\r\n",
                "HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy",
            ] {
                let (mut sock, _) = listener.accept().await?;
                let mut req = [0u8; 1024];
                let _ = sock.read(&mut req).await?;
                sock.write_all(reply.as_bytes()).await?;
            }
            anyhow::Ok(())
        });
        assert!(timed_get(port, "/f1/").await? >= 0.0);
        assert!(timed_get(port, "/f1/").await? >= 0.0);
        assert!(timed_get(port, "/f1/").await.is_err());
        server.await??;
        Ok(())
    }
}
