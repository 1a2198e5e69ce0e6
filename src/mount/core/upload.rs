//! Uploads with conflict detection: a file's content is encrypted under a fresh key and uploaded under the
//! batch's lock; a change by another client since the file was read is kept as a conflicted copy; blobs
//! replaced or removed are deleted, or deferred to the next lock when they were uploaded under this one.

use super::*;

impl<R: E2eeApi> Core<R> {
    /// Encrypts file `ino` with a fresh key and nonce and uploads it into the open batch.
    pub(super) async fn write_back(&self, ino: u64) -> Result<(), FsError> {
        let one_upload = self.uploads.lock(&ino).await;
        self.write_back_holding(ino, one_upload).await
    }

    /// [`Self::write_back`] for a commit: skips a file whose upload another task runs (that task may be
    /// waiting for this very commit).
    pub(super) async fn write_back_unless_busy(&self, ino: u64) -> Result<(), FsError> {
        match self.uploads.try_lock(&ino) {
            Some(one_upload) => self.write_back_holding(ino, one_upload).await,
            None => Ok(()),
        }
    }

    pub(super) async fn write_back_holding(&self, ino: u64, _one_upload: KeyedGuard<'_, u64>) -> Result<(), FsError> {
        let parent = {
            let mut state = self.state();
            // Removed and forgotten meanwhile (a write-behind upload after an unlink): nothing to upload.
            let Ok(file) = state.file_mut(ino) else { return Ok(()) };
            if !file.dirty {
                return Ok(());
            }
            if file.unlinked {
                // Removed while open: nothing to upload.
                file.dirty = false;
                return Ok(());
            }
            state.node(ino)?.parent
        };
        let result = self.upload(ino, parent).await;
        if let Err(error) = &result {
            let mut state = self.state();
            if let Ok(file) = state.file_mut(ino) {
                file.error = Some(format!("upload failed: {}", error));
            }
            state.retry_files_at = Some(Instant::now() + self.options.retry_interval);
        }
        result
    }

