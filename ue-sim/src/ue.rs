//! The sans-IO UE: one simulated viewer's SIP user agent and media meter.
//!
//! A [`Ue`] is a state machine. The driver ([`crate::run`]) feeds it SIP datagrams
//! ([`Ue::handle_sip`]), RTP/RTCP datagrams ([`Ue::handle_media`]) and the time
//! ([`Ue::handle_timeout`]); the scenario calls the actions ([`Ue::register`],
//! [`Ue::subscribe`], [`Ue::join`], [`Ue::zap`], [`Ue::leave`]); the driver drains
//! [`Ue::poll_transmit`] (datagrams to send), [`Ue::poll_timeout`] (next deadline) and
//! [`Ue::poll_event`] (what happened, with latencies). The UE never reads the clock and never
//! touches a socket, so unit tests drive it with hand-made responses and a virtual clock.
//!
//! SIP is `as-server`'s: the codec, the transaction layer (RFC 3261 section 17: timers A/B/E/F
//! retransmit and time out our requests; NOTIFY and BYE from the AS are answered through server
//! transactions), dialogs (section 12) and the SDP [`OfferBuilder`] /
//! [`SdpOffer::accept_answer`] (RFC 3264).
//!
//! Flows (README "What a UE sends"): REGISTER; SUBSCRIBE `Event: iptv-channels` (the NOTIFY
//! body is the JSON channel list); INVITE `sip:<channel>@<domain>` with a `recvonly` H.264
//! offer, ACK; zap by re-INVITE whose Request-URI user part names the new channel
//! ([`ZapMethod::Reinvite`]) or by BYE + INVITE ([`ZapMethod::ByeInvite`]); BYE.
//!
//! Relay moves (design "Failure"): when the relay a viewer is on dies, the AS sends a re-INVITE
//! inside the dialog whose offer names another relay (`sendonly`, new `c=`/`m=`, `a=rtcp`,
//! `a=ssrc`). The UE answers 200 OK `recvonly` on the same RTP port, switches its path (new
//! source, the SSRC from `a=ssrc`, sequence check restarted) and keeps its last-packet time, so
//! the gap it measures spans the move; [`UeEvent::Moved`] reports the gap when the first packet
//! of the new path arrives (or a failure after the zap timeout). RFC 3261 14.2: 491 while its
//! own re-INVITE is pending; it sends no re-INVITE of its own until the ACK of its 200.
//!
//! Producer mode ([`Ue::produce`], design "Personal channel"): `INVITE sip:new-channel@..` with
//! a `sendonly` offer and `Subject: <name>`; the 2xx's Contact names the channel, its SDP the
//! relay's ingest. The UE then sends the relay's shipped clip
//! (`media_relay::testpattern::TestPattern`, RFC 6184 packetisation) to the ingest in real
//! time, one frame per [`Ue::poll_timeout`], until BYE; a re-INVITE with a `recvonly` offer
//! (the AS moved the ingest) is answered `sendonly` and the stream follows it.
//!
//! Media: every RTP packet of the current path (its SSRC from the answer's `a=ssrc` when the
//! AS sends one, else learnt from the first packet after a new INVITE) updates the loss count (sequence gaps), the RFC 3550 A.8 interarrival jitter and
//! the longest gap without media; the first packet and the first packet starting a key frame
//! (`media_relay::h264::payload_starts_key_frame`) after a join or a zap are reported as
//! events. A zap by re-INVITE keeps the SSRC (the relay swaps the source on the same path), so
//! its first frame is the first key-frame packet that arrives after the re-INVITE is sent (the
//! relay's burst of the new channel arrives before the 200 OK, see BENCHMARKS.md); an IDR of
//! the old channel arriving between the re-INVITE and the switch would be counted too
//! (gating zaps on the GOP phase, as `zap_bench` does, is not done yet).
//!
//! RTCP ([`crate::rtcp`]): a viewer sends RR + SDES CNAME to the relay's RTCP address from
//! the answer (`a=rtcp`, else the RTP port + 1) at the RFC 3550 A.7 interval, takes the
//! relay's SRs (LSR/DLSR) and RSIs (group size) that arrive on its RTP port, and ends with an
//! RTCP BYE when it leaves. Votes ([`Ue::vote`]): an APP `VOTE` (poll, option) goes out at
//! once in a compound of its own and is repeated in every following compound until the poll
//! closes, as long as the viewer stays in the session it voted in (same INVITE dialog; a
//! relay move keeps it) and on the channel it voted on: the relay counts each viewer's latest
//! vote, keyed by its per-viewer SSRC, so repeats never count twice and a lost datagram is
//! made good by the next one. Before a re-INVITE zap or a BYE the vote is sent once more, so
//! a viewer that moves on right after voting still gets two copies through (the copy before a
//! re-INVITE can reach the relay after the AS had it switch the viewer: it then sits in the
//! new channel's feedback target under the old poll's id, where no tally reads it).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use as_server::service::personal::CREATION_USER;
use as_server::sip::dialog::{new_tag, ConfirmedDialog, Dialog};
use as_server::sip::sdp::{
    AnswerTransport, Capabilities, CodecSpec, Direction, MediaTransport, RtcpAttr, SdpOffer,
};
use as_server::sip::sdp::{OfferBuilder, OfferedMedia};
use as_server::sip::transaction::{
    Event as TxEvent, TimerConfig, TransactionId, TransactionLayer, Transport,
};
use as_server::sip::{HeaderName, Host, Message, Method, Request, Response, StatusCode, Uri};
use bytes::Bytes;

use crate::rtcp::{Reception, RtcpConfig, RtcpCounters, ViewerRtcp};

/// How long the UE waits for the ACK of its 2xx to the AS's re-INVITE before it may send a
/// re-INVITE of its own again (64*T1, RFC 3261 13.3.1.4).
const REMOTE_REINVITE_ACK_WAIT: Duration = Duration::from_secs(32);

/// How a UE changes channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZapMethod {
    /// re-INVITE in the dialog, Request-URI user part = the new channel (README).
    Reinvite,
    /// BYE, then a new INVITE to the new channel.
    ByeInvite,
}

/// Static identity of one UE.
#[derive(Debug, Clone)]
pub struct UeConfig {
    /// Index of the UE in the run (encoded in every Call-ID so the driver can route).
    pub index: usize,
    /// User part of the AoR (`sip:<user>@<domain>`).
    pub user: String,
    /// Host part of request URIs (the AS's domain or IP).
    pub domain: String,
    /// Where SIP requests go (the AS).
    pub target: SocketAddr,
    /// The SIP socket address this UE sends from (Via sent-by and Contact).
    pub local_sip: SocketAddr,
    /// The address written in SDP `c=`.
    pub media_ip: IpAddr,
}

/// A datagram the UE wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a transmit that is dropped is a message never sent"]
pub enum Transmit {
    /// SIP, from the UE's SIP socket.
    Sip {
        /// Destination.
        to: SocketAddr,
        /// Encoded message.
        bytes: Bytes,
    },
    /// RTP (a producer's stream), from the UE's RTP socket.
    Rtp {
        /// Destination (the relay's ingest address).
        to: SocketAddr,
        /// One RTP packet.
        bytes: Bytes,
    },
    /// RTCP, from the UE's RTP socket.
    Rtcp {
        /// Destination (the relay's RTCP address).
        to: SocketAddr,
        /// Encoded compound packet.
        bytes: Bytes,
    },
}

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A final non-2xx status.
    Status(u16),
    /// No final response (timer B/F) or no key frame in time.
    Timeout,
    /// The answer could not be used (bad SDP, missing dialog headers).
    BadAnswer,
    /// `403 Forbidden` with its reason phrase: a policy refusal (the AS's AAA refused the
    /// join or zap: unknown subscriber, channel not in subscription, stream limit), an
    /// expected outcome rather than a failure.
    Refused(String),
}

impl Failure {
    /// The key used in [`crate::stats::RunStats::failures`].
    #[must_use]
    pub fn reason(&self) -> String {
        match self {
            Failure::Status(s) => s.to_string(),
            Failure::Timeout => "timeout".into(),
            Failure::BadAnswer => "bad_answer".into(),
            Failure::Refused(_) => "403".into(),
        }
    }

    /// The reason phrase of a refusal (`403`), `None` for any other failure.
    #[must_use]
    pub fn refusal(&self) -> Option<&str> {
        match self {
            Failure::Refused(r) => Some(r),
            _ => None,
        }
    }
}

/// What happened, for the driver's statistics.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub enum UeEvent {
    /// REGISTER answered.
    Registered(Result<(), Failure>),
    /// SUBSCRIBE answered.
    Subscribed(Result<(), Failure>),
    /// A NOTIFY brought the channel list (ids).
    ChannelList(Vec<String>),
    /// The join INVITE got its 2xx (`join_ms`) or failed.
    Joined {
        /// Channel.
        channel: String,
        /// INVITE sent -> 2xx, or why it failed.
        result: Result<Duration, Failure>,
    },
    /// First RTP packet after a join.
    FirstPacket(Duration),
    /// First key-frame packet after a join.
    FirstFrame(Duration),
    /// A zap reached the first key frame of the new channel (`zap_ms`) or failed.
    Zapped {
        /// How.
        method: ZapMethod,
        /// New channel.
        channel: String,
        /// Zap request sent -> first key-frame packet, or why it failed.
        result: Result<Duration, Failure>,
    },
    /// The AS moved the session to another relay with a re-INVITE (the relay it was on
    /// failed): `Ok(gap)` when media arrived on the new path (`gap` = last packet before the
    /// move to first packet after it), else why not (no media within the zap timeout, or an
    /// offer we could not answer).
    Moved(Result<Duration, Failure>),
    /// The AS moved a producer's ingest to another relay (re-INVITE with a `recvonly` offer
    /// naming the new ingest); the producer now sends there. `Err`: the offer was unusable.
    IngestMoved(Result<(), Failure>),
    /// A producer's personal channel was created (`INVITE sip:new-channel@..` answered 2xx,
    /// the channel id taken from the answer's Contact) or not.
    Created {
        /// The channel id the AS made from the Subject (empty when creation failed).
        channel: String,
        /// INVITE sent -> 2xx, or why it failed.
        result: Result<Duration, Failure>,
    },
    /// Our BYE was answered (or timed out): the session is over.
    Left,
    /// The AS ended the session with a BYE.
    RemoteBye,
}

/// Errors of the UE's actions (caller misuse).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UeError {
    /// The action needs a confirmed session.
    #[error("no session")]
    NoSession,
    /// Another session operation is in progress.
    #[error("busy")]
    Busy,
    /// The offer could not be built.
    #[error("bad offer: {0}")]
    Offer(String),
}

/// Media figures of the UE so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaStats {
    /// RTP packets counted.
    pub packets: u64,
    /// Lost packets (forward sequence gaps).
    pub lost: u64,
    /// Interarrival jitter in timestamp units (RFC 3550 A.8), as a float.
    pub jitter_ts: f64,
    /// Longest time between two packets of a session.
    pub gap_max: Duration,
}

impl MediaStats {
    /// Jitter in ms for a 90 kHz clock.
    #[must_use]
    pub fn jitter_ms(&self) -> f64 {
        self.jitter_ts / 90.0
    }
}

