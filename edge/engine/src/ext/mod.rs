//! The `outpost` deno_core extension: ops the runtime JS (`00_runtime.js`) uses to hand responses, bodies and logs back to Rust.
//!
//! This file is compiled twice: into the engine, and into `build.rs`, which needs the same
//! ops to take the startup snapshot. It may only use `crate::exchange` and `crate::kv`
//! from the engine.

pub mod cache;
pub mod kv;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use deno_core::JsBuffer;
use deno_core::OpState;
use deno_core::convert::ByteString;
use deno_core::op2;
use tokio::sync::mpsc;
use tokio::sync::oneshot;

use crate::exchange::BODY_CHANNEL_CHUNKS;
use crate::exchange::BodyChunk;
use crate::exchange::EngineResponse;
use crate::exchange::FunctionFailure;
use crate::exchange::RequestId;
use crate::exchange::ResponseBody;

deno_core::extension!(
    outpost,
    deps = [deno_webidl, deno_web, deno_net, deno_fetch, deno_crypto],
    ops = [
        op_outpost_respond_empty,
        op_outpost_respond_bytes,
        op_outpost_respond_text,
        op_outpost_respond_static_text,
        op_outpost_respond_static_bytes,
        op_outpost_respond_stream,
        op_outpost_body_write,
        op_outpost_body_close,
        op_outpost_body_error,
        op_outpost_fail,
        op_outpost_done,
        op_outpost_log,
        kv::op_outpost_kv_get,
        kv::op_outpost_kv_put,
        kv::op_outpost_kv_delete,
        kv::op_outpost_kv_list,
        cache::op_outpost_cache_put,
        cache::op_outpost_cache_match,
        cache::op_outpost_cache_delete,
    ],
    esm_entry_point = "ext:outpost/00_runtime.js",
    esm = [dir "src/ext", "00_runtime.js", "01_kv.js", "02_cache.js"],
);

deno_core::extension!(
    deno_net,
    lazy_loaded_js = [dir "src/ext/stubs", "02_tls.js"],
);

/// Every extension an isolate is created with, in load order. The same list takes the
/// startup snapshot (`build.rs`) and creates each isolate, so their ops always match.
pub fn extensions() -> Vec<deno_core::Extension> {
    vec![
        deno_webidl::deno_webidl::init(),
        deno_web::deno_web::init(
            std::sync::Arc::new(deno_web::BlobStore::default()),
            None,
            false,
            Default::default(),
        ),
        deno_net::init(),
        deno_fetch::deno_fetch::init(deno_fetch::Options {
            user_agent: concat!("Outpost/", env!("CARGO_PKG_VERSION")).to_string(),
            ..Default::default()
        }),
        deno_crypto::deno_crypto::init(None),
        outpost::init(),
    ]
}

/// Where a request's outcome goes: the dispatcher waiting for the response head.
pub type Responder = oneshot::Sender<Result<EngineResponse, FunctionFailure>>;

/// A request the isolate has been handed and not yet finished (response sent and
/// every `ctx.waitUntil` promise settled).
pub struct PendingRequest {
    /// The node's request id, for logs.
    pub request_id: RequestId,
    /// Taken when the response head (or a failure) is sent.
    pub responder: Option<Responder>,
    /// Present while a streamed response body is being written.
    pub body: Option<mpsc::Sender<BodyChunk>>,
    /// When the request's wall-time limit runs out.
    pub deadline: Instant,
}

/// Requests in flight in one isolate, keyed by the small integer id the JS side sees.
#[derive(Default)]
pub struct RequestTable {
    next_id: u32,
    entries: HashMap<u32, PendingRequest>,
}

impl RequestTable {
    /// Registers a request and returns the id JS uses to refer to it.
    pub fn insert(&mut self, pending: PendingRequest) -> u32 {
        loop {
            // Ids are SMIs on the JS side: keep them in 1..2^30.
            self.next_id = if self.next_id >= (1 << 30) {
                1
            } else {
                self.next_id + 1
            };
            if !self.entries.contains_key(&self.next_id) {
                self.entries.insert(self.next_id, pending);
                return self.next_id;
            }
        }
    }

    /// Requests currently in flight.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Removes and returns every request whose deadline has passed.
    pub fn take_expired(&mut self, now: Instant) -> Vec<PendingRequest> {
        let expired: Vec<u32> = self
            .entries
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        expired
            .into_iter()
            .filter_map(|id| self.entries.remove(&id))
            .collect()
    }

    /// Removes and returns every request (the isolate is going away).
    pub fn drain(&mut self) -> Vec<PendingRequest> {
        self.entries.drain().map(|(_, p)| p).collect()
    }

