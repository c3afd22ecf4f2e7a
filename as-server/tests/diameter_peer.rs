//! Diameter peer state machine, watchdog, router failover (RFC 6733 section 5, RFC 3539)
//! under a virtual clock: in-memory "connections" between sans-IO routers, no sockets, no
//! timing asserts. The last test runs the tokio driver over TCP on 127.0.0.1.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use as_server::diameter::base::{Capabilities, Cea, Cer, DisconnectCause};
use as_server::diameter::peer::{
    CloseReason, Peer, PeerConfig, PeerEvent, PeerState, Side, Transmit,
};
use as_server::diameter::router::{
    Accept, PeerId, RouteError, RouteId, Router, RouterConfig, RouterEvent,
};
use as_server::diameter::watchdog::WatchdogState;
use as_server::diameter::{
    dict, ApplicationId, Avp, CommandCode, CommandFlags, Message, ResultCode, VendorId,
};
use bytes::Bytes;

const UNIX: u64 = 1_700_000_000;

fn caps(host: &str, apps: &[ApplicationId]) -> Capabilities {
    Capabilities {
        origin_host: host.into(),
        origin_realm: "example.net".into(),
        host_ip_addresses: vec!["127.0.0.1".parse().unwrap()],
        vendor_id: VendorId(0),
        product_name: "iptv-as-test".into(),
        origin_state_id: Some(1),
        supported_vendor_ids: vec![VendorId::TGPP],
        auth_application_ids: apps.to_vec(),
        ..Capabilities::default()
    }
}

fn pconf(host: &str, remote: &str, connect: bool, apps: &[ApplicationId]) -> PeerConfig {
    let mut c = PeerConfig::new(caps(host, apps));
    c.remote_host = Some(remote.into());
    c.connect = connect;
    c.watchdog.tw_init = Duration::from_secs(6);
    c.request_timeout = Duration::from_secs(60);
    c
}

fn udr() -> Message {
    let mut m = Message::request(CommandCode::USER_DATA, ApplicationId::TGPP_SH, true);
    m.avps
        .push(Avp::utf8(&dict::SESSION_ID, "as.example.net;1;1"));
    m.avps
        .push(Avp::identity(&dict::ORIGIN_HOST, "as.example.net"));
    m.avps
        .push(Avp::identity(&dict::ORIGIN_REALM, "example.net"));
    m.avps
        .push(Avp::identity(&dict::DESTINATION_REALM, "example.net"));
    m
}

// ---------------------------------------------------------------- harness

struct Node {
    router: Router,
    /// (peer of this node) -> node it connects to
    targets: Vec<(PeerId, usize)>,
    listening: bool,
    /// Hold outgoing bytes instead of delivering them.
    mute: bool,
    held: VecDeque<(usize, usize, Bytes)>,
    /// Answer requests automatically (Result-Code 2001, our Origin-Host).
    auto_answer: bool,
    name: String,
    events: Vec<RouterEvent>,
    requests_seen: Vec<Message>,
    connects: Vec<(PeerId, Instant)>,
    sent: usize,
}

struct End {
    node: usize,
    bound: Option<(PeerId, Side)>,
    rx: Vec<u8>,
}

struct Conn {
    ends: [End; 2],
    open: bool,
}

struct Net {
    now: Instant,
    nodes: Vec<Node>,
    conns: Vec<Conn>,
    /// Every message a peer put on the wire, in order (for tshark).
    trace: Vec<Bytes>,
}

impl Net {
    #[expect(clippy::disallowed_methods)]
    fn new() -> Self {
        Net {
            now: Instant::now(),
            nodes: Vec::new(),
            conns: Vec::new(),
            trace: Vec::new(),
        }
    }

    fn add_node(&mut self, name: &str, config: RouterConfig) -> usize {
        let seed = self.nodes.len() as u64 * 7 + 3;
        self.nodes.push(Node {
            router: Router::new(config, seed, UNIX),
            targets: Vec::new(),
            listening: true,
            mute: false,
            held: VecDeque::new(),
            auto_answer: true,
            name: name.into(),
            events: Vec::new(),
            requests_seen: Vec::new(),
            connects: Vec::new(),
            sent: 0,
        });
        self.nodes.len() - 1
    }

    fn add_peer(&mut self, node: usize, cfg: PeerConfig, target: Option<usize>) -> PeerId {
        let id = self.nodes[node].router.add_peer(cfg);
        if let Some(t) = target {
            self.nodes[node].targets.push((id, t));
        }
        id
    }

    fn find_conn(&self, node: usize, peer: PeerId, side: Side) -> Option<(usize, usize)> {
        self.conns.iter().enumerate().find_map(|(ci, c)| {
            if !c.open {
                return None;
            }
            (0..2).find_map(|e| {
                (c.ends[e].node == node && c.ends[e].bound == Some((peer, side))).then_some((ci, e))
            })
        })
    }

    fn deliver(&mut self, ci: usize, to: usize, data: &[u8]) {
        let now = self.now;
        if !self.conns[ci].open {
            return;
        }
        let node = self.conns[ci].ends[to].node;
        match self.conns[ci].ends[to].bound {
            Some((p, side)) => self.nodes[node].router.handle_bytes(now, p, side, data),
            None => {
                let end = &mut self.conns[ci].ends[to];
                end.rx.extend_from_slice(data);
                if let Ok(Some(n)) = as_server::diameter::frame_len(&end.rx, 1 << 20) {
                    let first: Vec<u8> = end.rx.drain(..n).collect();
                    let rest = std::mem::take(&mut end.rx);
                    match self.nodes[node].router.accept(now, &first) {
                        Accept::Peer(p) => {
                            self.conns[ci].ends[to].bound = Some((p, Side::Responder));
                            if !rest.is_empty() {
                                self.nodes[node].router.handle_bytes(
                                    now,
                                    p,
                                    Side::Responder,
                                    &rest,
                                );
                            }
                        }
                        Accept::Reject(b) => {
                            if !b.is_empty() {
                                self.trace.push(b.clone());
                                self.deliver(ci, 1 - to, &b);
                            }
                            self.close(ci, to);
                        }
                    }
                }
            }
        }
    }

    /// End `from` closes connection `ci`: the other end hears of it.
    fn close(&mut self, ci: usize, from: usize) {
        if !self.conns[ci].open {
            return;
        }
        self.conns[ci].open = false;
        let other = &self.conns[ci].ends[1 - from];
        if let Some((p, side)) = other.bound {
            let n = other.node;
            let now = self.now;
            self.nodes[n].router.connection_closed(now, p, side);
        }
    }

