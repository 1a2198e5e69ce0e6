//! Changes to an encrypted tree: the locked transaction and the operations built on it (write a file,
//! make a folder, remove, rename/move, create a new encrypted top folder).

use bytes::Bytes;
use zeroize::Zeroizing;

use super::{lock_backoff, split_clear_path, FolderView, Target, TreeRoot, Vault, VaultError};
use crate::crypto::file_cipher::encrypt_buffer;
use crate::crypto::server_name::random_server_name;
use crate::crypto::MetadataKey;
use crate::metadata::audit::AuditTrail;
use crate::metadata::codec::encode_top_folder_with_recovery;
use crate::metadata::codec::is_valid_clear_name;
use crate::metadata::{encode_sub_folder, FileEntry, FolderMetadata, Signer, TrustedUser};
use crate::storage::{E2eeApi, LockToken, Progress, RemoteErrorKind, WriteCondition};

/// How writes behave under contention.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Lock attempts when another client holds the lock (423) or the counter is stale (412).
    pub lock_attempts: u32,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self { lock_attempts: 12 }
    }
}

/// A server-side step of a change, run under the lock after the metadata is written.
pub(super) enum BlobOp {
    /// Upload a blob.
    Put { path: Vec<String>, body: Bytes },
    /// Delete a file or folder.
    Delete { path: Vec<String> },
    /// Move a file or folder.
    Move { from: Vec<String>, to: Vec<String> },
    /// Create an encrypted sub-folder with its (empty) metadata.
    MakeSubFolder { path: Vec<String> },
}

