//! The run driver: many sans-IO [`Ue`]s against one AS over a few UDP sockets and one task.
//!
//! # Multiplexing
//!
//! - **SIP**: `scenario.sip_sockets` sockets; UE `i` sends from socket `i % n`. Every Call-ID
//!   the UE makes starts with `ue<i>-`, so the driver routes a response or an AS request (BYE,
//!   NOTIFY) to its UE from the Call-ID alone, without parsing the whole message twice.
//! - **RTP**: `scenario.rtp_sockets` sockets shared by all UEs; viewers are told apart by the
//!   relay's per-viewer SSRC. An AS that names it in SDP (`a=ssrc` in the 200 OK, and in the
//!   re-INVITE that moves a viewer to another relay) lets the UE know its SSRC before any
//!   packet: packets with an SSRC no UE knows yet are kept for 2 s (bounded) and replayed to
//!   the UE that learns it, because the relay's key-frame burst often arrives before the 200
//!   OK. For an AS that does not (learnt from the first join's answer), the UE learns its SSRC
//!   from the first packet of a new path; to make that unambiguous, at most one UE per RTP
//!   socket may wait for a new path at a time (a join or a BYE + INVITE zap picks a socket with
//!   no such UE, and waits a little when all are taken). RTCP is offered on the RTP port
//!   (`a=rtcp`), so the relay's sender reports land on the same socket; they are routed by
//!   their SSRC (the relay's SSRC for the viewer) like RTP. A viewer's own RTCP
//!   ([`crate::rtcp`]) goes out from its RTP socket; the relay tells viewers apart by the
//!   report block's SSRC, not by address. A producer sends its RTP from its RTP socket. Few sockets are needed, so ports never run
//!   short and no fd limit has to be raised; addresses over 127.0.0.0/8 are therefore not
//!   needed either.
//! - **Producers** (`[producers]`) are extra UEs after the viewers: each creates a personal
//!   channel; viewers send `viewer_share` of their joins and zaps to the channels created so far.
//! - **Faults** (`[[faults]]`) are injected at their time by the caller's
//!   [`FaultInjector`] (the lab stops a relay); [`run`] refuses a scenario with faults.
//! - **Votes** (`[votes]`): before the first join the driver declares one poll per polled
//!   channel over the AS's HTTP API ([`crate::api`]); each voting viewer gets an instant in
//!   the window and an option (from its own RNG stream seeded by the scenario's seed), and at
//!   that instant votes ([`Ue::vote`]) in the poll of the channel it watches, or tries again
//!   200 ms later (until the window ends) when it watches no polled channel or is busy. A
//!   viewer does not zap or leave within [`VOTE_HOLD`] of its vote. Once every vote is cast
//!   (or missed), a task reads `GET /api/polls/{id}` every 100 ms (at most
//!   [`TALLY_WAIT`]) until every tally equals the votes cast, then reads each channel's
//!   quality summary; a run without votes but with an API reads the quality summaries a
//!   second before the end. Both happen while the viewers still watch.
//! - **Tasks**: one reader task per socket (a few) batches datagrams with their arrival time
//!   into one channel; one loop owns every UE, the timer heap and the scenario actions.
//!
//! The loop is the only code that reads the clock (its private `now()`); the UEs get `now` as an argument.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::scenario::{Fault, Scenario};
use crate::stats::{
    ChannelQualityFigures, FaultRecord, PollFigures, RunStats, TimelinePoint, ViewerStats,
    VoteFigures,
};
use crate::ue::{Transmit, Ue, UeConfig, UeEvent, ZapMethod};

/// Errors of a run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A socket could not be bound or queried.
    #[error("socket: {0}")]
    Socket(#[from] std::io::Error),
    /// The scenario is invalid.
    #[error(transparent)]
    Scenario(#[from] crate::scenario::ScenarioError),
}

/// How long after the end of the scenario the UEs get to finish their BYEs.
const DRAIN: Duration = Duration::from_secs(4);
/// How long a UE may hold its RTP socket's "new path" slot without a packet.
const PATH_WAIT: Duration = Duration::from_secs(5);
/// A viewer neither zaps nor leaves this soon after its vote (its vote reaches the relay
/// before the relay moves it to another channel).
pub const VOTE_HOLD: Duration = Duration::from_millis(500);
/// A voter that cannot vote yet (no polled channel, busy) tries again after this.
const VOTE_RETRY: Duration = Duration::from_millis(200);
/// Longest wait, from the last vote, for the AS's tallies to equal the votes cast.
pub const TALLY_WAIT: Duration = Duration::from_secs(30);
/// Between two reads of the tallies.
const TALLY_READ_EVERY: Duration = Duration::from_millis(100);

/// The votes of a run (`[votes]`).
#[derive(Debug)]
struct VotePlan {
    /// `(poll id, channel)`.
    polls: Vec<(u32, String)>,
    options: Vec<String>,
    /// The option each UE will vote for (`None`: not a voter).
    option_of: Vec<Option<u32>>,
    /// When each voter votes (or tries again).
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
    window_end: Instant,
    /// Votes are repeated until here.
    close: Instant,
    /// Per poll, per option.
    cast: Vec<Vec<u64>>,
    pending: usize,
    missed: u64,
    last_vote: Option<Instant>,
    voted_at: Vec<Option<Instant>>,
    /// The run's start.
    start: Instant,
}

/// What the tally reader found.
#[derive(Debug, Default)]
struct TallyOutcome {
    time_to_exact: Option<Duration>,
    /// Per poll: the last tally read.
    tallies: Vec<Option<crate::api::PollTallyRead>>,
    reads: u64,
    error: Option<String>,
    quality: Vec<ChannelQualityFigures>,
}

/// The only clock read of the driver.
#[expect(clippy::disallowed_methods)]
fn now() -> Instant {
    Instant::now()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SockKind {
    Sip,
    Rtp,
}

type Batch = (SockKind, usize, Vec<(SocketAddr, Bytes, Instant)>);

fn spawn_reader(kind: SockKind, idx: usize, sock: Arc<UdpSocket>, tx: mpsc::Sender<Batch>) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                continue;
            };
            let mut batch = vec![(from, Bytes::copy_from_slice(&buf[..n]), now())];
            while batch.len() < 64 {
                match sock.try_recv_from(&mut buf) {
                    Ok((n, from)) => batch.push((from, Bytes::copy_from_slice(&buf[..n]), now())),
                    Err(_) => break,
                }
            }
            if tx.send((kind, idx, batch)).await.is_err() {
                return;
            }
        }
    });
}

