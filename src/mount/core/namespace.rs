//! Namespace changes: create, mknod, mkdir, unlink, rmdir and rename (within a folder and between
//! folders), in the open batch.

use super::*;

impl<R: E2eeApi> Core<R> {
    pub(super) fn new_file() -> File {
        File {
            uid: None,
            entry: None,
            size: 0,
            mtime: SystemTime::now(),
            ctime: SystemTime::now(),
            content: Some(Arc::new(Content::empty())),
            dirty: true,
            version: 1,
            pending: false,
            uid_in_batch: false,
            open_handles: 0,
            error: None,
            kernel_cached: None,
            unlinked: false,
            queued: false,
        }
    }

    /// Creates an empty file and opens it (O_EXCL is honoured; without it an existing file is opened).
    pub async fn create(
        &self,
        parent: u64,
        name: &str,
        mode: OpenMode,
        exclusive: bool,
    ) -> Result<(Attributes, Opened), FsError> {
        self.note_activity();
        validate_name(name)?;
        self.ensure_current(parent).await?;
        let existing = self.state().child(parent, name)?;
        if let Some(ino) = existing {
            if exclusive {
                return Err(FsError::Exists);
            }
            let opened = self.open_handle(ino, OpenMode { write: true, truncate: mode.truncate }).await?;
            return Ok((self.state().attributes(ino)?, opened));
        }
        let ino = {
            let mut state = self.state();
            let ino = state.allocate(parent, name, Kind::File(Self::new_file()));
            state.folder_changed(parent);
            ino
        };
        let opened = self.open_handle(ino, mode).await?;
        Ok((self.state().attributes(ino)?, opened))
    }

    /// Creates an empty regular file (mknod) and uploads it.
    pub async fn mknod(&self, parent: u64, name: &str) -> Result<Attributes, FsError> {
        self.note_activity();
        validate_name(name)?;
        self.ensure_current(parent).await?;
        if self.state().child(parent, name)?.is_some() {
            return Err(FsError::Exists);
        }
        let ino = {
            let mut state = self.state();
            let ino = state.allocate(parent, name, Kind::File(Self::new_file()));
            state.folder_changed(parent);
            ino
        };
        self.write_back(ino).await?;
        self.state().attributes(ino)
    }

    /// Creates an encrypted sub-folder. It exists only here until a commit creates it on the server (MKCOL,
    /// flag, first metadata) once its parent is there: a `tar x` or `git clone` never waits for the server
    /// at a mkdir, and a tree of new folders costs one commit per level, not several round trips per folder.
    pub async fn mkdir(&self, parent: u64, name: &str) -> Result<Attributes, FsError> {
        self.note_activity();
        validate_name(name)?;
        self.ensure_current(parent).await?;
        let mut state = self.state();
        if state.child(parent, name)?.is_some() {
            return Err(FsError::Exists);
        }
        let dir = Dir { on_server: false, ..Dir::on_server(&random_server_name()) };
        let ino = state.allocate(parent, name, Kind::Dir(Box::new(dir)));
        state.folder_changed(parent);
        Self::note_change(&mut state);
        state.attributes(ino)
    }

    /// Removes a file.
    pub async fn unlink(&self, parent: u64, name: &str) -> Result<(), FsError> {
        self.note_activity();
        validate_name(name)?;
        // Write-behind uploads name their files as they are now: let them finish before names change.
        self.wait_for_background().await;
        self.ensure_current(parent).await?;
        let ino = self.state().child(parent, name)?.ok_or(FsError::NotFound)?;
        let seen_uid = {
            // Checked and detached under one hold of the state (an upload may be finishing right now).
            let mut state = self.state();
            let seen_uid = state.file(ino)?.uid.clone();
            if seen_uid.is_none() {
                state.detach(ino);
                Self::note_change(&mut state);
                return Ok(());
            }
            seen_uid
        };
        let (_gate, token) = self.enter_batch(&[parent]).await?;
        // An upload of this file that a commit started finishes first (and none starts): it would otherwise
        // name a new blob after the file is gone.
        let _no_upload = self.uploads.lock(&ino).await;
        // Under the lock the listing is current: if another client replaced the file since we saw it, its
        // newer version stays (an edit wins over a concurrent delete); if it deleted it, we are done.
        let (current, ours) = {
            let state = self.state();
            let current = state
                .child(parent, name)?
                .filter(|current| *current == ino)
                .and_then(|_| state.file(ino).ok()?.uid.clone());
            // A version our own upload made meanwhile is the one the user removes.
            let ours = current
                .as_ref()
                .is_some_and(|uid| state.batch.as_ref().is_some_and(|batch| batch.uploaded.contains(uid)));
            (current, ours)
        };
        match current {
            None => Ok(()),
            Some(current) if Some(&current) != seen_uid.as_ref() && !ours => {
                tracing::warn!(server_name = %current, "another client changed this file meanwhile; not deleting its version");
                Ok(())
            }
            Some(_) => self.remove_entry(parent, ino, &token).await,
        }
    }

