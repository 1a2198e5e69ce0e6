//! The OCS end-to-end encryption API for folders: the encrypted flag, locks with counters, and metadata,
//! with the status codes a real Nextcloud server answers (see SERVER-BEHAVIOUR.md of the interop notes).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::Router;
use serde_json::json;

use super::error::ApiError;
use super::locking::{self, MetadataWrite};
use super::ocs::{body_parameters, check_api_version, AuthenticatedUser, E2eeClient, Ocs};
use super::tree;
use super::{Shared, OCS_E2EE_BASE};

impl From<ApiError> for Ocs {
    fn from(error: ApiError) -> Self {
        Ocs::error(error.status, error.message)
    }
}

/// The folder routes of the OCS API.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route(&format!("{OCS_E2EE_BASE}/{{version}}/encrypted/{{id}}"), put(set_encrypted).delete(unset_encrypted))
        .route(&format!("{OCS_E2EE_BASE}/{{version}}/lock/{{id}}"), post(lock).delete(unlock))
        .route(
            &format!("{OCS_E2EE_BASE}/{{version}}/meta-data/{{id}}"),
            axum::routing::get(get_metadata).post(create_metadata).put(update_metadata).delete(delete_metadata),
        )
        .route(&format!("{OCS_E2EE_BASE}/{{version}}/meta-data/{{id}}/filedrop"), put(add_filedrop))
}

/// A file id as PHP's integer cast reads it: leading digits (so `00000089ocabc` is 89).
fn parse_file_id(text: &str) -> Result<i64, Ocs> {
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse::<i64>()
        .ok()
        .filter(|&id| id > 0)
        .ok_or_else(|| Ocs::error(StatusCode::BAD_REQUEST, "invalid file id"))
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok()).map(str::trim).filter(|value| !value.is_empty())
}

fn v2_only(version: &str) -> Result<(), Ocs> {
    match version {
        "v2" => Ok(()),
        "v1" => Err(Ocs::error(StatusCode::BAD_REQUEST, "Use the v2 endpoint for this file")),
        _ => Err(Ocs::error(StatusCode::NOT_FOUND, "unknown API version")),
    }
}

async fn set_encrypted(
    State(state): State<Shared>,
    Path((version, id)): Path<(String, String)>,
    _client: E2eeClient,
    AuthenticatedUser(user): AuthenticatedUser,
) -> Result<Ocs, Ocs> {
    check_api_version(&version)?;
    let id = parse_file_id(&id)?;
    let mut connection = state.store.lock();
    let transaction = connection.transaction().map_err(ApiError::from)?;
    tree::set_encrypted(&transaction, &user, id)?;
    transaction.commit().map_err(ApiError::from)?;
    tracing::info!(file_id = id, "folder flagged end-to-end encrypted");
    Ok(Ocs::ok(json!([])))
}

async fn unset_encrypted(
    State(state): State<Shared>,
    Path((version, id)): Path<(String, String)>,
    _client: E2eeClient,
    AuthenticatedUser(user): AuthenticatedUser,
) -> Result<Ocs, Ocs> {
    check_api_version(&version)?;
    let id = parse_file_id(&id)?;
    let mut connection = state.store.lock();
    let transaction = connection.transaction().map_err(ApiError::from)?;
    tree::unset_encrypted(&transaction, &user, id)?;
    transaction.commit().map_err(ApiError::from)?;
    Ok(Ocs::ok(json!([])))
}

