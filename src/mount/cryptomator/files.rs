//! Files of a mounted Cryptomator vault: opening, ranged reads of the stored version, the write path in RAM
//! or the encrypted spill, and the upload at close (a fresh content key, replacing only the version that
//! was read, else a conflicted copy), with retries in the background.

use std::io::Read as _;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tracing::Instrument as _;
use zeroize::Zeroizing;

use super::kept::SharedReader;
use super::{lock, CryptomatorFs, Kind};
use crate::cryptomator::vault::Written;
use crate::cryptomator::CryptomatorError;
use crate::mount::content::Content;
use crate::mount::core::{writable, Attributes, OpenMode, Opened};
use crate::mount::error::FsError;
use crate::storage::Store;

/// Bytes asked of the reader at a time when a file is loaded whole for writing.
const LOAD_PIECE: usize = 4 << 20;

impl<S: Store + Clone + 'static> CryptomatorFs<S> {
    /// Opens file `ino`: for reading, the header and first chunks are fetched and authenticated (one
    /// request); for writing, the whole file is loaded (or, with O_TRUNC, nothing is).
    pub async fn open(self: &Arc<Self>, ino: u64, mode: OpenMode) -> Result<Opened, FsError> {
        self.note_activity();
        self.open_handle(ino, mode).await
    }

    pub(super) async fn open_handle(&self, ino: u64, mode: OpenMode) -> Result<Opened, FsError> {
        let parent = self.state().node(ino)?.parent;
        self.state().file(ino)?;
        self.ensure_listed(parent).await?;
        if mode.write && mode.truncate {
            self.truncate_local(ino, 0)?;
        } else if mode.write {
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
        let stored_version = file.entry.as_ref().map(|entry| entry.version.clone());
        let keep_cache = !file.dirty && stored_version.is_some() && file.kernel_cached == stored_version;
        file.kernel_cached = if file.dirty { None } else { stored_version };
        Ok(Opened { fh, keep_cache })
    }

    /// The shared reader of file `ino`, opened if it has none (one request: header and first chunks).
    async fn ensure_reader(&self, ino: u64) -> Result<SharedReader, FsError> {
        let entry = {
            let mut state = self.state();
            let file = state.file_mut(ino)?;
            if let Some(reader) = &file.reader {
                return Ok(reader.clone());
            }
            let entry = file.entry.clone().ok_or(FsError::Io)?;
            // Kept since its last close, at the same stored version: no request.
            if let Some(reader) = lock(&self.kept).take(ino, &entry.version) {
                file.reader = Some(reader.clone());
                return Ok(reader);
            }
            entry
        };
        let span = tracing::debug_span!("open_reader", node = %entry.node.display());
        let reader = self.vault.open_reader(&entry).instrument(span).await.map_err(|error| self.fail(error))?;
        let mut state = self.state();
        let file = state.file_mut(ino)?;
        // Kept only if the file still is the version it was opened at.
        let current = file.entry.as_ref().is_some_and(|known| known.version == entry.version);
        let reader = Arc::new(tokio::sync::Mutex::new(reader));
        if current && file.reader.is_none() {
            file.reader = Some(reader.clone());
        }
        Ok(file.reader.clone().unwrap_or(reader))
    }

    /// Reads up to `size` bytes at `offset`: from the file's content if it is loaded, else the chunks that
    /// hold them, authenticated, from the store.
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
        if let Some(content) = content {
            return content.with_range(offset, size as usize, use_bytes).map_err(|error| FsError::from_io(&error));
        }
        let reader = match reader {
            Some(reader) => reader,
            None => self.ensure_reader(ino).await?,
        };
        let mut reader = reader.lock().await;
        let bytes = self.vault.read_at(&mut reader, offset, size as usize).await.map_err(|error| self.fail(error))?;
        Ok(use_bytes(&bytes))
    }

    /// Loads the whole clear text of file `ino` (for writing): fetched by the reader piece by piece, each
    /// authenticated, into RAM or the encrypted spill.
    pub(super) async fn load_content(&self, ino: u64) -> Result<(), FsError> {
        let _file = self.file_locks.lock(&ino).await;
        let entry = {
            let state = self.state();
            let file = state.file(ino)?;
            if file.content.is_some() {
                return Ok(());
            }
            file.entry.clone().ok_or(FsError::Io)?
        };
        let span = tracing::debug_span!("load", node = %entry.node.display());
        let content = async {
            let mut reader = self.vault.open_reader(&entry).await.map_err(|error| self.fail(error))?;
            let mut content = Content::empty();
            let mut offset = 0;
            while offset < entry.size {
                let piece =
                    self.vault.read_at(&mut reader, offset, LOAD_PIECE).await.map_err(|error| self.fail(error))?;
                if piece.is_empty() {
                    let error = CryptomatorError::malformed(
                        entry.node.contents_path().join("/"),
                        "shorter than its listed size",
                    );
                    return Err(self.fail(error));
                }
                content.write_at(offset, &piece, &self.spill).map_err(|error| {
                    tracing::warn!(%error, "storing the loaded content failed");
                    FsError::from_io(&error)
                })?;
                offset += piece.len() as u64;
            }
            Ok::<_, FsError>(content)
        }
        .instrument(span)
        .await?;
        let mut state = self.state();
        let file = state.file_mut(ino)?;
        if file.content.is_none() {
            file.size = content.len();
            file.content = Some(Arc::new(content));
        }
        Ok(())
    }

    fn truncate_local(&self, ino: u64, len: u64) -> Result<(), FsError> {
        let mut state = self.state();
        let file = state.file_mut(ino)?;
        let content = writable(file.content.get_or_insert_with(Default::default))?;
        content.set_len(len, &self.spill).map_err(|error| FsError::from_io(&error))?;
        file.size = len;
        file.reader = None;
        file.mark_changed();
        Ok(())
    }

    /// Writes without waiting if the file's content is loaded; `None`: use [`Self::write`].
    pub fn write_loaded(&self, ino: u64, offset: u64, data: &[u8]) -> Option<Result<u32, FsError>> {
        self.note_activity();
        self.state().file(ino).ok()?.content.as_ref()?;
        Some(self.write_content(ino, offset, data))
    }

    /// Writes `data` at `offset` into the file's content (loaded first if needed).
    pub async fn write(&self, ino: u64, offset: u64, data: &[u8]) -> Result<u32, FsError> {
        self.note_activity();
        self.load_content(ino).await?;
        self.write_content(ino, offset, data)
    }

    fn write_content(&self, ino: u64, offset: u64, data: &[u8]) -> Result<u32, FsError> {
        let mut state = self.state();
        let file = state.file_mut(ino)?;
        let content = writable(file.content.as_mut().ok_or(FsError::Io)?)?;
        content.write_at(offset, data, &self.spill).map_err(|error| {
            tracing::warn!(%error, ino, "writing local content failed");
            FsError::from_io(&error)
        })?;
        file.size = content.len();
        file.reader = None;
        file.mark_changed();
        Ok(data.len() as u32)
    }

    /// Sets the size and/or modification time (the time is kept while mounted; the store keeps its own).
    pub async fn setattr(&self, ino: u64, size: Option<u64>, mtime: Option<SystemTime>) -> Result<Attributes, FsError> {
        self.note_activity();
        if let Some(len) = size {
            if matches!(self.state().node(ino)?.kind, Kind::Dir(_)) {
                return Err(FsError::IsADirectory);
            }
            if len != 0 {
                self.load_content(ino).await?;
            }
            self.truncate_local(ino, len)?;
            // truncate(2) on a closed file has no close to upload it: do it now.
            if self.state().file(ino)?.open_handles == 0 {
                self.upload(ino).await?;
            }
        }
        if let Ok(file) = self.state().file_mut(ino) {
            if let Some(mtime) = mtime {
                file.mtime = mtime;
            }
            file.ctime = SystemTime::now();
        }
        self.state().attributes(ino)
    }

    /// Close, fsync: if file `ino` changed, encrypts it under a fresh content key and stores it, replacing
    /// only the version it was read at; if another writer changed it meanwhile, this version is kept as a
    /// conflicted copy and the file shows under that name. The error reaches the program; the content stays
    /// in RAM and the upload is retried in the background.
    pub(super) async fn upload(&self, ino: u64) -> Result<(), FsError> {
        let _file = self.file_locks.lock(&ino).await;
        let _names = self.names.read().await;
        let (parent, parent_ref, name, existing, version, content) = {
            let state = self.state();
            let Ok(file) = state.file(ino) else { return Ok(()) };
            if !file.dirty || file.unlinked {
                return Ok(());
            }
            let node = state.node(ino)?;
            let parent_ref = state.dir(node.parent)?.dir.clone();
            let content = file.content.clone().ok_or(FsError::Io)?;
            (node.parent, parent_ref, Zeroizing::new(node.name.0.clone()), file.entry.clone(), file.version, content)
        };
        let clear = whole(&content).map_err(|error| FsError::from_io(&error))?;
        drop(content);
        let node = self.vault.node_for(&parent_ref, &name).0;
        let span = tracing::info_span!("upload", node = %node.display(), bytes = clear.len());
        let result = self
            .vault
            .write_file_keeping_both(&parent_ref, &name, &clear, existing.as_ref(), &self.options.device)
            .instrument(span)
            .await;
        drop(clear);
        let mut state = self.state();
        match result {
            Ok(written) => {
                state.uploads += 1;
                let entry = match written {
                    Written::AsAsked(entry) => entry,
                    Written::ConflictedCopy(entry) => {
                        tracing::warn!(node = %node.display(), "another writer changed this file: this version was kept as a conflicted copy");
                        let copy = entry.name.clone();
                        state.relink(ino, parent, &copy)?;
                        // The other writer's version shows under the name at the next listing.
                        state.dir_mut(parent)?.listed = None;
                        entry
                    }
                };
                // A listing read during the upload may not show the file, or show its old version.
                let uploaded_as = state.node(ino)?.name.clone();
                state.touched_here(parent, &uploaded_as);
                let file = state.file_mut(ino)?;
                file.entry = Some(entry);
                file.reader = None;
                if file.version == version {
                    file.dirty = false;
                    file.error = None;
                    if file.open_handles == 0 {
                        file.content = None;
                    }
                }
                Ok(())
            }
            Err(error) => {
                drop(state);
                let failure = self.fail(error);
                let mut state = self.state();
                if let Ok(file) = state.file_mut(ino) {
                    file.error = Some(format!("upload failed: {failure}"));
                }
                state.retry_at = Some(Instant::now() + self.options.retry_interval);
                Err(failure)
            }
        }
    }

    /// Releases handle `fh`: the last one drops the file's reader, and its content unless it waits for
    /// an upload.
    pub fn release(&self, fh: u64) {
        let mut state = self.state();
        let Some(ino) = state.handles.remove(&fh) else { return };
        let Ok(file) = state.file_mut(ino) else { return };
        file.open_handles = file.open_handles.saturating_sub(1);
        if file.open_handles == 0 {
            let reader = file.reader.take();
            if !file.dirty {
                file.content = None;
            }
            let unlinked = file.unlinked;
            if unlinked {
                state.forget_subtree(ino);
            }
            drop(state);
            match reader {
                Some(reader) if !unlinked => lock(&self.kept).keep(ino, reader),
                _ => lock(&self.kept).forget(ino),
            }
        }
    }

    /// Drops every change not yet in the store (`cloakfs lock --discard`); files made here and never
    /// uploaded disappear. Returns how many files were dropped.
    pub fn discard_dirty(&self) -> usize {
        let mut state = self.state();
        let mut dropped = Vec::new();
        for (ino, node) in state.nodes.iter_mut() {
            if let Kind::File(file) = &mut node.kind {
                if file.dirty {
                    dropped.push((*ino, file.entry.is_none()));
                    file.dirty = false;
                    file.error = None;
                    file.content = None;
                    file.kernel_cached = None;
                }
            }
        }
        for (ino, never_stored) in &dropped {
            if *never_stored {
                state.detach(*ino);
            }
        }
        state.retry_at = None;
        dropped.len()
    }
}

/// The whole clear text of `content`, in one buffer wiped when dropped (the format encrypts a file in one
/// piece here).
fn whole(content: &Content) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let len = usize::try_from(content.len()).map_err(|_| std::io::Error::from(std::io::ErrorKind::FileTooLarge))?;
    let mut clear = Zeroizing::new(Vec::with_capacity(len));
    content.reader().read_to_end(&mut clear)?;
    Ok(clear)
}
