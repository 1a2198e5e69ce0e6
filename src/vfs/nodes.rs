//! The inode table: folders (their stored entry, their listing, children by clear name, what changed in
//! them here) and files (their stored entry, content, reader, dirty state), clear names wiped when dropped,
//! and the lookups and moves over the table.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use zeroize::Zeroize;

use super::engine::{Attributes, NodeType, ROOT_INO};
use super::Plaintext;
use crate::content::Content;
use crate::format::{Format, FsError, ListedEntry, Stored};

/// A clear name in the inode table; wiped when dropped.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Name(pub String);

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

/// A folder's listing as last read (or written by a commit).
pub(super) struct Listed<F: Format> {
    /// What the format keeps of it.
    pub(super) state: F::Listed,
    /// The folder's own modification time, if the listing told it.
    pub(super) modified: Option<SystemTime>,
    /// When the listing was started or last confirmed current (a change made before then is in it).
    pub(super) at: Instant,
}

pub(super) struct Dir<F: Format> {
    /// Where the folder is stored (`None`: made here, not created in storage yet; its contents are local).
    pub(super) stored: Option<F::Folder>,
    /// The listing (`None`: never read, or known to be stale).
    pub(super) listed: Option<Listed<F>>,
    /// Its last modification as its parent's listing says.
    pub(super) modified: Option<SystemTime>,
    /// Children by clear name (valid once listed).
    pub(super) children: BTreeMap<Name, u64>,
    /// When an entry was last created, removed or renamed in it here (its mtime and ctime while mounted).
    pub(super) changed: Option<SystemTime>,
    /// When its attributes were last set here (chmod, chown, utimes: accepted without effect, but they
    /// change the ctime, as POSIX has it).
    pub(super) attributes_changed: Option<SystemTime>,
    /// How many times its entries were changed here (created, removed, renamed, uploaded).
    pub(super) generation: u64,
    /// The names changed here since the last merged listing, with the generation of their last change: a
    /// listing read while one of them changed says nothing current about that name.
    pub(super) touched: BTreeMap<Name, u64>,
    /// How many commits wrote its metadata: a listing read across one is older than the table and the
    /// listing the commit left.
    pub(super) commits: u64,
    /// Changed in the open batch: the commit writes its metadata (batching formats).
    pub(super) in_batch: bool,
    /// Created or moved in the open batch: storage shows it only after the commit, so work inside it commits
    /// the batch first (as a real Nextcloud server stages such folders).
    pub(super) staged: bool,
    /// Created in storage in the open batch (undone with the batch if the server drops our lock).
    pub(super) created: bool,
    /// An entry of the same name that storage holds and this local folder hides (made here meanwhile).
    pub(super) theirs: Option<ListedEntry<F>>,
}

impl<F: Format> Dir<F> {
    /// A folder storage has, not listed yet.
    pub(super) fn stored(stored: F::Folder, modified: Option<SystemTime>) -> Self {
        Self { stored: Some(stored), modified, changed: None, ..Self::local() }
    }

    /// A folder made here just now, not in storage yet.
    pub(super) fn local() -> Self {
        Self {
            stored: None,
            listed: None,
            modified: None,
            children: BTreeMap::new(),
            changed: Some(SystemTime::now()),
            attributes_changed: None,
            generation: 0,
            touched: BTreeMap::new(),
            commits: 0,
            in_batch: false,
            staged: false,
            created: false,
            theirs: None,
        }
    }
}

