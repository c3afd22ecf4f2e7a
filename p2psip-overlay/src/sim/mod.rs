//! Deterministic overlay simulator: thousands of real [`Node`] cores on a
//! virtual clock.
//!
//! One seeded `StdRng` draws every id, choice and loss; links get a fixed
//! per-pair latency (1-50 ms by default) and an optional loss rate; an event
//! queue orders frame deliveries and node timers. Nothing reads the wall
//! clock except [`base_instant`], which only picks the origin of virtual time.
//!
//! [`run`] plays the scenario of issue 4: build the ring by real joins,
//! stabilise, store one record per node (replicated), run random lookups,
//! kill a fraction of the nodes without Leave, look up again at once, let
//! repair run, look up again, check every record, then churn (leaves, crashes
//! and joins at a rate) and measure the maintenance traffic per node.
//! Frame sizes are those of the real encoding: every frame goes through
//! [`crate::node::convert::frame_bytes`] (RFC 6940 wire format with
//! ECDSA-sized signatures and the framing header).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::node::msg::Frame;
use crate::node::{Event, Node, NodeConfig, Outcome};
use crate::storage::{FetchSpec, KindData, KindId, Select, Signer, StoredValue, ValueKey};
use crate::topology::{hash_to_id, Id};

/// Simulation parameters.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Ring size.
    pub nodes: usize,
    /// Lookups per phase.
    pub lookups: usize,
    /// Fraction of nodes killed at once (no Leave).
    pub kill: f64,
    /// RNG seed.
    pub seed: u64,
    /// Churn: departures (and as many joins) per second over the network.
    pub churn: f64,
    /// Churn phase length in seconds (0 = no churn phase).
    pub churn_duration: f64,
    /// Link loss probability per frame.
    pub loss: f64,
    /// Link latency range in ms (per pair, fixed).
    pub latency_ms: (u64, u64),
    /// Node settings.
    pub node: NodeConfig,
    /// Virtual seconds of stabilisation after the joins.
    pub stabilise_s: u64,
    /// Virtual seconds of repair after the kill.
    pub repair_s: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            nodes: 1000,
            lookups: 10_000,
            kill: 0.2,
            seed: 1,
            churn: 0.0,
            churn_duration: 0.0,
            loss: 0.0,
            latency_ms: (1, 50),
            node: NodeConfig::default(),
            stabilise_s: 150,
            repair_s: 120,
        }
    }
}

/// The one JSON object `p2psip-node sim` prints.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SimReport {
    /// Nodes in the ring before the kill.
    pub nodes: usize,
    /// Nodes that completed their join.
    pub joined: usize,
    /// Lookups per phase.
    pub lookups: usize,
    /// Successful lookups before the kill.
    pub ok: usize,
    /// Mean overlay hops of those.
    pub mean_hops: f64,
    /// 99th percentile hops.
    pub p99_hops: usize,
    /// 0.6 * log2(nodes), the bound on `mean_hops`.
    pub hops_bound: f64,
    /// Nodes killed.
    pub killed: usize,
    /// Successful lookups right after the kill.
    pub ok_after_kill: usize,
    /// Mean hops right after the kill.
    pub mean_hops_after_kill: f64,
    /// Successful lookups after repair.
    pub ok_after_repair: usize,
    /// Mean hops after repair.
    pub mean_hops_after_repair: f64,
    /// Records stored (one per node).
    pub records: usize,
    /// Records that no longer answer a Fetch after repair.
    pub records_lost: usize,
    /// Replicas on successors per record (the node's `replicas`).
    pub replicas: usize,
    /// Copies per record: the responsible peer's and the replicas.
    pub copies: usize,
    /// Bytes sent per node per second in a quiet minute (no churn, no lookups).
    pub idle_bytes_per_node_s: f64,
    /// Churn rate (departures/s and joins/s).
    pub churn_rate: f64,
    /// Churn phase length (s).
    pub churn_duration_s: f64,
    /// Bytes sent per node per second during churn (all traffic: no lookups run then).
    pub maintenance_bytes_per_node_s: f64,
    /// Churn-phase bytes per node per second by message type.
    pub maintenance_by_message: BTreeMap<&'static str, f64>,
    /// Records still fetchable after churn (checked when churn ran).
    pub records_lost_after_churn: usize,
    /// Where byte counts come from.
    pub bytes_source: &'static str,
    /// Frames delivered in the whole run.
    pub frames: u64,
    /// Virtual seconds simulated.
    pub virtual_s: f64,
}

