//! An end-to-end encrypted folder tree on a server, addressed by clear names: resolving paths through the
//! verified folder metadata, reading and writing files, and changing folders under the server's lock with
//! increasing counters. It uses only the [`Remote`] trait, never HTTP.
//!
//! Every change follows one protocol ([`Vault::transact`]): lock the lowest folder that covers the change
//! with the next counter; re-read the metadata under the lock; apply the change to that fresh copy; write
//! the metadata, then the blobs; unlock. Any failure after the lock unlocks with `abort`, so the server
//! rolls the change back and nothing half-done becomes visible.

mod filedrop;
mod folder;
mod fsck;
mod members;
mod membership;
mod read;
mod recover;
mod rekey;
mod share;
pub use fsck::FsckReport;
mod write;

use std::time::{Duration, SystemTime};

use zeroize::Zeroizing;

use crate::crypto::file_cipher::FileCipherError;
use crate::crypto::gcm::TAG_LEN;
use crate::crypto::{PrivateIdentity, PublicKey, UserCertificate};
use crate::metadata::codec::is_valid_clear_name;
use crate::metadata::{
    decode_sub_folder, decode_top_folder, DecodedFolder, FileEntry, FolderMetadata, MetadataError, Reader, TreeKeys,
};
use crate::session::Session;
use crate::storage::{E2eeApi, Progress, RemoteEntry, RemoteError, RemoteErrorKind};
use crate::trust::{TrustError, TrustStore};

pub use filedrop::was_dropped;
pub use folder::LockedFolder;
pub use members::ShareOutcome;
pub use membership::{MemberInfo, MemberTrust, MembershipReport, TrailStatus};
pub use share::{normalise_fingerprint, CertificateStatus};
pub use write::{mime_type, WriteOptions};

/// Errors of vault operations. Messages name server-side ids, never clear names (the CLI adds the path
/// the user typed).
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// Talking to the server failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// Folder metadata failed verification or could not be built.
    #[error("folder metadata (file id {file_id}): {source}")]
    Metadata {
        /// The folder's file id.
        file_id: u64,
        /// What failed.
        source: MetadataError,
    },
    /// A file's content failed verification.
    #[error("file {server_name}: {source}")]
    Content {
        /// The blob's server-side name.
        server_name: String,
        /// What failed.
        source: FileCipherError,
    },
    /// The pin store failed.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// No folder on the path is end-to-end encrypted.
    #[error("not inside an end-to-end encrypted folder (create one with `cloakfs mkdir --encrypted`)")]
    NotEncrypted,
    /// The encrypted folder has no metadata (not set up, or by another tool).
    #[error("encrypted folder (file id {0}) has no metadata on the server")]
    NoMetadata(u64),
    /// The path does not exist.
    #[error("no such file or folder")]
    NotFound,
    /// A folder was expected.
    #[error("not a folder")]
    NotAFolder,
    /// A file was expected.
    #[error("is a folder")]
    IsAFolder,
    /// The target exists.
    #[error("already exists")]
    Exists,
    /// The folder is not empty.
    #[error("folder is not empty")]
    NotEmpty,
    /// The name cannot be used.
    #[error("invalid name: names must be 1-255 bytes without '/', '\\' or NUL, and not '.' or '..'")]
    InvalidName,
    /// A move between two different encrypted trees (different keys).
    #[error("cannot move between different end-to-end encrypted folders (they have different keys): copy instead")]
    CrossTree,
    /// A folder cannot be moved into itself.
    #[error("cannot move a folder into itself")]
    IntoItself,
    /// The operation is not supported on this path.
    #[error("{0}")]
    Unsupported(&'static str),
    /// Another client kept the folder locked.
    #[error("folder (file id {0}) stayed locked by another client; try again later")]
    Busy(u64),
    /// The membership of a top folder changed in a way no member this device trusts signed.
    #[error(
        "the members of encrypted folder (file id {file_id}) changed without a member this device trusts signing \
         the change (signed by {signer:?}; added: {added:?}; removed: {removed:?}). A server can add users and \
         issue them certificates, so this is refused. If you know the change is right, check it with the folder's \
         owner and run `cloakfs members --accept` on that folder"
    )]
    UnauthorisedMembershipChange {
        /// The folder.
        file_id: u64,
        /// Who signed the new metadata.
        signer: String,
        /// Users added since this device last looked.
        added: Vec<String>,
        /// Users removed since.
        removed: Vec<String>,
    },
    /// The audit trail does not verify or was cut.
    #[error("encrypted folder (file id {file_id}): {source}")]
    Audit {
        /// The folder.
        file_id: u64,
        /// What failed.
        source: crate::metadata::audit::AuditError,
    },
    /// A user to share with has no end-to-end encryption keys.
    #[error("user {0:?} has no end-to-end encryption keys on the server yet: they must run `cloakfs keys init` first")]
    NoKeys(String),
    /// Sharing needs the top folder of a tree.
    #[error("only the top end-to-end encrypted folder can be shared (its sub-folders share its key)")]
    NotTopFolder,
    /// The metadata names a file the server does not have.
    #[error("file {0} is listed in the metadata but missing on the server")]
    MissingBlob(String),
    /// A key would be wrapped for a certificate the user never confirmed on this device and no verified
    /// audit trail vouches for.
    #[error(
        "refusing to give a key to {user:?}: their certificate SHA256 {fingerprint} was never confirmed on this \
         device. A server can hand out a key of its own under any user's name. Compare the fingerprint with \
         {user:?} over another channel (they see it with `cloakfs keys check`), then run \
         `cloakfs confirm {user} --fingerprint {fingerprint}`"
    )]
    Unconfirmed {
        /// The user.
        user: String,
        /// Their certificate's SHA-256 fingerprint as the server presents it.
        fingerprint: String,
    },
    /// The fingerprint given on the command line is not the certificate's.
    #[error(
        "the certificate the server presents for {user:?} has fingerprint SHA256 {presented}, not the {given} \
         you gave: nothing was shared. If {user:?} confirms the presented one, use it; otherwise the server is \
         substituting a key"
    )]
    FingerprintMismatch {
        /// The user.
        user: String,
        /// What the user gave.
        given: String,
        /// What the server presents.
        presented: String,
    },
    /// A top folder's signed member list or recovery key differs from what its verified audit trail ends in.
    #[error(
        "the members of encrypted folder (file id {file_id}) differ from what its audit trail records ({what}); \
         the metadata was signed by {signer:?}. The trail is encrypted and signed by the members, the member list \
         is not: a server rewrote the list, refused"
    )]
    TrailMismatch {
        /// The folder.
        file_id: u64,
        /// Who signed the metadata.
        signer: String,
        /// What differs.
        what: String,
    },
}

