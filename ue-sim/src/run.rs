//! The run driver: many sans-IO [`Ue`]s against one AS over a few UDP sockets and one task.
//!
//! # Multiplexing
//!
//! - **SIP**: `scenario.sip_sockets` sockets; UE `i` sends from socket `i % n`. Every Call-ID
//!   the UE makes starts with `ue<i>-`, so the driver routes a response or an AS request (BYE,
//!   NOTIFY) to its UE from the Call-ID alone, without parsing the whole message twice.
//! - **RTP**: `scenario.rtp_sockets` sockets shared by all UEs; viewers are told apart by the
//!   relay's per-viewer SSRC (the relay gives every viewer path its own SSRC and keeps it
//!   across a re-INVITE zap). A UE learns its SSRC from the first packet of a new path; to make
//!   that unambiguous, at most one UE per RTP socket may wait for a new path at a time (a join
//!   or a BYE + INVITE zap picks a socket with no such UE, and waits a little when all are
//!   taken). RTCP is offered on the RTP port (`a=rtcp`), so the relay's sender reports land on
//!   the same socket and are skipped. Few sockets are needed, so ports never run short and no
//!   fd limit has to be raised; addresses over 127.0.0.0/8 are therefore not needed either.
//! - **Tasks**: one reader task per socket (a few) batches datagrams with their arrival time
//!   into one channel; one loop owns every UE, the timer heap and the scenario actions.
//!
//! The loop is the only code that reads the clock (its private `now()`); the UEs get `now` as an argument.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::scenario::Scenario;
use crate::stats::{RunStats, TimelinePoint, ViewerStats};
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
    ssrc: Option<u32>,
    timer: Option<Instant>,
}

struct Driver<'a> {
    sc: &'a Scenario,
    slots: Vec<Slot>,
    sip: Vec<Arc<UdpSocket>>,
    rtp: Vec<Arc<UdpSocket>>,
    rtp_ports: Vec<u16>,
    /// Per RTP socket: the UE waiting for its new path, and since when.
    path_wait: Vec<Option<(usize, Instant)>>,
    ssrc_map: HashMap<(usize, u32), usize>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    actions: BinaryHeap<Reverse<(Instant, usize)>>,
    rng: rand::rngs::StdRng,
    stats: RunStats,
    tick: TimelinePoint,
    touched: Vec<usize>,
    is_touched: Vec<bool>,
    end: Instant,
    zap_timeout: Duration,
}

