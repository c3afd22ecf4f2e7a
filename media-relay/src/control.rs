//! Relay control: the API the application server drives the relay with.
//!
//! How it fits: the types here (ids, requests, answers, stats, errors, [`RelayConfig`]) are
//! shared by the sans-IO core ([`crate::relay::Relay`]), the tokio driver ([`crate::driver`]),
//! the in-process [`RelayHandle`] the AS uses, and the JSON/HTTP API of the `media-relay`
//! binary (every type is serde). [`RelayHandle`] sends a [`Command`] over an mpsc channel to
//! the driver task and awaits the oneshot reply; it is cheap to clone. What the relay does by
//! itself (a viewer dropped because it vanished) is published as [`RelayEvent`]s on a
//! broadcast channel ([`RelayHandle::events`]), so the AS ends the session at once instead of
//! polling [`RelayHandle::stats`].
//!
//! Names follow CONTRACTS.md, section "Relay control".

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::fcc::{CacheLimits, MediaKind};

/// A channel's id (the user part of `sip:<channel>@<as-host>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChannelId(pub String);

impl ChannelId {
    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ChannelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ChannelId {
    fn from(s: &str) -> Self {
        ChannelId(s.to_owned())
    }
}

impl From<String> for ChannelId {
    fn from(s: String) -> Self {
        ChannelId(s)
    }
}

/// A viewer's id, chosen by the AS (one per media session).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ViewerId(pub u64);

impl std::fmt::Display for ViewerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

fn default_clock_rate() -> u32 {
    90_000
}

/// What to create an ingest for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSpec {
    /// The channel's id.
    pub channel: ChannelId,
    /// How to find key frames (default: by payload type, H.264 or MPEG-TS).
    #[serde(default)]
    pub media: MediaKind,
    /// RTP clock rate of the stream (default 90000, video).
    #[serde(default = "default_clock_rate")]
    pub clock_rate: u32,
}

impl ChannelSpec {
    /// A 90 kHz channel with automatic key-frame detection.
    pub fn new(channel: impl Into<ChannelId>) -> Self {
        ChannelSpec {
            channel: channel.into(),
            media: MediaKind::Auto,
            clock_rate: default_clock_rate(),
        }
    }
}

/// Where a producer sends a channel's media.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestInfo {
    /// The channel.
    pub channel: ChannelId,
    /// RTP destination for the producer.
    pub rtp_addr: SocketAddr,
    /// RTCP destination for the producer.
    pub rtcp_addr: SocketAddr,
}

/// Add a viewer to a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddViewer {
    /// The viewer's id (chosen by the caller, unique in the relay).
    pub viewer: ViewerId,
    /// The channel to watch.
    pub channel: ChannelId,
    /// Where the viewer receives RTP.
    pub rtp_dest: SocketAddr,
    /// Where the viewer receives RTCP (default: RTP port + 1, RFC 3550 section 11).
    #[serde(default)]
    pub rtcp_dest: Option<SocketAddr>,
    /// Payload type negotiated with the viewer; written into every packet it gets.
    pub payload_type: u8,
    /// A relay-to-relay copy (the "viewer" is another relay's ingest pulling the channel, see
    /// [`crate::tree`]): counted in [`ChannelStats::downstreams`] instead of the viewers, never
    /// thinned after a congested send.
    #[serde(default)]
    pub downstream: bool,
}

/// What the AS puts in its SDP answer for a viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewerInfo {
    /// The relay's RTP source address (`c=`/`m=` of the answer).
    pub relay_rtp: SocketAddr,
    /// The relay's RTCP address (`a=rtcp`; also the RTCP feedback target).
    pub relay_rtcp: SocketAddr,
    /// SSRC of the stream this viewer receives (stable across zaps).
    pub ssrc: u32,
    /// A multicast channel: `relay_rtp` is the group, and this its TTL (SDP
    /// `c=IN IP4 <group>/<ttl>`, RFC 8866 section 5.7).
    #[serde(default)]
    pub multicast_ttl: Option<u8>,
}

