//! Typed message bodies (RFC 6940 sections 6.4, 6.5 and 7.4; CHORD-RELOAD section 9).
//! [`Body::decode`] reads the `message_body` of a [`super::MessageContents`] for its code;
//! [`Body::encode`] writes it. Unknown codes survive as [`Body::Unknown`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::codec::{put_list, put_opaque, put_u16, put_u32, put_u64, put_vec, Reader};
use super::data::{KindModels, StoredData, StoredDataSpecifier, StoredMetaData};
use super::{Destination, ErrorCode, KindId, MessageCode, NodeId, ResourceId, WireError};

// ---------------------------------------------------------------- addresses, ICE

/// `IpAddressPort` (RFC 6940 section 6.5.1.1): an IPv4 or IPv6 address and port.
pub(crate) fn encode_addr(a: &SocketAddr, out: &mut Vec<u8>) {
    match a.ip() {
        IpAddr::V4(ip) => {
            out.extend_from_slice(&[1, 6]);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.extend_from_slice(&[2, 18]);
            out.extend_from_slice(&ip.octets());
        }
    }
    put_u16(out, a.port());
}

pub(crate) fn decode_addr(r: &mut Reader<'_>) -> Result<SocketAddr, WireError> {
    let t = r.u8("AddressType")?;
    let len = r.u8("IpAddressPort length")?;
    let mut s = r.sub_exact(usize::from(len), "IpAddressPort")?;
    let ip = match t {
        1 => IpAddr::V4(Ipv4Addr::from(s.array::<4>("IPv4 address")?)),
        2 => IpAddr::V6(Ipv6Addr::from(s.array::<16>("IPv6 address")?)),
        t => {
            return Err(WireError::InvalidValue {
                what: "AddressType",
                value: u64::from(t),
            })
        }
    };
    let port = s.u16("port")?;
    s.finish("IpAddressPort")?;
    Ok(SocketAddr::new(ip, port))
}

/// `OverlayLinkType` (RFC 6940 section 6.5.1.1), open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OverlayLinkType(pub u8);

impl OverlayLinkType {
    /// DTLS over UDP with simple reliability.
    pub const DTLS_UDP_SR: Self = Self(1);
    /// The same without ICE.
    pub const DTLS_UDP_SR_NO_ICE: Self = Self(3);
    /// TLS over TCP with the framing header, no ICE: what this project uses.
    pub const TLS_TCP_FH_NO_ICE: Self = Self(4);
}

/// `CandType` (RFC 6940 section 6.5.1.1) with the related address of non-host candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CandType {
    /// `host(1)`.
    Host,
    /// `srflx(2)` with its related address.
    Srflx(SocketAddr),
    /// `relay(4)` with its related address.
    Relay(SocketAddr),
}

/// `IceExtension`: a name/value pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IceExtension {
    /// `opaque name<0..2^16-1>`.
    pub name: Vec<u8>,
    /// `opaque value<0..2^16-1>`.
    pub value: Vec<u8>,
}

/// `IceCandidate` (RFC 6940 section 6.5.1.1). Without ICE the one host candidate is the
/// address to connect to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IceCandidate {
    /// The candidate's address.
    pub addr_port: SocketAddr,
    /// The link protocol.
    pub overlay_link: OverlayLinkType,
    /// `opaque foundation<0..255>`.
    pub foundation: Vec<u8>,
    /// ICE priority.
    pub priority: u32,
    /// Candidate type.
    pub cand_type: CandType,
    /// Extensions.
    pub extensions: Vec<IceExtension>,
}

impl IceCandidate {
    /// A host candidate for a no-ICE link (TLS-TCP-FH-NO-ICE).
    pub fn host(addr: SocketAddr) -> Self {
        IceCandidate {
            addr_port: addr,
            overlay_link: OverlayLinkType::TLS_TCP_FH_NO_ICE,
            foundation: b"1".to_vec(),
            priority: 0x7e00_00ff,
            cand_type: CandType::Host,
            extensions: Vec::new(),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        encode_addr(&self.addr_port, out);
        out.push(self.overlay_link.0);
        put_opaque(out, 1, "foundation", &self.foundation)?;
        put_u32(out, self.priority);
        match &self.cand_type {
            CandType::Host => out.push(1),
            CandType::Srflx(a) => {
                out.push(2);
                encode_addr(a, out);
            }
            CandType::Relay(a) => {
                out.push(4);
                encode_addr(a, out);
            }
        }
        put_list(out, 2, "IceExtensions", &self.extensions, |e, out| {
            put_opaque(out, 2, "IceExtension name", &e.name)?;
            put_opaque(out, 2, "IceExtension value", &e.value)
        })
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let addr_port = decode_addr(r)?;
        let overlay_link = OverlayLinkType(r.u8("OverlayLinkType")?);
        let foundation = r.opaque(1, "foundation")?.to_vec();
        let priority = r.u32("priority")?;
        let cand_type = match r.u8("CandType")? {
            1 => CandType::Host,
            2 => CandType::Srflx(decode_addr(r)?),
            4 => CandType::Relay(decode_addr(r)?),
            t => {
                return Err(WireError::InvalidValue {
                    what: "CandType",
                    value: u64::from(t),
                })
            }
        };
        let extensions = r.list(2, "IceExtensions", |r| {
            Ok(IceExtension {
                name: r.opaque(2, "IceExtension name")?.to_vec(),
                value: r.opaque(2, "IceExtension value")?.to_vec(),
            })
        })?;
        Ok(IceCandidate {
            addr_port,
            overlay_link,
            foundation,
            priority,
            cand_type,
            extensions,
        })
    }
}

fn encode_candidates(c: &[IceCandidate], out: &mut Vec<u8>) -> Result<(), WireError> {
    put_list(out, 2, "candidates", c, |c, out| c.encode(out))
}

fn decode_candidates(r: &mut Reader<'_>) -> Result<Vec<IceCandidate>, WireError> {
    r.list(2, "candidates", IceCandidate::decode)
}

// ---------------------------------------------------------------- Attach, AppAttach

/// `AttachReqAns` (RFC 6940 section 6.5.1.1): the body of both Attach request and answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttachReqAns {
    /// ICE username fragment.
    pub ufrag: Vec<u8>,
    /// ICE password.
    pub password: Vec<u8>,
    /// "active" or "passive".
    pub role: Vec<u8>,
    /// Candidates (no-ICE: one host candidate).
    pub candidates: Vec<IceCandidate>,
    /// Ask the other side for an Update once connected.
    pub send_update: bool,
}

