//! Link settings for the node's binaries and tests.

fn main() {
    // pingora (brotli 3) and deno_fetch (brotli 9) both pull in a brotli decompressor that
    // exports the same C API symbols (BrotliDecoder*). Nothing here calls them through C;
    // Rust code calls each crate directly, so either definition may win.
    println!("cargo:rustc-link-arg=-Wl,--allow-multiple-definition");
}
