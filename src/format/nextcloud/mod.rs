//! An end-to-end encrypted Nextcloud folder as a [`Format`]: folders are verified metadata (server names to
//! clear names, file keys), files are whole blobs authenticated by their GCM tag, and every change is made
//! under a lock on the mount root held across many operations (a batch): blobs are uploaded, moved and
//! deleted under it as operations come in, and the metadata of every folder touched is written once when
//! the batch commits (`--commit-delay` after the last change), from the engine's table ([`FolderWrite`]).
//!
//! What Nextcloud makes of a lock (SERVER-BEHAVIOUR.md): uploads, new folders and MOVEs under a lock are
//! staged until unlock, so they can neither be deleted nor moved under the same lock ([`Removed::Later`],
//! and the engine commits before moving them); unlock with abort rolls everything back.

mod upload;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tracing::Instrument as _;
use zeroize::Zeroizing;

use super::{
    Capabilities, CommitError, FolderWrite, Format, FsError, ListedEntry, Listing, OpenedBatch, Removed, Renamed,
    Stored, StoredFile,
};
use crate::content::{Content, ContentSink, Spill};
use crate::crypto::file_cipher::FileCipherError;
use crate::crypto::server_name::random_server_name;
use crate::metadata::codec::is_valid_clear_name;
use crate::metadata::{FileEntry, FolderMetadata};
use crate::storage::{E2eeApi, LockToken, RemoteErrorKind};
use crate::vault::{mime_type, plaintext_len, FolderView, TreeRoot, Vault, VaultError};
use upload::EncryptingUpload;

/// A stored file: its blob's server name and its metadata entry (key, nonce, tag).
#[derive(Clone)]
pub struct NcFile {
    /// The blob's server name.
    pub uid: String,
    /// Its metadata entry.
    pub entry: FileEntry,
}

/// A stored sub-folder: its server name.
#[derive(Debug, Clone)]
pub struct NcFolder {
    /// The folder's server name (empty for the mount root).
    pub uid: String,
}

/// A folder as listed: its verified metadata, and the entries it holds that the mount does not show (a
/// second entry under a name already shown), which a rewrite keeps.
#[derive(Clone)]
pub struct NcListed {
    view: FolderView,
    hidden: Vec<String>,
}

/// No ranged reads in this format: a blob has one tag over all of it.
pub enum NoReader {}

/// A batch: the mount root's lock, and what was made under it.
pub struct NcBatch {
    token: LockToken,
    counter: u64,
    /// Server names uploaded, created or moved under this lock (staged on Nextcloud until unlock).
    made: Mutex<HashSet<String>>,
    /// Folders created under this lock, with their first counter (recorded once committed).
    created: Mutex<Vec<(u64, u64)>>,
}

impl NcBatch {
    fn made(&self, uid: &str) -> bool {
        crate::vfs::lock(&self.made).contains(uid)
    }

    fn record_made(&self, uid: &str) {
        crate::vfs::lock(&self.made).insert(uid.to_owned());
    }
}

/// A Nextcloud end-to-end encrypted folder, mounted.
pub struct NextcloudFormat<S: E2eeApi> {
    vault: Vault<S>,
    tree: TreeRoot,
    root_path: Vec<String>,
    root_file_id: u64,
}

impl<S: E2eeApi> NextcloudFormat<S> {
    /// The folder `root` (already verified) of `tree` in `vault`.
    pub fn new(vault: Vault<S>, tree: TreeRoot, root: &FolderView) -> Self {
        Self { vault, tree, root_path: root.remote_path.clone(), root_file_id: root.file_id }
    }

    /// The server path of the folder at `path`.
    fn remote_path(&self, path: &[NcFolder]) -> Vec<String> {
        let mut remote = self.root_path.clone();
        remote.extend(path.iter().skip(1).map(|folder| folder.uid.clone()));
        remote
    }

    /// The server path of `uid` in the folder at `path`.
    fn remote_path_of(&self, path: &[NcFolder], uid: &str) -> Vec<String> {
        let mut remote = self.remote_path(path);
        remote.push(uid.to_owned());
        remote
    }

    /// Logs a vault error (with server ids only) and maps it to an engine error.
    fn fail(&self, error: VaultError) -> FsError {
        let failure = engine_error(&error);
        match &error {
            VaultError::Content { .. } | VaultError::Metadata { .. } | VaultError::MissingBlob(_) => {
                tracing::error!(%error, "verification failed; refusing the data")
            }
            _ => tracing::warn!(%error, ?failure, "remote operation failed"),
        }
        failure
    }

