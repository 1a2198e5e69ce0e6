//! RSA identities: a user's key pair, the certificates the server issues, and the server's own key.
//!
//! RSA runs on AWS-LC (through `aws-lc-rs`), whose RSA decryption is constant-time; see THREAT-MODEL.md for
//! why the `rsa` crate (RUSTSEC-2023-0071, Marvin) is not used. ASN.1 structures come from RustCrypto's `der`,
//! `spki` and `x509-cert`.
//!
//! Nextcloud's certificates are unusual: issuer == subject, serial number 0, and signed by the server's
//! key (not by a CA certificate), with SHA-1 or SHA-256. They are verified with a raw signature check of the
//! TBS part against the `/server-key` public key, exactly as the desktop client's `X509_verify` does; no
//! path building.

use std::fmt;
use std::time::{Duration, SystemTime};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{
    KeyPair as RsaKeyPair, KeySize, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey,
    PublicEncryptingKey, OAEP_SHA256_MGF1SHA256,
};
use aws_lc_rs::signature::{self, UnparsedPublicKey};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use const_oid::db::{rfc4519, rfc5280 as oids_5280, rfc5912};
use const_oid::ObjectIdentifier;
use der::asn1::{BitString, GeneralizedTime, SetOfVec, UtcTime};
use der::{Any, Decode, DecodePem, Encode, EncodePem, Tag, Tagged};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::ext::pkix::BasicConstraints;
use x509_cert::ext::Extension;
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::request::{CertReq, CertReqInfo};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use x509_cert::{Certificate, TbsCertificate, Version};

use zeroize::Zeroizing;

use super::locked::LockedBytes;
use super::secret::MetadataKey;

/// Errors about keys, certificates and certificate requests.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A PEM or DER structure could not be parsed.
    #[error("cannot parse {what}: {reason}")]
    Malformed {
        /// What was being parsed.
        what: &'static str,
        /// The parser's complaint.
        reason: String,
    },
    /// The RSA key is not acceptable (wrong type, size or consistency).
    #[error("unusable RSA key: {0}")]
    BadKey(String),
    /// A certificate's signature does not verify against the given server key.
    #[error("certificate for {subject:?} was not signed by the pinned server key")]
    CertificateNotIssuedByServer {
        /// Common name of the certificate's subject.
        subject: String,
    },
    /// The certificate uses a signature algorithm we do not accept.
    #[error("certificate signature algorithm {0} is not accepted (SHA-1/256/384/512 with RSA are)")]
    UnsupportedSignatureAlgorithm(String),
    /// The certificate does not name the expected user.
    #[error("certificate names user {found:?}, expected {expected:?}")]
    WrongSubject {
        /// The user id expected.
        expected: String,
        /// The common name found.
        found: String,
    },
    /// A wrapped metadata key could not be unwrapped with this private key.
    #[error("cannot unwrap the metadata key with this private key (not addressed to this user, or altered)")]
    UnwrapFailed,
    /// Unwrapping gave something other than a 16-byte key.
    #[error("the unwrapped metadata key has {0} bytes, 16 expected")]
    WrongKeyLength(usize),
    /// A signature did not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// A crypto backend failure (should not happen).
    #[error("cryptographic backend failure: {0}")]
    Backend(&'static str),
}

fn malformed(what: &'static str, error: impl fmt::Display) -> IdentityError {
    IdentityError::Malformed { what, reason: error.to_string() }
}

/// Decodes a PEM block that must carry `label`; the DER is returned in a buffer wiped on drop.
fn decode_pem(pem: &str, label: &str, what: &'static str) -> Result<Zeroizing<Vec<u8>>, IdentityError> {
    let (found, der_bytes) = der::pem::decode_vec(pem.trim().as_bytes()).map_err(|error| malformed(what, error))?;
    let der_bytes = Zeroizing::new(der_bytes);
    if found != label {
        return Err(malformed(what, format!("label {found:?}, expected {label:?}")));
    }
    Ok(der_bytes)
}

/// A user's (or the server's) RSA-2048 private key, usable for OAEP unwrapping and PKCS#1 v1.5 signing.
///
/// The key is held only as PKCS#8 DER in locked memory ([`LockedBytes`]); the AWS-LC key object each
/// operation needs is built from it and freed (and wiped by AWS-LC) when the operation ends.
pub struct PrivateIdentity {
    pkcs8_der: LockedBytes,
    public_key: PublicKey,
}

impl fmt::Debug for PrivateIdentity {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "PrivateIdentity(public key {})", self.public_key.fingerprint())
    }
}

