//! One SSH connection with its SFTP channel: host-key trust ([`super::known_hosts`]), then the
//! authentication a user of `ssh` expects, in its order: the agent's keys (SSH_AUTH_SOCK), key files (`-i`,
//! IdentityFile, then ~/.ssh/id_ed25519, id_ecdsa, id_rsa; a passphrase asked without echo),
//! keyboard-interactive (one-time codes; the server's prompt shown as it is), and a password only when
//! the user allows it. A server may ask for several methods in turn (a key, then a code).
//!
//! Decrypted key files are kept in memory (zeroized when dropped) for the life of the store, so that a
//! reconnection does not ask the passphrase again; a one-time code is asked again each time.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use russh::client::{AuthResult, Handle, KeyboardInteractiveAuthResponse};
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::ssh_key::PublicKey;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::MethodKind;
use russh_sftp::client::RawSftpSession;
use zeroize::Zeroizing;

use super::known_hosts::{self, HostKeyVerdict};

/// Who answers the questions a connection asks: passphrases, one-time codes, whether to trust a host.
/// The CLI answers through the terminal that mounted (no echo for secrets).
pub trait Asker: Send + Sync {
    /// Asks for a secret, showing `prompt` as it is; `None` when nobody can answer.
    fn secret(&self, prompt: &str) -> Option<Zeroizing<String>>;
    /// Asks a yes/no question; `false` when nobody can answer.
    fn confirm(&self, question: &str) -> bool;
    /// Shows text the server sends (a banner, keyboard-interactive instructions).
    fn show(&self, text: &str);
}

/// Where and as whom to connect, and what to trust.
#[derive(Debug, Clone)]
pub struct SshSettings {
    /// The host to connect to (after ~/.ssh/config's HostName).
    pub host: String,
    /// The port.
    pub port: u16,
    /// The remote user.
    pub user: String,
    /// Key files to try, in order (`-i`, IdentityFile, then the defaults that exist).
    pub identity_files: Vec<PathBuf>,
    /// Use the keys of the agent at SSH_AUTH_SOCK (unless IdentitiesOnly restricts it to the files).
    pub use_agent: bool,
    /// Offer agent keys only when they are also named as key files (`IdentitiesOnly yes`).
    pub identities_only: bool,
    /// Let the password method be used.
    pub allow_password: bool,
    /// The known_hosts files to check the host key against.
    pub known_hosts_files: Vec<PathBuf>,
    /// The fingerprint (`SHA256:…`) of a host key the user accepts without being asked.
    pub accept_host_key: Option<String>,
    /// Where to record a newly accepted host key (`--remember-host`); nothing is written otherwise.
    pub remember_host_in: Option<PathBuf>,
    /// How long to wait for the connection and for each answer.
    pub timeout: Duration,
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// TCP did not connect.
    #[error("cannot reach {address}: {reason}")]
    Unreachable {
        /// host:port
        address: String,
        /// The system's message.
        reason: String,
    },
    /// The host key is not in known_hosts, and was not accepted.
    #[error(
        "the host key of {host} is not known ({fingerprint}); check it with the server's administrator, then \
         accept it with --accept-host-key {fingerprint} (add --remember-host to record it in known_hosts)"
    )]
    HostKeyUnknown {
        /// The host as known_hosts names it.
        host: String,
        /// The offered key's fingerprint.
        fingerprint: String,
    },
    /// known_hosts holds another key for this host.
    #[error(
        "THE HOST KEY OF {host} HAS CHANGED: it offers {offered}, but known_hosts has {recorded}. Someone may be \
         in the middle; refused. If the server's key really changed, remove the old line and connect again"
    )]
    HostKeyChanged {
        /// The host as known_hosts names it.
        host: String,
        /// The offered key's fingerprint.
        offered: String,
        /// The recorded fingerprints with their file and line.
        recorded: String,
    },
    /// The host key is marked @revoked.
    #[error("the host key of {host} ({fingerprint}) is marked @revoked in {source_line}; refused")]
    HostKeyRevoked {
        /// The host.
        host: String,
        /// The offered key's fingerprint.
        fingerprint: String,
        /// Where it is revoked.
        source_line: String,
    },
    /// The server offered a host certificate, which is not accepted.
    #[error("{host} offered a host certificate; cloakfs checks plain host keys only")]
    HostCertificate {
        /// The host.
        host: String,
    },
    /// A key file's passphrase was wrong (three times) or not given.
    #[error("wrong passphrase for {file}")]
    WrongPassphrase {
        /// The key file.
        file: String,
    },
    /// A key file could not be read.
    #[error("cannot read the key file {file}: {reason}")]
    KeyFile {
        /// The key file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// No method the server accepts succeeded.
    #[error("{user}@{host} refused the login (tried: {tried}; the server accepts: {accepted})")]
    Refused {
        /// The user.
        user: String,
        /// The host.
        host: String,
        /// What was tried.
        tried: String,
        /// What the server still accepts.
        accepted: String,
    },
    /// The SSH protocol failed.
    #[error("SSH: {0}")]
    Ssh(String),
    /// The SFTP subsystem failed.
    #[error("SFTP: {0}")]
    Sftp(String),
}

