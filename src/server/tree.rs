//! The embedded server's file tree: nodes in SQLite, blobs as files named by random ids, and Nextcloud's
//! end-to-end encryption rules on top (the encrypted flag, locks with counters, staged writes that become
//! visible at unlock, metadata with its intermediate version).
//!
//! Every function takes the open connection and runs as one transaction, so a crash leaves either the old
//! or the new state. Blob files are written and renamed into place before the row that names them is
//! committed, and removed only after the row is gone; files no row names are swept at start.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::crypto::secret::random_bytes;

/// Suffixes Nextcloud uses for staged writes; names ending in them are refused, as there.
const RESERVED_SUFFIXES: [&str; 2] = [".e2e-to-save", ".e2e-to-delete"];

/// An error answer of the server: an HTTP status and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for the client.
    pub message: String,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(error: rusqlite::Error) -> Self {
        tracing::error!(%error, "database failure");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
    }
}

impl From<super::store::StoreError> for ApiError {
    fn from(error: super::store::StoreError) -> Self {
        tracing::error!(%error, "store failure");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
    }
}

/// Result of tree operations.
pub type ApiResult<T> = Result<T, ApiError>;

/// One file or folder.
#[derive(Debug, Clone)]
pub struct Node {
    /// The file id.
    pub id: i64,
    /// The owning user.
    pub owner: String,
    /// The parent folder (`None` for a user's root).
    pub parent: Option<i64>,
    /// The name in its parent.
    pub name: String,
    /// Folder or file.
    pub is_dir: bool,
    /// Size in bytes (files).
    pub size: u64,
    /// The entity tag (changes with the content; folders' with anything below them).
    pub etag: String,
    /// Last modification, seconds since the epoch.
    pub mtime: i64,
    /// The end-to-end encryption flag (folders).
    pub encrypted: bool,
    /// The blob file's id (files).
    pub blob: Option<String>,
    /// Set when the node was created under this lock token and is not visible yet.
    pub staged_token: Option<String>,
}

const NODE_COLUMNS: &str = "id, owner, parent, name, is_dir, size, etag, mtime, encrypted, blob, staged_token";

fn node_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Node> {
    Ok(Node {
        id: row.get(0)?,
        owner: row.get(1)?,
        parent: row.get(2)?,
        name: row.get(3)?,
        is_dir: row.get(4)?,
        size: row.get::<_, i64>(5)? as u64,
        etag: row.get(6)?,
        mtime: row.get(7)?,
        encrypted: row.get(8)?,
        blob: row.get(9)?,
        staged_token: row.get(10)?,
    })
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs() as i64).unwrap_or(0)
}

/// A fresh random id: `bytes` random bytes as lowercase hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    random_bytes(&mut buffer);
    hex::encode(buffer)
}

/// A fresh lock token: 64 characters from `[A-Za-z0-9]`, like Nextcloud's.
fn new_lock_token() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut token = String::with_capacity(64);
    while token.len() < 64 {
        let mut byte = [0u8; 1];
        random_bytes(&mut byte);
        // Rejection sampling: 248 = 4 * 62 keeps every character equally likely.
        if byte[0] < 248 {
            token.push(ALPHABET[usize::from(byte[0]) % 62] as char);
        }
    }
    token
}

/// Checks one path segment of a request: not empty, not `.`/`..`, no NUL or slash, not a reserved name.
pub fn check_segment(segment: &str) -> ApiResult<()> {
    if segment.is_empty() || segment == "." || segment == ".." || segment.contains(['\0', '/', '\\']) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid path segment"));
    }
    if segment.len() > 250 {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "name too long"));
    }
    if RESERVED_SUFFIXES.iter().any(|suffix| segment.ends_with(suffix)) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "names ending in .e2e-to-save or .e2e-to-delete are reserved",
        ));
    }
    Ok(())
}

/// An upload being written to its temp file, piece by piece, each piece's write-back started at once.
#[derive(Debug)]
pub struct BlobWriter {
    file: std::fs::File,
    written: u64,
}

