//! `outpost dev`'s reload loop: notice a saved source file, rebuild, and swap the new version in — or report the error and keep the last good build.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use outpost_engine::Engine;

use crate::serving::FunctionEntry;
use crate::serving::ServingState;

/// How often sources are checked for changes.
const POLL: Duration = Duration::from_millis(50);
/// Most files a watched project may hold (beyond that, changes go unnoticed).
const MAX_WATCHED_FILES: usize = 20_000;

/// Polls the sources under `watch` and redeploys the project at `path` when they change.
pub(crate) fn reload_on_change(
    engine: &Engine,
    state: &ArcSwap<ServingState>,
    path: &Path,
    listen: SocketAddr,
    watch: &Path,
) {
    let mut seen = sources(watch);
    loop {
        std::thread::sleep(POLL);
        let now = sources(watch);
        if now == seen {
            continue;
        }
        seen = now;
        let started = Instant::now();
        match rebuild(engine, path, listen) {
            Ok(next) => {
                state.store(Arc::new(next));
                eprintln!(
                    "outpost dev: reloaded in {} ms",
                    started.elapsed().as_millis()
                );
            }
            Err(error) => {
                eprintln!("outpost dev: {error}\noutpost dev: still serving the last good build")
            }
        }
    }
}

/// Builds and boots the project again; nothing changes unless every function boots.
fn rebuild(engine: &Engine, path: &Path, listen: SocketAddr) -> Result<ServingState, String> {
    let (config, base) =
        crate::config::dev_config(path, listen).map_err(|error| error.to_string())?;
    let setup = config
        .into_setup(&base)
        .map_err(|error| error.to_string())?;
    if let Some(refused) = setup.local.refused.first() {
        return Err(refused.reason.clone());
    }
    let next = crate::deploy_local(engine, setup.local).map_err(|error| error.to_string())?;
    // A version that does not boot was not deployed: the engine still runs the old one.
    for entry in next.functions.values() {
        if let FunctionEntry::Refused(reason) = entry {
            return Err(reason.clone());
        }
    }
    Ok(next)
}

/// Every source file under `root` (skipping hidden directories and `node_modules`) with
/// its size and modification time, in a stable order.
fn sources(root: &Path) -> Vec<(std::path::PathBuf, u64, SystemTime)> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name == "node_modules" || name == "target" {
                continue;
            }
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                pending.push(entry.path());
            } else if files.len() < MAX_WATCHED_FILES {
                let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                files.push((entry.path(), meta.len(), modified));
            }
        }
    }
    files.sort();
    files
}