enum Ev {
    Deliver { to: usize, from: Id, frame: Frame },
    Timer { node: usize, t: Instant },
}

struct Queued {
    at: Instant,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        self.at == o.at && self.seq == o.seq
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> Ordering {
        // min-heap on (at, seq)
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// The origin of virtual time. The only clock read in the simulator; every
/// later instant is this plus simulated durations.
#[expect(clippy::disallowed_methods)]
#[must_use]
pub fn base_instant() -> Instant {
    Instant::now()
}

fn mix(mut x: u64) -> u64 {
    // splitmix64 finaliser
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The simulated network.
#[derive(Debug)]
pub struct Sim {
    now: Instant,
    base: Instant,
    nodes: Vec<Node>,
    alive: Vec<bool>,
    index: HashMap<Id, usize>,
    timers: Vec<Option<Instant>>,
    queue: BinaryHeap<QueuedDbg>,
    seq: u64,
    rng: StdRng,
    seed: u64,
    loss: f64,
    latency_ms: (u64, u64),
    overlay: u32,
    /// Bytes put on links so far.
    pub bytes: u64,
    /// Frames delivered so far.
    pub frames: u64,
    /// Bytes sent per message type (ACKs under "Ack").
    pub bytes_by_type: BTreeMap<&'static str, u64>,
    events: Vec<(usize, Event)>,
}

/// Queue entry wrapper with a Debug impl.
struct QueuedDbg(Queued);
impl std::fmt::Debug for QueuedDbg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Queued(seq {})", self.0.seq)
    }
}
impl PartialEq for QueuedDbg {
    fn eq(&self, o: &Self) -> bool {
        self.0 == o.0
    }
}
impl Eq for QueuedDbg {}
impl PartialOrd for QueuedDbg {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for QueuedDbg {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.cmp(&o.0)
    }
}

impl Sim {
    /// An empty network.
    #[must_use]
    pub fn new(seed: u64, loss: f64, latency_ms: (u64, u64)) -> Self {
        let base = base_instant();
        Self {
            now: base,
            base,
            nodes: Vec::new(),
            alive: Vec::new(),
            index: HashMap::new(),
            timers: Vec::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            rng: StdRng::seed_from_u64(seed),
            seed,
            loss,
            latency_ms,
            overlay: crate::wire::overlay_hash("iptv.example"),
            bytes: 0,
            frames: 0,
            bytes_by_type: BTreeMap::new(),
            events: Vec::new(),
        }
    }

    /// Current virtual time.
    #[must_use]
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual seconds since the start.
    #[must_use]
    pub fn elapsed_s(&self) -> f64 {
        (self.now - self.base).as_secs_f64()
    }

    /// The RNG (seeded).
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    /// Add a node (not started); returns its index.
    pub fn add(&mut self, id: Id, cfg: NodeConfig) -> usize {
        let i = self.nodes.len();
        self.nodes.push(Node::new(id, cfg));
        self.alive.push(true);
        self.timers.push(None);
        self.index.insert(id, i);
        i
    }

    /// Node by index.
    #[must_use]
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// Mutable node by index; call [`Sim::pump`] after driving it.
    pub fn node_mut(&mut self, i: usize) -> &mut Node {
        &mut self.nodes[i]
    }

    /// Number of nodes ever added.
    #[must_use]
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when no node was added.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Is node `i` alive?
    #[must_use]
    pub fn is_alive(&self, i: usize) -> bool {
        self.alive[i]
    }

    /// Kill node `i` at once (no Leave).
    pub fn kill(&mut self, i: usize) {
        self.alive[i] = false;
        self.timers[i] = None;
    }

    /// Events the nodes produced since the last call.
    pub fn take_events(&mut self) -> Vec<(usize, Event)> {
        std::mem::take(&mut self.events)
    }

    fn push(&mut self, at: Instant, ev: Ev) {
        self.seq += 1;
        self.queue.push(QueuedDbg(Queued {
            at,
            seq: self.seq,
            ev,
        }));
    }

    fn latency(&self, a: Id, b: Id) -> Duration {
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        let h =
            mix(self.seed ^ mix(lo.0 as u64 ^ (hi.0 >> 64) as u64) ^ mix((hi.0 as u64) ^ 0x5151));
        let (min, max) = self.latency_ms;
        let span = max.saturating_sub(min) + 1;
        Duration::from_micros((min * 1000) + h % (span * 1000))
    }