impl From<russh::Error> for SshError {
    fn from(error: russh::Error) -> Self {
        Self::Ssh(error.to_string())
    }
}

/// An open connection and its SFTP session.
pub struct Live {
    /// The SSH connection (kept so that it stays open).
    pub handle: Handle<HostKeyCheck>,
    /// The SFTP session; its requests may be many in flight.
    pub sftp: RawSftpSession,
    /// The largest read and write one request may carry.
    pub max_read: u32,
    /// The largest write one request may carry.
    pub max_write: u32,
}

/// The client side of the key exchange: checks the host key.
pub struct HostKeyCheck {
    settings: Arc<SshSettings>,
    asker: Arc<dyn Asker>,
}

impl russh::client::Handler for HostKeyCheck {
    type Error = SshError;

    async fn check_server_key(&mut self, offered: &PublicKeyOrCertificate) -> Result<bool, SshError> {
        let settings = &self.settings;
        let host = known_hosts::host_entry_name(&settings.host, settings.port);
        let key = match offered {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(_) => return Err(SshError::HostCertificate { host }),
        };
        let fingerprint = known_hosts::fingerprint(&key);
        match known_hosts::check(&settings.known_hosts_files, &settings.host, settings.port, &key) {
            HostKeyVerdict::Known { source } => {
                tracing::debug!(%fingerprint, %source, "host key known");
                Ok(true)
            }
            HostKeyVerdict::Revoked { source } => {
                Err(SshError::HostKeyRevoked { host, fingerprint, source_line: source })
            }
            HostKeyVerdict::Changed { recorded } => {
                let recorded =
                    recorded.iter().map(|(print, source)| format!("{print} ({source})")).collect::<Vec<_>>().join(", ");
                Err(SshError::HostKeyChanged { host, offered: fingerprint, recorded })
            }
            HostKeyVerdict::Unknown => {
                let accepted = match &settings.accept_host_key {
                    Some(given) => given.trim() == fingerprint,
                    None => {
                        let question = format!(
                            "The authenticity of host {host} can't be established.\n{} key fingerprint is {fingerprint}.\n\
                             Trust it for this session? (yes/no) ",
                            key.algorithm().as_str()
                        );
                        let asker = self.asker.clone();
                        tokio::task::spawn_blocking(move || asker.confirm(&question)).await.unwrap_or(false)
                    }
                };
                if !accepted {
                    return Err(SshError::HostKeyUnknown { host, fingerprint });
                }
                if let Some(file) = &settings.remember_host_in {
                    known_hosts::remember(file, &settings.host, settings.port, &key).map_err(|error| {
                        SshError::Ssh(format!("cannot record the host key in {}: {error}", file.display()))
                    })?;
                    tracing::info!(%fingerprint, file = %file.display(), "host key recorded");
                }
                Ok(true)
            }
        }
    }

    async fn auth_banner(&mut self, banner: &str, _session: &mut russh::client::Session) -> Result<(), SshError> {
        let (asker, banner) = (self.asker.clone(), banner.to_owned());
        let _ = tokio::task::spawn_blocking(move || asker.show(&banner)).await;
        Ok(())
    }
}

