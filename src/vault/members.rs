//! Who holds a tree's key: changing the members (the shared mechanism behind src/vault/share.rs), checking
//! every membership change against what this device already trusts, and the audit trail of those changes.
//!
//! A membership change always rotates the metadata key (as Nextcloud's clients do): under the top folder's
//! lock, a fresh key is wrapped for every member, its checksum appended to `keyChecksums`, every sub-folder's
//! metadata re-encrypted under it, an audit entry signed, and everything unlocked at once. Files keep their
//! own keys (see docs/THREAT-MODEL.md for what a removed member can still read).
//!
//! Reading a top folder ([`Vault::check_membership`]) refuses a member list that differs from the one this
//! device accepted last unless the change was signed by a member it trusted, directly or through the audit
//! trail's chain of changes each made by a member of the state before it.

use super::{lock_backoff, split_clear_path, FolderView, Target, TreeRoot, Vault, VaultError};
use crate::crypto::MetadataKey;
use crate::metadata::audit::{AuditEvent, AuditRecord, AuditTrail, Member};
use crate::metadata::codec::encode_top_folder_with_recovery;
use crate::metadata::{encode_sub_folder, DecodedTopFolder, FolderMetadata, TrustedUser};
use crate::storage::{E2eeApi, LockToken, RemoteErrorKind};
use crate::trust::{FolderPins, TrustStore};

/// One member of a top folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// The user id.
    pub user_id: String,
    /// SHA-256 fingerprint of the user's certificate.
    pub fingerprint: String,
    /// Whether this device had never pinned this user's certificate before reading this version.
    pub new_to_this_device: bool,
    /// Why this device trusts the certificate.
    pub trust: MemberTrust,
}

/// Why a device trusts a member's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberTrust {
    /// The user's own.
    Own,
    /// The user confirmed its fingerprint on this device.
    Confirmed,
    /// The folder's verified audit trail records it (added by a member this trail vouches for).
    Trail,
    /// Taken on first use: seen in this folder, never confirmed, no trail vouches for it.
    FirstUse,
}

/// The state of a folder's audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrailStatus {
    /// Present and verified; this many entries.
    Verified(usize),
    /// The folder has none (made by another client, never shared by cloakfs).
    Absent,
    /// Present and verified, restarted by cloakfs after a client that does not keep it dropped it; its first
    /// entry links to the last head this device saw. This many entries.
    Restarted(usize),
    /// This device saw a trail of this many entries, and the current metadata has none: a client that does
    /// not keep it (an official Nextcloud client) rewrote the folder. cloakfs starts a new trail linked to
    /// the last head at the next membership change.
    Dropped(u64),
}

/// What reading a top folder established about its members.
#[derive(Debug, Clone)]
pub struct MembershipReport {
    /// The folder's file id.
    pub file_id: u64,
    /// The members, by user id.
    pub members: Vec<MemberInfo>,
    /// Who signed the current metadata.
    pub signed_by: String,
    /// The audit trail.
    pub trail_status: TrailStatus,
    /// The verified trail, if any.
    pub trail: Option<AuditTrail>,
    /// Fingerprint of the offline recovery key the folder wraps its key for, if any.
    pub recovery: Option<String>,
    /// This device saw a recovery key on the folder that the current metadata no longer has (a client that
    /// does not keep it rewrote the folder; cloakfs adds it back at its next write).
    pub recovery_dropped: Option<String>,
}

/// What `share` did.
#[derive(Debug, Clone)]
pub struct ShareOutcome {
    /// The recipient's certificate fingerprint (confirmed).
    pub fingerprint: String,
    /// Whether the recipient was already a member (only the server share was made).
    pub already_member: bool,
}

