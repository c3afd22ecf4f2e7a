//! Certificates of the overlay (RFC 6940 sections 10.3 and 11.3): who a peer is.
//!
//! Every node certificate is issued by the overlay's enrollment CA and carries the node's
//! Node-ID(s) in subjectAltName as `reload://<32 hex digits>@<overlay>/` URIs, and optionally
//! the user's name as an `rfc822Name` (the identity USER-MATCH policies check). This module:
//!
//! - [`DevCa`]: the testbed's own CA (rcgen): made fresh, saved and loaded as PEM, issues node
//!   certificates directly ([`DevCa::issue`]) or from a PKCS#10 CSR ([`DevCa::issue_from_csr`],
//!   what the enrollment server does: the CSR's own names are ignored, the CA writes the
//!   Node-IDs it assigned).
//! - [`NodeIdentity`]: a node's key and certificate chain, and [`NodeIdentity::csr`] to ask for
//!   one.
//! - [`PeerIdentity::from_der`]: the Node-IDs, user and overlay a certificate names
//!   (x509-parser).
//! - [`Trust`]: the check of a certificate that signed a message or a stored value
//!   (RFC 6940 sections 6.3.4 and 7.1): its chain leads to the overlay's root at the time
//!   given (sans-IO), and the Node-IDs and user it names for this overlay.
//! - [`server_verifier`] / [`client_verifier`]: rustls verifiers for overlay links. The chain
//!   must lead to the overlay's root; in place of a DNS name check the peer's certificate must
//!   carry a `reload://` URI of this overlay. Which Node-ID the link expected is checked by the
//!   link after the handshake ([`PeerIdentity::has_node`]).
//!
//! Keys are ECDSA P-256 with SHA-256 (what [`crate::wire::sign`] signs and verifies with).

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{
    CertificateDer, CertificateSigningRequestDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName,
    UnixTime,
};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::wire::NodeId;

/// Why a certificate could not be made, read or trusted.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused (bad parameters, bad CSR, bad key).
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// The DER could not be parsed as X.509.
    #[error("certificate parse: {0}")]
    Parse(String),
    /// The certificate names no Node-ID of this overlay.
    #[error("certificate carries no reload:// Node-ID for overlay {0:?}")]
    NoNodeId(String),
    /// PEM input without the expected block.
    #[error("PEM: {0}")]
    Pem(String),
    /// rustls refused the roots or the verifier.
    #[error("TLS: {0}")]
    Tls(String),
}

/// The `reload://` URI of a Node-ID in `overlay` (RFC 6940 section 11.3).
#[must_use]
pub fn node_uri(node: &NodeId, overlay: &str) -> String {
    format!("reload://{node}@{overlay}/")
}

/// Parses a `reload://<hex>@<overlay>/` URI.
#[must_use]
pub fn parse_node_uri(uri: &str) -> Option<(NodeId, &str)> {
    let rest = uri.strip_prefix("reload://")?;
    let (hex, overlay) = rest.split_once('@')?;
    let overlay = overlay.strip_suffix('/').unwrap_or(overlay);
    if hex.len() != 32 || overlay.is_empty() {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some((NodeId(id), overlay))
}

/// What a node certificate says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Node-IDs (`reload://` URIs) and the overlay each names.
    pub nodes: Vec<(NodeId, String)>,
    /// The user (`rfc822Name`), if any.
    pub user: Option<String>,
}

impl PeerIdentity {
    /// Reads the subjectAltName of a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, CertError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| CertError::Parse(e.to_string()))?;
        let mut nodes = Vec::new();
        let mut user = None;
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(u) => {
                        if let Some((id, ov)) = parse_node_uri(u) {
                            nodes.push((id, ov.to_owned()));
                        }
                    }
                    GeneralName::RFC822Name(u) => user = Some((*u).to_owned()),
                    _ => {}
                }
            }
        }
        Ok(Self { nodes, user })
    }

    /// Whether the certificate names `node` in `overlay`.
    #[must_use]
    pub fn has_node(&self, node: &NodeId, overlay: &str) -> bool {
        self.nodes.iter().any(|(n, o)| n == node && o == overlay)
    }

    /// The first Node-ID for `overlay`.
    #[must_use]
    pub fn node_in(&self, overlay: &str) -> Option<NodeId> {
        self.nodes
            .iter()
            .find(|(_, o)| o == overlay)
            .map(|(n, _)| *n)
    }
}

