//! WebDAV calls of [`NextcloudClient`]: PROPFIND (depth 0/1), GET (with a range), PUT, MKCOL, DELETE and
//! MOVE under `/remote.php/dav/files/<user>/`, with the `e2e-token` header on writes inside encrypted
//! folders. Requests are named by method and server-side path in errors; responses are parsed with a real
//! XML parser ([`super::propfind`]).

use bytes::Bytes;
use futures_util::StreamExt as _;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use quick_xml::events::Event;
use reqwest::{Method, StatusCode, Url};

use super::client::{backoff, may_retry, remaining, transport, NextcloudClient};
use super::propfind::{parse_multistatus, PropfindEntry, PROPFIND_REQUEST_BODY};
use crate::remote::{LockToken, Progress, PutResult, RemoteEntry, RemoteError};

/// Characters kept as they are in a URL path segment (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Attempts for idempotent WebDAV requests (PROPFIND, GET, PUT).
const ATTEMPTS: u32 = 3;

/// A listed entry from its PROPFIND properties.
fn entry_from_propfind(entry: PropfindEntry, request: &str) -> Result<RemoteEntry, RemoteError> {
    let file_id = entry.file_id.ok_or_else(|| RemoteError::Protocol {
        request: request.to_owned(),
        reason: "an entry has no oc:fileid".into(),
    })?;
    Ok(RemoteEntry {
        name: entry.name(),
        file_id,
        is_dir: entry.is_collection,
        size: entry.content_length.or(entry.size).unwrap_or(0),
        etag: entry.etag.clone().unwrap_or_default(),
        modified: entry.last_modified.as_deref().and_then(|date| httpdate::parse_http_date(date).ok()),
        is_encrypted: entry.is_encrypted.unwrap_or(false),
        metadata: match (entry.e2ee_metadata, entry.e2ee_metadata_signature) {
            (Some(json), Some(signature)) if !json.is_empty() => Some((json, signature)),
            _ => None,
        },
    })
}

/// Leading digits of an `OC-FileId` (`00000089ocabc` is 89).
pub fn parse_oc_file_id(text: &str) -> Option<u64> {
    let digits: String = text.trim().chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|&id| id > 0)
}

/// Sends a WebDAV request within `timeout` in all; idempotent ones are retried on transport errors, 5xx (but
/// 507) and 429. `build` makes a fresh request per attempt. A 401 is [`RemoteError::Unauthorized`], any other
/// status but 2xx and 207 a [`RemoteError::Status`] with the server's message. Shared by every WebDAV client
/// (Nextcloud's, and the plain one of [`crate::transport::webdav`]).
pub(crate) async fn send_dav(
    timeout: std::time::Duration,
    request_name: &str,
    idempotent: bool,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<reqwest::Response, RemoteError> {
    let deadline = std::time::Instant::now() + timeout;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let outcome =
            build().timeout(remaining(deadline)).send().await.map_err(|error| transport(request_name, &error));
        let retryable = match &outcome {
            Err(_) => true,
            Ok(response) => {
                response.status().is_server_error() && response.status() != StatusCode::INSUFFICIENT_STORAGE
                    || response.status() == StatusCode::TOO_MANY_REQUESTS
            }
        };
        if idempotent && retryable && attempt < ATTEMPTS && may_retry(deadline, attempt) {
            tracing::debug!(request = %request_name, attempt, "retrying");
            tokio::time::sleep(backoff(attempt)).await;
            continue;
        }
        let response = outcome?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED {
            return Err(RemoteError::Unauthorized { request: request_name.to_owned() });
        }
        if !status.is_success() && status != StatusCode::MULTI_STATUS {
            let body = response.text().await.unwrap_or_default();
            return Err(RemoteError::http_status(request_name, status.as_u16(), dav_error_message(&body)));
        }
        return Ok(response);
    }
}

/// The message of a Sabre/Nextcloud WebDAV error body (`s:message`), else the body's start.
fn dav_error_message(body: &str) -> String {
    let mut reader = quick_xml::Reader::from_str(body);
    let mut in_message = false;
    loop {
        match reader.read_event() {
            Ok(Event::Start(start)) => in_message = start.local_name().as_ref() == b"message",
            Ok(Event::Text(text)) if in_message => {
                if let Ok(text) = text.unescape() {
                    return text.trim().to_owned();
                }
            }
            Ok(Event::End(_)) => in_message = false,
            Ok(Event::Eof) | Err(_) => break,
            Ok(_) => {}
        }
    }
    body.chars().take(200).collect::<String>().trim().to_owned()
}

