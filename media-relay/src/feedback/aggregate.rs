//! The sans-IO feedback target (FT) of RFC 5760: takes viewers' receiver reports and votes and
//! child FTs' summaries, and produces one summary (an RSI packet plus an APP vote tally) whose
//! size does not grow with the number of viewers below it.
//!
//! How it fits: a relay (or a pure FT process) feeds every RTCP datagram from its viewers and
//! child FTs to [`FeedbackTarget::handle_rtcp`] with the arrival time; on its own RTCP timer
//! (interval from [`FeedbackTarget::upstream_interval_s`]) it sends
//! [`FeedbackTarget::upstream_packet`] to its parent FT or to the channel's source, and
//! [`FeedbackTarget::downstream_rsi`] to its reporters, which tells them their group size and
//! RTCP bandwidth (RFC 5760 section 7.1, SRBT 11 and 12) so their RFC 3550 intervals fit the
//! share of this FT alone. [`FeedbackTarget::handle_rtcp`] takes the same RSI from the parent.
//!
//! This is the distribution source feedback summary model of RFC 5760 section 6.2 applied at
//! every level of a tree: each FT summarises, none reflects individual reports. [`Model::Simple`]
//! sends only the group and average packet size (what reporters need for their intervals)
//! without distributions; reflecting every receiver report upwards, as the simple feedback
//! model of section 6.1 does, is not implemented: its volume grows with the audience.
//!
//! Votes: a viewer sends an APP packet (RFC 3550 section 6.7) named `VOTE`, subtype 0, data
//! `poll id (u32) | option (u32)`. A viewer's latest vote per poll counts. Tallies travel up as
//! APP `VOTE` subtype 1, data `(poll u32, option u32, count u32)*`, bounded by
//! [`MAX_TALLY_ENTRIES`]: the size depends on polls and options, never on viewers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtcp_types::{
    App, Compound, Packet, RtcpPacketParserExt, RtcpPacketWriter, RtcpPacketWriterExt,
};

use crate::feedback::interval::{self, IntervalParams};
use crate::rsi::{Distribution, Rsi, RsiError, Srbt, SubReport, RSI};

/// APP packet name carrying votes and tallies.
pub const VOTE_APP_NAME: &str = "VOTE";
/// APP subtype of a single vote from a viewer.
pub const VOTE_SUBTYPE_CAST: u8 = 0;
/// APP subtype of a tally from an FT.
pub const VOTE_SUBTYPE_TALLY: u8 = 1;
/// Most `(poll, option)` entries a tally carries (12 octets each).
pub const MAX_TALLY_ENTRIES: usize = 256;
/// A pseudo-poll in tallies between relays: its option 0 counts the voters below the FT
/// (viewers that voted in some poll), so the source knows voters as well as votes. Viewers'
/// votes for this poll id are ignored.
pub const VOTERS_POLL: u32 = u32::MAX;
/// Most colliding SSRCs a summary carries (RFC 5760 Collisions sub-report).
pub const MAX_COLLISIONS: usize = 32;

/// Why a datagram given to the FT was refused.
#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    /// Not a valid compound RTCP packet.
    #[error("malformed RTCP: {0}")]
    Rtcp(#[from] rtcp_types::RtcpParseError),
    /// An RSI packet in the compound was malformed.
    #[error("malformed RSI: {0}")]
    Rsi(#[from] RsiError),
    /// An APP `VOTE` packet with a body of the wrong size.
    #[error("malformed vote APP packet")]
    BadVote,
    /// A packet we built could not be written (a bug, reported instead of panicking).
    #[error("cannot write RTCP: {0}")]
    Write(#[from] rtcp_types::RtcpWriteError),
}

/// Fixed bins of one metric: `buckets` equal bins over `[min, max)`, values at or above `max`
/// in the last bin. Fixed bins make merging children's histograms exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binning {
    /// Lowest value.
    pub min: u32,
    /// End of the last bin.
    pub max: u32,
    /// Number of bins.
    pub buckets: u16,
}

/// Fraction lost in 1/256 (as in an RR).
pub const LOSS_BINS: Binning = Binning {
    min: 0,
    max: 256,
    buckets: 16,
};
/// Interarrival jitter in 90 kHz timestamp units, up to 200 ms.
pub const JITTER_BINS: Binning = Binning {
    min: 0,
    max: 18_000,
    buckets: 16,
};
/// Round-trip time in milliseconds, up to 800 ms.
pub const RTT_BINS: Binning = Binning {
    min: 0,
    max: 800,
    buckets: 16,
};
/// Cumulative packets lost, up to 8192.
pub const CUM_LOSS_BINS: Binning = Binning {
    min: 0,
    max: 8192,
    buckets: 16,
};

/// A histogram over a [`Binning`]; its size is the number of bins, whatever the count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    bins: Binning,
    counts: Vec<u64>,
}

impl Histogram {
    /// An empty histogram.
    pub fn new(bins: Binning) -> Histogram {
        Histogram {
            bins,
            counts: vec![0; usize::from(bins.buckets.max(1))],
        }
    }

