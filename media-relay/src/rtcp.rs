//! RTCP (RFC 3550 section 6) for the relay: sender reports to viewers, receiver reports from them.
//!
//! How it fits: [`crate::relay`] calls [`write_sender_report`] for each viewer every report
//! interval (a compound SR + SDES CNAME, RFC 3550 section 6.1 requires the CNAME in every
//! compound packet) and [`parse_compound`] on every datagram that arrives on its RTCP socket
//! (viewers' RRs) or on an ingest's RTCP port (producers' SRs). Parsing and writing use
//! `rtcp-types`; this module only adds the relay's view of the fields and the NTP clock maths.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rtcp_types::{Compound, Packet, RtcpPacketWriterExt, Sdes, SdesChunk, SdesItem, SenderReport};

/// RTCP packet type (RFC 3550 section 12.1, RFC 4585, RFC 3611): an open newtype so unknown
/// types survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RtcpType(pub u8);

impl RtcpType {
    /// Sender report.
    pub const SR: RtcpType = RtcpType(200);
    /// Receiver report.
    pub const RR: RtcpType = RtcpType(201);
    /// Source description.
    pub const SDES: RtcpType = RtcpType(202);
    /// Goodbye.
    pub const BYE: RtcpType = RtcpType(203);
    /// Application-defined.
    pub const APP: RtcpType = RtcpType(204);
    /// Generic transport-layer feedback (RFC 4585).
    pub const RTPFB: RtcpType = RtcpType(205);
    /// Payload-specific feedback (RFC 4585).
    pub const PSFB: RtcpType = RtcpType(206);
    /// Extended reports (RFC 3611).
    pub const XR: RtcpType = RtcpType(207);
}

/// SDES item type CNAME (RFC 3550 section 6.5.1).
const SDES_CNAME: u8 = 1;

/// Why an RTCP datagram was refused.
#[derive(Debug, thiserror::Error)]
pub enum RtcpError {
    /// The datagram is not a valid compound RTCP packet.
    #[error("malformed RTCP packet: {0}")]
    Malformed(#[from] rtcp_types::RtcpParseError),
    /// A packet we had to build could not be written (a bug, reported instead of panicking).
    #[error("cannot write RTCP packet: {0}")]
    Write(#[from] rtcp_types::RtcpWriteError),
}

/// One report block (RFC 3550 section 6.4.1) with the SSRC of the reporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportInfo {
    /// SSRC of the participant that sent the report.
    pub reporter_ssrc: u32,
    /// SSRC of the source the block is about (for viewers: the SSRC the relay gave them).
    pub source_ssrc: u32,
    /// Fraction of packets lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative number of packets lost (24-bit signed in the wire format, kept raw).
    pub cumulative_lost: u32,
    /// Extended highest sequence number received.
    pub extended_highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
}

/// What a compound RTCP packet contained besides report blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RtcpSummary {
    /// Packets in the compound.
    pub packets: u32,
    /// Sender reports (from producers).
    pub sender_reports: u32,
    /// Receiver reports.
    pub receiver_reports: u32,
    /// A BYE was present (RFC 3550 section 6.6).
    pub bye: bool,
    /// SSRC of the first SR/RR sender, if any.
    pub sender_ssrc: Option<u32>,
}

/// Parse a compound RTCP packet (RFC 3550 section 6.1), calling `on_report` for every report
/// block of every SR and RR in it.
pub fn parse_compound(
    data: &[u8],
    mut on_report: impl FnMut(ReportInfo),
) -> Result<RtcpSummary, RtcpError> {
    let compound = Compound::parse(data)?;
    let mut summary = RtcpSummary::default();
    for packet in compound {
        let packet = packet?;
        summary.packets += 1;
        match packet {
            Packet::Sr(sr) => {
                summary.sender_reports += 1;
                summary.sender_ssrc.get_or_insert(sr.ssrc());
                for rb in sr.report_blocks() {
                    on_report(report_info(sr.ssrc(), &rb));
                }
            }
            Packet::Rr(rr) => {
                summary.receiver_reports += 1;
                summary.sender_ssrc.get_or_insert(rr.ssrc());
                for rb in rr.report_blocks() {
                    on_report(report_info(rr.ssrc(), &rb));
                }
            }
            Packet::Bye(_) => summary.bye = true,
            _ => {}
        }
    }
    Ok(summary)
}

