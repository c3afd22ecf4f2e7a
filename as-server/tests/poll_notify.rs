//! The `iptv-poll` event package: the owner of a channel SUBSCRIBEs to its live vote tallies
//! and gets NOTIFYs with the tally JSON when it changes (a real in-process relay; a viewer on
//! it votes over RTCP APP `VOTE` from a UDP socket on 127.0.0.1). Someone else is refused on an
//! owned channel, an unknown channel is 404, `Expires: 0` ends the subscription with a
//! terminated NOTIFY. Waits are bounded; no timing is asserted.

use std::time::Duration;

use as_server::service::{NewChannel, Service, ServiceConfig};
use as_server::sip::{HeaderName, Request, Response};
use media_relay::feedback::aggregate::write_vote;
use media_relay::{AddViewer, ChannelId, Relay, RelayConfig, ViewerId};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::timeout;

mod common;
use common::{call, parse};

const POLL: u32 = 3;

async fn service() -> (Service, mpsc::UnboundedReceiver<Request>) {
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
    (svc, sent)
}

fn subscribe(channel: &str, from: &str, call_id: &str, expires: u32) -> Request {
    parse(&format!(
        "SUBSCRIBE sip:{channel}@127.0.0.1 SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKpoll{call_id}{expires}\n\
         Max-Forwards: 70\n\
         From: <sip:{from}@127.0.0.1>;tag={from}1\n\
         To: <sip:{channel}@127.0.0.1>\n\
         Call-ID: {call_id}\n\
         CSeq: 1 SUBSCRIBE\n\
         Contact: <sip:{from}@127.0.0.1:5098>\n\
         Event: iptv-poll\n\
         Accept: application/json\n\
         Expires: {expires}\n\
         Content-Length: 0\n\n"
    ))
}

fn to_tag(r: &Response) -> String {
    r.to().unwrap().tag().unwrap().to_owned()
}

/// The next NOTIFY: (body JSON, Subscription-State).
async fn next_notify(rx: &mut mpsc::UnboundedReceiver<Request>) -> (serde_json::Value, String) {
    loop {
        let n = timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a NOTIFY within 10 s")
            .unwrap();
        if n.method.as_str() != "NOTIFY" {
            continue;
        }
        assert_eq!(n.headers.get(&HeaderName::EVENT), Some("iptv-poll"));
        assert_eq!(
            n.headers.get(&HeaderName::CONTENT_TYPE),
            Some("application/json")
        );
        let state = n
            .headers
            .get(&HeaderName::SUBSCRIPTION_STATE)
            .unwrap()
            .to_owned();
        return (serde_json::from_slice(&n.body).unwrap(), state);
    }
}

