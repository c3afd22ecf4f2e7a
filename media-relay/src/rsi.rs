//! RTCP Receiver Summary Information (RSI, RFC 5760 section 7.1, PT 209): the packet a feedback
//! target (FT) sends up the aggregation tree, and the distribution source sends down to tell
//! receivers the group size and the RTCP bandwidth.
//!
//! How it fits: [`crate::feedback::aggregate`] turns viewers' receiver reports into an [`Rsi`]
//! (loss / jitter / RTT / cumulative-loss distributions, general statistics, group and average
//! packet size) and merges children's RSIs into its own; the source's RSI carries the
//! [`SubReport::RtcpBandwidth`] and [`SubReport::GroupAndAvgPacketSize`] blocks that set every
//! receiver's RTCP interval ([`crate::feedback::interval`]). This module is only the codec:
//! typed sub-report blocks, strict length checks, no panics on any input.
//!
//! `rtcp-types` has no RSI type; it hands RSI over as [`rtcp_types::Unknown`], which
//! [`Rsi::from_unknown`] decodes, so an RSI can sit in a compound packet with SR/RR/SDES/APP.
//!
//! Wire format (RFC 5760 section 7.1.1):
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |V=2|P|reserved |   PT=RSI=209  |             length            |
//! |                 SSRC (distribution source)                    |
//! |                       Summarized SSRC                         |
//! |              NTP Timestamp (most significant word)            |
//! |              NTP Timestamp (least significant word)           |
//! :   sub-report blocks: SRBT (8) | Length (8, 32-bit words) | ..  :
//! ```
//!
//! Sub-report blocks (the `Length` octet counts the whole block, header included, in 32-bit
//! words): feedback target address (IPv4 0, IPv6 1, DNS name 2, RFC 5760 section 7.1.2), the
//! distribution blocks loss 4 / jitter 5 / RTT 6 / cumulative loss 7 (section 7.1.3: NDB 12 bits,
//! multiplicative factor MF 4 bits, minimum, maximum, `NDB` buckets of
//! `(Length * 32 - 96) / NDB` bits each), collisions 8, general statistics 10, RTCP bandwidth
//! indication 11 and group and average packet size 12 (section 7.1.4 onwards). Type codes 3 and 9
//! are reserved in the IANA registry; they and every unassigned type decode as
//! [`SubReport::Unknown`] and re-encode byte for byte.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use crate::rtcp::RtcpType;

/// RTCP packet type of RSI (RFC 5760 section 7.1.1).
pub const RSI: RtcpType = RtcpType(209);

/// Fixed part of an RSI packet: RTCP header, SSRC, summarized SSRC, NTP timestamp.
pub const RSI_HEADER_LEN: usize = 20;

/// Largest RTCP packet the 16-bit length field can describe, in octets.
const MAX_RTCP_LEN: usize = (u16::MAX as usize + 1) * 4;

/// Sub-report block type (SRBT, RFC 5760 section 7.1.1 and the IANA "RTCP RSI SRBT" registry):
/// an open newtype so unknown types survive a decode/encode round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Srbt(pub u8);

impl Srbt {
    /// IPv4 feedback target address.
    pub const IPV4_ADDRESS: Srbt = Srbt(0);
    /// IPv6 feedback target address.
    pub const IPV6_ADDRESS: Srbt = Srbt(1);
    /// DNS name of the feedback target.
    pub const DNS_NAME: Srbt = Srbt(2);
    /// Loss distribution (fraction lost, 1/256 units as in an RR).
    pub const LOSS: Srbt = Srbt(4);
    /// Jitter distribution (RTP timestamp units).
    pub const JITTER: Srbt = Srbt(5);
    /// Round-trip time distribution (milliseconds).
    pub const RTT: Srbt = Srbt(6);
    /// Cumulative loss distribution (packets).
    pub const CUMULATIVE_LOSS: Srbt = Srbt(7);
    /// SSRC collisions.
    pub const COLLISIONS: Srbt = Srbt(8);
    /// General statistics: median fraction lost, highest cumulative loss, median jitter.
    pub const GENERAL_STATS: Srbt = Srbt(10);
    /// RTCP bandwidth indication.
    pub const RTCP_BANDWIDTH: Srbt = Srbt(11);
    /// Group size and average RTCP packet size.
    pub const GROUP_AND_AVG_PACKET_SIZE: Srbt = Srbt(12);
}

