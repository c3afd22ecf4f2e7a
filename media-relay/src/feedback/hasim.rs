//! `media-relay ha-sim`: hierarchical RTCP aggregation at audience scale, in-process, under a
//! virtual clock (no sockets, no real time), against the flat RFC 3550 interval.
//!
//! How it fits: it builds a tree of real [`FeedbackTarget`]s (leaf FTs serve viewers, inner FTs
//! have `fanout` children, the top ones report to the channel's source, itself an FT) and moves
//! real RTCP datagrams between them: viewers' RR + SDES (+ APP vote) compounds go to their leaf
//! FT's [`FeedbackTarget::handle_rtcp`]; every FT sends [`FeedbackTarget::upstream_packet`] (RSI +
//! APP tally) to its parent on its own A.7 interval; every FT sends
//! [`FeedbackTarget::downstream_rsi`] to its reporters, who take their group size and RTCP
//! bandwidth from it ([`viewer_interval_params`], [`FeedbackTarget::on_parent_rsi`]).
//!
//! What is simulated rather than real (the statistical leaf): a leaf FT's audience of `m`
//! viewers is represented by at most `cohort` viewer states, each standing for `m / cohort`
//! viewers with the same reports (a weight in the FT, see
//! [`FeedbackTarget::add_weighted_viewer`]); the RTCP bytes of a cohort report count `weight`
//! times. The FT code path (RTCP parse, per-viewer state, histograms, RSI encode, parent decode
//! and merge) is the real one; the cost is independent of the audience size. For freshness, a
//! leaf's oldest viewer report is taken as the older of its cohort's oldest report and the
//! longest interval any viewer can draw (`1.5 Td / (e - 3/2)`), the worst case over `m` timers.
//! Loss, jitter and RTT values are drawn from simple distributions (seeded).
//!
//! Metrics. `freshness_s`: the largest age, over the measurement window, of the newest complete
//! summary at the source, where a summary's age is now minus the time of the oldest viewer report
//! it contains and "complete" means every viewer has reported into it. `rtcp_share`: over every
//! node (source and FTs), the largest RTCP rate it exchanges with its reporters (reports in,
//! group-size RSIs out) divided by the session bandwidth. The group-size RSIs downwards ride at
//! the senders' quarter of the RTCP share: each FT sends them to its `r` reporters every
//! `max(5 s, r * size / (25 % of 5 % of the session))`. `flat_rfc3550_interval_s`: the mean A.7
//! interval of one receiver when all viewers share one RFC 3550 group.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use plotters::prelude::*;
use rand::{Rng, RngCore};
use rtcp_types::{
    Compound, ReceiverReport, ReportBlock, RtcpPacketWriter, RtcpPacketWriterExt, Sdes, SdesChunk,
    SdesItem,
};
use serde::Serialize;

use crate::feedback::aggregate::{
    self, viewer_interval_params, FeedbackError, FeedbackTarget, FtConfig, UDP_IPV4_OVERHEAD,
    VOTE_APP_NAME, VOTE_SUBTYPE_CAST,
};
use crate::feedback::interval::{self, IntervalParams};
use crate::rsi::{Rsi, RsiError};

/// SSRC of the media the summaries are about.
const MEDIA_SSRC: u32 = 0x5eed_0001;
/// The poll viewers vote in.
const POLL: u32 = 1;
/// Options of that poll.
const OPTIONS: u32 = 4;

/// Parameters of one run.
#[derive(Debug, Clone)]
pub struct HaSimConfig {
    /// Audience size.
    pub viewers: u64,
    /// Children per inner FT (and top FTs per source).
    pub fanout: usize,
    /// Session (stream) bandwidth, kbit/s.
    pub bandwidth_kbps: f64,
    /// Seed of every random draw.
    pub seed: u64,
    /// Viewers per leaf FT; `None`: as many as fit the receivers' share at the 5 s minimum.
    pub viewers_per_leaf: Option<u64>,
    /// Viewer states simulated per leaf FT.
    pub cohort: u64,
    /// Virtual seconds before measuring.
    pub warmup_s: f64,
    /// Virtual seconds measured.
    pub window_s: f64,
    /// Minimum interval of FT-to-parent summaries, seconds.
    pub ft_min_interval_s: f64,
}

