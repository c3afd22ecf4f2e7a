//! A personalised channel over sources on different relays (`[relay] count = 2`, issue 7):
//! the AS makes the relay with one source pull the other from its ingest relay (the relay
//! tree's `set_upstream`); the splicer holds that pull with no viewer at all (the source's
//! home counts one downstream copy), a viewer of the personalised channel gets one
//! continuous RTP stream that switches between both sources, and deleting the personalised
//! channel stops the pull.

use std::net::SocketAddr;
use std::time::Duration;

use as_server::config::{ChannelSeed, Config};
use as_server::service::app::App;
use as_server::sip::Request;
use media_relay::control::ChannelId;
use media_relay::RelayHandle;
use tokio::net::UdpSocket;
use tokio::time::{sleep, timeout};

mod common;
use common::{call, parse};

fn config() -> Config {
    let mut c = Config::default();
    c.sip.udp = Some("127.0.0.1:0".parse().unwrap());
    c.sip.tcp = None;
    c.sip.tls = None;
    c.http.listen = Some("127.0.0.1:0".parse().unwrap());
    c.database.url = "sqlite::memory:".into();
    c.relay.port_min = 0;
    c.relay.port_max = 0;
    c.relay.output_rtp_port = 0;
    c.relay.count = 2;
    c.channels = vec![ChannelSeed {
        id: "news".into(),
        name: "News".into(),
        test_pattern: true,
    }];
    c
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

/// A producer channel made over HTTP and fed by the test pattern at the relay that has
/// its ingest; that relay's index.
async fn producer(api: SocketAddr, relays: &[RelayHandle], id: &str) -> usize {
    let (st, body) = http(
        api,
        "POST",
        "/api/channels",
        Some(&format!(r#"{{"id":"{id}","name":"{id}"}}"#)),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    let mut at = Vec::new();
    for (i, r) in relays.iter().enumerate() {
        if r.start_test_pattern(&ChannelId::from(id)).await.is_ok() {
            at.push(i);
        }
    }
    assert_eq!(at.len(), 1, "{id} on one relay: {at:?}");
    at[0]
}

/// Copies of `channel` that relay `relay` sends to other relays.
async fn downstreams(relay: &RelayHandle, channel: &str) -> usize {
    relay
        .stats()
        .await
        .unwrap()
        .channels
        .iter()
        .find(|c| c.channel.as_str() == channel)
        .map_or(0, |c| c.downstreams)
}

/// Polls `f` every 50 ms until it is true, `secs` at most.
async fn eventually<F, Fut>(secs: u64, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..secs * 20 {
        if f().await {
            return true;
        }
        sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn sources_on_two_relays_are_spliced_through_a_pull_the_splicer_holds() {
    let app = App::start(&config()).await.unwrap();
    let api = app.http.unwrap();
    let relays = app.relays().to_vec();
    let a = producer(api, &relays, "cam-a").await;
    let b = producer(api, &relays, "cam-b").await;
    assert_ne!(a, b, "the producers are on different relays");

    let (st, body) = http(
        api,
        "POST",
        "/api/channels",
        Some(
            r#"{"id":"mix","name":"Mix","schedule":[{"channel":"cam-a","seconds":2.5},{"channel":"cam-b","seconds":2.5}]}"#,
        ),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let made = v["relays"].as_array().unwrap();
    assert_eq!(made.len(), 1, "{body}");
    let splicer = if made[0] == format!("relay-{a}") {
        a
    } else {
        b
    };
    let (home, pulled) = if splicer == a {
        (b, "cam-b")
    } else {
        (a, "cam-a")
    };
    assert_eq!(made[0], format!("relay-{splicer}"));

    // No viewer yet: the splicer alone holds one copy of the other relay's source.
    assert!(
        eventually(5, || async {
            downstreams(&relays[home], pulled).await == 1
        })
        .await,
        "{pulled} is pulled from relay-{home} for the splicer"
    );
    assert_eq!(downstreams(&relays[home], pulled).await, 1);

    // A viewer gets one stream that switches between both sources (slots longer than the
    // test pattern's 2 s GOP, so each slot has a key frame to switch at).
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = rtp.local_addr().unwrap().port();
    let ok = call(&app.service, invite("mix", "v1", port)).await;
    assert_eq!(ok.status.0, 200, "{ok:?}");
    let mut buf = vec![0u8; 2048];
    let mut last: Option<(u16, u32)> = None;
    let mut switches = 0;
    for _ in 0..2000 {
        let Ok(n) = timeout(Duration::from_secs(3), rtp.recv(&mut buf)).await else {
            for r in &relays {
                eprintln!("{:?}\n{:?}", r.stats().await, r.personalized_stats().await);
            }
            panic!("RTP of the personalised channel");
        };
        let n = n.unwrap();
        let p = &buf[..n];
        let seq = u16::from_be_bytes([p[2], p[3]]);
        let ssrc = u32::from_be_bytes([p[8], p[9], p[10], p[11]]);
        if let Some((s, x)) = last {
            assert_eq!(ssrc, x, "one SSRC");
            assert_eq!(seq, s.wrapping_add(1), "consecutive sequence numbers");
        }
        last = Some((seq, ssrc));
        let st = relays[splicer].personalized_stats().await.unwrap();
        switches = st[0].switches;
        if switches >= 2 {
            break;
        }
    }
    assert!(
        switches >= 2,
        "both sources on air in turn ({switches} switches)"
    );
    assert_eq!(
        downstreams(&relays[home], pulled).await,
        1,
        "still one copy"
    );

    // The personalised channel goes: so does the pull.
    let (st, _) = http(api, "DELETE", "/api/channels/mix", None).await;
    assert_eq!(st, 204);
    assert!(
        eventually(5, || async {
            downstreams(&relays[home], pulled).await == 0
        })
        .await,
        "the pull stops with the last personalised channel using the source"
    );
    app.shutdown().await;
}

/// The only relay splicing a personalised channel dies: the failover makes the channel again
/// on the live relay from its stored schedule, after re-homing its source (its viewers would
/// otherwise move to an empty channel).
#[tokio::test]
async fn a_personalised_channel_is_made_again_when_its_relay_dies() {
    let app = App::start(&config()).await.unwrap();
    let api = app.http.unwrap();
    let relays = app.relays().to_vec();
    let a = producer(api, &relays, "cam-a").await;
    let b = 1 - a;
    let (st, body) = http(
        api,
        "POST",
        "/api/channels",
        Some(
            r#"{"id":"mix","name":"Mix","schedule":[{"channel":"cam-a","seconds":2.5},{"channel":"news","seconds":2.5}]}"#,
        ),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    assert!(
        body.contains(&format!("\"relays\":[\"relay-{a}\"]")),
        "{body}"
    );
    assert!(relays[b].personalized_stats().await.unwrap().is_empty());

    assert!(app.stop_relay(a).await);
    assert!(
        eventually(10, || async {
            relays[b]
                .personalized_stats()
                .await
                .is_ok_and(|s| s.iter().any(|m| m.channel.as_str() == "mix"))
        })
        .await,
        "mix made again on relay-{b}"
    );
    let (st, body) = http(api, "GET", "/api/channels/mix/personalized", None).await;
    assert_eq!(st, 200, "{body}");
    assert!(body.contains(&format!("\"relay-{b}\"")), "{body}");
    // It splices there: news (a test pattern on every relay) goes on air.
    assert!(
        eventually(10, || async {
            relays[b]
                .personalized_stats()
                .await
                .is_ok_and(|s| s.iter().any(|m| m.forwarded > 0))
        })
        .await,
        "the re-made channel forwards"
    );
    app.shutdown().await;
}
