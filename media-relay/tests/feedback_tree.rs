//! Summaries up the relay tree, three relay cores in one process under a virtual clock: two
//! child relays send their channel's RSI + vote tally to the root relay's RTCP address
//! (`Relay::set_feedback_parent`), the root answers with group sizes. Votes cast by the
//! children's and the root's viewers appear exactly once in the root's tally; votes repeated
//! (and summaries repeated every interval) never double; a changed vote moves; the children
//! learn their group size from the root, although its answers come from another address than
//! the one they send to. No sockets, no sleeps.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use media_relay::control::{AddViewer, ChannelId, ChannelSpec, FeedbackSummary, RelayConfig};
use media_relay::feedback::aggregate::write_vote;
use media_relay::feedback::live::channel_ssrc;
use media_relay::relay::{OutSocket, Relay};
use media_relay::rsi::{Rsi, SubReport};
use rtcp_types::{ReceiverReport, ReportBlock, RtcpPacketWriter, RtcpPacketWriterExt};

const POLL: u32 = 5;

#[expect(clippy::disallowed_methods, reason = "origin of the virtual clock")]
fn t0() -> (Instant, SystemTime) {
    (Instant::now(), SystemTime::now())
}

#[expect(
    clippy::disallowed_methods,
    reason = "the loopback test prints how long a tally took"
)]
fn wall_now() -> Instant {
    Instant::now()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A viewer's RR about the SSRC the relay sends it, plus its vote.
fn report_and_vote(ssrc: u32, about: u32, option: u32) -> Vec<u8> {
    let rr = ReceiverReport::builder(ssrc).add_report_block(
        ReportBlock::builder(about)
            .fraction_lost(4)
            .interarrival_jitter(300),
    );
    let mut v = vec![0u8; rr.calculate_size().unwrap()];
    rr.write_into(&mut v).unwrap();
    write_vote(&mut v, ssrc, POLL, option).unwrap();
    v
}

struct Node {
    relay: Relay,
    /// The address other relays send to (advertised).
    rtcp: SocketAddr,
    /// The channel's ingest RTCP address: summaries up go from here, group sizes come back
    /// here.
    ingest_rtcp: SocketAddr,
    /// The address its datagrams come from (another one for the root: a wildcard bind).
    src: SocketAddr,
    /// (viewer address, the SSRC the relay sends it, the viewer's own SSRC).
    viewers: Vec<(SocketAddr, u32, u32)>,
}

struct Lab {
    nodes: Vec<Node>,
    now: Instant,
    wall: SystemTime,
    /// Relay-to-relay datagrams delivered.
    peer_datagrams: u64,
    /// The latest RTCP compound each relay sent to a viewer: (relay, viewer address, bytes).
    to_viewers: Vec<(usize, SocketAddr, Vec<u8>)>,
}

impl Lab {
    /// Deliver every RTCP datagram addressed to another relay; drop media and viewers' SRs.
    fn deliver(&mut self) {
        for _ in 0..100 {
            let mut moved = Vec::new();
            for (i, n) in self.nodes.iter_mut().enumerate() {
                while let Some(t) = n.relay.poll_transmit() {
                    if t.socket == OutSocket::Rtcp {
                        moved.push((i, n.src, t.dest, t.payload.to_vec()));
                    }
                }
                // Summaries up go from the channel's ingest RTCP address.
                while let Some(t) = n.relay.poll_summary_transmit() {
                    moved.push((i, n.ingest_rtcp, t.dest, t.payload));
                }
            }
            let mut any = false;
            for (from, src, dest, bytes) in moved {
                if let Some(n) = self.nodes.iter_mut().find(|n| n.rtcp == dest) {
                    n.relay.handle_viewer_rtcp(self.now, src, &bytes);
                    self.peer_datagrams += 1;
                    any = true;
                } else if let Some(n) = self.nodes.iter_mut().find(|n| n.ingest_rtcp == dest) {
                    n.relay
                        .handle_ingest_rtcp(self.now, &ChannelId::from("news"), src, &bytes)
                        .unwrap();
                    self.peer_datagrams += 1;
                    any = true;
                } else {
                    self.to_viewers
                        .retain(|(r, d, _)| !(*r == from && *d == dest));
                    self.to_viewers.push((from, dest, bytes));
                }
            }
            if !any {
                return;
            }
        }
    }

    /// Run the virtual clock for `secs` in 50 ms steps.
    fn run(&mut self, secs: f64) {
        let end = self.now + Duration::from_secs_f64(secs);
        while self.now < end {
            self.now += Duration::from_millis(50);
            self.wall += Duration::from_millis(50);
            for n in &mut self.nodes {
                if n.relay.poll_timeout().is_some_and(|t| t <= self.now) {
                    n.relay.handle_timeout(self.now, self.wall);
                }
            }
            self.deliver();
        }
    }

    fn vote(&mut self, node: usize, viewer: usize, option: u32) {
        let n = &mut self.nodes[node];
        let (from, relay_ssrc, own) = n.viewers[viewer];
        n.relay
            .handle_viewer_rtcp(self.now, from, &report_and_vote(own, relay_ssrc, option));
    }

    fn feedback(&mut self, node: usize, ch: &ChannelId) -> FeedbackSummary {
        self.nodes[node].relay.feedback(self.now, ch).unwrap()
    }
}

fn tally(s: &FeedbackSummary) -> BTreeMap<u32, u64> {
    s.votes.get(&POLL).cloned().unwrap_or_default()
}

#[test]
fn children_summaries_reach_the_root_exactly_once() {
    let (now, wall) = t0();
    let ch = ChannelId::from("news");
    let rtcp = ["10.0.0.1:5001", "10.0.0.2:5001", "10.0.0.3:5001"];
    // Viewers per relay: root 3, child A 40, child B 25.
    let sizes = [3usize, 40, 25];
    let mut nodes = Vec::new();
    for (i, (&a, &size)) in rtcp.iter().zip(&sizes).enumerate() {
        let mut relay = Relay::new(RelayConfig::default(), 100 + i as u64);
        relay.create_channel(ChannelSpec::new("news")).unwrap();
        let mut viewers = Vec::new();
        for v in 0..size {
            let rtp: SocketAddr = format!("192.0.2.{}:{}", i + 1, 20_000 + 2 * v)
                .parse()
                .unwrap();
            let req: AddViewer = serde_json::from_value(serde_json::json!({
                "viewer": (i * 1000 + v) as u64,
                "channel": "news",
                "rtp_dest": rtp,
                "payload_type": 96,
            }))
            .unwrap();
            let ssrc = relay.add_viewer(now, &req).unwrap();
            viewers.push((rtp, ssrc, 0x7000_0000 + (i * 1000 + v) as u32));
        }
        let src = if i == 0 {
            addr("10.0.0.100:5001")
        } else {
            addr(a)
        };
        nodes.push(Node {
            relay,
            rtcp: addr(a),
            ingest_rtcp: SocketAddr::new(addr(a).ip(), 6001),
            src,
            viewers,
        });
    }
    // A key frame on every relay, so each viewer has had RTP and gets sender reports.
    for n in &mut nodes {
        let mut idr = Vec::new();
        media_relay::rtp::write_header(
            &mut idr,
            true,
            &media_relay::rtp::HeaderRewrite {
                ssrc: 0x4242,
                sequence: 1,
                timestamp: 9000,
                payload_type: 96,
            },
        );
        idr.extend_from_slice(&[0x65, 0x88, 0x84]);
        let _ = n.relay.ingest(now, &ch, &idr);
        while n.relay.poll_transmit().is_some() {}
    }
    let root_rtcp = nodes[0].rtcp;
    for n in &mut nodes[1..] {
        n.relay
            .set_feedback_parent(now, &ch, Some(root_rtcp))
            .unwrap();
    }
    // Told their parent by hand (not pulling from it): the root must know them.
    for i in 1..3 {
        let child = nodes[i].ingest_rtcp;
        nodes[0].relay.set_feedback_child(&ch, child, true).unwrap();
    }
    assert!(nodes[1]
        .relay
        .set_feedback_parent(now, &ChannelId::from("nope"), Some(root_rtcp))
        .is_err());
    let mut lab = Lab {
        nodes,
        now,
        wall,
        peer_datagrams: 0,
        to_viewers: Vec::new(),
    };

    // Every viewer votes option (viewer % 3).
    let mut expected: BTreeMap<u32, u64> = BTreeMap::new();
    for (node, &size) in sizes.iter().enumerate() {
        for v in 0..size {
            lab.vote(node, v, (v % 3) as u32);
            *expected.entry((v % 3) as u32).or_default() += 1;
        }
    }
    lab.run(10.0);
    let root = lab.feedback(0, &ch);
    assert_eq!(tally(&root), expected, "root tally: {root:?}");
    let total: u64 = sizes.iter().map(|&s| s as u64).sum();
    assert_eq!(root.voters, total);
    assert_eq!(root.viewers_heard, total);
    assert_eq!(root.viewers_reporting, total);
    assert_eq!(root.loss.count, total);
    assert_eq!(root.child_fts, 2);
    assert_eq!(root.feedback_parent, None);
    let a = lab.feedback(1, &ch);
    assert_eq!(a.feedback_parent, Some(root_rtcp));
    assert_eq!(a.voters, 40);
    // The AS's merge over relays, skipping children (their counts are in the root's).
    let mut merged = FeedbackSummary::empty(ch.clone());
    for i in 0..3 {
        let s = lab.feedback(i, &ch);
        if s.feedback_parent.is_none() {
            merged.merge(&s);
        }
    }
    assert_eq!(tally(&merged), expected);
    let peer_after_first = lab.peer_datagrams;
    assert!(
        peer_after_first >= 2 * 5,
        "summaries flow: {peer_after_first}"
    );

    // Every vote is repeated (same option), and child A's viewer 0 changes to option 2:
    // nothing doubles, the change moves one vote.
    for (node, &size) in sizes.iter().enumerate() {
        for v in 0..size {
            lab.vote(node, v, (v % 3) as u32);
        }
    }
    lab.vote(1, 0, 2);
    *expected.get_mut(&0).unwrap() -= 1;
    *expected.get_mut(&2).unwrap() += 1;
    lab.run(10.0);
    let root = lab.feedback(0, &ch);
    assert_eq!(tally(&root), expected, "after repeats: {root:?}");
    assert_eq!(root.voters, total);

    // The children learned their group from the root's RSI (SRBT 12): the root's reporters
    // are its 3 viewers and 2 children, plus itself.
    assert_eq!(lab.feedback(1, &ch).parent_group_size, Some(6));
    // Each relay's viewers learn their own group from the RSI after the relay's SR (RFC 5760
    // section 7.1, SRBT 12): child A's 40 viewers and itself.
    let (_, _, sr) = lab
        .to_viewers
        .iter()
        .find(|(r, _, _)| *r == 1)
        .expect("A sent a viewer an SR");
    let mut rsi_at = 0;
    while rsi_at + 4 <= sr.len() && sr[rsi_at + 1] != 209 {
        rsi_at += (usize::from(u16::from_be_bytes([sr[rsi_at + 2], sr[rsi_at + 3]])) + 1) * 4;
    }
    assert_eq!(sr[1], 200, "the compound starts with the SR");
    let viewer_rsi = Rsi::decode(&sr[rsi_at..]).expect("an RSI after the SR");
    assert_eq!(
        viewer_rsi.ssrc,
        u32::from_be_bytes([sr[4], sr[5], sr[6], sr[7]])
    );
    assert!(viewer_rsi
        .sub_reports
        .iter()
        .any(|r| matches!(r, SubReport::GroupAndAvgPacketSize { group_size: 41, .. })));
    assert_eq!(lab.feedback(2, &ch).parent_group_size, Some(6));
    assert_eq!(lab.feedback(0, &ch).parent_group_size, None);
    // A summary forced out now (setting the parent again sends at once) names the channel
    // and the child's own group.
    let n = &mut lab.nodes[1];
    n.relay
        .set_feedback_parent(lab.now, &ch, Some(root_rtcp))
        .unwrap();
    n.relay.handle_timeout(lab.now, lab.wall);
    while n.relay.poll_transmit().is_some() {}
    let mut up = None;
    while let Some(t) = n.relay.poll_summary_transmit() {
        if t.dest == root_rtcp {
            assert_eq!(t.channel, ch);
            up = Some(t.payload);
        }
    }
    let up = up.expect("a summary to the root");
    let rsi_len = (usize::from(u16::from_be_bytes([up[2], up[3]])) + 1) * 4;
    let rsi = Rsi::decode(&up[..rsi_len]).unwrap();
    assert_eq!(rsi.summarized_ssrc, channel_ssrc(&ch));
    assert!(rsi
        .sub_reports
        .iter()
        .any(|r| matches!(r, SubReport::GroupAndAvgPacketSize { group_size: 40, .. })));
    // Size independent of viewers: a summary of 40 viewers is a few hundred octets.
    assert!(up.len() < 600, "{} octets", up.len());
}

/// The same over real relays on 127.0.0.1: B and C pull the channel from A (the relay tree,
/// `RelayHandle::set_upstream`), which makes A their parent FT by itself; viewers at B and C
/// vote over UDP; A's feedback holds every vote once. Waits are bounded; votes are re-sent
/// each round (a latest vote is idempotent) so a datagram lost on a loaded loopback only
/// delays the tally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulled_relays_report_to_their_upstream() {
    use media_relay::{RelayHandle, Upstream};
    use tokio::net::UdpSocket;

    let a = Relay::spawn(RelayConfig::default()).unwrap();
    a.create_ingest(ChannelSpec::new("quiz")).await.unwrap();
    let quiz = ChannelId::from("quiz");
    a.start_test_pattern(&quiz).await.unwrap();
    let b = Relay::spawn(RelayConfig::default()).unwrap();
    let c = Relay::spawn(RelayConfig::default()).unwrap();
    for r in [&b, &c] {
        r.set_upstream(quiz.clone(), vec![Upstream::Local(a.clone())])
            .await
            .unwrap();
    }
    let mut viewers: Vec<(UdpSocket, u32, SocketAddr, u32)> = Vec::new();
    let mut expected: BTreeMap<u32, u64> = BTreeMap::new();
    // `FEEDBACK_TREE_VIEWERS=N` runs another size (split 3:2 over B and C).
    let n: u32 = std::env::var("FEEDBACK_TREE_VIEWERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
        .clamp(5, 20_000);
    let children: [(&RelayHandle, u32); 2] = [(&b, n * 3 / 5), (&c, n - n * 3 / 5)];
    for (k, (relay, n)) in children.iter().enumerate() {
        for i in 0..*n {
            let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let req: AddViewer = serde_json::from_value(serde_json::json!({
                "viewer": (k as u64 + 1) * 1000 + u64::from(i),
                "channel": "quiz",
                "rtp_dest": sock.local_addr().unwrap(),
                "payload_type": 96,
            }))
            .unwrap();
            let info = relay.add_viewer(req).await.unwrap();
            let mut rtcp = info.relay_rtcp;
            if rtcp.ip().is_unspecified() {
                rtcp.set_ip([127, 0, 0, 1].into());
            }
            let option = i % 3;
            *expected.entry(option).or_default() += 1;
            viewers.push((sock, info.ssrc, rtcp, option));
        }
    }
    let total: u64 = expected.values().sum();
    let mut last = None;
    let mut sent_at = wall_now();
    for _round in 0..40 {
        for (i, (sock, about, rtcp, option)) in viewers.iter().enumerate() {
            let d = report_and_vote(0x9000 + i as u32, *about, *option);
            sock.send_to(&d, rtcp).await.unwrap();
        }
        sent_at = wall_now();
        let mut done = false;
        // Summaries go up about once a second: look every 50 ms for up to 3 s.
        for _ in 0..60 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let s = a.feedback(&quiz).await.unwrap();
            done = tally(&s) == expected && s.voters == total;
            last = Some(s);
            if done {
                break;
            }
        }
        if done {
            break;
        }
    }
    eprintln!(
        "{total} viewers at 2 pulled relays: exact tally at the source {:.2} s after the last \
         round of votes was sent",
        sent_at.elapsed().as_secs_f64()
    );
    let root = last.unwrap();
    assert_eq!(tally(&root), expected, "root: {root:?}");
    assert_eq!(root.voters, total);
    assert_eq!(root.child_fts, 2);
    // The pulling relays' summaries come from their ingest RTCP addresses, which A knows
    // from their attach: none refused.
    assert_eq!(
        a.stats().await.unwrap().totals.feedback_refused_summaries,
        0
    );
    assert_eq!(root.feedback_parent, None);
    for (relay, n) in children {
        let s = relay.feedback(&quiz).await.unwrap();
        assert!(s.feedback_parent.is_some(), "{s:?}");
        assert_eq!(s.voters, u64::from(n));
    }
    // Clearing the upstream makes B a root again.
    b.clear_upstream(&quiz).await.unwrap();
    assert_eq!(b.feedback(&quiz).await.unwrap().feedback_parent, None);
    for r in [&a, &b, &c] {
        let _ = r.shutdown().await;
    }
}

