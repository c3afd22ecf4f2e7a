//! The channel service against a real store (in-memory SQLite) and a real in-process relay on
//! loopback, without the SIP transport: requests are handed to `Service::handle` as the
//! endpoint would, responses are captured, and the service's own requests (NOTIFY, BYE) go to
//! a recording `SipClient`. RTP is checked at real UDP sockets.

use std::net::SocketAddr;
use std::time::Duration;

use as_server::service::channel_list::ChannelEntry;
use as_server::service::{NewChannel, Service, ServiceConfig, TuRequest};
use as_server::sip::transaction::Transport;
use as_server::sip::{HeaderName, Request, Response, StatusCode};
use media_relay::{Relay, RelayConfig};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::timeout;

mod common;
use common::{call, parse, UE};

struct Harness {
    svc: Service,
    sent: mpsc::UnboundedReceiver<Request>,
    relay: media_relay::RelayHandle,
    store: as_server::store::Store,
}

async fn harness(max_sessions: usize) -> Harness {
    harness_with(max_sessions, RelayConfig::default()).await
}

async fn harness_with(max_sessions: usize, relay: RelayConfig) -> Harness {
    let store = as_server::store::Store::connect("sqlite::memory:")
        .await
        .unwrap();
    let relay = Relay::spawn(relay).unwrap();
    let (client, sent) = common::recording_client();
    let cfg = as_server::config::Config::default();
    let mut limits = cfg.limits.clone();
    limits.max_sessions = max_sessions;
    let svc = Service::new(
        ServiceConfig {
            domain: "127.0.0.1".into(),
            contact_hostport: "127.0.0.1:5060".into(),
            limits,
            subscriptions: cfg.subscriptions,
            registrar: cfg.registrar,
            dropped_viewer_grace: Duration::from_millis(100),
        },
        as_server::service::catalogue::Catalogue::new(store.clone(), "test"),
        relay.clone(),
        client,
    );
    for (id, tp) in [("news", true), ("sport", true)] {
        svc.ensure_channel(&as_server::config::ChannelSeed {
            id: id.into(),
            name: id.to_uppercase(),
            test_pattern: tp,
        })
        .await
        .unwrap();
    }
    Harness {
        svc,
        sent,
        relay,
        store,
    }
}

/// A recvonly offer (see [`common::offer`]).
fn sdp(rtp_port: u16, codec: &str) -> String {
    common::offer(rtp_port, codec, "recvonly")
}

fn invite(
    user: &str,
    call_id: &str,
    cseq: u32,
    to_tag: Option<&str>,
    body: &str,
    extra: &str,
) -> Request {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let len = body.replace('\n', "\r\n").len();
    parse(&format!(
        "INVITE sip:{user}@127.0.0.1 SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK{call_id}{cseq}\n\
         Max-Forwards: 70\n\
         From: <sip:alice@127.0.0.1>;tag=ue1\n\
         To: <sip:{user}@127.0.0.1>{to_tag}\n\
         Call-ID: {call_id}\n\
         CSeq: {cseq} INVITE\n\
         Contact: <sip:alice@127.0.0.1:5099>\n\
         {extra}Content-Type: application/sdp\n\
         Content-Length: {len}\n\n{body}"
    ))
}

fn bye(call_id: &str, to_tag: &str, cseq: u32) -> Request {
    parse(&format!(
        "BYE sip:news@127.0.0.1 SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKbye{call_id}{cseq}\n\
         Max-Forwards: 70\n\
         From: <sip:alice@127.0.0.1>;tag=ue1\n\
         To: <sip:news@127.0.0.1>;tag={to_tag}\n\
         Call-ID: {call_id}\n\
         CSeq: {cseq} BYE\n\
         Content-Length: 0\n\n"
    ))
}

fn to_tag(r: &Response) -> String {
    r.to().unwrap().tag().unwrap().to_owned()
}

/// (sequence number, ssrc) of an RTP packet.
fn rtp_seq(p: &[u8]) -> (u16, u32) {
    assert!(p.len() >= 12 && p[0] >> 6 == 2, "not RTP");
    (
        u16::from_be_bytes([p[2], p[3]]),
        u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
    )
}

