// Calls a bundle's default-export fetch(request, env, ctx) as the runtime does, with Node's own globals hidden from it, and prints the responses as JSON.
// Usage: node run-bundle.js <bundle.js> <requests JSON: [{method, path, headers?, body?}]> <env JSON>

import { pathToFileURL } from "node:url";

const [bundlePath, requestsJson, envJson] = process.argv.slice(2);
const stdout = process.stdout;

// The runtime has none of these globals. Node's own code keeps using them, so instead of
// deleting them, each reads as undefined from the bundle's code (as `typeof` sees them there).
const bundleUrl = pathToFileURL(bundlePath).href;
for (const name of ["process", "Buffer", "global", "setImmediate", "clearImmediate"]) {
  const value = globalThis[name];
  Object.defineProperty(globalThis, name, {
    configurable: true,
    get() {
      // Stack line 0 is the message, 1 this getter, 2 whoever read the global.
      const caller = new Error().stack?.split("\n")[2] ?? "";
      return caller.includes(bundleUrl) ? undefined : value;
    },
  });
}

const namespace = await import(bundleUrl);
const handler = namespace.default;
if (typeof handler?.fetch !== "function") {
  throw new TypeError("the default export has no fetch(request, env, ctx) method");
}
const env = JSON.parse(envJson);
const results = [];
for (const spec of JSON.parse(requestsJson)) {
  const pending = [];
  const ctx = {
    waitUntil: (promise) => pending.push(promise),
    passThroughOnException: () => {},
  };
  const request = new Request(new URL(spec.path, "http://outpost.test"), {
    method: spec.method ?? "GET",
    headers: spec.headers,
    body: spec.body,
  });
  const response = await handler.fetch(request, env, ctx);
  if (!(response instanceof Response)) {
    throw new TypeError(`${spec.method ?? "GET"} ${spec.path} did not answer with a Response`);
  }
  await Promise.all(pending);
  results.push({
    status: response.status,
    headers: Object.fromEntries(response.headers),
    body: await response.text(),
  });
}
stdout.write(JSON.stringify(results));