    /// Move everything until quiet (bounded).
    fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut busy = false;
            for n in 0..self.nodes.len() {
                while let Some(ev) = self.nodes[n].router.poll_event() {
                    busy = true;
                    if let RouterEvent::Request { peer, request } = &ev {
                        self.nodes[n].requests_seen.push(request.clone());
                        if self.nodes[n].auto_answer {
                            let mut a = Message::answer_to(request);
                            a.avps.push(Avp::u32(&dict::RESULT_CODE, 2001));
                            let host = format!("{}.example.net", self.nodes[n].name);
                            a.avps.push(Avp::identity(&dict::ORIGIN_HOST, host));
                            a.avps
                                .push(Avp::identity(&dict::ORIGIN_REALM, "example.net"));
                            let now = self.now;
                            self.nodes[n].router.answer(now, *peer, &a).unwrap();
                        }
                    }
                    self.nodes[n].events.push(ev);
                }
                while let Some((peer, t)) = self.nodes[n].router.poll_transmit() {
                    busy = true;
                    let now = self.now;
                    match t {
                        Transmit::Connect => {
                            self.nodes[n].connects.push((peer, now));
                            let target = self.nodes[n]
                                .targets
                                .iter()
                                .find(|(p, _)| *p == peer)
                                .map(|x| x.1);
                            match target {
                                Some(t) if self.nodes[t].listening => {
                                    self.conns.push(Conn {
                                        ends: [
                                            End {
                                                node: n,
                                                bound: Some((peer, Side::Initiator)),
                                                rx: Vec::new(),
                                            },
                                            End {
                                                node: t,
                                                bound: None,
                                                rx: Vec::new(),
                                            },
                                        ],
                                        open: true,
                                    });
                                    assert!(self.nodes[n].router.connected(now, peer));
                                }
                                _ => self.nodes[n].router.connection_failed(now, peer),
                            }
                        }
                        Transmit::Send { side, data } => {
                            self.nodes[n].sent += data.len();
                            self.trace.push(data.clone());
                            if let Some((ci, e)) = self.find_conn(n, peer, side) {
                                if self.nodes[n].mute {
                                    self.nodes[n].held.push_back((ci, 1 - e, data));
                                } else {
                                    self.deliver(ci, 1 - e, &data);
                                }
                            }
                        }
                        Transmit::Close { side } => {
                            if let Some((ci, e)) = self.find_conn(n, peer, side) {
                                self.close(ci, e);
                            }
                        }
                    }
                }
            }
            if !busy {
                return;
            }
        }
        panic!("network did not settle");
    }

    fn unmute(&mut self, n: usize) {
        self.nodes[n].mute = false;
        while let Some((ci, to, data)) = self.nodes[n].held.pop_front() {
            self.deliver(ci, to, &data);
        }
        self.pump();
    }

    /// Advance the virtual clock to `until`, firing timers on the way.
    fn run_until(&mut self, until: Instant) {
        self.pump();
        for _ in 0..100_000 {
            let next = self
                .nodes
                .iter()
                .filter_map(|n| n.router.poll_timeout())
                .min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    for n in &mut self.nodes {
                        n.router.handle_timeout(now);
                    }
                    self.pump();
                }
                _ => {
                    self.now = until;
                    return;
                }
            }
        }
        panic!("timers did not settle");
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    fn start(&mut self, n: usize) {
        let now = self.now;
        self.nodes[n].router.start(now);
        self.pump();
    }

    fn request(&mut self, n: usize, m: Message) -> Result<RouteId, RouteError> {
        let now = self.now;
        let r = self.nodes[n].router.request(now, m);
        self.pump();
        r
    }

    fn answers(&self, n: usize, id: RouteId) -> Vec<(PeerId, Message)> {
        self.nodes[n]
            .events
            .iter()
            .filter_map(|e| match e {
                RouterEvent::Answer {
                    id: i,
                    peer,
                    answer,
                } if *i == id => Some((*peer, answer.clone())),
                _ => None,
            })
            .collect()
    }

    fn opened(&self, n: usize, p: PeerId) -> usize {
        self.nodes[n]
            .events
            .iter()
            .filter(|e| matches!(e, RouterEvent::PeerOpen(x) if *x == p))
            .count()
    }

    fn closes(&self, n: usize, p: PeerId) -> Vec<CloseReason> {
        self.nodes[n]
            .events
            .iter()
            .filter_map(|e| match e {
                RouterEvent::PeerClosed { peer, reason } if *peer == p => Some(reason.clone()),
                _ => None,
            })
            .collect()
    }
}

fn server_config(host: &str, apps: &[ApplicationId]) -> RouterConfig {
    let mut t = PeerConfig::new(caps(host, apps));
    t.connect = false;
    t.watchdog.tw_init = Duration::from_secs(6);
    RouterConfig {
        accept_unknown_peers: true,
        unknown_peer: Some(t),
        ..RouterConfig::default()
    }
}

/// AS (client) node with one peer per server node.
fn client_to(net: &mut Net, servers: &[(usize, &str)]) -> (usize, Vec<PeerId>) {
    let c = net.add_node("as", RouterConfig::default());
    let ids = servers
        .iter()
        .map(|(s, host)| {
            net.add_peer(
                c,
                pconf("as.example.net", host, true, &[ApplicationId::TGPP_SH]),
                Some(*s),
            )
        })
        .collect();
    (c, ids)
}

// ---------------------------------------------------------------- tests

