//! The admin HTTP API (axum): the table in `outpost_proto::api`, bearer-token auth, errors as `ApiError` JSON.
//!
//! Semantics beyond the table:
//! - Every change answers [`Published`](outpost_proto::api::Published); a change that
//!   leaves the snapshot as it was (e.g. rolling back to the version already live)
//!   publishes no new version, so nodes get nothing to apply.
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
use outpost_proto::api::Rollback;
use outpost_proto::api::SecretValue;
use outpost_proto::kv;
use outpost_proto::kv::KvLimitError;
use outpost_proto::kv::MAX_VALUE_BYTES;
use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::error;
use tracing::info;
use tracing::warn;

use crate::LOG_TARGET;
use crate::credentials;
use crate::error::ControlError;
use crate::pki::Ca;
use crate::run_blocking;
use crate::store::KvRecord;
use crate::store::Store;
use crate::store::unix_now;

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

/// An error answered as a status and an [`ApiError`] body.
struct Failure(ControlError);

impl From<ControlError> for Failure {
    fn from(error: ControlError) -> Self {
        Failure(error)
    }
}

impl From<KvLimitError> for Failure {
    fn from(error: KvLimitError) -> Self {
        Failure(error.into())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            ControlError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ControlError::NotFound(_) => StatusCode::NOT_FOUND,
            ControlError::Conflict(_) | ControlError::Inconsistent(_) => StatusCode::CONFLICT,
            ControlError::Denied(_) => StatusCode::UNAUTHORIZED,
            ControlError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if self.0.is_client_error() {
            info!(target: LOG_TARGET, status = status.as_u16(), error = %self.0, "refused admin request");
        } else {
            error!(target: LOG_TARGET, error = %self.0, "admin request failed");
        }
        failure(status, self.0.to_string())
    }
}

fn failure(status: StatusCode, message: String) -> Response {
    (status, Json(ApiError { error: message })).into_response()
}

type ApiResult<T> = Result<Json<T>, Failure>;

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

/// Runs a store call on the blocking pool.
async fn with_store<T: Send + 'static>(
    state: &ApiState,
    call: impl FnOnce(&Store) -> Result<T, ControlError> + Send + 'static,
) -> Result<T, Failure> {
    let store = state.store.clone();
    Ok(run_blocking(move || call(&store)).await?)
}

fn json<T: Serialize>(value: T) -> ApiResult<T> {
    Ok(Json(value))
}

/// Parses a JSON body; an empty body means `empty` when given.
fn parse_body<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    empty: Option<T>,
) -> Result<T, Failure> {
    let body = body.map_err(reading_failed)?;
    if body.iter().all(u8::is_ascii_whitespace)
        && let Some(value) = empty
    {
        return Ok(value);
    }
    serde_json::from_slice(&body).map_err(|error| {
        Failure(ControlError::BadRequest(format!(
            "invalid JSON body: {error}"
        )))
    })
}

fn reading_failed(rejection: BytesRejection) -> Failure {
    Failure(ControlError::BadRequest(format!(
        "cannot read the body: {}",
        rejection.body_text()
    )))
}

fn parse_hash(text: &str) -> Result<BundleHash, Failure> {
    BundleHash::parse(text).map_err(|error| Failure(ControlError::BadRequest(error.to_string())))
}

async fn status(State(state): State<ApiState>) -> ApiResult<outpost_proto::api::Status> {
    json(with_store(&state, Store::status).await?)
}

async fn put_bundle(
    State(state): State<ApiState>,
    Path(hash): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return failure(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("bundles are limited to {MAX_BUNDLE_BYTES} bytes"),
            );
        }
        Err(rejection) => return reading_failed(rejection).into_response(),
    };
    let stored = async {
        let hash = parse_hash(&hash)?;
        let stored = with_store(&state, move |store| {
            BundleArchive::verified(&hash, &body)
                .map_err(|error| ControlError::BadRequest(error.to_string()))?;
            store.put_bundle(&hash, &body)
        })
        .await?;
        if !stored.existed {
            info!(target: LOG_TARGET, hash = %stored.hash, size = stored.size, "stored bundle");
        }
        json(stored)
    }
    .await;
    stored.into_response()
}

