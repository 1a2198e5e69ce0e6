//! Errors of the file-system core as errno values, and how vault errors map to them.

use crate::crypto::file_cipher::FileCipherError;
use crate::vault::VaultError;

/// An errno returned to the program that made the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsError(pub i32);

impl FsError {
    /// ENOENT.
    pub const NOT_FOUND: Self = Self(libc::ENOENT);
    /// EIO: the server failed, or data failed verification.
    pub const IO: Self = Self(libc::EIO);
    /// EACCES: the server refused our credentials or the operation.
    pub const ACCESS: Self = Self(libc::EACCES);
    /// EEXIST.
    pub const EXISTS: Self = Self(libc::EEXIST);
    /// ENOTDIR.
    pub const NOT_A_DIRECTORY: Self = Self(libc::ENOTDIR);
    /// EISDIR.
    pub const IS_A_DIRECTORY: Self = Self(libc::EISDIR);
    /// ENOTEMPTY.
    pub const NOT_EMPTY: Self = Self(libc::ENOTEMPTY);
    /// EINVAL.
    pub const INVALID: Self = Self(libc::EINVAL);
    /// ENAMETOOLONG.
    pub const NAME_TOO_LONG: Self = Self(libc::ENAMETOOLONG);
    /// EFBIG.
    pub const FILE_TOO_BIG: Self = Self(libc::EFBIG);
    /// ENOSPC: the server's storage is full (HTTP 507) or over quota.
    pub const NO_SPACE: Self = Self(libc::ENOSPC);
    /// EBUSY: another client kept the folder locked.
    pub const BUSY: Self = Self(libc::EBUSY);
    /// EAGAIN: the operation has to wait for a later commit (retried by the mount itself).
    pub const AGAIN: Self = Self(libc::EAGAIN);
    /// EXDEV: a move between different encrypted trees.
    pub const CROSS_DEVICE: Self = Self(libc::EXDEV);
    /// ENOTSUP.
    pub const NOT_SUPPORTED: Self = Self(libc::ENOTSUP);

    /// A short description (strerror).
    pub fn describe(self) -> String {
        std::io::Error::from_raw_os_error(self.0).to_string()
    }
}

/// The errno for a vault error: tampering and server failures are EIO, refused credentials EACCES, a full
/// server ENOSPC, the namespace errors their POSIX counterparts.
pub fn errno_of(error: &VaultError) -> FsError {
    match error {
        VaultError::Remote(remote) => match remote.status() {
            Some(401 | 403) => FsError::ACCESS,
            Some(404) => FsError::NOT_FOUND,
            Some(413 | 507) => FsError::NO_SPACE,
            Some(423) => FsError::BUSY,
            _ => FsError::IO,
        },
        // A local failure while storing decrypted content (e.g. a full disk under the spill file).
        VaultError::Content { source: FileCipherError::Io(io), .. } => errno_of_io(io),
        VaultError::Metadata { .. } | VaultError::Content { .. } | VaultError::MissingBlob(_) => FsError::IO,
        VaultError::Trust(_) | VaultError::NoMetadata(_) | VaultError::NotEncrypted => FsError::IO,
        VaultError::NotFound => FsError::NOT_FOUND,
        VaultError::NotAFolder => FsError::NOT_A_DIRECTORY,
        VaultError::IsAFolder => FsError::IS_A_DIRECTORY,
        VaultError::Exists => FsError::EXISTS,
        VaultError::NotEmpty => FsError::NOT_EMPTY,
        VaultError::InvalidName => FsError::INVALID,
        VaultError::CrossTree => FsError::CROSS_DEVICE,
        VaultError::IntoItself => FsError::INVALID,
        VaultError::Unsupported(_) => FsError::NOT_SUPPORTED,
        VaultError::Busy(_) => FsError::BUSY,
    }
}

/// The errno for a local I/O error (spill file): its OS error (ENOSPC, EFBIG, ...), else EIO (e.g. a spill
/// block that failed authentication).
pub fn errno_of_io(error: &std::io::Error) -> FsError {
    match error.raw_os_error() {
        Some(code) if code > 0 => FsError(code),
        _ => FsError::IO,
    }
}
