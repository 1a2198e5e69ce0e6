//! The OCS end-to-end encryption API of the embedded server (keys part), with Nextcloud's semantics:
//! JSON envelopes, status codes as a real server answers (see SERVER-BEHAVIOUR.md of the interop notes).

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value};

use super::{Shared, OCS_E2EE_BASE};
use crate::crypto::IdentityError;

/// Validity of certificates the server issues (Nextcloud: 7300 days).
const CERTIFICATE_VALIDITY: Duration = Duration::from_secs(7300 * 86_400);

/// An OCS answer: HTTP status = OCS status code (v2 semantics), data or an error message.
pub struct Ocs {
    status: StatusCode,
    data: Value,
}

impl Ocs {
    /// A success answer with `data`.
    pub fn ok(data: Value) -> Self {
        Self { status: StatusCode::OK, data }
    }

    /// An error answer; the message goes to `ocs.data.message` as on a real server.
    pub fn error(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, data: json!({ "message": message.into() }) }
    }
}

impl IntoResponse for Ocs {
    fn into_response(self) -> Response {
        let ok = self.status.is_success();
        let body = json!({
            "ocs": {
                "meta": {
                    "status": if ok { "ok" } else { "failure" },
                    "statuscode": self.status.as_u16(),
                    "message": if ok { "OK" } else { "" },
                },
                "data": self.data,
            }
        });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, "Basic realm=\"cloakfs\"".parse().unwrap());
        }
        response
    }
}

impl From<super::store::StoreError> for Ocs {
    fn from(error: super::store::StoreError) -> Self {
        tracing::error!(%error, "store failure");
        Ocs::error(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
    }
}

/// The authenticated user of a request (HTTP basic auth with the login or an app password).
pub struct AuthenticatedUser(pub String);

impl FromRequestParts<Shared> for AuthenticatedUser {
    type Rejection = Ocs;

    /// The user [`super::session::authenticate`] checked (by password or session cookie); 401 otherwise.
    async fn from_request_parts(parts: &mut Parts, _state: &Shared) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<super::session::Authenticated>() {
            Some(authenticated) => Ok(Self(authenticated.0.clone())),
            None => Err(Ocs::error(StatusCode::UNAUTHORIZED, "missing or wrong credentials")),
        }
    }
}

/// Requests to the end-to-end encryption API must say `X-E2EE-Supported: true`, as on Nextcloud.
pub struct E2eeClient;

impl<S: Send + Sync> FromRequestParts<S> for E2eeClient {
    type Rejection = Ocs;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let supported = parts
            .headers
            .get("x-e2ee-supported")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.eq_ignore_ascii_case("true"));
        if supported {
            Ok(Self)
        } else {
            Err(Ocs::error(StatusCode::FORBIDDEN, "Client is not allowed to access end-to-end encrypted content"))
        }
    }
}

/// Parameters of a POST/PUT: form-urlencoded (desktop client) or JSON (web client) body.
pub fn body_parameters(headers: &HeaderMap, body: &Bytes) -> Result<HashMap<String, String>, Ocs> {
    let bad = |what: &str| Ocs::error(StatusCode::BAD_REQUEST, format!("malformed request body: {what}"));
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if body.is_empty() {
        return Ok(HashMap::new());
    }
    if is_json {
        let value: serde_json::Map<String, Value> = serde_json::from_slice(body).map_err(|_| bad("invalid JSON"))?;
        Ok(value
            .into_iter()
            .filter_map(|(key, value)| match value {
                Value::String(text) => Some((key, text)),
                Value::Number(number) => Some((key, number.to_string())),
                Value::Bool(flag) => Some((key, flag.to_string())),
                _ => None,
            })
            .collect())
    } else {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
            .map(|pairs| pairs.into_iter().collect())
            .map_err(|_| bad("invalid form encoding"))
    }
}

/// Refuses API versions other than v1 and v2.
pub fn check_api_version(version: &str) -> Result<(), Ocs> {
    match version {
        "v1" | "v2" => Ok(()),
        _ => Err(Ocs::error(StatusCode::NOT_FOUND, "unknown API version")),
    }
}

/// The OCS routes of the keys API.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route(&format!("{OCS_E2EE_BASE}/{{version}}/server-key"), get(get_server_key))
        .route(&format!("{OCS_E2EE_BASE}/{{version}}/public-key"), get(get_public_keys).post(post_public_key))
        .route(&format!("{OCS_E2EE_BASE}/{{version}}/private-key"), get(get_private_key).post(post_private_key))
}

