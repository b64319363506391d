//! The admin HTTP API (axum): the table in `outpost_proto::api`, bearer-token auth, errors as `ApiError` JSON.
//!
//! Semantics beyond the table:
//! - Every change answers [`Published`]; a change that leaves the snapshot as it was
//!   (e.g. rolling back to the version already live) publishes no new version, so nodes
//!   get nothing to apply.
//! - `POST versions` without `bundle` reuses the newest live version's bundle (a
//!   vars-only release); the first version needs one. Without `percent` (or 100) the
//!   new version serves everyone; 1..=99 splits with the newest live version.
//! - Routes and origins belong to the function whose deploy declared them and are not
//!   versioned: rollback and promote leave them as they are. Origin names are global
//!   (a second function declaring the same one gets 409 from the snapshot check).
//! - `rollback` without a version: during a split, the stable side; otherwise the
//!   version that was live before the current one (so two rollbacks return to start).
//! - `DELETE /v1/functions/{name}` removes the function's live set, routes, origins and
//!   secrets; its versions stay (unlisted) so a re-created function continues their
//!   numbering and `name@version` never means two different bundles.
//! - `kv_namespaces` in `POST versions`: `Some` replaces the version's bindings (every
//!   namespace must exist: 404 otherwise); `None` keeps the newest live version's.
//!   Bindings belong to the version, so a rollback brings back the target version's; one
//!   that binds a since-deleted namespace fails the snapshot check (409).
//! - KV namespaces: creating or deleting one publishes a snapshot; deleting one that a
//!   live version binds is a 409 (roll back or deploy without it first), and deletes
//!   its entries. The name `namespaces` is reserved.
//! - KV entries: writes publish no snapshot; once committed, connected nodes get a
//!   `KvInvalidate`. Reads, lists and exports never return an expired entry. `PUT`
//!   takes `expiration` (absolute Unix seconds, in the future) or `expiration_ttl`
//!   (seconds, at least 1 — Workers requires 60), not both; empty query values count as
//!   absent. `DELETE` of a missing or expired key is a 404. Bulk imports are all or
//!   nothing (at most 10,000 entries, 100 MiB).
//! - Errors: 400 bad input (names, JSON, percent, routes, bundle hash/archive, KV
//!   limits), 401 token, 404 unknown function/version/bundle/secret/KV namespace/KV key,
//!   409 state conflict or a snapshot that fails its consistency check, 413 bundle over
//!   `MAX_BUNDLE_BYTES` or KV value over 25 MiB.

use std::fmt::Display;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::Path;
use axum::extract::Query;
use axum::extract::Request;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::extract::rejection::PathRejection;
use axum::extract::rejection::QueryRejection;
use axum::http::HeaderMap;
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::http::header;
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::delete;
use axum::routing::get;
use axum::routing::post;
use axum::routing::put;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use outpost_proto::BundleArchive;
use outpost_proto::BundleHash;
use outpost_proto::MAX_BUNDLE_BYTES;
use outpost_proto::api::ApiError;
use outpost_proto::api::BundleStored;
use outpost_proto::api::FunctionInfo;
use outpost_proto::api::JoinToken;
use outpost_proto::api::KV_EXPIRATION_HEADER;
use outpost_proto::api::KV_METADATA_HEADER;
use outpost_proto::api::KvBulkEntry;
use outpost_proto::api::KvKeyList;
use outpost_proto::api::KvNamespaceChanged;
use outpost_proto::api::KvNamespaceInfo;
use outpost_proto::api::KvWritten;
use outpost_proto::api::NewKvNamespace;
use outpost_proto::api::NewVersion;
use outpost_proto::api::NodeInfo;
use outpost_proto::api::Published;
use outpost_proto::api::Rollback;
use outpost_proto::api::RouteInfo;
use outpost_proto::api::SecretInfo;
use outpost_proto::api::SecretValue;
use outpost_proto::api::Status;
use outpost_proto::api::VersionInfo;
use outpost_proto::kv;
use outpost_proto::kv::MAX_VALUE_BYTES;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tracing::error;
use tracing::info;
use tracing::warn;

