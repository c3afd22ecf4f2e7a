//! RFC 3264 offer/answer: answering an offer ([`Negotiation`]), building an offer
//! ([`OfferBuilder`]) and checking the peer's answer ([`SdpOffer::accept_answer`]).

use std::net::{IpAddr, SocketAddr};

use super::{
    Codec, ConnectionAddr, Direction, FmtpParams, MediaKind, MediaSection, Proto, RtcpAttr,
    RtcpUnicast, SdpAnswer, SdpError, SdpOffer, SessionDescription,
};

/// Why an offer could not be answered, or an answer does not fit its offer.
#[derive(Debug, thiserror::Error)]
pub enum NegotiationError {
    /// Media types we serve were offered, but with no codec in common
    /// (the AS answers 488 with `Warning: 305`).
    #[error("no common codec")]
    NoCommonCodec,
    /// None of the offered media types (or transport protocols) is one we serve
    /// (488 with `Warning: 304`).
    #[error("no offered media type is available")]
    UnsupportedMedia,
    /// The offered direction cannot be answered with ours (RFC 3264 section 6.1), e.g. a
    /// viewer's join offered `sendonly`; or an answer's direction does not fit its offer.
    #[error("direction conflict: offered {offered}, wanted {wanted}")]
    DirectionConflict {
        /// Direction in the offer.
        offered: Direction,
        /// Direction we (or the answer) wanted.
        wanted: Direction,
    },
    /// The SDP body itself is broken.
    #[error("malformed SDP: {0}")]
    Malformed(#[from] SdpError),
    /// The peer's answer breaks RFC 3264 section 6 (m-line count/order, unknown formats).
    #[error("answer does not match offer: {0}")]
    AnswerMismatch(String),
    /// The caller's policy cannot produce an answer (for example no local address).
    #[error("bad answer policy: {0}")]
    Policy(&'static str),
}

impl NegotiationError {
    /// The RFC 3261 section 20.43 warn-code and text to put in a `Warning` header of the
    /// 488 response, where one fits.
    pub fn warning(&self) -> Option<(u16, &'static str)> {
        match self {
            Self::NoCommonCodec => Some((305, "Incompatible media format")),
            Self::UnsupportedMedia => Some((304, "Media type not available")),
            Self::DirectionConflict { .. } => Some((399, "Media direction not acceptable")),
            Self::Malformed(_) | Self::AnswerMismatch(_) | Self::Policy(_) => None,
        }
    }
}

/// A codec the local side (AS / relay / UE) can handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecSpec {
    /// Media type it belongs to.
    pub kind: MediaKind,
    /// Encoding name (case-insensitive match).
    pub encoding: String,
    /// Clock rate; 0 matches any.
    pub clock_rate: u32,
    /// Channel count; `None` matches any. An rtpmap without channels means 1 (RFC 8866 6.6).
    pub channels: Option<u16>,
    /// H.264 only: accepted `packetization-mode` values (RFC 6184 section 8.1), most
    /// preferred first: of several offered payload types this spec accepts, the answer takes
    /// the one with the most preferred mode (offer order among equals). Empty = any.
    pub packetization_modes: Vec<u8>,
    /// Format parameters written when this codec is offered by [`OfferBuilder`].
    pub fmtp: FmtpParams,
}

impl CodecSpec {
    fn new(kind: MediaKind, encoding: &str, clock_rate: u32, channels: Option<u16>) -> Self {
        Self {
            kind,
            encoding: encoding.to_owned(),
            clock_rate,
            channels,
            packetization_modes: Vec::new(),
            fmtp: Vec::new(),
        }
    }

    /// H.264/90000 (RFC 6184) as a receiver takes it: packetization modes 1 and 0, mode 1
    /// preferred; offered with `packetization-mode=1;profile-level-id=42e01f`. A mode-0
    /// stream (single NAL units) is also valid mode 1, so a relay may forward it to viewers
    /// that negotiated mode 1.
    pub fn h264() -> Self {
        let mut s = Self::new(MediaKind::Video, "H264", 90000, None);
        s.packetization_modes = vec![1, 0];
        s.fmtp = vec![
            ("packetization-mode".into(), Some("1".into())),
            ("profile-level-id".into(), Some("42e01f".into())),
        ];
        s
    }

