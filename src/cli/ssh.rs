//! The SSH side of `sftp://` vault locations: the options a user of `ssh` expects (`-i`, the agent,
//! ~/.ssh/config, known_hosts, a password only when allowed), and the terminal that answers the
//! connection's questions (passphrases and one-time codes without echo, host-key confirmation).

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use zeroize::Zeroizing;

use crate::storage::sftp::{self, ssh_config, Asker, SftpLocation, SftpStore, SshSettings};

/// SSH options of an `sftp://` location.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SshArgs {
    /// A private key file to log in with (as `ssh -i`; may be given more than once). Tried after the
    /// agent's keys, before ~/.ssh/config's IdentityFile and ~/.ssh/id_ed25519, id_ecdsa, id_rsa.
    #[arg(short = 'i', long = "identity", value_name = "FILE")]
    pub identity: Vec<PathBuf>,
    /// Trust the server's host key when its SHA256 fingerprint is this (`SHA256:…`, as `ssh-keygen -l`
    /// prints it), without asking. A key that differs from known_hosts is refused all the same.
    #[arg(long, value_name = "FINGERPRINT")]
    pub accept_host_key: Option<String>,
    /// Record a newly trusted host key in ~/.ssh/known_hosts (hashed). Without it nothing is written.
    #[arg(long)]
    pub remember_host: bool,
    /// Allow the password method (asked without echo); off by default, since a key is what the server
    /// should ask for.
    #[arg(long)]
    pub allow_password: bool,
    /// Do not use ssh-agent's keys (SSH_AUTH_SOCK).
    #[arg(long)]
    pub no_agent: bool,
    /// The ssh client configuration to read (default ~/.ssh/config).
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
}

impl SshArgs {
    /// The connection settings for `location`: the address, then `--user`, then ~/.ssh/config, then the
    /// local user name.
    pub fn settings(
        &self,
        location: &SftpLocation,
        user: Option<&str>,
        timeout: Duration,
    ) -> anyhow::Result<SshSettings> {
        let home = sftp::home_folder().context("HOME is not set (needed for ~/.ssh)")?;
        let config_file = self.ssh_config.clone().unwrap_or_else(|| home.join(".ssh/config"));
        let config = ssh_config::settings_for(&config_file, &location.host, &home)
            .with_context(|| format!("reading {}", config_file.display()))?;
        let user = location
            .user
            .clone()
            .or_else(|| user.map(str::to_owned))
            .or(config.user.clone())
            .or_else(|| std::env::var("USER").ok())
            .context("no user name: give sftp://USER@host/…")?;
        let mut identity_files = self.identity.clone();
        identity_files.extend(config.identity_files.iter().cloned());
        if config.identity_files.is_empty() {
            identity_files.extend(sftp::default_identity_files(&home));
        }
        let mut known_hosts_files = config.known_hosts_files.clone();
        if known_hosts_files.is_empty() {
            known_hosts_files = vec![home.join(".ssh/known_hosts"), home.join(".ssh/known_hosts2")];
        }
        known_hosts_files.push(PathBuf::from("/etc/ssh/ssh_known_hosts"));
        let remember_host_in = self.remember_host.then(|| known_hosts_files[0].clone());
        Ok(SshSettings {
            host: config.host_name.clone().unwrap_or_else(|| location.host.clone()),
            port: location.port.or(config.port).unwrap_or(22),
            user,
            identity_files,
            use_agent: !self.no_agent,
            identities_only: config.identities_only,
            allow_password: self.allow_password,
            known_hosts_files,
            accept_host_key: self.accept_host_key.clone(),
            remember_host_in,
            timeout,
        })
    }

    /// Connects to the vault's folder at `location`.
    pub fn connect(
        &self,
        location: &SftpLocation,
        user: Option<&str>,
        timeout: Duration,
        runtime: &tokio::runtime::Runtime,
    ) -> anyhow::Result<SftpStore> {
        let settings = self.settings(location, user, timeout)?;
        let describe = format!("{}@{}:{}", settings.user, settings.host, settings.port);
        runtime
            .block_on(SftpStore::connect(settings, location.path.clone(), Arc::new(TerminalAsker)))
            .with_context(|| format!("connecting to {describe}"))
    }
}

/// How long a question waits for its answer before the connection attempt gives up.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// Answers through the terminal: a secret without echo when stdin is a terminal, else a line of stdin
/// (the prompt on stderr) so that scripts and tests can answer; nothing when stdin is closed. In a mount,
/// `cloakfs unlock` can answer the same question from another terminal. One thread asks, one question at
/// a time; a question not answered within two minutes gets no answer (the connection attempt fails, and
/// the mount tries again later), and an answer typed after that is dropped.
#[derive(Debug, Clone, Copy)]
pub struct TerminalAsker;

