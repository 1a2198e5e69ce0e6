//! Storing a changed file: its content is encrypted under a fresh key and stored (in the open batch, or at
//! once) replacing exactly the version it was read at. A version another writer made meanwhile is never
//! overwritten: when a listing showed it ([`super::nodes::File::theirs`]) or the format finds it while
//! storing, this content is kept as a conflicted copy beside it.

use std::time::SystemTime;

use super::keyed_locks::KeyedGuard;
use super::nodes::Name;
use super::{Format, FsError, Vfs};
use crate::conflict::conflict_name;
use crate::format::Stored;

impl<F: Format> Vfs<F> {
    /// Stores file `ino` if it changed.
    pub(super) async fn write_back(&self, ino: u64) -> Result<(), FsError> {
        let one_upload = self.uploads.lock(&ino).await;
        self.write_back_holding(ino, one_upload).await
    }

    /// [`Self::write_back`] for a commit cycle: skips a file whose store another task runs (that task may be
    /// waiting for this very commit).
    pub(super) async fn write_back_unless_busy(&self, ino: u64) -> Result<(), FsError> {
        match self.uploads.try_lock(&ino) {
            Some(one_upload) => self.write_back_holding(ino, one_upload).await,
            None => Ok(()),
        }
    }

    async fn write_back_holding(&self, ino: u64, _one_upload: KeyedGuard<'_, u64>) -> Result<(), FsError> {
        let parent = {
            let mut state = self.state();
            // Removed and forgotten meanwhile (a write-behind store after an unlink): nothing to store.
            let Ok(file) = state.file_mut(ino) else { return Ok(()) };
            if !file.dirty {
                return Ok(());
            }
            if file.unlinked {
                // Removed while open: nothing to store.
                file.dirty = false;
                return Ok(());
            }
            state.node(ino)?.parent
        };
        let result = self.store(ino, parent).await;
        if let Err(error) = result {
            self.store_failed(ino, error);
        }
        result
    }

    async fn store(&self, ino: u64, parent: u64) -> Result<(), FsError> {
        let (_gate, batch) = self.enter_batch(&[parent]).await?;
        let (name, content, version, base, conflict, path) = {
            let state = self.state();
            let node = state.node(ino)?;
            let file = state.file(ino)?;
            let name = node.name.clone();
            // Another writer's version is known: ours is kept beside it, under a name nothing has.
            let conflict = file.theirs.is_some().then(|| {
                let dir = state.dir(parent);
                conflict_name(&name.0, &self.options.device, SystemTime::now(), |candidate| {
                    dir.is_ok_and(|dir| dir.children.contains_key(&Name(candidate.to_owned())))
                })
            });
            let base = if conflict.is_some() { None } else { file.stored.clone() };
            (name, file.content.clone().unwrap_or_default(), file.version, base, conflict, state.path(parent)?)
        };
        let store_as = conflict.clone().unwrap_or_else(|| name.0.clone());
        let _in_flight = self.in_flight(&[(parent, &store_as)]);
        let stored = self.format.store_file(batch.as_deref(), &path, &store_as, content.clone(), base.as_ref()).await?;
        let mut state = self.state();
        state.uploads += 1;
        Self::note_change(&mut state);
        if let Some(leftover) = stored.leftover {
            state.deferred.push((parent, leftover));
        }
        // Renamed, moved or removed while it was stored (a rename does not wait for a store that a close
        // started): what was stored goes in the next batch, and the file is stored again where it is.
        let here = state.nodes.get(&ino).is_some_and(|node| node.parent == parent && node.name == name);
        if !here || state.file(ino).map(|file| file.unlinked).unwrap_or(true) {
            tracing::debug!("moved or removed while it was stored; removing that version later");
            state.deferred.push((parent, Stored::File(stored.file)));
            if state.file(ino).is_ok_and(|file| !file.unlinked) {
                state.queued.insert(ino);
            }
            return Ok(());
        }
        let copy = stored.renamed_to.or(conflict);
        if let Some(copy) = &copy {
            tracing::warn!(
                "another writer changed this file meanwhile; keeping both versions (ours as a conflicted copy)"
            );
            let theirs = state.take_theirs(ino);
            state.relink(ino, parent, copy)?;
            match theirs {
                Some(theirs) => state.show_theirs(parent, &name.0, theirs),
                // The other writer's version shows under the name at the next listing.
                None => {
                    if let Ok(dir) = state.dir_mut(parent) {
                        dir.listed = None;
                    }
                }
            }
        }
        // A listing read during the store may not show the file, or show its old version.
        let stored_as = state.node(ino)?.name.clone();
        state.touched_here(parent, &stored_as);
        state.in_batch(parent);
        let batches = self.batches();
        let id = F::content_id(&stored.file);
        let file = state.file_mut(ino)?;
        file.stored = Some(stored.file);
        file.error = None;
        file.pending = batches;
        let clean = file.version == version;
        if clean {
            file.dirty = false;
            if !batches && file.open_handles == 0 {
                // In storage now: the clear text may be dropped (the cache keeps a copy).
                file.content = None;
            }
        }
        if clean {
            state.queued.remove(&ino);
        }
        if let Some(batch) = state.batch.as_mut() {
            batch.pending_files.push(ino);
        }
        drop(state);
        if clean {
            // A close waiting for room in the write-behind queue may go on.
            self.room.notify_waiters();
        }
        if clean && !batches {
            super::lock(&self.cache).insert(&super::cache::key(ino, &id), content);
        }
        Ok(())
    }
}
