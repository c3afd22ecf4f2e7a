//! SDP offer/answer (RFC 8866 syntax, RFC 3264 model), typed over the `sdp-types` crate.
//!
//! `sdp-types` does the line syntax (parse and CRLF serialisation); this module adds the
//! typed views the application server needs and the offer/answer sequencing:
//!
//! ```text
//!   bytes ──SdpOffer::parse──► SdpOffer ──negotiate(&Capabilities)──► Negotiation
//!                                 │                                        │
//!                                 └────────answer(&AnswerPolicy)───────────┴─answer(&AnswerTransport)──► SdpAnswer ──to_bytes──►
//!
//!   UAC:  OfferBuilder ──build──► SdpOffer ──to_bytes──►  ...  answer bytes ──offer.accept_answer──► SdpAnswer
//! ```
//!
//! An [`SdpAnswer`] can only be made from an [`SdpOffer`] (through [`Negotiation`]) or
//! checked against one ([`SdpOffer::accept_answer`]): the types carry the RFC 3264 sequence,
//! in the spirit of str0m's `SdpOffer`/`SdpPendingOffer`.
//!
//! Typed views ([`SessionDescription`], [`MediaSection`]) cover what IPTV signalling uses:
//! media kind, port, proto, payload formats with `a=rtpmap`/`a=fmtp` (static payload types
//! of RFC 3551 resolved), direction (session and media level, RFC 8866 section 6.7),
//! `c=` (IPv4/IPv6, unicast/multicast with TTL, RFC 8866 section 5.7), `a=rtcp`
//! (RFC 3605) and `a=rtcp-unicast` (RFC 5760 section 6). Everything else survives in the
//! underlying [`sdp_types::Session`].
//!
//! Bad input is a typed [`SdpError`], never a panic; input size, media count and format
//! count are bounded.

mod negotiate;

pub use negotiate::{
    AnswerPolicy, AnswerTransport, Capabilities, CodecSpec, MediaTransport, Negotiated,
    Negotiation, NegotiationError, OfferBuilder, OfferedMedia,
};
pub use sdp_types::Direction;

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Largest SDP body accepted (bytes). Real offers are a few hundred bytes.
pub const MAX_SDP_LEN: usize = 64 * 1024;
/// Most media descriptions (`m=` lines) accepted in one body.
pub const MAX_MEDIA: usize = 32;
/// Most payload formats accepted on one `m=` line.
pub const MAX_FORMATS: usize = 64;

/// Why an SDP body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SdpError {
    /// The body is larger than [`MAX_SDP_LEN`].
    #[error("SDP body too large ({0} bytes)")]
    TooLarge(usize),
    /// The line syntax is broken (RFC 8866 section 9), as reported by `sdp-types`.
    #[error("SDP syntax: {0}")]
    Syntax(#[from] sdp_types::ParserError),
    /// The description has no `m=` line.
    #[error("SDP has no media description (m= line)")]
    NoMedia,
    /// More than [`MAX_MEDIA`] media descriptions, or [`MAX_FORMATS`] formats on one.
    #[error("SDP has too many media descriptions or formats")]
    TooMany,
    /// A payload format of an RTP media line is not a number in 0..=127.
    #[error("media {media}: bad RTP payload format {token:?}")]
    BadFormat {
        /// Index of the `m=` line (0-based).
        media: usize,
        /// The offending token.
        token: String,
    },
    /// A `c=` line does not hold an address of its address type.
    #[error("bad connection address {value:?}")]
    BadConnection {
        /// The raw `c=` value.
        value: String,
    },
    /// A known attribute has a value that does not follow its grammar.
    #[error("bad a={name} value {value:?}")]
    BadAttribute {
        /// Attribute name.
        name: &'static str,
        /// The raw value.
        value: String,
    },
    /// An active media description has no `c=` at media or session level
    /// (RFC 8866 section 5.7).
    #[error("media {0} has no connection address")]
    MissingConnection(usize),
}

