// Compile-time tests of the SDK's declarations: `tsc --noEmit -p test` must pass, and every `@ts-expect-error` must be needed.

import {
  Router,
  error,
  isSubrequestLimitError,
  json,
  text,
  type ExecutionContext,
  type ExportedHandler,
  type FetchEvent,
  type KVNamespace,
  type KVNamespaceListResult,
  type OutpostFailureStatus,
  type OutpostLimits,
  type RouteParams,
  type SubrequestLimitError,
} from "@outpost-edge/sdk";

/** Compiles only when `Actual` and `Expected` are the same type. */
type Equal<Actual, Expected> =
  (<T>() => T extends Actual ? 1 : 2) extends <T>() => T extends Expected ? 1 : 2 ? true : false;
function expectType<T extends true>(): T | void {}

interface Env {
  GREETING: string;
  LIMIT: number;
  API_KEY: string;
  CACHE: KVNamespace;
}

// ---- module handlers: fetch is required, returns a Response, sees typed env and ctx.
export const moduleHandler = {
  async fetch(request, env, ctx) {
    expectType<Equal<typeof request, Request>>();
    expectType<Equal<typeof env, Env>>();
    expectType<Equal<typeof ctx, ExecutionContext>>();
    ctx.waitUntil(fetch("https://example.com/log", { method: "POST", body: request.url }));
    ctx.passThroughOnException();
    const cached = await env.CACHE.get("greeting");
    return new Response(cached ?? env.GREETING);
  },
} satisfies ExportedHandler<Env>;

// @ts-expect-error -- the runtime requires fetch on the default export
export const noFetch: ExportedHandler<Env> = {};

export const scheduledIsNotSupported = {
  fetch: () => new Response("ok"),
  // @ts-expect-error -- only fetch events are delivered
  scheduled() {},
} satisfies ExportedHandler<Env>;

export const wrongReturn = {
  // @ts-expect-error -- a handler must return a Response
  fetch: () => "text",
} satisfies ExportedHandler;

// A handler written with the default Env still type-checks.
export const untyped: ExportedHandler = { fetch: (_request, env) => json({ keys: Object.keys(env) }) };

// ---- service-worker syntax.
addEventListener("fetch", (event) => {
  expectType<Equal<typeof event, FetchEvent>>();
  expectType<Equal<typeof event.request, Request>>();
  event.passThroughOnException();
  event.waitUntil(Promise.resolve());
  event.respondWith(new Response("hi"));
});
addEventListener("fetch", { handleEvent: (event) => event.respondWith(fetch(event.request)) });
// @ts-expect-error -- respondWith takes a Response
addEventListener("fetch", (event) => event.respondWith("hi"));

// ---- KV: every read form and its result type.
export async function kv(env: Env): Promise<void> {
  const ns = env.CACHE;
  expectType<Equal<Awaited<ReturnType<typeof ns.delete>>, void>>();
  const t1 = await ns.get("k");
  const t2 = await ns.get("k", "text");
  const t3 = await ns.get("k", { type: "text", cacheTtl: 60 });
  const t4 = await ns.get("k", { cacheTtl: 60 });
  expectType<Equal<typeof t1 | typeof t2 | typeof t3 | typeof t4, string | null>>();
  const j1 = await ns.get<{ n: number }>("k", "json");
  const j2 = await ns.get<{ n: number }>("k", { type: "json" });
  expectType<Equal<typeof j1 | typeof j2, { n: number } | null>>();
  const j3 = await ns.get("k", "json");
  expectType<Equal<typeof j3, unknown>>();
  const b1 = await ns.get("k", "arrayBuffer");
  const b2 = await ns.get("k", { type: "arrayBuffer" });
  expectType<Equal<typeof b1 | typeof b2, ArrayBuffer | null>>();
  const s1 = await ns.get("k", "stream");
  const s2 = await ns.get("k", { type: "stream", cacheTtl: 30 });
  expectType<Equal<typeof s1 | typeof s2, ReadableStream<Uint8Array> | null>>();
  // @ts-expect-error -- not a value type
  await ns.get("k", "blob");

  const m1 = await ns.getWithMetadata<{ etag: string }>("k");
  expectType<Equal<typeof m1.value, string | null>>();
  expectType<Equal<typeof m1.metadata, { etag: string } | null>>();
  expectType<Equal<typeof m1.cacheStatus, null>>();
  const m2 = await ns.getWithMetadata<{ n: number }, { etag: string }>("k", "json");
  expectType<Equal<typeof m2.value, { n: number } | null>>();
  const m3 = await ns.getWithMetadata("k", { type: "arrayBuffer" });
  expectType<Equal<typeof m3.value, ArrayBuffer | null>>();
  const m4 = await ns.getWithMetadata("k", "stream");
  expectType<Equal<typeof m4.value, ReadableStream<Uint8Array> | null>>();

  await ns.put("k", "text");
  await ns.put("k", new ArrayBuffer(8));
  await ns.put("k", new Uint8Array(8));
  await ns.put("k", new DataView(new ArrayBuffer(8)));
  await ns.put("k", new ReadableStream<Uint8Array>());
  await ns.put("k", "v", { expirationTtl: 60, metadata: { etag: "x" } });
  await ns.put("k", "v", { expiration: 1_900_000_000 });
  // @ts-expect-error -- values are strings, bytes or streams
  await ns.put("k", { not: "serialized" });
  // @ts-expect-error -- expirationTtl is in seconds, a number
  await ns.put("k", "v", { expirationTtl: "1h" });
  await ns.delete("k");

  let cursor: string | undefined;
  do {
    const page = await ns.list<{ etag: string }>({ prefix: "user:", limit: 100, cursor });
    expectType<Equal<typeof page, KVNamespaceListResult<{ etag: string }>>>();
    expectType<Equal<typeof page.cacheStatus, null>>();
    for (const key of page.keys) {
      expectType<Equal<typeof key.name, string>>();
      expectType<Equal<typeof key.expiration, number | undefined>>();
      expectType<Equal<typeof key.metadata, { etag: string } | undefined>>();
    }
    if (!page.list_complete) expectType<Equal<typeof page.cursor, string>>();
    cursor = page.list_complete ? undefined : page.cursor;
  } while (cursor !== undefined);

  const narrow = env.CACHE as unknown as KVNamespace<"a" | "b">;
  await narrow.get("a");
  // @ts-expect-error -- a namespace typed with its keys rejects others
  await narrow.get("c");
}

