//! The Cache API as handlers see it (`caches.default`, `await caches.open(name)`): ops over
//! a node-local [`ResponseCache`], with Workers' rules for what may be stored and for how
//! long.
//!
//! Entries are keyed by function, cache name and URL: a function never sees another's
//! entries. The engine supplies the store (a byte-bounded moka cache); this file only
//! decides what to store and for how long, from the response's status and headers.

use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use std::time::SystemTime;

use bytes::Bytes;
use deno_core::ByteString;
use deno_core::JsBuffer;
use deno_core::OpState;
use deno_core::ToJsBuffer;
use deno_core::op2;

use super::FunctionLabel;

/// Where an entry lives: function, cache name, URL (without fragment).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// The function that stored it.
    pub function: Arc<str>,
    /// `"default"` for `caches.default`, else the name given to `caches.open`.
    pub cache: String,
    /// The request URL.
    pub url: String,
}

/// A header list as the ops carry it.
pub type HeaderList = Vec<(ByteString, ByteString)>;

/// A stored response.
#[derive(Debug)]
pub struct CachedResponse {
    /// HTTP status.
    pub status: u16,
    /// Header list as stored.
    pub headers: HeaderList,
    /// The whole body.
    pub body: Bytes,
    /// When the entry stops being served.
    pub fresh_until: Instant,
}

impl CachedResponse {
    /// Bytes the entry holds, for the store's bound.
    pub fn weight(&self) -> usize {
        self.body.len()
            + self
                .headers
                .iter()
                .map(|(name, value)| name.len() + value.len())
                .sum::<usize>()
    }
}

/// A node-local response store shared by every isolate of the engine.
pub trait ResponseCache: Send + Sync {
    /// The entry, if stored and still fresh.
    fn get(&self, key: &CacheKey) -> Option<Arc<CachedResponse>>;
    /// Stores an entry (the store may refuse one too large for its bound); true if kept.
    fn insert(&self, key: CacheKey, response: CachedResponse) -> bool;
    /// Removes an entry; true if a fresh one was there.
    fn remove(&self, key: &CacheKey) -> bool;
}

/// The node's store as an isolate's ops reach it; `None` when the Cache API is switched
/// off (nothing is stored).
pub struct CacheAccess(pub Option<Arc<dyn ResponseCache>>);

/// The store and this function's key for `url` in `cache`, if the Cache API is on.
fn lookup(state: &OpState, cache: String, url: String) -> Option<(&dyn ResponseCache, CacheKey)> {
    let store = state.try_borrow::<CacheAccess>()?.0.as_deref()?;
    let function = state.try_borrow::<FunctionLabel>()?.0.clone();
    Some((
        store,
        CacheKey {
            function,
            cache,
            url,
        },
    ))
}

/// How long a response may be served from the cache, by Workers' rules: never with
/// `Set-Cookie`, or `Cache-Control` `no-store`/`no-cache`/`private`; else `s-maxage`,
/// `max-age`, then `Expires`; without any of those, the edge defaults by status (200 and
/// 301: 2 h, 302 and 303: 20 min, 404 and 410: 3 min; others are not stored).
pub fn freshness(
    status: u16,
    headers: &[(ByteString, ByteString)],
    now: SystemTime,
) -> Option<Duration> {
    let header = |wanted: &'static str| {
        headers
            .iter()
            .filter(move |(name, _)| name.eq_ignore_ascii_case(wanted.as_bytes()))
            .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
    };
    if header("set-cookie").next().is_some() {
        return None;
    }
    let mut max_age = None;
    let mut s_maxage = None;
    for value in header("cache-control") {
        for directive in value.split(',') {
            let (name, argument) = match directive.split_once('=') {
                Some((name, argument)) => (name, Some(argument)),
                None => (directive, None),
            };
            let seconds = || argument.and_then(|v| v.trim().trim_matches('"').parse::<u64>().ok());
            match name.trim().to_ascii_lowercase().as_str() {
                "no-store" | "no-cache" | "private" => return None,
                "max-age" => max_age = seconds(),
                "s-maxage" => s_maxage = seconds(),
                _ => {}
            }
        }
    }
    let explicit = match s_maxage.or(max_age) {
        Some(seconds) => Some(Duration::from_secs(seconds)),
        // An unparseable Expires means "already expired" (RFC 9111 §5.3).
        None => header("expires").next().map(|expires| {
            httpdate::parse_http_date(&expires)
                .ok()
                .and_then(|at| at.duration_since(now).ok())
                .unwrap_or(Duration::ZERO)
        }),
    };
    let ttl = match explicit {
        Some(ttl) => ttl,
        None => match status {
            200 | 301 => Duration::from_secs(2 * 60 * 60),
            302 | 303 => Duration::from_secs(20 * 60),
            404 | 410 => Duration::from_secs(3 * 60),
            _ => return None,
        },
    };
    (!ttl.is_zero()).then_some(ttl)
}

