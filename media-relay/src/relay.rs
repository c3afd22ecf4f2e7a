//! The sans-IO relay core: channels, viewers, fan-out with per-viewer header rewrite, fast start,
//! RTCP reports and viewer liveness.
//!
//! How it fits: the driver ([`crate::driver`]) owns the sockets and the clock; it feeds this
//! core with datagrams ([`Relay::ingest`], [`Relay::handle_ingest_rtcp`],
//! [`Relay::handle_viewer_rtcp`]), control calls ([`Relay::create_channel`],
//! [`Relay::add_viewer`], [`Relay::switch_channel`], ...), send failures
//! ([`Relay::handle_send_error`]) and timer expiries ([`Relay::handle_timeout`] when
//! [`Relay::poll_timeout`] is due), and drains [`Relay::poll_transmit`] and
//! [`Relay::poll_event`] after each call. The core never reads the clock and never blocks.
//!
//! Per viewer the relay keeps its own SSRC and a mapping from the current source's sequence
//! numbers and timestamps to the viewer's (RFC 3550 section 7.2: a translator that changes the
//! SSRC owns the numbering). A mapping is made when the viewer starts on a source (join, zap,
//! or the producer restarting with a new SSRC) so that the first packet continues the viewer's
//! stream: sequence number last + 1, timestamp last + max(one frame, wallclock gap). Gaps and
//! reordering from the producer are kept, so the viewer's RTCP still reports real loss.
//!
//! Output: an ingested packet's bytes after the 12-byte fixed header (CSRCs, extension,
//! payload) are copied once into a reusable arena, whatever the number of viewers; each viewer's
//! datagram is queued as its own rewritten 12-byte header (inline in the queue entry) plus a
//! reference to that shared body. A batched driver reads the queue in place
//! ([`Relay::transmits`], [`QueuedTransmits::get`]: header and body as two slices, for a
//! gathered `sendmmsg`/GSO send) and then [`Relay::consume_transmits`]; the one-at-a-time
//! [`Relay::poll_transmit`] joins header and body in a scratch buffer. The arena, the scratch and
//! the queue keep their capacity, so a steady state forwards without allocating and without
//! copying a payload per viewer.
//!
//! Overload: the driver never waits for a socket. A datagram it could not send because the
//! socket buffer was full (EAGAIN/ENOBUFS) is reported with [`Relay::handle_send_congested`]:
//! the viewer it was for has lost a reference picture, so sending it the rest of the GOP would
//! only feed a broken decoder; the relay stops queueing that viewer's packets (counted as
//! dropped, per viewer) and resumes it at the next key frame, whose parameter sets and IDR
//! decode cleanly. Other viewers are not touched, and the fan-out starts at a different viewer
//! for every packet so that the tail of a full batch is not always the same viewers.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use crate::control::{
    AddViewer, ChannelId, ChannelSpec, ChannelStats, Error, FeedbackSummary, RelayConfig,
    RelayStats, TotalStats, ViewerId, ViewerStats,
};
use crate::fcc::{self, GopCache, MediaKind, PacketClass, PushOutcome};
use crate::feedback::live::{LiveFeedback, UpTransmit, ViewerOrigin};
use crate::rtcp;
use crate::rtp::{self, HeaderRewrite, RtpInfo};

/// Which relay socket a transmit leaves from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutSocket {
    /// The shared output RTP socket.
    Rtp,
    /// The shared output RTCP socket.
    Rtcp,
}

/// A queued datagram in two parts, borrowed from the core: the viewer's own RTP header
/// (12 bytes; empty for RTCP and for packets written whole) and the body shared by every viewer
/// of the same ingested packet. The datagram on the wire is `header` then `body`.
#[must_use = "a transmit must be sent (or counted as dropped)"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutDatagram<'a> {
    /// Socket to send from.
    pub socket: OutSocket,
    /// Destination.
    pub dest: SocketAddr,
    /// The per-viewer part (the rewritten fixed RTP header), possibly empty.
    pub header: &'a [u8],
    /// The rest of the datagram.
    pub body: &'a [u8],
    /// The viewer it is for.
    pub viewer: Option<ViewerId>,
}

impl OutDatagram<'_> {
    /// Length on the wire.
    pub fn len(&self) -> usize {
        self.header.len() + self.body.len()
    }

    /// Whether the datagram is empty (never, for what the core queues).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The core's output queue, read in place by a batched driver: index `0..len()` with
/// [`QueuedTransmits::get`], send, then [`Relay::consume_transmits`] with how many were handled
/// (sent or counted as failed).
#[derive(Debug, Clone, Copy)]
pub struct QueuedTransmits<'a> {
    queue: &'a VecDeque<OutMeta>,
    arena: &'a [u8],
}

impl<'a> QueuedTransmits<'a> {
    /// Datagrams queued.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The `i`-th queued datagram.
    pub fn get(&self, i: usize) -> Option<OutDatagram<'a>> {
        let m = self.queue.get(i)?;
        Some(OutDatagram {
            socket: m.socket,
            dest: m.dest,
            header: &m.header[..usize::from(m.header_len)],
            body: &self.arena[m.start..m.start + m.len],
            viewer: m.viewer,
        })
    }
}

/// A datagram to send, borrowed from the core's output arena.
#[must_use = "a transmit must be sent (or counted as dropped)"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit<'a> {
    /// Socket to send from.
    pub socket: OutSocket,
    /// Destination.
    pub dest: SocketAddr,
    /// The datagram.
    pub payload: &'a [u8],
    /// The viewer it is for (report send errors with [`Relay::handle_send_error`]).
    pub viewer: Option<ViewerId>,
}

/// Why a viewer was dropped without being asked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Sending to it failed with an unreachable error (ICMP port/host unreachable).
    Unreachable,
    /// It sent RTCP once, then nothing for the configured timeout.
    RtcpTimeout,
    /// It sent an RTCP BYE (RFC 3550 section 6.6).
    Bye,
    /// Its channel was deleted.
    ChannelDeleted,
}

/// Something the driver (and through it the AS) may want to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A viewer was dropped by the relay itself.
    ViewerDropped {
        /// The viewer.
        viewer: ViewerId,
        /// Why.
        reason: DropReason,
    },
}

/// Named timers (one deadline each; [`Relay::poll_timeout`] is the earliest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// Some viewer's sender report is due (RFC 3550 section 6.2).
    Report = 0,
    /// Sweep for viewers whose RTCP went silent.
    Liveness = 1,
}

const TIMER_COUNT: usize = 2;

#[derive(Debug, Clone, Copy)]
struct OutMeta {
    socket: OutSocket,
    dest: SocketAddr,
    /// The per-viewer header (first `header_len` bytes), sent before the body.
    header: [u8; rtp::FIXED_HEADER_LEN],
    header_len: u8,
    /// The body: `arena[start..start + len]`.
    start: usize,
    len: usize,
    viewer: Option<ViewerId>,
}

impl OutMeta {
    /// A datagram written whole into the arena.
    fn whole(
        socket: OutSocket,
        dest: SocketAddr,
        start: usize,
        len: usize,
        viewer: ViewerId,
    ) -> Self {
        OutMeta {
            socket,
            dest,
            header: [0; rtp::FIXED_HEADER_LEN],
            header_len: 0,
            start,
            len,
            viewer: Some(viewer),
        }
    }
}

#[derive(Debug, Default)]
struct ChannelCounters {
    packets_in: u64,
    bytes_in: u64,
    malformed: u64,
    rtcp_in: u64,
    /// RTP packets sent to downstream relays ([`AddViewer::downstream`]).
    downstream_packets: u64,
}

