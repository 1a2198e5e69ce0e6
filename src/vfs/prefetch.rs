//! Fetching ahead: after an open of a small file, the next small files of its folder are fetched and
//! decrypted in the background, a few at a time, so a program reading a folder's files in order finds them
//! in the cache (for every format: small files are fetched whole).

use std::sync::Arc;

use tracing::Instrument as _;

use super::{lock, Format, Vfs, PREFETCH_AHEAD, PREFETCH_MAX_LEN};

impl<F: Format> Vfs<F> {
    /// After small file `ino` was opened: fetches up to [`PREFETCH_AHEAD`] of the small files that follow it
    /// in its folder (name order) and are not cached, authenticated and decrypted, into the cache in the
    /// background. Programs that read a folder's files one after another (`cat *`, `grep -r`, a backup)
    /// then find them there instead of waiting a round trip each. Nothing is fetched while storage is
    /// unreachable; a failed fetch ahead is only logged (the open of that file fetches it again and reports
    /// the error).
    pub(super) fn prefetch_after(self: &Arc<Self>, ino: u64) {
        if self.offline() {
            return;
        }
        let (path, ahead) = {
            let state = self.state();
            let Ok(node) = state.node(ino) else { return };
            let Ok(file) = state.file(ino) else { return };
            if file.size > PREFETCH_MAX_LEN {
                return;
            }
            let Ok(dir) = state.dir(node.parent) else { return };
            let mut ahead = Vec::new();
            let following = dir.children.range((std::ops::Bound::Excluded(&node.name), std::ops::Bound::Unbounded));
            for (_, child) in following {
                if ahead.len() == PREFETCH_AHEAD {
                    break;
                }
                let Ok(file) = state.file(*child) else { continue };
                if file.content.is_some() || file.dirty || file.size > PREFETCH_MAX_LEN {
                    continue;
                }
                if let Some(stored) = &file.stored {
                    ahead.push((*child, stored.clone(), file.size));
                }
            }
            let Ok(path) = state.path(node.parent) else { return };
            (path, ahead)
        };
        for (child, stored, size) in ahead {
            let id = super::cache::key(child, &F::content_id(&stored));
            if lock(&self.cache).get(&id).is_some() || !lock(&self.prefetching).insert(id.clone()) {
                continue;
            }
            let vfs = self.clone();
            let path = path.clone();
            tokio::spawn(
                async move {
                    if let Ok(_slot) = vfs.prefetch_slots.clone().acquire_owned().await {
                        vfs.fetch_ahead(&path, &id, &stored, size).await;
                    }
                    lock(&vfs.prefetching).remove(&id);
                }
                .instrument(tracing::debug_span!("prefetch")),
            );
        }
    }

    /// One fetch ahead (`id`: its cache key): authenticated and decrypted into the cache unless it is cached meanwhile or the cache
    /// was cleared since it started.
    async fn fetch_ahead(&self, path: &[F::Folder], id: &String, stored: &F::File, size: u64) {
        let _one_download = self.downloads.lock(id).await;
        if lock(&self.cache).get(id).is_some() {
            return;
        }
        let generation = self.cache_generation.load(std::sync::atomic::Ordering::SeqCst);
        match self.format.fetch(path, stored, size, &self.spill).await {
            Ok(content) => {
                let mut cache = lock(&self.cache);
                if self.cache_generation.load(std::sync::atomic::Ordering::SeqCst) == generation {
                    cache.insert(id, Arc::new(content));
                }
            }
            Err(error) => tracing::debug!(%error, "fetching ahead failed; the file is fetched when opened"),
        }
    }
}