/// RR about `about` (RFC 3550 section 6.4.2, one report block, no loss) + APP `VOTE`.
fn vote(ssrc: u32, about: u32, option: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(52);
    v.extend_from_slice(&[0x81, 201, 0, 7]);
    v.extend_from_slice(&ssrc.to_be_bytes());
    v.extend_from_slice(&about.to_be_bytes());
    v.extend_from_slice(&[0; 20]);
    write_vote(&mut v, ssrc, POLL, option).unwrap();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_gets_live_tallies_by_notify() {
    let (svc, mut sent) = service().await;

    // Refusals: unknown channel, someone else's channel, a bad Accept, an unknown event.
    assert_eq!(
        call(&svc, subscribe("nope", "bob", "p0", 600))
            .await
            .status
            .0,
        404
    );
    svc.create_channel(NewChannel {
        id: Some("alice-cam".into()),
        name: "Alice".into(),
        kind: "personal".into(),
        owner: Some("sip:alice@127.0.0.1".into()),
        test_pattern: true,
    })
    .await
    .unwrap();
    assert_eq!(
        call(&svc, subscribe("alice-cam", "bob", "p1", 600))
            .await
            .status
            .0,
        403
    );
    let mut bad = subscribe("quiz", "bob", "p2", 600);
    bad.headers.set(HeaderName::ACCEPT, "text/plain");
    assert_eq!(call(&svc, bad).await.status.0, 406);
    let mut other = subscribe("quiz", "bob", "p3", 600);
    other.headers.set(HeaderName::EVENT, "presence");
    let r = call(&svc, other).await;
    assert_eq!(r.status.0, 489);
    assert!(r
        .headers
        .get(&HeaderName::ALLOW_EVENTS)
        .is_some_and(|v| v.contains("iptv-poll")));

    // The owner of alice-cam may subscribe.
    let ok = call(&svc, subscribe("alice-cam", "alice", "p4", 600)).await;
    assert_eq!(ok.status.0, 200);
    let (body, state) = next_notify(&mut sent).await;
    assert!(state.starts_with("active;expires="), "{state}");
    assert_eq!(body["channel"], "alice-cam");
    let alice_tag = to_tag(&ok);

    // Anyone may follow an operator channel; the first NOTIFY has no votes.
    let ok = call(&svc, subscribe("quiz", "bob", "p5", 600)).await;
    assert_eq!(ok.status.0, 200);
    assert_eq!(ok.headers.get(&HeaderName::EXPIRES), Some("600"));
    let (body, _) = loop {
        let (b, s) = next_notify(&mut sent).await;
        if b["channel"] == "quiz" {
            break (b, s);
        }
    };
    assert_eq!(body["voters"], 0);
    let quiz_tag = to_tag(&ok);

    // Viewers on the relay vote: the tally comes by NOTIFY, each viewer once.
    let relay = svc.relays().handle(0).clone();
    let mut socks = Vec::new();
    for i in 0..5u32 {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let info = relay
            .add_viewer(AddViewer {
                viewer: ViewerId(9000 + u64::from(i)),
                channel: ChannelId::from("quiz"),
                rtp_dest: sock.local_addr().unwrap(),
                rtcp_dest: None,
                payload_type: 96,
                downstream: false,
            })
            .await
            .unwrap();
        let mut rtcp = info.relay_rtcp;
        if rtcp.ip().is_unspecified() {
            rtcp.set_ip([127, 0, 0, 1].into());
        }
        socks.push((sock, info.ssrc, rtcp));
    }
    let mut tally = serde_json::Value::Null;
    for _round in 0..20 {
        // Re-sent each round (a latest vote is idempotent): a datagram lost on a loaded
        // loopback only delays the tally. Options: 1, 1, 1, 2, 2.
        for (i, (sock, about, rtcp)) in socks.iter().enumerate() {
            let d = vote(0x700 + i as u32, *about, if i < 3 { 1 } else { 2 });
            sock.send_to(&d, rtcp).await.unwrap();
        }
        let (b, state) = next_notify(&mut sent).await;
        if b["channel"] != "quiz" {
            continue;
        }
        assert!(state.starts_with("active"), "{state}");
        tally = b;
        if tally["voters"] == 5 {
            break;
        }
    }
    assert_eq!(tally["voters"], 5, "{tally}");
    assert_eq!(tally["votes"][POLL.to_string()]["1"], 3, "{tally}");
    assert_eq!(tally["votes"][POLL.to_string()]["2"], 2, "{tally}");

    // Unsubscribe both: terminated NOTIFYs.
    for (ch, from, call_id, tag) in [
        ("quiz", "bob", "p5", &quiz_tag),
        ("alice-cam", "alice", "p4", &alice_tag),
    ] {
        let mut unsub = subscribe(ch, from, call_id, 0);
        unsub
            .headers
            .set(HeaderName::TO, format!("<sip:{ch}@127.0.0.1>;tag={tag}"));
        unsub.headers.set(HeaderName::CSEQ, "2 SUBSCRIBE");
        assert_eq!(call(&svc, unsub).await.status.0, 200);
        let mut done = false;
        for _ in 0..20 {
            let (b, state) = next_notify(&mut sent).await;
            if b["channel"] == ch && state.starts_with("terminated") {
                done = true;
                break;
            }
        }
        assert!(done, "{ch}: no terminated NOTIFY");
    }
}