    /// Move node `i`'s transmits onto the network, collect its events and
    /// (re)arm its timer.
    pub fn pump(&mut self, i: usize) {
        if !self.alive[i] {
            // a dead node says nothing
            while self.nodes[i].poll_transmit().is_some() {}
            while self.nodes[i].poll_event().is_some() {}
            return;
        }
        let from = self.nodes[i].id();
        while let Some(t) = self.nodes[i].poll_transmit() {
            let size = crate::node::convert::frame_bytes(&t.frame, self.overlay)
                .map_or(t.frame.wire_size(), |b| b.len()) as u64;
            self.bytes += size;
            let name = match &t.frame {
                Frame::Data { msg, .. } => msg.body.name(),
                Frame::Ack { .. } => "Ack",
            };
            *self.bytes_by_type.entry(name).or_default() += size;
            if self.loss > 0.0 && self.rng.gen::<f64>() < self.loss {
                continue;
            }
            let Some(&to) = self.index.get(&t.to) else {
                continue;
            };
            let at = self.now + self.latency(from, t.to);
            self.push(
                at,
                Ev::Deliver {
                    to,
                    from,
                    frame: t.frame,
                },
            );
        }
        while let Some(e) = self.nodes[i].poll_event() {
            self.events.push((i, e));
        }
        if let Some(t) = self.nodes[i].poll_timeout() {
            if self.timers[i] != Some(t) {
                self.timers[i] = Some(t);
                self.push(t.max(self.now), Ev::Timer { node: i, t });
            }
        } else {
            self.timers[i] = None;
        }
    }

    /// Process every event up to `until`, then set the clock to `until`.
    pub fn run_until(&mut self, until: Instant) {
        while let Some(top) = self.queue.peek() {
            if top.0.at > until {
                break;
            }
            let Some(QueuedDbg(q)) = self.queue.pop() else {
                break;
            };
            self.now = q.at.max(self.now);
            match q.ev {
                Ev::Deliver { to, from, frame } => {
                    if !self.alive[to] {
                        continue;
                    }
                    self.frames += 1;
                    let now = self.now;
                    self.nodes[to].handle(now, from, frame);
                    self.pump(to);
                }
                Ev::Timer { node, t } => {
                    if !self.alive[node] || self.timers[node] != Some(t) {
                        continue;
                    }
                    self.timers[node] = None;
                    let now = self.now;
                    self.nodes[node].handle_timeout(now);
                    self.pump(node);
                }
            }
        }
        self.now = self.now.max(until);
    }

    /// Run for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Add nodes with these ids and join them one after the other, `gap`
    /// apart, each through a random node already in the ring (the first one
    /// starts the overlay). Returns their indices.
    pub fn build_ring(&mut self, ids: &[Id], cfg: &NodeConfig, gap: Duration) -> Vec<usize> {
        let mut out = Vec::with_capacity(ids.len());
        for (k, &id) in ids.iter().enumerate() {
            let i = self.add(id, cfg.clone());
            out.push(i);
            let now = self.now;
            if k == 0 && self.live_joined().is_empty() {
                self.nodes[i].start_alone(now);
            } else {
                let live = self.live_joined();
                let b = live[self.rng.gen_range(0..live.len())];
                let bid = self.nodes[b].id();
                self.nodes[i].join(now, bid);
            }
            self.pump(i);
            self.run_for(gap);
        }
        out
    }

    /// Index of the node with this id.
    #[must_use]
    pub fn index_of(&self, id: Id) -> Option<usize> {
        self.index.get(&id).copied()
    }

    /// Indices of live, joined nodes.
    #[must_use]
    pub fn live_joined(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.alive[i] && self.nodes[i].is_joined())
            .collect()
    }
}

fn record_resource(k: usize) -> Id {
    hash_to_id(format!("channel-{k}").as_bytes())
}

fn record_value(node: Id, k: usize, now_ms: u64) -> KindData {
    KindData {
        kind: KindId::CHANNEL_RELAYS,
        generation: 0,
        values: vec![StoredValue {
            key: ValueKey::Key(node.to_be_bytes().to_vec()),
            storage_time: now_ms,
            lifetime: 86_400,
            exists: true,
            data: format!("relay for channel {k}: 192.0.2.1:5004 load 0.1").into_bytes(),
            signer: Signer {
                node_id: node,
                user_name: String::new(),
            },
        }],
    }
}

