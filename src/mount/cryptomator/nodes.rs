//! The inode table of a mounted Cryptomator vault: folders (their id, their entry, children by clear name,
//! when they were listed) and files (their stored entry, content, reader, dirty state), clear names wiped
//! when dropped, and the lookups and moves over the table.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use zeroize::Zeroize;

use super::kept::SharedReader;
use crate::cryptomator::vault::DirRef;
use crate::cryptomator::VaultEntry;
use crate::mount::cache::Plaintext;
use crate::mount::content::Content;
use crate::mount::core::{Attributes, Name, NodeType, ROOT_INO};
use crate::mount::error::FsError;

/// Wipes the clear name an entry carries.
pub(super) fn wipe_entry(entry: &mut VaultEntry) {
    entry.name.zeroize();
}

pub(super) struct Dir {
    /// The folder's id and where its entries are stored.
    pub(super) dir: DirRef,
    /// Its entry in its parent (`None` for the root).
    pub(super) entry: Option<VaultEntry>,
    /// Children by clear name (valid once listed).
    pub(super) children: BTreeMap<Name, u64>,
    /// When the listing was last read from the store (`None`: never, or known to be stale).
    pub(super) listed: Option<Instant>,
    /// When an entry was last created, removed or renamed in it here.
    pub(super) changed: Option<SystemTime>,
    /// How many times its entries were changed here (created, removed, renamed, uploaded).
    pub(super) generation: u64,
    /// The names changed here since the last merged listing, with the generation of their last change: a
    /// listing read from the store while one of them changed says nothing current about that name.
    pub(super) touched: BTreeMap<Name, u64>,
}

impl Dir {
    /// A folder with no children known yet.
    pub(super) fn new(dir: DirRef, entry: Option<VaultEntry>, listed: Option<Instant>) -> Self {
        Self { dir, entry, children: BTreeMap::new(), listed, changed: None, generation: 0, touched: BTreeMap::new() }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if let Some(entry) = &mut self.entry {
            wipe_entry(entry);
        }
    }
}

/// A file shared by its open handles.
pub(super) struct File {
    /// Its entry in the store (`None`: created here and not uploaded yet).
    pub(super) entry: Option<VaultEntry>,
    /// Clear size when the content is not loaded.
    pub(super) size: u64,
    pub(super) mtime: SystemTime,
    pub(super) ctime: SystemTime,
    /// The whole clear text, while open for writing or changed and not uploaded.
    pub(super) content: Option<Plaintext>,
    /// Ranged reads of the stored version, while open for reading.
    pub(super) reader: Option<SharedReader>,
    /// The content differs from what the store has.
    pub(super) dirty: bool,
    /// Increases with every local change (an upload makes the file clean only if nothing changed since).
    pub(super) version: u64,
    pub(super) open_handles: u32,
    /// The last upload error.
    pub(super) error: Option<String>,
    /// Removed while open: never uploaded, dropped at the last release.
    pub(super) unlinked: bool,
    /// The store version whose content the kernel's page cache holds.
    pub(super) kernel_cached: Option<String>,
}

impl Drop for File {
    fn drop(&mut self) {
        if let Some(entry) = &mut self.entry {
            wipe_entry(entry);
        }
    }
}

impl File {
    pub(super) fn stored(entry: VaultEntry) -> Self {
        let mtime = entry.modified.unwrap_or(SystemTime::UNIX_EPOCH);
        Self {
            size: entry.size,
            entry: Some(entry),
            mtime,
            ctime: mtime,
            content: None,
            reader: None,
            dirty: false,
            version: 0,
            open_handles: 0,
            error: None,
            unlinked: false,
            kernel_cached: None,
        }
    }

    pub(super) fn new_here() -> Self {
        let now = SystemTime::now();
        Self {
            entry: None,
            size: 0,
            mtime: now,
            ctime: now,
            content: Some(Arc::new(Content::empty())),
            reader: None,
            dirty: true,
            version: 1,
            open_handles: 0,
            error: None,
            unlinked: false,
            kernel_cached: None,
        }
    }

    pub(super) fn mark_changed(&mut self) {
        self.dirty = true;
        self.version += 1;
        self.mtime = SystemTime::now();
        self.ctime = self.mtime;
        self.kernel_cached = None;
    }
}

pub(super) enum Kind {
    Dir(Box<Dir>),
    File(Box<File>),
}

pub(super) struct Node {
    pub(super) parent: u64,
    pub(super) name: Name,
    pub(super) kind: Kind,
}

pub(super) struct State {
    pub(super) nodes: HashMap<u64, Node>,
    pub(super) next_ino: u64,
    pub(super) handles: HashMap<u64, u64>,
    pub(super) next_fh: u64,
    pub(super) uploads: u64,
    pub(super) mounted_at: SystemTime,
    /// Failed uploads are tried again from then on.
    pub(super) retry_at: Option<Instant>,
    /// Closed files waiting for a background upload (write-behind); by inode number, so about in the
    /// order they were made.
    pub(super) upload_queue: BTreeSet<u64>,
}

