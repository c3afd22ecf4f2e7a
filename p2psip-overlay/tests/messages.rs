//! The RELOAD requests beyond Store and Fetch, end to end over real PDUs (issue 4):
//! type-agnostic forwarding (RFC 6940 section 6.1: any message code, unknown ones
//! included, is forwarded by its destination list; only the destination interprets it and
//! answers a type it does not implement with Error_Invalid_Message), Stat (section 7.4.3)
//! and Find (section 7.4.4).
//!
//! A small ring of sans-IO peers ([`Peer`]: the security layer in front of the node core,
//! the signing encoder behind it) on a virtual clock; every message travels as signed
//! bytes from one peer's encoder to the next peer's decoder, as over a link. Every PDU
//! goes to a pcap checked by tshark's RELOAD dissector; a missing tshark fails when `CI`
//! is set.

use std::time::{Duration, Instant};

use p2psip_overlay::cert::DevCa;
use p2psip_overlay::config::OverlayConfig;
use p2psip_overlay::driver::peer::{Inbound, Peer};
use p2psip_overlay::link::LinkConfig;
use p2psip_overlay::node::msg::{error_code, Dest, Frame};
use p2psip_overlay::node::{Event, NodeConfig, Outcome, RequestError};
use p2psip_overlay::sim::base_instant;
use p2psip_overlay::storage::{
    FetchSpec, KindData, KindId, Select, Signer, StatKind, StoredValue, ValueKey,
};
use p2psip_overlay::topology::Id;
use p2psip_overlay::wire::pcap::{tshark_check, TsharkOutcome};
use p2psip_overlay::wire::{self, ConfigUpdateReq, NodeId, ProbeInformationType, RouteQueryReq};

const OVERLAY: &str = "messages.test";
/// Wall clock for certificate validity (the dev CA's certificates are valid far beyond).
const UNIX: u64 = 1_800_000_000;

/// Peers on a virtual clock, wired to each other through their encoders and decoders.
struct Net {
    peers: Vec<Peer>,
    ids: Vec<Id>,
    now: Instant,
    /// Every PDU sent, for tshark.
    pdus: Vec<Vec<u8>>,
    /// (receiving peer index, sender, message code, verdict) of every PDU.
    log: Vec<(usize, Id, u16, Inbound)>,
    events: Vec<(usize, Event)>,
}

impl Net {
    /// A ring of peers with these Node-IDs; the first starts the overlay, the others
    /// join through it.
    fn ring(ids: &[u128]) -> Net {
        let ca = DevCa::new(OVERLAY).unwrap();
        let peers = ids
            .iter()
            .map(|&n| {
                let identity = ca.issue(NodeId::from_u128(n), None).unwrap();
                let cfg = LinkConfig::new(OVERLAY, identity, vec![ca.root_der()]);
                Peer::new(&cfg, "127.0.0.1:9".parse().unwrap(), NodeConfig::default()).unwrap()
            })
            .collect();
        let mut net = Net {
            peers,
            ids: ids.iter().map(|&n| Id(n)).collect(),
            now: base_instant(),
            pdus: Vec::new(),
            log: Vec::new(),
            events: Vec::new(),
        };
        let now = net.now;
        net.peers[0].node_mut().start_alone(now);
        for i in 1..ids.len() {
            let now = net.now;
            let boot = net.ids[0];
            net.peers[i].node_mut().join(now, boot);
            net.run_for(Duration::from_secs(5));
        }
        net.run_for(Duration::from_secs(60));
        for (i, p) in net.peers.iter().enumerate() {
            assert!(p.node().is_joined(), "peer {i} joined");
        }
        net.events.clear();
        net.log.clear();
        net
    }

    fn index(&self, id: Id) -> Option<usize> {
        self.ids.iter().position(|&x| x == id)
    }

