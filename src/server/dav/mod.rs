//! WebDAV under `/remote.php/dav/files/<user>/`: PROPFIND (depth 0 and 1, with Nextcloud's end-to-end
//! encryption properties), GET/HEAD with a byte range, PUT, MKCOL, DELETE and MOVE, with Nextcloud's rules
//! inside encrypted folders (the lock token on every write, staged writes, no moves across the boundary).

mod propfind;
mod read;
mod write;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use futures_util::StreamExt as _;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use tracing::Instrument as _;

use super::error::{ApiError, ApiResult};
use super::locking;
use super::ocs::AuthenticatedUser;
use super::tree::{self, Node};
use super::Shared;
use propfind::propfind;
use read::get;
pub(crate) use write::storage_error;
use write::{delete, mkcol, move_request, put};

/// Prefix of every user's WebDAV tree.
pub const DAV_FILES_PREFIX: &str = "/remote.php/dav/files/";

/// Largest PROPFIND request body accepted.
const MAX_PROPFIND_BODY: usize = 1 << 20;

/// Characters kept as they are in an href segment (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Sabre's error body: <d:error><s:exception/><s:message/></d:error>.
        let mut writer = Writer::new(Vec::new());
        let _ = writer.write_event(Event::Decl(BytesDecl::new("1.0", Some("utf-8"), None)));
        let _ = writer
            .create_element("d:error")
            .with_attribute(("xmlns:d", "DAV:"))
            .with_attribute(("xmlns:s", "http://sabredav.org/ns"))
            .write_inner_content(|writer| {
                writer.create_element("s:message").write_text_content(BytesText::new(&self.message))?;
                Ok(())
            });
        let mut response = (self.status, writer.into_inner()).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml; charset=utf-8"));
        response
    }
}

/// The WebDAV routes.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/remote.php/dav/files/{user}", any(dav))
        .route("/remote.php/dav/files/{user}/", any(dav))
        .route("/remote.php/dav/files/{user}/{*path}", any(dav))
}

/// Splits a request path below [`DAV_FILES_PREFIX`] into the user and the decoded segments.
fn split_path(raw: &str) -> ApiResult<(String, Vec<String>)> {
    let rest = raw
        .strip_prefix(DAV_FILES_PREFIX)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not a WebDAV files path"))?;
    let mut parts = rest.split('/');
    let user = decode_segment(parts.next().unwrap_or_default())?;
    let mut segments = Vec::new();
    let parts: Vec<&str> = parts.collect();
    for (index, part) in parts.iter().enumerate() {
        if part.is_empty() && index + 1 == parts.len() {
            break; // trailing slash
        }
        let segment = decode_segment(part)?;
        tree::check_segment(&segment)?;
        segments.push(segment);
    }
    Ok((user, segments))
}

fn decode_segment(part: &str) -> ApiResult<String> {
    percent_decode_str(part)
        .decode_utf8()
        .map(|segment| segment.into_owned())
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "path is not UTF-8"))
}

fn href(user: &str, segments: &[String], is_dir: bool) -> String {
    let mut href = format!("{DAV_FILES_PREFIX}{}", utf8_percent_encode(user, SEGMENT));
    for segment in segments {
        href.push('/');
        href.extend(utf8_percent_encode(segment, SEGMENT));
    }
    if is_dir {
        href.push('/');
    }
    href
}

/// The `e2e-token` of a request: header, else query parameter.
fn request_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(value) = headers.get("e2e-token").and_then(|value| value.to_str().ok()) {
        return Some(value.to_owned());
    }
    let query = query?;
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find(|(key, _)| key == "e2e-token")
        .map(|(_, value)| value)
}

/// Nextcloud's refusal for clients that did not say `X-E2EE-Supported: true`.
fn client_not_allowed() -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "Client is not allowed to access end-to-end encrypted content")
}

fn e2ee_supported(headers: &HeaderMap) -> bool {
    headers
        .get("x-e2ee-supported")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("true"))
}

/// `oc:id` / `OC-FileId`: the id padded to 8 digits and an instance id, like Nextcloud.
fn oc_id(id: i64) -> String {
    format!("{id:08}occloakfs")
}

async fn dav(State(state): State<Shared>, AuthenticatedUser(user): AuthenticatedUser, request: Request) -> Response {
    let method = request.method().clone();
    // Instrumented, not entered: an entered span held across an await would wrap other requests' logs.
    let handled = handle(state, user, request).instrument(tracing::debug_span!("dav", %method)).await;
    match handled {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(status = %error.status, message = %error.message, "dav request refused");
            error.into_response()
        }
    }
}

async fn handle(state: Shared, user: String, request: Request) -> ApiResult<Response> {
    let (path_user, segments) = split_path(request.uri().path())?;
    if path_user != user {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "this is another user's file space"));
    }
    let token = request_token(request.headers(), request.uri().query());
    match request.method().as_str() {
        "PROPFIND" => propfind(&state, &user, &segments, request).await,
        "GET" | "HEAD" => get(&state, &user, &segments, request).await,
        "PUT" => put(&state, &user, &segments, token.as_deref(), request).await,
        "MKCOL" => mkcol(&state, &user, &segments, token.as_deref(), request).await,
        "DELETE" => delete(&state, &user, &segments, token.as_deref(), request.headers()),
        "MOVE" => move_request(&state, &user, &segments, token.as_deref(), request.headers()),
        "OPTIONS" => {
            Ok((StatusCode::OK, [("DAV", "1, 3"), ("Allow", "OPTIONS, GET, HEAD, PUT, DELETE, PROPFIND, MKCOL, MOVE")])
                .into_response())
        }
        _ => Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not supported")),
    }
}

fn split_last(segments: &[String]) -> ApiResult<(&[String], &String)> {
    match segments.split_last() {
        Some((last, parents)) => Ok((parents, last)),
        None => Err(ApiError::new(StatusCode::FORBIDDEN, "not allowed on the root folder")),
    }
}

/// The node a GET or HEAD reads: a file staged for deletion is still readable under its name (Nextcloud's
/// fallback to `x.e2e-to-delete`).
fn readable(state: &Shared, user: &str, segments: &[String]) -> ApiResult<Node> {
    let connection = state.store.lock();
    let node = tree::resolve_for_read(&connection, user, segments)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not found"))?;
    if !tree::may(&connection, user, &node, tree::Access::Read)? {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "the share does not allow reading"));
    }
    Ok(node)
}
