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
//! - [`content`]: a file's clear text in RAM or, above a threshold, encrypted in an anonymous spill file;
//! - [`format`]: the format seam (what a listing, a read, a store and a change cost) and its two formats;
//! - [`vfs`]: the one file-system engine over every format;
//! - [`mount`]: the platform adapters over the engine: fuser, the Windows layer, the mount session;
//! - [`server`]: `cloakfs serve`, the embedded server;
//! - [`cli`]: the command line.
#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod cli;
pub mod conflict;
pub mod content;
pub mod crypto;
pub mod cryptomator;
pub mod format;
pub mod metadata;
pub mod mount;
pub mod platform;
pub mod server;
pub mod session;
pub mod storage;
pub mod trust;
pub mod vault;
pub mod vfs;
