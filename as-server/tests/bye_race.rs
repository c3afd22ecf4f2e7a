//! The hang-up race of a real phone (seen with baresip): the UE sends its SIP BYE and, within a
//! millisecond, an RTCP BYE to the relay (or the RTCP BYE first, baresip `-t`). The relay drops
//! the viewer at once on the RTCP BYE (RFC 3550 section 6.6) and tells the AS; the AS must not
//! end the SIP session on that event alone, or the UE's BYE finds no dialog (481) and the AS's
//! own BYE crosses it. The AS gives the UE a grace period for its BYE, ends the session with a
//! BYE of its own only after it, and answers a BYE for a dialog it ended itself a moment ago
//! with 200 (RFC 3261 section 15.1.2 says SHOULD 481; the dialog did exist and ended, which is
//! what the UE asked for).
//!
//! The service runs against an in-memory store and a real relay on loopback, without the SIP
//! transport (as in `service_flows.rs`); the RTCP BYE is a real datagram to the relay. The relay
//! event is handed to the service by the test (what `run_relay_events` does), so the order of
//! the two BYEs is the test's choice, not the scheduler's.

use std::time::Duration;

use as_server::service::{Service, ServiceConfig, TuRequest};
use as_server::sip::transaction::Transport;
use as_server::sip::{Request, StatusCode};
use media_relay::control::ViewerId;
use media_relay::relay::DropReason;
use media_relay::{Relay, RelayConfig, RelayHandle};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::timeout;

mod common;
use common::{call, parse, UE};

struct Harness {
    svc: Service,
    sent: mpsc::UnboundedReceiver<Request>,
    relay: RelayHandle,
}

async fn harness(grace: Duration) -> Harness {
    let store = as_server::store::Store::connect("sqlite::memory:")
        .await
        .unwrap();
    let relay = Relay::spawn(RelayConfig::default()).unwrap();
    let (client, sent) = common::recording_client();
    let cfg = as_server::config::Config::default();
    let svc = Service::new(
        ServiceConfig {
            domain: "127.0.0.1".into(),
            contact_hostport: "127.0.0.1:5060".into(),
            limits: cfg.limits.clone(),
            subscriptions: cfg.subscriptions,
            registrar: cfg.registrar,
            dropped_viewer_grace: grace,
        },
        as_server::service::catalogue::Catalogue::new(store, "test"),
        relay.clone(),
        client,
    );
    svc.ensure_channel(&as_server::config::ChannelSeed {
        id: "news".into(),
        name: "NEWS".into(),
        test_pattern: true,
    })
    .await
    .unwrap();
    Harness { svc, sent, relay }
}

fn invite(call_id: &str, rtp_port: u16) -> Request {
    let body = format!(
        "v=0\no=ue 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n\
         m=video {rtp_port} RTP/AVP 96\na=rtpmap:96 H264/90000\n\
         a=fmtp:96 packetization-mode=1\na=recvonly\n"
    );
    let len = body.replace('\n', "\r\n").len();
    parse(&format!(
        "INVITE sip:news@127.0.0.1 SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK{call_id}1\n\
         Max-Forwards: 70\n\
         From: <sip:alice@127.0.0.1>;tag=ue1\n\
         To: <sip:news@127.0.0.1>\n\
         Call-ID: {call_id}\n\
         CSeq: 1 INVITE\n\
         Contact: <sip:alice@127.0.0.1:5099>\n\
         Content-Type: application/sdp\n\
         Content-Length: {len}\n\n{body}"
    ))
}

fn ack(call_id: &str, to_tag: &str) -> Request {
    parse(&format!(
        "ACK sip:news@127.0.0.1:5060 SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKack{call_id}\n\
         Max-Forwards: 70\n\
         From: <sip:alice@127.0.0.1>;tag=ue1\n\
         To: <sip:news@127.0.0.1>;tag={to_tag}\n\
         Call-ID: {call_id}\n\
         CSeq: 1 ACK\n\
         Content-Length: 0\n\n"
    ))
}

fn bye(call_id: &str, to_tag: &str) -> Request {
    parse(&format!(
        "BYE sip:news@127.0.0.1:5060 SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKbye{call_id}\n\
         Max-Forwards: 70\n\
         From: <sip:alice@127.0.0.1>;tag=ue1\n\
         To: <sip:news@127.0.0.1>;tag={to_tag}\n\
         Call-ID: {call_id}\n\
         CSeq: 2 BYE\n\
         Content-Length: 0\n\n"
    ))
}

/// A joined, acknowledged viewer: its RTP socket, the dialog's To tag, its relay viewer id
/// and the relay's RTCP port (the answer's `a=rtcp`).
struct Joined {
    rtp: UdpSocket,
    tag: String,
    viewer: ViewerId,
    rtcp_port: u16,
}

