// Outpost runtime bootstrap: builds the Workers-style global scope from deno's web extensions and the request dispatcher Rust calls into.
// Runs once, while the startup snapshot is taken; every isolate starts from its result.

import { core, internals, primordials } from "ext:core/mod.js";
import { KVNamespace } from "ext:outpost/01_kv.js";
import { createCacheStorage } from "ext:outpost/02_cache.js";

const {
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
} = core.ops;
const {
  ArrayBufferIsView,
  ArrayBufferPrototype,
  ArrayPrototypePush,
  ArrayPrototypeSplice,
  ArrayPrototypeIndexOf,
  DataViewPrototypeGetBuffer,
  DataViewPrototypeGetByteLength,
  DataViewPrototypeGetByteOffset,
  Error,
  JSONParse,
  ObjectDefineProperty,
  ObjectFreeze,
  ObjectPrototypeIsPrototypeOf,
  Promise,
  PromisePrototypeThen,
  PromiseReject,
  String,
  Symbol,
  SymbolFor,
  TypeError,
  TypedArrayPrototypeGetBuffer,
  TypedArrayPrototypeGetByteLength,
  TypedArrayPrototypeGetByteOffset,
  TypedArrayPrototypeGetSymbolToStringTag,
  Uint8Array,
} = primordials;

// deno_fetch reports to deno's OpenTelemetry layer when it is loaded; Outpost traces
// subrequests on the Rust side, so fetch sees telemetry as switched off.
const noop = () => {};
internals.__telemetry = {
  TRACING_ENABLED: false,
  PROPAGATORS: [],
  DID_NOT_ENTER: Symbol("outpost.telemetry.none"),
  builtinTracer: noop,
  ContextManager: { active: noop },
  enterSpan: noop,
  exitSpan: noop,
};
internals.__telemetryUtil = {
  updateSpanFromClientResponse: noop,
  updateSpanFromError: noop,
  updateSpanFromRequest: noop,
};

const webidl = core.loadExtScript("ext:deno_webidl/00_webidl.js");
const consoleMod = core.loadExtScript("ext:deno_web/01_console.js");
const url = core.loadExtScript("ext:deno_web/00_url.js");
const urlPattern = core.loadExtScript("ext:deno_web/01_urlpattern.js");
const domException = core.loadExtScript("ext:deno_web/01_dom_exception.js");
const event = core.loadExtScript("ext:deno_web/02_event.js");
const messagePort = core.loadExtScript("ext:deno_web/13_message_port.js");
const timers = core.loadExtScript("ext:deno_web/02_timers.js");
const abortSignal = core.loadExtScript("ext:deno_web/03_abort_signal.js");
const base64 = core.loadExtScript("ext:deno_web/05_base64.js");
const streams = core.loadExtScript("ext:deno_web/06_streams.js");
const encoding = core.loadExtScript("ext:deno_web/08_text_encoding.js");
const file = core.loadExtScript("ext:deno_web/09_file.js");
const fileReader = core.loadExtScript("ext:deno_web/10_filereader.js");
const compression = core.loadExtScript("ext:deno_web/14_compression.js");
const performance = core.loadExtScript("ext:deno_web/15_performance.js");
const crypto = core.loadExtScript("ext:deno_crypto/00_crypto.js");
const headers = core.loadExtScript("ext:deno_fetch/20_headers.js");
const formData = core.loadExtScript("ext:deno_fetch/21_formdata.js");
const body = core.loadExtScript("ext:deno_fetch/22_body.js");
const request = core.loadExtScript("ext:deno_fetch/23_request.js");
const response = core.loadExtScript("ext:deno_fetch/23_response.js");
const fetchMod = core.loadExtScript("ext:deno_fetch/26_fetch.js");

const { InnerBody } = body;
const { fromInnerRequest } = request;
const {
  ResponsePrototype,
  toInnerResponse,
  responseBodyUsed,
  serveFastBodyKey,
  serveFastConsumedKey,
  serveFastContentTypeKey,
  serveFastHeaderKindKey,
  serveFastStatusKey,
  SERVE_FAST_HEADER_DEFAULT_TEXT,
  SERVE_FAST_HEADER_NONE,
} = response;
const { ReadableStreamPrototype, readableStreamForRid } = streams;

