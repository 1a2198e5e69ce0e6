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

mod commit;

use super::cache::{Plaintext, PlaintextCache};
use super::content::{Content, ContentSink, Spill};
use super::error::FsError;
use super::upload::EncryptingUpload;
use crate::crypto::server_name::random_server_name;
use crate::metadata::codec::is_valid_clear_name;
use crate::metadata::{FileEntry, FolderMetadata};
use crate::remote::{LockToken, Remote, RemoteEntry, RemoteErrorKind};
use crate::vault::{mime_type, plaintext_len, FolderView, TreeRoot, Vault, VaultError};

/// Commits an operation waits for at most until the folders it needs exist on the server (one level of new
/// folders is created per commit).
const MAX_COMMITS_TO_MATERIALIZE: usize = 64;

/// After the server was found unreachable, cached listings are shown without asking it for this long.
const OFFLINE_PAUSE: Duration = Duration::from_secs(10);

/// The server could not be reached (see [`crate::remote::RemoteError::is_unreachable`]).
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
    /// Last modification.
    pub mtime: SystemTime,
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
    /// Whether all key material sits in locked memory (false: RLIMIT_MEMLOCK refused; keys may be swapped).
    pub keys_locked: bool,
}

/// A clear name that is wiped when dropped and can key maps.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Name(String);

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
struct Loaded {
    /// The folder as last read from (or committed to) the server.
    view: FolderView,
    /// What the mount shows: `view`'s metadata plus the open batch's changes.
    folder: FolderMetadata,
    /// Blob sizes and times by server name, from the listing or our uploads.
    blobs: HashMap<String, (u64, SystemTime)>,
    /// When the listing was last confirmed current.
    checked: Instant,
}

#[derive(Debug)]
struct Dir {
    /// Server name of the folder (the last segment of its remote path; unused for the root).
    uid: String,
    loaded: Option<Loaded>,
    /// Children by clear name (valid once loaded).
    children: BTreeMap<Name, u64>,
    /// Changed in the open batch: its metadata is written at commit.
    touched: bool,
    /// Created or moved in the open batch: the server shows it only after commit, so work inside it
    /// commits the batch first (as a real Nextcloud server stages such folders).
    staged: bool,
    /// Exists on the server. `false`: made here and not created there yet (its contents are local too); a
    /// commit creates it once its parent exists on the server.
    on_server: bool,
    /// Created on the server in the open batch (undone with the batch if the server drops our lock).
    created: bool,
}

impl Dir {
    /// A folder the server has, not loaded yet.
    fn on_server(uid: &str) -> Self {
        Self {
            uid: uid.to_owned(),
            loaded: None,
            children: BTreeMap::new(),
            touched: false,
            staged: false,
            on_server: true,
            created: false,
        }
    }
}

#[derive(Debug)]
struct File {
    /// Current server name (`None`: created here and never uploaded).
    uid: Option<String>,
    /// Keys of the current blob.
    entry: Option<FileEntry>,
    /// Plaintext size when the content is not loaded.
    size: u64,
    mtime: SystemTime,
    /// The plaintext while open or dirty.
    content: Option<Plaintext>,
    /// Content differs from what the server has (or will have at commit).
    dirty: bool,
    /// Increases with every local change (an upload clears `dirty` only if nothing changed meanwhile).
    version: u64,
    /// Uploaded in the open batch, not committed yet.
    pending: bool,
    /// `uid` was created in the open batch (re-uploads reuse it).
    uid_in_batch: bool,
    open_handles: u32,
    /// Last upload error.
    error: Option<String>,
    /// Server name whose content the kernel page cache holds.
    kernel_cached: Option<String>,
    /// Removed from the tree while open.
    unlinked: bool,
    /// Closed (or truncated) since its last change: the next commit uploads it.
    queued: bool,
}

impl File {
    /// A file as the server has it (not loaded, not changed here).
    fn on_server(uid: &str, entry: &FileEntry, size: u64, mtime: SystemTime) -> Self {
        Self {
            uid: Some(uid.to_owned()),
            entry: Some(entry.clone()),
            size,
            mtime,
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
enum Kind {
    Dir(Box<Dir>),
    File(File),
}

#[derive(Debug)]
struct Node {
    parent: u64,
    name: Name,
    kind: Kind,
}

#[derive(Debug)]
struct Batch {
    token: LockToken,
    counter: u64,
    /// Folders confirmed current under this lock.
    fresh: HashSet<u64>,
    /// Files uploaded in this batch.
    pending_files: Vec<u64>,
    /// Server names of every blob uploaded under this lock: on Nextcloud they exist only as staged uploads
    /// until unlock, so they can neither be deleted nor moved under it (see [`Core::delete_or_defer`]).
    uploaded: HashSet<String>,
    /// A commit failed: when to try again.
    retry_at: Option<Instant>,
}

#[derive(Debug)]
struct State {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    handles: HashMap<u64, u64>,
    next_fh: u64,
    batch: Option<Batch>,
    commit_error: Option<String>,
    commits: u64,
    uploads: u64,
    retry_files_at: Option<Instant>,
    /// Shown as the time of folders without files.
    mounted_at: SystemTime,
    /// The last change of the tree or of a file's content that a commit has to carry to the server.
    last_change: Instant,
    /// Since when changes are waiting for a commit (`None`: nothing is).
    pending_since: Option<Instant>,
    /// Blobs uploaded under an earlier lock that no metadata names any more (removed or replaced in the batch
    /// that uploaded them), by folder: deleted in the next batch, whose metadata write makes Nextcloud
    /// finalize the deletion.
    deferred_deletes: Vec<(u64, String)>,
}

/// The file system. Operations are `async` and never block on the network while holding a lock.
pub struct Core<R: Remote> {
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
    last_activity: Mutex<Instant>,
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

/// Why a download failed: no spill file could be made, or the server's answer (transport, verification).
#[derive(Debug, thiserror::Error)]
enum DownloadError {
    /// The spill file for a large content could not be created.
    #[error("cannot create a spill file: {0}")]
    Spill(std::io::Error),
    /// The download or its verification failed.
    #[error(transparent)]
    Remote(VaultError),
}

/// Per-key async mutexes (one download per blob, one upload per file at a time).
struct KeyedLocks<K>(Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>);

impl<K: std::hash::Hash + Eq + Clone> KeyedLocks<K> {
    fn new() -> Self {
        Self(Mutex::new(HashMap::new()))
    }

    async fn lock(&self, key: &K) -> KeyedGuard<'_, K> {
        let mutex = lock(&self.0).entry(key.clone()).or_default().clone();
        let guard = mutex.clone().lock_owned().await;
        KeyedGuard { locks: self, key: key.clone(), _guard: guard, mutex }
    }

    /// The lock of `key` if nobody holds it.
    fn try_lock(&self, key: &K) -> Option<KeyedGuard<'_, K>> {
        let mutex = lock(&self.0).entry(key.clone()).or_default().clone();
        let guard = mutex.clone().try_lock_owned().ok()?;
        Some(KeyedGuard { locks: self, key: key.clone(), _guard: guard, mutex })
    }
}

struct KeyedGuard<'a, K: std::hash::Hash + Eq + Clone> {
    locks: &'a KeyedLocks<K>,
    key: K,
    _guard: tokio::sync::OwnedMutexGuard<()>,
    mutex: Arc<tokio::sync::Mutex<()>>,
}

impl<K: std::hash::Hash + Eq + Clone> Drop for KeyedGuard<'_, K> {
    fn drop(&mut self) {
        let mut map = lock(&self.locks.0);
        // The map, this guard and our `mutex` field hold it: nobody else waits, so forget the key.
        if Arc::strong_count(&self.mutex) <= 3 {
            map.remove(&self.key);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The content behind `content` for writing: shared (cached) content is copied first.
fn writable(content: &mut Plaintext) -> Result<&mut Content, FsError> {
    if Arc::get_mut(content).is_none() {
        *content = Arc::new(content.try_clone().map_err(|error| FsError::from_io(&error))?);
    }
    Arc::get_mut(content).ok_or(FsError::Io)
}

/// This machine's host name, the default device name in conflicted copies.
pub fn default_device_name() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or truncates.
    let result = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    let end = buffer.iter().position(|&byte| byte == 0).unwrap_or(buffer.len());
    match std::str::from_utf8(&buffer[..end]) {
        Ok(host) if result == 0 && !host.is_empty() => host.to_owned(),
        _ => "this device".to_owned(),
    }
}

/// "STEM (conflicted copy DEVICE YYYY-MM-DD HHMMSS).EXT" (UTC), with " 2", " 3"... inside the parentheses
/// while `taken`, the stem shortened so that the name fits in 255 bytes.
pub fn conflict_name(name: &str, device: &str, when: SystemTime, taken: impl Fn(&str) -> bool) -> String {
    let (stem, extension) = match name.rfind('.') {
        Some(dot) if dot > 0 && name.len() - dot <= 16 => (&name[..dot], &name[dot..]),
        _ => (name, ""),
    };
    let device: String = device.chars().filter(|c| *c != '/' && !c.is_control()).take(64).collect();
    let seconds = when.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, day_seconds) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    let stamp = format!(
        "{year:04}-{month:02}-{day:02} {:02}{:02}{:02}",
        day_seconds / 3600,
        day_seconds / 60 % 60,
        day_seconds % 60
    );
    for attempt in 1u32.. {
        let number = if attempt == 1 { String::new() } else { format!(" {attempt}") };
        let suffix = format!(" (conflicted copy {device} {stamp}{number}){extension}");
        let mut stem_end = stem.len().min(255usize.saturating_sub(suffix.len()));
        while !stem.is_char_boundary(stem_end) {
            stem_end -= 1;
        }
        let candidate = format!("{}{suffix}", &stem[..stem_end]);
        if !taken(&candidate) {
            return candidate;
        }
    }
    unreachable!("some number is free")
}

/// Year, month, day of a count of days since 1970-01-01 (Howard Hinnant's civil_from_days).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn validate_name(name: &str) -> Result<(), FsError> {
    if name.len() > 255 {
        return Err(FsError::NameTooLong);
    }
    if !is_valid_clear_name(name) {
        return Err(FsError::InvalidArgument);
    }
    Ok(())
}

