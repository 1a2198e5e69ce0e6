//! Blob files of the embedded server: `DATA/blobs/ab/<id>`, uploads written to `DATA/blobs/.tmp` piece by piece
//! and renamed into place, syncs batched at unlock, and a sweep of files no node names.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

use super::tree::random_hex;

/// An upload being written to its temp file, piece by piece, each piece's write-back started at once.
#[derive(Debug)]
pub struct BlobWriter {
    file: std::fs::File,
    written: u64,
}

impl BlobWriter {
    /// Creates the temp file.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        Ok(Self { file: std::fs::File::create(path)?, written: 0 })
    }

    /// Appends the chunks of `piece` and asks the kernel to start writing them to disk without waiting for
    /// it, so that a later fsync or syncfs finds most of a large upload on disk already.
    pub fn write_piece(&mut self, piece: &[impl AsRef<[u8]>]) -> std::io::Result<()> {
        use std::io::Write as _;
        let len: usize = piece.iter().map(|chunk| chunk.as_ref().len()).sum();
        for chunk in piece {
            self.file.write_all(chunk.as_ref())?;
        }
        crate::platform::start_write_back(&self.file, self.written, len as u64);
        self.written += len as u64;
        Ok(())
    }

    /// Makes the file's content durable.
    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_all()
    }
}

/// Where blobs live: `DATA/blobs/ab/<id>`, with `DATA/blobs/.tmp` for uploads in progress.
#[derive(Debug, Clone)]
pub struct BlobDir {
    root: PathBuf,
}

impl BlobDir {
    /// Opens (creating) the blob directory below `data_dir` and empties its temp directory.
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let root = data_dir.join("blobs");
        let temp = root.join(".tmp");
        let _ = std::fs::remove_dir_all(&temp);
        std::fs::create_dir_all(&temp)?;
        Ok(Self { root })
    }

    /// The file of blob `id`.
    pub fn path(&self, id: &str) -> PathBuf {
        self.root.join(&id[..2]).join(id)
    }

    /// A fresh temp file path for an upload.
    pub fn temp_path(&self) -> PathBuf {
        self.root.join(".tmp").join(random_hex(16))
    }

    /// Moves a finished upload into place under a new blob id; returns the id. With `durable` the rename is
    /// synced (the caller synced the file); without, [`Self::sync_all`] must run before the blob is committed.
    pub fn commit_upload(&self, temp: &Path, durable: bool) -> std::io::Result<String> {
        let id = random_hex(16);
        let target = self.path(&id);
        let directory = target.parent().expect("blob paths have a parent");
        std::fs::create_dir_all(directory)?;
        std::fs::rename(temp, &target)?;
        if durable {
            std::fs::File::open(directory)?.sync_all()?;
        }
        Ok(id)
    }

    /// Makes every blob written so far durable, with one sync of the file system holding them (`syncfs` on Linux): staged
    /// uploads (under a lock) skip their own fsyncs, and unlock calls this once before committing them.
    pub fn sync_all(&self) -> std::io::Result<()> {
        crate::platform::sync_file_system(&self.root)
    }

    /// Syncs one blob file and its directory (an upload that skipped its fsyncs but was not staged).
    pub fn sync_one(&self, id: &str) -> std::io::Result<()> {
        let path = self.path(id);
        std::fs::File::open(&path)?.sync_all()?;
        std::fs::File::open(path.parent().expect("blob paths have a parent"))?.sync_all()
    }

    /// Removes blob files (after the rows naming them are gone).
    pub fn remove(&self, ids: &[String]) {
        for id in ids {
            if let Err(error) = std::fs::remove_file(self.path(id)) {
                if error.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(blob = %id, %error, "could not remove a blob file");
                }
            }
        }
    }

    /// Removes blob files no node names (left by a crash between writing a file and committing its row).
    pub fn sweep(&self, connection: &Connection) -> std::io::Result<usize> {
        let mut removed = 0;
        let Ok(prefixes) = std::fs::read_dir(&self.root) else { return Ok(0) };
        let mut statement = connection
            .prepare("SELECT 1 FROM nodes WHERE blob = ?1")
            .map_err(|error| std::io::Error::other(error.to_string()))?;
        for prefix in prefixes {
            let prefix = prefix?;
            if prefix.file_name() == ".tmp" || !prefix.file_type()?.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(prefix.path())? {
                let file = file?;
                let name = file.file_name().to_string_lossy().into_owned();
                let known = statement
                    .query_row(params![name], |_| Ok(()))
                    .optional()
                    .map_err(|error| std::io::Error::other(error.to_string()))?
                    .is_some();
                if !known {
                    std::fs::remove_file(file.path())?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}