impl fmt::Display for Srbt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SRBT {}", self.0)
    }
}

/// Why an RSI packet was refused, or could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RsiError {
    /// Fewer octets than the structure needs.
    #[error("RSI truncated: need {need} octets, have {have}")]
    Truncated {
        /// Octets needed.
        need: usize,
        /// Octets present.
        have: usize,
    },
    /// RTP version other than 2.
    #[error("RTCP version {0} (expected 2)")]
    BadVersion(u8),
    /// The packet type is not 209.
    #[error("packet type {0} is not RSI (209)")]
    NotRsi(u8),
    /// The RTCP length field disagrees with the datagram.
    #[error("RTCP length field says {declared} octets, datagram has {actual}")]
    LengthMismatch {
        /// Octets the length field declares.
        declared: usize,
        /// Octets present.
        actual: usize,
    },
    /// Padding bit set with an impossible padding count.
    #[error("bad RTCP padding")]
    BadPadding,
    /// A sub-report block's length is zero, runs past the packet, or is wrong for its type.
    #[error("{srbt}: bad sub-report length {words} words")]
    BadSubReportLength {
        /// The block type.
        srbt: Srbt,
        /// The length field, in 32-bit words.
        words: u8,
    },
    /// A distribution block is inconsistent (no buckets, bucket width outside 1..=32 bits, ...).
    #[error("{srbt}: bad distribution: {reason}")]
    BadDistribution {
        /// The block type.
        srbt: Srbt,
        /// What is wrong.
        reason: &'static str,
    },
    /// A feedback target address block with port 0 (RFC 5760 section 7.1.2: MUST NOT be used).
    #[error("feedback target port 0")]
    ZeroPort,
    /// A DNS-name feedback target that is empty or not UTF-8.
    #[error("bad DNS name in feedback target block")]
    BadDnsName,
    /// A field value that does not fit its wire width (caller error on encode).
    #[error("value out of range: {0}")]
    OutOfRange(&'static str),
    /// The packet or a sub-report block would exceed its length field.
    #[error("too large: {0}")]
    TooLarge(&'static str),
}

/// A distribution sub-report (RFC 5760 section 7.1.3): `buckets.len()` equal-width buckets
/// spanning `[min, max]`, each holding a count of receivers. Values are `raw / 2^mf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distribution {
    /// Multiplicative factor (4 bits): values on the wire are the real values times `2^mf`.
    pub mf: u8,
    /// Minimum distribution value (scaled by `2^mf`).
    pub min: u32,
    /// Maximum distribution value (scaled by `2^mf`).
    pub max: u32,
    /// Width of one bucket on the wire in bits (1..=32); `buckets.len() * bucket_bits` must be a
    /// multiple of 32 so the decoder recovers the width from the length field.
    pub bucket_bits: u8,
    /// Receiver counts per bucket (at most 4095 buckets).
    pub buckets: Vec<u32>,
}

impl Distribution {
    /// Most buckets the 12-bit NDB field can carry.
    pub const MAX_BUCKETS: usize = 4095;

    /// A distribution with the narrowest of 8, 16 or 32-bit buckets that holds every count and
    /// keeps the block word-aligned.
    pub fn new(mf: u8, min: u32, max: u32, buckets: Vec<u32>) -> Distribution {
        let largest = buckets.iter().copied().max().unwrap_or(0);
        let n = buckets.len();
        let bucket_bits = [8u8, 16, 32]
            .into_iter()
            .find(|&b| (b == 32 || largest < (1u32 << b)) && (n * usize::from(b)) % 32 == 0)
            .unwrap_or(32);
        Distribution {
            mf,
            min,
            max,
            bucket_bits,
            buckets,
        }
    }

    /// Sum of all bucket counts.
    pub fn total(&self) -> u64 {
        self.buckets.iter().map(|&c| u64::from(c)).sum()
    }

