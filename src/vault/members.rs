//! Who holds a tree's key: changing the members (the shared mechanism behind src/vault/share.rs) and the
//! audit trail of those changes. What a device accepts on reading is in src/vault/membership.rs.
//!
//! A membership change always rotates the metadata key (as Nextcloud's clients do): under the top folder's
//! lock, a fresh key is wrapped for every member, its checksum appended to `keyChecksums`, every sub-folder's
//! metadata re-encrypted under it, an audit entry signed, and everything unlocked at once. Files keep their
//! own keys (see docs/THREAT-MODEL.md for what a removed member can still read). A drop share given or taken
//! is recorded the same way without a new key.

use super::membership::MembershipReport;
use super::{lock_backoff, split_clear_path, FolderView, Target, TreeRoot, Vault, VaultError};
use crate::crypto::MetadataKey;
use crate::metadata::audit::{AuditEvent, AuditRecord, AuditTrail, Member};
use crate::metadata::codec::encode_top_folder_with_recovery;
use crate::metadata::{encode_sub_folder, FolderMetadata, TrustedUser};
use crate::storage::{E2eeApi, LockToken, RemoteErrorKind};

/// What `share` did.
#[derive(Debug, Clone)]
pub struct ShareOutcome {
    /// The recipient's certificate fingerprint (confirmed).
    pub fingerprint: String,
    /// Whether the recipient was already a member (only the server share was made).
    pub already_member: bool,
}

pub(super) fn members_of(users: &[TrustedUser]) -> Vec<Member> {
    let mut members: Vec<Member> =
        users.iter().map(|user| (user.user_id.clone(), user.certificate.fingerprint())).collect();
    members.sort();
    members
}

fn audit_error(file_id: u64) -> impl FnOnce(crate::metadata::audit::AuditError) -> VaultError {
    move |source| VaultError::Audit { file_id, source }
}

/// How a membership change edits the member list.
pub(super) enum Change {
    /// A new member.
    Add(Box<TrustedUser>),
    /// A member leaves (by user id).
    Remove(String),
    /// A member's new certificate (a new key pair), confirmed by the user.
    ReplaceCertificate(Box<TrustedUser>),
    /// A user may (`added`) or may no longer drop files into the folder; members unchanged, no new key.
    DropShare {
        /// The user.
        user: Box<TrustedUser>,
        /// Given or taken.
        added: bool,
    },
    /// The folder's key stops being wrapped for the recovery key (a new key without it).
    RemoveRecovery,
}

impl<R: E2eeApi> Vault<R> {
    /// The members of the top folder at `clear_path`, as verified just now.
    pub async fn members(&self, clear_path: &str) -> Result<MembershipReport, VaultError> {
        let (_, view) = self.top_folder(clear_path).await?;
        self.last_membership
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
            .filter(|report| report.file_id == view.file_id)
            .ok_or(VaultError::NotTopFolder)
    }

    /// Forgets what this device accepted about the membership of the top folder at `clear_path`, then reads
    /// it again and accepts its current members (after the user checked a refused change out of band).
    pub async fn accept_members(&self, clear_path: &str) -> Result<MembershipReport, VaultError> {
        let clear = split_clear_path(clear_path)?;
        let entry = self.stat(&clear).await?.ok_or(VaultError::NotFound)?;
        {
            let mut store = self.trust();
            // Without pinned members the next read accepts and pins what it finds (the trail pin stays).
            store.forget_folder_members(&self.server, entry.file_id)?;
        }
        self.members(clear_path).await
    }

    /// The top folder at `clear_path` (refusing sub-folders and paths outside encrypted trees).
    pub(super) async fn top_folder(&self, clear_path: &str) -> Result<(TreeRoot, FolderView), VaultError> {
        let clear = split_clear_path(clear_path)?;
        match self.resolve_in_tree(&clear).await? {
            (tree, Target::Folder(view)) if view.is_top => Ok((tree, view)),
            (_, Target::Folder(_)) => Err(VaultError::NotTopFolder),
            (_, Target::File { .. }) => Err(VaultError::NotAFolder),
            (_, Target::Missing { .. }) => Err(VaultError::NotFound),
        }
    }

    /// Every folder of `tree`, top first, each verified with the tree's keys.
    pub(super) async fn all_folders(&self, tree: &TreeRoot) -> Result<Vec<FolderView>, VaultError> {
        let top = self.load_folder(tree, &tree.path).await?;
        self.all_folders_below(tree, top).await
    }

    /// `top` (already read) and every folder below it, each verified with the tree's keys.
    pub(super) async fn all_folders_below(
        &self,
        tree: &TreeRoot,
        top: FolderView,
    ) -> Result<Vec<FolderView>, VaultError> {
        let mut views = vec![top];
        let mut next = 0;
        while next < views.len() {
            let children: Vec<Vec<String>> = views[next]
                .folder()
                .folders
                .keys()
                .map(|uid| {
                    let mut path = views[next].remote_path.clone();
                    path.push(uid.clone());
                    path
                })
                .collect();
            for path in children {
                views.push(self.load_folder(tree, &path).await?);
            }
            next += 1;
        }
        Ok(views)
    }

