//! AVPs (RFC 6733 section 4): the owned [`Avp`] with a typed [`AvpValue`], the borrowed
//! [`AvpRef`] view and its [`AvpIter`] (no allocation per AVP), and the data formats of
//! sections 4.2-4.4 ([`Address`], [`Time`], Grouped).
//!
//! Wire layout (section 4.1):
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           AVP Code                            |
//! |V M P r r r r r|                  AVP Length                   |
//! |                        Vendor-ID (opt)                        |
//! |    Data ...  (padded with zeros to a multiple of 4 octets)
//! ```
//!
//! AVP Length counts the header and the data but not the padding. Known AVPs (see
//! [`crate::diameter::dict`]) are typed on decode; unknown ones keep their data as
//! [`AvpValue::Raw`] and re-encode byte for byte. Grouped AVPs nest at most
//! [`MAX_GROUP_DEPTH`] deep.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::dict::{self, AvpDef, AvpType, MRule};
use super::error::{DecodeError, DecodeErrorKind, EncodeError};
use super::types::{AvpCode, AvpFlags, VendorId};

/// Deepest nesting of Grouped AVPs the decoder accepts (a Grouped AVP at top level is depth
/// 1). Deeper input is DIAMETER_UNABLE_TO_COMPLY, never a deep recursion.
pub const MAX_GROUP_DEPTH: usize = 16;

/// Largest value of a 24-bit length field.
pub(crate) const MAX_LEN24: usize = 0x00ff_ffff;

/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// A Diameter `Time` (RFC 6733 section 4.3.1): seconds since 1900-01-01 UTC as 32 bits, which
/// wrap in 2036; like SNTP (RFC 4330 section 3) values with the top bit clear are read as
/// after 2036-02-07.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Time(pub u32);

impl Time {
    /// From seconds since the Unix epoch (1968-01-20 .. 2104-02-26 fit).
    #[must_use]
    pub fn from_unix(secs: u64) -> Self {
        Time((secs.wrapping_add(NTP_UNIX_OFFSET)) as u32)
    }

    /// Seconds since the Unix epoch.
    #[must_use]
    pub fn to_unix(self) -> u64 {
        let ntp = u64::from(self.0);
        if self.0 & 0x8000_0000 != 0 {
            ntp.saturating_sub(NTP_UNIX_OFFSET)
        } else {
            ntp + (1 << 32) - NTP_UNIX_OFFSET
        }
    }

    /// From a wall-clock time (the caller read the clock).
    #[must_use]
    pub fn from_system_time(t: SystemTime) -> Self {
        Self::from_unix(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
    }

    /// As a wall-clock time.
    #[must_use]
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.to_unix())
    }
}

/// A Diameter `Address` (RFC 6733 section 4.3.1): a 2-octet IANA address family and the
/// address. IPv4 (1) and IPv6 (2) are typed; other families keep their bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// Family 1.
    V4(Ipv4Addr),
    /// Family 2.
    V6(Ipv6Addr),
    /// Any other family (E.164 is 8, ...), bytes as received.
    Other {
        /// Address family number.
        family: u16,
        /// Address bytes.
        bytes: Bytes,
    },
}

impl From<IpAddr> for Address {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => Address::V4(a),
            IpAddr::V6(a) => Address::V6(a),
        }
    }
}

impl Address {
    /// The IP address, for families 1 and 2.
    #[must_use]
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Address::V4(a) => Some(IpAddr::V4(*a)),
            Address::V6(a) => Some(IpAddr::V6(*a)),
            Address::Other { .. } => None,
        }
    }

    fn data_len(&self) -> usize {
        match self {
            Address::V4(_) => 6,
            Address::V6(_) => 18,
            Address::Other { bytes, .. } => 2 + bytes.len(),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Address::V4(a) => {
                out.extend_from_slice(&1u16.to_be_bytes());
                out.extend_from_slice(&a.octets());
            }
            Address::V6(a) => {
                out.extend_from_slice(&2u16.to_be_bytes());
                out.extend_from_slice(&a.octets());
            }
            Address::Other { family, bytes } => {
                out.extend_from_slice(&family.to_be_bytes());
                out.extend_from_slice(bytes);
            }
        }
    }

    /// Parse AVP data as an Address.
    pub fn parse(data: &[u8]) -> Result<Address, DecodeErrorKind> {
        let (fam, rest) = data
            .split_first_chunk::<2>()
            .ok_or(DecodeErrorKind::InvalidAvpLength)?;
        match u16::from_be_bytes(*fam) {
            1 => <[u8; 4]>::try_from(rest)
                .map(|o| Address::V4(Ipv4Addr::from(o)))
                .map_err(|_| DecodeErrorKind::InvalidAvpLength),
            2 => <[u8; 16]>::try_from(rest)
                .map(|o| Address::V6(Ipv6Addr::from(o)))
                .map_err(|_| DecodeErrorKind::InvalidAvpLength),
            family => Ok(Address::Other {
                family,
                bytes: Bytes::copy_from_slice(rest),
            }),
        }
    }
}

