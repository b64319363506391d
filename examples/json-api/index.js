// A small JSON API: routes with URLPattern, JSON bodies, status codes, and an in-isolate store.
const routes = [
  { method: "GET", pattern: new URLPattern({ pathname: "/api/items" }), handle: listItems },
  { method: "POST", pattern: new URLPattern({ pathname: "/api/items" }), handle: createItem },
  { method: "GET", pattern: new URLPattern({ pathname: "/api/items/:id" }), handle: getItem },
];

// Lives as long as the isolate: fine for a demo, use KV for real state.
const items = new Map();
let nextId = 1;

function listItems() {
  return Response.json({ items: [...items.values()] });
}

async function createItem(request) {
  let body;
  try {
    body = await request.json();
  } catch {
    return Response.json({ error: "body must be JSON" }, { status: 400 });
  }
  if (typeof body.name !== "string" || body.name.length === 0) {
    return Response.json({ error: "name is required" }, { status: 422 });
  }
  const item = { id: String(nextId++), name: body.name };
  items.set(item.id, item);
  return Response.json(item, { status: 201, headers: { location: `/api/items/${item.id}` } });
}

function getItem(_request, params) {
  const item = items.get(params.id);
  return item ? Response.json(item) : Response.json({ error: "not found" }, { status: 404 });
}

export default {
  async fetch(request, env) {
    for (const route of routes) {
      const match = route.pattern.exec(request.url);
      if (match && request.method === route.method) {
        return route.handle(request, match.pathname.groups, env);
      }
    }
    return Response.json({ error: "no such endpoint" }, { status: 404 });
  },
};
