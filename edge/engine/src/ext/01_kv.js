// KV bindings: the Workers KV API (get, getWithMetadata, put, delete, list) over the op_outpost_kv_* ops (src/ext/kv.rs); the node's store enforces limits.

import { core, primordials } from "ext:core/mod.js";

const {
  op_outpost_kv_get,
  op_outpost_kv_put,
  op_outpost_kv_delete,
  op_outpost_kv_list,
} = core.ops;
const {
  ArrayBufferIsView,
  ArrayPrototypeMap,
  JSONParse,
  JSONStringify,
  MathFloor,
  NumberIsFinite,
  String,
  TypeError,
  TypedArrayPrototypeGetBuffer,
  TypedArrayPrototypeGetByteLength,
  TypedArrayPrototypeGetByteOffset,
  Uint8Array,
} = primordials;

/** Largest value a handler may store (25 MiB), checked while streaming a value in. */
const MAX_VALUE_BYTES = 25 * 1024 * 1024;
const VALUE_TYPES = ["text", "json", "arrayBuffer", "stream"];

// The web globals exist once 00_runtime.js has built the global scope, after this module loads.
let encoder;
let decoder;
const encode = (text) => (encoder ??= new globalThis.TextEncoder()).encode(text);
const decodeText = (bytes) => (decoder ??= new globalThis.TextDecoder()).decode(bytes);

function readType(options) {
  if (options === undefined || options === null) return { type: "text", cacheTtl: 0 };
  if (typeof options === "string") options = { type: options };
  if (typeof options !== "object") {
    throw new TypeError("KV get options must be a type string or { type, cacheTtl }");
  }
  const type = options.type ?? "text";
  if (!VALUE_TYPES.includes(type)) {
    throw new TypeError(`KV get type must be one of ${VALUE_TYPES.join(", ")}, not ${String(type)}`);
  }
  let cacheTtl = 0;
  if (options.cacheTtl !== undefined) {
    cacheTtl = Number(options.cacheTtl);
    if (!NumberIsFinite(cacheTtl) || cacheTtl < 1) {
      throw new TypeError("KV cacheTtl must be a number of seconds, at least 1");
    }
    cacheTtl = MathFloor(cacheTtl);
  }
  return { type, cacheTtl };
}

function keyOf(key) {
  if (typeof key !== "string") {
    throw new TypeError(`KV key must be a string, not ${typeof key}`);
  }
  return key;
}

function decode(bytes, type) {
  switch (type) {
    case "json":
      return JSONParse(decodeText(bytes));
    case "arrayBuffer":
      return TypedArrayPrototypeGetBuffer(bytes).slice(
        TypedArrayPrototypeGetByteOffset(bytes),
        TypedArrayPrototypeGetByteOffset(bytes) + TypedArrayPrototypeGetByteLength(bytes),
      );
    case "stream":
      return new globalThis.Response(bytes).body;
    default:
      return decodeText(bytes);
  }
}

async function bytesOf(value) {
  if (typeof value === "string") return encode(value);
  if (value instanceof ArrayBuffer) return new Uint8Array(value.slice(0));
  if (ArrayBufferIsView(value)) {
    return new Uint8Array(
      TypedArrayPrototypeGetBuffer(value).slice(
        value.byteOffset,
        value.byteOffset + value.byteLength,
      ),
    );
  }
  if (value instanceof globalThis.ReadableStream) {
    const chunks = [];
    let total = 0;
    for await (const chunk of value) {
      const bytes = typeof chunk === "string" ? encode(chunk) : new Uint8Array(chunk);
      total += bytes.byteLength;
      if (total > MAX_VALUE_BYTES) {
        throw new TypeError(`KV value exceeds ${MAX_VALUE_BYTES} bytes`);
      }
      chunks.push(bytes);
    }
    const all = new Uint8Array(total);
    let offset = 0;
    for (const chunk of chunks) {
      all.set(chunk, offset);
      offset += chunk.byteLength;
    }
    return all;
  }
  throw new TypeError(
    "KV put value must be a string, ArrayBuffer, ArrayBufferView or ReadableStream",
  );
}

/** A whole number for a numeric option, or undefined when absent; the store checks ranges. */
function wholeNumber(value, name) {
  if (value === undefined || value === null) return undefined;
  const number = Number(value);
  if (!NumberIsFinite(number) || number < 0) {
    throw new TypeError(`KV ${name} must be a number, not ${String(value)}`);
  }
  return MathFloor(number);
}

/** `env.BINDING` for a KV namespace bound to the function. */
class KVNamespace {
  #binding;

  constructor(binding) {
    this.#binding = binding;
  }

  async get(key, options) {
    const { type, cacheTtl } = readType(options);
    const entry = await op_outpost_kv_get(this.#binding, keyOf(key), cacheTtl);
    return entry === null ? null : decode(entry[0], type);
  }

  async getWithMetadata(key, options) {
    const { type, cacheTtl } = readType(options);
    const entry = await op_outpost_kv_get(this.#binding, keyOf(key), cacheTtl);
    if (entry === null) return { value: null, metadata: null, cacheStatus: null };
    return {
      value: decode(entry[0], type),
      metadata: entry[1] === null ? null : JSONParse(entry[1]),
      cacheStatus: null,
    };
  }

  async put(key, value, options = {}) {
    keyOf(key);
    const bytes = await bytesOf(value);
    await op_outpost_kv_put(this.#binding, key, bytes, {
      expiration: wholeNumber(options?.expiration, "expiration"),
      expirationTtl: wholeNumber(options?.expirationTtl, "expirationTtl"),
      metadata: options?.metadata === undefined ? undefined : JSONStringify(options.metadata),
    });
  }

  async delete(key) {
    await op_outpost_kv_delete(this.#binding, keyOf(key));
  }

  async list(options = {}) {
    const prefix = String(options?.prefix ?? "");
    const limit = wholeNumber(options?.limit, "list limit");
    const cursor = options?.cursor ? String(options.cursor) : undefined;
    const listing = JSONParse(
      await op_outpost_kv_list(this.#binding, { prefix, limit, cursor }),
    );
    return {
      keys: ArrayPrototypeMap(listing.keys, (key) => {
        const out = { name: key.name };
        if (key.expiration !== undefined) out.expiration = key.expiration;
        if (key.metadata !== undefined) out.metadata = JSONParse(key.metadata);
        return out;
      }),
      list_complete: listing.list_complete,
      cursor: listing.cursor,
      cacheStatus: null,
    };
  }
}

export { KVNamespace };
