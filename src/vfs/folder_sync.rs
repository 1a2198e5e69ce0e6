//! New folders carried to storage by a commit cycle ([`super::commit`]), level by level,
//! [`FOLDERS_AT_ONCE`] at a time.

use std::time::Instant;

use futures_util::StreamExt as _;
use zeroize::Zeroizing;

use super::nodes::Name;
use super::{Format, FsError, Vfs};

/// Folders created in storage at once by a cycle.
const FOLDERS_AT_ONCE: usize = 16;

impl<F: Format> Vfs<F> {
    /// Creates new folders in storage, [`FOLDERS_AT_ONCE`] at a time; with a batching format their parents'
    /// metadata names them at this cycle's commit.
    pub(super) async fn create_folders(&self, folders: &[u64]) -> Result<(), FsError> {
        let results: Vec<Result<(), FsError>> = futures_util::stream::iter(folders.iter().copied())
            .map(|ino| self.create_folder(ino))
            .buffer_unordered(FOLDERS_AT_ONCE)
            .collect()
            .await;
        results.into_iter().collect()
    }

    async fn create_folder(&self, ino: u64) -> Result<(), FsError> {
        let parent = self.state().node(ino)?.parent;
        let (_gate, batch) = self.enter_batch(&[parent]).await?;
        let mut relisted = false;
        loop {
            // A rename or removal of the folder waits until it is created (or not) in storage.
            let _creating = self.uploads.lock(&ino).await;
            let path = {
                let mut state = self.state();
                // Removed or moved meanwhile: the next cycle sees it where it is now.
                if state.node(ino)?.parent != parent || state.dir(ino)?.stored.is_some() {
                    return Ok(());
                }
                // Another client made the name meanwhile: ours becomes a conflicted copy.
                if let Some(theirs) = state.take_theirs(ino) {
                    let name = state.node(ino)?.name.clone();
                    let dir = state.dir(parent)?;
                    let conflict = crate::conflict::conflict_name(
                        &name.0,
                        &self.options.device,
                        std::time::SystemTime::now(),
                        |c| dir.children.contains_key(&Name(c.to_owned())),
                    );
                    tracing::warn!("another client created a folder of that name; keeping ours as a conflicted copy");
                    state.relink(ino, parent, &conflict)?;
                    state.show_theirs(parent, &name.0, theirs);
                }
                state.path(parent)?
            };
            let name = Zeroizing::new(self.state().node(ino)?.name.0.clone());
            let _in_flight = self.in_flight(&[(parent, &name)]);
            let made = self.format.make_folder(batch.as_deref(), &path, &name).await;
            let (stored, listed) = match made {
                // Without a batch's lock, another device may have made the name since the parent was listed:
                // listed again, ours becomes a conflicted copy beside theirs.
                Err(FsError::Exists) if !self.batches() && !relisted => {
                    relisted = true;
                    drop(_in_flight);
                    drop(_creating);
                    self.forget_listing(parent);
                    self.ensure_current(parent).await?;
                    continue;
                }
                other => other?,
            };
            let mut state = self.state();
            Self::note_change(&mut state);
            let batches = self.batches();
            if batches {
                state.in_batch(parent);
            }
            let dir = state.dir_mut(ino)?;
            dir.stored = Some(stored);
            // With a batching format the folder is staged until the batch commits; any other has it now.
            dir.created = batches;
            dir.staged = batches;
            dir.listed = Some(super::nodes::Listed { state: listed, modified: None, at: Instant::now() });
            return Ok(());
        }
    }
}
