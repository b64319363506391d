// Tests of the package entry: its runtime exports (matching index.d.ts) and isSubrequestLimitError.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import * as sdk from "../index.js";

test("the runtime exports are exactly the router, the builders and the predicate", () => {
  assert.deepEqual(Object.keys(sdk).sort(), ["Router", "error", "isSubrequestLimitError", "json", "text"]);
});

test("index.d.ts declares every runtime export", () => {
  const declarations = ["index.d.ts", "router.d.ts", "responses.d.ts"]
    .map((file) => readFileSync(new URL(`../${file}`, import.meta.url), "utf8"))
    .join("\n");
  for (const name of Object.keys(sdk)) {
    assert.match(declarations, new RegExp(`export declare (class|function) ${name}\\b`), name);
  }
});

test("the package resolves by its own name through exports", async () => {
  const self = await import("@outpost-edge/sdk");
  assert.equal(self.Router, sdk.Router);
});

test("isSubrequestLimitError recognizes the runtime's error by name", () => {
  // The runtime's class is not global; this is what its instances look like.
  class SubrequestLimitError extends Error {
    constructor(limit) {
      super(`Too many subrequests: a request may make at most ${limit} fetch() calls`);
      this.name = "SubrequestLimitError";
    }
  }
  assert.equal(sdk.isSubrequestLimitError(new SubrequestLimitError(50)), true);
  assert.equal(sdk.isSubrequestLimitError(new TypeError("fetch failed")), false);
  assert.equal(sdk.isSubrequestLimitError({ name: "SubrequestLimitError" }), false);
  assert.equal(sdk.isSubrequestLimitError(undefined), false);
});