// Which request the running code belongs to travels with V8's async context, so
// promise continuations, timers and fetches of concurrent requests stay apart.
// (A class, not an object literal: every request makes one, and instances of a class
// share one shape from the start.)
class RequestState {
  constructor(id) {
    this.id = id;
    this.subrequests = 0;
    this.pending = 0;
    this.responded = false;
    this.passThrough = false;
    this.swResponse = undefined;
  }
}
const RequestStatePrototype = RequestState.prototype;

function currentRequest() {
  const state = core.getAsyncContext();
  return ObjectPrototypeIsPrototypeOf(RequestStatePrototype, state) ? state : null;
}

// ---- console: every line becomes a tracing event tagged with function and request.
function print(message, level) {
  const state = currentRequest();
  op_outpost_log(level, message, state === null ? 0 : state.id);
}

// ---- fetch: counts subrequests against the running request's limit.
let subrequestLimit = 50;

class SubrequestLimitError extends Error {
  constructor(limit) {
    super(
      `Too many subrequests: a request may make at most ${limit} fetch() calls`,
    );
    this.name = "SubrequestLimitError";
  }
}

function fetch(input, init = undefined) {
  const state = currentRequest();
  if (state !== null && ++state.subrequests > subrequestLimit) {
    return PromiseReject(new SubrequestLimitError(subrequestLimit));
  }
  return fetchMod.fetch(input, init);
}

// ---- service-worker syntax: addEventListener("fetch", (event) => event.respondWith(...)).
const listeners = { __proto__: null, fetch: [] };

function addEventListener(type, listener) {
  if (typeof listener !== "function" && typeof listener?.handleEvent !== "function") {
    return;
  }
  (listeners[type] ??= []).push(listener);
}

function removeEventListener(type, listener) {
  const list = listeners[type];
  if (list === undefined) return;
  const index = ArrayPrototypeIndexOf(list, listener);
  if (index !== -1) ArrayPrototypeSplice(list, index, 1);
}

