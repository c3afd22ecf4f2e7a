//! A virtual network for the sans-IO overlay core (`p2psip_overlay::node::Node`), shared
//! by the `node_*` tests: cores on a virtual clock, frames moved between them in memory
//! (1 ms per round), timers run in 10 ms steps. Also [`tls_peer`], one real peer of the tokio
//! driver over TLS on 127.0.0.1, for the `driver_*` tests. Each test binary uses a part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use p2psip_overlay::node::msg::{error_code::NOT_FOUND, Frame};
use p2psip_overlay::node::{Event, Node, NodeConfig, Transmit};
use p2psip_overlay::sim::base_instant;
use p2psip_overlay::topology::Id;

/// `n` Node-IDs spread evenly around the ring (node `i` near `i / n` of it).
pub fn spread_ids(n: usize) -> Vec<Id> {
    (0..n as u128)
        .map(|i| Id((u128::MAX / n as u128) * i + 0x1234_5678 + i))
        .collect()
}

/// A loopback address for node `i` (candidates only; nothing is bound).
pub fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40_000 + i as u16))
}

pub struct Net {
    pub nodes: Vec<Node>,
    pub now: Instant,
    /// Every event polled: (virtual time, node index, event).
    pub events: Vec<(Instant, usize, Event)>,
    /// Every DATA frame moved: (from, to, message name).
    pub sent: Vec<(Id, Id, &'static str)>,
    /// Play the driver's message layer, which refuses a request whose via list holds
    /// the receiving peer (a loop; RFC 6940 section 6.2.2) before the core sees it.
    pub refuse_loops: bool,
    /// Requests refused as via-list loops.
    pub loops: usize,
}

impl Net {
    /// The given cores at the base instant; nothing started.
    pub fn new(nodes: Vec<Node>) -> Self {
        Net {
            nodes,
            now: base_instant(),
            events: Vec::new(),
            sent: Vec::new(),
            refuse_loops: false,
            loops: 0,
        }
    }

    /// One core per id, each with `config()`; nothing started.
    pub fn with_config(ids: &[Id], config: impl Fn() -> NodeConfig) -> Self {
        Self::new(ids.iter().map(|&id| Node::new(id, config())).collect())
    }

    /// Starts node 0 alone, joins every other node through it one at a time (each must
    /// have joined once the frames stopped moving), then runs the timers for `settle`.
    pub fn join_all(&mut self, settle: Duration) {
        let now = self.now;
        self.nodes[0].start_alone(now);
        let boot = self.nodes[0].id();
        for i in 1..self.nodes.len() {
            let now = self.now;
            self.nodes[i].join(now, boot);
            self.pump();
            assert!(self.nodes[i].is_joined(), "node {i} joined");
        }
        self.run_for(settle);
    }

    pub fn index(&self, id: Id) -> Option<usize> {
        self.nodes.iter().position(|n| n.id() == id)
    }

    /// Polls every node's events into `events`.
    pub fn collect_events(&mut self) {
        for (i, n) in self.nodes.iter_mut().enumerate() {
            while let Some(e) = n.poll_event() {
                self.events.push((self.now, i, e));
            }
        }
    }

    /// Moves frames between all nodes until none is left (bounded), advancing the
    /// clock 1 ms per round.
    pub fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut moved = Vec::new();
            for (i, n) in self.nodes.iter_mut().enumerate() {
                while let Some(t) = n.poll_transmit() {
                    moved.push((i, t));
                }
            }
            self.collect_events();
            if moved.is_empty() {
                return;
            }
            self.now += Duration::from_millis(1);
            for (i, t) in moved {
                self.deliver(i, t);
            }
        }
        panic!("frames still moving after 10,000 rounds");
    }

    /// Hands node `from`'s transmit to the node holding its destination now, at the
    /// current virtual time (dropped if no node has that id).
    pub fn deliver(&mut self, from: usize, t: Transmit) {
        let from = self.nodes[from].id();
        if let Frame::Data { msg, .. } = &t.frame {
            self.sent.push((from, t.to, msg.body.name()));
        }
        let Some(j) = self.index(t.to) else {
            return;
        };
        let now = self.now;
        if self.refuse_loops {
            if let Frame::Data { msg, .. } = &t.frame {
                if !msg.body.is_response() && msg.via.contains(&t.to) {
                    let (txid, via) = (msg.txid, msg.via.clone());
                    self.loops += 1;
                    self.nodes[j].answer_error(now, from, txid, via, NOT_FOUND, "loop");
                    return;
                }
            }
        }
        self.nodes[j].handle(now, from, t.frame);
    }

    /// Runs every node's timers for `d` of virtual time in 10 ms steps, moving frames.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += Duration::from_millis(10);
            for n in &mut self.nodes {
                n.handle_timeout(self.now);
            }
            self.pump();
        }
    }

    /// Node `i`'s events with the virtual time they came out.
    pub fn events_of(&self, i: usize) -> impl Iterator<Item = (Instant, &Event)> + '_ {
        self.events
            .iter()
            .filter(move |(_, j, _)| *j == i)
            .map(|(t, _, e)| (*t, e))
    }

    /// Every `PeerFailed` seen: (node index, failed peer).
    pub fn failed(&self) -> Vec<(usize, Id)> {
        self.events
            .iter()
            .filter_map(|(_, i, e)| match e {
                Event::PeerFailed(p) => Some((*i, *p)),
                _ => None,
            })
            .collect()
    }
}

/// Every PDU the driver peers of a test sent, for the tshark check.
pub type Record = std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>;

/// A peer of the tokio driver on 127.0.0.1 with Node-ID `id` (and `user` in its certificate)
/// from the dev CA, recording its PDUs into `record`, joined through `bootstrap` (none: it
/// starts the overlay) within 20 s.
pub async fn tls_peer(
    ca: &p2psip_overlay::cert::DevCa,
    id: p2psip_overlay::wire::NodeId,
    user: Option<&str>,
    bootstrap: Option<SocketAddr>,
    record: &Record,
) -> p2psip_overlay::driver::OverlayHandle {
    let link = p2psip_overlay::link::LinkConfig::new(
        "iptv.test",
        ca.issue(id, user).unwrap(),
        vec![ca.root_der()],
    );
    let mut cfg =
        p2psip_overlay::driver::DriverConfig::new(link, "127.0.0.1:0".parse().unwrap(), bootstrap);
    cfg.record = Some(std::sync::Arc::clone(record));
    let (h, _task) = p2psip_overlay::driver::start(cfg).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), h.joined())
        .await
        .expect("joined in time")
        .unwrap();
    h
}