/// The data of an AVP, typed by the dictionary (RFC 6733 sections 4.2-4.4).
#[derive(Debug, Clone)]
pub enum AvpValue {
    /// OctetString.
    OctetString(Bytes),
    /// Integer32.
    Integer32(i32),
    /// Integer64.
    Integer64(i64),
    /// Unsigned32.
    Unsigned32(u32),
    /// Unsigned64.
    Unsigned64(u64),
    /// Float32 (compared by bit pattern, so NaN round-trips equal).
    Float32(f32),
    /// Float64 (compared by bit pattern).
    Float64(f64),
    /// Grouped: the inner AVPs.
    Grouped(Vec<Avp>),
    /// Address.
    Address(Address),
    /// Time.
    Time(Time),
    /// UTF8String (validated).
    Utf8String(String),
    /// DiameterIdentity (printable ASCII, non-empty).
    DiameterIdentity(String),
    /// DiameterURI (`aaa://` or `aaas://`, printable ASCII).
    DiameterUri(String),
    /// Enumerated.
    Enumerated(i32),
    /// IPFilterRule (printable ASCII text, section 4.3.1).
    IpFilterRule(String),
    /// An AVP the dictionary does not know: data as received.
    Raw(Bytes),
}

impl PartialEq for AvpValue {
    fn eq(&self, other: &Self) -> bool {
        use AvpValue as V;
        match (self, other) {
            (V::OctetString(a), V::OctetString(b)) | (V::Raw(a), V::Raw(b)) => a == b,
            (V::Integer32(a), V::Integer32(b)) | (V::Enumerated(a), V::Enumerated(b)) => a == b,
            (V::Integer64(a), V::Integer64(b)) => a == b,
            (V::Unsigned32(a), V::Unsigned32(b)) => a == b,
            (V::Unsigned64(a), V::Unsigned64(b)) => a == b,
            (V::Float32(a), V::Float32(b)) => a.to_bits() == b.to_bits(),
            (V::Float64(a), V::Float64(b)) => a.to_bits() == b.to_bits(),
            (V::Grouped(a), V::Grouped(b)) => a == b,
            (V::Address(a), V::Address(b)) => a == b,
            (V::Time(a), V::Time(b)) => a == b,
            (V::Utf8String(a), V::Utf8String(b))
            | (V::DiameterIdentity(a), V::DiameterIdentity(b))
            | (V::DiameterUri(a), V::DiameterUri(b))
            | (V::IpFilterRule(a), V::IpFilterRule(b)) => a == b,
            _ => false,
        }
    }
}

/// Floats compare by bit pattern, so equality is reflexive.
impl Eq for AvpValue {}

impl AvpValue {
    /// Length of the data on the wire (no header, no padding); grouped values sum their
    /// padded members.
    #[must_use]
    pub fn data_len(&self) -> usize {
        match self {
            AvpValue::OctetString(b) | AvpValue::Raw(b) => b.len(),
            AvpValue::Integer32(_)
            | AvpValue::Unsigned32(_)
            | AvpValue::Float32(_)
            | AvpValue::Time(_)
            | AvpValue::Enumerated(_) => 4,
            AvpValue::Integer64(_) | AvpValue::Unsigned64(_) | AvpValue::Float64(_) => 8,
            AvpValue::Grouped(v) => v.iter().map(|a| pad4(a.wire_len())).sum(),
            AvpValue::Address(a) => a.data_len(),
            AvpValue::Utf8String(s)
            | AvpValue::DiameterIdentity(s)
            | AvpValue::DiameterUri(s)
            | AvpValue::IpFilterRule(s) => s.len(),
        }
    }
}

