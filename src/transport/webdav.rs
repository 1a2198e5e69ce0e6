//! Any WebDAV server as a [`Store`]: PROPFIND (depth 1), GET with `Range`, PUT with `If-Match` /
//! `If-None-Match: *`, MKCOL, MOVE and DELETE below the vault's URL, with Basic authentication over TLS
//! (plain http only to a loopback address unless allowed). Requests are named by method and store path
//! (ciphertext names only); retries and timeouts are those of the Nextcloud client
//! ([`crate::remote::nextcloud::webdav::send_dav`]).

use std::time::Duration;

use bytes::Bytes;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::{Method, StatusCode, Url};
use zeroize::Zeroizing;

use super::{Store, StoreEntry, WriteCondition};
use crate::remote::nextcloud::client::{http_client, transport};
use crate::remote::nextcloud::propfind::{parse_multistatus, percent_decode};
use crate::remote::nextcloud::webdav::send_dav;
use crate::remote::{RemoteError, RemoteErrorKind};

/// Characters kept as they are in a URL path segment (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The properties a listing asks for.
const PROPFIND_BODY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<d:propfind xmlns:d="DAV:"><d:prop><d:resourcetype/><d:getetag/><d:getcontentlength/><d:getlastmodified/></d:prop></d:propfind>"#;

/// How to reach a vault over WebDAV.
#[derive(Clone)]
pub struct DavConfig {
    /// The vault's folder, e.g. `https://host/dav/Vault/`.
    pub url: Url,
    /// The user for Basic authentication (none: no authentication).
    pub user: Option<String>,
    /// The password.
    pub password: Zeroizing<String>,
    /// Timeout of each request (retries included).
    pub timeout: Duration,
    /// Permit plain http to a host that is not a loopback address.
    pub allow_insecure_http: bool,
}

impl std::fmt::Debug for DavConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("DavConfig")
            .field("url", &self.url.as_str())
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// A vault's folder on a WebDAV server.
#[derive(Debug, Clone)]
pub struct DavStore {
    http: reqwest::Client,
    config: DavConfig,
    /// Whether the server refuses a PUT whose `If-Match` fails (found out once, by [`Self::probe_conditions`]).
    honours_conditions: std::sync::Arc<tokio::sync::OnceCell<bool>>,
}

impl DavStore {
    /// A store for `config`, with the same HTTP client rules as the Nextcloud backend's (https, or plain
    /// http to loopback only unless allowed); no credentials in the URL.
    pub fn new(mut config: DavConfig) -> Result<Self, RemoteError> {
        if !config.url.username().is_empty() || config.url.password().is_some() {
            return Err(RemoteError::BadUrl(
                "do not put credentials in the URL: use --user and the password prompt".into(),
            ));
        }
        let http = http_client(&mut config.url, config.allow_insecure_http, config.timeout, false)?;
        Ok(Self { http, config, honours_conditions: Default::default() })
    }

    /// Whether the server honours `If-Match` and `If-None-Match` on PUT (Apache mod_dav, nginx, Nextcloud
    /// do; rclone 1.60 does not). Found out once per store by a PUT with an `If-Match` that cannot match to
    /// a name that does not exist: 412 means honoured; a created file (removed at once) means ignored. A
    /// store that ignores them gets a check of the version just before each conditional write instead,
    /// which leaves a narrow race (docs/THREAT-MODEL.md).
    pub async fn probe_conditions(&self) -> bool {
        *self
            .honours_conditions
            .get_or_init(|| async {
                let probe = vec![format!(".cloakfs-probe-{}", crate::crypto::server_name::random_server_name())];
                let request_name = name("PUT", &probe);
                let url = self.url(&probe);
                let outcome = self
                    .send(&request_name, false, &url, |url| {
                        self.request(Method::PUT, url.clone()).header("If-Match", "\"cloakfs-never\"").body(Vec::new())
                    })
                    .await;
                match outcome {
                    Err(error) if error.status() == Some(412) => true,
                    Ok(_) => {
                        let store = self.describe();
                        tracing::info!(%store, "the server ignores If-Match: versions are checked before each write");
                        let _ = self.remove(&probe).await;
                        false
                    }
                    Err(error) => {
                        tracing::info!(%error, "the If-Match probe failed: versions are checked before each write");
                        false
                    }
                }
            })
            .await
    }

    /// Whether `condition` can go to the server as a header: it honours conditions, and the version is not
    /// a weak ETag (Apache makes the ETag of a file changed within the last second weak, and `If-Match`
    /// never matches a weak ETag).
    async fn server_checks(&self, condition: &WriteCondition) -> bool {
        match condition {
            WriteCondition::Always => true,
            WriteCondition::IfVersion(version) if version.starts_with("W/") => false,
            _ => self.probe_conditions().await,
        }
    }

