//! Sans-IO relay core tests with synthetic RTP: fast start, zaps, removal, cache bounds,
//! MPEG-TS, malformed input, RTCP and viewer liveness. A virtual clock: no sockets, no sleeps.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use media_relay::control::{AddViewer, ChannelId, ChannelSpec, RelayConfig, ViewerId};
use media_relay::fcc::CacheLimits;
use media_relay::relay::{DropReason, Event, OutSocket, Relay};
use media_relay::rtp::{self, HeaderRewrite};

#[expect(clippy::disallowed_methods, reason = "tests need one base instant")]
fn t0() -> Instant {
    Instant::now()
}

const SRC_SSRC: u32 = 0x1111_1111;

fn rtp_packet(pt: u8, seq: u16, ts: u32, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    rtp::write_header(
        &mut v,
        marker,
        &HeaderRewrite {
            ssrc,
            sequence: seq,
            timestamp: ts,
            payload_type: pt,
        },
    );
    v.extend_from_slice(payload);
    v
}

// H.264 payloads built by hand (RFC 6184).
const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1e, 0xaa];
const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

fn stap_a_sps_pps() -> Vec<u8> {
    let mut v = vec![0x78];
    for nal in [SPS, PPS] {
        v.extend_from_slice(&(nal.len() as u16).to_be_bytes());
        v.extend_from_slice(nal);
    }
    v
}
fn fu_a_idr(start: bool, end: bool) -> Vec<u8> {
    let mut h = 0x05;
    if start {
        h |= 0x80;
    }
    if end {
        h |= 0x40;
    }
    vec![0x7c, h, 0xde, 0xad]
}
fn idr_single() -> Vec<u8> {
    vec![0x65, 0x88, 0x84]
}
fn non_idr() -> Vec<u8> {
    vec![0x41, 0x9a, 0x02]
}

#[derive(Debug)]
struct Sent {
    socket: OutSocket,
    dest: SocketAddr,
    data: Vec<u8>,
    viewer: Option<ViewerId>,
}

impl Sent {
    fn rtp(&self) -> rtp::RtpInfo {
        rtp::parse(&self.data).expect("relay sent valid RTP")
    }
    fn payload(&self) -> &[u8] {
        let i = self.rtp();
        &self.data[i.payload_offset..i.payload_offset + i.payload_len]
    }
}

