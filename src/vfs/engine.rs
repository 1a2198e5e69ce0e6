//! The seam between the platform adapters (FUSE, the Windows layer, the mount sessions) and the engine: the
//! operations a kernel asks for and the ones a session needs (status, idle time, upload everything, wipe),
//! and their vocabulary. [`super::Vfs`] is the one engine; it implements [`Engine`] for every format.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use zeroize::Zeroizing;

use super::Vfs;
use crate::format::{Format, FsError};

/// The root inode.
pub const ROOT_INO: u64 = 1;

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeType {
    /// A folder.
    Directory,
    /// A regular file.
    File,
    /// A symbolic link (formats that store them).
    Symlink,
}

/// Attributes of a node.
#[derive(Debug, Clone, Copy)]
pub struct Attributes {
    /// Inode number.
    pub ino: u64,
    /// Folder or file.
    pub kind: NodeType,
    /// Plaintext size.
    pub size: u64,
    /// Last modification of the content (files) or of the entries (folders).
    pub mtime: SystemTime,
    /// Last change of the node: content, size, times, name or place (files); entries or attributes
    /// (folders).
    pub ctime: SystemTime,
    /// Hard links: a file has 1, or 0 once unlinked while still open; a folder 2 (its name and its `.`)
    /// and one more for each folder in it (their `..`).
    pub links: u32,
}

/// A directory entry.
#[derive(Debug, Clone)]
pub struct DirEntry {
    /// The clear name (wiped when dropped).
    pub name: Zeroizing<String>,
    /// Its attributes.
    pub attributes: Attributes,
}

/// How a file is opened.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenMode {
    /// Opened for writing.
    pub write: bool,
    /// O_TRUNC.
    pub truncate: bool,
}

/// An opened file: its handle and whether the kernel may keep its cached pages.
#[derive(Debug, Clone, Copy)]
pub struct Opened {
    /// The file handle.
    pub fh: u64,
    /// The content is unchanged since the kernel last cached it (FOPEN_KEEP_CACHE).
    pub keep_cache: bool,
}

/// One dirty file or upload error, for `cloakfs status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DirtyFile {
    /// The file's path inside the mount (shown to the local user only).
    pub path: String,
    /// Bytes waiting to be uploaded.
    pub size: u64,
    /// The last upload error, if any.
    pub error: Option<String>,
}

/// A snapshot for `cloakfs status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VfsStatus {
    /// Plaintext bytes in the cache (contents and read windows, open files' included).
    pub cache_bytes: u64,
    /// Cache budget.
    pub cache_capacity: u64,
    /// Cached files.
    pub cache_entries: usize,
    /// Files whose content is not yet committed to storage.
    pub dirty: Vec<DirtyFile>,
    /// Whether a batch is open (the folder is locked on the server).
    pub batch_open: bool,
    /// The last commit error, if the batch is waiting for a retry.
    pub commit_error: Option<String>,
    /// Batches committed since the mount started.
    pub commits: u64,
    /// Files stored since the mount started.
    pub uploads: u64,
    /// Spill files created since the mount started (contents above the spill threshold).
    pub spill_files: u64,
    /// Downloads ahead in flight (see [`Vfs::prefetch_after`]).
    pub fetching_ahead: usize,
    /// Whether all key material sits in locked memory (false: RLIMIT_MEMLOCK refused; keys may be swapped).
    pub keys_locked: bool,
}

