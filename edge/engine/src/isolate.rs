//! One function version in one V8 isolate: boot from the startup snapshot, dispatch requests into JS, drive its event loop.
//!
//! Several isolates share a worker thread. rusty_v8 enters an isolate when it is created
//! and expects isolates to be dropped in reverse creation order; to let the shard evict
//! any isolate at any time, an isolate is exited right after boot and entered only for
//! the span of each use (`Entered`), which keeps V8's per-thread entry stack balanced.

use std::borrow::Cow;
use std::cell::Cell;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Context;
use std::task::Poll;
use std::task::Waker;
use std::time::Instant;

use bytes::Bytes;
use deno_core::AsyncRefCell;
use deno_core::AsyncResult;
use deno_core::BufView;
use deno_core::JsRuntime;
use deno_core::ModuleSpecifier;
use deno_core::PollEventLoopOptions;
use deno_core::RcRef;
use deno_core::Resource;
use deno_core::RuntimeOptions;
use deno_core::v8;
use deno_error::JsErrorBox;
use tokio::sync::mpsc;

use crate::bundle::FunctionSpec;
use crate::exchange::BodyChunk;
use crate::exchange::EngineRequest;
use crate::exchange::FunctionFailure;
use crate::exchange::RequestBody;
use crate::ext::FunctionLabel;
use crate::ext::PendingRequest;
use crate::ext::RequestTable;
use crate::ext::Responder;
use crate::ext::cache::CacheAccess;
use crate::ext::cache::ResponseCache;
use crate::ext::kv::KvAccess;
use crate::limits::Limits;
use crate::loader::BUNDLE_ROOT;
use crate::loader::BundleLoader;
use crate::watchdog::SliceClock;

static SNAPSHOT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/OUTPOST_SNAPSHOT.bin"));

/// Why an isolate could not be booted; the message names the module and line where V8 gave one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootError {
    /// The bundle failed to load or evaluate (syntax error, missing import, throw at top level).
    #[error("{0}")]
    Script(String),
    /// The bundle evaluated but exports no usable handler.
    #[error("{0}")]
    NoHandler(String),
    /// Top-level code ran past the startup CPU limit.
    #[error("top-level code exceeded the startup CPU limit of {0} ms")]
    StartupCpu(u64),
    /// Top-level code waited on I/O or a timer, which is not allowed outside a request.
    #[error(
        "top-level await did not settle at startup: I/O and timers are only allowed inside a request"
    )]
    StartupAwait,
    /// V8 could not create the isolate.
    #[error("creating the isolate failed: {0}")]
    Runtime(String),
}

/// Why an isolate was retired; every request still in flight in it fails with this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retirement {
    /// A run of JavaScript exceeded the CPU limit.
    Cpu,
    /// The heap reached its limit.
    Heap,
    /// Replaced by a new version, removed, or evicted under memory pressure.
    Evicted,
}

impl Retirement {
    fn failure(self) -> FunctionFailure {
        match self {
            Retirement::Cpu => FunctionFailure::CpuLimit,
            Retirement::Heap => FunctionFailure::HeapLimit,
            Retirement::Evicted => FunctionFailure::IsolateLost,
        }
    }
}

/// A booted isolate for one function version.
pub(crate) struct FunctionIsolate {
    // Globals must be released before the runtime (and its isolate) is dropped.
    context: v8::Global<v8::Context>,
    dispatch_fn: v8::Global<v8::Function>,
    runtime: JsRuntime,
    heap_exceeded: Rc<Cell<bool>>,
    pub(crate) spec: Arc<FunctionSpec>,
    pub(crate) last_used: Instant,
    /// Wakes the task that drives this isolate's event loop.
    pub(crate) driver: Option<Waker>,
    pub(crate) retired: Option<Retirement>,
}

/// Makes `runtime`'s isolate the current one for the lifetime of the guard.
struct Entered<'a>(&'a mut JsRuntime);