/// Stores a response (already checked by the JS side: GET request, no 206, no `Vary: *`).
/// Returns whether it was kept.
#[op2]
pub fn op_outpost_cache_put(
    state: &mut OpState,
    #[string] cache: String,
    #[string] url: String,
    #[smi] status: u16,
    #[serde] headers: HeaderList,
    #[buffer] body: JsBuffer,
) -> bool {
    let Some((store, key)) = lookup(state, cache, url) else {
        return false;
    };
    let Some(ttl) = freshness(status, &headers, SystemTime::now()) else {
        return false;
    };
    let response = CachedResponse {
        status,
        headers,
        body: Bytes::copy_from_slice(&body),
        fresh_until: Instant::now() + ttl,
    };
    store.insert(key, response)
}

/// The stored response for a URL: status, headers, body.
#[op2]
#[serde]
pub fn op_outpost_cache_match(
    state: &mut OpState,
    #[string] cache: String,
    #[string] url: String,
) -> Option<(u16, HeaderList, ToJsBuffer)> {
    let (store, key) = lookup(state, cache, url)?;
    let entry = store.get(&key)?;
    Some((
        entry.status,
        entry.headers.clone(),
        entry.body.to_vec().into(),
    ))
}

/// Removes the stored response for a URL; true if there was one.
#[op2(fast)]
pub fn op_outpost_cache_delete(
    state: &mut OpState,
    #[string] cache: String,
    #[string] url: String,
) -> bool {
    lookup(state, cache, url).is_some_and(|(store, key)| store.remove(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(ByteString, ByteString)> {
        pairs
            .iter()
            .map(|(name, value)| (ByteString::from(*name), ByteString::from(*value)))
            .collect()
    }

    #[test]
    fn cache_control_decides_first() {
        let now = SystemTime::now();
        let ttl = |pairs: &[(&str, &str)]| freshness(200, &headers(pairs), now);
        assert_eq!(
            ttl(&[("Cache-Control", "max-age=60")]),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            ttl(&[("cache-control", "max-age=60, s-maxage=10")]),
            Some(Duration::from_secs(10))
        );
        assert_eq!(ttl(&[("cache-control", "public, no-store")]), None);
        assert_eq!(ttl(&[("cache-control", "private, max-age=60")]), None);
        assert_eq!(ttl(&[("cache-control", "no-cache")]), None);
        assert_eq!(ttl(&[("cache-control", "max-age=0")]), None);
        assert_eq!(
            ttl(&[("cache-control", "max-age=60"), ("set-cookie", "a=1")]),
            None
        );
    }

    #[test]
    fn expires_then_status_defaults() {
        let now = SystemTime::now();
        let later = httpdate::fmt_http_date(now + Duration::from_secs(120));
        let ttl = freshness(200, &headers(&[("expires", &later)]), now)
            .expect("a future Expires gives a lifetime");
        assert!(
            ttl > Duration::from_secs(110) && ttl <= Duration::from_secs(120),
            "{ttl:?}"
        );
        assert_eq!(freshness(200, &headers(&[("expires", "0")]), now), None);
        assert_eq!(freshness(200, &[], now), Some(Duration::from_secs(7200)));
        assert_eq!(freshness(404, &[], now), Some(Duration::from_secs(180)));
        assert_eq!(freshness(500, &[], now), None);
    }
}