/// A file shared by its open handles.
pub(super) struct File<F: Format> {
    /// Its stored version (`None`: created here and never stored): what it was read at, and what its next
    /// store replaces.
    pub(super) stored: Option<F::File>,
    /// Clear size when the content is not loaded.
    pub(super) size: u64,
    pub(super) mtime: SystemTime,
    /// Last change of the file (content, size, times, name, place).
    pub(super) ctime: SystemTime,
    /// The clear text while open or dirty (or fetched whole for reading).
    pub(super) content: Option<Plaintext>,
    /// Ranged reads of the stored version, while open for reading.
    pub(super) reader: Option<SharedReader<F>>,
    /// Content differs from what storage has.
    pub(super) dirty: bool,
    /// Increases with every local change (an upload makes the file clean only if nothing changed meanwhile).
    pub(super) version: u64,
    /// Stored in the open batch, not committed yet (its content stays in RAM until then).
    pub(super) pending: bool,
    pub(super) open_handles: u32,
    /// The last upload error.
    pub(super) error: Option<String>,
    /// The content id whose content the kernel page cache holds.
    pub(super) kernel_cached: Option<String>,
    /// Removed while open: never stored, dropped at the last release.
    pub(super) unlinked: bool,
    /// Another version storage holds under this name that this changed file was not read at (another
    /// writer's): its store keeps both.
    pub(super) theirs: Option<ListedEntry<F>>,
}

/// The generation of a name whose change is on its way to storage (see [`State::changing`]).
pub(super) const IN_FLIGHT: u64 = u64::MAX;

/// A reader shared by a file's handles.
pub(super) type SharedReader<F> = Arc<tokio::sync::Mutex<<F as Format>::Reader>>;

impl<F: Format> File<F> {
    /// A file as storage has it (not loaded, not changed here).
    pub(super) fn stored(stored: F::File, size: u64, mtime: Option<SystemTime>) -> Self {
        let mtime = mtime.unwrap_or(SystemTime::UNIX_EPOCH);
        Self {
            stored: Some(stored),
            size,
            mtime,
            ctime: mtime,
            content: None,
            reader: None,
            dirty: false,
            version: 0,
            pending: false,
            open_handles: 0,
            error: None,
            kernel_cached: None,
            unlinked: false,
            theirs: None,
        }
    }

    /// A new empty file made here.
    pub(super) fn new_here() -> Self {
        let now = SystemTime::now();
        Self {
            stored: None,
            size: 0,
            mtime: now,
            ctime: now,
            content: Some(Arc::new(Content::empty())),
            reader: None,
            dirty: true,
            version: 1,
            pending: false,
            open_handles: 0,
            error: None,
            kernel_cached: None,
            unlinked: false,
            theirs: None,
        }
    }

    /// The id of the stored content, if any.
    pub(super) fn content_id(&self) -> Option<String> {
        self.stored.as_ref().map(F::content_id)
    }

    /// Its clear size now.
    pub(super) fn len(&self) -> u64 {
        self.content.as_ref().map(|content| content.len()).unwrap_or(self.size)
    }
}

/// A symbolic link: where its target is stored, and the target once read (wiped when dropped).
pub(super) struct Link<F: Format> {
    pub(super) stored: F::File,
    /// The target's length.
    pub(super) size: u64,
    pub(super) mtime: SystemTime,
    pub(super) ctime: SystemTime,
    /// The target, read and authenticated at the first readlink (a link's target never changes).
    pub(super) target: Option<zeroize::Zeroizing<String>>,
}

impl<F: Format> Link<F> {
    /// A link as storage has it (`target` known when it was made here).
    pub(super) fn stored(stored: F::File, size: u64, mtime: Option<SystemTime>, target: Option<&str>) -> Self {
        let mtime = mtime.unwrap_or(SystemTime::UNIX_EPOCH);
        let target = target.map(|target| zeroize::Zeroizing::new(target.to_owned()));
        Self { stored, size, mtime, ctime: mtime, target }
    }
}

pub(super) enum Kind<F: Format> {
    Dir(Box<Dir<F>>),
    File(Box<File<F>>),
    Link(Box<Link<F>>),
}

impl<F: Format> Kind<F> {
    /// A node for a listed entry, as storage has it.
    pub(super) fn listed(entry: ListedEntry<F>) -> Self {
        match entry.stored {
            Stored::File(stored) => Self::File(Box::new(File::stored(stored, entry.size, entry.modified))),
            Stored::Folder(stored) => Self::Dir(Box::new(Dir::stored(stored, entry.modified))),
            Stored::Link(stored) => Self::Link(Box::new(Link::stored(stored, entry.size, entry.modified, None))),
        }
    }
}

