//! Node configuration: the TOML file an operator writes, checked as a whole and turned into a ready-to-serve setup.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use outpost_engine::Bundle;
use outpost_engine::EngineConfig;
use outpost_engine::FunctionSpec;
use outpost_engine::Limits;
use outpost_engine::kv::KvBindings;
pub use outpost_proto::OriginSpec;
use outpost_routing::RouteRule;
use outpost_routing::RouteTable;
use serde::Deserialize;

use crate::kv::KvCacheSettings;
use crate::kv::LocalKv;

/// Default listen address of a node.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default largest request body a function or origin route accepts (100 MiB).
pub const DEFAULT_MAX_BODY_BYTES: u64 = 100 * 1024 * 1024;
/// Default size of the origin response cache (256 MiB).
pub const DEFAULT_CACHE_MB: u64 = 256;

/// The node's config file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The HTTP listener.
    #[serde(default)]
    pub server: ServerSection,
    /// The JavaScript engine.
    #[serde(default)]
    pub engine: EngineSection,
    /// Functions this node runs.
    #[serde(default)]
    pub functions: Vec<FunctionSection>,
    /// Origins this node proxies to.
    #[serde(default)]
    pub origins: Vec<OriginSpec>,
    /// Ordered routes; the first match wins.
    #[serde(default)]
    pub routes: Vec<RouteRule>,
    /// The KV cache of a node that follows control.
    #[serde(default)]
    pub kv: KvSection,
}

/// `[kv]`: the cache in front of control's KV namespaces (used under `--control`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KvSection {
    /// Bytes the cache may hold (keys, values, metadata), in MiB.
    pub cache_mb: u64,
    /// How long a read is served from the cache when the handler passes no `cacheTtl`, in seconds.
    pub cache_ttl_secs: u64,
    /// How long past its `cacheTtl` an entry is still served while control is
    /// unreachable, in seconds (0: never).
    pub stale_if_error_secs: u64,
    /// How long a read or write waits for control, in milliseconds.
    pub timeout_ms: u64,
}

impl Default for KvSection {
    fn default() -> Self {
        KvSection {
            cache_mb: 64,
            cache_ttl_secs: 60,
            stale_if_error_secs: 300,
            timeout_ms: 5000,
        }
    }
}

impl KvSection {
    /// The cache settings, checked.
    pub fn settings(&self) -> Result<KvCacheSettings, ConfigError> {
        if self.cache_ttl_secs == 0 || self.timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "kv.cache_ttl_secs and kv.timeout_ms must be at least 1".into(),
            ));
        }
        Ok(KvCacheSettings {
            max_bytes: self.cache_mb.saturating_mul(1024 * 1024),
            cache_ttl: Duration::from_secs(self.cache_ttl_secs),
            stale_if_error: Duration::from_secs(self.stale_if_error_secs),
            timeout: Duration::from_millis(self.timeout_ms),
        })
    }
}

/// `[server]`: the HTTP listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Address to listen on.
    pub listen: String,
    /// Worker threads, each accepting connections and running isolates; 0 means one per core.
    pub threads: usize,
    /// Largest request body accepted, in bytes (larger gets 413).
    pub max_body_bytes: u64,
    /// Origin for requests that match a `bypass` route.
    pub default_origin: Option<String>,
    /// Size of the origin response cache, in MiB.
    pub cache_mb: u64,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: DEFAULT_LISTEN.into(),
            threads: 0,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            default_origin: None,
            cache_mb: DEFAULT_CACHE_MB,
        }
    }
}

/// `[engine]`: the isolates' memory, spare isolates and the Cache API store.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSection {
    /// V8 heap all isolates may hold before idle ones are evicted, in MiB.
    pub memory_budget_mb: u64,
    /// Keep a blank isolate ready on each worker for cold starts.
    pub spare_isolate: bool,
    /// Size of the Cache API store (`caches.default`), in MiB; 0 switches it off.
    pub cache_api_mb: u64,
}

