//! The relay as a live RFC 5760 feedback target: every channel on a relay gets a
//! [`FeedbackTarget`], and the viewer RTCP the relay already receives on its RTCP socket
//! ([`crate::relay::Relay::handle_viewer_rtcp`]) is also fed here once the relay has matched
//! the datagram to one of its viewers.
//!
//! How it fits: the relay core owns one [`LiveFeedback`]; for a matched viewer it calls
//! [`LiveFeedback::on_viewer_rtcp`] with the viewer's channel and the SSRC the relay sends that
//! viewer (RFC 3550 section 7.2: the relay is a translator that owns each viewer's numbering,
//! so viewers' report blocks name that SSRC, not the producer's). Receiver report blocks about
//! it become the viewer's [`ViewerReport`] (loss, jitter, and RTT from LSR/DLSR of the relay's
//! own SRs, RFC 3550 section 6.4.1); APP `VOTE` subtype 0 packets (RFC 3550 section 6.7; layout
//! in [`crate::feedback::aggregate`]) are votes. Viewers are keyed by the relay's SSRC for them,
//! which is unique per viewer at the relay, so a viewer counts once per poll whatever SSRC it
//! uses itself: its latest vote. Votes outlive the viewer's membership (a viewer that left
//! still voted); quality covers viewers heard within the member timeout. A vote counts only
//! from the address of a viewer of the channel (the relay knows them from the viewers' SDP;
//! a datagram matched by SSRC alone from elsewhere gives reports, not votes) and only in a
//! poll of the channel: one declared for another channel ([`LiveFeedback::set_channel_polls`])
//! or, undeclared, one the viewer first voted in on another channel (a copy sent just before
//! a zap that lands after it) is not counted.
//! [`LiveFeedback::summary`] gives the [`FeedbackSummary`] the control API returns
//! ([`crate::control::RelayHandle::feedback`]). Nothing here runs per forwarded RTP packet.
//! Sans-IO: the wallclock needed for RTT comes from the relay's timer calls
//! ([`LiveFeedback::set_wall`]).
//!
//! # Summaries up the relay tree
//!
//! A relay that pulls a channel from another relay (or is told a parent FT,
//! [`LiveFeedback::set_parent`]) is a child FT for that channel: on its own RFC 3550 A.7
//! interval among its siblings ([`FeedbackTarget::upstream_interval_s`]) it sends the parent's
//! RTCP address, from the channel's own RTCP address at this relay (its ingest RTCP socket,
//! [`UpTransmit`]), one compound, RSI (RFC 5760 section 7.1, distributions and group size) + APP
//! `VOTE` tally, whose size does not depend on its audience; the tally holds its viewers' latest
//! votes plus its own children's tallies, and [`VOTERS_POLL`] counts its voters. The RSI names
//! the channel by [`channel_ssrc`] (its "summarized SSRC"), so the parent knows which channel a
//! summary is about without any signalling; each relay's FT SSRC for a channel is its own
//! (seeded) number, the key under which the parent keeps that child's latest summary. The
//! parent ([`LiveFeedback::on_peer_rtcp`]; a group-size RSI is told from a summary by its
//! content, [`is_group_size_rsi`]) takes a summary only from a known child of the channel: a
//! relay that pulls the channel from it (the RTCP address of that downstream copy, which is
//! the child's ingest RTCP socket, where its summaries come from) or a child FT registered
//! with [`LiveFeedback::allow_child`] (a pure FT, or a relay told its parent by hand); any
//! other sender's summary is dropped, counted ([`FeedbackCounters`]) and logged at debug at
//! most once a second, so nobody can inject votes or quality into a channel's tally. It
//! replaces a child's previous summary with the new one, so a summary repeated, or a vote
//! repeated below, is never counted twice; a child not heard for the member timeout drops
//! out. Downwards, the parent answers a new child at once
//! and then on the senders' share of the RTCP bandwidth with a group-size RSI (SRBT 11 RTCP
//! bandwidth, SRBT 12 group and average packet size): the child's interval then fits its
//! group's share, however many viewers the whole tree has. The root (the channel's source
//! relay, no parent) merges every child's summary into [`LiveFeedback::summary`], so the AS
//! reading the root sees the whole tree's tally; a child's summary says
//! [`FeedbackSummary::feedback_parent`] so the AS does not count its subtree twice.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use rtcp_types::{Compound, Packet, RtcpPacketParserExt};

use crate::control::{ChannelId, FeedbackSummary, QualityDistribution};
use crate::feedback::aggregate::{
    is_group_size_rsi, rtt_from_lsr_dlsr, FeedbackError, FeedbackTarget, FtConfig, Histogram,
    ViewerReport, VoteTally, VOTERS_POLL, VOTE_SUBTYPE_CAST,
};
use crate::feedback::interval;
use crate::rsi::{Rsi, RSI};
use crate::rtcp;