// ---- limits and failures are documentation types with literal statuses.
export function limits(l: OutpostLimits, s: OutpostFailureStatus): number {
  expectType<Equal<typeof s.wall, 504>>();
  expectType<Equal<typeof s.cpu, 503>>();
  return l.cpu_ms + l.wall_ms + l.heap_mb + l.subrequests + l.startup_cpu_ms;
}

// ---- errors a handler observes.
export async function subrequests(): Promise<Response> {
  try {
    return await fetch("https://example.com/");
  } catch (caught) {
    if (isSubrequestLimitError(caught)) {
      expectType<Equal<typeof caught, SubrequestLimitError>>();
      expectType<Equal<typeof caught.name, "SubrequestLimitError">>();
      const message: `Too many subrequests: ${string}` = caught.message;
      return error(503, message);
    }
    throw caught;
  }
}

// ---- router: typed params, handler signature, entry points.
expectType<Equal<RouteParams<"/users/:id">, { id: string }>>();
expectType<Equal<RouteParams<"/orgs/:org/repos/:repo/*">, { org: string; repo: string; "*": string }>>();
expectType<Equal<RouteParams<"/">, {}>>();
expectType<Equal<RouteParams<string>, Record<string, string>>>();

const router = new Router<Env>({ base: "/api", notFound: (request) => error(404, `no route for ${request.url}`) });
router
  .get("/users/:id", (request, env, ctx, params) => {
    expectType<Equal<typeof request, Request>>();
    expectType<Equal<typeof env, Env>>();
    expectType<Equal<typeof ctx, ExecutionContext>>();
    expectType<Equal<typeof params, { id: string }>>();
    return json({ id: params.id, greeting: env.GREETING });
  })
  .post("/users", async (request) => json(await request.json(), { status: 201 }))
  .put("/users/:id", (_r, _e, _c, { id }) => text(id))
  .patch("/users/:id", () => new Response(null, { status: 204 }))
  .delete("/users/:id", async () => new Response(null, { status: 204 }))
  .all("/files/*", (_r, _e, _c, params) => text(params["*"]))
  .on("OPTIONS", "/users", () => new Response(null, { headers: { allow: "GET, POST" } }));

// @ts-expect-error -- only captured params exist
router.get("/users/:id", (_r, _e, _c, params) => text(params.name));
// @ts-expect-error -- handlers return a Response
router.get("/", () => "hello");

export default { fetch: router.fetch } satisfies ExportedHandler<Env>;
export const viaHandle = {
  fetch: (request, env, ctx) => router.handle(request, env, ctx),
} satisfies ExportedHandler<Env>;
// The router itself has a fetch method, so it can be the default export too.
export const routerAsHandler: ExportedHandler<Env> = router;

// @ts-expect-error -- a router over another Env does not fit
export const mismatched: ExportedHandler<{ OTHER: boolean }> = { fetch: router.fetch };

// ---- response builders.
const r1: Response = json({ ok: true }, { status: 201, headers: { "x-a": "b" } });
const r2: Response = text("hi", { headers: [["x-a", "b"]] });
const r3: Response = error(404);
const r4: Response = error(422, "name is required", { headers: { "x-a": "b" } });
// @ts-expect-error -- text takes a string
text({ not: "text" });
// @ts-expect-error -- the status comes first
error("not found");
export const responses = [r1, r2, r3, r4];
