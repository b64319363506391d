//! Control plane end to end: control (in-process, real QUIC + mutual TLS + SQLite), three `outpost-edge` processes following it, and the `outpost` CLI deploying to them.

use std::net::IpAddr;
use std::net::Ipv4Addr;
use std::process::Output;

use outpost_control::InitInfo;
use outpost_control::RunningControl;
use outpost_control::ServeConfig;

use super::*;

/// An `outpost-edge` process following control.
pub(super) struct ControlledNode {
    child: Child,
    port: u16,
    log: PathBuf,
    data_dir: PathBuf,
    name: String,
}

impl ControlledNode {
    pub(super) fn start(
        name: &str,
        quic: SocketAddr,
        token: Option<&str>,
        data_dir: &Path,
    ) -> ControlledNode {
        ControlledNode::start_with(name, quic, token, data_dir, None)
    }

    /// [`ControlledNode::start`] with a node config file (its `[kv]` section applies).
    pub(super) fn start_with(
        name: &str,
        quic: SocketAddr,
        token: Option<&str>,
        data_dir: &Path,
        config: Option<&Path>,
    ) -> ControlledNode {
        let port = free_port();
        let log = data_dir.with_extension("log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_outpost-edge"));
        command
            .arg("--control")
            .arg(quic.to_string())
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--name")
            .arg(name)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            );
        if let Some(token) = token {
            command.arg("--join-token").arg(token);
        }
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let node = ControlledNode {
            child: command.spawn().unwrap(),
            port,
            log,
            data_dir: data_dir.to_path_buf(),
            name: name.to_string(),
        };
        wait_listening(port, &format!("node {name}"), &node.log);
        node
    }

    fn restart(mut self, quic: SocketAddr) -> ControlledNode {
        let _ = self.child.kill();
        let _ = self.child.wait();
        ControlledNode::start(&self.name.clone(), quic, None, &self.data_dir.clone())
    }

    pub(super) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub(super) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ControlledNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the `outpost` CLI against control.
