//! Opening and reading: a file's blob is downloaded, verified and decrypted on first open (one download
//! per blob at a time), kept in the plaintext cache, and read from there.

use super::*;

impl<R: E2eeApi> Core<R> {
    /// Downloads (once, however many open it at the same time), verifies and decrypts the current blob of
    /// file `ino`, unless its content is already loaded or cached.
    pub(super) async fn load_content(&self, ino: u64) -> Result<(), FsError> {
        let (parent, uid, entry) = {
            let state = self.state();
            let file = state.file(ino)?;
            if file.content.is_some() {
                return Ok(());
            }
            match (&file.uid, &file.entry) {
                (Some(uid), Some(entry)) => (state.node(ino)?.parent, uid.clone(), entry.clone()),
                _ => {
                    drop(state);
                    self.state().file_mut(ino)?.content = Some(Arc::new(Content::empty()));
                    return Ok(());
                }
            }
        };
        let _one_download = self.downloads.lock(&uid).await;
        let cached = lock(&self.cache).get(&uid);
        let plaintext = match cached {
            Some(plaintext) => plaintext,
            None => {
                let path = self.state().remote_path(&self.root_path, parent)?;
                let expected_len = self.state().file(ino)?.size;
                let plaintext: Plaintext =
                    Arc::new(self.download_verified(&path, &uid, &entry, expected_len).await.map_err(|error| {
                        match error {
                            DownloadError::Spill(error) => FsError::from_io(&error),
                            DownloadError::Remote(error) => self.fail(error),
                        }
                    })?);
                lock(&self.cache).insert(&uid, plaintext.clone());
                plaintext
            }
        };
        let mut state = self.state();
        let file = state.file_mut(ino)?;
        if file.content.is_none() && file.uid.as_deref() == Some(uid.as_str()) {
            file.size = plaintext.len();
            file.content = Some(plaintext);
        }
        Ok(())
    }

    /// Downloads blob `uid` of the folder at `path`, verifies it against `entry` and decrypts it (spilling
    /// above the threshold); the caller holds the blob's download lock.
    pub(super) async fn download_verified(
        &self,
        path: &[String],
        uid: &str,
        entry: &FileEntry,
        expected_len: u64,
    ) -> Result<Content, DownloadError> {
        async {
            let mut sink = ContentSink::new(expected_len, self.spill.clone()).map_err(|error| {
                tracing::warn!(%error, directory = %self.spill.directory().display(), "cannot create a spill file");
                DownloadError::Spill(error)
            })?;
            tracing::debug!("fetching blob");
            self.vault.read_blob(path, uid, entry, &mut sink).await.map_err(DownloadError::Remote)?;
            sink.into_verified().ok_or(DownloadError::Spill(std::io::ErrorKind::InvalidData.into()))
        }
        .instrument(tracing::info_span!("download", server_name = %uid))
        .await
    }

    /// Opens file `ino`: loads its content (download, verify, decrypt on a cache miss). An open for reading
    /// of a small file fetches the next small files of its folder ahead ([`Self::prefetch_after`]).
    pub async fn open(self: &Arc<Self>, ino: u64, mode: OpenMode) -> Result<Opened, FsError>
    where
        R: 'static,
    {
        self.note_activity();
        let opened = self.open_handle(ino, mode).await?;
        if !mode.write {
            self.prefetch_after(ino);
        }
        Ok(opened)
    }

    /// Opens file `ino` and returns its new handle (no activity noted, nothing fetched ahead).
    pub(super) async fn open_handle(&self, ino: u64, mode: OpenMode) -> Result<Opened, FsError> {
        let parent = self.state().node(ino)?.parent;
        self.state().file(ino)?;
        if parent != u64::MAX {
            self.ensure_current(parent).await?;
        }
        if mode.truncate && mode.write {
            self.truncate_local(ino, 0)?;
        } else {
            self.load_content(ino).await?;
        }
        let mut state = self.state();
        state.next_fh += 1;
        let fh = state.next_fh;
        state.handles.insert(fh, ino);
        let file = state.file_mut(ino)?;
        file.open_handles += 1;
        let keep_cache = !file.dirty && file.uid.is_some() && file.kernel_cached == file.uid;
        file.kernel_cached = if file.dirty { None } else { file.uid.clone() };
        Ok(Opened { fh, keep_cache })
    }

    /// Reads up to `size` bytes at `offset`, lending them to `use_bytes` instead of copying them (the FUSE
    /// reply copies them once, straight from the cache).
    pub async fn read_with<T>(
        &self,
        ino: u64,
        offset: u64,
        size: u32,
        use_bytes: impl FnOnce(&[u8]) -> T,
    ) -> Result<T, FsError> {
        self.note_activity();
        self.load_content(ino).await?;
        let state = self.state();
        let content = state.file(ino)?.content.clone().ok_or(FsError::Io)?;
        drop(state);
        content.with_range(offset, size as usize, use_bytes).map_err(|error| {
            tracing::error!(%error, ino, "reading local content failed");
            FsError::from_io(&error)
        })
    }
}

/// Why a download failed: no spill file could be made, or the server's answer (transport, verification).
#[derive(Debug, thiserror::Error)]
pub(super) enum DownloadError {
    /// The spill file for a large content could not be created.
    #[error("cannot create a spill file: {0}")]
    Spill(std::io::Error),
    /// The download or its verification failed.
    #[error(transparent)]
    Remote(VaultError),
}
