//! Trust on first use: the server's key and each user's certificate are pinned the first time they are
//! seen; a different one later is refused, showing both fingerprints, until the user accepts it.
//!
//! The pin file is non-secret state in the user's config directory (`$XDG_CONFIG_HOME/cloakfs/pins.json`):
//! server URLs, user ids and SHA-256 fingerprints. It holds no file or folder names and no keys.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::crypto::{PublicKey, UserCertificate};

/// Pins for one server.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ServerPins {
    /// SHA-256 fingerprint of the server key's SubjectPublicKeyInfo.
    pub server_key: Option<String>,
    /// SHA-256 fingerprints of users' certificates, by user id.
    #[serde(default)]
    pub certificates: BTreeMap<String, String>,
    /// The highest metadata counter seen, by folder file id (rollback protection across runs).
    #[serde(default)]
    pub counters: BTreeMap<String, u64>,
    /// The offline recovery key (public half, PEM) new and re-keyed folders wrap their key for, if set up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_key: Option<String>,
    /// What this device accepted about each top folder's membership, by file id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub folders: BTreeMap<String, FolderPins>,
    /// Certificates the user confirmed on this device (compared with their owner out of band), by user id:
    /// only these, the user's own and those a folder's verified audit trail vouches for ever receive a key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub confirmed: BTreeMap<String, String>,
    /// SHA-256 of the signed metadata seen at the highest counter, by folder file id: another document under
    /// a counter already seen is refused (counters must strictly increase).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub digests: BTreeMap<String, String>,
}

/// The membership of one top folder as this device last accepted it (user ids and fingerprints; no names).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FolderPins {
    /// Members (user id, certificate fingerprint), sorted.
    pub members: Vec<(String, String)>,
    /// Entries of the audit trail seen.
    #[serde(default)]
    pub trail_len: u64,
    /// Hash of the last audit entry seen.
    #[serde(default)]
    pub trail_head: String,
    /// Fingerprint of the recovery key the folder wraps its key for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<String>,
    /// Members' new certificates this folder's verified audit trail vouched for, by user id. They hold for
    /// this folder only: another folder's trail cannot move a user's pin for every folder.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub certificates: BTreeMap<String, String>,
    /// Every metadata-key checksum seen in the folder's `keyChecksums` (none may disappear).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_checksums: Vec<String>,
}

/// All pins, by server URL.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct PinFile {
    #[serde(default)]
    servers: BTreeMap<String, ServerPins>,
}

/// Refusals and failures of the pin store.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The server presents another key than the pinned one.
    #[error(
        "the server key of {server} has CHANGED.\n  pinned:    {pinned}\n  presented: {presented}\n\
         This is what a compromised server would do. If you know the server was reinstalled, accept the new \
         key explicitly with --accept-server-key {presented}"
    )]
    ServerKeyChanged {
        /// The server.
        server: String,
        /// The pinned fingerprint.
        pinned: String,
        /// The presented fingerprint.
        presented: String,
    },
    /// A user presents another certificate than the pinned one.
    #[error(
        "the certificate of user {user:?} on {server} has CHANGED.\n  pinned:    {pinned}\n  presented: {presented}\n\
         Refusing to use it: a server can issue certificates for anyone. If {user:?} really made new keys, \
         compare the presented fingerprint with them; a folder's owner then runs \
         `cloakfs share FOLDER {user} --accept-new-certificate {presented}`."
    )]
    CertificateChanged {
        /// The server.
        server: String,
        /// The user.
        user: String,
        /// The pinned fingerprint.
        pinned: String,
        /// The presented fingerprint.
        presented: String,
    },
    /// A certificate was pinned for the user, but the server now says the user has no keys.
    #[error(
        "this device pinned a certificate for user {user:?} on {server}, but the server no longer has keys for \
         that user. A server that lost or dropped keys may be trying to get new ones made under its control. \
         If the account was really reset, remove the user's entry from {pin_file} and try again."
    )]
    PinnedCertificateMissing {
        /// The server.
        server: String,
        /// The user.
        user: String,
        /// The pin file.
        pin_file: String,
    },
    /// The server returned different metadata under a counter this device already saw.
    #[error(
        "folder {file_id}: the server returned different metadata under counter {counter}, which this device \
         already saw with other content. Counters must grow with every change: this is a replayed or forged \
         version. Nothing was read from it."
    )]
    CounterReused {
        /// The folder.
        file_id: u64,
        /// The counter.
        counter: u64,
    },
    /// The pin file could not be read or written.
    #[error("pin file {path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// The pin store, loaded from and saved to one JSON file.