    fn body_len(&self, srbt: Srbt) -> Result<usize, RsiError> {
        let bad = |reason| RsiError::BadDistribution { srbt, reason };
        let n = self.buckets.len();
        if n == 0 || n > Self::MAX_BUCKETS {
            return Err(bad("bucket count outside 1..=4095"));
        }
        if self.mf > 15 {
            return Err(bad("multiplicative factor above 15"));
        }
        if !(1..=32).contains(&self.bucket_bits) {
            return Err(bad("bucket width outside 1..=32 bits"));
        }
        let bits = n * usize::from(self.bucket_bits);
        if bits % 32 != 0 {
            return Err(bad("buckets do not fill whole 32-bit words"));
        }
        if self.bucket_bits < 32 {
            let limit = 1u64 << self.bucket_bits;
            if self.buckets.iter().any(|&c| u64::from(c) >= limit) {
                return Err(bad("a count does not fit its bucket width"));
            }
        }
        Ok(12 + bits / 8)
    }
}

/// One RSI sub-report block (RFC 5760 section 7.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubReport {
    /// Feedback target, IPv4 (SRBT 0, section 7.1.2).
    Ipv4Target(SocketAddrV4),
    /// Feedback target, IPv6 (SRBT 1, section 7.1.2); flow info and scope are not carried.
    Ipv6Target(SocketAddrV6),
    /// Feedback target by DNS name (SRBT 2, section 7.1.2).
    DnsTarget {
        /// UDP port receivers send feedback to.
        port: u16,
        /// UTF-8 host name.
        name: String,
    },
    /// Distribution of fraction lost (SRBT 4).
    Loss(Distribution),
    /// Distribution of interarrival jitter (SRBT 5).
    Jitter(Distribution),
    /// Distribution of round-trip times (SRBT 6).
    Rtt(Distribution),
    /// Distribution of cumulative loss (SRBT 7).
    CumulativeLoss(Distribution),
    /// SSRCs seen colliding (SRBT 8).
    Collisions(Vec<u32>),
    /// General statistics (SRBT 10).
    GeneralStats {
        /// Median fraction lost (1/256).
        median_fraction_lost: u8,
        /// Highest cumulative number of packets lost (24 bits).
        highest_cumulative_lost: u32,
        /// Median interarrival jitter (timestamp units).
        median_jitter: u32,
    },
    /// RTCP bandwidth indication (SRBT 11): the RTCP bandwidth the role may use.
    RtcpBandwidth {
        /// Applies to senders.
        sender: bool,
        /// Applies to receivers.
        receivers: bool,
        /// Bandwidth in kbit/s, 16.16 fixed point.
        bandwidth_kbps_16_16: u32,
    },
    /// Group and average RTCP packet size (SRBT 12): what receivers feed into RFC 3550's
    /// interval computation instead of their own member count.
    GroupAndAvgPacketSize {
        /// Average RTCP packet size in octets.
        avg_packet_size: u16,
        /// Receiver group size.
        group_size: u32,
    },
    /// Any other block, kept as its type and the octets after the 2-octet header.
    Unknown {
        /// The block type.
        srbt: Srbt,
        /// Body after SRBT and Length, `Length * 4 - 2` octets.
        data: Vec<u8>,
    },
}

impl SubReport {
    /// The block type code.
    pub fn srbt(&self) -> Srbt {
        match self {
            SubReport::Ipv4Target(_) => Srbt::IPV4_ADDRESS,
            SubReport::Ipv6Target(_) => Srbt::IPV6_ADDRESS,
            SubReport::DnsTarget { .. } => Srbt::DNS_NAME,
            SubReport::Loss(_) => Srbt::LOSS,
            SubReport::Jitter(_) => Srbt::JITTER,
            SubReport::Rtt(_) => Srbt::RTT,
            SubReport::CumulativeLoss(_) => Srbt::CUMULATIVE_LOSS,
            SubReport::Collisions(_) => Srbt::COLLISIONS,
            SubReport::GeneralStats { .. } => Srbt::GENERAL_STATS,
            SubReport::RtcpBandwidth { .. } => Srbt::RTCP_BANDWIDTH,
            SubReport::GroupAndAvgPacketSize { .. } => Srbt::GROUP_AND_AVG_PACKET_SIZE,
            SubReport::Unknown { srbt, .. } => *srbt,
        }
    }

