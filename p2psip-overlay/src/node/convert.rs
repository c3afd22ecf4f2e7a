//! Conversion between the node's typed messages ([`super::msg`]) and the RELOAD
//! wire format ([`crate::wire`], RFC 6940 section 6.3).
//!
//! [`to_wire`] builds the [`wire::Message`] a node message becomes (forwarding
//! header with via and destination lists, typed body, security block) and
//! [`frame_bytes`] the framed bytes a link carries (section 5.6.3.1). The
//! signatures are placeholders of the size an ECDSA P-256 / SHA-256 signature
//! with a `cert_hash_node_id` identity has (the link driver signs for real),
//! so the simulator's byte counts are those of the real encoding.
//! [`from_wire`] is the way back for a driver that receives bytes.

use crate::storage::{
    FetchSpec, KindData, KindId, Select, Signer, StatKind, StoreResult, StoredValue, ValueKey,
    ValueMeta,
};
use crate::topology::Id;
use std::net::SocketAddr;

use crate::wire::{
    self, ArrayRange, AttachReqAns, CandType, ChordLeaveData, ChordUpdateKind, DataSpecifier,
    DataValue, Destination, ErrorCode, ErrorResponse, FetchKindResponse, FindKindData,
    ForwardingHeader, FramedMessage, HashAlgorithm, IceCandidate, MetaData, MetaDataValue, NodeId,
    OverlayLinkType, ResourceId, SecurityBlock, Signature, SignatureAndHashAlgorithm,
    SignerIdentity, StatKindResponse, StoreKindData, StoreKindResponse, StoredData,
    StoredDataSpecifier, StoredDataValue, StoredMetaData, TransactionId, WireError,
};

use super::msg::{Body, ChordUpdate, Dest, Frame, Message, UpdateType};

/// Errors turning wire messages into node messages.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The bytes do not decode.
    #[error("wire: {0}")]
    Wire(#[from] WireError),
    /// A message the node core does not handle. Not produced any more: bodies the
    /// core does not interpret become [`Body::Opaque`] (forwarded unchanged).
    #[error("message code {0} is not handled by the node core")]
    Unsupported(u16),
    /// A destination that is not a 128-bit Node-ID or Resource-ID.
    #[error("destination is not a 128-bit id")]
    BadDestination,
}

fn node_id(id: Id) -> NodeId {
    NodeId::from_u128(id.0)
}

fn id_of(n: NodeId) -> Id {
    Id(n.to_u128())
}

fn ids(v: &[Id]) -> Vec<NodeId> {
    v.iter().copied().map(node_id).collect()
}

fn from_ids(v: &[NodeId]) -> Vec<Id> {
    v.iter().copied().map(id_of).collect()
}

fn resource(id: Id) -> ResourceId {
    ResourceId::from_node_id(node_id(id))
}

fn resource_id(r: &ResourceId) -> Result<Id, ConvertError> {
    r.as_node_id()
        .map(id_of)
        .ok_or(ConvertError::BadDestination)
}

/// A signature of the size a real one has: ECDSA P-256 over SHA-256 (DER, 72
/// bytes) with a `cert_hash_node_id` identity (SHA-256, 32 bytes).
fn placeholder_signature() -> Signature {
    Signature {
        algorithm: SignatureAndHashAlgorithm::ECDSA_SHA256,
        identity: SignerIdentity::CertHashNodeId {
            hash_alg: HashAlgorithm::SHA256,
            hash: vec![0; 32],
        },
        value: vec![0; 72],
    }
}

fn stored_data(v: &StoredValue) -> StoredData {
    let value = DataValue {
        exists: v.exists,
        value: v.data.clone(),
    };
    StoredData {
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
        signature: placeholder_signature(),
    }
}

fn stored_value(d: &StoredData, signer: &Signer) -> StoredValue {
    let (key, v) = match &d.value {
        StoredDataValue::Single(v) => (ValueKey::Single, v),
        StoredDataValue::Array { index, value } => (ValueKey::Index(*index), value),
        StoredDataValue::Dictionary { key, value } => (ValueKey::Key(key.clone()), value),
    };
    StoredValue {
        key,
        storage_time: d.storage_time,
        lifetime: d.lifetime,
        exists: v.exists,
        data: v.value.clone(),
        signer: signer.clone(),
    }
}

