//! `cloakfs demo`: the whole product path against an embedded server it starts itself.
//!
//! It starts `cloakfs serve` in-process on a free loopback port over a temporary data directory, then acts
//! as a user's devices over HTTP with the real client: keys and mnemonic, a new end-to-end encrypted
//! folder, files and a sub-folder, listing and reading back on a "second device" that unlocks with the
//! mnemonic, what the server stores, and a tampered blob being refused. The data directory is removed at
//! the end unless `--keep`; client state (pins) lives in a temporary directory too.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use zeroize::Zeroizing;

use super::common::runtime;
#[cfg(any(target_os = "linux", target_os = "macos"))]
use crate::format::nextcloud::NextcloudFormat;
#[cfg(any(target_os = "linux", target_os = "macos"))]
use crate::mount::{self, MountInfo};
use crate::server::{self, ServeOptions};
use crate::session::{initialize_keys, unlock};
use crate::storage::{E2eeApi as _, NextcloudClient, ServerConfig};
use crate::trust::TrustStore;
use crate::vault::Vault;
#[cfg(any(target_os = "linux", target_os = "macos"))]
use crate::vfs::{Vfs, VfsOptions};

/// Writes a line to stdout; a failed write (a closed terminal, a pipe whose reader is gone) is ignored, so
/// that the demo's Ctrl-C ending still uploads and unmounts wherever its output went.
macro_rules! out {
    () => {
        out!("")
    };
    ($($argument:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($argument)*);
    }};
}

/// Options of `cloakfs demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Keep the server's data directory here instead of a temporary one that is removed at the end.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
    /// The user id to create.
    #[arg(long, default_value = "alice")]
    pub user: String,
    /// Mount the demo's encrypted folder here (created if missing) and keep serving until Ctrl-C, instead of
    /// ending with the tamper demonstration.
    pub mountpoint: Option<PathBuf>,
}

const SAMPLE_FILES: [(&str, &[u8]); 3] = [
    ("/Vault/passport-scan.txt", b"P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\n"),
    ("/Vault/Tax 2026/travel plan.md", b"# Trip\n- fly out Monday\n- meet the lawyer Tuesday\n"),
    ("/Vault/empty.bin", b""),
];

/// Runs the demonstration.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let temporary_data;
    let data_dir: &Path = match &args.keep {
        Some(dir) => {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir
        }
        None => {
            temporary_data = TempDir::new("server")?;
            &temporary_data.0
        }
    };
    let client_state = TempDir::new("client")?;
    out!("embedded server data (ciphertext only): {}", data_dir.display());

    let runtime = runtime()?;
    let options = ServeOptions {
        data_dir: data_dir.to_owned(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        lock_ttl_seconds: 86_400,
        quota_bytes: None,
    };
    let state = server::open_state(&options)?;
    let app_password = {
        let mut password = [0u8; 24];
        crate::crypto::secret::random_bytes(&mut password);
        let password = hex::encode(password);
        match state.store.add_user(&args.user, &password) {
            Ok(()) | Err(server::store::StoreError::UserExists(_)) => {}
            Err(error) => return Err(error.into()),
        }
        Zeroizing::new(state.store.create_app_password(&args.user, "demo")?)
    };
    let address = runtime.block_on(async {
        let listener = server::bind(options.listen).await?;
        let address = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(server::no_delay(listener), server::router(state)).await });
        anyhow::Ok(address)
    })?;
    out!("1. started cloakfs serve on http://{address} with user {:?} (app password)", args.user);

    let client = |user: &str| {
        NextcloudClient::new(ServerConfig {
            base_url: url::Url::parse(&format!("http://{address}/")).expect("a valid URL"),
            user: user.to_owned(),
            password: app_password.clone(),
            timeout: Duration::from_secs(30),
            allow_insecure_http: false,
        })
    };
    let pins = client_state.0.join("pins.json");
    let started = Instant::now();
    let mnemonic = {
        let mut trust = TrustStore::load(&pins)?;
        let (session, mnemonic) = runtime.block_on(initialize_keys(client(&args.user)?, &mut trust))?;
        out!(
            "2. keys: RSA-2048 key pair, certificate {} signed by the server key {} (both pinned)",
            &session.certificate.fingerprint()[..16],
            &session.server_key.fingerprint()[..16]
        );
        out!("   mnemonic (shown once; never written anywhere): {}", &*mnemonic.phrase());
        mnemonic
    };

    // A "second device": unlock with the mnemonic alone, then work in a new encrypted folder.
    let mut trust = TrustStore::load(&pins)?;
    let session = runtime.block_on(unlock(client(&args.user)?, &mut trust, &mnemonic))?;
    out!("3. second device: private key unwrapped with the mnemonic ({:?})", session.kdf);
    let (remote, parts) = session.into_parts();
    let vault = Vault::new(remote.clone(), format!("http://{address}"), parts, trust);
    runtime.block_on(async {
        vault.create_encrypted_folder("/Vault").await?;
        vault.make_folder("/Vault/Tax 2026").await?;
        for (path, content) in SAMPLE_FILES {
            vault.write_file(path, content).await?;
        }
        anyhow::Ok(())
    })?;
    out!(
        "4. created /Vault (end-to-end encrypted), /Vault/Tax 2026 and {} files, each under the folder lock",
        SAMPLE_FILES.len()
    );

    out!();
    out!("   {:<34} {:>6}   you see", "server sees", "bytes");
    let mut tamper_target = None;
    for folder in ["/Vault", "/Vault/Tax 2026"] {
        let listing = runtime.block_on(vault.list(folder))?;
        for entry in listing {
            let clear_path = format!("{folder}/{}", entry.name.as_str());
            if entry.is_dir {
                out!("   {:<34} {:>6}   {clear_path}/", "(random id)/", "-");
                continue;
            }
            let plaintext = runtime.block_on(vault.read_file(&clear_path, None))?;
            out!(
                "   {:<34} {:>6}   {} ({} bytes, verified)",
                "(random id)",
                plaintext.len() + 16,
                entry.name.as_str(),
                plaintext.len()
            );
            if clear_path.ends_with("passport-scan.txt") {
                tamper_target = Some(clear_path);
            }
        }
    }
    let server_names = runtime.block_on(remote.list_detailed(&["Vault".to_owned()], 1))?;
    out!();
    out!("   the server's listing of /Vault (names are random ids; sizes are ciphertext):");
    for entry in server_names.iter().skip(1) {
        out!("     {}{}  {} bytes", entry.name, if entry.is_dir { "/" } else { "" }, entry.size);
    }

    if let Some(mountpoint) = &args.mountpoint {
        return mount_demo(&runtime, vault, mountpoint, address, &args.user);
    }

    // The server flips one bit in every blob it stores: reading must fail, showing nothing.
    for blob in files_below(&data_dir.join("blobs")) {
        let mut bytes = fs::read(&blob)?;
        if let Some(first) = bytes.first_mut() {
            *first ^= 1;
            fs::write(&blob, &bytes)?;
        }
    }
    if let Some(path) = tamper_target {
        match runtime.block_on(vault.read_file(&path, None)) {
            Ok(_) => anyhow::bail!("a tampered blob was accepted"),
            Err(error) => out!("\n5. a server that flips one bit of passport-scan.txt's blob is caught: {error}"),
        }
    }
    out!(
        "\ndone in {:.1} s; the server stored only ciphertext, random ids and signed, encrypted metadata",
        started.elapsed().as_secs_f64()
    );
    drop(runtime);
    Ok(())
}

