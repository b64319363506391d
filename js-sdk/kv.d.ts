// Types of a KV namespace binding: the Workers KV API, as a member of `env`.
//
// The Outpost runtime does not bind KV namespaces yet. These declarations fix the API the
// binding will implement (the Workers KV API, so handlers move over unchanged); declare a
// binding as `interface Env { CACHE: KVNamespace }`.

/** The representations `get` can return a value in. */
export type KVNamespaceValueType = "text" | "json" | "arrayBuffer" | "stream";

/** Options of `get` and `getWithMetadata`. */
export interface KVNamespaceGetOptions<Type extends KVNamespaceValueType | undefined> {
  /** How to return the value; `"text"` when omitted. */
  type: Type;
  /** How long, in seconds, a read may be served from the node's cache. */
  cacheTtl?: number | undefined;
}

/** The result of `getWithMetadata`: `value` and `metadata` are null for a missing key. */
export interface KVNamespaceGetWithMetadataResult<Value, Metadata> {
  value: Value | null;
  metadata: Metadata | null;
}

/** Options of `put`. Give at most one of `expiration` and `expirationTtl`. */
export interface KVNamespacePutOptions<Metadata = unknown> {
  /** When the key expires, in seconds since the Unix epoch. */
  expiration?: number | undefined;
  /** How long from now the key lives, in seconds. */
  expirationTtl?: number | undefined;
  /** A JSON-serializable value stored with the key and returned by `getWithMetadata` and `list`. */
  metadata?: Metadata | null | undefined;
}

/** Options of `list`. */
export interface KVNamespaceListOptions {
  /** Only keys that start with this string. */
  prefix?: string | null | undefined;
  /** At most this many keys in one page. */
  limit?: number | undefined;
  /** The `cursor` of the previous page, to continue after it. */
  cursor?: string | null | undefined;
}

/** One key of a `list` page. */
export interface KVNamespaceListKey<Metadata = unknown, Key extends string = string> {
  name: Key;
  /** When the key expires, in seconds since the Unix epoch, if it has an expiration. */
  expiration?: number;
  /** The metadata stored with the key, if any. */
  metadata?: Metadata;
}

/** One page of `list`: keys in lexicographic order; `cursor` continues when `list_complete` is false. */
export type KVNamespaceListResult<Metadata = unknown, Key extends string = string> =
  | {
      keys: KVNamespaceListKey<Metadata, Key>[];
      list_complete: false;
      cursor: string;
    }
  | {
      keys: KVNamespaceListKey<Metadata, Key>[];
      list_complete: true;
      cursor?: undefined;
    };

/** A value `put` accepts. */
export type KVNamespacePutValue = string | ArrayBuffer | ArrayBufferView | ReadableStream;

/** A key-value namespace bound into `env`. Reads resolve to null for a missing key. */
export interface KVNamespace<Key extends string = string> {
  /** The value of `key` as text. */
  get(key: Key, options?: Partial<KVNamespaceGetOptions<undefined>>): Promise<string | null>;
  /** The value of `key` as text. */
  get(key: Key, type: "text"): Promise<string | null>;
  /** The value of `key` parsed as JSON. */
  get<Value = unknown>(key: Key, type: "json"): Promise<Value | null>;
  /** The value of `key` as bytes. */
  get(key: Key, type: "arrayBuffer"): Promise<ArrayBuffer | null>;
  /** The value of `key` as a byte stream. */
  get(key: Key, type: "stream"): Promise<ReadableStream<Uint8Array> | null>;
  /** The value of `key` as text. */
  get(key: Key, options: KVNamespaceGetOptions<"text">): Promise<string | null>;
  /** The value of `key` parsed as JSON. */
  get<Value = unknown>(key: Key, options: KVNamespaceGetOptions<"json">): Promise<Value | null>;
  /** The value of `key` as bytes. */
  get(key: Key, options: KVNamespaceGetOptions<"arrayBuffer">): Promise<ArrayBuffer | null>;
  /** The value of `key` as a byte stream. */
  get(key: Key, options: KVNamespaceGetOptions<"stream">): Promise<ReadableStream<Uint8Array> | null>;

  /** The value of `key` as text, with its metadata. */
  getWithMetadata<Metadata = unknown>(
    key: Key,
    options?: Partial<KVNamespaceGetOptions<undefined>>,
  ): Promise<KVNamespaceGetWithMetadataResult<string, Metadata>>;
  /** The value of `key` as text, with its metadata. */
  getWithMetadata<Metadata = unknown>(
    key: Key,
    type: "text",
  ): Promise<KVNamespaceGetWithMetadataResult<string, Metadata>>;
  /** The value of `key` parsed as JSON, with its metadata. */
  getWithMetadata<Value = unknown, Metadata = unknown>(
    key: Key,
    type: "json",
  ): Promise<KVNamespaceGetWithMetadataResult<Value, Metadata>>;
  /** The value of `key` as bytes, with its metadata. */
  getWithMetadata<Metadata = unknown>(
    key: Key,
    type: "arrayBuffer",
  ): Promise<KVNamespaceGetWithMetadataResult<ArrayBuffer, Metadata>>;
  /** The value of `key` as a byte stream, with its metadata. */
  getWithMetadata<Metadata = unknown>(
    key: Key,
    type: "stream",
  ): Promise<KVNamespaceGetWithMetadataResult<ReadableStream<Uint8Array>, Metadata>>;
  /** The value of `key` as text, with its metadata. */
  getWithMetadata<Metadata = unknown>(
    key: Key,
    options: KVNamespaceGetOptions<"text">,
  ): Promise<KVNamespaceGetWithMetadataResult<string, Metadata>>;
  /** The value of `key` parsed as JSON, with its metadata. */
  getWithMetadata<Value = unknown, Metadata = unknown>(
    key: Key,
    options: KVNamespaceGetOptions<"json">,
  ): Promise<KVNamespaceGetWithMetadataResult<Value, Metadata>>;
  /** The value of `key` as bytes, with its metadata. */
  getWithMetadata<Metadata = unknown>(
    key: Key,
    options: KVNamespaceGetOptions<"arrayBuffer">,
  ): Promise<KVNamespaceGetWithMetadataResult<ArrayBuffer, Metadata>>;
  /** The value of `key` as a byte stream, with its metadata. */
  getWithMetadata<Metadata = unknown>(
    key: Key,
    options: KVNamespaceGetOptions<"stream">,
  ): Promise<KVNamespaceGetWithMetadataResult<ReadableStream<Uint8Array>, Metadata>>;

  /** Stores `value` under `key`, replacing any previous value and metadata. */
  put<Metadata = unknown>(key: Key, value: KVNamespacePutValue, options?: KVNamespacePutOptions<Metadata>): Promise<void>;

  /** Removes `key`; removing a missing key succeeds. */
  delete(key: Key): Promise<void>;

  /** One page of the namespace's keys. */
  list<Metadata = unknown>(options?: KVNamespaceListOptions): Promise<KVNamespaceListResult<Metadata, Key>>;
}
