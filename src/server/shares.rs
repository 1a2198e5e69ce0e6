//! User shares: Nextcloud's OCS share API (`/ocs/v2.php/apps/files_sharing/api/v1/shares`, share type 0)
//! and what a share does to the recipient's tree.
//!
//! A shared folder appears in the recipient's root under its name (`name (2)` and so on when that name is
//! taken), with the same file id as in the owner's tree, as on Nextcloud. Everything below it is reached
//! through [`super::tree::resolve`], and every read and write checks the share's permissions
//! ([`super::tree::may`]): a read-only share refuses uploads, deletes, locks and metadata writes with 403.
//! The recipient cannot delete or move the mount itself. Files a recipient creates belong to the owner.
//!
//! The end-to-end encryption of a shared folder is the clients' business: the server only stores the
//! metadata whose `users` list says who holds the key.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, post};
use axum::Router;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::ocs::{body_parameters, AuthenticatedUser, Ocs};
use super::tree::{self, Node};
use super::Shared;

/// Base path of the share API.
pub const OCS_SHARES: &str = "/ocs/v2.php/apps/files_sharing/api/v1/shares";

/// Nextcloud's permission bit: read.
pub const PERMISSION_READ: i64 = 1;
/// Nextcloud's permission bit: create (alone, with no read: a file drop).
pub const PERMISSION_CREATE: i64 = 4;
/// Any of update (2), create (4) and delete (8): with read, the share allows writing.
pub const PERMISSION_WRITE_ANY: i64 = 2 | 4 | 8;
/// All of read, update, create, delete and share.
pub const PERMISSION_ALL: i64 = 31;

/// One share as stored.
#[derive(Debug, Clone)]
pub struct Share {
    /// The share id.
    pub id: i64,
    /// Who shared.
    pub owner: String,
    /// The shared node.
    pub node: i64,
    /// Who it is shared with.
    pub recipient: String,
    /// Nextcloud permission bits.
    pub permissions: i64,
    /// The name in the recipient's root.
    pub mount_name: String,
    /// When it was created (seconds since the epoch).
    pub created: i64,
}

const SHARE_COLUMNS: &str = "id, owner, node, recipient, permissions, mount_name, created";

fn share_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Share> {
    Ok(Share {
        id: row.get(0)?,
        owner: row.get(1)?,
        node: row.get(2)?,
        recipient: row.get(3)?,
        permissions: row.get(4)?,
        mount_name: row.get(5)?,
        created: row.get(6)?,
    })
}

/// The folder shared with `user` under `mount_name` in their root.
pub fn mounted(connection: &Connection, user: &str, mount_name: &str) -> ApiResult<Option<Node>> {
    let node: Option<i64> = connection
        .prepare_cached("SELECT node FROM shares WHERE recipient = ?1 AND mount_name = ?2")?
        .query_row(params![user, mount_name], |row| row.get(0))
        .optional()?;
    match node {
        Some(id) => tree::node(connection, id),
        None => Ok(None),
    }
}

/// The folders shared with `user`, each with its mount name as `name`, for listing `user`'s root.
pub fn mounts(connection: &Connection, user: &str) -> ApiResult<Vec<Node>> {
    let mut nodes = Vec::new();
    for share in shares_where(connection, "recipient = ?1", params![user])? {
        if let Some(mut node) = tree::node(connection, share.node)? {
            node.name = share.mount_name;
            nodes.push(node);
        }
    }
    Ok(nodes)
}

/// The permissions of the share with `user` covering `node` (the node or an ancestor), if any.
pub fn permissions_on_chain(connection: &Connection, user: &str, node: &Node) -> ApiResult<Option<i64>> {
    for ancestor in tree::chain(connection, node)? {
        let permissions: Option<i64> = connection
            .prepare_cached("SELECT permissions FROM shares WHERE recipient = ?1 AND node = ?2")?
            .query_row(params![user, ancestor.id], |row| row.get(0))
            .optional()?;
        if permissions.is_some() {
            return Ok(permissions);
        }
    }
    Ok(None)
}