class ExecutionContext {
  #state;
  #props;
  constructor(state) {
    this.#state = state;
  }
  // Workers' per-invocation props (from service bindings); none are configured here.
  get props() {
    return (this.#props ??= {});
  }
  waitUntil(promise) {
    waitUntil(this.#state, promise);
  }
  passThroughOnException() {
    this.#state.passThrough = true;
  }
}

class FetchEvent extends event.Event {
  #state;
  #ctx;
  constructor(state, request, ctx) {
    super("fetch");
    this.#state = state;
    this.#ctx = ctx;
    ObjectDefineProperty(this, "request", { value: request, enumerable: true });
  }
  respondWith(response) {
    if (this.#state.swResponse !== undefined) {
      throw new DOMException("respondWith() was already called", "InvalidStateError");
    }
    this.#state.swResponse = response;
  }
  waitUntil(promise) {
    this.#ctx.waitUntil(promise);
  }
  passThroughOnException() {
    this.#ctx.passThroughOnException();
  }
}

const { DOMException } = domException;
const cacheApi = createCacheStorage({ Request: request.Request, Response: response.Response });

// ---- Workers extensions to the web platform that handlers rely on.

function bufferBytes(value, name) {
  if (ArrayBufferIsView(value)) {
    if (TypedArrayPrototypeGetSymbolToStringTag(value) === undefined) {
      return new Uint8Array(
        DataViewPrototypeGetBuffer(value),
        DataViewPrototypeGetByteOffset(value),
        DataViewPrototypeGetByteLength(value),
      );
    }
    return new Uint8Array(
      TypedArrayPrototypeGetBuffer(value),
      TypedArrayPrototypeGetByteOffset(value),
      TypedArrayPrototypeGetByteLength(value),
    );
  }
  if (ObjectPrototypeIsPrototypeOf(ArrayBufferPrototype, value)) return new Uint8Array(value);
  throw new TypeError(`timingSafeEqual: ${name} must be an ArrayBuffer or an ArrayBuffer view`);
}

// crypto.subtle.timingSafeEqual(a, b): compares in a time that depends only on the length.
function timingSafeEqual(a, b) {
  const left = bufferBytes(a, "a");
  const right = bufferBytes(b, "b");
  if (left.length !== right.length) {
    throw new TypeError("timingSafeEqual: input buffers must have the same byte length");
  }
  let diff = 0;
  for (let i = 0; i < left.length; i++) diff |= left[i] ^ right[i];
  return diff === 0;
}
ObjectDefineProperty(crypto.SubtleCrypto.prototype, "timingSafeEqual", {
  value: timingSafeEqual,
  writable: true,
  configurable: true,
  enumerable: false,
});

// scheduler: Workers' wait(ms, { signal }) (a promise-returning setTimeout), plus the
// web's postTask and yield, with a single priority. The timer functions insist on being
// called without a receiver (or on the global object).
const { setTimeout, clearTimeout } = timers;
class Scheduler {
  postTask(callback, options = undefined) {
    return PromisePrototypeThen(
      this.wait(options?.delay ?? 0, { signal: options?.signal }),
      () => callback(),
    );
  }
  yield() {
    return this.wait(0);
  }
  wait(delay, options = undefined) {
    const signal = options?.signal;
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const onAbort = () => {
        clearTimeout(id);
        reject(signal.reason);
      };
      const id = setTimeout(() => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      }, delay);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }
}

// ---- the handler this isolate runs, set by boot().
let handler = null;
let env = null;

function boot(namespace, envJson, limit, kvJson) {
  env = JSONParse(envJson);
  for (const binding of JSONParse(kvJson)) {
    env[binding] = new KVNamespace(binding);
  }
  subrequestLimit = limit;
  const def = namespace?.default;
  if (def !== undefined && def !== null) {
    if (typeof def.fetch !== "function") {
      throw new TypeError(
        "the default export has no fetch(request, env, ctx) method",
      );
    }
    handler = def;
  } else if (listeners.fetch.length > 0) {
    handler = { fetch: serviceWorkerFetch };
  } else {
    throw new TypeError(
      "no handler: export default { fetch(request, env, ctx) { ... } } or call addEventListener(\"fetch\", ...)",
    );
  }
}

function serviceWorkerFetch(request, _env, ctx) {
  const state = currentRequest();
  const fetchEvent = new FetchEvent(state, request, ctx);
  for (const listener of listeners.fetch) {
    if (typeof listener === "function") listener.call(globalThis, fetchEvent);
    else listener.handleEvent(fetchEvent);
  }
  if (state.swResponse === undefined) {
    throw new TypeError("no fetch listener called event.respondWith()");
  }
  return state.swResponse;
}

// ---- the request a handler receives: deno_fetch's inner request, built lazily from
// what Rust hands over (header pairs become the header list only when read).
class IncomingRequest {
  constructor(method, url, headerPairs, body) {
    this.methodInner = method;
    this.headerPairs = headerPairs;
    this.headerListInner = null;
    this.body = body;
    this.redirectMode = "follow";
    this.redirectCount = 0;
    this.urlListInner = null;
    this.urlListProcessed = [url];
    this.clientRid = null;
    this.blobUrlEntry = null;
  }
  get method() {
    return this.methodInner;
  }
  set method(value) {
    this.methodInner = value;
  }
  get headerList() {
    if (this.headerListInner === null) {
      const pairs = this.headerPairs;
      const list = [];
      for (let i = 0; i < pairs.length; i += 2) {
        ArrayPrototypePush(list, [pairs[i], pairs[i + 1]]);
      }
      this.headerListInner = list;
    }
    return this.headerListInner;
  }
  set headerList(value) {
    this.headerListInner = value;
  }
  get urlList() {
    if (this.urlListInner === null) {
      const url = this.urlListProcessed[0];
      this.urlListInner = [() => url];
    }
    return this.urlListInner;
  }
  set urlList(value) {
    this.urlListInner = value;
  }
  url() {
    return this.urlListProcessed[0];
  }
  currentUrl() {
    const last = this.urlList.length - 1;
    if (this.urlListProcessed[last] === undefined) {
      this.urlListProcessed[last] = this.urlList[last]();
    }
    return this.urlListProcessed[last];
  }
}

// ---- per-request flow: dispatch -> handler -> respond/fail -> (waitUntil) -> done.
function dispatch(id, method, urlString, headerPairs, bodyArg) {
  let innerBody = null;
  if (typeof bodyArg === "number") {
    innerBody = new InnerBody(readableStreamForRid(bodyArg));
  } else if (bodyArg !== undefined) {
    innerBody = new InnerBody({ body: bodyArg, consumed: false });
    innerBody.length = bodyArg.byteLength;
  }
  const inner = new IncomingRequest(method, urlString, headerPairs, innerBody);
  const req = fromInnerRequest(inner, "immutable");
  const state = new RequestState(id);
  const ctx = new ExecutionContext(state);
  const previous = core.getAsyncContext();
  core.setAsyncContext(state);
  try {
    const result = handler.fetch(req, env, ctx);
    if (core.isPromise(result)) {
      PromisePrototypeThen(
        result,
        (res) => respond(state, res),
        (error) => fail(state, error),
      );
    } else {
      respond(state, result);
    }
  } catch (error) {
    fail(state, error);
  } finally {
    core.setAsyncContext(previous);
  }
}

function describe(value) {
  if (value === null) return "null";
  if (value === undefined) return "undefined";
  if (typeof value === "object") {
    return `an object (${value.constructor?.name ?? "Object"})`;
  }
  return `a ${typeof value}`;
}

function respond(state, res) {
  if (!ObjectPrototypeIsPrototypeOf(ResponsePrototype, res)) {
    failWith(
      state,
      "invalid_response",
      `the handler returned ${describe(res)}, not a Response`,
      "",
    );
    return;
  }
  if (respondStatic(state, res)) return;
  const inner = toInnerResponse(res);
  if (inner.type === "error") {
    failWith(state, "invalid_response", "the handler returned Response.error()", "");
    return;
  }
  const { id } = state;
  const status = inner.status;
  const headerList = inner.headerList;
  const innerBody = inner.body;
  if (innerBody === null) {
    op_outpost_respond_empty(id, status, headerList);
    finish(state);
    return;
  }
  const source = innerBody.streamOrStatic;
  if (!ObjectPrototypeIsPrototypeOf(ReadableStreamPrototype, source)) {
    if (source.consumed) {
      failWith(state, "invalid_response", "the response body was already read", "");
      return;
    }
    source.consumed = true;
    const bytes = source.body;
    if (typeof bytes === "string") {
      op_outpost_respond_text(id, status, headerList, bytes);
    } else {
      op_outpost_respond_bytes(id, status, headerList, bytes);
    }
    finish(state);
    return;
  }
  if (source.locked) {
    failWith(state, "invalid_response", "the response body stream is locked", "");
    return;
  }
  op_outpost_respond_stream(id, status, headerList);
  state.responded = true;
  state.pending++;
  PromisePrototypeThen(pump(id, source), () => settle(state));
}

// A response whose body is a string or bytes and whose only header is a content type
// (`new Response("text")`, `Response.json(data)`) goes out without materializing its
// header list or body object.
function respondStatic(state, res) {
  const status = res[serveFastStatusKey];
  const body = res[serveFastBodyKey];
  if (!status || body === null || body === undefined || responseBodyUsed(res)) {
    return false;
  }
  res[serveFastConsumedKey] = true;
  const kind = res[serveFastHeaderKindKey];
  const contentType = kind === SERVE_FAST_HEADER_NONE
    ? ""
    : kind === SERVE_FAST_HEADER_DEFAULT_TEXT
    ? "text/plain;charset=UTF-8"
    : res[serveFastContentTypeKey];
  if (typeof body === "string") {
    op_outpost_respond_static_text(state.id, status, contentType, body);
  } else {
    op_outpost_respond_static_bytes(state.id, status, contentType, body);
  }
  finish(state);
  return true;
}

async function pump(id, stream) {
  const reader = stream.getReader();
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      if (TypedArrayPrototypeGetSymbolToStringTag(value) !== "Uint8Array") {
        throw new TypeError(
          `response body chunks must be Uint8Array, got ${describe(value)}`,
        );
      }
      if (!(await op_outpost_body_write(id, value))) {
        await reader.cancel();
        return;
      }
    }
    op_outpost_body_close(id);
  } catch (error) {
    const message = `${error?.name ?? "Error"}: ${error?.message ?? String(error)}`;
    op_outpost_log(3, `response body stream failed: ${error?.stack ?? message}`, id);
    op_outpost_body_error(id, message);
  }
}

