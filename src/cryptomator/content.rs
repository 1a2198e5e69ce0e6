//! File contents: a header holding a fresh content key, then the clear text in chunks of 32 KiB, each
//! encrypted and authenticated on its own with its chunk number and the header's nonce, so that a chunk
//! cannot be moved to another place or another file, and a range can be read without the rest.
//!
//! | combination | header (bytes)                                         | chunk (bytes)                              |
//! |-------------|--------------------------------------------------------|--------------------------------------------|
//! | SIV_GCM     | nonce 12, AES-GCM(payload 40) under the encryption key, tag 16 = 68 | nonce 12, AES-GCM(clear) under the content key with AAD chunk number (u64 BE) ‖ header nonce, tag 16 |
//! | SIV_CTRMAC  | nonce 16, AES-CTR(payload 40), HMAC-SHA256(nonce ‖ ciphertext) = 88 | nonce 16, AES-CTR(clear) under the content key, HMAC-SHA256(header nonce ‖ chunk number ‖ nonce ‖ ciphertext) |
//!
//! The payload is 8 reserved bytes (0xFF) and the 32-byte content key. An empty file is the header alone.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::hmac;
use ctr::cipher::{KeyIvInit as _, StreamCipher as _};
use zeroize::{Zeroize as _, Zeroizing};

use super::{CipherCombo, CryptomatorError, Masterkey};
use crate::crypto::locked::LockedBytes;
use crate::crypto::secret::{constant_time_eq, random_bytes};

/// Clear bytes per chunk.
pub const CHUNK_SIZE: usize = 32 * 1024;
/// Bytes of the header's payload: 8 reserved, 32 content key.
const PAYLOAD_LEN: usize = 40;

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

/// A file's header, decrypted: its nonce and content key (locked memory, wiped on drop).
pub struct FileHeader {
    nonce: Vec<u8>,
    content_key: LockedBytes,
}

impl std::fmt::Debug for FileHeader {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("FileHeader(..)")
    }
}

/// Encrypts and decrypts file contents of one vault.
pub struct ContentCryptor {
    combo: CipherCombo,
    /// The encryption key (headers) followed by the MAC key (CTRMAC).
    keys: LockedBytes,
}

/// One file's encryption, produced in pieces ([`ContentCryptor::sealing`]): its header and every chunk's
/// nonce are drawn once, so producing the same piece again (a retried upload) gives the same bytes, and no
/// key and nonce ever seal two different clear texts. The content key is in locked memory, wiped on drop.
pub struct Sealing {
    cryptor: std::sync::Arc<ContentCryptor>,
    header: FileHeader,
    encrypted_header: Vec<u8>,
    nonces: Vec<u8>,
    clear_len: u64,
}

impl std::fmt::Debug for Sealing {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Sealing").field("clear_len", &self.clear_len).finish_non_exhaustive()
    }
}

impl Sealing {
    /// The encrypted header, the file's first bytes.
    pub fn header(&self) -> &[u8] {
        &self.encrypted_header
    }

    /// The encrypted size of the whole file.
    pub fn sealed_len(&self) -> u64 {
        self.cryptor.ciphertext_size(self.clear_len)
    }

    /// Appends to `out` the encrypted chunks from chunk `first` on, whose clear bytes are `clear` (whole
    /// chunks, except at the end of the file).
    pub fn seal_chunks(&self, first: u64, clear: &[u8], out: &mut Vec<u8>) {
        let nonce_len = self.cryptor.nonce_len();
        for (offset, chunk) in clear.chunks(CHUNK_SIZE).enumerate() {
            let index = first + offset as u64;
            let at = usize::try_from(index).unwrap_or(usize::MAX).saturating_mul(nonce_len);
            let nonce = &self.nonces[at..at + nonce_len];
            self.cryptor.seal_chunk_into(&self.header, index, chunk, Some(nonce), out);
        }
    }
}

impl std::fmt::Debug for ContentCryptor {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("ContentCryptor").field("combo", &self.combo).finish_non_exhaustive()
    }
}

fn gcm_key(key: &[u8]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte key"))
}