impl State {
    fn node(&self, ino: u64) -> Result<&Node, FsError> {
        self.nodes.get(&ino).ok_or(FsError::NotFound)
    }

    fn node_mut(&mut self, ino: u64) -> Result<&mut Node, FsError> {
        self.nodes.get_mut(&ino).ok_or(FsError::NotFound)
    }

    fn dir(&self, ino: u64) -> Result<&Dir, FsError> {
        match &self.node(ino)?.kind {
            Kind::Dir(dir) => Ok(dir),
            Kind::File(_) => Err(FsError::NotADirectory),
        }
    }

    fn dir_mut(&mut self, ino: u64) -> Result<&mut Dir, FsError> {
        match &mut self.node_mut(ino)?.kind {
            Kind::Dir(dir) => Ok(dir),
            Kind::File(_) => Err(FsError::NotADirectory),
        }
    }

    fn file(&self, ino: u64) -> Result<&File, FsError> {
        match &self.node(ino)?.kind {
            Kind::File(file) => Ok(file),
            Kind::Dir(_) => Err(FsError::IsADirectory),
        }
    }

    fn file_mut(&mut self, ino: u64) -> Result<&mut File, FsError> {
        match &mut self.node_mut(ino)?.kind {
            Kind::File(file) => Ok(file),
            Kind::Dir(_) => Err(FsError::IsADirectory),
        }
    }

    fn child(&self, parent: u64, name: &str) -> Result<Option<u64>, FsError> {
        Ok(self.dir(parent)?.children.get(&Name(name.to_owned())).copied())
    }

    fn allocate(&mut self, parent: u64, name: &str, kind: Kind) -> u64 {
        self.next_ino += 1;
        let ino = self.next_ino;
        self.nodes.insert(ino, Node { parent, name: Name(name.to_owned()), kind });
        if let Ok(dir) = self.dir_mut(parent) {
            dir.children.insert(Name(name.to_owned()), ino);
        }
        ino
    }

    /// Moves node `ino` to `new_name` in `new_parent` in the inode table (and in its file entry's name).
    fn relink(&mut self, ino: u64, new_parent: u64, new_name: &str) -> Result<(), FsError> {
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
        let node = self.node_mut(ino)?;
        node.parent = new_parent;
        node.name = Name(new_name.to_owned());
        if let Kind::File(File { entry: Some(entry), .. }) = &mut node.kind {
            entry.filename = Zeroizing::new(new_name.to_owned());
        }
        Ok(())
    }

