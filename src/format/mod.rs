//! The format seam: what the one file-system engine ([`crate::vfs`]) needs from a vault format, and what a
//! listing, a read, a store, a namespace change and a sync cost in that format. Two formats implement it:
//! [`nextcloud::NextcloudFormat`] (an end-to-end encrypted Nextcloud folder: whole-file blobs, folder
//! metadata written in batches under the server's lock) and [`cryptomator::CryptomatorFormat`] (a
//! Cryptomator vault, format 8: files read by chunks, every change applied to the store at once).
//!
//! The engine owns the inode table, names, handles, contents, caches and the order of operations; a format
//! owns its stored entries ([`Format::File`], [`Format::Folder`]), how a folder is listed and verified,
//! how a file is fetched and stored, and how a change reaches storage. A folder's metadata is never kept
//! twice: a batching format writes it at commit from the engine's table ([`FolderWrite`]).
//!
//! Every byte a format returns is authenticated first; errors are [`FsError`]s, logged by the format with
//! storage ids only (server names, ciphertext paths), never clear names.

pub mod cryptomator;
pub mod error;
pub mod nextcloud;

use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use zeroize::Zeroizing;

use crate::content::{Content, Spill};
pub use error::FsError;

/// What a format does, and how its changes reach storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Changes are carried to storage in batches under a lock on the mount root and committed together
    /// (Nextcloud); without, each change is applied at once and nothing waits for a commit.
    pub batches: bool,
    /// Files can be read by byte ranges (Cryptomator's chunks); without, a file is fetched whole.
    pub ranged_reads: bool,
    /// The format stores symbolic links (Cryptomator's `symlink.c9r`); without, making one is refused
    /// (EPERM at the mount: Nextcloud's metadata has no links).
    pub links: bool,
}

/// A stored entry: a file, a folder or a symbolic link.
pub enum Stored<F: Format> {
    /// A file.
    File(F::File),
    /// A folder.
    Folder(F::Folder),
    /// A symbolic link, its target stored like a small file's contents (formats with
    /// [`Capabilities::links`]).
    Link(F::File),
}

impl<F: Format> Clone for Stored<F> {
    fn clone(&self) -> Self {
        match self {
            Self::File(file) => Self::File(file.clone()),
            Self::Folder(folder) => Self::Folder(folder.clone()),
            Self::Link(link) => Self::Link(link.clone()),
        }
    }
}

/// One entry of a folder as listed, authenticated.
pub struct ListedEntry<F: Format> {
    /// The clear name (wiped when dropped).
    pub name: Zeroizing<String>,
    /// What is stored under it.
    pub stored: Stored<F>,
    /// Clear size (files; a link's target length).
    pub size: u64,
    /// Last modification, as storage says.
    pub modified: Option<SystemTime>,
}

impl<F: Format> Clone for ListedEntry<F> {
    fn clone(&self) -> Self {
        Self { name: self.name.clone(), stored: self.stored.clone(), size: self.size, modified: self.modified }
    }
}

/// A folder's listing: its entries, and what the format keeps of it for checks and commits.
pub struct Listing<F: Format> {
    /// The entries the folder shows.
    pub entries: Vec<ListedEntry<F>>,
    /// The folder's own last modification, if the listing tells it (Nextcloud: its newest file).
    pub modified: Option<SystemTime>,
    /// The format's record of the listing (Nextcloud: the verified metadata).
    pub state: F::Listed,
}

/// What a file was stored as.
pub struct StoredFile<F: Format> {
    /// The new stored file.
    pub file: F::File,
    /// The name it was stored under when that is not the name asked for: another writer replaced or created
    /// the file meanwhile, and this content was kept beside it as a conflicted copy.
    pub renamed_to: Option<String>,
    /// The version it replaced, if that could not be removed yet (remove it in the next batch).
    pub leftover: Option<Stored<F>>,
}

/// What a removal did.
pub enum Removed {
    /// Removed (or found gone already).
    Done,
    /// Not possible in this batch (made in it): to be removed in the next one.
    Later,
}