fn drain(relay: &mut Relay) -> Vec<Sent> {
    let mut out = Vec::new();
    while let Some(t) = relay.poll_transmit() {
        out.push(Sent {
            socket: t.socket,
            dest: t.dest,
            data: t.payload.to_vec(),
            viewer: t.viewer,
        });
    }
    out
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn viewer(id: u64, channel: &str, port: u16, pt: u8) -> AddViewer {
    AddViewer {
        viewer: ViewerId(id),
        channel: ChannelId::from(channel),
        rtp_dest: addr(port),
        rtcp_dest: None,
        payload_type: pt,
        downstream: false,
    }
}

fn relay_with(channels: &[&str], config: RelayConfig) -> Relay {
    let mut r = Relay::new(config, 7);
    for c in channels {
        r.create_channel(ChannelSpec::new(*c)).unwrap();
    }
    r
}

/// Feed a GOP-ish sequence on `ch`: [non-IDR, STAP-A(SPS,PPS), FU-A IDR x3, non-IDR x2],
/// returning the next sequence number. Timestamps advance 3000 per picture.
fn feed_gop(r: &mut Relay, now: Instant, ch: &str, ssrc: u32, seq0: u16, ts0: u32) -> u16 {
    let c = ChannelId::from(ch);
    let pkts: Vec<(u32, bool, Vec<u8>)> = vec![
        (0, true, non_idr()),
        (1, false, stap_a_sps_pps()),
        (1, false, fu_a_idr(true, false)),
        (1, false, fu_a_idr(false, false)),
        (1, true, fu_a_idr(false, true)),
        (2, true, non_idr()),
        (3, true, non_idr()),
    ];
    let mut seq = seq0;
    for (pic, marker, payload) in pkts {
        let p = rtp_packet(96, seq, ts0 + pic * 3000, ssrc, marker, &payload);
        r.ingest(now, &c, &p).unwrap();
        seq = seq.wrapping_add(1);
    }
    seq
}

fn assert_contiguous(sent: &[Sent], ssrc: u32) {
    for w in sent.windows(2) {
        let (a, b) = (w[0].rtp(), w[1].rtp());
        assert_eq!(b.sequence, a.sequence.wrapping_add(1), "sequence gap");
        assert!(
            b.timestamp.wrapping_sub(a.timestamp) < 0x8000_0000,
            "timestamp went back"
        );
    }
    for s in sent {
        assert_eq!(s.rtp().ssrc, ssrc);
    }
}

#[test]
fn viewer_joining_mid_gop_gets_parameter_sets_and_key_frame_first_then_live() {
    let now = t0();
    let mut r = relay_with(&["news"], RelayConfig::default());
    let next = feed_gop(&mut r, now, "news", SRC_SSRC, 65_530, 1000); // wraps seq
    assert!(drain(&mut r).is_empty(), "no viewers yet");

    let ssrc = r.add_viewer(now, &viewer(1, "news", 5000, 97)).unwrap();
    let burst = drain(&mut r);
    // Everything from the STAP-A on: 6 packets (the leading non-IDR was before the key frame).
    assert_eq!(burst.len(), 6);
    assert_eq!(burst[0].payload(), &stap_a_sps_pps()[..], "SPS/PPS first");
    assert_eq!(
        burst[1].payload(),
        &fu_a_idr(true, false)[..],
        "then the IDR"
    );
    for s in &burst {
        assert_eq!(s.dest, addr(5000));
        assert_eq!(s.socket, OutSocket::Rtp);
        assert_eq!(s.viewer, Some(ViewerId(1)));
        assert_eq!(s.rtp().payload_type, 97, "payload type rewritten");
    }
    assert_contiguous(&burst, ssrc);
    assert_ne!(ssrc, SRC_SSRC);
    // Timestamps keep their spacing (picture 1 -> 2 = 3000).
    assert_eq!(
        burst[4]
            .rtp()
            .timestamp
            .wrapping_sub(burst[3].rtp().timestamp),
        3000
    );

    // Live continues the same numbering.
    let p = rtp_packet(96, next, 1000 + 4 * 3000, SRC_SSRC, true, &non_idr());
    r.ingest(now, &ChannelId::from("news"), &p).unwrap();
    let live = drain(&mut r);
    assert_eq!(live.len(), 1);
    let all: Vec<Sent> = burst.into_iter().chain(live).collect();
    assert_contiguous(&all, ssrc);
    assert_eq!(all[6].payload(), &non_idr()[..]);

    let st = r.stats(now);
    assert_eq!(st.viewers[0].burst_packets, 6);
    assert_eq!(st.viewers[0].packets_out, 7);
    assert_eq!(st.channels[0].key_frames, 1);
    assert_eq!(st.channels[0].packets_in, 8);
}

#[test]
fn parameter_sets_seen_earlier_are_sent_before_an_idr_that_lacks_them() {
    let now = t0();
    let mut r = relay_with(&["news"], RelayConfig::default());
    let c = ChannelId::from("news");
    let seq = feed_gop(&mut r, now, "news", SRC_SSRC, 10, 0);
    // Second GOP: IDR single NAL without SPS/PPS, then a P slice.
    let second = [(seq, 30_000, idr_single()), (seq + 1, 33_000, non_idr())];
    for (seq, ts, payload) in second {
        r.ingest(now, &c, &rtp_packet(96, seq, ts, SRC_SSRC, true, &payload))
            .unwrap();
    }
    let ssrc = r.add_viewer(now, &viewer(1, "news", 5000, 96)).unwrap();
    let burst = drain(&mut r);
    assert_eq!(burst.len(), 4);
    assert_eq!(burst[0].payload(), SPS);
    assert_eq!(burst[1].payload(), PPS);
    assert_eq!(burst[2].payload(), &idr_single()[..]);
    assert_eq!(burst[3].payload(), &non_idr()[..]);
    assert_contiguous(&burst, ssrc);
    assert_eq!(burst[0].rtp().timestamp, burst[2].rtp().timestamp);
    assert!(!burst[0].rtp().marker);
}

#[test]
fn zap_keeps_numbering_and_bursts_from_the_new_channels_key_frame() {
    let now = t0();
    let mut r = relay_with(&["a", "b"], RelayConfig::default());
    feed_gop(&mut r, now, "a", 0xaaaa, 100, 50_000);
    feed_gop(&mut r, now, "b", 0xbbbb, 40_000, 7_000_000);
    let ssrc = r.add_viewer(now, &viewer(1, "a", 5000, 96)).unwrap();
    let on_a = drain(&mut r);
    assert_eq!(on_a.len(), 6);

    let later = now + Duration::from_millis(500);
    r.switch_channel(later, ViewerId(1), &ChannelId::from("b"))
        .unwrap();
    let on_b = drain(&mut r);
    assert_eq!(on_b.len(), 6, "burst from b's key frame");
    assert_eq!(on_b[0].payload(), &stap_a_sps_pps()[..]);
    let (last_a, first_b) = (on_a.last().unwrap().rtp(), on_b[0].rtp());
    assert_eq!(first_b.sequence, last_a.sequence.wrapping_add(1));
    // 500 ms at 90 kHz = 45000 ticks (more than one frame step).
    assert_eq!(first_b.timestamp.wrapping_sub(last_a.timestamp), 45_000);
    let all: Vec<Sent> = on_a.into_iter().chain(on_b).collect();
    assert_contiguous(&all, ssrc);

    // Channel a no longer reaches the viewer; b does.
    let a = ChannelId::from("a");
    r.ingest(later, &a, &rtp_packet(96, 107, 0, 0xaaaa, true, &non_idr()))
        .unwrap();
    assert!(drain(&mut r).is_empty());
    let b = ChannelId::from("b");
    r.ingest(
        later,
        &b,
        &rtp_packet(96, 40_007, 0, 0xbbbb, true, &non_idr()),
    )
    .unwrap();
    let live = drain(&mut r);
    assert_eq!(live.len(), 1);
    assert_eq!(
        live[0].rtp().sequence,
        all.last().unwrap().rtp().sequence.wrapping_add(1)
    );
    let st = r.stats(later);
    assert_eq!(st.viewers[0].zaps, 1);
    assert_eq!(st.viewers[0].channel, b);
}

#[test]
fn remove_viewer_stops_output_at_once() {
    let now = t0();
    let mut r = relay_with(&["news"], RelayConfig::default());
    feed_gop(&mut r, now, "news", SRC_SSRC, 0, 0);
    r.add_viewer(now, &viewer(1, "news", 5000, 96)).unwrap();
    r.add_viewer(now, &viewer(2, "news", 5002, 96)).unwrap();
    // Burst queued but not sent yet: removal discards it.
    r.remove_viewer(ViewerId(1)).unwrap();
    let sent = drain(&mut r);
    assert!(sent.iter().all(|s| s.viewer == Some(ViewerId(2))));
    assert_eq!(sent.len(), 6);
    let c = ChannelId::from("news");
    r.ingest(
        now,
        &c,
        &rtp_packet(96, 7, 9000, SRC_SSRC, true, &non_idr()),
    )
    .unwrap();
    let sent = drain(&mut r);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].dest, addr(5002));
    assert!(r.remove_viewer(ViewerId(1)).is_err(), "already gone");
    assert_eq!(r.viewer_count(), 1);
}

