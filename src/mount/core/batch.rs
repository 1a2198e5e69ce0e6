//! Entering the open batch: an operation that changes the server waits until its folders exist there,
//! opens the batch (the mount root's lock) if none is open, and makes sure its folders are current under
//! that lock.

use super::*;

impl<R: E2eeApi> Core<R> {
    /// Waits while one of `folders` (or a folder above) is staged in the open batch or exists only here
    /// (commits until the server has it), then enters the batch: returns the gate guard and the lock token,
    /// with every folder of `folders` current under the lock.
    pub(super) async fn enter_batch(
        &self,
        folders: &[u64],
    ) -> Result<(tokio::sync::RwLockReadGuard<'_, ()>, LockToken), FsError> {
        let waiting = |state: &State| folders.iter().any(|ino| state.staged_above(*ino) || state.local_only(*ino));
        let mut commits = 0;
        loop {
            if waiting(&self.state()) {
                // Each commit creates one more level of new folders; deeper than this is a folder the server
                // keeps refusing.
                if commits == MAX_COMMITS_TO_MATERIALIZE {
                    return Err(FsError::Io);
                }
                commits += 1;
                tracing::debug!(commits, "waiting for a folder to reach the server");
                Box::pin(self.commit_now()).await?;
                continue;
            }
            let gate = self.gate.read().await;
            if waiting(&self.state()) {
                continue;
            }
            let token = self.ensure_batch().await?;
            let mut distinct = folders.to_vec();
            distinct.sort_unstable();
            distinct.dedup();
            futures_util::future::try_join_all(distinct.iter().map(|ino| self.ensure_fresh_in_batch(*ino))).await?;
            // A change is about to be made: the quiet time before the commit starts now, not at the last
            // change before this operation waited for the lock and listings (else a slow server makes every
            // batch commit right after its first change).
            self.state().last_change = Instant::now();
            return Ok((gate, token));
        }
    }

    /// Opens a batch if none is open: locks the mount root.
    pub(super) async fn ensure_batch(&self) -> Result<LockToken, FsError> {
        if let Some(batch) = &self.state().batch {
            return Ok(batch.token.clone());
        }
        let _begin = self.begin.lock().await;
        if let Some(batch) = &self.state().batch {
            return Ok(batch.token.clone());
        }
        let known = {
            let state = self.state();
            state.dir(ROOT_INO)?.loaded.as_ref().map(|loaded| loaded.view.folder().counter)
        };
        // With the root's counter known, one request: a lock at counter + 1 succeeds only if nobody wrote the
        // root's metadata since we read it (see `Vault::lock_at_counter`), so our copy is current. Otherwise
        // (412, or nothing loaded yet) the lock is taken the long way, reading the root under it.
        let quick = match known {
            Some(counter) => self
                .vault
                .lock_at_counter(self.root_file_id, counter + 1)
                .await
                .map_err(|error| self.fail(error))?
                .map(|token| (token, counter + 1)),
            None => None,
        };
        let (token, counter, root_current) = match quick {
            Some((token, counter)) => (token, counter, true),
            None => {
                let locked = self
                    .vault
                    .lock_folder(&self.tree, &self.root_path, None)
                    .await
                    .map_err(|error| self.fail(error))?;
                let mut state = self.state();
                let root = state.dir_mut(ROOT_INO)?;
                let current = root
                    .loaded
                    .as_ref()
                    .is_some_and(|loaded| loaded.view.folder().counter == locked.view.folder().counter);
                if current {
                    if let Some(loaded) = root.loaded.as_mut() {
                        loaded.view = locked.view;
                        loaded.folder = loaded.view.folder().clone();
                    }
                }
                (locked.token, locked.counter, current)
            }
        };
        tracing::debug!(file_id = self.root_file_id, counter, "batch opened");
        {
            let mut state = self.state();
            state.last_change = Instant::now();
            state.batch = Some(Batch {
                token: token.clone(),
                counter,
                fresh: HashSet::new(),
                pending_files: Vec::new(),
                uploaded: HashSet::new(),
                retry_at: None,
            });
        }
        if !root_current {
            if let Err(error) = self.reload(ROOT_INO).await {
                self.abandon_batch().await;
                return Err(error);
            }
        }
        let mut state = self.state();
        if let Some(batch) = state.batch.as_mut() {
            batch.fresh.insert(ROOT_INO);
        }
        state.dir_mut(ROOT_INO)?.touched = true;
        Ok(token)
    }

    /// Under the batch's lock, makes sure folder `ino` is the server's current version.
    pub(super) async fn ensure_fresh_in_batch(&self, ino: u64) -> Result<(), FsError> {
        let (fresh, loaded, path) = {
            let state = self.state();
            let fresh = state.batch.as_ref().is_some_and(|batch| batch.fresh.contains(&ino));
            let dir = state.dir(ino)?;
            (fresh || dir.touched, dir.loaded.is_some(), state.remote_path(&self.root_path, ino)?)
        };
        if fresh {
            return Ok(());
        }
        if loaded {
            self.check_folder(ino, &path).await?;
        } else {
            self.reload(ino).await?;
        }
        if let Some(batch) = self.state().batch.as_mut() {
            batch.fresh.insert(ino);
        }
        Ok(())
    }

    /// Records a change a commit has to carry to the server (the commit waits for `--commit-delay` after the
    /// last one).
    pub(super) fn note_change(state: &mut State) {
        state.last_change = Instant::now();
        state.pending_since.get_or_insert(state.last_change);
    }
}
