//! Relay fan-out load test with real UDP sockets on loopback.
//!
//! What it measures: the relay's output RTP packets per CPU-second of the relay itself when one
//! channel fans out to N viewers, and where the relay saturates. How: the relay runs in this
//! process ([`Relay::spawn`]) on a dedicated thread with its own current-thread tokio runtime, so
//! the relay (core + driver + the kernel's loopback send path its `sendto` calls execute) is
//! exactly one OS thread whose CPU time is read from `/proc/self/task/TID/stat` (utime + stime).
//! A sender thread feeds one channel's ingest socket at a fixed rate with H.264-sized RTP
//! packets (12-byte header + 1200-byte payload, an IDR every `--gop-packets` packets so the
//! GOP cache cycles as in a live stream); N viewers are UDP sinks bound on 127.0.1.x, counted by
//! a separate sink thread. Sender and sinks are not counted.
//!
//! Send modes (`--modes`, default all three): `sendto` (one `sendmsg` per datagram, the old
//! path), `sendmmsg` (many datagrams to many viewers per system call) and `gso` (`sendmmsg` plus
//! UDP GSO for runs of datagrams to one viewer); each mode gets a fresh relay
//! ([`media_relay::driver::DriverOptions`]). A counting global allocator counts the heap
//! allocations made on the relay thread during each step: allocations per output packet (0 in
//! a steady state is the goal).
//!
//! For each mode and N (default 1, 10, 100, 1000) the rate climbs a ladder for
//! `--duration` seconds per step (`--rates`: input packets per second, default 1k .. 100k pps;
//! or `--output-rates`: output packets per second, the input being that divided by N, so every N
//! is measured at comparable load); the ladder stops for that N at the first step that is
//! saturated: any loss (input not read by the relay, sends that failed, or datagrams that never
//! reached a sink), relay CPU at or above `--cpu-limit`, or a sender that could not reach 95 %
//! of the target rate. Results: a table on stdout and JSON in `--out`.
//!
//! Run (release!): `cargo run --release -p media-relay --example fanout_load -- --help`, or
//! `scripts/bench-relay.sh`.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use media_relay::control::{AddViewer, ChannelId, ChannelSpec, RelayConfig, ViewerId};
use media_relay::driver::{DriverOptions, SendMode};
use media_relay::{RelayHandle, RelayStats};
use serde::Serialize;

/// Heap allocations made by the relay thread, counted by a global allocator that passes every
/// call to the system allocator (a bench-only tool: the library has no unsafe code).
#[allow(
    unsafe_code,
    reason = "GlobalAlloc is an unsafe trait; this only counts and forwards"
)]
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Allocations (alloc, alloc_zeroed, realloc) on threads that opted in.
    pub static ALLOCS: AtomicU64 = AtomicU64::new(0);

    thread_local! {
        static COUNTED: Cell<bool> = const { Cell::new(false) };
    }

    /// Count this thread's allocations from now on.
    pub fn count_this_thread() {
        COUNTED.with(|c| c.set(true));
    }

    fn note() {
        if COUNTED.try_with(Cell::get).unwrap_or(false) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counting allocator.
    pub struct Counting;

    // SAFETY: every method forwards to `System` with the caller's arguments unchanged.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note();
            // SAFETY: same contract as the caller's.
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            note();
            // SAFETY: same contract as the caller's.
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: same contract as the caller's.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note();
            // SAFETY: same contract as the caller's.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }
}

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

/// Relay fan-out load test (real UDP sockets on loopback).
#[derive(Debug, Parser)]
struct Args {
    /// Viewer counts to measure, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100,1000")]
    viewers: Vec<usize>,
    /// What to measure, comma separated: our relay's send modes (sendto, sendmmsg, gso; `MODE@US`
    /// adds a coalescing window of US microseconds, e.g. `gso@2000`) and `rtpengine` (needs
    /// `--rtpengine-ng` and `--rtpengine-pid`).
    #[arg(long, value_delimiter = ',', default_value = "sendto,sendmmsg,gso")]
    modes: Vec<String>,
    /// rtpengine's ng control address (UDP, bencode), for the `rtpengine` mode.
    #[arg(long)]
    rtpengine_ng: Option<SocketAddr>,
    /// rtpengine's process id (its CPU is utime + stime of the whole process).
    #[arg(long)]
    rtpengine_pid: Option<u32>,
    /// Output rate ladder (packets per second out, all viewers together); when given it
    /// replaces `--rates`: the input rate of a step is this divided by the viewer count.
    #[arg(long, value_delimiter = ',')]
    output_rates: Vec<u32>,
    /// How the sinks read: `poll` (non-blocking reads in a loop: a delivery wakes no thread, as
    /// when viewers are other machines) or `epoll` (a sleeping reader per socket: every
    /// delivery wakes the sink thread, and that wakeup is charged to the sending relay).
    #[arg(long, default_value = "poll")]
    sinks: SinkMode,
    /// The relay's coalescing window for live forwarding, in microseconds (0: off), for modes
    /// given without `@US`.
    #[arg(long, default_value_t = 0)]
    coalesce_us: u64,
    /// Most inputs the relay handles per loop turn before it sends.
    #[arg(long, default_value_t = 64)]
    ingest_batch: usize,
    /// Input rate ladder in RTP packets per second, comma separated, ascending.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1000,2000,3000,5000,7000,10000,15000,20000,30000,50000,75000,100000"
    )]
    rates: Vec<u32>,
    /// Seconds per step.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// RTP payload bytes per packet (the RTP header adds 12).
    #[arg(long, default_value_t = 1200)]
    payload: usize,
    /// An IDR packet every this many packets.
    #[arg(long, default_value_t = 1000)]
    gop_packets: u64,
    /// Stop the ladder when the relay thread uses this fraction of a core or more.
    #[arg(long, default_value_t = 0.95)]
    cpu_limit: f64,
    /// Largest loss fraction a step may have and still count as below saturation.
    #[arg(long, default_value_t = 0.0)]
    max_loss: f64,
    /// Keep climbing after a saturated step (to see the whole curve).
    #[arg(long)]
    no_stop: bool,
    /// Write the JSON results here.
    #[arg(long, default_value = "ci-artifacts/bench/relay-fanout.json")]
    out: PathBuf,
    /// Sinks take GSO datagrams whole (UDP_GRO on their sockets, `poll` sinks only): the
    /// loopback receive then does not split a GSO run back into datagrams, which it otherwise
    /// does in the sending relay's system call. Models a NIC with UDP segmentation offload;
    /// the default (off) charges the relay for software segmentation.
    #[arg(long)]
    sinks_gro: bool,
    /// The sender emits packets in frames of this many back to back (an encoder's frame), at
    /// rate / this frames per second; 1: evenly paced.
    #[arg(long, default_value_t = 1)]
    frame_packets: u32,
}

