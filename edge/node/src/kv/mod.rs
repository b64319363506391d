//! KV storage behind handlers' `env.BINDING`: the local SQLite store (`outpost dev`, nodes without control).

mod local;

pub use local::LocalKv;
