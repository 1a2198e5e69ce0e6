//! The one file-system engine, for every vault format and under every platform adapter: the inode table
//! and clear names ([`nodes`]), listings merged so that local changes made while a listing was read are kept
//! ([`merge`]), revalidation and offline browsing of cached listings ([`folders`]), handles and contents in
//! RAM or the encrypted spill ([`read`], [`write`], [`handles`]), write-behind and commit batches
//! ([`batch`], [`commit`]), conflicted copies ([`upload`]), fetching ahead ([`prefetch`]), the plaintext
//! cache ([`cache`]), status, wipe and idle. Under it, a [`Format`] says what a listing, a read, a store and
//! a namespace change cost in that format; adapters reach the engine through [`Engine`].
//!
//! **Batches.** With a batching format (Nextcloud), every change runs inside one open transaction: the
//! mount root is locked once, blobs are uploaded, moved and deleted under that lock as operations come in,
//! and the metadata of every folder touched is written once when the batch commits: `--commit-delay` after
//! the last change, at the latest `--max-batch-age` after the first, on fsync, and at unmount. A `cp -r`
//! or `tar x` costs one lock and one metadata write per folder, not one per file. With a format that
//! applies changes at once (Cryptomator), namespace changes reach storage before they return and there is
//! nothing to commit.
//!
//! **Close.** `close()` (FUSE flush) of a changed small file queues it (write-behind): the next commit cycle
//! stores it, [`MAX_BACKGROUND_UPLOADS`] at once, so a burst of closes costs the round trips of its uploads
//! in parallel. Larger files, and every file while stores fail, are stored before close returns, so the
//! program sees the error. Until storage has a file its clear text stays in RAM (or the encrypted spill);
//! failed stores are retried in the background and shown by `cloakfs status`.
//!
//! Locks: `state` (a std mutex) is never held across an `.await`. `gate` lets operations run in parallel
//! inside a batch (read) while a commit waits for them to finish (write).

mod batch;
pub mod cache;
mod commit;
pub mod engine;
mod folder_sync;
mod folders;
mod handles;
pub(crate) mod keyed_locks;
mod merge;
mod namespace;
mod nodes;
mod prefetch;
mod read;
mod rename;
#[cfg(test)]
mod test_format;
mod upload;
mod write;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use cache::Plaintext;
use cache::PlaintextCache;
pub use engine::{Attributes, DirEntry, DirtyFile, Engine, NodeType, OpenMode, Opened, VfsStatus, ROOT_INO};
use keyed_locks::KeyedLocks;
use nodes::{Kind, State};

use crate::content::Spill;
use crate::format::{Capabilities, Format, FsError};

/// Stores a commit cycle runs at once: requests in flight together hide the round trip (at 100 ms per
/// request, 32 at a time store 320 small files a second).
pub const MAX_BACKGROUND_UPLOADS: usize = 32;

/// Closed files queued for write-behind (or being stored) beyond which a close waits until the background
/// work has made room: the queue is bounded, so a program writing faster than the link is slowed down, not
/// given an ever longer list of files that are not in storage yet.
pub const MAX_QUEUED_UPLOADS: usize = 256;

/// Files up to this size are fetched whole when opened (also with a format that reads by ranges) and
/// fetched ahead (see [`Vfs::prefetch_after`]).
pub const PREFETCH_MAX_LEN: u64 = 1 << 20;
/// How many of the following small files of a folder an open of a small file fetches ahead.
pub const PREFETCH_AHEAD: usize = 8;
/// Downloads ahead that run at once.
const PREFETCH_PARALLEL: usize = 4;

/// After storage was found unreachable, cached listings are shown without asking it for this long.
const OFFLINE_PAUSE: Duration = Duration::from_secs(10);

/// Tunables of a mount.
#[derive(Debug, Clone)]
pub struct VfsOptions {
    /// How long a folder listing is trusted before it is checked again.
    pub dir_cache_time: Duration,
    /// Plaintext cache budget in bytes.
    pub cache_size: u64,
    /// Quiet time after the last change before a batch commits (batching formats).
    pub commit_delay: Duration,
    /// Longest a batch stays open.
    pub max_batch_age: Duration,
    /// Pause between retries of failed stores and commits.
    pub retry_interval: Duration,
    /// File contents larger than this many bytes are kept encrypted in an anonymous temporary file.
    pub spill_above: u64,
    /// Where spill files are created (they never have a name on Linux: `O_TMPFILE`).
    pub spill_directory: std::path::PathBuf,
    /// This device's name in conflicted copies ("NAME (conflicted copy DEVICE DATE)").
    pub device: String,
    /// Files up to this many bytes are stored after close returned (write-behind) while storage answers;
    /// larger files, and every file while stores fail, are stored before close returns, so close reports
    /// the error. 0: close always waits.
    pub write_behind: u64,
}