pub(super) async fn outpost(
    api: SocketAddr,
    token: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_outpost"));
    command
        .args(args)
        .env("OUTPOST_CONTROL_URL", format!("http://{api}"))
        .env("OUTPOST_TOKEN", token)
        .env(
            "XDG_CONFIG_HOME",
            std::env::temp_dir().join("outpost-no-config"),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let stdin = stdin.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

pub(super) fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Writes a project folder whose handler answers `{body} {GREETING} secret={TOKEN set?}`.
fn project(dir: &Path, body: &str) -> String {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("outpost.toml"),
        "name = \"greet\"\nmain = \"index.js\"\n\n[vars]\nGREETING = \"hello\"\n\n[[routes]]\npath = \"/*\"\nfunction = \"greet\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("index.js"),
        format!(
            "export default {{ fetch(request, env) {{ return new Response(`{body} ${{env.GREETING}} secret=${{env.TOKEN === 's3cret'}}`); }} }};\n"
        ),
    )
    .unwrap();
    dir.display().to_string()
}

async fn body_from(url: &str, from: Option<IpAddr>) -> String {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
    if let Some(ip) = from {
        builder = builder.local_address(ip);
    }
    let response = builder.build().unwrap().get(url).send().await.unwrap();
    response.text().await.unwrap()
}

/// Waits until every node answers with a body starting with `prefix`.
async fn until_all_serve(nodes: &[&ControlledNode], prefix: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for node in nodes {
        loop {
            let body = body_from(&node.url("/"), None).await;
            if body.starts_with(prefix) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} answers {body:?}, not {prefix:?}; log:\n{}",
                node.name,
                node.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Waits until control lists `count` connected nodes.
pub(super) async fn until_connected(api: SocketAddr, token: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let nodes_out = outpost(api, token, &["nodes", "--json"], None).await;
        let listed: Value = serde_json::from_slice(&nodes_out.stdout).unwrap_or(Value::Null);
        let connected = listed.as_array().map_or(0, |all| {
            all.iter().filter(|n| n["connected"] == true).count()
        });
        if connected == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nodes did not connect: {}",
            text(&nodes_out)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Initialises control in `<parent>/control` and starts it on ephemeral ports; returns
/// its data dir, what `init` printed, and the running service.
pub(super) async fn init_control(parent: &Path) -> (PathBuf, InitInfo, RunningControl) {
    let dir = parent.join("control");
    let init = outpost_control::init(&dir).unwrap();
    let control = serve_control(
        &dir,
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await;
    (dir, init, control)
}

/// Starts control on `dir` with these addresses (a restart keeps the nodes' address).
pub(super) async fn serve_control(dir: &Path, api: SocketAddr, quic: SocketAddr) -> RunningControl {
    outpost_control::start(ServeConfig {
        data_dir: dir.to_path_buf(),
        api_listen: api,
        quic_listen: quic,
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_deploys_to_every_node_and_nodes_survive_without_it() {
    let dir = TempDir::new();
    let (control_dir, init, control) = init_control(&dir.path).await;
    let token = init.admin_token.clone();
    let (api, quic) = (control.api_addr(), control.quic_addr());

    // Three nodes join with one-time tokens.
    let mut tokens = vec![init.join_token.clone()];
    for _ in 0..2 {
        tokens.push(outpost_control::create_join_token(&control_dir).unwrap());
    }
    let mut nodes: Vec<ControlledNode> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            ControlledNode::start(
                &format!("pop-{i}"),
                quic,
                Some(t),
                &dir.path.join(format!("node-{i}")),
            )
        })
        .collect();
    until_connected(api, &token, 3).await;

    // deploy: every node serves v1 as soon as the command returns.
    let v1 = project(&dir.path.join("v1"), "v1");
    let deployed = outpost(api, &token, &["deploy", &v1, "--json"], None).await;
    assert!(deployed.status.success(), "{}", text(&deployed));
    let report: Value = serde_json::from_slice(&deployed.stdout).unwrap();
    assert_eq!(report["nodes_applied"], 3, "{report}");
    for node in &nodes {
        assert_eq!(
            body_from(&node.url("/"), None).await,
            "v1 hello secret=false"
        );
    }

    // secrets reach the handler, never the API or the logs.
    let put = outpost(
        api,
        &token,
        &["secret", "put", "greet", "TOKEN"],
        Some("s3cret\n"),
    )
    .await;
    assert!(put.status.success(), "{}", text(&put));
    until_all_serve(&nodes.iter().collect::<Vec<_>>(), "v1 hello secret=true").await;
    for path in [
        "/v1/functions/greet",
        "/v1/functions/greet/secrets",
        "/v1/functions/greet/versions",
        "/v1/routes",
        "/v1/nodes",
        "/v1/status",
    ] {
        let body = client()
            .get(format!("http://{api}{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!body.contains("s3cret"), "{path} leaks the secret: {body}");
    }
    let listed = outpost(api, &token, &["secret", "list", "greet"], None).await;
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("TOKEN"),
        "{}",
        text(&listed)
    );
    let unauthorized = client()
        .get(format!("http://{api}/v1/status"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    let unknown = outpost(api, &token, &["versions", "nope"], None).await;
    assert_eq!(unknown.status.code(), Some(1), "{}", text(&unknown));

    // KV through the CLI: a namespace, a key with a `/`, export/import, a missing key.
    let kv = |args: &'static [&'static str], stdin: Option<&'static str>| {
        outpost(api, &token, args, stdin)
    };
    for args in [
        &["kv", "namespace", "create", "sessions"][..],
        &["kv", "put", "sessions", "user/1", "hello"],
        &[
            "kv",
            "put",
            "sessions",
            "user/2",
            "--ttl",
            "3600",
            "--metadata",
            "{\"plan\":\"pro\"}",
        ],
    ] {
        let output = kv(args, Some("from stdin")).await;
        assert!(output.status.success(), "{args:?}: {}", text(&output));
    }
    let got = kv(&["kv", "get", "sessions", "user/1"], None).await;
    assert_eq!(
        String::from_utf8_lossy(&got.stdout),
        "hello",
        "{}",
        text(&got)
    );
    let got = kv(&["kv", "get", "sessions", "user/2"], None).await;
    assert_eq!(
        String::from_utf8_lossy(&got.stdout),
        "from stdin",
        "{}",
        text(&got)
    );
    let listed = kv(
        &["kv", "list", "sessions", "--prefix", "user/", "--json"],
        None,
    )
    .await;
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let names: Vec<&str> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["user/1", "user/2"], "{listed}");
    assert_eq!(
        listed["keys"][1]["metadata"],
        json!({ "plan": "pro" }),
        "{listed}"
    );
    let missing = kv(&["kv", "get", "sessions", "nope"], None).await;
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));

    // v2, then rollback (instant, no upload) to v1.
    let v2 = project(&dir.path.join("v2"), "v2");
    let deployed = outpost(api, &token, &["deploy", &v2], None).await;
    assert!(deployed.status.success(), "{}", text(&deployed));
    for node in &nodes {
        assert!(body_from(&node.url("/"), None).await.starts_with("v2 "));
    }
    let rolled = outpost(api, &token, &["rollback", "greet"], None).await;
    assert!(rolled.status.success(), "{}", text(&rolled));
    until_all_serve(&nodes.iter().collect::<Vec<_>>(), "v1 ").await;
    let versions = outpost(api, &token, &["versions", "greet", "--json"], None).await;
    let versions: Value = serde_json::from_slice(&versions.stdout).unwrap();
    assert_eq!(versions.as_array().map(Vec::len), Some(2), "{versions}");

    // Gradual deploy: 30% of clients (by IP) get v3, each client always the same one.
    let v3 = project(&dir.path.join("v3"), "v3");
    let deployed = outpost(api, &token, &["deploy", &v3, "--percent", "30"], None).await;
    assert!(deployed.status.success(), "{}", text(&deployed));
    let clients: Vec<IpAddr> = (2..=201u8)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 1, i)))
        .collect();
    let mut on_new = 0;
    for ip in &clients {
        let first = body_from(&nodes[0].url("/"), Some(*ip)).await;
        let again = body_from(&nodes[1].url("/"), Some(*ip)).await;
        assert_eq!(
            first, again,
            "client {ip} must stick to one version on every node"
        );
        if first.starts_with("v3 ") {
            on_new += 1;
        } else {
            assert!(first.starts_with("v1 "), "{first}");
        }
    }
    // 200 clients at 30%: expect 60; the hash spreads them within ±20 of that.
    assert!(
        (40..=80).contains(&on_new),
        "{on_new} of 200 clients on the 30% version"
    );
    let promoted = outpost(api, &token, &["promote", "greet"], None).await;
    assert!(promoted.status.success(), "{}", text(&promoted));
    until_all_serve(&nodes.iter().collect::<Vec<_>>(), "v3 ").await;

    // A bundle that does not boot is NACKed by the nodes, reported, and rolled back;
    // v3 keeps serving everywhere.
    let broken = dir.path.join("broken");
    project(&broken, "v4");
    std::fs::write(broken.join("index.js"), "export default { fetch( {\n").unwrap();
    let refused = outpost(
        api,
        &token,
        &["deploy", &broken.display().to_string()],
        None,
    )
    .await;
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("SyntaxError") && stderr.contains("index.js"),
        "{stderr}"
    );
    assert!(stderr.contains("rolled back to v3"), "{stderr}");
    for node in &nodes {
        assert!(body_from(&node.url("/"), None).await.starts_with("v3 "));
    }

    // Control down: nodes keep serving, and a node restarted meanwhile serves from disk.
    control.shutdown().await;
    for node in &nodes {
        assert!(body_from(&node.url("/"), None).await.starts_with("v3 "));
    }
    let restarted = nodes.remove(2).restart(quic);
    assert_eq!(
        body_from(&restarted.url("/"), None).await,
        "v3 hello secret=true"
    );
    nodes.push(restarted);
    for node in &nodes {
        assert!(
            !node.log_text().contains("s3cret"),
            "{} logged the secret",
            node.name
        );
    }

    // Control restarted on the same data dir loses nothing; nodes reconnect and follow.
    let control = serve_control(&control_dir, api, quic).await;
    let status = outpost(api, &token, &["status", "--json"], None).await;
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["functions"], 1, "{status}");
    assert_eq!(status["nodes"], 3, "{status}");
    let v5 = project(&dir.path.join("v5"), "v5");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let deployed = outpost(
            api,
            &token,
            &["deploy", &v5, "--timeout", "5", "--json"],
            None,
        )
        .await;
        let report: Value = serde_json::from_slice(&deployed.stdout).unwrap_or(Value::Null);
        if deployed.status.success() && report["nodes_applied"] == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nodes did not come back: {}",
            text(&deployed)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    until_all_serve(&nodes.iter().collect::<Vec<_>>(), "v5 ").await;
    control.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_never_joined_is_refused_a_start() {
    let dir = TempDir::new();
    let output = Command::new(env!("CARGO_BIN_EXE_outpost-edge"))
        .args(["--control", "127.0.0.1:9", "--data-dir"])
        .arg(dir.path.join("node"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--join-token"), "{stderr}");
}
