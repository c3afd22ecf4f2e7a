//! Small rings in the simulator: ring correctness after joins, replicas on
//! successors, handover on join and on leave, re-replication after a crash,
//! TTL and hostile frames at one node.

use std::time::Duration;

use p2psip_overlay::node::msg::{error_code, Body, Dest, Frame, Message};
use p2psip_overlay::node::{Event, Node, NodeConfig, Outcome};
use p2psip_overlay::sim::{base_instant, Sim};
use p2psip_overlay::storage::{FetchSpec, KindData, KindId, Select, Signer, StoredValue, ValueKey};
use p2psip_overlay::topology::Id;
use rand::{Rng, SeedableRng};

fn ring(n: usize, seed: u64) -> (Sim, Vec<usize>) {
    let mut sim = Sim::new(seed, 0.0, (1, 50));
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let ids: Vec<Id> = (0..n).map(|_| Id(rng.gen())).collect();
    let idx = sim.build_ring(&ids, &NodeConfig::default(), Duration::from_millis(50));
    sim.run_for(Duration::from_secs(60));
    (sim, idx)
}

/// The live node responsible for `r` and the ones after it, in ring order.
fn owners(sim: &Sim, r: Id) -> Vec<usize> {
    let mut live: Vec<(Id, usize)> = sim
        .live_joined()
        .into_iter()
        .map(|i| (sim.node(i).id(), i))
        .collect();
    live.sort();
    let pos = live.iter().position(|x| x.0 >= r).unwrap_or(0);
    (0..live.len())
        .map(|k| live[(pos + k) % live.len()].1)
        .collect()
}

fn holders(sim: &Sim, r: Id) -> Vec<usize> {
    sim.live_joined()
        .into_iter()
        .filter(|&i| sim.node(i).storage().resources().contains(&r))
        .collect()
}

fn record(signer: Id) -> Vec<KindData> {
    vec![KindData {
        kind: KindId::CHANNEL_RELAYS,
        generation: 0,
        values: vec![StoredValue {
            key: ValueKey::Key(signer.to_be_bytes().to_vec()),
            storage_time: 1,
            lifetime: 3600,
            exists: true,
            data: b"192.0.2.9:5004".to_vec(),
            signer: Signer {
                node_id: signer,
                user_name: String::new(),
            },
        }],
    }]
}

fn store(sim: &mut Sim, from: usize, r: Id) {
    let id = sim.node(from).id();
    let now = sim.now();
    sim.node_mut(from).store(
        now,
        r,
        record(id),
        Signer {
            node_id: id,
            user_name: String::new(),
        },
    );
    sim.pump(from);
    sim.run_for(Duration::from_secs(5));
    let ok = sim.take_events().into_iter().any(|(_, e)| {
        matches!(
            e,
            Event::Done {
                result: Ok(Outcome::Stored(_)),
                ..
            }
        )
    });
    assert!(ok, "store answered");
}

fn fetch_ok(sim: &mut Sim, from: usize, r: Id) -> bool {
    let now = sim.now();
    let spec = vec![FetchSpec {
        kind: KindId::CHANNEL_RELAYS,
        generation: 0,
        select: Select::Keys(vec![]),
    }];
    let h = sim.node_mut(from).fetch(now, r, spec);
    sim.pump(from);
    sim.run_for(Duration::from_secs(30));
    sim.take_events().into_iter().any(|(i, e)| {
        i == from
            && matches!(e, Event::Done { handle, result: Ok(Outcome::Fetched(ref kd)), .. }
                if handle == h && kd.iter().any(|k| !k.values.is_empty()))
    })
}