/// Media type of an `m=` line (RFC 8866 section 5.14). Open: unknown types survive.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// `video`
    Video,
    /// `audio`
    Audio,
    /// Anything else (`application`, `text`, ...), as written.
    Other(String),
}

impl MediaKind {
    /// Reads the media field of an `m=` line (case-insensitive).
    pub fn from_token(s: &str) -> Self {
        if s.eq_ignore_ascii_case("video") {
            Self::Video
        } else if s.eq_ignore_ascii_case("audio") {
            Self::Audio
        } else {
            Self::Other(s.to_owned())
        }
    }

    /// The token to write on an `m=` line.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Video => "video",
            Self::Audio => "audio",
            Self::Other(s) => s,
        }
    }
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Transport protocol of an `m=` line, kept as written (`RTP/AVP`, `RTP/AVPF`, `udp`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Proto(pub String);

impl Proto {
    /// RTP/AVP (RFC 3551).
    pub const RTP_AVP: &'static str = "RTP/AVP";
    /// RTP/AVPF (RFC 4585).
    pub const RTP_AVPF: &'static str = "RTP/AVPF";

    /// Whether the payload formats are RTP payload types (any `RTP/...` profile, including
    /// `UDP/TLS/RTP/SAVPF` and friends).
    pub fn is_rtp(&self) -> bool {
        self.0
            .split('/')
            .any(|part| part.eq_ignore_ascii_case("RTP"))
    }

    /// The protocol as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One RTP payload format of a media line: payload type plus `a=rtpmap` and `a=fmtp`
/// (RFC 8866 sections 6.6 and 6.15), or the RFC 3551 static assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    /// RTP payload type (0..=127).
    pub payload_type: u8,
    /// Encoding name as written (`H264`, `opus`, `MP2T`, ...); compare case-insensitively.
    /// Empty for a dynamic payload type without `a=rtpmap`.
    pub encoding: String,
    /// RTP clock rate in Hz (0 if unknown).
    pub clock_rate: u32,
    /// Audio channel count (the rtpmap encoding parameter), if given.
    pub channels: Option<u16>,
    /// `a=fmtp` parameters, in order, names trimmed (`packetization-mode=1; a=b`).
    pub fmtp: FmtpParams,
}

impl Codec {
    /// A codec without format parameters.
    pub fn new(payload_type: u8, encoding: &str, clock_rate: u32, channels: Option<u16>) -> Self {
        Self {
            payload_type,
            encoding: encoding.to_owned(),
            clock_rate,
            channels,
            fmtp: Vec::new(),
        }
    }

    /// The RFC 3551 (tables 4 and 5) static assignment for `pt`, if any.
    pub fn static_payload(pt: u8) -> Option<Self> {
        let (name, rate, ch) = match pt {
            0 => ("PCMU", 8000, Some(1)),
            3 => ("GSM", 8000, Some(1)),
            4 => ("G723", 8000, Some(1)),
            5 => ("DVI4", 8000, Some(1)),
            6 => ("DVI4", 16000, Some(1)),
            7 => ("LPC", 8000, Some(1)),
            8 => ("PCMA", 8000, Some(1)),
            9 => ("G722", 8000, Some(1)),
            10 => ("L16", 44100, Some(2)),
            11 => ("L16", 44100, Some(1)),
            12 => ("QCELP", 8000, Some(1)),
            13 => ("CN", 8000, Some(1)),
            14 => ("MPA", 90000, None),
            15 => ("G728", 8000, Some(1)),
            16 => ("DVI4", 11025, Some(1)),
            17 => ("DVI4", 22050, Some(1)),
            18 => ("G729", 8000, Some(1)),
            25 => ("CelB", 90000, None),
            26 => ("JPEG", 90000, None),
            28 => ("nv", 90000, None),
            31 => ("H261", 90000, None),
            32 => ("MPV", 90000, None),
            33 => ("MP2T", 90000, None),
            34 => ("H263", 90000, None),
            _ => return None,
        };
        Some(Self::new(pt, name, rate, ch))
    }

    /// Whether the encoding name is `name` (case-insensitive, RFC 4855 section 3).
    pub fn is(&self, name: &str) -> bool {
        self.encoding.eq_ignore_ascii_case(name)
    }

    /// The value of fmtp parameter `name` (case-insensitive); `Some(None)` for a flag.
    pub fn fmtp_param(&self, name: &str) -> Option<Option<&str>> {
        self.fmtp
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// H.264 `packetization-mode` (RFC 6184 section 8.1); absent means 0.
    pub fn h264_packetization_mode(&self) -> Option<u8> {
        if !self.is("H264") {
            return None;
        }
        match self.fmtp_param("packetization-mode") {
            None => Some(0),
            Some(v) => v.and_then(|v| v.trim().parse().ok()),
        }
    }

    /// H.264 `profile-level-id` as (profile_idc, profile-iop, level_idc)
    /// (RFC 6184 section 8.1); absent means 42 00 1E (baseline, level 3.0).
    pub fn h264_profile_level_id(&self) -> Option<(u8, u8, u8)> {
        if !self.is("H264") {
            return None;
        }
        let hex = match self.fmtp_param("profile-level-id") {
            None => return Some((0x42, 0x00, 0x1e)),
            Some(v) => v?.trim(),
        };
        if hex.len() != 6 || !hex.is_ascii() {
            return None;
        }
        let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
        Some((byte(0)?, byte(2)?, byte(4)?))
    }

    /// `a=rtpmap` value for this codec (`96 H264/90000`, `0 PCMU/8000`, `97 opus/48000/2`).
    pub fn rtpmap_value(&self) -> String {
        match self.channels {
            Some(ch) if ch != 1 || self.is("opus") => format!(
                "{} {}/{}/{}",
                self.payload_type, self.encoding, self.clock_rate, ch
            ),
            _ => format!(
                "{} {}/{}",
                self.payload_type, self.encoding, self.clock_rate
            ),
        }
    }

    /// `a=fmtp` value (`96 packetization-mode=1;profile-level-id=42e01f`), if any params.
    pub fn fmtp_value(&self) -> Option<String> {
        if self.fmtp.is_empty() {
            return None;
        }
        let params: Vec<String> = self
            .fmtp
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => k.clone(),
            })
            .collect();
        Some(format!("{} {}", self.payload_type, params.join(";")))
    }
}

