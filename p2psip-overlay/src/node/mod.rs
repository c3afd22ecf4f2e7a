//! Sans-IO RELOAD peer core with the CHORD-RELOAD topology plugin
//! (RFC 6940 sections 6, 7 and 9).
//!
//! A [`Node`] is fed link frames with [`Node::handle`] and time with
//! [`Node::handle_timeout`]; it hands back frames to send
//! ([`Node::poll_transmit`]), the next deadline ([`Node::poll_timeout`]) and
//! application events ([`Node::poll_event`]). It never reads a clock and owns
//! no sockets: the simulator ([`crate::sim`]) and the TLS driver move frames.
//!
//! What it does:
//! - **Forwarding** (section 6.2): requests go hop by hop toward the peer
//!   responsible for their destination, each hop pushing the previous one on
//!   the via list and decrementing the TTL; responses retrace the via list.
//!   Every DATA frame is acknowledged on its link (section 5.6.3.1); a hop
//!   without an ACK after a retransmission marks that peer failed and the
//!   message goes to the next alternate hop. Forwarding does not depend on the
//!   message type (section 6.1): a message the core does not interpret (Probe,
//!   RouteQuery, ConfigUpdate, unknown codes) travels as [`msg::Body::Opaque`]
//!   with its body bytes unchanged; at its destination Probe, RouteQuery and
//!   ConfigUpdate are answered (below) and any other request gets
//!   Error_Invalid_Message (section 6.3.3.1 has no code of its own for an
//!   unsupported message type).
//! - **Transactions**: requests this peer originates time out end to end and
//!   are retried once over a fresh route. Transaction ids are full 64-bit
//!   random values (section 6.3.2) from the node's seeded RNG
//!   ([`Node::reseed`]), never one still in flight; an answer completes a
//!   transaction only when its type matches the request and, for a request
//!   addressed to a Node-ID, it comes from that peer (an error may come from
//!   any hop), so a colliding or forged transaction id cannot cross-wire
//!   answers.
//! - **Join** (9.5): find the admitting peer by routing a Ping to our own id,
//!   send it a Join, receive its full Update (and the data in our range).
//! - **Stabilisation** (9.7, Updates and stabilisation): periodic Updates to the nearest successor and
//!   predecessor; finger probes (a Ping routed to each finger start point).
//! - **Reactive recovery** (9.7, neighbour failures): a failed peer is removed everywhere and
//!   the neighbours get Updates; data is re-replicated.
//! - **Attach** (6.5.1, no ICE): [`Node::attach`] routes an AttachReq with this
//!   node's host candidates ([`Node::set_candidates`]) through the overlay to a
//!   Node-ID (never straight to it); the peer answers with its own, and both sides
//!   get an event ([`Event::Attached`], [`Event::AttachRequested`]) so the driver
//!   can open the link.
//! - **Leave** (9.9, Leaving): data handed to the successor, Leave to the neighbours.
//! - **Storage and replicas** (section 7; CHORD-RELOAD replication, 9): the responsible peer
//!   stores and copies each resource to its first [`NodeConfig::replicas`] successors
//!   (3 by default: "3 replicas on successors", 4 copies in all);
//!   data moves to a new responsible peer on join and on leave.
//! - **Stat and Find** (7.4.3, 7.4.4): [`Node::stat`] returns the metadata
//!   (length, SHA-256 hash, lifetime, storage time, exists) of what a Fetch
//!   would return; [`Node::find`] the closest Resource-ID at or after the
//!   requested one, per kind, in the responsible peer's range.
//! - **Probe** (6.4.2.5, section 9's ProbeInformation): a ProbeReq (sent with [`Node::send_opaque`]) is
//!   answered with responsible_ppb, num_resources and uptime.
//! - **RouteQuery** (6.4.2.4): answered with the next hop this peer would use
//!   for the queried destination (itself when responsible).
//! - **ConfigUpdate** (6.5.4, type `config`): a newer configuration sequence
//!   replaces [`Node::config_sequence`] (the document is kept,
//!   [`Node::config_document`]); an older one gets Error_Config_Too_Old.

pub mod convert;
pub mod msg;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::storage::{
    FetchSpec, KindData, KindId, Select, Signer, StatKind, Storage, StoreError, StoreResult,
};
use crate::topology::{finger_start, ChordConfig, Id, RoutingTable};
use msg::{error_code, Body, ChordUpdate, Dest, Frame, Message, UpdateType};

/// Node settings (the CHORD-RELOAD part of the overlay configuration).
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Neighbour table sizes.
    pub chord: ChordConfig,
    /// Replicas on successors: how many of the responsible peer's first
    /// successors hold a copy of each resource (RFC 6940 section 9, Data
    /// Storage). The default 3 is "3 replicas on successors": 4 copies in
    /// all, the responsible peer's included.
    pub replicas: usize,
    /// chord-update-interval: periodic Update to the nearest neighbours.
    pub update_interval: Duration,
    /// Interval between finger probes (one finger per tick).
    pub finger_interval: Duration,
    /// Link retransmission timeout for a DATA frame.
    pub hop_rto: Duration,
    /// Retransmissions on a link before the peer is declared failed.
    pub hop_retries: u8,
    /// End-to-end transaction timeout.
    pub request_timeout: Duration,
    /// End-to-end retries (over a fresh route).
    pub request_retries: u8,
    /// initial-ttl (RFC 6940 default 100).
    pub initial_ttl: u8,
    /// How long a failed peer is not re-learnt from other peers' lists.
    pub dead_memory: Duration,
    /// Link setup budget: how long a frame the driver holds while it opens the link
    /// to its hop ([`Node::link_waiting`]: the Attach round trip of RFC 6940 section
    /// 6.5.1 and the TLS handshake) may wait before the peer is declared failed. The
    /// frame's retransmissions ([`NodeConfig::hop_rto`], [`NodeConfig::hop_retries`])
    /// start only once the link is up ([`Node::link_up`]); a connect that fails
    /// ([`Node::link_failed`]) fails the peer at once.
    pub link_setup_timeout: Duration,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            chord: ChordConfig::default(),
            replicas: 3,
            update_interval: Duration::from_secs(10),
            finger_interval: Duration::from_secs(10),
            hop_rto: Duration::from_millis(250),
            hop_retries: 1,
            request_timeout: Duration::from_secs(10),
            request_retries: 1,
            initial_ttl: 100,
            dead_memory: Duration::from_secs(120),
            link_setup_timeout: Duration::from_secs(5),
        }
    }
}

/// A frame to put on the link to peer `to`.
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Destination peer (the link).
    pub to: Id,
    /// The frame.
    pub frame: Frame,
}

/// Why a request this node originated failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// No answer within the transaction timeout (after retries).
    Timeout,
    /// An ErrorResponse with this RFC 6940 code.
    Error(u16, String),
    /// The answer was of an unexpected type.
    Unexpected,
}

/// Outcome of an application request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Fetch answer.
    Fetched(Vec<KindData>),
    /// Store answer.
    Stored(Vec<StoreResult>),
    /// Stat answer (RFC 6940 section 7.4.3).
    Stat(Vec<StatKind>),
    /// Find answer (section 7.4.4): per kind, the closest Resource-ID or none.
    Found(Vec<(KindId, Option<Id>)>),
    /// The answer to a [`Node::send_opaque`] request: its code and body bytes.
    Other(u16, Vec<u8>),
}

