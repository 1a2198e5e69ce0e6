//! Locks, counters and metadata of the embedded server, with Nextcloud's rules (SERVER-BEHAVIOUR.md of the
//! interop notes, and the end_to_end_encryption app's `LockingController`, `FileService`, `MetaDataStorage`):
//!
//! - one lock per chain; a lock takes a counter that must exceed the stored one (412) and that becomes the
//!   stored counter only if the locked folder's own metadata is written under the lock;
//! - metadata written under a lock is intermediate until unlock; a folder whose metadata was written under a
//!   token is *touched* by it;
//! - unlock finalizes the staged changes ([`super::tree`]) of the touched folders only, deepest first: every
//!   `*.e2e-to-save` in such a folder takes its final name (replacing what is there), every
//!   `*.e2e-to-delete` goes, whichever lock staged them. Staged changes in other folders stay pending: a
//!   staged upload stays hidden, a staged deletion stays listed. `abort` reverts the touched folders the same
//!   way (staged uploads removed, staged deletions restored) and drops the intermediate metadata;
//! - a lock older than the lock TTL is rolled back like an abort of the locked folder.

use axum::http::StatusCode;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::error::{ApiError, ApiResult};
use super::tree::{
    self, chain, delete_subtree, in_encrypted_tree, now, owned_folder, place, stored_children, touch, unreferenced,
    Access, Node, DELETE_SUFFIX, SAVE_SUFFIX,
};
use crate::crypto::secret::random_bytes;

