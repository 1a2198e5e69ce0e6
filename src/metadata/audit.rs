//! The audit trail of a top folder: who changed the membership, rotated the key or changed devices, as a
//! hash chain of entries each signed by the member who made the change.
//!
//! It lives in the top folder's *encrypted* inner metadata under `cloakfsAudit` (docs/FORMAT.md §6), so the
//! server sees none of it and cannot change it without breaking the metadata signature; rolling it back means
//! rolling back the metadata, which the counter catches. Members' clients pin the length and head hash they
//! saw, so a member who shortens or rewrites it is caught too. The trail holds user ids, certificate
//! fingerprints, key checksums and counters: no file names, no contents, no keys.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::canonical_json::to_canonical_string;
use crate::crypto::{PrivateIdentity, PublicKey, UserCertificate};

/// The key of the trail in the inner metadata.
pub const AUDIT_FIELD: &str = "cloakfsAudit";
/// The `previous` of a trail's first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Most entries a trail may hold (a membership change a day for 25 years).
pub const MAX_ENTRIES: usize = 10_000;

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditEvent {
    /// The folder was created (first entry).
    FolderCreated,
    /// The trail starts on a folder that had none (created by another client, or the trail was dropped by a
    /// client that does not keep it); `previous` is the last head the writer knew, if any.
    TrailStarted,
    /// A member was added (the key was rotated).
    MemberAdded,
    /// A member was removed (the key was rotated).
    MemberRemoved,
    /// Every file was re-encrypted under fresh keys.
    FilesRekeyed,
    /// A recovery key now receives the metadata key.
    RecoveryEnabled,
    /// The recovery key no longer receives the metadata key (the key was rotated without it); cloakfs does
    /// not add one back to this folder.
    RecoveryDisabled,
    /// The subject may drop files into the folder (a file-drop share): only then do members' clients take
    /// file drops into the folder.
    DropShareAdded,
    /// The subject's file-drop share was removed.
    DropShareRemoved,
    /// A member's certificate changed (a new key pair: a new device or a reset).
    NewCertificate,
    /// The recovery key restored a member's access with their new certificate (the member lost their keys).
    /// Authorised by the recovery key in force before (its signature in `recoverySignature`), not by a
    /// member; it may only replace the actor's own certificate.
    RecoveryUsed,
}

/// One member: user id and certificate fingerprint.
pub type Member = (String, String);

/// One entry of the trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Position in the trail, from 0.
    pub seq: u64,
    /// Hex SHA-256 of the previous entry (signature included); [`GENESIS`] for the first.
    pub previous: String,
    /// When, by the writer's clock (seconds since the epoch; informational).
    pub time: u64,
    /// The metadata counter of the version that carries the change.
    pub counter: u64,
    /// Who made the change.
    pub actor: String,
    /// The actor's certificate fingerprint (its PEM is in the trail's `certificates`).
    pub actor_certificate: String,
    /// What happened.
    pub event: AuditEvent,
    /// The member concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The concerned member's certificate fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_certificate: Option<String>,
    /// Checksum of the metadata key in force after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_checksum: Option<String>,
    /// The members after the change, sorted.
    pub members: Vec<Member>,
    /// Fingerprint of the recovery key receiving the metadata key after the change, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<String>,
    /// Base64 RSASSA-PKCS1-v1_5/SHA-256 by the actor over the canonical JSON of the entry without this field
    /// and without `recoverySignature`.
    #[serde(default)]
    pub signature: String,
    /// For [`AuditEvent::RecoveryUsed`]: the same signature by the recovery key in force before the entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_signature: Option<String>,
}

/// The trail as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditTrail {
    /// The entries, oldest first.
    pub entries: Vec<AuditEntry>,
    /// Every certificate an entry names, PEM, by fingerprint.
    #[serde(default)]
    pub certificates: std::collections::BTreeMap<String, String>,
    /// Every recovery public key an entry names (PEM SPKI), by fingerprint.
    #[serde(default, rename = "recoveryKeys", skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub recovery_keys: std::collections::BTreeMap<String, String>,
}

