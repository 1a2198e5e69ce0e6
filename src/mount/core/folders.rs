//! Folders: loading a folder's listing and metadata into the inode table, revalidating it against the
//! server (ETag, then metadata counter), the offline pause, and lookups and listings over the table.

use super::*;

impl<R: E2eeApi> Core<R> {
    /// Reads folder `ino` from the server and merges it into the inode table.
    pub(super) async fn reload(&self, ino: u64) -> Result<(), FsError> {
        let path = self.state().remote_path(&self.root_path, ino)?;
        let (view, entries) = self.vault.list_folder(&self.tree, &path).await.map_err(|error| self.fail(error))?;
        self.merge(ino, view, entries);
        Ok(())
    }

    pub(super) fn merge(&self, ino: u64, view: FolderView, entries: Vec<RemoteEntry>) {
        let mut state = self.state();
        let blobs: HashMap<String, (u64, SystemTime)> = entries
            .into_iter()
            .filter(|entry| !entry.is_dir)
            .map(|entry| (entry.name, (entry.size, entry.modified.unwrap_or(SystemTime::UNIX_EPOCH))))
            .collect();
        let Ok(dir) = state.dir_mut(ino) else { return };
        let old_children = std::mem::take(&mut dir.children);
        let folder = view.folder().clone();
        let mut keep: BTreeMap<Name, u64> = BTreeMap::new();
        let mut create: Vec<(Name, Kind)> = Vec::new();
        for (uid, name) in &folder.folders {
            let name = Name(name.to_string());
            match old_children.get(&name).and_then(|child| state.nodes.get(child).map(|node| (*child, node))) {
                Some((child, Node { kind: Kind::Dir(existing), .. })) if existing.uid == *uid => {
                    keep.insert(name, child);
                }
                _ => create.push((name, Kind::Dir(Box::new(Dir::on_server(uid))))),
            }
        }
        for (uid, entry) in &folder.files {
            let name = Name(entry.filename.to_string());
            let (size, mtime) =
                blobs.get(uid).map(|(size, time)| (plaintext_len(*size), *time)).unwrap_or((0, SystemTime::UNIX_EPOCH));
            let existing = old_children.get(&name).copied();
            if let Some(child) = existing {
                if let Some(Node { kind: Kind::File(file), .. }) = state.nodes.get_mut(&child) {
                    if !(file.dirty || file.pending || file.uid.is_none()) && file.uid.as_deref() != Some(uid) {
                        file.uid = Some(uid.clone());
                        file.entry = Some(entry.clone());
                        file.size = size;
                        file.mtime = mtime;
                        file.content = None;
                    } else if file.uid.as_deref() == Some(uid) && !file.dirty {
                        file.size = size;
                    }
                    keep.insert(name, child);
                    continue;
                }
            }
            create.push((name, Kind::File(File::on_server(uid, entry, size, mtime))));
        }
        // Local files not on the server yet stay; everything else that vanished is detached.
        let mut vanished = Vec::new();
        for (name, child) in &old_children {
            if keep.contains_key(name) || create.iter().any(|(new, _)| new == name) {
                continue;
            }
            match state.nodes.get(child).map(|node| &node.kind) {
                Some(Kind::File(file)) if file.dirty || file.pending || file.uid.is_none() => {
                    keep.insert(name.clone(), *child);
                }
                Some(Kind::Dir(dir)) if !dir.on_server => {
                    keep.insert(name.clone(), *child);
                }
                _ => vanished.push(*child),
            }
        }
        if let Ok(dir) = state.dir_mut(ino) {
            dir.children = keep;
            dir.loaded = Some(Loaded { view, folder, blobs, checked: Instant::now() });
        }
        for (name, kind) in create {
            state.allocate(ino, &name.0, kind);
        }
        for child in vanished {
            if let Some(node) = state.nodes.get_mut(&child) {
                node.parent = u64::MAX;
            }
            match state.nodes.get_mut(&child).map(|node| &mut node.kind) {
                Some(Kind::File(file)) if file.open_handles > 0 => file.unlinked = true,
                _ => state.forget_subtree(child),
            }
        }
    }

