//! The one storage seam: how a vault format reaches the bytes of a vault. A [`Store`] lists a folder,
//! reads a file (whole, a byte range, or piece by piece), writes a file in one piece (atomically where the
//! server allows, with a condition that detects other writers), creates folders, renames and removes.
//! Paths are segments below the vault's root; errors are [`RemoteError`]s with kinds, never protocol codes.
//! Capabilities a store may lack have defaults (`versions_from_writes`, `renames_keep_versions`, the
//! one-request shortcuts), in the manner of rustic_core's backends.
//!
//! Implementations: [`webdav::DavStore`] (any WebDAV server, over the one WebDAV client
//! [`webdav::DavClient`]), [`sftp::SftpStore`] (an SFTP server over SSH), [`local::LocalStore`] (a folder
//! a sync client keeps) and [`nextcloud::NextcloudClient`] (a Nextcloud user's files over the same WebDAV
//! client), which adds Nextcloud's end-to-end encryption API as an extension of the seam
//! ([`nextcloud::E2eeApi`]: locks, metadata, the encrypted flag; [`nextcloud::Sharing`]: shares and keys).

pub mod error;
pub(crate) mod http;
pub mod local;
pub mod nextcloud;
pub mod sftp;
pub mod webdav;

use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

pub use error::{RemoteError, RemoteErrorKind};
pub use nextcloud::{
    E2eeApi, LockToken, NextcloudClient, RemoteEntry, ServerConfig, ShareInfo, SharePermissions, Sharing,
};

/// Reports bytes transferred so far (for progress bars).
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// A request body produced piece by piece (e.g. encrypted while it is sent).
pub type BodyStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static>>;

/// A file or folder in a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreEntry {
    /// The name in its folder.
    pub name: String,
    /// A folder?
    pub is_dir: bool,
    /// Size in bytes (files).
    pub size: u64,
    /// What changes whenever the file changes: the server's ETag, or size and modification time.
    pub version: String,
    /// Last modification.
    pub modified: Option<SystemTime>,
}

/// When a write may happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteCondition {
    /// Always (replace or create).
    Always,
    /// Only if nothing is there yet ([`RemoteErrorKind::Exists`] otherwise).
    CreateOnly,
    /// Only if the file is still at this version ([`RemoteErrorKind::Changed`] otherwise).
    IfVersion(String),
}

impl WriteCondition {
    /// Whether the write may happen over what is there now (`current`: its version, `None` if nothing
    /// is); if not, the kind and reason of the refusal.
    pub fn allows(&self, current: Option<&str>) -> Result<(), (RemoteErrorKind, &'static str)> {
        use RemoteErrorKind::{Changed, Exists};
        match (self, current) {
            (Self::CreateOnly, Some(_)) => Err((Exists, "exists already")),
            (Self::IfVersion(expected), Some(found)) if expected != found => {
                Err((Changed, "changed since it was read"))
            }
            (Self::IfVersion(_), None) => Err((Changed, "removed since it was read")),
            _ => Ok(()),
        }
    }
}