fn members_of(users: &[TrustedUser]) -> Vec<Member> {
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
    /// Checks a freshly decoded top folder's members against its audit trail and what this device accepted
    /// before, then pins the members, the trail head and the key checksums.
    ///
    /// On every device, pinned or not: with a trail, the signed member list and recovery key must be what
    /// the trail's last entry records (the trail is inside the encrypted metadata, so the server cannot edit
    /// it). With pins: certificates, members, recovery key, trail and key checksums may only change as a
    /// trusted member or the trail says.
    pub(crate) fn check_membership(
        &self,
        store: &mut TrustStore,
        file_id: u64,
        decoded: &DecodedTopFolder,
    ) -> Result<MembershipReport, VaultError> {
        self.check_membership_as(store, file_id, decoded, false)
    }

    /// [`Self::check_membership`]; `restoring`: this user lost their keys and restores their access, so
    /// their own entry still holds the old certificate (which is what the restore replaces).
    pub(crate) fn check_membership_as(
        &self,
        store: &mut TrustStore,
        file_id: u64,
        decoded: &DecodedTopFolder,
        restoring: bool,
    ) -> Result<MembershipReport, VaultError> {
        let current = members_of(&decoded.tree.users);
        let trail = AuditTrail::from_fields(&decoded.decoded.folder.unknown).map_err(audit_error(file_id))?;
        if let Some(trail) = &trail {
            trail.verify(&self.server_key).map_err(audit_error(file_id))?;
        }
        let signed_by = decoded.decoded.signed_by.clone();
        let signer = current.iter().find(|(user, _)| *user == signed_by).cloned();
        let pinned = store.folder(&self.server, file_id).cloned();
        let recovery = crate::metadata::recovery::recovery_key_of(&decoded.decoded.document)
            .map_err(super::metadata_error(file_id))?
            .map(|key| key.fingerprint());
        let checksums = decoded.decoded.folder.key_checksums.clone().unwrap_or_default();
        // Where the trail continues what this device saw: entries after `from_len` are new to it.
        let mut restarted = false;
        let from_len = match (&trail, &pinned) {
            (Some(trail), Some(pinned)) => {
                restarted = trail.check_extends(pinned.trail_len, &pinned.trail_head).map_err(audit_error(file_id))?;
                if restarted {
                    0
                } else {
                    pinned.trail_len
                }
            }
            _ => 0,
        };
        if let Some(last) = trail.as_ref().and_then(|trail| trail.entries.last()) {
            let mismatch = |what: String| VaultError::TrailMismatch { file_id, signer: signed_by.clone(), what };
            if last.members != current {
                let names = |members: &[Member]| {
                    members.iter().map(|(user, fingerprint)| format!("{user} {:.12}", fingerprint)).collect::<Vec<_>>()
                };
                return Err(mismatch(format!(
                    "signed: {:?}, trail: {:?}",
                    names(&current),
                    names(&last.members)
                )));
            }
            if recovery.is_some() && recovery != last.recovery {
                return Err(mismatch(format!(
                    "recovery key {} where the trail records {}",
                    recovery.as_deref().unwrap_or("none"),
                    last.recovery.as_deref().unwrap_or("none")
                )));
            }
        }
        let linked_to_earlier = trail.as_ref().and_then(|trail| trail.entries.first()).is_some_and(|first| {
            first.event == AuditEvent::TrailStarted && first.previous != crate::metadata::audit::GENESIS
        });
        let mut trail_status = match &trail {
            Some(trail) if restarted || linked_to_earlier => TrailStatus::Restarted(trail.entries.len()),
            Some(trail) => TrailStatus::Verified(trail.entries.len()),
            None => TrailStatus::Absent,
        };
        if let Some(pinned) = &pinned {
            crate::metadata::codec::check_key_history(&pinned.key_checksums, &checksums)
                .map_err(super::metadata_error(file_id))?;
        }
        // A member whose certificate differs from the one expected here: refused, unless this folder's trail
        // (verified, and extending what this device saw) records the new certificate. It then holds for this
        // folder only.
        let mut replaced = Vec::new();
        for (user, fingerprint) in &current {
            if restoring && *user == self.user {
                continue;
            }
            let Some(expected) = store.expected_certificate(&self.server, file_id, user) else { continue };
            if expected == fingerprint {
                continue;
            }
            let vouched = trail.as_ref().is_some_and(|trail| {
                trail.entries.iter().skip(from_len as usize).any(|entry| {
                    matches!(entry.event, AuditEvent::NewCertificate | AuditEvent::RecoveryUsed)
                        && entry.subject.as_deref() == Some(user.as_str())
                        && entry.subject_certificate.as_deref() == Some(fingerprint.as_str())
                })
            });
            if !vouched {
                return Err(crate::trust::TrustError::CertificateChanged {
                    server: self.server.clone(),
                    user: user.clone(),
                    pinned: expected.to_owned(),
                    presented: fingerprint.clone(),
                }
                .into());
            }
            replaced.push((user.clone(), fingerprint.clone()));
        }
        let trail_removed_recovery = trail.as_ref().is_some_and(AuditTrail::recovery_disabled);
        let mut recovery_dropped = None;
        if let Some(pinned) = &pinned {
            match (&pinned.recovery, &recovery) {
                // Gone without the trail saying so: a client that does not keep it rewrote the folder.
                (Some(seen), None) if !trail_removed_recovery => recovery_dropped = Some(seen.clone()),
                // Adding or changing the recovery key gives someone the folder: only a trusted member may.
                (seen, Some(now))
                    if seen.as_ref() != Some(now)
                        && !pinned.members.is_empty()
                        && !signer.as_ref().is_some_and(|signer| pinned.members.contains(signer)) =>
                {
                    return Err(VaultError::UnauthorisedMembershipChange {
                        file_id,
                        signer: signed_by,
                        added: vec![format!("recovery key {now}")],
                        removed: seen.iter().map(|old| format!("recovery key {old}")).collect(),
                    });
                }
                _ => {}
            }
            if trail.is_none() && pinned.trail_len > 0 {
                trail_status = TrailStatus::Dropped(pinned.trail_len);
            }
            if !pinned.members.is_empty() && pinned.members != current {
                let by_trusted_signer = signer.as_ref().is_some_and(|signer| pinned.members.contains(signer));
                let by_trail = trail.as_ref().is_some_and(|trail| {
                    trail.authorises(from_len, &pinned.members, &current)
                        // The trail must also reach the current version: its last entry's members are these.
                        && trail.members() == Some(current.as_slice())
                });
                if !by_trusted_signer && !by_trail {
                    let names = |from: &[Member], without: &[Member]| -> Vec<String> {
                        from.iter().filter(|member| !without.contains(member)).map(|(user, _)| user.clone()).collect()
                    };
                    return Err(VaultError::UnauthorisedMembershipChange {
                        file_id,
                        signer: signed_by,
                        added: names(&current, &pinned.members),
                        removed: names(&pinned.members, &current),
                    });
                }
            }
        }
        let mut folder_certificates = pinned.as_ref().map(|pins| pins.certificates.clone()).unwrap_or_default();
        for (user, fingerprint) in &replaced {
            tracing::warn!(
                file_id,
                user = %user,
                fingerprint = %fingerprint,
                "a member's new certificate, vouched for in this folder's audit trail (for this folder only)"
            );
            folder_certificates.insert(user.clone(), fingerprint.clone());
        }
        let trail_members = trail.as_ref().and_then(AuditTrail::members);
        let mut members = Vec::with_capacity(current.len());
        for (user, fingerprint) in &current {
            let new_to_this_device = store.pinned_certificate(&self.server, user).is_none();
            if !folder_certificates.contains_key(user) {
                store.pin_certificate(&self.server, user, fingerprint)?;
            }
            let trust = if *user == self.user && *fingerprint == self.certificate.fingerprint() {
                MemberTrust::Own
            } else if store.is_confirmed(&self.server, user, fingerprint) {
                MemberTrust::Confirmed
            } else if trail_members.is_some_and(|members| members.contains(&(user.clone(), fingerprint.clone()))) {
                MemberTrust::Trail
            } else {
                MemberTrust::FirstUse
            };
            members.push(MemberInfo {
                user_id: user.clone(),
                fingerprint: fingerprint.clone(),
                new_to_this_device,
                trust,
            });
        }
        let (trail_len, trail_head) = match (&trail, &pinned) {
            (Some(trail), _) => (trail.entries.len() as u64, trail.head()),
            (None, Some(pinned)) => (pinned.trail_len, pinned.trail_head.clone()),
            (None, None) => (0, String::new()),
        };
        if pinned.is_none() {
            tracing::warn!(
                file_id,
                members = ?current.iter().map(|(user, _)| user.as_str()).collect::<Vec<_>>(),
                trail_entries = trail_len,
                trail_head = %trail_head,
                "first sight of this folder on this device: its members are taken on first use (compare them with \
                 `cloakfs members` and a member's device)"
            );
        }
        let mut key_checksums = pinned.as_ref().map(|pins| pins.key_checksums.clone()).unwrap_or_default();
        for checksum in &checksums {
            let checksum = checksum.to_ascii_lowercase();
            if !key_checksums.contains(&checksum) {
                key_checksums.push(checksum);
            }
        }
        let recovery_pin = recovery.clone().or(recovery_dropped.clone());
        store.record_folder(
            &self.server,
            file_id,
            FolderPins {
                members: current,
                trail_len,
                trail_head,
                recovery: recovery_pin,
                certificates: folder_certificates,
                key_checksums,
            },
        )?;
        match trail_status {
            TrailStatus::Dropped(seen) => tracing::warn!(
                file_id,
                signer = %signed_by,
                seen,
                "the folder's audit trail was dropped by a client that does not keep it"
            ),
            TrailStatus::Restarted(entries) if restarted => tracing::warn!(
                file_id,
                signer = %signed_by,
                entries,
                "the folder's audit trail was restarted after a client that does not keep it rewrote the folder; \
                 the new trail links to the last one this device saw"
            ),
            _ => {}
        }
        if let Some(fingerprint) = &recovery {
            let first_time =
                self.recovery_warned.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(file_id);
            if first_time {
                tracing::warn!(file_id, recovery_key = %fingerprint, "an offline recovery key can read this folder");
            }
        }
        Ok(MembershipReport { file_id, members, signed_by, trail_status, trail, recovery, recovery_dropped })
    }

    /// Refuses unless every user in `users` may receive the key of top folder `file_id`: this user, a
    /// certificate the user confirmed on this device, or a member the folder's verified trail (`trail`, the
    /// one the metadata being written carries) records with that certificate.
    pub(crate) fn check_key_recipients(
        &self,
        users: &[TrustedUser],
        trail: Option<&AuditTrail>,
    ) -> Result<(), VaultError> {
        let trail_members = trail.and_then(AuditTrail::members);
        let store = self.trust();
        for user in users {
            let fingerprint = user.certificate.fingerprint();
            if user.user_id == self.user && user.certificate == self.certificate {
                continue;
            }
            if store.is_confirmed(&self.server, &user.user_id, &fingerprint) {
                continue;
            }
            if trail_members.is_some_and(|members| members.contains(&(user.user_id.clone(), fingerprint.clone()))) {
                continue;
            }
            return Err(VaultError::Unconfirmed { user: user.user_id.clone(), fingerprint });
        }
        Ok(())
    }

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
