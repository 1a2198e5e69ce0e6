//! Folder-level access for a long-lived client (the mount): open a folder of a tree once, then list and
//! revalidate folders by their server paths, read single blobs, and change several folders under one lock
//! held across many operations (the mount's commit batches).

use bytes::Bytes;

use super::{lock_backoff, split_clear_path, FolderView, Target, TreeRoot, Vault, VaultError};
use crate::crypto::file_cipher::{BlobDecryptor, PlaintextSink};
use crate::metadata::{encode_sub_folder, DecodedFolder, FileEntry, FolderMetadata, MetadataDocument, MetadataError};
use crate::storage::{E2eeApi, LockToken, RemoteEntry, RemoteErrorKind, WriteCondition};

/// A folder locked for a change, freshly read under the lock.
#[derive(Debug)]
pub struct LockedFolder {
    /// The lock token (sent with every write under the lock).
    pub token: LockToken,
    /// The counter the lock was taken with; the folder's next metadata must carry it.
    pub counter: u64,
    /// The folder as read under the lock.
    pub view: FolderView,
}

impl<R: E2eeApi> Vault<R> {
    /// Resolves `clear_path` to a folder of an encrypted tree (the mount root). A top folder with file drops
    /// for this user gets them moved into its files first.
    pub async fn open_folder(&self, clear_path: &str) -> Result<(TreeRoot, FolderView), VaultError> {
        let clear = split_clear_path(clear_path)?;
        let mut resolved = self.resolve_in_tree(&clear).await?;
        if let (tree, Target::Folder(view)) = &resolved {
            if view.is_top && self.has_filedrop_for_me(view) {
                self.take_in_drops(tree).await?;
                resolved = self.resolve_in_tree(&clear).await?;
            }
        }
        match resolved {
            (tree, Target::Folder(view)) => Ok((tree, view)),
            (_, Target::File { .. }) => Err(VaultError::NotAFolder),
            (_, Target::Missing { .. }) => Err(VaultError::NotFound),
        }
    }

    /// Reads and verifies the folder at `remote_path` together with its listing (for blob sizes and times):
    /// one depth-1 PROPFIND, plus the OCS call when the server does not return metadata as a property.
    pub async fn list_folder(
        &self,
        tree: &TreeRoot,
        remote_path: &[String],
    ) -> Result<(FolderView, Vec<RemoteEntry>), VaultError> {
        let mut entries = match self.remote.list_detailed(remote_path, 1).await {
            Err(error) if error.kind() == RemoteErrorKind::NotFound => return Err(VaultError::NotFound),
            other => other?,
        };
        let own = entries.remove(0);
        let view = self.view_of(tree, remote_path, own).await?;
        Ok((view, entries))
    }

    /// Reads and verifies the folder at `remote_path` alone (a depth-0 PROPFIND): a cheap check whether its
    /// metadata counter moved.
    pub async fn folder_view(&self, tree: &TreeRoot, remote_path: &[String]) -> Result<FolderView, VaultError> {
        self.load_folder(tree, remote_path).await
    }

    /// Downloads the blob `server_name` of the folder at `folder_path`, verifies it against `entry`'s tag
    /// and decrypts it into `sink` (which releases it only once the tag verified). Returns the plaintext
    /// length.
    pub async fn read_blob<S: PlaintextSink + Send>(
        &self,
        folder_path: &[String],
        server_name: &str,
        entry: &FileEntry,
        sink: &mut S,
    ) -> Result<u64, VaultError> {
        let mut path = folder_path.to_vec();
        path.push(server_name.to_owned());
        // Pipelined: each piece is decrypted into the sink as it arrives (unverified until the tag at the end
        // checks out; the sink releases nothing before), so no copy of the whole ciphertext is held.
        let content_error = |source| VaultError::Content { server_name: server_name.to_owned(), source };
        let mut decryptor =
            BlobDecryptor::new(&entry.key, &entry.nonce, Some(&entry.authentication_tag)).map_err(content_error)?;
        let mut failure = None;
        let received = self
            .remote
            .read_each(&path, &mut |piece| match decryptor.feed(piece, sink) {
                Ok(()) => true,
                Err(error) => {
                    failure = Some(error);
                    false
                }
            })
            .await;
        if let Some(error) = failure {
            return Err(content_error(error));
        }
        if let Err(error) = received {
            sink.discard();
            return Err(match error.kind() {
                RemoteErrorKind::NotFound => VaultError::MissingBlob(server_name.to_owned()),
                _ => error.into(),
            });
        }
        decryptor.finish(sink).map_err(content_error)
    }