    /// The earliest deadline among requests in flight.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.entries.values().map(|p| p.deadline).min()
    }

    fn get_mut(&mut self, id: u32) -> Option<&mut PendingRequest> {
        self.entries.get_mut(&id)
    }
}

/// The function this isolate runs, for log lines and Cache API keys.
pub struct FunctionLabel(pub Arc<str>);

/// The request `id` still in flight in this isolate. There is none while the startup
/// snapshot is taken (no request table then), so the warm-up requests go nowhere.
fn pending(state: &mut OpState, id: u32) -> Option<&mut PendingRequest> {
    state.try_borrow_mut::<RequestTable>()?.get_mut(id)
}

/// The responder of request `id`, if it has not answered yet.
fn take_responder(state: &mut OpState, id: u32) -> Option<Responder> {
    pending(state, id)?.responder.take()
}

fn respond(
    state: &mut OpState,
    id: u32,
    status: u32,
    headers: http::HeaderMap,
    body: ResponseBody,
) {
    let Some(responder) = take_responder(state, id) else {
        return;
    };
    // The Response constructor keeps status within 200..=599, so it fits a u16.
    let status = u16::try_from(status).unwrap_or(500);
    // A dropped receiver means the client went away; nothing left to tell it.
    let _ = responder.send(Ok(EngineResponse {
        status,
        headers,
        body,
    }));
}

/// The header list of a `Response` as HTTP headers. JS `Headers` already validated
/// each name and value against the Fetch spec; the few byte strings it allows that
/// HTTP/1 cannot carry (control characters) make the response invalid.
fn header_map(
    state: &mut OpState,
    id: u32,
    list: Vec<(ByteString, ByteString)>,
) -> Option<http::HeaderMap> {
    let mut headers = http::HeaderMap::with_capacity(list.len());
    for (name, value) in list {
        let parsed = http::HeaderName::from_bytes(&name)
            .ok()
            .zip(http::HeaderValue::from_bytes(&value).ok());
        let Some((name, value)) = parsed else {
            fail_request(
                state,
                id,
                FunctionFailure::InvalidResponse(format!(
                    "header {:?} cannot be sent over HTTP",
                    String::from_utf8_lossy(&name)
                )),
            );
            return None;
        };
        headers.append(name, value);
    }
    Some(headers)
}

/// Fails a request that has not answered yet.
fn fail_request(state: &mut OpState, id: u32, failure: FunctionFailure) {
    if let Some(responder) = take_responder(state, id) {
        let _ = responder.send(Err(failure));
    }
}

/// A header map with at most a `content-type` (empty: none).
fn content_type_only(content_type: &str) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    if !content_type.is_empty()
        && let Ok(value) = http::HeaderValue::from_str(content_type)
    {
        headers.insert(http::header::CONTENT_TYPE, value);
    }
    headers
}

/// Sends a response without a body.
#[op2]
fn op_outpost_respond_empty(
    state: &mut OpState,
    #[smi] id: u32,
    #[smi] status: u32,
    #[scoped] headers: Vec<(ByteString, ByteString)>,
) {
    if let Some(headers) = header_map(state, id, headers) {
        respond(state, id, status, headers, ResponseBody::Empty);
    }
}

/// Sends a response whose body is a byte buffer.
#[op2]
fn op_outpost_respond_bytes(
    state: &mut OpState,
    #[smi] id: u32,
    #[smi] status: u32,
    #[scoped] headers: Vec<(ByteString, ByteString)>,
    #[buffer] body: JsBuffer,
) {
    if let Some(headers) = header_map(state, id, headers) {
        let body = ResponseBody::Full(Bytes::from_owner(body));
        respond(state, id, status, headers, body);
    }
}

/// Sends a response whose body is a string (sent as UTF-8).
#[op2]
fn op_outpost_respond_text(
    state: &mut OpState,
    #[smi] id: u32,
    #[smi] status: u32,
    #[scoped] headers: Vec<(ByteString, ByteString)>,
    #[string] body: String,
) {
    if let Some(headers) = header_map(state, id, headers) {
        respond(
            state,
            id,
            status,
            headers,
            ResponseBody::Full(Bytes::from(body)),
        );
    }
}

/// Sends a `Response` built from a string and at most a content type (its headers were
/// never materialized: `new Response("text")`, `Response.json(data)`).
#[op2(fast)]
fn op_outpost_respond_static_text(
    state: &mut OpState,
    #[smi] id: u32,
    #[smi] status: u32,
    #[string] content_type: &str,
    #[string] body: &str,
) {
    let headers = content_type_only(content_type);
    let body = ResponseBody::Full(Bytes::copy_from_slice(body.as_bytes()));
    respond(state, id, status, headers, body);
}

