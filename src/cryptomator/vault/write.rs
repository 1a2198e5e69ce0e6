//! Changing a vault: writing a file in one piece (create-only, or only over the version that was read, so
//! that another writer's change is never overwritten unseen), creating, removing and renaming entries.
//! Each change is ordered so that an interruption leaves at most an unreferenced ciphertext, never an
//! entry that points nowhere.

use bytes::Bytes;

use super::{
    CryptomatorVault, DirRef, EntryKind, Node, VaultEntry, CONTENTS_FILE, DIR_FILE, DIR_ID_BACKUP_FILE, NAME_FILE,
    SYMLINK_FILE,
};
use std::sync::Arc;

use crate::content::Content;
use crate::cryptomator::content::{Sealing, CHUNK_SIZE};
use crate::cryptomator::CryptomatorError;
use crate::storage::{BodyStream, RemoteError, RemoteErrorKind};
use crate::storage::{Store, WriteCondition};

/// The clear text of a file to write.
#[derive(Debug, Clone)]
pub enum ClearText<'a> {
    /// Bytes at hand, encrypted in one piece.
    Bytes(&'a [u8]),
    /// A mount's content, read and encrypted in pieces while it is sent.
    Content(Arc<Content>),
}

impl ClearText<'_> {
    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Self::Bytes(bytes) => bytes.len() as u64,
            Self::Content(content) => content.len(),
        }
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Clear bytes encrypted per piece of a streamed upload (eight chunks).
const SEALED_PIECE_CLEAR: u64 = 8 * CHUNK_SIZE as u64;

/// The request body of a streamed upload: the header, then `content` read and sealed eight chunks at a time
/// (spilled content decrypted into a buffer wiped after each piece). Produced again for a retry, it gives
/// the same bytes ([`Sealing`]). A piece that cannot be read fails the upload with that error.
fn sealed_body(sealing: Arc<Sealing>, content: Arc<Content>) -> impl Fn() -> BodyStream + Send + Sync {
    use futures_util::StreamExt as _;
    move || {
        let (sealing, content) = (sealing.clone(), content.clone());
        let header = Bytes::copy_from_slice(sealing.header());
        let clear_len = content.len();
        let pieces = clear_len.div_ceil(SEALED_PIECE_CLEAR);
        let chunks = futures_util::stream::iter(0..pieces).map(move |piece| {
            let start = piece * SEALED_PIECE_CLEAR;
            let size = SEALED_PIECE_CLEAR.min(clear_len - start) as usize;
            let mut sealed = Vec::with_capacity(size + 8 * 64);
            content.with_range(start, size, |clear| {
                if clear.len() != size {
                    return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the file shrank while sent"));
                }
                sealing.seal_chunks(start / CHUNK_SIZE as u64, clear, &mut sealed);
                Ok(())
            })??;
            Ok(Bytes::from(sealed))
        });
        Box::pin(futures_util::stream::once(async move { Ok(header) }).chain(chunks))
    }
}

/// A removal in progress ([`CryptomatorVault::remove`], boxed: a folder's removal holds its entries').
pub type Removal<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), CryptomatorError>> + Send + 'a>>;

/// Entries of a folder removed at once by a recursive removal.
const REMOVE_PARALLEL: usize = 16;

