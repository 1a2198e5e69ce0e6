//! Detached CMS (RFC 5652) SignedData signatures over folder metadata, as Nextcloud's clients make them:
//! SHA-256 digest, RSA PKCS#1 v1.5, signed attributes contentType, signingTime and messageDigest, and the
//! signer's certificate embedded.
//!
//! Verification never trusts the embedded certificate: the caller passes the certificates it trusts (the
//! `users` of the top folder's metadata, each verified against the pinned server key), and the signature
//! must verify under one of them.

use std::time::SystemTime;

use const_oid::db::{rfc5911, rfc5912};
use const_oid::ObjectIdentifier;
use der::asn1::{OctetString, SetOfVec, UtcTime};
use der::{Any, Decode, Encode, Header, Reader as _, SliceReader};
use spki::AlgorithmIdentifierOwned;
use x509_cert::attr::Attribute;
use x509_cert::time::Time;

use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedAttributes, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};

use super::identity::{verify_rsa_signature, IdentityError, PrivateIdentity, UserCertificate};
use super::secret::constant_time_eq;

/// Errors from signing or verifying a metadata signature.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// The signature is not well-formed DER CMS.
    #[error("malformed metadata signature: {0}")]
    Malformed(String),
    /// The signature does not have the shape Nextcloud uses (detached SignedData, SHA-256, signed attributes).
    #[error("unsupported metadata signature: {0}")]
    Unsupported(String),
    /// The signed digest is not the digest of the metadata: the metadata was changed after signing.
    #[error("metadata signature does not cover this metadata (digest mismatch): metadata was altered")]
    DigestMismatch,
    /// No trusted certificate verifies the signature.
    #[error("metadata signature was not made by any user of this folder (unknown or forged signer)")]
    UnknownSigner,
    /// Signing failed.
    #[error("cannot sign metadata: {0}")]
    Signing(#[from] IdentityError),
}

fn malformed(error: impl std::fmt::Display) -> SignatureError {
    SignatureError::Malformed(error.to_string())
}

fn sha256(content: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, content);
    digest.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

fn attribute(oid: ObjectIdentifier, value: Any) -> Result<Attribute, SignatureError> {
    Ok(Attribute { oid, values: SetOfVec::try_from(vec![value]).map_err(malformed)? })
}

/// Signs `content` with `identity`, naming and embedding `certificate`; returns the DER of a ContentInfo
/// holding a detached SignedData.
pub fn sign_detached(
    identity: &PrivateIdentity,
    certificate: &UserCertificate,
    content: &[u8],
    signing_time: SystemTime,
) -> Result<Vec<u8>, SignatureError> {
    let sha256_algorithm = AlgorithmIdentifierOwned { oid: rfc5912::ID_SHA_256, parameters: None };
    let time = UtcTime::from_system_time(signing_time).map_err(malformed)?;
    let signed_attributes = SetOfVec::try_from(vec![
        attribute(rfc5911::ID_CONTENT_TYPE, Any::encode_from(&rfc5911::ID_DATA).map_err(malformed)?)?,
        attribute(rfc5911::ID_SIGNING_TIME, Any::encode_from(&Time::UtcTime(time)).map_err(malformed)?)?,
        attribute(
            rfc5911::ID_MESSAGE_DIGEST,
            Any::encode_from(&OctetString::new(sha256(content).to_vec()).map_err(malformed)?).map_err(malformed)?,
        )?,
    ])
    .map_err(malformed)?;
    let signature_bytes = identity.sign_pkcs1_sha256(&signed_attributes.to_der().map_err(malformed)?)?;
    let tbs = &certificate.certificate().tbs_certificate;
    let signer_info = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: tbs.issuer.clone(),
            serial_number: tbs.serial_number.clone(),
        }),
        digest_alg: sha256_algorithm.clone(),
        signed_attrs: Some(signed_attributes),
        signature_algorithm: AlgorithmIdentifierOwned { oid: rfc5912::RSA_ENCRYPTION, parameters: Some(Any::null()) },
        signature: OctetString::new(signature_bytes).map_err(malformed)?,
        unsigned_attrs: None,
    };
    let signed_data = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::try_from(vec![sha256_algorithm]).map_err(malformed)?,
        encap_content_info: EncapsulatedContentInfo { econtent_type: rfc5911::ID_DATA, econtent: None },
        certificates: Some(CertificateSet(
            SetOfVec::try_from(vec![CertificateChoices::Certificate(certificate.certificate().clone())])
                .map_err(malformed)?,
        )),
        crls: None,
        signer_infos: SignerInfos(SetOfVec::try_from(vec![signer_info]).map_err(malformed)?),
    };
    let content_info = ContentInfo {
        content_type: rfc5911::ID_SIGNED_DATA,
        content: Any::encode_from(&signed_data).map_err(malformed)?,
    };
    content_info.to_der().map_err(malformed)
}