impl BlobWriter {
    /// Creates the temp file.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        Ok(Self { file: std::fs::File::create(path)?, written: 0 })
    }

    /// Appends the chunks of `piece` and asks the kernel to start writing them to disk without waiting for
    /// it, so that a later fsync or syncfs finds most of a large upload on disk already.
    pub fn write_piece(&mut self, piece: &[impl AsRef<[u8]>]) -> std::io::Result<()> {
        use std::io::Write as _;
        let len: usize = piece.iter().map(|chunk| chunk.as_ref().len()).sum();
        for chunk in piece {
            self.file.write_all(chunk.as_ref())?;
        }
        #[cfg(target_os = "linux")]
        // SAFETY: an open descriptor and a range of it; SYNC_FILE_RANGE_WRITE only starts write-back.
        unsafe {
            libc::sync_file_range(
                std::os::fd::AsRawFd::as_raw_fd(&self.file),
                self.written as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
        self.written += len as u64;
        Ok(())
    }

    /// Makes the file's content durable.
    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_all()
    }
}

/// Where blobs live: `DATA/blobs/ab/<id>`, with `DATA/blobs/.tmp` for uploads in progress.
#[derive(Debug, Clone)]
pub struct BlobDir {
    root: PathBuf,
}

impl BlobDir {
    /// Opens (creating) the blob directory below `data_dir` and empties its temp directory.
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let root = data_dir.join("blobs");
        let temp = root.join(".tmp");
        let _ = std::fs::remove_dir_all(&temp);
        std::fs::create_dir_all(&temp)?;
        Ok(Self { root })
    }

    /// The file of blob `id`.
    pub fn path(&self, id: &str) -> PathBuf {
        self.root.join(&id[..2]).join(id)
    }

    /// A fresh temp file path for an upload.
    pub fn temp_path(&self) -> PathBuf {
        self.root.join(".tmp").join(random_hex(16))
    }

    /// Moves a finished upload into place under a new blob id; returns the id. With `durable` the rename is
    /// synced (the caller synced the file); without, [`Self::sync_all`] must run before the blob is committed.
    pub fn commit_upload(&self, temp: &Path, durable: bool) -> std::io::Result<String> {
        let id = random_hex(16);
        let target = self.path(&id);
        let directory = target.parent().expect("blob paths have a parent");
        std::fs::create_dir_all(directory)?;
        std::fs::rename(temp, &target)?;
        if durable {
            std::fs::File::open(directory)?.sync_all()?;
        }
        Ok(id)
    }

    /// Makes every blob written so far durable, with one `syncfs` of the file system holding them: staged
    /// uploads (under a lock) skip their own fsyncs, and unlock calls this once before committing them.
    pub fn sync_all(&self) -> std::io::Result<()> {
        let root = std::fs::File::open(&self.root)?;
        // SAFETY: syncfs takes an open file descriptor, which `root` keeps alive for the call.
        if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&root)) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Syncs one blob file and its directory (an upload that skipped its fsyncs but was not staged).
    pub fn sync_one(&self, id: &str) -> std::io::Result<()> {
        let path = self.path(id);
        std::fs::File::open(&path)?.sync_all()?;
        std::fs::File::open(path.parent().expect("blob paths have a parent"))?.sync_all()
    }

    /// Removes blob files (after the rows naming them are gone).
    pub fn remove(&self, ids: &[String]) {
        for id in ids {
            if let Err(error) = std::fs::remove_file(self.path(id)) {
                if error.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(blob = %id, %error, "could not remove a blob file");
                }
            }
        }
    }

    /// Removes blob files no node names (left by a crash between writing a file and committing its row).
    pub fn sweep(&self, connection: &Connection) -> std::io::Result<usize> {
        let mut removed = 0;
        let Ok(prefixes) = std::fs::read_dir(&self.root) else { return Ok(0) };
        let mut statement = connection
            .prepare("SELECT 1 FROM nodes WHERE blob = ?1")
            .map_err(|error| std::io::Error::other(error.to_string()))?;
        for prefix in prefixes {
            let prefix = prefix?;
            if prefix.file_name() == ".tmp" || !prefix.file_type()?.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(prefix.path())? {
                let file = file?;
                let name = file.file_name().to_string_lossy().into_owned();
                let known = statement
                    .query_row(params![name], |_| Ok(()))
                    .optional()
                    .map_err(|error| std::io::Error::other(error.to_string()))?
                    .is_some();
                if !known {
                    std::fs::remove_file(file.path())?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

/// The root folder of `owner`, created on first use.
pub fn root(connection: &Connection, owner: &str) -> ApiResult<Node> {
    let sql = format!("SELECT {NODE_COLUMNS} FROM nodes WHERE owner = ?1 AND parent IS NULL");
    if let Some(node) = connection.prepare_cached(&sql)?.query_row(params![owner], node_from_row).optional()? {
        return Ok(node);
    }
    connection
        .prepare_cached("INSERT INTO nodes(owner, parent, name, is_dir, etag, mtime) VALUES (?1, NULL, '', 1, ?2, ?3)")?
        .execute(params![owner, random_hex(16), now()])?;
    Ok(connection.prepare_cached(&sql)?.query_row(params![owner], node_from_row)?)
}

/// A node by id.
pub fn node(connection: &Connection, id: i64) -> ApiResult<Option<Node>> {
    let sql = format!("SELECT {NODE_COLUMNS} FROM nodes WHERE id = ?1");
    Ok(connection.prepare_cached(&sql)?.query_row(params![id], node_from_row).optional()?)
}

/// The visible child `name` of `parent`; with `token`, a child staged under that token is found too.
pub fn child(connection: &Connection, parent: i64, name: &str, token: Option<&str>) -> ApiResult<Option<Node>> {
    let sql = format!(
        "SELECT {NODE_COLUMNS} FROM nodes WHERE parent = ?1 AND name = ?2 AND (staged_token IS NULL OR staged_token = ?3) \
         ORDER BY staged_token IS NULL LIMIT 1"
    );
    Ok(connection.prepare_cached(&sql)?.query_row(params![parent, name, token], node_from_row).optional()?)
}

/// The visible children of a folder.
pub fn children(connection: &Connection, parent: i64) -> ApiResult<Vec<Node>> {
    let sql = format!("SELECT {NODE_COLUMNS} FROM nodes WHERE parent = ?1 AND staged_token IS NULL ORDER BY name");
    let mut statement = connection.prepare(&sql)?;
    let rows = statement.query_map(params![parent], node_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Walks `segments` from `owner`'s root; `None` if a segment does not exist.
pub fn resolve(
    connection: &Connection,
    owner: &str,
    segments: &[String],
    token: Option<&str>,
) -> ApiResult<Option<Node>> {
    let mut current = root(connection, owner)?;
    for segment in segments {
        if !current.is_dir {
            return Ok(None);
        }
        match child(connection, current.id, segment, token)? {
            Some(next) => current = next,
            None => return Ok(None),
        }
    }
    Ok(Some(current))
}

/// The node and its ancestors, nearest first.
pub fn chain(connection: &Connection, node: &Node) -> ApiResult<Vec<Node>> {
    let mut nodes = vec![node.clone()];
    let mut parent = node.parent;
    while let Some(id) = parent {
        let Some(next) = self::node(connection, id)? else { break };
        parent = next.parent;
        nodes.push(next);
    }
    Ok(nodes)
}

/// Whether `node` is an encrypted folder or lies inside one.
pub fn in_encrypted_tree(connection: &Connection, node: &Node) -> ApiResult<bool> {
    Ok(chain(connection, node)?.iter().any(|ancestor| ancestor.encrypted))
}

/// A lock on a folder.
#[derive(Debug, Clone)]
pub struct Lock {
    /// The locked folder.
    pub node: i64,
    /// The token.
    pub token: String,
    /// The counter sent with the lock (committed if metadata is written under it).
    pub counter: u64,
}

fn lock_of(connection: &Connection, node: i64) -> ApiResult<Option<Lock>> {
    Ok(connection
        .prepare_cached("SELECT node, token, counter FROM locks WHERE node = ?1")?
        .query_row(params![node], |row| {
            Ok(Lock { node: row.get(0)?, token: row.get(1)?, counter: row.get::<_, i64>(2)? as u64 })
        })
        .optional()?)
}

/// Locks on `node` and its ancestors.
pub fn locks_on_chain(connection: &Connection, node: &Node) -> ApiResult<Vec<Lock>> {
    let mut locks = Vec::new();
    for ancestor in chain(connection, node)? {
        if let Some(lock) = lock_of(connection, ancestor.id)? {
            locks.push(lock);
        }
    }
    Ok(locks)
}

/// Checks a write that changes the contents of `folder` (or `folder` itself): outside encrypted trees
/// anything goes (`None`); inside, the request must carry the token of the one lock on the chain.
pub fn check_write_token(connection: &Connection, folder: &Node, token: Option<&str>) -> ApiResult<Option<String>> {
    if !in_encrypted_tree(connection, folder)? {
        return Ok(None);
    }
    let Some(token) = token.filter(|token| !token.is_empty()) else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Write access to end-to-end encrypted folder requires token - no token sent",
        ));
    };
    let locks = locks_on_chain(connection, folder)?;
    match locks.as_slice() {
        [lock] if lock.token == token => Ok(Some(token.to_owned())),
        _ => Err(ApiError::new(StatusCode::LOCKED, "resource not locked or wrong token sent")),
    }
}

/// Changes the etag and mtime of `id` and every ancestor (Nextcloud propagates changes upwards).
pub fn touch(connection: &Connection, id: i64) -> ApiResult<()> {
    connection
        .prepare_cached(
            "WITH RECURSIVE up(id) AS (SELECT ?1 UNION ALL SELECT nodes.parent FROM nodes JOIN up ON nodes.id = up.id \
         WHERE nodes.parent IS NOT NULL) \
         UPDATE nodes SET etag = lower(hex(randomblob(16))), mtime = ?2 WHERE id IN (SELECT id FROM up)",
        )?
        .execute(params![id, now()])?;
    Ok(())
}

/// The blobs of `id`'s subtree.
fn subtree_blobs(connection: &Connection, id: i64) -> ApiResult<Vec<String>> {
    let mut statement = connection.prepare(
        "WITH RECURSIVE down(id) AS (SELECT ?1 UNION ALL SELECT nodes.id FROM nodes JOIN down ON nodes.parent = down.id) \
         SELECT blob FROM nodes WHERE id IN (SELECT id FROM down) AND blob IS NOT NULL",
    )?;
    let rows = statement.query_map(params![id], |row| row.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Deletes `id` and its subtree now; returns the blobs to remove once committed.
fn delete_subtree(connection: &Connection, id: i64) -> ApiResult<Vec<String>> {
    let blobs = subtree_blobs(connection, id)?;
    connection.prepare_cached("DELETE FROM nodes WHERE id = ?1")?.execute(params![id])?;
    Ok(blobs)
}

/// Blobs no longer named by any node (a blob may be shared by a pending move).
fn unreferenced(connection: &Connection, blobs: Vec<String>) -> ApiResult<Vec<String>> {
    let mut free = Vec::new();
    for blob in blobs {
        let used = connection
            .prepare_cached("SELECT 1 FROM nodes WHERE blob = ?1")?
            .query_row(params![blob], |_| Ok(()))
            .optional()?;
        if used.is_none() {
            free.push(blob);
        }
    }
    Ok(free)
}

/// What a PUT did.
#[derive(Debug, Clone)]
pub struct PutOutcome {
    /// The file's node (staged if written under a lock).
    pub node: Node,
    /// Whether the file is new.
    pub created: bool,
    /// Blobs to remove now that the transaction committed.
    pub freed_blobs: Vec<String>,
}

/// Stores an uploaded blob as `name` in `parent`. Under a lock (`token`), the file is staged.
pub fn put_file(
    transaction: &Transaction<'_>,
    parent: &Node,
    name: &str,
    blob: &str,
    size: u64,
    token: Option<&str>,
) -> ApiResult<PutOutcome> {
    check_segment(name)?;
    let mut freed = Vec::new();
    let existing = child(transaction, parent.id, name, None)?;
    if existing.as_ref().is_some_and(|node| node.is_dir) {
        return Err(ApiError::new(StatusCode::CONFLICT, "a folder of that name exists"));
    }
    let etag = random_hex(16);
    let id = if let Some(token) = token {
        if let Some(old) = transaction
            .prepare_cached("SELECT id, blob FROM nodes WHERE parent = ?1 AND name = ?2 AND staged_token = ?3")?
            .query_row(params![parent.id, name, token], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, Option<String>>(1)?))
            })
            .optional()?
        {
            transaction.prepare_cached("DELETE FROM nodes WHERE id = ?1")?.execute(params![old.0])?;
            freed.extend(old.1);
        }
        transaction
            .prepare_cached(
                "INSERT INTO nodes(owner, parent, name, is_dir, size, etag, mtime, blob, staged_token) \
             VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![parent.owner, parent.id, name, size as i64, etag, now(), blob, token])?;
        transaction.last_insert_rowid()
    } else if let Some(old) = &existing {
        transaction
            .prepare_cached("UPDATE nodes SET size = ?2, etag = ?3, mtime = ?4, blob = ?5 WHERE id = ?1")?
            .execute(params![old.id, size as i64, etag, now(), blob])?;
        freed.extend(old.blob.clone());
        touch(transaction, parent.id)?;
        old.id
    } else {
        transaction.prepare_cached("INSERT INTO nodes(owner, parent, name, is_dir, size, etag, mtime, blob) VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7)")?.execute(params![parent.owner, parent.id, name, size as i64, etag, now(), blob],
        )?;
        touch(transaction, parent.id)?;
        transaction.last_insert_rowid()
    };
    let node = node(transaction, id)?.expect("just written");
    let freed_blobs = unreferenced(transaction, freed)?;
    Ok(PutOutcome { node, created: existing.is_none(), freed_blobs })
}

/// Creates folder `name` in `parent` (staged under a lock).
pub fn make_folder(transaction: &Transaction<'_>, parent: &Node, name: &str, token: Option<&str>) -> ApiResult<Node> {
    check_segment(name)?;
    if let Some(existing) = child(transaction, parent.id, name, token)? {
        let status = if existing.encrypted { StatusCode::FORBIDDEN } else { StatusCode::METHOD_NOT_ALLOWED };
        return Err(ApiError::new(status, "The resource you tried to create already exists"));
    }
    transaction.prepare_cached("INSERT INTO nodes(owner, parent, name, is_dir, etag, mtime, staged_token) VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6)")?.execute(params![parent.owner, parent.id, name, random_hex(16), now(), token],
    )?;
    let id = transaction.last_insert_rowid();
    if token.is_none() {
        touch(transaction, parent.id)?;
    }
    Ok(node(transaction, id)?.expect("just written"))
}

/// Deletes `target` (at unlock, if under a lock); returns blobs to remove now.
pub fn delete(transaction: &Transaction<'_>, target: &Node, token: Option<&str>) -> ApiResult<Vec<String>> {
    if target.parent.is_none() {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "the root folder cannot be deleted"));
    }
    match token {
        Some(token) if target.staged_token.as_deref() != Some(token) => {
            transaction
                .prepare_cached("UPDATE nodes SET delete_token = ?2 WHERE id = ?1")?
                .execute(params![target.id, token])?;
            Ok(Vec::new())
        }
        _ => {
            let blobs = delete_subtree(transaction, target.id)?;
            if let Some(parent) = target.parent {
                touch(transaction, parent)?;
            }
            unreferenced(transaction, blobs)
        }
    }
}

/// Moves `source` to `name` in `destination` (at unlock, if under a lock); returns blobs to remove now.
pub fn move_node(
    transaction: &Transaction<'_>,
    source: &Node,
    destination: &Node,
    name: &str,
    overwrite: bool,
    token: Option<&str>,
) -> ApiResult<Vec<String>> {
    check_segment(name)?;
    if source.parent.is_none() {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "the root folder cannot be moved"));
    }
    if chain(transaction, destination)?.iter().any(|ancestor| ancestor.id == source.id) {
        return Err(ApiError::new(StatusCode::CONFLICT, "cannot move a folder into itself"));
    }
    let existing = child(transaction, destination.id, name, None)?;
    if let Some(existing) = &existing {
        if existing.id == source.id {
            return Ok(Vec::new());
        }
        if !overwrite {
            return Err(ApiError::new(StatusCode::PRECONDITION_FAILED, "the destination exists and Overwrite is F"));
        }
    }
    if let Some(token) = token {
        transaction
            .prepare_cached("UPDATE nodes SET move_token = ?2, move_parent = ?3, move_name = ?4 WHERE id = ?1")?
            .execute(params![source.id, token, destination.id, name])?;
        return Ok(Vec::new());
    }
    let mut freed = Vec::new();
    if let Some(existing) = existing {
        freed = delete_subtree(transaction, existing.id)?;
    }
    transaction.prepare_cached("UPDATE nodes SET parent = ?2, name = ?3 WHERE id = ?1")?.execute(params![
        source.id,
        destination.id,
        name
    ])?;
    if let Some(parent) = source.parent {
        touch(transaction, parent)?;
    }
    touch(transaction, destination.id)?;
    unreferenced(transaction, freed)
}

