//! H.264 elementary streams: Annex-B reading, RFC 6184 RTP packetisation and depacketisation,
//! and key-frame detection on RTP payloads.
//!
//! How it fits: [`crate::testpattern`] reads the shipped clip with [`access_units`] once and
//! feeds each access unit through a [`Packetizer`] in real time; the relay forwards those RTP
//! packets like any producer's. [`payload_starts_key_frame`] is a small, reusable helper for tests
//! (and anyone else) that need to tell whether an RTP payload begins a key frame. The relay's own
//! key-frame detection (fast channel change) lives in `fcc.rs`.
//!
//! Everything here is sans-IO and allocation-bounded by the input size.
//!
//! References:
//! - ITU-T H.264 Annex B (byte stream format: start codes `00 00 01` / `00 00 00 01`).
//! - ITU-T H.264 section 7.3.1 (NAL unit header: F, NRI, type) and 7.4.1.2.3 (order of NAL
//!   units and detection of the first VCL NAL unit of a primary coded picture).
//! - RFC 6184 section 5.6 (single NAL unit packet), 5.7.1 (STAP-A), 5.8 (FU-A), 5.1 (RTP header
//!   usage: marker bit on the last packet of an access unit, 90 kHz timestamp).

use bytes::{BufMut, Bytes, BytesMut};

/// RTP clock rate for H.264 video (RFC 6184 section 8.2.1: `a=rtpmap:<pt> H264/90000`).
pub const CLOCK_RATE: u32 = 90_000;

/// Size of the fixed RTP header we write (RFC 3550 section 5.1, no CSRC, no extension).
pub const RTP_HEADER_LEN: usize = 12;

/// Errors from reading H.264 streams and RTP payloads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The byte stream does not begin with an Annex-B start code.
    #[error("byte stream does not start with an Annex-B start code")]
    NoStartCode,
    /// A NAL unit has the forbidden_zero_bit set (H.264 section 7.4.1).
    #[error("NAL unit with forbidden_zero_bit set")]
    ForbiddenBit,
    /// An RTP payload is empty or shorter than its packet type needs.
    #[error("RTP payload truncated")]
    Truncated,
    /// An RTP payload uses a packetisation type we do not handle (STAP-B, MTAP, FU-B...).
    #[error("unsupported H.264 RTP packet type {0}")]
    UnsupportedPacketType(u8),
    /// A fragment arrived without the FU-A start fragment (loss or reordering).
    #[error("FU-A fragment without a start fragment")]
    FuWithoutStart,
    /// A reassembled NAL unit would exceed the depacketiser's size limit.
    #[error("NAL unit larger than the {0} byte limit")]
    TooLarge(usize),
}

/// NAL unit type (H.264 Table 7-1), an open newtype so unknown values survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NalType(pub u8);

impl NalType {
    /// Coded slice of a non-IDR picture.
    pub const NON_IDR_SLICE: NalType = NalType(1);
    /// Coded slice data partition A.
    pub const PARTITION_A: NalType = NalType(2);
    /// Coded slice of an IDR picture: a key frame.
    pub const IDR_SLICE: NalType = NalType(5);
    /// Supplemental enhancement information.
    pub const SEI: NalType = NalType(6);
    /// Sequence parameter set.
    pub const SPS: NalType = NalType(7);
    /// Picture parameter set.
    pub const PPS: NalType = NalType(8);
    /// Access unit delimiter.
    pub const AUD: NalType = NalType(9);
    /// End of sequence.
    pub const END_OF_SEQUENCE: NalType = NalType(10);
    /// End of stream.
    pub const END_OF_STREAM: NalType = NalType(11);
    /// Filler data.
    pub const FILLER: NalType = NalType(12);
    /// RFC 6184 STAP-A aggregation packet (RTP payload only).
    pub const STAP_A: NalType = NalType(24);
    /// RFC 6184 FU-A fragmentation unit (RTP payload only).
    pub const FU_A: NalType = NalType(28);

    /// Type from the first byte of a NAL unit (or of an RTP payload).
    #[must_use]
    pub fn from_header(byte: u8) -> NalType {
        NalType(byte & 0x1f)
    }

    /// Slice data (VCL NAL unit, types 1 to 5).
    #[must_use]
    pub fn is_vcl(self) -> bool {
        (1..=5).contains(&self.0)
    }
}