impl<'a> Entered<'a> {
    #[expect(
        unsafe_code,
        reason = "rusty_v8 exposes isolate entry only as unsafe; balanced by Drop"
    )]
    fn new(runtime: &'a mut JsRuntime) -> Self {
        // SAFETY: the isolate is alive (owned by `runtime`) and used only on this thread;
        // the matching exit happens in Drop, so the thread's entry stack stays balanced.
        unsafe { runtime.v8_isolate().enter() };
        Entered(runtime)
    }
}

impl Drop for Entered<'_> {
    #[expect(
        unsafe_code,
        reason = "rusty_v8 exposes isolate exit only as unsafe; pairs with new()"
    )]
    fn drop(&mut self) {
        // SAFETY: pairs with the enter() in new(); nothing entered another isolate in
        // between without exiting it again.
        unsafe { self.0.v8_isolate().exit() };
    }
}

impl FunctionIsolate {
    /// Creates the isolate from the snapshot, evaluates the bundle and binds the handler.
    /// Runs synchronously: the watchdog bounds top-level code by the startup CPU limit.
    /// `spare` is a blank isolate ready to run on this thread, made with the function's
    /// heap limit (see [`SpareIsolate::fits`]); without one, a new isolate is created here.
    pub(crate) fn boot(
        spec: Arc<FunctionSpec>,
        clock: &SliceClock,
        spare: Option<SpareIsolate>,
        cache: Option<Arc<dyn ResponseCache>>,
    ) -> Result<FunctionIsolate, BootError> {
        let heap_exceeded = Rc::new(Cell::new(false));
        let spare = match spare {
            Some(spare) => spare,
            None => SpareIsolate::new(spec.limits.heap_bytes())?,
        };
        let mut runtime = spare.assign(&spec, cache)?;
        {
            let handle = runtime.v8_isolate().thread_safe_handle();
            let flag = heap_exceeded.clone();
            runtime.add_near_heap_limit_callback(move |current, _initial| {
                flag.set(true);
                handle.terminate_execution();
                // Head-room so V8 can unwind the terminated script instead of aborting.
                current.saturating_mul(2)
            });
        }
        let startup_cpu_ms = spec.limits.startup_cpu_ms;
        let handle = runtime.v8_isolate().thread_safe_handle();
        let slice = clock.begin(handle, spec.limits.startup_cpu());
        let booted = {
            let entered = Entered::new(&mut runtime);
            bind(entered.0, &spec)
        };
        let killed = clock.end(slice);
        if killed || heap_exceeded.get() {
            drop_runtime(runtime);
            return Err(if killed {
                BootError::StartupCpu(startup_cpu_ms)
            } else {
                BootError::Script("top-level code exceeded the heap limit".into())
            });
        }
        let (context, dispatch_fn) = match booted {
            Ok(bound) => bound,
            Err(error) => {
                drop_runtime(runtime);
                return Err(error);
            }
        };
        Ok(FunctionIsolate {
            context,
            dispatch_fn,
            runtime,
            heap_exceeded,
            spec,
            last_used: Instant::now(),
            driver: None,
            retired: None,
        })
    }