/// A file-system engine a platform adapter can mount. Inode numbers are the engine's; the root is
/// [`ROOT_INO`]. Every method that may wait for storage returns a `Send` future (the adapter runs it on the
/// tokio runtime).
pub trait Engine: Send + Sync + 'static {
    /// The uid and gid that own every node (the mounting user).
    fn owner(&self) -> (u32, u32);
    /// An id of the mounted folder that is safe to log (a server file id; 0 where the format has none).
    fn log_id(&self) -> u64;
    /// Looks up `name` in folder `parent`.
    fn lookup(&self, parent: u64, name: &str) -> impl Future<Output = Result<Attributes, FsError>> + Send;
    /// The attributes of `ino`.
    fn getattr(&self, ino: u64) -> impl Future<Output = Result<Attributes, FsError>> + Send;
    /// Sets the size and/or modification time.
    fn setattr(
        &self,
        ino: u64,
        size: Option<u64>,
        mtime: Option<SystemTime>,
    ) -> impl Future<Output = Result<Attributes, FsError>> + Send;
    /// Creates an empty regular file.
    fn mknod(&self, parent: u64, name: &str) -> impl Future<Output = Result<Attributes, FsError>> + Send;
    /// Creates a folder.
    fn mkdir(&self, parent: u64, name: &str) -> impl Future<Output = Result<Attributes, FsError>> + Send;
    /// Creates the symbolic link `name` to `target` in folder `parent` (EPERM where the format has none).
    fn symlink(
        &self,
        parent: u64,
        name: &str,
        target: &str,
    ) -> impl Future<Output = Result<Attributes, FsError>> + Send;
    /// The target of the symbolic link `ino`.
    fn readlink(&self, ino: u64) -> impl Future<Output = Result<Zeroizing<String>, FsError>> + Send;
    /// Removes a file or a symbolic link.
    fn unlink(&self, parent: u64, name: &str) -> impl Future<Output = Result<(), FsError>> + Send;
    /// Removes an empty folder.
    fn rmdir(&self, parent: u64, name: &str) -> impl Future<Output = Result<(), FsError>> + Send;
    /// Renames `name` in `parent` to `new_name` in `new_parent`; `no_replace` is RENAME_NOREPLACE.
    fn rename(
        &self,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        no_replace: bool,
    ) -> impl Future<Output = Result<(), FsError>> + Send;
    /// Creates a file and opens it (O_EXCL with `exclusive`; without it an existing file is opened).
    fn create(
        &self,
        parent: u64,
        name: &str,
        mode: OpenMode,
        exclusive: bool,
    ) -> impl Future<Output = Result<(Attributes, Opened), FsError>> + Send;
    /// Opens file `ino`.
    fn open(self: Arc<Self>, ino: u64, mode: OpenMode) -> impl Future<Output = Result<Opened, FsError>> + Send;
    /// Reads up to `size` bytes at `offset` and lends them to `use_bytes`.
    fn read_with<T: Send>(
        &self,
        ino: u64,
        offset: u64,
        size: u32,
        use_bytes: impl FnOnce(&[u8]) -> T + Send,
    ) -> impl Future<Output = Result<T, FsError>> + Send;
    /// Writes without waiting, if the file's content is in memory; `None`: use [`Self::write`].
    fn write_loaded(&self, ino: u64, offset: u64, data: &[u8]) -> Option<Result<u32, FsError>>;
    /// Writes `data` at `offset`.
    fn write(&self, ino: u64, offset: u64, data: &[u8]) -> impl Future<Output = Result<u32, FsError>> + Send;
    /// Close (FUSE flush): the file's changes go to storage (or are queued, per the write-behind rule).
    fn close(&self, ino: u64) -> impl Future<Output = Result<(), FsError>> + Send;
    /// Releases handle `fh`.
    fn release(&self, fh: u64);
    /// fsync: returns when storage has the file.
    fn fsync(&self, ino: u64) -> impl Future<Output = Result<(), FsError>> + Send;
    /// fsyncdir, and the volume flush on Windows: returns when storage has every change made so far.
    fn sync_all(&self) -> impl Future<Output = Result<(), FsError>> + Send;
    /// The entries of folder `ino`.
    fn readdir(&self, ino: u64) -> impl Future<Output = Result<Vec<DirEntry>, FsError>> + Send;
    /// The parent of `ino` (the root is its own parent).
    fn parent_of(&self, ino: u64) -> u64;
    /// Where `ino` is now: its folder and its clear name (an unlinked file: [`FsError::NotFound`]).
    fn location(&self, ino: u64) -> Result<(u64, Zeroizing<String>), FsError>;
    /// Where file `ino` came from when not from a member (`Some("file-drop")`), for the
    /// `user.cloakfs.origin` extended attribute.
    fn origin(&self, ino: u64) -> Result<Option<&'static str>, FsError>;
    /// Starts the engine's background work (commits, write-behind, retries) on the current runtime.
    fn spawn_ticker(self: Arc<Self>) -> tokio::task::JoinHandle<()>;
    /// Counters and dirty files for `cloakfs status`.
    fn status(&self) -> VfsStatus;
    /// Time since the last user activity.
    fn idle_for(&self) -> Duration;
    /// Resolves once there was no user activity for `timeout`.
    fn idle_after(&self, timeout: Duration) -> impl Future<Output = ()> + Send;
    /// Uploads every change; whether everything is in storage.
    fn flush_all(&self) -> impl Future<Output = bool> + Send;
    /// Drops every change not yet in storage; how many files were dropped.
    fn discard_dirty(&self) -> impl Future<Output = usize> + Send;
    /// Drops cached clear text of files not in use.
    fn clear_cache(&self);
    /// Drops every clear text and name held in memory (after the final flush).
    fn wipe(&self);
}

