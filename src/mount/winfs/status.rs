//! NTSTATUS codes: what the Windows adapter answers for each engine error ([`NtStatus::from_fs`]) and for
//! the Windows-only conditions of its own (a name Windows cannot have, a delete pending). The values are
//! Windows' (ntstatus.h); they are spelled out here so that this mapping compiles and is tested on every
//! system.

use crate::format::FsError;

use super::names::NameError;

/// An NTSTATUS value (negative: an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NtStatus(pub i32);

macro_rules! status_table {
    ($($(#[$doc:meta])* $name:ident = $value:literal;)*) => {
        impl NtStatus {
            $($(#[$doc])* pub const $name: NtStatus = NtStatus(($value as u32) as i32);)*
        }
    };
}

status_table! {
    /// Success.
    SUCCESS = 0x0000_0000;
    /// A read at or past the end of the file.
    END_OF_FILE = 0xC000_0011;
    /// The last component of a path does not exist.
    OBJECT_NAME_NOT_FOUND = 0xC000_0034;
    /// A folder on the way does not exist (or is a file).
    OBJECT_PATH_NOT_FOUND = 0xC000_003A;
    /// The name exists already.
    OBJECT_NAME_COLLISION = 0xC000_0035;
    /// A name Windows or the vault cannot have.
    OBJECT_NAME_INVALID = 0xC000_0033;
    /// A file where a folder is needed.
    NOT_A_DIRECTORY = 0xC000_0103;
    /// A folder where a file is needed.
    FILE_IS_A_DIRECTORY = 0xC000_00BA;
    /// The folder is not empty.
    DIRECTORY_NOT_EMPTY = 0xC000_0101;
    /// An invalid request.
    INVALID_PARAMETER = 0xC000_000D;
    /// A name too long.
    NAME_TOO_LONG = 0xC000_0106;
    /// A file too large.
    FILE_TOO_LARGE = 0xC000_0904;
    /// No space on the server or the spill disk.
    DISK_FULL = 0xC000_007F;
    /// Held by someone else (here: the folder is locked by another client); programs retry.
    SHARING_VIOLATION = 0xC000_0043;
    /// Try again.
    RETRY = 0xC000_022D;
    /// A move to another volume.
    NOT_SAME_DEVICE = 0xC000_00D4;
    /// Not supported.
    NOT_SUPPORTED = 0xC000_00BB;
    /// Access denied (by the server, or replacing a folder).
    ACCESS_DENIED = 0xC000_0022;
    /// Data that failed verification.
    FILE_CORRUPT_ERROR = 0xC000_0102;
    /// The server cannot be reached.
    NETWORK_UNREACHABLE = 0xC000_023C;
    /// Any other I/O failure.
    IO_DEVICE_ERROR = 0xC000_0185;
    /// The file is to be deleted when its last handle closes: no new opens.
    DELETE_PENDING = 0xC000_0056;
    /// A read-only file cannot be deleted.
    CANNOT_DELETE = 0xC000_0121;
    /// A buffer too small for the answer.
    BUFFER_OVERFLOW = 0x8000_0005;
    /// A request the file system does not handle.
    INVALID_DEVICE_REQUEST = 0xC000_0010;
}

impl NtStatus {
    /// The NTSTATUS of an engine error.
    pub fn from_fs(error: FsError) -> Self {
        match error {
            FsError::NotFound => Self::OBJECT_NAME_NOT_FOUND,
            FsError::Exists => Self::OBJECT_NAME_COLLISION,
            FsError::NotADirectory => Self::NOT_A_DIRECTORY,
            FsError::IsADirectory => Self::FILE_IS_A_DIRECTORY,
            FsError::NotEmpty => Self::DIRECTORY_NOT_EMPTY,
            FsError::InvalidArgument => Self::INVALID_PARAMETER,
            FsError::NameTooLong => Self::NAME_TOO_LONG,
            FsError::FileTooBig => Self::FILE_TOO_LARGE,
            FsError::NoSpace => Self::DISK_FULL,
            FsError::Busy => Self::SHARING_VIOLATION,
            FsError::RetryLater => Self::RETRY,
            FsError::CrossDevice => Self::NOT_SAME_DEVICE,
            FsError::NotSupported | FsError::NotPermitted | FsError::IsALink => Self::NOT_SUPPORTED,
            FsError::AccessDenied => Self::ACCESS_DENIED,
            FsError::Tampered => Self::FILE_CORRUPT_ERROR,
            FsError::Unreachable => Self::NETWORK_UNREACHABLE,
            FsError::LockLost | FsError::Io => Self::IO_DEVICE_ERROR,
        }
    }

    /// Whether this is success (or a warning), not an error.
    pub fn is_success(self) -> bool {
        self.0 >= 0
    }
}

impl From<FsError> for NtStatus {
    fn from(error: FsError) -> Self {
        Self::from_fs(error)
    }
}

impl From<NameError> for NtStatus {
    fn from(_: NameError) -> Self {
        Self::OBJECT_NAME_INVALID
    }
}

impl std::fmt::Display for NtStatus {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "NTSTATUS {:#010X}", self.0 as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engine_error_is_an_ntstatus_error() {
        let all = [
            FsError::NotFound,
            FsError::Exists,
            FsError::NotADirectory,
            FsError::IsADirectory,
            FsError::NotEmpty,
            FsError::InvalidArgument,
            FsError::NameTooLong,
            FsError::FileTooBig,
            FsError::NoSpace,
            FsError::Busy,
            FsError::RetryLater,
            FsError::CrossDevice,
            FsError::NotSupported,
            FsError::AccessDenied,
            FsError::Tampered,
            FsError::Unreachable,
            FsError::LockLost,
            FsError::Io,
        ];
        for error in all {
            let status = NtStatus::from_fs(error);
            assert!(!status.is_success(), "{error:?}");
            assert_eq!((status.0 as u32) >> 30, 3, "{error:?} has severity ERROR");
        }
        assert_eq!(NtStatus::from_fs(FsError::NotFound).0 as u32, 0xC000_0034);
        assert_eq!(NtStatus::from_fs(FsError::NoSpace).0 as u32, 0xC000_007F);
        assert_eq!(NtStatus::from_fs(FsError::Tampered).0 as u32, 0xC000_0102);
    }
}
