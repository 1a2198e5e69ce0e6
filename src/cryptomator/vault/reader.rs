//! Reading a file by ranges, as a mount reads it: only the chunks asked for are fetched (HTTP ranges),
//! and on sequential reads a growing window ahead (128 KiB, doubling up to 4 MiB) so that a stream is a
//! few large requests. While a sequential reader uses one window, the next ones ([`MAX_AHEAD_WINDOWS`])
//! are already being fetched (ciphertext, authenticated only when it is used), so over a slow link the
//! round trips of the windows overlap each other and the reading. Opening fetches the header and the first
//! window in one request, so the first byte of any file costs one round trip. The window holds
//! authenticated clear text only and is wiped when replaced or dropped.

use zeroize::Zeroizing;

use super::{CryptomatorVault, EntryKind, VaultEntry};
use crate::cryptomator::content::{FileHeader, CHUNK_SIZE};
use crate::cryptomator::CryptomatorError;
use crate::storage::RemoteError;
use crate::storage::Store;

/// Chunks fetched with the header, and after a jump.
pub const FIRST_WINDOW_CHUNKS: u64 = 4;
/// The largest window fetched ahead on sequential reads (4 MiB).
pub const MAX_WINDOW_CHUNKS: u64 = 128;
/// Windows being fetched ahead at once on sequential reads: at 50 ms per round trip, four windows of 4 MiB
/// keep 16 MiB on the way (about 320 MiB/s).
pub const MAX_AHEAD_WINDOWS: usize = 4;

/// A file opened for ranged reads.
pub struct FileReader {
    /// The contents file in the store (for messages).
    pub contents_path: Vec<String>,
    /// The clear size as listed.
    pub size: u64,
    /// The store's version of the contents file when it was opened.
    pub version: String,
    header: FileHeader,
    /// The first chunk of `window`.
    window_start_chunk: u64,
    /// Clear bytes of consecutive chunks from `window_start_chunk`.
    window: Zeroizing<Vec<u8>>,
    /// Chunks the next sequential fetch asks for.
    ahead_chunks: u64,
    /// Where a sequential read continues.
    next_offset: u64,
    /// Requests made for content (the header's and the fetches ahead included), for tests and statistics.
    pub requests: u64,
    /// The next windows, in order, being fetched while this one is read.
    ahead: std::collections::VecDeque<Ahead>,
}

/// A fetch of the chunks after the window (ciphertext), running on its own; dropped, it is cancelled.
struct Ahead {
    first_chunk: u64,
    chunks: u64,
    fetch: tokio::task::JoinHandle<Result<Vec<u8>, RemoteError>>,
}

impl Drop for Ahead {
    fn drop(&mut self) {
        self.fetch.abort();
    }
}

impl FileReader {
    /// Bytes the reader holds or is fetching: its window (clear text) and the windows on their way
    /// (ciphertext, about one chunk each), so that a cache of readers is bounded by what they really take.
    pub fn held_bytes(&self) -> u64 {
        let chunk = crate::cryptomator::content::CHUNK_SIZE as u64;
        self.window.len() as u64 + self.ahead.iter().map(|ahead| ahead.chunks * chunk).sum::<u64>()
    }
}

impl std::fmt::Debug for FileReader {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("FileReader")
            .field("size", &self.size)
            .field("window_start_chunk", &self.window_start_chunk)
            .field("window_len", &self.window.len())
            .finish_non_exhaustive()
    }
}

impl<S: Store> CryptomatorVault<S> {
    /// Opens a file for ranged reads: its header and first chunks in one request.
    pub async fn open_reader(&self, entry: &VaultEntry) -> Result<FileReader, CryptomatorError> {
        if entry.kind != EntryKind::File {
            return Err(CryptomatorError::IsADirectory(entry.name.clone()));
        }
        let contents_path = entry.node.contents_path();
        let shown = contents_path.join("/");
        let header_len = self.content.header_len() as u64;
        let first_window = FIRST_WINDOW_CHUNKS * self.content.sealed_chunk_len() as u64;
        let sealed = Zeroizing::new(self.store.read(&contents_path, Some(0..header_len + first_window)).await?);
        let header = self.content.decrypt_header(&sealed, &shown)?;
        let mut window = Zeroizing::new(Vec::with_capacity(sealed.len()));
        self.content.decrypt_chunks_into(&header, 0, &sealed[header_len as usize..], &shown, &mut window)?;
        Ok(FileReader {
            contents_path,
            size: entry.size,
            version: entry.version.clone(),
            header,
            window_start_chunk: 0,
            window,
            ahead_chunks: FIRST_WINDOW_CHUNKS,
            next_offset: 0,
            requests: 1,
            ahead: std::collections::VecDeque::new(),
        })
    }
}

