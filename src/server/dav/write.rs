//! The writing methods: PUT (streamed to the blob store, staged under a lock), MKCOL, DELETE and MOVE,
//! with Nextcloud's rules inside encrypted folders (the lock token on every write, staged writes and
//! deletes, no moves across the boundary).

use super::*;

pub(crate) fn storage_error(error: std::io::Error) -> ApiError {
    if error.raw_os_error() == Some(28) || error.kind() == std::io::ErrorKind::StorageFull {
        ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "Insufficient Storage")
    } else {
        tracing::error!(%error, "cannot store an upload");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "cannot store the upload")
    }
}

/// The existing folder at `parents` (409 Conflict otherwise, as WebDAV prescribes for a missing parent).
pub(super) fn parent_folder(connection: &rusqlite::Connection, user: &str, parents: &[String]) -> ApiResult<Node> {
    tree::resolve(connection, user, parents)?
        .filter(|node| node.is_dir)
        .ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "the parent folder does not exist"))
}

/// Checks that a write into `folder` may proceed; encrypted trees need the client's consent header too.
pub(super) fn writable_folder(
    state: &Shared,
    user: &str,
    parents: &[String],
    token: Option<&str>,
    headers: &HeaderMap,
    drop_name: Option<&str>,
) -> ApiResult<Node> {
    let connection = state.store.lock();
    let folder = parent_folder(&connection, user, parents)?;
    if let Some(name) = drop_name {
        if tree::is_drop_upload(&connection, user, &folder, name, token)? {
            return Ok(folder);
        }
    }
    tree::check_may_write(&connection, user, &folder)?;
    if tree::check_write_token(&connection, &folder, token)?.is_some() && !e2ee_supported(headers) {
        return Err(client_not_allowed());
    }
    Ok(folder)
}

/// The blocking task writing an upload ended without an answer (it panicked or the runtime is stopping).
pub(super) fn writer_lost(_: tokio::task::JoinError) -> ApiError {
    storage_error(std::io::Error::other("the upload's writer stopped"))
}

/// Bytes of an upload's body written to disk at a time.
pub(super) const UPLOAD_PIECE: usize = 1 << 20;