    fn width(&self) -> f64 {
        f64::from(self.bins.max.saturating_sub(self.bins.min).max(1)) / self.counts.len() as f64
    }

    /// Add `weight` observations of `value`.
    pub fn add(&mut self, value: u32, weight: u64) {
        let off = f64::from(value.saturating_sub(self.bins.min));
        let i = ((off / self.width()) as usize).min(self.counts.len() - 1);
        self.counts[i] += weight;
    }

    /// Add another histogram; bins that differ are re-binned by their centres.
    pub fn merge(&mut self, other: &Histogram) {
        if other.bins == self.bins {
            for (a, b) in self.counts.iter_mut().zip(&other.counts) {
                *a += b;
            }
        } else {
            let w = other.width();
            for (i, &c) in other.counts.iter().enumerate() {
                let centre = f64::from(other.bins.min) + (i as f64 + 0.5) * w;
                self.add(centre as u32, c);
            }
        }
    }

    /// Observations counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Counts per bin.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// The bins.
    pub fn binning(&self) -> Binning {
        self.bins
    }

    /// The centre of the bin holding the median, if any observation.
    pub fn median(&self) -> Option<u32> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen * 2 >= total {
                return Some((f64::from(self.bins.min) + (i as f64 + 0.5) * self.width()) as u32);
            }
        }
        None
    }

    /// The RSI distribution block of this histogram (counts above `u32::MAX` saturate).
    pub fn to_distribution(&self) -> Distribution {
        let buckets = self
            .counts
            .iter()
            .map(|&c| u32::try_from(c).unwrap_or(u32::MAX))
            .collect();
        Distribution::new(0, self.bins.min, self.bins.max, buckets)
    }

    /// A histogram over `bins` from an RSI distribution block (re-binned if its range differs).
    pub fn from_distribution(d: &Distribution, bins: Binning) -> Histogram {
        let scale = f64::from(1u32 << d.mf.min(15));
        let theirs = Histogram {
            bins: Binning {
                min: (f64::from(d.min) / scale) as u32,
                max: (f64::from(d.max) / scale) as u32,
                buckets: d.buckets.len().min(usize::from(u16::MAX)) as u16,
            },
            counts: d.buckets.iter().map(|&c| u64::from(c)).collect(),
        };
        let mut h = Histogram::new(bins);
        h.merge(&theirs);
        h
    }
}

/// Counts per `(poll, option)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VoteTally {
    counts: BTreeMap<(u32, u32), u64>,
    /// Entries dropped because the tally was full.
    pub dropped: u64,
}

impl VoteTally {
    /// Add `n` votes for `(poll, option)`.
    pub fn add(&mut self, poll: u32, option: u32, n: u64) {
        if n == 0 {
            return;
        }
        if let Some(c) = self.counts.get_mut(&(poll, option)) {
            *c += n;
        } else if self.counts.len() < MAX_TALLY_ENTRIES {
            self.counts.insert((poll, option), n);
        } else {
            self.dropped += n;
        }
    }

    /// Add every count of another tally.
    pub fn merge(&mut self, other: &VoteTally) {
        for (&(p, o), &n) in &other.counts {
            self.add(p, o, n);
        }
        self.dropped += other.dropped;
    }

    /// Votes for `(poll, option)`.
    pub fn get(&self, poll: u32, option: u32) -> u64 {
        self.counts.get(&(poll, option)).copied().unwrap_or(0)
    }

    /// All `(poll, option) -> count` entries.
    pub fn iter(&self) -> impl Iterator<Item = ((u32, u32), u64)> + '_ {
        self.counts.iter().map(|(&k, &v)| (k, v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// APP data of a tally (counts above `u32::MAX` saturate).
    pub fn to_app_data(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.counts.len() * 12);
        for (&(p, o), &n) in &self.counts {
            v.extend_from_slice(&p.to_be_bytes());
            v.extend_from_slice(&o.to_be_bytes());
            v.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
        }
        v
    }

    /// Parse APP data of a tally.
    pub fn from_app_data(data: &[u8]) -> Result<VoteTally, FeedbackError> {
        if data.len() % 12 != 0 {
            return Err(FeedbackError::BadVote);
        }
        let mut t = VoteTally::default();
        for c in data.chunks_exact(12) {
            let w = |i: usize| u32::from_be_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
            t.add(w(0), w(4), u64::from(w(8)));
        }
        Ok(t)
    }
}

/// The APP data of one vote: `poll | option`.
pub fn vote_app_data(poll: u32, option: u32) -> [u8; 8] {
    let mut d = [0u8; 8];
    d[..4].copy_from_slice(&poll.to_be_bytes());
    d[4..].copy_from_slice(&option.to_be_bytes());
    d
}

/// Append an APP `VOTE` packet (a viewer's vote) to `out`.
pub fn write_vote(
    out: &mut Vec<u8>,
    ssrc: u32,
    poll: u32,
    option: u32,
) -> Result<(), FeedbackError> {
    let data = vote_app_data(poll, option);
    let app = App::builder(ssrc, VOTE_APP_NAME)
        .subtype(VOTE_SUBTYPE_CAST)
        .data(&data);
    append(out, &app)
}

fn append(out: &mut Vec<u8>, p: &impl RtcpPacketWriter) -> Result<(), FeedbackError> {
    let start = out.len();
    let size = p.calculate_size()?;
    out.resize(start + size, 0);
    if let Err(e) = p.write_into(&mut out[start..]) {
        out.truncate(start);
        return Err(e.into());
    }
    Ok(())
}

/// What a subtree looks like: the content of one upward summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Receivers covered.
    pub group_size: u64,
    /// Average compound RTCP packet size of those receivers, octets.
    pub avg_rtcp_size: f64,
    /// Fraction lost.
    pub loss: Histogram,
    /// Interarrival jitter.
    pub jitter: Histogram,
    /// Round-trip time.
    pub rtt: Histogram,
    /// Cumulative loss.
    pub cumulative_loss: Histogram,
    /// Highest cumulative loss of any receiver (24 bits on the wire).
    pub highest_cumulative_lost: u32,
    /// Vote counts.
    pub votes: VoteTally,
    /// SSRCs seen from two transport addresses (RFC 3550 section 8.2), at most
    /// [`MAX_COLLISIONS`].
    pub collisions: BTreeSet<u32>,
}

