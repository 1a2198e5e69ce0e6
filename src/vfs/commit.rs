//! Commits: carrying the changes made in the mount to storage, one cycle at a time. A cycle (under the open
//! batch's lock, with a batching format):
//! 1. creates in storage the new folders whose parent is there, all at once; a folder created in a cycle
//!    can take contents only in the next one (until the commit it is staged);
//! 2. stores the queued files of folders storage has, [`MAX_BACKGROUND_UPLOADS`] at a time;
//! 3. removes what was left by earlier removals and replacements (deferred removals);
//! 4. writes the metadata of every folder the batch changed, all at once, and unlocks (batching formats).
//!
//! Steps 1-3 run beside the user's operations (the gate is shared); step 4 waits for them (the gate is taken
//! exclusively). [`Vfs::commit_now`] runs cycles until nothing is left that a cycle can do, so a tree of new
//! folders costs one cycle per level. Nothing stored in a cycle is removed or moved in the same one, so no
//! entry is left behind that no metadata names. With a format that applies changes at once, a cycle is the
//! write-behind of queued files and the deferred removals, started as soon as a file is queued.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use zeroize::Zeroizing;

use super::batch::{Batch, MAX_COMMITS_TO_MATERIALIZE};
use super::nodes::{Dir, Kind, State};
use super::{lock, Format, FsError, Vfs, MAX_BACKGROUND_UPLOADS, ROOT_INO};
use crate::format::{FolderWrite, Stored};

tokio::task_local! {
    /// Set while the task runs a commit ([`Vfs::commit_now`] does not nest).
    static IN_COMMIT: ();
}

/// Queued clear text that makes a commit due before the quiet time is over.
const DUE_QUEUED_BYTES: u64 = 64 << 20;

impl<F: Format> State<F> {
    /// New folders whose parent exists in storage, settled (not staged): a cycle can create them.
    fn creatable_folders(&self) -> Vec<u64> {
        let mut folders: Vec<u64> = self
            .nodes
            .iter()
            .filter_map(|(ino, node)| match &node.kind {
                Kind::Dir(dir) if dir.stored.is_none() && self.ready_for_storage(node.parent) => Some(*ino),
                _ => None,
            })
            .collect();
        folders.sort_unstable();
        folders
    }

    /// Queued changed files in folders storage has (settled): a cycle can store them. Files whose last store
    /// failed wait for their retry.
    fn uploadable_files(&self) -> Vec<u64> {
        self.queued
            .iter()
            .copied()
            .filter(|ino| {
                self.nodes.get(ino).is_some_and(|node| match &node.kind {
                    Kind::File(file) => {
                        file.dirty && !file.unlinked && file.error.is_none() && self.ready_for_storage(node.parent)
                    }
                    Kind::Dir(_) | Kind::Link(_) => false,
                })
            })
            .collect()
    }

    /// Bytes of queued files.
    fn queued_bytes(&self) -> u64 {
        self.queued.iter().filter_map(|ino| self.file(*ino).ok()).map(|file| file.len()).sum()
    }

    /// Whether a cycle has anything to do.
    fn work_ready(&self) -> bool {
        self.batch.is_some()
            || !self.deferred.is_empty()
            || !self.creatable_folders().is_empty()
            || !self.uploadable_files().is_empty()
    }
}

impl<F: Format> Vfs<F> {
    /// Carries every change storage can take now to it: cycles until nothing is left that a cycle can do
    /// (new folders level by level, queued files, deferred removals). Returns when storage has it.
    pub async fn commit_now(&self) -> Result<(), FsError> {
        if IN_COMMIT.try_with(|_| ()).is_ok() {
            // Asked from inside a commit (a store into a folder that became staged meanwhile): that work waits
            // for the next commit instead of nesting one.
            return Err(FsError::RetryLater);
        }
        let _one_commit = self.committing.lock().await;
        IN_COMMIT.scope((), self.commit_cycles()).await
    }

