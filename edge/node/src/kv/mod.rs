//! KV storage behind handlers' `env.BINDING`: the local SQLite store (`outpost dev`, nodes without control) and control behind a cache (nodes that follow control).

mod local;
mod remote;

pub use local::LocalKv;
pub use remote::KvCacheSettings;
pub use remote::RemoteKv;

use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use outpost_engine::kv::KvError;
use outpost_engine::kv::KvFuture;

/// Unix seconds now.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A broken limit, as the handler sees it (`TypeError`).
fn invalid(error: outpost_proto::kv::KvLimitError) -> KvError {
    KvError::Invalid(error.to_string())
}

/// An answer known without waiting.
fn ready<T: Send + 'static>(result: Result<T, KvError>) -> KvFuture<T> {
    Box::pin(std::future::ready(result))
}