    /// Moves every frame until nothing is left to send (bounded).
    fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            for i in 0..self.peers.len() {
                while let Some(t) = self.peers[i].node_mut().poll_transmit() {
                    let Frame::Data { seq, msg } = t.frame else {
                        continue; // the link acknowledges, not the core
                    };
                    moved = true;
                    let now = self.now;
                    self.peers[i]
                        .node_mut()
                        .handle(now, t.to, Frame::Ack { seq });
                    let Some(j) = self.index(t.to) else {
                        continue;
                    };
                    let bytes = self.peers[i].encode(&msg).unwrap();
                    let code = wire::Message::decode(&bytes).unwrap().contents.code.0;
                    let from = self.ids[i];
                    let v = self.peers[j].receive_bytes(now, UNIX, from, &bytes);
                    self.log.push((j, from, code, v));
                    self.pdus.push(bytes);
                }
                while let Some(e) = self.peers[i].node_mut().poll_event() {
                    self.events.push((i, e));
                }
            }
            if !moved {
                return;
            }
        }
        panic!("frames still moving after 10,000 rounds");
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..100_000 {
            self.pump();
            let next = self
                .peers
                .iter()
                .filter_map(|p| p.node().poll_timeout())
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    for p in &mut self.peers {
                        if p.node().poll_timeout().is_some_and(|t| t <= now) {
                            p.node_mut().handle_timeout(now);
                        }
                    }
                }
                _ => break,
            }
        }
        self.now = end;
        self.pump();
    }

    /// The outcome of request `handle` at peer `at`.
    fn done(&mut self, at: usize, handle: u64) -> Result<Outcome, RequestError> {
        self.run_for(Duration::from_secs(5));
        let pos = self
            .events
            .iter()
            .position(|(i, e)| {
                *i == at && matches!(e, Event::Done { handle: h, .. } if *h == handle)
            })
            .expect("request answered");
        match self.events.remove(pos).1 {
            Event::Done { result, .. } => result,
            _ => unreachable!(),
        }
    }

    /// The peer responsible for `r` (its successor on the ring).
    fn responsible(&self, r: Id) -> usize {
        let mut ids: Vec<(Id, usize)> = self.ids.iter().copied().zip(0..).collect();
        ids.sort();
        ids.iter().find(|x| x.0 >= r).unwrap_or(&ids[0]).1
    }

    fn tshark_clean(&self, name: &str) {
        let dir = std::env::temp_dir().join(format!("messages-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = tshark_check(&self.pdus, &dir).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        match out {
            TsharkOutcome::Clean(codes) => assert_eq!(codes.len(), self.pdus.len()),
            TsharkOutcome::Missing => {
                assert!(std::env::var_os("CI").is_none(), "tshark missing under CI");
                eprintln!("tshark not installed: dissector check skipped");
            }
            TsharkOutcome::Problems(p) => panic!("tshark: {p}"),
        }
    }
}

const A: u128 = 0x10 << 120;
const B: u128 = 0x50 << 120;
const C: u128 = 0x90 << 120;
const D: u128 = 0xd0 << 120;

fn relay_value(node: Id, data: &[u8], lifetime: u32) -> KindData {
    KindData {
        kind: KindId::CHANNEL_RELAYS,
        generation: 0,
        values: vec![StoredValue {
            key: ValueKey::Key(node.to_be_bytes().to_vec()),
            storage_time: 1_700_000_000_000,
            lifetime,
            exists: true,
            data: data.to_vec(),
            signer: Signer {
                node_id: node,
                user_name: String::new(),
            },
        }],
    }
}

fn store(net: &mut Net, at: usize, resource: Id, data: &[u8]) {
    let now = net.now;
    let me = net.ids[at];
    let h = net.peers[at].node_mut().store(
        now,
        resource,
        vec![relay_value(me, data, 3600)],
        Signer {
            node_id: me,
            user_name: String::new(),
        },
    );
    assert!(
        matches!(net.done(at, h), Ok(Outcome::Stored(_))),
        "store answered"
    );
}