    /// Hands one request to the handler. The handler runs until it first awaits; the
    /// response arrives on `responder`, now or when the event loop completes it.
    pub(crate) fn dispatch(
        &mut self,
        request: EngineRequest,
        responder: Responder,
        clock: &SliceClock,
    ) {
        self.last_used = Instant::now();
        let limits = self.spec.limits;
        let op_state = self.runtime.op_state();
        let EngineRequest {
            method,
            url,
            headers,
            body,
            request_id,
        } = request;
        let (id, body) = {
            let mut state = op_state.borrow_mut();
            let body = match body {
                RequestBody::Stream(rx) => {
                    JsBody::Stream(state.resource_table.add(RequestBodyResource::new(rx)))
                }
                RequestBody::Full(bytes) => JsBody::Bytes(bytes),
                RequestBody::Empty => JsBody::None,
            };
            let id = state.borrow_mut::<RequestTable>().insert(PendingRequest {
                request_id,
                responder: Some(responder),
                body: None,
                deadline: self.last_used + limits.wall(),
            });
            (id, body)
        };
        let handle = self.runtime.v8_isolate().thread_safe_handle();
        let slice = clock.begin(handle, limits.cpu());
        {
            let entered = Entered::new(&mut self.runtime);
            let isolate = entered.0.v8_isolate();
            v8::scope_with_context!(scope, isolate, &self.context);
            let body: v8::Local<v8::Value> = match body {
                JsBody::Stream(rid) => v8::Integer::new_from_unsigned(scope, rid).into(),
                JsBody::Bytes(bytes) => uint8_array(scope, bytes),
                JsBody::None => v8::undefined(scope).into(),
            };
            let mut pairs = Vec::with_capacity(headers.len() * 2);
            for (name, value) in &headers {
                pairs.push(byte_string(scope, name.as_str().as_bytes()));
                pairs.push(byte_string(scope, value.as_bytes()));
            }
            let args = [
                v8::Integer::new_from_unsigned(scope, id).into(),
                byte_string(scope, method.as_str().as_bytes()),
                js_string(scope, &url),
                v8::Array::new_with_elements(scope, &pairs).into(),
                body,
            ];
            let dispatch = v8::Local::new(scope, &self.dispatch_fn);
            let undefined = v8::undefined(scope).into();
            v8::tc_scope!(let scope, scope);
            let called = dispatch.call(scope, undefined, &args);
            if called.is_some() {
                scope.perform_microtask_checkpoint();
            }
        }
        if clock.end(slice) {
            self.retire(Retirement::Cpu);
        } else if self.heap_exceeded.get() {
            self.retire(Retirement::Heap);
        }
        if let Some(waker) = &self.driver {
            waker.wake_by_ref();
        }
    }

    /// Runs whatever the event loop has ready (timers, finished fetches, body reads) and
    /// fails requests past their wall-time limit. Pending means "wake me later".
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>, clock: &SliceClock) -> Poll<()> {
        if self.retired.is_some() {
            return Poll::Ready(());
        }
        self.driver = Some(cx.waker().clone());
        let handle = self.runtime.v8_isolate().thread_safe_handle();
        let slice = clock.begin(handle, self.spec.limits.cpu());
        let result = {
            let entered = Entered::new(&mut self.runtime);
            entered
                .0
                .poll_event_loop(cx, PollEventLoopOptions::default())
        };
        if clock.end(slice) {
            self.retire(Retirement::Cpu);
            return Poll::Ready(());
        }
        if self.heap_exceeded.get() {
            self.retire(Retirement::Heap);
            return Poll::Ready(());
        }
        if let Poll::Ready(Err(error)) = result {
            tracing::error!(
                target: "outpost::function",
                function = %self.spec.name,
                "uncaught error in the event loop: {error}"
            );
            // Keep serving: later work in this isolate may still complete.
            cx.waker().wake_by_ref();
        }
        self.expire(Instant::now());
        Poll::Pending
    }

    /// Requests currently in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.runtime
            .op_state()
            .borrow()
            .borrow::<RequestTable>()
            .len()
    }

    /// The earliest wall-time deadline among requests in flight.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.runtime
            .op_state()
            .borrow()
            .borrow::<RequestTable>()
            .next_deadline()
    }

    /// Fails every request whose wall-time limit has passed.
    pub(crate) fn expire(&mut self, now: Instant) {
        let expired = self
            .runtime
            .op_state()
            .borrow_mut()
            .borrow_mut::<RequestTable>()
            .take_expired(now);
        for pending in expired {
            tracing::warn!(
                target: "outpost::limits",
                function = %self.spec.name,
                request_id = %pending.request_id,
                wall_ms = self.spec.limits.wall_ms,
                "request exceeded its wall-time limit"
            );
            fail_pending(pending, FunctionFailure::WallLimit);
        }
    }

    /// Bytes of V8 heap this isolate holds, for the node's memory budget.
    pub(crate) fn heap_bytes(&mut self) -> usize {
        self.runtime
            .v8_isolate()
            .get_heap_statistics()
            .total_physical_size()
    }

    /// Takes the isolate out of service: every request in flight fails with `why`.
    pub(crate) fn retire(&mut self, why: Retirement) {
        if self.retired.is_some() {
            return;
        }
        self.retired = Some(why);
        if why != Retirement::Evicted {
            tracing::warn!(
                target: "outpost::limits",
                function = %self.spec.name,
                reason = ?why,
                "isolate retired: it broke a limit and will be replaced"
            );
        }
        let pending = self
            .runtime
            .op_state()
            .borrow_mut()
            .borrow_mut::<RequestTable>()
            .drain();
        let mut first = true;
        for request in pending {
            // The request whose code broke the limit gets the limit as its reason; the rest
            // lost their isolate under them.
            let failure = if first {
                why.failure()
            } else {
                FunctionFailure::IsolateLost
            };
            first = false;
            fail_pending(request, failure);
        }
        if let Some(waker) = self.driver.take() {
            waker.wake();
        }
    }
}