impl Driver<'_> {
    fn touch(&mut self, i: usize) {
        if !self.is_touched[i] {
            self.is_touched[i] = true;
            self.touched.push(i);
        }
    }

    /// An RTP socket with no UE waiting for a new path (freeing stale waits), reserved for `i`.
    fn reserve_rtp(&mut self, i: usize, now: Instant) -> Option<usize> {
        let n = self.rtp.len();
        let start = i % n;
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

    fn act(&mut self, i: usize, now: Instant) {
        let sc = self.sc;
        match self.slots[i].phase {
            Phase::NotStarted => {
                let Some(s) = self.reserve_rtp(i, now) else {
                    self.actions
                        .push(Reverse((now + Duration::from_millis(10), i)));
                    return;
                };
                let subscribe = (i as f64 + 0.5) / (sc.ues as f64) <= sc.subscribe_share;
                let channel = sc.pick_channel(&mut self.rng, None).to_owned();
                let port = self.rtp_ports[s];
                let slot = &mut self.slots[i];
                slot.rtp = s;
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
                if !self.slots[i].ue.is_watching() {
                    return;
                }
                if self.rng.gen::<f64>() < sc.zap.probability {
                    let method = sc.zap_method(self.slots[i].zaps);
                    let cur = self.slots[i].ue.channel().map(str::to_owned);
                    let channel = sc.pick_channel(&mut self.rng, cur.as_deref()).to_owned();
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

    fn on_event(&mut self, i: usize, ev: UeEvent, now: Instant) {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let st = &mut self.stats;
        match ev {
            UeEvent::Registered(Ok(())) => st.registrations_ok += 1,
            UeEvent::Registered(Err(f)) => {
                st.registrations_failed += 1;
                *st.failures
                    .entry(format!("register_{}", f.reason()))
                    .or_default() += 1;
            }
            UeEvent::Subscribed(_) | UeEvent::ChannelList(_) => {}
            UeEvent::Joined { result: Ok(d), .. } => {
                st.joins_ok += 1;
                st.join_ms.push(ms(d));
                self.tick.joins += 1;
                self.slots[i].phase = Phase::Watching;
                let dwell = self.sc.dwell(&mut self.rng);
                self.actions.push(Reverse((now + dwell, i)));
            }
            UeEvent::Joined { result: Err(f), .. } => {
                st.joins_failed += 1;
                *st.failures.entry(f.reason()).or_default() += 1;
                self.slots[i].phase = Phase::Done;
                self.release_rtp(i);
            }
            UeEvent::FirstPacket(d) => st.first_packet_ms.push(ms(d)),
            UeEvent::FirstFrame(d) => st.first_frame_ms.push(ms(d)),
            UeEvent::Zapped { result, .. } => {
                match result {
                    Ok(d) => {
                        st.zaps_ok += 1;
                        st.zap_ms.push(ms(d));
                        self.tick.zaps += 1;
                    }
                    Err(f) => {
                        st.zaps_failed += 1;
                        *st.failures
                            .entry(format!("zap_{}", f.reason()))
                            .or_default() += 1;
                    }
                }
                if self.slots[i].ue.is_watching() {
                    let dwell = self.sc.dwell(&mut self.rng);
                    self.actions.push(Reverse((now + dwell, i)));
                } else if self.slots[i].ue.is_idle() {
                    self.slots[i].phase = Phase::Done;
                    self.release_rtp(i);
                }
            }
            UeEvent::Left | UeEvent::RemoteBye => {
                self.tick.leaves += 1;
                self.slots[i].phase = Phase::Done;
                self.release_rtp(i);
            }
        }
    }

    fn flush(&mut self, now: Instant) {
        let touched = std::mem::take(&mut self.touched);
        for &i in &touched {
            self.is_touched[i] = false;
            while let Some(t) = self.slots[i].ue.poll_transmit() {
                let (sock, to, bytes) = match t {
                    Transmit::Sip { to, bytes } => (&self.sip[self.slots[i].sip], to, bytes),
                    Transmit::Rtcp { to, bytes } => (&self.rtp[self.slots[i].rtp], to, bytes),
                };
                // A full send buffer drops the datagram; SIP retransmits, RTCP is periodic.
                let _ = sock.try_send_to(&bytes, to);
            }
            while let Some(ev) = self.slots[i].ue.poll_event() {
                self.on_event(i, ev, now);
            }
            // SSRC learnt: the socket's new-path slot is free again.
            let ssrc = self.slots[i].ue.rtp_ssrc();
            if ssrc.is_some() && ssrc != self.slots[i].ssrc {
                self.slots[i].ssrc = ssrc;
                self.release_rtp(i);
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
                    if media_relay::rtp::is_rtcp(&bytes) || bytes.len() < 12 {
                        continue;
                    }
                    let ssrc = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
                    let ue = match self.ssrc_map.get(&(idx, ssrc)) {
                        Some(&u) => Some(u),
                        None => match self.path_wait[idx] {
                            Some((u, _)) if self.slots[u].ue.awaiting_new_path() => {
                                if let Some(old) = self.slots[u].ssrc {
                                    self.ssrc_map.retain(|_, v| *v != u || old != ssrc);
                                }
                                self.ssrc_map.insert((idx, ssrc), u);
                                Some(u)
                            }
                            _ => None,
                        },
                    };
                    if let Some(u) = ue {
                        self.slots[u].ue.handle_media(at, &bytes);
                        self.touch(u);
                    }
                }
            }
        }
    }

    fn fire(&mut self, now: Instant) {
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
        ]
        .into_iter()
        .flatten()
        .min()
    }
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
/// few seconds for the last BYEs.
pub async fn run(
    scenario: &Scenario,
    target: SocketAddr,
    progress: &dyn Fn(&TimelinePoint),
) -> Result<RunStats, RunError> {
    scenario.validate()?;
    let ip = local_ip_for(target);
    let (tx, mut rx) = mpsc::channel::<Batch>(1024);
    let mut sip = Vec::new();
    for k in 0..scenario.sip_sockets {
        let s = Arc::new(UdpSocket::bind(SocketAddr::new(ip, 0)).await?);
        spawn_reader(SockKind::Sip, k, s.clone(), tx.clone());
        sip.push(s);
    }
    let mut rtp = Vec::new();
    let mut rtp_ports = Vec::new();
    for k in 0..scenario.rtp_sockets {
        let s = Arc::new(UdpSocket::bind(SocketAddr::new(ip, 0)).await?);
        rtp_ports.push(s.local_addr()?.port());
        spawn_reader(SockKind::Rtp, k, s.clone(), tx.clone());
        rtp.push(s);
    }
    drop(tx);
    let start = now();
    let n = scenario.ues;
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
        slots.push(Slot {
            ue,
            sip: s,
            rtp: 0,
            phase: Phase::NotStarted,
            zaps: 0,
            ssrc: None,
            timer: None,
        });
    }
    let mut d = Driver {
        sc: scenario,
        slots,
        rtp_ports,
        path_wait: vec![None; rtp.len()],
        sip,
        rtp,
        ssrc_map: HashMap::new(),
        timers: BinaryHeap::new(),
        actions: (0..n)
            .map(|i| {
                Reverse((
                    start + Duration::from_secs_f64(i as f64 / scenario.arrival_rate),
                    i,
                ))
            })
            .collect(),
        rng: rand::rngs::StdRng::seed_from_u64(scenario.seed),
        stats: RunStats {
            scenario: scenario.name.clone(),
            ues: n,
            ..RunStats::default()
        },
        tick: TimelinePoint::default(),
        touched: Vec::new(),
        is_touched: vec![false; n],
        end: start + Duration::from_secs_f64(scenario.duration_s),
        zap_timeout: Duration::from_secs_f64(scenario.zap.timeout_s),
    };
    let hard_end = d.end + DRAIN + d.zap_timeout;
    let mut next_tick = start + Duration::from_secs(1);
    let mut ending = false;
    loop {
        let t = now();
        d.fire(t);
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
            d.tick.active = d.slots.iter().filter(|s| s.ue.channel().is_some()).count() as u64;
            progress(&d.tick);
            d.stats.timeline.push(std::mem::take(&mut d.tick));
            next_tick += Duration::from_secs(1);
        }
        let all_done = d
            .slots
            .iter()
            .all(|s| matches!(s.phase, Phase::Done | Phase::NotStarted) && s.ue.is_idle());
        if (ending && all_done) || t >= hard_end {
            break;
        }
        let mut wake = next_tick.min(hard_end);
        if !ending {
            wake = wake.min(d.end);
        }
        if let Some(x) = d.next_deadline() {
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
    let mut stats = d.stats;
    stats.duration_s = (now() - start).as_secs_f64();
    for (i, s) in d.slots.iter().enumerate() {
        let m = s.ue.media();
        stats.viewers.push(ViewerStats {
            ue: i,
            packets: m.packets,
            lost: m.lost,
            jitter_ms: m.jitter_ms(),
            gap_ms_max: m.gap_max.as_secs_f64() * 1000.0,
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