async fn recv_rtp(sock: &UdpSocket) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 2048];
    match timeout(Duration::from_secs(3), sock.recv(&mut buf)).await {
        Ok(Ok(n)) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

#[tokio::test]
async fn join_zap_leave_with_rtp() {
    let mut h = harness(100).await;
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = rtp.local_addr().unwrap().port();

    let ok = call(
        &h.svc,
        invite("news", "c1", 1, None, &sdp(port, "h264"), ""),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{ok:?}");
    let tag = to_tag(&ok);
    assert!(ok
        .headers
        .get(&HeaderName::CONTACT)
        .unwrap()
        .contains("sip:news@127.0.0.1:5060"));
    let answer = String::from_utf8(ok.body.to_vec()).unwrap();
    assert!(answer.contains("a=sendonly"), "{answer}");
    assert!(answer.contains("a=rtcp-unicast:rsi"), "{answer}");
    assert!(answer.contains("a=rtcp:"), "{answer}");
    assert!(answer.contains("c=IN IP4 127.0.0.1"), "{answer}");
    assert!(
        answer.contains("a=fmtp:96 packetization-mode=1"),
        "{answer}"
    );

    // RTP arrives from the test pattern (burst from the last key frame first).
    let first = recv_rtp(&rtp).await.expect("RTP after join");
    let (mut last_seq, ssrc) = rtp_seq(&first);
    for _ in 0..20 {
        let p = recv_rtp(&rtp).await.expect("RTP keeps coming");
        let (s, x) = rtp_seq(&p);
        assert_eq!(x, ssrc);
        last_seq = s;
    }

    // Zap by re-INVITE naming the other channel: 200, same SDP, new Contact.
    let zap = call(
        &h.svc,
        invite("sport", "c1", 2, Some(&tag), &sdp(port, "h264"), ""),
    )
    .await;
    assert_eq!(zap.status, StatusCode::OK, "{zap:?}");
    assert_eq!(
        zap.body, ok.body,
        "zap keeps the same SDP (same relay path)"
    );
    assert!(zap
        .headers
        .get(&HeaderName::CONTACT)
        .unwrap()
        .contains("sip:sport@"));
    let sessions = h.svc.sessions();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].channel, "sport");
    // Sequence numbers continue across the zap, same SSRC.
    let mut prev = last_seq;
    for _ in 0..30 {
        let p = recv_rtp(&rtp).await.expect("RTP after zap");
        let (s, x) = rtp_seq(&p);
        assert_eq!(x, ssrc, "same SSRC after zap");
        assert_eq!(s, prev.wrapping_add(1), "contiguous sequence numbers");
        prev = s;
    }

    // Unknown channel in a re-INVITE: 404, session stays on sport.
    let nf = call(
        &h.svc,
        invite("nosuch", "c1", 3, Some(&tag), &sdp(port, "h264"), ""),
    )
    .await;
    assert_eq!(nf.status.0, 404);
    assert_eq!(h.svc.sessions()[0].channel, "sport");

    // BYE: 200 and RTP stops.
    let r = call(&h.svc, bye("c1", &tag, 4)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(h.svc.sessions().is_empty());
    // Drain what was in flight, then nothing more.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut buf = [0u8; 2048];
    while rtp.try_recv(&mut buf).is_ok() {}
    assert!(
        timeout(Duration::from_millis(700), rtp.recv(&mut buf))
            .await
            .is_err(),
        "RTP stopped after BYE"
    );
    // A second BYE: no such dialog.
    assert_eq!(call(&h.svc, bye("c1", &tag, 5)).await.status.0, 481);
    assert!(h.sent.try_recv().is_err(), "the AS sent nothing of its own");
    let m = h.svc.metrics_text().await;
    assert!(m.contains("as_joins_total 1"), "{m}");
    assert!(m.contains("as_zaps_total 1"));
    assert!(m.contains("as_leaves_total 1"));
}

#[tokio::test]
async fn join_failures() {
    let h = harness(1).await;
    let unknown = call(
        &h.svc,
        invite("nosuch", "f1", 1, None, &sdp(4000, "h264"), ""),
    )
    .await;
    assert_eq!(unknown.status.0, 404);

    let vp8 = call(&h.svc, invite("news", "f2", 1, None, &sdp(4000, "vp8"), "")).await;
    assert_eq!(vp8.status.0, 488);
    let w = vp8.headers.get(&HeaderName::WARNING).unwrap();
    assert!(w.starts_with("305 127.0.0.1 \""), "{w}");

    // baresip's offer order: audio, then H.264 in packetization mode 0 only. The relay sends
    // FU-A (mode 1, RFC 6184 section 6.3): no H.264 in common, 488 with Warning 305.
    let mode0 = "v=0\no=ue 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n\
                 m=audio 4002 RTP/AVP 0\na=rtpmap:0 PCMU/8000\n\
                 m=video 4000 RTP/AVP 96\na=rtpmap:96 H264/90000\n\
                 a=fmtp:96 packetization-mode=0;profile-level-id=42e01f\na=recvonly\n";
    let r = call(&h.svc, invite("news", "f2b", 1, None, mode0, "")).await;
    assert_eq!(r.status.0, 488, "{r:?}");
    let w = r.headers.get(&HeaderName::WARNING).unwrap();
    assert!(w.starts_with("305 127.0.0.1 \""), "{w}");

    let no_body = call(&h.svc, invite("news", "f3", 1, None, "", "")).await;
    assert_eq!(no_body.status.0, 400);

    let garbage = call(
        &h.svc,
        invite("news", "f4", 1, None, "this is not sdp\n", ""),
    )
    .await;
    assert_eq!(garbage.status.0, 400);
    assert!(garbage.reason.contains("SDP"), "{}", garbage.reason);

    let req = call(
        &h.svc,
        invite("news", "f5", 1, None, &sdp(4000, "h264"), "Require: foo\n"),
    )
    .await;
    assert_eq!(req.status.0, 420);
    assert_eq!(
        req.headers.get(&HeaderName::new("Unsupported")),
        Some("foo")
    );

    let mf = call(
        &h.svc,
        parse(
            "INVITE sip:news@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKmf\n\
             Max-Forwards: 0\nFrom: <sip:a@b>;tag=1\nTo: <sip:news@127.0.0.1>\nCall-ID: mf\n\
             CSeq: 1 INVITE\nContent-Length: 0\n\n",
        ),
    )
    .await;
    assert_eq!(mf.status.0, 483);

    let publish = call(
        &h.svc,
        parse(
            "PUBLISH sip:news@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKpub\n\
             Max-Forwards: 70\nFrom: <sip:a@b>;tag=1\nTo: <sip:news@127.0.0.1>\nCall-ID: pub\n\
             CSeq: 1 PUBLISH\nContent-Length: 0\n\n",
        ),
    )
    .await;
    common::assert_allow_lists(&publish, 405, "INVITE");

    // Overload: max_sessions = 1.
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = rtp.local_addr().unwrap().port();
    let one = call(
        &h.svc,
        invite("news", "o1", 1, None, &sdp(port, "h264"), ""),
    )
    .await;
    assert_eq!(one.status.0, 200);
    let two = call(
        &h.svc,
        invite("news", "o2", 1, None, &sdp(port + 1, "h264"), ""),
    )
    .await;
    assert_eq!(two.status.0, 503);
    assert_eq!(two.headers.get(&HeaderName::RETRY_AFTER), Some("5"));
    let m = h.svc.metrics_text().await;
    assert!(m.contains("as_failures_total{code=\"404\"} 1"), "{m}");
    assert!(m.contains("as_failures_total{code=\"503\"} 1"), "{m}");
}

fn subscribe(call_id: &str, expires: u32) -> Request {
    parse(&format!(
        "SUBSCRIBE sip:channels@127.0.0.1 SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKsub{call_id}{expires}\n\
         Max-Forwards: 70\n\
         From: <sip:bob@127.0.0.1>;tag=bob1\n\
         To: <sip:channels@127.0.0.1>\n\
         Call-ID: {call_id}\n\
         CSeq: 1 SUBSCRIBE\n\
         Contact: <sip:bob@127.0.0.1:5098>\n\
         Event: iptv-channels\n\
         Expires: {expires}\n\
         Content-Length: 0\n\n"
    ))
}

async fn next_notify(rx: &mut mpsc::UnboundedReceiver<Request>) -> (Vec<ChannelEntry>, String) {
    let n = timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n.method.as_str(), "NOTIFY");
    assert_eq!(n.headers.get(&HeaderName::EVENT), Some("iptv-channels"));
    assert_eq!(
        n.headers.get(&HeaderName::CONTENT_TYPE),
        Some("application/vnd.iptv.channels+json")
    );
    let state = n
        .headers
        .get(&HeaderName::SUBSCRIPTION_STATE)
        .unwrap()
        .to_owned();
    (serde_json::from_slice(&n.body).unwrap(), state)
}

