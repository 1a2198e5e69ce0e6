//! Opening and reading: a file's stored content is fetched, authenticated and decrypted on first open (one
//! fetch per content at a time) and kept in the plaintext cache; with a format that reads by ranges, a
//! larger file opened for reading gets a reader that fetches only the chunks asked for (and the next window
//! ahead), kept in the cache after the last close.

use std::sync::Arc;

use super::nodes::SharedReader;
use super::{Format, FsError, OpenMode, Opened, Vfs, PREFETCH_MAX_LEN};
use crate::content::Content;

impl<F: Format> Vfs<F> {
    /// Opens file `ino`. For reading, a small file (or any file of a format that reads whole files) is
    /// fetched whole, and the next small files of its folder are fetched ahead ([`Self::prefetch_after`]);
    /// a larger file of a format that reads by ranges gets a reader (the header and the first chunks, one
    /// request). For writing the whole file is loaded (with O_TRUNC, nothing is).
    pub async fn open(self: &Arc<Self>, ino: u64, mode: OpenMode) -> Result<Opened, FsError> {
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
        if parent != u64::MAX && self.state().nodes.contains_key(&parent) {
            self.ensure_current(parent).await?;
        }
        if mode.write && mode.truncate {
            self.truncate_local(ino, 0)?;
        } else if mode.write || !self.reads_by_ranges(ino)? {
            self.load_content(ino).await?;
        } else {
            let needs_reader = {
                let state = self.state();
                let file = state.file(ino)?;
                file.content.is_none() && file.reader.is_none()
            };
            if needs_reader {
                self.ensure_reader(ino).await?;
            }
        }
        let mut state = self.state();
        state.next_fh += 1;
        let fh = state.next_fh;
        state.handles.insert(fh, ino);
        let file = state.file_mut(ino)?;
        file.open_handles += 1;
        let stored = file.content_id();
        let keep_cache = !file.dirty && stored.is_some() && file.kernel_cached == stored;
        file.kernel_cached = if file.dirty { None } else { stored };
        Ok(opened(fh, keep_cache))
    }

    /// Whether file `ino` is read by ranges: the format can, and it is larger than a file fetched whole.
    fn reads_by_ranges(&self, ino: u64) -> Result<bool, FsError> {
        let state = self.state();
        let file = state.file(ino)?;
        Ok(self.capabilities.ranged_reads && file.content.is_none() && file.size > PREFETCH_MAX_LEN)
    }

    /// Fetches (once, however many open it at the same time), authenticates and decrypts the stored content
    /// of file `ino`, unless its content is already loaded or cached.
    pub(super) async fn load_content(&self, ino: u64) -> Result<(), FsError> {
        let (path, stored, size) = {
            let state = self.state();
            let node = state.node(ino)?;
            let file = state.file(ino)?;
            if file.content.is_some() {
                return Ok(());
            }
            match &file.stored {
                Some(stored) => (state.path(node.parent).ok(), stored.clone(), file.size),
                None => {
                    drop(state);
                    self.state().file_mut(ino)?.content = Some(Arc::new(Content::empty()));
                    return Ok(());
                }
            }
        };
        let id = F::content_id(&stored);
        let key = super::cache::key(ino, &id);
        let _one_download = self.downloads.lock(&key).await;
        let cached = super::lock(&self.cache).get(&key);
        let plaintext = match cached {
            Some(plaintext) => plaintext,
            None => {
                // An unlinked file's folder may be gone: a format that needs no folder path fetches anyway.
                let path = path.unwrap_or_default();
                let content = Arc::new(self.format.fetch(&path, &stored, size, &self.spill).await?);
                super::lock(&self.cache).insert(&key, content.clone());
                content
            }
        };
        let mut state = self.state();
        let file = state.file_mut(ino)?;
        if file.content.is_none() && file.content_id().as_deref() == Some(id.as_str()) {
            file.size = plaintext.len();
            file.content = Some(plaintext);
            file.reader = None;
        }
        Ok(())
    }

    /// The shared reader of file `ino`, opened if it has none (one request: header and first chunks), or
    /// taken from the cache where the last close left it.
    async fn ensure_reader(&self, ino: u64) -> Result<SharedReader<F>, FsError> {
        let (stored, size) = {
            let mut state = self.state();
            let file = state.file_mut(ino)?;
            if let Some(reader) = &file.reader {
                return Ok(reader.clone());
            }
            let stored = file.stored.clone().ok_or(FsError::Io)?;
            // Kept since its last close, at the same stored version: no request.
            if let Some(reader) = super::lock(&self.cache).take_reader(&super::cache::key(ino, &F::content_id(&stored)))
            {
                file.reader = Some(reader.clone());
                return Ok(reader);
            }
            (stored, file.size)
        };
        let reader = self.format.open_reader(&stored, size).await?;
        let mut state = self.state();
        let file = state.file_mut(ino)?;
        // Kept only if the file still is the version it was opened at.
        let current = file.content_id() == Some(F::content_id(&stored));
        let reader = Arc::new(tokio::sync::Mutex::new(reader));
        if current && file.reader.is_none() && file.content.is_none() {
            file.reader = Some(reader.clone());
        }
        Ok(file.reader.clone().unwrap_or(reader))
    }

    /// Reads up to `size` bytes at `offset`, lending them to `use_bytes`: from the file's content if it is
    /// loaded (no copy: the FUSE reply copies them once, straight from the cache), else the chunks that hold
    /// them, authenticated, from storage.
    pub async fn read_with<T>(
        &self,
        ino: u64,
        offset: u64,
        size: u32,
        use_bytes: impl FnOnce(&[u8]) -> T,
    ) -> Result<T, FsError> {
        self.note_activity();
        let (content, reader) = {
            let state = self.state();
            let file = state.file(ino)?;
            (file.content.clone(), file.reader.clone())
        };
        let content = match (content, reader) {
            (Some(content), _) => content,
            (None, Some(reader)) => return self.read_ranged(reader, offset, size, use_bytes).await,
            (None, None) if self.reads_by_ranges(ino)? => {
                let reader = self.ensure_reader(ino).await?;
                return self.read_ranged(reader, offset, size, use_bytes).await;
            }
            (None, None) => {
                self.load_content(ino).await?;
                self.state().file(ino)?.content.clone().ok_or(FsError::Io)?
            }
        };
        content.with_range(offset, size as usize, use_bytes).map_err(|error| {
            tracing::error!(%error, ino, "reading local content failed");
            FsError::from_io(&error)
        })
    }

    async fn read_ranged<T>(
        &self,
        reader: SharedReader<F>,
        offset: u64,
        size: u32,
        use_bytes: impl FnOnce(&[u8]) -> T,
    ) -> Result<T, FsError> {
        let mut reader = reader.lock().await;
        let bytes = self.format.read_at(&mut reader, offset, size as usize).await?;
        Ok(use_bytes(&bytes))
    }
}

fn opened(fh: u64, keep_cache: bool) -> Opened {
    Opened { fh, keep_cache }
}
