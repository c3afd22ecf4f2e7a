//! The messages the node core exchanges, in typed form (RFC 6940 sections 6
//! and 9), and the link frames that carry them (section 5.6.3).
//!
//! These are the node's own working types. The byte encoding lives in
//! [`crate::wire`] (written alongside); until the node converts to it, the
//! simulator charges each frame [`Frame::wire_size`], an estimate computed
//! field by field from the RFC's encodings (forwarding header, message
//! contents, a security block with one ECDSA P-256 signature and a
//! certificate-hash signer identity, framing header).

use std::net::SocketAddr;

use crate::storage::{
    FetchSpec, KindData, KindId, Select, Signer, StatKind, StoreResult, ValueKey,
};
use crate::topology::Id;

/// A destination list entry (RFC 6940 section 6.3.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    /// A peer.
    Node(Id),
    /// A resource: delivered to the peer responsible for it.
    Resource(Id),
}

/// ChordUpdate type (RFC 6940 section 9, Updates).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateType {
    /// peer_ready: the sender is ready to receive requests.
    PeerReady,
    /// neighbors: predecessor and successor lists.
    Neighbors,
    /// full: neighbours and fingers.
    Full,
}

/// ChordUpdate (RFC 6940 section 9, Updates).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChordUpdate {
    /// Seconds the sender has been up.
    pub uptime: u32,
    /// What follows.
    pub kind: UpdateType,
    /// Predecessors, nearest first.
    pub predecessors: Vec<Id>,
    /// Successors, nearest first.
    pub successors: Vec<Id>,
    /// Fingers (type `full` only).
    pub fingers: Vec<Id>,
}

/// Message bodies the node uses (RFC 6940 sections 6.4, 6.5, 7.4, 9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// JoinReq (section 6.4.2.1 / 9.5).
    JoinReq {
        /// The joining peer.
        joining: Id,
    },
    /// JoinAns.
    JoinAns,
    /// LeaveReq with ChordLeaveData (section 9, Leaving).
    LeaveReq {
        /// The leaving peer.
        leaving: Id,
        /// Its successors (sent to predecessors).
        successors: Vec<Id>,
        /// Its predecessors (sent to successors).
        predecessors: Vec<Id>,
    },
    /// LeaveAns.
    LeaveAns,
    /// UpdateReq (section 9, Updates).
    UpdateReq(ChordUpdate),
    /// UpdateAns.
    UpdateAns,
    /// PingReq (section 6.5.1); routed to a Resource-ID it finds the
    /// responsible peer (used for joins and finger probes, section 9 finger table refresh).
    PingReq,
    /// PingAns; `responder` is the answering peer.
    PingAns {
        /// Who answered.
        responder: Id,
    },
    /// StoreReq (section 7.4.1.1).
    StoreReq {
        /// Resource-ID.
        resource: Id,
        /// 0 for the responsible peer, 1.. for replicas.
        replica_number: u8,
        /// Data per kind.
        kind_data: Vec<KindData>,
        /// Signer of the request (from the security block).
        signer: Signer,
    },
    /// StoreAns.
    StoreAns {
        /// Per-kind generations.
        results: Vec<StoreResult>,
    },
    /// FetchReq (section 7.4.2.1).
    FetchReq {
        /// Resource-ID.
        resource: Id,
        /// What to fetch.
        specs: Vec<FetchSpec>,
    },
    /// FetchAns.
    FetchAns {
        /// Per-kind values.
        kind_data: Vec<KindData>,
    },
    /// AttachReq without ICE (section 6.5.1): routed through the overlay to a
    /// Node-ID; carries the sender's host candidates (TLS-TCP-FH-NO-ICE).
    AttachReq {
        /// Host candidates (listen addresses) of the sender.
        candidates: Vec<SocketAddr>,
        /// send_update: ask the answerer for an Update once linked.
        send_update: bool,
    },
    /// AppAttachReq (section 6.5.2): a link for an application. This node serves
    /// none, so it is answered with Error_Not_Found.
    AppAttachReq {
        /// The application (port registry number, 5060 for SIP).
        application: u16,
        /// Host candidates of the sender.
        candidates: Vec<SocketAddr>,
    },
    /// AttachAns: the answerer's host candidates.
    AttachAns {
        /// Host candidates of the answering peer.
        candidates: Vec<SocketAddr>,
    },
    /// StatReq (section 7.4.3): metadata of the values a FetchReq would return.
    StatReq {
        /// Resource-ID.
        resource: Id,
        /// What to describe.
        specs: Vec<FetchSpec>,
    },
    /// StatAns: per-kind metadata.
    StatAns {
        /// Per-kind generation and value metadata.
        kinds: Vec<StatKind>,
    },
    /// FindReq (section 7.4.4).
    FindReq {
        /// Where to start looking.
        resource: Id,
        /// Kinds looked for.
        kinds: Vec<KindId>,
    },
    /// FindAns: per kind, the closest Resource-ID at or after the requested one
    /// that the answering peer stores (`None`: an empty Resource-ID on the wire).
    FindAns {
        /// (kind, closest Resource-ID).
        results: Vec<(KindId, Option<Id>)>,
    },
    /// A message the core does not interpret (Probe, RouteQuery, ConfigUpdate,
    /// unknown codes): forwarded by its destination list whatever its type
    /// (RFC 6940 section 6.1). At its destination the core decodes Probe, RouteQuery
    /// and ConfigUpdate itself and answers any other request with
    /// Error_Invalid_Message. The body bytes travel unchanged.
    Opaque {
        /// The message code (odd: request, even or 0xffff: response; section 6.3.3).
        code: u16,
        /// The body as it came.
        body: Vec<u8>,
    },
    /// Error_Generation_Counter_Too_Low answering a StoreReq (section 7.4.1.1): the
    /// error_info is a StoreAns with the kinds' current generation counters.
    GenerationTooLow {
        /// Per-kind current generations.
        results: Vec<StoreResult>,
    },
    /// Error_Unknown_Kind (section 7.4.1.2): the error_info lists the kinds of the
    /// request this peer does not know (`KindId unknown_kinds<0..2^8-1>`).
    UnknownKinds {
        /// The unknown kinds.
        kinds: Vec<KindId>,
    },
    /// ErrorResponse (section 6.3.3.1).
    Error {
        /// RFC 6940 section 14.9 code.
        code: u16,
        /// Reason phrase.
        reason: String,
    },
}