/// Most relay-to-relay datagrams queued (summaries up, group sizes down) before the oldest are
/// dropped.
pub const MAX_PEER_QUEUE: usize = 4096;
/// Most child FTs one channel answers with group sizes.
pub const MAX_CHILDREN_PER_CHANNEL: usize = 4096;

/// The SSRC that names `channel` in summaries between relays (the RSI's summarized SSRC):
/// FNV-1a of the channel id, the same at every relay.
pub fn channel_ssrc(channel: &ChannelId) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in channel.0.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Most polls one viewer's votes are kept for.
pub const MAX_POLLS_PER_VIEWER: usize = 16;
/// Most viewers whose votes a channel keeps (bounds memory against SSRC floods).
pub const MAX_VOTERS_PER_CHANNEL: usize = 1 << 20;
/// Session bandwidth assumed for a channel's FT interval computations, bit/s.
const SESSION_BPS: f64 = 2_000_000.0;

/// One channel's feedback target and votes.
#[derive(Debug)]
struct ChannelFeedback {
    ft: FeedbackTarget,
    /// Relay SSRC of the viewer -> poll -> option.
    votes: HashMap<u32, BTreeMap<u32, u32>>,
    /// The parent FT's RTCP address, if this relay is a child for the channel.
    parent: Option<SocketAddr>,
    /// When the next summary goes up.
    next_up: Option<Instant>,
    /// Child FTs' addresses (they get group-size RSIs) and when each was last heard.
    children: BTreeMap<SocketAddr, Instant>,
    /// When the next group-size RSI goes down to the children.
    next_down: Option<Instant>,
    /// The group-size RSI for this relay's viewers and when it was made.
    viewer_rsi: Option<(Instant, Vec<u8>)>,
    /// Child FTs registered for the channel ([`LiveFeedback::allow_child`]): pure FTs (or
    /// relays) told to send their summaries here. Downstream relays that pull the channel from
    /// us need no registration: the relay core knows their RTCP address.
    allowed_children: BTreeSet<SocketAddr>,
    /// RTCP addresses of relays that pulled the channel from us
    /// ([`LiveFeedback::note_downstream`]): they stay known children after they detach, since
    /// their summaries still carry the votes of viewers that left them.
    pulled_by: BTreeSet<SocketAddr>,
}

/// A summary up the relay tree ([`LiveFeedback::poll_transmit_up`]): it goes from the
/// channel's own RTCP address at this relay (its ingest RTCP socket, where the parent sends
/// the channel's copy and from where our receiver reports about the copy go), the address by
/// which the parent knows us as a child.
#[must_use = "a summary must be sent (or counted as dropped)"]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpTransmit {
    /// The channel the summary is about.
    pub channel: ChannelId,
    /// The parent FT's RTCP address.
    pub dest: SocketAddr,
    /// The compound: RSI + APP tally.
    pub payload: Vec<u8>,
}

/// What the feedback path refused, for the relay's stats
/// ([`crate::control::TotalStats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeedbackCounters {
    /// Child summaries (RSI, PT 209) from an address that is neither a downstream relay of the
    /// channel nor a registered child FT: dropped.
    pub refused_summaries: u64,
    /// APP `VOTE` packets from an address that is not a viewer of the channel they were
    /// matched to: not counted.
    pub refused_votes: u64,
    /// APP `VOTE` packets for a poll of another channel (the viewer voted in it on another
    /// channel first, or the poll is declared for another channel): not counted.
    pub foreign_poll_votes: u64,
}

/// What a datagram from another relay (or pure FT) brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerHandled {
    /// Child summaries taken.
    pub child_summaries: u32,
    /// Group-size RSIs taken from the parent.
    pub parent_rsi: u32,
    /// Summaries refused: the sender is not a known child of the channel.
    pub refused: u32,
}

/// What one datagram brought (for counters and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LiveHandled {
    /// Report blocks about the viewer's stream.
    pub reports: u32,
    /// Votes taken.
    pub votes: u32,
    /// Votes not counted: from an address that is not the viewer's.
    pub refused_votes: u32,
    /// Votes not counted: for a poll of another channel.
    pub foreign_poll_votes: u32,
}

/// Where a viewer's RTCP datagram came from, as the relay core matched it
/// ([`LiveFeedback::on_viewer_rtcp`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewerOrigin {
    /// From the RTCP (or RTP, when muxed) address of a viewer of the channel, as its SDP
    /// gave it: reports and votes count.
    ViewerAddress,
    /// Matched by a report block naming the viewer's SSRC only, from an address that is no
    /// viewer's of the channel: reports count (they are about the stream the viewer gets),
    /// votes do not (anyone could send them).
    Elsewhere,
}

