//! `cloakfs login URL`: Nextcloud Login Flow v2 (or `--app-password`), the app password stored in the OS
//! keyring when there is one, else shown once.

use std::time::Duration;

use anyhow::Context;
use zeroize::Zeroizing;

use super::common::runtime;
use super::credentials;
use crate::storage::nextcloud::login::{poll_login, start_login, LOGIN_TIMEOUT};
use crate::storage::{E2eeApi as _, NextcloudClient, ServerConfig};

/// Options of `cloakfs login`.
#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The server's URL, e.g. https://cloud.example.org.
    pub url: String,
    /// Skip the browser: give the user (--user or CLOAKFS_USER) and an app password (CLOAKFS_PASSWORD or a
    /// prompt), checked against the server, then stored like a login.
    #[arg(long)]
    pub app_password: bool,
    /// The user id (with --app-password).
    #[arg(long, env = "CLOAKFS_USER")]
    pub user: Option<String>,
    /// Permit plain http to a non-loopback host.
    #[arg(long)]
    pub allow_insecure_http: bool,
    /// Remove the stored app password for --user instead of logging in.
    #[arg(long, conflicts_with = "app_password")]
    pub forget: bool,
}

/// Runs `cloakfs login`.
pub fn run(args: LoginArgs) -> anyhow::Result<()> {
    let base_url = url::Url::parse(&args.url).with_context(|| format!("invalid server URL {:?}", args.url))?;
    let server = args.url.trim_end_matches('/').to_owned();
    if args.forget {
        let user = args.user.context("--forget needs --user")?;
        credentials::forget(&server, &user)
            .map_err(|reason| anyhow::anyhow!("cannot remove the password: {reason}"))?;
        println!("forgot the app password of {user} on {server}");
        return Ok(());
    }
    let runtime = runtime()?;
    let (user, app_password) = if args.app_password {
        let user = args.user.context("--app-password needs --user NAME (or CLOAKFS_USER)")?;
        let password = match std::env::var("CLOAKFS_PASSWORD") {
            Ok(password) => Zeroizing::new(password),
            Err(_) => Zeroizing::new(rpassword::prompt_password(format!("app password for {user}: "))?),
        };
        (user, password)
    } else {
        // Build a client only to apply the same URL rules (https, or http to loopback).
        let probe = NextcloudClient::new(ServerConfig {
            base_url: base_url.clone(),
            user: String::new(),
            password: Zeroizing::new(String::new()),
            timeout: Duration::from_secs(30),
            allow_insecure_http: args.allow_insecure_http,
        })?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("cloakfs/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let base = probe.config().base_url.clone();
        let grant = runtime.block_on(async {
            let flow = start_login(&http, &base).await?;
            println!("Open this URL in a browser, sign in and grant access:\n\n    {}\n", flow.login_url);
            use std::io::Write as _;
            std::io::stdout().flush()?;
            eprintln!("waiting for the browser (up to 20 minutes)...");
            anyhow::Ok(poll_login(&http, &flow, Duration::from_secs(1), LOGIN_TIMEOUT).await?)
        })?;
        (grant.user, grant.app_password)
    };
    // Check the credentials before keeping them.
    let client = NextcloudClient::new(ServerConfig {
        base_url,
        user: user.clone(),
        password: app_password.clone(),
        timeout: Duration::from_secs(30),
        allow_insecure_http: args.allow_insecure_http,
    })?;
    runtime.block_on(client.list_detailed(&[], 0)).context("checking the app password")?;
    drop(runtime);
    match credentials::store(&server, &user, &app_password) {
        Ok(()) => println!("Logged in as {user}; the app password is in the OS keyring."),
        Err(reason) => {
            println!("Logged in as {user}. No OS keyring is available ({reason}), so nothing was stored.");
            println!("Keep this app password in your password manager; cloakfs asks for it each time");
            println!("(scripts: CLOAKFS_PASSWORD):\n\n    {}\n", app_password.as_str());
        }
    }
    Ok(())
}