/// Split an Annex-B byte stream into NAL units (without start codes).
///
/// Accepts 3- and 4-byte start codes; trailing zero bytes before a start code
/// (`trailing_zero_8bits`) are dropped. Empty NAL units are skipped.
///
/// # Errors
/// [`Error::NoStartCode`] when the stream has bytes but does not begin with a start code,
/// [`Error::ForbiddenBit`] when a NAL unit header has the forbidden_zero_bit set.
pub fn nal_units(stream: &[u8]) -> Result<Vec<&[u8]>, Error> {
    let mut out = Vec::new();
    let first = match find_start_code(stream, 0) {
        Some((0, len)) => len,
        Some((at, len)) if stream[..at].iter().all(|&b| b == 0) => at + len,
        _ if stream.iter().all(|&b| b == 0) => return Ok(out),
        _ => return Err(Error::NoStartCode),
    };
    let mut start = first;
    loop {
        let (end, next) = match find_start_code(stream, start) {
            Some((at, len)) => (at, Some(at + len)),
            None => (stream.len(), None),
        };
        let mut nal = &stream[start..end];
        while let [rest @ .., 0] = nal {
            nal = rest;
        }
        if let Some(&header) = nal.first() {
            if header & 0x80 != 0 {
                return Err(Error::ForbiddenBit);
            }
            out.push(nal);
        }
        match next {
            Some(n) => start = n,
            None => return Ok(out),
        }
    }
}

/// Position and length (3 or 4) of the next start code at or after `from`.
fn find_start_code(data: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i + 3 <= data.len() {
        if data[i + 2] > 1 {
            i += 3;
        } else if data[i..i + 3] == [0, 0, 1] {
            if i > from && data[i - 1] == 0 {
                return Some((i - 1, 4));
            }
            return Some((i, 3));
        } else {
            i += 1;
        }
    }
    None
}

/// One access unit: the NAL units of one picture, in decoding order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    /// NAL units without start codes.
    pub nals: Vec<Bytes>,
}

impl AccessUnit {
    /// Whether this access unit holds an IDR slice (a point where a decoder can start).
    #[must_use]
    pub fn is_key_frame(&self) -> bool {
        self.nals
            .iter()
            .any(|n| n.first().map(|&b| NalType::from_header(b)) == Some(NalType::IDR_SLICE))
    }

    /// Whether the access unit carries an SPS and a PPS (so a decoder needs nothing older).
    #[must_use]
    pub fn has_parameter_sets(&self) -> bool {
        let has = |t: NalType| {
            self.nals
                .iter()
                .any(|n| n.first().map(|&b| NalType::from_header(b)) == Some(t))
        };
        has(NalType::SPS) && has(NalType::PPS)
    }
}

/// Group the NAL units of an Annex-B stream into access units.
///
/// A new access unit starts at an AUD, SPS, PPS or SEI that follows a slice, or at a slice whose
/// `first_mb_in_slice` is 0 (H.264 section 7.4.1.2.3; `ue(v)` = 0 is the single bit `1`, so
/// it is the top bit of the first byte after the NAL header). That covers the streams x264 and
/// common encoders write (no arbitrary slice order).
///
/// # Errors
/// As [`nal_units`].
pub fn access_units(stream: &[u8]) -> Result<Vec<AccessUnit>, Error> {
    let mut out: Vec<AccessUnit> = Vec::new();
    let mut current: Vec<Bytes> = Vec::new();
    let mut current_has_vcl = false;
    for nal in nal_units(stream)? {
        let t = NalType::from_header(nal[0]);
        let starts_new = if t.is_vcl() {
            current_has_vcl && nal.get(1).is_some_and(|&b| b & 0x80 != 0)
        } else {
            current_has_vcl
                && matches!(t, NalType::AUD | NalType::SPS | NalType::PPS | NalType::SEI)
        };
        if starts_new {
            out.push(AccessUnit {
                nals: std::mem::take(&mut current),
            });
            current_has_vcl = false;
        }
        current_has_vcl |= t.is_vcl();
        current.push(Bytes::copy_from_slice(nal));
    }
    if !current.is_empty() {
        out.push(AccessUnit { nals: current });
    }
    Ok(out)
}