#[test]
fn cache_is_bounded_and_a_late_viewer_waits_for_the_next_key_frame() {
    let now = t0();
    let config = RelayConfig {
        cache: CacheLimits {
            max_bytes: 64 * 1024,
            max_packets: 50,
        },
        ..RelayConfig::default()
    };
    let mut r = relay_with(&["news"], config);
    let c = ChannelId::from("news");
    r.ingest(
        now,
        &c,
        &rtp_packet(96, 0, 0, SRC_SSRC, true, &idr_single()),
    )
    .unwrap();
    for i in 1..10_000u16 {
        let p = rtp_packet(96, i, u32::from(i) * 3000, SRC_SSRC, true, &non_idr());
        r.ingest(now, &c, &p).unwrap();
        let st = r.stats(now);
        assert!(st.channels[0].cached_packets <= 50);
        assert!(st.channels[0].cached_bytes <= 64 * 1024);
    }
    r.add_viewer(now, &viewer(1, "news", 5000, 96)).unwrap();
    assert!(
        drain(&mut r).is_empty(),
        "no burst from an overflowed cache"
    );
    // Live non-key packets are held back until a key frame...
    r.ingest(
        now,
        &c,
        &rtp_packet(96, 10_000, 0, SRC_SSRC, true, &non_idr()),
    )
    .unwrap();
    assert!(drain(&mut r).is_empty());
    // ...which then flows, with everything after it.
    r.ingest(
        now,
        &c,
        &rtp_packet(96, 10_001, 1, SRC_SSRC, true, &idr_single()),
    )
    .unwrap();
    r.ingest(
        now,
        &c,
        &rtp_packet(96, 10_002, 2, SRC_SSRC, true, &non_idr()),
    )
    .unwrap();
    let sent = drain(&mut r);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].payload(), &idr_single()[..]);
}

fn ts_packet(rai: bool, stream_id: u8) -> [u8; 188] {
    let mut ts = [0xffu8; 188];
    ts[..4].copy_from_slice(&[0x47, 0x41, 0x00, 0x30]);
    ts[4] = 1;
    ts[5] = if rai { 0x40 } else { 0 };
    ts[6..10].copy_from_slice(&[0, 0, 1, stream_id]);
    ts
}