/// Any request code, unknown ones included, is forwarded along its destination list by
/// a peer it is not addressed to; the destination answers Probe and RouteQuery, and the types it does
/// not implement with Error_Invalid_Message; the answer comes back the same way.
#[test]
fn forwarding_is_type_agnostic() {
    let mut net = Net::ring(&[A, B, C, D]);
    let (a, b, c) = (0, 1, 2);
    // probe_req(1) asking for num_resources, route_query_req(27) and config_update_req(29)
    // with well-formed bodies, and unknown codes with arbitrary bytes
    let typed = |b: wire::Body| (b.code().0, b.to_bytes().unwrap());
    let cases: Vec<(u16, Vec<u8>)> = vec![
        typed(wire::Body::ProbeReq(vec![
            ProbeInformationType::NUM_RESOURCES,
        ])),
        typed(wire::Body::RouteQueryReq(RouteQueryReq {
            send_update: false,
            destination: wire::Destination::Node(NodeId::from_u128(D)),
            overlay_specific_data: Vec::new(),
        })),
        typed(wire::Body::ConfigUpdateReq(ConfigUpdateReq::Kinds(
            Vec::new(),
        ))),
        (0x0f01, b"future message".to_vec()),
        (0x7ff1, Vec::new()),
    ];
    for (code, body) in cases {
        net.log.clear();
        let now = net.now;
        let h = net.peers[a].node_mut().send_opaque(
            now,
            vec![Dest::Node(Id(B)), Dest::Node(Id(C))],
            code,
            body.clone(),
        );
        // C answers the Probe (number of Resource-IDs it stores, none yet) and the
        // RouteQuery, and nothing else it does not implement
        let answer = match code {
            1 | 21 => code + 1,
            _ => 0xffff,
        };
        match net.done(a, h) {
            Ok(Outcome::Other(2, b)) if code == 1 => {
                let info = match wire::Body::decode(wire::MessageCode::PROBE_ANS, &b).unwrap() {
                    wire::Body::ProbeAns(info) => info,
                    other => panic!("{other:?}"),
                };
                assert_eq!(info.len(), 1);
                assert_eq!(info[0].info_type, ProbeInformationType::NUM_RESOURCES);
                assert_eq!(info[0].value, 0);
            }
            // RouteQuery for D: C is not responsible, its next hop toward D is D
            Ok(Outcome::Other(22, b)) if code == 21 => {
                match wire::Body::decode(wire::MessageCode::ROUTE_QUERY_ANS, &b).unwrap() {
                    wire::Body::RouteQueryAns(next) => assert_eq!(next, NodeId::from_u128(D)),
                    other => panic!("{other:?}"),
                }
            }
            Err(RequestError::Error(e, reason)) if answer == 0xffff => {
                assert_eq!(e, error_code::INVALID_MESSAGE, "code {code}: {reason}");
                assert!(code == 33 || reason.contains(&code.to_string()), "{reason}");
            }
            other => panic!("code {code}: {other:?}"),
        }
        // B forwarded the request it does not interpret; C answered; B forwarded the error
        let path: Vec<(usize, Id, u16)> = net
            .log
            .iter()
            .filter(|(_, _, k, _)| *k == code || *k == answer)
            .map(|&(j, from, k, ref v)| {
                assert_eq!(*v, Inbound::Accepted, "code {code} at {j}");
                (j, from, k)
            })
            .collect();
        assert_eq!(
            path,
            vec![
                (b, Id(A), code),
                (c, Id(B), code),
                (b, Id(C), answer),
                (a, Id(B), answer),
            ],
            "code {code}"
        );
    }
    net.tshark_clean("forwarding");
}

/// A request routed to a Resource-ID passes through peers that do not interpret it and
/// is answered by the responsible peer only.
#[test]
fn unknown_request_to_a_resource_is_answered_by_the_responsible_peer() {
    let mut net = Net::ring(&[A, B, C, D]);
    let r = Id((0x70 << 120) | 5); // C's
    assert_eq!(net.responsible(r), 2);
    let now = net.now;
    let h = net.peers[0]
        .node_mut()
        .send_opaque(now, vec![Dest::Resource(r)], 0x0f01, vec![7; 10]);
    match net.done(0, h) {
        Err(RequestError::Error(e, _)) => assert_eq!(e, error_code::INVALID_MESSAGE),
        other => panic!("{other:?}"),
    }
    // the request reached C (directly or over the ring), and exactly one answer came back
    assert!(net
        .log
        .iter()
        .any(|x| x.0 == 2 && x.2 == 0x0f01 && x.3 == Inbound::Accepted));
    assert_eq!(
        net.log.iter().filter(|x| x.0 == 0 && x.2 == 0xffff).count(),
        1
    );
    // C's Error travels back over the request's via list: every error hop leads from C
    let errors: Vec<(usize, Id)> = net
        .log
        .iter()
        .filter(|x| x.2 == 0xffff)
        .map(|x| (x.0, x.1))
        .collect();
    assert_eq!(errors.first().map(|e| e.1), Some(Id(C)), "{errors:?}");
    net.tshark_clean("resource");
}

