//! The inode table: folders and files by inode number, their clear names (wiped when dropped), what the
//! open batch changed, and the lookups over the table (paths, parents, attributes).

use super::*;

/// A clear name that is wiped when dropped and can key maps.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Name(pub(crate) String);

impl Drop for Name {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Name(..)")
    }
}

#[derive(Debug)]
pub(super) struct Loaded {
    /// The folder as last read from (or committed to) the server.
    pub(super) view: FolderView,
    /// What the mount shows: `view`'s metadata plus the open batch's changes.
    pub(super) folder: FolderMetadata,
    /// Blob sizes and times by server name, from the listing or our uploads.
    pub(super) blobs: HashMap<String, (u64, SystemTime)>,
    /// When the listing was last confirmed current.
    pub(super) checked: Instant,
}

#[derive(Debug)]
pub(super) struct Dir {
    /// Server name of the folder (the last segment of its remote path; unused for the root).
    pub(super) uid: String,
    pub(super) loaded: Option<Loaded>,
    /// Children by clear name (valid once loaded).
    pub(super) children: BTreeMap<Name, u64>,
    /// Changed in the open batch: its metadata is written at commit.
    pub(super) touched: bool,
    /// Created or moved in the open batch: the server shows it only after commit, so work inside it
    /// commits the batch first (as a real Nextcloud server stages such folders).
    pub(super) staged: bool,
    /// Exists on the server. `false`: made here and not created there yet (its contents are local too); a
    /// commit creates it once its parent exists on the server.
    pub(super) on_server: bool,
    /// Created on the server in the open batch (undone with the batch if the server drops our lock).
    pub(super) created: bool,
    /// When an entry was last created, removed or renamed in it here (its mtime and ctime while mounted).
    pub(super) changed: Option<SystemTime>,
}

impl Dir {
    /// A folder the server has, not loaded yet.
    pub(super) fn on_server(uid: &str) -> Self {
        Self {
            uid: uid.to_owned(),
            loaded: None,
            children: BTreeMap::new(),
            touched: false,
            staged: false,
            on_server: true,
            created: false,
            changed: None,
        }
    }
}

#[derive(Debug)]
pub(super) struct File {
    /// Current server name (`None`: created here and never uploaded).
    pub(super) uid: Option<String>,
    /// Keys of the current blob.
    pub(super) entry: Option<FileEntry>,
    /// Plaintext size when the content is not loaded.
    pub(super) size: u64,
    pub(super) mtime: SystemTime,
    /// Last change of the file (content, size, times, name, place).
    pub(super) ctime: SystemTime,
    /// The plaintext while open or dirty.
    pub(super) content: Option<Plaintext>,
    /// Content differs from what the server has (or will have at commit).
    pub(super) dirty: bool,
    /// Increases with every local change (an upload clears `dirty` only if nothing changed meanwhile).
    pub(super) version: u64,
    /// Uploaded in the open batch, not committed yet.
    pub(super) pending: bool,
    /// `uid` was created in the open batch (re-uploads reuse it).
    pub(super) uid_in_batch: bool,
    pub(super) open_handles: u32,
    /// Last upload error.
    pub(super) error: Option<String>,
    /// Server name whose content the kernel page cache holds.
    pub(super) kernel_cached: Option<String>,
    /// Removed from the tree while open.
    pub(super) unlinked: bool,
    /// Closed (or truncated) since its last change: the next commit uploads it.
    pub(super) queued: bool,
}

impl File {
    /// A file as the server has it (not loaded, not changed here).
    pub(super) fn on_server(uid: &str, entry: &FileEntry, size: u64, mtime: SystemTime) -> Self {
        Self {
            uid: Some(uid.to_owned()),
            entry: Some(entry.clone()),
            size,
            mtime,
            ctime: mtime,
            content: None,
            dirty: false,
            version: 0,
            pending: false,
            uid_in_batch: false,
            open_handles: 0,
            error: None,
            kernel_cached: None,
            unlinked: false,
            queued: false,
        }
    }
}

// Nodes live in one map; the size difference between folders and files does not matter there.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(super) enum Kind {
    Dir(Box<Dir>),
    File(File),
}

#[derive(Debug)]
pub(super) struct Node {
    pub(super) parent: u64,
    pub(super) name: Name,
    pub(super) kind: Kind,
}

#[derive(Debug)]
pub(super) struct Batch {
    pub(super) token: LockToken,
    pub(super) counter: u64,
    /// Folders confirmed current under this lock.
    pub(super) fresh: HashSet<u64>,
    /// Files uploaded in this batch.
    pub(super) pending_files: Vec<u64>,
    /// Server names of every blob uploaded under this lock: on Nextcloud they exist only as staged uploads
    /// until unlock, so they can neither be deleted nor moved under it (see [`Core::delete_or_defer`]).
    pub(super) uploaded: HashSet<String>,
    /// A commit failed: when to try again.
    pub(super) retry_at: Option<Instant>,
}