impl<S: Store + Clone + 'static> CryptomatorVault<S> {
    /// Up to `len` clear bytes at `offset` (fewer at the end of the file), authenticated.
    pub async fn read_at(
        &self,
        reader: &mut FileReader,
        offset: u64,
        len: usize,
    ) -> Result<Zeroizing<Vec<u8>>, CryptomatorError> {
        let end = offset.saturating_add(len as u64).min(reader.size);
        if offset >= end {
            return Ok(Zeroizing::new(Vec::new()));
        }
        let chunk = CHUNK_SIZE as u64;
        let window_start = reader.window_start_chunk * chunk;
        let window_end = window_start + reader.window.len() as u64;
        if offset < window_start || end > window_end {
            let sequential = offset == reader.next_offset || (offset >= window_start && offset <= window_end);
            reader.ahead_chunks =
                if sequential { (reader.ahead_chunks * 2).min(MAX_WINDOW_CHUNKS) } else { FIRST_WINDOW_CHUNKS };
            let first = offset / chunk;
            let needed = (end - 1) / chunk - first + 1;
            let file_chunks = reader.size.div_ceil(chunk);
            let shown = reader.contents_path.join("/");
            // The window fetched ahead that is needed now; those before it are passed over and, after a jump,
            // all are cancelled (dropped).
            while reader.ahead.front().is_some_and(|ahead| ahead.first_chunk < first) {
                reader.ahead.pop_front();
            }
            let ahead = match reader.ahead.pop_front() {
                Some(ahead) if ahead.first_chunk == first && ahead.chunks >= needed && sequential => Some(ahead),
                _ => {
                    reader.ahead.clear();
                    None
                }
            };
            let fetched = match ahead {
                Some(mut ahead) => match (&mut ahead.fetch).await {
                    Ok(result) => Some((ahead.chunks, result?)),
                    // Cancelled or failed as a task: fetched again below.
                    Err(_) => None,
                },
                None => None,
            };
            let (chunks, sealed) = match fetched {
                Some(fetched) => fetched,
                None => {
                    let chunks = needed.max(reader.ahead_chunks).min(file_chunks - first);
                    let (_, sealed_range) = self.content.chunks_of(first * chunk..(first + chunks) * chunk);
                    let sealed = self.store.read(&reader.contents_path, Some(sealed_range)).await?;
                    reader.requests += 1;
                    (chunks, sealed)
                }
            };
            let sealed = Zeroizing::new(sealed);
            let mut window = Zeroizing::new(Vec::with_capacity(sealed.len()));
            self.content.decrypt_chunks_into(&reader.header, first, &sealed, &shown, &mut window)?;
            reader.window = window;
            reader.window_start_chunk = first;
            // Reading in order: the next windows are fetched while this one is used.
            let mut next = reader.ahead.back().map_or(first + chunks, |last| last.first_chunk + last.chunks);
            while sequential && reader.ahead.len() < MAX_AHEAD_WINDOWS && next < file_chunks {
                reader.ahead_chunks = (reader.ahead_chunks * 2).min(MAX_WINDOW_CHUNKS);
                let ahead_chunks = reader.ahead_chunks.min(file_chunks - next);
                let (_, sealed_range) = self.content.chunks_of(next * chunk..(next + ahead_chunks) * chunk);
                let (store, path) = (self.store.clone(), reader.contents_path.clone());
                let fetch = tokio::spawn(async move { store.read(&path, Some(sealed_range)).await });
                reader.ahead.push_back(Ahead { first_chunk: next, chunks: ahead_chunks, fetch });
                reader.requests += 1;
                next += ahead_chunks;
            }
        }
        let window_start = reader.window_start_chunk * chunk;
        let (from, to) = ((offset - window_start) as usize, (end - window_start) as usize);
        if to > reader.window.len() {
            return Err(CryptomatorError::malformed(
                reader.contents_path.join("/"),
                "shorter than its listed size (changed meanwhile, or cut at a chunk boundary)",
            ));
        }
        reader.next_offset = end;
        Ok(Zeroizing::new(reader.window[from..to].to_vec()))
    }
}