/// A child's summary (RSI + vote tally) merges at the parent only from a known child: a relay
/// pulling the channel from it, or that pulled it before (the downstream copy's RTCP address,
/// known without registration), or a registered child FT. The very same datagram from a stranger's address
/// (even the child's IP with another port) is dropped, counted in the stats and metrics, and
/// answered with nothing.
#[test]
fn a_summary_counts_only_from_a_known_child() {
    let (now, wall) = t0();
    let ch = ChannelId::from("news");
    let root_rtcp = addr("10.0.0.1:5001");
    let child_ingest_rtp = addr("10.0.0.2:6000");
    let child_ingest_rtcp = addr("10.0.0.2:6001");
    let mut root = Relay::new(RelayConfig::default(), 1);
    root.create_channel(ChannelSpec::new("news")).unwrap();
    // The child relay: 3 viewers voting 0, 1, 1.
    let mut child = Relay::new(RelayConfig::default(), 2);
    child.create_channel(ChannelSpec::new("news")).unwrap();
    for v in 0..3u32 {
        let rtp: SocketAddr = format!("192.0.2.2:{}", 20_000 + 2 * v).parse().unwrap();
        let req: AddViewer = serde_json::from_value(serde_json::json!({
            "viewer": u64::from(v) + 1, "channel": "news", "rtp_dest": rtp, "payload_type": 96,
        }))
        .unwrap();
        let ssrc = child.add_viewer(now, &req).unwrap();
        let rtcp = SocketAddr::new(rtp.ip(), rtp.port() + 1);
        child.handle_viewer_rtcp(
            now,
            rtcp,
            &report_and_vote(0x100 + v, ssrc, u32::from(v > 0)),
        );
    }
    child
        .set_feedback_parent(now, &ch, Some(root_rtcp))
        .unwrap();
    child.handle_timeout(now, wall);
    let summary = std::iter::from_fn(|| child.poll_summary_transmit())
        .find(|t| t.dest == root_rtcp)
        .expect("the child's summary")
        .payload;
    let refused = |r: &Relay| r.stats(now).totals.feedback_refused_summaries;
    let merged = |r: &mut Relay| {
        let s = r.feedback(now, &ch).unwrap();
        (s.voters, s.child_fts, tally(&s))
    };
    let nothing = (0, 0, BTreeMap::new());
    let all = (3, 1, BTreeMap::from([(0, 1), (1, 2)]));

    // Strangers: another host, and the child's host on another port.
    for (i, stranger) in ["203.0.113.9:5001", "10.0.0.2:6003"].iter().enumerate() {
        root.handle_viewer_rtcp(now, addr(stranger), &summary);
        assert_eq!(merged(&mut root), nothing, "merged from {stranger}");
        assert_eq!(refused(&root), i as u64 + 1);
        assert!(root.poll_transmit().is_none(), "a stranger got an answer");
    }
    // The child pulls the channel from the root (the tree's attach: a downstream copy to the
    // child's ingest, whose RTCP address is where the child's summaries come from).
    let req: AddViewer = serde_json::from_value(serde_json::json!({
        "viewer": 4_611_686_018_427_387_905u64, "channel": "news",
        "rtp_dest": child_ingest_rtp, "rtcp_dest": child_ingest_rtcp,
        "payload_type": 96, "downstream": true,
    }))
    .unwrap();
    root.add_viewer(now, &req).unwrap();
    while root.poll_transmit().is_some() {}
    // Its last viewer left, so it detached at once: it stays a known child (its summary
    // still carries the votes of the viewers it had).
    root.remove_viewer(req.viewer).unwrap();
    root.handle_viewer_rtcp(now, child_ingest_rtcp, &summary);
    assert_eq!(merged(&mut root), all);
    assert_eq!(refused(&root), 2);
    // Answered at once with the group size, to the child's ingest RTCP address.
    let answer = std::iter::from_fn(|| root.poll_transmit().map(|t| (t.dest, t.payload.to_vec())))
        .find(|(d, _)| *d == child_ingest_rtcp)
        .expect("a group-size RSI to the new child");
    assert_eq!(answer.1[1], 209);
    // ... which the child takes on that socket.
    assert_eq!(child.feedback(now, &ch).unwrap().parent_group_size, None);
    child
        .handle_ingest_rtcp(now, &ch, root_rtcp, &answer.1)
        .unwrap();
    assert_eq!(child.feedback(now, &ch).unwrap().parent_group_size, Some(2));
    // A stranger still cannot replace the child's summary, not even with the child's own
    // bytes: the held summary stays as it was.
    root.handle_viewer_rtcp(now, addr("203.0.113.9:5001"), &summary);
    assert_eq!(merged(&mut root), all);
    assert_eq!(refused(&root), 3);

    // A registered child FT (a pure FT told `--parent <root>`): refused before registration,
    // merged after, refused again once removed.
    let ft = addr("198.51.100.7:5005");
    let mut ft_summary = summary.clone();
    // Another FT SSRC (the RSI's sender), so it is another child.
    ft_summary[4..8].copy_from_slice(&0x0f7f_0001u32.to_be_bytes());
    root.handle_viewer_rtcp(now, ft, &ft_summary);
    assert_eq!(refused(&root), 4);
    assert_eq!(merged(&mut root), all);
    root.set_feedback_child(&ch, ft, true).unwrap();
    assert!(root
        .set_feedback_child(&ChannelId::from("nope"), ft, true)
        .is_err());
    root.handle_viewer_rtcp(now, ft, &ft_summary);
    assert_eq!(merged(&mut root).0, 6, "both children's voters");
    assert_eq!(merged(&mut root).1, 2);
    root.set_feedback_child(&ch, ft, false).unwrap();
    root.handle_viewer_rtcp(now, ft, &ft_summary);
    assert_eq!(refused(&root), 5);
    let metrics = root.stats(now).to_prometheus();
    assert!(
        metrics.contains("media_relay_feedback_refused_summaries_total 5"),
        "{metrics}"
    );
}