/// Committed metadata of a folder: (JSON, base64 signature).
pub fn metadata(connection: &Connection, node: i64) -> ApiResult<Option<(String, String)>> {
    Ok(connection
        .prepare_cached("SELECT json, signature FROM metadata WHERE node = ?1")?
        .query_row(params![node], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?)
}

/// Sets the encrypted flag of an empty folder owned by `owner`.
pub fn set_encrypted(transaction: &Transaction<'_>, owner: &str, id: i64) -> ApiResult<()> {
    let folder = owned_folder(transaction, owner, id)?;
    if folder.parent.is_none() {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "the root folder cannot be encrypted"));
    }
    let has_children = transaction
        .prepare_cached("SELECT 1 FROM nodes WHERE parent = ?1 LIMIT 1")?
        .query_row(params![id], |_| Ok(()))
        .optional()?;
    if has_children.is_some() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "Folder is not empty"));
    }
    transaction.prepare_cached("UPDATE nodes SET encrypted = 1 WHERE id = ?1")?.execute(params![id])?;
    touch(transaction, id)?;
    Ok(())
}

/// Removes the encrypted flag and the metadata of a folder.
pub fn unset_encrypted(transaction: &Transaction<'_>, owner: &str, id: i64) -> ApiResult<()> {
    owned_folder(transaction, owner, id)?;
    transaction.prepare_cached("UPDATE nodes SET encrypted = 0 WHERE id = ?1")?.execute(params![id])?;
    transaction.prepare_cached("DELETE FROM metadata WHERE node = ?1")?.execute(params![id])?;
    transaction.prepare_cached("DELETE FROM intermediate_metadata WHERE node = ?1")?.execute(params![id])?;
    touch(transaction, id)?;
    Ok(())
}