/// Counters of one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelStats {
    /// The channel.
    pub channel: ChannelId,
    /// RTP packets ingested.
    pub packets_in: u64,
    /// RTP bytes ingested.
    pub bytes_in: u64,
    /// Key frames seen.
    pub key_frames: u64,
    /// Viewers watching now.
    pub viewers: usize,
    /// Packets in the GOP cache now.
    pub cached_packets: usize,
    /// Bytes in the GOP cache now.
    pub cached_bytes: usize,
    /// Malformed datagrams on the ingest (RTP and RTCP).
    pub malformed: u64,
    /// RTCP packets from the producer.
    pub rtcp_in: u64,
    /// Copies of the channel sent to other relays now ([`AddViewer::downstream`]).
    #[serde(default)]
    pub downstreams: usize,
    /// RTP packets sent to downstream relays (bursts included).
    #[serde(default)]
    pub downstream_packets: u64,
}

/// Counters of one viewer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewerStats {
    /// The viewer.
    pub viewer: ViewerId,
    /// The channel it watches.
    pub channel: ChannelId,
    /// SSRC the relay sends it.
    pub ssrc: u32,
    /// RTP packets sent (burst included).
    pub packets_out: u64,
    /// RTP bytes sent.
    pub bytes_out: u64,
    /// Packets sent as fast-start bursts.
    pub burst_packets: u64,
    /// Packets not sent to this viewer because of overload (a full socket buffer, then the
    /// rest of that GOP: the viewer resumes at the next key frame).
    #[serde(default)]
    pub packets_dropped: u64,
    /// Channel switches.
    pub zaps: u64,
    /// Fraction lost of the last RR, in 1/256 (RFC 3550 section 6.4.1).
    pub rr_fraction_lost: Option<u8>,
    /// Cumulative lost of the last RR.
    pub rr_cumulative_lost: Option<u32>,
    /// Interarrival jitter of the last RR, in timestamp units.
    pub rr_jitter: Option<u32>,
    /// Milliseconds since the last RR.
    pub rr_age_ms: Option<u64>,
}

/// Relay-wide counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotalStats {
    /// RTP packets ingested.
    pub packets_in: u64,
    /// RTP packets sent to viewers.
    pub packets_out: u64,
    /// RTP bytes sent to viewers.
    pub bytes_out: u64,
    /// Burst packets sent.
    pub burst_packets: u64,
    /// RTCP packets sent (SR).
    pub rtcp_out: u64,
    /// RTCP packets received from viewers.
    pub rtcp_in: u64,
    /// Malformed RTP datagrams dropped.
    pub malformed_rtp: u64,
    /// Malformed RTCP datagrams dropped.
    pub malformed_rtcp: u64,
    /// Datagrams for unknown channels or from unknown viewers.
    pub unmatched: u64,
    /// Sends that failed.
    pub send_errors: u64,
    /// Viewers dropped because they vanished.
    pub viewers_dropped: u64,
    /// RTP packets not sent because of overload (all viewers).
    #[serde(default)]
    pub packets_dropped: u64,
    /// Times a viewer was thinned to key frames after a congested send.
    #[serde(default)]
    pub viewers_thinned: u64,
    /// RTCP feedback summaries (RSI, RFC 5760) dropped: from an address that is neither a
    /// downstream relay of the channel nor a registered child FT
    /// ([`RelayHandle::set_feedback_child`]).
    #[serde(default)]
    pub feedback_refused_summaries: u64,
    /// APP `VOTE` packets not counted: from an address that is no viewer's of the channel.
    #[serde(default)]
    pub feedback_refused_votes: u64,
    /// APP `VOTE` packets not counted: for a poll of another channel (e.g. a copy sent just
    /// before a zap).
    #[serde(default)]
    pub feedback_foreign_poll_votes: u64,
}

/// A snapshot of the relay's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayStats {
    /// Per channel.
    pub channels: Vec<ChannelStats>,
    /// Per viewer.
    pub viewers: Vec<ViewerStats>,
    /// Totals.
    pub totals: TotalStats,
}

/// Name, Prometheus type, help text and getter of one per-channel metric.
type ChannelMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ChannelStats) -> u64,
);

