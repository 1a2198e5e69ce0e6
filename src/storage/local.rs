//! A vault in a local folder (one a sync client keeps): the same operations as over WebDAV, on the file
//! system. Writes go to a temporary name in the same folder (ciphertext only) and are renamed into place;
//! versions are size, modification time and inode.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;

use super::{Store, StoreEntry, WriteCondition};
use crate::storage::{RemoteError, RemoteErrorKind};

/// A store in a local folder.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// The store rooted at `root` (which must exist).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn path_of(&self, path: &[String]) -> PathBuf {
        let mut full = self.root.clone();
        full.extend(path);
        full
    }
}

fn request(operation: &str, path: &[String]) -> String {
    format!("{operation} /{}", path.join("/"))
}

fn local_error(operation: &str, path: &[String], error: &std::io::Error) -> RemoteError {
    use std::io::ErrorKind;
    let kind = match error.kind() {
        ErrorKind::NotFound => RemoteErrorKind::NotFound,
        ErrorKind::AlreadyExists | ErrorKind::DirectoryNotEmpty => RemoteErrorKind::Exists,
        ErrorKind::PermissionDenied => RemoteErrorKind::Forbidden,
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => RemoteErrorKind::NoSpace,
        _ => RemoteErrorKind::Failed,
    };
    RemoteError::Local { request: request(operation, path), kind, reason: error.to_string() }
}

fn entry_of(name: String, metadata: &std::fs::Metadata) -> StoreEntry {
    let modified = metadata.modified().ok();
    let nanos =
        modified.and_then(|time| time.duration_since(SystemTime::UNIX_EPOCH).ok()).map_or(0, |since| since.as_nanos());
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(metadata);
    #[cfg(not(unix))]
    let inode = 0u64;
    StoreEntry {
        name,
        is_dir: metadata.is_dir(),
        size: metadata.len(),
        version: format!("{}-{nanos}-{inode}", metadata.len()),
        modified,
    }
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work).await.expect("a blocking store task does not panic")
}

fn write_atomically(target: &Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let directory = target.parent().unwrap_or(Path::new("."));
    let temporary = directory.join(format!(".cloakfs-{}.tmp", crate::crypto::server_name::random_server_name()));
    let outcome = (|| {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&temporary)?;
        file.write_all(body)?;
        file.sync_all()?;
        std::fs::rename(&temporary, target)
    })();
    if outcome.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    outcome
}

impl Store for LocalStore {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    async fn list(&self, path: &[String]) -> Result<Vec<StoreEntry>, RemoteError> {
        let (full, owned) = (self.path_of(path), path.to_vec());
        blocking(move || {
            let error = |error: std::io::Error| local_error("list", &owned, &error);
            let mut entries = Vec::new();
            for item in std::fs::read_dir(&full).map_err(error)? {
                let item = item.map_err(error)?;
                let Ok(name) = item.file_name().into_string() else { continue };
                if name.starts_with(".cloakfs-") {
                    continue;
                }
                let metadata = item.metadata().map_err(error)?;
                entries.push(entry_of(name, &metadata));
            }
            Ok(entries)
        })
        .await
    }

    async fn stat(&self, path: &[String]) -> Result<StoreEntry, RemoteError> {
        let (full, owned) = (self.path_of(path), path.to_vec());
        blocking(move || {
            let metadata = std::fs::metadata(&full).map_err(|error| local_error("stat", &owned, &error))?;
            Ok(entry_of(owned.last().cloned().unwrap_or_default(), &metadata))
        })
        .await
    }

    async fn read(&self, path: &[String], range: Option<std::ops::Range<u64>>) -> Result<Vec<u8>, RemoteError> {
        let (full, owned) = (self.path_of(path), path.to_vec());
        blocking(move || {
            use std::io::{Read as _, Seek as _};
            let error = |error: std::io::Error| local_error("read", &owned, &error);
            let mut file = std::fs::File::open(&full).map_err(error)?;
            let mut body = Vec::new();
            match range {
                None => {
                    file.read_to_end(&mut body).map_err(error)?;
                }
                Some(range) => {
                    file.seek(std::io::SeekFrom::Start(range.start)).map_err(error)?;
                    file.take(range.end.saturating_sub(range.start)).read_to_end(&mut body).map_err(error)?;
                }
            }
            Ok(body)
        })
        .await
    }

    async fn write(
        &self,
        path: &[String],
        body: Bytes,
        condition: WriteCondition,
    ) -> Result<Option<String>, RemoteError> {
        let (full, owned) = (self.path_of(path), path.to_vec());
        blocking(move || {
            let error = |error: std::io::Error| local_error("write", &owned, &error);
            let current = match std::fs::metadata(&full) {
                Ok(metadata) => Some(entry_of(String::new(), &metadata).version),
                Err(missing) if missing.kind() == std::io::ErrorKind::NotFound => None,
                Err(other) => return Err(error(other)),
            };
            if let Err((kind, reason)) = condition.allows(current.as_deref()) {
                return Err(RemoteError::Local { request: request("write", &owned), kind, reason: reason.into() });
            }
            write_atomically(&full, &body).map_err(error)?;
            let metadata = std::fs::metadata(&full).map_err(error)?;
            Ok(Some(entry_of(String::new(), &metadata).version))
        })
        .await
    }

    async fn make_dir(&self, path: &[String]) -> Result<(), RemoteError> {
        let (full, owned) = (self.path_of(path), path.to_vec());
        blocking(move || std::fs::create_dir(&full).map_err(|error| local_error("mkdir", &owned, &error))).await
    }

    async fn rename(&self, from: &[String], to: &[String], overwrite: bool) -> Result<(), RemoteError> {
        let (source, target, owned) = (self.path_of(from), self.path_of(to), from.to_vec());
        blocking(move || {
            if !overwrite && std::fs::symlink_metadata(&target).is_ok() {
                return Err(RemoteError::Local {
                    request: request("rename", &owned),
                    kind: RemoteErrorKind::Exists,
                    reason: "the target exists".into(),
                });
            }
            std::fs::rename(&source, &target).map_err(|error| local_error("rename", &owned, &error))
        })
        .await
    }

    async fn remove(&self, path: &[String]) -> Result<(), RemoteError> {
        let (full, owned) = (self.path_of(path), path.to_vec());
        blocking(move || {
            let metadata = std::fs::symlink_metadata(&full).map_err(|error| local_error("remove", &owned, &error))?;
            if metadata.is_dir() { std::fs::remove_dir_all(&full) } else { std::fs::remove_file(&full) }
                .map_err(|error| local_error("remove", &owned, &error))
        })
        .await
    }

    fn versions_from_writes(&self) -> bool {
        true
    }

    fn renames_keep_versions(&self) -> bool {
        true
    }
}