/// A lock on a folder.
#[derive(Debug, Clone)]
pub struct Lock {
    /// The locked folder.
    pub node: i64,
    /// The token.
    pub token: String,
    /// The counter sent with the lock (committed if the locked folder's metadata is written under it).
    pub counter: u64,
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

/// Committed metadata of a folder: (JSON, base64 signature).
pub fn metadata(connection: &Connection, node: i64) -> ApiResult<Option<(String, String)>> {
    Ok(connection
        .prepare_cached("SELECT json, signature FROM metadata WHERE node = ?1")?
        .query_row(params![node], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?)
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
    let folder = owned_folder(transaction, owner, id, Access::Write)?;
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

/// `DELETE /lock/{id}`: finalizes (or with `abort`, reverts) the staged changes of the folders whose metadata
/// was written under the lock, and commits (or drops) that metadata. Returns blobs to remove once committed.
pub fn unlock(transaction: &Transaction<'_>, owner: &str, id: i64, token: &str, abort: bool) -> ApiResult<Vec<String>> {
    let folder = owned_folder(transaction, owner, id, Access::Write)?;
    let lock = lock_of(transaction, id)?
        .filter(|lock| lock.token == token)
        .ok_or_else(|| ApiError::new(StatusCode::FORBIDDEN, "folder not locked or wrong token"))?;
    if let Some(parent) = folder.parent {
        let parent = tree::node(transaction, parent)?.expect("parents exist");
        if !locks_on_chain(transaction, &parent)?.is_empty() {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "a parent folder is locked"));
        }
    }
    let mut freed = Vec::new();
    for folder in touched_folders(transaction, token)? {
        if abort {
            freed.extend(revert(transaction, folder.id)?);
        } else {
            freed.extend(finalize(transaction, folder.id)?);
            commit_metadata(transaction, &folder, &lock)?;
        }
    }
    transaction.prepare_cached("DELETE FROM intermediate_metadata WHERE token = ?1")?.execute(params![token])?;
    transaction.prepare_cached("DELETE FROM locks WHERE node = ?1")?.execute(params![lock.node])?;
    unreferenced(transaction, freed)
}

/// The folders whose metadata was written under `token`, deepest first (Nextcloud sorts them so).
fn touched_folders(connection: &Connection, token: &str) -> ApiResult<Vec<Node>> {
    let ids: Vec<i64> = {
        let mut statement = connection.prepare_cached("SELECT node FROM intermediate_metadata WHERE token = ?1")?;
        let rows = statement.query_map(params![token], |row| row.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut folders = Vec::new();
    for id in ids {
        if let Some(folder) = tree::node(connection, id)? {
            let depth = chain(connection, &folder)?.len();
            folders.push((depth, folder));
        }
    }
    folders.sort_by_key(|(depth, _)| std::cmp::Reverse(*depth));
    Ok(folders.into_iter().map(|(_, folder)| folder).collect())
}

/// Nextcloud's `finalizeChanges` of one folder: staged creations take their names, staged deletions go.
fn finalize(transaction: &Transaction<'_>, folder: i64) -> ApiResult<Vec<String>> {
    let mut freed = Vec::new();
    let staged = stored_children(transaction, folder)?;
    for node in staged.iter().filter(|node| node.is_staged_save()) {
        let name = node.name.strip_suffix(SAVE_SUFFIX).unwrap_or(&node.name);
        freed.extend(place(transaction, node.id, folder, name)?);
    }
    for node in staged.iter().filter(|node| node.name.ends_with(DELETE_SUFFIX)) {
        if tree::node(transaction, node.id)?.is_some() {
            freed.extend(delete_subtree(transaction, node.id)?);
        }
    }
    touch(transaction, folder)?;
    Ok(freed)
}

/// Nextcloud's `revertChanges` of one folder: staged creations removed, staged deletions restored.
fn revert(transaction: &Transaction<'_>, folder: i64) -> ApiResult<Vec<String>> {
    let mut freed = Vec::new();
    for node in stored_children(transaction, folder)? {
        if node.is_staged_save() {
            freed.extend(delete_subtree(transaction, node.id)?);
        } else if let Some(name) = node.name.strip_suffix(DELETE_SUFFIX) {
            freed.extend(place(transaction, node.id, folder, name)?);
        }
    }
    Ok(freed)
}

/// Makes `folder`'s intermediate metadata (written under `lock`) its metadata; the lock's counter becomes the
/// stored counter if `folder` is the locked folder.
fn commit_metadata(transaction: &Transaction<'_>, folder: &Node, lock: &Lock) -> ApiResult<()> {
    let intermediate: Option<(Option<String>, Option<String>)> = transaction
        .prepare_cached("SELECT json, signature FROM intermediate_metadata WHERE node = ?1 AND token = ?2")?
        .query_row(params![folder.id, lock.token], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    match intermediate {
        Some((Some(json), Some(signature))) => {
            transaction
                .prepare_cached(
                    "INSERT INTO metadata(node, json, signature) VALUES (?1, ?2, ?3) \
                     ON CONFLICT(node) DO UPDATE SET json = excluded.json, signature = excluded.signature",
                )?
                .execute(params![folder.id, json, signature])?;
        }
        Some(_) => {
            transaction.prepare_cached("DELETE FROM metadata WHERE node = ?1")?.execute(params![folder.id])?;
        }
        None => return Ok(()),
    }
    if folder.id == lock.node {
        transaction
            .prepare_cached("UPDATE nodes SET counter = ?2 WHERE id = ?1")?
            .execute(params![folder.id, lock.counter as i64])?;
    }
    Ok(())
}

/// Rolls back locks older than `ttl_seconds` (Nextcloud does so after 24 hours): the locked folder's staged
/// changes are reverted and the lock's intermediate metadata dropped.
pub fn expire_stale_locks(transaction: &Transaction<'_>, ttl_seconds: i64) -> ApiResult<Vec<String>> {
    let stale: Vec<Lock> = {
        // Strictly older: `created` has whole-second resolution, so a lock is never expired early.
        let mut statement = transaction.prepare_cached("SELECT node, token, counter FROM locks WHERE created < ?1")?;
        let rows = statement.query_map(params![now() - ttl_seconds], |row| {
            Ok(Lock { node: row.get(0)?, token: row.get(1)?, counter: row.get::<_, i64>(2)? as u64 })
        })?;
        rows.collect::<Result<_, _>>()?
    };
    let mut freed = Vec::new();
    for lock in stale {
        tracing::info!(folder = lock.node, "rolling back a stale lock");
        freed.extend(revert(transaction, lock.node)?);
        transaction
            .prepare_cached("DELETE FROM intermediate_metadata WHERE token = ?1")?
            .execute(params![lock.token])?;
        transaction.prepare_cached("DELETE FROM locks WHERE node = ?1")?.execute(params![lock.node])?;
    }
    unreferenced(transaction, freed)
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

/// Writes intermediate metadata for `id` under `token` (the folder or an ancestor must hold that lock); the
/// folder becomes touched by `token`.
pub fn write_metadata(
    transaction: &Transaction<'_>,
    owner: &str,
    id: i64,
    token: &str,
    write: MetadataWrite,
    content: Option<(&str, &str)>,
) -> ApiResult<()> {
    let folder = owned_folder(transaction, owner, id, Access::Write)?;
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
    // As Nextcloud's MetaDataStorage: a create needs no metadata and no intermediate one; an update or delete
    // needs committed metadata (so metadata created under this lock cannot be updated under it: 404).
    match write {
        MetadataWrite::Create if committed || intermediate.is_some_and(|json| json.is_some()) => {
            return Err(ApiError::new(StatusCode::CONFLICT, "Metadata-file already exists"))
        }
        MetadataWrite::Update | MetadataWrite::Delete if !committed => {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "Meta-data file missing"))
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

/// Merges file-drop `entries` (server name to entry) into the committed metadata of top folder `id`: refused
/// while the folder is locked (412), for a name already dropped (409), and for names that are not 32 hex
/// digits (400). Returns the merged `filedrop` object.
pub fn add_filedrop(
    transaction: &Transaction<'_>,
    user: &str,
    id: i64,
    entries: serde_json::Map<String, serde_json::Value>,
) -> ApiResult<serde_json::Value> {
    let folder = owned_folder(transaction, user, id, Access::Drop)?;
    if !folder.encrypted {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "not an end-to-end encrypted folder"));
    }
    if !locks_on_chain(transaction, &folder)?.is_empty() {
        return Err(ApiError::new(StatusCode::PRECONDITION_FAILED, "Folder is locked"));
    }
    let (json, _) = metadata(transaction, id)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "Could not find metadata for this folder"))?;
    let mut document: serde_json::Value = serde_json::from_str(&json)
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "stored metadata is not JSON"))?;
    let object = document
        .as_object_mut()
        .ok_or_else(|| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "stored metadata is not an object"))?;
    let filedrop = object.entry("filedrop").or_insert_with(|| serde_json::Value::Object(Default::default()));
    let filedrop = filedrop
        .as_object_mut()
        .ok_or_else(|| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "stored filedrop is not an object"))?;
    for (name, entry) in entries {
        if name.len() != 32 || !name.bytes().all(|byte| byte.is_ascii_hexdigit()) || !entry.is_object() {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "filedrop entries are objects under 32-hex names"));
        }
        if filedrop.contains_key(&name) {
            return Err(ApiError::new(StatusCode::CONFLICT, "a file drop of that name exists"));
        }
        filedrop.insert(name, entry);
    }
    let merged = serde_json::Value::Object(filedrop.clone());
    transaction
        .prepare_cached("UPDATE metadata SET json = ?2 WHERE node = ?1")?
        .execute(params![id, document.to_string()])?;
    touch(transaction, id)?;
    Ok(merged)
}
