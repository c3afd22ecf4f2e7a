//! The security block (RFC 6940 section 6.3.4): certificates and one signature over the
//! message, plus the exact byte strings RFC 6940 signs, so a node can sign and verify
//! messages (section 6.3.4) and stored values (section 7.1) with its own keys.

use super::codec::{put_list, put_opaque, put_u32, put_u64, Reader};
use super::{KindId, ResourceId, StoredDataValue, TransactionId, WireError};

/// `CertificateType` (RFC 6940 section 6.3.4): open; `x509(0)` is the one defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CertificateType(pub u8);

impl CertificateType {
    /// An X.509 certificate, DER.
    pub const X509: Self = Self(0);
}

/// One certificate of the security block.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GenericCertificate {
    /// Its type.
    pub cert_type: CertificateType,
    /// `opaque certificate<0..2^16-1>` (DER for X.509).
    pub certificate: Vec<u8>,
}

/// TLS `HashAlgorithm` (RFC 5246 section 7.4.1.4.1), open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HashAlgorithm(pub u8);

impl HashAlgorithm {
    /// No hash (unsigned messages).
    pub const NONE: Self = Self(0);
    /// SHA-1.
    pub const SHA1: Self = Self(2);
    /// SHA-256.
    pub const SHA256: Self = Self(4);
    /// SHA-384.
    pub const SHA384: Self = Self(5);
}

/// TLS `SignatureAlgorithm` (RFC 5246 section 7.4.1.4.1), open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SignatureAlgorithm(pub u8);

impl SignatureAlgorithm {
    /// `anonymous(0)`: no signature.
    pub const ANONYMOUS: Self = Self(0);
    /// RSA PKCS#1 v1.5.
    pub const RSA: Self = Self(1);
    /// ECDSA.
    pub const ECDSA: Self = Self(3);
}

/// TLS `SignatureAndHashAlgorithm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignatureAndHashAlgorithm {
    /// The hash.
    pub hash: HashAlgorithm,
    /// The signature scheme.
    pub signature: SignatureAlgorithm,
}

impl SignatureAndHashAlgorithm {
    /// No signature at all (an unsigned message).
    pub const NONE: Self = Self {
        hash: HashAlgorithm::NONE,
        signature: SignatureAlgorithm::ANONYMOUS,
    };
    /// ECDSA with SHA-256.
    pub const ECDSA_SHA256: Self = Self {
        hash: HashAlgorithm::SHA256,
        signature: SignatureAlgorithm::ECDSA,
    };
    /// RSA PKCS#1 v1.5 with SHA-256.
    pub const RSA_SHA256: Self = Self {
        hash: HashAlgorithm::SHA256,
        signature: SignatureAlgorithm::RSA,
    };
}

/// Who signed (RFC 6940 section 6.3.4 `SignerIdentity`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SignerIdentity {
    /// `cert_hash(1)`: the hash of the signer's certificate.
    CertHash {
        /// The hash algorithm.
        hash_alg: HashAlgorithm,
        /// `opaque certificate_hash<0..2^8-1>`.
        hash: Vec<u8>,
    },
    /// `cert_hash_node_id(2)`: the hash of the certificate and the Node-ID.
    CertHashNodeId {
        /// The hash algorithm.
        hash_alg: HashAlgorithm,
        /// `opaque certificate_node_id_hash<0..2^8-1>`.
        hash: Vec<u8>,
    },
    /// `none(3)`: unsigned (only where the overlay allows it).
    None,
    /// A type this codec does not know, kept raw.
    Unknown {
        /// The type octet.
        identity_type: u8,
        /// The identity value.
        value: Vec<u8>,
    },
}

impl SignerIdentity {
    /// Appends the encoding (type, 16-bit length, value).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        let (t, body): (u8, Vec<u8>) = match self {
            SignerIdentity::CertHash { hash_alg, hash }
            | SignerIdentity::CertHashNodeId { hash_alg, hash } => {
                let mut b = vec![hash_alg.0];
                put_opaque(&mut b, 1, "certificate_hash", hash)?;
                let t = if matches!(self, SignerIdentity::CertHash { .. }) {
                    1
                } else {
                    2
                };
                (t, b)
            }
            SignerIdentity::None => (3, Vec::new()),
            SignerIdentity::Unknown {
                identity_type,
                value,
            } => {
                if matches!(identity_type, 0..=3) {
                    return Err(WireError::InvalidValue {
                        what: "SignerIdentityType",
                        value: u64::from(*identity_type),
                    });
                }
                (*identity_type, value.clone())
            }
        };
        out.push(t);
        put_opaque(out, 2, "SignerIdentity", &body)
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let t = r.u8("SignerIdentityType")?;
        let mut v = r.sub(2, "SignerIdentity")?;
        let id = match t {
            1 | 2 => {
                let hash_alg = HashAlgorithm(v.u8("hash_alg")?);
                let hash = v.opaque(1, "certificate_hash")?.to_vec();
                if t == 1 {
                    SignerIdentity::CertHash { hash_alg, hash }
                } else {
                    SignerIdentity::CertHashNodeId { hash_alg, hash }
                }
            }
            3 => SignerIdentity::None,
            0 => {
                return Err(WireError::InvalidValue {
                    what: "SignerIdentityType",
                    value: 0,
                })
            }
            t => SignerIdentity::Unknown {
                identity_type: t,
                value: v.bytes(v.remaining(), "SignerIdentity")?.to_vec(),
            },
        };
        v.finish("SignerIdentity")?;
        Ok(id)
    }
}