/// `AppAttachReq` / `AppAttachAns` (RFC 6940 section 6.5.2): same shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AppAttach {
    /// ICE username fragment.
    pub ufrag: Vec<u8>,
    /// ICE password.
    pub password: Vec<u8>,
    /// The application (the port registry number, 5060 for SIP).
    pub application: u16,
    /// "active" or "passive".
    pub role: Vec<u8>,
    /// Candidates.
    pub candidates: Vec<IceCandidate>,
}

// ---------------------------------------------------------------- Join, Leave, Update

/// `JoinReq` (RFC 6940 section 6.4.2.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JoinReq {
    /// The joining peer.
    pub joining_peer_id: NodeId,
    /// `opaque overlay_specific_data<0..2^16-1>` (empty in CHORD-RELOAD).
    pub overlay_specific_data: Vec<u8>,
}

/// `JoinAns` (RFC 6940 section 6.4.2.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct JoinAns {
    /// `opaque overlay_specific_data<0..2^16-1>`.
    pub overlay_specific_data: Vec<u8>,
}

/// `ChordLeaveData` (RFC 6940 section 9.5): what a leaving CHORD peer tells a neighbour.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChordLeaveData {
    /// `from_succ(1)`: sent to the successor; carries the leaver's successors.
    FromSucc(Vec<NodeId>),
    /// `from_pred(2)`: sent to the predecessor; carries the leaver's predecessors.
    FromPred(Vec<NodeId>),
}

impl ChordLeaveData {
    /// Encodes as `overlay_specific_data`.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::new();
        let (t, ids) = match self {
            ChordLeaveData::FromSucc(v) => (1, v),
            ChordLeaveData::FromPred(v) => (2, v),
        };
        out.push(t);
        encode_ids(ids, &mut out, "leave node ids")?;
        Ok(out)
    }

    /// Decodes `overlay_specific_data`.
    pub fn from_bytes(b: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(b);
        let d = match r.u8("ChordLeaveType")? {
            1 => ChordLeaveData::FromSucc(decode_ids(&mut r, "successors")?),
            2 => ChordLeaveData::FromPred(decode_ids(&mut r, "predecessors")?),
            t => {
                return Err(WireError::InvalidValue {
                    what: "ChordLeaveType",
                    value: u64::from(t),
                })
            }
        };
        r.finish("ChordLeaveData")?;
        Ok(d)
    }
}

/// `LeaveReq` (RFC 6940 section 6.4.2.3); in CHORD the data is a [`ChordLeaveData`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaveReq {
    /// The leaving peer.
    pub leaving_peer_id: NodeId,
    /// `opaque overlay_specific_data<0..2^16-1>`.
    pub overlay_specific_data: Vec<u8>,
}

/// `ChordUpdateType` (RFC 6940 section 9.4) with its lists.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChordUpdateKind {
    /// `peer_ready(1)`: the sender is ready to receive messages.
    PeerReady,
    /// `neighbors(2)`: predecessors and successors.
    Neighbors {
        /// Predecessors, nearest first.
        predecessors: Vec<NodeId>,
        /// Successors, nearest first.
        successors: Vec<NodeId>,
    },
    /// `full(3)`: neighbours and fingers.
    Full {
        /// Predecessors, nearest first.
        predecessors: Vec<NodeId>,
        /// Successors, nearest first.
        successors: Vec<NodeId>,
        /// The finger table.
        fingers: Vec<NodeId>,
    },
}

/// `ChordUpdate` (RFC 6940 section 9.4): the CHORD-RELOAD UpdateReq body.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChordUpdate {
    /// Seconds the sender has been up.
    pub uptime: u32,
    /// The update type and its lists.
    pub kind: ChordUpdateKind,
}

fn encode_ids(ids: &[NodeId], out: &mut Vec<u8>, what: &'static str) -> Result<(), WireError> {
    put_list(out, 2, what, ids, |id, out| {
        id.encode(out);
        Ok(())
    })
}

fn decode_ids(r: &mut Reader<'_>, what: &'static str) -> Result<Vec<NodeId>, WireError> {
    r.list(2, what, NodeId::decode)
}