    /// H.264/90000 as the relay sends it to viewers: packetization mode 1 only. The relay
    /// fragments NAL units larger than the MTU into FU-A packets (RFC 6184 section 5.8),
    /// which mode 1 allows and mode 0 (single NAL units only, section 6.2) does not
    /// (section 6.3); an offer with only mode-0 H.264 has no H.264 in common with it.
    pub fn h264_mode1() -> Self {
        let mut s = Self::h264();
        s.packetization_modes = vec![1];
        s
    }

    /// How much this spec wants `codec` (0 = most), given that it [matches](Self::matches).
    fn preference(&self, codec: &Codec) -> usize {
        codec
            .h264_packetization_mode()
            .and_then(|m| self.packetization_modes.iter().position(|p| *p == m))
            .unwrap_or(0)
    }

    /// MPEG-2 transport stream, MP2T/90000 (RFC 2250, static payload type 33).
    pub fn mp2t() -> Self {
        Self::new(MediaKind::Video, "MP2T", 90000, None)
    }

    /// G.711 mu-law, PCMU/8000 (static payload type 0).
    pub fn pcmu() -> Self {
        Self::new(MediaKind::Audio, "PCMU", 8000, Some(1))
    }

    /// G.711 A-law, PCMA/8000 (static payload type 8).
    pub fn pcma() -> Self {
        Self::new(MediaKind::Audio, "PCMA", 8000, Some(1))
    }

    /// Opus, always `opus/48000/2` in SDP (RFC 7587 section 7).
    pub fn opus() -> Self {
        Self::new(MediaKind::Audio, "opus", 48000, Some(2))
    }

    /// AAC in MPEG4-GENERIC (RFC 3640) at `rate` Hz with `channels`.
    pub fn aac(rate: u32, channels: u16) -> Self {
        Self::new(MediaKind::Audio, "MPEG4-GENERIC", rate, Some(channels))
    }

    /// Linear PCM, L16 (RFC 3551 section 4.5.11).
    pub fn l16(rate: u32, channels: u16) -> Self {
        Self::new(MediaKind::Audio, "L16", rate, Some(channels))
    }

    /// Whether an offered codec on a media line of `kind` is this one.
    pub fn matches(&self, kind: &MediaKind, codec: &Codec) -> bool {
        if &self.kind != kind || !codec.is(&self.encoding) {
            return false;
        }
        if self.clock_rate != 0 && codec.clock_rate != self.clock_rate {
            return false;
        }
        if let Some(ch) = self.channels {
            if codec.channels.unwrap_or(1) != ch {
                return false;
            }
        }
        if !self.packetization_modes.is_empty() {
            match codec.h264_packetization_mode() {
                Some(m) if self.packetization_modes.contains(&m) => {}
                _ => return false,
            }
        }
        true
    }

    fn to_codec(&self, pt: u8) -> Codec {
        let mut c = Codec::new(pt, &self.encoding, self.clock_rate, self.channels);
        c.fmtp = self.fmtp.clone();
        c
    }
}

/// What the local side supports, for choosing codecs and directions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// Our direction: `sendonly` when a viewer joins (the relay sends), `recvonly` when a
    /// producer pushes a personal channel.
    pub direction: Direction,
    /// Codecs we handle, any media kinds; a kind with none here is rejected.
    pub codecs: Vec<CodecSpec>,
    /// Answer only the offerer's most preferred common codec per stream (the relay sends
    /// one payload type). Otherwise all common codecs, in offer order.
    pub single_codec: bool,
}

/// Local RTP transport of one stream in the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaTransport {
    /// RTP port on the relay.
    pub rtp_port: u16,
    /// `a=rtcp` to write (RFC 3605), if RTCP is not at `rtp_port + 1`.
    pub rtcp: Option<RtcpAttr>,
    /// SSRC the relay sends this stream with: written as `a=ssrc:<ssrc> cname:<cname>`
    /// (RFC 5576 section 4.1) with [`AnswerTransport::cname`], so the peer knows the
    /// stream before its first packet. `None`: no `a=ssrc` line.
    pub ssrc: Option<u32>,
}

