//! A Cryptomator vault (format 8) over any [`Store`] as a [`Format`]:
//!
//! - **No batches, no server lock.** The format has no server-side API: every namespace change (mkdir,
//!   rename, unlink, rmdir) is applied to the store at once, and a changed file is encrypted under a fresh
//!   content key and stored replacing only the version it was read at. Another writer's change in between
//!   ends in a conflicted copy beside theirs ([`CryptomatorVault::write_file_keeping_both`]), never in an
//!   overwrite.
//! - **Reads by chunks.** A file opened for ranged reads gets a [`FileReader`]: the header and the first
//!   chunks in one request, then only the chunks asked for, with a window that grows on sequential reads and
//!   the next window fetched ahead. Every chunk is authenticated before a byte of it is returned. Small files
//!   are fetched whole, in one request.
//!
//! Clear names live in the engine's table and in the entries here only, wiped when dropped; logs name
//! ciphertext paths.

use std::sync::Arc;

use tracing::Instrument as _;
use zeroize::{Zeroize, Zeroizing};

use super::{Capabilities, Format, FsError, ListedEntry, Listing, Removed, Renamed, Stored, StoredFile};
use crate::content::{Content, PlainBuffer, Spill};
use crate::cryptomator::vault::{ClearText, DirRef, FileReader, Written};
use crate::cryptomator::{CryptomatorError, CryptomatorVault, EntryKind, VaultEntry};
use crate::storage::{RemoteErrorKind, Store};

/// Files up to this size are fetched whole in one request (larger ones piece by piece).
const WHOLE_FETCH_MAX: u64 = 1 << 20;
/// Bytes asked of a reader at a time when a larger file is fetched whole (for writing).
const LOAD_PIECE: usize = 4 << 20;

/// A stored file: its entry (node, version, clear size). The clear name it carries is wiped when dropped.
#[derive(Clone)]
pub struct CmFile(pub VaultEntry);

impl Drop for CmFile {
    fn drop(&mut self) {
        self.0.name.zeroize();
    }
}

/// A stored folder: its id and where its entries are, and its entry in its parent (`None` for the root).
#[derive(Clone)]
pub struct CmFolder {
    /// The folder's id and content path.
    pub dir: DirRef,
    /// Its entry in its parent.
    pub entry: Option<VaultEntry>,
}

impl Drop for CmFolder {
    fn drop(&mut self) {
        if let Some(entry) = &mut self.entry {
            entry.name.zeroize();
        }
    }
}

/// A Cryptomator vault, mounted at its root.
pub struct CryptomatorFormat<S: Store> {
    vault: CryptomatorVault<S>,
    /// This device's name in conflicted copies.
    device: String,
}

impl<S: Store> CryptomatorFormat<S> {
    /// The opened `vault`; conflicted copies name `device`.
    pub fn new(vault: CryptomatorVault<S>, device: String) -> Self {
        Self { vault, device }
    }

    /// Logs a vault error (ciphertext paths and kinds only) and maps it to an engine error.
    fn fail(&self, error: CryptomatorError) -> FsError {
        let failure = engine_error(&error);
        match &error {
            CryptomatorError::Tampered { .. } | CryptomatorError::Malformed { .. } => {
                tracing::error!(%error, "verification failed; refusing the data")
            }
            CryptomatorError::Remote(_) | CryptomatorError::Changed { .. } | CryptomatorError::Unsupported { .. } => {
                tracing::warn!(%error, ?failure, "store operation failed")
            }
            // These carry clear names: only their kind is logged.
            _ => tracing::debug!(?failure, "refused"),
        }
        failure
    }

    fn folder(path: &[CmFolder]) -> Result<&CmFolder, FsError> {
        path.last().ok_or(FsError::NotFound)
    }

    /// `stored`'s entry in its parent (the root has none and cannot be removed or moved).
    fn entry_of(stored: &Stored<Self>) -> Result<&VaultEntry, FsError>
    where
        S: Clone + 'static,
    {
        match stored {
            Stored::File(file) | Stored::Link(file) => Ok(&file.0),
            Stored::Folder(folder) => folder.entry.as_ref().ok_or(FsError::Busy),
        }
    }
}