impl ChordUpdate {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        put_u32(out, self.uptime);
        match &self.kind {
            ChordUpdateKind::PeerReady => out.push(1),
            ChordUpdateKind::Neighbors {
                predecessors,
                successors,
            } => {
                out.push(2);
                encode_ids(predecessors, out, "predecessors")?;
                encode_ids(successors, out, "successors")?;
            }
            ChordUpdateKind::Full {
                predecessors,
                successors,
                fingers,
            } => {
                out.push(3);
                encode_ids(predecessors, out, "predecessors")?;
                encode_ids(successors, out, "successors")?;
                encode_ids(fingers, out, "fingers")?;
            }
        }
        Ok(())
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let uptime = r.u32("uptime")?;
        let kind = match r.u8("ChordUpdateType")? {
            1 => ChordUpdateKind::PeerReady,
            2 => ChordUpdateKind::Neighbors {
                predecessors: decode_ids(r, "predecessors")?,
                successors: decode_ids(r, "successors")?,
            },
            3 => ChordUpdateKind::Full {
                predecessors: decode_ids(r, "predecessors")?,
                successors: decode_ids(r, "successors")?,
                fingers: decode_ids(r, "fingers")?,
            },
            t => {
                return Err(WireError::InvalidValue {
                    what: "ChordUpdateType",
                    value: u64::from(t),
                })
            }
        };
        Ok(ChordUpdate { uptime, kind })
    }
}

// ---------------------------------------------------------------- RouteQuery, Probe, Ping

/// `RouteQueryReq` (RFC 6940 section 6.4.2.4).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteQueryReq {
    /// Ask the answering peer to send an Update.
    pub send_update: bool,
    /// The destination asked about.
    pub destination: Destination,
    /// `opaque overlay_specific_data<0..2^16-1>`.
    pub overlay_specific_data: Vec<u8>,
}

/// `ProbeInformationType` (RFC 6940 section 6.4.2.5), open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProbeInformationType(pub u8);

impl ProbeInformationType {
    /// `responsible_set(1)`.
    pub const RESPONSIBLE_SET: Self = Self(1);
    /// `num_resources(2)`.
    pub const NUM_RESOURCES: Self = Self(2);
    /// `uptime(3)`.
    pub const UPTIME: Self = Self(3);
}

/// `ProbeInformation`: every defined type carries one uint32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProbeInformation {
    /// The type.
    pub info_type: ProbeInformationType,
    /// responsible_ppb, num_resources or uptime.
    pub value: u32,
}

/// `PingAns` (RFC 6940 section 6.5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PingAns {
    /// A random id for this answer.
    pub response_id: u64,
    /// The answering peer's time, milliseconds since the Unix epoch.
    pub time: u64,
}

// ---------------------------------------------------------------- storage messages

/// `StoreKindData` (RFC 6940 section 7.4.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoreKindData {
    /// The kind.
    pub kind: KindId,
    /// The generation counter the storer expects (0: any).
    pub generation_counter: u64,
    /// The values.
    pub values: Vec<StoredData>,
}

/// `StoreReq` (RFC 6940 section 7.4.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoreReq {
    /// Where.
    pub resource: ResourceId,
    /// 0 from the storing user; 1, 2... from the responsible peer to its replicas.
    pub replica_number: u8,
    /// Per kind.
    pub kind_data: Vec<StoreKindData>,
}

/// `StoreKindResponse` (RFC 6940 section 7.4.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoreKindResponse {
    /// The kind.
    pub kind: KindId,
    /// The kind's generation counter after the store.
    pub generation_counter: u64,
    /// Peers that hold replicas.
    pub replicas: Vec<NodeId>,
}

/// `FetchReq` (RFC 6940 section 7.4.2); also the body of `StatReq` (section 7.4.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FetchReq {
    /// Where.
    pub resource: ResourceId,
    /// What.
    pub specifiers: Vec<StoredDataSpecifier>,
}

/// `StatReq` has the same fields as `FetchReq`.
pub type StatReq = FetchReq;

/// `FetchKindResponse` (RFC 6940 section 7.4.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FetchKindResponse {
    /// The kind.
    pub kind: KindId,
    /// Its generation counter.
    pub generation: u64,
    /// The values.
    pub values: Vec<StoredData>,
}

/// `StatKindResponse` (RFC 6940 section 7.4.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatKindResponse {
    /// The kind.
    pub kind: KindId,
    /// Its generation counter.
    pub generation: u64,
    /// Metadata of the values.
    pub values: Vec<StoredMetaData>,
}

/// `FindReq` (RFC 6940 section 7.4.4).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FindReq {
    /// Where to start.
    pub resource: ResourceId,
    /// Kinds looked for.
    pub kinds: Vec<KindId>,
}

/// `FindKindData` (RFC 6940 section 7.4.4).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FindKindData {
    /// The kind.
    pub kind: KindId,
    /// The closest Resource-ID holding it (empty: none).
    pub closest: ResourceId,
}

/// `ConfigUpdateReq` (RFC 6940 section 6.5.4).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConfigUpdateReq {
    /// `config(1)`: a new configuration document, `opaque config_data<0..2^24-1>`.
    Config(Vec<u8>),
    /// `kind(2)`: kind descriptions, each `opaque KindDescription<0..2^16-1>` (XML).
    Kinds(Vec<Vec<u8>>),
}

/// `ErrorResponse` (RFC 6940 section 6.3.3.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ErrorResponse {
    /// The error code.
    pub code: ErrorCode,
    /// `opaque error_info<0..2^16-1>`: a reason phrase or code-specific data.
    pub info: Vec<u8>,
}