    /// Where the server cannot check it: the condition checked against the entry as it is now (ETags
    /// compared weakly).
    async fn check_condition(&self, path: &[String], condition: &WriteCondition) -> Result<(), RemoteError> {
        if self.server_checks(condition).await {
            return Ok(());
        }
        let current = match self.stat(path).await {
            Ok(entry) => Some(entry.version),
            Err(error) if error.kind() == RemoteErrorKind::NotFound => None,
            Err(error) => return Err(error),
        };
        let refused = |kind: RemoteErrorKind, message: &str| {
            Err(RemoteError::Status { request: name("PUT", path), status: 412, message: message.into(), kind })
        };
        match (condition, current) {
            (WriteCondition::CreateOnly, Some(_)) => refused(RemoteErrorKind::Exists, "exists already"),
            (WriteCondition::IfVersion(_), None) => refused(RemoteErrorKind::Changed, "removed since it was read"),
            (WriteCondition::IfVersion(expected), Some(found)) if weak(expected) != weak(&found) => {
                refused(RemoteErrorKind::Changed, "changed since it was read")
            }
            _ => Ok(()),
        }
    }

    fn url(&self, path: &[String]) -> Url {
        let mut text = self.config.url.to_string();
        let encoded: Vec<String> =
            path.iter().map(|segment| utf8_percent_encode(segment, SEGMENT).to_string()).collect();
        text.push_str(&encoded.join("/"));
        Url::parse(&text).expect("a base URL and encoded segments form a URL")
    }

    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url);
        match &self.config.user {
            Some(user) => request.basic_auth(user, Some(self.config.password.as_str())),
            None => request,
        }
    }

    /// Sends a request to `url` (see `send_dav`). A folder addressed without its trailing slash may be
    /// answered with a redirect to the slashed URL (Apache with mod_dir, Debian's default): redirects are not
    /// followed (a PROPFIND or MOVE would come back as a GET), the request is sent again to the slashed URL.
    async fn send(
        &self,
        request_name: &str,
        idempotent: bool,
        url: &Url,
        build: impl Fn(&Url) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RemoteError> {
        match send_dav(self.config.timeout, request_name, idempotent, || build(url)).await {
            Err(error) if matches!(error.status(), Some(301 | 308)) && !url.path().ends_with('/') => {
                let mut slashed = url.clone();
                slashed.set_path(&format!("{}/", url.path()));
                send_dav(self.config.timeout, request_name, idempotent, || build(&slashed)).await
            }
            other => other,
        }
    }

    async fn propfind(
        &self,
        path: &[String],
        depth: u8,
    ) -> Result<(Url, Vec<StoreEntry>, Option<StoreEntry>), RemoteError> {
        let request_name = name("PROPFIND", path);
        let mut url = self.url(path);
        if depth > 0 && !url.path().ends_with('/') {
            // Collections are addressed with a slash (Apache answers 301 otherwise).
            let slashed = format!("{}/", url.path());
            url.set_path(&slashed);
        }
        let method = Method::from_bytes(b"PROPFIND").expect("a valid method");
        let response = self
            .send(&request_name, true, &url, |url| {
                self.request(method.clone(), url.clone())
                    .header("Depth", depth.to_string())
                    .header("Content-Type", "application/xml; charset=utf-8")
                    .body(PROPFIND_BODY)
            })
            .await?;
        let body = response.bytes().await.map_err(|error| transport(&request_name, &error))?;
        let parsed = parse_multistatus(&body)
            .map_err(|error| RemoteError::Protocol { request: request_name.clone(), reason: error.to_string() })?;
        let own_path = normalized_path(url.path());
        let mut own = None;
        let mut children = Vec::new();
        for entry in parsed {
            let href_path = match Url::parse(&entry.href) {
                Ok(absolute) => absolute.path().to_owned(),
                Err(_) => entry.href.clone(),
            };
            let store_entry = StoreEntry {
                name: entry.name(),
                is_dir: entry.is_collection,
                size: entry.content_length.unwrap_or(0),
                version: entry.etag.clone().unwrap_or_default(),
                modified: entry.last_modified.as_deref().and_then(|date| httpdate::parse_http_date(date).ok()),
            };
            if normalized_path(&href_path) == own_path {
                own = Some(store_entry);
            } else {
                children.push(store_entry);
            }
        }
        Ok((url, children, own))
    }
}

