//! Open handles: close (FUSE flush) with write-behind or a waiting store, fsync, fsyncdir, and release.

use super::nodes::Kind;
use super::{Format, FsError, Vfs, MAX_BACKGROUND_UPLOADS, MAX_QUEUED_UPLOADS};

impl<F: Format> Vfs<F> {
    /// Whether a closed file of `size` bytes may wait for the next commit cycle to be stored (write-behind):
    /// it is small, storage answers, and no store or commit failed since.
    fn may_write_behind(&self, size: u64) -> bool {
        if size > self.options.write_behind || self.offline() {
            return false;
        }
        let state = self.state();
        state.retry_files_at.is_none()
            && state.commit_error.is_none()
            && state.batch.as_ref().is_none_or(|batch| batch.retry_at.is_none())
    }

    /// Whether [`MAX_QUEUED_UPLOADS`] files are queued or being stored.
    pub(super) fn queue_full(&self) -> bool {
        self.state().queued.len() + self.stores_running() >= MAX_QUEUED_UPLOADS
    }

    /// Waits while the write-behind queue is full (the background work commits at once then, and each round
    /// of it wakes the waiters); returns whether the file of `size` bytes may still be queued (else it is
    /// to be stored before close returns: a store failed meanwhile).
    async fn wait_for_queue_room(&self, size: u64) -> bool {
        let mut logged = false;
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if !self.may_write_behind(size) {
                return false;
            }
            if !self.queue_full() {
                return true;
            }
            if !logged {
                tracing::debug!("write-behind queue full; waiting for room");
                logged = true;
            }
            self.wake.notify_one();
            room.await;
        }
    }

    /// Stores of a commit cycle running now.
    fn stores_running(&self) -> usize {
        MAX_BACKGROUND_UPLOADS - self.background.available_permits()
    }

    /// Close (FUSE flush). A changed small file is queued for the next commit cycle, which stores it (see
    /// [`super::VfsOptions::write_behind`]): with a batching format close returns once the batch's lock is
    /// held (at once within a burst; the first close of a burst waits for the lock, which proves the server
    /// answers, so an outage is still reported by close), and a file removed or replaced before the commit (a
    /// lock file, a temporary) never reaches the server; with another format the cycle starts at once. Other
    /// changed files are stored before close returns, so the program sees the error. Either way the content
    /// stays in RAM until storage has it.
    pub async fn close(&self, ino: u64) -> Result<(), FsError> {
        let Ok((dirty, size, unlinked)) = self.state().file(ino).map(|file| (file.dirty, file.len(), file.unlinked))
        else {
            return Ok(());
        };
        // An unlinked file is never stored (its content lives until the last handle is released).
        if !dirty || unlinked {
            return Ok(());
        }
        if !self.may_write_behind(size) || !self.wait_for_queue_room(size).await {
            return self.write_back(ino).await;
        }
        if self.batches() {
            if let Err(error) = self.ensure_batch().await {
                self.store_failed(ino, error);
                return Err(error);
            }
        }
        let mut state = self.state();
        if state.file(ino).is_ok_and(|file| file.dirty && !file.unlinked) {
            state.queued.insert(ino);
        }
        Self::note_change(&mut state);
        drop(state);
        if !self.batches() {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Records a failed store of file `ino`: shown by `cloakfs status`, retried after the retry interval.
    pub(super) fn store_failed(&self, ino: u64, error: FsError) {
        let mut state = self.state();
        if let Ok(file) = state.file_mut(ino) {
            file.error = Some(format!("upload failed: {error}"));
        }
        state.retry_files_at = Some(std::time::Instant::now() + self.options.retry_interval);
    }

    /// Waits until no store of a commit cycle runs (before names change, and before fsyncdir, unmount and
    /// lock).
    pub async fn wait_for_background(&self) {
        if let Ok(all) = self.background.acquire_many(MAX_BACKGROUND_UPLOADS as u32).await {
            drop(all);
        }
    }

    /// fsync: stores the file if it changed and commits the batch; returns when storage has it.
    pub async fn fsync(&self, ino: u64) -> Result<(), FsError> {
        self.note_activity();
        let dirty = self.state().file(ino).map(|file| file.dirty).unwrap_or(false);
        if dirty {
            self.write_back(ino).await?;
        }
        let pending = self.state().file(ino).map(|file| file.pending).unwrap_or(false);
        if pending {
            self.commit_now().await?;
        }
        Ok(())
    }

    /// fsyncdir: returns when storage has every change made so far (closed files are stored now).
    pub async fn sync_all(&self) -> Result<(), FsError> {
        self.wait_for_background().await;
        self.queue_closed_files(false);
        self.commit_now().await?;
        if self.closed_dirty_files() == 0 {
            Ok(())
        } else {
            Err(FsError::Io)
        }
    }

    /// Queues every changed file that is closed (`and_failed`: also those whose last store failed).
    pub(super) fn queue_closed_files(&self, and_failed: bool) {
        let mut state = self.state();
        let mut closed = Vec::new();
        for (ino, node) in state.nodes.iter_mut() {
            if let Kind::File(file) = &mut node.kind {
                if file.dirty && !file.unlinked && file.open_handles == 0 && (and_failed || file.error.is_none()) {
                    file.error = None;
                    closed.push(*ino);
                }
            }
        }
        state.queued.extend(closed);
    }

    /// Changed files that are closed and not in storage yet.
    pub(super) fn closed_dirty_files(&self) -> usize {
        let state = self.state();
        state
            .nodes
            .values()
            .filter(
                |node| matches!(&node.kind, Kind::File(file) if file.dirty && !file.unlinked && file.open_handles == 0),
            )
            .count()
    }

    /// Releases handle `fh`: the last one drops the file's reader (kept in the cache) and its content unless
    /// it waits for a store or a commit (the cache may keep a copy).
    pub fn release(&self, fh: u64) {
        let mut state = self.state();
        let Some(ino) = state.handles.remove(&fh) else { return };
        let Ok(file) = state.file_mut(ino) else { return };
        file.open_handles = file.open_handles.saturating_sub(1);
        if file.open_handles > 0 {
            return;
        }
        let reader = file.reader.take();
        if !file.dirty && !file.pending {
            file.content = None;
        }
        let (unlinked, id) = (file.unlinked, file.content_id());
        if unlinked {
            state.forget_subtree(ino);
        }
        drop(state);
        if let (Some(reader), Some(id), false) = (reader, id, unlinked) {
            // Kept unless it is in use (a read in flight), within the budget.
            let bytes = reader.try_lock().map(|held| F::reader_bytes(&held)).ok();
            if let Some(bytes) = bytes {
                super::lock(&self.cache).keep_reader(&super::cache::key(ino, &id), reader, bytes);
            }
        }
    }
}
