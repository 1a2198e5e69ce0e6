//! The `Remote` trait: what the encrypted-folder engine needs from a server, and nothing about HTTP. The
//! Nextcloud client implements it; a fake may implement it for fast unit tests.

use std::future::Future;

use bytes::Bytes;

use super::client::{LockToken, NextcloudClient, RemoteError};
use super::webdav::{Progress, PutResult, RemoteEntry};

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

impl Remote for NextcloudClient {
    async fn list(&self, path: &[String], depth: u8) -> Result<Vec<RemoteEntry>, RemoteError> {
        self.propfind(path, depth).await
    }

    async fn read(
        &self,
        path: &[String],
        range: Option<std::ops::Range<u64>>,
        progress: Option<Progress>,
    ) -> Result<Vec<u8>, RemoteError> {
        self.get(path, range, progress).await
    }

    async fn read_each(
        &self,
        path: &[String],
        on_piece: &mut (dyn FnMut(&[u8]) -> bool + Send),
    ) -> Result<(), RemoteError> {
        self.get_each(path, None, None, on_piece).await
    }

    async fn write(
        &self,
        path: &[String],
        body: Bytes,
        token: Option<&LockToken>,
        progress: Option<Progress>,
    ) -> Result<PutResult, RemoteError> {
        self.put(path, body, token, progress).await
    }

    async fn write_streamed(
        &self,
        path: &[String],
        length: u64,
        body: &(dyn Fn() -> BodyStream + Send + Sync),
        token: Option<&LockToken>,
    ) -> Result<PutResult, RemoteError> {
        self.put_streamed(path, length, body, token).await
    }

    async fn make_folder(&self, path: &[String], token: Option<&LockToken>) -> Result<u64, RemoteError> {
        self.mkcol(path, token).await
    }

    async fn remove(&self, path: &[String], token: Option<&LockToken>) -> Result<(), RemoteError> {
        self.delete(path, token).await
    }

    async fn rename(
        &self,
        from: &[String],
        to: &[String],
        overwrite: bool,
        token: Option<&LockToken>,
    ) -> Result<(), RemoteError> {
        self.move_to(from, to, overwrite, token).await
    }

    async fn set_encrypted(&self, file_id: u64) -> Result<(), RemoteError> {
        NextcloudClient::set_encrypted(self, file_id).await
    }

    async fn lock(&self, file_id: u64, counter: u64, existing: Option<&LockToken>) -> Result<LockToken, RemoteError> {
        self.lock_folder(file_id, counter, existing).await
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
