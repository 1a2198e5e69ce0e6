//! Fetching ahead: after an open of a small file, the next small files of its folder are downloaded and
//! decrypted in the background, a few at a time, so a program reading a folder's files in order finds
//! them in the cache.

use super::*;

impl<R: E2eeApi> Core<R> {
    /// After small file `ino` was opened: fetches up to [`PREFETCH_AHEAD`] of the small files that follow it
    /// in its folder (name order) and are not cached, verified and decrypted, into the cache in the
    /// background. Programs that read a folder's files one after another (`cat *`, `grep -r`, a backup)
    /// then find them there instead of waiting a round trip each. Nothing is fetched while the server is
    /// unreachable; a failed fetch ahead is only logged (the open of that file fetches it again and
    /// reports the error).
    pub(super) fn prefetch_after(self: &Arc<Self>, ino: u64)
    where
        R: 'static,
    {
        if lock(&self.offline_until).is_some_and(|until| Instant::now() < until) {
            return;
        }
        let (path, ahead) = {
            let state = self.state();
            let Ok(node) = state.node(ino) else { return };
            let Kind::File(file) = &node.kind else { return };
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
                if let (Some(uid), Some(entry)) = (&file.uid, &file.entry) {
                    ahead.push((uid.clone(), entry.clone(), file.size));
                }
            }
            let Ok(path) = state.remote_path(&self.root_path, node.parent) else { return };
            (path, ahead)
        };
        for (uid, entry, size) in ahead {
            if lock(&self.cache).get(&uid).is_some() || !lock(&self.prefetching).insert(uid.clone()) {
                continue;
            }
            let core = self.clone();
            let path = path.clone();
            tokio::spawn(
                async move {
                    if let Ok(_slot) = core.prefetch_slots.clone().acquire_owned().await {
                        core.fetch_ahead(&path, &uid, &entry, size).await;
                    }
                    lock(&core.prefetching).remove(&uid);
                }
                .instrument(tracing::debug_span!("prefetch")),
            );
        }
    }

    /// One download ahead: verified and decrypted into the cache unless it is cached meanwhile or the cache
    /// was cleared since it started.
    pub(super) async fn fetch_ahead(&self, path: &[String], uid: &String, entry: &FileEntry, size: u64) {
        let _one_download = self.downloads.lock(uid).await;
        if lock(&self.cache).get(uid).is_some() {
            return;
        }
        let generation = self.cache_generation.load(std::sync::atomic::Ordering::SeqCst);
        match self.download_verified(path, uid, entry, size).await {
            Ok(content) => {
                let mut cache = lock(&self.cache);
                if self.cache_generation.load(std::sync::atomic::Ordering::SeqCst) == generation {
                    cache.insert(uid, Arc::new(content));
                }
            }
            Err(error) => tracing::debug!(%error, "fetching ahead failed; the file is fetched when opened"),
        }
    }
}
