// Checks the contract of BUNDLING.md: its esbuild command is the CLI's (edge/node/src/bundler.rs) and turns each TypeScript example into one self-contained ES module with a source map back to the .ts source.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

const sdkDir = fileURLToPath(new URL("..", import.meta.url));
const repoDir = resolve(sdkDir, "..");
const examplesDir = join(repoDir, "examples");
const esbuild = join(sdkDir, "node_modules", ".bin", "esbuild");
const runBundle = fileURLToPath(new URL("support/run-bundle.js", import.meta.url));

/** The argument list of BUNDLING.md's `argv` block, placeholders included. */
function documentedArgv() {
  const doc = readFileSync(join(sdkDir, "BUNDLING.md"), "utf8");
  const match = /<!-- argv[^>]*-->\s*```text\n([\s\S]*?)```/.exec(doc);
  assert.ok(match, "BUNDLING.md has an argv block");
  return match[1].split("\n").filter((line) => line !== "");
}

/** The fixed flags the CLI passes to esbuild: the string literals of bundler.rs's `.args([...])`. */
function cliFlags() {
  const source = readFileSync(join(repoDir, "edge", "node", "src", "bundler.rs"), "utf8");
  const match = /\.args\(\[([\s\S]*?)\]\)/.exec(source);
  assert.ok(match, "bundler.rs passes esbuild an .args([...]) list");
  // A Rust string literal without raw or unicode escapes reads the same as JSON.
  return [...match[1].matchAll(/"(?:[^"\\]|\\.)*"/g)].map(([literal]) => JSON.parse(literal));
}

/** The documented arguments after `<esbuild>`, with `<entry>` and `<outdir>` filled in. */
function esbuildArgs(entry, outdir) {
  const [program, ...args] = documentedArgv();
  assert.equal(program, "<esbuild>");
  return args.map((arg) => arg.replaceAll("<entry>", entry).replaceAll("<outdir>", outdir));
}

