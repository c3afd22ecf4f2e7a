//! The relay tree: a relay pulls ONE copy of a channel ingested elsewhere, for as long as it has
//! viewers of it, and re-attaches by itself when its upstream goes silent.
//!
//! How it fits: the AS declares with [`RelayHandle::set_upstream`] that a channel is carried by
//! other relays (the candidates, in order of preference). The driver then gives the channel an
//! ingest here (if it has none) and this sans-IO [`Tree`] follows it:
//!
//! ```text
//!  viewers of the channel here: 0 -> 1     Attach: the upstream adds our ingest as a
//!  (join, or a zap into the channel)       `downstream` viewer (POST /viewers or the handle)
//!  viewers: 1 -> 0 (leave, zap out, drop)  Detach: the upstream removes it; our cache is
//!                                          forgotten so no stale GOP is burst later
//!  upstream silent for `upstream_silence`  Detach (best effort) + Attach to the next candidate
//!  (or its control API refuses/fails)      (round robin over the list), RelayEvent::UpstreamLost;
//!                                          the GOP of the lost source is forgotten
//!  set_upstream again (the ingest moved)   an attached upstream still listed is kept, else
//!                                          Detach + Attach to the new list's head at once
//! ```
//!
//! Candidates should be relays with the channel's own ingest, never relays that pull it
//! themselves: two relays pulling from each other would pass packets round for ever (a relay
//! refuses a downstream copy to its own ingest, the shortest loop). The AS places them so
//! (`as-server` `service/tu/tree.rs`).
//!
//! The upstream sends the copy from its output socket to our ingest like to any viewer (its own
//! SSRC and numbering for us, the key-frame burst on attach, see [`crate::relay`]); it counts
//! the copy in [`crate::control::ChannelStats::downstreams`] and never thins it. Our viewers
//! see nothing of a re-attach but a gap: the new upstream's copy has another SSRC, and the core
//! remaps each viewer on an SSRC change so its own SSRC, sequence numbers and timestamps go on
//! without a jump (RFC 3550 section 7.2, the same mapping as a zap), starting at the burst's key
//! frame. Packets still arriving with a previous upstream's SSRC (an upstream that was only
//! slow, or in flight) are dropped at the ingest ([`Tree::accept`]), so two copies never mix.
//!
//! The core never reads the clock: `now` is an argument. The control calls to upstreams are
//! async; the driver runs each [`Action`] in a task ([`crate::driver`]) and feeds the answer
//! back with [`Tree::attach_done`].

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::control::{
    AddViewer, ChannelId, Command, Error, IngestInfo, RelayEvent, RelayHandle, ViewerId, ViewerInfo,
};
use crate::relay::Relay;

/// Default [`crate::RelayConfig::upstream_silence`]: the test pattern sends a frame every
/// 40 ms, a live encoder at least every frame interval.
pub const DEFAULT_UPSTREAM_SILENCE: Duration = Duration::from_millis(200);

/// After every candidate failed in a row, wait this long before the next round.
pub const RETRY_AFTER: Duration = Duration::from_millis(500);

/// Longest wait for an upstream's control answer (the driver's tasks time out after it).
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(1);

/// Interval of the receiver reports a pulling relay sends its upstream (RFC 3550 section
/// 6.4.2): they keep our copy alive there, so a relay that dies is dropped by its upstream
/// after the upstream's `viewer_timeout` instead of being fed for ever.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(2);

/// Previous upstreams' SSRCs remembered per channel (their late packets are dropped).
const REJECTED_SSRCS: usize = 4;

/// Viewer ids a relay uses for itself at its upstreams: bit 62 set (the AS numbers its
/// sessions from 1; the top bit is the relay's own multicast group streams,
/// [`crate::relay::GROUP_STREAM_BIT`]), then a hash of our ingest address, then the attempt
/// number.
const DOWNSTREAM_ID_BIT: u64 = 1 << 62;

/// A relay that carries a channel.
#[derive(Debug, Clone)]
pub enum Upstream {
    /// A relay in this process.
    Local(RelayHandle),
    /// A relay reached over its HTTP control API ([`crate::driver::http`]).
    Http {
        /// The control API's address.
        control: SocketAddr,
    },
}