#[test]
fn mpeg_ts_random_access_indicator_starts_the_cache() {
    let now = t0();
    let mut r = relay_with(&["ts"], RelayConfig::default());
    let c = ChannelId::from("ts");
    let payload = |rai| {
        let mut p = Vec::new();
        for _ in 0..6 {
            p.extend_from_slice(&ts_packet(false, 0xc0));
        }
        p.extend_from_slice(&ts_packet(rai, 0xe0));
        p
    };
    r.ingest(
        now,
        &c,
        &rtp_packet(33, 1, 0, SRC_SSRC, false, &payload(false)),
    )
    .unwrap();
    r.ingest(
        now,
        &c,
        &rtp_packet(33, 2, 10, SRC_SSRC, false, &payload(true)),
    )
    .unwrap();
    r.ingest(
        now,
        &c,
        &rtp_packet(33, 3, 20, SRC_SSRC, false, &payload(false)),
    )
    .unwrap();
    assert_eq!(r.stats(now).channels[0].key_frames, 1);
    r.add_viewer(now, &viewer(1, "ts", 5000, 33)).unwrap();
    let burst = drain(&mut r);
    assert_eq!(burst.len(), 2, "from the RAI packet on");
    assert_eq!(burst[0].payload(), &payload(true)[..]);
}

#[test]
fn malformed_datagrams_are_counted_and_dropped() {
    let now = t0();
    let mut r = relay_with(&["news"], RelayConfig::default());
    let c = ChannelId::from("news");
    feed_gop(&mut r, now, "news", SRC_SSRC, 0, 0);
    r.add_viewer(now, &viewer(1, "news", 5000, 96)).unwrap();
    drain(&mut r);
    let garbage: [&[u8]; 5] = [
        &[],
        &[0x80],
        &[0x40, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0], // RTP version 1
        &[0x8f, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0], // CSRC count beyond the datagram
        &[0xa0, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0], // padding bit, no padding
    ];
    for g in garbage {
        r.ingest(now, &c, g).unwrap();
    }
    r.handle_ingest_rtcp(now, &c, "127.0.0.1:9".parse().unwrap(), &[0x80, 200, 0, 40])
        .unwrap();
    r.ingest(now, &c, &[0x80, 201, 0, 99]).unwrap(); // RTCP-muxed, truncated
    r.handle_viewer_rtcp(now, addr(5001), &[1, 2, 3]);
    r.handle_viewer_rtcp(now, addr(5001), &[0x80, 201, 0xff, 0xff]);
    assert!(drain(&mut r).is_empty());
    let st = r.stats(now);
    assert_eq!(st.totals.malformed_rtp, 5);
    assert_eq!(st.totals.malformed_rtcp, 4);
    assert_eq!(st.channels[0].malformed, 7);
    // Unknown channel: an error, counted.
    assert!(r.ingest(now, &ChannelId::from("nope"), &[0x80]).is_err());
    // The stream still flows.
    r.ingest(now, &c, &rtp_packet(96, 7, 1, SRC_SSRC, true, &non_idr()))
        .unwrap();
    assert_eq!(drain(&mut r).len(), 1);
}

