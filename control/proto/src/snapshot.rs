//! The versioned snapshot control publishes and every node applies as a whole: functions, their live versions, routes, origins, KV namespaces.
//!
//! KV fields are left out of the JSON while empty, so a snapshot without KV reads the
//! same to nodes that predate it; every new field has a serde default, so older JSON
//! still parses.

use std::collections::BTreeMap;
use std::collections::HashSet;
use std::fmt;

use outpost_routing::RouteError;
use outpost_routing::RouteRule;
use outpost_routing::RouteTable;
use serde::Deserialize;
use serde::Serialize;

use crate::bundle::BundleHash;
use crate::kv::KvLimitError;
use crate::kv::check_binding_name;
use crate::kv::check_namespace_name;

/// Everything a node serves, immutable once published. `version` only grows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Snapshot version; a node ACKs or NACKs exactly this number.
    pub version: u64,
    /// Every function with its live version(s).
    pub functions: Vec<FunctionRelease>,
    /// Ordered routes (first match wins), as in a node's local config.
    pub routes: Vec<RouteRule>,
    /// Origins the routes may name.
    pub origins: Vec<OriginSpec>,
    /// Every KV namespace that exists, sorted; deployments may bind only these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kv_namespaces: Vec<String>,
}

/// One function and the version(s) serving it: one, or two while a gradual deploy runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionRelease {
    /// The function's name, as routes refer to it.
    pub name: String,
    /// Live versions, newest first; their `percent`s sum to 100.
    pub deployments: Vec<Deployment>,
}

/// One immutable function version and the share of clients it serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    /// Function version number (1, 2, ...).
    pub version: u64,
    /// The bundle archive this version runs.
    pub bundle: BundleHash,
    /// Percentage of clients served by this version.
    pub percent: u8,
    /// `env` vars, as deployed.
    #[serde(default)]
    pub vars: serde_json::Map<String, serde_json::Value>,
    /// `env` secrets; never printed.
    #[serde(default)]
    pub secrets: Secrets,
    /// The `[limits]` table as deployed (keys of the engine's limits).
    #[serde(default)]
    pub limits: serde_json::Map<String, serde_json::Value>,
    /// KV namespaces the version reaches through `env`, as deployed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kv: Vec<KvBinding>,
}

/// `[[kv_namespaces]]` in `outpost.toml`: a function reaches `namespace` as `env.<binding>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvBinding {
    /// The name on `env` (a JavaScript identifier).
    pub binding: String,
    /// The namespace, as created through control.
    pub namespace: String,
}

/// Secret values by name. `Debug` shows names only, so they never reach a log.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secrets(pub BTreeMap<String, String>);

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// `[[origins]]`: an upstream HTTP server routes may proxy to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginSpec {
    /// Unique name; routes refer to it.
    pub name: String,
    /// `http://host:port` or `https://host:port`.
    pub url: String,
    /// Cache responses according to their Cache-Control.
    #[serde(default = "yes")]
    pub cache: bool,
    /// Host header sent upstream (default: the client's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

fn yes() -> bool {
    true
}

