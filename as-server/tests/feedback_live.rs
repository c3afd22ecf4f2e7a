//! Live feedback through the AS, end to end on 127.0.0.1: a test-pattern channel on a real
//! in-process relay; N viewers join by INVITE (handed to the service as the SIP endpoint
//! would), learn the relay's RTCP address from the SDP answer (`c=` and `a=rtcp:`) and their
//! stream's SSRC from the RTP they receive, then send an RTCP compound (RR about that SSRC +
//! APP `VOTE` poll/option) from their RTP socket; some change their vote. The HTTP API's poll
//! tally must equal the latest vote of every viewer exactly, and the channel's quality must
//! count N reporting viewers. Every wait is bounded; no timing is asserted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use as_server::service::feedback::{ChannelQuality, PollTally};
use as_server::service::{Service, ServiceConfig};
use as_server::sip::StatusCode;
use media_relay::{Relay, RelayConfig};
use tokio::net::UdpSocket;
use tokio::time::timeout;

mod common;
use common::{call, parse};

/// Viewers in CI; `FEEDBACK_VIEWERS=1000 cargo test -p as-server --test feedback_live -- --nocapture`
/// runs the lab size and prints the time from the last vote sent to the exact tally.
const DEFAULT_VIEWERS: u32 = 200;

fn viewers() -> u32 {
    std::env::var("FEEDBACK_VIEWERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_VIEWERS)
        .clamp(1, 20_000)
}
const POLL: u32 = 3;

async fn service() -> Service {
    let store = as_server::store::Store::connect("sqlite::memory:")
        .await
        .unwrap();
    let relay = Relay::spawn(RelayConfig::default()).unwrap();
    let (client, _sent) = common::recording_client();
    let cfg = as_server::config::Config::default();
    let mut limits = cfg.limits.clone();
    limits.max_sessions = viewers() as usize + 10;
    let svc = Service::new(
        ServiceConfig {
            domain: "127.0.0.1".into(),
            contact_hostport: "127.0.0.1:5060".into(),
            limits,
            subscriptions: cfg.subscriptions,
            registrar: cfg.registrar,
            dropped_viewer_grace: Duration::from_millis(100),
        },
        as_server::service::catalogue::Catalogue::new(store, "test"),
        relay,
        client,
    );
    svc.ensure_channel(&as_server::config::ChannelSeed {
        id: "quiz".into(),
        name: "QUIZ".into(),
        test_pattern: true,
    })
    .await
    .unwrap();
    svc
}

fn invite(i: u32, rtp_port: u16) -> as_server::sip::Request {
    let body = common::offer(rtp_port, "h264", "recvonly");
    let len = body.replace('\n', "\r\n").len();
    parse(&format!(
        "INVITE sip:quiz@127.0.0.1 SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKfb{i}\n\
         Max-Forwards: 70\n\
         From: <sip:v{i}@127.0.0.1>;tag=t{i}\n\
         To: <sip:quiz@127.0.0.1>\n\
         Call-ID: fb-{i}\n\
         CSeq: 1 INVITE\n\
         Contact: <sip:v{i}@127.0.0.1:5099>\n\
         Content-Type: application/sdp\n\
         Content-Length: {len}\n\n{body}"
    ))
}

/// The relay's RTCP address from an SDP answer: `c=` address and `a=rtcp:` port (RFC 3605),
/// else the media port + 1.
fn relay_rtcp(answer: &str) -> SocketAddr {
    let mut ip = None;
    let mut media = None;
    let mut rtcp = None;
    for l in answer.lines() {
        if let Some(c) = l.strip_prefix("c=IN IP4 ") {
            ip = Some(c.trim().split('/').next().unwrap().to_owned());
        } else if let Some(m) = l.strip_prefix("m=video ") {
            media = m.split(' ').next().and_then(|p| p.parse::<u16>().ok());
        } else if let Some(a) = l.strip_prefix("a=rtcp:") {
            rtcp = a
                .split(' ')
                .next()
                .and_then(|p| p.trim().parse::<u16>().ok());
        }
    }
    let port = rtcp.or(media.map(|m| m + 1)).expect("answer has a port");
    format!("{}:{port}", ip.expect("answer has c="))
        .parse()
        .unwrap()
}

/// RR (reporter `ssrc`, one block about `about`) + APP VOTE, written by hand from RFC 3550
/// sections 6.4.2 and 6.7 (the layout the lead's ue-sim will send):
/// RR `80|c9 len=7 | ssrc | about | fraction(8) cum(24) | ext seq | jitter | lsr | dlsr`, then
/// APP `80|cc len=4 | ssrc | "VOTE" | poll u32 | option u32` (subtype 0 = a vote).
fn compound(ssrc: u32, about: u32, option: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(52);
    out.extend_from_slice(&[0x81, 201, 0, 7]);
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(&about.to_be_bytes());
    let lost: u8 = if ssrc % 2 == 0 { 0 } else { 64 };
    out.extend_from_slice(&[lost, 0, 0, 0]);
    out.extend_from_slice(&1000u32.to_be_bytes());
    out.extend_from_slice(&300u32.to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&[0x80, 204, 0, 4]);
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(b"VOTE");
    out.extend_from_slice(&POLL.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out
}

async fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (st, b) = common::http_exchange(addr, &req).await;
    // Take the JSON value out of a possibly chunked body.
    let start = b.find(['{', '[']).unwrap_or(0);
    let end = b.rfind(['}', ']']).map(|e| e + 1).unwrap_or(b.len());
    (st, b[start..end].to_owned())
}

#[tokio::test]
async fn poll_tally_at_the_as_equals_the_votes_cast() {
    #[expect(clippy::disallowed_methods, reason = "reported, never asserted")]
    fn wall() -> std::time::Instant {
        std::time::Instant::now()
    }
    #[expect(non_snake_case, reason = "reads like the constant it replaces")]
    let VIEWERS = viewers();
    let svc = service().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = as_server::api::router(svc.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let (st, body) = http(
        addr,
        "POST",
        "/api/polls",
        Some(r#"{"channel":"quiz","poll":3,"question":"Best?","options":["a","b","c","d","e"]}"#),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    let (st, _) = http(
        addr,
        "POST",
        "/api/polls",
        Some(r#"{"channel":"nope","poll":4,"question":"?","options":["a"]}"#),
    )
    .await;
    assert_eq!(st, 404);
    let (st, _) = http(addr, "GET", "/api/polls/99", None).await;
    assert_eq!(st, 404);

    // Join.
    let mut viewers = Vec::new();
    for i in 0..VIEWERS {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let ok = call(&svc, invite(i, sock.local_addr().unwrap().port())).await;
        assert_eq!(ok.status, StatusCode::OK, "{ok:?}");
        let answer = String::from_utf8(ok.body.to_vec()).unwrap();
        viewers.push((sock, relay_rtcp(&answer)));
    }
    // Each viewer learns its stream's SSRC from the RTP it receives.
    let mut ssrcs = Vec::new();
    for (sock, _) in &viewers {
        let mut buf = vec![0u8; 2048];
        // Skip RTCP: the offer names no a=rtcp, so the relay sends each viewer's SRs to its
        // RTP port + 1, which may be another viewer's RTP socket (with thousands of sockets
        // this happened: the SR's NTP bytes were taken for the SSRC and 1-4 votes went astray).
        loop {
            let n = timeout(Duration::from_secs(10), sock.recv(&mut buf))
                .await
                .expect("RTP within 10 s")
                .unwrap();
            assert!(n >= 12);
            if !(200..=204).contains(&buf[1]) {
                break;
            }
        }
        ssrcs.push(u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]));
    }

    // First votes i % 5, then every third viewer changes to option 1.
    let mut latest: Vec<u32> = (0..VIEWERS).map(|i| i % 5).collect();
    for (i, (sock, rtcp)) in viewers.iter().enumerate() {
        let d = compound(0x5000 + i as u32, ssrcs[i], latest[i]);
        sock.send_to(&d, rtcp).await.unwrap();
    }
    for (i, l) in latest.iter_mut().enumerate() {
        if i % 3 == 0 {
            *l = 1;
        }
    }
    let mut expected: BTreeMap<u32, u64> = BTreeMap::new();
    for &o in &latest {
        *expected.entry(o).or_default() += 1;
    }

    // Final votes, re-sent each round (idempotent: a latest vote) until the API agrees.
    let mut tally: Option<PollTally> = None;
    for round in 0..25 {
        for (i, (sock, rtcp)) in viewers.iter().enumerate() {
            if i % 3 == 0 || round > 0 {
                let d = compound(0x5000 + i as u32, ssrcs[i], latest[i]);
                sock.send_to(&d, rtcp).await.unwrap();
            }
        }
        let last_vote = wall();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (st, body) = http(addr, "GET", "/api/polls/3", None).await;
        assert_eq!(st, 200, "{body}");
        let t: PollTally = serde_json::from_str(&body).unwrap();
        let got: BTreeMap<u32, u64> = t
            .options
            .iter()
            .filter(|o| o.votes > 0)
            .map(|o| (o.option, o.votes))
            .collect();
        let done = got == expected && t.total_votes == u64::from(VIEWERS);
        tally = Some(t);
        if done {
            eprintln!(
                "{VIEWERS} viewers: exact tally {:?} after the last vote (round {round}; 200 ms sleep included)",
                last_vote.elapsed()
            );
            break;
        }
    }
    let t = tally.unwrap();
    for o in &t.options {
        assert_eq!(
            o.votes,
            expected.get(&o.option).copied().unwrap_or(0),
            "option {} in {t:?}",
            o.option
        );
    }
    assert_eq!(t.total_votes, u64::from(VIEWERS));
    assert!(t.undeclared.is_empty());
    assert_eq!(t.relays, 1);

    let (st, body) = http(addr, "GET", "/api/channels/quiz/quality", None).await;
    assert_eq!(st, 200, "{body}");
    let q: ChannelQuality = serde_json::from_str(&body).unwrap();
    assert_eq!(q.relays, 1);
    assert_eq!(q.summary.viewers_reporting, u64::from(VIEWERS));
    assert_eq!(q.summary.loss.count, u64::from(VIEWERS));
    assert_eq!(q.summary.loss.counts[0], u64::from(VIEWERS / 2));
    assert_eq!(q.summary.voters, u64::from(VIEWERS));

    let (st, body) = http(addr, "GET", "/api/polls", None).await;
    assert_eq!(st, 200);
    let all: Vec<PollTally> = serde_json::from_str(&body).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].total_votes, u64::from(VIEWERS));
    let (st, _) = http(addr, "GET", "/api/channels/nope/quality", None).await;
    assert_eq!(st, 404);
}