/// Settings of a [`Packetizer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketizerConfig {
    /// RTP payload type (dynamic, 96 by convention).
    pub payload_type: u8,
    /// RTP SSRC.
    pub ssrc: u32,
    /// First sequence number.
    pub initial_seq: u16,
    /// Largest RTP payload (bytes after the 12-byte header). NAL units above it are sent as
    /// FU-A fragments. 1200 keeps packets under common path MTUs with room for tunnels.
    pub max_payload: usize,
    /// Aggregate runs of small non-slice NAL units (SPS, PPS, SEI, AUD) into one STAP-A packet
    /// (RFC 6184 section 5.7.1). Off by default: one NAL unit per packet is the simplest for
    /// receivers that look for key frames.
    pub stap_a: bool,
}

impl Default for PacketizerConfig {
    fn default() -> Self {
        PacketizerConfig {
            payload_type: 96,
            ssrc: 0x5445_5354,
            initial_seq: 0,
            max_payload: 1200,
            stap_a: false,
        }
    }
}

/// RFC 6184 packetiser in non-interleaved mode (`packetization-mode=1`): single NAL unit
/// packets, FU-A for NAL units larger than the payload budget, optional STAP-A.
///
/// Sequence numbers continue across calls; the caller chooses each access unit's timestamp.
#[derive(Debug, Clone)]
pub struct Packetizer {
    config: PacketizerConfig,
    next_seq: u16,
}

/// Smallest payload budget that can carry an FU-A fragment with at least one byte of data.
const MIN_PAYLOAD: usize = 3;

impl Packetizer {
    /// A packetiser; `max_payload` below 3 bytes is raised to 3.
    #[must_use]
    pub fn new(mut config: PacketizerConfig) -> Self {
        config.max_payload = config.max_payload.max(MIN_PAYLOAD);
        Packetizer {
            next_seq: config.initial_seq,
            config,
        }
    }

    /// The settings in use.
    #[must_use]
    pub fn config(&self) -> &PacketizerConfig {
        &self.config
    }

    /// Sequence number the next packet will carry.
    #[must_use]
    pub fn next_seq(&self) -> u16 {
        self.next_seq
    }

    /// Packetise one access unit with RTP timestamp `timestamp`, appending whole RTP packets
    /// (header + payload) to `out`. The last packet carries the marker bit (RFC 6184 5.1).
    ///
    /// NAL units of types 0 and 24 to 31 (unspecified in H.264, reserved or used by the payload
    /// format itself in RFC 6184 Table 1) cannot be carried and are left out.
    pub fn packetize(&mut self, au: &AccessUnit, timestamp: u32, out: &mut Vec<Bytes>) {
        let max = self.config.max_payload;
        // Payloads first, then headers, so the marker bit goes on the true last packet.
        let mut payloads: Vec<Payload<'_>> = Vec::new();
        let mut i = 0;
        while i < au.nals.len() {
            let nal = &au.nals[i];
            if !is_carried(nal) {
                i += 1;
                continue;
            }
            if self.config.stap_a {
                let run = stap_run(&au.nals[i..], max);
                if run >= 2 {
                    payloads.push(Payload::Stap(&au.nals[i..i + run]));
                    i += run;
                    continue;
                }
            }
            if nal.len() <= max {
                payloads.push(Payload::Single(nal));
            } else {
                let header = nal[0];
                let body = &nal[1..];
                let chunk = max - 2;
                let n = body.len().div_ceil(chunk);
                for (k, part) in body.chunks(chunk).enumerate() {
                    payloads.push(Payload::Fu {
                        header,
                        start: k == 0,
                        end: k + 1 == n,
                        part,
                    });
                }
            }
            i += 1;
        }
        let last = payloads.len().saturating_sub(1);
        for (k, p) in payloads.iter().enumerate() {
            let mut buf = BytesMut::with_capacity(RTP_HEADER_LEN + p.len());
            self.write_header(&mut buf, timestamp, k == last);
            p.write(&mut buf);
            out.push(buf.freeze());
        }
    }

    /// RFC 3550 section 5.1 fixed header: V=2, no padding, no extension, no CSRC.
    fn write_header(&mut self, buf: &mut BytesMut, timestamp: u32, marker: bool) {
        buf.put_u8(0x80);
        buf.put_u8((u8::from(marker) << 7) | (self.config.payload_type & 0x7f));
        buf.put_u16(self.next_seq);
        buf.put_u32(timestamp);
        buf.put_u32(self.config.ssrc);
        self.next_seq = self.next_seq.wrapping_add(1);
    }
}