impl Drop for FunctionIsolate {
    #[expect(
        unsafe_code,
        reason = "the isolate must be current while it is disposed"
    )]
    fn drop(&mut self) {
        for pending in self
            .runtime
            .op_state()
            .borrow_mut()
            .borrow_mut::<RequestTable>()
            .drain()
        {
            fail_pending(pending, FunctionFailure::IsolateLost);
        }
        // SAFETY: OwnedIsolate's drop exits the isolate and asserts it is the current one;
        // entering it here makes it current and the drop's exit balances this enter.
        unsafe { self.runtime.v8_isolate().enter() };
    }
}

fn fail_pending(mut pending: PendingRequest, failure: FunctionFailure) {
    if let Some(responder) = pending.responder.take() {
        let _ = responder.send(Err(failure.clone()));
    }
    if let Some(body) = pending.body.take() {
        let _ = body.try_send(Err(format!("{failure:?}")));
    }
}

/// Drops a runtime that is not entered (boot failed after the creation entry was exited).
#[expect(
    unsafe_code,
    reason = "the isolate must be current while it is disposed"
)]
fn drop_runtime(mut runtime: JsRuntime) {
    // SAFETY: see FunctionIsolate::drop.
    unsafe { runtime.v8_isolate().enter() };
    drop(runtime);
}

/// An isolate created from the snapshot that no function has been given yet. Creating
/// an isolate is most of a cold start (snapshot deserialization, ~3.5 ms), so each worker
/// keeps one of these ready (made on another thread, see [`crate::spare`]) and a
/// function's first request only loads its bundle. No function has run in it: handing
/// it out leaks no state.
pub(crate) struct SpareIsolate {
    /// Exited (see the module docs); `None` once assigned.
    runtime: Option<JsRuntime>,
    loader: Rc<BundleLoader>,
    heap_bytes: usize,
}