/// The UE index in a Call-ID made by [`Ue`] (`ue<i>-...`), found in the raw message.
fn route(bytes: &[u8]) -> Option<usize> {
    let head_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(bytes.len());
    for line in bytes[..head_end].split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = std::str::from_utf8(&line[..colon]).ok()?.trim();
        if name.eq_ignore_ascii_case("call-id") || name.eq_ignore_ascii_case("i") {
            let v = std::str::from_utf8(&line[colon + 1..]).ok()?.trim();
            let rest = v.strip_prefix("ue")?;
            let digits: &str = rest.split('-').next()?;
            return digits.parse().ok();
        }
    }
    None
}

/// What the driver does next with a UE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    NotStarted,
    Joining,
    Watching,
    Done,
}

#[derive(Debug)]
struct Slot {
    ue: Ue,
    sip: usize,
    rtp: usize,
    phase: Phase,
    zaps: u64,
    /// The `(RTP socket, SSRC)` key this UE is routed by.
    mapped: Option<(usize, u32)>,
    timer: Option<Instant>,
    /// Producer `k` (creates a personal channel) rather than a viewer.
    producer: Option<usize>,
    /// The current (or joining) channel is a personal channel.
    personal: bool,
    moves: u32,
    move_gap_max: Option<Duration>,
}

/// Packets with an SSRC no UE knows yet, kept a little while: the relay's burst of a new
/// path can arrive before the 200 OK (or re-INVITE) that names its SSRC (`a=ssrc`).
const UNKNOWN_KEEP: Duration = Duration::from_secs(2);
/// Most packets kept per unknown `(socket, SSRC)`, and in all.
const UNKNOWN_PER_KEY: usize = 400;
const UNKNOWN_TOTAL: usize = 400_000;

struct Driver<'a> {
    sc: &'a Scenario,
    slots: Vec<Slot>,
    /// Send halves (std clones of the reader tasks' sockets, non-blocking): a send is one
    /// `sendto`, without waiting for the reactor to have seen the socket writable, which a
    /// fresh tokio socket's `try_send_to` does (its first datagrams would be dropped).
    sip: Vec<std::net::UdpSocket>,
    rtp: Vec<std::net::UdpSocket>,
    rtp_ports: Vec<u16>,
    /// Per RTP socket: the UE waiting for its new path, and since when (only for an AS that
    /// does not announce SSRCs in SDP).
    path_wait: Vec<Option<(usize, Instant)>>,
    ssrc_map: HashMap<(usize, u32), usize>,
    /// Unrouted packets by `(socket, SSRC)`, with arrival times.
    unknown: HashMap<(usize, u32), Vec<(Bytes, Instant)>>,
    unknown_total: usize,
    /// Whether the AS announces the viewer's SSRC in its answers (learnt from the first join).
    ssrc_from_sdp: Option<bool>,
    /// Personal channels created by the producers so far.
    personal: Vec<String>,
    personal_set: HashSet<String>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    actions: BinaryHeap<Reverse<(Instant, usize)>>,
    rng: rand::rngs::StdRng,
    stats: RunStats,
    tick: TimelinePoint,
    touched: Vec<usize>,
    is_touched: Vec<bool>,
    start: Instant,
    end: Instant,
    zap_timeout: Duration,
    votes: Option<VotePlan>,
}