/// An AVP (RFC 6733 section 4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Avp {
    /// AVP Code.
    pub code: AvpCode,
    /// Flags as received (reserved bits kept). The encoder sets the V bit whenever `vendor`
    /// is not 0.
    pub flags: AvpFlags,
    /// Vendor-Id; [`VendorId::IETF`] (0) without the V bit in `flags` means no Vendor-Id
    /// field (the V bit with vendor 0, as received, is kept and re-encoded).
    pub vendor: VendorId,
    /// The data.
    pub value: AvpValue,
}

#[inline]
pub(crate) fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

impl Avp {
    /// An AVP of definition `def` holding `value`: code, Vendor-Id, and V/M bits from the
    /// dictionary (M set unless the rule is MUST NOT).
    #[must_use]
    pub fn new(def: &AvpDef, value: AvpValue) -> Avp {
        let mut flags = AvpFlags::EMPTY;
        if def.m != MRule::MustNot {
            flags = flags | AvpFlags::MANDATORY;
        }
        if def.vendor != VendorId::IETF {
            flags = flags | AvpFlags::VENDOR;
        }
        Avp {
            code: def.code,
            flags,
            vendor: def.vendor,
            value,
        }
    }

    /// Unsigned32.
    #[must_use]
    pub fn u32(def: &AvpDef, v: u32) -> Avp {
        Avp::new(def, AvpValue::Unsigned32(v))
    }
    /// Unsigned64.
    #[must_use]
    pub fn u64(def: &AvpDef, v: u64) -> Avp {
        Avp::new(def, AvpValue::Unsigned64(v))
    }
    /// Integer32.
    #[must_use]
    pub fn i32(def: &AvpDef, v: i32) -> Avp {
        Avp::new(def, AvpValue::Integer32(v))
    }
    /// Enumerated.
    #[must_use]
    pub fn enumerated(def: &AvpDef, v: i32) -> Avp {
        Avp::new(def, AvpValue::Enumerated(v))
    }
    /// UTF8String.
    #[must_use]
    pub fn utf8(def: &AvpDef, v: impl Into<String>) -> Avp {
        Avp::new(def, AvpValue::Utf8String(v.into()))
    }
    /// DiameterIdentity.
    #[must_use]
    pub fn identity(def: &AvpDef, v: impl Into<String>) -> Avp {
        Avp::new(def, AvpValue::DiameterIdentity(v.into()))
    }
    /// OctetString.
    #[must_use]
    pub fn octets(def: &AvpDef, v: impl Into<Bytes>) -> Avp {
        Avp::new(def, AvpValue::OctetString(v.into()))
    }
    /// Time.
    #[must_use]
    pub fn time(def: &AvpDef, v: Time) -> Avp {
        Avp::new(def, AvpValue::Time(v))
    }
    /// Address.
    #[must_use]
    pub fn address(def: &AvpDef, v: impl Into<Address>) -> Avp {
        Avp::new(def, AvpValue::Address(v.into()))
    }
    /// Grouped.
    #[must_use]
    pub fn grouped(def: &AvpDef, v: Vec<Avp>) -> Avp {
        Avp::new(def, AvpValue::Grouped(v))
    }

    /// An AVP of `def` with a zero value of its type: the Failed-AVP for a missing AVP
    /// (RFC 6733 section 7.5).
    #[must_use]
    pub fn placeholder(def: &AvpDef) -> Avp {
        let v = match def.ty {
            AvpType::OctetString => AvpValue::OctetString(Bytes::new()),
            AvpType::Integer32 => AvpValue::Integer32(0),
            AvpType::Integer64 => AvpValue::Integer64(0),
            AvpType::Unsigned32 => AvpValue::Unsigned32(0),
            AvpType::Unsigned64 => AvpValue::Unsigned64(0),
            AvpType::Float32 => AvpValue::Float32(0.0),
            AvpType::Float64 => AvpValue::Float64(0.0),
            AvpType::Grouped => AvpValue::Grouped(Vec::new()),
            AvpType::Address => AvpValue::Address(Address::V4(Ipv4Addr::UNSPECIFIED)),
            AvpType::Time => AvpValue::Time(Time(0)),
            AvpType::Enumerated => AvpValue::Enumerated(0),
            AvpType::Utf8String
            | AvpType::DiameterIdentity
            | AvpType::DiameterUri
            | AvpType::IpFilterRule => AvpValue::Raw(Bytes::new()),
        };
        Avp::new(def, v)
    }

