//! `sftp://` locations as the user writes them, and where ~/.ssh is.

use std::path::{Path, PathBuf};

/// An `sftp://[user@]host[:port]/path` location, as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftpLocation {
    /// The user, if given.
    pub user: Option<String>,
    /// The host or ~/.ssh/config alias.
    pub host: String,
    /// The port, if given.
    pub port: Option<u16>,
    /// The vault's folder on the server: absolute, or below the login folder when written `/~/path`.
    pub path: String,
}

impl SftpLocation {
    /// Whether a location is an SFTP address.
    pub fn is_sftp(location: &str) -> bool {
        location.starts_with("sftp://")
    }

    /// Parses `sftp://[user@]host[:port]/path` (`/~/path`: below the login folder).
    pub fn parse(location: &str) -> Result<Self, String> {
        let url = url::Url::parse(location).map_err(|error| format!("invalid address {location:?}: {error}"))?;
        if url.scheme() != "sftp" {
            return Err(format!("{location:?} is not an sftp:// address"));
        }
        let host =
            url.host_str().filter(|host| !host.is_empty()).ok_or_else(|| format!("{location:?} names no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let decode = |text: &str| percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned();
        let user = Some(decode(url.username())).filter(|user| !user.is_empty());
        if url.password().is_some() {
            return Err(
                "a password in the address is refused (it would end in shell history); log in with a key".into()
            );
        }
        let raw_path = decode(url.path());
        let path = match raw_path.strip_prefix("/~") {
            Some(rest) => format!(".{rest}"),
            None => raw_path,
        };
        let path = path.trim_end_matches('/').to_owned();
        let path = if path.is_empty() { "/".to_owned() } else { path };
        Ok(Self { user, host, port: url.port(), path })
    }
}

/// The user's home folder (for ~/.ssh).
pub fn home_folder() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|home| !home.is_empty()).map(PathBuf::from)
}

/// The key files tried when none is named: OpenSSH's defaults that exist.
pub fn default_identity_files(home: &Path) -> Vec<PathBuf> {
    ["id_ed25519", "id_ecdsa", "id_rsa"].iter().map(|name| home.join(".ssh").join(name)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let parsed = SftpLocation::parse("sftp://me@host.example:2222/srv/vaults/Work/").unwrap();
        assert_eq!(
            parsed,
            SftpLocation {
                user: Some("me".into()),
                host: "host.example".into(),
                port: Some(2222),
                path: "/srv/vaults/Work".into()
            }
        );
        let home = SftpLocation::parse("sftp://work/~/Vault").unwrap();
        assert_eq!((home.user, home.host.as_str(), home.port, home.path.as_str()), (None, "work", None, "./Vault"));
        assert!(SftpLocation::parse("sftp://me:secret@host/x").unwrap_err().contains("password"));
        assert!(SftpLocation::parse("https://host/x").is_err());
        assert_eq!(SftpLocation::parse("sftp://[::1]:22/v").unwrap().host, "::1");
    }
}
