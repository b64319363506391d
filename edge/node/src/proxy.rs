//! The edge proxy: a pingora `ProxyHttp` app that routes each request to a function (the engine) or an origin (upstream + cache).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use outpost_engine::BodyChunk;
use outpost_engine::Engine;
use outpost_engine::EngineRequest;
use outpost_engine::EngineResponse;
use outpost_engine::FunctionFailure;
use outpost_engine::RequestBody;
use outpost_engine::RequestId;
use outpost_engine::ResponseBody;
use outpost_routing::RouteTarget;
use pingora::cache::CacheKey;
use pingora::cache::CacheMetaDefaults;
use pingora::cache::CachePhase;
use pingora::cache::MemCache;
use pingora::cache::NoCacheReason;
use pingora::cache::RespCacheable;
use pingora::cache::cache_control::CacheControl;
use pingora::cache::eviction::simple_lru::Manager as LruManager;
use pingora::cache::filters::resp_cacheable;
use pingora::http::RequestHeader;
use pingora::http::ResponseHeader;
use pingora::modules::http::HttpModules;
use pingora::proxy::ProxyHttp;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use tokio::sync::mpsc;

use crate::config::Origin;
use crate::serving::Resolved;
use crate::serving::ServingState;

/// Request bodies up to this size (by `Content-Length`) are read whole before the
/// handler runs; larger or chunked ones are streamed to it as they arrive.
const BUFFERED_BODY_BYTES: u64 = 64 * 1024;

/// How long a response without freshness headers stays cached: not at all.
static CACHE_DEFAULTS: CacheMetaDefaults = CacheMetaDefaults::new(|_| None, 0, 0);

/// Node-wide origin cache: storage and its byte-bounded LRU. Pingora wants `'static` refs.
#[derive(Clone, Copy)]
struct OriginCache {
    storage: &'static MemCache,
    eviction: &'static LruManager,
}

/// The proxy: routes each request against the node's current [`ServingState`]. Each
/// worker thread has its own copy ([`EdgeProxy::for_worker`]); the engine, the serving
/// state and the origin cache are shared.
pub struct EdgeProxy {
    engine: Arc<Engine>,
    state: Arc<ArcSwap<ServingState>>,
    max_body_bytes: u64,
    cache: Option<OriginCache>,
    request_ids: RequestIds,
    in_flight: Arc<AtomicUsize>,
}

/// Per-request state of the proxy.
pub struct RequestCtx {
    origin: Option<Arc<Origin>>,
    _in_flight: InFlight,
}