/// A parsed `c=` address (RFC 8866 section 5.7): IPv4/IPv6, with the IPv4 multicast TTL
/// and the multicast address count where given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionAddr {
    /// The address.
    pub ip: IpAddr,
    /// IPv4 multicast TTL (`/ttl`).
    pub ttl: Option<u8>,
    /// Number of consecutive multicast addresses (`/n`), if given.
    pub count: Option<u8>,
}

impl ConnectionAddr {
    /// A unicast address.
    pub fn unicast(ip: IpAddr) -> Self {
        Self {
            ip,
            ttl: None,
            count: None,
        }
    }

    /// Whether this is a multicast group.
    pub fn is_multicast(&self) -> bool {
        self.ip.is_multicast()
    }

    fn from_sdp(c: &sdp_types::Connection) -> Result<Self, SdpError> {
        let bad = || SdpError::BadConnection {
            value: format!("{} {}", c.addrtype.as_str(), c.connection_address),
        };
        let a = c.try_address().map_err(|_| bad())?;
        // The address must be of the declared address type.
        match (&c.addrtype, a.ip) {
            (sdp_types::AddrType::Ip4, IpAddr::V4(_))
            | (sdp_types::AddrType::Ip6, IpAddr::V6(_)) => {}
            _ => return Err(bad()),
        }
        // A TTL is only meaningful on IPv4 multicast (RFC 8866 section 5.7).
        if a.ttl.is_some() && !a.ip.is_multicast() {
            return Err(bad());
        }
        Ok(Self {
            ip: a.ip,
            ttl: a.ttl,
            count: a.count,
        })
    }