/// Latency histogram buckets (sender -> sink, one bucket per 100 µs, the last one open).
const LAT_BUCKETS: usize = 1000;
const LAT_BUCKET_US: u64 = 100;

/// How the sinks read (see `--sinks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum SinkMode {
    Poll,
    Epoll,
}

/// Socket buffer asked for on sinks and the sender (the kernel caps it at net.core.rmem_max).
const SINK_BUFFER: usize = 8 << 20;

#[expect(
    clippy::disallowed_methods,
    reason = "a load generator paces by the wall clock; the one clock read of this tool"
)]
fn now() -> Instant {
    Instant::now()
}

// ----- per-thread CPU time ---------------------------------------------------------------------

/// Clock ticks per second of /proc times (USER_HZ; 100 on every Linux this runs on).
const CLK_TCK: f64 = 100.0;

/// The calling thread's id, from `/proc/thread-self` -> `PID/task/TID`.
fn current_tid() -> anyhow::Result<u32> {
    let link = std::fs::read_link("/proc/thread-self").context("reading /proc/thread-self")?;
    let tid = link
        .file_name()
        .and_then(|s| s.to_str())
        .context("odd /proc/thread-self link")?;
    Ok(tid.parse()?)
}

/// Busy seconds of all CPUs together since boot, from the first line of `/proc/stat`
/// (user + nice + system + irq + softirq; not steal, the hypervisor's).
fn box_busy_secs() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let busy: u64 = [0, 1, 2, 5, 6].iter().filter_map(|&i| f.get(i)).sum();
    Ok(busy as f64 / CLK_TCK)
}

/// utime + stime of one thread of this process, in seconds.
fn thread_cpu_secs(tid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))?;
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15 (proc(5)).
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("odd stat line")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11).context("no utime")?.parse()?;
    let stime: u64 = f.get(12).context("no stime")?.parse()?;
    Ok((utime + stime) as f64 / CLK_TCK)
}

// ----- the relay on its own thread -------------------------------------------------------------

struct RelayThread {
    handle: RelayHandle,
    tid: u32,
    /// Dropping it ends the relay thread's runtime.
    done: tokio::sync::oneshot::Sender<()>,
    join: thread::JoinHandle<()>,
}

fn start_relay(options: DriverOptions) -> anyhow::Result<RelayThread> {
    let (tx, rx) = std::sync::mpsc::channel();
    let join = thread::Builder::new().name("relay".into()).spawn(move || {
        counting::count_this_thread();
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = tx.send(Err(anyhow::anyhow!(e)));
                return;
            }
        };
        rt.block_on(async move {
            let config = RelayConfig {
                // No sender reports during the run: the sinks count RTP only.
                rtcp_interval: Duration::from_secs(3600),
                viewer_timeout: None,
                ..RelayConfig::default()
            };
            let handle = match media_relay::Relay::spawn_with(config, options) {
                Ok(h) => h,
                Err(e) => {
                    let _ = tx.send(Err(anyhow::anyhow!(e)));
                    return;
                }
            };
            let tid = current_tid();
            let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
            let _ = tx.send(tid.map(|tid| (handle.clone(), tid, done_tx)));
            // The relay task runs on this runtime until the handle owner says stop.
            let _ = done_rx.await;
        });
    })?;
    let (handle, tid, done) = rx.recv().context("relay thread died")??;
    Ok(RelayThread {
        handle,
        tid,
        done,
        join,
    })
}

// ----- sinks -----------------------------------------------------------------------------------

struct Sinks {
    addrs: Vec<SocketAddr>,
    counts: Arc<Vec<AtomicU64>>,
    /// Sender -> sink latency of the first datagram of each read, in [`LAT_BUCKET_US`] buckets.
    latency: Arc<Vec<AtomicU64>>,
    stop: Arc<AtomicBool>,
    /// The sink thread's id (for its CPU time).
    tid: u32,
    join: thread::JoinHandle<()>,
}

