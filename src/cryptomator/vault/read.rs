//! Reading a vault: looking an entry up by its clear name, listing a folder (entries that do not
//! authenticate are reported, never shown), and reading a file whole (ranges: [`super::reader`]).

use futures_util::StreamExt as _;
use zeroize::Zeroizing;

use super::{
    is_encrypted_node_name, CryptomatorVault, DirRef, EntryKind, Node, VaultEntry, CONTENTS_FILE, DIR_FILE, NAME_FILE,
    SYMLINK_FILE,
};
use crate::cryptomator::names::{shortened_name, MAX_DIR_ID_LEN, SHORT_SUFFIX};
use crate::cryptomator::CryptomatorError;
use crate::storage::{RemoteError, RemoteErrorKind};
use crate::storage::{Store, StoreEntry};

/// Listings read this many folder nodes (their `dir.c9r`) at once.
const LIST_PARALLEL: usize = 16;

fn not_found(error: &RemoteError) -> bool {
    error.kind() == RemoteErrorKind::NotFound
}

impl<S: Store> CryptomatorVault<S> {
    /// The entry named `clear_name` in `parent`, if there is one.
    pub async fn lookup(&self, parent: &DirRef, clear_name: &str) -> Result<Option<VaultEntry>, CryptomatorError> {
        let (node, _) = self.node_for(parent, clear_name);
        let found = match self.store.stat(&node.path).await {
            Ok(found) => found,
            Err(error) if not_found(&error) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        self.entry_at(node, clear_name.to_owned(), &found).await.map(Some)
    }

    /// The entry of a node whose clear name is known.
    async fn entry_at(&self, node: Node, name: String, found: &StoreEntry) -> Result<VaultEntry, CryptomatorError> {
        let mut entry = VaultEntry {
            name,
            kind: EntryKind::File,
            size: 0,
            modified: found.modified,
            version: found.version.clone(),
            dir_id: None,
            node,
        };
        if !found.is_dir {
            if entry.node.shortened {
                return Err(CryptomatorError::malformed(entry.node.display(), "a .c9s node is a file, not a folder"));
            }
            entry.size = self.content.cleartext_size(found.size, &entry.node.display())?;
            return Ok(entry);
        }
        if let Some(id) = self.read_dir_id(&entry.node).await? {
            entry.kind = EntryKind::Dir;
            entry.dir_id = Some(id);
            return Ok(entry);
        }
        for (inner, kind) in [(SYMLINK_FILE, EntryKind::Symlink), (CONTENTS_FILE, EntryKind::File)] {
            if kind == EntryKind::File && !entry.node.shortened {
                continue;
            }
            match self.store.stat(&entry.node.child(inner)).await {
                Ok(file) => {
                    entry.kind = kind;
                    entry.version = file.version.clone();
                    entry.modified = file.modified.or(entry.modified);
                    entry.size = self.content.cleartext_size(file.size, &entry.node.child(inner).join("/"))?;
                    return Ok(entry);
                }
                Err(error) if not_found(&error) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Err(CryptomatorError::malformed(
            entry.node.display(),
            "a node with neither dir.c9r, symlink.c9r nor contents.c9r",
        ))
    }

    /// The folder id in a node's `dir.c9r`, or `None` if it has none.
    async fn read_dir_id(&self, node: &Node) -> Result<Option<String>, CryptomatorError> {
        let path = node.child(DIR_FILE);
        let bytes = match self.store.read(&path, None).await {
            Ok(bytes) => bytes,
            Err(error) if not_found(&error) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let shown = path.join("/");
        let id = String::from_utf8(bytes).map_err(|_| CryptomatorError::malformed(&shown, "not UTF-8"))?;
        if id.is_empty() || id.len() > MAX_DIR_ID_LEN || id.chars().any(char::is_control) {
            return Err(CryptomatorError::malformed(shown, "not a directory id"));
        }
        Ok(Some(id))
    }

    /// The entries of the folder `dir`, by clear name, and what could not be read (each naming its
    /// ciphertext path): a name that does not authenticate (tampered, or moved here from another folder),
    /// a broken node. Files the format does not know (`.DS_Store`, a sync client's conflict files) are
    /// skipped.
    pub async fn list(&self, dir: &DirRef) -> Result<(Vec<VaultEntry>, Vec<CryptomatorError>), CryptomatorError> {
        let children = match self.store.list(&dir.content_path).await {
            Ok(children) => children,
            // A folder whose content folder is gone (Cryptomator shows it empty too).
            Err(error) if not_found(&error) && !dir.id.is_empty() => {
                tracing::warn!(folder = %dir.content_path.join("/"), "the content folder of a folder is missing");
                Vec::new()
            }
            Err(error) => return Err(error.into()),
        };
        let results: Vec<Option<Result<VaultEntry, CryptomatorError>>> = futures_util::stream::iter(children)
            .map(|child| self.listed_entry(dir, child))
            .buffered(LIST_PARALLEL)
            .collect()
            .await;
        let (mut entries, mut problems) = (Vec::new(), Vec::new());
        for result in results.into_iter().flatten() {
            match result {
                Ok(entry) => entries.push(entry),
                // The store failing is an error of the whole listing, not of one entry.
                Err(CryptomatorError::Remote(error)) => return Err(error.into()),
                Err(problem) => {
                    tracing::warn!(error = %problem, "an entry of a folder was left out");
                    problems.push(problem);
                }
            }
        }
        entries.sort_by(|left, right| left.name.cmp(&right.name));
        Ok((entries, problems))
    }

    async fn listed_entry(&self, dir: &DirRef, child: StoreEntry) -> Option<Result<VaultEntry, CryptomatorError>> {
        let mut path = dir.content_path.clone();
        path.push(child.name.clone());
        let shown = path.join("/");
        if child.name.ends_with(SHORT_SUFFIX) && child.is_dir {
            let node = Node { path, shortened: true };
            return Some(self.shortened_entry(dir, node, &child).await);
        }
        if !is_encrypted_node_name(&child.name) {
            tracing::debug!(entry = %shown, "not an entry of the format; skipped");
            return None;
        }
        let name = match self.names.decrypt_name(&dir.id, &child.name, &shown) {
            Ok(name) => name,
            Err(error) => return Some(Err(error)),
        };
        Some(self.entry_at(Node { path, shortened: false }, name, &child).await)
    }

    async fn shortened_entry(
        &self,
        dir: &DirRef,
        node: Node,
        found: &StoreEntry,
    ) -> Result<VaultEntry, CryptomatorError> {
        let name_path = node.child(NAME_FILE);
        let encrypted = self.store.read(&name_path, None).await?;
        let encrypted =
            String::from_utf8(encrypted).map_err(|_| CryptomatorError::malformed(name_path.join("/"), "not UTF-8"))?;
        let encrypted = encrypted.trim();
        let node_name = node.path.last().cloned().unwrap_or_default();
        if shortened_name(encrypted) != node_name {
            return Err(CryptomatorError::tampered(node.display(), "name.c9s (it does not hash to its node's name)"));
        }
        let name = self.names.decrypt_name(&dir.id, encrypted, &node.display())?;
        self.entry_at(node, name, found).await
    }

    /// A whole file (or a symlink's target), downloaded, authenticated and decrypted.
    pub async fn read_file(&self, entry: &VaultEntry) -> Result<Zeroizing<Vec<u8>>, CryptomatorError> {
        let path = match entry.kind {
            EntryKind::File => entry.node.contents_path(),
            EntryKind::Symlink => entry.node.child(SYMLINK_FILE),
            EntryKind::Dir => return Err(CryptomatorError::IsADirectory(entry.name.clone())),
        };
        let sealed = Zeroizing::new(self.store.read(&path, None).await?);
        self.content.decrypt_file(&sealed, &path.join("/"))
    }
}
