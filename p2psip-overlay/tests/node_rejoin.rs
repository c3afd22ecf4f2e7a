//! A peer that crashes and rejoins with the same Node-ID before all its neighbours
//! noticed (RFC 6940 section 9.5, Joining; CHORD-RELOAD replication, section 9) gets
//! its replicas back: a neighbour whose table still lists it (nothing changed there)
//! must not go on counting it as a holder of what the crashed process held; the
//! rejoined peer's peer_ready Update tells it to sync again. (Found while looping
//! `nodes_tls` under CPU load, where a peer restarted after kill -9 once lacked records
//! for 20 s; that run left no log, so this is the mechanism, not a replay of it.)
//!
//! Five sans-IO cores on a virtual clock, frames moved between them in memory.

mod common;

use std::time::Duration;

use common::Net;
use p2psip_overlay::node::{Node, NodeConfig};
use p2psip_overlay::storage::{FetchSpec, KindData, KindId, Select, Signer, StoredValue, ValueKey};
use p2psip_overlay::topology::Id;

const N: usize = 5;

/// The defaults with the driver's short dead-peer memory (5 s).
fn config() -> NodeConfig {
    NodeConfig {
        dead_memory: Duration::from_secs(5),
        ..NodeConfig::default()
    }
}

impl Net {
    fn holds(&self, i: usize, resource: Id) -> bool {
        let spec = FetchSpec {
            kind: KindId::CHANNEL_RELAYS,
            generation: 0,
            select: Select::Keys(Vec::new()),
        };
        self.nodes[i]
            .storage()
            .fetch(self.now, resource, &[spec])
            .is_ok_and(|kd| kd.iter().flat_map(|k| &k.values).any(|v| v.exists))
    }
}

/// Stores one value at `resource` through node 0 and lets replication settle.
fn store(ring: &mut Net, ids: &[Id], resource: Id) {
    let signer = Signer {
        node_id: ids[0],
        user_name: String::new(),
    };
    let kd = KindData {
        kind: KindId::CHANNEL_RELAYS,
        generation: 0,
        values: vec![StoredValue {
            key: ValueKey::Key(ids[0].to_be_bytes().to_vec()),
            storage_time: 1_800_000_000_000,
            lifetime: 86_400,
            exists: true,
            data: b"relay 192.0.2.1:5004".to_vec(),
            signer: signer.clone(),
        }],
    };
    let now = ring.now;
    ring.nodes[0].store(now, resource, vec![kd], signer);
    ring.run_for(Duration::from_secs(1));
}

#[test]
fn peer_restarted_before_its_predecessor_noticed_gets_its_replicas_back() {
    let ids = common::spread_ids(N);
    let mut ring = Net::with_config(&ids, config);
    ring.join_all(Duration::from_secs(3));
    // a resource just before node 1's id: node 1 is responsible, 2, 3, 4 hold replicas
    let resource = Id(ids[1].0 - 10);
    store(&mut ring, &ids, resource);
    let copies: Vec<bool> = (0..N).map(|i| ring.holds(i, resource)).collect();
    assert_eq!(copies, [false, true, true, true, true], "holders before");

    // Node 2 starts leaving and crashes: only its successor (node 3) hears the Leave,
    // its predecessor (node 1) notices nothing. The restarted process (same Node-ID,
    // empty storage) joins again through node 3, which is now responsible for its id.
    let now = ring.now;
    ring.nodes[2].leave(now);
    while let Some(t) = ring.nodes[2].poll_transmit() {
        if t.to == ids[3] {
            ring.nodes[3].handle(now, ids[2], t.frame);
        }
    }
    ring.nodes[2] = Node::new(ids[2], config());
    ring.pump();
    assert!(!ring.holds(2, resource));
    assert!(
        ring.nodes[1].table().successors().first() == Some(&ids[2]),
        "node 1 still lists node 2 as its successor"
    );
    let now = ring.now;
    ring.nodes[2].join(now, ids[3]);
    // (node 3 remembers node 2 as gone; a frame from it shows it alive again, so the
    // join is answered at once: tests/node_restart.rs; bounded virtual time here)
    for _ in 0..60 {
        if ring.nodes[2].is_joined() {
            break;
        }
        ring.run_for(Duration::from_secs(1));
    }
    assert!(ring.nodes[2].is_joined(), "node 2 joined again");
    ring.run_for(Duration::from_secs(2));
    assert!(
        ring.nodes[1].table().successors().first() == Some(&ids[2]),
        "node 1 lists node 2 as its successor throughout"
    );
    // Node 1 must not count the restarted peer as holding its replica (it announced
    // itself with a peer_ready Update, RFC 6940 section 9.5): the replica goes to it again.
    let copies: Vec<bool> = (0..N).map(|i| ring.holds(i, resource)).collect();
    assert_eq!(copies, [false, true, true, true, true], "holders after");
}
