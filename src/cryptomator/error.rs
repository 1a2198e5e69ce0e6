//! Errors of the Cryptomator format. Errors about stored data (`Malformed`, `Tampered`, `Changed`,
//! `Unsupported`, `WrongPassphrase`) name the ciphertext path only and may be logged; errors about what the
//! caller asked for (`NotFound`, `Exists`, `NotADirectory`, `IsADirectory`, `NotEmpty`, `InvalidName`,
//! `IntoItself`) carry the clear path the user typed, for the CLI's message, and are never logged.

use crate::storage::{RemoteError, RemoteErrorKind};

/// What went wrong reading or writing a Cryptomator vault.
#[derive(Debug, thiserror::Error)]
pub enum CryptomatorError {
    /// The passphrase does not unwrap the masterkey.
    #[error("wrong passphrase: it does not unlock {path}")]
    WrongPassphrase {
        /// The masterkey file.
        path: String,
    },
    /// A vault format or scheme this build does not read.
    #[error("{path}: {reason}")]
    Unsupported {
        /// The file that says so.
        path: String,
        /// What it is and what to do.
        reason: String,
    },
    /// A structure that is not what the format says (a bad length, bad base64, bad JSON).
    #[error("{path}: malformed: {reason}")]
    Malformed {
        /// The ciphertext path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Authentication failed: the ciphertext was changed, or belongs to another file or directory.
    #[error("{path}: {what} does not authenticate: the server changed it, or moved it here from elsewhere")]
    Tampered {
        /// The ciphertext path.
        path: String,
        /// Which part (file header, chunk N, name, vault configuration).
        what: String,
    },
    /// No vault at the location given.
    #[error("no Cryptomator vault at {0} (no vault.cryptomator there): give the vault's own folder")]
    NoVault(String),
    /// A vault exists already where one was to be created.
    #[error("a Cryptomator vault exists already at {0}: nothing was changed")]
    VaultExists(String),
    /// A clear path that does not exist in the vault.
    #[error("no such file or folder in the vault: {0}")]
    NotFound(String),
    /// The clear path exists already.
    #[error("exists already in the vault: {0}")]
    Exists(String),
    /// A folder was expected.
    #[error("not a folder: {0}")]
    NotADirectory(String),
    /// A file was expected.
    #[error("is a folder: {0}")]
    IsADirectory(String),
    /// A folder that still holds entries.
    #[error("folder not empty: {0}")]
    NotEmpty(String),
    /// A folder cannot move into itself or below itself.
    #[error("cannot move a folder into itself: {0}")]
    IntoItself(String),
    /// A name the format cannot hold (empty, `.`, `..`, a `/` or NUL).
    #[error("invalid name {0:?}")]
    InvalidName(String),
    /// Another writer changed the file since it was read (ETag or modification check failed).
    #[error("{path}: changed on the server by another writer since it was read")]
    Changed {
        /// The ciphertext path.
        path: String,
    },
    /// The store failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
}

impl CryptomatorError {
    /// A tamper error for `path`.
    pub fn tampered(path: impl Into<String>, what: impl Into<String>) -> Self {
        Self::Tampered { path: path.into(), what: what.into() }
    }

    /// A malformed-structure error for `path`.
    pub fn malformed(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Malformed { path: path.into(), reason: reason.into() }
    }

    /// The store's error kind, if the store failed.
    pub fn remote_kind(&self) -> Option<RemoteErrorKind> {
        match self {
            Self::Remote(error) => Some(error.kind()),
            _ => None,
        }
    }
}
