//! `fsck`: compares each folder's signed metadata with what the server lists in it. Blobs and folders the
//! metadata does not name are *orphans* (left by a client that crashed or lost its lock between upload and
//! commit); entries the metadata names that the server does not have are *missing* (data loss, reported,
//! never repairable here). Repair removes orphans under the tree's lock, after checking again under it.

use crate::remote::Remote;

use super::{TreeRoot, Vault, VaultError};

/// What a check found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FsckReport {
    /// Folders checked.
    pub folders: usize,
    /// Files the metadata names.
    pub files: usize,
    /// Server paths (server-side names only, from the checked folder) nothing refers to.
    pub orphans: Vec<Vec<String>>,
    /// Server paths the metadata refers to that the server does not have.
    pub missing: Vec<Vec<String>>,
    /// Orphans removed by `--repair`.
    pub removed: usize,
}

impl<R: Remote> Vault<R> {
    /// Checks the encrypted folder at `clear_path` and everything below it; with `repair`, removes orphans.
    pub async fn fsck(&self, clear_path: &str, repair: bool) -> Result<FsckReport, VaultError> {
        let (tree, view) = self.open_folder(clear_path).await?;
        let start = view.remote_path.clone();
        let mut report = self.scan(&tree, &start).await?;
        if !repair || report.orphans.is_empty() {
            return Ok(report);
        }
        // Another client may have committed since the scan: look again under the lock, remove only what is
        // still unreferenced, and abort (restoring everything) on any failure.
        let locked = self.lock_folder(&tree, &tree.path, None).await?;
        let token = locked.token;
        let result = async {
            let again = self.scan(&tree, &start).await?;
            let mut removed = 0;
            for orphan in &again.orphans {
                let mut path = start.clone();
                path.extend(orphan.iter().cloned());
                self.delete_blob(&path, &token).await?;
                removed += 1;
            }
            Ok::<_, VaultError>((again, removed))
        }
        .await;
        match result {
            Ok((again, removed)) => {
                self.unlock(locked.view.file_id, &token, false).await?;
                report = again;
                report.removed = removed;
                Ok(report)
            }
            Err(error) => {
                let _ = self.unlock(locked.view.file_id, &token, true).await;
                Err(error)
            }
        }
    }

    /// Walks the tree from `start` comparing metadata and listings.
    async fn scan(&self, tree: &TreeRoot, start: &[String]) -> Result<FsckReport, VaultError> {
        let mut report = FsckReport::default();
        let mut pending = vec![Vec::<String>::new()];
        while let Some(relative) = pending.pop() {
            let mut remote_path = start.to_vec();
            remote_path.extend(relative.iter().cloned());
            let (view, entries) = self.list_folder(tree, &remote_path).await?;
            report.folders += 1;
            let folder = view.folder();
            report.files += folder.files.len();
            let below = |name: &str| {
                let mut path = relative.clone();
                path.push(name.to_owned());
                path
            };
            for entry in &entries {
                let named = if entry.is_dir {
                    folder.folders.contains_key(&entry.name)
                } else {
                    folder.files.contains_key(&entry.name)
                };
                if !named {
                    report.orphans.push(below(&entry.name));
                } else if entry.is_dir {
                    pending.push(below(&entry.name));
                }
            }
            let listed =
                |name: &str, is_dir: bool| entries.iter().any(|entry| entry.name == name && entry.is_dir == is_dir);
            report.missing.extend(folder.files.keys().filter(|name| !listed(name, false)).map(|name| below(name)));
            report.missing.extend(folder.folders.keys().filter(|name| !listed(name, true)).map(|name| below(name)));
        }
        report.orphans.sort();
        report.missing.sort();
        Ok(report)
    }
}
