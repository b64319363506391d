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
