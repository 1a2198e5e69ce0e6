//! WebDAV under `/remote.php/dav/files/<user>/`: PROPFIND (depth 0 and 1, with Nextcloud's end-to-end
//! encryption properties), GET/HEAD with a byte range, PUT, MKCOL, DELETE and MOVE, with Nextcloud's rules
//! inside encrypted folders (the lock token on every write, staged writes, no moves across the boundary).

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

use super::error::{ApiError, ApiResult};
use super::locking;
use super::ocs::AuthenticatedUser;
use super::tree::{self, Node};
use super::Shared;

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
    let span = tracing::debug_span!("dav", %method);
    let _entered = span.enter();
    match handle(state, user, request).await {
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
    tree::resolve_for_read(&connection, user, segments)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not found"))
}

async fn propfind(state: &Shared, user: &str, segments: &[String], request: Request) -> ApiResult<Response> {
    let depth = match request.headers().get("depth").and_then(|value| value.to_str().ok()) {
        Some("0") => 0,
        Some("1") | None => 1,
        Some(_) => return Err(ApiError::new(StatusCode::FORBIDDEN, "PROPFIND with Depth infinity is not allowed")),
    };
    let e2ee = e2ee_supported(request.headers());
    let body = axum::body::to_bytes(request.into_body(), MAX_PROPFIND_BODY)
        .await
        .map_err(|_| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "PROPFIND body too large"))?;
    check_xml(&body)?;
    let connection = state.store.lock();
    let target = tree::resolve_for_read(&connection, user, segments)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not found"))?;
    let target_encrypted = tree::in_encrypted_tree(&connection, &target)?;
    if target_encrypted && target.is_dir && !e2ee {
        return Err(client_not_allowed());
    }
    let mut entries = vec![(segments.to_vec(), target.clone(), target_encrypted)];
    if depth == 1 && target.is_dir {
        for child in tree::children(&connection, target.id)? {
            let mut child_segments = segments.to_vec();
            child_segments.push(child.listed_name().to_owned());
            let encrypted = target_encrypted || child.encrypted;
            entries.push((child_segments, child, encrypted));
        }
    }
    let mut writer = Writer::new(Vec::with_capacity(512 * entries.len()));
    write_event(&mut writer, Event::Decl(BytesDecl::new("1.0", Some("utf-8"), None)))?;
    let start = BytesStart::new("d:multistatus").with_attributes([
        ("xmlns:d", "DAV:"),
        ("xmlns:oc", "http://owncloud.org/ns"),
        ("xmlns:nc", "http://nextcloud.org/ns"),
        ("xmlns:s", "http://sabredav.org/ns"),
    ]);
    write_event(&mut writer, Event::Start(start))?;
    for (entry_segments, node, encrypted) in &entries {
        let metadata = if node.is_dir && node.encrypted { locking::metadata(&connection, node.id)? } else { None };
        write_response(&mut writer, &href(user, entry_segments, node.is_dir), node, *encrypted, metadata)?;
    }
    write_event(&mut writer, Event::End(BytesEnd::new("d:multistatus")))?;
    let mut response = (StatusCode::MULTI_STATUS, writer.into_inner()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml; charset=utf-8"));
    Ok(response)
}

/// Refuses a request body that is not well-formed XML (an empty body is allowed: all properties).
fn check_xml(body: &Bytes) -> ApiResult<()> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let mut reader = quick_xml::Reader::from_reader(body.as_ref());
    reader.config_mut().check_end_names = true;
    let mut buffer = Vec::new();
    let mut depth = 0usize;
    loop {
        match reader.read_event_into(&mut buffer) {
            Ok(Event::Eof) if depth == 0 => return Ok(()),
            Ok(Event::Eof) => break,
            Ok(Event::Start(_)) => depth += 1,
            Ok(Event::End(_)) => depth = depth.saturating_sub(1),
            Ok(_) => {}
            Err(_) => break,
        }
        buffer.clear();
    }
    Err(ApiError::new(StatusCode::BAD_REQUEST, "malformed XML in the request body"))
}

