//! What a node serves at one moment — routes, functions (with their live versions' engine keys) and origins — swapped whole.

use std::collections::HashMap;
use std::hash::Hasher;
use std::net::IpAddr;
use std::sync::Arc;

use outpost_routing::RouteTable;

use crate::config::Origin;

/// One consistent view of the node's routes, functions and origins. Immutable: a new
/// config or snapshot builds a new one and swaps it in whole, so a request sees either
/// the old or the new one, never a mix.
#[derive(Debug, Default)]
pub struct ServingState {
    /// The control snapshot version this state comes from (`None` for a local config).
    pub version: Option<u64>,
    /// Routes, in match order.
    pub routes: RouteTable,
    /// Functions by name.
    pub functions: HashMap<String, FunctionEntry>,
    /// Origins by name.
    pub origins: HashMap<String, Arc<Origin>>,
    /// Where bypassed requests go, if anywhere.
    pub default_origin: Option<Arc<Origin>>,
}

/// How a function is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FunctionEntry {
    /// Live versions (engine keys), newest first, each with its share of clients (sum 100).
    Live(Vec<LiveKey>),
    /// Configured but refused at load; requests get 503 with this reason.
    Refused(String),
}

/// A deployed function version as the engine knows it, and its share of clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveKey {
    /// The engine's name for this version.
    pub key: Arc<str>,
    /// The function version ("local" for a local config).
    pub version: Arc<str>,
    /// Percentage of clients.
    pub percent: u8,
}

/// The function a request should run, resolved against one [`ServingState`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved<'a> {
    /// Run this version.
    Run(&'a LiveKey),
    /// The function is refused, for this reason.
    Refused(&'a str),
    /// No such function (the state is inconsistent; never for a checked state).
    Missing,
}

impl ServingState {
    /// The version of `function` that serves the client at `client` (its IP, when known):
    /// the same client always lands on the same version while the shares stay the same.
    /// The address is only hashed when a gradual deploy splits the function.
    pub fn resolve(&self, function: &str, client: Option<IpAddr>) -> Resolved<'_> {
        match self.functions.get(function) {
            Some(FunctionEntry::Live(keys)) if keys.len() == 1 => Resolved::Run(&keys[0]),
            Some(FunctionEntry::Live(keys)) => {
                let index = outpost_proto::pick_deployment(
                    keys.iter().map(|key| key.percent),
                    client_bucket(function, client),
                );
                keys.get(index).map_or(Resolved::Missing, Resolved::Run)
            }
            Some(FunctionEntry::Refused(reason)) => Resolved::Refused(reason),
            None => Resolved::Missing,
        }
    }

    /// Engine keys of every live version.
    pub fn engine_keys(&self) -> impl Iterator<Item = &Arc<str>> {
        self.functions
            .values()
            .flat_map(|entry| match entry {
                FunctionEntry::Live(keys) => keys.as_slice(),
                FunctionEntry::Refused(_) => &[],
            })
            .map(|live| &live.key)
    }
}

/// A client's bucket (0..100) for `function`: FNV-1a of both, stable across nodes and restarts.
fn client_bucket(function: &str, client: Option<IpAddr>) -> u8 {
    let mut hasher = outpost_engine::StableHasher::default();
    hasher.write(function.as_bytes());
    hasher.write(&[0]);
    match client {
        Some(IpAddr::V4(ip)) => hasher.write(&ip.octets()),
        Some(IpAddr::V6(ip)) => hasher.write(&ip.octets()),
        None => {}
    }
    u8::try_from(hasher.finish() % 100).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(new: u8) -> ServingState {
        let key = |version: &str, percent| LiveKey {
            key: Arc::from(format!("api@{version}")),
            version: Arc::from(version),
            percent,
        };
        ServingState {
            functions: HashMap::from([(
                "api".to_string(),
                FunctionEntry::Live(vec![key("2", new), key("1", 100 - new)]),
            )]),
            ..ServingState::default()
        }
    }

    fn version_for(state: &ServingState, client: u32) -> String {
        match state.resolve("api", Some(IpAddr::from(client.to_be_bytes()))) {
            Resolved::Run(key) => key.version.to_string(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn split_is_sticky_and_close_to_its_share() {
        let state = split(20);
        let on_new = (0..10_000u32)
            .filter(|client| version_for(&state, *client) == "2")
            .count();
        assert!(
            (1_700..=2_300).contains(&on_new),
            "{on_new} of 10000 on 20%"
        );
        for client in 0..100 {
            assert_eq!(version_for(&state, client), version_for(&state, client));
        }
    }

    #[test]
    fn raising_the_share_never_moves_a_client_back() {
        let (low, high) = (split(20), split(60));
        for client in 0..2_000 {
            if version_for(&low, client) == "2" {
                assert_eq!(version_for(&high, client), "2");
            }
        }
    }

    #[test]
    fn refused_and_missing_functions_resolve_as_such() {
        let mut state = split(50);
        state
            .functions
            .insert("bad".into(), FunctionEntry::Refused("boom".into()));
        assert_eq!(state.resolve("bad", None), Resolved::Refused("boom"));
        assert_eq!(state.resolve("nope", None), Resolved::Missing);
    }
}