fn metadata_error(file_id: u64) -> impl FnOnce(MetadataError) -> VaultError {
    move |source| VaultError::Metadata { file_id, source }
}

/// A verified folder of the tree.
#[derive(Debug, Clone)]
pub struct FolderView {
    /// Server-side path segments below the user's root (top folder name, then server names).
    pub remote_path: Vec<String>,
    /// The folder's file id.
    pub file_id: u64,
    /// The folder's ETag when read.
    pub etag: String,
    /// Whether this is the tree's top folder.
    pub is_top: bool,
    /// The verified metadata.
    pub decoded: DecodedFolder,
}

impl FolderView {
    /// The decrypted metadata.
    pub fn folder(&self) -> &FolderMetadata {
        &self.decoded.folder
    }

    /// The server name of the sub-folder called `name`.
    pub fn sub_folder(&self, name: &str) -> Option<&str> {
        self.folder().folders.iter().find(|(_, clear)| clear.as_str() == name).map(|(uid, _)| uid.as_str())
    }

    /// The server name and entry of the file called `name`.
    pub fn file(&self, name: &str) -> Option<(&str, &FileEntry)> {
        self.folder()
            .files
            .iter()
            .find(|(_, entry)| entry.filename.as_str() == name)
            .map(|(uid, entry)| (uid.as_str(), entry))
    }
}

/// What a clear path names.
#[derive(Debug, Clone)]
pub enum Target {
    /// A folder of the tree.
    Folder(FolderView),
    /// A file: its folder, server name and metadata entry.
    File {
        /// The folder holding it.
        parent: FolderView,
        /// Its server-side name.
        server_name: String,
        /// Its metadata entry (key, nonce, tag, name).
        entry: FileEntry,
    },
    /// Nothing, in an existing folder.
    Missing {
        /// The folder that would hold it.
        parent: FolderView,
        /// The clear name.
        name: Zeroizing<String>,
    },
}

/// One entry of a listing.
#[derive(Debug, Clone)]
pub struct ListEntry {
    /// The clear name (for the user's terminal only).
    pub name: Zeroizing<String>,
    /// A folder?
    pub is_dir: bool,
    /// Plaintext size (files), if the server listed the blob.
    pub size: Option<u64>,
    /// Last modification on the server.
    pub modified: Option<SystemTime>,
    /// A plain folder flagged end-to-end encrypted, i.e. the top of a tree (always false inside a tree).
    pub is_encrypted: bool,
    /// Where a file came from: a member, or a file drop (taken in, or still pending).
    pub origin: Origin,
}