impl Sinks {
    /// `n` UDP sinks on 127.0.1.1, 127.0.1.2, ... (ephemeral ports), read by one thread:
    /// `epoll` (a tokio task per socket) or `poll` (non-blocking reads in a loop, 50 µs naps).
    fn start(n: usize, how: SinkMode, gro: bool, base: Instant) -> anyhow::Result<Sinks> {
        let mut socks = Vec::with_capacity(n);
        let mut addrs = Vec::with_capacity(n);
        for i in 0..n {
            let ip = Ipv4Addr::new(127, 0, 1 + (i / 250) as u8, 1 + (i % 250) as u8);
            let s = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::DGRAM,
                Some(socket2::Protocol::UDP),
            )?;
            let _ = s.set_recv_buffer_size(SINK_BUFFER);
            s.set_nonblocking(true)?;
            s.bind(&SocketAddr::from((ip, 0)).into())
                .with_context(|| format!("binding a sink on {ip}"))?;
            let s: StdUdpSocket = s.into();
            if gro {
                nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::UdpGroSegment, &true)
                    .context("UDP_GRO on a sink")?;
            }
            addrs.push(s.local_addr()?);
            socks.push(s);
        }
        let counts: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
        let latency: Arc<Vec<AtomicU64>> =
            Arc::new((0..LAT_BUCKETS).map(|_| AtomicU64::new(0)).collect());
        let lat = latency.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let (c, st) = (counts.clone(), stop.clone());
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let join = thread::Builder::new().name("sinks".into()).spawn(move || {
            let _ = tid_tx.send(current_tid());
            if how == SinkMode::Poll {
                // Nobody sleeps on these sockets, so a delivery wakes no one: the relay's
                // send path pays for the loopback receive, not for waking this thread.
                let mut buf = vec![0u8; 65_536];
                while !st.load(Ordering::Relaxed) {
                    let mut any = false;
                    for (i, s) in socks.iter().enumerate() {
                        let mut k = 0u64;
                        while let Some((len, segments)) = recv_counted(s, &mut buf, gro) {
                            if len >= 12 && !(72..=76).contains(&(buf[1] & 0x7f)) {
                                k += segments;
                                note_latency(&lat, &buf[..len], base);
                            }
                        }
                        if k > 0 {
                            c[i].fetch_add(k, Ordering::Relaxed);
                            any = true;
                        }
                    }
                    if !any {
                        thread::sleep(Duration::from_micros(50));
                    }
                }
                return;
            }
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for (i, s) in socks.into_iter().enumerate() {
                    let Ok(s) = tokio::net::UdpSocket::from_std(s) else {
                        continue;
                    };
                    let c = c.clone();
                    tasks.push(tokio::spawn(async move {
                        let mut buf = vec![0u8; 2048];
                        while let Ok(len) = s.recv(&mut buf).await {
                            // RTP only: RTCP payload types 200..=204 show as 72..=76 here.
                            if len >= 12 && !(72..=76).contains(&(buf[1] & 0x7f)) {
                                c[i].fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }));
                }
                while !st.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                for t in tasks {
                    t.abort();
                }
            });
        })?;
        let tid = tid_rx.recv().context("sink thread died")??;
        Ok(Sinks {
            addrs,
            counts,
            latency,
            stop,
            tid,
            join,
        })
    }

    fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    fn latency_snapshot(&self) -> Vec<u64> {
        self.latency
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.join.join();
    }
}

/// One non-blocking read: (bytes, datagrams in it: more than one when UDP_GRO joined a GSO run).
fn recv_counted(s: &StdUdpSocket, buf: &mut [u8], gro: bool) -> Option<(usize, u64)> {
    if !gro {
        return s.recv(buf).ok().map(|n| (n, 1));
    }
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrStorage};
    use std::os::fd::AsRawFd;
    let mut cmsg = nix::cmsg_space!(i32);
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(
        s.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_DONTWAIT,
    )
    .ok()?;
    let len = msg.bytes;
    let seg = msg.cmsgs().ok().and_then(|mut c| {
        c.find_map(|m| match m {
            ControlMessageOwned::UdpGroSegments(s) => usize::try_from(s).ok(),
            _ => None,
        })
    });
    Some(match seg {
        Some(seg) if seg > 0 => (len.min(seg), len.div_ceil(seg) as u64),
        _ => (len, 1),
    })
}

/// The sender writes its send time (ns since `base`) at payload offset 1..9 (after the NAL
/// header byte): sender -> sink latency, relay queueing and coalescing included.
const STAMP: std::ops::Range<usize> = 13..21;

fn note_latency(hist: &[AtomicU64], datagram: &[u8], base: Instant) {
    let Some(stamp) = datagram
        .get(STAMP)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
    else {
        return;
    };
    let sent = u64::from_be_bytes(stamp);
    let now = now().duration_since(base).as_nanos() as u64;
    let us = now.saturating_sub(sent) / 1000;
    let b = ((us / LAT_BUCKET_US) as usize).min(LAT_BUCKETS - 1);
    hist[b].fetch_add(1, Ordering::Relaxed);
}

/// The `q` quantile (0..1) of a histogram difference, in milliseconds (bucket upper edge).
fn quantile_ms(after: &[u64], before: &[u64], q: f64) -> f64 {
    let d: Vec<u64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    let total: u64 = d.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let want = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut acc = 0;
    for (i, c) in d.iter().enumerate() {
        acc += c;
        if acc >= want {
            return ((i as u64 + 1) * LAT_BUCKET_US) as f64 / 1000.0;
        }
    }
    (LAT_BUCKETS as u64 * LAT_BUCKET_US) as f64 / 1000.0
}

// ----- sender ----------------------------------------------------------------------------------

/// Builds the `seq`-th packet of the stream into `buf`.
fn packet(buf: &mut [u8], seq: u64, gop_packets: u64) {
    let key = seq % gop_packets == 0;
    // A "frame" every 10 packets at 30 frames/s: timestamp step 3000.
    let ts = (seq / 10).wrapping_mul(3000) as u32;
    buf[0] = 0x80;
    buf[1] = 96 | if seq % 10 == 9 { 0x80 } else { 0 };
    buf[2..4].copy_from_slice(&(seq as u16).to_be_bytes());
    buf[4..8].copy_from_slice(&ts.to_be_bytes());
    buf[8..12].copy_from_slice(&0x5eed_f00du32.to_be_bytes());
    // H.264 NAL header: IDR slice (type 5) or non-IDR slice (type 1), RFC 6184 single NAL.
    buf[12] = if key { 0x65 } else { 0x41 };
}