impl PrivateIdentity {
    /// Generates a fresh RSA-2048 key pair (e = 65537).
    pub fn generate() -> Result<Self, IdentityError> {
        let key_pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| IdentityError::Backend("RSA keygen"))?;
        let pkcs8 = key_pair.as_der().map_err(|_| IdentityError::Backend("PKCS#8 encoding"))?;
        Self::from_pkcs8_der(pkcs8.as_ref())
    }

    /// Loads a PKCS#8 DER private key.
    pub fn from_pkcs8_der(pkcs8_der: &[u8]) -> Result<Self, IdentityError> {
        RsaKeyPair::from_pkcs8(pkcs8_der).map_err(|error| IdentityError::BadKey(error.to_string()))?;
        let decrypting =
            PrivateDecryptingKey::from_pkcs8(pkcs8_der).map_err(|error| IdentityError::BadKey(error.to_string()))?;
        if decrypting.key_size_bits() < 2048 {
            return Err(IdentityError::BadKey(format!("{} bits; at least 2048 needed", decrypting.key_size_bits())));
        }
        let public_key = PublicKey::from_spki_der(
            decrypting.public_key().as_der().map_err(|_| IdentityError::Backend("SPKI encoding"))?.as_ref(),
        )?;
        Ok(Self { pkcs8_der: LockedBytes::from_slice(pkcs8_der), public_key })
    }

    /// The key for OAEP decryption, built for one operation.
    fn decrypting_key(&self) -> Result<OaepPrivateDecryptingKey, IdentityError> {
        let key = PrivateDecryptingKey::from_pkcs8(self.pkcs8_der.as_slice())
            .map_err(|error| IdentityError::BadKey(error.to_string()))?;
        OaepPrivateDecryptingKey::new(key).map_err(|_| IdentityError::Backend("OAEP key"))
    }

    /// The key for signing, built for one operation.
    fn signing_key(&self) -> Result<RsaKeyPair, IdentityError> {
        RsaKeyPair::from_pkcs8(self.pkcs8_der.as_slice()).map_err(|error| IdentityError::BadKey(error.to_string()))
    }

    /// Loads a `-----BEGIN PRIVATE KEY-----` (PKCS#8) PEM private key.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, IdentityError> {
        let der = decode_pem(pem, "PRIVATE KEY", "private key PEM")?;
        Self::from_pkcs8_der(&der)
    }

    /// The private key as PKCS#8 PEM text (wiped on drop).
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        let pem = der::pem::encode_string("PRIVATE KEY", der::pem::LineEnding::LF, self.pkcs8_der.as_slice())
            .expect("PEM encoding of a DER buffer cannot fail");
        Zeroizing::new(pem)
    }

    /// The matching public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// RSA-OAEP (SHA-256, MGF1-SHA-256, empty label) decryption of a wrapped 16-byte metadata key.
    pub fn unwrap_metadata_key(&self, wrapped: &[u8]) -> Result<MetadataKey, IdentityError> {
        let raw = self.oaep_decrypt(wrapped)?;
        MetadataKey::from_slice(&raw).ok_or(IdentityError::WrongKeyLength(raw.len()))
    }

    /// RSA-OAEP (SHA-256/MGF1-SHA-256) decryption of arbitrary short data (legacy formats wrap base64 text).
    pub fn oaep_decrypt(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, IdentityError> {
        let decrypting_key = self.decrypting_key()?;
        let mut plaintext = Zeroizing::new(vec![0u8; decrypting_key.min_output_size()]);
        let len = decrypting_key
            .decrypt(&OAEP_SHA256_MGF1SHA256, ciphertext, &mut plaintext, None)
            .map_err(|_| IdentityError::UnwrapFailed)?
            .len();
        plaintext.truncate(len);
        Ok(plaintext)
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 over `message`.
    pub fn sign_pkcs1_sha256(&self, message: &[u8]) -> Result<Vec<u8>, IdentityError> {
        let signing_key = self.signing_key()?;
        let mut signature_bytes = vec![0u8; signing_key.public_modulus_len()];
        signing_key
            .sign(&signature::RSA_PKCS1_SHA256, &aws_lc_rs::rand::SystemRandom::new(), message, &mut signature_bytes)
            .map_err(|_| IdentityError::Backend("RSA signing"))?;
        Ok(signature_bytes)
    }

    /// Checks that the key inside `certificate` is this key's public half.
    pub fn matches_certificate(&self, certificate: &UserCertificate) -> bool {
        certificate.public_key() == &self.public_key
    }

    /// A PKCS#10 certificate request for `user_id` (subject `CN=user_id`), signed with SHA-256, as PEM.
    pub fn certificate_request_pem(&self, user_id: &str) -> Result<String, IdentityError> {
        let info = CertReqInfo {
            version: x509_cert::request::Version::V1,
            subject: common_name_only(user_id)?,
            public_key: self.public_key.spki()?,
            attributes: SetOfVec::new(),
        };
        let info_der = info.to_der().map_err(|error| malformed("certificate request", error))?;
        let signature_bytes = self.sign_pkcs1_sha256(&info_der)?;
        let request = CertReq {
            info,
            algorithm: sha256_with_rsa(),
            signature: BitString::from_bytes(&signature_bytes).map_err(|error| malformed("signature", error))?,
        };
        request.to_pem(der::pem::LineEnding::LF).map_err(|error| malformed("certificate request", error))
    }

    /// Server side: issues a certificate for a verified request, Nextcloud style: issuer = subject, serial 0,
    /// `CA:TRUE`, SHA-256 with RSA, valid for `validity` from now. Refuses requests whose CN is not `user_id`
    /// or whose self-signature does not verify.
    pub fn issue_certificate(
        &self,
        request_pem: &str,
        user_id: &str,
        validity: Duration,
    ) -> Result<UserCertificate, IdentityError> {
        let request = CertReq::from_pem(request_pem.trim().as_bytes())
            .map_err(|error| malformed("certificate request", error))?;
        let info_der = request.info.to_der().map_err(|error| malformed("certificate request", error))?;
        let request_key = PublicKey::from_spki(&request.info.public_key)?;
        verify_rsa_signature(&request_key, &request.algorithm.oid, &info_der, request.signature.raw_bytes())?;
        let found = common_name(&request.info.subject).unwrap_or_default();
        if found != user_id {
            return Err(IdentityError::WrongSubject { expected: user_id.to_owned(), found });
        }
        let now = SystemTime::now();
        let tbs_certificate = TbsCertificate {
            version: Version::V3,
            serial_number: SerialNumber::new(&[0]).map_err(|error| malformed("serial number", error))?,
            signature: sha256_with_rsa(),
            issuer: request.info.subject.clone(),
            validity: Validity { not_before: x509_time(now)?, not_after: x509_time(now + validity)? },
            subject: request.info.subject.clone(),
            subject_public_key_info: request.info.public_key.clone(),
            issuer_unique_id: None,
            subject_unique_id: None,
            extensions: Some(vec![Extension {
                extn_id: oids_5280::ID_CE_BASIC_CONSTRAINTS,
                critical: false,
                extn_value: der::asn1::OctetString::new(
                    BasicConstraints { ca: true, path_len_constraint: None }
                        .to_der()
                        .map_err(|error| malformed("extension", error))?,
                )
                .map_err(|error| malformed("extension", error))?,
            }]),
        };
        let tbs_der = tbs_certificate.to_der().map_err(|error| malformed("certificate", error))?;
        let signature_bytes = self.sign_pkcs1_sha256(&tbs_der)?;
        let certificate = Certificate {
            tbs_certificate,
            signature_algorithm: sha256_with_rsa(),
            signature: BitString::from_bytes(&signature_bytes).map_err(|error| malformed("signature", error))?,
        };
        UserCertificate::from_der(&certificate.to_der().map_err(|error| malformed("certificate", error))?)
    }
}

/// An RSA public key (kept as its SubjectPublicKeyInfo DER).
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    spki_der: Vec<u8>,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "PublicKey({})", self.fingerprint())
    }
}

