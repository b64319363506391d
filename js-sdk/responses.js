// Response builders handlers reach for: JSON, plain text, and JSON error bodies.

const JSON_TYPE = "application/json; charset=utf-8";
const TEXT_TYPE = "text/plain; charset=utf-8";

// Reason phrases (RFC 9110 and friends) used as the default `error()` message.
const REASONS = {
  400: "Bad Request",
  401: "Unauthorized",
  402: "Payment Required",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  406: "Not Acceptable",
  407: "Proxy Authentication Required",
  408: "Request Timeout",
  409: "Conflict",
  410: "Gone",
  411: "Length Required",
  412: "Precondition Failed",
  413: "Content Too Large",
  414: "URI Too Long",
  415: "Unsupported Media Type",
  416: "Range Not Satisfiable",
  417: "Expectation Failed",
  421: "Misdirected Request",
  422: "Unprocessable Content",
  423: "Locked",
  424: "Failed Dependency",
  425: "Too Early",
  426: "Upgrade Required",
  428: "Precondition Required",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  451: "Unavailable For Legal Reasons",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
  507: "Insufficient Storage",
  508: "Loop Detected",
  511: "Network Authentication Required",
};

/** A Response whose body is `data` as JSON; `content-type` defaults to JSON. */
export function json(data, init) {
  const body = JSON.stringify(data);
  if (body === undefined) throw new TypeError(`json() cannot serialize ${describeValue(data)}`);
  return withBody(body, JSON_TYPE, init);
}

/** A Response whose body is `body` as UTF-8 text; `content-type` defaults to text/plain. */
export function text(body, init) {
  return withBody(String(body), TEXT_TYPE, init);
}

/** A 4xx/5xx Response with the body `{"error": message}`; the message defaults to the reason phrase. */
export function error(status, message, init) {
  if (!Number.isInteger(status) || status < 400 || status > 599) {
    throw new RangeError(`error() needs a 4xx or 5xx status, got ${String(status)}`);
  }
  const reason = message ?? REASONS[status] ?? (status < 500 ? "Client Error" : "Server Error");
  return withBody(JSON.stringify({ error: String(reason) }), JSON_TYPE, { ...pickInit(init), status });
}

function withBody(body, contentType, init) {
  const { status, statusText, headers: headerInit } = pickInit(init);
  const headers = new Headers(headerInit);
  if (!headers.has("content-type")) headers.set("content-type", contentType);
  return new Response(body, { status, statusText, headers });
}

// Reads the ResponseInit fields explicitly: an init may be a Response, whose fields are getters.
function pickInit(init) {
  if (init === undefined || init === null) return {};
  return { status: init.status, statusText: init.statusText, headers: init.headers };
}

/**
 * Names a value's kind for error messages: "undefined", "null", "a string", "an object (Map)".
 * Internal: shared with router.js, not re-exported by index.js.
 */
export function describeValue(value) {
  if (value === null || value === undefined) return String(value);
  if (typeof value === "object") return `an object (${value.constructor?.name ?? "Object"})`;
  return `a ${typeof value}`;
}