/// Sends `total` packets to `dest` at `rate` per second; returns (sent, seconds taken).
fn send_step(
    sock: &StdUdpSocket,
    dest: SocketAddr,
    rate: u32,
    total: u64,
    first_seq: u64,
    args: &Args,
    base: Instant,
) -> (u64, f64) {
    let mut buf = vec![0xabu8; 12 + args.payload];
    let start = now();
    let mut sent = 0u64;
    let mut failed = 0u64;
    // Bounded: at most `total` sends, and a step never takes more than twice its time + 1 s.
    let limit = Duration::from_secs_f64(2.0 * total as f64 / f64::from(rate) + 1.0);
    while sent + failed < total {
        let elapsed = now().duration_since(start);
        if elapsed > limit {
            break;
        }
        let k = u64::from(args.frame_packets.max(1));
        let frames = (elapsed.as_secs_f64() * f64::from(rate) / k as f64) as u64 + 1;
        let due = (frames * k).min(total);
        while sent + failed < due {
            packet(&mut buf, first_seq + sent + failed, args.gop_packets);
            let t = now().duration_since(base).as_nanos() as u64;
            if let Some(b) = buf.get_mut(STAMP) {
                b.copy_from_slice(&t.to_be_bytes());
            }
            match sock.send_to(&buf, dest) {
                Ok(_) => sent += 1,
                Err(_) => failed += 1,
            }
        }
        thread::sleep(Duration::from_micros(200));
    }
    (sent, now().duration_since(start).as_secs_f64())
}

// ----- the ladder ------------------------------------------------------------------------------

#[derive(Debug, Serialize)]
struct Step {
    mode: String,
    viewers: usize,
    target_input_pps: u32,
    seconds: f64,
    input_packets: u64,
    input_pps: f64,
    relay_packets_in: u64,
    relay_packets_out: u64,
    relay_send_errors: u64,
    received_packets: u64,
    output_pps: f64,
    relay_cpu_seconds: f64,
    relay_cpu_percent: f64,
    output_packets_per_cpu_second: f64,
    /// Heap allocations on the relay thread during the step, per packet received by a sink.
    relay_allocs_per_output_packet: f64,
    /// Packets the relay did not send because of overload (full socket buffer, thinning).
    relay_packets_dropped: u64,
    /// Input datagrams the relay never read (its ingest socket overflowed: the relay thread
    /// was too slow or not scheduled).
    lost_before_relay: u64,
    /// Sends the relay itself reported as failed (its output socket buffer was full).
    lost_at_send: u64,
    /// Sent by the relay but not counted by a sink (a sink socket overflowed).
    lost_after_send: u64,
    /// 1 - received / (input packets x viewers).
    loss_fraction: f64,
    /// The sink thread's CPU (not counted for the relay), % of one core.
    sinks_cpu_percent: f64,
    /// The sender thread's CPU (not counted for the relay), % of one core.
    sender_cpu_percent: f64,
    /// The whole machine's busy CPU, % of one core (200 % = both cores of a 2-core box busy):
    /// shows when other work left the relay short of CPU.
    box_cpu_percent: f64,
    /// Sender -> sink latency of the first datagram of each sink read (relay queueing and
    /// coalescing included), 0.1 ms buckets: median, 99th percentile, largest.
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    latency_max_ms: f64,
    saturated: bool,
    saturated_because: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
struct Report {
    tool: &'static str,
    coalesce_us: u64,
    ingest_batch: usize,
    sinks: SinkMode,
    sinks_gro: bool,
    frame_packets: u32,
    packet_bytes: usize,
    gop_packets: u64,
    step_seconds: f64,
    cpu_limit: f64,
    max_loss: f64,
    loadavg_start: String,
    loadavg_end: String,
    rmem_max: String,
    steps: Vec<Step>,
    /// Per viewer count: the highest step below saturation.
    best: Vec<Best>,
}

#[derive(Debug, Serialize)]
struct Best {
    mode: String,
    viewers: usize,
    input_pps: f64,
    output_pps: f64,
    relay_cpu_percent: f64,
    output_packets_per_cpu_second: f64,
    first_saturated_input_pps: Option<u32>,
    relay_allocs_per_output_packet: f64,
}

fn totals(rt: &tokio::runtime::Runtime, h: &RelayHandle) -> anyhow::Result<(u64, u64, u64, u64)> {
    let s: RelayStats = rt.block_on(h.stats())?;
    Ok((
        s.totals.packets_in,
        s.totals.packets_out,
        s.totals.send_errors,
        s.totals.packets_dropped,
    ))
}

/// What forwards the load: our relay in one send mode, or an rtpengine daemon.
enum Target {
    Ours {
        relay: RelayThread,
        mode: SendMode,
        coalesce_us: u64,
    },
    Rtpengine(ng::Client),
}

impl Target {
    fn label(&self) -> String {
        match self {
            Target::Ours {
                mode, coalesce_us, ..
            } if *coalesce_us > 0 => format!("{mode}@{coalesce_us}"),
            Target::Ours { mode, .. } => mode.to_string(),
            Target::Rtpengine(_) => "rtpengine".to_owned(),
        }
    }

    /// The forwarder's CPU seconds (our relay thread; the whole rtpengine process).
    fn cpu_secs(&self) -> anyhow::Result<f64> {
        match self {
            Target::Ours { relay, .. } => thread_cpu_secs(relay.tid),
            Target::Rtpengine(c) => process_cpu_secs(c.pid),
        }
    }

    /// (packets in, packets out, failed sends, dropped) when the forwarder counts them.
    fn counters(
        &self,
        rt: &tokio::runtime::Runtime,
    ) -> anyhow::Result<Option<(u64, u64, u64, u64)>> {
        match self {
            Target::Ours { relay, .. } => totals(rt, &relay.handle).map(Some),
            Target::Rtpengine(_) => Ok(None),
        }
    }

