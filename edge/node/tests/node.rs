//! End-to-end tests of an edge node: the real `outpost-edge` binary, fixture handlers, a local origin, a real HTTP client.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::convert::Infallible;
use std::io::Read;
use std::io::Write;
use std::net::SocketAddr;
use std::net::TcpListener;
use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use http_body_util::Full;
use hyper::body::Bytes;
use serde_json::Value;
use serde_json::json;

#[path = "node/control.rs"]
mod control;
#[path = "node/kv.rs"]
mod kv;
#[path = "node/typescript.rs"]
mod typescript;

/// A running `outpost-edge` process, killed on drop.
struct Node {
    child: Child,
    base: String,
    log: PathBuf,
    _dir: TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    /// Starts a node with `config` (TOML; `{FIXTURES}` and `{PORT}` are substituted).
    fn start(config: &str) -> Node {
        let dir = TempDir::new();
        let port = free_port();
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let config = config
            .replace("{FIXTURES}", &fixtures.display().to_string())
            .replace("{PORT}", &port.to_string());
        let config_path = dir.path.join("node.toml");
        std::fs::write(&config_path, config).unwrap();
        let log = dir.path.join("node.log");
        let child = Command::new(env!("CARGO_BIN_EXE_outpost-edge"))
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let node = Node {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        };
        wait_listening(port, "node", &node.log);
        node
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "outpost-node-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Waits (up to a minute) until a process listens on `port`; fails with its log.
fn wait_listening(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn get_json(url: &str) -> Value {
    let response = client().get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "GET {url}");
    response.json().await.unwrap()
}

/// A local origin server: answers `/cached` with a cacheable body and counts hits,
/// anything else with a body naming the path, method and the x-from header.
struct Origin {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

async fn start_origin() -> Origin {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let counter = counter.clone();
                        async move {
                            counter.fetch_add(1, Ordering::SeqCst);
                            let path = request.uri().path().to_string();
                            let from = request
                                .headers()
                                .get("x-from")
                                .map(|v| v.to_str().unwrap_or("").to_string())
                                .unwrap_or_default();
                            let mut response = hyper::Response::new(Full::new(Bytes::from(
                                format!("origin {} {path} from={from}", request.method()),
                            )));
                            if path == "/cached" {
                                response
                                    .headers_mut()
                                    .insert("cache-control", "public, max-age=60".parse().unwrap());
                            }
                            Ok::<_, Infallible>(response)
                        }
                    },
                );
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    Origin { addr, hits }
}

const WEB_CONFIG: &str = r#"
[server]
listen = "127.0.0.1:{PORT}"
threads = 2
max_body_bytes = 2097152

[[functions]]
name = "webapi"
main = "{FIXTURES}/webapi/index.js"
vars = { GREETING = "hi", COUNT = 3 }
secrets = { API_KEY = "s3cret" }

[[functions]]
name = "webapi-other"
main = "{FIXTURES}/webapi/index.js"

[[functions]]
name = "multi"
main = "{FIXTURES}/multi/index.js"

[[functions]]
name = "sw"
main = "{FIXTURES}/sw/index.js"

[[functions]]
name = "streaming"
main = "{FIXTURES}/streaming/index.js"

[[routes]]
path = "/multi"
function = "multi"

[[routes]]
host = "sw.example.com"
function = "sw"

[[routes]]
host = "other.example.com"
function = "webapi-other"

[[routes]]
path = "/stream/*"
function = "streaming"

[[routes]]
function = "webapi"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_api_keeps_responses_per_function_by_workers_rules() {
    let node = Node::start(WEB_CONFIG);
    let get = |path: &str| {
        let url = node.url(path);
        async move { get_json(&url).await }
    };
    let put = |query: &str| {
        let url = node.url(&format!("/cache/put?{query}"));
        async move {
            let response = client().get(&url).send().await.unwrap();
            assert_eq!(response.status(), 200, "{url}");
        }
    };

    assert_eq!(get("/cache/get?key=a").await, json!({"hit": false}));
    put("key=a&cc=max-age%3D60").await;
    // Two workers share the store; the fragment is not part of the key.
    for _ in 0..4 {
        assert_eq!(
            get("/cache/get?key=a").await,
            json!({"hit": true, "status": 200, "body": "body of a", "cacheStatus": "HIT", "stored": "yes"})
        );
    }
    // A matching If-None-Match gets 304 from the cache.
    assert_eq!(
        get("/cache/get?key=a&inm=W%2F%22v1%22").await,
        json!({"hit": true, "status": 304, "body": "", "cacheStatus": "HIT", "stored": "yes"})
    );
    // Another function on the node sees none of it.
    let other = client()
        .get(node.url("/cache/get?key=a"))
        .header("host", "other.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(other.json::<Value>().await.unwrap(), json!({"hit": false}));

    // What may not be stored is dropped without an error, as on Workers.
    put("key=nostore&cc=no-store").await;
    put("key=private&cc=private%2C%20max-age%3D60").await;
    put("key=cookie&cc=max-age%3D60&cookie=1").await;
    put("key=error&status=500").await;
    for key in ["nostore", "private", "cookie", "error"] {
        assert_eq!(
            get(&format!("/cache/get?key={key}")).await,
            json!({"hit": false}),
            "{key}"
        );
    }
    // Without Cache-Control a 404 is kept (the edge default, 3 min).
    put("key=missing&status=404").await;
    assert_eq!(get("/cache/get?key=missing").await["status"], 404);

    // Freshness is exact: max-age=1 is gone after a second.
    put("key=short&cc=max-age%3D1").await;
    assert_eq!(get("/cache/get?key=short").await["hit"], true);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(get("/cache/get?key=short").await, json!({"hit": false}));

    assert_eq!(get("/cache/delete?key=a").await, json!({"deleted": true}));
    assert_eq!(get("/cache/delete?key=a").await, json!({"deleted": false}));
    assert_eq!(get("/cache/get?key=a").await, json!({"hit": false}));

    assert_eq!(
        get("/cache/named").await,
        json!({"inDefault": false, "inNamed": "in named"})
    );
    assert_eq!(
        get("/cache/errors").await,
        json!({
            "post": "TypeError",
            "partial": "TypeError",
            "varyStar": "TypeError",
            "notResponse": "TypeError",
            "construct": "TypeError",
            "postMatch": true
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_apis_work_inside_handlers() {
    let origin = start_origin().await;
    let node = Node::start(WEB_CONFIG);

    assert_eq!(
        get_json(&node.url("/env")).await,
        json!({"greeting": "hi", "secret": "s3cret", "count": 3})
    );
    assert_eq!(
        get_json(&node.url("/url")).await,
        json!({"host": "example.com", "x": "1", "all": ["1", "3"], "id": "42"})
    );
    assert_eq!(
        get_json(&node.url("/encoding")).await,
        json!({"length": 6, "text": "héllo", "b64": "aGk=", "unb64": "hi"})
    );
    let crypto = get_json(&node.url("/crypto")).await;
    assert_eq!(
        crypto["sha256"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(crypto["randomLength"], 8);
    assert_eq!(crypto["hmacLength"], 32);
    assert_eq!(crypto["uuid"].as_str().unwrap().len(), 36);
    // Workers' additions: crypto.subtle.timingSafeEqual, scheduler.wait (+ postTask, yield), ctx.props.
    assert_eq!(
        get_json(&node.url("/workers-extras")).await,
        json!({
            "same": true,
            "differ": false,
            "views": true,
            "lengthError": "TypeError",
            "waitedEnough": true,
            "cancelled": "stopped",
            "posted": "posted",
            "props": true
        })
    );
    assert_eq!(
        get_json(&node.url("/clone")).await,
        json!({"same": true, "a": [1, 2], "time": 0, "m": "v"})
    );
    assert_eq!(
        get_json(&node.url("/timers")).await,
        json!({"order": ["microtask", "timeout"], "ticks": 3})
    );
    assert_eq!(
        get_json(&node.url("/abort")).await,
        json!({"aborted": true, "reason": "stop", "timedOut": true})
    );
    assert_eq!(
        get_json(&node.url("/compression")).await,
        json!({"smaller": true, "roundTrip": true})
    );
    assert_eq!(
        get_json(&node.url("/blob")).await,
        json!({"size": 3, "text": "abc", "type": "text/plain", "fileName": "f.txt", "slice": "bc"})
    );
    assert_eq!(
        get_json(&node.url("/stream-transform")).await,
        json!({"out": "AB"})
    );

    // Request bodies, status, repeated headers.
    let response = client()
        .post(node.url("/body"))
        .header("user-agent", "outpost-test")
        .body(r#"{"n":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let cookies: Vec<_> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert_eq!(response.headers()["x-one"], "1");
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"got": {"n": 1}, "method": "POST", "ua": "outpost-test"})
    );

    // multipart/form-data parsed by FormData.
    let boundary = "XBOUNDARYX";
    let form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nouter\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nfile body\r\n--{boundary}--\r\n"
    );
    let response = client()
        .post(node.url("/formdata"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"name": "outer", "fileName": "a.txt", "fileText": "file body"})
    );

    // fetch() subrequest to a local origin.
    let target = format!("http://{}/upstream", origin.addr);
    let sub = get_json(&node.url(&format!("/subrequest?target={target}"))).await;
    assert_eq!(
        sub,
        json!({"status": 200, "body": "origin GET /upstream from=outpost"})
    );

    // No escape hatches into the host.
    assert_eq!(
        get_json(&node.url("/escape")).await,
        json!({"deno": "undefined", "bootstrap": "undefined", "require": "undefined", "process": "undefined"})
    );

    // console output lands in the node's log, tagged with the function.
    assert_eq!(
        client()
            .get(node.url("/console"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "logged"
    );

    // The isolate is reused across requests: those of one connection run on one worker
    // thread, hence on one isolate (module state is per isolate, as on Workers).
    let connection = client();
    let hits = |body: Value| body["hits"].as_u64().unwrap();
    let first = connection.get(node.url("/counter")).send().await.unwrap();
    let first = hits(first.json().await.unwrap());
    let second = connection.get(node.url("/counter")).send().await.unwrap();
    assert_eq!(hits(second.json().await.unwrap()), first + 1);

    // ctx.waitUntil keeps work alive after the response.
    let response = connection.get(node.url("/waituntil")).send().await.unwrap();
    assert_eq!(
        response.text().await.unwrap(),
        "sent before waitUntil finished"
    );
    let waited = || async {
        let response = connection.get(node.url("/waited")).send().await.unwrap();
        response.json::<Value>().await.unwrap()
    };
    assert_eq!(
        waited().await,
        json!({"waited": 0}),
        "response was sent before the work finished"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(waited().await, json!({"waited": 1}));

    // Responses: a text body gets the Fetch spec's content type, bytes none; a status on
    // Response.json, and headers set after construction, are kept; a body the handler
    // already read cannot be sent.
    let text = client().get(node.url("/static-text")).send().await.unwrap();
    assert_eq!(
        text.headers()["content-type"],
        "text/plain;charset=UTF-8",
        "{text:?}"
    );
    assert_eq!(text.text().await.unwrap(), "plain");
    let bytes = client()
        .get(node.url("/static-bytes"))
        .send()
        .await
        .unwrap();
    assert!(bytes.headers().get("content-type").is_none(), "{bytes:?}");
    assert_eq!(bytes.text().await.unwrap(), "hi");
    let json = client().get(node.url("/json-status")).send().await.unwrap();
    assert_eq!(json.status(), 202);
    assert_eq!(json.headers()["content-type"], "application/json");
    assert_eq!(json.json::<Value>().await.unwrap(), json!({"made": true}));
    let after = client()
        .get(node.url("/headers-after"))
        .send()
        .await
        .unwrap();
    assert_eq!(after.headers()["x-extra"], "1");
    assert_eq!(after.headers()["content-type"], "text/plain;charset=UTF-8");
    assert_eq!(after.text().await.unwrap(), "with header");
    let read = client()
        .get(node.url("/already-read"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 500);
    assert!(
        read.text().await.unwrap().contains("invalid response"),
        "a consumed body is refused"
    );

    // Header values are byte strings: bytes that are not UTF-8 reach JS one per character.
    let latin = client()
        .get(node.url("/latin1"))
        .header(
            "x-latin",
            reqwest::header::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        latin.json::<Value>().await.unwrap(),
        json!({"codes": [99, 97, 102, 233]})
    );

    // Several ES modules importing each other; service-worker syntax routed by host.
    assert_eq!(
        client()
            .get(node.url("/multi"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "hello, modules!"
    );
    let sw = client()
        .get(node.url("/some/path"))
        .header("host", "sw.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(sw.text().await.unwrap(), "sw /some/path");

    let log = node.log_text();
    assert!(
        log.contains("log line from handler") && log.contains("function=\"webapi\"")
            || log.contains("function=webapi"),
        "{log}"
    );
    assert!(log.contains("error line from handler"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_flow_both_ways() {
    let node = Node::start(WEB_CONFIG);
    let response = client().get(node.url("/stream/out")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().get("content-length").is_none(),
        "streamed responses are chunked"
    );
    let mut chunks = 0;
    let mut body = String::new();
    let mut stream = response.bytes_stream();
    use futures::StreamExt;
    while let Some(chunk) = stream.next().await {
        chunks += 1;
        body.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    assert_eq!(body, "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n");
    assert!(
        chunks >= 2,
        "the body arrived in {chunks} piece(s), not streamed"
    );

    // A 1 MiB request body sent with chunked encoding, read by the handler as a stream.
    let reply = chunked_post(&node, "/stream/echo", 16, 65536);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with(r#"{"bytes":1048576}"#), "{reply}");

    // With a Content-Length: a large body is streamed, a small one read whole first; the
    // handler reads both the same way.
    for size in [1_048_576, 1000] {
        let echoed = client()
            .post(node.url("/stream/echo"))
            .body(vec![b'x'; size])
            .send()
            .await
            .unwrap();
        assert_eq!(echoed.status(), 200);
        assert_eq!(
            echoed.json::<Value>().await.unwrap(),
            json!({ "bytes": size })
        );
    }

    // Over the node's body limit: 413, by Content-Length and while streaming.
    // The node answers from Content-Length alone, before any body byte is sent.
    let mut stream = std::net::TcpStream::connect(node.base.trim_start_matches("http://")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let head = format!(
        "POST /stream/echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        3 * 1024 * 1024
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    let reply = chunked_post(&node, "/stream/echo", 48, 65536);
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
}

/// POSTs `count` chunks of `size` bytes with chunked transfer encoding over a raw
/// connection and returns the whole reply (the node closes it, or it is read to the end).
fn chunked_post(node: &Node, path: &str, count: usize, size: usize) -> String {
    let mut stream = std::net::TcpStream::connect(node.base.trim_start_matches("http://")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b'x'; size];
    for _ in 0..count {
        // The node may stop reading once it has answered 413; that is not a failure here.
        if stream
            .write_all(format!("{size:x}\r\n").as_bytes())
            .is_err()
            || stream.write_all(&chunk).is_err()
            || stream.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_interleave_on_one_isolate() {
    let node = Node::start(WEB_CONFIG);
    let started = Instant::now();
    let requests = (0..20).map(|_| {
        let url = node.url("/slow?ms=300");
        async move {
            client()
                .get(url)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    });
    let bodies = futures::future::join_all(requests).await;
    assert!(bodies.iter().all(|b| b == "slow done"));
    // Serialized, 20 requests of 300 ms would take 6 s; interleaved they take about one.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

const HOSTILE_CONFIG: &str = r#"
[server]
listen = "127.0.0.1:{PORT}"
threads = 1

[[functions]]
name = "hostile"
main = "{FIXTURES}/hostile/index.js"
limits = { cpu_ms = 50, wall_ms = 1500, heap_mb = 32, subrequests = 5 }

[[functions]]
name = "neighbour"
main = "{FIXTURES}/neighbour/index.js"

[[routes]]
path = "/neighbour"
function = "neighbour"

[[routes]]
function = "hostile"
"#;

/// Runs `attack` while a neighbour function on the same (single) worker thread keeps answering.
async fn attack_with_neighbour(node: &Node, path: &str) -> (u16, String, Duration) {
    let attack = {
        let url = node.url(path);
        tokio::spawn(async move {
            let started = Instant::now();
            let response = client().get(url).send().await.unwrap();
            (
                response.status().as_u16(),
                response.text().await.unwrap(),
                started.elapsed(),
            )
        })
    };
    let mut neighbour_ok = 0;
    while !attack.is_finished() {
        let response = client().get(node.url("/neighbour")).send().await.unwrap();
        assert_eq!(response.status(), 200, "neighbour failed during {path}");
        assert_eq!(response.text().await.unwrap(), "neighbour ok");
        neighbour_ok += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(neighbour_ok > 0);
    attack.await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_handlers_are_stopped_by_their_limits() {
    let node = Node::start(HOSTILE_CONFIG);

    let (status, body, elapsed) = attack_with_neighbour(&node, "/loop").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("CPU time limit") && body.contains("request id"),
        "{body}"
    );
    assert!(elapsed < Duration::from_secs(2), "loop ran for {elapsed:?}");

    let (status, body, _) = attack_with_neighbour(&node, "/alloc").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("memory limit") || body.contains("CPU time limit"),
        "{body}"
    );

    let (status, body, _) = attack_with_neighbour(&node, "/recurse").await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("RangeError"), "{body}");

    let (status, body, _) = attack_with_neighbour(&node, "/subrequests").await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("subrequest limit"), "{body}");

    let (status, body, elapsed) = attack_with_neighbour(&node, "/hang").await;
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("wall time limit"), "{body}");
    assert!(
        elapsed >= Duration::from_millis(1400) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );

    // The broken isolate was replaced: the function serves again.
    let response = client().get(node.url("/")).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "hostile ok");
    let log = node.log_text();
    assert!(
        log.contains("isolate retired"),
        "limit kills are logged:\n{log}"
    );
}

const BAD_INPUT_CONFIG: &str = r#"
[server]
listen = "127.0.0.1:{PORT}"
threads = 1
max_body_bytes = 1024

[[functions]]
name = "broken"
main = "{FIXTURES}/broken_syntax/index.js"

[[functions]]
name = "nodefault"
main = "{FIXTURES}/no_default/index.js"

[[functions]]
name = "notresponse"
main = "{FIXTURES}/not_response/index.js"

[[functions]]
name = "throws"
main = "{FIXTURES}/throws/index.js"

[[functions]]
name = "neighbour"
main = "{FIXTURES}/neighbour/index.js"

[[routes]]
path = "/broken"
function = "broken"

[[routes]]
path = "/nodefault"
function = "nodefault"

[[routes]]
path = "/notresponse"
function = "notresponse"

[[routes]]
path = "/throws"
function = "throws"

[[routes]]
path = "/ok/*"
function = "neighbour"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bundles_and_bad_requests_get_clear_errors() {
    let node = Node::start(BAD_INPUT_CONFIG);

    // Broken bundles are refused with file and line; the rest of the node serves.
    let response = client().get(node.url("/broken")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body = response.text().await.unwrap();
    assert!(
        body.contains("SyntaxError") && body.contains("index.js:3"),
        "{body}"
    );
    let response = client().get(node.url("/nodefault")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.text().await.unwrap().contains("no handler"));
    assert_eq!(
        client()
            .get(node.url("/ok/x"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "neighbour ok"
    );

    // A handler returning a non-Response.
    let response = client().get(node.url("/notresponse")).send().await.unwrap();
    assert_eq!(response.status(), 500);
    assert!(response.text().await.unwrap().contains("not a Response"));

    // An exception: 500 with a request id; the stack goes to the log, not the client.
    let response = client().get(node.url("/throws")).send().await.unwrap();
    assert_eq!(response.status(), 500);
    let request_id = response.headers()["x-outpost-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let body = response.text().await.unwrap();
    assert!(
        body.contains(&request_id) && !body.contains("secret detail"),
        "{body}"
    );
    let log = node.log_text();
    assert!(
        log.contains("secret detail") && log.contains(&request_id),
        "the stack is logged with the request id"
    );

    // No route: 404 with a clear body.
    let response = client().get(node.url("/nowhere")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert!(response.text().await.unwrap().contains("no route matches"));

    // Body over the limit: 413.
    let response = client()
        .post(node.url("/ok/x"))
        .body(vec![0u8; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);

    // Malformed HTTP: 400 from pingora.
    let mut stream = std::net::TcpStream::connect(node.base.trim_start_matches("http://")).unwrap();
    stream.write_all(b"NOT HTTP AT ALL\r\n\r\n").unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_send_traffic_to_functions_and_cached_origins() {
    let origin = start_origin().await;
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:{{PORT}}"
threads = 1

[[functions]]
name = "neighbour"
main = "{{FIXTURES}}/neighbour/index.js"

[[functions]]
name = "passthrough"
main = "{{FIXTURES}}/passthrough/index.js"

[[origins]]
name = "backend"
url = "http://{addr}"

[[routes]]
host = "*.fn.test"
path = "/api/*"
methods = ["GET"]
function = "neighbour"

[[routes]]
path = "/fallback"
function = "passthrough"
origin = "backend"

[[routes]]
host = "origin.test"
origin = "backend"
"#,
        addr = origin.addr
    );
    let node = Node::start(&config);
    let get =
        |host: &'static str, path: &str| client().get(node.url(path)).header("host", host).send();

    assert_eq!(
        get("a.fn.test", "/api/x")
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "neighbour ok"
    );
    assert_eq!(
        get("fn.test", "/api/x").await.unwrap().status(),
        404,
        "wildcard does not match the apex"
    );
    assert_eq!(get("a.fn.test", "/apix").await.unwrap().status(), 404);
    let post = client()
        .post(node.url("/api/x"))
        .header("host", "a.fn.test")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 404, "method filter");

    // Origin proxying with caching by Cache-Control.
    let first = get("origin.test", "/cached").await.unwrap();
    assert_eq!(first.headers()["x-outpost-cache"], "MISS");
    assert_eq!(first.text().await.unwrap(), "origin GET /cached from=");
    let second = get("origin.test", "/cached").await.unwrap();
    assert_eq!(second.headers()["x-outpost-cache"], "HIT");
    assert_eq!(second.text().await.unwrap(), "origin GET /cached from=");
    let hits_after_cache = origin.hits.load(Ordering::SeqCst);
    assert_eq!(
        hits_after_cache, 1,
        "the second request was served from cache"
    );
    let uncached = get("origin.test", "/plain").await.unwrap();
    assert_eq!(uncached.text().await.unwrap(), "origin GET /plain from=");
    get("origin.test", "/plain").await.unwrap();
    assert_eq!(
        origin.hits.load(Ordering::SeqCst),
        3,
        "responses without Cache-Control are not cached"
    );

    // ctx.passThroughOnException(): the route's origin answers when the handler throws.
    let response = get("any.test", "/fallback").await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "origin GET /fallback from=");
}

#[test]
fn outpost_dev_serves_a_handler_file() {
    let port = free_port();
    let handler = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/multi/index.js");
    let mut child = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args([
            "dev",
            &handler.display().to_string(),
            "--port",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            stream
                .write_all(
                    b"GET /anything HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                )
                .unwrap();
            let mut reply = String::new();
            stream.read_to_string(&mut reply).unwrap();
            break reply;
        }
        assert!(Instant::now() < deadline, "outpost dev did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.ends_with("hello, modules!"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_requests_in_flight_finish_and_a_taken_port_is_refused() {
    // A request in flight when the node is told to terminate still gets its answer, and
    // ctx.waitUntil work of an answered request (here outlasting every request) still
    // runs to its end before the node exits.
    let mut node = Node::start(WEB_CONFIG);
    let background = client().get(node.url("/background")).send().await.unwrap();
    assert_eq!(
        background.text().await.unwrap(),
        "answered before the background work"
    );
    let slow = {
        let url = node.url("/slow?ms=600");
        tokio::spawn(async move { client().get(url).send().await?.text().await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let killed = Command::new("kill")
        .args(["-TERM", &node.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(slow.await.unwrap().unwrap(), "slow done");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = node.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the node did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let log = node.log_text();
    assert!(status.success(), "{status}; log:\n{log}");
    assert!(log.contains("background work finished"), "{log}");

    // Another process holds the port: the node says so and exits instead of sharing it.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_outpost-edge"))
        .args(["--listen", &addr.to_string()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}