    async fn commit_cycles(&self) -> Result<(), FsError> {
        // Each cycle creates one level of new folders; what is left after this many waits for the next tick.
        let mut left_before = None;
        for _ in 0..MAX_COMMITS_TO_MATERIALIZE {
            let left = {
                let mut state = self.state();
                if !state.work_ready() {
                    if state.batch.is_none() {
                        state.pending_since = None;
                    }
                    return Ok(());
                }
                // Whether a batch is open counts too: removals deferred under it become possible once it
                // committed.
                (state.creatable_folders(), state.uploadable_files(), state.deferred.len(), state.batch.is_some())
            };
            // Nothing moved in the last cycle (the files left are being stored by the tasks that wait for this
            // commit): another cycle would not do more.
            if left_before.as_ref() == Some(&left) && self.state().batch.is_none() {
                return Ok(());
            }
            left_before = Some(left);
            self.commit_cycle().await?;
        }
        Ok(())
    }

    /// One cycle: folders, stores and deferred removals (under the batch's lock), then the commit.
    async fn commit_cycle(&self) -> Result<(), FsError> {
        let (folders, files, deferred) = {
            let state = self.state();
            (state.creatable_folders(), state.uploadable_files(), !state.deferred.is_empty())
        };
        if !folders.is_empty() || !files.is_empty() || deferred {
            // The lock and fresh listings of every folder involved, all at once.
            let mut parents: Vec<u64> = {
                let state = self.state();
                folders
                    .iter()
                    .chain(&files)
                    .filter_map(|ino| state.nodes.get(ino).map(|node| node.parent))
                    .chain(state.deferred.iter().map(|(folder, _)| *folder).filter(|f| state.nodes.contains_key(f)))
                    .collect()
            };
            parents.sort_unstable();
            parents.dedup();
            drop(self.enter_batch(&parents).await?);
            let (created, stored) = futures_util::join!(self.create_folders(&folders), self.upload_queued(&files));
            created?;
            stored?;
            self.remove_deferred().await?;
        }
        self.commit_batch().await
    }

    /// Stores queued files, [`MAX_BACKGROUND_UPLOADS`] at a time. A failed store keeps its file in RAM with
    /// the error (retried later); the first failure of storage itself stops the rest.
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

    /// Removes what earlier removals and replacements left (in storage); with a batching format their
    /// folders' metadata is written at this cycle's commit, which makes Nextcloud finalize the removals.
    async fn remove_deferred(&self) -> Result<(), FsError> {
        let deferred = std::mem::take(&mut self.state().deferred);
        let mut kept = Vec::new();
        let mut failure = None;
        for (folder, stored) in deferred {
            let (ready, exists, made_now) = {
                let state = self.state();
                let made_now = state.batch.as_ref().is_some_and(|batch| self.format.made_in(&batch.handle, &stored));
                (state.ready_for_storage(folder), state.nodes.contains_key(&folder), made_now)
            };
            if !exists {
                // The folder is gone (with everything in it in storage): nothing left to remove.
                continue;
            }
            if !ready || made_now || failure.is_some() {
                kept.push((folder, stored));
                continue;
            }
            let batch = self.state().batch.as_ref().map(|batch| batch.handle.clone());
            if self.batches() && batch.is_none() {
                kept.push((folder, stored));
                continue;
            }
            let path = self.state().path(folder);
            let removed = match path {
                Ok(path) => self.remove_stored(batch.as_deref(), folder, &path, stored.clone()).await,
                Err(error) => Err(error),
            };
            match removed {
                Ok(()) => self.state().in_batch(folder),
                Err(error) => {
                    failure = Some(error);
                    kept.push((folder, stored));
                }
            }
        }
        self.state().deferred.extend(kept);
        failure.map_or(Ok(()), Err)
    }