    pub(super) async fn upload(&self, ino: u64, parent: u64) -> Result<(), FsError> {
        let (_gate, token) = self.enter_batch(&[parent]).await?;
        let (_, content, version, reuse_uid, path) = {
            let state = self.state();
            let node = state.node(ino)?;
            let Kind::File(file) = &node.kind else { return Err(FsError::IsADirectory) };
            let content = file.content.clone().unwrap_or_default();
            let reuse = if file.uid_in_batch { file.uid.clone() } else { None };
            (node.name.clone(), content, file.version, reuse, state.remote_path(&self.root_path, parent)?)
        };
        // Encrypted while it is sent: no whole-ciphertext copy in RAM, encryption overlapping the transfer.
        let encrypting = EncryptingUpload::new(content);
        let blob_len = encrypting.blob_len();
        let uid = reuse_uid.unwrap_or_else(random_server_name);
        let mut blob_path = path.clone();
        blob_path.push(uid.clone());
        let sealed = async {
            tracing::debug!("uploading blob");
            let body = || encrypting.body();
            if let Err(error) = self.vault.put_blob_streamed(&blob_path, blob_len, &body, &token).await {
                // An encryption failure (e.g. an unreadable spill file) ends the request too: it is logged.
                encrypting.abandon();
                return Err(self.fail(error));
            }
            if let Some(batch) = self.state().batch.as_mut() {
                batch.uploaded.insert(uid.clone());
            }
            encrypting.sealed().await.map_err(|error| {
                tracing::error!(%error, "encryption failed");
                FsError::Io
            })
        }
        .instrument(tracing::info_span!("upload", server_name = %uid, len = blob_len))
        .await?;
        // Renamed, moved or removed while the blob was on its way (a rename does not wait for an upload
        // that a commit started): the entry takes the file's name as it is now; a blob left in a folder the
        // file is no longer in is deleted in the next batch and the file is uploaded again where it is.
        let name = {
            let mut state = self.state();
            let now = state.nodes.get(&ino).map(|node| (node.parent, node.name.clone()));
            let unlinked = state.file(ino).map(|file| file.unlinked).unwrap_or(true);
            match now {
                Some((now_parent, now_name)) if now_parent == parent && !unlinked => now_name,
                _ => {
                    tracing::debug!(server_name = %uid, "moved or removed during its upload; deleting that blob later");
                    state.deferred_deletes.push((parent, uid.clone()));
                    if let Ok(file) = state.file_mut(ino) {
                        if !file.unlinked {
                            file.dirty = true;
                            file.queued = true;
                        }
                    }
                    Self::note_change(&mut state);
                    return Ok(());
                }
            }
        };
        // The server's current blob under this name (our lock made the listing current). If it is the
        // version this content was based on, it is replaced; if another client wrote it since (or created
        // the name while we created ours), both stay: ours under a conflicted-copy name.
        let (replaced, conflict_name) = {
            let state = self.state();
            let base = state.file(ino)?.uid.clone();
            let dir = state.dir(parent)?;
            let loaded = dir.loaded.as_ref().ok_or(FsError::Io)?;
            let current = loaded
                .folder
                .files
                .iter()
                .find(|(existing, entry)| entry.filename.as_str() == name.0 && **existing != uid)
                .map(|(existing, _)| existing.clone());
            match current {
                Some(current) if base.as_deref() != Some(current.as_str()) => {
                    let taken = |candidate: &str| {
                        dir.children.contains_key(&Name(candidate.to_owned()))
                            || loaded.folder.files.values().any(|entry| entry.filename.as_str() == candidate)
                            || loaded.folder.folders.values().any(|folder| folder.as_str() == candidate)
                    };
                    let conflict = conflict_name(&name.0, &self.options.device, SystemTime::now(), taken);
                    tracing::warn!(
                        server_name = %uid,
                        other = %current,
                        "another client changed this file meanwhile; keeping both versions (ours as a conflicted copy)"
                    );
                    (None, Some((conflict, current)))
                }
                current => (current, None),
            }
        };
        if let Some(old) = &replaced {
            if let Err(error) = self.delete_or_defer(parent, old, &token).await {
                tracing::warn!(%error, server_name = %old, "could not delete the replaced blob; retrying later");
                let mut state = self.state();
                state.deferred_deletes.push((parent, old.clone()));
                Self::note_change(&mut state);
            }
            lock(&self.cache).remove(old);
        }
        let mut state = self.state();
        state.uploads += 1;
        Self::note_change(&mut state);
        let name = match conflict_name {
            None => name,
            Some((conflict, theirs)) => {
                state.keep_both(parent, ino, &conflict, &theirs)?;
                Name(conflict)
            }
        };
        let entry = FileEntry {
            filename: Zeroizing::new(name.0.clone()),
            mimetype: mime_type(&name.0).to_owned(),
            key: sealed.key.clone(),
            nonce: sealed.nonce.clone(),
            authentication_tag: sealed.tag,
            unknown: Default::default(),
        };
        {
            let dir = state.dir_mut(parent)?;
            dir.touched = true;
            let loaded = dir.loaded.as_mut().ok_or(FsError::Io)?;
            if let Some(old) = &replaced {
                loaded.folder.files.remove(old);
                loaded.blobs.remove(old);
            }
            loaded.folder.files.insert(uid.clone(), entry.clone());
            loaded.blobs.insert(uid.clone(), (blob_len, SystemTime::now()));
        }
        let file = state.file_mut(ino)?;
        file.uid = Some(uid);
        file.entry = Some(entry);
        file.pending = true;
        file.uid_in_batch = true;
        file.error = None;
        if file.version == version {
            file.dirty = false;
            file.queued = false;
        }
        if let Some(batch) = state.batch.as_mut() {
            batch.pending_files.push(ino);
        }
        Ok(())
    }

    /// Deletes blob or folder `uid` of folder `parent` under the batch lock. One uploaded or created under
    /// this same lock cannot be deleted yet: on Nextcloud it exists only as a staged upload, whose DELETE
    /// answers 404 and removes nothing, and unlock would turn it into an orphan. Such a deletion is deferred
    /// to the next batch (after this one commits it), whose metadata write of `parent` finalizes it.
    pub(super) async fn delete_or_defer(&self, parent: u64, uid: &str, token: &LockToken) -> Result<(), FsError> {
        let path = {
            let mut state = self.state();
            if state.batch.as_ref().is_some_and(|batch| batch.uploaded.contains(uid)) {
                tracing::debug!(server_name = %uid, "uploaded under the open lock; deleting it in the next batch");
                state.deferred_deletes.push((parent, uid.to_owned()));
                Self::note_change(&mut state);
                return Ok(());
            }
            let mut path = state.remote_path(&self.root_path, parent)?;
            path.push(uid.to_owned());
            path
        };
        match self.vault.delete_blob(&path, token).await {
            Ok(()) => Ok(()),
            // The blob was committed before this lock (not staged): 404 means another client removed it.
            Err(VaultError::Remote(error)) if error.kind() == RemoteErrorKind::NotFound => {
                tracing::warn!(server_name = %uid, "already gone on the server");
                Ok(())
            }
            Err(error) => Err(self.fail(error)),
        }
    }
}