/// The bytes of a vault, reached somehow.
pub trait Store: Send + Sync {
    /// What this store is, for messages (a URL without credentials, or a local path).
    fn describe(&self) -> String;
    /// The entries of the folder at `path` (not the folder itself); NotFound if it does not exist.
    fn list(&self, path: &[String]) -> impl Future<Output = Result<Vec<StoreEntry>, RemoteError>> + Send;
    /// The entry at `path`; NotFound if it does not exist.
    fn stat(&self, path: &[String]) -> impl Future<Output = Result<StoreEntry, RemoteError>> + Send;
    /// A file's bytes: whole, or the bytes of `range` that exist (a range past the end gives fewer).
    fn read(
        &self,
        path: &[String],
        range: Option<std::ops::Range<u64>>,
    ) -> impl Future<Output = Result<Vec<u8>, RemoteError>> + Send;
    /// A whole file, handed to `on_piece` piece by piece as it arrives; `on_piece` returns `false` to stop
    /// (the call then returns `Ok`). Stores that cannot stream read it whole first.
    fn read_each(
        &self,
        path: &[String],
        on_piece: &mut (dyn FnMut(&[u8]) -> bool + Send),
    ) -> impl Future<Output = Result<(), RemoteError>> + Send {
        async move {
            let whole = self.read(path, None).await?;
            on_piece(&whole);
            Ok(())
        }
    }
    /// Stores a file in one piece if `condition` holds; returns its new version if the store says it.
    fn write(
        &self,
        path: &[String],
        body: Bytes,
        condition: WriteCondition,
    ) -> impl Future<Output = Result<Option<String>, RemoteError>> + Send;
    /// [`Store::write`] of `length` bytes that `body` produces (called again for each retry, producing the
    /// same bytes), so that no copy of the whole body need be held. Stores that cannot stream collect it.
    fn write_streamed(
        &self,
        path: &[String],
        length: u64,
        body: &(dyn Fn() -> BodyStream + Send + Sync),
        condition: WriteCondition,
    ) -> impl Future<Output = Result<Option<String>, RemoteError>> + Send {
        async move {
            use futures_util::TryStreamExt as _;
            let pieces: Vec<Bytes> = body().try_collect().await.map_err(|error| RemoteError::Local {
                request: format!("PUT /{}", path.join("/")),
                kind: RemoteErrorKind::Failed,
                reason: error.to_string(),
            })?;
            let mut whole = Vec::with_capacity(usize::try_from(length).unwrap_or(0));
            for piece in pieces {
                whole.extend_from_slice(&piece);
            }
            self.write(path, Bytes::from(whole), condition).await
        }
    }
    /// Creates a folder (its parent must exist); Exists if something is there.
    fn make_dir(&self, path: &[String]) -> impl Future<Output = Result<(), RemoteError>> + Send;
    /// Creates a folder unless one is there already (its parent must exist).
    fn make_dir_if_missing(&self, path: &[String]) -> impl Future<Output = Result<(), RemoteError>> + Send {
        async move {
            match self.make_dir(path).await {
                Err(error) if error.kind() == RemoteErrorKind::Exists => Ok(()),
                other => other,
            }
        }
    }
    /// Creates a small file that must not exist yet (Exists otherwise), possibly written in place: a
    /// reader may find it empty for a moment, and an interruption may leave it short. For files whose
    /// absence and damage readers treat alike (a folder's id in a node made just before).
    fn create_small(&self, path: &[String], body: Bytes) -> impl Future<Output = Result<(), RemoteError>> + Send {
        async move { self.write(path, body, WriteCondition::CreateOnly).await.map(|_| ()) }
    }
    /// Renames a file or folder; without `overwrite`, Exists if the target exists.
    fn rename(
        &self,
        from: &[String],
        to: &[String],
        overwrite: bool,
    ) -> impl Future<Output = Result<(), RemoteError>> + Send;
    /// Removes a file, or a folder with everything in it.
    fn remove(&self, path: &[String]) -> impl Future<Output = Result<(), RemoteError>> + Send;
    /// Removes what the caller knows is a file (NotFound if nothing is there). Stores that must look
    /// before removing (SFTP removes files and folders with different requests) save that look here.
    fn remove_file(&self, path: &[String]) -> impl Future<Output = Result<(), RemoteError>> + Send {
        self.remove(path)
    }
    /// Removes a folder whose known contents the caller has removed already (NotFound if it is not
    /// there). Anything still in it (another writer's temporary file) goes with it: it is
    /// [`Store::remove`] for a folder, but one request where the store can try an empty folder first.
    fn remove_emptied_dir(&self, path: &[String]) -> impl Future<Output = Result<(), RemoteError>> + Send {
        self.remove(path)
    }
    /// Whether the version [`Store::write`] returns is the one a later listing shows, so that a writer
    /// need not look the file up again (one round trip less per file). WebDAV servers differ in the ETag
    /// they answer a PUT with, so only stores that compute versions themselves say yes.
    fn versions_from_writes(&self) -> bool {
        false
    }
    /// Whether a file's version stays the same when it is renamed (size, modification time, inode), so
    /// that a renamed entry need not be looked up again. WebDAV servers may give a moved file a new ETag.
    fn renames_keep_versions(&self) -> bool {
        false
    }
}

/// A vault location as the user gives it: an `https://` (or loopback `http://`) URL, or a local folder.
pub fn is_url(location: &str) -> bool {
    location.starts_with("https://") || location.starts_with("http://")
}

/// One of the stores, chosen at run time (a URL or a local folder).
#[derive(Debug, Clone)]
pub enum AnyStore {
    /// A WebDAV server.
    Dav(webdav::DavStore),
    /// A local folder.
    Local(local::LocalStore),
    /// A folder on an SFTP server (one connection, shared).
    Sftp(std::sync::Arc<sftp::SftpStore>),
}