    /// Whether this is the AVP `def` (same code and Vendor-Id).
    #[inline]
    #[must_use]
    pub fn is(&self, def: &AvpDef) -> bool {
        self.code == def.code && self.vendor == def.vendor
    }

    /// The dictionary entry, if known.
    #[must_use]
    pub fn def(&self) -> Option<&'static AvpDef> {
        dict::lookup(self.code, self.vendor)
    }

    /// Whether the AVP has a Vendor-Id field on the wire: a non-zero vendor, or the V bit
    /// with vendor 0 as received (kept so such an AVP re-encodes byte for byte).
    #[must_use]
    pub fn has_vendor_field(&self) -> bool {
        self.vendor != VendorId::IETF || self.flags.is_vendor()
    }

    /// Header length: 12 with a Vendor-Id field, else 8.
    #[must_use]
    pub fn header_len(&self) -> usize {
        if self.has_vendor_field() {
            12
        } else {
            8
        }
    }

    /// AVP Length: header + data, no padding.
    #[must_use]
    pub fn wire_len(&self) -> usize {
        self.header_len() + self.value.data_len()
    }

    fn invalid(&self) -> DecodeError {
        DecodeError::with_avp(DecodeErrorKind::InvalidAvpValue, self.clone())
    }

    /// Unsigned32 value, or 5004 naming this AVP.
    pub fn as_u32(&self) -> Result<u32, DecodeError> {
        match self.value {
            AvpValue::Unsigned32(v) => Ok(v),
            _ => Err(self.invalid()),
        }
    }
    /// Unsigned64 value.
    pub fn as_u64(&self) -> Result<u64, DecodeError> {
        match self.value {
            AvpValue::Unsigned64(v) => Ok(v),
            _ => Err(self.invalid()),
        }
    }
    /// Integer32 or Enumerated value.
    pub fn as_i32(&self) -> Result<i32, DecodeError> {
        match self.value {
            AvpValue::Integer32(v) | AvpValue::Enumerated(v) => Ok(v),
            _ => Err(self.invalid()),
        }
    }
    /// Text of a UTF8String, DiameterIdentity, DiameterURI or IPFilterRule.
    pub fn as_str(&self) -> Result<&str, DecodeError> {
        match &self.value {
            AvpValue::Utf8String(s)
            | AvpValue::DiameterIdentity(s)
            | AvpValue::DiameterUri(s)
            | AvpValue::IpFilterRule(s) => Ok(s),
            _ => Err(self.invalid()),
        }
    }
    /// Bytes of an OctetString (or unknown AVP).
    pub fn as_bytes(&self) -> Result<&Bytes, DecodeError> {
        match &self.value {
            AvpValue::OctetString(b) | AvpValue::Raw(b) => Ok(b),
            _ => Err(self.invalid()),
        }
    }
    /// Time value.
    pub fn as_time(&self) -> Result<Time, DecodeError> {
        match self.value {
            AvpValue::Time(t) => Ok(t),
            _ => Err(self.invalid()),
        }
    }
    /// Address value.
    pub fn as_address(&self) -> Result<&Address, DecodeError> {
        match &self.value {
            AvpValue::Address(a) => Ok(a),
            _ => Err(self.invalid()),
        }
    }
    /// Members of a Grouped AVP.
    pub fn as_grouped(&self) -> Result<&[Avp], DecodeError> {
        match &self.value {
            AvpValue::Grouped(v) => Ok(v),
            _ => Err(self.invalid()),
        }
    }

    /// Append the AVP (header, data, zero padding) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        let hdr = self.header_len();
        let vendor_field = self.has_vendor_field();
        let flags = self.flags.with(AvpFlags::VENDOR, vendor_field);
        out.extend_from_slice(&self.code.0.to_be_bytes());
        out.extend_from_slice(&[flags.0, 0, 0, 0]);
        if vendor_field {
            out.extend_from_slice(&self.vendor.0.to_be_bytes());
        }
        match &self.value {
            AvpValue::OctetString(b) | AvpValue::Raw(b) => out.extend_from_slice(b),
            AvpValue::Integer32(v) | AvpValue::Enumerated(v) => {
                out.extend_from_slice(&v.to_be_bytes());
            }
            AvpValue::Integer64(v) => out.extend_from_slice(&v.to_be_bytes()),
            AvpValue::Unsigned32(v) => out.extend_from_slice(&v.to_be_bytes()),
            AvpValue::Unsigned64(v) => out.extend_from_slice(&v.to_be_bytes()),
            AvpValue::Float32(v) => out.extend_from_slice(&v.to_bits().to_be_bytes()),
            AvpValue::Float64(v) => out.extend_from_slice(&v.to_bits().to_be_bytes()),
            AvpValue::Time(t) => out.extend_from_slice(&t.0.to_be_bytes()),
            AvpValue::Address(a) => a.write(out),
            AvpValue::Utf8String(s)
            | AvpValue::DiameterIdentity(s)
            | AvpValue::DiameterUri(s)
            | AvpValue::IpFilterRule(s) => out.extend_from_slice(s.as_bytes()),
            AvpValue::Grouped(members) => {
                for m in members {
                    m.encode(out)?;
                }
            }
        }
        let len = out.len() - start;
        debug_assert!(len >= hdr);
        if len > MAX_LEN24 {
            out.truncate(start);
            return Err(EncodeError::TooLong(self.code.0));
        }
        let l = (len as u32).to_be_bytes();
        out[start + 5..start + 8].copy_from_slice(&l[1..]);
        out.resize(start + pad4(len), 0);
        Ok(())
    }
}