function fail(state, error) {
  const isLimit = ObjectPrototypeIsPrototypeOf(
    SubrequestLimitError.prototype,
    error,
  );
  let message;
  let stack;
  try {
    message = `${error?.name ?? "Error"}: ${error?.message ?? String(error)}`;
    stack = typeof error?.stack === "string" ? error.stack : message;
  } catch {
    message = "Error: (unprintable value thrown)";
    stack = message;
  }
  failWith(state, isLimit ? "subrequests" : "exception", message, stack);
}

function failWith(state, kind, message, stack) {
  op_outpost_fail(state.id, kind, message, stack || message, state.passThrough);
  finish(state);
}

function finish(state) {
  state.responded = true;
  if (state.pending === 0) op_outpost_done(state.id);
}

function settle(state) {
  state.pending--;
  if (state.responded && state.pending === 0) op_outpost_done(state.id);
}

function waitUntil(state, promise) {
  state.pending++;
  PromisePrototypeThen(
    Promise.resolve(promise),
    () => settle(state),
    (error) => {
      op_outpost_log(
        3,
        `waitUntil promise rejected: ${error?.stack ?? String(error)}`,
        state.id,
      );
      settle(state);
    },
  );
}

// ---- the global scope handlers see: Web APIs, no Deno namespace.
const globals = {
  AbortController: core.propNonEnumerable(abortSignal.AbortController),
  AbortSignal: core.propNonEnumerable(abortSignal.AbortSignal),
  Blob: core.propNonEnumerable(file.Blob),
  ByteLengthQueuingStrategy: core.propNonEnumerable(streams.ByteLengthQueuingStrategy),
  CompressionStream: core.propNonEnumerable(compression.CompressionStream),
  CountQueuingStrategy: core.propNonEnumerable(streams.CountQueuingStrategy),
  Crypto: core.propNonEnumerable(crypto.Crypto),
  CryptoKey: core.propNonEnumerable(crypto.CryptoKey),
  CustomEvent: core.propNonEnumerable(event.CustomEvent),
  DecompressionStream: core.propNonEnumerable(compression.DecompressionStream),
  DOMException: core.propNonEnumerable(DOMException),
  ErrorEvent: core.propNonEnumerable(event.ErrorEvent),
  Event: core.propNonEnumerable(event.Event),
  EventTarget: core.propNonEnumerable(event.EventTarget),
  ExecutionContext: core.propNonEnumerable(ExecutionContext),
  FetchEvent: core.propNonEnumerable(FetchEvent),
  File: core.propNonEnumerable(file.File),
  FileReader: core.propNonEnumerable(fileReader.FileReader),
  FormData: core.propNonEnumerable(formData.FormData),
  Headers: core.propNonEnumerable(headers.Headers),
  MessageChannel: core.propNonEnumerable(messagePort.MessageChannel),
  MessageEvent: core.propNonEnumerable(event.MessageEvent),
  MessagePort: core.propNonEnumerable(messagePort.MessagePort),
  Performance: core.propNonEnumerable(performance.Performance),
  PromiseRejectionEvent: core.propNonEnumerable(event.PromiseRejectionEvent),
  ReadableByteStreamController: core.propNonEnumerable(streams.ReadableByteStreamController),
  ReadableStream: core.propNonEnumerable(streams.ReadableStream),
  ReadableStreamBYOBReader: core.propNonEnumerable(streams.ReadableStreamBYOBReader),
  ReadableStreamBYOBRequest: core.propNonEnumerable(streams.ReadableStreamBYOBRequest),
  ReadableStreamDefaultController: core.propNonEnumerable(streams.ReadableStreamDefaultController),
  ReadableStreamDefaultReader: core.propNonEnumerable(streams.ReadableStreamDefaultReader),
  Request: core.propNonEnumerable(request.Request),
  Response: core.propNonEnumerable(response.Response),
  SubtleCrypto: core.propNonEnumerable(crypto.SubtleCrypto),
  TextDecoder: core.propNonEnumerable(encoding.TextDecoder),
  TextDecoderStream: core.propNonEnumerable(encoding.TextDecoderStream),
  TextEncoder: core.propNonEnumerable(encoding.TextEncoder),
  TextEncoderStream: core.propNonEnumerable(encoding.TextEncoderStream),
  TransformStream: core.propNonEnumerable(streams.TransformStream),
  TransformStreamDefaultController: core.propNonEnumerable(streams.TransformStreamDefaultController),
  URL: core.propNonEnumerable(url.URL),
  URLPattern: core.propNonEnumerable(urlPattern.URLPattern),
  URLSearchParams: core.propNonEnumerable(url.URLSearchParams),
  WritableStream: core.propNonEnumerable(streams.WritableStream),
  WritableStreamDefaultController: core.propNonEnumerable(streams.WritableStreamDefaultController),
  WritableStreamDefaultWriter: core.propNonEnumerable(streams.WritableStreamDefaultWriter),
  Cache: core.propNonEnumerable(cacheApi.Cache),
  CacheStorage: core.propNonEnumerable(cacheApi.CacheStorage),
  addEventListener: core.propWritable(addEventListener),
  caches: core.propReadOnly(cacheApi.caches),
  atob: core.propWritable(base64.atob),
  btoa: core.propWritable(base64.btoa),
  clearInterval: core.propWritable(timers.clearInterval),
  clearTimeout: core.propWritable(timers.clearTimeout),
  console: core.propNonEnumerable(new consoleMod.Console(print)),
  crypto: core.propGetterOnly(() => crypto.crypto),
  fetch: core.propWritable(fetch),
  navigator: core.propReadOnly(ObjectFreeze({ userAgent: "Outpost/0.1" })),
  performance: core.propWritable(performance.performance),
  removeEventListener: core.propWritable(removeEventListener),
  scheduler: core.propWritable(new Scheduler()),
  reportError: core.propWritable(event.reportError),
  self: core.propGetterOnly(() => globalThis),
  setInterval: core.propWritable(timers.setInterval),
  setTimeout: core.propWritable(timers.setTimeout),
  structuredClone: core.propWritable(messagePort.structuredClone),
  [webidl.brand]: core.propNonEnumerable(webidl.brand),
};
core.defineGlobalProperties(globalThis, globals);