/// Where a file of an encrypted folder came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Origin {
    /// Written by a member (signed by one).
    #[default]
    Member,
    /// A file drop a member took in (`cloakfsDropped` in its entry). Who dropped it is not known: the format
    /// does not authenticate droppers, and the server can drop files too.
    Dropped,
    /// A file drop not taken in: the folder has no drop share in its audit trail, or this member could not
    /// take the lock (read-only). Listed by `ls` only.
    PendingDrop,
}

/// The tree a path belongs to: its top folder and keys.
#[derive(Debug, Clone)]
pub struct TreeRoot {
    /// The top folder's remote path (plain names: outside encryption).
    pub(crate) path: Vec<String>,
    /// The tree's metadata key and users, replaced whenever the top folder is read again (a membership
    /// change rotates the key); shared by every clone (the mount keeps one for its lifetime).
    keys: std::sync::Arc<std::sync::RwLock<TreeKeys>>,
}

impl TreeRoot {
    pub(crate) fn new(path: Vec<String>, keys: TreeKeys) -> Self {
        Self { path, keys: std::sync::Arc::new(std::sync::RwLock::new(keys)) }
    }

    /// The tree's keys as last read from its top folder.
    pub fn keys(&self) -> TreeKeys {
        self.keys.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn update_keys(&self, keys: TreeKeys) {
        *self.keys.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = keys;
    }
}

/// A user's view of the encrypted folders on one server.
pub struct Vault<R: E2eeApi> {
    remote: R,
    server: String,
    user: String,
    server_key: PublicKey,
    identity: PrivateIdentity,
    certificate: UserCertificate,
    trust: std::sync::Mutex<TrustStore>,
    options: WriteOptions,
    progress: Option<Progress>,
    last_membership: std::sync::Mutex<Option<MembershipReport>>,
    /// The offline recovery key new and re-keyed folders wrap their key for (this device's setting).
    recovery_key: Option<PublicKey>,
    /// `identity` is an offline recovery key, not a member's key: folders are opened through their
    /// recovery wrap, read-only.
    recovery_mode: bool,
    /// Top folders whose recovery key was already warned about in this process.
    recovery_warned: std::sync::Mutex<std::collections::BTreeSet<u64>>,
}

/// Splits a user path (`/Vault/a/b`) into its segments; empty for `/`.
pub fn split_clear_path(path: &str) -> Result<Vec<String>, VaultError> {
    let mut segments = Vec::new();
    for segment in path.split('/').filter(|segment| !segment.is_empty()) {
        if !is_valid_clear_name(segment) {
            return Err(VaultError::InvalidName);
        }
        segments.push(segment.to_owned());
    }
    Ok(segments)
}

/// Plaintext size of a blob of `blob_len` bytes.
pub fn plaintext_len(blob_len: u64) -> u64 {
    blob_len.saturating_sub(TAG_LEN as u64)
}

impl<R: E2eeApi> Vault<R> {
    /// A vault over `remote` for an unlocked session (`server` is the pin-store key of the server).
    pub fn new(remote: R, server: String, session_parts: SessionParts, trust: TrustStore) -> Self {
        let recovery_key =
            trust.server(&server).and_then(|pins| pins.recovery_key.as_deref()).and_then(
                |pem| match PublicKey::from_pem(pem) {
                    Ok(key) => Some(key),
                    Err(error) => {
                        tracing::warn!(%error, "the recovery key in the pin file is unusable; ignored");
                        None
                    }
                },
            );
        Self {
            remote,
            server,
            user: session_parts.user,
            server_key: session_parts.server_key,
            identity: session_parts.identity,
            certificate: session_parts.certificate,
            trust: std::sync::Mutex::new(trust),
            options: WriteOptions::default(),
            progress: None,
            last_membership: std::sync::Mutex::new(None),
            recovery_key,
            recovery_mode: false,
            recovery_warned: Default::default(),
        }
    }

    /// A read-only vault that opens folders with an offline recovery key (`identity` of `session_parts` is the
    /// recovery key) instead of a member's key.
    pub fn for_recovery(remote: R, server: String, session_parts: SessionParts, trust: TrustStore) -> Self {
        let mut vault = Self::new(remote, server, session_parts, trust);
        vault.recovery_mode = true;
        vault
    }