    /// Commits the open batch: writes the metadata of every folder it changed (the root with the lock's
    /// counter, the others with their counter + 1), all at once, and unlocks. Returns when storage has it.
    async fn commit_batch(&self) -> Result<(), FsError> {
        let _gate = self.gate.write().await;
        // No new batch is opened (ahead) until this one is unlocked: it would only wait for our own lock.
        let _begin = self.begin.lock().await;
        let Some(batch) = self.state().batch.take() else { return Ok(()) };
        let (folders, listed): (Vec<u64>, Vec<F::Listed>) = {
            let state = self.state();
            state
                .nodes
                .iter()
                .filter_map(|(ino, node)| match &node.kind {
                    // A folder created under this lock was written then; its metadata cannot be updated under
                    // the same lock (Nextcloud: 404), and it holds nothing yet.
                    Kind::Dir(dir) if dir.in_batch && !dir.created => {
                        dir.listed.as_ref().map(|listed| (*ino, listed.state.clone()))
                    }
                    _ => None,
                })
                .unzip()
        };
        let writes = {
            let state = self.state();
            folders
                .iter()
                .zip(&listed)
                .map(|(ino, listed)| FolderWrite {
                    listed,
                    is_root: *ino == ROOT_INO,
                    children: stored_children(&state, *ino),
                })
                .collect()
        };
        match self.format.commit_batch(&batch.handle, writes).await {
            Ok(written) => {
                self.committed(batch, folders, written);
                Ok(())
            }
            Err(failure) => {
                self.commit_failed(batch, failure.error, failure.lock_lost).await;
                Err(failure.error)
            }
        }
    }