impl RelayStats {
    /// The counters in the Prometheus text exposition format (version 0.0.4).
    pub fn to_prometheus(&self) -> String {
        use crate::prometheus::{escape_label, write_family, write_metric};
        use std::fmt::Write as _;
        let mut out = String::new();
        let t = &self.totals;
        let totals: [(&str, &str, u64); 16] = [
            ("packets_in", "RTP packets ingested", t.packets_in),
            ("packets_out", "RTP packets sent to viewers", t.packets_out),
            ("bytes_out", "RTP bytes sent to viewers", t.bytes_out),
            (
                "burst_packets",
                "fast-start burst packets sent",
                t.burst_packets,
            ),
            ("rtcp_out", "RTCP packets sent", t.rtcp_out),
            ("rtcp_in", "RTCP packets received from viewers", t.rtcp_in),
            (
                "malformed_rtp",
                "malformed RTP datagrams dropped",
                t.malformed_rtp,
            ),
            (
                "malformed_rtcp",
                "malformed RTCP datagrams dropped",
                t.malformed_rtcp,
            ),
            (
                "unmatched",
                "datagrams for unknown channels or viewers",
                t.unmatched,
            ),
            ("send_errors", "failed sends", t.send_errors),
            (
                "viewers_dropped",
                "viewers dropped as vanished",
                t.viewers_dropped,
            ),
            (
                "packets_dropped",
                "RTP packets not sent because of overload",
                t.packets_dropped,
            ),
            (
                "viewers_thinned",
                "viewers thinned to the next key frame after a congested send",
                t.viewers_thinned,
            ),
            (
                "feedback_refused_summaries",
                "RTCP feedback summaries dropped: not from a known child FT",
                t.feedback_refused_summaries,
            ),
            (
                "feedback_refused_votes",
                "votes not counted: not from a viewer's address",
                t.feedback_refused_votes,
            ),
            (
                "feedback_foreign_poll_votes",
                "votes not counted: for a poll of another channel",
                t.feedback_foreign_poll_votes,
            ),
        ];
        for (name, help, v) in totals {
            let name = format_args!("media_relay_{name}_total");
            write_metric(&mut out, name, "counter", help, v);
        }
        write_metric(
            &mut out,
            "media_relay_channels",
            "gauge",
            "channels with an ingest",
            self.channels.len() as u64,
        );
        write_metric(
            &mut out,
            "media_relay_viewers",
            "gauge",
            "viewers",
            self.viewers.len() as u64,
        );
        let per_channel: [ChannelMetric; 6] = [
            (
                "channel_packets_in_total",
                "counter",
                "RTP packets ingested per channel",
                |c| c.packets_in,
            ),
            (
                "channel_key_frames_total",
                "counter",
                "key frames seen per channel",
                |c| c.key_frames,
            ),
            ("channel_viewers", "gauge", "viewers per channel", |c| {
                c.viewers as u64
            }),
            (
                "channel_cached_bytes",
                "gauge",
                "GOP cache bytes per channel",
                |c| c.cached_bytes as u64,
            ),
            (
                "channel_downstreams",
                "gauge",
                "copies of the channel sent to other relays (relay tree)",
                |c| c.downstreams as u64,
            ),
            (
                "channel_downstream_packets_total",
                "counter",
                "RTP packets sent to other relays per channel (relay tree)",
                |c| c.downstream_packets,
            ),
        ];
        for (name, kind, help, get) in per_channel {
            write_family(&mut out, format_args!("media_relay_{name}"), kind, help);
            for c in &self.channels {
                let _ = writeln!(
                    out,
                    "media_relay_{name}{{channel=\"{}\"}} {}",
                    escape_label(c.channel.as_str()),
                    get(c)
                );
            }
        }
        out
    }
}

