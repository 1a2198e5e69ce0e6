//! An HTTP client for a Nextcloud server (or `cloakfs serve`): connection rules, authentication, timeouts,
//! retries, and the OCS end-to-end encryption API calls. The engine never sees HTTP: it uses the methods
//! here (and, later, the `Remote` trait built on them).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::crypto::PublicKey;
use crate::remote::{LockToken, RemoteError, RemoteErrorKind};

/// Path of the end-to-end encryption OCS API, version 2.
pub const E2EE_API: &str = "ocs/v2.php/apps/end_to_end_encryption/api/v2";

/// How to reach a server.
#[derive(Clone)]
pub struct ServerConfig {
    /// The server's base URL (e.g. `https://cloud.example.org/`).
    pub base_url: Url,
    /// The user id to log in as.
    pub user: String,
    /// An app password (or the login password, which Nextcloud answers slowly).
    pub password: Zeroizing<String>,
    /// Timeout of every single request.
    pub timeout: Duration,
    /// Permit plain HTTP to a non-loopback host.
    pub allow_insecure_http: bool,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ServerConfig")
            .field("base_url", &self.base_url.as_str())
            .field("user", &self.user)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Attempts for idempotent requests (the first try and two retries).
const ATTEMPTS: u32 = 3;

/// A client for one server and user.
#[derive(Debug, Clone)]
pub struct NextcloudClient {
    pub(crate) http: reqwest::Client,
    pub(crate) config: ServerConfig,
}

fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(address)) => IpAddr::V4(address).is_loopback(),
        Some(url::Host::Ipv6(address)) => IpAddr::V6(address).is_loopback(),
        None => false,
    }
}

/// The HTTP client of every server cloakfs talks to (Nextcloud, any WebDAV server), for `url` (given a
/// trailing slash): https with rustls and the system's trust roots; plain http only to a loopback address
/// or with `allow_insecure_http`; `timeout` for connecting and for each request; redirects followed only
/// with `follow_redirects` (reqwest's default policy, as the Nextcloud client always had); the server's session
/// cookies kept in this process's memory only (Nextcloud then skips the password check of each request:
/// 0.45-0.8 s with a login password, SERVER-BEHAVIOUR.md), gone with it.
pub(crate) fn http_client(
    url: &mut Url,
    allow_insecure_http: bool,
    timeout: Duration,
    follow_redirects: bool,
) -> Result<reqwest::Client, RemoteError> {
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(url) || allow_insecure_http => {}
        "http" => {
            return Err(RemoteError::BadUrl(format!(
                "refusing plain http to {}: use https, or --allow-insecure-http if you really mean it",
                url.host_str().unwrap_or("?")
            )))
        }
        other => return Err(RemoteError::BadUrl(format!("unsupported URL scheme {other:?}: use https"))),
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .tcp_nodelay(true)
        .user_agent(concat!("cloakfs/", env!("CARGO_PKG_VERSION")))
        .cookie_store(true)
        .redirect(if follow_redirects {
            reqwest::redirect::Policy::default()
        } else {
            reqwest::redirect::Policy::none()
        })
        .build()
        .map_err(|error| RemoteError::BadUrl(format!("cannot build the HTTP client: {error}")))
}