    /// The `c=` line contents for this address.
    pub fn to_sdp(&self) -> sdp_types::Connection {
        let mut c = sdp_types::Connection::from_ip_addr_ttl(self.ip, self.ttl);
        if let Some(n) = self.count {
            c.connection_address.push_str(&format!("/{n}"));
        }
        c
    }
}

impl fmt::Display for ConnectionAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.ip)?;
        if let Some(t) = self.ttl {
            write!(f, "/{t}")?;
        }
        if let Some(n) = self.count {
            write!(f, "/{n}")?;
        }
        Ok(())
    }
}

/// `a=rtcp` (RFC 3605 section 2.1): the RTCP port and, optionally, address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcpAttr {
    /// RTCP port.
    pub port: u16,
    /// RTCP address; `None` means the media's connection address.
    pub addr: Option<IpAddr>,
}

impl RtcpAttr {
    fn parse(value: &str) -> Result<Self, SdpError> {
        let bad = || SdpError::BadAttribute {
            name: "rtcp",
            value: value.to_owned(),
        };
        let r: sdp_types::Rtcp = value.trim().parse().map_err(|_| bad())?;
        let addr = match r.try_address() {
            None => None,
            Some(Ok(a)) => Some(a.ip),
            Some(Err(_)) => return Err(bad()),
        };
        Ok(Self { port: r.port, addr })
    }

    /// The attribute value (`5005` or `5005 IN IP4 192.0.2.1`).
    pub fn value(&self) -> String {
        match self.addr {
            None => sdp_types::Rtcp::with_port(self.port).to_string(),
            Some(ip) => sdp_types::Rtcp::with_ip_addr(self.port, ip).to_string(),
        }
    }
}

/// Mode of `a=rtcp-unicast` (RFC 5760 section 6.1). Open: unknown modes survive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpUnicastMode {
    /// `reflection`: the media sender reflects receivers' RTCP to the group
    /// (simple feedback model, RFC 5760 section 3.3.1).
    Reflection,
    /// `rsi`: the sender / feedback target sends Receiver Summary Information
    /// (distribution source feedback summary model, RFC 5760 section 3.3.2).
    Rsi,
    /// Any other token (for example the `aggr` of drafts), as written.
    Other(String),
}

impl RtcpUnicastMode {
    /// The token as written in the attribute.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Reflection => "reflection",
            Self::Rsi => "rsi",
            Self::Other(s) => s,
        }
    }
}

/// `a=rtcp-unicast:<mode> *(SP token)` (RFC 5760 section 6.1). The feedback target
/// address itself travels in `a=rtcp` (RFC 5760 section 6.2 / RFC 3605).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtcpUnicast {
    /// Feedback model.
    pub mode: RtcpUnicastMode,
    /// Further tokens after the mode, kept verbatim.
    pub params: Vec<String>,
}

impl RtcpUnicast {
    /// `rsi` without parameters.
    pub fn rsi() -> Self {
        Self {
            mode: RtcpUnicastMode::Rsi,
            params: Vec::new(),
        }
    }

    fn parse(value: &str) -> Result<Self, SdpError> {
        // Tolerates the leading space that live555-era servers write (`a=rtcp-unicast: reflection`).
        let mut tokens = value.split_ascii_whitespace();
        let mode = tokens.next().ok_or_else(|| SdpError::BadAttribute {
            name: "rtcp-unicast",
            value: value.to_owned(),
        })?;
        let mode = if mode.eq_ignore_ascii_case("reflection") {
            RtcpUnicastMode::Reflection
        } else if mode.eq_ignore_ascii_case("rsi") {
            RtcpUnicastMode::Rsi
        } else {
            RtcpUnicastMode::Other(mode.to_owned())
        };
        Ok(Self {
            mode,
            params: tokens.take(16).map(str::to_owned).collect(),
        })
    }

    /// The attribute value.
    pub fn value(&self) -> String {
        let mut s = self.mode.as_str().to_owned();
        for p in &self.params {
            s.push(' ');
            s.push_str(p);
        }
        s
    }
}

