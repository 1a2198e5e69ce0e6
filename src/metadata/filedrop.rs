//! File-drop entries (metadata 2.0 `filedrop`): files added to a top folder by someone who cannot read it.
//!
//! Each entry, under the blob's server name, is `{ciphertext, nonce, authenticationTag, users: [{userId,
//! encryptedFiledropKey}]}`: a file entry (`filename`, `mimetype`, `nonce`, `authenticationTag`, `key`),
//! gzipped and sealed with AES-128-GCM under a random 16-byte key that is wrapped (RSA-OAEP) to each member.
//! The section is not signed (by protocol): anyone who may drop, and the server, can add entries. Members'
//! clients move entries into `files` and sign them (src/vault/filedrop.rs).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value};

use super::codec::{decrypt_block_to_json, encrypt_json_block, is_valid_clear_name};
use super::error::MetadataError;
use super::model::{EncryptedBlock, FileEntry};
use super::{Reader, TrustedUser};
use crate::crypto::server_name::is_server_name;
use crate::crypto::MetadataKey;

/// Seals `entry` as a file-drop entry for `recipients`.
pub fn seal_entry(entry: &FileEntry, recipients: &[TrustedUser]) -> Result<Value, MetadataError> {
    let key = MetadataKey::generate();
    let plain =
        zeroize::Zeroizing::new(serde_json::to_vec(entry).map_err(|error| MetadataError::Json(error.to_string()))?);
    let block = encrypt_json_block(&plain, &key)?;
    let mut users = Vec::with_capacity(recipients.len());
    for user in recipients {
        let wrapped = user.certificate.wrap_metadata_key_base64(&key).map_err(MetadataError::KeyUnwrap)?;
        users.push(json!({ "userId": user.user_id, "encryptedFiledropKey": wrapped }));
    }
    Ok(json!({
        "ciphertext": block.ciphertext,
        "nonce": block.nonce,
        "authenticationTag": block.authentication_tag,
        "users": users,
    }))
}

/// Opens the file-drop entry `value` stored under `server_name` with the reader's key. `Ok(None)` when the
/// entry was not wrapped for the reader.
pub fn open_entry(server_name: &str, value: &Value, reader: Reader<'_>) -> Result<Option<FileEntry>, MetadataError> {
    let invalid = |reason: &'static str| MetadataError::InvalidEntry { uid: server_name.to_owned(), reason };
    if !is_server_name(server_name) {
        return Err(invalid("file-drop server name is not 32 hex digits"));
    }
    let users = value.get("users").and_then(Value::as_array).ok_or_else(|| invalid("file drop without users"))?;
    let Some(own) = users.iter().find(|user| user.get("userId").and_then(Value::as_str) == Some(reader.user_id)) else {
        return Ok(None);
    };
    let wrapped = own
        .get("encryptedFiledropKey")
        .and_then(Value::as_str)
        .and_then(|text| BASE64.decode(text.trim()).ok())
        .ok_or_else(|| invalid("file drop key is not base64"))?;
    let key = reader.identity.unwrap_metadata_key(&wrapped).map_err(MetadataError::KeyUnwrap)?;
    // Parse errors are reported without serde's text: a dropped entry is anyone's to write, and its strings
    // do not belong in messages or logs.
    let block: EncryptedBlock = serde_json::from_value(value.clone())
        .map_err(|_| MetadataError::Json(format!("file drop {server_name}: not an encrypted entry")))?;
    let plain = decrypt_block_to_json(&block, &key)?;
    let entry: FileEntry = serde_json::from_slice(&plain).map_err(|_| {
        MetadataError::Json(format!("file drop {server_name}: the decrypted entry is not a file entry"))
    })?;
    if !is_valid_clear_name(&entry.filename) {
        return Err(invalid("dropped file name is empty, '.', '..', too long, or contains '/', '\\' or NUL"));
    }
    Ok(Some(entry))
}
