//! Where a download's decrypted bytes go: a [`ContentSink`] collects them into a [`Content`] (spilling past
//! the threshold) and hands the content out only after the authentication tag verified.

use std::io;
use std::sync::Arc;

use super::{too_big, Content, Repr, Spill};
use crate::crypto::file_cipher::PlaintextSink;

/// Collects decrypted (not yet verified) plaintext into a [`Content`], spilling when it grows past the
/// threshold; the content is handed out only after the tag verified.
pub struct ContentSink {
    content: Content,
    spill: Arc<Spill>,
    verified: bool,
}

impl ContentSink {
    /// A sink expecting about `expected_len` bytes.
    pub fn new(expected_len: u64, spill: Arc<Spill>) -> io::Result<Self> {
        let mut content = Content::empty();
        content.spill_if_above(expected_len, &spill)?;
        if let Repr::Ram(buffer) = &mut content.0 {
            buffer.reserve(usize::try_from(expected_len).map_err(|_| too_big())?);
        }
        Ok(Self { content, spill, verified: false })
    }

    /// The verified content; `None` unless [`PlaintextSink::commit`] was called.
    pub fn into_verified(self) -> Option<Content> {
        self.verified.then_some(self.content)
    }
}

impl PlaintextSink for ContentSink {
    fn write_unverified(&mut self, plaintext: &[u8]) -> io::Result<()> {
        self.content.append(plaintext, &self.spill)
    }
    fn unverified_tail(&mut self, len: usize) -> io::Result<Option<&mut [u8]>> {
        Ok(self.content.append_in_place(len, &self.spill))
    }
    fn commit(&mut self) -> io::Result<()> {
        self.verified = true;
        Ok(())
    }
    fn discard(&mut self) {
        self.verified = false;
        self.content = Content::empty();
    }
}
