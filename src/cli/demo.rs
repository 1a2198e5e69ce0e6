//! `cloakfs demo`: the format end to end on a local, throw-away server directory.
//!
//! Until `cloakfs serve` exists, this is what the README's first command runs. It does exactly what a
//! client and a server do with Nextcloud's format, with the server's storage being a directory: only
//! ciphertext and random ids are written there, and the directory is removed afterwards unless `--keep`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use zeroize::Zeroizing;

use crate::crypto::file_cipher::{decrypt_to_vec, encrypt_buffer};
use crate::crypto::private_key_wrap::{unwrap_private_key, wrap_private_key};
use crate::crypto::server_name::random_server_name;
use crate::crypto::{MetadataKey, Mnemonic, PrivateIdentity, UserCertificate};
use crate::metadata::{
    decode_top_folder, encode_top_folder, FileEntry, FolderMetadata, Reader, ServerKeyTrust, Signer, TrustedUser,
};

/// Options of `cloakfs demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Keep the server directory here instead of a temporary one that is removed at the end.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
    /// The user id to create.
    #[arg(long, default_value = "alice")]
    pub user: String,
}

const SAMPLE_FILES: [(&str, &str, &[u8]); 3] = [
    ("passport-scan.txt", "text/plain", b"P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\n"),
    ("travel plan.md", "text/markdown", b"# Trip\n- fly out Monday\n- meet the lawyer Tuesday\n"),
    ("empty.bin", "application/octet-stream", b""),
];

/// Runs the demonstration.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let temporary;
    let server_dir: &Path = match &args.keep {
        Some(dir) => {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir
        }
        None => {
            temporary = TempDir::new()?;
            &temporary.0
        }
    };
    println!("server storage (ciphertext only): {}", server_dir.display());

    // --- Server identity, and the user's key pair, certificate and mnemonic (what `keys init` will do).
    let started = Instant::now();
    let server = PrivateIdentity::generate()?;
    let user = PrivateIdentity::generate()?;
    let request = user.certificate_request_pem(&args.user)?;
    let certificate = server.issue_certificate(&request, &args.user, Duration::from_secs(7300 * 86_400))?;
    certificate.verify_for_user(server.public_key(), &args.user)?;
    let mnemonic = Mnemonic::generate();
    let stored_private_key = wrap_private_key(&user, &mnemonic);
    fs::write(server_dir.join("private-key"), &stored_private_key)?;
    fs::write(server_dir.join("certificate.pem"), certificate.to_pem())?;
    println!(
        "1. keys: RSA-2048 for {:?}, certificate signed by the server key {}",
        args.user,
        &server.public_key().fingerprint()[..16]
    );
    println!("   mnemonic (shown once; never written anywhere): {}", &*mnemonic.phrase());

    // --- Encrypt files under fresh keys, and the folder metadata under the metadata key.
    let metadata_key = MetadataKey::generate();
    let mut folder = FolderMetadata { counter: 1, ..Default::default() };
    for (name, mimetype, content) in SAMPLE_FILES {
        let (blob, sealed) = encrypt_buffer(content)?;
        let uid = random_server_name();
        fs::write(server_dir.join(&uid), &blob)?;
        folder.files.insert(
            uid,
            FileEntry {
                filename: Zeroizing::new(name.into()),
                mimetype: mimetype.into(),
                key: sealed.key,
                nonce: sealed.nonce,
                authentication_tag: sealed.tag,
                unknown: Default::default(),
            },
        );
    }
    let subfolder_uid = random_server_name();
    fs::create_dir(server_dir.join(&subfolder_uid))?;
    folder.folders.insert(subfolder_uid, Zeroizing::new("Tax 2026".into()));
    let users = [TrustedUser { user_id: args.user.clone(), certificate: certificate.clone() }];
    let encoded =
        encode_top_folder(&folder, &metadata_key, &users, None, Signer { identity: &user, certificate: &certificate })?;
    fs::write(server_dir.join("metadata.json"), &encoded.json)?;
    fs::write(server_dir.join("metadata.signature"), &encoded.signature_base64)?;
    drop((user, folder, metadata_key));
    println!("2. encrypted {} files and 1 folder; metadata signed (CMS) and written", SAMPLE_FILES.len());

    // --- A second device: only the mnemonic, the server key and what the server stores.
    let typed = Mnemonic::parse(&mnemonic.phrase())?;
    let stored = fs::read_to_string(server_dir.join("private-key"))?;
    let (device_key, kdf) = unwrap_private_key(&stored, &typed)?;
    let device_certificate = UserCertificate::from_pem(&fs::read_to_string(server_dir.join("certificate.pem"))?)?;
    if !device_key.matches_certificate(&device_certificate) {
        bail!("the unwrapped private key does not match the certificate");
    }
    let trust = ServerKeyTrust { server_key: server.public_key() };
    let top = decode_top_folder(
        &fs::read_to_string(server_dir.join("metadata.json"))?,
        &fs::read_to_string(server_dir.join("metadata.signature"))?,
        Reader { user_id: &args.user, identity: &device_key },
        &trust,
        Some(1),
    )?;
    println!("3. second device: private key unwrapped with the mnemonic ({kdf:?}), metadata verified (signed by {:?}, counter {})",
        top.decoded.signed_by, top.decoded.folder.counter);
    println!();
    println!("   {:<34} {:>6}   you see", "server sees", "bytes");
    for (uid, entry) in &top.decoded.folder.files {
        let blob = fs::read(server_dir.join(uid))?;
        let plaintext = decrypt_to_vec(&entry.key, &entry.nonce, Some(&entry.authentication_tag), blob.as_slice())?;
        let expected = SAMPLE_FILES.iter().find(|(name, _, _)| *name == entry.filename.as_str()).map(|(_, _, c)| *c);
        if expected != Some(plaintext.as_slice()) {
            bail!("file {uid} did not decrypt to what was written");
        }
        println!("   {:<34} {:>6}   {} ({} bytes, verified)", uid, blob.len(), &*entry.filename, plaintext.len());
    }
    for (uid, name) in &top.decoded.folder.folders {
        println!("   {:<34} {:>6}   {}/", format!("{uid}/"), "-", &**name);
    }

    // --- The server flips one bit of one blob: the read fails, no plaintext comes out.
    let (uid, entry) = top
        .decoded
        .folder
        .files
        .iter()
        .find(|(uid, _)| fs::metadata(server_dir.join(uid)).map(|meta| meta.len() > 16).unwrap_or(false))
        .context("no non-empty file")?;
    let mut tampered = fs::read(server_dir.join(uid))?;
    tampered[0] ^= 1;
    match decrypt_to_vec(&entry.key, &entry.nonce, Some(&entry.authentication_tag), tampered.as_slice()) {
        Err(error) => println!("\n4. a server that flips one bit of {uid} is caught: {error}"),
        Ok(_) => bail!("tampering was not detected"),
    }
    println!(
        "\ndone in {:.1?}; the server directory holds {} entries, none of them a clear name or key",
        started.elapsed(),
        fs::read_dir(server_dir)?.count()
    );
    Ok(())
}

/// A private temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("cloakfs-demo-{}", random_server_name()));
        fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
