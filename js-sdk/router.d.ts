// Types of the path router: typed `:params` from route patterns, handlers, and the router itself.

import type { ExecutionContext, ExportedHandlerFetchHandler } from "./index.js";

type PatternSegments<Pattern extends string> = Pattern extends `${infer Head}/${infer Tail}`
  ? Head | PatternSegments<Tail>
  : Pattern;

type ParamOfSegment<Segment extends string> = Segment extends `:${infer Name}`
  ? Name
  : Segment extends "*"
    ? "*"
    : never;

/**
 * The params a route pattern captures: `RouteParams<"/users/:id/*">` is
 * `{ id: string; "*": string }`. Values are percent-decoded.
 */
export type RouteParams<Pattern extends string> = string extends Pattern
  ? Record<string, string>
  : { [Name in ParamOfSegment<PatternSegments<Pattern>>]: string };

/** Answers a request that matched a route; `params` holds the pattern's captures. */
export type RouteHandler<Env = Record<string, unknown>, Params = Record<string, string>> = (
  request: Request,
  env: Env,
  ctx: ExecutionContext,
  params: Params,
) => Response | Promise<Response>;

/** Answers a request that matched no route: called like a module handler's `fetch`. */
export type NotFoundHandler<Env = Record<string, unknown>> = ExportedHandlerFetchHandler<Env>;

/** How a router is set up. */
export interface RouterOptions<Env = Record<string, unknown>> {
  /**
   * A path prefix every pattern is mounted under, e.g. `"/api"`; a plain path without
   * `:params` or `*`. Default `"/"`.
   */
  base?: string;
  /** Answers requests no route matches. Default: `error(404)`, i.e. `{"error": "Not Found"}`. */
  notFound?: NotFoundHandler<Env>;
}

/**
 * Routes requests by method and path to handlers called as
 * `handler(request, env, ctx, params)`.
 *
 * Patterns are `/`-separated segments: a literal (matched against the percent-decoded
 * request segment), `:name` (one non-empty segment), or a final `*` (the rest of the
 * path, possibly empty, as `params["*"]`). A trailing slash is ignored on both sides, so
 * `/users` and `/users/` are the same route. The first registered route that matches the
 * path and method wins; HEAD is answered by GET routes. A path that matches only routes of
 * other methods gets 405 with an `Allow` header; a path with malformed percent-encoding
 * gets 400; anything else goes to `notFound`. Errors thrown by handlers propagate.
 */
export declare class Router<Env = Record<string, unknown>> {
  constructor(options?: RouterOptions<Env>);

  /** The module-syntax entry point, bound to this router: `export default { fetch: router.fetch }`. */
  readonly fetch: (request: Request, env: Env, ctx: ExecutionContext) => Promise<Response>;

  /** Answers `request` with the matching route, 400, 405, or `notFound`. */
  handle(request: Request, env: Env, ctx: ExecutionContext): Promise<Response>;

  /** Registers `handler` for `method` (case-insensitive) on `pattern`. */
  on<Pattern extends string>(method: string, pattern: Pattern, handler: RouteHandler<Env, RouteParams<Pattern>>): this;
  /** Registers a GET route; it also answers HEAD. */
  get<Pattern extends string>(pattern: Pattern, handler: RouteHandler<Env, RouteParams<Pattern>>): this;
  /** Registers a POST route. */
  post<Pattern extends string>(pattern: Pattern, handler: RouteHandler<Env, RouteParams<Pattern>>): this;
  /** Registers a PUT route. */
  put<Pattern extends string>(pattern: Pattern, handler: RouteHandler<Env, RouteParams<Pattern>>): this;
  /** Registers a PATCH route. */
  patch<Pattern extends string>(pattern: Pattern, handler: RouteHandler<Env, RouteParams<Pattern>>): this;
  /** Registers a DELETE route. */
  delete<Pattern extends string>(pattern: Pattern, handler: RouteHandler<Env, RouteParams<Pattern>>): this;
  /** Registers a route that answers every method. */
  all<Pattern extends string>(pattern: Pattern, handler: RouteHandler<Env, RouteParams<Pattern>>): this;
}
