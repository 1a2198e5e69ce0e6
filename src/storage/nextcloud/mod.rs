//! A Nextcloud server (or `cloakfs serve`) as storage: the user's files reached with the one WebDAV client
//! (a [`Store`] at `/remote.php/dav/files/<user>/`), and the end-to-end encryption API as an extension of
//! that seam ([`E2eeApi`]: PROPFIND with Nextcloud's properties, folders with their file ids, the encrypted
//! flag, locks with counters, writes under a lock, folder metadata) and [`Sharing`] (user shares, users'
//! certificates, file drops). The OCS calls are in [`ocs`], the share API in [`sharing`], Login Flow v2 in
//! [`login`]. HTTP status codes are read here and in [`super::webdav`], nowhere above.

pub mod login;
pub mod ocs;
pub mod sharing;

use std::future::Future;
use std::time::{Duration, SystemTime};

use reqwest::Url;
use zeroize::Zeroizing;

use super::webdav::propfind::{PropfindEntry, PROPFIND_REQUEST_BODY};
use super::webdav::{DavClient, DavStore};
use super::{RemoteError, Store};

/// Headers of every WebDAV request to Nextcloud (the end-to-end encryption app answers encrypted folders
/// only to clients that say they support it).
const DAV_HEADERS: &[(&str, &str)] = &[("X-E2EE-Supported", "true"), ("OCS-APIRequest", "true")];

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

/// A lock token of the end-to-end encryption API (`e2e-token`). Not secret from the server, but not logged.
#[derive(Clone, PartialEq, Eq)]
pub struct LockToken(pub String);

impl std::fmt::Debug for LockToken {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("LockToken(..)")
    }
}

/// A file or folder as Nextcloud lists it (PROPFIND with its properties).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEntry {
    /// The name in its parent (percent-decoded); empty for the user's root.
    pub name: String,
    /// `oc:fileid`.
    pub file_id: u64,
    /// A folder?
    pub is_dir: bool,
    /// Size in bytes (files).
    pub size: u64,
    /// The entity tag.
    pub etag: String,
    /// Last modification.
    pub modified: Option<SystemTime>,
    /// Flagged end-to-end encrypted (folders).
    pub is_encrypted: bool,
    /// The folder's metadata and signature, if the server sent them.
    pub metadata: Option<(String, String)>,
}

impl RemoteEntry {
    fn of(entry: PropfindEntry, request: &str) -> Result<Self, RemoteError> {
        let file_id = entry.file_id.ok_or_else(|| RemoteError::Protocol {
            request: request.to_owned(),
            reason: "an entry has no oc:fileid".into(),
        })?;
        let listed = super::webdav::store::store_entry(&entry);
        Ok(Self {
            name: listed.name,
            file_id,
            is_dir: listed.is_dir,
            size: listed.size,
            etag: listed.version,
            modified: listed.modified,
            is_encrypted: entry.is_encrypted.unwrap_or(false),
            metadata: match (entry.e2ee_metadata, entry.e2ee_metadata_signature) {
                (Some(json), Some(signature)) if !json.is_empty() => Some((json, signature)),
                _ => None,
            },
        })
    }
}

/// Nextcloud's end-to-end encryption API, an extension of the storage seam: what an encrypted folder needs
/// beyond bytes. Writes inside an encrypted folder are made through [`E2eeApi::under_lock`].
pub trait E2eeApi: Store + Sized {
    /// The same store with every request made under the folder lock `token`.
    fn under_lock(&self, token: &LockToken) -> Self;
    /// The entry at `path` first, then (depth 1) its children, with Nextcloud's properties.
    fn list_detailed(
        &self,
        path: &[String],
        depth: u8,
    ) -> impl Future<Output = Result<Vec<RemoteEntry>, RemoteError>> + Send;
    /// Creates a folder; returns its file id.
    fn make_folder(&self, path: &[String]) -> impl Future<Output = Result<u64, RemoteError>> + Send;
    /// Flags an empty folder end-to-end encrypted.
    fn set_encrypted(&self, file_id: u64) -> impl Future<Output = Result<(), RemoteError>> + Send;
    /// Locks a folder with a counter.
    fn lock(&self, file_id: u64, counter: u64) -> impl Future<Output = Result<LockToken, RemoteError>> + Send;
    /// Unlocks: commits, or with `abort` rolls back.
    fn unlock(
        &self,
        file_id: u64,
        token: &LockToken,
        abort: bool,
    ) -> impl Future<Output = Result<(), RemoteError>> + Send;
    /// A folder's metadata and signature.
    fn metadata(&self, file_id: u64) -> impl Future<Output = Result<Option<(String, String)>, RemoteError>> + Send;
    /// Stores a folder's metadata (create or update) under a lock.
    fn store_metadata(
        &self,
        file_id: u64,
        token: &LockToken,
        json: &str,
        signature_base64: &str,
        create: bool,
    ) -> impl Future<Output = Result<(), RemoteError>> + Send;
}

/// What a share allows its recipient (Nextcloud's permission bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharePermissions {
    /// Read only (1).
    Read,
    /// Read, update, create and delete (15): a member who writes.
    Write,
    /// Create only (4): a file drop; the recipient uploads but cannot read.
    Drop,
}

impl SharePermissions {
    /// Nextcloud's permission bits.
    pub fn bits(self) -> i64 {
        match self {
            Self::Read => 1,
            Self::Write => 15,
            Self::Drop => 4,
        }
    }
}

/// A share as the server lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareInfo {
    /// The server's share id.
    pub id: String,
    /// Who it is shared with.
    pub recipient: String,
    /// Nextcloud's permission bits.
    pub permissions: i64,
    /// A share with a user (type 0), as opposed to links, groups or federated shares.
    pub is_user_share: bool,
}

