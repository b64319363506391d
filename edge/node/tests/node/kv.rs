//! KV bindings end to end under `outpost dev` (local SQLite store): the Workers KV API from a handler, expiry, pagination, limits, binding isolation.

use super::*;

async fn call(base: &str, method: reqwest::Method, path: &str, body: &str) -> (u16, Value) {
    let response = client()
        .request(method, format!("{base}{path}"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_api_works_from_a_handler() {
    let dir = TempDir::new();
    let project = dir.path.join("kv");
    std::fs::create_dir_all(&project).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kv");
    for file in ["outpost.toml", "index.js"] {
        std::fs::copy(fixture.join(file), project.join(file)).unwrap();
    }
    let port = free_port();
    let log = dir.path.join("dev.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .arg("dev")
        .arg(&project)
        .args(["--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_listening(port, "outpost dev", &log);
    let base = format!("http://127.0.0.1:{port}");
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;

    // put, get (text, json, arrayBuffer, stream), getWithMetadata, delete.
    assert_eq!(
        call(&base, post.clone(), "/put?key=greeting", "{\"hi\":1}")
            .await
            .1,
        json!({ "ok": true })
    );
    assert_eq!(
        call(&base, get.clone(), "/get?key=greeting", "").await.1,
        json!({ "value": "{\"hi\":1}" })
    );
    assert_eq!(
        call(&base, get.clone(), "/get?key=greeting&type=json", "")
            .await
            .1,
        json!({ "value": { "hi": 1 } })
    );
    assert_eq!(
        call(&base, get.clone(), "/get?key=greeting&type=arrayBuffer", "")
            .await
            .1,
        json!({ "bytes": 8 })
    );
    assert_eq!(
        call(&base, get.clone(), "/get?key=greeting&type=stream", "")
            .await
            .1,
        json!({ "hi": 1 })
    );
    let meta = call(&base, get.clone(), "/meta?key=greeting", "").await.1;
    assert_eq!(meta["metadata"], json!({ "by": "test" }), "{meta}");
    assert_eq!(
        call(
            &base,
            post.clone(),
            "/put?key=streamed&stream=1",
            "from a stream"
        )
        .await
        .1,
        json!({ "ok": true })
    );
    assert_eq!(
        call(&base, get.clone(), "/get?key=streamed", "").await.1,
        json!({ "value": "from a stream" })
    );
    call(&base, get.clone(), "/delete?key=greeting", "").await;
    assert_eq!(
        call(&base, get.clone(), "/get?key=greeting", "").await.1,
        json!({ "value": null })
    );

    // Expiry is exact: a 1 s TTL is readable now and never after.
    call(&base, post.clone(), "/put?key=short&ttl=1", "soon gone").await;
    assert_eq!(
        call(&base, get.clone(), "/get?key=short", "").await.1,
        json!({ "value": "soon gone" })
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        call(&base, get.clone(), "/get?key=short", "").await.1,
        json!({ "value": null })
    );

    // list: 2,500 keys in pages of 1,000, each key exactly once, in order.
    // (in requests of 100 puts: each request's CPU time stays well inside its limit)
    for from in (0..2500).step_by(100) {
        let fill = call(&base, get.clone(), &format!("/fill?from={from}&n=100"), "").await;
        assert_eq!(fill.0, 200, "{fill:?}");
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/list?prefix=item:&cursor={cursor}");
        let page = call(&base, get.clone(), &path, "").await.1;
        for key in page["keys"].as_array().unwrap() {
            seen.push(key["name"].as_str().unwrap().to_string());
        }
        if page["list_complete"] == true {
            break;
        }
        cursor = page["cursor"].as_str().unwrap().to_string();
    }
    assert_eq!(seen.len(), 2500);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen, sorted);
    let first = call(&base, get.clone(), "/list?prefix=item:&limit=2", "")
        .await
        .1;
    assert_eq!(
        first["keys"],
        json!([{ "name": "item:00000" }, { "name": "item:00001" }])
    );

    // Limits throw clear TypeErrors; only bound namespaces are on env.
    for (what, needle) in [
        ("key", "512"),
        ("metadata", "1024"),
        ("limit", "1000"),
        ("ttl", "at least 1 second"),
    ] {
        let (status, body) = call(&base, get.clone(), &format!("/bad?what={what}"), "").await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(body["name"], "TypeError", "{what}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains(needle),
            "{what}: {body}"
        );
    }
    assert_eq!(
        call(&base, get.clone(), "/bindings", "").await.1,
        json!({ "cache": "object", "other": "undefined" })
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// Writes a project from the KV fixture's handler, bound to `namespace` as `env.CACHE`
/// and served under `route`.
fn kv_project(dir: &Path, name: &str, namespace: &str, route: &str) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kv");
    std::fs::copy(fixture.join("index.js"), dir.join("index.js")).unwrap();
    std::fs::write(
        dir.join("outpost.toml"),
        format!(
            "name = \"{name}\"\nmain = \"index.js\"\n\n[[kv_namespaces]]\nbinding = \"CACHE\"\nnamespace = \"{namespace}\"\n\n[[routes]]\npath = \"{route}\"\nfunction = \"{name}\"\n"
        ),
    )
    .unwrap();
    dir.display().to_string()
}

/// Polls `path` on `base` until its JSON answer is `expected`; returns how long it took.
async fn until_answers(base: &str, path: &str, expected: &Value) -> Duration {
    let started = Instant::now();
    loop {
        let (_, body) = call(base, reqwest::Method::GET, path, "").await;
        if &body == expected {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{base}{path} still answers {body}, not {expected}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_is_served_from_control_through_every_nodes_cache() {
    use super::control::*;

    let dir = TempDir::new();
    let (control_dir, init, control) = init_control(&dir.path).await;
    let token = init.admin_token.clone();
    let (api, quic) = (control.api_addr(), control.quic_addr());

    // Node A goes stale after 1 s (to show stale-if-error); node B holds 1 MiB (eviction).
    let config_a = dir.path.join("a.toml");
    std::fs::write(&config_a, "[kv]\ncache_ttl_secs = 1\n").unwrap();
    let config_b = dir.path.join("b.toml");
    std::fs::write(&config_b, "[kv]\ncache_mb = 1\n").unwrap();
    let second_token = outpost_control::create_join_token(&control_dir).unwrap();
    let a = ControlledNode::start_with(
        "a",
        quic,
        Some(&init.join_token),
        &dir.path.join("node-a"),
        Some(&config_a),
    );
    let b = ControlledNode::start_with(
        "b",
        quic,
        Some(&second_token),
        &dir.path.join("node-b"),
        Some(&config_b),
    );
    until_connected(api, &token, 2).await;
    for namespace in ["cache", "other"] {
        let created = outpost(api, &token, &["kv", "namespace", "create", namespace], None).await;
        assert!(created.status.success(), "{}", text(&created));
    }
    for (name, namespace, route) in [("kv", "cache", "/*"), ("spy", "other", "/spy/*")] {
        let project = kv_project(&dir.path.join(name), name, namespace, route);
        let deployed = outpost(api, &token, &["deploy", &project], None).await;
        assert!(deployed.status.success(), "{}", text(&deployed));
    }
    let (base_a, base_b) = (a.url(""), b.url(""));
    let (get, post) = (reqwest::Method::GET, reqwest::Method::POST);
    let value = |v: Value| json!({ "value": v });

    // B caches a miss; a put on A is read back on A at once, and reaches B by invalidation
    // (B's cacheTtl is 60 s, so only the invalidation can explain B seeing it).
    assert_eq!(
        call(&base_b, get.clone(), "/get?key=greeting", "").await.1,
        value(Value::Null)
    );
    call(&base_a, post.clone(), "/put?key=greeting", "v1").await;
    assert_eq!(
        call(&base_a, get.clone(), "/get?key=greeting", "").await.1,
        value(json!("v1"))
    );
    until_answers(&base_b, "/get?key=greeting", &value(json!("v1"))).await;
    call(&base_a, post.clone(), "/put?key=greeting", "v2").await;
    assert_eq!(
        call(&base_a, get.clone(), "/get?key=greeting", "").await.1,
        value(json!("v2"))
    );
    let propagated = until_answers(&base_b, "/get?key=greeting", &value(json!("v2"))).await;
    eprintln!("a write on A reached B's cache in {propagated:?}");
    let meta = call(&base_b, get.clone(), "/meta?key=greeting", "").await.1;
    assert_eq!(meta["value"], "v2", "{meta}");
    assert_eq!(meta["metadata"], json!({ "by": "test" }), "{meta}");

    // A delete on B reaches A.
    call(&base_b, post.clone(), "/put?key=doomed", "x").await;
    until_answers(&base_a, "/get?key=doomed", &value(json!("x"))).await;
    call(&base_b, get.clone(), "/delete?key=doomed", "").await;
    assert_eq!(
        call(&base_b, get.clone(), "/get?key=doomed", "").await.1,
        value(Value::Null)
    );
    until_answers(&base_a, "/get?key=doomed", &value(Value::Null)).await;

    // Large values stream in on A and out on B.
    let large = "z".repeat(3 * 1024 * 1024);
    let put = call(&base_a, post.clone(), "/put?key=large&stream=1", &large).await;
    assert_eq!(put.1, json!({ "ok": true }), "{put:?}");
    assert_eq!(
        call(&base_b, get.clone(), "/get?key=large&type=arrayBuffer", "")
            .await
            .1,
        json!({ "bytes": large.len() })
    );

    // TTL: gone on both nodes at its expiration, although both have it cached.
    call(&base_a, post.clone(), "/put?key=short&ttl=2", "soon gone").await;
    for base in [&base_a, &base_b] {
        assert_eq!(
            call(base, get.clone(), "/get?key=short", "").await.1,
            value(json!("soon gone"))
        );
    }
    tokio::time::sleep(Duration::from_millis(3100)).await;
    for base in [&base_a, &base_b] {
        assert_eq!(
            call(base, get.clone(), "/get?key=short", "").await.1,
            value(Value::Null)
        );
    }

    // 2,500 keys written on A, listed from B in pages of 1,000, each exactly once, in order.
    for from in (0..2500).step_by(250) {
        let fill = call(
            &base_a,
            get.clone(),
            &format!("/fill?from={from}&n=250"),
            "",
        )
        .await;
        assert_eq!(fill.0, 200, "{fill:?}");
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/list?prefix=item:&cursor={cursor}"),
            None => "/list?prefix=item:".to_string(),
        };
        let page = call(&base_b, get.clone(), &path, "").await.1;
        let keys = page["keys"].as_array().unwrap();
        assert!(keys.len() <= 1000, "{}", keys.len());
        seen.extend(keys.iter().map(|k| k["name"].as_str().unwrap().to_string()));
        if page["list_complete"] == true {
            break;
        }
        cursor = Some(page["cursor"].as_str().unwrap().to_string());
    }
    let expected: Vec<String> = (0..2500).map(|i| format!("item:{i:05}")).collect();
    assert_eq!(seen, expected);

    // Isolation: `spy` binds namespace "other" as CACHE and sees none of "cache".
    assert_eq!(
        call(&base_b, get.clone(), "/spy/get?key=greeting", "")
            .await
            .1,
        value(Value::Null)
    );
    call(&base_b, post.clone(), "/spy/put?key=greeting", "spy").await;
    assert_eq!(
        call(&base_a, get.clone(), "/spy/get?key=greeting", "")
            .await
            .1,
        value(json!("spy"))
    );
    assert_eq!(
        call(&base_a, get.clone(), "/get?key=greeting", "").await.1,
        value(json!("v2"))
    );
    assert_eq!(
        call(&base_a, get.clone(), "/bindings", "").await.1,
        json!({ "cache": "object", "other": "undefined" })
    );

    // Eviction: B reads 40 values of 100 KiB through a 1 MiB cache.
    let big = "b".repeat(100 * 1024);
    for i in 0..40 {
        call(&base_a, post.clone(), &format!("/put?key=big:{i:02}"), &big).await;
    }
    for i in 0..40 {
        assert_eq!(
            call(
                &base_b,
                get.clone(),
                &format!("/get?key=big:{i:02}&type=arrayBuffer"),
                ""
            )
            .await
            .1,
            json!({ "bytes": big.len() })
        );
    }

    // Control down: cached entries are served (on A past their 1 s freshness), uncached
    // reads and every write fail with a clear error, and nothing is lost.
    assert_eq!(
        call(&base_a, get.clone(), "/get?key=greeting", "").await.1,
        value(json!("v2"))
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    control.shutdown().await;
    assert_eq!(
        call(&base_a, get.clone(), "/get?key=greeting", "").await.1,
        value(json!("v2")),
        "A log:\n{}",
        a.log_text()
    );
    let mut served = 0;
    for i in 0..40 {
        let (status, _) = call(
            &base_b,
            get.clone(),
            &format!("/get?key=big:{i:02}&type=arrayBuffer"),
            "",
        )
        .await;
        served += usize::from(status == 200);
    }
    assert!(
        (1..=10).contains(&served),
        "B (1 MiB cache) still served {served} values of 100 KiB"
    );
    let (status, refused) = call(&base_a, post.clone(), "/put?key=greeting", "v3").await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["name"], "Error", "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("control is unreachable") && message.contains("not stored"),
        "{message}"
    );
    let (status, uncached) = call(&base_b, get.clone(), "/get?key=never-read", "").await;
    assert_eq!(status, 400, "{uncached}");
    assert!(
        uncached["message"]
            .as_str()
            .unwrap()
            .contains("control is unreachable"),
        "{uncached}"
    );

    // Control back on the same address: the refused write left v2 in place.
    let control = serve_control(&control_dir, api, quic).await;
    until_connected(api, &token, 2).await;
    let stored = outpost(api, &token, &["kv", "get", "cache", "greeting"], None).await;
    assert_eq!(
        String::from_utf8_lossy(&stored.stdout),
        "v2",
        "{}",
        text(&stored)
    );
    call(&base_a, post.clone(), "/put?key=greeting", "v3").await;
    until_answers(&base_b, "/get?key=greeting", &value(json!("v3"))).await;
    control.shutdown().await;
}