/// Each operation of the trait is the engine's inherent method of the same name.
macro_rules! forward {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        $(fn $name(&self, $($arg: $ty),*) -> $ret {
            Vfs::$name(self, $($arg),*)
        })*
    };
}

impl<F: Format> Engine for Vfs<F> {
    forward! {
        lookup(parent: u64, name: &str) -> impl Future<Output = Result<Attributes, FsError>> + Send;
        getattr(ino: u64) -> impl Future<Output = Result<Attributes, FsError>> + Send;
        setattr(ino: u64, size: Option<u64>, mtime: Option<SystemTime>)
            -> impl Future<Output = Result<Attributes, FsError>> + Send;
        mknod(parent: u64, name: &str) -> impl Future<Output = Result<Attributes, FsError>> + Send;
        mkdir(parent: u64, name: &str) -> impl Future<Output = Result<Attributes, FsError>> + Send;
        symlink(parent: u64, name: &str, target: &str) -> impl Future<Output = Result<Attributes, FsError>> + Send;
        readlink(ino: u64) -> impl Future<Output = Result<Zeroizing<String>, FsError>> + Send;
        unlink(parent: u64, name: &str) -> impl Future<Output = Result<(), FsError>> + Send;
        rmdir(parent: u64, name: &str) -> impl Future<Output = Result<(), FsError>> + Send;
        rename(parent: u64, name: &str, new_parent: u64, new_name: &str, no_replace: bool)
            -> impl Future<Output = Result<(), FsError>> + Send;
        create(parent: u64, name: &str, mode: OpenMode, exclusive: bool)
            -> impl Future<Output = Result<(Attributes, Opened), FsError>> + Send;
        write_loaded(ino: u64, offset: u64, data: &[u8]) -> Option<Result<u32, FsError>>;
        write(ino: u64, offset: u64, data: &[u8]) -> impl Future<Output = Result<u32, FsError>> + Send;
        close(ino: u64) -> impl Future<Output = Result<(), FsError>> + Send;
        release(fh: u64) -> ();
        fsync(ino: u64) -> impl Future<Output = Result<(), FsError>> + Send;
        sync_all() -> impl Future<Output = Result<(), FsError>> + Send;
        readdir(ino: u64) -> impl Future<Output = Result<Vec<DirEntry>, FsError>> + Send;
        parent_of(ino: u64) -> u64;
        location(ino: u64) -> Result<(u64, Zeroizing<String>), FsError>;
        origin(ino: u64) -> Result<Option<&'static str>, FsError>;
        status() -> VfsStatus;
        idle_for() -> Duration;
        idle_after(timeout: Duration) -> impl Future<Output = ()> + Send;
        flush_all() -> impl Future<Output = bool> + Send;
        discard_dirty() -> impl Future<Output = usize> + Send;
        clear_cache() -> ();
        wipe() -> ();
    }

    fn owner(&self) -> (u32, u32) {
        self.owner
    }

    fn log_id(&self) -> u64 {
        self.format.log_id()
    }

    async fn open(self: Arc<Self>, ino: u64, mode: OpenMode) -> Result<Opened, FsError> {
        Vfs::open(&self, ino, mode).await
    }

    fn read_with<T: Send>(
        &self,
        ino: u64,
        offset: u64,
        size: u32,
        use_bytes: impl FnOnce(&[u8]) -> T + Send,
    ) -> impl Future<Output = Result<T, FsError>> + Send {
        Vfs::read_with(self, ino, offset, size, use_bytes)
    }

    fn spawn_ticker(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        Vfs::spawn_ticker(&self)
    }
}
