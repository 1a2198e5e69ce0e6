//! Any WebDAV server as a [`Store`] (Apache mod_dav, nginx, rclone, ownCloud, Nextcloud without its
//! end-to-end encryption app): the [`DavClient`] below the vault's URL, with Basic authentication over TLS
//! (plain http only to a loopback address unless allowed), and conditional writes checked by the server
//! where it honours `If-Match` (found out once), else just before the write.

use std::time::Duration;

use bytes::Bytes;
use reqwest::Url;
use zeroize::Zeroizing;

use super::client::{body_of, name, DavClient};
use super::propfind::{PropfindEntry, PLAIN_PROPFIND_BODY};
use crate::storage::http::http_client;
use crate::storage::{BodyStream, RemoteError, RemoteErrorKind, Store, StoreEntry, WriteCondition};

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
    client: DavClient,
    /// Whether the server refuses a PUT whose `If-Match` fails (found out once, by [`Self::probe_conditions`]).
    honours_conditions: std::sync::Arc<tokio::sync::OnceCell<bool>>,
}

impl DavStore {
    /// A store for `config`: https, or plain http to loopback only unless allowed; no credentials in the URL.
    pub fn new(mut config: DavConfig) -> Result<Self, RemoteError> {
        if !config.url.username().is_empty() || config.url.password().is_some() {
            return Err(RemoteError::BadUrl(
                "do not put credentials in the URL: use --user and the password prompt".into(),
            ));
        }
        let http = http_client(&mut config.url, config.allow_insecure_http, config.timeout, false)?;
        let client =
            DavClient::new(http, config.url, config.user, config.password, config.timeout, &[], PLAIN_PROPFIND_BODY);
        Ok(Self { client, honours_conditions: Default::default() })
    }

    /// A store over `client` for a server known to honour `If-Match` and `If-None-Match` (Nextcloud).
    pub(crate) fn honouring_conditions(client: DavClient) -> Self {
        Self { client, honours_conditions: std::sync::Arc::new(tokio::sync::OnceCell::new_with(Some(true))) }
    }

    /// The WebDAV client.
    pub(crate) fn client(&self) -> &DavClient {
        &self.client
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
                let never = WriteCondition::IfVersion("\"cloakfs-never\"".into());
                match self.client.put(&probe, 0, &body_of(Bytes::new()), &never).await {
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

    /// The condition to send with the write: itself where the server checks it; else it is checked here
    /// against the entry as it is now (ETags compared weakly) and the write is unconditional.
    async fn condition_to_send(
        &self,
        path: &[String],
        condition: WriteCondition,
    ) -> Result<WriteCondition, RemoteError> {
        if self.server_checks(&condition).await {
            return Ok(condition);
        }
        let current = match self.stat(path).await {
            Ok(entry) => Some(entry.version),
            Err(error) if error.kind() == RemoteErrorKind::NotFound => None,
            Err(error) => return Err(error),
        };
        let weak = |etag: &str| etag.strip_prefix("W/").unwrap_or(etag).to_owned();
        let normalized = match &condition {
            WriteCondition::IfVersion(expected) => WriteCondition::IfVersion(weak(expected)),
            other => other.clone(),
        };
        normalized.allows(current.as_deref().map(weak).as_deref()).map_err(|(kind, reason)| RemoteError::Status {
            request: name("PUT", path),
            status: 412,
            message: reason.into(),
            kind,
        })?;
        Ok(WriteCondition::Always)
    }
}

/// A listed entry as the store sees it.
pub(crate) fn store_entry(entry: &PropfindEntry) -> StoreEntry {
    StoreEntry {
        name: entry.name(),
        is_dir: entry.is_collection,
        size: entry.content_length.or(entry.size).unwrap_or(0),
        version: entry.etag.clone().unwrap_or_default(),
        modified: entry.last_modified.as_deref().and_then(|date| httpdate::parse_http_date(date).ok()),
    }
}

impl Store for DavStore {
    fn describe(&self) -> String {
        self.client.base().to_string()
    }

    async fn list(&self, path: &[String]) -> Result<Vec<StoreEntry>, RemoteError> {
        let found = self.client.propfind(path, 1).await?;
        if found.own.as_ref().is_some_and(|own| !own.is_collection) {
            return Err(RemoteError::Protocol { request: name("PROPFIND", path), reason: "not a folder".into() });
        }
        Ok(found.children.iter().map(store_entry).collect())
    }

    async fn stat(&self, path: &[String]) -> Result<StoreEntry, RemoteError> {
        let found = self.client.propfind(path, 0).await?;
        found.own.as_ref().map(store_entry).ok_or_else(|| RemoteError::Protocol {
            request: name("PROPFIND", path),
            reason: "the answer does not describe the entry asked for".into(),
        })
    }

    async fn read(&self, path: &[String], range: Option<std::ops::Range<u64>>) -> Result<Vec<u8>, RemoteError> {
        self.client.get(path, range).await
    }

    async fn read_each(
        &self,
        path: &[String],
        on_piece: &mut (dyn FnMut(&[u8]) -> bool + Send),
    ) -> Result<(), RemoteError> {
        self.client.get_each(path, on_piece).await
    }

    async fn write(
        &self,
        path: &[String],
        body: Bytes,
        condition: WriteCondition,
    ) -> Result<Option<String>, RemoteError> {
        let condition = self.condition_to_send(path, condition).await?;
        self.client.put(path, body.len() as u64, &body_of(body), &condition).await
    }

    async fn write_streamed(
        &self,
        path: &[String],
        length: u64,
        body: &(dyn Fn() -> BodyStream + Send + Sync),
        condition: WriteCondition,
    ) -> Result<Option<String>, RemoteError> {
        let condition = self.condition_to_send(path, condition).await?;
        self.client.put(path, length, body, &condition).await
    }

    async fn make_dir(&self, path: &[String]) -> Result<(), RemoteError> {
        self.client.mkcol(path).await.map(|_| ())
    }

    async fn rename(&self, from: &[String], to: &[String], overwrite: bool) -> Result<(), RemoteError> {
        self.client.move_to(from, to, overwrite).await
    }

    async fn remove(&self, path: &[String]) -> Result<(), RemoteError> {
        self.client.delete(path).await
    }
}
