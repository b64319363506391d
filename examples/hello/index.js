// Hello world: the smallest Workers-style module handler.
export default {
  fetch(request, env, ctx) {
    return new Response("Hello, world!\n", {
      headers: { "content-type": "text/plain; charset=utf-8" },
    });
  },
};