#[test]
fn cer_cea_opens_and_a_request_is_answered() {
    let mut net = Net::new();
    let hss = net.add_node(
        "hss",
        server_config("hss.example.net", &[ApplicationId::TGPP_SH]),
    );
    let (asn, peers) = client_to(&mut net, &[(hss, "hss.example.net")]);
    net.start(asn);
    let p = net.nodes[asn].router.peer(peers[0]).unwrap();
    assert_eq!(p.state(), PeerState::IOpen);
    assert_eq!(p.watchdog_state(), WatchdogState::Okay);
    assert_eq!(p.common_applications(), &[ApplicationId::TGPP_SH]);
    assert_eq!(p.remote().unwrap().origin_host, "hss.example.net");
    assert_eq!(net.opened(asn, peers[0]), 1);
    let srv_peer = net.nodes[hss].router.peer(PeerId(0)).unwrap();
    assert_eq!(srv_peer.state(), PeerState::ROpen);

    let id = net.request(asn, udr()).unwrap();
    let answers = net.answers(asn, id);
    assert_eq!(answers.len(), 1);
    let req = net.nodes[hss].requests_seen[0].clone();
    assert!(!req.flags.contains(CommandFlags::RETRANSMIT));
    assert_eq!(answers[0].1.hop_by_hop, req.hop_by_hop);
    assert_eq!(answers[0].1.end_to_end, req.end_to_end);
    // Section 3: the high 12 bits of the End-to-End id are the low 12 bits of the time.
    assert_eq!(req.end_to_end >> 20, (UNIX as u32) & 0xfff);
    assert_eq!(net.nodes[asn].router.pending(), 0);

    // Hop-by-hop ids are unique per connection.
    let id2 = net.request(asn, udr()).unwrap();
    assert_eq!(net.answers(asn, id2).len(), 1);
    let r2 = &net.nodes[hss].requests_seen[1];
    assert_ne!(r2.hop_by_hop, req.hop_by_hop);
    assert_ne!(r2.end_to_end, req.end_to_end);
}

#[test]
fn cer_without_common_application_is_refused_with_5010() {
    let mut net = Net::new();
    let hss = net.add_node(
        "hss",
        server_config("hss.example.net", &[ApplicationId::CREDIT_CONTROL]),
    );
    let (asn, peers) = client_to(&mut net, &[(hss, "hss.example.net")]);
    net.start(asn);
    assert_eq!(
        net.closes(asn, peers[0]),
        vec![CloseReason::CeaRejected(
            ResultCode::DIAMETER_NO_COMMON_APPLICATION
        )]
    );
    assert_eq!(
        net.nodes[asn].router.peer(peers[0]).unwrap().state(),
        PeerState::Closed
    );
    // No open peer: a request fails at once with a typed error.
    assert_eq!(net.request(asn, udr()), Err(RouteError::NoPeer));
}

#[test]
fn successful_cea_without_common_application_closes() {
    // Initiator side check (section 5.3): a CEA with 2001 but no common application.
    let t0 = Net::new().now;
    let mut p = Peer::new(
        pconf("as.example.net", "x", true, &[ApplicationId::TGPP_SH]),
        1,
        UNIX,
    );
    p.start(t0);
    assert_eq!(p.poll_transmit(), Some(Transmit::Connect));
    assert!(p.connected(t0));
    let Some(Transmit::Send { data, .. }) = p.poll_transmit() else {
        panic!("no CER")
    };
    let cer = Message::decode(&data).unwrap();
    assert!(Cer::from_message(&cer).is_ok());
    let cea = Cea {
        result_code: ResultCode::DIAMETER_SUCCESS,
        error_message: None,
        capabilities: caps("x", &[ApplicationId::CREDIT_CONTROL]),
    }
    .answer(&cer);
    p.handle_bytes(t0, Side::Initiator, &cea.to_vec().unwrap());
    assert_eq!(
        p.poll_event(),
        Some(PeerEvent::Closed {
            reason: CloseReason::NoCommonApplication
        })
    );
    assert_eq!(
        p.poll_transmit(),
        Some(Transmit::Close {
            side: Side::Initiator
        })
    );
}

#[test]
fn unknown_peer_gets_3010() {
    let mut net = Net::new();
    let hss = net.add_node("hss", RouterConfig::default());
    // The server knows only "other.example.net".
    net.add_peer(
        hss,
        pconf(
            "hss.example.net",
            "other.example.net",
            false,
            &[ApplicationId::TGPP_SH],
        ),
        None,
    );
    let (asn, peers) = client_to(&mut net, &[(hss, "hss.example.net")]);
    net.start(asn);
    assert_eq!(
        net.closes(asn, peers[0]),
        vec![CloseReason::CeaRejected(ResultCode::DIAMETER_UNKNOWN_PEER)]
    );
}

#[test]
fn watchdog_suspect_fails_over_with_t_flag_and_answers_once() {
    let mut net = Net::new();
    let hss1 = net.add_node(
        "hss1",
        server_config("hss1.example.net", &[ApplicationId::TGPP_SH]),
    );
    let hss2 = net.add_node(
        "hss2",
        server_config("hss2.example.net", &[ApplicationId::TGPP_SH]),
    );
    let (asn, peers) = client_to(
        &mut net,
        &[(hss1, "hss1.example.net"), (hss2, "hss2.example.net")],
    );
    net.start(asn);
    assert_eq!(net.opened(asn, peers[0]), 1);
    assert_eq!(net.opened(asn, peers[1]), 1);

    // The primary stops answering (its bytes are held, not lost).
    net.nodes[hss1].mute = true;
    let id = net.request(asn, udr()).unwrap();
    assert_eq!(
        net.nodes[hss1].requests_seen.len(),
        1,
        "went to the primary"
    );
    assert!(net.answers(asn, id).is_empty());
    let first = net.nodes[hss1].requests_seen[0].clone();

    // Tw (6 s ± 2 s): DWR; another Tw without DWA: SUSPECT and failover.
    for _ in 0..100 {
        net.run_for(Duration::from_millis(250));
        let p0 = net.nodes[asn].router.peer(peers[0]).unwrap();
        if p0.watchdog_state() != WatchdogState::Okay {
            break;
        }
    }
    let p0 = net.nodes[asn].router.peer(peers[0]).unwrap();
    assert_eq!(p0.watchdog_state(), WatchdogState::Suspect);
    assert!(net.nodes[asn]
        .events
        .iter()
        .any(|e| *e == RouterEvent::PeerSuspect(peers[0])));
    let answers = net.answers(asn, id);
    assert_eq!(answers.len(), 1, "answered by the alternate");
    assert_eq!(answers[0].0, peers[1]);
    let again = &net.nodes[hss2].requests_seen[0];
    assert!(again.flags.contains(CommandFlags::RETRANSMIT), "T flag");
    assert_eq!(again.end_to_end, first.end_to_end, "same End-to-End id");

    // The primary's late answer (and DWA) arrive: failback, the late answer is discarded.
    net.unmute(hss1);
    assert_eq!(net.answers(asn, id).len(), 1, "answered once");
    let p0 = net.nodes[asn].router.peer(peers[0]).unwrap();
    assert_eq!(p0.watchdog_state(), WatchdogState::Okay);
    assert_eq!(p0.unmatched_answers(), 1);
    assert_eq!(net.opened(asn, peers[0]), 2, "failback reported");
}