/// Key files decrypted once, for reconnections.
#[derive(Default)]
pub struct KeyRing {
    keys: std::sync::Mutex<Vec<(PathBuf, Arc<PrivateKey>)>>,
}

impl KeyRing {
    fn get(&self, file: &std::path::Path) -> Option<Arc<PrivateKey>> {
        let keys = self.keys.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        keys.iter().find(|(path, _)| path == file).map(|(_, key)| key.clone())
    }

    fn put(&self, file: PathBuf, key: Arc<PrivateKey>) {
        self.keys.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push((file, key));
    }

    /// Forgets every decrypted key (travel mode's wipe).
    pub fn clear(&self) {
        self.keys.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
    }
}

/// Connects, checks the host key, logs in and opens the SFTP subsystem.
pub async fn connect(settings: Arc<SshSettings>, asker: Arc<dyn Asker>, keys: &KeyRing) -> Result<Live, SshError> {
    let config = Arc::new(russh::client::Config {
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 3,
        nodelay: true,
        // What the server may send before we acknowledge: 2 MiB (russh's default) caps a read at 40 MiB/s
        // on a 50 ms path; 8 MiB, and room for its 32 KiB packets in the channel, lets read-ahead fill it.
        window_size: 8 << 20,
        channel_buffer_size: 512,
        ..Default::default()
    });
    let address = format!("{}:{}", settings.host, settings.port);
    let stream = tokio::time::timeout(settings.timeout, tokio::net::TcpStream::connect(&address))
        .await
        .map_err(|_| SshError::Unreachable { address: address.clone(), reason: "timed out".into() })?
        .map_err(|error| SshError::Unreachable { address: address.clone(), reason: error.to_string() })?;
    let _ = stream.set_nodelay(true);
    let check = HostKeyCheck { settings: settings.clone(), asker: asker.clone() };
    let mut handle = tokio::time::timeout(settings.timeout, russh::client::connect_stream(config, stream, check))
        .await
        .map_err(|_| SshError::Unreachable { address, reason: "no SSH greeting in time".into() })??;
    authenticate(&mut handle, &settings, &asker, keys).await?;
    let channel = handle.channel_open_session().await?;
    channel.request_subsystem(true, "sftp").await?;
    let sftp = RawSftpSession::new(channel.into_stream());
    sftp.set_timeout(settings.timeout.as_secs().max(1));
    sftp.init().await.map_err(|error| SshError::Sftp(error.to_string()))?;
    // OpenSSH's sftp-server says its limits; 32 KiB is what every server must take.
    let (mut max_read, mut max_write) = (32 * 1024, 32 * 1024);
    if let Ok(limits) = sftp.limits().await {
        let cap = |limit: u64| if limit == 0 { 32 * 1024 } else { limit.clamp(4096, 255 * 1024) as u32 };
        (max_read, max_write) = (cap(limits.max_read_len), cap(limits.max_write_len));
    }
    tracing::info!(host = %settings.host, port = settings.port, max_read, max_write, "SFTP session open");
    Ok(Live { handle, sftp, max_read, max_write })
}

async fn ask_secret(asker: &Arc<dyn Asker>, prompt: String) -> Option<Zeroizing<String>> {
    let asker = asker.clone();
    tokio::task::spawn_blocking(move || asker.secret(&prompt)).await.ok().flatten()
}

/// What the server still accepts after a step, or that we are in.
enum Step {
    Done,
    Continue(Vec<MethodKind>),
}

fn step_of(result: AuthResult, tried: &mut Vec<String>, what: String) -> Step {
    match result {
        AuthResult::Success => Step::Done,
        AuthResult::Failure { remaining_methods, partial_success } => {
            if partial_success {
                tried.push(format!("{what} (accepted, more needed)"));
            } else {
                tried.push(what);
            }
            Step::Continue(remaining_methods.iter().copied().collect())
        }
    }
}