/// Errors of the control API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No channel with this id.
    #[error("unknown channel {0}")]
    UnknownChannel(ChannelId),
    /// No viewer with this id.
    #[error("unknown viewer {0}")]
    UnknownViewer(ViewerId),
    /// The channel already has an ingest.
    #[error("channel {0} already exists")]
    ChannelExists(ChannelId),
    /// The viewer id is already in use.
    #[error("viewer {0} already exists")]
    ViewerExists(ViewerId),
    /// A configured limit (viewers, channels, ports) is reached.
    #[error("relay overloaded: {0}")]
    Overloaded(&'static str),
    /// The request is not valid (bad payload type, ...).
    #[error("invalid request: {0}")]
    Invalid(&'static str),
    /// The feature is not available in this build.
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    /// Socket error.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The relay task has stopped.
    #[error("relay stopped")]
    Stopped,
}

/// Relay configuration (the `[relay]` TOML table of the binary; every field has a default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RelayConfig {
    /// IP the sockets bind to.
    pub bind_ip: IpAddr,
    /// IP written into [`IngestInfo`] and [`ViewerInfo`] (default: `bind_ip`; set it when
    /// binding a wildcard address).
    pub advertise_ip: Option<IpAddr>,
    /// First port of the ingest range (0 with `ingest_port_max` 0: ephemeral ports).
    pub ingest_port_min: u16,
    /// Last port of the ingest range.
    pub ingest_port_max: u16,
    /// Output RTP port for all viewers (0: ephemeral).
    pub output_rtp_port: u16,
    /// Output RTCP port (0: RTP port + 1 when the RTP port is fixed, else ephemeral).
    pub output_rtcp_port: u16,
    /// Most viewers at once (more: [`Error::Overloaded`]).
    pub max_viewers: usize,
    /// Most channels at once.
    pub max_channels: usize,
    /// GOP cache limits per channel.
    pub cache: CacheLimits,
    /// Sender report interval (RFC 3550 section 6.2; randomised by 0.5..1.5).
    #[serde(with = "secs_f64")]
    pub rtcp_interval: Duration,
    /// A viewer that sent RTCP and then stays silent this long is dropped (None: never).
    #[serde(with = "opt_secs_f64")]
    pub viewer_timeout: Option<Duration>,
    /// Timestamp step used for continuity across a zap, in clock ticks (3000 = one frame at 30
    /// frames/s and 90 kHz); the wallclock gap is used when larger.
    pub zap_timestamp_step: u32,
    /// CNAME in the relay's SDES (RFC 3550 section 6.5.1).
    pub cname: String,
    /// A pulled channel ([`RelayHandle::set_upstream`]) with viewers whose upstream sends
    /// nothing this long is re-attached to the next candidate ([`crate::tree`]).
    #[serde(with = "secs_f64")]
    pub upstream_silence: Duration,
    /// Channels sent to a multicast group instead of per viewer (`[[relay.multicast]]`): one
    /// stream to the group while the channel has members; the AS answers viewers with
    /// `c=IN IP4 <group>/<ttl>` ([`ViewerInfo::multicast_ttl`]).
    pub multicast: Vec<MulticastChannel>,
    /// IPv4 TTL of the multicast streams (RFC 8866 section 5.7: also the SDP `c=` TTL).
    pub multicast_ttl: u8,
    /// Interface address multicast leaves from (default: the routing table's choice).
    pub multicast_interface: Option<Ipv4Addr>,
}

/// A channel sent to a multicast group ([`RelayConfig::multicast`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MulticastChannel {
    /// The channel (created as usual; the group is used from its first viewer on).
    pub channel: ChannelId,
    /// Group address and RTP port (RTCP: port + 1).
    pub group: SocketAddr,
    /// Payload type of the group stream (every member's SDP carries the same one).
    #[serde(default = "default_multicast_pt")]
    pub payload_type: u8,
}

fn default_multicast_pt() -> u8 {
    96
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            advertise_ip: None,
            ingest_port_min: 0,
            ingest_port_max: 0,
            output_rtp_port: 0,
            output_rtcp_port: 0,
            max_viewers: 10_000,
            max_channels: 1_000,
            cache: CacheLimits::default(),
            rtcp_interval: Duration::from_secs(5),
            viewer_timeout: Some(Duration::from_secs(30)),
            zap_timestamp_step: 3000,
            cname: "media-relay".to_owned(),
            upstream_silence: crate::tree::DEFAULT_UPSTREAM_SILENCE,
            multicast: Vec::new(),
            multicast_ttl: 16,
            multicast_interface: None,
        }
    }
}

mod secs_f64 {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}

