//! A vault on an SFTP server, over SSH: the [`Store`] operations on OpenSSH's `sftp-server` (or any SFTP
//! version 3 server). Requests travel many at once on one channel: a large read or write is cut into the
//! largest pieces the server takes and they are all in flight together, so a file costs about one round
//! trip rather than one per piece.
//!
//! Writes go to a temporary name (`.cloakfs-….tmp`, ciphertext only) in the target's folder, are flushed
//! (`fsync@openssh.com` where offered), then renamed into place: `posix-rename@openssh.com` replaces
//! atomically; a create-only write uses the plain SFTP rename, which OpenSSH refuses when the target exists.
//! Versions are size and modification time (SFTP gives whole seconds): a conditional write first checks
//! them. Two writers within one second, with the same size, are not told apart, and nothing locks between
//! the check and the rename (DESIGN.md "SFTP").
//!
//! The connection is made again when it drops (laptop sleep, a new network, a server restart): the next
//! operation reconnects, with the decrypted key files kept in memory and a one-time code asked again.

pub mod connect;
pub mod known_hosts;
mod location;
mod read_handles;
mod requests;
pub mod ssh_config;

use std::sync::Arc;

use bytes::Bytes;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};

pub use connect::{Asker, SshError, SshSettings};
use connect::{KeyRing, Live};
pub use location::{default_identity_files, home_folder, SftpLocation};
use requests::{
    create_in_place, entry_of, is_status, posix_rename, read_range, sftp_error, stat_entry, temporary_name,
    write_and_rename,
};

use super::{BodyStream, Store, StoreEntry, WriteCondition};
use crate::storage::{RemoteError, RemoteErrorKind};

/// Folder listings keep this many `readdir` requests in flight.
const READDIR_AHEAD: usize = 2;

/// A vault's folder on an SFTP server.
pub struct SftpStore {
    settings: Arc<SshSettings>,
    asker: Arc<dyn Asker>,
    keys: KeyRing,
    root: String,
    live: tokio::sync::Mutex<Option<Arc<Live>>>,
    read_handles: read_handles::ReadHandles,
}

impl std::fmt::Debug for SftpStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("SftpStore").field("at", &self.describe()).finish()
    }
}

impl SftpStore {
    /// Connects (checking the host key, logging in) and returns the store of the folder `root`.
    pub async fn connect(settings: SshSettings, root: String, asker: Arc<dyn Asker>) -> Result<Self, SshError> {
        let settings = Arc::new(settings);
        let keys = KeyRing::default();
        let live = connect::connect(settings.clone(), asker.clone(), &keys).await?;
        Ok(Self {
            settings,
            asker,
            keys,
            root,
            live: tokio::sync::Mutex::new(Some(Arc::new(live))),
            read_handles: Default::default(),
        })
    }

