//! A Cryptomator vault over a [`Store`]: opening (configuration, masterkey, passphrase), creating, resolving
//! clear paths to their encrypted nodes, listing folders and reading files ([`read`], by ranges in
//! [`reader`]), and the
//! changes: write, mkdir, remove, rename ([`write`]).
//!
//! Layout (docs/FORMAT.md §7): a folder with id `ID` keeps its entries in `d/XX/YYYY…` (from
//! [`NameCryptor::dir_path`]); an entry is a node named by its encrypted name: a file `NAME.c9r` holding
//! the contents, or a folder `NAME.c9r/` holding `dir.c9r` (a sub-folder's id) or `symlink.c9r`. A node
//! whose encrypted name is longer than the threshold is `HASH.c9s/` with `name.c9s` and `contents.c9r`,
//! `dir.c9r` or `symlink.c9r`. Folders also hold `dirid.c9r`, their own id encrypted as a file, which
//! Cryptomator keeps to recover lost `dir.c9r` files; it is written here and never trusted when reading.

mod read;
mod reader;
mod write;

use std::time::SystemTime;

use super::config::{unsupported_format, UnverifiedConfig, CONFIG_FILE};
use super::masterkey::MASTERKEY_FILE;
use super::names::{is_valid_name, shortened_name, NAME_SUFFIX, ROOT_DIR_ID};
use super::{CipherCombo, ContentCryptor, CryptomatorError, Masterkey, MasterkeyFile, NameCryptor, VaultConfig};
use crate::storage::RemoteErrorKind;
use crate::storage::{Store, WriteCondition};

pub use reader::{FileReader, FIRST_WINDOW_CHUNKS, MAX_WINDOW_CHUNKS};
pub use write::{ClearText, Written};

/// The file in a long-name node holding the full encrypted name.
pub const NAME_FILE: &str = "name.c9s";
/// The file in a long-name node holding a file's contents.
pub const CONTENTS_FILE: &str = "contents.c9r";
/// The file in a folder node holding the folder's id.
pub const DIR_FILE: &str = "dir.c9r";
/// The file in a symlink node holding the encrypted target.
pub const SYMLINK_FILE: &str = "symlink.c9r";
/// The encrypted copy of a folder's own id in its content folder.
pub const DIR_ID_BACKUP_FILE: &str = "dirid.c9r";

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A file.
    File,
    /// A folder.
    Dir,
    /// A symbolic link.
    Symlink,
}

/// Where an entry's bytes are in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The node: `d/XX/YYYY…/NAME.c9r` or `…/HASH.c9s`.
    pub path: Vec<String>,
    /// A `.c9s` node (a folder holding `name.c9s`).
    pub shortened: bool,
}

impl Node {
    /// The file holding a file's contents: the node itself, or `contents.c9r` in a shortened node.
    pub fn contents_path(&self) -> Vec<String> {
        if self.shortened {
            self.child(CONTENTS_FILE)
        } else {
            self.path.clone()
        }
    }

    /// A file inside the node (folder nodes).
    pub fn child(&self, name: &str) -> Vec<String> {
        let mut path = self.path.clone();
        path.push(name.to_owned());
        path
    }

    /// The node's path as text, for messages.
    pub fn display(&self) -> String {
        self.path.join("/")
    }
}

/// An entry of a folder, decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultEntry {
    /// The clear name.
    pub name: String,
    /// What it is.
    pub kind: EntryKind,
    /// Clear size in bytes (files).
    pub size: u64,
    /// Last modification, as the store says.
    pub modified: Option<SystemTime>,
    /// Where it is stored.
    pub node: Node,
    /// The store's version of the contents file (files), for conditional overwrites.
    pub version: String,
    /// The folder's id (folders).
    pub dir_id: Option<String>,
}

/// A folder as found by [`CryptomatorVault::resolve_dir`]: its id and where its entries are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirRef {
    /// The folder's id (empty for the root).
    pub id: String,
    /// `d/XX/YYYY…`.
    pub content_path: Vec<String>,
}

/// An open vault: its store, verified configuration and keys.
#[derive(Debug)]
pub struct CryptomatorVault<S: Store> {
    store: S,
    config: VaultConfig,
    names: NameCryptor,
    content: std::sync::Arc<ContentCryptor>,
}

/// Splits a clear path (`/a/b`, `a/b`, `/`) into validated names.
pub fn clear_segments(path: &str) -> Result<Vec<String>, CryptomatorError> {
    path.split('/')
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            if is_valid_name(segment) {
                Ok(segment.to_owned())
            } else {
                Err(CryptomatorError::InvalidName(segment.to_owned()))
            }
        })
        .collect()
}

impl<S: Store> CryptomatorVault<S> {
    /// Opens the vault in `store` with `passphrase`: the configuration, its masterkey file unlocked, the
    /// configuration's signature verified. Refuses other formats and key schemes with what to do.
    pub async fn open(store: S, passphrase: &str) -> Result<Self, CryptomatorError> {
        let config_bytes = match store.read(&[CONFIG_FILE.to_owned()], None).await {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == RemoteErrorKind::NotFound => {
                return Err(Self::why_no_config(&store).await);
            }
            Err(error) => return Err(error.into()),
        };
        let unverified = UnverifiedConfig::parse(&config_bytes)?;
        if unverified.claimed_format() != Some(super::config::VAULT_FORMAT) {
            return Err(unsupported_format(unverified.claimed_format()));
        }
        let masterkey_name = unverified.masterkey_file()?;
        let masterkey_bytes = store.read(std::slice::from_ref(&masterkey_name), None).await?;
        let masterkey_file = MasterkeyFile::parse(&masterkey_bytes, &masterkey_name)?;
        let masterkey = masterkey_file.unlock(passphrase, &masterkey_name)?;
        let config = unverified.verify(&masterkey)?;
        Ok(Self::with_keys(store, config, &masterkey))
    }

