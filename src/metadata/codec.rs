//! Encoding and decoding of folder metadata (format 2.0/2.1), with every check a malicious server could
//! make necessary: signature by a trusted user, certificates issued by the pinned server key, the key's
//! checksum, the counter, tag consistency, sane entries and size limits.

use std::io::Read;
use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use flate2::read::GzDecoder;
use flate2::read::GzEncoder;
use serde_json::Value;
use zeroize::Zeroizing;

use super::canonical_json::to_canonical_string;
use super::error::MetadataError;
use super::model::{EncryptedBlock, FolderMetadata, MetadataDocument, MetadataUser};
use crate::crypto::cms_signature::{sign_detached, verify_detached};
use crate::crypto::gcm;
use crate::crypto::server_name::is_server_name;
use crate::crypto::{MetadataKey, Nonce, PrivateIdentity, PublicKey, UserCertificate};

/// Largest outer metadata document accepted, in bytes.
pub const MAX_DOCUMENT_LEN: usize = 64 << 20;
/// Largest decompressed inner metadata accepted, in bytes (guards against gzip bombs).
pub const MAX_INNER_LEN: usize = 64 << 20;
/// Most users one folder may list.
pub const MAX_USERS: usize = 4096;
/// Longest clear name accepted, in bytes (the usual file-system limit).
pub const MAX_NAME_LEN: usize = 255;

/// Decides whether a user's certificate is trusted. The default, [`ServerKeyTrust`], checks that the
/// server key issued it for that user id; a trust-on-first-use store adds pinning on top.
pub trait CertificateTrust {
    /// `Ok` when `certificate` may speak for `user_id`.
    fn check(&self, user_id: &str, certificate: &UserCertificate) -> Result<(), MetadataError>;
}

/// Trusts certificates issued for the named user by this server key.
#[derive(Debug, Clone)]
pub struct ServerKeyTrust<'a> {
    /// The server's public key (from `/server-key`, pinned on first use).
    pub server_key: &'a PublicKey,
}

impl CertificateTrust for ServerKeyTrust<'_> {
    fn check(&self, user_id: &str, certificate: &UserCertificate) -> Result<(), MetadataError> {
        certificate.verify_for_user(self.server_key, user_id).map_err(|error| MetadataError::UntrustedCertificate {
            user_id: user_id.to_owned(),
            reason: error.to_string(),
        })
    }
}

/// The reader's own identity.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    /// The user id the reader logs in as.
    pub user_id: &'a str,
    /// The reader's private key.
    pub identity: &'a PrivateIdentity,
}

/// A user of a top-level folder whose certificate passed the trust check.
#[derive(Debug, Clone)]
pub struct TrustedUser {
    /// The user id.
    pub user_id: String,
    /// The user's certificate.
    pub certificate: UserCertificate,
}

/// What the top folder's metadata establishes for the whole tree: the key and who may sign.
#[derive(Debug, Clone)]
pub struct TreeKeys {
    /// The metadata key of the tree.
    pub metadata_key: MetadataKey,
    /// The trusted users of the top folder, whose signatures are accepted anywhere in the tree.
    pub users: Vec<TrustedUser>,
}

/// A decoded, verified folder metadata document.
#[derive(Debug, Clone)]
pub struct DecodedFolder {
    /// The decrypted inner metadata.
    pub folder: FolderMetadata,
    /// The outer document (kept to carry filedrop and unknown fields into the next rewrite).
    pub document: MetadataDocument,
    /// The user id whose signature verified.
    pub signed_by: String,
    /// The signature's signingTime (chosen by the signer; informational).
    pub signed_at: Option<SystemTime>,
}

/// A decoded top folder: the folder itself and the keys it establishes for its tree.
#[derive(Debug, Clone)]
pub struct DecodedTopFolder {
    /// The verified folder.
    pub decoded: DecodedFolder,
    /// Key and signers for the whole tree.
    pub tree: TreeKeys,
}

/// Metadata ready to upload.
#[derive(Debug, Clone)]
pub struct EncodedMetadata {
    /// The outer document as compact JSON (keys sorted).
    pub json: String,
    /// The detached CMS signature, base64 (goes into `X-NC-E2EE-SIGNATURE`).
    pub signature_base64: String,
}