impl ErrorResponse {
    /// The error answering a PDU that could not be decoded: Unknown_Kind,
    /// Message_Too_Large, Incompatible_with_Overlay or Invalid_Message, with the reason.
    pub fn from_wire_error(e: &WireError) -> Self {
        ErrorResponse::new(ErrorCode::from(e), &e.to_string())
    }

    /// The most Kind-IDs an Error_Unknown_Kind `error_info` holds: `KindId
    /// unknown_kinds<0..2^8-1>` counts bytes, 4 per kind.
    pub const MAX_UNKNOWN_KINDS: usize = 0xff / 4;

    /// Error_Unknown_Kind with the unknown kinds as `error_info` (RFC 6940 section 7.4.1.2:
    /// `KindId unknown_kinds<0..2^8-1>`).
    pub fn unknown_kinds(kinds: &[KindId]) -> Result<Self, WireError> {
        let mut info = Vec::with_capacity(1 + 4 * kinds.len());
        put_list(&mut info, 1, "unknown kinds", kinds, |k, out| {
            put_u32(out, k.0);
            Ok(())
        })?;
        Ok(ErrorResponse {
            code: ErrorCode::UNKNOWN_KIND,
            info,
        })
    }

    /// The kinds of an Error_Unknown_Kind `error_info`.
    pub fn info_unknown_kinds(&self) -> Result<Vec<KindId>, WireError> {
        let mut r = Reader::new(&self.info);
        let v = r.list(1, "unknown kinds", |r| Ok(KindId(r.u32("kind")?)))?;
        r.finish("unknown kinds")?;
        Ok(v)
    }

    /// Error_Generation_Counter_Too_Low with the kind's current state as `error_info`
    /// (RFC 6940 section 7.4.1.2: a `StoreKindResponse`).
    pub fn generation_counter_too_low(current: &StoreKindResponse) -> Result<Self, WireError> {
        let mut info = Vec::new();
        put_u32(&mut info, current.kind.0);
        put_u64(&mut info, current.generation_counter);
        encode_ids(&current.replicas, &mut info, "replicas")?;
        Ok(ErrorResponse {
            code: ErrorCode::GENERATION_COUNTER_TOO_LOW,
            info,
        })
    }

    /// The `StoreKindResponse` of an Error_Generation_Counter_Too_Low `error_info`.
    pub fn info_store_kind_response(&self) -> Result<StoreKindResponse, WireError> {
        let mut r = Reader::new(&self.info);
        let v = StoreKindResponse {
            kind: KindId(r.u32("kind")?),
            generation_counter: r.u64("generation_counter")?,
            replicas: decode_ids(&mut r, "replicas")?,
        };
        r.finish("StoreKindResponse")?;
        Ok(v)
    }

    /// An error with a text reason.
    pub fn new(code: ErrorCode, info: &str) -> Self {
        ErrorResponse {
            code,
            info: info.as_bytes().to_vec(),
        }
    }
}

// ---------------------------------------------------------------- Body

/// A typed message body, one arm per message code (RFC 6940 sections 6.4, 6.5, 7.4, 9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Probe request: the information wanted.
    ProbeReq(Vec<ProbeInformationType>),
    /// Probe answer.
    ProbeAns(Vec<ProbeInformation>),
    /// Attach request.
    AttachReq(AttachReqAns),
    /// Attach answer.
    AttachAns(AttachReqAns),
    /// Store request.
    StoreReq(StoreReq),
    /// Store answer: `StoreKindResponse kind_responses<0..2^16-1>`.
    StoreAns(Vec<StoreKindResponse>),
    /// Fetch request.
    FetchReq(FetchReq),
    /// Fetch answer: `FetchKindResponse kind_responses<0..2^32-1>`.
    FetchAns(Vec<FetchKindResponse>),
    /// Find request.
    FindReq(FindReq),
    /// Find answer: `FindKindData results<0..2^16-1>`.
    FindAns(Vec<FindKindData>),
    /// Join request.
    JoinReq(JoinReq),
    /// Join answer.
    JoinAns(JoinAns),
    /// Leave request.
    LeaveReq(LeaveReq),
    /// Leave answer (empty).
    LeaveAns,
    /// Update request (CHORD-RELOAD).
    UpdateReq(ChordUpdate),
    /// Update answer (empty in CHORD-RELOAD).
    UpdateAns,
    /// RouteQuery request.
    RouteQueryReq(RouteQueryReq),
    /// RouteQuery answer (CHORD-RELOAD: the next peer).
    RouteQueryAns(NodeId),
    /// Ping request: `opaque padding<0..2^16-1>`.
    PingReq(Vec<u8>),
    /// Ping answer.
    PingAns(PingAns),
    /// Stat request.
    StatReq(StatReq),
    /// Stat answer: `StatKindResponse kind_responses<0..2^32-1>`.
    StatAns(Vec<StatKindResponse>),
    /// AppAttach request.
    AppAttachReq(AppAttach),
    /// AppAttach answer.
    AppAttachAns(AppAttach),
    /// ConfigUpdate request.
    ConfigUpdateReq(ConfigUpdateReq),
    /// ConfigUpdate answer (empty).
    ConfigUpdateAns,
    /// Error.
    Error(ErrorResponse),
    /// A code this codec does not know: the body bytes as they came.
    Unknown {
        /// The code.
        code: MessageCode,
        /// The body.
        body: Vec<u8>,
    },
}

