//! Commits: carrying the changes made in the mount to the server, one locked cycle at a time.
//!
//! A cycle holds the mount root's lock (the batch) and, in this order:
//! 1. creates on the server the new folders whose parent is there (MKCOL, flag, first metadata), all at
//!    once; a folder created in a cycle can take contents only in the next one (until unlock it is staged);
//! 2. uploads the queued files of folders the server has, [`MAX_BACKGROUND_UPLOADS`] at a time;
//! 3. deletes blobs uploaded under an earlier lock that nothing names any more (deferred deletions);
//! 4. writes the metadata of every folder the batch touched, all at once, and unlocks.
//!
//! Steps 1-3 run beside the user's operations (the gate is shared); step 4 waits for them (the gate is taken
//! exclusively). [`Core::commit_now`] runs cycles until nothing is left that a cycle can do, so a tree of new
//! folders costs one cycle per level. Nothing uploaded in a cycle is deleted or moved in the same cycle (see
//! [`Core::delete_or_defer`]), so no blob is left behind that no metadata names.

use std::time::Instant;

use futures_util::StreamExt as _;
use tracing::Instrument as _;
use zeroize::Zeroizing;

use super::{lock, Batch, Core, Dir, File, FsError, Kind, Loaded, State, MAX_BACKGROUND_UPLOADS, ROOT_INO};
use crate::metadata::FolderMetadata;
use crate::storage::{E2eeApi, RemoteErrorKind};
use crate::vault::{FolderView, VaultError};

tokio::task_local! {
    /// Set while the task runs a commit ([`Core::commit_now`] does not nest).
    static IN_COMMIT: ();
}

/// Queued plaintext that makes a commit due before the quiet time is over.
const DUE_QUEUED_BYTES: u64 = 64 << 20;

impl State {
    /// New folders whose parent exists on the server, settled (not staged): a cycle can create them.
    fn creatable_folders(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter_map(|(ino, node)| match &node.kind {
                Kind::Dir(dir) if !dir.on_server && self.ready_for_server(node.parent) => Some(*ino),
                _ => None,
            })
            .collect()
    }

    /// Queued changed files in folders the server has (settled): a cycle can upload them. Files whose last
    /// upload failed wait for their retry.
    fn uploadable_files(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter_map(|(ino, node)| match &node.kind {
                Kind::File(File { dirty: true, queued: true, unlinked: false, error: None, .. })
                    if self.ready_for_server(node.parent) =>
                {
                    Some(*ino)
                }
                _ => None,
            })
            .collect()
    }

    /// Whether folder `ino` exists on the server and is settled there (not staged in the open batch).
    fn ready_for_server(&self, ino: u64) -> bool {
        self.nodes.contains_key(&ino) && !self.local_only(ino) && !self.staged_above(ino)
    }

    /// Bytes of queued files.
    fn queued_bytes(&self) -> u64 {
        self.nodes
            .values()
            .map(|node| match &node.kind {
                Kind::File(file) if file.dirty && file.queued => file.size,
                _ => 0,
            })
            .sum()
    }

    /// Whether a cycle has anything to do.
    fn work_ready(&self) -> bool {
        self.batch.is_some()
            || !self.deferred_deletes.is_empty()
            || !self.creatable_folders().is_empty()
            || !self.uploadable_files().is_empty()
    }
}

impl<R: E2eeApi> Core<R> {
    /// Carries every change the server can take now to it: cycles until nothing is left that a cycle can do
    /// (new folders level by level, queued files, deferred deletions). Returns when the server has it.
    pub async fn commit_now(&self) -> Result<(), FsError> {
        if IN_COMMIT.try_with(|_| ()).is_ok() {
            // Asked from inside a commit (an upload into a folder that became staged meanwhile): that work
            // waits for the next commit instead of nesting one.
            return Err(FsError::RetryLater);
        }
        let _one_commit = self.committing.lock().await;
        IN_COMMIT.scope((), self.commit_cycles()).await
    }