mod opt_secs_f64 {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let v = Option::<f64>::deserialize(d)?;
        v.map(|v| Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Capacity of the channel that feeds packets into a channel from inside the process.
pub const FEED_CAPACITY: usize = 1024;

/// A request to the driver task, with its reply channel.
#[derive(Debug)]
pub enum Command {
    /// See [`RelayHandle::create_ingest`].
    CreateIngest(ChannelSpec, oneshot::Sender<Result<IngestInfo, Error>>),
    /// See [`RelayHandle::delete_ingest`].
    DeleteIngest(ChannelId, oneshot::Sender<Result<(), Error>>),
    /// See [`RelayHandle::attach_feed`].
    AttachFeed(
        ChannelId,
        oneshot::Sender<Result<mpsc::Sender<Bytes>, Error>>,
    ),
    /// See [`RelayHandle::start_test_pattern`].
    StartTestPattern(ChannelId, oneshot::Sender<Result<(), Error>>),
    /// See [`RelayHandle::add_viewer`].
    AddViewer(AddViewer, oneshot::Sender<Result<ViewerInfo, Error>>),
    /// See [`RelayHandle::remove_viewer`].
    RemoveViewer(ViewerId, oneshot::Sender<Result<(), Error>>),
    /// See [`RelayHandle::switch_channel`].
    SwitchChannel(ViewerId, ChannelId, oneshot::Sender<Result<(), Error>>),
    /// See [`RelayHandle::stats`].
    Stats(oneshot::Sender<RelayStats>),
    /// See [`RelayHandle::shutdown`].
    Shutdown(oneshot::Sender<()>),
    /// See [`RelayHandle::feedback`].
    Feedback(ChannelId, oneshot::Sender<Result<FeedbackSummary, Error>>),
    /// The relay tree: see [`RelayHandle::set_upstream`] and [`crate::tree`].
    Tree(crate::tree::TreeCommand),
    /// See [`RelayHandle::set_feedback_parent`].
    SetFeedbackParent(
        ChannelId,
        Option<SocketAddr>,
        oneshot::Sender<Result<(), Error>>,
    ),
    /// See [`RelayHandle::set_feedback_child`] (`true`: add, `false`: remove).
    SetFeedbackChild(
        ChannelId,
        SocketAddr,
        bool,
        oneshot::Sender<Result<(), Error>>,
    ),
    /// See [`RelayHandle::set_channel_polls`].
    SetChannelPolls(ChannelId, Vec<u32>, oneshot::Sender<Result<(), Error>>),
    /// Personalised channels: see [`RelayHandle::create_personalized`].
    Personalized(crate::personalized::PersonalizedCommand),
}

/// Events the driver keeps for a subscriber that is slow; beyond, the subscriber gets
/// `RecvError::Lagged` and should resynchronise from [`RelayHandle::stats`].
pub const EVENT_CAPACITY: usize = 1024;

/// Something the relay did by itself (see [`RelayHandle::events`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayEvent {
    /// The relay dropped a viewer without being asked: it vanished (unreachable, RTCP
    /// silence), left (RTCP BYE, RFC 3550 section 6.6), or its channel was deleted.
    ViewerDropped {
        /// The viewer.
        viewer: ViewerId,
        /// Why.
        reason: crate::relay::DropReason,
    },
    /// A pulled channel lost its upstream (silence or a control error) and is being
    /// re-attached to another candidate ([`crate::tree`]).
    UpstreamLost {
        /// The channel.
        channel: ChannelId,
        /// Index of the lost upstream in the candidate list.
        candidate: usize,
        /// Why.
        reason: crate::tree::LostReason,
    },
    /// A pulled channel is attached to an upstream (first attach or re-attach).
    UpstreamAttached {
        /// The channel.
        channel: ChannelId,
        /// Index of the upstream in the candidate list.
        candidate: usize,
        /// Its HTTP control address, for an [`crate::tree::Upstream::Http`].
        control: Option<SocketAddr>,
    },
}

/// The in-process handle to a running relay (clone it freely).
#[derive(Debug, Clone)]
pub struct RelayHandle {
    tx: mpsc::Sender<Command>,
    events: broadcast::Sender<RelayEvent>,
}

impl RelayHandle {
    /// A handle sending to a driver's command channel, with no event source (its
    /// [`events`](Self::events) stay silent).
    pub fn new(tx: mpsc::Sender<Command>) -> Self {
        Self::with_events(tx, broadcast::channel(1).0)
    }