    /// Changes the members of the tree at `top_path`: under the top folder's lock, re-reads everything,
    /// applies `change`, rotates the key, re-encrypts every folder's metadata, appends the audit entry, and
    /// commits at unlock. `Ok(false)` when the change was already in place (nothing written).
    pub(super) async fn change_members(&self, top_path: &[String], change: Change) -> Result<bool, VaultError> {
        self.refuse_in_recovery_mode()?;
        let mut minimum_counter = 0u64;
        for attempt in 1..=self.options.lock_attempts {
            let (tree, top, _) = match self.open_tree(top_path).await? {
                Ok(found) => found,
                Err(_) => return Err(VaultError::NotEncrypted),
            };
            let counter = (top.folder().counter + 1).max(minimum_counter);
            let Some(token) = self.lock_top(top.file_id, counter, attempt, &mut minimum_counter).await? else {
                continue;
            };
            let outcome = self.change_members_locked(&tree, counter, &token, &change).await;
            return self.finish_top_change(top_path, top.file_id, &token, outcome).await;
        }
        Err(VaultError::Busy(self.stat(top_path).await?.map(|entry| entry.file_id).unwrap_or_default()))
    }

    /// Locks top folder `file_id` with `counter` for a whole-tree change. `Ok(None)` asks for another attempt:
    /// after a 423 (having waited) or a 412 (`minimum_counter` raised).
    pub(super) async fn lock_top(
        &self,
        file_id: u64,
        counter: u64,
        attempt: u32,
        minimum_counter: &mut u64,
    ) -> Result<Option<LockToken>, VaultError> {
        match self.remote.lock(file_id, counter).await {
            Ok(token) => Ok(Some(token)),
            Err(error) if error.kind() == RemoteErrorKind::Locked => {
                tokio::time::sleep(lock_backoff(attempt)).await;
                Ok(None)
            }
            Err(error) if error.kind() == RemoteErrorKind::CounterRefused => {
                *minimum_counter = counter + u64::from(attempt);
                Ok(None)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Ends a whole-tree change under the lock on `file_id`: with new counters, unlock (commit), record them
    /// and read the tree at `top_path` back as a member (which verifies it and pins the members and trail
    /// head): `Ok(true)`; with nothing to do (`Ok(None)`) or an error, unlock with `abort`.
    pub(super) async fn finish_top_change(
        &self,
        top_path: &[String],
        file_id: u64,
        token: &LockToken,
        outcome: Result<Option<Vec<(u64, u64)>>, VaultError>,
    ) -> Result<bool, VaultError> {
        match outcome {
            Ok(Some(counters)) => {
                self.remote.unlock(file_id, token, false).await?;
                for (file_id, counter) in counters {
                    self.trust().record_counter(&self.server, file_id, counter)?;
                }
                let _verified = self.open_tree(top_path).await?;
                Ok(true)
            }
            Ok(None) => {
                self.abort(file_id, token).await;
                Ok(false)
            }
            Err(error) => {
                self.abort(file_id, token).await;
                Err(error)
            }
        }
    }

    async fn change_members_locked(
        &self,
        tree: &TreeRoot,
        counter: u64,
        token: &LockToken,
        change: &Change,
    ) -> Result<Option<Vec<(u64, u64)>>, VaultError> {
        let views = self.all_folders(tree).await?;
        let top = &views[0];
        let before = tree.keys().users;
        let old_trail = AuditTrail::from_fields(&top.folder().unknown).map_err(audit_error(top.file_id))?;
        let had_recovery = crate::metadata::recovery::recovery_key_of(&top.decoded.document)
            .map_err(super::metadata_error(top.file_id))?;
        let mut users = before.clone();
        let mut rotate = true;
        let (event, subject) = match change {
            Change::Add(user) => {
                if users.iter().any(|existing| existing.user_id == user.user_id) {
                    return Ok(None);
                }
                users.push(user.as_ref().clone());
                (AuditEvent::MemberAdded, Some((user.user_id.clone(), user.certificate.fingerprint())))
            }
            Change::ReplaceCertificate(user) => {
                let Some(existing) = users.iter_mut().find(|existing| existing.user_id == user.user_id) else {
                    return Ok(None);
                };
                if existing.certificate == user.certificate {
                    return Ok(None);
                }
                existing.certificate = user.certificate.clone();
                (AuditEvent::NewCertificate, Some((user.user_id.clone(), user.certificate.fingerprint())))
            }
            Change::Remove(user_id) => {
                let Some(position) = users.iter().position(|existing| existing.user_id == *user_id) else {
                    return Ok(None);
                };
                let removed = users.remove(position);
                if users.is_empty() {
                    return Err(VaultError::Unsupported("a folder must keep at least one member"));
                }
                (AuditEvent::MemberRemoved, Some((removed.user_id.clone(), removed.certificate.fingerprint())))
            }
            Change::DropShare { user, added } => {
                let given = old_trail.as_ref().is_some_and(|trail| trail.drop_shares().contains(&user.user_id));
                if given == *added {
                    return Ok(None);
                }
                rotate = false;
                let event = if *added { AuditEvent::DropShareAdded } else { AuditEvent::DropShareRemoved };
                (event, Some((user.user_id.clone(), user.certificate.fingerprint())))
            }
            Change::RemoveRecovery => {
                if had_recovery.is_none() {
                    return Ok(None);
                }
                (AuditEvent::RecoveryDisabled, None)
            }
        };
        // Every user the key goes to: this user, confirmed on this device, or vouched for by the trail as it
        // was before this change (a newcomer must have been confirmed).
        self.check_key_recipients(&users, old_trail.as_ref())?;
        let key = if rotate { MetadataKey::generate() } else { tree.keys().metadata_key };
        let mut counters = Vec::with_capacity(views.len());
        for view in views[1..].iter().filter(|_| rotate) {
            let mut folder = view.folder().clone();
            folder.counter += 1;
            let encoded = encode_sub_folder(&folder, &key, Some(&view.decoded.document), self.signer())
                .map_err(super::metadata_error(view.file_id))?;
            self.remote.store_metadata(view.file_id, token, &encoded.json, &encoded.signature_base64, false).await?;
            counters.push((view.file_id, folder.counter));
        }
        let mut folder: FolderMetadata = top.folder().clone();
        folder.counter = counter;
        let recovery = match change {
            Change::RemoveRecovery => None,
            _ => self.recovery_for(top.file_id, Some(&top.decoded.document), old_trail.as_ref(), true)?,
        };
        let recovery_fingerprint = recovery.as_ref().map(|key| key.fingerprint());
        self.append_audit(
            &mut folder,
            top.file_id,
            &before,
            &users,
            event,
            subject,
            &key,
            recovery_fingerprint.clone(),
        )?;
        if had_recovery.is_none() && recovery.is_some() {
            self.append_audit(
                &mut folder,
                top.file_id,
                &users,
                &users,
                AuditEvent::RecoveryEnabled,
                None,
                &key,
                recovery_fingerprint,
            )?;
        }
        let encoded = encode_top_folder_with_recovery(
            &folder,
            &key,
            &users,
            Some(&top.decoded.document),
            self.signer(),
            recovery.as_ref(),
        )
        .map_err(super::metadata_error(top.file_id))?;
        self.remote.store_metadata(top.file_id, token, &encoded.json, &encoded.signature_base64, false).await?;
        counters.push((top.file_id, counter));
        Ok(Some(counters))
    }

    /// Appends an audit entry for a change from `before` to `after` members to `folder`'s trail (starting a
    /// trail first when the folder has none, linked to the last head this device saw).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn append_audit(
        &self,
        folder: &mut FolderMetadata,
        file_id: u64,
        before: &[TrustedUser],
        after: &[TrustedUser],
        event: AuditEvent,
        subject: Option<Member>,
        key: &MetadataKey,
        recovery: Option<String>,
    ) -> Result<(), VaultError> {
        let signing = |error: crate::crypto::IdentityError| VaultError::Metadata {
            file_id,
            source: crate::metadata::MetadataError::KeyUnwrap(error),
        };
        let mut trail = AuditTrail::from_fields(&folder.unknown).map_err(audit_error(file_id))?.unwrap_or_default();
        if trail.entries.is_empty() {
            let pinned_head = self
                .trust()
                .folder(&self.server, file_id)
                .filter(|pins| pins.trail_len > 0)
                .map(|pins| pins.trail_head.clone());
            let start = AuditRecord {
                event: if before.is_empty() { AuditEvent::FolderCreated } else { AuditEvent::TrailStarted },
                subject: None,
                key_checksum: None,
                members: if before.is_empty() { members_of(after) } else { members_of(before) },
                recovery: recovery.clone(),
            };
            trail
                .append(start, folder.counter, &self.user, &self.certificate, &self.identity, pinned_head.as_deref())
                .map_err(signing)?;
            if before.is_empty() {
                trail.store_in(&mut folder.unknown);
                return Ok(());
            }
        }
        let record =
            AuditRecord { event, subject, key_checksum: Some(key.sha256_hex()), members: members_of(after), recovery };
        trail.append(record, folder.counter, &self.user, &self.certificate, &self.identity, None).map_err(signing)?;
        trail.store_in(&mut folder.unknown);
        Ok(())
    }

    /// The first audit entry of a new folder (its creator as the only member).
    pub(crate) fn genesis_audit(&self, folder: &mut FolderMetadata, key: &MetadataKey) -> Result<(), VaultError> {
        let creator = [TrustedUser { user_id: self.user.clone(), certificate: self.certificate.clone() }];
        let recovery = self.recovery_key.as_ref().map(|key| key.fingerprint());
        self.append_audit(folder, 0, &[], &creator, AuditEvent::FolderCreated, None, key, recovery)
    }
}
