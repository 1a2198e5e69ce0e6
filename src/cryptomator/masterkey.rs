//! The masterkey and its file, `masterkey.cryptomator`: two 256-bit keys (encryption and MAC), each wrapped
//! with AES key wrap (RFC 3394) under a key derived from the passphrase with scrypt, and a MAC over the
//! file's version. The keys live in locked memory and are wiped when the [`Masterkey`] is dropped.

use aws_lc_rs::hmac;
use aws_lc_rs::key_wrap::{KeyEncryptionKey, KeyWrap as _, AES_256};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization as _;
use zeroize::Zeroizing;

use super::CryptomatorError;
use crate::crypto::locked::LockedBytes;
use crate::crypto::secret::{constant_time_eq, random_bytes};

/// The masterkey file's name in the vault's root.
pub const MASTERKEY_FILE: &str = "masterkey.cryptomator";
/// The `version` a masterkey file of a format-8 vault carries (the vault format itself is in
/// `vault.cryptomator`).
pub const MASTERKEY_VERSION: u32 = 999;
/// scrypt cost of new vaults (Cryptomator's default).
pub const SCRYPT_COST: u64 = 32768;
/// scrypt block size of new vaults (Cryptomator's default).
pub const SCRYPT_BLOCK_SIZE: u32 = 8;
/// The highest scrypt cost accepted from a file (2^20: about 1 GiB at block size 8); a larger one is refused
/// rather than letting a file make this device allocate without bound.
const MAX_SCRYPT_COST: u64 = 1 << 20;
/// The highest block size accepted from a file.
const MAX_SCRYPT_BLOCK_SIZE: u32 = 32;

/// The two keys of a vault: `encryption` (file headers, names with `mac`) and `mac` (names, CTRMAC chunks,
/// the version MAC). In locked memory; wiped on drop; `Debug` shows nothing.
pub struct Masterkey {
    /// encryption key (32 bytes) followed by MAC key (32 bytes).
    keys: LockedBytes,
}

impl std::fmt::Debug for Masterkey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Masterkey(..)")
    }
}

impl Masterkey {
    /// Two fresh random keys.
    pub fn generate() -> Self {
        let mut keys = LockedBytes::zeroed(64);
        random_bytes(keys.as_mut_slice());
        Self { keys }
    }

    /// The keys from their raw bytes (tests and recovery tools).
    pub fn from_parts(encryption: &[u8; 32], mac: &[u8; 32]) -> Self {
        let mut keys = LockedBytes::zeroed(64);
        keys.as_mut_slice()[..32].copy_from_slice(encryption);
        keys.as_mut_slice()[32..].copy_from_slice(mac);
        Self { keys }
    }

    /// The encryption key.
    pub fn encryption_key(&self) -> &[u8] {
        &self.keys.as_slice()[..32]
    }

    /// The MAC key.
    pub fn mac_key(&self) -> &[u8] {
        &self.keys.as_slice()[32..]
    }

    /// Encryption key followed by MAC key: the key of the vault configuration's JWT signature.
    pub fn encryption_then_mac(&self) -> &[u8] {
        self.keys.as_slice()
    }

    /// HMAC-SHA256 under the MAC key.
    pub fn mac(&self, data: &[u8]) -> [u8; 32] {
        let key = hmac::Key::new(hmac::HMAC_SHA256, self.mac_key());
        let mut out = [0u8; 32];
        out.copy_from_slice(hmac::sign(&key, data).as_ref());
        out
    }
}

/// `masterkey.cryptomator` as stored (Cryptomator's field names).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MasterkeyFile {
    /// 999 for format-8 vaults; older vaults carry their vault format here.
    pub version: u32,
    /// The scrypt salt (base64).
    pub scrypt_salt: String,
    /// The scrypt cost N.
    pub scrypt_cost_param: u64,
    /// The scrypt block size r.
    pub scrypt_block_size: u32,
    /// The wrapped encryption key (base64).
    pub primary_master_key: String,
    /// The wrapped MAC key (base64).
    pub hmac_master_key: String,
    /// HMAC-SHA256 of `version` (32-bit big endian) under the MAC key (base64).
    pub version_mac: String,
}

