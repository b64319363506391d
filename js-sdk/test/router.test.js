// Tests of the Router: pattern matching, params and their decoding, methods, HEAD, 400/404/405, base paths, errors.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { Router, json, text } from "../index.js";

const env = { GREETING: "hi" };
const ctx = { waitUntil() {}, passThroughOnException() {} };

function request(path, method = "GET", init = {}) {
  return new Request(new URL(path, "https://outpost.test"), { method, ...init });
}

/** A router whose handlers echo which route ran and with which params. */
function echoRouter(routes, options = undefined) {
  const router = new Router(options);
  for (const [method, pattern] of routes) {
    router.on(method, pattern, (_request, _env, _ctx, params) => json({ route: `${method} ${pattern}`, params }));
  }
  return router;
}

async function call(router, path, method = "GET") {
  const response = await router.handle(request(path, method), env, ctx);
  const body = await response.text();
  return { status: response.status, headers: response.headers, body: body === "" ? null : JSON.parse(body) };
}

describe("matching", () => {
  const router = echoRouter([
    ["GET", "/"],
    ["GET", "/users"],
    ["GET", "/users/me"],
    ["GET", "/users/:id"],
    ["GET", "/users/:id/posts/:postId"],
    ["GET", "/files/*"],
    ["GET", "/v1/models/gpt:generate"],
  ]);

  test("the root", async () => {
    assert.deepEqual((await call(router, "/")).body, { route: "GET /", params: {} });
  });

  test("literal segments must match exactly", async () => {
    assert.deepEqual((await call(router, "/users")).body.route, "GET /users");
    assert.equal((await call(router, "/Users")).status, 404);
    assert.equal((await call(router, "/users/1/posts")).status, 404);
    assert.equal((await call(router, "/user")).status, 404);
  });

  test("the first registered route wins", async () => {
    assert.deepEqual((await call(router, "/users/me")).body, { route: "GET /users/me", params: {} });
  });

  test(":params capture one segment each", async () => {
    assert.deepEqual((await call(router, "/users/42")).body, { route: "GET /users/:id", params: { id: "42" } });
    assert.deepEqual((await call(router, "/users/42/posts/7")).body.params, { id: "42", postId: "7" });
  });

  test("a :param does not match an empty segment", async () => {
    assert.equal((await call(router, "/users//posts/7")).status, 404);
  });

  test("params are percent-decoded, + is kept", async () => {
    assert.deepEqual((await call(router, "/users/J%C3%BCrgen%20M")).body.params, { id: "Jürgen M" });
    assert.deepEqual((await call(router, "/users/a+b")).body.params, { id: "a+b" });
    assert.deepEqual((await call(router, "/users/a%2Fb")).body.params, { id: "a/b" });
    assert.deepEqual((await call(router, "/users/%3Aid")).body.params, { id: ":id" });
  });

  test("non-ASCII paths match decoded literals", async () => {
    const accents = echoRouter([["GET", "/café/:x"]]);
    assert.deepEqual((await call(accents, "/caf%C3%A9/1")).body.params, { x: "1" });
    assert.deepEqual((await call(accents, "/café/1")).body.params, { x: "1" });
    const encoded = echoRouter([["GET", "/caf%C3%A9"]]);
    assert.equal((await call(encoded, "/café")).status, 200);
  });

  test("literal segments compare decoded", async () => {
    assert.deepEqual((await call(router, "/%75sers")).body.route, "GET /users");
  });

  test("a colon inside a segment is literal", async () => {
    assert.deepEqual((await call(router, "/v1/models/gpt:generate")).body, {
      route: "GET /v1/models/gpt:generate",
      params: {},
    });
  });

  test("* captures the decoded rest of the path, possibly empty", async () => {
    assert.deepEqual((await call(router, "/files/a/b/c.txt")).body.params, { "*": "a/b/c.txt" });
    assert.deepEqual((await call(router, "/files/a%20b")).body.params, { "*": "a b" });
    assert.deepEqual((await call(router, "/files")).body.params, { "*": "" });
    assert.deepEqual((await call(router, "/files/")).body.params, { "*": "" });
    assert.equal((await call(router, "/filesystem")).status, 404);
  });

  test("* alone matches every path", async () => {
    const catchAll = echoRouter([["GET", "/*"]]);
    assert.deepEqual((await call(catchAll, "/")).body.params, { "*": "" });
    assert.deepEqual((await call(catchAll, "/x/y")).body.params, { "*": "x/y" });
  });

  test("params and * combine", async () => {
    const combined = echoRouter([["GET", "/buckets/:bucket/*"]]);
    assert.deepEqual((await call(combined, "/buckets/b1/x/y")).body.params, { bucket: "b1", "*": "x/y" });
  });

  test("the query string and fragment are ignored", async () => {
    assert.deepEqual((await call(router, "/users/42?x=1#top")).body.params, { id: "42" });
  });

  test("dot segments are resolved by URL parsing before matching", async () => {
    assert.deepEqual((await call(router, "/files/../users/42")).body.route, "GET /users/:id");
  });
});