/// Why a snapshot is inconsistent and must not be published or applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Two functions or origins share a name.
    #[error("{kind} {name:?} appears twice")]
    Duplicate {
        /// `function`, `origin` or `KV namespace`.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// A function has no live version, too many, or shares that do not add up.
    #[error("function {name:?}: {reason}")]
    BadRelease {
        /// The function.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A route is invalid or names a missing function or origin.
    #[error("routes: {0}")]
    Route(#[from] RouteError),
    /// A KV namespace or binding name is invalid, repeated, or a binding names a
    /// namespace the snapshot does not contain.
    #[error("{0}")]
    Kv(String),
}

impl Snapshot {
    /// Checks the snapshot is internally consistent (the `Consistent()` of xDS caches):
    /// unique names, one or two live versions per function with shares summing to 100,
    /// routes valid and naming only functions and origins it contains, KV bindings
    /// unique per deployment, named as JavaScript identifiers, and naming only
    /// namespaces it contains.
    pub fn check(&self) -> Result<RouteTable, SnapshotError> {
        let mut namespaces = HashSet::new();
        for namespace in &self.kv_namespaces {
            check_namespace_name(namespace).map_err(kv_error)?;
            if !namespaces.insert(namespace.as_str()) {
                return Err(SnapshotError::Duplicate {
                    kind: "KV namespace",
                    name: namespace.clone(),
                });
            }
        }
        let mut functions = HashSet::new();
        for function in &self.functions {
            if !functions.insert(function.name.as_str()) {
                return Err(SnapshotError::Duplicate {
                    kind: "function",
                    name: function.name.clone(),
                });
            }
            function.check()?;
            for deployment in &function.deployments {
                deployment.check_kv(&function.name, &namespaces)?;
            }
        }
        let mut origins = HashSet::new();
        for origin in &self.origins {
            if !origins.insert(origin.name.as_str()) {
                return Err(SnapshotError::Duplicate {
                    kind: "origin",
                    name: origin.name.clone(),
                });
            }
        }
        let table = RouteTable::new(self.routes.clone())?;
        table.check_targets(
            |name| functions.contains(name),
            |name| origins.contains(name),
        )?;
        Ok(table)
    }

    /// Every bundle the snapshot needs, without repeats.
    pub fn bundles(&self) -> impl Iterator<Item = &BundleHash> {
        let mut seen = HashSet::new();
        self.functions
            .iter()
            .flat_map(|function| &function.deployments)
            .map(|deployment| &deployment.bundle)
            .filter(move |hash| seen.insert(*hash))
    }
}

impl FunctionRelease {
    fn check(&self) -> Result<(), SnapshotError> {
        let bad = |reason: String| SnapshotError::BadRelease {
            name: self.name.clone(),
            reason,
        };
        if self.name.trim().is_empty() {
            return Err(bad("the name is empty".into()));
        }
        match self.deployments.len() {
            1 | 2 => {}
            n => return Err(bad(format!("{n} live versions (must be 1 or 2)"))),
        }
        let total: u32 = self
            .deployments
            .iter()
            .map(|deployment| u32::from(deployment.percent))
            .sum();
        if total != 100 {
            return Err(bad(format!("version shares add up to {total}%, not 100%")));
        }
        if self
            .deployments
            .windows(2)
            .any(|pair| pair[0].version <= pair[1].version)
        {
            return Err(bad("live versions must be listed newest first".into()));
        }
        Ok(())
    }
}

impl Deployment {
    fn check_kv(&self, function: &str, namespaces: &HashSet<&str>) -> Result<(), SnapshotError> {
        let mut bindings = HashSet::new();
        for binding in &self.kv {
            let context = |reason: String| {
                SnapshotError::Kv(format!("function {function:?} v{}: {reason}", self.version))
            };
            check_binding_name(&binding.binding).map_err(|error| context(error.to_string()))?;
            if !bindings.insert(binding.binding.as_str()) {
                return Err(context(format!(
                    "KV binding {:?} appears twice",
                    binding.binding
                )));
            }
            if !namespaces.contains(binding.namespace.as_str()) {
                return Err(context(format!(
                    "KV binding {:?} refers to namespace {:?}, which does not exist",
                    binding.binding, binding.namespace
                )));
            }
        }
        Ok(())
    }
}

fn kv_error(error: KvLimitError) -> SnapshotError {
    SnapshotError::Kv(error.to_string())
}

/// Which of a function's live deployments serves a client in `bucket` (0..100, stable
/// per client): the newest version takes the lowest buckets, so raising its percentage
/// only moves clients onto it, never back. Returns the index into `percents`.
pub fn pick_deployment(percents: impl IntoIterator<Item = u8>, bucket: u8) -> usize {
    let mut upper = 0u32;
    let mut last = 0;
    for (index, percent) in percents.into_iter().enumerate() {
        upper += u32::from(percent);
        last = index;
        if u32::from(bucket) < upper {
            return index;
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(version: u64, percent: u8) -> Deployment {
        Deployment {
            version,
            bundle: BundleHash::of(format!("v{version}").as_bytes()),
            percent,
            vars: serde_json::Map::new(),
            secrets: Secrets::default(),
            limits: serde_json::Map::new(),
            kv: Vec::new(),
        }
    }

    fn binding(binding: &str, namespace: &str) -> KvBinding {
        KvBinding {
            binding: binding.into(),
            namespace: namespace.into(),
        }
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            version: 7,
            functions: vec![FunctionRelease {
                name: "api".into(),
                deployments: vec![deployment(3, 10), deployment(2, 90)],
            }],
            routes: vec![RouteRule {
                path: Some("/api/*".into()),
                function: Some("api".into()),
                origin: Some("site".into()),
                ..RouteRule::default()
            }],
            origins: vec![OriginSpec {
                name: "site".into(),
                url: "http://127.0.0.1:9".into(),
                cache: true,
                host: None,
            }],
            kv_namespaces: vec!["cache".into(), "sessions".into()],
        }
    }

    #[test]
    fn consistent_snapshot_passes_and_compiles_its_routes() -> Result<(), SnapshotError> {
        let table = snapshot().check()?;
        assert_eq!(table.len(), 1);
        Ok(())
    }

    #[test]
    fn route_to_missing_function_is_named() {
        let mut bad = snapshot();
        bad.routes[0].function = Some("gone".into());
        let error = bad.check().map(|_| ()).map_err(|e| e.to_string());
        assert_eq!(
            error,
            Err("routes: route #1 refers to function \"gone\", which is not configured".into())
        );
    }

    #[test]
    fn route_to_missing_origin_is_refused() {
        let mut bad = snapshot();
        bad.origins.clear();
        assert!(matches!(
            bad.check(),
            Err(SnapshotError::Route(RouteError::UnknownOrigin { .. }))
        ));
    }

    #[test]
    fn shares_must_sum_to_100_newest_first() {
        let mut bad = snapshot();
        bad.functions[0].deployments[0].percent = 20;
        assert!(matches!(bad.check(), Err(SnapshotError::BadRelease { .. })));
        let mut reversed = snapshot();
        reversed.functions[0].deployments.reverse();
        assert!(matches!(
            reversed.check(),
            Err(SnapshotError::BadRelease { .. })
        ));
        let mut none = snapshot();
        none.functions[0].deployments.clear();
        assert!(matches!(
            none.check(),
            Err(SnapshotError::BadRelease { .. })
        ));
    }

    #[test]
    fn duplicate_names_are_refused() {
        let mut bad = snapshot();
        bad.functions.push(bad.functions[0].clone());
        assert!(matches!(
            bad.check(),
            Err(SnapshotError::Duplicate {
                kind: "function",
                ..
            })
        ));
    }

    #[test]
    fn kv_bindings_must_name_existing_namespaces_once_as_identifiers() -> Result<(), SnapshotError>
    {
        let mut good = snapshot();
        good.functions[0].deployments[0].kv =
            vec![binding("CACHE", "cache"), binding("SESSIONS", "sessions")];
        good.functions[0].deployments[1].kv = vec![binding("CACHE", "cache")];
        good.check()?;

        let mut unknown = snapshot();
        unknown.functions[0].deployments[1].kv = vec![binding("CACHE", "gone")];
        assert_eq!(
            unknown.check().map(|_| ()).map_err(|e| e.to_string()),
            Err("function \"api\" v2: KV binding \"CACHE\" refers to namespace \"gone\", which does not exist".into())
        );
        let mut twice = snapshot();
        twice.functions[0].deployments[0].kv =
            vec![binding("CACHE", "cache"), binding("CACHE", "sessions")];
        assert!(matches!(twice.check(), Err(SnapshotError::Kv(m)) if m.contains("appears twice")));
        let mut not_identifier = snapshot();
        not_identifier.functions[0].deployments[0].kv = vec![binding("my-cache", "cache")];
        assert!(matches!(
            not_identifier.check(),
            Err(SnapshotError::Kv(m)) if m.contains("JavaScript identifier")
        ));
        let mut repeated = snapshot();
        repeated.kv_namespaces.push("cache".into());
        assert!(matches!(
            repeated.check(),
            Err(SnapshotError::Duplicate {
                kind: "KV namespace",
                ..
            })
        ));
        let mut bad_name = snapshot();
        bad_name.kv_namespaces.push("a b".into());
        assert!(matches!(bad_name.check(), Err(SnapshotError::Kv(_))));
        Ok(())
    }

    #[test]
    fn kv_fields_default_and_stay_out_of_json_while_empty() -> Result<(), serde_json::Error> {
        let mut plain = snapshot();
        plain.kv_namespaces.clear();
        let text = serde_json::to_string(&plain)?;
        assert!(!text.contains("kv"), "{text}");
        assert_eq!(serde_json::from_str::<Snapshot>(&text)?, plain);

        let mut with_kv = snapshot();
        with_kv.functions[0].deployments[0].kv = vec![binding("CACHE", "cache")];
        let text = serde_json::to_string(&with_kv)?;
        assert!(
            text.contains(r#""kv":[{"binding":"CACHE","namespace":"cache"}]"#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Snapshot>(&text)?, with_kv);
        Ok(())
    }

    #[test]
    fn newest_version_takes_the_lowest_buckets() {
        let shares = [10u8, 90];
        let picks: Vec<usize> = (0..100).map(|b| pick_deployment(shares, b)).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 10);
        assert!(picks[..10].iter().all(|&i| i == 0));
        // Raising the share keeps every client already on the new version there.
        for bucket in 0..100 {
            if pick_deployment([10, 90], bucket) == 0 {
                assert_eq!(pick_deployment([50, 50], bucket), 0);
            }
        }
        assert_eq!(pick_deployment([100], 99), 0);
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let mut with_secret = deployment(1, 100);
        with_secret
            .secrets
            .0
            .insert("TOKEN".into(), "hunter2".into());
        let printed = format!("{with_secret:?}");
        assert!(printed.contains("TOKEN"));
        assert!(!printed.contains("hunter2"));
    }

    #[test]
    fn bundles_are_listed_once() {
        let mut two = snapshot();
        two.functions[0].deployments[1].bundle = two.functions[0].deployments[0].bundle.clone();
        assert_eq!(two.bundles().count(), 1);
    }
}
