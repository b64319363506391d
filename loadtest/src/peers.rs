//! Starts and stops the peer runtimes (deno, workerd, nginx) through the shared `peers` script.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// A peer server started by `peers start`.
#[derive(Debug)]
pub struct Peer {
    /// The script that started it (and stops it).
    script: PathBuf,
    /// The server's pid, as printed by `peers start`.
    pub pid: u32,
}

impl Peer {
    /// Runs `peers start KIND HANDLER PORT` with the server pinned to `cpu`; the script
    /// returns once the server answers on the port.
    pub async fn start(
        script: &Path,
        kind: &str,
        handler: Option<&Path>,
        port: u16,
        cpu: u32,
    ) -> Result<Self> {
        let handler = handler.map_or_else(|| "-".to_owned(), |h| h.display().to_string());
        let out = tokio::process::Command::new(script)
            .args(["start", kind, &handler, &port.to_string()])
            .env("PEERS_CPU", cpu.to_string())
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .with_context(|| format!("running {} start {kind}", script.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "`peers start {kind}` failed ({}): {} {} (is it installed? try `{} install`)",
                out.status,
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim(),
                script.display()
            );
        }
        let pid = stdout
            .lines()
            .last()
            .and_then(|l| l.trim().parse::<u32>().ok())
            .with_context(|| format!("`peers start {kind}` printed no pid: {stdout:?}"))?;
        Ok(Self {
            script: script.to_owned(),
            pid,
        })
    }

    /// Runs `peers stop PID` and waits (up to 5 s) for the process to go away,
    /// killing it hard if it does not.
    pub async fn stop(self) {
        let _ = tokio::process::Command::new(&self.script)
            .args(["stop", &self.pid.to_string()])
            .output()
            .await;
        if !wait_gone(self.pid, Duration::from_secs(5)).await {
            let _ = tokio::process::Command::new("kill")
                .args(["-9", &self.pid.to_string()])
                .output()
                .await;
            wait_gone(self.pid, Duration::from_secs(2)).await;
        }
    }
}

/// Whether `pid` is gone (or a zombie waiting to be reaped).
fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Err(_) => true,
        Ok(status) => status
            .lines()
            .find_map(|l| l.strip_prefix("State:"))
            .is_some_and(|s| s.trim_start().starts_with('Z')),
    }
}

/// Polls until `pid` is gone; returns whether it went within `timeout`.
async fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if is_gone(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    is_gone(pid)
}