fn report_info(reporter: u32, rb: &rtcp_types::ReportBlock<'_>) -> ReportInfo {
    ReportInfo {
        reporter_ssrc: reporter,
        source_ssrc: rb.ssrc(),
        fraction_lost: rb.fraction_lost(),
        cumulative_lost: rb.cumulative_lost(),
        extended_highest_seq: rb.extended_sequence_number(),
        jitter: rb.interarrival_jitter(),
    }
}

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// 64-bit NTP timestamp (RFC 3550 section 4: seconds since 1900 in the high 32 bits, fraction in
/// the low 32) for a wallclock time.
pub fn ntp_timestamp(wall: SystemTime) -> u64 {
    let since_unix = wall.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since_unix.as_secs().wrapping_add(NTP_UNIX_OFFSET);
    let frac = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// The values of one sender report (RFC 3550 section 6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    /// SSRC of the sender (the viewer's relay SSRC).
    pub ssrc: u32,
    /// NTP wallclock of this report.
    pub ntp: u64,
    /// RTP timestamp corresponding to `ntp`, in the stream's clock.
    pub rtp_timestamp: u32,
    /// Packets sent to this viewer so far (wraps at 2^32).
    pub packet_count: u32,
    /// Payload octets sent to this viewer so far (wraps at 2^32).
    pub octet_count: u32,
}

/// Append a compound SR + SDES(CNAME) for one viewer to `out` (RFC 3550 sections 6.4.1, 6.5.1).
pub fn write_sender_report(
    out: &mut Vec<u8>,
    info: &SenderInfo,
    cname: &str,
) -> Result<(), RtcpError> {
    let sr = SenderReport::builder(info.ssrc)
        .ntp_timestamp(info.ntp)
        .rtp_timestamp(info.rtp_timestamp)
        .packet_count(info.packet_count)
        .octet_count(info.octet_count);
    let sdes = Sdes::builder()
        .add_chunk(SdesChunk::builder(info.ssrc).add_item(SdesItem::builder(SDES_CNAME, cname)));
    let compound = Compound::builder().add_packet(sr).add_packet(sdes);
    let start = out.len();
    let size = rtcp_types::RtcpPacketWriter::calculate_size(&compound)?;
    out.resize(start + size, 0);
    compound.write_into(&mut out[start..])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtcp_types::{ReceiverReport, ReportBlock};

    #[test]
    fn sender_report_round_trip() {
        let mut out = vec![0xaa]; // appended after existing bytes
        let info = SenderInfo {
            ssrc: 0x1234_5678,
            ntp: ntp_timestamp(UNIX_EPOCH + Duration::from_millis(1500)),
            rtp_timestamp: 9000,
            packet_count: 10,
            octet_count: 12000,
        };
        write_sender_report(&mut out, &info, "relay@example").unwrap();
        let data = &out[1..];
        let mut n = 0;
        let s = parse_compound(data, |_| n += 1).unwrap();
        assert_eq!(s.packets, 2);
        assert_eq!(s.sender_reports, 1);
        assert_eq!(s.sender_ssrc, Some(0x1234_5678));
        assert_eq!(n, 0);
        let Packet::Sr(sr) = Compound::parse(data).unwrap().next().unwrap().unwrap() else {
            panic!("first packet is not an SR");
        };
        assert_eq!(sr.ntp_timestamp() >> 32, NTP_UNIX_OFFSET + 1);
        assert_eq!(sr.ntp_timestamp() & 0xffff_ffff, 1 << 31);
        assert_eq!((sr.packet_count(), sr.octet_count()), (10, 12000));
    }

    #[test]
    fn receiver_report_blocks_are_reported() {
        let rr = ReceiverReport::builder(77).add_report_block(
            ReportBlock::builder(0xabc)
                .fraction_lost(64)
                .cumulative_lost(5)
                .interarrival_jitter(90),
        );
        let mut buf = vec![0u8; 64];
        let len = rr.write_into(&mut buf).unwrap();
        let mut got = Vec::new();
        let s = parse_compound(&buf[..len], |r| got.push(r)).unwrap();
        assert_eq!(s.receiver_reports, 1);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].reporter_ssrc, 77);
        assert_eq!(got[0].source_ssrc, 0xabc);
        assert_eq!(got[0].fraction_lost, 64);
        assert_eq!(got[0].cumulative_lost, 5);
        assert_eq!(got[0].jitter, 90);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_compound(&[], |_| {}).is_err());
        assert!(parse_compound(&[0x80, 201, 0, 9, 1, 2], |_| {}).is_err());
        assert!(parse_compound(&[0x40, 201, 0, 1, 0, 0, 0, 0], |_| {}).is_err());
    }
}