/// The `<ssrc-id>` of an `a=ssrc` value (RFC 5576 section 4.1: `ssrc-id SP attribute`,
/// a 32-bit decimal number); `None` when it is not one.
fn parse_ssrc_id(value: &str) -> Option<u32> {
    let id = value.split_ascii_whitespace().next()?;
    if id.len() > 10 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

/// Typed view of one media description (`m=` section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSection {
    /// Position among the `m=` lines (0-based); RFC 3264 pairs offer and answer by it.
    pub index: usize,
    /// Media type.
    pub kind: MediaKind,
    /// Transport port; 0 means the stream is rejected / disabled (RFC 3264 section 6).
    pub port: u16,
    /// Port count (`m=video 5004/2 ...`), if given.
    pub num_ports: Option<u16>,
    /// Transport protocol.
    pub proto: Proto,
    /// The format tokens of the `m=` line, in order.
    pub formats: Vec<String>,
    /// For RTP protocols: one entry per format, in `m=` order (offerer preference).
    pub codecs: Vec<Codec>,
    /// Direction at media level, if written.
    pub direction_attr: Option<Direction>,
    /// Effective direction: media level, else session level, else `sendrecv`
    /// (RFC 8866 section 6.7).
    pub direction: Direction,
    /// Effective connection: first media-level `c=`, else the session `c=`.
    pub connection: Option<ConnectionAddr>,
    /// `a=rtcp` (RFC 3605).
    pub rtcp: Option<RtcpAttr>,
    /// Effective `a=rtcp-unicast` (media level, else session level).
    pub rtcp_unicast: Option<RtcpUnicast>,
    /// `a=rtcp-mux` present (RFC 5761).
    pub rtcp_mux: bool,
    /// `a=mid` (RFC 5888), if any.
    pub mid: Option<String>,
    /// The first `a=ssrc` source of the section (RFC 5576 section 4.1): the SSRC the
    /// sender of this description uses for the stream, if it says.
    pub ssrc: Option<u32>,
}

impl MediaSection {
    /// Whether the stream is rejected or disabled (port 0, RFC 3264 section 6).
    pub fn is_rejected(&self) -> bool {
        self.port == 0
    }

    /// Where RTP for this stream goes (connection address and port).
    pub fn rtp_addr(&self) -> Option<SocketAddr> {
        if self.port == 0 {
            return None;
        }
        Some(SocketAddr::new(self.connection?.ip, self.port))
    }

    /// Where RTCP for this stream goes: `a=rtcp` if present (RFC 3605), the RTP address
    /// with `a=rtcp-mux`, else RTP port + 1 (RFC 3550 section 11).
    pub fn rtcp_addr(&self) -> Option<SocketAddr> {
        let rtp = self.rtp_addr()?;
        if let Some(r) = self.rtcp {
            return Some(SocketAddr::new(r.addr.unwrap_or(rtp.ip()), r.port));
        }
        if self.rtcp_mux {
            return Some(rtp);
        }
        Some(SocketAddr::new(rtp.ip(), rtp.port().checked_add(1)?))
    }

    /// The codec with payload type `pt`, if listed.
    pub fn codec(&self, pt: u8) -> Option<&Codec> {
        self.codecs.iter().find(|c| c.payload_type == pt)
    }
}

/// Typed view over a whole SDP body, shared by offers and answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    raw: sdp_types::Session,
    /// Session-level direction attribute, if written.
    pub session_direction: Option<Direction>,
    /// Session-level `c=`, if present.
    pub session_connection: Option<ConnectionAddr>,
    /// Media sections in order.
    pub media: Vec<MediaSection>,
}

fn direction_of(attrs: &[sdp_types::Attribute]) -> Option<Direction> {
    attrs
        .iter()
        .rev()
        .find_map(|a| a.attribute.parse::<Direction>().ok())
}

/// `a=fmtp` parameters: `(name, value)`, value `None` for a flag.
pub type FmtpParams = Vec<(String, Option<String>)>;