use crate::LOG_TARGET;
use crate::credentials;
use crate::error::ControlError;
use crate::pki::Ca;
use crate::store::KvRecord;
use crate::store::Store;
use crate::store::unix_now;
use crate::with_store;

/// Largest JSON body of any other request.
const MAX_JSON_BYTES: usize = 1024 * 1024;

/// Largest `POST /v1/kv/{ns}/bulk` body.
const MAX_KV_BULK_BYTES: usize = 100 * 1024 * 1024;

/// Most entries in one `POST /v1/kv/{ns}/bulk`.
const MAX_KV_BULK_ENTRIES: usize = 10_000;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct ApiState {
    pub(crate) store: Arc<Store>,
    pub(crate) ca: Arc<Ca>,
    /// SHA-256 (hex) of the admin token.
    pub(crate) admin_token_sha256: Arc<str>,
}

/// Every error answers as a status and an [`ApiError`] body.
impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let status = match &self {
            ControlError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ControlError::NotFound(_) => StatusCode::NOT_FOUND,
            ControlError::Conflict(_) | ControlError::Inconsistent(_) => StatusCode::CONFLICT,
            ControlError::Denied(_) => StatusCode::UNAUTHORIZED,
            ControlError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if self.is_client_error() {
            info!(target: LOG_TARGET, status = status.as_u16(), error = %self, "refused admin request");
        } else {
            error!(target: LOG_TARGET, error = %self, "admin request failed");
        }
        failure(status, self.to_string())
    }
}

fn failure(status: StatusCode, message: String) -> Response {
    (status, Json(ApiError { error: message })).into_response()
}

type ApiResult<T> = Result<Json<T>, ControlError>;

/// The admin API router (every route behind the bearer token).
pub(crate) fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route(
            "/v1/bundles/{hash}",
            put(put_bundle)
                .head(head_bundle)
                .layer(DefaultBodyLimit::max(MAX_BUNDLE_BYTES)),
        )
        .route("/v1/functions", get(list_functions))
        .route(
            "/v1/functions/{name}",
            get(get_function).delete(delete_function),
        )
        .route(
            "/v1/functions/{name}/versions",
            post(deploy).get(list_versions),
        )
        .route("/v1/functions/{name}/rollback", post(rollback))
        .route("/v1/functions/{name}/promote", post(promote))
        .route("/v1/functions/{name}/secrets", get(list_secrets))
        .route(
            "/v1/functions/{name}/secrets/{key}",
            put(put_secret).delete(delete_secret),
        )
        .route("/v1/routes", get(list_routes))
        .route("/v1/nodes", get(list_nodes))
        .route("/v1/join-tokens", post(new_join_token))
        .route(
            "/v1/kv/namespaces",
            get(list_kv_namespaces).post(create_kv_namespace),
        )
        .route("/v1/kv/namespaces/{namespace}", delete(delete_kv_namespace))
        .route("/v1/kv/{namespace}/keys", get(list_kv_keys))
        .route(
            "/v1/kv/{namespace}/values/{*key}",
            get(get_kv_value)
                .put(put_kv_value)
                .delete(delete_kv_value)
                .layer(DefaultBodyLimit::max(MAX_VALUE_BYTES)),
        )
        .route(
            "/v1/kv/{namespace}/bulk",
            post(import_kv).layer(DefaultBodyLimit::max(MAX_KV_BULK_BYTES)),
        )
        .route("/v1/kv/{namespace}/export", get(export_kv))
        .fallback(unknown_path)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_admin,
        ))
        .layer(DefaultBodyLimit::max(MAX_JSON_BYTES))
        .with_state(state)
}