impl Upstream {
    /// The HTTP control address, for [`Upstream::Http`].
    pub fn control(&self) -> Option<SocketAddr> {
        match self {
            Upstream::Local(_) => None,
            Upstream::Http { control } => Some(*control),
        }
    }

    /// Whether both name the same relay.
    pub fn same(&self, other: &Upstream) -> bool {
        match (self, other) {
            (Upstream::Local(a), Upstream::Local(b)) => a.same_relay(b),
            (Upstream::Http { control: a }, Upstream::Http { control: b }) => a == b,
            _ => false,
        }
    }
}

/// Why a pulled channel lost its upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostReason {
    /// No packet for [`crate::RelayConfig::upstream_silence`] while the channel had viewers.
    Silence,
    /// The upstream's control API refused or failed (or did not answer in time).
    ControlError,
}

/// Tree requests to the driver task (inside [`Command::Tree`]).
#[derive(Debug)]
pub enum TreeCommand {
    /// See [`RelayHandle::set_upstream`].
    SetUpstream(ChannelId, Vec<Upstream>, oneshot::Sender<Result<(), Error>>),
    /// See [`RelayHandle::clear_upstream`].
    ClearUpstream(ChannelId, oneshot::Sender<Result<(), Error>>),
    /// See [`RelayHandle::ingest_info`].
    IngestOf(ChannelId, oneshot::Sender<Result<IngestInfo, Error>>),
    /// The answer of an [`Action::Attach`] (sent by the driver's own task).
    AttachDone {
        /// The channel.
        channel: ChannelId,
        /// The attempt it answers.
        attempt: u64,
        /// The upstream asked.
        upstream: Upstream,
        /// The viewer id used there.
        viewer: ViewerId,
        /// Its answer.
        result: Result<ViewerInfo, String>,
    },
}

impl TreeCommand {
    /// The channel the command is about (a sharded relay routes by it).
    pub fn channel(&self) -> &ChannelId {
        match self {
            TreeCommand::SetUpstream(c, ..)
            | TreeCommand::ClearUpstream(c, _)
            | TreeCommand::IngestOf(c, _) => c,
            TreeCommand::AttachDone { channel, .. } => channel,
        }
    }
}

/// A control call the driver must make to an upstream (async; [`Tree::attach_done`] takes the
/// answer of an attach).
#[must_use = "an upstream call must be made"]
#[derive(Debug)]
pub enum Action {
    /// Ask `upstream` to add our ingest as a downstream viewer.
    Attach {
        /// The channel.
        channel: ChannelId,
        /// Attempt number, echoed in [`TreeCommand::AttachDone`].
        attempt: u64,
        /// Where to ask.
        upstream: Upstream,
        /// The request (`downstream: true`, our ingest as destination).
        request: AddViewer,
    },
    /// Ask `upstream` to remove our downstream viewer (best effort: errors are ignored).
    Detach {
        /// Where to ask.
        upstream: Upstream,
        /// Our viewer id there.
        viewer: ViewerId,
    },
}

#[derive(Debug)]
enum PullState {
    /// Not pulling (no viewers, or waiting for `retry_at`).
    Idle,
    /// An attach is under way.
    Attaching { attempt: u64, candidate: usize },
    /// Receiving from `upstream`.
    Attached {
        candidate: usize,
        upstream: Upstream,
        viewer: ViewerId,
        ssrc: u32,
        /// The upstream's RTCP address and when our next receiver report is due.
        report_to: SocketAddr,
        next_report: Instant,
    },
}

/// A receiver report due to an upstream ([`Tree::reports_due`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportDue {
    /// The pulled channel (sent from its ingest RTCP socket).
    pub channel: ChannelId,
    /// The upstream's RTCP address.
    pub dest: SocketAddr,
    /// The SSRC the upstream sends us (the report block's source).
    pub ssrc: u32,
}