    /// Sets the write options (lock retries).
    pub fn with_options(mut self, options: WriteOptions) -> Self {
        self.options = options;
        self
    }

    /// The remote.
    pub fn remote(&self) -> &R {
        &self.remote
    }

    /// The entry at `remote_path` itself (PROPFIND depth 0).
    async fn stat(&self, remote_path: &[String]) -> Result<Option<RemoteEntry>, VaultError> {
        match self.remote.list_detailed(remote_path, 0).await {
            Ok(mut entries) => Ok(Some(entries.remove(0))),
            Err(error) if error.kind() == RemoteErrorKind::NotFound => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// The metadata of a folder entry: from the PROPFIND properties, else the OCS API.
    async fn metadata_of(&self, entry: &RemoteEntry) -> Result<(String, String), VaultError> {
        if let Some(metadata) = &entry.metadata {
            return Ok(metadata.clone());
        }
        self.remote.metadata(entry.file_id).await?.ok_or(VaultError::NoMetadata(entry.file_id))
    }

    /// The pin store (poisoning is ignored: the store stays consistent between calls).
    pub(crate) fn trust(&self) -> std::sync::MutexGuard<'_, TrustStore> {
        self.trust.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn decode_top(
        &self,
        entry: &RemoteEntry,
        json: &str,
        signature: &str,
    ) -> Result<(DecodedFolder, TreeKeys), VaultError> {
        let mut store = self.trust();
        let min_counter = store.counter(&self.server, entry.file_id);
        // Certificates are checked against the server key here and against the pins in check_membership,
        // where a changed one is accepted only when a trusted member vouched for it in the audit trail.
        let trust = crate::metadata::ServerKeyTrust { server_key: &self.server_key };
        let reader = Reader { user_id: &self.user, identity: &self.identity };
        let decoded = if self.recovery_mode {
            crate::metadata::recovery::decode_top_folder_with_recovery(json, signature, &self.identity, &trust)
                .and_then(|decoded| {
                    crate::metadata::codec::check_counter(&decoded.decoded.folder, min_counter)?;
                    Ok(decoded)
                })
        } else {
            decode_top_folder(json, signature, reader, &trust, min_counter)
        }
        .map_err(metadata_error(entry.file_id))?;
        let report = self.check_membership(&mut store, entry.file_id, &decoded)?;
        let digest = crate::metadata::codec::content_digest(json).map_err(metadata_error(entry.file_id))?;
        store.record_digest(&self.server, entry.file_id, decoded.decoded.folder.counter, &digest)?;
        *self.last_membership.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(report);
        Ok((decoded.decoded, decoded.tree))
    }

    fn decode_sub(
        &self,
        entry: &RemoteEntry,
        json: &str,
        signature: &str,
        keys: &TreeKeys,
    ) -> Result<DecodedFolder, VaultError> {
        let mut store = self.trust();
        let min_counter = store.counter(&self.server, entry.file_id);
        let decoded = decode_sub_folder(json, signature, keys, min_counter).map_err(metadata_error(entry.file_id))?;
        let digest = crate::metadata::codec::content_digest(json).map_err(metadata_error(entry.file_id))?;
        store.record_digest(&self.server, entry.file_id, decoded.folder.counter, &digest)?;
        Ok(decoded)
    }

    /// Finds the encrypted top folder on `clear` and decodes it. Returns the tree, the top folder, and the
    /// index of the first path segment below the top folder. `Ok(None)` when no folder on the path is
    /// encrypted (with the deepest plain entry found).
    async fn open_tree(
        &self,
        clear: &[String],
    ) -> Result<Result<(TreeRoot, FolderView, usize), Option<RemoteEntry>>, VaultError> {
        let mut last_plain = None;
        for depth in 0..=clear.len() {
            let prefix = &clear[..depth];
            let Some(entry) = self.stat(prefix).await? else {
                return if depth == 0 { Err(VaultError::NotFound) } else { Ok(Err(None)) };
            };
            if entry.is_dir && entry.is_encrypted && depth > 0 {
                let (json, signature) = self.metadata_of(&entry).await?;
                let (decoded, keys) = self.decode_top(&entry, &json, &signature)?;
                let view = FolderView {
                    remote_path: prefix.to_vec(),
                    file_id: entry.file_id,
                    etag: entry.etag.clone(),
                    is_top: true,
                    decoded,
                };
                return Ok(Ok((TreeRoot::new(prefix.to_vec(), keys), view, depth)));
            }
            if !entry.is_dir {
                return Ok(Err(Some(entry)));
            }
            last_plain = Some(entry);
        }
        Ok(Err(last_plain))
    }

    /// Reads and verifies the folder at `remote_path` of `tree` (fresh from the server).
    async fn load_folder(&self, tree: &TreeRoot, remote_path: &[String]) -> Result<FolderView, VaultError> {
        let entry = self.stat(remote_path).await?.ok_or(VaultError::NotFound)?;
        self.view_of(tree, remote_path, entry).await
    }

    /// Fetches (if the listing did not carry it) and verifies the metadata of folder `entry` at
    /// `remote_path` of `tree`: as the top folder or as a sub-folder.
    async fn view_of(
        &self,
        tree: &TreeRoot,
        remote_path: &[String],
        entry: RemoteEntry,
    ) -> Result<FolderView, VaultError> {
        if !entry.is_dir {
            return Err(VaultError::NotAFolder);
        }
        let (json, signature) = self.metadata_of(&entry).await?;
        let is_top = remote_path == tree.path.as_slice();
        let decoded = if is_top {
            let (decoded, keys) = self.decode_top(&entry, &json, &signature)?;
            tree.update_keys(keys);
            decoded
        } else {
            let keys = tree.keys();
            match self.decode_sub(&entry, &json, &signature, &keys) {
                Err(error @ VaultError::Metadata { .. }) => {
                    // The tree's key may have been rotated (a membership change) since the top folder was read:
                    // read it again, and retry once if that brought other keys or members.
                    let top = self.stat(&tree.path).await?.ok_or(VaultError::NotFound)?;
                    let (top_json, top_signature) = self.metadata_of(&top).await?;
                    let (_, fresh) = self.decode_top(&top, &top_json, &top_signature)?;
                    let same = fresh.metadata_key == keys.metadata_key
                        && fresh.users.iter().map(|user| &user.user_id).eq(keys.users.iter().map(|user| &user.user_id));
                    tree.update_keys(fresh.clone());
                    if same {
                        return Err(error);
                    } else {
                        tracing::debug!(
                            file_id = entry.file_id,
                            "the tree's keys changed; read again with the new ones"
                        );
                        self.decode_sub(&entry, &json, &signature, &fresh)?
                    }
                }
                other => other?,
            }
        };
        Ok(FolderView { remote_path: remote_path.to_vec(), file_id: entry.file_id, etag: entry.etag, is_top, decoded })
    }

    /// Resolves a clear path inside an encrypted tree.
    async fn resolve_in_tree(&self, clear: &[String]) -> Result<(TreeRoot, Target), VaultError> {
        let (tree, top, start) = match self.open_tree(clear).await? {
            Ok(found) => found,
            Err(_) => return Err(VaultError::NotEncrypted),
        };
        let mut folder = top;
        for (index, name) in clear.iter().enumerate().skip(start) {
            let last = index + 1 == clear.len();
            if let Some(uid) = folder.sub_folder(name).map(str::to_owned) {
                let mut path = folder.remote_path.clone();
                path.push(uid.clone());
                folder = match self.load_folder(&tree, &path).await {
                    Err(VaultError::NotFound) => return Err(VaultError::MissingBlob(uid)),
                    other => other?,
                };
                continue;
            }
            if let Some((uid, entry)) = folder.file(name) {
                if !last {
                    return Err(VaultError::NotAFolder);
                }
                let (server_name, entry) = (uid.to_owned(), entry.clone());
                return Ok((tree, Target::File { parent: folder, server_name, entry }));
            }
            if !last {
                return Err(VaultError::NotFound);
            }
            return Ok((tree, Target::Missing { parent: folder, name: Zeroizing::new(name.clone()) }));
        }
        Ok((tree, Target::Folder(folder)))
    }
}

/// What a vault needs from an unlocked session.
pub struct SessionParts {
    /// The user id.
    pub user: String,
    /// The pinned server key.
    pub server_key: PublicKey,
    /// The user's private key.
    pub identity: PrivateIdentity,
    /// The user's pinned certificate.
    pub certificate: UserCertificate,
}

impl Session {
    /// Splits the session into the client and what a vault needs.
    pub fn into_parts(self) -> (crate::storage::NextcloudClient, SessionParts) {
        let user = self.client.config().user.clone();
        (
            self.client,
            SessionParts { user, server_key: self.server_key, identity: self.identity, certificate: self.certificate },
        )
    }
}

/// Delay before lock attempt `attempt` after a 423 (1-based): 250 ms doubling, at most 4 s.
pub(crate) fn lock_backoff(attempt: u32) -> Duration {
    Duration::from_millis((250u64 << attempt.min(4)).min(4000))
}