    /// Locks the folder at `remote_path` for a change with the next counter, waiting while another client
    /// holds it (423) and counting higher when the server knows a higher counter (412). Returns the folder as
    /// read after the lock was granted.
    ///
    /// `known` is the folder's file id and counter as the caller last saw them: the first attempt then
    /// skips reading the folder before locking.
    pub async fn lock_folder(
        &self,
        tree: &TreeRoot,
        remote_path: &[String],
        known: Option<(u64, u64)>,
    ) -> Result<LockedFolder, VaultError> {
        let mut minimum_counter = 0u64;
        // On 412 the next counter is higher by 1, 2, 4, ...: the server's counter can be far above the
        // metadata's (a client that locked with a large counter); gaps are allowed, only growth is required.
        let mut stale_step = 1u64;
        let mut file_id = 0;
        let mut known = known;
        for attempt in 1..=self.options.lock_attempts {
            let (id, current) = match known.take() {
                Some(known) => known,
                None => {
                    let before = self.load_folder(tree, remote_path).await?;
                    (before.file_id, before.folder().counter)
                }
            };
            file_id = id;
            let counter = (current + 1).max(minimum_counter);
            match self.remote.lock(file_id, counter).await {
                Ok(token) => {
                    let view = match self.load_folder(tree, remote_path).await {
                        Ok(view) => view,
                        Err(error) => {
                            self.abort(file_id, &token).await;
                            return Err(error);
                        }
                    };
                    if view.folder().counter >= counter {
                        // Changed between our read and the lock: count higher.
                        self.abort(file_id, &token).await;
                        minimum_counter = view.folder().counter + 1;
                        continue;
                    }
                    return Ok(LockedFolder { token, counter, view });
                }
                Err(error) if error.kind() == RemoteErrorKind::Locked => {
                    tracing::debug!(file_id, attempt, "folder locked by another client; waiting");
                    tokio::time::sleep(lock_backoff(attempt)).await;
                }
                Err(error) if error.kind() == RemoteErrorKind::CounterRefused => {
                    tracing::debug!(file_id, counter, "stale counter; retrying higher");
                    minimum_counter = counter.saturating_add(stale_step);
                    stale_step = stale_step.saturating_mul(2);
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(VaultError::Busy(file_id))
    }

    /// Locks folder `file_id` with exactly `counter`, waiting while another client holds it; `None` when the
    /// server refuses the counter (412: the folder's metadata changed since the caller read it, or its
    /// counter is ahead). A success proves that nobody wrote the folder's metadata since the caller read
    /// the version whose counter is `counter - 1`: the server's counter only grows with metadata written
    /// under a lock, so the caller's copy is current and need not be read again.
    pub async fn lock_at_counter(&self, file_id: u64, counter: u64) -> Result<Option<LockToken>, VaultError> {
        for attempt in 1..=self.options.lock_attempts {
            match self.remote.lock(file_id, counter).await {
                Ok(token) => return Ok(Some(token)),
                Err(error) if error.kind() == RemoteErrorKind::Locked => {
                    tracing::debug!(file_id, attempt, "folder locked by another client; waiting");
                    tokio::time::sleep(lock_backoff(attempt)).await;
                }
                Err(error) if error.kind() == RemoteErrorKind::CounterRefused => return Ok(None),
                Err(error) => return Err(error.into()),
            }
        }
        Err(VaultError::Busy(file_id))
    }

    /// Writes `folder` as the new metadata of `view` under `token` (the caller sets its counter).
    pub async fn store_folder(
        &self,
        tree: &TreeRoot,
        view: &FolderView,
        folder: &FolderMetadata,
        token: &LockToken,
    ) -> Result<(), VaultError> {
        let (json, signature) = self.encode(tree, view, folder)?;
        self.remote.store_metadata(view.file_id, token, &json, &signature, false).await?;
        Ok(())
    }

    /// Creates an end-to-end encrypted sub-folder at `path` under `token`: MKCOL, the encrypted flag, and its
    /// empty metadata (counter 1). The parent's metadata must name it before the lock is released, and the new
    /// folder's own metadata cannot be updated under the same lock (a server answers 404, as Nextcloud does).
    /// Returns the folder as written.
    pub async fn create_sub_folder(
        &self,
        tree: &TreeRoot,
        path: &[String],
        token: &LockToken,
    ) -> Result<FolderView, VaultError> {
        let file_id = self.remote.under_lock(token).make_folder(path).await?;
        self.remote.set_encrypted(file_id).await?;
        let empty = FolderMetadata { counter: 1, ..FolderMetadata::default() };
        let encoded = encode_sub_folder(&empty, &tree.keys().metadata_key, None, self.signer())
            .map_err(super::metadata_error(file_id))?;
        self.remote.store_metadata(file_id, token, &encoded.json, &encoded.signature_base64, true).await?;
        let document: MetadataDocument = serde_json::from_str(&encoded.json)
            .map_err(|error| super::metadata_error(file_id)(MetadataError::Json(error.to_string())))?;
        Ok(FolderView {
            remote_path: path.to_vec(),
            file_id,
            etag: String::new(),
            is_top: false,
            decoded: DecodedFolder { folder: empty, document, signed_by: self.user.clone(), signed_at: None },
        })
    }

    /// Uploads a blob under `token`.
    pub async fn put_blob(&self, path: &[String], blob: Bytes, token: &LockToken) -> Result<(), VaultError> {
        self.remote.under_lock(token).write(path, blob, WriteCondition::Always).await?;
        Ok(())
    }

    /// Uploads a blob of `length` bytes produced by `body` (called again for each retry) under `token`.
    pub async fn put_blob_streamed(
        &self,
        path: &[String],
        length: u64,
        body: &(dyn Fn() -> crate::storage::BodyStream + Send + Sync),
        token: &LockToken,
    ) -> Result<(), VaultError> {
        self.remote.under_lock(token).write_streamed(path, length, body, WriteCondition::Always).await?;
        Ok(())
    }

    /// Deletes a blob or folder under `token`.
    pub async fn delete_blob(&self, path: &[String], token: &LockToken) -> Result<(), VaultError> {
        self.remote.under_lock(token).remove(path).await?;
        Ok(())
    }

    /// Moves a blob or folder under `token` (never replacing).
    pub async fn move_blob(&self, from: &[String], to: &[String], token: &LockToken) -> Result<(), VaultError> {
        self.remote.under_lock(token).rename(from, to, false).await?;
        Ok(())
    }

    /// Releases a lock: commits everything written under it, or rolls it back with `abort`.
    pub async fn unlock(&self, file_id: u64, token: &LockToken, abort: bool) -> Result<(), VaultError> {
        self.remote.unlock(file_id, token, abort).await?;
        Ok(())
    }

    /// Records a folder counter we wrote (replay protection for the next read).
    pub fn record_counter(&self, file_id: u64, counter: u64) -> Result<(), VaultError> {
        self.trust().record_counter(&self.server, file_id, counter)?;
        Ok(())
    }
}
