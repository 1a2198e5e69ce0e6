//! The one WebDAV client: PROPFIND (depth 0/1, parsed by [`super::propfind`]), GET (whole, by range, or
//! piece by piece), PUT (with `If-Match` / `If-None-Match: *`), MKCOL, MOVE and DELETE below a folder URL,
//! with Basic authentication, per-client headers (Nextcloud's `X-E2EE-Supported`, a lock's `e2e-token`),
//! one timeout per request including its retries, and retries of idempotent requests on transport errors,
//! 5xx (but 507) and 429. Requests are named by method and store path (ciphertext names only) in errors;
//! HTTP statuses become [`RemoteErrorKind`]s here and nowhere above.

use bytes::Bytes;
use futures_util::StreamExt as _;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use quick_xml::events::Event;
use reqwest::{Method, StatusCode, Url};
use zeroize::Zeroizing;

use super::propfind::{parse_multistatus, percent_decode, PropfindEntry};
use crate::storage::http::{backoff, may_retry, remaining, transport};
use crate::storage::{BodyStream, LockToken, RemoteError, RemoteErrorKind, WriteCondition};

/// Characters kept as they are in a URL path segment (RFC 3986 unreserved).
pub(crate) const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Attempts for idempotent requests (the first try and two retries).
const ATTEMPTS: u32 = 3;

/// A WebDAV client for the folder at one URL.
#[derive(Clone)]
pub struct DavClient {
    http: reqwest::Client,
    /// The folder, with a trailing slash; store paths are segments below it.
    base: Url,
    user: Option<String>,
    password: Zeroizing<String>,
    timeout: std::time::Duration,
    /// Headers sent with every request.
    headers: &'static [(&'static str, &'static str)],
    /// The properties every PROPFIND asks for.
    propfind_body: &'static str,
    /// The lock every request is made under (Nextcloud's end-to-end encryption API: `e2e-token`).
    lock: Option<LockToken>,
}

impl std::fmt::Debug for DavClient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("DavClient")
            .field("base", &self.base.as_str())
            .field("user", &self.user)
            .field("locked", &self.lock.is_some())
            .finish_non_exhaustive()
    }
}

/// What a PROPFIND found: the entry asked for, and (depth 1) its children.
#[derive(Debug, Default)]
pub struct Multistatus {
    /// The entry at the path asked for, if the answer describes it.
    pub own: Option<PropfindEntry>,
    /// The other entries.
    pub children: Vec<PropfindEntry>,
}

impl DavClient {
    /// A client for the folder `base` (a trailing slash is added) over `http`, authenticating as `user`
    /// (none: no authentication), with `headers` on every request and `propfind_body` as every PROPFIND's.
    pub fn new(
        http: reqwest::Client,
        mut base: Url,
        user: Option<String>,
        password: Zeroizing<String>,
        timeout: std::time::Duration,
        headers: &'static [(&'static str, &'static str)],
        propfind_body: &'static str,
    ) -> Self {
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        Self { http, base, user, password, timeout, headers, propfind_body, lock: None }
    }

    /// The same client with every request made under `token`.
    pub fn under_lock(&self, token: &LockToken) -> Self {
        Self { lock: Some(token.clone()), ..self.clone() }
    }

