//! KV namespaces whose source of truth is control, read through a byte-bounded moka cache on the node.
//!
//! * **Reads** are answered from the cache while the entry is fresh (the handler's
//!   `cacheTtl`, else [`KvCacheSettings::cache_ttl`]); misses are cached too. A miss or a
//!   stale entry is fetched from control over the node's sync connection. An entry is
//!   never served past its own `expiration` (checked against the wall clock on every hit).
//! * **Writes** go to control and succeed once control has committed them; the written
//!   value (or, for a delete, the absence) then replaces the node's cached entry, so the
//!   writing node reads its own write at once.
//! * **Invalidations** control pushes after every committed write drop the key here;
//!   every (re)connection drops the whole cache, since invalidations are not replayed.
//! * **Races.** A fetch that an invalidation (or a local write) overtakes must not cache
//!   the older value it carries. Every invalidation and write takes a number from one
//!   clock; a fetch remembers the clock when it started and installs its answer only if
//!   nothing touched the key (or cleared the cache) since.
//! * **Control unreachable:** reads of cached entries are served for up to
//!   [`KvCacheSettings::stale_if_error`] past their freshness; other reads, every write
//!   and every list fail with an error naming control.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::time::Duration;
use std::time::Instant;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use outpost_engine::kv::KvEntry;
use outpost_engine::kv::KvError;
use outpost_engine::kv::KvFuture;
use outpost_engine::kv::KvListKey;
use outpost_engine::kv::KvListing;
use outpost_engine::kv::KvPutOptions;
use outpost_engine::kv::KvStore;
use outpost_proto::kv;
use outpost_proto::wire;
use outpost_proto::wire::Request;
use outpost_proto::wire::Response;

use crate::kv::invalid;
use crate::kv::ready;
use crate::kv::unix_now;
use crate::sync::SyncError;
use crate::sync::client::ask_with;
use crate::sync::client::unexpected;

/// How the node caches control's KV namespaces (`[kv]` in the node config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvCacheSettings {
    /// Bytes the cache may hold: keys, values and metadata plus a fixed cost per entry.
    pub max_bytes: u64,
    /// Freshness of a cached read when the handler passes no `cacheTtl`.
    pub cache_ttl: Duration,
    /// How long past its freshness an entry is still served while control is unreachable.
    pub stale_if_error: Duration,
    /// How long one call waits for control.
    pub timeout: Duration,
}

/// Bookkeeping bytes counted for each cached entry besides its key, value and metadata.
const ENTRY_OVERHEAD: usize = 96;

/// A cached answer: the entry, or its absence.
struct Cached {
    entry: Option<KvEntry>,
    /// Served without asking control until then.
    fresh_until: Instant,
    /// Kept (for stale-if-error) until then; never past the entry's expiration.
    keep_until: Instant,
}

impl Cached {
    fn new(entry: Option<KvEntry>, ttl: Duration, stale_if_error: Duration) -> Cached {
        let now = Instant::now();
        let mut keep_until = now + ttl + stale_if_error;
        if let Some(expiration) = entry.as_ref().and_then(|entry| entry.expiration) {
            let left = expiration.saturating_sub(unix_now());
            keep_until = keep_until.min(now + Duration::from_secs(left));
        }
        Cached {
            entry,
            fresh_until: (now + ttl).min(keep_until),
            keep_until,
        }
    }

    /// Whether the entry (if any) has not reached its expiration.
    fn is_live(&self) -> bool {
        let expiration = self.entry.as_ref().and_then(|entry| entry.expiration);
        expiration.is_none() || kv::is_live(expiration, unix_now())
    }

    fn weight(key: &str, cached: &Cached) -> u32 {
        let entry = cached.entry.as_ref().map_or(0, |entry| {
            entry.value.len() + entry.metadata.as_ref().map_or(0, String::len)
        });
        u32::try_from(key.len() + entry + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
    }
}

/// Entries leave the cache when they may no longer be served even stale.
struct UntilKept;

impl moka::Expiry<String, Arc<Cached>> for UntilKept {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<Cached>,
        created_at: Instant,
    ) -> Option<Duration> {
        Some(value.keep_until.saturating_duration_since(created_at))
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &Arc<Cached>,
        updated_at: Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.keep_until.saturating_duration_since(updated_at))
    }
}

/// The numbers that order invalidations, writes and fetches (see the module docs).
#[derive(Default)]
struct Clock {
    now: u64,
    /// When the whole cache was last dropped.
    cleared: u64,
    /// When each recently touched key was last invalidated or written.
    touched: HashMap<String, u64>,
    /// The same keys in the order they were touched, to forget them once no fetch that
    /// started before can still be running.
    order: VecDeque<(Instant, String, u64)>,
}

