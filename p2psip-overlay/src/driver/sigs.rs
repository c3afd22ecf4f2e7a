//! Per-StoredData signatures across hops (RFC 6940 sections 7.1 and 6.3.4).
//!
//! Each stored value is signed by the peer that stored it, and the signature travels
//! with the value: in replica and handover stores, and in fetch answers. The core's
//! storage keeps the signer's identity but not the signature bytes, so the driver keeps
//! them here, keyed by (kind, value, storage time), together with the signer's
//! certificate: a StoreReq or FetchAns it sends carries the original signatures and the
//! certificates that verify them in its security block; one it receives is checked
//! value by value (the certificate must chain to the overlay's root, the signature must
//! verify, else the whole message is refused) and each value's signer is taken from the
//! certificate that verified it.
//! Both tables are bounded (cleared when full, after which values are re-signed by the
//! sending peer, the behaviour of the core's placeholders).

use std::collections::HashMap;
use std::sync::Arc;

use crate::cert::Trust;
use crate::node::msg::{Body, Message};
use crate::storage::Signer as ValueSigner;
use crate::topology::Id;
use crate::wire::{
    self, cert_hash_identity, verify_stored_data, CertificateType, GenericCertificate, KindId,
    MessageContents, NodeId, ResourceId, Signature, SignerIdentity, StoredData, StoredDataValue,
};

const MAX_SIGS: usize = 200_000;
const MAX_CERTS: usize = 10_000;

/// (Resource-ID, kind, storage time, value): the resource too, so that equal values
/// stored at two resources in the same millisecond (two users' unregisters by one peer)
/// keep their own signatures.
type Key = (ResourceId, KindId, u64, StoredDataValue);

/// Why the stored values of a message were refused (answer Error_Forbidden).
#[derive(Debug, thiserror::Error)]
pub enum ValueRefused {
    /// A value's signer identity names no certificate of the security block.
    #[error("stored value signed by no certificate in the message")]
    NoCertificate,
    /// The value's certificate does not chain to the overlay's root.
    #[error("stored value signer not trusted: {0}")]
    Untrusted(String),
    /// The value's signature does not verify.
    #[error("stored value signature: {0}")]
    BadSignature(wire::SignError),
}

/// The signature table (module docs).
#[derive(Debug, Default)]
pub struct DataSigs {
    sigs: HashMap<Key, Signature>,
    certs: HashMap<SignerIdentity, Arc<Vec<u8>>>,
}

impl DataSigs {
    fn cert(&self, id: &SignerIdentity) -> Option<Arc<Vec<u8>>> {
        self.certs.get(id).cloned()
    }

    fn add_cert(&mut self, der: &[u8]) {
        if self.certs.len() >= MAX_CERTS {
            self.certs.clear();
        }
        self.certs
            .entry(cert_hash_identity(der))
            .or_insert_with(|| Arc::new(der.to_vec()));
    }

    fn add_sig(&mut self, rid: &ResourceId, kind: KindId, d: &StoredData) {
        if self.sigs.len() >= MAX_SIGS {
            self.sigs.clear();
        }
        self.sigs.insert(
            (rid.clone(), kind, d.storage_time, d.value.clone()),
            d.signature.clone(),
        );
    }

    /// Signs the value `v` this node is about to store at `resource` with `signer`, a
    /// certificate other than this node's own (a user certificate issued to this node's
    /// Node-ID, [`super::OverlayHandle::store_as`]), and records the signature and the
    /// certificate: the StoreReq carrying it (and later replica and handover stores, and
    /// fetch answers) carry this signature, and its certificate in the security block.
    pub fn presign(
        &mut self,
        resource: Id,
        kind: crate::storage::KindId,
        v: &crate::storage::StoredValue,
        signer: &wire::Signer,
    ) -> Result<(), wire::SignError> {
        use crate::storage::ValueKey;
        let value = wire::DataValue {
            exists: v.exists,
            value: v.data.clone(),
        };
        let mut d = StoredData {
            storage_time: v.storage_time,
            lifetime: v.lifetime,
            value: match &v.key {
                ValueKey::Single => StoredDataValue::Single(value),
                ValueKey::Index(i) => StoredDataValue::Array { index: *i, value },
                ValueKey::Key(k) => StoredDataValue::Dictionary {
                    key: k.clone(),
                    value,
                },
            },
            signature: Signature {
                algorithm: wire::SignatureAndHashAlgorithm::ECDSA_SHA256,
                identity: signer.identity().clone(),
                value: Vec::new(),
            },
        };
        let rid = ResourceId::from_node_id(NodeId::from_u128(resource.0));
        let kind = KindId(kind.0);
        signer.sign_stored_data(&rid, kind, &mut d)?;
        self.add_cert(&signer.certificate().certificate);
        self.add_sig(&rid, kind, &d);
        Ok(())
    }

