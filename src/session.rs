//! A user's unlocked end-to-end encryption session with a server: the server key and the user's
//! certificate, both verified and pinned, and the private key unwrapped with the mnemonic.

use crate::crypto::private_key_wrap::{unwrap_private_key, wrap_private_key, PrivateKeyKdf, PrivateKeyWrapError};
use crate::crypto::{IdentityError, Mnemonic, PrivateIdentity, PublicKey, UserCertificate};
use crate::storage::{NextcloudClient, RemoteError};
use crate::trust::{TrustError, TrustStore};

/// Why a session could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Talking to the server failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// A pinned key or certificate changed.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// The private key could not be unwrapped (wrong mnemonic, malformed).
    #[error(transparent)]
    PrivateKey(#[from] PrivateKeyWrapError),
    /// A certificate is unusable or not issued by the server key.
    #[error("certificate: {0}")]
    Certificate(#[from] IdentityError),
    /// The account has no end-to-end encryption keys yet.
    #[error("user {0:?} has no end-to-end encryption keys on this server yet: run `cloakfs keys init`")]
    NoKeys(String),
    /// Keys exist already.
    #[error("user {0:?} already has end-to-end encryption keys on this server: use `cloakfs keys check`")]
    KeysExist(String),
    /// The server returned a certificate for a different key than the private key.
    #[error(
        "the certificate on the server does not belong to the private key (server returned a foreign certificate)"
    )]
    CertificateMismatch,
}

/// An unlocked session.
#[derive(Debug)]
pub struct Session {
    /// The client.
    pub client: NextcloudClient,
    /// The server's (pinned) key.
    pub server_key: PublicKey,
    /// The user's private key.
    pub identity: PrivateIdentity,
    /// The user's (pinned) certificate.
    pub certificate: UserCertificate,
    /// The KDF that unwrapped the private key.
    pub kdf: PrivateKeyKdf,
}

fn server_id(client: &NextcloudClient) -> String {
    client.config().base_url.as_str().trim_end_matches('/').to_owned()
}

/// Fetches the server key and checks it against the pin (pinning it on first use).
pub async fn pinned_server_key(client: &NextcloudClient, trust: &mut TrustStore) -> Result<PublicKey, SessionError> {
    let key = client.server_key().await?;
    trust.check_server_key(&server_id(client), &key)?;
    Ok(key)
}

/// Fetches `user`'s certificate, verifies it against the server key and checks its pin.
pub async fn pinned_certificate(
    client: &NextcloudClient,
    trust: &mut TrustStore,
    server_key: &PublicKey,
    user: &str,
) -> Result<Option<UserCertificate>, SessionError> {
    let Some(mut keys) = client.public_keys(&[user]).await? else { return Ok(None) };
    let Some(pem) = keys.remove(user) else { return Ok(None) };
    let certificate = UserCertificate::from_pem(&pem)?;
    certificate.verify_for_user(server_key, user)?;
    trust.check_certificate(&server_id(client), user, &certificate)?;
    Ok(Some(certificate))
}

/// Creates keys for a user who has none: key pair, certificate request, certificate (verified and pinned),
/// mnemonic, wrapped private key uploaded. Returns the session and the mnemonic to show once.
pub async fn initialize_keys(
    client: NextcloudClient,
    trust: &mut TrustStore,
) -> Result<(Session, Mnemonic), SessionError> {
    let user = client.config().user.clone();
    let server_key = pinned_server_key(&client, trust).await?;
    if client.public_keys(&[&user]).await?.is_some() || client.wrapped_private_key().await?.is_some() {
        return Err(SessionError::KeysExist(user));
    }
    trust.ensure_no_pinned_certificate(&server_id(&client), &user)?;
    let identity = PrivateIdentity::generate()?;
    let certificate_pem = client.submit_certificate_request(&identity.certificate_request_pem(&user)?).await?;
    let certificate = UserCertificate::from_pem(&certificate_pem)?;
    certificate.verify_for_user(&server_key, &user)?;
    if !identity.matches_certificate(&certificate) {
        return Err(SessionError::CertificateMismatch);
    }
    trust.check_certificate(&server_id(&client), &user, &certificate)?;
    let mnemonic = Mnemonic::generate();
    client.store_wrapped_private_key(&wrap_private_key(&identity, &mnemonic)).await?;
    let session = Session { client, server_key, identity, certificate, kdf: PrivateKeyKdf::Sha256Iter600k };
    Ok((session, mnemonic))
}

/// Unlocks an existing account with its mnemonic.
pub async fn unlock(
    client: NextcloudClient,
    trust: &mut TrustStore,
    mnemonic: &Mnemonic,
) -> Result<Session, SessionError> {
    let user = client.config().user.clone();
    let server_key = pinned_server_key(&client, trust).await?;
    let certificate = pinned_certificate(&client, trust, &server_key, &user)
        .await?
        .ok_or_else(|| SessionError::NoKeys(user.clone()))?;
    let wrapped = client.wrapped_private_key().await?.ok_or_else(|| SessionError::NoKeys(user.clone()))?;
    let (identity, kdf) = unwrap_private_key(&wrapped, mnemonic)?;
    if !identity.matches_certificate(&certificate) {
        return Err(SessionError::CertificateMismatch);
    }
    Ok(Session { client, server_key, identity, certificate, kdf })
}