#[tokio::test]
async fn personal_channel_listed_joined_and_removed() {
    let mut h = harness(100).await;
    // Subscribe to the channel list.
    let ok = call(&h.svc, subscribe("s1", 600)).await;
    assert_eq!(ok.status.0, 200);
    assert_eq!(ok.headers.get(&HeaderName::EXPIRES), Some("600"));
    let (list, state) = next_notify(&mut h.sent).await;
    assert!(state.starts_with("active;expires="), "{state}");
    assert_eq!(
        list.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["news", "sport"]
    );

    // Create a personal channel.
    let offer = "v=0\no=cam 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n\
                 m=video 6000 RTP/AVP 96\na=rtpmap:96 H264/90000\na=fmtp:96 packetization-mode=1\na=sendonly\n";
    let created = call(
        &h.svc,
        invite(
            "new-channel",
            "p1",
            1,
            None,
            offer,
            "Subject: Alice's Cam\n",
        ),
    )
    .await;
    assert_eq!(created.status.0, 200, "{created:?}");
    let owner_tag = to_tag(&created);
    let answer = String::from_utf8(created.body.to_vec()).unwrap();
    assert!(answer.contains("a=recvonly"), "{answer}");
    assert!(created
        .headers
        .get(&HeaderName::CONTACT)
        .unwrap()
        .contains("sip:alice-s-cam@"));
    let (list, _) = next_notify(&mut h.sent).await;
    let cam = list.iter().find(|c| c.id == "alice-s-cam").expect("listed");
    assert_eq!(cam.kind, "personal");
    assert_eq!(cam.owner.as_deref(), Some("sip:alice@127.0.0.1"));

    // Someone joins it.
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = rtp.local_addr().unwrap().port();
    let mut viewer = invite("alice-s-cam", "v1", 1, None, &sdp(port, "h264"), "");
    viewer
        .headers
        .set(HeaderName::FROM, "<sip:carol@127.0.0.1>;tag=c1");
    let joined = call(&h.svc, viewer).await;
    assert_eq!(joined.status.0, 200, "{joined:?}");

    // The owner hangs up: the channel goes, the viewer gets a BYE, subscribers a NOTIFY.
    let mut b = bye("p1", &owner_tag, 2);
    b.uri = as_server::sip::Uri::parse("sip:alice-s-cam@127.0.0.1:5060").unwrap();
    assert_eq!(call(&h.svc, b).await.status.0, 200);
    let mut saw_bye = false;
    let mut saw_notify = false;
    for _ in 0..2 {
        let r = timeout(Duration::from_secs(5), h.sent.recv())
            .await
            .unwrap()
            .unwrap();
        match r.method.as_str() {
            "BYE" => {
                assert_eq!(r.call_id().unwrap(), "v1");
                assert_eq!(r.uri.to_string(), "sip:alice@127.0.0.1:5099");
                saw_bye = true;
            }
            "NOTIFY" => {
                let list: Vec<ChannelEntry> = serde_json::from_slice(&r.body).unwrap();
                assert!(list.iter().all(|c| c.id != "alice-s-cam"));
                saw_notify = true;
            }
            m => panic!("unexpected {m}"),
        }
    }
    assert!(saw_bye && saw_notify);
    assert!(h.svc.get_channel("alice-s-cam").await.unwrap().is_none());
    assert!(h.svc.sessions().is_empty());

    // Unsubscribe: terminated NOTIFY.
    let mut unsub = subscribe("s1", 0);
    unsub.headers.set(
        HeaderName::TO,
        format!("<sip:channels@127.0.0.1>;tag={}", to_tag(&ok)),
    );
    unsub.headers.set(HeaderName::CSEQ, "2 SUBSCRIBE");
    assert_eq!(call(&h.svc, unsub).await.status.0, 200);
    let (_, state) = next_notify(&mut h.sent).await;
    assert_eq!(state, "terminated;reason=timeout");
}