#[derive(Debug)]
struct Channel {
    spec: ChannelSpec,
    cache: GopCache,
    /// Slots of the viewers watching (indices into `Relay::viewers`).
    viewers: Vec<usize>,
    counters: ChannelCounters,
    /// Where the next packet's fan-out starts in `viewers` (rotates per packet).
    rotate: usize,
    /// Sent to a multicast group instead of per viewer ([`RelayConfig::multicast`]).
    group: Option<Group>,
}

/// A multicast channel's one stream: while it has members, a relay-owned "viewer" (id with
/// [`GROUP_STREAM_BIT`]) whose destination is the group; members get nothing unicast.
#[derive(Debug)]
struct Group {
    dest: SocketAddr,
    payload_type: u8,
    /// The group stream's viewer while there are members.
    stream: Option<ViewerId>,
    members: usize,
}

/// Viewer ids with this bit set are the relay's own multicast group streams (callers number
/// viewers from 0 up; one with this bit is refused).
pub const GROUP_STREAM_BIT: u64 = 1 << 63;

impl Channel {
    fn kind(&self, pt: u8) -> MediaKind {
        self.spec.media.resolve(pt)
    }
}

/// Source numbering -> viewer numbering.
#[derive(Debug, Clone, Copy)]
struct Mapping {
    src_ssrc: u32,
    seq_offset: u16,
    ts_offset: u32,
}

#[derive(Debug, Default, Clone, Copy)]
struct RrState {
    fraction_lost: u8,
    cumulative_lost: u32,
    jitter: u32,
}

#[derive(Debug)]
struct Viewer {
    id: ViewerId,
    channel: ChannelId,
    rtp_dest: SocketAddr,
    rtcp_dest: SocketAddr,
    payload_type: u8,
    ssrc: u32,
    clock_rate: u32,
    /// Another relay's ingest pulling the channel (see [`crate::tree`]).
    downstream: bool,
    mapping: Option<Mapping>,
    /// Live packets are held back until a key frame (joined a keyed channel with no cache, or
    /// thinned after a congested send).
    awaiting_key: bool,
    /// A member of a multicast channel: it receives the group stream, nothing of its own.
    member: bool,
    /// Packets not sent to this viewer because of overload (failed sends, then the rest of the
    /// GOP until the next key frame).
    packets_dropped: u64,
    /// Last sequence number / timestamp sent, and when.
    last_seq: u16,
    last_ts: u32,
    last_sent: Option<Instant>,
    packets_out: u64,
    bytes_out: u64,
    payload_octets: u64,
    burst_packets: u64,
    zaps: u64,
    rr: Option<RrState>,
    last_rtcp: Option<Instant>,
    next_report: Instant,
}

impl Viewer {
    /// The timestamp this viewer's stream has reached at `now`.
    fn current_ts(&self, now: Instant) -> u32 {
        let elapsed = self
            .last_sent
            .map(|t| now.saturating_duration_since(t))
            .unwrap_or_default();
        self.last_ts.wrapping_add(ticks(elapsed, self.clock_rate))
    }

    /// Start numbering `first` (the first packet from a new source) so it continues the stream.
    fn remap(&mut self, now: Instant, first: &RtpInfo, preceding: u16, step: u32) {
        let (seq, ts) = if self.last_sent.is_some() {
            let elapsed = self
                .last_sent
                .map(|t| ticks(now.saturating_duration_since(t), self.clock_rate))
                .unwrap_or(0);
            (
                self.last_seq.wrapping_add(1),
                self.last_ts.wrapping_add(elapsed.max(step)),
            )
        } else {
            // Fresh viewer: last_seq / last_ts hold random initial values (RFC 3550 5.1).
            (self.last_seq, self.last_ts)
        };
        self.mapping = Some(Mapping {
            src_ssrc: first.ssrc,
            seq_offset: seq.wrapping_add(preceding).wrapping_sub(first.sequence),
            ts_offset: ts.wrapping_sub(first.timestamp),
        });
    }
}

fn ticks(d: Duration, clock_rate: u32) -> u32 {
    let t = d.as_micros().saturating_mul(u128::from(clock_rate)) / 1_000_000;
    u32::try_from(t).unwrap_or(u32::MAX)
}

/// The relay core. See the module docs.
#[derive(Debug)]
pub struct Relay {
    config: RelayConfig,
    channels: HashMap<ChannelId, Channel>,
    viewers: Vec<Option<Viewer>>,
    free_slots: Vec<usize>,
    viewer_slots: HashMap<ViewerId, usize>,
    ssrcs: HashMap<u32, usize>,
    arena: Vec<u8>,
    queue: VecDeque<OutMeta>,
    /// [`Relay::poll_transmit`] joins header and body here.
    scratch: Vec<u8>,
    events: VecDeque<Event>,
    timers: [Option<Instant>; TIMER_COUNT],
    rng: u64,
    totals: TotalStats,
    /// Scratch for RTCP report blocks (kept to avoid allocating per RTCP packet).
    reports: Vec<rtcp::ReportInfo>,
    /// Per-channel RFC 5760 feedback targets fed by viewers' RTCP (quality and votes).
    feedback: LiveFeedback,
    /// Personalised channels: splicers fed by their source channels.
    personalized: crate::personalized::Registry,
}

impl Relay {
    /// A relay core with no channels. `seed` feeds SSRC and initial sequence/timestamp choice
    /// (RFC 3550 section 5.1 wants them random; tests pass a fixed seed).
    pub fn new(config: RelayConfig, seed: u64) -> Self {
        Relay {
            config,
            channels: HashMap::new(),
            viewers: Vec::new(),
            free_slots: Vec::new(),
            viewer_slots: HashMap::new(),
            ssrcs: HashMap::new(),
            arena: Vec::new(),
            queue: VecDeque::new(),
            scratch: Vec::new(),
            events: VecDeque::new(),
            timers: [None; TIMER_COUNT],
            rng: seed | 1,
            totals: TotalStats::default(),
            reports: Vec::new(),
            feedback: LiveFeedback::with_seed(seed.rotate_left(17) ^ 0xfeed),
            personalized: crate::personalized::Registry::new(),
        }
    }

