//! Processing a top folder's file drops: under the lock, each entry wrapped for this user is opened and moved
//! into `files` (a name already taken gets " (dropped N)" before its extension), marked `cloakfsDropped`,
//! the `filedrop` section loses those entries, and the folder is re-signed. Entries not wrapped for this user
//! stay for a member they were wrapped for.
//!
//! The `filedrop` section is not signed, and wrapping a drop needs only the members' public keys: the server
//! can drop any file it likes. So drops are taken in only where a member gave someone a file-drop share
//! (recorded in the folder's audit trail), and stay marked as dropped after that (`ls`, the mount's
//! `user.cloakfs.origin` attribute). Elsewhere, and for a member who cannot take the lock (read-only), they
//! stay pending: `ls` lists them as such, the mount does not show them.

use bytes::Bytes;

use super::{split_clear_path, FolderView, TreeRoot, Vault, VaultError};
use crate::crypto::file_cipher::encrypt_buffer;
use crate::crypto::server_name::random_server_name;
use crate::metadata::codec::{is_valid_clear_name, verify_top_folder_users};
use crate::metadata::filedrop::{open_entry, seal_entry};
use crate::metadata::{FileEntry, Reader};
use crate::storage::{E2eeApi, Sharing, WriteCondition};
use crate::trust::PinnedCertificates;

/// `name` with " (dropped N)" before its extension.
fn dropped_name(name: &str, attempt: usize) -> String {
    match name.rsplit_once('.') {
        Some((stem, extension)) if !stem.is_empty() => format!("{stem} (dropped {attempt}).{extension}"),
        _ => format!("{name} (dropped {attempt})"),
    }
}

/// The field of a file entry a member's client sets when it takes in a file drop.
pub const DROPPED_FIELD: &str = "cloakfsDropped";

/// Whether `entry` was taken in from a file drop.
pub fn was_dropped(entry: &FileEntry) -> bool {
    entry.unknown.contains_key(DROPPED_FIELD)
}

/// Whether members of the top folder `view` take in file drops: its audit trail records a drop share.
fn takes_drops(view: &FolderView) -> bool {
    crate::metadata::audit::AuditTrail::from_fields(&view.folder().unknown)
        .ok()
        .flatten()
        .is_some_and(|trail| !trail.drop_shares().is_empty())
}

impl<R: E2eeApi> Vault<R> {
    /// The file drops of top folder `view` this user can open and that are not taken in (server name, entry).
    pub(crate) fn pending_drops(&self, view: &FolderView) -> Vec<(String, FileEntry)> {
        let Some(drops) = view.decoded.document.filedrop.as_ref() else { return Vec::new() };
        let reader = Reader { user_id: &self.user, identity: &self.identity };
        drops
            .iter()
            .filter(|(uid, _)| !view.folder().files.contains_key(*uid))
            .filter_map(|(uid, value)| open_entry(uid, value, reader).ok().flatten().map(|entry| (uid.clone(), entry)))
            .collect()
    }

