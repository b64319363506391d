// Streams a response: one line every 100 ms, sent to the client as it is produced.
export default {
  fetch(request) {
    const count = Number(new URL(request.url).searchParams.get("n") ?? 10);
    const encoder = new TextEncoder();
    let sent = 0;
    const body = new ReadableStream({
      async pull(controller) {
        if (sent >= count) {
          controller.close();
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
        controller.enqueue(encoder.encode(`line ${++sent} at ${new Date().toISOString()}\n`));
      },
    });
    return new Response(body, { headers: { "content-type": "text/plain; charset=utf-8" } });
  },
};