pub(super) async fn put(
    state: &Shared,
    user: &str,
    segments: &[String],
    token: Option<&str>,
    request: Request,
) -> ApiResult<Response> {
    let (parents, name) = split_last(segments)?;
    writable_folder(state, user, parents, token, request.headers(), Some(name))?;
    // Stream the body into a temp file, synced before it is renamed into place. A write under a lock is
    // staged: invisible until unlock, which syncs all blobs at once before committing (one syncfs instead of
    // two fsyncs per file of a `tar x`).
    let staged = token.is_some();
    let temp = state.blobs.temp_path();
    let file = crate::server::blobs::BlobWriter::create(&temp).map_err(storage_error)?;
    let mut size = 0u64;
    let mut body = request.into_body().into_data_stream();
    let outcome: ApiResult<()> = async {
        // The body is gathered into pieces written on a blocking thread while the next piece arrives; each
        // written piece starts its write-back at once, so the sync at the end (or at unlock) has little left.
        let mut writing: Option<tokio::task::JoinHandle<std::io::Result<crate::server::blobs::BlobWriter>>> = None;
        let mut idle = Some(file);
        let (mut piece, mut piece_len) = (Vec::<Bytes>::new(), 0usize);
        loop {
            let chunk = body.next().await;
            if let Some(chunk) = &chunk {
                let chunk =
                    chunk.as_ref().map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "the upload was interrupted"))?;
                size += chunk.len() as u64;
                piece_len += chunk.len();
                piece.push(chunk.clone());
                if piece_len < UPLOAD_PIECE {
                    continue;
                }
            }
            let mut file = match (idle.take(), writing.take()) {
                (Some(file), _) => file,
                (None, Some(previous)) => previous.await.map_err(writer_lost)?.map_err(storage_error)?,
                (None, None) => unreachable!("the file is idle or being written"),
            };
            let full = std::mem::take(&mut piece);
            piece_len = 0;
            if chunk.is_none() {
                // The last piece, then the sync (a staged upload is synced at unlock).
                let file = tokio::task::spawn_blocking(move || {
                    file.write_piece(&full)?;
                    if !staged {
                        file.sync()?;
                    }
                    Ok::<_, std::io::Error>(file)
                });
                file.await.map_err(writer_lost)?.map_err(storage_error)?;
                return Ok(());
            }
            writing = Some(tokio::task::spawn_blocking(move || {
                file.write_piece(&full)?;
                Ok(file)
            }));
        }
    }
    .await;
    if let Err(error) = outcome {
        let _ = tokio::fs::remove_file(&temp).await;
        return Err(error);
    }
    let blob = match state.blobs.commit_upload(&temp, !staged) {
        Ok(blob) => blob,
        Err(error) => {
            let _ = std::fs::remove_file(&temp);
            return Err(storage_error(error));
        }
    };
    let result = {
        let mut connection = state.store.lock();
        // A staged row needs no fsync of its own either: unlock's commit (synchronous=FULL) syncs the WAL
        // and with it every transaction before.
        let relaxed = staged && connection.pragma_update(None, "synchronous", "NORMAL").is_ok();
        let result = (|| {
            let transaction = connection.transaction()?;
            let folder = parent_folder(&transaction, user, parents)?;
            let token = if tree::is_drop_upload(&transaction, user, &folder, name, token)? {
                None
            } else {
                tree::check_may_write(&transaction, user, &folder)?;
                tree::check_write_token(&transaction, &folder, token)?
            };
            if let Some(quota) = state.quota_bytes {
                let used: i64 = transaction
                    .prepare_cached("SELECT COALESCE(SUM(size), 0) FROM nodes WHERE owner = ?1 AND is_dir = 0")?
                    .query_row([user], |row| row.get(0))?;
                if used as u64 + size > quota {
                    return Err(ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "Insufficient Storage (quota)"));
                }
            }
            let outcome = tree::put_file(&transaction, &folder, name, &blob, size, token.is_some())?;
            transaction.commit()?;
            Ok::<_, ApiError>(outcome)
        })();
        if relaxed {
            if let Err(error) = connection.pragma_update(None, "synchronous", "FULL") {
                tracing::error!(%error, "cannot restore synchronous=FULL");
            }
        }
        result
    };
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(error) => {
            state.blobs.remove(&[blob]);
            return Err(error);
        }
    };
    if staged && !outcome.node.is_staged_save() {
        // Not staged after all (e.g. a token for an unlocked folder): sync now, before answering.
        state.blobs.sync_one(&blob).map_err(storage_error)?;
    }
    state.blobs.remove(&outcome.freed_blobs);
    tracing::debug!(file_id = outcome.node.id, size, staged = outcome.node.is_staged_save(), "stored upload");
    let status = if outcome.created { StatusCode::CREATED } else { StatusCode::NO_CONTENT };
    let etag = format!("\"{}\"", outcome.node.etag);
    Ok((status, [("OC-FileId", oc_id(outcome.node.id)), ("ETag", etag.clone()), ("OC-ETag", etag)]).into_response())
}

pub(super) async fn mkcol(
    state: &Shared,
    user: &str,
    segments: &[String],
    token: Option<&str>,
    request: Request,
) -> ApiResult<Response> {
    let (parents, name) = split_last(segments)?;
    writable_folder(state, user, parents, token, request.headers(), None)?;
    let body = axum::body::to_bytes(request.into_body(), 1024)
        .await
        .map_err(|_| ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "MKCOL with a body is not supported"))?;
    if !body.is_empty() {
        return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "MKCOL with a body is not supported"));
    }
    let mut connection = state.store.lock();
    let transaction = connection.transaction()?;
    let folder = parent_folder(&transaction, user, parents)?;
    let token = tree::check_write_token(&transaction, &folder, token)?;
    let created = tree::make_folder(&transaction, &folder, name, token.is_some())?;
    transaction.commit()?;
    Ok((StatusCode::CREATED, [("OC-FileId", oc_id(created.id))]).into_response())
}