    /// Set up one channel to `sinks` fed from `sender`; returns where to send and a name.
    fn open(
        &mut self,
        rt: &tokio::runtime::Runtime,
        n: usize,
        sinks: &[SocketAddr],
        sender: SocketAddr,
    ) -> anyhow::Result<(SocketAddr, String)> {
        let label = self.label();
        match self {
            Target::Ours { relay, .. } => {
                let channel = ChannelId::from(format!("fanout-{label}-{n}"));
                let ingest = rt.block_on(
                    relay
                        .handle
                        .create_ingest(ChannelSpec::new(channel.clone())),
                )?;
                for (i, addr) in sinks.iter().enumerate() {
                    rt.block_on(relay.handle.add_viewer(AddViewer {
                        viewer: ViewerId((n * 1000 + i) as u64),
                        channel: channel.clone(),
                        rtp_dest: *addr,
                        rtcp_dest: None,
                        payload_type: 96,
                        downstream: false,
                    }))?;
                }
                Ok((ingest.rtp_addr, channel.to_string()))
            }
            Target::Rtpengine(c) => {
                let call = format!("fanout-{}-{n}", std::process::id());
                let ingest = c.publish(&call, sender)?;
                for addr in sinks {
                    c.subscribe(&call, *addr)?;
                }
                Ok((ingest, call))
            }
        }
    }

    fn close(&mut self, rt: &tokio::runtime::Runtime, name: &str) -> anyhow::Result<()> {
        match self {
            Target::Ours { relay, .. } => {
                rt.block_on(relay.handle.delete_ingest(&ChannelId::from(name)))?;
            }
            // Best effort: with many subscribers the answer (full call statistics) may not fit
            // in one datagram; the call id is unique per run anyway.
            Target::Rtpengine(c) => {
                if let Err(e) = c.delete(name) {
                    println!("   (rtpengine delete of {name}: {e:#})");
                }
            }
        }
        Ok(())
    }
}

/// utime + stime of a whole process (all its threads), in seconds.
fn process_cpu_secs(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("odd stat line")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11).context("no utime")?.parse()?;
    let stime: u64 = f.get(12).context("no stime")?.parse()?;
    Ok((utime + stime) as f64 / CLK_TCK)
}

/// A minimal client of rtpengine's ng control protocol (a cookie, a space, a bencoded
/// dictionary, over UDP): `publish` one sendonly H.264 stream, then per viewer
/// `subscribe request` (rtpengine offers a sendonly stream and names the subscriber's tag) and
/// `subscribe answer` (the viewer's recvonly SDP with its address).
mod ng {
    use std::net::{SocketAddr, UdpSocket};
    use std::time::Duration;

    use anyhow::{bail, Context as _};

