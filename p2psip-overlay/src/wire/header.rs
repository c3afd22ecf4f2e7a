//! The forwarding header (RFC 6940 section 6.3.2): what every peer on the path reads to route
//! a message without touching its contents. Node-IDs, Resource-IDs, destinations (including
//! compressed ids, section 6.3.2.2) and forwarding options (section 6.3.2.3) live here.

use std::fmt;
use std::str::FromStr;

use super::codec::{put_opaque, put_u16, put_u32, put_u64, Reader};
use super::WireError;

/// The RELOAD token that opens every message: 0xd2 followed by "ELO" (RFC 6940 section 6.3.2).
pub const RELO_TOKEN: u32 = 0xd245_4c4f;
/// The protocol version of RFC 6940: 1.0, on the wire 10 (0x0a).
pub const RELOAD_VERSION: u8 = 0x0a;
/// Size of the fixed part of the forwarding header, before the via list.
pub const FIXED_HEADER_LEN: usize = 38;
/// The largest forwarding header: the fixed part and three lists of at most 2^16-1 bytes
/// (via list, destination list, forwarding options; RFC 6940 section 6.3.2).
pub const MAX_HEADER_LEN: usize = FIXED_HEADER_LEN + 3 * 0xffff;
/// The Node-ID length this project uses (CHORD-RELOAD, 128 bits; RFC 6940 section 9.1).
pub const NODE_ID_LEN: usize = 16;

/// A 128-bit Node-ID (RFC 6940 section 6.3.2.1 `NodeId`, CHORD-RELOAD length).
/// Ordered as an unsigned big-endian integer; shown as 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId(pub [u8; NODE_ID_LEN]);

impl NodeId {
    /// The all-zero id (reserved; RFC 6940 section 6.3.2.1).
    pub const ZERO: NodeId = NodeId([0; NODE_ID_LEN]);
    /// The all-ones id (reserved; wildcard).
    pub const MAX: NodeId = NodeId([0xff; NODE_ID_LEN]);

    /// The id as a big-endian integer.
    pub fn to_u128(self) -> u128 {
        u128::from_be_bytes(self.0)
    }

    /// The id of a big-endian integer.
    pub fn from_u128(v: u128) -> Self {
        NodeId(v.to_be_bytes())
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8; NODE_ID_LEN] {
        &self.0
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(NodeId(r.array("NodeId")?))
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

/// A Node-ID string that is not 32 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a Node-ID is 32 hex digits")]
pub struct ParseNodeIdError;

impl FromStr for NodeId {
    type Err = ParseNodeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 2 * NODE_ID_LEN || !s.is_ascii() {
            return Err(ParseNodeIdError);
        }
        let mut id = [0u8; NODE_ID_LEN];
        for (i, b) in id.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| ParseNodeIdError)?;
        }
        Ok(NodeId(id))
    }
}

/// A Resource-ID: `opaque ResourceId<0..2^8-1>` (RFC 6940 section 6.3.2.1). In CHORD-RELOAD
/// it is the 128-bit SHA-1-truncated hash of the resource name ([`ResourceId::from_name`]).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ResourceId(Vec<u8>);

impl ResourceId {
    /// At most 255 bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, WireError> {
        let v = bytes.into();
        if v.len() > 255 {
            return Err(WireError::TooLong {
                what: "ResourceId",
                len: v.len(),
                max: 255,
            });
        }
        Ok(ResourceId(v))
    }

    /// The CHORD-RELOAD Resource-ID of a resource name: SHA-1 truncated to 128 bits
    /// (RFC 6940 section 9.2).
    pub fn from_name(name: &[u8]) -> Self {
        let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, name);
        ResourceId(d.as_ref()[..NODE_ID_LEN].to_vec())
    }

    /// A Resource-ID that is a point on the ring.
    pub fn from_node_id(id: NodeId) -> Self {
        ResourceId(id.0.to_vec())
    }

    /// The 128-bit ring position when the id is 16 bytes long.
    pub fn as_node_id(&self) -> Option<NodeId> {
        <[u8; NODE_ID_LEN]>::try_from(self.0.as_slice())
            .ok()
            .map(NodeId)
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(ResourceId(r.opaque(1, "ResourceId")?.to_vec()))
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        put_opaque(out, 1, "ResourceId", &self.0)
    }
}