    /// Encoded length in octets, header included (always a multiple of 4).
    pub fn encoded_len(&self) -> Result<usize, RsiError> {
        let srbt = self.srbt();
        let len = match self {
            SubReport::Ipv4Target(_) => 8,
            SubReport::Ipv6Target(_) => 20,
            SubReport::DnsTarget { name, .. } => (4 + name.len() + 1).div_ceil(4) * 4,
            SubReport::Loss(d)
            | SubReport::Jitter(d)
            | SubReport::Rtt(d)
            | SubReport::CumulativeLoss(d) => d.body_len(srbt)?,
            SubReport::Collisions(ssrcs) => 4 + 4 * ssrcs.len(),
            SubReport::GeneralStats { .. } => 12,
            SubReport::RtcpBandwidth { .. } | SubReport::GroupAndAvgPacketSize { .. } => 8,
            SubReport::Unknown { data, .. } => {
                if (data.len() + 2) % 4 != 0 {
                    return Err(RsiError::OutOfRange(
                        "unknown sub-report body must be 4n+2 octets",
                    ));
                }
                data.len() + 2
            }
        };
        if len > 255 * 4 {
            return Err(RsiError::TooLarge("sub-report block above 255 words"));
        }
        Ok(len)
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), RsiError> {
        let len = self.encoded_len()?;
        let start = out.len();
        out.push(self.srbt().0);
        out.push((len / 4) as u8);
        match self {
            SubReport::Ipv4Target(a) => {
                if a.port() == 0 {
                    return Err(RsiError::ZeroPort);
                }
                out.extend_from_slice(&a.port().to_be_bytes());
                out.extend_from_slice(&a.ip().octets());
            }
            SubReport::Ipv6Target(a) => {
                if a.port() == 0 {
                    return Err(RsiError::ZeroPort);
                }
                out.extend_from_slice(&a.port().to_be_bytes());
                out.extend_from_slice(&a.ip().octets());
            }
            SubReport::DnsTarget { port, name } => {
                if *port == 0 {
                    return Err(RsiError::ZeroPort);
                }
                if name.is_empty() || name.contains('\0') {
                    return Err(RsiError::BadDnsName);
                }
                out.extend_from_slice(&port.to_be_bytes());
                out.extend_from_slice(name.as_bytes());
            }
            SubReport::Loss(d)
            | SubReport::Jitter(d)
            | SubReport::Rtt(d)
            | SubReport::CumulativeLoss(d) => {
                let ndb = d.buckets.len() as u16;
                out.extend_from_slice(&((ndb << 4) | u16::from(d.mf)).to_be_bytes());
                out.extend_from_slice(&d.min.to_be_bytes());
                out.extend_from_slice(&d.max.to_be_bytes());
                let mut w = BitWriter::new(out);
                for &c in &d.buckets {
                    w.put(c, d.bucket_bits);
                }
            }
            SubReport::Collisions(ssrcs) => {
                out.extend_from_slice(&[0, 0]);
                for s in ssrcs {
                    out.extend_from_slice(&s.to_be_bytes());
                }
            }
            SubReport::GeneralStats {
                median_fraction_lost,
                highest_cumulative_lost,
                median_jitter,
            } => {
                if *highest_cumulative_lost > 0xff_ffff {
                    return Err(RsiError::OutOfRange(
                        "highest cumulative loss above 24 bits",
                    ));
                }
                out.extend_from_slice(&[0, 0, *median_fraction_lost]);
                out.extend_from_slice(&highest_cumulative_lost.to_be_bytes()[1..]);
                out.extend_from_slice(&median_jitter.to_be_bytes());
            }
            SubReport::RtcpBandwidth {
                sender,
                receivers,
                bandwidth_kbps_16_16,
            } => {
                let flags = (u16::from(*sender) << 15) | (u16::from(*receivers) << 14);
                out.extend_from_slice(&flags.to_be_bytes());
                out.extend_from_slice(&bandwidth_kbps_16_16.to_be_bytes());
            }
            SubReport::GroupAndAvgPacketSize {
                avg_packet_size,
                group_size,
            } => {
                out.extend_from_slice(&avg_packet_size.to_be_bytes());
                out.extend_from_slice(&group_size.to_be_bytes());
            }
            SubReport::Unknown { data, .. } => out.extend_from_slice(data),
        }
        out.resize(start + len, 0);
        Ok(())
    }