impl Default for Summary {
    fn default() -> Self {
        Summary {
            group_size: 0,
            avg_rtcp_size: 0.0,
            loss: Histogram::new(LOSS_BINS),
            jitter: Histogram::new(JITTER_BINS),
            rtt: Histogram::new(RTT_BINS),
            cumulative_loss: Histogram::new(CUM_LOSS_BINS),
            highest_cumulative_lost: 0,
            votes: VoteTally::default(),
            collisions: BTreeSet::new(),
        }
    }
}

impl Summary {
    /// Fold another subtree's summary into this one.
    pub fn merge(&mut self, o: &Summary) {
        let n = self.group_size + o.group_size;
        if n > 0 {
            self.avg_rtcp_size = (self.avg_rtcp_size * self.group_size as f64
                + o.avg_rtcp_size * o.group_size as f64)
                / n as f64;
        }
        self.group_size = n;
        self.loss.merge(&o.loss);
        self.jitter.merge(&o.jitter);
        self.rtt.merge(&o.rtt);
        self.cumulative_loss.merge(&o.cumulative_loss);
        self.highest_cumulative_lost = self.highest_cumulative_lost.max(o.highest_cumulative_lost);
        self.votes.merge(&o.votes);
        for &c in &o.collisions {
            if self.collisions.len() < MAX_COLLISIONS {
                self.collisions.insert(c);
            }
        }
    }

    /// The RSI sub-report blocks of this summary.
    pub fn sub_reports(&self) -> Vec<SubReport> {
        let mut v = vec![
            SubReport::GroupAndAvgPacketSize {
                avg_packet_size: self.avg_rtcp_size.round().clamp(0.0, 65535.0) as u16,
                group_size: u32::try_from(self.group_size).unwrap_or(u32::MAX),
            },
            SubReport::Loss(self.loss.to_distribution()),
            SubReport::Jitter(self.jitter.to_distribution()),
            SubReport::Rtt(self.rtt.to_distribution()),
            SubReport::CumulativeLoss(self.cumulative_loss.to_distribution()),
            SubReport::GeneralStats {
                median_fraction_lost: self.loss.median().unwrap_or(0).min(255) as u8,
                highest_cumulative_lost: self.highest_cumulative_lost.min(0xff_ffff),
                median_jitter: self.jitter.median().unwrap_or(0),
            },
        ];
        if !self.collisions.is_empty() {
            v.push(SubReport::Collisions(
                self.collisions.iter().copied().collect(),
            ));
        }
        v
    }

    /// Rebuild a summary from an RSI (and the tally that came with it).
    pub fn from_rsi(rsi: &Rsi, votes: VoteTally) -> Summary {
        let mut s = Summary {
            votes,
            ..Summary::default()
        };
        for r in &rsi.sub_reports {
            match r {
                SubReport::GroupAndAvgPacketSize {
                    avg_packet_size,
                    group_size,
                } => {
                    s.group_size = u64::from(*group_size);
                    s.avg_rtcp_size = f64::from(*avg_packet_size);
                }
                SubReport::Loss(d) => s.loss = Histogram::from_distribution(d, LOSS_BINS),
                SubReport::Jitter(d) => s.jitter = Histogram::from_distribution(d, JITTER_BINS),
                SubReport::Rtt(d) => s.rtt = Histogram::from_distribution(d, RTT_BINS),
                SubReport::CumulativeLoss(d) => {
                    s.cumulative_loss = Histogram::from_distribution(d, CUM_LOSS_BINS)
                }
                SubReport::GeneralStats {
                    highest_cumulative_lost,
                    ..
                } => s.highest_cumulative_lost = *highest_cumulative_lost,
                SubReport::Collisions(ssrcs) => {
                    s.collisions = ssrcs.iter().copied().take(MAX_COLLISIONS).collect()
                }
                _ => {}
            }
        }
        s
    }
}

