//! Changing a vault: writing a file in one piece (create-only, or only over the version that was read, so
//! that another writer's change is never overwritten unseen), creating, removing and renaming entries.
//! Each change is ordered so that an interruption leaves at most an unreferenced ciphertext, never an
//! entry that points nowhere.

use bytes::Bytes;

use super::{
    CryptomatorVault, DirRef, EntryKind, Node, VaultEntry, CONTENTS_FILE, DIR_FILE, DIR_ID_BACKUP_FILE, NAME_FILE,
    SYMLINK_FILE,
};
use crate::cryptomator::CryptomatorError;
use crate::remote::{RemoteError, RemoteErrorKind};
use crate::transport::{Store, WriteCondition};

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
        let sealed = Bytes::from(self.content.encrypt_file(clear));
        let version = self
            .store
            .write(&contents, sealed, condition)
            .await
            .map_err(|error| kind_error(error, &contents.join("/"), name))?;
        match version {
            // The store's version is the listing's: no need to look the file up again.
            Some(version) if self.store.versions_from_writes() && !node.shortened => Ok(VaultEntry {
                name: name.to_owned(),
                kind: EntryKind::File,
                size: clear.len() as u64,
                modified: Some(std::time::SystemTime::now()),
                node,
                version,
                dir_id: None,
            }),
            _ => self.lookup(parent, name).await?.ok_or_else(|| CryptomatorError::NotFound(name.to_owned())),
        }
    }

    /// Creates the folder `name` in `parent` with a fresh id: its content folder first, then the node that
    /// names it while the id's encrypted copy `dirid.c9r` is written into the content folder. A failure
    /// takes away what this call made. Six round trips in sequence over SFTP (eleven requests).
    pub async fn make_dir(&self, parent: &DirRef, name: &str) -> Result<VaultEntry, CryptomatorError> {
        let (node, encrypted) = self.node_for(parent, name);
        let id = crate::crypto::server_name::random_uuid();
        let content = self.dir_ref(&id).content_path;
        // Steps that do not depend on each other go together (over a slow link a folder costs the round
        // trips of its longest chain, not of every request).
        let (existing, shard) =
            futures_util::join!(self.store.stat(&node.path), self.make_dir_if_missing(&content[..2]));
        if existing.is_ok() {
            return Err(CryptomatorError::Exists(name.to_owned()));
        }
        shard?;
        self.store.make_dir(&content).await?;
        let backup = Bytes::from(self.content.encrypt_file(id.as_bytes()));
        let mut backup_path = content.clone();
        backup_path.push(DIR_ID_BACKUP_FILE.to_owned());
        // The node (its name, then its id) while the id's backup is written: the node refers to the
        // content folder, which exists already; the backup is for recovery tools only.
        let node_made = async {
            self.store.make_dir(&node.path).await.map_err(|error| (false, kind_error(error, &node.display(), name)))?;
            if node.shortened {
                let body = Bytes::from(encrypted.into_bytes());
                let written = self.store.write(&node.child(NAME_FILE), body, WriteCondition::Always).await;
                written.map_err(|error| (true, error.into()))?;
            }
            let body = Bytes::from(id.clone().into_bytes());
            let written = self.store.write(&node.child(DIR_FILE), body, WriteCondition::CreateOnly).await;
            written.map(|_| ()).map_err(|error| (true, CryptomatorError::from(error)))
        };
        let (backup, made) =
            futures_util::join!(self.store.write(&backup_path, backup, WriteCondition::CreateOnly), node_made);
        let failure = match (made, backup) {
            (Ok(()), Ok(_)) => None,
            (Err((node_is_ours, error)), _) => Some((node_is_ours, error)),
            (Ok(()), Err(error)) => Some((true, error.into())),
        };
        if let Some((node_is_ours, error)) = failure {
            // Undone, so that a failed mkdir leaves no folder (and never takes away another writer's node).
            if node_is_ours {
                let _ = self.store.remove(&node.path).await;
            }
            let _ = self.store.remove(&content).await;
            return Err(error);
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

    /// Removes `entry`: a file or link; a folder if it is empty, or with `recursive` everything in it.
    pub async fn remove(&self, entry: &VaultEntry, recursive: bool) -> Result<(), CryptomatorError> {
        if let (EntryKind::Dir, Some(id)) = (entry.kind, &entry.dir_id) {
            let dir = self.dir_ref(id);
            let (children, problems) = self.list(&dir).await?;
            if !(recursive || children.is_empty() && problems.is_empty()) {
                return Err(CryptomatorError::NotEmpty(entry.name.clone()));
            }
            for child in &children {
                Box::pin(self.remove(child, true)).await?;
            }
            match self.store.remove(&dir.content_path).await {
                Err(error) if error.kind() != RemoteErrorKind::NotFound => return Err(error.into()),
                _ => {}
            }
        }
        self.store.remove(&entry.node.path).await?;
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
        if let Some(existing) = self.lookup(to, to_name).await? {
            match (existing.kind, entry.kind) {
                _ if !overwrite => return Err(CryptomatorError::Exists(to_name.to_owned())),
                (EntryKind::Dir, EntryKind::Dir) => self.remove(&existing, false).await?,
                (EntryKind::Dir, _) => return Err(CryptomatorError::IsADirectory(to_name.to_owned())),
                (_, EntryKind::Dir) => return Err(CryptomatorError::NotADirectory(to_name.to_owned())),
                // Replaced by the move itself when both are plain nodes; else removed first.
                _ if !entry.node.shortened && !target.shortened => {}
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
            (false, false) => self.store.rename(&source.path, &target.path, overwrite).await?,
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
        clear: &[u8],
        existing: Option<&VaultEntry>,
        device: &str,
    ) -> Result<Written, CryptomatorError> {
        match self.write_file(parent, name, clear, existing).await {
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
            let copy = crate::mount::core::conflict_name(name, device, std::time::SystemTime::now(), |candidate| {
                taken.contains(candidate)
            });
            match self.write_file(parent, &copy, clear, None).await {
                Ok(entry) => return Ok(Written::ConflictedCopy(entry)),
                Err(error @ CryptomatorError::Exists(_)) => last = Some(error),
                Err(other) => return Err(other),
            }
        }
        Err(last.expect("at least one attempt"))
    }
}