impl Default for EngineSection {
    fn default() -> Self {
        EngineSection {
            memory_budget_mb: 1024,
            spare_isolate: true,
            cache_api_mb: 64,
        }
    }
}

/// `[[functions]]`: one function.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionSection {
    /// Unique name; routes refer to it.
    pub name: String,
    /// Entry module; relative paths are resolved against the config file's directory.
    /// Every `.js`/`.mjs` file under the entry's directory is part of the bundle.
    pub main: PathBuf,
    /// `env` vars (any TOML value, seen as JSON).
    #[serde(default)]
    pub vars: toml::Table,
    /// `env` secrets (strings).
    #[serde(default)]
    pub secrets: HashMap<String, String>,
    /// Resource limits (defaults documented on [`Limits`]).
    #[serde(default)]
    pub limits: Limits,
    /// Boot at startup (true) or on the first request (false).
    #[serde(default = "yes")]
    pub preload: bool,
    /// `[[functions.kv_namespaces]]`: KV namespaces reached as `env.<binding>`, stored
    /// in `.outpost/kv.sqlite` next to the config.
    #[serde(default)]
    pub kv_namespaces: Vec<outpost_proto::KvBinding>,
}

fn yes() -> bool {
    true
}

/// A parsed origin, ready for the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The origin's name.
    pub name: String,
    /// `host:port` to connect to.
    pub address: String,
    /// Connect with TLS.
    pub tls: bool,
    /// Name for SNI and certificate checks.
    pub sni: String,
    /// Cache responses.
    pub cache: bool,
    /// Host header override.
    pub host: Option<String>,
}

/// A config that cannot be served; the message names the file, key or route at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The TOML is malformed or has an unknown/mistyped key (message has line and column).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message, with line, column and key.
        message: String,
    },
    /// A value is wrong.
    #[error("{0}")]
    Invalid(String),
}

/// A function that was configured but refused (its bundle does not load or boot).
#[derive(Debug, Clone)]
pub struct RefusedFunction {
    /// The function's name.
    pub name: String,
    /// Why, naming the file and line where there is one.
    pub reason: String,
}

/// Everything a node needs to start serving.
#[derive(Debug)]
pub struct NodeSetup {
    /// Listen address.
    pub listen: SocketAddr,
    /// Worker threads, V8 heap budget and spare isolates.
    pub engine: EngineConfig,
    /// Largest request body.
    pub max_body_bytes: u64,
    /// Origin cache size in bytes.
    pub cache_bytes: usize,
    /// The KV cache under control.
    pub kv: KvCacheSettings,
    /// What a node without control serves (ignored under control).
    pub local: LocalSetup,
}

/// The functions, routes and origins of a local config.
#[derive(Debug, Default)]
pub struct LocalSetup {
    /// Origin for `bypass` routes.
    pub default_origin: Option<String>,
    /// Functions to deploy.
    pub functions: Vec<FunctionSpec>,
    /// Functions whose bundle could not be read.
    pub refused: Vec<RefusedFunction>,
    /// Origins by name.
    pub origins: HashMap<String, Arc<Origin>>,
    /// Routes.
    pub routes: RouteTable,
}