fn write_event(writer: &mut Writer<Vec<u8>>, event: Event<'_>) -> ApiResult<()> {
    writer.write_event(event).map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "XML writing failed"))
}

fn write_response(
    writer: &mut Writer<Vec<u8>>,
    href: &str,
    node: &Node,
    in_encrypted_tree: bool,
    metadata: Option<(String, String)>,
) -> ApiResult<()> {
    let xml_error = |_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "XML writing failed");
    writer
        .create_element("d:response")
        .write_inner_content(|writer| {
            writer.create_element("d:href").write_text_content(BytesText::new(href))?;
            writer.create_element("d:propstat").write_inner_content(|writer| {
                writer.create_element("d:prop").write_inner_content(|writer| {
                    let text = |writer: &mut Writer<Vec<u8>>, name: &str, value: &str| -> std::io::Result<()> {
                        writer.create_element(name).write_text_content(BytesText::new(value))?;
                        Ok(())
                    };
                    if node.is_dir {
                        writer.create_element("d:resourcetype").write_inner_content(|writer| {
                            writer.create_element("d:collection").write_empty()?;
                            Ok(())
                        })?;
                    } else {
                        writer.create_element("d:resourcetype").write_empty()?;
                        text(writer, "d:getcontentlength", &node.size.to_string())?;
                        text(writer, "d:getcontenttype", "application/octet-stream")?;
                    }
                    text(writer, "d:getetag", &format!("\"{}\"", node.etag))?;
                    let modified = std::time::UNIX_EPOCH + std::time::Duration::from_secs(node.mtime.max(0) as u64);
                    text(writer, "d:getlastmodified", &httpdate::fmt_http_date(modified))?;
                    text(writer, "oc:fileid", &node.id.to_string())?;
                    text(writer, "oc:id", &oc_id(node.id))?;
                    text(writer, "oc:size", &node.size.to_string())?;
                    text(writer, "oc:permissions", if node.is_dir { "RGDNVCK" } else { "RGDNVW" })?;
                    if node.is_dir {
                        text(writer, "nc:is-encrypted", if node.encrypted { "1" } else { "0" })?;
                    }
                    text(writer, "nc:e2ee-is-encrypted", if in_encrypted_tree { "1" } else { "0" })?;
                    if let Some((json, signature)) = &metadata {
                        text(writer, "nc:e2ee-metadata", json)?;
                        text(writer, "nc:e2ee-metadata-signature", signature)?;
                    }
                    Ok(())
                })?;
                writer.create_element("d:status").write_text_content(BytesText::new("HTTP/1.1 200 OK"))?;
                Ok(())
            })?;
            Ok(())
        })
        .map_err(xml_error)?;
    Ok(())
}

/// A parsed `Range: bytes=...` header: `Ok(None)` for the whole file.
fn parse_range(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(value) = headers.get(header::RANGE).and_then(|value| value.to_str().ok()) else { return Ok(None) };
    let Some(spec) = value.trim().strip_prefix("bytes=") else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None); // multiple ranges: answer with the whole file, as RFC 9110 permits
    }
    let (start, end) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let suffix: u64 = suffix.parse().map_err(|_| ())?;
            if suffix == 0 {
                return Err(());
            }
            (size.saturating_sub(suffix), size.checked_sub(1).ok_or(())?)
        }
        (start, "") => (start.parse().map_err(|_| ())?, size.checked_sub(1).ok_or(())?),
        (start, end) => {
            let start: u64 = start.parse().map_err(|_| ())?;
            let end: u64 = end.parse().map_err(|_| ())?;
            (start, end.min(size.saturating_sub(1)))
        }
    };
    if start >= size || start > end {
        return Err(());
    }
    Ok(Some((start, end)))
}

