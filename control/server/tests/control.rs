//! Control in-process on port 0: the admin API through reqwest, and nodes through quinn with `outpost_proto::tls`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use anyhow::bail;
use anyhow::ensure;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use outpost_control::InitInfo;
use outpost_control::RunningControl;
use outpost_control::ServeConfig;
use outpost_proto::BundleArchive;
use outpost_proto::BundleHash;
use outpost_proto::CONTROL_SERVER_NAME;
use outpost_proto::KvBinding;
use outpost_proto::Snapshot;
use outpost_proto::api::KV_EXPIRATION_HEADER;
use outpost_proto::api::KV_METADATA_HEADER;
use outpost_proto::api::KvBulkEntry;
use outpost_proto::api::KvKeyList;
use outpost_proto::api::KvNamespaceChanged;
use outpost_proto::api::KvNamespaceInfo;
use outpost_proto::api::KvWritten;
use outpost_proto::api::NodeInfo;
use outpost_proto::api::Published;
use outpost_proto::api::Status;
use outpost_proto::kv;
use outpost_proto::tls;
use outpost_proto::wire;
use outpost_proto::wire::ControlMessage;
use outpost_proto::wire::NodeMessage;
use outpost_proto::wire::Request;
use outpost_proto::wire::Response;
use reqwest::Method;
use reqwest::StatusCode;
use serde::Serialize;
use serde_json::Value;
use serde_json::json;

const SECRET_VALUE: &str = "hunter2-do-not-print";

/// A fresh data directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        TempDir(std::env::temp_dir().join(format!(
            "outpost-control-{label}-{}-{}",
            std::process::id(),
            hex::encode(rand::random::<[u8; 6]>())
        )))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Control's log lines, shown with a failing test's output.
fn capture_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("outpost::control=debug")
        .with_test_writer()
        .try_init();
}

async fn start(dir: &TempDir) -> anyhow::Result<RunningControl> {
    let local: SocketAddr = "127.0.0.1:0".parse()?;
    start_at(dir, local, local).await
}

async fn start_at(
    dir: &TempDir,
    api_listen: SocketAddr,
    quic_listen: SocketAddr,
) -> anyhow::Result<RunningControl> {
    Ok(outpost_control::start(ServeConfig {
        data_dir: dir.0.clone(),
        api_listen,
        quic_listen,
    })
    .await?)
}

/// The admin API with a token.
struct Admin {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    fn new(control: &RunningControl, token: &str) -> Admin {
        Admin {
            http: reqwest::Client::new(),
            base: format!("http://{}", control.api_addr()),
            token: token.to_owned(),
        }
    }

    /// A request with extra headers: status, response headers, body bytes.
    async fn raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<(StatusCode, reqwest::header::HeaderMap, Vec<u8>)> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        Ok((status, headers, response.bytes().await?.to_vec()))
    }

    /// A request's status and body text.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<(StatusCode, String)> {
        let (status, _, body) = self.raw(method, path, &[], body).await?;
        Ok((status, String::from_utf8(body)?))
    }

    /// The status of a request without a body.
    async fn code(&self, method: Method, path: &str) -> anyhow::Result<StatusCode> {
        Ok(self.raw(method, path, &[], None).await?.0)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let body = body.map(|body| body.to_string().into_bytes());
        let (status, text) = self.send(method, path, body).await?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).with_context(|| format!("{path}: {text}"))?
        };
        Ok((status, value))
    }

    /// A call that must answer 200; its body parsed as `T`.
    async fn ok<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<T> {
        let (status, value) = self.call(method.clone(), path, body).await?;
        ensure!(
            status == StatusCode::OK,
            "{method} {path}: {status} {value}"
        );
        Ok(serde_json::from_value(value)?)
    }

    /// A `GET` that must answer 200; its body parsed as `T`.
    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.ok(Method::GET, path, None).await
    }

    /// A `POST` that must answer 200; its body parsed as `T`.
    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<T> {
        self.ok(Method::POST, path, body).await
    }

    /// A call that must fail with `expected`; returns the `ApiError` message.
    async fn fails(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        expected: StatusCode,
    ) -> anyhow::Result<String> {
        let (status, value) = self.call(method.clone(), path, body).await?;
        ensure!(
            status == expected,
            "{method} {path}: expected {expected}, got {status} {value}"
        );
        value["error"]
            .as_str()
            .map(str::to_owned)
            .context("error body without `error`")
    }

    async fn status(&self) -> anyhow::Result<Status> {
        self.get("/v1/status").await
    }

    /// `PUT /v1/bundles/{hash}`: status and body text.
    async fn put_bundle(
        &self,
        hash: impl std::fmt::Display,
        bytes: &[u8],
    ) -> anyhow::Result<(StatusCode, String)> {
        let path = format!("/v1/bundles/{hash}");
        self.send(Method::PUT, &path, Some(bytes.to_vec())).await
    }

    async fn upload(&self, source: &str) -> anyhow::Result<(BundleHash, Vec<u8>)> {
        let bytes = archive(source);
        let hash = BundleHash::of(&bytes);
        let (status, text) = self.put_bundle(&hash, &bytes).await?;
        ensure!(status == StatusCode::OK, "upload: {status} {text}");
        Ok((hash, bytes))
    }

    async fn deploy(&self, function: &str, body: Value) -> anyhow::Result<Published> {
        let path = format!("/v1/functions/{function}/versions");
        self.post(&path, Some(body)).await
    }

    /// A deploy that must fail with `expected`; returns the `ApiError` message.
    async fn deploy_fails(
        &self,
        function: &str,
        body: Value,
        expected: StatusCode,
    ) -> anyhow::Result<String> {
        let path = format!("/v1/functions/{function}/versions");
        self.fails(Method::POST, &path, Some(body), expected).await
    }

    async fn create_namespace(&self, name: &str) -> anyhow::Result<KvNamespaceChanged> {
        let body = json!({ "name": name });
        self.post("/v1/kv/namespaces", Some(body)).await
    }

    /// `PUT` a KV value: the status and the `ApiError` message (or the body).
    async fn put_value(
        &self,
        path: &str,
        headers: &[(&str, String)],
        value: &[u8],
    ) -> anyhow::Result<(StatusCode, String)> {
        let (status, _, body) = self
            .raw(Method::PUT, path, headers, Some(value.to_vec()))
            .await?;
        let error = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|value| value["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        Ok((status, error))
    }

    /// `PUT` a KV value that must be stored.
    async fn put_value_ok(&self, path: &str, value: &[u8]) -> anyhow::Result<()> {
        let (status, error) = self.put_value(path, &[], value).await?;
        ensure!(status == StatusCode::OK, "PUT {path}: {status} {error}");
        Ok(())
    }
}

fn archive(source: &str) -> Vec<u8> {
    BundleArchive {
        main: "index.js".into(),
        modules: BTreeMap::from([("index.js".to_owned(), source.to_owned())]),
    }
    .to_bytes()
}