/// Events for the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The node is part of the ring.
    Joined,
    /// An application request finished. `hops` is the number of overlay hops
    /// the answer came back over (the request's path length).
    Done {
        /// Handle returned by [`Node::fetch`] / [`Node::store`].
        handle: u64,
        /// Result.
        result: Result<Outcome, RequestError>,
        /// Overlay hops.
        hops: usize,
    },
    /// A peer was found dead and removed.
    PeerFailed(Id),
    /// Our Attach to `peer` was answered with its host candidates (RFC 6940
    /// section 6.5.1, no ICE): the driver can open a link to one of them.
    Attached {
        /// The peer attached to.
        peer: Id,
        /// Its host candidates.
        addrs: Vec<std::net::SocketAddr>,
    },
    /// Our Attach to this peer failed (error or timeout).
    AttachFailed(Id),
    /// A peer sent us an Attach (answered with our candidates): its host candidates.
    AttachRequested {
        /// The requesting peer.
        peer: Id,
        /// Its host candidates.
        addrs: Vec<std::net::SocketAddr>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    App(u64),
    FindAdmitting,
    Join,
    Update(Id),
    Finger(usize),
    Replica,
    Leave,
    Attach(Id),
}

#[derive(Debug)]
struct Tx {
    purpose: Purpose,
    /// For a request to a Node-ID: the peer whose answer is expected.
    expect: Option<Id>,
    msg: Message,
    deadline: Instant,
    retries_left: u8,
}

#[derive(Debug)]
struct HopPending {
    to: Id,
    msg: Message,
    deadline: Instant,
    attempts: u8,
    /// The driver holds the frame while it opens the link ([`Node::link_waiting`]):
    /// `deadline` is the end of the setup budget, not a retransmission time.
    waiting: bool,
    /// End of the setup budget, from the first [`Node::link_waiting`] for the frame.
    setup_until: Option<Instant>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    Joining { bootstrap: Id },
    Joined,
    Left,
}

/// One RELOAD peer.
#[derive(Debug)]
pub struct Node {
    id: Id,
    cfg: NodeConfig,
    table: RoutingTable,
    storage: Storage,
    state: State,
    started: Option<Instant>,
    /// Sequence of the overlay configuration in force (RFC 6940 section 6.5.4).
    config_sequence: u16,
    /// The last configuration document a ConfigUpdate brought.
    config_document: Option<Vec<u8>>,
    rng: StdRng,
    next_seq: u32,
    out: VecDeque<Transmit>,
    events: VecDeque<Event>,
    hops: HashMap<u32, HopPending>,
    tx: HashMap<u64, Tx>,
    dead: HashMap<Id, Instant>,
    holders: BTreeMap<Id, BTreeSet<Id>>,
    update_at: Option<Instant>,
    finger_at: Option<Instant>,
    reactive_at: Option<Instant>,
    expire_at: Option<Instant>,
    join_retry_at: Option<Instant>,
    finger_cursor: usize,
    /// Neighbour table as last announced by a reactive Update.
    announced: Vec<Id>,
    sync_needed: bool,
    next_handle: u64,
    /// Host candidates this node announces in Attach (section 6.5.1).
    candidates: Vec<std::net::SocketAddr>,
    /// When this node last sent each peer an Update that teaches it peers.
    taught: HashMap<Id, Instant>,
    /// While joining: the admitting peer our Ping found (section 9.5).
    admitting: Option<Id>,
}

impl Node {
    /// A node with this Node-ID, not yet in any ring.
    #[must_use]
    pub fn new(id: Id, cfg: NodeConfig) -> Self {
        Self {
            id,
            table: RoutingTable::new(id, cfg.chord),
            cfg,
            storage: Storage::default(),
            state: State::Idle,
            started: None,
            rng: StdRng::from_seed(seed_of(id)),
            next_seq: 1,
            out: VecDeque::new(),
            events: VecDeque::new(),
            hops: HashMap::new(),
            tx: HashMap::new(),
            dead: HashMap::new(),
            holders: BTreeMap::new(),
            update_at: None,
            finger_at: None,
            reactive_at: None,
            expire_at: None,
            join_retry_at: None,
            finger_cursor: 0,
            announced: Vec::new(),
            sync_needed: false,
            next_handle: 1,
            config_sequence: 0,
            config_document: None,
            candidates: Vec::new(),
            taught: HashMap::new(),
            admitting: None,
        }
    }

    /// Reseeds the RNG transaction ids come from. [`Node::new`] seeds it from
    /// the Node-ID (deterministic, for the simulator); a real peer reseeds it
    /// from the operating system's RNG so its ids are not predictable.
    pub fn reseed(&mut self, seed: [u8; 32]) {
        self.rng = StdRng::from_seed(seed);
    }

    /// A fresh transaction id: 64 random bits, not 0, not one in flight.
    fn new_txid(&mut self) -> u64 {
        loop {
            let t: u64 = self.rng.gen();
            if t != 0 && !self.tx.contains_key(&t) {
                return t;
            }
        }
    }

    /// This node's id.
    #[must_use]
    pub fn id(&self) -> Id {
        self.id
    }

    /// The routing table.
    #[must_use]
    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    /// The local storage.
    #[must_use]
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// True once the node is part of the ring.
    #[must_use]
    pub fn is_joined(&self) -> bool {
        self.state == State::Joined
    }

    /// Start a new overlay: the first peer is responsible for everything.
    pub fn start_alone(&mut self, now: Instant) {
        self.state = State::Joined;
        self.started = Some(now);
        self.start_timers(now);
        self.events.push_back(Event::Joined);
    }

    /// Join through `bootstrap` (RFC 6940 section 9.5): route a Ping to our
    /// own id to find the admitting peer, then Join it.
    pub fn join(&mut self, now: Instant, bootstrap: Id) {
        self.state = State::Joining { bootstrap };
        self.started = Some(now);
        self.join_retry_at = Some(now + self.cfg.request_timeout * 3);
        self.request(
            now,
            Dest::Resource(self.id),
            Body::PingReq,
            Purpose::FindAdmitting,
        );
    }

    /// Leave gracefully (RFC 6940 section 9, Leaving): hand our data to the
    /// successor, send Leave to every neighbour. The node stops afterwards.
    pub fn leave(&mut self, now: Instant) {
        if self.state != State::Joined {
            self.state = State::Left;
            return;
        }
        if let Some(&s) = self.table.successors().first() {
            for r in self.storage.resources() {
                if self.table.is_responsible(r) {
                    self.send_store(now, s, r, 0);
                }
            }
        }
        // RFC 6940 section 9 (Leaving): successors learn our predecessors, predecessors
        // our successors (ChordLeaveData from_pred / from_succ).
        let successors = self.table.successors().to_vec();
        let predecessors = self.table.predecessors().to_vec();
        for p in self.table.neighbors() {
            let to_succ = successors.contains(&p);
            let body = Body::LeaveReq {
                leaving: self.id,
                successors: if to_succ {
                    Vec::new()
                } else {
                    successors.clone()
                },
                predecessors: if to_succ {
                    predecessors.clone()
                } else {
                    Vec::new()
                },
            };
            self.request(now, Dest::Node(p), body, Purpose::Leave);
        }
        self.state = State::Left;
        self.tx.clear();
        self.hops.clear();
    }

    /// Fetch from the overlay (RFC 6940 section 7.4.2); the answer comes as
    /// [`Event::Done`] with the returned handle.
    pub fn fetch(&mut self, now: Instant, resource: Id, specs: Vec<FetchSpec>) -> u64 {
        let h = self.next_handle;
        self.next_handle += 1;
        self.request(
            now,
            Dest::Resource(resource),
            Body::FetchReq { resource, specs },
            Purpose::App(h),
        );
        h
    }

