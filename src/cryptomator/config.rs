//! The vault configuration, `vault.cryptomator`: a JWT signed with HMAC (HS256, HS384 or HS512) under the
//! masterkey (encryption key followed by MAC key), naming the vault format (8), the cipher combination and
//! the name-shortening threshold. Its `kid` header says where the key comes from: only
//! `masterkeyfile:NAME` (a masterkey file beside it) is read here.

use aws_lc_rs::hmac;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Value};

use super::{CryptomatorError, Masterkey};
use crate::crypto::secret::constant_time_eq;

/// The configuration's file name in the vault's root.
pub const CONFIG_FILE: &str = "vault.cryptomator";
/// The only vault format this build reads and writes.
pub const VAULT_FORMAT: u64 = 8;
/// The name-shortening threshold of new vaults (Cryptomator's default).
pub const DEFAULT_SHORTENING_THRESHOLD: usize = 220;

/// How file contents (and headers) are encrypted; names are AES-SIV in both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipherCombo {
    /// AES-GCM headers and chunks (the default since Cryptomator 1.6).
    SivGcm,
    /// AES-CTR with HMAC-SHA256 (encrypt-then-MAC), the format of older vaults.
    SivCtrMac,
}

impl CipherCombo {
    /// The name in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Self::SivGcm => "SIV_GCM",
            Self::SivCtrMac => "SIV_CTRMAC",
        }
    }

    /// The combination named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "SIV_GCM" => Some(Self::SivGcm),
            "SIV_CTRMAC" => Some(Self::SivCtrMac),
            _ => None,
        }
    }
}

/// A verified vault configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultConfig {
    /// The vault's id (`jti`).
    pub id: String,
    /// The content encryption.
    pub cipher_combo: CipherCombo,
    /// Encrypted names (with `.c9r`) longer than this are shortened to a `.c9s` entry.
    pub shortening_threshold: usize,
    /// The masterkey file's name (from `kid`).
    pub masterkey_file: String,
}

/// A configuration as read, before its signature is checked: only where the key is may be used from it.
#[derive(Debug, Clone)]
pub struct UnverifiedConfig {
    text: String,
    header: Value,
    payload: Value,
    signature: Vec<u8>,
}

fn decode_part(part: &str) -> Option<Vec<u8>> {
    // Cryptomator writes base64url without padding; some tools write standard base64 with padding.
    [&URL_SAFE_NO_PAD, &URL_SAFE, &STANDARD_NO_PAD, &STANDARD].iter().find_map(|engine| engine.decode(part).ok())
}

impl UnverifiedConfig {
    /// Parses the JWT's three parts.
    pub fn parse(bytes: &[u8]) -> Result<Self, CryptomatorError> {
        let malformed = |reason: &str| CryptomatorError::malformed(CONFIG_FILE, reason);
        let text = std::str::from_utf8(bytes).map_err(|_| malformed("not UTF-8"))?.trim().to_owned();
        let parts: Vec<&str> = text.split('.').collect();
        let [header, payload, signature] = parts[..] else {
            return Err(malformed("not a JWT (three parts separated by dots)"));
        };
        let json = |part: &str, what: &str| -> Result<Value, CryptomatorError> {
            let bytes = decode_part(part).ok_or_else(|| malformed(&format!("the {what} is not base64")))?;
            let value: Value =
                serde_json::from_slice(&bytes).map_err(|_| malformed(&format!("the {what} is not JSON")))?;
            value.is_object().then_some(value).ok_or_else(|| malformed(&format!("the {what} is not an object")))
        };
        Ok(Self {
            header: json(header, "header")?,
            payload: json(payload, "payload")?,
            signature: decode_part(signature).ok_or_else(|| malformed("the signature is not base64"))?,
            text: format!("{header}.{payload}"),
        })
    }

    /// The masterkey file the `kid` names; refuses other key schemes (Cryptomator Hub) and any name that is
    /// not a plain file name in the vault's root.
    pub fn masterkey_file(&self) -> Result<String, CryptomatorError> {
        let kid = self.header.get("kid").and_then(Value::as_str).unwrap_or_default();
        let Some(name) = kid.strip_prefix("masterkeyfile:") else {
            return Err(CryptomatorError::Unsupported {
                path: CONFIG_FILE.into(),
                reason: format!(
                    "the vault's key comes from {kid:?}, not from a masterkey file: Cryptomator Hub vaults are \
                     not supported; only passphrase vaults are"
                ),
            });
        };
        if name.is_empty() || name.contains(['/', '\\']) || name == "." || name == ".." {
            return Err(CryptomatorError::malformed(CONFIG_FILE, format!("kid names {name:?}, not a file name")));
        }
        Ok(name.to_owned())
    }