/// Lets a request through only with `Authorization: Bearer <admin token>`.
async fn require_admin(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim);
    match presented {
        Some(token) if credentials::token_matches(token, &state.admin_token_sha256) => {
            next.run(request).await
        }
        _ => {
            warn!(
                target: LOG_TARGET,
                method = %request.method(),
                path = %request.uri().path(),
                "refused admin request without a valid token"
            );
            let mut response = failure(
                StatusCode::UNAUTHORIZED,
                "missing or wrong admin token (Authorization: Bearer <token>)".into(),
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

async fn unknown_path() -> Response {
    failure(StatusCode::NOT_FOUND, "no such API path".into())
}

/// Runs a store call on the blocking pool and answers its result as JSON.
async fn reply<T: Send + 'static>(
    state: &ApiState,
    call: impl FnOnce(&Store) -> Result<T, ControlError> + Send + 'static,
) -> ApiResult<T> {
    Ok(Json(with_store(&state.store, call).await?))
}

/// A request part axum could not extract, as a 400 saying which.
fn rejected(what: &str, rejection: impl Display) -> ControlError {
    ControlError::BadRequest(format!("{what}: {rejection}"))
}

/// A raw body, or a 413 saying `limit` when it exceeds the route's limit.
fn raw_body(
    body: Result<Bytes, BytesRejection>,
    limit: impl FnOnce() -> String,
) -> Result<Bytes, ControlError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ControlError::TooLarge(limit())
        } else {
            rejected("cannot read the body", rejection)
        }
    })
}

/// Parses a JSON body; an empty body means `empty` when given.
fn parse_body<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    empty: Option<T>,
) -> Result<T, ControlError> {
    let body = body.map_err(|rejection| rejected("cannot read the body", rejection))?;
    if body.iter().all(u8::is_ascii_whitespace)
        && let Some(value) = empty
    {
        return Ok(value);
    }
    serde_json::from_slice(&body)
        .map_err(|error| ControlError::BadRequest(format!("invalid JSON body: {error}")))
}

async fn status(State(state): State<ApiState>) -> ApiResult<Status> {
    reply(&state, Store::status).await
}