#[test]
fn sender_reports_receiver_reports_and_silent_viewers() {
    let now = t0();
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let config = RelayConfig {
        rtcp_interval: Duration::from_secs(5),
        viewer_timeout: Some(Duration::from_secs(10)),
        ..RelayConfig::default()
    };
    let mut r = relay_with(&["news"], config);
    feed_gop(&mut r, now, "news", SRC_SSRC, 0, 0);
    let ssrc1 = r.add_viewer(now, &viewer(1, "news", 5000, 96)).unwrap();
    let mut v2 = viewer(2, "news", 6000, 96);
    v2.rtcp_dest = Some(addr(6100));
    let _ssrc2 = r.add_viewer(now, &v2).unwrap();
    drain(&mut r);

    // Reports are due within 1.5 intervals.
    let t = r.poll_timeout().expect("a timer is armed");
    assert!(t <= now + Duration::from_millis(7_500));
    let later = now + Duration::from_secs(8);
    r.handle_timeout(later, wall);
    let rtcp: Vec<Sent> = drain(&mut r)
        .into_iter()
        .filter(|s| s.socket == OutSocket::Rtcp)
        .collect();
    assert_eq!(rtcp.len(), 2, "one SR per viewer");
    let to_v1 = rtcp.iter().find(|s| s.dest == addr(5001)).expect("RTP+1");
    assert!(rtcp.iter().any(|s| s.dest == addr(6100)));
    let mut blocks = 0;
    let summary =
        media_relay::rtcp::parse_compound(&to_v1.data, |_| blocks += 1).expect("valid SR");
    assert_eq!(summary.sender_reports, 1);
    assert_eq!(summary.sender_ssrc, Some(ssrc1));

    // Viewer 1 sends an RR about its SSRC from some port: matched by SSRC.
    let rr = rtcp_types::ReceiverReport::builder(0x5555).add_report_block(
        rtcp_types::ReportBlock::builder(ssrc1)
            .fraction_lost(12)
            .cumulative_lost(3)
            .interarrival_jitter(40),
    );
    let mut buf = [0u8; 64];
    let len = rtcp_types::RtcpPacketWriterExt::write_into(&rr, &mut buf).unwrap();
    r.handle_viewer_rtcp(later, addr(40_000), &buf[..len]);
    let st = r.stats(later);
    let v1 = &st.viewers[0];
    assert_eq!(v1.rr_fraction_lost, Some(12));
    assert_eq!(v1.rr_cumulative_lost, Some(3));
    assert_eq!(v1.rr_jitter, Some(40));
    assert_eq!(v1.rr_age_ms, Some(0));
    assert_eq!(st.viewers[1].rr_fraction_lost, None);

    // Then silence: viewer 1 is dropped; viewer 2 (never sent RTCP) is kept.
    let mut at = later;
    for _ in 0..100 {
        let Some(next) = r.poll_timeout() else { break };
        at = next.max(at);
        r.handle_timeout(at, wall);
        drain(&mut r);
        if r.viewer_count() == 1 {
            break;
        }
    }
    assert_eq!(r.viewer_count(), 1);
    assert!(at >= later + Duration::from_secs(10));
    assert_eq!(
        r.poll_event(),
        Some(Event::ViewerDropped {
            viewer: ViewerId(1),
            reason: DropReason::RtcpTimeout
        })
    );
    assert_eq!(r.stats(at).viewers[0].viewer, ViewerId(2));
}

#[test]
fn unreachable_viewer_is_dropped_without_affecting_others() {
    let now = t0();
    let mut r = relay_with(&["news"], RelayConfig::default());
    feed_gop(&mut r, now, "news", SRC_SSRC, 0, 0);
    for id in 1..=3 {
        r.add_viewer(now, &viewer(id, "news", 5000 + id as u16 * 2, 96))
            .unwrap();
    }
    drain(&mut r);
    r.handle_send_error(now, ViewerId(2), std::io::ErrorKind::ConnectionRefused);
    r.handle_send_error(now, ViewerId(3), std::io::ErrorKind::WouldBlock); // just counted
    assert_eq!(r.viewer_count(), 2);
    let c = ChannelId::from("news");
    r.ingest(now, &c, &rtp_packet(96, 7, 1, SRC_SSRC, true, &non_idr()))
        .unwrap();
    let sent = drain(&mut r);
    let mut to: Vec<u64> = sent.iter().map(|s| s.viewer.unwrap().0).collect();
    to.sort();
    assert_eq!(to, vec![1, 3]);
    assert_eq!(r.stats(now).totals.send_errors, 2);
    assert_eq!(r.stats(now).totals.viewers_dropped, 1);
}

#[test]
fn control_errors() {
    let now = t0();
    let config = RelayConfig {
        max_viewers: 1,
        ..RelayConfig::default()
    };
    let mut r = relay_with(&["news"], config);
    assert!(matches!(
        r.add_viewer(now, &viewer(1, "nope", 5000, 96)),
        Err(media_relay::Error::UnknownChannel(_))
    ));
    r.add_viewer(now, &viewer(1, "news", 5000, 96)).unwrap();
    assert!(matches!(
        r.add_viewer(now, &viewer(1, "news", 5000, 96)),
        Err(media_relay::Error::ViewerExists(_))
    ));
    assert!(matches!(
        r.add_viewer(now, &viewer(2, "news", 5000, 96)),
        Err(media_relay::Error::Overloaded(_))
    ));
    assert!(matches!(
        r.switch_channel(now, ViewerId(9), &ChannelId::from("news")),
        Err(media_relay::Error::UnknownViewer(_))
    ));
    assert!(matches!(
        r.create_channel(ChannelSpec::new("news")),
        Err(media_relay::Error::ChannelExists(_))
    ));
    r.delete_channel(&ChannelId::from("news")).unwrap();
    assert_eq!(
        r.viewer_count(),
        0,
        "viewers of a deleted channel are dropped"
    );
}
