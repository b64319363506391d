// Types of the Outpost handler API: handlers, their context, bindings, limits, and the errors a handler can observe.
//
// Web APIs (Request, Response, Headers, URL, streams, crypto) come from TypeScript's
// `lib: ["ES2022", "WebWorker"]`; this file declares only what Outpost adds.

export type * from "./kv.js";
export * from "./responses.js";
export * from "./router.js";

/**
 * The per-request context passed as the third argument of `fetch(request, env, ctx)`.
 * The runtime also exposes its class as the global `ExecutionContext`.
 */
export interface ExecutionContext {
  /**
   * Keeps the request alive until `promise` settles, after the response is sent. The
   * whole request, `waitUntil` work included, is bounded by `limits.wall_ms`. A
   * rejection is logged against the request and does not change the response.
   */
  waitUntil(promise: Promise<unknown>): void;
  /**
   * If the handler then throws (or its promise rejects), the request goes to the
   * route's origin instead of failing with 500. Applies to uncaught exceptions only:
   * an exceeded limit or an invalid return value still fails the request, and a
   * route without an origin answers 500 as usual.
   */
  passThroughOnException(): void;
  /** Workers' per-invocation props; always an empty object here (no service bindings). */
  readonly props: Record<string, unknown>;
}

/** The `fetch` method of a module handler. Returning anything but a `Response` fails the request with 500. */
export type ExportedHandlerFetchHandler<Env = Record<string, unknown>> = (
  request: Request,
  env: Env,
  ctx: ExecutionContext,
) => Response | Promise<Response>;

/**
 * A module handler: the default export of the entry module. `fetch` is the only event the
 * runtime delivers (no `scheduled`, `queue` or `email`); a default export without it
 * fails to boot with a `TypeError`.
 *
 * `Env` describes `env`: one member per `[vars]` entry of `outpost.toml` (any TOML value,
 * seen as its JSON equivalent), per secret (a string), and per `[[kv_namespaces]]`
 * binding (a `KVNamespace`).
 */
export interface ExportedHandler<Env = Record<string, unknown>> {
  /** Answers one HTTP request. */
  fetch: ExportedHandlerFetchHandler<Env>;
}

/**
 * The event of service-worker syntax, used when the entry module has no default export:
 * `addEventListener("fetch", (event) => event.respondWith(handle(event.request)))`.
 * `env` is not available in this syntax.
 */
export interface FetchEvent extends Event {
  readonly type: "fetch";
  /** The incoming request. */
  readonly request: Request;
  /**
   * Sets the response. Must be called synchronously by a listener; a second call throws
   * a `DOMException` named `InvalidStateError`, and no call at all fails the request.
   */
  respondWith(response: Response | Promise<Response>): void;
  /** Same as `ctx.waitUntil()`. */
  waitUntil(promise: Promise<unknown>): void;
  /** Same as `ctx.passThroughOnException()`. */
  passThroughOnException(): void;
}

/** A `fetch` listener of service-worker syntax. */
export type FetchEventListener = (this: typeof globalThis, event: FetchEvent) => void;

declare global {
  /** Registers a service-worker-syntax request handler (used only without a default export). */
  function addEventListener(type: "fetch", listener: FetchEventListener | { handleEvent(event: FetchEvent): void }): void;
  /** Removes a listener registered with `addEventListener("fetch", ...)`. */
  function removeEventListener(type: "fetch", listener: FetchEventListener | { handleEvent(event: FetchEvent): void }): void;
  interface Scheduler {
    /**
     * Workers' `scheduler.wait`: resolves after `delay` ms; rejects with the signal's
     * reason if it aborts first. (`postTask` and `yield` run with one priority.)
     */
    wait(delay: number, options?: { signal?: AbortSignal }): Promise<void>;
  }
  interface CacheStorage {
    /**
     * Workers' default cache: `caches.default.put/match/delete`. Entries live on this node
     * only, per function; `put` follows the response's Cache-Control/Expires (no-store,
     * private and Set-Cookie responses are not kept). Like Workers, only `open` and
     * `default` are implemented.
     */
    readonly default: Cache;
  }
  interface SubtleCrypto {
    /**
     * Compares two buffers in a time that depends only on their length (for MACs and
     * tokens). Throws a `TypeError` when their byte lengths differ.
     */
    timingSafeEqual(a: ArrayBuffer | ArrayBufferView, b: ArrayBuffer | ArrayBufferView): boolean;
  }
}

/**
 * A function's resource limits, set under `[limits]` in `outpost.toml` (every key is
 * optional; omitted keys keep their default). Enforced outside the isolate: apart from
 * `subrequests`, a handler cannot catch an exceeded limit; the client gets the status
 * named below with a plain-text reason, and the request is not passed to an origin.
 */
export interface OutpostLimits {
  /**
   * CPU time one uninterrupted run of the handler's JavaScript may take, in milliseconds;
   * a run ends whenever the handler awaits I/O or a timer. Exceeded: the JavaScript is
   * terminated and the client gets 503.
   * @default 50
   */
  readonly cpu_ms: number;
  /**
   * Wall-clock time from the request entering the isolate until the response head is sent
   * and every `ctx.waitUntil()` promise has settled, in milliseconds; at least `cpu_ms`.
   * Exceeded: the client gets 504.
   * @default 30000
   */
  readonly wall_ms: number;
  /**
   * V8 heap one isolate may grow to, in MiB (at least 16). Exceeded: the isolate is
   * discarded and the client gets 503; other requests in that isolate get 503 too.
   * @default 128
   */
  readonly heap_mb: number;
  /**
   * `fetch()` calls one request may make. The call after the last allowed one rejects with
   * a {@link SubrequestLimitError}; left uncaught, the client gets 500.
   * @default 50
   */
  readonly subrequests: number;
  /**
   * CPU time the bundle's top-level code may take when an isolate boots, in milliseconds.
   * Exceeded: the function fails to start and the client gets 503.
   * @default 1000
   */
  readonly startup_cpu_ms: number;
}

/**
 * The statuses the node answers with, as `text/plain`, when a function fails instead of
 * responding. A handler never sees these; a client or a test does.
 */
export interface OutpostFailureStatus {
  /** An uncaught exception or rejection (unless `passThroughOnException` sends it to the origin). */
  readonly exception: 500;
  /** The handler returned something other than a `Response`, or `Response.error()`. */
  readonly invalidResponse: 500;
  /** An uncaught {@link SubrequestLimitError}. */
  readonly subrequests: 500;
  /** `limits.cpu_ms` exceeded. */
  readonly cpu: 503;
  /** `limits.wall_ms` exceeded. */
  readonly wall: 504;
  /** `limits.heap_mb` exceeded. */
  readonly heap: 503;
  /** The bundle failed to load, threw at top level, exceeded `startup_cpu_ms`, or has no handler. */
  readonly bootFailed: 503;
}

/**
 * What `fetch()` rejects with once the request has made `limits.subrequests` calls. Not a
 * global class: test with {@link isSubrequestLimitError} or `error.name`. Rethrow it (or
 * leave it uncaught) to fail the request with 500.
 */
export interface SubrequestLimitError extends Error {
  readonly name: "SubrequestLimitError";
  readonly message: `Too many subrequests: a request may make at most ${number} fetch() calls`;
}

/** Whether `error` is a {@link SubrequestLimitError}. */
export declare function isSubrequestLimitError(error: unknown): error is SubrequestLimitError;