fn ctr_apply(key: &[u8], nonce: &[u8], buffer: &mut [u8]) {
    let mut cipher = Aes256Ctr::new(key.into(), nonce.into());
    cipher.apply_keystream(buffer);
}

impl ContentCryptor {
    /// The content cryptor of `masterkey` for `combo`.
    pub fn new(masterkey: &Masterkey, combo: CipherCombo) -> Self {
        Self { combo, keys: LockedBytes::from_slice(masterkey.encryption_then_mac()) }
    }

    /// The cipher combination.
    pub fn combo(&self) -> CipherCombo {
        self.combo
    }

    fn encryption_key(&self) -> &[u8] {
        &self.keys.as_slice()[..32]
    }

    fn mac(&self, parts: &[&[u8]]) -> hmac::Tag {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.keys.as_slice()[32..]);
        let mut context = hmac::Context::with_key(&key);
        for part in parts {
            context.update(part);
        }
        context.sign()
    }

    fn nonce_len(&self) -> usize {
        match self.combo {
            CipherCombo::SivGcm => 12,
            CipherCombo::SivCtrMac => 16,
        }
    }

    fn tag_len(&self) -> usize {
        match self.combo {
            CipherCombo::SivGcm => 16,
            CipherCombo::SivCtrMac => 32,
        }
    }

    /// Bytes of an encrypted header (68 or 88).
    pub fn header_len(&self) -> usize {
        self.nonce_len() + PAYLOAD_LEN + self.tag_len()
    }

    /// Bytes a chunk adds to its clear text (28 or 48).
    pub fn chunk_overhead(&self) -> usize {
        self.nonce_len() + self.tag_len()
    }

    /// Bytes of a full encrypted chunk.
    pub fn sealed_chunk_len(&self) -> usize {
        CHUNK_SIZE + self.chunk_overhead()
    }

    /// A fresh header: a random nonce and content key.
    pub fn new_header(&self) -> FileHeader {
        let mut nonce = vec![0u8; self.nonce_len()];
        random_bytes(&mut nonce);
        let mut content_key = LockedBytes::zeroed(32);
        random_bytes(content_key.as_mut_slice());
        FileHeader { nonce, content_key }
    }

    /// The encrypted header.
    pub fn encrypt_header(&self, header: &FileHeader) -> Vec<u8> {
        let mut payload = Zeroizing::new(vec![0xFFu8; PAYLOAD_LEN]);
        payload[8..].copy_from_slice(header.content_key.as_slice());
        let mut out = header.nonce.clone();
        match self.combo {
            CipherCombo::SivGcm => {
                let nonce = Nonce::try_assume_unique_for_key(&header.nonce).expect("12 bytes");
                let tag = gcm_key(self.encryption_key())
                    .seal_in_place_separate_tag(nonce, Aad::empty(), &mut payload[..])
                    .expect("GCM sealing cannot fail");
                out.extend_from_slice(&payload);
                out.extend_from_slice(tag.as_ref());
            }
            CipherCombo::SivCtrMac => {
                ctr_apply(self.encryption_key(), &header.nonce, &mut payload[..]);
                out.extend_from_slice(&payload);
                let mac = self.mac(&[&out]);
                out.extend_from_slice(mac.as_ref());
            }
        }
        out
    }

    /// The header at the start of `sealed` (at least [`Self::header_len`] bytes); `path` names the file in
    /// errors.
    pub fn decrypt_header(&self, sealed: &[u8], path: &str) -> Result<FileHeader, CryptomatorError> {
        let header_len = self.header_len();
        if sealed.len() < header_len {
            return Err(CryptomatorError::malformed(
                path,
                format!("{} bytes, shorter than a file header ({header_len}): truncated", sealed.len()),
            ));
        }
        let nonce_len = self.nonce_len();
        let nonce = sealed[..nonce_len].to_vec();
        let mut payload = Zeroizing::new(sealed[nonce_len..nonce_len + PAYLOAD_LEN].to_vec());
        let tag = &sealed[nonce_len + PAYLOAD_LEN..header_len];
        let tampered = || CryptomatorError::tampered(path, "the file header");
        match self.combo {
            CipherCombo::SivGcm => {
                payload.extend_from_slice(tag);
                let gcm_nonce = Nonce::try_assume_unique_for_key(&nonce).expect("12 bytes");
                gcm_key(self.encryption_key())
                    .open_in_place(gcm_nonce, Aad::empty(), &mut payload[..])
                    .map_err(|_| tampered())?;
            }
            CipherCombo::SivCtrMac => {
                if !constant_time_eq(self.mac(&[&sealed[..nonce_len + PAYLOAD_LEN]]).as_ref(), tag) {
                    return Err(tampered());
                }
                ctr_apply(self.encryption_key(), &nonce, &mut payload[..PAYLOAD_LEN]);
            }
        }
        Ok(FileHeader { nonce, content_key: LockedBytes::from_slice(&payload[8..PAYLOAD_LEN]) })
    }

    /// Chunk `index` of a file (at most [`CHUNK_SIZE`] clear bytes), encrypted under a fresh nonce.
    pub fn encrypt_chunk(&self, header: &FileHeader, index: u64, clear: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(clear.len() + self.chunk_overhead());
        self.seal_chunk_into(header, index, clear, None, &mut out);
        out
    }

    /// Appends chunk `index` encrypted to `out`, in place: nonce (fresh, or `fixed_nonce`: drawn before, for
    /// [`Sealing`], or in tests), ciphertext, tag.
    fn seal_chunk_into(
        &self,
        header: &FileHeader,
        index: u64,
        clear: &[u8],
        fixed_nonce: Option<&[u8]>,
        out: &mut Vec<u8>,
    ) {
        debug_assert!(clear.len() <= CHUNK_SIZE);
        let nonce_start = out.len();
        match fixed_nonce {
            Some(nonce) => out.extend_from_slice(nonce),
            None => {
                out.resize(nonce_start + self.nonce_len(), 0);
                random_bytes(&mut out[nonce_start..]);
            }
        }
        let body_start = out.len();
        out.extend_from_slice(clear);
        let (head, body) = out.split_at_mut(body_start);
        let nonce = &head[nonce_start..];
        match self.combo {
            CipherCombo::SivGcm => {
                let aad = gcm_aad(index, &header.nonce);
                let gcm_nonce = Nonce::try_assume_unique_for_key(nonce).expect("12 bytes");
                let tag = gcm_key(header.content_key.as_slice())
                    .seal_in_place_separate_tag(gcm_nonce, Aad::from(&aad[..]), body)
                    .expect("GCM sealing cannot fail");
                out.extend_from_slice(tag.as_ref());
            }
            CipherCombo::SivCtrMac => {
                ctr_apply(header.content_key.as_slice(), nonce, body);
                let mac = self.mac(&[&header.nonce, &index.to_be_bytes(), &out[nonce_start..]]);
                out.extend_from_slice(mac.as_ref());
            }
        }
    }

    /// Chunk `index`, decrypted and authenticated; `path` names the file in errors.
    pub fn decrypt_chunk(
        &self,
        header: &FileHeader,
        index: u64,
        sealed: &[u8],
        path: &str,
    ) -> Result<Zeroizing<Vec<u8>>, CryptomatorError> {
        let mut out = Zeroizing::new(Vec::with_capacity(sealed.len()));
        self.open_chunk_into(header, index, sealed, path, &mut out)?;
        Ok(out)
    }

    /// Appends chunk `index`, authenticated and decrypted in place, to `out` (which grows without leaving
    /// copies of its clear text behind); on failure `out` is as it was.
    fn open_chunk_into(
        &self,
        header: &FileHeader,
        index: u64,
        sealed: &[u8],
        path: &str,
        out: &mut Vec<u8>,
    ) -> Result<(), CryptomatorError> {
        let (nonce_len, tag_len) = (self.nonce_len(), self.tag_len());
        if sealed.len() <= nonce_len + tag_len || sealed.len() > self.sealed_chunk_len() {
            return Err(CryptomatorError::malformed(path, format!("chunk {index} has {} bytes", sealed.len())));
        }
        let tampered = || CryptomatorError::tampered(path, format!("chunk {index}"));
        let nonce = &sealed[..nonce_len];
        reserve_wiping(out, sealed.len());
        let start = out.len();
        match self.combo {
            CipherCombo::SivGcm => {
                out.extend_from_slice(&sealed[nonce_len..]);
                let aad = gcm_aad(index, &header.nonce);
                let gcm_nonce = Nonce::try_assume_unique_for_key(nonce).expect("12 bytes");
                let opened = gcm_key(header.content_key.as_slice())
                    .open_in_place(gcm_nonce, Aad::from(&aad[..]), &mut out[start..])
                    .map(|clear| clear.len());
                match opened {
                    Ok(clear_len) => out.truncate(start + clear_len),
                    Err(_) => {
                        out[start..].zeroize();
                        out.truncate(start);
                        return Err(tampered());
                    }
                }
            }
            CipherCombo::SivCtrMac => {
                let (authenticated, tag) = sealed.split_at(sealed.len() - tag_len);
                let mac = self.mac(&[&header.nonce, &index.to_be_bytes(), authenticated]);
                if !constant_time_eq(mac.as_ref(), tag) {
                    return Err(tampered());
                }
                out.extend_from_slice(&authenticated[nonce_len..]);
                ctr_apply(header.content_key.as_slice(), nonce, &mut out[start..]);
            }
        }
        Ok(())
    }

    /// The clear size of a file of `sealed_size` bytes; `path` names it in errors.
    pub fn cleartext_size(&self, sealed_size: u64, path: &str) -> Result<u64, CryptomatorError> {
        let header_len = self.header_len() as u64;
        if sealed_size < header_len {
            return Err(CryptomatorError::malformed(path, format!("{sealed_size} bytes: shorter than a file header")));
        }
        let body = sealed_size - header_len;
        let full = self.sealed_chunk_len() as u64;
        let rest = body % full;
        if rest != 0 && rest <= self.chunk_overhead() as u64 {
            return Err(CryptomatorError::malformed(path, format!("{sealed_size} bytes: the last chunk is cut")));
        }
        Ok(body / full * CHUNK_SIZE as u64 + rest.saturating_sub(self.chunk_overhead() as u64))
    }

    /// The encrypted size of a file of `clear_size` bytes.
    pub fn ciphertext_size(&self, clear_size: u64) -> u64 {
        let chunks = clear_size.div_ceil(CHUNK_SIZE as u64);
        self.header_len() as u64 + clear_size + chunks * self.chunk_overhead() as u64
    }

    /// The chunks holding the clear bytes `range` (end exclusive, not empty) and where they are in the
    /// encrypted file: `(first chunk, encrypted byte range)`.
    pub fn chunks_of(&self, range: std::ops::Range<u64>) -> (u64, std::ops::Range<u64>) {
        let first = range.start / CHUNK_SIZE as u64;
        let last = (range.end.max(range.start + 1) - 1) / CHUNK_SIZE as u64;
        let full = self.sealed_chunk_len() as u64;
        let header = self.header_len() as u64;
        (first, header + first * full..header + (last + 1) * full)
    }

    /// A whole file, encrypted under a fresh header, chunk by chunk in place.
    pub fn encrypt_file(&self, clear: &[u8]) -> Vec<u8> {
        let header = self.new_header();
        let mut out = Vec::with_capacity(self.ciphertext_size(clear.len() as u64) as usize);
        out.extend_from_slice(&self.encrypt_header(&header));
        for (index, chunk) in clear.chunks(CHUNK_SIZE).enumerate() {
            self.seal_chunk_into(&header, index as u64, chunk, None, &mut out);
        }
        out
    }

    /// The encryption of one file of `clear_len` bytes, to be produced piece by piece while it is sent (see
    /// [`Sealing`]): a fresh header, and a fresh nonce for every chunk drawn now.
    pub fn sealing(self: &std::sync::Arc<Self>, clear_len: u64) -> Sealing {
        let header = self.new_header();
        let encrypted_header = self.encrypt_header(&header);
        let chunks = usize::try_from(clear_len.div_ceil(CHUNK_SIZE as u64)).unwrap_or(usize::MAX);
        let mut nonces = vec![0u8; chunks.saturating_mul(self.nonce_len())];
        random_bytes(&mut nonces);
        Sealing { cryptor: self.clone(), header, encrypted_header, nonces, clear_len }
    }

    /// A whole file, decrypted and authenticated chunk by chunk.
    pub fn decrypt_file(&self, sealed: &[u8], path: &str) -> Result<Zeroizing<Vec<u8>>, CryptomatorError> {
        let clear_size = self.cleartext_size(sealed.len() as u64, path)?;
        let header = self.decrypt_header(sealed, path)?;
        let mut out = Zeroizing::new(Vec::with_capacity(clear_size as usize));
        self.decrypt_chunks_into(&header, 0, &sealed[self.header_len()..], path, &mut out)?;
        Ok(out)
    }

    /// Consecutive encrypted chunks starting at chunk `first`, decrypted and appended to `out`.
    pub fn decrypt_chunks_into(
        &self,
        header: &FileHeader,
        first: u64,
        sealed_chunks: &[u8],
        path: &str,
        out: &mut Vec<u8>,
    ) -> Result<(), CryptomatorError> {
        reserve_wiping(out, sealed_chunks.len());
        for (offset, chunk) in sealed_chunks.chunks(self.sealed_chunk_len()).enumerate() {
            self.open_chunk_into(header, first + offset as u64, chunk, path, out)?;
        }
        Ok(())
    }
}