/// A folder by id that `owner` owns: 404 otherwise (other users' ids are not revealed).
pub fn owned_folder(connection: &Connection, owner: &str, id: i64) -> ApiResult<Node> {
    let node = node(connection, id)?
        .filter(|node| node.owner == owner)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "file not found"))?;
    if !node.is_dir {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "not a folder"));
    }
    Ok(node)
}

/// `POST /lock/{id}`: locks an encrypted folder with `counter` (or re-acquires with an existing token).
pub fn lock(
    transaction: &Transaction<'_>,
    owner: &str,
    id: i64,
    counter: Option<u64>,
    existing_token: Option<&str>,
    ttl_seconds: i64,
) -> ApiResult<String> {
    expire_stale_locks(transaction, ttl_seconds)?;
    let folder = owned_folder(transaction, owner, id)?;
    if folder.parent.is_none() || !folder.encrypted {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "not an end-to-end encrypted folder"));
    }
    let locks = locks_on_chain(transaction, &folder)?;
    if let Some(token) = existing_token.filter(|token| !token.is_empty()) {
        if let Some(own) = locks.iter().find(|lock| lock.node == id && lock.token == token) {
            return Ok(own.token.clone());
        }
    }
    let counter = counter
        .filter(|&counter| counter > 0)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "X-NC-E2EE-COUNTER is missing or zero"))?;
    if !locks.is_empty() {
        return Err(ApiError::new(StatusCode::LOCKED, "File already locked"));
    }
    let stored: i64 = transaction
        .prepare_cached("SELECT counter FROM nodes WHERE id = ?1")?
        .query_row(params![id], |row| row.get(0))?;
    if stored as u64 >= counter {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "The provided counter is smaller than the current counter",
        ));
    }
    let token = new_lock_token();
    transaction
        .prepare_cached("INSERT INTO locks(node, token, counter, created) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![id, token, counter as i64, now()])?;
    Ok(token)
}