#[test]
fn watchdog_down_closes_then_reopen_needs_three_dwas() {
    let mut net = Net::new();
    let hss1 = net.add_node(
        "hss1",
        server_config("hss1.example.net", &[ApplicationId::TGPP_SH]),
    );
    let hss2 = net.add_node(
        "hss2",
        server_config("hss2.example.net", &[ApplicationId::TGPP_SH]),
    );
    let (asn, peers) = client_to(
        &mut net,
        &[(hss1, "hss1.example.net"), (hss2, "hss2.example.net")],
    );
    net.start(asn);
    net.nodes[hss1].mute = true;
    // Three Tw (max 8 s each) bring the primary DOWN: connection closed.
    net.run_for(Duration::from_secs(25));
    assert!(net
        .closes(asn, peers[0])
        .contains(&CloseReason::WatchdogExpired));
    // Requests now go to the alternate.
    let id = net.request(asn, udr()).unwrap();
    assert_eq!(net.answers(asn, id)[0].0, peers[1]);

    // The primary comes back: reconnect (back-off), CER/CEA, REOPEN until 3 DWAs.
    net.nodes[hss1].mute = false;
    net.nodes[hss1].held.clear();
    let mut saw_reopen = false;
    for _ in 0..200 {
        net.run_for(Duration::from_millis(500));
        let p = net.nodes[asn].router.peer(peers[0]).unwrap();
        if p.watchdog_state() == WatchdogState::Reopen {
            saw_reopen = true;
            assert!(!p.is_available(), "not used while REOPEN");
        }
        if p.is_available() {
            break;
        }
    }
    assert!(saw_reopen);
    let p = net.nodes[asn].router.peer(peers[0]).unwrap();
    assert!(p.is_available());
    assert_eq!(p.watchdog_state(), WatchdogState::Okay);
    let id = net.request(asn, udr()).unwrap();
    assert_eq!(net.answers(asn, id)[0].0, peers[0], "primary used again");
}

#[test]
fn connection_drop_fails_over_pending_requests() {
    let mut net = Net::new();
    let hss1 = net.add_node(
        "hss1",
        server_config("hss1.example.net", &[ApplicationId::TGPP_SH]),
    );
    let hss2 = net.add_node(
        "hss2",
        server_config("hss2.example.net", &[ApplicationId::TGPP_SH]),
    );
    let (asn, peers) = client_to(
        &mut net,
        &[(hss1, "hss1.example.net"), (hss2, "hss2.example.net")],
    );
    net.start(asn);
    net.nodes[hss1].auto_answer = false;
    let ids: Vec<RouteId> = (0..3).map(|_| net.request(asn, udr()).unwrap()).collect();
    assert_eq!(net.nodes[hss1].requests_seen.len(), 3);
    // hss1's connection drops.
    let (ci, e) = net.find_conn(asn, peers[0], Side::Initiator).unwrap();
    net.close(ci, 1 - e);
    net.pump();
    for id in ids {
        let a = net.answers(asn, id);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].0, peers[1]);
    }
    assert_eq!(net.nodes[hss2].requests_seen.len(), 3);
    assert!(net.nodes[hss2]
        .requests_seen
        .iter()
        .all(|m| m.flags.contains(CommandFlags::RETRANSMIT)));
}

#[test]
fn duplicate_requests_are_answered_from_the_cache() {
    let mut net = Net::new();
    let hss = net.add_node(
        "hss",
        server_config("hss.example.net", &[ApplicationId::TGPP_SH]),
    );
    let (asn, peers) = client_to(&mut net, &[(hss, "hss.example.net")]);
    net.start(asn);
    let id = net.request(asn, udr()).unwrap();
    assert_eq!(net.answers(asn, id).len(), 1);
    let e2e = net.nodes[hss].requests_seen[0].end_to_end;
    // The same request again (T flag, same End-to-End id, as after a failover).
    let mut dup = udr();
    dup.end_to_end = e2e;
    dup.flags = dup.flags | CommandFlags::RETRANSMIT;
    let id2 = net.request(asn, dup).unwrap();
    assert_eq!(net.answers(asn, id2).len(), 1, "answered from the cache");
    assert_eq!(net.nodes[hss].requests_seen.len(), 1, "not passed up twice");
    assert_eq!(net.nodes[hss].router.duplicates_seen(), 1);
    let _ = peers;
}

#[test]
fn reconnect_backs_off_exponentially_and_bounded() {
    let mut net = Net::new();
    let hss = net.add_node(
        "hss",
        server_config("hss.example.net", &[ApplicationId::TGPP_SH]),
    );
    net.nodes[hss].listening = false;
    let c = net.add_node("as", RouterConfig::default());
    let mut cfg = pconf(
        "as.example.net",
        "hss.example.net",
        true,
        &[ApplicationId::TGPP_SH],
    );
    cfg.reconnect_min = Duration::from_secs(1);
    cfg.reconnect_max = Duration::from_secs(16);
    let p = net.add_peer(c, cfg, Some(hss));
    net.start(c);
    net.run_for(Duration::from_secs(120));
    let times: Vec<Instant> = net.nodes[c].connects.iter().map(|x| x.1).collect();
    assert!(times.len() >= 6, "{} attempts", times.len());
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // Each gap is back-off + up to 25 % jitter: 1, 2, 4, 8, 16, 16, ...
    for (i, g) in gaps.iter().enumerate() {
        let base = Duration::from_secs(1 << i.min(4));
        assert!(*g >= base && *g <= base + base / 4, "gap {i}: {g:?}");
    }
    // The server comes up: the next attempt opens and the back-off resets.
    net.nodes[hss].listening = true;
    net.run_for(Duration::from_secs(20));
    assert!(net.nodes[c].router.peer(p).unwrap().is_available());
}

#[test]
fn dpr_dpa_do_not_want_to_talk_holds_reconnection() {
    let mut net = Net::new();
    let hss = net.add_node(
        "hss",
        server_config("hss.example.net", &[ApplicationId::TGPP_SH]),
    );
    let (asn, peers) = client_to(&mut net, &[(hss, "hss.example.net")]);
    net.start(asn);
    let attempts = net.nodes[asn].connects.len();
    // The server says goodbye.
    let now = net.now;
    net.nodes[hss]
        .router
        .stop(now, DisconnectCause::DO_NOT_WANT_TO_TALK_TO_YOU);
    net.pump();
    assert_eq!(
        net.closes(asn, peers[0]),
        vec![CloseReason::DisconnectRequested(
            DisconnectCause::DO_NOT_WANT_TO_TALK_TO_YOU
        )]
    );
    assert!(net.closes(hss, PeerId(0)).contains(&CloseReason::Stopped));
    let p = net.nodes[asn].router.peer(peers[0]).unwrap();
    assert_eq!(p.state(), PeerState::Closed);
    assert!(p.reconnect_suppressed());
    net.run_for(Duration::from_secs(600));
    assert_eq!(net.nodes[asn].connects.len(), attempts, "no reconnection");
}