/// Guesses a MIME type from the extension (recorded in the metadata; cosmetic).
pub fn mime_type(name: &str) -> &'static str {
    let extension = name.rsplit_once('.').map(|(_, extension)| extension.to_ascii_lowercase()).unwrap_or_default();
    match extension.as_str() {
        "txt" | "md" => "text/plain",
        "pdf" => "application/pdf",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "json" => "application/json",
        "html" | "htm" => "text/html",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

fn join(path: &[String], name: &str) -> Vec<String> {
    let mut joined = path.to_vec();
    joined.push(name.to_owned());
    joined
}

impl<R: E2eeApi> Vault<R> {
    pub(crate) fn signer(&self) -> Signer<'_> {
        Signer { identity: &self.identity, certificate: &self.certificate }
    }

    /// Encodes a new version of `view` with `folder` as its content.
    pub(crate) fn encode(
        &self,
        tree: &TreeRoot,
        view: &FolderView,
        folder: &FolderMetadata,
    ) -> Result<(String, String), VaultError> {
        // File-drop entries now in `files` were absorbed: they leave the `filedrop` section.
        let mut previous = view.decoded.document.clone();
        if let Some(drops) = previous.filedrop.as_mut() {
            drops.retain(|uid, _| !folder.files.contains_key(uid));
            if drops.is_empty() {
                previous.filedrop = None;
            }
        }
        let keys = tree.keys();
        let encoded = if view.is_top {
            // Writing the top folder wraps its key for every user listed: each must be vouched for.
            let trail = AuditTrail::from_fields(&folder.unknown)
                .map_err(|source| VaultError::Audit { file_id: view.file_id, source })?;
            self.check_key_recipients(&keys.users, trail.as_ref())?;
            let recovery = self.recovery_for(view.file_id, Some(&view.decoded.document), trail.as_ref(), false)?;
            encode_top_folder_with_recovery(
                folder,
                &keys.metadata_key,
                &keys.users,
                Some(&previous),
                self.signer(),
                recovery.as_ref(),
            )
        } else {
            encode_sub_folder(folder, &keys.metadata_key, Some(&previous), self.signer())
        }
        .map_err(super::metadata_error(view.file_id))?;
        Ok((encoded.json, encoded.signature_base64))
    }

    /// Runs one change: lock `lock_path`, re-read the folders at `paths` under the lock, let `change`
    /// edit fresh copies of their metadata and name the blob steps, write the metadata (each folder's
    /// counter + 1; the locked folder's equals the lock counter), run the steps, unlock. On failure the
    /// lock is released with `abort`.
    pub(super) async fn transact<F>(
        &self,
        tree: &TreeRoot,
        lock_path: &[String],
        paths: &[Vec<String>],
        mut change: F,
    ) -> Result<(), VaultError>
    where
        F: FnMut(&mut [FolderMetadata], &[FolderView]) -> Result<Vec<BlobOp>, VaultError>,
    {
        self.refuse_in_recovery_mode()?;
        let mut minimum_counter = 0u64;
        // As in `lock_folder`: after each 412 the counter grows by 1, 2, 4, ...
        let mut stale_step = 1u64;
        for attempt in 1..=self.options.lock_attempts {
            let lock_view = self.load_folder(tree, lock_path).await?;
            let counter = (lock_view.folder().counter + 1).max(minimum_counter);
            let token = match self.remote.lock(lock_view.file_id, counter).await {
                Ok(token) => token,
                Err(error) if error.kind() == RemoteErrorKind::Locked => {
                    tracing::debug!(file_id = lock_view.file_id, attempt, "folder locked by another client; waiting");
                    tokio::time::sleep(lock_backoff(attempt)).await;
                    continue;
                }
                Err(error) if error.kind() == RemoteErrorKind::CounterRefused => {
                    tracing::debug!(file_id = lock_view.file_id, counter, "stale counter; retrying higher");
                    minimum_counter = counter.saturating_add(stale_step);
                    stale_step = stale_step.saturating_mul(2);
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            let _span = tracing::debug_span!("locked", file_id = lock_view.file_id, counter).entered();
            let outcome = self.under_lock(tree, lock_path, paths, counter, &token, &mut change).await;
            match outcome {
                Ok(Some(new_counters)) => {
                    self.remote.unlock(lock_view.file_id, &token, false).await?;
                    for (file_id, counter) in new_counters {
                        self.trust().record_counter(&self.server, file_id, counter)?;
                    }
                    return Ok(());
                }
                Ok(None) => {
                    // The folder changed between our read and the lock: start over with a higher counter.
                    self.abort(lock_view.file_id, &token).await;
                    minimum_counter = counter + 1;
                }
                Err(error) => {
                    self.abort(lock_view.file_id, &token).await;
                    return Err(error);
                }
            }
        }
        Err(VaultError::Busy(self.stat(lock_path).await?.map(|entry| entry.file_id).unwrap_or_default()))
    }

    pub(crate) async fn abort(&self, file_id: u64, token: &LockToken) {
        if let Err(error) = self.remote.unlock(file_id, token, true).await {
            tracing::warn!(file_id, %error, "could not release the lock; the server rolls it back when it expires");
        }
    }

    /// The part of [`Self::transact`] under the lock: `Ok(None)` asks for a retry.
    async fn under_lock<F>(
        &self,
        tree: &TreeRoot,
        lock_path: &[String],
        paths: &[Vec<String>],
        counter: u64,
        token: &LockToken,
        change: &mut F,
    ) -> Result<Option<Vec<(u64, u64)>>, VaultError>
    where
        F: FnMut(&mut [FolderMetadata], &[FolderView]) -> Result<Vec<BlobOp>, VaultError>,
    {
        let mut views = Vec::with_capacity(paths.len());
        for path in paths {
            views.push(self.load_folder(tree, path).await?);
        }
        let lock_index = paths.iter().position(|path| path.as_slice() == lock_path);
        if let Some(index) = lock_index {
            if views[index].folder().counter >= counter {
                return Ok(None);
            }
        }
        let mut folders: Vec<FolderMetadata> = views.iter().map(|view| view.folder().clone()).collect();
        let steps = change(&mut folders, &views)?;
        let mut new_counters = Vec::new();
        for (index, (view, folder)) in views.iter().zip(folders.iter_mut()).enumerate() {
            folder.counter = if Some(index) == lock_index { counter } else { view.folder().counter + 1 };
            let (json, signature) = self.encode(tree, view, folder)?;
            self.remote.store_metadata(view.file_id, token, &json, &signature, false).await?;
            new_counters.push((view.file_id, folder.counter));
        }
        for step in steps {
            match step {
                BlobOp::Put { path, body } => {
                    let length = body.len() as u64;
                    let body = crate::storage::body_reporting(body, self.progress.clone());
                    self.remote.under_lock(token).write_streamed(&path, length, &body, WriteCondition::Always).await?;
                }
                BlobOp::Delete { path } => self.remote.under_lock(token).remove(&path).await?,
                BlobOp::Move { from, to } => self.remote.under_lock(token).rename(&from, &to, true).await?,
                BlobOp::MakeSubFolder { path } => {
                    let file_id = self.remote.under_lock(token).make_folder(&path).await?;
                    self.remote.set_encrypted(file_id).await?;
                    let empty = FolderMetadata { counter: 1, ..FolderMetadata::default() };
                    let encoded = encode_sub_folder(&empty, &tree.keys().metadata_key, None, self.signer())
                        .map_err(super::metadata_error(file_id))?;
                    self.remote.store_metadata(file_id, token, &encoded.json, &encoded.signature_base64, true).await?;
                    new_counters.push((file_id, 1));
                }
            }
        }
        Ok(Some(new_counters))
    }

    /// Encrypts `plaintext` with a fresh key and nonce and stores it at `clear_path` (replacing a file
    /// of that name).
    pub async fn write_file(&self, clear_path: &str, plaintext: &[u8]) -> Result<(), VaultError> {
        let clear = split_clear_path(clear_path)?;
        let (tree, target) = self.resolve_in_tree(&clear).await?;
        let (parent, name) = match target {
            Target::File { parent, entry, .. } => (parent, entry.filename.clone()),
            Target::Missing { parent, name } => (parent, name),
            Target::Folder(_) => return Err(VaultError::IsAFolder),
        };
        let (blob, sealed) =
            encrypt_buffer(plaintext).map_err(|source| VaultError::Content { server_name: "(new)".into(), source })?;
        let blob = Bytes::from(blob);
        let parent_path = parent.remote_path.clone();
        self.transact(&tree, &parent_path, std::slice::from_ref(&parent_path), |folders, _| {
            let folder = &mut folders[0];
            if folder.folders.values().any(|existing| existing.as_str() == name.as_str()) {
                return Err(VaultError::IsAFolder);
            }
            let uid = folder
                .files
                .iter()
                .find(|(_, entry)| entry.filename.as_str() == name.as_str())
                .map(|(uid, _)| uid.clone())
                .unwrap_or_else(random_server_name);
            folder.files.insert(
                uid.clone(),
                FileEntry {
                    filename: name.clone(),
                    mimetype: mime_type(&name).to_owned(),
                    key: sealed.key.clone(),
                    nonce: sealed.nonce.clone(),
                    authentication_tag: sealed.tag,
                    unknown: Default::default(),
                },
            );
            Ok(vec![BlobOp::Put { path: join(&parent_path, &uid), body: blob.clone() }])
        })
        .await
    }

    /// Creates an encrypted sub-folder at `clear_path` (inside an encrypted tree).
    pub async fn make_folder(&self, clear_path: &str) -> Result<(), VaultError> {
        let clear = split_clear_path(clear_path)?;
        let (tree, target) = self.resolve_in_tree(&clear).await?;
        let (parent, name) = match target {
            Target::Missing { parent, name } => (parent, name),
            _ => return Err(VaultError::Exists),
        };
        let parent_path = parent.remote_path.clone();
        self.transact(&tree, &parent_path, std::slice::from_ref(&parent_path), |folders, _| {
            let folder = &mut folders[0];
            let taken = folder.folders.values().any(|existing| existing.as_str() == name.as_str())
                || folder.files.values().any(|entry| entry.filename.as_str() == name.as_str());
            if taken {
                return Err(VaultError::Exists);
            }
            let uid = random_server_name();
            folder.folders.insert(uid.clone(), name.clone());
            Ok(vec![BlobOp::MakeSubFolder { path: join(&parent_path, &uid) }])
        })
        .await
    }

    /// Removes a file, or a folder (empty unless `recursive`).
    pub async fn remove(&self, clear_path: &str, recursive: bool) -> Result<(), VaultError> {
        let clear = split_clear_path(clear_path)?;
        let (tree, target) = self.resolve_in_tree(&clear).await?;
        let (parent_path, uid, is_dir) = match target {
            Target::File { parent, server_name, .. } => (parent.remote_path, server_name, false),
            Target::Folder(folder) if folder.is_top => {
                return Err(VaultError::Unsupported("removing a top-level encrypted folder is not supported yet"))
            }
            Target::Folder(folder) => {
                let empty = folder.folder().files.is_empty() && folder.folder().folders.is_empty();
                if !recursive && !empty {
                    return Err(VaultError::NotEmpty);
                }
                let mut parent = folder.remote_path.clone();
                let uid = parent.pop().unwrap_or_default();
                (parent, uid, true)
            }
            Target::Missing { .. } => return Err(VaultError::NotFound),
        };
        self.transact(&tree, &parent_path, std::slice::from_ref(&parent_path), |folders, _| {
            let folder = &mut folders[0];
            let removed =
                if is_dir { folder.folders.remove(&uid).is_some() } else { folder.files.remove(&uid).is_some() };
            if !removed {
                return Err(VaultError::NotFound);
            }
            Ok(vec![BlobOp::Delete { path: join(&parent_path, &uid) }])
        })
        .await
    }

    /// Renames or moves a file or folder within its encrypted tree, like `mv`: into `to` if that is a
    /// folder, else to that name (replacing a file there).
    pub async fn rename(&self, from: &str, to: &str) -> Result<(), VaultError> {
        let from_clear = split_clear_path(from)?;
        let to_clear = split_clear_path(to)?;
        let (tree, source) = self.resolve_in_tree(&from_clear).await?;
        let (source_parent, uid, is_dir) = match source {
            Target::File { parent, server_name, .. } => (parent.remote_path, server_name, false),
            Target::Folder(folder) if folder.is_top => {
                return Err(VaultError::Unsupported("rename top-level encrypted folders on the server"))
            }
            Target::Folder(folder) => {
                let mut parent = folder.remote_path.clone();
                let uid = parent.pop().unwrap_or_default();
                (parent, uid, true)
            }
            Target::Missing { .. } => return Err(VaultError::NotFound),
        };
        let (destination_tree, destination) = self.resolve_in_tree(&to_clear).await?;
        if destination_tree.path != tree.path {
            return Err(VaultError::CrossTree);
        }
        let source_name = Zeroizing::new(from_clear.last().cloned().unwrap_or_default());
        let (destination_parent, new_name) = match destination {
            Target::Folder(folder) => (folder.remote_path, source_name),
            Target::Missing { parent, name } => (parent.remote_path, name),
            Target::File { parent, entry, .. } if !is_dir => (parent.remote_path, entry.filename),
            Target::File { .. } => return Err(VaultError::NotAFolder),
        };
        if !is_valid_clear_name(&new_name) {
            return Err(VaultError::InvalidName);
        }
        if is_dir && destination_parent.starts_with(&join(&source_parent, &uid)) {
            return Err(VaultError::IntoItself);
        }
        // Lock the lowest folder covering both parents; it is rewritten too (its counter must advance).
        let common = source_parent.iter().zip(&destination_parent).take_while(|(left, right)| left == right).count();
        let lock_path = source_parent[..common].to_vec();
        let mut paths = vec![lock_path.clone()];
        for path in [&source_parent, &destination_parent] {
            if !paths.contains(path) {
                paths.push(path.clone());
            }
        }
        let source_index = paths.iter().position(|path| *path == source_parent).unwrap_or(0);
        let destination_index = paths.iter().position(|path| *path == destination_parent).unwrap_or(0);
        self.transact(&tree, &lock_path, &paths, |folders, _| {
            let mut steps = Vec::new();
            // A file already called `new_name` at the destination is replaced (its blob deleted).
            let destination = &folders[destination_index];
            if destination.folders.iter().any(|(existing, name)| name.as_str() == new_name.as_str() && *existing != uid)
            {
                return Err(VaultError::Exists);
            }
            let replaced: Option<String> = destination
                .files
                .iter()
                .find(|(existing, entry)| entry.filename.as_str() == new_name.as_str() && **existing != uid)
                .map(|(existing, _)| existing.clone());
            if let Some(replaced) = &replaced {
                if is_dir {
                    return Err(VaultError::Exists);
                }
                folders[destination_index].files.remove(replaced);
                steps.push(BlobOp::Delete { path: join(&destination_parent, replaced) });
            }
            if is_dir {
                let name = folders[source_index].folders.remove(&uid).ok_or(VaultError::NotFound)?;
                drop(name);
                folders[destination_index].folders.insert(uid.clone(), new_name.clone());
            } else {
                let mut entry = folders[source_index].files.remove(&uid).ok_or(VaultError::NotFound)?;
                entry.filename = new_name.clone();
                folders[destination_index].files.insert(uid.clone(), entry);
            }
            if source_index != destination_index {
                steps.push(BlobOp::Move { from: join(&source_parent, &uid), to: join(&destination_parent, &uid) });
            }
            Ok(steps)
        })
        .await
    }

    /// Creates a new end-to-end encrypted top folder at `clear_path` (outside any encrypted folder): MKCOL,
    /// the encrypted flag, then the first metadata (counter 1, this user only) under a lock.
    pub async fn create_encrypted_folder(&self, clear_path: &str) -> Result<u64, VaultError> {
        self.refuse_in_recovery_mode()?;
        let clear = split_clear_path(clear_path)?;
        if clear.is_empty() {
            return Err(VaultError::Exists);
        }
        if self.stat(&clear).await?.is_some() {
            return Err(VaultError::Exists);
        }
        if self.open_tree(&clear[..clear.len() - 1]).await?.is_ok() {
            return Err(VaultError::Unsupported("already inside an encrypted folder: use mkdir without --encrypted"));
        }
        let file_id = self.remote.make_folder(&clear).await?;
        self.remote.set_encrypted(file_id).await?;
        let key = MetadataKey::generate();
        let mut folder =
            FolderMetadata { counter: 1, key_checksums: Some(vec![key.sha256_hex()]), ..FolderMetadata::default() };
        self.genesis_audit(&mut folder, &key)?;
        let recovery = self.recovery_key.clone();
        let users = [TrustedUser { user_id: self.user.clone(), certificate: self.certificate.clone() }];
        let encoded = encode_top_folder_with_recovery(&folder, &key, &users, None, self.signer(), recovery.as_ref())
            .map_err(super::metadata_error(file_id))?;
        let token = self.remote.lock(file_id, 1).await?;
        let stored = self.remote.store_metadata(file_id, &token, &encoded.json, &encoded.signature_base64, true).await;
        if let Err(error) = stored {
            self.abort(file_id, &token).await;
            return Err(error.into());
        }
        self.remote.unlock(file_id, &token, false).await?;
        // This device made the folder: what it accepts about it starts here, not at a "first sight".
        let trail = AuditTrail::from_fields(&folder.unknown).ok().flatten().unwrap_or_default();
        let pins = crate::trust::FolderPins {
            members: vec![(self.user.clone(), self.certificate.fingerprint())],
            trail_len: trail.entries.len() as u64,
            trail_head: trail.head(),
            recovery: recovery.as_ref().map(|key| key.fingerprint()),
            certificates: Default::default(),
            key_checksums: vec![key.sha256_hex()],
        };
        let mut store = self.trust();
        store.record_counter(&self.server, file_id, 1)?;
        store.record_folder(&self.server, file_id, pins)?;
        Ok(file_id)
    }

    /// Sets the progress callback used for uploads.
    pub fn set_progress(&mut self, progress: Option<Progress>) {
        self.progress = progress;
    }
}

impl<R: E2eeApi> Vault<R> {
    /// Writes are refused to a vault opened with a recovery key.
    pub(crate) fn refuse_in_recovery_mode(&self) -> Result<(), VaultError> {
        if self.recovery_mode {
            Err(VaultError::Unsupported("a recovery key only reads; share the folder anew to write"))
        } else {
            Ok(())
        }
    }

    /// The recovery key a top folder's next metadata wraps its key for: the one it names (a member added it
    /// and signed it), else this device's when the key is being rotated (or when this device saw the folder
    /// with a recovery key that a client which does not keep it dropped since).
    pub(crate) fn recovery_for(
        &self,
        file_id: u64,
        previous: Option<&crate::metadata::MetadataDocument>,
        trail: Option<&AuditTrail>,
        rotating: bool,
    ) -> Result<Option<crate::crypto::PublicKey>, VaultError> {
        let Some(previous) = previous else { return Ok(self.recovery_key.clone()) };
        if let Some(key) =
            crate::metadata::recovery::recovery_key_of(previous).map_err(super::metadata_error(file_id))?
        {
            return Ok(Some(key));
        }
        let Some(own) = &self.recovery_key else { return Ok(None) };
        // A member removed the recovery key from this folder: it stays removed.
        if trail.is_some_and(AuditTrail::recovery_disabled) {
            return Ok(None);
        }
        let dropped_since = self
            .trust()
            .folder(&self.server, file_id)
            .and_then(|pins| pins.recovery.clone())
            .is_some_and(|fingerprint| fingerprint == own.fingerprint());
        Ok((rotating || dropped_since).then(|| own.clone()))
    }
}
