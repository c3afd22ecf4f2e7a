//! A peer restarted with the same Node-ID rejoins at once (RFC 6940 section 9.5,
//! Joining), whether its neighbours still list the crashed process or have just marked
//! it dead:
//! - a Ping routed to its own Node-ID (the joining peer looking for its admitting peer)
//!   tells every peer on the way that still lists it that it is coming back: the stale
//!   entry goes, so the Ping reaches the peer now responsible for that id instead of
//!   being routed to the joining peer itself (a loop: the join waited for its 9 s
//!   retry);
//! - a frame over a link from a peer shows it alive, so a peer that failed it moments
//!   ago answers it again instead of dropping the answer as bound for a dead peer (the
//!   join waited for the dead-peer memory).
//!
//! Five sans-IO cores on a virtual clock; frames for a Node-ID reach whichever process
//! has it now (the restarted peer keeps its address). Time bounds are virtual.

mod common;

use std::time::Duration;

use common::Net;
use p2psip_overlay::node::msg::{error_code::NOT_FOUND, Body, Dest, Frame, Message};
use p2psip_overlay::node::{Node, NodeConfig};
use p2psip_overlay::sim::base_instant;
use p2psip_overlay::topology::Id;

const N: usize = 5;

fn ids() -> Vec<Id> {
    common::spread_ids(N)
}

/// The driver's core settings (3 s transactions, 5 s dead-peer memory, 2 s updates).
fn config() -> NodeConfig {
    NodeConfig {
        update_interval: Duration::from_secs(2),
        finger_interval: Duration::from_secs(2),
        request_timeout: Duration::from_secs(3),
        dead_memory: Duration::from_secs(5),
        ..NodeConfig::default()
    }
}

/// Five joined cores with the driver's settings and its loop refusal, settled for 5 s.
fn ring() -> Net {
    let mut ring = Net::with_config(&ids(), config);
    ring.refuse_loops = true;
    ring.join_all(Duration::from_secs(5));
    ring
}

impl Net {
    /// Restarts node `i` (kill -9: no Leave; a new process, same Node-ID, nothing
    /// stored) and joins it through `bootstrap`; the virtual time it took to join,
    /// bounded by 30 s.
    fn restart_and_join(&mut self, i: usize, bootstrap: Id) -> Option<Duration> {
        let id = self.nodes[i].id();
        self.nodes[i] = Node::new(id, config());
        let t0 = self.now;
        self.nodes[i].join(t0, bootstrap);
        while self.now < t0 + Duration::from_secs(30) {
            if self.nodes[i].is_joined() {
                return Some(self.now - t0);
            }
            self.run_for(Duration::from_millis(10));
        }
        None
    }

    /// Kills node `i` (its Node-ID now reaches an idle core that neither acknowledges
    /// nor answers) and runs until each of `by` has failed it (bounded: 10 s).
    fn kill_until_failed(&mut self, i: usize, by: &[usize]) {
        let id = self.nodes[i].id();
        self.nodes[i] = Node::new(id, config());
        self.events.clear();
        let t0 = self.now;
        while self.now < t0 + Duration::from_secs(10)
            && !by.iter().all(|&j| self.failed().contains(&(j, id)))
        {
            self.run_for(Duration::from_millis(10));
        }
    }

    fn lists(&self, i: usize, p: Id) -> bool {
        self.nodes[i].table().neighbors().contains(&p)
    }
}