    /// A bencode value (what the ng protocol uses).
    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        Int(i64),
        Bytes(Vec<u8>),
        List(Vec<Value>),
        /// Keys kept sorted by the caller (bencode wants them sorted).
        Dict(Vec<(String, Value)>),
    }

    impl Value {
        fn encode(&self, out: &mut Vec<u8>) {
            match self {
                Value::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
                Value::Bytes(b) => {
                    out.extend_from_slice(format!("{}:", b.len()).as_bytes());
                    out.extend_from_slice(b);
                }
                Value::List(l) => {
                    out.push(b'l');
                    for v in l {
                        v.encode(out);
                    }
                    out.push(b'e');
                }
                Value::Dict(d) => {
                    let mut d: Vec<&(String, Value)> = d.iter().collect();
                    d.sort_by(|a, b| a.0.cmp(&b.0));
                    out.push(b'd');
                    for (k, v) in d {
                        Value::Bytes(k.as_bytes().to_vec()).encode(out);
                        v.encode(out);
                    }
                    out.push(b'e');
                }
            }
        }

        /// Decode one value at `*i` (bounded by the input; nesting depth at most 16).
        fn decode(s: &[u8], i: &mut usize, depth: usize) -> anyhow::Result<Value> {
            if depth > 16 {
                bail!("bencode nested too deep");
            }
            match s.get(*i).copied() {
                Some(b'i') => {
                    let end = s[*i..].iter().position(|&c| c == b'e').context("bad int")? + *i;
                    let v = std::str::from_utf8(&s[*i + 1..end])?.parse()?;
                    *i = end + 1;
                    Ok(Value::Int(v))
                }
                Some(b'l') => {
                    *i += 1;
                    let mut l = Vec::new();
                    while s.get(*i) != Some(&b'e') {
                        l.push(Value::decode(s, i, depth + 1)?);
                    }
                    *i += 1;
                    Ok(Value::List(l))
                }
                Some(b'd') => {
                    *i += 1;
                    let mut d = Vec::new();
                    while s.get(*i) != Some(&b'e') {
                        let Value::Bytes(k) = Value::decode(s, i, depth + 1)? else {
                            bail!("dictionary key is not a string");
                        };
                        let v = Value::decode(s, i, depth + 1)?;
                        d.push((String::from_utf8_lossy(&k).into_owned(), v));
                    }
                    *i += 1;
                    Ok(Value::Dict(d))
                }
                Some(c) if c.is_ascii_digit() => {
                    let colon = s[*i..]
                        .iter()
                        .position(|&c| c == b':')
                        .context("bad string")?
                        + *i;
                    let n: usize = std::str::from_utf8(&s[*i..colon])?.parse()?;
                    let body = s.get(colon + 1..colon + 1 + n).context("short string")?;
                    *i = colon + 1 + n;
                    Ok(Value::Bytes(body.to_vec()))
                }
                _ => bail!("bad bencode at {}", *i),
            }
        }

        fn get(&self, key: &str) -> Option<&Value> {
            match self {
                Value::Dict(d) => d.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                _ => None,
            }
        }

        fn str(&self, key: &str) -> Option<String> {
            match self.get(key) {
                Some(Value::Bytes(b)) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            }
        }
    }

    fn s(v: &str) -> Value {
        Value::Bytes(v.as_bytes().to_vec())
    }

    /// The ng client.
    pub struct Client {
        sock: UdpSocket,
        cookie: u64,
        /// rtpengine's process id.
        pub pid: u32,
    }

    fn sdp(addr: SocketAddr, direction: &str, session: u32) -> String {
        let (ip, port) = (addr.ip(), addr.port());
        format!(
            "v=0\r\no=- {session} 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
             m=video {port} RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na={direction}\r\n"
        )
    }

    impl Client {
        /// A client of the daemon at `ng`, whose process is `pid`.
        pub fn new(ng: SocketAddr, pid: u32) -> anyhow::Result<Client> {
            let sock = UdpSocket::bind("127.0.0.1:0")?;
            sock.connect(ng)?;
            sock.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut c = Client {
                sock,
                cookie: 0,
                pid,
            };
            let r = c.call(vec![("command".into(), s("ping"))])?;
            if r.str("result").as_deref() != Some("pong") {
                bail!("rtpengine did not answer ping: {r:?}");
            }
            Ok(c)
        }

        fn call(&mut self, dict: Vec<(String, Value)>) -> anyhow::Result<Value> {
            self.cookie += 1;
            let mut msg = format!("fanout{} ", self.cookie).into_bytes();
            Value::Dict(dict).encode(&mut msg);
            self.sock.send(&msg)?;
            let mut buf = vec![0u8; 65_536];
            let n = self
                .sock
                .recv(&mut buf)
                .context("no answer from rtpengine")?;
            let body = buf[..n]
                .iter()
                .position(|&c| c == b' ')
                .context("no cookie in the answer")?;
            let mut i = body + 1;
            let v = Value::decode(&buf[..n], &mut i, 0)?;
            if v.str("result").as_deref() == Some("error") {
                bail!("rtpengine: {}", v.str("error-reason").unwrap_or_default());
            }
            Ok(v)
        }

        /// `publish` a sendonly H.264 stream from `from`; returns where to send it.
        pub fn publish(&mut self, call: &str, from: SocketAddr) -> anyhow::Result<SocketAddr> {
            let r = self.call(vec![
                ("command".into(), s("publish")),
                ("call-id".into(), s(call)),
                ("from-tag".into(), s("producer")),
                ("sdp".into(), s(&sdp(from, "sendonly", 1))),
                // Without this rtpengine 10.5 refuses a video codec it cannot decode.
                (
                    "codec".into(),
                    Value::Dict(vec![("accept".into(), Value::List(vec![s("H264")]))]),
                ),
            ])?;
            let answer = r.str("sdp").context("publish: no SDP")?;
            media_addr(&answer).context("publish: no m=/c= in the answer")
        }

        /// Add one subscriber receiving at `to`.
        pub fn subscribe(&mut self, call: &str, to: SocketAddr) -> anyhow::Result<()> {
            let r = self.call(vec![
                ("command".into(), s("subscribe request")),
                ("call-id".into(), s(call)),
                ("from-tag".into(), s("producer")),
            ])?;
            let tag = r.str("to-tag").context("subscribe request: no to-tag")?;
            self.call(vec![
                ("command".into(), s("subscribe answer")),
                ("call-id".into(), s(call)),
                ("to-tag".into(), s(&tag)),
                ("sdp".into(), s(&sdp(to, "recvonly", 2))),
            ])?;
            Ok(())
        }

        /// `delete` the call.
        pub fn delete(&mut self, call: &str) -> anyhow::Result<()> {
            self.call(vec![
                ("command".into(), s("delete")),
                ("call-id".into(), s(call)),
                ("from-tag".into(), s("producer")),
            ])?;
            Ok(())
        }
    }

    /// The media address of an SDP (`c=IN IP4 x` and the first `m=` port).
    fn media_addr(sdp: &str) -> Option<SocketAddr> {
        let ip = sdp
            .lines()
            .find_map(|l| l.trim().strip_prefix("c=IN IP4 "))?
            .trim()
            .parse::<std::net::Ipv4Addr>()
            .ok()?;
        let port = sdp
            .lines()
            .find_map(|l| l.trim().strip_prefix("m="))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some(SocketAddr::from((ip, port)))
    }
}

