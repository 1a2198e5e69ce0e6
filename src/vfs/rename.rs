//! Renames, within a folder and between folders: the POSIX rules checked against the table (and the
//! target folder's fresh listing), a change of entries stored nowhere yet made in the table only, anything
//! else carried to storage through the format (in the open batch, or at once).

use super::nodes::Kind;
use super::{Format, FsError, Vfs};
use crate::format::Stored;

impl<F: Format> Vfs<F> {
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
        // Stores of a commit name their files as they are now: let them finish before names change.
        self.wait_for_background().await;
        self.validate_name(name)?;
        self.validate_name(new_name)?;
        self.ensure_current(parent).await?;
        self.ensure_current(new_parent).await?;
        let ino = self.state().child(parent, name)?.ok_or(FsError::NotFound)?;
        let is_dir = self.state().is_dir(ino)?;
        if is_dir && self.state().is_at_or_below(new_parent, ino) {
            // Not into itself or below.
            return Err(FsError::InvalidArgument);
        }
        if parent == new_parent && name == new_name {
            return Ok(());
        }
        let target = self.state().child(new_parent, new_name)?;
        if let Some(target) = target {
            self.check_replace(is_dir, target, no_replace).await?;
        }
        // Stores of the file and of the one it replaces that are on their way finish first (and none starts):
        // each is then either in storage or not.
        let held = self.hold_uploads(&[Some(ino), target]).await;
        if self.state().child(parent, name)? != Some(ino) {
            return Err(FsError::NotFound);
        }
        // Nothing of the source in storage (a new file or folder), nor of the target, or a new file over a
        // stored one (its store replaces that version): a change of the table.
        {
            let mut state = self.state();
            let target = state.child(new_parent, new_name)?;
            let source_stored = state.stored(ino).is_some();
            let target_stored = target.and_then(|target| state.stored(target));
            let replaces_stored_file =
                !is_dir && target.is_some_and(|target| state.file(target).is_ok_and(|file| file.stored.is_some()));
            if !source_stored && (target_stored.is_none() || replaces_stored_file) {
                if let Some(target) = target {
                    let base = state.file(target).ok().and_then(|file| file.stored.clone());
                    let theirs = state.take_theirs(target);
                    state.detach(target);
                    if let (Some(base), Ok(file)) = (base, state.file_mut(ino)) {
                        file.stored = Some(base);
                        file.theirs = theirs;
                    }
                }
                let theirs = state.take_theirs(ino);
                state.relink(ino, new_parent, new_name)?;
                if let Some(theirs) = theirs {
                    state.show_theirs(parent, name, theirs);
                }
                Self::note_change(&mut state);
                return Ok(());
            }
        }
        drop(held);
        if self.batches() && parent != new_parent {
            // A blob stored, or a folder created or moved, in the open batch is staged on Nextcloud: a MOVE of
            // it would answer 404. Commit it first.
            let in_batch = {
                let state = self.state();
                let pending = state.file(ino).is_ok_and(|file| file.pending);
                let made = match (state.stored(ino), state.batch.as_ref()) {
                    (Some(stored), Some(batch)) => self.format.made_in(&batch.handle, &stored),
                    _ => false,
                };
                pending || made || state.staged_above(ino)
            };
            if in_batch {
                self.commit_now().await?;
            }
        }
        let mut folders = vec![parent, new_parent];
        {
            let state = self.state();
            if let Some(target) = state.child(new_parent, new_name)? {
                if state.is_dir(target)? && !state.local_only(target) {
                    folders.push(target);
                }
            }
        }
        let (_gate, batch) = self.enter_batch(&folders).await?;
        // Again, under the batch (a commit stores only files whose lock is free).
        let target = self.state().child(new_parent, new_name)?;
        let _no_uploads = self.hold_uploads(&[Some(ino), target]).await;
        // The listings may have changed meanwhile (under a lock they are current): check again what the
        // names stand for.
        if self.state().child(parent, name)? != Some(ino) {
            return Err(FsError::NotFound);
        }
        let target = self.state().child(new_parent, new_name)?.filter(|target| *target != ino);
        if let Some(target) = target {
            self.check_replace(is_dir, target, no_replace).await?;
        }
        let (from, to, source, replacing) = {
            let state = self.state();
            (state.path(parent)?, state.path(new_parent)?, state.stored(ino), target.and_then(|t| state.stored(t)))
        };
        let in_flight = self.in_flight(&[(parent, name), (new_parent, new_name)]);
        let mut commit_soon = false;
        let moved = match source {
            Some(source) => {
                let renamed = self
                    .format
                    .rename(batch.as_deref(), &from, &source, &to, new_name, replacing.as_ref(), !no_replace)
                    .await?;
                commit_soon = renamed.commit_soon;
                if let Some(leftover) = renamed.leftover {
                    self.state().deferred.push((new_parent, leftover));
                }
                Some(renamed.stored)
            }
            // A folder made here over an empty stored one: that one goes.
            None => {
                if let Some(replacing) = replacing {
                    self.remove_stored(batch.as_deref(), new_parent, &to, replacing).await?;
                }
                None
            }
        };
        {
            let mut state = self.state();
            Self::note_change(&mut state);
            if let Some(target) = target {
                state.detach(target);
            }
            let theirs = state.take_theirs(ino);
            state.relink(ino, new_parent, new_name)?;
            if let Some(theirs) = theirs {
                state.show_theirs(parent, name, theirs);
            }
            state.in_batch(parent);
            state.in_batch(new_parent);
            match (&mut state.node_mut(ino)?.kind, moved) {
                (Kind::Dir(dir), Some(Stored::Folder(folder))) => {
                    dir.stored = Some(folder);
                    dir.staged |= commit_soon;
                }
                (Kind::File(file), Some(Stored::File(stored))) => {
                    // A format whose ids follow the name (Cryptomator's nodes) leaves a cached copy under the old.
                    if let Some(old) = file.content_id().filter(|old| *old != F::content_id(&stored)) {
                        super::lock(&self.cache).remove(&super::cache::key(ino, &old));
                    }
                    file.stored = Some(stored);
                }
                (Kind::Link(link), Some(Stored::Link(stored))) => link.stored = stored,
                _ => {}
            }
        }
        drop(in_flight);
        drop(_gate);
        if commit_soon {
            // The server applies a MOVE under a lock only at unlock (a real Nextcloud server stages its
            // destination): a later write or delete of it at its new place in the same batch would miss it.
            // Commit now; a failure is retried in the background.
            if let Err(error) = self.commit_now().await {
                tracing::debug!(%error, "commit after a move failed; retrying later");
            }
        }
        Ok(())
    }

    /// Holds the store locks of `inos`, in inode order so that two renames never wait for each other.
    async fn hold_uploads(&self, inos: &[Option<u64>]) -> Vec<super::keyed_locks::KeyedGuard<'_, u64>> {
        let mut inos: Vec<u64> = inos.iter().flatten().copied().collect();
        inos.sort_unstable();
        inos.dedup();
        let mut held = Vec::with_capacity(inos.len());
        for ino in &inos {
            held.push(self.uploads.lock(ino).await);
        }
        held
    }

    /// POSIX rules for renaming onto `target`: not with RENAME_NOREPLACE, a file onto a file, a folder onto an
    /// empty folder.
    pub(super) async fn check_replace(&self, is_dir: bool, target: u64, no_replace: bool) -> Result<(), FsError> {
        if no_replace {
            return Err(FsError::Exists);
        }
        let target_is_dir = self.state().is_dir(target)?;
        match (is_dir, target_is_dir) {
            (false, true) => Err(FsError::IsADirectory),
            (true, false) => Err(FsError::NotADirectory),
            (true, true) => self.ensure_empty(target).await,
            (false, false) => Ok(()),
        }
    }
}
