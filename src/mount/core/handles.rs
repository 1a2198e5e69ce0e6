//! Open handles: close (FUSE flush) with write-behind or a waiting upload, fsync, and release.

use super::*;

impl<R: E2eeApi> Core<R> {
    /// Close: uploads the file if it changed; the error reaches the program.
    pub async fn flush(&self, ino: u64) -> Result<(), FsError> {
        let dirty = self.state().file(ino).map(|file| file.dirty).unwrap_or(false);
        if dirty {
            self.write_back(ino).await?;
        }
        Ok(())
    }

    /// Whether a closed file of `size` bytes may wait for the commit to be uploaded (write-behind): it is
    /// small, the server answers, and no upload or commit failed since.
    pub(super) fn may_write_behind(&self, size: u64) -> bool {
        let offline = lock(&self.offline_until).is_some_and(|until| Instant::now() < until);
        if size > self.options.write_behind || offline {
            return false;
        }
        let state = self.state();
        state.retry_files_at.is_none()
            && state.commit_error.is_none()
            && state.batch.as_ref().is_none_or(|batch| batch.retry_at.is_none())
    }

    /// Close (FUSE flush). A changed small file is queued for the next commit, which uploads it (see
    /// [`CoreOptions::write_behind`]): close returns once the batch's lock is held (at once within a burst;
    /// the first close of a burst waits for the lock, which proves the server answers, so an outage is still
    /// reported by close), and a file removed or replaced before the commit (a lock file, a temporary) never
    /// reaches the server. Other changed files are uploaded before close returns, so the program sees the
    /// error. Either way the content stays in RAM until the server has it.
    pub async fn close(&self, ino: u64) -> Result<(), FsError> {
        let Ok((dirty, size, unlinked)) = self.state().file(ino).map(|file| (file.dirty, file.size, file.unlinked))
        else {
            return Ok(());
        };
        // An unlinked file is never uploaded (its content lives until the last handle is released).
        if !dirty || unlinked {
            return Ok(());
        }
        if self.may_write_behind(size) {
            if let Err(error) = self.ensure_batch().await {
                let mut state = self.state();
                if let Ok(file) = state.file_mut(ino) {
                    file.error = Some(format!("upload failed: {}", error));
                }
                state.retry_files_at = Some(Instant::now() + self.options.retry_interval);
                return Err(error);
            }
            let mut state = self.state();
            if let Ok(file) = state.file_mut(ino) {
                file.queued = true;
            }
            Self::note_change(&mut state);
            return Ok(());
        }
        self.write_back(ino).await
    }

    /// Waits until no upload of a commit runs (before names change, and before fsyncdir, unmount and lock).
    pub async fn wait_for_background(&self) {
        if let Ok(all) = self.background.acquire_many(MAX_BACKGROUND_UPLOADS as u32).await {
            drop(all);
        }
    }

    /// fsync: uploads the file if it changed and commits the batch; returns when the server has it.
    pub async fn fsync(&self, ino: u64) -> Result<(), FsError> {
        self.note_activity();
        self.flush(ino).await?;
        let pending = self.state().file(ino).map(|file| file.pending).unwrap_or(false);
        if pending {
            self.commit_now().await?;
        }
        Ok(())
    }

    /// Releases handle `fh`. The content of a clean file leaves RAM (the cache may keep a copy).
    pub fn release(&self, fh: u64) {
        let mut state = self.state();
        let Some(ino) = state.handles.remove(&fh) else { return };
        let Ok(file) = state.file_mut(ino) else { return };
        file.open_handles = file.open_handles.saturating_sub(1);
        if file.open_handles == 0 && !file.dirty && !file.pending {
            file.content = None;
        }
        let unlinked = file.unlinked && file.open_handles == 0;
        if unlinked {
            state.forget_subtree(ino);
        }
    }
}