#[derive(Debug)]
pub(super) struct State {
    pub(super) nodes: HashMap<u64, Node>,
    pub(super) next_ino: u64,
    pub(super) handles: HashMap<u64, u64>,
    pub(super) next_fh: u64,
    pub(super) batch: Option<Batch>,
    pub(super) commit_error: Option<String>,
    pub(super) commits: u64,
    pub(super) uploads: u64,
    pub(super) retry_files_at: Option<Instant>,
    /// Shown as the time of folders without files.
    pub(super) mounted_at: SystemTime,
    /// The last change of the tree or of a file's content that a commit has to carry to the server.
    pub(super) last_change: Instant,
    /// Since when changes are waiting for a commit (`None`: nothing is).
    pub(super) pending_since: Option<Instant>,
    /// Blobs uploaded under an earlier lock that no metadata names any more (removed or replaced in the batch
    /// that uploaded them), by folder: deleted in the next batch, whose metadata write makes Nextcloud
    /// finalize the deletion.
    pub(super) deferred_deletes: Vec<(u64, String)>,
}

pub(super) fn validate_name(name: &str) -> Result<(), FsError> {
    if name.len() > 255 {
        return Err(FsError::NameTooLong);
    }
    if !is_valid_clear_name(name) {
        return Err(FsError::InvalidArgument);
    }
    Ok(())
}

impl State {
    pub(super) fn node(&self, ino: u64) -> Result<&Node, FsError> {
        self.nodes.get(&ino).ok_or(FsError::NotFound)
    }

    pub(super) fn node_mut(&mut self, ino: u64) -> Result<&mut Node, FsError> {
        self.nodes.get_mut(&ino).ok_or(FsError::NotFound)
    }

    pub(super) fn dir(&self, ino: u64) -> Result<&Dir, FsError> {
        match &self.node(ino)?.kind {
            Kind::Dir(dir) => Ok(dir),
            Kind::File(_) => Err(FsError::NotADirectory),
        }
    }

    pub(super) fn dir_mut(&mut self, ino: u64) -> Result<&mut Dir, FsError> {
        match &mut self.node_mut(ino)?.kind {
            Kind::Dir(dir) => Ok(dir),
            Kind::File(_) => Err(FsError::NotADirectory),
        }
    }

    pub(super) fn file(&self, ino: u64) -> Result<&File, FsError> {
        match &self.node(ino)?.kind {
            Kind::File(file) => Ok(file),
            Kind::Dir(_) => Err(FsError::IsADirectory),
        }
    }

    pub(super) fn file_mut(&mut self, ino: u64) -> Result<&mut File, FsError> {
        match &mut self.node_mut(ino)?.kind {
            Kind::File(file) => Ok(file),
            Kind::Dir(_) => Err(FsError::IsADirectory),
        }
    }

    pub(super) fn child(&self, parent: u64, name: &str) -> Result<Option<u64>, FsError> {
        Ok(self.dir(parent)?.children.get(&Name(name.to_owned())).copied())
    }

    pub(super) fn allocate(&mut self, parent: u64, name: &str, kind: Kind) -> u64 {
        self.next_ino += 1;
        let ino = self.next_ino;
        self.nodes.insert(ino, Node { parent, name: Name(name.to_owned()), kind });
        if let Ok(dir) = self.dir_mut(parent) {
            dir.children.insert(Name(name.to_owned()), ino);
        }
        ino
    }

    /// Moves node `ino` to `new_name` in `new_parent` in the inode table (and in its file entry's name).
    pub(super) fn relink(&mut self, ino: u64, new_parent: u64, new_name: &str) -> Result<(), FsError> {
        let (parent, old_name) = {
            let node = self.node(ino)?;
            (node.parent, node.name.clone())
        };
        if let Ok(dir) = self.dir_mut(parent) {
            if dir.children.get(&old_name) == Some(&ino) {
                dir.children.remove(&old_name);
            }
        }
        self.dir_mut(new_parent)?.children.insert(Name(new_name.to_owned()), ino);
        self.folder_changed(parent);
        self.folder_changed(new_parent);
        let node = self.node_mut(ino)?;
        node.parent = new_parent;
        node.name = Name(new_name.to_owned());
        if let Kind::File(file) = &mut node.kind {
            file.ctime = SystemTime::now();
            if let Some(entry) = &mut file.entry {
                entry.filename = Zeroizing::new(new_name.to_owned());
            }
        }
        Ok(())
    }

    /// Records that an entry of folder `ino` was created, removed or renamed here (its mtime and ctime).
    pub(super) fn folder_changed(&mut self, ino: u64) {
        if let Ok(dir) = self.dir_mut(ino) {
            dir.changed = Some(SystemTime::now());
        }
    }

    /// Detaches `ino` from its parent's index; the node itself stays while files are open.
    pub(super) fn detach(&mut self, ino: u64) {
        let Some(node) = self.nodes.get(&ino) else { return };
        let (parent, name) = (node.parent, node.name.clone());
        if let Ok(dir) = self.dir_mut(parent) {
            if dir.children.get(&name) == Some(&ino) {
                dir.children.remove(&name);
                dir.changed = Some(SystemTime::now());
            }
        }
        let drop_node = match &mut self.nodes.get_mut(&ino).map(|node| &mut node.kind) {
            Some(Kind::File(file)) => {
                file.unlinked = true;
                file.open_handles == 0
            }
            Some(Kind::Dir(_)) => true,
            None => false,
        };
        if drop_node {
            self.forget_subtree(ino);
        }
    }