/// The relay-side transport and session-level fields of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerTransport {
    /// Local addresses; the first of the offer's address family is used, else the first.
    pub addresses: Vec<IpAddr>,
    /// Transport for a video stream; `None` rejects video.
    pub video: Option<MediaTransport>,
    /// Transport for an audio stream; `None` rejects audio.
    pub audio: Option<MediaTransport>,
    /// RFC 5760 feedback target: writes `a=rtcp-unicast:rsi` and points each stream's
    /// `a=rtcp` at this address (RFC 5760 sections 6.1 and 6.2).
    pub feedback_target: Option<SocketAddr>,
    /// `o=` sess-id (chosen by the caller; no randomness in here).
    pub session_id: u64,
    /// `o=` sess-version.
    pub session_version: u64,
    /// `s=` session name (`-` if empty).
    pub session_name: String,
    /// RTCP CNAME of the sender (RFC 3550 section 6.5.1) for the `a=ssrc` lines of streams
    /// with a [`MediaTransport::ssrc`] (RFC 5576 section 6.1: every source has a `cname`);
    /// `-` when `None`.
    pub cname: Option<String>,
}

impl AnswerTransport {
    fn for_kind(&self, kind: &MediaKind) -> Option<MediaTransport> {
        match kind {
            MediaKind::Video => self.video,
            MediaKind::Audio => self.audio,
            MediaKind::Other(_) => None,
        }
    }

    fn address_for(&self, family_of: Option<IpAddr>) -> Option<IpAddr> {
        let want_v6 = family_of.map(|a| a.is_ipv6());
        self.addresses
            .iter()
            .copied()
            .find(|a| Some(a.is_ipv6()) == want_v6)
            .or_else(|| self.addresses.first().copied())
    }
}

/// Everything an answer needs: what we support and where the relay listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerPolicy {
    /// Codecs and direction.
    pub caps: Capabilities,
    /// Addresses, ports, feedback target, `o=`/`s=` fields.
    pub transport: AnswerTransport,
}

/// One accepted stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Index of the `m=` line.
    pub index: usize,
    /// Media type.
    pub kind: MediaKind,
    /// The chosen codec, with the offerer's payload type number.
    pub codec: Codec,
    /// All accepted codecs (the chosen one first).
    pub codecs: Vec<Codec>,
    /// The answerer's direction for this stream.
    pub direction: Direction,
    /// Whether the stream is multicast (RFC 3264 section 6.2).
    pub multicast: bool,
    /// Offerer's RTP address.
    pub offerer_rtp: Option<SocketAddr>,
    /// Offerer's RTCP address.
    pub offerer_rtcp: Option<SocketAddr>,
    /// Answerer's RTP address (known once the answer exists).
    pub answerer_rtp: Option<SocketAddr>,
    /// Answerer's RTCP address (known once the answer exists).
    pub answerer_rtcp: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reject {
    Disabled,
    Unsupported,
    NoCodec,
    Direction(Direction, Direction),
}

/// An offer with codecs and directions chosen, waiting for the relay's transport.
/// Made by [`SdpOffer::negotiate`]; turned into an [`SdpAnswer`] by [`Negotiation::answer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiation {
    offer: SdpOffer,
    streams: Vec<Result<Negotiated, Reject>>,
}

/// RFC 3264 section 6.1: the answerer's direction for a unicast stream, or `None` when
/// `ours` and the offer cannot meet (both send, both receive).
fn answer_direction(offered: Direction, ours: Direction) -> Option<Direction> {
    if offered == Direction::Inactive || ours == Direction::Inactive {
        return Some(Direction::Inactive);
    }
    match ours.intersect_with_remote(offered) {
        Direction::Inactive => None,
        d => Some(d),
    }
}

/// RFC 3264 section 6.2: a multicast stream is answered with the mirrored direction,
/// which our own direction must allow.
fn multicast_direction(offered: Direction, ours: Direction) -> Option<Direction> {
    let d = offered.reverse();
    let allowed = (!d.has_send() || ours.has_send()) && (!d.has_recv() || ours.has_recv());
    allowed.then_some(d)
}

/// RFC 3264 section 6.1 table: may an answer to `offered` say `answered`?
fn answer_direction_allowed(offered: Direction, answered: Direction) -> bool {
    use Direction::*;
    matches!(
        (offered, answered),
        (SendOnly, RecvOnly | Inactive)
            | (RecvOnly, SendOnly | Inactive)
            | (SendRecv, _)
            | (Inactive, Inactive)
    )
}

