//! `outpost init <name>`: scaffolds a TypeScript project — handler, `outpost.toml`, tsconfig, and a test that runs the handler.

use std::path::Path;

use crate::api::CliError;

const HANDLER: &str = r#"// The function's handler (Workers module syntax). `outpost dev .` serves it and reloads on save.

/** `env`: the [vars] of outpost.toml and the function's secrets. */
export interface Env {
  GREETING: string;
}

/** What the runtime passes as the third argument. */
export interface ExecutionContext {
  waitUntil(promise: Promise<unknown>): void;
  passThroughOnException(): void;
}

export default {
  async fetch(request: Request, env: Env, _ctx: ExecutionContext): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/") {
      return new Response(`${env.GREETING} from {{name}}\n`);
    }
    return Response.json({ error: "not found", path: url.pathname }, { status: 404 });
  },
};
"#;

const MANIFEST: &str = r#"# {{name}}: `outpost dev .` to run locally, `outpost deploy .` to ship to every node.
name = "{{name}}"
main = "src/index.ts"

[vars]
GREETING = "Hello"

[[routes]]
path = "/*"
function = "{{name}}"
"#;

const TSCONFIG: &str = r#"{
  "compilerOptions": {
    "target": "ES2022",
    "module": "ESNext",
    "moduleResolution": "bundler",
    "lib": ["ES2022", "WebWorker"],
    "types": [],
    "strict": true,
    "isolatedModules": true,
    "skipLibCheck": true,
    "noEmit": true
  },
  "include": ["src", "test"]
}
"#;

const PACKAGE: &str = r#"{
  "name": "{{name}}",
  "private": true,
  "type": "module",
  "scripts": {
    "test": "node --test test/",
    "typecheck": "tsc --noEmit"
  },
  "devDependencies": {
    "esbuild": "0.28.2",
    "typescript": "7.0.2"
  }
}
"#;

const TEST: &str = r#"// Runs the handler the way the runtime does: bundled by esbuild, then called with a Request.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as esbuild from "esbuild";

async function loadHandler() {
  const result = await esbuild.build({
    entryPoints: [new URL("../src/index.ts", import.meta.url).pathname],
    bundle: true,
    format: "esm",
    platform: "neutral",
    write: false,
  });
  const code = result.outputFiles[0].text;
  return (await import(`data:text/javascript,${encodeURIComponent(code)}`)).default;
}

const ctx = { waitUntil() {}, passThroughOnException() {} };

test("greets on /", async () => {
  const handler = await loadHandler();
  const response = await handler.fetch(new Request("http://localhost/"), { GREETING: "Hi" }, ctx);
  assert.equal(response.status, 200);
  assert.equal(await response.text(), "Hi from {{name}}\n");
});

test("answers 404 elsewhere", async () => {
  const handler = await loadHandler();
  const response = await handler.fetch(new Request("http://localhost/nope"), { GREETING: "Hi" }, ctx);
  assert.equal(response.status, 404);
});
"#;

/// Creates `dir` with a project named after it.
pub fn init(dir: &Path) -> Result<(), CliError> {
    let name = dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.is_empty()
        || name.len() > 63
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(CliError::Input(format!(
            "{name:?} is not a function name (letters, digits, '-' and '_', at most 63)"
        )));
    }
    if dir.exists() {
        return Err(CliError::Input(format!("{} already exists", dir.display())));
    }
    let files = [
        ("outpost.toml", MANIFEST),
        ("src/index.ts", HANDLER),
        ("tsconfig.json", TSCONFIG),
        ("package.json", PACKAGE),
        ("test/handler.test.mjs", TEST),
        (".gitignore", "node_modules/\n.outpost/\n"),
    ];
    for (path, template) in files {
        let path = dir.join(path);
        let write = || -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, template.replace("{{name}}", &name))
        };
        write().map_err(|error| CliError::Input(format!("writing {}: {error}", path.display())))?;
    }
    Ok(())
}