/// Counts a request as in flight from its head to the end of its response.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(count: &Arc<AtomicUsize>) -> InFlight {
        count.fetch_add(1, Ordering::AcqRel);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl EdgeProxy {
    /// Builds the proxy over a running engine; `state` may be swapped at any time
    /// (each request uses the state current when it arrived).
    pub fn new(
        engine: Arc<Engine>,
        state: Arc<ArcSwap<ServingState>>,
        max_body_bytes: u64,
        cache_bytes: usize,
    ) -> EdgeProxy {
        let cache = (cache_bytes > 0).then(|| OriginCache {
            storage: Box::leak(Box::new(MemCache::new())),
            eviction: Box::leak(Box::new(LruManager::new(cache_bytes))),
        });
        EdgeProxy {
            engine,
            state,
            max_body_bytes,
            cache,
            request_ids: RequestIds::new(0),
            in_flight: Arc::default(),
        }
    }

    /// The proxy for worker `index`: the same engine, state and cache, its own request
    /// ids and in-flight count (nothing on the request path is shared between workers).
    pub fn for_worker(&self, index: usize) -> EdgeProxy {
        EdgeProxy {
            engine: self.engine.clone(),
            state: self.state.clone(),
            max_body_bytes: self.max_body_bytes,
            cache: self.cache,
            request_ids: RequestIds::new(index),
            in_flight: Arc::default(),
        }
    }

    /// Requests this proxy is handling right now.
    pub fn in_flight(&self) -> Arc<AtomicUsize> {
        self.in_flight.clone()
    }

    async fn serve_function(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        state: &ServingState,
        function: &str,
        fallback: Option<&String>,
    ) -> pingora::Result<bool> {
        let request_id = self.request_ids.next();
        let client = session
            .client_addr()
            .and_then(|addr| addr.as_inet())
            .map(|addr| addr.ip());
        let key = match state.resolve(function, client) {
            Resolved::Run(live) => &*live.key,
            Resolved::Refused(reason) => {
                let body = format!("function {function:?} is unavailable: {reason}\n");
                respond_text(session, 503, &body, request_id).await?;
                return Ok(true);
            }
            Resolved::Missing => {
                let body = format!("function {function:?} is not deployed on this node\n");
                respond_text(session, 503, &body, request_id).await?;
                return Ok(true);
            }
        };
        let header = session.req_header();
        let length = content_length(header);
        if let Some(length) = length
            && length > self.max_body_bytes
        {
            let body = format!(
                "request body of {length} bytes exceeds the limit of {} bytes\n",
                self.max_body_bytes
            );
            respond_text(session, 413, &body, request_id).await?;
            return Ok(true);
        }
        let is_head = header.method == http::Method::HEAD;
        let chunked = header.headers.contains_key(http::header::TRANSFER_ENCODING);
        let (body, body_tx) = match length {
            // A small body is read whole first: the handler gets it as bytes, and
            // `await request.json()` needs no trip through a stream and the event loop.
            Some(length) if !chunked && length <= BUFFERED_BODY_BYTES => {
                match read_whole_body(session).await? {
                    Some(bytes) => (RequestBody::Full(bytes), None),
                    None => (RequestBody::Empty, None),
                }
            }
            None if !chunked => (RequestBody::Empty, None),
            _ => {
                let (tx, rx) = mpsc::channel(outpost_engine::BODY_CHANNEL_CHUNKS);
                (RequestBody::Stream(rx), Some(tx))
            }
        };
        let request = engine_request(session, request_id, body);
        let dispatch = self.engine.dispatch(key, request);
        let outcome = match body_tx {
            None => dispatch.await,
            Some(tx) => match pump_body(session, tx, dispatch, self.max_body_bytes).await {
                Pumped::Done(outcome) => outcome,
                Pumped::TooLarge => {
                    let body = format!(
                        "request body exceeds the limit of {} bytes\n",
                        self.max_body_bytes
                    );
                    respond_text(session, 413, &body, request_id).await?;
                    return Ok(true);
                }
            },
        };
        match outcome {
            Ok(response) => {
                write_response(session, response, is_head).await?;
                Ok(true)
            }
            Err(FunctionFailure::Exception {
                pass_through: true, ..
            }) if fallback.is_some() => {
                // ctx.passThroughOnException(): the origin answers instead.
                ctx.origin = fallback.and_then(|name| state.origins.get(name).cloned());
                Ok(false)
            }
            Err(failure) => {
                let (status, reason) = describe_failure(function, &failure);
                tracing::warn!(target: "outpost::proxy", function, %request_id, status, "{reason}");
                respond_text(
                    session,
                    status,
                    &format!("{reason} (request id {request_id})\n"),
                    request_id,
                )
                .await?;
                Ok(true)
            }
        }
    }
}

#[async_trait]
impl ProxyHttp for EdgeProxy {
    type CTX = RequestCtx;

