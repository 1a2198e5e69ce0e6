//! Errors of the file-system engine, in its own terms: what went wrong, not which errno or NTSTATUS a
//! platform reports for it. Each adapter maps [`FsError`] to its platform's codes (the FUSE adapter:
//! `to_errno` in src/mount/fuse.rs); storage errors and local I/O errors become engine errors here, once,
//! and each format maps its own errors in its module ([`super::nextcloud`], [`super::cryptomator`]).

use crate::storage::RemoteErrorKind;

/// Why a file-system operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    /// No such file or folder.
    #[error("no such file or folder")]
    NotFound,
    /// The name exists already.
    #[error("the name exists already")]
    Exists,
    /// A file where a folder is needed.
    #[error("not a folder")]
    NotADirectory,
    /// A folder where a file is needed.
    #[error("is a folder")]
    IsADirectory,
    /// The folder is not empty.
    #[error("the folder is not empty")]
    NotEmpty,
    /// The request is not valid (a name the format cannot hold, a folder moved into itself).
    #[error("invalid argument")]
    InvalidArgument,
    /// The name is longer than 255 bytes.
    #[error("the name is too long")]
    NameTooLong,
    /// The file is larger than what can be stored.
    #[error("the file is too large")]
    FileTooBig,
    /// The server's storage, the user's quota or the local spill disk is full.
    #[error("no space left on the server or the spill disk")]
    NoSpace,
    /// Another client keeps the folder locked.
    #[error("the folder is locked by another client")]
    Busy,
    /// The operation has to wait for a later commit (the engine retries it itself).
    #[error("try again after the next commit")]
    RetryLater,
    /// A move between different encrypted trees.
    #[error("a move between different encrypted folders")]
    CrossDevice,
    /// Something the vault format or the engine does not do (special files, a format feature).
    #[error("not supported")]
    NotSupported,
    /// An entry the format cannot hold at all (a symbolic link in a Nextcloud folder): EPERM, as POSIX has
    /// it for a file system that does not support the type.
    #[error("the format cannot hold this kind of entry")]
    NotPermitted,
    /// A symbolic link where a file is needed (opening a link itself).
    #[error("a symbolic link")]
    IsALink,
    /// The server refused the credentials or the operation.
    #[error("access denied by the server")]
    AccessDenied,
    /// Data from the server failed verification (a tampered or damaged blob or metadata, an untrusted key).
    #[error("the server's data failed verification")]
    Tampered,
    /// The server could not be reached.
    #[error("the server is unreachable")]
    Unreachable,
    /// The server dropped the lock the open batch held; the batch is redone under a new lock.
    #[error("the server dropped our lock")]
    LockLost,
    /// Any other failure of the server or of local storage.
    #[error("input/output error")]
    Io,
}

impl FsError {
    /// The engine error for a failure of the server or store, by its kind.
    pub fn from_remote_kind(kind: RemoteErrorKind) -> Self {
        match kind {
            RemoteErrorKind::Unauthorized | RemoteErrorKind::Forbidden => Self::AccessDenied,
            RemoteErrorKind::NotFound => Self::NotFound,
            RemoteErrorKind::NoSpace => Self::NoSpace,
            RemoteErrorKind::Locked => Self::Busy,
            RemoteErrorKind::Unreachable => Self::Unreachable,
            RemoteErrorKind::LockLost => Self::LockLost,
            RemoteErrorKind::CounterRefused
            | RemoteErrorKind::Exists
            | RemoteErrorKind::Changed
            | RemoteErrorKind::Protocol
            | RemoteErrorKind::BadConfiguration
            | RemoteErrorKind::Failed => Self::Io,
        }
    }

    /// The engine error for a local I/O error (spill file): a full disk or a too large file as such, else
    /// [`FsError::Io`] (e.g. a spill block that failed authentication).
    pub fn from_io(error: &std::io::Error) -> Self {
        match error.kind() {
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => Self::NoSpace,
            std::io::ErrorKind::FileTooLarge => Self::FileTooBig,
            _ => Self::Io,
        }
    }

    /// A failure of the server or its data (reported as an I/O error by POSIX adapters): uploads that meet
    /// one stop trying the others of their commit.
    pub fn is_server_failure(self) -> bool {
        matches!(self, Self::Io | Self::Unreachable | Self::Tampered | Self::LockLost | Self::Busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_io_errors_keep_their_meaning() {
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert_eq!(FsError::from_io(&full), FsError::NoSpace);
        let big = std::io::Error::from(std::io::ErrorKind::FileTooLarge);
        assert_eq!(FsError::from_io(&big), FsError::FileTooBig);
        let other = std::io::Error::other("a spill block failed authentication");
        assert_eq!(FsError::from_io(&other), FsError::Io);
    }
}
