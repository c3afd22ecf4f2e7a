//! One Diameter peer connection, sans-IO: the peer state machine of RFC 6733 section 5.6
//! (initiator and responder roles, election), capability exchange (5.3), the watchdog
//! (5.5, RFC 3539, in [`super::watchdog`]), disconnection (5.4), reconnection with bounded
//! exponential back-off, Hop-by-Hop / End-to-End identifiers (6.1.3), request time-outs and
//! answers matched by Hop-by-Hop identifier (6.2).
//!
//! # Run loop
//!
//! ```text
//!   driver                                   Peer
//!   ------                                   ----
//!   start(now) / connected(now)          ->  state machine
//!   accept(now, cer) (R-Conn-CER)        ->
//!   handle_bytes(now, side, bytes)       ->  framing (frame_len), decode, dispatch
//!   handle_timeout(now)                  ->  Tc, Tw, back-off, request deadlines
//!   poll_transmit() -> Transmit          <-  Connect / Send{side, bytes} / Close{side}, in order
//!   poll_event()    -> PeerEvent         <-  Open, Suspect, Closed, Request, Answer, RequestFailed
//!   poll_timeout()  -> Instant           <-  when to call handle_timeout next
//! ```
//!
//! A peer has up to two transport connections while an election runs (section 5.6.4): the
//! one we opened ([`Side::Initiator`]) and the one the peer opened ([`Side::Responder`]). Once
//! open, exactly one of them carries traffic. A responder connection is handed over by the
//! owner (the [`super::router::Router`]) after it read the connection's first message, the
//! CER, and found which peer it came from.
//!
//! The core never reads the clock: every entry point takes `now`; randomness (Tw jitter, the
//! first Hop-by-Hop identifier, the low bits of End-to-End identifiers) comes from a seed.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::base::{Capabilities, Cea, Cer, DisconnectCause, Dpa, Dpr, Dwa, Dwr};
use super::message::{frame_len, Message, DEFAULT_MAX_MESSAGE_SIZE};
use super::types::{ApplicationId, CommandCode, CommandFlags, ResultCode};
use super::watchdog::{Watchdog, WatchdogAction, WatchdogConfig, WatchdogState};
use super::{DecodeError, EncodeError, FrameError};

/// Which of the (at most two) transport connections of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The connection we opened (I- events of section 5.6).
    Initiator,
    /// The connection the peer opened (R- events).
    Responder,
}

impl Side {
    fn idx(self) -> usize {
        match self {
            Side::Initiator => 0,
            Side::Responder => 1,
        }
    }
}

/// The states of RFC 6733 section 5.6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// No connection.
    Closed,
    /// We asked for a connection (I-Snd-Conn-Req).
    WaitConnAck,
    /// Our CER is out; waiting for the CEA.
    WaitICea,
    /// Waiting for our connection while the peer's CER is held for the election.
    WaitConnAckElect,
    /// Both connections exist; the election decides which one stays.
    WaitReturns,
    /// Open on the peer's connection.
    ROpen,
    /// Open on our connection.
    IOpen,
    /// DPR sent (or received): waiting for the DPA / the disconnection.
    Closing,
}

/// A request this peer sent, as numbered by [`Peer::send_request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// Why a connection attempt or an open connection ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// The transport connection could not be established.
    #[error("connection failed")]
    ConnectFailed,
    /// Tc expired in a connecting state, or the DPA did not come.
    #[error("timed out in state {0:?}")]
    Timeout(PeerState),
    /// The CEA carried an unsuccessful Result-Code.
    #[error("CEA refused with {0}")]
    CeaRejected(ResultCode),
    /// The CEA could not be read.
    #[error("invalid CEA: {0}")]
    BadCea(DecodeError),
    /// No application in common (5010 DIAMETER_NO_COMMON_APPLICATION).
    #[error("no common application")]
    NoCommonApplication,
    /// A message other than CEA arrived in Wait-I-CEA.
    #[error("unexpected message before CEA")]
    UnexpectedMessage,
    /// The byte stream could not be framed (bad version, bad or oversized length).
    #[error("framing: {0}")]
    Framing(FrameError),
    /// The transport connection dropped.
    #[error("peer disconnected")]
    PeerDisconnected,
    /// The peer sent DPR with this Disconnect-Cause.
    #[error("peer asked to disconnect ({0:?})")]
    DisconnectRequested(DisconnectCause),
    /// We stopped the peer (DPR sent).
    #[error("stopped")]
    Stopped,
    /// The watchdog declared the connection DOWN (RFC 3539).
    #[error("watchdog: no answer from the peer")]
    WatchdogExpired,
}