impl Body {
    /// The message code of this body.
    pub fn code(&self) -> MessageCode {
        match self {
            Body::ProbeReq(_) => MessageCode::PROBE_REQ,
            Body::ProbeAns(_) => MessageCode::PROBE_ANS,
            Body::AttachReq(_) => MessageCode::ATTACH_REQ,
            Body::AttachAns(_) => MessageCode::ATTACH_ANS,
            Body::StoreReq(_) => MessageCode::STORE_REQ,
            Body::StoreAns(_) => MessageCode::STORE_ANS,
            Body::FetchReq(_) => MessageCode::FETCH_REQ,
            Body::FetchAns(_) => MessageCode::FETCH_ANS,
            Body::FindReq(_) => MessageCode::FIND_REQ,
            Body::FindAns(_) => MessageCode::FIND_ANS,
            Body::JoinReq(_) => MessageCode::JOIN_REQ,
            Body::JoinAns(_) => MessageCode::JOIN_ANS,
            Body::LeaveReq(_) => MessageCode::LEAVE_REQ,
            Body::LeaveAns => MessageCode::LEAVE_ANS,
            Body::UpdateReq(_) => MessageCode::UPDATE_REQ,
            Body::UpdateAns => MessageCode::UPDATE_ANS,
            Body::RouteQueryReq(_) => MessageCode::ROUTE_QUERY_REQ,
            Body::RouteQueryAns(_) => MessageCode::ROUTE_QUERY_ANS,
            Body::PingReq(_) => MessageCode::PING_REQ,
            Body::PingAns(_) => MessageCode::PING_ANS,
            Body::StatReq(_) => MessageCode::STAT_REQ,
            Body::StatAns(_) => MessageCode::STAT_ANS,
            Body::AppAttachReq(_) => MessageCode::APP_ATTACH_REQ,
            Body::AppAttachAns(_) => MessageCode::APP_ATTACH_ANS,
            Body::ConfigUpdateReq(_) => MessageCode::CONFIG_UPDATE_REQ,
            Body::ConfigUpdateAns => MessageCode::CONFIG_UPDATE_ANS,
            Body::Error(_) => MessageCode::ERROR,
            Body::Unknown { code, .. } => *code,
        }
    }