fn live(published: &Published) -> Vec<(u64, u8)> {
    published
        .live
        .iter()
        .map(|live| (live.version, live.percent))
        .collect()
}

fn client_endpoint() -> anyhow::Result<quinn::Endpoint> {
    Ok(quinn::Endpoint::client("127.0.0.1:0".parse()?)?)
}

/// What a node keeps after joining.
struct Identity {
    node_id: String,
    key_pem: String,
    cert_pem: String,
    ca_pem: String,
}

/// A connection without a certificate, trusting the CA the join token pins.
async fn connect_anonymously(addr: SocketAddr, token: &str) -> anyhow::Result<quinn::Connection> {
    let parts = tls::parse_join_token(token)?;
    let config = tls::join_client_config(&parts.ca_sha256)?;
    Ok(client_endpoint()?
        .connect_with(config, addr, CONTROL_SERVER_NAME)?
        .await?)
}

/// Sends a join request on a connection without a certificate; returns the answer and
/// the key the CSR was made for.
async fn join(addr: SocketAddr, token: &str, name: &str) -> anyhow::Result<(Response, String)> {
    let connection = connect_anonymously(addr, token).await?;
    let key = tls::new_node_key(name)?;
    let join = Request::Join {
        token: token.to_owned(),
        name: name.to_owned(),
        csr_pem: key.csr_pem.clone(),
    };
    let (response, _) = ask(&connection, &join, None).await?;
    connection.close(0u32.into(), b"done");
    if let Response::Joined { ca_pem, .. } = &response {
        ensure!(
            tls::ca_sha256(ca_pem)? == tls::parse_join_token(token)?.ca_sha256,
            "CA differs from the pin"
        );
    }
    Ok((response, key.key_pem))
}

async fn join_ok(addr: SocketAddr, token: &str, name: &str) -> anyhow::Result<Identity> {
    match join(addr, token, name).await? {
        (
            Response::Joined {
                node_id,
                cert_pem,
                ca_pem,
            },
            key_pem,
        ) => Ok(Identity {
            node_id,
            key_pem,
            cert_pem,
            ca_pem,
        }),
        (other, _) => bail!("join refused: {other:?}"),
    }
}

async fn connect(addr: SocketAddr, identity: &Identity) -> anyhow::Result<quinn::Connection> {
    let config = tls::node_client_config(&identity.ca_pem, &identity.cert_pem, &identity.key_pem)?;
    Ok(client_endpoint()?
        .connect_with(config, addr, CONTROL_SERVER_NAME)?
        .await?)
}

/// A node that joins with `token`, connects with its certificate and opens its sync
/// stream.
async fn join_and_sync(
    addr: SocketAddr,
    token: &str,
    name: &str,
) -> anyhow::Result<(Identity, quinn::Connection, Sync)> {
    let identity = join_ok(addr, token, name).await?;
    let connection = connect(addr, &identity).await?;
    let sync = Sync::open(&connection, None).await?;
    Ok((identity, connection, sync))
}

/// Sends one message (and, when given, one raw frame) on its own stream; returns the
/// answer and the raw frame that follows a bundle or a found KV entry.
async fn ask(
    connection: &quinn::Connection,
    message: &impl Serialize,
    value: Option<&[u8]>,
) -> anyhow::Result<(Response, Option<Vec<u8>>)> {
    let (mut send, mut recv) = connection.open_bi().await?;
    wire::write_message(&mut send, message).await?;
    if let Some(value) = value {
        wire::write_bytes(&mut send, value).await?;
    }
    let _ = send.finish();
    let response: Response = wire::read_message(&mut recv)
        .await?
        .context("no answer to the request")?;
    let value = match response {
        Response::Bundle | Response::KvEntry { found: true, .. } => {
            wire::read_bytes(&mut recv).await?
        }
        _ => None,
    };
    Ok((response, value))
}

/// Waits (at most `within`) until control closes `connection`, and checks it used `code`.
async fn closed_with(
    connection: &quinn::Connection,
    within: Duration,
    code: u32,
) -> anyhow::Result<()> {
    let closed = tokio::time::timeout(within, connection.closed()).await?;
    ensure!(
        matches!(&closed, quinn::ConnectionError::ApplicationClosed(close)
            if close.error_code == quinn::VarInt::from_u32(code)),
        "expected close code {code}: {closed:?}"
    );
    Ok(())
}

/// A node's sync stream.
struct Sync {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
}

impl Sync {
    async fn open(connection: &quinn::Connection, applied: Option<u64>) -> anyhow::Result<Sync> {
        let (mut send, recv) = connection.open_bi().await?;
        wire::write_message(
            &mut send,
            &NodeMessage::Hello {
                name: "pop-1".into(),
                applied,
            },
        )
        .await?;
        Ok(Sync { send, recv })
    }

    /// The next pushed snapshot, within a second.
    async fn next(&mut self) -> anyhow::Result<Snapshot> {
        match self.message().await? {
            ControlMessage::Snapshot { snapshot } => Ok(snapshot),
            other => bail!("expected a snapshot, got {other:?}"),
        }
    }

    /// The next pushed snapshot, ACKed.
    async fn next_acked(&mut self) -> anyhow::Result<Snapshot> {
        let snapshot = self.next().await?;
        self.ack(snapshot.version).await?;
        Ok(snapshot)
    }

    /// The next message control sends, within a second.
    async fn message(&mut self) -> anyhow::Result<ControlMessage> {
        let message: Option<ControlMessage> =
            tokio::time::timeout(Duration::from_secs(1), wire::read_message(&mut self.recv))
                .await
                .context("nothing pushed within a second")??;
        message.context("the sync stream ended")
    }

    /// The next KV invalidation, within a second.
    async fn invalidation(&mut self) -> anyhow::Result<(String, Vec<String>)> {
        match self.message().await? {
            ControlMessage::KvInvalidate { namespace, keys } => Ok((namespace, keys)),
            other => bail!("expected a KV invalidation, got {other:?}"),
        }
    }

    async fn reply(&mut self, message: NodeMessage) -> anyhow::Result<()> {
        Ok(wire::write_message(&mut self.send, &message).await?)
    }

    async fn ack(&mut self, version: u64) -> anyhow::Result<()> {
        self.reply(NodeMessage::Ack { version }).await
    }
}

