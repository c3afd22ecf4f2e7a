//! Batched output: the relay core's queue sent with `sendmmsg(2)` (many datagrams to many
//! viewers in one system call) and UDP GSO (`UDP_SEGMENT`: several equal-size datagrams to one
//! viewer in one buffer the kernel splits), gathered from the core's per-viewer 12-byte header
//! and the body shared by all viewers, so nothing is copied or allocated per packet.
//!
//! How it fits: after each loop turn the driver ([`super`]) calls [`Sender::flush`] with the
//! core's [`QueuedTransmits`]; this module builds `mmsghdr`s over the queue in place (two
//! iovecs per datagram: header, shared body), sends, and returns how many queue entries it
//! handled plus the failures the core must hear about. The core is then told
//! [`Relay::consume_transmits`](crate::relay::Relay::consume_transmits).
//!
//! Where each mechanism pays:
//! - **sendmmsg** is the fan-out case: one ingested packet is N datagrams to N destinations.
//!   One system call per up to [`MAX_MSGS`] datagrams instead of one each.
//! - **GSO** needs several datagrams to *one* destination: a fast-start burst (a cached GOP to a
//!   joining or zapping viewer), or live packets when the loop read several ingest packets in
//!   one turn (under load it does, up to the driver's ingest batch). In [`SendMode::Gso`] the
//!   queue is ordered by destination (stable per viewer) and runs of equal-size datagrams to one
//!   viewer (the last may be shorter, at most [`MAX_GSO_SEGMENTS`]) become one GSO message;
//!   those messages still go out many per `sendmmsg`. The kernel then walks the stack once per
//!   run instead of once per datagram.
//!
//! Runtime fallback: GSO is used only when the socket accepts the `UDP_SEGMENT` option (Linux
//! 4.18+); a GSO send refused with EIO/EINVAL (no checksum offload on the route, a path MTU
//! smaller than a segment) turns GSO off for good and resends without it; `sendmmsg` refused
//! with ENOSYS falls back to one `sendmsg` per datagram.
//!
//! Overload: the sockets are non-blocking and nothing here waits. EAGAIN/ENOBUFS means the
//! socket buffer is full: that datagram and everything after it in this flush is reported as
//! congested (the core then thins those viewers to the next key frame), because retrying now
//! would only spin. Other errors concern one datagram and its viewer only.
//!
//! The `nix` crate provides the safe `sendmmsg`/`sendmsg` wrappers (the workspace forbids
//! `unsafe`); `quinn-udp` was considered and not taken: its `send` takes one contiguous
//! `Transmit` to one destination (GSO, but no `sendmmsg` across destinations and no gather),
//! which is the wrong shape for fan-out.

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};

use nix::errno::Errno;
use nix::sys::socket::{self, sockopt, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};

use crate::control::ViewerId;
use crate::relay::{OutDatagram, OutSocket, QueuedTransmits};

/// How the driver sends what the core queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SendMode {
    /// One `sendmsg` per datagram (header and body gathered; the old `sendto` path).
    Single,
    /// `sendmmsg`: up to [`MAX_MSGS`] datagrams per system call.
    Mmsg,
    /// `sendmmsg` plus UDP GSO for runs of datagrams to one viewer (the default; falls back to
    /// [`SendMode::Mmsg`] where the kernel lacks GSO).
    #[default]
    Gso,
}

impl std::str::FromStr for SendMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sendto" | "single" => Ok(SendMode::Single),
            "sendmmsg" | "mmsg" => Ok(SendMode::Mmsg),
            "gso" => Ok(SendMode::Gso),
            other => Err(format!("unknown send mode {other} (sendto, sendmmsg, gso)")),
        }
    }
}

impl std::fmt::Display for SendMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SendMode::Single => "sendto",
            SendMode::Mmsg => "sendmmsg",
            SendMode::Gso => "gso",
        })
    }
}

/// Most messages per `sendmmsg` call (the kernel caps `vlen` at `UIO_MAXIOV`, 1024).
pub const MAX_MSGS: usize = 1024;
/// Most iovecs over all messages of one call (two per datagram; one message has at most
/// 2 x [`MAX_GSO_SEGMENTS`], well under the kernel's 1024 per message).
const MAX_IOV: usize = 2 * MAX_MSGS;
/// Most datagrams in one GSO message (the kernel's `UDP_MAX_SEGMENTS` is 64 or more).
pub const MAX_GSO_SEGMENTS: usize = 64;
/// Most bytes in one GSO message (a UDP payload is at most 65,507 bytes over IPv4).
const MAX_GSO_BYTES: usize = 65_000;

/// Why a datagram was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFailure {
    /// The socket buffer was full (EAGAIN, ENOBUFS).
    Congested,
    /// Any other error, for the viewer concerned.
    Error(io::ErrorKind),
}

