//! The write path: writes and truncation into a file's clear text in RAM (or its encrypted spill), and the
//! size and time changes of setattr.

use std::sync::Arc;
use std::time::SystemTime;

use super::nodes::{File, State};
use super::{Attributes, Format, FsError, Plaintext, Vfs};

impl<F: Format> Vfs<F> {
    /// Marks file `ino` changed here: stored again at its next close (or fsync), not while it is written.
    fn mark_changed(state: &mut State<F>, ino: u64) -> Result<&mut File<F>, FsError> {
        state.queued.remove(&ino);
        let file = state.file_mut(ino)?;
        file.dirty = true;
        file.version += 1;
        file.mtime = SystemTime::now();
        file.ctime = file.mtime;
        file.kernel_cached = None;
        file.reader = None;
        Ok(file)
    }

    pub(super) fn truncate_local(&self, ino: u64, len: u64) -> Result<(), FsError> {
        let mut state = self.state();
        let file = state.file_mut(ino)?;
        let content = writable(file.content.get_or_insert_with(Default::default))?;
        content.set_len(len, &self.spill).map_err(|error| FsError::from_io(&error))?;
        Self::mark_changed(&mut state, ino)?.size = len;
        Ok(())
    }

    /// Writes `data` at `offset` if the file's content is loaded (no download needed): the FUSE thread then
    /// copies the kernel's buffer straight into the content. `None`: use [`Self::write`].
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
        let len = content.len();
        Self::mark_changed(&mut state, ino)?.size = len;
        Ok(data.len() as u32)
    }

    /// Sets the size and/or modification time (the time is kept while mounted; storage keeps its own).
    pub async fn setattr(&self, ino: u64, size: Option<u64>, mtime: Option<SystemTime>) -> Result<Attributes, FsError> {
        self.note_activity();
        if let Some(len) = size {
            if self.state().is_dir(ino)? {
                return Err(FsError::IsADirectory);
            }
            if len != 0 {
                self.load_content(ino).await?;
            }
            self.truncate_local(ino, len)?;
            // truncate(2) on a closed file has no close to store it: do it now.
            if self.state().file(ino)?.open_handles == 0 {
                self.write_back(ino).await?;
            }
        }
        // Every setattr is a change of the file (chmod and chown are accepted without effect, but POSIX has
        // them change the ctime too).
        {
            let mut state = self.state();
            if let Ok(file) = state.file_mut(ino) {
                if let Some(mtime) = mtime {
                    file.mtime = mtime;
                }
                file.ctime = SystemTime::now();
            } else if let Ok(dir) = state.dir_mut(ino) {
                dir.attributes_changed = Some(SystemTime::now());
            }
        }
        self.state().attributes(ino)
    }
}

/// The content behind `content` for writing: shared (cached) content is copied first.
pub(crate) fn writable(content: &mut Plaintext) -> Result<&mut crate::content::Content, FsError> {
    if Arc::get_mut(content).is_none() {
        *content = Arc::new(content.try_clone().map_err(|error| FsError::from_io(&error))?);
    }
    Arc::get_mut(content).ok_or(FsError::Io)
}
