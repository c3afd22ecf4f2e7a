//! The AS declares each channel's polls to its relays (`service::relays`, "Poll
//! declarations"), end to end on 127.0.0.1 with two real in-process relays: channel `b` (a
//! test pattern, on both relays) and channel `a` (one ingest, on relay 0). Poll 7 is `a`'s,
//! poll 8 is `b`'s, both created over the HTTP API.
//!
//! 1. A viewer of `b` on relay 0 votes in poll 7 and in poll 8: relay 0 refuses the poll-7
//!    vote (its `feedback_foreign_poll_votes` counter rises), poll 8 counts its vote, and
//!    neither `b`'s summary nor poll 7's tally holds a poll-7 vote. (Undeclared, the relay
//!    would have placed poll 7 on `b`, where the viewer first voted in it.)
//! 2. Relay 0 stops; the failover re-homes `a` on relay 1, which did not carry `a` when the
//!    poll was created. The AS declares `a`'s polls there by itself (its declaration task),
//!    so a viewer of `b` on relay 1 voting in poll 7 is refused there too.
//!
//! Every wait is bounded; no timing is asserted.

use std::net::SocketAddr;
use std::time::Duration;

use as_server::service::feedback::{ChannelQuality, PollTally};
use as_server::service::relays::{HealthConfig, RelayPool};
use as_server::service::{Service, ServiceConfig};
use as_server::sip::StatusCode;
use media_relay::{Relay, RelayConfig};
use tokio::net::UdpSocket;
use tokio::time::{sleep, timeout};

mod common;
use common::{call, parse};

/// `a`'s poll.
const POLL_A: u32 = 7;
/// `b`'s poll.
const POLL_B: u32 = 8;

async fn service() -> Service {
    let store = as_server::store::Store::connect("sqlite::memory:")
        .await
        .unwrap();
    let relays = (0..2)
        .map(|i| {
            (
                format!("relay-{i}"),
                Relay::spawn(RelayConfig::default()).unwrap(),
            )
        })
        .collect();
    let pool = RelayPool::new(relays, HealthConfig::default());
    let (client, _sent) = common::recording_client();
    let cfg = as_server::config::Config::default();
    let svc = Service::with_relays(
        ServiceConfig {
            domain: "127.0.0.1".into(),
            contact_hostport: "127.0.0.1:5060".into(),
            limits: cfg.limits.clone(),
            subscriptions: cfg.subscriptions,
            registrar: cfg.registrar,
            dropped_viewer_grace: Duration::from_millis(100),
        },
        as_server::service::catalogue::Catalogue::new(store, "test"),
        pool,
        client,
    );
    for (id, test_pattern) in [("b", true), ("a", false)] {
        svc.ensure_channel(&as_server::config::ChannelSeed {
            id: id.into(),
            name: id.to_uppercase(),
            test_pattern,
        })
        .await
        .unwrap();
    }
    svc
}

fn invite(i: u32, channel: &str, rtp_port: u16) -> as_server::sip::Request {
    let body = common::offer(rtp_port, "h264", "recvonly");
    let len = body.replace('\n', "\r\n").len();
    parse(&format!(
        "INVITE sip:{channel}@127.0.0.1 SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKpd{i}\n\
         Max-Forwards: 70\n\
         From: <sip:v{i}@127.0.0.1>;tag=t{i}\n\
         To: <sip:{channel}@127.0.0.1>\n\
         Call-ID: pd-{i}\n\
         CSeq: 1 INVITE\n\
         Contact: <sip:v{i}@127.0.0.1:5099>\n\
         Content-Type: application/sdp\n\
         Content-Length: {len}\n\n{body}"
    ))
}

/// The relay's RTCP address from an SDP answer: `c=` and `a=rtcp:` (RFC 3605), else the
/// media port + 1.
fn relay_rtcp(answer: &str) -> SocketAddr {
    let (mut ip, mut media, mut rtcp) = (None, None, None);
    for l in answer.lines() {
        if let Some(c) = l.strip_prefix("c=IN IP4 ") {
            ip = Some(c.trim().split('/').next().unwrap().to_owned());
        } else if let Some(m) = l.strip_prefix("m=video ") {
            media = m.split(' ').next().and_then(|p| p.parse::<u16>().ok());
        } else if let Some(a) = l.strip_prefix("a=rtcp:") {
            rtcp = a.split(' ').next().and_then(|p| p.trim().parse().ok());
        }
    }
    let port = rtcp.or(media.map(|m| m + 1)).expect("answer has a port");
    format!("{}:{port}", ip.expect("answer has c="))
        .parse()
        .unwrap()
}