impl Driver<'_> {
    fn touch(&mut self, i: usize) {
        if !self.is_touched[i] {
            self.is_touched[i] = true;
            self.touched.push(i);
        }
    }

    /// An RTP socket for a new path of `i`. When the AS announces SSRCs, any socket
    /// (spread by index); otherwise one with no UE waiting for a new path (freeing stale
    /// waits), reserved for `i`, so the first unknown SSRC on it is `i`'s.
    fn reserve_rtp(&mut self, i: usize, now: Instant) -> Option<usize> {
        let n = self.rtp.len();
        let start = i % n;
        if self.ssrc_from_sdp == Some(true) {
            return Some(start);
        }
        for k in 0..n {
            let s = (start + k) % n;
            if let Some((u, since)) = self.path_wait[s] {
                let still = self.slots[u].ue.awaiting_new_path() && now - since < PATH_WAIT;
                if still {
                    continue;
                }
            }
            self.path_wait[s] = Some((i, now));
            return Some(s);
        }
        None
    }

    fn release_rtp(&mut self, i: usize) {
        for w in &mut self.path_wait {
            if w.is_some_and(|(u, _)| u == i) {
                *w = None;
            }
        }
    }

    /// A channel for a viewer's join or zap: a personal channel with the scenario's
    /// `viewer_share` once one exists, else one of the scenario's by Zipf popularity.
    fn pick(&mut self, avoid: Option<&str>) -> (String, bool) {
        let share = self.sc.producers.viewer_share;
        let choices: Vec<usize> = (0..self.personal.len())
            .filter(|&k| Some(self.personal[k].as_str()) != avoid)
            .collect();
        if !choices.is_empty() && self.rng.gen::<f64>() < share {
            let k = choices[self.rng.gen_range(0..choices.len())];
            return (self.personal[k].clone(), true);
        }
        (self.sc.pick_channel(&mut self.rng, avoid).to_owned(), false)
    }

    fn act(&mut self, i: usize, now: Instant) {
        let sc = self.sc;
        if let Some(k) = self.slots[i].producer {
            match self.slots[i].phase {
                Phase::NotStarted => {
                    let port = self.rtp_ports[self.slots[i].rtp];
                    let name = format!("{} {k}", sc.producers.name);
                    self.stats.producers += 1;
                    let slot = &mut self.slots[i];
                    if sc.register {
                        slot.ue.register(now);
                    }
                    slot.phase = if slot.ue.produce(now, &name, port).is_ok() {
                        Phase::Joining
                    } else {
                        Phase::Done
                    };
                }
                Phase::Watching => {
                    let _ = self.slots[i].ue.leave(now);
                }
                _ => {}
            }
            self.touch(i);
            return;
        }
        match self.slots[i].phase {
            Phase::NotStarted => {
                let Some(s) = self.reserve_rtp(i, now) else {
                    self.actions
                        .push(Reverse((now + Duration::from_millis(10), i)));
                    return;
                };
                let subscribe = (i as f64 + 0.5) / (sc.ues as f64) <= sc.subscribe_share;
                let (channel, personal) = self.pick(None);
                let port = self.rtp_ports[s];
                let slot = &mut self.slots[i];
                slot.rtp = s;
                slot.personal = personal;
                if sc.register {
                    slot.ue.register(now);
                }
                if subscribe {
                    slot.ue.subscribe(now);
                }
                if slot.ue.join(now, &channel, port).is_ok() {
                    slot.phase = Phase::Joining;
                } else {
                    slot.phase = Phase::Done;
                }
            }
            Phase::Watching if now < self.end => {
                let voted = self
                    .votes
                    .as_ref()
                    .and_then(|v| v.voted_at[i])
                    .filter(|&t| now < t + VOTE_HOLD);
                if let Some(t) = voted {
                    self.actions.push(Reverse((t + VOTE_HOLD, i)));
                    return;
                }
                if !self.slots[i].ue.is_watching() {
                    // Busy (e.g. the AS's re-INVITE is being acknowledged): try again soon.
                    if self.slots[i].ue.channel().is_some() {
                        self.actions
                            .push(Reverse((now + Duration::from_millis(200), i)));
                    }
                    return;
                }
                if self.rng.gen::<f64>() < sc.zap.probability {
                    let method = sc.zap_method(self.slots[i].zaps);
                    let cur = self.slots[i].ue.channel().map(str::to_owned);
                    let (channel, personal) = self.pick(cur.as_deref());
                    let port = if method == ZapMethod::ByeInvite {
                        match self.reserve_rtp(i, now) {
                            Some(s) => {
                                self.slots[i].rtp = s;
                                self.rtp_ports[s]
                            }
                            None => {
                                self.actions
                                    .push(Reverse((now + Duration::from_millis(10), i)));
                                return;
                            }
                        }
                    } else {
                        0
                    };
                    let slot = &mut self.slots[i];
                    slot.zaps += 1;
                    slot.personal = personal;
                    if slot.ue.zap(now, &channel, method, port).is_err() {
                        self.release_rtp(i);
                    }
                } else {
                    let _ = self.slots[i].ue.leave(now);
                }
            }
            _ => {}
        }
        self.touch(i);
    }

    fn fail(&mut self, reason: String) {
        *self.stats.failures.entry(reason).or_default() += 1;
        self.tick.failures += 1;
    }

    fn on_event(&mut self, i: usize, ev: UeEvent, now: Instant) {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        match ev {
            UeEvent::Registered(Ok(())) => self.stats.registrations_ok += 1,
            UeEvent::Registered(Err(f)) => {
                self.stats.registrations_failed += 1;
                self.fail(format!("register_{}", f.reason()));
            }
            UeEvent::Subscribed(_) | UeEvent::ChannelList(_) => {}
            UeEvent::Joined { result: Ok(d), .. } => {
                let st = &mut self.stats;
                st.joins_ok += 1;
                st.join_ms.push(ms(d));
                if self.slots[i].personal {
                    st.personal_viewers += 1;
                }
                self.tick.joins += 1;
                if self.ssrc_from_sdp.is_none() {
                    self.ssrc_from_sdp = Some(self.slots[i].ue.ssrc_announced());
                }
                self.slots[i].phase = Phase::Watching;
                let dwell = self.sc.dwell(&mut self.rng);
                self.actions.push(Reverse((now + dwell, i)));
            }
            UeEvent::Joined { result: Err(f), .. } => {
                if let Some(why) = f.refusal() {
                    // A policy refusal ends this UE's attempt; it is not a failure.
                    self.stats.joins_refused += 1;
                    *self
                        .stats
                        .joins_refused_by
                        .entry(why.to_owned())
                        .or_default() += 1;
                } else {
                    self.stats.joins_failed += 1;
                    self.fail(f.reason());
                }
                self.slots[i].phase = Phase::Done;
                self.release_rtp(i);
            }
            UeEvent::Created {
                channel,
                result: Ok(_),
            } => {
                self.stats.personal_created += 1;
                if self.personal_set.insert(channel.clone()) {
                    self.personal.push(channel);
                }
                self.slots[i].phase = Phase::Watching;
                if let Some(d) = self.sc.producers.duration_s {
                    self.actions
                        .push(Reverse((now + Duration::from_secs_f64(d), i)));
                }
            }
            UeEvent::Created { result: Err(f), .. } => {
                self.stats.personal_failed += 1;
                self.fail(format!("create_{}", f.reason()));
                self.slots[i].phase = Phase::Done;
            }
            UeEvent::FirstPacket(d) => self.stats.first_packet_ms.push(ms(d)),
            UeEvent::FirstFrame(d) => {
                self.stats.first_frame_ms.push(ms(d));
                if self.slots[i].personal {
                    self.stats.personal_first_frame_ms.push(ms(d));
                }
            }
            UeEvent::Zapped {
                result, channel, ..
            } => {
                match result {
                    Ok(d) => {
                        self.stats.zaps_ok += 1;
                        self.stats.zap_ms.push(ms(d));
                        if self.personal_set.contains(&channel) {
                            self.stats.personal_viewers += 1;
                        }
                        self.tick.zaps += 1;
                    }
                    Err(f) => {
                        if let Some(why) = f.refusal() {
                            // A refused re-INVITE zap leaves the viewer on its channel (the
                            // AS keeps the session); a refused BYE + INVITE ends it.
                            self.stats.zaps_refused += 1;
                            *self
                                .stats
                                .zaps_refused_by
                                .entry(why.to_owned())
                                .or_default() += 1;
                        } else {
                            self.stats.zaps_failed += 1;
                            self.fail(format!("zap_{}", f.reason()));
                        }
                    }
                }
                // The key frame of a re-INVITE zap often arrives before its 200 OK: the
                // session is still busy then, and `act` waits for it.
                if self.slots[i].ue.channel().is_some() {
                    let dwell = self.sc.dwell(&mut self.rng);
                    self.actions.push(Reverse((now + dwell, i)));
                } else if self.slots[i].ue.is_idle() {
                    self.slots[i].phase = Phase::Done;
                    self.release_rtp(i);
                }
            }
            UeEvent::Moved(result) => {
                self.slots[i].moves += 1;
                match result {
                    Ok(d) => {
                        self.stats.moves_ok += 1;
                        self.stats.move_gap_ms.push(ms(d));
                        self.tick.moves += 1;
                        let m = &mut self.slots[i].move_gap_max;
                        *m = Some(m.map_or(d, |x| x.max(d)));
                    }
                    Err(f) => {
                        self.stats.moves_failed += 1;
                        self.fail(format!("move_{}", f.reason()));
                    }
                }
            }
            UeEvent::IngestMoved(Ok(())) => self.stats.ingest_moves_ok += 1,
            UeEvent::IngestMoved(Err(f)) => {
                self.stats.ingest_moves_failed += 1;
                self.fail(format!("ingest_move_{}", f.reason()));
            }
            UeEvent::Left | UeEvent::RemoteBye => {
                self.stats.leaves += 1;
                self.tick.leaves += 1;
                self.slots[i].phase = Phase::Done;
                self.release_rtp(i);
            }
        }
    }

    /// Keeps the `(socket, SSRC)` route of UE `i` in step with the SSRC it knows, and hands
    /// it the packets of that SSRC that arrived before it knew it.
    fn sync_route(&mut self, i: usize, now: Instant) {
        let slot = &self.slots[i];
        let want = slot.ue.rtp_ssrc().map(|s| (slot.rtp, s));
        if want == slot.mapped {
            if want.is_none() && slot.ue.awaiting_new_path() && self.ssrc_from_sdp != Some(true) {
                // A new path without an announced SSRC (e.g. a relay move by an AS that
                // does not send `a=ssrc`): claim the socket's slot if it is free.
                let s = slot.rtp;
                let free = self.path_wait[s].is_none_or(|(u, since)| {
                    u == i || !self.slots[u].ue.awaiting_new_path() || now - since >= PATH_WAIT
                });
                if free {
                    self.path_wait[s] = Some((i, now));
                }
            }
            return;
        }
        if let Some(old) = self.slots[i].mapped.take() {
            if self.ssrc_map.get(&old) == Some(&i) {
                self.ssrc_map.remove(&old);
            }
        }
        let Some(key) = want else { return };
        self.ssrc_map.insert(key, i);
        self.slots[i].mapped = Some(key);
        self.release_rtp(i);
        if let Some(q) = self.unknown.remove(&key) {
            self.unknown_total -= q.len();
            for (bytes, at) in q {
                self.slots[i].ue.handle_media(at, &bytes);
            }
        }
    }

    fn flush(&mut self, now: Instant) {
        let touched = std::mem::take(&mut self.touched);
        for &i in &touched {
            self.is_touched[i] = false;
            self.sync_route(i, now);
            while let Some(t) = self.slots[i].ue.poll_transmit() {
                let (sock, to, bytes) = match t {
                    Transmit::Sip { to, bytes } => (&self.sip[self.slots[i].sip], to, bytes),
                    Transmit::Rtp { to, bytes } => {
                        self.stats.producer_packets += 1;
                        (&self.rtp[self.slots[i].rtp], to, bytes)
                    }
                    Transmit::Rtcp { to, bytes } => (&self.rtp[self.slots[i].rtp], to, bytes),
                };
                // A full send buffer drops the datagram; SIP retransmits, RTCP is periodic.
                let _ = sock.send_to(&bytes, to);
            }
            while let Some(ev) = self.slots[i].ue.poll_event() {
                self.on_event(i, ev, now);
            }
            // Events (a join's answer with `a=ssrc`) may have named a new SSRC.
            self.sync_route(i, now);
            while let Some(ev) = self.slots[i].ue.poll_event() {
                self.on_event(i, ev, now);
            }
            let next = self.slots[i].ue.poll_timeout();
            let cur = self.slots[i].timer;
            if let Some(n) = next {
                if cur.is_none_or(|c| n < c || c <= now) {
                    self.slots[i].timer = Some(n);
                    self.timers.push(Reverse((n, i)));
                }
            }
        }
        self.touched = touched;
        self.touched.clear();
    }

    fn on_batch(&mut self, batch: Batch) {
        let (kind, idx, datagrams) = batch;
        for (from, bytes, at) in datagrams {
            match kind {
                SockKind::Sip => {
                    if let Some(i) = route(&bytes).filter(|&i| i < self.slots.len()) {
                        self.slots[i].ue.handle_sip(at, from, &bytes);
                        self.touch(i);
                    }
                }
                SockKind::Rtp => {
                    if media_relay::rtp::is_rtcp(&bytes) {
                        // The relay's SR (sender SSRC = its SSRC for the viewer) or an RSI
                        // (summarised SSRC second): routed like RTP, never kept.
                        let word = |k: usize| {
                            bytes
                                .get(k..k + 4)
                                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                        };
                        let ue = [word(4), word(8)]
                            .into_iter()
                            .flatten()
                            .find_map(|s| self.ssrc_map.get(&(idx, s)).copied());
                        if let Some(u) = ue {
                            self.slots[u].ue.handle_media(at, &bytes);
                            self.touch(u);
                        }
                        continue;
                    }
                    if bytes.len() < 12 {
                        continue;
                    }
                    let ssrc = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
                    let ue = match self.ssrc_map.get(&(idx, ssrc)) {
                        Some(&u) => Some(u),
                        None => match self.path_wait[idx] {
                            Some((u, _)) if self.slots[u].ue.awaiting_new_path() => {
                                self.ssrc_map.insert((idx, ssrc), u);
                                Some(u)
                            }
                            _ => None,
                        },
                    };
                    if let Some(u) = ue {
                        self.slots[u].ue.handle_media(at, &bytes);
                        self.touch(u);
                    } else if self.unknown_total < UNKNOWN_TOTAL {
                        let q = self.unknown.entry((idx, ssrc)).or_default();
                        if q.len() < UNKNOWN_PER_KEY {
                            q.push((bytes, at));
                            self.unknown_total += 1;
                        }
                    }
                }
            }
        }
    }

    /// Drops unrouted packets older than [`UNKNOWN_KEEP`].
    fn prune_unknown(&mut self, now: Instant) {
        let mut total = 0;
        self.unknown.retain(|_, q| {
            q.retain(|(_, at)| now.saturating_duration_since(*at) < UNKNOWN_KEEP);
            total += q.len();
            !q.is_empty()
        });
        self.unknown_total = total;
    }

    /// Casts the votes due at `now` (module docs).
    fn fire_votes(&mut self, now: Instant) {
        let Some(mut plan) = self.votes.take() else {
            return;
        };
        while let Some(&Reverse((t, i))) = plan.heap.peek() {
            if t > now {
                break;
            }
            plan.heap.pop();
            let Some(option) = plan.option_of[i] else {
                continue;
            };
            let ue = &mut self.slots[i].ue;
            let poll = ue.channel().and_then(|c| {
                plan.polls
                    .iter()
                    .position(|(_, ch)| ch == c)
                    .filter(|_| ue.is_watching())
            });
            let cast =
                poll.is_some_and(|k| ue.vote(now, plan.polls[k].0, option, plan.close).is_ok());
            if let (true, Some(k)) = (cast, poll) {
                plan.cast[k][option as usize] += 1;
                plan.last_vote = Some(now);
                plan.voted_at[i] = Some(now);
                plan.pending -= 1;
                self.touch(i);
            } else if now + VOTE_RETRY < plan.window_end {
                plan.heap.push(Reverse((now + VOTE_RETRY, i)));
            } else {
                plan.missed += 1;
                plan.pending -= 1;
            }
        }
        self.votes = Some(plan);
    }

    fn fire(&mut self, now: Instant) {
        self.fire_votes(now);
        while let Some(&Reverse((t, i))) = self.actions.peek() {
            if t > now {
                break;
            }
            self.actions.pop();
            self.act(i, now);
        }
        while let Some(&Reverse((t, i))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            if self.slots[i].timer == Some(t) {
                self.slots[i].timer = None;
                self.slots[i].ue.handle_timeout(now);
                self.touch(i);
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.actions.peek().map(|r| r.0 .0),
            self.timers.peek().map(|r| r.0 .0),
            self.votes
                .as_ref()
                .and_then(|v| v.heap.peek())
                .map(|r| r.0 .0),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn active(&self) -> u64 {
        self.slots
            .iter()
            .filter(|s| s.ue.channel().is_some())
            .count() as u64
    }

    fn inject(&mut self, f: &Fault, now: Instant, injector: &FaultInjector<'_>) {
        let (result, viewers) = match injector(f) {
            Ok(n) => ("ok".to_owned(), Some(n)),
            Err(e) => {
                tracing::warn!(fault = f.kind.as_str(), error = %e, "fault not injected");
                (e, None)
            }
        };
        let rec = FaultRecord {
            t_s: (now - self.start).as_secs_f64(),
            kind: f.kind.as_str().to_owned(),
            target: f.relay,
            result,
            active: self.active(),
            viewers,
        };
        self.stats.faults.push(rec);
    }
}

/// Injects one scenario fault into the system under test (the lab stops a relay): `Ok(n)`
/// with the number of viewers it hit (those the AS should move), `Err` why it could not.
pub type FaultInjector<'a> = dyn Fn(&Fault) -> Result<u64, String> + 'a;

/// Declares `[votes]`' polls at the AS's API and plans who votes when and for what.
/// `Ok(None)` without `[votes]`; `Err` why votes cannot run.
async fn plan_votes(
    sc: &Scenario,
    api: Option<SocketAddr>,
    start: Instant,
    ues: usize,
) -> Result<Option<VotePlan>, String> {
    let Some(v) = &sc.votes else {
        return Ok(None);
    };
    let api = api.ok_or("no API address for the polls (scenario `api`)")?;
    let polls: Vec<(u32, String)> = v
        .polls(sc)
        .into_iter()
        .map(|(id, c)| (id, c.to_owned()))
        .collect();
    for (id, channel) in &polls {
        crate::api::create_poll(api, *id, channel, &v.question, &v.options)
            .await
            .map_err(|e| format!("poll {id} on {channel}: {e}"))?;
    }
    // Its own RNG stream: adding votes does not change the scenario's other draws.
    let mut rng = rand::rngs::StdRng::seed_from_u64(sc.seed ^ 0x766f_7465_7321);
    let window_start = start + Duration::from_secs_f64(v.window_start_s);
    let window = Duration::from_secs_f64(v.window_s);
    let mut option_of = vec![None; ues];
    let mut heap = BinaryHeap::new();
    for (i, o) in option_of
        .iter_mut()
        .enumerate()
        .take(v.viewers_voting.min(ues))
    {
        *o = Some(v.pick_option(&mut rng));
        heap.push(Reverse((
            window_start + window.mul_f64(rng.gen::<f64>()),
            i,
        )));
    }
    let window_end = window_start + window;
    Ok(Some(VotePlan {
        cast: vec![vec![0; v.options.len()]; polls.len()],
        polls,
        options: v.options.clone(),
        option_of,
        pending: heap.len(),
        heap,
        window_end,
        close: window_end + Duration::from_secs_f64(v.close_after_s),
        missed: 0,
        last_vote: None,
        voted_at: vec![None; ues],
        start,
    }))
}

/// Reads every channel's quality summary from the AS.
async fn read_quality(
    api: SocketAddr,
    channels: &[String],
    start: Instant,
) -> (Vec<ChannelQualityFigures>, Option<String>) {
    let mut out = Vec::new();
    let mut error = None;
    for c in channels {
        match crate::api::get_quality(api, c).await {
            Ok(mut q) => {
                q.at_s = (now() - start).as_secs_f64();
                out.push(q);
            }
            Err(e) => error = Some(format!("quality of {c}: {e}")),
        }
    }
    (out, error)
}

/// Reads the polls' tallies every [`TALLY_READ_EVERY`] until each equals its votes cast
/// (option by option, nothing undeclared) or [`TALLY_WAIT`] after `last_vote`; then the
/// channels' quality.
async fn read_tallies(
    api: SocketAddr,
    polls: Vec<(u32, Vec<u64>)>,
    last_vote: Instant,
    channels: Vec<String>,
    start: Instant,
) -> TallyOutcome {
    let mut o = TallyOutcome {
        tallies: vec![None; polls.len()],
        ..TallyOutcome::default()
    };
    loop {
        let mut exact = true;
        for (k, (poll, cast)) in polls.iter().enumerate() {
            match crate::api::get_poll(api, *poll).await {
                Ok(t) => {
                    o.reads += 1;
                    exact &= t.options == *cast && t.undeclared == 0;
                    o.tallies[k] = Some(t);
                }
                Err(e) => {
                    exact = false;
                    o.error = Some(format!("poll {poll}: {e}"));
                }
            }
        }
        let t = now();
        if exact {
            o.time_to_exact = Some(t.saturating_duration_since(last_vote));
            o.error = None;
            break;
        }
        if t >= last_vote + TALLY_WAIT {
            break;
        }
        tokio::time::sleep(TALLY_READ_EVERY).await;
    }
    let (q, e) = read_quality(api, &channels, start).await;
    o.quality = q;
    if o.error.is_none() {
        o.error = e;
    }
    o
}

/// The vote figures of a finished run.
fn vote_figures(
    plan: Option<&VotePlan>,
    voters: u64,
    o: Option<TallyOutcome>,
    error: Option<String>,
) -> VoteFigures {
    let mut f = VoteFigures {
        voters,
        error,
        ..VoteFigures::default()
    };
    let Some(plan) = plan else {
        return f;
    };
    f.cast = plan.cast.iter().flatten().sum();
    f.missed = plan.missed;
    f.last_vote_s = plan
        .last_vote
        .map(|t| t.saturating_duration_since(plan.start).as_secs_f64());
    let o = o.unwrap_or_default();
    f.tally_reads = o.reads;
    f.time_to_exact_ms = o.time_to_exact.map(|d| d.as_secs_f64() * 1000.0);
    f.exact = o.time_to_exact.is_some();
    if f.error.is_none() {
        f.error = o.error;
    }
    for (k, (poll, channel)) in plan.polls.iter().enumerate() {
        let t = o.tallies.get(k).cloned().flatten().unwrap_or_default();
        f.tallied += t.options.iter().sum::<u64>() + t.undeclared;
        f.polls.push(PollFigures {
            poll: *poll,
            channel: channel.clone(),
            options: plan.options.clone(),
            cast: plan.cast[k].clone(),
            tally: t.options,
            undeclared: t.undeclared,
            relays: t.relays,
        });
    }
    f
}

/// A UDP socket on `ip` (free port): the tokio half for its reader task, a non-blocking std
/// clone for sending.
fn socket_pair(ip: IpAddr) -> std::io::Result<(Arc<UdpSocket>, std::net::UdpSocket)> {
    let s = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))?;
    s.set_nonblocking(true)?;
    let send = s.try_clone()?;
    Ok((Arc::new(UdpSocket::from_std(s)?), send))
}

