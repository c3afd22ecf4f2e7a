//! The peer table, sans-IO: several [`Peer`]s (a primary and alternates), request routing,
//! failover of pending requests (RFC 6733 section 5.5.4, RFC 3539 section 3.4.1), the
//! End-to-End identifiers (section 6.1.3) and duplicate detection of received requests
//! (section 6.1.3 / 5.5.4: the T flag).
//!
//! # Run loop
//!
//! The driver owns one `Router`. It feeds each peer's transport events through the router
//! (`connected`, `handle_bytes`, ... with the [`PeerId`]), hands new incoming connections'
//! first message to [`Router::accept`], and drains [`Router::poll_transmit`] (per peer),
//! [`Router::poll_event`] and [`Router::poll_timeout`]. Applications call
//! [`Router::request`] and get [`RouterEvent::Answer`] or [`RouterEvent::Failed`] for it;
//! requests from peers come out as [`RouterEvent::Request`] and are answered with
//! [`Router::answer`].
//!
//! # Routing and failover
//!
//! A request goes to the first available peer (open, watchdog OKAY) in table order, or to
//! the peer whose Origin-Host is the request's Destination-Host when that one is available.
//! With no available peer it fails at once ([`RouteError::NoPeer`]) so the caller can apply
//! its fail-open / fail-closed policy. When a peer goes SUSPECT, drops its connection or
//! receives a DPR, its pending requests come back from it and are re-sent to an alternate
//! with the T flag set and the same End-to-End identifier. An answer that comes late from the
//! first peer is discarded (its Hop-by-Hop identifier is no longer pending there), so each
//! request is answered once.
//!
//! Received requests are remembered by (Origin-Host, End-to-End identifier) for
//! [`RouterConfig::duplicate_window`]: a repeat (typically a T-flagged retransmission after
//! the sender failed over) is answered from the stored answer, or dropped while the first copy
//! is still being processed.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::avp::AvpList;
use super::base::DisconnectCause;
use super::dict;
use super::message::Message;
use super::peer::{
    CloseReason, EndToEndIds, FailReason, Peer, PeerConfig, PeerEvent, RequestId, SendError, Side,
    Transmit,
};
use super::types::{CommandFlags, ResultCode};

/// Index of a peer in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub usize);

/// A request made through the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteId(pub u64);

/// Why a routed request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// No peer is available (none open, or all SUSPECT/REOPEN).
    #[error("no Diameter peer available")]
    NoPeer,
    /// No answer in time.
    #[error("request timed out")]
    Timeout,
    /// Failed over too many times.
    #[error("request failed over {0} times")]
    TooManyFailovers(u32),
    /// The request cannot be encoded.
    #[error("request cannot be encoded: {0}")]
    Encode(super::EncodeError),
}

/// What happened, for the application.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub enum RouterEvent {
    /// A peer became available.
    PeerOpen(PeerId),
    /// A peer is SUSPECT (its requests failed over).
    PeerSuspect(PeerId),
    /// A peer went to Closed.
    PeerClosed {
        /// Which.
        peer: PeerId,
        /// Why.
        reason: CloseReason,
    },
    /// A request from a peer, to be answered with [`Router::answer`].
    Request {
        /// From whom.
        peer: PeerId,
        /// The request.
        request: Message,
    },
    /// The answer to a routed request.
    Answer {
        /// The request.
        id: RouteId,
        /// The peer that answered.
        peer: PeerId,
        /// The answer.
        answer: Message,
    },
    /// A routed request failed.
    Failed {
        /// The request.
        id: RouteId,
        /// Why.
        error: RouteError,
    },
}

/// The outcome of [`Router::accept`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Accept {
    /// The connection is now `peer`'s [`Side::Responder`].
    Peer(PeerId),
    /// Write these bytes (a refusing CEA, or nothing) and close the connection.
    Reject(Bytes),
}

/// Router settings.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Accept CERs from hosts not in the table (a peer is added for them, responder only,
    /// from [`RouterConfig::unknown_peer`]). When false, they get 3010 DIAMETER_UNKNOWN_PEER.
    pub accept_unknown_peers: bool,
    /// The template for peers learnt from their CER (when accepted).
    pub unknown_peer: Option<PeerConfig>,
    /// How long received requests are remembered for duplicate detection.
    pub duplicate_window: Duration,
    /// At most this many remembered requests (oldest forgotten first).
    pub duplicate_capacity: usize,
    /// At most this many failovers per request.
    pub max_failovers: u32,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            accept_unknown_peers: false,
            unknown_peer: None,
            duplicate_window: Duration::from_secs(240),
            duplicate_capacity: 65_536,
            max_failovers: 3,
        }
    }
}