/// What a rename did.
pub struct Renamed<F: Format> {
    /// The entry at its new place.
    pub stored: Stored<F>,
    /// It moved in storage in a way only the next commit settles (a MOVE under a lock): commit soon.
    pub commit_soon: bool,
    /// The entry it replaced, if that could not be removed yet.
    pub leftover: Option<Stored<F>>,
}

/// A batch opened on the mount root.
pub struct OpenedBatch<F: Format> {
    /// The format's batch (lock token, counter).
    pub batch: F::Batch,
    /// The root's listing as read under the lock, when it replaces the engine's (same content).
    pub root: Option<F::Listed>,
    /// The root changed since the engine listed it: list it again under the lock.
    pub root_stale: bool,
}

/// A folder whose metadata a commit writes: what the engine's table shows in it.
pub struct FolderWrite<'a, F: Format> {
    /// The folder's listing as last read or written.
    pub listed: &'a F::Listed,
    /// Whether it is the mount root (its metadata carries the batch's counter).
    pub is_root: bool,
    /// Every entry it holds in storage, by clear name.
    pub children: Vec<(Zeroizing<String>, Stored<F>)>,
}

/// Why a commit failed.
#[derive(Debug, Clone, Copy)]
pub struct CommitError {
    /// The engine's error.
    pub error: FsError,
    /// The server no longer holds the batch's lock: it rolled the batch back.
    pub lock_lost: bool,
}

