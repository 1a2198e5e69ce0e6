//! The folder tree of a mounted Cryptomator vault: listings read from the store (and trusted for the dir
//! cache time), lookups, and the namespace changes, each applied to the store at once.

use std::collections::HashSet;
use std::time::{Instant, SystemTime};

use super::{validate_name, wipe_entry, CryptomatorFs, Dir, File, Kind, Name, State};
use crate::cryptomator::{EntryKind, VaultEntry};
use crate::mount::core::{Attributes, DirEntry, OpenMode, Opened};
use crate::mount::error::FsError;
use crate::storage::Store;

impl<S: Store + Clone + 'static> CryptomatorFs<S> {
    /// Reads folder `ino`'s listing from the store unless it was read within the dir cache time.
    pub(super) async fn ensure_listed(&self, ino: u64) -> Result<(), FsError> {
        let _listing = self.listings.lock(&ino).await;
        let (dir_ref, generation) = {
            let state = self.state();
            let dir = state.dir(ino)?;
            if dir.listed.is_some_and(|at| at.elapsed() < self.options.dir_cache_time) {
                return Ok(());
            }
            (dir.dir.clone(), dir.generation)
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
        merge_listing(&mut state, ino, entries, Since { instant: started, generation }, |id| self.vault.dir_ref(id))
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
        let mut dir = Dir::new(self.vault.dir_ref(&id), Some(entry), Some(Instant::now()));
        dir.changed = Some(SystemTime::now());
        let mut state = self.state();
        let ino = state.allocate(parent, name, Kind::Dir(Box::new(dir)));
        state.changed_here(parent, &Name(name.to_owned()));
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
            state.changed_here(parent, &Name(name.to_owned()));
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
            state.changed_here(parent, &Name(name.to_owned()));
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
            Err(error) if error.remote_kind() == Some(crate::storage::RemoteErrorKind::NotFound) => Ok(()),
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

/// When a listing was started: the time, and the folder's [`Dir::generation`] of local changes.
#[derive(Clone, Copy)]
struct Since {
    instant: Instant,
    generation: u64,
}

/// Merges a fresh listing of folder `ino` into the table: known names keep their inode numbers (a clean
/// file takes the stored version; a changed one keeps the version it was read at, so that its upload
/// detects the other writer), new names get new ones, and names gone from the store leave, except files
/// created or changed here and not uploaded yet. A name changed here while the listing was read (a
/// rename, a removal, an upload that ended) keeps what the table says: the listing may predate the change.
fn merge_listing(
    state: &mut State,
    ino: u64,
    mut entries: Vec<VaultEntry>,
    since: Since,
    dir_ref: impl Fn(&str) -> crate::cryptomator::vault::DirRef,
) -> Result<(), FsError> {
    let started = since.instant;
    let changed_meanwhile: HashSet<Name> = state
        .dir(ino)?
        .touched
        .iter()
        .filter(|(_, generation)| **generation > since.generation)
        .map(|(name, _)| name.clone())
        .collect();
    let mut seen = HashSet::new();
    for mut entry in entries.drain(..) {
        if entry.kind == EntryKind::Symlink {
            tracing::debug!(node = %entry.node.display(), "symbolic links are not shown by the mount");
            wipe_entry(&mut entry);
            continue;
        }
        let name = Name(entry.name.clone());
        wipe_entry(&mut entry);
        if changed_meanwhile.contains(&name) {
            continue;
        }
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
                Kind::Dir(Box::new(Dir::new(dir_ref(&id), Some(entry), None)))
            }
            _ => Kind::File(Box::new(File::stored(entry))),
        };
        state.allocate(ino, &name.0, kind);
    }
    let gone: Vec<u64> = state
        .dir(ino)?
        .children
        .iter()
        .filter(|(name, _)| !seen.contains(*name) && !changed_meanwhile.contains(*name))
        .map(|(_, child)| *child)
        .collect();
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
    let dir = state.dir_mut(ino)?;
    dir.listed = Some(Instant::now());
    // Listings of this folder run one at a time: the next one starts after this generation.
    dir.touched.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cryptomator::vault::{DirRef, Node as StoredNode};
    use crate::mount::core::ROOT_INO;

    fn dir_ref(id: &str) -> DirRef {
        DirRef { id: id.to_owned(), content_path: vec!["d".into(), "XX".into(), id.to_owned()] }
    }

    fn stored(name: &str, version: &str) -> VaultEntry {
        VaultEntry {
            name: name.to_owned(),
            kind: EntryKind::File,
            size: 1,
            modified: None,
            node: StoredNode { path: vec!["d".into(), "XX".into(), format!("{version}.c9r")], shortened: false },
            version: version.to_owned(),
            dir_id: None,
        }
    }

    /// A root folder holding `files` as the store last listed them.
    fn table(files: &[(&str, &str)]) -> State {
        let mut state = State::new(dir_ref(""));
        let listing = files.iter().map(|(name, version)| stored(name, version)).collect();
        let started = since(&state);
        merge_listing(&mut state, ROOT_INO, listing, started, dir_ref).unwrap();
        state
    }

    fn since(state: &State) -> Since {
        Since { instant: Instant::now(), generation: state.dir(ROOT_INO).unwrap().generation }
    }

    fn names(state: &State) -> Vec<String> {
        state.dir(ROOT_INO).unwrap().children.keys().map(|name| name.0.clone()).collect()
    }

    fn version(state: &State, name: &str) -> Option<String> {
        let ino = state.child(ROOT_INO, name).unwrap()?;
        state.file(ino).unwrap().entry.as_ref().map(|entry| entry.version.clone())
    }

    #[test]
    fn a_listing_applies_what_others_changed() {
        let mut state = table(&[("a", "1"), ("b", "1")]);
        let a = state.child(ROOT_INO, "a").unwrap().unwrap();
        let started = since(&state);
        merge_listing(&mut state, ROOT_INO, vec![stored("a", "2"), stored("c", "1")], started, dir_ref).unwrap();
        assert_eq!(names(&state), ["a", "c"]);
        assert_eq!(state.child(ROOT_INO, "a").unwrap(), Some(a), "a known name keeps its inode");
        assert_eq!(version(&state, "a").as_deref(), Some("2"));
    }

    #[test]
    fn a_rename_made_while_the_listing_was_read_is_kept() {
        // git: index.lock (uploaded) renamed over index while a listing of the folder is on its way.
        let mut state = table(&[("index", "1"), ("index.lock", "2")]);
        let lock_file = state.child(ROOT_INO, "index.lock").unwrap().unwrap();
        let started = since(&state);
        let replaced = state.child(ROOT_INO, "index").unwrap().unwrap();
        state.detach(replaced);
        state.relink(lock_file, ROOT_INO, "index").unwrap();
        let read_before_the_rename = vec![stored("index", "1"), stored("index.lock", "2")];
        merge_listing(&mut state, ROOT_INO, read_before_the_rename, started, dir_ref).unwrap();
        assert_eq!(names(&state), ["index"], "the old name came back or the new one left");
        assert_eq!(state.child(ROOT_INO, "index").unwrap(), Some(lock_file));
        assert_eq!(version(&state, "index").as_deref(), Some("2"));
        // The next listing is read after the rename and applies again.
        let started = since(&state);
        merge_listing(&mut state, ROOT_INO, vec![stored("index", "3")], started, dir_ref).unwrap();
        assert_eq!(version(&state, "index").as_deref(), Some("3"));
    }

    #[test]
    fn an_upload_that_ends_while_the_listing_was_read_is_kept() {
        let mut state = table(&[]);
        let new = state.allocate(ROOT_INO, "new", Kind::File(Box::new(File::new_here())));
        let started = since(&state);
        // The upload ends after the store was listed without the file.
        state.touched_here(ROOT_INO, &Name("new".into()));
        let file = state.file_mut(new).unwrap();
        file.entry = Some(stored("new", "1"));
        file.dirty = false;
        merge_listing(&mut state, ROOT_INO, Vec::new(), started, dir_ref).unwrap();
        assert_eq!(names(&state), ["new"], "an uploaded file vanished");
        // A listing read after the upload that does not show it: another device removed it.
        let started = since(&state);
        merge_listing(&mut state, ROOT_INO, Vec::new(), started, dir_ref).unwrap();
        assert!(names(&state).is_empty());
    }

    #[test]
    fn a_removal_made_while_the_listing_was_read_is_kept() {
        let mut state = table(&[("gone", "1")]);
        let started = since(&state);
        let gone = state.child(ROOT_INO, "gone").unwrap().unwrap();
        state.detach(gone);
        merge_listing(&mut state, ROOT_INO, vec![stored("gone", "1")], started, dir_ref).unwrap();
        assert!(names(&state).is_empty(), "a removed file came back");
    }
}
