//! The embedded server's file tree: nodes in SQLite (blobs as files, see [`super::blobs`]) and the WebDAV
//! writes with Nextcloud's end-to-end encryption rules on top.
//!
//! Inside an encrypted folder every write is *staged* the way Nextcloud's `RedirectRequestPlugin` stages it,
//! by name: a PUT or MKCOL of `x` creates `x.e2e-to-save` (hidden from listings, not reachable as `x`), a
//! DELETE of `x` renames it to `x.e2e-to-delete` (still listed and readable as `x`), and a MOVE lands on
//! `dest.e2e-to-save` at once. Only unlock finalizes them, and only in folders whose metadata was written
//! under that lock ([`super::locking`]). So, as on Nextcloud, a DELETE of a blob PUT under the still open
//! lock answers 404 and removes nothing.
//!
//! Every function takes the open connection and runs inside the caller's transaction, so a crash leaves
//! either the old or the new state. Blob files are written and renamed into place before the row that names
//! them is committed, and removed only after the row is gone; files no row names are swept at start.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::error::{ApiError, ApiResult};
use super::locking::locks_on_chain;
use crate::crypto::secret::random_bytes;

/// Nextcloud's suffix of a staged creation or overwrite (`x.e2e-to-save` becomes `x` at unlock).
pub const SAVE_SUFFIX: &str = ".e2e-to-save";
/// Nextcloud's suffix of a staged deletion (`x.e2e-to-delete` is removed at unlock).
pub const DELETE_SUFFIX: &str = ".e2e-to-delete";

/// One file or folder.
#[derive(Debug, Clone)]
pub struct Node {
    /// The file id.
    pub id: i64,
    /// The owning user.
    pub owner: String,
    /// The parent folder (`None` for a user's root).
    pub parent: Option<i64>,
    /// The stored name in its parent (with a staging suffix while staged).
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
}

impl Node {
    /// The name clients see: a staged deletion is listed under its original name.
    pub fn listed_name(&self) -> &str {
        self.name.strip_suffix(DELETE_SUFFIX).unwrap_or(&self.name)
    }

    /// A staged creation or overwrite (hidden until unlock).
    pub fn is_staged_save(&self) -> bool {
        self.name.ends_with(SAVE_SUFFIX)
    }
}

const NODE_COLUMNS: &str = "id, owner, parent, name, is_dir, size, etag, mtime, encrypted, blob";

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

/// Checks one path segment of a request: not empty, not `.`/`..`, no NUL or slash, not a reserved name.
pub fn check_segment(segment: &str) -> ApiResult<()> {
    if segment.is_empty() || segment == "." || segment == ".." || segment.contains(['\0', '/', '\\']) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid path segment"));
    }
    if segment.len() > 250 {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "name too long"));
    }
    if segment.ends_with(SAVE_SUFFIX) || segment.ends_with(DELETE_SUFFIX) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "Not allowed to create file with reserved suffix!"));
    }
    Ok(())
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

/// The child stored exactly as `name` in `parent`.
pub fn child(connection: &Connection, parent: i64, name: &str) -> ApiResult<Option<Node>> {
    let sql = format!("SELECT {NODE_COLUMNS} FROM nodes WHERE parent = ?1 AND name = ?2");
    Ok(connection.prepare_cached(&sql)?.query_row(params![parent, name], node_from_row).optional()?)
}