/// A borrowed view of one AVP inside a buffer: header fields and the data slice (no
/// padding). Reading a message this way allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvpRef<'a> {
    /// AVP Code.
    pub code: AvpCode,
    /// Flags as received.
    pub flags: AvpFlags,
    /// Vendor-Id (0 when the V bit is clear).
    pub vendor: VendorId,
    /// The data, without padding.
    pub data: &'a [u8],
}

impl<'a> AvpRef<'a> {
    /// Whether this is the AVP `def`.
    #[inline]
    #[must_use]
    pub fn is(&self, def: &AvpDef) -> bool {
        self.code == def.code && self.vendor == def.vendor
    }
    /// The data as an Unsigned32 / Integer32 / Enumerated (4 bytes, big-endian).
    #[must_use]
    pub fn u32(&self) -> Option<u32> {
        <[u8; 4]>::try_from(self.data).ok().map(u32::from_be_bytes)
    }
    /// The data as an Unsigned64.
    #[must_use]
    pub fn u64(&self) -> Option<u64> {
        <[u8; 8]>::try_from(self.data).ok().map(u64::from_be_bytes)
    }
    /// The data as UTF-8 text.
    #[must_use]
    pub fn str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.data).ok()
    }
    /// The members of a grouped AVP.
    #[must_use]
    pub fn members(&self) -> AvpIter<'a> {
        AvpIter::new(self.data)
    }
}

/// Iterates over the AVPs packed in a buffer (a message body or a Grouped AVP's data),
/// checking each AVP's length (RFC 6733 section 4.1). Yields one error and then stops.
#[derive(Debug, Clone)]
pub struct AvpIter<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> AvpIter<'a> {
    /// Over the AVPs in `buf`.
    #[must_use]
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Offset of the next AVP in the buffer.
    #[must_use]
    pub fn position(&self) -> usize {
        self.pos
    }
}