impl SdpOffer {
    /// Chooses codecs and directions for every offered stream (RFC 3264 section 6).
    pub fn negotiate(&self, caps: &Capabilities) -> Result<Negotiation, NegotiationError> {
        let mut streams = Vec::with_capacity(self.media().len());
        for m in self.media() {
            streams.push(negotiate_stream(m, caps));
        }
        if streams.iter().all(Result::is_err) {
            let rejects: Vec<Reject> = streams.iter().filter_map(|s| s.clone().err()).collect();
            if let Some(Reject::Direction(offered, wanted)) =
                rejects.iter().find(|r| matches!(r, Reject::Direction(..)))
            {
                return Err(NegotiationError::DirectionConflict {
                    offered: *offered,
                    wanted: *wanted,
                });
            }
            if rejects.contains(&Reject::NoCodec) {
                return Err(NegotiationError::NoCommonCodec);
            }
            return Err(NegotiationError::UnsupportedMedia);
        }
        Ok(Negotiation {
            offer: self.clone(),
            streams,
        })
    }

    /// Negotiates and builds the answer in one step.
    pub fn answer(&self, policy: &AnswerPolicy) -> Result<SdpAnswer, NegotiationError> {
        self.negotiate(&policy.caps)?.answer(&policy.transport)
    }

    /// Checks the peer's answer to this (our) offer against RFC 3264 section 6 and returns
    /// it typed: same m-line count and kinds, formats taken from the offer, directions
    /// allowed by the section 6.1 table.
    pub fn accept_answer(&self, data: &[u8]) -> Result<SdpAnswer, NegotiationError> {
        let desc = SessionDescription::parse(data)?;
        if desc.media.len() != self.media().len() {
            return Err(NegotiationError::AnswerMismatch(format!(
                "{} m-lines in answer, {} in offer",
                desc.media.len(),
                self.media().len()
            )));
        }
        let mut negotiated = Vec::new();
        for (o, a) in self.media().iter().zip(&desc.media) {
            if o.kind != a.kind {
                return Err(NegotiationError::AnswerMismatch(format!(
                    "m-line {} is {} in answer, {} in offer",
                    o.index, a.kind, o.kind
                )));
            }
            if a.is_rejected() || o.is_rejected() {
                continue;
            }
            if !answer_direction_allowed(o.direction, a.direction) {
                return Err(NegotiationError::DirectionConflict {
                    offered: o.direction,
                    wanted: a.direction,
                });
            }
            let mut codecs = Vec::new();
            for ac in &a.codecs {
                match o.codec(ac.payload_type) {
                    Some(oc) => codecs.push(oc.clone()),
                    None => {
                        return Err(NegotiationError::AnswerMismatch(format!(
                            "payload type {} not in offer m-line {}",
                            ac.payload_type, o.index
                        )))
                    }
                }
            }
            let Some(codec) = codecs.first().cloned() else {
                continue;
            };
            negotiated.push(Negotiated {
                index: o.index,
                kind: o.kind.clone(),
                codec,
                codecs,
                direction: a.direction,
                multicast: a.connection.is_some_and(|c| c.is_multicast()),
                offerer_rtp: o.rtp_addr(),
                offerer_rtcp: o.rtcp_addr(),
                answerer_rtp: a.rtp_addr(),
                answerer_rtcp: a.rtcp_addr(),
            });
        }
        Ok(SdpAnswer { desc, negotiated })
    }
}