fn body_to_wire(b: &Body) -> wire::Body {
    match b {
        Body::JoinReq { joining } => wire::Body::JoinReq(wire::JoinReq {
            joining_peer_id: node_id(*joining),
            overlay_specific_data: Vec::new(),
        }),
        Body::JoinAns => wire::Body::JoinAns(wire::JoinAns::default()),
        Body::LeaveReq {
            leaving,
            successors,
            predecessors,
        } => {
            let data = if predecessors.is_empty() {
                ChordLeaveData::FromSucc(ids(successors))
            } else {
                ChordLeaveData::FromPred(ids(predecessors))
            };
            wire::Body::LeaveReq(wire::LeaveReq {
                leaving_peer_id: node_id(*leaving),
                overlay_specific_data: data.to_bytes().unwrap_or_default(),
            })
        }
        Body::LeaveAns => wire::Body::LeaveAns,
        Body::UpdateReq(u) => wire::Body::UpdateReq(wire::ChordUpdate {
            uptime: u.uptime,
            kind: match u.kind {
                UpdateType::PeerReady => ChordUpdateKind::PeerReady,
                UpdateType::Neighbors => ChordUpdateKind::Neighbors {
                    predecessors: ids(&u.predecessors),
                    successors: ids(&u.successors),
                },
                UpdateType::Full => ChordUpdateKind::Full {
                    predecessors: ids(&u.predecessors),
                    successors: ids(&u.successors),
                    fingers: ids(&u.fingers),
                },
            },
        }),
        Body::UpdateAns => wire::Body::UpdateAns,
        Body::PingReq => wire::Body::PingReq(Vec::new()),
        Body::PingAns { responder } => wire::Body::PingAns(wire::PingAns {
            // response_id (section 6.5.3): any 64-bit value of the responder's
            // choice; both halves of its Node-ID folded (never used for matching)
            response_id: ((responder.0 >> 64) as u64) ^ (responder.0 as u64),
            time: 0,
        }),
        Body::StoreReq {
            resource: r,
            replica_number,
            kind_data,
            ..
        } => wire::Body::StoreReq(wire::StoreReq {
            resource: resource(*r),
            replica_number: *replica_number,
            kind_data: kind_data
                .iter()
                .map(|kd| StoreKindData {
                    kind: wire::KindId(kd.kind.0),
                    generation_counter: kd.generation,
                    values: kd.values.iter().map(stored_data).collect(),
                })
                .collect(),
        }),
        Body::StoreAns { results } => wire::Body::StoreAns(
            results
                .iter()
                .map(|r| StoreKindResponse {
                    kind: wire::KindId(r.kind.0),
                    generation_counter: r.generation,
                    replicas: Vec::new(),
                })
                .collect(),
        ),
        Body::FetchReq { resource: r, specs } => wire::Body::FetchReq(wire::FetchReq {
            resource: resource(*r),
            specifiers: specs_to_wire(specs),
        }),
        Body::StatReq { resource: r, specs } => wire::Body::StatReq(wire::FetchReq {
            resource: resource(*r),
            specifiers: specs_to_wire(specs),
        }),
        Body::StatAns { kinds } => wire::Body::StatAns(
            kinds
                .iter()
                .map(|k| StatKindResponse {
                    kind: wire::KindId(k.kind.0),
                    generation: k.generation,
                    values: k.values.iter().map(meta_to_wire).collect(),
                })
                .collect(),
        ),
        Body::FindReq { resource: r, kinds } => wire::Body::FindReq(wire::FindReq {
            resource: resource(*r),
            kinds: kinds.iter().map(|k| wire::KindId(k.0)).collect(),
        }),
        Body::FindAns { results } => wire::Body::FindAns(
            results
                .iter()
                .map(|&(k, r)| FindKindData {
                    kind: wire::KindId(k.0),
                    closest: r.map_or_else(ResourceId::default, resource),
                })
                .collect(),
        ),
        Body::Opaque { code, body } => wire::Body::Unknown {
            code: wire::MessageCode(*code),
            body: body.clone(),
        },
        Body::FetchAns { kind_data } => wire::Body::FetchAns(
            kind_data
                .iter()
                .map(|kd| FetchKindResponse {
                    kind: wire::KindId(kd.kind.0),
                    generation: kd.generation,
                    values: kd.values.iter().map(stored_data).collect(),
                })
                .collect(),
        ),
        Body::GenerationTooLow { results } => {
            let ans = wire::Body::StoreAns(
                results
                    .iter()
                    .map(|r| StoreKindResponse {
                        kind: wire::KindId(r.kind.0),
                        generation_counter: r.generation,
                        replicas: Vec::new(),
                    })
                    .collect(),
            );
            wire::Body::Error(ErrorResponse {
                code: ErrorCode(5),
                info: ans.to_bytes().unwrap_or_default(),
            })
        }
        Body::Error { code, reason } => {
            wire::Body::Error(ErrorResponse::new(ErrorCode(*code), reason))
        }
        Body::UnknownKinds { kinds } => {
            let k: Vec<wire::KindId> = kinds
                .iter()
                .take(ErrorResponse::MAX_UNKNOWN_KINDS)
                .map(|k| wire::KindId(k.0))
                .collect();
            wire::Body::Error(
                ErrorResponse::unknown_kinds(&k)
                    .unwrap_or_else(|_| ErrorResponse::new(ErrorCode::UNKNOWN_KIND, "")),
            )
        }
        Body::AttachReq {
            candidates,
            send_update,
        } => wire::Body::AttachReq(attach(candidates, b"active", *send_update)),
        Body::AttachAns { candidates } => {
            wire::Body::AttachAns(attach(candidates, b"passive", false))
        }
        Body::AppAttachReq {
            application,
            candidates,
        } => wire::Body::AppAttachReq(wire::AppAttach {
            ufrag: b"reload".to_vec(),
            password: b"no-ice".to_vec(),
            application: *application,
            role: b"active".to_vec(),
            candidates: candidates.iter().map(|&a| IceCandidate::host(a)).collect(),
        }),
    }
}