/// A node's key pair and certificate chain (leaf first).
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    /// The Node-ID its certificate carries.
    pub node: NodeId,
    /// Leaf certificate then the CA.
    pub chain: Vec<CertificateDer<'static>>,
    /// PKCS#8 DER of the private key.
    pub key_pkcs8: Vec<u8>,
}

impl NodeIdentity {
    /// The private key for rustls.
    #[must_use]
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.clone()))
    }

    /// A fresh key pair and a PKCS#10 request for it (the enrollment client's first step):
    /// (PKCS#8 key, CSR DER). `user` goes into the request's subject.
    pub fn csr(user: &str) -> Result<(Vec<u8>, Vec<u8>), CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, user);
        let csr = params.serialize_request(&key)?;
        Ok((key.serialize_der(), csr.der().to_vec()))
    }
}

/// The testbed's certificate authority (module docs).
pub struct DevCa {
    overlay: String,
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa")
            .field("overlay", &self.overlay)
            .finish_non_exhaustive()
    }
}

impl DevCa {
    /// A new CA for `overlay`.
    pub fn new(overlay: &str) -> Result<Self, CertError> {
        let key = KeyPair::generate()?;
        let cert = Self::ca_params(overlay)?.self_signed(&key)?;
        Ok(Self {
            overlay: overlay.to_owned(),
            cert,
            key,
        })
    }

    fn ca_params(overlay: &str) -> Result<CertificateParams, CertError> {
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name
            .push(DnType::CommonName, format!("{overlay} enrollment CA"));
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Ok(p)
    }

    /// Loads a CA saved with [`DevCa::to_pem`] (certificate PEM, then key PEM).
    pub fn from_pem(overlay: &str, cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        let key = KeyPair::from_pem(key_pem)?;
        let params = CertificateParams::from_ca_cert_pem(cert_pem)?;
        // Re-signing the same parameters with the same key gives an issuer with the same
        // subject and key identifier, which is all that signing needs. The PEM the caller
        // distributes as the root stays the original.
        let cert = params.self_signed(&key)?;
        Ok(Self {
            overlay: overlay.to_owned(),
            cert,
            key,
        })
    }

    /// (certificate PEM, key PEM).
    #[must_use]
    pub fn to_pem(&self) -> (String, String) {
        (self.cert.pem(), self.key.serialize_pem())
    }

    /// The root certificate (DER) peers trust.
    #[must_use]
    pub fn root_der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// The overlay this CA enrolls for.
    #[must_use]
    pub fn overlay(&self) -> &str {
        &self.overlay
    }

    fn leaf_params(
        &self,
        node: &NodeId,
        user: Option<&str>,
    ) -> Result<CertificateParams, CertError> {
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name
            .push(DnType::CommonName, node.to_string());
        let uri = node_uri(node, &self.overlay);
        p.subject_alt_names = vec![SanType::URI(uri.as_str().try_into()?)];
        if let Some(u) = user {
            p.subject_alt_names.push(SanType::Rfc822Name(u.try_into()?));
        }
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        Ok(p)
    }

    /// Signs arbitrary parameters (e.g. the enrollment server's own TLS certificate for
    /// `localhost`) for `key` with this CA.
    pub fn sign_params(
        &self,
        params: CertificateParams,
        key: &KeyPair,
    ) -> Result<CertificateDer<'static>, CertError> {
        Ok(params.signed_by(key, &self.cert, &self.key)?.der().clone())
    }

    /// Issues a certificate for `node` (and `user`) with a fresh key.
    pub fn issue(&self, node: NodeId, user: Option<&str>) -> Result<NodeIdentity, CertError> {
        let key = KeyPair::generate()?;
        let cert = self
            .leaf_params(&node, user)?
            .signed_by(&key, &self.cert, &self.key)?;
        Ok(NodeIdentity {
            node,
            chain: vec![cert.der().clone(), self.root_der()],
            key_pkcs8: key.serialize_der(),
        })
    }

    /// Issues a certificate for the key of a PKCS#10 request (its signature is checked by
    /// the parser), naming `node` and `user`: the names the CSR asked for are not used.
    pub fn issue_from_csr(
        &self,
        csr_der: &[u8],
        node: NodeId,
        user: Option<&str>,
    ) -> Result<CertificateDer<'static>, CertError> {
        let mut req = CertificateSigningRequestParams::from_der(
            &CertificateSigningRequestDer::from(csr_der),
        )?;
        req.params = self.leaf_params(&node, user)?;
        let cert = req.signed_by(&self.cert, &self.key)?;
        Ok(cert.der().clone())
    }
}