/// The metadata versions cloakfs can meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataVersion {
    /// Legacy 1.x (no signature, per-file encrypted entries).
    Legacy1,
    /// 2.0: users, signature, counter.
    V2_0,
    /// 2.1: 2.0 plus public-share users.
    V2_1,
}

/// Reads the version of a parsed outer document. 2.x has a top-level `version`; 1.x keeps it inside
/// `metadata` (a number, or sometimes a string).
pub fn detect_version(document: &Value) -> Result<MetadataVersion, MetadataError> {
    let version_text = |value: &Value| match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    };
    if let Some(version) = document.get("version") {
        let text = version_text(version).ok_or_else(|| MetadataError::UnsupportedVersion(version.to_string()))?;
        return match text.as_str() {
            "2" | "2.0" => Ok(MetadataVersion::V2_0),
            "2.1" => Ok(MetadataVersion::V2_1),
            _ => Err(MetadataError::UnsupportedVersion(text)),
        };
    }
    match document.pointer("/metadata/version").and_then(version_text) {
        Some(text) if matches!(text.as_str(), "1" | "1.0" | "1.1" | "1.2") => Ok(MetadataVersion::Legacy1),
        Some(text) => Err(MetadataError::UnsupportedVersion(text)),
        None => Err(MetadataError::Malformed { field: "version", reason: "missing".into() }),
    }
}

fn parse_document(json: &str) -> Result<(Value, MetadataDocument), MetadataError> {
    if json.len() > MAX_DOCUMENT_LEN {
        return Err(MetadataError::TooLarge { what: "metadata document", limit: MAX_DOCUMENT_LEN });
    }
    let value: Value = serde_json::from_str(json).map_err(|error| MetadataError::Json(error.to_string()))?;
    if !value.is_object() {
        return Err(MetadataError::Json("metadata is not a JSON object".into()));
    }
    match detect_version(&value)? {
        MetadataVersion::Legacy1 => {
            let version = value.pointer("/metadata/version").map(|v| v.to_string()).unwrap_or_default();
            return Err(MetadataError::LegacyVersion(version.trim_matches('"').to_owned()));
        }
        MetadataVersion::V2_0 | MetadataVersion::V2_1 => {}
    }
    let document: MetadataDocument =
        serde_json::from_value(value.clone()).map_err(|error| MetadataError::Json(error.to_string()))?;
    Ok((value, document))
}

/// The exact bytes a metadata signature covers: base64 of the canonical JSON of the outer document
/// without `filedrop` (and without per-user `encryptedFiledropKey`, as the desktop client strips it).
pub fn signed_bytes(document: &Value) -> Result<String, MetadataError> {
    let mut signed = document.clone();
    let object = signed.as_object_mut().ok_or_else(|| MetadataError::Json("metadata is not a JSON object".into()))?;
    object.remove("filedrop");
    if let Some(Value::Array(users)) = object.get_mut("users") {
        for user in users.iter_mut() {
            if let Value::Object(user) = user {
                user.remove("encryptedFiledropKey");
            }
        }
    }
    Ok(BASE64.encode(to_canonical_string(&signed)))
}

/// Who of `signers` made `signature_base64` over `document` (verifying it), and when they say they did.
pub fn signer_of(
    document: &Value,
    signature_base64: &str,
    signers: &[TrustedUser],
) -> Result<(String, Option<SystemTime>), MetadataError> {
    verify_signature(document, signature_base64, signers)
}

fn verify_signature(
    document: &Value,
    signature_base64: &str,
    signers: &[TrustedUser],
) -> Result<(String, Option<SystemTime>), MetadataError> {
    if signature_base64.trim().is_empty() {
        return Err(MetadataError::MissingSignature);
    }
    let signature = BASE64
        .decode(signature_base64.trim())
        .map_err(|_| MetadataError::Malformed { field: "signature", reason: "not base64".into() })?;
    let content = signed_bytes(document)?;
    let certificates: Vec<&UserCertificate> = signers.iter().map(|user| &user.certificate).collect();
    let verified = verify_detached(&signature, content.as_bytes(), &certificates)?;
    Ok((signers[verified.signer_index].user_id.clone(), verified.signing_time))
}

