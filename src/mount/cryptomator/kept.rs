//! Readers of closed files, kept within the mount's cache budget (`--cache-size`): a file opened again at
//! the same stored version reads its header and window from RAM, without a request. Least recently kept
//! out first; every reader's window is authenticated clear text, wiped when the reader is dropped.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::cryptomator::vault::FileReader;

/// A shared reader of one file.
pub(super) type SharedReader = Arc<tokio::sync::Mutex<FileReader>>;

struct Kept {
    ino: u64,
    version: String,
    bytes: u64,
    reader: SharedReader,
}

/// Readers kept after their file's last close, bounded by bytes.
pub(super) struct KeptReaders {
    budget: u64,
    used: u64,
    entries: VecDeque<Kept>,
}

impl KeptReaders {
    /// None kept yet; at most `budget` bytes of windows.
    pub(super) fn new(budget: u64) -> Self {
        Self { budget, used: 0, entries: VecDeque::new() }
    }

    /// Takes the reader of file `ino` if one is kept for its stored `version`; a reader of another version
    /// is dropped.
    pub(super) fn take(&mut self, ino: u64, version: &str) -> Option<SharedReader> {
        let index = self.entries.iter().position(|kept| kept.ino == ino)?;
        let kept = self.entries.remove(index)?;
        self.used -= kept.bytes;
        (kept.version == version).then_some(kept.reader)
    }

    /// Keeps `reader` of file `ino` (unless it is in use, or larger than the whole budget), dropping the
    /// oldest readers to stay within the budget.
    pub(super) fn keep(&mut self, ino: u64, reader: SharedReader) {
        let Ok((version, bytes)) = reader.try_lock().map(|held| (held.version.clone(), held.held_bytes())) else {
            return;
        };
        self.forget(ino);
        if bytes > self.budget {
            return;
        }
        self.used += bytes;
        self.entries.push_back(Kept { ino, version, bytes, reader });
        while self.used > self.budget {
            let Some(oldest) = self.entries.pop_front() else { break };
            self.used -= oldest.bytes;
        }
    }

    /// Drops the reader kept for `ino`, if any.
    pub(super) fn forget(&mut self, ino: u64) {
        if let Some(index) = self.entries.iter().position(|kept| kept.ino == ino) {
            if let Some(kept) = self.entries.remove(index) {
                self.used -= kept.bytes;
            }
        }
    }

    /// Drops every kept reader (their windows are wiped).
    pub(super) fn clear(&mut self) {
        self.entries.clear();
        self.used = 0;
    }

    /// Bytes of clear text kept, and how many readers.
    pub(super) fn usage(&self) -> (u64, usize) {
        (self.used, self.entries.len())
    }
}