impl PublicKey {
    /// Parses SubjectPublicKeyInfo DER; only RSA keys of at least 2048 bits are accepted.
    pub fn from_spki_der(spki_der: &[u8]) -> Result<Self, IdentityError> {
        let spki = SubjectPublicKeyInfoOwned::from_der(spki_der).map_err(|error| malformed("public key", error))?;
        Self::from_spki(&spki)
    }

    fn from_spki(spki: &SubjectPublicKeyInfoOwned) -> Result<Self, IdentityError> {
        if spki.algorithm.oid != rfc5912::RSA_ENCRYPTION {
            return Err(IdentityError::BadKey(format!("algorithm {} is not RSA", spki.algorithm.oid)));
        }
        let spki_der = spki.to_der().map_err(|error| malformed("public key", error))?;
        let encrypting =
            PublicEncryptingKey::from_der(&spki_der).map_err(|error| IdentityError::BadKey(error.to_string()))?;
        if encrypting.key_size_bits() < 2048 {
            return Err(IdentityError::BadKey(format!("{} bits; at least 2048 needed", encrypting.key_size_bits())));
        }
        Ok(Self { spki_der })
    }

    /// Parses a `-----BEGIN PUBLIC KEY-----` PEM (what Nextcloud's `/server-key` returns).
    pub fn from_pem(pem: &str) -> Result<Self, IdentityError> {
        let der = decode_pem(pem, "PUBLIC KEY", "public key PEM")?;
        Self::from_spki_der(&der)
    }