/// One viewer's receiver report as the FT needs it (RFC 3550 section 6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewerReport {
    /// SSRC of the viewer.
    pub ssrc: u32,
    /// Fraction lost (1/256).
    pub fraction_lost: u8,
    /// Cumulative lost (24-bit signed on the wire; negative values count as 0).
    pub cumulative_lost: u32,
    /// Interarrival jitter, timestamp units.
    pub jitter: u32,
    /// Round trip from LSR/DLSR, if the viewer had an SR to answer.
    pub rtt_ms: Option<u32>,
}

/// Round-trip time from a report block (RFC 3550 section 6.4.1): `A - LSR - DLSR` in 1/65536 s,
/// where `A` is the middle 32 bits of the NTP arrival time. `None` without an SR (LSR 0) or if
/// the result is negative.
pub fn rtt_from_lsr_dlsr(arrival_ntp: u64, lsr: u32, dlsr: u32) -> Option<u32> {
    if lsr == 0 {
        return None;
    }
    let a = (arrival_ntp >> 16) as u32;
    let rtt = a.wrapping_sub(lsr).wrapping_sub(dlsr);
    if rtt >= 0x8000_0000 {
        return None;
    }
    Some(((u64::from(rtt) * 1000) >> 16) as u32)
}

#[derive(Debug, Clone)]
struct ViewerState {
    report: Option<ViewerReport>,
    last_heard: Instant,
    /// Real viewers this state stands for (1, except in the simulator's statistical leaf).
    weight: u64,
    votes: BTreeMap<u32, u32>,
    packet_size: f64,
    /// Where its RTCP comes from (the first address heard).
    addr: Option<SocketAddr>,
}

#[derive(Debug, Clone)]
struct ChildState {
    summary: Summary,
    last_heard: Instant,
    /// Average size of its upward compounds, octets with UDP/IPv4 (0 until heard).
    packet_size: f64,
}

/// Which RFC 5760 section 6 model the FT applies upwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Model {
    /// Section 6.2: distributions and counts, size independent of the audience.
    #[default]
    Summary,
    /// Group and average packet size only, no distributions (see the module docs).
    Simple,
}

/// Configuration of a feedback target.
#[derive(Debug, Clone)]
pub struct FtConfig {
    /// Our SSRC in RTCP.
    pub ssrc: u32,
    /// SSRC of the media source being summarised.
    pub media_ssrc: u32,
    /// Session bandwidth in bit/s (RTCP gets 5 %).
    pub session_bps: f64,
    /// Minimum interval of this FT's own upward reports, seconds (FTs are servers: RFC 3550
    /// section 6.2 allows a smaller minimum than 5 s).
    pub ft_min_interval_s: f64,
    /// Minimum interval viewers use, seconds.
    pub viewer_min_interval_s: f64,
    /// Our feedback target address, announced in the downstream RSI (RFC 5760 section 7.1,
    /// SRBT 0/1) so reporters know where to send.
    pub address: Option<SocketAddr>,
    /// A viewer or child not heard for this long is dropped (RFC 3550 section 6.3.5 uses five
    /// intervals).
    pub member_timeout: Duration,
    /// Summary or simple model.
    pub model: Model,
    /// Take the first report block of each RR whatever SSRC it names, instead of only blocks
    /// about `media_ssrc`: a pure FT serving the viewers of a relay, which numbers each
    /// viewer's stream itself (RFC 3550 section 7.2), sees a different SSRC per viewer.
    pub any_media: bool,
}

impl FtConfig {
    /// Defaults for a session of `session_bps`.
    pub fn new(ssrc: u32, media_ssrc: u32, session_bps: f64) -> FtConfig {
        FtConfig {
            ssrc,
            media_ssrc,
            session_bps,
            ft_min_interval_s: 1.0,
            viewer_min_interval_s: interval::RTCP_MIN_TIME_S,
            member_timeout: Duration::from_secs(40),
            model: Model::Summary,
            address: None,
            any_media: false,
        }
    }
}

/// What a datagram brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Handled {
    /// Report blocks about our media source.
    pub reports: u32,
    /// Votes cast.
    pub votes: u32,
    /// Child summaries taken.
    pub child_summaries: u32,
    /// RSIs from the parent (group size / bandwidth).
    pub parent_rsi: u32,
}

/// Group information received from above (RFC 5760 sections 7.1.4 onwards).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParentInfo {
    /// Reporters sharing our parent (our siblings and us).
    pub group_size: u64,
    /// Average RTCP packet size in that group.
    pub avg_packet_size: f64,
    /// RTCP bandwidth for receivers in that group, bit/s.
    pub receiver_bw_bps: Option<f64>,
}