/// Why a request got no answer from this peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FailReason {
    /// The peer is not open (or not usable per the watchdog); nothing was sent.
    #[error("peer not open")]
    NotOpen,
    /// The connection went away with the request outstanding.
    #[error("connection lost")]
    ConnectionLost,
    /// The watchdog found the peer SUSPECT (RFC 3539 failover).
    #[error("peer suspect")]
    PeerSuspect,
    /// No answer within the request time-out.
    #[error("request timed out")]
    Timeout,
    /// The request could not be encoded.
    #[error("encode: {0}")]
    Encode(EncodeError),
}

impl FailReason {
    /// Whether the request may be re-sent to an alternate peer (RFC 6733 section 5.5.4).
    #[must_use]
    pub fn can_fail_over(&self) -> bool {
        matches!(
            self,
            FailReason::NotOpen | FailReason::ConnectionLost | FailReason::PeerSuspect
        )
    }
}

/// What happened, for the owner of the peer.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub enum PeerEvent {
    /// The peer can carry traffic (capabilities exchanged and watchdog OKAY; also after a
    /// failback from SUSPECT or REOPEN).
    Open {
        /// The applications both sides support.
        common_applications: Vec<ApplicationId>,
    },
    /// The watchdog found the peer SUSPECT: do not route to it (pending requests failed).
    Suspect,
    /// The peer went to Closed.
    Closed {
        /// Why.
        reason: CloseReason,
    },
    /// A request from the peer (not a base-protocol request the peer handles itself).
    Request(Message),
    /// The answer to one of our requests.
    Answer {
        /// The request.
        request_id: RequestId,
        /// The answer.
        answer: Message,
    },
    /// A request of ours that got no answer; `request` is as it was sent.
    RequestFailed {
        /// The request.
        request_id: RequestId,
        /// The message (with the Hop-by-Hop identifier it was sent with).
        request: Message,
        /// Why.
        reason: FailReason,
    },
}

/// What the driver must do on the transport, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Transmit {
    /// Open our connection to the peer; then call [`Peer::connected`] or
    /// [`Peer::connection_failed`].
    Connect,
    /// Write these bytes on that connection.
    Send {
        /// Which connection.
        side: Side,
        /// One or more whole messages.
        data: Bytes,
    },
    /// Close that connection after writing what was queued before (no
    /// [`Peer::connection_closed`] call is needed for it).
    Close {
        /// Which connection.
        side: Side,
    },
}

/// Peer settings.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// What we announce in CER/CEA (and our Origin-Host/Realm).
    pub local: Capabilities,
    /// The Origin-Host the remote peer is expected to have (the router matches incoming
    /// connections with it; `None` for a peer learnt from its CER).
    pub remote_host: Option<String>,
    /// Whether we open connections to this peer (and reconnect).
    pub connect: bool,
    /// Watchdog (Tw).
    pub watchdog: WatchdogConfig,
    /// Time allowed to connect and exchange capabilities (Tc-like guard of the connecting
    /// states) and to get the DPA.
    pub connect_timeout: Duration,
    /// Time an application request waits for its answer.
    pub request_timeout: Duration,
    /// First reconnection delay.
    pub reconnect_min: Duration,
    /// Largest reconnection delay (the back-off doubles up to this).
    pub reconnect_max: Duration,
    /// Largest message accepted from the peer (bigger ones close the connection).
    pub max_message_size: usize,
    /// Answer application requests carrying unknown M-bit AVPs with 5001 ourselves
    /// ([`Message::check_avps`]) instead of passing them up.
    pub check_mandatory_avps: bool,
}

impl PeerConfig {
    /// Defaults around `local`: Tw 30 s, Tc 10 s, requests 10 s, back-off 1 s .. 60 s.
    #[must_use]
    pub fn new(local: Capabilities) -> Self {
        Self {
            local,
            remote_host: None,
            connect: true,
            watchdog: WatchdogConfig::default(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(60),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            check_mandatory_avps: true,
        }
    }
}

/// End-to-End identifiers (RFC 6733 section 3): "the high order 12 bits contain the low order
/// 12 bits of current time, and the low order 20 bits to a random value", then increasing.
#[derive(Debug, Clone)]
pub struct EndToEndIds {
    next: u32,
}

impl EndToEndIds {
    /// Seeded from the Unix time at start-up and a random value.
    #[must_use]
    pub fn new(unix_secs: u64, random: u32) -> Self {
        Self {
            next: ((unix_secs as u32 & 0xfff) << 20) | (random & 0x000f_ffff),
        }
    }