/// The local address to put in Via/Contact/SDP for reaching `target`.
fn local_ip_for(target: SocketAddr) -> IpAddr {
    if target.ip().is_loopback() {
        return target.ip();
    }
    std::net::UdpSocket::bind(if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })
    .and_then(|s| {
        s.connect(target)?;
        s.local_addr()
    })
    .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |a| a.ip())
}

/// Runs `scenario` against the AS whose SIP (UDP) address is `target`; `progress` is called
/// once per second with the last second's counters. Bounded: the scenario's duration plus a
/// few seconds for the last BYEs. A scenario with `[[faults]]` needs [`run_with_faults`].
pub async fn run(
    scenario: &Scenario,
    target: SocketAddr,
    progress: &dyn Fn(&TimelinePoint),
) -> Result<RunStats, RunError> {
    if !scenario.faults.is_empty() {
        return Err(RunError::Scenario(crate::scenario::ScenarioError::Invalid(
            "faults need a system ue-sim can stop (`ue-sim lab`); remove [[faults]] to run against a target".into(),
        )));
    }
    run_with_faults(scenario, target, progress, &|_| {
        Err("no fault injector".into())
    })
    .await
}

/// [`run`], with the scenario's faults injected by `injector` at their times.
pub async fn run_with_faults(
    scenario: &Scenario,
    target: SocketAddr,
    progress: &dyn Fn(&TimelinePoint),
    injector: &FaultInjector<'_>,
) -> Result<RunStats, RunError> {
    scenario.validate()?;
    let ip = local_ip_for(target);
    let (tx, mut rx) = mpsc::channel::<Batch>(1024);
    let mut sip = Vec::new();
    for k in 0..scenario.sip_sockets {
        let (recv, send) = socket_pair(ip)?;
        spawn_reader(SockKind::Sip, k, recv, tx.clone());
        sip.push(send);
    }
    let mut rtp = Vec::new();
    let mut rtp_ports = Vec::new();
    for k in 0..scenario.rtp_sockets {
        let (recv, send) = socket_pair(ip)?;
        rtp_ports.push(send.local_addr()?.port());
        spawn_reader(SockKind::Rtp, k, recv, tx.clone());
        rtp.push(send);
    }
    drop(tx);
    let start = now();
    let viewers = scenario.ues;
    let n = viewers + scenario.producers.count;
    let mut slots = Vec::with_capacity(n);
    for i in 0..n {
        let s = i % sip.len();
        let mut ue = Ue::new(UeConfig {
            index: i,
            user: format!("ue{i}"),
            domain: target.ip().to_string(),
            target,
            local_sip: sip[s].local_addr()?,
            media_ip: ip,
        });
        ue.set_zap_timeout(Duration::from_secs_f64(scenario.zap.timeout_s));
        ue.set_rtcp(scenario.rtcp.config());
        slots.push(Slot {
            ue,
            sip: s,
            rtp: i % rtp.len(),
            phase: Phase::NotStarted,
            zaps: 0,
            mapped: None,
            timer: None,
            producer: i.checked_sub(viewers),
            personal: false,
            moves: 0,
            move_gap_max: None,
        });
    }
    let mut actions: BinaryHeap<_> = (0..viewers)
        .map(|i| {
            Reverse((
                start + Duration::from_secs_f64(i as f64 / scenario.arrival_rate),
                i,
            ))
        })
        .collect();
    for k in 0..scenario.producers.count {
        let at = scenario.producers.start_s + 0.2 * k as f64;
        actions.push(Reverse((start + Duration::from_secs_f64(at), viewers + k)));
    }
    let mut faults: Vec<(Instant, Fault)> = scenario
        .faults
        .iter()
        .map(|f| (start + Duration::from_secs_f64(f.at_s), f.clone()))
        .collect();
    faults.sort_by_key(|(t, _)| *t);
    let mut faults = std::collections::VecDeque::from(faults);
    let api: Option<SocketAddr> = scenario.api.as_deref().and_then(|a| a.parse().ok());
    let voters = scenario
        .votes
        .as_ref()
        .map_or(0, |v| v.viewers_voting.min(viewers) as u64);
    let (plan, vote_error) = match plan_votes(scenario, api, start, n).await {
        Ok(p) => (p, None),
        Err(e) => {
            tracing::warn!(error = %e, "votes not run");
            (None, Some(e))
        }
    };
    let mut d = Driver {
        sc: scenario,
        slots,
        rtp_ports,
        path_wait: vec![None; rtp.len()],
        sip,
        rtp,
        ssrc_map: HashMap::new(),
        unknown: HashMap::new(),
        unknown_total: 0,
        ssrc_from_sdp: None,
        personal: Vec::new(),
        personal_set: HashSet::new(),
        timers: BinaryHeap::new(),
        actions,
        rng: rand::rngs::StdRng::seed_from_u64(scenario.seed),
        stats: RunStats {
            scenario: scenario.name.clone(),
            ues: n,
            ..RunStats::default()
        },
        tick: TimelinePoint::default(),
        touched: Vec::new(),
        is_touched: vec![false; n],
        start,
        end: start + Duration::from_secs_f64(scenario.duration_s),
        zap_timeout: Duration::from_secs_f64(scenario.zap.timeout_s),
        votes: plan,
    };
    let channels = scenario.channels.list.clone();
    let mut tally_task: Option<tokio::task::JoinHandle<TallyOutcome>> = None;
    let mut quality_task: Option<
        tokio::task::JoinHandle<(Vec<ChannelQualityFigures>, Option<String>)>,
    > = None;
    // Without votes, the quality summaries are read a second before the end.
    let mut quality_at = api.filter(|_| d.votes.is_none()).map(|_| {
        d.end
            .checked_sub(Duration::from_secs(1))
            .unwrap_or(start)
            .max(start)
    });
    let hard_end = d.end + DRAIN + d.zap_timeout;
    let mut next_tick = start + Duration::from_secs(1);
    let mut ending = false;
    loop {
        let t = now();
        while faults.front().is_some_and(|(at, _)| *at <= t) {
            let (_, f) = faults.pop_front().expect("checked");
            d.inject(&f, t, injector);
        }
        d.fire(t);
        if let (Some(api), None, Some(plan)) = (api, &tally_task, &d.votes) {
            if plan.pending == 0 {
                let polls = plan
                    .polls
                    .iter()
                    .zip(&plan.cast)
                    .map(|((id, _), c)| (*id, c.clone()))
                    .collect();
                let last = plan.last_vote.unwrap_or(t);
                tally_task = Some(tokio::spawn(read_tallies(
                    api,
                    polls,
                    last,
                    channels.clone(),
                    start,
                )));
            }
        }
        if let (Some(api), Some(at)) = (api, quality_at) {
            if t >= at {
                quality_at = None;
                let chans = channels.clone();
                quality_task = Some(tokio::spawn(async move {
                    read_quality(api, &chans, start).await
                }));
            }
        }
        if t >= d.end && !ending {
            ending = true;
            for i in 0..n {
                if d.slots[i].ue.channel().is_some() && d.slots[i].ue.leave(t).is_ok() {
                    d.touch(i);
                }
            }
        }
        d.flush(t);
        if t >= next_tick {
            d.tick.t_s = (next_tick - start).as_secs_f64();
            d.tick.active = d.active();
            progress(&d.tick);
            d.stats.timeline.push(std::mem::take(&mut d.tick));
            d.prune_unknown(t);
            next_tick += Duration::from_secs(1);
        }
        if (ending
            && d.slots
                .iter()
                .all(|s| matches!(s.phase, Phase::Done | Phase::NotStarted) && s.ue.is_idle()))
            || t >= hard_end
        {
            break;
        }
        let mut wake = next_tick.min(hard_end);
        if !ending {
            wake = wake.min(d.end);
        }
        if let Some(x) = d.next_deadline() {
            wake = wake.min(x);
        }
        if let Some((x, _)) = faults.front() {
            wake = wake.min(*x);
        }
        if let Some(x) = quality_at {
            wake = wake.min(x);
        }
        tokio::select! {
            b = rx.recv() => {
                if let Some(b) = b {
                    d.on_batch(b);
                    while let Ok(b) = rx.try_recv() {
                        d.on_batch(b);
                    }
                }
            }
            () = tokio::time::sleep_until(wake.into()) => {}
        }
    }
    let end = now();
    // The last, partial second: its joins, zaps and leaves belong in the timeline too, so
    // the timeline sums to the totals.
    let last = &d.tick;
    if last.joins + last.zaps + last.leaves + last.failures + last.moves > 0 {
        d.tick.t_s = (end - start).as_secs_f64();
        d.tick.active = d.active();
        progress(&d.tick);
        d.stats.timeline.push(std::mem::take(&mut d.tick));
    }
    // The tally reader is bounded by TALLY_WAIT after the last vote, the quality reader by
    // the API timeout per channel.
    let bound = TALLY_WAIT + crate::api::TIMEOUT * (2 + channels.len() as u32);
    let outcome = match tally_task {
        Some(h) => tokio::time::timeout(bound, h)
            .await
            .ok()
            .and_then(Result::ok),
        None => None,
    };
    let mut quality_error = None;
    if let Some(h) = quality_task {
        if let Ok(Ok((q, e))) = tokio::time::timeout(bound, h).await {
            d.stats.quality = q;
            quality_error = e;
        }
    }
    if let Some(e) = quality_error {
        tracing::warn!(error = %e, "quality summaries");
    }
    if scenario.votes.is_some() {
        if let Some(o) = &outcome {
            d.stats.quality.clone_from(&o.quality);
        }
        d.stats.votes = Some(vote_figures(d.votes.as_ref(), voters, outcome, vote_error));
    }
    for s in &d.slots {
        d.stats.rtcp.add(&s.ue.rtcp_counters());
    }
    let mut stats = d.stats;
    stats.duration_s = (end - start).as_secs_f64();
    // Viewers only: a producer receives no media (its figure is `producer_packets`).
    for (i, s) in d
        .slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.producer.is_none())
    {
        let m = s.ue.media();
        stats.viewers.push(ViewerStats {
            ue: i,
            packets: m.packets,
            lost: m.lost,
            jitter_ms: m.jitter_ms(),
            gap_ms_max: m.gap_max.as_secs_f64() * 1000.0,
            moves: s.moves,
            move_gap_ms: s.move_gap_max.map(|g| g.as_secs_f64() * 1000.0),
        });
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::route;

    #[test]
    fn routes_by_call_id() {
        let m = b"SIP/2.0 200 OK\r\nVia: x\r\nCall-ID: ue42-3-abcd@ue-sim\r\n\r\n";
        assert_eq!(route(m), Some(42));
        let m = b"BYE sip:a SIP/2.0\r\ni:ue7-1-x@ue-sim\r\n\r\n";
        assert_eq!(route(m), Some(7));
        assert_eq!(route(b"SIP/2.0 200 OK\r\nCall-ID: other\r\n\r\n"), None);
        assert_eq!(route(b"garbage"), None);
    }
}