/// Whether RFC 6184 can carry this NAL unit (types 1 to 23).
fn is_carried(nal: &[u8]) -> bool {
    nal.first()
        .is_some_and(|&b| (1..=23).contains(&NalType::from_header(b).0))
}

/// How many leading NAL units of `nals` fit in one STAP-A: non-slice units only, each with a
/// 2-byte size, after the 1-byte STAP-A header.
fn stap_run(nals: &[Bytes], max: usize) -> usize {
    let mut size = 1;
    let mut n = 0;
    for nal in nals {
        let t = NalType::from_header(nal[0]);
        if !is_carried(nal)
            || t.is_vcl()
            || nal.len() > usize::from(u16::MAX)
            || size + 2 + nal.len() > max
        {
            break;
        }
        size += 2 + nal.len();
        n += 1;
    }
    n
}

/// One RTP payload being built.
enum Payload<'a> {
    Single(&'a [u8]),
    Stap(&'a [Bytes]),
    Fu {
        header: u8,
        start: bool,
        end: bool,
        part: &'a [u8],
    },
}

impl Payload<'_> {
    fn len(&self) -> usize {
        match self {
            Payload::Single(n) => n.len(),
            Payload::Stap(nals) => 1 + nals.iter().map(|n| 2 + n.len()).sum::<usize>(),
            Payload::Fu { part, .. } => 2 + part.len(),
        }
    }

    fn write(&self, buf: &mut BytesMut) {
        match self {
            Payload::Single(n) => buf.put_slice(n),
            Payload::Stap(nals) => {
                // RFC 6184 5.7.1: F is the OR of the aggregated F bits (all 0 here), NRI the
                // maximum NRI of the aggregated units.
                let nri = nals.iter().map(|n| n[0] & 0x60).max().unwrap_or(0);
                buf.put_u8(nri | NalType::STAP_A.0);
                for n in nals.iter() {
                    // stap_run bounded each length to u16::MAX.
                    buf.put_u16(u16::try_from(n.len()).unwrap_or(u16::MAX));
                    buf.put_slice(n);
                }
            }
            Payload::Fu {
                header,
                start,
                end,
                part,
            } => {
                // RFC 6184 5.8: FU indicator keeps F and NRI, type 28; FU header S|E|R|type.
                buf.put_u8((header & 0xe0) | NalType::FU_A.0);
                buf.put_u8((u8::from(*start) << 7) | (u8::from(*end) << 6) | (header & 0x1f));
                buf.put_slice(part);
            }
        }
    }
}

/// Reassembles NAL units from RFC 6184 RTP payloads (single NAL, STAP-A, FU-A), for tests and
/// tools. Loss is reported, not hidden: a fragment without its start is an error, and a new
/// start drops an unfinished NAL unit.
#[derive(Debug, Clone)]
pub struct Depacketizer {
    fu: Option<Vec<u8>>,
    max_nal: usize,
}

impl Default for Depacketizer {
    fn default() -> Self {
        Depacketizer::new(4 << 20)
    }
}

impl Depacketizer {
    /// A depacketiser refusing NAL units larger than `max_nal` bytes.
    #[must_use]
    pub fn new(max_nal: usize) -> Self {
        Depacketizer { fu: None, max_nal }
    }

    /// Feed one RTP payload; complete NAL units are appended to `out`.
    ///
    /// # Errors
    /// [`Error::Truncated`], [`Error::ForbiddenBit`], [`Error::UnsupportedPacketType`],
    /// [`Error::FuWithoutStart`], [`Error::TooLarge`].
    pub fn push(&mut self, payload: &[u8], out: &mut Vec<Bytes>) -> Result<(), Error> {
        let &first = payload.first().ok_or(Error::Truncated)?;
        if first & 0x80 != 0 {
            return Err(Error::ForbiddenBit);
        }
        match NalType::from_header(first) {
            t if (1..=23).contains(&t.0) => {
                self.fu = None;
                out.push(Bytes::copy_from_slice(payload));
            }
            NalType::STAP_A => {
                self.fu = None;
                let mut rest = &payload[1..];
                while !rest.is_empty() {
                    let [a, b, tail @ ..] = rest else {
                        return Err(Error::Truncated);
                    };
                    let len = usize::from(u16::from_be_bytes([*a, *b]));
                    if len == 0 || tail.len() < len {
                        return Err(Error::Truncated);
                    }
                    out.push(Bytes::copy_from_slice(&tail[..len]));
                    rest = &tail[len..];
                }
            }
            NalType::FU_A => {
                let &fu_header = payload.get(1).ok_or(Error::Truncated)?;
                let data = &payload[2..];
                let (start, end) = (fu_header & 0x80 != 0, fu_header & 0x40 != 0);
                if start {
                    let mut nal = Vec::with_capacity(1 + data.len());
                    nal.push((first & 0xe0) | (fu_header & 0x1f));
                    self.fu = Some(nal);
                }
                let nal = self.fu.as_mut().ok_or(Error::FuWithoutStart)?;
                if nal.len() + data.len() > self.max_nal {
                    self.fu = None;
                    return Err(Error::TooLarge(self.max_nal));
                }
                nal.extend_from_slice(data);
                if end {
                    if let Some(nal) = self.fu.take() {
                        out.push(Bytes::from(nal));
                    }
                }
            }
            other => return Err(Error::UnsupportedPacketType(other.0)),
        }
        Ok(())
    }
}