impl SpareIsolate {
    /// Creates a blank isolate whose V8 heap is capped at `heap_bytes`.
    pub(crate) fn new(heap_bytes: usize) -> Result<SpareIsolate, BootError> {
        let loader = Rc::new(BundleLoader::default());
        let create_params = v8::CreateParams::default().heap_limits(0, heap_bytes);
        let mut runtime = JsRuntime::try_new(RuntimeOptions {
            startup_snapshot: Some(SNAPSHOT),
            extensions: crate::ext::extensions(),
            module_loader: Some(loader.clone()),
            create_params: Some(create_params),
            ..Default::default()
        })
        .map_err(|error| BootError::Runtime(error.to_string()))?;
        // The isolate is entered on creation; balance that before anything else can run.
        #[expect(
            unsafe_code,
            reason = "leave the isolate entered by creation; see the module docs"
        )]
        // SAFETY: the isolate was just created on this thread and is the current one.
        unsafe {
            runtime.v8_isolate().exit()
        };
        Ok(SpareIsolate {
            runtime: Some(runtime),
            loader,
            heap_bytes,
        })
    }

    /// Whether a function with these limits can use this isolate (the heap cap is fixed
    /// when an isolate is created).
    pub(crate) fn fits(&self, limits: &Limits) -> bool {
        self.heap_bytes == limits.heap_bytes()
    }

    /// Points V8's stack guard at the calling thread's stack. V8 sets the guard from the
    /// stack of the thread that creates an isolate; one made on another thread must have
    /// it set again before it runs JavaScript here. The limit is V8's default distance
    /// (`--stack-size`) below the current stack position, as if created here.
    pub(crate) fn set_stack_limit_here(&mut self) {
        /// V8's default `--stack-size` on 64-bit targets, in bytes.
        const JS_STACK_BYTES: usize = 984 * 1024;
        let Some(runtime) = self.runtime.as_mut() else {
            return;
        };
        let marker = 0_u8;
        let here = std::hint::black_box(std::ptr::addr_of!(marker)) as usize;
        let entered = Entered::new(runtime);
        #[expect(
            unsafe_code,
            reason = "v8::Isolate::SetStackLimit has no rusty_v8 wrapper"
        )]
        // SAFETY: the isolate is alive and entered on this thread; SetStackLimit only
        // stores the limit in the isolate's stack guard. `UnsafeRawIsolatePtr` is a
        // transparent wrapper of the C++ `v8::Isolate*` that the symbol takes as `this`.
        unsafe {
            let isolate: *mut std::ffi::c_void =
                std::mem::transmute(entered.0.v8_isolate().as_raw_isolate_ptr());
            v8_isolate_set_stack_limit(isolate, here.saturating_sub(JS_STACK_BYTES));
        }
    }

    /// Gives the isolate to `spec`: its bundle and its per-function state.
    fn assign(
        mut self,
        spec: &FunctionSpec,
        cache: Option<Arc<dyn ResponseCache>>,
    ) -> Result<JsRuntime, BootError> {
        let runtime = self
            .runtime
            .take()
            .ok_or_else(|| runtime_error("the spare isolate was already assigned"))?;
        self.loader.fill(&spec.bundle);
        let op_state = runtime.op_state();
        let mut state = op_state.borrow_mut();
        state.put(RequestTable::default());
        state.put(FunctionLabel(Arc::from(spec.name.as_str())));
        state.put(crate::fetch_permissions());
        state.put(KvAccess(spec.kv.clone()));
        state.put(CacheAccess(cache));
        drop(state);
        Ok(runtime)
    }
}

#[expect(
    unsafe_code,
    reason = "declares a V8 C++ API function rusty_v8 does not wrap"
)]
unsafe extern "C" {
    /// `void v8::Isolate::SetStackLimit(uintptr_t)`: a non-virtual member function, so
    /// under the Itanium C++ ABI it takes `this` as its first argument.
    #[link_name = "_ZN2v87Isolate13SetStackLimitEm"]
    fn v8_isolate_set_stack_limit(isolate: *mut std::ffi::c_void, stack_limit: usize);
}

impl Drop for SpareIsolate {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            drop_runtime(runtime);
        }
    }
}

