//! Turns a handler's entry point into a bundle: plain JavaScript loads as is; TypeScript, JSX, or a project with npm dependencies goes through esbuild (one ES module plus its source map).
//!
//! The esbuild invocation is the one `js-sdk/BUNDLING.md` documents (and `js-sdk`'s
//! tests run); esbuild comes from npm as part of the project's tooling, never from the
//! network at run time.

use std::path::Path;
use std::path::PathBuf;
use std::process::Command;

use outpost_engine::Bundle;
use outpost_engine::BundleError;

/// Entry extensions that always need bundling.
const COMPILED_EXTENSIONS: [&str; 4] = ["ts", "mts", "tsx", "jsx"];

/// Why a handler could not be bundled.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Reading the sources failed.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// No esbuild executable was found.
    #[error(
        "{entry} needs bundling, but esbuild was not found: run `npm ci` in js-sdk/ (or `npm install esbuild` in the project), or set OUTPOST_ESBUILD"
    )]
    NoEsbuild {
        /// The entry point.
        entry: String,
    },
    /// esbuild failed; its message names the file and line.
    #[error("bundling {entry} failed:\n{message}")]
    Esbuild {
        /// The entry point.
        entry: String,
        /// esbuild's diagnostics.
        message: String,
    },
    /// The output directory could not be written or read.
    #[error("bundling {entry}: {source}")]
    Io {
        /// The entry point.
        entry: String,
        /// The IO error.
        source: std::io::Error,
    },
}

/// Loads the function whose entry module is `main`, in the project at `project_dir`.
pub fn load_entry(main: &Path, project_dir: &Path) -> Result<Bundle, BuildError> {
    let compiled = main
        .extension()
        .and_then(|ext| ext.to_str())
        .is_some_and(|ext| COMPILED_EXTENSIONS.contains(&ext));
    if compiled || project_dir.join("package.json").exists() {
        esbuild(main, project_dir)
    } else {
        Ok(Bundle::from_entry_file(main)?)
    }
}

fn esbuild(main: &Path, project_dir: &Path) -> Result<Bundle, BuildError> {
    let entry = main.display().to_string();
    let io = |source| BuildError::Io {
        entry: entry.clone(),
        source,
    };
    let esbuild = find_esbuild(main).ok_or_else(|| BuildError::NoEsbuild {
        entry: entry.clone(),
    })?;
    // esbuild runs in the project directory: give it paths that do not depend on ours.
    let main = &std::fs::canonicalize(main).map_err(io)?;
    let project_dir = &std::fs::canonicalize(project_dir).map_err(io)?;
    let stem = main
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| "index".into());
    let work = main.parent().unwrap_or(Path::new(".")).join(".outpost");
    let out_dir = work.join(stem);
    std::fs::create_dir_all(&out_dir).map_err(io)?;
    let _ = std::fs::write(work.join(".gitignore"), "*\n");
    let out_file = out_dir.join("index.js");
    let output = Command::new(&esbuild)
        .current_dir(project_dir)
        .arg(main)
        .args([
            "--bundle",
            "--format=esm",
            "--platform=neutral",
            "--target=es2022",
            "--main-fields=browser,module,main",
            "--conditions=workerd,worker,browser",
            "--define:process.env.NODE_ENV=\"production\"",
            "--sourcemap=linked",
            "--log-level=warning",
        ])
        .arg(format!("--outfile={}", out_file.display()))
        .output()
        .map_err(io)?;
    if !output.status.success() {
        return Err(BuildError::Esbuild {
            entry,
            message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    let warnings = String::from_utf8_lossy(&output.stderr);
    if !warnings.trim().is_empty() {
        tracing::warn!(target: "outpost::bundler", entry, "esbuild: {}", warnings.trim());
    }
    let code = std::fs::read_to_string(&out_file).map_err(io)?;
    let map = std::fs::read_to_string(out_dir.join("index.js.map")).map_err(io)?;
    // Sources in the map are relative to the output directory; make them relative to
    // the project directory so stack traces read `file:///src/index.ts:3:11`.
    let map = relocate_sources(&map, &out_dir, project_dir);
    Ok(Bundle::new(
        "index.js",
        [
            ("index.js".to_string(), code),
            ("index.js.map".to_string(), map),
        ],
    )?)
}

/// Rewrites a source map's `sources` from `from`-relative to `to`-relative paths.
fn relocate_sources(map: &str, from: &Path, to: &Path) -> String {
    let Ok(mut json) = serde_json::from_str::<serde_json::Value>(map) else {
        return map.to_string();
    };
    let (Ok(from), Ok(to)) = (std::fs::canonicalize(from), std::fs::canonicalize(to)) else {
        return map.to_string();
    };
    if let Some(sources) = json.get_mut("sources").and_then(|s| s.as_array_mut()) {
        for source in sources.iter_mut() {
            let Some(relative) = source.as_str() else {
                continue;
            };
            let absolute = normalize(&from.join(relative));
            if let Ok(inside) = absolute.strip_prefix(&to) {
                *source = serde_json::Value::String(inside.to_string_lossy().into_owned());
            }
        }
    }
    json.to_string()
}

/// Resolves `.` and `..` without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// `$OUTPOST_ESBUILD`, then `node_modules/.bin/esbuild` in the entry's directory or any
/// parent, then the copy installed in this repository's `js-sdk/`.
fn find_esbuild(main: &Path) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("OUTPOST_ESBUILD") {
        return Some(PathBuf::from(path));
    }
    let start = std::fs::canonicalize(main).ok()?;
    for dir in start.ancestors().skip(1) {
        let candidate = dir.join("node_modules/.bin/esbuild");
        if candidate.exists() {
            return Some(candidate);
        }
    }
    let bundled =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../js-sdk/node_modules/.bin/esbuild");
    bundled.exists().then_some(bundled)
}
