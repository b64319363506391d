//! Writes Outpost node configs, runs `outpost-edge` pinned to the server core, and reads its RSS.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// How long a node may take to bind its listener.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// One `[[functions]]` entry.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// Function name.
    pub name: String,
    /// Absolute path of the entry module.
    pub main: PathBuf,
    /// Boot the isolate at startup (`false` = cold start on first request).
    pub preload: bool,
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    /// Path pattern, e.g. `/f1/*`; `None` matches everything.
    pub path: Option<String>,
    /// Function the route goes to.
    pub function: String,
}

/// A node config (`node.toml`).
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Port of the loopback listener.
    pub port: u16,
    /// Worker threads (each accepts connections and runs isolates).
    pub threads: u32,
    /// Engine memory budget in MiB.
    pub memory_budget_mb: u32,
    /// The functions.
    pub functions: Vec<FunctionSpec>,
    /// The routes.
    pub routes: Vec<RouteSpec>,
}

impl NodeConfig {
    /// A node serving one preloaded function for every request.
    pub fn single(settings: &NodeSettings, port: u16, name: &str, main: &Path) -> Self {
        Self {
            port,
            threads: settings.threads,
            memory_budget_mb: settings.memory_budget_mb,
            functions: vec![FunctionSpec {
                name: name.to_owned(),
                main: main.to_owned(),
                preload: true,
            }],
            routes: vec![RouteSpec {
                path: None,
                function: name.to_owned(),
            }],
        }
    }

    /// Renders the config as TOML.
    pub fn to_toml(&self) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = write!(
            s,
            "[server]\nlisten = {}\nthreads = {}\n\n[engine]\nmemory_budget_mb = {}\n",
            toml_str(&format!("127.0.0.1:{}", self.port)),
            self.threads,
            self.memory_budget_mb
        );
        for f in &self.functions {
            let _ = write!(
                s,
                "\n[[functions]]\nname = {}\nmain = {}\npreload = {}\n",
                toml_str(&f.name),
                toml_str(&f.main.display().to_string()),
                f.preload
            );
        }
        for r in &self.routes {
            s.push_str("\n[[routes]]\n");
            if let Some(path) = &r.path {
                let _ = writeln!(s, "path = {}", toml_str(path));
            }
            let _ = writeln!(s, "function = {}", toml_str(&r.function));
        }
        s
    }
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Where the node binary is and how every node is run.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// Path of `outpost-edge`.
    pub binary: PathBuf,
    /// CPU the node is pinned to.
    pub cpu: u32,
    /// Worker threads.
    pub threads: u32,
    /// Engine memory budget in MiB.
    pub memory_budget_mb: u32,
}

/// A running `outpost-edge` process.
#[derive(Debug)]
pub struct Node {
    child: tokio::process::Child,
    /// The node's pid (taskset execs the node, so this is the node itself).
    pub pid: u32,
    /// The port it listens on.
    pub port: u16,
    log: PathBuf,
}

impl Node {
    /// Writes `config` to `dir/<tag>.toml`, starts the node and waits until it answers
    /// `GET /` (any status) or fails.
    pub async fn start(
        settings: &NodeSettings,
        config: &NodeConfig,
        dir: &Path,
        tag: &str,
        http: &reqwest::Client,
    ) -> Result<Self> {
        if !settings.binary.is_file() {
            bail!(
                "{} not found (build it with `cargo build --release -p outpost-edge`)",
                settings.binary.display()
            );
        }
        let config_path = dir.join(format!("{tag}.toml"));
        crate::handlers::write_file(&config_path, &config.to_toml())?;
        let log = dir.join(format!("{tag}.log"));
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let log_err = log_file.try_clone().context("cloning log file handle")?;
        let child = tokio::process::Command::new("taskset")
            .arg("-c")
            .arg(settings.cpu.to_string())
            .arg(&settings.binary)
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", settings.binary.display()))?;
        let pid = child.id().context("node exited immediately")?;
        let mut node = Self {
            child,
            pid,
            port: config.port,
            log,
        };
        if let Err(e) = node.wait_up(http).await {
            let log = node.log_tail();
            node.stop().await;
            return Err(anyhow::anyhow!("{e:#}; node log (last lines):\n{log}"));
        }
        Ok(node)
    }

    /// Polls `GET /` until the node answers.
    async fn wait_up(&mut self, http: &reqwest::Client) -> Result<()> {
        let url = format!("http://127.0.0.1:{}/", self.port);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().context("polling node")? {
                bail!("node exited during startup: {status}");
            }
            let answer = http.get(&url).timeout(Duration::from_secs(1)).send().await;
            if answer.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "node did not answer on {url} within {}s",
                    STARTUP_TIMEOUT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The node's resident set size (VmRSS) in KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        rss_kib(self.pid)
    }

    /// The last lines of the node's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Kills the node and reaps it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// VmRSS of `pid` in KiB, from /proc/PID/status.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .with_context(|| format!("no VmRSS in {path}"))?;
    let kib = line
        .trim()
        .strip_suffix("kB")
        .with_context(|| format!("unexpected VmRSS line {line:?}"))?;
    kib.trim()
        .parse()
        .with_context(|| format!("unexpected VmRSS line {line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_config() {
        let cfg = NodeConfig {
            port: 8080,
            threads: 1,
            memory_budget_mb: 1024,
            functions: vec![FunctionSpec {
                name: "f1".into(),
                main: PathBuf::from("/tmp/x \"y\"/hello.js"),
                preload: false,
            }],
            routes: vec![
                RouteSpec {
                    path: Some("/f1/*".into()),
                    function: "f1".into(),
                },
                RouteSpec {
                    path: None,
                    function: "f1".into(),
                },
            ],
        };
        let toml = cfg.to_toml();
        assert!(toml.contains("listen = \"127.0.0.1:8080\""));
        assert!(toml.contains("main = \"/tmp/x \\\"y\\\"/hello.js\""));
        assert!(toml.contains("preload = false"));
        assert!(toml.contains("[[routes]]\npath = \"/f1/*\"\nfunction = \"f1\""));
        assert!(toml.contains("[[routes]]\nfunction = \"f1\""));
    }

    #[test]
    fn reads_own_rss() -> Result<()> {
        assert!(rss_kib(std::process::id())? > 0);
        Ok(())
    }
}