async fn authenticate(
    handle: &mut Handle<HostKeyCheck>,
    settings: &SshSettings,
    asker: &Arc<dyn Asker>,
    keys: &KeyRing,
) -> Result<(), SshError> {
    let user = settings.user.clone();
    let mut tried = Vec::new();
    let mut methods = match step_of(handle.authenticate_none(user.clone()).await?, &mut Vec::new(), String::new()) {
        Step::Done => return Ok(()),
        Step::Continue(methods) => methods,
    };
    let refused = |tried: &[String], methods: &[MethodKind]| SshError::Refused {
        user: settings.user.clone(),
        host: settings.host.clone(),
        tried: if tried.is_empty() { "nothing".into() } else { tried.join(", ") },
        accepted: methods.iter().map(<&str>::from).collect::<Vec<_>>().join(", "),
    };
    let rsa_hash = handle.best_supported_rsa_hash().await.ok().flatten().flatten();

    // The agent's keys, then the key files.
    if methods.contains(&MethodKind::PublicKey) {
        let mut offered: Vec<PublicKey> = Vec::new();
        let file_publics: Vec<(PathBuf, Option<PublicKey>)> =
            settings.identity_files.iter().map(|file| (file.clone(), public_key_next_to(file))).collect();
        if settings.use_agent {
            if let Some(mut agent) = connect_agent().await {
                let identities = agent.request_identities().await.unwrap_or_default();
                for identity in identities {
                    let AgentIdentity::PublicKey { key, .. } = identity else { continue };
                    if settings.identities_only
                        && !file_publics
                            .iter()
                            .any(|(_, public)| public.as_ref().is_some_and(|p| p.key_data() == key.key_data()))
                    {
                        continue;
                    }
                    let what = format!("agent key {}", known_hosts::fingerprint(&key));
                    offered.push(key.clone());
                    let hash = if key.algorithm().is_rsa() { rsa_hash } else { None };
                    let result = handle
                        .authenticate_publickey_with(user.clone(), key, hash, &mut agent)
                        .await
                        .map_err(|error| SshError::Ssh(format!("the agent could not sign: {error}")))?;
                    match step_of(result, &mut tried, what) {
                        Step::Done => return Ok(()),
                        Step::Continue(next) => methods = next,
                    }
                    if !methods.contains(&MethodKind::PublicKey) {
                        break;
                    }
                }
            } else {
                tracing::debug!("no ssh-agent (SSH_AUTH_SOCK)");
            }
        }
        for (file, public) in file_publics {
            if !methods.contains(&MethodKind::PublicKey) {
                break;
            }
            if public.as_ref().is_some_and(|public| offered.iter().any(|key| key.key_data() == public.key_data())) {
                continue;
            }
            let key = match keys.get(&file) {
                Some(key) => key,
                None => match load_key_file(&file, asker).await? {
                    Some(key) => {
                        keys.put(file.clone(), key.clone());
                        key
                    }
                    None => continue,
                },
            };
            offered.push(key.public_key().clone());
            let hash = if key.algorithm().is_rsa() { rsa_hash } else { None };
            let result = handle.authenticate_publickey(user.clone(), PrivateKeyWithHashAlg::new(key, hash)).await?;
            match step_of(result, &mut tried, format!("key {}", file.display())) {
                Step::Done => return Ok(()),
                Step::Continue(next) => methods = next,
            }
        }
    }

    // One-time codes and other questions.
    let mut rounds = 0;
    while methods.contains(&MethodKind::KeyboardInteractive) && rounds < 3 {
        rounds += 1;
        let mut response = handle.authenticate_keyboard_interactive_start(user.clone(), None).await?;
        let result = loop {
            match response {
                KeyboardInteractiveAuthResponse::Success => break AuthResult::Success,
                KeyboardInteractiveAuthResponse::Failure { remaining_methods, partial_success } => {
                    break AuthResult::Failure { remaining_methods, partial_success }
                }
                KeyboardInteractiveAuthResponse::InfoRequest { name, instructions, prompts } => {
                    let shown = [name, instructions].into_iter().filter(|text| !text.is_empty()).collect::<Vec<_>>();
                    if !shown.is_empty() {
                        let (asker, text) = (asker.clone(), shown.join("\n"));
                        let _ = tokio::task::spawn_blocking(move || asker.show(&text)).await;
                    }
                    let mut answers = Vec::new();
                    for prompt in prompts {
                        match ask_secret(asker, prompt.prompt.clone()).await {
                            Some(answer) => answers.push(answer.to_string()),
                            None => {
                                tried.push("keyboard-interactive (no answer)".into());
                                return Err(refused(&tried, &methods));
                            }
                        }
                    }
                    response = handle.authenticate_keyboard_interactive_respond(answers).await?;
                }
            }
        };
        match step_of(result, &mut tried, "keyboard-interactive".into()) {
            Step::Done => return Ok(()),
            Step::Continue(next) => methods = next,
        }
    }

    if settings.allow_password && methods.contains(&MethodKind::Password) {
        for _ in 0..3 {
            let prompt = format!("{}@{}'s password: ", settings.user, settings.host);
            let Some(password) = ask_secret(asker, prompt).await else { break };
            let result = handle.authenticate_password(user.clone(), password.to_string()).await?;
            match step_of(result, &mut tried, "password".into()) {
                Step::Done => return Ok(()),
                Step::Continue(next) => methods = next,
            }
            if !methods.contains(&MethodKind::Password) {
                break;
            }
        }
    }
    Err(refused(&tried, &methods))
}