fn fetch_spec() -> Vec<FetchSpec> {
    vec![FetchSpec {
        kind: KindId::CHANNEL_RELAYS,
        generation: 0,
        select: Select::Keys(Vec::new()),
    }]
}

struct LookupStats {
    ok: usize,
    hops: Vec<usize>,
}

impl LookupStats {
    fn mean(&self) -> f64 {
        if self.hops.is_empty() {
            return 0.0;
        }
        self.hops.iter().sum::<usize>() as f64 / self.hops.len() as f64
    }
    fn p99(&self) -> usize {
        let mut h = self.hops.clone();
        h.sort_unstable();
        if h.is_empty() {
            return 0;
        }
        h[((h.len() as f64 * 0.99).ceil() as usize).clamp(1, h.len()) - 1]
    }
}

/// Issue `targets` fetches (record indices) from random live nodes, one per
/// millisecond, and wait for all answers.
fn lookups(
    sim: &mut Sim,
    records: &[(usize, Id)],
    targets: &[usize],
    wait: Duration,
) -> LookupStats {
    let mut pending: HashMap<(usize, u64), usize> = HashMap::new();
    let live = sim.live_joined();
    let start = sim.now();
    for (j, &k) in targets.iter().enumerate() {
        sim.run_until(start + Duration::from_millis(j as u64));
        let from = live[sim.rng().gen_range(0..live.len())];
        let (_, res) = records[k];
        let now = sim.now();
        let h = sim.node_mut(from).fetch(now, res, fetch_spec());
        sim.pump(from);
        pending.insert((from, h), k);
    }
    let mut stats = LookupStats {
        ok: 0,
        hops: Vec::new(),
    };
    let deadline = sim.now() + wait;
    while sim.now() < deadline {
        sim.run_for(Duration::from_millis(500));
        for (i, e) in sim.take_events() {
            if let Event::Done {
                handle,
                result,
                hops,
            } = e
            {
                let Some(k) = pending.remove(&(i, handle)) else {
                    continue;
                };
                let owner = records[k].0;
                let found = matches!(&result, Ok(Outcome::Fetched(kd))
                    if kd.iter().any(|d| d.values.iter().any(|v| v.key == ValueKey::Key(sim.node(owner).id().to_be_bytes().to_vec()))));
                if found {
                    stats.ok += 1;
                    stats.hops.push(hops);
                }
            }
        }
        if pending.is_empty() {
            break;
        }
    }
    stats
}