#[tokio::test]
async fn api_created_channel_is_notified_and_bad_event_refused() {
    let mut h = harness(100).await;
    let mut bad = subscribe("e1", 600);
    bad.headers.set(HeaderName::EVENT, "presence");
    let r = call(&h.svc, bad).await;
    assert_eq!(r.status.0, 489);
    assert_eq!(call(&h.svc, subscribe("e2", 600)).await.status.0, 200);
    let _ = next_notify(&mut h.sent).await;
    let (entry, ingest) = h
        .svc
        .create_channel(NewChannel {
            id: Some("movies".into()),
            name: "Movies".into(),
            kind: "producer".into(),
            owner: None,
            test_pattern: false,
        })
        .await
        .unwrap();
    assert_eq!(entry.id, "movies");
    assert!(ingest.rtp_addr.ip().is_loopback());
    let (list, _) = next_notify(&mut h.sent).await;
    assert!(list.iter().any(|c| c.id == "movies"));
    h.svc.delete_channel("movies").await.unwrap();
    let (list, _) = next_notify(&mut h.sent).await;
    assert!(!list.iter().any(|c| c.id == "movies"));
}

#[tokio::test]
async fn register_and_options() {
    let h = harness(100).await;
    let reg = parse(
        "REGISTER sip:127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKreg1\n\
         Max-Forwards: 70\nFrom: <sip:alice@127.0.0.1>;tag=r1\nTo: <sip:alice@127.0.0.1>\n\
         Call-ID: reg1\nCSeq: 1 REGISTER\nContact: <sip:alice@127.0.0.1:5099>\nExpires: 300\n\
         Content-Length: 0\n\n",
    );
    let r = call(&h.svc, reg).await;
    assert_eq!(r.status.0, 200);
    assert_eq!(
        r.headers.get(&HeaderName::CONTACT),
        Some("<sip:alice@127.0.0.1:5099>;expires=300")
    );
    let opt = parse(
        "OPTIONS sip:127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKopt\n\
         Max-Forwards: 70\nFrom: <sip:lb@127.0.0.1>;tag=o1\nTo: <sip:127.0.0.1>\n\
         Call-ID: opt1\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n",
    );
    let r = call(&h.svc, opt).await;
    assert_eq!(r.status.0, 200);
    assert!(r
        .headers
        .get(&HeaderName::ALLOW)
        .unwrap()
        .contains("SUBSCRIBE"));
    assert!(r
        .headers
        .get(&HeaderName::ACCEPT)
        .unwrap()
        .contains("application/sdp"));
    assert!(r.headers.contains(&HeaderName::SUPPORTED));
    assert_eq!(
        r.headers.get(&HeaderName::ALLOW_EVENTS),
        Some("iptv-channels, iptv-poll")
    );
}

