//! The seam between a platform's adapter (FUSE, the travel session) and a vault format's file-system
//! engine: the operations the kernel asks for and the ones the session needs (status, idle time, upload
//! everything, wipe). The Nextcloud format's engine is [`Core`] (batches under a server lock, whole-file
//! blobs); the Cryptomator format's is [`crate::mount::cryptomator::CryptomatorFs`] (changes applied at
//! once, content read by chunks). Both keep the same promises: content authenticated before use, clear
//! text in RAM or the encrypted spill only, and everything wiped at the end.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::core::{Attributes, Core, CoreStatus, DirEntry, OpenMode, Opened};
use super::error::FsError;
use crate::storage::E2eeApi;

/// A file-system engine a platform adapter can mount. Inode numbers are the engine's; the root is
/// [`super::core::ROOT_INO`]. Every method that may wait for the server returns a `Send` future (the
/// adapter runs it on the tokio runtime).
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
    /// Removes a file.
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
    /// Close (FUSE flush): the file's changes go to the server (or are queued, per the engine's rule).
    fn close(&self, ino: u64) -> impl Future<Output = Result<(), FsError>> + Send;
    /// Releases handle `fh`.
    fn release(&self, fh: u64);
    /// fsync: returns when the server has the file.
    fn fsync(&self, ino: u64) -> impl Future<Output = Result<(), FsError>> + Send;
    /// fsyncdir: returns when the server has every change made so far.
    fn sync_all(&self) -> impl Future<Output = Result<(), FsError>> + Send;
    /// The entries of folder `ino`.
    fn readdir(&self, ino: u64) -> impl Future<Output = Result<Vec<DirEntry>, FsError>> + Send;
    /// The parent of `ino` (the root is its own parent).
    fn parent_of(&self, ino: u64) -> u64;
    /// Starts the engine's background work (commits, retries) on the current runtime.
    fn spawn_ticker(self: Arc<Self>) -> tokio::task::JoinHandle<()>;
    /// Counters and dirty files for `cloakfs status`.
    fn status(&self) -> CoreStatus;
    /// Time since the last user activity.
    fn idle_for(&self) -> Duration;
    /// Resolves once there was no user activity for `timeout`.
    fn idle_after(&self, timeout: Duration) -> impl Future<Output = ()> + Send;
    /// Uploads every change; whether everything is on the server.
    fn flush_all(&self) -> impl Future<Output = bool> + Send;
    /// Drops every change not yet on the server; how many files were dropped.
    fn discard_dirty(&self) -> impl Future<Output = usize> + Send;
    /// Drops cached clear text of files not in use.
    fn clear_cache(&self);
    /// Drops every clear text and name held in memory (after the final flush).
    fn wipe(&self);
}

impl<R: E2eeApi + 'static> Engine for Core<R> {
    fn owner(&self) -> (u32, u32) {
        Core::owner(self)
    }

    fn log_id(&self) -> u64 {
        Core::root_file_id(self)
    }

    fn lookup(&self, parent: u64, name: &str) -> impl Future<Output = Result<Attributes, FsError>> + Send {
        Core::lookup(self, parent, name)
    }

    fn getattr(&self, ino: u64) -> impl Future<Output = Result<Attributes, FsError>> + Send {
        Core::getattr(self, ino)
    }

    fn setattr(
        &self,
        ino: u64,
        size: Option<u64>,
        mtime: Option<SystemTime>,
    ) -> impl Future<Output = Result<Attributes, FsError>> + Send {
        Core::setattr(self, ino, size, mtime)
    }

    fn mknod(&self, parent: u64, name: &str) -> impl Future<Output = Result<Attributes, FsError>> + Send {
        Core::mknod(self, parent, name)
    }

    fn mkdir(&self, parent: u64, name: &str) -> impl Future<Output = Result<Attributes, FsError>> + Send {
        Core::mkdir(self, parent, name)
    }

    fn unlink(&self, parent: u64, name: &str) -> impl Future<Output = Result<(), FsError>> + Send {
        Core::unlink(self, parent, name)
    }

    fn rmdir(&self, parent: u64, name: &str) -> impl Future<Output = Result<(), FsError>> + Send {
        Core::rmdir(self, parent, name)
    }

    fn rename(
        &self,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        no_replace: bool,
    ) -> impl Future<Output = Result<(), FsError>> + Send {
        Core::rename(self, parent, name, new_parent, new_name, no_replace)
    }

    fn create(
        &self,
        parent: u64,
        name: &str,
        mode: OpenMode,
        exclusive: bool,
    ) -> impl Future<Output = Result<(Attributes, Opened), FsError>> + Send {
        Core::create(self, parent, name, mode, exclusive)
    }

    async fn open(self: Arc<Self>, ino: u64, mode: OpenMode) -> Result<Opened, FsError> {
        Core::open(&self, ino, mode).await
    }

    fn read_with<T: Send>(
        &self,
        ino: u64,
        offset: u64,
        size: u32,
        use_bytes: impl FnOnce(&[u8]) -> T + Send,
    ) -> impl Future<Output = Result<T, FsError>> + Send {
        Core::read_with(self, ino, offset, size, use_bytes)
    }

    fn write_loaded(&self, ino: u64, offset: u64, data: &[u8]) -> Option<Result<u32, FsError>> {
        Core::write_loaded(self, ino, offset, data)
    }

    fn write(&self, ino: u64, offset: u64, data: &[u8]) -> impl Future<Output = Result<u32, FsError>> + Send {
        Core::write(self, ino, offset, data)
    }

    fn close(&self, ino: u64) -> impl Future<Output = Result<(), FsError>> + Send {
        Core::close(self, ino)
    }

    fn release(&self, fh: u64) {
        Core::release(self, fh)
    }

    fn fsync(&self, ino: u64) -> impl Future<Output = Result<(), FsError>> + Send {
        Core::fsync(self, ino)
    }

    async fn sync_all(&self) -> Result<(), FsError> {
        self.wait_for_background().await;
        self.commit_now().await
    }

    fn readdir(&self, ino: u64) -> impl Future<Output = Result<Vec<DirEntry>, FsError>> + Send {
        Core::readdir(self, ino)
    }

    fn parent_of(&self, ino: u64) -> u64 {
        Core::parent_of(self, ino)
    }

    fn spawn_ticker(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        Core::spawn_ticker(&self)
    }

    fn status(&self) -> CoreStatus {
        Core::status(self)
    }

    fn idle_for(&self) -> Duration {
        Core::idle_for(self)
    }

    fn idle_after(&self, timeout: Duration) -> impl Future<Output = ()> + Send {
        Core::idle_after(self, timeout)
    }

    fn flush_all(&self) -> impl Future<Output = bool> + Send {
        Core::flush_all(self)
    }

    fn discard_dirty(&self) -> impl Future<Output = usize> + Send {
        Core::discard_dirty(self)
    }

    fn clear_cache(&self) {
        Core::clear_cache(self)
    }

    fn wipe(&self) {
        Core::wipe(self)
    }
}
