//! CHORD-RELOAD routing table (RFC 6940 section 9.3 Routing, and the neighbour
//! table kept up by Updates).
//!
//! A peer keeps a successor list and a predecessor list (the neighbour table,
//! at least three each, RFC 6940 section 9.3; five by default here) and 128
//! finger slots. Section 9.3's finger `i` (1-based) is the peer responsible
//! for `n + 2^(128 - i)`. The table only answers questions; it never sends:
//! [`crate::node`] decides when to probe, update or declare a peer dead.
//!
//! Routing (section 9.3): a peer is responsible for the ids in
//! `(predecessor, self]`. For any other id it forwards to the neighbour that
//! is responsible when the id falls inside its neighbour table, and otherwise
//! to the known peer that most closely precedes the id (greedy Chord). The
//! [`RoutingTable::next_hops`] list is ordered best-first; the rest are
//! alternates for retry after a hop fails.

use super::ring::{finger_start, Id, FINGERS};

/// Sizes of the neighbour table (RFC 6940 section 9.3: "at least three").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChordConfig {
    /// Successors kept.
    pub successors: usize,
    /// Predecessors kept.
    pub predecessors: usize,
}

impl Default for ChordConfig {
    fn default() -> Self {
        Self {
            successors: 5,
            predecessors: 5,
        }
    }
}

/// One peer's view of the ring.
#[derive(Clone, Debug)]
pub struct RoutingTable {
    me: Id,
    cfg: ChordConfig,
    succ: Vec<Id>,
    pred: Vec<Id>,
    /// `fingers[k]` is RFC finger `k + 1`.
    fingers: Vec<Option<Id>>,
}

/// Insert `p` into a list kept sorted by `key` (smaller = closer), capped at `cap`.
fn insert_sorted(list: &mut Vec<Id>, p: Id, cap: usize, key: impl Fn(Id) -> u128) -> bool {
    if list.contains(&p) {
        return false;
    }
    let k = key(p);
    let pos = list.iter().position(|&q| key(q) > k).unwrap_or(list.len());
    if pos >= cap {
        return false;
    }
    list.insert(pos, p);
    list.truncate(cap);
    true
}

impl RoutingTable {
    /// An empty table: a lone peer, responsible for the whole ring.
    #[must_use]
    pub fn new(me: Id, cfg: ChordConfig) -> Self {
        Self {
            me,
            cfg,
            succ: Vec::new(),
            pred: Vec::new(),
            fingers: vec![None; FINGERS],
        }
    }

    /// This peer's id.
    #[must_use]
    pub fn me(&self) -> Id {
        self.me
    }

    /// The configured sizes.
    #[must_use]
    pub fn config(&self) -> ChordConfig {
        self.cfg
    }

    /// Successors, nearest first.
    #[must_use]
    pub fn successors(&self) -> &[Id] {
        &self.succ
    }

    /// Predecessors, nearest first.
    #[must_use]
    pub fn predecessors(&self) -> &[Id] {
        &self.pred
    }

    /// RFC finger `i` (1..=128), if known.
    #[must_use]
    pub fn finger(&self, i: usize) -> Option<Id> {
        self.fingers.get(i.checked_sub(1)?).copied().flatten()
    }