    /// Makes sure folder `ino` is loaded and not older than the dir cache time (outside a batch: inside,
    /// our lock keeps it current).
    pub(super) async fn ensure_current(&self, ino: u64) -> Result<(), FsError> {
        if self.state().local_only(ino) {
            // Made here and not on the server yet: its listing is ours alone.
            return Ok(());
        }
        if self.state().staged_above(ino) {
            self.commit_now().await?;
        }
        let (loaded, stale, path) = {
            let state = self.state();
            let dir = state.dir(ino)?;
            let batch_open = state.batch.is_some();
            match &dir.loaded {
                None => (false, true, Vec::new()),
                Some(loaded) => {
                    let stale = !batch_open && !dir.touched && loaded.checked.elapsed() >= self.options.dir_cache_time;
                    (true, stale, state.remote_path(&self.root_path, ino)?)
                }
            }
        };
        if !loaded {
            return self.reload(ino).await;
        }
        if !stale || lock(&self.offline_until).is_some_and(|until| Instant::now() < until) {
            return Ok(());
        }
        match self.check_folder_or_unreachable(ino, &path).await {
            Err(Unreachable) => {
                // Offline: keep showing the listings we verified before, and do not ask the server again
                // for a while (every call would otherwise wait for the timeout).
                tracing::warn!(file_id = self.folder_file_id(ino), "server unreachable; showing cached listings");
                *lock(&self.offline_until) = Some(Instant::now() + self.options.dir_cache_time.max(OFFLINE_PAUSE));
                Ok(())
            }
            Ok(result) => result,
        }
    }

    /// [`Self::check_folder`], telling an unreachable server apart from every other failure.
    pub(super) async fn check_folder_or_unreachable(
        &self,
        ino: u64,
        path: &[String],
    ) -> Result<Result<(), FsError>, Unreachable> {
        match self.vault.folder_view(&self.tree, path).await {
            Err(VaultError::Remote(error)) if error.is_unreachable() => Err(Unreachable),
            Err(VaultError::NotFound) => Ok(Err(FsError::NotFound)),
            Err(error) => Ok(Err(self.fail(error))),
            Ok(fresh) => Ok(self.apply_check(ino, fresh).await),
        }
    }

    /// The server's file id of folder `ino` (for logs), 0 if unknown.
    pub(super) fn folder_file_id(&self, ino: u64) -> u64 {
        self.state().dir(ino).ok().and_then(|dir| dir.loaded.as_ref().map(|loaded| loaded.view.file_id)).unwrap_or(0)
    }

    /// Reads folder `ino` alone (depth 0) and reloads its listing only if its metadata counter moved (any
    /// change to the folder by any client rewrites its metadata with a higher counter).
    pub(super) async fn check_folder(&self, ino: u64, path: &[String]) -> Result<(), FsError> {
        self.check_folder_or_unreachable(ino, path).await.unwrap_or_else(|Unreachable| {
            tracing::warn!(file_id = self.folder_file_id(ino), "server unreachable");
            Err(FsError::Unreachable)
        })
    }

    /// Keeps folder `ino`'s listing if `fresh` has the same counter, else reloads it.
    pub(super) async fn apply_check(&self, ino: u64, fresh: FolderView) -> Result<(), FsError> {
        let unchanged = {
            let mut state = self.state();
            match state.dir_mut(ino).map(|dir| dir.loaded.as_mut()) {
                Ok(Some(loaded)) if loaded.view.folder().counter == fresh.folder().counter => {
                    loaded.view.etag = fresh.etag;
                    loaded.checked = Instant::now();
                    true
                }
                _ => false,
            }
        };
        if unchanged {
            Ok(())
        } else {
            self.reload(ino).await
        }
    }

    /// Looks `name` up in folder `parent`.
    pub async fn lookup(&self, parent: u64, name: &str) -> Result<Attributes, FsError> {
        validate_name(name)?;
        self.ensure_current(parent).await?;
        let state = self.state();
        let child = state.child(parent, name)?.ok_or(FsError::NotFound)?;
        state.attributes(child)
    }

    /// The attributes of `ino`.
    pub async fn getattr(&self, ino: u64) -> Result<Attributes, FsError> {
        let is_dir = matches!(self.state().node(ino)?.kind, Kind::Dir(_));
        if is_dir {
            self.ensure_current(ino).await?;
        }
        self.state().attributes(ino)
    }

    /// The entries of folder `ino` (without `.` and `..`).
    pub async fn readdir(&self, ino: u64) -> Result<Vec<DirEntry>, FsError> {
        self.note_activity();
        self.ensure_current(ino).await?;
        let state = self.state();
        let dir = state.dir(ino)?;
        dir.children
            .iter()
            .map(|(name, child)| {
                Ok(DirEntry { name: Zeroizing::new(name.0.clone()), attributes: state.attributes(*child)? })
            })
            .collect()
    }

    /// Where `ino` is now: its folder and its clear name (an unlinked file: [`FsError::NotFound`]).
    pub fn location(&self, ino: u64) -> Result<(u64, Zeroizing<String>), FsError> {
        let state = self.state();
        let node = state.node(ino)?;
        if ino != ROOT_INO && !state.nodes.contains_key(&node.parent) {
            return Err(FsError::NotFound);
        }
        Ok((node.parent, Zeroizing::new(node.name.0.clone())))
    }

    /// The parent of folder `ino`.
    pub fn parent_of(&self, ino: u64) -> u64 {
        self.state().nodes.get(&ino).map(|node| node.parent).unwrap_or(ROOT_INO)
    }
}
