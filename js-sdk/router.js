// A small path router for fetch handlers: `:name` params, a trailing `*` wildcard, and 400/404/405 answers.

import { describeValue, error } from "./responses.js";

/** The method of routes registered with `all()`: they answer every method. */
const ANY_METHOD = "*";
// An HTTP method is a token (RFC 9110, section 5.6.2).
const METHOD_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const PARAM_NAME = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/**
 * Routes requests by method and path to handlers called as
 * `handler(request, env, ctx, params)`. The first registered route that matches wins.
 */
export class Router {
  #routes = [];
  #base;
  #notFound;

  constructor({ base = "/", notFound } = {}) {
    this.#base = compilePattern(base, "base");
    if (this.#base.some((part) => part.kind !== "literal")) {
      throw new TypeError(`the router base ${JSON.stringify(base)} must be a plain path, without :params or *`);
    }
    if (notFound !== undefined && typeof notFound !== "function") {
      throw new TypeError("notFound must be a function (request, env, ctx) => Response");
    }
    this.#notFound = notFound ?? (() => error(404));
  }

  /**
   * The module-syntax entry point, bound to this router:
   * `export default { fetch: router.fetch }`.
   */
  fetch = (request, env, ctx) => this.handle(request, env, ctx);

  /** Registers `handler` for `method` (case-insensitive) on `pattern`. */
  on(method, pattern, handler) {
    if (typeof method !== "string" || !METHOD_TOKEN.test(method)) {
      throw new TypeError(`not an HTTP method: ${JSON.stringify(method)}`);
    }
    return this.#add(method.toUpperCase(), pattern, handler);
  }

  /** Registers a GET route; it also answers HEAD. */
  get(pattern, handler) {
    return this.#add("GET", pattern, handler);
  }

  /** Registers a POST route. */
  post(pattern, handler) {
    return this.#add("POST", pattern, handler);
  }

  /** Registers a PUT route. */
  put(pattern, handler) {
    return this.#add("PUT", pattern, handler);
  }

  /** Registers a PATCH route. */
  patch(pattern, handler) {
    return this.#add("PATCH", pattern, handler);
  }

  /** Registers a DELETE route. */
  delete(pattern, handler) {
    return this.#add("DELETE", pattern, handler);
  }

  /** Registers a route that answers every method. */
  all(pattern, handler) {
    return this.#add(ANY_METHOD, pattern, handler);
  }

  /**
   * Answers `request`: the matching route's response, 400 for a path with malformed
   * percent-encoding, 405 (with `Allow`) when the path matches only other methods,
   * otherwise the `notFound` response (a JSON 404 by default). Handler errors propagate.
   */
  async handle(request, env, ctx) {
    const pathname = new URL(request.url).pathname;
    let segments;
    try {
      segments = splitPath(pathname).map(decodeURIComponent);
    } catch {
      return error(400, "malformed percent-encoding in the URL path"); // decodeURIComponent's only error is URIError
    }
    const allowed = [];
    for (const route of this.#routes) {
      const params = matchParts(route.parts, segments);
      if (params === null) continue;
      if (!accepts(route.method, request.method)) {
        if (!allowed.includes(route.method)) allowed.push(route.method);
        continue;
      }
      const { handler } = route; // called without `this`
      const response = await handler(request, env, ctx, params);
      if (!(response instanceof Response)) {
        throw new TypeError(`${handlerName(route.method, route.pattern)} returned ${describeValue(response)}, not a Response`);
      }
      return response;
    }
    if (allowed.length > 0) {
      if (allowed.includes("GET") && !allowed.includes("HEAD")) allowed.push("HEAD");
      return error(405, undefined, { headers: { allow: allowed.join(", ") } });
    }
    return this.#notFound(request, env, ctx);
  }

  #add(method, pattern, handler) {
    if (typeof handler !== "function") {
      throw new TypeError(`${handlerName(method, pattern)} must be a function`);
    }
    const parts = [...this.#base, ...compilePattern(pattern, "route pattern")];
    this.#routes.push({ method, pattern, parts, handler });
    return this;
  }
}

// HEAD is answered by GET routes (the server drops the body); an explicit HEAD route
// registered first takes precedence.
function accepts(routeMethod, requestMethod) {
  return (
    routeMethod === requestMethod ||
    routeMethod === ANY_METHOD ||
    (requestMethod === "HEAD" && routeMethod === "GET")
  );
}

// Path segments without the leading slash and one trailing slash: "/a/b/" -> ["a", "b"], "/" -> [].
function splitPath(path) {
  let trimmed = path.startsWith("/") ? path.slice(1) : path;
  if (trimmed.endsWith("/")) trimmed = trimmed.slice(0, -1);
  return trimmed === "" ? [] : trimmed.split("/");
}

// A pattern as parts: {kind: "literal", value} (decoded), {kind: "param", name}, {kind: "rest"}.
function compilePattern(pattern, what) {
  if (typeof pattern !== "string" || !pattern.startsWith("/")) {
    throw new TypeError(`a ${what} must be a string starting with "/", got ${JSON.stringify(pattern)}`);
  }
  const segments = splitPath(pattern);
  const names = new Set();
  return segments.map((segment, index) => {
    if (segment === "") {
      throw new TypeError(`the ${what} ${JSON.stringify(pattern)} has an empty segment`);
    }
    if (segment === "*") {
      if (index !== segments.length - 1) {
        throw new TypeError(`in the ${what} ${JSON.stringify(pattern)}, * may only be the last segment`);
      }
      return { kind: "rest" };
    }
    if (segment.startsWith(":")) {
      const name = segment.slice(1);
      if (!PARAM_NAME.test(name) || name === "__proto__") {
        throw new TypeError(`in the ${what} ${JSON.stringify(pattern)}, ${JSON.stringify(segment)} is not a valid :param`);
      }
      if (names.has(name)) {
        throw new TypeError(`the ${what} ${JSON.stringify(pattern)} repeats :${name}`);
      }
      names.add(name);
      return { kind: "param", name };
    }
    try {
      return { kind: "literal", value: decodeURIComponent(segment) };
    } catch {
      throw new TypeError(`the ${what} ${JSON.stringify(pattern)} has malformed percent-encoding`);
    }
  });
}

// The params of decoded path segments matched against parts, or null when they do not match.
function matchParts(parts, segments) {
  const params = {};
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i];
    if (part.kind === "rest") {
      params["*"] = segments.slice(i).join("/");
      return params;
    }
    if (i >= segments.length) return null;
    const segment = segments[i];
    if (part.kind === "literal") {
      if (segment !== part.value) return null;
    } else {
      if (segment === "") return null;
      params[part.name] = segment;
    }
  }
  return segments.length === parts.length ? params : null;
}

// How errors name a route's handler: "the handler of GET /users/:id", "the handler of ALL /files/*".
function handlerName(method, pattern) {
  return `the handler of ${method === ANY_METHOD ? "ALL" : method} ${String(pattern)}`;
}
