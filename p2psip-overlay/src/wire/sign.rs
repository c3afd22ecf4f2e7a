//! Signing and verifying with ECDSA P-256 / SHA-256 (`ring`): message signatures
//! (RFC 6940 section 6.3.4) and stored-value signatures (section 7.1), with the signer
//! named by the SHA-256 hash of its certificate (`cert_hash`). The certificates are X.509
//! DER; the public key is read from the SubjectPublicKeyInfo by a small DER walk. Whether the
//! certificate is trusted and carries the right Node-ID/user is the caller's check.

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};

use super::{
    message_signature_input, stored_data_signature_input, CertificateType, GenericCertificate,
    HashAlgorithm, KindId, Message, ResourceId, SecurityBlock, Signature,
    SignatureAndHashAlgorithm, SignerIdentity, StoredData, WireError,
};

/// Why signing or verifying failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The private key is not a PKCS#8 ECDSA P-256 key.
    #[error("bad private key")]
    BadKey,
    /// The certificate is not DER X.509 with an EC public key.
    #[error("bad certificate")]
    BadCertificate,
    /// The signature's identity does not name this certificate.
    #[error("signer identity does not match the certificate")]
    IdentityMismatch,
    /// An algorithm pair this code does not check.
    #[error("unsupported signature algorithm {0:?}")]
    UnsupportedAlgorithm(SignatureAndHashAlgorithm),
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// The signed bytes could not be encoded.
    #[error(transparent)]
    Encode(#[from] WireError),
}

/// The `cert_hash` identity of a DER certificate: SHA-256 over it.
pub fn cert_hash_identity(cert_der: &[u8]) -> SignerIdentity {
    SignerIdentity::CertHash {
        hash_alg: HashAlgorithm::SHA256,
        hash: ring::digest::digest(&ring::digest::SHA256, cert_der)
            .as_ref()
            .to_vec(),
    }
}

/// A signing identity: an ECDSA P-256 key and its certificate.
pub struct Signer {
    key: EcdsaKeyPair,
    cert: Vec<u8>,
    identity: SignerIdentity,
    rng: SystemRandom,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer from a PKCS#8 ECDSA P-256 key and the DER certificate of its public key.
    pub fn ecdsa_p256(pkcs8: &[u8], cert_der: &[u8]) -> Result<Self, SignError> {
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, &rng)
            .map_err(|_| SignError::BadKey)?;
        if certificate_public_key(cert_der) != Some(key.public_key().as_ref()) {
            return Err(SignError::BadCertificate);
        }
        Ok(Signer {
            key,
            cert: cert_der.to_vec(),
            identity: cert_hash_identity(cert_der),
            rng,
        })
    }

    /// The identity signatures carry.
    pub fn identity(&self) -> &SignerIdentity {
        &self.identity
    }

    /// The certificate, for a security block.
    pub fn certificate(&self) -> GenericCertificate {
        GenericCertificate {
            cert_type: CertificateType::X509,
            certificate: self.cert.clone(),
        }
    }

    /// Signs `input` (an input from [`message_signature_input`] or
    /// [`stored_data_signature_input`] made with [`Signer::identity`]).
    pub fn sign(&self, input: &[u8]) -> Result<Signature, SignError> {
        let s = self
            .key
            .sign(&self.rng, input)
            .map_err(|_| SignError::BadKey)?;
        Ok(Signature {
            algorithm: SignatureAndHashAlgorithm::ECDSA_SHA256,
            identity: self.identity.clone(),
            value: s.as_ref().to_vec(),
        })
    }

    /// Signs a message: its security block gets this certificate and the signature.
    pub fn sign_message(&self, m: &mut Message) -> Result<(), SignError> {
        let input = message_signature_input(
            m.forwarding.overlay,
            m.forwarding.transaction_id,
            &m.contents_bytes()?,
            &self.identity,
        )?;
        m.security = SecurityBlock {
            certificates: vec![self.certificate()],
            signature: self.sign(&input)?,
        };
        Ok(())
    }

    /// Signs a stored value for `resource` and `kind`.
    pub fn sign_stored_data(
        &self,
        resource: &ResourceId,
        kind: KindId,
        d: &mut StoredData,
    ) -> Result<(), SignError> {
        let input =
            stored_data_signature_input(resource, kind, d.storage_time, &d.value, &self.identity)?;
        d.signature = self.sign(&input)?;
        Ok(())
    }
}