    /// Decode one block from `data`, which starts at the block's SRBT octet; returns the block
    /// and the octets it used.
    pub fn decode(data: &[u8]) -> Result<(SubReport, usize), RsiError> {
        if data.len() < 4 {
            return Err(RsiError::Truncated {
                need: 4,
                have: data.len(),
            });
        }
        let srbt = Srbt(data[0]);
        let words = data[1];
        let len = usize::from(words) * 4;
        let bad_len = RsiError::BadSubReportLength { srbt, words };
        if words == 0 {
            return Err(bad_len);
        }
        if data.len() < len {
            return Err(RsiError::Truncated {
                need: len,
                have: data.len(),
            });
        }
        let b = &data[..len];
        let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let report = match srbt {
            Srbt::IPV4_ADDRESS | Srbt::IPV6_ADDRESS | Srbt::DNS_NAME => {
                let port = u16_at(2);
                if port == 0 {
                    return Err(RsiError::ZeroPort);
                }
                match srbt {
                    Srbt::IPV4_ADDRESS if len == 8 => {
                        SubReport::Ipv4Target(SocketAddrV4::new(Ipv4Addr::from(u32_at(4)), port))
                    }
                    Srbt::IPV6_ADDRESS if len == 20 => {
                        let mut o = [0u8; 16];
                        o.copy_from_slice(&b[4..20]);
                        SubReport::Ipv6Target(SocketAddrV6::new(Ipv6Addr::from(o), port, 0, 0))
                    }
                    Srbt::DNS_NAME if len >= 8 => {
                        let raw = &b[4..];
                        let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
                        if end == 0 || raw[end..].iter().any(|&c| c != 0) {
                            return Err(RsiError::BadDnsName);
                        }
                        let name = std::str::from_utf8(&raw[..end])
                            .map_err(|_| RsiError::BadDnsName)?
                            .to_owned();
                        SubReport::DnsTarget { port, name }
                    }
                    _ => return Err(bad_len),
                }
            }
            Srbt::LOSS | Srbt::JITTER | Srbt::RTT | Srbt::CUMULATIVE_LOSS => {
                if len < 16 {
                    return Err(bad_len);
                }
                let w = u16_at(2);
                let ndb = usize::from(w >> 4);
                let mf = (w & 0xf) as u8;
                let bad = |reason| RsiError::BadDistribution { srbt, reason };
                if ndb == 0 {
                    return Err(bad("zero buckets"));
                }
                let bits_total = (len - 12) * 8;
                if bits_total % ndb != 0 {
                    return Err(bad("bucket area is not a whole number of buckets"));
                }
                let bucket_bits = bits_total / ndb;
                if !(1..=32).contains(&bucket_bits) {
                    return Err(bad("bucket width outside 1..=32 bits"));
                }
                let mut r = BitReader::new(&b[12..]);
                let buckets = (0..ndb).map(|_| r.get(bucket_bits as u8)).collect();
                let d = Distribution {
                    mf,
                    min: u32_at(4),
                    max: u32_at(8),
                    bucket_bits: bucket_bits as u8,
                    buckets,
                };
                match srbt {
                    Srbt::LOSS => SubReport::Loss(d),
                    Srbt::JITTER => SubReport::Jitter(d),
                    Srbt::RTT => SubReport::Rtt(d),
                    _ => SubReport::CumulativeLoss(d),
                }
            }
            Srbt::COLLISIONS => {
                if len < 8 {
                    return Err(bad_len);
                }
                SubReport::Collisions((4..len).step_by(4).map(u32_at).collect())
            }
            Srbt::GENERAL_STATS => {
                if len != 12 {
                    return Err(bad_len);
                }
                SubReport::GeneralStats {
                    median_fraction_lost: b[4],
                    highest_cumulative_lost: u32_at(4) & 0xff_ffff,
                    median_jitter: u32_at(8),
                }
            }
            Srbt::RTCP_BANDWIDTH => {
                if len != 8 {
                    return Err(bad_len);
                }
                let flags = u16_at(2);
                SubReport::RtcpBandwidth {
                    sender: flags & 0x8000 != 0,
                    receivers: flags & 0x4000 != 0,
                    bandwidth_kbps_16_16: u32_at(4),
                }
            }
            Srbt::GROUP_AND_AVG_PACKET_SIZE => {
                if len != 8 {
                    return Err(bad_len);
                }
                SubReport::GroupAndAvgPacketSize {
                    avg_packet_size: u16_at(2),
                    group_size: u32_at(4),
                }
            }
            _ => SubReport::Unknown {
                srbt,
                data: b[2..].to_vec(),
            },
        };
        Ok((report, len))
    }
}

