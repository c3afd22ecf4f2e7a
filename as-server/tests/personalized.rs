//! Personalised channels at the AS (issue 7): created by SIP MESSAGE with a JSON body
//! (RFC 3428) and by `POST /api/channels`, listed in the channel-list NOTIFY and at
//! `GET /api/channels` with kind `personalized`, joined by INVITE (the relay splices the
//! sources: RTP arrives with one SSRC and consecutive sequence numbers), refused with `400`
//! and the reason for bad definitions, deleted over HTTP (its viewer gets a BYE).
//!
//! Harness as in `service_flows.rs`: a real store (in-memory SQLite), a real in-process relay
//! on loopback, requests handed to `Service::handle`, the service's own requests (NOTIFY,
//! BYE) recorded; RTP at real UDP sockets; the HTTP API served on 127.0.0.1.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use as_server::service::channel_list::ChannelEntry;
use as_server::service::{Service, ServiceConfig};
use as_server::sip::{HeaderName, Request, Response};
use media_relay::{Relay, RelayConfig};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::timeout;

mod common;
use common::{call, parse};

struct Harness {
    svc: Service,
    sent: mpsc::UnboundedReceiver<Request>,
    relay: media_relay::RelayHandle,
    http: SocketAddr,
}

async fn harness() -> Harness {
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
            dropped_viewer_grace: Duration::from_millis(100),
        },
        as_server::service::catalogue::Catalogue::new(store, "test"),
        relay.clone(),
        client,
    );
    for id in ["news", "sport1", "sport2"] {
        svc.ensure_channel(&as_server::config::ChannelSeed {
            id: id.into(),
            name: id.to_uppercase(),
            test_pattern: true,
        })
        .await
        .unwrap();
    }
    svc.set_categories(BTreeMap::from([
        (
            "sport".to_owned(),
            vec!["sport1".to_owned(), "gone".to_owned(), "sport2".to_owned()],
        ),
        ("empty".to_owned(), vec!["gone".to_owned()]),
    ]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = listener.local_addr().unwrap();
    let router = as_server::api::router(svc.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Harness {
        svc,
        sent,
        relay,
        http,
    }
}

/// A MESSAGE to `user` with `body` of `content_type`.
fn message(user: &str, call_id: &str, content_type: &str, body: &str) -> Request {
    parse(&format!(
        "MESSAGE sip:{user}@127.0.0.1 SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKmsg{call_id}\n\
         Max-Forwards: 70\n\
         From: <sip:alice@127.0.0.1>;tag=m{call_id}\n\
         To: <sip:{user}@127.0.0.1>\n\
         Call-ID: {call_id}\n\
         CSeq: 1 MESSAGE\n\
         Content-Type: {content_type}\n\
         Content-Length: {}\n\n{body}",
        body.len()
    ))
}

fn invite(user: &str, call_id: &str, rtp_port: u16) -> Request {
    let body = common::offer(rtp_port, "h264", "recvonly");
    let len = body.replace('\n', "\r\n").len();
    parse(&format!(
        "INVITE sip:{user}@127.0.0.1 SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK{call_id}\n\
         Max-Forwards: 70\n\
         From: <sip:carol@127.0.0.1>;tag=c1\n\
         To: <sip:{user}@127.0.0.1>\n\
         Call-ID: {call_id}\n\
         CSeq: 1 INVITE\n\
         Contact: <sip:carol@127.0.0.1:5099>\n\
         Content-Type: application/sdp\n\
         Content-Length: {len}\n\n{body}"
    ))
}

fn subscribe() -> Request {
    parse(
        "SUBSCRIBE sip:channels@127.0.0.1 SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKsubp\n\
         Max-Forwards: 70\n\
         From: <sip:bob@127.0.0.1>;tag=bob1\n\
         To: <sip:channels@127.0.0.1>\n\
         Call-ID: subp\n\
         CSeq: 1 SUBSCRIBE\n\
         Contact: <sip:bob@127.0.0.1:5098>\n\
         Event: iptv-channels\n\
         Expires: 600\n\
         Content-Length: 0\n\n",
    )
}

/// The next request the service sent with method `method` (others are skipped), 5 s at most.
async fn next_sent(rx: &mut mpsc::UnboundedReceiver<Request>, method: &str) -> Request {
    loop {
        let r = timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {method} sent"))
            .unwrap();
        if r.method.as_str() == method {
            return r;
        }
    }
}

async fn next_list(rx: &mut mpsc::UnboundedReceiver<Request>) -> Vec<ChannelEntry> {
    let n = next_sent(rx, "NOTIFY").await;
    serde_json::from_slice(&n.body).unwrap()
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
    (st, b.get(start..end).unwrap_or_default().to_owned())
}

fn assert_400(r: &Response, reason: &str) {
    assert_eq!(r.status.0, 400, "{r:?}");
    assert!(
        r.reason.starts_with(reason),
        "reason {:?}, want {reason:?}",
        r.reason
    );
}

#[tokio::test]
async fn message_creates_a_listed_joinable_personalised_channel() {
    let mut h = harness().await;
    assert_eq!(call(&h.svc, subscribe()).await.status.0, 200);
    let first = next_list(&mut h.sent).await;
    assert_eq!(first.len(), 3);

    // Create by MESSAGE.
    let body = r#"{"name":"My mix","schedule":[{"channel":"news","seconds":1},{"channel":"sport1","seconds":1},{"channel":"sport2","seconds":1}]}"#;
    let ok = call(
        &h.svc,
        message("new-channel", "m1", "application/json", body),
    )
    .await;
    assert_eq!(ok.status.0, 200, "{ok:?}");
    assert!(ok.body.is_empty(), "RFC 3428 section 7: no body in a 2xx");
    let contact = ok.headers.get(&HeaderName::CONTACT).unwrap();
    assert!(contact.contains("sip:my-mix@127.0.0.1:5060"), "{contact}");
    assert!(ok.to().unwrap().tag().is_some());

    // Listed: NOTIFY and HTTP.
    let list = next_list(&mut h.sent).await;
    let mix = list.iter().find(|c| c.id == "my-mix").expect("in NOTIFY");
    assert_eq!(mix.kind, "personalized");
    assert_eq!(mix.name, "My mix");
    assert_eq!(mix.owner.as_deref(), Some("sip:alice@127.0.0.1"));
    let (st, body) = http(h.http, "GET", "/api/channels", None).await;
    assert_eq!(st, 200);
    let listed: Vec<ChannelEntry> = serde_json::from_str(&body).unwrap();
    assert!(listed
        .iter()
        .any(|c| c.id == "my-mix" && c.kind == "personalized"));

    // Joined by INVITE: RTP with one SSRC and consecutive sequence numbers.
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = rtp.local_addr().unwrap().port();
    let joined = call(&h.svc, invite("my-mix", "v1", port)).await;
    assert_eq!(joined.status.0, 200, "{joined:?}");
    let mut buf = vec![0u8; 2048];
    let mut last: Option<(u16, u32)> = None;
    let mut packets = 0;
    while packets < 75 {
        let n = timeout(Duration::from_secs(3), rtp.recv(&mut buf))
            .await
            .expect("RTP of the personalised channel")
            .unwrap();
        let p = &buf[..n];
        let seq = u16::from_be_bytes([p[2], p[3]]);
        let ssrc = u32::from_be_bytes([p[8], p[9], p[10], p[11]]);
        if let Some((s, x)) = last {
            assert_eq!(ssrc, x, "one SSRC");
            assert_eq!(seq, s.wrapping_add(1), "consecutive sequence numbers");
        }
        last = Some((seq, ssrc));
        packets += 1;
    }
    let stats = h.relay.personalized_stats().await.unwrap();
    let st = stats
        .iter()
        .find(|s| s.channel.as_str() == "my-mix")
        .unwrap();
    assert!(st.switches >= 1 && st.forwarded > 0, "{st:?}");
    let (code, body) = http(h.http, "GET", "/api/channels/my-mix/personalized", None).await;
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status[0]["relay"], "relay-0");
    assert_eq!(status[0]["channel"], "my-mix");
    assert!(status[0]["switches"].as_u64().unwrap() >= 1, "{body}");
    let (code, _) = http(h.http, "GET", "/api/channels/news/personalized", None).await;
    assert_eq!(code, 404, "not a personalised channel");

    // A category rule: the configured channels that exist, in order.
    let ok = call(
        &h.svc,
        message(
            "new-channel",
            "m2",
            "application/json",
            r#"{"name":"All sport","rule":{"category":"sport","seconds":2}}"#,
        ),
    )
    .await;
    assert_eq!(ok.status.0, 200, "{ok:?}");
    assert!(ok
        .headers
        .get(&HeaderName::CONTACT)
        .unwrap()
        .contains("sip:all-sport@"));
    let (st, body) = http(h.http, "GET", "/api/channels/all-sport", None).await;
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("\"personalized\""), "{body}");

    // Deleting the mix ends its viewer's session with a BYE.
    let (st, _) = http(h.http, "DELETE", "/api/channels/my-mix", None).await;
    assert_eq!(st, 204);
    let bye = next_sent(&mut h.sent, "BYE").await;
    assert_eq!(bye.call_id().unwrap(), "v1");
    assert!(h
        .relay
        .personalized_stats()
        .await
        .unwrap()
        .iter()
        .all(|s| s.channel.as_str() != "my-mix"));
}