/// Every stored child of a folder, staged ones included, by name.
pub fn stored_children(connection: &Connection, parent: i64) -> ApiResult<Vec<Node>> {
    let sql = format!("SELECT {NODE_COLUMNS} FROM nodes WHERE parent = ?1 ORDER BY name");
    let mut statement = connection.prepare_cached(&sql)?;
    let rows = statement.query_map(params![parent], node_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The children a listing shows: staged creations hidden, staged deletions under their original name (unless
/// that name exists again).
pub fn children(connection: &Connection, parent: i64) -> ApiResult<Vec<Node>> {
    let stored = stored_children(connection, parent)?;
    let live = |name: &str| stored.iter().any(|node| node.name == name);
    let mut shown: Vec<Node> = stored
        .iter()
        .filter(|node| !node.is_staged_save())
        .filter(|node| !node.name.ends_with(DELETE_SUFFIX) || !live(node.listed_name()))
        .cloned()
        .collect();
    shown.sort_by(|left, right| left.listed_name().cmp(right.listed_name()));
    Ok(shown)
}

/// Walks `segments` from `user`'s root by stored names; `None` if a segment does not exist (a staged
/// creation is not reachable by its final name, as on Nextcloud). A first segment that is not a child of the
/// root may name a folder shared with `user` (its mount name, see [`super::shares`]).
pub fn resolve(connection: &Connection, user: &str, segments: &[String]) -> ApiResult<Option<Node>> {
    let mut current = root(connection, user)?;
    for (index, segment) in segments.iter().enumerate() {
        if !current.is_dir {
            return Ok(None);
        }
        match child(connection, current.id, segment)? {
            Some(next) => current = next,
            None if index == 0 => match super::shares::mounted(connection, user, segment)? {
                Some(shared) => current = shared,
                None => return Ok(None),
            },
            None => return Ok(None),
        }
    }
    Ok(Some(current))
}

/// Like [`resolve`], for reads: a last segment whose only copy is a staged deletion finds that copy
/// (Nextcloud's GET/HEAD fallback to `x.e2e-to-delete`).
pub fn resolve_for_read(connection: &Connection, owner: &str, segments: &[String]) -> ApiResult<Option<Node>> {
    if let Some(found) = resolve(connection, owner, segments)? {
        return Ok(Some(found));
    }
    let Some((last, parents)) = segments.split_last() else { return Ok(None) };
    match resolve(connection, owner, parents)? {
        Some(parent) if parent.is_dir => child(connection, parent.id, &format!("{last}{DELETE_SUFFIX}")),
        _ => Ok(None),
    }
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
    let mut statement = connection.prepare_cached(
        "WITH RECURSIVE down(id) AS (SELECT ?1 UNION ALL SELECT nodes.id FROM nodes JOIN down ON nodes.parent = down.id) \
         SELECT blob FROM nodes WHERE id IN (SELECT id FROM down) AND blob IS NOT NULL",
    )?;
    let rows = statement.query_map(params![id], |row| row.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Deletes `id` and its subtree now; returns the blobs to remove once committed.
pub(crate) fn delete_subtree(connection: &Connection, id: i64) -> ApiResult<Vec<String>> {
    let blobs = subtree_blobs(connection, id)?;
    connection.prepare_cached("DELETE FROM nodes WHERE id = ?1")?.execute(params![id])?;
    Ok(blobs)
}

/// Renames node `id` to `name` in `parent`, first deleting whatever is stored under that name; returns the
/// blobs freed by the replacement.
pub(crate) fn place(connection: &Connection, id: i64, parent: i64, name: &str) -> ApiResult<Vec<String>> {
    let mut freed = Vec::new();
    if let Some(existing) = child(connection, parent, name)? {
        if existing.id != id {
            freed = delete_subtree(connection, existing.id)?;
        }
    }
    connection
        .prepare_cached("UPDATE nodes SET parent = ?2, name = ?3 WHERE id = ?1")?
        .execute(params![id, parent, name])?;
    Ok(freed)
}

/// Blobs no longer named by any node.
pub(crate) fn unreferenced(connection: &Connection, blobs: Vec<String>) -> ApiResult<Vec<String>> {
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
    /// The file's node (stored as `name.e2e-to-save` if written under a lock).
    pub node: Node,
    /// Whether the stored file is new.
    pub created: bool,
    /// Blobs to remove now that the transaction committed.
    pub freed_blobs: Vec<String>,
}

/// Stores an uploaded blob as `name` in `parent`. Under a lock (`staged`), it is stored as
/// `name.e2e-to-save`, replacing an earlier staged upload of that name.
pub fn put_file(
    transaction: &Transaction<'_>,
    parent: &Node,
    name: &str,
    blob: &str,
    size: u64,
    staged: bool,
) -> ApiResult<PutOutcome> {
    check_segment(name)?;
    let stored_name = if staged { format!("{name}{SAVE_SUFFIX}") } else { name.to_owned() };
    let existing = child(transaction, parent.id, &stored_name)?;
    if existing.as_ref().is_some_and(|node| node.is_dir) {
        return Err(ApiError::new(StatusCode::CONFLICT, "a folder of that name exists"));
    }
    let etag = random_hex(16);
    let mut freed = Vec::new();
    let id = if let Some(old) = &existing {
        transaction
            .prepare_cached("UPDATE nodes SET size = ?2, etag = ?3, mtime = ?4, blob = ?5 WHERE id = ?1")?
            .execute(params![old.id, size as i64, etag, now(), blob])?;
        freed.extend(old.blob.clone());
        old.id
    } else {
        transaction
            .prepare_cached(
                "INSERT INTO nodes(owner, parent, name, is_dir, size, etag, mtime, blob) \
                 VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![parent.owner, parent.id, stored_name, size as i64, etag, now(), blob])?;
        transaction.last_insert_rowid()
    };
    if !staged {
        touch(transaction, parent.id)?;
    }
    let node = node(transaction, id)?.expect("just written");
    let freed_blobs = unreferenced(transaction, freed)?;
    Ok(PutOutcome { node, created: existing.is_none(), freed_blobs })
}

/// Creates folder `name` in `parent` (as `name.e2e-to-save` under a lock).
pub fn make_folder(transaction: &Transaction<'_>, parent: &Node, name: &str, staged: bool) -> ApiResult<Node> {
    check_segment(name)?;
    if let Some(existing) = child(transaction, parent.id, name)? {
        let status = if existing.encrypted { StatusCode::FORBIDDEN } else { StatusCode::METHOD_NOT_ALLOWED };
        return Err(ApiError::new(status, "The resource you tried to create already exists"));
    }
    let stored_name = if staged { format!("{name}{SAVE_SUFFIX}") } else { name.to_owned() };
    if child(transaction, parent.id, &stored_name)?.is_some() {
        return Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "The resource you tried to create already exists"));
    }
    transaction
        .prepare_cached("INSERT INTO nodes(owner, parent, name, is_dir, etag, mtime) VALUES (?1, ?2, ?3, 1, ?4, ?5)")?
        .execute(params![parent.owner, parent.id, stored_name, random_hex(16), now()])?;
    let id = transaction.last_insert_rowid();
    if !staged {
        touch(transaction, parent.id)?;
    }
    Ok(node(transaction, id)?.expect("just written"))
}

/// Deletes `target`; under a lock (`staged`) it only becomes `name.e2e-to-delete`, removed at unlock.
/// Returns blobs to remove now.
pub fn delete(transaction: &Transaction<'_>, target: &Node, staged: bool) -> ApiResult<Vec<String>> {
    let Some(parent) = target.parent else {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "the root folder cannot be deleted"));
    };
    if staged {
        let name = format!("{}{DELETE_SUFFIX}", target.name);
        let freed = place(transaction, target.id, parent, &name)?;
        return unreferenced(transaction, freed);
    }
    let blobs = delete_subtree(transaction, target.id)?;
    touch(transaction, parent)?;
    unreferenced(transaction, blobs)
}

/// Moves `source` to `name` in `destination`; under a lock (`staged`) it lands on `name.e2e-to-save` at once.
/// Returns blobs to remove now.
pub fn move_node(
    transaction: &Transaction<'_>,
    source: &Node,
    destination: &Node,
    name: &str,
    overwrite: bool,
    staged: bool,
) -> ApiResult<Vec<String>> {
    check_segment(name)?;
    let Some(source_parent) = source.parent else {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "the root folder cannot be moved"));
    };
    if chain(transaction, destination)?.iter().any(|ancestor| ancestor.id == source.id) {
        return Err(ApiError::new(StatusCode::CONFLICT, "cannot move a folder into itself"));
    }
    let stored_name = if staged { format!("{name}{SAVE_SUFFIX}") } else { name.to_owned() };
    if let Some(existing) = child(transaction, destination.id, &stored_name)? {
        if existing.id == source.id {
            return Ok(Vec::new());
        }
        if !overwrite {
            return Err(ApiError::new(StatusCode::PRECONDITION_FAILED, "the destination exists and Overwrite is F"));
        }
    }
    let freed = place(transaction, source.id, destination.id, &stored_name)?;
    if !staged {
        touch(transaction, source_parent)?;
        touch(transaction, destination.id)?;
    }
    unreferenced(transaction, freed)
}