/// The engine error for a Cryptomator vault error: failed authentication and malformed structures are
/// [`FsError::Tampered`], the store's kinds their counterparts, the namespace errors theirs.
pub fn engine_error(error: &CryptomatorError) -> FsError {
    match error {
        CryptomatorError::Remote(remote) => FsError::from_remote_kind(remote.kind()),
        CryptomatorError::Tampered { .. } | CryptomatorError::Malformed { .. } => FsError::Tampered,
        CryptomatorError::NotFound(_) => FsError::NotFound,
        CryptomatorError::Exists(_) => FsError::Exists,
        CryptomatorError::NotADirectory(_) => FsError::NotADirectory,
        CryptomatorError::IsADirectory(_) => FsError::IsADirectory,
        CryptomatorError::NotEmpty(_) => FsError::NotEmpty,
        CryptomatorError::IntoItself(_) | CryptomatorError::InvalidName(_) => FsError::InvalidArgument,
        CryptomatorError::Unsupported { .. } => FsError::NotSupported,
        CryptomatorError::Changed { .. }
        | CryptomatorError::WrongPassphrase { .. }
        | CryptomatorError::NoVault(_)
        | CryptomatorError::VaultExists(_) => FsError::Io,
    }
}

impl<S: Store + Clone + 'static> Format for CryptomatorFormat<S> {
    type File = CmFile;
    type Folder = CmFolder;
    type Listed = ();
    type Reader = FileReader;
    type Batch = ();

    fn capabilities(&self) -> Capabilities {
        Capabilities { batches: false, ranged_reads: true, links: true }
    }

    fn root(&self) -> CmFolder {
        CmFolder { dir: self.vault.root(), entry: None }
    }

    fn log_id(&self) -> u64 {
        0
    }

    fn is_valid_name(&self, name: &str) -> bool {
        crate::cryptomator::names::is_valid_name(name)
    }

    fn content_id(file: &CmFile) -> String {
        format!("{}\0{}", file.0.node.display(), file.0.version)
    }

    fn same_folder(left: &CmFolder, right: &CmFolder) -> bool {
        left.dir.id == right.dir.id
    }

    async fn list(&self, path: &[CmFolder]) -> Result<Listing<Self>, FsError> {
        let dir = &Self::folder(path)?.dir;
        let (entries, problems) = self.vault.list(dir).await.map_err(|error| self.fail(error))?;
        if !problems.is_empty() {
            tracing::warn!(
                folder = %dir.content_path.join("/"),
                left_out = problems.len(),
                "entries that do not authenticate are not shown"
            );
        }
        let mut listed = Vec::with_capacity(entries.len());
        for entry in entries {
            let (name, size, modified) = (Zeroizing::new(entry.name.clone()), entry.size, entry.modified);
            let stored = match (entry.kind, &entry.dir_id) {
                (EntryKind::File, _) => Stored::File(CmFile(entry)),
                (EntryKind::Dir, Some(id)) => {
                    Stored::Folder(CmFolder { dir: self.vault.dir_ref(id), entry: Some(entry) })
                }
                (EntryKind::Symlink, _) => Stored::Link(CmFile(entry)),
                (EntryKind::Dir, None) => {
                    tracing::warn!(node = %entry.node.display(), "a folder node without its id is not shown");
                    drop(CmFile(entry));
                    continue;
                }
            };
            listed.push(ListedEntry { name, stored, size, modified });
        }
        Ok(Listing { entries: listed, modified: None, state: () })
    }

    async fn fetch(
        &self,
        _path: &[CmFolder],
        file: &CmFile,
        size: u64,
        spill: &Arc<Spill>,
    ) -> Result<Content, FsError> {
        let entry = &file.0;
        async {
            if size <= WHOLE_FETCH_MAX {
                // One request for the whole contents file, authenticated chunk by chunk.
                let clear = self.vault.read_file(entry).await.map_err(|error| self.fail(error))?;
                return Ok(Content::from_buffer(PlainBuffer::from_slice(&clear)));
            }
            let mut reader = self.vault.open_reader(entry).await.map_err(|error| self.fail(error))?;
            let mut content = Content::empty();
            let mut offset = 0;
            while offset < entry.size {
                let piece =
                    self.vault.read_at(&mut reader, offset, LOAD_PIECE).await.map_err(|error| self.fail(error))?;
                if piece.is_empty() {
                    let error = CryptomatorError::malformed(
                        entry.node.contents_path().join("/"),
                        "shorter than its listed size",
                    );
                    return Err(self.fail(error));
                }
                content.write_at(offset, &piece, spill).map_err(|error| {
                    tracing::warn!(%error, "storing the fetched content failed");
                    FsError::from_io(&error)
                })?;
                offset += piece.len() as u64;
            }
            Ok(content)
        }
        .instrument(tracing::debug_span!("fetch", node = %entry.node.display()))
        .await
    }

    async fn open_reader(&self, file: &CmFile, _size: u64) -> Result<FileReader, FsError> {
        let span = tracing::debug_span!("open_reader", node = %file.0.node.display());
        self.vault.open_reader(&file.0).instrument(span).await.map_err(|error| self.fail(error))
    }

    async fn read_at(&self, reader: &mut FileReader, offset: u64, len: usize) -> Result<Zeroizing<Vec<u8>>, FsError> {
        self.vault.read_at(reader, offset, len).await.map_err(|error| self.fail(error))
    }

    fn reader_bytes(reader: &FileReader) -> u64 {
        reader.held_bytes()
    }

    async fn store_file(
        &self,
        _batch: Option<&()>,
        path: &[CmFolder],
        name: &str,
        content: Arc<Content>,
        base: Option<&CmFile>,
    ) -> Result<StoredFile<Self>, FsError> {
        let dir = &Self::folder(path)?.dir;
        let node = self.vault.node_for(dir, name).0;
        let span = tracing::info_span!("upload", node = %node.display(), bytes = content.len());
        let written = self
            .vault
            .write_file_keeping_both(dir, name, ClearText::Content(content), base.map(|base| &base.0), &self.device)
            .instrument(span)
            .await
            .map_err(|error| self.fail(error))?;
        Ok(match written {
            Written::AsAsked(entry) => StoredFile { file: CmFile(entry), renamed_to: None, leftover: None },
            Written::ConflictedCopy(entry) => {
                tracing::warn!(node = %node.display(), "another writer changed this file: this version was kept as a conflicted copy");
                let copy = entry.name.clone();
                StoredFile { file: CmFile(entry), renamed_to: Some(copy), leftover: None }
            }
        })
    }

    async fn make_folder(&self, _batch: Option<&()>, path: &[CmFolder], name: &str) -> Result<(CmFolder, ()), FsError> {
        let parent = &Self::folder(path)?.dir;
        let entry = self.vault.make_dir(parent, name).await.map_err(|error| self.fail(error))?;
        let id = entry.dir_id.clone().ok_or(FsError::Io)?;
        Ok((CmFolder { dir: self.vault.dir_ref(&id), entry: Some(entry) }, ()))
    }

    async fn make_link(
        &self,
        _batch: Option<&()>,
        path: &[CmFolder],
        name: &str,
        target: &str,
    ) -> Result<CmFile, FsError> {
        let parent = &Self::folder(path)?.dir;
        let node = self.vault.node_for(parent, name).0;
        let span = tracing::info_span!("make_link", node = %node.display());
        let entry =
            self.vault.make_symlink(parent, name, target).instrument(span).await.map_err(|error| self.fail(error))?;
        Ok(CmFile(entry))
    }

    async fn read_link(&self, link: &CmFile) -> Result<Zeroizing<String>, FsError> {
        let span = tracing::debug_span!("read_link", node = %link.0.node.display());
        let clear = self.vault.read_file(&link.0).instrument(span).await.map_err(|error| self.fail(error))?;
        match std::str::from_utf8(&clear) {
            Ok(target) if !target.is_empty() && !target.contains('\0') => Ok(Zeroizing::new(target.to_owned())),
            _ => {
                let path = link.0.node.child(crate::cryptomator::vault::SYMLINK_FILE).join("/");
                Err(self.fail(CryptomatorError::malformed(path, "not a link target (empty, NUL or not UTF-8)")))
            }
        }
    }

    async fn remove(&self, _batch: Option<&()>, _path: &[CmFolder], stored: &Stored<Self>) -> Result<Removed, FsError> {
        match self.vault.remove(Self::entry_of(stored)?, false).await {
            Ok(()) => Ok(Removed::Done),
            Err(error) if error.remote_kind() == Some(RemoteErrorKind::NotFound) => Ok(Removed::Done),
            Err(error) => Err(self.fail(error)),
        }
    }

    async fn rename(
        &self,
        _batch: Option<&()>,
        _from: &[CmFolder],
        stored: &Stored<Self>,
        to: &[CmFolder],
        name: &str,
        _replacing: Option<&Stored<Self>>,
        overwrite: bool,
    ) -> Result<Renamed<Self>, FsError> {
        let target = &Self::folder(to)?.dir;
        let moved = self
            .vault
            .rename(Self::entry_of(stored)?, target, name, overwrite)
            .await
            .map_err(|error| self.fail(error))?;
        let stored = match stored {
            Stored::File(_) => Stored::File(CmFile(moved)),
            Stored::Link(_) => Stored::Link(CmFile(moved)),
            // A folder keeps its id, so its contents do not move.
            Stored::Folder(folder) => Stored::Folder(CmFolder { dir: folder.dir.clone(), entry: Some(moved) }),
        };
        Ok(Renamed { stored, commit_soon: false, leftover: None })
    }
}