#[test]
fn a_peer_restarted_before_its_neighbours_noticed_rejoins_at_once() {
    let ids = ids();
    let mut ring = ring();
    for i in [1, 3] {
        assert!(ring.lists(i, ids[2]), "node {i} lists node 2");
    }
    // crash and restart at once, before any neighbour noticed; join through node 0
    let took = ring
        .restart_and_join(2, ids[0])
        .expect("node 2 joined again within 30 s");
    assert!(
        took < Duration::from_secs(1),
        "rejoin took {took:?} (a retry waits 9 s)"
    );
    assert_eq!(ring.loops, 0, "requests refused as loops");
    ring.run_for(Duration::from_secs(3));
    for i in [1, 3] {
        assert!(ring.lists(i, ids[2]), "node {i} lists node 2 again");
    }
    assert_eq!(
        ring.nodes[1].table().successors().first(),
        Some(&ids[2]),
        "node 1's successor"
    );
    assert_eq!(
        ring.nodes[3].table().predecessors().first(),
        Some(&ids[2]),
        "node 3's predecessor"
    );
}

#[test]
fn a_peer_restarted_right_after_its_neighbours_failed_it_rejoins_at_once() {
    let ids = ids();
    let mut ring = ring();
    // kill -9; the neighbours fail it
    let id = ids[2];
    ring.kill_until_failed(2, &[1, 3]);
    for i in [1, 3] {
        assert!(
            ring.failed().contains(&(i, id)),
            "node {i} failed node 2: {:?}",
            ring.failed()
        );
        assert!(!ring.lists(i, id), "node {i} no longer lists node 2");
    }
    // restarted within the 5 s dead-peer memory, through its old successor (now
    // responsible for its id) and through a peer further away
    let took = ring
        .restart_and_join(2, ids[3])
        .expect("node 2 joined again within 30 s");
    assert!(
        took < Duration::from_secs(1),
        "rejoin through node 3 took {took:?} (the dead-peer memory is 5 s)"
    );
    ring.run_for(Duration::from_secs(3));
    for i in [1, 3] {
        assert!(ring.lists(i, id), "node {i} lists node 2 again");
    }
}

#[test]
fn a_peer_restarted_right_after_being_failed_rejoins_through_a_distant_bootstrap() {
    let ids = ids();
    let mut ring = ring();
    let id = ids[2];
    ring.kill_until_failed(2, &[1, 3]);
    assert!(
        !ring.lists(1, id) && !ring.lists(3, id),
        "node 2 failed by its neighbours"
    );
    let took = ring
        .restart_and_join(2, ids[0])
        .expect("node 2 joined again within 30 s");
    assert!(
        took < Duration::from_secs(1),
        "rejoin through node 0 took {took:?}"
    );
}

#[test]
fn a_joining_peer_does_not_forward_a_request_back_to_its_bootstrap() {
    // Ten peers joining through one bootstrap at once: a peer already listed by its
    // admitting peer but not yet joined gets a request the bootstrap forwarded; sent
    // back to the bootstrap it is refused as a via-list loop and the originator's join
    // waited for its transaction timeout. Now it answers with an error at once (no
    // admitting peer known yet).
    let ids = ids();
    let (me, bootstrap, other) = (ids[2], ids[0], ids[4]);
    let now = base_instant();
    let mut n = Node::new(me, config());
    n.join(now, bootstrap);
    while n.poll_transmit().is_some() {}
    let req = Message {
        txid: 77,
        ttl: 50,
        via: vec![other, bootstrap],
        dest: vec![Dest::Resource(Id(me.0 + 5))],
        body: Body::PingReq,
    };
    n.handle(
        now,
        ids[1],
        Frame::Data {
            seq: 1,
            msg: Box::new(req),
        },
    );
    let mut out = Vec::new();
    while let Some(t) = n.poll_transmit() {
        if let Frame::Data { msg, .. } = t.frame {
            out.push((t.to, *msg));
        }
    }
    assert!(
        !out.iter().any(|(to, m)| *to == bootstrap && m.txid == 77),
        "forwarded back to the bootstrap: {out:?}"
    );
    assert!(
        out.iter().any(|(to, m)| *to == ids[1]
            && m.txid == 77
            && matches!(
                m.body,
                Body::Error {
                    code: NOT_FOUND,
                    ..
                }
            )),
        "error answered to the peer it came from: {out:?}"
    );
}