    /// The next identifier.
    pub fn next_id(&mut self) -> u32 {
        let v = self.next;
        self.next = self.next.wrapping_add(1);
        v
    }
}

/// The Application-Ids of `local` that `remote` supports (section 5.3: a Relay on either side
/// covers all).
#[must_use]
pub fn common_applications(local: &Capabilities, remote: &Capabilities) -> Vec<ApplicationId> {
    let mut ours: Vec<ApplicationId> = local
        .auth_application_ids
        .iter()
        .chain(&local.acct_application_ids)
        .copied()
        .chain(local.vendor_specific_application_ids.iter().flat_map(|v| {
            v.auth_application_id
                .into_iter()
                .chain(v.acct_application_id)
        }))
        .collect();
    if ours.contains(&ApplicationId::RELAY) {
        ours = remote
            .auth_application_ids
            .iter()
            .chain(&remote.acct_application_ids)
            .copied()
            .chain(remote.vendor_specific_application_ids.iter().flat_map(|v| {
                v.auth_application_id
                    .into_iter()
                    .chain(v.acct_application_id)
            }))
            .collect();
        if ours.is_empty() {
            ours.push(ApplicationId::RELAY);
        }
        return ours;
    }
    ours.sort();
    ours.dedup();
    ours.retain(|a| remote.supports(*a));
    ours
}

#[derive(Debug)]
struct Pending {
    id: RequestId,
    request: Message,
}

#[derive(Debug, Default)]
struct Conn {
    up: bool,
    rx: Vec<u8>,
    next_hbh: u32,
}

/// One Diameter peer (RFC 6733 section 5.6), sans-IO.
#[derive(Debug)]
pub struct Peer {
    config: PeerConfig,
    state: PeerState,
    conns: [Conn; 2],
    /// The peer's CER held in Wait-Conn-Ack/Elect and Wait-Returns.
    held_cer: Option<Message>,
    remote: Option<Capabilities>,
    common: Vec<ApplicationId>,
    watchdog: Watchdog,
    rng: StdRng,
    e2e: EndToEndIds,
    next_request: u64,
    pending: HashMap<u32, Pending>,
    deadlines: VecDeque<(Instant, u32, RequestId)>,
    conn_timer: Option<Instant>,
    reconnect_at: Option<Instant>,
    backoff: Duration,
    no_reconnect: bool,
    out: VecDeque<Transmit>,
    events: VecDeque<PeerEvent>,
    unmatched_answers: u64,
    dwas: u64,
    /// The Disconnect-Cause of a DPR the peer sent (we are Closing on its request).
    dpr_received: Option<DisconnectCause>,
}

impl Peer {
    /// A peer in Closed. `seed` drives Tw jitter and identifier randomness; `unix_secs` is the
    /// wall-clock time at start-up for End-to-End identifiers (section 3).
    #[must_use]
    pub fn new(config: PeerConfig, seed: u64, unix_secs: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let e2e = EndToEndIds::new(unix_secs, rng.gen());
        Self {
            watchdog: Watchdog::new(config.watchdog),
            backoff: config.reconnect_min,
            config,
            state: PeerState::Closed,
            conns: [Conn::default(), Conn::default()],
            held_cer: None,
            remote: None,
            common: Vec::new(),
            rng,
            e2e,
            next_request: 0,
            pending: HashMap::new(),
            deadlines: VecDeque::new(),
            conn_timer: None,
            reconnect_at: None,
            no_reconnect: false,
            out: VecDeque::new(),
            events: VecDeque::new(),
            unmatched_answers: 0,
            dwas: 0,
            dpr_received: None,
        }
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &PeerConfig {
        &self.config
    }

    /// The state of section 5.6.
    #[must_use]
    pub fn state(&self) -> PeerState {
        self.state
    }

    /// The watchdog state (RFC 3539).
    #[must_use]
    pub fn watchdog_state(&self) -> WatchdogState {
        self.watchdog.state()
    }

    /// Whether application requests may be sent: open and the watchdog OKAY.
    #[must_use]
    pub fn is_available(&self) -> bool {
        matches!(self.state, PeerState::ROpen | PeerState::IOpen) && self.watchdog.usable()
    }

    /// What the remote peer announced (after CER/CEA).
    #[must_use]
    pub fn remote(&self) -> Option<&Capabilities> {
        self.remote.as_ref()
    }

    /// The applications in common (after CER/CEA).
    #[must_use]
    pub fn common_applications(&self) -> &[ApplicationId] {
        &self.common
    }

    /// Requests waiting for an answer.
    #[must_use]
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    /// Answers that matched no pending request and were discarded (section 6.2).
    #[must_use]
    pub fn unmatched_answers(&self) -> u64 {
        self.unmatched_answers
    }

    /// DWAs received so far (the watchdog's evidence, RFC 3539).
    #[must_use]
    pub fn dwas_received(&self) -> u64 {
        self.dwas
    }

    /// The next End-to-End identifier of this peer (for requests made outside a router).
    pub fn next_end_to_end(&mut self) -> u32 {
        self.e2e.next_id()
    }

    /// Whether automatic reconnection is held off (the peer sent DPR with
    /// DO_NOT_WANT_TO_TALK_TO_YOU, or we stopped it).
    #[must_use]
    pub fn reconnect_suppressed(&self) -> bool {
        self.no_reconnect
    }

    fn active(&self) -> Option<Side> {
        match self.state {
            PeerState::ROpen => Some(Side::Responder),
            PeerState::IOpen => Some(Side::Initiator),
            PeerState::Closing => {
                if self.conns[0].up {
                    Some(Side::Initiator)
                } else if self.conns[1].up {
                    Some(Side::Responder)
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    // ---- output ----

    /// The next transport action.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<PeerEvent> {
        self.events.pop_front()
    }

    /// When [`Peer::handle_timeout`] must be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let wd = match self.state {
            PeerState::ROpen | PeerState::IOpen => self.watchdog.deadline(),
            _ => None,
        };
        [
            self.conn_timer,
            self.reconnect_at,
            wd,
            self.deadlines.front().map(|d| d.0),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn send_on(&mut self, side: Side, m: &Message) {
        match m.to_vec() {
            Ok(v) => self.out.push_back(Transmit::Send {
                side,
                data: Bytes::from(v),
            }),
            Err(e) => tracing::warn!(error = %e, "diameter: cannot encode a base message"),
        }
    }

    fn close_side(&mut self, side: Side) {
        let c = &mut self.conns[side.idx()];
        if c.up {
            c.up = false;
            c.rx = Vec::new();
            self.out.push_back(Transmit::Close { side });
        }
    }

    fn next_hbh(&mut self, side: Side) -> u32 {
        let c = &mut self.conns[side.idx()];
        let v = c.next_hbh;
        c.next_hbh = c.next_hbh.wrapping_add(1);
        v
    }

    fn conn_up(&mut self, side: Side) {
        let first = self.rng.gen();
        let c = &mut self.conns[side.idx()];
        c.up = true;
        c.rx.clear();
        c.next_hbh = first;
    }

    fn local_request(&mut self, side: Side, mut m: Message) {
        m.hop_by_hop = self.next_hbh(side);
        m.end_to_end = self.e2e.next_id();
        self.send_on(side, &m);
    }

    fn send_cer(&mut self, side: Side) {
        let m = Cer {
            capabilities: self.config.local.clone(),
        }
        .to_message();
        self.local_request(side, m);
    }

    fn send_dwr(&mut self) {
        if let Some(side) = self.active() {
            let m = Dwr {
                origin_host: self.config.local.origin_host.clone(),
                origin_realm: self.config.local.origin_realm.clone(),
                origin_state_id: self.config.local.origin_state_id,
            }
            .to_message();
            self.local_request(side, m);
        }
    }

    fn cea(&self, rc: ResultCode, msg: Option<&str>) -> Cea {
        Cea {
            result_code: rc,
            error_message: msg.map(str::to_owned),
            capabilities: self.config.local.clone(),
        }
    }

    // ---- connection events ----

    /// Start: open a connection (section 5.6 "Start"). Also lifts a reconnection hold.
    pub fn start(&mut self, now: Instant) {
        self.no_reconnect = false;
        if self.state == PeerState::Closed {
            self.reconnect_at = None;
            self.state = PeerState::WaitConnAck;
            self.conn_timer = Some(now + self.config.connect_timeout);
            self.out.push_back(Transmit::Connect);
        }
    }

    /// Our connection is up (I-Rcv-Conn-Ack). Returns false when the peer was not waiting
    /// for one (stopped meanwhile, or the peer's own connection won): the caller closes that
    /// new connection itself; it is not the peer's.
    #[must_use = "an unwanted connection must be closed by the caller"]
    pub fn connected(&mut self, now: Instant) -> bool {
        match self.state {
            PeerState::WaitConnAck => {
                self.conn_up(Side::Initiator);
                self.send_cer(Side::Initiator);
                self.state = PeerState::WaitICea;
                self.conn_timer = Some(now + self.config.connect_timeout);
                true
            }
            PeerState::WaitConnAckElect => {
                self.conn_up(Side::Initiator);
                self.send_cer(Side::Initiator);
                self.state = PeerState::WaitReturns;
                self.conn_timer = Some(now + self.config.connect_timeout);
                self.elect(now);
                true
            }
            _ => false,
        }
    }

    /// Our connection attempt failed (I-Rcv-Conn-Nack).
    pub fn connection_failed(&mut self, now: Instant) {
        match self.state {
            PeerState::WaitConnAck => self.enter_closed(now, CloseReason::ConnectFailed, false),
            PeerState::WaitConnAckElect => {
                if let Some(cer) = self.held_cer.take() {
                    self.r_open(now, &cer);
                }
            }
            _ => {}
        }
    }

    /// A connection of ours dropped (I-Peer-Disc / R-Peer-Disc).
    pub fn connection_closed(&mut self, now: Instant, side: Side) {
        if !self.conns[side.idx()].up {
            return;
        }
        self.conns[side.idx()].up = false;
        self.conns[side.idx()].rx = Vec::new();
        match (self.state, side) {
            (PeerState::WaitICea, Side::Initiator) => {
                self.enter_closed(now, CloseReason::PeerDisconnected, false);
            }
            (PeerState::WaitConnAckElect, Side::Responder) => {
                self.held_cer = None;
                self.state = PeerState::WaitConnAck;
            }
            (PeerState::WaitReturns, Side::Initiator) => {
                if let Some(cer) = self.held_cer.take() {
                    self.r_open(now, &cer);
                }
            }
            (PeerState::WaitReturns, Side::Responder) => {
                self.held_cer = None;
                self.state = PeerState::WaitICea;
            }
            (PeerState::ROpen, Side::Responder) | (PeerState::IOpen, Side::Initiator) => {
                self.enter_closed(now, CloseReason::PeerDisconnected, true);
            }
            (PeerState::Closing, _) if !self.conns[0].up && !self.conns[1].up => {
                let reason = self.closing_reason();
                self.enter_closed(now, reason, false);
            }
            _ => {}
        }
    }

    /// A new connection from the peer whose first message, `cer`, is a CER (R-Conn-CER).
    /// `Ok(())`: the connection is now this peer's [`Side::Responder`] (more bytes go to
    /// [`Peer::handle_bytes`]). `Err(bytes)`: write `bytes` (a CEA refusing it, possibly
    /// empty) on that connection and close it; it is not the peer's.
    pub fn accept(&mut self, now: Instant, cer: &Message) -> Result<(), Bytes> {
        let refuse = |p: &Self, rc: ResultCode, why: &str| -> Bytes {
            p.cea(rc, Some(why))
                .answer(cer)
                .to_vec()
                .map(Bytes::from)
                .unwrap_or_default()
        };
        // Process-CER: the request must parse and share an application.
        let caps = match Cer::from_message(cer) {
            Ok(c) => c.capabilities,
            Err(e) => return Err(refuse(self, e.result_code(), "invalid CER")),
        };
        if common_applications(&self.config.local, &caps).is_empty() {
            return Err(refuse(
                self,
                ResultCode::DIAMETER_NO_COMMON_APPLICATION,
                "no common application",
            ));
        }
        match self.state {
            PeerState::Closed => {
                self.conn_up(Side::Responder);
                self.r_open(now, cer);
                Ok(())
            }
            PeerState::WaitConnAck => {
                self.conn_up(Side::Responder);
                self.held_cer = Some(cer.clone());
                self.state = PeerState::WaitConnAckElect;
                Ok(())
            }
            PeerState::WaitICea => {
                self.conn_up(Side::Responder);
                self.held_cer = Some(cer.clone());
                self.state = PeerState::WaitReturns;
                self.elect(now);
                Ok(())
            }
            _ => Err(refuse(
                self,
                ResultCode::ELECTION_LOST,
                "a connection with this peer exists",
            )),
        }
    }

    /// Election (section 5.6.4): the higher Origin-Host keeps the connection it opened.
    fn elect(&mut self, now: Instant) {
        let Some(cer) = &self.held_cer else { return };
        let Ok(theirs) = Cer::from_message(cer) else {
            return;
        };
        let won =
            self.config.local.origin_host.as_bytes() > theirs.capabilities.origin_host.as_bytes();
        if won {
            // Win-Election: I-Disc, R-Snd-CEA -> R-Open.
            self.close_side(Side::Initiator);
            if let Some(cer) = self.held_cer.take() {
                self.r_open(now, &cer);
            }
        }
        // Lost: stay in Wait-Returns until our CEA comes (then R-Disc) or our connection
        // drops (then R-Snd-CEA).
    }

    /// R-Accept/Process-CER/R-Snd-CEA -> R-Open.
    fn r_open(&mut self, now: Instant, cer: &Message) {
        let Ok(c) = Cer::from_message(cer) else {
            self.close_side(Side::Responder);
            self.enter_closed(now, CloseReason::UnexpectedMessage, false);
            return;
        };
        let ans = self.cea(ResultCode::DIAMETER_SUCCESS, None).answer(cer);
        self.send_on(Side::Responder, &ans);
        self.common = common_applications(&self.config.local, &c.capabilities);
        self.remote = Some(c.capabilities);
        self.state = PeerState::ROpen;
        self.opened(now);
    }

    fn opened(&mut self, now: Instant) {
        self.conn_timer = None;
        self.reconnect_at = None;
        self.backoff = self.config.reconnect_min;
        if self.watchdog.connection_up(now, &mut self.rng) == WatchdogAction::SendDwr {
            self.send_dwr();
        }
        if self.watchdog.usable() {
            self.events.push_back(PeerEvent::Open {
                common_applications: self.common.clone(),
            });
        }
    }

    /// Stop (section 5.6 "Stop"): send DPR with `cause` when open, else close at once. No
    /// reconnection until [`Peer::start`].
    pub fn stop(&mut self, now: Instant, cause: DisconnectCause) {
        self.no_reconnect = true;
        self.reconnect_at = None;
        match self.state {
            PeerState::ROpen | PeerState::IOpen => {
                let m = Dpr {
                    origin_host: self.config.local.origin_host.clone(),
                    origin_realm: self.config.local.origin_realm.clone(),
                    disconnect_cause: cause,
                }
                .to_message();
                if let Some(side) = self.active() {
                    self.local_request(side, m);
                }
                self.fail_all(FailReason::ConnectionLost);
                self.state = PeerState::Closing;
                self.conn_timer = Some(now + self.config.connect_timeout);
            }
            PeerState::Closed => {}
            _ => self.enter_closed(now, CloseReason::Stopped, false),
        }
    }

    fn closing_reason(&self) -> CloseReason {
        match self.dpr_received {
            Some(c) => CloseReason::DisconnectRequested(c),
            None => CloseReason::Stopped,
        }
    }

    fn enter_closed(&mut self, now: Instant, reason: CloseReason, failure: bool) {
        self.dpr_received = None;
        self.close_side(Side::Initiator);
        self.close_side(Side::Responder);
        self.held_cer = None;
        self.fail_all(FailReason::ConnectionLost);
        let was_failure = failure
            || matches!(
                self.watchdog.state(),
                WatchdogState::Down | WatchdogState::Suspect
            );
        self.watchdog.connection_down(was_failure);
        self.state = PeerState::Closed;
        self.conn_timer = None;
        self.events.push_back(PeerEvent::Closed { reason });
        if self.config.connect && !self.no_reconnect {
            let jitter_ms = self.rng.gen_range(0..=self.backoff.as_millis() as u64 / 4);
            self.reconnect_at = Some(now + self.backoff + Duration::from_millis(jitter_ms));
            self.backoff = (self.backoff * 2).min(self.config.reconnect_max);
        }
    }

    fn fail_all(&mut self, reason: FailReason) {
        let mut all: Vec<Pending> = self.pending.drain().map(|(_, p)| p).collect();
        all.sort_by_key(|p| p.id);
        self.deadlines.clear();
        for p in all {
            self.events.push_back(PeerEvent::RequestFailed {
                request_id: p.id,
                request: p.request,
                reason: reason.clone(),
            });
        }
    }

    // ---- timers ----

    /// Run the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.conn_timer.is_some_and(|t| now >= t) {
            self.conn_timer = None;
            let state = self.state;
            let reason = if state == PeerState::Closing {
                self.closing_reason()
            } else {
                CloseReason::Timeout(state)
            };
            self.enter_closed(now, reason, false);
        }
        if self.reconnect_at.is_some_and(|t| now >= t) {
            self.reconnect_at = None;
            if self.state == PeerState::Closed && self.config.connect && !self.no_reconnect {
                self.state = PeerState::WaitConnAck;
                self.conn_timer = Some(now + self.config.connect_timeout);
                self.out.push_back(Transmit::Connect);
            }
        }
        if matches!(self.state, PeerState::ROpen | PeerState::IOpen) {
            match self.watchdog.timeout(now, &mut self.rng) {
                WatchdogAction::SendDwr => self.send_dwr(),
                WatchdogAction::Failover => {
                    self.events.push_back(PeerEvent::Suspect);
                    self.fail_all(FailReason::PeerSuspect);
                }
                WatchdogAction::CloseConnection => {
                    self.enter_closed(now, CloseReason::WatchdogExpired, true);
                }
                WatchdogAction::None | WatchdogAction::Failback => {}
            }
        }
        while let Some(&(t, hbh, id)) = self.deadlines.front() {
            if t > now {
                break;
            }
            self.deadlines.pop_front();
            if self.pending.get(&hbh).is_some_and(|p| p.id == id) {
                if let Some(p) = self.pending.remove(&hbh) {
                    self.events.push_back(PeerEvent::RequestFailed {
                        request_id: p.id,
                        request: p.request,
                        reason: FailReason::Timeout,
                    });
                }
            }
        }
    }

    // ---- application traffic ----

    /// Send an application request (section 6.1). The R bit is set, the Hop-by-Hop
    /// identifier assigned, and the End-to-End identifier too when it is 0 (a router keeps
    /// its own across failover). When the peer is not available the request fails at once
    /// with [`FailReason::NotOpen`] (a [`PeerEvent::RequestFailed`]).
    pub fn send_request(&mut self, now: Instant, mut request: Message) -> RequestId {
        self.next_request += 1;
        let id = RequestId(self.next_request);
        request.flags = request.flags | CommandFlags::REQUEST;
        let side = match self.active() {
            Some(s) if self.is_available() => s,
            _ => {
                self.events.push_back(PeerEvent::RequestFailed {
                    request_id: id,
                    request,
                    reason: FailReason::NotOpen,
                });
                return id;
            }
        };
        request.hop_by_hop = self.next_hbh(side);
        if request.end_to_end == 0 {
            request.end_to_end = self.e2e.next_id();
        }
        match request.to_vec() {
            Ok(v) => {
                self.out.push_back(Transmit::Send {
                    side,
                    data: Bytes::from(v),
                });
                let deadline = now + self.config.request_timeout;
                self.deadlines.push_back((deadline, request.hop_by_hop, id));
                self.pending
                    .insert(request.hop_by_hop, Pending { id, request });
            }
            Err(e) => self.events.push_back(PeerEvent::RequestFailed {
                request_id: id,
                request,
                reason: FailReason::Encode(e),
            }),
        }
        id
    }

    /// Send an answer to a request received as [`PeerEvent::Request`] (build it with
    /// [`Message::answer_to`] so the identifiers match).
    pub fn send_answer(&mut self, answer: &Message) -> Result<(), SendError> {
        let side = self.active().ok_or(SendError::NotOpen)?;
        let v = answer.to_vec().map_err(SendError::Encode)?;
        self.out.push_back(Transmit::Send {
            side,
            data: Bytes::from(v),
        });
        Ok(())
    }

    // ---- input ----

    /// Bytes read from connection `side`.
    pub fn handle_bytes(&mut self, now: Instant, side: Side, bytes: &[u8]) {
        if !self.conns[side.idx()].up {
            return;
        }
        self.conns[side.idx()].rx.extend_from_slice(bytes);
        loop {
            let c = &self.conns[side.idx()];
            if !c.up {
                return;
            }
            match frame_len(&c.rx, self.config.max_message_size) {
                Ok(None) => return,
                Ok(Some(n)) => {
                    let frame: Vec<u8> = self.conns[side.idx()].rx.drain(..n).collect();
                    match Message::decode(&frame) {
                        Ok(m) => self.handle_message(now, side, m),
                        Err(e) => self.handle_decode_error(side, &e),
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "diameter: unframeable stream, closing");
                    self.stream_error(now, side, CloseReason::Framing(e));
                    return;
                }
            }
        }
    }

    fn stream_error(&mut self, now: Instant, side: Side, reason: CloseReason) {
        match (self.state, side) {
            (PeerState::ROpen, Side::Responder)
            | (PeerState::IOpen, Side::Initiator)
            | (PeerState::WaitICea, Side::Initiator)
            | (PeerState::Closing, _) => self.enter_closed(now, reason, true),
            _ => {
                // A connection that is not (yet) the peer's: drop just that one.
                self.close_side(side);
                self.conns[side.idx()].up = true;
                self.connection_closed(now, side);
            }
        }
    }

    fn handle_decode_error(&mut self, side: Side, e: &DecodeError) {
        // Section 7.2: a request that cannot be read is answered with the error; an answer
        // that cannot be read is dropped.
        if let Some(ans) = e.error_answer(
            &self.config.local.origin_host,
            &self.config.local.origin_realm,
        ) {
            self.send_on(side, &ans);
        } else {
            tracing::debug!(error = %e, "diameter: undecodable answer dropped");
        }
    }

    fn handle_message(&mut self, now: Instant, side: Side, m: Message) {
        match self.state {
            PeerState::WaitICea if side == Side::Initiator => {
                if m.code == CommandCode::CAPABILITIES_EXCHANGE && !m.is_request() {
                    self.process_cea(now, &m);
                } else {
                    self.enter_closed(now, CloseReason::UnexpectedMessage, false);
                }
            }
            PeerState::WaitReturns if side == Side::Initiator => {
                if m.code == CommandCode::CAPABILITIES_EXCHANGE && !m.is_request() {
                    // I-Rcv-CEA: R-Disc -> I-Open.
                    self.held_cer = None;
                    self.close_side(Side::Responder);
                    self.process_cea(now, &m);
                } else {
                    self.enter_closed(now, CloseReason::UnexpectedMessage, false);
                }
            }
            PeerState::ROpen | PeerState::IOpen | PeerState::Closing
                if Some(side) == self.active() =>
            {
                self.open_message(now, side, m);
            }
            _ => {
                tracing::debug!(state = ?self.state, ?side, code = %m.code, "diameter: message ignored")
            }
        }
    }

    fn process_cea(&mut self, now: Instant, m: &Message) {
        let cea = match Cea::from_message(m) {
            Ok(c) => c,
            Err(e) => return self.enter_closed(now, CloseReason::BadCea(e), false),
        };
        if !cea.result_code.is_success() {
            return self.enter_closed(now, CloseReason::CeaRejected(cea.result_code), false);
        }
        let common = common_applications(&self.config.local, &cea.capabilities);
        if common.is_empty() {
            return self.enter_closed(now, CloseReason::NoCommonApplication, false);
        }
        self.common = common;
        self.remote = Some(cea.capabilities);
        self.state = PeerState::IOpen;
        self.opened(now);
    }

    fn open_message(&mut self, now: Instant, side: Side, m: Message) {
        let is_dwa = m.code == CommandCode::DEVICE_WATCHDOG && !m.is_request();
        if is_dwa {
            self.dwas += 1;
        }
        if self.state != PeerState::Closing {
            if let WatchdogAction::Failback = self.watchdog.received(now, is_dwa, &mut self.rng) {
                self.events.push_back(PeerEvent::Open {
                    common_applications: self.common.clone(),
                });
            }
        }
        if m.is_request() {
            match m.code {
                CommandCode::DEVICE_WATCHDOG => {
                    let ans = Dwa {
                        result_code: ResultCode::DIAMETER_SUCCESS,
                        origin_host: self.config.local.origin_host.clone(),
                        origin_realm: self.config.local.origin_realm.clone(),
                        error_message: None,
                        origin_state_id: self.config.local.origin_state_id,
                    }
                    .answer(&m);
                    self.send_on(side, &ans);
                }
                CommandCode::DISCONNECT_PEER => self.process_dpr(now, side, &m),
                CommandCode::CAPABILITIES_EXCHANGE => {
                    // R-Rcv-CER / I-Rcv-CER in an open state: answer it.
                    let ans = self.cea(ResultCode::DIAMETER_SUCCESS, None).answer(&m);
                    self.send_on(side, &ans);
                }
                _ if self.state == PeerState::Closing => {
                    let mut ans = Message::answer_to(&m);
                    ans.flags = ans.flags | CommandFlags::ERROR;
                    ans.avps.push(super::Avp::u32(
                        &super::dict::RESULT_CODE,
                        ResultCode::DIAMETER_TOO_BUSY.0,
                    ));
                    ans.avps.push(super::Avp::identity(
                        &super::dict::ORIGIN_HOST,
                        &*self.config.local.origin_host,
                    ));
                    ans.avps.push(super::Avp::identity(
                        &super::dict::ORIGIN_REALM,
                        &*self.config.local.origin_realm,
                    ));
                    self.send_on(side, &ans);
                }
                _ => {
                    if self.config.check_mandatory_avps {
                        if let Err(e) = m.check_avps() {
                            self.handle_decode_error(side, &e);
                            return;
                        }
                    }
                    self.events.push_back(PeerEvent::Request(m));
                }
            }
            return;
        }
        match m.code {
            CommandCode::DEVICE_WATCHDOG | CommandCode::CAPABILITIES_EXCHANGE => {}
            CommandCode::DISCONNECT_PEER => {
                if self.state == PeerState::Closing {
                    // I-Rcv-DPA: I-Disc -> Closed.
                    self.enter_closed(now, CloseReason::Stopped, false);
                }
            }
            _ => match self.pending.remove(&m.hop_by_hop) {
                Some(p) => self.events.push_back(PeerEvent::Answer {
                    request_id: p.id,
                    answer: m,
                }),
                None => {
                    self.unmatched_answers += 1;
                    tracing::debug!(hbh = m.hop_by_hop, "diameter: unmatched answer dropped");
                }
            },
        }
    }

    fn process_dpr(&mut self, now: Instant, side: Side, m: &Message) {
        let cause = Dpr::from_message(m)
            .map(|d| d.disconnect_cause)
            .unwrap_or(DisconnectCause::REBOOTING);
        let ans = Dpa {
            result_code: ResultCode::DIAMETER_SUCCESS,
            origin_host: self.config.local.origin_host.clone(),
            origin_realm: self.config.local.origin_realm.clone(),
            error_message: None,
        }
        .answer(m);
        self.send_on(side, &ans);
        // Section 5.4.3: REBOOTING and BUSY allow reconnection (BUSY after the longest
        // back-off); DO_NOT_WANT_TO_TALK_TO_YOU holds it off until `start`.
        if cause == DisconnectCause::DO_NOT_WANT_TO_TALK_TO_YOU {
            self.no_reconnect = true;
        } else if cause == DisconnectCause::BUSY {
            self.backoff = self.config.reconnect_max;
        }
        // The DPR's sender closes the transport (section 5.4); wait for it, bounded.
        self.fail_all(FailReason::ConnectionLost);
        self.state = PeerState::Closing;
        self.conn_timer = Some(now + self.config.connect_timeout);
        self.dpr_received = Some(cause);
    }
}

/// Why an answer could not be queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// No open connection.
    #[error("peer not open")]
    NotOpen,
    /// The message cannot be encoded.
    #[error("encode: {0}")]
    Encode(EncodeError),
}
