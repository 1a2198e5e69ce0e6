//! Where the app password lives: the OS keyring (Secret Service on Linux, Keychain, Credential Manager)
//! when one is available; otherwise nowhere, and it is asked for each time (or taken from
//! CLOAKFS_PASSWORD). Never a plaintext config file.

use zeroize::Zeroizing;

const SERVICE: &str = "cloakfs";

fn entry(server: &str, user: &str) -> Option<keyring::Entry> {
    let account = format!("{user}@{}", server.trim_end_matches('/'));
    keyring::Entry::new(SERVICE, &account).ok()
}

/// The stored app password, if a keyring is available and holds one.
pub fn load(server: &str, user: &str) -> Option<Zeroizing<String>> {
    match entry(server, user)?.get_password() {
        Ok(password) => Some(Zeroizing::new(password)),
        Err(keyring::Error::NoEntry) => None,
        Err(error) => {
            tracing::debug!(%error, "no usable OS keyring");
            None
        }
    }
}

/// Stores the app password in the OS keyring; `Err` says why it could not.
pub fn store(server: &str, user: &str, password: &str) -> Result<(), String> {
    let entry = entry(server, user).ok_or_else(|| "no OS keyring".to_owned())?;
    entry.set_password(password).map_err(|error| error.to_string())
}

/// Removes a stored app password (ignores absence).
pub fn forget(server: &str, user: &str) -> Result<(), String> {
    match entry(server, user).map(|entry| entry.delete_credential()) {
        None | Some(Ok(())) | Some(Err(keyring::Error::NoEntry)) => Ok(()),
        Some(Err(error)) => Err(error.to_string()),
    }
}