impl NextcloudClient {
    /// Builds a client (see [`http_client`]). HTTPS uses rustls with the system's trust roots; plain HTTP is refused unless the
    /// host is a loopback address or `allow_insecure_http` is set.
    pub fn new(mut config: ServerConfig) -> Result<Self, RemoteError> {
        let http = http_client(&mut config.base_url, config.allow_insecure_http, config.timeout, true)?;
        Ok(Self { http, config })
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    pub(crate) fn url(&self, path: &str) -> Result<Url, RemoteError> {
        self.config.base_url.join(path).map_err(|error| RemoteError::BadUrl(format!("bad path {path}: {error}")))
    }

    /// One OCS call; returns `ocs.data`. GETs are retried with backoff on transport errors and 5xx/429.
    async fn ocs(
        &self,
        method: Method,
        endpoint: &str,
        query: &[(&str, &str)],
        form: &[(&str, &str)],
    ) -> Result<Value, RemoteError> {
        self.ocs_call(E2EE_API, method, endpoint, query, form, &[]).await.map(|(data, _)| data)
    }

    /// One OCS call below `api` (e.g. [`E2EE_API`]); returns `ocs.data` and the response headers.
    pub(crate) async fn ocs_call(
        &self,
        api: &str,
        method: Method,
        endpoint: &str,
        query: &[(&str, &str)],
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Result<(Value, reqwest::header::HeaderMap), RemoteError> {
        let request_name = format!("{method} /{api}/{endpoint}");
        let url = self.url(&format!("{api}/{endpoint}"))?;
        let idempotent = method == Method::GET;
        let deadline = Instant::now() + self.config.timeout;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .timeout(remaining(deadline))
                .basic_auth(&self.config.user, Some(self.config.password.as_str()))
                .header("OCS-APIRequest", "true")
                .header("X-E2EE-Supported", "true")
                .header("Accept", "application/json")
                .query(&[("format", "json")])
                .query(query);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            if !form.is_empty() {
                request = request.form(form);
            }
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let response_headers = response.headers().clone();
                    let body = response.text().await;
                    match body {
                        Ok(body) => Ok((status, response_headers, body)),
                        Err(error) => Err(transport(&request_name, &error)),
                    }
                }
                Err(error) => Err(transport(&request_name, &error)),
            };
            let retryable = match &outcome {
                Err(_) => true,
                Ok((status, _, _)) => status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS,
            };
            if idempotent && retryable && attempt < ATTEMPTS && may_retry(deadline, attempt) {
                tracing::debug!(request = %request_name, attempt, "retrying");
                tokio::time::sleep(backoff(attempt)).await;
                continue;
            }
            let (status, response_headers, body) = outcome?;
            return parse_ocs(&request_name, status.as_u16(), &body).map(|data| (data, response_headers));
        }
    }

    /// `PUT /encrypted/{id}`: flags an empty folder as end-to-end encrypted.
    pub async fn set_encrypted(&self, file_id: u64) -> Result<(), RemoteError> {
        self.ocs(Method::PUT, &format!("encrypted/{file_id}"), &[], &[]).await.map(|_| ())
    }

    /// `DELETE /encrypted/{id}`: removes the flag and the metadata (Nextcloud's RFC: clients should never
    /// need this; it exists for cleaning up a half-created folder).
    pub async fn unset_encrypted(&self, file_id: u64) -> Result<(), RemoteError> {
        self.ocs(Method::DELETE, &format!("encrypted/{file_id}"), &[], &[]).await.map(|_| ())
    }

    /// `POST /lock/{id}` with `X-NC-E2EE-COUNTER`. 423: locked by someone else; 412: stale counter.
    pub async fn lock_folder(
        &self,
        file_id: u64,
        counter: u64,
        existing: Option<&LockToken>,
    ) -> Result<LockToken, RemoteError> {
        let counter_text = counter.to_string();
        let form: Vec<(&str, &str)> = existing.map(|token| vec![("e2e-token", token.0.as_str())]).unwrap_or_default();
        let (data, _) = self
            .ocs_call(
                E2EE_API,
                Method::POST,
                &format!("lock/{file_id}"),
                &[],
                &form,
                &[("X-NC-E2EE-COUNTER", &counter_text)],
            )
            .await
            .map_err(|error| {
                error.with_status_kinds(|status| (status == 412).then_some(RemoteErrorKind::CounterRefused))
            })?;
        lock_token_of(&data)
    }

    /// `DELETE /lock/{id}`: commits what was written under the lock, or with `abort` rolls it back.
    pub async fn unlock_folder(&self, file_id: u64, token: &LockToken, abort: bool) -> Result<(), RemoteError> {
        let query: &[(&str, &str)] = if abort { &[("abort", "true")] } else { &[] };
        self.ocs_call(E2EE_API, Method::DELETE, &format!("lock/{file_id}"), query, &[], &[("e2e-token", &token.0)])
            .await
            .map(|_| ())
            .map_err(lock_lost_kinds)
    }

    /// `GET /meta-data/{id}`: the folder's metadata JSON and its signature; `None` if there is none (404).
    pub async fn folder_metadata(&self, file_id: u64) -> Result<Option<(String, String)>, RemoteError> {
        let request = "GET meta-data";
        match self.ocs_call(E2EE_API, Method::GET, &format!("meta-data/{file_id}"), &[], &[], &[]).await {
            Ok((data, headers)) => {
                let json = string_field(&data, "meta-data", request)?;
                let signature = headers
                    .get("x-nc-e2ee-signature")
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned)
                    .ok_or_else(|| RemoteError::Protocol {
                        request: request.into(),
                        reason: "no X-NC-E2EE-SIGNATURE header".into(),
                    })?;
                Ok(Some((json, signature)))
            }
            Err(error) if error.status() == Some(404) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// `POST` (create) or `PUT` (update) `/meta-data/{id}` under a lock, with the detached signature.
    pub async fn store_folder_metadata(
        &self,
        file_id: u64,
        token: &LockToken,
        json: &str,
        signature_base64: &str,
        create: bool,
    ) -> Result<(), RemoteError> {
        let method = if create { Method::POST } else { Method::PUT };
        self.ocs_call(
            E2EE_API,
            method,
            &format!("meta-data/{file_id}"),
            &[],
            &[("metaData", json)],
            &[("e2e-token", &token.0), ("X-NC-E2EE-SIGNATURE", signature_base64)],
        )
        .await
        .map(|_| ())
        .map_err(lock_lost_kinds)
    }

    /// `GET /server-key`: the server's public key.
    pub async fn server_key(&self) -> Result<PublicKey, RemoteError> {
        let data = self.ocs(Method::GET, "server-key", &[], &[]).await?;
        let pem = string_field(&data, "public-key", "GET server-key")?;
        PublicKey::from_pem(&pem).map_err(|error| RemoteError::Protocol {
            request: "GET server-key".into(),
            reason: format!("server key: {error}"),
        })
    }

    /// `GET /public-key?users=[...]`: certificates (PEM) by user id; `None` when any user has no key (404).
    pub async fn public_keys(&self, users: &[&str]) -> Result<Option<BTreeMap<String, String>>, RemoteError> {
        let list = serde_json::to_string(users).expect("a list of strings serialises");
        match self.ocs(Method::GET, "public-key", &[("users", &list)], &[]).await {
            Ok(data) => public_keys_of(&data).map(Some),
            Err(error) if error.status() == Some(404) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// `POST /public-key`: submits a certificate request; returns the issued certificate (PEM).
    pub async fn submit_certificate_request(&self, csr_pem: &str) -> Result<String, RemoteError> {
        let data = self.ocs(Method::POST, "public-key", &[], &[("csr", csr_pem)]).await?;
        string_field(&data, "public-key", "POST public-key")
    }

    /// `GET /private-key`: the wrapped private key, `None` if none is stored (404).
    pub async fn wrapped_private_key(&self) -> Result<Option<Zeroizing<String>>, RemoteError> {
        match self.ocs(Method::GET, "private-key", &[], &[]).await {
            Ok(data) => Ok(Some(Zeroizing::new(string_field(&data, "private-key", "GET private-key")?))),
            Err(error) if error.status() == Some(404) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// `POST /private-key`: stores the wrapped private key.
    pub async fn store_wrapped_private_key(&self, wrapped: &str) -> Result<(), RemoteError> {
        self.ocs(Method::POST, "private-key", &[], &[("privateKey", wrapped)]).await.map(|_| ())
    }
}

/// Time left until `deadline` (at least 1 ms: reqwest treats zero as no time at all).
/// A request made with our lock token: 403 (not our token), 404 (no lock) and 412 (folder not locked) say
/// that the server no longer holds our lock (SERVER-BEHAVIOUR.md, meta-data and unlock).
fn lock_lost_kinds(error: RemoteError) -> RemoteError {
    error.with_status_kinds(|status| matches!(status, 403 | 404 | 412).then_some(RemoteErrorKind::LockLost))
}

pub(crate) fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))
}

/// Whether a retry after `backoff(attempt)` still starts well before `deadline` (a call with retries never
/// takes longer than one `--timeout` in all).
pub(crate) fn may_retry(deadline: Instant, attempt: u32) -> bool {
    Instant::now() + backoff(attempt) + Duration::from_millis(100) < deadline
}

/// Delay before retry `attempt` (1-based): 200 ms, 400 ms, ...
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200 * u64::from(attempt))
}