pub(super) struct Node<F: Format> {
    pub(super) parent: u64,
    pub(super) name: Name,
    pub(super) kind: Kind<F>,
}

pub(super) struct State<F: Format> {
    pub(super) nodes: HashMap<u64, Node<F>>,
    pub(super) next_ino: u64,
    pub(super) handles: HashMap<u64, u64>,
    pub(super) next_fh: u64,
    pub(super) batch: Option<super::batch::Batch<F>>,
    pub(super) commit_error: Option<String>,
    pub(super) commits: u64,
    pub(super) uploads: u64,
    /// Failed uploads are tried again from then on.
    pub(super) retry_files_at: Option<Instant>,
    /// Shown as the time of folders without one.
    pub(super) mounted_at: SystemTime,
    /// The last change a commit has to carry to storage.
    pub(super) last_change: Instant,
    /// Since when changes are waiting for a commit (`None`: nothing is).
    pub(super) pending_since: Option<Instant>,
    /// Closed (or truncated) changed files the next commit cycle stores (write-behind), by inode number.
    pub(super) queued: BTreeSet<u64>,
    /// Stored entries nothing names any more that could not be removed when they were replaced or removed
    /// (made in the batch that removed them, or their removal failed), by folder: removed in the next batch.
    pub(super) deferred: Vec<(u64, Stored<F>)>,
}

impl<F: Format> State<F> {
    /// The table of a mount whose root is stored as `root`, its only node so far.
    pub(super) fn new(root: F::Folder) -> Self {
        let mut nodes = HashMap::new();
        let root = Dir::stored(root, None);
        nodes.insert(ROOT_INO, Node { parent: ROOT_INO, name: Name(String::new()), kind: Kind::Dir(Box::new(root)) });
        Self {
            nodes,
            next_ino: ROOT_INO,
            handles: HashMap::new(),
            next_fh: 0,
            batch: None,
            commit_error: None,
            commits: 0,
            uploads: 0,
            retry_files_at: None,
            mounted_at: SystemTime::now(),
            last_change: Instant::now(),
            pending_since: None,
            queued: BTreeSet::new(),
            deferred: Vec::new(),
        }
    }

    pub(super) fn node(&self, ino: u64) -> Result<&Node<F>, FsError> {
        self.nodes.get(&ino).ok_or(FsError::NotFound)
    }

    pub(super) fn node_mut(&mut self, ino: u64) -> Result<&mut Node<F>, FsError> {
        self.nodes.get_mut(&ino).ok_or(FsError::NotFound)
    }

    pub(super) fn dir(&self, ino: u64) -> Result<&Dir<F>, FsError> {
        match &self.node(ino)?.kind {
            Kind::Dir(dir) => Ok(dir),
            Kind::File(_) | Kind::Link(_) => Err(FsError::NotADirectory),
        }
    }

    pub(super) fn dir_mut(&mut self, ino: u64) -> Result<&mut Dir<F>, FsError> {
        match &mut self.node_mut(ino)?.kind {
            Kind::Dir(dir) => Ok(dir),
            Kind::File(_) | Kind::Link(_) => Err(FsError::NotADirectory),
        }
    }

    pub(super) fn file(&self, ino: u64) -> Result<&File<F>, FsError> {
        match &self.node(ino)?.kind {
            Kind::File(file) => Ok(file),
            Kind::Dir(_) => Err(FsError::IsADirectory),
            Kind::Link(_) => Err(FsError::IsALink),
        }
    }

    pub(super) fn file_mut(&mut self, ino: u64) -> Result<&mut File<F>, FsError> {
        match &mut self.node_mut(ino)?.kind {
            Kind::File(file) => Ok(file),
            Kind::Dir(_) => Err(FsError::IsADirectory),
            Kind::Link(_) => Err(FsError::IsALink),
        }
    }

    pub(super) fn is_dir(&self, ino: u64) -> Result<bool, FsError> {
        Ok(matches!(self.node(ino)?.kind, Kind::Dir(_)))
    }