/// A connection to the agent, whatever carries it.
type Agent = AgentClient<Box<dyn russh::keys::agent::client::AgentStream + Send + Unpin>>;

/// The agent at SSH_AUTH_SOCK (a Unix socket).
#[cfg(unix)]
async fn connect_agent() -> Option<Agent> {
    AgentClient::connect_env().await.ok().map(AgentClient::dynamic)
}

/// The agent: the named pipe SSH_AUTH_SOCK names, else OpenSSH's `\\.\pipe\openssh-ssh-agent`, else
/// Pageant.
#[cfg(windows)]
async fn connect_agent() -> Option<Agent> {
    let pipe = std::env::var_os("SSH_AUTH_SOCK")
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| r"\\.\pipe\openssh-ssh-agent".into());
    match AgentClient::connect_named_pipe(&pipe).await {
        Ok(agent) => Some(agent.dynamic()),
        Err(_) => AgentClient::connect_pageant().await.ok().map(AgentClient::dynamic),
    }
}

/// The public key of a key file, from `FILE.pub` (so that a key the agent already offered is not
/// decrypted again).
fn public_key_next_to(file: &std::path::Path) -> Option<PublicKey> {
    let mut name = file.as_os_str().to_owned();
    name.push(".pub");
    let text = std::fs::read_to_string(PathBuf::from(name)).ok()?;
    PublicKey::from_openssh(text.trim()).ok()
}

/// Reads a key file, asking its passphrase (up to three times) if it has one. A missing file is `None`.
async fn load_key_file(file: &std::path::Path, asker: &Arc<dyn Asker>) -> Result<Option<Arc<PrivateKey>>, SshError> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => Zeroizing::new(text),
        Err(missing) if missing.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(SshError::KeyFile { file: file.display().to_string(), reason: error.to_string() }),
    };
    match russh::keys::decode_secret_key(&text, None) {
        Ok(key) => return Ok(Some(Arc::new(key))),
        Err(russh::keys::Error::KeyIsEncrypted) => {}
        Err(error) => return Err(SshError::KeyFile { file: file.display().to_string(), reason: error.to_string() }),
    }
    for _ in 0..3 {
        let prompt = format!("Enter passphrase for key '{}': ", file.display());
        let Some(passphrase) = ask_secret(asker, prompt).await else { break };
        let text = text.clone();
        let decoded =
            tokio::task::spawn_blocking(move || russh::keys::decode_secret_key(&text, Some(passphrase.as_str())))
                .await
                .map_err(|error| SshError::Ssh(error.to_string()))?;
        match decoded {
            Ok(key) => return Ok(Some(Arc::new(key))),
            Err(error) => {
                tracing::debug!(file = %file.display(), %error, "passphrase refused");
                let (asker, text) = (asker.clone(), format!("wrong passphrase for {}", file.display()));
                let _ = tokio::task::spawn_blocking(move || asker.show(&text)).await;
            }
        }
    }
    Err(SshError::WrongPassphrase { file: file.display().to_string() })
}
