//! Link setup and peer liveness (RFC 6940 section 6.5.1, Attach without ICE; section 9,
//! neighbour failures): a frame the driver holds while it opens the link to its hop (the
//! Attach round trip and the TLS handshake) is not counted against the peer until the
//! setup budget (`NodeConfig::link_setup_timeout`, 5 s) runs out, so a slow but live
//! peer on a loaded machine is not declared failed after the 1.25 s retransmission
//! budget; a connect that fails (a killed peer: connection refused) still fails the
//! peer at once.
//!
//! Three sans-IO cores on a virtual clock; node 0's "driver" is played by the test: it
//! holds node 0's frames (no links yet) and reports them with `Node::link_waiting`.

mod common;

use std::time::{Duration, Instant};

use common::Net;
use p2psip_overlay::node::msg::{Body, Frame};
use p2psip_overlay::node::{Event, NodeConfig, Outcome, Transmit};
use p2psip_overlay::storage::{FetchSpec, KindId, Select};
use p2psip_overlay::topology::Id;

const N: usize = 3;

fn ids() -> Vec<Id> {
    common::spread_ids(N)
}

/// Three joined cores, settled for 3 s, no events kept.
fn ring() -> Net {
    let mut ring = Net::with_config(&ids(), NodeConfig::default);
    ring.join_all(Duration::from_secs(3));
    ring.events.clear();
    ring
}

impl Net {
    /// Node 0 alone, with no links: every DATA frame it sends is held (and reported
    /// waiting for its link when `report` is true) until `until`, in 10 ms steps. The
    /// held frames are collected in `held`, each once; retransmissions of held frames
    /// (reported again) are counted in the returned value.
    fn hold0(&mut self, until: Instant, report: bool, held: &mut Vec<Transmit>) -> usize {
        let mut resent = 0;
        loop {
            let now = self.now;
            while let Some(t) = self.nodes[0].poll_transmit() {
                if let Frame::Data { seq, .. } = &t.frame {
                    let seq = *seq;
                    if held
                        .iter()
                        .any(|h| matches!(h.frame, Frame::Data { seq: s, .. } if s == seq))
                    {
                        resent += 1;
                        if report {
                            self.nodes[0].link_waiting(now, t.to, seq);
                        }
                        continue;
                    }
                    if report {
                        self.nodes[0].link_waiting(now, t.to, seq);
                    }
                    held.push(t);
                }
            }
            while let Some(e) = self.nodes[0].poll_event() {
                self.events.push((now, 0, e));
            }
            if self.now >= until {
                return resent;
            }
            self.now += Duration::from_millis(10);
            let now = self.now;
            self.nodes[0].handle_timeout(now);
        }
    }

    fn failures0(&self, p: Id) -> Vec<Instant> {
        self.events_of(0)
            .filter(|(_, e)| **e == Event::PeerFailed(p))
            .map(|(t, _)| t)
            .collect()
    }
}

fn fetch_spec() -> Vec<FetchSpec> {
    vec![FetchSpec {
        kind: KindId::CHANNEL_RELAYS,
        generation: 0,
        select: Select::Keys(Vec::new()),
    }]
}

/// Starts a fetch of a resource node 1 is responsible for (node 0's first hop: node 1).
fn fetch_via_node1(ring: &mut Net, ids: &[Id]) -> u64 {
    let now = ring.now;
    ring.nodes[0].fetch(now, Id(ids[1].0 - 10), fetch_spec())
}

fn is_fetch_to(t: &Transmit, to: Id) -> bool {
    t.to == to
        && matches!(&t.frame, Frame::Data { msg, .. } if matches!(msg.body, Body::FetchReq { .. }))
}

#[test]
fn a_frame_waiting_for_its_link_counts_against_the_peer_only_after_the_setup_budget() {
    let ids = ids();
    let mut ring = ring();
    let t0 = ring.now;
    fetch_via_node1(&mut ring, &ids);
    let mut held = Vec::new();
    let resent = ring.hold0(t0 + Duration::from_millis(4_900), true, &mut held);
    assert!(
        held.iter().any(|t| is_fetch_to(t, ids[1])),
        "fetch held for node 1"
    );
    assert_eq!(
        resent, 0,
        "a frame waiting for its link is not retransmitted"
    );
    assert!(
        ring.failures0(ids[1]).is_empty(),
        "node 1 failed within the setup budget (old budget: 1.25 s)"
    );
    // The budget runs out at t0 + 5 s: node 1 is failed then, and the fetch rerouted.
    let before = held.len();
    ring.hold0(t0 + Duration::from_millis(5_200), true, &mut held);
    let failed = ring.failures0(ids[1]);
    assert_eq!(failed.len(), 1, "node 1 failed once the budget ran out");
    assert!(
        failed[0] >= t0 + Duration::from_secs(5) && failed[0] <= t0 + Duration::from_millis(5_010),
        "failed at {:?} after the fetch, not at the 5 s budget",
        failed[0] - t0
    );
    assert!(
        held[before..].iter().any(|t| is_fetch_to(t, ids[2])),
        "the fetch was rerouted to node 2"
    );
}