/// Evaluates the bundle and binds its handler; returns the context and the dispatcher.
fn bind(
    runtime: &mut JsRuntime,
    spec: &FunctionSpec,
) -> Result<(v8::Global<v8::Context>, v8::Global<v8::Function>), BootError> {
    let context = runtime.main_context();
    // Take the runtime's internal entry points off the global object before user code runs.
    let (boot_fn, dispatch_fn) = {
        let isolate = runtime.v8_isolate();
        v8::scope_with_context!(scope, isolate, &context);
        let global = scope.get_current_context().global(scope);
        let key =
            v8::String::new(scope, "outpost.internal").ok_or_else(|| runtime_error("string"))?;
        let key = v8::Symbol::for_key(scope, key);
        let internal = global
            .get(scope, key.into())
            .and_then(|v| v8::Local::<v8::Object>::try_from(v).ok())
            .ok_or_else(|| runtime_error("the startup snapshot lacks the runtime entry points"))?;
        global.delete(scope, key.into());
        // No `Deno` namespace for handlers: no files, env, subprocesses or raw sockets.
        for name in ["Deno", "__bootstrap"] {
            let name = v8::String::new(scope, name).ok_or_else(|| runtime_error("string"))?;
            global.delete(scope, name.into());
        }
        let boot = get_function(scope, internal, "boot")?;
        let dispatch = get_function(scope, internal, "dispatch")?;
        (
            v8::Global::new(scope, boot),
            v8::Global::new(scope, dispatch),
        )
    };

    let main = ModuleSpecifier::parse(&format!("{BUNDLE_ROOT}{}", spec.bundle.main()))
        .map_err(|error| BootError::Script(error.to_string()))?;
    let module_id = poll_ready(runtime.load_main_es_module(&main))?
        .map_err(|error| BootError::Script(error.to_string()))?;
    let evaluation = runtime.mod_evaluate(module_id);
    settle(runtime, evaluation)?.map_err(|error| BootError::Script(error.to_string()))?;
    let namespace = runtime
        .get_module_namespace(module_id)
        .map_err(|error| BootError::Script(error.to_string()))?;

    let env_json = serde_json::Value::Object(spec.env.clone()).to_string();
    let kv_json = serde_json::to_string(&crate::ext::kv::binding_names(spec.kv.as_ref()))
        .unwrap_or_else(|_| "[]".into());
    let isolate = runtime.v8_isolate();
    v8::scope_with_context!(scope, isolate, &context);
    v8::tc_scope!(let scope, scope);
    let boot = v8::Local::new(scope, &boot_fn);
    let args = [
        v8::Local::new(scope, &namespace).into(),
        js_string(scope, &env_json),
        v8::Integer::new_from_unsigned(scope, spec.limits.subrequests).into(),
        js_string(scope, &kv_json),
    ];
    let undefined = v8::undefined(scope).into();
    if boot.call(scope, undefined, &args).is_none() {
        let message = scope
            .exception()
            .map(|e| e.to_rust_string_lossy(scope))
            .unwrap_or_else(|| "the handler could not be bound".to_string());
        return Err(BootError::NoHandler(format!(
            "{}: {message}",
            spec.bundle.main()
        )));
    }
    Ok((context, dispatch_fn))
}

/// Polls a future that needs no I/O (a module load from the in-memory loader) to completion.
fn poll_ready<T>(future: impl Future<Output = T>) -> Result<T, BootError> {
    let mut future = std::pin::pin!(tokio::task::unconstrained(future));
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..64 {
        if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return Ok(value);
        }
    }
    Err(BootError::Runtime(
        "loading the bundle's modules did not finish".into(),
    ))
}

/// Drives `future` (module load or evaluation) to completion without waiting on I/O:
/// top-level code may only use microtasks, so a handful of event-loop turns settle it.
///
/// deno_core reports the evaluation through a tokio oneshot, and tokio's cooperative
/// budget makes such a receiver answer `Pending` once the enclosing task has used up its
/// budget without yielding — which a worker handling many deploys in a row does. Nothing
/// here yields, so the budget is switched off for these polls.
fn settle<T>(runtime: &mut JsRuntime, future: impl Future<Output = T>) -> Result<T, BootError> {
    let mut future = std::pin::pin!(tokio::task::unconstrained(future));
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..16 {
        if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return Ok(value);
        }
        if let Poll::Ready(Err(error)) =
            runtime.poll_event_loop(&mut cx, PollEventLoopOptions::default())
        {
            return Err(BootError::Script(error.to_string()));
        }
    }
    Err(BootError::StartupAwait)
}

