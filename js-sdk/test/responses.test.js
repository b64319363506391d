// Tests of the response builders json(), text() and error().

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { error, json, text } from "../index.js";

describe("json", () => {
  test("serializes data with a JSON content-type and status 200", async () => {
    const response = json({ a: [1, "two", null], b: { c: true } });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-type"), "application/json; charset=utf-8");
    assert.equal(await response.text(), '{"a":[1,"two",null],"b":{"c":true}}');
  });

  test("takes status, statusText and headers from init", async () => {
    const response = json({ id: 1 }, { status: 201, statusText: "Created", headers: { location: "/items/1" } });
    assert.equal(response.status, 201);
    assert.equal(response.statusText, "Created");
    assert.equal(response.headers.get("location"), "/items/1");
    assert.equal(response.headers.get("content-type"), "application/json; charset=utf-8");
  });

  test("keeps a content-type from init", () => {
    const response = json({}, { headers: [["Content-Type", "application/problem+json"]] });
    assert.equal(response.headers.get("content-type"), "application/problem+json");
  });

  test("accepts a Headers object and a Response as init", async () => {
    const headers = new Headers({ "x-a": "1" });
    assert.equal(json(1, { headers }).headers.get("x-a"), "1");
    const template = new Response(null, { status: 202, headers: { "x-b": "2" } });
    const response = json("ok", template);
    assert.equal(response.status, 202);
    assert.equal(response.headers.get("x-b"), "2");
    assert.equal(await response.text(), '"ok"');
  });

  test("serializes primitives and null", async () => {
    assert.equal(await json(null).text(), "null");
    assert.equal(await json(0).text(), "0");
    assert.equal(await json("é").text(), '"é"');
  });

  test("rejects values without a JSON form", () => {
    assert.throws(() => json(undefined), { name: "TypeError", message: "json() cannot serialize undefined" });
    assert.throws(() => json(() => 1), { name: "TypeError", message: "json() cannot serialize a function" });
    assert.throws(() => json(10n), TypeError);
  });

  test("does not mutate init headers", () => {
    const init = { headers: { "x-a": "1" } };
    json({}, init);
    assert.deepEqual(init, { headers: { "x-a": "1" } });
  });
});

describe("text", () => {
  test("answers UTF-8 text", async () => {
    const response = text("héllo");
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-type"), "text/plain; charset=utf-8");
    assert.equal(await response.text(), "héllo");
  });

  test("takes init and keeps its content-type", async () => {
    const response = text("<p>hi</p>", { status: 418, headers: { "content-type": "text/html; charset=utf-8" } });
    assert.equal(response.status, 418);
    assert.equal(response.headers.get("content-type"), "text/html; charset=utf-8");
  });
});

describe("error", () => {
  test("answers {error: message} with the status", async () => {
    const response = error(422, "name is required");
    assert.equal(response.status, 422);
    assert.equal(response.headers.get("content-type"), "application/json; charset=utf-8");
    assert.deepEqual(await response.json(), { error: "name is required" });
  });

  test("defaults the message to the reason phrase", async () => {
    assert.deepEqual(await error(404).json(), { error: "Not Found" });
    assert.deepEqual(await error(500).json(), { error: "Internal Server Error" });
    assert.deepEqual(await error(429).json(), { error: "Too Many Requests" });
    assert.deepEqual(await error(499).json(), { error: "Client Error" });
    assert.deepEqual(await error(599).json(), { error: "Server Error" });
  });

  test("an empty message stays empty", async () => {
    assert.deepEqual(await error(400, "").json(), { error: "" });
  });

  test("adds headers from init but keeps its own status", () => {
    const response = error(401, "sign in", { status: 200, headers: { "www-authenticate": "Bearer" } });
    assert.equal(response.status, 401);
    assert.equal(response.headers.get("www-authenticate"), "Bearer");
  });

  test("accepts only 4xx and 5xx statuses", () => {
    for (const status of [200, 302, 399, 600, 404.5, Number.NaN, "404"]) {
      assert.throws(() => error(status), RangeError, String(status));
    }
  });
});
