//! Sharing a top folder with a user and taking it back: the server share (the [`Sharing`] remote) and the
//! membership change (src/vault/members.rs).
//!
//! No key is wrapped for a certificate the user has not confirmed: [`Vault::certificate_of`] fetches and
//! checks a certificate without trusting it, the caller shows its fingerprint and asks, and
//! [`Vault::share`] takes the fingerprint the user confirmed and refuses any other.

use super::members::{Change, ShareOutcome};
use super::{Vault, VaultError};
use crate::crypto::UserCertificate;
use crate::metadata::TrustedUser;
use crate::storage::{SharePermissions, Sharing};

/// What this device knows of a certificate the server presents for a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateStatus {
    /// The user confirmed this fingerprint on this device.
    Confirmed,
    /// Pinned (seen before, e.g. in a folder), never confirmed.
    Pinned,
    /// Never seen on this device.
    New,
    /// Another certificate is pinned for the user (a new key pair, or a substitution).
    Changed {
        /// The pinned fingerprint.
        pinned: String,
    },
}

/// A fingerprint as users type it: hex digits, optionally with "SHA256", colons or spaces; lower-cased.
pub fn normalise_fingerprint(text: &str) -> String {
    let text = text.trim();
    let text = text.strip_prefix("SHA256").or_else(|| text.strip_prefix("sha256")).unwrap_or(text);
    text.chars().filter(char::is_ascii_hexdigit).collect::<String>().to_ascii_lowercase()
}

impl<R: Sharing> Vault<R> {
    /// Fetches `user`'s certificate and checks that the pinned server key issued it to them. Trusts nothing:
    /// says what this device knows of it, for the caller to show the fingerprint and ask.
    pub async fn certificate_of(&self, user: &str) -> Result<(UserCertificate, CertificateStatus), VaultError> {
        let certificates = self.remote.certificates(&[user]).await?.ok_or_else(|| VaultError::NoKeys(user.into()))?;
        let pem = certificates.get(user).ok_or_else(|| VaultError::NoKeys(user.into()))?;
        let untrusted = |reason: String| VaultError::Metadata {
            file_id: 0,
            source: crate::metadata::MetadataError::UntrustedCertificate { user_id: user.into(), reason },
        };
        let certificate = UserCertificate::from_pem(pem).map_err(|error| untrusted(error.to_string()))?;
        certificate.verify_for_user(&self.server_key, user).map_err(|error| untrusted(error.to_string()))?;
        let fingerprint = certificate.fingerprint();
        let store = self.trust();
        let status = if store.is_confirmed(&self.server, user, &fingerprint) {
            CertificateStatus::Confirmed
        } else {
            match store.pinned_certificate(&self.server, user) {
                Some(pinned) if pinned == fingerprint => CertificateStatus::Pinned,
                Some(pinned) => CertificateStatus::Changed { pinned: pinned.to_owned() },
                None => CertificateStatus::New,
            }
        };
        Ok((certificate, status))
    }

    /// Fetches `user`'s certificate and confirms it on this device if its fingerprint is `fingerprint` (which
    /// the user compared with them); a changed certificate needs `new_certificate`. Returns the certificate.
    pub async fn confirm_certificate(
        &self,
        user: &str,
        fingerprint: &str,
        new_certificate: bool,
    ) -> Result<UserCertificate, VaultError> {
        let (certificate, status) = self.certificate_of(user).await?;
        let presented = certificate.fingerprint();
        let given = normalise_fingerprint(fingerprint);
        if given != presented {
            return Err(VaultError::FingerprintMismatch { user: user.into(), given, presented });
        }
        let changed = matches!(status, CertificateStatus::Changed { .. });
        if let CertificateStatus::Changed { pinned } = status {
            if !new_certificate {
                return Err(crate::trust::TrustError::CertificateChanged {
                    server: self.server.clone(),
                    user: user.into(),
                    pinned,
                    presented,
                }
                .into());
            }
        }
        // A new certificate of a member becomes the pin once the change recording it is written (`share`).
        self.trust().confirm_certificate(&self.server, user, &presented, !changed)?;
        Ok(certificate)
    }

    /// Shares the top folder at `clear_path` with `user`, whose certificate the user confirmed: `confirmed`
    /// is the fingerprint they compared (else it must have been confirmed on this device before; nothing is
    /// shared otherwise). Makes the server share and, for readers and writers, adds `user` to the members
    /// under a new metadata key; for a file drop, records the drop share in the audit trail.
    /// `new_certificate`: `confirmed` is a member's new certificate (a new key pair); it replaces the pinned
    /// one and, for a member, is recorded in the audit trail.
    pub async fn share(
        &self,
        clear_path: &str,
        user: &str,
        permissions: SharePermissions,
        confirmed: Option<&str>,
        new_certificate: bool,
    ) -> Result<ShareOutcome, VaultError> {
        let (tree, _) = self.top_folder(clear_path).await?;
        let certificate = match confirmed {
            Some(fingerprint) => self.confirm_certificate(user, fingerprint, new_certificate).await?,
            None => match self.certificate_of(user).await? {
                (certificate, CertificateStatus::Confirmed) => certificate,
                (certificate, _) => {
                    return Err(VaultError::Unconfirmed { user: user.into(), fingerprint: certificate.fingerprint() })
                }
            },
        };
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
        let member = TrustedUser { user_id: user.into(), certificate };
        if permissions == SharePermissions::Drop {
            let change = Change::DropShare { user: Box::new(member), added: true };
            let changed = self.change_members(&tree.path, change).await?;
            return Ok(ShareOutcome { fingerprint, already_member: !changed });
        }
        // A confirmed new certificate of a member: written with a `new-certificate` audit entry, which is what
        // lets the other members' devices take it for this folder.
        let replaced = new_certificate
            && self.change_members(&tree.path, Change::ReplaceCertificate(Box::new(member.clone()))).await?;
        if new_certificate {
            self.trust().replace_certificate(&self.server, user, &fingerprint)?;
        }
        let changed = replaced || self.change_members(&tree.path, Change::Add(Box::new(member))).await?;
        Ok(ShareOutcome { fingerprint, already_member: !changed })
    }

    /// Takes the top folder at `clear_path` back from `user`: removes the server shares, then removes them
    /// from the members with a new metadata key (and their file-drop share from the trail). `Ok(false)` if
    /// they were not a member.
    pub async fn unshare(&self, clear_path: &str, user: &str) -> Result<bool, VaultError> {
        let (tree, _) = self.top_folder(clear_path).await?;
        for share in self.remote.shares(&tree.path).await? {
            if share.recipient == user {
                self.remote.unshare(&share.id).await?;
            }
        }
        let member =
            self.members(clear_path).await?.trail.is_some_and(|trail| trail.drop_shares().iter().any(|u| u == user));
        if member {
            let (certificate, _) = self.certificate_of(user).await?;
            let user = TrustedUser { user_id: user.into(), certificate };
            self.change_members(&tree.path, Change::DropShare { user: Box::new(user), added: false }).await?;
        }
        self.change_members(&tree.path, Change::Remove(user.into())).await
    }

    /// Removes the recovery key from the top folder at `clear_path`: a new metadata key not wrapped for it,
    /// recorded in the audit trail; cloakfs does not add one back to this folder. `Ok(false)` if it had none.
    pub async fn remove_recovery(&self, clear_path: &str) -> Result<bool, VaultError> {
        let (tree, _) = self.top_folder(clear_path).await?;
        self.change_members(&tree.path, Change::RemoveRecovery).await
    }
}
