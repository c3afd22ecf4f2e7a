//! Driver tests on 127.0.0.1 with real UDP sockets: ingest -> 3 viewers, one vanishes, the
//! others keep receiving everything; RTCP RR reaches the stats; the built-in test pattern
//! starts a viewer on parameter sets. Every wait is bounded.

use std::collections::BTreeSet;
use std::time::Duration;

use media_relay::control::{AddViewer, ChannelId, ChannelSpec, RelayConfig, ViewerId};
use media_relay::rtp::{self, HeaderRewrite};
use media_relay::Relay;
use tokio::net::UdpSocket;
use tokio::time::timeout;

fn packet(seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    rtp::write_header(
        &mut v,
        true,
        &HeaderRewrite {
            ssrc: 0xfeed,
            sequence: seq,
            timestamp: ts,
            payload_type: 96,
        },
    );
    v.extend_from_slice(payload);
    v
}

async fn udp() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

/// Receive until `want` packets came or 5 s passed; returns the sequence numbers seen.
async fn receive(sock: &UdpSocket, want: usize) -> Vec<(u16, u32, Vec<u8>)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while got.len() < want {
        match timeout(Duration::from_secs(5), sock.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => {
                let i = rtp::parse(&buf[..n]).expect("valid RTP from the relay");
                got.push((i.sequence, i.ssrc, i.payload(&buf[..n]).to_vec()));
            }
            _ => break,
        }
    }
    got
}