impl HaSimConfig {
    /// Defaults for an audience on a session.
    pub fn new(viewers: u64, fanout: usize, bandwidth_kbps: f64, seed: u64) -> HaSimConfig {
        HaSimConfig {
            viewers,
            fanout,
            bandwidth_kbps,
            seed,
            viewers_per_leaf: None,
            cohort: 4,
            warmup_s: 15.0,
            window_s: 15.0,
            ft_min_interval_s: 1.0,
        }
    }
}

/// The JSON `ha-sim` prints.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HaSimReport {
    /// Audience size.
    pub viewers: u64,
    /// FT levels between viewers and the source.
    pub depth: u32,
    /// FTs in the tree.
    pub feedback_targets: u64,
    /// Children per inner FT.
    pub fanout: usize,
    /// Viewers per leaf FT.
    pub viewers_per_leaf: u64,
    /// Session bandwidth, kbit/s.
    pub bandwidth_kbps: f64,
    /// Seed.
    pub seed: u64,
    /// Largest age of the newest complete summary at the source, seconds.
    pub freshness_s: f64,
    /// Mean age of the newest complete summary at the source right after each update, seconds.
    pub freshness_mean_s: f64,
    /// Largest RTCP share of the session bandwidth at any node.
    pub rtcp_share: f64,
    /// RTCP share at the source.
    pub rtcp_share_source: f64,
    /// Mean interval of a viewer's reports, seconds.
    pub viewer_interval_s: f64,
    /// Mean interval of the top FTs' summaries to the source, seconds.
    pub ft_interval_s: f64,
    /// Mean RFC 3550 interval of one receiver if all viewers shared one group, seconds.
    pub flat_rfc3550_interval_s: f64,
    /// Freshness of that flat group at the source: the longest interval a receiver can draw,
    /// `1.5 Td / (e - 3/2)`, so the oldest report in a complete view, seconds.
    pub flat_rfc3550_freshness_s: f64,
    /// A viewer's RR + SDES compound, octets with UDP/IPv4 headers.
    pub viewer_report_bytes: u64,
    /// A summary (RSI + APP tally) at the source, octets with UDP/IPv4 headers.
    pub summary_bytes: u64,
    /// Group size the source's summary reports.
    pub group_size_at_source: u64,
    /// Votes cast by viewers.
    pub votes_cast: u64,
    /// Votes in the source's tally.
    pub votes_at_source: u64,
    /// Datagrams moved in the simulation.
    pub datagrams: u64,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum HaSimError {
    /// Parameters out of range.
    #[error("bad parameters: {0}")]
    Params(&'static str),
    /// An FT refused a datagram (a bug).
    #[error(transparent)]
    Feedback(#[from] FeedbackError),
    /// RSI codec error (a bug).
    #[error(transparent)]
    Rsi(#[from] RsiError),
    /// RTCP write error (a bug).
    #[error("RTCP write: {0}")]
    Write(#[from] rtcp_types::RtcpWriteError),
    /// Plot failed.
    #[error("plot: {0}")]
    Plot(String),
}

#[derive(Debug)]
struct Cohort {
    ssrc: u32,
    weight: u64,
    last_report: Option<f64>,
    /// Time of the last transmission (or of joining), for timer reconsideration.
    tp: f64,
    voted: bool,
    /// Octets and count of its reports.
    sent: (f64, u64),
    rtt_ms: f64,
}

#[derive(Debug)]
struct Node {
    ft: FeedbackTarget,
    /// Parent node index; `None` for the source.
    parent: Option<usize>,
    children: Vec<usize>,
    /// (complete, oldest report time) of each child's latest summary, by position in `children`.
    child_meta: Vec<Option<f64>>,
    cohort: Vec<Cohort>,
    /// The interval parameters this node's viewers use (from its last downstream RSI).
    viewer_params: Option<IntervalParams>,
    /// RTCP octets exchanged with reporters during the window.
    window_bytes: f64,
    intervals: (f64, u64),
    /// Time of the last upward transmission, for timer reconsideration.
    tp: f64,
    /// Rate of the group-size RSIs to reporters, octets/s (reporters x size / period).
    down_rate: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Viewer { node: usize, idx: usize },
    Up { node: usize },
    Down { node: usize },
}

/// A distinct documentation-range address per simulated sender.
fn sim_addr(i: usize) -> std::net::SocketAddr {
    let ip = std::net::Ipv4Addr::from(0xc633_6400 | (i as u32 & 0xff)); // 198.51.100.x
    std::net::SocketAddr::from((ip, 20_000 + (i >> 8) as u16))
}

fn ntp_at(t: f64) -> u64 {
    // An arbitrary NTP epoch offset; only differences matter.
    let secs = 3_900_000_000.0 + t;
    (secs * 4_294_967_296.0) as u64
}

fn us(t: f64) -> u64 {
    (t * 1e6).round() as u64
}

/// Octets of a viewer's RR + SDES(CNAME) compound with UDP/IPv4, as the simulation sends it.
pub fn viewer_report_bytes() -> usize {
    viewer_compound(0x1234_5678, 0, 0, 0, 0, 0, None)
        .map(|v| v.len())
        .unwrap_or(0)
        + UDP_IPV4_OVERHEAD
}

fn viewer_compound(
    ssrc: u32,
    fraction_lost: u8,
    cumulative_lost: u32,
    jitter: u32,
    lsr: u32,
    dlsr: u32,
    vote: Option<u32>,
) -> Result<Vec<u8>, rtcp_types::RtcpWriteError> {
    let rr = ReceiverReport::builder(ssrc).add_report_block(
        ReportBlock::builder(MEDIA_SSRC)
            .fraction_lost(fraction_lost)
            .cumulative_lost(cumulative_lost)
            .interarrival_jitter(jitter)
            .last_sender_report_timestamp(lsr)
            .delay_since_last_sender_report_timestamp(dlsr),
    );
    let cname = format!("v{ssrc:08x}@iptv.example");
    let sdes =
        Sdes::builder().add_chunk(SdesChunk::builder(ssrc).add_item(SdesItem::builder(1, &cname)));
    let data = vote.map(|o| aggregate::vote_app_data(POLL, o));
    let mut c = Compound::builder().add_packet(rr).add_packet(sdes);
    if let Some(d) = &data {
        c = c.add_packet(
            rtcp_types::App::builder(ssrc, VOTE_APP_NAME)
                .subtype(VOTE_SUBTYPE_CAST)
                .data(d),
        );
    }
    let size = c.calculate_size()?;
    let mut out = vec![0u8; size];
    c.write_into(&mut out)?;
    Ok(out)
}

/// Mean RFC 3550 interval of one receiver among `viewers` on a session of `bandwidth_kbps`.
pub fn flat_rfc3550_interval_s(viewers: u64, bandwidth_kbps: f64) -> f64 {
    let p = IntervalParams::receiver(
        viewers + 1,
        bandwidth_kbps * 1000.0,
        viewer_report_bytes() as f64,
    );
    interval::mean_interval_s(&p)
}

/// Freshness of a flat RFC 3550 group at the source: the oldest report in a complete view is
/// as old as the longest interval a receiver can draw, `1.5 Td / (e - 3/2)`.
pub fn flat_rfc3550_freshness_s(viewers: u64, bandwidth_kbps: f64) -> f64 {
    let p = IntervalParams::receiver(
        viewers + 1,
        bandwidth_kbps * 1000.0,
        viewer_report_bytes() as f64,
    );
    1.5 * interval::deterministic_interval_s(&p) / interval::COMPENSATION
}

/// Run one simulation. `start` is only the origin of the virtual clock.
pub fn run(cfg: &HaSimConfig, start: Instant) -> Result<HaSimReport, HaSimError> {
    if cfg.viewers == 0 || cfg.fanout < 2 || cfg.bandwidth_kbps <= 0.0 || cfg.cohort == 0 {
        return Err(HaSimError::Params(
            "need viewers >= 1, fanout >= 2, bandwidth > 0, cohort >= 1",
        ));
    }
    if cfg.viewers > 1_000_000_000 {
        return Err(HaSimError::Params("at most 10^9 viewers"));
    }
    let session_bps = cfg.bandwidth_kbps * 1000.0;
    let rtcp_bw = interval::rtcp_bandwidth_bytes_per_s(session_bps);
    let vr_bytes = viewer_report_bytes() as f64;
    // With timer reconsideration the mean interval is about Td, so the receivers' share at
    // the 5 s minimum holds this many viewers.
    let per_leaf = cfg
        .viewers_per_leaf
        .unwrap_or_else(|| {
            (interval::RECEIVER_BW_FRACTION * rtcp_bw * interval::RTCP_MIN_TIME_S / vr_bytes)
                .floor() as u64
        })
        .clamp(1, cfg.viewers);
    let mut rng = SimRng::new(cfg.seed);
    let at = |t: f64| start + Duration::from_secs_f64(t);

    // Build the tree bottom-up: leaves, then levels of `fanout`, until it fits the source.
    let mut nodes: Vec<Node> = Vec::new();
    let new_node = |ssrc: u32| Node {
        ft: FeedbackTarget::new(FtConfig {
            ft_min_interval_s: cfg.ft_min_interval_s,
            ..FtConfig::new(ssrc, MEDIA_SSRC, session_bps)
        }),
        parent: None,
        children: Vec::new(),
        child_meta: Vec::new(),
        cohort: Vec::new(),
        viewer_params: None,
        window_bytes: 0.0,
        intervals: (0.0, 0),
        tp: 0.0,
        down_rate: 0.0,
    };
    let leaves = cfg.viewers.div_ceil(per_leaf);
    let mut level: Vec<usize> = Vec::new();
    let mut next_ssrc: u32 = 0x1000_0000;
    for i in 0..leaves {
        // Spread viewers evenly over leaves.
        let m = cfg.viewers / leaves + u64::from(i < cfg.viewers % leaves);
        let mut n = new_node(next_ssrc);
        next_ssrc += 1;
        let k = cfg.cohort.min(m);
        for j in 0..k {
            let weight = m / k + u64::from(j < m % k);
            let ssrc = rng.gen::<u32>() | 1;
            n.ft.add_weighted_viewer(ssrc, weight, at(0.0));
            n.cohort.push(Cohort {
                ssrc,
                weight,
                last_report: None,
                tp: 0.0,
                voted: false,
                sent: (0.0, 0),
                rtt_ms: rng.gen_range(10.0..120.0),
            });
        }
        nodes.push(n);
        level.push(nodes.len() - 1);
    }
    let mut depth = 1u32;
    while level.len() > cfg.fanout {
        let mut up = Vec::new();
        for group in level.chunks(cfg.fanout) {
            nodes.push(new_node(next_ssrc));
            next_ssrc += 1;
            let p = nodes.len() - 1;
            for &c in group {
                nodes[c].parent = Some(p);
            }
            nodes[p].children = group.to_vec();
            up.push(p);
        }
        level = up;
        depth += 1;
    }
    nodes.push(new_node(0x5eed_0000));
    let source = nodes.len() - 1;
    for &c in &level {
        nodes[c].parent = Some(source);
    }
    nodes[source].children = level;
    for p in 0..nodes.len() {
        let children = nodes[p].children.clone();
        nodes[p].child_meta = vec![None; children.len()];
        for &c in &children {
            let cs = nodes[c].ft.config().ssrc;
            nodes[p].ft.add_child(cs, at(0.0));
            let ps = nodes[p].ft.config().ssrc;
            nodes[c].ft.set_parent(ps);
        }
    }

    // Schedule: every node sends a downstream RSI at once, every FT an upward summary soon.
    let mut q: BinaryHeap<Reverse<(u64, u64, Ev)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |q: &mut BinaryHeap<Reverse<(u64, u64, Ev)>>, t: f64, ev: Ev| {
        seq += 1;
        q.push(Reverse((us(t), seq, ev)));
    };
    for i in 0..nodes.len() {
        push(&mut q, 0.0, Ev::Down { node: i });
        if i != source {
            let t = rng.gen_range(0.0..cfg.ft_min_interval_s);
            push(&mut q, t, Ev::Up { node: i });
        }
    }

    let end = cfg.warmup_s + cfg.window_s;
    let in_window = |t: f64| t >= cfg.warmup_s && t < end;
    let mut freshness_max: f64 = 0.0;
    let mut fresh_sum = 0.0;
    let mut fresh_n = 0u64;
    let mut source_oldest: Option<f64> = None;
    let mut datagrams = 0u64;
    let mut viewer_int = (0.0, 0u64);
    let mut summary_bytes = 0usize;
    let max_viewer_gap =
        |p: &IntervalParams| 1.5 * interval::deterministic_interval_s(p) / interval::COMPENSATION;

    while let Some(Reverse((t_us, _, ev))) = q.pop() {
        let t = t_us as f64 / 1e6;
        if t >= end {
            break;
        }
        let now = at(t);
        let ntp = ntp_at(t);
        match ev {
            Ev::Down { node } => {
                let rsi = nodes[node].ft.downstream_rsi(ntp);
                let bytes = rsi.to_vec()?;
                let decoded = Rsi::decode(&bytes)?;
                let reporters = nodes[node].ft.reporters().max(1);
                let wire = (bytes.len() + UDP_IPV4_OVERHEAD) as f64;
                datagrams += 1;
                let children = nodes[node].children.clone();
                for c in children {
                    nodes[c].ft.on_parent_rsi(&decoded);
                }
                if !nodes[node].cohort.is_empty() {
                    let p =
                        viewer_interval_params(&decoded, session_bps, interval::RTCP_MIN_TIME_S);
                    let first = nodes[node].viewer_params.is_none();
                    nodes[node].viewer_params = Some(p);
                    if first {
                        for idx in 0..nodes[node].cohort.len() {
                            // Viewers joined at random times during the last interval.
                            let dt = interval::randomized_interval_s(&p, rng.gen());
                            let joined = t - dt * rng.gen::<f64>();
                            nodes[node].cohort[idx].tp = joined;
                            push(&mut q, joined + dt, Ev::Viewer { node, idx });
                        }
                    }
                }
                // Senders' quarter of the RTCP share, unicast to every reporter.
                let sender_bw = rtcp_bw * interval::SENDER_BW_FRACTION;
                let period = (reporters as f64 * wire / sender_bw).max(interval::RTCP_MIN_TIME_S);
                // Mean `period`: these carry no reconsideration, so no compensation either.
                let dt = period * (rng.gen::<f64>() + 0.5);
                nodes[node].down_rate = reporters as f64 * wire / period;
                push(&mut q, t + dt, Ev::Down { node });
            }
            Ev::Viewer { node, idx } => {
                let Some(p) = nodes[node].viewer_params else {
                    continue;
                };
                let c = &mut nodes[node].cohort[idx];
                let fresh = interval::randomized_interval_s(&p, rng.gen());
                if let Some(due) = interval::reconsider(c.tp, t, fresh) {
                    push(&mut q, due, Ev::Viewer { node, idx });
                    continue;
                }
                if c.last_report.is_some() {
                    viewer_int.0 += t - c.tp;
                    viewer_int.1 += 1;
                }
                c.tp = t;
                let fraction_lost = if rng.gen_bool(0.8) {
                    0
                } else {
                    rng.gen_range(1..40)
                };
                let jitter = rng.gen_range(0..3000);
                let dlsr_s = rng.gen_range(0.0..1.0);
                let rtt_s = (c.rtt_ms + rng.gen_range(0.0..10.0)) / 1000.0;
                let lsr = (ntp_at(t - rtt_s - dlsr_s) >> 16) as u32;
                let dlsr = (dlsr_s * 65536.0) as u32;
                let vote = if c.voted {
                    None
                } else {
                    c.voted = true;
                    Some((idx as u32) % OPTIONS)
                };
                let bytes = viewer_compound(
                    c.ssrc,
                    fraction_lost,
                    rng.gen_range(0..100),
                    jitter,
                    lsr,
                    dlsr,
                    vote,
                )?;
                c.last_report = Some(t);
                c.sent.0 += (bytes.len() + UDP_IPV4_OVERHEAD) as f64;
                c.sent.1 += 1;
                nodes[node]
                    .ft
                    .handle_rtcp(now, sim_addr(idx), ntp, &bytes)?;
                datagrams += 1;
                let dt = interval::randomized_interval_s(&p, rng.gen());
                push(&mut q, t + dt, Ev::Viewer { node, idx });
            }
            Ev::Up { node } => {
                let Some(parent) = nodes[node].parent else {
                    continue;
                };
                let fresh = nodes[node].ft.upstream_interval_s(rng.gen());
                if let Some(due) = interval::reconsider(nodes[node].tp, t, fresh) {
                    push(&mut q, due, Ev::Up { node });
                    continue;
                }
                nodes[node].intervals.0 += t - nodes[node].tp;
                nodes[node].intervals.1 += 1;
                nodes[node].tp = t;
                // Freshness side channel: the oldest viewer report this summary contains.
                let oldest = if nodes[node].cohort.is_empty() {
                    if nodes[node].child_meta.iter().all(Option::is_some) {
                        nodes[node]
                            .child_meta
                            .iter()
                            .flatten()
                            .copied()
                            .reduce(f64::min)
                    } else {
                        None
                    }
                } else if nodes[node].cohort.iter().all(|c| c.last_report.is_some()) {
                    let cohort_min = nodes[node]
                        .cohort
                        .iter()
                        .filter_map(|c| c.last_report)
                        .fold(f64::INFINITY, f64::min);
                    let bound = nodes[node]
                        .viewer_params
                        .map(|p| t - max_viewer_gap(&p))
                        .unwrap_or(t);
                    Some(cohort_min.min(bound).max(0.0))
                } else {
                    None
                };
                let (bytes, _) = nodes[node].ft.upstream_packet(ntp)?;
                let pos = nodes[parent]
                    .children
                    .iter()
                    .position(|&c| c == node)
                    .unwrap_or(0);
                nodes[parent]
                    .ft
                    .handle_rtcp(now, sim_addr(node), ntp, &bytes)?;
                datagrams += 1;
                if in_window(t) {
                    nodes[parent].window_bytes += (bytes.len() + UDP_IPV4_OVERHEAD) as f64;
                }
                if let Some(o) = oldest {
                    nodes[parent].child_meta[pos] = Some(o);
                }
                if parent == source {
                    summary_bytes = summary_bytes.max(bytes.len() + UDP_IPV4_OVERHEAD);
                    let meta = &nodes[source].child_meta;
                    if meta.iter().all(Option::is_some) {
                        let new_oldest =
                            meta.iter().flatten().copied().fold(f64::INFINITY, f64::min);
                        if in_window(t) {
                            if let Some(prev) = source_oldest {
                                freshness_max = freshness_max.max(t - prev);
                            }
                            freshness_max = freshness_max.max(t - new_oldest);
                            fresh_sum += t - new_oldest;
                            fresh_n += 1;
                        }
                        source_oldest = Some(new_oldest);
                    }
                }
                let dt = nodes[node].ft.upstream_interval_s(rng.gen());
                push(&mut q, t + dt, Ev::Up { node });
            }
        }
    }
    if fresh_n == 0 {
        return Err(HaSimError::Params(
            "no complete summary reached the source: lengthen warm-up/window",
        ));
    }
    let session_bytes_per_s = session_bps / 8.0;
    // A cohort member's reports count at their mean rate (weight x mean size / the mean viewer
    // interval of the run), and the group-size RSIs at reporters x size / period: counting the
    // few cohort reports inside the window would add sampling noise that an audience of
    // independent viewers does not have. FT summaries are counted as sent in the window.
    let mean_viewer_interval = viewer_int.0 / viewer_int.1.max(1) as f64;
    let share = |n: &Node| {
        let viewers: f64 = n
            .cohort
            .iter()
            .filter(|c| c.sent.1 > 0)
            .map(|c| c.weight as f64 * (c.sent.0 / c.sent.1 as f64) / mean_viewer_interval)
            .sum();
        (n.window_bytes / cfg.window_s + viewers + n.down_rate) / session_bytes_per_s
    };
    let rtcp_share = nodes.iter().map(share).fold(0.0, f64::max);
    let top = &nodes[source].children;
    let (s, n) = top.iter().fold((0.0, 0u64), |(s, n), &c| {
        (s + nodes[c].intervals.0, n + nodes[c].intervals.1)
    });
    let at_source = nodes[source].ft.summary();
    let votes_cast = cfg.viewers;
    let votes_at_source = at_source
        .votes
        .iter()
        .filter(|((poll, _), _)| *poll != aggregate::VOTERS_POLL)
        .map(|(_, n)| n)
        .sum();
    Ok(HaSimReport {
        viewers: cfg.viewers,
        depth,
        feedback_targets: (nodes.len() - 1) as u64,
        fanout: cfg.fanout,
        viewers_per_leaf: per_leaf,
        bandwidth_kbps: cfg.bandwidth_kbps,
        seed: cfg.seed,
        freshness_s: round3(freshness_max),
        freshness_mean_s: round3(fresh_sum / fresh_n as f64),
        rtcp_share: round5(rtcp_share),
        rtcp_share_source: round5(share(&nodes[source])),
        viewer_interval_s: round3(viewer_int.0 / viewer_int.1.max(1) as f64),
        ft_interval_s: round3(s / n.max(1) as f64),
        flat_rfc3550_interval_s: round3(flat_rfc3550_interval_s(cfg.viewers, cfg.bandwidth_kbps)),
        flat_rfc3550_freshness_s: round3(flat_rfc3550_freshness_s(cfg.viewers, cfg.bandwidth_kbps)),
        viewer_report_bytes: vr_bytes as u64,
        summary_bytes: summary_bytes as u64,
        group_size_at_source: at_source.group_size,
        votes_cast,
        votes_at_source,
        datagrams,
    })
}

/// The simulations' random source: SplitMix64 (Steele, Lea & Flood 2014), small and fast even
/// in debug builds, deterministic for a seed.
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    /// A generator for a seed.
    pub fn new(seed: u64) -> SimRng {
        SimRng(seed ^ 0x5851_f42d_4c95_7f2d)
    }
}

impl RngCore for SimRng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn round5(x: f64) -> f64 {
    (x * 100_000.0).round() / 100_000.0
}

/// One point of a sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepPoint {
    /// Audience.
    pub viewers: u64,
    /// Hierarchical freshness, seconds.
    pub freshness_s: f64,
    /// Hierarchical RTCP share.
    pub rtcp_share: f64,
    /// Tree depth.
    pub depth: u32,
    /// Flat RFC 3550 interval, seconds.
    pub flat_rfc3550_interval_s: f64,
    /// Flat RFC 3550 freshness, seconds.
    pub flat_rfc3550_freshness_s: f64,
    /// Mean age of the newest complete summary at the source, seconds.
    pub freshness_mean_s: f64,
    /// FTs in the tree.
    pub feedback_targets: u64,
    /// Mean interval of a viewer's reports, seconds.
    pub viewer_interval_s: f64,
    /// Summary size at the source, octets with UDP/IPv4.
    pub summary_bytes: u64,
    /// Votes cast and votes in the source's tally (equal when nothing is lost).
    pub votes_cast: u64,
    /// Votes in the source's tally.
    pub votes_at_source: u64,
}

impl From<&HaSimReport> for SweepPoint {
    fn from(r: &HaSimReport) -> SweepPoint {
        SweepPoint {
            viewers: r.viewers,
            freshness_s: r.freshness_s,
            rtcp_share: r.rtcp_share,
            depth: r.depth,
            flat_rfc3550_interval_s: r.flat_rfc3550_interval_s,
            flat_rfc3550_freshness_s: r.flat_rfc3550_freshness_s,
            freshness_mean_s: r.freshness_mean_s,
            feedback_targets: r.feedback_targets,
            viewer_interval_s: r.viewer_interval_s,
            summary_bytes: r.summary_bytes,
            votes_cast: r.votes_cast,
            votes_at_source: r.votes_at_source,
        }
    }
}

/// Audiences of a sweep: 10^2 .. 10^6 in steps of about half a decade.
pub const SWEEP_VIEWERS: [u64; 9] = [
    100, 316, 1_000, 3_162, 10_000, 31_623, 100_000, 316_228, 1_000_000,
];

/// Run `base` at each audience of [`SWEEP_VIEWERS`].
pub fn sweep(base: &HaSimConfig, start: Instant) -> Result<Vec<SweepPoint>, HaSimError> {
    SWEEP_VIEWERS
        .iter()
        .map(|&v| {
            let r = run(
                &HaSimConfig {
                    viewers: v,
                    ..base.clone()
                },
                start,
            )?;
            Ok(SweepPoint::from(&r))
        })
        .collect()
}

/// An SVG plot of freshness against audience (log-log) for the hierarchy and flat RFC 3550.
pub fn plot_svg(points: &[SweepPoint], bandwidth_kbps: f64) -> Result<String, HaSimError> {
    let err = |e: &dyn std::fmt::Display| HaSimError::Plot(e.to_string());
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (720, 440)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let lx = |v: u64| (v.max(1) as f64).log10();
        let ly = |s: f64| s.max(0.1).log10();
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("RTCP feedback freshness vs audience ({bandwidth_kbps} kbit/s session)"),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(2.0..6.0, 0.0..5.0)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("viewers")
            .y_desc("seconds")
            .x_label_formatter(&|x| format!("1e{x:.0}"))
            .y_label_formatter(&|y| {
                let v = 10f64.powf(*y);
                if v >= 1.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.1}")
                }
            })
            .x_labels(5)
            .y_labels(6)
            .draw()
            .map_err(|e| err(&e))?;
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|p| (lx(p.viewers), ly(p.freshness_s))),
                BLUE.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label("hierarchical (RFC 5760 FT tree): freshness at source")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        chart
            .draw_series(LineSeries::new(
                points
                    .iter()
                    .map(|p| (lx(p.viewers), ly(p.flat_rfc3550_freshness_s))),
                RED.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label("flat RFC 3550: freshness (longest report interval)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        chart
            .draw_series(LineSeries::new(
                [(2.0, ly(20.0)), (6.0, ly(20.0))],
                BLACK.mix(0.4),
            ))
            .map_err(|e| err(&e))?
            .label("20 s target")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.4)));
        chart
            .draw_series(
                points
                    .iter()
                    .map(|p| Circle::new((lx(p.viewers), ly(p.freshness_s)), 3, BLUE.filled())),
            )
            .map_err(|e| err(&e))?;
        chart
            .draw_series(points.iter().map(|p| {
                Circle::new(
                    (lx(p.viewers), ly(p.flat_rfc3550_freshness_s)),
                    3,
                    RED.filled(),
                )
            }))
            .map_err(|e| err(&e))?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(buf)
}