impl Clock {
    fn tick(&mut self) -> u64 {
        self.now += 1;
        self.now
    }

    /// Whether `id` was touched (or everything cleared) after `started`.
    fn overtaken(&self, id: &str, started: u64) -> bool {
        self.cleared > started || self.touched.get(id).is_some_and(|&at| at > started)
    }

    fn touch(&mut self, id: &str, horizon: Duration) {
        let at = self.tick();
        let now = Instant::now();
        self.touched.insert(id.to_string(), at);
        self.order.push_back((now, id.to_string(), at));
        while let Some((when, key, stamp)) = self.order.front() {
            if now.duration_since(*when) <= horizon {
                break;
            }
            if self.touched.get(key) == Some(stamp) {
                self.touched.remove(key);
            }
            self.order.pop_front();
        }
    }
}

struct Inner {
    cache: moka::sync::Cache<String, Arc<Cached>>,
    clock: Mutex<Clock>,
    control: ArcSwapOption<quinn::Connection>,
    /// The sync thread's runtime, which owns the QUIC connection.
    runtime: tokio::runtime::Handle,
    settings: KvCacheSettings,
}

/// The store behind KV bindings on a node that follows control. Cheap to clone.
#[derive(Clone)]
pub struct RemoteKv {
    inner: Arc<Inner>,
}

impl RemoteKv {
    /// A store with an empty cache and no connection yet; calls to control run on `runtime`.
    pub fn new(settings: KvCacheSettings, runtime: tokio::runtime::Handle) -> RemoteKv {
        let cache = moka::sync::Cache::builder()
            .max_capacity(settings.max_bytes)
            .weigher(|key: &String, value: &Arc<Cached>| Cached::weight(key, value))
            .expire_after(UntilKept)
            .build();
        RemoteKv {
            inner: Arc::new(Inner {
                cache,
                clock: Mutex::new(Clock::default()),
                control: ArcSwapOption::empty(),
                runtime,
                settings,
            }),
        }
    }

    /// Control is reachable over `connection`: invalidations missed while away are
    /// unknown, so every cached entry is dropped.
    pub fn connected(&self, connection: quinn::Connection) {
        self.clear();
        self.inner.control.store(Some(Arc::new(connection)));
    }

    /// Control is unreachable: cached entries stay (stale-if-error), calls that need
    /// control fail at once.
    pub fn disconnected(&self) {
        self.inner.control.store(None);
    }

    /// Control says these keys changed; no keys means the whole namespace (deleted).
    pub fn invalidate(&self, namespace: &str, keys: &[String]) {
        if keys.is_empty() {
            // Only an unbound namespace can be deleted, so nothing reads it any more:
            // dropping everything is simpler than finding its keys and just as correct.
            self.clear();
            return;
        }
        let mut clock = self.inner.clock();
        for key in keys {
            let id = cache_key(namespace, key);
            clock.touch(&id, self.inner.horizon());
            self.inner.cache.invalidate(&id);
        }
    }

    /// Bytes the cache holds now (after pending evictions run).
    pub fn cached_bytes(&self) -> u64 {
        self.inner.cache.run_pending_tasks();
        self.inner.cache.weighted_size()
    }

    fn clear(&self) {
        let mut clock = self.inner.clock();
        clock.cleared = clock.tick();
        self.inner.cache.invalidate_all();
    }

    /// Runs `call` on the sync runtime and waits for it from whichever runtime asks.
    fn spawn<T: Send + 'static>(
        &self,
        call: impl Future<Output = Result<T, KvError>> + Send + 'static,
    ) -> KvFuture<T> {
        let task = self.inner.runtime.spawn(call);
        Box::pin(async move {
            task.await.unwrap_or_else(|error| {
                Err(KvError::Unavailable(format!(
                    "KV call interrupted: {error}"
                )))
            })
        })
    }
}

impl Inner {
    fn clock(&self) -> MutexGuard<'_, Clock> {
        self.clock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Caches an answer and evicts down to the byte bound at once (moka would otherwise
    /// do it at its next maintenance). Runs on the sync thread, off the request path.
    fn insert(&self, id: String, cached: Cached) {
        self.cache.insert(id, Arc::new(cached));
        self.cache.run_pending_tasks();
    }

    /// How long a fetch may still be running after it started.
    fn horizon(&self) -> Duration {
        self.settings.timeout * 2
    }

    /// Asks control, within the timeout; `body` is one raw frame after the request.
    async fn ask<T>(
        &self,
        request: Request,
        body: Option<Bytes>,
        answer: impl AsyncFnOnce(Response, quinn::RecvStream) -> Result<T, SyncError>,
    ) -> Result<T, KvError> {
        let Some(connection) = self.control.load_full() else {
            return Err(KvError::Unavailable(
                "KV: control is unreachable from this node".into(),
            ));
        };
        let call = async {
            let (response, recv) = ask_with(&connection, &request, body.as_deref()).await?;
            answer(response, recv).await
        };
        match tokio::time::timeout(self.settings.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(SyncError::Refused(message))) => Err(KvError::Unavailable(format!(
                "KV: control refused: {message}"
            ))),
            Ok(Err(error)) => Err(KvError::Unavailable(format!(
                "KV: control is unreachable from this node ({error})"
            ))),
            Err(_) => Err(KvError::Unavailable(format!(
                "KV: control did not answer within {} ms",
                self.settings.timeout.as_millis()
            ))),
        }
    }