/// Read one AVP header at the start of `rest`: `(view, padded length)`, or a 5014 error
/// naming what could be read of the AVP.
#[inline]
pub(crate) fn read_avp(rest: &[u8]) -> Result<(AvpRef<'_>, usize), DecodeError> {
    let Some((head, _)) = rest.split_first_chunk::<8>() else {
        // Not even an AVP header: no Failed-AVP can be named.
        return Err(DecodeErrorKind::InvalidAvpLength.into());
    };
    let code = AvpCode(u32::from_be_bytes([head[0], head[1], head[2], head[3]]));
    let flags = AvpFlags(head[4]);
    let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    let (hdr, vendor) = if flags.is_vendor() {
        match rest.get(8..12) {
            Some(v) => (12, VendorId(u32::from_be_bytes([v[0], v[1], v[2], v[3]]))),
            None => return Err(bad_len(code, flags, VendorId::IETF)),
        }
    } else {
        (8, VendorId::IETF)
    };
    if len < hdr || len > rest.len() {
        return Err(bad_len(code, flags, vendor));
    }
    let padded = pad4(len).min(rest.len());
    Ok((
        AvpRef {
            code,
            flags,
            vendor,
            data: &rest[hdr..len],
        },
        padded,
    ))
}

/// A 5014 error whose Failed-AVP is the AVP header with the minimum data of its type, zero
/// filled (RFC 6733 section 7.5 asks for the offending AVP; its data cannot be trusted).
fn bad_len(code: AvpCode, flags: AvpFlags, vendor: VendorId) -> DecodeError {
    let value = match dict::lookup(code, vendor).map(|d| d.ty) {
        Some(t) => match t {
            AvpType::Integer32
            | AvpType::Unsigned32
            | AvpType::Float32
            | AvpType::Time
            | AvpType::Enumerated => AvpValue::Raw(Bytes::from_static(&[0; 4])),
            AvpType::Integer64 | AvpType::Unsigned64 | AvpType::Float64 => {
                AvpValue::Raw(Bytes::from_static(&[0; 8]))
            }
            _ => AvpValue::Raw(Bytes::new()),
        },
        None => AvpValue::Raw(Bytes::new()),
    };
    DecodeError::with_avp(
        DecodeErrorKind::InvalidAvpLength,
        Avp {
            code,
            flags,
            vendor,
            value,
        },
    )
}

impl<'a> Iterator for AvpIter<'a> {
    type Item = Result<AvpRef<'a>, DecodeError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.buf.get(self.pos..)?;
        if rest.is_empty() {
            return None;
        }
        match read_avp(rest) {
            Ok((a, n)) => {
                self.pos += n;
                Some(Ok(a))
            }
            Err(e) => {
                self.pos = self.buf.len();
                Some(Err(e))
            }
        }
    }
}

/// Printable ASCII, non-empty (DiameterIdentity, section 4.3.1: an FQDN or realm).
fn is_identity(b: &[u8]) -> bool {
    !b.is_empty() && b.iter().all(|&c| c.is_ascii_graphic())
}

fn is_uri(b: &[u8]) -> bool {
    let lower = |n: usize| b.get(..n).map(|p| p.to_ascii_lowercase());
    (lower(6).as_deref() == Some(b"aaa://") || lower(7).as_deref() == Some(b"aaas://"))
        && b.iter().all(|&c| c.is_ascii_graphic())
}

fn text(b: &[u8]) -> Result<String, DecodeErrorKind> {
    std::str::from_utf8(b)
        .map(str::to_owned)
        .map_err(|_| DecodeErrorKind::InvalidAvpValue)
}

/// Decode the AVPs in `data[start..end]` (a message body or a Grouped AVP's data) into owned
/// AVPs; `data` is shared so OctetString values are slices of it, not copies.
pub(crate) fn decode_avps(
    data: &Bytes,
    start: usize,
    end: usize,
    depth: usize,
    session_id: &mut Option<String>,
) -> Result<Vec<Avp>, DecodeError> {
    decode_avps_in(data, start, end, depth, session_id, false)
}