describe("trailing slash", () => {
  const router = echoRouter([
    ["GET", "/users"],
    ["GET", "/teams/"],
    ["GET", "/users/:id"],
  ]);

  test("is ignored on the request", async () => {
    assert.equal((await call(router, "/users/")).body.route, "GET /users");
    assert.deepEqual((await call(router, "/users/42/")).body.params, { id: "42" });
  });

  test("is ignored on the pattern", async () => {
    assert.equal((await call(router, "/teams")).body.route, "GET /teams/");
    assert.equal((await call(router, "/teams/")).body.route, "GET /teams/");
  });

  test("only one is ignored", async () => {
    assert.equal((await call(router, "/users//")).status, 404);
  });
});

describe("methods", () => {
  test("get, post, put, patch, delete and on register their method", async () => {
    const router = new Router();
    for (const method of ["get", "post", "put", "patch", "delete"]) {
      router[method]("/thing", () => text(method));
    }
    router.on("options", "/thing", () => text("options"));
    router.on("PROPFIND", "/thing", () => text("propfind"));
    for (const method of ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND"]) {
      const response = await router.handle(request("/thing", method), env, ctx);
      assert.equal(await response.text(), method.toLowerCase());
    }
  });

  test("all answers every method", async () => {
    const router = new Router().all("/any", (req) => text(req.method));
    for (const method of ["GET", "HEAD", "POST", "DELETE", "PURGE"]) {
      const response = await router.handle(request("/any", method), env, ctx);
      assert.equal(response.status, 200);
      if (method !== "HEAD") assert.equal(await response.text(), method);
    }
  });

  test("methods are case-sensitive on requests", async () => {
    const router = new Router().patch("/x", () => text("patched"));
    // The fetch standard upper-cases only DELETE, GET, HEAD, OPTIONS, POST and PUT.
    const response = await router.handle(request("/x", "patch"), env, ctx);
    assert.equal(response.status, 405);
  });

  test("HEAD is answered by the GET route", async () => {
    const router = new Router().get("/page", () => text("body", { headers: { etag: '"1"' } }));
    const response = await router.handle(request("/page", "HEAD"), env, ctx);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("etag"), '"1"');
  });

  test("a HEAD route registered first takes precedence over GET", async () => {
    const router = new Router()
      .on("HEAD", "/page", () => new Response(null, { headers: { "x-from": "head" } }))
      .get("/page", () => text("body", { headers: { "x-from": "get" } }));
    const head = await router.handle(request("/page", "HEAD"), env, ctx);
    assert.equal(head.headers.get("x-from"), "head");
    const get = await router.handle(request("/page"), env, ctx);
    assert.equal(get.headers.get("x-from"), "get");
  });

  test("registration order decides between routes accepting the method", async () => {
    const router = new Router().all("/x", () => text("all")).get("/x", () => text("get"));
    assert.equal(await (await router.handle(request("/x"), env, ctx)).text(), "all");
  });

  test("invalid methods are rejected at registration", () => {
    assert.throws(() => new Router().on("GET POST", "/", () => text("")), TypeError);
    assert.throws(() => new Router().on("", "/", () => text("")), TypeError);
  });
});

describe("405 Method Not Allowed", () => {
  const router = new Router()
    .get("/items", () => text("list"))
    .post("/items", () => text("create"))
    .delete("/items/:id", () => text("delete"))
    .put("/items/:id", () => text("put"));

  test("when the path matches only other methods, with Allow", async () => {
    const response = await call(router, "/items", "PUT");
    assert.equal(response.status, 405);
    assert.equal(response.headers.get("allow"), "GET, POST, HEAD");
    assert.equal(response.headers.get("content-type"), "application/json; charset=utf-8");
    assert.deepEqual(response.body, { error: "Method Not Allowed" });
  });

  test("Allow lists HEAD only when a GET route matches", async () => {
    const response = await call(router, "/items/1", "GET");
    assert.equal(response.status, 405);
    assert.equal(response.headers.get("allow"), "DELETE, PUT");
  });

  test("a HEAD request without a GET route is 405 too", async () => {
    const response = await router.handle(request("/items/1", "HEAD"), env, ctx);
    assert.equal(response.status, 405);
  });
});

describe("404 Not Found", () => {
  test("is a JSON error by default", async () => {
    const response = await call(new Router().get("/a", () => text("a")), "/b");
    assert.equal(response.status, 404);
    assert.equal(response.headers.get("content-type"), "application/json; charset=utf-8");
    assert.deepEqual(response.body, { error: "Not Found" });
  });

  test("an empty router answers 404 for everything", async () => {
    assert.equal((await call(new Router(), "/")).status, 404);
  });

  test("notFound is called with request, env and ctx", async () => {
    let seen;
    const router = new Router({
      notFound: async (req, e, c) => {
        seen = [req.url, e, c];
        return text("custom", { status: 404 });
      },
    });
    const response = await router.handle(request("/missing"), env, ctx);
    assert.equal(response.status, 404);
    assert.equal(await response.text(), "custom");
    assert.deepEqual(seen, ["https://outpost.test/missing", env, ctx]);
  });
});

