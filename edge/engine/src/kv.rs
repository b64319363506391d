//! KV bindings as the engine sees them: a store handlers reach through `env.BINDING`, and the bindings a function may use.
//!
//! The engine only carries calls between JavaScript and a [`KvStore`]; the node supplies
//! the store (a local SQLite file under `outpost dev`, or control behind a cache) and
//! the store enforces the limits. A function reaches only the namespaces bound to it.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

/// A future a [`KvStore`] returns.
pub type KvFuture<T> = Pin<Box<dyn Future<Output = Result<T, KvError>> + Send>>;

/// A stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    /// The value's bytes.
    pub value: Bytes,
    /// Metadata as JSON text, if any.
    pub metadata: Option<String>,
    /// Absolute expiration, Unix seconds.
    pub expiration: Option<u64>,
}

/// One key of a listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KvListKey {
    /// The key.
    pub name: String,
    /// Absolute expiration, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration: Option<u64>,
    /// Metadata as JSON text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
}

/// A page of keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct KvListing {
    /// Keys in byte order.
    pub keys: Vec<KvListKey>,
    /// No more keys after these.
    pub list_complete: bool,
    /// Where the next page starts, when not complete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// What a `put` stores besides the value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvPutOptions {
    /// Absolute expiration, Unix seconds.
    pub expiration: Option<u64>,
    /// Seconds from now.
    pub expiration_ttl: Option<u64>,
    /// Metadata as JSON text.
    pub metadata: Option<String>,
}

/// A KV call that failed; the message reaches the handler as the thrown error's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The call broke a limit or passed a bad argument (thrown as `TypeError`).
    #[error("{0}")]
    Invalid(String),
    /// The store could not answer (thrown as `Error`), e.g. control unreachable for a write.
    #[error("{0}")]
    Unavailable(String),
}

/// Storage behind KV bindings. Calls may complete immediately (a cache hit) or later.
pub trait KvStore: Send + Sync + 'static {
    /// The live entry under `key`; `cache_ttl` is the handler's `cacheTtl` in seconds.
    fn get(&self, namespace: &str, key: &str, cache_ttl: Option<u64>) -> KvFuture<Option<KvEntry>>;
    /// Stores `value` under `key`.
    fn put(&self, namespace: &str, key: &str, value: Bytes, options: KvPutOptions) -> KvFuture<()>;
    /// Removes `key` (no error if absent).
    fn delete(&self, namespace: &str, key: &str) -> KvFuture<()>;
    /// Live keys starting with `prefix`, after `cursor`, at most `limit` (the store's
    /// default when `None`).
    fn list(
        &self,
        namespace: &str,
        prefix: &str,
        limit: Option<u64>,
        cursor: Option<&str>,
    ) -> KvFuture<KvListing>;
}

/// The KV namespaces a function may use: binding name (`env.NAME`) → namespace.
#[derive(Clone)]
pub struct KvBindings {
    /// Where the namespaces live.
    pub store: Arc<dyn KvStore>,
    /// Binding name → namespace.
    pub namespaces: BTreeMap<String, String>,
}

impl fmt::Debug for KvBindings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.namespaces.iter()).finish()
    }
}
