//! `cloakfs serve`: run the embedded server, or manage its users.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use zeroize::Zeroizing;

use super::common::runtime;
use crate::server::store::Store;
use crate::server::{serve, ServeOptions};

/// Options of `cloakfs serve`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ServeArgs {
    /// The data directory: database and encrypted blobs (only ciphertext and random ids).
    #[arg(long, value_name = "DIR", global = true)]
    pub data: Option<PathBuf>,
    /// Address to listen on (loopback by default; port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Roll back locks older than this many seconds (Nextcloud: 86400).
    #[arg(long, value_name = "SECONDS", default_value_t = 86_400)]
    pub lock_ttl: i64,
    /// Bytes of file content each user may store, e.g. 10G (uploads beyond it get 507, as on a Nextcloud
    /// server over quota).
    #[arg(long, value_name = "SIZE", value_parser = crate::cli::mount::parse_size)]
    pub quota: Option<u64>,
    /// User management instead of serving.
    #[command(subcommand)]
    pub action: Option<ServeAction>,
}

/// `cloakfs serve user ...`
#[derive(Debug, clap::Subcommand)]
pub enum ServeAction {
    /// Manage the server's users.
    #[command(subcommand)]
    User(UserCommand),
}

/// `cloakfs serve user ...`
#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Add a user; the password comes from CLOAKFS_PASSWORD or a prompt.
    Add {
        /// The user id.
        name: String,
    },
    /// Create an app password for a user (printed once).
    AppPassword {
        /// The user id.
        name: String,
    },
}

/// Runs `cloakfs serve ...`.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let data_dir = args.data.context("--data DIR is required")?;
    match args.action {
        None => runtime()?.block_on(serve(ServeOptions {
            data_dir,
            listen: args.listen,
            lock_ttl_seconds: args.lock_ttl.max(1),
            quota_bytes: args.quota,
        }))?,
        Some(ServeAction::User(UserCommand::Add { name })) => {
            let password = match std::env::var("CLOAKFS_PASSWORD") {
                Ok(password) => Zeroizing::new(password),
                Err(_) => {
                    let first = Zeroizing::new(rpassword::prompt_password(format!("password for {name}: "))?);
                    let second = Zeroizing::new(rpassword::prompt_password("repeat: ")?);
                    if first != second {
                        bail!("the passwords differ");
                    }
                    first
                }
            };
            if password.len() < 8 {
                bail!("the password must have at least 8 characters");
            }
            Store::open(&data_dir)?.add_user(&name, &password)?;
            println!("added user {name:?}");
        }
        Some(ServeAction::User(UserCommand::AppPassword { name })) => {
            let store = Store::open(&data_dir)?;
            if !store.user_exists(&name)? {
                bail!("no user {name:?}");
            }
            println!("{}", store.create_app_password(&name, "cli")?);
        }
    }
    Ok(())
}