impl State {
    /// The table of a vault mounted at folder `root`, its only node so far.
    pub(super) fn new(root: DirRef) -> Self {
        let root = Dir::new(root, None, None);
        let mut nodes = HashMap::new();
        nodes.insert(ROOT_INO, Node { parent: ROOT_INO, name: Name(String::new()), kind: Kind::Dir(Box::new(root)) });
        Self {
            nodes,
            next_ino: ROOT_INO,
            handles: HashMap::new(),
            next_fh: 0,
            uploads: 0,
            mounted_at: SystemTime::now(),
            retry_at: None,
            upload_queue: BTreeSet::new(),
        }
    }

    pub(super) fn node(&self, ino: u64) -> Result<&Node, FsError> {
        self.nodes.get(&ino).ok_or(FsError::NotFound)
    }

    pub(super) fn dir(&self, ino: u64) -> Result<&Dir, FsError> {
        match &self.node(ino)?.kind {
            Kind::Dir(dir) => Ok(dir),
            Kind::File(_) => Err(FsError::NotADirectory),
        }
    }

    pub(super) fn dir_mut(&mut self, ino: u64) -> Result<&mut Dir, FsError> {
        match &mut self.nodes.get_mut(&ino).ok_or(FsError::NotFound)?.kind {
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
        match &mut self.nodes.get_mut(&ino).ok_or(FsError::NotFound)?.kind {
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

    /// Records a change made here to entry `name` of folder `ino` (created, removed, renamed, uploaded):
    /// the folder's modification time, and the name as touched for listings read meanwhile.
    pub(super) fn changed_here(&mut self, ino: u64, name: &Name) {
        if let Ok(dir) = self.dir_mut(ino) {
            dir.changed = Some(SystemTime::now());
        }
        self.touched_here(ino, name);
    }

    /// Records that entry `name` of folder `ino` changed here (its upload ended, or [`Self::changed_here`]),
    /// so that a listing read meanwhile leaves it as the table has it; the folder's times stay.
    pub(super) fn touched_here(&mut self, ino: u64, name: &Name) {
        if let Ok(dir) = self.dir_mut(ino) {
            dir.generation += 1;
            let generation = dir.generation;
            dir.touched.insert(name.clone(), generation);
        }
    }

    /// Moves `ino` to `new_name` in `new_parent` in the table.
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
        let new_name = Name(new_name.to_owned());
        self.dir_mut(new_parent)?.children.insert(new_name.clone(), ino);
        self.changed_here(parent, &old_name);
        self.changed_here(new_parent, &new_name);
        let node = self.nodes.get_mut(&ino).ok_or(FsError::NotFound)?;
        node.parent = new_parent;
        node.name = new_name;
        if let Kind::File(file) = &mut node.kind {
            file.ctime = SystemTime::now();
        }
        Ok(())
    }

    /// Removes `ino` from its parent's index; a file open elsewhere stays until its last release.
    pub(super) fn detach(&mut self, ino: u64) {
        let Some(node) = self.nodes.get(&ino) else { return };
        let (parent, name) = (node.parent, node.name.clone());
        let removed = self.dir_mut(parent).is_ok_and(|dir| {
            let ours = dir.children.get(&name) == Some(&ino);
            if ours {
                dir.children.remove(&name);
            }
            ours
        });
        if removed {
            self.changed_here(parent, &name);
        }
        let drop_node = match self.nodes.get_mut(&ino).map(|node| &mut node.kind) {
            Some(Kind::File(file)) => {
                file.unlinked = true;
                file.dirty = false;
                file.open_handles == 0
            }
            Some(Kind::Dir(_)) => true,
            None => false,
        };
        if drop_node {
            self.forget_subtree(ino);
        }
    }

    pub(super) fn forget_subtree(&mut self, ino: u64) {
        if let Some(node) = self.nodes.remove(&ino) {
            if let Kind::Dir(dir) = &node.kind {
                for child in dir.children.values() {
                    self.forget_subtree(*child);
                }
            }
        }
    }

    /// Whether `ino` is `ancestor` or below it.
    pub(super) fn is_at_or_below(&self, mut ino: u64, ancestor: u64) -> bool {
        loop {
            if ino == ancestor {
                return true;
            }
            if ino == ROOT_INO {
                return false;
            }
            match self.nodes.get(&ino) {
                Some(node) => ino = node.parent,
                None => return false,
            }
        }
    }

    /// The clear path of `ino` inside the mount (for `cloakfs status` only, shown to the local user).
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

    pub(super) fn attributes(&self, ino: u64) -> Result<Attributes, FsError> {
        Ok(match &self.node(ino)?.kind {
            Kind::Dir(dir) => {
                let modified = dir.entry.as_ref().and_then(|entry| entry.modified);
                let mtime = modified.max(dir.changed).unwrap_or(self.mounted_at);
                Attributes { ino, kind: NodeType::Directory, size: 0, mtime, ctime: mtime }
            }
            Kind::File(file) => {
                let size = file.content.as_ref().map(|content| content.len()).unwrap_or(file.size);
                Attributes { ino, kind: NodeType::File, size, mtime: file.mtime, ctime: file.ctime }
            }
        })
    }
}
