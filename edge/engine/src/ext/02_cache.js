// The Cache API: `caches.default` and `await caches.open(name)` with Workers' rules, over the op_outpost_cache_* ops (src/ext/cache.rs). Entries live on this node, per function.

import { core, primordials } from "ext:core/mod.js";

const {
  op_outpost_cache_put,
  op_outpost_cache_match,
  op_outpost_cache_delete,
} = core.ops;
const {
  ArrayPrototypeSome,
  ObjectPrototypeIsPrototypeOf,
  String,
  StringPrototypeIndexOf,
  StringPrototypeReplace,
  StringPrototypeSlice,
  StringPrototypeSplit,
  StringPrototypeTrim,
  Symbol,
  TypeError,
  Uint8Array,
} = primordials;

const CONSTRUCT = Symbol("outpost.cache.construct");

/** Builds `caches` from the fetch classes (passed in so a handler's globals cannot swap them). */
export function createCacheStorage({ Request, Response }) {
  const toRequest = (input) =>
    ObjectPrototypeIsPrototypeOf(Request.prototype, input) ? input : new Request(input);

  // The cache key is the URL without its fragment.
  const keyOf = (request) => {
    const url = request.url;
    const hash = StringPrototypeIndexOf(url, "#");
    return hash === -1 ? url : StringPrototypeSlice(url, 0, hash);
  };

  const opaqueTag = (tag) => StringPrototypeReplace(StringPrototypeTrim(tag), /^W\//, "");

  // If-None-Match against an ETag, by weak comparison (RFC 9110, section 13.1.2).
  const etagMatches = (ifNoneMatch, etag) =>
    ArrayPrototypeSome(StringPrototypeSplit(ifNoneMatch, ","), (candidate) => {
      const tag = StringPrototypeTrim(candidate);
      return tag === "*" || opaqueTag(tag) === opaqueTag(etag);
    });

  class Cache {
    #name;

    constructor(token, name) {
      if (token !== CONSTRUCT) throw new TypeError("Illegal constructor");
      this.#name = name;
    }

    async put(request, response) {
      request = toRequest(request);
      if (request.method !== "GET") {
        throw new TypeError("Cache.put: only responses to GET requests can be cached");
      }
      if (!ObjectPrototypeIsPrototypeOf(Response.prototype, response)) {
        throw new TypeError("Cache.put: the second argument must be a Response");
      }
      if (response.status === 206) {
        throw new TypeError("Cache.put: a 206 Partial Content response cannot be cached");
      }
      const vary = response.headers.get("vary");
      if (vary !== null && ArrayPrototypeSome(StringPrototypeSplit(vary, ","), (v) => StringPrototypeTrim(v) === "*")) {
        throw new TypeError("Cache.put: a response with 'Vary: *' cannot be cached");
      }
      if (response.bodyUsed) {
        throw new TypeError("Cache.put: the response body has already been read");
      }
      const headers = [...response.headers];
      const body = new Uint8Array(await response.arrayBuffer());
      // Responses that may not be stored (no-store, private, Set-Cookie, ...) are dropped
      // silently, as on Workers.
      op_outpost_cache_put(this.#name, keyOf(request), response.status, headers, body);
    }

    async match(request, options = undefined) {
      request = toRequest(request);
      if (request.method !== "GET" && !options?.ignoreMethod) return undefined;
      const entry = op_outpost_cache_match(this.#name, keyOf(request));
      if (entry === null || entry === undefined) return undefined;
      const { 0: status, 1: headers, 2: body } = entry;
      const nullBody = status === 204 || status === 205 || status === 304;
      const response = new Response(nullBody ? null : body, { status, headers });
      response.headers.set("cf-cache-status", "HIT");
      const ifNoneMatch = request.headers.get("if-none-match");
      const etag = response.headers.get("etag");
      if (ifNoneMatch !== null && etag !== null && etagMatches(ifNoneMatch, etag)) {
        return new Response(null, { status: 304, headers: response.headers });
      }
      return response;
    }

    async delete(request, options = undefined) {
      request = toRequest(request);
      if (request.method !== "GET" && !options?.ignoreMethod) return false;
      return op_outpost_cache_delete(this.#name, keyOf(request));
    }
  }

  class CacheStorage {
    #default = new Cache(CONSTRUCT, "default");

    constructor(token) {
      if (token !== CONSTRUCT) throw new TypeError("Illegal constructor");
    }

    get default() {
      return this.#default;
    }

    async open(name) {
      return new Cache(CONSTRUCT, `named:${String(name)}`);
    }
  }

  return { caches: new CacheStorage(CONSTRUCT), Cache, CacheStorage };
}