    async fn commit_cycles(&self) -> Result<(), FsError> {
        // Each cycle creates one level of new folders; what is left after this many waits for the next tick.
        let mut left_before = None;
        for _ in 0..super::MAX_COMMITS_TO_MATERIALIZE {
            let left = {
                let mut state = self.state();
                if !state.work_ready() {
                    if state.batch.is_none() {
                        state.pending_since = None;
                    }
                    return Ok(());
                }
                let mut folders = state.creatable_folders();
                let mut files = state.uploadable_files();
                folders.sort_unstable();
                files.sort_unstable();
                // Whether a batch is open counts too: deletions deferred under it become possible once it
                // committed.
                (folders, files, state.deferred_deletes.len(), state.batch.is_some())
            };
            // Nothing moved in the last cycle (the files left are being uploaded by the tasks that wait
            // for this commit): another cycle would not do more.
            if left_before.as_ref() == Some(&left) && self.state().batch.is_none() {
                return Ok(());
            }
            left_before = Some(left);
            self.commit_cycle().await?;
        }
        Ok(())
    }

    /// One cycle: folders, uploads and deferred deletions under the batch lock, then metadata and unlock.
    async fn commit_cycle(&self) -> Result<(), FsError> {
        let (folders, files) = {
            let state = self.state();
            (state.creatable_folders(), state.uploadable_files())
        };
        let deferred = !self.state().deferred_deletes.is_empty();
        if !folders.is_empty() || !files.is_empty() || deferred {
            // The lock and fresh listings of every folder involved, all at once.
            let mut parents: Vec<u64> = {
                let state = self.state();
                folders
                    .iter()
                    .chain(&files)
                    .filter_map(|ino| state.nodes.get(ino).map(|node| node.parent))
                    .chain(
                        state
                            .deferred_deletes
                            .iter()
                            .map(|(folder, _)| *folder)
                            .filter(|f| state.nodes.contains_key(f)),
                    )
                    .collect()
            };
            parents.sort_unstable();
            parents.dedup();
            drop(self.enter_batch(&parents).await?);
            let (created, uploaded) = futures_util::join!(self.create_folders(&folders), self.upload_queued(&files));
            created?;
            uploaded?;
            self.delete_deferred().await?;
        }
        self.commit_batch().await
    }

    /// Creates new folders on the server (each: MKCOL, flag, empty metadata), all at once; their parents'
    /// metadata names them at this cycle's commit.
    async fn create_folders(&self, folders: &[u64]) -> Result<(), FsError> {
        let results = futures_util::future::join_all(folders.iter().map(|ino| self.create_folder(*ino))).await;
        results.into_iter().collect()
    }

    async fn create_folder(&self, ino: u64) -> Result<(), FsError> {
        let parent = self.state().node(ino)?.parent;
        let (_gate, token) = self.enter_batch(&[parent]).await?;
        let (uid, path) = {
            let mut state = self.state();
            // Removed or moved meanwhile: the next cycle sees it where it is now.
            if state.node(ino)?.parent != parent || state.dir(ino)?.on_server {
                return Ok(());
            }
            let name = state.node(ino)?.name.0.clone();
            // Another client may have created the name meanwhile: ours becomes a conflicted copy.
            let taken = |state: &State, candidate: &str| {
                state.dir(parent).ok().and_then(|dir| dir.loaded.as_ref()).is_some_and(|loaded| {
                    loaded.folder.files.values().any(|entry| entry.filename.as_str() == candidate)
                        || loaded.folder.folders.values().any(|folder| folder.as_str() == candidate)
                })
            };
            if taken(&state, &name) {
                let conflict = super::conflict_name(&name, &self.options.device, std::time::SystemTime::now(), |c| {
                    taken(&state, c) || state.child(parent, c).ok().flatten().is_some()
                });
                tracing::warn!("another client created a folder of that name; keeping ours as a conflicted copy");
                state.relink(ino, parent, &conflict)?;
            }
            let uid = state.dir(ino)?.uid.clone();
            let mut path = state.remote_path(&self.root_path, parent)?;
            path.push(uid.clone());
            (uid, path)
        };
        let view: FolderView = self
            .vault
            .create_sub_folder(&self.tree, &path, &token)
            .instrument(tracing::info_span!("mkdir", server_name = %uid))
            .await
            .map_err(|error| self.fail(error))?;
        let mut state = self.state();
        Self::note_change(&mut state);
        let name = state.node(ino)?.name.0.clone();
        {
            let dir = state.dir_mut(parent)?;
            dir.touched = true;
            dir.loaded.as_mut().ok_or(FsError::Io)?.folder.folders.insert(uid.clone(), Zeroizing::new(name));
        }
        let dir = state.dir_mut(ino)?;
        dir.on_server = true;
        dir.created = true;
        dir.staged = true;
        dir.loaded =
            Some(Loaded { folder: view.folder().clone(), view, blobs: Default::default(), checked: Instant::now() });
        if let Some(batch) = state.batch.as_mut() {
            batch.uploaded.insert(uid);
            batch.fresh.insert(ino);
        }
        Ok(())
    }

