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
//! - Errors: 400 bad input (names, JSON, percent, routes, bundle hash/archive), 401 token,
//!   404 unknown function/version/bundle/secret, 409 state conflict or a snapshot that
//!   fails its consistency check, 413 bundle over `MAX_BUNDLE_BYTES`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::Path;
use axum::extract::Request;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::http::header;
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::get;
use axum::routing::post;
use axum::routing::put;
use outpost_proto::BundleArchive;
use outpost_proto::BundleHash;
use outpost_proto::MAX_BUNDLE_BYTES;
use outpost_proto::api::ApiError;
use outpost_proto::api::JoinToken;
use outpost_proto::api::NewVersion;
use outpost_proto::api::Rollback;
use outpost_proto::api::SecretValue;
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
use crate::store::Store;

/// Largest JSON body of any other request.
const MAX_JSON_BYTES: usize = 1024 * 1024;

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

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            ControlError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ControlError::NotFound(_) => StatusCode::NOT_FOUND,
            ControlError::Conflict(_) | ControlError::Inconsistent(_) => StatusCode::CONFLICT,
            ControlError::Denied(_) => StatusCode::UNAUTHORIZED,
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
