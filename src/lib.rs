//! cloakfs: mount Nextcloud end-to-end encrypted folders as a local drive, keeping plaintext only in RAM.
//!
//! The crate is split by concept (see docs/DESIGN.md):
//! - [`crypto`]: file content AEAD, RSA identities and certificates, mnemonic, private-key wrapping, CMS;
//! - [`metadata`]: the folder-metadata model (format 2.0/2.1; legacy 1.x is refused by version) and its codec;
//! - [`storage`]: the one storage seam (WebDAV, SFTP, a local folder) and Nextcloud's end-to-end encryption
//!   API as its extension;
//! - [`trust`]: trust on first use of the server's and users' keys, and folder counters;
//! - [`session`]: creating and unlocking a user's keys against a server;
//! - [`vault`]: an encrypted folder tree by clear names: resolve, read, and locked, counter-checked changes;
//! - [`mount`]: the FUSE mount: file-system core, fuser adapter, control socket;
//! - [`server`]: `cloakfs serve`, the embedded server;
//! - [`cli`]: the command line.
#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod cli;
pub mod crypto;
pub mod cryptomator;
pub mod metadata;
pub mod mount;
pub mod platform;
pub mod server;
pub mod session;
pub mod storage;
pub mod trust;
pub mod vault;