/// Stat (RFC 6940 section 7.4.3): generation and, per value, storage time, lifetime,
/// exists, length and SHA-256 hash of what Fetch would return; nothing for an empty
/// resource; Error_Unknown_Kind for an unknown kind.
#[test]
fn stat_returns_metadata_of_stored_values() {
    let mut net = Net::ring(&[A, B, C, D]);
    let r = Id((0x70 << 120) | 9);
    let data = b"192.0.2.7:5004";
    store(&mut net, 0, r, data);
    store(&mut net, 3, r, b"192.0.2.8:5004, longer");
    let spec = vec![FetchSpec {
        kind: KindId::CHANNEL_RELAYS,
        generation: 0,
        select: Select::Keys(vec![]),
    }];
    let now = net.now;
    let h = net.peers[1].node_mut().stat(now, r, spec.clone());
    let kinds: Vec<StatKind> = match net.done(1, h) {
        Ok(Outcome::Stat(k)) => k,
        other => panic!("{other:?}"),
    };
    assert_eq!(kinds.len(), 1);
    assert_eq!(kinds[0].kind, KindId::CHANNEL_RELAYS);
    assert_eq!(kinds[0].generation, 2, "two stores");
    assert_eq!(kinds[0].values.len(), 2);
    let mine = kinds[0]
        .values
        .iter()
        .find(|v| v.key == ValueKey::Key(Id(A).to_be_bytes().to_vec()))
        .expect("A's value");
    assert!(mine.exists);
    assert_eq!(mine.value_length, data.len() as u32);
    assert_eq!(mine.lifetime, 3600);
    assert_eq!(mine.storage_time, 1_700_000_000_000);
    assert_eq!(
        mine.hash,
        ring::digest::digest(&ring::digest::SHA256, data)
            .as_ref()
            .to_vec()
    );
    let other = kinds[0]
        .values
        .iter()
        .find(|v| v.key == ValueKey::Key(Id(D).to_be_bytes().to_vec()))
        .expect("D's value");
    assert_eq!(other.value_length, 22);
    assert_ne!(other.hash, mine.hash);
    // an empty resource: generation 0, no values
    let now = net.now;
    let h = net.peers[1].node_mut().stat(now, Id(r.0 + 1), spec);
    match net.done(1, h) {
        Ok(Outcome::Stat(k)) => {
            assert_eq!(k.len(), 1);
            assert_eq!((k[0].generation, k[0].values.len()), (0, 0));
        }
        other => panic!("{other:?}"),
    }
    // an unknown kind
    let now = net.now;
    let bad = vec![FetchSpec {
        kind: KindId(0xdead),
        generation: 0,
        select: Select::Keys(vec![]),
    }];
    let h = net.peers[1].node_mut().stat(now, r, bad);
    match net.done(1, h) {
        // RFC 6940 section 7.4.1.2: Error_Unknown_Kind (the kind is found before the
        // codec needs its data model to decode the StoredDataSpecifier)
        Err(RequestError::Error(code, _)) => {
            assert_eq!(code, error_code::UNKNOWN_KIND)
        }
        other => panic!("{other:?}"),
    }
    // the stored values are untouched by Stat
    let fetched = net.peers[2]
        .node()
        .storage()
        .fetch(
            net.now,
            r,
            &[FetchSpec {
                kind: KindId::CHANNEL_RELAYS,
                generation: 0,
                select: Select::Keys(vec![]),
            }],
        )
        .unwrap();
    assert_eq!(fetched[0].values.len(), 2);
    net.tshark_clean("stat");
}