pub(super) fn delete(
    state: &Shared,
    user: &str,
    segments: &[String],
    token: Option<&str>,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    split_last(segments)?;
    let freed = {
        let mut connection = state.store.lock();
        let transaction = connection.transaction()?;
        // A file PUT under the still open lock exists only as `x.e2e-to-save`: like Nextcloud, the DELETE
        // of `x` does not find it (404) and removes nothing.
        let target = tree::resolve(&transaction, user, segments)?.ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, format!("File with name {} could not be located", segments.join("/")))
        })?;
        check_may_change(&transaction, user, &target)?;
        let token = tree::check_write_token(&transaction, &target, token)?;
        if token.is_some() && !e2ee_supported(headers) {
            return Err(client_not_allowed());
        }
        let freed = tree::delete(&transaction, &target, token.is_some())?;
        transaction.commit()?;
        freed
    };
    state.blobs.remove(&freed);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Refuses deleting or moving `target` unless `user` may write to its folder; the mount point of a share is
/// the owner's folder and cannot be deleted or moved by its recipient.
fn check_may_change(connection: &rusqlite::Connection, user: &str, target: &Node) -> ApiResult<()> {
    if crate::server::shares::is_mount_of(connection, user, target)? {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "a share's mount point cannot be deleted or moved"));
    }
    let parent = tree::node(connection, target.parent.unwrap_or_default())?
        .ok_or_else(|| ApiError::new(StatusCode::FORBIDDEN, "the root folder cannot be changed"))?;
    tree::check_may_write(connection, user, &parent)
}

/// The path of a `Destination` header (absolute URL or absolute path) below the user's tree.
pub(super) fn destination_segments(headers: &HeaderMap, user: &str) -> ApiResult<Vec<String>> {
    let bad = || ApiError::new(StatusCode::BAD_REQUEST, "missing or invalid Destination header");
    let value = headers.get("destination").and_then(|value| value.to_str().ok()).ok_or_else(bad)?;
    let path = if value.starts_with('/') {
        value.to_owned()
    } else {
        url::Url::parse(value).map_err(|_| bad())?.path().to_owned()
    };
    let (destination_user, segments) = split_path(&path)?;
    if destination_user != user {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "cannot move into another user's file space"));
    }
    Ok(segments)
}

pub(super) fn move_request(
    state: &Shared,
    user: &str,
    segments: &[String],
    token: Option<&str>,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    split_last(segments)?;
    let destination = destination_segments(headers, user)?;
    let (destination_parents, destination_name) = split_last(&destination)?;
    let overwrite = !headers
        .get("overwrite")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim().eq_ignore_ascii_case("F"));
    let freed = {
        let mut connection = state.store.lock();
        let transaction = connection.transaction()?;
        let source = tree::resolve(&transaction, user, segments)?
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not found"))?;
        let target_folder = tree::resolve(&transaction, user, destination_parents)?
            .filter(|node| node.is_dir)
            .ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "the destination folder does not exist"))?;
        check_may_change(&transaction, user, &source)?;
        tree::check_may_write(&transaction, user, &target_folder)?;
        let source_parent = tree::node(&transaction, source.parent.unwrap_or_default())?
            .ok_or_else(|| ApiError::new(StatusCode::FORBIDDEN, "the root folder cannot be moved"))?;
        if tree::in_encrypted_tree(&transaction, &source_parent)?
            != tree::in_encrypted_tree(&transaction, &target_folder)?
        {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "cannot move between end-to-end encrypted and unencrypted folders",
            ));
        }
        let source_token = tree::check_write_token(&transaction, &source, token)?;
        let destination_token = tree::check_write_token(&transaction, &target_folder, token)?;
        if (source_token.is_some() || destination_token.is_some()) && !e2ee_supported(headers) {
            return Err(client_not_allowed());
        }
        let freed = tree::move_node(
            &transaction,
            &source,
            &target_folder,
            destination_name,
            overwrite,
            source_token.or(destination_token).is_some(),
        )?;
        transaction.commit()?;
        freed
    };
    state.blobs.remove(&freed);
    Ok(StatusCode::CREATED.into_response())
}