/// An RSI packet (RFC 5760 section 7.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rsi {
    /// SSRC of the sender of this RSI (the distribution source, or the FT acting for it).
    pub ssrc: u32,
    /// SSRC of the media source the summary is about.
    pub summarized_ssrc: u32,
    /// NTP wallclock when the report was sent (RFC 3550 section 4 format).
    pub ntp: u64,
    /// Sub-report blocks in wire order.
    pub sub_reports: Vec<SubReport>,
}

impl Rsi {
    /// Encoded length in octets.
    pub fn encoded_len(&self) -> Result<usize, RsiError> {
        let mut len = RSI_HEADER_LEN;
        for s in &self.sub_reports {
            len += s.encoded_len()?;
        }
        if len > MAX_RTCP_LEN {
            return Err(RsiError::TooLarge("RSI packet above the RTCP length field"));
        }
        Ok(len)
    }

    /// Append the packet to `out`. On error nothing is appended.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), RsiError> {
        let len = self.encoded_len()?;
        let start = out.len();
        out.reserve(len);
        out.push(0x80);
        out.push(RSI.0);
        out.extend_from_slice(&((len / 4 - 1) as u16).to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(&self.summarized_ssrc.to_be_bytes());
        out.extend_from_slice(&self.ntp.to_be_bytes());
        for s in &self.sub_reports {
            if let Err(e) = s.encode(out) {
                out.truncate(start);
                return Err(e);
            }
        }
        debug_assert_eq!(out.len() - start, len);
        Ok(())
    }

    /// The packet as a new vector.
    pub fn to_vec(&self) -> Result<Vec<u8>, RsiError> {
        let mut v = Vec::new();
        self.encode(&mut v)?;
        Ok(v)
    }

    /// Decode exactly one RSI packet (header included) occupying all of `data`.
    pub fn decode(data: &[u8]) -> Result<Rsi, RsiError> {
        if data.len() < 4 {
            return Err(RsiError::Truncated {
                need: 4,
                have: data.len(),
            });
        }
        let version = data[0] >> 6;
        if version != 2 {
            return Err(RsiError::BadVersion(version));
        }
        if data[1] != RSI.0 {
            return Err(RsiError::NotRsi(data[1]));
        }
        let declared = (usize::from(u16::from_be_bytes([data[2], data[3]])) + 1) * 4;
        if declared != data.len() {
            return Err(RsiError::LengthMismatch {
                declared,
                actual: data.len(),
            });
        }
        let mut end = data.len();
        if data[0] & 0x20 != 0 {
            let pad = usize::from(data[end - 1]);
            if pad == 0 || pad % 4 != 0 || pad > end {
                return Err(RsiError::BadPadding);
            }
            end -= pad;
        }
        if end < RSI_HEADER_LEN {
            return Err(RsiError::Truncated {
                need: RSI_HEADER_LEN,
                have: end,
            });
        }
        let u32_at =
            |i: usize| u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
        let ntp = (u64::from(u32_at(12)) << 32) | u64::from(u32_at(16));
        let mut sub_reports = Vec::new();
        let mut off = RSI_HEADER_LEN;
        while off < end {
            let (s, used) = SubReport::decode(&data[off..end])?;
            sub_reports.push(s);
            off += used;
        }
        Ok(Rsi {
            ssrc: u32_at(4),
            summarized_ssrc: u32_at(8),
            ntp,
            sub_reports,
        })
    }