/// Makes room for `additional` more bytes in `buffer` (clear text): a larger buffer is allocated, the
/// contents moved over and the old one wiped, so that growing never leaves a copy in freed memory.
fn reserve_wiping(buffer: &mut Vec<u8>, additional: usize) {
    if buffer.capacity() - buffer.len() >= additional {
        return;
    }
    let mut larger = Vec::with_capacity((buffer.len() + additional).max(buffer.capacity() * 2));
    larger.extend_from_slice(buffer);
    buffer.zeroize();
    *buffer = larger;
}

fn gcm_aad(index: u64, header_nonce: &[u8]) -> Vec<u8> {
    let mut aad = index.to_be_bytes().to_vec();
    aad.extend_from_slice(header_nonce);
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file sealed in pieces decrypts to its clear text, for both combinations; producing the pieces again
    /// (a retried upload) gives the same bytes, and a new sealing of the same text different ones.
    #[test]
    fn a_file_sealed_in_pieces_decrypts_and_is_the_same_when_produced_again() {
        for cryptor in cryptors() {
            let cryptor = std::sync::Arc::new(cryptor);
            let clear: Vec<u8> = (0..(3 * CHUNK_SIZE + 1234)).map(|index| (index * 7 % 251) as u8).collect();
            let sealing = cryptor.sealing(clear.len() as u64);
            let produce = |sealing: &Sealing| {
                let mut sealed = sealing.header().to_vec();
                // Two chunks, then the rest: pieces of whole chunks, as an upload produces them.
                sealing.seal_chunks(0, &clear[..2 * CHUNK_SIZE], &mut sealed);
                sealing.seal_chunks(2, &clear[2 * CHUNK_SIZE..], &mut sealed);
                sealed
            };
            let sealed = produce(&sealing);
            assert_eq!(sealed.len() as u64, sealing.sealed_len());
            assert_eq!(*cryptor.decrypt_file(&sealed, "f").unwrap(), clear);
            assert_eq!(produce(&sealing), sealed, "{:?}: produced again, other bytes", cryptor.combo());
            assert_ne!(produce(&cryptor.sealing(clear.len() as u64)), sealed, "a new sealing reused a key");
            let empty = cryptor.sealing(0);
            assert_eq!(*cryptor.decrypt_file(empty.header(), "f").unwrap(), Vec::<u8>::new());
        }
    }

    fn cryptors() -> [ContentCryptor; 2] {
        let masterkey = Masterkey::from_parts(&[7; 32], &[9; 32]);
        [ContentCryptor::new(&masterkey, CipherCombo::SivGcm), ContentCryptor::new(&masterkey, CipherCombo::SivCtrMac)]
    }

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|index| (index * 31 % 251) as u8).collect()
    }

    #[test]
    fn sizes_follow_the_specification() {
        let [gcm, ctr] = cryptors();
        assert_eq!((gcm.header_len(), gcm.sealed_chunk_len()), (68, 32768 + 28));
        assert_eq!((ctr.header_len(), ctr.sealed_chunk_len()), (88, 32768 + 48));
        for cryptor in cryptors() {
            for len in [0usize, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 17] {
                let sealed = cryptor.encrypt_file(&sample(len));
                assert_eq!(sealed.len() as u64, cryptor.ciphertext_size(len as u64));
                assert_eq!(cryptor.cleartext_size(sealed.len() as u64, "f").unwrap(), len as u64);
                assert_eq!(&cryptor.decrypt_file(&sealed, "f").unwrap()[..], &sample(len)[..]);
            }
            let cut = cryptor.header_len() as u64 + cryptor.chunk_overhead() as u64;
            assert!(cryptor.cleartext_size(cut, "f").is_err(), "a chunk of overhead only is malformed");
        }
    }

    #[test]
    fn a_known_header_and_chunk_decrypt_to_their_values() {
        // Built by hand from the specification's formulas with fixed nonces and keys, independently of
        // encrypt_*: GCM header = nonce ‖ AES-GCM(0xFF*8 ‖ content key) under the encryption key.
        let masterkey = Masterkey::from_parts(&[7; 32], &[9; 32]);
        let cryptor = ContentCryptor::new(&masterkey, CipherCombo::SivGcm);
        let header_nonce = [3u8; 12];
        let content_key = [5u8; 32];
        let mut payload = vec![0xFF; 8];
        payload.extend_from_slice(&content_key);
        let tag = gcm_key(&[7; 32])
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(header_nonce), Aad::empty(), &mut payload)
            .unwrap();
        let mut sealed = header_nonce.to_vec();
        sealed.extend_from_slice(&payload);
        sealed.extend_from_slice(tag.as_ref());
        let mut chunk = b"hello".to_vec();
        let mut aad = 0u64.to_be_bytes().to_vec();
        aad.extend_from_slice(&header_nonce);
        let tag = gcm_key(&content_key)
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key([4; 12]), Aad::from(&aad[..]), &mut chunk)
            .unwrap();
        sealed.extend_from_slice(&[4; 12]);
        sealed.extend_from_slice(&chunk);
        sealed.extend_from_slice(tag.as_ref());
        assert_eq!(&cryptor.decrypt_file(&sealed, "f").unwrap()[..], b"hello");
    }

    /// Known answers computed independently (scripts/cryptomator-kat.py: pycryptodome's AES-GCM, AES-CTR and
    /// HMAC, following the specification) for fixed keys and nonces: encryption key 00..1f, MAC key 20..3f;
    /// a 40 000-byte file (byte i = 7i mod 256) in two chunks. SHA-256 of the whole encrypted file.
    #[test]
    fn fixed_nonces_give_the_independently_computed_files() {
        let masterkey = Masterkey::from_parts(
            &std::array::from_fn(|index| index as u8),
            &std::array::from_fn(|index| 32 + index as u8),
        );
        let clear: Vec<u8> = (0..40_000usize).map(|index| (index * 7 % 256) as u8).collect();
        let cases = [
            (
                CipherCombo::SivCtrMac,
                0x10,
                0x20,
                [0x30, 0x31],
                "fcde53c8fe41c465c08bd9f75557f964309648464db1ebbc7f7993b77c04a44c",
            ),
            (
                CipherCombo::SivGcm,
                0x40,
                0x50,
                [0x60, 0x61],
                "97532c86788e3d45175c7cbbb4314a5d20de359ca1f7c66b5208716b3473086b",
            ),
        ];
        for (combo, header_nonce, content_key, chunk_nonces, expected) in cases {
            let cryptor = ContentCryptor::new(&masterkey, combo);
            let header = FileHeader {
                nonce: vec![header_nonce; cryptor.nonce_len()],
                content_key: LockedBytes::from_slice(&[content_key; 32]),
            };
            let mut sealed = cryptor.encrypt_header(&header);
            for (index, (chunk, nonce)) in clear.chunks(CHUNK_SIZE).zip(chunk_nonces).enumerate() {
                let nonce = vec![nonce; cryptor.nonce_len()];
                cryptor.seal_chunk_into(&header, index as u64, chunk, Some(&nonce), &mut sealed);
            }
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &sealed);
            assert_eq!(hex::encode(digest.as_ref()), expected, "{combo:?}");
            assert_eq!(&cryptor.decrypt_file(&sealed, "kat").unwrap()[..], &clear[..]);
        }
    }

    #[test]
    fn tampering_is_an_error_never_plaintext() {
        for cryptor in cryptors() {
            let one = cryptor.encrypt_file(&sample(3 * CHUNK_SIZE));
            let other = cryptor.encrypt_file(&sample(3 * CHUNK_SIZE));
            let (header, chunk) = (cryptor.header_len(), cryptor.sealed_chunk_len());
            let expect_tamper = |bytes: &[u8], what: &str| {
                let error = cryptor.decrypt_file(bytes, "d/AB/CD/x.c9r").unwrap_err();
                assert!(matches!(error, CryptomatorError::Tampered { .. }), "{what}: {error}");
                assert!(error.to_string().contains("d/AB/CD/x.c9r"), "{error}");
            };
            // A flipped bit in a chunk.
            let mut flipped = one.clone();
            flipped[header + 40] ^= 1;
            expect_tamper(&flipped, "bit flip");
            // Chunks 0 and 1 swapped.
            let mut reordered = one.clone();
            let (first, second) =
                (one[header..header + chunk].to_vec(), one[header + chunk..header + 2 * chunk].to_vec());
            reordered[header..header + chunk].copy_from_slice(&second);
            reordered[header + chunk..header + 2 * chunk].copy_from_slice(&first);
            expect_tamper(&reordered, "reorder");
            // A chunk from another file.
            let mut swapped = one.clone();
            swapped[header..header + chunk].copy_from_slice(&other[header..header + chunk]);
            expect_tamper(&swapped, "chunk swap");
            // The header of another file.
            let mut header_swap = one.clone();
            header_swap[..header].copy_from_slice(&other[..header]);
            expect_tamper(&header_swap, "header swap");
            // A flipped bit in the header.
            let mut bad_header = one.clone();
            bad_header[header - 1] ^= 0x80;
            expect_tamper(&bad_header, "header bit");
            // Cut inside the last chunk.
            let cut = &one[..one.len() - 100];
            expect_tamper(cut, "cut in a chunk");
            // Cut into the header.
            assert!(matches!(cryptor.decrypt_file(&one[..header - 1], "f"), Err(CryptomatorError::Malformed { .. })));
            // Another vault's key.
            let foreign = ContentCryptor::new(&Masterkey::generate(), cryptor.combo());
            assert!(matches!(foreign.decrypt_file(&one, "f"), Err(CryptomatorError::Tampered { .. })));
            // The documented limit: cut at a chunk boundary, a file reads as shorter (docs/THREAT-MODEL.md).
            let at_boundary = &one[..header + 2 * chunk];
            assert_eq!(cryptor.decrypt_file(at_boundary, "f").unwrap().len(), 2 * CHUNK_SIZE);
        }
    }

    #[test]
    fn a_range_reads_only_its_chunks() {
        for cryptor in cryptors() {
            let clear = sample(5 * CHUNK_SIZE + 123);
            let sealed = cryptor.encrypt_file(&clear);
            let header = cryptor.decrypt_header(&sealed, "f").unwrap();
            let wanted = 2 * CHUNK_SIZE as u64 + 5..3 * CHUNK_SIZE as u64 + 7;
            let (first, sealed_range) = cryptor.chunks_of(wanted.clone());
            assert_eq!(first, 2);
            let end = (sealed_range.end as usize).min(sealed.len());
            let mut out = Vec::new();
            cryptor
                .decrypt_chunks_into(&header, first, &sealed[sealed_range.start as usize..end], "f", &mut out)
                .unwrap();
            let offset = (wanted.start - first * CHUNK_SIZE as u64) as usize;
            assert_eq!(
                &out[offset..offset + (wanted.end - wanted.start) as usize],
                &clear[wanted.start as usize..wanted.end as usize]
            );
        }
    }
}