/// Counters of the batched sender (how the work was split into system calls).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendCounters {
    /// System calls made (sendmmsg or sendmsg).
    pub syscalls: u64,
    /// Datagrams handed to the kernel successfully.
    pub datagrams: u64,
    /// GSO messages (each carried two or more datagrams).
    pub gso_messages: u64,
    /// Datagrams sent inside GSO messages.
    pub gso_datagrams: u64,
}

/// The batched sender of one driver (the effective mode after runtime detection).
#[derive(Debug)]
pub struct Sender {
    mode: SendMode,
    /// Queue indices in send order (GSO: grouped by destination).
    order: Vec<u32>,
    /// GSO planning: (destination key, queue index), sorted (reused).
    keys: Vec<(u64, u32)>,
    /// Groups of `order` (start, end) that go out as one message each.
    groups: Vec<(u32, u32)>,
    /// Destinations of the messages of one call (reused, owned: no per-call allocation).
    addrs: Vec<Option<SockaddrStorage>>,
    counters: SendCounters,
}

thread_local! {
    /// `mmsghdr` arrays for `sendmmsg`, one without control messages and one with room for the
    /// `UDP_SEGMENT` one. They hold raw pointers, so they are not `Send` and cannot live in the
    /// driver's future: one pair per thread, allocated once.
    static HEADERS: RefCell<Option<Headers>> = const { RefCell::new(None) };
}

#[derive(Debug)]
struct Headers {
    plain: MultiHeaders<SockaddrStorage>,
    gso: MultiHeaders<SockaddrStorage>,
}

impl Headers {
    fn new() -> Self {
        Headers {
            plain: MultiHeaders::preallocate(MAX_MSGS, None),
            gso: MultiHeaders::preallocate(MAX_MSGS, Some(nix::cmsg_space!(u16))),
        }
    }
}

/// Whether the kernel knows `UDP_SEGMENT` on this socket (Linux 4.18+).
pub fn gso_supported(sock: &impl AsFd) -> bool {
    socket::getsockopt(sock, sockopt::UdpGsoSegment).is_ok()
}

fn classify(e: Errno) -> SendFailure {
    match e {
        Errno::EAGAIN | Errno::ENOBUFS => SendFailure::Congested,
        e => SendFailure::Error(io::Error::from(e).kind()),
    }
}

impl Sender {
    /// A sender in `mode`; GSO is kept only if `probe` (the output RTP socket) supports it.
    pub fn new(mode: SendMode, probe: &impl AsFd) -> Self {
        let mode = match mode {
            SendMode::Gso if !gso_supported(probe) => {
                tracing::info!("UDP GSO not available: sendmmsg without it");
                SendMode::Mmsg
            }
            m => m,
        };
        Sender {
            mode,
            order: Vec::new(),
            keys: Vec::new(),
            groups: Vec::new(),
            addrs: Vec::with_capacity(MAX_MSGS),
            counters: SendCounters::default(),
        }
    }

    /// The mode in effect.
    pub fn mode(&self) -> SendMode {
        self.mode
    }

    /// What was sent so far.
    pub fn counters(&self) -> SendCounters {
        self.counters
    }

    /// Send every queued datagram (never waits). `failed` gets one entry per datagram not sent
    /// that was for a viewer. Returns how many queue entries were handled (all of them).
    pub fn flush<S: AsRawFd>(
        &mut self,
        q: &QueuedTransmits<'_>,
        rtp: &S,
        rtcp: &S,
        failed: &mut Vec<(ViewerId, SendFailure)>,
    ) -> usize {
        let n = q.len();
        if n == 0 {
            return 0;
        }
        self.plan(q);
        let mut g = 0;
        while g < self.groups.len() {
            let r = match self.mode {
                SendMode::Single => self.send_single(q, g, rtp, rtcp),
                SendMode::Mmsg | SendMode::Gso => self.send_mmsg(q, g, rtp, rtcp),
            };
            match r {
                Ok(next) => g = next,
                Err((at, e)) => {
                    let f = classify(e);
                    if f == SendFailure::Congested {
                        // The buffer is full: everything left in this flush is dropped.
                        for gi in at..self.groups.len() {
                            self.report(q, gi, f, failed);
                        }
                        break;
                    }
                    if self.mode == SendMode::Gso
                        && matches!(e, Errno::EIO | Errno::EINVAL)
                        && self.group_len(at) > 1
                    {
                        tracing::warn!(error = %e, "UDP GSO refused: sendmmsg without it from now on");
                        self.mode = SendMode::Mmsg;
                        // Resend the rest as single datagrams.
                        self.regroup_from(at);
                        g = at;
                        continue;
                    }
                    if e == Errno::ENOSYS && self.mode != SendMode::Single {
                        tracing::warn!("sendmmsg not available: one sendmsg per datagram");
                        self.mode = SendMode::Single;
                        self.regroup_from(at);
                        g = at;
                        continue;
                    }
                    self.report(q, at, f, failed);
                    g = at + 1;
                }
            }
        }
        n
    }

