//! A pure feedback target (`media-relay ft`): one RFC 5760 FT for one RTP session, with the
//! timers, reporters and parent a process needs, and no media.
//!
//! How it fits: the FT itself is [`FeedbackTarget`]; this node adds what surrounds it in a
//! process. Reporters (viewers sending RR + SDES + APP `VOTE`, or child FTs sending RSI + APP
//! tally) are remembered by address; a new reporter is answered at once with the group-size RSI
//! ([`FeedbackTarget::downstream_rsi`]: its group size, the receivers' RTCP bandwidth and this
//! FT's address, RFC 5760 section 7.1 SRBT 0/1, 11, 12), and every reporter gets it again on the
//! senders' quarter of the RTCP share (at least every 5 s). With a parent, the node sends its
//! summary ([`FeedbackTarget::upstream_packet`]: RSI + APP tally, size independent of the
//! audience) on its RFC 3550 A.7 interval within the group its parent announced; the parent's
//! group-size RSIs (recognised by source address) set that group. A reporter not heard for the
//! member timeout is forgotten. With an allow-list of child FTs ([`FtNode::set_children`],
//! `media-relay ft --child ADDR`), a summary (RSI, RFC 5760 PT 209) from any other address is
//! dropped and counted ([`FtNode::refused_summaries`]), so nobody else can put votes into the
//! tally; viewers' RR/SDES/APP `VOTE` are taken from anyone (the FT manager places viewers, the
//! FT does not know their addresses). Without the list, any sender may be a child (the
//! behaviour of a lab FT). Sans-IO: `handle(now, ntp, from, bytes)`, `handle_timeout`,
//! `poll_timeout`, `poll_transmit`; the driver in `main.rs` owns the socket and the clock.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtcp_types::{Compound, Packet, RtcpPacketParserExt};

use crate::feedback::aggregate::{
    is_group_size_rsi, FeedbackError, FeedbackTarget, FtConfig, Handled, Summary,
};
use crate::feedback::interval;
use crate::rsi::{Rsi, RSI};

/// Most reporters remembered (beyond, new ones are served but not answered downstream).
pub const MAX_REPORTERS: usize = 1 << 16;
/// Most datagrams queued.
pub const MAX_QUEUE: usize = 1 << 16;

/// A datagram to send.
#[must_use = "a transmit must be sent"]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FtTransmit {
    /// Destination.
    pub dest: SocketAddr,
    /// The RTCP compound.
    pub payload: Vec<u8>,
}

/// A pure FT: see the module docs.
#[derive(Debug)]
pub struct FtNode {
    ft: FeedbackTarget,
    parent: Option<SocketAddr>,
    reporters: BTreeMap<SocketAddr, Instant>,
    next_up: Option<Instant>,
    next_down: Option<Instant>,
    rng: u64,
    out: VecDeque<FtTransmit>,
    sent_up: u64,
    /// The child FTs allowed to send summaries, if restricted.
    children: Option<BTreeSet<SocketAddr>>,
    refused: u64,
}

impl FtNode {
    /// A node around an FT configured by `cfg`, sending summaries to `parent` (if any) from
    /// `now` on; `seed` drives the interval draws.
    pub fn new(cfg: FtConfig, parent: Option<SocketAddr>, now: Instant, seed: u64) -> FtNode {
        FtNode {
            ft: FeedbackTarget::new(cfg),
            parent,
            reporters: BTreeMap::new(),
            next_up: parent.map(|_| now),
            next_down: None,
            rng: seed | 1,
            out: VecDeque::new(),
            sent_up: 0,
            children: None,
            refused: 0,
        }
    }