#[derive(Debug)]
pub struct TrustStore {
    path: PathBuf,
    pins: PinFile,
}

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinOutcome {
    /// Matches the pin.
    Known,
    /// Seen for the first time; pinned now.
    FirstUse,
}

/// The default location of the pin file: `$XDG_CONFIG_HOME/cloakfs/pins.json` (or the platform's equivalent).
pub fn default_pin_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "cloakfs").map(|dirs| dirs.config_dir().join("pins.json"))
}

impl TrustStore {
    /// Loads the pin file (an absent file is an empty store).
    pub fn load(path: &Path) -> Result<Self, TrustError> {
        let io = |reason: String| TrustError::Io { path: path.to_owned(), reason };
        let pins = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|error| io(format!("not valid pin JSON: {error}")))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => PinFile::default(),
            Err(error) => return Err(io(error.to_string())),
        };
        Ok(Self { path: path.to_owned(), pins })
    }

    /// The servers with pins, and the users with pinned certificates on each.
    pub fn servers(&self) -> impl Iterator<Item = (&str, &ServerPins)> {
        self.pins.servers.iter().map(|(server, pins)| (server.as_str(), pins))
    }

    /// Drops every pin of `server`; `true` if there were any. Saves.
    pub fn forget_server(&mut self, server: &str) -> Result<bool, TrustError> {
        let removed = self.pins.servers.remove(server).is_some();
        if removed {
            self.save()?;
        }
        Ok(removed)
    }

    /// The file the pins live in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pins of one server.
    pub fn server(&self, server: &str) -> Option<&ServerPins> {
        self.pins.servers.get(server)
    }

    /// Checks the server key against the pin; pins it on first use. Saves on change.
    pub fn check_server_key(&mut self, server: &str, key: &PublicKey) -> Result<PinOutcome, TrustError> {
        let presented = key.fingerprint();
        let pins = self.pins.servers.entry(server.to_owned()).or_default();
        match &pins.server_key {
            Some(pinned) if *pinned == presented => Ok(PinOutcome::Known),
            Some(pinned) => {
                Err(TrustError::ServerKeyChanged { server: server.to_owned(), pinned: pinned.clone(), presented })
            }
            None => {
                pins.server_key = Some(presented);
                self.save()?;
                Ok(PinOutcome::FirstUse)
            }
        }
    }

    /// Refuses when a certificate is pinned for `user` on `server` (used before creating new keys).
    pub fn ensure_no_pinned_certificate(&self, server: &str, user: &str) -> Result<(), TrustError> {
        match self.server(server).and_then(|pins| pins.certificates.get(user)) {
            Some(_) => Err(TrustError::PinnedCertificateMissing {
                server: server.to_owned(),
                user: user.to_owned(),
                pin_file: self.path.display().to_string(),
            }),
            None => Ok(()),
        }
    }

    /// Replaces the pinned server key, after the user confirmed `fingerprint` explicitly.
    pub fn accept_server_key(&mut self, server: &str, fingerprint: &str) -> Result<(), TrustError> {
        self.pins.servers.entry(server.to_owned()).or_default().server_key = Some(fingerprint.to_ascii_lowercase());
        self.save()
    }

    /// Checks a user's certificate against the pin; pins it on first use. Saves on change.
    pub fn check_certificate(
        &mut self,
        server: &str,
        user: &str,
        certificate: &UserCertificate,
    ) -> Result<PinOutcome, TrustError> {
        let presented = certificate.fingerprint();
        let pins = self.pins.servers.entry(server.to_owned()).or_default();
        match pins.certificates.get(user) {
            Some(pinned) if *pinned == presented => Ok(PinOutcome::Known),
            Some(pinned) => Err(TrustError::CertificateChanged {
                server: server.to_owned(),
                user: user.to_owned(),
                pinned: pinned.clone(),
                presented,
            }),
            None => {
                pins.certificates.insert(user.to_owned(), presented);
                self.save()?;
                Ok(PinOutcome::FirstUse)
            }
        }
    }

    /// The certificate fingerprint pinned for `user` on `server`.
    pub fn pinned_certificate(&self, server: &str, user: &str) -> Option<&str> {
        self.server(server).and_then(|pins| pins.certificates.get(user)).map(String::as_str)
    }

    /// Pins `fingerprint` for `user` if nothing is pinned yet (a changed one is refused elsewhere). Saves.
    pub fn pin_certificate(&mut self, server: &str, user: &str, fingerprint: &str) -> Result<(), TrustError> {
        let pins = self.pins.servers.entry(server.to_owned()).or_default();
        if pins.certificates.contains_key(user) {
            return Ok(());
        }
        pins.certificates.insert(user.to_owned(), fingerprint.to_owned());
        self.save()
    }

    /// Replaces the certificate pinned for `user` (after the user confirmed the new fingerprint, or a trusted
    /// member vouched for it in a folder's audit trail). Saves.
    pub fn replace_certificate(&mut self, server: &str, user: &str, fingerprint: &str) -> Result<(), TrustError> {
        let pins = self.pins.servers.entry(server.to_owned()).or_default();
        pins.certificates.insert(user.to_owned(), fingerprint.to_owned());
        self.save()
    }

    /// Confirms `fingerprint` as `user`'s certificate on this device (the user compared it with them). With
    /// `pin`, it also becomes the pin; without, the pin is replaced once the change that uses it is written
    /// ([`Self::replace_certificate`]). Saves.
    pub fn confirm_certificate(
        &mut self,
        server: &str,
        user: &str,
        fingerprint: &str,
        pin: bool,
    ) -> Result<(), TrustError> {
        let pins = self.pins.servers.entry(server.to_owned()).or_default();
        let fingerprint = fingerprint.to_ascii_lowercase();
        if pin {
            pins.certificates.insert(user.to_owned(), fingerprint.clone());
        }
        pins.confirmed.insert(user.to_owned(), fingerprint);
        self.save()
    }

    /// Whether the user confirmed `fingerprint` as `user`'s certificate on this device.
    pub fn is_confirmed(&self, server: &str, user: &str, fingerprint: &str) -> bool {
        self.server(server)
            .and_then(|pins| pins.confirmed.get(user))
            .is_some_and(|confirmed| confirmed.eq_ignore_ascii_case(fingerprint))
    }

    /// The certificate fingerprint this device expects for `user` in top folder `file_id`: one the folder's
    /// trail vouched for, else the pin.
    pub fn expected_certificate(&self, server: &str, file_id: u64, user: &str) -> Option<&str> {
        self.folder(server, file_id)
            .and_then(|folder| folder.certificates.get(user))
            .map(String::as_str)
            .or_else(|| self.pinned_certificate(server, user))
    }

    /// Records the signed content digest of folder `file_id` at `counter`, refusing another digest under a
    /// counter already seen. Call after [`Self::record_counter`]'s rollback check passed. Saves on change.
    pub fn record_digest(&mut self, server: &str, file_id: u64, counter: u64, digest: &str) -> Result<(), TrustError> {
        let pins = self.pins.servers.entry(server.to_owned()).or_default();
        let key = file_id.to_string();
        let known_counter = pins.counters.get(&key).copied().unwrap_or(0);
        if counter < known_counter {
            return Ok(());
        }
        match pins.digests.get(&key) {
            Some(known) if counter == known_counter && known != digest => {
                Err(TrustError::CounterReused { file_id, counter })
            }
            Some(known) if counter == known_counter && known == digest => Ok(()),
            _ => {
                pins.counters.insert(key.clone(), counter);
                pins.digests.insert(key, digest.to_owned());
                self.save()
            }
        }
    }

    /// What this device accepted about top folder `file_id`.
    pub fn folder(&self, server: &str, file_id: u64) -> Option<&FolderPins> {
        self.server(server).and_then(|pins| pins.folders.get(&file_id.to_string()))
    }

    /// Records what this device accepts about top folder `file_id`. Saves when it changed.
    pub fn record_folder(&mut self, server: &str, file_id: u64, folder: FolderPins) -> Result<(), TrustError> {
        let pins = self.pins.servers.entry(server.to_owned()).or_default();
        if pins.folders.get(&file_id.to_string()) == Some(&folder) {
            return Ok(());
        }
        pins.folders.insert(file_id.to_string(), folder);
        self.save()
    }

    /// Forgets the members accepted for top folder `file_id` (keeping the audit trail pin): the next read
    /// accepts the members it finds. Saves.
    pub fn forget_folder_members(&mut self, server: &str, file_id: u64) -> Result<(), TrustError> {
        let pins = self.pins.servers.entry(server.to_owned()).or_default();
        match pins.folders.get_mut(&file_id.to_string()) {
            Some(folder) if !folder.members.is_empty() => {
                folder.members.clear();
                self.save()
            }
            _ => Ok(()),
        }
    }

    /// Sets (or with `None` clears) the recovery public key (PEM) of `server` on this device. Saves.
    pub fn set_recovery_key(&mut self, server: &str, pem: Option<String>) -> Result<(), TrustError> {
        self.pins.servers.entry(server.to_owned()).or_default().recovery_key = pem;
        self.save()
    }

    /// The highest metadata counter seen for folder `file_id` on `server`.
    pub fn counter(&self, server: &str, file_id: u64) -> Option<u64> {
        self.server(server).and_then(|pins| pins.counters.get(&file_id.to_string()).copied())
    }

    /// Records a metadata counter seen for folder `file_id`; saves when it is higher than the known one.
    pub fn record_counter(&mut self, server: &str, file_id: u64, counter: u64) -> Result<(), TrustError> {
        let pins = self.pins.servers.entry(server.to_owned()).or_default();
        let known = pins.counters.entry(file_id.to_string()).or_insert(0);
        if counter > *known {
            *known = counter;
            // This device wrote that version: its digest is taken at the next read.
            pins.digests.remove(&file_id.to_string());
            self.save()?;
        }
        Ok(())
    }

    /// Writes the pin file atomically (temporary file, fsync, rename), readable by the owner only.
    fn save(&self) -> Result<(), TrustError> {
        let io = |reason: String| TrustError::Io { path: self.path.clone(), reason };
        let directory = self.path.parent().ok_or_else(|| io("no parent directory".into()))?;
        std::fs::create_dir_all(directory).map_err(|error| io(error.to_string()))?;
        // A name of its own per writer: several cloakfs processes may save at once.
        let temporary = self.path.with_extension(format!(
            "json.{}.{}.tmp",
            std::process::id(),
            crate::crypto::server_name::random_server_name()
        ));
        let json = serde_json::to_vec_pretty(&self.pins).expect("pins serialise");
        {
            use std::io::Write as _;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&temporary).map_err(|error| io(error.to_string()))?;
            file.write_all(&json).map_err(|error| io(error.to_string()))?;
            file.sync_all().map_err(|error| io(error.to_string()))?;
        }
        std::fs::rename(&temporary, &self.path).map_err(|error| io(error.to_string()))
    }
}