async fn get(state: &Shared, user: &str, segments: &[String], request: Request) -> ApiResult<Response> {
    let node = readable(state, user, segments)?;
    if node.is_dir {
        return Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "cannot GET a folder"));
    }
    let blob = node.blob.clone().ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not found"))?;
    let mut file = tokio::fs::File::open(state.blobs.path(&blob)).await.map_err(|error| {
        tracing::error!(file_id = node.id, %error, "blob missing");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "file content missing on the server")
    })?;
    let size = node.size;
    let range = match parse_range(request.headers(), size) {
        Ok(range) => range,
        Err(()) => {
            return Ok((StatusCode::RANGE_NOT_SATISFIABLE, [(header::CONTENT_RANGE, format!("bytes */{size}"))])
                .into_response())
        }
    };
    let (status, start, length) = match range {
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        None => (StatusCode::OK, 0, size),
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::ETAG, header_value(&format!("\"{}\"", node.etag)));
    headers.insert("OC-FileId", header_value(&oc_id(node.id)));
    if status == StatusCode::PARTIAL_CONTENT {
        headers.insert(header::CONTENT_RANGE, header_value(&format!("bytes {start}-{}/{size}", start + length - 1)));
    }
    if request.method() == Method::HEAD {
        return Ok((status, headers).into_response());
    }
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the file"))?;
    // Blobs are read whole, front to back: a doubled read-ahead window when they come from disk.
    crate::platform::advise_sequential(&file);
    let reader = file.take(length);
    let stream = tokio_util::io::ReaderStream::with_capacity(reader, 1 << 20);
    Ok((status, headers, Body::from_stream(stream)).into_response())
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub(crate) fn storage_error(error: std::io::Error) -> ApiError {
    if error.raw_os_error() == Some(28) || error.kind() == std::io::ErrorKind::StorageFull {
        ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "Insufficient Storage")
    } else {
        tracing::error!(%error, "cannot store an upload");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "cannot store the upload")
    }
}

/// The existing folder at `parents` (409 Conflict otherwise, as WebDAV prescribes for a missing parent).
fn parent_folder(connection: &rusqlite::Connection, user: &str, parents: &[String]) -> ApiResult<Node> {
    tree::resolve(connection, user, parents)?
        .filter(|node| node.is_dir)
        .ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "the parent folder does not exist"))
}

/// Checks that a write into `folder` may proceed; encrypted trees need the client's consent header too.
fn writable_folder(
    state: &Shared,
    user: &str,
    parents: &[String],
    token: Option<&str>,
    headers: &HeaderMap,
) -> ApiResult<Node> {
    let connection = state.store.lock();
    let folder = parent_folder(&connection, user, parents)?;
    if tree::check_write_token(&connection, &folder, token)?.is_some() && !e2ee_supported(headers) {
        return Err(client_not_allowed());
    }
    Ok(folder)
}

/// The blocking task writing an upload ended without an answer (it panicked or the runtime is stopping).
fn writer_lost(_: tokio::task::JoinError) -> ApiError {
    storage_error(std::io::Error::other("the upload's writer stopped"))
}

/// Bytes of an upload's body written to disk at a time.
const UPLOAD_PIECE: usize = 1 << 20;