#[test]
fn joins_build_a_correct_ring() {
    let (sim, _) = ring(40, 3);
    let mut ids: Vec<Id> = sim
        .live_joined()
        .iter()
        .map(|&i| sim.node(i).id())
        .collect();
    assert_eq!(ids.len(), 40);
    ids.sort();
    for (k, &id) in ids.iter().enumerate() {
        let i = sim.index_of(id).unwrap();
        let t = sim.node(i).table();
        assert_eq!(
            t.successors()[0],
            ids[(k + 1) % ids.len()],
            "successor of {k}"
        );
        assert_eq!(
            t.predecessors()[0],
            ids[(k + ids.len() - 1) % ids.len()],
            "predecessor of {k}"
        );
        assert_eq!(t.successors().len(), 5);
        // finger 1 is the peer responsible for n + 2^127
        let start = Id(id.0.wrapping_add(1 << 127));
        let want = *ids.iter().find(|&&x| x >= start).unwrap_or(&ids[0]);
        assert_eq!(t.finger(1), Some(want), "finger 1 of {k}");
    }
}

#[test]
fn four_copies_then_handover_on_join() {
    let (mut sim, idx) = ring(20, 4);
    let r = Id(rand::rngs::StdRng::seed_from_u64(9).gen());
    store(&mut sim, idx[0], r);
    sim.run_for(Duration::from_secs(5));
    let own = owners(&sim, r);
    let mut h = holders(&sim, r);
    h.sort_unstable();
    let mut want = own[..4].to_vec();
    want.sort_unstable();
    assert_eq!(
        h, want,
        "responsible peer and its first three successors (3 replicas on successors)"
    );
    // A peer joins with an id equal to r: it becomes responsible and gets the data.
    let n = sim.build_ring(&[r], &NodeConfig::default(), Duration::from_millis(10))[0];
    sim.run_for(Duration::from_secs(20));
    assert!(sim.node(n).is_joined());
    assert!(
        sim.node(n).storage().resources().contains(&r),
        "handover on join"
    );
    assert!(fetch_ok(&mut sim, idx[5], r));
}

#[test]
fn leave_hands_data_over_and_crash_re_replicates() {
    let (mut sim, idx) = ring(20, 5);
    let r = Id(rand::rngs::StdRng::seed_from_u64(10).gen());
    store(&mut sim, idx[1], r);
    sim.run_for(Duration::from_secs(5));
    // graceful leave of the responsible peer
    let resp = owners(&sim, r)[0];
    let now = sim.now();
    sim.node_mut(resp).leave(now);
    sim.pump(resp);
    sim.run_for(Duration::from_secs(1));
    sim.kill(resp);
    sim.run_for(Duration::from_secs(30));
    let own = owners(&sim, r);
    for &o in &own[..3] {
        assert!(
            sim.node(o).storage().resources().contains(&r),
            "3 copies after leave"
        );
    }
    // crash of the new responsible peer and of its successor: the third copy
    // survives and is re-replicated
    sim.kill(own[0]);
    sim.kill(own[1]);
    sim.run_for(Duration::from_secs(60));
    let own = owners(&sim, r);
    for &o in &own[..3] {
        assert!(
            sim.node(o).storage().resources().contains(&r),
            "3 copies after crash"
        );
    }
    let from = sim.live_joined()[0];
    assert!(fetch_ok(&mut sim, from, r));
}

#[test]
fn ttl_zero_gets_error_and_huge_via_list_is_dropped() {
    let now = base_instant();
    let mut n = Node::new(Id(100), NodeConfig::default());
    n.start_alone(now);
    while n.poll_event().is_some() {}
    let msg = Message {
        txid: 77,
        ttl: 0,
        via: vec![],
        dest: vec![Dest::Resource(Id(5))],
        body: Body::PingReq,
    };
    n.handle(
        now,
        Id(200),
        Frame::Data {
            seq: 1,
            msg: Box::new(msg.clone()),
        },
    );
    let out: Vec<_> = std::iter::from_fn(|| n.poll_transmit()).collect();
    assert_eq!(out[0].frame, Frame::Ack { seq: 1 });
    let Frame::Data { msg: ref ans, .. } = out[1].frame else {
        panic!("expected an answer");
    };
    assert_eq!(out[1].to, Id(200));
    assert_eq!(ans.txid, 77);
    assert!(matches!(ans.body, Body::Error { code, .. } if code == error_code::TTL_EXCEEDED));
    // a via list longer than 255 entries: acked, not processed
    let mut bad = msg;
    bad.ttl = 10;
    bad.via = vec![Id(1); 300];
    n.handle(
        now,
        Id(200),
        Frame::Data {
            seq: 2,
            msg: Box::new(bad),
        },
    );
    let out: Vec<_> = std::iter::from_fn(|| n.poll_transmit()).collect();
    assert_eq!(
        out,
        vec![p2psip_overlay::node::Transmit {
            to: Id(200),
            frame: Frame::Ack { seq: 2 }
        }]
    );
}