/// Waits until `GET /v1/nodes` shows what `done` wants.
async fn wait_for_node(
    admin: &Admin,
    node_id: &str,
    done: impl Fn(&NodeInfo) -> bool,
) -> anyhow::Result<NodeInfo> {
    for _ in 0..100 {
        let nodes: Vec<NodeInfo> = admin.get("/v1/nodes").await?;
        if let Some(node) = nodes.into_iter().find(|node| node.id == node_id)
            && done(&node)
        {
            return Ok(node);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("node {node_id} never reached the expected state")
}

#[tokio::test]
async fn admin_api_deploys_splits_promotes_and_rolls_back() -> anyhow::Result<()> {
    capture_logs();
    let dir = TempDir::new("api");
    let InitInfo {
        admin_token,
        join_token,
    } = outpost_control::init(&dir.0)?;
    assert!(outpost_control::init(&dir.0).is_err(), "init twice");
    let control = start(&dir).await?;
    let admin = Admin::new(&control, &admin_token);

    // Authentication.
    let anonymous = reqwest::Client::new()
        .get(format!("{}/v1/status", admin.base))
        .send()
        .await?;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(anonymous.text().await?.contains("\"error\""));
    let wrong = Admin::new(&control, "not-the-token");
    wrong
        .fails(Method::GET, "/v1/functions", None, StatusCode::UNAUTHORIZED)
        .await?;
    assert_eq!(admin.status().await?.snapshot_version, 0);

    // Bundles: checked against their hash and shape, stored once.
    let bytes = archive("export default { fetch() { return new Response('v1') } }");
    let hash = BundleHash::of(&bytes);
    let other = BundleHash::of(b"other");
    let (status, text) = admin.put_bundle(&other, &bytes).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("hashes to"), "{text}");
    let (status, _) = admin.put_bundle("not-a-hash", &bytes).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let junk = b"{\"main\":\"x.js\",\"modules\":{}}".to_vec();
    let (status, _) = admin.put_bundle(BundleHash::of(&junk), &junk).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, stored) = admin.put_bundle(&hash, &bytes).await?;
    let stored: Value = serde_json::from_str(&stored)?;
    assert_eq!(stored["existed"], json!(false));
    let (_, again) = admin.put_bundle(&hash, &bytes).await?;
    assert!(again.contains("\"existed\":true"), "{again}");
    for (bundle, expected) in [(&hash, StatusCode::OK), (&other, StatusCode::NOT_FOUND)] {
        let path = format!("/v1/bundles/{bundle}");
        assert_eq!(admin.code(Method::HEAD, &path).await?, expected, "{path}");
    }
    let (v2, _) = admin
        .upload("export default { fetch() { return new Response('v2') } }")
        .await?;

    // Deploy refusals.
    let elsewhere = json!([{ "path": "/x/*", "function": "elsewhere" }]);
    for (function, body, expected) in [
        ("api", json!({ "bundle": other }), StatusCode::NOT_FOUND),
        (
            "api",
            json!({ "bundle": hash, "percent": 50 }),
            StatusCode::CONFLICT,
        ),
        (
            "bad.name",
            json!({ "bundle": hash }),
            StatusCode::BAD_REQUEST,
        ),
        (
            "api",
            json!({ "bundle": hash, "routes": elsewhere }),
            StatusCode::BAD_REQUEST,
        ),
        (
            "api",
            json!({ "bundle": hash, "unknown": 1 }),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        admin.deploy_fails(function, body, expected).await?;
    }

    // Deploy, split, promote, rollback.
    let published = admin
        .deploy(
            "api",
            json!({
                "bundle": hash,
                "vars": { "GREETING": "hi" },
                "routes": [
                    { "path": "/*", "function": "api" },
                    { "host": "example.com", "path": "/api/*", "function": "api" }
                ],
                "message": "first"
            }),
        )
        .await?;
    assert_eq!(
        (live(&published), published.snapshot_version),
        (vec![(1, 100)], 1)
    );
    let zero = json!({ "bundle": v2, "percent": 0 });
    admin
        .deploy_fails("api", zero, StatusCode::BAD_REQUEST)
        .await?;
    let split = admin
        .deploy("api", json!({ "bundle": v2, "percent": 10 }))
        .await?;
    assert_eq!(live(&split), [(2, 10), (1, 90)]);
    let promoted: Published = admin.post("/v1/functions/api/promote", None).await?;
    assert_eq!(live(&promoted), [(2, 100)]);
    admin
        .fails(
            Method::POST,
            "/v1/functions/api/promote",
            None,
            StatusCode::CONFLICT,
        )
        .await?;
    let rolled: Published = admin.post("/v1/functions/api/rollback", None).await?;
    assert_eq!(live(&rolled), [(1, 100)]);
    let to_2 = json!({ "version": 2 });
    let rolled: Published = admin.post("/v1/functions/api/rollback", Some(to_2)).await?;
    assert_eq!(live(&rolled), [(2, 100)]);
    assert_eq!(rolled.snapshot_version, 5);
    for (method, path, body) in [
        (
            Method::POST,
            "/v1/functions/api/rollback",
            Some(json!({ "version": 9 })),
        ),
        (Method::GET, "/v1/functions/nope", None),
        (Method::POST, "/v1/functions/nope/promote", None),
    ] {
        admin
            .fails(method, path, body, StatusCode::NOT_FOUND)
            .await?;
    }

    // Routes come back most specific first, with their owner.
    let routes: Value = admin.get("/v1/routes").await?;
    assert_eq!(routes[0]["owner"], json!("api"));
    assert_eq!(routes[0]["rule"]["host"], json!("example.com"));
    assert_eq!(routes[1]["rule"]["path"], json!("/*"));

    // Secrets: set, listed by name, never returned.
    for (path, expected) in [
        (
            "/v1/functions/api/secrets/not-valid",
            StatusCode::BAD_REQUEST,
        ),
        ("/v1/functions/nope/secrets/TOKEN", StatusCode::NOT_FOUND),
    ] {
        let body = json!({ "value": "x" });
        admin.fails(Method::PUT, path, Some(body), expected).await?;
    }
    let with_secret: Published = admin
        .ok(
            Method::PUT,
            "/v1/functions/api/secrets/TOKEN",
            Some(json!({ "value": SECRET_VALUE })),
        )
        .await?;
    assert_eq!(with_secret.snapshot_version, 6);
    let secrets: Value = admin.get("/v1/functions/api/secrets").await?;
    assert_eq!(secrets[0]["name"], json!("TOKEN"));
    let function: Value = admin.get("/v1/functions/api").await?;
    assert_eq!(function["secrets"], json!(["TOKEN"]));
    assert_eq!(function["versions"], json!(2));
    for path in [
        "/v1/status",
        "/v1/functions",
        "/v1/functions/api",
        "/v1/functions/api/versions",
        "/v1/functions/api/secrets",
        "/v1/routes",
        "/v1/nodes",
    ] {
        let (status, text) = admin.send(Method::GET, path, None).await?;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(!text.contains(SECRET_VALUE), "{path} shows a secret value");
    }
    let removed: Published = admin
        .ok(Method::DELETE, "/v1/functions/api/secrets/TOKEN", None)
        .await?;
    assert_eq!(removed.snapshot_version, 7);
    admin
        .fails(
            Method::DELETE,
            "/v1/functions/api/secrets/TOKEN",
            None,
            StatusCode::NOT_FOUND,
        )
        .await?;

    // Two functions may not declare the same origin: the snapshot check refuses it.
    let origin = json!([{ "name": "site", "url": "http://127.0.0.1:9" }]);
    admin
        .deploy("other", json!({ "bundle": hash, "origins": origin }))
        .await?;
    let refusal = admin
        .deploy_fails(
            "api",
            json!({ "bundle": hash, "origins": origin }),
            StatusCode::CONFLICT,
        )
        .await?;
    assert!(refusal.contains("\"site\" appears twice"), "{refusal}");
    let deleted: Published = admin
        .ok(Method::DELETE, "/v1/functions/other", None)
        .await?;
    assert!(deleted.live.is_empty());
    admin
        .fails(
            Method::GET,
            "/v1/functions/other",
            None,
            StatusCode::NOT_FOUND,
        )
        .await?;
    let functions: Value = admin.get("/v1/functions").await?;
    assert_eq!(functions.as_array().map(Vec::len), Some(1));

    // Join tokens pin the same CA as the first one.
    let token: Value = admin.post("/v1/join-tokens", None).await?;
    let made = tls::parse_join_token(token["token"].as_str().context("token")?)?;
    assert_eq!(
        made.ca_sha256,
        tls::parse_join_token(&join_token)?.ca_sha256
    );
    let from_disk = tls::parse_join_token(&outpost_control::create_join_token(&dir.0)?)?;
    assert_eq!(from_disk.ca_sha256, made.ca_sha256);
    assert_ne!(from_disk.secret, made.secret);

    control.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn nodes_join_sync_fetch_and_survive_a_restart() -> anyhow::Result<()> {
    capture_logs();
    let dir = TempDir::new("nodes");
    let init = outpost_control::init(&dir.0)?;
    let control = start(&dir).await?;
    let admin = Admin::new(&control, &init.admin_token);
    let (hash, bytes) = admin.upload("export default {}").await?;
    admin.deploy("api", json!({ "bundle": hash })).await?;
    admin
        .ok::<Published>(
            Method::PUT,
            "/v1/functions/api/secrets/TOKEN",
            Some(json!({ "value": SECRET_VALUE })),
        )
        .await?;

    // Join: the token works once.
    let quic = control.quic_addr();
    let identity = join_ok(quic, &init.join_token, "pop-1").await?;
    assert!(identity.node_id.starts_with("node-"));
    match join(quic, &init.join_token, "pop-2").await?.0 {
        Response::Error { message } => assert!(message.contains("join token"), "{message}"),
        other => bail!("second join with one token: {other:?}"),
    }

    // Sync: the current snapshot at once, then each new version within a second.
    let connection = connect(quic, &identity).await?;
    let mut sync = Sync::open(&connection, None).await?;
    let first = sync.next().await?;
    assert_eq!(first.version, 2);
    assert_eq!(
        first.functions[0].deployments[0]
            .secrets
            .0
            .get("TOKEN")
            .map(String::as_str),
        Some(SECRET_VALUE)
    );
    sync.ack(2).await?;
    let node = wait_for_node(&admin, &identity.node_id, |node| {
        node.applied_version == Some(2)
    })
    .await?;
    assert!(node.connected);
    assert_eq!(node.name, "pop-1");
    assert!(node.address.is_some());

    let (v2, _) = admin.upload("export default { v: 2 }").await?;
    let split = admin
        .deploy("api", json!({ "bundle": v2, "percent": 25 }))
        .await?;
    let pushed = sync.next().await?;
    assert_eq!(pushed.version, split.snapshot_version);
    assert_eq!(
        pushed.functions[0]
            .deployments
            .iter()
            .map(|d| (d.version, d.percent))
            .collect::<Vec<_>>(),
        [(2, 25), (1, 75)]
    );
    sync.reply(NodeMessage::Nack {
        version: pushed.version,
        error: "api v2: SyntaxError at index.js:1".into(),
    })
    .await?;
    let node = wait_for_node(&admin, &identity.node_id, |node| node.last_nack.is_some()).await?;
    assert_eq!(node.applied_version, Some(2));
    let nack = node.last_nack.context("nack")?;
    assert_eq!(nack.version, pushed.version);
    assert!(nack.error.contains("SyntaxError"));
    let status = admin.status().await?;
    assert_eq!(
        (status.nodes, status.nodes_connected, status.nodes_current),
        (1, 1, 0)
    );

    // Bundles by hash on their own stream.
    let fetched = ask(&connection, &Request::Bundle { hash: hash.clone() }, None).await?;
    assert_eq!(fetched, (Response::Bundle, Some(bytes)));
    let missing = Request::Bundle {
        hash: BundleHash::of(b"missing"),
    };
    let (answer, _) = ask(&connection, &missing, None).await?;
    assert!(matches!(answer, Response::Error { .. }), "{answer:?}");

    // Without a certificate, only a join is allowed.
    let anonymous = connect_anonymously(quic, &init.join_token).await?;
    let sneaky = NodeMessage::Hello {
        name: "sneaky".into(),
        applied: None,
    };
    let (answer, _) = ask(&anonymous, &sneaky, None).await?;
    assert!(matches!(answer, Response::Error { .. }), "{answer:?}");
    closed_with(&anonymous, Duration::from_secs(2), wire::close::PROTOCOL).await?;

    // A join client pinning another CA refuses control.
    let wrong_pin = client_endpoint()?
        .connect_with(
            tls::join_client_config(&"0".repeat(64))?,
            quic,
            CONTROL_SERVER_NAME,
        )?
        .await;
    assert!(wrong_pin.is_err());

    // A certificate from another CA cannot connect.
    let foreign_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut foreign_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    foreign_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let foreign_ca = foreign_params.self_signed(&foreign_key)?;
    let impostor_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut impostor_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    impostor_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let impostor = impostor_params.signed_by(&impostor_key, &foreign_ca, &foreign_key)?;
    let impostor = Identity {
        node_id: String::new(),
        key_pem: impostor_key.serialize_pem(),
        cert_pem: impostor.pem(),
        ca_pem: identity.ca_pem.clone(),
    };
    let attempt = tokio::time::timeout(Duration::from_secs(5), async {
        let connection = connect(quic, &impostor).await?;
        let mut sync = Sync::open(&connection, None).await?;
        sync.next().await
    })
    .await?;
    assert!(attempt.is_err(), "a foreign certificate got a snapshot");

    // Shutdown closes node connections at once.
    let (api_addr, quic_addr) = (control.api_addr(), control.quic_addr());
    control.shutdown().await;
    closed_with(&connection, Duration::from_secs(1), wire::close::SHUTDOWN).await?;

    // Restarted on the same directory and addresses: same snapshot, functions and nodes.
    let control = start_at(&dir, api_addr, quic_addr).await?;
    let admin = Admin::new(&control, &init.admin_token);
    let status = admin.status().await?;
    assert_eq!(status.snapshot_version, split.snapshot_version);
    assert_eq!(
        (status.functions, status.nodes, status.nodes_connected),
        (1, 1, 0)
    );
    let function: Published = admin.post("/v1/functions/api/promote", None).await?;
    assert_eq!(live(&function), [(2, 100)]);
    let nodes: Vec<NodeInfo> = admin.get("/v1/nodes").await?;
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].applied_version, Some(2));

    // The node reconnects with its certificate; it is only sent what it lacks.
    let connection = connect(control.quic_addr(), &identity).await?;
    let mut sync = Sync::open(&connection, Some(function.snapshot_version)).await?;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), wire::read_bytes(&mut sync.recv))
            .await
            .is_err(),
        "control pushed a snapshot the node already has"
    );
    let rolled: Published = admin.post("/v1/functions/api/rollback", None).await?;
    assert_eq!(sync.next_acked().await?.version, rolled.snapshot_version);
    let node = wait_for_node(&admin, &identity.node_id, |node| {
        node.applied_version == Some(rolled.snapshot_version)
    })
    .await?;
    assert!(node.connected && node.last_nack.is_none());

    // A revoked node's certificate is closed out as unknown.
    connection.close(0u32.into(), b"bye");
    outpost_control::revoke_node(&dir.0, &identity.node_id)?;
    let connection = connect(control.quic_addr(), &identity).await?;
    closed_with(
        &connection,
        Duration::from_secs(2),
        wire::close::UNKNOWN_NODE,
    )
    .await?;
    control.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_nodes_follow_every_publish() -> anyhow::Result<()> {
    capture_logs();
    const NODES: usize = 100;
    let dir = TempDir::new("fleet");
    let init = outpost_control::init(&dir.0)?;
    let control = start(&dir).await?;
    let admin = Admin::new(&control, &init.admin_token);
    let (hash, _) = admin.upload("export default {}").await?;
    admin.deploy("api", json!({ "bundle": hash })).await?;

    let quic = control.quic_addr();
    let mut syncs = Vec::with_capacity(NODES);
    let mut connections = Vec::with_capacity(NODES);
    for i in 0..NODES {
        let token = outpost_control::create_join_token(&dir.0)?;
        let (_, connection, mut sync) = join_and_sync(quic, &token, &format!("pop-{i}")).await?;
        sync.next_acked().await?;
        syncs.push(sync);
        connections.push(connection);
    }

    // One publish reaches every node; every ACK is recorded.
    let (v2, _) = admin.upload("export default { v: 2 }").await?;
    let published = admin.deploy("api", json!({ "bundle": v2 })).await?;
    // Control pushes to all at once; reading them one after another finds each waiting.
    for sync in &mut syncs {
        assert_eq!(sync.next_acked().await?.version, published.snapshot_version);
    }
    for _ in 0..250 {
        let status = admin.status().await?;
        if status.nodes_current == NODES {
            assert_eq!(status.nodes_connected, NODES);
            control.shutdown().await;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("not every node's ACK was recorded")
}

// ---- KV -------------------------------------------------------------------------------------

/// Now, Unix seconds.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// Every key of a namespace through `GET /v1/kv/{ns}/keys`, following cursors.
async fn list_all(
    admin: &Admin,
    namespace: &str,
    limit: Option<u32>,
) -> anyhow::Result<(Vec<String>, usize)> {
    let mut keys = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/kv/{namespace}/keys?prefix=");
        if let Some(limit) = limit {
            path += &format!("&limit={limit}");
        }
        if let Some(cursor) = &cursor {
            path += &format!("&cursor={cursor}");
        }
        let page: KvKeyList = admin.get(&path).await?;
        pages += 1;
        keys.extend(page.keys.into_iter().map(|key| key.name));
        match (page.list_complete, page.cursor) {
            (true, None) => return Ok((keys, pages)),
            (false, Some(next)) => cursor = Some(next),
            other => bail!("inconsistent page end: {other:?}"),
        }
    }
}

#[tokio::test]
async fn kv_namespaces_values_expiry_pagination_and_bulk_through_the_api() -> anyhow::Result<()> {
    capture_logs();
    let dir = TempDir::new("kv-api");
    let init = outpost_control::init(&dir.0)?;
    let control = start(&dir).await?;
    let admin = Admin::new(&control, &init.admin_token);

    // Namespaces: created (a snapshot change), listed, refused when invalid or repeated.
    assert_eq!(admin.create_namespace("cache").await?.snapshot_version, 1);
    let create = |name: &str| Some(json!({ "name": name }));
    admin
        .fails(
            Method::POST,
            "/v1/kv/namespaces",
            create("cache"),
            StatusCode::CONFLICT,
        )
        .await?;
    let invalid = admin
        .fails(
            Method::POST,
            "/v1/kv/namespaces",
            create("no spaces"),
            StatusCode::BAD_REQUEST,
        )
        .await?;
    assert!(invalid.contains("invalid KV namespace name"), "{invalid}");
    admin.create_namespace("blobs").await?;

    // A function binds a namespace; a bound namespace cannot be deleted.
    let (hash, _) = admin.upload("export default {}").await?;
    let binding = |binding: &str, namespace: &str| {
        let kv = json!([{ "binding": binding, "namespace": namespace }]);
        json!({ "bundle": hash, "kv_namespaces": kv })
    };
    admin
        .deploy_fails("api", binding("CACHE", "nope"), StatusCode::NOT_FOUND)
        .await?;
    admin
        .deploy_fails("api", binding("my-cache", "cache"), StatusCode::BAD_REQUEST)
        .await?;
    admin.deploy("api", binding("CACHE", "cache")).await?;
    let namespaces: Vec<KvNamespaceInfo> = admin.get("/v1/kv/namespaces").await?;
    assert_eq!(
        namespaces
            .iter()
            .map(|ns| (ns.name.as_str(), ns.bound_by.clone()))
            .collect::<Vec<_>>(),
        [("blobs", vec![]), ("cache", vec!["api".to_owned()])]
    );
    let bound = admin
        .fails(
            Method::DELETE,
            "/v1/kv/namespaces/cache",
            None,
            StatusCode::CONFLICT,
        )
        .await?;
    assert!(bound.contains("api v1"), "{bound}");
    let snapshot_version = admin.status().await?.snapshot_version;

    // Values: put with metadata and a TTL, read back with both, deleted.
    let metadata = json!({ "lang": "en", "city": "Zürich" });
    let (status, error) = admin
        .put_value(
            "/v1/kv/cache/values/greeting%2Fen?expiration_ttl=3600",
            &[(KV_METADATA_HEADER, kv::ascii_json(&metadata))],
            b"hello",
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{error}");
    // KV writes publish no snapshot.
    assert_eq!(admin.status().await?.snapshot_version, snapshot_version);
    for path in [
        "/v1/kv/cache/values/greeting%2Fen",
        "/v1/kv/cache/values/greeting/en",
    ] {
        let (status, headers, body) = admin.raw(Method::GET, path, &[], None).await?;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(body, b"hello");
        let stored: Value = serde_json::from_slice(
            headers
                .get(KV_METADATA_HEADER)
                .context("metadata header")?
                .as_bytes(),
        )?;
        assert_eq!(stored, metadata);
        let expiration: u64 = headers
            .get(KV_EXPIRATION_HEADER)
            .context("expiration header")?
            .to_str()?
            .parse()?;
        assert!(expiration.abs_diff(unix_now() + 3600) <= 2, "{expiration}");
    }
    admin
        .ok::<KvWritten>(Method::DELETE, "/v1/kv/cache/values/greeting%2Fen", None)
        .await?;
    for method in [Method::GET, Method::DELETE] {
        let status = admin
            .code(method, "/v1/kv/cache/values/greeting%2Fen")
            .await?;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let unknown = admin
        .fails(
            Method::GET,
            "/v1/kv/nope/values/a",
            None,
            StatusCode::NOT_FOUND,
        )
        .await?;
    assert!(unknown.contains("no KV namespace"), "{unknown}");

    // Limits, with clear messages.
    let long_key = "k".repeat(513);
    let refusals = [
        (
            format!("/v1/kv/cache/values/{long_key}"),
            vec![],
            "KV key exceeds 512 bytes",
        ),
        (
            "/v1/kv/cache/values/a".to_owned(),
            vec![(KV_METADATA_HEADER, json!("x".repeat(1100)).to_string())],
            "KV metadata exceeds 1024 bytes",
        ),
        (
            "/v1/kv/cache/values/a?expiration_ttl=0".to_owned(),
            vec![],
            "at least 1 second",
        ),
        (
            format!("/v1/kv/cache/values/a?expiration={}", unix_now() - 10),
            vec![],
            "is not in the future",
        ),
        (
            format!(
                "/v1/kv/cache/values/a?expiration={}&expiration_ttl=60",
                unix_now() + 60
            ),
            vec![],
            "not both",
        ),
        (
            "/v1/kv/cache/values/a?expiration_ttl=soon".to_owned(),
            vec![],
            "whole number",
        ),
    ];
    for (path, headers, expected) in refusals {
        let (status, error) = admin.put_value(&path, &headers, b"v").await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert!(error.contains(expected), "{path}: {error}");
    }
    let too_big = vec![b'x'; 25 * 1024 * 1024 + 1];
    let (status, error) = admin
        .put_value("/v1/kv/cache/values/big", &[], &too_big)
        .await?;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(error.contains("KV value exceeds 25 MiB"), "{error}");
    admin
        .put_value_ok(
            "/v1/kv/cache/values/exactly-25-mib",
            &too_big[..25 * 1024 * 1024],
        )
        .await?;
    for limit in ["0", "1001"] {
        let message = admin
            .fails(
                Method::GET,
                &format!("/v1/kv/cache/keys?limit={limit}"),
                None,
                StatusCode::BAD_REQUEST,
            )
            .await?;
        assert!(message.contains("between 1 and 1000"), "{message}");
    }
    admin
        .fails(
            Method::GET,
            "/v1/kv/cache/keys?cursor=zz",
            None,
            StatusCode::BAD_REQUEST,
        )
        .await?;

    // An expired key is never returned, whether read, listed or exported.
    let expiration = unix_now() + 2;
    admin
        .put_value_ok(
            &format!("/v1/kv/cache/values/short-lived?expiration={expiration}"),
            b"soon gone",
        )
        .await?;
    let listed: KvKeyList = admin.get("/v1/kv/cache/keys?prefix=short").await?;
    assert_eq!(listed.keys.len(), 1);
    assert_eq!(listed.keys[0].expiration, Some(expiration));
    let short_lived = "/v1/kv/cache/values/short-lived";
    assert_eq!(admin.code(Method::GET, short_lived).await?, StatusCode::OK);
    while unix_now() < expiration {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        admin.code(Method::GET, short_lived).await?,
        StatusCode::NOT_FOUND
    );
    let listed: KvKeyList = admin.get("/v1/kv/cache/keys?prefix=short").await?;
    assert!(listed.keys.is_empty() && listed.list_complete);
    let exported: Vec<KvBulkEntry> = admin.get("/v1/kv/cache/export").await?;
    assert!(exported.iter().all(|entry| entry.key != "short-lived"));

    // Pagination: 2,500 keys come back once each, in byte order, page after page.
    let mut expected: Vec<String> = (0..2500)
        .map(|i| {
            let n = (i * 7919) % 2500;
            match n % 5 {
                0 => format!("Page/{n}"),
                1 => format!("page/é{n}"),
                2 => format!("page/{n:05}"),
                3 => format!("page/z{n}/🦀"),
                _ => format!("page-{n}"),
            }
        })
        .collect();
    let entries: Vec<Value> = expected
        .iter()
        .map(|key| json!({ "key": key, "value": "v" }))
        .collect();
    admin
        .post::<KvWritten>("/v1/kv/blobs/bulk", Some(json!(entries)))
        .await?;
    expected.sort();
    let (listed, pages) = list_all(&admin, "blobs", None).await?;
    assert_eq!(pages, 3);
    assert_eq!(listed, expected);
    let (listed, pages) = list_all(&admin, "blobs", Some(300)).await?;
    assert_eq!(pages, 9);
    assert_eq!(listed, expected);
    let prefixed: KvKeyList = admin
        .get("/v1/kv/blobs/keys?prefix=page%2F%C3%A9&limit=1000")
        .await?;
    assert_eq!(prefixed.keys.len(), 500);
    assert!(
        prefixed
            .keys
            .iter()
            .all(|key| key.name.starts_with("page/é"))
    );

    // Bulk import and export round trip (binary values as base64), all or nothing.
    let binary = [0xff_u8, 0x00, 0x80, 0x7f];
    let import = json!([
        { "key": "text", "value": "plain text", "metadata": { "n": 1 } },
        { "key": "binary", "value": BASE64.encode(binary), "base64": true },
        { "key": "ttl", "value": "t", "expiration_ttl": 600 },
    ]);
    admin.create_namespace("copy").await?;
    admin.create_namespace("copy2").await?;
    let written: KvWritten = admin.post("/v1/kv/copy/bulk", Some(import)).await?;
    assert_eq!(written.keys, 3);
    let exported: Vec<KvBulkEntry> = admin.get("/v1/kv/copy/export").await?;
    assert_eq!(
        exported.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
        ["binary", "text", "ttl"]
    );
    assert!(exported[0].base64);
    assert_eq!(BASE64.decode(&exported[0].value)?, binary);
    assert_eq!(
        (exported[1].value.as_str(), exported[1].base64),
        ("plain text", false)
    );
    assert_eq!(exported[1].metadata, Some(json!({ "n": 1 })));
    assert!(
        exported[2]
            .expiration
            .is_some_and(|at| at.abs_diff(unix_now() + 600) <= 2)
    );
    let (status, _, body) = admin
        .raw(Method::GET, "/v1/kv/copy/values/binary", &[], None)
        .await?;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::OK, binary.as_slice())
    );
    let reimport = serde_json::to_value(&exported)?;
    admin
        .post::<KvWritten>("/v1/kv/copy2/bulk", Some(reimport))
        .await?;
    let again: Vec<KvBulkEntry> = admin.get("/v1/kv/copy2/export").await?;
    assert_eq!(again, exported);
    let partly_bad = json!([
        { "key": "fine", "value": "1" },
        { "key": "x".repeat(600), "value": "2" },
    ]);
    let message = admin
        .fails(
            Method::POST,
            "/v1/kv/copy/bulk",
            Some(partly_bad),
            StatusCode::BAD_REQUEST,
        )
        .await?;
    assert!(
        message.contains("entry #2") && message.contains("exceeds 512 bytes"),
        "{message}"
    );
    assert_eq!(
        admin.code(Method::GET, "/v1/kv/copy/values/fine").await?,
        StatusCode::NOT_FOUND
    );
    admin
        .fails(
            Method::POST,
            "/v1/kv/copy/bulk",
            Some(json!([{ "key": "b", "value": "%%%", "base64": true }])),
            StatusCode::BAD_REQUEST,
        )
        .await?;

    // Deleting an unbound namespace deletes its entries and publishes a snapshot.
    let deleted: KvNamespaceChanged = admin
        .ok(Method::DELETE, "/v1/kv/namespaces/copy", None)
        .await?;
    assert!(deleted.snapshot_version > snapshot_version);
    for (method, path) in [
        (Method::GET, "/v1/kv/copy/export"),
        (Method::DELETE, "/v1/kv/namespaces/copy"),
    ] {
        admin
            .fails(method, path, None, StatusCode::NOT_FOUND)
            .await?;
    }
    // Deploying without the binding frees the namespace.
    admin.deploy("api", json!({ "kv_namespaces": [] })).await?;
    admin
        .ok::<KvNamespaceChanged>(Method::DELETE, "/v1/kv/namespaces/cache", None)
        .await?;
    control.shutdown().await;
    Ok(())
}

/// A KV request that must fail; returns the error message.
async fn kv_error(
    connection: &quinn::Connection,
    request: &Request,
    value: Option<&[u8]>,
) -> anyhow::Result<String> {
    match ask(connection, request, value).await?.0 {
        Response::Error { message } => Ok(message),
        other => bail!("expected an error for {request:?}, got {other:?}"),
    }
}

/// A KV write that must be committed.
async fn kv_done(
    connection: &quinn::Connection,
    request: &Request,
    value: Option<&[u8]>,
) -> anyhow::Result<()> {
    let (response, _) = ask(connection, request, value).await?;
    ensure!(
        response == Response::KvDone,
        "expected KvDone for {request:?}, got {response:?}"
    );
    Ok(())
}

/// A put into the `cache` namespace.
fn kv_put(key: &str, expiration: Option<u64>, metadata: Option<Value>) -> Request {
    Request::KvPut {
        namespace: "cache".into(),
        key: key.into(),
        expiration,
        metadata,
    }
}

/// A get from `namespace`.
fn kv_get(namespace: &str, key: &str) -> Request {
    Request::KvGet {
        namespace: namespace.into(),
        key: key.into(),
    }
}

/// A listing of `cache` by `limit`.
fn kv_list(prefix: Option<&str>, limit: u32, cursor: Option<String>) -> Request {
    Request::KvList {
        namespace: "cache".into(),
        prefix: prefix.map(str::to_owned),
        limit: Some(limit),
        cursor,
    }
}

/// Every sync stream's next invalidation is `(cache, [key])`.
async fn all_invalidate(syncs: [&mut Sync; 2], key: &str) -> anyhow::Result<()> {
    for sync in syncs {
        let (namespace, keys) = sync.invalidation().await?;
        ensure!(
            namespace == "cache" && keys == [key],
            "expected {key:?} invalidated, got {namespace:?} {keys:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn nodes_read_and_write_kv_over_quic_and_get_invalidations() -> anyhow::Result<()> {
    capture_logs();
    let dir = TempDir::new("kv-quic");
    let init = outpost_control::init(&dir.0)?;
    let control = start(&dir).await?;
    let admin = Admin::new(&control, &init.admin_token);
    admin.create_namespace("cache").await?;
    let (hash, _) = admin.upload("export default {}").await?;
    let kv = json!([{ "binding": "CACHE", "namespace": "cache" }]);
    admin
        .deploy("api", json!({ "bundle": hash, "kv_namespaces": kv }))
        .await?;

    // Two nodes, each with its sync stream; the snapshot carries namespaces and bindings.
    let quic = control.quic_addr();
    let (_, writer, mut writer_sync) = join_and_sync(quic, &init.join_token, "pop-1").await?;
    let second_token = outpost_control::create_join_token(&dir.0)?;
    let (_, watcher, mut watcher_sync) = join_and_sync(quic, &second_token, "pop-2").await?;
    for sync in [&mut writer_sync, &mut watcher_sync] {
        let snapshot = sync.next_acked().await?;
        assert_eq!(snapshot.kv_namespaces, ["cache"]);
        assert_eq!(
            snapshot.functions[0].deployments[0].kv,
            [KvBinding {
                binding: "CACHE".into(),
                namespace: "cache".into()
            }]
        );
    }

    // Put: committed, then every connected node hears about the key.
    let expiration = unix_now() + 3600;
    let put = kv_put("user/1", Some(expiration), Some(json!({ "v": 1 })));
    kv_done(&writer, &put, Some(b"alice")).await?;
    all_invalidate([&mut watcher_sync, &mut writer_sync], "user/1").await?;

    let get = kv_get("cache", "user/1");
    let (response, value) = ask(&writer, &get, None).await?;
    assert_eq!(
        response,
        Response::KvEntry {
            found: true,
            expiration: Some(expiration),
            metadata: Some(json!({ "v": 1 })),
        }
    );
    assert_eq!(value.as_deref(), Some(b"alice".as_slice()));
    // Written by a node, readable through the API.
    let (status, _, body) = admin
        .raw(Method::GET, "/v1/kv/cache/values/user%2F1", &[], None)
        .await?;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::OK, b"alice".as_slice())
    );

    // List pages with a cursor.
    for i in 2..=4 {
        let key = format!("user/{i}");
        kv_done(&writer, &kv_put(&key, None, None), Some(b"x")).await?;
        all_invalidate([&mut watcher_sync, &mut writer_sync], &key).await?;
    }
    let Response::KvKeys {
        keys,
        list_complete,
        cursor,
    } = ask(&watcher, &kv_list(Some("user/"), 3, None), None)
        .await?
        .0
    else {
        bail!("expected keys");
    };
    assert_eq!(
        keys.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(),
        ["user/1", "user/2", "user/3"]
    );
    assert_eq!(keys[0].expiration, Some(expiration));
    assert_eq!(keys[0].metadata, Some(json!({ "v": 1 })));
    assert!(!list_complete);
    let Response::KvKeys {
        keys,
        list_complete,
        cursor,
    } = ask(&watcher, &kv_list(Some("user/"), 3, cursor), None)
        .await?
        .0
    else {
        bail!("expected keys");
    };
    assert_eq!(
        keys.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(),
        ["user/4"]
    );
    assert!(list_complete && cursor.is_none());

    // Delete: done (also for a missing key), announced, then not found.
    let delete = Request::KvDelete {
        namespace: "cache".into(),
        key: "user/1".into(),
    };
    kv_done(&watcher, &delete, None).await?;
    all_invalidate([&mut writer_sync, &mut watcher_sync], "user/1").await?;
    // Deleting a missing key succeeds and announces nothing.
    kv_done(&watcher, &delete, None).await?;
    let (response, value) = ask(&writer, &get, None).await?;
    assert_eq!(
        response,
        Response::KvEntry {
            found: false,
            expiration: None,
            metadata: None
        }
    );
    assert_eq!(value, None);

    // Writes through the API reach nodes too.
    admin
        .put_value_ok("/v1/kv/cache/values/from-api", b"1")
        .await?;
    all_invalidate([&mut watcher_sync, &mut writer_sync], "from-api").await?;

    // Limits and unknown namespaces get clear errors.
    for (request, expected) in [
        (
            kv_put(&"k".repeat(513), None, None),
            "KV key exceeds 512 bytes",
        ),
        (kv_put("..", None, None), "cannot be \".\" or \"..\""),
        (kv_put("", None, None), "KV key is empty"),
        (
            kv_put("m", None, Some(json!("x".repeat(1100)))),
            "KV metadata exceeds 1024 bytes",
        ),
    ] {
        let message = kv_error(&writer, &request, Some(b"v")).await?;
        assert!(message.contains(expected), "{message}");
    }
    let stale = kv_put("m", Some(unix_now() - 3600), None);
    let message = kv_error(&writer, &stale, Some(b"v")).await?;
    assert!(message.contains("is not in the future"), "{message}");
    // The message names control's clock, not the skew tolerance.
    let quoted_now: u64 = message
        .split("now is ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .context("no `now is` in the message")?
        .parse()?;
    assert!(quoted_now.abs_diff(unix_now()) <= 2, "{message}");
    // Within the clock-skew tolerance, a past expiration is stored already expired: the
    // put acts as a delete.
    let skewed = kv_put("user/2", Some(unix_now() - 10), None);
    kv_done(&writer, &skewed, Some(b"v")).await?;
    all_invalidate([&mut watcher_sync, &mut writer_sync], "user/2").await?;
    assert!(matches!(
        ask(&writer, &kv_get("cache", "user/2"), None).await?.0,
        Response::KvEntry { found: false, .. }
    ));
    let message = kv_error(&writer, &kv_get("nope", "a"), None).await?;
    assert!(message.contains("no KV namespace \"nope\""), "{message}");
    let message = kv_error(&writer, &kv_list(None, 0, None), None).await?;
    assert!(message.contains("between 1 and 1000"), "{message}");
    // A value over 25 MiB is refused from its length alone.
    let (mut send, mut recv) = writer.open_bi().await?;
    wire::write_message(&mut send, &kv_put("huge", None, None)).await?;
    let too_big = u32::try_from(25 * 1024 * 1024 + 1)?;
    send.write_all(&too_big.to_be_bytes()).await?;
    let response: Option<Response> = wire::read_message(&mut recv).await?;
    match response {
        Some(Response::Error { message }) => {
            assert!(message.contains("KV value exceeds 25 MiB"), "{message}");
        }
        other => bail!("oversized value: {other:?}"),
    }
    // A put without its value frame is refused.
    let message = kv_error(&writer, &kv_put("no-value", None, None), None).await?;
    assert!(message.contains("followed by one frame"), "{message}");
    // Nothing refused was announced: the next invalidation is the next write.
    kv_done(&writer, &kv_put("after", None, None), Some(b"v")).await?;
    assert_eq!(
        admin
            .code(Method::DELETE, "/v1/kv/cache/values/from-api")
            .await?,
        StatusCode::OK
    );
    assert_eq!(
        watcher_sync.invalidation().await?,
        ("cache".to_owned(), vec!["after".to_owned()])
    );
    assert_eq!(
        watcher_sync.invalidation().await?,
        ("cache".to_owned(), vec!["from-api".to_owned()])
    );

    // Creating a namespace is a snapshot change nodes receive.
    let created = admin.create_namespace("sessions").await?;
    let pushed = watcher_sync.next().await?;
    assert_eq!(pushed.version, created.snapshot_version);
    assert_eq!(pushed.kv_namespaces, ["cache", "sessions"]);
    control.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_misses_invalidations_is_closed_to_resync() -> anyhow::Result<()> {
    capture_logs();
    let dir = TempDir::new("kv-lag");
    let init = outpost_control::init(&dir.0)?;
    let control = start(&dir).await?;
    let admin = Admin::new(&control, &init.admin_token);
    admin.create_namespace("cache").await?;
    let (_, connection, mut sync) =
        join_and_sync(control.quic_addr(), &init.join_token, "slow").await?;
    sync.next().await?;

    // The node stops reading: long keys fill the stream's flow-control window, then more
    // invalidations than control keeps for a node pile up behind them.
    for round in 0..4 {
        let entries: Vec<Value> = (0..10_000)
            .map(|i| json!({ "key": format!("{round}-{i:05}-{}", "k".repeat(480)), "value": "" }))
            .collect();
        admin
            .post::<KvWritten>("/v1/kv/cache/bulk", Some(json!(entries)))
            .await?;
    }
    for i in 0..1100 {
        admin
            .put_value_ok(&format!("/v1/kv/cache/values/n{i}"), b"")
            .await?;
    }

    // Reading again, the node gets what was buffered, then control closes it to resync.
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while wire::read_bytes(&mut sync.recv)
            .await
            .is_ok_and(|frame| frame.is_some())
        {}
    })
    .await;
    ensure!(drained.is_ok(), "the sync stream never ended");
    closed_with(&connection, Duration::from_secs(2), wire::close::RESYNC).await?;
    control.shutdown().await;
    Ok(())
}