/// Verifies the outer part of a top folder's metadata without its key (what a file-drop uploader can check):
/// every user's certificate trusted, and the signature by one of them. Returns the users.
pub fn verify_top_folder_users(
    json: &str,
    signature_base64: &str,
    trust: &dyn CertificateTrust,
) -> Result<Vec<TrustedUser>, MetadataError> {
    let (value, document) = parse_document(json)?;
    let users = document.users.as_deref().unwrap_or_default();
    if users.is_empty() || users.len() > MAX_USERS {
        return Err(MetadataError::Malformed { field: "users", reason: "a top folder must list its users".into() });
    }
    let mut trusted = Vec::with_capacity(users.len());
    for user in users {
        let certificate = UserCertificate::from_pem(&user.certificate).map_err(|error| {
            MetadataError::UntrustedCertificate { user_id: user.user_id.clone(), reason: error.to_string() }
        })?;
        trust.check(&user.user_id, &certificate)?;
        trusted.push(TrustedUser { user_id: user.user_id.clone(), certificate });
    }
    verify_signature(&value, signature_base64, &trusted)?;
    Ok(trusted)
}

/// Decodes and verifies the metadata of a top-level encrypted folder.
///
/// `min_counter` is the highest counter the reader has seen for this folder (rollback protection).
pub fn decode_top_folder(
    json: &str,
    signature_base64: &str,
    reader: Reader<'_>,
    trust: &dyn CertificateTrust,
    min_counter: Option<u64>,
) -> Result<DecodedTopFolder, MetadataError> {
    let (value, document) = parse_document(json)?;
    let users = document.users.as_deref().unwrap_or_default();
    if users.is_empty() {
        return Err(MetadataError::Malformed { field: "users", reason: "a top folder must list its users".into() });
    }
    if users.len() > MAX_USERS {
        return Err(MetadataError::TooLarge { what: "users list", limit: MAX_USERS });
    }
    let mut trusted = Vec::with_capacity(users.len());
    let mut own_entry = None;
    for user in users {
        if trusted.iter().any(|known: &TrustedUser| known.user_id == user.user_id) {
            return Err(MetadataError::Malformed { field: "users", reason: "a user is listed twice".into() });
        }
        let certificate = UserCertificate::from_pem(&user.certificate).map_err(|error| {
            MetadataError::UntrustedCertificate { user_id: user.user_id.clone(), reason: error.to_string() }
        })?;
        trust.check(&user.user_id, &certificate)?;
        if user.user_id == reader.user_id {
            own_entry = Some(user);
            if !reader.identity.matches_certificate(&certificate) {
                return Err(MetadataError::NotOurKey { user_id: user.user_id.clone() });
            }
        }
        trusted.push(TrustedUser { user_id: user.user_id.clone(), certificate });
    }
    let (signed_by, signed_at) = verify_signature(&value, signature_base64, &trusted)?;
    let own_entry = own_entry.ok_or_else(|| MetadataError::NoAccess { user_id: reader.user_id.to_owned() })?;
    let wrapped = BASE64
        .decode(own_entry.encrypted_metadata_key.trim())
        .map_err(|_| MetadataError::Malformed { field: "encryptedMetadataKey", reason: "not base64".into() })?;
    let metadata_key = reader.identity.unwrap_metadata_key(&wrapped).map_err(MetadataError::KeyUnwrap)?;
    let folder = decrypt_block(&document.metadata, &metadata_key)?;
    let checksums = folder
        .key_checksums
        .as_ref()
        .ok_or(MetadataError::Malformed { field: "keyChecksums", reason: "missing in a top folder".into() })?;
    let own_checksum = metadata_key.sha256_hex();
    if !checksums.iter().any(|checksum| checksum.eq_ignore_ascii_case(&own_checksum)) {
        return Err(MetadataError::KeyNotInChecksums);
    }
    check_counter(&folder, min_counter)?;
    validate_entries(&folder)?;
    Ok(DecodedTopFolder {
        decoded: DecodedFolder { folder, document, signed_by, signed_at },
        tree: TreeKeys { metadata_key, users: trusted },
    })
}