impl NodeConfig {
    /// The same config listening on `listen`.
    pub fn with_listen(mut self, listen: SocketAddr) -> NodeConfig {
        self.server.listen = listen.to_string();
        self
    }

    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        read_toml(path)
    }

    /// Checks the whole config and reads every bundle. A function whose bundle cannot be
    /// read is refused (listed in `refused`) and the rest are served.
    pub fn into_setup(self, base_dir: &Path) -> Result<NodeSetup, ConfigError> {
        let listen: SocketAddr = self.server.listen.parse().map_err(|_| {
            ConfigError::Invalid(format!(
                "server.listen {:?} is not an ip:port address",
                self.server.listen
            ))
        })?;
        let mut functions = Vec::new();
        let mut refused = Vec::new();
        let mut local_kv = None;
        let mut names = std::collections::HashSet::new();
        for function in self.functions {
            if function.name.trim().is_empty() {
                return Err(ConfigError::Invalid(
                    "functions: a function has an empty name".into(),
                ));
            }
            if !names.insert(function.name.clone()) {
                return Err(ConfigError::Invalid(format!(
                    "functions: the name {:?} is used twice",
                    function.name
                )));
            }
            function.limits.validate().map_err(|error| {
                ConfigError::Invalid(format!("function {:?}: {error}", function.name))
            })?;
            let main = base_dir.join(&function.main);
            match crate::bundler::load_entry(&main, base_dir) {
                Ok(bundle) => {
                    let kv = kv_bindings(&function, base_dir, &mut local_kv)?;
                    functions.push(spec(function, bundle, kv)?)
                }
                Err(error) => refused.push(RefusedFunction {
                    name: function.name,
                    reason: error.to_string(),
                }),
            }
        }
        let mut origins = HashMap::new();
        for origin in self.origins {
            let parsed = parse_origin(&origin)?;
            if origins
                .insert(origin.name.clone(), Arc::new(parsed))
                .is_some()
            {
                return Err(ConfigError::Invalid(format!(
                    "origins: the name {:?} is used twice",
                    origin.name
                )));
            }
        }
        let routes = RouteTable::new(self.routes)
            .map_err(|error| ConfigError::Invalid(format!("routes: {error}")))?;
        routes
            .check_targets(
                |name| names.contains(name),
                |name| origins.contains_key(name),
            )
            .map_err(|error| ConfigError::Invalid(format!("routes: {error}")))?;
        if let Some(origin) = &self.server.default_origin
            && !origins.contains_key(origin)
        {
            return Err(ConfigError::Invalid(format!(
                "server.default_origin {origin:?} is not configured"
            )));
        }
        Ok(NodeSetup {
            listen,
            engine: EngineConfig {
                threads: self.server.threads,
                memory_budget_bytes: mib(self.engine.memory_budget_mb),
                spare_isolate: self.engine.spare_isolate,
                cache_api_bytes: mib(self.engine.cache_api_mb),
            },
            max_body_bytes: self.server.max_body_bytes,
            cache_bytes: mib(self.server.cache_mb),
            kv: self.kv.settings()?,
            local: LocalSetup {
                default_origin: self.server.default_origin,
                functions,
                refused,
                origins,
                routes,
            },
        })
    }
}

/// Reads a TOML file into `T`; errors name the file (and toml's line, column and key).
fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    toml::from_str(&text).map_err(|error| ConfigError::Parse {
        path: path.into(),
        message: error.to_string(),
    })
}

