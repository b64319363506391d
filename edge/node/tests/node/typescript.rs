//! TypeScript projects end to end: `outpost init`, esbuild bundling with an npm dependency (Hono), stack traces mapped to the .ts source, and `outpost dev` reloading on save.

use super::*;

/// An `outpost dev` process with its log file.
struct Dev {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dev {
    fn start(path: &Path, log: PathBuf) -> Dev {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_outpost"))
            .arg("dev")
            .arg(path)
            .args(["--port", &port.to_string()])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let dev = Dev { child, port, log };
        wait_listening(port, "outpost dev", &dev.log);
        dev
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let response = client().get(self.url(path)).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// Waits until the log contains `text`.
    async fn until_logged(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.log_text().contains(text) {
            assert!(
                Instant::now() < deadline,
                "the log never showed {text:?}:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `path` answers `expected` (after a save).
    async fn until(&self, path: &str, expected: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, body) = self.get(path).await;
            if body == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{path} answers {body:?}, not {expected:?}; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn esbuild_installed() {
    let esbuild =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../js-sdk/node_modules/.bin/esbuild");
    assert!(
        esbuild.exists(),
        "TypeScript tests need esbuild: run `npm ci` in js-sdk/ first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hono_app_from_npm_bundles_and_runs_unchanged() {
    esbuild_installed();
    let dir = TempDir::new();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hono-ts");
    let dev = Dev::start(&example, dir.path.join("dev.log"));
    assert_eq!(dev.get("/").await, (200, "Hello Hono".to_string()));
    let (status, body) = dev.get("/users/42").await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({ "id": "42" })
    );
    assert_eq!(dev.get("/missing").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_project_serves_reloads_and_maps_stack_traces_to_typescript() {
    esbuild_installed();
    let dir = TempDir::new();
    let project = dir.path.join("demo");
    let init = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .arg("init")
        .arg(&project)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    for file in [
        "outpost.toml",
        "src/index.ts",
        "tsconfig.json",
        "package.json",
        "test/handler.test.mjs",
    ] {
        assert!(project.join(file).exists(), "{file} was not created");
    }
    let again = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .arg("init")
        .arg(&project)
        .output()
        .unwrap();
    assert_eq!(
        again.status.code(),
        Some(1),
        "init must not overwrite a project"
    );

    let dev = Dev::start(&project, dir.path.join("dev.log"));
    assert_eq!(dev.get("/").await, (200, "Hello from demo\n".to_string()));

    // Save a new version: it answers without a restart. Line 6 throws.
    let handler = project.join("src/index.ts");
    std::fs::write(
        &handler,
        "interface Env { GREETING: string }\n\
         function explode(path: string): never {\n\
         \x20 // A comment so TypeScript and JavaScript lines differ.\n\
         \x20 type Unused = { a: number };\n\
         \x20 const message: string = `boom at ${path}`;\n\
         \x20 throw new Error(message);\n\
         }\n\
         export default {\n\
         \x20 async fetch(request: Request, env: Env): Promise<Response> {\n\
         \x20   const url = new URL(request.url);\n\
         \x20   if (url.pathname === '/boom') explode(url.pathname);\n\
         \x20   return new Response(`v2 ${env.GREETING}`);\n\
         \x20 },\n\
         };\n",
    )
    .unwrap();
    dev.until("/", "v2 Hello").await;
    let (status, body) = dev.get("/boom").await;
    assert_eq!(status, 500, "{body}");
    assert!(
        !body.contains("index.ts"),
        "stack traces stay out of responses: {body}"
    );
    dev.until_logged("src/index.ts:6:").await;

    // A save that does not build is reported; the last good build keeps serving.
    std::fs::write(&handler, "export default { fetch( {\n").unwrap();
    dev.until_logged("still serving the last good build").await;
    assert_eq!(dev.get("/").await, (200, "v2 Hello".to_string()));
    assert!(
        dev.log_text().contains("src/index.ts:"),
        "the build error names the file and line:\n{}",
        dev.log_text()
    );
}