/// Decodes and verifies the metadata of a sub-folder, with the keys and signers of its top folder.
pub fn decode_sub_folder(
    json: &str,
    signature_base64: &str,
    tree: &TreeKeys,
    min_counter: Option<u64>,
) -> Result<DecodedFolder, MetadataError> {
    let (value, document) = parse_document(json)?;
    if document.users.as_ref().is_some_and(|users| !users.is_empty()) {
        return Err(MetadataError::Malformed { field: "users", reason: "a sub-folder must not list users".into() });
    }
    let (signed_by, signed_at) = verify_signature(&value, signature_base64, &tree.users)?;
    let folder = decrypt_block(&document.metadata, &tree.metadata_key)?;
    check_counter(&folder, min_counter)?;
    validate_entries(&folder)?;
    Ok(DecodedFolder { folder, document, signed_by, signed_at })
}

/// Hex SHA-256 of what a metadata document's signature covers (everything but `filedrop`): two documents
/// with the same digest are the same version. Readers pin it with the counter (a counter must grow with
/// every change, so another document under a counter already seen is a forgery or a replay).
pub fn content_digest(json: &str) -> Result<String, MetadataError> {
    let (value, _) = parse_document(json)?;
    let signed = signed_bytes(&value)?;
    Ok(hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, signed.as_bytes())))
}

/// Refuses a folder whose counter is below the highest this reader saw.
pub fn check_counter(folder: &FolderMetadata, min_counter: Option<u64>) -> Result<(), MetadataError> {
    match min_counter {
        Some(last_seen) if folder.counter < last_seen => {
            Err(MetadataError::RolledBack { last_seen, received: folder.counter })
        }
        _ => Ok(()),
    }
}

/// Checks that a key-checksum list still holds every checksum seen before (none may be removed).
pub fn check_key_history(previous: &[String], current: &[String]) -> Result<(), MetadataError> {
    if previous.iter().all(|old| current.iter().any(|new| new.eq_ignore_ascii_case(old))) {
        Ok(())
    } else {
        Err(MetadataError::KeyHistoryShrank)
    }
}

/// Whether `name` can be a clear file or folder name on every platform cloakfs serves: not empty, not `.`
/// or `..`, no `/`, `\` or NUL, at most [`MAX_NAME_LEN`] bytes.
pub fn is_valid_clear_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && name.len() <= MAX_NAME_LEN && !name.contains(['/', '\\', '\0'])
}

fn validate_entries(folder: &FolderMetadata) -> Result<(), MetadataError> {
    let invalid = |uid: &str, reason: &'static str| MetadataError::InvalidEntry { uid: uid.to_owned(), reason };
    for (uid, file) in &folder.files {
        if !is_server_name(uid) {
            return Err(invalid(uid, "server-side name is not 32 hex digits"));
        }
        if !is_valid_clear_name(&file.filename) {
            return Err(invalid(uid, "file name is empty, '.', '..', too long, or contains '/', '\\' or NUL"));
        }
    }
    for (uid, name) in &folder.folders {
        if !is_server_name(uid) {
            return Err(invalid(uid, "server-side name is not 32 hex digits"));
        }
        if folder.files.contains_key(uid) {
            return Err(invalid(uid, "listed both as a file and as a folder"));
        }
        if !is_valid_clear_name(name) {
            return Err(invalid(uid, "folder name is empty, '.', '..', too long, or contains '/', '\\' or NUL"));
        }
    }
    Ok(())
}

/// Decrypts, decompresses and parses an [`EncryptedBlock`] with the tree's metadata key.
pub fn decrypt_block(block: &EncryptedBlock, key: &MetadataKey) -> Result<FolderMetadata, MetadataError> {
    let inner = decrypt_block_to_json(block, key)?;
    serde_json::from_slice(&inner).map_err(|error| MetadataError::Json(format!("inner metadata: {error}")))
}