impl MasterkeyFile {
    /// Parses the file's JSON; `path` names it in errors.
    pub fn parse(json: &[u8], path: &str) -> Result<Self, CryptomatorError> {
        serde_json::from_slice(json).map_err(|error| CryptomatorError::malformed(path, error.to_string()))
    }

    /// The file as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plain fields serialize")
    }

    /// Wraps `masterkey` under `passphrase` (NFC-normalized, as Cryptomator does) with a fresh salt.
    pub fn create(masterkey: &Masterkey, passphrase: &str) -> Self {
        let mut salt = [0u8; 8];
        random_bytes(&mut salt);
        let kek = derive_kek(passphrase, &salt, SCRYPT_COST, SCRYPT_BLOCK_SIZE).expect("default parameters are valid");
        let wrap = |key: &[u8]| {
            let kek = KeyEncryptionKey::new(&AES_256, &kek[..]).expect("a 32-byte key");
            let mut out = [0u8; 40];
            kek.wrap(key, &mut out).expect("a 32-byte key wraps to 40 bytes");
            STANDARD.encode(out)
        };
        Self {
            version: MASTERKEY_VERSION,
            scrypt_salt: STANDARD.encode(salt),
            scrypt_cost_param: SCRYPT_COST,
            scrypt_block_size: SCRYPT_BLOCK_SIZE,
            primary_master_key: wrap(masterkey.encryption_key()),
            hmac_master_key: wrap(masterkey.mac_key()),
            version_mac: STANDARD.encode(masterkey.mac(&MASTERKEY_VERSION.to_be_bytes())),
        }
    }

    /// Unwraps the keys with `passphrase` and checks the version MAC; `path` names the file in errors.
    pub fn unlock(&self, passphrase: &str, path: &str) -> Result<Masterkey, CryptomatorError> {
        let malformed = |reason: &str| CryptomatorError::malformed(path, reason);
        let salt = STANDARD.decode(&self.scrypt_salt).map_err(|_| malformed("scryptSalt is not base64"))?;
        let kek = derive_kek(passphrase, &salt, self.scrypt_cost_param, self.scrypt_block_size)
            .map_err(|reason| malformed(&reason))?;
        let unwrap = |field: &str, wrapped: &str| -> Result<Zeroizing<[u8; 32]>, CryptomatorError> {
            let wrapped = STANDARD.decode(wrapped).map_err(|_| malformed(&format!("{field} is not base64")))?;
            if wrapped.len() != 40 {
                return Err(malformed(&format!("{field} is {} bytes, not 40", wrapped.len())));
            }
            let kek = KeyEncryptionKey::new(&AES_256, &kek[..]).expect("a 32-byte key");
            let mut out = Zeroizing::new([0u8; 32]);
            kek.unwrap(&wrapped, &mut out[..])
                .map_err(|_| CryptomatorError::WrongPassphrase { path: path.to_owned() })?;
            Ok(out)
        };
        let encryption = unwrap("primaryMasterKey", &self.primary_master_key)?;
        let mac = unwrap("hmacMasterKey", &self.hmac_master_key)?;
        let masterkey = Masterkey::from_parts(&encryption, &mac);
        let version_mac = STANDARD.decode(&self.version_mac).map_err(|_| malformed("versionMac is not base64"))?;
        if !constant_time_eq(&masterkey.mac(&self.version.to_be_bytes()), &version_mac) {
            return Err(CryptomatorError::tampered(path, "the version MAC"));
        }
        Ok(masterkey)
    }
}

