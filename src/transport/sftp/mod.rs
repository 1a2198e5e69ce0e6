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
pub mod ssh_config;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};

pub use connect::{Asker, SshError, SshSettings};
use connect::{KeyRing, Live};

use super::{Store, StoreEntry, WriteCondition};
use crate::remote::{RemoteError, RemoteErrorKind};

/// How many requests one read or write keeps in flight.
const IN_FLIGHT: usize = 64;

/// An `sftp://[user@]host[:port]/path` location, as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftpLocation {
    /// The user, if given.
    pub user: Option<String>,
    /// The host or ~/.ssh/config alias.
    pub host: String,
    /// The port, if given.
    pub port: Option<u16>,
    /// The vault's folder on the server: absolute, or below the login folder when written `/~/path`.
    pub path: String,
}

impl SftpLocation {
    /// Whether a location is an SFTP address.
    pub fn is_sftp(location: &str) -> bool {
        location.starts_with("sftp://")
    }

    /// Parses `sftp://[user@]host[:port]/path` (`/~/path`: below the login folder).
    pub fn parse(location: &str) -> Result<Self, String> {
        let url = url::Url::parse(location).map_err(|error| format!("invalid address {location:?}: {error}"))?;
        if url.scheme() != "sftp" {
            return Err(format!("{location:?} is not an sftp:// address"));
        }
        let host =
            url.host_str().filter(|host| !host.is_empty()).ok_or_else(|| format!("{location:?} names no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let decode = |text: &str| percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned();
        let user = Some(decode(url.username())).filter(|user| !user.is_empty());
        if url.password().is_some() {
            return Err(
                "a password in the address is refused (it would end in shell history); log in with a key".into()
            );
        }
        let raw_path = decode(url.path());
        let path = match raw_path.strip_prefix("/~") {
            Some(rest) => format!(".{rest}"),
            None => raw_path,
        };
        let path = path.trim_end_matches('/').to_owned();
        let path = if path.is_empty() { "/".to_owned() } else { path };
        Ok(Self { user, host, port: url.port(), path })
    }
}

/// A vault's folder on an SFTP server.
pub struct SftpStore {
    settings: Arc<SshSettings>,
    asker: Arc<dyn Asker>,
    keys: KeyRing,
    root: String,
    live: tokio::sync::Mutex<Option<Arc<Live>>>,
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
        Ok(Self { settings, asker, keys, root, live: tokio::sync::Mutex::new(Some(Arc::new(live))) })
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

fn sftp_error(request: &str, error: &SftpError) -> RemoteError {
    let kind = match error {
        SftpError::Status(status) => match status.status_code {
            StatusCode::NoSuchFile => RemoteErrorKind::NotFound,
            StatusCode::PermissionDenied => RemoteErrorKind::Forbidden,
            StatusCode::NoConnection | StatusCode::ConnectionLost => RemoteErrorKind::Unreachable,
            _ => RemoteErrorKind::Failed,
        },
        SftpError::Timeout | SftpError::IO(_) | SftpError::UnexpectedBehavior(_) => RemoteErrorKind::Unreachable,
        SftpError::Limited(_) | SftpError::UnexpectedPacket => RemoteErrorKind::Protocol,
    };
    RemoteError::Ssh { request: request.to_owned(), kind, reason: error.to_string() }
}

fn is_status(error: &SftpError, code: StatusCode) -> bool {
    matches!(error, SftpError::Status(status) if status.status_code == code)
}

fn entry_of(name: String, attributes: &FileAttributes) -> StoreEntry {
    let size = attributes.size.unwrap_or(0);
    let mtime = attributes.mtime.unwrap_or(0);
    StoreEntry {
        name,
        is_dir: attributes.is_dir(),
        size,
        version: format!("{size}-{mtime}"),
        modified: attributes.mtime.map(|seconds| SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(seconds))),
    }
}

fn temporary_name(target: &str) -> String {
    let folder = target.rsplit_once('/').map_or(".", |(folder, _)| folder);
    let folder = if folder.is_empty() { "/" } else { folder };
    format!("{}/.cloakfs-{}.tmp", folder.trim_end_matches('/'), crate::crypto::server_name::random_server_name())
}

fn ssh_string_pair(first: &str, second: &str) -> Vec<u8> {
    let mut data = Vec::with_capacity(8 + first.len() + second.len());
    for text in [first, second] {
        data.extend_from_slice(&(text.len() as u32).to_be_bytes());
        data.extend_from_slice(text.as_bytes());
    }
    data
}

/// `posix-rename@openssh.com`: rename, replacing the target atomically.
async fn posix_rename(live: &Live, from: &str, to: &str) -> Result<(), SftpError> {
    match live.sftp.extended("posix-rename@openssh.com", ssh_string_pair(from, to)).await? {
        russh_sftp::protocol::Packet::Status(status) if status.status_code == StatusCode::Ok => Ok(()),
        russh_sftp::protocol::Packet::Status(status) => Err(SftpError::Status(status)),
        _ => Err(SftpError::UnexpectedPacket),
    }
}

/// Reads `length` bytes at `offset` of an open file (to its end when `None`; fewer where it ends), pieces
/// in flight together. Nothing the server says about the file's size is trusted: pieces are asked for
/// until one comes back short.
async fn read_range(live: &Live, handle: &str, offset: u64, length: Option<u64>) -> Result<Vec<u8>, SftpError> {
    use futures_util::StreamExt as _;
    let piece = u64::from(live.max_read);
    let end = length.map(|length| offset.saturating_add(length));
    let mut body = Vec::new();
    let (mut next, mut ended) = (offset, false);
    let mut in_flight = futures_util::stream::FuturesOrdered::new();
    loop {
        while !ended && in_flight.len() < IN_FLIGHT && end.is_none_or(|end| next < end) {
            let size = end.map_or(piece, |end| (end - next).min(piece));
            in_flight.push_back(async move { read_piece(live, handle, next, size).await.map(|data| (size, data)) });
            next += size;
        }
        match in_flight.next().await {
            None => break,
            Some(result) => {
                let (size, data) = result?;
                ended |= (data.len() as u64) < size;
                body.extend_from_slice(&data);
            }
        }
    }
    Ok(body)
}

/// One piece, read to its length unless the file ends (a server may answer a read with fewer bytes; one
/// that answers with more is cut to what was asked).
async fn read_piece(live: &Live, handle: &str, start: u64, length: u64) -> Result<Vec<u8>, SftpError> {
    let mut piece = Vec::with_capacity(length as usize);
    while (piece.len() as u64) < length {
        let at = start + piece.len() as u64;
        match live.sftp.read(handle, at, (length - piece.len() as u64) as u32).await {
            Ok(data) if data.data.is_empty() => break,
            Ok(data) => piece.extend_from_slice(&data.data),
            Err(end) if is_status(&end, StatusCode::Eof) => break,
            Err(error) => return Err(error),
        }
    }
    piece.truncate(length as usize);
    Ok(piece)
}

/// Writes `body` to a new file `temporary` (which must not exist), flushes it, then renames it to
/// `target` (replacing it unless `create_only`) and returns the file's attributes (size and modification
/// time, which the rename keeps). Requests are sent without waiting where their order on the channel is
/// enough (the server handles them in order): the last writes, the flush and the stat together, then the
/// close and the rename together; a small file costs three round trips.
async fn write_and_rename(
    live: &Live,
    temporary: &str,
    target: &str,
    body: &[u8],
    create_only: bool,
) -> Result<FileAttributes, SftpError> {
    use futures_util::StreamExt as _;
    let attributes = FileAttributes { permissions: Some(0o600), ..FileAttributes::empty() };
    let handle = live
        .sftp
        .open(temporary, OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUDE | OpenFlags::TRUNCATE, attributes)
        .await?
        .handle;
    let piece = live.max_write as usize;
    let written = async {
        let mut in_flight = futures_util::stream::FuturesUnordered::new();
        for (index, chunk) in body.chunks(piece).enumerate() {
            if in_flight.len() >= IN_FLIGHT {
                if let Some(done) = in_flight.next().await {
                    done?;
                }
            }
            in_flight.push(live.sftp.write(handle.as_str(), (index * piece) as u64, chunk.to_vec()));
        }
        let drained = async {
            while let Some(done) = in_flight.next().await {
                done?;
            }
            Ok::<(), SftpError>(())
        };
        // Polled in this order, so sent in this order: the writes still to send, then fsync, then fstat.
        let (drained, synced, stat) =
            futures_util::join!(drained, live.sftp.fsync(handle.as_str()), live.sftp.fstat(handle.as_str()));
        drained?;
        match synced {
            Err(error) if !is_status(&error, StatusCode::OpUnsupported) => return Err(error),
            _ => {}
        }
        Ok(stat?.attrs)
    }
    .await;
    let renamed = async {
        if create_only {
            live.sftp.rename(temporary, target).await.map(|_| ())
        } else {
            posix_rename(live, temporary, target).await
        }
    };
    match written {
        Ok(attributes) => {
            let (closed, renamed) = futures_util::join!(live.sftp.close(handle.as_str()), renamed);
            closed?;
            renamed.map(|()| attributes)
        }
        Err(error) => {
            let _ = live.sftp.close(handle.as_str()).await;
            Err(error)
        }
    }
}

async fn stat_entry(live: &Live, path: &str, name: String) -> Result<StoreEntry, SftpError> {
    Ok(entry_of(name, &live.sftp.stat(path).await?.attrs))
}

impl SftpStore {
    /// The folder's entries, without `.`, `..` and temporary files.
    async fn list_at(live: &Live, path: &str) -> Result<Vec<StoreEntry>, SftpError> {
        let handle = live.sftp.opendir(path).await?.handle;
        let mut entries = Vec::new();
        let outcome = loop {
            match live.sftp.readdir(handle.as_str()).await {
                Ok(batch) => {
                    for file in batch.files {
                        if file.filename == "." || file.filename == ".." || file.filename.starts_with(".cloakfs-") {
                            continue;
                        }
                        entries.push(entry_of(file.filename, &file.attrs));
                    }
                }
                Err(end) if is_status(&end, StatusCode::Eof) => break Ok(()),
                Err(error) => break Err(error),
            }
        };
        let _ = live.sftp.close(handle.as_str()).await;
        outcome.map(|()| entries)
    }

    /// Removes a file, or a folder with everything in it (children in flight together).
    fn remove_tree<'a>(
        live: &'a Live,
        path: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), SftpError>> + Send + 'a>> {
        Box::pin(async move {
            let attributes = live.sftp.lstat(path.as_str()).await?.attrs;
            if !attributes.is_dir() {
                return live.sftp.remove(path.as_str()).await.map(|_| ());
            }
            let children = Self::list_at(live, &path).await?;
            let removals = children.into_iter().map(|child| Self::remove_tree(live, format!("{path}/{}", child.name)));
            futures_util::future::try_join_all(removals).await?;
            live.sftp.rmdir(path.as_str()).await.map(|_| ())
        })
    }
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
        self.run("list", path, true, |live, full| async move { Self::list_at(&live, &full).await }).await
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
                let handle = live.sftp.open(full.as_str(), OpenFlags::READ, FileAttributes::empty()).await?.handle;
                let outcome = match &range {
                    Some(range) => {
                        read_range(&live, &handle, range.start, Some(range.end.saturating_sub(range.start))).await
                    }
                    None => read_range(&live, &handle, 0, None).await,
                };
                let _ = live.sftp.close(handle.as_str()).await;
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
            .run("write", path, false, |live, full| {
                let body = body.clone();
                async move {
                    let temporary = temporary_name(&full);
                    let outcome = write_and_rename(&live, &temporary, &full, &body, create_only).await;
                    if outcome.is_err() {
                        let _ = live.sftp.remove(temporary.as_str()).await;
                    }
                    outcome.map(|attributes| entry_of(String::new(), &attributes).version)
                }
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
}

/// The user's home folder (for ~/.ssh).
pub fn home_folder() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|home| !home.is_empty()).map(PathBuf::from)
}