    pub(super) fn child(&self, parent: u64, name: &str) -> Result<Option<u64>, FsError> {
        Ok(self.dir(parent)?.children.get(&Name(name.to_owned())).copied())
    }

    pub(super) fn allocate(&mut self, parent: u64, name: &str, kind: Kind<F>) -> u64 {
        self.next_ino += 1;
        let ino = self.next_ino;
        self.nodes.insert(ino, Node { parent, name: Name(name.to_owned()), kind });
        if let Ok(dir) = self.dir_mut(parent) {
            dir.children.insert(Name(name.to_owned()), ino);
        }
        ino
    }

    /// Records a change made here to entry `name` of folder `ino` (created, removed, renamed): the folder's
    /// modification time, and the name as touched for listings read meanwhile.
    pub(super) fn changed_here(&mut self, ino: u64, name: &Name) {
        if let Ok(dir) = self.dir_mut(ino) {
            dir.changed = Some(SystemTime::now());
        }
        self.touched_here(ino, name);
    }

    /// Records that a change of entry `name` of folder `ino` is on its way to storage: listings merged until
    /// it ends (with [`Self::touched_here`]) leave the name as the table has it, whatever they read.
    pub(super) fn changing(&mut self, ino: u64, name: &str) {
        if let Ok(dir) = self.dir_mut(ino) {
            dir.touched.insert(Name(name.to_owned()), IN_FLIGHT);
        }
    }

    /// Records that entry `name` of folder `ino` changed here (its store ended, or [`Self::changed_here`]),
    /// so that a listing read meanwhile leaves it as the table has it; the folder's times stay.
    pub(super) fn touched_here(&mut self, ino: u64, name: &Name) {
        if let Ok(dir) = self.dir_mut(ino) {
            dir.generation += 1;
            let generation = dir.generation;
            dir.touched.insert(name.clone(), generation);
        }
    }

    /// Marks folder `ino` changed in the open batch (its metadata is written at commit).
    pub(super) fn in_batch(&mut self, ino: u64) {
        if let Ok(dir) = self.dir_mut(ino) {
            dir.in_batch = true;
        }
    }