    /// Deletes `ino`'s blob or folder under the batch lock and drops it from `parent`'s metadata.
    pub(super) async fn remove_entry(&self, parent: u64, ino: u64, token: &LockToken) -> Result<(), FsError> {
        let (uid, is_dir) = {
            let state = self.state();
            (state.server_uid(ino), matches!(state.node(ino)?.kind, Kind::Dir(_)))
        };
        if let Some(uid) = &uid {
            self.delete_or_defer(parent, uid, token).await?;
            lock(&self.cache).remove(uid);
        }
        let mut state = self.state();
        Self::note_change(&mut state);
        {
            let dir = state.dir_mut(parent)?;
            dir.touched = true;
            if let (Some(uid), Some(loaded)) = (&uid, dir.loaded.as_mut()) {
                if is_dir {
                    loaded.folder.folders.remove(uid);
                } else {
                    loaded.folder.files.remove(uid);
                    loaded.blobs.remove(uid);
                }
            }
        }
        if let Ok(file) = state.file_mut(ino) {
            file.dirty = false;
            file.pending = false;
        }
        state.detach(ino);
        Ok(())
    }

    /// Removes an empty folder.
    pub async fn rmdir(&self, parent: u64, name: &str) -> Result<(), FsError> {
        self.note_activity();
        validate_name(name)?;
        // Write-behind uploads name their files as they are now: let them finish before names change.
        self.wait_for_background().await;
        self.ensure_current(parent).await?;
        let ino = self.state().child(parent, name)?.ok_or(FsError::NotFound)?;
        self.state().dir(ino)?;
        self.ensure_current(ino).await?;
        if !self.state().dir(ino)?.children.is_empty() {
            return Err(FsError::NotEmpty);
        }
        if self.state().local_only(ino) {
            // Never created on the server: nothing to remove there.
            let mut state = self.state();
            state.detach(ino);
            Self::note_change(&mut state);
            return Ok(());
        }
        let (_gate, token) = self.enter_batch(&[parent]).await?;
        if !self.state().dir(ino)?.children.is_empty() {
            return Err(FsError::NotEmpty);
        }
        self.remove_entry(parent, ino, &token).await
    }

    /// Renames `name` in `parent` to `new_name` in `new_parent`. `no_replace` is RENAME_NOREPLACE.
    pub async fn rename(
        &self,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        no_replace: bool,
    ) -> Result<(), FsError> {
        self.note_activity();
        // Uploads of a commit name their files as they are now: let them finish before names change.
        self.wait_for_background().await;
        validate_name(name)?;
        validate_name(new_name)?;
        self.ensure_current(parent).await?;
        self.ensure_current(new_parent).await?;
        let ino = self.state().child(parent, name)?.ok_or(FsError::NotFound)?;
        let is_dir = matches!(self.state().node(ino)?.kind, Kind::Dir(_));
        if is_dir {
            // Not into itself or below.
            let mut current = new_parent;
            loop {
                if current == ino {
                    return Err(FsError::InvalidArgument);
                }
                if current == ROOT_INO {
                    break;
                }
                current = self.parent_of(current);
            }
        }
        if parent == new_parent && name == new_name {
            return Ok(());
        }
        let target = self.state().child(new_parent, new_name)?;
        if let Some(target) = target {
            self.check_replace(is_dir, target, no_replace).await?;
        }
        // Nothing of the source on the server (a new file or folder), nor of the target: a local change.
        // Decided and done under one hold of the state: an upload finishing meanwhile would otherwise name
        // its blob after the old name.
        {
            let mut state = self.state();
            let target = state.child(new_parent, new_name)?;
            let local =
                state.server_uid(ino).is_none() && target.is_none_or(|target| state.server_uid(target).is_none());
            if local {
                if let Some(target) = target {
                    state.detach(target);
                }
                state.relink(ino, new_parent, new_name)?;
                Self::note_change(&mut state);
                return Ok(());
            }
        }
        if parent != new_parent {
            // A blob uploaded, or a folder created or moved, under the open lock is staged on Nextcloud: a
            // MOVE of it would answer 404. Commit it first.
            let in_batch = {
                let state = self.state();
                let uploaded = state
                    .server_uid(ino)
                    .zip(state.batch.as_ref())
                    .is_some_and(|(uid, batch)| batch.uploaded.contains(&uid));
                uploaded || state.staged_above(ino)
            };
            if in_batch {
                self.commit_now().await?;
            }
        }
        let mut folders = vec![parent, new_parent];
        let target = self.state().child(new_parent, new_name)?;
        if let Some(target) = target {
            if matches!(self.state().node(target)?.kind, Kind::Dir(_)) && !self.state().local_only(target) {
                folders.push(target);
            }
        }
        let (_gate, token) = self.enter_batch(&folders).await?;
        // Uploads of the file and of the one it replaces that a commit started finish first (and none
        // starts), in ino order so that two renames never wait for each other.
        let mut held = vec![ino];
        if let Some(target) = self.state().child(new_parent, new_name)? {
            if target != ino {
                held.push(target);
            }
        }
        held.sort_unstable();
        let mut _no_uploads = Vec::new();
        for one in &held {
            _no_uploads.push(self.uploads.lock(one).await);
        }
        // Under the lock the listings are current: check again what the names stand for.
        if self.state().child(parent, name)? != Some(ino) {
            return Err(FsError::NotFound);
        }
        let target = self.state().child(new_parent, new_name)?;
        if let Some(target) = target {
            if target != ino {
                self.check_replace(is_dir, target, no_replace).await?;
                self.remove_entry(new_parent, target, &token).await?;
            }
        }
        let moved_on_server = self.move_entry(ino, parent, new_parent, new_name, &token).await?;
        drop(_gate);
        if moved_on_server {
            // The server applies a MOVE under a lock only at unlock (a real Nextcloud server stages its
            // destination): a later write or delete of the blob at its new place in the same batch would
            // miss it. Commit now; a failure is retried in the background.
            if let Err(error) = self.commit_now().await {
                tracing::debug!(%error, "commit after a move failed; retrying later");
            }
        }
        Ok(())
    }