#[tokio::test]
async fn vanished_viewer_does_not_disturb_the_others() {
    let relay = Relay::spawn(RelayConfig::default()).unwrap();
    let ingest = relay.create_ingest(ChannelSpec::new("news")).await.unwrap();
    assert!(ingest.rtp_addr.ip().is_loopback());

    let viewers = [udp().await, udp().await, udp().await];
    let mut ssrcs = Vec::new();
    let mut relay_rtcp = None;
    for (i, v) in viewers.iter().enumerate() {
        let info = relay
            .add_viewer(AddViewer {
                viewer: ViewerId(i as u64 + 1),
                channel: ChannelId::from("news"),
                rtp_dest: v.local_addr().unwrap(),
                rtcp_dest: None,
                payload_type: 96,
                downstream: false,
            })
            .await
            .unwrap();
        ssrcs.push(info.ssrc);
        relay_rtcp = Some(info.relay_rtcp);
    }
    let producer = udp().await;
    let [v1, v2, v3] = viewers;

    // First half: an IDR then P slices, to everyone.
    const N: u16 = 200;
    let send = |seq: u16| {
        let payload: &[u8] = if seq == 0 {
            &[0x65, 0x88, 0x84, 0x21]
        } else {
            &[0x41, 0x9a, 0x02, 0x03]
        };
        packet(seq, u32::from(seq) * 3000, payload)
    };
    for seq in 0..N / 2 {
        producer.send_to(&send(seq), ingest.rtp_addr).await.unwrap();
        if seq % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let first2 = receive(&v2, usize::from(N / 2)).await;
    assert_eq!(first2.len(), usize::from(N / 2));
    // Viewer 2 vanishes (no BYE): its port is closed, the relay keeps sending into ICMP errors.
    drop(v2);
    // Garbage in between must not matter either.
    producer
        .send_to(&[0x80, 1, 2], ingest.rtp_addr)
        .await
        .unwrap();
    for seq in N / 2..N {
        producer.send_to(&send(seq), ingest.rtp_addr).await.unwrap();
        if seq % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    for (v, ssrc) in [(&v1, ssrcs[0]), (&v3, ssrcs[2])] {
        let got = receive(v, usize::from(N)).await;
        assert_eq!(got.len(), usize::from(N), "every packet reached the viewer");
        let seqs: BTreeSet<u16> = got.iter().map(|g| g.0.wrapping_sub(got[0].0)).collect();
        assert_eq!(seqs.len(), usize::from(N), "no duplicates");
        assert_eq!(*seqs.last().unwrap(), N - 1, "contiguous numbering");
        assert!(got.iter().all(|g| g.1 == ssrc));
    }

    // Viewer 1 reports; the relay matches the RR by SSRC.
    let rr = rtcp_types::ReceiverReport::builder(0x77).add_report_block(
        rtcp_types::ReportBlock::builder(ssrcs[0])
            .fraction_lost(3)
            .interarrival_jitter(11),
    );
    let mut buf = [0u8; 64];
    let len = rtcp_types::RtcpPacketWriterExt::write_into(&rr, &mut buf).unwrap();
    v1.send_to(&buf[..len], relay_rtcp.unwrap()).await.unwrap();
    let mut reported = false;
    for _ in 0..100 {
        let st = relay.stats().await.unwrap();
        if st
            .viewers
            .iter()
            .any(|v| v.viewer == ViewerId(1) && v.rr_jitter == Some(11))
        {
            reported = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reported, "RR reached the viewer's stats");

    let st = relay.stats().await.unwrap();
    assert_eq!(st.channels[0].packets_in, u64::from(N));
    assert_eq!(st.totals.malformed_rtp, 1);
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn test_pattern_viewer_starts_on_parameter_sets() {
    let relay = Relay::spawn(RelayConfig::default()).unwrap();
    let ch = ChannelId::from("pattern");
    relay
        .create_ingest(ChannelSpec::new("pattern"))
        .await
        .unwrap();
    relay.start_test_pattern(&ch).await.unwrap();
    // Let the pattern run past its first key frame, so the viewer joins mid-GOP.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let v = udp().await;
    relay
        .add_viewer(AddViewer {
            viewer: ViewerId(1),
            channel: ch.clone(),
            rtp_dest: v.local_addr().unwrap(),
            rtcp_dest: None,
            payload_type: 100,
            downstream: false,
        })
        .await
        .unwrap();
    let got = receive(&v, 20).await;
    assert_eq!(got.len(), 20);
    let first_nal = got[0].2[0] & 0x1f;
    assert!(
        first_nal == 7 || first_nal == 24,
        "burst starts with SPS (or a STAP-A), got NAL type {first_nal}"
    );
    let st = relay.stats().await.unwrap();
    assert!(st.channels[0].key_frames >= 1);
    assert!(st.viewers[0].burst_packets > 0);
    relay.delete_ingest(&ch).await.unwrap();
    assert!(relay.stats().await.unwrap().viewers.is_empty());
}

/// `RelayHandle::events()`: a viewer the relay drops by itself (here its RTCP BYE) is
/// published at once, with the reason; a viewer the controller removes is not.
#[tokio::test]
async fn dropped_viewer_is_published_on_events() {
    use media_relay::relay::DropReason;
    use media_relay::RelayEvent;
    let relay = Relay::spawn(RelayConfig::default()).unwrap();
    let mut events = relay.events();
    relay.create_ingest(ChannelSpec::new("news")).await.unwrap();
    let (a, b) = (udp().await, udp().await);
    let mut rtcp_addr = None;
    for (id, sock) in [(1, &a), (2, &b)] {
        let info = relay
            .add_viewer(AddViewer {
                viewer: ViewerId(id),
                channel: ChannelId::from("news"),
                rtp_dest: sock.local_addr().unwrap(),
                rtcp_dest: None,
                payload_type: 96,
                downstream: false,
            })
            .await
            .unwrap();
        rtcp_addr = Some(info.relay_rtcp);
    }
    relay.remove_viewer(ViewerId(2)).await.unwrap();
    // Viewer 1 leaves with a compound RR (no blocks) + BYE from its own address.
    let mut bye = vec![0x80, 201, 0, 1, 0, 0, 0, 9];
    bye.extend_from_slice(&[0x81, 203, 0, 1, 0, 0, 0, 9]);
    a.send_to(&bye, rtcp_addr.unwrap()).await.unwrap();
    let ev = timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("an event within 5 s")
        .unwrap();
    assert_eq!(
        ev,
        RelayEvent::ViewerDropped {
            viewer: ViewerId(1),
            reason: DropReason::Bye
        }
    );
    assert!(events.try_recv().is_err(), "the removed viewer is no event");
    assert!(relay.stats().await.unwrap().viewers.is_empty());
    relay.shutdown().await.unwrap();
}