/// Why a trail does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// Not the expected JSON.
    #[error("audit trail is malformed: {0}")]
    Malformed(String),
    /// An entry is out of sequence or its hash link is wrong (an entry was edited, removed or reordered).
    #[error("audit trail entry {seq}: the chain is broken (an entry was edited, removed or reordered)")]
    BrokenChain {
        /// The entry.
        seq: u64,
    },
    /// An entry's signature does not verify with its actor's certificate.
    #[error("audit trail entry {seq}: signature by {actor:?} does not verify")]
    BadSignature {
        /// The entry.
        seq: u64,
        /// The claimed actor.
        actor: String,
    },
    /// An entry's actor certificate is missing or not issued to the actor by the server key.
    #[error("audit trail entry {seq}: the certificate of {actor:?} is missing or not issued to them: {reason}")]
    BadCertificate {
        /// The entry.
        seq: u64,
        /// The claimed actor.
        actor: String,
        /// What failed.
        reason: String,
    },
    /// An entry was made by someone who was not a member before it.
    #[error("audit trail entry {seq}: {actor:?} changed the folder without being a member")]
    NotAMember {
        /// The entry.
        seq: u64,
        /// The actor.
        actor: String,
    },
    /// The trail is shorter than, or differs from, what this device saw before.
    #[error(
        "the audit trail was cut or rewritten: this device saw {pinned_len} entries ending in {pinned_head}, \
         now there are {len}"
    )]
    Truncated {
        /// Entries seen before.
        pinned_len: u64,
        /// Head hash seen before.
        pinned_head: String,
        /// Entries now.
        len: u64,
    },
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}

impl AuditEntry {
    /// The bytes the signatures cover: the canonical JSON of the entry without `signature` and
    /// `recoverySignature`.
    pub fn signed_bytes(&self) -> String {
        let mut value = serde_json::to_value(self).expect("an entry serialises");
        if let Value::Object(object) = &mut value {
            object.remove("signature");
            object.remove("recoverySignature");
        }
        to_canonical_string(&value)
    }

    /// Hex SHA-256 of the whole entry (signature included): the next entry's `previous`.
    pub fn hash(&self) -> String {
        hex_sha256(to_canonical_string(&serde_json::to_value(self).expect("an entry serialises")).as_bytes())
    }
}

/// A change to record, before it is chained and signed.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    /// What happened.
    pub event: AuditEvent,
    /// The member concerned.
    pub subject: Option<Member>,
    /// Checksum of the metadata key after the change.
    pub key_checksum: Option<String>,
    /// Members after the change.
    pub members: Vec<Member>,
    /// Recovery key fingerprint after the change.
    pub recovery: Option<String>,
}

impl AuditTrail {
    /// Reads the trail from inner metadata fields; `None` when there is none.
    pub fn from_fields(fields: &serde_json::Map<String, Value>) -> Result<Option<Self>, AuditError> {
        match fields.get(AUDIT_FIELD) {
            None => Ok(None),
            Some(value) => {
                let trail: Self =
                    serde_json::from_value(value.clone()).map_err(|error| AuditError::Malformed(error.to_string()))?;
                if trail.entries.len() > MAX_ENTRIES {
                    return Err(AuditError::Malformed(format!("more than {MAX_ENTRIES} entries")));
                }
                Ok(Some(trail))
            }
        }
    }

    /// Writes the trail into inner metadata fields.
    pub fn store_in(&self, fields: &mut serde_json::Map<String, Value>) {
        fields.insert(AUDIT_FIELD.to_owned(), serde_json::to_value(self).expect("a trail serialises"));
    }

    /// The hash of the last entry ([`GENESIS`] when empty).
    pub fn head(&self) -> String {
        self.entries.last().map(AuditEntry::hash).unwrap_or_else(|| GENESIS.to_owned())
    }

    /// The members after the last entry.
    pub fn members(&self) -> Option<&[Member]> {
        self.entries.last().map(|entry| entry.members.as_slice())
    }

    /// Appends `record` as made by `actor` (with `certificate` and `identity`) in metadata version `counter`.
    /// `previous_head` links a new trail to the head of a lost one (else [`GENESIS`]).
    pub fn append(
        &mut self,
        record: AuditRecord,
        counter: u64,
        actor: &str,
        certificate: &UserCertificate,
        identity: &PrivateIdentity,
        previous_head: Option<&str>,
    ) -> Result<(), crate::crypto::IdentityError> {
        self.append_signed(record, counter, actor, certificate, identity, previous_head, None)
    }

