// Types of the response builders: JSON, plain text, and JSON error bodies.

/** The body `error()` responds with. */
export interface ErrorBody {
  error: string;
}

/**
 * A Response whose body is `JSON.stringify(data)`. `content-type` is
 * `application/json; charset=utf-8` unless `init.headers` sets one.
 * Throws a `TypeError` when `data` has no JSON form (`undefined`, a function, a symbol).
 */
export declare function json(data: unknown, init?: ResponseInit): Response;

/**
 * A Response whose body is `body` as UTF-8. `content-type` is `text/plain; charset=utf-8`
 * unless `init.headers` sets one.
 */
export declare function text(body: string, init?: ResponseInit): Response;

/**
 * A Response with status `status` (400 to 599, else a `RangeError`) and the JSON body
 * `{"error": message}`; `message` defaults to the status's reason phrase, e.g.
 * `"Not Found"`. `init` adds headers; its `status` is ignored.
 */
export declare function error(status: number, message?: string, init?: ResponseInit): Response;