fn name(method: &str, path: &[String]) -> String {
    format!("{method} /{}", path.join("/"))
}

/// An ETag without its weakness mark.
fn weak(etag: &str) -> &str {
    etag.strip_prefix("W/").unwrap_or(etag)
}

/// A URL path percent-decoded, without a trailing slash.
fn normalized_path(path: &str) -> String {
    percent_decode(path).trim_end_matches('/').to_owned()
}

impl Store for DavStore {
    fn describe(&self) -> String {
        self.config.url.to_string()
    }

    async fn list(&self, path: &[String]) -> Result<Vec<StoreEntry>, RemoteError> {
        let (_, children, own) = self.propfind(path, 1).await?;
        if own.as_ref().is_some_and(|own| !own.is_dir) {
            return Err(RemoteError::Protocol { request: name("PROPFIND", path), reason: "not a folder".into() });
        }
        Ok(children)
    }

    async fn stat(&self, path: &[String]) -> Result<StoreEntry, RemoteError> {
        let (_, _, own) = self.propfind(path, 0).await?;
        own.ok_or_else(|| RemoteError::Protocol {
            request: name("PROPFIND", path),
            reason: "the answer does not describe the entry asked for".into(),
        })
    }

    async fn read(&self, path: &[String], range: Option<std::ops::Range<u64>>) -> Result<Vec<u8>, RemoteError> {
        let request_name = name("GET", path);
        let url = self.url(path);
        if range.as_ref().is_some_and(|range| range.start >= range.end) {
            return Ok(Vec::new());
        }
        let outcome = self
            .send(&request_name, true, &url, |url| {
                let request = self.request(Method::GET, url.clone());
                match &range {
                    Some(range) => request.header("Range", format!("bytes={}-{}", range.start, range.end - 1)),
                    None => request,
                }
            })
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

    async fn write(
        &self,
        path: &[String],
        body: Bytes,
        condition: WriteCondition,
    ) -> Result<Option<String>, RemoteError> {
        self.check_condition(path, &condition).await?;
        let header_condition = if self.server_checks(&condition).await { condition } else { WriteCondition::Always };
        let condition = header_condition;
        let request_name = name("PUT", path);
        let url = self.url(path);
        let response = self
            .send(&request_name, true, &url, |url| {
                let request = self
                    .request(Method::PUT, url.clone())
                    .header("Content-Type", "application/octet-stream")
                    .body(body.clone());
                match &condition {
                    WriteCondition::Always => request,
                    WriteCondition::CreateOnly => request.header("If-None-Match", "*"),
                    WriteCondition::IfVersion(etag) => request.header("If-Match", etag),
                }
            })
            .await
            .map_err(|error| {
                error.with_status_kinds(|status| match (status, &condition) {
                    (412, WriteCondition::CreateOnly) => Some(RemoteErrorKind::Exists),
                    (412, WriteCondition::IfVersion(_)) => Some(RemoteErrorKind::Changed),
                    (409, _) => Some(RemoteErrorKind::NotFound),
                    _ => None,
                })
            })?;
        Ok(response.headers().get("etag").and_then(|value| value.to_str().ok()).map(str::to_owned))
    }

    async fn make_dir(&self, path: &[String]) -> Result<(), RemoteError> {
        let request_name = name("MKCOL", path);
        let url = self.url(path);
        let method = Method::from_bytes(b"MKCOL").expect("a valid method");
        self.send(&request_name, false, &url, |url| self.request(method.clone(), url.clone()))
            .await
            .map_err(|error| {
                error.with_status_kinds(|status| match status {
                    405 => Some(RemoteErrorKind::Exists),
                    409 => Some(RemoteErrorKind::NotFound),
                    _ => None,
                })
            })
            .map(|_| ())
    }

    async fn rename(&self, from: &[String], to: &[String], overwrite: bool) -> Result<(), RemoteError> {
        let request_name = format!("MOVE /{} -> /{}", from.join("/"), to.join("/"));
        let (url, destination) = (self.url(from), self.url(to));
        let method = Method::from_bytes(b"MOVE").expect("a valid method");
        self.send(&request_name, false, &url, |url| {
            self.request(method.clone(), url.clone())
                .header("Destination", destination.as_str())
                .header("Overwrite", if overwrite { "T" } else { "F" })
        })
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

    async fn remove(&self, path: &[String]) -> Result<(), RemoteError> {
        let request_name = name("DELETE", path);
        let url = self.url(path);
        self.send(&request_name, false, &url, |url| self.request(Method::DELETE, url.clone())).await.map(|_| ())
    }
}