    /// Fetches `key` from control and caches the answer unless overtaken; if control
    /// cannot answer, serves `stale` while it may be.
    async fn fetch(
        &self,
        namespace: String,
        key: String,
        id: String,
        ttl: Duration,
        stale: Option<Arc<Cached>>,
    ) -> Result<Option<KvEntry>, KvError> {
        let started = self.clock().now;
        let request = Request::KvGet { namespace, key };
        let fetched = self.ask(request, None, read_entry).await;
        match fetched {
            Ok(entry) => {
                let clock = self.clock();
                if !clock.overtaken(&id, started) {
                    let cached = Cached::new(entry.clone(), ttl, self.settings.stale_if_error);
                    self.insert(id, cached);
                }
                drop(clock);
                Ok(entry)
            }
            Err(error) => match stale {
                Some(stale) if Instant::now() < stale.keep_until && stale.is_live() => {
                    tracing::debug!(target: "outpost::kv", "serving a stale entry: {error}");
                    Ok(stale.entry.clone())
                }
                _ => Err(error),
            },
        }
    }

    /// Sends a write; once committed, `written` (the new entry, `None` for a delete)
    /// replaces the cached one so this node reads its own write. A failed write drops
    /// the key: control may or may not have committed it.
    async fn write(
        &self,
        id: String,
        request: Request,
        body: Option<Bytes>,
        written: Option<KvEntry>,
    ) -> Result<(), KvError> {
        let started = self.clock().now;
        let result = self
            .ask(request, body, async |response, _| match response {
                Response::KvDone => Ok(()),
                other => Err(unexpected(other)),
            })
            .await;
        let mut clock = self.clock();
        let overtaken = clock.overtaken(&id, started);
        clock.touch(&id, self.horizon());
        if result.is_ok() && !overtaken {
            let cached = Cached::new(
                written,
                self.settings.cache_ttl,
                self.settings.stale_if_error,
            );
            self.insert(id, cached);
        } else {
            self.cache.invalidate(&id);
        }
        result.map_err(|error| match error {
            KvError::Unavailable(message) => {
                KvError::Unavailable(format!("{message}; the write was not stored"))
            }
            invalid => invalid,
        })
    }
}

/// Reads a [`Response::KvEntry`] and the value frame after it.
async fn read_entry(
    response: Response,
    mut recv: quinn::RecvStream,
) -> Result<Option<KvEntry>, SyncError> {
    match response {
        Response::KvEntry { found: false, .. } => Ok(None),
        Response::KvEntry {
            found: true,
            expiration,
            metadata,
        } => {
            let value = wire::read_bytes_within(&mut recv, kv::MAX_VALUE_BYTES)
                .await?
                .ok_or_else(|| SyncError::Refused("the value stream ended early".into()))?;
            Ok(Some(KvEntry {
                value: Bytes::from(value),
                metadata: metadata.map(|metadata| metadata.to_string()),
                expiration,
            }))
        }
        other => Err(unexpected(other)),
    }
}

/// The cache key of `key` in `namespace` (namespace names never contain `/`).
fn cache_key(namespace: &str, key: &str) -> String {
    let mut id = String::with_capacity(namespace.len() + 1 + key.len());
    id.push_str(namespace);
    id.push('/');
    id.push_str(key);
    id
}

impl KvStore for RemoteKv {
    fn get(&self, namespace: &str, key: &str, cache_ttl: Option<u64>) -> KvFuture<Option<KvEntry>> {
        if let Err(error) = kv::check_key(key) {
            return ready(Err(invalid(error)));
        }
        let id = cache_key(namespace, key);
        let stale = match self.inner.cache.get(&id) {
            Some(cached) if Instant::now() < cached.fresh_until && cached.is_live() => {
                return ready(Ok(cached.entry.clone()));
            }
            other => other,
        };
        let ttl = cache_ttl.map_or(self.inner.settings.cache_ttl, Duration::from_secs);
        let (inner, namespace, key) = (self.inner.clone(), namespace.to_string(), key.to_string());
        self.spawn(async move { inner.fetch(namespace, key, id, ttl, stale).await })
    }