    /// The key as `-----BEGIN PUBLIC KEY-----` PEM.
    pub fn to_pem(&self) -> String {
        der::pem::encode_string("PUBLIC KEY", der::pem::LineEnding::LF, &self.spki_der)
            .expect("PEM encoding of a DER buffer cannot fail")
    }

    /// The SubjectPublicKeyInfo DER.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    fn spki(&self) -> Result<SubjectPublicKeyInfoOwned, IdentityError> {
        SubjectPublicKeyInfoOwned::from_der(&self.spki_der).map_err(|error| malformed("public key", error))
    }

    /// Lowercase hex SHA-256 of the SubjectPublicKeyInfo DER: the fingerprint shown to users and pinned.
    pub fn fingerprint(&self) -> String {
        hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &self.spki_der))
    }

    /// RSA-OAEP (SHA-256/MGF1-SHA-256, empty label) encryption of a metadata key to this public key.
    pub fn wrap_metadata_key(&self, key: &MetadataKey) -> Result<Vec<u8>, IdentityError> {
        self.oaep_encrypt(key.as_bytes())
    }

    /// RSA-OAEP (SHA-256/MGF1-SHA-256, empty label) encryption of short data.
    pub fn oaep_encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, IdentityError> {
        let public =
            PublicEncryptingKey::from_der(&self.spki_der).map_err(|error| IdentityError::BadKey(error.to_string()))?;
        let oaep = OaepPublicEncryptingKey::new(public).map_err(|_| IdentityError::Backend("OAEP key"))?;
        let mut ciphertext = vec![0u8; oaep.ciphertext_size()];
        let len = oaep
            .encrypt(&OAEP_SHA256_MGF1SHA256, plaintext, &mut ciphertext, None)
            .map_err(|_| IdentityError::Backend("OAEP encryption"))?
            .len();
        ciphertext.truncate(len);
        Ok(ciphertext)
    }
}

/// A user certificate as Nextcloud's server issues them.
#[derive(Clone)]
pub struct UserCertificate {
    der: Vec<u8>,
    certificate: Certificate,
    public_key: PublicKey,
}

impl fmt::Debug for UserCertificate {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "UserCertificate(cn={:?}, key {})", self.common_name(), self.public_key.fingerprint())
    }
}

impl PartialEq for UserCertificate {
    fn eq(&self, other: &Self) -> bool {
        self.der == other.der
    }
}

impl UserCertificate {
    /// Parses DER. Serial number 0 and issuer == subject are accepted (Nextcloud issues such certificates).
    pub fn from_der(der_bytes: &[u8]) -> Result<Self, IdentityError> {
        let certificate = Certificate::from_der(der_bytes).map_err(|error| malformed("certificate", error))?;
        let public_key = PublicKey::from_spki(&certificate.tbs_certificate.subject_public_key_info)?;
        Ok(Self { der: der_bytes.to_vec(), certificate, public_key })
    }

    /// Parses a `-----BEGIN CERTIFICATE-----` PEM.
    pub fn from_pem(pem: &str) -> Result<Self, IdentityError> {
        let der_bytes = decode_pem(pem, "CERTIFICATE", "certificate PEM")?;
        Self::from_der(&der_bytes)
    }

    /// The certificate as PEM with LF line endings (the form Nextcloud stores in metadata).
    pub fn to_pem(&self) -> String {
        der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &self.der)
            .expect("PEM encoding of a DER buffer cannot fail")
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The parsed certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    /// The subject's common name (Nextcloud puts the user id there), if any.
    pub fn common_name(&self) -> Option<String> {
        common_name(&self.certificate.tbs_certificate.subject)
    }