/// Sets the encrypted flag of an empty folder owned by `owner`.
pub fn set_encrypted(transaction: &Transaction<'_>, owner: &str, id: i64) -> ApiResult<()> {
    let folder = owned_folder(transaction, owner, id, Access::Write)?;
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
    owned_folder(transaction, owner, id, Access::Write)?;
    transaction.prepare_cached("UPDATE nodes SET encrypted = 0 WHERE id = ?1")?.execute(params![id])?;
    transaction.prepare_cached("DELETE FROM metadata WHERE node = ?1")?.execute(params![id])?;
    transaction.prepare_cached("DELETE FROM intermediate_metadata WHERE node = ?1")?.execute(params![id])?;
    touch(transaction, id)?;
    Ok(())
}

/// What a request wants to do with a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read it (listing, download, metadata).
    Read,
    /// Change it or its contents (uploads, deletes, locks, metadata writes).
    Write,
    /// Add a file drop to it (a share with the create permission: new files and `filedrop` entries only).
    Drop,
}

/// Whether `user` may `access` `node`: their own, or inside a folder shared with them with the permission
/// the access needs (read for reading; update, create or delete for writing).
pub fn may(connection: &Connection, user: &str, node: &Node, access: Access) -> ApiResult<bool> {
    if node.owner == user {
        return Ok(true);
    }
    let Some(permissions) = super::shares::permissions_on_chain(connection, user, node)? else { return Ok(false) };
    let read = permissions & super::shares::PERMISSION_READ != 0;
    Ok(match access {
        Access::Read => read,
        Access::Write => read && permissions & super::shares::PERMISSION_WRITE_ANY != 0,
        Access::Drop => permissions & super::shares::PERMISSION_CREATE != 0,
    })
}