#[derive(Debug)]
struct Pulled {
    candidates: Vec<Upstream>,
    /// Our ingest (where the upstream sends).
    rtp: SocketAddr,
    rtcp: SocketAddr,
    /// Candidate the next attach tries.
    next: usize,
    state: PullState,
    /// Attaches failed in a row.
    failures: usize,
    retry_at: Option<Instant>,
    /// Last packet accepted from the upstream (or the attach time).
    last_packet: Option<Instant>,
    rejected: [Option<u32>; REJECTED_SSRCS],
    rejected_next: usize,
    /// The upstream was lost or replaced: the cached GOP is from a source that is gone, so
    /// [`Tree::reconcile`] forgets it (a viewer joining meanwhile waits for the new copy).
    stale: bool,
}

impl Pulled {
    fn reject(&mut self, ssrc: u32) {
        if !self.rejected.contains(&Some(ssrc)) {
            self.rejected[self.rejected_next] = Some(ssrc);
            self.rejected_next = (self.rejected_next + 1) % REJECTED_SSRCS;
        }
    }
}

/// The pulled channels of one relay. See the module docs.
#[derive(Debug)]
pub struct Tree {
    silence: Duration,
    channels: HashMap<ChannelId, Pulled>,
    actions: VecDeque<Action>,
    events: VecDeque<RelayEvent>,
    next_attempt: u64,
}

impl Tree {
    /// No pulled channel; an attached upstream silent for `silence` is replaced.
    pub fn new(silence: Duration) -> Self {
        Tree {
            silence,
            channels: HashMap::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            next_attempt: 1,
        }
    }

    /// Whether no channel is pulled and nothing is pending.
    pub fn is_idle(&self) -> bool {
        self.channels.is_empty() && self.actions.is_empty() && self.events.is_empty()
    }

    /// Whether `channel` is pulled.
    pub fn is_pulled(&self, channel: &ChannelId) -> bool {
        self.channels.contains_key(channel)
    }

    /// Declare (or replace) the candidates of `channel`, whose ingest here is `rtp`/`rtcp`.
    /// An upstream we are attached to that stays in the list is kept; otherwise the next
    /// attach starts at the list's head.
    pub fn set_upstream(
        &mut self,
        channel: ChannelId,
        candidates: Vec<Upstream>,
        rtp: SocketAddr,
        rtcp: SocketAddr,
    ) -> Result<(), Error> {
        if candidates.is_empty() {
            return Err(Error::Invalid("no upstream candidate"));
        }
        match self.channels.get_mut(&channel) {
            None => {
                self.channels.insert(
                    channel,
                    Pulled {
                        candidates,
                        rtp,
                        rtcp,
                        next: 0,
                        state: PullState::Idle,
                        failures: 0,
                        retry_at: None,
                        last_packet: None,
                        rejected: [None; REJECTED_SSRCS],
                        rejected_next: 0,
                        stale: false,
                    },
                );
            }
            Some(p) => {
                p.rtp = rtp;
                p.rtcp = rtcp;
                p.failures = 0;
                p.retry_at = None;
                p.next = 0;
                let kept = match &mut p.state {
                    PullState::Attached {
                        candidate,
                        upstream,
                        ..
                    } => match candidates.iter().position(|c| c.same(upstream)) {
                        Some(i) => {
                            *candidate = i;
                            p.next = i;
                            true
                        }
                        None => false,
                    },
                    // An answer to an attempt of the old list is dropped (and undone).
                    PullState::Attaching { .. } => false,
                    PullState::Idle => true,
                };
                p.candidates = candidates;
                if !kept {
                    let old = std::mem::replace(&mut p.state, PullState::Idle);
                    if let PullState::Attached {
                        upstream,
                        viewer,
                        ssrc,
                        ..
                    } = old
                    {
                        p.reject(ssrc);
                        p.stale = true;
                        self.actions.push_back(Action::Detach { upstream, viewer });
                    }
                }
            }
        }
        Ok(())
    }

    /// Stop pulling `channel` (detach from its upstream). The channel itself stays.
    pub fn clear_upstream(&mut self, channel: &ChannelId) -> Result<(), Error> {
        let p = self
            .channels
            .remove(channel)
            .ok_or_else(|| Error::UnknownChannel(channel.clone()))?;
        if let PullState::Attached {
            upstream, viewer, ..
        } = p.state
        {
            self.actions.push_back(Action::Detach { upstream, viewer });
        }
        Ok(())
    }