/// Decrypts and decompresses an [`EncryptedBlock`]; returns the inner JSON bytes (wiped on drop).
pub fn decrypt_block_to_json(block: &EncryptedBlock, key: &MetadataKey) -> Result<Zeroizing<Vec<u8>>, MetadataError> {
    let malformed = |field: &'static str, reason: &str| MetadataError::Malformed { field, reason: reason.into() };
    let mut parts = block.ciphertext.split('|');
    let ciphertext_b64 = parts.next().unwrap_or_default();
    let suffix_nonce = parts.next();
    if parts.next().is_some() {
        return Err(malformed("ciphertext", "more than one '|'"));
    }
    let nonce = Nonce::from_base64(&block.nonce).ok_or_else(|| malformed("nonce", "not base64 of 12 or 16 bytes"))?;
    if let Some(suffix) = suffix_nonce {
        let suffix = Nonce::from_base64(suffix).ok_or_else(|| malformed("ciphertext", "nonce suffix is not base64"))?;
        if suffix != nonce {
            return Err(malformed("ciphertext", "nonce suffix differs from the nonce field"));
        }
    }
    if ciphertext_b64.len() > MAX_DOCUMENT_LEN {
        return Err(MetadataError::TooLarge { what: "metadata ciphertext", limit: MAX_DOCUMENT_LEN });
    }
    let sealed = BASE64.decode(ciphertext_b64.trim()).map_err(|_| malformed("ciphertext", "not base64"))?;
    if sealed.len() < gcm::TAG_LEN {
        return Err(malformed("ciphertext", "shorter than the tag"));
    }
    let tag =
        BASE64.decode(block.authentication_tag.trim()).map_err(|_| malformed("authenticationTag", "not base64"))?;
    if tag.as_slice() != &sealed[sealed.len() - gcm::TAG_LEN..] {
        return Err(malformed("authenticationTag", "differs from the ciphertext's tag"));
    }
    let compressed = gcm::open(key.as_bytes(), nonce.as_bytes(), &sealed).map_err(|_| MetadataError::Decryption)?;
    let mut inner = Zeroizing::new(Vec::new());
    GzDecoder::new(compressed.as_slice())
        .take(MAX_INNER_LEN as u64 + 1)
        .read_to_end(&mut inner)
        .map_err(|error| MetadataError::Decompression(error.to_string()))?;
    if inner.len() > MAX_INNER_LEN {
        return Err(MetadataError::TooLarge { what: "decompressed metadata", limit: MAX_INNER_LEN });
    }
    Ok(inner)
}

/// Compresses and encrypts inner metadata under `key` with a fresh nonce.
pub fn encrypt_block(folder: &FolderMetadata, key: &MetadataKey) -> Result<EncryptedBlock, MetadataError> {
    let json = Zeroizing::new(serde_json::to_vec(folder).map_err(|error| MetadataError::Json(error.to_string()))?);
    encrypt_json_block(&json, key)
}

/// Compresses and encrypts JSON bytes under `key` with a fresh nonce (the shape of the inner metadata and of
/// file-drop entries).
pub fn encrypt_json_block(json: &[u8], key: &MetadataKey) -> Result<EncryptedBlock, MetadataError> {
    let mut compressed = Zeroizing::new(Vec::new());
    GzEncoder::new(json, flate2::Compression::default())
        .read_to_end(&mut compressed)
        .map_err(|error| MetadataError::Decompression(error.to_string()))?;
    let nonce = Nonce::generate();
    let sealed = gcm::seal(key.as_bytes(), nonce.as_bytes(), &compressed).map_err(|_| MetadataError::Decryption)?;
    let tag = &sealed[sealed.len() - gcm::TAG_LEN..];
    Ok(EncryptedBlock {
        // The `|nonce` suffix is what the desktop client writes; older readers look for it.
        ciphertext: format!("{}|{}", BASE64.encode(&sealed), nonce.to_base64()),
        nonce: nonce.to_base64(),
        authentication_tag: BASE64.encode(tag),
        unknown: Default::default(),
    })
}

