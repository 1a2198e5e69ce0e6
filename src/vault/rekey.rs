//! Re-encrypting every file of a tree under fresh keys (`cloakfs unshare --rekey-files`), so that file
//! keys a removed member kept open nothing that is on the server afterwards.
//!
//! Each file gets a fresh key, nonce and server name; the old blob is deleted in the same locked change
//! that rewrites its folder's metadata. Work goes in batches of at most [`BATCH_FILES`] files or
//! [`BATCH_BYTES`] bytes per lock. A re-keyed entry carries `cloakfsKeyEpoch`, the checksum of the metadata
//! key in force when re-keying began, so a run that was interrupted skips what is done when started again.
//! At the end an audit entry records it.

use bytes::Bytes;

use super::write::BlobOp;
use super::{TreeRoot, Vault, VaultError};
use crate::crypto::file_cipher::{decrypt_to_vec, encrypt_buffer};
use crate::crypto::server_name::random_server_name;
use crate::metadata::audit::AuditEvent;
use crate::storage::{E2eeApi, RemoteErrorKind};

/// Most files re-encrypted under one lock.
pub const BATCH_FILES: usize = 32;
/// Most plaintext bytes re-encrypted under one lock.
pub const BATCH_BYTES: usize = 64 << 20;
/// The file-entry field marking the re-keying epoch.
pub const EPOCH_FIELD: &str = "cloakfsKeyEpoch";

impl<R: E2eeApi> Vault<R> {
    /// Re-encrypts every file of the tree whose top folder is at `clear_path` that is not yet marked with
    /// the current epoch; returns how many were re-encrypted in this run.
    pub async fn rekey_files(&self, clear_path: &str) -> Result<usize, VaultError> {
        self.refuse_in_recovery_mode()?;
        let (tree, top) = self.top_folder(clear_path).await?;
        let epoch = top.folder().key_checksums.as_ref().and_then(|sums| sums.last().cloned()).unwrap_or_default();
        let mut done = 0;
        let folders: Vec<Vec<String>> =
            self.all_folders(&tree).await?.into_iter().map(|view| view.remote_path).collect();
        for path in folders {
            loop {
                let batch = self.rekey_batch(&tree, &path, &epoch).await?;
                done += batch;
                if batch == 0 {
                    break;
                }
            }
        }
        // Record it (a locked rewrite of the top folder with one more audit entry).
        let top_path = tree.path.clone();
        let keys = tree.keys();
        let (members, key) = (keys.users, keys.metadata_key);
        let file_id = top.file_id;
        self.transact(&tree, &top_path, std::slice::from_ref(&top_path), |folders, views| {
            let trail = crate::metadata::audit::AuditTrail::from_fields(&folders[0].unknown)
                .map_err(|source| VaultError::Audit { file_id, source })?;
            let recovery = self
                .recovery_for(file_id, Some(&views[0].decoded.document), trail.as_ref(), false)?
                .map(|key| key.fingerprint());
            self.append_audit(
                &mut folders[0],
                file_id,
                &members,
                &members,
                AuditEvent::FilesRekeyed,
                None,
                &key,
                recovery,
            )?;
            Ok(Vec::new())
        })
        .await?;
        Ok(done)
    }

    /// Re-encrypts up to one batch of the files of the folder at `path` not marked with `epoch`.
    async fn rekey_batch(&self, tree: &TreeRoot, path: &[String], epoch: &str) -> Result<usize, VaultError> {
        let view = self.load_folder(tree, path).await?;
        let mut prepared = Vec::new();
        let mut bytes = 0usize;
        for (uid, entry) in &view.folder().files {
            if entry.unknown.get(EPOCH_FIELD).and_then(|value| value.as_str()) == Some(epoch) {
                continue;
            }
            let mut blob_path = path.to_vec();
            blob_path.push(uid.clone());
            let blob = match self.remote.read(&blob_path, None).await {
                Err(error) if error.kind() == RemoteErrorKind::NotFound => {
                    return Err(VaultError::MissingBlob(uid.clone()))
                }
                other => other?,
            };
            let plaintext = decrypt_to_vec(&entry.key, &entry.nonce, Some(&entry.authentication_tag), &blob[..])
                .map_err(|source| VaultError::Content { server_name: uid.clone(), source })?;
            let (sealed_blob, sealed) = encrypt_buffer(&plaintext)
                .map_err(|source| VaultError::Content { server_name: uid.clone(), source })?;
            bytes += plaintext.len();
            prepared.push((uid.clone(), entry.key.clone(), random_server_name(), Bytes::from(sealed_blob), sealed));
            if prepared.len() >= super::rekey::BATCH_FILES || bytes >= BATCH_BYTES {
                break;
            }
        }
        if prepared.is_empty() {
            return Ok(0);
        }
        let count = prepared.len();
        let folder_path = path.to_vec();
        self.transact(tree, &folder_path, std::slice::from_ref(&folder_path), |folders, _| {
            let folder = &mut folders[0];
            let mut steps = Vec::new();
            for (old_uid, old_key, new_uid, body, sealed) in &prepared {
                // Only if the file is still the one read (another client may have changed it meanwhile).
                let Some(mut entry) = folder.files.get(old_uid).filter(|entry| entry.key == *old_key).cloned() else {
                    continue;
                };
                folder.files.remove(old_uid);
                entry.key = sealed.key.clone();
                entry.nonce = sealed.nonce.clone();
                entry.authentication_tag = sealed.tag;
                entry.unknown.insert(EPOCH_FIELD.to_owned(), serde_json::Value::String(epoch.to_owned()));
                folder.files.insert(new_uid.clone(), entry);
                let mut new_path = folder_path.clone();
                new_path.push(new_uid.clone());
                let mut old_path = folder_path.clone();
                old_path.push(old_uid.clone());
                steps.push(BlobOp::Put { path: new_path, body: body.clone() });
                steps.push(BlobOp::Delete { path: old_path });
            }
            Ok(steps)
        })
        .await?;
        tracing::info!(count, "re-encrypted files under fresh keys");
        Ok(count)
    }
}
