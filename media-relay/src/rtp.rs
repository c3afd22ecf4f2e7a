//! RTP packet helpers (RFC 3550 section 5.1) for the relay's hot path.
//!
//! How it fits: [`crate::relay`] parses every ingested datagram with [`parse`] (a thin wrapper
//! over `rtp-types` that keeps the fields the relay needs), stores the packet bytes once, and for
//! each viewer copies them into an output buffer and patches the fixed header in place with
//! [`rewrite_header`]: SSRC, sequence number, timestamp and payload type. Nothing here allocates.
//!
//! [`is_rtcp`] demultiplexes RTP and RTCP arriving on one port (RFC 5761 section 4).

use rtp_types::RtpPacket;

/// Length of the fixed RTP header (RFC 3550 section 5.1): V/P/X/CC, M/PT, seq, timestamp, SSRC.
pub const FIXED_HEADER_LEN: usize = 12;

/// Static payload type of MPEG-2 transport streams (RFC 3551 section 6, "MP2T/90000").
pub const PT_MP2T: u8 = 33;

/// Why an RTP datagram was refused.
#[derive(Debug, thiserror::Error)]
pub enum RtpError {
    /// The datagram is not a valid RTP packet (version, length, padding, CSRC/extension sizes).
    #[error("malformed RTP packet: {0}")]
    Malformed(#[from] rtp_types::RtpParseError),
}

/// The header fields the relay uses, plus where the payload sits in the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpInfo {
    /// RTP payload type (7 bits).
    pub payload_type: u8,
    /// Marker bit (for video: last packet of an access unit, RFC 6184 section 5.1).
    pub marker: bool,
    /// Sequence number.
    pub sequence: u16,
    /// Media timestamp.
    pub timestamp: u32,
    /// Synchronisation source of the producer.
    pub ssrc: u32,
    /// Offset of the payload in the datagram.
    pub payload_offset: usize,
    /// Length of the payload (padding excluded).
    pub payload_len: usize,
}

impl RtpInfo {
    /// The payload slice of `datagram` (the same bytes this info was parsed from).
    pub fn payload<'a>(&self, datagram: &'a [u8]) -> &'a [u8] {
        datagram
            .get(self.payload_offset..self.payload_offset + self.payload_len)
            .unwrap_or(&[])
    }
}

/// Parse and validate an RTP datagram (RFC 3550 section 5.1 and A.1 validity checks as done by
/// `rtp-types`: version 2, CSRC list, extension and padding within the datagram).
pub fn parse(datagram: &[u8]) -> Result<RtpInfo, RtpError> {
    let p = RtpPacket::parse(datagram)?;
    Ok(RtpInfo {
        payload_type: p.payload_type(),
        marker: p.marker_bit(),
        sequence: p.sequence_number(),
        timestamp: p.timestamp(),
        ssrc: p.ssrc(),
        payload_offset: p.payload_offset(),
        payload_len: p.payload_len(),
    })
}

/// The per-packet header values written for one viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRewrite {
    /// SSRC the viewer sees (one per viewer, stable across zaps).
    pub ssrc: u32,
    /// Output sequence number.
    pub sequence: u16,
    /// Output timestamp.
    pub timestamp: u32,
    /// Payload type negotiated with the viewer (7 bits; the high bit is ignored).
    pub payload_type: u8,
}

/// Write `rw` into the fixed header of `packet` in place, keeping V/P/X/CC and the marker bit.
///
/// `packet` must hold at least [`FIXED_HEADER_LEN`] bytes (it is a copy of a packet that
/// [`parse`] accepted); shorter buffers are left untouched.
pub fn rewrite_header(packet: &mut [u8], rw: &HeaderRewrite) {
    let Some(h) = packet.get_mut(..FIXED_HEADER_LEN) else {
        return;
    };
    h[1] = (h[1] & 0x80) | (rw.payload_type & 0x7f);
    h[2..4].copy_from_slice(&rw.sequence.to_be_bytes());
    h[4..8].copy_from_slice(&rw.timestamp.to_be_bytes());
    h[8..12].copy_from_slice(&rw.ssrc.to_be_bytes());
}

/// Write a fixed 12-byte RTP header (no CSRC, no extension) into `out` (RFC 3550 section 5.1).
pub fn write_header(out: &mut Vec<u8>, marker: bool, rw: &HeaderRewrite) {
    out.push(0x80);
    out.push(((marker as u8) << 7) | (rw.payload_type & 0x7f));
    out.extend_from_slice(&rw.sequence.to_be_bytes());
    out.extend_from_slice(&rw.timestamp.to_be_bytes());
    out.extend_from_slice(&rw.ssrc.to_be_bytes());
}

/// RFC 5761 section 4: a datagram whose second byte is 192..=223 (RTCP packet types 200-204
/// and the feedback types fall in that range) is RTCP, not RTP.
pub fn is_rtcp(datagram: &[u8]) -> bool {
    matches!(datagram.get(1), Some(b) if (192..=223).contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        write_header(
            &mut v,
            true,
            &HeaderRewrite {
                ssrc,
                sequence: seq,
                timestamp: ts,
                payload_type: pt,
            },
        );
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn parse_and_rewrite_round_trip() {
        let mut p = packet(96, 7, 1000, 0xdead_beef, &[1, 2, 3]);
        let info = parse(&p).unwrap();
        assert_eq!(
            (info.payload_type, info.sequence, info.timestamp, info.ssrc),
            (96, 7, 1000, 0xdead_beef)
        );
        assert!(info.marker);
        assert_eq!(info.payload(&p), &[1, 2, 3]);
        rewrite_header(
            &mut p,
            &HeaderRewrite {
                ssrc: 42,
                sequence: 65535,
                timestamp: u32::MAX,
                payload_type: 100,
            },
        );
        let info = parse(&p).unwrap();
        assert_eq!(
            (info.payload_type, info.sequence, info.timestamp, info.ssrc),
            (100, 65535, u32::MAX, 42)
        );
        assert!(info.marker, "marker bit kept");
    }

    #[test]
    fn malformed_is_an_error() {
        assert!(parse(&[]).is_err());
        assert!(parse(&[0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err()); // version 1
        assert!(parse(&[0x8f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err()); // 15 CSRCs missing
    }

    #[test]
    fn rtcp_demux() {
        assert!(is_rtcp(&[0x80, 200, 0, 6]));
        assert!(is_rtcp(&[0x81, 201, 0, 7]));
        assert!(!is_rtcp(&[0x80, 96]));
        assert!(!is_rtcp(&[0x80, 96 | 0x80]));
    }
}