/// `lenient`: the members of a Failed-AVP (RFC 6733 section 7.5), which by design may hold
/// values that are invalid for their type: those stay [`AvpValue::Raw`] instead of failing
/// the answer that reports them.
fn decode_avps_in(
    data: &Bytes,
    start: usize,
    end: usize,
    depth: usize,
    session_id: &mut Option<String>,
    lenient: bool,
) -> Result<Vec<Avp>, DecodeError> {
    let region = &data[start..end];
    // An AVP is at least 8 bytes, so this bounds the allocation by the input size.
    let mut out = Vec::with_capacity((region.len() / 16).clamp(1, 64));
    let mut pos = 0;
    while pos < region.len() {
        let (r, n) = read_avp(&region[pos..])?;
        let hdr = if r.flags.is_vendor() { 12 } else { 8 };
        let dstart = start + pos + hdr;
        let dend = dstart + r.data.len();
        let value = match decode_value(r, data, dstart, dend, depth) {
            Ok(v) => v,
            Err(_) if lenient => AvpValue::Raw(data.slice(dstart..dend)),
            Err(e) => return Err(e),
        };
        let avp = Avp {
            code: r.code,
            flags: r.flags,
            vendor: r.vendor,
            value,
        };
        if depth == 0 && session_id.is_none() && avp.is(&dict::SESSION_ID) {
            if let AvpValue::Utf8String(s) = &avp.value {
                *session_id = Some(s.clone());
            }
        }
        out.push(avp);
        pos += n;
    }
    Ok(out)
}

fn decode_value(
    r: AvpRef<'_>,
    data: &Bytes,
    dstart: usize,
    dend: usize,
    depth: usize,
) -> Result<AvpValue, DecodeError> {
    match dict::lookup(r.code, r.vendor) {
        None => Ok(AvpValue::Raw(data.slice(dstart..dend))),
        Some(def) => typed_value(def.ty, r, data, dstart, dend, depth),
    }
}