fn negotiate_stream(m: &MediaSection, caps: &Capabilities) -> Result<Negotiated, Reject> {
    if m.is_rejected() {
        return Err(Reject::Disabled);
    }
    if !m.proto.is_rtp() || !caps.codecs.iter().any(|c| c.kind == m.kind) {
        return Err(Reject::Unsupported);
    }
    // Each offered codec with the first spec that takes it and how much that spec wants it.
    let matched: Vec<(usize, usize, &Codec)> = m
        .codecs
        .iter()
        .filter_map(|c| {
            let (i, s) = caps
                .codecs
                .iter()
                .enumerate()
                .find(|(_, s)| s.matches(&m.kind, c))?;
            Some((i, s.preference(c), c))
        })
        .collect();
    if matched.is_empty() {
        return Err(Reject::NoCodec);
    }
    // Offer order (RFC 3264 section 6.1), except that the codecs one spec takes are
    // reordered among themselves by its preference (H.264 packetization mode 1 before 0):
    // each spec's codecs fill that spec's slots, best first (stable).
    let mut codecs: Vec<Codec> = Vec::with_capacity(matched.len());
    let mut by_spec: Vec<Vec<(usize, &Codec)>> = vec![Vec::new(); caps.codecs.len()];
    for (i, pref, c) in &matched {
        by_spec[*i].push((*pref, *c));
    }
    for group in &mut by_spec {
        group.sort_by_key(|(pref, _)| *pref);
        group.reverse();
    }
    for (i, _, _) in &matched {
        if let Some((_, c)) = by_spec[*i].pop() {
            codecs.push(c.clone());
        }
    }
    if caps.single_codec {
        codecs.truncate(1);
    }
    let multicast = m.connection.is_some_and(|c| c.is_multicast());
    let direction = if multicast {
        multicast_direction(m.direction, caps.direction)
    } else {
        answer_direction(m.direction, caps.direction)
    }
    .ok_or(Reject::Direction(m.direction, caps.direction))?;
    Ok(Negotiated {
        index: m.index,
        kind: m.kind.clone(),
        codec: codecs[0].clone(),
        codecs,
        direction,
        multicast,
        offerer_rtp: m.rtp_addr(),
        offerer_rtcp: m.rtcp_addr(),
        answerer_rtp: None,
        answerer_rtcp: None,
    })
}

fn direction_attr(d: Direction) -> sdp_types::Attribute {
    sdp_types::Attribute::new(d.as_str())
}

fn rejected_media(m: &sdp_types::Media) -> sdp_types::Media {
    // RFC 3264 section 6: port 0, formats as offered, no attributes needed.
    let mut r = m.clone();
    r.port = 0;
    r.num_ports = None;
    r.connections.clear();
    r.bandwidths.clear();
    r.key = None;
    r.media_title = None;
    r.attributes.clear();
    r
}

impl Negotiation {
    /// The offer being answered.
    pub fn offer(&self) -> &SdpOffer {
        &self.offer
    }

    /// The accepted streams so far (answerer addresses not yet known).
    pub fn accepted(&self) -> impl Iterator<Item = &Negotiated> {
        self.streams.iter().filter_map(|s| s.as_ref().ok())
    }

    /// [`Negotiation::answer`] for a channel the relay sends to a multicast `group`: the
    /// answer's `c=` is `IN IP4 <group>/<ttl>` (RFC 8866 section 5.7; the TTL only for
    /// IPv4), every accepted stream's port is the group's, RTCP still goes to `t`'s feedback
    /// target (RFC 5760 `a=rtcp-unicast:rsi`, made for this case). The viewer offered its
    /// unicast address; the service decides the group, as in an IPTV broadcast session.
    pub fn answer_multicast(
        self,
        t: &AnswerTransport,
        group: SocketAddr,
        ttl: u8,
    ) -> Result<SdpAnswer, NegotiationError> {
        if !group.ip().is_multicast() {
            return Err(NegotiationError::Policy("not a multicast group"));
        }
        let on_group = |m: Option<MediaTransport>| {
            m.map(|m| MediaTransport {
                rtp_port: group.port(),
                ..m
            })
        };
        let mt = AnswerTransport {
            addresses: vec![group.ip()],
            video: on_group(t.video),
            audio: on_group(t.audio),
            ..t.clone()
        };
        let mut answer = self.answer(&mt)?;
        let ttl = group.is_ipv4().then_some(ttl);
        let mut raw = answer.desc.raw().clone();
        raw.set_connection(sdp_types::Connection::from_ip_addr_ttl(group.ip(), ttl));
        answer.desc = SessionDescription::from_session(raw)?;
        Ok(answer)
    }