// An unhandled rejection is logged against its request; it must not take the isolate down.
core.setUnhandledPromiseRejectionHandler((_promise, reason) => {
  const state = currentRequest();
  op_outpost_log(
    3,
    `unhandled promise rejection: ${reason?.stack ?? String(reason)}`,
    state === null ? 0 : state.id,
  );
  return true;
});
core.setReportExceptionCallback((error) => {
  const state = currentRequest();
  op_outpost_log(
    3,
    `uncaught exception: ${error?.stack ?? String(error)}`,
    state === null ? 0 : state.id,
  );
});

// Runs once, while the startup snapshot is taken (build.rs): sends a few requests through
// the request path so V8 compiles it there; the snapshot keeps the bytecode, and a new
// isolate answers its first request without compiling the runtime's JavaScript. Ops
// see no request table at build time and do nothing.
function warmup() {
  const saved = handler;
  handler = {
    fetch(request) {
      const url = new URL(request.url);
      const host = request.headers.get("host");
      switch (url.pathname) {
        case "/json":
          return Response.json({ host, method: request.method });
        case "/headers":
          return new Response("warm", {
            status: 201,
            headers: { "content-type": "text/plain", "x-warm": "1" },
          });
        default:
          return new Response("warm");
      }
    },
  };
  try {
    for (const path of ["/", "/json", "/headers"]) {
      dispatch(0, "GET", `http://warm.up${path}`, ["host", "warm.up"], undefined);
    }
  } finally {
    handler = saved;
  }
}

// Rust picks these up when an isolate boots and, before user code runs, deletes them along
// with `Deno` and `__bootstrap` (deno_core still needs those while it binds ops).
globalThis[SymbolFor("outpost.internal")] = { boot, dispatch, warmup };