fn runtime_error(what: &str) -> BootError {
    BootError::Runtime(what.to_string())
}

fn get_function<'s>(
    scope: &mut v8::PinScope<'s, '_>,
    object: v8::Local<'s, v8::Object>,
    name: &str,
) -> Result<v8::Local<'s, v8::Function>, BootError> {
    let key = v8::String::new(scope, name).ok_or_else(|| runtime_error("string"))?;
    object
        .get(scope, key.into())
        .and_then(|v| v8::Local::<v8::Function>::try_from(v).ok())
        .ok_or_else(|| runtime_error("the runtime entry points are incomplete"))
}

fn js_string<'s>(scope: &mut v8::PinScope<'s, '_>, value: &str) -> v8::Local<'s, v8::Value> {
    match v8::String::new(scope, value) {
        Some(string) => string.into(),
        // Only strings longer than V8's maximum fail; hand JS an empty string instead.
        None => v8::String::empty(scope).into(),
    }
}

/// A header name or value as JS sees it: a ByteString, one character per byte.
fn byte_string<'s>(scope: &mut v8::PinScope<'s, '_>, bytes: &[u8]) -> v8::Local<'s, v8::Value> {
    match v8::String::new_from_one_byte(scope, bytes, v8::NewStringType::Normal) {
        Some(string) => string.into(),
        // Only strings longer than V8's maximum fail; headers are far below it.
        None => v8::String::empty(scope).into(),
    }
}

fn uint8_array<'s>(scope: &mut v8::PinScope<'s, '_>, bytes: Bytes) -> v8::Local<'s, v8::Value> {
    let length = bytes.len();
    // Takes the buffer over without a copy when nothing else shares it.
    let store = v8::ArrayBuffer::new_backing_store_from_vec(Vec::from(bytes)).make_shared();
    let buffer = v8::ArrayBuffer::with_backing_store(scope, &store);
    match v8::Uint8Array::new(scope, buffer, 0, length) {
        Some(array) => array.into(),
        // Only a body larger than V8's typed-array maximum fails; the node's body limit is far below it.
        None => v8::undefined(scope).into(),
    }
}

/// How a request body is handed to JS: nothing, a `Uint8Array`, or a stream resource id.
enum JsBody {
    None,
    Bytes(Bytes),
    Stream(deno_core::ResourceId),
}

/// A request body still arriving from the client, read by JS as a `ReadableStream`.
struct RequestBodyResource {
    rx: AsyncRefCell<mpsc::Receiver<BodyChunk>>,
    leftover: RefCell<Bytes>,
}

impl RequestBodyResource {
    fn new(rx: mpsc::Receiver<BodyChunk>) -> Self {
        RequestBodyResource {
            rx: AsyncRefCell::new(rx),
            leftover: RefCell::new(Bytes::new()),
        }
    }
}

impl Resource for RequestBodyResource {
    fn name(&self) -> Cow<'_, str> {
        "requestBody".into()
    }

    fn read(self: Rc<Self>, limit: usize) -> AsyncResult<BufView> {
        Box::pin(async move {
            let limit = limit.max(1);
            {
                let mut leftover = self.leftover.borrow_mut();
                if !leftover.is_empty() {
                    let take = limit.min(leftover.len());
                    return Ok(BufView::from(leftover.split_to(take)));
                }
            }
            let mut rx = RcRef::map(&self, |r| &r.rx).borrow_mut().await;
            match rx.recv().await {
                Some(Ok(mut chunk)) => {
                    if chunk.len() > limit {
                        *self.leftover.borrow_mut() = chunk.split_off(limit);
                    }
                    Ok(BufView::from(chunk))
                }
                Some(Err(message)) => Err(JsErrorBox::generic(message)),
                None => Ok(BufView::empty()),
            }
        })
    }
}
