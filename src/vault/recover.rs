//! Restoring a member's access with the offline recovery key: a member who lost their keys makes new ones,
//! and with the recovery key (which can read the folder) their entry in `users` gets the new certificate.
//!
//! The change is made under the top folder's lock like any membership change (new metadata key, every
//! sub-folder re-encrypted) and recorded in the audit trail as `recovery-used`, signed by the member's new
//! key *and* by the recovery key. Other members' devices accept the member's new certificate because that
//! entry is authorised by the recovery key the trail says was in force (FORMAT.md §6.3). The recovery key can
//! only replace an existing member's own certificate this way, never add a user.

use super::{FolderView, TreeRoot, Vault, VaultError};
use crate::crypto::{MetadataKey, PrivateIdentity};
use crate::metadata::audit::{AuditEvent, AuditRecord, AuditTrail};
use crate::metadata::codec::{check_counter, encode_top_folder_with_recovery};
use crate::metadata::recovery::decode_top_folder_with_recovery;
use crate::metadata::{encode_sub_folder, DecodedTopFolder, ServerKeyTrust};
use crate::storage::{E2eeApi, LockToken, RemoteEntry};

fn not_a_member() -> VaultError {
    VaultError::Unsupported(
        "the recovery key restores access only for a member of the folder: ask a member to share it",
    )
}

impl<R: E2eeApi> Vault<R> {
    /// Gives this user's (new) key pair back its access to the top folder at `clear_path`, with `recovery`.
    /// `Ok(false)` when this user's current certificate is already the member's.
    pub async fn restore_access(&self, clear_path: &str, recovery: &PrivateIdentity) -> Result<bool, VaultError> {
        self.refuse_in_recovery_mode()?;
        let clear = super::split_clear_path(clear_path)?;
        let mut minimum_counter = 0u64;
        for attempt in 1..=self.options.lock_attempts {
            let (entry, decoded) = self.read_with_recovery(&clear, recovery).await?;
            if !decoded.tree.users.iter().any(|user| user.user_id == self.user) {
                return Err(not_a_member());
            }
            // The folder as read with the recovery key passes the members' checks before anything is written:
            // members, certificates, recovery key and key checksums against this device's pins, and the trail.
            {
                let mut store = self.trust();
                self.check_membership_as(&mut store, entry.file_id, &decoded, true)?;
            }
            let counter = (decoded.decoded.folder.counter + 1).max(minimum_counter);
            let Some(token) = self.lock_top(entry.file_id, counter, attempt, &mut minimum_counter).await? else {
                continue;
            };
            let outcome = self.restore_locked(&clear, recovery, counter, &token).await;
            // Read back as a member now (inside finish_top_change): the new keys are the member's.
            return self.finish_top_change(&clear, entry.file_id, &token, outcome).await;
        }
        Err(VaultError::Busy(self.stat(&clear).await?.map(|entry| entry.file_id).unwrap_or_default()))
    }

    /// The top folder at `clear` read with the recovery key (certificates against the server key, signature,
    /// recovery wrap, key checksum, counter not below the pinned one).
    async fn read_with_recovery(
        &self,
        clear: &[String],
        recovery: &PrivateIdentity,
    ) -> Result<(RemoteEntry, DecodedTopFolder), VaultError> {
        let entry = self.stat(clear).await?.ok_or(VaultError::NotFound)?;
        if !entry.is_dir || !entry.is_encrypted {
            return Err(VaultError::NotTopFolder);
        }
        let (json, signature) = self.metadata_of(&entry).await?;
        let trust = ServerKeyTrust { server_key: &self.server_key };
        let decoded = decode_top_folder_with_recovery(&json, &signature, recovery, &trust)
            .and_then(|decoded| {
                check_counter(&decoded.decoded.folder, self.trust().counter(&self.server, entry.file_id))?;
                Ok(decoded)
            })
            .map_err(super::metadata_error(entry.file_id))?;
        Ok((entry, decoded))
    }

    async fn restore_locked(
        &self,
        clear: &[String],
        recovery: &PrivateIdentity,
        counter: u64,
        token: &LockToken,
    ) -> Result<Option<Vec<(u64, u64)>>, VaultError> {
        let (entry, decoded) = self.read_with_recovery(clear, recovery).await?;
        let file_id = entry.file_id;
        let mut users = decoded.tree.users.clone();
        let Some(own) = users.iter_mut().find(|user| user.user_id == self.user) else { return Err(not_a_member()) };
        if own.certificate == self.certificate {
            return Ok(None);
        }
        own.certificate = self.certificate.clone();
        let old_trail = AuditTrail::from_fields(&decoded.decoded.folder.unknown)
            .map_err(|source| VaultError::Audit { file_id, source })?;
        self.check_key_recipients(&users, old_trail.as_ref())?;
        let mut trail = AuditTrail::from_fields(&decoded.decoded.folder.unknown)
            .map_err(|source| VaultError::Audit { file_id, source })?
            .filter(|trail| !trail.entries.is_empty())
            .ok_or(VaultError::Unsupported(
                "the folder has no audit trail (a client that does not keep it rewrote it), so other members could \
                 not tell this from a forgery: ask a member to share the folder with your new keys",
            ))?;
        let tree = TreeRoot::new(clear.to_vec(), decoded.tree.clone());
        let top = FolderView {
            remote_path: clear.to_vec(),
            file_id,
            etag: entry.etag.clone(),
            is_top: true,
            decoded: decoded.decoded.clone(),
        };
        let views = self.all_folders_below(&tree, top).await?;
        let key = MetadataKey::generate();
        let mut counters = Vec::with_capacity(views.len());
        for view in &views[1..] {
            let mut folder = view.folder().clone();
            folder.counter += 1;
            let encoded = encode_sub_folder(&folder, &key, Some(&view.decoded.document), self.signer())
                .map_err(super::metadata_error(view.file_id))?;
            self.remote.store_metadata(view.file_id, token, &encoded.json, &encoded.signature_base64, false).await?;
            counters.push((view.file_id, folder.counter));
        }
        let mut folder = decoded.decoded.folder.clone();
        folder.counter = counter;
        let mut members: Vec<(String, String)> =
            users.iter().map(|user| (user.user_id.clone(), user.certificate.fingerprint())).collect();
        members.sort();
        let record = AuditRecord {
            event: AuditEvent::RecoveryUsed,
            subject: Some((self.user.clone(), self.certificate.fingerprint())),
            key_checksum: Some(key.sha256_hex()),
            members,
            recovery: Some(recovery.public_key().fingerprint()),
        };
        trail
            .append_signed(record, counter, &self.user, &self.certificate, &self.identity, None, Some(recovery))
            .map_err(|error| VaultError::Metadata {
                file_id,
                source: crate::metadata::MetadataError::KeyUnwrap(error),
            })?;
        trail.store_in(&mut folder.unknown);
        let encoded = encode_top_folder_with_recovery(
            &folder,
            &key,
            &users,
            Some(&decoded.decoded.document),
            self.signer(),
            Some(recovery.public_key()),
        )
        .map_err(super::metadata_error(file_id))?;
        self.remote.store_metadata(file_id, token, &encoded.json, &encoded.signature_base64, false).await?;
        counters.push((file_id, counter));
        Ok(Some(counters))
    }
}