async fn put(
    state: &Shared,
    user: &str,
    segments: &[String],
    token: Option<&str>,
    request: Request,
) -> ApiResult<Response> {
    let (parents, name) = split_last(segments)?;
    writable_folder(state, user, parents, token, request.headers())?;
    // Stream the body into a temp file, synced before it is renamed into place. A write under a lock is
    // staged: invisible until unlock, which syncs all blobs at once before committing (one syncfs instead of
    // two fsyncs per file of a `tar x`).
    let staged = token.is_some();
    let temp = state.blobs.temp_path();
    let file = super::blobs::BlobWriter::create(&temp).map_err(storage_error)?;
    let mut size = 0u64;
    let mut body = request.into_body().into_data_stream();
    let outcome: ApiResult<()> = async {
        // The body is gathered into pieces written on a blocking thread while the next piece arrives; each
        // written piece starts its write-back at once, so the sync at the end (or at unlock) has little left.
        let mut writing: Option<tokio::task::JoinHandle<std::io::Result<super::blobs::BlobWriter>>> = None;
        let mut idle = Some(file);
        let (mut piece, mut piece_len) = (Vec::<Bytes>::new(), 0usize);
        loop {
            let chunk = body.next().await;
            if let Some(chunk) = &chunk {
                let chunk =
                    chunk.as_ref().map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "the upload was interrupted"))?;
                size += chunk.len() as u64;
                piece_len += chunk.len();
                piece.push(chunk.clone());
                if piece_len < UPLOAD_PIECE {
                    continue;
                }
            }
            let mut file = match (idle.take(), writing.take()) {
                (Some(file), _) => file,
                (None, Some(previous)) => previous.await.map_err(writer_lost)?.map_err(storage_error)?,
                (None, None) => unreachable!("the file is idle or being written"),
            };
            let full = std::mem::take(&mut piece);
            piece_len = 0;
            if chunk.is_none() {
                // The last piece, then the sync (a staged upload is synced at unlock).
                let file = tokio::task::spawn_blocking(move || {
                    file.write_piece(&full)?;
                    if !staged {
                        file.sync()?;
                    }
                    Ok::<_, std::io::Error>(file)
                });
                file.await.map_err(writer_lost)?.map_err(storage_error)?;
                return Ok(());
            }
            writing = Some(tokio::task::spawn_blocking(move || {
                file.write_piece(&full)?;
                Ok(file)
            }));
        }
    }
    .await;
    if let Err(error) = outcome {
        let _ = tokio::fs::remove_file(&temp).await;
        return Err(error);
    }
    let blob = match state.blobs.commit_upload(&temp, !staged) {
        Ok(blob) => blob,
        Err(error) => {
            let _ = std::fs::remove_file(&temp);
            return Err(storage_error(error));
        }
    };
    let result = {
        let mut connection = state.store.lock();
        // A staged row needs no fsync of its own either: unlock's commit (synchronous=FULL) syncs the WAL
        // and with it every transaction before.
        let relaxed = staged && connection.pragma_update(None, "synchronous", "NORMAL").is_ok();
        let result = (|| {
            let transaction = connection.transaction()?;
            let folder = parent_folder(&transaction, user, parents)?;
            let token = tree::check_write_token(&transaction, &folder, token)?;
            if let Some(quota) = state.quota_bytes {
                let used: i64 = transaction
                    .prepare_cached("SELECT COALESCE(SUM(size), 0) FROM nodes WHERE owner = ?1 AND is_dir = 0")?
                    .query_row([user], |row| row.get(0))?;
                if used as u64 + size > quota {
                    return Err(ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "Insufficient Storage (quota)"));
                }
            }
            let outcome = tree::put_file(&transaction, &folder, name, &blob, size, token.is_some())?;
            transaction.commit()?;
            Ok::<_, ApiError>(outcome)
        })();
        if relaxed {
            if let Err(error) = connection.pragma_update(None, "synchronous", "FULL") {
                tracing::error!(%error, "cannot restore synchronous=FULL");
            }
        }
        result
    };
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(error) => {
            state.blobs.remove(&[blob]);
            return Err(error);
        }
    };
    if staged && !outcome.node.is_staged_save() {
        // Not staged after all (e.g. a token for an unlocked folder): sync now, before answering.
        state.blobs.sync_one(&blob).map_err(storage_error)?;
    }
    state.blobs.remove(&outcome.freed_blobs);
    tracing::debug!(file_id = outcome.node.id, size, staged = outcome.node.is_staged_save(), "stored upload");
    let status = if outcome.created { StatusCode::CREATED } else { StatusCode::NO_CONTENT };
    let etag = format!("\"{}\"", outcome.node.etag);
    Ok((status, [("OC-FileId", oc_id(outcome.node.id)), ("ETag", etag.clone()), ("OC-ETag", etag)]).into_response())
}

