//! Turns a control snapshot into a running [`ServingState`]: boot every new version, then swap routes and functions at once, or refuse the whole snapshot.

use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::Arc;

use arc_swap::ArcSwap;
use outpost_engine::Bundle;
use outpost_engine::Engine;
use outpost_engine::FunctionSpec;
use outpost_engine::Limits;
use outpost_engine::kv::KvBindings;
use outpost_engine::kv::KvStore;
use outpost_proto::Deployment;
use outpost_proto::Snapshot;
use sha2::Digest;

use crate::config::function_env;
use crate::config::parse_origin;
use crate::serving::FunctionEntry;
use crate::serving::LiveKey;
use crate::serving::ServingState;
use crate::sync::disk::NodeStore;

/// Applies snapshots to the engine and the proxy's state, remembering which function
/// versions it has deployed so unchanged ones keep their warm isolates.
pub struct Applier {
    engine: Arc<Engine>,
    state: Arc<ArcSwap<ServingState>>,
    kv: Arc<dyn KvStore>,
    deployed: HashSet<Arc<str>>,
}

impl Applier {
    /// An applier over the node's engine, the state its proxy reads and the store
    /// behind KV bindings.
    pub fn new(
        engine: Arc<Engine>,
        state: Arc<ArcSwap<ServingState>>,
        kv: Arc<dyn KvStore>,
    ) -> Applier {
        Applier {
            engine,
            state,
            kv,
            deployed: HashSet::new(),
        }
    }

    /// Validates `snapshot` completely (consistency, bundles present and verified, every
    /// new version booting) and only then makes it the one that serves. On error nothing
    /// changes and the message says which function failed and why.
    pub async fn apply(&mut self, snapshot: &Snapshot, store: &NodeStore) -> Result<(), String> {
        let routes = snapshot.check().map_err(|error| error.to_string())?;
        let mut origins = HashMap::new();
        for spec in &snapshot.origins {
            let origin = parse_origin(spec).map_err(|error| error.to_string())?;
            origins.insert(spec.name.clone(), Arc::new(origin));
        }

        let mut functions = HashMap::new();
        let mut fresh: Vec<Arc<str>> = Vec::new();
        let mut errors = Vec::new();
        for function in &snapshot.functions {
            let mut keys = Vec::with_capacity(function.deployments.len());
            for deployment in &function.deployments {
                match self
                    .deploy(&function.name, deployment, store, &mut fresh)
                    .await
                {
                    Ok(key) => keys.push(LiveKey {
                        key,
                        version: Arc::from(deployment.version.to_string()),
                        percent: deployment.percent,
                    }),
                    Err(error) => errors.push(format!(
                        "function {:?} version {}: {error}",
                        function.name, deployment.version
                    )),
                }
            }
            functions.insert(function.name.clone(), FunctionEntry::Live(keys));
        }
        if !errors.is_empty() {
            for key in fresh {
                self.engine.remove(&key);
                self.deployed.remove(&key);
            }
            return Err(errors.join("; "));
        }

        let state = ServingState {
            version: Some(snapshot.version),
            routes,
            functions,
            origins,
            default_origin: None,
        };
        let live: HashSet<Arc<str>> = state.engine_keys().cloned().collect();
        self.state.store(Arc::new(state));
        for gone in self.deployed.difference(&live) {
            self.engine.remove(gone);
        }
        self.deployed = live;
        Ok(())
    }

    /// Boots one version unless an identical one is already deployed; returns its engine key.
    async fn deploy(
        &mut self,
        function: &str,
        deployment: &Deployment,
        store: &NodeStore,
        fresh: &mut Vec<Arc<str>>,
    ) -> Result<Arc<str>, String> {
        let limits_json = serde_json::Value::Object(deployment.limits.clone());
        let limits: Limits = serde_json::from_value(limits_json.clone())
            .map_err(|error| format!("limits: {error}"))?;
        limits.validate().map_err(|error| error.to_string())?;
        let env = function_env(
            deployment.vars.clone(),
            deployment
                .secrets
                .0
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        // The key names the exact content (bundle, env, limits, KV bindings): a secret or
        // var change boots a new isolate rather than mutating a live one.
        let mut digest = sha2::Sha256::new();
        digest.update(deployment.bundle.as_str());
        digest.update(serde_json::to_vec(&env).unwrap_or_default());
        digest.update(serde_json::to_vec(&limits_json).unwrap_or_default());
        digest.update(serde_json::to_vec(&deployment.kv).unwrap_or_default());
        let fingerprint = hex::encode(&digest.finalize()[..4]);
        let key: Arc<str> = Arc::from(format!("{function}@v{}.{fingerprint}", deployment.version));
        if self.deployed.contains(&key) {
            return Ok(key);
        }
        let archive = store.bundle(&deployment.bundle)?;
        let bundle = Bundle::new(archive.main, archive.modules).map_err(|e| e.to_string())?;
        self.engine
            .deploy(FunctionSpec {
                name: key.to_string(),
                version: deployment.version.to_string(),
                bundle: Arc::new(bundle),
                env,
                limits,
                preload: true,
                kv: (!deployment.kv.is_empty()).then(|| KvBindings {
                    store: self.kv.clone(),
                    namespaces: deployment
                        .kv
                        .iter()
                        .map(|binding| (binding.binding.clone(), binding.namespace.clone()))
                        .collect(),
                }),
            })
            .await
            .map_err(|error| error.to_string())?;
        self.deployed.insert(key.clone());
        fresh.push(key.clone());
        Ok(key)
    }
}