/// A removal that found nothing to remove is done.
fn gone_is_done(removed: Result<(), RemoteError>) -> Result<(), RemoteError> {
    match removed {
        Err(error) if error.kind() == RemoteErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn kind_error(error: RemoteError, shown: &str, clear_name: &str) -> CryptomatorError {
    match error.kind() {
        RemoteErrorKind::Exists => CryptomatorError::Exists(clear_name.to_owned()),
        RemoteErrorKind::Changed => CryptomatorError::Changed { path: shown.to_owned() },
        _ => error.into(),
    }
}

impl<S: Store> CryptomatorVault<S> {
    /// Writes `clear` as the file `name` in `parent`, encrypted under a fresh content key: created if
    /// `existing` is `None` (Exists if another writer created it meanwhile), else replacing exactly the
    /// version `existing` was read at (Changed if another writer replaced it meanwhile).
    pub async fn write_file(
        &self,
        parent: &DirRef,
        name: &str,
        clear: &[u8],
        existing: Option<&VaultEntry>,
    ) -> Result<VaultEntry, CryptomatorError> {
        self.write_clear(parent, name, &ClearText::Bytes(clear), existing).await
    }

    /// [`Self::write_file`] of either kind of clear text: bytes at hand are encrypted in one piece; a
    /// mount's content is read, encrypted and sent piece by piece ([`Store::write_streamed`]), so a large
    /// file is never held whole, in clear or encrypted, and its upload starts with its first chunk.
    async fn write_clear(
        &self,
        parent: &DirRef,
        name: &str,
        clear: &ClearText<'_>,
        existing: Option<&VaultEntry>,
    ) -> Result<VaultEntry, CryptomatorError> {
        let (node, encrypted) = self.node_for(parent, name);
        let condition = match existing {
            None => WriteCondition::CreateOnly,
            Some(entry) if entry.kind != EntryKind::File => {
                return Err(CryptomatorError::IsADirectory(name.to_owned()))
            }
            Some(entry) if entry.version.is_empty() => WriteCondition::Always,
            Some(entry) => WriteCondition::IfVersion(entry.version.clone()),
        };
        if node.shortened {
            self.make_dir_if_missing(&node.path).await?;
            self.store
                .write(&node.child(NAME_FILE), Bytes::from(encrypted.into_bytes()), WriteCondition::Always)
                .await?;
        }
        let contents = node.contents_path();
        let written = match clear {
            ClearText::Bytes(clear) => {
                let sealed = Bytes::from(self.content.encrypt_file(clear));
                self.store.write(&contents, sealed, condition).await
            }
            ClearText::Content(content) => {
                let sealing = std::sync::Arc::new(self.content.sealing(content.len()));
                let length = sealing.sealed_len();
                let body = sealed_body(sealing, content.clone());
                self.store.write_streamed(&contents, length, &body, condition).await
            }
        };
        let version = written.map_err(|error| kind_error(error, &contents.join("/"), name))?;
        match version {
            // The store's version is the listing's: no need to look the file up again.
            Some(version) if self.store.versions_from_writes() && !node.shortened => Ok(VaultEntry {
                name: name.to_owned(),
                kind: EntryKind::File,
                size: clear.len(),
                modified: Some(std::time::SystemTime::now()),
                node,
                version,
                dir_id: None,
            }),
            _ => self.lookup(parent, name).await?.ok_or_else(|| CryptomatorError::NotFound(name.to_owned())),
        }
    }

    /// Creates the folder `name` in `parent` with a fresh id: its content folder and its node, then the
    /// node's `dir.c9r` (which makes it a folder for readers) while the id's encrypted copy `dirid.c9r` is
    /// written into the content folder. A failure takes away what this call made. Three round trips over
    /// SFTP: the folders, then each small file's open and its write, flush and close.
    pub async fn make_dir(&self, parent: &DirRef, name: &str) -> Result<VaultEntry, CryptomatorError> {
        let (node, encrypted) = self.node_for(parent, name);
        let id = crate::crypto::server_name::random_uuid();
        let content = self.dir_ref(&id).content_path;
        // The three folders are sent together, in this order, and a server handles them in order; one
        // that does not may refuse the content folder before its shard exists: then it is made again.
        // A node that exists already is the answer Exists (and the content folder is taken away again).
        let (shard, content_made, node_made) = futures_util::join!(
            self.store.make_dir_if_missing(&content[..2]),
            self.store.make_dir(&content),
            self.store.make_dir(&node.path)
        );
        let content_made = match content_made {
            Err(_) if shard.is_ok() => self.store.make_dir(&content).await,
            other => other,
        };
        if node_made.is_err() || content_made.is_err() {
            if node_made.is_ok() {
                let _ = self.store.remove(&node.path).await;
            }
            if content_made.is_ok() {
                let _ = self.store.remove(&content).await;
            }
            return Err(match (node_made, shard, content_made) {
                (Err(error), _, _) => kind_error(error, &node.display(), name),
                (_, Err(error), _) | (_, _, Err(error)) => error.into(),
                (Ok(()), Ok(()), Ok(())) => unreachable!("one of them failed"),
            });
        }
        let mut backup_path = content.clone();
        backup_path.push(DIR_ID_BACKUP_FILE.to_owned());
        let backup = Bytes::from(self.content.encrypt_file(id.as_bytes()));
        let node_files = async {
            if node.shortened {
                self.store.create_small(&node.child(NAME_FILE), Bytes::from(encrypted.into_bytes())).await?;
            }
            self.store.create_small(&node.child(DIR_FILE), Bytes::from(id.clone().into_bytes())).await
        };
        let (node_files, backup) = futures_util::join!(node_files, self.store.create_small(&backup_path, backup));
        if let Err(error) = node_files.and(backup) {
            // Undone, so that a failed mkdir leaves no folder (the node is this call's own).
            let _ = self.store.remove(&node.path).await;
            let _ = self.store.remove(&content).await;
            return Err(error.into());
        }
        // Made here with a fresh id: nothing to look up (a folder's store version is not used).
        Ok(VaultEntry {
            name: name.to_owned(),
            kind: EntryKind::Dir,
            size: 0,
            modified: Some(std::time::SystemTime::now()),
            node,
            version: String::new(),
            dir_id: Some(id),
        })
    }

    /// Creates the symbolic link `name` in `parent` pointing to `target` (kept as given, relative or
    /// absolute, never resolved): its node folder (`NAME.c9r/`, or `HASH.c9s/` with `name.c9s`), then
    /// `symlink.c9r`, the target encrypted as a file's contents, as Cryptomator writes it. A node that exists
    /// already is [`CryptomatorError::Exists`]; a failure takes away the node this call made.
    pub async fn make_symlink(
        &self,
        parent: &DirRef,
        name: &str,
        target: &str,
    ) -> Result<VaultEntry, CryptomatorError> {
        let (node, encrypted) = self.node_for(parent, name);
        self.store.make_dir(&node.path).await.map_err(|error| kind_error(error, &node.display(), name))?;
        let files = async {
            if node.shortened {
                self.store.create_small(&node.child(NAME_FILE), Bytes::from(encrypted.into_bytes())).await?;
            }
            let sealed = Bytes::from(self.content.encrypt_file(target.as_bytes()));
            self.store.create_small(&node.child(SYMLINK_FILE), sealed).await
        };
        if let Err(error) = files.await {
            let _ = self.store.remove(&node.path).await;
            return Err(error.into());
        }
        Ok(VaultEntry {
            name: name.to_owned(),
            kind: EntryKind::Symlink,
            size: target.len() as u64,
            modified: Some(std::time::SystemTime::now()),
            node,
            version: String::new(),
            dir_id: None,
        })
    }

    /// Removes `entry`: a file or link; a folder if it is empty, or with `recursive` everything in it
    /// (its entries removed 16 at a time).
    pub fn remove<'a>(&'a self, entry: &'a VaultEntry, recursive: bool) -> Removal<'a> {
        Box::pin(async move {
            match (entry.kind, &entry.dir_id) {
                (EntryKind::Dir, Some(id)) => self.remove_dir(entry, id, recursive).await,
                (EntryKind::File, _) if !entry.node.shortened => Ok(self.store.remove_file(&entry.node.path).await?),
                _ => Ok(self.store.remove(&entry.node.path).await?),
            }
        })
    }

    /// Removes a folder: its entries (with `recursive`), then `dir.c9r`, after which no reader finds it,
    /// then its node and its content folder together. An interruption leaves at most an unreferenced
    /// content folder, never a folder entry that points nowhere. Over SFTP an empty folder costs four
    /// round trips: the listing, the two small files, the two folders.
    async fn remove_dir(&self, entry: &VaultEntry, id: &str, recursive: bool) -> Result<(), CryptomatorError> {
        use futures_util::{StreamExt as _, TryStreamExt as _};
        let dir = self.dir_ref(id);
        let (children, problems) = self.list(&dir).await?;
        if !(recursive || children.is_empty() && problems.is_empty()) {
            return Err(CryptomatorError::NotEmpty(entry.name.clone()));
        }
        let removals: Vec<Removal<'_>> = children.iter().map(|child| self.remove(child, true)).collect();
        futures_util::stream::iter(removals).buffer_unordered(REMOVE_PARALLEL).try_collect::<()>().await?;
        let mut backup = dir.content_path.clone();
        backup.push(DIR_ID_BACKUP_FILE.to_owned());
        let id_file = entry.node.child(DIR_FILE);
        let (id_file, backup_file) =
            futures_util::join!(self.store.remove_file(&id_file), self.store.remove_file(&backup));
        gone_is_done(id_file)?;
        if let Err(error) = gone_is_done(backup_file) {
            // Removed with its folder below; only a recovery tool ever reads it.
            tracing::debug!(%error, "removing a folder id's backup failed");
        }
        let node = async {
            if entry.node.shortened {
                gone_is_done(self.store.remove_file(&entry.node.child(NAME_FILE)).await)?;
            }
            gone_is_done(self.store.remove_emptied_dir(&entry.node.path).await)
        };
        let (node, content) = futures_util::join!(node, self.store.remove_emptied_dir(&dir.content_path));
        node?;
        gone_is_done(content)?;
        Ok(())
    }

    /// Renames `entry` to `to_name` in the folder `to`; an existing target file is replaced only with
    /// `overwrite` (an existing folder only if it is empty and `entry` is a folder too). A folder keeps its
    /// id, so its contents do not move. A folder moved into itself is refused here; below itself (which
    /// would cut it off from the root) the caller must refuse, knowing the paths (`vault mv` does).
    pub async fn rename(
        &self,
        entry: &VaultEntry,
        to: &DirRef,
        to_name: &str,
        overwrite: bool,
    ) -> Result<VaultEntry, CryptomatorError> {
        if entry.dir_id.as_deref() == Some(to.id.as_str()) {
            return Err(CryptomatorError::IntoItself(entry.name.clone()));
        }
        let (target, encrypted) = self.node_for(to, to_name);
        if target.path == entry.node.path {
            return Ok(entry.clone());
        }
        // A plain file replacing whatever plain file is there is one atomic rename on the server, which
        // refuses to put it over a folder: nothing to look at first.
        let plain = !entry.node.shortened && !target.shortened;
        let replaces_blindly = overwrite && plain && entry.kind == EntryKind::File;
        let existing = if replaces_blindly { None } else { self.lookup(to, to_name).await? };
        if let Some(existing) = existing {
            match (existing.kind, entry.kind) {
                _ if !overwrite => return Err(CryptomatorError::Exists(to_name.to_owned())),
                (EntryKind::Dir, EntryKind::Dir) => self.remove(&existing, false).await?,
                (EntryKind::Dir, _) => return Err(CryptomatorError::IsADirectory(to_name.to_owned())),
                (_, EntryKind::Dir) => return Err(CryptomatorError::NotADirectory(to_name.to_owned())),
                // Replaced by the move itself when both are plain files; else removed first (a link is a
                // folder node: no store moves a node over it, or a link's node over a file, in one step).
                (EntryKind::File, EntryKind::File) if plain => {}
                _ => self.remove(&existing, false).await?,
            }
        }
        let inner = match entry.kind {
            EntryKind::File => CONTENTS_FILE,
            EntryKind::Dir => DIR_FILE,
            EntryKind::Symlink => SYMLINK_FILE,
        };
        let source: &Node = &entry.node;
        match (source.shortened, target.shortened) {
            (false, false) => match self.store.rename(&source.path, &target.path, overwrite).await {
                Ok(()) => {}
                // Replaced blindly, and the store refused: a link may be there (a folder node). Remove it,
                // then move.
                Err(error) if replaces_blindly => match self.lookup(to, to_name).await? {
                    Some(existing) if existing.kind == EntryKind::Symlink => {
                        self.remove(&existing, false).await?;
                        self.store.rename(&source.path, &target.path, false).await?;
                    }
                    _ => return Err(error.into()),
                },
                Err(error) => return Err(error.into()),
            },
            (true, true) => {
                self.store.rename(&source.path, &target.path, false).await?;
                self.store
                    .write(&target.child(NAME_FILE), Bytes::from(encrypted.into_bytes()), WriteCondition::Always)
                    .await?;
            }
            (false, true) => {
                self.store.make_dir(&target.path).await?;
                self.store
                    .write(&target.child(NAME_FILE), Bytes::from(encrypted.into_bytes()), WriteCondition::Always)
                    .await?;
                if entry.kind == EntryKind::File {
                    self.store.rename(&source.path, &target.child(CONTENTS_FILE), false).await?;
                } else {
                    self.store.rename(&source.child(inner), &target.child(inner), false).await?;
                    self.store.remove(&source.path).await?;
                }
            }
            (true, false) => {
                if entry.kind == EntryKind::File {
                    self.store.rename(&source.child(CONTENTS_FILE), &target.path, false).await?;
                    self.store.remove(&source.path).await?;
                } else {
                    self.store.rename(&source.path, &target.path, false).await?;
                    self.store.remove(&target.child(NAME_FILE)).await?;
                }
            }
        }
        if plain && self.store.renames_keep_versions() {
            // Same bytes, same version, a new place: nothing to look up again.
            return Ok(VaultEntry { name: to_name.to_owned(), node: target, ..entry.clone() });
        }
        self.lookup(to, to_name).await?.ok_or_else(|| CryptomatorError::NotFound(to_name.to_owned()))
    }
}

/// What [`CryptomatorVault::write_file_keeping_both`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// The file, as asked.
    AsAsked(VaultEntry),
    /// Another writer created or replaced the file since it was read: this version was kept beside it as a
    /// conflicted copy (the same rule as the mount's).
    ConflictedCopy(VaultEntry),
}

/// Conflicted-copy names tried before giving up (each after a fresh listing).
const CONFLICT_ATTEMPTS: usize = 3;

impl<S: Store> CryptomatorVault<S> {
    /// Like [`Self::write_file`], but when another writer won the race the content is kept as
    /// "NAME (conflicted copy DEVICE DATE).EXT" beside the other writer's version: nothing is lost and
    /// nothing is overwritten unseen.
    pub async fn write_file_keeping_both(
        &self,
        parent: &DirRef,
        name: &str,
        clear: ClearText<'_>,
        existing: Option<&VaultEntry>,
        device: &str,
    ) -> Result<Written, CryptomatorError> {
        match self.write_clear(parent, name, &clear, existing).await {
            Ok(entry) => return Ok(Written::AsAsked(entry)),
            Err(CryptomatorError::Exists(_) | CryptomatorError::Changed { .. }) => {}
            Err(other) => return Err(other),
        }
        let node = self.node_for(parent, name).0;
        tracing::info!(node = %node.display(), "changed by another writer: keeping a conflicted copy");
        let mut last = None;
        for _ in 0..CONFLICT_ATTEMPTS {
            let (entries, _) = self.list(parent).await?;
            let taken: std::collections::HashSet<&str> = entries.iter().map(|entry| entry.name.as_str()).collect();
            let copy = crate::conflict::conflict_name(name, device, std::time::SystemTime::now(), |candidate| {
                taken.contains(candidate)
            });
            match self.write_clear(parent, &copy, &clear, None).await {
                Ok(entry) => return Ok(Written::ConflictedCopy(entry)),
                Err(error @ CryptomatorError::Exists(_)) => last = Some(error),
                Err(other) => return Err(other),
            }
        }
        Err(last.expect("at least one attempt"))
    }
}