    /// POSIX rules for renaming onto `target`: not with RENAME_NOREPLACE, a file onto a file, a folder onto an
    /// empty folder.
    pub(super) async fn check_replace(&self, is_dir: bool, target: u64, no_replace: bool) -> Result<(), FsError> {
        if no_replace {
            return Err(FsError::Exists);
        }
        let target_is_dir = matches!(self.state().node(target)?.kind, Kind::Dir(_));
        match (is_dir, target_is_dir) {
            (false, true) => Err(FsError::IsADirectory),
            (true, false) => Err(FsError::NotADirectory),
            (true, true) => {
                self.ensure_current(target).await?;
                if self.state().dir(target)?.children.is_empty() {
                    Ok(())
                } else {
                    Err(FsError::NotEmpty)
                }
            }
            (false, false) => Ok(()),
        }
    }

    /// Moves `ino` to `new_name` in `new_parent` under the batch lock: a MOVE on the server if it changes
    /// folder and exists there, and the metadata of both folders. Returns whether the server moved something.
    pub(super) async fn move_entry(
        &self,
        ino: u64,
        parent: u64,
        new_parent: u64,
        new_name: &str,
        token: &LockToken,
    ) -> Result<bool, FsError> {
        let (uid, is_dir, from_path, to_path) = {
            let state = self.state();
            let is_dir = matches!(state.node(ino)?.kind, Kind::Dir(_));
            (
                state.server_uid(ino),
                is_dir,
                state.remote_path(&self.root_path, parent)?,
                state.remote_path(&self.root_path, new_parent)?,
            )
        };
        let moved_on_server = uid.is_some() && parent != new_parent;
        if let (Some(uid), true) = (&uid, moved_on_server) {
            let mut from = from_path;
            from.push(uid.clone());
            let mut to = to_path;
            to.push(uid.clone());
            self.vault.move_blob(&from, &to, token).await.map_err(|error| self.fail(error))?;
            // Staged at its destination until unlock, like an upload.
            if let Some(batch) = self.state().batch.as_mut() {
                batch.uploaded.insert(uid.clone());
            }
        }
        let mut state = self.state();
        Self::note_change(&mut state);
        if let Some(uid) = &uid {
            let (folder_name, entry, blob) = {
                let dir = state.dir_mut(parent)?;
                dir.touched = true;
                let loaded = dir.loaded.as_mut().ok_or(FsError::Io)?;
                if is_dir {
                    (loaded.folder.folders.remove(uid), None, None)
                } else {
                    (None, loaded.folder.files.remove(uid), loaded.blobs.remove(uid))
                }
            };
            let dir = state.dir_mut(new_parent)?;
            dir.touched = true;
            let loaded = dir.loaded.as_mut().ok_or(FsError::Io)?;
            if is_dir {
                if folder_name.is_some() {
                    loaded.folder.folders.insert(uid.clone(), Zeroizing::new(new_name.to_owned()));
                }
            } else if let Some(mut entry) = entry {
                entry.filename = Zeroizing::new(new_name.to_owned());
                loaded.folder.files.insert(uid.clone(), entry);
                if let Some(blob) = blob {
                    loaded.blobs.insert(uid.clone(), blob);
                }
            }
        }
        state.relink(ino, new_parent, new_name)?;
        if let (true, Kind::Dir(dir)) = (moved_on_server, &mut state.node_mut(ino)?.kind) {
            dir.staged = true;
        }
        Ok(moved_on_server)
    }
}
