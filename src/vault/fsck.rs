//! `fsck`: compares each folder's signed metadata with what the server lists in it. Blobs and folders the
//! metadata does not name are *orphans* (left by a client that crashed or lost its lock between upload and
//! commit); entries the metadata names that the server does not have are *missing* (data loss, reported,
//! never repairable here). Repair removes orphans under the tree's lock, after checking again under it, and
//! writes the metadata of every folder it removed something from: a Nextcloud server only carries out the
//! deletions of a lock in folders whose metadata was written under it (anything else is restored at unlock).

use std::collections::BTreeMap;

use crate::storage::E2eeApi;

use super::{FolderView, TreeRoot, Vault, VaultError};

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

impl<R: E2eeApi> Vault<R> {
    /// Checks the encrypted folder at `clear_path` and everything below it; with `repair`, removes orphans.
    pub async fn fsck(&self, clear_path: &str, repair: bool) -> Result<FsckReport, VaultError> {
        let (tree, view) = self.open_folder(clear_path).await?;
        let start = view.remote_path.clone();
        let (mut report, _) = self.scan(&tree, &start).await?;
        if !repair || report.orphans.is_empty() {
            return Ok(report);
        }
        // Another client may have committed since the scan: look again under the lock, remove only what is
        // still unreferenced, and abort (restoring everything) on any failure.
        let locked = self.lock_folder(&tree, &tree.path, None).await?;
        let token = locked.token;
        let result = async {
            let (again, holding_orphans) = self.scan(&tree, &start).await?;
            let mut removed = 0;
            for orphan in &again.orphans {
                let mut path = start.clone();
                path.extend(orphan.iter().cloned());
                self.delete_blob(&path, &token).await?;
                removed += 1;
            }
            // Each folder that lost an orphan gets its metadata written again (same content, next counter):
            // that is what makes the server finalize the deletions at unlock.
            let mut written = Vec::new();
            for view in holding_orphans.values() {
                let mut folder = view.folder().clone();
                folder.counter = if view.file_id == locked.view.file_id { locked.counter } else { folder.counter + 1 };
                self.store_folder(&tree, view, &folder, &token).await?;
                written.push((view.file_id, folder.counter));
            }
            Ok::<_, VaultError>((again, removed, written))
        }
        .await;
        match result {
            Ok((again, removed, written)) => {
                self.unlock(locked.view.file_id, &token, false).await?;
                for (file_id, counter) in written {
                    self.record_counter(file_id, counter)?;
                }
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

    /// Walks the tree from `start` comparing metadata and listings. Also returns the folders that hold
    /// orphans (by path below `start`).
    async fn scan(
        &self,
        tree: &TreeRoot,
        start: &[String],
    ) -> Result<(FsckReport, BTreeMap<Vec<String>, FolderView>), VaultError> {
        let mut report = FsckReport::default();
        let mut holding_orphans = BTreeMap::new();
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
                    holding_orphans.entry(relative.clone()).or_insert_with(|| view.clone());
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
        Ok((report, holding_orphans))
    }
}