impl fmt::Debug for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResourceId(")?;
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// The transaction id (RFC 6940 section 6.3.2): chosen at random by the requester, echoed
/// by the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TransactionId(pub u64);

/// One entry of a via or destination list (RFC 6940 section 6.3.2.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    /// `node(1)`: a Node-ID.
    Node(NodeId),
    /// `resource(2)`: a Resource-ID.
    Resource(ResourceId),
    /// `opaque_id_type(3)`: an opaque id (for instance a compressed list of a peer's own
    /// making), `opaque<0..2^8-1>`.
    OpaqueId(Vec<u8>),
    /// The 16-bit compressed form: a word whose first bit is 1. The value kept here is the
    /// whole word, high bit included.
    Compressed(u16),
    /// A destination type this codec does not know; kept as raw bytes so it survives.
    Unknown {
        /// The type octet (4..=127).
        dest_type: u8,
        /// The destination data.
        data: Vec<u8>,
    },
}

/// A via or destination list (RFC 6940 section 6.3.2).
pub type DestinationList = Vec<Destination>;

impl Destination {
    /// The type octet of the uncompressed form.
    pub const NODE: u8 = 1;
    /// See [`Destination::Resource`].
    pub const RESOURCE: u8 = 2;
    /// See [`Destination::OpaqueId`].
    pub const OPAQUE_ID: u8 = 3;

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let first = r.peek_u8("Destination")?;
        if first & 0x80 != 0 {
            return Ok(Destination::Compressed(r.u16("compressed id")?));
        }
        let dest_type = r.u8("DestinationType")?;
        let len = r.u8("Destination length")?;
        let mut d = r.sub_exact(usize::from(len), "Destination")?;
        let dest = match dest_type {
            Self::NODE => Destination::Node(NodeId::decode(&mut d)?),
            Self::RESOURCE => Destination::Resource(ResourceId::decode(&mut d)?),
            Self::OPAQUE_ID => Destination::OpaqueId(d.opaque(1, "opaque_id")?.to_vec()),
            0 => {
                return Err(WireError::InvalidValue {
                    what: "DestinationType",
                    value: 0,
                })
            }
            t => Destination::Unknown {
                dest_type: t,
                data: d.bytes(d.remaining(), "Destination")?.to_vec(),
            },
        };
        d.finish("Destination")?;
        Ok(dest)
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        let (t, at) = match self {
            Destination::Compressed(w) => {
                if w & 0x8000 == 0 {
                    return Err(WireError::InvalidValue {
                        what: "compressed id without its high bit",
                        value: u64::from(*w),
                    });
                }
                put_u16(out, *w);
                return Ok(());
            }
            Destination::Node(_) => (Self::NODE, out.len()),
            Destination::Resource(_) => (Self::RESOURCE, out.len()),
            Destination::OpaqueId(_) => (Self::OPAQUE_ID, out.len()),
            Destination::Unknown { dest_type, .. } => {
                if *dest_type == 0 || *dest_type & 0x80 != 0 {
                    return Err(WireError::InvalidValue {
                        what: "DestinationType",
                        value: u64::from(*dest_type),
                    });
                }
                (*dest_type, out.len())
            }
        };
        out.push(t);
        out.push(0);
        match self {
            Destination::Node(n) => n.encode(out),
            Destination::Resource(r) => r.encode(out)?,
            Destination::OpaqueId(o) => put_opaque(out, 1, "opaque_id", o)?,
            Destination::Unknown { data, .. } => out.extend_from_slice(data),
            Destination::Compressed(_) => {}
        }
        let len = out.len() - at - 2;
        if len > 255 {
            out.truncate(at);
            return Err(WireError::TooLong {
                what: "Destination",
                len,
                max: 255,
            });
        }
        out[at + 1] = len as u8;
        Ok(())
    }
}

/// `ForwardingOptionType` (RFC 6940 section 6.3.2.3): an open code point; no option types
/// are defined by RFC 6940 itself, 0 is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ForwardingOptionType(pub u8);

impl ForwardingOptionType {
    /// `invalid(0)`.
    pub const INVALID: Self = Self(0);
}

/// The flags octet of a forwarding option (RFC 6940 section 6.3.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ForwardingFlags(pub u8);

impl ForwardingFlags {
    /// A peer that does not understand the option must not forward the message.
    pub const FORWARD_CRITICAL: u8 = 0x01;
    /// The destination must understand the option or reject the message.
    pub const DESTINATION_CRITICAL: u8 = 0x02;
    /// A copy of the response must be sent to the peer that added the option.
    pub const RESPONSE_COPY: u8 = 0x04;

    /// `FORWARD_CRITICAL` set.
    pub fn forward_critical(self) -> bool {
        self.0 & Self::FORWARD_CRITICAL != 0
    }