/// The feedback targets of every channel on a relay.
#[derive(Debug, Default)]
pub struct LiveFeedback {
    channels: HashMap<ChannelId, ChannelFeedback>,
    /// A monotonic instant and the wallclock read with it.
    anchor: Option<(Instant, SystemTime)>,
    member_timeout: Option<Duration>,
    /// xorshift state: FT SSRCs and interval draws.
    rng: u64,
    /// Datagrams to other relays: (destination, compound).
    out: VecDeque<(SocketAddr, Vec<u8>)>,
    /// Summaries up the tree, sent from the channel's own RTCP address.
    up: VecDeque<UpTransmit>,
    /// Datagrams dropped because [`MAX_PEER_QUEUE`] was reached.
    dropped: u64,
    /// (relay SSRC of a viewer, poll) -> [`channel_ssrc`] of the channel where the viewer's
    /// first counted vote in that poll arrived: its votes in that poll arriving on another
    /// channel (a copy sent before a zap, landing after it) are not counted there.
    poll_home: HashMap<(u32, u32), u32>,
    /// Polls declared for a channel ([`LiveFeedback::set_channel_polls`]): poll ->
    /// [`channel_ssrc`] of its channel.
    declared: HashMap<u32, u32>,
    counters: FeedbackCounters,
    /// Rate limit of the debug log of refused datagrams: when one was last logged, and how
    /// many were refused since.
    log_gate: Option<(Instant, u64)>,
}

/// Most (viewer, poll) homes remembered; beyond, new votes count without the check.
pub const MAX_POLL_HOMES: usize = 1 << 22;
/// Most polls declared on one relay.
pub const MAX_DECLARED_POLLS: usize = 1 << 16;
/// At most one debug line per this interval about refused feedback.
const REFUSED_LOG_EVERY: Duration = Duration::from_secs(1);

impl LiveFeedback {
    /// No channels yet.
    pub fn new() -> Self {
        Self::with_seed(0x5eed_f7f7)
    }