async fn get_server_key(
    State(state): State<Shared>,
    Path(version): Path<String>,
    _client: E2eeClient,
    _user: AuthenticatedUser,
) -> Result<Ocs, Ocs> {
    check_api_version(&version)?;
    Ok(Ocs::ok(json!({ "public-key": state.server_identity.public_key().to_pem() })))
}

async fn get_public_keys(
    State(state): State<Shared>,
    Path(version): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    _client: E2eeClient,
    AuthenticatedUser(user): AuthenticatedUser,
) -> Result<Ocs, Ocs> {
    check_api_version(&version)?;
    let mut users: Vec<String> = match query.get("users") {
        Some(list) => serde_json::from_str(list)
            .map_err(|_| Ocs::error(StatusCode::BAD_REQUEST, "users must be a JSON array of user ids"))?,
        None => Vec::new(),
    };
    if users.len() > 1000 {
        return Err(Ocs::error(StatusCode::BAD_REQUEST, "too many users requested"));
    }
    if !users.contains(&user) {
        users.push(user);
    }
    let mut keys = serde_json::Map::new();
    for requested in users {
        let certificate = state
            .store
            .certificate(&requested)?
            .ok_or_else(|| Ocs::error(StatusCode::NOT_FOUND, "Could not find the public key"))?;
        keys.insert(requested, Value::String(certificate));
    }
    Ok(Ocs::ok(json!({ "public-keys": keys })))
}

async fn post_public_key(
    State(state): State<Shared>,
    Path(version): Path<String>,
    _client: E2eeClient,
    AuthenticatedUser(user): AuthenticatedUser,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Ocs, Ocs> {
    check_api_version(&version)?;
    let parameters = body_parameters(&headers, &body)?;
    let csr = parameters.get("csr").ok_or_else(|| Ocs::error(StatusCode::BAD_REQUEST, "missing parameter csr"))?;
    if state.store.certificate(&user)?.is_some() {
        return Err(Ocs::error(StatusCode::CONFLICT, "a public key is already set"));
    }
    let certificate =
        state.server_identity.issue_certificate(csr, &user, CERTIFICATE_VALIDITY).map_err(|error| match error {
            IdentityError::WrongSubject { .. } => {
                Ocs::error(StatusCode::FORBIDDEN, "the CSR's common name is not your user id")
            }
            other => Ocs::error(StatusCode::BAD_REQUEST, format!("could not parse the CSR: {other}")),
        })?;
    let pem = certificate.to_pem();
    if !state.store.insert_certificate(&user, &pem)? {
        return Err(Ocs::error(StatusCode::CONFLICT, "a public key is already set"));
    }
    tracing::info!(user = %user, "issued certificate");
    Ok(Ocs::ok(json!({ "public-key": pem })))
}

async fn get_private_key(
    State(state): State<Shared>,
    Path(version): Path<String>,
    _client: E2eeClient,
    AuthenticatedUser(user): AuthenticatedUser,
) -> Result<Ocs, Ocs> {
    check_api_version(&version)?;
    let wrapped = state
        .store
        .wrapped_private_key(&user)?
        .ok_or_else(|| Ocs::error(StatusCode::NOT_FOUND, "Could not find the private key"))?;
    Ok(Ocs::ok(json!({ "private-key": wrapped })))
}

/// The only private-key shape a current Nextcloud server accepts: `b64(ct||tag)|b64(12-byte iv)|b64(40-byte salt)`.
fn is_valid_wrapped_private_key(text: &str) -> bool {
    let parts: Vec<&str> = text.split('|').collect();
    if parts.len() != 3 {
        return false;
    }
    let decoded_len = |part: &str| BASE64.decode(part).map(|bytes| bytes.len()).ok();
    matches!(decoded_len(parts[0]), Some(len) if len > 16)
        && decoded_len(parts[1]) == Some(12)
        && decoded_len(parts[2]) == Some(40)
}

async fn post_private_key(
    State(state): State<Shared>,
    Path(version): Path<String>,
    _client: E2eeClient,
    AuthenticatedUser(user): AuthenticatedUser,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Ocs, Ocs> {
    check_api_version(&version)?;
    let parameters = body_parameters(&headers, &body)?;
    let wrapped = parameters
        .get("privateKey")
        .ok_or_else(|| Ocs::error(StatusCode::BAD_REQUEST, "missing parameter privateKey"))?;
    if !is_valid_wrapped_private_key(wrapped) {
        return Err(Ocs::error(StatusCode::BAD_REQUEST, "Invalid private key format"));
    }
    if !state.store.insert_wrapped_private_key(&user, wrapped)? {
        return Err(Ocs::error(StatusCode::CONFLICT, "private key for this user already exists"));
    }
    tracing::info!(user = %user, "stored wrapped private key");
    Ok(Ocs::ok(json!({ "private-key": wrapped })))
}
