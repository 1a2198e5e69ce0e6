//! Errors from decoding, verifying and encoding folder metadata.
//!
//! Messages name server-side ids and fields, never clear names or key material.

use crate::crypto::cms_signature::SignatureError;
use crate::crypto::IdentityError;

/// Why folder metadata was refused (or could not be produced).
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The document or a part of it exceeds a safety limit.
    #[error("{what} exceeds the limit of {limit}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// Not valid JSON, or JSON of the wrong shape.
    #[error("malformed metadata JSON: {0}")]
    Json(String),
    /// A field is missing or has a bad value.
    #[error("malformed metadata field {field}: {reason}")]
    Malformed {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A version this build cannot read.
    #[error("unsupported metadata version {0:?} (cloakfs reads 2.0 and 2.1)")]
    UnsupportedVersion(String),
    /// Legacy 1.x metadata.
    #[error("legacy metadata version {0} is not supported; open the folder once with a current Nextcloud desktop client to migrate it to 2.0")]
    LegacyVersion(String),
    /// The reader is not among the folder's users.
    #[error("user {user_id:?} has no access to this folder (not in its users list)")]
    NoAccess {
        /// The reader's user id.
        user_id: String,
    },
    /// The reader's entry carries a certificate for a different key.
    #[error("the folder lists a different certificate for user {user_id:?} than this account's key")]
    NotOurKey {
        /// The reader's user id.
        user_id: String,
    },
    /// A certificate in the users list is not trusted.
    #[error("certificate of user {user_id:?} is not trusted: {reason}")]
    UntrustedCertificate {
        /// The user it claims to belong to.
        user_id: String,
        /// Why it is refused.
        reason: String,
    },
    /// No signature was supplied.
    #[error("metadata has no signature")]
    MissingSignature,
    /// The signature does not verify.
    #[error("metadata signature: {0}")]
    Signature(#[from] SignatureError),
    /// The metadata key could not be unwrapped or wrapped.
    #[error("metadata key: {0}")]
    KeyUnwrap(IdentityError),
    /// The inner metadata failed authentication.
    #[error("metadata ciphertext failed authentication (altered, or encrypted under another key)")]
    Decryption,
    /// The inner metadata is not valid gzip.
    #[error("metadata decompression failed: {0}")]
    Decompression(String),
    /// The key that decrypts the folder is not in its own key-checksum list.
    #[error("the metadata key is not listed in keyChecksums: key substituted")]
    KeyNotInChecksums,
    /// The folder does not wrap its key for any recovery key.
    #[error("this folder's key is not wrapped for a recovery key (none was set up when it was created or re-keyed)")]
    NoRecoveryWrap,
    /// The folder wraps its key for a different recovery key.
    #[error("this folder's key is wrapped for another recovery key (SHA256 {0}), not this one")]
    OtherRecoveryKey(String),
    /// A checksum seen before is missing now.
    #[error("a metadata key checksum seen before has been removed: history rewritten")]
    KeyHistoryShrank,
    /// The counter went backwards.
    #[error("metadata counter went backwards (last seen {last_seen}, received {received}): replayed old metadata")]
    RolledBack {
        /// The highest counter seen before.
        last_seen: u64,
        /// The counter received.
        received: u64,
    },
    /// An entry is unusable.
    #[error("metadata entry {uid:?} is invalid: {reason}")]
    InvalidEntry {
        /// The server-side name of the entry.
        uid: String,
        /// What is wrong.
        reason: &'static str,
    },
}