    /// Builds the answer: same number and order of m-lines as the offer, rejected streams
    /// with port 0, accepted ones with the relay's address and ports, the offerer's payload
    /// type numbers, our direction, `a=rtcp` / `a=rtcp-unicast` as the transport says.
    pub fn answer(self, t: &AnswerTransport) -> Result<SdpAnswer, NegotiationError> {
        let first_family = self.accepted().find_map(|n| n.offerer_rtp.map(|a| a.ip()));
        let session_addr = t
            .address_for(first_family)
            .ok_or(NegotiationError::Policy("no local address"))?;
        let mut origin =
            sdp_types::Origin::with_ip_addr(t.session_id, t.session_version, session_addr);
        origin.username = None;
        let name = if t.session_name.is_empty() {
            "-"
        } else {
            &t.session_name
        };
        let mut s = sdp_types::Session::new(origin, name);
        s.set_connection(sdp_types::Connection::from_ip_addr(session_addr));
        s.add_time(sdp_types::Time::new(0, 0));
        if t.feedback_target.is_some() {
            s.add_attribute_with_value("rtcp-unicast", RtcpUnicast::rsi().value());
        }

        let raw_offer = self.offer.raw().medias.clone();
        let mut negotiated = Vec::new();
        for (stream, om) in self.streams.into_iter().zip(&raw_offer) {
            let mut n = match stream {
                Ok(n) => n,
                Err(_) => {
                    s.add_media(rejected_media(om));
                    continue;
                }
            };
            let offered = &self.offer.media()[n.index];
            let mut media = sdp_types::Media {
                media: om.media.clone(),
                port: 0,
                num_ports: None,
                proto: om.proto.clone(),
                fmt: n
                    .codecs
                    .iter()
                    .map(|c| c.payload_type.to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
                media_title: None,
                connections: Vec::new(),
                bandwidths: Vec::new(),
                key: None,
                attributes: Vec::new(),
            };
            let (rtp, rtcp) = if n.multicast {
                // RFC 3264 section 6.2: same group and port as the offer.
                let c: ConnectionAddr = offered.connection.ok_or(NegotiationError::Policy(
                    "multicast stream without connection",
                ))?;
                media.port = offered.port;
                media.add_connection(c.to_sdp());
                (offered.rtp_addr(), offered.rtcp_addr())
            } else {
                let Some(mt) = t.for_kind(&n.kind) else {
                    s.add_media(rejected_media(om));
                    continue;
                };
                let ip = t
                    .address_for(n.offerer_rtp.map(|a| a.ip()))
                    .unwrap_or(session_addr);
                if ip != session_addr {
                    media.add_connection(sdp_types::Connection::from_ip_addr(ip));
                }
                media.port = mt.rtp_port;
                let rtcp_attr = match t.feedback_target {
                    Some(ft) => Some(RtcpAttr {
                        port: ft.port(),
                        addr: Some(ft.ip()),
                    }),
                    None => mt.rtcp,
                };
                if let Some(r) = rtcp_attr {
                    media.add_attribute_with_value("rtcp", r.value());
                }
                let rtcp = match rtcp_attr {
                    Some(r) => Some(SocketAddr::new(r.addr.unwrap_or(ip), r.port)),
                    None => mt.rtp_port.checked_add(1).map(|p| SocketAddr::new(ip, p)),
                };
                (Some(SocketAddr::new(ip, mt.rtp_port)), rtcp)
            };
            for c in &n.codecs {
                if !c.encoding.is_empty() {
                    media.add_attribute_with_value("rtpmap", c.rtpmap_value());
                }
                if let Some(f) = c.fmtp_value() {
                    media.add_attribute_with_value("fmtp", f);
                }
            }
            if let Some(mid) = &offered.mid {
                media.add_attribute_with_value("mid", mid);
            }
            media.add_attribute(direction_attr(n.direction));
            //= RFC 5576 section 4.1: a=ssrc:<ssrc-id> <attribute>:<value>.
            if let Some(ssrc) = t.for_kind(&n.kind).and_then(|mt| mt.ssrc) {
                if !n.multicast {
                    let cname = t.cname.as_deref().filter(|c| !c.is_empty()).unwrap_or("-");
                    media.add_attribute_with_value("ssrc", format!("{ssrc} cname:{cname}"));
                }
            }
            n.answerer_rtp = rtp;
            n.answerer_rtcp = rtcp;
            s.add_media(media);
            negotiated.push(n);
        }
        if negotiated.is_empty() {
            return Err(NegotiationError::Policy(
                "no local transport for any accepted stream",
            ));
        }
        let desc = SessionDescription::from_session(s)?;
        Ok(SdpAnswer { desc, negotiated })
    }
}

/// One stream of an offer made by [`OfferBuilder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedMedia {
    /// Media type.
    pub kind: MediaKind,
    /// Local RTP port.
    pub port: u16,
    /// Our direction: `recvonly` for a viewer, `sendonly` for a producer.
    pub direction: Direction,
    /// Transport protocol (default `RTP/AVP`).
    pub proto: Proto,
    /// Codecs in preference order, each with the payload type to offer.
    pub codecs: Vec<(u8, CodecSpec)>,
    /// `a=rtcp` to write, if RTCP is not at `port + 1`.
    pub rtcp: Option<RtcpAttr>,
}

