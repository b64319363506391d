// Types of a KV namespace binding: the Workers KV API on `env.<binding>`, as the runtime implements it (edge/engine/src/ext/01_kv.js).
//
// Each `[[kv_namespaces]] binding = "CACHE", namespace = "cache"` in `outpost.toml` puts a
// `KVNamespace` on `env.CACHE`; declare it as `interface Env { CACHE: KVNamespace }`.
// Under `outpost dev` (and on nodes without control) namespaces live in a local SQLite
// file. Limits (`control/proto/src/kv.rs`) are thrown as a `TypeError` whose message names
// the limit: a key is 1 to 512 bytes of UTF-8 and not "." or ".."; a value at most 25 MiB;
// metadata at most 1024 bytes as JSON. A store that cannot answer rejects with an `Error`.

/** The representations `get` can return a value in. */
export type KVNamespaceValueType = "text" | "json" | "arrayBuffer" | "stream";

/** Options of `get` and `getWithMetadata`. */
export interface KVNamespaceGetOptions<Type extends KVNamespaceValueType | undefined> {
  /** How to return the value; `"text"` when omitted. */
  type: Type;
  /**
   * How long, in seconds, a read may be served from the node's cache; at least 1 (Workers
   * asks for at least 60). The local store has no cache and ignores it.
   */
  cacheTtl?: number | undefined;
}

/** The result of `getWithMetadata`: `value` and `metadata` are null for a missing key. */
export interface KVNamespaceGetWithMetadataResult<Value, Metadata> {
  value: Value | null;
  metadata: Metadata | null;
  /** Workers reports its cache's status here; Outpost always gives null. */
  cacheStatus: null;
}

/**
 * Options of `put`. Give at most one of `expiration` and `expirationTtl` (both: a
 * `TypeError`). Expired keys are never returned.
 */
export interface KVNamespacePutOptions<Metadata = unknown> {
  /** When the key expires, in seconds since the Unix epoch; must be in the future. */
  expiration?: number | undefined;
  /** How long from now the key lives, in seconds; at least 1 (Workers asks for at least 60). */
  expirationTtl?: number | undefined;
  /**
   * A JSON-serializable value, at most 1024 bytes as JSON, stored with the key and
   * returned by `getWithMetadata` and `list`.
   */
  metadata?: Metadata | null | undefined;
}

/** Options of `list`. */
export interface KVNamespaceListOptions {
  /** Only keys that start with this string. */
  prefix?: string | null | undefined;
  /** At most this many keys in one page: 1 to 1000, default 1000. */
  limit?: number | undefined;
  /** The `cursor` of the previous page, to continue after it. */
  cursor?: string | null | undefined;
}

/** One key of a `list` page. */
export interface KVNamespaceListKey<Metadata = unknown, Key extends string = string> {
  name: Key;
  /** When the key expires, in seconds since the Unix epoch; absent when it does not. */
  expiration?: number;
  /** The metadata stored with the key; absent when none. */
  metadata?: Metadata;
}

/**
 * One page of `list`: keys in byte order of their UTF-8; `cursor` continues when
 * `list_complete` is false. `cacheStatus` is always null, as in `getWithMetadata`.
 */
export type KVNamespaceListResult<Metadata = unknown, Key extends string = string> =
  | {
      keys: KVNamespaceListKey<Metadata, Key>[];
      list_complete: false;
      cursor: string;
      cacheStatus: null;
    }
  | {
      keys: KVNamespaceListKey<Metadata, Key>[];
      list_complete: true;
      cursor?: undefined;
      cacheStatus: null;
    };

/** A value `put` accepts. */
export type KVNamespacePutValue = string | ArrayBuffer | ArrayBufferView | ReadableStream;

/**
 * A key-value namespace bound into `env`. Reads resolve to null for a missing or expired
 * key; a `"json"` read of a value that is not JSON rejects with a `SyntaxError`.
 */
export interface KVNamespace<Key extends string = string> {
  /** The value of `key` as text. */
  get(key: Key, options?: Partial<KVNamespaceGetOptions<undefined>>): Promise<string | null>;
  /** The value of `key` as text. */
  get(key: Key, type: "text" | KVNamespaceGetOptions<"text">): Promise<string | null>;
  /** The value of `key` parsed as JSON. */
  get<Value = unknown>(key: Key, type: "json" | KVNamespaceGetOptions<"json">): Promise<Value | null>;
  /** The value of `key` as bytes. */
  get(key: Key, type: "arrayBuffer" | KVNamespaceGetOptions<"arrayBuffer">): Promise<ArrayBuffer | null>;
  /** The value of `key` as a byte stream. */
  get(key: Key, type: "stream" | KVNamespaceGetOptions<"stream">): Promise<ReadableStream<Uint8Array> | null>;

  /** The value of `key` as text, with its metadata. */
  getWithMetadata<Metadata = unknown>(
    key: Key,
    options?: Partial<KVNamespaceGetOptions<undefined>>,
  ): Promise<KVNamespaceGetWithMetadataResult<string, Metadata>>;
  /** The value of `key` as text, with its metadata. */
  getWithMetadata<Metadata = unknown>(
    key: Key,
    type: "text" | KVNamespaceGetOptions<"text">,
  ): Promise<KVNamespaceGetWithMetadataResult<string, Metadata>>;
  /** The value of `key` parsed as JSON, with its metadata. */
  getWithMetadata<Value = unknown, Metadata = unknown>(
    key: Key,
    type: "json" | KVNamespaceGetOptions<"json">,
  ): Promise<KVNamespaceGetWithMetadataResult<Value, Metadata>>;
  /** The value of `key` as bytes, with its metadata. */
  getWithMetadata<Metadata = unknown>(
    key: Key,
    type: "arrayBuffer" | KVNamespaceGetOptions<"arrayBuffer">,
  ): Promise<KVNamespaceGetWithMetadataResult<ArrayBuffer, Metadata>>;
  /** The value of `key` as a byte stream, with its metadata. */
  getWithMetadata<Metadata = unknown>(
    key: Key,
    type: "stream" | KVNamespaceGetOptions<"stream">,
  ): Promise<KVNamespaceGetWithMetadataResult<ReadableStream<Uint8Array>, Metadata>>;

  /** Stores `value` (at most 25 MiB) under `key`, replacing any previous value and metadata. */
  put<Metadata = unknown>(key: Key, value: KVNamespacePutValue, options?: KVNamespacePutOptions<Metadata>): Promise<void>;

  /** Removes `key`; removing a missing key succeeds. */
  delete(key: Key): Promise<void>;

  /** One page of the namespace's live keys. */
  list<Metadata = unknown>(options?: KVNamespaceListOptions): Promise<KVNamespaceListResult<Metadata, Key>>;
}