    /// Whether an RTP datagram on `channel`'s ingest is to be forwarded: not when it carries
    /// a previous upstream's SSRC, nor (once attached) another SSRC than the upstream's copy.
    /// Accepted packets keep the upstream alive.
    pub fn accept(&mut self, now: Instant, channel: &ChannelId, datagram: &[u8]) -> bool {
        if self.channels.is_empty() || crate::rtp::is_rtcp(datagram) {
            return true;
        }
        let Some(p) = self.channels.get_mut(channel) else {
            return true;
        };
        let Some(b) = datagram.get(8..12) else {
            return true; // malformed: the core counts it
        };
        let ssrc = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let ok = match &p.state {
            PullState::Attached { ssrc: s, .. } => *s == ssrc,
            // The new upstream's burst may arrive before its control answer.
            PullState::Attaching { .. } | PullState::Idle => !p.rejected.contains(&Some(ssrc)),
        };
        if ok {
            p.last_packet = Some(now);
        }
        ok
    }

    /// The answer of an attach ([`TreeCommand::AttachDone`]).
    pub fn attach_done(
        &mut self,
        now: Instant,
        channel: &ChannelId,
        attempt: u64,
        upstream: Upstream,
        viewer: ViewerId,
        result: Result<ViewerInfo, String>,
    ) {
        let current = self.channels.get_mut(channel).and_then(|p| match p.state {
            PullState::Attaching {
                attempt: a,
                candidate,
            } if a == attempt => Some((p, candidate)),
            _ => None,
        });
        let Some((p, candidate)) = current else {
            // Stale (replaced list, cleared channel): undo a success.
            if result.is_ok() {
                self.actions.push_back(Action::Detach { upstream, viewer });
            }
            return;
        };
        match result {
            Ok(info) => {
                tracing::debug!(%channel, candidate, ssrc = info.ssrc, "upstream attached");
                let mut report_to = info.relay_rtcp;
                if report_to.ip().is_unspecified() {
                    // A wildcard bind: its control address (or this host) reaches it.
                    report_to.set_ip(
                        upstream
                            .control()
                            .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |c| c.ip()),
                    );
                }
                p.state = PullState::Attached {
                    candidate,
                    upstream: upstream.clone(),
                    viewer,
                    ssrc: info.ssrc,
                    report_to,
                    next_report: now,
                };
                p.rejected.iter_mut().for_each(|r| {
                    if *r == Some(info.ssrc) {
                        *r = None;
                    }
                });
                p.last_packet = Some(p.last_packet.map_or(now, |t| t.max(now)));
                p.failures = 0;
                p.next = candidate;
                self.events.push_back(RelayEvent::UpstreamAttached {
                    channel: channel.clone(),
                    candidate,
                    control: upstream.control(),
                });
            }
            Err(e) => {
                tracing::info!(%channel, candidate, error = %e, "upstream attach failed");
                p.state = PullState::Idle;
                p.failures += 1;
                p.next = (candidate + 1) % p.candidates.len();
                if p.failures >= p.candidates.len() {
                    p.failures = 0;
                    p.retry_at = Some(now + RETRY_AFTER);
                }
                self.events.push_back(RelayEvent::UpstreamLost {
                    channel: channel.clone(),
                    candidate,
                    reason: LostReason::ControlError,
                });
            }
        }
    }

    /// Bring every pulled channel in line with its viewers at `now`: attach when it has some
    /// and is idle (and not waiting for a retry), detach when it has none, forget channels the
    /// relay deleted, replace silent upstreams. The driver calls it after each command, timer
    /// and dropped viewer.
    pub fn reconcile(&mut self, now: Instant, relay: &mut Relay) {
        let mut gone = Vec::new();
        for (channel, p) in &mut self.channels {
            let Some(consumers) = relay.channel_consumers(channel) else {
                gone.push(channel.clone());
                continue;
            };
            if std::mem::take(&mut p.stale) {
                relay.reset_channel_cache(channel);
            }
            if consumers == 0 {
                let old = std::mem::replace(&mut p.state, PullState::Idle);
                match old {
                    PullState::Attached {
                        upstream,
                        viewer,
                        ssrc,
                        ..
                    } => {
                        tracing::debug!(%channel, "last viewer left: upstream detached");
                        p.reject(ssrc);
                        p.last_packet = None;
                        relay.reset_channel_cache(channel);
                        self.actions.push_back(Action::Detach { upstream, viewer });
                    }
                    // Its answer is undone in attach_done (stale attempt).
                    PullState::Attaching { .. } | PullState::Idle => {}
                }
                p.retry_at = None;
                p.failures = 0;
                continue;
            }
            if let PullState::Attached {
                candidate, ssrc, ..
            } = p.state
            {
                let silent = p
                    .last_packet
                    .is_none_or(|t| now.saturating_duration_since(t) >= self.silence);
                if !silent {
                    continue;
                }
                tracing::info!(%channel, candidate, "upstream silent: re-attaching");
                let PullState::Attached {
                    upstream, viewer, ..
                } = std::mem::replace(&mut p.state, PullState::Idle)
                else {
                    continue;
                };
                p.reject(ssrc);
                relay.reset_channel_cache(channel);
                p.next = (candidate + 1) % p.candidates.len();
                self.actions.push_back(Action::Detach { upstream, viewer });
                self.events.push_back(RelayEvent::UpstreamLost {
                    channel: channel.clone(),
                    candidate,
                    reason: LostReason::Silence,
                });
            }
            if matches!(p.state, PullState::Idle) && p.retry_at.is_none_or(|t| now >= t) {
                p.retry_at = None;
                let candidate = p.next % p.candidates.len();
                let attempt = self.next_attempt;
                self.next_attempt += 1;
                p.state = PullState::Attaching { attempt, candidate };
                let viewer = downstream_viewer_id(p.rtp, channel, attempt);
                self.actions.push_back(Action::Attach {
                    channel: channel.clone(),
                    attempt,
                    upstream: p.candidates[candidate].clone(),
                    request: AddViewer {
                        viewer,
                        channel: channel.clone(),
                        rtp_dest: p.rtp,
                        rtcp_dest: Some(p.rtcp),
                        // The upstream keeps the source's payload type for a downstream copy.
                        payload_type: 96,
                        downstream: true,
                    },
                });
            }
        }
        for channel in gone {
            if let Some(p) = self.channels.remove(&channel) {
                if let PullState::Attached {
                    upstream, viewer, ..
                } = p.state
                {
                    self.actions.push_back(Action::Detach { upstream, viewer });
                }
            }
        }
    }

    /// When [`Tree::reconcile`] next has timed work (an upstream's silence limit, a retry).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.channels
            .values()
            .filter_map(|p| match p.state {
                PullState::Attached { next_report, .. } => Some(
                    p.last_packet
                        .map_or(next_report, |t| next_report.min(t + self.silence)),
                ),
                PullState::Idle => p.retry_at,
                PullState::Attaching { .. } => None,
            })
            .min()
    }

    /// The receiver reports due at `now` (appended to `out`); each is due again
    /// [`REPORT_INTERVAL`] later.
    pub fn reports_due(&mut self, now: Instant, out: &mut Vec<ReportDue>) {
        for (channel, p) in &mut self.channels {
            if let PullState::Attached {
                ssrc,
                report_to,
                next_report,
                ..
            } = &mut p.state
            {
                if *next_report <= now {
                    *next_report = now + REPORT_INTERVAL;
                    out.push(ReportDue {
                        channel: channel.clone(),
                        dest: *report_to,
                        ssrc: *ssrc,
                    });
                }
            }
        }
    }

    /// The next control call to make.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event for the AS.
    pub fn poll_event(&mut self) -> Option<RelayEvent> {
        self.events.pop_front()
    }
}