    /// The open connection, or a new one if it dropped.
    async fn live(&self, request: &str) -> Result<Arc<Live>, RemoteError> {
        // A reconnection may be waiting for a person (a one-time code): others wait for it only so long.
        let Ok(mut live) = tokio::time::timeout(self.settings.timeout, self.live.lock()).await else {
            return Err(RemoteError::Ssh {
                request: request.to_owned(),
                kind: RemoteErrorKind::Unreachable,
                reason: "reconnecting to the SSH server (waiting for an answer on the terminal that mounted)".into(),
            });
        };
        if let Some(current) = live.as_ref() {
            if !current.handle.is_closed() {
                return Ok(current.clone());
            }
            tracing::info!("the SSH connection dropped; connecting again");
        }
        *live = None;
        match connect::connect(self.settings.clone(), self.asker.clone(), &self.keys).await {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                *live = Some(fresh.clone());
                Ok(fresh)
            }
            Err(error) => {
                let kind = match error {
                    SshError::Unreachable { .. } | SshError::Ssh(_) => RemoteErrorKind::Unreachable,
                    SshError::Refused { .. } | SshError::WrongPassphrase { .. } => RemoteErrorKind::Unauthorized,
                    _ => RemoteErrorKind::Forbidden,
                };
                tracing::warn!(%error, "reconnecting failed");
                Err(RemoteError::Ssh { request: request.to_owned(), kind, reason: error.to_string() })
            }
        }
    }

    /// Drops `broken` if it is still the current connection, so that the next operation reconnects.
    async fn forget(&self, broken: &Arc<Live>) {
        let mut live = self.live.lock().await;
        if live.as_ref().is_some_and(|current| Arc::ptr_eq(current, broken)) {
            *live = None;
        }
    }

    /// Closes the connection (travel mode's lock) and forgets decrypted key files.
    pub async fn disconnect(&self) {
        if let Some(live) = self.live.lock().await.take() {
            let _ = live.sftp.close_session();
            let _ = live.handle.disconnect(russh::Disconnect::ByApplication, "", "").await;
        }
        self.keys.clear();
    }

    fn full_path(&self, path: &[String]) -> String {
        let mut full = self.root.clone();
        for segment in path {
            if !full.ends_with('/') {
                full.push('/');
            }
            full.push_str(segment);
        }
        full
    }

    /// Runs `operation` on the connection; when the connection is what failed, forgets it and, for
    /// operations that change nothing, tries once more on a new one.
    async fn run<T, F, Fut>(
        &self,
        name: &str,
        path: &[String],
        idempotent: bool,
        operation: F,
    ) -> Result<T, RemoteError>
    where
        F: Fn(Arc<Live>, String) -> Fut,
        Fut: std::future::Future<Output = Result<T, SftpError>>,
    {
        let request = format!("{name} /{}", path.join("/"));
        let mut attempts = if idempotent { 2 } else { 1 };
        loop {
            attempts -= 1;
            let live = self.live(&request).await?;
            match operation(live.clone(), self.full_path(path)).await {
                Ok(value) => return Ok(value),
                Err(error) => {
                    let remote = sftp_error(&request, &error);
                    if remote.kind() == RemoteErrorKind::Unreachable {
                        self.forget(&live).await;
                        if attempts > 0 {
                            continue;
                        }
                    }
                    return Err(remote);
                }
            }
        }
    }
}

impl SftpStore {
    /// The folder's entries, without `.`, `..` and (unless `with_temporaries`) temporary files.
    async fn list_at(live: &Arc<Live>, path: &str, with_temporaries: bool) -> Result<Vec<StoreEntry>, SftpError> {
        use futures_util::StreamExt as _;
        let handle = live.sftp.opendir(path).await?.handle;
        let mut entries = Vec::new();
        // One batch asked for ahead: the end of a folder that fits one batch (OpenSSH sends 100 names)
        // comes back with the batch, not a round trip later.
        let mut batches = futures_util::stream::FuturesOrdered::new();
        for _ in 0..READDIR_AHEAD {
            batches.push_back(live.sftp.readdir(handle.as_str()));
        }
        let outcome = loop {
            match batches.next().await {
                Some(Ok(batch)) => {
                    for file in batch.files {
                        let temporary = file.filename.starts_with(".cloakfs-") && !with_temporaries;
                        if file.filename == "." || file.filename == ".." || temporary {
                            continue;
                        }
                        entries.push(entry_of(file.filename, &file.attrs));
                    }
                    batches.push_back(live.sftp.readdir(handle.as_str()));
                }
                // Requests are sent in the order they were queued and a server reads a folder handle in
                // order, so the ones after the end can only say the end again: not waited for.
                Some(Err(end)) if is_status(&end, StatusCode::Eof) => break Ok(()),
                Some(Err(error)) => break Err(error),
                None => break Ok(()),
            }
        };
        drop(batches);
        close_later(live, handle);
        outcome.map(|()| entries)
    }

    /// Removes a file, or a folder with everything in it (children in flight together).
    fn remove_tree<'a>(
        live: &'a Arc<Live>,
        path: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), SftpError>> + Send + 'a>> {
        Box::pin(async move {
            let attributes = live.sftp.lstat(path.as_str()).await?.attrs;
            if !attributes.is_dir() {
                return live.sftp.remove(path.as_str()).await.map(|_| ());
            }
            let children = Self::list_at(live, &path, true).await?;
            let removals = children.into_iter().map(|child| Self::remove_tree(live, format!("{path}/{}", child.name)));
            futures_util::future::try_join_all(removals).await?;
            live.sftp.rmdir(path.as_str()).await.map(|_| ())
        })
    }
}