    /// The format number, unverified: for refusing other formats before asking for a passphrase.
    pub fn claimed_format(&self) -> Option<u64> {
        self.payload.get("format").and_then(Value::as_u64)
    }

    /// Checks the signature with `masterkey` and returns the configuration.
    pub fn verify(&self, masterkey: &Masterkey) -> Result<VaultConfig, CryptomatorError> {
        let algorithm = match self.header.get("alg").and_then(Value::as_str) {
            Some("HS256") => hmac::HMAC_SHA256,
            Some("HS384") => hmac::HMAC_SHA384,
            Some("HS512") => hmac::HMAC_SHA512,
            other => {
                return Err(CryptomatorError::malformed(
                    CONFIG_FILE,
                    format!("signature algorithm {other:?} (HS256, HS384 or HS512 expected)"),
                ))
            }
        };
        let key = hmac::Key::new(algorithm, masterkey.encryption_then_mac());
        let expected = hmac::sign(&key, self.text.as_bytes());
        if !constant_time_eq(expected.as_ref(), &self.signature) {
            return Err(CryptomatorError::tampered(
                CONFIG_FILE,
                "the signature (it was changed, or belongs to another vault's masterkey)",
            ));
        }
        let format = self.claimed_format();
        if format != Some(VAULT_FORMAT) {
            return Err(unsupported_format(format));
        }
        let combo_name = self.payload.get("cipherCombo").and_then(Value::as_str).unwrap_or_default();
        let cipher_combo = CipherCombo::from_name(combo_name).ok_or_else(|| CryptomatorError::Unsupported {
            path: CONFIG_FILE.into(),
            reason: format!("cipher combination {combo_name:?} (SIV_GCM or SIV_CTRMAC expected)"),
        })?;
        // Early format-8 vaults (Cryptomator 1.6.0) call the threshold maxFilenameLen.
        let threshold = self.payload.get("shorteningThreshold").or_else(|| self.payload.get("maxFilenameLen"));
        let shortening_threshold = match threshold {
            None => DEFAULT_SHORTENING_THRESHOLD,
            Some(value) => value
                .as_u64()
                .filter(|&threshold| (36..=4096).contains(&threshold))
                .ok_or_else(|| CryptomatorError::malformed(CONFIG_FILE, format!("shorteningThreshold {value}")))?
                as usize,
        };
        Ok(VaultConfig {
            id: self.payload.get("jti").and_then(Value::as_str).unwrap_or_default().to_owned(),
            cipher_combo,
            shortening_threshold,
            masterkey_file: self.masterkey_file()?,
        })
    }
}

/// The refusal of a vault format other than 8, saying which Cryptomator version upgrades it.
pub fn unsupported_format(format: Option<u64>) -> CryptomatorError {
    let reason = match format {
        Some(format @ 1..=7) => format!(
            "vault format {format}: cloakfs reads format 8 only. Open the vault once with Cryptomator 1.6 or \
             later (desktop), which offers to upgrade it to format 8{}",
            if format < 6 { " (formats older than 6 need Cryptomator 1.5 first)" } else { "" }
        ),
        Some(format) => {
            format!("vault format {format} is newer than this cloakfs (format 8): upgrade cloakfs")
        }
        None => "no vault format in the configuration".into(),
    };
    CryptomatorError::Unsupported { path: CONFIG_FILE.into(), reason }
}

impl VaultConfig {
    /// A new configuration for a fresh vault.
    pub fn new(cipher_combo: CipherCombo) -> Self {
        Self {
            id: crate::crypto::server_name::random_uuid(),
            cipher_combo,
            shortening_threshold: DEFAULT_SHORTENING_THRESHOLD,
            masterkey_file: super::masterkey::MASTERKEY_FILE.into(),
        }
    }