async fn mkcol(
    state: &Shared,
    user: &str,
    segments: &[String],
    token: Option<&str>,
    request: Request,
) -> ApiResult<Response> {
    let (parents, name) = split_last(segments)?;
    writable_folder(state, user, parents, token, request.headers())?;
    let body = axum::body::to_bytes(request.into_body(), 1024)
        .await
        .map_err(|_| ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "MKCOL with a body is not supported"))?;
    if !body.is_empty() {
        return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "MKCOL with a body is not supported"));
    }
    let mut connection = state.store.lock();
    let transaction = connection.transaction()?;
    let folder = parent_folder(&transaction, user, parents)?;
    let token = tree::check_write_token(&transaction, &folder, token)?;
    let created = tree::make_folder(&transaction, &folder, name, token.is_some())?;
    transaction.commit()?;
    Ok((StatusCode::CREATED, [("OC-FileId", oc_id(created.id))]).into_response())
}

fn delete(
    state: &Shared,
    user: &str,
    segments: &[String],
    token: Option<&str>,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    split_last(segments)?;
    let freed = {
        let mut connection = state.store.lock();
        let transaction = connection.transaction()?;
        // A file PUT under the still open lock exists only as `x.e2e-to-save`: like Nextcloud, the DELETE
        // of `x` does not find it (404) and removes nothing.
        let target = tree::resolve(&transaction, user, segments)?.ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, format!("File with name {} could not be located", segments.join("/")))
        })?;
        let token = tree::check_write_token(&transaction, &target, token)?;
        if token.is_some() && !e2ee_supported(headers) {
            return Err(client_not_allowed());
        }
        let freed = tree::delete(&transaction, &target, token.is_some())?;
        transaction.commit()?;
        freed
    };
    state.blobs.remove(&freed);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The path of a `Destination` header (absolute URL or absolute path) below the user's tree.
fn destination_segments(headers: &HeaderMap, user: &str) -> ApiResult<Vec<String>> {
    let bad = || ApiError::new(StatusCode::BAD_REQUEST, "missing or invalid Destination header");
    let value = headers.get("destination").and_then(|value| value.to_str().ok()).ok_or_else(bad)?;
    let path = if value.starts_with('/') {
        value.to_owned()
    } else {
        url::Url::parse(value).map_err(|_| bad())?.path().to_owned()
    };
    let (destination_user, segments) = split_path(&path)?;
    if destination_user != user {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "cannot move into another user's file space"));
    }
    Ok(segments)
}

fn move_request(
    state: &Shared,
    user: &str,
    segments: &[String],
    token: Option<&str>,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    split_last(segments)?;
    let destination = destination_segments(headers, user)?;
    let (destination_parents, destination_name) = split_last(&destination)?;
    let overwrite = !headers
        .get("overwrite")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim().eq_ignore_ascii_case("F"));
    let freed = {
        let mut connection = state.store.lock();
        let transaction = connection.transaction()?;
        let source = tree::resolve(&transaction, user, segments)?
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not found"))?;
        let target_folder = tree::resolve(&transaction, user, destination_parents)?
            .filter(|node| node.is_dir)
            .ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "the destination folder does not exist"))?;
        let source_parent = tree::node(&transaction, source.parent.unwrap_or_default())?
            .ok_or_else(|| ApiError::new(StatusCode::FORBIDDEN, "the root folder cannot be moved"))?;
        if tree::in_encrypted_tree(&transaction, &source_parent)?
            != tree::in_encrypted_tree(&transaction, &target_folder)?
        {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "cannot move between end-to-end encrypted and unencrypted folders",
            ));
        }
        let source_token = tree::check_write_token(&transaction, &source, token)?;
        let destination_token = tree::check_write_token(&transaction, &target_folder, token)?;
        if (source_token.is_some() || destination_token.is_some()) && !e2ee_supported(headers) {
            return Err(client_not_allowed());
        }
        let freed = tree::move_node(
            &transaction,
            &source,
            &target_folder,
            destination_name,
            overwrite,
            source_token.or(destination_token).is_some(),
        )?;
        transaction.commit()?;
        freed
    };
    state.blobs.remove(&freed);
    Ok(StatusCode::CREATED.into_response())
}
