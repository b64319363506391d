//! Takes the startup snapshot: deno's web extensions plus Outpost's runtime JS, evaluated once at build time.

use std::path::PathBuf;

#[path = "src/exchange.rs"]
#[expect(
    dead_code,
    reason = "shared with the engine; the build script uses only what the ops need"
)]
mod exchange;
#[path = "src/ext/mod.rs"]
#[expect(
    dead_code,
    reason = "shared with the engine; the build script only registers the ops"
)]
mod ext;
#[path = "src/kv.rs"]
#[expect(
    dead_code,
    reason = "shared with the engine; the build script uses only what the ops need"
)]
mod kv;

fn main() {
    let output = match deno_core::snapshot::create_snapshot(
        deno_core::snapshot::CreateSnapshotOptions {
            cargo_manifest_dir: env!("CARGO_MANIFEST_DIR"),
            startup_snapshot: None,
            skip_op_registration: false,
            extensions: ext::extensions(),
            extension_transpiler: None,
            // Compile the request path into the snapshot (see `warmup` in 00_runtime.js).
            with_runtime_cb: Some(Box::new(|runtime| {
                if let Err(error) = runtime.execute_script(
                    "ext:outpost/warmup.js",
                    r#"globalThis[Symbol.for("outpost.internal")].warmup();"#,
                ) {
                    panic!("warming up the startup snapshot failed: {error}");
                }
            })),
        },
        None,
    ) {
        Ok(output) => output,
        Err(error) => panic!("taking the startup snapshot failed: {error}"),
    };
    let Some(out_dir) = std::env::var_os("OUT_DIR") else {
        panic!("cargo did not set OUT_DIR");
    };
    let path = PathBuf::from(out_dir).join("OUTPOST_SNAPSHOT.bin");
    if let Err(error) = std::fs::write(&path, &output.output) {
        panic!("writing {}: {error}", path.display());
    }
    for file in output.files_loaded_during_snapshot {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    println!("cargo:rerun-if-changed=src/ext");
    println!("cargo:rerun-if-changed=src/exchange.rs");
    println!("cargo:rerun-if-changed=src/kv.rs");
}
