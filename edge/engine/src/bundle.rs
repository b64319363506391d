//! A function bundle (its ES modules, by path) and the function spec the engine deploys.

use std::collections::BTreeMap;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use crate::kv::KvBindings;
use crate::limits::Limits;

/// Most modules a bundle read from disk may hold.
pub const MAX_BUNDLE_FILES: usize = 1_000;
/// Most bytes of source a bundle read from disk may hold.
pub const MAX_BUNDLE_BYTES: usize = 64 * 1024 * 1024;

/// The modules of one function version: relative path -> source, plus the entry module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    main: String,
    modules: BTreeMap<String, Arc<str>>,
}

/// A bundle that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// A file is not UTF-8.
    #[error("{path} is not UTF-8 text")]
    NotUtf8 {
        /// The file.
        path: PathBuf,
    },
    /// The entry module is not among the modules.
    #[error("the main module {0:?} is not in the bundle")]
    MissingMain(String),
    /// A module path is not a clean relative path.
    #[error("module path {0:?} must be relative, without '..'")]
    BadPath(String),
    /// The bundle is larger than the engine accepts.
    #[error(
        "the bundle is too large (more than {MAX_BUNDLE_FILES} files or {MAX_BUNDLE_BYTES} bytes)"
    )]
    TooLarge,
}

impl Bundle {
    /// Builds a bundle from in-memory modules; `main` must be one of them.
    pub fn new(
        main: impl Into<String>,
        modules: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Bundle, BundleError> {
        let main = main.into();
        let mut map = BTreeMap::new();
        for (path, source) in modules {
            if path.is_empty()
                || path.starts_with('/')
                || path.split('/').any(|part| part == ".." || part.is_empty())
            {
                return Err(BundleError::BadPath(path));
            }
            map.insert(path, Arc::from(source));
        }
        if !map.contains_key(&main) {
            return Err(BundleError::MissingMain(main));
        }
        Ok(Bundle { main, modules: map })
    }

    /// Reads the entry module at `main` and every `.js`/`.mjs` file beside it (recursively,
    /// skipping hidden directories and `node_modules`) as one bundle.
    pub fn from_entry_file(main: &Path) -> Result<Bundle, BundleError> {
        let root = main.parent().unwrap_or(Path::new("."));
        let main_name = main
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .ok_or_else(|| BundleError::MissingMain(main.display().to_string()))?;
        // The entry file must exist and be readable even if it has an unusual extension.
        let mut modules = vec![(main_name.clone(), read_text(main)?)];
        let mut total = modules[0].1.len();
        collect(root, root, &mut modules, &mut total, &main_name)?;
        Bundle::new(main_name, modules)
    }

    /// The entry module's path.
    pub fn main(&self) -> &str {
        &self.main
    }

    /// Every module, by path.
    pub fn modules(&self) -> impl Iterator<Item = (&str, &Arc<str>)> {
        self.modules
            .iter()
            .map(|(path, source)| (path.as_str(), source))
    }
}

fn read_text(path: &Path) -> Result<String, BundleError> {
    let bytes = std::fs::read(path).map_err(|source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|_| BundleError::NotUtf8 {
        path: path.to_path_buf(),
    })
}

fn collect(
    root: &Path,
    dir: &Path,
    out: &mut Vec<(String, String)>,
    total: &mut usize,
    main: &str,
) -> Result<(), BundleError> {
    let entries = std::fs::read_dir(dir).map_err(|source| BundleError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    paths.sort();
    for path in paths {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') || name == "node_modules" {
            continue;
        }
        if path.is_dir() {
            collect(root, &path, out, total, main)?;
            continue;
        }
        let is_module = path
            .extension()
            .is_some_and(|ext| ext == "js" || ext == "mjs");
        let Ok(relative) = path.strip_prefix(root) else {
            continue;
        };
        let relative = relative.to_string_lossy().replace('\\', "/");
        if !is_module || relative == main {
            continue;
        }
        let source = read_text(&path)?;
        *total += source.len();
        if out.len() >= MAX_BUNDLE_FILES || *total > MAX_BUNDLE_BYTES {
            return Err(BundleError::TooLarge);
        }
        out.push((relative, source));
    }
    Ok(())
}

/// Everything the engine needs to run one version of a function.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// The function's name, unique on the node; routes refer to it.
    pub name: String,
    /// The version label (content hash or deploy id), shown in logs.
    pub version: String,
    /// The code.
    pub bundle: Arc<Bundle>,
    /// `env` as the handler sees it: configured vars (any JSON value) and secrets (strings).
    pub env: serde_json::Map<String, serde_json::Value>,
    /// Resource limits.
    pub limits: Limits,
    /// Boot the isolate when deployed (true) or on the first request (false).
    pub preload: bool,
    /// KV namespaces bound into `env`, and the store behind them.
    pub kv: Option<KvBindings>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn main_must_be_present() {
        let error = Bundle::new("index.js", [("other.js".to_string(), String::new())]);
        assert!(matches!(error, Err(BundleError::MissingMain(main)) if main == "index.js"));
    }

    #[test]
    fn escaping_paths_are_refused() {
        for bad in ["../x.js", "/abs.js", "a//b.js", ""] {
            let error = Bundle::new("x.js", [(bad.to_string(), String::new())]);
            assert!(
                matches!(error, Err(BundleError::BadPath(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn reads_entry_and_sibling_modules() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("outpost-bundle-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("lib"))?;
        std::fs::create_dir_all(dir.join("node_modules"))?;
        std::fs::write(dir.join("index.js"), "import { x } from './lib/x.js';")?;
        std::fs::write(dir.join("lib/x.js"), "export const x = 1;")?;
        std::fs::write(dir.join("notes.txt"), "not a module")?;
        std::fs::write(dir.join("node_modules/skip.js"), "")?;
        let bundle = Bundle::from_entry_file(&dir.join("index.js"))?;
        let paths: Vec<&str> = bundle.modules().map(|(path, _)| path).collect();
        assert_eq!(paths, ["index.js", "lib/x.js"]);
        assert_eq!(bundle.main(), "index.js");
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