/// Who signs a new metadata version.
#[derive(Debug, Clone, Copy)]
pub struct Signer<'a> {
    /// The signer's private key.
    pub identity: &'a PrivateIdentity,
    /// The signer's certificate (embedded in the signature).
    pub certificate: &'a UserCertificate,
}

/// Encodes a top folder: encrypts `folder` under `key`, wraps `key` to every user, and signs.
///
/// `folder.key_checksums` gets the checksum of `key` added if missing. `previous` carries the filedrop
/// section and unknown fields of the version being replaced.
pub fn encode_top_folder(
    folder: &FolderMetadata,
    key: &MetadataKey,
    users: &[TrustedUser],
    previous: Option<&MetadataDocument>,
    signer: Signer<'_>,
) -> Result<EncodedMetadata, MetadataError> {
    encode_top_folder_with_recovery(folder, key, users, previous, signer, None)
}

/// [`encode_top_folder`], also wrapping `key` for an offline recovery key (see [`super::recovery`]).
pub fn encode_top_folder_with_recovery(
    folder: &FolderMetadata,
    key: &MetadataKey,
    users: &[TrustedUser],
    previous: Option<&MetadataDocument>,
    signer: Signer<'_>,
    recovery: Option<&PublicKey>,
) -> Result<EncodedMetadata, MetadataError> {
    if users.is_empty() {
        return Err(MetadataError::Malformed { field: "users", reason: "a top folder must list its users".into() });
    }
    validate_entries(folder)?;
    let mut folder = folder.clone();
    let checksum = key.sha256_hex();
    let checksums = folder.key_checksums.get_or_insert_with(Vec::new);
    if !checksums.iter().any(|existing| existing.eq_ignore_ascii_case(&checksum)) {
        checksums.push(checksum);
    }
    let mut entries = Vec::with_capacity(users.len());
    for user in users {
        let unknown = previous
            .and_then(|document| document.users.as_ref())
            .and_then(|old| old.iter().find(|old| old.user_id == user.user_id))
            .map(|old| old.unknown.clone())
            .unwrap_or_default();
        entries.push(MetadataUser {
            user_id: user.user_id.clone(),
            certificate: user.certificate.to_pem(),
            encrypted_metadata_key: user.certificate.wrap_metadata_key_base64(key).map_err(MetadataError::KeyUnwrap)?,
            unknown,
        });
    }
    let version = if users.iter().any(|user| user.user_id.starts_with("s:")) { "2.1" } else { "2.0" };
    let mut document = MetadataDocument {
        metadata: encrypt_block(&folder, key)?,
        users: Some(entries),
        filedrop: previous.and_then(|document| document.filedrop.clone()),
        version: Value::String(version.into()),
        unknown: previous.map(|document| document.unknown.clone()).unwrap_or_default(),
    };
    if let Some(recovery) = recovery {
        super::recovery::attach(&mut document, recovery, key)?;
    }
    sign_document(&document, signer)
}

/// Encodes a sub-folder: encrypts `folder` under the tree's key (no users) and signs.
pub fn encode_sub_folder(
    folder: &FolderMetadata,
    key: &MetadataKey,
    previous: Option<&MetadataDocument>,
    signer: Signer<'_>,
) -> Result<EncodedMetadata, MetadataError> {
    validate_entries(folder)?;
    let document = MetadataDocument {
        metadata: encrypt_block(folder, key)?,
        users: None,
        filedrop: previous.and_then(|document| document.filedrop.clone()),
        version: Value::String("2.0".into()),
        unknown: previous.map(|document| document.unknown.clone()).unwrap_or_default(),
    };
    sign_document(&document, signer)
}

/// Signs an outer document as it stands and serialises it canonically.
pub fn sign_document(document: &MetadataDocument, signer: Signer<'_>) -> Result<EncodedMetadata, MetadataError> {
    let value = serde_json::to_value(document).map_err(|error| MetadataError::Json(error.to_string()))?;
    let content = signed_bytes(&value)?;
    let signature = sign_detached(signer.identity, signer.certificate, content.as_bytes(), SystemTime::now())?;
    Ok(EncodedMetadata { json: to_canonical_string(&value), signature_base64: BASE64.encode(signature) })
}
