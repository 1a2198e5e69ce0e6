//! The mount engine of a Cryptomator vault (format 8) over any [`Store`]: the same [`Engine`] as the
//! Nextcloud format's [`crate::mount::core::Core`], with what this format makes different.
//!
//! - **No batches, no server lock.** The format has no server-side API: every namespace change (mkdir,
//!   rename, unlink, rmdir) is applied to the store at once, and a changed file is encrypted under a fresh
//!   content key and uploaded when it is closed (or fsynced), replacing only the version it was read at.
//!   Another writer's change in between ends in a conflicted copy beside theirs
//!   ([`CryptomatorVault::write_file_keeping_both`]), never in an overwrite.
//! - **Reads by chunks.** A file opened for reading gets a [`FileReader`]: the header and the first chunks
//!   in one request (the first byte costs one round trip), then only the chunks asked for, with a window
//!   that grows on sequential reads. Every chunk is authenticated before a byte of it is returned.
//! - **Writes in RAM or the encrypted spill.** A file opened for writing is loaded whole into a
//!   [`Content`] (RAM, or above the spill threshold an anonymous file holding only ciphertext).
//!
//! Clear names live in the inode table only and are wiped when dropped; logs name ciphertext paths.

mod files;
mod kept;
mod nodes;
mod tree;
mod write_behind;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use super::content::Spill;
use super::core::keyed_locks::KeyedLocks;
use super::core::{lock, Attributes, CoreOptions, CoreStatus, DirtyFile, Name, ROOT_INO};
use super::error::FsError;
use crate::cryptomator::{CryptomatorError, CryptomatorVault};
use crate::storage::Store;
use nodes::{wipe_entry, Dir, File, Kind, State};

/// A mounted Cryptomator vault. See the module documentation.
pub struct CryptomatorFs<S: Store + Clone + 'static> {
    vault: CryptomatorVault<S>,
    options: CoreOptions,
    state: Mutex<State>,
    spill: Arc<Spill>,
    /// One load or upload per file at a time.
    file_locks: KeyedLocks<u64>,
    /// One listing per folder at a time (a second asker uses the first one's result).
    listings: KeyedLocks<u64>,
    /// Uploads hold it shared (they name the file as it is when they start); renames and removals hold it
    /// exclusively.
    names: tokio::sync::RwLock<()>,
    owner: (u32, u32),
    last_activity: Mutex<tokio::time::Instant>,
    /// Readers of closed files, within the cache budget.
    kept: Mutex<kept::KeptReaders>,
    /// Wakes the background uploader: a file was queued.
    wake: tokio::sync::Notify,
    /// Slots of background uploads ([`write_behind::MAX_BACKGROUND_UPLOADS`]).
    upload_slots: Arc<tokio::sync::Semaphore>,
}

