//! `outpost kv`: create, list and delete KV namespaces, and put, get, delete, list, import and export their entries through control's admin API.

use std::io::Read;
use std::io::Write;
use std::path::PathBuf;

use outpost_proto::api::KV_EXPIRATION_HEADER;
use outpost_proto::api::KV_METADATA_HEADER;
use outpost_proto::api::KvBulkEntry;
use outpost_proto::api::KvKeyList;
use outpost_proto::api::KvNamespaceChanged;
use outpost_proto::api::KvNamespaceInfo;
use outpost_proto::api::KvWritten;
use outpost_proto::api::NewKvNamespace;
use outpost_proto::kv;
use reqwest::Method;
use reqwest::header::HeaderMap;

use crate::api::CliError;
use crate::api::Control;
use crate::print;

/// `outpost kv ...`.
#[derive(Debug, clap::Subcommand)]
pub enum KvCommand {
    /// Create, list or delete namespaces.
    Namespace {
        #[command(subcommand)]
        command: NamespaceCommand,
    },
    /// Store a value: the argument, the file given with --path, or else stdin.
    Put(PutArgs),
    /// Print a value's raw bytes to stdout (exit 1 if the key is missing or expired).
    Get {
        /// The namespace.
        namespace: String,
        /// The key.
        key: String,
    },
    /// Delete a key.
    Delete {
        /// The namespace.
        namespace: String,
        /// The key.
        key: String,
    },
    /// List keys in byte order: every page, or one page of --limit keys.
    List {
        /// The namespace.
        namespace: String,
        /// Only keys starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// One page of at most this many keys (1 to 1000), instead of every key.
        #[arg(long)]
        limit: Option<u32>,
        /// Continue after a previous page (its `cursor`).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Import entries from a JSON file, all or nothing:
    /// `[{"key", "value", "base64"?, "expiration"?, "expiration_ttl"?, "metadata"?}]`.
    Import {
        /// The namespace.
        namespace: String,
        /// The JSON file (`outpost kv export` writes this format).
        file: PathBuf,
    },
    /// Print every live entry as JSON, in the import format (binary values as base64).
    Export {
        /// The namespace.
        namespace: String,
    },
}

/// `outpost kv namespace ...`.
#[derive(Debug, clap::Subcommand)]
pub enum NamespaceCommand {
    /// Create a namespace (1 to 63 letters, digits, `_` or `-`).
    Create {
        /// Its name.
        name: String,
    },
    /// List namespaces and the functions binding them.
    List,
    /// Delete a namespace and every entry in it (refused while a live version binds it).
    Delete {
        /// Its name.
        name: String,
    },
}

/// `outpost kv put` arguments.
#[derive(Debug, clap::Args)]
pub struct PutArgs {
    /// The namespace.
    namespace: String,
    /// The key.
    key: String,
    /// The value (without it and --path, stdin is read).
    value: Option<String>,
    /// Read the value from this file.
    #[arg(long, conflicts_with = "value")]
    path: Option<PathBuf>,
    /// Expire this many seconds from now (at least 1).
    #[arg(long, conflicts_with = "expiration")]
    ttl: Option<u64>,
    /// Expire at this time, Unix seconds.
    #[arg(long)]
    expiration: Option<u64>,
    /// JSON metadata stored with the value (at most 1024 bytes).
    #[arg(long)]
    metadata: Option<String>,
}

/// Runs an `outpost kv` command.
pub async fn kv(control: &Control, command: KvCommand, json: bool) -> Result<(), CliError> {
    match command {
        KvCommand::Namespace { command } => namespace(control, command, json).await,
        KvCommand::Put(args) => put(control, args, json).await,
        KvCommand::Get { namespace, key } => get(control, &namespace, &key, json).await,
        KvCommand::Delete { namespace, key } => {
            kv::check_key(&key).map_err(input)?;
            let written: KvWritten = control.delete(&value_path(&namespace, &key)).await?;
            print(json, &written, || {
                format!("deleted {key:?} from {namespace}\n")
            });
            Ok(())
        }
        KvCommand::List {
            namespace,
            prefix,
            limit,
            cursor,
        } => list(control, &namespace, prefix, limit, cursor, json).await,
        KvCommand::Import { namespace, file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|error| CliError::Input(format!("{}: {error}", file.display())))?;
            let entries: Vec<KvBulkEntry> = serde_json::from_str(&text).map_err(|error| {
                CliError::Input(format!(
                    "{}: not a JSON array of {{\"key\", \"value\", ...}} entries: {error}",
                    file.display()
                ))
            })?;
            let written: KvWritten = control
                .call(
                    Method::POST,
                    &format!("/v1/kv/{}/bulk", encode(&namespace)),
                    &entries,
                )
                .await?;
            print(json, &written, || {
                format!("imported {} entries into {namespace}\n", written.keys)
            });
            Ok(())
        }
        KvCommand::Export { namespace } => {
            let entries: Vec<KvBulkEntry> = control
                .get(&format!("/v1/kv/{}/export", encode(&namespace)))
                .await?;
            // The export is JSON whether or not --json is given: it is the import format.
            print(true, &entries, String::new);
            Ok(())
        }
    }
}