    /// A concurrent change: file `ino` in `parent` moves to `conflict` (a new name), and its old name shows
    /// the other client's version `theirs` (already in the listing).
    pub(super) fn keep_both(&mut self, parent: u64, ino: u64, conflict: &str, theirs: &str) -> Result<(), FsError> {
        let old_name = self.node(ino)?.name.clone();
        let (their_entry, size, mtime) = {
            let loaded = self.dir(parent)?.loaded.as_ref().ok_or(FsError::Io)?;
            let entry = loaded.folder.files.get(theirs).cloned().ok_or(FsError::Io)?;
            let (size, mtime) = loaded
                .blobs
                .get(theirs)
                .map(|(size, time)| (plaintext_len(*size), *time))
                .unwrap_or((0, SystemTime::UNIX_EPOCH));
            (entry, size, mtime)
        };
        let dir = self.dir_mut(parent)?;
        if dir.children.get(&old_name) == Some(&ino) {
            dir.children.remove(&old_name);
        }
        dir.children.insert(Name(conflict.to_owned()), ino);
        self.node_mut(ino)?.name = Name(conflict.to_owned());
        self.allocate(parent, &old_name.0, Kind::File(File::on_server(theirs, &their_entry, size, mtime)));
        Ok(())
    }

    pub(super) fn forget_subtree(&mut self, ino: u64) {
        if let Some(node) = self.nodes.remove(&ino) {
            if let Kind::Dir(dir) = node.kind {
                for child in dir.children.values() {
                    self.forget_subtree(*child);
                }
            }
        }
    }

    /// The server path of folder `ino`.
    pub(super) fn remote_path(&self, root_path: &[String], ino: u64) -> Result<Vec<String>, FsError> {
        let mut uids = Vec::new();
        let mut current = ino;
        while current != ROOT_INO {
            let node = self.node(current)?;
            match &node.kind {
                Kind::Dir(dir) => uids.push(dir.uid.clone()),
                Kind::File(_) => return Err(FsError::NotADirectory),
            }
            current = node.parent;
        }
        let mut path = root_path.to_vec();
        path.extend(uids.into_iter().rev());
        Ok(path)
    }

    /// The clear path of `ino` inside the mount (for `cloakfs status` only).
    pub(super) fn clear_path(&self, ino: u64) -> String {
        let mut names = Vec::new();
        let mut current = ino;
        while current != ROOT_INO {
            let Some(node) = self.nodes.get(&current) else { break };
            names.push(node.name.0.clone());
            current = node.parent;
        }
        names.reverse();
        format!("/{}", names.join("/"))
    }

    /// Whether folder `ino` or a folder above it exists only here (made by mkdir, not created on the server
    /// yet).
    pub(super) fn local_only(&self, ino: u64) -> bool {
        self.any_folder_up_from(ino, |dir| !dir.on_server)
    }

    /// Whether `check` holds for folder `ino` (if it is one) or any folder above it.
    pub(super) fn any_folder_up_from(&self, ino: u64, check: impl Fn(&Dir) -> bool) -> bool {
        let mut current = ino;
        loop {
            if self.dir(current).is_ok_and(&check) {
                return true;
            }
            if current == ROOT_INO {
                return false;
            }
            match self.nodes.get(&current) {
                Some(node) => current = node.parent,
                None => return false,
            }
        }
    }

    /// The server name `ino` has on the server, if it has one (a file uploaded at least once, a folder that
    /// exists there).
    pub(super) fn server_uid(&self, ino: u64) -> Option<String> {
        match &self.node(ino).ok()?.kind {
            Kind::Dir(dir) => dir.on_server.then(|| dir.uid.clone()),
            Kind::File(file) => file.uid.clone(),
        }
    }

    /// Whether `ino` or a folder above it is staged in the open batch.
    pub(super) fn staged_above(&self, ino: u64) -> bool {
        self.any_folder_up_from(ino, |dir| dir.staged)
    }

    pub(super) fn attributes(&self, ino: u64) -> Result<Attributes, FsError> {
        let node = self.node(ino)?;
        Ok(match &node.kind {
            Kind::Dir(dir) => {
                let newest_blob =
                    dir.loaded.as_ref().and_then(|loaded| loaded.blobs.values().map(|(_, time)| *time).max());
                let mtime = newest_blob.max(dir.changed).unwrap_or(self.mounted_at);
                Attributes { ino, kind: NodeType::Directory, size: 0, mtime, ctime: mtime }
            }
            Kind::File(file) => {
                let size = file.content.as_ref().map(|content| content.len()).unwrap_or(file.size);
                Attributes { ino, kind: NodeType::File, size, mtime: file.mtime, ctime: file.ctime }
            }
        })
    }
}
