//! What a device accepts about a top folder's members, and to whom it gives keys.
//!
//! [`Vault::check_membership`] runs on every read of a top folder: on every device, pinned or not, the
//! signed member list and recovery key must be what the verified audit trail ends in; with pins, nothing may
//! change unless a trusted member or the trail says so. [`Vault::check_key_recipients`] runs before anything
//! wraps a key: each recipient must be this user, confirmed on this device, or vouched for by the trail.
//! docs/THREAT-MODEL.md ("Trust on first use") maps each check to the attack it stops.

use super::{Vault, VaultError};
use crate::metadata::audit::{AuditEvent, AuditTrail, Member};
use crate::metadata::{DecodedTopFolder, TrustedUser};
use crate::storage::E2eeApi;
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

fn members_of(users: &[TrustedUser]) -> Vec<Member> {
    super::members::members_of(users)
}

fn audit_error(file_id: u64) -> impl FnOnce(crate::metadata::audit::AuditError) -> VaultError {
    move |source| VaultError::Audit { file_id, source }
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
                return Err(mismatch(format!("signed: {:?}, trail: {:?}", names(&current), names(&last.members))));
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
}