    /// `DESTINATION_CRITICAL` set.
    pub fn destination_critical(self) -> bool {
        self.0 & Self::DESTINATION_CRITICAL != 0
    }

    /// `RESPONSE_COPY` set.
    pub fn response_copy(self) -> bool {
        self.0 & Self::RESPONSE_COPY != 0
    }
}

/// One forwarding option (RFC 6940 section 6.3.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ForwardingOption {
    /// The option type.
    pub option_type: ForwardingOptionType,
    /// Critical and response-copy flags.
    pub flags: ForwardingFlags,
    /// The option's contents, `opaque<0..2^16-1>`-sized.
    pub value: Vec<u8>,
}

impl ForwardingOption {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let option_type = ForwardingOptionType(r.u8("ForwardingOptionType")?);
        let flags = ForwardingFlags(r.u8("ForwardingOption flags")?);
        let value = r.opaque(2, "ForwardingOption")?.to_vec();
        Ok(ForwardingOption {
            option_type,
            flags,
            value,
        })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        out.push(self.option_type.0);
        out.push(self.flags.0);
        put_opaque(out, 2, "ForwardingOption", &self.value)
    }
}

/// The fragment field (RFC 6940 section 6.3.2): high bit always set, then the last-fragment
/// bit, six reserved bits and a 24-bit fragment offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fragment(pub u32);

impl Fragment {
    /// An unfragmented message: the high bit and the last-fragment bit, offset 0.
    pub const UNFRAGMENTED: Fragment = Fragment(0xc000_0000);
    /// The bit that is always set.
    pub const HIGH_BIT: u32 = 0x8000_0000;
    /// The last-fragment bit.
    pub const LAST: u32 = 0x4000_0000;

    /// A fragment at `offset` (24 bits), the last one or not.
    pub fn new(offset: u32, last: bool) -> Self {
        Fragment(Self::HIGH_BIT | if last { Self::LAST } else { 0 } | (offset & 0x00ff_ffff))
    }

    /// The last (or only) fragment.
    pub fn is_last(self) -> bool {
        self.0 & Self::LAST != 0
    }

    /// The fragment offset.
    pub fn offset(self) -> u32 {
        self.0 & 0x00ff_ffff
    }

    /// A whole message: last fragment at offset 0.
    pub fn is_whole(self) -> bool {
        self.is_last() && self.offset() == 0
    }
}

impl Default for Fragment {
    fn default() -> Self {
        Self::UNFRAGMENTED
    }
}

/// The forwarding header (RFC 6940 section 6.3.2). The relo token, version and length are
/// not fields: the encoder writes them and the decoder checks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardingHeader {
    /// Lowest 32 bits of the SHA-1 of the overlay name ([`overlay_hash`]).
    pub overlay: u32,
    /// The sequence number of the configuration document in use (0: not checked).
    pub configuration_sequence: u16,
    /// Hops left; each peer decrements it and answers TTL_Exceeded at 0.
    pub ttl: u8,
    /// Fragmentation state.
    pub fragment: Fragment,
    /// The transaction id.
    pub transaction_id: TransactionId,
    /// The largest response the requester takes (0: no limit).
    pub max_response_length: u32,
    /// The path so far (requests) or the route back (responses).
    pub via_list: DestinationList,
    /// Where the message goes; the first entry is the next hop's target.
    pub destination_list: DestinationList,
    /// Forwarding options.
    pub options: Vec<ForwardingOption>,
}

/// The default initial TTL (RFC 6940 section 6.3.2: the configuration's `initial-ttl`, 100).
pub const DEFAULT_TTL: u8 = 100;

/// The `overlay` field for an overlay name: the lowest 32 bits of its SHA-1
/// (RFC 6940 section 6.3.2).
pub fn overlay_hash(name: &str) -> u32 {
    let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, name.as_bytes());
    let d = d.as_ref();
    u32::from_be_bytes([d[16], d[17], d[18], d[19]])
}

impl ForwardingHeader {
    /// A header for a new request: TTL 100, unfragmented, no via list or options.
    pub fn new(
        overlay: u32,
        transaction_id: TransactionId,
        destination_list: DestinationList,
    ) -> Self {
        ForwardingHeader {
            overlay,
            configuration_sequence: 0,
            ttl: DEFAULT_TTL,
            fragment: Fragment::UNFRAGMENTED,
            transaction_id,
            max_response_length: 0,
            via_list: Vec::new(),
            destination_list,
            options: Vec::new(),
        }
    }

