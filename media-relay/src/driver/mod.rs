//! The tokio driver: sockets, the clock and the one task loop around the sans-IO [`Relay`].
//!
//! How it fits: [`Relay::spawn`] binds the shared output RTP/RTCP sockets, spawns the driver task and
//! returns the [`RelayHandle`]. The task owns everything: the core, the output sockets, one
//! RTP/RTCP socket pair per channel ingest, the in-process feeds ([`RelayHandle::attach_feed`])
//! and the built-in test-pattern sources. Each turn it waits for the first of: a control
//! command, a datagram on any socket or feed (polled in one `poll_fn`, rotating the start so no
//! socket starves the others), the core's timer, a test pattern's next frame. It hands the input
//! to the core, then reads whatever else is already waiting (up to
//! [`DriverOptions::ingest_batch`] inputs, never waiting) so that one flush carries many
//! packets, and sends the core's whole queue in place with [`batch::Sender`]: `sendmmsg` with the
//! viewer's header and the shared body gathered, UDP GSO for runs to one viewer
//! ([`DriverOptions::send_mode`]). Nothing waits for a socket: a full socket buffer drops those
//! datagrams and the core thins the viewers concerned to the next key frame
//! ([`Relay::handle_send_congested`]); any other send error is reported to the core for the
//! viewer concerned, so no viewer can stall the loop or the others.
//!
//! The output sockets are shared and unconnected, so Linux does not report ICMP port unreachable
//! for them (only connected UDP sockets get those errors): a viewer that vanishes is found by
//! RTCP silence ([`RelayConfig::viewer_timeout`]) or by errors a send reports at once (no route
//! to host), and until then it costs one `sendto` per packet and nothing else.
//!
//! Sharding: with [`DriverOptions::shards`] above 1, [`Relay::spawn_with`] starts that many of
//! these loops, each on its own thread with its own sockets, behind one handle; channels are
//! hashed to them ([`shard`]).
//!
//! [`clock`] is the only function in the crate that reads the clock.

use std::collections::HashMap;
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::control::{
    ChannelId, ChannelSpec, Command, Error, IngestInfo, RelayConfig, RelayEvent, RelayHandle,
    ViewerInfo, EVENT_CAPACITY, FEED_CAPACITY,
};
use crate::relay::{Event, Relay};
use crate::testpattern::{TestPattern, TestPatternConfig};

pub mod batch;
pub mod http;
pub mod shard;
mod upstream;

pub use batch::SendMode;

/// Driver tuning (not part of the relay's TOML configuration: benches and tests pick these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverOptions {
    /// How datagrams are sent (default [`SendMode::Gso`], falling back at run time).
    pub send_mode: SendMode,
    /// Most inputs handled per loop turn before the queue is sent (1: send after each input).
    pub ingest_batch: usize,
    /// Coalescing window for live forwarding (zero: off, the default). Forwarded packets may
    /// wait up to this long (plus the timer's 1 ms granularity) so that several packets per
    /// viewer leave in one GSO message; control answers, bursts and reports never wait, and a
    /// queue of [`COALESCE_MAX_DATAGRAMS`] is sent at once. A few milliseconds are nothing next
    /// to a set-top box's jitter buffer and cut the kernel's per-packet work several times.
    pub coalesce: Duration,
    /// Driver threads (default 1: one task on the caller's runtime). Above 1, channels are
    /// hashed to that many independent relays, each on its own thread with its own sockets,
    /// behind one handle ([`shard`]); the number of cores is the natural choice.
    pub shards: usize,
}

/// Queued datagrams that end a coalescing window early.
pub const COALESCE_MAX_DATAGRAMS: usize = 8192;

impl Default for DriverOptions {
    fn default() -> Self {
        DriverOptions {
            send_mode: SendMode::Gso,
            ingest_batch: 64,
            coalesce: Duration::ZERO,
            shards: 1,
        }
    }
}

/// Largest datagram read (UDP payloads above this are truncated by the kernel and then fail to
/// parse, which counts them as malformed).
const MAX_DATAGRAM: usize = 65_536;

/// Socket buffer size asked for (bursts are a GOP at once).
const SOCKET_BUFFER: usize = 4 << 20;