    /// The certified public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// Lowercase hex SHA-256 of the certificate DER.
    pub fn fingerprint(&self) -> String {
        hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &self.der))
    }

    /// Verifies the certificate's signature against the server's public key (raw check of the TBS part,
    /// SHA-1 or SHA-2 with RSA PKCS#1 v1.5), as Nextcloud's clients do.
    pub fn verify_issued_by(&self, server_key: &PublicKey) -> Result<(), IdentityError> {
        let tbs_der = self.certificate.tbs_certificate.to_der().map_err(|error| malformed("certificate", error))?;
        let algorithm = &self.certificate.signature_algorithm.oid;
        if &self.certificate.tbs_certificate.signature.oid != algorithm {
            return Err(malformed("certificate", "inner and outer signature algorithms differ"));
        }
        verify_rsa_signature(server_key, algorithm, &tbs_der, self.certificate.signature.raw_bytes()).map_err(|error| {
            match error {
                IdentityError::BadSignature => {
                    IdentityError::CertificateNotIssuedByServer { subject: self.common_name().unwrap_or_default() }
                }
                other => other,
            }
        })
    }

    /// Verifies the certificate against the server key and checks that it names `user_id`.
    pub fn verify_for_user(&self, server_key: &PublicKey, user_id: &str) -> Result<(), IdentityError> {
        self.verify_issued_by(server_key)?;
        let found = self.common_name().unwrap_or_default();
        if found != user_id {
            return Err(IdentityError::WrongSubject { expected: user_id.to_owned(), found });
        }
        Ok(())
    }

    /// Wraps a metadata key to this certificate's public key (RSA-OAEP SHA-256) and base64-encodes it.
    pub fn wrap_metadata_key_base64(&self, key: &MetadataKey) -> Result<String, IdentityError> {
        Ok(BASE64.encode(self.public_key.wrap_metadata_key(key)?))
    }
}

/// Verifies an RSASSA-PKCS1-v1_5 signature whose hash is named by a `sha*WithRSAEncryption` OID.
pub fn verify_rsa_signature(
    key: &PublicKey,
    algorithm: &ObjectIdentifier,
    message: &[u8],
    signature_bytes: &[u8],
) -> Result<(), IdentityError> {
    let parameters = rsa_parameters(algorithm)?;
    UnparsedPublicKey::new(parameters, key.spki_der())
        .verify(message, signature_bytes)
        .map_err(|_| IdentityError::BadSignature)
}

fn rsa_parameters(algorithm: &ObjectIdentifier) -> Result<&'static signature::RsaParameters, IdentityError> {
    Ok(match *algorithm {
        rfc5912::SHA_1_WITH_RSA_ENCRYPTION => &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
        rfc5912::SHA_256_WITH_RSA_ENCRYPTION => &signature::RSA_PKCS1_2048_8192_SHA256,
        rfc5912::SHA_384_WITH_RSA_ENCRYPTION => &signature::RSA_PKCS1_2048_8192_SHA384,
        rfc5912::SHA_512_WITH_RSA_ENCRYPTION => &signature::RSA_PKCS1_2048_8192_SHA512,
        other => return Err(IdentityError::UnsupportedSignatureAlgorithm(other.to_string())),
    })
}

fn sha256_with_rsa() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned { oid: rfc5912::SHA_256_WITH_RSA_ENCRYPTION, parameters: Some(Any::null()) }
}

fn x509_time(time: SystemTime) -> Result<Time, IdentityError> {
    // RFC 5280: UTCTime through 2049, GeneralizedTime from 2050.
    match UtcTime::from_system_time(time) {
        Ok(utc) => Ok(Time::UtcTime(utc)),
        Err(_) => GeneralizedTime::from_system_time(time)
            .map(Time::GeneralTime)
            .map_err(|error| malformed("validity time", error)),
    }
}

/// A distinguished name holding only `CN=<user_id>` as a UTF8String.
fn common_name_only(user_id: &str) -> Result<Name, IdentityError> {
    let value = Any::new(Tag::Utf8String, user_id.as_bytes()).map_err(|error| malformed("user id", error))?;
    let attribute = AttributeTypeAndValue { oid: rfc4519::CN, value };
    let rdn = RelativeDistinguishedName(SetOfVec::try_from(vec![attribute]).map_err(|error| malformed("name", error))?);
    Ok(RdnSequence(vec![rdn]))
}

/// The last common name in a distinguished name, decoded from any of the usual string types.
pub fn common_name(name: &Name) -> Option<String> {
    name.0
        .iter()
        .rev()
        .flat_map(|rdn| rdn.0.iter())
        .filter(|attribute| attribute.oid == rfc4519::CN)
        .filter_map(|attribute| match attribute.value.tag() {
            Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::TeletexString => {
                String::from_utf8(attribute.value.value().to_vec()).ok()
            }
            _ => None,
        })
        .next()
}