/// A viewer of `channel`: its RTP socket, the relay's RTCP address, the SSRC it receives.
struct Viewer {
    sock: UdpSocket,
    rtcp: SocketAddr,
    ssrc: u32,
    own: u32,
}

async fn join(svc: &Service, i: u32, channel: &str) -> Viewer {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let ok = call(svc, invite(i, channel, sock.local_addr().unwrap().port())).await;
    assert_eq!(ok.status, StatusCode::OK, "{ok:?}");
    let rtcp = relay_rtcp(std::str::from_utf8(&ok.body).unwrap());
    let mut buf = vec![0u8; 2048];
    let ssrc = loop {
        let n = timeout(Duration::from_secs(10), sock.recv(&mut buf))
            .await
            .expect("RTP within 10 s")
            .unwrap();
        assert!(n >= 12);
        if !(200..=204).contains(&buf[1]) {
            break u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        }
    };
    Viewer {
        sock,
        rtcp,
        ssrc,
        own: 0x7000 + i,
    }
}

/// RR about the stream (RFC 3550 section 6.4.2) + one APP `VOTE` per (poll, option)
/// (section 6.7; subtype 0, data = poll u32, option u32).
fn compound(v: &Viewer, votes: &[(u32, u32)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&[0x81, 201, 0, 7]);
    out.extend_from_slice(&v.own.to_be_bytes());
    out.extend_from_slice(&v.ssrc.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&1000u32.to_be_bytes());
    out.extend_from_slice(&[0; 12]);
    for (poll, option) in votes {
        out.extend_from_slice(&[0x80, 204, 0, 4]);
        out.extend_from_slice(&v.own.to_be_bytes());
        out.extend_from_slice(b"VOTE");
        out.extend_from_slice(&poll.to_be_bytes());
        out.extend_from_slice(&option.to_be_bytes());
    }
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
    let start = b.find(['{', '[']).unwrap_or(0);
    let end = b.rfind(['}', ']']).map(|e| e + 1).unwrap_or(b.len());
    (st, b[start..end].to_owned())
}