#[test]
fn dpr_rebooting_reconnects() {
    let mut net = Net::new();
    let hss = net.add_node(
        "hss",
        server_config("hss.example.net", &[ApplicationId::TGPP_SH]),
    );
    let (asn, peers) = client_to(&mut net, &[(hss, "hss.example.net")]);
    net.start(asn);
    let now = net.now;
    net.nodes[hss].router.stop(now, DisconnectCause::REBOOTING);
    net.pump();
    assert_eq!(
        net.closes(asn, peers[0]),
        vec![CloseReason::DisconnectRequested(DisconnectCause::REBOOTING)]
    );
    // The client reconnects; the server's peer entry for it was stopped, so restart it
    // (a rebooted server starts fresh).
    let now = net.now;
    net.nodes[hss].router.start_peer(now, PeerId(0));
    net.run_for(Duration::from_secs(5));
    assert!(net.nodes[asn].router.peer(peers[0]).unwrap().is_available());
}

#[test]
fn client_dpr_closes_cleanly() {
    let mut net = Net::new();
    let hss = net.add_node(
        "hss",
        server_config("hss.example.net", &[ApplicationId::TGPP_SH]),
    );
    let (asn, peers) = client_to(&mut net, &[(hss, "hss.example.net")]);
    net.start(asn);
    let now = net.now;
    net.nodes[asn].router.stop(now, DisconnectCause::REBOOTING);
    net.pump();
    assert_eq!(net.closes(asn, peers[0]), vec![CloseReason::Stopped]);
    assert_eq!(
        net.closes(hss, PeerId(0)),
        vec![CloseReason::DisconnectRequested(DisconnectCause::REBOOTING)]
    );
    net.run_for(Duration::from_secs(300));
    assert_eq!(net.nodes[asn].connects.len(), 1, "stopped: no reconnection");
}

#[test]
fn election_keeps_one_connection() {
    let mut net = Net::new();
    let a = net.add_node("a", RouterConfig::default());
    let b = net.add_node("b", RouterConfig::default());
    let pa = net.add_peer(
        a,
        pconf(
            "a.example.net",
            "b.example.net",
            true,
            &[ApplicationId::TGPP_SH],
        ),
        Some(b),
    );
    let pb = net.add_peer(
        b,
        pconf(
            "b.example.net",
            "a.example.net",
            true,
            &[ApplicationId::TGPP_SH],
        ),
        Some(a),
    );
    // Both connect at the same instant: connect requests are issued before any CER moves.
    let now = net.now;
    net.nodes[a].router.start(now);
    net.nodes[b].router.start(now);
    net.pump();
    let sa = net.nodes[a].router.peer(pa).unwrap().state();
    let sb = net.nodes[b].router.peer(pb).unwrap().state();
    // "b" > "a": b won, closed the connection it opened and answered a's CER.
    assert_eq!(sb, PeerState::ROpen);
    assert_eq!(sa, PeerState::IOpen);
    assert_eq!(net.conns.iter().filter(|c| c.open).count(), 1);
    let id = net.request(a, udr()).unwrap();
    assert_eq!(net.answers(a, id).len(), 1);
    let mut r = udr();
    r.avps[1] = Avp::identity(&dict::ORIGIN_HOST, "b.example.net");
    let id = net.request(b, r).unwrap();
    assert_eq!(net.answers(b, id).len(), 1);
}

#[test]
fn hostile_bytes_get_an_error_answer_or_a_close_never_a_panic() {
    let mut net = Net::new();
    let hss = net.add_node(
        "hss",
        server_config("hss.example.net", &[ApplicationId::TGPP_SH]),
    );
    let (asn, peers) = client_to(&mut net, &[(hss, "hss.example.net")]);
    net.start(asn);
    let (ci, e) = net.find_conn(asn, peers[0], Side::Initiator).unwrap();
    let to_hss = 1 - e;

    // A request whose AVP length is below 8: answered 5014, connection stays.
    let mut bad = udr().to_vec().unwrap();
    bad[20 + 5..20 + 8].copy_from_slice(&[0, 0, 4]);
    net.deliver(ci, to_hss, &bad);
    net.pump();
    // The error answer goes back to the AS, which has no such pending request.
    assert_eq!(
        net.nodes[asn]
            .router
            .peer(peers[0])
            .unwrap()
            .unmatched_answers(),
        1
    );
    assert!(net.nodes[hss]
        .router
        .peer(PeerId(0))
        .unwrap()
        .is_available());

    // An AVP longer than the message.
    let mut bad = udr().to_vec().unwrap();
    bad[20 + 5..20 + 8].copy_from_slice(&[0, 0x10, 0]);
    net.deliver(ci, to_hss, &bad);
    net.pump();
    assert_eq!(
        net.nodes[asn]
            .router
            .peer(peers[0])
            .unwrap()
            .unmatched_answers(),
        2
    );

    // Deep grouping.
    let mut inner = Avp::grouped(&dict::PROXY_INFO, vec![]);
    for _ in 0..40 {
        inner = Avp::grouped(&dict::PROXY_INFO, vec![inner]);
    }
    let mut deep = udr();
    deep.avps.push(inner);
    let sent = net.nodes[hss].sent;
    net.deliver(ci, to_hss, &deep.to_vec().unwrap());
    net.pump();
    // Answered (5012); that answer's Failed-AVP is itself too deep for a decoder, so the
    // AS drops it: either way no panic and both ends stay up.
    assert!(net.nodes[hss].sent > sent, "an error answer was sent");
    assert!(net.nodes[asn].router.peer(peers[0]).unwrap().is_available());
    assert!(net.nodes[hss]
        .router
        .peer(PeerId(0))
        .unwrap()
        .is_available());

    // A 16 MB length (over the maximum): the connection is closed, nothing allocated.
    let mut huge = udr().to_vec().unwrap();
    huge[1..4].copy_from_slice(&[0xff, 0xff, 0xfc]);
    net.deliver(ci, to_hss, &huge[..64]);
    net.pump();
    assert!(matches!(
        net.closes(hss, PeerId(0)).as_slice(),
        [CloseReason::Framing(_)]
    ));
    assert!(net
        .closes(asn, peers[0])
        .contains(&CloseReason::PeerDisconnected));

    // Garbage version on a fresh connection from a stranger: rejected, nothing bound.
    let mut r = net.nodes[hss]
        .router
        .accept(net.now, &[2, 0, 0, 20, 0, 0, 0, 0]);
    assert_eq!(r, Accept::Reject(Bytes::new()));
    r = net.nodes[hss].router.accept(net.now, &[]);
    assert_eq!(r, Accept::Reject(Bytes::new()));
}

