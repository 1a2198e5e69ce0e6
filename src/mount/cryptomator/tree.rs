//! The folder tree of a mounted Cryptomator vault: listings read from the store (and trusted for the dir
//! cache time), lookups, and the namespace changes, each applied to the store at once.

use std::collections::HashSet;
use std::time::{Instant, SystemTime};

use super::{validate_name, wipe_entry, CryptomatorFs, Dir, File, Kind, Name, State};
use crate::cryptomator::{EntryKind, VaultEntry};
use crate::mount::core::{Attributes, DirEntry, OpenMode, Opened};
use crate::mount::error::FsError;
use crate::transport::Store;

impl<S: Store + Clone + 'static> CryptomatorFs<S> {
    /// Reads folder `ino`'s listing from the store unless it was read within the dir cache time.
    pub(super) async fn ensure_listed(&self, ino: u64) -> Result<(), FsError> {
        let dir_ref = {
            let state = self.state();
            let dir = state.dir(ino)?;
            if dir.listed.is_some_and(|at| at.elapsed() < self.options.dir_cache_time) {
                return Ok(());
            }
            dir.dir.clone()
        };
        let started = Instant::now();
        let (entries, problems) = self.vault.list(&dir_ref).await.map_err(|error| self.fail(error))?;
        if !problems.is_empty() {
            tracing::warn!(
                folder = %dir_ref.content_path.join("/"),
                left_out = problems.len(),
                "entries that do not authenticate are not shown"
            );
        }
        let mut state = self.state();
        merge_listing(&mut state, ino, entries, started, |id| self.vault.dir_ref(id))
    }

    /// Looks up `name` in folder `parent`.
    pub async fn lookup(&self, parent: u64, name: &str) -> Result<Attributes, FsError> {
        validate_name(name)?;
        self.ensure_listed(parent).await?;
        let state = self.state();
        let ino = state.child(parent, name)?.ok_or(FsError::NotFound)?;
        state.attributes(ino)
    }

    /// The attributes of `ino` (a folder's listing is refreshed when stale).
    pub async fn getattr(&self, ino: u64) -> Result<Attributes, FsError> {
        if matches!(self.state().node(ino)?.kind, Kind::Dir(_)) {
            self.ensure_listed(ino).await?;
        }
        self.state().attributes(ino)
    }

    /// The entries of folder `ino`.
    pub async fn readdir(&self, ino: u64) -> Result<Vec<DirEntry>, FsError> {
        self.note_activity();
        self.ensure_listed(ino).await?;
        let state = self.state();
        let dir = state.dir(ino)?;
        dir.children
            .iter()
            .map(|(name, child)| {
                Ok(DirEntry { name: zeroize::Zeroizing::new(name.0.clone()), attributes: state.attributes(*child)? })
            })
            .collect()
    }

    /// Creates folder `name` in `parent` in the store at once.
    pub async fn mkdir(&self, parent: u64, name: &str) -> Result<Attributes, FsError> {
        self.note_activity();
        validate_name(name)?;
        self.ensure_listed(parent).await?;
        let _names = self.names.read().await;
        let parent_ref = {
            let state = self.state();
            if state.child(parent, name)?.is_some() {
                return Err(FsError::Exists);
            }
            state.dir(parent)?.dir.clone()
        };
        let entry = self.vault.make_dir(&parent_ref, name).await.map_err(|error| self.fail(error))?;
        let id = entry.dir_id.clone().ok_or(FsError::Io)?;
        let dir = Dir {
            dir: self.vault.dir_ref(&id),
            entry: Some(entry),
            children: Default::default(),
            listed: Some(Instant::now()),
            changed: Some(SystemTime::now()),
        };
        let mut state = self.state();
        let ino = state.allocate(parent, name, Kind::Dir(Box::new(dir)));
        state.folder_changed(parent);
        state.attributes(ino)
    }

    /// Creates a file and opens it (O_EXCL with `exclusive`; without it an existing file is opened). The
    /// new file reaches the store when it is closed.
    pub async fn create(
        &self,
        parent: u64,
        name: &str,
        mode: OpenMode,
        exclusive: bool,
    ) -> Result<(Attributes, Opened), FsError> {
        self.note_activity();
        validate_name(name)?;
        self.ensure_listed(parent).await?;
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
            state.folder_changed(parent);
            ino
        };
        let opened = self.open_handle(ino, mode).await?;
        Ok((self.state().attributes(ino)?, opened))
    }

    /// Creates an empty file (mknod) and uploads it.
    pub async fn mknod(&self, parent: u64, name: &str) -> Result<Attributes, FsError> {
        self.note_activity();
        validate_name(name)?;
        self.ensure_listed(parent).await?;
        let ino = {
            let mut state = self.state();
            if state.child(parent, name)?.is_some() {
                return Err(FsError::Exists);
            }
            let ino = state.allocate(parent, name, Kind::File(Box::new(File::new_here())));
            state.folder_changed(parent);
            ino
        };
        self.upload(ino).await?;
        self.state().attributes(ino)
    }

    /// Removes file `name` from `parent` (in the store at once, if it is there).
    pub async fn unlink(&self, parent: u64, name: &str) -> Result<(), FsError> {
        self.note_activity();
        validate_name(name)?;
        self.ensure_listed(parent).await?;
        let _names = self.names.write().await;
        let (ino, entry) = {
            let state = self.state();
            let ino = state.child(parent, name)?.ok_or(FsError::NotFound)?;
            (ino, state.file(ino)?.entry.clone())
        };
        if let Some(entry) = entry {
            self.remove_stored(&entry, false).await?;
        }
        self.state().detach(ino);
        super::lock(&self.kept).forget(ino);
        Ok(())
    }

    /// Removes the empty folder `name` from `parent`.
    pub async fn rmdir(&self, parent: u64, name: &str) -> Result<(), FsError> {
        self.note_activity();
        validate_name(name)?;
        self.ensure_listed(parent).await?;
        let ino = self.state().child(parent, name)?.ok_or(FsError::NotFound)?;
        self.ensure_listed(ino).await?;
        if !self.state().dir(ino)?.children.is_empty() {
            // Perhaps emptied by another device: the store decides. (An empty table needs no fresh
            // listing: the vault's removal lists the folder itself and refuses if it is not empty.)
            self.state().dir_mut(ino)?.listed = None;
            self.ensure_listed(ino).await?;
        }
        let _names = self.names.write().await;
        let entry = {
            let state = self.state();
            let dir = state.dir(ino)?;
            if !dir.children.is_empty() {
                return Err(FsError::NotEmpty);
            }
            dir.entry.clone().ok_or(FsError::Busy)?
        };
        self.remove_stored(&entry, false).await?;
        self.state().detach(ino);
        Ok(())
    }

    /// Removes `entry` from the store; already gone counts as done.
    async fn remove_stored(&self, entry: &VaultEntry, recursive: bool) -> Result<(), FsError> {
        match self.vault.remove(entry, recursive).await {
            Ok(()) => Ok(()),
            Err(error) if error.remote_kind() == Some(crate::remote::RemoteErrorKind::NotFound) => Ok(()),
            Err(error) => Err(self.fail(error)),
        }
    }

    /// Renames `name` in `parent` to `new_name` in `new_parent`, in the store at once (a file created here
    /// and not uploaded yet moves in the table only). `no_replace` is RENAME_NOREPLACE.
    pub async fn rename(
        &self,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        no_replace: bool,
    ) -> Result<(), FsError> {
        self.note_activity();
        validate_name(name)?;
        validate_name(new_name)?;
        self.ensure_listed(parent).await?;
        self.ensure_listed(new_parent).await?;
        let _names = self.names.write().await;
        let (ino, source_entry, is_dir, target, target_ref) = {
            let state = self.state();
            let ino = state.child(parent, name)?.ok_or(FsError::NotFound)?;
            let node = state.node(ino)?;
            let (entry, is_dir) = match &node.kind {
                Kind::Dir(dir) => (dir.entry.clone(), true),
                Kind::File(file) => (file.entry.clone(), false),
            };
            if is_dir && state.is_at_or_below(new_parent, ino) {
                return Err(FsError::InvalidArgument);
            }
            let target = state.child(new_parent, new_name)?;
            if target == Some(ino) {
                return Ok(());
            }
            if let Some(target) = target {
                if no_replace {
                    return Err(FsError::Exists);
                }
                match (&state.node(target)?.kind, is_dir) {
                    (Kind::Dir(dir), true) if !dir.children.is_empty() => return Err(FsError::NotEmpty),
                    (Kind::Dir(_), false) => return Err(FsError::IsADirectory),
                    (Kind::File(_), true) => return Err(FsError::NotADirectory),
                    _ => {}
                }
            }
            (ino, entry, is_dir, target, state.dir(new_parent)?.dir.clone())
        };
        if is_dir {
            if let Some(target) = target {
                // The kernel's view says it is empty; the store's may not be yet (rmdir's own check).
                self.state().dir_mut(target)?.listed = None;
                self.ensure_listed(target).await?;
                if !self.state().dir(target)?.children.is_empty() {
                    return Err(FsError::NotEmpty);
                }
            }
        }
        let target_entry = target.and_then(|target| match &self.state().node(target).ok()?.kind {
            Kind::File(file) => file.entry.clone(),
            Kind::Dir(dir) => dir.entry.clone(),
        });
        let moved = match source_entry {
            Some(entry) => Some(
                self.vault
                    .rename(&entry, &target_ref, new_name, !no_replace)
                    .await
                    .map_err(|error| self.fail(error))?,
            ),
            None => None,
        };
        let mut state = self.state();
        if let Some(target) = target {
            state.detach(target);
            super::lock(&self.kept).forget(target);
        }
        state.relink(ino, new_parent, new_name)?;
        match &mut state.nodes.get_mut(&ino).ok_or(FsError::NotFound)?.kind {
            Kind::Dir(dir) => {
                if let Some(moved) = moved {
                    dir.entry = Some(moved);
                }
            }
            Kind::File(file) => match moved {
                Some(moved) => {
                    file.entry = Some(moved);
                }
                // Not in the store yet: its upload replaces what the target was.
                None => file.entry = target_entry,
            },
        }
        Ok(())
    }
}