#[test]
fn wire_conversion_round_trips() {
    use p2psip_overlay::node::convert::{from_wire, to_wire};
    let signer = Signer {
        node_id: Id(0x77),
        user_name: String::new(),
    };
    let m = Message {
        txid: 9,
        ttl: 42,
        via: vec![Id(1), Id(2)],
        dest: vec![Dest::Resource(Id(3))],
        body: Body::StoreReq {
            resource: Id(3),
            replica_number: 1,
            kind_data: record(Id(0x77)),
            signer: signer.clone(),
        },
    };
    let w = to_wire(&m, 0x1234).unwrap();
    let bytes = w.to_bytes().unwrap();
    let back = p2psip_overlay::wire::Message::decode(&bytes).unwrap();
    let m2 = from_wire(&back, &signer).unwrap();
    assert_eq!(m2, m);
}

#[test]
fn frames_encode_and_the_size_estimate_is_close() {
    use p2psip_overlay::node::convert::frame_bytes;
    use p2psip_overlay::node::msg::{ChordUpdate, UpdateType};
    let bodies = vec![
        Body::UpdateReq(ChordUpdate {
            uptime: 5,
            kind: UpdateType::Neighbors,
            predecessors: vec![Id(1); 5],
            successors: vec![Id(2); 5],
            fingers: vec![],
        }),
        Body::UpdateAns,
        Body::PingReq,
        Body::PingAns { responder: Id(4) },
        Body::FetchAns {
            kind_data: record(Id(5)),
        },
        Body::Error {
            code: 3,
            reason: "no route".into(),
        },
    ];
    for body in bodies {
        let f = Frame::Data {
            seq: 1,
            msg: Box::new(Message {
                txid: 1,
                ttl: 100,
                via: vec![Id(7), Id(8)],
                dest: vec![Dest::Node(Id(9))],
                body,
            }),
        };
        let real = frame_bytes(&f, 1).unwrap().len();
        let est = f.wire_size();
        assert!(
            real.abs_diff(est) <= 8,
            "{f:?}: real {real}, estimate {est}"
        );
    }
    assert_eq!(frame_bytes(&Frame::Ack { seq: 3 }, 1).unwrap().len(), 9);
}

/// Every DATA frame a node queued, drained.
fn data_out(n: &mut Node) -> Vec<(Id, Message)> {
    std::iter::from_fn(|| n.poll_transmit())
        .filter_map(|t| match t.frame {
            Frame::Data { msg, .. } => Some((t.to, *msg)),
            Frame::Ack { .. } => None,
        })
        .collect()
}

/// A message as it travels: encoded to the wire and decoded back (what a driver
/// feeds the core).
fn over_the_wire(m: &Message) -> Message {
    use p2psip_overlay::node::convert::{from_wire, to_wire};
    let bytes = to_wire(m, 1).unwrap().to_bytes().unwrap();
    let back = p2psip_overlay::wire::Message::decode(&bytes).unwrap();
    from_wire(&back, &Signer::default()).unwrap()
}