    /// The header of the response to a request that arrived with this header (RFC 6940
    /// section 6.2, symmetric recursive routing): the request's via list reversed becomes the
    /// destination list; overlay, configuration sequence and transaction id are kept; the
    /// via list and options start empty and the TTL is `ttl`.
    pub fn response_header(&self, ttl: u8) -> ForwardingHeader {
        ForwardingHeader {
            overlay: self.overlay,
            configuration_sequence: self.configuration_sequence,
            ttl,
            fragment: Fragment::UNFRAGMENTED,
            transaction_id: self.transaction_id,
            max_response_length: 0,
            via_list: Vec::new(),
            destination_list: self.via_list.iter().rev().cloned().collect(),
            options: Vec::new(),
        }
    }

    /// The checks a peer makes on a header before acting on it (RFC 6940 sections 6.1.2,
    /// 6.2, 6.3.2.3), as the error to answer with: an empty destination list or a Node-ID
    /// that appears twice in the via list (a routing loop) is Invalid_Message; TTL 0 is
    /// TTL_Exceeded; a forward- or destination-critical option whose type is not in `known`
    /// is Unsupported_Forwarding_Option.
    pub fn validate(
        &self,
        known: &[ForwardingOptionType],
    ) -> Result<(), crate::wire::ErrorResponse> {
        use crate::wire::{ErrorCode, ErrorResponse};
        if self.destination_list.is_empty() {
            return Err(ErrorResponse::new(
                ErrorCode::INVALID_MESSAGE,
                "empty destination list",
            ));
        }
        if self.ttl == 0 {
            return Err(ErrorResponse::new(ErrorCode::TTL_EXCEEDED, "TTL 0"));
        }
        let nodes: Vec<&NodeId> = self
            .via_list
            .iter()
            .filter_map(|d| match d {
                Destination::Node(n) => Some(n),
                _ => None,
            })
            .collect();
        for (i, n) in nodes.iter().enumerate() {
            if nodes[..i].contains(n) {
                return Err(ErrorResponse::new(
                    ErrorCode::INVALID_MESSAGE,
                    "via list loop",
                ));
            }
        }
        for o in &self.options {
            let critical = o.flags.forward_critical() || o.flags.destination_critical();
            if critical && !known.contains(&o.option_type) {
                return Err(ErrorResponse::new(
                    ErrorCode::UNSUPPORTED_FORWARDING_OPTION,
                    "unknown critical forwarding option",
                ));
            }
        }
        Ok(())
    }

    /// Encodes the header followed by `payload` (the already encoded message contents and
    /// security block), filling in the total length. Lets a forwarding peer rewrite the
    /// header of a message it does not otherwise decode.
    pub fn encode_with_payload(&self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), WireError> {
        let start = out.len();
        self.encode_start(out)?;
        out.extend_from_slice(payload);
        Self::patch_length(out, start)
    }

    /// Writes the header with a zero length; [`ForwardingHeader::patch_length`] fills it in.
    pub(crate) fn encode_start(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        let start = out.len();
        put_u32(out, RELO_TOKEN);
        put_u32(out, self.overlay);
        put_u16(out, self.configuration_sequence);
        out.push(RELOAD_VERSION);
        out.push(self.ttl);
        if self.fragment.0 & Fragment::HIGH_BIT == 0 {
            out.truncate(start);
            return Err(WireError::BadFragment(self.fragment.0));
        }
        put_u32(out, self.fragment.0);
        put_u32(out, 0);
        put_u64(out, self.transaction_id.0);
        put_u32(out, self.max_response_length);
        let lens_at = out.len();
        out.extend_from_slice(&[0; 6]);
        let mut lens = [0usize; 3];
        let r = (|| {
            let a = out.len();
            for d in &self.via_list {
                d.encode(out)?;
            }
            lens[0] = out.len() - a;
            let a = out.len();
            for d in &self.destination_list {
                d.encode(out)?;
            }
            lens[1] = out.len() - a;
            let a = out.len();
            for o in &self.options {
                o.encode(out)?;
            }
            lens[2] = out.len() - a;
            Ok(())
        })();
        if let Err(e) = r {
            out.truncate(start);
            return Err(e);
        }
        for (i, (len, what)) in lens
            .iter()
            .zip(["via list", "destination list", "forwarding options"])
            .enumerate()
        {
            let Ok(l) = u16::try_from(*len) else {
                out.truncate(start);
                return Err(WireError::TooLong {
                    what,
                    len: *len,
                    max: 0xffff,
                });
            };
            out[lens_at + 2 * i..lens_at + 2 * i + 2].copy_from_slice(&l.to_be_bytes());
        }
        Ok(())
    }

