// Types of the Outpost handler API: what `export default { fetch }` receives and may use.

/** Keeps the request's work alive after the response, and opts into origin fallback. */
export interface ExecutionContext {
  /** Work that continues after the response is sent, bounded by the function's wall-time limit. */
  waitUntil(promise: Promise<unknown>): void;
  /** If the handler throws, the request goes to the route's origin instead of failing. */
  passThroughOnException(): void;
}

/** A module handler. `Env` holds the function's vars (any JSON value) and secrets (strings). */
export interface ExportedHandler<Env = Record<string, unknown>> {
  fetch?(request: Request, env: Env, ctx: ExecutionContext): Response | Promise<Response>;
}

/** Service-worker syntax: `addEventListener("fetch", (event) => event.respondWith(...))`. */
export interface FetchEvent extends Event {
  readonly request: Request;
  respondWith(response: Response | Promise<Response>): void;
  waitUntil(promise: Promise<unknown>): void;
  passThroughOnException(): void;
}

/** Thrown by `fetch()` once a request has made more subrequests than its limit allows. */
export interface SubrequestLimitError extends Error {
  readonly name: "SubrequestLimitError";
}
