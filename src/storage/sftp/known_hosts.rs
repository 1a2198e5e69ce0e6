//! Host-key trust from OpenSSH's `known_hosts` files, read only: plain and hashed (`|1|salt|hash`) host
//! patterns, `[host]:port` for ports other than 22, `*`/`?` wildcards and `!` negation, `@revoked` lines
//! (always refused) and `@cert-authority` lines (not used: cloakfs does not accept host certificates).
//! Lines of key types this build does not parse are skipped, as OpenSSH does. Writing happens only on
//! request ([`remember`], the mount's `--remember-host`), as one hashed line so that the file does not
//! name the host in clear.

use std::path::{Path, PathBuf};

use aws_lc_rs::hmac;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use russh::keys::ssh_key::{HashAlg, PublicKey};

/// What the known_hosts files say of a host's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyVerdict {
    /// A line names this host with this key.
    Known {
        /// The file and line (1-based) that vouches for the key.
        source: String,
    },
    /// No line names this host.
    Unknown,
    /// Lines name this host, with other keys: the key changed, or someone is in the middle.
    Changed {
        /// The fingerprints (SHA256) of the keys on record, with their file and line.
        recorded: Vec<(String, String)>,
    },
    /// The key is marked `@revoked`.
    Revoked {
        /// The file and line of the mark.
        source: String,
    },
}

/// The SHA256 fingerprint of a key, as OpenSSH prints it (`SHA256:base64`).
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The name a host has in known_hosts: `host` on port 22, `[host]:port` on any other.
pub fn host_entry_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Checks `key` for `host`:`port` against `files` (missing files count as empty). A host known with a
/// key of another algorithm only is [`HostKeyVerdict::Changed`] too: stricter than OpenSSH, which would
/// ask, because a server that suddenly offers a new algorithm is what a machine in the middle would do.
pub fn check(files: &[PathBuf], host: &str, port: u16, key: &PublicKey) -> HostKeyVerdict {
    let name = host_entry_name(host, port);
    let mut recorded = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(file) else { continue };
        for (index, line) in text.lines().enumerate() {
            let Some(entry) = parse_line(line) else { continue };
            if !entry.matches(&name) {
                continue;
            }
            let source = format!("{}:{}", file.display(), index + 1);
            match entry.marker {
                Marker::Revoked if entry.key.key_data() == key.key_data() => {
                    return HostKeyVerdict::Revoked { source };
                }
                Marker::None if entry.key.key_data() == key.key_data() => {
                    return HostKeyVerdict::Known { source };
                }
                Marker::None => recorded.push((fingerprint(&entry.key), source)),
                Marker::Revoked | Marker::CertAuthority => {}
            }
        }
    }
    if recorded.is_empty() {
        HostKeyVerdict::Unknown
    } else {
        HostKeyVerdict::Changed { recorded }
    }
}

/// Appends `key` for `host`:`port` to `file` as a hashed line (creating the file, mode 0600, and its
/// folder if needed).
pub fn remember(file: &Path, host: &str, port: u16, key: &PublicKey) -> std::io::Result<()> {
    use std::io::Write as _;
    if let Some(folder) = file.parent() {
        std::fs::create_dir_all(folder)?;
    }
    let mut salt = [0u8; 20];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| std::io::Error::other("no randomness"))?;
    let tag =
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt), host_entry_name(host, port).as_bytes());
    let encoded = key.to_openssh().map_err(std::io::Error::other)?;
    let line = format!("|1|{}|{} {}\n", BASE64.encode(salt), BASE64.encode(tag.as_ref()), encoded.trim());
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(file)?.write_all(line.as_bytes())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

struct Entry<'a> {
    marker: Marker,
    hosts: &'a str,
    key: PublicKey,
}

fn parse_line(line: &str) -> Option<Entry<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields = line.split_ascii_whitespace();
    let mut first = fields.next()?;
    let marker = match first {
        "@revoked" => Marker::Revoked,
        "@cert-authority" => Marker::CertAuthority,
        marker if marker.starts_with('@') => return None,
        _ => Marker::None,
    };
    if marker != Marker::None {
        first = fields.next()?;
    }
    let algorithm = fields.next()?;
    let data = fields.next()?;
    let key = PublicKey::from_openssh(&format!("{algorithm} {data}")).ok()?;
    Some(Entry { marker, hosts: first, key })
}

impl Entry<'_> {
    /// Whether the host field names `name`: a hashed entry, or patterns of which one matches and none
    /// that is negated.
    fn matches(&self, name: &str) -> bool {
        if let Some(hashed) = self.hosts.strip_prefix("|1|") {
            return hashed_matches(hashed, name);
        }
        patterns_match(self.hosts.split(','), name)
    }
}

/// OpenSSH's pattern lists: one pattern matches `name` and no negated (`!`) one does.
pub(crate) fn patterns_match<'a>(patterns: impl Iterator<Item = &'a str>, name: &str) -> bool {
    let mut matched = false;
    for pattern in patterns {
        if let Some(negated) = pattern.strip_prefix('!') {
            if wildcard_matches(negated, name) {
                return false;
            }
        } else if wildcard_matches(pattern, name) {
            matched = true;
        }
    }
    matched
}

fn hashed_matches(hashed: &str, name: &str) -> bool {
    let Some((salt, tag)) = hashed.split_once('|') else { return false };
    let (Ok(salt), Ok(tag)) = (BASE64.decode(salt), BASE64.decode(tag)) else { return false };
    hmac::verify(&hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt), name.as_bytes(), &tag).is_ok()
}