    /// A handle sending to a driver's command channel whose driver publishes on `events`.
    pub fn with_events(tx: mpsc::Sender<Command>, events: broadcast::Sender<RelayEvent>) -> Self {
        RelayHandle { tx, events }
    }

    /// The driver's command channel (the shard router forwards commands on it).
    pub(crate) fn command_sender(&self) -> &mpsc::Sender<Command> {
        &self.tx
    }

    /// Whether both handles drive the same relay.
    pub fn same_relay(&self, other: &RelayHandle) -> bool {
        self.tx.same_channel(&other.tx)
    }

    /// The relay's events from now on (each call is a new subscriber). A subscriber that
    /// falls more than [`EVENT_CAPACITY`] events behind gets `Lagged` once and goes on.
    pub fn events(&self) -> broadcast::Receiver<RelayEvent> {
        self.events.subscribe()
    }

    pub(crate) async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, Error> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Create a channel and its ingest sockets; the answer says where a producer sends RTP.
    pub async fn create_ingest(&self, spec: ChannelSpec) -> Result<IngestInfo, Error> {
        self.call(|r| Command::CreateIngest(spec, r)).await?
    }

    /// Delete a channel, its ingest sockets and its viewers.
    pub async fn delete_ingest(&self, channel: &ChannelId) -> Result<(), Error> {
        self.call(|r| Command::DeleteIngest(channel.clone(), r))
            .await?
    }

    /// A sender that injects RTP packets into the channel as if they came from its ingest
    /// (for the built-in test pattern and tests). Dropping it detaches the feed.
    pub async fn attach_feed(&self, channel: &ChannelId) -> Result<mpsc::Sender<Bytes>, Error> {
        self.call(|r| Command::AttachFeed(channel.clone(), r))
            .await?
    }

    /// Feed the channel with the built-in H.264 test pattern (a looped clip, 25 frames/s, a key
    /// frame every 2 s); stops when the channel is deleted. Starting it twice is harmless.
    pub async fn start_test_pattern(&self, channel: &ChannelId) -> Result<(), Error> {
        self.call(|r| Command::StartTestPattern(channel.clone(), r))
            .await?
    }

    /// Add a viewer: it gets the channel's cached GOP at once, then live packets.
    pub async fn add_viewer(&self, req: AddViewer) -> Result<ViewerInfo, Error> {
        self.call(|r| Command::AddViewer(req, r)).await?
    }

    /// Remove a viewer; no packet is sent to it afterwards.
    pub async fn remove_viewer(&self, viewer: ViewerId) -> Result<(), Error> {
        self.call(|r| Command::RemoveViewer(viewer, r)).await?
    }

    /// Zap: same viewer path, new source, burst from the new channel's last key frame.
    pub async fn switch_channel(&self, viewer: ViewerId, channel: ChannelId) -> Result<(), Error> {
        self.call(|r| Command::SwitchChannel(viewer, channel, r))
            .await?
    }

    /// A snapshot of the counters.
    pub async fn stats(&self) -> Result<RelayStats, Error> {
        self.call(Command::Stats).await
    }

    /// Stop the relay task (sockets are closed when it ends).
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.call(Command::Shutdown).await
    }

    /// The channel's live feedback at this relay: viewers reporting, loss/jitter/RTT
    /// distributions and vote tallies (an empty summary when no viewer reported yet).
    pub async fn feedback(&self, channel: &ChannelId) -> Result<FeedbackSummary, Error> {
        self.call(|r| Command::Feedback(channel.clone(), r)).await?
    }
    /// Make this relay a child in `channel`'s feedback tree: its summaries (RSI + vote tally,
    /// RFC 5760) go to `parent`, the RTCP address of the relay it pulls the channel from (or a
    /// pure FT); `None` makes it the root again. See [`crate::feedback::live`].
    pub async fn set_feedback_parent(
        &self,
        channel: &ChannelId,
        parent: Option<SocketAddr>,
    ) -> Result<(), Error> {
        self.call(|r| Command::SetFeedbackParent(channel.clone(), parent, r))
            .await?
    }