/// Whether a PUT of `name` into `folder` without a lock token is a file-drop upload `user` may make: a
/// share with the create permission but no write permission, straight into the shared folder, a new name.
/// Such an upload is stored at once (not staged); the uploader then adds its `filedrop` metadata entry.
pub fn is_drop_upload(
    connection: &Connection,
    user: &str,
    folder: &Node,
    name: &str,
    token: Option<&str>,
) -> ApiResult<bool> {
    Ok(token.is_none()
        && !may(connection, user, folder, Access::Write)?
        && may(connection, user, folder, Access::Drop)?
        && super::shares::is_mount_of(connection, user, folder)?
        && child(connection, folder.id, name)?.is_none())
}

/// Refuses a write by `user` into `node` without write permission (403, as Nextcloud's read-only shares).
pub fn check_may_write(connection: &Connection, user: &str, node: &Node) -> ApiResult<()> {
    if may(connection, user, node, Access::Write)? {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::FORBIDDEN, "the share does not allow writing"))
    }
}

/// A folder by id that `user` may `access` (own, or shared with them; a file-drop share may read the
/// metadata, for the members' certificates): 404 otherwise (other users' ids are
/// not revealed), 403 when shared without the permission the access needs.
pub fn owned_folder(connection: &Connection, user: &str, id: i64, access: Access) -> ApiResult<Node> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "file not found");
    let node = node(connection, id)?.ok_or_else(not_found)?;
    if !may(connection, user, &node, Access::Read)? && !may(connection, user, &node, Access::Drop)? {
        return Err(not_found());
    }
    // A file-drop share reads the shared folder's own metadata (its members' certificates), nothing else.
    let drop_reads_its_folder = access == Access::Read
        && may(connection, user, &node, Access::Drop)?
        && super::shares::is_mount_of(connection, user, &node)?;
    if !may(connection, user, &node, access)? && !drop_reads_its_folder {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "the share does not allow this"));
    }
    if !node.is_dir {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "not a folder"));
    }
    Ok(node)
}