    /// Fills in the length field of the message that starts at `start`.
    pub(crate) fn patch_length(out: &mut Vec<u8>, start: usize) -> Result<(), WireError> {
        let len = out.len() - start;
        let Ok(l) = u32::try_from(len) else {
            out.truncate(start);
            return Err(WireError::TooLong {
                what: "message",
                len,
                max: u32::MAX as usize,
            });
        };
        out[start + 16..start + 20].copy_from_slice(&l.to_be_bytes());
        Ok(())
    }

    /// Decodes the header of the whole message `buf` (whose `length` must be `buf.len()`)
    /// and returns it with the offset where the message contents start.
    pub fn decode_prefix(buf: &[u8]) -> Result<(ForwardingHeader, usize), WireError> {
        Self::decode_within(buf, buf.len())
    }

    /// Decodes the header from `head`, the first bytes of a message of `total` bytes that
    /// is not all here (an oversize message whose rest a link discards, RFC 6940 section
    /// 6.3.2: the receiver answers Error_Message_Too_Large from the header alone). The
    /// header's `length` must be `total` and the header must fit in `head`; returns the
    /// header and the offset of the message contents (the message code, if `head` holds
    /// it, starts there).
    pub fn decode_head(head: &[u8], total: usize) -> Result<(ForwardingHeader, usize), WireError> {
        if head.len() > total {
            return Err(WireError::TrailingBytes {
                what: "message head",
                extra: head.len() - total,
            });
        }
        Self::decode_within(head, total)
    }

    /// The header at the start of `buf`, whose `length` must be `total`.
    fn decode_within(buf: &[u8], total: usize) -> Result<(ForwardingHeader, usize), WireError> {
        let mut r = Reader::new(buf);
        let token = r.u32("relo token")?;
        if token != RELO_TOKEN {
            return Err(WireError::BadToken(token));
        }
        let overlay = r.u32("overlay")?;
        let configuration_sequence = r.u16("configuration sequence")?;
        let version = r.u8("version")?;
        if version != RELOAD_VERSION {
            return Err(WireError::UnknownVersion(version));
        }
        let ttl = r.u8("ttl")?;
        let fragment = r.u32("fragment")?;
        if fragment & Fragment::HIGH_BIT == 0 {
            return Err(WireError::BadFragment(fragment));
        }
        let length = r.u32("length")?;
        if length as usize != total {
            return Err(WireError::LengthMismatch {
                declared: length,
                actual: total,
            });
        }
        let transaction_id = TransactionId(r.u64("transaction id")?);
        let max_response_length = r.u32("max response length")?;
        let via_len = r.u16("via list length")?;
        let dest_len = r.u16("destination list length")?;
        let opt_len = r.u16("options length")?;
        let mut via = r.sub_exact(usize::from(via_len), "via list")?;
        let mut via_list = Vec::new();
        while !via.is_empty() {
            via_list.push(Destination::decode(&mut via)?);
        }
        let mut dst = r.sub_exact(usize::from(dest_len), "destination list")?;
        let mut destination_list = Vec::new();
        while !dst.is_empty() {
            destination_list.push(Destination::decode(&mut dst)?);
        }
        let mut opt = r.sub_exact(usize::from(opt_len), "forwarding options")?;
        let mut options = Vec::new();
        while !opt.is_empty() {
            options.push(ForwardingOption::decode(&mut opt)?);
        }
        Ok((
            ForwardingHeader {
                overlay,
                configuration_sequence,
                ttl,
                fragment: Fragment(fragment),
                transaction_id,
                max_response_length,
                via_list,
                destination_list,
                options,
            },
            r.position(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::examples::messages;
    use super::*;

    /// The header of a message is read from its head alone when the total length is
    /// given; a head longer than the total, or a wrong total, is refused.
    #[test]
    fn decode_head_reads_the_header_of_a_partial_message() {
        for m in messages() {
            let bytes = m.to_bytes().unwrap();
            let (h, at) = ForwardingHeader::decode_prefix(&bytes).unwrap();
            let (h2, at2) = ForwardingHeader::decode_head(&bytes[..at + 2], bytes.len()).unwrap();
            assert_eq!((h2, at2), (h, at));
            assert!(matches!(
                ForwardingHeader::decode_head(&bytes[..at], bytes.len() + 1),
                Err(WireError::LengthMismatch { .. })
            ));
            assert!(ForwardingHeader::decode_head(&bytes[..at - 1], bytes.len()).is_err());
            assert!(ForwardingHeader::decode_head(&bytes, bytes.len() - 1).is_err());
        }
    }
}