    /// The encoded body bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        let mut v = Vec::new();
        self.encode(&mut v)?;
        Ok(v)
    }

    /// Appends the encoded body (the `message_body` contents, without its length).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        match self {
            Body::ProbeReq(t) => put_list(out, 1, "requested_info", t, |t, out| {
                out.push(t.0);
                Ok(())
            }),
            Body::ProbeAns(i) => put_list(out, 2, "probe_info", i, |i, out| {
                out.push(i.info_type.0);
                out.push(4);
                put_u32(out, i.value);
                Ok(())
            }),
            Body::AttachReq(a) | Body::AttachAns(a) => {
                put_opaque(out, 1, "ufrag", &a.ufrag)?;
                put_opaque(out, 1, "password", &a.password)?;
                put_opaque(out, 1, "role", &a.role)?;
                encode_candidates(&a.candidates, out)?;
                out.push(u8::from(a.send_update));
                Ok(())
            }
            Body::AppAttachReq(a) | Body::AppAttachAns(a) => {
                put_opaque(out, 1, "ufrag", &a.ufrag)?;
                put_opaque(out, 1, "password", &a.password)?;
                put_u16(out, a.application);
                put_opaque(out, 1, "role", &a.role)?;
                encode_candidates(&a.candidates, out)
            }
            Body::StoreReq(s) => {
                s.resource.encode(out)?;
                out.push(s.replica_number);
                put_list(out, 4, "kind_data", &s.kind_data, |k, out| {
                    put_u32(out, k.kind.0);
                    put_u64(out, k.generation_counter);
                    put_list(out, 4, "values", &k.values, |v, out| v.encode(out))
                })
            }
            Body::StoreAns(r) => put_list(out, 2, "kind_responses", r, |k, out| {
                put_u32(out, k.kind.0);
                put_u64(out, k.generation_counter);
                encode_ids(&k.replicas, out, "replicas")
            }),
            Body::FetchReq(f) | Body::StatReq(f) => {
                f.resource.encode(out)?;
                put_list(out, 2, "specifiers", &f.specifiers, |s, out| s.encode(out))
            }
            Body::FetchAns(r) => put_list(out, 4, "kind_responses", r, |k, out| {
                put_u32(out, k.kind.0);
                put_u64(out, k.generation);
                put_list(out, 4, "values", &k.values, |v, out| v.encode(out))
            }),
            Body::StatAns(r) => put_list(out, 4, "kind_responses", r, |k, out| {
                put_u32(out, k.kind.0);
                put_u64(out, k.generation);
                put_list(out, 4, "values", &k.values, |v, out| v.encode(out))
            }),
            Body::FindReq(f) => {
                f.resource.encode(out)?;
                put_list(out, 1, "kinds", &f.kinds, |k, out| {
                    put_u32(out, k.0);
                    Ok(())
                })
            }
            Body::FindAns(r) => put_list(out, 2, "results", r, |k, out| {
                put_u32(out, k.kind.0);
                k.closest.encode(out)
            }),
            Body::JoinReq(j) => {
                j.joining_peer_id.encode(out);
                put_opaque(out, 2, "overlay_specific_data", &j.overlay_specific_data)
            }
            Body::JoinAns(j) => {
                put_opaque(out, 2, "overlay_specific_data", &j.overlay_specific_data)
            }
            Body::LeaveReq(l) => {
                l.leaving_peer_id.encode(out);
                put_opaque(out, 2, "overlay_specific_data", &l.overlay_specific_data)
            }
            Body::LeaveAns | Body::UpdateAns | Body::ConfigUpdateAns => Ok(()),
            Body::UpdateReq(u) => u.encode(out),
            Body::RouteQueryReq(q) => {
                out.push(u8::from(q.send_update));
                q.destination.encode(out)?;
                put_opaque(out, 2, "overlay_specific_data", &q.overlay_specific_data)
            }
            Body::RouteQueryAns(n) => {
                n.encode(out);
                Ok(())
            }
            Body::PingReq(p) => put_opaque(out, 2, "padding", p),
            Body::PingAns(p) => {
                put_u64(out, p.response_id);
                put_u64(out, p.time);
                Ok(())
            }
            Body::ConfigUpdateReq(c) => {
                let (t, at) = (
                    match c {
                        ConfigUpdateReq::Config(_) => 1,
                        ConfigUpdateReq::Kinds(_) => 2,
                    },
                    out.len(),
                );
                out.push(t);
                put_vec(out, 4, "ConfigUpdateReq", |out| match c {
                    ConfigUpdateReq::Config(d) => put_opaque(out, 3, "config_data", d),
                    ConfigUpdateReq::Kinds(k) => put_list(out, 3, "kinds", k, |k, out| {
                        put_opaque(out, 2, "KindDescription", k)
                    }),
                })
                .inspect_err(|_| out.truncate(at))
            }
            Body::Error(e) => {
                put_u16(out, e.code.0);
                put_opaque(out, 2, "error_info", &e.info)
            }
            Body::Unknown { body, .. } => {
                out.extend_from_slice(body);
                Ok(())
            }
        }
    }

    /// Decodes the body of a message with `code`, using the kinds this project knows
    /// ([`KindId::default_data_model`]) for StoredData.
    pub fn decode(code: MessageCode, bytes: &[u8]) -> Result<Body, WireError> {
        Self::decode_with(code, bytes, &KindId::default_data_model)
    }

    /// The Kind-IDs a StoreReq, FetchReq or StatReq body names, in order (repeats kept),
    /// read without the kinds' data models: each StoreKindData's values and each
    /// StoredDataSpecifier's model_specifier are passed over by their length prefixes
    /// (RFC 6940 sections 7.4.1.1, 7.4.2.1, 7.4.3.1). Empty for other message codes.
    pub fn request_kinds(code: MessageCode, bytes: &[u8]) -> Result<Vec<KindId>, WireError> {
        let mut r = Reader::new(bytes);
        let kinds = match code {
            MessageCode::STORE_REQ => {
                ResourceId::decode(&mut r)?;
                r.u8("replica_number")?;
                r.list(4, "kind_data", |r| {
                    let kind = KindId(r.u32("kind")?);
                    r.u64("generation_counter")?;
                    r.opaque(4, "values")?;
                    Ok(kind)
                })?
            }
            MessageCode::FETCH_REQ | MessageCode::STAT_REQ => {
                ResourceId::decode(&mut r)?;
                r.list(2, "specifiers", |r| {
                    let kind = KindId(r.u32("kind")?);
                    r.u64("generation")?;
                    r.opaque(2, "model_specifier")?;
                    Ok(kind)
                })?
            }
            _ => return Ok(Vec::new()),
        };
        r.finish("message_body")?;
        Ok(kinds)
    }

    /// The kinds of a StoreReq, FetchReq or StatReq body that `models` does not know, each
    /// once, in order of appearance, at most [`ErrorResponse::MAX_UNKNOWN_KINDS`] (what an
    /// Error_Unknown_Kind `error_info` holds, RFC 6940 section 7.4.1.2). Empty when every
    /// kind is known or for other message codes.
    pub fn unknown_kinds(
        code: MessageCode,
        bytes: &[u8],
        models: KindModels<'_>,
    ) -> Result<Vec<KindId>, WireError> {
        let mut out: Vec<KindId> = Vec::new();
        for k in Self::request_kinds(code, bytes)? {
            if models(k).is_none() && !out.contains(&k) {
                out.push(k);
                if out.len() == ErrorResponse::MAX_UNKNOWN_KINDS {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Decodes the body of a message with `code`; `models` gives the data model of a kind.
    /// A StoreReq, FetchReq or StatReq naming a kind `models` does not know fails with
    /// [`WireError::UnknownKind`] (its first unknown kind) before any model-specific part
    /// is read, so an unknown kind is reported as such even when another kind's values
    /// are malformed.
    pub fn decode_with(
        code: MessageCode,
        bytes: &[u8],
        models: KindModels<'_>,
    ) -> Result<Body, WireError> {
        if let Ok(kinds) = Self::request_kinds(code, bytes) {
            if let Some(k) = kinds.into_iter().find(|&k| models(k).is_none()) {
                return Err(WireError::UnknownKind(k.0));
            }
        }
        let mut r = Reader::new(bytes);
        let model_of = |k: KindId| models(k).ok_or(WireError::UnknownKind(k.0));
        let body = match code {
            MessageCode::PROBE_REQ => Body::ProbeReq(r.list(1, "requested_info", |r| {
                Ok(ProbeInformationType(r.u8("ProbeInformationType")?))
            })?),
            MessageCode::PROBE_ANS => Body::ProbeAns(r.list(2, "probe_info", |r| {
                let info_type = ProbeInformationType(r.u8("ProbeInformationType")?);
                let mut s = r.sub(1, "ProbeInformation")?;
                let value = s.u32("ProbeInformation value")?;
                s.finish("ProbeInformation")?;
                Ok(ProbeInformation { info_type, value })
            })?),
            MessageCode::ATTACH_REQ | MessageCode::ATTACH_ANS => {
                let a = AttachReqAns {
                    ufrag: r.opaque(1, "ufrag")?.to_vec(),
                    password: r.opaque(1, "password")?.to_vec(),
                    role: r.opaque(1, "role")?.to_vec(),
                    candidates: decode_candidates(&mut r)?,
                    send_update: r.boolean("send_update")?,
                };
                if code == MessageCode::ATTACH_REQ {
                    Body::AttachReq(a)
                } else {
                    Body::AttachAns(a)
                }
            }
            MessageCode::APP_ATTACH_REQ | MessageCode::APP_ATTACH_ANS => {
                let a = AppAttach {
                    ufrag: r.opaque(1, "ufrag")?.to_vec(),
                    password: r.opaque(1, "password")?.to_vec(),
                    application: r.u16("application")?,
                    role: r.opaque(1, "role")?.to_vec(),
                    candidates: decode_candidates(&mut r)?,
                };
                if code == MessageCode::APP_ATTACH_REQ {
                    Body::AppAttachReq(a)
                } else {
                    Body::AppAttachAns(a)
                }
            }
            MessageCode::STORE_REQ => Body::StoreReq(StoreReq {
                resource: ResourceId::decode(&mut r)?,
                replica_number: r.u8("replica_number")?,
                kind_data: r.list(4, "kind_data", |r| {
                    let kind = KindId(r.u32("kind")?);
                    let generation_counter = r.u64("generation_counter")?;
                    let model = model_of(kind)?;
                    let values = r.list(4, "values", |r| StoredData::decode(r, model))?;
                    Ok(StoreKindData {
                        kind,
                        generation_counter,
                        values,
                    })
                })?,
            }),
            MessageCode::STORE_ANS => Body::StoreAns(r.list(2, "kind_responses", |r| {
                Ok(StoreKindResponse {
                    kind: KindId(r.u32("kind")?),
                    generation_counter: r.u64("generation_counter")?,
                    replicas: decode_ids(r, "replicas")?,
                })
            })?),
            MessageCode::FETCH_REQ | MessageCode::STAT_REQ => {
                let f = FetchReq {
                    resource: ResourceId::decode(&mut r)?,
                    specifiers: r
                        .list(2, "specifiers", |r| StoredDataSpecifier::decode(r, models))?,
                };
                if code == MessageCode::FETCH_REQ {
                    Body::FetchReq(f)
                } else {
                    Body::StatReq(f)
                }
            }
            MessageCode::FETCH_ANS => Body::FetchAns(r.list(4, "kind_responses", |r| {
                let kind = KindId(r.u32("kind")?);
                let generation = r.u64("generation")?;
                let model = model_of(kind)?;
                Ok(FetchKindResponse {
                    kind,
                    generation,
                    values: r.list(4, "values", |r| StoredData::decode(r, model))?,
                })
            })?),
            MessageCode::STAT_ANS => Body::StatAns(r.list(4, "kind_responses", |r| {
                let kind = KindId(r.u32("kind")?);
                let generation = r.u64("generation")?;
                let model = model_of(kind)?;
                Ok(StatKindResponse {
                    kind,
                    generation,
                    values: r.list(4, "values", |r| StoredMetaData::decode(r, model))?,
                })
            })?),
            MessageCode::FIND_REQ => Body::FindReq(FindReq {
                resource: ResourceId::decode(&mut r)?,
                kinds: r.list(1, "kinds", |r| Ok(KindId(r.u32("kind")?)))?,
            }),
            MessageCode::FIND_ANS => Body::FindAns(r.list(2, "results", |r| {
                Ok(FindKindData {
                    kind: KindId(r.u32("kind")?),
                    closest: ResourceId::decode(r)?,
                })
            })?),
            MessageCode::JOIN_REQ => Body::JoinReq(JoinReq {
                joining_peer_id: NodeId::decode(&mut r)?,
                overlay_specific_data: r.opaque(2, "overlay_specific_data")?.to_vec(),
            }),
            MessageCode::JOIN_ANS => Body::JoinAns(JoinAns {
                overlay_specific_data: r.opaque(2, "overlay_specific_data")?.to_vec(),
            }),
            MessageCode::LEAVE_REQ => Body::LeaveReq(LeaveReq {
                leaving_peer_id: NodeId::decode(&mut r)?,
                overlay_specific_data: r.opaque(2, "overlay_specific_data")?.to_vec(),
            }),
            MessageCode::LEAVE_ANS => Body::LeaveAns,
            MessageCode::UPDATE_REQ => Body::UpdateReq(ChordUpdate::decode(&mut r)?),
            MessageCode::UPDATE_ANS => Body::UpdateAns,
            MessageCode::ROUTE_QUERY_REQ => Body::RouteQueryReq(RouteQueryReq {
                send_update: r.boolean("send_update")?,
                destination: Destination::decode(&mut r)?,
                overlay_specific_data: r.opaque(2, "overlay_specific_data")?.to_vec(),
            }),
            MessageCode::ROUTE_QUERY_ANS => Body::RouteQueryAns(NodeId::decode(&mut r)?),
            MessageCode::PING_REQ => Body::PingReq(r.opaque(2, "padding")?.to_vec()),
            MessageCode::PING_ANS => Body::PingAns(PingAns {
                response_id: r.u64("response_id")?,
                time: r.u64("time")?,
            }),
            MessageCode::CONFIG_UPDATE_REQ => {
                let t = r.u8("ConfigUpdateType")?;
                let mut s = r.sub(4, "ConfigUpdateReq")?;
                let c = match t {
                    1 => ConfigUpdateReq::Config(s.opaque(3, "config_data")?.to_vec()),
                    2 => ConfigUpdateReq::Kinds(
                        s.list(3, "kinds", |r| Ok(r.opaque(2, "KindDescription")?.to_vec()))?,
                    ),
                    t => {
                        return Err(WireError::InvalidValue {
                            what: "ConfigUpdateType",
                            value: u64::from(t),
                        })
                    }
                };
                s.finish("ConfigUpdateReq")?;
                Body::ConfigUpdateReq(c)
            }
            MessageCode::CONFIG_UPDATE_ANS => Body::ConfigUpdateAns,
            MessageCode::ERROR => Body::Error(ErrorResponse {
                code: ErrorCode(r.u16("error_code")?),
                info: r.opaque(2, "error_info")?.to_vec(),
            }),
            MessageCode::INVALID => {
                return Err(WireError::InvalidValue {
                    what: "message_code",
                    value: 0,
                })
            }
            code => Body::Unknown {
                code,
                body: r.bytes(r.remaining(), "message_body")?.to_vec(),
            },
        };
        r.finish("message_body")?;
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::super::examples::{bodies, stored};
    use super::super::{DataModel, DataSpecifier, ErrorResponse};
    use super::*;

    fn spec(kind: u32) -> StoredDataSpecifier {
        StoredDataSpecifier {
            kind: KindId(kind),
            generation: 0,
            model: DataSpecifier::Dictionary(vec![b"k".to_vec()]),
        }
    }

    fn known(k: KindId) -> Option<DataModel> {
        (k == KindId::CHANNEL_RELAYS).then_some(DataModel::Dictionary)
    }

    /// The kinds of every sample Store/Fetch/Stat body come out without their models, and
    /// agree with the typed decoding; other bodies name none.
    #[test]
    fn request_kinds_agree_with_the_typed_bodies() {
        for b in bodies() {
            let bytes = b.to_bytes().unwrap();
            let kinds = Body::request_kinds(b.code(), &bytes).unwrap();
            let want: Vec<KindId> = match &b {
                Body::StoreReq(s) => s.kind_data.iter().map(|k| k.kind).collect(),
                Body::FetchReq(f) | Body::StatReq(f) => {
                    f.specifiers.iter().map(|s| s.kind).collect()
                }
                _ => Vec::new(),
            };
            assert_eq!(kinds, want, "{:?}", b.code());
        }
    }

    /// An unknown kind is reported before any model-specific part is read: a Fetch of a
    /// known kind with a malformed specifier and an unknown kind is UnknownKind, not a
    /// structural error; the unknown kinds are listed once each, at most what an
    /// error_info holds.
    #[test]
    fn unknown_kind_found_before_model_specific_decoding() {
        let resource = ResourceId::from_node_id(NodeId::from_u128(7));
        let f = FetchReq {
            resource: resource.clone(),
            specifiers: vec![spec(0xf000_0001), spec(0xdead), spec(0xbeef), spec(0xdead)],
        };
        let mut bytes = Body::FetchReq(f).to_bytes().unwrap();
        // the known kind's specifier: keys list length 3 (0, 1, "k") -> 0xffff (junk)
        let at = 17 + 2 + 4 + 8 + 2;
        bytes[at..at + 2].copy_from_slice(&[0xff, 0xff]);
        assert_eq!(
            Body::decode_with(MessageCode::FETCH_REQ, &bytes, &known),
            Err(WireError::UnknownKind(0xdead))
        );
        assert_eq!(
            Body::unknown_kinds(MessageCode::FETCH_REQ, &bytes, &known).unwrap(),
            vec![KindId(0xdead), KindId(0xbeef)]
        );
        // all known: the junk specifier is a structural error again
        let all = |_: KindId| Some(DataModel::Dictionary);
        assert!(matches!(
            Body::decode_with(MessageCode::FETCH_REQ, &bytes, &all),
            Err(WireError::LengthBeyondBuffer { .. })
        ));
        assert!(Body::unknown_kinds(MessageCode::FETCH_REQ, &bytes, &all)
            .unwrap()
            .is_empty());
        // a Store with 100 unknown kinds: 63 listed, and the error_info encodes
        let s = StoreReq {
            resource,
            replica_number: 0,
            kind_data: (0..100)
                .map(|i| StoreKindData {
                    kind: KindId(0x1000 + i),
                    generation_counter: 0,
                    values: vec![stored(DataModel::Single, 1)],
                })
                .collect(),
        };
        let bytes = Body::StoreReq(s).to_bytes().unwrap();
        let unknown = Body::unknown_kinds(MessageCode::STORE_REQ, &bytes, &known).unwrap();
        assert_eq!(unknown.len(), ErrorResponse::MAX_UNKNOWN_KINDS);
        let e = ErrorResponse::unknown_kinds(&unknown).unwrap();
        assert_eq!(e.info_unknown_kinds().unwrap(), unknown);
        // truncated bodies are errors, not kinds
        assert!(Body::request_kinds(MessageCode::STORE_REQ, &bytes[..bytes.len() - 1]).is_err());
    }
}