/// Certificate trust for checking a folder's members without its key (a file-drop uploader): issued by the
/// (pinned) server key for that user id, and equal to the certificate pinned for the user, if one is. Members'
/// own reads check pins in src/vault/members.rs, where a new certificate vouched for in the audit trail is
/// accepted; new users are pinned there once the change that brought them in is accepted.
pub struct PinnedCertificates<'a> {
    /// The server (pin key).
    pub server: &'a str,
    /// The server's pinned public key.
    pub server_key: &'a PublicKey,
    /// The pin store (pins new users' certificates on first sight).
    pub store: std::sync::Mutex<&'a mut TrustStore>,
}

impl crate::metadata::CertificateTrust for PinnedCertificates<'_> {
    fn check(&self, user_id: &str, certificate: &UserCertificate) -> Result<(), crate::metadata::MetadataError> {
        let untrusted = |reason: String| crate::metadata::MetadataError::UntrustedCertificate {
            user_id: user_id.to_owned(),
            reason,
        };
        certificate.verify_for_user(self.server_key, user_id).map_err(|error| untrusted(error.to_string()))?;
        let store = self.store.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let presented = certificate.fingerprint();
        match store.pinned_certificate(self.server, user_id) {
            Some(pinned) if pinned != presented => Err(untrusted(
                TrustError::CertificateChanged {
                    server: self.server.to_owned(),
                    user: user_id.to_owned(),
                    pinned: pinned.to_owned(),
                    presented,
                }
                .to_string(),
            )),
            _ => Ok(()),
        }
    }
}