impl NextcloudClient {
    /// The WebDAV URL of `segments` below the user's root.
    pub fn dav_url(&self, segments: &[String]) -> Result<Url, RemoteError> {
        let mut path = format!("remote.php/dav/files/{}", utf8_percent_encode(&self.config.user, SEGMENT));
        for segment in segments {
            path.push('/');
            path.extend(utf8_percent_encode(segment, SEGMENT));
        }
        self.url(&path)
    }

    fn dav_request(&self, method: Method, url: Url, token: Option<&LockToken>) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .request(method, url)
            .basic_auth(&self.config.user, Some(self.config.password.as_str()))
            .header("X-E2EE-Supported", "true")
            .header("OCS-APIRequest", "true");
        if let Some(token) = token {
            request = request.header("e2e-token", &token.0);
        }
        request
    }

    /// Sends a WebDAV request (see [`send_dav`]).
    async fn dav_send(
        &self,
        request_name: &str,
        idempotent: bool,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RemoteError> {
        send_dav(self.config().timeout, request_name, idempotent, build).await
    }

    fn request_name(method: &str, segments: &[String]) -> String {
        format!("{method} /{}", segments.join("/"))
    }

    /// PROPFIND with depth 0 (the entry itself) or 1 (the entry first, then its children).
    pub async fn propfind(&self, segments: &[String], depth: u8) -> Result<Vec<RemoteEntry>, RemoteError> {
        let request_name = Self::request_name("PROPFIND", segments);
        let url = self.dav_url(segments)?;
        let method = Method::from_bytes(b"PROPFIND").expect("a valid method");
        let response = self
            .dav_send(&request_name, true, || {
                self.dav_request(method.clone(), url.clone(), None)
                    .header("Depth", if depth == 0 { "0" } else { "1" })
                    .header("Content-Type", "application/xml; charset=utf-8")
                    .body(PROPFIND_REQUEST_BODY)
            })
            .await?;
        let body = response.bytes().await.map_err(|error| transport(&request_name, &error))?;
        let entries = parse_multistatus(&body)
            .map_err(|error| RemoteError::Protocol { request: request_name.clone(), reason: error.to_string() })?;
        let mut entries: Vec<RemoteEntry> =
            entries.into_iter().map(|entry| entry_from_propfind(entry, &request_name)).collect::<Result<_, _>>()?;
        // The entry itself comes first on Nextcloud; make sure of it by its href depth.
        if entries.is_empty() {
            return Err(RemoteError::Protocol { request: request_name, reason: "empty multistatus".into() });
        }
        if let Some(own_name) = segments.last() {
            if let Some(position) = entries.iter().position(|entry| &entry.name == own_name) {
                let own = entries.remove(position);
                entries.insert(0, own);
            }
        }
        Ok(entries)
    }

    /// GET a file, whole or a byte range (`start..end`, end exclusive).
    pub async fn get(
        &self,
        segments: &[String],
        range: Option<std::ops::Range<u64>>,
        progress: Option<Progress>,
    ) -> Result<Vec<u8>, RemoteError> {
        let mut body = Vec::new();
        self.get_each(segments, range, progress, &mut |piece| {
            body.extend_from_slice(piece);
            true
        })
        .await?;
        Ok(body)
    }

    /// GET a file, handing each piece of the body to `on_piece` as it arrives (no copy of the whole body is
    /// kept). `on_piece` returns `false` to stop early; the call then returns `Ok`. Fails if the body ends
    /// short of its announced length.
    pub async fn get_each(
        &self,
        segments: &[String],
        range: Option<std::ops::Range<u64>>,
        progress: Option<Progress>,
        on_piece: &mut (dyn FnMut(&[u8]) -> bool + Send),
    ) -> Result<(), RemoteError> {
        let request_name = Self::request_name("GET", segments);
        let url = self.dav_url(segments)?;
        let response = self
            .dav_send(&request_name, true, || {
                let mut request = self.dav_request(Method::GET, url.clone(), None);
                if let Some(range) = &range {
                    request = request.header("Range", format!("bytes={}-{}", range.start, range.end.saturating_sub(1)));
                }
                request
            })
            .await?;
        if range.is_some() && response.status() != StatusCode::PARTIAL_CONTENT {
            return Err(RemoteError::Protocol { request: request_name, reason: "the server ignored the range".into() });
        }
        let expected = response.content_length();
        let mut received = 0u64;
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| transport(&request_name, &error))?;
            received += chunk.len() as u64;
            if let Some(progress) = &progress {
                progress(received);
            }
            if !on_piece(&chunk) {
                return Ok(());
            }
        }
        if let Some(expected) = expected {
            if received != expected {
                return Err(RemoteError::Transport {
                    request: request_name,
                    reason: "the download was cut short".into(),
                });
            }
        }
        Ok(())
    }

    /// PUT a file (a blob), with the lock token inside encrypted folders.
    pub async fn put(
        &self,
        segments: &[String],
        body: Bytes,
        token: Option<&LockToken>,
        progress: Option<Progress>,
    ) -> Result<PutResult, RemoteError> {
        let request_name = Self::request_name("PUT", segments);
        let url = self.dav_url(segments)?;
        let response = self
            .dav_send(&request_name, true, || {
                let request = self
                    .dav_request(Method::PUT, url.clone(), token)
                    .header("Content-Type", "application/octet-stream")
                    .header("Content-Length", body.len());
                match &progress {
                    None => request.body(body.clone()),
                    Some(progress) => request.body(reqwest::Body::wrap_stream(chunked(body.clone(), progress.clone()))),
                }
            })
            .await?;
        Ok(put_result(&response))
    }

    /// PUT a file of `length` bytes whose body `body` produces (called again for each retry).
    pub async fn put_streamed(
        &self,
        segments: &[String],
        length: u64,
        body: &(dyn Fn() -> crate::remote::BodyStream + Send + Sync),
        token: Option<&LockToken>,
    ) -> Result<PutResult, RemoteError> {
        let request_name = Self::request_name("PUT", segments);
        let url = self.dav_url(segments)?;
        let response = self
            .dav_send(&request_name, true, || {
                self.dav_request(Method::PUT, url.clone(), token)
                    .header("Content-Type", "application/octet-stream")
                    .header("Content-Length", length)
                    .body(reqwest::Body::wrap_stream(body()))
            })
            .await?;
        Ok(put_result(&response))
    }

    /// MKCOL a folder; returns its file id (from `OC-FileId`, else a PROPFIND).
    pub async fn mkcol(&self, segments: &[String], token: Option<&LockToken>) -> Result<u64, RemoteError> {
        let request_name = Self::request_name("MKCOL", segments);
        let url = self.dav_url(segments)?;
        let method = Method::from_bytes(b"MKCOL").expect("a valid method");
        let response =
            self.dav_send(&request_name, false, || self.dav_request(method.clone(), url.clone(), token)).await?;
        let file_id =
            response.headers().get("oc-fileid").and_then(|value| value.to_str().ok()).and_then(parse_oc_file_id);
        match file_id {
            Some(file_id) => Ok(file_id),
            None => Ok(self.propfind(segments, 0).await?[0].file_id),
        }
    }

    /// DELETE a file or folder.
    pub async fn delete(&self, segments: &[String], token: Option<&LockToken>) -> Result<(), RemoteError> {
        let request_name = Self::request_name("DELETE", segments);
        let url = self.dav_url(segments)?;
        self.dav_send(&request_name, false, || self.dav_request(Method::DELETE, url.clone(), token)).await.map(|_| ())
    }

    /// MOVE a file or folder; `overwrite` false fails with 412 if the destination exists.
    pub async fn move_to(
        &self,
        from: &[String],
        to: &[String],
        overwrite: bool,
        token: Option<&LockToken>,
    ) -> Result<(), RemoteError> {
        let request_name = format!("MOVE /{} -> /{}", from.join("/"), to.join("/"));
        let url = self.dav_url(from)?;
        let destination = self.dav_url(to)?;
        let method = Method::from_bytes(b"MOVE").expect("a valid method");
        self.dav_send(&request_name, false, || {
            self.dav_request(method.clone(), url.clone(), token)
                .header("Destination", destination.as_str())
                .header("Overwrite", if overwrite { "T" } else { "F" })
        })
        .await
        .map(|_| ())
    }
}

/// The body in 256 KiB pieces, reporting progress as each is sent.
/// What a PUT's answer says of the stored file.
fn put_result(response: &reqwest::Response) -> PutResult {
    let header = |name: &str| response.headers().get(name).and_then(|value| value.to_str().ok()).map(str::to_owned);
    PutResult {
        file_id: header("oc-fileid").as_deref().and_then(parse_oc_file_id),
        etag: header("oc-etag").or_else(|| header("etag")),
    }
}

fn chunked(body: Bytes, progress: Progress) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    const PIECE: usize = 256 * 1024;
    let pieces = body.len().div_ceil(PIECE).max(1);
    futures_util::stream::iter((0..pieces).map(move |index| {
        let start = index * PIECE;
        let end = (start + PIECE).min(body.len());
        progress(end as u64);
        Ok(body.slice(start..end))
    }))
}