/// Decode `data[dstart..dend]` (the data of AVP `r`) as type `ty`.
fn typed_value(
    ty: AvpType,
    r: AvpRef<'_>,
    data: &Bytes,
    dstart: usize,
    dend: usize,
    depth: usize,
) -> Result<AvpValue, DecodeError> {
    let d = &data[dstart..dend];
    let fail = |kind: DecodeErrorKind| {
        DecodeError::with_avp(
            kind,
            Avp {
                code: r.code,
                flags: r.flags,
                vendor: r.vendor,
                value: AvpValue::Raw(data.slice(dstart..dend)),
            },
        )
    };
    // RFC 6733 section 7.1.5 (5014): the offending AVP's header with a zero-filled payload of
    // the length its type needs, so the Failed-AVP itself is well formed.
    let bad_len = |zeros: &'static [u8]| {
        DecodeError::with_avp(
            DecodeErrorKind::InvalidAvpLength,
            Avp {
                code: r.code,
                flags: r.flags,
                vendor: r.vendor,
                value: AvpValue::Raw(Bytes::from_static(zeros)),
            },
        )
    };
    let four = || <[u8; 4]>::try_from(d).map_err(|_| bad_len(&[0; 4]));
    let eight = || <[u8; 8]>::try_from(d).map_err(|_| bad_len(&[0; 8]));
    Ok(match ty {
        AvpType::OctetString => AvpValue::OctetString(data.slice(dstart..dend)),
        AvpType::Integer32 => AvpValue::Integer32(i32::from_be_bytes(four()?)),
        AvpType::Enumerated => AvpValue::Enumerated(i32::from_be_bytes(four()?)),
        AvpType::Unsigned32 => AvpValue::Unsigned32(u32::from_be_bytes(four()?)),
        AvpType::Float32 => AvpValue::Float32(f32::from_bits(u32::from_be_bytes(four()?))),
        AvpType::Time => AvpValue::Time(Time(u32::from_be_bytes(four()?))),
        AvpType::Integer64 => AvpValue::Integer64(i64::from_be_bytes(eight()?)),
        AvpType::Unsigned64 => AvpValue::Unsigned64(u64::from_be_bytes(eight()?)),
        AvpType::Float64 => AvpValue::Float64(f64::from_bits(u64::from_be_bytes(eight()?))),
        AvpType::Address => AvpValue::Address(Address::parse(d).map_err(|k| match d {
            [0, 1, ..] => bad_len(&[0, 1, 0, 0, 0, 0]),
            [0, 2, ..] => bad_len(&[0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            _ => fail(k),
        })?),
        AvpType::Utf8String => AvpValue::Utf8String(text(d).map_err(fail)?),
        AvpType::DiameterIdentity if is_identity(d) => {
            AvpValue::DiameterIdentity(text(d).map_err(fail)?)
        }
        AvpType::DiameterUri if is_uri(d) => AvpValue::DiameterUri(text(d).map_err(fail)?),
        AvpType::IpFilterRule if d.iter().all(|&c| c.is_ascii_graphic() || c == b' ') => {
            AvpValue::IpFilterRule(text(d).map_err(fail)?)
        }
        AvpType::DiameterIdentity | AvpType::DiameterUri | AvpType::IpFilterRule => {
            return Err(fail(DecodeErrorKind::InvalidAvpValue));
        }
        AvpType::Grouped => {
            if depth + 1 > MAX_GROUP_DEPTH {
                return Err(fail(DecodeErrorKind::NestingTooDeep));
            }
            let mut ignored = None;
            let lenient = r.code == dict::FAILED_AVP.code && r.vendor == dict::FAILED_AVP.vendor;
            AvpValue::Grouped(decode_avps_in(
                data,
                dstart,
                dend,
                depth + 1,
                &mut ignored,
                lenient,
            )?)
        }
    })
}

impl AvpValue {
    /// Decode AVP data as type `ty` (for AVPs an application knows but the dictionary does
    /// not, e.g. a [`AvpValue::Raw`] value): the same checks as the message decoder (length
    /// of fixed-size types 5014, text validity 5004, group members and depth).
    pub fn parse(ty: AvpType, data: &Bytes) -> Result<AvpValue, DecodeError> {
        let r = AvpRef {
            code: AvpCode(0),
            flags: AvpFlags::EMPTY,
            vendor: VendorId::IETF,
            data,
        };
        typed_value(ty, r, data, 0, data.len(), 0)
    }
}

/// Look-ups over a list of AVPs (a message body or a Grouped AVP's members) with the
/// occurrence checks of a command's ABNF (RFC 6733 section 3.2): `{ X }` is
/// [`AvpList::one`], `[ X ]` is [`AvpList::opt`], `*[ X ]` is [`AvpList::all`].
pub trait AvpList {
    /// The members.
    fn avps(&self) -> &[Avp];

    /// The first AVP `def`.
    fn find(&self, def: &AvpDef) -> Option<&Avp> {
        self.avps().iter().find(|a| a.is(def))
    }

    /// Every AVP `def`, in order.
    fn all(&self, def: &AvpDef) -> AvpsOf<'_> {
        AvpsOf {
            it: self.avps().iter(),
            code: def.code,
            vendor: def.vendor,
        }
    }

    /// Exactly one AVP `def`: 5005 DIAMETER_MISSING_AVP when absent, 5009 when repeated
    /// (the Failed-AVP is the second occurrence).
    fn one(&self, def: &AvpDef) -> Result<&Avp, DecodeError> {
        self.opt(def)?.ok_or_else(|| DecodeError::missing(def))
    }

    /// At most one AVP `def` (5009 when repeated).
    fn opt(&self, def: &AvpDef) -> Result<Option<&Avp>, DecodeError> {
        let mut it = self.all(def);
        let first = it.next();
        if let Some(second) = it.next() {
            return Err(DecodeError::with_avp(
                DecodeErrorKind::AvpOccursTooManyTimes,
                second.clone(),
            ));
        }
        Ok(first)
    }
}

/// The AVPs of one definition in a list ([`AvpList::all`]).
#[derive(Debug, Clone)]
pub struct AvpsOf<'a> {
    it: std::slice::Iter<'a, Avp>,
    code: AvpCode,
    vendor: VendorId,
}

impl<'a> Iterator for AvpsOf<'a> {
    type Item = &'a Avp;

    fn next(&mut self) -> Option<&'a Avp> {
        let (code, vendor) = (self.code, self.vendor);
        self.it.find(|a| a.code == code && a.vendor == vendor)
    }
}

impl AvpList for [Avp] {
    fn avps(&self) -> &[Avp] {
        self
    }
}

impl AvpList for Vec<Avp> {
    fn avps(&self) -> &[Avp] {
        self
    }
}