/// Most certificates [`Trust`] remembers as checked.
const TRUST_CACHE: usize = 4096;

/// Certificates checked against the overlay's roots (module docs): the signer
/// certificates of messages and stored values. Sans-IO: the time is an argument.
/// Certificates that passed are remembered (bounded) with their identity, so a
/// peer's certificate is path-checked once, not per message.
pub struct Trust {
    roots: Arc<RootCertStore>,
    overlay: String,
    provider: Arc<CryptoProvider>,
    checked: std::collections::HashMap<Vec<u8>, (PeerIdentity, u64)>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field("overlay", &self.overlay)
            .field("checked", &self.checked.len())
            .finish_non_exhaustive()
    }
}

impl Trust {
    /// Trust in the overlay `overlay` whose root certificates are `root_ders`.
    pub fn new(root_ders: &[CertificateDer<'static>], overlay: &str) -> Result<Self, CertError> {
        Ok(Self {
            roots: Arc::new(roots(root_ders)?),
            overlay: overlay.to_owned(),
            provider: provider(),
            checked: std::collections::HashMap::new(),
        })
    }

    /// The identity of the DER certificate `cert` if it chains to the overlay's
    /// root (with `intermediates`) at `now_unix_s` (seconds since the epoch) and
    /// names a Node-ID of this overlay.
    pub fn check(
        &mut self,
        cert: &[u8],
        intermediates: &[CertificateDer<'_>],
        now_unix_s: u64,
    ) -> Result<PeerIdentity, CertError> {
        if let Some((id, until)) = self.checked.get(cert) {
            if now_unix_s <= *until {
                return Ok(id.clone());
            }
        }
        let der = CertificateDer::from(cert);
        let parsed = rustls::server::ParsedCertificate::try_from(&der)
            .map_err(|e| CertError::Tls(e.to_string()))?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(now_unix_s)),
            self.provider.signature_verification_algorithms.all,
        )
        .map_err(|e| CertError::Tls(e.to_string()))?;
        let id = PeerIdentity::from_der(cert)?;
        if id.node_in(&self.overlay).is_none() {
            return Err(CertError::NoNodeId(self.overlay.clone()));
        }
        let not_after = X509Certificate::from_der(cert)
            .map(|(_, c)| c.validity().not_after.timestamp())
            .unwrap_or(0);
        if self.checked.len() >= TRUST_CACHE {
            self.checked.clear();
        }
        self.checked.insert(
            cert.to_vec(),
            (id.clone(), u64::try_from(not_after).unwrap_or(0)),
        );
        Ok(id)
    }

    /// The overlay name.
    #[must_use]
    pub fn overlay(&self) -> &str {
        &self.overlay
    }
}

