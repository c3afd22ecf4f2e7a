//! The batched output path over real UDP on 127.0.0.1: the sans-IO core's queue sent by
//! [`batch::Sender`] in each mode (one `sendmsg` per datagram, `sendmmsg`, `sendmmsg` + GSO) to
//! 50 viewers, each of which must get every packet, in order, with its own SSRC and contiguous
//! sequence numbers; and, through the spawned driver, a viewer that never reads its socket does
//! not cost the others anything. Counts only, no timing asserts; every wait is bounded.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use media_relay::control::{AddViewer, ChannelId, ChannelSpec, RelayConfig, ViewerId};
use media_relay::driver::batch::{SendFailure, SendMode, Sender};
use media_relay::driver::DriverOptions;
use media_relay::rtp::{self, HeaderRewrite};
use media_relay::Relay;

#[expect(clippy::disallowed_methods, reason = "a test needs one base instant")]
fn t0() -> Instant {
    Instant::now()
}

/// Source packet `seq`: an IDR every `gop` packets, 1212 bytes except every 7th (a frame's
/// last packet, shorter); the source sequence number is repeated in the payload.
fn packet(seq: u16, gop: u16) -> Vec<u8> {
    let mut v = Vec::with_capacity(1212);
    rtp::write_header(
        &mut v,
        seq % 7 == 6,
        &HeaderRewrite {
            ssrc: 0x5eed,
            sequence: seq,
            timestamp: u32::from(seq / 7) * 3000,
            payload_type: 96,
        },
    );
    v.push(if seq % gop == 0 { 0x65 } else { 0x41 });
    v.extend_from_slice(&seq.to_be_bytes());
    let len = if seq % 7 == 6 { 700 } else { 1212 };
    v.resize(len, 0xab);
    v
}

fn sink() -> UdpSocket {
    let s = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .unwrap();
    let _ = s.set_recv_buffer_size(4 << 20);
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let s: UdpSocket = s.into();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

/// Read until `want` datagrams came or a read times out: (RTP seq, SSRC, source seq).
fn read_all(s: &UdpSocket, want: usize) -> Vec<(u16, u32, u16)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while got.len() < want {
        let Ok(n) = s.recv(&mut buf) else { break };
        let info = rtp::parse(&buf[..n]).expect("valid RTP");
        let p = info.payload(&buf[..n]);
        got.push((info.sequence, info.ssrc, u16::from_be_bytes([p[1], p[2]])));
    }
    got
}

fn flush(sender: &mut Sender, relay: &mut Relay, out: &UdpSocket) {
    let mut failed: Vec<(ViewerId, SendFailure)> = Vec::new();
    let q = relay.transmits();
    let n = sender.flush(&q, out, out, &mut failed);
    relay.consume_transmits(n);
    assert!(failed.is_empty(), "no send failed on loopback: {failed:?}");
}

fn fan_out_to_50_viewers(mode: SendMode) -> media_relay::driver::batch::SendCounters {
    const VIEWERS: usize = 50;
    const GOP: u16 = 20;
    const LIVE: u16 = 40;
    let now = t0();
    let mut relay = Relay::new(RelayConfig::default(), 42);
    let ch = ChannelId::from("batch");
    relay.create_channel(ChannelSpec::new("batch")).unwrap();
    let out = UdpSocket::bind("127.0.0.1:0").unwrap();
    out.set_nonblocking(true).unwrap();
    let mut sender = Sender::new(mode, &out);
    // A GOP in the cache: every viewer's join is a burst of GOP packets to one destination.
    for seq in 0..GOP {
        relay.ingest(now, &ch, &packet(seq, GOP)).unwrap();
    }
    let sinks: Vec<UdpSocket> = (0..VIEWERS).map(|_| sink()).collect();
    let mut ssrcs = Vec::new();
    for (i, s) in sinks.iter().enumerate() {
        let ssrc = relay
            .add_viewer(
                now,
                &AddViewer {
                    viewer: ViewerId(i as u64),
                    channel: ch.clone(),
                    rtp_dest: s.local_addr().unwrap(),
                    rtcp_dest: None,
                    payload_type: 96,
                    downstream: false,
                },
            )
            .unwrap();
        ssrcs.push(ssrc);
    }
    flush(&mut sender, &mut relay, &out);
    // Live packets, several per flush (as when the driver read several ingest packets in one
    // turn): runs of datagrams per viewer for GSO.
    for chunk in (GOP..GOP + LIVE).collect::<Vec<_>>().chunks(8) {
        for &seq in chunk {
            relay.ingest(now, &ch, &packet(seq, GOP)).unwrap();
        }
        flush(&mut sender, &mut relay, &out);
    }
    let want = usize::from(GOP + LIVE);
    for (i, s) in sinks.iter().enumerate() {
        let got = read_all(s, want);
        assert_eq!(got.len(), want, "{mode}: viewer {i} got every packet");
        for (k, g) in got.iter().enumerate() {
            assert_eq!(g.1, ssrcs[i], "{mode}: viewer {i} has its own SSRC");
            assert_eq!(g.2, k as u16, "{mode}: viewer {i}: source order kept");
            assert_eq!(
                g.0,
                got[0].0.wrapping_add(k as u16),
                "{mode}: viewer {i}: contiguous sequence numbers"
            );
        }
    }
    let c = sender.counters();
    assert_eq!(c.datagrams, (VIEWERS * want) as u64, "{mode}: {c:?}");
    c
}

