// The Outpost SDK's runtime exports: the router, response builders, and error predicates.

export { Router } from "./router.js";
export { error, json, text } from "./responses.js";

/** Whether `error` is the rejection `fetch()` gives once a request is over its subrequest limit. */
export function isSubrequestLimitError(error) {
  return error instanceof Error && error.name === "SubrequestLimitError";
}