fn parse_fmtp(value: &str) -> Option<(u8, FmtpParams)> {
    let value = value.trim();
    let (pt, rest) = value.split_once(' ').unwrap_or((value, ""));
    let pt: u8 = pt.parse().ok()?;
    let params = rest
        .split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .take(64)
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.trim().to_owned(), Some(v.trim().to_owned())),
            None => (p.to_owned(), None),
        })
        .collect();
    Some((pt, params))
}

fn parse_rtpmap(value: &str) -> Option<Codec> {
    let value = value.trim();
    let (pt, rest) = value.split_once(' ')?;
    let pt: u8 = pt.parse().ok()?;
    if pt > 127 {
        return None;
    }
    let mut parts = rest.trim().splitn(3, '/');
    let name = parts.next()?.trim();
    let rate: u32 = parts.next()?.trim().parse().ok()?;
    let channels = match parts.next() {
        None => None,
        Some(c) => Some(c.trim().parse().ok()?),
    };
    if name.is_empty() {
        return None;
    }
    Some(Codec::new(pt, name, rate, channels))
}

impl SessionDescription {
    /// Parses and checks an SDP body.
    pub fn parse(data: &[u8]) -> Result<Self, SdpError> {
        if data.len() > MAX_SDP_LEN {
            return Err(SdpError::TooLarge(data.len()));
        }
        let raw = sdp_types::Session::parse(data)?;
        Self::from_session(raw)
    }

    /// Builds the typed view over an already parsed session.
    pub fn from_session(raw: sdp_types::Session) -> Result<Self, SdpError> {
        if raw.medias.is_empty() {
            return Err(SdpError::NoMedia);
        }
        if raw.medias.len() > MAX_MEDIA {
            return Err(SdpError::TooMany);
        }
        let session_direction = direction_of(&raw.attributes);
        let session_connection = raw
            .connection
            .as_ref()
            .map(ConnectionAddr::from_sdp)
            .transpose()?;
        let session_unicast = raw
            .get_first_attribute_value("rtcp-unicast")
            .map(|v| RtcpUnicast::parse(v.unwrap_or("")))
            .transpose()?;
        let mut media = Vec::with_capacity(raw.medias.len());
        for (index, m) in raw.medias.iter().enumerate() {
            media.push(Self::media_view(
                index,
                m,
                session_direction,
                session_connection,
                session_unicast.as_ref(),
            )?);
        }
        Ok(Self {
            raw,
            session_direction,
            session_connection,
            media,
        })
    }

    fn media_view(
        index: usize,
        m: &sdp_types::Media,
        session_direction: Option<Direction>,
        session_connection: Option<ConnectionAddr>,
        session_unicast: Option<&RtcpUnicast>,
    ) -> Result<MediaSection, SdpError> {
        let kind = MediaKind::from_token(&m.media);
        let proto = Proto(m.proto.clone());
        let formats: Vec<String> = m.fmt.split_ascii_whitespace().map(str::to_owned).collect();
        if formats.len() > MAX_FORMATS {
            return Err(SdpError::TooMany);
        }
        let mut codecs = Vec::new();
        if proto.is_rtp() {
            let rtpmaps: Vec<Codec> = m
                .get_attribute_values("rtpmap")
                .filter_map(|v| v.and_then(parse_rtpmap))
                .collect();
            for token in &formats {
                let pt = match token.parse::<u8>() {
                    Ok(pt) if pt <= 127 => pt,
                    _ => {
                        return Err(SdpError::BadFormat {
                            media: index,
                            token: token.clone(),
                        })
                    }
                };
                let mut codec = rtpmaps
                    .iter()
                    .find(|c| c.payload_type == pt)
                    .cloned()
                    .or_else(|| Codec::static_payload(pt))
                    .unwrap_or_else(|| Codec::new(pt, "", 0, None));
                // RFC 8866 section 6.6: for audio, omitted encoding parameters mean one
                // channel; normalised so `PCMU/8000` and static PT 0 compare equal.
                if kind == MediaKind::Audio
                    && codec.channels.is_none()
                    && !codec.encoding.is_empty()
                {
                    codec.channels = Some(1);
                }
                if let Some((_, params)) = m
                    .get_attribute_values("fmtp")
                    .filter_map(|v| v.and_then(parse_fmtp))
                    .find(|(fpt, _)| *fpt == pt)
                {
                    codec.fmtp = params;
                }
                codecs.push(codec);
            }
        }
        let connection = match m.connections.first() {
            Some(c) => Some(ConnectionAddr::from_sdp(c)?),
            None => session_connection,
        };
        if connection.is_none() && m.port != 0 {
            return Err(SdpError::MissingConnection(index));
        }
        let rtcp = m
            .get_first_attribute_value("rtcp")
            .map(|v| RtcpAttr::parse(v.unwrap_or("")))
            .transpose()?;
        let rtcp_unicast = match m.get_first_attribute_value("rtcp-unicast") {
            Some(v) => Some(RtcpUnicast::parse(v.unwrap_or(""))?),
            None => session_unicast.cloned(),
        };
        let direction_attr = direction_of(&m.attributes);
        Ok(MediaSection {
            index,
            kind,
            port: m.port,
            num_ports: m.num_ports,
            proto,
            formats,
            codecs,
            direction_attr,
            direction: direction_attr.or(session_direction).unwrap_or_default(),
            connection,
            rtcp,
            rtcp_unicast,
            rtcp_mux: m.has_attribute("rtcp-mux"),
            mid: m
                .get_first_attribute_value("mid")
                .flatten()
                .map(str::to_owned),
            ssrc: m
                .get_attribute_values("ssrc")
                .flatten()
                .find_map(parse_ssrc_id),
        })
    }