/// OpenSSH's pattern match: `*` any run of characters, `?` one character; host names compare without
/// regard to case.
pub(crate) fn wildcard_matches(pattern: &str, text: &str) -> bool {
    fn inner(pattern: &[u8], text: &[u8]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some((b'*', rest)) => (0..=text.len()).any(|skip| inner(rest, &text[skip..])),
            Some((b'?', rest)) => !text.is_empty() && inner(rest, &text[1..]),
            Some((byte, rest)) => {
                text.first().is_some_and(|first| first.eq_ignore_ascii_case(byte)) && inner(rest, &text[1..])
            }
        }
    }
    inner(pattern.as_bytes(), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAuhG/Pv5phvodJjoYeZeX7Z1obQRZJbB5fpnoTiDTd3";
    const OTHER: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBmDDD+RcxbS81456Lo0d1rNEn6/XFm66CeQKxAiJswY";

    fn key(text: &str) -> PublicKey {
        PublicKey::from_openssh(text).unwrap()
    }

    fn file_with(lines: &str) -> (tempfile_path::Folder, PathBuf) {
        let folder = tempfile_path::Folder::new();
        let path = folder.0.join("known_hosts");
        std::fs::write(&path, lines).unwrap();
        (folder, path)
    }

    mod tempfile_path {
        pub struct Folder(pub std::path::PathBuf);
        impl Folder {
            pub fn new() -> Self {
                let path = std::env::temp_dir()
                    .join(format!("cloakfs-kh-{}", crate::crypto::server_name::random_server_name()));
                std::fs::create_dir_all(&path).unwrap();
                Self(path)
            }
        }
        impl Drop for Folder {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn plain_hashed_ported_negated_and_revoked_lines() {
        let (_folder, path) = file_with(&format!(
            "# a comment\n\nexample.org,192.0.2.1 {ED25519}\n[example.net]:2222 {ED25519}\n*.corp,!bad.corp {ED25519}\n@revoked revoked.org {ED25519}\n@cert-authority *.ca {OTHER}\nunparsable.org ssh-foo AAAA\n"
        ));
        let files = [path];
        let verdict = |host: &str, port: u16, offered: &str| check(&files, host, port, &key(offered));
        assert!(matches!(verdict("example.org", 22, ED25519), HostKeyVerdict::Known { .. }));
        assert!(matches!(verdict("EXAMPLE.ORG", 22, ED25519), HostKeyVerdict::Known { .. }));
        assert!(matches!(verdict("192.0.2.1", 22, ED25519), HostKeyVerdict::Known { .. }));
        assert_eq!(verdict("example.org", 2222, ED25519), HostKeyVerdict::Unknown, "another port is another host");
        assert!(matches!(verdict("example.net", 2222, ED25519), HostKeyVerdict::Known { .. }));
        assert!(matches!(verdict("a.corp", 22, ED25519), HostKeyVerdict::Known { .. }));
        assert_eq!(verdict("bad.corp", 22, ED25519), HostKeyVerdict::Unknown, "negated");
        assert!(matches!(verdict("revoked.org", 22, ED25519), HostKeyVerdict::Revoked { .. }));
        assert_eq!(verdict("x.ca", 22, OTHER), HostKeyVerdict::Unknown, "CA lines vouch for no plain key");
        match verdict("example.org", 22, OTHER) {
            HostKeyVerdict::Changed { recorded } => {
                assert_eq!(recorded.len(), 1);
                assert_eq!(recorded[0].0, fingerprint(&key(ED25519)));
                assert!(recorded[0].1.ends_with("known_hosts:3"), "{:?}", recorded[0].1);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn remembered_lines_are_hashed_and_found_again() {
        let (folder, _) = file_with("");
        let path = folder.0.join("ssh/known_hosts");
        remember(&path, "127.0.0.1", 2222, &key(ED25519)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("|1|") && !text.contains("127.0.0.1"), "{text}");
        let files = [path];
        assert!(matches!(check(&files, "127.0.0.1", 2222, &key(ED25519)), HostKeyVerdict::Known { .. }));
        assert_eq!(check(&files, "127.0.0.1", 22, &key(ED25519)), HostKeyVerdict::Unknown);
        assert!(matches!(check(&files, "127.0.0.1", 2222, &key(OTHER)), HostKeyVerdict::Changed { .. }));
    }

    #[test]
    fn a_hashed_line_made_by_ssh_keygen_matches() {
        // `ssh-keygen -H` of the line "[127.0.0.1]:2222 <ED25519>".
        let line = format!("|1|EzSS1ZdHi/79pY7k0nil9VpfyT0=|a5ivUBVodpOtcQ8WzNKNuqsuSsQ= {ED25519}\n");
        let (_folder, path) = file_with(&line);
        assert!(matches!(
            check(std::slice::from_ref(&path), "127.0.0.1", 2222, &key(ED25519)),
            HostKeyVerdict::Known { .. }
        ));
        assert_eq!(check(&[path], "127.0.0.2", 2222, &key(ED25519)), HostKeyVerdict::Unknown);
        // The fingerprint as `ssh-keygen -l` prints it.
        assert_eq!(fingerprint(&key(ED25519)), "SHA256:gLFm/tmlY7fWLvw4j5yQCc4scpr224fkQSKtha9kjeA");
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_matches("*", "anything"));
        assert!(wildcard_matches("h?st", "host"));
        assert!(!wildcard_matches("h?st", "hoost"));
        assert!(wildcard_matches("*.example.org", "a.b.example.org"));
        assert!(!wildcard_matches("*.example.org", "example.org"));
    }
}