    fn token(batch: Option<&NcBatch>) -> Result<&NcBatch, FsError> {
        batch.ok_or(FsError::Io)
    }

    /// Deletes `uid` of the folder at `path` under `batch`'s lock, unless it was made under that lock.
    async fn delete(&self, batch: &NcBatch, path: &[NcFolder], uid: &str) -> Result<Removed, FsError> {
        if batch.made(uid) {
            tracing::debug!(server_name = %uid, "made under the open lock; deleting it in the next batch");
            return Ok(Removed::Later);
        }
        match self.vault.delete_blob(&self.remote_path_of(path, uid), &batch.token).await {
            Ok(()) => Ok(Removed::Done),
            // Committed before this lock (not staged): 404 means another client removed it.
            Err(VaultError::Remote(error)) if error.kind() == RemoteErrorKind::NotFound => {
                tracing::warn!(server_name = %uid, "already gone on the server");
                Ok(Removed::Done)
            }
            Err(error) => Err(self.fail(error)),
        }
    }
}

/// The server name of a stored entry.
fn uid_of<S: E2eeApi + 'static>(stored: &Stored<NextcloudFormat<S>>) -> &str {
    match stored {
        Stored::File(file) | Stored::Link(file) => &file.uid,
        Stored::Folder(folder) => &folder.uid,
    }
}

/// The engine error for a vault error: tampering and untrusted keys are [`FsError::Tampered`], the remote's
/// kinds their counterparts, the namespace errors theirs.
pub fn engine_error(error: &VaultError) -> FsError {
    match error {
        VaultError::Remote(remote) => FsError::from_remote_kind(remote.kind()),
        // A local failure while storing decrypted content (e.g. a full disk under the spill file).
        VaultError::Content { source: FileCipherError::Io(io), .. } => FsError::from_io(io),
        VaultError::Metadata { .. } | VaultError::Content { .. } | VaultError::MissingBlob(_) => FsError::Tampered,
        VaultError::Trust(_) | VaultError::NoMetadata(_) | VaultError::NotEncrypted => FsError::Tampered,
        // A membership change nobody trusted signed, or a broken audit trail: refuse like tampering.
        VaultError::UnauthorisedMembershipChange { .. }
        | VaultError::Audit { .. }
        | VaultError::TrailMismatch { .. } => FsError::Tampered,
        // A key would go to a certificate nobody confirmed: the change is not made.
        VaultError::Unconfirmed { .. } | VaultError::FingerprintMismatch { .. } => FsError::AccessDenied,
        VaultError::NoKeys(_) | VaultError::NotTopFolder => FsError::InvalidArgument,
        VaultError::NotFound => FsError::NotFound,
        VaultError::NotAFolder => FsError::NotADirectory,
        VaultError::IsAFolder => FsError::IsADirectory,
        VaultError::Exists => FsError::Exists,
        VaultError::NotEmpty => FsError::NotEmpty,
        VaultError::InvalidName => FsError::InvalidArgument,
        VaultError::CrossTree => FsError::CrossDevice,
        VaultError::IntoItself => FsError::InvalidArgument,
        VaultError::Unsupported(_) => FsError::NotSupported,
        VaultError::Busy(_) => FsError::Busy,
    }
}

/// The metadata of a folder as the engine's table shows it: `children` named as they are now, the entries
/// the mount did not show kept, every other field as last read.
fn metadata_of<S: E2eeApi + 'static>(
    listed: &NcListed,
    counter: u64,
    children: Vec<(Zeroizing<String>, Stored<NextcloudFormat<S>>)>,
) -> FolderMetadata {
    let old = listed.view.folder();
    let mut folder = FolderMetadata {
        counter,
        files: BTreeMap::new(),
        folders: BTreeMap::new(),
        key_checksums: old.key_checksums.clone(),
        deleted: old.deleted,
        unknown: old.unknown.clone(),
    };
    for uid in &listed.hidden {
        if let Some(entry) = old.files.get(uid) {
            folder.files.insert(uid.clone(), entry.clone());
        } else if let Some(name) = old.folders.get(uid) {
            folder.folders.insert(uid.clone(), name.clone());
        }
    }
    for (name, stored) in children {
        match stored {
            Stored::File(file) => {
                let mut entry = file.entry;
                entry.filename = name;
                folder.files.insert(file.uid, entry);
            }
            Stored::Folder(sub) => {
                folder.folders.insert(sub.uid, name);
            }
            // The format has no links: the engine never makes one here (make_link refuses).
            Stored::Link(_) => tracing::error!("a link in a Nextcloud folder's metadata was left out"),
        }
    }
    folder
}

