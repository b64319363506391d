// A Hono app exactly as written for Workers. Run it: `outpost dev examples/hono-ts` (after `npm ci` in js-sdk/).
// In this repo `hono` comes from js-sdk's dev dependencies through the `paths` entry of tsconfig.json,
// which tsc and esbuild both read. It maps the bare `hono` import only (not `hono/cors` and other
// subpaths); in your own project, `npm install hono` and drop that entry.
import { Hono } from 'hono'

const app = new Hono()

app.get('/', (c) => c.text('Hello Hono'))
app.get('/users/:id', (c) => c.json({ id: c.req.param('id') }))

export default app
