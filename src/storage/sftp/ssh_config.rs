//! What `~/.ssh/config` says of a host, as users expect from `ssh`: `Host` blocks (patterns with `*`, `?`
//! and `!`), and in them HostName, User, Port, IdentityFile, IdentitiesOnly and UserKnownHostsFile. As in
//! OpenSSH the first value given for a keyword wins, except IdentityFile, which adds. `Match` blocks and
//! `Include` are not read (their lines are skipped, and said so in the debug log).

use std::path::{Path, PathBuf};

use super::known_hosts::patterns_match;

/// The settings that apply to one host alias.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSettings {
    /// The real host name (`HostName`).
    pub host_name: Option<String>,
    /// The user (`User`).
    pub user: Option<String>,
    /// The port (`Port`).
    pub port: Option<u16>,
    /// Key files (`IdentityFile`), in order, `~` and `%d %h %r %u %%` expanded.
    pub identity_files: Vec<PathBuf>,
    /// Only the named key files, not every key in the agent (`IdentitiesOnly yes`).
    pub identities_only: bool,
    /// Known-hosts files (`UserKnownHostsFile`), expanded.
    pub known_hosts_files: Vec<PathBuf>,
}

/// Reads `path` (a missing file gives defaults) for `alias`. `home` expands `~`.
pub fn settings_for(path: &Path, alias: &str, home: &Path) -> std::io::Result<HostSettings> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(parse(&text, alias, home)),
        Err(missing) if missing.kind() == std::io::ErrorKind::NotFound => Ok(HostSettings::default()),
        Err(other) => Err(other),
    }
}

/// The settings for `alias` in the text of a config file.
pub fn parse(text: &str, alias: &str, home: &Path) -> HostSettings {
    let mut settings = HostSettings::default();
    let mut identities_only = None;
    let mut applies = true;
    let mut raw_identity_files = Vec::new();
    let mut raw_known_hosts: Option<Vec<String>> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (keyword, value) = match line.split_once(|c: char| c.is_whitespace() || c == '=') {
            Some((keyword, value)) => {
                (keyword, value.trim_start_matches(|c: char| c.is_whitespace() || c == '=').trim())
            }
            None => (line, ""),
        };
        let value = value.trim_matches('"');
        match keyword.to_ascii_lowercase().as_str() {
            "host" => applies = host_matches(value, alias),
            "match" => {
                tracing::debug!("~/.ssh/config: a Match block is not read");
                applies = false;
            }
            "include" => tracing::debug!("~/.ssh/config: Include is not read"),
            _ if !applies => {}
            "hostname" => {
                settings.host_name.get_or_insert_with(|| value.to_owned());
            }
            "user" => {
                settings.user.get_or_insert_with(|| value.to_owned());
            }
            "port" if settings.port.is_none() => settings.port = value.parse().ok(),
            "identityfile" => raw_identity_files.push(value.to_owned()),
            "identitiesonly" => {
                identities_only.get_or_insert(value.eq_ignore_ascii_case("yes"));
            }
            "userknownhostsfile" => {
                raw_known_hosts.get_or_insert_with(|| value.split_whitespace().map(str::to_owned).collect());
            }
            _ => {}
        }
    }
    settings.identities_only = identities_only.unwrap_or(false);
    let host = settings.host_name.clone().unwrap_or_else(|| alias.to_owned());
    let remote_user = settings.user.clone().unwrap_or_default();
    let expand = |raw: &str| expand_path(raw, home, &host, &remote_user);
    settings.identity_files = raw_identity_files.iter().map(|raw| expand(raw)).collect();
    settings.known_hosts_files = raw_known_hosts.unwrap_or_default().iter().map(|raw| expand(raw)).collect();
    settings
}

/// Whether a `Host` line's patterns select `alias`: one pattern matches and no negated one does.
fn host_matches(patterns: &str, alias: &str) -> bool {
    patterns_match(patterns.split_whitespace(), alias)
}

/// `~` and the tokens OpenSSH expands in file names: %d (home), %h (host), %r (remote user), %u (local
/// user), %% (a percent sign).
pub fn expand_path(raw: &str, home: &Path, host: &str, remote_user: &str) -> PathBuf {
    let local_user = std::env::var("USER").unwrap_or_default();
    let mut expanded = String::new();
    let mut characters = raw.chars().peekable();
    if raw == "~" || raw.starts_with("~/") {
        expanded.push_str(&home.display().to_string());
        characters.next();
    }
    while let Some(character) = characters.next() {
        if character != '%' {
            expanded.push(character);
            continue;
        }
        match characters.next() {
            Some('d') => expanded.push_str(&home.display().to_string()),
            Some('h') => expanded.push_str(host),
            Some('r') => expanded.push_str(remote_user),
            Some('u') => expanded.push_str(&local_user),
            Some('%') => expanded.push('%'),
            Some(other) => {
                expanded.push('%');
                expanded.push(other);
            }
            None => expanded.push('%'),
        }
    }
    PathBuf::from(expanded)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "
# comment
Host work
    HostName 192.0.2.10
    User admin
    Port 2222
    IdentityFile ~/.ssh/work_ed25519
    IdentitiesOnly yes

Host *.example.org !bad.example.org
  User=web
  IdentityFile \"%d/keys/%h\"

Match host foo
  User matched

Host *
  User fallback
  Port 22
  IdentityFile ~/.ssh/id_ed25519
  UserKnownHostsFile ~/.ssh/known_hosts ~/.ssh/extra_hosts
";

    #[test]
    fn first_value_wins_and_identity_files_add_up() {
        let home = Path::new("/home/me");
        let work = parse(CONFIG, "work", home);
        assert_eq!(work.host_name.as_deref(), Some("192.0.2.10"));
        assert_eq!(work.user.as_deref(), Some("admin"));
        assert_eq!(work.port, Some(2222));
        assert!(work.identities_only);
        assert_eq!(
            work.identity_files,
            vec![PathBuf::from("/home/me/.ssh/work_ed25519"), PathBuf::from("/home/me/.ssh/id_ed25519")]
        );
        assert_eq!(
            work.known_hosts_files,
            vec![PathBuf::from("/home/me/.ssh/known_hosts"), PathBuf::from("/home/me/.ssh/extra_hosts")]
        );

        let web = parse(CONFIG, "www.example.org", home);
        assert_eq!(web.user.as_deref(), Some("web"));
        assert_eq!(web.host_name, None);
        assert_eq!(web.port, Some(22));
        assert_eq!(web.identity_files[0], PathBuf::from("/home/me/keys/www.example.org"));
        assert!(!web.identities_only);

        let bad = parse(CONFIG, "bad.example.org", home);
        assert_eq!(bad.user.as_deref(), Some("fallback"), "negated pattern, and the Match block is not read");
    }
}