    /// Register (`add`) or remove a child FT of `channel` at this relay: `child` is the RTCP
    /// address a pure FT (`media-relay ft --parent <this relay>`), or a relay told its parent
    /// with [`RelayHandle::set_feedback_parent`], sends its summaries from (for a relay: its
    /// ingest RTCP address for the channel). Summaries from any other address are dropped and
    /// counted ([`TotalStats::feedback_refused_summaries`]), except a downstream relay's that
    /// pulls the channel from here ([`crate::tree`]), which is known without registration.
    pub async fn set_feedback_child(
        &self,
        channel: &ChannelId,
        child: SocketAddr,
        add: bool,
    ) -> Result<(), Error> {
        self.call(|r| Command::SetFeedbackChild(channel.clone(), child, add, r))
            .await?
    }

    /// Declare `channel`'s polls (the ids viewers put in APP `VOTE`): a vote for one of them
    /// arriving on another channel of this relay is not counted there
    /// ([`TotalStats::feedback_foreign_poll_votes`]). Replaces the channel's previous list.
    pub async fn set_channel_polls(
        &self,
        channel: &ChannelId,
        polls: Vec<u32>,
    ) -> Result<(), Error> {
        self.call(|r| Command::SetChannelPolls(channel.clone(), polls, r))
            .await?
    }

    /// Create a personalised channel: a channel spliced from existing channels of this relay
    /// by a repeating schedule, switched at key frames, one continuous stream for its viewers
    /// (see [`crate::personalized`]). Viewers join it like any channel; `delete_ingest`
    /// removes it. Errors: `UnknownChannel` (a source), `ChannelExists`, `Invalid` (schedule).
    pub async fn create_personalized(
        &self,
        spec: crate::personalized::PersonalizedSpec,
    ) -> Result<crate::personalized::PersonalizedInfo, Error> {
        self.call(|r| {
            Command::Personalized(crate::personalized::PersonalizedCommand::Create(spec, r))
        })
        .await?
    }

    /// Counters of this relay's personalised channels (source on air, switches).
    pub async fn personalized_stats(
        &self,
    ) -> Result<Vec<crate::personalized::PersonalizedStats>, Error> {
        self.call(|r| Command::Personalized(crate::personalized::PersonalizedCommand::Stats(r)))
            .await
    }
}

/// The distribution of one quality metric over a channel's reporting viewers, in fixed bins
/// (`counts[i]` viewers fell in `[bin_min + i*w, bin_min + (i+1)*w)`, `w = (bin_max -
/// bin_min) / counts.len()`, the last bin also takes values above `bin_max`), so summaries of
/// several relays merge exactly (see [`QualityDistribution::merge`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QualityDistribution {
    /// Viewers counted.
    #[serde(default)]
    pub count: u64,
    /// Centre of the bin holding the median.
    #[serde(default)]
    pub median: Option<u32>,
    /// Centre of the bin holding the 95th percentile.
    #[serde(default)]
    pub p95: Option<u32>,
    /// Lowest binned value.
    #[serde(default)]
    pub bin_min: u32,
    /// End of the last bin.
    #[serde(default)]
    pub bin_max: u32,
    /// Viewers per bin.
    #[serde(default)]
    pub counts: Vec<u64>,
}

impl QualityDistribution {
    /// A distribution from fixed bins; fills `count`, `median` and `p95`.
    pub fn from_bins(bin_min: u32, bin_max: u32, counts: Vec<u64>) -> Self {
        let mut d = QualityDistribution {
            bin_min,
            bin_max,
            counts,
            ..Default::default()
        };
        d.recompute();
        d
    }