    /// A received message: learns its certificates, checks each StoredData signature of a
    /// StoreReq (against its Resource-ID) or FetchAns (against `resource`, the Resource-ID
    /// this node fetched; `None`: the answer is only passing through, not checked) and sets
    /// the value signers in `msg` (the core's form of `w`) from the certificates.
    ///
    /// Strict (RFC 6940 section 7.1 and 7.4.1.1): every value must carry a signature by a
    /// certificate that chains to the overlay's root at `now_unix_s` ([`Trust`]) and
    /// verifies; otherwise the whole message is refused ([`ValueRefused`]), and nothing of
    /// it reaches the storage. The storage then checks each value's signer against the
    /// kind's access policy.
    pub fn on_receive(
        &mut self,
        w: &wire::Message,
        msg: &mut Message,
        trust: &mut Trust,
        now_unix_s: u64,
        resource: Option<Id>,
    ) -> Result<(), ValueRefused> {
        let Ok(body) = w.body() else { return Ok(()) };
        let (resource, kinds): (Option<ResourceId>, Vec<(KindId, Vec<StoredData>)>) = match body {
            wire::Body::StoreReq(s) => (
                Some(s.resource),
                s.kind_data
                    .into_iter()
                    .map(|k| (k.kind, k.values))
                    .collect(),
            ),
            wire::Body::FetchAns(r) => match resource {
                Some(res) => (
                    Some(ResourceId::from_node_id(NodeId::from_u128(res.0))),
                    r.into_iter().map(|k| (k.kind, k.values)).collect(),
                ),
                None => return Ok(()),
            },
            _ => return Ok(()),
        };
        let Some(rid) = resource else { return Ok(()) };
        let core_kinds = match &mut msg.body {
            Body::StoreReq { kind_data, .. } | Body::FetchAns { kind_data } => kind_data,
            _ => return Ok(()),
        };
        let certs: Vec<&[u8]> = w
            .security
            .certificates
            .iter()
            .filter(|c| c.cert_type == CertificateType::X509)
            .map(|c| c.certificate.as_slice())
            .collect();
        let mut good = Vec::new();
        for ((kind, values), ckd) in kinds.into_iter().zip(core_kinds.iter_mut()) {
            for (d, cv) in values.iter().zip(ckd.values.iter_mut()) {
                let cert = certs
                    .iter()
                    .find(|c| cert_hash_identity(c) == d.signature.identity)
                    .ok_or(ValueRefused::NoCertificate)?;
                let who = trust
                    .check(cert, &[], now_unix_s)
                    .map_err(|e| ValueRefused::Untrusted(e.to_string()))?;
                verify_stored_data(&rid, kind, d, cert).map_err(ValueRefused::BadSignature)?;
                let node = who
                    .node_in(trust.overlay())
                    .ok_or_else(|| ValueRefused::Untrusted("no Node-ID".into()))?;
                cv.signer = ValueSigner {
                    node_id: Id(node.to_u128()),
                    user_name: who.user.clone().unwrap_or_default(),
                };
                good.push((kind, d.clone(), cert.to_vec()));
            }
        }
        // RFC 6940 section 7.4.1.1: the access check is on the credential that signed
        // each element. A client store whose values are all signed by one certificate
        // naming the sender's own Node-ID (a user certificate the enrollment server
        // issued to that peer) is a store by that user: the requester takes its user
        // name, so the storage's check of the requester agrees with the values'.
        if let Body::StoreReq {
            kind_data, signer, ..
        } = &mut msg.body
        {
            let mut value_signers = kind_data
                .iter()
                .flat_map(|k| k.values.iter().map(|v| &v.signer));
            if let Some(first) = value_signers.next() {
                if first.node_id == signer.node_id && value_signers.all(|s| s == first) {
                    signer.user_name = first.user_name.clone();
                }
            }
        }
        for (kind, d, cert) in good {
            self.add_cert(&cert);
            self.add_sig(&rid, kind, &d);
        }
        Ok(())
    }

    /// A StoreReq or FetchAns this node sends (not forwards): each value gets its
    /// original signature when known, else a fresh one by `signer`; the certificates
    /// needed to verify them are returned for the security block.
    pub fn on_send(
        &mut self,
        w: &mut wire::Message,
        signer: &wire::Signer,
        resource: Option<Id>,
    ) -> Result<Vec<GenericCertificate>, super::DriverError> {
        let mut body = w.body()?;
        let kinds: Vec<(KindId, &mut Vec<StoredData>)> = match &mut body {
            wire::Body::StoreReq(s) => s
                .kind_data
                .iter_mut()
                .map(|k| (k.kind, &mut k.values))
                .collect(),
            wire::Body::FetchAns(r) => r.iter_mut().map(|k| (k.kind, &mut k.values)).collect(),
            _ => return Ok(Vec::new()),
        };
        let rid = ResourceId::from_node_id(NodeId::from_u128(resource.map_or(0, |r| r.0)));
        let mut certs: Vec<GenericCertificate> = Vec::new();
        let mut fresh = Vec::new();
        for (kind, values) in kinds {
            for d in values.iter_mut() {
                let key = (rid.clone(), kind, d.storage_time, d.value.clone());
                let known = self
                    .sigs
                    .get(&key)
                    .and_then(|s| self.cert(&s.identity).map(|c| (s.clone(), c)));
                match known {
                    Some((sig, cert)) => {
                        d.signature = sig;
                        if !certs.iter().any(|c| c.certificate == *cert) {
                            certs.push(GenericCertificate {
                                cert_type: CertificateType::X509,
                                certificate: cert.to_vec(),
                            });
                        }
                    }
                    None => {
                        signer.sign_stored_data(&rid, kind, d)?;
                        fresh.push((kind, d.clone()));
                    }
                }
            }
        }
        for (kind, d) in fresh {
            self.add_sig(&rid, kind, &d);
        }
        w.contents = MessageContents::from_body(&body)?;
        Ok(certs)
    }

    /// Records this node's own certificate so its values resolve.
    pub fn add_own_cert(&mut self, der: &[u8]) {
        self.add_cert(der);
    }
}