async fn put_bundle(
    State(state): State<ApiState>,
    Path(hash): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<BundleStored> {
    let body = raw_body(body, || {
        format!("bundles are limited to {MAX_BUNDLE_BYTES} bytes")
    })?;
    let hash =
        BundleHash::parse(&hash).map_err(|error| ControlError::BadRequest(error.to_string()))?;
    let stored = with_store(&state.store, move |store| {
        BundleArchive::verified(&hash, &body)
            .map_err(|error| ControlError::BadRequest(error.to_string()))?;
        store.put_bundle(&hash, &body)
    })
    .await?;
    if !stored.existed {
        info!(target: LOG_TARGET, hash = %stored.hash, size = stored.size, "stored bundle");
    }
    Ok(Json(stored))
}

async fn head_bundle(
    State(state): State<ApiState>,
    Path(hash): Path<String>,
) -> Result<StatusCode, ControlError> {
    let Ok(hash) = BundleHash::parse(&hash) else {
        return Ok(StatusCode::BAD_REQUEST);
    };
    let stored = with_store(&state.store, move |store| store.has_bundle(&hash)).await?;
    Ok(if stored {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    })
}

async fn list_functions(State(state): State<ApiState>) -> ApiResult<Vec<FunctionInfo>> {
    reply(&state, Store::functions).await
}

async fn get_function(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> ApiResult<FunctionInfo> {
    reply(&state, move |store| store.function(&name)).await
}

async fn delete_function(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> ApiResult<Published> {
    reply(&state, move |store| store.delete_function(&name)).await
}

async fn deploy(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Published> {
    let request: NewVersion = parse_body(body, None)?;
    reply(&state, move |store| store.deploy(&name, request)).await
}

async fn list_versions(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> ApiResult<Vec<VersionInfo>> {
    reply(&state, move |store| store.versions(&name)).await
}

async fn rollback(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Published> {
    let request: Rollback = parse_body(body, Some(Rollback::default()))?;
    reply(&state, move |store| store.rollback(&name, request.version)).await
}

async fn promote(State(state): State<ApiState>, Path(name): Path<String>) -> ApiResult<Published> {
    reply(&state, move |store| store.promote(&name)).await
}

async fn list_secrets(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> ApiResult<Vec<SecretInfo>> {
    reply(&state, move |store| store.secrets(&name)).await
}

async fn put_secret(
    State(state): State<ApiState>,
    Path((name, key)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Published> {
    let SecretValue { value } = parse_body(body, None)?;
    reply(&state, move |store| store.put_secret(&name, &key, &value)).await
}

async fn delete_secret(
    State(state): State<ApiState>,
    Path((name, key)): Path<(String, String)>,
) -> ApiResult<Published> {
    reply(&state, move |store| store.delete_secret(&name, &key)).await
}

async fn list_routes(State(state): State<ApiState>) -> ApiResult<Vec<RouteInfo>> {
    reply(&state, Store::routes).await
}

async fn list_nodes(State(state): State<ApiState>) -> ApiResult<Vec<NodeInfo>> {
    reply(&state, Store::nodes).await
}

async fn new_join_token(State(state): State<ApiState>) -> ApiResult<JoinToken> {
    let secret = credentials::new_join_secret();
    let token = credentials::join_token(&secret, state.ca.sha256());
    with_store(&state.store, move |store| store.add_join_token(&secret)).await?;
    info!(target: LOG_TARGET, "created a join token");
    Ok(Json(JoinToken { token }))
}

// ---- KV -------------------------------------------------------------------------------

/// `?prefix=&limit=&cursor=` as sent: empty values count as absent.
#[derive(Debug, Default, Deserialize)]
struct ListParams {
    prefix: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// `?expiration=&expiration_ttl=` as sent: empty values count as absent.
#[derive(Debug, Default, Deserialize)]
struct PutParams {
    expiration: Option<String>,
    expiration_ttl: Option<String>,
}

/// A whole-number query parameter; empty means absent.
fn number(name: &str, value: Option<String>) -> Result<Option<u64>, ControlError> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| {
            ControlError::BadRequest(format!(
                "`{name}` must be a whole number of seconds or keys, not {text:?}"
            ))
        }),
    }
}

fn no_key(namespace: &str, key: &str) -> ControlError {
    ControlError::NotFound(format!("no key {key:?} in KV namespace {namespace:?}"))
}

async fn list_kv_namespaces(State(state): State<ApiState>) -> ApiResult<Vec<KvNamespaceInfo>> {
    reply(&state, Store::kv_namespaces).await
}

async fn create_kv_namespace(
    State(state): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<KvNamespaceChanged> {
    let NewKvNamespace { name } = parse_body(body, None)?;
    reply(&state, move |store| store.create_kv_namespace(&name)).await
}

async fn delete_kv_namespace(
    State(state): State<ApiState>,
    Path(namespace): Path<String>,
) -> ApiResult<KvNamespaceChanged> {
    reply(&state, move |store| store.delete_kv_namespace(&namespace)).await
}

async fn list_kv_keys(
    State(state): State<ApiState>,
    Path(namespace): Path<String>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> ApiResult<KvKeyList> {
    let Query(params) = params.map_err(|rejection| rejected("invalid query", rejection))?;
    let limit = kv::list_limit(number("limit", params.limit)?)?;
    let prefix = params.prefix.unwrap_or_default();
    let cursor = params.cursor.filter(|cursor| !cursor.is_empty());
    reply(&state, move |store| {
        store.kv_list(&namespace, &prefix, limit, cursor.as_deref(), unix_now())
    })
    .await
}

async fn get_kv_value(
    State(state): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(HeaderMap, Vec<u8>), ControlError> {
    let Path((namespace, key)) = path.map_err(|rejection| rejected("invalid path", rejection))?;
    let record = with_store(&state.store, move |store| {
        store
            .kv_get(&namespace, &key, unix_now())?
            .ok_or_else(|| no_key(&namespace, &key))
    })
    .await?;
    let mut headers = HeaderMap::new();
    if let Some(metadata) = &record.metadata
        && let Ok(value) = HeaderValue::from_str(&kv::ascii_json(metadata))
    {
        headers.insert(KV_METADATA_HEADER, value);
    }
    if let Some(expiration) = record.expiration {
        headers.insert(KV_EXPIRATION_HEADER, HeaderValue::from(expiration));
    }
    // A byte body is `application/octet-stream`.
    Ok((headers, record.value))
}

async fn put_kv_value(
    State(state): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
    params: Result<Query<PutParams>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<KvWritten> {
    let Path((namespace, key)) = path.map_err(|rejection| rejected("invalid path", rejection))?;
    let Query(params) = params.map_err(|rejection| rejected("invalid query", rejection))?;
    let value = raw_body(body, || {
        format!("KV value exceeds 25 MiB ({MAX_VALUE_BYTES} bytes)")
    })?;
    let metadata = match headers.get(KV_METADATA_HEADER) {
        Some(header) => {
            let text = std::str::from_utf8(header.as_bytes()).map_err(|_| {
                ControlError::BadRequest(format!("{KV_METADATA_HEADER} is not UTF-8"))
            })?;
            Some(kv::parse_metadata(text)?)
        }
        None => None,
    };
    let expiration = kv::resolve_expiration(
        number("expiration", params.expiration)?,
        number("expiration_ttl", params.expiration_ttl)?,
        unix_now(),
    )?;
    let record = KvRecord {
        key,
        value: Vec::from(value),
        expiration,
        metadata,
    };
    reply(&state, move |store| {
        store.kv_put(&namespace, record)?;
        Ok(KvWritten { namespace, keys: 1 })
    })
    .await
}

async fn delete_kv_value(
    State(state): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<KvWritten> {
    let Path((namespace, key)) = path.map_err(|rejection| rejected("invalid path", rejection))?;
    reply(&state, move |store| {
        if !store.kv_delete(&namespace, &key, unix_now())? {
            return Err(no_key(&namespace, &key));
        }
        Ok(KvWritten { namespace, keys: 1 })
    })
    .await
}

async fn import_kv(
    State(state): State<ApiState>,
    Path(namespace): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<KvWritten> {
    let body = raw_body(body, || {
        format!("KV bulk imports are limited to {MAX_KV_BULK_BYTES} bytes; split the file")
    })?;
    let entries: Vec<KvBulkEntry> = parse_body(Ok(body), None)?;
    if entries.len() > MAX_KV_BULK_ENTRIES {
        return Err(ControlError::BadRequest(format!(
            "a KV bulk import takes at most {MAX_KV_BULK_ENTRIES} entries, not {}",
            entries.len()
        )));
    }
    let now = unix_now();
    let records = entries
        .into_iter()
        .enumerate()
        .map(|(index, entry)| {
            let key = entry.key.clone();
            bulk_record(entry, now).map_err(|error| {
                let context =
                    |message: String| format!("entry #{} (key {key:?}): {message}", index + 1);
                match error {
                    ControlError::TooLarge(message) => ControlError::TooLarge(context(message)),
                    ControlError::BadRequest(message) => ControlError::BadRequest(context(message)),
                    other => other,
                }
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    reply(&state, move |store| {
        let keys = store.kv_import(&namespace, &records)?;
        Ok(KvWritten { namespace, keys })
    })
    .await
}
/// A bulk entry checked against the limits, its value decoded, its expiration absolute.
fn bulk_record(entry: KvBulkEntry, now: u64) -> Result<KvRecord, ControlError> {
    kv::check_key(&entry.key)?;
    let value = if entry.base64 {
        BASE64
            .decode(entry.value.as_bytes())
            .map_err(|error| ControlError::BadRequest(format!("value is not base64: {error}")))?
    } else {
        entry.value.into_bytes()
    };
    kv::check_value_size(value.len())?;
    if let Some(metadata) = &entry.metadata {
        kv::check_metadata(metadata)?;
    }
    Ok(KvRecord {
        key: entry.key,
        value,
        expiration: kv::resolve_expiration(entry.expiration, entry.expiration_ttl, now)?,
        metadata: entry.metadata,
    })
}

async fn export_kv(
    State(state): State<ApiState>,
    Path(namespace): Path<String>,
) -> ApiResult<Vec<KvBulkEntry>> {
    let records = with_store(&state.store, move |store| {
        store.kv_export(&namespace, unix_now())
    })
    .await?;
    let entries = records
        .into_iter()
        .map(|record| {
            let (value, base64) = match String::from_utf8(record.value) {
                Ok(text) => (text, false),
                Err(error) => (BASE64.encode(error.as_bytes()), true),
            };
            KvBulkEntry {
                key: record.key,
                value,
                base64,
                expiration: record.expiration,
                expiration_ttl: None,
                metadata: record.metadata,
            }
        })
        .collect();
    Ok(Json(entries))
}