/// Whether `node` is a share's mount point for `user` (not theirs to delete or move).
pub fn is_mount_of(connection: &Connection, user: &str, node: &Node) -> ApiResult<bool> {
    if node.owner == user {
        return Ok(false);
    }
    Ok(connection
        .prepare_cached("SELECT 1 FROM shares WHERE recipient = ?1 AND node = ?2")?
        .query_row(params![user, node.id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// The routes of the share API.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route(OCS_SHARES, post(create_share).get(list_shares))
        .route(&format!("{OCS_SHARES}/{{id}}"), delete(delete_share).get(get_share))
}

/// A share as Nextcloud's API describes it (the fields clients read).
fn describe(connection: &Connection, share: &Share) -> ApiResult<Value> {
    let node = tree::node(connection, share.node)?;
    let path = match &node {
        Some(node) => owner_path(connection, node)?,
        None => String::new(),
    };
    Ok(json!({
        "id": share.id.to_string(),
        "share_type": 0,
        "uid_owner": share.owner,
        "displayname_owner": share.owner,
        "uid_file_owner": share.owner,
        "permissions": share.permissions,
        "stime": share.created,
        "path": path,
        "item_type": if node.as_ref().is_some_and(|node| node.is_dir) { "folder" } else { "file" },
        "mimetype": "httpd/unix-directory",
        "item_source": share.node,
        "file_source": share.node,
        "file_target": format!("/{}", share.mount_name),
        "share_with": share.recipient,
        "share_with_displayname": share.recipient,
    }))
}

/// The path of `node` in its owner's tree, `/a/b`.
fn owner_path(connection: &Connection, node: &Node) -> ApiResult<String> {
    let mut names: Vec<String> =
        tree::chain(connection, node)?.iter().filter(|node| node.parent.is_some()).map(|n| n.name.clone()).collect();
    names.reverse();
    Ok(format!("/{}", names.join("/")))
}

fn path_segments(path: &str) -> Vec<String> {
    path.split('/').filter(|segment| !segment.is_empty()).map(str::to_owned).collect()
}

/// A mount name for `wanted` that is free in `recipient`'s root: `wanted`, else `wanted (2)`, ...
fn free_mount_name(connection: &Connection, recipient: &str, wanted: &str) -> ApiResult<String> {
    let root = tree::root(connection, recipient)?;
    for attempt in 1..1000 {
        let name = if attempt == 1 { wanted.to_owned() } else { format!("{wanted} ({attempt})") };
        if tree::child(connection, root.id, &name)?.is_none() && mounted(connection, recipient, &name)?.is_none() {
            return Ok(name);
        }
    }
    Err(ApiError::new(StatusCode::CONFLICT, "no free name for the share in the recipient's root"))
}

async fn create_share(
    State(state): State<Shared>,
    AuthenticatedUser(user): AuthenticatedUser,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Ocs, Ocs> {
    let parameters = body_parameters(&headers, &body)?;
    let path = parameters
        .get("path")
        .ok_or_else(|| Ocs::error(StatusCode::NOT_FOUND, "Please specify a file or folder path"))?;
    let share_type = parameters.get("shareType").map(String::as_str).unwrap_or("0");
    if share_type != "0" {
        return Err(Ocs::error(
            StatusCode::BAD_REQUEST,
            "only user shares (shareType 0) are supported by cloakfs serve",
        ));
    }
    let recipient = parameters
        .get("shareWith")
        .filter(|name| !name.is_empty())
        .ok_or_else(|| Ocs::error(StatusCode::NOT_FOUND, "Please specify a valid user"))?;
    let permissions = match parameters.get("permissions") {
        Some(text) => text.parse::<i64>().map_err(|_| Ocs::error(StatusCode::BAD_REQUEST, "invalid permissions"))?,
        None => PERMISSION_ALL,
    };
    let file_drop = permissions == PERMISSION_CREATE;
    if (permissions & PERMISSION_READ == 0 && !file_drop) || !(1..=PERMISSION_ALL).contains(&permissions) {
        return Err(Ocs::error(StatusCode::BAD_REQUEST, "invalid permissions"));
    }
    if *recipient == user {
        return Err(Ocs::error(StatusCode::FORBIDDEN, "Sharing failed, because you can not share with yourself"));
    }
    if !state.store.user_exists(recipient)? {
        return Err(Ocs::error(StatusCode::NOT_FOUND, "Please specify a valid user"));
    }
    let mut connection = state.store.lock();
    let transaction = connection.transaction().map_err(ApiError::from)?;
    let segments = path_segments(path);
    let node = tree::resolve(&transaction, &user, &segments)?
        .filter(|node| node.parent.is_some())
        .ok_or_else(|| Ocs::error(StatusCode::NOT_FOUND, "Wrong path, file/folder does not exist"))?;
    if node.owner != user {
        return Err(Ocs::error(StatusCode::FORBIDDEN, "re-sharing a share is not supported by cloakfs serve"));
    }
    let existing: Option<i64> = transaction
        .prepare_cached("SELECT id FROM shares WHERE node = ?1 AND recipient = ?2")
        .map_err(ApiError::from)?
        .query_row(params![node.id, recipient], |row| row.get(0))
        .optional()
        .map_err(ApiError::from)?;
    if existing.is_some() {
        return Err(Ocs::error(
            StatusCode::FORBIDDEN,
            format!("Sharing {path} failed, because this item is already shared with user {recipient}"),
        ));
    }
    let mount_name = free_mount_name(&transaction, recipient, node.listed_name())?;
    transaction
        .prepare_cached(
            "INSERT INTO shares(owner, node, recipient, permissions, mount_name, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(ApiError::from)?
        .execute(params![user, node.id, recipient, permissions, mount_name, tree::now()])
        .map_err(ApiError::from)?;
    let id = transaction.last_insert_rowid();
    let share = share_by_id(&transaction, id)?.ok_or_else(|| Ocs::error(StatusCode::INTERNAL_SERVER_ERROR, "lost"))?;
    let described = describe(&transaction, &share)?;
    transaction.commit().map_err(ApiError::from)?;
    tracing::info!(share = id, file_id = node.id, permissions, "shared a folder");
    Ok(Ocs::ok(described))
}

fn share_by_id(connection: &Connection, id: i64) -> ApiResult<Option<Share>> {
    Ok(connection
        .prepare_cached(&format!("SELECT {SHARE_COLUMNS} FROM shares WHERE id = ?1"))?
        .query_row(params![id], share_from_row)
        .optional()?)
}

async fn list_shares(
    State(state): State<Shared>,
    AuthenticatedUser(user): AuthenticatedUser,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Ocs, Ocs> {
    let connection = state.store.lock();
    let shared_with_me = query.get("shared_with_me").is_some_and(|value| value == "true");
    let shares = if shared_with_me {
        shares_where(&connection, "recipient = ?1", params![user])?
    } else if let Some(path) = query.get("path") {
        let node = tree::resolve(&connection, &user, &path_segments(path))?
            .ok_or_else(|| Ocs::error(StatusCode::NOT_FOUND, "Wrong path, file/folder does not exist"))?;
        shares_where(&connection, "node = ?1 AND owner = ?2", params![node.id, user])?
    } else {
        shares_where(&connection, "owner = ?1", params![user])?
    };
    let described: Vec<Value> = shares.iter().map(|share| describe(&connection, share)).collect::<ApiResult<_>>()?;
    Ok(Ocs::ok(Value::Array(described)))
}

/// The shares matching `condition` (SQL over the share columns), oldest first.
fn shares_where(
    connection: &Connection,
    condition: &str,
    parameters: &[&dyn rusqlite::ToSql],
) -> ApiResult<Vec<Share>> {
    let mut statement =
        connection.prepare_cached(&format!("SELECT {SHARE_COLUMNS} FROM shares WHERE {condition} ORDER BY id"))?;
    let rows = statement.query_map(parameters, share_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn visible_share(connection: &Connection, user: &str, id: &str) -> Result<Share, Ocs> {
    let not_found = || Ocs::error(StatusCode::NOT_FOUND, "Wrong share ID, share does not exist");
    let id = id.parse::<i64>().map_err(|_| not_found())?;
    share_by_id(connection, id)?.filter(|share| share.owner == user || share.recipient == user).ok_or_else(not_found)
}

async fn get_share(
    State(state): State<Shared>,
    AuthenticatedUser(user): AuthenticatedUser,
    Path(id): Path<String>,
) -> Result<Ocs, Ocs> {
    let connection = state.store.lock();
    let share = visible_share(&connection, &user, &id)?;
    Ok(Ocs::ok(Value::Array(vec![describe(&connection, &share)?])))
}

/// Deletes a share: by its owner (unshare), or by its recipient (leave the share).
async fn delete_share(
    State(state): State<Shared>,
    AuthenticatedUser(user): AuthenticatedUser,
    Path(id): Path<String>,
) -> Result<Ocs, Ocs> {
    let connection = state.store.lock();
    let share = visible_share(&connection, &user, &id)?;
    connection
        .prepare_cached("DELETE FROM shares WHERE id = ?1")
        .map_err(ApiError::from)?
        .execute(params![share.id])
        .map_err(ApiError::from)?;
    tracing::info!(share = share.id, file_id = share.node, "share removed");
    Ok(Ocs::ok(json!([])))
}
