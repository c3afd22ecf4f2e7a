//! The relay as a live feedback target, end to end on 127.0.0.1: a channel with the test
//! pattern, N raw UDP viewers added through the control API, each sending an RTCP compound
//! (RR about the SSRC the relay sends it + APP `VOTE`) to the relay's RTCP address; some change
//! their vote. `RelayHandle::feedback` must then report exactly the latest vote of each viewer
//! and N reporting viewers. Every wait is bounded; no timing is asserted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use media_relay::control::{AddViewer, ChannelId, ChannelSpec, RelayConfig, ViewerId};
use media_relay::feedback::aggregate::write_vote;
use media_relay::Relay;
use rtcp_types::{ReceiverReport, ReportBlock, RtcpPacketWriter, RtcpPacketWriterExt};
use tokio::net::UdpSocket;

/// Viewers in CI; `FEEDBACK_VIEWERS=N` runs another size.
fn viewers() -> u32 {
    std::env::var("FEEDBACK_VIEWERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
        .clamp(3, 20_000)
}
const POLL: u32 = 42;

/// RR (reporter `ssrc`, one block about `about`) + APP VOTE (poll, option).
fn compound(ssrc: u32, about: u32, lost: u8, option: u32) -> Vec<u8> {
    let rr = ReceiverReport::builder(ssrc).add_report_block(
        ReportBlock::builder(about)
            .fraction_lost(lost)
            .interarrival_jitter(450),
    );
    let mut out = vec![0u8; rr.calculate_size().unwrap()];
    rr.write_into(&mut out).unwrap();
    write_vote(&mut out, ssrc, POLL, option).unwrap();
    out
}

/// GET `path`; the body (bounded wait).
async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n");
    c.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut out))
        .await
        .expect("answer within 5 s")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let body = text.split_once("\r\n\r\n").unwrap().1;
    let start = body.find('{').unwrap();
    let end = body.rfind('}').unwrap();
    body[start..=end].to_owned()
}