/// Checks `sig` over `input` against the DER certificate `cert_der`.
pub fn verify(input: &[u8], sig: &Signature, cert_der: &[u8]) -> Result<(), SignError> {
    if sig.identity != cert_hash_identity(cert_der) {
        return Err(SignError::IdentityMismatch);
    }
    if sig.algorithm != SignatureAndHashAlgorithm::ECDSA_SHA256 {
        return Err(SignError::UnsupportedAlgorithm(sig.algorithm));
    }
    let key = certificate_public_key(cert_der).ok_or(SignError::BadCertificate)?;
    signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, key)
        .verify(input, &sig.value)
        .map_err(|_| SignError::BadSignature)
}

/// The certificate in a security block that `identity` names, if any.
pub fn find_certificate<'a>(
    block: &'a SecurityBlock,
    identity: &SignerIdentity,
) -> Option<&'a [u8]> {
    block
        .certificates
        .iter()
        .filter(|c| c.cert_type == CertificateType::X509)
        .map(|c| c.certificate.as_slice())
        .find(|c| &cert_hash_identity(c) == identity)
}

/// Verifies a message's signature with the certificate its security block carries (or
/// `cert_der` when given, for a certificate the verifier already holds).
pub fn verify_message(m: &Message, cert_der: Option<&[u8]>) -> Result<(), SignError> {
    let sig = &m.security.signature;
    let cert = match cert_der {
        Some(c) => c,
        None => find_certificate(&m.security, &sig.identity).ok_or(SignError::IdentityMismatch)?,
    };
    verify(&m.signature_input()?, sig, cert)
}

/// Verifies a stored value's signature against the storer's certificate.
pub fn verify_stored_data(
    resource: &ResourceId,
    kind: KindId,
    d: &StoredData,
    cert_der: &[u8],
) -> Result<(), SignError> {
    let input = stored_data_signature_input(
        resource,
        kind,
        d.storage_time,
        &d.value,
        &d.signature.identity,
    )?;
    verify(&input, &d.signature, cert_der)
}

/// One DER TLV: (tag, contents, rest).
fn der(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&l0, mut b) = b.split_first()?;
    let len = if l0 < 0x80 {
        usize::from(l0)
    } else {
        let n = usize::from(l0 & 0x7f);
        if n == 0 || n > 3 || b.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &x in &b[..n] {
            len = (len << 8) | usize::from(x);
        }
        b = &b[n..];
        len
    };
    if len > b.len() {
        return None;
    }
    Some((tag, &b[..len], &b[len..]))
}

/// The subjectPublicKey bits of an X.509 certificate (RFC 5280 section 4.1), for an EC key
/// the uncompressed point.
pub fn certificate_public_key(cert: &[u8]) -> Option<&[u8]> {
    let (0x30, cert, _) = der(cert)? else {
        return None;
    };
    let (0x30, mut tbs, _) = der(cert)? else {
        return None;
    };
    // [0] version is optional.
    if tbs.first() == Some(&0xa0) {
        tbs = der(tbs)?.2;
    }
    // serial, signature, issuer, validity, subject
    for _ in 0..5 {
        tbs = der(tbs)?.2;
    }
    let (0x30, spki, _) = der(tbs)? else {
        return None;
    };
    let (0x30, _, rest) = der(spki)? else {
        return None;
    };
    let (0x03, bits, _) = der(rest)? else {
        return None;
    };
    match bits.split_first()? {
        (0, key) => Some(key),
        _ => None,
    }
}
