//! The node's store behind the Cache API: one byte-bounded moka cache shared by every
//! isolate, entries expiring when their response stops being fresh.

use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use moka::Expiry;

use crate::ext::cache::CacheKey;
use crate::ext::cache::CachedResponse;
use crate::ext::cache::ResponseCache;

/// Largest share of the store one entry may take (bigger ones are not stored).
const MAX_ENTRY_SHARE: usize = 10;

pub(crate) struct NodeResponseCache {
    entries: moka::sync::Cache<CacheKey, Arc<CachedResponse>>,
    max_entry_bytes: usize,
}

impl NodeResponseCache {
    pub(crate) fn new(bytes: usize) -> NodeResponseCache {
        let entries = moka::sync::Cache::builder()
            .max_capacity(u64::try_from(bytes).unwrap_or(u64::MAX))
            .weigher(|key: &CacheKey, response: &Arc<CachedResponse>| {
                let weight = key.url.len() + key.cache.len() + response.weight();
                u32::try_from(weight).unwrap_or(u32::MAX)
            })
            .expire_after(UntilStale)
            .build();
        NodeResponseCache {
            entries,
            max_entry_bytes: bytes / MAX_ENTRY_SHARE,
        }
    }
}

impl ResponseCache for NodeResponseCache {
    fn get(&self, key: &CacheKey) -> Option<Arc<CachedResponse>> {
        // moka expires lazily; a stale entry is never served.
        self.entries
            .get(key)
            .filter(|response| response.fresh_until > Instant::now())
    }

    fn insert(&self, key: CacheKey, response: CachedResponse) -> bool {
        if response.weight() > self.max_entry_bytes {
            return false;
        }
        self.entries.insert(key, Arc::new(response));
        true
    }

    fn remove(&self, key: &CacheKey) -> bool {
        self.entries
            .remove(key)
            .is_some_and(|response| response.fresh_until > Instant::now())
    }
}

struct UntilStale;

impl Expiry<CacheKey, Arc<CachedResponse>> for UntilStale {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        response: &Arc<CachedResponse>,
        created_at: Instant,
    ) -> Option<Duration> {
        Some(response.fresh_until.saturating_duration_since(created_at))
    }

    fn expire_after_update(
        &self,
        key: &CacheKey,
        response: &Arc<CachedResponse>,
        updated_at: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        self.expire_after_create(key, response, updated_at)
    }
}