    fn uniform(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The FT.
    pub fn ft(&self) -> &FeedbackTarget {
        &self.ft
    }

    /// Reporters remembered (viewers and child FTs, by address).
    pub fn reporters(&self) -> usize {
        self.reporters.len()
    }

    /// Summaries sent to the parent so far.
    pub fn summaries_sent(&self) -> u64 {
        self.sent_up
    }

    /// Take child summaries only from `children` (the RTCP addresses the child FTs send
    /// from), or from anyone with `None`.
    pub fn set_children(&mut self, children: Option<BTreeSet<SocketAddr>>) {
        self.children = children;
    }

    /// Child summaries dropped so far: from an address not in [`FtNode::set_children`]'s list.
    pub fn refused_summaries(&self) -> u64 {
        self.refused
    }

    /// The summary of everything below this FT.
    pub fn summary(&self) -> Summary {
        self.ft.summary()
    }

    fn push(&mut self, dest: SocketAddr, payload: Vec<u8>) {
        if self.out.len() >= MAX_QUEUE {
            self.out.pop_front();
        }
        self.out.push_back(FtTransmit { dest, payload });
    }

    /// One RTCP datagram that arrived at `now` (`ntp`: the same instant as NTP, for RTT from
    /// LSR/DLSR) from `from`.
    pub fn handle(
        &mut self,
        now: Instant,
        ntp: u64,
        from: SocketAddr,
        data: &[u8],
    ) -> Result<Handled, FeedbackError> {
        if Some(from) == self.parent {
            let mut h = Handled::default();
            for p in Compound::parse(data)? {
                if let Packet::Unknown(u) = p? {
                    if u.type_() == RSI.0 {
                        let rsi = Rsi::from_unknown(&u)?;
                        self.ft.set_parent(rsi.ssrc);
                        self.ft.on_parent_rsi(&rsi);
                        h.parent_rsi += 1;
                    }
                }
            }
            return Ok(h);
        }
        if self.children.as_ref().is_some_and(|c| !c.contains(&from)) && is_summary(data)? {
            self.refused += 1;
            return Ok(Handled::default());
        }
        // A group-size RSI from elsewhere (a parent answering from another address) is taken
        // by the FT as its parent's
        // (`aggregate::is_group_size_rsi`) and makes nobody a reporter.
        let h = self.ft.handle_rtcp(now, from, ntp, data)?;
        if h.parent_rsi > 0 && h.reports == 0 && h.votes == 0 && h.child_summaries == 0 {
            return Ok(h);
        }
        if h == Handled::default() {
            return Ok(h);
        }
        let known = self.reporters.contains_key(&from);
        if known || self.reporters.len() < MAX_REPORTERS {
            self.reporters.insert(from, now);
        }
        if !known && self.reporters.contains_key(&from) {
            // A new reporter learns its group size at once.
            let down = self.ft.downstream_rsi(ntp).to_vec()?;
            self.push(from, down);
            if self.next_down.is_none() {
                self.next_down = Some(now + Duration::from_secs_f64(interval::RTCP_MIN_TIME_S));
            }
        }
        Ok(h)
    }

    /// When [`FtNode::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.next_up, self.next_down) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Run what is due at `now`: the summary up, the group-size RSIs down.
    pub fn handle_timeout(&mut self, now: Instant, ntp: u64) -> Result<(), FeedbackError> {
        self.ft.expire(now);
        let timeout = self.ft.config().member_timeout;
        self.reporters
            .retain(|_, heard| now.saturating_duration_since(*heard) < timeout);
        if let (Some(parent), Some(t)) = (self.parent, self.next_up) {
            if t <= now {
                let u = self.uniform();
                let dt = self.ft.upstream_interval_s(u).clamp(0.05, 3600.0);
                self.next_up = Some(now + Duration::from_secs_f64(dt));
                let (bytes, _) = self.ft.upstream_packet(ntp)?;
                self.push(parent, bytes);
                self.sent_up += 1;
            }
        }
        if self.next_down.is_some_and(|t| t <= now) {
            if self.reporters.is_empty() {
                self.next_down = None;
            } else {
                let down = self.ft.downstream_rsi(ntp).to_vec()?;
                let dests: Vec<SocketAddr> = self.reporters.keys().copied().collect();
                let bw = interval::rtcp_bandwidth_bytes_per_s(self.ft.config().session_bps)
                    * interval::SENDER_BW_FRACTION;
                let period = ((down.len() + 28) as f64 * dests.len() as f64 / bw)
                    .max(interval::RTCP_MIN_TIME_S);
                let u = self.uniform();
                self.next_down =
                    Some(now + Duration::from_secs_f64((period * (0.5 + u)).min(3600.0)));
                for d in dests {
                    self.push(d, down.clone());
                }
            }
        }
        Ok(())
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<FtTransmit> {
        self.out.pop_front()
    }
}

/// Whether `data` carries a child's summary: an RSI (RFC 5760 PT 209) that is not a
/// group-size RSI from above.
fn is_summary(data: &[u8]) -> Result<bool, FeedbackError> {
    for p in Compound::parse(data)? {
        if let Packet::Unknown(u) = p? {
            if u.type_() == RSI.0 {
                return Ok(!is_group_size_rsi(&Rsi::from_unknown(&u)?));
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feedback::aggregate::{viewer_interval_params, write_vote};
    use rtcp_types::{ReceiverReport, ReportBlock, RtcpPacketWriter, RtcpPacketWriterExt};

    #[expect(clippy::disallowed_methods, reason = "origin of the virtual clock")]
    fn t0() -> Instant {
        Instant::now()
    }

    fn report(ssrc: u32, media: u32, option: Option<u32>) -> Vec<u8> {
        let rr = ReceiverReport::builder(ssrc)
            .add_report_block(ReportBlock::builder(media).fraction_lost(10));
        let mut v = vec![0u8; rr.calculate_size().unwrap()];
        rr.write_into(&mut v).unwrap();
        if let Some(o) = option {
            write_vote(&mut v, ssrc, 3, o).unwrap();
        }
        v
    }

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    #[test]
    fn two_level_tree_of_nodes() {
        let now = t0();
        let media = 0xabcd;
        let root_addr = addr(9000);
        let mut root = FtNode::new(FtConfig::new(1, media, 1e6), None, now, 1);
        let mut leaf = FtNode::new(FtConfig::new(2, media, 1e6), Some(root_addr), now, 2);
        // 5 viewers report to the leaf and vote; each gets a group-size RSI at once.
        for v in 0..5u32 {
            leaf.handle(
                now,
                0,
                addr(7000 + v as u16),
                &report(100 + v, media, Some(v % 2)),
            )
            .unwrap();
        }
        let mut answers = 0;
        while let Some(t) = leaf.poll_transmit() {
            let rsi = Rsi::decode(&t.payload).unwrap();
            let p = viewer_interval_params(&rsi, 1e6, 5.0);
            assert!(p.members >= 2);
            answers += 1;
        }
        assert_eq!(answers, 5);
        // A vote repeated (same viewer, same address) does not double.
        leaf.handle(now, 0, addr(7000), &report(100, media, Some(0)))
            .unwrap();
        assert!(
            leaf.poll_transmit().is_none(),
            "known reporter: no new answer"
        );
        // The leaf's summary goes up at once; the root answers with the group size.
        assert_eq!(leaf.poll_timeout(), Some(now));
        leaf.handle_timeout(now, 0).unwrap();
        let up = leaf.poll_transmit().unwrap();
        assert_eq!(up.dest, root_addr);
        let h = root.handle(now, 0, addr(9100), &up.payload).unwrap();
        assert_eq!(h.child_summaries, 1);
        let s = root.summary();
        assert_eq!(s.group_size, 5);
        assert_eq!(s.votes.get(3, 0), 3);
        assert_eq!(s.votes.get(3, 1), 2);
        // The same summary again replaces, never adds.
        root.handle(now, 0, addr(9100), &up.payload).unwrap();
        assert_eq!(root.summary().votes.get(3, 0), 3);
        let down = root.poll_transmit().unwrap();
        assert_eq!(down.dest, addr(9100));
        let h = leaf.handle(now, 0, root_addr, &down.payload).unwrap();
        assert_eq!(h.parent_rsi, 1);
        assert_eq!(leaf.ft().parent_info().unwrap().group_size, 2);
        // Next summary within the A.7 interval among 2 (>= 1 s minimum, randomised).
        let next = leaf.poll_timeout().unwrap();
        assert!(
            next > now && next <= now + Duration::from_secs(5),
            "{next:?}"
        );
        // Garbage is an error, never a panic.
        assert!(root.handle(now, 0, addr(1), &[0x80, 0xc9, 0, 9]).is_err());
    }

    #[test]
    fn with_a_child_list_only_listed_children_summaries_count() {
        let now = t0();
        let media = 0xabcd;
        let mut root = FtNode::new(FtConfig::new(1, media, 1e6), None, now, 1);
        root.set_children(Some(BTreeSet::from([addr(9100)])));
        let mut leaf = FtNode::new(FtConfig::new(2, media, 1e6), Some(addr(9000)), now, 2);
        for v in 0..4u32 {
            leaf.handle(
                now,
                0,
                addr(7000 + v as u16),
                &report(100 + v, media, Some(1)),
            )
            .unwrap();
        }
        while leaf.poll_transmit().is_some() {}
        leaf.handle_timeout(now, 0).unwrap();
        let up = leaf.poll_transmit().unwrap().payload;
        // The same summary from a stranger: dropped, counted, unanswered.
        assert_eq!(
            root.handle(now, 0, addr(9200), &up).unwrap(),
            Handled::default()
        );
        assert_eq!(root.refused_summaries(), 1);
        assert_eq!(root.summary().votes.get(3, 1), 0);
        assert!(root.poll_transmit().is_none());
        // From the listed child: merged.
        assert_eq!(
            root.handle(now, 0, addr(9100), &up)
                .unwrap()
                .child_summaries,
            1
        );
        assert_eq!(root.summary().votes.get(3, 1), 4);
        // Viewers' own reports and votes still come from anyone.
        let h = root
            .handle(now, 0, addr(7100), &report(200, media, Some(0)))
            .unwrap();
        assert_eq!((h.reports, h.votes), (1, 1));
        assert_eq!(root.refused_summaries(), 1);
    }
}