enum Question {
    Secret(String),
    Line(String),
}

type Reply = std::sync::mpsc::Sender<Option<Zeroizing<String>>>;

fn ask(question: Question) -> Option<Zeroizing<String>> {
    static TERMINAL: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<(Question, Reply)>>> =
        std::sync::OnceLock::new();
    let sender = TERMINAL.get_or_init(|| {
        let (sender, receiver) = std::sync::mpsc::channel::<(Question, Reply)>();
        std::thread::spawn(move || {
            for (question, reply) in receiver {
                let answer = match question {
                    Question::Secret(prompt) if std::io::stdin().is_terminal() => {
                        rpassword::prompt_password(prompt).ok().map(Zeroizing::new)
                    }
                    Question::Secret(prompt) | Question::Line(prompt) => read_line_of_stdin(&prompt),
                };
                // A line typed for a question that was answered elsewhere or given up goes to the question
                // waiting now, if any (the person saw a prompt and typed for it).
                if let Err(std::sync::mpsc::SendError(Some(late))) = reply.send(answer) {
                    if let Some((id, _, _)) = crate::mount::questions::waiting() {
                        crate::mount::questions::answer(id, late);
                    }
                }
            }
        });
        std::sync::Mutex::new(sender)
    });
    // The same question is open to `cloakfs unlock` (through a running mount's control socket): the
    // first answer wins.
    let (prompt, secret) = match &question {
        Question::Secret(prompt) => (prompt.clone(), true),
        Question::Line(prompt) => (prompt.clone(), false),
    };
    let (reply, answer) = std::sync::mpsc::channel();
    let posted = crate::mount::questions::post(&prompt, secret, reply.clone());
    let asked = sender.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).send((question, reply)).is_ok();
    let answered = if asked { answer.recv_timeout(ANSWER_TIMEOUT).ok().flatten() } else { None };
    crate::mount::questions::withdraw(posted);
    answered
}

fn read_line_of_stdin(prompt: &str) -> Option<Zeroizing<String>> {
    let mut stderr = std::io::stderr();
    let _ = write!(stderr, "{prompt}");
    let _ = stderr.flush();
    let mut line = Zeroizing::new(String::new());
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(Zeroizing::new(line.trim_end_matches(['\n', '\r']).to_owned())),
    }
}

impl Asker for TerminalAsker {
    fn secret(&self, prompt: &str) -> Option<Zeroizing<String>> {
        ask(Question::Secret(prompt.to_owned()))
    }

    fn confirm(&self, question: &str) -> bool {
        ask(Question::Line(question.to_owned()))
            .is_some_and(|answer| matches!(answer.trim(), "yes" | "y" | "YES" | "Yes"))
    }

    fn show(&self, text: &str) {
        eprintln!("{}", text.trim_end());
    }
}

/// `cloakfs unlock [MOUNTPOINT]`: answers the question a mount waits on (a one-time code or a key's
/// passphrase when it reconnects), asked here without echo (or read from stdin when it is not a terminal).
pub fn unlock(mountpoint: Option<PathBuf>) -> anyhow::Result<()> {
    use crate::mount::control::{self, Request};
    let runtime = crate::cli::common::runtime()?;
    let mounts = runtime.block_on(control::all_mounts())?;
    let mut asked = 0;
    for (socket, status) in mounts {
        if let Some(wanted) = &mountpoint {
            let same = std::fs::canonicalize(wanted).ok().is_some_and(|wanted| wanted == status.mountpoint)
                || *wanted == status.mountpoint;
            if !same {
                continue;
            }
        }
        let reply = runtime.block_on(control::send(&socket, &Request::Question))?;
        let Some(question) = reply.question else { continue };
        asked += 1;
        eprintln!("cloakfs: the mount at {} asks:", status.mountpoint.display());
        let answer = if question.secret && std::io::stdin().is_terminal() {
            Zeroizing::new(rpassword::prompt_password(&question.prompt).context("reading the answer")?)
        } else {
            read_line_of_stdin(&question.prompt).context("no answer (stdin closed)")?
        };
        let reply =
            runtime.block_on(control::send(&socket, &Request::Answer { id: question.id, text: answer.to_string() }))?;
        if let Some(error) = reply.error {
            anyhow::bail!("{}: {error}", status.mountpoint.display());
        }
        eprintln!("cloakfs: answered; the mount at {} goes on", status.mountpoint.display());
    }
    if asked == 0 {
        match mountpoint {
            Some(mountpoint) => anyhow::bail!("no mount at {} is waiting for an answer", mountpoint.display()),
            None => anyhow::bail!("no cloakfs mount is waiting for an answer"),
        }
    }
    Ok(())
}
