//! Encryption while uploading: a blob's request body is produced by encrypting the file's content piece by
//! piece on a blocking thread, so no copy of the whole ciphertext is held and encryption overlaps the
//! transfer. The key and nonce are chosen once per upload; a retry encrypts the same content again under
//! them, producing the same bytes (the same plaintext, key and nonce: no nonce reuse across different data).

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::content::Content;
use crate::crypto::file_cipher::{encrypt_stream_with, SealedFile};
use crate::crypto::gcm::TAG_LEN;
use crate::crypto::{FileKey, Nonce};
use crate::storage::BodyStream;

/// Bytes handed to the HTTP client at a time.
const PIECE: usize = 256 * 1024;
/// Pieces that may wait between the encrypting thread and the connection.
const PIECES_IN_FLIGHT: usize = 4;

/// One upload of a file's content as a blob.
pub struct EncryptingUpload {
    content: Arc<Content>,
    key: FileKey,
    nonce: Nonce,
    /// The encryption of the latest attempt; its result carries the tag for the metadata.
    latest: Mutex<Option<tokio::task::JoinHandle<Result<SealedFile, String>>>>,
}

impl EncryptingUpload {
    /// An upload of `content` under a fresh random key and nonce.
    pub fn new(content: Arc<Content>) -> Self {
        Self { content, key: FileKey::generate(), nonce: Nonce::generate(), latest: Mutex::new(None) }
    }

    /// The blob's length: the ciphertext and the tag.
    pub fn blob_len(&self) -> u64 {
        self.content.len() + TAG_LEN as u64
    }

    /// A body for one attempt: starts encrypting on a blocking thread.
    pub fn body(&self) -> BodyStream {
        let (sender, receiver) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(PIECES_IN_FLIGHT);
        let (content, key, nonce) = (self.content.clone(), self.key.clone(), self.nonce.clone());
        let encryption = tokio::task::spawn_blocking(move || {
            let mut writer = ChannelWriter { sender: sender.clone(), piece: Vec::with_capacity(PIECE) };
            let result = encrypt_stream_with(key, nonce, content.reader(), &mut writer);
            if let Err(error) = &result {
                tracing::debug!(%error, "encrypting an upload stopped");
                // Ends the request with an error instead of a body that is short or has no tag.
                let _ = sender.blocking_send(Err(io::Error::other(format!("encryption failed: {error}"))));
            }
            result.map_err(|error| error.to_string())
        });
        if let Some(previous) = self.latest.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).replace(encryption)
        {
            previous.abort();
        }
        Box::pin(futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|piece| (piece, receiver))
        }))
    }

    /// After a failed upload: stops the latest encryption (its thread ends at its next piece).
    pub fn abandon(&self) {
        if let Some(encryption) = self.latest.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take() {
            encryption.abort();
        }
    }

    /// After the upload succeeded: what the metadata records (key, nonce, tag).
    pub async fn sealed(&self) -> Result<SealedFile, String> {
        let latest = self.latest.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        match latest {
            Some(encryption) => encryption.await.map_err(|error| error.to_string())?,
            None => Err("nothing was uploaded".into()),
        }
    }
}

/// Hands what is written to the request body in pieces of [`PIECE`] bytes; fails once the request is gone.
struct ChannelWriter {
    sender: tokio::sync::mpsc::Sender<io::Result<Bytes>>,
    piece: Vec<u8>,
}

impl ChannelWriter {
    fn send_piece(&mut self) -> io::Result<()> {
        if self.piece.is_empty() {
            return Ok(());
        }
        let piece = Bytes::from(std::mem::replace(&mut self.piece, Vec::with_capacity(PIECE)));
        self.sender.blocking_send(Ok(piece)).map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "upload ended"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = PIECE - self.piece.len();
        let taken = data.len().min(room);
        self.piece.extend_from_slice(&data[..taken]);
        if self.piece.len() == PIECE {
            self.send_piece()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_piece()
    }
}
