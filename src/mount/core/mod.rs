//! The file-system core of the mount, independent of FUSE: inodes over decrypted folder metadata, lazy
//! download and decryption on open, the plaintext cache, dirty buffers, and write-back in commit batches.
//!
//! **Commit batches.** Every change runs inside one open transaction: the mount root folder is locked once
//! (counter + 1), blobs are uploaded, moved and deleted under that lock as operations come in, and the
//! metadata of every folder touched is written once when the batch commits: `--commit-delay` after the
//! last change, at the latest `--max-batch-age` after the first, on fsync, and at unmount. A `cp -r` or
//! `tar x` therefore costs one lock and one metadata write per folder, not one per file.
//!
//! **Close semantics.** `close()` (FUSE flush) encrypts the file with a fresh key and nonce and uploads the
//! blob under the batch's lock; it returns the upload's error (EIO, ENOSPC, EACCES) to the program. The
//! metadata naming the new blob is committed with the batch, within `--commit-delay`. `fsync()` commits the
//! batch and returns only when the server has it. Until then the plaintext stays in RAM, and a failed
//! upload or commit is retried in the background and shown by `cloakfs status`.
//!
//! Locks: `state` (a std mutex) is never held across an `.await`. `gate` lets operations run in parallel
//! inside a batch (read) while a commit waits for them to finish (write).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tracing::Instrument as _;
use zeroize::{Zeroize, Zeroizing};

mod batch;
mod commit;
mod conflict;
mod folders;
mod handles;
pub(crate) mod keyed_locks;
mod namespace;
mod nodes;
mod prefetch;
mod read;
mod upload;
mod write;

pub use conflict::{conflict_name, default_device_name};
use keyed_locks::{KeyedGuard, KeyedLocks};
pub(crate) use nodes::Name;
use nodes::{validate_name, Batch, Dir, File, Kind, Loaded, Node, State};
pub(crate) use write::writable;

use super::cache::{Plaintext, PlaintextCache};
use super::content::{Content, ContentSink, Spill};
use super::error::FsError;
use super::upload::EncryptingUpload;
use crate::crypto::server_name::random_server_name;
use crate::metadata::codec::is_valid_clear_name;
use crate::metadata::{FileEntry, FolderMetadata};
use crate::storage::{E2eeApi, LockToken, RemoteEntry, RemoteErrorKind};
use crate::vault::{mime_type, plaintext_len, FolderView, TreeRoot, Vault, VaultError};

/// Commits an operation waits for at most until the folders it needs exist on the server (one level of new
/// folders is created per commit).
const MAX_COMMITS_TO_MATERIALIZE: usize = 64;

/// After the server was found unreachable, cached listings are shown without asking it for this long.
const OFFLINE_PAUSE: Duration = Duration::from_secs(10);

/// The server could not be reached (see [`crate::storage::RemoteError::is_unreachable`]).
struct Unreachable;

/// The root inode.
pub const ROOT_INO: u64 = 1;

/// Tunables of a mount.
#[derive(Debug, Clone)]
pub struct CoreOptions {
    /// How long a folder listing is trusted before its ETag is checked again.
    pub dir_cache_time: Duration,
    /// Plaintext cache budget in bytes.
    pub cache_size: u64,
    /// Quiet time after the last change before a batch commits.
    pub commit_delay: Duration,
    /// Longest a batch stays open.
    pub max_batch_age: Duration,
    /// Pause between retries of failed uploads and commits.
    pub retry_interval: Duration,
    /// File contents larger than this many bytes are kept encrypted in an anonymous temporary file.
    pub spill_above: u64,
    /// Where spill files are created (they never have a name on Linux: `O_TMPFILE`).
    pub spill_directory: std::path::PathBuf,
    /// This device's name in conflicted copies ("NAME (conflicted copy DEVICE DATE)").
    pub device: String,
    /// Files up to this many bytes are uploaded by the next commit after close returned (write-behind) while
    /// the server answers; larger files, and every file while uploads fail, are uploaded before close
    /// returns, so close reports the error. 0: close always waits.
    pub write_behind: u64,
}

/// Uploads a commit runs at once: requests in flight together hide the round trip (at 100 ms per request,
/// 32 at a time upload 320 small files a second).
pub const MAX_BACKGROUND_UPLOADS: usize = 32;

/// Files up to this size are fetched ahead (see [`Core::prefetch_after`]).
pub const PREFETCH_MAX_LEN: u64 = 1 << 20;
/// How many of the following small files of a folder an open of a small file fetches ahead.
pub const PREFETCH_AHEAD: usize = 8;
/// Downloads ahead that run at once.
const PREFETCH_PARALLEL: usize = 4;