/// Root store holding the overlay's root certificate(s).
pub fn roots(root_ders: &[CertificateDer<'static>]) -> Result<RootCertStore, CertError> {
    let mut r = RootCertStore::empty();
    for d in root_ders {
        r.add(d.clone())
            .map_err(|e| CertError::Tls(e.to_string()))?;
    }
    Ok(r)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Verifies a server's chain to the overlay root and that it names a Node-ID of `overlay`;
/// the TLS server name is not used (overlay peers are named by Node-ID, not DNS).
#[derive(Debug)]
pub struct OverlayServerVerifier {
    roots: Arc<RootCertStore>,
    overlay: String,
    provider: Arc<CryptoProvider>,
}

/// A [`ServerCertVerifier`] for overlay links (see [`OverlayServerVerifier`]).
pub fn server_verifier(
    root_ders: &[CertificateDer<'static>],
    overlay: &str,
) -> Result<Arc<OverlayServerVerifier>, CertError> {
    Ok(Arc::new(OverlayServerVerifier {
        roots: Arc::new(roots(root_ders)?),
        overlay: overlay.to_owned(),
        provider: provider(),
    }))
}

/// A client-certificate verifier for overlay links: chain to the overlay root, client auth
/// mandatory. (The Node-ID is checked by the link after the handshake.)
pub fn client_verifier(
    root_ders: &[CertificateDer<'static>],
) -> Result<Arc<dyn ClientCertVerifier>, CertError> {
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots(root_ders)?), provider())
        .build()
        .map_err(|e| CertError::Tls(e.to_string()))
}

impl ServerCertVerifier for OverlayServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        let id = PeerIdentity::from_der(end_entity)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        if id.node_in(&self.overlay).is_none() {
            return Err(rustls::Error::General(
                CertError::NoNodeId(self.overlay.clone()).to_string(),
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_uri_round_trip_and_rejects() {
        let id = NodeId::from_u128(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        let u = node_uri(&id, "iptv.example");
        assert_eq!(u, "reload://0123456789abcdef0011223344556677@iptv.example/");
        assert_eq!(parse_node_uri(&u), Some((id, "iptv.example")));
        assert_eq!(parse_node_uri("reload://12@x/"), None);
        assert_eq!(
            parse_node_uri("sip:0123456789abcdef0011223344556677@x"),
            None
        );
        assert_eq!(
            parse_node_uri("reload://0123456789abcdef00112233445566zz@x/"),
            None
        );
        assert_eq!(
            parse_node_uri("reload://0123456789abcdef0011223344556677@/"),
            None
        );
    }

    #[test]
    fn issued_certificate_names_node_and_user() {
        let ca = DevCa::new("iptv.test").unwrap();
        let id = NodeId::from_u128(42);
        let n = ca.issue(id, Some("alice@iptv.test")).unwrap();
        let p = PeerIdentity::from_der(&n.chain[0]).unwrap();
        assert!(p.has_node(&id, "iptv.test"));
        assert!(!p.has_node(&id, "other"));
        assert_eq!(p.user.as_deref(), Some("alice@iptv.test"));
        assert_eq!(p.node_in("iptv.test"), Some(id));
    }

    #[test]
    fn csr_gets_the_assigned_node_id_not_its_own_names() {
        let ca = DevCa::new("iptv.test").unwrap();
        let (_key, csr) = NodeIdentity::csr("mallory").unwrap();
        let id = NodeId::from_u128(7);
        let cert = ca.issue_from_csr(&csr, id, None).unwrap();
        let p = PeerIdentity::from_der(&cert).unwrap();
        assert_eq!(p.nodes, vec![(id, "iptv.test".to_owned())]);
        assert_eq!(p.user, None);
        assert!(ca.issue_from_csr(b"not a csr", id, None).is_err());
    }

    #[test]
    fn ca_survives_pem_round_trip() {
        let ca = DevCa::new("iptv.test").unwrap();
        let (c, k) = ca.to_pem();
        let again = DevCa::from_pem("iptv.test", &c, &k).unwrap();
        let n = again.issue(NodeId::from_u128(9), None).unwrap();
        // The leaf verifies against the *original* root.
        let v = server_verifier(&[ca.root_der()], "iptv.test").unwrap();
        let name = ServerName::try_from("overlay.invalid").unwrap();
        v.verify_server_cert(&n.chain[0], &[], &name, &[], UnixTime::now())
            .unwrap();
    }

    #[test]
    fn verifier_refuses_foreign_ca_and_foreign_overlay() {
        let ca = DevCa::new("iptv.test").unwrap();
        let other = DevCa::new("iptv.test").unwrap();
        let n = other.issue(NodeId::from_u128(1), None).unwrap();
        let v = server_verifier(&[ca.root_der()], "iptv.test").unwrap();
        let name = ServerName::try_from("overlay.invalid").unwrap();
        assert!(v
            .verify_server_cert(&n.chain[0], &[], &name, &[], UnixTime::now())
            .is_err());
        let elsewhere = DevCa::new("elsewhere").unwrap();
        let n = elsewhere.issue(NodeId::from_u128(1), None).unwrap();
        let v = server_verifier(&[elsewhere.root_der()], "iptv.test").unwrap();
        assert!(v
            .verify_server_cert(&n.chain[0], &[], &name, &[], UnixTime::now())
            .is_err());
    }
}