/// A signature that verified.
#[derive(Debug, Clone)]
pub struct VerifiedSignature {
    /// Index into the `trusted` slice of the certificate that verified the signature.
    pub signer_index: usize,
    /// The signingTime attribute, if present (informational: the signer chooses it).
    pub signing_time: Option<SystemTime>,
}

/// Verifies a detached CMS signature over `content` against the `trusted` certificates.
pub fn verify_detached(
    signature_der: &[u8],
    content: &[u8],
    trusted: &[&UserCertificate],
) -> Result<VerifiedSignature, SignatureError> {
    let content_info = ContentInfo::from_der(signature_der).map_err(malformed)?;
    if content_info.content_type != rfc5911::ID_SIGNED_DATA {
        return Err(SignatureError::Unsupported(format!(
            "content type {} is not SignedData",
            content_info.content_type
        )));
    }
    let signed_data: SignedData = content_info.content.decode_as().map_err(malformed)?;
    if signed_data.encap_content_info.econtent.is_some() {
        return Err(SignatureError::Unsupported("signature is not detached".into()));
    }
    if signed_data.encap_content_info.econtent_type != rfc5911::ID_DATA {
        return Err(SignatureError::Unsupported("signed content type is not id-data".into()));
    }
    let expected_digest = sha256(content);
    let mut last_error = SignatureError::UnknownSigner;
    // Work from the received bytes: the signature covers the signed attributes exactly as the signer
    // encoded them (RFC 5652 §5.4), which need not be in DER SET OF order (pkijs, for one, does not sort).
    for signer_info_der in raw_signer_infos(signature_der)? {
        let signer_info = SignerInfo::from_der(signer_info_der).map_err(malformed)?;
        let signed_attributes_der = raw_signed_attributes(signer_info_der)?;
        match verify_signer_info(&signer_info, &signed_attributes_der, &expected_digest, trusted) {
            Ok(verified) => return Ok(verified),
            Err(error) => last_error = error,
        }
    }
    Err(last_error)
}

/// The TLVs inside a constructed TLV's value.
fn children(tlv: &[u8]) -> Result<Vec<&[u8]>, SignatureError> {
    let mut reader = SliceReader::new(tlv).map_err(malformed)?;
    let header = Header::decode(&mut reader).map_err(malformed)?;
    let value = reader.read_slice(header.length).map_err(malformed)?;
    if !reader.is_finished() {
        return Err(SignatureError::Malformed("trailing data after a DER element".into()));
    }
    let mut inner = SliceReader::new(value).map_err(malformed)?;
    let mut found = Vec::new();
    while !inner.is_finished() {
        found.push(inner.tlv_bytes().map_err(malformed)?);
    }
    Ok(found)
}

/// The raw DER of each SignerInfo, in the order received.
fn raw_signer_infos(signature_der: &[u8]) -> Result<Vec<&[u8]>, SignatureError> {
    let shape = |what: &str| SignatureError::Malformed(format!("unexpected CMS structure: {what}"));
    let content_info = children(signature_der)?;
    let explicit = content_info.get(1).ok_or_else(|| shape("no content"))?;
    let signed_data_tlv = *children(explicit)?.first().ok_or_else(|| shape("empty content"))?;
    let signed_data = children(signed_data_tlv)?;
    let signer_infos = signed_data.last().ok_or_else(|| shape("empty SignedData"))?;
    children(signer_infos)
}

/// The signed attributes of a raw SignerInfo as the signature covers them: the `[0] IMPLICIT` field's
/// bytes with its tag replaced by the universal SET tag.
fn raw_signed_attributes(signer_info_der: &[u8]) -> Result<Vec<u8>, SignatureError> {
    let fields = children(signer_info_der)?;
    let field = fields
        .iter()
        .find(|field| field.first() == Some(&0xA0))
        .ok_or_else(|| SignatureError::Unsupported("no signed attributes".into()))?;
    let mut bytes = field.to_vec();
    bytes[0] = 0x31;
    Ok(bytes)
}

