// Proxies to an origin, rewriting headers on the way in and out.
export default {
  async fetch(request, env) {
    const incoming = new URL(request.url);
    const upstream = new URL(incoming.pathname + incoming.search, env.ORIGIN);
    const headers = new Headers(request.headers);
    headers.set("x-forwarded-host", incoming.host);
    headers.delete("cookie");
    const response = await fetch(upstream, {
      method: request.method,
      headers,
      body: request.method === "GET" || request.method === "HEAD" ? undefined : request.body,
    });
    const rewritten = new Response(response.body, response);
    rewritten.headers.set("x-served-by", "outpost");
    rewritten.headers.delete("server");
    return rewritten;
  },
};