const scratch = mkdtempSync(join(tmpdir(), "outpost-bundle-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** Bundles `<example>/src/index.ts` with the documented command; returns the output paths. */
function bundle(example) {
  const projectDir = join(examplesDir, example);
  const entry = join(projectDir, "src", "index.ts");
  const outdir = join(scratch, example);
  execFileSync(esbuild, esbuildArgs(entry, outdir), { cwd: projectDir, stdio: ["ignore", "pipe", "pipe"] });
  return { entry, outdir, outfile: join(outdir, "index.js") };
}

/** Answers `requests` with the bundle's default export in a process without Node's globals. */
function serve(outfile, requests, env = {}) {
  // Node needs this to load a `.js` file as an ES module; the runtime does not.
  writeFileSync(join(dirname(outfile), "package.json"), '{"type":"module"}\n');
  const output = execFileSync(
    process.execPath,
    [runBundle, outfile, JSON.stringify(requests), JSON.stringify(env)],
    { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] },
  );
  return JSON.parse(output);
}

/** The common checks: exactly two files, one module without imports, a map back to the entry. */
function assertSelfContained({ entry, outdir, outfile }) {
  assert.deepEqual(readdirSync(outdir).sort(), ["index.js", "index.js.map"]);
  const code = readFileSync(outfile, "utf8");
  assert.doesNotMatch(code, /^\s*import\s*[\w{*"']/m, "no static imports are left");
  assert.doesNotMatch(code, /^\s*export\s*(\*|\{[^}]*\})\s*from\b/m, "no re-exports are left");
  assert.doesNotMatch(code, /\bimport\s*\(/, "no dynamic imports are left");
  assert.match(code, /\/\/# sourceMappingURL=index\.js\.map\s*$/, "the module names its map");
  assert.match(code, /\bas default\b/, "the handler is the default export");

  const map = JSON.parse(readFileSync(`${outfile}.map`, "utf8"));
  assert.equal(map.version, 3);
  const sources = map.sources.map((source) => resolve(outdir, source));
  const index = sources.indexOf(entry);
  assert.notEqual(index, -1, `sources ${JSON.stringify(map.sources)} include ${entry}`);
  assert.equal(map.sourcesContent[index], readFileSync(entry, "utf8"));
  assert.ok(map.mappings.length > 0);
  return { code, sources };
}

describe("BUNDLING.md", () => {
  test("documents the argument list the CLI runs", () => {
    const flags = cliFlags();
    assert.deepEqual(flags, [
      "--bundle",
      "--format=esm",
      "--platform=neutral",
      "--target=es2022",
      "--main-fields=browser,module,main",
      "--conditions=workerd,worker,browser",
      '--define:process.env.NODE_ENV="production"',
      "--sourcemap=linked",
      "--log-level=warning",
    ]);
    assert.deepEqual(documentedArgv(), ["<esbuild>", "<entry>", ...flags, "--outfile=<outdir>/index.js"]);
  });

  test("fails with esbuild's error when a Node built-in is imported", () => {
    const dir = mkdtempSync(join(scratch, "node-builtin-"));
    const entry = join(dir, "index.ts");
    writeFileSync(entry, 'import { readFileSync } from "node:fs";\nexport default { fetch: () => new Response(String(readFileSync)) };\n');
    const args = esbuildArgs(entry, join(dir, "out"));
    assert.throws(
      () => execFileSync(esbuild, args, { cwd: dir, stdio: ["ignore", "pipe", "pipe"] }),
      (error) => error.status === 1 && /Could not resolve "node:fs"/.test(String(error.stderr)),
    );
  });
});

describe("examples/typescript bundle", () => {
  const built = bundle("typescript");

  test("is one self-contained module mapping back to src/index.ts and the SDK", () => {
    const { sources } = assertSelfContained(built);
    assert.ok(sources.includes(join(sdkDir, "router.js")), "the SDK router is inlined");
  });

  test("answers through the SDK router", () => {
    const [root, hello, echo, files, missing, wrongMethod] = serve(
      built.outfile,
      [
        { path: "/" },
        { path: "/hello/W%C3%B6rld" },
        { method: "POST", path: "/echo", headers: { "content-type": "application/json" }, body: '{"a":1}' },
        { path: "/files/a/b%20c.txt" },
        { path: "/nope" },
        { method: "DELETE", path: "/hello/x" },
      ],
      { GREETING: "Hello" },
    );
    assert.equal(root.status, 200);
    assert.equal(root.body, "Hello from TypeScript\n");
    assert.equal(hello.status, 200);
    assert.equal(hello.headers["content-type"], "application/json; charset=utf-8");
    assert.deepEqual(JSON.parse(hello.body), { message: "Hello, Wörld!" });
    assert.equal(echo.status, 201);
    assert.deepEqual(JSON.parse(echo.body), { received: { a: 1 } });
    assert.deepEqual(JSON.parse(files.body), { path: "a/b c.txt" });
    assert.equal(missing.status, 404);
    assert.deepEqual(JSON.parse(missing.body), { error: "Not Found" });
    assert.equal(wrongMethod.status, 405);
    assert.equal(wrongMethod.headers.allow, "GET, HEAD");
  });
});

describe("examples/hono-ts bundle", () => {
  const built = bundle("hono-ts");

  test("is one self-contained module mapping back to src/index.ts and hono", () => {
    const { sources } = assertSelfContained(built);
    assert.ok(
      sources.some((source) => source.includes(join("node_modules", "hono", "dist"))),
      "hono's ES module build is inlined",
    );
  });

  test("answers with the Hono app", () => {
    const [root, user, missing] = serve(built.outfile, [
      { path: "/" },
      { path: "/users/42" },
      { path: "/nope" },
    ]);
    assert.equal(root.status, 200);
    assert.equal(root.body, "Hello Hono");
    assert.equal(user.status, 200);
    assert.deepEqual(JSON.parse(user.body), { id: "42" });
    assert.equal(missing.status, 404);
  });
});