/// Read the monotonic and the wall clock together: the one place the relay reads time.
#[expect(
    clippy::disallowed_methods,
    reason = "the driver is the one place that feeds time to the core"
)]
pub fn clock() -> (Instant, SystemTime) {
    (Instant::now(), SystemTime::now())
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // Best effort: the kernel caps these at its own limits.
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

/// Multicast output options of a socket ([`RelayConfig::multicast`]): TTL, loopback to local
/// members (on, so a receiver on the relay's host hears the group), the interface if given.
fn set_multicast(s: &UdpSocket, config: &RelayConfig) -> io::Result<()> {
    s.set_multicast_ttl_v4(u32::from(config.multicast_ttl))?;
    s.set_multicast_loop_v4(true)?;
    if let Some(ifaddr) = config.multicast_interface {
        socket2::SockRef::from(s).set_multicast_if_v4(&ifaddr)?;
    }
    Ok(())
}

struct Ingest {
    channel: ChannelId,
    rtp: UdpSocket,
    rtcp: UdpSocket,
}

struct Feed {
    channel: ChannelId,
    rx: mpsc::Receiver<Bytes>,
}

/// What woke the loop up on the I/O side.
enum Input {
    /// RTCP (or RTP-muxed RTCP) from a viewer on an output socket.
    ViewerRtcp(SocketAddr, usize),
    IngestRtp(usize, usize),
    IngestRtcp(usize, SocketAddr, usize),
    Feed(usize, Bytes),
    FeedClosed(usize),
    RecvError,
}

struct Io {
    out_rtp: UdpSocket,
    out_rtcp: UdpSocket,
    /// What every viewer is told: the output sockets' advertised addresses, computed once
    /// at start (not a getsockname per AddViewer).
    viewer_addrs: (SocketAddr, SocketAddr),
    ingests: Vec<Ingest>,
    feeds: Vec<Feed>,
    rotate: usize,
}

impl Io {
    fn poll_input(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Input> {
        let n = 2 + 2 * self.ingests.len() + self.feeds.len();
        self.rotate = self.rotate.wrapping_add(1);
        for k in 0..n {
            let i = (self.rotate + k) % n;
            let mut rb = ReadBuf::new(buf);
            let polled = match i {
                0 => self.out_rtcp.poll_recv_from(cx, &mut rb),
                1 => self.out_rtp.poll_recv_from(cx, &mut rb),
                i if i < 2 + 2 * self.ingests.len() => {
                    let ing = &self.ingests[(i - 2) / 2];
                    let sock = if (i - 2) % 2 == 0 {
                        &ing.rtp
                    } else {
                        &ing.rtcp
                    };
                    sock.poll_recv_from(cx, &mut rb)
                }
                i => {
                    let f = i - 2 - 2 * self.ingests.len();
                    match self.feeds[f].rx.poll_recv(cx) {
                        Poll::Ready(Some(b)) => return Poll::Ready(Input::Feed(f, b)),
                        Poll::Ready(None) => return Poll::Ready(Input::FeedClosed(f)),
                        Poll::Pending => continue,
                    }
                }
            };
            match polled {
                Poll::Ready(Ok(from)) => {
                    let len = rb.filled().len();
                    return Poll::Ready(match i {
                        0 | 1 => Input::ViewerRtcp(from, len),
                        i if (i - 2) % 2 == 0 => Input::IngestRtp((i - 2) / 2, len),
                        i => Input::IngestRtcp((i - 2) / 2, from, len),
                    });
                }
                // ICMP errors reported on receive and the like: nothing to read, go on.
                Poll::Ready(Err(_)) => return Poll::Ready(Input::RecvError),
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }
}

struct State {
    relay: Relay,
    io: Io,
    patterns: HashMap<ChannelId, TestPattern>,
    config: RelayConfig,
    next_port: u16,
    send_failures: Vec<(crate::control::ViewerId, batch::SendFailure)>,
    sender: batch::Sender,
    options: DriverOptions,
    pattern_out: Vec<Bytes>,
    /// Where the core's events go ([`RelayHandle::events`]).
    events: tokio::sync::broadcast::Sender<RelayEvent>,
    /// Pulled channels ([`crate::tree`]); `tree_dirty`: a command, timer or dropped viewer
    /// since the last [`tree_turn`].
    tree: crate::tree::Tree,
    tree_dirty: bool,
    /// Our own command channel, for the tree's control tasks' answers.
    own: mpsc::WeakSender<Command>,
}

impl Relay {
    /// Start a relay on the current tokio runtime: bind the output sockets, spawn the driver
    /// task, return the handle. Must be called from within a tokio runtime.
    pub fn spawn(config: RelayConfig) -> Result<RelayHandle, Error> {
        Relay::spawn_with(config, DriverOptions::default())
    }

    /// [`Relay::spawn`] with explicit driver options (send mode, ingest batch).
    pub fn spawn_with(config: RelayConfig, options: DriverOptions) -> Result<RelayHandle, Error> {
        if options.shards > 1 {
            return shard::spawn(config, options);
        }
        let ip = config.bind_ip;
        let out_rtp = bind_udp(SocketAddr::new(ip, config.output_rtp_port))?;
        let rtcp_port = match (config.output_rtcp_port, config.output_rtp_port) {
            (0, 0) => 0,
            (0, p) => p
                .checked_add(1)
                .ok_or(Error::Invalid("output RTP port 65535"))?,
            (p, _) => p,
        };
        let out_rtcp = bind_udp(SocketAddr::new(ip, rtcp_port))?;
        if !config.multicast.is_empty() {
            for s in [&out_rtp, &out_rtcp] {
                set_multicast(s, &config)?;
            }
        }
        let viewer_addrs = (
            advertised(&config, out_rtp.local_addr()?),
            advertised(&config, out_rtcp.local_addr()?),
        );
        let sender = batch::Sender::new(options.send_mode, &out_rtp);
        tracing::debug!(mode = %sender.mode(), "relay output");
        let (tx, rx) = mpsc::channel(256);
        let (events, _) = tokio::sync::broadcast::channel(EVENT_CAPACITY);
        let upstream_silence = config.upstream_silence;
        let state = State {
            relay: Relay::new(config.clone(), Relay::random_seed()),
            io: Io {
                out_rtp,
                out_rtcp,
                viewer_addrs,
                ingests: Vec::new(),
                feeds: Vec::new(),
                rotate: 0,
            },
            patterns: HashMap::new(),
            next_port: config.ingest_port_min,
            config,
            send_failures: Vec::new(),
            sender,
            options: DriverOptions {
                ingest_batch: options.ingest_batch.max(1),
                ..options
            },
            pattern_out: Vec::new(),
            events: events.clone(),
            tree: crate::tree::Tree::new(upstream_silence),
            tree_dirty: false,
            own: tx.downgrade(),
        };
        tokio::spawn(run(state, rx));
        Ok(RelayHandle::with_events(tx, events))
    }
}

/// The driver loop; ends on [`Command::Shutdown`] or when every handle is dropped.
async fn run(mut st: State, mut commands: mpsc::Receiver<Command>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    // When live output waiting for the coalescing window started waiting.
    let mut held_since: Option<Instant> = None;
    loop {
        let deadline = [
            st.relay.poll_timeout(),
            st.patterns.values().map(TestPattern::next_timeout).min(),
            held_since.map(|t| t + st.options.coalesce),
            st.tree.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        let sleep_until = deadline
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| {
                tokio::time::Instant::from_std(clock().0 + Duration::from_secs(3600))
            });
        let io = &mut st.io;
        // Control answers, bursts and reports go out at once; live forwarding may wait for the
        // coalescing window.
        let mut send_now = true;
        tokio::select! {
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { break };
                st.tree_dirty = true;
                if !handle_command(&mut st, cmd) {
                    break;
                }
            }
            input = poll_fn(|cx| io.poll_input(cx, &mut buf)) => {
                handle_input(&mut st, input, &buf);
                // Whatever else is already there goes into the same flush (never waits: a
                // no-op waker, and the next turn's poll registers the real one).
                let mut cx = Context::from_waker(std::task::Waker::noop());
                for _ in 1..st.options.ingest_batch {
                    match st.io.poll_input(&mut cx, &mut buf) {
                        Poll::Ready(input) => handle_input(&mut st, input, &buf),
                        Poll::Pending => break,
                    }
                }
                send_now = st.options.coalesce.is_zero()
                    || st.relay.pending_transmits() >= COALESCE_MAX_DATAGRAMS;
            }
            () = tokio::time::sleep_until(sleep_until) => {
                let (now, wall) = clock();
                st.relay.handle_timeout(now, wall);
                run_patterns(&mut st, now);
                st.tree_dirty = true;
            }
        }
        if send_now {
            flush(&mut st);
            held_since = None;
        } else if held_since.is_none() && st.relay.pending_transmits() > 0 {
            held_since = Some(clock().0);
        }
        if st.tree_dirty {
            tree_turn(&mut st);
        }
    }
    flush(&mut st);
    tracing::debug!("relay driver stopped");
}

fn run_patterns(st: &mut State, now: Instant) {
    for (channel, pattern) in st.patterns.iter_mut() {
        if pattern.next_timeout() > now {
            continue;
        }
        st.pattern_out.clear();
        pattern.poll_into(now, &mut st.pattern_out);
        for p in &st.pattern_out {
            let _ = st.relay.ingest(now, channel, p);
        }
    }
}

fn handle_input(st: &mut State, input: Input, buf: &[u8]) {
    let (now, _) = clock();
    match input {
        Input::ViewerRtcp(from, len) => st.relay.handle_viewer_rtcp(now, from, &buf[..len]),
        Input::IngestRtp(i, len) => {
            if let Some(ing) = st.io.ingests.get(i) {
                if st.tree.accept(now, &ing.channel, &buf[..len]) {
                    let _ = st.relay.ingest(now, &ing.channel, &buf[..len]);
                }
            }
        }
        Input::IngestRtcp(i, from, len) => {
            if let Some(ing) = st.io.ingests.get(i) {
                let _ = st
                    .relay
                    .handle_ingest_rtcp(now, &ing.channel, from, &buf[..len]);
            }
        }
        Input::Feed(i, packet) => {
            if let Some(f) = st.io.feeds.get(i) {
                let _ = st.relay.ingest(now, &f.channel, &packet);
            }
        }
        Input::FeedClosed(i) => {
            st.io.feeds.swap_remove(i);
        }
        Input::RecvError => {}
    }
}

/// Send everything the core queued; never waits.
fn flush(st: &mut State) {
    // Feedback summaries up the relay tree go from the channel's ingest RTCP socket: the
    // address the parent knows this relay by as the channel's child (crate::feedback::live).
    while let Some(t) = st.relay.poll_summary_transmit() {
        let sock = st
            .io
            .ingests
            .iter()
            .find(|i| i.channel == t.channel)
            .map_or(&st.io.out_rtcp, |i| &i.rtcp);
        // Best effort, never waits: the next summary follows on the FT's interval.
        let _ = sock.try_send_to(&t.payload, t.dest);
    }
    let q = st.relay.transmits();
    let n = st
        .sender
        .flush(&q, &st.io.out_rtp, &st.io.out_rtcp, &mut st.send_failures);
    st.relay.consume_transmits(n);
    if !st.send_failures.is_empty() {
        let (now, _) = clock();
        for (v, f) in st.send_failures.drain(..) {
            match f {
                batch::SendFailure::Congested => st.relay.handle_send_congested(now, v),
                batch::SendFailure::Error(kind) => st.relay.handle_send_error(now, v, kind),
            }
        }
    }
    while let Some(ev) = st.relay.poll_event() {
        st.tree_dirty = true;
        match ev {
            Event::ViewerDropped { viewer, reason } => {
                tracing::info!(%viewer, ?reason, "viewer dropped");
                // No subscriber is fine: nobody asked.
                let _ = st.events.send(RelayEvent::ViewerDropped { viewer, reason });
            }
        }
    }
}

fn advertised(config: &RelayConfig, local: SocketAddr) -> SocketAddr {
    let ip: IpAddr = config.advertise_ip.unwrap_or(local.ip());
    SocketAddr::new(ip, local.port())
}

fn bind_ingest(st: &mut State) -> Result<(UdpSocket, UdpSocket), Error> {
    let ip = st.config.bind_ip;
    let (min, max) = (st.config.ingest_port_min, st.config.ingest_port_max);
    if min == 0 || max <= min {
        let rtp = bind_udp(SocketAddr::new(ip, 0))?;
        let rtcp = bind_udp(SocketAddr::new(ip, 0))?;
        return Ok((rtp, rtcp));
    }
    // RTP on even ports, RTCP on the next one (RFC 3550 section 11).
    let first = min + (min % 2);
    let pairs = usize::from((max - first) / 2 + 1);
    for _ in 0..pairs {
        let mut p = st.next_port.max(first);
        p += p % 2;
        if p >= max {
            p = first;
        }
        st.next_port = p.saturating_add(2);
        if let Ok(rtp) = bind_udp(SocketAddr::new(ip, p)) {
            if let Ok(rtcp) = bind_udp(SocketAddr::new(ip, p + 1)) {
                return Ok((rtp, rtcp));
            }
        }
    }
    Err(Error::Overloaded("no free ingest port pair"))
}

fn create_ingest(st: &mut State, spec: ChannelSpec) -> Result<IngestInfo, Error> {
    if st.relay.has_channel(&spec.channel) {
        return Err(Error::ChannelExists(spec.channel));
    }
    let (rtp, rtcp) = bind_ingest(st)?;
    let channel = spec.channel.clone();
    st.relay.create_channel(spec)?;
    let info = IngestInfo {
        channel: channel.clone(),
        rtp_addr: advertised(&st.config, rtp.local_addr()?),
        rtcp_addr: advertised(&st.config, rtcp.local_addr()?),
    };
    st.io.ingests.push(Ingest { channel, rtp, rtcp });
    Ok(info)
}

/// Returns false when the loop must stop.
fn handle_command(st: &mut State, cmd: Command) -> bool {
    let (now, _) = clock();
    match cmd {
        Command::CreateIngest(spec, reply) => {
            let _ = reply.send(create_ingest(st, spec));
        }
        Command::DeleteIngest(channel, reply) => {
            let r = st.relay.delete_channel(&channel);
            st.io.ingests.retain(|i| i.channel != channel);
            st.io.feeds.retain(|f| f.channel != channel);
            st.patterns.remove(&channel);
            let _ = reply.send(r);
        }
        Command::AttachFeed(channel, reply) => {
            let r = if st.relay.has_channel(&channel) {
                let (tx, rx) = mpsc::channel(FEED_CAPACITY);
                st.io.feeds.push(Feed { channel, rx });
                Ok(tx)
            } else {
                Err(Error::UnknownChannel(channel))
            };
            let _ = reply.send(r);
        }
        Command::StartTestPattern(channel, reply) => {
            let r = if st.relay.has_channel(&channel) {
                let config = TestPatternConfig {
                    packetizer: crate::h264::PacketizerConfig {
                        ssrc: Relay::random_seed() as u32,
                        ..Default::default()
                    },
                    ..Default::default()
                };
                st.patterns
                    .entry(channel)
                    .or_insert_with(|| TestPattern::new(config, now));
                Ok(())
            } else {
                Err(Error::UnknownChannel(channel))
            };
            let _ = reply.send(r);
        }
        Command::AddViewer(req, reply) => {
            let (relay_rtp, relay_rtcp) = st.io.viewer_addrs;
            if req.downstream && is_own_ingest(st, req.rtp_dest) {
                let _ = reply.send(Err(Error::Invalid("a relay cannot pull from itself")));
                return true;
            }
            let group = st.relay.multicast_group(&req.channel);
            let r = st.relay.add_viewer(now, &req).map(|ssrc| ViewerInfo {
                relay_rtp: group.unwrap_or(relay_rtp),
                relay_rtcp,
                ssrc,
                multicast_ttl: group.map(|_| st.config.multicast_ttl),
            });
            let _ = reply.send(r);
        }
        Command::RemoveViewer(viewer, reply) => {
            let _ = reply.send(st.relay.remove_viewer(viewer));
        }
        Command::SwitchChannel(viewer, channel, reply) => {
            let _ = reply.send(st.relay.switch_channel(now, viewer, &channel));
        }
        Command::Stats(reply) => {
            let _ = reply.send(st.relay.stats(now));
        }
        Command::Shutdown(reply) => {
            let _ = reply.send(());
            return false;
        }
        Command::Feedback(channel, reply) => {
            let _ = reply.send(st.relay.feedback(now, &channel));
        }
        Command::Tree(cmd) => tree_command(st, now, cmd),
        Command::SetFeedbackParent(channel, parent, reply) => {
            let _ = reply.send(st.relay.set_feedback_parent(now, &channel, parent));
        }
        Command::SetFeedbackChild(channel, child, add, reply) => {
            let _ = reply.send(st.relay.set_feedback_child(&channel, child, add));
        }
        Command::SetChannelPolls(channel, polls, reply) => {
            let _ = reply.send(st.relay.set_channel_polls(&channel, &polls));
        }
        Command::Personalized(cmd) => {
            crate::personalized::handle_command(&mut st.relay, now, cmd);
        }
    }
    true
}

/// Whether `dest` is one of this relay's ingest RTP sockets (a downstream copy to it would
/// loop).
fn is_own_ingest(st: &State, dest: SocketAddr) -> bool {
    st.io.ingests.iter().any(|i| {
        i.rtp
            .local_addr()
            .is_ok_and(|a| a == dest || advertised(&st.config, a) == dest)
    })
}

/// The relay tree's commands ([`crate::tree`]).
fn tree_command(st: &mut State, now: Instant, cmd: crate::tree::TreeCommand) {
    use crate::tree::TreeCommand;
    match cmd {
        TreeCommand::SetUpstream(channel, candidates, reply) => {
            let _ = reply.send(set_upstream(st, channel, candidates));
        }
        TreeCommand::ClearUpstream(channel, reply) => {
            let r = st.tree.clear_upstream(&channel);
            if r.is_ok() {
                // No longer pulled: the channel's feedback tree ends here (crate::feedback::live).
                let _ = st.relay.set_feedback_parent(now, &channel, None);
            }
            let _ = reply.send(r);
        }
        TreeCommand::IngestOf(channel, reply) => {
            let r = match st.io.ingests.iter().find(|i| i.channel == channel) {
                Some(i) => (|| {
                    Ok(IngestInfo {
                        channel: channel.clone(),
                        rtp_addr: advertised(&st.config, i.rtp.local_addr()?),
                        rtcp_addr: advertised(&st.config, i.rtcp.local_addr()?),
                    })
                })(),
                None => Err(Error::UnknownChannel(channel)),
            };
            let _ = reply.send(r);
        }
        TreeCommand::AttachDone {
            channel,
            attempt,
            upstream,
            viewer,
            result,
        } => {
            // The relay we pull from is the channel's parent FT: our summaries go to its RTCP
            // address (crate::feedback::live).
            if let Ok(info) = &result {
                let mut parent = info.relay_rtcp;
                if parent.ip().is_unspecified() {
                    // A wildcard bind: its control address (or this host) reaches it.
                    parent.set_ip(
                        upstream
                            .control()
                            .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.ip()),
                    );
                }
                let _ = st.relay.set_feedback_parent(now, &channel, Some(parent));
            }
            st.tree
                .attach_done(now, &channel, attempt, upstream, viewer, result)
        }
    }
}

fn set_upstream(
    st: &mut State,
    channel: ChannelId,
    candidates: Vec<crate::tree::Upstream>,
) -> Result<(), Error> {
    if candidates.is_empty() {
        return Err(Error::Invalid("no upstream candidate"));
    }
    if !st.relay.has_channel(&channel) {
        create_ingest(st, ChannelSpec::new(channel.clone()))?;
    }
    let ing = st
        .io
        .ingests
        .iter()
        .find(|i| i.channel == channel)
        .ok_or(Error::Invalid("the channel has no ingest socket"))?;
    let rtp = advertised(&st.config, ing.rtp.local_addr()?);
    let rtcp = advertised(&st.config, ing.rtcp.local_addr()?);
    st.tree.set_upstream(channel, candidates, rtp, rtcp)
}

/// Bring the pulled channels in line with their viewers; start the control calls; publish
/// the tree's events.
fn tree_turn(st: &mut State) {
    st.tree_dirty = false;
    if st.tree.is_idle() {
        return;
    }
    let (now, _) = clock();
    st.tree.reconcile(now, &mut st.relay);
    // Receiver reports to the upstreams: our copies stay alive there while we run.
    let mut due = Vec::new();
    st.tree.reports_due(now, &mut due);
    for r in due {
        if let Some(ing) = st.io.ingests.iter().find(|i| i.channel == r.channel) {
            let rr = upstream::receiver_report(r.ssrc);
            let _ = ing.rtcp.try_send_to(&rr, r.dest);
        }
    }
    while let Some(action) = st.tree.poll_action() {
        upstream::spawn_action(action, st.own.clone());
    }
    while let Some(ev) = st.tree.poll_event() {
        tracing::info!(?ev, "relay tree");
        let _ = st.events.send(ev);
    }
}