impl OfferedMedia {
    /// A stream with no codecs yet.
    pub fn new(kind: MediaKind, port: u16, direction: Direction) -> Self {
        Self {
            kind,
            port,
            direction,
            proto: Proto(Proto::RTP_AVP.into()),
            codecs: Vec::new(),
            rtcp: None,
        }
    }

    /// The viewer's usual video stream: H.264 as payload type 96, MP2T as 33.
    pub fn video(port: u16, direction: Direction) -> Self {
        Self::new(MediaKind::Video, port, direction)
            .codec(96, CodecSpec::h264())
            .codec(33, CodecSpec::mp2t())
    }

    /// The usual audio stream: opus as 111, PCMU 0, PCMA 8.
    pub fn audio(port: u16, direction: Direction) -> Self {
        Self::new(MediaKind::Audio, port, direction)
            .codec(111, CodecSpec::opus())
            .codec(0, CodecSpec::pcmu())
            .codec(8, CodecSpec::pcma())
    }

    /// Adds a codec with payload type `pt`.
    pub fn codec(mut self, pt: u8, spec: CodecSpec) -> Self {
        self.codecs.push((pt, spec));
        self
    }

    /// Sets `a=rtcp`.
    pub fn with_rtcp(mut self, rtcp: RtcpAttr) -> Self {
        self.rtcp = Some(rtcp);
        self
    }
}

/// Builds an offer for the UAC side (ue-sim: a viewer's `recvonly` join, a producer's
/// `sendonly` personal channel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferBuilder {
    addr: IpAddr,
    session_id: u64,
    session_version: u64,
    session_name: String,
    media: Vec<OfferedMedia>,
}

impl OfferBuilder {
    /// An offer from `addr` with `o=` sess-id `session_id` (version 1).
    pub fn new(addr: IpAddr, session_id: u64) -> Self {
        Self {
            addr,
            session_id,
            session_version: 1,
            session_name: "-".into(),
            media: Vec::new(),
        }
    }

    /// Sets `s=`.
    pub fn session_name(mut self, name: &str) -> Self {
        self.session_name = if name.is_empty() {
            "-".into()
        } else {
            name.into()
        };
        self
    }

    /// Sets the `o=` sess-version (bump it for a re-offer, RFC 3264 section 8).
    pub fn session_version(mut self, v: u64) -> Self {
        self.session_version = v;
        self
    }

    /// Adds a stream.
    pub fn media(mut self, m: OfferedMedia) -> Self {
        self.media.push(m);
        self
    }

    /// Builds the offer; fails only if it has no stream or a stream has no codec.
    pub fn build(self) -> Result<SdpOffer, SdpError> {
        let origin =
            sdp_types::Origin::with_ip_addr(self.session_id, self.session_version, self.addr);
        let mut s = sdp_types::Session::new(origin, &self.session_name);
        s.set_connection(sdp_types::Connection::from_ip_addr(self.addr));
        s.add_time(sdp_types::Time::new(0, 0));
        for (i, m) in self.media.iter().enumerate() {
            if m.codecs.is_empty() {
                return Err(SdpError::BadFormat {
                    media: i,
                    token: String::new(),
                });
            }
            let fmt: Vec<String> = m.codecs.iter().map(|(pt, _)| pt.to_string()).collect();
            let mut media = sdp_types::Media {
                media: m.kind.as_str().to_owned(),
                port: m.port,
                num_ports: None,
                proto: m.proto.0.clone(),
                fmt: fmt.join(" "),
                media_title: None,
                connections: Vec::new(),
                bandwidths: Vec::new(),
                key: None,
                attributes: Vec::new(),
            };
            for (pt, spec) in &m.codecs {
                let c = spec.to_codec(*pt);
                media.add_attribute_with_value("rtpmap", c.rtpmap_value());
                if let Some(f) = c.fmtp_value() {
                    media.add_attribute_with_value("fmtp", f);
                }
            }
            if let Some(r) = m.rtcp {
                media.add_attribute_with_value("rtcp", r.value());
            }
            media.add_attribute(direction_attr(m.direction));
            s.add_media(media);
        }
        SessionDescription::from_session(s).map(SdpOffer)
    }
}
