//! Fuzzes blob decryption as the mount does it: a blob fed in pieces of any size, with and without the tag
//! from the metadata. Whatever the input, the sink receives `commit` only when the blob is exactly the
//! AES-GCM sealing of what it received; otherwise it is discarded and the call fails.
#![no_main]

use std::io;

use cloakfs::crypto::file_cipher::{encrypt_stream_with, BlobDecryptor, PlaintextSink};
use cloakfs::crypto::{FileKey, Nonce};
use libfuzzer_sys::fuzz_target;

#[derive(Default)]
struct Recorder {
    plaintext: Vec<u8>,
    committed: bool,
    discarded: bool,
}

impl PlaintextSink for Recorder {
    fn write_unverified(&mut self, plaintext: &[u8]) -> io::Result<()> {
        self.plaintext.extend_from_slice(plaintext);
        Ok(())
    }
    fn commit(&mut self) -> io::Result<()> {
        self.committed = true;
        Ok(())
    }
    fn discard(&mut self) {
        self.discarded = true;
        self.plaintext.clear();
    }
}

fn key() -> FileKey {
    FileKey::from_slice(&[0x42; 16]).unwrap()
}

fn nonce() -> Nonce {
    Nonce::from_slice(&[0x24; 12]).unwrap()
}

fuzz_target!(|data: &[u8]| {
    // Input: one byte choosing the piece size and whether the metadata's tag is checked, then the blob.
    let Some((&control, blob)) = data.split_first() else { return };
    let piece = usize::from(control & 0x7f) * 97 + 1;
    let expected_tag: Option<[u8; 16]> =
        (control & 0x80 != 0 && blob.len() >= 16).then(|| blob[blob.len() - 16..].try_into().unwrap());
    let mut sink = Recorder::default();
    let outcome = (|| {
        let mut decryptor = BlobDecryptor::new(&key(), &nonce(), expected_tag.as_ref())?;
        for chunk in blob.chunks(piece) {
            decryptor.feed(chunk, &mut sink)?;
        }
        decryptor.finish(&mut sink)
    })();
    match outcome {
        Ok(len) => {
            assert!(sink.committed && !sink.discarded);
            assert_eq!(len as usize, sink.plaintext.len());
            let mut sealed = Vec::new();
            encrypt_stream_with(key(), nonce(), &sink.plaintext[..], &mut sealed).unwrap();
            assert_eq!(sealed, blob, "accepted a blob that is not the sealing of its plaintext");
        }
        Err(_) => assert!(!sink.committed && sink.discarded, "a failed blob was not discarded"),
    }
});