async fn head_bundle(State(state): State<ApiState>, Path(hash): Path<String>) -> Response {
    let Ok(hash) = BundleHash::parse(&hash) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    match with_store(&state, move |store| store.has_bundle(&hash)).await {
        Ok(true) => StatusCode::OK.into_response(),
        Ok(false) => StatusCode::NOT_FOUND.into_response(),
        Err(failure) => failure.into_response(),
    }
}

async fn list_functions(
    State(state): State<ApiState>,
) -> ApiResult<Vec<outpost_proto::api::FunctionInfo>> {
    json(with_store(&state, Store::functions).await?)
}

async fn get_function(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> ApiResult<outpost_proto::api::FunctionInfo> {
    json(with_store(&state, move |store| store.function(&name)).await?)
}

async fn delete_function(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> ApiResult<outpost_proto::api::Published> {
    json(with_store(&state, move |store| store.delete_function(&name)).await?)
}

async fn deploy(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<outpost_proto::api::Published> {
    let request: NewVersion = parse_body(body, None)?;
    json(with_store(&state, move |store| store.deploy(&name, request)).await?)
}

async fn list_versions(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> ApiResult<Vec<outpost_proto::api::VersionInfo>> {
    json(with_store(&state, move |store| store.versions(&name)).await?)
}

async fn rollback(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<outpost_proto::api::Published> {
    let request: Rollback = parse_body(body, Some(Rollback::default()))?;
    json(with_store(&state, move |store| store.rollback(&name, request.version)).await?)
}

async fn promote(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> ApiResult<outpost_proto::api::Published> {
    json(with_store(&state, move |store| store.promote(&name)).await?)
}

async fn list_secrets(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> ApiResult<Vec<outpost_proto::api::SecretInfo>> {
    json(with_store(&state, move |store| store.secrets(&name)).await?)
}

async fn put_secret(
    State(state): State<ApiState>,
    Path((name, key)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<outpost_proto::api::Published> {
    let SecretValue { value } = parse_body(body, None)?;
    json(with_store(&state, move |store| store.put_secret(&name, &key, &value)).await?)
}

async fn delete_secret(
    State(state): State<ApiState>,
    Path((name, key)): Path<(String, String)>,
) -> ApiResult<outpost_proto::api::Published> {
    json(with_store(&state, move |store| store.delete_secret(&name, &key)).await?)
}

async fn list_routes(
    State(state): State<ApiState>,
) -> ApiResult<Vec<outpost_proto::api::RouteInfo>> {
    json(with_store(&state, Store::routes).await?)
}

async fn list_nodes(State(state): State<ApiState>) -> ApiResult<Vec<outpost_proto::api::NodeInfo>> {
    json(with_store(&state, Store::nodes).await?)
}

async fn new_join_token(State(state): State<ApiState>) -> ApiResult<JoinToken> {
    let secret = credentials::new_join_secret();
    let token = credentials::join_token(&secret, state.ca.sha256());
    with_store(&state, move |store| store.add_join_token(&secret)).await?;
    info!(target: LOG_TARGET, "created a join token");
    json(JoinToken { token })
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

fn path_failed(rejection: PathRejection) -> Failure {
    Failure(ControlError::BadRequest(format!(
        "invalid path: {}",
        rejection.body_text()
    )))
}

fn query_failed(rejection: QueryRejection) -> Failure {
    Failure(ControlError::BadRequest(format!(
        "invalid query: {}",
        rejection.body_text()
    )))
}

/// A whole-number query parameter; empty means absent.
fn number(name: &str, value: Option<String>) -> Result<Option<u64>, Failure> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| {
            Failure(ControlError::BadRequest(format!(
                "`{name}` must be a whole number of seconds or keys, not {text:?}"
            )))
        }),
    }
}

fn no_key(namespace: &str, key: &str) -> Failure {
    Failure(ControlError::NotFound(format!(
        "no key {key:?} in KV namespace {namespace:?}"
    )))
}

async fn list_kv_namespaces(State(state): State<ApiState>) -> ApiResult<Vec<KvNamespaceInfo>> {
    json(with_store(&state, Store::kv_namespaces).await?)
}

async fn create_kv_namespace(
    State(state): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<KvNamespaceChanged> {
    let NewKvNamespace { name } = parse_body(body, None)?;
    json(with_store(&state, move |store| store.create_kv_namespace(&name)).await?)
}

async fn delete_kv_namespace(
    State(state): State<ApiState>,
    Path(namespace): Path<String>,
) -> ApiResult<KvNamespaceChanged> {
    json(with_store(&state, move |store| store.delete_kv_namespace(&namespace)).await?)
}

async fn list_kv_keys(
    State(state): State<ApiState>,
    Path(namespace): Path<String>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> ApiResult<KvKeyList> {
    let Query(params) = params.map_err(query_failed)?;
    let limit = kv::list_limit(number("limit", params.limit)?)?;
    let prefix = params.prefix.unwrap_or_default();
    let cursor = params.cursor.filter(|cursor| !cursor.is_empty());
    json(
        with_store(&state, move |store| {
            store.kv_list(&namespace, &prefix, limit, cursor.as_deref(), unix_now())
        })
        .await?,
    )
}

async fn get_kv_value(
    State(state): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let found = async {
        let Path((namespace, key)) = path.map_err(path_failed)?;
        let (ns, k) = (namespace.clone(), key.clone());
        with_store(&state, move |store| store.kv_get(&ns, &k, unix_now()))
            .await?
            .ok_or_else(|| no_key(&namespace, &key))
    }
    .await;
    let record = match found {
        Ok(record) => record,
        Err(failure) => return failure.into_response(),
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(metadata) = &record.metadata
        && let Ok(value) = HeaderValue::from_str(&kv::ascii_json(metadata))
    {
        headers.insert(KV_METADATA_HEADER, value);
    }
    if let Some(expiration) = record.expiration {
        headers.insert(KV_EXPIRATION_HEADER, HeaderValue::from(expiration));
    }
    (headers, record.value).into_response()
}

async fn put_kv_value(
    State(state): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
    params: Result<Query<PutParams>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<KvWritten> {
    let Path((namespace, key)) = path.map_err(path_failed)?;
    let Query(params) = params.map_err(query_failed)?;
    let value = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(Failure(ControlError::TooLarge(format!(
                "KV value exceeds 25 MiB ({MAX_VALUE_BYTES} bytes)"
            ))));
        }
        Err(rejection) => return Err(reading_failed(rejection)),
    };
    let metadata = match headers.get(KV_METADATA_HEADER) {
        Some(header) => {
            let text = std::str::from_utf8(header.as_bytes()).map_err(|_| {
                Failure(ControlError::BadRequest(format!(
                    "{KV_METADATA_HEADER} is not UTF-8"
                )))
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
    let ns = namespace.clone();
    with_store(&state, move |store| store.kv_put(&ns, record)).await?;
    json(KvWritten { namespace, keys: 1 })
}

async fn delete_kv_value(
    State(state): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<KvWritten> {
    let Path((namespace, key)) = path.map_err(path_failed)?;
    let (ns, k) = (namespace.clone(), key.clone());
    let deleted = with_store(&state, move |store| store.kv_delete(&ns, &k, unix_now())).await?;
    if !deleted {
        return Err(no_key(&namespace, &key));
    }
    json(KvWritten { namespace, keys: 1 })
}

async fn import_kv(
    State(state): State<ApiState>,
    Path(namespace): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<KvWritten> {
    let body = match body {
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(Failure(ControlError::TooLarge(format!(
                "KV bulk imports are limited to {MAX_KV_BULK_BYTES} bytes; split the file"
            ))));
        }
        body => body,
    };
    let entries: Vec<KvBulkEntry> = parse_body(body, None)?;
    if entries.len() > MAX_KV_BULK_ENTRIES {
        return Err(Failure(ControlError::BadRequest(format!(
            "a KV bulk import takes at most {MAX_KV_BULK_ENTRIES} entries, not {}",
            entries.len()
        ))));
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
                Failure(match error {
                    ControlError::TooLarge(message) => ControlError::TooLarge(context(message)),
                    ControlError::BadRequest(message) => ControlError::BadRequest(context(message)),
                    other => other,
                })
            })
        })
        .collect::<Result<Vec<_>, Failure>>()?;
    let ns = namespace.clone();
    let keys = with_store(&state, move |store| store.kv_import(&ns, &records)).await?;
    json(KvWritten { namespace, keys })
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
    let records = with_store(&state, move |store| store.kv_export(&namespace, unix_now())).await?;
    json(
        records
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
            .collect(),
    )
}