#[test]
fn ping_answer_straight_from_the_responder_names_the_link_peer() {
    // A joining node routes a Ping to its own id through the bootstrap; the
    // bootstrap answers itself, so the answer's via list is empty on the wire.
    // The admitting peer is the link's peer: the Join must go to it (not to
    // Node-ID 0 nor be dropped).
    let now = base_instant();
    let (me, boot) = (Id(0x1000 << 64), Id(0x2000 << 64));
    let mut n = Node::new(me, NodeConfig::default());
    n.join(now, boot);
    let out = data_out(&mut n);
    assert_eq!(out.len(), 1);
    let (to, ping) = &out[0];
    assert_eq!(*to, boot);
    assert!(ping.via.is_empty() && matches!(ping.body, Body::PingReq));
    let answer = Message {
        txid: ping.txid,
        ttl: 100,
        via: vec![],
        dest: vec![Dest::Node(me)],
        body: Body::PingAns { responder: boot },
    };
    let received = over_the_wire(&answer);
    n.handle(
        now,
        boot,
        Frame::Data {
            seq: 1,
            msg: Box::new(received),
        },
    );
    let out = data_out(&mut n);
    assert_eq!(out.len(), 1, "one JoinReq: {out:?}");
    assert_eq!(out[0].0, boot);
    assert_eq!(out[0].1.dest, vec![Dest::Node(boot)]);
    assert!(matches!(out[0].1.body, Body::JoinReq { joining } if joining == me));
}

#[test]
fn transaction_ids_are_random_and_answers_do_not_cross_wire() {
    let now = base_instant();
    // Two nodes whose ids share the low 64 bits draw different transaction ids.
    let (a, b) = (Id(1 << 64 | 5), Id(2 << 64 | 5));
    let first = |id: Id| {
        let mut n = Node::new(id, NodeConfig::default());
        n.join(now, Id(9));
        data_out(&mut n)[0].1.txid
    };
    assert_ne!(first(a), first(b));
    // The ids of one node are not a sequence.
    let mut n = Node::new(Id(7 << 64), NodeConfig::default());
    n.start_alone(now);
    while n.poll_event().is_some() {}
    let peer = Id(8 << 64);
    let h = n.fetch(now, peer, vec![]);
    let h2 = n.fetch(now, Id(9 << 64), vec![]);
    assert_ne!(h, h2);
    // a lone node answers its own fetches at once
    let done: Vec<_> = std::iter::from_fn(|| n.poll_event()).collect();
    assert_eq!(done.len(), 2);
    // Requests to a peer: only that peer's answer of the right type completes them.
    let mut n = Node::new(Id(7 << 64), NodeConfig::default());
    n.join(now, peer);
    let ping = data_out(&mut n).remove(0).1;
    let txid = ping.txid;
    let deliver = |n: &mut Node, from: Id, body: Body| {
        n.handle(
            now,
            from,
            Frame::Data {
                seq: 1,
                msg: Box::new(Message {
                    txid,
                    ttl: 100,
                    via: vec![],
                    dest: vec![Dest::Node(Id(7 << 64))],
                    body,
                }),
            },
        );
        data_out(n)
    };
    // wrong type for a PingReq: ignored
    assert!(deliver(&mut n, peer, Body::UpdateAns).is_empty());
    assert!(deliver(&mut n, peer, Body::FetchAns { kind_data: vec![] }).is_empty());
    // the right answer still completes it: the Join follows
    let out = deliver(&mut n, peer, Body::PingAns { responder: peer });
    assert!(matches!(out[0].1.body, Body::JoinReq { .. }));
    // a Join to `peer` in flight: an answer from another peer is ignored
    let join_tx = out[0].1.txid;
    assert_ne!(join_tx, txid);
    n.handle(
        now,
        Id(66),
        Frame::Data {
            seq: 2,
            msg: Box::new(Message {
                txid: join_tx,
                ttl: 100,
                via: vec![],
                dest: vec![Dest::Node(Id(7 << 64))],
                body: Body::JoinAns,
            }),
        },
    );
    // still pending: the transaction retries to `peer` when it times out
    let later = now + NodeConfig::default().request_timeout;
    n.handle_timeout(later);
    let retry = data_out(&mut n);
    assert!(
        retry.iter().any(|(to, m)| *to == peer
            && m.txid == join_tx
            && matches!(m.body, Body::JoinReq { .. })),
        "{retry:?}"
    );
}
