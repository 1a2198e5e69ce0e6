//! Cryptography of Nextcloud's end-to-end encryption: file content, keys, mnemonic, signatures.
//!
//! Every secret lives in a type that wipes itself on drop and hides itself from `Debug`.

pub mod cms_signature;
pub mod file_cipher;
pub mod gcm;
pub mod identity;
pub mod locked;
pub mod mnemonic;
pub mod private_key_wrap;
pub mod secret;
pub mod server_name;

pub use identity::{IdentityError, PrivateIdentity, PublicKey, UserCertificate};
pub use mnemonic::{Mnemonic, MnemonicError};
pub use secret::{FileKey, MetadataKey, Nonce};