#[derive(Debug)]
struct Routed {
    request: Message,
    peer: PeerId,
    peer_request: RequestId,
    failovers: u32,
}

#[derive(Debug, Default)]
struct DuplicateCache {
    map: HashMap<(String, u32), Option<Message>>,
    order: VecDeque<(Instant, String, u32)>,
}

impl DuplicateCache {
    fn expire(&mut self, now: Instant, window: Duration, capacity: usize) {
        while let Some((t, _, _)) = self.order.front() {
            if now.saturating_duration_since(*t) < window && self.order.len() <= capacity {
                break;
            }
            if let Some((_, h, e)) = self.order.pop_front() {
                self.map.remove(&(h, e));
            }
        }
    }
}

/// The peer table (sans-IO).
#[derive(Debug)]
pub struct Router {
    config: RouterConfig,
    peers: Vec<Peer>,
    seed: u64,
    unix_secs: u64,
    e2e: EndToEndIds,
    next_route: u64,
    routed: HashMap<RouteId, Routed>,
    by_peer: HashMap<(PeerId, RequestId), RouteId>,
    dups: DuplicateCache,
    /// Requests passed up and not answered yet: (peer, Hop-by-Hop) -> duplicate key.
    awaiting: HashMap<(PeerId, u32), (String, u32)>,
    events: VecDeque<RouterEvent>,
    rr: usize,
    duplicates_seen: u64,
}

impl Router {
    /// An empty table; `seed` and `unix_secs` as for [`Peer::new`].
    #[must_use]
    pub fn new(config: RouterConfig, seed: u64, unix_secs: u64) -> Self {
        let random = (seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32;
        Self {
            config,
            peers: Vec::new(),
            seed,
            unix_secs,
            e2e: EndToEndIds::new(unix_secs, random),
            next_route: 0,
            routed: HashMap::new(),
            by_peer: HashMap::new(),
            dups: DuplicateCache::default(),
            awaiting: HashMap::new(),
            events: VecDeque::new(),
            rr: 0,
            duplicates_seen: 0,
        }
    }

    /// Add a peer (the first added is the primary).
    pub fn add_peer(&mut self, config: PeerConfig) -> PeerId {
        let id = PeerId(self.peers.len());
        let seed = self.seed ^ (id.0 as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d);
        self.peers.push(Peer::new(config, seed, self.unix_secs));
        id
    }

    /// A peer.
    #[must_use]
    pub fn peer(&self, id: PeerId) -> Option<&Peer> {
        self.peers.get(id.0)
    }

    /// Every peer id.
    pub fn peer_ids(&self) -> impl Iterator<Item = PeerId> + '_ {
        (0..self.peers.len()).map(PeerId)
    }