    /// The folder's URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The URL of `path` below the folder.
    pub fn url(&self, path: &[String]) -> Url {
        let encoded: Vec<String> =
            path.iter().map(|segment| utf8_percent_encode(segment, SEGMENT).to_string()).collect();
        self.base.join(&encoded.join("/")).unwrap_or_else(|_| self.base.clone())
    }

    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method, url);
        if let Some(user) = &self.user {
            request = request.basic_auth(user, Some(self.password.as_str()));
        }
        for (name, value) in self.headers {
            request = request.header(*name, *value);
        }
        if let Some(token) = &self.lock {
            request = request.header("e2e-token", &token.0);
        }
        request
    }

    /// Sends a request to `url` within the timeout in all; idempotent ones are retried on transport errors,
    /// 5xx (but 507) and 429. A 401 is [`RemoteError::Unauthorized`], any other status but 2xx and 207 a
    /// [`RemoteError::Status`] with the server's message. A folder addressed without its trailing slash may
    /// be answered with a redirect to the slashed URL (Apache with mod_dir): the request is sent again there.
    async fn send(
        &self,
        request_name: &str,
        idempotent: bool,
        url: &Url,
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
        method: &Method,
    ) -> Result<reqwest::Response, RemoteError> {
        let first = self.send_to(request_name, idempotent, || build(self.request(method.clone(), url.clone()))).await;
        match first {
            Err(error) if matches!(error.status(), Some(301 | 308)) && !url.path().ends_with('/') => {
                let mut slashed = url.clone();
                slashed.set_path(&format!("{}/", url.path()));
                self.send_to(request_name, idempotent, || build(self.request(method.clone(), slashed.clone()))).await
            }
            other => other,
        }
    }

    async fn send_to(
        &self,
        request_name: &str,
        idempotent: bool,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RemoteError> {
        let deadline = std::time::Instant::now() + self.timeout;
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

    /// PROPFIND with depth 0 (the entry itself) or 1 (the entry and its children).
    pub async fn propfind(&self, path: &[String], depth: u8) -> Result<Multistatus, RemoteError> {
        let request_name = name("PROPFIND", path);
        let mut url = self.url(path);
        if depth > 0 && !url.path().ends_with('/') {
            // Collections are addressed with a slash (Apache answers 301 otherwise).
            let slashed = format!("{}/", url.path());
            url.set_path(&slashed);
        }
        let method = Method::from_bytes(b"PROPFIND").expect("a valid method");
        let response = self
            .send(
                &request_name,
                true,
                &url,
                |request| {
                    request
                        .header("Depth", if depth == 0 { "0" } else { "1" })
                        .header("Content-Type", "application/xml; charset=utf-8")
                        .body(self.propfind_body)
                },
                &method,
            )
            .await?;
        let body = response.bytes().await.map_err(|error| transport(&request_name, &error))?;
        let parsed = parse_multistatus(&body)
            .map_err(|error| RemoteError::Protocol { request: request_name.clone(), reason: error.to_string() })?;
        let own_path = normalized_path(url.path());
        let mut found = Multistatus::default();
        for entry in parsed {
            let href_path = match Url::parse(&entry.href) {
                Ok(absolute) => absolute.path().to_owned(),
                Err(_) => entry.href.clone(),
            };
            if found.own.is_none() && normalized_path(&href_path) == own_path {
                found.own = Some(entry);
            } else {
                found.children.push(entry);
            }
        }
        Ok(found)
    }

    /// GET a file: whole, or the bytes of `range` that exist (a range past the end gives fewer; a server that
    /// ignores ranges is answered from the whole file).
    pub async fn get(&self, path: &[String], range: Option<std::ops::Range<u64>>) -> Result<Vec<u8>, RemoteError> {
        let request_name = name("GET", path);
        if range.as_ref().is_some_and(|range| range.start >= range.end) {
            return Ok(Vec::new());
        }
        let outcome = self
            .send(
                &request_name,
                true,
                &self.url(path),
                |request| match &range {
                    Some(range) => request.header("Range", format!("bytes={}-{}", range.start, range.end - 1)),
                    None => request,
                },
                &Method::GET,
            )
            .await;
        let response = match outcome {
            // A range that starts at or after the end.
            Err(error) if range.is_some() && error.status() == Some(416) => return Ok(Vec::new()),
            other => other?,
        };
        let partial = response.status() == StatusCode::PARTIAL_CONTENT;
        let expected = response.content_length();
        let body = response.bytes().await.map_err(|error| transport(&request_name, &error))?;
        if expected.is_some_and(|expected| expected != body.len() as u64) {
            return Err(RemoteError::Transport { request: request_name, reason: "the download was cut short".into() });
        }
        Ok(match range {
            Some(range) if !partial => {
                tracing::debug!(request = %request_name, "the server ignored the range; cut from the whole file");
                let start = (range.start as usize).min(body.len());
                let end = (range.end as usize).min(body.len());
                body[start..end].to_vec()
            }
            _ => Vec::from(body),
        })
    }

    /// GET a whole file, handing each piece of the body to `on_piece` as it arrives (no copy of the whole
    /// body is kept). `on_piece` returns `false` to stop early; the call then returns `Ok`. Fails if the body
    /// ends short of its announced length.
    pub async fn get_each(
        &self,
        path: &[String],
        on_piece: &mut (dyn FnMut(&[u8]) -> bool + Send),
    ) -> Result<(), RemoteError> {
        let request_name = name("GET", path);
        let response = self.send(&request_name, true, &self.url(path), |request| request, &Method::GET).await?;
        let expected = response.content_length();
        let mut received = 0u64;
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| transport(&request_name, &error))?;
            received += chunk.len() as u64;
            if !on_piece(&chunk) {
                return Ok(());
            }
        }
        if expected.is_some_and(|expected| received != expected) {
            return Err(RemoteError::Transport { request: request_name, reason: "the download was cut short".into() });
        }
        Ok(())
    }

    /// PUT a file of `length` bytes whose body `body` produces (called again for each retry), if `condition`
    /// holds (sent as `If-None-Match: *` or `If-Match`). Returns the new ETag, if the server sent one.
    pub async fn put(
        &self,
        path: &[String],
        length: u64,
        body: &(dyn Fn() -> BodyStream + Send + Sync),
        condition: &WriteCondition,
    ) -> Result<Option<String>, RemoteError> {
        let request_name = name("PUT", path);
        let response = self
            .send(
                &request_name,
                true,
                &self.url(path),
                |request| {
                    let request = request
                        .header("Content-Type", "application/octet-stream")
                        .header("Content-Length", length)
                        .body(reqwest::Body::wrap_stream(body()));
                    match condition {
                        WriteCondition::Always => request,
                        WriteCondition::CreateOnly => request.header("If-None-Match", "*"),
                        WriteCondition::IfVersion(etag) => request.header("If-Match", etag),
                    }
                },
                &Method::PUT,
            )
            .await
            .map_err(|error| {
                error.with_status_kinds(|status| match (status, condition) {
                    (412, WriteCondition::CreateOnly) => Some(RemoteErrorKind::Exists),
                    (412, WriteCondition::IfVersion(_)) => Some(RemoteErrorKind::Changed),
                    (409, _) => Some(RemoteErrorKind::NotFound),
                    _ => None,
                })
            })?;
        let header = |name: &str| response.headers().get(name).and_then(|value| value.to_str().ok()).map(str::to_owned);
        Ok(header("oc-etag").or_else(|| header("etag")))
    }

    /// MKCOL a folder; returns the server's `OC-FileId` header if it sent one.
    pub async fn mkcol(&self, path: &[String]) -> Result<Option<String>, RemoteError> {
        let request_name = name("MKCOL", path);
        let method = Method::from_bytes(b"MKCOL").expect("a valid method");
        let response =
            self.send(&request_name, false, &self.url(path), |request| request, &method).await.map_err(|error| {
                error.with_status_kinds(|status| match status {
                    405 => Some(RemoteErrorKind::Exists),
                    409 => Some(RemoteErrorKind::NotFound),
                    _ => None,
                })
            })?;
        Ok(response.headers().get("oc-fileid").and_then(|value| value.to_str().ok()).map(str::to_owned))
    }

    /// MOVE a file or folder; without `overwrite`, Exists if the target exists.
    pub async fn move_to(&self, from: &[String], to: &[String], overwrite: bool) -> Result<(), RemoteError> {
        let request_name = format!("MOVE /{} -> /{}", from.join("/"), to.join("/"));
        let destination = self.url(to);
        let method = Method::from_bytes(b"MOVE").expect("a valid method");
        self.send(
            &request_name,
            false,
            &self.url(from),
            |request| {
                request
                    .header("Destination", destination.as_str())
                    .header("Overwrite", if overwrite { "T" } else { "F" })
            },
            &method,
        )
        .await
        .map_err(|error| {
            error.with_status_kinds(|status| match status {
                412 => Some(RemoteErrorKind::Exists),
                409 => Some(RemoteErrorKind::NotFound),
                _ => None,
            })
        })
        .map(|_| ())
    }

    /// DELETE a file or folder.
    pub async fn delete(&self, path: &[String]) -> Result<(), RemoteError> {
        let request_name = name("DELETE", path);
        self.send(&request_name, false, &self.url(path), |request| request, &Method::DELETE).await.map(|_| ())
    }
}

/// A request's name in messages: the method and the store path.
pub(crate) fn name(method: &str, path: &[String]) -> String {
    format!("{method} /{}", path.join("/"))
}

/// A URL path percent-decoded, without a trailing slash.
fn normalized_path(path: &str) -> String {
    percent_decode(path).trim_end_matches('/').to_owned()
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

/// A body stream of `bytes` (for callers with the whole body at hand).
pub fn body_of(bytes: Bytes) -> impl Fn() -> BodyStream + Send + Sync {
    move || {
        let bytes = bytes.clone();
        Box::pin(futures_util::stream::once(async move { Ok(bytes) }))
    }
}