/// Merges a fresh listing of folder `ino` into the table: known names keep their inode numbers (a clean
/// file takes the stored version; a changed one keeps the version it was read at, so that its upload
/// detects the other writer), new names get new ones, and names gone from the store leave, except files
/// created or changed here and not uploaded yet.
fn merge_listing(
    state: &mut State,
    ino: u64,
    mut entries: Vec<VaultEntry>,
    started: Instant,
    dir_ref: impl Fn(&str) -> crate::cryptomator::vault::DirRef,
) -> Result<(), FsError> {
    let mut seen = HashSet::new();
    for mut entry in entries.drain(..) {
        if entry.kind == EntryKind::Symlink {
            tracing::debug!(node = %entry.node.display(), "symbolic links are not shown by the mount");
            wipe_entry(&mut entry);
            continue;
        }
        let name = Name(entry.name.clone());
        wipe_entry(&mut entry);
        let existing = state.dir(ino)?.children.get(&name).copied();
        seen.insert(name.clone());
        let kept = match existing.and_then(|child| state.nodes.get_mut(&child).map(|node| (child, node))) {
            Some((_, node)) => match (&mut node.kind, entry.kind) {
                (Kind::File(file), EntryKind::File) => {
                    let changed = file.entry.as_ref().is_none_or(|known| known.version != entry.version);
                    if changed && !file.dirty {
                        file.size = entry.size;
                        file.mtime = entry.modified.unwrap_or(file.mtime);
                        file.ctime = file.mtime;
                        // An open file keeps the reader bound to the header it opened: the new version's
                        // chunks do not authenticate under it (EIO), so a program never reads a mix.
                        if file.open_handles == 0 {
                            file.reader = None;
                            file.content = None;
                        }
                        file.entry = Some(entry.clone());
                    }
                    true
                }
                (Kind::Dir(dir), EntryKind::Dir)
                    if dir.entry.as_ref().and_then(|known| known.dir_id.as_ref()) == entry.dir_id.as_ref() =>
                {
                    dir.entry = Some(entry.clone());
                    true
                }
                _ => false,
            },
            None => false,
        };
        if kept {
            wipe_entry(&mut entry);
            continue;
        }
        if let Some(child) = existing {
            state.detach(child);
        }
        let kind = match entry.kind {
            EntryKind::Dir => {
                let Some(id) = entry.dir_id.clone() else { continue };
                Kind::Dir(Box::new(Dir {
                    dir: dir_ref(&id),
                    entry: Some(entry),
                    children: Default::default(),
                    listed: None,
                    changed: None,
                }))
            }
            _ => Kind::File(Box::new(File::stored(entry))),
        };
        state.allocate(ino, &name.0, kind);
    }
    let gone: Vec<u64> =
        state.dir(ino)?.children.iter().filter(|(name, _)| !seen.contains(*name)).map(|(_, child)| *child).collect();
    for child in gone {
        let keep = match state.nodes.get(&child).map(|node| &node.kind) {
            // Not uploaded yet, or changed here: the upload recreates it (or keeps a conflicted copy).
            Some(Kind::File(file)) => file.dirty || file.entry.is_none(),
            // Made here after the listing started.
            Some(Kind::Dir(dir)) => {
                dir.changed.is_some_and(|at| at.elapsed().is_ok_and(|since| since < started.elapsed()))
            }
            None => false,
        };
        if !keep {
            state.detach(child);
        }
    }
    state.dir_mut(ino)?.listed = Some(Instant::now());
    Ok(())
}