    /// [`Self::append`], also signed by `recovery` (for [`AuditEvent::RecoveryUsed`]).
    #[allow(clippy::too_many_arguments)]
    pub fn append_signed(
        &mut self,
        record: AuditRecord,
        counter: u64,
        actor: &str,
        certificate: &UserCertificate,
        identity: &PrivateIdentity,
        previous_head: Option<&str>,
        recovery: Option<&PrivateIdentity>,
    ) -> Result<(), crate::crypto::IdentityError> {
        let previous = match self.entries.last() {
            Some(last) => last.hash(),
            None => previous_head.unwrap_or(GENESIS).to_owned(),
        };
        let mut members = record.members;
        members.sort();
        let mut entry = AuditEntry {
            seq: self.entries.len() as u64,
            previous,
            time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| elapsed.as_secs())
                .unwrap_or(0),
            counter,
            actor: actor.to_owned(),
            actor_certificate: certificate.fingerprint(),
            event: record.event,
            subject: record.subject.as_ref().map(|(user, _)| user.clone()),
            subject_certificate: record.subject.map(|(_, fingerprint)| fingerprint),
            key_checksum: record.key_checksum,
            members,
            recovery: record.recovery,
            signature: String::new(),
            recovery_signature: None,
        };
        entry.signature = BASE64.encode(identity.sign_pkcs1_sha256(entry.signed_bytes().as_bytes())?);
        if let Some(recovery) = recovery {
            entry.recovery_signature =
                Some(BASE64.encode(recovery.sign_pkcs1_sha256(entry.signed_bytes().as_bytes())?));
            self.recovery_keys.insert(recovery.public_key().fingerprint(), recovery.public_key().to_pem());
        }
        self.certificates.insert(certificate.fingerprint(), certificate.to_pem());
        self.entries.push(entry);
        Ok(())
    }

    /// Verifies the whole trail: sequence and hash links, every signature by a certificate the server key
    /// issued to the actor, and every change after the first made by a member of the state before it.
    pub fn verify(&self, server_key: &PublicKey) -> Result<(), AuditError> {
        let mut previous_hash: Option<String> = None;
        let mut previous_members: Option<&[Member]> = None;
        for (index, entry) in self.entries.iter().enumerate() {
            let seq = entry.seq;
            if seq != index as u64 {
                return Err(AuditError::BrokenChain { seq });
            }
            if let Some(expected) = &previous_hash {
                if entry.previous != *expected {
                    return Err(AuditError::BrokenChain { seq });
                }
            }
            let bad_certificate =
                |reason: String| AuditError::BadCertificate { seq, actor: entry.actor.clone(), reason };
            let pem = self
                .certificates
                .get(&entry.actor_certificate)
                .ok_or_else(|| bad_certificate("not in the trail".into()))?;
            let certificate = UserCertificate::from_pem(pem).map_err(|error| bad_certificate(error.to_string()))?;
            if certificate.fingerprint() != entry.actor_certificate {
                return Err(bad_certificate("fingerprint differs".into()));
            }
            certificate
                .verify_for_user(server_key, &entry.actor)
                .map_err(|error| bad_certificate(error.to_string()))?;
            let signature = BASE64
                .decode(entry.signature.trim())
                .map_err(|_| AuditError::BadSignature { seq, actor: entry.actor.clone() })?;
            let algorithm = const_oid::db::rfc5912::SHA_256_WITH_RSA_ENCRYPTION;
            crate::crypto::identity::verify_rsa_signature(
                certificate.public_key(),
                &algorithm,
                entry.signed_bytes().as_bytes(),
                &signature,
            )
            .map_err(|_| AuditError::BadSignature { seq, actor: entry.actor.clone() })?;
            let actor = (entry.actor.clone(), entry.actor_certificate.clone());
            let authorised = match previous_members {
                Some(_) if entry.event == AuditEvent::RecoveryUsed => {
                    let previous = &self.entries[index - 1];
                    self.recovery_authorises(entry, previous, &algorithm)
                }
                Some(members) => members.contains(&actor),
                // The first entry: its actor must be among the members it records.
                None => entry.members.contains(&actor),
            };
            if !authorised {
                return Err(AuditError::NotAMember { seq, actor: entry.actor.clone() });
            }
            previous_hash = Some(entry.hash());
            previous_members = Some(&entry.members);
        }
        Ok(())
    }

    /// Whether a [`AuditEvent::RecoveryUsed`] entry is signed by the recovery key in force after `previous`
    /// and only replaces its actor's own certificate among `previous`'s members.
    fn recovery_authorises(
        &self,
        entry: &AuditEntry,
        previous: &AuditEntry,
        algorithm: &const_oid::ObjectIdentifier,
    ) -> bool {
        let Some(fingerprint) = &previous.recovery else { return false };
        let Some(key) = self.recovery_keys.get(fingerprint).and_then(|pem| PublicKey::from_pem(pem).ok()) else {
            return false;
        };
        if key.fingerprint() != *fingerprint {
            return false;
        }
        let Some(signature) = entry.recovery_signature.as_deref().and_then(|text| BASE64.decode(text.trim()).ok())
        else {
            return false;
        };
        if crate::crypto::identity::verify_rsa_signature(&key, algorithm, entry.signed_bytes().as_bytes(), &signature)
            .is_err()
        {
            return false;
        }
        let mut expected: Vec<Member> = previous
            .members
            .iter()
            .map(|member| {
                if member.0 == entry.actor {
                    (entry.actor.clone(), entry.actor_certificate.clone())
                } else {
                    member.clone()
                }
            })
            .collect();
        expected.sort();
        previous.members.iter().any(|member| member.0 == entry.actor) && expected == entry.members
    }

    /// The users a member gave a file-drop share, as the trail records it (added and not removed since).
    pub fn drop_shares(&self) -> Vec<String> {
        let mut users: Vec<String> = Vec::new();
        for entry in &self.entries {
            let Some(subject) = &entry.subject else { continue };
            match entry.event {
                AuditEvent::DropShareAdded if !users.contains(subject) => users.push(subject.clone()),
                AuditEvent::DropShareRemoved => users.retain(|user| user != subject),
                _ => {}
            }
        }
        users
    }

    /// Whether a member removed the recovery key (and none was enabled since).
    pub fn recovery_disabled(&self) -> bool {
        self.entries
            .iter()
            .rev()
            .find(|entry| matches!(entry.event, AuditEvent::RecoveryEnabled | AuditEvent::RecoveryDisabled))
            .is_some_and(|entry| entry.event == AuditEvent::RecoveryDisabled)
    }

    /// Checks that this trail extends the one this device saw (`pinned_len` entries ending in `pinned_head`).
    /// `Ok(true)` when it is a new trail whose first entry ([`AuditEvent::TrailStarted`]) links to that head
    /// (a client that does not keep trails dropped it, and cloakfs started a new one).
    pub fn check_extends(&self, pinned_len: u64, pinned_head: &str) -> Result<bool, AuditError> {
        if pinned_len == 0 {
            return Ok(false);
        }
        let truncated = || AuditError::Truncated {
            pinned_len,
            pinned_head: pinned_head.to_owned(),
            len: self.entries.len() as u64,
        };
        if let Some(first) = self.entries.first() {
            if first.event == AuditEvent::TrailStarted && first.previous == pinned_head && pinned_head != GENESIS {
                return Ok(true);
            }
        }
        let entry = self.entries.get(pinned_len as usize - 1).ok_or_else(truncated)?;
        if entry.hash() != pinned_head {
            return Err(truncated());
        }
        Ok(false)
    }

    /// Whether the entries after the first `from_len` lead, each made by a member of the state before it,
    /// from `from_members` to `to_members`. With a trail that passed [`Self::verify`] this proves that a
    /// membership change this device did not see was made by members it trusts (or by the recovery key in
    /// force, for a member's own restored access).
    pub fn authorises(&self, from_len: u64, from_members: &[Member], to_members: &[Member]) -> bool {
        let mut state: Vec<Member> = from_members.to_vec();
        state.sort();
        let mut start = from_len as usize;
        // The pinned state must be what the trail says at that point (when the trail covers it).
        if start > 0 {
            match self.entries.get(start - 1) {
                Some(entry) if entry.members == state => {}
                _ => return false,
            }
        } else if let Some(position) = self.entries.iter().rposition(|entry| entry.members == state) {
            // No pinned trail: start from the last entry whose members are the pinned ones.
            start = position + 1;
        } else {
            return false;
        }
        for entry in &self.entries[start.min(self.entries.len())..] {
            // A recovery entry was checked against the recovery key by `verify` (which must have passed).
            let by_recovery = entry.event == AuditEvent::RecoveryUsed && entry.recovery_signature.is_some();
            if !by_recovery && !state.contains(&(entry.actor.clone(), entry.actor_certificate.clone())) {
                return false;
            }
            state = entry.members.clone();
        }
        let mut wanted = to_members.to_vec();
        wanted.sort();
        state == wanted
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    struct Person {
        name: &'static str,
        identity: PrivateIdentity,
        certificate: UserCertificate,
    }

    fn person(ca: &PrivateIdentity, name: &'static str) -> Person {
        let identity = PrivateIdentity::generate().unwrap();
        let request = identity.certificate_request_pem(name).unwrap();
        let certificate = ca.issue_certificate(&request, name, Duration::from_secs(3600)).unwrap();
        Person { name, identity, certificate }
    }

    fn member(person: &Person) -> Member {
        (person.name.to_owned(), person.certificate.fingerprint())
    }

    fn record(event: AuditEvent, members: Vec<Member>) -> AuditRecord {
        AuditRecord { event, subject: None, key_checksum: None, members, recovery: None }
    }

    fn append(trail: &mut AuditTrail, by: &Person, event: AuditEvent, members: Vec<Member>) {
        let counter = trail.entries.len() as u64 + 1;
        trail.append(record(event, members), counter, by.name, &by.certificate, &by.identity, None).unwrap();
    }

    /// alice creates, adds bob, bob adds carol.
    fn sample() -> (PrivateIdentity, [Person; 3], AuditTrail) {
        let ca = PrivateIdentity::generate().unwrap();
        let people = [person(&ca, "alice"), person(&ca, "bob"), person(&ca, "carol")];
        let mut trail = AuditTrail::default();
        append(&mut trail, &people[0], AuditEvent::FolderCreated, vec![member(&people[0])]);
        append(&mut trail, &people[0], AuditEvent::MemberAdded, vec![member(&people[0]), member(&people[1])]);
        let all = vec![member(&people[0]), member(&people[1]), member(&people[2])];
        append(&mut trail, &people[1], AuditEvent::MemberAdded, all);
        (ca, people, trail)
    }

    #[test]
    fn a_trail_verifies_and_survives_storage() {
        let (ca, _, trail) = sample();
        trail.verify(ca.public_key()).unwrap();
        let mut fields = serde_json::Map::new();
        trail.store_in(&mut fields);
        let read = AuditTrail::from_fields(&fields).unwrap().unwrap();
        assert_eq!(read, trail);
        read.verify(ca.public_key()).unwrap();
        assert_eq!(read.head(), trail.entries[2].hash());
    }

    #[test]
    fn an_edited_reordered_or_cut_trail_is_caught() {
        let (ca, people, trail) = sample();
        let mut edited = trail.clone();
        edited.entries[1].members.pop();
        assert!(matches!(edited.verify(ca.public_key()), Err(AuditError::BadSignature { seq: 1, .. })));
        let mut removed = trail.clone();
        removed.entries.remove(1);
        assert!(matches!(removed.verify(ca.public_key()), Err(AuditError::BrokenChain { seq: 2 })));
        let mut relinked = trail.clone();
        relinked.entries[2].previous = GENESIS.into();
        assert!(relinked.verify(ca.public_key()).is_err());
        // Cut: a device that saw three entries refuses two, and a different third one.
        let mut cut = trail.clone();
        cut.entries.pop();
        assert!(matches!(cut.check_extends(3, &trail.head()), Err(AuditError::Truncated { .. })));
        let mut other_end = cut.clone();
        append(&mut other_end, &people[0], AuditEvent::MemberRemoved, vec![member(&people[0])]);
        assert!(other_end.check_extends(3, &trail.head()).is_err());
        assert!(!trail.check_extends(3, &trail.head()).unwrap());
        assert!(!trail.check_extends(2, &trail.entries[1].hash()).unwrap());
    }

    #[test]
    fn only_members_of_the_state_before_may_make_a_change() {
        let (ca, people, mut trail) = sample();
        let mallory = person(&ca, "mallory");
        append(&mut trail, &mallory, AuditEvent::MemberAdded, vec![member(&people[0]), member(&mallory)]);
        assert!(matches!(trail.verify(ca.public_key()), Err(AuditError::NotAMember { seq: 3, .. })));
        // A certificate the server key did not issue.
        let stranger_ca = PrivateIdentity::generate().unwrap();
        let (_, _, foreign) = {
            let people = [person(&stranger_ca, "alice")];
            let mut trail = AuditTrail::default();
            append(&mut trail, &people[0], AuditEvent::FolderCreated, vec![member(&people[0])]);
            (0, 0, trail)
        };
        assert!(matches!(foreign.verify(ca.public_key()), Err(AuditError::BadCertificate { .. })));
    }

    #[test]
    fn a_chain_of_changes_authorises_a_membership_this_device_did_not_see() {
        let (_, people, trail) = sample();
        let alice_only = vec![member(&people[0])];
        let everyone = vec![member(&people[0]), member(&people[1]), member(&people[2])];
        // A device that saw only alice (1 entry): bob, added by alice, added carol.
        assert!(trail.authorises(1, &alice_only, &everyone));
        // Not to a member list the trail does not end in.
        assert!(!trail.authorises(1, &alice_only, &alice_only));
        // Not from a state the trail does not show at that point.
        assert!(!trail.authorises(2, &alice_only, &everyone));
    }

    #[test]
    fn a_recovery_entry_counts_only_with_the_recovery_key_in_force_and_only_for_the_actors_own_certificate() {
        let ca = PrivateIdentity::generate().unwrap();
        let recovery = PrivateIdentity::generate().unwrap();
        let (alice, bob) = (person(&ca, "alice"), person(&ca, "bob"));
        let fingerprint = recovery.public_key().fingerprint();
        let with_recovery = |event, members| AuditRecord {
            event,
            subject: None,
            key_checksum: None,
            members,
            recovery: Some(fingerprint.clone()),
        };
        let mut base = AuditTrail::default();
        let both = vec![member(&alice), member(&bob)];
        base.append(
            with_recovery(AuditEvent::FolderCreated, both.clone()),
            1,
            "alice",
            &alice.certificate,
            &alice.identity,
            None,
        )
        .unwrap();
        // Alice's new key pair takes her place, signed by the recovery key in force.
        let new_alice = person(&ca, "alice");
        let restored = vec![member(&new_alice), member(&bob)];
        let mut trail = base.clone();
        let record = with_recovery(AuditEvent::RecoveryUsed, restored.clone());
        trail
            .append_signed(record, 2, "alice", &new_alice.certificate, &new_alice.identity, None, Some(&recovery))
            .unwrap();
        trail.verify(ca.public_key()).unwrap();
        assert!(trail.authorises(1, &both, &restored));
        // Another recovery key, or none: not authorised.
        let stranger = PrivateIdentity::generate().unwrap();
        let mut forged = base.clone();
        forged
            .append_signed(
                with_recovery(AuditEvent::RecoveryUsed, restored.clone()),
                2,
                "alice",
                &new_alice.certificate,
                &new_alice.identity,
                None,
                Some(&stranger),
            )
            .unwrap();
        assert!(matches!(forged.verify(ca.public_key()), Err(AuditError::NotAMember { seq: 1, .. })));
        let mut unsigned = trail.clone();
        unsigned.entries[1].recovery_signature = None;
        assert!(unsigned.verify(ca.public_key()).is_err());
        // The recovery key may not add anyone: mallory in the members makes it a forgery.
        let mallory = person(&ca, "mallory");
        let mut added = base.clone();
        let record = with_recovery(AuditEvent::RecoveryUsed, vec![member(&new_alice), member(&bob), member(&mallory)]);
        added
            .append_signed(record, 2, "alice", &new_alice.certificate, &new_alice.identity, None, Some(&recovery))
            .unwrap();
        assert!(matches!(added.verify(ca.public_key()), Err(AuditError::NotAMember { seq: 1, .. })));
    }
}