    /// The sequence number of the overlay configuration in force (RFC 6940 section
    /// 11.1 `sequence`; 0 until set).
    #[must_use]
    pub fn config_sequence(&self) -> u16 {
        self.config_sequence
    }

    /// Sets the configuration sequence (the driver, from the document it loaded).
    pub fn set_config_sequence(&mut self, sequence: u16) {
        self.config_sequence = sequence;
    }

    /// The configuration document the last accepted ConfigUpdate carried (XML bytes).
    #[must_use]
    pub fn config_document(&self) -> Option<&[u8]> {
        self.config_document.as_deref()
    }

    /// Stat (RFC 6940 section 7.4.3): metadata of the values under `resource`; the
    /// answer comes as [`Event::Done`] with [`Outcome::Stat`].
    pub fn stat(&mut self, now: Instant, resource: Id, specs: Vec<FetchSpec>) -> u64 {
        let h = self.next_handle;
        self.next_handle += 1;
        self.request(
            now,
            Dest::Resource(resource),
            Body::StatReq { resource, specs },
            Purpose::App(h),
        );
        h
    }

    /// Find (RFC 6940 section 7.4.4): per kind, the closest Resource-ID at or after
    /// `resource` that the peer responsible for `resource` stores; the answer comes as
    /// [`Event::Done`] with [`Outcome::Found`].
    pub fn find(&mut self, now: Instant, resource: Id, kinds: Vec<KindId>) -> u64 {
        let h = self.next_handle;
        self.next_handle += 1;
        self.request(
            now,
            Dest::Resource(resource),
            Body::FindReq { resource, kinds },
            Purpose::App(h),
        );
        h
    }

    /// Sends a request the core does not interpret (message `code`, odd; `body` as
    /// encoded) over the destination list `dest` (section 6.3.2.2); any answer comes as [`Event::Done`] with
    /// [`Outcome::Other`] (or an error). For Probe and extensions' messages, and for
    /// tests of type-agnostic forwarding (RFC 6940 section 6.1).
    pub fn send_opaque(&mut self, now: Instant, dest: Vec<Dest>, code: u16, body: Vec<u8>) -> u64 {
        let h = self.next_handle;
        self.next_handle += 1;
        self.request_to(now, dest, Body::Opaque { code, body }, Purpose::App(h));
        h
    }

    /// Store into the overlay (RFC 6940 section 7.4.1), signed by `signer`.
    pub fn store(
        &mut self,
        now: Instant,
        resource: Id,
        kind_data: Vec<KindData>,
        signer: Signer,
    ) -> u64 {
        let h = self.next_handle;
        self.next_handle += 1;
        let body = Body::StoreReq {
            resource,
            replica_number: 0,
            kind_data,
            signer,
        };
        self.request(now, Dest::Resource(resource), body, Purpose::App(h));
        h
    }

    /// The host candidates (listen addresses) this node puts in its Attach
    /// requests and answers (RFC 6940 section 6.5.1, TLS-TCP-FH-NO-ICE).
    pub fn set_candidates(&mut self, candidates: Vec<std::net::SocketAddr>) {
        self.candidates = candidates;
    }

    /// Attach to the peer `to` (RFC 6940 section 6.5.1, no ICE): an AttachReq with
    /// our host candidates routed through the overlay to its Node-ID (never
    /// straight to it: there is no link yet). The answer comes as
    /// [`Event::Attached`] (or [`Event::AttachFailed`]).
    pub fn attach(&mut self, now: Instant, to: Id) {
        if to == self.id || matches!(self.state, State::Idle | State::Left) {
            return;
        }
        let body = Body::AttachReq {
            candidates: self.candidates.clone(),
            send_update: false,
        };
        self.request(now, Dest::Node(to), body, Purpose::Attach(to));
    }

    /// The driver holds DATA frame `seq` for peer `to` while it opens the link to it
    /// (an Attach, RFC 6940 section 6.5.1, then the TLS handshake): the frame is not
    /// counted against the peer's liveness (no retransmission, no failure) until the
    /// setup budget [`NodeConfig::link_setup_timeout`], counted from the first call
    /// for the frame, runs out; then the peer is failed and the message rerouted, as
    /// for a hop that never acknowledged. Later calls for the same frame do not extend
    /// the budget. Unknown frames are ignored.
    pub fn link_waiting(&mut self, now: Instant, to: Id, seq: u32) {
        let budget = self.cfg.link_setup_timeout;
        if let Some(h) = self.hops.get_mut(&seq) {
            if h.to == to && !h.waiting {
                h.waiting = true;
                h.deadline = *h.setup_until.get_or_insert(now + budget);
            }
        }
    }

    /// The link to `to` was not opened for a reason that does not show the peer dead
    /// (its Attach failed: an error from the overlay, e.g. a route through peers still
    /// joining): the frames held for it go back to the retransmission timer, so a
    /// retransmission tries again; the hop's retransmission budget applies from here,
    /// within the setup budget already running.
    pub fn link_down(&mut self, now: Instant, to: Id) {
        let rto = self.cfg.hop_rto;
        for h in self.hops.values_mut() {
            if h.to == to && h.waiting {
                h.waiting = false;
                h.deadline = (now + rto).min(h.setup_until.unwrap_or(now + rto));
            }
        }
    }

    /// The link to `to` is up: its frames held by [`Node::link_waiting`] go back to
    /// the ordinary retransmission timer (the driver sends them now; their ACKs end
    /// them).
    pub fn link_up(&mut self, now: Instant, to: Id) {
        let rto = self.cfg.hop_rto;
        for h in self.hops.values_mut() {
            if h.to == to && h.waiting {
                h.waiting = false;
                h.deadline = now + rto;
            }
        }
    }

    /// The link to `to` could not be opened (connection refused, handshake failed or
    /// timed out, no Attach answer): the peer is failed at once (RFC 6940 section 9,
    /// neighbour failures) and every frame waiting for it is rerouted, as if its hop
    /// retransmissions had run out. A killed peer is thus detected as fast as before
    /// the setup budget existed.
    pub fn link_failed(&mut self, now: Instant, to: Id) {
        if matches!(self.state, State::Left | State::Idle) || to == self.id {
            return;
        }
        let seqs: Vec<u32> = self
            .hops
            .iter()
            .filter(|(_, h)| h.to == to)
            .map(|(&s, _)| s)
            .collect();
        self.peer_failed(now, to);
        for seq in seqs {
            let Some(h) = self.hops.remove(&seq) else {
                continue;
            };
            if let State::Joining { .. } = self.state {
                continue;
            }
            self.route(now, h.msg);
        }
        self.after(now);
    }