fn specs_to_wire(specs: &[FetchSpec]) -> Vec<StoredDataSpecifier> {
    specs
        .iter()
        .map(|s| StoredDataSpecifier {
            kind: wire::KindId(s.kind.0),
            generation: s.generation,
            model: match &s.select {
                Select::Single => DataSpecifier::Single,
                Select::Indices(r) => DataSpecifier::Array(
                    r.iter()
                        .map(|&(first, last)| ArrayRange { first, last })
                        .collect(),
                ),
                Select::Keys(k) => DataSpecifier::Dictionary(k.clone()),
            },
        })
        .collect()
}

fn specs_from_wire(specs: &[StoredDataSpecifier]) -> Vec<FetchSpec> {
    specs
        .iter()
        .map(|s| FetchSpec {
            kind: KindId(s.kind.0),
            generation: s.generation,
            select: match &s.model {
                DataSpecifier::Single => Select::Single,
                DataSpecifier::Array(r) => {
                    Select::Indices(r.iter().map(|r| (r.first, r.last)).collect())
                }
                DataSpecifier::Dictionary(k) => Select::Keys(k.clone()),
            },
        })
        .collect()
}

/// StoredMetaData of one value (RFC 6940 section 7.4.3).
fn meta_to_wire(v: &ValueMeta) -> StoredMetaData {
    let m = MetaData {
        exists: v.exists,
        value_length: v.value_length,
        hash_algorithm: HashAlgorithm::SHA256,
        hash_value: v.hash.clone(),
    };
    StoredMetaData {
        storage_time: v.storage_time,
        lifetime: v.lifetime,
        metadata: match &v.key {
            ValueKey::Single => MetaDataValue::Single(m),
            ValueKey::Index(index) => MetaDataValue::Array {
                index: *index,
                value: m,
            },
            ValueKey::Key(key) => MetaDataValue::Dictionary {
                key: key.clone(),
                value: m,
            },
        },
    }
}

fn meta_from_wire(d: &StoredMetaData) -> ValueMeta {
    let (key, m) = match &d.metadata {
        MetaDataValue::Single(m) => (ValueKey::Single, m),
        MetaDataValue::Array { index, value } => (ValueKey::Index(*index), value),
        MetaDataValue::Dictionary { key, value } => (ValueKey::Key(key.clone()), value),
    };
    ValueMeta {
        key,
        storage_time: d.storage_time,
        lifetime: d.lifetime,
        exists: m.exists,
        value_length: m.value_length,
        hash: m.hash_value.clone(),
    }
}

/// AttachReqAns without ICE (RFC 6940 section 6.5.1.1): host candidates for
/// TLS-TCP-FH-NO-ICE; the ICE username fragment and password are fixed tokens (no
/// connectivity checks run).
fn attach(candidates: &[SocketAddr], role: &[u8], send_update: bool) -> AttachReqAns {
    AttachReqAns {
        ufrag: b"reload".to_vec(),
        password: b"no-ice".to_vec(),
        role: role.to_vec(),
        candidates: candidates.iter().map(|&a| IceCandidate::host(a)).collect(),
        send_update,
    }
}