    /// Takes in the file drops of the top folder of `tree` if it can: `Ok(false)` (drops left pending, logged)
    /// when this member may not change the folder.
    pub(crate) async fn take_in_drops(&self, tree: &TreeRoot) -> Result<bool, VaultError> {
        match self.absorb_filedrop(tree).await {
            Ok(count) => Ok(count > 0),
            Err(VaultError::Remote(error))
                if matches!(
                    error.kind(),
                    crate::storage::RemoteErrorKind::Forbidden | crate::storage::RemoteErrorKind::Unauthorized
                ) =>
            {
                tracing::info!(%error, "file drops left pending: this member may not change the folder");
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// Whether `view` (a top folder) has file drops this user can open (entries that cannot be opened are
    /// named in the log and left alone, so they do not make every listing lock and rewrite the folder).
    pub(crate) fn has_filedrop_for_me(&self, view: &FolderView) -> bool {
        let Some(drops) = view.decoded.document.filedrop.as_ref() else { return false };
        if !takes_drops(view) {
            tracing::info!(
                file_id = view.file_id,
                "file drops left pending: the folder has no drop share in its audit trail"
            );
            return false;
        }
        let reader = Reader { user_id: &self.user, identity: &self.identity };
        let mut openable = false;
        for (uid, value) in drops {
            if view.folder().files.contains_key(uid) {
                continue;
            }
            match open_entry(uid, value, reader) {
                Ok(Some(_)) => openable = true,
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(server_name = %uid, %error, "file drop cannot be opened; left in place")
                }
            }
        }
        openable
    }

    /// Moves the file drops of the top folder of `tree` into its files; returns how many.
    pub async fn absorb_filedrop(&self, tree: &TreeRoot) -> Result<usize, VaultError> {
        let top_path = tree.path.clone();
        let mut absorbed = 0;
        self.transact(tree, &top_path, std::slice::from_ref(&top_path), |folders, views| {
            absorbed = 0;
            let folder = &mut folders[0];
            let Some(drops) = views[0].decoded.document.filedrop.as_ref() else { return Ok(Vec::new()) };
            if !takes_drops(&views[0]) {
                return Ok(Vec::new());
            }
            let taken_in = serde_json::json!({
                "takenInBy": self.user,
                "time": std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|elapsed| elapsed.as_secs())
                    .unwrap_or(0),
            });
            let reader = Reader { user_id: &self.user, identity: &self.identity };
            for (uid, value) in drops {
                if folder.files.contains_key(uid) || folder.folders.contains_key(uid) {
                    continue;
                }
                let mut entry: FileEntry = match open_entry(uid, value, reader) {
                    Ok(Some(entry)) => entry,
                    Ok(None) => continue,
                    // Anyone who may drop (and the server) can write this section: a bad entry is left where it
                    // is (named in the log by `has_filedrop_for_me`), and the folder stays usable.
                    Err(_) => continue,
                };
                let taken = |name: &str| {
                    folder.files.values().any(|existing| existing.filename.as_str() == name)
                        || folder.folders.values().any(|existing| existing.as_str() == name)
                };
                if taken(&entry.filename) {
                    let original = entry.filename.clone();
                    let free = (2..10_000).map(|attempt| dropped_name(&original, attempt)).find(|name| !taken(name));
                    *entry.filename = free.ok_or(VaultError::Exists)?;
                }
                entry.unknown.insert(DROPPED_FIELD.to_owned(), taken_in.clone());
                folder.files.insert(uid.clone(), entry);
                absorbed += 1;
            }
            Ok(Vec::new())
        })
        .await?;
        if absorbed > 0 {
            tracing::info!(count = absorbed, "moved file drops into the folder");
        }
        Ok(absorbed)
    }
}

impl<R: Sharing> Vault<R> {
    /// Drops a file into the top folder at `clear_path` without reading it (a file-drop share): checks the
    /// members' certificates and the signature of the folder's metadata, encrypts `plaintext` with a fresh
    /// key, uploads the blob under a new random name, and adds a `filedrop` entry wrapped for every member.
    pub async fn drop_file(&self, clear_path: &str, name: &str, plaintext: &[u8]) -> Result<(), VaultError> {
        if !is_valid_clear_name(name) {
            return Err(VaultError::InvalidName);
        }
        let clear = split_clear_path(clear_path)?;
        let entry = self.stat(&clear).await?.ok_or(VaultError::NotFound)?;
        if !entry.is_dir || !entry.is_encrypted {
            return Err(VaultError::NotEncrypted);
        }
        let (json, signature) = self.metadata_of(&entry).await?;
        let members = {
            let mut store = self.trust();
            let trust = PinnedCertificates {
                server: &self.server,
                server_key: &self.server_key,
                store: std::sync::Mutex::new(&mut store),
            };
            verify_top_folder_users(&json, &signature, &trust).map_err(super::metadata_error(entry.file_id))?
        };
        // The dropped file's key goes to every member the server lists: each must be confirmed on this device
        // (a dropper cannot read the folder's audit trail).
        self.check_key_recipients(&members, None)?;
        let (blob, sealed) =
            encrypt_buffer(plaintext).map_err(|source| VaultError::Content { server_name: "(new)".into(), source })?;
        let file = FileEntry {
            filename: zeroize::Zeroizing::new(name.to_owned()),
            mimetype: super::mime_type(name).to_owned(),
            key: sealed.key.clone(),
            nonce: sealed.nonce.clone(),
            authentication_tag: sealed.tag,
            unknown: Default::default(),
        };
        let dropped = seal_entry(&file, &members).map_err(super::metadata_error(entry.file_id))?;
        let uid = random_server_name();
        let mut blob_path = clear.clone();
        blob_path.push(uid.clone());
        self.remote.write(&blob_path, Bytes::from(blob), WriteCondition::Always).await?;
        let entries = serde_json::json!({ uid: dropped }).to_string();
        self.remote.add_filedrop(entry.file_id, &entries).await?;
        Ok(())
    }
}