impl Default for VfsOptions {
    fn default() -> Self {
        Self {
            dir_cache_time: Duration::from_secs(3),
            cache_size: 512 << 20,
            commit_delay: Duration::from_millis(500),
            max_batch_age: Duration::from_secs(10),
            retry_interval: Duration::from_secs(5),
            spill_above: 512 << 20,
            spill_directory: std::env::temp_dir(),
            device: crate::conflict::default_device_name(),
            write_behind: 128 << 10,
        }
    }
}

/// The file system over a vault format. Operations are `async` and never wait for storage while holding a
/// lock on the table.
pub struct Vfs<F: Format> {
    format: F,
    capabilities: Capabilities,
    options: VfsOptions,
    state: Mutex<State<F>>,
    cache: Mutex<PlaintextCache<F::Reader>>,
    /// Spill files for large contents, and their per-mount key.
    spill: Arc<Spill>,
    gate: tokio::sync::RwLock<()>,
    begin: tokio::sync::Mutex<()>,
    /// Held by the running commit ([`Self::commit_now`]): one commit at a time, and a caller that wants
    /// everything in storage waits for the one in flight.
    committing: tokio::sync::Mutex<()>,
    /// One fetch per stored content at a time.
    downloads: KeyedLocks<String>,
    /// One store per file at a time.
    uploads: KeyedLocks<u64>,
    /// One listing (or check) per folder at a time; a second asker uses the first one's result.
    listings: KeyedLocks<u64>,
    owner: (u32, u32),
    /// The last user-initiated file-system operation (for the idle timeout; tokio's clock, so tests can run
    /// the idle timeout in paused time).
    last_activity: Mutex<tokio::time::Instant>,
    /// Until when cached listings are shown without revalidation (storage was unreachable).
    offline_until: Mutex<Option<Instant>>,
    /// Slots of a commit cycle's stores ([`MAX_BACKGROUND_UPLOADS`]); all free when none runs.
    background: Arc<tokio::sync::Semaphore>,
    /// Content ids being fetched ahead (each is fetched once).
    prefetching: Mutex<HashSet<String>>,
    /// Slots of downloads ahead ([`PREFETCH_PARALLEL`]).
    prefetch_slots: Arc<tokio::sync::Semaphore>,
    /// Counts cache clears (changed under the cache's mutex): a download ahead that started before one does
    /// not refill the cache.
    cache_generation: std::sync::atomic::AtomicU64,
    /// Wakes the background work: a file was queued (formats without batches store it at once), or the queue
    /// is full.
    wake: tokio::sync::Notify,
    /// Wakes closes waiting for room in the write-behind queue (after every round of background work).
    room: tokio::sync::Notify,
}

/// Entries whose change is on its way to storage; when dropped, the change has ended (see [`Vfs::in_flight`]).
struct InFlight<'a, F: Format> {
    vfs: &'a Vfs<F>,
    names: Vec<(u64, nodes::Name)>,
}

impl<F: Format> Drop for InFlight<'_, F> {
    fn drop(&mut self) {
        let mut state = self.vfs.state();
        for (folder, name) in &self.names {
            state.touched_here(*folder, name);
        }
    }
}