    /// Routed requests waiting for an answer.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.routed.len()
    }

    /// Received requests recognised as duplicates so far.
    #[must_use]
    pub fn duplicates_seen(&self) -> u64 {
        self.duplicates_seen
    }

    /// Start every peer we connect to.
    pub fn start(&mut self, now: Instant) {
        for p in &mut self.peers {
            if p.config().connect {
                p.start(now);
            }
        }
    }

    /// Start one peer.
    pub fn start_peer(&mut self, now: Instant, peer: PeerId) {
        if let Some(p) = self.peers.get_mut(peer.0) {
            p.start(now);
        }
    }

    /// Stop every peer (DPR with `cause`).
    pub fn stop(&mut self, now: Instant, cause: DisconnectCause) {
        for i in 0..self.peers.len() {
            self.peers[i].stop(now, cause);
            self.drain(now, PeerId(i));
        }
    }

    /// Stop one peer.
    pub fn stop_peer(&mut self, now: Instant, peer: PeerId, cause: DisconnectCause) {
        self.with_peer(now, peer, |p| p.stop(now, cause));
    }

    fn with_peer(&mut self, now: Instant, peer: PeerId, f: impl FnOnce(&mut Peer)) {
        if let Some(p) = self.peers.get_mut(peer.0) {
            f(p);
            self.drain(now, peer);
        }
    }

    /// Our connection to `peer` is up. False: the peer did not want it (see
    /// [`Peer::connected`]); close it.
    #[must_use = "an unwanted connection must be closed by the caller"]
    pub fn connected(&mut self, now: Instant, peer: PeerId) -> bool {
        let mut wanted = false;
        self.with_peer(now, peer, |p| wanted = p.connected(now));
        wanted
    }

    /// Our connection attempt to `peer` failed.
    pub fn connection_failed(&mut self, now: Instant, peer: PeerId) {
        self.with_peer(now, peer, |p| p.connection_failed(now));
    }

    /// A connection of `peer` dropped.
    pub fn connection_closed(&mut self, now: Instant, peer: PeerId, side: Side) {
        self.with_peer(now, peer, |p| p.connection_closed(now, side));
    }

    /// Bytes from a connection of `peer`.
    pub fn handle_bytes(&mut self, now: Instant, peer: PeerId, side: Side, bytes: &[u8]) {
        self.with_peer(now, peer, |p| p.handle_bytes(now, side, bytes));
    }

    /// A new incoming connection whose first complete message is `first` (R-Conn-CER):
    /// find its peer by Origin-Host, or refuse it (3010 DIAMETER_UNKNOWN_PEER, 5010 ...).
    pub fn accept(&mut self, now: Instant, first: &[u8]) -> Accept {
        let Ok(m) = Message::decode(first) else {
            return Accept::Reject(Bytes::new());
        };
        if !m.is_request() || m.code != super::CommandCode::CAPABILITIES_EXCHANGE {
            return Accept::Reject(Bytes::new());
        }
        let host = m
            .find(&dict::ORIGIN_HOST)
            .and_then(|a| a.as_str().ok())
            .map(str::to_owned);
        let Some(host) = host else {
            return Accept::Reject(self.refuse(&m, ResultCode::DIAMETER_MISSING_AVP));
        };
        let idx = self.peers.iter().position(|p| {
            p.config()
                .remote_host
                .as_deref()
                .is_some_and(|h| h.eq_ignore_ascii_case(&host))
        });
        let idx = match idx {
            Some(i) => i,
            None => match (&self.config.unknown_peer, self.config.accept_unknown_peers) {
                (Some(t), true) => {
                    let mut c = t.clone();
                    c.remote_host = Some(host);
                    c.connect = false;
                    self.add_peer(c).0
                }
                _ => return Accept::Reject(self.refuse(&m, ResultCode::DIAMETER_UNKNOWN_PEER)),
            },
        };
        let r = self.peers[idx].accept(now, &m);
        self.drain(now, PeerId(idx));
        match r {
            Ok(()) => Accept::Peer(PeerId(idx)),
            Err(b) => Accept::Reject(b),
        }
    }

    fn refuse(&self, cer: &Message, rc: ResultCode) -> Bytes {
        let local = self
            .peers
            .first()
            .map(|p| p.config().local.clone())
            .or_else(|| self.config.unknown_peer.as_ref().map(|c| c.local.clone()))
            .unwrap_or_default();
        if local.origin_host.is_empty() {
            // No identity to answer with: close without a CEA.
            return Bytes::new();
        }
        super::base::Cea {
            result_code: rc,
            error_message: None,
            capabilities: local,
        }
        .answer(cer)
        .to_vec()
        .map(Bytes::from)
        .unwrap_or_default()
    }

    /// Run every peer's timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        for i in 0..self.peers.len() {
            if self.peers[i].poll_timeout().is_some_and(|t| t <= now) {
                self.peers[i].handle_timeout(now);
                self.drain(now, PeerId(i));
            }
        }
        self.dups.expire(
            now,
            self.config.duplicate_window,
            self.config.duplicate_capacity,
        );
    }

    /// The earliest timer of any peer.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peers.iter().filter_map(Peer::poll_timeout).min()
    }

    /// The next transport action of any peer.
    pub fn poll_transmit(&mut self) -> Option<(PeerId, Transmit)> {
        let n = self.peers.len();
        for k in 0..n {
            let i = (self.rr + k) % n;
            if let Some(t) = self.peers[i].poll_transmit() {
                self.rr = i;
                return Some((PeerId(i), t));
            }
        }
        None
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<RouterEvent> {
        self.events.pop_front()
    }

    fn choose(&self, request: &Message, exclude: Option<PeerId>) -> Option<PeerId> {
        let dest = request
            .find(&dict::DESTINATION_HOST)
            .and_then(|a| a.as_str().ok());
        let ok = |i: usize| Some(PeerId(i)) != exclude && self.peers[i].is_available();
        if let Some(d) = dest {
            if let Some(i) = (0..self.peers.len()).find(|&i| {
                ok(i)
                    && self.peers[i]
                        .remote()
                        .is_some_and(|r| r.origin_host.eq_ignore_ascii_case(d))
            }) {
                return Some(PeerId(i));
            }
        }
        (0..self.peers.len()).find(|&i| ok(i)).map(PeerId)
    }

    /// Route an application request (section 6.1). Its End-to-End identifier is assigned
    /// here when 0 and kept across failover. Fails at once with [`RouteError::NoPeer`] when
    /// no peer is available.
    pub fn request(&mut self, now: Instant, mut request: Message) -> Result<RouteId, RouteError> {
        let peer = self.choose(&request, None).ok_or(RouteError::NoPeer)?;
        if request.end_to_end == 0 {
            request.end_to_end = self.e2e.next_id();
        }
        self.next_route += 1;
        let id = RouteId(self.next_route);
        let peer_request = self.peers[peer.0].send_request(now, request.clone());
        self.routed.insert(
            id,
            Routed {
                request,
                peer,
                peer_request,
                failovers: 0,
            },
        );
        self.by_peer.insert((peer, peer_request), id);
        self.drain(now, peer);
        Ok(id)
    }

    /// Answer a request received from `peer` (and remember the answer for duplicates).
    pub fn answer(
        &mut self,
        now: Instant,
        peer: PeerId,
        answer: &Message,
    ) -> Result<(), SendError> {
        let p = self.peers.get_mut(peer.0).ok_or(SendError::NotOpen)?;
        if let Some(key) = self.awaiting.remove(&(peer, answer.hop_by_hop)) {
            if let Some(slot) = self.dups.map.get_mut(&key) {
                *slot = Some(answer.clone());
            }
        }
        let r = p.send_answer(answer);
        self.drain(now, peer);
        r
    }

    fn drain(&mut self, now: Instant, peer: PeerId) {
        while let Some(ev) = self.peers[peer.0].poll_event() {
            match ev {
                PeerEvent::Open { .. } => self.events.push_back(RouterEvent::PeerOpen(peer)),
                PeerEvent::Suspect => self.events.push_back(RouterEvent::PeerSuspect(peer)),
                PeerEvent::Closed { reason } => {
                    self.events
                        .push_back(RouterEvent::PeerClosed { peer, reason });
                }
                PeerEvent::Request(m) => self.incoming(now, peer, m),
                PeerEvent::Answer { request_id, answer } => {
                    if let Some(id) = self.by_peer.remove(&(peer, request_id)) {
                        if self.routed.remove(&id).is_some() {
                            self.events
                                .push_back(RouterEvent::Answer { id, peer, answer });
                        }
                    }
                }
                PeerEvent::RequestFailed {
                    request_id, reason, ..
                } => {
                    let Some(id) = self.by_peer.remove(&(peer, request_id)) else {
                        continue;
                    };
                    self.failed(now, id, peer, reason);
                }
            }
        }
    }

    fn failed(&mut self, now: Instant, id: RouteId, from: PeerId, reason: FailReason) {
        let Some(r) = self.routed.get_mut(&id) else {
            return;
        };
        let error = match reason {
            FailReason::Timeout => Some(RouteError::Timeout),
            FailReason::Encode(e) => Some(RouteError::Encode(e)),
            _ if r.failovers >= self.config.max_failovers => {
                Some(RouteError::TooManyFailovers(r.failovers))
            }
            _ => None,
        };
        if let Some(error) = error {
            self.routed.remove(&id);
            self.events.push_back(RouterEvent::Failed { id, error });
            return;
        }
        let request = r.request.clone();
        let Some(alt) = self.choose(&request, Some(from)) else {
            self.routed.remove(&id);
            self.events.push_back(RouterEvent::Failed {
                id,
                error: RouteError::NoPeer,
            });
            return;
        };
        // Section 5.5.4: re-sent to an alternate with the T flag, same End-to-End id.
        let mut again = request;
        again.flags = again.flags | CommandFlags::RETRANSMIT;
        let r = self.routed.get_mut(&id).expect("checked above");
        r.failovers += 1;
        r.peer = alt;
        r.request = again.clone();
        let pr = self.peers[alt.0].send_request(now, again);
        if let Some(r) = self.routed.get_mut(&id) {
            r.peer_request = pr;
        }
        self.by_peer.insert((alt, pr), id);
        self.drain(now, alt);
    }

    fn incoming(&mut self, now: Instant, peer: PeerId, m: Message) {
        let host = m
            .find(&dict::ORIGIN_HOST)
            .and_then(|a| a.as_str().ok())
            .map(str::to_owned)
            .unwrap_or_default();
        let key = (host, m.end_to_end);
        if let Some(prev) = self.dups.map.get(&key) {
            self.duplicates_seen += 1;
            if let Some(ans) = prev {
                // Same answer, this copy's Hop-by-Hop identifier.
                let mut ans = ans.clone();
                ans.hop_by_hop = m.hop_by_hop;
                if let Err(e) = self.peers[peer.0].send_answer(&ans) {
                    tracing::debug!(error = %e, "diameter: duplicate's answer not sent");
                }
            }
            return;
        }
        self.dups.order.push_back((now, key.0.clone(), key.1));
        if self.awaiting.len() < self.config.duplicate_capacity {
            self.awaiting.insert((peer, m.hop_by_hop), key.clone());
        }
        self.dups.map.insert(key, None);
        self.dups.expire(
            now,
            self.config.duplicate_window,
            self.config.duplicate_capacity,
        );
        self.events
            .push_back(RouterEvent::Request { peer, request: m });
    }
}
