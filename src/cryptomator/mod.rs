//! Cryptomator's vault format 8, from its published specification (docs.cryptomator.org, "Security
//! Architecture"; the byte layout is restated in docs/FORMAT.md §7): the masterkey file and the signed vault
//! configuration ([`masterkey`], [`config`]), encrypted names and directory ids ([`names`]), file headers and
//! 32 KiB content chunks in both cipher combinations ([`content`]), and the vault's operations over any
//! [`Store`](crate::storage::Store) ([`vault`]).
//!
//! Every byte read from the store is authenticated before it is used: a header, chunk or name that does not
//! verify is a [`CryptomatorError::Tampered`] naming the ciphertext path, never plaintext.

pub mod config;
pub mod content;
pub mod error;
pub mod masterkey;
pub mod names;
pub mod vault;

pub use config::{CipherCombo, VaultConfig};
pub use content::ContentCryptor;
pub use error::CryptomatorError;
pub use masterkey::{Masterkey, MasterkeyFile};
pub use names::NameCryptor;
pub use vault::{CryptomatorVault, EntryKind, VaultEntry};
