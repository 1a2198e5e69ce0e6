//! Namespace changes: create, mknod, mkdir, symlink (and readlink), unlink and rmdir (renames:
//! [`super::rename`]). A batching format
//! takes them into the open batch (a new folder reaches storage with the next commit); any other format
//! applies them at once.

use std::time::Instant;

use zeroize::Zeroizing;

use super::nodes::{Dir, File, Kind, Link, Listed, Name, Node};
use super::{Attributes, Format, FsError, OpenMode, Opened, Vfs};
use crate::format::{Removed, Stored};

impl<F: Format> Vfs<F> {
    /// Creates an empty file and opens it (O_EXCL is honoured; without it an existing file is opened). The
    /// new file reaches storage when it is closed.
    pub async fn create(
        &self,
        parent: u64,
        name: &str,
        mode: OpenMode,
        exclusive: bool,
    ) -> Result<(Attributes, Opened), FsError> {
        self.note_activity();
        self.validate_name(name)?;
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
            let ino = state.allocate(parent, name, Kind::File(Box::new(File::new_here())));
            state.changed_here(parent, &Name(name.to_owned()));
            ino
        };
        let opened = self.open_handle(ino, mode).await?;
        Ok((self.state().attributes(ino)?, opened))
    }

    /// Creates an empty regular file (mknod) and stores it.
    pub async fn mknod(&self, parent: u64, name: &str) -> Result<Attributes, FsError> {
        self.note_activity();
        self.validate_name(name)?;
        self.ensure_current(parent).await?;
        let ino = {
            let mut state = self.state();
            if state.child(parent, name)?.is_some() {
                return Err(FsError::Exists);
            }
            let ino = state.allocate(parent, name, Kind::File(Box::new(File::new_here())));
            state.changed_here(parent, &Name(name.to_owned()));
            ino
        };
        self.write_back(ino).await?;
        self.state().attributes(ino)
    }

    /// Creates a folder. With a batching format it exists only here until a commit creates it in storage
    /// once its parent is there: a `tar x` or `git clone` never waits for the server at a mkdir, and a tree
    /// of new folders costs one commit per level. Any other format creates it in storage at once.
    pub async fn mkdir(&self, parent: u64, name: &str) -> Result<Attributes, FsError> {
        self.note_activity();
        self.validate_name(name)?;
        self.ensure_current(parent).await?;
        if self.state().child(parent, name)?.is_some() {
            return Err(FsError::Exists);
        }
        if self.batches() {
            let mut state = self.state();
            if state.child(parent, name)?.is_some() {
                return Err(FsError::Exists);
            }
            let ino = state.allocate(parent, name, Kind::Dir(Box::new(Dir::local())));
            state.changed_here(parent, &Name(name.to_owned()));
            Self::note_change(&mut state);
            return state.attributes(ino);
        }
        let (_gate, batch) = self.enter_batch(&[parent]).await?;
        let path = self.state().path(parent)?;
        let _in_flight = self.in_flight(&[(parent, name)]);
        let (stored, listed) = self.format.make_folder(batch.as_deref(), &path, name).await?;
        let mut state = self.state();
        if state.child(parent, name)?.is_some() {
            return Err(FsError::Exists);
        }
        let mut dir = Dir::stored(stored, None);
        dir.changed = Some(std::time::SystemTime::now());
        // Made just now with nothing in it: no listing is needed.
        dir.listed = Some(Listed { state: listed, modified: None, at: Instant::now() });
        let ino = state.allocate(parent, name, Kind::Dir(Box::new(dir)));
        state.changed_here(parent, &Name(name.to_owned()));
        state.attributes(ino)
    }

    /// Creates the symbolic link `name` to `target` in folder `parent`, in storage at once (a format without
    /// links: [`FsError::NotPermitted`]). The target is kept as given, never resolved.
    pub async fn symlink(&self, parent: u64, name: &str, target: &str) -> Result<Attributes, FsError> {
        self.note_activity();
        self.validate_name(name)?;
        if !self.format.capabilities().links {
            return Err(FsError::NotPermitted);
        }
        if target.is_empty() || target.contains('\0') {
            return Err(FsError::InvalidArgument);
        }
        self.ensure_current(parent).await?;
        if self.state().child(parent, name)?.is_some() {
            return Err(FsError::Exists);
        }
        let (_gate, batch) = self.enter_batch(&[parent]).await?;
        let path = self.state().path(parent)?;
        let _in_flight = self.in_flight(&[(parent, name)]);
        let stored = self.format.make_link(batch.as_deref(), &path, name, target).await?;
        let mut state = self.state();
        if state.child(parent, name)?.is_some() {
            return Err(FsError::Exists);
        }
        let link = Link::stored(stored, target.len() as u64, Some(std::time::SystemTime::now()), Some(target));
        let ino = state.allocate(parent, name, Kind::Link(Box::new(link)));
        state.changed_here(parent, &Name(name.to_owned()));
        Self::note_change(&mut state);
        state.in_batch(parent);
        state.attributes(ino)
    }

    /// The target of the symbolic link `ino`: read and authenticated once, then kept with the node.
    pub async fn readlink(&self, ino: u64) -> Result<Zeroizing<String>, FsError> {
        self.note_activity();
        let stored = match &self.state().node(ino)?.kind {
            Kind::Link(link) => match &link.target {
                Some(target) => return Ok(target.clone()),
                None => link.stored.clone(),
            },
            _ => return Err(FsError::InvalidArgument),
        };
        let target = self.format.read_link(&stored).await?;
        let mut state = self.state();
        if let Ok(Node { kind: Kind::Link(link), .. }) = state.node_mut(ino) {
            if F::content_id(&link.stored) == F::content_id(&stored) {
                link.target = Some(target.clone());
            }
        }
        Ok(target)
    }

    /// Removes a file or a symbolic link.
    pub async fn unlink(&self, parent: u64, name: &str) -> Result<(), FsError> {
        self.note_activity();
        self.validate_name(name)?;
        // Write-behind stores name their files as they are now: let them finish before names change.
        self.wait_for_background().await;
        self.ensure_current(parent).await?;
        let ino = self.state().child(parent, name)?.ok_or(FsError::NotFound)?;
        // A store of this file that is on its way finishes first (and none starts): the file is then either
        // in storage (removed there below) or not.
        if matches!(self.state().node(ino)?.kind, Kind::Link(_)) {
            // A link is in storage from its creation, and never changes: remove it there.
            let (_gate, batch) = self.enter_batch(&[parent]).await?;
            if self.state().child(parent, name)? != Some(ino) {
                return Err(FsError::NotFound);
            }
            return self.remove_entry(batch.as_deref(), parent, ino).await;
        }
        let no_upload = self.uploads.lock(&ino).await;
        if self.state().child(parent, name)? != Some(ino) {
            return Err(FsError::NotFound);
        }
        let seen = {
            // Checked and detached under one hold of the state (a store may be finishing right now).
            let mut state = self.state();
            let seen = state.file(ino)?.content_id();
            if seen.is_none() {
                state.detach_showing_theirs(parent, name, ino);
                Self::note_change(&mut state);
                return Ok(());
            }
            seen
        };
        // The batch may have to commit first (a commit stores only files whose lock is free).
        drop(no_upload);
        let (_gate, batch) = self.enter_batch(&[parent]).await?;
        let _no_upload = self.uploads.lock(&ino).await;
        if batch.is_some() {
            // Under the lock the listing is current: if another client replaced the file since we saw it, its
            // newer version stays (an edit wins over a concurrent delete); if it deleted it, we are done.
            let state = self.state();
            let current = state.child(parent, name)?.filter(|current| *current == ino);
            match current.map(|ino| state.file(ino).map(|file| (file.content_id(), file.pending))) {
                None => return Ok(()),
                Some(Ok((current, pending))) if current != seen && !pending => {
                    tracing::warn!("another client changed this file meanwhile; not deleting its version");
                    return Ok(());
                }
                _ => {}
            }
        }
        let theirs = self.state().take_theirs(ino);
        self.remove_entry(batch.as_deref(), parent, ino).await?;
        if let Some(theirs) = theirs {
            // Another writer's version of the file stays (an edit wins over a concurrent delete).
            self.state().show_theirs(parent, name, theirs);
        }
        Ok(())
    }

    /// Removes `ino` from storage (from folder `parent`) and from the table.
    pub(super) async fn remove_entry(&self, batch: Option<&F::Batch>, parent: u64, ino: u64) -> Result<(), FsError> {
        let (path, stored) = {
            let state = self.state();
            (state.path(parent)?, state.stored(ino))
        };
        if let Some(Stored::File(file)) = &stored {
            super::lock(&self.cache).remove(&super::cache::key(ino, &F::content_id(file)));
        }
        let name = self.state().node(ino)?.name.0.clone();
        let _in_flight = self.in_flight(&[(parent, &name)]);
        if let Some(stored) = stored {
            self.remove_stored(batch, parent, &path, stored).await?;
        }
        let mut state = self.state();
        Self::note_change(&mut state);
        state.in_batch(parent);
        state.detach(ino);
        Ok(())
    }

    /// Removes `stored` from storage, or defers it to the next batch when it was made in this one.
    pub(super) async fn remove_stored(
        &self,
        batch: Option<&F::Batch>,
        parent: u64,
        path: &[F::Folder],
        stored: Stored<F>,
    ) -> Result<(), FsError> {
        match self.format.remove(batch, path, &stored).await? {
            Removed::Done => Ok(()),
            Removed::Later => {
                let mut state = self.state();
                state.deferred.push((parent, stored));
                Self::note_change(&mut state);
                Ok(())
            }
        }
    }

    /// Removes an empty folder.
    pub async fn rmdir(&self, parent: u64, name: &str) -> Result<(), FsError> {
        self.note_activity();
        self.validate_name(name)?;
        // Write-behind stores name their files as they are now: let them finish before names change.
        self.wait_for_background().await;
        self.ensure_current(parent).await?;
        let ino = self.state().child(parent, name)?.ok_or(FsError::NotFound)?;
        self.state().dir(ino)?;
        self.ensure_empty(ino).await?;
        if self.state().local_only(ino) {
            // Never created in storage: nothing to remove there.
            let mut state = self.state();
            state.detach_showing_theirs(parent, name, ino);
            Self::note_change(&mut state);
            return Ok(());
        }
        let (_gate, batch) = self.enter_batch(&[parent]).await?;
        if !self.state().dir(ino)?.children.is_empty() {
            return Err(FsError::NotEmpty);
        }
        self.remove_entry(batch.as_deref(), parent, ino).await
    }

    /// Fails with [`FsError::NotEmpty`] unless folder `ino` is empty in the table and, if the table says
    /// otherwise, in a fresh listing (another device may have emptied it).
    pub(super) async fn ensure_empty(&self, ino: u64) -> Result<(), FsError> {
        self.ensure_current(ino).await?;
        if self.state().dir(ino)?.children.is_empty() {
            return Ok(());
        }
        let relist = {
            let state = self.state();
            !state.local_only(ino) && state.batch.is_none()
        };
        if relist {
            self.forget_listing(ino);
            self.ensure_current(ino).await?;
        }
        if self.state().dir(ino)?.children.is_empty() {
            Ok(())
        } else {
            Err(FsError::NotEmpty)
        }
    }
}