    fn put(&self, namespace: &str, key: &str, value: Bytes, options: KvPutOptions) -> KvFuture<()> {
        let checked = (|| {
            kv::check_key(key)?;
            kv::check_value_size(value.len())?;
            let metadata = options
                .metadata
                .as_deref()
                .map(kv::parse_metadata)
                .transpose()?;
            let expiration =
                kv::resolve_expiration(options.expiration, options.expiration_ttl, unix_now())?;
            Ok((metadata, expiration))
        })();
        let (metadata, expiration) = match checked {
            Ok(checked) => checked,
            Err(error) => return ready(Err(invalid(error))),
        };
        let request = Request::KvPut {
            namespace: namespace.to_string(),
            key: key.to_string(),
            expiration,
            metadata,
        };
        let written = KvEntry {
            value: value.clone(),
            metadata: options.metadata,
            expiration,
        };
        let (inner, id) = (self.inner.clone(), cache_key(namespace, key));
        self.spawn(async move { inner.write(id, request, Some(value), Some(written)).await })
    }

    fn delete(&self, namespace: &str, key: &str) -> KvFuture<()> {
        if let Err(error) = kv::check_key(key) {
            return ready(Err(invalid(error)));
        }
        let request = Request::KvDelete {
            namespace: namespace.to_string(),
            key: key.to_string(),
        };
        let (inner, id) = (self.inner.clone(), cache_key(namespace, key));
        self.spawn(async move { inner.write(id, request, None, None).await })
    }

    fn list(
        &self,
        namespace: &str,
        prefix: &str,
        limit: Option<u64>,
        cursor: Option<&str>,
    ) -> KvFuture<KvListing> {
        let checked = kv::list_limit(limit).and_then(|limit| {
            cursor.map(kv::decode_cursor).transpose()?;
            Ok(limit)
        });
        let limit = match checked {
            Ok(limit) => limit,
            Err(error) => return ready(Err(invalid(error))),
        };
        let request = Request::KvList {
            namespace: namespace.to_string(),
            prefix: (!prefix.is_empty()).then(|| prefix.to_string()),
            limit: Some(limit),
            cursor: cursor.map(str::to_string),
        };
        let inner = self.inner.clone();
        self.spawn(async move {
            inner
                .ask(request, None, async |response, _| match response {
                    Response::KvKeys {
                        keys,
                        list_complete,
                        cursor,
                    } => Ok(KvListing {
                        keys: keys
                            .into_iter()
                            .map(|key| KvListKey {
                                name: key.name,
                                expiration: key.expiration,
                                metadata: key.metadata.map(|metadata| metadata.to_string()),
                            })
                            .collect(),
                        list_complete,
                        cursor,
                    }),
                    other => Err(unexpected(other)),
                })
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_touched_after_a_fetch_started_overtakes_it() {
        let mut clock = Clock::default();
        let horizon = Duration::from_secs(10);
        clock.touch("ns/a", horizon);
        let started = clock.now;
        assert!(
            !clock.overtaken("ns/a", started),
            "touched before the fetch"
        );
        clock.touch("ns/a", horizon);
        assert!(clock.overtaken("ns/a", started));
        assert!(
            !clock.overtaken("ns/b", started),
            "other keys are unaffected"
        );
        clock.cleared = clock.tick();
        assert!(
            clock.overtaken("ns/b", started),
            "a clear overtakes every fetch"
        );
    }

    #[test]
    fn touched_keys_are_forgotten_after_the_horizon() {
        let mut clock = Clock::default();
        clock.touch("ns/a", Duration::ZERO);
        std::thread::sleep(Duration::from_millis(2));
        clock.touch("ns/b", Duration::ZERO);
        assert!(!clock.touched.contains_key("ns/a"));
        assert_eq!(clock.order.len(), 1);
    }

    #[test]
    fn an_entry_is_kept_no_longer_than_its_expiration() {
        let expiring = KvEntry {
            value: Bytes::from_static(b"v"),
            metadata: None,
            expiration: Some(unix_now() + 2),
        };
        let cached = Cached::new(
            Some(expiring),
            Duration::from_secs(60),
            Duration::from_secs(300),
        );
        assert!(cached.keep_until <= Instant::now() + Duration::from_secs(2));
        assert!(cached.fresh_until <= cached.keep_until);
        let expired = KvEntry {
            value: Bytes::new(),
            metadata: None,
            expiration: Some(unix_now()),
        };
        assert!(!Cached::new(Some(expired), Duration::from_secs(60), Duration::ZERO).is_live());
    }
}