/// A vault format under the engine. Paths of folders are given from the mount root (`path[0]`, the
/// format's [`Format::root`]) down to the folder meant.
pub trait Format: Send + Sync + Sized + 'static {
    /// A stored file: where its bytes are and what authenticates them (each stored version is its own).
    type File: Clone + Send + Sync + 'static;
    /// A stored folder: where its entries are.
    type Folder: Clone + Send + Sync + 'static;
    /// What the format keeps of a folder's listing (Nextcloud: the verified metadata; Cryptomator: nothing).
    type Listed: Clone + Send + Sync + 'static;
    /// A file opened for ranged reads.
    type Reader: Send + 'static;
    /// An open batch (Nextcloud: the lock token and counter).
    type Batch: Send + Sync + 'static;

    /// What this format does.
    fn capabilities(&self) -> Capabilities;
    /// The mount root.
    fn root(&self) -> Self::Folder;
    /// An id of the mounted folder safe to log (a server file id; 0 where the format has none).
    fn log_id(&self) -> u64;
    /// Whether the format can hold `name` (the engine checks the 255-byte limit itself).
    fn is_valid_name(&self, name: &str) -> bool;
    /// An id of a file's stored content, unique per version (the plaintext cache's key).
    fn content_id(file: &Self::File) -> String;
    /// Where a stored file came from when it was not written by a member (`Some("file-drop")`: taken in
    /// from a file drop), shown as the `user.cloakfs.origin` extended attribute; `None` by default.
    fn origin(_file: &Self::File) -> Option<&'static str> {
        None
    }
    /// Whether two stored folders are the same folder.
    fn same_folder(left: &Self::Folder, right: &Self::Folder) -> bool;

    /// Lists and authenticates the folder at `path`.
    fn list(&self, path: &[Self::Folder]) -> impl Future<Output = Result<Listing<Self>, FsError>> + Send;
    /// Checks more cheaply than [`Format::list`] whether the folder at `path` changed since `listed`:
    /// `Some(listed again)` if it did not; `None` to list it again (the default).
    fn check(
        &self,
        _path: &[Self::Folder],
        _listed: &Self::Listed,
    ) -> impl Future<Output = Result<Option<Self::Listed>, FsError>> + Send {
        async { Ok(None) }
    }
    /// Fetches, authenticates and decrypts the whole file `file` of the folder at `path` (`size` bytes as
    /// listed), into RAM or above the spill threshold into `spill`.
    fn fetch(
        &self,
        path: &[Self::Folder],
        file: &Self::File,
        size: u64,
        spill: &Arc<Spill>,
    ) -> impl Future<Output = Result<Content, FsError>> + Send;
    /// Opens `file` for ranged reads (formats with [`Capabilities::ranged_reads`]).
    fn open_reader(&self, file: &Self::File, size: u64) -> impl Future<Output = Result<Self::Reader, FsError>> + Send;
    /// Up to `len` authenticated clear bytes at `offset` (fewer at the end of the file).
    fn read_at(
        &self,
        reader: &mut Self::Reader,
        offset: u64,
        len: usize,
    ) -> impl Future<Output = Result<Zeroizing<Vec<u8>>, FsError>> + Send;
    /// Bytes a reader holds (its clear text, and ciphertext it is fetching ahead): what it costs the cache.
    fn reader_bytes(reader: &Self::Reader) -> u64;

    /// Opens a batch on the mount root, whose listing the engine has as `root` (batching formats only).
    fn open_batch(
        &self,
        _root: Option<&Self::Listed>,
    ) -> impl Future<Output = Result<OpenedBatch<Self>, FsError>> + Send {
        async { Err(FsError::NotSupported) }
    }
    /// Writes the metadata of `folders` and ends the batch; the folders' listings as written, in order.
    fn commit_batch(
        &self,
        _batch: &Self::Batch,
        _folders: Vec<FolderWrite<'_, Self>>,
    ) -> impl Future<Output = Result<Vec<Self::Listed>, CommitError>> + Send {
        async { Err(CommitError { error: FsError::NotSupported, lock_lost: false }) }
    }
    /// Ends a batch without committing it (the server rolls it back).
    fn abort_batch(&self, _batch: &Self::Batch) -> impl Future<Output = ()> + Send {
        async {}
    }
    /// Whether `stored` was made in `batch` (uploaded, created or moved under its lock).
    fn made_in(&self, _batch: &Self::Batch, _stored: &Stored<Self>) -> bool {
        false
    }

    /// Stores `content` as file `name` in the folder at `path`, replacing exactly `base` (the version it was
    /// read at) or creating it (`None`).
    fn store_file(
        &self,
        batch: Option<&Self::Batch>,
        path: &[Self::Folder],
        name: &str,
        content: Arc<Content>,
        base: Option<&Self::File>,
    ) -> impl Future<Output = Result<StoredFile<Self>, FsError>> + Send;
    /// Creates folder `name` in the folder at `path`; returns it with its listing (it is empty).
    fn make_folder(
        &self,
        batch: Option<&Self::Batch>,
        path: &[Self::Folder],
        name: &str,
    ) -> impl Future<Output = Result<(Self::Folder, Self::Listed), FsError>> + Send;
    /// Creates the symbolic link `name` to `target` in the folder at `path` (formats with
    /// [`Capabilities::links`]; others refuse with [`FsError::NotPermitted`]).
    fn make_link(
        &self,
        _batch: Option<&Self::Batch>,
        _path: &[Self::Folder],
        _name: &str,
        _target: &str,
    ) -> impl Future<Output = Result<Self::File, FsError>> + Send {
        async { Err(FsError::NotPermitted) }
    }
    /// The authenticated target of the link `link`.
    fn read_link(&self, _link: &Self::File) -> impl Future<Output = Result<Zeroizing<String>, FsError>> + Send {
        async { Err(FsError::NotPermitted) }
    }
    /// Removes `stored` (an empty folder, a file or a link) from the folder at `path`.
    fn remove(
        &self,
        batch: Option<&Self::Batch>,
        path: &[Self::Folder],
        stored: &Stored<Self>,
    ) -> impl Future<Output = Result<Removed, FsError>> + Send;
    /// Moves `stored` from the folder at `from` to `name` in the folder at `to`, replacing `replacing` (the
    /// entry the engine knows there). With `overwrite`, whatever storage holds under that name is replaced
    /// (POSIX rename); without, an entry there is [`FsError::Exists`].
    #[allow(clippy::too_many_arguments)]
    fn rename(
        &self,
        batch: Option<&Self::Batch>,
        from: &[Self::Folder],
        stored: &Stored<Self>,
        to: &[Self::Folder],
        name: &str,
        replacing: Option<&Stored<Self>>,
        overwrite: bool,
    ) -> impl Future<Output = Result<Renamed<Self>, FsError>> + Send;
}
