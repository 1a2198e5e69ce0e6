//! The folder-metadata model: the outer document the server stores and the decrypted inner part.
//!
//! Field names follow Nextcloud's JSON exactly (see docs/FORMAT.md). Every struct keeps fields it does not
//! know in `unknown`, so a rewrite by cloakfs does not drop what a newer client added.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::crypto::{FileKey, Nonce};

/// The outer metadata document, as stored on the server and signed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MetadataDocument {
    /// The encrypted inner metadata.
    pub metadata: EncryptedBlock,
    /// Users with access and their wrapped metadata keys. Only the top encrypted folder has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<MetadataUser>>,
    /// File-drop entries added by other parties; preserved verbatim, not signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filedrop: Option<Map<String, Value>>,
    /// `"2.0"`, or `"2.1"` once a public-share user is present.
    pub version: Value,
    /// Fields cloakfs does not know, kept across rewrites.
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

/// The encrypted inner metadata.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EncryptedBlock {
    /// `base64(ciphertext || tag)`, optionally followed by `|base64(nonce)`.
    pub ciphertext: String,
    /// `base64(nonce)`, 12 or 16 bytes.
    pub nonce: String,
    /// `base64(tag)`: the last 16 bytes of the ciphertext, repeated.
    #[serde(rename = "authenticationTag")]
    pub authentication_tag: String,
    /// Fields cloakfs does not know.
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

/// One user with access to a top-level encrypted folder.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MetadataUser {
    /// The Nextcloud user id (`s:<token>` for a public share).
    #[serde(rename = "userId")]
    pub user_id: String,
    /// The user's certificate, PEM.
    pub certificate: String,
    /// `base64(RSA-OAEP-SHA256(raw 16-byte metadata key))` for this user's key.
    #[serde(rename = "encryptedMetadataKey")]
    pub encrypted_metadata_key: String,
    /// Fields cloakfs does not know.
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

/// The decrypted inner metadata of one folder.
#[derive(Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct FolderMetadata {
    /// Anti-rollback counter; each change increases it by one.
    pub counter: u64,
    /// Files by server-side name.
    #[serde(default)]
    pub files: BTreeMap<String, FileEntry>,
    /// Sub-folders: server-side name to clear name.
    #[serde(default)]
    pub folders: BTreeMap<String, Zeroizing<String>>,
    /// Hex SHA-256 of every metadata key the tree has used (top folder only); never shrinks.
    #[serde(rename = "keyChecksums", default, skip_serializing_if = "Option::is_none")]
    pub key_checksums: Option<Vec<String>>,
    /// Set when the top folder was deleted (web client); optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<bool>,
    /// Fields cloakfs does not know.
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

impl fmt::Debug for FolderMetadata {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names are plaintext: never printed.
        formatter
            .debug_struct("FolderMetadata")
            .field("counter", &self.counter)
            .field("files", &self.files.len())
            .field("folders", &self.folders.len())
            .field("key_checksums", &self.key_checksums.as_ref().map(Vec::len))
            .finish_non_exhaustive()
    }
}

/// One file of a folder.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    /// The clear file name.
    pub filename: Zeroizing<String>,
    /// The MIME type.
    pub mimetype: String,
    /// The file's AES-128-GCM key.
    #[serde(with = "base64_file_key")]
    pub key: FileKey,
    /// The file's nonce (the desktop client's older field name `initializationVector` is read too).
    #[serde(with = "base64_nonce", alias = "initializationVector")]
    pub nonce: Nonce,
    /// The GCM tag, also appended to the blob.
    #[serde(rename = "authenticationTag", with = "base64_tag")]
    pub authentication_tag: [u8; 16],
    /// Fields cloakfs does not know (e.g. the web client's experimental `chunked`, `filesize`).
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

impl fmt::Debug for FileEntry {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("FileEntry").field("mimetype", &self.mimetype).finish_non_exhaustive()
    }
}

mod base64_file_key {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};
    use zeroize::Zeroizing;

    use crate::crypto::FileKey;

    pub fn serialize<S: Serializer>(key: &FileKey, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&key.to_base64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<FileKey, D::Error> {
        let text = Zeroizing::new(String::deserialize(deserializer)?);
        FileKey::from_base64(&text).ok_or_else(|| D::Error::custom("file key is not base64 of 16 bytes"))
    }
}

mod base64_nonce {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    use crate::crypto::Nonce;

    pub fn serialize<S: Serializer>(nonce: &Nonce, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&nonce.to_base64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Nonce, D::Error> {
        let text = String::deserialize(deserializer)?;
        Nonce::from_base64(&text).ok_or_else(|| D::Error::custom("nonce is not base64 of 12 or 16 bytes"))
    }
}

mod base64_tag {
    use base64::engine::general_purpose::STANDARD as BASE64;
    use base64::Engine as _;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(tag: &[u8; 16], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&BASE64.encode(tag))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[u8; 16], D::Error> {
        let text = String::deserialize(deserializer)?;
        BASE64
            .decode(text.trim())
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| D::Error::custom("authenticationTag is not base64 of 16 bytes"))
    }
}