#[test]
fn sendto_path_delivers_everything_in_order() {
    let c = fan_out_to_50_viewers(SendMode::Single);
    assert_eq!(c.syscalls, c.datagrams, "one system call per datagram");
}

#[test]
fn sendmmsg_path_delivers_everything_in_order() {
    let c = fan_out_to_50_viewers(SendMode::Mmsg);
    assert!(
        c.syscalls * 20 <= c.datagrams,
        "many datagrams per system call: {c:?}"
    );
    assert_eq!(c.gso_messages, 0);
}

#[test]
fn gso_path_delivers_everything_in_order() {
    let out = UdpSocket::bind("127.0.0.1:0").unwrap();
    let gso = media_relay::driver::batch::gso_supported(&out);
    let c = fan_out_to_50_viewers(SendMode::Gso);
    if gso {
        assert!(
            c.gso_datagrams > c.datagrams / 2,
            "most went in GSO runs: {c:?}"
        );
        assert!(c.syscalls * 100 <= c.datagrams, "{c:?}");
    } else {
        eprintln!("no UDP GSO on this kernel: the sendmmsg fallback was checked");
    }
}

/// One viewer never reads (a tiny receive buffer that stays full); the others read and must
/// get at least 99 % of the packets (on loopback, in fact all of them): the stuck viewer costs
/// the relay nothing and stalls no one.
#[tokio::test]
async fn a_viewer_that_never_reads_costs_the_others_nothing() {
    const VIEWERS: usize = 20;
    const N: u16 = 600;
    let relay = Relay::spawn_with(RelayConfig::default(), DriverOptions::default()).unwrap();
    let ingest = relay.create_ingest(ChannelSpec::new("o")).await.unwrap();
    let stuck = {
        let s = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .unwrap();
        s.set_recv_buffer_size(1).unwrap(); // the kernel's minimum: a few datagrams
        s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        UdpSocket::from(s)
    };
    let readers: Vec<UdpSocket> = (1..VIEWERS).map(|_| sink()).collect();
    let dests: Vec<SocketAddr> = std::iter::once(stuck.local_addr().unwrap())
        .chain(readers.iter().map(|s| s.local_addr().unwrap()))
        .collect();
    for (i, d) in dests.iter().enumerate() {
        relay
            .add_viewer(AddViewer {
                viewer: ViewerId(i as u64),
                channel: ChannelId::from("o"),
                rtp_dest: *d,
                rtcp_dest: None,
                payload_type: 96,
                downstream: false,
            })
            .await
            .unwrap();
    }
    // Readers run on their own threads, so the relay is never waiting for them.
    let handles: Vec<_> = readers
        .into_iter()
        .map(|s| std::thread::spawn(move || read_all(&s, usize::from(N)).len()))
        .collect();
    let producer = UdpSocket::bind("127.0.0.1:0").unwrap();
    for seq in 0..N {
        producer
            .send_to(&packet(seq, 100), ingest.rtp_addr)
            .unwrap();
        if seq % 20 == 19 {
            // Let the relay keep up with a 2-core CI box: counts below, not times.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let mut total = 0usize;
    for (i, h) in handles.into_iter().enumerate() {
        let got = tokio::task::spawn_blocking(move || h.join().unwrap())
            .await
            .unwrap();
        assert!(
            got * 100 >= usize::from(N) * 99,
            "reader {} got {got} of {N}",
            i + 1
        );
        total += got;
    }
    assert!(total >= (VIEWERS - 1) * usize::from(N) * 99 / 100);
    let st = relay.stats().await.unwrap();
    assert_eq!(st.channels[0].packets_in, u64::from(N));
    assert_eq!(st.viewers.len(), VIEWERS, "nobody was dropped");
    // The stuck viewer's buffer holds only a few datagrams; nothing was read from it.
    let mut buf = [0u8; 2048];
    stuck.set_nonblocking(true).unwrap();
    let mut queued = 0;
    while stuck.recv(&mut buf).is_ok() && queued < usize::from(N) {
        queued += 1;
    }
    assert!(
        queued < usize::from(N) / 2,
        "the stuck socket overflowed ({queued} kept)"
    );
    relay.shutdown().await.unwrap();
}
