//! Reading a tree by clear paths: listings (taking in file drops first) and whole files.

use zeroize::Zeroizing;

use super::{plaintext_len, split_clear_path, ListEntry, Origin, Target, Vault, VaultError};
use crate::crypto::file_cipher::decrypt_to_vec;
use crate::storage::{E2eeApi, Progress, RemoteErrorKind};

impl<R: E2eeApi> Vault<R> {
    /// Lists a folder: decrypted names inside encrypted trees; plain entries (marking encrypted folders)
    /// outside.
    pub async fn list(&self, clear_path: &str) -> Result<Vec<ListEntry>, VaultError> {
        let clear = split_clear_path(clear_path)?;
        let plain = self.open_tree(&clear).await?.err();
        if let Some(entry) = plain {
            let entry = entry.ok_or(VaultError::NotFound)?;
            if !entry.is_dir {
                return Err(VaultError::NotAFolder);
            }
            let entries = self.remote.list_detailed(&clear, 1).await?;
            return Ok(entries
                .into_iter()
                .skip(1)
                .map(|entry| ListEntry {
                    name: Zeroizing::new(entry.name),
                    is_dir: entry.is_dir,
                    size: (!entry.is_dir).then_some(entry.size),
                    modified: entry.modified,
                    is_encrypted: entry.is_encrypted,
                    origin: Origin::Member,
                })
                .collect());
        }
        let (tree, mut target) = self.resolve_in_tree(&clear).await?;
        if let Target::Folder(folder) = &target {
            if folder.is_top && self.has_filedrop_for_me(folder) && self.take_in_drops(&tree).await? {
                target = self.resolve_in_tree(&clear).await?.1;
            }
        }
        let folder = match target {
            Target::Folder(folder) => folder,
            Target::File { .. } => return Err(VaultError::NotAFolder),
            Target::Missing { .. } => return Err(VaultError::NotFound),
        };
        let listed = self.remote.list_detailed(&folder.remote_path, 1).await?;
        let on_server = |uid: &str| listed.iter().skip(1).find(|entry| entry.name == uid);
        let mut entries = Vec::new();
        for (uid, name) in &folder.folder().folders {
            entries.push(ListEntry {
                name: name.clone(),
                is_dir: true,
                size: None,
                modified: on_server(uid).and_then(|entry| entry.modified),
                is_encrypted: false,
                origin: Origin::Member,
            });
        }
        for (uid, file) in &folder.folder().files {
            let server = on_server(uid);
            entries.push(ListEntry {
                name: file.filename.clone(),
                is_dir: false,
                size: server.map(|entry| plaintext_len(entry.size)),
                modified: server.and_then(|entry| entry.modified),
                is_encrypted: false,
                origin: if super::filedrop::was_dropped(file) { Origin::Dropped } else { Origin::Member },
            });
        }
        if folder.is_top {
            for file in self.pending_drops(&folder) {
                let server = on_server(&file.0);
                entries.push(ListEntry {
                    name: file.1.filename.clone(),
                    is_dir: false,
                    size: server.map(|entry| plaintext_len(entry.size)),
                    modified: server.and_then(|entry| entry.modified),
                    is_encrypted: false,
                    origin: Origin::PendingDrop,
                });
            }
        }
        entries.sort_by(|left, right| left.name.cmp(&right.name));
        Ok(entries)
    }

    /// Downloads, verifies and decrypts a file. The plaintext is wiped when dropped.
    pub async fn read_file(
        &self,
        clear_path: &str,
        progress: Option<Progress>,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let clear = split_clear_path(clear_path)?;
        let (_, target) = self.resolve_in_tree(&clear).await?;
        let (parent, server_name, entry) = match target {
            Target::File { parent, server_name, entry } => (parent, server_name, entry),
            Target::Folder(_) => return Err(VaultError::IsAFolder),
            Target::Missing { .. } => return Err(VaultError::NotFound),
        };
        let mut path = parent.remote_path.clone();
        path.push(server_name.clone());
        let blob = match crate::storage::read_reporting(&self.remote, &path, progress).await {
            Err(error) if error.kind() == RemoteErrorKind::NotFound => {
                return Err(VaultError::MissingBlob(server_name))
            }
            other => other?,
        };
        let _span = tracing::debug_span!("decrypt", server_name = %server_name, len = blob.len()).entered();
        decrypt_to_vec(&entry.key, &entry.nonce, Some(&entry.authentication_tag), &blob[..])
            .map_err(|source| VaultError::Content { server_name, source })
    }
}