/// A feedback target: see the module docs.
#[derive(Debug)]
pub struct FeedbackTarget {
    cfg: FtConfig,
    viewers: HashMap<u32, ViewerState>,
    children: HashMap<u32, ChildState>,
    parent: Option<ParentInfo>,
    parent_ssrc: Option<u32>,
    avg_upstream_size: f64,
    collisions: BTreeSet<u32>,
}

impl FeedbackTarget {
    /// A feedback target with no members.
    pub fn new(cfg: FtConfig) -> FeedbackTarget {
        FeedbackTarget {
            cfg,
            viewers: HashMap::new(),
            children: HashMap::new(),
            parent: None,
            parent_ssrc: None,
            avg_upstream_size: 200.0,
            collisions: BTreeSet::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &FtConfig {
        &self.cfg
    }

    /// Declare the SSRC of our parent (its RSIs carry group size, not a child summary).
    pub fn set_parent(&mut self, ssrc: u32) {
        self.parent_ssrc = Some(ssrc);
    }

    /// Declare a child FT (its RSIs are summaries to merge).
    pub fn add_child(&mut self, ssrc: u32, now: Instant) {
        self.children.entry(ssrc).or_insert(ChildState {
            summary: Summary::default(),
            last_heard: now,
            packet_size: 0.0,
        });
    }

    /// Add a viewer (from signalling: the AS told the relay about it).
    pub fn add_viewer(&mut self, ssrc: u32, now: Instant) {
        self.add_weighted_viewer(ssrc, 1, now);
    }

    /// Add a viewer state standing for `weight` identical viewers. Real FTs use weight 1; the
    /// simulator's statistical leaf uses it to keep its cost independent of the audience.
    pub fn add_weighted_viewer(&mut self, ssrc: u32, weight: u64, now: Instant) {
        self.viewers.entry(ssrc).or_insert(ViewerState {
            report: None,
            last_heard: now,
            weight: weight.max(1),
            votes: BTreeMap::new(),
            packet_size: 0.0,
            addr: None,
        });
    }

    /// Remove a viewer (BYE or signalling).
    pub fn remove_viewer(&mut self, ssrc: u32) {
        self.viewers.remove(&ssrc);
    }

    /// Viewers (weighted) directly attached.
    pub fn viewer_count(&self) -> u64 {
        self.viewers.values().map(|v| v.weight).sum()
    }

    /// Child FTs.
    pub fn child_count(&self) -> usize {
        self.children.len()
    }

    /// The group information the parent last sent.
    pub fn parent_info(&self) -> Option<ParentInfo> {
        self.parent
    }

    /// Record one viewer report (already parsed).
    pub fn on_viewer_report(&mut self, now: Instant, r: ViewerReport, packet_size: usize) {
        let v = self.viewers.entry(r.ssrc).or_insert(ViewerState {
            report: None,
            last_heard: now,
            weight: 1,
            votes: BTreeMap::new(),
            packet_size: 0.0,
            addr: None,
        });
        v.report = Some(r);
        v.last_heard = now;
        v.packet_size = if v.packet_size == 0.0 {
            packet_size as f64
        } else {
            interval::update_avg_rtcp_size(v.packet_size, packet_size as f64)
        };
    }

    /// Record a vote; a viewer's latest vote per poll counts.
    pub fn on_vote(&mut self, now: Instant, ssrc: u32, poll: u32, option: u32) {
        if poll == VOTERS_POLL {
            return;
        }
        self.add_viewer(ssrc, now);
        if let Some(v) = self.viewers.get_mut(&ssrc) {
            if v.votes.len() < MAX_TALLY_ENTRIES || v.votes.contains_key(&poll) {
                v.votes.insert(poll, option);
            }
            v.last_heard = now;
        }
    }

    /// Take a child's summary (replaces its previous one).
    pub fn on_child_summary(&mut self, now: Instant, child: u32, summary: Summary) {
        self.on_child_packet(now, child, summary, 0);
    }

    fn on_child_packet(&mut self, now: Instant, child: u32, summary: Summary, size: usize) {
        let c = self.children.entry(child).or_insert(ChildState {
            summary: Summary::default(),
            last_heard: now,
            packet_size: 0.0,
        });
        c.summary = summary;
        c.last_heard = now;
        if size > 0 {
            c.packet_size = if c.packet_size == 0.0 {
                size as f64
            } else {
                interval::update_avg_rtcp_size(c.packet_size, size as f64)
            };
        }
    }

    /// Take the group information of an RSI from the parent.
    pub fn on_parent_rsi(&mut self, rsi: &Rsi) {
        let mut info = self.parent.unwrap_or(ParentInfo {
            group_size: 1,
            avg_packet_size: self.avg_upstream_size,
            receiver_bw_bps: None,
        });
        for r in &rsi.sub_reports {
            match r {
                SubReport::GroupAndAvgPacketSize {
                    avg_packet_size,
                    group_size,
                } => {
                    info.group_size = u64::from(*group_size).max(1);
                    info.avg_packet_size = f64::from(*avg_packet_size);
                }
                SubReport::RtcpBandwidth {
                    receivers: true,
                    bandwidth_kbps_16_16,
                    ..
                } => {
                    info.receiver_bw_bps = Some(f64::from(*bandwidth_kbps_16_16) / 65.536);
                }
                _ => {}
            }
        }
        self.parent = Some(info);
    }

    /// Feed one RTCP datagram (a compound of RR/SR, SDES, APP `VOTE`, RSI) that arrived at `now`
    /// from `from` (`arrival_ntp` is the same instant as NTP, for RTT from LSR/DLSR). An SSRC
    /// heard from a second address is a collision (RFC 3550 section 8.2): its reports from the
    /// new address are ignored and it is listed in the Collisions sub-report.
    pub fn handle_rtcp(
        &mut self,
        now: Instant,
        from: SocketAddr,
        arrival_ntp: u64,
        data: &[u8],
    ) -> Result<Handled, FeedbackError> {
        let compound = Compound::parse(data)?;
        let mut h = Handled::default();
        let mut rsi_from: Option<(u32, Rsi)> = None;
        let mut tally: Option<VoteTally> = None;
        for p in compound {
            match p? {
                Packet::Rr(rr) => {
                    if self.collides(rr.ssrc(), from) {
                        continue;
                    }
                    for (i, rb) in rr.report_blocks().enumerate() {
                        let wanted = if self.cfg.any_media {
                            i == 0
                        } else {
                            rb.ssrc() == self.cfg.media_ssrc
                        };
                        if !wanted {
                            continue;
                        }
                        let cum = rb.cumulative_lost();
                        // 24-bit signed: negative (duplicates) counts as 0.
                        let cum = if cum & 0x80_0000 != 0 { 0 } else { cum };
                        let r = ViewerReport {
                            ssrc: rr.ssrc(),
                            fraction_lost: rb.fraction_lost(),
                            cumulative_lost: cum,
                            jitter: rb.interarrival_jitter(),
                            rtt_ms: rtt_from_lsr_dlsr(
                                arrival_ntp,
                                rb.last_sender_report_timestamp(),
                                rb.delay_since_last_sender_report_timestamp(),
                            ),
                        };
                        self.on_viewer_report(now, r, data.len() + UDP_IPV4_OVERHEAD);
                        if let Some(v) = self.viewers.get_mut(&r.ssrc) {
                            v.addr.get_or_insert(from);
                        }
                        h.reports += 1;
                    }
                }
                Packet::App(app) if app.name() == *b"VOTE" => match app.count() {
                    VOTE_SUBTYPE_CAST => {
                        let d = app.data();
                        if d.len() != 8 {
                            return Err(FeedbackError::BadVote);
                        }
                        let poll = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
                        let option = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
                        if !self.collides(app.ssrc(), from) {
                            self.on_vote(now, app.ssrc(), poll, option);
                            if let Some(v) = self.viewers.get_mut(&app.ssrc()) {
                                v.addr.get_or_insert(from);
                            }
                            h.votes += 1;
                        }
                    }
                    VOTE_SUBTYPE_TALLY => tally = Some(VoteTally::from_app_data(app.data())?),
                    _ => {}
                },
                Packet::Unknown(u) if u.type_() == RSI.0 => {
                    let rsi = Rsi::from_unknown(&u)?;
                    rsi_from = Some((rsi.ssrc, rsi));
                }
                _ => {}
            }
        }
        if let Some((ssrc, rsi)) = rsi_from {
            if Some(ssrc) == self.parent_ssrc || is_group_size_rsi(&rsi) {
                self.on_parent_rsi(&rsi);
                h.parent_rsi += 1;
            } else {
                let s = Summary::from_rsi(&rsi, tally.unwrap_or_default());
                self.on_child_packet(now, ssrc, s, data.len() + UDP_IPV4_OVERHEAD);
                h.child_summaries += 1;
            }
        }
        Ok(h)
    }

    /// Whether `ssrc` was first heard from another address (and note it if so).
    fn collides(&mut self, ssrc: u32, from: SocketAddr) -> bool {
        let Some(v) = self.viewers.get_mut(&ssrc) else {
            return false;
        };
        match v.addr {
            None => {
                v.addr = Some(from);
                false
            }
            Some(a) if a == from => false,
            Some(_) => {
                if self.collisions.len() < MAX_COLLISIONS {
                    self.collisions.insert(ssrc);
                }
                true
            }
        }
    }

    /// Drop viewers and children not heard for [`FtConfig::member_timeout`].
    pub fn expire(&mut self, now: Instant) {
        let t = self.cfg.member_timeout;
        self.viewers
            .retain(|_, v| now.saturating_duration_since(v.last_heard) < t);
        self.children
            .retain(|_, c| now.saturating_duration_since(c.last_heard) < t);
    }

    /// The summary of our whole subtree: our viewers' latest reports and votes plus every
    /// child's latest summary.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        let mut size_sum = 0.0;
        let mut sized = 0u64;
        for v in self.viewers.values() {
            s.group_size += v.weight;
            if v.packet_size > 0.0 {
                size_sum += v.packet_size * v.weight as f64;
                sized += v.weight;
            }
            if let Some(r) = v.report {
                s.loss.add(u32::from(r.fraction_lost), v.weight);
                s.jitter.add(r.jitter, v.weight);
                if let Some(rtt) = r.rtt_ms {
                    s.rtt.add(rtt, v.weight);
                }
                s.cumulative_loss.add(r.cumulative_lost, v.weight);
                s.highest_cumulative_lost = s.highest_cumulative_lost.max(r.cumulative_lost);
            }
            for (&poll, &option) in &v.votes {
                s.votes.add(poll, option, v.weight);
            }
            if !v.votes.is_empty() {
                s.votes.add(VOTERS_POLL, 0, v.weight);
            }
        }
        if sized > 0 {
            s.avg_rtcp_size = size_sum / sized as f64;
        }
        s.collisions = self.collisions.clone();
        for c in self.children.values() {
            s.merge(&c.summary);
        }
        s
    }

    /// The upward RSI of our subtree at NTP time `ntp`.
    pub fn upstream_rsi(&self, ntp: u64) -> Rsi {
        let summary = self.summary();
        self.rsi_of(&summary, ntp)
    }

    fn rsi_of(&self, summary: &Summary, ntp: u64) -> Rsi {
        let sub_reports = match self.cfg.model {
            Model::Summary => summary.sub_reports(),
            Model::Simple => vec![SubReport::GroupAndAvgPacketSize {
                avg_packet_size: summary.avg_rtcp_size.round().clamp(0.0, 65535.0) as u16,
                group_size: u32::try_from(summary.group_size).unwrap_or(u32::MAX),
            }],
        };
        Rsi {
            ssrc: self.cfg.ssrc,
            summarized_ssrc: self.cfg.media_ssrc,
            ntp,
            sub_reports,
        }
    }

    /// The compound we send up: RSI, then the APP tally when there are votes. Also returns the
    /// summary it encodes.
    pub fn upstream_packet(&mut self, ntp: u64) -> Result<(Vec<u8>, Summary), FeedbackError> {
        self.upstream_packet_with(ntp, &VoteTally::default())
    }

    /// [`FeedbackTarget::upstream_packet`] with `extra` votes added to the tally: votes kept
    /// outside the FT (the live relay keeps each viewer's votes beyond its membership, see
    /// [`crate::feedback::live`]).
    pub fn upstream_packet_with(
        &mut self,
        ntp: u64,
        extra: &VoteTally,
    ) -> Result<(Vec<u8>, Summary), FeedbackError> {
        let mut summary = self.summary();
        summary.votes.merge(extra);
        let rsi = self.rsi_of(&summary, ntp);
        let mut out = rsi.to_vec()?;
        if !summary.votes.is_empty() {
            let data = summary.votes.to_app_data();
            let app = App::builder(self.cfg.ssrc, VOTE_APP_NAME)
                .subtype(VOTE_SUBTYPE_TALLY)
                .data(&data);
            append(&mut out, &app)?;
        }
        let size = (out.len() + UDP_IPV4_OVERHEAD) as f64;
        self.avg_upstream_size = interval::update_avg_rtcp_size(self.avg_upstream_size, size);
        Ok((out, summary))
    }

    /// Members that report to us directly (viewers, weighted, and child FTs).
    pub fn reporters(&self) -> u64 {
        self.viewer_count() + self.children.len() as u64
    }

    /// The RSI we send down to our reporters: their group size and average packet size, and the
    /// receivers' RTCP bandwidth (75 % of 5 % of the session), so each of them computes its
    /// RFC 3550 interval within this FT's share (RFC 5760 sections 7.1.4 onwards).
    pub fn downstream_rsi(&self, ntp: u64) -> Rsi {
        let mut size_sum = 0.0;
        let mut n = 0.0;
        for v in self.viewers.values() {
            if v.packet_size > 0.0 {
                size_sum += v.packet_size * v.weight as f64;
                n += v.weight as f64;
            }
        }
        for c in self.children.values() {
            if c.packet_size > 0.0 {
                size_sum += c.packet_size;
                n += 1.0;
            }
        }
        let avg = if n > 0.0 { size_sum / n } else { 100.0 };
        let rx_bw_kbps =
            self.cfg.session_bps * interval::RTCP_FRACTION * interval::RECEIVER_BW_FRACTION
                / 1000.0;
        let mut sub_reports = Vec::with_capacity(3);
        match self.cfg.address {
            Some(SocketAddr::V4(a)) if a.port() != 0 => sub_reports.push(SubReport::Ipv4Target(a)),
            Some(SocketAddr::V6(a)) if a.port() != 0 => sub_reports.push(SubReport::Ipv6Target(a)),
            _ => {}
        }
        sub_reports.extend([
            SubReport::RtcpBandwidth {
                sender: false,
                receivers: true,
                bandwidth_kbps_16_16: (rx_bw_kbps * 65536.0).clamp(0.0, u32::MAX as f64) as u32,
            },
            SubReport::GroupAndAvgPacketSize {
                avg_packet_size: avg.round().clamp(0.0, 65535.0) as u16,
                group_size: u32::try_from(self.reporters() + 1).unwrap_or(u32::MAX),
            },
        ]);
        Rsi {
            ssrc: self.cfg.ssrc,
            summarized_ssrc: self.cfg.media_ssrc,
            ntp,
            sub_reports,
        }
    }

    /// Our own upward interval for a uniform draw `u` in `[0, 1)`: RFC 3550 A.7 among the
    /// group our parent announced (ourselves alone until it does).
    pub fn upstream_interval_s(&self, u: f64) -> f64 {
        let p = self.parent.unwrap_or(ParentInfo {
            group_size: 2,
            avg_packet_size: self.avg_upstream_size,
            receiver_bw_bps: None,
        });
        let rtcp_bw = match p.receiver_bw_bps {
            // The parent announced the receivers' share: undo the 75 % split A.7 applies.
            Some(bps) => bps / 8.0 / interval::RECEIVER_BW_FRACTION,
            None => interval::rtcp_bandwidth_bytes_per_s(self.cfg.session_bps),
        };
        let params = IntervalParams {
            members: p.group_size,
            senders: 1,
            rtcp_bw_bytes_per_s: rtcp_bw,
            we_sent: false,
            avg_rtcp_size: if p.avg_packet_size > 0.0 {
                p.avg_packet_size
            } else {
                self.avg_upstream_size
            },
            initial: false,
            min_interval_s: self.cfg.ft_min_interval_s,
        };
        interval::randomized_interval_s(&params, u)
    }
}

/// Whether an RSI is a group-size announcement from a parent ([`FeedbackTarget::downstream_rsi`]:
/// it carries the receivers' RTCP bandwidth, SRBT 11) rather than a child's summary (which never
/// does). Telling them apart by content keeps a tree right when a parent answers from another
/// address than the one its children send to (a wildcard bind, NAT).
pub fn is_group_size_rsi(rsi: &Rsi) -> bool {
    rsi.sub_reports.iter().any(|r| {
        matches!(
            r,
            SubReport::RtcpBandwidth {
                receivers: true,
                ..
            }
        )
    })
}

/// What a viewer makes of its FT's downstream RSI: the parameters of its RFC 3550 interval.
pub fn viewer_interval_params(rsi: &Rsi, session_bps: f64, min_interval_s: f64) -> IntervalParams {
    let mut p = IntervalParams::receiver(2, session_bps, 100.0);
    p.min_interval_s = min_interval_s;
    if let Some(SubReport::GroupAndAvgPacketSize {
        avg_packet_size,
        group_size,
    }) = rsi.find(Srbt::GROUP_AND_AVG_PACKET_SIZE)
    {
        p.members = u64::from(*group_size).max(1);
        p.avg_rtcp_size = f64::from(*avg_packet_size).max(1.0);
    }
    if let Some(SubReport::RtcpBandwidth {
        receivers: true,
        bandwidth_kbps_16_16,
        ..
    }) = rsi.find(Srbt::RTCP_BANDWIDTH)
    {
        p.rtcp_bw_bytes_per_s =
            f64::from(*bandwidth_kbps_16_16) / 65.536 / 8.0 / interval::RECEIVER_BW_FRACTION;
    }
    p
}

/// UDP + IPv4 header octets, counted in RTCP packet sizes (RFC 3550 section 6.2).
pub const UDP_IPV4_OVERHEAD: usize = 28;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_bins_and_median() {
        let mut h = Histogram::new(LOSS_BINS);
        h.add(0, 3);
        h.add(255, 1);
        h.add(1000, 1); // clipped into the last bin
        assert_eq!(h.total(), 5);
        assert_eq!(h.counts()[0], 3);
        assert_eq!(h.counts()[15], 2);
        assert_eq!(h.median(), Some(8));
        let d = h.to_distribution();
        assert_eq!(Histogram::from_distribution(&d, LOSS_BINS), h);
    }

    #[test]
    fn rtt_from_lsr() {
        // SR sent at NTP 1000.0 s; answered after 0.25 s; arrives at 1000.5 s: RTT 250 ms.
        let sr_ntp: u64 = 1000 << 32;
        let lsr = (sr_ntp >> 16) as u32;
        let dlsr = 65536 / 4;
        let arrival = sr_ntp + (1u64 << 31);
        assert_eq!(rtt_from_lsr_dlsr(arrival, lsr, dlsr), Some(250));
        assert_eq!(rtt_from_lsr_dlsr(arrival, 0, dlsr), None);
        assert_eq!(rtt_from_lsr_dlsr(sr_ntp, lsr, dlsr), None);
    }
}