/// Like `op_outpost_respond_static_text`, for a byte body.
#[op2]
fn op_outpost_respond_static_bytes(
    state: &mut OpState,
    #[smi] id: u32,
    #[smi] status: u32,
    #[string] content_type: &str,
    #[buffer] body: JsBuffer,
) {
    let headers = content_type_only(content_type);
    respond(
        state,
        id,
        status,
        headers,
        ResponseBody::Full(Bytes::from_owner(body)),
    );
}

/// Sends the response head of a streamed response; chunks follow with `op_outpost_body_write`.
#[op2]
fn op_outpost_respond_stream(
    state: &mut OpState,
    #[smi] id: u32,
    #[smi] status: u32,
    #[scoped] headers: Vec<(ByteString, ByteString)>,
) {
    let Some(headers) = header_map(state, id, headers) else {
        return;
    };
    let (tx, rx) = mpsc::channel(BODY_CHANNEL_CHUNKS);
    if let Some(pending) = pending(state, id) {
        pending.body = Some(tx);
    }
    respond(state, id, status, headers, ResponseBody::Stream(rx));
}

/// Writes one chunk of a streamed response body; resolves to false when nobody reads it any more.
#[op2]
async fn op_outpost_body_write(
    state: Rc<RefCell<OpState>>,
    #[smi] id: u32,
    #[buffer] chunk: JsBuffer,
) -> bool {
    let sender = {
        let mut state = state.borrow_mut();
        match pending(&mut state, id).and_then(|p| p.body.clone()) {
            Some(sender) => sender,
            None => return false,
        }
    };
    sender.send(Ok(Bytes::from_owner(chunk))).await.is_ok()
}

/// Ends a streamed response body.
#[op2(fast)]
fn op_outpost_body_close(state: &mut OpState, #[smi] id: u32) {
    if let Some(pending) = pending(state, id) {
        pending.body = None;
    }
}

/// Breaks a streamed response body with an error (the client sees a truncated response).
#[op2(fast)]
fn op_outpost_body_error(state: &mut OpState, #[smi] id: u32, #[string] message: &str) {
    if let Some(sender) = pending(state, id).and_then(|pending| pending.body.take()) {
        let _ = sender.try_send(Err(message.to_string()));
    }
}

/// Reports that the handler failed before producing a response.
#[op2(fast)]
fn op_outpost_fail(
    state: &mut OpState,
    #[smi] id: u32,
    #[string] kind: &str,
    #[string] message: &str,
    #[string] stack: &str,
    pass_through: bool,
) {
    let function = label(state);
    let Some(pending) = pending(state, id) else {
        return;
    };
    let failure = match kind {
        "invalid_response" => FunctionFailure::InvalidResponse(message.to_string()),
        "subrequests" => FunctionFailure::SubrequestLimit,
        _ => FunctionFailure::Exception {
            message: message.to_string(),
            pass_through,
        },
    };
    tracing::error!(
        target: "outpost::function",
        function = &*function,
        request_id = %pending.request_id,
        kind,
        "handler failed: {stack}"
    );
    if let Some(responder) = pending.responder.take() {
        let _ = responder.send(Err(failure));
    }
}

/// The function's name for log lines.
fn label(state: &OpState) -> Arc<str> {
    state
        .try_borrow::<FunctionLabel>()
        .map_or_else(|| Arc::from(""), |label| label.0.clone())
}

/// Marks a request finished: response sent and every `waitUntil` promise settled.
#[op2(fast)]
fn op_outpost_done(state: &mut OpState, #[smi] id: u32) {
    if let Some(table) = state.try_borrow_mut::<RequestTable>() {
        table.entries.remove(&id);
    }
}

/// `console.*` output of a handler, as a tracing event tagged with the function and request.
#[op2(fast)]
fn op_outpost_log(state: &mut OpState, #[smi] level: u32, #[string] message: &str, #[smi] id: u32) {
    let function = label(state);
    let request_id = pending(state, id).map(|p| tracing::field::display(p.request_id));
    let message = message.strip_suffix('\n').unwrap_or(message);
    let function = &*function;
    match level {
        0 => tracing::debug!(target: "outpost::console", function, request_id, "{message}"),
        1 => tracing::info!(target: "outpost::console", function, request_id, "{message}"),
        2 => tracing::warn!(target: "outpost::console", function, request_id, "{message}"),
        _ => tracing::error!(target: "outpost::console", function, request_id, "{message}"),
    }
}