    /// Detaches `ino` from its parent's index; the node itself stays while files are open.
    fn detach(&mut self, ino: u64) {
        let Some(node) = self.nodes.get(&ino) else { return };
        let (parent, name) = (node.parent, node.name.clone());
        if let Ok(dir) = self.dir_mut(parent) {
            if dir.children.get(&name) == Some(&ino) {
                dir.children.remove(&name);
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
    fn keep_both(&mut self, parent: u64, ino: u64, conflict: &str, theirs: &str) -> Result<(), FsError> {
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

    fn forget_subtree(&mut self, ino: u64) {
        if let Some(node) = self.nodes.remove(&ino) {
            if let Kind::Dir(dir) = node.kind {
                for child in dir.children.values() {
                    self.forget_subtree(*child);
                }
            }
        }
    }

    /// The server path of folder `ino`.
    fn remote_path(&self, root_path: &[String], ino: u64) -> Result<Vec<String>, FsError> {
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
    fn clear_path(&self, ino: u64) -> String {
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
    fn local_only(&self, ino: u64) -> bool {
        self.any_folder_up_from(ino, |dir| !dir.on_server)
    }

    /// Whether `check` holds for folder `ino` (if it is one) or any folder above it.
    fn any_folder_up_from(&self, ino: u64, check: impl Fn(&Dir) -> bool) -> bool {
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
    fn server_uid(&self, ino: u64) -> Option<String> {
        match &self.node(ino).ok()?.kind {
            Kind::Dir(dir) => dir.on_server.then(|| dir.uid.clone()),
            Kind::File(file) => file.uid.clone(),
        }
    }

    /// Whether `ino` or a folder above it is staged in the open batch.
    fn staged_above(&self, ino: u64) -> bool {
        self.any_folder_up_from(ino, |dir| dir.staged)
    }

    fn attributes(&self, ino: u64) -> Result<Attributes, FsError> {
        let node = self.node(ino)?;
        Ok(match &node.kind {
            Kind::Dir(dir) => {
                let mtime = dir
                    .loaded
                    .as_ref()
                    .and_then(|loaded| loaded.blobs.values().map(|(_, time)| *time).max())
                    .unwrap_or(self.mounted_at);
                Attributes { ino, kind: NodeType::Directory, size: 0, mtime }
            }
            Kind::File(file) => {
                let size = file.content.as_ref().map(|content| content.len()).unwrap_or(file.size);
                Attributes { ino, kind: NodeType::File, size, mtime: file.mtime }
            }
        })
    }
}

impl<R: Remote> Core<R> {
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
        // SAFETY of unwraps: none; getuid/getgid cannot fail.
        let owner = unsafe { (libc::getuid(), libc::getgid()) };
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
            last_activity: Mutex::new(Instant::now()),
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
        *lock(&self.last_activity) = Instant::now();
    }

    /// Time since the last activity.
    pub fn idle_for(&self) -> Duration {
        lock(&self.last_activity).elapsed()
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

    // ----- folders: loading and revalidation -----

    /// Reads folder `ino` from the server and merges it into the inode table.
    async fn reload(&self, ino: u64) -> Result<(), FsError> {
        let path = self.state().remote_path(&self.root_path, ino)?;
        let (view, entries) = self.vault.list_folder(&self.tree, &path).await.map_err(|error| self.fail(error))?;
        self.merge(ino, view, entries);
        Ok(())
    }

    fn merge(&self, ino: u64, view: FolderView, entries: Vec<RemoteEntry>) {
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
    async fn ensure_current(&self, ino: u64) -> Result<(), FsError> {
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
    async fn check_folder_or_unreachable(&self, ino: u64, path: &[String]) -> Result<Result<(), FsError>, Unreachable> {
        match self.vault.folder_view(&self.tree, path).await {
            Err(VaultError::Remote(error)) if error.is_unreachable() => Err(Unreachable),
            Err(VaultError::NotFound) => Ok(Err(FsError::NotFound)),
            Err(error) => Ok(Err(self.fail(error))),
            Ok(fresh) => Ok(self.apply_check(ino, fresh).await),
        }
    }

    /// The server's file id of folder `ino` (for logs), 0 if unknown.
    fn folder_file_id(&self, ino: u64) -> u64 {
        self.state().dir(ino).ok().and_then(|dir| dir.loaded.as_ref().map(|loaded| loaded.view.file_id)).unwrap_or(0)
    }

    /// Reads folder `ino` alone (depth 0) and reloads its listing only if its metadata counter moved (any
    /// change to the folder by any client rewrites its metadata with a higher counter).
    async fn check_folder(&self, ino: u64, path: &[String]) -> Result<(), FsError> {
        self.check_folder_or_unreachable(ino, path).await.unwrap_or_else(|Unreachable| {
            tracing::warn!(file_id = self.folder_file_id(ino), "server unreachable");
            Err(FsError::Unreachable)
        })
    }

    /// Keeps folder `ino`'s listing if `fresh` has the same counter, else reloads it.
    async fn apply_check(&self, ino: u64, fresh: FolderView) -> Result<(), FsError> {
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

    // ----- lookups and listings -----

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

    /// The parent of folder `ino`.
    pub fn parent_of(&self, ino: u64) -> u64 {
        self.state().nodes.get(&ino).map(|node| node.parent).unwrap_or(ROOT_INO)
    }

    // ----- opening and reading -----

    /// Downloads (once, however many open it at the same time), verifies and decrypts the current blob of
    /// file `ino`, unless its content is already loaded or cached.
    async fn load_content(&self, ino: u64) -> Result<(), FsError> {
        let (parent, uid, entry) = {
            let state = self.state();
            let file = state.file(ino)?;
            if file.content.is_some() {
                return Ok(());
            }
            match (&file.uid, &file.entry) {
                (Some(uid), Some(entry)) => (state.node(ino)?.parent, uid.clone(), entry.clone()),
                _ => {
                    drop(state);
                    self.state().file_mut(ino)?.content = Some(Arc::new(Content::empty()));
                    return Ok(());
                }
            }
        };
        let _one_download = self.downloads.lock(&uid).await;
        let cached = lock(&self.cache).get(&uid);
        let plaintext = match cached {
            Some(plaintext) => plaintext,
            None => {
                let path = self.state().remote_path(&self.root_path, parent)?;
                let expected_len = self.state().file(ino)?.size;
                let plaintext: Plaintext =
                    Arc::new(self.download_verified(&path, &uid, &entry, expected_len).await.map_err(|error| {
                        match error {
                            DownloadError::Spill(error) => FsError::from_io(&error),
                            DownloadError::Remote(error) => self.fail(error),
                        }
                    })?);
                lock(&self.cache).insert(&uid, plaintext.clone());
                plaintext
            }
        };
        let mut state = self.state();
        let file = state.file_mut(ino)?;
        if file.content.is_none() && file.uid.as_deref() == Some(uid.as_str()) {
            file.size = plaintext.len();
            file.content = Some(plaintext);
        }
        Ok(())
    }

    /// After small file `ino` was opened: fetches up to [`PREFETCH_AHEAD`] of the small files that follow it
    /// in its folder (name order) and are not cached, verified and decrypted, into the cache in the
    /// background. Programs that read a folder's files one after another (`cat *`, `grep -r`, a backup)
    /// then find them there instead of waiting a round trip each. Nothing is fetched while the server is
    /// unreachable; a failed fetch ahead is only logged (the open of that file fetches it again and
    /// reports the error).
    pub fn prefetch_after(self: &Arc<Self>, ino: u64)
    where
        R: 'static,
    {
        if lock(&self.offline_until).is_some_and(|until| Instant::now() < until) {
            return;
        }
        let (path, ahead) = {
            let state = self.state();
            let Ok(node) = state.node(ino) else { return };
            let Kind::File(file) = &node.kind else { return };
            if file.size > PREFETCH_MAX_LEN {
                return;
            }
            let Ok(dir) = state.dir(node.parent) else { return };
            let mut ahead = Vec::new();
            let following = dir.children.range((std::ops::Bound::Excluded(&node.name), std::ops::Bound::Unbounded));
            for (_, child) in following {
                if ahead.len() == PREFETCH_AHEAD {
                    break;
                }
                let Ok(file) = state.file(*child) else { continue };
                if file.content.is_some() || file.dirty || file.size > PREFETCH_MAX_LEN {
                    continue;
                }
                if let (Some(uid), Some(entry)) = (&file.uid, &file.entry) {
                    ahead.push((uid.clone(), entry.clone(), file.size));
                }
            }
            let Ok(path) = state.remote_path(&self.root_path, node.parent) else { return };
            (path, ahead)
        };
        for (uid, entry, size) in ahead {
            if lock(&self.cache).get(&uid).is_some() || !lock(&self.prefetching).insert(uid.clone()) {
                continue;
            }
            let core = self.clone();
            let path = path.clone();
            tokio::spawn(
                async move {
                    if let Ok(_slot) = core.prefetch_slots.clone().acquire_owned().await {
                        core.fetch_ahead(&path, &uid, &entry, size).await;
                    }
                    lock(&core.prefetching).remove(&uid);
                }
                .instrument(tracing::debug_span!("prefetch")),
            );
        }
    }

    /// One download ahead: verified and decrypted into the cache unless it is cached meanwhile or the cache
    /// was cleared since it started.
    async fn fetch_ahead(&self, path: &[String], uid: &String, entry: &FileEntry, size: u64) {
        let _one_download = self.downloads.lock(uid).await;
        if lock(&self.cache).get(uid).is_some() {
            return;
        }
        let generation = self.cache_generation.load(std::sync::atomic::Ordering::SeqCst);
        match self.download_verified(path, uid, entry, size).await {
            Ok(content) => {
                let mut cache = lock(&self.cache);
                if self.cache_generation.load(std::sync::atomic::Ordering::SeqCst) == generation {
                    cache.insert(uid, Arc::new(content));
                }
            }
            Err(error) => tracing::debug!(%error, "fetching ahead failed; the file is fetched when opened"),
        }
    }

    /// Downloads blob `uid` of the folder at `path`, verifies it against `entry` and decrypts it (spilling
    /// above the threshold); the caller holds the blob's download lock.
    async fn download_verified(
        &self,
        path: &[String],
        uid: &str,
        entry: &FileEntry,
        expected_len: u64,
    ) -> Result<Content, DownloadError> {
        async {
            let mut sink = ContentSink::new(expected_len, self.spill.clone()).map_err(|error| {
                tracing::warn!(%error, directory = %self.spill.directory().display(), "cannot create a spill file");
                DownloadError::Spill(error)
            })?;
            tracing::debug!("fetching blob");
            self.vault.read_blob(path, uid, entry, &mut sink).await.map_err(DownloadError::Remote)?;
            sink.into_verified().ok_or(DownloadError::Spill(std::io::ErrorKind::InvalidData.into()))
        }
        .instrument(tracing::info_span!("download", server_name = %uid))
        .await
    }

    /// Opens file `ino`: loads its content (download, verify, decrypt on a cache miss).
    pub async fn open(&self, ino: u64, mode: OpenMode) -> Result<Opened, FsError> {
        let parent = self.state().node(ino)?.parent;
        self.state().file(ino)?;
        if parent != u64::MAX {
            self.ensure_current(parent).await?;
        }
        if mode.truncate && mode.write {
            self.truncate_local(ino, 0)?;
        } else {
            self.load_content(ino).await?;
        }
        let mut state = self.state();
        state.next_fh += 1;
        let fh = state.next_fh;
        state.handles.insert(fh, ino);
        let file = state.file_mut(ino)?;
        file.open_handles += 1;
        let keep_cache = !file.dirty && file.uid.is_some() && file.kernel_cached == file.uid;
        file.kernel_cached = if file.dirty { None } else { file.uid.clone() };
        Ok(Opened { fh, keep_cache })
    }

    /// Reads up to `size` bytes at `offset`, lending them to `use_bytes` instead of copying them (the FUSE
    /// reply copies them once, straight from the cache).
    pub async fn read_with<T>(
        &self,
        ino: u64,
        offset: u64,
        size: u32,
        use_bytes: impl FnOnce(&[u8]) -> T,
    ) -> Result<T, FsError> {
        self.load_content(ino).await?;
        let state = self.state();
        let content = state.file(ino)?.content.clone().ok_or(FsError::Io)?;
        drop(state);
        content.with_range(offset, size as usize, use_bytes).map_err(|error| {
            tracing::error!(%error, ino, "reading local content failed");
            FsError::from_io(&error)
        })
    }

    // ----- writing -----

    fn mark_changed(file: &mut File) {
        file.dirty = true;
        // Uploaded at the next close (or fsync), not while it is being written.
        file.queued = false;
        file.version += 1;
        file.mtime = SystemTime::now();
        file.kernel_cached = None;
    }

    fn truncate_local(&self, ino: u64, len: u64) -> Result<(), FsError> {
        let mut state = self.state();
        let file = state.file_mut(ino)?;
        let content = writable(file.content.get_or_insert_with(Default::default))?;
        content.set_len(len, &self.spill).map_err(|error| FsError::from_io(&error))?;
        file.size = len;
        Self::mark_changed(file);
        Ok(())
    }

    /// Writes `data` at `offset` if the file's content is loaded (no download needed): the FUSE thread
    /// then copies the kernel's buffer straight into the content. `None`: use [`Self::write`].
    pub fn write_loaded(&self, ino: u64, offset: u64, data: &[u8]) -> Option<Result<u32, FsError>> {
        self.state().file(ino).ok()?.content.as_ref()?;
        Some(self.write_content(ino, offset, data))
    }

    /// Writes `data` at `offset` into the file's RAM buffer.
    pub async fn write(&self, ino: u64, offset: u64, data: &[u8]) -> Result<u32, FsError> {
        self.load_content(ino).await?;
        self.write_content(ino, offset, data)
    }

    fn write_content(&self, ino: u64, offset: u64, data: &[u8]) -> Result<u32, FsError> {
        let mut state = self.state();
        let file = state.file_mut(ino)?;
        let content = writable(file.content.as_mut().ok_or(FsError::Io)?)?;
        content.write_at(offset, data, &self.spill).map_err(|error| {
            tracing::warn!(%error, ino, "writing local content failed");
            FsError::from_io(&error)
        })?;
        file.size = content.len();
        Self::mark_changed(file);
        Ok(data.len() as u32)
    }

    /// Sets the size and/or modification time.
    pub async fn setattr(&self, ino: u64, size: Option<u64>, mtime: Option<SystemTime>) -> Result<Attributes, FsError> {
        if let Some(len) = size {
            if matches!(self.state().node(ino)?.kind, Kind::Dir(_)) {
                return Err(FsError::IsADirectory);
            }
            if len != 0 {
                self.load_content(ino).await?;
            }
            self.truncate_local(ino, len)?;
            // truncate(2) on a closed file has no close to upload it: do it now.
            if self.state().file(ino)?.open_handles == 0 {
                self.write_back(ino).await?;
            }
        }
        if let Some(mtime) = mtime {
            if let Ok(file) = self.state().file_mut(ino) {
                file.mtime = mtime;
            }
        }
        self.state().attributes(ino)
    }

    /// Close: uploads the file if it changed; the error reaches the program.
    pub async fn flush(&self, ino: u64) -> Result<(), FsError> {
        let dirty = self.state().file(ino).map(|file| file.dirty).unwrap_or(false);
        if dirty {
            self.write_back(ino).await?;
        }
        Ok(())
    }

    /// Whether a closed file of `size` bytes may wait for the commit to be uploaded (write-behind): it is
    /// small, the server answers, and no upload or commit failed since.
    fn may_write_behind(&self, size: u64) -> bool {
        let offline = lock(&self.offline_until).is_some_and(|until| Instant::now() < until);
        if size > self.options.write_behind || offline {
            return false;
        }
        let state = self.state();
        state.retry_files_at.is_none()
            && state.commit_error.is_none()
            && state.batch.as_ref().is_none_or(|batch| batch.retry_at.is_none())
    }

    /// Close (FUSE flush). A changed small file is queued for the next commit, which uploads it (see
    /// [`CoreOptions::write_behind`]): close returns once the batch's lock is held (at once within a burst;
    /// the first close of a burst waits for the lock, which proves the server answers, so an outage is still
    /// reported by close), and a file removed or replaced before the commit (a lock file, a temporary) never
    /// reaches the server. Other changed files are uploaded before close returns, so the program sees the
    /// error. Either way the content stays in RAM until the server has it.
    pub async fn close(&self, ino: u64) -> Result<(), FsError> {
        let Ok((dirty, size)) = self.state().file(ino).map(|file| (file.dirty, file.size)) else { return Ok(()) };
        if !dirty {
            return Ok(());
        }
        if self.may_write_behind(size) {
            if let Err(error) = self.ensure_batch().await {
                let mut state = self.state();
                if let Ok(file) = state.file_mut(ino) {
                    file.error = Some(format!("upload failed: {}", error));
                }
                state.retry_files_at = Some(Instant::now() + self.options.retry_interval);
                return Err(error);
            }
            let mut state = self.state();
            if let Ok(file) = state.file_mut(ino) {
                file.queued = true;
            }
            Self::note_change(&mut state);
            return Ok(());
        }
        self.write_back(ino).await
    }

    /// Waits until no upload of a commit runs (before names change, and before fsyncdir, unmount and lock).
    pub async fn wait_for_background(&self) {
        if let Ok(all) = self.background.acquire_many(MAX_BACKGROUND_UPLOADS as u32).await {
            drop(all);
        }
    }

    /// fsync: uploads the file if it changed and commits the batch; returns when the server has it.
    pub async fn fsync(&self, ino: u64) -> Result<(), FsError> {
        self.flush(ino).await?;
        let pending = self.state().file(ino).map(|file| file.pending).unwrap_or(false);
        if pending {
            self.commit_now().await?;
        }
        Ok(())
    }

    /// Releases handle `fh`. The content of a clean file leaves RAM (the cache may keep a copy).
    pub fn release(&self, fh: u64) {
        let mut state = self.state();
        let Some(ino) = state.handles.remove(&fh) else { return };
        let Ok(file) = state.file_mut(ino) else { return };
        file.open_handles = file.open_handles.saturating_sub(1);
        if file.open_handles == 0 && !file.dirty && !file.pending {
            file.content = None;
        }
        let unlinked = file.unlinked && file.open_handles == 0;
        if unlinked {
            state.forget_subtree(ino);
        }
    }

    /// Waits while one of `folders` (or a folder above) is staged in the open batch or exists only here
    /// (commits until the server has it), then enters the batch: returns the gate guard and the lock token,
    /// with every folder of `folders` current under the lock.
    async fn enter_batch(&self, folders: &[u64]) -> Result<(tokio::sync::RwLockReadGuard<'_, ()>, LockToken), FsError> {
        let waiting = |state: &State| folders.iter().any(|ino| state.staged_above(*ino) || state.local_only(*ino));
        let mut commits = 0;
        loop {
            if waiting(&self.state()) {
                // Each commit creates one more level of new folders; deeper than this is a folder the server
                // keeps refusing.
                if commits == MAX_COMMITS_TO_MATERIALIZE {
                    return Err(FsError::Io);
                }
                commits += 1;
                tracing::debug!(commits, "waiting for a folder to reach the server");
                Box::pin(self.commit_now()).await?;
                continue;
            }
            let gate = self.gate.read().await;
            if waiting(&self.state()) {
                continue;
            }
            let token = self.ensure_batch().await?;
            let mut distinct = folders.to_vec();
            distinct.sort_unstable();
            distinct.dedup();
            futures_util::future::try_join_all(distinct.iter().map(|ino| self.ensure_fresh_in_batch(*ino))).await?;
            // A change is about to be made: the quiet time before the commit starts now, not at the last
            // change before this operation waited for the lock and listings (else a slow server makes every
            // batch commit right after its first change).
            self.state().last_change = Instant::now();
            return Ok((gate, token));
        }
    }

    /// Opens a batch if none is open: locks the mount root.
    async fn ensure_batch(&self) -> Result<LockToken, FsError> {
        if let Some(batch) = &self.state().batch {
            return Ok(batch.token.clone());
        }
        let _begin = self.begin.lock().await;
        if let Some(batch) = &self.state().batch {
            return Ok(batch.token.clone());
        }
        let known = {
            let state = self.state();
            state.dir(ROOT_INO)?.loaded.as_ref().map(|loaded| loaded.view.folder().counter)
        };
        // With the root's counter known, one request: a lock at counter + 1 succeeds only if nobody wrote the
        // root's metadata since we read it (see `Vault::lock_at_counter`), so our copy is current. Otherwise
        // (412, or nothing loaded yet) the lock is taken the long way, reading the root under it.
        let quick = match known {
            Some(counter) => self
                .vault
                .lock_at_counter(self.root_file_id, counter + 1)
                .await
                .map_err(|error| self.fail(error))?
                .map(|token| (token, counter + 1)),
            None => None,
        };
        let (token, counter, root_current) = match quick {
            Some((token, counter)) => (token, counter, true),
            None => {
                let locked = self
                    .vault
                    .lock_folder(&self.tree, &self.root_path, None)
                    .await
                    .map_err(|error| self.fail(error))?;
                let mut state = self.state();
                let root = state.dir_mut(ROOT_INO)?;
                let current = root
                    .loaded
                    .as_ref()
                    .is_some_and(|loaded| loaded.view.folder().counter == locked.view.folder().counter);
                if current {
                    if let Some(loaded) = root.loaded.as_mut() {
                        loaded.view = locked.view;
                        loaded.folder = loaded.view.folder().clone();
                    }
                }
                (locked.token, locked.counter, current)
            }
        };
        tracing::debug!(file_id = self.root_file_id, counter, "batch opened");
        {
            let mut state = self.state();
            state.last_change = Instant::now();
            state.batch = Some(Batch {
                token: token.clone(),
                counter,
                fresh: HashSet::new(),
                pending_files: Vec::new(),
                uploaded: HashSet::new(),
                retry_at: None,
            });
        }
        if !root_current {
            if let Err(error) = self.reload(ROOT_INO).await {
                self.abandon_batch().await;
                return Err(error);
            }
        }
        let mut state = self.state();
        if let Some(batch) = state.batch.as_mut() {
            batch.fresh.insert(ROOT_INO);
        }
        state.dir_mut(ROOT_INO)?.touched = true;
        Ok(token)
    }

    /// Under the batch's lock, makes sure folder `ino` is the server's current version.
    async fn ensure_fresh_in_batch(&self, ino: u64) -> Result<(), FsError> {
        let (fresh, loaded, path) = {
            let state = self.state();
            let fresh = state.batch.as_ref().is_some_and(|batch| batch.fresh.contains(&ino));
            let dir = state.dir(ino)?;
            (fresh || dir.touched, dir.loaded.is_some(), state.remote_path(&self.root_path, ino)?)
        };
        if fresh {
            return Ok(());
        }
        if loaded {
            self.check_folder(ino, &path).await?;
        } else {
            self.reload(ino).await?;
        }
        if let Some(batch) = self.state().batch.as_mut() {
            batch.fresh.insert(ino);
        }
        Ok(())
    }

    /// Records a change a commit has to carry to the server (the commit waits for `--commit-delay` after the
    /// last one).
    fn note_change(state: &mut State) {
        state.last_change = Instant::now();
        state.pending_since.get_or_insert(state.last_change);
    }

    /// Encrypts file `ino` with a fresh key and nonce and uploads it into the open batch.
    async fn write_back(&self, ino: u64) -> Result<(), FsError> {
        let one_upload = self.uploads.lock(&ino).await;
        self.write_back_holding(ino, one_upload).await
    }

    /// [`Self::write_back`] for a commit: skips a file whose upload another task runs (that task may be
    /// waiting for this very commit).
    async fn write_back_unless_busy(&self, ino: u64) -> Result<(), FsError> {
        match self.uploads.try_lock(&ino) {
            Some(one_upload) => self.write_back_holding(ino, one_upload).await,
            None => Ok(()),
        }
    }

    async fn write_back_holding(&self, ino: u64, _one_upload: KeyedGuard<'_, u64>) -> Result<(), FsError> {
        let parent = {
            let mut state = self.state();
            // Removed and forgotten meanwhile (a write-behind upload after an unlink): nothing to upload.
            let Ok(file) = state.file_mut(ino) else { return Ok(()) };
            if !file.dirty {
                return Ok(());
            }
            if file.unlinked {
                // Removed while open: nothing to upload.
                file.dirty = false;
                return Ok(());
            }
            state.node(ino)?.parent
        };
        let result = self.upload(ino, parent).await;
        if let Err(error) = &result {
            let mut state = self.state();
            if let Ok(file) = state.file_mut(ino) {
                file.error = Some(format!("upload failed: {}", error));
            }
            state.retry_files_at = Some(Instant::now() + self.options.retry_interval);
        }
        result
    }

    async fn upload(&self, ino: u64, parent: u64) -> Result<(), FsError> {
        let (_gate, token) = self.enter_batch(&[parent]).await?;
        let (_, content, version, reuse_uid, path) = {
            let state = self.state();
            let node = state.node(ino)?;
            let Kind::File(file) = &node.kind else { return Err(FsError::IsADirectory) };
            let content = file.content.clone().unwrap_or_default();
            let reuse = if file.uid_in_batch { file.uid.clone() } else { None };
            (node.name.clone(), content, file.version, reuse, state.remote_path(&self.root_path, parent)?)
        };
        // Encrypted while it is sent: no whole-ciphertext copy in RAM, encryption overlapping the transfer.
        let encrypting = EncryptingUpload::new(content);
        let blob_len = encrypting.blob_len();
        let uid = reuse_uid.unwrap_or_else(random_server_name);
        let mut blob_path = path.clone();
        blob_path.push(uid.clone());
        let sealed = async {
            tracing::debug!("uploading blob");
            let body = || encrypting.body();
            if let Err(error) = self.vault.put_blob_streamed(&blob_path, blob_len, &body, &token).await {
                // An encryption failure (e.g. an unreadable spill file) ends the request too: it is logged.
                encrypting.abandon();
                return Err(self.fail(error));
            }
            if let Some(batch) = self.state().batch.as_mut() {
                batch.uploaded.insert(uid.clone());
            }
            encrypting.sealed().await.map_err(|error| {
                tracing::error!(%error, "encryption failed");
                FsError::Io
            })
        }
        .instrument(tracing::info_span!("upload", server_name = %uid, len = blob_len))
        .await?;
        // Renamed, moved or removed while the blob was on its way (a rename does not wait for an upload
        // that a commit started): the entry takes the file's name as it is now; a blob left in a folder the
        // file is no longer in is deleted in the next batch and the file is uploaded again where it is.
        let name = {
            let mut state = self.state();
            let now = state.nodes.get(&ino).map(|node| (node.parent, node.name.clone()));
            let unlinked = state.file(ino).map(|file| file.unlinked).unwrap_or(true);
            match now {
                Some((now_parent, now_name)) if now_parent == parent && !unlinked => now_name,
                _ => {
                    tracing::debug!(server_name = %uid, "moved or removed during its upload; deleting that blob later");
                    state.deferred_deletes.push((parent, uid.clone()));
                    if let Ok(file) = state.file_mut(ino) {
                        if !file.unlinked {
                            file.dirty = true;
                            file.queued = true;
                        }
                    }
                    Self::note_change(&mut state);
                    return Ok(());
                }
            }
        };
        // The server's current blob under this name (our lock made the listing current). If it is the
        // version this content was based on, it is replaced; if another client wrote it since (or created
        // the name while we created ours), both stay: ours under a conflicted-copy name.
        let (replaced, conflict_name) = {
            let state = self.state();
            let base = state.file(ino)?.uid.clone();
            let dir = state.dir(parent)?;
            let loaded = dir.loaded.as_ref().ok_or(FsError::Io)?;
            let current = loaded
                .folder
                .files
                .iter()
                .find(|(existing, entry)| entry.filename.as_str() == name.0 && **existing != uid)
                .map(|(existing, _)| existing.clone());
            match current {
                Some(current) if base.as_deref() != Some(current.as_str()) => {
                    let taken = |candidate: &str| {
                        dir.children.contains_key(&Name(candidate.to_owned()))
                            || loaded.folder.files.values().any(|entry| entry.filename.as_str() == candidate)
                            || loaded.folder.folders.values().any(|folder| folder.as_str() == candidate)
                    };
                    let conflict = conflict_name(&name.0, &self.options.device, SystemTime::now(), taken);
                    tracing::warn!(
                        server_name = %uid,
                        other = %current,
                        "another client changed this file meanwhile; keeping both versions (ours as a conflicted copy)"
                    );
                    (None, Some((conflict, current)))
                }
                current => (current, None),
            }
        };
        if let Some(old) = &replaced {
            if let Err(error) = self.delete_or_defer(parent, old, &token).await {
                tracing::warn!(%error, server_name = %old, "could not delete the replaced blob; retrying later");
                let mut state = self.state();
                state.deferred_deletes.push((parent, old.clone()));
                Self::note_change(&mut state);
            }
            lock(&self.cache).remove(old);
        }
        let mut state = self.state();
        state.uploads += 1;
        Self::note_change(&mut state);
        let name = match conflict_name {
            None => name,
            Some((conflict, theirs)) => {
                state.keep_both(parent, ino, &conflict, &theirs)?;
                Name(conflict)
            }
        };
        let entry = FileEntry {
            filename: Zeroizing::new(name.0.clone()),
            mimetype: mime_type(&name.0).to_owned(),
            key: sealed.key.clone(),
            nonce: sealed.nonce.clone(),
            authentication_tag: sealed.tag,
            unknown: Default::default(),
        };
        {
            let dir = state.dir_mut(parent)?;
            dir.touched = true;
            let loaded = dir.loaded.as_mut().ok_or(FsError::Io)?;
            if let Some(old) = &replaced {
                loaded.folder.files.remove(old);
                loaded.blobs.remove(old);
            }
            loaded.folder.files.insert(uid.clone(), entry.clone());
            loaded.blobs.insert(uid.clone(), (blob_len, SystemTime::now()));
        }
        let file = state.file_mut(ino)?;
        file.uid = Some(uid);
        file.entry = Some(entry);
        file.pending = true;
        file.uid_in_batch = true;
        file.error = None;
        if file.version == version {
            file.dirty = false;
            file.queued = false;
        }
        if let Some(batch) = state.batch.as_mut() {
            batch.pending_files.push(ino);
        }
        Ok(())
    }

    /// Deletes blob or folder `uid` of folder `parent` under the batch lock. One uploaded or created under
    /// this same lock cannot be deleted yet: on Nextcloud it exists only as a staged upload, whose DELETE
    /// answers 404 and removes nothing, and unlock would turn it into an orphan. Such a deletion is deferred
    /// to the next batch (after this one commits it), whose metadata write of `parent` finalizes it.
    async fn delete_or_defer(&self, parent: u64, uid: &str, token: &LockToken) -> Result<(), FsError> {
        let path = {
            let mut state = self.state();
            if state.batch.as_ref().is_some_and(|batch| batch.uploaded.contains(uid)) {
                tracing::debug!(server_name = %uid, "uploaded under the open lock; deleting it in the next batch");
                state.deferred_deletes.push((parent, uid.to_owned()));
                Self::note_change(&mut state);
                return Ok(());
            }
            let mut path = state.remote_path(&self.root_path, parent)?;
            path.push(uid.to_owned());
            path
        };
        match self.vault.delete_blob(&path, token).await {
            Ok(()) => Ok(()),
            // The blob was committed before this lock (not staged): 404 means another client removed it.
            Err(VaultError::Remote(error)) if error.kind() == RemoteErrorKind::NotFound => {
                tracing::warn!(server_name = %uid, "already gone on the server");
                Ok(())
            }
            Err(error) => Err(self.fail(error)),
        }
    }

    // ----- namespace changes -----

    fn new_file() -> File {
        File {
            uid: None,
            entry: None,
            size: 0,
            mtime: SystemTime::now(),
            content: Some(Arc::new(Content::empty())),
            dirty: true,
            version: 1,
            pending: false,
            uid_in_batch: false,
            open_handles: 0,
            error: None,
            kernel_cached: None,
            unlinked: false,
            queued: false,
        }
    }

    /// Creates an empty file and opens it (O_EXCL is honoured; without it an existing file is opened).
    pub async fn create(
        &self,
        parent: u64,
        name: &str,
        mode: OpenMode,
        exclusive: bool,
    ) -> Result<(Attributes, Opened), FsError> {
        validate_name(name)?;
        self.ensure_current(parent).await?;
        let existing = self.state().child(parent, name)?;
        if let Some(ino) = existing {
            if exclusive {
                return Err(FsError::Exists);
            }
            let opened = self.open(ino, OpenMode { write: true, truncate: mode.truncate }).await?;
            return Ok((self.state().attributes(ino)?, opened));
        }
        let ino = self.state().allocate(parent, name, Kind::File(Self::new_file()));
        let opened = self.open(ino, mode).await?;
        Ok((self.state().attributes(ino)?, opened))
    }

    /// Creates an empty regular file (mknod) and uploads it.
    pub async fn mknod(&self, parent: u64, name: &str) -> Result<Attributes, FsError> {
        validate_name(name)?;
        self.ensure_current(parent).await?;
        if self.state().child(parent, name)?.is_some() {
            return Err(FsError::Exists);
        }
        let ino = self.state().allocate(parent, name, Kind::File(Self::new_file()));
        self.write_back(ino).await?;
        self.state().attributes(ino)
    }

    /// Creates an encrypted sub-folder. It exists only here until a commit creates it on the server (MKCOL,
    /// flag, first metadata) once its parent is there: a `tar x` or `git clone` never waits for the server
    /// at a mkdir, and a tree of new folders costs one commit per level, not several round trips per folder.
    pub async fn mkdir(&self, parent: u64, name: &str) -> Result<Attributes, FsError> {
        validate_name(name)?;
        self.ensure_current(parent).await?;
        let mut state = self.state();
        if state.child(parent, name)?.is_some() {
            return Err(FsError::Exists);
        }
        let dir = Dir { on_server: false, ..Dir::on_server(&random_server_name()) };
        let ino = state.allocate(parent, name, Kind::Dir(Box::new(dir)));
        Self::note_change(&mut state);
        Ok(Attributes { ino, kind: NodeType::Directory, size: 0, mtime: SystemTime::now() })
    }

    /// Removes a file.
    pub async fn unlink(&self, parent: u64, name: &str) -> Result<(), FsError> {
        validate_name(name)?;
        // Write-behind uploads name their files as they are now: let them finish before names change.
        self.wait_for_background().await;
        self.ensure_current(parent).await?;
        let ino = self.state().child(parent, name)?.ok_or(FsError::NotFound)?;
        let seen_uid = {
            // Checked and detached under one hold of the state (an upload may be finishing right now).
            let mut state = self.state();
            let seen_uid = state.file(ino)?.uid.clone();
            if seen_uid.is_none() {
                state.detach(ino);
                Self::note_change(&mut state);
                return Ok(());
            }
            seen_uid
        };
        let (_gate, token) = self.enter_batch(&[parent]).await?;
        // An upload of this file that a commit started finishes first (and none starts): it would otherwise
        // name a new blob after the file is gone.
        let _no_upload = self.uploads.lock(&ino).await;
        // Under the lock the listing is current: if another client replaced the file since we saw it, its
        // newer version stays (an edit wins over a concurrent delete); if it deleted it, we are done.
        let (current, ours) = {
            let state = self.state();
            let current = state
                .child(parent, name)?
                .filter(|current| *current == ino)
                .and_then(|_| state.file(ino).ok()?.uid.clone());
            // A version our own upload made meanwhile is the one the user removes.
            let ours = current
                .as_ref()
                .is_some_and(|uid| state.batch.as_ref().is_some_and(|batch| batch.uploaded.contains(uid)));
            (current, ours)
        };
        match current {
            None => Ok(()),
            Some(current) if Some(&current) != seen_uid.as_ref() && !ours => {
                tracing::warn!(server_name = %current, "another client changed this file meanwhile; not deleting its version");
                Ok(())
            }
            Some(_) => self.remove_entry(parent, ino, &token).await,
        }
    }

    /// Deletes `ino`'s blob or folder under the batch lock and drops it from `parent`'s metadata.
    async fn remove_entry(&self, parent: u64, ino: u64, token: &LockToken) -> Result<(), FsError> {
        let (uid, is_dir) = {
            let state = self.state();
            (state.server_uid(ino), matches!(state.node(ino)?.kind, Kind::Dir(_)))
        };
        if let Some(uid) = &uid {
            self.delete_or_defer(parent, uid, token).await?;
            lock(&self.cache).remove(uid);
        }
        let mut state = self.state();
        Self::note_change(&mut state);
        {
            let dir = state.dir_mut(parent)?;
            dir.touched = true;
            if let (Some(uid), Some(loaded)) = (&uid, dir.loaded.as_mut()) {
                if is_dir {
                    loaded.folder.folders.remove(uid);
                } else {
                    loaded.folder.files.remove(uid);
                    loaded.blobs.remove(uid);
                }
            }
        }
        if let Ok(file) = state.file_mut(ino) {
            file.dirty = false;
            file.pending = false;
        }
        state.detach(ino);
        Ok(())
    }

    /// Removes an empty folder.
    pub async fn rmdir(&self, parent: u64, name: &str) -> Result<(), FsError> {
        validate_name(name)?;
        // Write-behind uploads name their files as they are now: let them finish before names change.
        self.wait_for_background().await;
        self.ensure_current(parent).await?;
        let ino = self.state().child(parent, name)?.ok_or(FsError::NotFound)?;
        self.state().dir(ino)?;
        self.ensure_current(ino).await?;
        if !self.state().dir(ino)?.children.is_empty() {
            return Err(FsError::NotEmpty);
        }
        if self.state().local_only(ino) {
            // Never created on the server: nothing to remove there.
            let mut state = self.state();
            state.detach(ino);
            Self::note_change(&mut state);
            return Ok(());
        }
        let (_gate, token) = self.enter_batch(&[parent]).await?;
        if !self.state().dir(ino)?.children.is_empty() {
            return Err(FsError::NotEmpty);
        }
        self.remove_entry(parent, ino, &token).await
    }

    /// Renames `name` in `parent` to `new_name` in `new_parent`. `no_replace` is RENAME_NOREPLACE.
    pub async fn rename(
        &self,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        no_replace: bool,
    ) -> Result<(), FsError> {
        // Uploads of a commit name their files as they are now: let them finish before names change.
        self.wait_for_background().await;
        validate_name(name)?;
        validate_name(new_name)?;
        self.ensure_current(parent).await?;
        self.ensure_current(new_parent).await?;
        let ino = self.state().child(parent, name)?.ok_or(FsError::NotFound)?;
        let is_dir = matches!(self.state().node(ino)?.kind, Kind::Dir(_));
        if is_dir {
            // Not into itself or below.
            let mut current = new_parent;
            loop {
                if current == ino {
                    return Err(FsError::InvalidArgument);
                }
                if current == ROOT_INO {
                    break;
                }
                current = self.parent_of(current);
            }
        }
        if parent == new_parent && name == new_name {
            return Ok(());
        }
        let target = self.state().child(new_parent, new_name)?;
        if let Some(target) = target {
            self.check_replace(is_dir, target, no_replace).await?;
        }
        // Nothing of the source on the server (a new file or folder), nor of the target: a local change.
        // Decided and done under one hold of the state: an upload finishing meanwhile would otherwise name
        // its blob after the old name.
        {
            let mut state = self.state();
            let target = state.child(new_parent, new_name)?;
            let local =
                state.server_uid(ino).is_none() && target.is_none_or(|target| state.server_uid(target).is_none());
            if local {
                if let Some(target) = target {
                    state.detach(target);
                }
                state.relink(ino, new_parent, new_name)?;
                Self::note_change(&mut state);
                return Ok(());
            }
        }
        if parent != new_parent {
            // A blob uploaded, or a folder created or moved, under the open lock is staged on Nextcloud: a
            // MOVE of it would answer 404. Commit it first.
            let in_batch = {
                let state = self.state();
                let uploaded = state
                    .server_uid(ino)
                    .zip(state.batch.as_ref())
                    .is_some_and(|(uid, batch)| batch.uploaded.contains(&uid));
                uploaded || state.staged_above(ino)
            };
            if in_batch {
                self.commit_now().await?;
            }
        }
        let mut folders = vec![parent, new_parent];
        let target = self.state().child(new_parent, new_name)?;
        if let Some(target) = target {
            if matches!(self.state().node(target)?.kind, Kind::Dir(_)) && !self.state().local_only(target) {
                folders.push(target);
            }
        }
        let (_gate, token) = self.enter_batch(&folders).await?;
        // Uploads of the file and of the one it replaces that a commit started finish first (and none
        // starts), in ino order so that two renames never wait for each other.
        let mut held = vec![ino];
        if let Some(target) = self.state().child(new_parent, new_name)? {
            if target != ino {
                held.push(target);
            }
        }
        held.sort_unstable();
        let mut _no_uploads = Vec::new();
        for one in &held {
            _no_uploads.push(self.uploads.lock(one).await);
        }
        // Under the lock the listings are current: check again what the names stand for.
        if self.state().child(parent, name)? != Some(ino) {
            return Err(FsError::NotFound);
        }
        let target = self.state().child(new_parent, new_name)?;
        if let Some(target) = target {
            if target != ino {
                self.check_replace(is_dir, target, no_replace).await?;
                self.remove_entry(new_parent, target, &token).await?;
            }
        }
        let moved_on_server = self.move_entry(ino, parent, new_parent, new_name, &token).await?;
        drop(_gate);
        if moved_on_server {
            // The server applies a MOVE under a lock only at unlock (a real Nextcloud server stages its
            // destination): a later write or delete of the blob at its new place in the same batch would
            // miss it. Commit now; a failure is retried in the background.
            if let Err(error) = self.commit_now().await {
                tracing::debug!(%error, "commit after a move failed; retrying later");
            }
        }
        Ok(())
    }

    /// POSIX rules for renaming onto `target`: not with RENAME_NOREPLACE, a file onto a file, a folder onto an
    /// empty folder.
    async fn check_replace(&self, is_dir: bool, target: u64, no_replace: bool) -> Result<(), FsError> {
        if no_replace {
            return Err(FsError::Exists);
        }
        let target_is_dir = matches!(self.state().node(target)?.kind, Kind::Dir(_));
        match (is_dir, target_is_dir) {
            (false, true) => Err(FsError::IsADirectory),
            (true, false) => Err(FsError::NotADirectory),
            (true, true) => {
                self.ensure_current(target).await?;
                if self.state().dir(target)?.children.is_empty() {
                    Ok(())
                } else {
                    Err(FsError::NotEmpty)
                }
            }
            (false, false) => Ok(()),
        }
    }

    /// Moves `ino` to `new_name` in `new_parent` under the batch lock: a MOVE on the server if it changes
    /// folder and exists there, and the metadata of both folders. Returns whether the server moved something.
    async fn move_entry(
        &self,
        ino: u64,
        parent: u64,
        new_parent: u64,
        new_name: &str,
        token: &LockToken,
    ) -> Result<bool, FsError> {
        let (uid, is_dir, from_path, to_path) = {
            let state = self.state();
            let is_dir = matches!(state.node(ino)?.kind, Kind::Dir(_));
            (
                state.server_uid(ino),
                is_dir,
                state.remote_path(&self.root_path, parent)?,
                state.remote_path(&self.root_path, new_parent)?,
            )
        };
        let moved_on_server = uid.is_some() && parent != new_parent;
        if let (Some(uid), true) = (&uid, moved_on_server) {
            let mut from = from_path;
            from.push(uid.clone());
            let mut to = to_path;
            to.push(uid.clone());
            self.vault.move_blob(&from, &to, token).await.map_err(|error| self.fail(error))?;
            // Staged at its destination until unlock, like an upload.
            if let Some(batch) = self.state().batch.as_mut() {
                batch.uploaded.insert(uid.clone());
            }
        }
        let mut state = self.state();
        Self::note_change(&mut state);
        if let Some(uid) = &uid {
            let (folder_name, entry, blob) = {
                let dir = state.dir_mut(parent)?;
                dir.touched = true;
                let loaded = dir.loaded.as_mut().ok_or(FsError::Io)?;
                if is_dir {
                    (loaded.folder.folders.remove(uid), None, None)
                } else {
                    (None, loaded.folder.files.remove(uid), loaded.blobs.remove(uid))
                }
            };
            let dir = state.dir_mut(new_parent)?;
            dir.touched = true;
            let loaded = dir.loaded.as_mut().ok_or(FsError::Io)?;
            if is_dir {
                if folder_name.is_some() {
                    loaded.folder.folders.insert(uid.clone(), Zeroizing::new(new_name.to_owned()));
                }
            } else if let Some(mut entry) = entry {
                entry.filename = Zeroizing::new(new_name.to_owned());
                loaded.folder.files.insert(uid.clone(), entry);
                if let Some(blob) = blob {
                    loaded.blobs.insert(uid.clone(), blob);
                }
            }
        }
        state.relink(ino, new_parent, new_name)?;
        if let (true, Kind::Dir(dir)) = (moved_on_server, &mut state.node_mut(ino)?.kind) {
            dir.staged = true;
        }
        Ok(moved_on_server)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_names_keep_the_extension_fit_255_bytes_and_count_up() {
        // 2026-11-22 13:04:05 UTC.
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_352_645);
        let name = conflict_name("report.final.odt", "laptop", when, |_| false);
        assert_eq!(name, "report.final (conflicted copy laptop 2026-11-22 130405).odt");
        assert_eq!(
            conflict_name(".bashrc", "pc/1", when, |_| false),
            ".bashrc (conflicted copy pc1 2026-11-22 130405)"
        );
        let second =
            conflict_name("a.txt", "pc", when, |candidate| candidate == "a (conflicted copy pc 2026-11-22 130405).txt");
        assert_eq!(second, "a (conflicted copy pc 2026-11-22 130405 2).txt");
        let long = format!("{}.txt", "é".repeat(127));
        let fitted = conflict_name(&long, "pc", when, |_| false);
        assert!(fitted.len() <= 255 && fitted.ends_with("130405).txt") && fitted.starts_with('é'), "{fitted}");
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