/// Our viewer id at an upstream for one attach attempt (see [`DOWNSTREAM_ID_BIT`]).
fn downstream_viewer_id(ingest: SocketAddr, channel: &ChannelId, attempt: u64) -> ViewerId {
    // A fixed hasher: the id only has to differ between relays and channels.
    let mut h =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .build_hasher();
    h.write(ingest.to_string().as_bytes());
    h.write(channel.as_str().as_bytes());
    ViewerId(DOWNSTREAM_ID_BIT | (h.finish() & 0x3fff_ffff_ffff_0000) | (attempt & 0xffff))
}

impl RelayHandle {
    /// Declare that `channel` is carried by the `candidates` (other relays, in order of
    /// preference). The channel gets an ingest here if it has none; from then on
    /// [`add_viewer`](Self::add_viewer) works for it, the first viewer makes this relay pull one
    /// copy from the first reachable candidate, the last viewer's leave stops the pull, and a
    /// silent or failing upstream is replaced by the next candidate (round robin). Calling it
    /// again replaces the list (an attached upstream still in it is kept).
    pub async fn set_upstream(
        &self,
        channel: ChannelId,
        candidates: Vec<Upstream>,
    ) -> Result<(), Error> {
        self.call(|r| Command::Tree(TreeCommand::SetUpstream(channel, candidates, r)))
            .await?
    }