/// `method path` with a JSON `body`; the status code (bounded wait).
async fn http_status(addr: SocketAddr, method: &str, path: &str, body: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    c.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut out))
        .await
        .expect("answer within 5 s")
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn votes_and_reports_from_udp_viewers_are_tallied_exactly() {
    #[expect(non_snake_case, reason = "reads like the constant it replaces")]
    let VIEWERS = viewers();
    let relay = Relay::spawn(RelayConfig::default()).unwrap();
    let ch = ChannelId::from("quiz");
    relay.create_ingest(ChannelSpec::new("quiz")).await.unwrap();
    relay.start_test_pattern(&ch).await.unwrap();

    let mut viewers = Vec::new();
    for i in 0..VIEWERS {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let info = relay
            .add_viewer(AddViewer {
                viewer: ViewerId(u64::from(i) + 1),
                channel: ch.clone(),
                rtp_dest: sock.local_addr().unwrap(),
                rtcp_dest: None,
                payload_type: 96,
                downstream: false,
            })
            .await
            .unwrap();
        let mut rtcp: SocketAddr = info.relay_rtcp;
        if rtcp.ip().is_unspecified() {
            rtcp.set_ip([127, 0, 0, 1].into());
        }
        viewers.push((sock, info.ssrc, rtcp));
    }

    // First votes: option i % 4; then every 5th viewer changes its mind to option 9.
    let mut latest: Vec<u32> = (0..VIEWERS).map(|i| i % 4).collect();
    for (i, (sock, about, rtcp)) in viewers.iter().enumerate() {
        let d = compound(0x1000 + i as u32, *about, (i % 3) as u8 * 20, latest[i]);
        sock.send_to(&d, rtcp).await.unwrap();
    }
    for (i, l) in latest.iter_mut().enumerate() {
        if i % 5 == 0 {
            *l = 9;
        }
    }
    let mut expected: BTreeMap<u32, u64> = BTreeMap::new();
    for &o in &latest {
        *expected.entry(o).or_default() += 1;
    }

    // Send the final votes (again, every round: a latest vote is idempotent, so a datagram
    // lost on loopback under load only delays the tally) until the relay agrees, bounded.
    let mut last = None;
    for _round in 0..20 {
        for (i, (sock, about, rtcp)) in viewers.iter().enumerate() {
            if i % 5 == 0 || last.is_some() {
                let d = compound(0x1000 + i as u32, *about, (i % 3) as u8 * 20, latest[i]);
                sock.send_to(&d, rtcp).await.unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let s = relay.feedback(&ch).await.unwrap();
        let done = s.voters == u64::from(VIEWERS)
            && s.viewers_reporting == u64::from(VIEWERS)
            && s.votes.get(&POLL) == Some(&expected);
        last = Some(s);
        if done {
            break;
        }
    }
    let s = last.unwrap();
    assert_eq!(s.voters, u64::from(VIEWERS));
    assert_eq!(s.votes.get(&POLL), Some(&expected), "tally {:?}", s.votes);
    assert_eq!(s.votes.len(), 1);
    assert_eq!(s.viewers_reporting, u64::from(VIEWERS));
    assert_eq!(s.loss.count, u64::from(VIEWERS));
    // Loss 0, 20/256 and 40/256 in thirds: bin 0 (0..16) holds a third, bin 1 (16..32)
    // a third, bin 2 (32..48) a third.
    assert_eq!(s.loss.counts[0], u64::from(VIEWERS.div_ceil(3)));
    assert_eq!(s.jitter.count, u64::from(VIEWERS));
    // Serde round trip of the control API type.
    let json = serde_json::to_string(&s).unwrap();
    let back: media_relay::control::FeedbackSummary = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
    // Unknown channel is an error.
    assert!(relay.feedback(&ChannelId::from("nope")).await.is_err());

    // The same summary over the relay's HTTP control API.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = media_relay::driver::http::router(relay.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let body = http_get(addr, "/channels/quiz/feedback").await;
    let over_http: media_relay::control::FeedbackSummary = serde_json::from_str(&body).unwrap();
    assert_eq!(over_http.votes, s.votes);
    // Registering a child FT and declaring the channel's polls over HTTP.
    for (method, path, body, status) in [
        (
            "POST",
            "/channels/quiz/feedback/children",
            r#"{"addr":"127.0.0.1:5005"}"#,
            204,
        ),
        (
            "DELETE",
            "/channels/quiz/feedback/children",
            r#"{"addr":"127.0.0.1:5005"}"#,
            204,
        ),
        (
            "POST",
            "/channels/nope/feedback/children",
            r#"{"addr":"127.0.0.1:5005"}"#,
            404,
        ),
        (
            "POST",
            "/channels/quiz/feedback/children",
            r#"{"addr":"x"}"#,
            422,
        ),
        ("PUT", "/channels/quiz/polls", r#"{"polls":[42]}"#, 204),
        ("PUT", "/channels/nope/polls", r#"{"polls":[42]}"#, 404),
    ] {
        assert_eq!(
            http_status(addr, method, path, body).await,
            status,
            "{method} {path}"
        );
    }
    // Poll 42 is quiz's own: its votes still count.
    assert_eq!(relay.feedback(&ch).await.unwrap().votes, s.votes);

    // A viewer that leaves no longer counts for quality; its vote still counts.
    relay.remove_viewer(ViewerId(1)).await.unwrap();
    let after = relay.feedback(&ch).await.unwrap();
    assert_eq!(after.viewers_reporting, u64::from(VIEWERS) - 1);
    assert_eq!(after.votes, s.votes);
    relay.shutdown().await.unwrap();
}

/// RR about `about` + APP VOTE (`poll`, `option`).
fn vote_in(ssrc: u32, about: u32, poll: u32, option: u32) -> Vec<u8> {
    let rr = ReceiverReport::builder(ssrc).add_report_block(ReportBlock::builder(about));
    let mut out = vec![0u8; rr.calculate_size().unwrap()];
    rr.write_into(&mut out).unwrap();
    write_vote(&mut out, ssrc, poll, option).unwrap();
    out
}

/// The sans-IO relay core, virtual time: a vote counts only from a viewer's own address, and
/// only in a poll of the channel it arrives on. A stranger that names a viewer's SSRC gets its
/// report counted, never its vote; the copy of a vote sent just before a zap that lands on the
/// new channel (the relay keeps the viewer's SSRC) neither makes the viewer a voter there nor
/// enters that channel's tally, and stays counted where it was cast; a poll declared for one
/// channel counts on no other.
#[test]
fn votes_count_only_from_viewers_and_in_their_channels_polls() {
    #[expect(clippy::disallowed_methods, reason = "origin of the virtual clock")]
    let now = std::time::Instant::now();
    let (a, b) = (ChannelId::from("a"), ChannelId::from("b"));
    let mut r = media_relay::relay::Relay::new(RelayConfig::default(), 9);
    r.create_channel(ChannelSpec::new("a")).unwrap();
    r.create_channel(ChannelSpec::new("b")).unwrap();
    // Viewers 1 and 3 on a, 2 on b; RTCP at RTP port + 1.
    let mut ssrc = BTreeMap::new();
    let rtcp = |v: u16| -> SocketAddr { format!("192.0.2.1:{}", 20_001 + 2 * v).parse().unwrap() };
    for (v, ch) in [(1u16, "a"), (2, "b"), (3, "a")] {
        let req: AddViewer = serde_json::from_value(serde_json::json!({
            "viewer": v, "channel": ch, "payload_type": 96,
            "rtp_dest": format!("192.0.2.1:{}", 20_000 + 2 * v),
        }))
        .unwrap();
        ssrc.insert(v, r.add_viewer(now, &req).unwrap());
    }
    let voters = |r: &mut media_relay::relay::Relay, ch: &ChannelId| {
        let s = r.feedback(now, ch).unwrap();
        (s.voters, s.votes)
    };
    let totals = |r: &media_relay::relay::Relay| r.stats(now).totals;

    // A stranger names viewer 1's SSRC: its report counts, its vote does not.
    r.handle_viewer_rtcp(
        now,
        "203.0.113.5:9999".parse().unwrap(),
        &vote_in(0x51, ssrc[&1], 5, 1),
    );
    let s = r.feedback(now, &a).unwrap();
    assert_eq!((s.voters, s.viewers_reporting), (0, 1), "{s:?}");
    assert!(s.votes.is_empty());
    assert_eq!(totals(&r).feedback_refused_votes, 1);
    // Viewer 1 votes in poll 5 from its own address.
    r.handle_viewer_rtcp(now, rtcp(1), &vote_in(0x11, ssrc[&1], 5, 0));
    assert_eq!(
        voters(&mut r, &a),
        (1, BTreeMap::from([(5, BTreeMap::from([(0, 1)]))]))
    );

    // Viewer 1 zaps to b (re-INVITE: same SSRC); a copy of its vote sent before lands on b.
    r.switch_channel(now, ViewerId(1), &b).unwrap();
    r.handle_viewer_rtcp(now, rtcp(1), &vote_in(0x11, ssrc[&1], 5, 0));
    assert_eq!(
        voters(&mut r, &b),
        (0, BTreeMap::new()),
        "stale copy counted on b"
    );
    assert_eq!(totals(&r).feedback_foreign_poll_votes, 1);
    assert_eq!(voters(&mut r, &a).0, 1, "the vote stays where it was cast");
    // A vote in b's own poll counts on b.
    r.handle_viewer_rtcp(now, rtcp(1), &vote_in(0x11, ssrc[&1], 6, 2));
    assert_eq!(
        voters(&mut r, &b),
        (1, BTreeMap::from([(6, BTreeMap::from([(2, 1)]))]))
    );
    // Back on a, viewer 1 may change its vote in poll 5.
    r.switch_channel(now, ViewerId(1), &a).unwrap();
    r.handle_viewer_rtcp(now, rtcp(1), &vote_in(0x11, ssrc[&1], 5, 1));
    assert_eq!(
        voters(&mut r, &a),
        (1, BTreeMap::from([(5, BTreeMap::from([(1, 1)]))]))
    );

    // Poll 7 is declared for b: viewer 2 on b counts, viewer 3 on a (never voted in it
    // before) does not.
    r.set_channel_polls(&b, &[7]).unwrap();
    r.handle_viewer_rtcp(now, rtcp(2), &vote_in(0x22, ssrc[&2], 7, 0));
    r.handle_viewer_rtcp(now, rtcp(3), &vote_in(0x33, ssrc[&3], 7, 0));
    assert_eq!(voters(&mut r, &b).1[&7], BTreeMap::from([(0, 1)]));
    let (n, votes) = voters(&mut r, &a);
    assert_eq!(n, 1, "viewer 3 is no voter of a");
    assert!(!votes.contains_key(&7));
    assert_eq!(totals(&r).feedback_foreign_poll_votes, 2);
    let metrics = r.stats(now).to_prometheus();
    assert!(metrics.contains("media_relay_feedback_foreign_poll_votes_total 2"));
    assert!(metrics.contains("media_relay_feedback_refused_votes_total 1"));
}