#[test]
fn request_timeout_is_reported() {
    let mut net = Net::new();
    let hss = net.add_node(
        "hss",
        server_config("hss.example.net", &[ApplicationId::TGPP_SH]),
    );
    let (asn, _) = client_to(&mut net, &[(hss, "hss.example.net")]);
    net.start(asn);
    net.nodes[hss].auto_answer = false;
    let id = net.request(asn, udr()).unwrap();
    net.run_for(Duration::from_secs(61));
    assert!(net.nodes[asn].events.iter().any(|e| *e
        == RouterEvent::Failed {
            id,
            error: RouteError::Timeout
        }));
}

// ---------------------------------------------------------------- driver over TCP / TLS

mod tcp {
    use super::*;
    use as_server::diameter::driver::{self, ClientTls, ListenSpec, NodeConfig, PeerSpec};
    use as_server::diameter::AvpList;

    async fn pair(tls: bool) {
        let server_tls = if tls {
            Some(as_server::driver::tls::server_config(None, None).unwrap())
        } else {
            None
        };
        let (server, mut incoming) = driver::spawn(NodeConfig {
            router: server_config("hss.example.net", &[ApplicationId::TGPP_SH]),
            listen: Some(ListenSpec {
                addr: "127.0.0.1:0".parse().unwrap(),
                tls: server_tls.as_ref().map(|s| s.0.clone()),
            }),
            seed: Some(1),
            ..NodeConfig::default()
        })
        .await
        .unwrap();
        let addr = server.local_addr().unwrap();
        let answered = tokio::spawn(async move {
            let mut n = 0;
            while let Some(req) = incoming.recv().await {
                let mut a = Message::answer_to(&req.request);
                a.avps.push(Avp::u32(&dict::RESULT_CODE, 2001));
                a.avps
                    .push(Avp::identity(&dict::ORIGIN_HOST, "hss.example.net"));
                a.avps
                    .push(Avp::identity(&dict::ORIGIN_REALM, "example.net"));
                req.answer(a);
                n += 1;
            }
            n
        });
        let client_tls = server_tls.map(|(_, leaf)| ClientTls {
            config: as_server::driver::tls::client_config([leaf]).unwrap(),
            server_name: "localhost".try_into().unwrap(),
        });
        let (client, _client_in) = driver::spawn(NodeConfig {
            peers: vec![PeerSpec {
                config: pconf(
                    "as.example.net",
                    "hss.example.net",
                    true,
                    &[ApplicationId::TGPP_SH],
                ),
                addr: Some(addr),
                tls: client_tls,
            }],
            seed: Some(2),
            ..NodeConfig::default()
        })
        .await
        .unwrap();
        tokio::time::timeout(Duration::from_secs(10), client.wait_open(1))
            .await
            .expect("CER/CEA within 10 s")
            .unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(10), client.request(udr()))
            .await
            .expect("answer within 10 s")
            .unwrap();
        assert_eq!(answer.result_code(), Some(ResultCode::DIAMETER_SUCCESS));
        assert!(!answer.is_request());
        assert_eq!(answer.code, CommandCode::USER_DATA);
        // DPR/DPA: the client leaves; the server's peer entry closes.
        tokio::time::timeout(
            Duration::from_secs(10),
            client.stop(DisconnectCause::REBOOTING),
        )
        .await
        .expect("DPA within 10 s");
        tokio::time::timeout(Duration::from_secs(10), async {
            while server.open_peers() != 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("server saw the disconnection");
        // After the stop the client fails at once.
        assert!(client.request(udr()).await.is_err());
        server.stop(DisconnectCause::REBOOTING).await;
        let n = tokio::time::timeout(Duration::from_secs(10), answered)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 1);
    }

    async fn server(
        host: &str,
    ) -> (
        driver::DiameterClient,
        tokio::sync::mpsc::UnboundedReceiver<driver::IncomingRequest>,
    ) {
        let (s, mut incoming) = driver::spawn(NodeConfig {
            router: server_config(host, &[ApplicationId::TGPP_SH]),
            listen: Some(ListenSpec {
                addr: "127.0.0.1:0".parse().unwrap(),
                tls: None,
            }),
            ..NodeConfig::default()
        })
        .await
        .unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(r) = incoming.recv().await {
                let _ = tx.send(r);
            }
        });
        (s, rx)
    }

    /// The primary leaves (DPR) with a request outstanding: it is re-sent to the alternate
    /// with the T flag and answered there.
    #[tokio::test]
    async fn tcp_failover_to_the_alternate_on_dpr() {
        let t = Duration::from_secs(10);
        let (primary, mut p_in) = server("hss1.example.net").await;
        let (alt, mut a_in) = server("hss2.example.net").await;
        let spec = |remote: &str, addr| PeerSpec {
            config: pconf("as.example.net", remote, true, &[ApplicationId::TGPP_SH]),
            addr: Some(addr),
            tls: None,
        };
        let (client, _in) = driver::spawn(NodeConfig {
            peers: vec![
                spec("hss1.example.net", primary.local_addr().unwrap()),
                spec("hss2.example.net", alt.local_addr().unwrap()),
            ],
            ..NodeConfig::default()
        })
        .await
        .unwrap();
        tokio::time::timeout(t, client.wait_open(2))
            .await
            .unwrap()
            .unwrap();
        let c2 = client.clone();
        let pending = tokio::spawn(async move { c2.request(udr()).await });
        // The primary holds the request without answering, then leaves.
        let held = tokio::time::timeout(t, p_in.recv()).await.unwrap().unwrap();
        assert!(!held.request.flags.contains(CommandFlags::RETRANSMIT));
        tokio::time::timeout(t, primary.stop(DisconnectCause::REBOOTING))
            .await
            .unwrap();
        let again = tokio::time::timeout(t, a_in.recv()).await.unwrap().unwrap();
        assert!(again.request.flags.contains(CommandFlags::RETRANSMIT));
        assert_eq!(again.request.end_to_end, held.request.end_to_end);
        let mut a = Message::answer_to(&again.request);
        a.avps.push(Avp::u32(&dict::RESULT_CODE, 2001));
        a.avps
            .push(Avp::identity(&dict::ORIGIN_HOST, "hss2.example.net"));
        a.avps
            .push(Avp::identity(&dict::ORIGIN_REALM, "example.net"));
        again.answer(a);
        let ans = tokio::time::timeout(t, pending)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(ans.result_code(), Some(ResultCode::DIAMETER_SUCCESS));
        assert_eq!(
            ans.find(&dict::ORIGIN_HOST).and_then(|a| a.as_str().ok()),
            Some("hss2.example.net")
        );
        drop(held);
        client.stop(DisconnectCause::REBOOTING).await;
        alt.stop(DisconnectCause::REBOOTING).await;
    }

    #[tokio::test]
    async fn tcp_loopback_cer_request_dpr() {
        pair(false).await;
    }

    #[tokio::test]
    async fn tls_loopback_cer_request_dpr() {
        pair(true).await;
    }
}