    /// Where the channel's existing ingest is (a pulled channel's too: after
    /// [`clear_upstream`](Self::clear_upstream) a producer can be sent there).
    pub async fn ingest_info(&self, channel: &ChannelId) -> Result<IngestInfo, Error> {
        self.call(|r| Command::Tree(TreeCommand::IngestOf(channel.clone(), r)))
            .await?
    }

    /// Stop pulling `channel` (the channel, its ingest and its viewers stay: a producer or a
    /// test pattern can feed it now; [`delete_ingest`](Self::delete_ingest) removes it).
    pub async fn clear_upstream(&self, channel: &ChannelId) -> Result<(), Error> {
        self.call(|r| Command::Tree(TreeCommand::ClearUpstream(channel.clone(), r)))
            .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{ChannelSpec, RelayConfig};

    #[expect(clippy::disallowed_methods, reason = "a test needs one base instant")]
    fn t0() -> Instant {
        Instant::now()
    }

    fn http(port: u16) -> Upstream {
        Upstream::Http {
            control: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    fn rtp(ssrc: u32) -> Vec<u8> {
        let mut v = vec![0x80, 96, 0, 1, 0, 0, 0, 0];
        v.extend_from_slice(&ssrc.to_be_bytes());
        v.push(0x41);
        v
    }

    fn info(ssrc: u32) -> ViewerInfo {
        serde_json::from_value(serde_json::json!({
            "relay_rtp": "127.0.0.1:5000",
            "relay_rtcp": "127.0.0.1:5001",
            "ssrc": ssrc,
        }))
        .unwrap()
    }

    /// The attach the tree asks for now (exactly one).
    fn attach(tree: &mut Tree) -> (u64, Upstream, ViewerId, AddViewer) {
        let mut found = None;
        while let Some(a) = tree.poll_action() {
            if let Action::Attach {
                attempt,
                upstream,
                request,
                ..
            } = a
            {
                assert!(found.is_none(), "one attach at a time");
                found = Some((attempt, upstream, request.viewer, request));
            }
        }
        found.expect("an attach")
    }

    fn detaches(tree: &mut Tree) -> usize {
        let mut n = 0;
        while let Some(a) = tree.poll_action() {
            match a {
                Action::Detach { .. } => n += 1,
                Action::Attach { .. } => panic!("unexpected attach"),
            }
        }
        n
    }

    #[test]
    fn pull_follows_viewers_and_a_silent_upstream_is_replaced() {
        let now = t0();
        let mut relay = Relay::new(RelayConfig::default(), 3);
        let ch = ChannelId::from("news");
        relay.create_channel(ChannelSpec::new("news")).unwrap();
        let mut tree = Tree::new(Duration::from_millis(200));
        let ingest = SocketAddr::from(([127, 0, 0, 1], 7000));
        tree.set_upstream(
            ch.clone(),
            vec![http(1), http(2)],
            ingest,
            SocketAddr::from(([127, 0, 0, 1], 7001)),
        )
        .unwrap();
        // No viewer: nothing to do.
        tree.reconcile(now, &mut relay);
        assert!(tree.poll_action().is_none());

        // The first viewer: attach to the first candidate, our ingest as a downstream.
        let viewer = AddViewer {
            viewer: ViewerId(1),
            channel: ch.clone(),
            rtp_dest: SocketAddr::from(([127, 0, 0, 1], 9000)),
            rtcp_dest: None,
            payload_type: 96,
            downstream: false,
        };
        relay.add_viewer(now, &viewer).unwrap();
        tree.reconcile(now, &mut relay);
        let (attempt, up, id, req) = attach(&mut tree);
        assert!(up.same(&http(1)));
        assert!(req.downstream);
        assert_eq!(req.rtp_dest, ingest);
        assert!(id.0 & DOWNSTREAM_ID_BIT != 0);
        // A second reconcile while attaching asks nothing more.
        tree.reconcile(now, &mut relay);
        assert!(tree.poll_action().is_none());
        // The burst may come before the answer.
        assert!(tree.accept(now, &ch, &rtp(111)));
        tree.attach_done(now, &ch, attempt, up, id, Ok(info(111)));
        assert!(matches!(
            tree.poll_event(),
            Some(RelayEvent::UpstreamAttached { candidate: 0, .. })
        ));
        assert!(tree.accept(now, &ch, &rtp(111)));
        assert!(
            !tree.accept(now, &ch, &rtp(222)),
            "another SSRC once attached"
        );

        // A receiver report to the upstream at once, then every REPORT_INTERVAL.
        let mut due = Vec::new();
        tree.reports_due(now, &mut due);
        assert_eq!(
            due,
            vec![ReportDue {
                channel: ch.clone(),
                dest: SocketAddr::from(([127, 0, 0, 1], 5001)),
                ssrc: 111,
            }]
        );
        tree.reports_due(now + Duration::from_millis(100), &mut due);
        assert_eq!(due.len(), 1);

        // Packets keep it; 200 ms of silence replace it by the next candidate.
        let t1 = now + Duration::from_millis(150);
        assert!(tree.accept(t1, &ch, &rtp(111)));
        assert_eq!(tree.poll_timeout(), Some(t1 + Duration::from_millis(200)));
        tree.reconcile(t1 + Duration::from_millis(199), &mut relay);
        assert!(tree.poll_action().is_none());
        let t2 = t1 + Duration::from_millis(200);
        tree.reconcile(t2, &mut relay);
        let mut detached = 0;
        let mut next = None;
        while let Some(a) = tree.poll_action() {
            match a {
                Action::Detach { upstream, .. } => {
                    assert!(upstream.same(&http(1)));
                    detached += 1;
                }
                Action::Attach {
                    attempt, upstream, ..
                } => next = Some((attempt, upstream)),
            }
        }
        assert_eq!(detached, 1);
        let (attempt2, up2) = next.expect("re-attach");
        assert!(up2.same(&http(2)));
        assert!(matches!(
            tree.poll_event(),
            Some(RelayEvent::UpstreamLost {
                candidate: 0,
                reason: LostReason::Silence,
                ..
            })
        ));
        assert!(!tree.accept(t2, &ch, &rtp(111)), "the old copy is dropped");
        assert!(tree.accept(t2, &ch, &rtp(333)));
        tree.attach_done(t2, &ch, attempt2, up2, id, Ok(info(333)));
        assert!(matches!(
            tree.poll_event(),
            Some(RelayEvent::UpstreamAttached { candidate: 1, .. })
        ));

        // The last viewer leaves: detach, and the cache is forgotten.
        relay.remove_viewer(ViewerId(1)).unwrap();
        tree.reconcile(t2, &mut relay);
        assert_eq!(detaches(&mut tree), 1);
        assert_eq!(relay.stats(t2).channels[0].cached_packets, 0);
        assert_eq!(tree.poll_timeout(), None);

        // The channel deleted: forgotten.
        relay.delete_channel(&ch).unwrap();
        tree.reconcile(t2, &mut relay);
        assert!(!tree.is_pulled(&ch));
    }

    #[test]
    fn a_downstream_copy_of_a_multicast_channel_is_unicast() {
        let now = t0();
        let config: RelayConfig = serde_json::from_value(serde_json::json!({
            "multicast": [{"channel": "news", "group": "239.1.1.1:5004"}],
        }))
        .unwrap();
        let mut relay = Relay::new(config, 3);
        relay.create_channel(ChannelSpec::new("news")).unwrap();
        let ingest = SocketAddr::from(([127, 0, 0, 1], 7000));
        let ssrc = relay
            .add_viewer(
                now,
                &AddViewer {
                    viewer: downstream_viewer_id(ingest, &ChannelId::from("news"), 1),
                    channel: ChannelId::from("news"),
                    rtp_dest: ingest,
                    rtcp_dest: None,
                    payload_type: 96,
                    downstream: true,
                },
            )
            .unwrap();
        let st = relay.stats(now);
        assert_eq!(st.channels[0].downstreams, 1);
        assert_ne!(ssrc, 0);
        // A packet goes to our ingest, nowhere else.
        let mut p = vec![0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9];
        p.push(0x65);
        relay.ingest(now, &ChannelId::from("news"), &p).unwrap();
        let q = relay.transmits();
        assert_eq!(q.len(), 1);
        assert_eq!(q.get(0).unwrap().dest, ingest);
    }

    #[test]
    fn failing_candidates_rotate_then_wait_and_stale_answers_are_undone() {
        let now = t0();
        let mut relay = Relay::new(RelayConfig::default(), 3);
        let ch = ChannelId::from("news");
        relay.create_channel(ChannelSpec::new("news")).unwrap();
        let ingest = SocketAddr::from(([127, 0, 0, 1], 7000));
        let mut tree = Tree::new(DEFAULT_UPSTREAM_SILENCE);
        assert!(tree
            .set_upstream(ch.clone(), vec![], ingest, ingest)
            .is_err());
        tree.set_upstream(ch.clone(), vec![http(1), http(2)], ingest, ingest)
            .unwrap();
        relay
            .add_viewer(
                now,
                &AddViewer {
                    viewer: ViewerId(1),
                    channel: ch.clone(),
                    rtp_dest: SocketAddr::from(([127, 0, 0, 1], 9000)),
                    rtcp_dest: None,
                    payload_type: 96,
                    downstream: false,
                },
            )
            .unwrap();
        tree.reconcile(now, &mut relay);
        let (a1, u1, id1, _) = attach(&mut tree);
        tree.attach_done(now, &ch, a1, u1, id1, Err("refused".into()));
        tree.reconcile(now, &mut relay);
        let (a2, u2, id2, _) = attach(&mut tree);
        assert!(u2.same(&http(2)), "the next candidate at once");
        tree.attach_done(now, &ch, a2, u2, id2, Err("refused".into()));
        // Both failed: wait before the next round, which starts at the head again.
        tree.reconcile(now, &mut relay);
        assert!(tree.poll_action().is_none());
        assert_eq!(tree.poll_timeout(), Some(now + RETRY_AFTER));
        tree.reconcile(now + RETRY_AFTER, &mut relay);
        let (a3, u3, id3, _) = attach(&mut tree);
        assert!(u3.same(&http(1)));

        // The list is replaced while attaching: the old attempt's success is undone.
        tree.set_upstream(ch.clone(), vec![http(5)], ingest, ingest)
            .unwrap();
        tree.attach_done(now, &ch, a3, u3, id3, Ok(info(7)));
        assert_eq!(detaches(&mut tree), 1);
        tree.reconcile(now, &mut relay);
        let (a4, u4, id4, _) = attach(&mut tree);
        assert!(u4.same(&http(5)));
        assert_ne!(id4, id3, "each attempt has its own viewer id");
        tree.attach_done(now, &ch, a4, u4, id4, Ok(info(8)));
        // Replacing with a list that keeps the upstream keeps the attachment.
        tree.set_upstream(ch.clone(), vec![http(6), http(5)], ingest, ingest)
            .unwrap();
        tree.reconcile(now, &mut relay);
        assert!(tree.poll_action().is_none());
        tree.clear_upstream(&ch).unwrap();
        assert_eq!(detaches(&mut tree), 1);
        assert!(tree.clear_upstream(&ch).is_err());
    }
}