    /// The centre of the bin holding the `q` quantile (`0 < q <= 1`), if any viewer.
    pub fn quantile(&self, q: f64) -> Option<u32> {
        let total: u64 = self.counts.iter().sum();
        if total == 0 {
            return None;
        }
        let width =
            f64::from(self.bin_max.saturating_sub(self.bin_min).max(1)) / self.counts.len() as f64;
        let need = (total as f64 * q).ceil().max(1.0);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen as f64 >= need {
                return Some((f64::from(self.bin_min) + (i as f64 + 0.5) * width) as u32);
            }
        }
        None
    }

    fn recompute(&mut self) {
        self.count = self.counts.iter().sum();
        self.median = self.quantile(0.5);
        self.p95 = self.quantile(0.95);
    }

    /// Add another relay's distribution of the same metric. Same bins add bin by bin; an
    /// empty side takes the other's bins; different bins keep ours and only add the count.
    pub fn merge(&mut self, o: &QualityDistribution) {
        if o.counts.is_empty() {
            return;
        }
        if self.counts.is_empty() {
            *self = o.clone();
            self.recompute();
            return;
        }
        if self.bin_min == o.bin_min
            && self.bin_max == o.bin_max
            && self.counts.len() == o.counts.len()
        {
            for (a, b) in self.counts.iter_mut().zip(&o.counts) {
                *a += b;
            }
        } else {
            // Re-bin the other's bins by their centres.
            let w = f64::from(o.bin_max.saturating_sub(o.bin_min).max(1)) / o.counts.len() as f64;
            let ours = f64::from(self.bin_max.saturating_sub(self.bin_min).max(1))
                / self.counts.len() as f64;
            for (i, &c) in o.counts.iter().enumerate() {
                let centre = f64::from(o.bin_min) + (i as f64 + 0.5) * w;
                let off = (centre - f64::from(self.bin_min)).max(0.0);
                let j = ((off / ours) as usize).min(self.counts.len() - 1);
                self.counts[j] += c;
            }
        }
        self.recompute();
    }
}

/// A channel's live feedback at one relay (or merged over relays): how many viewers report,
/// their loss, jitter and round-trip time, and the vote tallies (RFC 5760 feedback target;
/// see [`crate::feedback::live`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackSummary {
    /// The channel.
    pub channel: ChannelId,
    /// Viewers whose receiver report the relay holds (heard within the member timeout).
    #[serde(default)]
    pub viewers_reporting: u64,
    /// Viewers heard at all (reports or votes) within the member timeout.
    #[serde(default)]
    pub viewers_heard: u64,
    /// Fraction lost, in 1/256 (as in an RR).
    #[serde(default)]
    pub loss: QualityDistribution,
    /// Interarrival jitter, in RTP timestamp units (90 kHz for video).
    #[serde(default)]
    pub jitter: QualityDistribution,
    /// Round-trip time in milliseconds (from LSR/DLSR of viewers' RRs).
    #[serde(default)]
    pub rtt_ms: QualityDistribution,
    /// `poll -> option -> votes`: each viewer's latest vote per poll, counted once.
    #[serde(default)]
    pub votes: BTreeMap<u32, BTreeMap<u32, u64>>,
    /// Viewers that voted in some poll.
    #[serde(default)]
    pub voters: u64,
    /// This relay sends the channel's summaries to this parent FT (it is a child in the
    /// channel's relay tree): its counts are also in the root's, so a reader merging relays
    /// skips it. `None` at the root and on a relay outside any tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback_parent: Option<SocketAddr>,
    /// Child FTs (relays below in the tree) whose summaries are merged in.
    #[serde(default)]
    pub child_fts: u64,
    /// The group size the parent FT last announced (RFC 5760 SRBT 12): this relay and its
    /// siblings, whose summary intervals share the parent's RTCP bandwidth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_group_size: Option<u64>,
}

impl FeedbackSummary {
    /// Nobody reported on `channel`.
    pub fn empty(channel: ChannelId) -> Self {
        FeedbackSummary {
            channel,
            viewers_reporting: 0,
            viewers_heard: 0,
            loss: QualityDistribution::default(),
            jitter: QualityDistribution::default(),
            rtt_ms: QualityDistribution::default(),
            votes: BTreeMap::new(),
            voters: 0,
            feedback_parent: None,
            child_fts: 0,
            parent_group_size: None,
        }
    }

    /// Fold another relay's summary of the same channel into this one (viewers at different
    /// relays are different viewers: counts add).
    pub fn merge(&mut self, o: &FeedbackSummary) {
        self.viewers_reporting += o.viewers_reporting;
        self.viewers_heard += o.viewers_heard;
        self.loss.merge(&o.loss);
        self.jitter.merge(&o.jitter);
        self.rtt_ms.merge(&o.rtt_ms);
        for (poll, opts) in &o.votes {
            let mine = self.votes.entry(*poll).or_default();
            for (opt, n) in opts {
                *mine.entry(*opt).or_default() += n;
            }
        }
        self.voters += o.voters;
        self.child_fts += o.child_fts;
    }
}