/// The host candidates of an Attach for TLS-TCP-FH-NO-ICE (others are ignored).
fn host_candidates(a: &AttachReqAns) -> Vec<SocketAddr> {
    a.candidates
        .iter()
        .filter(|c| {
            c.cand_type == CandType::Host && c.overlay_link == OverlayLinkType::TLS_TCP_FH_NO_ICE
        })
        .map(|c| c.addr_port)
        .collect()
}

fn dest(d: &Dest) -> Destination {
    match d {
        Dest::Node(n) => Destination::Node(node_id(*n)),
        Dest::Resource(r) => Destination::Resource(resource(*r)),
    }
}

/// The wire message for a node message in overlay `overlay` (the hash of the
/// overlay name, [`wire::overlay_hash`]).
pub fn to_wire(m: &Message, overlay: u32) -> Result<wire::Message, WireError> {
    let mut fh = ForwardingHeader::new(
        overlay,
        TransactionId(m.txid),
        m.dest.iter().map(dest).collect(),
    );
    fh.ttl = m.ttl;
    fh.via_list = m
        .via
        .iter()
        .map(|&v| Destination::Node(node_id(v)))
        .collect();
    let mut w = wire::Message::new(fh, &body_to_wire(&m.body))?;
    w.security = SecurityBlock {
        certificates: Vec::new(),
        signature: placeholder_signature(),
    };
    Ok(w)
}

/// The framed bytes of a link frame (RFC 6940 section 5.6.3.1).
pub fn frame_bytes(f: &Frame, overlay: u32) -> Result<Vec<u8>, WireError> {
    let framed = match f {
        Frame::Data { seq, msg } => FramedMessage::Data {
            sequence: *seq,
            message: to_wire(msg, overlay)?.to_bytes()?,
        },
        Frame::Ack { seq } => FramedMessage::Ack {
            ack_sequence: *seq,
            received: 0,
        },
    };
    framed.to_bytes()
}