    /// No downstream modules: responses pass through as the function or origin made
    /// them (pingora's default adds a disabled compression module to every request).
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            origin: None,
            _in_flight: InFlight::new(&self.in_flight),
        }
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        let state = self.state.load_full();
        let header = session.req_header();
        let host = request_host(header);
        let path = header.uri.path();
        let route = state
            .routes
            .find(host, path, header.method.as_str())
            .map(|route| &route.target);
        match route {
            Some(RouteTarget::Function {
                name,
                fallback_origin,
            }) => {
                self.serve_function(session, ctx, &state, name, fallback_origin.as_ref())
                    .await
            }
            Some(RouteTarget::Origin { name }) => {
                ctx.origin = state.origins.get(name).cloned();
                if let Some(length) = content_length(session.req_header())
                    && length > self.max_body_bytes
                {
                    let request_id = self.request_ids.next();
                    respond_text(session, 413, "request body exceeds the limit\n", request_id)
                        .await?;
                    return Ok(true);
                }
                Ok(false)
            }
            Some(RouteTarget::Bypass) if state.default_origin.is_some() => {
                ctx.origin = state.default_origin.clone();
                Ok(false)
            }
            Some(RouteTarget::Bypass) | None => {
                let request_id = self.request_ids.next();
                let body = format!("no route matches {host}{path}\n");
                respond_text(session, 404, &body, request_id).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Box<HttpPeer>> {
        let Some(origin) = &ctx.origin else {
            return Err(pingora::Error::explain(
                pingora::ErrorType::InternalError,
                "no origin selected",
            ));
        };
        let mut peer = HttpPeer::new(origin.address.as_str(), origin.tls, origin.sni.clone());
        peer.options.connection_timeout = Some(Duration::from_secs(5));
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        if let Some(host) = ctx.origin.as_ref().and_then(|origin| origin.host.as_ref()) {
            upstream_request.insert_header("host", host.as_str())?;
        }
        if let Some(addr) = session.client_addr().and_then(|addr| addr.as_inet()) {
            upstream_request.insert_header("x-forwarded-for", addr.ip().to_string())?;
        }
        Ok(())
    }

    fn request_cache_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        let cacheable_origin = ctx.origin.as_ref().is_some_and(|origin| origin.cache);
        if let Some(cache) = &self.cache
            && cacheable_origin
            && pingora::cache::filters::request_cacheable(session.req_header())
        {
            session
                .cache
                .enable(cache.storage, Some(cache.eviction), None, None, None);
        }
        Ok(())
    }

    fn cache_key_callback(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<CacheKey> {
        let header = session.req_header();
        let namespace = ctx
            .origin
            .as_ref()
            .map(|origin| origin.name.as_str())
            .unwrap_or_default();
        // Origin name, host and URI, newline-framed so no two requests share a key by accident.
        let primary = format!("{namespace}\n{}\n{}", request_host(header), header.uri);
        Ok(CacheKey::new(primary, ""))
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        response: &ResponseHeader,
        _ctx: &mut RequestCtx,
    ) -> pingora::Result<RespCacheable> {
        if response.headers.contains_key("set-cookie") {
            return Ok(RespCacheable::Uncacheable(NoCacheReason::OriginNotCache));
        }
        let cache_control = CacheControl::from_resp_headers(response);
        let authorization = session.req_header().headers.contains_key("authorization");
        Ok(resp_cacheable(
            cache_control.as_ref(),
            response.clone(),
            authorization,
            &CACHE_DEFAULTS,
        ))
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        if ctx.origin.is_some() {
            let status = match session.cache.phase() {
                CachePhase::Hit => "HIT",
                CachePhase::Miss => "MISS",
                CachePhase::Stale | CachePhase::StaleUpdating => "STALE",
                CachePhase::Expired => "EXPIRED",
                CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => "REVALIDATED",
                _ => "BYPASS",
            };
            upstream_response.insert_header("x-outpost-cache", status)?;
        }
        Ok(())
    }
}

/// The request's host without port, as routes see it.
fn request_host(header: &RequestHeader) -> &str {
    header
        .headers
        .get(http::header::HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| header.uri.host())
        .unwrap_or("")
}

fn content_length(header: &RequestHeader) -> Option<u64> {
    header
        .headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Turns the downstream request head into the engine's request.
fn engine_request(session: &Session, request_id: RequestId, body: RequestBody) -> EngineRequest {
    let header = session.req_header();
    let host = header
        .headers
        .get(http::header::HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| header.uri.authority().map(|a| a.as_str()))
        .unwrap_or("localhost");
    let path = header
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let mut url = String::with_capacity("http://".len() + host.len() + path.len());
    url.push_str("http://");
    url.push_str(host);
    url.push_str(path);
    EngineRequest {
        method: header.method.clone(),
        url,
        headers: header.headers.clone(),
        body,
        request_id,
    }
}

/// Reads a request body (known to be small) to its end; `None` when it is empty.
async fn read_whole_body(session: &mut Session) -> pingora::Result<Option<Bytes>> {
    let Some(first) = session.read_request_body().await? else {
        return Ok(None);
    };
    let Some(second) = session.read_request_body().await? else {
        return Ok(Some(first));
    };
    let mut whole = bytes::BytesMut::with_capacity(first.len() + second.len());
    whole.extend_from_slice(&first);
    whole.extend_from_slice(&second);
    while let Some(chunk) = session.read_request_body().await? {
        whole.extend_from_slice(&chunk);
    }
    Ok(Some(whole.freeze()))
}

enum Pumped {
    Done(Result<EngineResponse, FunctionFailure>),
    TooLarge,
}

/// Feeds the request body to the handler while waiting for its response. A handler may
/// answer before reading the whole body; the rest is then left unread.
async fn pump_body(
    session: &mut Session,
    tx: mpsc::Sender<BodyChunk>,
    dispatch: impl Future<Output = Result<EngineResponse, FunctionFailure>>,
    limit: u64,
) -> Pumped {
    let mut dispatch = std::pin::pin!(dispatch);
    let mut sent: u64 = 0;
    let mut tx = Some(tx);
    loop {
        let Some(sender) = tx.as_ref() else {
            return Pumped::Done(dispatch.await);
        };
        tokio::select! {
            outcome = &mut dispatch => return Pumped::Done(outcome),
            chunk = session.read_request_body() => match chunk {
                Ok(Some(bytes)) => {
                    sent += bytes.len() as u64;
                    if sent > limit {
                        let _ = sender.send(Err("request body exceeds the node's limit".into())).await;
                        return Pumped::TooLarge;
                    }
                    // The handler stopped reading: keep waiting for its response only.
                    if sender.send(Ok(bytes)).await.is_err() {
                        tx = None;
                    }
                }
                Ok(None) => tx = None,
                Err(error) => {
                    let _ = sender.send(Err(format!("reading the request body failed: {error}"))).await;
                    tx = None;
                }
            },
        }
    }
}

async fn write_response(
    session: &mut Session,
    response: EngineResponse,
    is_head: bool,
) -> pingora::Result<()> {
    let mut header =
        ResponseHeader::build_no_case(response.status, Some(response.headers.len() + 1))?;
    let streamed = matches!(response.body, ResponseBody::Stream(_));
    let mut has_length = false;
    let mut last = None;
    for (name, value) in response.headers {
        // A name appears once, before the rest of its values.
        let name = match name {
            Some(name) => {
                last = Some(name.clone());
                name
            }
            None => match &last {
                Some(name) => name.clone(),
                None => continue,
            },
        };
        if name == http::header::CONTENT_LENGTH || name == http::header::TRANSFER_ENCODING {
            has_length |= name == http::header::CONTENT_LENGTH;
            // The node frames bodies it holds whole; streamed ones keep the handler's framing.
            if !streamed {
                continue;
            }
        }
        header.append_header(name, value)?;
    }
    match response.body {
        ResponseBody::Empty => {
            if !is_head {
                header.insert_header(http::header::CONTENT_LENGTH, "0")?;
            }
            session.write_response_header(Box::new(header), true).await
        }
        ResponseBody::Full(bytes) => {
            header.insert_header(http::header::CONTENT_LENGTH, bytes.len())?;
            if is_head || bytes.is_empty() {
                return session.write_response_header(Box::new(header), true).await;
            }
            session
                .write_response_header(Box::new(header), false)
                .await?;
            session.write_response_body(Some(bytes), true).await
        }
        ResponseBody::Stream(mut chunks) => {
            if !has_length {
                header.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
            }
            session
                .write_response_header(Box::new(header), is_head)
                .await?;
            if is_head {
                return Ok(());
            }
            while let Some(chunk) = chunks.recv().await {
                match chunk {
                    Ok(bytes) => session.write_response_body(Some(bytes), false).await?,
                    Err(reason) => {
                        // Headers are out: all that is left is to cut the response short.
                        return Err(pingora::Error::explain(
                            pingora::ErrorType::InternalError,
                            format!("response body stream failed: {reason}"),
                        ));
                    }
                }
            }
            session.write_response_body(None, true).await
        }
    }
}

/// A plain-text response the node itself produces (errors, 404, 413).
async fn respond_text(
    session: &mut Session,
    status: u16,
    body: &str,
    request_id: RequestId,
) -> pingora::Result<()> {
    let mut header = ResponseHeader::build_no_case(status, Some(3))?;
    header.insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    header.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    header.insert_header("x-outpost-request-id", request_id.to_string())?;
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session
        .write_response_body(Some(Bytes::copy_from_slice(body.as_bytes())), true)
        .await
}

/// Maps a failure to the status and the reason the client sees (no stack traces: those are logged).
pub fn describe_failure(function: &str, failure: &FunctionFailure) -> (u16, String) {
    match failure {
        FunctionFailure::Exception { message, .. } => {
            let name = message.split(':').next().unwrap_or("Error");
            (
                500,
                format!("function {function:?} threw an uncaught exception ({name})"),
            )
        }
        FunctionFailure::InvalidResponse(why) => (
            500,
            format!("function {function:?} returned an invalid response: {why}"),
        ),
        FunctionFailure::SubrequestLimit => (
            500,
            format!("function {function:?} exceeded its subrequest limit"),
        ),
        FunctionFailure::CpuLimit => (
            503,
            format!("function {function:?} exceeded its CPU time limit"),
        ),
        FunctionFailure::WallLimit => (
            504,
            format!("function {function:?} exceeded its wall time limit"),
        ),
        FunctionFailure::HeapLimit => (
            503,
            format!("function {function:?} exceeded its memory limit"),
        ),
        FunctionFailure::IsolateLost => (
            503,
            format!("function {function:?} was restarted while handling this request; retry"),
        ),
        FunctionFailure::NotDeployed => (
            502,
            format!("function {function:?} is not deployed on this node"),
        ),
        FunctionFailure::BootFailed(why) => {
            (503, format!("function {function:?} failed to start: {why}"))
        }
    }
}

/// Request ids of one worker: its index and a counter.
struct RequestIds {
    worker: u32,
    counter: AtomicU64,
}

impl RequestIds {
    fn new(worker: usize) -> RequestIds {
        RequestIds {
            worker: u32::try_from(worker).unwrap_or(u32::MAX),
            counter: AtomicU64::new(0),
        }
    }

    fn next(&self) -> RequestId {
        RequestId {
            worker: self.worker,
            seq: self.counter.fetch_add(1, Ordering::Relaxed),
        }
    }
}