    /// The underlying `sdp-types` session (all lines, including ones not typed here).
    pub fn raw(&self) -> &sdp_types::Session {
        &self.raw
    }

    /// `o=` session id.
    pub fn session_id(&self) -> &str {
        &self.raw.origin.sess_id
    }

    /// `o=` session version.
    pub fn session_version(&self) -> u64 {
        self.raw.origin.sess_version
    }

    /// `s=` session name.
    pub fn session_name(&self) -> &str {
        &self.raw.session_name
    }

    /// Serialises with CRLF line ends (RFC 8866 section 5).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        // Writing into a Vec cannot fail.
        let _ = self.raw.write(&mut out);
        out
    }
}

/// An SDP offer (RFC 3264 section 5): received from a UAC, or built by [`OfferBuilder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpOffer(SessionDescription);

impl SdpOffer {
    /// Parses an offer (the body of an INVITE, re-INVITE or UPDATE).
    pub fn parse(data: &[u8]) -> Result<Self, SdpError> {
        SessionDescription::parse(data).map(Self)
    }

    /// The typed view.
    pub fn description(&self) -> &SessionDescription {
        &self.0
    }

    /// Media sections in order.
    pub fn media(&self) -> &[MediaSection] {
        &self.0.media
    }

    /// Serialises the offer (CRLF lines).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.to_bytes()
    }
}

impl std::ops::Deref for SdpOffer {
    type Target = SessionDescription;
    fn deref(&self) -> &SessionDescription {
        &self.0
    }
}

/// An SDP answer (RFC 3264 section 6). Made only by [`Negotiation::answer`] /
/// [`SdpOffer::answer`] (our side answers) or [`SdpOffer::accept_answer`] (the peer
/// answered our offer); either way it has been checked against its offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpAnswer {
    desc: SessionDescription,
    negotiated: Vec<Negotiated>,
}

impl SdpAnswer {
    /// The typed view.
    pub fn description(&self) -> &SessionDescription {
        &self.desc
    }

    /// Media sections in order (same count and order as the offer).
    pub fn media(&self) -> &[MediaSection] {
        &self.desc.media
    }

    /// The accepted streams: codec, both sides' addresses, direction of the answerer.
    pub fn negotiated(&self) -> &[Negotiated] {
        &self.negotiated
    }

    /// Serialises the answer (CRLF lines).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.desc.to_bytes()
    }
}

impl std::ops::Deref for SdpAnswer {
    type Target = SessionDescription;
    fn deref(&self) -> &SessionDescription {
        &self.desc
    }
}