    fn committed(&self, batch: Batch<F>, folders: Vec<u64>, written: Vec<F::Listed>) {
        let now = Instant::now();
        let mut state = self.state();
        state.commits += 1;
        state.commit_error = None;
        for (ino, listed) in folders.into_iter().zip(written) {
            if let Ok(dir) = state.dir_mut(ino) {
                dir.commits += 1;
                if let Some(current) = dir.listed.as_mut() {
                    current.state = listed;
                    current.at = now;
                }
            }
        }
        for node in state.nodes.values_mut() {
            if let Kind::Dir(dir) = &mut node.kind {
                (dir.staged, dir.in_batch, dir.created) = (false, false, false);
            }
        }
        let mut cache = lock(&self.cache);
        for ino in batch.pending_files {
            let Ok(file) = state.file_mut(ino) else { continue };
            file.pending = false;
            if !file.dirty {
                if let (Some(id), Some(content)) = (file.content_id(), &file.content) {
                    cache.insert(&super::cache::key(ino, &id), content.clone());
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
    }

    async fn commit_failed(&self, mut batch: Batch<F>, failure: FsError, lock_lost: bool) {
        if !lock_lost {
            // The lock is still ours (a network or server error): keep the batch and try again later.
            batch.retry_at = Some(Instant::now() + self.options.retry_interval);
            let mut state = self.state();
            state.commit_error = Some(format!("commit failed ({failure}); retrying"));
            state.batch = Some(batch);
            return;
        }
        // The server no longer honours our lock: it rolled the batch back. Files go back to dirty (their clear
        // text is still here), folders created in the batch are new again, and the changed folders are read
        // again.
        self.format.abort_batch(&batch.handle).await;
        let mut state = self.state();
        state.commit_error = Some(format!(
            "the server dropped our lock ({failure}); file contents will be uploaded again, \
             renames and deletions of that batch were lost"
        ));
        for ino in batch.pending_files {
            if let Ok(file) = state.file_mut(ino) {
                if file.pending {
                    file.pending = false;
                    file.dirty = true;
                    file.stored = None;
                    state.queued.insert(ino);
                }
            }
        }
        let handle = batch.handle;
        state.deferred.retain(|(_, stored)| !self.format.made_in(&handle, stored));
        for node in state.nodes.values_mut() {
            if let Kind::Dir(dir) = &mut node.kind {
                if dir.created {
                    let children = std::mem::take(&mut dir.children);
                    **dir = Dir { children, ..Dir::local() };
                } else if dir.in_batch || dir.staged {
                    dir.listed = None;
                }
                (dir.in_batch, dir.staged) = (false, false);
            }
        }
        state.retry_files_at = Some(Instant::now());
    }

    /// Runs [`Self::tick`] every 200 ms (and at once when a file is queued for a format without batches) on
    /// the current tokio runtime until the returned task is aborted (every platform's session starts one).
    pub fn spawn_ticker(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let vfs = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                    () = vfs.wake.notified() => {}
                }
                // A panic (a bug) in one round must not end the background work: the next round retries.
                let round = std::panic::AssertUnwindSafe(vfs.tick());
                if futures_util::FutureExt::catch_unwind(round).await.is_err() {
                    tracing::error!("internal error in the background uploads (a bug); retrying in the next round");
                }
            }
        })
    }

    /// One round of background work: commit once changes have been quiet for `--commit-delay` (or waited
    /// `--max-batch-age`, or queued much clear text; with a format that applies changes at once: as soon as
    /// something is queued), and retry failed stores.
    pub async fn tick(&self) {
        let due = {
            let state = self.state();
            let waited = state.batch.as_ref().is_none_or(|batch| batch.retry_at.is_none_or(|at| Instant::now() >= at));
            let pending = state.pending_since.is_some() || state.batch.is_some();
            let quiet = !self.batches()
                || state.last_change.elapsed() >= self.options.commit_delay
                || state.pending_since.is_some_and(|since| since.elapsed() >= self.options.max_batch_age)
                || state.queued_bytes() >= DUE_QUEUED_BYTES
                || state.queued.len() >= super::MAX_QUEUED_UPLOADS;
            waited && pending && quiet && state.work_ready()
        };
        if due {
            if let Err(error) = self.commit_now().await {
                tracing::warn!(%error, "background commit failed; will retry");
            }
        }
        // Closes waiting for room in the queue look again (stored files left it, or a store failed).
        self.room.notify_waiters();
        let retry = {
            let mut state = self.state();
            match state.retry_files_at {
                Some(at) if Instant::now() >= at => {
                    state.retry_files_at = None;
                    true
                }
                _ => false,
            }
        };
        if retry {
            // Queued again for the next commit, which runs now.
            self.queue_closed_files(true);
            if let Err(error) = self.commit_now().await {
                tracing::warn!(%error, "retrying failed uploads failed; will retry");
            }
        }
    }

    /// Stores every changed file and commits everything: used at unmount and lock. Returns whether everything
    /// is in storage.
    pub async fn flush_all(&self) -> bool {
        self.wait_for_background().await;
        {
            let mut state = self.state();
            let mut dirty = Vec::new();
            for (ino, node) in state.nodes.iter_mut() {
                if let Kind::File(file) = &mut node.kind {
                    if file.dirty && !file.unlinked {
                        file.error = None;
                        dirty.push(*ino);
                    }
                }
            }
            state.queued.extend(dirty);
        }
        let mut clean = true;
        if let Err(error) = self.commit_now().await {
            tracing::warn!(%error, "commit at unmount failed");
            clean = false;
        }
        let state = self.state();
        let folders_waiting =
            state.nodes.values().any(|node| matches!(&node.kind, Kind::Dir(dir) if dir.stored.is_none()));
        let deferred = state.deferred.is_empty();
        drop(state);
        clean && !folders_waiting && deferred && self.status().dirty.is_empty()
    }
}

/// The entries folder `ino` holds in storage, by their names now (a batching format's metadata): what each
/// node stands for in storage, or the other writer's version it hides (storage's current one; the node's own
/// is stored beside it later, as a conflicted copy).
fn stored_children<F: Format>(state: &State<F>, ino: u64) -> Vec<(Zeroizing<String>, Stored<F>)> {
    let Ok(dir) = state.dir(ino) else { return Vec::new() };
    dir.children
        .iter()
        .filter_map(|(name, child)| {
            let stored = match &state.nodes.get(child)?.kind {
                Kind::Dir(dir) => match &dir.theirs {
                    Some(theirs) => theirs.stored.clone(),
                    // A folder made here is named once it is created.
                    None => Stored::Folder(dir.stored.clone()?),
                },
                Kind::File(file) => match &file.theirs {
                    Some(theirs) => theirs.stored.clone(),
                    None => Stored::File(file.stored.clone()?),
                },
                Kind::Link(link) => Stored::Link(link.stored.clone()),
            };
            Some((Zeroizing::new(name.0.clone()), stored))
        })
        .collect()
}