describe("400 Bad Request", () => {
  test("for malformed percent-encoding in the path", async () => {
    const router = echoRouter([["GET", "/*"]]);
    for (const path of ["/%", "/a%zz", "/%E0%A4%A"]) {
      const response = await call(router, path);
      assert.equal(response.status, 400, path);
      assert.deepEqual(response.body, { error: "malformed percent-encoding in the URL path" });
    }
  });
});

describe("base", () => {
  const router = echoRouter(
    [
      ["GET", "/"],
      ["GET", "/items/:id"],
    ],
    { base: "/api/v1/" },
  );

  test("prefixes every pattern", async () => {
    assert.equal((await call(router, "/api/v1")).body.route, "GET /");
    assert.equal((await call(router, "/api/v1/")).body.route, "GET /");
    assert.deepEqual((await call(router, "/api/v1/items/3")).body.params, { id: "3" });
  });

  test("paths outside the base are not found", async () => {
    assert.equal((await call(router, "/items/3")).status, 404);
    assert.equal((await call(router, "/api")).status, 404);
    assert.equal((await call(router, "/api/v2/items/3")).status, 404);
  });

  test("must be a plain path", () => {
    assert.throws(() => new Router({ base: "/orgs/:org" }), /plain path/);
    assert.throws(() => new Router({ base: "/files/*" }), /plain path/);
    assert.throws(() => new Router({ base: "api" }), /starting with "\/"/);
  });
});

describe("handlers", () => {
  test("receive request, env, ctx and params, with no this", async () => {
    let seen;
    const router = new Router().post("/users/:id", function (req, e, c, params) {
      seen = { self: this, method: req.method, e, c, params };
      return text("ok");
    });
    await router.handle(request("/users/7", "POST"), env, ctx);
    assert.deepEqual(seen, { self: undefined, method: "POST", e: env, c: ctx, params: { id: "7" } });
  });

  test("may be async", async () => {
    const router = new Router().get("/", async () => {
      await new Promise((resolve) => setTimeout(resolve, 1));
      return text("later");
    });
    assert.equal(await (await router.handle(request("/"), env, ctx)).text(), "later");
  });

  test("errors propagate to the runtime, sync or async", async () => {
    const router = new Router()
      .get("/sync", () => {
        throw new RangeError("boom");
      })
      .get("/async", async () => {
        throw new RangeError("later boom");
      });
    await assert.rejects(router.handle(request("/sync"), env, ctx), { name: "RangeError", message: "boom" });
    await assert.rejects(router.handle(request("/async"), env, ctx), { name: "RangeError", message: "later boom" });
  });

  test("returning something other than a Response is a TypeError naming the route", async () => {
    const router = new Router()
      .get("/nothing", () => undefined)
      .all("/string/:x", () => "text");
    await assert.rejects(router.handle(request("/nothing"), env, ctx), {
      name: "TypeError",
      message: "the handler of GET /nothing returned undefined, not a Response",
    });
    await assert.rejects(router.handle(request("/string/1"), env, ctx), {
      name: "TypeError",
      message: "the handler of ALL /string/:x returned a string, not a Response",
    });
  });

  test("must be functions", () => {
    assert.throws(() => new Router().get("/", "not a function"), TypeError);
  });
});

describe("patterns", () => {
  const bad = {
    "a relative path": "users",
    "not a string": 42,
    "an empty segment": "/a//b",
    "* before the end": "/*/x",
    "an empty param name": "/users/:",
    "a param name with a dash": "/users/:user-id",
    "a repeated param": "/a/:id/b/:id",
    "__proto__ as a param": "/a/:__proto__",
    "malformed percent-encoding": "/100%",
  };
  for (const [what, pattern] of Object.entries(bad)) {
    test(`reject ${what}`, () => {
      assert.throws(() => new Router().get(pattern, () => text("")), TypeError);
    });
  }

  test("registration methods chain", () => {
    const router = new Router();
    assert.equal(router.get("/a", () => text("")).post("/b", () => text("")), router);
  });
});

describe("entry points", () => {
  const router = new Router().get("/hello/:name", (_r, e, _c, { name }) => text(`${e.GREETING} ${name}`));

  test("fetch is bound, so { fetch: router.fetch } works", async () => {
    const handler = { fetch: router.fetch };
    const response = await handler.fetch(request("/hello/ana"), env, ctx);
    assert.equal(await response.text(), "hi ana");
    const detached = await router.fetch.call(undefined, request("/hello/bo"), env, ctx);
    assert.equal(await detached.text(), "hi bo");
  });

  test("the router itself is a module handler", async () => {
    // `export default router`: the runtime calls default.fetch(request, env, ctx).
    const handler = router;
    const response = await handler.fetch(request("/hello/cy"), env, ctx);
    assert.equal(await response.text(), "hi cy");
  });

  test("handle answers with a Promise of a Response", async () => {
    const pending = router.handle(request("/hello/di"), env, ctx);
    assert.ok(pending instanceof Promise);
    assert.ok((await pending) instanceof Response);
  });

  test("notFound must be a function", () => {
    assert.throws(() => new Router({ notFound: "nope" }), TypeError);
  });
});