/// A server that shares folders with other users and hands out their certificates (Nextcloud's share API
/// and the end-to-end encryption keys API). What a share means for the keys is the vault's business
/// (src/vault/members.rs): the server only decides who may reach the ciphertext.
pub trait Sharing: E2eeApi {
    /// Users' certificates (PEM) by user id; `None` when any of them has no keys.
    fn certificates(
        &self,
        users: &[&str],
    ) -> impl Future<Output = Result<Option<std::collections::BTreeMap<String, String>>, RemoteError>> + Send;
    /// Shares the folder at `path` with `recipient`.
    fn share(
        &self,
        path: &[String],
        recipient: &str,
        permissions: SharePermissions,
    ) -> impl Future<Output = Result<ShareInfo, RemoteError>> + Send;
    /// The shares of the folder at `path`.
    fn shares(&self, path: &[String]) -> impl Future<Output = Result<Vec<ShareInfo>, RemoteError>> + Send;
    /// Removes a share.
    fn unshare(&self, id: &str) -> impl Future<Output = Result<(), RemoteError>> + Send;
    /// Adds file-drop entries (a JSON object, server name to entry) to a top folder's metadata.
    fn add_filedrop(&self, file_id: u64, entries_json: &str) -> impl Future<Output = Result<(), RemoteError>> + Send;
}

/// A client for one server and user: the user's files over WebDAV, and the OCS APIs.
#[derive(Debug, Clone)]
pub struct NextcloudClient {
    pub(crate) http: reqwest::Client,
    pub(crate) config: ServerConfig,
    /// The user's files (`/remote.php/dav/files/<user>/`).
    files: DavStore,
}

impl NextcloudClient {
    /// Builds a client: https with rustls and the system's trust roots; plain http is refused unless the
    /// host is a loopback address or `allow_insecure_http` is set.
    pub fn new(mut config: ServerConfig) -> Result<Self, RemoteError> {
        let http = super::http::http_client(&mut config.base_url, config.allow_insecure_http, config.timeout, true)?;
        let user_segment = percent_encoding::utf8_percent_encode(&config.user, super::webdav::client::SEGMENT);
        let files_url = config
            .base_url
            .join(&format!("remote.php/dav/files/{user_segment}/"))
            .map_err(|error| RemoteError::BadUrl(format!("bad server URL: {error}")))?;
        let dav = DavClient::new(
            http.clone(),
            files_url,
            Some(config.user.clone()),
            config.password.clone(),
            config.timeout,
            DAV_HEADERS,
            PROPFIND_REQUEST_BODY,
        );
        Ok(Self { http, config, files: DavStore::honouring_conditions(dav) })
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    pub(crate) fn url(&self, path: &str) -> Result<Url, RemoteError> {
        self.config.base_url.join(path).map_err(|error| RemoteError::BadUrl(format!("bad path {path}: {error}")))
    }

    /// The WebDAV URL of `segments` below the user's root.
    pub fn dav_url(&self, segments: &[String]) -> Url {
        self.files.client().url(segments)
    }
}

/// The user's files.
macro_rules! files {
    ($self:ident, $store:ident => $call:expr) => {{
        let $store = &$self.files;
        $call
    }};
}

super::forward_store!(NextcloudClient, files);

impl E2eeApi for NextcloudClient {
    fn under_lock(&self, token: &LockToken) -> Self {
        Self { files: DavStore::honouring_conditions(self.files.client().under_lock(token)), ..self.clone() }
    }

    async fn list_detailed(&self, path: &[String], depth: u8) -> Result<Vec<RemoteEntry>, RemoteError> {
        let request = super::webdav::client::name("PROPFIND", path);
        let mut found = self.files.client().propfind(path, depth).await?;
        // The entry itself first, then its children. Nextcloud lists it first: behind a proxy that rewrites
        // paths, its href may not be the one asked for.
        let own = match found.own {
            Some(own) => own,
            None if !found.children.is_empty() => found.children.remove(0),
            None => return Err(RemoteError::Protocol { request, reason: "empty multistatus".into() }),
        };
        std::iter::once(own).chain(found.children).map(|entry| RemoteEntry::of(entry, &request)).collect()
    }

    async fn make_folder(&self, path: &[String]) -> Result<u64, RemoteError> {
        let file_id = self.files.client().mkcol(path).await?;
        match file_id.as_deref().and_then(parse_oc_file_id) {
            Some(file_id) => Ok(file_id),
            None => Ok(self.list_detailed(path, 0).await?[0].file_id),
        }
    }

    async fn set_encrypted(&self, file_id: u64) -> Result<(), RemoteError> {
        NextcloudClient::set_encrypted(self, file_id).await
    }

    async fn lock(&self, file_id: u64, counter: u64) -> Result<LockToken, RemoteError> {
        self.lock_folder(file_id, counter, None).await
    }

    async fn unlock(&self, file_id: u64, token: &LockToken, abort: bool) -> Result<(), RemoteError> {
        self.unlock_folder(file_id, token, abort).await
    }

    async fn metadata(&self, file_id: u64) -> Result<Option<(String, String)>, RemoteError> {
        self.folder_metadata(file_id).await
    }

    async fn store_metadata(
        &self,
        file_id: u64,
        token: &LockToken,
        json: &str,
        signature_base64: &str,
        create: bool,
    ) -> Result<(), RemoteError> {
        self.store_folder_metadata(file_id, token, json, signature_base64, create).await
    }
}

/// Leading digits of an `OC-FileId` (`00000089ocabc` is 89).
pub fn parse_oc_file_id(text: &str) -> Option<u64> {
    let digits: String = text.trim().chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|&id| id > 0)
}