fn mib(value: u64) -> usize {
    usize::try_from(value.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
}

/// The function's KV bindings over the config's local store (opened on first use).
fn kv_bindings(
    function: &FunctionSection,
    base_dir: &Path,
    store: &mut Option<Arc<LocalKv>>,
) -> Result<Option<KvBindings>, ConfigError> {
    if function.kv_namespaces.is_empty() {
        return Ok(None);
    }
    let mut namespaces = std::collections::BTreeMap::new();
    for binding in &function.kv_namespaces {
        let invalid = |error: outpost_proto::kv::KvLimitError| {
            ConfigError::Invalid(format!(
                "function {:?}: kv_namespaces: {error}",
                function.name
            ))
        };
        outpost_proto::kv::check_binding_name(&binding.binding).map_err(invalid)?;
        outpost_proto::kv::check_namespace_name(&binding.namespace).map_err(invalid)?;
        namespaces.insert(binding.binding.clone(), binding.namespace.clone());
    }
    let store = match store {
        Some(store) => store.clone(),
        None => {
            let path = base_dir.join(".outpost").join("kv.sqlite");
            let opened = Arc::new(LocalKv::open(&path).map_err(|error| {
                ConfigError::Invalid(format!("opening the KV store {}: {error}", path.display()))
            })?);
            *store = Some(opened.clone());
            opened
        }
    };
    Ok(Some(KvBindings { store, namespaces }))
}

fn spec(
    function: FunctionSection,
    bundle: Bundle,
    kv: Option<KvBindings>,
) -> Result<FunctionSpec, ConfigError> {
    let mut vars = serde_json::Map::new();
    for (key, value) in function.vars {
        let value = serde_json::to_value(value).map_err(|error| {
            ConfigError::Invalid(format!("function {:?}: vars.{key}: {error}", function.name))
        })?;
        vars.insert(key, value);
    }
    Ok(FunctionSpec {
        version: "local".into(),
        env: function_env(vars, function.secrets),
        name: function.name,
        bundle: Arc::new(bundle),
        limits: function.limits,
        preload: function.preload,
        kv,
    })
}

/// A function's `env`: its vars, then its secrets (as strings; a secret wins over a var
/// of the same name).
pub fn function_env(
    vars: serde_json::Map<String, serde_json::Value>,
    secrets: impl IntoIterator<Item = (String, String)>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut env = vars;
    for (key, value) in secrets {
        env.insert(key, serde_json::Value::String(value));
    }
    env
}

/// Checks an origin's URL and resolves it into what the proxy connects to.
pub fn parse_origin(origin: &OriginSpec) -> Result<Origin, ConfigError> {
    let invalid = |why: &str| {
        ConfigError::Invalid(format!(
            "origin {:?}: url {:?} {why}",
            origin.name, origin.url
        ))
    };
    let (tls, rest) = if let Some(rest) = origin.url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = origin.url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(invalid("must start with http:// or https://"));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(invalid("has no host"));
    }
    let (host, address) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            if port.parse::<u16>().is_err() {
                return Err(invalid("has a bad port"));
            }
            (
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                authority.to_string(),
            )
        }
        _ => (
            authority.to_string(),
            format!("{authority}:{}", if tls { 443 } else { 80 }),
        ),
    };
    Ok(Origin {
        name: origin.name.clone(),
        address,
        tls,
        sni: host,
        cache: origin.cache,
        host: origin.host.clone(),
    })
}

/// `outpost.toml` next to a handler (like wrangler.toml): what `outpost dev` reads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectManifest {
    /// The function's name.
    pub name: String,
    /// Entry module, relative to the manifest.
    #[serde(default = "default_main")]
    pub main: PathBuf,
    /// `env` vars.
    #[serde(default)]
    pub vars: toml::Table,
    /// Local secrets for development (deployed secrets are set separately).
    #[serde(default)]
    pub secrets: HashMap<String, String>,
    /// Resource limits.
    #[serde(default)]
    pub limits: Limits,
    /// Routes on a real node (`outpost dev` serves every path).
    #[serde(default)]
    pub routes: Vec<RouteRule>,
    /// Origins the function's routes may fall back to.
    #[serde(default)]
    pub origins: Vec<OriginSpec>,
    /// `[[kv_namespaces]]`: KV namespaces the function reaches as `env.<binding>`.
    #[serde(default)]
    pub kv_namespaces: Vec<outpost_proto::KvBinding>,
}

impl ProjectManifest {
    /// The manifest of a bare handler file: defaults for everything but its name and entry.
    fn for_entry(name: String, main: PathBuf) -> ProjectManifest {
        ProjectManifest {
            name,
            main,
            vars: toml::Table::new(),
            secrets: HashMap::new(),
            limits: Limits::default(),
            routes: Vec::new(),
            origins: Vec::new(),
            kv_namespaces: Vec::new(),
        }
    }
}

fn default_main() -> PathBuf {
    PathBuf::from("index.js")
}

/// Reads a project: `path` is a handler file (named after its stem), or a directory with
/// an `outpost.toml` (or just an `index.js`). Returns the manifest and the directory its
/// paths are relative to.
pub fn load_project(path: &Path) -> Result<(ProjectManifest, PathBuf), ConfigError> {
    Ok(if path.is_dir() {
        let manifest_path = path.join("outpost.toml");
        let manifest = if manifest_path.exists() {
            read_toml::<ProjectManifest>(&manifest_path)?
        } else {
            ProjectManifest::for_entry(dir_name(path), default_main())
        };
        (manifest, path.to_path_buf())
    } else {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "handler".into());
        let main = path
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(default_main);
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        (ProjectManifest::for_entry(name, main), base)
    })
}

