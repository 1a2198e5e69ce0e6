//! Folders: reading a folder's listing into the inode table ([`super::merge`]), revalidating it when it is
//! older than the dir cache time (cheaply where the format can), the offline pause that keeps showing
//! verified listings while storage is unreachable, and lookups and listings over the table.

use std::time::Instant;

use zeroize::Zeroizing;

use super::merge::{merge, Since};
use super::{Attributes, DirEntry, Format, FsError, Kind, Vfs, OFFLINE_PAUSE, ROOT_INO};

/// What a folder's listing needs before it can be used.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Nothing: current enough.
    Nothing,
    /// A first listing.
    Listing,
    /// A check (or a new listing) after the dir cache time.
    Check,
}

impl<F: Format> Vfs<F> {
    fn need(&self, ino: u64) -> Result<Need, FsError> {
        let state = self.state();
        let dir = state.dir(ino)?;
        let under_lock = |listed: &super::nodes::Listed<F>| {
            state.batch.as_ref().is_some_and(|batch| dir.in_batch || listed.at >= batch.opened)
        };
        Ok(match &dir.listed {
            None => Need::Listing,
            // Inside a batch our lock keeps a listing read (or changed) under it current.
            Some(listed) if under_lock(listed) => Need::Nothing,
            Some(listed) if listed.at.elapsed() < self.options.dir_cache_time => Need::Nothing,
            Some(_) => Need::Check,
        })
    }

    /// Makes sure folder `ino` is listed and its listing not older than the dir cache time. While storage is
    /// unreachable, the listings verified before are shown (and storage is not asked again for a while).
    pub(super) async fn ensure_current(&self, ino: u64) -> Result<(), FsError> {
        if self.state().local_only(ino) {
            // Made here and not in storage yet: its listing is ours alone.
            return Ok(());
        }
        if self.batches() && self.state().staged_above(ino) {
            self.commit_now().await?;
        }
        match self.need(ino)? {
            Need::Nothing => return Ok(()),
            Need::Check if self.offline() => return Ok(()),
            _ => {}
        }
        let _listing = self.listings.lock(&ino).await;
        // Another asker may have listed it meanwhile: its result is used.
        let need = self.need(ino)?;
        match need {
            Need::Nothing => Ok(()),
            Need::Check if self.offline() => Ok(()),
            _ => match self.refresh_holding_listing(ino).await {
                Err(FsError::Unreachable) if need == Need::Check => {
                    // Offline: keep showing the listings verified before, and do not ask storage again for a
                    // while (every call would otherwise wait for the timeout).
                    tracing::warn!(file_id = self.format.log_id(), "storage unreachable; showing cached listings");
                    *super::lock(&self.offline_until) =
                        Some(Instant::now() + self.options.dir_cache_time.max(OFFLINE_PAUSE));
                    Ok(())
                }
                other => other,
            },
        }
    }

    /// Checks folder `ino` against storage (cheaply where the format can) and lists it again if it changed or
    /// was never listed. The caller holds the folder's listing lock.
    pub(super) async fn refresh_holding_listing(&self, ino: u64) -> Result<(), FsError> {
        let (path, listed, commits) = {
            let state = self.state();
            let dir = state.dir(ino)?;
            (state.path(ino)?, dir.listed.as_ref().map(|listed| listed.state.clone()), dir.commits)
        };
        if let Some(listed) = listed {
            let started = Instant::now();
            if let Some(current) = self.format.check(&path, &listed).await? {
                let mut state = self.state();
                let dir = state.dir_mut(ino)?;
                // A commit that wrote the folder meanwhile left a newer listing.
                if let (Some(listed), true) = (dir.listed.as_mut(), dir.commits == commits) {
                    listed.state = current;
                    listed.at = started;
                }
                return Ok(());
            }
        }
        self.reload_holding_listing(ino).await
    }

    /// Lists folder `ino` and merges the listing into the table.
    pub(super) async fn reload(&self, ino: u64) -> Result<(), FsError> {
        let _listing = self.listings.lock(&ino).await;
        self.reload_holding_listing(ino).await
    }

    /// [`Self::reload`] for a caller that holds the folder's listing lock.
    async fn reload_holding_listing(&self, ino: u64) -> Result<(), FsError> {
        let (path, since) = {
            let state = self.state();
            let dir = state.dir(ino)?;
            (state.path(ino)?, Since { started: Instant::now(), generation: dir.generation, commits: dir.commits })
        };
        let listing = self.format.list(&path).await?;
        let mut state = self.state();
        merge(&mut state, ino, listing, since)
    }

    /// Drops folder `ino`'s listing: the next access reads it again.
    pub(super) fn forget_listing(&self, ino: u64) {
        if let Ok(dir) = self.state().dir_mut(ino) {
            dir.listed = None;
        }
    }

    /// Looks `name` up in folder `parent`.
    pub async fn lookup(&self, parent: u64, name: &str) -> Result<Attributes, FsError> {
        self.validate_name(name)?;
        self.ensure_current(parent).await?;
        let state = self.state();
        let child = state.child(parent, name)?.ok_or(FsError::NotFound)?;
        state.attributes(child)
    }

    /// The attributes of `ino` (a folder's listing is refreshed when stale).
    pub async fn getattr(&self, ino: u64) -> Result<Attributes, FsError> {
        if self.state().is_dir(ino)? {
            self.ensure_current(ino).await?;
        }
        self.state().attributes(ino)
    }

    /// The entries of folder `ino` (without `.` and `..`).
    pub async fn readdir(&self, ino: u64) -> Result<Vec<DirEntry>, FsError> {
        self.note_activity();
        self.ensure_current(ino).await?;
        let state = self.state();
        let dir = state.dir(ino)?;
        dir.children
            .iter()
            .map(|(name, child)| {
                Ok(DirEntry { name: Zeroizing::new(name.0.clone()), attributes: state.attributes(*child)? })
            })
            .collect()
    }

    /// Where `ino` is now: its folder and its clear name (an unlinked file: [`FsError::NotFound`]).
    pub fn location(&self, ino: u64) -> Result<(u64, Zeroizing<String>), FsError> {
        let state = self.state();
        let node = state.node(ino)?;
        if ino != ROOT_INO && !state.nodes.contains_key(&node.parent) {
            return Err(FsError::NotFound);
        }
        if matches!(&node.kind, Kind::File(file) if file.unlinked) {
            return Err(FsError::NotFound);
        }
        Ok((node.parent, Zeroizing::new(node.name.0.clone())))
    }

    /// The parent of `ino` (the root is its own parent).
    pub fn origin(&self, ino: u64) -> Result<Option<&'static str>, FsError> {
        let state = self.state();
        Ok(match &state.node(ino)?.kind {
            Kind::File(file) => file.stored.as_ref().and_then(F::origin),
            _ => None,
        })
    }

    /// The folder `ino` is in (the root for the root and for unknown inodes).
    pub fn parent_of(&self, ino: u64) -> u64 {
        self.state().nodes.get(&ino).map(|node| node.parent).unwrap_or(ROOT_INO)
    }
}