impl Default for CoreOptions {
    fn default() -> Self {
        Self {
            dir_cache_time: Duration::from_secs(3),
            cache_size: 512 << 20,
            commit_delay: Duration::from_millis(500),
            max_batch_age: Duration::from_secs(10),
            retry_interval: Duration::from_secs(5),
            spill_above: 512 << 20,
            spill_directory: std::env::temp_dir(),
            device: default_device_name(),
            write_behind: 128 << 10,
        }
    }
}

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeType {
    /// A folder.
    Directory,
    /// A regular file.
    File,
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
    /// Last change of the node: content, size, times, name or place (files); entries (folders).
    pub ctime: SystemTime,
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
pub struct CoreStatus {
    /// Plaintext bytes in the cache.
    pub cache_bytes: u64,
    /// Cache budget.
    pub cache_capacity: u64,
    /// Cached files.
    pub cache_entries: usize,
    /// Files whose content is not yet committed on the server.
    pub dirty: Vec<DirtyFile>,
    /// Whether a batch is open (the folder is locked on the server).
    pub batch_open: bool,
    /// The last commit error, if the batch is waiting for a retry.
    pub commit_error: Option<String>,
    /// Batches committed since the mount started.
    pub commits: u64,
    /// Blobs uploaded since the mount started.
    pub uploads: u64,
    /// Spill files created since the mount started (contents above the spill threshold).
    pub spill_files: u64,
    /// Downloads ahead in flight (see [`Core::prefetch_after`]).
    pub fetching_ahead: usize,
    /// Whether all key material sits in locked memory (false: RLIMIT_MEMLOCK refused; keys may be swapped).
    pub keys_locked: bool,
}

/// The file system. Operations are `async` and never block on the network while holding a lock.
pub struct Core<R: E2eeApi> {
    vault: Vault<R>,
    tree: TreeRoot,
    root_path: Vec<String>,
    root_file_id: u64,
    options: CoreOptions,
    state: Mutex<State>,
    cache: Mutex<PlaintextCache>,
    /// Spill files for large contents, and their per-mount key.
    spill: Arc<Spill>,
    gate: tokio::sync::RwLock<()>,
    begin: tokio::sync::Mutex<()>,
    /// Held by the running commit ([`Self::commit_now`]): one commit at a time, and a caller that wants
    /// everything on the server waits for the one in flight.
    committing: tokio::sync::Mutex<()>,
    downloads: KeyedLocks<String>,
    uploads: KeyedLocks<u64>,
    owner: (u32, u32),
    /// The last user-initiated file-system operation (for the idle timeout).
    /// (tokio's clock, so tests can run the idle timeout in paused time.)
    last_activity: Mutex<tokio::time::Instant>,
    /// Until when cached listings are shown without revalidation (the server was unreachable).
    offline_until: Mutex<Option<Instant>>,
    /// Slots of a commit's uploads ([`MAX_BACKGROUND_UPLOADS`]); all free when none runs.
    background: Arc<tokio::sync::Semaphore>,
    /// Server names of blobs being fetched ahead (each is fetched once).
    prefetching: Mutex<HashSet<String>>,
    /// Slots of downloads ahead ([`PREFETCH_PARALLEL`]).
    prefetch_slots: Arc<tokio::sync::Semaphore>,
    /// Counts cache clears (changed under the cache's mutex): a download ahead that started before one
    /// does not refill the cache.
    cache_generation: std::sync::atomic::AtomicU64,
}

/// Locks a std mutex, taking over a poisoned one (a panicking holder never leaves the state half-changed in
/// a way later operations cannot live with).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<R: E2eeApi> Core<R> {
    /// A file system over the folder `root` (already verified) of `tree`.
    pub fn new(vault: Vault<R>, tree: TreeRoot, root: FolderView, options: CoreOptions) -> Self {
        let mut state = State {
            nodes: HashMap::new(),
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
            deferred_deletes: Vec::new(),
        };
        let root_path = root.remote_path.clone();
        let root_file_id = root.file_id;
        state.nodes.insert(
            ROOT_INO,
            Node {
                parent: ROOT_INO,
                name: Name(String::new()),
                kind: Kind::Dir(Box::new(Dir::on_server(&root_path.last().cloned().unwrap_or_default()))),
            },
        );
        let owner = crate::platform::owner_ids();
        Self {
            vault,
            tree,
            root_path,
            root_file_id,
            cache: Mutex::new(PlaintextCache::new(options.cache_size)),
            spill: Arc::new(Spill::new(options.spill_directory.clone(), options.spill_above)),
            options,
            state: Mutex::new(state),
            gate: tokio::sync::RwLock::new(()),
            begin: tokio::sync::Mutex::new(()),
            committing: tokio::sync::Mutex::new(()),
            downloads: KeyedLocks::new(),
            uploads: KeyedLocks::new(),
            owner,
            last_activity: Mutex::new(tokio::time::Instant::now()),
            offline_until: Mutex::new(None),
            background: Arc::new(tokio::sync::Semaphore::new(MAX_BACKGROUND_UPLOADS)),
            prefetching: Mutex::new(HashSet::new()),
            prefetch_slots: Arc::new(tokio::sync::Semaphore::new(PREFETCH_PARALLEL)),
            cache_generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The uid and gid that own every node (the mounting user).
    pub fn owner(&self) -> (u32, u32) {
        self.owner
    }

    /// The server file id of the mount root (for logs).
    pub fn root_file_id(&self) -> u64 {
        self.root_file_id
    }

    /// Records user activity: reading, writing, opening, listing, creating, renaming, removing. Attribute
    /// lookups, statfs and idle open handles do not count, so a file manager polling the mount or a
    /// forgotten open file cannot keep it mounted.
    pub fn note_activity(&self) {
        *lock(&self.last_activity) = tokio::time::Instant::now();
    }

    /// Time since the last activity.
    pub fn idle_for(&self) -> Duration {
        lock(&self.last_activity).elapsed()
    }

    /// Resolves once the file system has seen no user activity for `timeout` (travel mode's idle timeout;
    /// see [`Self::note_activity`] for what counts).
    pub async fn idle_after(&self, timeout: Duration) {
        loop {
            let idle = self.idle_for();
            if idle >= timeout {
                return;
            }
            tokio::time::sleep(timeout - idle).await;
        }
    }

    /// Drops every change not yet on the server (`cloakfs lock --discard`): aborts the open batch (the
    /// server rolls it back) and marks every file clean. Returns how many files were dropped.
    pub async fn discard_dirty(&self) -> usize {
        let _gate = self.gate.write().await;
        let batch = self.state().batch.take();
        if let Some(batch) = batch {
            if let Err(error) = self.vault.unlock(self.root_file_id, &batch.token, true).await {
                tracing::warn!(%error, "could not abort the open batch; the server rolls it back when the lock expires");
            }
        }
        let mut state = self.state();
        let mut dropped = 0;
        for node in state.nodes.values_mut() {
            if let Kind::File(file) = &mut node.kind {
                if file.dirty || file.pending {
                    dropped += 1;
                }
                file.dirty = false;
                file.pending = false;
                file.queued = false;
                file.error = None;
                file.content = None;
            }
        }
        if !state.deferred_deletes.is_empty() {
            tracing::warn!(
                blobs = state.deferred_deletes.len(),
                "dropping deferred deletions; `cloakfs fsck --repair` removes those blobs"
            );
            state.deferred_deletes.clear();
        }
        state.retry_files_at = None;
        state.pending_since = None;
        dropped
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Logs a vault error (with server ids only) and maps it to an engine error.
    fn fail(&self, error: VaultError) -> FsError {
        let failure = FsError::from_vault(&error);
        match &error {
            VaultError::Content { .. } | VaultError::Metadata { .. } | VaultError::MissingBlob(_) => {
                tracing::error!(%error, "verification failed; refusing the data")
            }
            _ => tracing::warn!(%error, ?failure, "remote operation failed"),
        }
        failure
    }

    /// Counters and dirty files for `cloakfs status`.
    pub fn status(&self) -> CoreStatus {
        let state = self.state();
        let cache = lock(&self.cache);
        let dirty = state
            .nodes
            .iter()
            .filter_map(|(ino, node)| match &node.kind {
                Kind::File(file) if (file.dirty || file.pending) && !file.unlinked => Some(DirtyFile {
                    path: state.clear_path(*ino),
                    size: file.content.as_ref().map(|content| content.len()).unwrap_or(file.size),
                    error: file.error.clone(),
                }),
                _ => None,
            })
            .collect();
        CoreStatus {
            cache_bytes: cache.used_bytes(),
            cache_capacity: cache.capacity_bytes(),
            cache_entries: cache.len(),
            dirty,
            batch_open: state.batch.is_some(),
            commit_error: state.commit_error.clone(),
            commits: state.commits,
            uploads: state.uploads,
            spill_files: self.spill.files_created(),
            fetching_ahead: lock(&self.prefetching).len(),
            keys_locked: {
                let stats = crate::crypto::locked::stats();
                stats.locked_bytes == stats.mapped_bytes
            },
        }
    }

    /// Drops the cached plaintexts of clean files (the bytes are wiped once no open file holds them).
    pub fn clear_cache(&self) {
        let mut cache = lock(&self.cache);
        self.cache_generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        cache.clear();
    }

    /// Drops every plaintext and name held in memory (after the final flush).
    pub fn wipe(&self) {
        self.clear_cache();
        let mut state = self.state();
        state.nodes.clear();
        state.handles.clear();
    }
}