    /// Uploads queued files, [`MAX_BACKGROUND_UPLOADS`] at a time. A failed upload keeps its file in RAM with
    /// the error (retried later); the first unreachable-server error stops the rest.
    async fn upload_queued(&self, files: &[u64]) -> Result<(), FsError> {
        let unreachable = std::sync::atomic::AtomicBool::new(false);
        futures_util::stream::iter(files.iter().copied())
            .for_each_concurrent(MAX_BACKGROUND_UPLOADS, |ino| {
                let unreachable = &unreachable;
                async move {
                    if unreachable.load(std::sync::atomic::Ordering::SeqCst) {
                        return;
                    }
                    let Ok(_slot) = self.background.acquire().await else { return };
                    if let Err(error) = self.write_back_unless_busy(ino).await {
                        tracing::warn!(%error, "upload failed; the file stays in RAM and is retried");
                        if error.is_server_failure() {
                            unreachable.store(true, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                }
            })
            .await;
        if unreachable.into_inner() {
            return Err(FsError::Io);
        }
        Ok(())
    }

    /// Deletes blobs uploaded under an earlier lock that nothing names any more; their folders' metadata is
    /// written at this cycle's commit, which makes Nextcloud finalize the deletions.
    async fn delete_deferred(&self) -> Result<(), FsError> {
        let deferred = std::mem::take(&mut self.state().deferred_deletes);
        let mut kept = Vec::new();
        let mut failure = None;
        for (folder, uid) in deferred {
            let ready = {
                let state = self.state();
                let pending = state.batch.as_ref().is_some_and(|batch| batch.uploaded.contains(&uid));
                (state.ready_for_server(folder) && !pending, state.nodes.contains_key(&folder))
            };
            match ready {
                // The folder is gone (with everything in it on the server): nothing left to delete.
                (_, false) => continue,
                (false, true) => kept.push((folder, uid)),
                (true, true) if failure.is_some() => kept.push((folder, uid)),
                (true, true) => {
                    let token = match self.state().batch.as_ref() {
                        Some(batch) => batch.token.clone(),
                        None => {
                            kept.push((folder, uid));
                            continue;
                        }
                    };
                    match self.delete_or_defer(folder, &uid, &token).await {
                        Ok(()) => {
                            if let Ok(dir) = self.state().dir_mut(folder) {
                                dir.touched = true;
                            }
                        }
                        Err(error) => {
                            failure = Some(error);
                            kept.push((folder, uid));
                        }
                    }
                }
            }
        }
        self.state().deferred_deletes.extend(kept);
        failure.map_or(Ok(()), Err)
    }

    /// Commits the open batch: writes the metadata of every folder it touched (the root with the lock's
    /// counter, the others with their counter + 1), all at once, and unlocks. Returns when the server has it.
    async fn commit_batch(&self) -> Result<(), FsError> {
        let _gate = self.gate.write().await;
        // No new batch is opened (ahead) until this one is unlocked: it would only wait for our own lock.
        let _begin = self.begin.lock().await;
        let Some(batch) = self.state().batch.take() else { return Ok(()) };
        let mut writes: Vec<(u64, FolderView, FolderMetadata)> = Vec::new();
        {
            let state = self.state();
            for (ino, node) in &state.nodes {
                if let Kind::Dir(dir) = &node.kind {
                    // A folder created under this lock was written then; its metadata cannot be updated under
                    // the same lock (Nextcloud: 404), and it holds nothing yet.
                    if let (true, false, Some(loaded)) = (dir.touched, dir.created, &dir.loaded) {
                        let mut folder = loaded.folder.clone();
                        // Only what exists on the server: new folders inside are named once created.
                        folder.counter =
                            if *ino == ROOT_INO { batch.counter } else { loaded.view.folder().counter + 1 };
                        writes.push((*ino, loaded.view.clone(), folder));
                    }
                }
            }
        }
        let result = async {
            tracing::debug!("committing");
            let stored = futures_util::future::join_all(
                writes.iter().map(|(_, view, folder)| self.vault.store_folder(&self.tree, view, folder, &batch.token)),
            )
            .await;
            stored.into_iter().collect::<Result<Vec<()>, VaultError>>()?;
            self.vault.unlock(self.root_file_id, &batch.token, false).await
        }
        .instrument(tracing::info_span!(
            "commit",
            file_id = self.root_file_id,
            counter = batch.counter,
            folders = writes.len()
        ))
        .await;
        match result {
            Ok(()) => {
                self.committed(batch, writes);
                Ok(())
            }
            Err(error) => {
                // The server dropped our lock (Nextcloud: 403 wrong token, 404 not locked, 412 folder not locked).
                let lock_lost =
                    matches!(&error, VaultError::Remote(remote) if remote.kind() == RemoteErrorKind::LockLost);
                let failure = self.fail(error);
                self.commit_failed(batch, failure, lock_lost).await;
                Err(failure)
            }
        }
    }

    fn committed(&self, batch: Batch, writes: Vec<(u64, FolderView, FolderMetadata)>) {
        let mut state = self.state();
        state.commits += 1;
        state.commit_error = None;
        for (ino, mut view, folder) in writes {
            if let Err(error) = self.vault.record_counter(view.file_id, folder.counter) {
                tracing::warn!(%error, "could not record the folder counter");
            }
            view.decoded.folder = folder;
            if let Ok(dir) = state.dir_mut(ino) {
                if let Some(loaded) = dir.loaded.as_mut() {
                    loaded.view = view;
                }
            }
        }
        for node in state.nodes.values_mut() {
            if let Kind::Dir(dir) = &mut node.kind {
                if dir.created {
                    if let Some(loaded) = &dir.loaded {
                        let _ = self.vault.record_counter(loaded.view.file_id, loaded.view.folder().counter);
                    }
                }
                dir.staged = false;
                dir.touched = false;
                dir.created = false;
            }
        }
        let mut cache = lock(&self.cache);
        for ino in batch.pending_files {
            let Ok(file) = state.file_mut(ino) else { continue };
            file.pending = false;
            file.uid_in_batch = false;
            if !file.dirty {
                if let (Some(uid), Some(content)) = (&file.uid, &file.content) {
                    cache.insert(uid, content.clone());
                }
                if file.open_handles == 0 {
                    file.content = None;
                }
            }
        }
        drop(cache);
        if !state.work_ready() {
            state.pending_since = None;
        }
        tracing::debug!(file_id = self.root_file_id, counter = batch.counter, "batch committed");
    }

    async fn commit_failed(&self, mut batch: Batch, failure: FsError, lock_lost: bool) {
        if !lock_lost {
            // The lock is still ours (a network or server error): keep the batch and try again later.
            batch.retry_at = Some(Instant::now() + self.options.retry_interval);
            let mut state = self.state();
            state.commit_error = Some(format!("commit failed ({failure}); retrying"));
            state.batch = Some(batch);
            return;
        }
        // The server no longer honours our lock: it rolled the batch back. Files go back to dirty (their
        // plaintext is still here), folders created in the batch are new again, and the touched folders are
        // read again.
        if let Err(error) = self.vault.unlock(self.root_file_id, &batch.token, true).await {
            tracing::debug!(%error, "abort after a lost lock");
        }
        let mut state = self.state();
        state.commit_error = Some(format!(
            "the server dropped our lock ({failure}); file contents will be uploaded again, \
             renames and deletions of that batch were lost"
        ));
        for ino in batch.pending_files {
            if let Ok(file) = state.file_mut(ino) {
                if file.pending {
                    file.pending = false;
                    file.uid_in_batch = false;
                    file.dirty = true;
                    file.queued = true;
                    file.uid = None;
                    file.entry = None;
                }
            }
        }
        state.deferred_deletes.retain(|(_, uid)| !batch.uploaded.contains(uid));
        for node in state.nodes.values_mut() {
            if let Kind::Dir(dir) = &mut node.kind {
                if dir.created {
                    let children = std::mem::take(&mut dir.children);
                    let uid = dir.uid.clone();
                    **dir = Dir { on_server: false, children, ..Dir::on_server(&uid) };
                } else if dir.touched || dir.staged {
                    dir.loaded = None;
                }
                dir.touched = false;
                dir.staged = false;
            }
        }
        state.retry_files_at = Some(Instant::now());
    }

    /// Abandons a batch that could not be set up (unlock with abort).
    pub(super) async fn abandon_batch(&self) {
        let batch = self.state().batch.take();
        if let Some(batch) = batch {
            if let Err(error) = self.vault.unlock(self.root_file_id, &batch.token, true).await {
                tracing::warn!(%error, "could not abort the lock");
            }
        }
    }

    /// Runs [`Core::tick`] every 200 ms on the current tokio runtime until the returned task is aborted
    /// (every platform's mount session starts one).
    pub fn spawn_ticker(self: &std::sync::Arc<Self>) -> tokio::task::JoinHandle<()>
    where
        R: 'static,
    {
        let core = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                core.tick().await;
            }
        })
    }