fn run_n(
    args: &Args,
    rt: &tokio::runtime::Runtime,
    target: &mut Target,
    n: usize,
    steps: &mut Vec<Step>,
) -> anyhow::Result<()> {
    let mode = target.label();
    let base = now();
    let sinks = Sinks::start(n, args.sinks, args.sinks_gro, base)?;
    let sender = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    let _ = sender.set_send_buffer_size(SINK_BUFFER);
    sender.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    let sender: StdUdpSocket = sender.into();
    let (ingest, channel) = target.open(rt, n, &sinks.addrs, sender.local_addr()?)?;
    let mut seq = 0u64;
    let sender_tid = current_tid()?;
    println!(
        "== {mode}, {n} viewer(s): channel {channel}, ingest {ingest}, sinks {}..{}",
        sinks.addrs[0],
        sinks.addrs[n - 1]
    );
    let ladder: Vec<u32> = if args.output_rates.is_empty() {
        args.rates.clone()
    } else {
        let mut l: Vec<u32> = args
            .output_rates
            .iter()
            .map(|&o| (o / n as u32).max(1))
            .collect();
        l.dedup();
        l
    };
    for &rate in &ladder {
        let total = (f64::from(rate) * args.duration).round() as u64;
        let c0 = target.counters(rt)?;
        let allocs0 = counting::ALLOCS.load(Ordering::Relaxed);
        let recv0 = sinks.total();
        let lat0 = sinks.latency_snapshot();
        let cpu0 = target.cpu_secs()?;
        let sink_cpu0 = thread_cpu_secs(sinks.tid)?;
        let sender_cpu0 = thread_cpu_secs(sender_tid)?;
        let box0 = box_busy_secs()?;
        let t0 = now();
        // Send in one-second slices so progress can be printed while it runs.
        let mut sent = 0u64;
        let mut slice = 0u64;
        while slice * u64::from(rate) < total {
            let this = (total - slice * u64::from(rate)).min(u64::from(rate));
            let (s, _) = send_step(&sender, ingest, rate, this, seq, args, base);
            seq += this;
            sent += s;
            slice += 1;
            let el = now().duration_since(t0).as_secs_f64();
            let cpu = target.cpu_secs()? - cpu0;
            println!(
                "   [{mode}, {n} viewers, {rate} pps] t={el:.1}s sent={sent} received={} relay cpu={:.0}% machine cpu={:.0}%",
                sinks.total() - recv0,
                100.0 * cpu / el,
                100.0 * (box_busy_secs()? - box0) / el
            );
        }
        let send_secs = now().duration_since(t0).as_secs_f64();
        // The machine over the sending time only (other work goes on while the queues drain).
        let box_busy = box_busy_secs()? - box0;
        // Let the queues drain: wait until the sinks stop counting (at most 2 s).
        let mut last = sinks.total();
        for _ in 0..20 {
            thread::sleep(Duration::from_millis(100));
            let c = sinks.total();
            if c == last {
                break;
            }
            last = c;
        }
        let cpu = target.cpu_secs()? - cpu0;
        let sink_cpu = thread_cpu_secs(sinks.tid)? - sink_cpu0;
        let sender_cpu = thread_cpu_secs(sender_tid)? - sender_cpu0;
        let received = sinks.total() - recv0;
        let lat1 = sinks.latency_snapshot();
        let allocs = counting::ALLOCS.load(Ordering::Relaxed) - allocs0;
        let c1 = target.counters(rt)?;
        // rtpengine does not count for us: its whole loss shows as "after send".
        let (pin, pout, perr, pdrop) = match (c0, c1) {
            (Some(a), Some(b)) => (b.0 - a.0, b.1 - a.1, b.2 - a.2, b.3 - a.3),
            _ => (sent, sent * n as u64, 0, 0),
        };
        let expected = sent * n as u64;
        let lost_before_relay = sent.saturating_sub(pin);
        let lost_at_send = perr;
        let lost_after_send = pout.saturating_sub(perr).saturating_sub(received);
        let loss_fraction = if expected == 0 {
            0.0
        } else {
            expected.saturating_sub(received) as f64 / expected as f64
        };
        let cpu_frac = cpu / send_secs;
        let input_pps = sent as f64 / send_secs;
        let mut why = Vec::new();
        if loss_fraction > args.max_loss {
            why.push("loss");
        }
        if cpu_frac >= args.cpu_limit {
            why.push("relay cpu");
        }
        if input_pps < 0.95 * f64::from(rate) {
            why.push("sender below target");
        }
        let step = Step {
            mode: mode.clone(),
            viewers: n,
            target_input_pps: rate,
            seconds: send_secs,
            input_packets: sent,
            input_pps,
            relay_packets_in: pin,
            relay_packets_out: pout,
            relay_send_errors: perr,
            received_packets: received,
            output_pps: received as f64 / send_secs,
            relay_cpu_seconds: cpu,
            relay_cpu_percent: 100.0 * cpu_frac,
            output_packets_per_cpu_second: if cpu > 0.0 {
                received as f64 / cpu
            } else {
                0.0
            },
            relay_allocs_per_output_packet: allocs as f64 / received.max(1) as f64,
            relay_packets_dropped: pdrop,
            lost_before_relay,
            lost_at_send,
            lost_after_send,
            loss_fraction,
            sinks_cpu_percent: 100.0 * sink_cpu / send_secs,
            sender_cpu_percent: 100.0 * sender_cpu / send_secs,
            box_cpu_percent: 100.0 * box_busy / send_secs,
            latency_p50_ms: quantile_ms(&lat1, &lat0, 0.5),
            latency_p99_ms: quantile_ms(&lat1, &lat0, 0.99),
            latency_max_ms: quantile_ms(&lat1, &lat0, 1.0),
            saturated: !why.is_empty(),
            saturated_because: why,
        };
        println!(
            "   -> in {:.0} pps, out {:.0} pps, relay cpu {:.2} s ({:.0}%), {:.0} out pkts/cpu-s, {:.4} allocs/out pkt, loss {:.4}% (before relay {}, at send {}, after send {}), latency p50/p99/max {:.1}/{:.1}/{:.1} ms{}",
            step.input_pps,
            step.output_pps,
            step.relay_cpu_seconds,
            step.relay_cpu_percent,
            step.output_packets_per_cpu_second,
            step.relay_allocs_per_output_packet,
            100.0 * step.loss_fraction,
            lost_before_relay,
            lost_at_send,
            lost_after_send,
            step.latency_p50_ms,
            step.latency_p99_ms,
            step.latency_max_ms,
            if step.saturated {
                format!("  SATURATED ({})", step.saturated_because.join(", "))
            } else {
                String::new()
            }
        );
        let saturated = step.saturated;
        steps.push(step);
        if saturated && !args.no_stop {
            break;
        }
    }
    target.close(rt, &channel)?;
    sinks.stop();
    Ok(())
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.viewers.is_empty() || args.rates.is_empty() || args.viewers.contains(&0) {
        bail!("need at least one viewer count (> 0) and one rate");
    }
    if args.viewers.iter().any(|&n| n > 10_000) || args.rates.contains(&0) {
        bail!("viewers at most 10000, rates above 0");
    }
    if !(0.1..=60.0).contains(&args.duration) || args.payload < 1 || args.payload > 8000 {
        bail!("duration 0.1..60 s, payload 1..8000 bytes");
    }
    if args.sinks_gro && args.sinks != SinkMode::Poll {
        bail!("--sinks-gro needs --sinks poll");
    }
    let loadavg_start = read_trim("/proc/loadavg");
    println!(
        "relay fan-out load: {} byte RTP packets, {} s per step, load average {loadavg_start}",
        12 + args.payload,
        args.duration
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut steps = Vec::new();
    for mode in &args.modes {
        let mut target = if mode == "rtpengine" {
            let (Some(ng), Some(pid)) = (args.rtpengine_ng, args.rtpengine_pid) else {
                bail!("mode rtpengine needs --rtpengine-ng and --rtpengine-pid");
            };
            Target::Rtpengine(ng::Client::new(ng, pid)?)
        } else {
            // `MODE@US`: that mode with a coalescing window of US microseconds.
            let (name, window) = match mode.split_once('@') {
                Some((m, us)) => (m, us.parse().context("MODE@MICROSECONDS")?),
                None => (mode.as_str(), args.coalesce_us),
            };
            let send_mode: SendMode = name.parse().map_err(|e: String| anyhow::anyhow!(e))?;
            Target::Ours {
                relay: start_relay(DriverOptions {
                    send_mode,
                    ingest_batch: args.ingest_batch,
                    coalesce: Duration::from_micros(window),
                    ..DriverOptions::default()
                })?,
                mode: send_mode,
                coalesce_us: window,
            }
        };
        for &n in &args.viewers {
            run_n(&args, &rt, &mut target, n, &mut steps)?;
        }
        if let Target::Ours { relay, .. } = target {
            let _ = rt.block_on(relay.handle.shutdown());
            drop(relay.done);
            let _ = relay.join.join();
        }
    }

    let best: Vec<Best> = args
        .modes
        .iter()
        .flat_map(|m| args.viewers.iter().map(move |&n| (m.clone(), n)))
        .map(|(mode, n)| {
            let ok = steps
                .iter()
                .filter(|s| s.mode == mode && s.viewers == n && !s.saturated)
                .max_by(|a, b| a.output_pps.total_cmp(&b.output_pps));
            let sat = steps
                .iter()
                .find(|s| s.mode == mode && s.viewers == n && s.saturated)
                .map(|s| s.target_input_pps);
            Best {
                relay_allocs_per_output_packet: ok
                    .map_or(0.0, |s| s.relay_allocs_per_output_packet),
                mode,
                viewers: n,
                input_pps: ok.map_or(0.0, |s| s.input_pps),
                output_pps: ok.map_or(0.0, |s| s.output_pps),
                relay_cpu_percent: ok.map_or(0.0, |s| s.relay_cpu_percent),
                output_packets_per_cpu_second: ok.map_or(0.0, |s| s.output_packets_per_cpu_second),
                first_saturated_input_pps: sat,
            }
        })
        .collect();
    let report = Report {
        tool: "media-relay/examples/fanout_load.rs",
        sinks: args.sinks,
        sinks_gro: args.sinks_gro,
        frame_packets: args.frame_packets,
        coalesce_us: args.coalesce_us,
        ingest_batch: args.ingest_batch,
        packet_bytes: 12 + args.payload,
        gop_packets: args.gop_packets,
        step_seconds: args.duration,
        cpu_limit: args.cpu_limit,
        max_loss: args.max_loss,
        loadavg_start,
        loadavg_end: read_trim("/proc/loadavg"),
        rmem_max: read_trim("/proc/sys/net/core/rmem_max"),
        steps,
        best,
    };

    println!();
    println!("| mode | viewers | input pps | output pps | relay CPU s | relay CPU % | output pkts per relay CPU-s | relay allocs per out pkt | loss % | lost before relay / at send / after send | latency p50 / p99 ms | sinks / sender / machine CPU % | saturated |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for s in &report.steps {
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} | {:.4} | {:.3} | {} / {} / {} | {:.1} / {:.1} | {:.0} / {:.0} / {:.0} | {} |",
            s.mode,
            s.viewers,
            s.input_pps,
            s.output_pps,
            s.relay_cpu_seconds,
            s.relay_cpu_percent,
            s.output_packets_per_cpu_second,
            s.relay_allocs_per_output_packet,
            100.0 * s.loss_fraction,
            s.lost_before_relay,
            s.lost_at_send,
            s.lost_after_send,
            s.latency_p50_ms,
            s.latency_p99_ms,
            s.sinks_cpu_percent,
            s.sender_cpu_percent,
            s.box_cpu_percent,
            if s.saturated {
                s.saturated_because.join(", ")
            } else {
                "no".to_owned()
            }
        );
    }
    println!();
    for b in &report.best {
        println!(
            "{} {} viewer(s): highest step below saturation {:.0} pps in -> {:.0} pps out, {:.0} out pkts per relay CPU-s ({:.0}% CPU, {:.4} allocs/out pkt); first saturated at {}",
            b.mode,
            b.viewers,
            b.input_pps,
            b.output_pps,
            b.output_packets_per_cpu_second,
            b.relay_cpu_percent,
            b.relay_allocs_per_output_packet,
            b.first_saturated_input_pps
                .map_or("none of the rates".to_owned(), |r| format!("{r} pps in"))
        );
    }
    if let Some(dir) = args.out.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("JSON: {}", args.out.display());
    Ok(())
}