    /// The signed JWT (HS256, base64url without padding, as Cryptomator writes it).
    pub fn to_jwt(&self, masterkey: &Masterkey) -> String {
        let header = json!({"kid": format!("masterkeyfile:{}", self.masterkey_file), "typ": "JWT", "alg": "HS256"});
        let payload = json!({
            "jti": self.id,
            "format": VAULT_FORMAT,
            "cipherCombo": self.cipher_combo.name(),
            "shorteningThreshold": self.shortening_threshold,
        });
        let text =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(payload.to_string()));
        let key = hmac::Key::new(hmac::HMAC_SHA256, masterkey.encryption_then_mac());
        let signature = hmac::sign(&key, text.as_bytes());
        format!("{text}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_configuration_verifies_under_its_key_only() {
        let masterkey = Masterkey::generate();
        let config = VaultConfig::new(CipherCombo::SivCtrMac);
        let jwt = config.to_jwt(&masterkey);
        let parsed = UnverifiedConfig::parse(jwt.as_bytes()).unwrap();
        assert_eq!(parsed.masterkey_file().unwrap(), "masterkey.cryptomator");
        assert_eq!(parsed.verify(&masterkey).unwrap(), config);
        let error = parsed.verify(&Masterkey::generate()).unwrap_err();
        assert!(matches!(error, CryptomatorError::Tampered { .. }), "{error}");
    }

    #[test]
    fn a_changed_payload_is_refused() {
        let masterkey = Masterkey::generate();
        let jwt = VaultConfig::new(CipherCombo::SivGcm).to_jwt(&masterkey);
        let parts: Vec<&str> = jwt.split('.').collect();
        let payload =
            URL_SAFE_NO_PAD.encode(r#"{"jti":"x","format":8,"cipherCombo":"SIV_CTRMAC","shorteningThreshold":220}"#);
        let forged = format!("{}.{payload}.{}", parts[0], parts[2]);
        let error = UnverifiedConfig::parse(forged.as_bytes()).unwrap().verify(&masterkey).unwrap_err();
        assert!(matches!(error, CryptomatorError::Tampered { .. }), "{error}");
    }

    #[test]
    fn other_formats_and_key_schemes_are_refused_with_what_to_do() {
        let masterkey = Masterkey::generate();
        let sign = |header: &str, payload: &str| {
            let text = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
            let key = hmac::Key::new(hmac::HMAC_SHA256, masterkey.encryption_then_mac());
            format!("{text}.{}", URL_SAFE_NO_PAD.encode(hmac::sign(&key, text.as_bytes()).as_ref()))
        };
        let header = r#"{"kid":"masterkeyfile:masterkey.cryptomator","typ":"JWT","alg":"HS256"}"#;
        let seven = sign(header, r#"{"format":7,"cipherCombo":"SIV_CTRMAC"}"#);
        let error = UnverifiedConfig::parse(seven.as_bytes()).unwrap().verify(&masterkey).unwrap_err();
        assert!(error.to_string().contains("Cryptomator 1.6"), "{error}");
        let hub = sign(r#"{"kid":"hub+https://hub.example/vaults/1","typ":"JWT","alg":"ES384"}"#, "{}");
        let error = UnverifiedConfig::parse(hub.as_bytes()).unwrap().masterkey_file().unwrap_err();
        assert!(error.to_string().contains("Cryptomator Hub"), "{error}");
        let escape = sign(r#"{"kid":"masterkeyfile:../x","typ":"JWT","alg":"HS256"}"#, "{}");
        assert!(UnverifiedConfig::parse(escape.as_bytes()).unwrap().masterkey_file().is_err());
    }

    #[test]
    fn padded_standard_base64_parts_are_read_too() {
        let masterkey = Masterkey::generate();
        let header = STANDARD.encode(r#"{"kid": "masterkeyfile:masterkey.cryptomator", "alg": "HS256", "typ": "JWT"}"#);
        let payload =
            STANDARD.encode(r#"{"jti": "a", "format": 8, "cipherCombo": "SIV_GCM", "shorteningThreshold": 220}"#);
        let text = format!("{header}.{payload}");
        let key = hmac::Key::new(hmac::HMAC_SHA256, masterkey.encryption_then_mac());
        let jwt = format!("{text}.{}", URL_SAFE.encode(hmac::sign(&key, text.as_bytes()).as_ref()));
        let config = UnverifiedConfig::parse(jwt.as_bytes()).unwrap().verify(&masterkey).unwrap();
        assert_eq!(config.cipher_combo, CipherCombo::SivGcm);
    }
}