/// Mounting needs the FUSE adapter (Linux, macOS): elsewhere the demo says so.
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn mount_demo(
    _runtime: &tokio::runtime::Runtime,
    _vault: Vault<NextcloudClient>,
    _mountpoint: &Path,
    _address: SocketAddr,
    _user: &str,
) -> anyhow::Result<()> {
    anyhow::bail!(
        "the demo mounts through FUSE, on Linux and macOS only (on Windows: the WinFsp build, README \"Windows\")"
    )
}

/// Mounts the demo folder at `mountpoint` until Ctrl-C (the server keeps running in this process).
#[cfg(any(target_os = "linux", target_os = "macos"))]
fn mount_demo(
    runtime: &tokio::runtime::Runtime,
    vault: Vault<NextcloudClient>,
    mountpoint: &Path,
    address: SocketAddr,
    user: &str,
) -> anyhow::Result<()> {
    fs::create_dir_all(mountpoint).with_context(|| format!("creating {}", mountpoint.display()))?;
    let (tree, root) = runtime.block_on(vault.open_folder("/Vault"))?;
    let core = std::sync::Arc::new(Vfs::new(NextcloudFormat::new(vault, tree, &root), VfsOptions::default()));
    let info = MountInfo {
        mountpoint: mountpoint.to_owned(),
        server: format!("http://{address}"),
        user: user.to_owned(),
        remote: "/Vault".into(),
        idle_timeout: None,
        lock_on_suspend: false,
    };
    mount::run(runtime, core, info, |mountpoint| {
        let shown = mountpoint.display();
        out!();
        out!("5. mounted /Vault at {shown}: decrypted names here, ciphertext and random ids on the server.");
        out!("   Try, in another terminal:");
        out!("     ls -la {shown}  &&  cat '{shown}/Tax 2026/travel plan.md'");
        out!("     cp -r /usr/share/doc/bash {shown}/  &&  diff -r /usr/share/doc/bash {shown}/bash");
        out!("     cargo run --release -- status      # cache, files waiting for upload, errors");
        out!("   Press Ctrl-C here (or `cloakfs unmount {shown}`) to upload, unmount and stop the server.");
    })?;
    out!("unmounted; the server's temporary data directory is removed now");
    Ok(())
}

fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                found.extend(files_below(&path));
            } else {
                found.push(path);
            }
        }
    }
    found
}

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> anyhow::Result<Self> {
        let mut random = [0u8; 8];
        crate::crypto::secret::random_bytes(&mut random);
        let path = std::env::temp_dir().join(format!("cloakfs-demo-{label}-{}", hex::encode(random)));
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