/// The key files tried when none is named: OpenSSH's defaults that exist.
pub fn default_identity_files(home: &Path) -> Vec<PathBuf> {
    ["id_ed25519", "id_ecdsa", "id_rsa"].iter().map(|name| home.join(".ssh").join(name)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let parsed = SftpLocation::parse("sftp://me@host.example:2222/srv/vaults/Work/").unwrap();
        assert_eq!(
            parsed,
            SftpLocation {
                user: Some("me".into()),
                host: "host.example".into(),
                port: Some(2222),
                path: "/srv/vaults/Work".into()
            }
        );
        let home = SftpLocation::parse("sftp://work/~/Vault").unwrap();
        assert_eq!((home.user, home.host.as_str(), home.port, home.path.as_str()), (None, "work", None, "./Vault"));
        assert!(SftpLocation::parse("sftp://me:secret@host/x").unwrap_err().contains("password"));
        assert!(SftpLocation::parse("https://host/x").is_err());
        assert_eq!(SftpLocation::parse("sftp://[::1]:22/v").unwrap().host, "::1");
    }

    #[test]
    fn temporary_names_sit_next_to_their_target() {
        assert!(temporary_name("/srv/v/d/AB/file.c9r").starts_with("/srv/v/d/AB/.cloakfs-"));
        assert!(temporary_name("./v/x").starts_with("./v/.cloakfs-"));
        assert!(temporary_name("/x").starts_with("/.cloakfs-"));
    }

    #[test]
    fn ssh_strings() {
        assert_eq!(ssh_string_pair("a", "bc"), vec![0, 0, 0, 1, b'a', 0, 0, 0, 2, b'b', b'c']);
    }
}