    /// A random seed from the process's hash keys (for drivers; no clock read).
    pub fn random_seed() -> u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x5eed);
        h.finish()
    }

    /// The configuration.
    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    // ----- control -------------------------------------------------------------------------

    /// Create a channel (its ingest sockets are the driver's business).
    pub fn create_channel(&mut self, spec: ChannelSpec) -> Result<(), Error> {
        if self.channels.contains_key(&spec.channel) {
            return Err(Error::ChannelExists(spec.channel));
        }
        if self.channels.len() >= self.config.max_channels {
            return Err(Error::Overloaded("too many channels"));
        }
        if spec.clock_rate == 0 {
            return Err(Error::Invalid("clock rate 0"));
        }
        let cache = GopCache::new(self.config.cache);
        let group = self
            .config
            .multicast
            .iter()
            .find(|m| m.channel == spec.channel)
            .map(|m| Group {
                dest: m.group,
                payload_type: m.payload_type,
                stream: None,
                members: 0,
            });
        self.channels.insert(
            spec.channel.clone(),
            Channel {
                spec,
                cache,
                viewers: Vec::new(),
                counters: ChannelCounters::default(),
                rotate: 0,
                group,
            },
        );
        Ok(())
    }

    /// Delete a channel; its viewers are dropped ([`DropReason::ChannelDeleted`]).
    pub fn delete_channel(&mut self, channel: &ChannelId) -> Result<(), Error> {
        let ch = self
            .channels
            .remove(channel)
            .ok_or_else(|| Error::UnknownChannel(channel.clone()))?;
        self.feedback.remove_channel(channel);
        self.personalized.remove(channel);
        for slot in ch.viewers {
            if let Some(v) = self.viewers.get(slot).and_then(Option::as_ref) {
                let id = v.id;
                self.drop_viewer(id, DropReason::ChannelDeleted);
            }
        }
        Ok(())
    }

    /// Whether a channel exists.
    pub fn has_channel(&self, channel: &ChannelId) -> bool {
        self.channels.contains_key(channel)
    }

    /// Add a viewer; returns the SSRC it will receive. The channel's cached GOP is queued at
    /// once (parameter sets first), live packets follow.
    pub fn add_viewer(&mut self, now: Instant, req: &AddViewer) -> Result<u32, Error> {
        if self.viewer_slots.contains_key(&req.viewer) {
            return Err(Error::ViewerExists(req.viewer));
        }
        if req.payload_type > 127 {
            return Err(Error::Invalid("payload type above 127"));
        }
        let Some(ch) = self.channels.get(&req.channel) else {
            return Err(Error::UnknownChannel(req.channel.clone()));
        };
        if self.viewer_slots.len() >= self.config.max_viewers {
            return Err(Error::Overloaded("too many viewers"));
        }
        let group_stream = req.viewer.0 & GROUP_STREAM_BIT != 0;
        let member_of = match &ch.group {
            // A downstream relay's copy is unicast to its ingest, not a group member.
            Some(_) if group_stream || req.downstream => None,
            Some(_) => Some(self.join_group(now, &req.channel)?),
            None if group_stream => return Err(Error::Invalid("viewer id with the top bit set")),
            None => None,
        };
        let Some(ch) = self.channels.get(&req.channel) else {
            return Err(Error::UnknownChannel(req.channel.clone()));
        };
        let clock_rate = ch.spec.clock_rate;
        let mut ssrc = self.next_random() as u32;
        while ssrc == 0 || self.ssrcs.contains_key(&ssrc) {
            ssrc = self.next_random() as u32;
        }
        let r = self.next_random();
        let jitter = self.report_jitter();
        let viewer = Viewer {
            id: req.viewer,
            channel: req.channel.clone(),
            rtp_dest: req.rtp_dest,
            rtcp_dest: req.rtcp_dest.unwrap_or_else(|| {
                SocketAddr::new(req.rtp_dest.ip(), req.rtp_dest.port().wrapping_add(1))
            }),
            payload_type: req.payload_type,
            ssrc,
            clock_rate,
            downstream: req.downstream,
            mapping: None,
            awaiting_key: false,
            member: false,
            packets_dropped: 0,
            last_seq: r as u16,
            last_ts: (r >> 32) as u32,
            last_sent: None,
            packets_out: 0,
            bytes_out: 0,
            payload_octets: 0,
            burst_packets: 0,
            zaps: 0,
            rr: None,
            last_rtcp: None,
            next_report: now + jitter,
        };
        let slot = match self.free_slots.pop() {
            Some(s) => {
                self.viewers[s] = Some(viewer);
                s
            }
            None => {
                self.viewers.push(Some(viewer));
                self.viewers.len() - 1
            }
        };
        self.viewer_slots.insert(req.viewer, slot);
        self.ssrcs.insert(ssrc, slot);
        if req.downstream {
            // A relay pulling the channel: a known child of its feedback tree from now on.
            if let Some(rtcp) = self.viewers[slot].as_ref().map(|v| v.rtcp_dest) {
                self.feedback.note_downstream(&req.channel, rtcp);
            }
        }
        if let Some(ch) = self.channels.get_mut(&req.channel) {
            ch.viewers.push(slot);
        }
        self.arm(Timer::Report, now + jitter);
        if let Some(t) = self.config.viewer_timeout {
            if self.timers[Timer::Liveness as usize].is_none() {
                self.arm(Timer::Liveness, now + t);
            }
        }
        if let Some(group_ssrc) = member_of {
            if let Some(v) = self.viewers[slot].as_mut() {
                v.member = true;
            }
            return Ok(group_ssrc);
        }
        self.start_source(now, slot);
        Ok(ssrc)
    }

    /// A viewer joins `channel`'s multicast group: the group stream starts with the first
    /// member (burst from the cached GOP, like a unicast viewer). Returns its SSRC.
    fn join_group(&mut self, now: Instant, channel: &ChannelId) -> Result<u32, Error> {
        let Some((stream, dest, payload_type)) = self
            .channels
            .get(channel)
            .and_then(|c| c.group.as_ref())
            .map(|g| (g.stream, g.dest, g.payload_type))
        else {
            return Err(Error::UnknownChannel(channel.clone()));
        };
        let stream = match stream {
            Some(id) => id,
            None => {
                let mut id = ViewerId(GROUP_STREAM_BIT | (self.next_random() >> 1));
                while self.viewer_slots.contains_key(&id) {
                    id = ViewerId(GROUP_STREAM_BIT | (self.next_random() >> 1));
                }
                self.add_viewer(
                    now,
                    &AddViewer {
                        viewer: id,
                        channel: channel.clone(),
                        rtp_dest: dest,
                        rtcp_dest: Some(SocketAddr::new(dest.ip(), dest.port().wrapping_add(1))),
                        payload_type,
                        downstream: false,
                    },
                )?;
                id
            }
        };
        if let Some(g) = self
            .channels
            .get_mut(channel)
            .and_then(|c| c.group.as_mut())
        {
            g.stream = Some(stream);
            g.members += 1;
        }
        self.viewer_slots
            .get(&stream)
            .and_then(|&s| self.viewers[s].as_ref())
            .map(|v| v.ssrc)
            .ok_or(Error::UnknownViewer(stream))
    }

    /// The multicast group `channel` is sent to, if it is a multicast channel
    /// ([`RelayConfig::multicast`]).
    pub fn multicast_group(&self, channel: &ChannelId) -> Option<SocketAddr> {
        self.channels
            .get(channel)
            .and_then(|c| c.group.as_ref())
            .map(|g| g.dest)
    }

    /// Remove a viewer; queued datagrams for it are discarded, nothing more is sent.
    pub fn remove_viewer(&mut self, viewer: ViewerId) -> Result<(), Error> {
        let slot = *self
            .viewer_slots
            .get(&viewer)
            .ok_or(Error::UnknownViewer(viewer))?;
        self.queue.retain(|m| m.viewer != Some(viewer));
        self.viewer_slots.remove(&viewer);
        let left_group = self.viewers[slot]
            .as_ref()
            .filter(|v| v.member)
            .map(|v| v.channel.clone());
        if let Some(v) = self.viewers[slot].take() {
            self.ssrcs.remove(&v.ssrc);
            self.feedback.remove_viewer(&v.channel, v.ssrc);
            if let Some(ch) = self.channels.get_mut(&v.channel) {
                ch.viewers.retain(|&s| s != slot);
            }
        }
        self.free_slots.push(slot);
        if let Some(channel) = left_group {
            // The last member gone: the group stream stops (like an IGMP leave).
            let stream = self
                .channels
                .get_mut(&channel)
                .and_then(|c| c.group.as_mut())
                .and_then(|g| {
                    g.members = g.members.saturating_sub(1);
                    if g.members == 0 {
                        g.stream.take()
                    } else {
                        None
                    }
                });
            if let Some(id) = stream {
                let _ = self.remove_viewer(id);
            }
        }
        Ok(())
    }

    /// Zap: move a viewer to another channel, keeping its SSRC and numbering continuous, and
    /// burst the new channel's cached GOP.
    pub fn switch_channel(
        &mut self,
        now: Instant,
        viewer: ViewerId,
        channel: &ChannelId,
    ) -> Result<(), Error> {
        let slot = *self
            .viewer_slots
            .get(&viewer)
            .ok_or(Error::UnknownViewer(viewer))?;
        if !self.channels.contains_key(channel) {
            return Err(Error::UnknownChannel(channel.clone()));
        }
        let member = self.viewers[slot].as_ref().is_some_and(|v| v.member);
        if member || self.multicast_group(channel).is_some() {
            // The viewer itself joins another group (a new SDP: re-INVITE).
            return Err(Error::Unsupported("zap to or from a multicast channel"));
        }
        // Packets of the old channel not sent yet would break the new numbering: drop them.
        self.queue.retain(|m| m.viewer != Some(viewer));
        let Some(v) = self.viewers[slot].as_mut() else {
            return Err(Error::UnknownViewer(viewer));
        };
        let old = std::mem::replace(&mut v.channel, channel.clone());
        v.mapping = None;
        v.zaps += 1;
        if let Some(ch) = self.channels.get_mut(&old) {
            ch.viewers.retain(|&s| s != slot);
        }
        if let Some(ch) = self.channels.get_mut(channel) {
            v.clock_rate = ch.spec.clock_rate;
            ch.viewers.push(slot);
        }
        self.start_source(now, slot);
        Ok(())
    }

    /// Queue the burst for a viewer that just (re)started on its channel.
    fn start_source(&mut self, now: Instant, slot: usize) {
        let step = self.config.zap_timestamp_step;
        let Some(v) = self.viewers[slot].as_mut().filter(|v| !v.member) else {
            return;
        };
        let Some(ch) = self.channels.get(&v.channel) else {
            return;
        };
        let burst_before = v.burst_packets;
        let Some(first) = ch.cache.packets().next() else {
            // Nothing to burst: wait for a key frame when this channel is known to have them.
            v.awaiting_key = ch.cache.key_frames() > 0;
            return;
        };
        v.awaiting_key = false;
        let first_info = first.info;
        let param_sets: Vec<&[u8]> = ch.cache.missing_parameter_sets().collect();
        let n_ps = param_sets.len() as u16;
        v.remap(now, &first_info, n_ps, step);
        let Some(m) = v.mapping else { return };
        // Parameter sets first (RFC 6184 section 5.6 single NAL unit packets, same timestamp
        // as the key frame), then the cached GOP.
        for (i, ps) in param_sets.iter().enumerate() {
            let rw = HeaderRewrite {
                ssrc: v.ssrc,
                sequence: first_info
                    .sequence
                    .wrapping_add(m.seq_offset)
                    .wrapping_sub(n_ps - i as u16),
                timestamp: first_info.timestamp.wrapping_add(m.ts_offset),
                payload_type: if v.downstream {
                    first_info.payload_type
                } else {
                    v.payload_type
                },
            };
            let start = self.arena.len();
            rtp::write_header(&mut self.arena, false, &rw);
            self.arena.extend_from_slice(ps);
            let len = self.arena.len() - start;
            v.note_sent(now, &rw, ps.len(), len);
            v.burst_packets += 1;
            self.totals.burst_packets += 1;
            self.totals.packets_out += 1;
            self.totals.bytes_out += len as u64;
            self.queue
                .push_back(OutMeta::whole(OutSocket::Rtp, v.rtp_dest, start, len, v.id));
        }
        for p in ch.cache.packets() {
            if p.info.ssrc != m.src_ssrc {
                continue; // cannot happen: a new SSRC restarts the cache
            }
            let Some(body) = copy_body(&mut self.arena, &p.data) else {
                continue;
            };
            if let Some(meta) = emit(&mut self.totals, v, now, &p.data, &p.info, body) {
                v.burst_packets += 1;
                self.totals.burst_packets += 1;
                self.queue.push_back(meta);
            }
        }
        if v.downstream {
            let sent = v.burst_packets - burst_before;
            let channel = v.channel.clone();
            if let Some(ch) = self.channels.get_mut(&channel) {
                ch.counters.downstream_packets += sent;
            }
        }
    }

    // ----- input ---------------------------------------------------------------------------

    /// An RTP datagram for `channel`, from its ingest socket or an in-process feed. Malformed
    /// datagrams are counted and dropped; RTCP multiplexed on the RTP port (RFC 5761) is
    /// handed to [`Relay::handle_ingest_rtcp`].
    pub fn ingest(
        &mut self,
        now: Instant,
        channel: &ChannelId,
        datagram: &[u8],
    ) -> Result<(), Error> {
        if rtp::is_rtcp(datagram) {
            // The source address is not known here (a feed, or the driver's RTP path): only a
            // parent's group-size RSI needs none.
            let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
            return self.handle_ingest_rtcp(now, channel, unknown, datagram);
        }
        if self.personalized.is_source(channel) {
            self.feed_personalized(now, channel, datagram);
        }
        let Some(ch) = self.channels.get_mut(channel) else {
            self.totals.unmatched += 1;
            return Err(Error::UnknownChannel(channel.clone()));
        };
        let info = match rtp::parse(datagram) {
            Ok(i) => i,
            Err(_) => {
                ch.counters.malformed += 1;
                self.totals.malformed_rtp += 1;
                return Ok(());
            }
        };
        ch.counters.packets_in += 1;
        ch.counters.bytes_in += datagram.len() as u64;
        self.totals.packets_in += 1;
        let class: PacketClass = fcc::classify(ch.kind(info.payload_type), info.payload(datagram));
        let _outcome: PushOutcome = ch.cache.push(datagram, &info, &class);
        let step = self.config.zap_timestamp_step;
        if ch.viewers.is_empty() {
            return Ok(());
        }
        // One copy of the body for every viewer; each gets its own 12-byte header.
        let Some(body) = copy_body(&mut self.arena, datagram) else {
            return Ok(());
        };
        let n = ch.viewers.len();
        ch.rotate = (ch.rotate + 1) % n;
        for k in 0..n {
            let slot = ch.viewers[(ch.rotate + k) % n];
            let Some(v) = self.viewers.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            if v.member {
                continue; // it gets the group stream
            }
            if v.awaiting_key {
                if !class.key {
                    if v.mapping.is_some() {
                        // Thinned after overload: the rest of this GOP is dropped.
                        v.packets_dropped += 1;
                        self.totals.packets_dropped += 1;
                    }
                    continue;
                }
                v.awaiting_key = false;
            }
            if v.mapping.map(|m| m.src_ssrc) != Some(info.ssrc) {
                v.remap(now, &info, 0, step);
            }
            if let Some(meta) = emit(&mut self.totals, v, now, datagram, &info, body) {
                if v.downstream {
                    ch.counters.downstream_packets += 1;
                }
                self.queue.push_back(meta);
            }
        }
        Ok(())
    }

    // ----- personalised channels (crate::personalized) --------------------------------------

    /// Create a personalised channel: a channel fed by a splicer over existing channels
    /// following `spec`'s schedule from `now` on (see [`crate::personalized`]).
    pub fn create_personalized(
        &mut self,
        now: Instant,
        spec: &crate::personalized::PersonalizedSpec,
    ) -> Result<crate::personalized::PersonalizedInfo, Error> {
        self.personalized
            .check(spec, |c| self.channels.contains_key(c))?;
        self.create_channel(ChannelSpec {
            channel: spec.channel.clone(),
            media: spec.media,
            clock_rate: 90_000,
        })?;
        let r = self.next_random();
        let splice = crate::splice::SpliceConfig {
            ssrc: (r as u32).max(1),
            first_sequence: (r >> 32) as u16,
            first_timestamp: (r >> 16) as u32,
            ..crate::splice::SpliceConfig::default()
        };
        Ok(self.personalized.add(now, spec, splice))
    }

    /// Replace the schedule of a personalised channel from `now` on; its viewers and output
    /// numbering stay (see [`crate::personalized::Registry::update`]).
    pub fn update_personalized(
        &mut self,
        now: Instant,
        spec: &crate::personalized::PersonalizedSpec,
    ) -> Result<crate::personalized::PersonalizedInfo, Error> {
        let channels = &self.channels;
        self.personalized
            .update(now, spec, |c| channels.contains_key(c))
    }

    /// Counters of the personalised channels.
    pub fn personalized_stats(&self) -> Vec<crate::personalized::PersonalizedStats> {
        self.personalized.stats()
    }

    /// A packet of a source channel goes through the splicers that use it; what they send is
    /// ingested into the personalised channels (never sources themselves: no deeper recursion).
    fn feed_personalized(&mut self, now: Instant, source: &ChannelId, datagram: &[u8]) {
        let mut out = self.personalized.take_output();
        self.personalized.push(now, source, datagram, &mut out);
        for (target, packet) in out.drain(..) {
            let _ = self.ingest(now, &target, &packet);
        }
        self.personalized.put_output(out);
    }

    /// An RTCP datagram on a channel's ingest RTCP port from `from`: the producer's
    /// SR/SDES/BYE (counted, content otherwise ignored in this version), or, for a pulled
    /// channel, the group-size RSI its parent FT answers our summaries with (they go from
    /// this socket, [`Relay::poll_summary_transmit`]; see [`crate::feedback::live`]).
    pub fn handle_ingest_rtcp(
        &mut self,
        now: Instant,
        channel: &ChannelId,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<(), Error> {
        if !self.channels.contains_key(channel) {
            self.totals.unmatched += 1;
            return Err(Error::UnknownChannel(channel.clone()));
        }
        if LiveFeedback::is_peer_rtcp(datagram) {
            // Only this channel; a child's summary is no business of an ingest socket (its
            // RTCP address is no downstream copy's), so it is refused like a stranger's.
            let r = self.feedback.on_peer_rtcp(
                now,
                from,
                datagram,
                std::iter::once(channel),
                |_, _| false,
            );
            if let Some(ch) = self.channels.get_mut(channel) {
                match r {
                    Ok(_) => ch.counters.rtcp_in += 1,
                    Err(_) => {
                        ch.counters.malformed += 1;
                        self.totals.malformed_rtcp += 1;
                    }
                }
            }
            self.queue_feedback();
            return Ok(());
        }
        let Some(ch) = self.channels.get_mut(channel) else {
            self.totals.unmatched += 1;
            return Err(Error::UnknownChannel(channel.clone()));
        };
        match rtcp::parse_compound(datagram, |_| {}) {
            Ok(_) => ch.counters.rtcp_in += 1,
            Err(_) => {
                ch.counters.malformed += 1;
                self.totals.malformed_rtcp += 1;
            }
        }
        Ok(())
    }

    /// An RTCP datagram from a viewer on the relay's RTCP socket (or multiplexed on the RTP
    /// socket). Report blocks about a viewer's SSRC update that viewer; otherwise the source
    /// address identifies it. A BYE drops the viewer.
    pub fn handle_viewer_rtcp(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        if LiveFeedback::is_peer_rtcp(datagram) {
            // Another relay of the channel's feedback tree (crate::feedback::live): a child's
            // summary counts only from a known child (a downstream copy's RTCP address, or a
            // registered FT).
            let (channels, viewers) = (&self.channels, &self.viewers);
            match self
                .feedback
                .on_peer_rtcp(now, from, datagram, channels.keys(), |ch, from| {
                    is_downstream_rtcp(channels, viewers, ch, from)
                }) {
                Ok(_) => self.totals.rtcp_in += 1,
                Err(_) => self.totals.malformed_rtcp += 1,
            }
            self.queue_feedback();
            return;
        }
        let mut reports = std::mem::take(&mut self.reports);
        reports.clear();
        let summary = match rtcp::parse_compound(datagram, |r| {
            if reports.len() < 64 {
                reports.push(r)
            }
        }) {
            Ok(s) => s,
            Err(_) => {
                self.totals.malformed_rtcp += 1;
                self.reports = reports;
                return;
            }
        };
        self.totals.rtcp_in += 1;
        let mut matched: Option<usize> = None;
        for r in &reports {
            if let Some(&slot) = self.ssrcs.get(&r.source_ssrc) {
                if let Some(v) = self.viewers[slot].as_mut() {
                    v.rr = Some(RrState {
                        fraction_lost: r.fraction_lost,
                        cumulative_lost: r.cumulative_lost,
                        jitter: r.jitter,
                    });
                    v.last_rtcp = Some(now);
                    matched = Some(slot);
                }
            }
        }
        self.reports = reports;
        if matched.is_none() {
            matched = self.viewers.iter().position(|v| {
                v.as_ref()
                    .is_some_and(|v| v.rtcp_dest == from || v.rtp_dest == from)
            });
            if let Some(v) = matched.and_then(|s| self.viewers[s].as_mut()) {
                v.last_rtcp = Some(now);
            }
        }
        match matched {
            None => self.totals.unmatched += 1,
            Some(slot) if summary.bye => {
                if let Some(id) = self.viewers[slot].as_ref().map(|v| v.id) {
                    self.drop_viewer(id, DropReason::Bye);
                }
            }
            Some(slot) => {
                // A downstream relay's receiver reports only keep its copy alive.
                if let Some(v) = self.viewers[slot].as_ref().filter(|v| !v.downstream) {
                    // Votes count only from the address of a viewer of the channel (its SDP's
                    // RTCP or RTP address): a report block naming the viewer's SSRC from
                    // elsewhere still tells its reception, but puts no vote in the tally.
                    let own = v.rtcp_dest == from || v.rtp_dest == from;
                    let origin = if own
                        || is_viewer_address(&self.channels, &self.viewers, &v.channel, from)
                    {
                        ViewerOrigin::ViewerAddress
                    } else {
                        ViewerOrigin::Elsewhere
                    };
                    let _ = self.feedback.on_viewer_rtcp(
                        now,
                        &v.channel,
                        v.ssrc,
                        (from, origin),
                        datagram,
                    );
                }
            }
        }
    }

    /// The channel's live feedback (viewers reporting, loss/jitter/RTT, vote tallies) at `now`;
    /// see [`crate::feedback::live`].
    pub fn feedback(
        &mut self,
        now: Instant,
        channel: &ChannelId,
    ) -> Result<FeedbackSummary, Error> {
        if !self.channels.contains_key(channel) {
            return Err(Error::UnknownChannel(channel.clone()));
        }
        Ok(self.feedback.summary(now, channel))
    }

    /// Send `channel`'s feedback summaries (RSI + vote tally) to the parent FT `parent` (the
    /// RTCP address of the relay this one pulls the channel from, or a pure FT), or stop with
    /// `None`; see [`crate::feedback::live`].
    pub fn set_feedback_parent(
        &mut self,
        now: Instant,
        channel: &ChannelId,
        parent: Option<SocketAddr>,
    ) -> Result<(), Error> {
        if !self.channels.contains_key(channel) {
            return Err(Error::UnknownChannel(channel.clone()));
        }
        self.feedback.set_parent(now, channel, parent);
        Ok(())
    }

    /// Register `child` (the RTCP address a pure FT, or a relay told its parent by hand,
    /// sends from) as a child FT of `channel`: its summaries are merged from now on. Summaries
    /// from addresses neither registered nor a downstream relay's are dropped and counted
    /// ([`crate::control::TotalStats::feedback_refused_summaries`]). `add = false` removes it.
    pub fn set_feedback_child(
        &mut self,
        channel: &ChannelId,
        child: SocketAddr,
        add: bool,
    ) -> Result<(), Error> {
        if !self.channels.contains_key(channel) {
            return Err(Error::UnknownChannel(channel.clone()));
        }
        if !add {
            self.feedback.forbid_child(channel, child);
        } else if !self.feedback.allow_child(channel, child) {
            return Err(Error::Overloaded("too many child FTs"));
        }
        Ok(())
    }

    /// Declare `channel`'s polls: a vote for one of them arriving on another channel is not
    /// counted there ([`LiveFeedback::set_channel_polls`]).
    pub fn set_channel_polls(&mut self, channel: &ChannelId, polls: &[u32]) -> Result<(), Error> {
        if !self.channels.contains_key(channel) {
            return Err(Error::UnknownChannel(channel.clone()));
        }
        self.feedback.set_channel_polls(channel, polls);
        Ok(())
    }

    /// The next feedback summary up the tree; the driver sends it from the channel's ingest
    /// RTCP socket (the address the parent knows this relay by for the channel: it sends the
    /// copy to the ingest, and the downstream copy's RTCP address is that socket), or from the
    /// output RTCP socket when the channel has no ingest socket.
    #[must_use]
    pub fn poll_summary_transmit(&mut self) -> Option<UpTransmit> {
        self.feedback.poll_transmit_up()
    }

    fn queue_feedback(&mut self) {
        while let Some((dest, bytes)) = self.feedback.poll_transmit() {
            let start = self.arena.len();
            self.arena.extend_from_slice(&bytes);
            self.totals.rtcp_out += 1;
            self.queue.push_back(OutMeta {
                viewer: None,
                ..OutMeta::whole(OutSocket::Rtcp, dest, start, bytes.len(), ViewerId(0))
            });
        }
    }

    /// Sending to `viewer` failed. Unreachable errors (ICMP port/host/network unreachable)
    /// drop the viewer; any other error is only counted. Never affects other viewers. (A full
    /// socket buffer is better reported with [`Relay::handle_send_congested`], which also thins
    /// the viewer to the next key frame.)
    pub fn handle_send_error(&mut self, _now: Instant, viewer: ViewerId, kind: io::ErrorKind) {
        self.totals.send_errors += 1;
        if matches!(
            kind,
            io::ErrorKind::ConnectionRefused
                | io::ErrorKind::HostUnreachable
                | io::ErrorKind::NetworkUnreachable
        ) && self.viewer_slots.contains_key(&viewer)
        {
            self.drop_viewer(viewer, DropReason::Unreachable);
        }
    }

    /// A datagram for `viewer` was not sent because the socket buffer was full (EAGAIN,
    /// ENOBUFS). It is counted as a failed send and a drop for that viewer, and the viewer is
    /// thinned: its packets are dropped (and counted) until the next key frame, where it resumes
    /// with a picture its decoder can use. Other viewers are not affected.
    pub fn handle_send_congested(&mut self, _now: Instant, viewer: ViewerId) {
        self.totals.send_errors += 1;
        self.totals.packets_dropped += 1;
        let Some(&slot) = self.viewer_slots.get(&viewer) else {
            return;
        };
        if let Some(v) = self.viewers[slot].as_mut() {
            v.packets_dropped += 1;
            // A downstream relay's copy is not thinned: every viewer behind it would wait for
            // the next key frame; the lost packet is counted and the copy goes on.
            if !v.awaiting_key && !v.downstream {
                v.awaiting_key = true;
                self.totals.viewers_thinned += 1;
            }
        }
    }

    fn drop_viewer(&mut self, viewer: ViewerId, reason: DropReason) {
        if self.remove_viewer(viewer).is_ok() {
            self.totals.viewers_dropped += 1;
            self.events
                .push_back(Event::ViewerDropped { viewer, reason });
        }
    }

    // ----- timers --------------------------------------------------------------------------

    fn arm(&mut self, timer: Timer, at: Instant) {
        let t = &mut self.timers[timer as usize];
        *t = Some(t.map_or(at, |cur| cur.min(at)));
    }

    fn report_jitter(&mut self) -> Duration {
        // RFC 3550 section 6.3.1: interval times a random factor in [0.5, 1.5].
        let f = 0.5 + (self.next_random() % 1000) as f64 / 1000.0;
        self.config.rtcp_interval.mul_f64(f)
    }

    /// The earliest instant at which [`Relay::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = self.timers.iter().flatten().min().copied();
        match (t, self.feedback.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Run the timers due at `now`: sender reports (NTP time from `wall`, the wallclock the
    /// driver read together with `now`) and the viewer liveness sweep.
    pub fn handle_timeout(&mut self, now: Instant, wall: SystemTime) {
        self.feedback.set_wall(now, wall);
        if self.timers[Timer::Report as usize].is_some_and(|t| t <= now) {
            self.timers[Timer::Report as usize] = None;
            self.send_reports(now, wall);
        }
        if self.timers[Timer::Liveness as usize].is_some_and(|t| t <= now) {
            self.timers[Timer::Liveness as usize] = None;
            self.sweep_liveness(now);
        }
        if self.feedback.poll_timeout().is_some_and(|t| t <= now) {
            self.feedback.handle_timeout(now);
            self.queue_feedback();
        }
    }

    fn send_reports(&mut self, now: Instant, wall: SystemTime) {
        let ntp = rtcp::ntp_timestamp(wall);
        let mut next: Option<Instant> = None;
        for slot in 0..self.viewers.len() {
            let due = match &self.viewers[slot] {
                Some(v) => v.next_report <= now,
                None => continue,
            };
            if due {
                let jitter = self.report_jitter();
                let Some(v) = self.viewers[slot].as_mut() else {
                    continue;
                };
                v.next_report = now + jitter;
                if v.last_sent.is_some() {
                    let info = rtcp::SenderInfo {
                        ssrc: v.ssrc,
                        ntp,
                        rtp_timestamp: v.current_ts(now),
                        packet_count: v.packets_out as u32,
                        octet_count: v.payload_octets as u32,
                    };
                    let start = self.arena.len();
                    if rtcp::write_sender_report(&mut self.arena, &info, &self.config.cname).is_ok()
                    {
                        // The viewer's group size and RTCP share (crate::feedback::live).
                        self.feedback
                            .append_viewer_rsi(now, &v.channel, v.ssrc, &mut self.arena);
                        self.totals.rtcp_out += 1;
                        self.queue.push_back(OutMeta::whole(
                            OutSocket::Rtcp,
                            v.rtcp_dest,
                            start,
                            self.arena.len() - start,
                            v.id,
                        ));
                    } else {
                        self.arena.truncate(start);
                    }
                }
            }
            if let Some(v) = &self.viewers[slot] {
                next = Some(next.map_or(v.next_report, |n| n.min(v.next_report)));
            }
        }
        if let Some(n) = next {
            self.arm(Timer::Report, n);
        }
    }

    fn sweep_liveness(&mut self, now: Instant) {
        let Some(timeout) = self.config.viewer_timeout else {
            return;
        };
        let dead: Vec<ViewerId> = self
            .viewers
            .iter()
            .flatten()
            .filter(|v| {
                v.last_rtcp
                    .is_some_and(|t| now.saturating_duration_since(t) >= timeout)
            })
            .map(|v| v.id)
            .collect();
        for id in dead {
            self.drop_viewer(id, DropReason::RtcpTimeout);
        }
        if !self.viewer_slots.is_empty() {
            // Sweep often enough that a viewer is dropped within 1.25 timeouts.
            self.arm(Timer::Liveness, now + timeout / 4);
        }
    }

    // ----- output --------------------------------------------------------------------------

    /// The next datagram to send, if any, as one slice (header and body joined in a scratch
    /// buffer). Drain until `None` after every input. Batched drivers use
    /// [`Relay::transmits`] instead, which copies nothing.
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        match self.queue.pop_front() {
            Some(m) => {
                let body = &self.arena[m.start..m.start + m.len];
                let payload: &[u8] = if m.header_len == 0 {
                    body
                } else {
                    self.scratch.clear();
                    self.scratch
                        .extend_from_slice(&m.header[..usize::from(m.header_len)]);
                    self.scratch.extend_from_slice(body);
                    &self.scratch
                };
                Some(Transmit {
                    socket: m.socket,
                    dest: m.dest,
                    payload,
                    viewer: m.viewer,
                })
            }
            None => {
                self.arena.clear();
                None
            }
        }
    }

    /// The queued datagrams, read in place (see [`QueuedTransmits`]).
    pub fn transmits(&self) -> QueuedTransmits<'_> {
        QueuedTransmits {
            queue: &self.queue,
            arena: &self.arena,
        }
    }

    /// Remove the first `n` queued datagrams (the driver sent them or reported their failure).
    /// When the queue is empty the arena is reset for the next turn.
    pub fn consume_transmits(&mut self, n: usize) {
        let n = n.min(self.queue.len());
        self.queue.drain(..n);
        if self.queue.is_empty() {
            self.arena.clear();
        }
    }

    /// Datagrams queued and not yet handed out.
    pub fn pending_transmits(&self) -> usize {
        self.queue.len()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ----- stats ---------------------------------------------------------------------------

    /// A snapshot of the counters at `now`.
    pub fn stats(&self, now: Instant) -> RelayStats {
        let mut channels: Vec<ChannelStats> = self
            .channels
            .values()
            .map(|c| {
                let (cached_packets, cached_bytes) = c.cache.len();
                let downstreams = c
                    .viewers
                    .iter()
                    .filter(|&&s| {
                        self.viewers
                            .get(s)
                            .and_then(Option::as_ref)
                            .is_some_and(|v| v.downstream)
                    })
                    .count();
                ChannelStats {
                    channel: c.spec.channel.clone(),
                    packets_in: c.counters.packets_in,
                    bytes_in: c.counters.bytes_in,
                    key_frames: c.cache.key_frames(),
                    viewers: c.viewers.len() - downstreams,
                    cached_packets,
                    cached_bytes,
                    malformed: c.counters.malformed,
                    rtcp_in: c.counters.rtcp_in,
                    downstreams,
                    downstream_packets: c.counters.downstream_packets,
                }
            })
            .collect();
        channels.sort_by(|a, b| a.channel.cmp(&b.channel));
        let mut viewers: Vec<ViewerStats> = self
            .viewers
            .iter()
            .flatten()
            .filter(|v| !v.downstream)
            .map(|v| ViewerStats {
                viewer: v.id,
                channel: v.channel.clone(),
                ssrc: v.ssrc,
                packets_out: v.packets_out,
                bytes_out: v.bytes_out,
                burst_packets: v.burst_packets,
                packets_dropped: v.packets_dropped,
                zaps: v.zaps,
                rr_fraction_lost: v.rr.map(|r| r.fraction_lost),
                rr_cumulative_lost: v.rr.map(|r| r.cumulative_lost),
                rr_jitter: v.rr.map(|r| r.jitter),
                rr_age_ms: v
                    .last_rtcp
                    .map(|t| now.saturating_duration_since(t).as_millis() as u64),
            })
            .collect();
        viewers.sort_by_key(|v| v.viewer);
        let fb = self.feedback.counters();
        RelayStats {
            channels,
            viewers,
            totals: TotalStats {
                feedback_refused_summaries: fb.refused_summaries,
                feedback_refused_votes: fb.refused_votes,
                feedback_foreign_poll_votes: fb.foreign_poll_votes,
                ..self.totals.clone()
            },
        }
    }

    /// Viewers now.
    pub fn viewer_count(&self) -> usize {
        self.viewer_slots.len()
    }

    /// Everyone the channel is sent to now (viewers and downstream relays, plus one while it
    /// is a source of a personalised channel here: the splicer holds a pulled source's pull
    /// without a viewer), or `None` for an unknown channel: the reference count of a pulled
    /// channel ([`crate::tree`]).
    pub fn channel_consumers(&self, channel: &ChannelId) -> Option<usize> {
        self.channels
            .get(channel)
            .map(|c| c.viewers.len() + usize::from(self.personalized.is_source(channel)))
    }

    /// Forget the channel's cached GOP (a pulled channel that stopped flowing must not burst
    /// stale pictures to its next viewer).
    pub fn reset_channel_cache(&mut self, channel: &ChannelId) {
        let limits = self.config.cache;
        if let Some(c) = self.channels.get_mut(channel) {
            c.cache = GopCache::new(limits);
        }
    }
}

impl Viewer {
    fn note_sent(&mut self, now: Instant, rw: &HeaderRewrite, payload_len: usize, len: usize) {
        self.last_seq = rw.sequence;
        self.last_ts = rw.timestamp;
        self.last_sent = Some(now);
        self.packets_out += 1;
        self.bytes_out += len as u64;
        self.payload_octets += payload_len as u64;
    }
}

/// Whether `from` is the RTCP address of a downstream relay pulling `channel` from us (the
/// address its ingest gave in its attach, where its RTCP for the channel comes from; a
/// wildcard IP there matches by port).
fn is_downstream_rtcp(
    channels: &HashMap<ChannelId, Channel>,
    viewers: &[Option<Viewer>],
    channel: &ChannelId,
    from: SocketAddr,
) -> bool {
    any_viewer_of(channels, viewers, channel, |v| {
        v.downstream
            && (v.rtcp_dest == from
                || (v.rtcp_dest.ip().is_unspecified() && v.rtcp_dest.port() == from.port()))
    })
}

/// Whether `from` is the RTCP or RTP address of a (non-downstream) viewer of `channel`.
fn is_viewer_address(
    channels: &HashMap<ChannelId, Channel>,
    viewers: &[Option<Viewer>],
    channel: &ChannelId,
    from: SocketAddr,
) -> bool {
    any_viewer_of(channels, viewers, channel, |v| {
        !v.downstream && (v.rtcp_dest == from || v.rtp_dest == from)
    })
}

/// Whether some viewer of `channel` (downstream relays included) satisfies `pred`.
fn any_viewer_of(
    channels: &HashMap<ChannelId, Channel>,
    viewers: &[Option<Viewer>],
    channel: &ChannelId,
    pred: impl Fn(&Viewer) -> bool,
) -> bool {
    channels.get(channel).is_some_and(|c| {
        c.viewers
            .iter()
            .any(|&s| viewers.get(s).and_then(Option::as_ref).is_some_and(&pred))
    })
}

/// Copy what follows the fixed header of `datagram` (a packet [`rtp::parse`] accepted) into the
/// arena once; returns its range there.
fn copy_body(arena: &mut Vec<u8>, datagram: &[u8]) -> Option<(usize, usize)> {
    let body = datagram.get(rtp::FIXED_HEADER_LEN..)?;
    let start = arena.len();
    arena.extend_from_slice(body);
    Some((start, body.len()))
}

/// Queue `datagram` for `v` under its current mapping: its own rewritten 12-byte header plus
/// the shared `body` (the arena range [`copy_body`] returned).
fn emit(
    totals: &mut TotalStats,
    v: &mut Viewer,
    now: Instant,
    datagram: &[u8],
    info: &RtpInfo,
    body: (usize, usize),
) -> Option<OutMeta> {
    let m = v.mapping?;
    let rw = HeaderRewrite {
        ssrc: v.ssrc,
        sequence: info.sequence.wrapping_add(m.seq_offset),
        timestamp: info.timestamp.wrapping_add(m.ts_offset),
        // A downstream relay classifies the copy by its payload type: keep the source's.
        payload_type: if v.downstream {
            info.payload_type
        } else {
            v.payload_type
        },
    };
    let mut header = [0u8; rtp::FIXED_HEADER_LEN];
    header.copy_from_slice(datagram.get(..rtp::FIXED_HEADER_LEN)?);
    rtp::rewrite_header(&mut header, &rw);
    // Only move "last" forward (reordered packets from the producer keep their place).
    let forward = rw.sequence.wrapping_sub(v.last_seq) < 0x8000 || v.last_sent.is_none();
    if forward {
        v.note_sent(now, &rw, info.payload_len, datagram.len());
    } else {
        v.packets_out += 1;
        v.bytes_out += datagram.len() as u64;
        v.payload_octets += info.payload_len as u64;
    }
    totals.packets_out += 1;
    totals.bytes_out += datagram.len() as u64;
    Some(OutMeta {
        socket: OutSocket::Rtp,
        dest: v.rtp_dest,
        header,
        header_len: rtp::FIXED_HEADER_LEN as u8,
        start: body.0,
        len: body.1,
        viewer: Some(v.id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[expect(clippy::disallowed_methods, reason = "a test needs one base instant")]
    fn t0() -> Instant {
        Instant::now()
    }

    fn packet(seq: u16, key: bool) -> Vec<u8> {
        let mut v = Vec::new();
        rtp::write_header(
            &mut v,
            false,
            &HeaderRewrite {
                ssrc: 0xabcd,
                sequence: seq,
                timestamp: u32::from(seq) * 3000,
                payload_type: 96,
            },
        );
        // H.264 single NAL: IDR slice (5) or non-IDR slice (1), RFC 6184 section 5.6.
        v.push(if key { 0x65 } else { 0x41 });
        v.extend_from_slice(&[0x88; 40]);
        v
    }

    fn relay_with_viewers(n: u64) -> (Relay, ChannelId, Instant) {
        let now = t0();
        let mut r = Relay::new(RelayConfig::default(), 7);
        let ch = ChannelId::from("c");
        r.create_channel(ChannelSpec::new("c")).unwrap();
        r.ingest(now, &ch, &packet(0, true)).unwrap();
        for i in 0..n {
            r.add_viewer(
                now,
                &AddViewer {
                    viewer: ViewerId(i),
                    channel: ch.clone(),
                    rtp_dest: SocketAddr::from(([127, 0, 0, 1], 20_000 + i as u16 * 2)),
                    rtcp_dest: None,
                    payload_type: 96,
                    downstream: false,
                },
            )
            .unwrap();
        }
        let n = r.transmits().len();
        r.consume_transmits(n);
        (r, ch, now)
    }

    #[test]
    fn fan_out_shares_one_body_and_rewrites_each_header() {
        let (mut r, ch, now) = relay_with_viewers(5);
        let p = packet(1, false);
        r.ingest(now, &ch, &p).unwrap();
        let q = r.transmits();
        assert_eq!(q.len(), 5);
        let first = q.get(0).unwrap();
        let mut ssrcs = Vec::new();
        for i in 0..q.len() {
            let d = q.get(i).unwrap();
            assert_eq!(d.header.len(), rtp::FIXED_HEADER_LEN);
            assert_eq!(d.body, &p[rtp::FIXED_HEADER_LEN..]);
            // The same bytes, not a copy per viewer.
            assert_eq!(d.body.as_ptr(), first.body.as_ptr());
            let mut whole = d.header.to_vec();
            whole.extend_from_slice(d.body);
            let info = rtp::parse(&whole).unwrap();
            ssrcs.push(info.ssrc);
        }
        ssrcs.sort_unstable();
        ssrcs.dedup();
        assert_eq!(ssrcs.len(), 5, "one SSRC per viewer");
        // poll_transmit gives the same datagram joined.
        let d0 = {
            let d = q.get(0).unwrap();
            let mut w = d.header.to_vec();
            w.extend_from_slice(d.body);
            w
        };
        assert_eq!(r.poll_transmit().unwrap().payload, &d0[..]);
        let rest = r.transmits().len();
        r.consume_transmits(rest);
        assert!(r.transmits().is_empty());
    }

    #[test]
    fn fan_out_start_rotates_between_packets() {
        let (mut r, ch, now) = relay_with_viewers(3);
        let mut firsts = Vec::new();
        for seq in 1..=3 {
            r.ingest(now, &ch, &packet(seq, false)).unwrap();
            firsts.push(r.transmits().get(0).unwrap().viewer);
            let n = r.transmits().len();
            r.consume_transmits(n);
        }
        firsts.sort();
        firsts.dedup();
        assert_eq!(firsts.len(), 3, "each viewer leads once in three packets");
    }

    #[test]
    fn congested_viewer_is_thinned_to_the_next_key_frame_and_others_keep_everything() {
        let (mut r, ch, now) = relay_with_viewers(3);
        r.ingest(now, &ch, &packet(1, false)).unwrap();
        let n = r.transmits().len();
        r.consume_transmits(n);
        // Viewer 1's datagram did not fit in the socket buffer.
        r.handle_send_congested(now, ViewerId(1));
        for seq in 2..=10 {
            r.ingest(now, &ch, &packet(seq, false)).unwrap();
        }
        let count = |r: &Relay, v: u64| {
            let q = r.transmits();
            (0..q.len())
                .filter(|&i| q.get(i).unwrap().viewer == Some(ViewerId(v)))
                .count()
        };
        assert_eq!(count(&r, 0), 9);
        assert_eq!(count(&r, 1), 0, "thinned until the next key frame");
        assert_eq!(count(&r, 2), 9);
        let n = r.transmits().len();
        r.consume_transmits(n);
        // The next key frame: viewer 1 resumes, its sequence numbers show the gap honestly.
        r.ingest(now, &ch, &packet(11, true)).unwrap();
        r.ingest(now, &ch, &packet(12, false)).unwrap();
        assert_eq!(count(&r, 1), 2);
        let st = r.stats(now);
        let dropped: Vec<u64> = st.viewers.iter().map(|v| v.packets_dropped).collect();
        assert_eq!(dropped, vec![0, 1 + 9, 0]);
        assert_eq!(st.totals.packets_dropped, 10);
        assert_eq!(st.totals.viewers_thinned, 1);
        assert_eq!(st.totals.send_errors, 1);
        assert_eq!(st.totals.viewers_dropped, 0);
    }
}