    /// Distinct finger peers.
    #[must_use]
    pub fn finger_peers(&self) -> Vec<Id> {
        let mut v: Vec<Id> = self.fingers.iter().flatten().copied().collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Successors then predecessors, without duplicates (the neighbour table).
    #[must_use]
    pub fn neighbors(&self) -> Vec<Id> {
        let mut v = self.succ.clone();
        for &p in &self.pred {
            if !v.contains(&p) {
                v.push(p);
            }
        }
        v
    }

    /// True when `p` is in the neighbour table.
    #[must_use]
    pub fn is_neighbor(&self, p: Id) -> bool {
        self.succ.contains(&p) || self.pred.contains(&p)
    }

    /// Every peer the table knows.
    #[must_use]
    pub fn known_peers(&self) -> Vec<Id> {
        let mut v = self.neighbors();
        v.extend(self.fingers.iter().flatten().copied());
        v.sort_unstable();
        v.dedup();
        v
    }

    /// True when this peer is responsible for `id`: `id` in `(predecessor, self]`
    /// (RFC 6940 section 9.3). A peer with no predecessor owns the whole ring.
    #[must_use]
    pub fn is_responsible(&self, id: Id) -> bool {
        match self.pred.first() {
            None => true,
            Some(&p) => id.in_open_closed(p, self.me),
        }
    }

    /// The peer that is responsible for `id` as far as the neighbour table
    /// knows: `Some(self)` or a neighbour; `None` when `id` lies beyond it.
    #[must_use]
    pub fn responsible_neighbor(&self, id: Id) -> Option<Id> {
        if self.is_responsible(id) {
            return Some(self.me);
        }
        let mut from = self.me;
        for &s in &self.succ {
            if id.in_open_closed(from, s) {
                return Some(s);
            }
            from = s;
        }
        // Predecessor k is responsible for (pred[k+1], pred[k]].
        for (k, &p) in self.pred.iter().enumerate() {
            if let Some(&before) = self.pred.get(k + 1) {
                if id.in_open_closed(before, p) {
                    return Some(p);
                }
            }
        }
        None
    }

    /// Add a peer that is known to be alive. Returns true when the neighbour
    /// table changed (fingers alone do not count).
    pub fn add_peer(&mut self, p: Id) -> bool {
        if p == self.me {
            return false;
        }
        let me = self.me;
        let s = insert_sorted(&mut self.succ, p, self.cfg.successors, |q| {
            me.distance_to(q)
        });
        let d = insert_sorted(&mut self.pred, p, self.cfg.predecessors, |q| {
            q.distance_to(me)
        });
        self.offer_finger(p);
        s || d
    }

    /// Consider `p` for every finger slot (RFC 6940 section 9.3: finger `i` is
    /// the first peer at or after `n + 2^(128-i)`).
    pub fn offer_finger(&mut self, p: Id) {
        if p == self.me {
            return;
        }
        for k in 0..FINGERS {
            let start = finger_start(self.me, k + 1);
            let dp = start.distance_to(p);
            // Only peers between the start point and us (clockwise) can be that finger.
            if dp >= start.distance_to(self.me) {
                continue;
            }
            let better = match self.fingers[k] {
                None => true,
                Some(f) => dp < start.distance_to(f),
            };
            if better {
                self.fingers[k] = Some(p);
            }
        }
    }

    /// Set RFC finger `i` from a lookup answer: the peer responsible for its start.
    pub fn set_finger(&mut self, i: usize, p: Id) {
        if p == self.me || i == 0 || i > FINGERS {
            return;
        }
        self.fingers[i - 1] = Some(p);
        self.offer_finger(p);
    }

    /// Replace the successor list with `first` followed by `first`'s own
    /// successors (the Chord stabilisation step: the immediate successor is
    /// authoritative for what follows it). Returns true on change.
    pub fn adopt_successors(&mut self, first: Id, rest: &[Id], skip: impl Fn(Id) -> bool) -> bool {
        let me = self.me;
        let mut v = vec![first];
        for &q in rest {
            if q == me || v.contains(&q) || skip(q) {
                continue;
            }
            // stay on the clockwise side, before wrapping back to us
            v.push(q);
        }
        v.sort_by_key(|&q| me.distance_to(q));
        v.truncate(self.cfg.successors);
        let changed = v != self.succ;
        for &q in &v {
            self.offer_finger(q);
        }
        self.succ = v;
        changed
    }

    /// Mirror of [`Self::adopt_successors`] for the predecessor list.
    pub fn adopt_predecessors(
        &mut self,
        first: Id,
        rest: &[Id],
        skip: impl Fn(Id) -> bool,
    ) -> bool {
        let me = self.me;
        let mut v = vec![first];
        for &q in rest {
            if q == me || v.contains(&q) || skip(q) {
                continue;
            }
            v.push(q);
        }
        v.sort_by_key(|&q| q.distance_to(me));
        v.truncate(self.cfg.predecessors);
        let changed = v != self.pred;
        for &q in &v {
            self.offer_finger(q);
        }
        self.pred = v;
        changed
    }

    /// Remove a failed or departed peer everywhere (RFC 6940 section 9, neighbour and finger failures
    /// reactive recovery). Returns true when the neighbour table changed.
    pub fn remove_peer(&mut self, p: Id) -> bool {
        let before = self.succ.len() + self.pred.len();
        self.succ.retain(|&q| q != p);
        self.pred.retain(|&q| q != p);
        for f in &mut self.fingers {
            if *f == Some(p) {
                *f = None;
            }
        }
        // Refill emptied finger slots from what is still known.
        let known = self.known_peers();
        for q in known {
            self.offer_finger(q);
        }
        before != self.succ.len() + self.pred.len()
    }

    /// Candidate next hops toward `target`, best first (RFC 6940 section 9.3).
    /// Empty when this peer is responsible (deliver locally).
    #[must_use]
    pub fn next_hops(&self, target: Id) -> Vec<Id> {
        if self.is_responsible(target) {
            return Vec::new();
        }
        let mut out = Vec::new();
        // Inside the successor list: the responsible successor, then the ones
        // after it (they hold its replicas and take over if it failed).
        let mut from = self.me;
        for (k, &s) in self.succ.iter().enumerate() {
            if target.in_open_closed(from, s) {
                out.extend_from_slice(&self.succ[k..]);
                return out;
            }
            from = s;
        }
        if let Some(p) = self.responsible_neighbor(target) {
            // A predecessor owns it; its successors (closer to us) are the alternates.
            out.push(p);
            let k = self.pred.iter().position(|&q| q == p).unwrap_or(0);
            out.extend(self.pred[..k].iter().rev());
            return out;
        }
        // Greedy: peers in (me, target], closest to the target first.
        let mut cands: Vec<Id> = self
            .known_peers()
            .into_iter()
            .filter(|p| p.in_open_closed(self.me, target))
            .collect();
        cands.sort_by_key(|p| p.distance_to(target));
        cands.truncate(6);
        if cands.is_empty() {
            // Nothing precedes the target: the farthest successor is progress.
            out.extend(self.succ.last());
        }
        out.extend(cands);
        out
    }

    /// RFC finger indices (1..=128) whose start point lies beyond the
    /// successor list, i.e. the fingers that need a lookup to be known
    /// (RFC 6940 section 9, refreshing the finger table).
    #[must_use]
    pub fn fingers_needing_lookup(&self) -> Vec<usize> {
        let reach = match self.succ.last() {
            Some(&s) => self.me.distance_to(s),
            None => return Vec::new(),
        };
        (1..=FINGERS)
            .filter(|&i| self.me.distance_to(finger_start(self.me, i)) > reach)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_from(me: u128, peers: &[u128]) -> RoutingTable {
        let mut t = RoutingTable::new(Id(me), ChordConfig::default());
        for &p in peers {
            t.add_peer(Id(p));
        }
        t
    }

    #[test]
    fn neighbour_lists_sorted_and_capped() {
        let t = table_from(100, &[110, 90, 120, 80, 130, 70, 140, 60, 150, 50, 160, 40]);
        assert_eq!(
            t.successors(),
            &[Id(110), Id(120), Id(130), Id(140), Id(150)]
        );
        assert_eq!(t.predecessors(), &[Id(90), Id(80), Id(70), Id(60), Id(50)]);
        assert!(t.is_responsible(Id(95)));
        assert!(t.is_responsible(Id(100)));
        assert!(!t.is_responsible(Id(90)));
        assert!(!t.is_responsible(Id(101)));
    }

    #[test]
    fn lone_peer_owns_everything() {
        let t = RoutingTable::new(Id(5), ChordConfig::default());
        assert!(t.is_responsible(Id(0)));
        assert!(t.next_hops(Id(12345)).is_empty());
    }

    #[test]
    fn next_hop_inside_neighbour_table() {
        let t = table_from(100, &[110, 90, 120, 80, 130]);
        assert_eq!(t.next_hops(Id(105))[0], Id(110));
        // alternates are the following successors (replica holders)
        assert_eq!(t.next_hops(Id(115))[..2], [Id(120), Id(130)]);
        // owned by predecessor 90 (range (80, 90])
        assert_eq!(t.next_hops(Id(85)), vec![Id(90)]);
    }

    #[test]
    fn fingers_take_the_first_peer_after_the_start() {
        let me = Id(0);
        let mut t = RoutingTable::new(me, ChordConfig::default());
        let half = 1u128 << 127;
        t.add_peer(Id(half + 10));
        t.add_peer(Id(half + 5));
        t.add_peer(Id(half - 5)); // before finger 1's start: not finger 1
        assert_eq!(t.finger(1), Some(Id(half + 5)));
        // finger 2 starts at 2^126: the first peer after it is half-5
        assert_eq!(t.finger(2), Some(Id(half - 5)));
    }

    #[test]
    fn greedy_route_picks_closest_preceding() {
        let me = Id(0);
        let mut t = RoutingTable::new(
            me,
            ChordConfig {
                successors: 3,
                predecessors: 3,
            },
        );
        for k in 1..=10u128 {
            t.add_peer(Id(k << 120));
        }
        let target = Id((7u128 << 120) + 3);
        // successors are 1,2,3 <<120 and predecessors 10,9,8 <<120; of the
        // fingers (8, 4, 2, 1 <<120) the closest one before the target is 4<<120
        let hops = t.next_hops(target);
        assert_eq!(hops[0], Id(4u128 << 120));
        assert!(hops.iter().all(|h| h.in_open_closed(me, target)));
    }

    #[test]
    fn remove_peer_drops_it_everywhere() {
        let mut t = table_from(100, &[110, 90, 120, 80]);
        assert!(t.remove_peer(Id(110)));
        assert_eq!(t.successors()[0], Id(120));
        assert!(!t.known_peers().contains(&Id(110)));
        assert!(!t.remove_peer(Id(999)));
    }

    #[test]
    fn adopt_successors_replaces_list() {
        let mut t = table_from(100, &[110, 120, 130]);
        // 110 says its successors are 125, 130: 120 is gone
        assert!(t.adopt_successors(Id(110), &[Id(125), Id(130), Id(100)], |_| false));
        assert_eq!(t.successors(), &[Id(110), Id(125), Id(130)]);
    }
}