/// scrypt(passphrase in NFC, salt, N, r, p = 1) to 32 bytes; refuses parameters outside sane bounds.
fn derive_kek(passphrase: &str, salt: &[u8], cost: u64, block_size: u32) -> Result<Zeroizing<[u8; 32]>, String> {
    if !cost.is_power_of_two() || !(2..=MAX_SCRYPT_COST).contains(&cost) {
        return Err(format!("scryptCostParam {cost} is not a power of two between 2 and {MAX_SCRYPT_COST}"));
    }
    if !(1..=MAX_SCRYPT_BLOCK_SIZE).contains(&block_size) {
        return Err(format!("scryptBlockSize {block_size} is not between 1 and {MAX_SCRYPT_BLOCK_SIZE}"));
    }
    let params = scrypt::Params::new(cost.trailing_zeros() as u8, block_size, 1, 32)
        .map_err(|error| format!("scrypt parameters: {error}"))?;
    let normalized = Zeroizing::new(passphrase.nfc().collect::<String>());
    let mut kek = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(normalized.as_bytes(), salt, &params, &mut kek[..]).map_err(|error| format!("scrypt: {error}"))?;
    Ok(kek)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes_key_wrap_matches_rfc_3394_section_4_6() {
        // RFC 3394 §4.6: 256 bits of key data wrapped with a 256-bit KEK.
        let kek = hex::decode("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F").unwrap();
        let data = hex::decode("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F").unwrap();
        let kek = KeyEncryptionKey::new(&AES_256, &kek).unwrap();
        let mut out = [0u8; 40];
        kek.wrap(&data, &mut out).unwrap();
        assert_eq!(
            hex::encode_upper(out),
            "28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21"
        );
    }

    #[test]
    fn scrypt_matches_rfc_7914_section_12() {
        // RFC 7914 §12, second vector, truncated to the 32 bytes cloakfs derives.
        let params = scrypt::Params::new(10, 8, 16, 32).unwrap();
        let mut out = [0u8; 32];
        scrypt::scrypt(b"password", b"NaCl", &params, &mut out).unwrap();
        assert_eq!(hex::encode(out), "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162");
    }

    #[test]
    fn a_created_file_unlocks_with_its_passphrase_only_and_its_version_is_authenticated() {
        let masterkey = Masterkey::generate();
        let file = MasterkeyFile::create(&masterkey, "correct horse");
        let json = file.to_json();
        let parsed = MasterkeyFile::parse(json.as_bytes(), "masterkey.cryptomator").unwrap();
        let unlocked = parsed.unlock("correct horse", "masterkey.cryptomator").unwrap();
        assert_eq!(unlocked.encryption_then_mac(), masterkey.encryption_then_mac());
        assert!(matches!(
            parsed.unlock("wrong horse", "masterkey.cryptomator"),
            Err(CryptomatorError::WrongPassphrase { .. })
        ));
        let mut downgraded = parsed.clone();
        downgraded.version = 7;
        let error = downgraded.unlock("correct horse", "masterkey.cryptomator").unwrap_err();
        assert!(matches!(error, CryptomatorError::Tampered { .. }), "{error}");
    }

    #[test]
    fn passphrases_are_compared_in_nfc() {
        let masterkey = Masterkey::generate();
        // "é" precomposed, unlocked with "e" + combining acute.
        let file = MasterkeyFile::create(&masterkey, "caf\u{e9}");
        assert!(file.unlock("cafe\u{301}", "m").is_ok());
    }

    #[test]
    fn hostile_scrypt_parameters_are_refused_before_any_work() {
        let mut file = MasterkeyFile::create(&Masterkey::generate(), "p");
        file.scrypt_cost_param = 1 << 30;
        let error = file.unlock("p", "masterkey.cryptomator").unwrap_err();
        assert!(error.to_string().contains("scryptCostParam"), "{error}");
        file.scrypt_cost_param = 1000;
        assert!(file.unlock("p", "masterkey.cryptomator").is_err());
    }
}