// ---------------------------------------------------------------- single-peer transitions

fn cer_from(host: &str) -> Message {
    let mut m = Cer {
        capabilities: caps(host, &[ApplicationId::TGPP_SH]),
    }
    .to_message();
    m.hop_by_hop = 77;
    m.end_to_end = 78;
    m
}

fn sends(p: &mut Peer) -> Vec<Transmit> {
    std::iter::from_fn(|| p.poll_transmit()).collect()
}

fn decoded(t: &Transmit) -> Option<(Side, Message)> {
    match t {
        Transmit::Send { side, data } => Some((*side, Message::decode(data).unwrap())),
        _ => None,
    }
}

#[test]
fn wait_conn_ack_elect_then_win() {
    // "z" > "m": we win, keep the peer's connection (R-Open).
    let t0 = Net::new().now;
    let mut p = Peer::new(
        pconf(
            "z.example.net",
            "m.example.net",
            true,
            &[ApplicationId::TGPP_SH],
        ),
        5,
        UNIX,
    );
    p.start(t0);
    assert_eq!(sends(&mut p), vec![Transmit::Connect]);
    // The peer's CER arrives before our connection is up.
    p.accept(t0, &cer_from("m.example.net")).unwrap();
    assert_eq!(p.state(), PeerState::WaitConnAckElect);
    assert!(p.connected(t0));
    let out = sends(&mut p);
    // I-Snd-CER, then Win-Election: I-Disc, R-Snd-CEA.
    let (s0, cer) = decoded(&out[0]).unwrap();
    assert_eq!(
        (s0, cer.code, cer.is_request()),
        (Side::Initiator, CommandCode::CAPABILITIES_EXCHANGE, true)
    );
    assert_eq!(
        out[1],
        Transmit::Close {
            side: Side::Initiator
        }
    );
    let (s2, cea) = decoded(&out[2]).unwrap();
    assert_eq!(s2, Side::Responder);
    assert_eq!(cea.result_code(), Some(ResultCode::DIAMETER_SUCCESS));
    assert_eq!((cea.hop_by_hop, cea.end_to_end), (77, 78));
    assert_eq!(p.state(), PeerState::ROpen);
    assert!(matches!(p.poll_event(), Some(PeerEvent::Open { .. })));
}

#[test]
fn wait_i_cea_elect_lost_then_cea_opens_on_our_connection() {
    // "a" < "m": we lose, wait for our CEA, then drop the peer's connection (R-Disc).
    let t0 = Net::new().now;
    let mut p = Peer::new(
        pconf(
            "a.example.net",
            "m.example.net",
            true,
            &[ApplicationId::TGPP_SH],
        ),
        5,
        UNIX,
    );
    p.start(t0);
    assert!(p.connected(t0));
    let out = sends(&mut p);
    let (_, our_cer) = decoded(&out[1]).unwrap();
    assert_eq!(p.state(), PeerState::WaitICea);
    p.accept(t0, &cer_from("m.example.net")).unwrap();
    assert_eq!(p.state(), PeerState::WaitReturns);
    assert!(sends(&mut p).is_empty(), "loser waits");
    let cea = Cea {
        result_code: ResultCode::DIAMETER_SUCCESS,
        error_message: None,
        capabilities: caps("m.example.net", &[ApplicationId::TGPP_SH]),
    }
    .answer(&our_cer);
    p.handle_bytes(t0, Side::Initiator, &cea.to_vec().unwrap());
    assert_eq!(
        sends(&mut p),
        vec![Transmit::Close {
            side: Side::Responder
        }]
    );
    assert_eq!(p.state(), PeerState::IOpen);
    assert!(p.is_available());
}

#[test]
fn cer_on_an_open_peer_is_rejected() {
    let t0 = Net::new().now;
    let mut p = Peer::new(
        pconf(
            "z.example.net",
            "m.example.net",
            false,
            &[ApplicationId::TGPP_SH],
        ),
        5,
        UNIX,
    );
    p.accept(t0, &cer_from("m.example.net")).unwrap();
    assert_eq!(p.state(), PeerState::ROpen);
    let _ = sends(&mut p);
    let refused = p.accept(t0, &cer_from("m.example.net")).unwrap_err();
    let cea = Message::decode(&refused).unwrap();
    assert_eq!(cea.result_code(), Some(ResultCode::ELECTION_LOST));
    assert_eq!(p.state(), PeerState::ROpen, "the open connection stays");
    // An unparseable CER (no Origin-Realm) is refused with 5005.
    let mut bad = cer_from("m.example.net");
    bad.avps.retain(|a| !a.is(&dict::ORIGIN_REALM));
    let refused = p.accept(t0, &bad).unwrap_err();
    let cea = Message::decode(&refused).unwrap();
    assert_eq!(cea.result_code(), Some(ResultCode::DIAMETER_MISSING_AVP));
}

#[test]
fn cea_timeout_closes_and_schedules_a_reconnect() {
    let t0 = Net::new().now;
    let mut p = Peer::new(
        pconf(
            "a.example.net",
            "m.example.net",
            true,
            &[ApplicationId::TGPP_SH],
        ),
        5,
        UNIX,
    );
    p.start(t0);
    assert!(p.connected(t0));
    let _ = sends(&mut p);
    let t1 = p.poll_timeout().unwrap();
    assert_eq!(t1, t0 + Duration::from_secs(10), "Tc guard");
    p.handle_timeout(t1);
    assert_eq!(
        p.poll_event(),
        Some(PeerEvent::Closed {
            reason: CloseReason::Timeout(PeerState::WaitICea)
        })
    );
    assert_eq!(
        sends(&mut p),
        vec![Transmit::Close {
            side: Side::Initiator
        }]
    );
    let t2 = p.poll_timeout().unwrap();
    assert!(
        t2 > t1 && t2 <= t1 + Duration::from_millis(1250),
        "back-off 1 s + jitter"
    );
    p.handle_timeout(t2);
    assert_eq!(sends(&mut p), vec![Transmit::Connect]);
}