/// Locks a std mutex, taking over a poisoned one (a panicking holder never leaves the state half-changed in
/// a way later operations cannot live with).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<F: Format> Vfs<F> {
    /// A file system over `format`, mounted at its root.
    pub fn new(format: F, options: VfsOptions) -> Self {
        let state = State::new(format.root());
        Self {
            capabilities: format.capabilities(),
            format,
            cache: Mutex::new(PlaintextCache::new(options.cache_size)),
            spill: Arc::new(Spill::new(options.spill_directory.clone(), options.spill_above)),
            options,
            state: Mutex::new(state),
            gate: tokio::sync::RwLock::new(()),
            begin: tokio::sync::Mutex::new(()),
            committing: tokio::sync::Mutex::new(()),
            downloads: KeyedLocks::new(),
            uploads: KeyedLocks::new(),
            listings: KeyedLocks::new(),
            owner: crate::platform::owner_ids(),
            last_activity: Mutex::new(tokio::time::Instant::now()),
            offline_until: Mutex::new(None),
            background: Arc::new(tokio::sync::Semaphore::new(MAX_BACKGROUND_UPLOADS)),
            prefetching: Mutex::new(HashSet::new()),
            prefetch_slots: Arc::new(tokio::sync::Semaphore::new(PREFETCH_PARALLEL)),
            cache_generation: std::sync::atomic::AtomicU64::new(0),
            wake: tokio::sync::Notify::new(),
            room: tokio::sync::Notify::new(),
        }
    }

    /// The format under the engine.
    pub fn format(&self) -> &F {
        &self.format
    }

    fn state(&self) -> MutexGuard<'_, State<F>> {
        lock(&self.state)
    }

    /// Whether the format carries changes in batches.
    fn batches(&self) -> bool {
        self.capabilities.batches
    }

    /// The name check of the kernel's names: what the format can hold, and at most 255 bytes (the limit every
    /// local file system has).
    fn validate_name(&self, name: &str) -> Result<(), FsError> {
        if name.len() > 255 {
            return Err(FsError::NameTooLong);
        }
        if !self.format.is_valid_name(name) {
            return Err(FsError::InvalidArgument);
        }
        Ok(())
    }

    /// Marks entries (folder, name) as changing in storage until the returned guard is dropped (see
    /// [`State::changing`]). Drop it while the table is not locked.
    fn in_flight(&self, names: &[(u64, &str)]) -> InFlight<'_, F> {
        let mut state = self.state();
        for (folder, name) in names {
            state.changing(*folder, name);
        }
        InFlight {
            vfs: self,
            names: names.iter().map(|(folder, name)| (*folder, nodes::Name((*name).to_owned()))).collect(),
        }
    }

    /// Whether storage was found unreachable a moment ago.
    fn offline(&self) -> bool {
        lock(&self.offline_until).is_some_and(|until| Instant::now() < until)
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

    /// Counters and dirty files for `cloakfs status`.
    pub fn status(&self) -> VfsStatus {
        let state = self.state();
        let cache = lock(&self.cache);
        let mut dirty = Vec::new();
        let (mut held_bytes, mut held) = (0, 0);
        for (ino, node) in &state.nodes {
            if let Kind::File(file) = &node.kind {
                if file.open_handles > 0 {
                    held_bytes += file.content.as_ref().map(|content| content.ram_bytes()).unwrap_or(0);
                    held += usize::from(file.reader.is_some() || file.content.is_some());
                }
                if (file.dirty || file.pending) && !file.unlinked {
                    dirty.push(DirtyFile { path: state.clear_path(*ino), size: file.len(), error: file.error.clone() });
                }
            }
        }
        VfsStatus {
            cache_bytes: cache.used_bytes() + held_bytes,
            cache_capacity: cache.capacity_bytes(),
            cache_entries: cache.len() + held,
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

    /// Drops the cached plaintexts and readers, the read windows of open files and the clear text of files
    /// that are neither open nor changed (all wiped as they go); open files fetch again on their next read.
    pub fn clear_cache(&self) {
        {
            let mut cache = lock(&self.cache);
            self.cache_generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            cache.clear();
        }
        let mut state = self.state();
        for node in state.nodes.values_mut() {
            if let Kind::File(file) = &mut node.kind {
                file.reader = None;
                if !file.dirty && !file.pending && file.open_handles == 0 {
                    file.content = None;
                    file.kernel_cached = None;
                }
            }
        }
    }

    /// Drops every plaintext and name held in memory (after the final flush).
    pub fn wipe(&self) {
        self.clear_cache();
        let mut state = self.state();
        state.nodes.clear();
        state.handles.clear();
        state.queued.clear();
        state.deferred.clear();
    }

    /// Drops every change not in storage yet (`cloakfs lock --discard`): aborts the open batch (the server
    /// rolls it back) and marks every file clean; files made here and never stored disappear. Returns how
    /// many files were dropped.
    pub async fn discard_dirty(&self) -> usize {
        let _gate = self.gate.write().await;
        let batch = self.state().batch.take();
        let aborted = batch.is_some();
        if let Some(batch) = batch {
            self.format.abort_batch(&batch.handle).await;
        }
        let mut state = self.state();
        if aborted {
            // Rolled back: what the listings say of the batch's changes is no longer true.
            for node in state.nodes.values_mut() {
                if let Kind::Dir(dir) = &mut node.kind {
                    dir.listed = None;
                    (dir.in_batch, dir.staged) = (false, false);
                }
            }
        }
        let mut dropped = Vec::new();
        for (ino, node) in state.nodes.iter_mut() {
            if let Kind::File(file) = &mut node.kind {
                if file.dirty || file.pending {
                    dropped.push((*ino, file.stored.is_none() || file.pending));
                }
                file.dirty = false;
                file.pending = false;
                file.error = None;
                file.content = None;
                file.kernel_cached = None;
            }
        }
        for (ino, never_stored) in &dropped {
            if *never_stored {
                state.detach(*ino);
            }
        }
        if !state.deferred.is_empty() {
            tracing::warn!(
                entries = state.deferred.len(),
                "dropping deferred removals; `cloakfs fsck --repair` removes what they left"
            );
            state.deferred.clear();
        }
        state.queued.clear();
        state.retry_files_at = None;
        state.pending_since = None;
        dropped.len()
    }
}