    /// Why there is no `vault.cryptomator`: an older vault (its masterkey file says its format), or none.
    async fn why_no_config(store: &S) -> CryptomatorError {
        match store.read(&[MASTERKEY_FILE.to_owned()], None).await {
            Ok(bytes) => match MasterkeyFile::parse(&bytes, MASTERKEY_FILE) {
                Ok(file) if file.version < 8 => unsupported_format(Some(u64::from(file.version))),
                _ => CryptomatorError::malformed(CONFIG_FILE, "missing beside masterkey.cryptomator"),
            },
            Err(_) => CryptomatorError::NoVault(store.describe()),
        }
    }

    fn with_keys(store: S, config: VaultConfig, masterkey: &Masterkey) -> Self {
        Self {
            names: NameCryptor::new(masterkey),
            content: std::sync::Arc::new(ContentCryptor::new(masterkey, config.cipher_combo)),
            store,
            config,
        }
    }

    /// Creates a new format-8 vault in `store` (which must hold no vault yet) with `passphrase`: the
    /// masterkey file, the signed configuration and the root folder.
    pub async fn create(store: S, passphrase: &str, combo: CipherCombo) -> Result<Self, CryptomatorError> {
        let masterkey = Masterkey::generate();
        let config = VaultConfig::new(combo);
        let masterkey_json = MasterkeyFile::create(&masterkey, passphrase).to_json();
        let exists = |error: crate::storage::RemoteError| {
            if error.kind() == RemoteErrorKind::Exists {
                CryptomatorError::VaultExists(store.describe())
            } else {
                error.into()
            }
        };
        store
            .write(&[MASTERKEY_FILE.to_owned()], masterkey_json.into_bytes().into(), WriteCondition::CreateOnly)
            .await
            .map_err(exists)?;
        let vault = Self::with_keys(store, config, &masterkey);
        let root = vault.names.dir_path(ROOT_DIR_ID);
        for depth in 1..=root.len() {
            vault.make_dir_if_missing(&root[..depth]).await?;
        }
        vault
            .store
            .write(
                &[CONFIG_FILE.to_owned()],
                vault.config.to_jwt(&masterkey).into_bytes().into(),
                WriteCondition::CreateOnly,
            )
            .await?;
        Ok(vault)
    }

    /// The verified configuration.
    pub fn config(&self) -> &VaultConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The content cryptor.
    pub fn content(&self) -> &ContentCryptor {
        &self.content
    }

    async fn make_dir_if_missing(&self, path: &[String]) -> Result<(), CryptomatorError> {
        Ok(self.store.make_dir_if_missing(path).await?)
    }

    /// The root folder.
    pub fn root(&self) -> DirRef {
        DirRef { id: ROOT_DIR_ID.to_owned(), content_path: self.names.dir_path(ROOT_DIR_ID) }
    }

    /// The folder with id `id`.
    pub fn dir_ref(&self, id: &str) -> DirRef {
        DirRef { id: id.to_owned(), content_path: self.names.dir_path(id) }
    }

    /// The node `clear_name` has (or would have) in `parent`.
    pub fn node_for(&self, parent: &DirRef, clear_name: &str) -> (Node, String) {
        let encrypted = self.names.encrypt_name(&parent.id, clear_name);
        let mut path = parent.content_path.clone();
        if encrypted.len() > self.config.shortening_threshold {
            path.push(shortened_name(&encrypted));
            (Node { path, shortened: true }, encrypted)
        } else {
            path.push(encrypted.clone());
            (Node { path, shortened: false }, encrypted)
        }
    }

    /// The folder at the clear path `segments`.
    pub async fn resolve_dir(&self, segments: &[String]) -> Result<DirRef, CryptomatorError> {
        let mut current = self.root();
        for (depth, name) in segments.iter().enumerate() {
            let entry = self
                .lookup(&current, name)
                .await?
                .ok_or_else(|| CryptomatorError::NotFound(format!("/{}", segments[..=depth].join("/"))))?;
            current = match (entry.kind, entry.dir_id) {
                (EntryKind::Dir, Some(id)) => self.dir_ref(&id),
                _ => return Err(CryptomatorError::NotADirectory(format!("/{}", segments[..=depth].join("/")))),
            };
        }
        Ok(current)
    }

    /// The entry at the clear path `segments` with its parent folder; `None` for the root.
    pub async fn resolve(&self, segments: &[String]) -> Result<Option<(DirRef, VaultEntry)>, CryptomatorError> {
        let Some((name, parent_segments)) = segments.split_last() else { return Ok(None) };
        let parent = self.resolve_dir(parent_segments).await?;
        let entry = self
            .lookup(&parent, name)
            .await?
            .ok_or_else(|| CryptomatorError::NotFound(format!("/{}", segments.join("/"))))?;
        Ok(Some((parent, entry)))
    }
}

/// The clear name of an encrypted node name (`NAME.c9r`), if it is one.
pub(super) fn is_encrypted_node_name(name: &str) -> bool {
    name.ends_with(NAME_SUFFIX) && name != DIR_ID_BACKUP_FILE && name.len() > NAME_SUFFIX.len()
}