fn verify_signer_info(
    signer_info: &SignerInfo,
    signed_attributes_der: &[u8],
    expected_digest: &[u8; 32],
    trusted: &[&UserCertificate],
) -> Result<VerifiedSignature, SignatureError> {
    if signer_info.digest_alg.oid != rfc5912::ID_SHA_256 {
        return Err(SignatureError::Unsupported(format!("digest algorithm {}", signer_info.digest_alg.oid)));
    }
    let signature_algorithm = match signer_info.signature_algorithm.oid {
        rfc5912::RSA_ENCRYPTION | rfc5912::SHA_256_WITH_RSA_ENCRYPTION => rfc5912::SHA_256_WITH_RSA_ENCRYPTION,
        other => return Err(SignatureError::Unsupported(format!("signature algorithm {other}"))),
    };
    // The attribute values checked below are decoded from the very bytes the signature is checked over.
    let signed_attributes = SignedAttributes::from_der(signed_attributes_der).map_err(malformed)?;
    let single_value = |oid: ObjectIdentifier| -> Result<&Any, SignatureError> {
        let mut matching = signed_attributes.iter().filter(|attribute| attribute.oid == oid);
        let attribute =
            matching.next().ok_or_else(|| SignatureError::Unsupported(format!("missing attribute {oid}")))?;
        if matching.next().is_some() || attribute.values.len() != 1 {
            return Err(SignatureError::Malformed(format!("attribute {oid} must appear once with one value")));
        }
        Ok(attribute.values.get(0).expect("length checked"))
    };
    let content_type: ObjectIdentifier = single_value(rfc5911::ID_CONTENT_TYPE)?.decode_as().map_err(malformed)?;
    if content_type != rfc5911::ID_DATA {
        return Err(SignatureError::Unsupported("contentType attribute is not id-data".into()));
    }
    let digest: OctetString = single_value(rfc5911::ID_MESSAGE_DIGEST)?.decode_as().map_err(malformed)?;
    if !constant_time_eq(digest.as_bytes(), expected_digest) {
        return Err(SignatureError::DigestMismatch);
    }
    let signing_time = single_value(rfc5911::ID_SIGNING_TIME)
        .ok()
        .and_then(|value| Time::from_der(&value.to_der().ok()?).ok())
        .map(|time| time.to_system_time());
    for (signer_index, certificate) in trusted.iter().enumerate() {
        let verified = verify_rsa_signature(
            certificate.public_key(),
            &signature_algorithm,
            signed_attributes_der,
            signer_info.signature.as_bytes(),
        );
        if verified.is_ok() {
            return Ok(VerifiedSignature { signer_index, signing_time });
        }
    }
    Err(SignatureError::UnknownSigner)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    fn find(haystack: &[u8], needle: &[u8]) -> usize {
        haystack.windows(needle.len()).position(|window| window == needle).expect("subslice present")
    }

    /// Signers that do not sort their signed attributes (pkijs, used by Nextcloud's web client) are
    /// verified over the bytes they signed, not over a re-sorted encoding.
    #[test]
    fn unsorted_signed_attributes_verify_over_the_received_bytes() {
        let server = PrivateIdentity::generate().unwrap();
        let user = PrivateIdentity::generate().unwrap();
        let request = user.certificate_request_pem("alice").unwrap();
        let certificate = server.issue_certificate(&request, "alice", Duration::from_secs(60)).unwrap();
        let content = b"eyJtZXRhZGF0YSI6e319";
        let mut signature = sign_detached(&user, &certificate, content, SystemTime::now()).unwrap();

        // Reverse the order of the signed attributes in place (same total length) and re-sign them.
        let signer_info = raw_signer_infos(&signature).unwrap()[0].to_vec();
        let attributes_tlv =
            children(&signer_info).unwrap().into_iter().find(|field| field[0] == 0xA0).unwrap().to_vec();
        let mut reordered =
            attributes_tlv[..attributes_tlv.len() - children(&attributes_tlv).unwrap().concat().len()].to_vec();
        for attribute in children(&attributes_tlv).unwrap().into_iter().rev() {
            reordered.extend_from_slice(attribute);
        }
        assert_eq!(reordered.len(), attributes_tlv.len());
        assert_ne!(reordered, attributes_tlv, "the reversed order differs from DER order");
        let old_signature_value = SignerInfo::from_der(&signer_info).unwrap().signature.as_bytes().to_vec();
        let mut to_sign = reordered.clone();
        to_sign[0] = 0x31;
        let new_signature_value = user.sign_pkcs1_sha256(&to_sign).unwrap();
        let position = find(&signature, &attributes_tlv);
        signature[position..position + reordered.len()].copy_from_slice(&reordered);
        let position = find(&signature, &old_signature_value);
        signature[position..position + new_signature_value.len()].copy_from_slice(&new_signature_value);

        let verified = verify_detached(&signature, content, &[&certificate]).unwrap();
        assert_eq!(verified.signer_index, 0);
        assert!(matches!(verify_detached(&signature, b"other", &[&certificate]), Err(SignatureError::DigestMismatch)));
    }

    /// Garbage and truncated DER gives errors, not panics.
    #[test]
    fn garbage_and_truncated_signatures_are_errors() {
        for bytes in [&b""[..], b"\x30\x00", b"\x30\x03\x06\x01\x00", b"\x30\x80\x00\x00"] {
            assert!(verify_detached(bytes, b"x", &[]).is_err());
        }
    }
}