async fn tally(addr: SocketAddr, poll: u32) -> PollTally {
    let (st, body) = http(addr, "GET", &format!("/api/polls/{poll}"), None).await;
    assert_eq!(st, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn quality(addr: SocketAddr, channel: &str) -> ChannelQuality {
    let (st, body) = http(
        addr,
        "GET",
        &format!("/api/channels/{channel}/quality"),
        None,
    )
    .await;
    assert_eq!(st, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn foreign(svc: &Service, relay: usize) -> u64 {
    svc.relays()
        .handle(relay)
        .stats()
        .await
        .unwrap()
        .totals
        .feedback_foreign_poll_votes
}

/// Sends `votes` from `v` every 200 ms (a latest vote: idempotent) until poll `counted`'s
/// tally has `v`'s vote in it and relay `relay` refused one vote or more; bounded.
async fn vote_until_refused(
    svc: &Service,
    addr: SocketAddr,
    v: &Viewer,
    votes: &[(u32, u32)],
    relay: usize,
    counted: u32,
) -> (PollTally, u64) {
    let d = compound(v, votes);
    for _ in 0..50 {
        v.sock.send_to(&d, v.rtcp).await.unwrap();
        sleep(Duration::from_millis(200)).await;
        let t = tally(addr, counted).await;
        let refused = foreign(svc, relay).await;
        if t.total_votes >= 1 && refused >= 1 {
            return (t, refused);
        }
    }
    panic!(
        "no refused vote at relay {relay} within 10 s: tally {:?}, foreign {}",
        tally(addr, counted).await,
        foreign(svc, relay).await
    );
}

#[tokio::test]
async fn a_vote_for_another_channels_poll_is_refused_at_every_relay_carrying_it() {
    let svc = service().await;
    assert_eq!(svc.relays().state().carriers("b"), [0, 1]);
    assert_eq!(svc.relays().state().carriers("a"), [0], "a's only ingest");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = as_server::api::router(svc.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    for (channel, poll) in [("a", POLL_A), ("b", POLL_B)] {
        let (st, body) = http(
            addr,
            "POST",
            "/api/polls",
            Some(&format!(
                r#"{{"channel":"{channel}","poll":{poll},"question":"?","options":["x","y"]}}"#
            )),
        )
        .await;
        assert_eq!(st, 201, "{body}");
    }

    // 1. Relay 0 carries both channels and was told a's polls before the 201.
    let v0 = join(&svc, 0, "b").await;
    let v1 = join(&svc, 1, "b").await;
    {
        let st = svc.relays().state();
        assert_eq!(st.relay(0).unwrap().viewers, 1, "v0 on relay 0");
        assert_eq!(st.relay(1).unwrap().viewers, 1, "v1 on relay 1");
    }
    assert_eq!(foreign(&svc, 0).await, 0);
    let (t8, _) = vote_until_refused(&svc, addr, &v0, &[(POLL_A, 0), (POLL_B, 1)], 0, POLL_B).await;
    assert_eq!(t8.options[1].votes, 1, "{t8:?}");
    assert_eq!(t8.total_votes, 1, "b's poll holds v0's vote only: {t8:?}");
    let t7 = tally(addr, POLL_A).await;
    assert_eq!(t7.total_votes, 0, "a vote on b never counts for a: {t7:?}");
    let qb = quality(addr, "b").await;
    assert!(
        !qb.summary.votes.contains_key(&POLL_A),
        "b's summary has no vote in a's poll: {:?}",
        qb.summary.votes
    );
    assert_eq!(foreign(&svc, 1).await, 0, "relay 1 saw no vote yet");

    // 2. Relay 0 dies; a is re-homed on relay 1, which must learn a's polls from the AS.
    assert!(!svc.relays().state().carries(1, "a"));
    let monitor = {
        let svc = svc.clone();
        tokio::spawn(async move { svc.run_relay_monitor().await })
    };
    assert!(svc.relays().stop(0).await);
    let mut rehomed = false;
    for _ in 0..100 {
        let st = svc.relays().state();
        // Carried, and the declaration taken by the AS's own task (nothing else here runs
        // one): it is in flight or done.
        if st.carries(1, "a") && !st.has_due_declarations() {
            rehomed = true;
            break;
        }
        drop(st);
        sleep(Duration::from_millis(100)).await;
    }
    assert!(rehomed, "a re-homed on relay 1 within 10 s");
    assert_eq!(svc.relays().state().channel_polls("a"), Some(&[POLL_A][..]));
    // Waits for the task's run in flight (one run at a time); nothing is left to declare.
    assert_eq!(svc.relays().declare_polls().await, 0);

    let before = tally(addr, POLL_B).await;
    let (t8, refused) =
        vote_until_refused(&svc, addr, &v1, &[(POLL_A, 1), (POLL_B, 0)], 1, POLL_B).await;
    assert!(refused >= 1);
    assert_eq!(
        t8.options[0].votes,
        before.options[0].votes + 1,
        "v1's vote in b's poll counts: {t8:?}"
    );
    assert_eq!(
        t8.options[1].votes, before.options[1].votes,
        "b's other option unchanged: {t8:?}"
    );
    let t7 = tally(addr, POLL_A).await;
    assert_eq!(t7.total_votes, 0, "{t7:?}");
    assert_eq!(t7.relays, 1, "a is asked at relay 1 now");
    let qb = quality(addr, "b").await;
    assert!(
        !qb.summary.votes.contains_key(&POLL_A),
        "{:?}",
        qb.summary.votes
    );

    // Deleting a's poll withdraws the declaration: the same vote is b's own now.
    let (st, _) = http(addr, "DELETE", &format!("/api/polls/{POLL_A}"), None).await;
    assert_eq!(st, 204);
    let (st, _) = http(addr, "DELETE", &format!("/api/polls/{POLL_A}"), None).await;
    assert_eq!(st, 404);
    assert_eq!(svc.relays().state().channel_polls("a"), Some(&[][..]));
    let d = compound(&v1, &[(POLL_A, 1)]);
    let mut counted_on_b = None;
    for _ in 0..50 {
        v1.sock.send_to(&d, v1.rtcp).await.unwrap();
        sleep(Duration::from_millis(200)).await;
        let q = quality(addr, "b").await;
        if let Some(c) = q.summary.votes.get(&POLL_A) {
            counted_on_b = Some(c.clone());
            break;
        }
    }
    let c = counted_on_b.expect("an undeclared poll counts where the vote arrives, within 10 s");
    assert_eq!(c.get(&1), Some(&1), "{c:?}");
    monitor.abort();
}