/// What a client transaction was for.
#[derive(Debug, Clone)]
enum Op {
    Register,
    Subscribe(Box<Request>),
    Join {
        invite: Box<Request>,
        offer: Box<SdpOffer>,
    },
    Reinvite {
        channel: String,
        seq: u32,
        offer: Box<SdpOffer>,
    },
    Bye {
        then_join: Option<String>,
    },
}

/// A relay move in progress: the AS's re-INVITE was answered, the first packet of the new
/// path has not arrived yet.
#[derive(Debug, Clone, Copy)]
struct Move {
    /// When the re-INVITE arrived.
    since: Instant,
    /// The last packet of the old path (the gap is measured from here).
    last_before: Option<Instant>,
}

/// A producer's stream: the shipped clip, packetised in real time, to the relay's ingest.
#[derive(Debug)]
struct Producing {
    ingest: SocketAddr,
    pattern: media_relay::testpattern::TestPattern,
}

/// A join or zap waiting for its first packet / key frame.
#[derive(Debug, Clone)]
struct Pending {
    started: Instant,
    /// Zap: which; `None` for a plain join.
    zap: Option<(ZapMethod, String)>,
    /// Key frames only count from this point (2xx of a re-INVITE).
    armed: bool,
    got_packet: bool,
}

/// The session (INVITE dialog) state.
#[derive(Debug, Clone)]
enum Session {
    Idle,
    Inviting {
        channel: String,
        /// For the INVITE of a BYE + INVITE zap: the zap.
        zap: Option<(ZapMethod, String)>,
        /// A producer's creation INVITE (`sip:new-channel@..`, `sendonly`).
        producer: bool,
    },
    Active {
        dialog: Box<ConfirmedDialog>,
        channel: String,
        invite_seq: u32,
    },
    Leaving,
}

/// RTP receive state of the current path (RFC 3550 A.1/A.8).
#[derive(Debug, Clone, Default)]
struct RtpPath {
    ssrc: Option<u32>,
    /// The SSRC came from SDP (`a=ssrc`), not from the first packet.
    announced: bool,
    last_seq: Option<u16>,
    /// Transit time of the previous packet, in timestamp units.
    last_transit: Option<f64>,
    received: u64,
    lost: u64,
    /// Sequence number cycles, shifted (RFC 3550 A.1 `cycles`).
    cycles: u32,
}

/// One simulated UE.
#[derive(Debug)]
pub struct Ue {
    cfg: UeConfig,
    tl: TransactionLayer,
    /// The UE's own clock origin for jitter arrival times.
    epoch: Option<Instant>,
    ops: HashMap<TransactionId, (Op, Instant)>,
    session: Session,
    sub_dialog: Option<Box<ConfirmedDialog>>,
    call_seq: u32,
    rtp_port: u16,
    offer_version: u64,
    pending: Option<Pending>,
    path: RtpPath,
    media: MediaStats,
    last_packet: Option<Instant>,
    relay_rtcp: Option<SocketAddr>,
    rtcp_ssrc: u32,
    rtcp: ViewerRtcp,
    /// The vote being repeated, if any.
    vote: Option<ActiveVote>,
    /// Counts INVITE sessions (a vote repeats only in the session it was cast in).
    session_epoch: u64,
    zap_timeout: Duration,
    /// Relay move waiting for media on the new path.
    moving: Option<Move>,
    /// The AS's re-INVITE was answered 2xx and its ACK has not arrived (no own re-INVITE
    /// meanwhile, RFC 3261 14.1): since when.
    remote_reinvite: Option<Instant>,
    /// The relay address media comes from (SDP of the answer / the AS's re-INVITE offer).
    source: Option<SocketAddr>,
    producing: Option<Producing>,
    out: VecDeque<Transmit>,
    events: VecDeque<UeEvent>,
}

impl Ue {
    /// A new idle UE.
    #[must_use]
    pub fn new(cfg: UeConfig) -> Self {
        Self::with_timers(cfg, TimerConfig::default())
    }