/// One HTTP/1.1 request over a fresh connection; returns (status, body).
async fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    common::http_exchange(addr, &req).await
}

#[tokio::test]
async fn operator_api() {
    let h = harness(100).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = as_server::api::router(h.svc.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let (st, body) = http(addr, "GET", "/healthz", None).await;
    assert_eq!((st, body.trim()), (200, "ok"));

    let (st, body) = http(addr, "GET", "/api/channels", None).await;
    assert_eq!(st, 200);
    let list: Vec<ChannelEntry> = serde_json::from_str(body.trim()).unwrap_or_else(|_| {
        // chunked transfer: take the JSON between the chunk size lines
        let start = body.find('[').unwrap();
        let end = body.rfind(']').unwrap();
        serde_json::from_str(&body[start..=end]).unwrap()
    });
    assert_eq!(list.len(), 2);

    let (st, body) = http(
        addr,
        "POST",
        "/api/channels",
        Some(r#"{"name":"Cooking Show","kind":"producer"}"#),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    assert!(body.contains(r#""id":"cooking-show""#), "{body}");
    assert!(body.contains(r#""rtp":"127.0.0.1:"#), "{body}");

    let (st, _) = http(
        addr,
        "POST",
        "/api/channels",
        Some(r#"{"id":"cooking-show","name":"x"}"#),
    )
    .await;
    assert_eq!(st, 409);
    let (st, body) = http(
        addr,
        "POST",
        "/api/channels",
        Some(r#"{"id":"Bad Id","name":"x"}"#),
    )
    .await;
    assert_eq!(st, 400);
    assert!(body.contains("error"), "{body}");
    let (st, _) = http(addr, "POST", "/api/channels", Some("not json")).await;
    assert_eq!(st, 400);

    let (st, body) = http(addr, "GET", "/api/channels/cooking-show", None).await;
    assert_eq!(st, 200);
    assert!(body.contains("Cooking Show"));
    let (st, _) = http(addr, "DELETE", "/api/channels/cooking-show", None).await;
    assert_eq!(st, 204);
    let (st, body) = http(addr, "GET", "/api/channels/cooking-show", None).await;
    assert_eq!(st, 404);
    assert!(body.contains("error"));
    let (st, _) = http(addr, "DELETE", "/api/channels/cooking-show", None).await;
    assert_eq!(st, 404);

    let (st, body) = http(addr, "GET", "/api/sessions", None).await;
    assert_eq!((st, body.contains('[')), (200, true));
    let (st, body) = http(addr, "GET", "/metrics", None).await;
    assert_eq!(st, 200);
    assert!(body.contains("as_sessions_active 0"), "{body}");
    assert!(body.contains("relay_packets_in_total"), "{body}");
}

#[tokio::test]
async fn vanished_viewer_session_is_reaped() {
    let relay = RelayConfig {
        viewer_timeout: Some(Duration::from_millis(500)),
        ..RelayConfig::default()
    };
    let mut h = harness_with(100, relay).await;
    // The service follows the relay's events and ticks (as `App` wires it).
    let watcher = tokio::spawn({
        let svc = h.svc.clone();
        let events = h.relay.events();
        async move { svc.run_relay_events(events).await }
    });
    let ticker = tokio::spawn({
        let svc = h.svc.clone();
        async move {
            loop {
                svc.tick().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = rtp.local_addr().unwrap().port();
    let ok = call(
        &h.svc,
        invite("news", "gone", 1, None, &sdp(port, "h264"), ""),
    )
    .await;
    assert_eq!(ok.status.0, 200);
    let first = recv_rtp(&rtp).await.unwrap();
    let (_, ssrc) = rtp_seq(&first);
    // One RTCP RR about the stream to the relay's RTCP port (the `a=rtcp` of the answer)...
    let answer = String::from_utf8(ok.body.to_vec()).unwrap();
    let rtcp_port: u16 = answer
        .lines()
        .find_map(|l| l.strip_prefix("a=rtcp:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .expect("a=rtcp in the answer");
    let mut rr = vec![0x81, 201, 0, 7, 0, 0, 0, 42];
    rr.extend_from_slice(&ssrc.to_be_bytes());
    rr.extend_from_slice(&[0; 20]);
    rtp.send_to(&rr, ("127.0.0.1", rtcp_port)).await.unwrap();
    // ...then the viewer vanishes without BYE: the relay drops it after its RTCP timeout.
    drop(rtp);
    assert_eq!(h.svc.sessions().len(), 1);
    // No polling: the relay's ViewerDropped event starts the session's grace (the UE may
    // still send its BYE); after it the session ends and the UE gets a BYE.
    let bye = timeout(Duration::from_secs(5), h.sent.recv())
        .await
        .expect("a BYE once the relay dropped the viewer")
        .unwrap();
    assert_eq!(bye.method.as_str(), "BYE");
    assert_eq!(bye.call_id().unwrap(), "gone");
    assert!(h.svc.sessions().is_empty());
    assert!(h.store.list_sessions(true).await.unwrap().is_empty());
    // The stats sweep (the fallback after a lag) finds nothing left to do.
    assert_eq!(h.svc.reap_dropped_viewers().await, 0);
    watcher.abort();
    ticker.abort();
}

/// The sessions and subscriptions are `sip::dialog` dialogs: in-dialog requests are checked
/// (RFC 3261 12.2.2: a lower CSeq gets 500 and changes nothing), the AS's own requests count
/// their CSeq up, and carry the dialog's tags.
#[tokio::test]
async fn dialogs_check_cseq_order() {
    let mut h = harness(100).await;
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = rtp.local_addr().unwrap().port();
    let ok = call(
        &h.svc,
        invite("news", "q1", 5, None, &sdp(port, "h264"), ""),
    )
    .await;
    assert_eq!(ok.status.0, 200);
    let tag = to_tag(&ok);
    // A re-INVITE that repeats the INVITE's CSeq: out of order, the session stays on news.
    let stale = call(
        &h.svc,
        invite("sport", "q1", 5, Some(&tag), &sdp(port, "h264"), ""),
    )
    .await;
    assert_eq!(stale.status.0, 500, "{stale:?}");
    assert_eq!(h.svc.sessions()[0].channel, "news");
    // A BYE with a lower CSeq: 500, the session stays.
    assert_eq!(call(&h.svc, bye("q1", &tag, 4)).await.status.0, 500);
    assert_eq!(h.svc.sessions().len(), 1);
    // A BYE with a wrong tag: 481.
    assert_eq!(call(&h.svc, bye("q1", "not-ours", 9)).await.status.0, 481);
    assert_eq!(call(&h.svc, bye("q1", &tag, 6)).await.status.0, 200);
    assert!(h.svc.sessions().is_empty());

    // Subscription: NOTIFYs count CSeq up from one dialog; a stale refresh gets 500.
    let sub = call(&h.svc, subscribe("q2", 600)).await;
    assert_eq!(sub.status.0, 200);
    let stag = to_tag(&sub);
    let first = timeout(Duration::from_secs(5), h.sent.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.method.as_str(), "NOTIFY");
    assert_eq!(first.from().unwrap().tag(), Some(stag.as_str()));
    assert_eq!(first.to().unwrap().tag(), Some("bob1"));
    assert_eq!(first.uri.to_string(), "sip:bob@127.0.0.1:5098");
    let mut refresh = subscribe("q2", 600);
    refresh.headers.set(
        HeaderName::TO,
        format!("<sip:channels@127.0.0.1>;tag={stag}"),
    );
    assert_eq!(call(&h.svc, refresh.clone()).await.status.0, 500);
    refresh.headers.set(HeaderName::CSEQ, "2 SUBSCRIBE");
    assert_eq!(call(&h.svc, refresh).await.status.0, 200);
    let second = timeout(Duration::from_secs(5), h.sent.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        second.cseq().unwrap().seq,
        first.cseq().unwrap().seq + 1,
        "NOTIFYs of one dialog count CSeq up"
    );
}

fn ack(call_id: &str, to_tag: &str, cseq: u32) -> Request {
    parse(&format!(
        "ACK sip:news@127.0.0.1:5060 SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKack{call_id}{cseq}\n\
         Max-Forwards: 70\n\
         From: <sip:alice@127.0.0.1>;tag=ue1\n\
         To: <sip:news@127.0.0.1>;tag={to_tag}\n\
         Call-ID: {call_id}\n\
         CSeq: {cseq} ACK\n\
         Content-Length: 0\n\n"
    ))
}

/// Hands a request that gets no response (ACK, CANCEL) to the service.
async fn deliver(svc: &Service, req: Request) {
    let src: SocketAddr = UE.parse().unwrap();
    svc.handle(TuRequest::new(req, src, Transport::Udp, |r| {
        panic!("no response expected, got {r:?}")
    }))
    .await;
}

/// RFC 3261 13.3.1.4: a 2xx never ACKed (the endpoint's `AckTimeout`) ends the session: the
/// relay drops the viewer, the session row ends, the slot is freed, the UE gets a BYE. A
/// session whose 2xx was ACKed is left alone.
#[tokio::test]
async fn unacknowledged_2xx_ends_the_session() {
    use as_server::driver::sip::EndpointEvent;
    let mut h = harness(1).await;
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = rtp.local_addr().unwrap().port();
    let inv = invite("news", "na1", 1, None, &sdp(port, "h264"), "");
    let ok = call(&h.svc, inv.clone()).await;
    assert_eq!(ok.status.0, 200);
    assert_eq!(h.relay.stats().await.unwrap().viewers.len(), 1);
    assert_eq!(h.store.list_sessions(true).await.unwrap().len(), 1);

    h.svc
        .on_endpoint_event(EndpointEvent::AckTimeout { invite: inv })
        .await;
    assert!(h.svc.sessions().is_empty(), "the session ended");
    assert!(
        h.relay.stats().await.unwrap().viewers.is_empty(),
        "the relay dropped the viewer"
    );
    assert!(
        h.store.list_sessions(true).await.unwrap().is_empty(),
        "the session row ended"
    );
    let bye = timeout(Duration::from_secs(5), h.sent.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bye.method.as_str(), "BYE");
    assert_eq!(bye.call_id().unwrap(), "na1");
    assert_eq!(bye.from().unwrap().tag(), Some(to_tag(&ok).as_str()));

    // The slot is free again (max_sessions = 1): the next join works; once ACKed, a stray
    // AckTimeout for its INVITE changes nothing.
    let inv = invite("news", "na2", 1, None, &sdp(port, "h264"), "");
    let ok = call(&h.svc, inv.clone()).await;
    assert_eq!(ok.status.0, 200, "{ok:?}");
    deliver(&h.svc, ack("na2", &to_tag(&ok), 1)).await;
    assert!(h.svc.sessions()[0].confirmed);
    assert!(!h.svc.ack_timeout(&inv).await);
    assert_eq!(h.svc.sessions().len(), 1);
}

fn cancel_of(invite: &Request) -> Request {
    let mut c = invite.clone();
    c.method = as_server::sip::Method::CANCEL;
    let seq = invite.cseq().unwrap().seq;
    c.headers.set(HeaderName::CSEQ, format!("{seq} CANCEL"));
    c.headers.remove(&HeaderName::CONTENT_TYPE);
    c.body = bytes::Bytes::new();
    c
}

async fn nothing_left(h: &Harness) {
    assert!(h.svc.sessions().is_empty(), "no session");
    assert!(
        h.relay.stats().await.unwrap().viewers.is_empty(),
        "no viewer on the relay"
    );
    assert!(
        h.store.list_sessions(true).await.unwrap().is_empty(),
        "no active session row"
    );
}

/// RFC 3261 9.2: a CANCEL the layer matched (it answered the INVITE 487) leaves nothing of
/// the join, whether it reaches the service before the INVITE's task, while the join is in
/// progress, or after the session was committed (the 200 lost the race). No BYE is sent: the
/// UE got 487 and has no dialog.
#[tokio::test]
async fn cancel_leaves_no_viewer_and_no_session() {
    let mut h = harness(1).await;
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = rtp.local_addr().unwrap().port();

    // CANCEL handled first.
    let inv = invite("news", "cx1", 1, None, &sdp(port, "h264"), "");
    deliver(&h.svc, cancel_of(&inv)).await;
    assert_eq!(call(&h.svc, inv).await.status.0, 487);
    nothing_left(&h).await;

    // CANCEL while the join awaits the store and the relay.
    let inv = invite("news", "cx2", 1, None, &sdp(port, "h264"), "");
    let svc = h.svc.clone();
    let pending = tokio::spawn({
        let inv = inv.clone();
        async move { call(&svc, inv).await }
    });
    tokio::task::yield_now().await;
    deliver(&h.svc, cancel_of(&inv)).await;
    let r = pending.await.unwrap();
    assert!(
        matches!(r.status.0, 487 | 200),
        "487, or a 200 the layer drops: {r:?}"
    );
    nothing_left(&h).await;

    // CANCEL after the session was committed (its 200 never left: the layer sent 487).
    let inv = invite("news", "cx3", 1, None, &sdp(port, "h264"), "");
    assert_eq!(call(&h.svc, inv.clone()).await.status.0, 200);
    assert_eq!(h.relay.stats().await.unwrap().viewers.len(), 1);
    deliver(&h.svc, cancel_of(&inv)).await;
    nothing_left(&h).await;
    assert!(h.sent.try_recv().is_err(), "no BYE after a CANCEL");

    // The slot (max_sessions = 1) was given back every time.
    let ok = call(
        &h.svc,
        invite("news", "cx4", 1, None, &sdp(port, "h264"), ""),
    )
    .await;
    assert_eq!(ok.status.0, 200, "{ok:?}");
}

/// Every request that needs an answer gets a final response from the service itself (none is
/// left to the endpoint's drop fallback): INVITE, BYE, SUBSCRIBE, NOTIFY, MESSAGE and
/// REGISTER, well-formed or missing what the method needs, in or out of a dialog, and
/// methods that only differ from ACK/CANCEL by case (RFC 3261 7.1: case-sensitive, so
/// extension methods: 405).
#[tokio::test]
async fn every_request_gets_a_final_response() {
    let h = harness(100).await;
    let req = |method: &str, uri: &str, extra: &str, body: &str| {
        let len = body.replace('\n', "\r\n").len();
        parse(&format!(
            "{method} {uri} SIP/2.0\n\
             Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKaudit{method}{len}{}\n\
             Max-Forwards: 70\n\
             Call-ID: audit-{method}\n\
             CSeq: 1 {method}\n\
             {extra}Content-Length: {len}\n\n{body}",
            extra.len()
        ))
    };
    let from = "From: <sip:alice@127.0.0.1>;tag=a1\n";
    let no_tag = "From: <sip:alice@127.0.0.1>\n";
    let to = "To: <sip:news@127.0.0.1>\n";
    let in_dialog = "To: <sip:news@127.0.0.1>;tag=unknown\n";
    let contact = "Contact: <sip:alice@127.0.0.1:5099>\n";
    let offer = sdp(4000, "h264");
    let sdp_ct = "Content-Type: application/sdp\n";
    let cases: Vec<(&str, Request, u16)> = vec![
        (
            "INVITE without From tag",
            req(
                "INVITE",
                "sip:news@127.0.0.1",
                &format!("{no_tag}{to}{contact}{sdp_ct}"),
                &offer,
            ),
            400,
        ),
        (
            "INVITE without Contact",
            req(
                "INVITE",
                "sip:news@127.0.0.1",
                &format!("{from}{to}{sdp_ct}"),
                &offer,
            ),
            400,
        ),
        (
            "INVITE to no channel",
            req(
                "INVITE",
                "sip:127.0.0.1",
                &format!("{from}{to}{contact}"),
                "",
            ),
            404,
        ),
        (
            "re-INVITE of no dialog",
            req(
                "INVITE",
                "sip:news@127.0.0.1",
                &format!("{from}{in_dialog}{contact}{sdp_ct}"),
                &offer,
            ),
            481,
        ),
        (
            "BYE out of dialog",
            req("BYE", "sip:news@127.0.0.1", &format!("{from}{to}"), ""),
            481,
        ),
        (
            "BYE of no dialog",
            req(
                "BYE",
                "sip:news@127.0.0.1",
                &format!("{from}{in_dialog}"),
                "",
            ),
            481,
        ),
        (
            "SUBSCRIBE without Event",
            req(
                "SUBSCRIBE",
                "sip:channels@127.0.0.1",
                &format!("{from}{to}{contact}"),
                "",
            ),
            489,
        ),
        (
            "SUBSCRIBE without Contact",
            req(
                "SUBSCRIBE",
                "sip:channels@127.0.0.1",
                &format!("{from}{to}Event: iptv-channels\n"),
                "",
            ),
            400,
        ),
        (
            "SUBSCRIBE refresh of no subscription",
            req(
                "SUBSCRIBE",
                "sip:channels@127.0.0.1",
                &format!("{from}{in_dialog}{contact}Event: iptv-channels\n"),
                "",
            ),
            481,
        ),
        (
            "NOTIFY",
            req(
                "NOTIFY",
                "sip:127.0.0.1",
                &format!("{from}{in_dialog}Event: x\n"),
                "",
            ),
            405,
        ),
        (
            // MESSAGE creates personalised channels from JSON (RFC 3428; 415 otherwise).
            "MESSAGE",
            req(
                "MESSAGE",
                "sip:news@127.0.0.1",
                &format!("{from}{to}Content-Type: text/plain\n"),
                "hi",
            ),
            415,
        ),
        (
            "REGISTER of Contact * without Expires: 0",
            req(
                "REGISTER",
                "sip:127.0.0.1",
                &format!("{from}{to}Contact: *\nExpires: 300\n"),
                "",
            ),
            400,
        ),
        (
            "lower-case ack",
            req("ack", "sip:news@127.0.0.1", &format!("{from}{to}"), ""),
            405,
        ),
        (
            "lower-case cancel",
            req("cancel", "sip:news@127.0.0.1", &format!("{from}{to}"), ""),
            405,
        ),
    ];
    for (what, request, want) in cases {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let src: SocketAddr = UE.parse().unwrap();
        h.svc
            .handle(TuRequest::new(request, src, Transport::Udp, move |r| {
                let _ = tx.send(r);
            }))
            .await;
        let r = rx
            .await
            .unwrap_or_else(|_| panic!("{what}: dropped without a response"));
        assert!(r.status.is_final(), "{what}: {r:?}");
        assert_eq!(r.status.0, want, "{what}: {r:?}");
    }
    assert!(h.svc.sessions().is_empty());
}