impl<S: Store + Clone + 'static> CryptomatorFs<S> {
    /// A file system over the opened `vault`, mounted at its root.
    pub fn new(vault: CryptomatorVault<S>, options: CoreOptions) -> Self {
        let kept = kept::KeptReaders::new(options.cache_size);
        let state = Mutex::new(State::new(vault.root()));
        Self {
            vault,
            spill: Arc::new(Spill::new(options.spill_directory.clone(), options.spill_above)),
            options,
            state,
            file_locks: KeyedLocks::new(),
            listings: KeyedLocks::new(),
            names: tokio::sync::RwLock::new(()),
            owner: crate::platform::owner_ids(),
            last_activity: Mutex::new(tokio::time::Instant::now()),
            kept: Mutex::new(kept),
            wake: tokio::sync::Notify::new(),
            upload_slots: Arc::new(tokio::sync::Semaphore::new(write_behind::MAX_BACKGROUND_UPLOADS)),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Records user activity (for the idle timeout): the same operations count as in the Nextcloud engine.
    fn note_activity(&self) {
        *lock(&self.last_activity) = tokio::time::Instant::now();
    }

    /// Logs a vault error (ciphertext paths and kinds only) and maps it to an engine error.
    fn fail(&self, error: CryptomatorError) -> FsError {
        let failure = FsError::from_cryptomator(&error);
        match &error {
            CryptomatorError::Tampered { .. } | CryptomatorError::Malformed { .. } => {
                tracing::error!(%error, "verification failed; refusing the data")
            }
            CryptomatorError::Remote(_) | CryptomatorError::Changed { .. } | CryptomatorError::Unsupported { .. } => {
                tracing::warn!(%error, ?failure, "store operation failed")
            }
            // These carry clear names: only their kind is logged.
            _ => tracing::debug!(?failure, "refused"),
        }
        failure
    }

    /// Counters and dirty files for `cloakfs status`.
    pub fn status(&self) -> CoreStatus {
        let state = self.state();
        let mut readers = 0usize;
        let mut held_bytes = 0u64;
        let mut dirty = Vec::new();
        for (ino, node) in &state.nodes {
            if let Kind::File(file) = &node.kind {
                readers += usize::from(file.reader.is_some());
                held_bytes += file.content.as_ref().map(|content| content.ram_bytes()).unwrap_or(0);
                if file.dirty && !file.unlinked {
                    dirty.push(DirtyFile {
                        path: state.clear_path(*ino),
                        size: file.content.as_ref().map(|content| content.len()).unwrap_or(file.size),
                        error: file.error.clone(),
                    });
                }
            }
        }
        let (kept_bytes, kept_readers) = lock(&self.kept).usage();
        CoreStatus {
            cache_bytes: held_bytes + kept_bytes,
            cache_capacity: self.options.cache_size,
            cache_entries: readers + kept_readers,
            dirty,
            batch_open: false,
            commit_error: None,
            commits: 0,
            uploads: state.uploads,
            spill_files: self.spill.files_created(),
            fetching_ahead: 0,
            keys_locked: {
                let stats = crate::crypto::locked::stats();
                stats.locked_bytes == stats.mapped_bytes
            },
        }
    }

    /// Drops the readers kept of closed files, the read windows of open ones and the clear text of files
    /// that are neither open nor changed (all wiped as they go); open files fetch again on their next read.
    pub fn clear_cache(&self) {
        lock(&self.kept).clear();
        let mut state = self.state();
        for node in state.nodes.values_mut() {
            if let Kind::File(file) = &mut node.kind {
                file.reader = None;
                file.kernel_cached = None;
                if !file.dirty && file.open_handles == 0 {
                    file.content = None;
                }
            }
        }
    }

    /// Drops every clear text and name held in memory (after the final flush).
    pub fn wipe(&self) {
        self.clear_cache();
        let mut state = self.state();
        state.nodes.clear();
        state.handles.clear();
    }

    /// Time since the last activity.
    pub fn idle_for(&self) -> Duration {
        lock(&self.last_activity).elapsed()
    }
}

/// The name check of the kernel's names: what the format can hold, and at most 255 bytes (the limit every
/// local file system has; longer encrypted names are shortened by the format itself).
fn validate_name(name: &str) -> Result<(), FsError> {
    if name.len() > 255 {
        return Err(FsError::NameTooLong);
    }
    if !crate::cryptomator::names::is_valid_name(name) {
        return Err(FsError::InvalidArgument);
    }
    Ok(())
}

impl<S: Store + Clone + 'static> super::engine::Engine for CryptomatorFs<S> {
    fn owner(&self) -> (u32, u32) {
        self.owner
    }

    fn log_id(&self) -> u64 {
        0
    }

    async fn lookup(&self, parent: u64, name: &str) -> Result<Attributes, FsError> {
        self.lookup(parent, name).await
    }

    async fn getattr(&self, ino: u64) -> Result<Attributes, FsError> {
        self.getattr(ino).await
    }

    async fn setattr(&self, ino: u64, size: Option<u64>, mtime: Option<SystemTime>) -> Result<Attributes, FsError> {
        self.setattr(ino, size, mtime).await
    }

    async fn mknod(&self, parent: u64, name: &str) -> Result<Attributes, FsError> {
        self.mknod(parent, name).await
    }

    async fn mkdir(&self, parent: u64, name: &str) -> Result<Attributes, FsError> {
        self.mkdir(parent, name).await
    }

    async fn unlink(&self, parent: u64, name: &str) -> Result<(), FsError> {
        self.unlink(parent, name).await
    }

    async fn rmdir(&self, parent: u64, name: &str) -> Result<(), FsError> {
        self.rmdir(parent, name).await
    }

    async fn rename(
        &self,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        no_replace: bool,
    ) -> Result<(), FsError> {
        self.rename(parent, name, new_parent, new_name, no_replace).await
    }

    async fn create(
        &self,
        parent: u64,
        name: &str,
        mode: super::core::OpenMode,
        exclusive: bool,
    ) -> Result<(Attributes, super::core::Opened), FsError> {
        self.create(parent, name, mode, exclusive).await
    }

    async fn open(self: Arc<Self>, ino: u64, mode: super::core::OpenMode) -> Result<super::core::Opened, FsError> {
        CryptomatorFs::open(&self, ino, mode).await
    }

    async fn read_with<T: Send>(
        &self,
        ino: u64,
        offset: u64,
        size: u32,
        use_bytes: impl FnOnce(&[u8]) -> T + Send,
    ) -> Result<T, FsError> {
        self.read_with(ino, offset, size, use_bytes).await
    }

    fn write_loaded(&self, ino: u64, offset: u64, data: &[u8]) -> Option<Result<u32, FsError>> {
        self.write_loaded(ino, offset, data)
    }

    async fn write(&self, ino: u64, offset: u64, data: &[u8]) -> Result<u32, FsError> {
        self.write(ino, offset, data).await
    }

    async fn close(&self, ino: u64) -> Result<(), FsError> {
        CryptomatorFs::close(self, ino).await
    }

    fn release(&self, fh: u64) {
        self.release(fh)
    }

    async fn fsync(&self, ino: u64) -> Result<(), FsError> {
        self.note_activity();
        self.upload(ino).await
    }

    async fn sync_all(&self) -> Result<(), FsError> {
        if self.flush_all().await {
            Ok(())
        } else {
            Err(FsError::Io)
        }
    }

    async fn readdir(&self, ino: u64) -> Result<Vec<super::core::DirEntry>, FsError> {
        self.readdir(ino).await
    }

    fn parent_of(&self, ino: u64) -> u64 {
        self.state().nodes.get(&ino).map(|node| node.parent).unwrap_or(ROOT_INO)
    }

    fn spawn_ticker(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.upload_in_background())
    }

    fn status(&self) -> CoreStatus {
        self.status()
    }

    fn idle_for(&self) -> Duration {
        self.idle_for()
    }

    async fn idle_after(&self, timeout: Duration) {
        loop {
            let idle = self.idle_for();
            if idle >= timeout {
                return;
            }
            tokio::time::sleep(timeout - idle).await;
        }
    }

    async fn flush_all(&self) -> bool {
        self.flush_all().await
    }

    async fn discard_dirty(&self) -> usize {
        self.discard_dirty()
    }

    fn clear_cache(&self) {
        self.clear_cache()
    }

    fn wipe(&self) {
        self.wipe()
    }
}