pub(crate) fn transport(request: &str, error: &reqwest::Error) -> RemoteError {
    let reason = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        format!("cannot connect: {}", root_cause(error))
    } else {
        root_cause(error)
    };
    RemoteError::Transport { request: request.to_owned(), reason }
}

pub(crate) fn root_cause(error: &dyn std::error::Error) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// The `ocs.data` of an OCS answer with HTTP `status` and `body` (any bytes a server may send), or the
/// error it stands for: 401, a non-2xx status with the server's message (at most 200 characters of a
/// body that is not OCS JSON), or a 2xx answer that is not OCS JSON.
pub fn parse_ocs(request: &str, status: u16, body: &str) -> Result<Value, RemoteError> {
    let status = StatusCode::from_u16(status).map_err(|_| RemoteError::Protocol {
        request: request.to_owned(),
        reason: format!("impossible HTTP status {status}"),
    })?;
    if status == StatusCode::UNAUTHORIZED {
        return Err(RemoteError::Unauthorized { request: request.to_owned() });
    }
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let data = parsed.as_ref().and_then(|value| value.pointer("/ocs/data")).cloned();
    if !status.is_success() {
        let message = data
            .as_ref()
            .and_then(|data| data.get("message"))
            .and_then(Value::as_str)
            .filter(|message| !message.is_empty())
            .map(str::to_owned)
            .or_else(|| {
                parsed
                    .as_ref()
                    .and_then(|value| value.pointer("/ocs/meta/message"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| body.chars().take(200).collect());
        return Err(RemoteError::http_status(request, status.as_u16(), message));
    }
    data.ok_or_else(|| RemoteError::Protocol { request: request.to_owned(), reason: "not an OCS JSON answer".into() })
}

fn string_field(data: &Value, field: &str, request: &str) -> Result<String, RemoteError> {
    data.get(field).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| RemoteError::Protocol {
        request: request.to_owned(),
        reason: format!("missing field {field:?}"),
    })
}

/// The lock token in the `ocs.data` of `POST /lock/{id}`: 1 to 256 printable ASCII characters (it is sent
/// back in a header).
pub fn lock_token_of(data: &Value) -> Result<LockToken, RemoteError> {
    let token = string_field(data, "e2e-token", "POST lock")?;
    if token.is_empty() || token.len() > 256 || !token.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(RemoteError::Protocol { request: "POST lock".into(), reason: "unusable lock token".into() });
    }
    Ok(LockToken(token))
}

/// The certificates (PEM, not yet parsed or trusted) by user id in the `ocs.data` of `GET /public-key`.
pub fn public_keys_of(data: &Value) -> Result<BTreeMap<String, String>, RemoteError> {
    let keys = data.get("public-keys").and_then(Value::as_object).ok_or_else(|| RemoteError::Protocol {
        request: "GET public-key".into(),
        reason: "no public-keys object".into(),
    })?;
    Ok(keys.iter().filter_map(|(user, pem)| pem.as_str().map(|pem| (user.clone(), pem.to_owned()))).collect())
}