impl<S: E2eeApi + 'static> Format for NextcloudFormat<S> {
    type File = NcFile;
    type Folder = NcFolder;
    type Listed = NcListed;
    type Reader = NoReader;
    type Batch = NcBatch;

    fn capabilities(&self) -> Capabilities {
        Capabilities { batches: true, ranged_reads: false, links: false }
    }

    fn root(&self) -> NcFolder {
        NcFolder { uid: String::new() }
    }

    fn log_id(&self) -> u64 {
        self.root_file_id
    }

    fn is_valid_name(&self, name: &str) -> bool {
        is_valid_clear_name(name)
    }

    fn origin(file: &NcFile) -> Option<&'static str> {
        crate::vault::was_dropped(&file.entry).then_some("file-drop")
    }

    fn content_id(file: &NcFile) -> String {
        // A writer may store new content under the same server name (cloakfs's own file commands do): the
        // tag, new with every encryption, tells the versions apart.
        format!("{}:{}", file.uid, hex::encode(file.entry.authentication_tag))
    }

    fn same_folder(left: &NcFolder, right: &NcFolder) -> bool {
        left.uid == right.uid
    }

    async fn list(&self, path: &[NcFolder]) -> Result<Listing<Self>, FsError> {
        let remote = self.remote_path(path);
        let (view, listed) = match self.vault.list_folder(&self.tree, &remote).await {
            Err(VaultError::NotFound) => return Err(FsError::NotFound),
            other => other.map_err(|error| self.fail(error))?,
        };
        let blobs: BTreeMap<String, (u64, Option<SystemTime>)> = listed
            .into_iter()
            .filter(|entry| !entry.is_dir)
            .map(|entry| (entry.name, (plaintext_len(entry.size), entry.modified)))
            .collect();
        // One entry per name: a file over a folder of the same name, the last file over earlier ones (as
        // the mount always showed them); the others stay in the metadata, unseen.
        let mut shown: BTreeMap<&str, ListedEntry<Self>> = BTreeMap::new();
        let mut hidden = Vec::new();
        let folder = view.folder();
        let folders = folder.folders.iter().map(|(uid, name)| {
            let entry = ListedEntry {
                name: name.clone(),
                stored: Stored::Folder(NcFolder { uid: uid.clone() }),
                size: 0,
                modified: None,
            };
            (uid, name.as_str(), entry)
        });
        let files = folder.files.iter().map(|(uid, entry)| {
            let (size, modified) = blobs.get(uid).copied().unwrap_or((0, None));
            let listed = ListedEntry {
                name: entry.filename.clone(),
                stored: Stored::File(NcFile { uid: uid.clone(), entry: entry.clone() }),
                size,
                modified,
            };
            (uid, entry.filename.as_str(), listed)
        });
        for (uid, name, entry) in folders.chain(files) {
            if let Some(replaced) = shown.insert(name, entry) {
                hidden.push(uid_of(&replaced.stored).to_owned());
                tracing::warn!(server_name = %uid, "two entries of a folder have one name; showing one");
            }
        }
        let modified = blobs.values().filter_map(|(_, time)| *time).max();
        Ok(Listing { entries: shown.into_values().collect(), modified, state: NcListed { view, hidden } })
    }

    async fn check(&self, path: &[NcFolder], listed: &NcListed) -> Result<Option<NcListed>, FsError> {
        let fresh = match self.vault.folder_view(&self.tree, &self.remote_path(path)).await {
            Err(VaultError::NotFound) => return Err(FsError::NotFound),
            other => other.map_err(|error| self.fail(error))?,
        };
        // Any change to the folder by any client rewrites its metadata with a higher counter.
        if fresh.folder().counter != listed.view.folder().counter {
            return Ok(None);
        }
        let mut view = listed.view.clone();
        view.etag = fresh.etag;
        Ok(Some(NcListed { view, hidden: listed.hidden.clone() }))
    }

    async fn fetch(&self, path: &[NcFolder], file: &NcFile, size: u64, spill: &Arc<Spill>) -> Result<Content, FsError> {
        async {
            let mut sink = ContentSink::new(size, spill.clone()).map_err(|error| {
                tracing::warn!(%error, directory = %spill.directory().display(), "cannot create a spill file");
                FsError::from_io(&error)
            })?;
            tracing::debug!("fetching blob");
            self.vault
                .read_blob(&self.remote_path(path), &file.uid, &file.entry, &mut sink)
                .await
                .map_err(|error| self.fail(error))?;
            sink.into_verified().ok_or(FsError::Io)
        }
        .instrument(tracing::info_span!("download", server_name = %file.uid))
        .await
    }

    async fn open_reader(&self, _file: &NcFile, _size: u64) -> Result<NoReader, FsError> {
        Err(FsError::NotSupported)
    }

    async fn read_at(&self, reader: &mut NoReader, _offset: u64, _len: usize) -> Result<Zeroizing<Vec<u8>>, FsError> {
        match *reader {}
    }

    fn reader_bytes(reader: &NoReader) -> u64 {
        match *reader {}
    }

    async fn open_batch(&self, root: Option<&NcListed>) -> Result<OpenedBatch<Self>, FsError> {
        let batch = |token, counter| NcBatch { token, counter, made: Default::default(), created: Default::default() };
        // With the root's counter known, one request: a lock at counter + 1 succeeds only if nobody wrote the
        // root's metadata since we read it (see `Vault::lock_at_counter`), so our copy is current. Otherwise
        // (412, or nothing read yet) the lock is taken the long way, reading the root under it.
        if let Some(root) = root {
            let next = root.view.folder().counter + 1;
            let quick = self.vault.lock_at_counter(self.root_file_id, next).await.map_err(|error| self.fail(error))?;
            if let Some(token) = quick {
                tracing::debug!(file_id = self.root_file_id, counter = next, "batch opened");
                return Ok(OpenedBatch { batch: batch(token, next), root: None, root_stale: false });
            }
        }
        let locked =
            self.vault.lock_folder(&self.tree, &self.root_path, None).await.map_err(|error| self.fail(error))?;
        tracing::debug!(file_id = self.root_file_id, counter = locked.counter, "batch opened");
        let current = root.filter(|root| root.view.folder().counter == locked.view.folder().counter);
        let replacement = current.map(|root| NcListed { view: locked.view, hidden: root.hidden.clone() });
        let root_stale = replacement.is_none();
        Ok(OpenedBatch { batch: batch(locked.token, locked.counter), root: replacement, root_stale })
    }

    async fn commit_batch(
        &self,
        batch: &NcBatch,
        folders: Vec<FolderWrite<'_, Self>>,
    ) -> Result<Vec<NcListed>, CommitError> {
        let written: Vec<(FolderView, FolderMetadata, Vec<String>)> = folders
            .into_iter()
            .map(|write| {
                let counter = if write.is_root { batch.counter } else { write.listed.view.folder().counter + 1 };
                let folder = metadata_of(write.listed, counter, write.children);
                (write.listed.view.clone(), folder, write.listed.hidden.clone())
            })
            .collect();
        let result = async {
            tracing::debug!("committing");
            let stored = futures_util::future::join_all(
                written.iter().map(|(view, folder, _)| self.vault.store_folder(&self.tree, view, folder, &batch.token)),
            )
            .await;
            stored.into_iter().collect::<Result<Vec<()>, VaultError>>()?;
            self.vault.unlock(self.root_file_id, &batch.token, false).await
        }
        .instrument(tracing::info_span!(
            "commit",
            file_id = self.root_file_id,
            counter = batch.counter,
            folders = written.len()
        ))
        .await;
        if let Err(error) = result {
            // The server dropped our lock (Nextcloud: 403 wrong token, 404 not locked, 412 folder not locked).
            let lock_lost = matches!(&error, VaultError::Remote(remote) if remote.kind() == RemoteErrorKind::LockLost);
            return Err(CommitError { error: self.fail(error), lock_lost });
        }
        let created = std::mem::take(&mut *crate::vfs::lock(&batch.created));
        let counters = written.iter().map(|(view, folder, _)| (view.file_id, folder.counter)).chain(created);
        for (file_id, counter) in counters {
            if let Err(error) = self.vault.record_counter(file_id, counter) {
                tracing::warn!(%error, "could not record the folder counter");
            }
        }
        tracing::debug!(file_id = self.root_file_id, counter = batch.counter, "batch committed");
        Ok(written
            .into_iter()
            .map(|(mut view, folder, hidden)| {
                view.decoded.folder = folder;
                NcListed { view, hidden }
            })
            .collect())
    }

    async fn abort_batch(&self, batch: &NcBatch) {
        if let Err(error) = self.vault.unlock(self.root_file_id, &batch.token, true).await {
            tracing::warn!(%error, "could not abort the open batch; the server rolls it back when the lock expires");
        }
    }

    fn made_in(&self, batch: &NcBatch, stored: &Stored<Self>) -> bool {
        batch.made(uid_of(stored))
    }

    async fn store_file(
        &self,
        batch: Option<&NcBatch>,
        path: &[NcFolder],
        name: &str,
        content: Arc<Content>,
        base: Option<&NcFile>,
    ) -> Result<StoredFile<Self>, FsError> {
        let batch = Self::token(batch)?;
        // A blob uploaded under this lock is overwritten in place (it cannot be deleted under it).
        let uid = match base {
            Some(base) if batch.made(&base.uid) => base.uid.clone(),
            _ => random_server_name(),
        };
        // Encrypted while it is sent: no whole-ciphertext copy in RAM, encryption overlapping the transfer.
        let encrypting = EncryptingUpload::new(content);
        let blob_len = encrypting.blob_len();
        let blob_path = self.remote_path_of(path, &uid);
        let sealed = async {
            tracing::debug!("uploading blob");
            let body = || encrypting.body();
            if let Err(error) = self.vault.put_blob_streamed(&blob_path, blob_len, &body, &batch.token).await {
                // An encryption failure (e.g. an unreadable spill file) ends the request too: it is logged.
                encrypting.abandon();
                return Err(self.fail(error));
            }
            batch.record_made(&uid);
            encrypting.sealed().await.map_err(|error| {
                tracing::error!(%error, "encryption failed");
                FsError::Io
            })
        }
        .instrument(tracing::info_span!("upload", server_name = %uid, len = blob_len))
        .await?;
        let entry = FileEntry {
            filename: Zeroizing::new(name.to_owned()),
            mimetype: mime_type(name).to_owned(),
            key: sealed.key.clone(),
            nonce: sealed.nonce.clone(),
            authentication_tag: sealed.tag,
            unknown: Default::default(),
        };
        // The version replaced goes (or, made under this lock, goes in the next batch).
        let leftover = match base.filter(|base| base.uid != uid) {
            None => None,
            Some(base) => match self.delete(batch, path, &base.uid).await {
                Ok(Removed::Done) => None,
                Ok(Removed::Later) => Some(Stored::File(base.clone())),
                Err(error) => {
                    tracing::warn!(%error, server_name = %base.uid, "could not delete the replaced blob; retrying later");
                    Some(Stored::File(base.clone()))
                }
            },
        };
        Ok(StoredFile { file: NcFile { uid, entry }, renamed_to: None, leftover })
    }

    async fn make_folder(
        &self,
        batch: Option<&NcBatch>,
        path: &[NcFolder],
        _name: &str,
    ) -> Result<(NcFolder, NcListed), FsError> {
        let batch = Self::token(batch)?;
        let uid = random_server_name();
        let view = self
            .vault
            .create_sub_folder(&self.tree, &self.remote_path_of(path, &uid), &batch.token)
            .instrument(tracing::info_span!("mkdir", server_name = %uid))
            .await
            .map_err(|error| self.fail(error))?;
        batch.record_made(&uid);
        crate::vfs::lock(&batch.created).push((view.file_id, view.folder().counter));
        Ok((NcFolder { uid }, NcListed { view, hidden: Vec::new() }))
    }

    async fn remove(
        &self,
        batch: Option<&NcBatch>,
        path: &[NcFolder],
        stored: &Stored<Self>,
    ) -> Result<Removed, FsError> {
        self.delete(Self::token(batch)?, path, uid_of(stored)).await
    }

    async fn rename(
        &self,
        batch: Option<&NcBatch>,
        from: &[NcFolder],
        stored: &Stored<Self>,
        to: &[NcFolder],
        _name: &str,
        replacing: Option<&Stored<Self>>,
        _overwrite: bool,
    ) -> Result<Renamed<Self>, FsError> {
        let batch = Self::token(batch)?;
        let leftover = match replacing {
            Some(target) => match self.delete(batch, to, uid_of(target)).await? {
                Removed::Done => None,
                Removed::Later => Some(target.clone()),
            },
            None => None,
        };
        let uid = uid_of(stored);
        let (from, to) = (self.remote_path_of(from, uid), self.remote_path_of(to, uid));
        // Within a folder only the metadata changes; between folders the blob or folder moves too, staged
        // at its destination until unlock (like an upload).
        let moved = from != to;
        if moved {
            self.vault.move_blob(&from, &to, &batch.token).await.map_err(|error| self.fail(error))?;
            batch.record_made(uid);
        }
        Ok(Renamed { stored: stored.clone(), commit_soon: moved, leftover })
    }
}