/// RFC 6940 section 14.9 error codes the node emits.
pub mod error_code {
    /// Error_Forbidden.
    pub const FORBIDDEN: u16 = 2;
    /// Error_Not_Found.
    pub const NOT_FOUND: u16 = 3;
    /// Error_Request_Timeout.
    pub const REQUEST_TIMEOUT: u16 = 4;
    /// Error_Config_Too_Old.
    pub const CONFIG_TOO_OLD: u16 = 15;
    /// Error_Config_Too_New.
    pub const CONFIG_TOO_NEW: u16 = 16;
    /// Error_TTL_Exceeded.
    pub const TTL_EXCEEDED: u16 = 10;
    /// Error_Message_Too_Large.
    pub const MESSAGE_TOO_LARGE: u16 = 11;
    /// Error_Unknown_Kind.
    pub const UNKNOWN_KIND: u16 = 12;
    /// Error_Invalid_Message.
    pub const INVALID_MESSAGE: u16 = 20;
}

impl Body {
    /// True for answers (including errors).
    #[must_use]
    pub fn is_response(&self) -> bool {
        matches!(
            self,
            Body::JoinAns
                | Body::LeaveAns
                | Body::UpdateAns
                | Body::PingAns { .. }
                | Body::StoreAns { .. }
                | Body::FetchAns { .. }
                | Body::AttachAns { .. }
                | Body::StatAns { .. }
                | Body::FindAns { .. }
                | Body::GenerationTooLow { .. }
                | Body::UnknownKinds { .. }
                | Body::Error { .. }
        ) || matches!(self, Body::Opaque { code, .. } if !crate::wire::MessageCode(*code).is_request())
    }

    /// Short name for logs and statistics.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Body::JoinReq { .. } => "JoinReq",
            Body::JoinAns => "JoinAns",
            Body::LeaveReq { .. } => "LeaveReq",
            Body::LeaveAns => "LeaveAns",
            Body::UpdateReq(_) => "UpdateReq",
            Body::UpdateAns => "UpdateAns",
            Body::PingReq => "PingReq",
            Body::PingAns { .. } => "PingAns",
            Body::StoreReq { .. } => "StoreReq",
            Body::StoreAns { .. } => "StoreAns",
            Body::FetchReq { .. } => "FetchReq",
            Body::FetchAns { .. } => "FetchAns",
            Body::AttachReq { .. } => "AttachReq",
            Body::AttachAns { .. } => "AttachAns",
            Body::AppAttachReq { .. } => "AppAttachReq",
            Body::StatReq { .. } => "StatReq",
            Body::StatAns { .. } => "StatAns",
            Body::FindReq { .. } => "FindReq",
            Body::FindAns { .. } => "FindAns",
            Body::Opaque { .. } => "Opaque",
            Body::GenerationTooLow { .. } => "Error",
            Body::UnknownKinds { .. } => "Error",
            Body::Error { .. } => "Error",
        }
    }
}

/// A RELOAD message: forwarding header fields the node uses plus the body
/// (RFC 6940 section 6.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// transaction_id.
    pub txid: u64,
    /// TTL (section 6.3.2: decremented per hop, 0 = Error_TTL_Exceeded).
    pub ttl: u8,
    /// Via list: the peers the message came through.
    pub via: Vec<Id>,
    /// Destination list; the first entry is the next target.
    pub dest: Vec<Dest>,
    /// Body.
    pub body: Body,
}

/// Link frame (RFC 6940 section 5.6.3.1, framed message transport).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// DATA frame with a sequence number.
    Data {
        /// Sequence number on this link.
        seq: u32,
        /// The message.
        msg: Box<Message>,
    },
    /// ACK of a DATA frame.
    Ack {
        /// Acknowledged sequence number.
        seq: u32,
    },
}