/// Closes a handle that was only read, without waiting for the answer (one round trip less per read and
/// listing): the server answers in order, and nothing depends on when a reading handle is closed.
pub(super) fn close_later(live: &Arc<Live>, handle: String) {
    let live = live.clone();
    tokio::spawn(async move {
        if let Err(error) = live.sftp.close(handle).await {
            tracing::debug!(%error, "closing a read handle failed");
        }
    });
}

impl Store for SftpStore {
    fn describe(&self) -> String {
        let settings = &self.settings;
        format!(
            "sftp://{}@{}:{}{}",
            settings.user,
            settings.host,
            settings.port,
            if self.root.starts_with('/') {
                self.root.clone()
            } else {
                format!("/~/{}", self.root.trim_start_matches("./"))
            }
        )
    }

    async fn list(&self, path: &[String]) -> Result<Vec<StoreEntry>, RemoteError> {
        self.run("list", path, true, |live, full| async move { Self::list_at(&live, &full, false).await }).await
    }

    async fn stat(&self, path: &[String]) -> Result<StoreEntry, RemoteError> {
        let name = path.last().cloned().unwrap_or_default();
        self.run("stat", path, true, |live, full| {
            let name = name.clone();
            async move { stat_entry(&live, &full, name).await }
        })
        .await
    }

    async fn read(&self, path: &[String], range: Option<std::ops::Range<u64>>) -> Result<Vec<u8>, RemoteError> {
        self.run("read", path, true, |live, full| {
            let range = range.clone();
            async move {
                // A window after the first continues with the handle its reader opened.
                let continues = range.as_ref().is_some_and(|range| range.start > 0);
                let kept = if continues { self.read_handles.take(&live, &full) } else { None };
                let handle = match kept {
                    Some(handle) => handle,
                    None => live.sftp.open(full.as_str(), OpenFlags::READ, FileAttributes::empty()).await?.handle,
                };
                let outcome = match &range {
                    Some(range) => {
                        read_range(&live, &handle, range.start, Some(range.end.saturating_sub(range.start))).await
                    }
                    None => read_range(&live, &handle, 0, None).await,
                };
                if outcome.is_ok() && range.is_some() {
                    self.read_handles.keep(&live, full, handle);
                } else {
                    close_later(&live, handle);
                }
                outcome
            }
        })
        .await
    }

    async fn write(
        &self,
        path: &[String],
        body: Bytes,
        condition: WriteCondition,
    ) -> Result<Option<String>, RemoteError> {
        let whole = move || -> BodyStream { Box::pin(futures_util::stream::iter([Ok(body.clone())])) };
        self.write_streamed(path, 0, &whole, condition).await
    }

    async fn write_streamed(
        &self,
        path: &[String],
        _length: u64,
        body: &(dyn Fn() -> BodyStream + Send + Sync),
        condition: WriteCondition,
    ) -> Result<Option<String>, RemoteError> {
        let request = format!("write /{}", path.join("/"));
        let refuse = |kind: RemoteErrorKind, reason: &str| RemoteError::Ssh {
            request: request.clone(),
            kind,
            reason: reason.to_owned(),
        };
        // Only a write over a version needs to look first; a create-only write is refused by the rename.
        if let WriteCondition::IfVersion(_) = &condition {
            let current = match self.stat(path).await {
                Ok(entry) => Some(entry.version),
                Err(missing) if missing.kind() == RemoteErrorKind::NotFound => None,
                Err(other) => return Err(other),
            };
            if let Err((kind, reason)) = condition.allows(current.as_deref()) {
                return Err(refuse(kind, reason));
            }
        }
        let create_only = condition == WriteCondition::CreateOnly;
        let written = self
            .run("write", path, false, |live, full| async move {
                let temporary = temporary_name(&full);
                let outcome = write_and_rename(&live, &temporary, &full, body(), create_only).await;
                if outcome.is_err() {
                    let _ = live.sftp.remove(temporary.as_str()).await;
                }
                outcome.map(|attributes| entry_of(String::new(), &attributes).version)
            })
            .await;
        match written {
            Ok(version) => Ok(Some(version)),
            Err(error) if create_only && error.kind() == RemoteErrorKind::Failed && self.stat(path).await.is_ok() => {
                Err(refuse(RemoteErrorKind::Exists, "exists already"))
            }
            Err(error) => Err(error),
        }
    }