/// Find (RFC 6940 section 7.4.4): per kind, the closest Resource-ID at or after the
/// requested one that the responsible peer stores, or none.
#[test]
fn find_returns_the_closest_stored_resource_at_or_after() {
    let mut net = Net::ring(&[A, B, C, D]);
    // C is responsible for (B, C]
    let r1 = Id((0x60 << 120) | 1);
    let r2 = Id((0x80 << 120) | 1);
    store(&mut net, 0, r1, b"one");
    store(&mut net, 0, r2, b"two");
    let find = |net: &mut Net, at: usize, from: Id, kinds: Vec<KindId>| {
        let now = net.now;
        let h = net.peers[at].node_mut().find(now, from, kinds);
        match net.done(at, h) {
            Ok(Outcome::Found(f)) => f,
            other => panic!("{other:?}"),
        }
    };
    let relays = KindId::CHANNEL_RELAYS;
    let dir = KindId::CHANNEL_DIRECTORY;
    // before r1: r1; exactly r1: r1; between: r2; after r2 in C's range: none
    assert_eq!(
        find(&mut net, 3, Id(0x58 << 120), vec![relays, dir]),
        vec![(relays, Some(r1)), (dir, None)]
    );
    assert_eq!(
        find(&mut net, 0, r1, vec![relays]),
        vec![(relays, Some(r1))]
    );
    assert_eq!(
        find(&mut net, 1, Id(r1.0 + 1), vec![relays]),
        vec![(relays, Some(r2))]
    );
    assert_eq!(
        find(&mut net, 1, Id(r2.0 + 1), vec![relays]),
        vec![(relays, None)],
        "replicas of other ranges are not reported"
    );
    net.tshark_clean("find");
}

/// A Store with a stale generation counter gets Error_Generation_Counter_Too_Low whose
/// error_info is a StoreAns with the current generation (RFC 6940 section 7.4.1.1), as
/// tshark's dissector reads it.
#[test]
fn stale_generation_gets_the_current_one_in_the_error() {
    let mut net = Net::ring(&[A, B, C, D]);
    let r = Id((0x70 << 120) | 3);
    store(&mut net, 0, r, b"one");
    store(&mut net, 0, r, b"two");
    let me = Id(A);
    let mut kd = relay_value(me, b"stale", 3600);
    kd.generation = 1;
    let now = net.now;
    let h = net.peers[0].node_mut().store(
        now,
        r,
        vec![kd],
        Signer {
            node_id: me,
            user_name: String::new(),
        },
    );
    match net.done(0, h) {
        Err(RequestError::Error(5, why)) => assert!(why.contains("generation: 2"), "{why}"),
        other => panic!("{other:?}"),
    }
    let err = net
        .pdus
        .iter()
        .filter_map(|b| wire::Message::decode(b).ok())
        .filter_map(|m| match m.body() {
            Ok(wire::Body::Error(e)) if e.code.0 == 5 => Some(e),
            _ => None,
        })
        .next()
        .expect("the error PDU");
    match wire::Body::decode(wire::MessageCode::STORE_ANS, &err.info).unwrap() {
        wire::Body::StoreAns(k) => {
            assert_eq!(k.len(), 1);
            assert_eq!((k[0].kind.0, k[0].generation_counter), (0xf000_0001, 2));
        }
        other => panic!("{other:?}"),
    }
    net.tshark_clean("generation");
}

/// Probe (RFC 6940 section 6.4.2.5): responsible_ppb, num_resources and uptime, in the
/// order asked; an unknown information type is left out.
#[test]
fn probe_reports_responsible_share_resources_and_uptime() {
    let mut net = Net::ring(&[A, B, C, D]);
    store(&mut net, 0, Id((0x70 << 120) | 1), b"x");
    store(&mut net, 0, Id((0x80 << 120) | 1), b"y");
    let body = wire::Body::ProbeReq(vec![
        ProbeInformationType::UPTIME,
        ProbeInformationType(99),
        ProbeInformationType::RESPONSIBLE_SET,
        ProbeInformationType::NUM_RESOURCES,
    ])
    .to_bytes()
    .unwrap();
    let now = net.now;
    let h = net.peers[0]
        .node_mut()
        .send_opaque(now, vec![Dest::Node(Id(C))], 1, body);
    let b = match net.done(0, h) {
        Ok(Outcome::Other(2, b)) => b,
        other => panic!("{other:?}"),
    };
    let info = match wire::Body::decode(wire::MessageCode::PROBE_ANS, &b).unwrap() {
        wire::Body::ProbeAns(info) => info,
        other => panic!("{other:?}"),
    };
    let types: Vec<u8> = info.iter().map(|i| i.info_type.0).collect();
    assert_eq!(types, vec![3, 1, 2]);
    // C has been up since it joined (about 65 s of virtual time before the stores)
    assert!(
        (60..=120).contains(&info[0].value),
        "uptime {}",
        info[0].value
    );
    // C is responsible for (B, C]: a quarter of the ring
    assert_eq!(info[1].value, 250_000_000);
    // two Resource-IDs of its own, plus the replicas it keeps for its predecessors
    assert!(info[2].value >= 2, "num_resources {}", info[2].value);
    net.tshark_clean("probe");
}