    /// One round of background work: commit once changes have been quiet for `--commit-delay` (or waited
    /// `--max-batch-age`, or queued much plaintext), retry failed uploads.
    pub async fn tick(&self) {
        let due = {
            let state = self.state();
            let waited = state.batch.as_ref().is_none_or(|batch| batch.retry_at.is_none_or(|at| Instant::now() >= at));
            let pending = state.pending_since.is_some() || state.batch.is_some();
            waited
                && pending
                && (state.last_change.elapsed() >= self.options.commit_delay
                    || state.pending_since.is_some_and(|since| since.elapsed() >= self.options.max_batch_age)
                    || state.queued_bytes() >= DUE_QUEUED_BYTES)
        };
        if due {
            if let Err(error) = self.commit_now().await {
                tracing::warn!(%error, "background commit failed; will retry");
            }
        }
        let retry = {
            let mut state = self.state();
            match state.retry_files_at {
                Some(at) if Instant::now() >= at => {
                    state.retry_files_at = None;
                    let mut retry = Vec::new();
                    for (ino, node) in state.nodes.iter_mut() {
                        if let Kind::File(file) = &mut node.kind {
                            if file.dirty && file.open_handles == 0 && !file.unlinked {
                                // Queued again for the next commit, which runs now.
                                file.error = None;
                                file.queued = true;
                                retry.push(*ino);
                            }
                        }
                    }
                    retry
                }
                _ => Vec::new(),
            }
        };
        if !retry.is_empty() {
            if let Err(error) = self.commit_now().await {
                tracing::warn!(%error, "retrying failed uploads failed; will retry");
            }
        }
    }

    /// Uploads every changed file and commits everything: used at unmount and lock. Returns whether
    /// everything is on the server.
    pub async fn flush_all(&self) -> bool {
        self.wait_for_background().await;
        {
            let mut state = self.state();
            for node in state.nodes.values_mut() {
                if let Kind::File(file) = &mut node.kind {
                    if file.dirty && !file.unlinked {
                        file.queued = true;
                        file.error = None;
                    }
                }
            }
        }
        let mut clean = true;
        if let Err(error) = self.commit_now().await {
            tracing::warn!(%error, "commit at unmount failed");
            clean = false;
        }
        let state = self.state();
        let folders_waiting = state.nodes.values().any(|node| matches!(&node.kind, Kind::Dir(dir) if !dir.on_server));
        drop(state);
        clean && !folders_waiting && self.state().deferred_deletes.is_empty() && self.status().dirty.is_empty()
    }
}