    async fn make_dir(&self, path: &[String]) -> Result<(), RemoteError> {
        let made = self
            .run("mkdir", path, false, |live, full| async move {
                live.sftp.mkdir(full.as_str(), FileAttributes::empty()).await.map(|_| ())
            })
            .await;
        match made {
            Err(error) if error.kind() == RemoteErrorKind::Failed && self.stat(path).await.is_ok() => {
                Err(RemoteError::Ssh {
                    request: format!("mkdir /{}", path.join("/")),
                    kind: RemoteErrorKind::Exists,
                    reason: "exists already".into(),
                })
            }
            other => other,
        }
    }

    /// The mkdir and a stat behind it in one round trip: the stat, answered after the mkdir, tells an
    /// existing folder from a failure.
    async fn make_dir_if_missing(&self, path: &[String]) -> Result<(), RemoteError> {
        self.run("mkdir", path, true, |live, full| async move {
            let (made, found) = futures_util::join!(
                live.sftp.mkdir(full.as_str(), FileAttributes::empty()),
                live.sftp.stat(full.as_str())
            );
            match (made, found) {
                (Ok(_), _) => Ok(()),
                (Err(_), Ok(found)) if found.attrs.is_dir() => Ok(()),
                (Err(error), _) => Err(error),
            }
        })
        .await
    }

    /// Opened create-exclusive under its own name; written, flushed and closed together: two round trips.
    async fn create_small(&self, path: &[String], body: Bytes) -> Result<(), RemoteError> {
        let created = self
            .run("create", path, false, |live, full| {
                let body = body.clone();
                async move { create_in_place(&live, &full, &body).await }
            })
            .await;
        match created {
            Err(error) if error.kind() == RemoteErrorKind::Failed && self.stat(path).await.is_ok() => {
                Err(RemoteError::Ssh {
                    request: format!("create /{}", path.join("/")),
                    kind: RemoteErrorKind::Exists,
                    reason: "exists already".into(),
                })
            }
            other => other,
        }
    }

    async fn rename(&self, from: &[String], to: &[String], overwrite: bool) -> Result<(), RemoteError> {
        let target = self.full_path(to);
        if !overwrite && self.stat(to).await.is_ok() {
            return Err(RemoteError::Ssh {
                request: format!("rename /{}", from.join("/")),
                kind: RemoteErrorKind::Exists,
                reason: "the target exists".into(),
            });
        }
        self.run("rename", from, false, |live, full| {
            let target = target.clone();
            async move {
                if overwrite {
                    posix_rename(&live, &full, &target).await
                } else {
                    live.sftp.rename(full.as_str(), target.as_str()).await.map(|_| ())
                }
            }
        })
        .await
    }

    async fn remove(&self, path: &[String]) -> Result<(), RemoteError> {
        self.run("remove", path, false, |live, full| async move { Self::remove_tree(&live, full).await }).await
    }

    async fn remove_file(&self, path: &[String]) -> Result<(), RemoteError> {
        self.run("remove", path, false, |live, full| async move { live.sftp.remove(full.as_str()).await.map(|_| ()) })
            .await
    }

    async fn remove_emptied_dir(&self, path: &[String]) -> Result<(), RemoteError> {
        self.run("rmdir", path, false, |live, full| async move {
            match live.sftp.rmdir(full.as_str()).await {
                // Not empty after all (a temporary file of a cut write): everything in it goes.
                Err(error) if is_status(&error, StatusCode::Failure) => Self::remove_tree(&live, full).await,
                other => other.map(|_| ()),
            }
        })
        .await
    }

    fn versions_from_writes(&self) -> bool {
        true
    }

    /// Versions are size and modification time, which a rename keeps.
    fn renames_keep_versions(&self) -> bool {
        true
    }
}
