//! Sharing a top folder with a user and taking it back: the server share (the [`Sharing`] remote) and the
//! membership change (src/vault/members.rs).

use super::members::{Change, ShareOutcome};
use super::{Vault, VaultError};
use crate::crypto::UserCertificate;
use crate::metadata::TrustedUser;
use crate::storage::{SharePermissions, Sharing};
use crate::trust::PinOutcome;

impl<R: Sharing> Vault<R> {
    /// Fetches `user`'s certificate, checks that the pinned server key issued it to them, and pins it on
    /// first use (a changed one is refused).
    pub async fn certificate_of(
        &self,
        user: &str,
        accept_new: Option<&str>,
    ) -> Result<(UserCertificate, PinOutcome), VaultError> {
        let certificates = self.remote.certificates(&[user]).await?.ok_or_else(|| VaultError::NoKeys(user.into()))?;
        let pem = certificates.get(user).ok_or_else(|| VaultError::NoKeys(user.into()))?;
        let certificate = UserCertificate::from_pem(pem).map_err(|error| VaultError::Metadata {
            file_id: 0,
            source: crate::metadata::MetadataError::UntrustedCertificate {
                user_id: user.into(),
                reason: error.to_string(),
            },
        })?;
        certificate.verify_for_user(&self.server_key, user).map_err(|error| VaultError::Metadata {
            file_id: 0,
            source: crate::metadata::MetadataError::UntrustedCertificate {
                user_id: user.into(),
                reason: error.to_string(),
            },
        })?;
        let fingerprint = certificate.fingerprint();
        if accept_new.is_some_and(|accepted| accepted.eq_ignore_ascii_case(&fingerprint)) {
            // Pinned once the change is written (see `share`).
            return Ok((certificate, PinOutcome::Known));
        }
        let outcome = self.trust().check_certificate(&self.server, user, &certificate)?;
        Ok((certificate, outcome))
    }

    /// Shares the top folder at `clear_path` with `user`: pins their certificate, makes the server share,
    /// and (unless it is a file drop) adds them to the members with a new metadata key.
    /// `accept_new_certificate`: the fingerprint of a new certificate of `user` (a new key pair) that the
    /// user confirmed; it replaces the pinned one and, for a member, is recorded in the audit trail.
    pub async fn share(
        &self,
        clear_path: &str,
        user: &str,
        permissions: SharePermissions,
        accept_new_certificate: Option<&str>,
    ) -> Result<ShareOutcome, VaultError> {
        let (tree, _) = self.top_folder(clear_path).await?;
        let (certificate, outcome) = self.certificate_of(user, accept_new_certificate).await?;
        // A share with other permissions (say a file drop becoming a member) is made anew.
        let mut shared = false;
        for share in self.remote.shares(&tree.path).await? {
            if share.is_user_share && share.recipient == user {
                if share.permissions == permissions.bits() {
                    shared = true;
                } else {
                    self.remote.unshare(&share.id).await?;
                }
            }
        }
        if !shared {
            self.remote.share(&tree.path, user, permissions).await?;
        }
        let fingerprint = certificate.fingerprint();
        if permissions == SharePermissions::Drop {
            return Ok(ShareOutcome { fingerprint, first_use: outcome == PinOutcome::FirstUse, already_member: false });
        }
        let member = TrustedUser { user_id: user.into(), certificate };
        // A confirmed new certificate of a member: written with a `new-certificate` audit entry, which is what
        // lets this device (reading it back) and the other members' devices replace their pins.
        let replaced = accept_new_certificate.is_some()
            && self.change_members(&tree.path, Change::ReplaceCertificate(Box::new(member.clone()))).await?;
        if accept_new_certificate.is_some() && !replaced {
            self.trust().replace_certificate(&self.server, user, &fingerprint)?;
        }
        let changed = replaced || self.change_members(&tree.path, Change::Add(Box::new(member))).await?;
        Ok(ShareOutcome { fingerprint, first_use: outcome == PinOutcome::FirstUse, already_member: !changed })
    }

    /// Takes the top folder at `clear_path` back from `user`: removes the server shares, then removes them
    /// from the members with a new metadata key. `Ok(false)` if they were not a member.
    pub async fn unshare(&self, clear_path: &str, user: &str) -> Result<bool, VaultError> {
        let (tree, _) = self.top_folder(clear_path).await?;
        for share in self.remote.shares(&tree.path).await? {
            if share.recipient == user {
                self.remote.unshare(&share.id).await?;
            }
        }
        self.change_members(&tree.path, Change::Remove(user.into())).await
    }
}
