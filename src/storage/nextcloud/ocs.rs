//! Nextcloud's OCS calls (or `cloakfs serve`'s): the end-to-end encryption API v2 (the encrypted flag,
//! locks with counters, folder metadata, the server's and users' keys), with retries of idempotent calls and
//! the statuses of each call turned into [`RemoteErrorKind`]s.

use std::collections::BTreeMap;
use std::time::Instant;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use zeroize::Zeroizing;

use super::{LockToken, NextcloudClient};
use crate::crypto::PublicKey;
use crate::storage::http::{backoff, may_retry, remaining, transport};
use crate::storage::{RemoteError, RemoteErrorKind};

/// Path of the end-to-end encryption OCS API, version 2.
pub const E2EE_API: &str = "ocs/v2.php/apps/end_to_end_encryption/api/v2";

/// Attempts for idempotent OCS calls (the first try and two retries).
const ATTEMPTS: u32 = 3;

impl NextcloudClient {
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

/// A request made with our lock token: 403 (not our token), 404 (no lock) and 412 (folder not locked) say
/// that the server no longer holds our lock (SERVER-BEHAVIOUR.md, meta-data and unlock).
fn lock_lost_kinds(error: RemoteError) -> RemoteError {
    error.with_status_kinds(|status| matches!(status, 403 | 404 | 412).then_some(RemoteErrorKind::LockLost))
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