async fn lock(
    State(state): State<Shared>,
    Path((version, id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    _client: E2eeClient,
    AuthenticatedUser(user): AuthenticatedUser,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Ocs, Ocs> {
    v2_only(&version)?;
    let id = parse_file_id(&id)?;
    let parameters = body_parameters(&headers, &body)?;
    // The token to re-acquire one's own lock is a parameter (body or query), not a header.
    let existing = parameters.get("e2e-token").or_else(|| query.get("e2e-token")).map(String::as_str);
    let counter = match header_text(&headers, "x-nc-e2ee-counter") {
        Some(text) => Some(
            text.parse::<u64>()
                .map_err(|_| Ocs::error(StatusCode::BAD_REQUEST, "X-NC-E2EE-COUNTER is not a number"))?,
        ),
        None => None,
    };
    let (token, freed) = {
        let mut connection = state.store.lock();
        let transaction = connection.transaction().map_err(ApiError::from)?;
        let freed = locking::expire_stale_locks(&transaction, state.lock_ttl_seconds)?;
        let token = locking::lock(&transaction, &user, id, counter, existing, state.lock_ttl_seconds)?;
        transaction.commit().map_err(ApiError::from)?;
        (token, freed)
    };
    state.blobs.remove(&freed);
    tracing::debug!(file_id = id, "locked");
    Ok(Ocs::ok(json!({ "e2e-token": token })))
}

async fn unlock(
    State(state): State<Shared>,
    Path((version, id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    _client: E2eeClient,
    AuthenticatedUser(user): AuthenticatedUser,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Ocs, Ocs> {
    v2_only(&version)?;
    let id = parse_file_id(&id)?;
    let token = header_text(&headers, "e2e-token")
        .ok_or_else(|| Ocs::error(StatusCode::BAD_REQUEST, "e2e-token header is missing"))?
        .to_owned();
    let parameters = body_parameters(&headers, &body)?;
    let abort =
        parameters.get("abort").or_else(|| query.get("abort")).is_some_and(|value| value == "true" || value == "1");
    if !abort {
        // Staged uploads skipped their fsyncs: make them durable before they become visible.
        let blobs = state.blobs.clone();
        tokio::task::spawn_blocking(move || blobs.sync_all())
            .await
            .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "sync failed"))?
            .map_err(super::dav::storage_error)?;
    }
    let freed = {
        let mut connection = state.store.lock();
        let transaction = connection.transaction().map_err(ApiError::from)?;
        let freed = locking::unlock(&transaction, &user, id, &token, abort)?;
        transaction.commit().map_err(ApiError::from)?;
        freed
    };
    state.blobs.remove(&freed);
    tracing::debug!(file_id = id, abort, "unlocked");
    Ok(Ocs::ok(json!([])))
}

async fn get_metadata(
    State(state): State<Shared>,
    Path((version, id)): Path<(String, String)>,
    _client: E2eeClient,
    AuthenticatedUser(user): AuthenticatedUser,
) -> Result<Response, Ocs> {
    v2_only(&version)?;
    let id = parse_file_id(&id)?;
    let connection = state.store.lock();
    tree::owned_folder(&connection, &user, id, tree::Access::Read)?;
    let (json, signature) = locking::metadata(&connection, id)?
        .ok_or_else(|| Ocs::error(StatusCode::NOT_FOUND, "Could not find metadata for this folder"))?;
    let mut response = Ocs::ok(json!({ "meta-data": json })).into_response();
    if let Ok(value) = HeaderValue::from_str(&signature) {
        response.headers_mut().insert("X-NC-E2EE-SIGNATURE", value);
    }
    Ok(response)
}

#[allow(clippy::too_many_arguments)]
async fn write_metadata(
    state: Shared,
    version: String,
    id: String,
    user: String,
    headers: HeaderMap,
    body: Bytes,
    write: MetadataWrite,
) -> Result<Ocs, Ocs> {
    v2_only(&version)?;
    let id = parse_file_id(&id)?;
    let token = header_text(&headers, "e2e-token")
        .ok_or_else(|| Ocs::error(StatusCode::BAD_REQUEST, "e2e-token header is missing"))?
        .to_owned();
    let parameters = body_parameters(&headers, &body)?;
    let content = if write == MetadataWrite::Delete {
        None
    } else {
        let signature = header_text(&headers, "x-nc-e2ee-signature")
            .ok_or_else(|| Ocs::error(StatusCode::BAD_REQUEST, "X-NC-E2EE-SIGNATURE header is missing"))?
            .to_owned();
        let metadata = parameters
            .get("metaData")
            .filter(|text| !text.is_empty())
            .ok_or_else(|| Ocs::error(StatusCode::BAD_REQUEST, "missing parameter metaData"))?;
        if !serde_json::from_str::<serde_json::Value>(metadata).is_ok_and(|value| value.is_object()) {
            return Err(Ocs::error(StatusCode::BAD_REQUEST, "metaData is not a JSON object"));
        }
        Some((metadata.clone(), signature))
    };
    let mut connection = state.store.lock();
    let transaction = connection.transaction().map_err(ApiError::from)?;
    locking::write_metadata(
        &transaction,
        &user,
        id,
        &token,
        write,
        content.as_ref().map(|(json, signature)| (json.as_str(), signature.as_str())),
    )?;
    transaction.commit().map_err(ApiError::from)?;
    tracing::debug!(file_id = id, ?write, "metadata staged");
    Ok(match content {
        Some((json, _)) => Ocs::ok(json!({ "meta-data": json })),
        None => Ocs::ok(json!([])),
    })
}

async fn create_metadata(
    State(state): State<Shared>,
    Path((version, id)): Path<(String, String)>,
    _client: E2eeClient,
    AuthenticatedUser(user): AuthenticatedUser,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Ocs, Ocs> {
    write_metadata(state, version, id, user, headers, body, MetadataWrite::Create).await
}

async fn update_metadata(
    State(state): State<Shared>,
    Path((version, id)): Path<(String, String)>,
    _client: E2eeClient,
    AuthenticatedUser(user): AuthenticatedUser,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Ocs, Ocs> {
    write_metadata(state, version, id, user, headers, body, MetadataWrite::Update).await
}

async fn delete_metadata(
    State(state): State<Shared>,
    Path((version, id)): Path<(String, String)>,
    _client: E2eeClient,
    AuthenticatedUser(user): AuthenticatedUser,
    headers: HeaderMap,
) -> Result<Ocs, Ocs> {
    write_metadata(state, version, id, user, headers, Bytes::new(), MetadataWrite::Delete).await
}

/// `PUT /meta-data/{id}/filedrop`: merges file-drop entries into the folder's committed metadata at once
/// (no client lock; 412 while the folder is locked), as Nextcloud does under its internal lock. The entries
/// are not signed (by protocol): the members' clients move them into `files` and sign.
async fn add_filedrop(
    State(state): State<Shared>,
    Path((version, id)): Path<(String, String)>,
    _client: E2eeClient,
    AuthenticatedUser(user): AuthenticatedUser,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Ocs, Ocs> {
    v2_only(&version)?;
    let id = parse_file_id(&id)?;
    let parameters = body_parameters(&headers, &body)?;
    let entries: serde_json::Map<String, serde_json::Value> = parameters
        .get("filedrop")
        .and_then(|text| serde_json::from_str(text).ok())
        .ok_or_else(|| Ocs::error(StatusCode::BAD_REQUEST, "filedrop must be a JSON object"))?;
    let mut connection = state.store.lock();
    let transaction = connection.transaction().map_err(ApiError::from)?;
    let merged = locking::add_filedrop(&transaction, &user, id, entries)?;
    transaction.commit().map_err(ApiError::from)?;
    tracing::debug!(file_id = id, "file drop added");
    Ok(Ocs::ok(json!({ "filedrop": merged })))
}