    /// Decode an RSI that `rtcp-types` handed over as an unknown packet of a compound.
    pub fn from_unknown(p: &rtcp_types::Unknown<'_>) -> Result<Rsi, RsiError> {
        Rsi::decode(p.data())
    }

    /// The first sub-report of a given type.
    pub fn find(&self, srbt: Srbt) -> Option<&SubReport> {
        self.sub_reports.iter().find(|s| s.srbt() == srbt)
    }
}

/// The property the fuzz target (`media-relay/fuzz`, `rsi_decode`) and the stable replay test
/// check: whatever decodes re-encodes, and the re-encoding decodes to the same value. Panics
/// when the property fails (that is a bug to report).
#[doc(hidden)]
pub fn fuzz_roundtrip(data: &[u8]) {
    if let Ok(rsi) = Rsi::decode(data) {
        let bytes = rsi.to_vec().expect("a decoded RSI re-encodes");
        assert_eq!(
            bytes.len(),
            rsi.encoded_len().expect("length of a decoded RSI")
        );
        let again = Rsi::decode(&bytes).expect("a re-encoded RSI decodes");
        assert_eq!(again, rsi, "decode(encode(decode(x))) != decode(x)");
    }
    // Sub-report decoding on its own, from any offset.
    let mut off = 0;
    while off < data.len() {
        match SubReport::decode(&data[off..]) {
            Ok((_, used)) => off += used.max(1),
            Err(_) => break,
        }
    }
}

/// Big-endian bit packer for distribution buckets.
struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    n: u32,
}

impl<'a> BitWriter<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        BitWriter { out, acc: 0, n: 0 }
    }

    fn put(&mut self, v: u32, bits: u8) {
        let bits = u32::from(bits);
        let mask = if bits == 32 {
            u64::from(u32::MAX)
        } else {
            (1u64 << bits) - 1
        };
        self.acc = (self.acc << bits) | (u64::from(v) & mask);
        self.n += bits;
        while self.n >= 8 {
            self.n -= 8;
            self.out.push((self.acc >> self.n) as u8);
        }
        self.acc &= (1u64 << self.n) - 1;
    }
}

/// Big-endian bit reader; reads past the end give zeros (callers check lengths first).
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    fn get(&mut self, bits: u8) -> u32 {
        let mut v: u64 = 0;
        for _ in 0..bits {
            let byte = self.data.get(self.pos / 8).copied().unwrap_or(0);
            let bit = (byte >> (7 - (self.pos % 8))) & 1;
            v = (v << 1) | u64::from(bit);
            self.pos += 1;
        }
        v as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_bucket_width_decodes() {
        // 3 buckets of 32 bits encoded by hand, then a 12-bit-width variant: NDB 8, 96 bits.
        let d = Distribution {
            mf: 2,
            min: 0,
            max: 4000,
            bucket_bits: 12,
            buckets: vec![1, 2, 3, 4095, 0, 7, 8, 9],
        };
        let s = SubReport::Jitter(d.clone());
        let mut out = Vec::new();
        s.encode(&mut out).unwrap();
        assert_eq!(out.len(), 12 + 12);
        let (back, used) = SubReport::decode(&out).unwrap();
        assert_eq!(used, out.len());
        assert_eq!(back, SubReport::Jitter(d));
    }

    #[test]
    fn narrowest_width_is_chosen() {
        assert_eq!(Distribution::new(0, 0, 255, vec![1; 4]).bucket_bits, 8);
        assert_eq!(Distribution::new(0, 0, 255, vec![300; 4]).bucket_bits, 16);
        assert_eq!(Distribution::new(0, 0, 255, vec![1; 3]).bucket_bits, 32);
        assert_eq!(
            Distribution::new(0, 0, 255, vec![70_000; 2]).bucket_bits,
            32
        );
    }
}