    /// Next frame to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// Next application event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Earliest deadline the node wants [`Node::handle_timeout`] called at.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Left || self.state == State::Idle {
            return None;
        }
        let timers = [
            self.update_at,
            self.finger_at,
            self.reactive_at,
            self.expire_at,
            self.join_retry_at,
        ];
        timers
            .into_iter()
            .flatten()
            .chain(self.hops.values().map(|h| h.deadline))
            .chain(self.tx.values().map(|t| t.deadline))
            .min()
    }

    fn start_timers(&mut self, now: Instant) {
        // Spread the periodic work over the interval by node id.
        let frac = |d: Duration, salt: u32| {
            let x = ((self.id.0 >> salt) as u64 % 1000) as u32;
            d * x / 1000
        };
        self.update_at = Some(now + frac(self.cfg.update_interval, 7));
        self.finger_at = Some(now + frac(self.cfg.finger_interval, 17));
        self.expire_at = Some(now + Duration::from_secs(60));
    }

    fn uptime(&self, now: Instant) -> u32 {
        self.started
            .map_or(0, |s| now.saturating_duration_since(s).as_secs() as u32)
    }

    fn is_dead(&self, p: Id, now: Instant) -> bool {
        self.dead.get(&p).is_some_and(|&until| until > now)
    }

    fn chord_update(&self, now: Instant, kind: UpdateType) -> ChordUpdate {
        ChordUpdate {
            uptime: self.uptime(now),
            kind,
            predecessors: self.table.predecessors().to_vec(),
            successors: self.table.successors().to_vec(),
            fingers: if kind == UpdateType::Full {
                self.table.finger_peers()
            } else {
                Vec::new()
            },
        }
    }

    // ----- sending -----

    fn request(&mut self, now: Instant, dest: Dest, body: Body, purpose: Purpose) {
        self.request_to(now, vec![dest], body, purpose);
    }

    /// A request with a destination list (RFC 6940 section 6.3.2.2); the answer is
    /// expected from the last entry when it is a Node-ID.
    fn request_to(&mut self, now: Instant, dest: Vec<Dest>, body: Body, purpose: Purpose) {
        let txid = self.new_txid();
        let expect = match dest.last() {
            Some(&Dest::Node(x)) => Some(x),
            _ => None,
        };
        let msg = Message {
            txid,
            ttl: self.cfg.initial_ttl,
            via: Vec::new(),
            dest,
            body,
        };
        self.tx.insert(
            txid,
            Tx {
                purpose,
                expect,
                msg: msg.clone(),
                deadline: now + self.cfg.request_timeout,
                retries_left: self.cfg.request_retries,
            },
        );
        self.route(now, msg);
    }

    fn send_hop(&mut self, now: Instant, to: Id, msg: Message) {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.out.push_back(Transmit {
            to,
            frame: Frame::Data {
                seq,
                msg: Box::new(msg.clone()),
            },
        });
        self.hops.insert(
            seq,
            HopPending {
                to,
                msg,
                deadline: now + self.cfg.hop_rto,
                attempts: 1,
                waiting: false,
                setup_until: None,
            },
        );
    }

    /// Pick the next hop for `msg` (whose via/TTL are already updated) and
    /// send it, or handle it here.
    fn route(&mut self, now: Instant, mut msg: Message) {
        while let Some(&Dest::Node(x)) = msg.dest.first() {
            if x == self.id {
                msg.dest.remove(0);
            } else {
                break;
            }
        }
        let Some(&front) = msg.dest.first() else {
            self.deliver(now, msg, false);
            return;
        };
        if msg.body.is_response() {
            let Dest::Node(x) = front else {
                return;
            };
            if !self.is_dead(x, now) {
                self.send_hop(now, x, msg);
                return;
            }
            // The previous hop died: route toward the originator instead.
            let Some(&Dest::Node(origin)) = msg.dest.last() else {
                return;
            };
            msg.dest = vec![Dest::Node(origin)];
            if let Some(h) = self.pick_hop(now, origin, &msg.via) {
                self.send_hop(now, h, msg);
            }
            return;
        }
        // Requests.
        if let State::Joining { bootstrap } = self.state {
            if !msg.via.is_empty() {
                // A request to forward, sent by a peer that already lists us (the
                // admitting peer's table does once it has our JoinReq): through the
                // bootstrap or the admitting peer, never back to one on the via list
                // (a loop the message layer refuses, RFC 6940 section 6.2.2).
                match [Some(bootstrap), self.admitting]
                    .into_iter()
                    .flatten()
                    .find(|h| !msg.via.contains(h))
                {
                    Some(h) => self.send_hop(now, h, msg),
                    None => self.respond_error(now, msg, error_code::NOT_FOUND, "joining"),
                }
                return;
            }
            // Not in the ring yet: everything goes through the bootstrap,
            // except messages to a peer we address directly.
            let to = match front {
                Dest::Node(_) if matches!(msg.body, Body::AttachReq { .. }) => bootstrap,
                Dest::Node(x) => x,
                Dest::Resource(_) => bootstrap,
            };
            self.send_hop(now, to, msg);
            return;
        }
        let target = match front {
            Dest::Node(x) if msg.via.is_empty() && matches!(msg.body, Body::AttachReq { .. }) => {
                // our Attach: through the overlay, not to the peer itself
                match self
                    .pick_hop(now, x, &msg.via)
                    .filter(|&h| h != x)
                    .or_else(|| {
                        self.table
                            .next_hops(x)
                            .into_iter()
                            .find(|&h| h != x && !self.is_dead(h, now))
                    })
                    .or_else(|| self.attach_relay(now, x))
                {
                    Some(h) => self.send_hop(now, h, msg),
                    None => self.respond_error(now, msg, error_code::NOT_FOUND, "no route"),
                }
                return;
            }
            Dest::Node(x) => {
                if msg.via.is_empty() {
                    // we originate a message to a peer we have a link with;
                    // a peer known dead gets nothing (the transaction times out)
                    if !self.is_dead(x, now) {
                        self.send_hop(now, x, msg);
                    }
                    return;
                }
                x
            }
            Dest::Resource(r) => r,
        };
        if self.table.is_responsible(target) {
            if matches!(front, Dest::Node(_)) {
                self.respond_error(now, msg, error_code::NOT_FOUND, "no such peer");
            } else {
                self.deliver(now, msg, true);
            }
            return;
        }
        match self.pick_hop(now, target, &msg.via) {
            Some(h) => self.send_hop(now, h, msg),
            None => self.respond_error(now, msg, error_code::NOT_FOUND, "no route"),
        }
    }

    /// A peer to carry our Attach to `x` when the routing table names no hop but `x`
    /// itself (`x` is our nearest successor, or the only peer of its stretch of the ring
    /// that we know, as right after joining): the known live peer nearest to `x` on the
    /// ring, on either side. Its neighbour table is the likeliest to hold `x` (a
    /// joining peer learns its neighbours from the admitting peer, which is one of them).
    fn attach_relay(&self, now: Instant, x: Id) -> Option<Id> {
        self.table
            .known_peers()
            .into_iter()
            .filter(|&p| p != x && !self.is_dead(p, now))
            .min_by_key(|&p| p.distance_to(x).min(x.distance_to(p)))
    }

    fn pick_hop(&self, now: Instant, target: Id, via: &[Id]) -> Option<Id> {
        self.table
            .next_hops(target)
            .into_iter()
            .find(|h| !via.contains(h) && !self.is_dead(*h, now))
    }

    fn respond(&mut self, now: Instant, req: &Message, body: Body) {
        let dest = req.via.iter().rev().map(|&v| Dest::Node(v)).collect();
        let msg = Message {
            txid: req.txid,
            ttl: self.cfg.initial_ttl,
            via: Vec::new(),
            dest,
            body,
        };
        self.route(now, msg);
    }

    fn respond_error(&mut self, now: Instant, req: Message, code: u16, reason: &str) {
        if req.via.is_empty() {
            // our own request: fail the transaction at once
            self.finish(
                now,
                req.txid,
                Body::Error {
                    code,
                    reason: reason.into(),
                },
                0,
            );
            return;
        }
        self.respond(
            now,
            &req,
            Body::Error {
                code,
                reason: reason.into(),
            },
        );
    }

    fn send_store(&mut self, now: Instant, to: Id, resource: Id, replica_number: u8) {
        let kind_data = self.storage.export(now, resource);
        if kind_data.is_empty() {
            return;
        }
        self.holders.entry(resource).or_default().insert(to);
        let body = Body::StoreReq {
            resource,
            replica_number,
            kind_data,
            signer: Signer {
                node_id: self.id,
                user_name: String::new(),
            },
        };
        self.request(now, Dest::Node(to), body, Purpose::Replica);
    }

    fn send_update(&mut self, now: Instant, to: Id, kind: UpdateType) {
        let body = Body::UpdateReq(self.chord_update(now, kind));
        self.request(now, Dest::Node(to), body, Purpose::Update(to));
    }

    // ----- receiving -----

    /// A frame arrived on the link from peer `from`.
    pub fn handle(&mut self, now: Instant, from: Id, frame: Frame) {
        if matches!(self.state, State::Left | State::Idle) {
            return;
        }
        match frame {
            Frame::Ack { seq } => {
                if self.hops.get(&seq).is_some_and(|h| h.to == from) {
                    self.hops.remove(&seq);
                }
            }
            Frame::Data { seq, msg } => {
                self.out.push_back(Transmit {
                    to: from,
                    frame: Frame::Ack { seq },
                });
                let mut msg = *msg;
                if msg.via.len() > 255 {
                    return; // hostile: oversize via list
                }
                // A frame over the link from `from` shows it alive: a peer this node
                // failed moments ago (e.g. restarted with the same Node-ID within the
                // dead-peer memory) gets our answers again instead of having them
                // dropped as bound for a dead peer.
                self.dead.remove(&from);
                msg.via.push(from);
                if !msg.body.is_response() {
                    if msg.ttl == 0 {
                        self.respond_error(now, msg, error_code::TTL_EXCEEDED, "TTL exceeded");
                        self.after(now);
                        return;
                    }
                    msg.ttl -= 1;
                    self.note_rejoining(now, &msg);
                }
                self.route(now, msg);
            }
        }
        self.after(now);
    }

    /// Answers a request that the security layer refused before it reached the
    /// core (RFC 6940 section 6.3.3.1): an ErrorResponse with `code`, routed back
    /// over the request's via list (`via` as received, without the link's peer
    /// `from`, which is pushed here as for any received request). Nothing else
    /// changes: the request is neither forwarded nor delivered.
    pub fn answer_error(
        &mut self,
        now: Instant,
        from: Id,
        txid: u64,
        via: Vec<Id>,
        code: u16,
        reason: &str,
    ) {
        let body = Body::Error {
            code,
            reason: reason.into(),
        };
        self.answer_with(now, from, txid, via, body);
    }

    /// Answers the request (`txid`, `via`) that arrived from neighbour `from` with `body`,
    /// routed back along the via list (RFC 6940 section 6.2.2).
    fn answer_with(&mut self, now: Instant, from: Id, txid: u64, mut via: Vec<Id>, body: Body) {
        if matches!(self.state, State::Left | State::Idle) || via.len() > 255 {
            return;
        }
        via.push(from);
        let req = Message {
            txid,
            ttl: 0,
            via,
            dest: Vec::new(),
            body: Body::PingReq,
        };
        self.respond(now, &req, body);
        self.after(now);
    }

    /// [`Node::answer_error`] with Error_Unknown_Kind listing `kinds` (RFC 6940 section
    /// 7.4.1.2), for a request naming kinds this node does not know.
    pub fn answer_unknown_kinds(
        &mut self,
        now: Instant,
        from: Id,
        txid: u64,
        via: Vec<Id>,
        kinds: Vec<KindId>,
    ) {
        self.answer_with(now, from, txid, via, Body::UnknownKinds { kinds });
    }

    /// Handle a message addressed here. `to_resource` is true when it was
    /// routed to a Resource-ID this peer is responsible for (a client request)
    /// and false when it was addressed to this Node-ID (peer to peer).
    fn deliver(&mut self, now: Instant, msg: Message, to_resource: bool) {
        if msg.body.is_response() {
            let hops = msg.via.len();
            // The answering peer is the first via entry: the core pushes the
            // link's peer, so an answer straight from the responder (empty
            // via list on the wire) names that peer; an empty list here is
            // our own answer to our own request.
            let responder = msg.via.first().copied().unwrap_or(self.id);
            let mut body = msg.body;
            if let Body::PingAns { responder: r } = &mut body {
                *r = responder;
            }
            let Some(tx) = self.tx.get(&msg.txid) else {
                return;
            };
            if !answers(&tx.msg.body, &body)
                || (!matches!(body, Body::Error { .. } | Body::UnknownKinds { .. })
                    && tx.expect.is_some_and(|x| x != responder))
            {
                // not the answer to this transaction (a colliding or forged id)
                return;
            }
            for &v in &msg.via {
                if !self.is_dead(v, now) && self.state == State::Joined {
                    self.table.offer_finger(v);
                }
            }
            self.finish(now, msg.txid, body, hops);
            return;
        }
        let from = msg.via.first().copied().unwrap_or(self.id);
        let answer = match &msg.body {
            Body::PingReq => Body::PingAns { responder: self.id },
            Body::JoinReq { joining } => {
                let jp = *joining;
                self.dead.remove(&jp);
                // A joining peer holds nothing yet, whatever it held as the same
                // Node-ID before a crash this peer has not noticed (a restart within
                // the failure-detection time): the data in its range and its replicas
                // go to it again (the storage sync below), also when the table
                // already lists it.
                self.forget_holder(jp);
                self.sync_needed = true;
                let changed = self.table.add_peer(jp);
                self.respond(now, &msg, Body::JoinAns);
                // RFC 6940 9.5: the admitting peer sends the joining peer its
                // tables (and, through storage sync, the data in its range).
                self.send_update(now, jp, UpdateType::Full);
                if changed {
                    self.neighbours_changed(now);
                }
                return;
            }
            Body::UpdateReq(u) => {
                let u = u.clone();
                self.respond(now, &msg, Body::UpdateAns);
                self.on_update(now, from, &u);
                return;
            }
            Body::LeaveReq {
                leaving,
                successors,
                predecessors,
            } => {
                let l = *leaving;
                let peers: Vec<Id> = successors.iter().chain(predecessors).copied().collect();
                self.respond(now, &msg, Body::LeaveAns);
                self.dead.insert(l, now + self.cfg.dead_memory);
                let mut changed = self.table.remove_peer(l);
                for p in peers {
                    if p != self.id && !self.is_dead(p, now) {
                        changed |= self.table.add_peer(p);
                    }
                }
                self.forget_holder(l);
                if changed {
                    self.neighbours_changed(now);
                }
                return;
            }
            Body::StoreReq {
                resource,
                replica_number,
                kind_data,
                signer,
            } => {
                // Peer-to-peer stores (replicas, handover) are addressed to
                // this Node-ID by a neighbour; client stores are routed to the
                // resource and checked in full (RFC 6940 section 7.4.1.1).
                let peer_store = !to_resource
                    && msg.via.len() == 1
                    && (*replica_number > 0 || self.table.is_neighbor(from));
                let res = self
                    .storage
                    .store(now, *resource, peer_store, kind_data, signer);
                let r = *resource;
                match res {
                    Ok(results) => {
                        if peer_store {
                            self.holders.entry(r).or_default().insert(from);
                        }
                        self.sync_needed = true;
                        Body::StoreAns { results }
                    }
                    // section 7.4.1.1: the error_info carries the current generations
                    Err(StoreError::GenerationCounterTooLow { .. }) => Body::GenerationTooLow {
                        results: self
                            .storage
                            .fetch(
                                now,
                                r,
                                &kind_data
                                    .iter()
                                    .map(|kd| FetchSpec {
                                        kind: kd.kind,
                                        generation: 0,
                                        select: Select::Keys(Vec::new()),
                                    })
                                    .collect::<Vec<_>>(),
                            )
                            .map(|kds| {
                                kds.iter()
                                    .map(|kd| StoreResult {
                                        kind: kd.kind,
                                        generation: kd.generation,
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                    },
                    // section 7.4.1.2: every unknown kind listed
                    Err(StoreError::UnknownKind(_)) => Body::UnknownKinds {
                        kinds: self
                            .storage
                            .kinds()
                            .unknown(kind_data.iter().map(|k| k.kind)),
                    },
                    Err(e) => Body::Error {
                        code: e.code(),
                        reason: e.to_string(),
                    },
                }
            }
            Body::AttachReq { candidates, .. } => {
                if from != self.id {
                    self.events.push_back(Event::AttachRequested {
                        peer: from,
                        addrs: candidates.clone(),
                    });
                }
                Body::AttachAns {
                    candidates: self.candidates.clone(),
                }
            }
            // RFC 6940 section 6.5.2: this peer serves no application over AppAttach
            Body::AppAttachReq { application, .. } => Body::Error {
                code: error_code::NOT_FOUND,
                reason: format!("application {application} not served"),
            },
            Body::FetchReq { resource, specs } => match self.storage.fetch(now, *resource, specs) {
                Ok(kind_data) => Body::FetchAns { kind_data },
                Err(StoreError::UnknownKind(_)) => Body::UnknownKinds {
                    kinds: self.storage.kinds().unknown(specs.iter().map(|s| s.kind)),
                },
                Err(e) => Body::Error {
                    code: e.code(),
                    reason: e.to_string(),
                },
            },
            Body::StatReq { resource, specs } => match self.storage.stat(now, *resource, specs) {
                Ok(kinds) => Body::StatAns { kinds },
                Err(StoreError::UnknownKind(_)) => Body::UnknownKinds {
                    kinds: self.storage.kinds().unknown(specs.iter().map(|s| s.kind)),
                },
                Err(e) => Body::Error {
                    code: e.code(),
                    reason: e.to_string(),
                },
            },
            Body::FindReq { resource, kinds } => {
                // RFC 6940 section 7.4.4: among the Resource-IDs this peer is
                // responsible for (not the replicas it keeps for others: the range
                // (pred, me]), from the requested one up to this peer's Node-ID:
                // "at or after" does not wrap past the end of the range
                let (table, me, from) = (&self.table, self.id, *resource);
                let span = me.0.wrapping_sub(from.0);
                let results = self.storage.find(now, from, kinds, |r| {
                    table.is_responsible(r) && r.0.wrapping_sub(from.0) <= span
                });
                Body::FindAns { results }
            }
            Body::Opaque { code: 1, body } => match self.probe(now, body) {
                Some(answer) => answer,
                None => Body::Error {
                    code: error_code::INVALID_MESSAGE,
                    reason: "undecodable ProbeReq".into(),
                },
            },
            Body::Opaque { code: 33, body } => self.config_update(body),
            Body::Opaque { code: 21, body } => match self.route_query(now, body, &msg.via) {
                Some((answer, send_update)) => {
                    if send_update && from != self.id {
                        self.send_update(now, from, UpdateType::Full);
                    }
                    answer
                }
                None => Body::Error {
                    code: error_code::INVALID_MESSAGE,
                    reason: "undecodable RouteQueryReq".into(),
                },
            },
            // RouteQuery, unknown codes: RFC 6940 defines no code
            // of its own for a message type the destination does not implement;
            // Error_Invalid_Message (section 6.3.3.1) is its catch-all.
            Body::Opaque { code, .. } => Body::Error {
                code: error_code::INVALID_MESSAGE,
                reason: format!("message code {code} not supported"),
            },
            _ => Body::Error {
                code: error_code::FORBIDDEN,
                reason: "unexpected message".into(),
            },
        };
        self.respond(now, &msg, answer);
    }

    /// ProbeAns (RFC 6940 section 6.4.2.5; CHORD-RELOAD's ProbeInformation, section 9): the requested
    /// information, in the order asked: responsible_ppb (the share of the ring from
    /// the predecessor to this peer, in parts per billion), num_resources (Resource-IDs
    /// stored here) and uptime (seconds); unknown types are left out. `None` when the
    /// body does not decode.
    fn probe(&self, now: Instant, body: &[u8]) -> Option<Body> {
        use crate::wire::{self, MessageCode, ProbeInformation, ProbeInformationType as T};
        let Ok(wire::Body::ProbeReq(asked)) = wire::Body::decode(MessageCode::PROBE_REQ, body)
        else {
            return None;
        };
        let info = asked
            .iter()
            .filter_map(|&t| {
                let value = match t {
                    T::RESPONSIBLE_SET => {
                        let share = match self.table.predecessors().first() {
                            Some(p) => self.id.0.wrapping_sub(p.0),
                            None => u128::MAX,
                        };
                        // share / 2^128 * 10^9, without overflow
                        u32::try_from(((share >> 64) * 1_000_000_000) >> 64).unwrap_or(u32::MAX)
                    }
                    T::NUM_RESOURCES => {
                        u32::try_from(self.storage.resources().len()).unwrap_or(u32::MAX)
                    }
                    T::UPTIME => self.uptime(now),
                    _ => return None,
                };
                Some(ProbeInformation {
                    info_type: t,
                    value,
                })
            })
            .collect();
        let bytes = wire::Body::ProbeAns(info).to_bytes().ok()?;
        Some(Body::Opaque {
            code: MessageCode::PROBE_ANS.0,
            body: bytes,
        })
    }

    /// ConfigUpdateReq (RFC 6940 section 6.5.4) of type `config`: a document with a
    /// newer sequence replaces this node's (sequence and document kept; the storage's
    /// kind list is not rebuilt from it), the same sequence is accepted with no change,
    /// an older one gets Error_Config_Too_Old. A `kind` update is not supported
    /// (Error_Invalid_Message), nor is an undecodable body or document.
    fn config_update(&mut self, body: &[u8]) -> Body {
        use crate::wire::{self, ConfigUpdateReq, MessageCode};
        let invalid = |reason: &str| Body::Error {
            code: error_code::INVALID_MESSAGE,
            reason: reason.into(),
        };
        let doc = match wire::Body::decode(MessageCode::CONFIG_UPDATE_REQ, body) {
            Ok(wire::Body::ConfigUpdateReq(ConfigUpdateReq::Config(doc))) => doc,
            Ok(wire::Body::ConfigUpdateReq(ConfigUpdateReq::Kinds(_))) => {
                return invalid("kind updates not supported")
            }
            _ => return invalid("undecodable ConfigUpdateReq"),
        };
        let Some(cfg) = std::str::from_utf8(&doc)
            .ok()
            .and_then(|x| crate::config::OverlayConfig::from_xml(x).ok())
        else {
            return invalid("configuration document does not parse");
        };
        match cfg.sequence.cmp(&self.config_sequence) {
            std::cmp::Ordering::Less => Body::Error {
                code: error_code::CONFIG_TOO_OLD,
                reason: format!(
                    "configuration sequence {} older than {}",
                    cfg.sequence, self.config_sequence
                ),
            },
            std::cmp::Ordering::Equal => config_update_ans(),
            std::cmp::Ordering::Greater => {
                self.config_sequence = cfg.sequence;
                self.config_document = Some(doc);
                config_update_ans()
            }
        }
    }

    /// RouteQueryAns (RFC 6940 section 6.4.2.4; CHORD-RELOAD: the next peer): the peer
    /// this node would forward a message for the queried destination to (itself when it
    /// is responsible), and whether the querier asked for an Update. `None` when the body
    /// does not decode.
    fn route_query(&self, now: Instant, body: &[u8], via: &[Id]) -> Option<(Body, bool)> {
        use crate::wire::{self, Destination, MessageCode, NodeId};
        let Ok(wire::Body::RouteQueryReq(q)) =
            wire::Body::decode(MessageCode::ROUTE_QUERY_REQ, body)
        else {
            return None;
        };
        let target = match &q.destination {
            Destination::Node(n) => Id(n.to_u128()),
            Destination::Resource(r) => Id(r.as_node_id()?.to_u128()),
            _ => return None,
        };
        let next = if target == self.id || self.table.is_responsible(target) {
            self.id
        } else {
            self.pick_hop(now, target, via).unwrap_or(self.id)
        };
        let bytes = wire::Body::RouteQueryAns(NodeId::from_u128(next.0))
            .to_bytes()
            .ok()?;
        Some((
            Body::Opaque {
                code: MessageCode::ROUTE_QUERY_ANS.0,
                body: bytes,
            },
            q.send_update,
        ))
    }

    fn on_update(&mut self, now: Instant, from: Id, u: &ChordUpdate) {
        let joining = matches!(self.state, State::Joining { .. });
        self.dead.remove(&from);
        if u.kind == UpdateType::PeerReady {
            // The sender has just joined (section 9.5): it holds none of our data,
            // even if it held some as the same Node-ID before a restart we did not
            // notice; the storage sync sends it the replicas and handovers it needs.
            self.forget_holder(from);
            self.sync_needed = true;
        }
        let mut changed = self.table.add_peer(from);
        let peers: Vec<Id> = u
            .successors
            .iter()
            .chain(&u.predecessors)
            .copied()
            .collect();
        for &p in &peers {
            if p != self.id && !self.is_dead(p, now) {
                changed |= self.table.add_peer(p);
            }
        }
        for &f in &u.fingers {
            if !self.is_dead(f, now) {
                self.table.offer_finger(f);
            }
        }
        // The nearest neighbour is authoritative for the peers beyond it.
        let dead = self.dead.clone();
        let skip = |q: Id| dead.get(&q).is_some_and(|&t| t > now);
        if self.table.successors().first() == Some(&from) {
            changed |= self.table.adopt_successors(from, &u.successors, skip);
        }
        if self.table.predecessors().first() == Some(&from) {
            changed |= self.table.adopt_predecessors(from, &u.predecessors, skip);
        }
        if joining {
            self.state = State::Joined;
            self.join_retry_at = None;
            self.start_timers(now);
            self.events.push_back(Event::Joined);
            for p in self.table.neighbors() {
                self.send_update(now, p, UpdateType::PeerReady);
            }
            self.sync_needed = true;
            return;
        }
        if changed {
            self.neighbours_changed(now);
        }
        // If our table would teach the sender something, tell it.
        let mut theirs = RoutingTable::new(from, self.cfg.chord);
        for &p in &peers {
            theirs.add_peer(p);
        }
        let mut teach = theirs.add_peer(self.id);
        for p in self.table.neighbors() {
            teach |= theirs.add_peer(p);
        }
        // At most once per update interval per peer: two peers whose dead-peer
        // memories differ would otherwise teach each other the same peers over and
        // over, at network speed.
        let recent = self
            .taught
            .get(&from)
            .is_some_and(|&t| now < t + self.cfg.update_interval);
        if teach && self.table.is_neighbor(from) && !recent {
            if self.taught.len() > 4096 {
                self.taught.clear();
            }
            self.taught.insert(from, now);
            self.send_update(now, from, UpdateType::Neighbors);
        }
    }

    /// A Ping routed to the Resource-ID equal to its originator's own Node-ID is that
    /// peer looking for its admitting peer (RFC 6940 section 9.5, Joining): a peer our
    /// table still lists is coming back (restarted with the same Node-ID before we
    /// noticed the crash; its old links are gone). The stale entry is dropped (not
    /// marked dead) so the Ping reaches the peer responsible for that id without it,
    /// not the joining peer itself (a loop), and the data it held is sent again once
    /// it has joined. The originator (`via[0]`) is the signed sender the message layer
    /// checked, so no peer can evict another this way.
    fn note_rejoining(&mut self, now: Instant, msg: &Message) {
        if self.state != State::Joined || !matches!(msg.body, Body::PingReq) {
            return;
        }
        let (Some(&Dest::Resource(r)), Some(&origin)) = (msg.dest.first(), msg.via.first()) else {
            return;
        };
        if r != origin || r == self.id {
            return;
        }
        self.forget_holder(r);
        if self.table.remove_peer(r) {
            self.neighbours_changed(now);
        }
    }

    fn neighbours_changed(&mut self, now: Instant) {
        self.sync_needed = true;
        if self.reactive_at.is_none() {
            self.reactive_at = Some(now + Duration::from_millis(100));
        }
    }

    fn forget_holder(&mut self, p: Id) {
        for h in self.holders.values_mut() {
            h.remove(&p);
        }
    }

    fn peer_failed(&mut self, now: Instant, p: Id) {
        if self.is_dead(p, now) {
            return;
        }
        self.dead.insert(p, now + self.cfg.dead_memory);
        self.forget_holder(p);
        let changed = self.table.remove_peer(p);
        self.events.push_back(Event::PeerFailed(p));
        if changed {
            self.neighbours_changed(now);
        }
    }

    fn finish(&mut self, now: Instant, txid: u64, body: Body, hops: usize) {
        let Some(tx) = self.tx.remove(&txid) else {
            return;
        };
        match tx.purpose {
            Purpose::App(handle) => {
                let result = match body {
                    Body::FetchAns { kind_data } => Ok(Outcome::Fetched(kind_data)),
                    Body::StoreAns { results } => Ok(Outcome::Stored(results)),
                    Body::StatAns { kinds } => Ok(Outcome::Stat(kinds)),
                    Body::FindAns { results } => Ok(Outcome::Found(results)),
                    Body::Opaque { code, body } => Ok(Outcome::Other(code, body)),
                    Body::Error { code, reason } => Err(RequestError::Error(code, reason)),
                    Body::GenerationTooLow { results } => Err(RequestError::Error(
                        5,
                        format!("generation counter too low: current {results:?}"),
                    )),
                    Body::UnknownKinds { kinds } => {
                        Err(RequestError::Error(12, format!("unknown kinds {kinds:?}")))
                    }
                    _ => Err(RequestError::Unexpected),
                };
                self.events.push_back(Event::Done {
                    handle,
                    result,
                    hops,
                });
            }
            Purpose::FindAdmitting => {
                if !matches!(body, Body::PingAns { .. }) {
                    // an error (e.g. a route through peers still joining): try again
                    // soon rather than at the join retry
                    let soon = now + Duration::from_secs(1);
                    self.join_retry_at = Some(self.join_retry_at.map_or(soon, |t| t.min(soon)));
                }
                if let Body::PingAns { responder } = body {
                    if responder != self.id {
                        self.admitting = Some(responder);
                        self.request(
                            now,
                            Dest::Node(responder),
                            Body::JoinReq { joining: self.id },
                            Purpose::Join,
                        );
                    }
                }
            }
            Purpose::Finger(i) => {
                if let Body::PingAns { responder } = body {
                    if responder != self.id && !self.is_dead(responder, now) {
                        self.table.set_finger(i, responder);
                    }
                }
            }
            Purpose::Attach(p) => match body {
                Body::AttachAns { candidates } if !candidates.is_empty() => {
                    self.events.push_back(Event::Attached {
                        peer: p,
                        addrs: candidates,
                    });
                }
                _ => self.events.push_back(Event::AttachFailed(p)),
            },
            Purpose::Join | Purpose::Update(_) | Purpose::Replica | Purpose::Leave => {}
        }
    }

    // ----- time -----

    /// Run the timers that are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if matches!(self.state, State::Left | State::Idle) {
            return;
        }
        // Link retransmissions and failures.
        let due: Vec<u32> = self
            .hops
            .iter()
            .filter(|(_, h)| h.deadline <= now)
            .map(|(&s, _)| s)
            .collect();
        for seq in due {
            let Some(mut h) = self.hops.remove(&seq) else {
                continue;
            };
            if self.is_dead(h.to, now) {
                self.route(now, h.msg);
            } else if !h.waiting && h.attempts <= self.cfg.hop_retries {
                h.attempts += 1;
                h.deadline = now + self.cfg.hop_rto * (1 << h.attempts.min(4));
                self.out.push_back(Transmit {
                    to: h.to,
                    frame: Frame::Data {
                        seq,
                        msg: Box::new(h.msg.clone()),
                    },
                });
                self.hops.insert(seq, h);
            } else {
                self.peer_failed(now, h.to);
                if let State::Joining { .. } = self.state {
                    continue;
                }
                self.route(now, h.msg);
            }
        }
        // End-to-end transactions.
        let due: Vec<u64> = self
            .tx
            .iter()
            .filter(|(_, t)| t.deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for txid in due {
            let Some(mut t) = self.tx.remove(&txid) else {
                continue;
            };
            if t.retries_left > 0 {
                t.retries_left -= 1;
                t.deadline = now + self.cfg.request_timeout;
                let msg = t.msg.clone();
                self.tx.insert(txid, t);
                self.route(now, msg);
                continue;
            }
            match t.purpose {
                Purpose::App(handle) => self.events.push_back(Event::Done {
                    handle,
                    result: Err(RequestError::Timeout),
                    hops: 0,
                }),
                Purpose::Update(p) => self.peer_failed(now, p),
                Purpose::Attach(p) => self.events.push_back(Event::AttachFailed(p)),
                _ => {}
            }
        }
        if self.join_retry_at.is_some_and(|t| t <= now) {
            if let State::Joining { bootstrap } = self.state {
                self.join(now, bootstrap);
            } else {
                self.join_retry_at = None;
            }
        }
        if self.state == State::Joined {
            if self.update_at.is_some_and(|t| t <= now) {
                self.update_at = Some(now + self.cfg.update_interval);
                let mut to: Vec<Id> = Vec::new();
                to.extend(self.table.successors().first());
                to.extend(self.table.predecessors().first());
                to.dedup();
                for p in to {
                    self.send_update(now, p, UpdateType::Neighbors);
                }
            }
            if self.finger_at.is_some_and(|t| t <= now) {
                self.finger_at = Some(now + self.cfg.finger_interval);
                let need = self.table.fingers_needing_lookup();
                if !need.is_empty() {
                    self.finger_cursor %= need.len();
                    let i = need[self.finger_cursor];
                    self.finger_cursor += 1;
                    let start = finger_start(self.id, i);
                    self.request(
                        now,
                        Dest::Resource(start),
                        Body::PingReq,
                        Purpose::Finger(i),
                    );
                }
            }
            if self.reactive_at.is_some_and(|t| t <= now) {
                self.reactive_at = None;
                // RFC 6940 section 9 (neighbour failures): tell the neighbours. The nearest successor
                // and predecessor always hear; they adopt our lists and pass
                // the change on only if their own tables change, so it travels
                // exactly as far as it matters. Peers that newly entered the
                // neighbour table hear too (they need our lists).
                let now_neigh = self.table.neighbors();
                let mut to: Vec<Id> = Vec::new();
                to.extend(self.table.successors().first());
                to.extend(self.table.predecessors().first());
                for &p in &now_neigh {
                    if !self.announced.contains(&p) && !to.contains(&p) {
                        to.push(p);
                    }
                }
                to.dedup();
                self.announced = now_neigh;
                for p in to {
                    self.send_update(now, p, UpdateType::Neighbors);
                }
            }
            if self.expire_at.is_some_and(|t| t <= now) {
                self.expire_at = Some(now + Duration::from_secs(60));
                self.storage.expire(now);
                self.dead.retain(|_, &mut t| t > now);
            }
        }
        self.after(now);
    }

    /// Work deferred to the end of each input: replica and handover sync.
    fn after(&mut self, now: Instant) {
        if self.sync_needed && self.state == State::Joined {
            self.sync_needed = false;
            self.sync_storage(now);
        }
    }

    /// Make sure each resource has its copies (RFC 6940 section 9, Redundancy and Joining):
    /// the responsible peer keeps its first `replicas` successors supplied; data in
    /// a predecessor's range is handed to that predecessor.
    fn sync_storage(&mut self, now: Instant) {
        let want = self.cfg.replicas;
        for r in self.storage.resources() {
            let have = self.holders.get(&r).cloned().unwrap_or_default();
            if self.table.is_responsible(r) {
                let succ: Vec<Id> = self.table.successors().iter().take(want).copied().collect();
                for (k, s) in succ.into_iter().enumerate() {
                    if !have.contains(&s) {
                        self.send_store(now, s, r, (k + 1) as u8);
                    }
                }
            } else if let Some(owner) = self.table.responsible_neighbor(r) {
                if self.table.predecessors().contains(&owner) && !have.contains(&owner) {
                    self.send_store(now, owner, r, 0);
                }
            }
        }
    }
}

/// The RNG seed of a node: its full 128-bit id, twice.
fn seed_of(id: Id) -> [u8; 32] {
    let mut seed = [0u8; 32];
    seed[..16].copy_from_slice(&id.to_be_bytes());
    seed[16..].copy_from_slice(&(!id.0).to_be_bytes());
    seed
}

/// ConfigUpdateAns (empty body, RFC 6940 section 6.5.4).
fn config_update_ans() -> Body {
    Body::Opaque {
        code: crate::wire::MessageCode::CONFIG_UPDATE_ANS.0,
        body: Vec::new(),
    }
}

/// True when `answer` is a possible answer to the request `req` (its own
/// answer type, or an error).
fn answers(req: &Body, answer: &Body) -> bool {
    matches!(
        (req, answer),
        (_, Body::Error { .. } | Body::UnknownKinds { .. })
            | (Body::StoreReq { .. }, Body::GenerationTooLow { .. })
            | (Body::PingReq, Body::PingAns { .. })
            | (Body::JoinReq { .. }, Body::JoinAns)
            | (Body::LeaveReq { .. }, Body::LeaveAns)
            | (Body::UpdateReq(_), Body::UpdateAns)
            | (Body::StoreReq { .. }, Body::StoreAns { .. })
            | (Body::FetchReq { .. }, Body::FetchAns { .. })
            | (Body::AttachReq { .. }, Body::AttachAns { .. })
            | (Body::StatReq { .. }, Body::StatAns { .. })
            | (Body::FindReq { .. }, Body::FindAns { .. })
    ) || matches!((req, answer), (Body::Opaque { code: q, .. }, Body::Opaque { code: a, .. })
            if crate::wire::MessageCode(*q).answer() == Some(crate::wire::MessageCode(*a)))
}
