//! The write path: writes and truncation into a file's plaintext in RAM (or its encrypted spill), and
//! the size and time changes of setattr.

use super::*;

impl<R: E2eeApi> Core<R> {
    pub(super) fn mark_changed(file: &mut File) {
        file.dirty = true;
        // Uploaded at the next close (or fsync), not while it is being written.
        file.queued = false;
        file.version += 1;
        file.mtime = SystemTime::now();
        file.ctime = file.mtime;
        file.kernel_cached = None;
    }

    pub(super) fn truncate_local(&self, ino: u64, len: u64) -> Result<(), FsError> {
        let mut state = self.state();
        let file = state.file_mut(ino)?;
        let content = writable(file.content.get_or_insert_with(Default::default))?;
        content.set_len(len, &self.spill).map_err(|error| FsError::from_io(&error))?;
        file.size = len;
        Self::mark_changed(file);
        Ok(())
    }

    /// Writes `data` at `offset` if the file's content is loaded (no download needed): the FUSE thread
    /// then copies the kernel's buffer straight into the content. `None`: use [`Self::write`].
    pub fn write_loaded(&self, ino: u64, offset: u64, data: &[u8]) -> Option<Result<u32, FsError>> {
        self.note_activity();
        self.state().file(ino).ok()?.content.as_ref()?;
        Some(self.write_content(ino, offset, data))
    }

    /// Writes `data` at `offset` into the file's RAM buffer.
    pub async fn write(&self, ino: u64, offset: u64, data: &[u8]) -> Result<u32, FsError> {
        self.note_activity();
        self.load_content(ino).await?;
        self.write_content(ino, offset, data)
    }

    pub(super) fn write_content(&self, ino: u64, offset: u64, data: &[u8]) -> Result<u32, FsError> {
        let mut state = self.state();
        let file = state.file_mut(ino)?;
        let content = writable(file.content.as_mut().ok_or(FsError::Io)?)?;
        content.write_at(offset, data, &self.spill).map_err(|error| {
            tracing::warn!(%error, ino, "writing local content failed");
            FsError::from_io(&error)
        })?;
        file.size = content.len();
        Self::mark_changed(file);
        Ok(data.len() as u32)
    }

    /// Sets the size and/or modification time.
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
                self.write_back(ino).await?;
            }
        }
        // Every setattr is a change of the file (chmod and chown are accepted without effect, but POSIX
        // has them change the ctime too).
        if let Ok(file) = self.state().file_mut(ino) {
            if let Some(mtime) = mtime {
                file.mtime = mtime;
            }
            file.ctime = SystemTime::now();
        }
        self.state().attributes(ino)
    }
}

/// The content behind `content` for writing: shared (cached) content is copied first.
pub(crate) fn writable(content: &mut Plaintext) -> Result<&mut Content, FsError> {
    if Arc::get_mut(content).is_none() {
        *content = Arc::new(content.try_clone().map_err(|error| FsError::from_io(&error))?);
    }
    Arc::get_mut(content).ok_or(FsError::Io)
}
