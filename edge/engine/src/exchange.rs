//! What crosses the engine boundary: a request going into an isolate and the response (head + body) coming out.

use std::sync::LazyLock;

use bytes::Bytes;
use tokio::sync::mpsc;

/// Capacity of a streamed body channel, in chunks: enough to keep a fast producer busy,
/// small enough that a slow reader pushes back on the producer.
pub const BODY_CHANNEL_CHUNKS: usize = 16;

/// One chunk of a streamed body, or the reason the stream broke.
pub type BodyChunk = Result<Bytes, String>;

/// A request body as it enters the engine.
#[derive(Debug, Default)]
pub enum RequestBody {
    /// No body (GET, HEAD, or an empty POST).
    #[default]
    Empty,
    /// The whole body, already read.
    Full(Bytes),
    /// A body still arriving; the handler reads it as a `ReadableStream`.
    Stream(mpsc::Receiver<BodyChunk>),
}

/// An HTTP request handed to a function.
#[derive(Debug)]
pub struct EngineRequest {
    /// Request method.
    pub method: http::Method,
    /// Absolute URL as the handler sees it (`request.url`).
    pub url: String,
    /// Header fields (the handler sees each value as a byte string).
    pub headers: http::HeaderMap,
    /// The body.
    pub body: RequestBody,
    /// The node's id for this request, used in logs and error responses.
    pub request_id: RequestId,
}

/// A request's id on this node: unique per process run, cheap to make and copy; it is
/// only turned into text (`3f9a1c0e0-1a2b`) when shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId {
    /// The worker that accepted the request.
    pub worker: u32,
    /// Its position among that worker's requests.
    pub seq: u64,
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        /// Eight random hex digits per process, so ids of different runs do not collide.
        static RUN: LazyLock<String> = LazyLock::new(|| {
            // std seeds every RandomState from the OS: a random number with no extra crate.
            let random = std::hash::BuildHasher::build_hasher(
                &std::collections::hash_map::RandomState::new(),
            );
            format!("{:08x}", std::hash::Hasher::finish(&random) as u32)
        });
        write!(f, "{}{:x}-{:x}", *RUN, self.worker, self.seq)
    }
}

/// A response body as it leaves the engine.
#[derive(Debug)]
pub enum ResponseBody {
    /// `new Response(null)` or a null-body status.
    Empty,
    /// A body the handler produced in one piece (string, bytes, JSON).
    Full(Bytes),
    /// A body the handler streams (`ReadableStream`).
    Stream(mpsc::Receiver<BodyChunk>),
}

/// An HTTP response produced by a function.
#[derive(Debug)]
pub struct EngineResponse {
    /// Status code, 200..=599 (the Response constructor enforces the range).
    pub status: u16,
    /// Header fields as the handler set them.
    pub headers: http::HeaderMap,
    /// The body.
    pub body: ResponseBody,
}

/// Why a function produced no response; carried from the isolate to the boundary where it becomes a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FunctionFailure {
    /// The handler threw or its promise rejected; `message` is `name: message` of the
    /// error (the stack goes to the log only).
    Exception {
        /// The error's `name: message`.
        message: String,
        /// The handler asked for `ctx.passThroughOnException()` before failing.
        pass_through: bool,
    },
    /// The handler returned something that is not a `Response`.
    InvalidResponse(String),
    /// The handler made more `fetch()` calls than its limit allows.
    SubrequestLimit,
    /// A single run of the handler's JavaScript used more CPU than its limit.
    CpuLimit,
    /// The request ran longer (wall clock) than its limit.
    WallLimit,
    /// The isolate ran out of its heap limit and was discarded.
    HeapLimit,
    /// The isolate was discarded while the request was in flight (another request broke it).
    IsolateLost,
    /// No function of that name is deployed on this node.
    NotDeployed,
    /// The function's isolate could not be booted (the message says why).
    BootFailed(String),
}
