//! Round trips and bad input for everything the crypto layer produces.

use std::io::Read;
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::aes::Aes128;
use aes_gcm::{Aes128Gcm, AesGcm};
use cloakfs::crypto::file_cipher::{decrypt_to_vec, encrypt_buffer, encrypt_stream_with, FileCipherError, CHUNK_LEN};
use cloakfs::crypto::private_key_wrap::{unwrap_private_key, wrap_private_key, PrivateKeyKdf, PrivateKeyWrapError};
use cloakfs::crypto::server_name::{is_server_name, random_server_name};
use cloakfs::crypto::{FileKey, IdentityError, MetadataKey, Mnemonic, MnemonicError, Nonce, PrivateIdentity};
use proptest::prelude::*;

/// A reader that hands out data in pieces of varying size, to exercise chunk boundaries.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let count = self.data.len().min(buffer.len()).min(self.step);
        buffer[..count].copy_from_slice(&self.data[..count]);
        self.data = &self.data[count..];
        self.step = self.step % 7919 + 13;
        Ok(count)
    }
}

fn reference_seal(key: &FileKey, nonce: &Nonce, plaintext: &[u8]) -> Vec<u8> {
    match nonce.as_bytes().len() {
        12 => Aes128Gcm::new_from_slice(key.as_bytes())
            .unwrap()
            .encrypt(aes_gcm::Nonce::from_slice(nonce.as_bytes()), plaintext)
            .unwrap(),
        16 => AesGcm::<Aes128, aes_gcm::aead::consts::U16>::new_from_slice(key.as_bytes())
            .unwrap()
            .encrypt(aes_gcm::aead::generic_array::GenericArray::from_slice(nonce.as_bytes()), plaintext)
            .unwrap(),
        _ => unreachable!(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The streaming AWS-LC backend agrees with RustCrypto's one-shot AES-GCM for both nonce lengths,
    /// across chunk boundaries, in both directions.
    #[test]
    fn streaming_gcm_matches_rustcrypto(
        plaintext in proptest::collection::vec(any::<u8>(), 0..3000),
        extra_len in prop_oneof![Just(0usize), Just(CHUNK_LEN - 1), Just(CHUNK_LEN), Just(CHUNK_LEN + 17)],
        nonce_len in prop_oneof![Just(12usize), Just(16usize)],
        step in 1usize..5000,
    ) {
        let mut plaintext = plaintext;
        plaintext.extend(std::iter::repeat_n(0xA5u8, extra_len));
        let key = FileKey::generate();
        let nonce = Nonce::generate_with_len(nonce_len);
        let mut blob = Vec::new();
        let sealed = encrypt_stream_with(key.clone(), nonce.clone(), Trickle { data: &plaintext, step }, &mut blob).unwrap();
        prop_assert_eq!(&blob, &reference_seal(&key, &nonce, &plaintext));
        prop_assert_eq!(sealed.plaintext_len, plaintext.len() as u64);
        prop_assert_eq!(&sealed.tag[..], &blob[blob.len() - 16..]);
        let decrypted = decrypt_to_vec(&key, &nonce, Some(&sealed.tag), Trickle { data: &blob, step }).unwrap();
        prop_assert_eq!(decrypted.as_slice(), plaintext.as_slice());
    }

    /// Any single bit flip anywhere in a blob is detected.
    #[test]
    fn any_bit_flip_is_detected(len in 0usize..600, position in any::<usize>(), bit in 0u8..8) {
        let plaintext = vec![7u8; len];
        let (mut blob, sealed) = encrypt_buffer(&plaintext).unwrap();
        let index = position % blob.len();
        blob[index] ^= 1 << bit;
        let result = decrypt_to_vec(&sealed.key, &sealed.nonce, None, blob.as_slice());
        prop_assert!(matches!(result, Err(FileCipherError::Authentication(_))));
    }
}

#[test]
fn truncated_empty_and_wrong_key_blobs_fail_cleanly() {
    let (blob, sealed) = encrypt_buffer(b"some plaintext").unwrap();
    for cut in [0, 1, 15] {
        let result = decrypt_to_vec(&sealed.key, &sealed.nonce, None, &blob[..cut]);
        assert!(matches!(result, Err(FileCipherError::Truncated { .. })), "cut {cut}: {result:?}");
    }
    let result = decrypt_to_vec(&sealed.key, &sealed.nonce, None, &blob[..blob.len() - 1]);
    assert!(matches!(result, Err(FileCipherError::Authentication(_))));
    let result = decrypt_to_vec(&FileKey::generate(), &sealed.nonce, None, blob.as_slice());
    assert!(matches!(result, Err(FileCipherError::Authentication(_))));
    let result = decrypt_to_vec(&sealed.key, &Nonce::generate(), None, blob.as_slice());
    assert!(matches!(result, Err(FileCipherError::Authentication(_))));
    // An empty file is a 16-byte blob holding only the tag.
    let (empty_blob, empty) = encrypt_buffer(b"").unwrap();
    assert_eq!(empty_blob.len(), 16);
    assert!(decrypt_to_vec(&empty.key, &empty.nonce, Some(&empty.tag), empty_blob.as_slice()).unwrap().is_empty());
}

#[test]
fn generated_mnemonics_have_a_checksum_and_catch_a_typo() {
    let mnemonic = Mnemonic::generate();
    assert!(mnemonic.has_valid_checksum());
    let phrase = mnemonic.phrase();
    assert_eq!(phrase.split(' ').count(), 12);
    let reparsed = Mnemonic::parse(&phrase.to_uppercase()).unwrap();
    assert_eq!(*reparsed.kdf_password(), *mnemonic.kdf_password());
    assert!(!format!("{mnemonic:?}").contains(phrase.split(' ').next().unwrap()), "Debug must not show words");
    // The standard BIP-39 test phrase has a valid checksum; the same words with the last one changed do not.
    let valid = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
    assert!(Mnemonic::parse(valid).unwrap().has_valid_checksum());
    let typo = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon";
    let parsed = Mnemonic::parse(typo).unwrap();
    assert!(!parsed.has_valid_checksum(), "checksum-less phrases parse but are flagged");
}

#[test]
fn mnemonic_input_errors_are_precise() {
    assert_eq!(Mnemonic::parse("abandon ability").unwrap_err(), MnemonicError::WordCount(2));
    let unknown = "abandon ability able about above absent absorb abstract absurd abuse access xyzzy";
    assert_eq!(Mnemonic::parse(unknown).unwrap_err(), MnemonicError::UnknownWord { position: 12 });
    let ambiguous = "aba ability able about above absent absorb abstract absurd abuse access accident";
    assert_eq!(Mnemonic::parse(ambiguous).unwrap_err(), MnemonicError::AmbiguousWord { position: 1 });
    let prefixes = "aban abil able abou abov abse abso abst absu abus acce acci";
    let full = "abandon ability able about above absent absorb abstract absurd abuse access accident";
    assert_eq!(*Mnemonic::parse(prefixes).unwrap().kdf_password(), *Mnemonic::parse(full).unwrap().kdf_password());
    assert_eq!(&*Mnemonic::parse(full).unwrap().kdf_password(), &full.replace(' ', ""));
}

#[test]
fn private_key_wrap_round_trips_in_the_exact_server_format() {
    let identity = PrivateIdentity::generate().unwrap();
    let mnemonic = Mnemonic::generate();
    let stored = wrap_private_key(&identity, &mnemonic);
    let parts: Vec<&str> = stored.split('|').collect();
    assert_eq!(parts.len(), 3);
    use base64::Engine as _;
    let decode = |text: &str| base64::engine::general_purpose::STANDARD.decode(text).unwrap();
    assert_eq!(decode(parts[1]).len(), 12, "the server accepts only 12-byte IVs");
    assert_eq!(decode(parts[2]).len(), 40, "the server accepts only 40-byte salts");
    let (unwrapped, kdf) = unwrap_private_key(&stored, &mnemonic).unwrap();
    assert_eq!(kdf, PrivateKeyKdf::Sha256Iter600k);
    assert_eq!(*unwrapped.to_pkcs8_pem(), *identity.to_pkcs8_pem());
    assert!(matches!(unwrap_private_key(&stored, &Mnemonic::generate()), Err(PrivateKeyWrapError::WrongMnemonic)));
    for malformed in ["", "abc", "a|b", "!!!|AAAAAAAAAAAAAAAA|AAAA", &format!("{}|{}", parts[0], parts[1])] {
        let result = unwrap_private_key(malformed, &mnemonic);
        assert!(matches!(result, Err(PrivateKeyWrapError::Malformed(_))), "{malformed:?}: {result:?}");
    }
}

#[test]
fn csr_to_certificate_round_trip_with_nextcloud_shape() {
    let server = PrivateIdentity::generate().unwrap();
    let alice = PrivateIdentity::generate().unwrap();
    let request = alice.certificate_request_pem("alice@example.org").unwrap();
    assert!(request.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
    let certificate =
        server.issue_certificate(&request, "alice@example.org", Duration::from_secs(7300 * 86400)).unwrap();
    certificate.verify_for_user(server.public_key(), "alice@example.org").unwrap();
    assert!(alice.matches_certificate(&certificate));
    // The server key survives PEM (what `/server-key` serves) and still verifies the certificate.
    let server_key = cloakfs::crypto::PublicKey::from_pem(&server.public_key().to_pem()).unwrap();
    assert_eq!(&server_key, server.public_key());
    certificate.verify_issued_by(&server_key).unwrap();
    let tbs = &certificate.certificate().tbs_certificate;
    assert_eq!(tbs.issuer, tbs.subject);
    assert_eq!(tbs.serial_number.as_bytes(), &[0]);
    // Re-parsing the PEM gives the same certificate.
    let reparsed = cloakfs::crypto::UserCertificate::from_pem(&certificate.to_pem()).unwrap();
    assert_eq!(reparsed, certificate);
    // A request for another user id, or one whose signature is broken, is refused.
    assert!(matches!(
        server.issue_certificate(&request, "bob", Duration::from_secs(60)),
        Err(IdentityError::WrongSubject { .. })
    ));
    let mallory = PrivateIdentity::generate().unwrap();
    assert!(matches!(
        certificate.verify_issued_by(mallory.public_key()),
        Err(IdentityError::CertificateNotIssuedByServer { .. })
    ));
    assert!(server
        .issue_certificate(
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----",
            "alice",
            Duration::from_secs(60)
        )
        .is_err());
}

#[test]
fn metadata_keys_wrap_to_certificates_and_only_the_holder_unwraps() {
    let server = PrivateIdentity::generate().unwrap();
    let alice = PrivateIdentity::generate().unwrap();
    let bob = PrivateIdentity::generate().unwrap();
    let certificate = server
        .issue_certificate(&alice.certificate_request_pem("alice").unwrap(), "alice", Duration::from_secs(60))
        .unwrap();
    let key = MetadataKey::generate();
    let wrapped = certificate.public_key().wrap_metadata_key(&key).unwrap();
    assert_eq!(wrapped.len(), 256);
    assert_eq!(alice.unwrap_metadata_key(&wrapped).unwrap(), key);
    assert!(matches!(bob.unwrap_metadata_key(&wrapped), Err(IdentityError::UnwrapFailed)));
    let mut altered = wrapped.clone();
    altered[100] ^= 4;
    assert!(alice.unwrap_metadata_key(&altered).is_err());
    assert!(alice.unwrap_metadata_key(&[]).is_err());
    // Something that is not a 16-byte key is refused even when it decrypts.
    let long = certificate.public_key().oaep_encrypt(&[1u8; 32]).unwrap();
    assert!(matches!(alice.unwrap_metadata_key(&long), Err(IdentityError::WrongKeyLength(32))));
    assert!(!format!("{key:?}").contains(&key.sha256_hex()[..8]));
}

#[test]
fn server_names_are_random_uuid4_hex() {
    let first = random_server_name();
    let second = random_server_name();
    assert_ne!(first, second);
    for name in [&first, &second] {
        assert!(is_server_name(name));
        assert_eq!(name.len(), 32);
        assert!(name.bytes().all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte)));
        assert_eq!(&name[12..13], "4", "version nibble");
        assert!("89ab".contains(&name[16..17]), "variant nibble");
    }
    for bad in [
        "",
        "../etc/passwd",
        "ad3b12554e0d4364854ae3e21b17015",
        "ad3b12554e0d4364854ae3e21b170152.e2e-to-save",
        "zz3b12554e0d4364854ae3e21b170152",
    ] {
        assert!(!is_server_name(bad), "{bad}");
    }
}

/// A sink that records what happened to it.
#[derive(Default)]
struct RecordingSink {
    bytes: Vec<u8>,
    committed: bool,
    discarded: bool,
}

impl cloakfs::crypto::file_cipher::PlaintextSink for RecordingSink {
    fn write_unverified(&mut self, plaintext: &[u8]) -> std::io::Result<()> {
        self.bytes.extend_from_slice(plaintext);
        Ok(())
    }
    fn commit(&mut self) -> std::io::Result<()> {
        self.committed = true;
        Ok(())
    }
    fn discard(&mut self) {
        self.bytes.clear();
        self.discarded = true;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Feeding a blob in arbitrary pieces (as an HTTP body arrives) gives the plaintext, committed once;
    /// a tampered blob is discarded and never committed.
    #[test]
    fn blob_decryptor_handles_any_piece_sizes(
        len in 0usize..70_000,
        cuts in proptest::collection::vec(0usize..70_016, 0..12),
        tamper in any::<bool>(),
    ) {
        use cloakfs::crypto::file_cipher::BlobDecryptor;
        let plaintext: Vec<u8> = (0..len).map(|index| (index * 31 % 251) as u8).collect();
        let (mut blob, sealed) = encrypt_buffer(&plaintext).unwrap();
        if tamper {
            let index = len / 2;
            blob[index] ^= 0x80;
        }
        let mut cuts: Vec<usize> = cuts.into_iter().map(|cut| cut.min(blob.len())).collect();
        cuts.push(0);
        cuts.push(blob.len());
        cuts.sort_unstable();
        let mut sink = RecordingSink::default();
        let mut decryptor = BlobDecryptor::new(&sealed.key, &sealed.nonce, Some(&sealed.tag)).unwrap();
        let mut failed = false;
        for window in cuts.windows(2) {
            if decryptor.feed(&blob[window[0]..window[1]], &mut sink).is_err() {
                failed = true;
                break;
            }
        }
        let result = if failed { None } else { Some(decryptor.finish(&mut sink)) };
        if tamper {
            prop_assert!(matches!(result, Some(Err(_))));
            prop_assert!(sink.discarded && !sink.committed && sink.bytes.is_empty());
        } else {
            prop_assert_eq!(result.unwrap().unwrap(), len as u64);
            prop_assert!(sink.committed && !sink.discarded);
            prop_assert_eq!(sink.bytes, plaintext);
        }
    }
}
