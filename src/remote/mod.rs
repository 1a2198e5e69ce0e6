//! What the engine needs from a place that stores encrypted folders, and nothing about how it is reached:
//! the [`Remote`] trait and its vocabulary (listed entries, write results, progress, body streams, lock
//! tokens, errors and their kinds). A backend implements the trait; the engine (src/vault, src/mount) uses
//! only what is defined here. [`nextcloud`] is the Nextcloud backend (OCS end-to-end encryption API v2 and
//! WebDAV); a second backend (another server API, another transport) plugs in beside it.

pub mod error;
pub mod nextcloud;

use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

pub use error::{RemoteError, RemoteErrorKind};
pub use nextcloud::client::{NextcloudClient, ServerConfig};

/// Reports bytes transferred so far (for progress bars).
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// A file or folder as listed by PROPFIND.
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

/// What a PUT returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutResult {
    /// The file id (`OC-FileId`), if sent.
    pub file_id: Option<u64>,
    /// The new ETag, if sent.
    pub etag: Option<String>,
}

/// A lock token of the end-to-end encryption API (`e2e-token`). Not secret from the server, but not logged.
#[derive(Clone, PartialEq, Eq)]
pub struct LockToken(pub String);

impl std::fmt::Debug for LockToken {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("LockToken(..)")
    }
}

/// A request body produced piece by piece (e.g. encrypted while it is sent).
pub type BodyStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static>>;

/// A server holding encrypted folders (paths are segments below the user's root).
pub trait Remote: Send + Sync {
    /// The entry at `path` first, then (depth 1) its children.
    fn list(&self, path: &[String], depth: u8) -> impl Future<Output = Result<Vec<RemoteEntry>, RemoteError>> + Send;
    /// A file's bytes (whole, or `start..end`).
    fn read(
        &self,
        path: &[String],
        range: Option<std::ops::Range<u64>>,
        progress: Option<Progress>,
    ) -> impl Future<Output = Result<Vec<u8>, RemoteError>> + Send;
    /// A whole file, handed to `on_piece` piece by piece as it arrives; `on_piece` returns `false` to stop
    /// (the call then returns `Ok`).
    fn read_each(
        &self,
        path: &[String],
        on_piece: &mut (dyn FnMut(&[u8]) -> bool + Send),
    ) -> impl Future<Output = Result<(), RemoteError>> + Send;
    /// Stores a file.
    fn write(
        &self,
        path: &[String],
        body: Bytes,
        token: Option<&LockToken>,
        progress: Option<Progress>,
    ) -> impl Future<Output = Result<PutResult, RemoteError>> + Send;
    /// Stores a file of `length` bytes whose body `body` produces; `body` is called again for each retry
    /// and must produce the same bytes.
    fn write_streamed(
        &self,
        path: &[String],
        length: u64,
        body: &(dyn Fn() -> BodyStream + Send + Sync),
        token: Option<&LockToken>,
    ) -> impl Future<Output = Result<PutResult, RemoteError>> + Send;
    /// Creates a folder; returns its file id.
    fn make_folder(
        &self,
        path: &[String],
        token: Option<&LockToken>,
    ) -> impl Future<Output = Result<u64, RemoteError>> + Send;
    /// Removes a file or folder.
    fn remove(
        &self,
        path: &[String],
        token: Option<&LockToken>,
    ) -> impl Future<Output = Result<(), RemoteError>> + Send;
    /// Moves a file or folder.
    fn rename(
        &self,
        from: &[String],
        to: &[String],
        overwrite: bool,
        token: Option<&LockToken>,
    ) -> impl Future<Output = Result<(), RemoteError>> + Send;
    /// Flags an empty folder end-to-end encrypted.
    fn set_encrypted(&self, file_id: u64) -> impl Future<Output = Result<(), RemoteError>> + Send;
    /// Locks a folder with a counter (or re-acquires an existing token).
    fn lock(
        &self,
        file_id: u64,
        counter: u64,
        existing: Option<&LockToken>,
    ) -> impl Future<Output = Result<LockToken, RemoteError>> + Send;
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
/// and the end-to-end encryption keys API). What a share means for the keys is the engine's business
/// (src/vault/members.rs): the server only decides who may reach the ciphertext.
pub trait Sharing: Remote {
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