/// A signature (RFC 6940 section 6.3.4 `Signature`), over a message or a stored value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Signature {
    /// Hash and signature algorithms.
    pub algorithm: SignatureAndHashAlgorithm,
    /// Who signed.
    pub identity: SignerIdentity,
    /// `opaque signature_value<0..2^16-1>`.
    pub value: Vec<u8>,
}

impl Signature {
    /// The empty signature of an unsigned message: algorithms none/anonymous, identity none.
    pub fn unsigned() -> Self {
        Signature {
            algorithm: SignatureAndHashAlgorithm::NONE,
            identity: SignerIdentity::None,
            value: Vec::new(),
        }
    }

    /// Appends the encoding.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        out.push(self.algorithm.hash.0);
        out.push(self.algorithm.signature.0);
        self.identity.encode(out)?;
        put_opaque(out, 2, "signature_value", &self.value)
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let hash = HashAlgorithm(r.u8("hash algorithm")?);
        let signature = SignatureAlgorithm(r.u8("signature algorithm")?);
        let identity = SignerIdentity::decode(r)?;
        let value = r.opaque(2, "signature_value")?.to_vec();
        Ok(Signature {
            algorithm: SignatureAndHashAlgorithm { hash, signature },
            identity,
            value,
        })
    }
}

/// The security block (RFC 6940 section 6.3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityBlock {
    /// Certificates the receiver may need to check the signatures.
    pub certificates: Vec<GenericCertificate>,
    /// The message signature.
    pub signature: Signature,
}

impl SecurityBlock {
    /// No certificates, [`Signature::unsigned`].
    pub fn unsigned() -> Self {
        SecurityBlock {
            certificates: Vec::new(),
            signature: Signature::unsigned(),
        }
    }

    /// Appends the encoding.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        put_list(out, 2, "certificates", &self.certificates, |c, out| {
            out.push(c.cert_type.0);
            put_opaque(out, 2, "certificate", &c.certificate)
        })?;
        self.signature.encode(out)
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let certificates = r.list(2, "certificates", |r| {
            Ok(GenericCertificate {
                cert_type: CertificateType(r.u8("CertificateType")?),
                certificate: r.opaque(2, "certificate")?.to_vec(),
            })
        })?;
        let signature = Signature::decode(r)?;
        Ok(SecurityBlock {
            certificates,
            signature,
        })
    }
}

/// The bytes a message signature covers (RFC 6940 section 6.3.4): the overlay, the
/// transaction id, the encoded MessageContents and the encoded SignerIdentity, concatenated.
/// `contents` is the encoded [`super::MessageContents`] (as [`super::Message::contents_bytes`]
/// gives it, or as received).
pub fn message_signature_input(
    overlay: u32,
    transaction_id: TransactionId,
    contents: &[u8],
    identity: &SignerIdentity,
) -> Result<Vec<u8>, WireError> {
    let mut v = Vec::with_capacity(12 + contents.len() + 40);
    put_u32(&mut v, overlay);
    put_u64(&mut v, transaction_id.0);
    v.extend_from_slice(contents);
    identity.encode(&mut v)?;
    Ok(v)
}

/// The bytes a stored value's signature covers (RFC 6940 section 7.1): the Resource-ID (its
/// bytes, no length prefix), the Kind-ID, the storage time, the encoded StoredDataValue and
/// the encoded SignerIdentity, concatenated.
pub fn stored_data_signature_input(
    resource: &ResourceId,
    kind: KindId,
    storage_time: u64,
    value: &StoredDataValue,
    identity: &SignerIdentity,
) -> Result<Vec<u8>, WireError> {
    let mut v = Vec::new();
    v.extend_from_slice(resource.as_bytes());
    put_u32(&mut v, kind.0);
    put_u64(&mut v, storage_time);
    value.encode(&mut v)?;
    identity.encode(&mut v)?;
    Ok(v)
}