    /// Moves node `ino` to `new_name` in `new_parent` in the table.
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
        let node = self.node_mut(ino)?;
        node.parent = new_parent;
        node.name = new_name;
        match &mut node.kind {
            Kind::File(file) => file.ctime = SystemTime::now(),
            Kind::Link(link) => link.ctime = SystemTime::now(),
            Kind::Dir(dir) => dir.attributes_changed = Some(SystemTime::now()),
        }
        Ok(())
    }

    /// Takes the other writer's version that node `ino` hides, if any (see [`File::theirs`]).
    pub(super) fn take_theirs(&mut self, ino: u64) -> Option<ListedEntry<F>> {
        match &mut self.node_mut(ino).ok()?.kind {
            Kind::File(file) => file.theirs.take(),
            Kind::Dir(dir) => dir.theirs.take(),
            Kind::Link(_) => None,
        }
    }

    /// Shows `theirs` (an entry storage holds) as `name` in folder `parent`, if the name is free: the node
    /// that hid it left the name.
    pub(super) fn show_theirs(&mut self, parent: u64, name: &str, theirs: ListedEntry<F>) {
        if self.child(parent, name).ok().flatten().is_some() {
            tracing::warn!("another writer's version lost its name to a change made here");
            return;
        }
        self.allocate(parent, name, Kind::listed(theirs));
    }

    /// Detaches node `ino` (`name` in folder `parent`); the other writer's version it hid, if any, takes the
    /// name.
    pub(super) fn detach_showing_theirs(&mut self, parent: u64, name: &str, ino: u64) {
        let theirs = self.take_theirs(ino);
        self.detach(ino);
        if let Some(theirs) = theirs {
            self.show_theirs(parent, name, theirs);
        }
    }

    /// Detaches `ino` from its parent's index; a file open elsewhere stays until its last release.
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
        self.queued.remove(&ino);
        let drop_node = match self.nodes.get_mut(&ino).map(|node| &mut node.kind) {
            Some(Kind::File(file)) => {
                file.unlinked = true;
                file.dirty = false;
                file.open_handles == 0
            }
            Some(Kind::Dir(_) | Kind::Link(_)) => true,
            None => false,
        };
        if drop_node {
            self.forget_subtree(ino);
        }
    }

    pub(super) fn forget_subtree(&mut self, ino: u64) {
        if let Some(node) = self.nodes.remove(&ino) {
            self.queued.remove(&ino);
            if let Kind::Dir(dir) = node.kind {
                for child in dir.children.values() {
                    self.forget_subtree(*child);
                }
            }
        }
    }

    /// The stored folders from the mount root down to folder `ino` (every one of them in storage).
    pub(super) fn path(&self, ino: u64) -> Result<Vec<F::Folder>, FsError> {
        let mut folders = Vec::new();
        let mut current = ino;
        loop {
            let node = self.node(current)?;
            match &node.kind {
                Kind::Dir(dir) => folders.push(dir.stored.clone().ok_or(FsError::RetryLater)?),
                Kind::File(_) | Kind::Link(_) => return Err(FsError::NotADirectory),
            }
            if current == ROOT_INO {
                break;
            }
            current = node.parent;
        }
        folders.reverse();
        Ok(folders)
    }

    /// What `ino` is stored as, if it is stored.
    pub(super) fn stored(&self, ino: u64) -> Option<Stored<F>> {
        match &self.node(ino).ok()?.kind {
            Kind::Dir(dir) => dir.stored.clone().map(Stored::Folder),
            Kind::File(file) => file.stored.clone().map(Stored::File),
            Kind::Link(link) => Some(Stored::Link(link.stored.clone())),
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

    /// Whether `check` holds for folder `ino` (if it is one) or any folder above it.
    pub(super) fn any_folder_up_from(&self, ino: u64, check: impl Fn(&Dir<F>) -> bool) -> bool {
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

    /// Whether folder `ino` or a folder above it exists only here (made by mkdir, not in storage yet).
    pub(super) fn local_only(&self, ino: u64) -> bool {
        self.any_folder_up_from(ino, |dir| dir.stored.is_none())
    }

    /// Whether `ino` or a folder above it is staged in the open batch.
    pub(super) fn staged_above(&self, ino: u64) -> bool {
        self.any_folder_up_from(ino, |dir| dir.staged)
    }

    /// Whether folder `ino` exists in storage and is settled there (not staged in the open batch).
    pub(super) fn ready_for_storage(&self, ino: u64) -> bool {
        self.nodes.contains_key(&ino) && !self.local_only(ino) && !self.staged_above(ino)
    }

    pub(super) fn attributes(&self, ino: u64) -> Result<Attributes, FsError> {
        Ok(match &self.node(ino)?.kind {
            Kind::Dir(dir) => {
                let listed = dir.listed.as_ref().and_then(|listed| listed.modified);
                let mtime = listed.max(dir.modified).max(dir.changed).unwrap_or(self.mounted_at);
                let ctime = dir.attributes_changed.map_or(mtime, |changed| changed.max(mtime));
                let folders = dir
                    .children
                    .values()
                    .filter(|child| self.nodes.get(child).is_some_and(|node| matches!(node.kind, Kind::Dir(_))))
                    .count();
                let links = 2u32.saturating_add(u32::try_from(folders).unwrap_or(u32::MAX));
                Attributes { ino, kind: NodeType::Directory, size: 0, mtime, ctime, links }
            }
            Kind::File(file) => Attributes {
                ino,
                kind: NodeType::File,
                size: file.len(),
                mtime: file.mtime,
                ctime: file.ctime,
                links: u32::from(!file.unlinked),
            },
            Kind::Link(link) => Attributes {
                ino,
                kind: NodeType::Symlink,
                size: link.size,
                mtime: link.mtime,
                ctime: link.ctime,
                links: 1,
            },
        })
    }
}