#[tokio::test]
async fn bad_definitions_are_refused_with_reasons() {
    let h = harness().await;
    let json = "application/json";
    let cases: &[(&str, &str, &str, u16, &str)] = &[
        ("new-channel", json, "{not json", 400, "Bad JSON"),
        (
            "new-channel",
            json,
            r#"{"name":"x","schedule":[]}"#,
            400,
            "Empty schedule",
        ),
        (
            "new-channel",
            json,
            r#"{"name":"x","schedule":[{"channel":"nope","seconds":2}]}"#,
            400,
            "Unknown channel nope",
        ),
        (
            "new-channel",
            json,
            r#"{"name":"x","schedule":[{"channel":"news","seconds":0.1}]}"#,
            400,
            "Bad slot length for news",
        ),
        ("new-channel", json, r#"{"name":"x"}"#, 400, "Need one of"),
        (
            "new-channel",
            json,
            r#"{"name":"x","rule":{"category":"film"}}"#,
            400,
            "Unknown category film",
        ),
        (
            "new-channel",
            json,
            r#"{"name":"x","rule":{"category":"empty"}}"#,
            400,
            "No channels in category empty",
        ),
        (
            "new-channel",
            json,
            r#"{"name":"  ","schedule":[{"channel":"news","seconds":2}]}"#,
            400,
            "Name must be",
        ),
        ("new-channel", "text/plain", "hello", 415, "Unsupported"),
        (
            "news",
            json,
            r#"{"name":"x","schedule":[{"channel":"news","seconds":2}]}"#,
            404,
            "Not Found",
        ),
    ];
    for (i, (user, ct, body, status, reason)) in cases.iter().enumerate() {
        let r = call(&h.svc, message(user, &format!("bad{i}"), ct, body)).await;
        if *status == 400 {
            assert_400(&r, reason);
        } else {
            assert_eq!(r.status.0, *status, "{body}: {r:?}");
            assert!(r.reason.starts_with(reason), "{r:?}");
        }
        if *status == 415 {
            assert_eq!(r.headers.get(&HeaderName::ACCEPT), Some(json));
        }
    }
    // A personalised channel is not a source.
    let ok = call(
        &h.svc,
        message(
            "new-channel",
            "okmix",
            json,
            r#"{"id":"mix1","name":"Mix","schedule":[{"channel":"news","seconds":2}]}"#,
        ),
    )
    .await;
    assert_eq!(ok.status.0, 200, "{ok:?}");
    let r = call(
        &h.svc,
        message(
            "new-channel",
            "nested",
            json,
            r#"{"name":"Nested","schedule":[{"channel":"mix1","seconds":2}]}"#,
        ),
    )
    .await;
    assert_400(&r, "Channel mix1 cannot be a source");
    // The id is taken.
    let r = call(
        &h.svc,
        message(
            "new-channel",
            "dup",
            json,
            r#"{"id":"mix1","name":"Again","schedule":[{"channel":"news","seconds":2}]}"#,
        ),
    )
    .await;
    assert_eq!(r.status.0, 409, "{r:?}");
    // OPTIONS lists MESSAGE.
    let opts = parse(
        "OPTIONS sip:127.0.0.1 SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKoptp\n\
         Max-Forwards: 70\n\
         From: <sip:alice@127.0.0.1>;tag=o1\n\
         To: <sip:127.0.0.1>\n\
         Call-ID: optp\n\
         CSeq: 1 OPTIONS\n\
         Content-Length: 0\n\n",
    );
    common::assert_allow_lists(&call(&h.svc, opts).await, 200, "MESSAGE");
}

#[tokio::test]
async fn http_creates_and_deletes_a_personalised_channel() {
    let h = harness().await;
    let (st, body) = http(
        h.http,
        "POST",
        "/api/channels",
        Some(
            r#"{"name":"Web mix","kind":"personalized","schedule":[{"channel":"news","seconds":3},{"channel":"sport2","seconds":3}]}"#,
        ),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["id"], "web-mix");
    assert_eq!(v["uri"], "sip:web-mix@127.0.0.1");
    assert_eq!(v["channel"]["kind"], "personalized");
    assert_eq!(v["schedule"].as_array().unwrap().len(), 2);
    assert!(h
        .relay
        .personalized_stats()
        .await
        .unwrap()
        .iter()
        .any(|s| s.channel.as_str() == "web-mix"));

    // A rule over HTTP, and refusals with the reason.
    let (st, body) = http(
        h.http,
        "POST",
        "/api/channels",
        Some(r#"{"id":"sports","name":"Sports","rule":{"category":"sport"}}"#),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["schedule"][1]["channel"],
        "sport2"
    );
    for (req, want) in [
        (
            r#"{"name":"x","kind":"personalized","schedule":[{"channel":"nope","seconds":3}]}"#,
            "Unknown channel nope",
        ),
        (r#"{"name":"x","kind":"personalized"}"#, "Need one of"),
        (
            r#"{"name":"x","kind":"personalized","schedule":[]}"#,
            "Empty schedule",
        ),
    ] {
        let (st, body) = http(h.http, "POST", "/api/channels", Some(req)).await;
        assert_eq!(st, 400, "{body}");
        assert!(body.contains(want), "{body}");
    }

    let (st, _) = http(h.http, "DELETE", "/api/channels/web-mix", None).await;
    assert_eq!(st, 204);
    let (st, _) = http(h.http, "GET", "/api/channels/web-mix", None).await;
    assert_eq!(st, 404);
    let left = h.relay.personalized_stats().await.unwrap();
    assert_eq!(
        left.iter().map(|s| s.channel.as_str()).collect::<Vec<_>>(),
        ["sports"]
    );
    assert!(h.svc.get_channel("news").await.unwrap().is_some());
}

/// RTP packets at `rtp` until `n` arrived (3 s each at most): (sequence, SSRC) each.
async fn rtp_packets(rtp: &UdpSocket, n: usize) -> Vec<(u16, u32)> {
    let mut buf = vec![0u8; 2048];
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        let len = timeout(Duration::from_secs(3), rtp.recv(&mut buf))
            .await
            .expect("RTP of the personalised channel")
            .unwrap();
        let p = &buf[..len];
        v.push((
            u16::from_be_bytes([p[2], p[3]]),
            u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
        ));
    }
    v
}

fn assert_one_stream(pkts: &[(u16, u32)]) {
    for w in pkts.windows(2) {
        assert_eq!(w[1].1, w[0].1, "one SSRC");
        assert_eq!(
            w[1].0,
            w[0].0.wrapping_add(1),
            "consecutive sequence numbers"
        );
    }
}

/// The schedule in force of personalised channel `id`, as stored.
async fn stored_sources(svc: &Service, id: &str) -> Vec<String> {
    let text = svc
        .catalogue()
        .store()
        .channel_definition(id)
        .await
        .unwrap()
        .expect("a personalised channel keeps its definition");
    let st = as_server::service::personalized::Stored::from_json(&text).unwrap();
    st.schedule.into_iter().map(|s| s.channel).collect()
}

/// Deleting a source channel takes its slots out of every personalised channel that uses
/// it, at the relay (the viewer keeps one continuous stream, now of the other source) and in
/// the store; the personalised channel left without a slot is deleted like any channel: its
/// viewer gets a BYE, it leaves the list and the relay.
#[tokio::test]
async fn deleting_a_source_removes_its_slots_and_the_last_one_the_channel() {
    let mut h = harness().await;
    for body in [
        r#"{"id":"mix","name":"Mix","schedule":[{"channel":"news","seconds":2.5},{"channel":"sport1","seconds":2.5},{"channel":"news","seconds":2.5}]}"#,
        r#"{"id":"only","name":"Only news","schedule":[{"channel":"news","seconds":2}]}"#,
    ] {
        let (st, body) = http(h.http, "POST", "/api/channels", Some(body)).await;
        assert_eq!(st, 201, "{body}");
    }
    assert_eq!(
        stored_sources(&h.svc, "mix").await,
        ["news", "sport1", "news"]
    );
    let rtp_mix = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp_only = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for (user, call_id, sock) in [("mix", "v1", &rtp_mix), ("only", "v2", &rtp_only)] {
        let port = sock.local_addr().unwrap().port();
        let ok = call(&h.svc, invite(user, call_id, port)).await;
        assert_eq!(ok.status.0, 200, "{ok:?}");
    }
    assert_one_stream(&rtp_packets(&rtp_mix, 20).await);

    // news goes: "only" has no slot left (deleted, BYE), "mix" keeps sport1.
    let (st, _) = http(h.http, "DELETE", "/api/channels/news", None).await;
    assert_eq!(st, 204);
    let bye = next_sent(&mut h.sent, "BYE").await;
    assert_eq!(bye.call_id().unwrap(), "v2");
    let (st, _) = http(h.http, "GET", "/api/channels/only", None).await;
    assert_eq!(st, 404);
    let (st, body) = http(h.http, "GET", "/api/channels/mix", None).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(stored_sources(&h.svc, "mix").await, ["sport1"]);
    let stats = h.relay.personalized_stats().await.unwrap();
    assert_eq!(
        stats.iter().map(|s| s.channel.as_str()).collect::<Vec<_>>(),
        ["mix"]
    );
    // The viewer of mix goes on in one stream, from sport1 alone.
    let after = rtp_packets(&rtp_mix, 100).await;
    assert_one_stream(&after);
    let st = h.relay.personalized_stats().await.unwrap();
    assert_eq!(
        st[0].current.as_ref().map(|c| c.as_str()),
        Some("sport1"),
        "{st:?}"
    );
    assert!(st[0].wanted.is_none(), "{st:?}");

    // sport1 goes too: mix is left without a slot and is deleted.
    let (st, _) = http(h.http, "DELETE", "/api/channels/sport1", None).await;
    assert_eq!(st, 204);
    let bye = next_sent(&mut h.sent, "BYE").await;
    assert_eq!(bye.call_id().unwrap(), "v1");
    let (st, _) = http(h.http, "GET", "/api/channels/mix", None).await;
    assert_eq!(st, 404);
    assert!(h.relay.personalized_stats().await.unwrap().is_empty());
    let left: Vec<String> = h
        .svc
        .list_channels()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(left, ["sport2"]);
}

/// A personal channel's owner hanging up deletes a source like `DELETE` does: its slots
/// leave the personalised channels, and one left without a slot is deleted (BYE).
#[tokio::test]
async fn a_personal_source_whose_owner_hangs_up_leaves_the_personalised_channels() {
    let mut h = harness().await;
    let offer = "v=0\no=cam 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n\
                 m=video 6000 RTP/AVP 96\na=rtpmap:96 H264/90000\na=fmtp:96 packetization-mode=1\na=sendonly\n";
    let len = offer.replace('\n', "\r\n").len();
    let created = call(
        &h.svc,
        parse(&format!(
            "INVITE sip:new-channel@127.0.0.1 SIP/2.0\n\
             Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKown1\n\
             Max-Forwards: 70\n\
             From: <sip:alice@127.0.0.1>;tag=own1\n\
             To: <sip:new-channel@127.0.0.1>\n\
             Call-ID: p1\n\
             CSeq: 1 INVITE\n\
             Contact: <sip:alice@127.0.0.1:5099>\n\
             Subject: Cam\n\
             Content-Type: application/sdp\n\
             Content-Length: {len}\n\n{offer}"
        )),
    )
    .await;
    assert_eq!(created.status.0, 200, "{created:?}");
    let owner_tag = created.to().unwrap().tag().unwrap().to_owned();
    assert!(h.svc.get_channel("cam").await.unwrap().is_some());
    for body in [
        r#"{"id":"mix","name":"Mix","schedule":[{"channel":"news","seconds":1},{"channel":"cam","seconds":1}]}"#,
        r#"{"id":"camonly","name":"Cam only","schedule":[{"channel":"cam","seconds":2}]}"#,
    ] {
        let (st, body) = http(h.http, "POST", "/api/channels", Some(body)).await;
        assert_eq!(st, 201, "{body}");
    }
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = rtp.local_addr().unwrap().port();
    let ok = call(&h.svc, invite("camonly", "v3", port)).await;
    assert_eq!(ok.status.0, 200, "{ok:?}");

    let bye = parse(&format!(
        "BYE sip:cam@127.0.0.1:5060 SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKown2\n\
         Max-Forwards: 70\n\
         From: <sip:alice@127.0.0.1>;tag=own1\n\
         To: <sip:new-channel@127.0.0.1>;tag={owner_tag}\n\
         Call-ID: p1\n\
         CSeq: 2 BYE\n\
         Content-Length: 0\n\n"
    ));
    assert_eq!(call(&h.svc, bye).await.status.0, 200);
    let bye = next_sent(&mut h.sent, "BYE").await;
    assert_eq!(bye.call_id().unwrap(), "v3");
    assert!(h.svc.get_channel("cam").await.unwrap().is_none());
    assert!(h.svc.get_channel("camonly").await.unwrap().is_none());
    assert!(h.svc.get_channel("mix").await.unwrap().is_some());
    assert_eq!(stored_sources(&h.svc, "mix").await, ["news"]);
    let stats = h.relay.personalized_stats().await.unwrap();
    assert_eq!(
        stats.iter().map(|s| s.channel.as_str()).collect::<Vec<_>>(),
        ["mix"]
    );
}