async fn namespace(
    control: &Control,
    command: NamespaceCommand,
    json: bool,
) -> Result<(), CliError> {
    match command {
        NamespaceCommand::Create { name } => {
            let changed: KvNamespaceChanged = control
                .call(
                    Method::POST,
                    "/v1/kv/namespaces",
                    &NewKvNamespace { name: name.clone() },
                )
                .await?;
            print(json, &changed, || {
                format!(
                    "created KV namespace {name} (snapshot {})\n",
                    changed.snapshot_version
                )
            });
        }
        NamespaceCommand::List => {
            let namespaces: Vec<KvNamespaceInfo> = control.get("/v1/kv/namespaces").await?;
            print(json, &namespaces, || {
                let mut out = format!("{:<32} {}\n", "NAME", "BOUND BY");
                for namespace in &namespaces {
                    let bound = if namespace.bound_by.is_empty() {
                        "-".to_owned()
                    } else {
                        namespace.bound_by.join(", ")
                    };
                    out += &format!("{:<32} {bound}\n", namespace.name);
                }
                out
            });
        }
        NamespaceCommand::Delete { name } => {
            let changed: KvNamespaceChanged = control
                .delete(&format!("/v1/kv/namespaces/{}", encode(&name)))
                .await?;
            print(json, &changed, || {
                format!(
                    "deleted KV namespace {name} and its entries (snapshot {})\n",
                    changed.snapshot_version
                )
            });
        }
    }
    Ok(())
}

async fn put(control: &Control, args: PutArgs, json: bool) -> Result<(), CliError> {
    kv::check_key(&args.key).map_err(input)?;
    let mut headers = Vec::new();
    if let Some(text) = &args.metadata {
        let metadata = kv::parse_metadata(text).map_err(input)?;
        headers.push((KV_METADATA_HEADER, kv::ascii_json(&metadata)));
    }
    let value = match (args.value, &args.path) {
        (Some(value), _) => value.into_bytes(),
        (None, Some(path)) => std::fs::read(path)
            .map_err(|error| CliError::Input(format!("{}: {error}", path.display())))?,
        (None, None) => {
            let mut bytes = Vec::new();
            std::io::stdin().read_to_end(&mut bytes).map_err(|error| {
                CliError::Input(format!("reading the value from stdin: {error}"))
            })?;
            bytes
        }
    };
    kv::check_value_size(value.len()).map_err(input)?;
    let mut path = value_path(&args.namespace, &args.key);
    if let Some(ttl) = args.ttl {
        path += &format!("?expiration_ttl={ttl}");
    } else if let Some(expiration) = args.expiration {
        path += &format!("?expiration={expiration}");
    }
    let size = value.len();
    let written: KvWritten = control
        .put_bytes_with_headers(&path, value, &headers)
        .await?;
    print(json, &written, || {
        format!(
            "stored {:?} in {} ({size} bytes)\n",
            args.key, args.namespace
        )
    });
    Ok(())
}

async fn get(control: &Control, namespace: &str, key: &str, json: bool) -> Result<(), CliError> {
    kv::check_key(key).map_err(input)?;
    let (headers, value) = control.get_bytes(&value_path(namespace, key)).await?;
    if json {
        let (text, base64) = match String::from_utf8(value) {
            Ok(text) => (text, false),
            Err(error) => (to_base64(error.as_bytes()), true),
        };
        // The entry in the import format.
        let entry = KvBulkEntry {
            key: key.to_owned(),
            value: text,
            base64,
            expiration: expiration(&headers),
            expiration_ttl: None,
            metadata: metadata(&headers),
        };
        print(true, &entry, String::new);
        return Ok(());
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&value)
        .and_then(|()| stdout.flush())
        .map_err(|error| CliError::Input(format!("writing the value to stdout: {error}")))
}

async fn list(
    control: &Control,
    namespace: &str,
    prefix: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
    json: bool,
) -> Result<(), CliError> {
    if let Some(limit) = limit {
        kv::list_limit(Some(u64::from(limit))).map_err(input)?;
    }
    let mut keys = Vec::new();
    let mut cursor = cursor;
    let last = loop {
        let mut path = format!(
            "/v1/kv/{}/keys?prefix={}",
            encode(namespace),
            encode(prefix.as_deref().unwrap_or(""))
        );
        if let Some(limit) = limit {
            path += &format!("&limit={limit}");
        }
        if let Some(cursor) = &cursor {
            path += &format!("&cursor={}", encode(cursor));
        }
        let page: KvKeyList = control.get(&path).await?;
        keys.extend(page.keys);
        // With --limit, one page; without, every page.
        if limit.is_some() || page.list_complete {
            break KvKeyList {
                keys: std::mem::take(&mut keys),
                list_complete: page.list_complete,
                cursor: page.cursor,
            };
        }
        cursor = page.cursor;
        if cursor.is_none() {
            break KvKeyList {
                keys: std::mem::take(&mut keys),
                list_complete: true,
                cursor: None,
            };
        }
    };
    print(json, &last, || {
        let mut out = String::new();
        for key in &last.keys {
            out += &key.name;
            if let Some(expiration) = key.expiration {
                out += &format!("\texpires {expiration}");
            }
            if let Some(metadata) = &key.metadata {
                out += &format!("\tmetadata {metadata}");
            }
            out.push('\n');
        }
        if let Some(cursor) = &last.cursor {
            out += &format!("(more keys: --cursor {cursor})\n");
        }
        out
    });
    Ok(())
}

/// `/v1/kv/{namespace}/values/{key}`, both percent-encoded.
fn value_path(namespace: &str, key: &str) -> String {
    format!("/v1/kv/{}/values/{}", encode(namespace), encode(key))
}

/// Everything but RFC 3986's unreserved characters is percent-encoded, so a key (`/`
/// included) stays one path segment or query value.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, SEGMENT).to_string()
}

fn expiration(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(KV_EXPIRATION_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse().ok())
}

fn metadata(headers: &HeaderMap) -> Option<serde_json::Value> {
    headers
        .get(KV_METADATA_HEADER)
        .and_then(|value| serde_json::from_slice(value.as_bytes()).ok())
}

/// Standard, padded base64 (what `outpost kv export` and import use).
fn to_base64(bytes: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes)
}

fn input(error: kv::KvLimitError) -> CliError {
    CliError::Input(error.to_string())
}