#[test]
fn without_the_report_the_retransmission_budget_fails_the_peer_after_1_25_s() {
    // The control: the same frame not reported as waiting for a link.
    let ids = ids();
    let mut ring = ring();
    let t0 = ring.now;
    fetch_via_node1(&mut ring, &ids);
    let mut held = Vec::new();
    ring.hold0(t0 + Duration::from_secs(2), false, &mut held);
    let failed = ring.failures0(ids[1]);
    assert_eq!(
        failed.len(),
        1,
        "node 1 failed by the retransmission budget"
    );
    assert!(
        failed[0] <= t0 + Duration::from_millis(1_260),
        "failed at {:?}",
        failed[0] - t0
    );
}

#[test]
fn a_link_that_comes_up_within_the_budget_carries_the_frame_and_the_peer_lives() {
    let ids = ids();
    let mut ring = ring();
    let t0 = ring.now;
    let h = fetch_via_node1(&mut ring, &ids);
    let mut held = Vec::new();
    // a slow handshake: 3 s, more than the 1.25 s retransmission budget
    ring.hold0(t0 + Duration::from_secs(3), true, &mut held);
    let now = ring.now;
    ring.nodes[0].link_up(now, ids[1]);
    for t in held {
        ring.deliver(0, t);
    }
    ring.pump();
    ring.run_for(Duration::from_secs(3));
    assert!(ring.failures0(ids[1]).is_empty(), "node 1 never failed");
    let done = ring
        .events_of(0)
        .find_map(|(_, e)| match e {
            Event::Done { handle, result, .. } if *handle == h => Some(result.clone()),
            _ => None,
        })
        .expect("the fetch finished");
    assert!(matches!(done, Ok(Outcome::Fetched(_))), "{done:?}");
    assert!(
        ring.nodes[0].table().successors().first() == Some(&ids[1]),
        "node 1 still node 0's successor"
    );
}

#[test]
fn a_refused_connect_fails_the_peer_at_once() {
    let ids = ids();
    let mut ring = ring();
    let t0 = ring.now;
    let h = fetch_via_node1(&mut ring, &ids);
    let mut held = Vec::new();
    ring.hold0(t0 + Duration::from_millis(100), true, &mut held);
    assert!(
        held.iter().any(|t| is_fetch_to(t, ids[1])),
        "fetch held for node 1"
    );
    // node 1 was killed: the connect is refused
    let now = ring.now;
    ring.nodes[0].link_failed(now, ids[1]);
    let mut rerouted = Vec::new();
    ring.hold0(now, true, &mut rerouted);
    assert_eq!(ring.failures0(ids[1]), vec![now], "failed at the refusal");
    assert!(
        rerouted.iter().any(|t| is_fetch_to(t, ids[2])),
        "the fetch rerouted to node 2 at once"
    );
    // node 1 is gone; node 2 finds out on its own and answers as the new responsible
    ring.nodes.remove(1);
    for t in rerouted {
        ring.deliver(0, t);
    }
    ring.run_for(Duration::from_secs(5));
    let done = ring
        .events_of(0)
        .find_map(|(_, e)| match e {
            Event::Done { handle, result, .. } if *handle == h => Some(result.clone()),
            _ => None,
        })
        .expect("the fetch finished");
    assert!(matches!(done, Ok(Outcome::Fetched(_))), "{done:?}");
}

#[test]
fn a_failed_attach_retransmits_the_frame_within_the_setup_budget() {
    // An Attach answered with an error (a route through peers still joining) does not
    // show the peer dead: the frame is retransmitted (the driver Attaches again), and
    // the setup budget still runs from the first wait.
    let ids = ids();
    let mut ring = ring();
    let t0 = ring.now;
    fetch_via_node1(&mut ring, &ids);
    let mut held = Vec::new();
    ring.hold0(t0 + Duration::from_millis(100), true, &mut held);
    let now = ring.now;
    ring.nodes[0].link_down(now, ids[1]);
    let resent = ring.hold0(t0 + Duration::from_millis(400), true, &mut held);
    assert_eq!(resent, 1, "retransmitted once after the failed Attach");
    ring.hold0(t0 + Duration::from_millis(4_900), true, &mut held);
    assert!(ring.failures0(ids[1]).is_empty(), "node 1 not failed yet");
    ring.hold0(t0 + Duration::from_millis(5_200), true, &mut held);
    let failed = ring.failures0(ids[1]);
    assert_eq!(failed.len(), 1, "failed when the budget ran out");
    assert!(
        failed[0] <= t0 + Duration::from_millis(5_010),
        "failed at {:?}, not at the budget from the first wait",
        failed[0] - t0
    );
}