/// Security block size: empty certificate list (2), SignatureAndHashAlgorithm
/// (2), SignerIdentity cert_hash_node_id (1 + 2 + 1 + 1 + 32), signature
/// (2 + 72, DER ECDSA P-256).
const SECURITY_BLOCK: usize = 2 + 2 + 37 + 2 + 72;
/// Per-StoredData signature (section 7.1): same shape without the cert list.
const DATA_SIGNATURE: usize = 2 + 37 + 2 + 72;
/// Fixed forwarding header (section 6.3.2).
const FORWARDING_HEADER: usize = 38;
/// Framing header of a DATA frame (type 1, sequence 4, length 3).
const FRAME_DATA: usize = 8;
/// ACK frame (type 1, ack_sequence 4, received 4).
const FRAME_ACK: usize = 9;
const ID: usize = 16;

fn kind_data_size(kd: &KindData) -> usize {
    let values: usize = kd
        .values
        .iter()
        .map(|v| {
            let model = match &v.key {
                ValueKey::Single => 0,
                ValueKey::Index(_) => 4,
                ValueKey::Key(k) => 2 + k.len(),
            };
            // length, storage_time, lifetime, exists + value, signature
            4 + 8 + 4 + model + 1 + 4 + v.data.len() + DATA_SIGNATURE
        })
        .sum();
    4 + 8 + 4 + values
}

fn specs_size(specs: &[FetchSpec]) -> usize {
    17 + 2
        + specs
            .iter()
            .map(|s| {
                4 + 8
                    + 2
                    + match &s.select {
                        Select::Single => 0,
                        Select::Indices(r) => 2 + 8 * r.len(),
                        Select::Keys(k) => 2 + k.iter().map(|k| 2 + k.len()).sum::<usize>(),
                    }
            })
            .sum::<usize>()
}

impl Body {
    /// Encoded size of the message body (RFC 6940 section 6.3.3 layouts).
    #[must_use]
    pub fn wire_size(&self) -> usize {
        match self {
            Body::JoinReq { .. } => ID + 2,
            Body::JoinAns | Body::LeaveAns | Body::UpdateAns => 2,
            Body::LeaveReq {
                successors,
                predecessors,
                ..
            } => ID + 2 + 1 + 2 + ID * (successors.len() + predecessors.len()),
            Body::UpdateReq(u) => {
                2 + 4 + 1 + 6 + ID * (u.predecessors.len() + u.successors.len() + u.fingers.len())
            }
            Body::PingReq => 2,
            Body::PingAns { .. } => 16,
            Body::StoreReq { kind_data, .. } => {
                17 + 1 + 4 + kind_data.iter().map(kind_data_size).sum::<usize>()
            }
            Body::StoreAns { results } => 2 + results.len() * (4 + 8 + 2),
            Body::GenerationTooLow { results } => 2 + 2 + 2 + results.len() * (4 + 8 + 2) + 2,
            Body::FetchReq { specs, .. } | Body::StatReq { specs, .. } => specs_size(specs),
            Body::FetchAns { kind_data } => 4 + kind_data.iter().map(kind_data_size).sum::<usize>(),
            Body::Error { reason, .. } => 2 + 1 + reason.len() + 2,
            Body::UnknownKinds { kinds } => 2 + 2 + 1 + 4 * kinds.len(),
            Body::StatAns { kinds } => {
                4 + kinds
                    .iter()
                    .map(|k| {
                        4 + 8
                            + 4
                            + k.values
                                .iter()
                                .map(|v| {
                                    let model = match &v.key {
                                        ValueKey::Single => 0,
                                        ValueKey::Index(_) => 4,
                                        ValueKey::Key(k) => 2 + k.len(),
                                    };
                                    4 + 8 + 4 + model + 1 + 4 + 1 + 1 + v.hash.len()
                                })
                                .sum::<usize>()
                    })
                    .sum::<usize>()
            }
            Body::FindReq { kinds, .. } => 17 + 1 + 4 * kinds.len(),
            Body::FindAns { results } => 2 + results.len() * (4 + 17),
            Body::Opaque { body, .. } => body.len(),
            // ufrag, password, role, candidates (IPv4 host: 29 bytes each), send_update
            Body::AttachReq { candidates, .. }
            | Body::AttachAns { candidates }
            | Body::AppAttachReq { candidates, .. } => {
                1 + 6 + 1 + 6 + 1 + 7 + 2 + 29 * candidates.len() + 1
            }
        }
    }
}

impl Message {
    /// Encoded size: forwarding header with via and destination lists,
    /// message contents (code, length, body, empty extensions), security block.
    #[must_use]
    pub fn wire_size(&self) -> usize {
        let list = |n: usize| n * (2 + ID + 1);
        FORWARDING_HEADER
            + list(self.via.len())
            + list(self.dest.len())
            + 2
            + 4
            + self.body.wire_size()
            + 4
            + SECURITY_BLOCK
    }
}

impl Frame {
    /// Bytes on the link for this frame (framing header included).
    #[must_use]
    pub fn wire_size(&self) -> usize {
        match self {
            Frame::Data { msg, .. } => FRAME_DATA + msg.wire_size(),
            Frame::Ack { .. } => FRAME_ACK,
        }
    }
}