    fn group_len(&self, g: usize) -> usize {
        let (a, b) = self.groups[g];
        (b - a) as usize
    }

    /// Split the groups from `g` on into one-datagram groups.
    fn regroup_from(&mut self, g: usize) {
        let start = self.groups[g].0;
        let end = self.order.len() as u32;
        self.groups.truncate(g);
        self.groups.extend((start..end).map(|i| (i, i + 1)));
    }

    fn report(
        &self,
        q: &QueuedTransmits<'_>,
        g: usize,
        f: SendFailure,
        failed: &mut Vec<(ViewerId, SendFailure)>,
    ) {
        let (a, b) = self.groups[g];
        for &i in &self.order[a as usize..b as usize] {
            if let Some(v) = q.get(i as usize).and_then(|d| d.viewer) {
                failed.push((v, f));
            }
        }
    }

    /// Order the queue and cut it into messages.
    fn plan(&mut self, q: &QueuedTransmits<'_>) {
        let n = q.len();
        self.order.clear();
        self.order.extend(0..n as u32);
        self.groups.clear();
        if self.mode != SendMode::Gso {
            self.groups.extend((0..n as u32).map(|i| (i, i + 1)));
            return;
        }
        // By destination, queue order kept inside one destination (the index breaks ties).
        // Keys are computed once and sorted as plain integers (a comparison that read the
        // queue entries cost more than the sort itself); two destinations sharing a key (only
        // possible for IPv6) just split a run below, where destinations are compared exactly.
        self.keys.clear();
        self.keys
            .extend((0..n as u32).map(|i| (dest_key(&dgram(q, i)), i)));
        self.keys.sort_unstable();
        self.order.clear();
        self.order.extend(self.keys.iter().map(|&(_, i)| i));
        let mut a = 0usize;
        while a < n {
            let first = dgram(q, self.order[a]);
            let seg = first.len();
            let mut total = seg;
            let mut b = a + 1;
            // Equal-size datagrams to the same destination; the last one may be shorter.
            while b < n && b - a < MAX_GSO_SEGMENTS {
                let d = dgram(q, self.order[b]);
                if d.dest != first.dest
                    || d.socket != first.socket
                    || d.len() > seg
                    || d.is_empty()
                    || total + d.len() > MAX_GSO_BYTES
                {
                    break;
                }
                total += d.len();
                b += 1;
                if d.len() < seg {
                    break;
                }
            }
            self.groups.push((a as u32, b as u32));
            a = b;
        }
    }

