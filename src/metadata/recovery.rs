//! The offline recovery key: an RSA key pair whose private half an administrator keeps offline. A top
//! folder that has one carries, in the outer `metadata` object, `cloakfsRecovery: {publicKey,
//! encryptedMetadataKey}` (docs/FORMAT.md §7): the metadata key wrapped (RSA-OAEP-SHA256) for it. It is
//! covered by the metadata signature, so only a member can add or change it. Official Nextcloud clients
//! ignore the field and drop it when they rewrite the metadata; cloakfs adds it back at its next write.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value};

use super::codec::{
    decrypt_block, verify_top_folder_users, CertificateTrust, DecodedFolder, DecodedTopFolder, TreeKeys,
};
use super::error::MetadataError;
use super::model::MetadataDocument;
use crate::crypto::{MetadataKey, PrivateIdentity, PublicKey};

/// The field of the outer `metadata` object.
pub const RECOVERY_FIELD: &str = "cloakfsRecovery";

/// The recovery public key a document wraps its key for, if any.
pub fn recovery_key_of(document: &MetadataDocument) -> Result<Option<PublicKey>, MetadataError> {
    let Some(value) = document.metadata.unknown.get(RECOVERY_FIELD) else { return Ok(None) };
    let pem = value
        .get("publicKey")
        .and_then(Value::as_str)
        .ok_or(MetadataError::Malformed { field: "cloakfsRecovery", reason: "no publicKey".into() })?;
    PublicKey::from_pem(pem)
        .map(Some)
        .map_err(|error| MetadataError::Malformed { field: "cloakfsRecovery", reason: error.to_string() })
}

/// Wraps `key` for `recovery` into `document` (before signing).
pub fn attach(document: &mut MetadataDocument, recovery: &PublicKey, key: &MetadataKey) -> Result<(), MetadataError> {
    let wrapped = recovery.wrap_metadata_key(key).map_err(MetadataError::KeyUnwrap)?;
    document.metadata.unknown.insert(
        RECOVERY_FIELD.to_owned(),
        json!({ "publicKey": recovery.to_pem(), "encryptedMetadataKey": BASE64.encode(wrapped) }),
    );
    Ok(())
}

/// Decodes a top folder with the recovery private key instead of a member's: the users' certificates and
/// the signature are checked as for any reader, then the recovery wrap is opened and the key's checksum
/// must be in `keyChecksums`.
pub fn decode_top_folder_with_recovery(
    json: &str,
    signature_base64: &str,
    recovery: &PrivateIdentity,
    trust: &dyn CertificateTrust,
) -> Result<DecodedTopFolder, MetadataError> {
    let users = verify_top_folder_users(json, signature_base64, trust)?;
    let document: MetadataDocument =
        serde_json::from_str(json).map_err(|error| MetadataError::Json(error.to_string()))?;
    let wrapped_for = recovery_key_of(&document)?.ok_or(MetadataError::NoRecoveryWrap)?;
    if &wrapped_for != recovery.public_key() {
        return Err(MetadataError::OtherRecoveryKey(wrapped_for.fingerprint()));
    }
    let wrapped = document
        .metadata
        .unknown
        .get(RECOVERY_FIELD)
        .and_then(|value| value.get("encryptedMetadataKey"))
        .and_then(Value::as_str)
        .and_then(|text| BASE64.decode(text.trim()).ok())
        .ok_or(MetadataError::Malformed {
            field: "cloakfsRecovery",
            reason: "encryptedMetadataKey is not base64".into(),
        })?;
    let metadata_key = recovery.unwrap_metadata_key(&wrapped).map_err(MetadataError::KeyUnwrap)?;
    let folder = decrypt_block(&document.metadata, &metadata_key)?;
    let checksum = metadata_key.sha256_hex();
    if !folder.key_checksums.as_ref().is_some_and(|sums| sums.iter().any(|sum| sum.eq_ignore_ascii_case(&checksum))) {
        return Err(MetadataError::KeyNotInChecksums);
    }
    // Which member signed is checked again here only to report it.
    let value: Value = serde_json::from_str(json).map_err(|error| MetadataError::Json(error.to_string()))?;
    let (signed_by, signed_at) = super::codec::signer_of(&value, signature_base64, &users)?;
    Ok(DecodedTopFolder {
        decoded: DecodedFolder { folder, document, signed_by, signed_at },
        tree: TreeKeys { metadata_key, users },
    })
}