async fn join(h: &Harness, call_id: &str) -> Joined {
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = rtp.local_addr().unwrap().port();
    let ok = call(&h.svc, invite(call_id, port)).await;
    assert_eq!(ok.status, StatusCode::OK, "{ok:?}");
    let tag = ok.to().unwrap().tag().unwrap().to_owned();
    // ACK goes unanswered.
    h.svc
        .handle(TuRequest::new(
            ack(call_id, &tag),
            UE.parse().unwrap(),
            Transport::Udp,
            |_| {},
        ))
        .await;
    let answer = String::from_utf8(ok.body.to_vec()).unwrap();
    let rtcp_port: u16 = answer
        .lines()
        .find_map(|l| l.strip_prefix("a=rtcp:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .expect("a=rtcp in the answer");
    let session = h
        .svc
        .sessions()
        .into_iter()
        .find(|s| s.call_id == call_id)
        .expect("a session");
    let viewer = ViewerId(session.viewer.expect("a viewer session"));
    // Media flows: the relay sends to the viewer.
    let mut buf = [0u8; 2048];
    let n = timeout(Duration::from_secs(3), rtp.recv(&mut buf))
        .await
        .expect("RTP after join")
        .unwrap();
    assert!(n >= 12 && buf[0] >> 6 == 2, "RTP");
    Joined {
        rtp,
        tag,
        viewer,
        rtcp_port,
    }
}

/// Sends the UE's RTCP BYE (an empty RR then a BYE, RFC 3550 section 6.1 compound) to the
/// relay's RTCP port.
async fn send_rtcp_bye(j: &Joined) {
    let own_ssrc: u32 = 0x0b0b_0b0b;
    let mut pkt = vec![0x80, 201, 0, 1];
    pkt.extend_from_slice(&own_ssrc.to_be_bytes());
    pkt.extend_from_slice(&[0x81, 203, 0, 1]);
    pkt.extend_from_slice(&own_ssrc.to_be_bytes());
    j.rtp
        .send_to(&pkt, ("127.0.0.1", j.rtcp_port))
        .await
        .unwrap();
}

/// Sends the UE's RTCP BYE and waits until the relay has dropped the viewer.
async fn rtcp_bye(h: &Harness, j: &Joined) {
    send_rtcp_bye(j).await;
    for _ in 0..100 {
        let stats = h.relay.stats().await.unwrap();
        if !stats.viewers.iter().any(|v| v.viewer == j.viewer) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the relay did not drop the viewer on its RTCP BYE");
}

/// No request from the AS is waiting (what was sent so far has been queued synchronously:
/// BYEs are spawned, so give the spawned tasks a turn first).
async fn nothing_sent(h: &mut Harness) {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    if let Ok(r) = h.sent.try_recv() {
        panic!("the AS sent {} (call {:?})", r.method, r.call_id());
    }
}

/// Calls `tick` every 20 ms (the App's housekeeping timer, faster).
fn ticking(svc: &Service) -> tokio::task::JoinHandle<()> {
    let svc = svc.clone();
    tokio::spawn(async move {
        loop {
            svc.tick().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

#[tokio::test]
async fn rtcp_bye_then_sip_bye_gets_200_and_no_as_bye() {
    let mut h = harness(Duration::from_secs(60)).await;
    let j = join(&h, "r1").await;
    rtcp_bye(&h, &j).await;
    // The relay's event reaches the service first (baresip -t order).
    h.svc.viewer_dropped(j.viewer, DropReason::Bye).await;
    // The session waits for the UE's own BYE: still there, nothing sent.
    assert_eq!(h.svc.sessions().len(), 1);
    nothing_sent(&mut h).await;
    h.svc.tick().await;
    nothing_sent(&mut h).await;
    let r = call(&h.svc, bye("r1", &j.tag)).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert!(h.svc.sessions().is_empty());
    h.svc.tick().await;
    nothing_sent(&mut h).await;
}

#[tokio::test]
async fn sip_bye_then_rtcp_bye_gets_200_and_no_as_bye() {
    let mut h = harness(Duration::from_secs(60)).await;
    let j = join(&h, "r2").await;
    let r = call(&h.svc, bye("r2", &j.tag)).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert!(h.svc.sessions().is_empty());
    // The RTCP BYE comes after: the viewer is already off the relay, nothing more happens.
    send_rtcp_bye(&j).await;
    assert!(!h.svc.viewer_dropped(j.viewer, DropReason::Bye).await);
    h.svc.tick().await;
    nothing_sent(&mut h).await;
}

#[tokio::test]
async fn rtcp_bye_without_sip_bye_ends_with_as_bye_after_the_grace() {
    let mut h = harness(Duration::from_millis(200)).await;
    let j = join(&h, "r3").await;
    rtcp_bye(&h, &j).await;
    h.svc.viewer_dropped(j.viewer, DropReason::Bye).await;
    // Nothing ticks yet: the session is in its grace period.
    assert_eq!(h.svc.sessions().len(), 1);
    nothing_sent(&mut h).await;
    // The service's timer runs: once the grace is over the AS sends its BYE.
    let ticker = ticking(&h.svc);
    let sent = timeout(Duration::from_secs(5), h.sent.recv())
        .await
        .expect("an AS BYE once the grace is over")
        .unwrap();
    ticker.abort();
    assert_eq!(sent.method.as_str(), "BYE");
    assert_eq!(sent.call_id().unwrap(), "r3");
    assert_eq!(sent.from().unwrap().tag(), Some(j.tag.as_str()));
    assert!(h.svc.sessions().is_empty());
    // The UE's BYE crossing the AS's: 200, not 481 (the dialog was just ended by the AS).
    let r = call(&h.svc, bye("r3", &j.tag)).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    // A BYE for a dialog that never existed still gets 481.
    let r = call(&h.svc, bye("never", "nosuchtag")).await;
    assert_eq!(r.status.0, 481, "{r:?}");
    nothing_sent(&mut h).await;
}

/// A drop event for a viewer with no session here (e.g. its UE's BYE was handled first and
/// the event is late) changes nothing.
#[tokio::test]
async fn unknown_viewer_drop_is_ignored() {
    let mut h = harness(Duration::from_secs(60)).await;
    assert!(!h.svc.viewer_dropped(ViewerId(9999), DropReason::Bye).await);
    h.svc.tick().await;
    nothing_sent(&mut h).await;
}