/// Implements [`Store`] for `$type` by handing every call, with its capabilities, to the store that
/// `$dispatch!(self, store => call)` picks (a wrapper's field, an enum's variant).
macro_rules! forward_store {
    ($type:ty, $dispatch:ident) => {
        impl $crate::storage::Store for $type {
            fn describe(&self) -> String {
                $dispatch!(self, store => store.describe())
            }
            async fn list(&self, path: &[String]) -> Result<Vec<$crate::storage::StoreEntry>, $crate::storage::RemoteError> {
                $dispatch!(self, store => store.list(path).await)
            }
            async fn stat(&self, path: &[String]) -> Result<$crate::storage::StoreEntry, $crate::storage::RemoteError> {
                $dispatch!(self, store => store.stat(path).await)
            }
            async fn read(&self, path: &[String], range: Option<std::ops::Range<u64>>) -> Result<Vec<u8>, $crate::storage::RemoteError> {
                $dispatch!(self, store => store.read(path, range).await)
            }
            async fn read_each(
                &self,
                path: &[String],
                on_piece: &mut (dyn FnMut(&[u8]) -> bool + Send),
            ) -> Result<(), $crate::storage::RemoteError> {
                $dispatch!(self, store => store.read_each(path, on_piece).await)
            }
            async fn write(
                &self,
                path: &[String],
                body: bytes::Bytes,
                condition: $crate::storage::WriteCondition,
            ) -> Result<Option<String>, $crate::storage::RemoteError> {
                $dispatch!(self, store => store.write(path, body, condition).await)
            }
            async fn write_streamed(
                &self,
                path: &[String],
                length: u64,
                body: &(dyn Fn() -> $crate::storage::BodyStream + Send + Sync),
                condition: $crate::storage::WriteCondition,
            ) -> Result<Option<String>, $crate::storage::RemoteError> {
                $dispatch!(self, store => store.write_streamed(path, length, body, condition).await)
            }
            async fn make_dir(&self, path: &[String]) -> Result<(), $crate::storage::RemoteError> {
                $dispatch!(self, store => store.make_dir(path).await)
            }
            async fn make_dir_if_missing(&self, path: &[String]) -> Result<(), $crate::storage::RemoteError> {
                $dispatch!(self, store => store.make_dir_if_missing(path).await)
            }
            async fn create_small(&self, path: &[String], body: bytes::Bytes) -> Result<(), $crate::storage::RemoteError> {
                $dispatch!(self, store => store.create_small(path, body).await)
            }
            async fn rename(&self, from: &[String], to: &[String], overwrite: bool) -> Result<(), $crate::storage::RemoteError> {
                $dispatch!(self, store => store.rename(from, to, overwrite).await)
            }
            async fn remove(&self, path: &[String]) -> Result<(), $crate::storage::RemoteError> {
                $dispatch!(self, store => store.remove(path).await)
            }
            async fn remove_file(&self, path: &[String]) -> Result<(), $crate::storage::RemoteError> {
                $dispatch!(self, store => store.remove_file(path).await)
            }
            async fn remove_emptied_dir(&self, path: &[String]) -> Result<(), $crate::storage::RemoteError> {
                $dispatch!(self, store => store.remove_emptied_dir(path).await)
            }
            fn versions_from_writes(&self) -> bool {
                $dispatch!(self, store => store.versions_from_writes())
            }
            fn renames_keep_versions(&self) -> bool {
                $dispatch!(self, store => store.renames_keep_versions())
            }
        }
    };
}
pub(crate) use forward_store;

macro_rules! each_store {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyStore::Dav($store) => $call,
            AnyStore::Local($store) => $call,
            AnyStore::Sftp($store) => $call,
        }
    };
}

forward_store!(AnyStore, each_store);

/// A whole file from `store`, reporting the bytes received so far to `progress` (for progress bars).
pub async fn read_reporting<S: Store>(
    store: &S,
    path: &[String],
    progress: Option<Progress>,
) -> Result<Vec<u8>, RemoteError> {
    let mut body = Vec::new();
    store
        .read_each(path, &mut |piece| {
            body.extend_from_slice(piece);
            if let Some(progress) = &progress {
                progress(body.len() as u64);
            }
            true
        })
        .await?;
    Ok(body)
}

/// A request body of `body` in 256 KiB pieces, reporting to `progress` as each is sent.
pub fn body_reporting(body: Bytes, progress: Option<Progress>) -> impl Fn() -> BodyStream + Send + Sync {
    const PIECE: usize = 256 * 1024;
    move || {
        let (body, progress) = (body.clone(), progress.clone());
        let pieces = body.len().div_ceil(PIECE).max(1);
        Box::pin(futures_util::stream::iter((0..pieces).map(move |index| {
            let start = index * PIECE;
            let end = (start + PIECE).min(body.len());
            if let Some(progress) = &progress {
                progress(end as u64);
            }
            Ok(body.slice(start..end))
        })))
    }
}