/// Builds the config `outpost dev` serves: one function answering every path on `listen`.
/// `path` is a handler file, or a directory with an `outpost.toml` (or an `index.js`).
pub fn dev_config(path: &Path, listen: SocketAddr) -> Result<(NodeConfig, PathBuf), ConfigError> {
    let (manifest, base) = load_project(path)?;
    let fallback = manifest.origins.first().map(|origin| origin.name.clone());
    let config = NodeConfig {
        server: ServerSection {
            listen: listen.to_string(),
            threads: 1,
            ..ServerSection::default()
        },
        engine: EngineSection::default(),
        kv: KvSection::default(),
        routes: vec![RouteRule {
            function: Some(manifest.name.clone()),
            origin: fallback,
            ..RouteRule::default()
        }],
        functions: vec![FunctionSection {
            name: manifest.name,
            main: manifest.main,
            vars: manifest.vars,
            secrets: manifest.secrets,
            limits: manifest.limits,
            preload: true,
            kv_namespaces: manifest.kv_namespaces,
        }],
        origins: manifest.origins,
    };
    Ok((config, base))
}

fn dir_name(path: &Path) -> String {
    std::fs::canonicalize(path)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "handler".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NodeConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let error = parse("[server]\nlisten = \"127.0.0.1:1\"\nthreds = 2\n")
            .err()
            .map(|e| e.to_string());
        let error = error.unwrap_or_default();
        assert!(error.contains("line 3"), "{error}");
        assert!(error.contains("threds"), "{error}");
    }

    #[test]
    fn route_to_unknown_function_is_refused() -> Result<(), toml::de::Error> {
        let config = parse("[[routes]]\npath = \"/*\"\nfunction = \"ghost\"\n")?;
        let error = config
            .into_setup(Path::new("."))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.contains("route #1") && error.contains("ghost"),
            "{error}"
        );
        Ok(())
    }

    #[test]
    fn missing_bundle_refuses_only_that_function() -> Result<(), Box<dyn std::error::Error>> {
        let config =
            parse("[[functions]]\nname = \"gone\"\nmain = \"/nonexistent/outpost/index.js\"\n")?;
        let setup = config.into_setup(Path::new("."))?;
        assert!(setup.local.functions.is_empty());
        assert_eq!(setup.local.refused.len(), 1);
        assert!(
            setup.local.refused[0]
                .reason
                .contains("/nonexistent/outpost/index.js")
        );
        Ok(())
    }

    #[test]
    fn origins_parse_with_default_ports() -> Result<(), ConfigError> {
        let origin = |url: &str| OriginSpec {
            name: "o".into(),
            url: url.into(),
            cache: true,
            host: None,
        };
        let plain = parse_origin(&origin("http://example.com"))?;
        assert_eq!(
            (plain.address.as_str(), plain.tls),
            ("example.com:80", false)
        );
        let tls = parse_origin(&origin("https://example.com:8443/ignored"))?;
        assert_eq!(
            (tls.address.as_str(), tls.tls, tls.sni.as_str()),
            ("example.com:8443", true, "example.com")
        );
        let v6 = parse_origin(&origin("http://[::1]:9000"))?;
        assert_eq!(
            (v6.address.as_str(), v6.sni.as_str()),
            ("[::1]:9000", "::1")
        );
        assert!(parse_origin(&origin("ftp://example.com")).is_err());
        assert!(parse_origin(&origin("http://example.com:notaport")).is_err());
        Ok(())
    }

    #[test]
    fn bad_listen_address_is_named() -> Result<(), toml::de::Error> {
        let config = parse("[server]\nlisten = \"localhost\"\n")?;
        let error = config
            .into_setup(Path::new("."))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("server.listen"), "{error}");
        Ok(())
    }
}
