//! Entering a change: an operation that changes storage waits until its folders exist there, and with a
//! batching format opens the batch (the mount root's lock) if none is open and makes sure its folders are
//! current under that lock.

use std::sync::Arc;
use std::time::Instant;

use super::{Format, FsError, State, Vfs, ROOT_INO};

/// Commits an operation waits for at most until the folders it needs exist in storage (one level of new
/// folders is created per commit).
pub(super) const MAX_COMMITS_TO_MATERIALIZE: usize = 64;

/// The open batch of a batching format.
pub(super) struct Batch<F: Format> {
    /// The format's batch (lock token, counter).
    pub(super) handle: Arc<F::Batch>,
    /// When it was opened: a listing started since is current under its lock.
    pub(super) opened: Instant,
    /// Files stored in it.
    pub(super) pending_files: Vec<u64>,
    /// A commit failed: when to try again.
    pub(super) retry_at: Option<Instant>,
}

impl<F: Format> Vfs<F> {
    /// Waits while one of `folders` (or a folder above) is staged in the open batch or exists only here
    /// (commits until storage has it), then enters the change: returns the gate guard and, with a batching
    /// format, the batch, with every folder of `folders` current under its lock.
    pub(super) async fn enter_batch(
        &self,
        folders: &[u64],
    ) -> Result<(tokio::sync::RwLockReadGuard<'_, ()>, Option<Arc<F::Batch>>), FsError> {
        let waiting = |state: &State<F>| folders.iter().any(|ino| state.staged_above(*ino) || state.local_only(*ino));
        let mut commits = 0;
        loop {
            if waiting(&self.state()) {
                // Each commit creates one more level of new folders; deeper than this is a folder storage
                // keeps refusing.
                if commits == MAX_COMMITS_TO_MATERIALIZE {
                    return Err(FsError::Io);
                }
                commits += 1;
                tracing::debug!(commits, "waiting for a folder to reach storage");
                Box::pin(self.commit_now()).await?;
                continue;
            }
            let gate = self.gate.read().await;
            if waiting(&self.state()) {
                continue;
            }
            if !self.batches() {
                return Ok((gate, None));
            }
            let batch = self.ensure_batch().await?;
            let mut distinct = folders.to_vec();
            distinct.sort_unstable();
            distinct.dedup();
            futures_util::future::try_join_all(distinct.iter().map(|ino| self.ensure_fresh_in_batch(*ino))).await?;
            // A change is about to be made: the quiet time before the commit starts now, not at the last
            // change before this operation waited for the lock and listings (else a slow server makes every
            // batch commit right after its first change).
            self.state().last_change = Instant::now();
            return Ok((gate, Some(batch)));
        }
    }

    /// Opens a batch if none is open: locks the mount root.
    pub(super) async fn ensure_batch(&self) -> Result<Arc<F::Batch>, FsError> {
        if let Some(batch) = &self.state().batch {
            return Ok(batch.handle.clone());
        }
        let _begin = self.begin.lock().await;
        if let Some(batch) = &self.state().batch {
            return Ok(batch.handle.clone());
        }
        let root = self.state().dir(ROOT_INO)?.listed.as_ref().map(|listed| listed.state.clone());
        let opened = self.format.open_batch(root.as_ref()).await?;
        let opened_at = Instant::now();
        let handle = Arc::new(opened.batch);
        {
            let mut state = self.state();
            state.last_change = opened_at;
            if let (Some(replacement), Ok(root)) = (opened.root, state.dir_mut(ROOT_INO)) {
                if let Some(listed) = root.listed.as_mut() {
                    listed.state = replacement;
                    listed.at = opened_at;
                }
            }
            state.batch =
                Some(Batch { handle: handle.clone(), opened: opened_at, pending_files: Vec::new(), retry_at: None });
        }
        if opened.root_stale {
            if let Err(error) = self.reload(ROOT_INO).await {
                self.abandon_batch().await;
                return Err(error);
            }
        }
        // The root's metadata is written with the lock's counter at every commit.
        self.state().in_batch(ROOT_INO);
        Ok(handle)
    }

    /// Under the batch's lock, makes sure folder `ino` is storage's current version: listed (or checked)
    /// since the lock was taken, unless it changed in the batch already.
    pub(super) async fn ensure_fresh_in_batch(&self, ino: u64) -> Result<(), FsError> {
        let fresh = |state: &State<F>| {
            let opened = state.batch.as_ref().map(|batch| batch.opened);
            state.dir(ino).is_ok_and(|dir| {
                dir.in_batch || dir.listed.as_ref().zip(opened).is_some_and(|(listed, opened)| listed.at >= opened)
            })
        };
        if fresh(&self.state()) {
            return Ok(());
        }
        let _listing = self.listings.lock(&ino).await;
        if fresh(&self.state()) {
            return Ok(());
        }
        self.refresh_holding_listing(ino).await
    }

    /// Records a change a commit has to carry to storage (a batch commits `--commit-delay` after the last).
    pub(super) fn note_change(state: &mut State<F>) {
        state.last_change = Instant::now();
        state.pending_since.get_or_insert(state.last_change);
    }

    /// Abandons a batch that could not be set up (the server rolls it back).
    pub(super) async fn abandon_batch(&self) {
        let batch = self.state().batch.take();
        if let Some(batch) = batch {
            self.format.abort_batch(&batch.handle).await;
        }
    }
}
