//! `cloakfs keys init` and `cloakfs keys check`.

use anyhow::bail;

use super::common::{runtime, ConnectionArgs, MnemonicArgs};
use crate::session::{initialize_keys, unlock};

/// `cloakfs keys ...`
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create this account's end-to-end encryption keys: key pair, certificate from the server, and a new
    /// 12-word mnemonic (shown once) protecting the private key stored on the server.
    Init {
        /// The server and user.
        #[command(flatten)]
        connection: ConnectionArgs,
        /// Accept a changed server key with this fingerprint (after checking it out of band).
        #[arg(long, value_name = "SHA256")]
        accept_server_key: Option<String>,
    },
    /// Check that the mnemonic unlocks this account's private key and that key and certificate match.
    Check {
        /// The server and user.
        #[command(flatten)]
        connection: ConnectionArgs,
        /// The mnemonic.
        #[command(flatten)]
        mnemonic: MnemonicArgs,
        /// Accept a changed server key with this fingerprint (after checking it out of band).
        #[arg(long, value_name = "SHA256")]
        accept_server_key: Option<String>,
    },
}

/// Runs `cloakfs keys ...`.
pub fn run(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Init { connection, accept_server_key } => {
            let client = connection.client()?;
            let mut trust = connection.trust_store()?;
            accept(&mut trust, &connection, accept_server_key)?;
            let (session, mnemonic) = runtime()?.block_on(initialize_keys(client, &mut trust))?;
            println!("Created end-to-end encryption keys for {:?}.", session.client.config().user);
            println!("certificate: {}", session.certificate.fingerprint());
            println!("server key:  {}", session.server_key.fingerprint());
            println!();
            println!("Your mnemonic (write it down now; it is shown once and stored nowhere):");
            println!();
            println!("    {}", &*mnemonic.phrase());
            println!();
            println!("Anyone with these 12 words and your account can read your encrypted folders.");
            Ok(())
        }
        KeysCommand::Check { connection, mnemonic, accept_server_key } => {
            let mnemonic = mnemonic.read()?;
            if !mnemonic.has_valid_checksum() {
                eprintln!(
                    "note: the mnemonic has no BIP-39 checksum (normal for Nextcloud-made phrases; a typo otherwise)"
                );
            }
            let client = connection.client()?;
            let mut trust = connection.trust_store()?;
            accept(&mut trust, &connection, accept_server_key)?;
            let session = runtime()?.block_on(unlock(client, &mut trust, &mnemonic))?;
            println!(
                "OK: the mnemonic unlocks the private key of {:?} ({:?}); it matches its certificate",
                session.client.config().user,
                session.kdf,
            );
            // Last on the line, so that it can be copied as it is (`share --fingerprint`, `confirm`).
            println!(
                "your certificate's fingerprint, to read out to whoever shares a folder with you: SHA256 {}",
                session.certificate.fingerprint()
            );
            Ok(())
        }
    }
}

fn accept(
    trust: &mut crate::trust::TrustStore,
    connection: &ConnectionArgs,
    fingerprint: Option<String>,
) -> anyhow::Result<()> {
    if let Some(fingerprint) = fingerprint {
        if fingerprint.len() != 64 || !fingerprint.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            bail!("--accept-server-key takes the 64-hex-digit fingerprint shown in the refusal");
        }
        trust.accept_server_key(connection.server.trim_end_matches('/'), &fingerprint)?;
    }
    Ok(())
}
