//! Attach routing in the sans-IO core (RFC 6940 section 6.5.1, no ICE), the cause of a
//! flaky `driver_tls` under CPU load: a peer whose routing table names no hop toward
//! the Attach's target but the target itself (its nearest successor, or the only peer of
//! that stretch of the ring it knows, as right after joining) must still send the
//! AttachReq through the overlay, by a known peer near the target, instead of failing it
//! at once with "no route". (The driver re-sent such frames and re-Attached every hop
//! timeout; after 1.25 s it declared a live peer failed, and for the 5 s of dead-peer
//! memory stores and fetches went to peers that did not hold the data.)
//!
//! Three cores on a virtual clock, frames moved between them in memory.

mod common;

use std::time::Duration;

use common::{addr, Net};
use p2psip_overlay::node::{Event, Node, NodeConfig};
use p2psip_overlay::topology::Id;

/// A (0x01..), B (0x40..), C (0x70..): C's successors are A then B, so the routing
/// table's only hop toward B is B itself.
fn three() -> Net {
    let ids = [1u128 << 120 | 0x55, 4 << 124 | 0x77, 7 << 124 | 0x99];
    let mut ring = Net::new(
        ids.iter()
            .enumerate()
            .map(|(i, &n)| {
                let mut node = Node::new(Id(n), NodeConfig::default());
                node.set_candidates(vec![addr(i)]);
                node
            })
            .collect(),
    );
    ring.join_all(Duration::from_secs(1));
    ring
}

#[test]
fn attach_to_the_only_hop_goes_through_a_neighbour_of_the_target() {
    let mut ring = three();
    let (a, b) = (ring.nodes[0].id(), ring.nodes[1].id());
    let c = &ring.nodes[2];
    assert_eq!(
        c.table().next_hops(b),
        vec![b],
        "the table names no hop toward B but B: {:?}",
        c.table().successors()
    );
    ring.events.clear();
    ring.sent.clear();
    let now = ring.now;
    ring.nodes[2].attach(now, b);
    ring.pump();
    let c_id = ring.nodes[2].id();
    let attach_hops: Vec<(Id, Id)> = ring
        .sent
        .iter()
        .filter(|(_, _, name)| *name == "AttachReq")
        .map(|&(f, t, _)| (f, t))
        .collect();
    // through A (B's predecessor and C's successor), never straight to B
    assert_eq!(attach_hops, vec![(c_id, a), (a, b)], "AttachReq hops");
    let got: Vec<&Event> = ring.events_of(2).map(|(_, e)| e).collect();
    assert!(
        got.contains(&&Event::Attached {
            peer: b,
            addrs: vec![addr(1)],
        }),
        "C's events: {got:?}"
    );
    assert!(
        !got.iter().any(|e| matches!(e, Event::AttachFailed(_))),
        "C's events: {got:?}"
    );
    // B heard C's candidates
    assert!(ring.events_of(1).any(|(_, e)| *e
        == Event::AttachRequested {
            peer: c_id,
            addrs: vec![addr(2)],
        }));
    // and the answer was an AttachAns, no error anywhere
    assert!(ring.sent.iter().any(|(_, _, n)| *n == "AttachAns"));
    assert!(!ring.sent.iter().any(|(_, _, n)| *n == "Error"));
}

#[test]
fn attach_with_no_other_peer_known_fails_at_once() {
    // Two peers: the target is the only peer known, no relay exists: the Attach fails
    // at once (Error_Not_Found, "no route") rather than going straight to the target.
    let ids = [1u128 << 120, 8 << 124];
    let mut ring = Net::with_config(&ids.map(Id), NodeConfig::default);
    let now = ring.now;
    ring.nodes[0].start_alone(now);
    let boot = ring.nodes[0].id();
    ring.nodes[1].join(now, boot);
    ring.pump();
    ring.events.clear();
    ring.sent.clear();
    let now = ring.now;
    ring.nodes[1].attach(now, boot);
    ring.pump();
    assert!(ring.sent.is_empty(), "nothing sent: {:?}", ring.sent);
    assert!(ring
        .events_of(1)
        .any(|(_, e)| *e == Event::AttachFailed(boot)));
}
