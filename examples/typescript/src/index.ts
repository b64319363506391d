// A TypeScript handler on the SDK's router and json(). Run it: `outpost dev examples/typescript`
// (after `npm ci` in js-sdk/); tsconfig.json maps @outpost-edge/sdk to ../../js-sdk for tsc and esbuild.
import { Router, error, json, text, type ExportedHandler } from "@outpost-edge/sdk";

/** `env` of this function: the [vars] of outpost.toml. */
interface Env {
  GREETING: string;
}

const router = new Router<Env>();

router.get("/", (_request, env) => text(`${env.GREETING} from TypeScript\n`));

router.get("/hello/:name", (_request, env, _ctx, { name }) =>
  json({ message: `${env.GREETING}, ${name}!` }),
);

router.post("/echo", async (request) => {
  let body: unknown;
  try {
    body = await request.json();
  } catch {
    return error(400, "the body must be JSON");
  }
  return json({ received: body }, { status: 201 });
});

router.get("/files/*", (_request, _env, _ctx, params) => json({ path: params["*"] }));

export default { fetch: router.fetch } satisfies ExportedHandler<Env>;