#[test]
fn requests_before_open_fail_at_once() {
    let t0 = Net::new().now;
    let mut p = Peer::new(
        pconf(
            "a.example.net",
            "m.example.net",
            true,
            &[ApplicationId::TGPP_SH],
        ),
        5,
        UNIX,
    );
    let id = p.send_request(t0, udr());
    match p.poll_event() {
        Some(PeerEvent::RequestFailed {
            request_id, reason, ..
        }) => {
            assert_eq!(request_id, id);
            assert_eq!(reason, as_server::diameter::peer::FailReason::NotOpen);
        }
        e => panic!("{e:?}"),
    }
    assert!(p.poll_transmit().is_none());
}

// ---------------------------------------------------------------- tshark

/// A pcap of exported PDUs (link type 252) handed to Wireshark's "diameter" dissector.
fn write_pcap(path: &std::path::Path, msgs: &[Bytes]) {
    let mut f = Vec::new();
    f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    for v in [0u32, 0, 262_144, 252] {
        f.extend_from_slice(&v.to_le_bytes());
    }
    for (i, m) in msgs.iter().enumerate() {
        let mut pdu = Vec::new();
        let mut name = b"diameter".to_vec();
        name.resize((name.len() + 4) & !3, 0);
        pdu.extend_from_slice(&12u16.to_be_bytes());
        pdu.extend_from_slice(&(name.len() as u16).to_be_bytes());
        pdu.extend_from_slice(&name);
        pdu.extend_from_slice(&[0, 0, 0, 0]);
        pdu.extend_from_slice(m);
        for v in [
            1_790_000_000u32 + i as u32,
            0,
            pdu.len() as u32,
            pdu.len() as u32,
        ] {
            f.extend_from_slice(&v.to_le_bytes());
        }
        f.extend_from_slice(&pdu);
    }
    std::fs::write(path, f).unwrap();
}

#[test]
fn tshark_decodes_what_the_peers_emit() {
    let present = std::process::Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        assert!(std::env::var_os("CI").is_none(), "tshark is required in CI");
        eprintln!("SKIP: tshark not installed");
        return;
    }
    // CER/CEA, UDR/UDA, DWR/DWA, DPR/DPA, a 5010 refusal, a 3010 refusal.
    let mut net = Net::new();
    let hss = net.add_node(
        "hss",
        server_config("hss.example.net", &[ApplicationId::TGPP_SH]),
    );
    let (asn, peers) = client_to(&mut net, &[(hss, "hss.example.net")]);
    net.start(asn);
    let _ = net.request(asn, udr()).unwrap();
    net.run_for(Duration::from_secs(20));
    // (Error answers built by the codec are checked by tests/diameter_tshark.rs.)
    let _ = peers;
    let now = net.now;
    net.nodes[asn].router.stop(now, DisconnectCause::REBOOTING);
    net.pump();
    let cc = net.add_node(
        "cc",
        server_config("cc.example.net", &[ApplicationId::CREDIT_CONTROL]),
    );
    let (a2, _) = client_to(&mut net, &[(cc, "cc.example.net")]);
    net.start(a2);
    let strict = net.add_node("strict", RouterConfig::default());
    net.add_peer(
        strict,
        pconf(
            "strict.example.net",
            "other.example.net",
            false,
            &[ApplicationId::TGPP_SH],
        ),
        None,
    );
    let (a3, _) = client_to(&mut net, &[(strict, "strict.example.net")]);
    net.start(a3);

    let names: Vec<String> = net
        .trace
        .iter()
        .map(|b| {
            let m = Message::decode(b).unwrap();
            format!("{}{}", m.code, if m.is_request() { "R" } else { "A" })
        })
        .collect();
    for want in ["257", "280", "282", "306"] {
        assert!(
            names.iter().any(|n| n.starts_with(want)),
            "{want} in {names:?}"
        );
    }
    let path = std::env::temp_dir().join(format!("diameter-peer-{}.pcap", std::process::id()));
    write_pcap(&path, &net.trace);
    if let Some(keep) = std::env::var_os("DIAMETER_PCAP") {
        write_pcap(std::path::Path::new(&keep), &net.trace);
    }
    let out = std::process::Command::new("tshark")
        .arg("-r")
        .arg(&path)
        .arg("-V")
        .output()
        .unwrap();
    let expert = std::process::Command::new("tshark")
        .arg("-r")
        .arg(&path)
        .args(["-q", "-z", "expert"])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    let v = String::from_utf8_lossy(&out.stdout).into_owned();
    let x = String::from_utf8_lossy(&expert.stdout).into_owned();
    assert_eq!(
        v.matches("\nDiameter Protocol\n").count(),
        net.trace.len(),
        "every frame decoded as Diameter"
    );
    for bad in ["Errors (", "Warns (", "Malformed"] {
        assert!(
            !x.contains(bad) && !v.contains(bad),
            "tshark reports {bad}:\n{x}"
        );
    }
    for shown in [
        "DIAMETER_NO_COMMON_APPLICATION",
        "DIAMETER_UNKNOWN_PEER",
        "Disconnect-Cause: REBOOTING",
    ] {
        assert!(v.contains(shown), "tshark shows {shown}");
    }
}

#[test]
fn a_connection_completing_after_stop_is_not_taken() {
    let t0 = Net::new().now;
    let mut p = Peer::new(
        pconf(
            "a.example.net",
            "m.example.net",
            true,
            &[ApplicationId::TGPP_SH],
        ),
        5,
        UNIX,
    );
    p.start(t0);
    assert_eq!(sends(&mut p), vec![Transmit::Connect]);
    p.stop(t0, DisconnectCause::REBOOTING);
    assert!(!p.connected(t0), "the caller closes it");
    assert!(
        sends(&mut p).is_empty(),
        "nothing sent, no Close for another connection"
    );
    assert_eq!(p.state(), PeerState::Closed);
    assert!(p.poll_timeout().is_none(), "stopped: no reconnection timer");
}