    /// A new idle UE with given SIP timer values.
    #[must_use]
    pub fn with_timers(cfg: UeConfig, timers: TimerConfig) -> Self {
        let rtcp_ssrc = rand::random::<u32>() | 1;
        let cname = format!("{}@{}", cfg.user, cfg.media_ip);
        let seed = (cfg.index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(rtcp_ssrc);
        Ue {
            rtcp_ssrc,
            rtcp: ViewerRtcp::new(RtcpConfig::default(), rtcp_ssrc, cname, seed),
            vote: None,
            session_epoch: 0,
            cfg,
            tl: TransactionLayer::new(timers),
            epoch: None,
            ops: HashMap::new(),
            session: Session::Idle,
            sub_dialog: None,
            call_seq: 0,
            rtp_port: 0,
            offer_version: 1,
            pending: None,
            path: RtpPath::default(),
            media: MediaStats::default(),
            last_packet: None,
            relay_rtcp: None,
            zap_timeout: Duration::from_secs(3),
            moving: None,
            remote_reinvite: None,
            source: None,
            producing: None,
            out: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The UE's configuration.
    #[must_use]
    pub fn config(&self) -> &UeConfig {
        &self.cfg
    }

    /// Media figures so far.
    #[must_use]
    pub fn media(&self) -> &MediaStats {
        &self.media
    }

    /// The channel of the current session, if one is active.
    #[must_use]
    pub fn channel(&self) -> Option<&str> {
        match &self.session {
            Session::Active { channel, .. } => Some(channel),
            _ => None,
        }
    }

    /// Whether a session is confirmed and no session operation is in progress.
    #[must_use]
    pub fn is_watching(&self) -> bool {
        matches!(self.session, Session::Active { .. })
            && self.remote_reinvite.is_none()
            && !self
                .ops
                .values()
                .any(|(op, _)| matches!(op, Op::Reinvite { .. } | Op::Bye { .. }))
    }

    /// Whether nothing session-related is going on (no session, no operation in progress).
    #[must_use]
    pub fn is_idle(&self) -> bool {
        matches!(self.session, Session::Idle)
    }

    /// The SSRC of the current RTP path, once learnt.
    #[must_use]
    pub fn rtp_ssrc(&self) -> Option<u32> {
        self.path.ssrc
    }

    /// Whether the current path's SSRC came from SDP (`a=ssrc` in the answer or the AS's
    /// re-INVITE), so the driver need not guess it from the first packet.
    #[must_use]
    pub fn ssrc_announced(&self) -> bool {
        self.path.announced
    }

    /// Whether the UE waits for the first packet of a new path (SSRC not known yet).
    #[must_use]
    pub fn awaiting_new_path(&self) -> bool {
        self.path.ssrc.is_none()
            && !self.is_producer()
            && !matches!(self.session, Session::Idle | Session::Leaving)
    }

    /// Whether this UE's session is a producer's (creating or feeding a personal channel).
    #[must_use]
    pub fn is_producer(&self) -> bool {
        self.producing.is_some() || matches!(self.session, Session::Inviting { producer: true, .. })
    }

    /// The relay address media comes from (or, for a producer, the ingest it sends to).
    #[must_use]
    pub fn media_source(&self) -> Option<SocketAddr> {
        self.source
    }

    /// Sets how long a zap may wait for its key frame (default 3 s).
    pub fn set_zap_timeout(&mut self, d: Duration) {
        self.zap_timeout = d;
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        while let Some(t) = self.tl.poll_transmit() {
            self.out.push_back(Transmit::Sip {
                to: t.destination,
                bytes: t.contents,
            });
        }
        self.out.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<UeEvent> {
        self.events.pop_front()
    }

    /// The earliest deadline (SIP timers, receiver report, zap timeout).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let zap = self
            .pending
            .as_ref()
            .filter(|p| p.zap.is_some())
            .map(|p| p.started + self.zap_timeout);
        let moving = self.moving.map(|m| m.since + self.zap_timeout);
        let remote = self.remote_reinvite.map(|t| t + REMOTE_REINVITE_ACK_WAIT);
        let produce = self.producing.as_ref().map(|p| p.pattern.next_timeout());
        [
            self.tl.poll_timeout(),
            self.rtcp.next_timeout(),
            zap,
            moving,
            remote,
            produce,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn call_id(&mut self) -> String {
        self.call_seq += 1;
        format!(
            "ue{}-{}-{:08x}@ue-sim",
            self.cfg.index,
            self.call_seq,
            rand::random::<u32>()
        )
    }

    fn aor(&self) -> String {
        format!("sip:{}@{}", self.cfg.user, self.cfg.domain)
    }

    fn contact(&self) -> String {
        format!("<sip:{}@{}>", self.cfg.user, self.cfg.local_sip)
    }

    fn uri(&self, user: &str) -> Uri {
        let host = Host::parse(&self.cfg.domain).unwrap_or(Host::Domain(self.cfg.domain.clone()));
        let mut u = Uri::sip(Some(user), host);
        if self.cfg.target.port() != 5060 {
            u.port = Some(self.cfg.target.port());
        }
        u
    }

    fn via(&self) -> String {
        format!(
            "SIP/2.0/UDP {};branch=z9hG4bK{:016x};rport",
            self.cfg.local_sip,
            rand::random::<u64>()
        )
    }

    /// A new out-of-dialog request with fresh Call-ID and From tag.
    fn new_request(&mut self, method: Method, to_user: &str) -> Request {
        let call_id = self.call_id();
        let mut r = Request::new(method.clone(), self.uri(to_user));
        r.headers.push(HeaderName::VIA, self.via());
        r.headers.push(HeaderName::MAX_FORWARDS, "70");
        r.headers.push(
            HeaderName::FROM,
            format!("<{}>;tag={}", self.aor(), new_tag()),
        );
        let to = if method == Method::REGISTER {
            format!("<{}>", self.aor())
        } else {
            format!("<{}>", self.uri(to_user))
        };
        r.headers.push(HeaderName::TO, to);
        r.headers.push(HeaderName::CALL_ID, call_id);
        r.headers
            .push(HeaderName::CSEQ, format!("1 {}", method.as_str()));
        r.headers.push(HeaderName::CONTACT, self.contact());
        r
    }

    fn start(&mut self, now: Instant, request: Request, op: Op) {
        self.epoch.get_or_insert(now);
        match self
            .tl
            .send_request(now, request, self.cfg.target, Transport::Udp)
        {
            Ok(id) => {
                self.ops.insert(id, (op, now));
            }
            Err(e) => tracing::warn!(error = %e, "request not started"),
        }
    }

    /// Sends REGISTER (RFC 3261 section 10).
    pub fn register(&mut self, now: Instant) {
        let mut r = self.new_request(Method::REGISTER, &self.cfg.user.clone());
        r.uri = {
            let mut u = self.uri("x");
            u.user = None;
            u
        };
        r.headers.push(HeaderName::EXPIRES, "600");
        self.start(now, r, Op::Register);
    }

    /// Sends SUBSCRIBE to the `iptv-channels` event package (RFC 6665).
    pub fn subscribe(&mut self, now: Instant) {
        let mut r = self.new_request(Method::SUBSCRIBE, "channels");
        r.headers.push(HeaderName::EVENT, "iptv-channels");
        r.headers
            .push(HeaderName::ACCEPT, "application/vnd.iptv.channels+json");
        r.headers.push(HeaderName::EXPIRES, "600");
        self.start(now, r.clone(), Op::Subscribe(Box::new(r)));
    }

    fn offer(&mut self) -> Result<SdpOffer, UeError> {
        self.offer_dir(Direction::RecvOnly)
    }

    fn offer_dir(&mut self, direction: Direction) -> Result<SdpOffer, UeError> {
        self.offer_version += 1;
        OfferBuilder::new(self.cfg.media_ip, u64::from(self.rtcp_ssrc))
            .session_version(self.offer_version)
            .session_name("ue-sim")
            .media(
                OfferedMedia::video(self.rtp_port, direction).with_rtcp(RtcpAttr {
                    port: self.rtp_port,
                    addr: None,
                }),
            )
            .build()
            .map_err(|e| UeError::Offer(e.to_string()))
    }

    /// Joins `channel` with an INVITE offering `recvonly` H.264 on `rtp_port` (RTCP on the same
    /// port, so the driver's RTP socket also takes the relay's sender reports).
    pub fn join(&mut self, now: Instant, channel: &str, rtp_port: u16) -> Result<(), UeError> {
        if !matches!(self.session, Session::Idle) {
            return Err(UeError::Busy);
        }
        self.send_invite(now, channel, rtp_port, None)
    }

    /// Creates a personal channel as its producer: `INVITE sip:new-channel@<domain>` with a
    /// `sendonly` H.264 offer and `Subject: <name>` (design "Personal channel"). On the 2xx
    /// the UE learns the channel id (the answer's Contact user part) and the ingest address
    /// (the answer's `c=`/`m=`), reports [`UeEvent::Created`] and from then on sends the
    /// shipped H.264 clip as RTP to the ingest in real time ([`Transmit::Rtp`], paced by
    /// [`Ue::poll_timeout`]) until [`Ue::leave`].
    pub fn produce(&mut self, now: Instant, name: &str, rtp_port: u16) -> Result<(), UeError> {
        if !matches!(self.session, Session::Idle) {
            return Err(UeError::Busy);
        }
        self.rtp_port = rtp_port;
        let offer = self.offer_dir(Direction::SendOnly)?;
        let mut r = self.new_request(Method::INVITE, CREATION_USER);
        r.headers.push(HeaderName::SUBJECT, name);
        r.headers.push(HeaderName::CONTENT_TYPE, "application/sdp");
        r.body = Bytes::from(offer.to_bytes());
        self.session = Session::Inviting {
            channel: String::new(),
            zap: None,
            producer: true,
        };
        self.path = RtpPath::default();
        self.pending = None;
        self.start(
            now,
            r.clone(),
            Op::Join {
                invite: Box::new(r),
                offer: Box::new(offer),
            },
        );
        Ok(())
    }

    fn send_invite(
        &mut self,
        now: Instant,
        channel: &str,
        rtp_port: u16,
        zap: Option<(ZapMethod, String, Instant)>,
    ) -> Result<(), UeError> {
        self.rtp_port = rtp_port;
        let offer = self.offer()?;
        self.session_epoch += 1;
        let mut r = self.new_request(Method::INVITE, channel);
        r.headers.push(HeaderName::CONTENT_TYPE, "application/sdp");
        r.body = Bytes::from(offer.to_bytes());
        self.session = Session::Inviting {
            channel: channel.to_owned(),
            zap: zap.as_ref().map(|(m, c, _)| (*m, c.clone())),
            producer: false,
        };
        self.path = RtpPath::default();
        self.pending = Some(match zap {
            Some((m, c, started)) => Pending {
                started,
                zap: Some((m, c)),
                armed: true,
                got_packet: false,
            },
            None => Pending {
                started: now,
                zap: None,
                armed: true,
                got_packet: false,
            },
        });
        self.start(
            now,
            r.clone(),
            Op::Join {
                invite: Box::new(r),
                offer: Box::new(offer),
            },
        );
        Ok(())
    }

    /// Changes channel. `rtp_port` is used by [`ZapMethod::ByeInvite`] for the new INVITE.
    pub fn zap(
        &mut self,
        now: Instant,
        channel: &str,
        method: ZapMethod,
        rtp_port: u16,
    ) -> Result<(), UeError> {
        if !self.is_watching() {
            return Err(UeError::NoSession);
        }
        match method {
            ZapMethod::Reinvite => {
                // The vote once more before the relay switches this viewer's channel.
                if self.vote_here(now).is_some() {
                    self.send_report(now, false);
                }
                let offer = self.offer()?;
                let body = offer.to_bytes();
                let new_uri = self.uri(channel);
                let Session::Active { dialog, .. } = &mut self.session else {
                    return Err(UeError::NoSession);
                };
                //= README "Zap": the re-INVITE's Request-URI user part names the new channel.
                dialog.core.remote_target = new_uri;
                let mut r = dialog.reinvite(body);
                r.headers.push_front(HeaderName::VIA, self.via());
                let seq = r.cseq().map(|c| c.seq).unwrap_or(0);
                self.pending = Some(Pending {
                    started: now,
                    zap: Some((method, channel.to_owned())),
                    armed: true,
                    got_packet: false,
                });
                self.start(
                    now,
                    r,
                    Op::Reinvite {
                        channel: channel.to_owned(),
                        seq,
                        offer: Box::new(offer),
                    },
                );
            }
            ZapMethod::ByeInvite => {
                self.rtp_port = rtp_port;
                self.pending = Some(Pending {
                    started: now,
                    zap: Some((method, channel.to_owned())),
                    armed: false,
                    got_packet: false,
                });
                self.send_bye(now, Some(channel.to_owned()));
            }
        }
        Ok(())
    }

    /// Leaves the session with a BYE.
    pub fn leave(&mut self, now: Instant) -> Result<(), UeError> {
        if !matches!(self.session, Session::Active { .. }) {
            return Err(UeError::NoSession);
        }
        self.pending = None;
        self.send_bye(now, None);
        Ok(())
    }

    fn send_bye(&mut self, now: Instant, then_join: Option<String>) {
        //= RFC 3550 6.6: a participant leaving sends BYE (after its vote, once more).
        if matches!(self.session, Session::Active { .. }) && !self.is_producer() {
            self.send_report(now, true);
        }
        let Session::Active { dialog, .. } = std::mem::replace(&mut self.session, Session::Leaving)
        else {
            return;
        };
        let (mut bye, _ended) = dialog.bye();
        bye.headers.push_front(HeaderName::VIA, self.via());
        self.vote = None;
        self.producing = None;
        self.moving = None;
        self.relay_rtcp = None;
        self.rtcp.stop();
        self.last_packet = None;
        self.start(now, bye, Op::Bye { then_join });
    }

    /// A SIP datagram from `from`.
    pub fn handle_sip(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let Ok(msg) = Message::parse(bytes) else {
            tracing::debug!(ue = self.cfg.index, "unparsable SIP datagram dropped");
            return;
        };
        self.tl.handle_message(now, from, Transport::Udp, msg);
        self.drain_tx_events(now);
    }

    /// Fires due timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tl.handle_timeout(now);
        self.drain_tx_events(now);
        if let Some(p) = &self.pending {
            if p.zap.is_some() && now >= p.started + self.zap_timeout {
                let p = self.pending.take().expect("checked");
                if let Some((method, channel)) = p.zap {
                    self.events.push_back(UeEvent::Zapped {
                        method,
                        channel,
                        result: Err(Failure::Timeout),
                    });
                }
            }
        }
        if self.rtcp.due(now) {
            self.send_report(now, false);
        }
        if self
            .moving
            .is_some_and(|m| now >= m.since + self.zap_timeout)
        {
            self.moving = None;
            self.events.push_back(UeEvent::Moved(Err(Failure::Timeout)));
        }
        if self
            .remote_reinvite
            .is_some_and(|t| now >= t + REMOTE_REINVITE_ACK_WAIT)
        {
            self.remote_reinvite = None;
        }
        if let Some(p) = &mut self.producing {
            if now >= p.pattern.next_timeout() {
                let to = p.ingest;
                for bytes in p.pattern.poll(now) {
                    self.out.push_back(Transmit::Rtp { to, bytes });
                }
            }
        }
    }

    fn drain_tx_events(&mut self, now: Instant) {
        while let Some(ev) = self.tl.poll_event() {
            match ev {
                TxEvent::Request {
                    id: Some(id),
                    request,
                    ..
                } => self.on_request(now, id, &request),
                // The ACK of our 2xx to the AS's re-INVITE: we may re-INVITE again.
                TxEvent::Request {
                    id: None, request, ..
                } if request.method == Method::ACK => self.remote_reinvite = None,
                TxEvent::Request { id: None, .. } => {}
                TxEvent::Response { id, response }
                | TxEvent::Timeout { id, response }
                | TxEvent::TransportError { id, response } => self.on_response(now, id, &response),
                _ => {}
            }
        }
    }

    fn respond(&mut self, now: Instant, id: TransactionId, req: &Request, status: StatusCode) {
        let mut resp = Response::for_request(req, status, "");
        if req
            .to()
            .ok()
            .and_then(|t| t.tag().map(str::to_owned))
            .is_none()
        {
            resp = resp.with_to_tag(&new_tag());
        }
        if let Err(e) = self.tl.respond(now, id, resp) {
            tracing::debug!(error = %e, "response not sent");
        }
    }

    fn on_request(&mut self, now: Instant, id: TransactionId, req: &Request) {
        if req.method == Method::NOTIFY {
            self.respond(now, id, req, StatusCode::OK);
            if let Some(list) = parse_channel_list(&req.body) {
                self.events.push_back(UeEvent::ChannelList(list));
            }
        } else if req.method == Method::BYE {
            let ours = match &self.session {
                Session::Active { dialog, .. } => dialog.core.matches(req),
                _ => false,
            };
            if ours {
                self.respond(now, id, req, StatusCode::OK);
                self.session = Session::Idle;
                self.end_media();
                if let Some(p) = self.pending.take() {
                    if let Some((method, channel)) = p.zap {
                        self.events.push_back(UeEvent::Zapped {
                            method,
                            channel,
                            result: Err(Failure::Status(481)),
                        });
                    }
                }
                self.events.push_back(UeEvent::RemoteBye);
            } else {
                self.respond(now, id, req, StatusCode(481));
            }
        } else if req.method == Method::OPTIONS {
            self.respond(now, id, req, StatusCode::OK);
        } else if req.method == Method::INVITE {
            self.on_reinvite(now, id, req);
        } else {
            self.respond(now, id, req, StatusCode(405));
        }
    }

    /// The AS's re-INVITE inside our dialog (design "Failure": the relay we were on died and
    /// the AS moved us to another one). The offer names the new relay (`sendonly`, its
    /// `c=`/`m=`, `a=rtcp`, `a=ssrc` of our new path); we answer 200 OK `recvonly` on the same
    /// RTP port, switch the media path (new source, new SSRC) and keep measuring: the gap
    /// spans the move. RFC 3261 14.2: 491 while our own re-INVITE is pending; 500 for an
    /// out-of-order CSeq (12.2.2); 488 for an offer we cannot answer (or none: offerless
    /// re-INVITEs are not supported).
    fn on_reinvite(&mut self, now: Instant, id: TransactionId, req: &Request) {
        let Session::Active { dialog, .. } = &mut self.session else {
            self.respond(now, id, req, StatusCode(481));
            return;
        };
        if !dialog.core.matches(req) {
            self.respond(now, id, req, StatusCode(481));
            return;
        }
        let own_pending = self
            .ops
            .values()
            .any(|(op, _)| matches!(op, Op::Reinvite { .. }));
        if own_pending {
            //= RFC 3261 14.2: a re-INVITE while ours is pending gets 491 Request Pending.
            self.respond(now, id, req, StatusCode(491));
            return;
        }
        if dialog.core.on_request(req).is_err() {
            self.respond(now, id, req, StatusCode(500));
            return;
        }
        // A producer's re-INVITE moves its ingest (the AS offers `recvonly` at the new
        // relay's ingest): we answer `sendonly` and send there from now on.
        let producer = self.producing.is_some();
        let direction = if producer {
            Direction::SendOnly
        } else {
            Direction::RecvOnly
        };
        let answer = SdpOffer::parse(&req.body).ok().and_then(|offer| {
            let neg = offer
                .negotiate(&Capabilities {
                    direction,
                    codecs: vec![CodecSpec::h264()],
                    single_codec: true,
                })
                .ok()?;
            let media = offer.media().first()?.clone();
            let answer = neg
                .answer(&AnswerTransport {
                    addresses: vec![self.cfg.media_ip],
                    video: Some(MediaTransport {
                        rtp_port: self.rtp_port,
                        rtcp: Some(RtcpAttr {
                            port: self.rtp_port,
                            addr: None,
                        }),
                        ssrc: None,
                    }),
                    audio: None,
                    feedback_target: None,
                    cname: None,
                    session_id: u64::from(self.rtcp_ssrc),
                    session_version: self.offer_version + 1,
                    session_name: "ue-sim".into(),
                })
                .ok()?;
            Some((media, answer))
        });
        let Some((media, answer)) = answer else {
            tracing::debug!(ue = self.cfg.index, offer = %String::from_utf8_lossy(&req.body), "re-INVITE offer not answerable");
            self.respond(now, id, req, StatusCode(488));
            self.events.push_back(if producer {
                UeEvent::IngestMoved(Err(Failure::BadAnswer))
            } else {
                UeEvent::Moved(Err(Failure::BadAnswer))
            });
            return;
        };
        self.offer_version += 1;
        let mut resp = Response::for_request(req, StatusCode::OK, "");
        resp.headers.push(HeaderName::CONTACT, self.contact());
        resp.headers
            .push(HeaderName::CONTENT_TYPE, "application/sdp");
        resp.body = Bytes::from(answer.to_bytes());
        if let Err(e) = self.tl.respond(now, id, resp) {
            tracing::debug!(error = %e, "re-INVITE answer not sent");
            return;
        }
        self.remote_reinvite = Some(now);
        if let Some(p) = &mut self.producing {
            if let Some(ingest) = media.rtp_addr().filter(|a| *a != p.ingest) {
                p.ingest = ingest;
                self.source = Some(ingest);
                self.events.push_back(UeEvent::IngestMoved(Ok(())));
            }
            return;
        }
        let new_source = media.rtp_addr();
        let new_ssrc = sdp_ssrc(&req.body);
        let moved = new_source != self.source || (new_ssrc.is_some() && new_ssrc != self.path.ssrc);
        if let Some(rtcp) = media.rtcp_addr() {
            self.relay_rtcp = Some(rtcp);
        }
        if !moved {
            return; // a session refresh: same relay, same path
        }
        self.source = new_source;
        self.path = RtpPath {
            ssrc: new_ssrc,
            announced: new_ssrc.is_some(),
            ..RtpPath::default()
        };
        // A second move before the first one saw media keeps the first one's start.
        let last_before = self.moving.map_or(self.last_packet, |m| m.last_before);
        self.moving = Some(Move {
            since: now,
            last_before,
        });
    }

    fn end_media(&mut self) {
        if self.moving.take().is_some() {
            self.events.push_back(UeEvent::Moved(Err(Failure::Timeout)));
        }
        self.producing = None;
        self.remote_reinvite = None;
        self.source = None;
        self.relay_rtcp = None;
        self.rtcp.stop();
        self.vote = None;
        self.last_packet = None;
        self.path = RtpPath::default();
    }

    fn on_response(&mut self, now: Instant, id: TransactionId, resp: &Response) {
        let status = resp.status;
        if status.is_provisional() {
            return;
        }
        // 2xx retransmissions of an INVITE (RFC 6026) arrive after the op is gone: ACK again.
        let Some((op, started)) = self.ops.remove(&id) else {
            if status.is_success() {
                self.reack(resp);
            }
            return;
        };
        let failure = if status.is_success() {
            None
        } else if status.0 == 408 {
            Some(Failure::Timeout)
        } else if status.0 == 403 {
            Some(Failure::Refused(resp.reason.trim().to_owned()))
        } else {
            Some(Failure::Status(status.0))
        };
        match op {
            Op::Register => self.events.push_back(UeEvent::Registered(match failure {
                None => Ok(()),
                Some(f) => Err(f),
            })),
            Op::Subscribe(req) => {
                if failure.is_none() {
                    if let Ok(Dialog::Confirmed(d)) = Dialog::uac(&req, resp, false) {
                        self.sub_dialog = Some(Box::new(d));
                    }
                }
                self.events.push_back(UeEvent::Subscribed(match failure {
                    None => Ok(()),
                    Some(f) => Err(f),
                }));
            }
            Op::Join { invite, offer } => {
                self.on_invite_final(now, started, *invite, &offer, resp, failure)
            }
            Op::Reinvite {
                channel,
                seq,
                offer,
            } => {
                match failure {
                    None => {
                        self.follow_zap_answer(&offer, &resp.body);
                        if let Session::Active {
                            dialog,
                            channel: ch,
                            invite_seq,
                        } = &mut self.session
                        {
                            if let Some(c) = resp.contact().ok().flatten() {
                                dialog.core.remote_target = c.uri;
                            }
                            *ch = channel;
                            *invite_seq = seq;
                            let mut ack = dialog.ack(seq);
                            ack.headers.push_front(HeaderName::VIA, self.via_for_ack());
                            self.send_sip(&Message::Request(ack));
                        }
                        if let Some(p) = &mut self.pending {
                            p.armed = true;
                        }
                    }
                    Some(f) => {
                        // 404 etc.: the session stays where it was (RFC 3261 14.2).
                        if let Session::Active {
                            dialog, channel, ..
                        } = &mut self.session
                        {
                            dialog.core.remote_target = self_uri(&self.cfg, channel);
                        }
                        if let Some(p) = self.pending.take() {
                            if let Some((method, channel)) = p.zap {
                                self.events.push_back(UeEvent::Zapped {
                                    method,
                                    channel,
                                    result: Err(f),
                                });
                            }
                        }
                    }
                }
            }
            Op::Bye { then_join } => {
                self.session = Session::Idle;
                self.end_media();
                match then_join {
                    Some(channel) => {
                        let started = self.pending.as_ref().map_or(now, |p| p.started);
                        let port = self.rtp_port;
                        if let Err(e) = self.send_invite(
                            now,
                            &channel,
                            port,
                            Some((ZapMethod::ByeInvite, channel.clone(), started)),
                        ) {
                            tracing::warn!(error = %e, "zap INVITE not sent");
                        }
                    }
                    None => self.events.push_back(UeEvent::Left),
                }
            }
        }
    }

    /// The answer to our zap re-INVITE: when it names another relay address or stream SSRC
    /// (the AS moved the viewer to a relay that has the new channel, RFC 3264 section 8),
    /// media, RTCP and the vote go there from now on, and packets of the old path are
    /// dropped as stale. An answer naming the same path (the usual zap) changes nothing.
    fn follow_zap_answer(&mut self, offer: &SdpOffer, body: &[u8]) {
        if body.is_empty() {
            return;
        }
        let Ok(answer) = offer.accept_answer(body) else {
            tracing::debug!(ue = self.cfg.index, "zap answer not understood; path kept");
            return;
        };
        let Some(media) = answer.media().first() else {
            return;
        };
        let new_source = media.rtp_addr();
        let new_ssrc = sdp_ssrc(body);
        if let Some(rtcp) = media.rtcp_addr() {
            self.relay_rtcp = Some(rtcp);
        }
        let moved = (new_source.is_some() && new_source != self.source)
            || (new_ssrc.is_some() && new_ssrc != self.path.ssrc);
        if !moved {
            return;
        }
        if new_source.is_some() {
            self.source = new_source;
        }
        self.path = RtpPath {
            ssrc: new_ssrc,
            announced: new_ssrc.is_some(),
            ..RtpPath::default()
        };
    }

    fn via_for_ack(&self) -> String {
        self.via()
    }

    fn send_sip(&mut self, msg: &Message) {
        self.out.push_back(Transmit::Sip {
            to: self.cfg.target,
            bytes: Bytes::from(msg.to_bytes()),
        });
    }

    fn reack(&mut self, resp: &Response) {
        if let Session::Active {
            dialog, invite_seq, ..
        } = &self.session
        {
            let seq = resp.cseq().map(|c| c.seq).unwrap_or(0);
            if seq == *invite_seq && resp.call_id().ok() == Some(dialog.core.id.call_id.as_str()) {
                let mut ack = dialog.ack(seq);
                ack.headers.push_front(HeaderName::VIA, self.via());
                self.send_sip(&Message::Request(ack));
            }
        }
    }

    fn on_invite_final(
        &mut self,
        now: Instant,
        started: Instant,
        invite: Request,
        offer: &SdpOffer,
        resp: &Response,
        failure: Option<Failure>,
    ) {
        let (mut channel, zap, producer) = match &self.session {
            Session::Inviting {
                channel,
                zap,
                producer,
            } => (channel.clone(), zap.clone(), *producer),
            _ => (String::new(), None, false),
        };
        let result = match failure {
            Some(f) => Err(f),
            None => match (
                Dialog::uac(&invite, resp, false),
                offer.accept_answer(&resp.body),
            ) {
                (Ok(Dialog::Confirmed(d)), Ok(answer)) => {
                    let seq = invite.cseq().map(|c| c.seq).unwrap_or(1);
                    let mut ack = d.ack(seq);
                    ack.headers.push_front(HeaderName::VIA, self.via());
                    self.send_sip(&Message::Request(ack));
                    let media = answer.media().first();
                    self.relay_rtcp = media.and_then(|m| m.rtcp_addr());
                    self.source = media.and_then(|m| m.rtp_addr());
                    if producer {
                        //= design "Personal channel": the 2xx's Contact names the channel.
                        channel = resp
                            .contact()
                            .ok()
                            .flatten()
                            .and_then(|c| c.uri.user)
                            .unwrap_or_default();
                        if let Some(ingest) = self.source {
                            let cfg = media_relay::testpattern::TestPatternConfig {
                                packetizer: media_relay::h264::PacketizerConfig {
                                    ssrc: self.rtcp_ssrc,
                                    ..Default::default()
                                },
                                ..Default::default()
                            };
                            self.producing = Some(Producing {
                                ingest,
                                pattern: media_relay::testpattern::TestPattern::new(cfg, now),
                            });
                        }
                    } else {
                        self.rtcp.start(now);
                        // The relay's per-viewer SSRC, when the answer says it (RFC 5576):
                        // the driver then routes this path's packets without guessing.
                        if let Some(ssrc) = sdp_ssrc(&resp.body) {
                            if self.path.ssrc != Some(ssrc) {
                                self.path = RtpPath::default();
                            }
                            self.path.ssrc = Some(ssrc);
                            self.path.announced = true;
                        }
                    }
                    self.session = Session::Active {
                        dialog: Box::new(d),
                        channel: channel.clone(),
                        invite_seq: seq,
                    };
                    if producer && self.producing.is_none() {
                        Err(Failure::BadAnswer)
                    } else {
                        Ok(now - started)
                    }
                }
                _ => Err(Failure::BadAnswer),
            },
        };
        if result.is_err() && !matches!(self.session, Session::Active { .. }) {
            self.session = Session::Idle;
            self.end_media();
            self.pending = None;
        }
        if producer {
            self.events.push_back(UeEvent::Created { channel, result });
            return;
        }
        match zap {
            None => self.events.push_back(UeEvent::Joined { channel, result }),
            Some((method, ch)) => {
                if let Err(f) = result {
                    self.events.push_back(UeEvent::Zapped {
                        method,
                        channel: ch,
                        result: Err(f),
                    });
                } else if let Some(p) = &mut self.pending {
                    p.armed = true;
                }
            }
        }
    }

    /// An RTP or RTCP datagram that the driver routed to this UE (RTCP: the relay's SR
    /// about this viewer's stream, or an RSI from its feedback target).
    pub fn handle_media(&mut self, now: Instant, bytes: &[u8]) {
        if media_relay::rtp::is_rtcp(bytes) {
            if !matches!(self.session, Session::Idle | Session::Leaving) {
                self.rtcp.on_rtcp(now, self.path.ssrc, bytes);
            }
            return;
        }
        let Ok(info) = media_relay::rtp::parse(bytes) else {
            return;
        };
        if matches!(self.session, Session::Idle | Session::Leaving) {
            return;
        }
        match self.path.ssrc {
            None => self.path.ssrc = Some(info.ssrc),
            Some(s) if s != info.ssrc => return, // stale packet of an old path
            Some(_) => {}
        }
        // Loss: forward sequence gaps (RFC 3550 A.1 style, no probation).
        if let Some(last) = self.path.last_seq {
            let d = info.sequence.wrapping_sub(last);
            if d == 0 || d > 0x8000 {
                return; // duplicate or late (reordered) packet
            }
            self.path.lost += u64::from(d - 1);
            self.media.lost += u64::from(d - 1);
            if info.sequence < last {
                self.path.cycles = self.path.cycles.wrapping_add(1 << 16);
            }
        }
        self.path.last_seq = Some(info.sequence);
        self.path.received += 1;
        self.media.packets += 1;
        // Jitter, RFC 3550 A.8: arrival in timestamp units (90 kHz).
        let epoch = *self.epoch.get_or_insert(now);
        let arrival = now.duration_since(epoch).as_secs_f64() * 90_000.0;
        let transit = arrival - f64::from(info.timestamp);
        if let Some(prev) = self.path.last_transit {
            let mut d = (transit - prev).abs();
            // A timestamp wrap or source jump is not jitter.
            if d > 90_000.0 * 10.0 {
                d = self.media.jitter_ts;
            }
            self.media.jitter_ts += (d - self.media.jitter_ts) / 16.0;
        }
        self.path.last_transit = Some(transit);
        if let Some(last) = self.last_packet {
            self.media.gap_max = self.media.gap_max.max(now.saturating_duration_since(last));
        }
        self.last_packet = Some(now);
        if let Some(m) = self.moving.take() {
            // The first packet of the new relay's path: the picture is back.
            let from = m.last_before.unwrap_or(m.since);
            self.events
                .push_back(UeEvent::Moved(Ok(now.saturating_duration_since(from))));
        }
        let key = media_relay::h264::payload_starts_key_frame(info.payload(bytes));
        if let Some(p) = &mut self.pending {
            if p.zap.is_none() && !p.got_packet {
                p.got_packet = true;
                self.events.push_back(UeEvent::FirstPacket(now - p.started));
            }
            // A key frame that arrived before the join/zap was sent is the old channel's.
            if key && p.armed && now >= p.started {
                let p = self.pending.take().expect("checked");
                let d = now - p.started;
                match p.zap {
                    None => self.events.push_back(UeEvent::FirstFrame(d)),
                    Some((method, channel)) => self.events.push_back(UeEvent::Zapped {
                        method,
                        channel,
                        result: Ok(d),
                    }),
                }
            }
        }
    }

    /// Sends an RTCP compound now: RR about the current stream + SDES CNAME, the active
    /// vote if it still belongs here, and BYE if `bye` (a vote then goes in a compound of its
    /// own first, since the relay drops a viewer on BYE before reading the rest). Nothing
    /// without a relay RTCP address or a known stream SSRC.
    fn send_report(&mut self, now: Instant, bye: bool) {
        let (Some(to), Some(ssrc)) = (self.relay_rtcp, self.path.ssrc) else {
            return;
        };
        let expected = self.path.received + self.path.lost;
        let rx = Reception {
            ssrc,
            ext_max_seq: self
                .path
                .cycles
                .wrapping_add(u32::from(self.path.last_seq.unwrap_or(0))),
            received: self.path.received,
            expected,
            jitter: self.media.jitter_ts.clamp(0.0, f64::from(u32::MAX)) as u32,
        };
        let vote = self.vote_here(now);
        let mut push = |bytes: Option<Vec<u8>>| {
            if let Some(b) = bytes {
                self.out.push_back(Transmit::Rtcp {
                    to,
                    bytes: Bytes::from(b),
                });
            }
        };
        if bye {
            if vote.is_some() {
                push(self.rtcp.compound(now, &rx, vote, false));
            }
            push(self.rtcp.compound(now, &rx, None, true));
        } else {
            push(self.rtcp.compound(now, &rx, vote, false));
        }
    }

    /// The `(poll, option)` to put in a compound at `now`: the active vote while the poll is
    /// open and the viewer is in the session and on the channel it voted in. Not while our
    /// re-INVITE zap is under way: the relay may have switched the channel already.
    fn vote_here(&self, now: Instant) -> Option<(u32, u32)> {
        let v = self.vote.as_ref()?;
        let here = match &self.session {
            Session::Active { channel, .. } => *channel == v.channel,
            _ => false,
        } && !self
            .ops
            .values()
            .any(|(op, _)| matches!(op, Op::Reinvite { .. }));
        (here && now < v.until && self.session_epoch == v.epoch).then_some((v.poll, v.option))
    }

    /// Votes `option` in `poll` on the channel being watched: an APP `VOTE` in an RTCP
    /// compound at once (the report interval restarts from here), repeated in every
    /// compound until `until` (module docs). `NoSession` unless a viewer's session is active
    /// with a known stream and relay RTCP address.
    pub fn vote(
        &mut self,
        now: Instant,
        poll: u32,
        option: u32,
        until: Instant,
    ) -> Result<(), UeError> {
        let Session::Active { channel, .. } = &self.session else {
            return Err(UeError::NoSession);
        };
        if self.is_producer() || self.path.ssrc.is_none() || self.relay_rtcp.is_none() {
            return Err(UeError::NoSession);
        }
        self.vote = Some(ActiveVote {
            poll,
            option,
            channel: channel.clone(),
            epoch: self.session_epoch,
            until,
        });
        self.send_report(now, false);
        Ok(())
    }

    /// The RTCP settings (scenario `[rtcp]`).
    pub fn set_rtcp(&mut self, cfg: RtcpConfig) {
        self.rtcp.set_config(cfg);
    }

    /// What this UE's RTCP sent and received.
    #[must_use]
    pub fn rtcp_counters(&self) -> RtcpCounters {
        self.rtcp.counters()
    }
}

/// A vote being repeated.
#[derive(Debug, Clone)]
struct ActiveVote {
    poll: u32,
    option: u32,
    channel: String,
    epoch: u64,
    until: Instant,
}

/// The first `a=ssrc:<ssrc>` of an SDP body (RFC 5576 section 4.1), if any.
#[must_use]
pub fn sdp_ssrc(body: &[u8]) -> Option<u32> {
    std::str::from_utf8(body).ok()?.lines().find_map(|l| {
        let v = l.trim().strip_prefix("a=ssrc:")?;
        v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    })
}

fn self_uri(cfg: &UeConfig, user: &str) -> Uri {
    let host = Host::parse(&cfg.domain).unwrap_or(Host::Domain(cfg.domain.clone()));
    let mut u = Uri::sip(Some(user), host);
    if cfg.target.port() != 5060 {
        u.port = Some(cfg.target.port());
    }
    u
}

/// The channel ids of an `iptv-channels` NOTIFY body (README: a JSON array of objects with
/// `id`); `None` when the body is not such an array.
#[must_use]
pub fn parse_channel_list(body: &[u8]) -> Option<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Entry {
        id: String,
    }
    let v: Vec<Entry> = serde_json::from_slice(body).ok()?;
    Some(v.into_iter().map(|e| e.id).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const AS: &str = "127.0.0.1:5070";

    /// The virtual clock's origin (the only clock read; everything after is arithmetic).
    #[expect(clippy::disallowed_methods)]
    fn origin() -> Instant {
        Instant::now()
    }

    fn ue() -> Ue {
        Ue::new(UeConfig {
            index: 3,
            user: "ue3".into(),
            domain: "127.0.0.1".into(),
            target: AS.parse().unwrap(),
            local_sip: "127.0.0.1:6000".parse().unwrap(),
            media_ip: "127.0.0.1".parse().unwrap(),
        })
    }

    fn sent_request(ue: &mut Ue) -> Request {
        match ue.poll_transmit() {
            Some(Transmit::Sip { bytes, .. }) => match Message::parse(&bytes).unwrap() {
                Message::Request(r) => r,
                Message::Response(r) => panic!("sent a response {}", r.status),
            },
            other => panic!("expected SIP, got {other:?}"),
        }
    }

    fn answer(req: &Request, channel: &str) -> Vec<u8> {
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                   m=video 7000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
                   a=fmtp:96 packetization-mode=1\r\na=rtcp:7001\r\na=sendonly\r\n";
        let mut r = Response::for_request(req, StatusCode::OK, "").with_to_tag("as1");
        r.headers
            .push(HeaderName::CONTACT, format!("<sip:{channel}@{AS}>"));
        r.headers.push(HeaderName::CONTENT_TYPE, "application/sdp");
        r.body = Bytes::from(sdp);
        r.to_bytes()
    }

    fn joined(ue: &mut Ue, now: Instant) -> Request {
        ue.join(now, "news", 5004).unwrap();
        let invite = sent_request(ue);
        assert_eq!(invite.method, Method::INVITE);
        assert_eq!(invite.uri.user.as_deref(), Some("news"));
        assert!(invite.call_id().unwrap().starts_with("ue3-"));
        assert!(std::str::from_utf8(&invite.body)
            .unwrap()
            .contains("a=recvonly"));
        let t = now + Duration::from_millis(5);
        ue.handle_sip(t, AS.parse().unwrap(), &answer(&invite, "news"));
        let ack = sent_request(ue);
        assert_eq!(ack.method, Method::ACK);
        assert_eq!(ack.cseq().unwrap().seq, invite.cseq().unwrap().seq);
        assert_eq!(
            ue.poll_event(),
            Some(UeEvent::Joined {
                channel: "news".into(),
                result: Ok(Duration::from_millis(5))
            })
        );
        assert_eq!(ue.channel(), Some("news"));
        invite
    }

    fn rtp(seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 96];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&0xabcdu32.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    /// One RTCP compound the UE queued: `(to, vote, bye, report block SSRC)`.
    type Sent = (SocketAddr, Option<(u32, u32)>, bool, Option<u32>);

    /// The RTCP compounds the UE queued; SIP skipped.
    fn rtcp_out(ue: &mut Ue) -> Vec<Sent> {
        use rtcp_types::{Compound, Packet};
        let mut v = Vec::new();
        while let Some(t) = ue.poll_transmit() {
            let Transmit::Rtcp { to, bytes } = t else {
                continue;
            };
            let (mut vote, mut bye, mut about) = (None, false, None);
            for p in Compound::parse(&bytes).unwrap() {
                match p.unwrap() {
                    Packet::Rr(rr) => about = rr.report_blocks().next().map(|b| b.ssrc()),
                    Packet::App(a) => {
                        let d = a.data();
                        vote = Some((
                            u32::from_be_bytes([d[0], d[1], d[2], d[3]]),
                            u32::from_be_bytes([d[4], d[5], d[6], d[7]]),
                        ));
                    }
                    Packet::Bye(_) => bye = true,
                    _ => {}
                }
            }
            v.push((to, vote, bye, about));
        }
        v
    }

    /// Fires the UE's timers until it sends RTCP (other timers, and reconsideration of the
    /// RTCP timer, may come first); the time and the compounds.
    fn next_rtcp(ue: &mut Ue) -> (Instant, Vec<Sent>) {
        for _ in 0..50 {
            let t = ue.poll_timeout().unwrap();
            ue.handle_timeout(t);
            while ue.poll_event().is_some() {}
            let out = rtcp_out(ue);
            if !out.is_empty() {
                return (t, out);
            }
        }
        panic!("no RTCP within 50 timer expiries");
    }

    #[test]
    fn repeated_votes_survive_loss_and_count_once_at_the_relays_feedback_target() {
        use media_relay::control::ChannelId;
        use media_relay::feedback::live::LiveFeedback;
        let t0 = origin();
        let ch = ChannelId("news".into());
        let mut fb = LiveFeedback::new();
        let mut ues = Vec::new();
        for k in 0..40u32 {
            let mut ue = ue();
            joined(&mut ue, t0);
            ue.handle_media(
                t0 + Duration::from_millis(10),
                &rtp_from(1000 + k, 1, 0, &[0x65]),
            );
            while ue.poll_event().is_some() {}
            ues.push(ue);
        }
        // Every viewer votes at 1 s; every one of those datagrams is lost.
        let close = t0 + Duration::from_secs(30);
        let mut expected = std::collections::BTreeMap::new();
        for (k, ue) in ues.iter_mut().enumerate() {
            let option = k as u32 % 3;
            *expected.entry(option).or_insert(0u64) += 1;
            ue.vote(t0 + Duration::from_secs(1), 9, option, close)
                .unwrap();
            while ue.poll_transmit().is_some() {}
        }
        // 40 s of virtual time; a third of the later datagrams are lost too: every third
        // compound of each viewer (per viewer, so the losses do not depend on how the
        // randomised RFC 3550 intervals of different viewers interleave).
        let mut sent = 0u64;
        let mut sent_by = vec![0u64; ues.len()];
        let mut t = t0 + Duration::from_secs(1);
        while t < t0 + Duration::from_secs(40) {
            t += Duration::from_millis(100);
            for (k, ue) in ues.iter_mut().enumerate() {
                if ue.poll_timeout().is_some_and(|d| d <= t) {
                    ue.handle_timeout(t);
                }
                while let Some(x) = ue.poll_transmit() {
                    if let Transmit::Rtcp { bytes, .. } = x {
                        sent += 1;
                        sent_by[k] += 1;
                        if sent_by[k] % 3 != 0 {
                            let from = (
                                std::net::SocketAddr::from(([127, 0, 0, 1], 20_000 + k as u16)),
                                media_relay::feedback::live::ViewerOrigin::ViewerAddress,
                            );
                            let _ = fb.on_viewer_rtcp(t, &ch, 1000 + k as u32, from, &bytes);
                        }
                    }
                }
                while ue.poll_event().is_some() {}
            }
        }
        let s = fb.summary(t, &ch);
        assert_eq!(s.voters, 40);
        assert_eq!(s.votes[&9], expected, "each viewer's vote once, none lost");
        assert!(sent >= 40 * 4, "about one report per 5 s each: {sent}");
    }

    #[test]
    fn a_vote_goes_at_once_repeats_until_the_poll_closes_and_stays_on_its_channel() {
        let relay: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        let mut ue = ue();
        let t0 = origin();
        joined(&mut ue, t0);
        let until = t0 + Duration::from_secs(60);
        assert_eq!(
            ue.vote(t0, 7, 1, until),
            Err(UeError::NoSession),
            "no stream yet"
        );
        ue.handle_media(t0 + Duration::from_millis(10), &rtp(1, 0, &[0x65]));
        while ue.poll_event().is_some() {}
        let t1 = t0 + Duration::from_secs(1);
        ue.vote(t1, 7, 1, until).unwrap();
        assert_eq!(
            rtcp_out(&mut ue),
            [(relay, Some((7, 1)), false, Some(0xabcd))]
        );
        // The interval restarts at the vote; the next report repeats it.
        let (next, out) = next_rtcp(&mut ue);
        assert!(next > t1 + Duration::from_secs(2), "{:?}", next - t1);
        assert_eq!(out, [(relay, Some((7, 1)), false, Some(0xabcd))]);
        // A re-INVITE zap sends it once more first; on the new channel it is not repeated.
        let t2 = next + Duration::from_millis(100);
        ue.zap(t2, "sport", ZapMethod::Reinvite, 0).unwrap();
        let out: Vec<Transmit> = std::iter::from_fn(|| ue.poll_transmit()).collect();
        assert!(matches!(&out[0], Transmit::Rtcp { .. }), "{out:?}");
        let Some(Transmit::Sip { bytes, .. }) = out.get(1) else {
            panic!("{out:?}")
        };
        let Message::Request(re) = Message::parse(bytes).unwrap() else {
            panic!("not a request")
        };
        ue.handle_sip(t2, AS.parse().unwrap(), &answer(&re, "sport"));
        while ue.poll_event().is_some() {}
        let _ = sent_request(&mut ue); // ACK
        assert_eq!(ue.channel(), Some("sport"));
        let (t3, out) = next_rtcp(&mut ue);
        assert_eq!(out, [(relay, None, false, Some(0xabcd))]);
        // Leaving: an RTCP BYE (RR + SDES + BYE) with the SIP BYE.
        ue.leave(t3).unwrap();
        assert_eq!(rtcp_out(&mut ue), [(relay, None, true, Some(0xabcd))]);
        assert_eq!(ue.rtcp_counters().byes, 1);
        assert_eq!(ue.rtcp_counters().vote_packets, 3);

        // Still on the poll's channel: the vote goes once more before the BYE; after the
        // poll closes it is no longer sent.
        let mut ue = self::ue();
        joined(&mut ue, t0);
        ue.handle_media(t0 + Duration::from_millis(10), &rtp(1, 0, &[0x65]));
        ue.vote(t1, 7, 0, t1 + Duration::from_secs(30)).unwrap();
        let _ = rtcp_out(&mut ue);
        ue.leave(t1 + Duration::from_secs(2)).unwrap();
        let out = rtcp_out(&mut ue);
        assert_eq!(
            out.iter().map(|c| (c.1, c.2)).collect::<Vec<_>>(),
            [(Some((7, 0)), false), (None, true)]
        );
        let mut ue = self::ue();
        joined(&mut ue, t0);
        ue.handle_media(t0 + Duration::from_millis(10), &rtp(1, 0, &[0x65]));
        ue.vote(t1, 7, 0, t1 + Duration::from_secs(1)).unwrap();
        let _ = rtcp_out(&mut ue);
        assert_eq!(next_rtcp(&mut ue).1[0].1, None, "the poll closed");
    }

    #[test]
    fn join_acks_and_measures_media() {
        let mut ue = ue();
        let t0 = origin();
        joined(&mut ue, t0);
        // A non-key packet, then a lost one, then an IDR (NAL type 5).
        ue.handle_media(t0 + Duration::from_millis(10), &rtp(1, 0, &[0x41, 0]));
        ue.handle_media(t0 + Duration::from_millis(30), &rtp(3, 1800, &[0x65, 0]));
        assert_eq!(
            ue.poll_event(),
            Some(UeEvent::FirstPacket(Duration::from_millis(10)))
        );
        assert_eq!(
            ue.poll_event(),
            Some(UeEvent::FirstFrame(Duration::from_millis(30)))
        );
        assert_eq!(ue.media().packets, 2);
        assert_eq!(ue.media().lost, 1);
        assert_eq!(ue.media().gap_max, Duration::from_millis(20));
        assert_eq!(ue.rtp_ssrc(), Some(0xabcd));
    }

    #[test]
    fn a_403_is_a_refusal_with_its_reason_and_a_refused_zap_keeps_the_channel() {
        let t0 = origin();
        // A join refused by the AAA: the reason phrase comes with the event.
        let mut ue = ue();
        ue.join(t0, "news", 5004).unwrap();
        let invite = sent_request(&mut ue);
        let no = Response::for_request(&invite, StatusCode(403), "Unknown subscriber")
            .with_to_tag("as1");
        ue.handle_sip(t0, AS.parse().unwrap(), &no.to_bytes());
        while ue.poll_transmit().is_some() {}
        let ev = ue.poll_event();
        let Some(UeEvent::Joined { result: Err(f), .. }) = ev else {
            panic!("{ev:?}")
        };
        assert_eq!(f, Failure::Refused("Unknown subscriber".into()));
        assert_eq!(f.refusal(), Some("Unknown subscriber"));
        assert_eq!(f.reason(), "403");
        assert_eq!(Failure::Status(404).refusal(), None);
        assert_eq!(ue.channel(), None);
        // A re-INVITE zap refused: the viewer stays on its channel.
        let mut ue = self::ue();
        joined(&mut ue, t0);
        let t1 = t0 + Duration::from_secs(1);
        ue.zap(t1, "sport", ZapMethod::Reinvite, 0).unwrap();
        let re = sent_request(&mut ue);
        let no = Response::for_request(&re, StatusCode(403), "Channel sport not in subscription")
            .with_to_tag("as1");
        ue.handle_sip(t1, AS.parse().unwrap(), &no.to_bytes());
        while ue.poll_transmit().is_some() {}
        assert_eq!(
            ue.poll_event(),
            Some(UeEvent::Zapped {
                method: ZapMethod::Reinvite,
                channel: "sport".into(),
                result: Err(Failure::Refused("Channel sport not in subscription".into()))
            })
        );
        assert_eq!(ue.channel(), Some("news"));
    }

    #[test]
    fn reinvite_zap_names_the_channel_and_times_the_key_frame() {
        let mut ue = ue();
        let t0 = origin();
        let invite = joined(&mut ue, t0);
        ue.handle_media(t0, &rtp(1, 0, &[0x65]));
        while ue.poll_event().is_some() {}
        let t1 = t0 + Duration::from_secs(1);
        ue.zap(t1, "sport", ZapMethod::Reinvite, 0).unwrap();
        let re = sent_request(&mut ue);
        assert_eq!(re.method, Method::INVITE);
        assert_eq!(re.uri.user.as_deref(), Some("sport"));
        assert_eq!(re.call_id().unwrap(), invite.call_id().unwrap());
        assert_eq!(re.cseq().unwrap().seq, invite.cseq().unwrap().seq + 1);
        ue.handle_media(t1 + Duration::from_millis(2), &rtp(2, 90, &[0x67]));
        ue.handle_sip(
            t1 + Duration::from_millis(4),
            AS.parse().unwrap(),
            &answer(&re, "sport"),
        );
        assert_eq!(sent_request(&mut ue).method, Method::ACK);
        assert_eq!(
            ue.poll_event(),
            Some(UeEvent::Zapped {
                method: ZapMethod::Reinvite,
                channel: "sport".into(),
                result: Ok(Duration::from_millis(2))
            })
        );
        assert_eq!(ue.channel(), Some("sport"));
    }

    /// A zap answered with another relay's address and SSRC (the AS moved the viewer to a
    /// relay that has the channel): the UE follows the answer, drops the old path's packets
    /// and takes the new path's key frame as the zap's end; RTCP goes to the new relay.
    #[test]
    fn a_zap_answer_naming_another_relay_moves_the_path() {
        let mut ue = ue();
        let t0 = origin();
        joined(&mut ue, t0);
        ue.handle_media(t0, &rtp(1, 0, &[0x65]));
        while ue.poll_event().is_some() {}
        assert_eq!(ue.rtp_ssrc(), Some(0xabcd));
        let t1 = t0 + Duration::from_secs(1);
        ue.zap(t1, "sport", ZapMethod::Reinvite, 0).unwrap();
        let re = sent_request(&mut ue);
        let mut ok = Message::parse(&answer(&re, "sport")).unwrap();
        if let Message::Response(r) = &mut ok {
            let b = String::from_utf8(r.body.to_vec())
                .unwrap()
                .replace("m=video 7000", "m=video 7100")
                .replace("a=rtcp:7001", "a=rtcp:7101")
                + "a=ssrc:4660 cname:relay-1\r\n";
            r.body = Bytes::from(b);
        }
        ue.handle_sip(
            t1 + Duration::from_millis(4),
            AS.parse().unwrap(),
            &ok.to_bytes(),
        );
        assert_eq!(sent_request(&mut ue).method, Method::ACK);
        assert_eq!(ue.rtp_ssrc(), Some(0x1234));
        assert!(ue.ssrc_announced());
        assert_eq!(ue.media_source(), Some("127.0.0.1:7100".parse().unwrap()));
        // A key frame of the old path is stale: no zap yet.
        ue.handle_media(t1 + Duration::from_millis(5), &rtp(2, 90, &[0x65]));
        assert_eq!(ue.poll_event(), None);
        let mut p = rtp(100, 900, &[0x65]);
        p[8..12].copy_from_slice(&0x1234u32.to_be_bytes());
        ue.handle_media(t1 + Duration::from_millis(9), &p);
        assert_eq!(
            ue.poll_event(),
            Some(UeEvent::Zapped {
                method: ZapMethod::Reinvite,
                channel: "sport".into(),
                result: Ok(Duration::from_millis(9))
            })
        );
        assert_eq!(ue.channel(), Some("sport"));
        let (_, sent) = next_rtcp(&mut ue);
        assert!(sent
            .iter()
            .all(|(to, ..)| *to == "127.0.0.1:7101".parse().unwrap()));
        assert!(sent.iter().any(|(.., about)| *about == Some(0x1234)));
    }

    #[test]
    fn bye_both_ways() {
        let mut ue = ue();
        let t0 = origin();
        let invite = joined(&mut ue, t0);
        // The AS's BYE gets 200.
        let mut bye = Request::new(Method::BYE, Uri::parse("sip:ue3@127.0.0.1:6000").unwrap());
        bye.headers.push(
            HeaderName::VIA,
            "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKas1",
        );
        bye.headers.push(
            HeaderName::FROM,
            format!("{};tag=as1", invite.headers.get(&HeaderName::TO).unwrap()),
        );
        bye.headers.push(
            HeaderName::TO,
            invite.headers.get(&HeaderName::FROM).unwrap(),
        );
        bye.headers
            .push(HeaderName::CALL_ID, invite.call_id().unwrap());
        bye.headers.push(HeaderName::CSEQ, "1 BYE");
        ue.handle_sip(t0, AS.parse().unwrap(), &bye.to_bytes());
        match ue.poll_transmit() {
            Some(Transmit::Sip { bytes, .. }) => {
                let Message::Response(r) = Message::parse(&bytes).unwrap() else {
                    panic!("not a response")
                };
                assert_eq!(r.status, StatusCode::OK);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(ue.poll_event(), Some(UeEvent::RemoteBye));
        assert!(ue.is_idle());
        // Our own BYE after a new join.
        let mut ue2 = self::ue();
        joined(&mut ue2, t0);
        ue2.leave(t0).unwrap();
        let bye = sent_request(&mut ue2);
        assert_eq!(bye.method, Method::BYE);
        let ok = Response::for_request(&bye, StatusCode::OK, "");
        ue2.handle_sip(t0, AS.parse().unwrap(), &ok.to_bytes());
        assert_eq!(ue2.poll_event(), Some(UeEvent::Left));
    }

    #[test]
    fn notify_list_parses_and_gets_200() {
        let body = br#"[{"id":"news","name":"N","kind":"producer","owner":null,"created_ms":1},{"id":"sport","name":"S","kind":"producer","owner":null,"created_ms":2}]"#;
        assert_eq!(parse_channel_list(body).unwrap(), ["news", "sport"]);
        assert!(parse_channel_list(b"{").is_none());
        let mut ue = ue();
        let t0 = origin();
        ue.subscribe(t0);
        let sub = sent_request(&mut ue);
        assert_eq!(sub.headers.get(&HeaderName::EVENT), Some("iptv-channels"));
        let mut n = Request::new(
            Method::NOTIFY,
            Uri::parse("sip:ue3@127.0.0.1:6000").unwrap(),
        );
        n.headers.push(
            HeaderName::VIA,
            "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKn1",
        );
        n.headers
            .push(HeaderName::FROM, "<sip:channels@127.0.0.1>;tag=as2");
        n.headers
            .push(HeaderName::TO, sub.headers.get(&HeaderName::FROM).unwrap());
        n.headers.push(HeaderName::CALL_ID, sub.call_id().unwrap());
        n.headers.push(HeaderName::CSEQ, "1 NOTIFY");
        n.headers.push(HeaderName::EVENT, "iptv-channels");
        n.headers
            .push(HeaderName::SUBSCRIPTION_STATE, "active;expires=600");
        n.body = Bytes::from_static(body);
        ue.handle_sip(t0, AS.parse().unwrap(), &n.to_bytes());
        let Some(Transmit::Sip { bytes, .. }) = ue.poll_transmit() else {
            panic!("no answer")
        };
        let Message::Response(r) = Message::parse(&bytes).unwrap() else {
            panic!("not a response")
        };
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            ue.poll_event(),
            Some(UeEvent::ChannelList(vec!["news".into(), "sport".into()]))
        );
    }

    #[test]
    fn invite_times_out_by_timer_b() {
        let mut ue = ue();
        let t0 = origin();
        ue.join(t0, "news", 5004).unwrap();
        let mut t = t0;
        let mut sent = 0;
        for _ in 0..100 {
            while ue.poll_transmit().is_some() {
                sent += 1;
            }
            let Some(next) = ue.poll_timeout() else { break };
            t = next;
            ue.handle_timeout(t);
            if let Some(ev) = ue.poll_event() {
                assert!(matches!(
                    ev,
                    UeEvent::Joined {
                        result: Err(Failure::Timeout),
                        ..
                    }
                ));
                break;
            }
        }
        assert!(sent >= 6, "INVITE retransmitted by timer A ({sent})");
        assert_eq!(t - t0, Duration::from_secs(32));
        assert!(ue.is_idle());
    }

    fn rtp_from(ssrc: u32, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = rtp(seq, ts, payload);
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        p
    }

    /// The AS's re-INVITE in the dialog of `invite` (answered `as1`), naming a new relay.
    fn as_reinvite(invite: &Request, cseq: u32, sdp: &str) -> Vec<u8> {
        let mut r = Request::new(
            Method::INVITE,
            Uri::parse("sip:ue3@127.0.0.1:6000").unwrap(),
        );
        r.headers.push(
            HeaderName::VIA,
            format!("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKmove{cseq}"),
        );
        r.headers.push(
            HeaderName::FROM,
            format!("{};tag=as1", invite.headers.get(&HeaderName::TO).unwrap()),
        );
        r.headers.push(
            HeaderName::TO,
            invite.headers.get(&HeaderName::FROM).unwrap(),
        );
        r.headers
            .push(HeaderName::CALL_ID, invite.call_id().unwrap());
        r.headers.push(HeaderName::CSEQ, format!("{cseq} INVITE"));
        r.headers
            .push(HeaderName::CONTACT, format!("<sip:news@{AS}>"));
        r.headers.push(HeaderName::CONTENT_TYPE, "application/sdp");
        r.body = Bytes::from(sdp.to_owned());
        r.to_bytes()
    }

    const MOVE_SDP: &str =
        "v=0\r\no=- 2 2 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n\
        m=video 7100 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\n\
        a=rtcp:7101\r\na=rtcp-unicast:rsi\r\na=ssrc:4660 cname:relay-1\r\na=sendonly\r\n";

    /// The next final response the UE sent (a 100 Trying from the INVITE server transaction
    /// is skipped).
    fn sent_response(ue: &mut Ue) -> Response {
        loop {
            match ue.poll_transmit() {
                Some(Transmit::Sip { bytes, .. }) => match Message::parse(&bytes).unwrap() {
                    Message::Response(r) if r.status.is_provisional() => {}
                    Message::Response(r) => return r,
                    Message::Request(r) => panic!("sent a request {}", r.method.as_str()),
                },
                other => panic!("expected SIP, got {other:?}"),
            }
        }
    }

    #[test]
    fn the_as_reinvite_moves_the_path_and_the_gap_spans_the_move() {
        let mut ue = ue();
        let t0 = origin();
        let invite = joined(&mut ue, t0);
        ue.handle_media(t0 + Duration::from_millis(10), &rtp(1, 0, &[0x65]));
        ue.handle_media(t0 + Duration::from_millis(50), &rtp(2, 3600, &[0x41]));
        while ue.poll_event().is_some() {}
        // The relay dies at ~50 ms; the AS re-INVITEs us to relay 1 at 300 ms.
        let t1 = t0 + Duration::from_millis(300);
        ue.handle_sip(t1, AS.parse().unwrap(), &as_reinvite(&invite, 7, MOVE_SDP));
        let ok = sent_response(&mut ue);
        assert_eq!(ok.status, StatusCode::OK);
        assert!(ok.headers.get(&HeaderName::CONTACT).is_some());
        let body = std::str::from_utf8(&ok.body).unwrap();
        assert!(body.contains("a=recvonly"), "{body}");
        assert!(
            body.contains("m=video 5004 "),
            "same local RTP port: {body}"
        );
        assert_eq!(ue.rtp_ssrc(), Some(4660), "the new path's SSRC from a=ssrc");
        assert!(ue.ssrc_announced());
        assert_eq!(ue.media_source(), Some("127.0.0.2:7100".parse().unwrap()));
        assert!(!ue.is_watching(), "no own re-INVITE before the ACK");
        // A late packet of the old relay does not count; the new relay's first one does.
        ue.handle_media(t1, &rtp(3, 7200, &[0x41]));
        assert_eq!(ue.poll_event(), None);
        let t2 = t0 + Duration::from_millis(420);
        ue.handle_media(t2, &rtp_from(4660, 900, 1234, &[0x65]));
        assert_eq!(
            ue.poll_event(),
            Some(UeEvent::Moved(Ok(Duration::from_millis(370))))
        );
        assert_eq!(ue.media().gap_max, Duration::from_millis(370));
        assert_eq!(ue.media().lost, 0, "a new path restarts the sequence check");
        // RTCP now goes to relay 1.
        ue.handle_timeout(t0 + Duration::from_secs(4));
        let rtcp: Vec<SocketAddr> = std::iter::from_fn(|| ue.poll_transmit())
            .filter_map(|t| match t {
                Transmit::Rtcp { to, .. } => Some(to),
                _ => None, // the 200 OK again: no ACK yet (RFC 3261 13.3.1.4)
            })
            .collect();
        assert_eq!(rtcp, ["127.0.0.2:7101".parse().unwrap()]);
        // The ACK of our 200 frees the session for our own re-INVITEs again.
        let mut ack = Request::new(Method::ACK, Uri::parse("sip:ue3@127.0.0.1:6000").unwrap());
        for h in [HeaderName::FROM, HeaderName::TO, HeaderName::CALL_ID] {
            ack.headers.push(h.clone(), ok.headers.get(&h).unwrap());
        }
        ack.headers.push(
            HeaderName::VIA,
            "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKack7",
        );
        ack.headers.push(HeaderName::CSEQ, "7 ACK");
        ue.handle_sip(t2, AS.parse().unwrap(), &ack.to_bytes());
        assert!(ue.is_watching());
        assert_eq!(ue.channel(), Some("news"));
    }

    #[test]
    fn a_move_without_media_times_out() {
        let mut ue = ue();
        let t0 = origin();
        let invite = joined(&mut ue, t0);
        ue.handle_media(t0, &rtp(1, 0, &[0x65]));
        while ue.poll_event().is_some() {}
        ue.handle_sip(t0, AS.parse().unwrap(), &as_reinvite(&invite, 2, MOVE_SDP));
        assert_eq!(sent_response(&mut ue).status, StatusCode::OK);
        let deadline = ue.poll_timeout().unwrap();
        assert!(deadline <= t0 + Duration::from_secs(3));
        ue.handle_timeout(t0 + Duration::from_secs(3));
        let evs: Vec<_> = std::iter::from_fn(|| ue.poll_event()).collect();
        assert!(
            evs.contains(&UeEvent::Moved(Err(Failure::Timeout))),
            "{evs:?}"
        );
    }

    #[test]
    fn a_reinvite_during_our_own_gets_491_and_a_bad_offer_488() {
        let mut ue = ue();
        let t0 = origin();
        let invite = joined(&mut ue, t0);
        ue.zap(t0, "sport", ZapMethod::Reinvite, 0).unwrap();
        assert_eq!(sent_request(&mut ue).method, Method::INVITE);
        ue.handle_sip(t0, AS.parse().unwrap(), &as_reinvite(&invite, 2, MOVE_SDP));
        assert_eq!(sent_response(&mut ue).status, StatusCode(491));
        assert_eq!(ue.rtp_ssrc(), None, "the path did not change");

        let mut ue = self::ue();
        let invite = joined(&mut ue, t0);
        ue.handle_sip(t0, AS.parse().unwrap(), &as_reinvite(&invite, 2, "garbage"));
        assert_eq!(sent_response(&mut ue).status, StatusCode(488));
        assert_eq!(
            ue.poll_event(),
            Some(UeEvent::Moved(Err(Failure::BadAnswer)))
        );
        // Out of order: CSeq 1 after 2.
        ue.handle_sip(t0, AS.parse().unwrap(), &as_reinvite(&invite, 1, MOVE_SDP));
        assert_eq!(sent_response(&mut ue).status, StatusCode(500));
    }

    #[test]
    fn the_answer_ssrc_names_the_path_before_any_packet() {
        let mut ue = ue();
        let t0 = origin();
        ue.join(t0, "news", 5004).unwrap();
        let invite = sent_request(&mut ue);
        let mut ok = Message::parse(&answer(&invite, "news")).unwrap();
        if let Message::Response(r) = &mut ok {
            let mut b = String::from_utf8(r.body.to_vec()).unwrap();
            b.push_str("a=ssrc:3735928559 cname:relay-0\r\n");
            r.body = Bytes::from(b);
        }
        ue.handle_sip(t0, AS.parse().unwrap(), &ok.to_bytes());
        assert_eq!(ue.rtp_ssrc(), Some(0xdead_beef));
        assert!(ue.ssrc_announced());
        assert!(!ue.awaiting_new_path());
        assert_eq!(sdp_ssrc(b"v=0\r\na=ssrc:12 cname:x\r\n"), Some(12));
        assert_eq!(sdp_ssrc(b"v=0\r\na=ssrc:x\r\n"), None);
    }

    #[test]
    fn a_producer_creates_its_channel_and_sends_the_clip() {
        let mut ue = ue();
        let t0 = origin();
        ue.produce(t0, "My Show", 5010).unwrap();
        assert!(ue.is_producer());
        let invite = sent_request(&mut ue);
        assert_eq!(invite.uri.user.as_deref(), Some(CREATION_USER));
        assert_eq!(invite.headers.get(&HeaderName::SUBJECT), Some("My Show"));
        let body = std::str::from_utf8(&invite.body).unwrap().to_owned();
        assert!(body.contains("a=sendonly"), "{body}");
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                   m=video 7200 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
                   a=fmtp:96 packetization-mode=1\r\na=rtcp:7201\r\na=recvonly\r\n";
        let mut r = Response::for_request(&invite, StatusCode::OK, "").with_to_tag("as9");
        r.headers
            .push(HeaderName::CONTACT, format!("<sip:my-show@{AS}>"));
        r.headers.push(HeaderName::CONTENT_TYPE, "application/sdp");
        r.body = Bytes::from(sdp);
        let t1 = t0 + Duration::from_millis(4);
        ue.handle_sip(t1, AS.parse().unwrap(), &r.to_bytes());
        assert_eq!(sent_request(&mut ue).method, Method::ACK);
        assert_eq!(
            ue.poll_event(),
            Some(UeEvent::Created {
                channel: "my-show".into(),
                result: Ok(Duration::from_millis(4))
            })
        );
        assert_eq!(ue.channel(), Some("my-show"));
        assert!(!ue.awaiting_new_path(), "a producer receives no media path");
        // Real time: the first frame (an IDR with SPS/PPS) is due at once, the next 40 ms on.
        let due = ue.poll_timeout().unwrap();
        assert_eq!(due, t1);
        ue.handle_timeout(due);
        let mut first = Vec::new();
        while let Some(t) = ue.poll_transmit() {
            match t {
                Transmit::Rtp { to, bytes } => {
                    assert_eq!(to, "127.0.0.1:7200".parse().unwrap());
                    first.push(bytes);
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(!first.is_empty());
        let keyed = first.iter().any(|p| {
            let info = media_relay::rtp::parse(p).unwrap();
            media_relay::h264::payload_starts_key_frame(info.payload(p))
        });
        assert!(keyed, "the clip starts with a key frame");
        assert_eq!(ue.poll_timeout().unwrap(), t1 + Duration::from_millis(40));
        // The AS moves the ingest (its relay died): answer sendonly, send to the new one.
        let mv = "v=0\r\no=- 5 5 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                  m=video 7300 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
                  a=fmtp:96 packetization-mode=1\r\na=rtcp:7301\r\na=recvonly\r\n";
        let mut re = Request::new(
            Method::INVITE,
            Uri::parse("sip:ue3@127.0.0.1:6000").unwrap(),
        );
        re.headers.push(
            HeaderName::VIA,
            "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKingest1",
        );
        re.headers.push(
            HeaderName::FROM,
            format!("{};tag=as9", invite.headers.get(&HeaderName::TO).unwrap()),
        );
        re.headers.push(
            HeaderName::TO,
            invite.headers.get(&HeaderName::FROM).unwrap(),
        );
        re.headers
            .push(HeaderName::CALL_ID, invite.call_id().unwrap());
        re.headers.push(HeaderName::CSEQ, "2 INVITE");
        re.headers.push(HeaderName::CONTENT_TYPE, "application/sdp");
        re.body = Bytes::from(mv);
        ue.handle_sip(t1, AS.parse().unwrap(), &re.to_bytes());
        let ok = sent_response(&mut ue);
        assert_eq!(ok.status, StatusCode::OK);
        assert!(std::str::from_utf8(&ok.body)
            .unwrap()
            .contains("a=sendonly"));
        assert_eq!(ue.poll_event(), Some(UeEvent::IngestMoved(Ok(()))));
        ue.handle_timeout(t1 + Duration::from_millis(40));
        let to: Vec<SocketAddr> = std::iter::from_fn(|| ue.poll_transmit())
            .filter_map(|t| match t {
                Transmit::Rtp { to, .. } => Some(to),
                _ => None,
            })
            .collect();
        assert!(!to.is_empty());
        assert!(to.iter().all(|a| *a == "127.0.0.1:7300".parse().unwrap()));
        ue.leave(t1).unwrap();
        assert_eq!(sent_request(&mut ue).method, Method::BYE);
        ue.handle_timeout(t1 + Duration::from_millis(80));
        assert!(
            !std::iter::from_fn(|| ue.poll_transmit()).any(|t| matches!(t, Transmit::Rtp { .. })),
            "no RTP after the BYE"
        );
    }
}