/// NAL unit types a receiver sees first in an RTP payload: the type of a single NAL unit, each
/// aggregated type of a STAP-A, the fragmented type of a starting FU-A. Empty for continuation
/// fragments and for malformed or unsupported payloads.
#[must_use]
pub fn payload_nal_types(payload: &[u8]) -> Vec<NalType> {
    let Some(&first) = payload.first() else {
        return Vec::new();
    };
    match NalType::from_header(first) {
        t if (1..=23).contains(&t.0) => vec![t],
        NalType::STAP_A => {
            let mut types = Vec::new();
            let mut rest = &payload[1..];
            while let [a, b, tail @ ..] = rest {
                let len = usize::from(u16::from_be_bytes([*a, *b]));
                if len == 0 || tail.len() < len {
                    break;
                }
                types.push(NalType::from_header(tail[0]));
                rest = &tail[len..];
            }
            types
        }
        NalType::FU_A => match payload.get(1) {
            Some(&h) if h & 0x80 != 0 => vec![NalType::from_header(h)],
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// Whether an RTP payload begins a point where a decoder can start: an SPS (sent before the IDR
/// by encoders that repeat headers) or the first packet of an IDR slice.
#[must_use]
pub fn payload_starts_key_frame(payload: &[u8]) -> bool {
    payload_nal_types(payload)
        .iter()
        .any(|&t| t == NalType::SPS || t == NalType::IDR_SLICE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annexb(nals: &[&[u8]]) -> Vec<u8> {
        let mut s = Vec::new();
        for (i, n) in nals.iter().enumerate() {
            if i % 2 == 0 {
                s.extend_from_slice(&[0, 0, 0, 1]);
            } else {
                s.extend_from_slice(&[0, 0, 1]);
            }
            s.extend_from_slice(n);
        }
        s
    }

    /// RTP fields we check: (marker, seq, timestamp, payload).
    fn parse(pkt: &[u8]) -> (bool, u16, u32, Vec<u8>) {
        let p = rtp_types::RtpPacket::parse(pkt).expect("valid RTP");
        assert_eq!(p.version(), 2);
        assert_eq!(p.payload_type(), 96);
        (
            p.marker_bit(),
            p.sequence_number(),
            p.timestamp(),
            p.payload().to_vec(),
        )
    }

    #[test]
    fn splits_three_and_four_byte_start_codes() {
        let sps: &[u8] = &[0x67, 0x42, 0x00, 0x1e];
        let pps: &[u8] = &[0x68, 0xce, 0x38, 0x80];
        let idr: &[u8] = &[0x65, 0x88, 0x84, 0x00, 0x00, 0x03, 0x01];
        let mut s = annexb(&[sps, pps, idr]);
        s.extend_from_slice(&[0, 0]); // trailing_zero_8bits
        let nals = nal_units(&s).unwrap();
        assert_eq!(nals, vec![sps, pps, idr]);
        assert!(nal_units(&[]).unwrap().is_empty());
        assert_eq!(nal_units(&[0x65, 1, 2]), Err(Error::NoStartCode));
        assert_eq!(nal_units(&[0, 0, 1, 0xe5, 1]), Err(Error::ForbiddenBit));
    }

    #[test]
    fn groups_access_units() {
        let sps: &[u8] = &[0x67, 0x42];
        let pps: &[u8] = &[0x68, 0xce];
        let idr_a: &[u8] = &[0x65, 0x88, 1];
        let idr_b: &[u8] = &[0x65, 0x40, 2]; // first_mb_in_slice != 0: same picture
        let p1: &[u8] = &[0x41, 0x9a, 3];
        let p2: &[u8] = &[0x41, 0x9b, 4];
        let aus = access_units(&annexb(&[sps, pps, idr_a, idr_b, p1, p2])).unwrap();
        assert_eq!(aus.len(), 3);
        assert_eq!(aus[0].nals.len(), 4);
        assert!(aus[0].is_key_frame() && aus[0].has_parameter_sets());
        assert!(!aus[1].is_key_frame());
        assert_eq!(aus[2].nals, vec![Bytes::from_static(p2)]);
    }

    #[test]
    fn small_nals_are_single_packets_with_marker_on_last() {
        let au = AccessUnit {
            nals: vec![
                Bytes::from_static(&[0x67, 1, 2]),
                Bytes::from_static(&[0x68, 3]),
                Bytes::from_static(&[0x65, 0x88, 9, 9, 9]),
            ],
        };
        let mut p = Packetizer::new(PacketizerConfig {
            initial_seq: 65534,
            ..PacketizerConfig::default()
        });
        let mut out = Vec::new();
        p.packetize(&au, 1234, &mut out);
        let parsed: Vec<_> = out.iter().map(|b| parse(b)).collect();
        assert_eq!(parsed.len(), 3);
        assert_eq!(
            parsed.iter().map(|x| x.1).collect::<Vec<_>>(),
            vec![65534, 65535, 0]
        );
        assert_eq!(
            parsed.iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![false, false, true]
        );
        assert!(parsed.iter().all(|x| x.2 == 1234));
        assert_eq!(parsed[2].3, au.nals[2].to_vec());
        assert!(payload_starts_key_frame(&parsed[0].3));
        assert_eq!(p.next_seq(), 1);
    }

    #[test]
    fn fu_a_bits_and_round_trip() {
        let mut big = vec![0x65u8];
        big.extend((0..5000u32).map(|i| (i % 251) as u8));
        let au = AccessUnit {
            nals: vec![Bytes::from(big.clone())],
        };
        let mut p = Packetizer::new(PacketizerConfig {
            max_payload: 1000,
            ..PacketizerConfig::default()
        });
        let mut out = Vec::new();
        p.packetize(&au, 7, &mut out);
        // 4999 body bytes in 998-byte chunks: 6 fragments.
        assert_eq!(out.len(), 6);
        let mut d = Depacketizer::default();
        let mut nals = Vec::new();
        for (i, pkt) in out.iter().enumerate() {
            assert!(pkt.len() <= RTP_HEADER_LEN + 1000);
            let (marker, _, ts, payload) = parse(pkt);
            assert_eq!(ts, 7);
            assert_eq!(payload[0], 0x60 | 28, "FU indicator keeps NRI, type 28");
            assert_eq!(payload[1] & 0x1f, 5, "FU header carries the NAL type");
            assert_eq!(payload[1] & 0x80 != 0, i == 0, "S bit only on first");
            assert_eq!(payload[1] & 0x40 != 0, i == 5, "E bit only on last");
            assert_eq!(payload[1] & 0x20, 0, "R bit is zero");
            assert_eq!(marker, i == 5);
            assert_eq!(payload_starts_key_frame(&payload), i == 0);
            d.push(&payload, &mut nals).unwrap();
            assert_eq!(nals.len(), usize::from(i == 5));
        }
        assert_eq!(nals[0].as_ref(), big.as_slice());
    }

    #[test]
    fn fu_a_loss_is_reported() {
        let mut d = Depacketizer::default();
        let mut nals = Vec::new();
        assert_eq!(
            d.push(&[0x7c, 0x45, 1, 2], &mut nals),
            Err(Error::FuWithoutStart)
        );
        assert_eq!(d.push(&[], &mut nals), Err(Error::Truncated));
        assert_eq!(
            d.push(&[25, 0, 0], &mut nals),
            Err(Error::UnsupportedPacketType(25))
        );
        assert_eq!(d.push(&[24, 0, 5, 1], &mut nals), Err(Error::Truncated));
        let mut small = Depacketizer::new(4);
        assert_eq!(
            small.push(&[0x7c, 0x85, 1, 2, 3, 4, 5], &mut nals),
            Err(Error::TooLarge(4))
        );
        assert!(nals.is_empty());
    }

    #[test]
    fn stap_a_aggregates_parameter_sets() {
        let sps = Bytes::from_static(&[0x67, 0x42, 0x00, 0x1e, 0xab]);
        let pps = Bytes::from_static(&[0x68, 0xce, 0x38, 0x80]);
        let idr = Bytes::from_static(&[0x65, 0x88, 0x84]);
        let au = AccessUnit {
            nals: vec![sps.clone(), pps.clone(), idr.clone()],
        };
        let mut p = Packetizer::new(PacketizerConfig {
            stap_a: true,
            ..PacketizerConfig::default()
        });
        let mut out = Vec::new();
        p.packetize(&au, 0, &mut out);
        assert_eq!(out.len(), 2);
        let (m0, _, _, stap) = parse(&out[0]);
        assert!(!m0);
        assert_eq!(stap[0], 0x60 | 24);
        assert_eq!(payload_nal_types(&stap), vec![NalType::SPS, NalType::PPS]);
        assert!(payload_starts_key_frame(&stap));
        let mut d = Depacketizer::default();
        let mut nals = Vec::new();
        for pkt in &out {
            d.push(&parse(pkt).3, &mut nals).unwrap();
        }
        assert_eq!(nals, vec![sps, pps, idr]);
    }

    /// Deterministic xorshift bytes.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Bias towards 0 and 1 so start codes and small headers show up.
                match x % 4 {
                    0 => 0,
                    1 => 1,
                    _ => (x >> 8) as u8,
                }
            })
            .collect()
    }

    #[test]
    fn garbage_never_panics_and_stays_bounded() {
        for seed in 1..2000u64 {
            let data = noise(seed, (seed % 97) as usize);
            if let Ok(aus) = access_units(&data) {
                let total: usize = aus.iter().flat_map(|a| &a.nals).map(|n| n.len()).sum();
                assert!(total <= data.len());
                let mut p = Packetizer::new(PacketizerConfig {
                    max_payload: (seed % 40) as usize,
                    stap_a: seed % 2 == 0,
                    ..PacketizerConfig::default()
                });
                let mut out = Vec::new();
                let mut d = Depacketizer::default();
                let mut nals = Vec::new();
                for au in &aus {
                    out.clear();
                    p.packetize(au, 0, &mut out);
                    for pkt in &out {
                        assert!(pkt.len() <= RTP_HEADER_LEN + p.config().max_payload);
                        d.push(&pkt[RTP_HEADER_LEN..], &mut nals).unwrap();
                    }
                }
                let expected: Vec<Bytes> = aus
                    .into_iter()
                    .flat_map(|a| a.nals)
                    .filter(|n| is_carried(n))
                    .collect();
                assert_eq!(nals, expected, "seed {seed}");
            }
            let mut d = Depacketizer::new(64);
            let mut nals = Vec::new();
            for chunk in data.chunks(7) {
                let _ = d.push(chunk, &mut nals);
                let _ = payload_nal_types(chunk);
            }
            assert!(nals.iter().all(|n| n.len() <= 64));
        }
    }

    #[test]
    fn shipped_clip_round_trips() {
        let clip = crate::testpattern::CLIP;
        let aus = access_units(clip).unwrap();
        assert_eq!(aus.len(), 200, "8 s at 25 fps");
        let keys: Vec<usize> = (0..aus.len()).filter(|&i| aus[i].is_key_frame()).collect();
        assert_eq!(keys, vec![0, 50, 100, 150], "IDR every 2 s, no scenecut");
        assert!(keys.iter().all(|&k| aus[k].has_parameter_sets()));
        for stap_a in [false, true] {
            let mut p = Packetizer::new(PacketizerConfig {
                stap_a,
                ..PacketizerConfig::default()
            });
            let mut d = Depacketizer::default();
            let mut packets = Vec::new();
            for (i, au) in aus.iter().enumerate() {
                let ts = u32::try_from(i).unwrap() * 3600;
                packets.clear();
                p.packetize(au, ts, &mut packets);
                let mut nals = Vec::new();
                for (k, pkt) in packets.iter().enumerate() {
                    assert!(pkt.len() <= RTP_HEADER_LEN + 1200);
                    let (marker, _, t, payload) = parse(pkt);
                    assert_eq!(t, ts);
                    assert_eq!(marker, k + 1 == packets.len());
                    d.push(&payload, &mut nals).unwrap();
                }
                assert_eq!(nals, au.nals, "access unit {i} survives RTP");
            }
        }
    }
}