    /// One `sendmsg` for group `g`; returns the next group.
    fn send_single<S: AsRawFd>(
        &mut self,
        q: &QueuedTransmits<'_>,
        g: usize,
        rtp: &S,
        rtcp: &S,
    ) -> Result<usize, (usize, Errno)> {
        let i = self.order[self.groups[g].0 as usize];
        let d = dgram(q, i);
        let fd = match d.socket {
            OutSocket::Rtp => rtp.as_raw_fd(),
            OutSocket::Rtcp => rtcp.as_raw_fd(),
        };
        let iov = [IoSlice::new(d.header), IoSlice::new(d.body)];
        let iov: &[IoSlice<'_>] = if d.header.is_empty() { &iov[1..] } else { &iov };
        let addr = SockaddrStorage::from(d.dest);
        self.counters.syscalls += 1;
        match socket::sendmsg(fd, iov, &[], MsgFlags::MSG_DONTWAIT, Some(&addr)) {
            Ok(_) => {
                self.counters.datagrams += 1;
                Ok(g + 1)
            }
            Err(e) => Err((g, e)),
        }
    }

    /// One `sendmmsg` from group `g` on: as many following groups as fit in one call (same
    /// socket, one GSO size); returns the first group not sent.
    fn send_mmsg<S: AsRawFd>(
        &mut self,
        q: &QueuedTransmits<'_>,
        g0: usize,
        rtp: &S,
        rtcp: &S,
    ) -> Result<usize, (usize, Errno)> {
        let first = dgram(q, self.order[self.groups[g0].0 as usize]);
        let socket_kind = first.socket;
        let fd = match socket_kind {
            OutSocket::Rtp => rtp.as_raw_fd(),
            OutSocket::Rtcp => rtcp.as_raw_fd(),
        };
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let mut ranges = [(0u16, 0u16); MAX_MSGS];
        let mut n_iov = 0usize;
        let mut n_msgs = 0usize;
        // The call's GSO size once a multi-datagram group joined it; the longest single
        // datagram so far (a single must not exceed the GSO size, or the kernel would split it).
        let mut gso: Option<usize> = None;
        let mut longest_single = 0usize;
        let mut datagrams = 0u64;
        let mut gso_datagrams = 0u64;
        let mut gso_messages = 0u64;
        self.addrs.clear();
        let mut g = g0;
        while g < self.groups.len() && n_msgs < MAX_MSGS {
            let (a, b) = self.groups[g];
            let count = (b - a) as usize;
            let lead = dgram(q, self.order[a as usize]);
            if lead.socket != socket_kind || n_iov + 2 * count > MAX_IOV {
                break;
            }
            if count > 1 {
                let seg = lead.len();
                match gso {
                    Some(s) if s != seg => break,
                    None if longest_single > seg => break,
                    _ => gso = Some(seg),
                }
            } else if gso.is_some_and(|s| lead.len() > s) {
                break;
            } else {
                longest_single = longest_single.max(lead.len());
            }
            let start = n_iov;
            for &i in &self.order[a as usize..b as usize] {
                let d = dgram(q, i);
                if !d.header.is_empty() {
                    iov[n_iov] = IoSlice::new(d.header);
                    n_iov += 1;
                }
                iov[n_iov] = IoSlice::new(d.body);
                n_iov += 1;
            }
            ranges[n_msgs] = (start as u16, n_iov as u16);
            self.addrs.push(Some(SockaddrStorage::from(lead.dest)));
            n_msgs += 1;
            datagrams += count as u64;
            if count > 1 {
                gso_messages += 1;
                gso_datagrams += count as u64;
            }
            g += 1;
        }
        let iov = &iov;
        let mut msgs: [&[IoSlice<'_>]; MAX_MSGS] = [&[]; MAX_MSGS];
        for (m, &(s, e)) in msgs.iter_mut().zip(&ranges[..n_msgs]) {
            *m = &iov[usize::from(s)..usize::from(e)];
        }
        let seg = gso.map(|s| s as u16);
        let result = HEADERS.with(|h| {
            let mut h = h.borrow_mut();
            let h = h.get_or_insert_with(Headers::new);
            self.counters.syscalls += 1;
            match &seg {
                Some(seg) => socket::sendmmsg(
                    fd,
                    &mut h.gso,
                    msgs[..n_msgs].iter(),
                    &self.addrs,
                    [ControlMessage::UdpGsoSegments(seg)],
                    MsgFlags::MSG_DONTWAIT,
                )
                .map(|r| r.count()),
                None => socket::sendmmsg(
                    fd,
                    &mut h.plain,
                    msgs[..n_msgs].iter(),
                    &self.addrs,
                    [],
                    MsgFlags::MSG_DONTWAIT,
                )
                .map(|r| r.count()),
            }
        });
        match result {
            Ok(sent) if sent == n_msgs => {
                self.counters.datagrams += datagrams;
                self.counters.gso_messages += gso_messages;
                self.counters.gso_datagrams += gso_datagrams;
                Ok(g)
            }
            // Nothing sent and no error: treat as a full buffer rather than spin.
            Ok(0) => Err((g0, Errno::EAGAIN)),
            // Partly sent: count what went, and go on from the first message not sent (the
            // next call reports its error, or sends it).
            Ok(sent) => {
                for gi in g0..g0 + sent {
                    let c = self.group_len(gi) as u64;
                    self.counters.datagrams += c;
                    if c > 1 {
                        self.counters.gso_messages += 1;
                        self.counters.gso_datagrams += c;
                    }
                }
                Ok(g0 + sent)
            }
            Err(e) => Err((g0, e)),
        }
    }
}

/// A sort key grouping datagrams by socket and destination: exact for IPv4 (address, port,
/// socket), a fold for IPv6.
fn dest_key(d: &OutDatagram<'_>) -> u64 {
    let ip = match d.dest {
        SocketAddr::V4(a) => u64::from(a.ip().to_bits()),
        SocketAddr::V6(a) => {
            let b = a.ip().to_bits();
            ((b >> 64) as u64 ^ b as u64) & 0x7fff_ffff_ffff
        }
    };
    let rtcp = u64::from(d.socket == OutSocket::Rtcp);
    (rtcp << 63) | (ip << 16) | u64::from(d.dest.port())
}

fn dgram<'a>(q: &QueuedTransmits<'a>, i: u32) -> OutDatagram<'a> {
    // `i` comes from `0..q.len()`; an out-of-range index cannot happen.
    q.get(i as usize).unwrap_or(OutDatagram {
        socket: OutSocket::Rtp,
        dest: SocketAddr::from(([0, 0, 0, 0], 0)),
        header: &[],
        body: &[],
        viewer: None,
    })
}
