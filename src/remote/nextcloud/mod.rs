//! The Nextcloud implementation of [`Remote`]: the HTTP client for Nextcloud's APIs (OCS end-to-end
//! encryption API v2 and WebDAV), login flow v2, PROPFIND parsing, and trust on first use of the server's
//! and users' keys. HTTP status codes are read here and nowhere above: they become
//! [`RemoteErrorKind`](super::RemoteErrorKind)s.

pub mod client;
pub mod login;
pub mod propfind;
pub mod sharing;
pub mod trust;
pub mod webdav;

use bytes::Bytes;

use super::{BodyStream, LockToken, Progress, PutResult, Remote, RemoteEntry, RemoteError};
use client::NextcloudClient;

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