/// Run the whole scenario and return the report.
#[must_use]
pub fn run(cfg: &SimConfig) -> SimReport {
    let mut ncfg = cfg.node.clone();
    ncfg.chord.successors = ncfg.chord.successors.max(ncfg.replicas);
    let mut sim = Sim::new(cfg.seed, cfg.loss, cfg.latency_ms);
    // Build the ring by real joins.
    let ids: Vec<Id> = (0..cfg.nodes).map(|_| Id(sim.rng().gen())).collect();
    sim.build_ring(&ids, &ncfg, Duration::from_millis(20));
    sim.run_for(Duration::from_secs(cfg.stabilise_s));
    let joined = sim.live_joined().len();
    // Quiet-minute traffic.
    let b0 = sim.bytes;
    sim.run_for(Duration::from_secs(60));
    let idle = (sim.bytes - b0) as f64 / joined.max(1) as f64 / 60.0;
    let _ = sim.take_events();
    // One record per node, stored by that node.
    let mut records = Vec::new();
    for i in 0..cfg.nodes {
        if !sim.node(i).is_joined() {
            continue;
        }
        let res = record_resource(i);
        let now = sim.now();
        let ms = (now - sim.base).as_millis() as u64;
        let node_id = sim.node(i).id();
        let kd = record_value(node_id, i, ms);
        let signer = Signer {
            node_id,
            user_name: String::new(),
        };
        sim.node_mut(i).store(now, res, vec![kd], signer);
        sim.pump(i);
        records.push((i, res));
        sim.run_for(Duration::from_millis(2));
    }
    sim.run_for(Duration::from_secs(20));
    let _ = sim.take_events();
    let n_rec = records.len();
    let pick = |sim: &mut Sim, n: usize| -> Vec<usize> {
        (0..n).map(|_| sim.rng().gen_range(0..n_rec)).collect()
    };
    let wait = Duration::from_secs(60);
    let t = pick(&mut sim, cfg.lookups);
    let before = lookups(&mut sim, &records, &t, wait);
    // Kill.
    let live = sim.live_joined();
    let n_kill = (live.len() as f64 * cfg.kill).round() as usize;
    let mut victims = live.clone();
    for k in 0..n_kill {
        let j = sim.rng().gen_range(k..victims.len());
        victims.swap(k, j);
    }
    for &v in &victims[..n_kill] {
        sim.kill(v);
    }
    let t = pick(&mut sim, cfg.lookups);
    let after_kill = lookups(&mut sim, &records, &t, wait);
    sim.run_for(Duration::from_secs(cfg.repair_s));
    let _ = sim.take_events();
    let t = pick(&mut sim, cfg.lookups);
    let after_repair = lookups(&mut sim, &records, &t, wait);
    let all: Vec<usize> = (0..n_rec).collect();
    let check = lookups(&mut sim, &records, &all, wait);
    let records_lost = n_rec - check.ok;
    // Churn.
    let mut maint = 0.0;
    let mut lost_after_churn = 0;
    let mut churn_by_type = BTreeMap::new();
    if cfg.churn > 0.0 && cfg.churn_duration > 0.0 {
        let b0 = sim.bytes;
        sim.bytes_by_type.clear();
        let start = sim.now();
        let end = start + Duration::from_secs_f64(cfg.churn_duration);
        let gap = Duration::from_secs_f64(1.0 / cfg.churn);
        let mut node_seconds = 0.0;
        let mut next = start;
        let mut crash = false;
        while next < end {
            let live_before = sim.live_joined().len() as f64;
            sim.run_until(next);
            node_seconds += live_before * gap.as_secs_f64();
            let live = sim.live_joined();
            if live.len() > 2 {
                let v = live[sim.rng().gen_range(0..live.len())];
                if crash {
                    sim.kill(v);
                } else {
                    let now = sim.now();
                    sim.node_mut(v).leave(now);
                    sim.pump(v);
                    sim.kill(v);
                }
                crash = !crash;
                let live = sim.live_joined();
                let b = live[sim.rng().gen_range(0..live.len())];
                let bid = sim.node(b).id();
                let id = Id(sim.rng().gen());
                let i = sim.add(id, ncfg.clone());
                let now = sim.now();
                sim.node_mut(i).join(now, bid);
                sim.pump(i);
            }
            next += gap;
        }
        sim.run_until(end);
        maint = (sim.bytes - b0) as f64 / node_seconds.max(1.0);
        churn_by_type = sim
            .bytes_by_type
            .iter()
            .map(|(k, v)| (*k, round3(*v as f64 / node_seconds.max(1.0))))
            .collect();
        sim.run_for(Duration::from_secs(cfg.repair_s));
        let _ = sim.take_events();
        let check = lookups(&mut sim, &records, &all, wait);
        lost_after_churn = n_rec - check.ok;
    }
    let nodes = cfg.nodes;
    SimReport {
        nodes,
        joined,
        lookups: cfg.lookups,
        ok: before.ok,
        mean_hops: round3(before.mean()),
        p99_hops: before.p99(),
        hops_bound: round3(0.6 * (nodes.max(2) as f64).log2()),
        killed: n_kill,
        ok_after_kill: after_kill.ok,
        mean_hops_after_kill: round3(after_kill.mean()),
        ok_after_repair: after_repair.ok,
        mean_hops_after_repair: round3(after_repair.mean()),
        records: n_rec,
        records_lost,
        replicas: ncfg.replicas,
        copies: ncfg.replicas + 1,
        idle_bytes_per_node_s: round3(idle),
        churn_rate: cfg.churn,
        churn_duration_s: cfg.churn_duration,
        maintenance_bytes_per_node_s: round3(maint),
        maintenance_by_message: churn_by_type,
        records_lost_after_churn: lost_after_churn,
        bytes_source:
            "wire encoding of every frame (RFC 6940, ECDSA P-256-sized signatures, framing header; TLS/TCP/IP not counted)",
        frames: sim.frames,
        virtual_s: round3(sim.elapsed_s()),
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