/// The node message for a decoded wire message. `signer` is the identity the
/// security layer verified for it (it signs the request and, in this
/// project, the stored values it carries).
pub fn from_wire(w: &wire::Message, signer: &Signer) -> Result<Message, ConvertError> {
    let to_dest = |d: &Destination| -> Result<Dest, ConvertError> {
        match d {
            Destination::Node(n) => Ok(Dest::Node(id_of(*n))),
            Destination::Resource(r) => Ok(Dest::Resource(resource_id(r)?)),
            _ => Err(ConvertError::BadDestination),
        }
    };
    let via = w
        .forwarding
        .via_list
        .iter()
        .map(|d| match d {
            Destination::Node(n) => Ok(id_of(*n)),
            _ => Err(ConvertError::BadDestination),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let dest = w
        .forwarding
        .destination_list
        .iter()
        .map(to_dest)
        .collect::<Result<Vec<_>, _>>()?;
    let values = |v: &[StoredData]| v.iter().map(|d| stored_value(d, signer)).collect();
    let body = match w.body()? {
        wire::Body::JoinReq(j) => Body::JoinReq {
            joining: id_of(j.joining_peer_id),
        },
        wire::Body::JoinAns(_) => Body::JoinAns,
        wire::Body::LeaveReq(l) => {
            let data = ChordLeaveData::from_bytes(&l.overlay_specific_data).ok();
            let (successors, predecessors) = match data {
                Some(ChordLeaveData::FromSucc(s)) => (from_ids(&s), Vec::new()),
                Some(ChordLeaveData::FromPred(p)) => (Vec::new(), from_ids(&p)),
                None => (Vec::new(), Vec::new()),
            };
            Body::LeaveReq {
                leaving: id_of(l.leaving_peer_id),
                successors,
                predecessors,
            }
        }
        wire::Body::LeaveAns => Body::LeaveAns,
        wire::Body::UpdateReq(u) => {
            let (kind, predecessors, successors, fingers) = match u.kind {
                ChordUpdateKind::PeerReady => (UpdateType::PeerReady, vec![], vec![], vec![]),
                ChordUpdateKind::Neighbors {
                    predecessors,
                    successors,
                } => (UpdateType::Neighbors, predecessors, successors, vec![]),
                ChordUpdateKind::Full {
                    predecessors,
                    successors,
                    fingers,
                } => (UpdateType::Full, predecessors, successors, fingers),
            };
            Body::UpdateReq(ChordUpdate {
                uptime: u.uptime,
                kind,
                predecessors: from_ids(&predecessors),
                successors: from_ids(&successors),
                fingers: from_ids(&fingers),
            })
        }
        wire::Body::UpdateAns => Body::UpdateAns,
        wire::Body::PingReq(_) => Body::PingReq,
        wire::Body::PingAns(_) => Body::PingAns {
            // The answering peer is the first entry of the response's via list;
            // the via list of an answer straight from the responder is empty, and
            // the node core names the responder from the link then
            // (`Node::handle` pushes the link's peer before delivery).
            responder: via.first().copied().unwrap_or_default(),
        },
        wire::Body::StoreReq(s) => Body::StoreReq {
            resource: resource_id(&s.resource)?,
            replica_number: s.replica_number,
            kind_data: s
                .kind_data
                .iter()
                .map(|kd| KindData {
                    kind: KindId(kd.kind.0),
                    generation: kd.generation_counter,
                    values: values(&kd.values),
                })
                .collect(),
            signer: signer.clone(),
        },
        wire::Body::StoreAns(r) => Body::StoreAns {
            results: r
                .iter()
                .map(|r| StoreResult {
                    kind: KindId(r.kind.0),
                    generation: r.generation_counter,
                })
                .collect(),
        },
        wire::Body::FetchReq(f) => Body::FetchReq {
            resource: resource_id(&f.resource)?,
            specs: specs_from_wire(&f.specifiers),
        },
        wire::Body::StatReq(f) => Body::StatReq {
            resource: resource_id(&f.resource)?,
            specs: specs_from_wire(&f.specifiers),
        },
        wire::Body::StatAns(r) => Body::StatAns {
            kinds: r
                .iter()
                .map(|k| StatKind {
                    kind: KindId(k.kind.0),
                    generation: k.generation,
                    values: k.values.iter().map(meta_from_wire).collect(),
                })
                .collect(),
        },
        wire::Body::FindReq(f) => Body::FindReq {
            resource: resource_id(&f.resource)?,
            kinds: f.kinds.iter().map(|k| KindId(k.0)).collect(),
        },
        wire::Body::FindAns(r) => Body::FindAns {
            results: r
                .iter()
                .map(|f| {
                    let closest = if f.closest.as_bytes().is_empty() {
                        None
                    } else {
                        Some(resource_id(&f.closest)?)
                    };
                    Ok((KindId(f.kind.0), closest))
                })
                .collect::<Result<Vec<_>, ConvertError>>()?,
        },
        wire::Body::FetchAns(r) => Body::FetchAns {
            kind_data: r
                .iter()
                .map(|kd| KindData {
                    kind: KindId(kd.kind.0),
                    generation: kd.generation,
                    values: values(&kd.values),
                })
                .collect(),
        },
        wire::Body::AttachReq(a) => Body::AttachReq {
            candidates: host_candidates(&a),
            send_update: a.send_update,
        },
        wire::Body::AttachAns(a) => Body::AttachAns {
            candidates: host_candidates(&a),
        },
        wire::Body::AppAttachReq(a) => Body::AppAttachReq {
            application: a.application,
            candidates: a.candidates.iter().map(|c| c.addr_port).collect(),
        },
        wire::Body::Error(e)
            if e.code.0 == 5
                && matches!(
                    wire::Body::decode(wire::MessageCode::STORE_ANS, &e.info),
                    Ok(wire::Body::StoreAns(_))
                ) =>
        {
            let Ok(wire::Body::StoreAns(r)) =
                wire::Body::decode(wire::MessageCode::STORE_ANS, &e.info)
            else {
                unreachable!("matched above")
            };
            Body::GenerationTooLow {
                results: r
                    .iter()
                    .map(|r| StoreResult {
                        kind: KindId(r.kind.0),
                        generation: r.generation_counter,
                    })
                    .collect(),
            }
        }
        wire::Body::Error(e)
            if e.code == ErrorCode::UNKNOWN_KIND && e.info_unknown_kinds().is_ok() =>
        {
            Body::UnknownKinds {
                kinds: e
                    .info_unknown_kinds()
                    .unwrap_or_default()
                    .iter()
                    .map(|k| KindId(k.0))
                    .collect(),
            }
        }
        wire::Body::Error(e) => Body::Error {
            code: e.code.0,
            reason: String::from_utf8_lossy(&e.info).into_owned(),
        },
        // Probe, RouteQuery, ConfigUpdate, AppAttachAns and unknown codes: carried
        // as they came, so a forwarding peer forwards them (RFC 6940 section 6.1)
        other => Body::Opaque {
            code: other.code().0,
            body: w.contents.body.clone(),
        },
    };
    Ok(Message {
        txid: w.forwarding.transaction_id.0,
        ttl: w.forwarding.ttl,
        via,
        dest,
        body,
    })
}