/// ConfigUpdate (RFC 6940 section 6.5.4) routed to a peer: a newer configuration
/// sequence replaces the peer's, the same one is accepted with no change, an older one
/// gets Error_Config_Too_Old.
#[test]
fn config_update_takes_newer_sequences_only() {
    let mut net = Net::ring(&[A, B, C, D]);
    let send = |net: &mut Net, seq: u16| {
        let mut cfg =
            OverlayConfig::testbed(OVERLAY, vec![1, 2, 3], "https://127.0.0.1:1/", vec![]);
        cfg.sequence = seq;
        let body = wire::Body::ConfigUpdateReq(ConfigUpdateReq::Config(cfg.to_xml().into_bytes()))
            .to_bytes()
            .unwrap();
        let now = net.now;
        let h = net.peers[0].node_mut().send_opaque(
            now,
            vec![Dest::Node(Id(B)), Dest::Node(Id(C))],
            33,
            body,
        );
        net.done(0, h)
    };
    assert_eq!(net.peers[2].node().config_sequence(), 0);
    assert!(matches!(send(&mut net, 5), Ok(Outcome::Other(34, ref b)) if b.is_empty()));
    assert_eq!(net.peers[2].node().config_sequence(), 5);
    let doc = net.peers[2].node().config_document().unwrap().to_vec();
    assert!(String::from_utf8(doc.clone())
        .unwrap()
        .contains(r#"sequence="5""#));
    // the same sequence: accepted, nothing changes
    assert!(matches!(send(&mut net, 5), Ok(Outcome::Other(34, _))));
    assert_eq!(net.peers[2].node().config_document().unwrap(), &doc[..]);
    // older: refused
    match send(&mut net, 3) {
        Err(RequestError::Error(code, _)) => assert_eq!(code, error_code::CONFIG_TOO_OLD),
        other => panic!("{other:?}"),
    }
    assert_eq!(net.peers[2].node().config_sequence(), 5);
    assert!(matches!(send(&mut net, 7), Ok(Outcome::Other(34, _))));
    assert_eq!(net.peers[2].node().config_sequence(), 7);
    // the forwarding peer B interpreted none of it
    assert_eq!(net.peers[1].node().config_sequence(), 0);
    net.tshark_clean("config");
}

/// The forwarding header's configuration sequence (RFC 6940 section 6.3.2): a peer
/// refuses a request whose sequence is older (Error_Config_Too_Old) or newer
/// (Error_Config_Too_New) than its own; equal sequences pass.
#[test]
fn mismatched_configuration_sequences_are_refused() {
    let mut net = Net::ring(&[A, B, C, D]);
    for p in &mut net.peers {
        p.node_mut().set_config_sequence(5);
    }
    let r = Id((0x70 << 120) | 2);
    store(&mut net, 0, r, b"same sequence");
    let spec = || {
        vec![FetchSpec {
            kind: KindId::CHANNEL_RELAYS,
            generation: 0,
            select: Select::Keys(vec![]),
        }]
    };
    for (seq, code) in [
        (4u16, error_code::CONFIG_TOO_OLD),
        (6, error_code::CONFIG_TOO_NEW),
    ] {
        net.peers[0].node_mut().set_config_sequence(seq);
        let now = net.now;
        let h = net.peers[0].node_mut().stat(now, r, spec());
        match net.done(0, h) {
            Err(RequestError::Error(c, _)) => assert_eq!(c, code, "sequence {seq}"),
            other => panic!("sequence {seq}: {other:?}"),
        }
        assert!(net.log.iter().any(|x| x.3 == Inbound::Refused(code)));
    }
    net.peers[0].node_mut().set_config_sequence(5);
    let now = net.now;
    let h = net.peers[0].node_mut().stat(now, r, spec());
    assert!(matches!(net.done(0, h), Ok(Outcome::Stat(_))));
    net.tshark_clean("sequence");
}
