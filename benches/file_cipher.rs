//! File-content encryption and decryption throughput, side by side with `openssl speed` on this machine.
//!
//! Run with `scripts/bench-crypto.sh` (or `cargo bench --bench file_cipher`). Measures cloakfs's streaming
//! API (what the mount and the CLI use) on a 64 MiB buffer, for the 12-byte nonces cloakfs writes and the
//! 16-byte nonces of Nextcloud's desktop and mobile clients, then runs `openssl speed -evp aes-128-gcm`
//! (encrypt and `-decrypt`) and prints the ratios. This is a benchmark, not a test: it asserts nothing.

use std::process::Command;
use std::time::{Duration, Instant};

use cloakfs::crypto::file_cipher::{
    decrypt_stream, encrypt_buffer_into, encrypt_stream_with, BlobDecryptor, PlaintextSink,
};
use cloakfs::crypto::{FileKey, Nonce};

const BUFFER_LEN: usize = 64 << 20;
const MIN_TIME: Duration = Duration::from_secs(3);

/// Like the mount's cache: decrypted bytes land in a preallocated buffer.
struct PreallocatedSink {
    buffer: Vec<u8>,
}

impl PlaintextSink for PreallocatedSink {
    fn write_unverified(&mut self, plaintext: &[u8]) -> std::io::Result<()> {
        self.buffer.extend_from_slice(plaintext);
        Ok(())
    }
    fn commit(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    fn discard(&mut self) {
        self.buffer.clear();
    }
}

fn gib_per_second(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64() / f64::from(1u32 << 30)
}

fn measure(mut run: impl FnMut()) -> f64 {
    run(); // warm up: page faults, CPU frequency
    let started = Instant::now();
    let mut rounds = 0u64;
    while started.elapsed() < MIN_TIME {
        run();
        rounds += 1;
    }
    gib_per_second(rounds * BUFFER_LEN as u64, started.elapsed())
}

/// Throughput of the in-memory path the mount uses: a dirty RAM buffer encrypted straight into the upload
/// blob, and a download fed piece by piece (64 KiB, like HTTP body frames) into the plaintext cache.
fn in_memory_throughput(nonce_len: usize) -> (f64, f64) {
    let plaintext = vec![0x5au8; BUFFER_LEN];
    let mut upload = Vec::with_capacity(BUFFER_LEN + 16);
    let encrypt = measure(|| {
        encrypt_buffer_into(&plaintext, &mut upload).unwrap();
    });
    // Decrypt a blob with the requested nonce length (encrypt_buffer writes 12-byte nonces).
    let key = FileKey::generate();
    let nonce = Nonce::generate_with_len(nonce_len);
    let mut blob = Vec::with_capacity(BUFFER_LEN + 16);
    encrypt_stream_with(key.clone(), nonce.clone(), plaintext.as_slice(), &mut blob).unwrap();
    let mut sink = PreallocatedSink { buffer: Vec::with_capacity(BUFFER_LEN) };
    let decrypt = measure(|| {
        sink.buffer.clear();
        let mut decryptor = BlobDecryptor::new(&key, &nonce, None).unwrap();
        for piece in blob.chunks(64 * 1024) {
            decryptor.feed(piece, &mut sink).unwrap();
        }
        decryptor.finish(&mut sink).unwrap();
    });
    assert_eq!(sink.buffer, plaintext);
    (encrypt, decrypt)
}

/// Throughput of the `Read`/`Write` streaming API (bounded memory, one extra copy each way).
fn streaming_throughput(nonce_len: usize) -> (f64, f64) {
    let plaintext = vec![0x5au8; BUFFER_LEN];
    let key = FileKey::generate();
    let nonce = Nonce::generate_with_len(nonce_len);
    let mut blob = Vec::with_capacity(BUFFER_LEN + 16);
    let encrypt = measure(|| {
        blob.clear();
        encrypt_stream_with(key.clone(), nonce.clone(), plaintext.as_slice(), &mut blob).unwrap();
    });
    let mut sink = PreallocatedSink { buffer: Vec::with_capacity(BUFFER_LEN) };
    let decrypt = measure(|| {
        sink.buffer.clear();
        decrypt_stream(&key, &nonce, None, blob.as_slice(), &mut sink).unwrap();
    });
    assert_eq!(sink.buffer, plaintext);
    (encrypt, decrypt)
}

/// `openssl speed -evp aes-128-gcm -bytes 16384` (its largest default block), in GiB/s.
fn openssl_throughput(decrypt: bool) -> Option<f64> {
    let mut command = Command::new("openssl");
    command.args(["speed", "-evp", "aes-128-gcm", "-bytes", "16384", "-seconds", "3"]);
    if decrypt {
        command.arg("-decrypt");
    }
    let output = command.output().ok()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The result line: "AES-128-GCM   1234567.89k" (1000s of bytes per second).
    let line = stdout.lines().rev().find(|line| line.to_ascii_lowercase().starts_with("aes-128-gcm"))?;
    let kilobytes: f64 = line.split_whitespace().last()?.trim_end_matches('k').parse().ok()?;
    Some(kilobytes * 1000.0 / f64::from(1u32 << 30))
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return; // `cargo test --benches` lists benchmarks; nothing to list here.
    }
    println!("file_cipher benchmark: {} MiB buffer, >= {:?} per measurement", BUFFER_LEN >> 20, MIN_TIME);
    let in_memory12 = in_memory_throughput(12);
    let in_memory16 = in_memory_throughput(16);
    let streaming12 = streaming_throughput(12);
    let streaming16 = streaming_throughput(16);
    let ceiling = {
        let mut buffer = vec![0x5au8; BUFFER_LEN];
        let key = FileKey::generate();
        let nonce = Nonce::generate();
        measure(|| {
            let mut encryptor = cloakfs::crypto::gcm::GcmEncryptor::new(key.as_bytes(), nonce.as_bytes()).unwrap();
            encryptor.update_in_place(&mut buffer).unwrap();
            encryptor.finish().unwrap();
        })
    };
    let openssl_encrypt = openssl_throughput(false);
    let openssl_decrypt = openssl_throughput(true);
    let ratio =
        |ours: f64, theirs: Option<f64>| theirs.map_or("n/a (no openssl)".to_owned(), |t| format!("{:.2}x", ours / t));
    println!("{:<58} {:>7} {:>11}", "measurement", "GiB/s", "vs openssl");
    let rows = [
        ("encrypt buffer -> blob, 12-byte nonce (what cloakfs writes)", in_memory12.0, openssl_encrypt),
        ("decrypt 64 KiB pieces -> cache, 12-byte nonce", in_memory12.1, openssl_decrypt),
        ("decrypt 64 KiB pieces -> cache, 16-byte nonce (desktop)", in_memory16.1, openssl_decrypt),
        ("Read/Write stream encrypt, 12-byte nonce", streaming12.0, openssl_encrypt),
        ("Read/Write stream decrypt, 12-byte nonce", streaming12.1, openssl_decrypt),
        ("Read/Write stream encrypt, 16-byte nonce", streaming16.0, openssl_encrypt),
        ("Read/Write stream decrypt, 16-byte nonce", streaming16.1, openssl_decrypt),
        ("AWS-LC in place, no copies (ceiling)", ceiling, openssl_encrypt),
    ];
    for (name, value, peer) in rows {
        println!("{:<58} {:>7.2} {:>11}", name, value, ratio(value, peer));
    }
    let _ = in_memory16.0; // same code path as 12-byte encryption; cloakfs never writes 16-byte nonces
    if let (Some(encrypt), Some(decrypt)) = (openssl_encrypt, openssl_decrypt) {
        println!("{:<58} {:>7.2}", "openssl speed -evp aes-128-gcm -bytes 16384", encrypt);
        println!("{:<58} {:>7.2}", "openssl speed -evp aes-128-gcm -bytes 16384 -decrypt", decrypt);
    }
}