    /// No channels yet; `seed` picks this relay's FT SSRCs (relays in one tree need distinct
    /// seeds) and its interval draws.
    pub fn with_seed(seed: u64) -> Self {
        LiveFeedback {
            rng: seed | 1,
            ..Self::default()
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng.max(1);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn uniform(&mut self) -> f64 {
        (self.next_random() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Override the FT member timeout (default that of [`FtConfig::new`]) for channels made
    /// from now on.
    pub fn set_member_timeout(&mut self, t: Duration) {
        self.member_timeout = Some(t);
    }

    /// The wallclock `wall` read together with `now` (for RTT from LSR/DLSR).
    pub fn set_wall(&mut self, now: Instant, wall: SystemTime) {
        self.anchor = Some((now, wall));
    }

    fn arrival_ntp(&self, now: Instant) -> Option<u64> {
        let (at, wall) = self.anchor?;
        let w = if now >= at {
            wall.checked_add(now - at)?
        } else {
            wall.checked_sub(at - now)?
        };
        Some(rtcp::ntp_timestamp(w))
    }

    fn channel(&mut self, channel: &ChannelId) -> &mut ChannelFeedback {
        let timeout = self.member_timeout;
        if !self.channels.contains_key(channel) {
            // Our FT SSRC for the channel: never 0, never the channel's own SSRC.
            let media = channel_ssrc(channel);
            let mut ssrc = (self.next_random() >> 32) as u32;
            if ssrc == 0 || ssrc == media {
                ssrc ^= 0x8000_0001;
            }
            let mut cfg = FtConfig::new(ssrc, media, SESSION_BPS);
            if let Some(t) = timeout {
                cfg.member_timeout = t;
            }
            self.channels.insert(
                channel.clone(),
                ChannelFeedback {
                    ft: FeedbackTarget::new(cfg),
                    votes: HashMap::new(),
                    parent: None,
                    next_up: None,
                    children: BTreeMap::new(),
                    next_down: None,
                    viewer_rsi: None,
                    allowed_children: BTreeSet::new(),
                    pulled_by: BTreeSet::new(),
                },
            );
        }
        self.channels
            .get_mut(channel)
            .expect("inserted above when missing")
    }

    /// Make this relay a child FT for `channel` whose summaries go to `parent` (the parent
    /// relay's RTCP address, or a pure FT's), or the channel's root with `None`. The first
    /// summary goes up at once.
    pub fn set_parent(&mut self, now: Instant, channel: &ChannelId, parent: Option<SocketAddr>) {
        let c = self.channel(channel);
        c.parent = parent;
        c.next_up = parent.map(|_| now);
    }

    /// The parent FT of `channel`, if any.
    pub fn parent(&self, channel: &ChannelId) -> Option<SocketAddr> {
        self.channels.get(channel).and_then(|c| c.parent)
    }

    /// Whether a datagram on the RTCP socket is for the relay tree (a summary from a child or a
    /// group-size RSI from a parent: its first packet is an RSI, RFC 5760 PT 209) rather than a
    /// viewer's report. Viewers' compounds start with an SR or RR (RFC 3550 section 6.1).
    pub fn is_peer_rtcp(datagram: &[u8]) -> bool {
        datagram.len() >= 4 && datagram[0] >> 6 == 2 && datagram[1] == RSI.0
    }

    /// Register `child` (the RTCP address a pure FT, or a relay told its parent by hand, sends
    /// its summaries from) as a child FT of `channel`: its summaries are merged from now on.
    /// Downstream relays that pull the channel from this relay need no registration. At most
    /// [`MAX_CHILDREN_PER_CHANNEL`] per channel.
    pub fn allow_child(&mut self, channel: &ChannelId, child: SocketAddr) -> bool {
        let c = self.channel(channel);
        if c.allowed_children.len() >= MAX_CHILDREN_PER_CHANNEL
            && !c.allowed_children.contains(&child)
        {
            return false;
        }
        c.allowed_children.insert(child);
        true
    }

    /// A relay whose RTCP address for `channel` is `child` pulls the channel from us (the
    /// relay core calls this when it adds a downstream copy): it is a known child from now on,
    /// and stays one after it detaches (its summaries still carry the votes of the viewers it
    /// had), up to [`MAX_CHILDREN_PER_CHANNEL`] per channel.
    pub fn note_downstream(&mut self, channel: &ChannelId, child: SocketAddr) {
        let c = self.channel(channel);
        if c.pulled_by.len() < MAX_CHILDREN_PER_CHANNEL {
            c.pulled_by.insert(child);
        }
    }

    /// Remove a registration of [`LiveFeedback::allow_child`] (or a former downstream relay,
    /// [`LiveFeedback::note_downstream`]); the child's summary held so far drops out after the
    /// member timeout like a silent child's.
    pub fn forbid_child(&mut self, channel: &ChannelId, child: SocketAddr) {
        if let Some(c) = self.channels.get_mut(channel) {
            c.allowed_children.remove(&child);
            c.pulled_by.remove(&child);
        }
    }

    /// The child FTs registered for `channel`.
    pub fn allowed_children(&self, channel: &ChannelId) -> Vec<SocketAddr> {
        self.channels
            .get(channel)
            .map(|c| c.allowed_children.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Declare the polls of `channel` (the AS's polls, each of one channel): a vote for one of
    /// them arriving on another channel is not counted there. Replaces the channel's previous
    /// declaration. Polls nobody declared are placed by where each viewer's first vote in them
    /// arrived (see [`LiveFeedback::on_viewer_rtcp`]).
    pub fn set_channel_polls(&mut self, channel: &ChannelId, polls: &[u32]) {
        let home = channel_ssrc(channel);
        self.declared.retain(|_, c| *c != home);
        for &p in polls {
            if self.declared.len() >= MAX_DECLARED_POLLS {
                break;
            }
            self.declared.insert(p, home);
        }
    }

    /// What was refused so far.
    pub fn counters(&self) -> FeedbackCounters {
        self.counters
    }

    /// One refused datagram: a debug line at most every [`REFUSED_LOG_EVERY`], saying how many
    /// were refused since the previous line.
    fn log_refused(&mut self, now: Instant, from: SocketAddr, what: &'static str) {
        match &mut self.log_gate {
            Some((at, n)) if now.saturating_duration_since(*at) < REFUSED_LOG_EVERY => *n += 1,
            gate => {
                let since = gate.map_or(0, |(_, n)| n);
                tracing::debug!(%from, what, refused_since_last_line = since, "feedback refused");
                *gate = Some((now, 0));
            }
        }
    }

    /// Feed a datagram for which [`LiveFeedback::is_peer_rtcp`] holds, from `from`. `channels`
    /// are the relay's channels (the RSI names one by [`channel_ssrc`]); a summary about none
    /// of them is refused. A group-size RSI is taken by a channel with a parent. A child's
    /// summary is taken only from a known child of the channel: a downstream relay pulling it
    /// from us (`downstream(channel, from)`, which the relay core answers from the RTCP
    /// addresses of its downstream copies) or that pulled it before
    /// ([`LiveFeedback::note_downstream`]), or a child FT registered with
    /// [`LiveFeedback::allow_child`]; anything else is dropped and counted
    /// ([`FeedbackCounters::refused_summaries`]), so nobody else can put votes or quality into
    /// a channel's tally. A taken summary replaces that child's previous one (a new child is
    /// answered at once with a group-size RSI).
    pub fn on_peer_rtcp<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        channels: impl IntoIterator<Item = &'a ChannelId>,
        downstream: impl Fn(&ChannelId, SocketAddr) -> bool,
    ) -> Result<PeerHandled, FeedbackError> {
        let mut rsi: Option<Rsi> = None;
        for p in Compound::parse(datagram)? {
            if let Packet::Unknown(u) = p? {
                if u.type_() == RSI.0 && rsi.is_none() {
                    rsi = Some(Rsi::from_unknown(&u)?);
                }
            }
        }
        let Some(rsi) = rsi else {
            return Ok(PeerHandled::default());
        };
        let Some(channel) = channels
            .into_iter()
            .find(|c| channel_ssrc(c) == rsi.summarized_ssrc)
            .cloned()
        else {
            return Ok(PeerHandled::default());
        };
        let ntp = self.arrival_ntp(now).unwrap_or(0);
        let known_downstream = downstream(&channel, from);
        let c = self.channel(&channel);
        if is_group_size_rsi(&rsi) {
            // From our parent (by content, whatever address it answers from); a root has no
            // use for one.
            if c.parent.is_none() {
                return Ok(PeerHandled::default());
            }
            c.ft.set_parent(rsi.ssrc);
            c.ft.on_parent_rsi(&rsi);
            return Ok(PeerHandled {
                parent_rsi: 1,
                ..PeerHandled::default()
            });
        }
        if c.parent == Some(from) {
            // A parent sends group sizes down, never summaries.
            return Ok(PeerHandled::default());
        }
        if rsi.ssrc == c.ft.config().ssrc {
            // Our own summary looped back: never a child of ourselves.
            return Ok(PeerHandled::default());
        }
        if !known_downstream && !c.allowed_children.contains(&from) && !c.pulled_by.contains(&from)
        {
            self.counters.refused_summaries += 1;
            self.log_refused(now, from, "summary from an unknown child");
            return Ok(PeerHandled {
                refused: 1,
                ..PeerHandled::default()
            });
        }
        let h = c.ft.handle_rtcp(now, from, ntp, datagram)?;
        let new_child = !c.children.contains_key(&from);
        if new_child && c.children.len() >= MAX_CHILDREN_PER_CHANNEL {
            return Ok(PeerHandled {
                child_summaries: h.child_summaries,
                ..PeerHandled::default()
            });
        }
        c.children.insert(from, now);
        if new_child {
            let down = c.ft.downstream_rsi(ntp).to_vec()?;
            if c.next_down.is_none() {
                c.next_down = Some(now + Duration::from_secs_f64(interval::RTCP_MIN_TIME_S));
            }
            self.push_out(from, down);
        }
        Ok(PeerHandled {
            child_summaries: h.child_summaries,
            ..PeerHandled::default()
        })
    }

    fn push_out(&mut self, dest: SocketAddr, bytes: Vec<u8>) {
        if self.out.len() >= MAX_PEER_QUEUE {
            self.out.pop_front();
            self.dropped += 1;
        }
        self.out.push_back((dest, bytes));
    }

    fn push_up(&mut self, t: UpTransmit) {
        if self.up.len() >= MAX_PEER_QUEUE {
            self.up.pop_front();
            self.dropped += 1;
        }
        self.up.push_back(t);
    }

    /// When [`LiveFeedback::handle_timeout`] next has work (a summary up or group sizes down).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.channels
            .values()
            .flat_map(|c| [c.next_up, c.next_down])
            .flatten()
            .min()
    }

    /// Send what is due at `now`: each child channel's summary to its parent, each parent
    /// channel's group-size RSI to its children. Drain [`LiveFeedback::poll_transmit`] after.
    pub fn handle_timeout(&mut self, now: Instant) {
        let ntp = self.arrival_ntp(now).unwrap_or(0);
        let due: Vec<ChannelId> = self
            .channels
            .iter()
            .filter(|(_, c)| {
                c.next_up.is_some_and(|t| t <= now) || c.next_down.is_some_and(|t| t <= now)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let u_up = self.uniform();
            let u_down = self.uniform();
            let Some(c) = self.channels.get_mut(&id) else {
                continue;
            };
            c.ft.expire(now);
            let timeout = c.ft.config().member_timeout;
            c.children
                .retain(|_, heard| now.saturating_duration_since(*heard) < timeout);
            let mut out: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
            let mut up = None;
            if let (Some(parent), Some(t)) = (c.parent, c.next_up) {
                if t <= now {
                    let tally = local_tally(&c.votes);
                    if let Ok((bytes, _)) = c.ft.upstream_packet_with(ntp, &tally) {
                        up = Some(UpTransmit {
                            channel: id.clone(),
                            dest: parent,
                            payload: bytes,
                        });
                    }
                    let dt = c.ft.upstream_interval_s(u_up);
                    c.next_up = Some(now + Duration::from_secs_f64(dt.clamp(0.1, 3600.0)));
                }
            }
            if c.next_down.is_some_and(|t| t <= now) {
                if c.children.is_empty() {
                    c.next_down = None;
                } else {
                    if let Ok(down) = c.ft.downstream_rsi(ntp).to_vec() {
                        for &child in c.children.keys() {
                            out.push((child, down.clone()));
                        }
                        // The senders' quarter of the RTCP share, unicast to every child
                        // (as in ha-sim), at least every 5 s (RFC 3550 section 6.2).
                        let bw = interval::rtcp_bandwidth_bytes_per_s(c.ft.config().session_bps)
                            * interval::SENDER_BW_FRACTION;
                        let wire = (down.len() + 28) as f64 * c.children.len() as f64;
                        let period = (wire / bw).max(interval::RTCP_MIN_TIME_S);
                        let dt = period * (0.5 + u_down);
                        c.next_down = Some(now + Duration::from_secs_f64(dt.min(3600.0)));
                    }
                }
            }
            for (dest, bytes) in out {
                self.push_out(dest, bytes);
            }
            if let Some(t) = up {
                self.push_up(t);
            }
        }
    }

    /// Append to `out` (a viewer's SR compound) the group-size RSI of `channel` at this relay
    /// (RFC 5760 section 7.1: SRBT 11, the receivers' RTCP bandwidth, and SRBT 12, the group
    /// and average packet size), naming `viewer_ssrc` (the SSRC the relay sends that viewer) as
    /// distribution source and summarised SSRC, so the viewer's RFC 3550 interval fits this
    /// relay's group rather than the whole audience. Nothing for a channel no viewer reported
    /// on yet. The packet is remade at most once a second.
    pub fn append_viewer_rsi(
        &mut self,
        now: Instant,
        channel: &ChannelId,
        viewer_ssrc: u32,
        out: &mut Vec<u8>,
    ) {
        let ntp = self.arrival_ntp(now).unwrap_or(0);
        let Some(c) = self.channels.get_mut(channel) else {
            return;
        };
        let fresh = c
            .viewer_rsi
            .as_ref()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) < Duration::from_secs(1));
        if !fresh {
            c.viewer_rsi = c.ft.downstream_rsi(ntp).to_vec().ok().map(|b| (now, b));
        }
        if let Some((_, rsi)) = &c.viewer_rsi {
            if rsi.len() >= 12 {
                let at = out.len();
                out.extend_from_slice(rsi);
                out[at + 4..at + 8].copy_from_slice(&viewer_ssrc.to_be_bytes());
                out[at + 8..at + 12].copy_from_slice(&viewer_ssrc.to_be_bytes());
            }
        }
    }

    /// The next datagram down to a child FT (a group-size RSI): (destination RTCP address,
    /// compound), sent from the relay's RTCP socket (the address its children send to).
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.out.pop_front()
    }

    /// The next summary up to a parent FT, to be sent from the channel's own RTCP address
    /// (see [`UpTransmit`]).
    #[must_use]
    pub fn poll_transmit_up(&mut self) -> Option<UpTransmit> {
        self.up.pop_front()
    }

    /// Relay-to-relay datagrams dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Feed one RTCP datagram from `from` that the relay matched to the viewer it sends as
    /// `viewer_ssrc` on `channel`. A datagram that does not parse brings nothing (the relay
    /// already counted it as malformed).
    ///
    /// Votes count only when `origin` is [`ViewerOrigin::ViewerAddress`] (else
    /// [`FeedbackCounters::refused_votes`]), and only in a poll of this channel (else
    /// [`FeedbackCounters::foreign_poll_votes`]): a poll declared for another channel
    /// ([`LiveFeedback::set_channel_polls`]), or, undeclared, one this viewer first voted in on
    /// another channel. That is the copy of a vote sent just before a zap that lands on the new
    /// channel (the relay keeps the viewer's SSRC across zaps): it neither makes the viewer a
    /// voter of the new channel nor enters its tally, while the vote stays counted where it was
    /// cast.
    pub fn on_viewer_rtcp(
        &mut self,
        now: Instant,
        channel: &ChannelId,
        viewer_ssrc: u32,
        (from, origin): (SocketAddr, ViewerOrigin),
        datagram: &[u8],
    ) -> LiveHandled {
        let mut h = LiveHandled::default();
        let Ok(compound) = Compound::parse(datagram) else {
            return h;
        };
        let arrival_ntp = self.arrival_ntp(now);
        let mut reports: Vec<ViewerReport> = Vec::new();
        let mut votes: Vec<(u32, u32)> = Vec::new();
        for p in compound {
            match p {
                Ok(Packet::Rr(rr)) => {
                    for rb in rr.report_blocks() {
                        if rb.ssrc() != viewer_ssrc {
                            continue;
                        }
                        let cum = rb.cumulative_lost();
                        // 24-bit signed: negative (duplicates) counts as 0.
                        let cum = if cum & 0x80_0000 != 0 { 0 } else { cum };
                        let rtt_ms = arrival_ntp.and_then(|ntp| {
                            rtt_from_lsr_dlsr(
                                ntp,
                                rb.last_sender_report_timestamp(),
                                rb.delay_since_last_sender_report_timestamp(),
                            )
                        });
                        reports.push(ViewerReport {
                            ssrc: viewer_ssrc,
                            fraction_lost: rb.fraction_lost(),
                            cumulative_lost: cum,
                            jitter: rb.interarrival_jitter(),
                            rtt_ms,
                        });
                    }
                }
                Ok(Packet::App(app))
                    if app.name() == *b"VOTE" && app.count() == VOTE_SUBTYPE_CAST =>
                {
                    let d = app.data();
                    if d.len() == 8 && votes.len() < MAX_POLLS_PER_VIEWER {
                        let poll = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
                        let option = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
                        if poll != VOTERS_POLL {
                            votes.push((poll, option));
                        }
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if !votes.is_empty() && origin == ViewerOrigin::Elsewhere {
            let n = votes.len() as u32;
            votes.clear();
            h.refused_votes = n;
            self.counters.refused_votes += u64::from(n);
            self.log_refused(now, from, "vote from an address that is no viewer's");
        }
        let here = channel_ssrc(channel);
        let before = votes.len();
        votes.retain(|(poll, _)| {
            let home = self
                .declared
                .get(poll)
                .or_else(|| self.poll_home.get(&(viewer_ssrc, *poll)))
                .copied();
            home.is_none_or(|home| home == here)
        });
        if votes.len() < before {
            let n = (before - votes.len()) as u32;
            h.foreign_poll_votes = n;
            self.counters.foreign_poll_votes += u64::from(n);
            self.log_refused(now, from, "vote for a poll of another channel");
        }
        let mut counted: Vec<u32> = Vec::new();
        let size = datagram.len() + 28;
        let c = self.channel(channel);
        for r in reports {
            c.ft.on_viewer_report(now, r, size);
            h.reports += 1;
        }
        if !votes.is_empty() {
            c.ft.add_viewer(viewer_ssrc, now);
            let room = c.votes.len() < MAX_VOTERS_PER_CHANNEL;
            if let Some(mine) = if room {
                Some(c.votes.entry(viewer_ssrc).or_default())
            } else {
                c.votes.get_mut(&viewer_ssrc)
            } {
                for (poll, option) in votes {
                    if mine.len() < MAX_POLLS_PER_VIEWER || mine.contains_key(&poll) {
                        mine.insert(poll, option);
                        h.votes += 1;
                        counted.push(poll);
                    }
                }
            }
        }
        for poll in counted {
            if self.poll_home.len() < MAX_POLL_HOMES {
                self.poll_home.entry((viewer_ssrc, poll)).or_insert(here);
            }
        }
        h
    }

    /// The viewer the relay sent as `viewer_ssrc` left: its quality no longer counts (its
    /// votes do).
    pub fn remove_viewer(&mut self, channel: &ChannelId, viewer_ssrc: u32) {
        if let Some(c) = self.channels.get_mut(channel) {
            c.ft.remove_viewer(viewer_ssrc);
        }
    }

    /// The channel is gone from the relay (its votes with it).
    pub fn remove_channel(&mut self, channel: &ChannelId) {
        if self.channels.remove(channel).is_some() {
            let gone = channel_ssrc(channel);
            self.poll_home.retain(|_, c| *c != gone);
        }
    }

    /// The channel's summary at `now` (members not heard within the timeout expire first);
    /// an empty summary for a channel nobody reported on.
    pub fn summary(&mut self, now: Instant, channel: &ChannelId) -> FeedbackSummary {
        let mut out = FeedbackSummary::empty(channel.clone());
        let Some(c) = self.channels.get_mut(channel) else {
            return out;
        };
        c.ft.expire(now);
        let s = c.ft.summary();
        out.viewers_heard = s.group_size;
        out.viewers_reporting = s.loss.total();
        out.loss = dist(&s.loss);
        out.jitter = dist(&s.jitter);
        out.rtt_ms = dist(&s.rtt);
        out.feedback_parent = c.parent;
        out.child_fts = c.ft.child_count() as u64;
        out.parent_group_size = c.parent.and(c.ft.parent_info()).map(|p| p.group_size);
        // Child FTs' tallies (the FT holds no votes of our own viewers: they are below).
        for ((poll, option), n) in s.votes.iter() {
            if poll == VOTERS_POLL {
                out.voters += n;
            } else {
                *out.votes
                    .entry(poll)
                    .or_default()
                    .entry(option)
                    .or_default() += n;
            }
        }
        for choices in c.votes.values() {
            if choices.is_empty() {
                continue;
            }
            out.voters += 1;
            for (&poll, &option) in choices {
                *out.votes
                    .entry(poll)
                    .or_default()
                    .entry(option)
                    .or_default() += 1;
            }
        }
        out
    }
}

/// The tally of our own viewers' latest votes, with the voter count under [`VOTERS_POLL`].
fn local_tally(votes: &HashMap<u32, BTreeMap<u32, u32>>) -> VoteTally {
    let mut t = VoteTally::default();
    for choices in votes.values() {
        if choices.is_empty() {
            continue;
        }
        t.add(VOTERS_POLL, 0, 1);
        for (&poll, &option) in choices {
            t.add(poll, option, 1);
        }
    }
    t
}

fn dist(h: &Histogram) -> QualityDistribution {
    let b = h.binning();
    QualityDistribution::from_bins(b.min, b.max, h.counts().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feedback::aggregate::write_vote;
    use rtcp_types::{ReceiverReport, ReportBlock, RtcpPacketWriter, RtcpPacketWriterExt};

    const VIEWER: (SocketAddr, ViewerOrigin) = (
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7000),
        ViewerOrigin::ViewerAddress,
    );

    fn rr(out: &mut Vec<u8>, ssrc: u32, about: u32, lost: u8) {
        let p = ReceiverReport::builder(ssrc).add_report_block(
            ReportBlock::builder(about)
                .fraction_lost(lost)
                .interarrival_jitter(900),
        );
        let mut b = vec![0u8; p.calculate_size().unwrap()];
        p.write_into(&mut b).unwrap();
        out.extend_from_slice(&b);
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "a fixed origin for the virtual clock"
    )]
    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn latest_vote_per_viewer_and_reports_counted() {
        let now = t0();
        let ch = ChannelId("news".into());
        let mut f = LiveFeedback::new();
        for v in 0..10u32 {
            let mut d = Vec::new();
            rr(&mut d, 1000 + v, 50 + v, if v < 5 { 0 } else { 128 });
            write_vote(&mut d, 1000 + v, 7, v % 3).unwrap();
            let h = f.on_viewer_rtcp(now, &ch, 50 + v, VIEWER, &d);
            assert_eq!(
                h,
                LiveHandled {
                    reports: 1,
                    votes: 1,
                    ..LiveHandled::default()
                }
            );
        }
        // Viewer 0 changes its vote to option 2; a report about another SSRC is ignored.
        let mut d = Vec::new();
        rr(&mut d, 1000, 999, 0);
        write_vote(&mut d, 1000, 7, 2).unwrap();
        assert_eq!(f.on_viewer_rtcp(now, &ch, 50, VIEWER, &d).reports, 0);
        let s = f.summary(now, &ch);
        assert_eq!(s.viewers_reporting, 10);
        assert_eq!(s.voters, 10);
        let poll = &s.votes[&7];
        // options: v%3 -> 0:{0,3,6,9} 1:{1,4,7} 2:{2,5,8}; viewer 0 moved 0 -> 2.
        assert_eq!(poll.get(&0), Some(&3));
        assert_eq!(poll.get(&1), Some(&3));
        assert_eq!(poll.get(&2), Some(&4));
        assert_eq!(s.loss.count, 10);
        assert_eq!(s.loss.counts[0], 5);
        // Quality expires, votes stay.
        let later = now + Duration::from_secs(3600);
        let s = f.summary(later, &ch);
        assert_eq!(s.viewers_reporting, 0);
        assert_eq!(s.votes[&7].values().sum::<u64>(), 10);
        // Merging two relays adds.
        let mut m = s.clone();
        m.merge(&s);
        assert_eq!(m.votes[&7][&2], 8);
    }

    #[test]
    fn garbage_is_ignored() {
        let now = t0();
        let ch = ChannelId("c".into());
        let mut f = LiveFeedback::new();
        assert_eq!(
            f.on_viewer_rtcp(now, &ch, 1, VIEWER, &[0x80, 201, 0, 7]),
            LiveHandled::default()
        );
        assert_eq!(f.summary(now, &ch).viewers_heard, 0);
    }
}