/// `DELETE /lock/{id}`: commits (or with `abort`, drops) everything written under the lock. Returns blobs
/// to remove once committed.
pub fn unlock(transaction: &Transaction<'_>, owner: &str, id: i64, token: &str, abort: bool) -> ApiResult<Vec<String>> {
    let folder = owned_folder(transaction, owner, id)?;
    let lock = lock_of(transaction, id)?
        .filter(|lock| lock.token == token)
        .ok_or_else(|| ApiError::new(StatusCode::FORBIDDEN, "folder not locked or wrong token"))?;
    if folder.parent.is_some() {
        let parent = node(transaction, folder.parent.unwrap_or_default())?.expect("parents exist");
        if !locks_on_chain(transaction, &parent)?.is_empty() {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "a parent folder is locked"));
        }
    }
    if abort {
        roll_back(transaction, &lock)
    } else {
        commit(transaction, &lock)
    }
}

fn roll_back(transaction: &Transaction<'_>, lock: &Lock) -> ApiResult<Vec<String>> {
    let mut freed = Vec::new();
    let staged: Vec<i64> = {
        let mut statement = transaction.prepare("SELECT id FROM nodes WHERE staged_token = ?1 ORDER BY id")?;
        let rows = statement.query_map(params![lock.token], |row| row.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    for id in staged {
        if node(transaction, id)?.is_some() {
            freed.extend(delete_subtree(transaction, id)?);
        }
    }
    transaction
        .prepare_cached("UPDATE nodes SET delete_token = NULL WHERE delete_token = ?1")?
        .execute(params![lock.token])?;
    transaction
        .prepare_cached(
            "UPDATE nodes SET move_token = NULL, move_parent = NULL, move_name = NULL WHERE move_token = ?1",
        )?
        .execute(params![lock.token])?;
    transaction.prepare_cached("DELETE FROM intermediate_metadata WHERE token = ?1")?.execute(params![lock.token])?;
    transaction.prepare_cached("DELETE FROM locks WHERE node = ?1")?.execute(params![lock.node])?;
    unreferenced(transaction, freed)
}

fn commit(transaction: &Transaction<'_>, lock: &Lock) -> ApiResult<Vec<String>> {
    let token = &lock.token;
    let mut freed = Vec::new();
    let mut touched = vec![lock.node];
    // Moves first: they refer to live nodes.
    let moves: Vec<(i64, i64, String)> = {
        let mut statement =
            transaction.prepare("SELECT id, move_parent, move_name FROM nodes WHERE move_token = ?1 ORDER BY id")?;
        let rows = statement.query_map(params![token], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (id, parent, name) in moves {
        let Some(source) = node(transaction, id)? else { continue };
        if let Some(existing) = child(transaction, parent, &name, None)? {
            if existing.id != id {
                freed.extend(delete_subtree(transaction, existing.id)?);
            }
        }
        transaction
            .prepare_cached(
                "UPDATE nodes SET parent = ?2, name = ?3, move_token = NULL, move_parent = NULL, move_name = NULL \
             WHERE id = ?1",
            )?
            .execute(params![id, parent, name])?;
        touched.extend(source.parent);
        touched.push(parent);
    }
    let staged: Vec<i64> = {
        let mut statement = transaction.prepare("SELECT id FROM nodes WHERE staged_token = ?1 ORDER BY id")?;
        let rows = statement.query_map(params![token], |row| row.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    for id in staged {
        let Some(staged) = node(transaction, id)? else { continue };
        let parent = staged.parent.unwrap_or_default();
        if let Some(existing) = child(transaction, parent, &staged.name, None)? {
            if existing.staged_token.is_none() && existing.id != id {
                freed.extend(delete_subtree(transaction, existing.id)?);
            }
        }
        transaction.prepare_cached("UPDATE nodes SET staged_token = NULL WHERE id = ?1")?.execute(params![id])?;
        touched.push(parent);
    }
    let deleted: Vec<(i64, Option<i64>)> = {
        let mut statement = transaction.prepare("SELECT id, parent FROM nodes WHERE delete_token = ?1")?;
        let rows = statement.query_map(params![token], |row| Ok((row.get(0)?, row.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (id, parent) in deleted {
        if node(transaction, id)?.is_some() {
            freed.extend(delete_subtree(transaction, id)?);
            touched.extend(parent);
        }
    }
    let intermediate: Vec<(i64, Option<String>, Option<String>)> = {
        let mut statement =
            transaction.prepare("SELECT node, json, signature FROM intermediate_metadata WHERE token = ?1")?;
        let rows = statement.query_map(params![token], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let wrote_metadata = !intermediate.is_empty();
    for (node_id, json, signature) in intermediate {
        match (json, signature) {
            (Some(json), Some(signature)) => {
                transaction
                    .prepare_cached(
                        "INSERT INTO metadata(node, json, signature) VALUES (?1, ?2, ?3) \
                     ON CONFLICT(node) DO UPDATE SET json = excluded.json, signature = excluded.signature",
                    )?
                    .execute(params![node_id, json, signature])?;
            }
            _ => {
                transaction.prepare_cached("DELETE FROM metadata WHERE node = ?1")?.execute(params![node_id])?;
            }
        }
        touched.push(node_id);
    }
    transaction.prepare_cached("DELETE FROM intermediate_metadata WHERE token = ?1")?.execute(params![token])?;
    if wrote_metadata {
        transaction
            .prepare_cached("UPDATE nodes SET counter = ?2 WHERE id = ?1")?
            .execute(params![lock.node, lock.counter as i64])?;
    }
    transaction.prepare_cached("DELETE FROM locks WHERE node = ?1")?.execute(params![lock.node])?;
    for id in touched {
        if node(transaction, id)?.is_some() {
            touch(transaction, id)?;
        }
    }
    unreferenced(transaction, freed)
}

/// Rolls back locks older than `ttl_seconds` (Nextcloud does so after 24 hours).
pub fn expire_stale_locks(transaction: &Transaction<'_>, ttl_seconds: i64) -> ApiResult<Vec<String>> {
    let stale: Vec<Lock> = {
        // Strictly older: `created` has whole-second resolution, so a lock is never expired early.
        let mut statement = transaction.prepare("SELECT node, token, counter FROM locks WHERE created < ?1")?;
        let rows = statement.query_map(params![now() - ttl_seconds], |row| {
            Ok(Lock { node: row.get(0)?, token: row.get(1)?, counter: row.get::<_, i64>(2)? as u64 })
        })?;
        rows.collect::<Result<_, _>>()?
    };
    let mut freed = Vec::new();
    for lock in stale {
        tracing::info!(folder = lock.node, "rolling back a stale lock");
        freed.extend(roll_back(transaction, &lock)?);
    }
    Ok(freed)
}

/// Which metadata write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataWrite {
    /// POST: create (409 if present).
    Create,
    /// PUT: update (404 if absent).
    Update,
    /// DELETE.
    Delete,
}

/// Writes intermediate metadata for `id` under `token` (the folder or an ancestor must hold that lock).
pub fn write_metadata(
    transaction: &Transaction<'_>,
    owner: &str,
    id: i64,
    token: &str,
    write: MetadataWrite,
    content: Option<(&str, &str)>,
) -> ApiResult<()> {
    let folder = owned_folder(transaction, owner, id)?;
    if !in_encrypted_tree(transaction, &folder)? {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "not an end-to-end encrypted folder"));
    }
    let locks = locks_on_chain(transaction, &folder)?;
    let locked_by_token = matches!(locks.as_slice(), [lock] if lock.token == token);
    if !locked_by_token {
        let status =
            if write == MetadataWrite::Create { StatusCode::FORBIDDEN } else { StatusCode::PRECONDITION_FAILED };
        return Err(ApiError::new(status, "Folder is not locked"));
    }
    let committed = metadata(transaction, id)?.is_some();
    let intermediate: Option<Option<String>> = transaction
        .prepare_cached("SELECT json FROM intermediate_metadata WHERE node = ?1")?
        .query_row(params![id], |row| row.get(0))
        .optional()?;
    let present = match &intermediate {
        Some(json) => json.is_some(),
        None => committed,
    };
    match write {
        MetadataWrite::Create if present => {
            return Err(ApiError::new(StatusCode::CONFLICT, "Metadata-file already exists"))
        }
        MetadataWrite::Update | MetadataWrite::Delete if !present => {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "Metadata-file does not exist"))
        }
        _ => {}
    }
    let (json, signature) = match content {
        Some((json, signature)) => (Some(json), Some(signature)),
        None => (None, None),
    };
    transaction
        .prepare_cached(
            "INSERT INTO intermediate_metadata(node, token, json, signature) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT(node) DO UPDATE SET token = excluded.token, json = excluded.json, signature = excluded.signature",
        )?
        .execute(params![id, token, json, signature])?;
    Ok(())
}
