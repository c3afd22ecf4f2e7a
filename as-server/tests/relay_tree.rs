//! The relay tree in the AS (`[relay] tree = true`), end to end: the whole AS (`App::start`)
//! with three in-process relays on 127.0.0.1. The test-pattern channel runs at one relay (its
//! home); the others carry it as a pulled channel and receive nothing until they have a
//! viewer; viewers at two of them make the home send one copy to each. The home is stopped
//! abruptly: the AS re-homes the channel on a surviving relay and points the other at it, and
//! the viewers keep receiving on one SSRC with their sequence numbers continuous. Waits are
//! bounded; nothing asserts on timing (the longest gap is printed). A re-INVITE zap to a
//! channel homed at another relay stays on the viewer's relay, which pulls it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use as_server::config::{ChannelSeed, Config};
use as_server::service::app::App;
use media_relay::control::ChannelStats;
use media_relay::{rtp, AddViewer, ChannelId, RelayHandle, ViewerId};
use tokio::net::UdpSocket;
use tokio::time::sleep;

mod common;

#[expect(clippy::disallowed_methods, reason = "arrival gaps and bounded waits")]
fn now() -> Instant {
    Instant::now()
}

fn config() -> Config {
    let mut c = Config::default();
    c.sip.udp = Some("127.0.0.1:0".parse().unwrap());
    c.sip.tcp = None;
    c.sip.tls = None;
    c.http.listen = None;
    c.database.url = "sqlite::memory:".into();
    c.relay.port_min = 0;
    c.relay.port_max = 0;
    c.relay.output_rtp_port = 0;
    c.relay.count = 3;
    c.relay.tree = true;
    c.channels = vec![ChannelSeed {
        id: "news".into(),
        name: "News".into(),
        test_pattern: true,
    }];
    c
}

async fn news(h: &RelayHandle) -> Option<ChannelStats> {
    h.stats()
        .await
        .ok()?
        .channels
        .into_iter()
        .find(|c| c.channel.as_str() == "news")
}

async fn wait_for<F, Fut>(limit: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = now();
    while now().duration_since(start) < limit {
        if cond().await {
            return true;
        }
        sleep(Duration::from_millis(20)).await;
    }
    false
}

/// (arrival, SSRC, sequence) of each RTP packet a viewer socket got.
type Log = Arc<Mutex<Vec<(Instant, u32, u16)>>>;

async fn viewer() -> (SocketAddr, Log, tokio::task::JoinHandle<()>) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let log: Log = Arc::default();
    let sink = log.clone();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, _)) = sock.recv_from(&mut buf).await {
            if let Ok(i) = rtp::parse(&buf[..n]) {
                sink.lock().unwrap().push((now(), i.ssrc, i.sequence));
            }
        }
    });
    (addr, log, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_mode_pulls_from_the_home_and_rehomes_when_it_dies() {
    let app = App::start(&config()).await.unwrap();
    let relays: Vec<RelayHandle> = app.relays().to_vec();
    // Which relay is home: the one whose pattern runs (the others have the channel, idle).
    assert!(
        wait_for(Duration::from_secs(5), || async {
            news(&relays[0]).await.is_some_and(|c| c.packets_in > 0)
        })
        .await,
        "relay 0 (least loaded, lowest index) is the home"
    );
    for r in &relays[1..] {
        let c = news(r).await.expect("pulled channel declared");
        assert_eq!(c.packets_in, 0, "nobody watches: nothing flows");
    }

    // A viewer at relays 1 and 2: each pulls one copy.
    let mut logs = Vec::new();
    let mut tasks = Vec::new();
    for (k, r) in relays[1..].iter().enumerate() {
        let (addr, log, task) = viewer().await;
        r.add_viewer(AddViewer {
            viewer: ViewerId(900_000 + k as u64),
            channel: ChannelId::from("news"),
            rtp_dest: addr,
            rtcp_dest: None,
            payload_type: 96,
            downstream: false,
        })
        .await
        .unwrap();
        logs.push(log);
        tasks.push(task);
    }
    assert!(
        wait_for(Duration::from_secs(5), || async {
            logs.iter().all(|l| l.lock().unwrap().len() >= 20)
        })
        .await
    );
    assert_eq!(news(&relays[0]).await.unwrap().downstreams, 2);

    // The home dies.
    let before: Vec<usize> = logs.iter().map(|l| l.lock().unwrap().len()).collect();
    let killed = now();
    assert!(app.stop_relay(0).await);
    let healed = wait_for(Duration::from_secs(8), || async {
        logs.iter()
            .zip(&before)
            .all(|(l, &n)| l.lock().unwrap().len() >= n + 50)
    })
    .await;
    assert!(healed, "both viewers play again");
    // One survivor is the new home and feeds the other once.
    let d1 = news(&relays[1]).await.unwrap().downstreams;
    let d2 = news(&relays[2]).await.unwrap().downstreams;
    assert_eq!(d1 + d2, 1, "one copy from the new home to the other relay");
    for (k, l) in logs.iter().enumerate() {
        let p = l.lock().unwrap().clone();
        for w in p.windows(2) {
            assert_eq!(w[1].1, w[0].1, "viewer {k}: one SSRC");
            assert_eq!(
                w[1].2,
                w[0].2.wrapping_add(1),
                "viewer {k}: sequence continues"
            );
        }
        let gap = p
            .windows(2)
            .filter(|w| w[1].0 > killed)
            .map(|w| w[1].0.duration_since(w[0].0))
            .max()
            .unwrap_or_default();
        println!(
            "viewer at relay {}: longest gap {} ms after the home died",
            k + 1,
            gap.as_millis()
        );
    }
    for t in tasks {
        t.abort();
    }
    app.shutdown().await;
}

/// An SDP attribute's value in `body` (`a=<name>:<value>`, first one), or the `m=video` port.
fn sdp_value(body: &[u8], prefix: &str) -> Option<String> {
    std::str::from_utf8(body).ok()?.lines().find_map(|l| {
        let v = l.trim().strip_prefix(prefix)?;
        v.split(' ').next().map(str::to_owned)
    })
}

/// A request of the viewer's dialog (`Call-ID: zap-1`), `\n` line ends, with an SDP offer at
/// `rtp_port` when `sdp`.
fn dialog_request(
    method: &str,
    uri: &str,
    cseq: u32,
    to_tag: Option<&str>,
    sdp: Option<u16>,
) -> as_server::sip::Request {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let mut r = common::parse(&format!(
        "{method} {uri} SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-zap-{cseq}-{method}\n\
         Max-Forwards: 70\nFrom: <sip:viewer@127.0.0.1>;tag=v1\nTo: <sip:news@127.0.0.1>{to_tag}\n\
         Call-ID: zap-1\nCSeq: {cseq} {m}\nContact: <sip:viewer@127.0.0.1:5099>\n\
         Content-Type: application/sdp\nContent-Length: 0\n\n",
        m = if method == "ACK" { "ACK" } else { method },
    ));
    if let Some(port) = sdp {
        r.body = common::offer(port, "h264", "recvonly")
            .replace("o=ue 1 1", &format!("o=ue 1 {cseq}"))
            .replace('\n', "\r\n")
            .into();
    }
    r
}

/// RTP packets in `log` after index `from`, all on `ssrc`.
fn on_ssrc(log: &Log, from: usize, ssrc: u32) -> (usize, bool) {
    let l = log.lock().unwrap();
    let after = l.get(from..).unwrap_or_default();
    (after.len(), after.iter().all(|p| p.1 == ssrc))
}

async fn stats_of(h: &RelayHandle, channel: &str) -> Option<ChannelStats> {
    h.stats()
        .await
        .ok()?
        .channels
        .into_iter()
        .find(|c| c.channel.as_str() == channel)
}

/// Two channels homed at different relays (news at relay 0, sport at relay 1); a viewer of
/// news zaps to sport by re-INVITE. The zap stays on the viewer's relay: the 200's answer
/// names the same relay address and SSRC (the path does not change, RFC 3264 section 8),
/// the viewer's relay pulls one copy of sport from its home, and RTP goes on on the same
/// SSRC. (The AS used to treat a channel the relay only pulls as "on another relay" and
/// move the viewer to the channel's home with a new answer; ue-sim zaps then timed out.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zap_to_a_channel_homed_elsewhere_stays_on_the_viewers_relay() {
    let mut cfg = config();
    cfg.channels.push(ChannelSeed {
        id: "sport".into(),
        name: "Sport".into(),
        test_pattern: true,
    });
    let app = App::start(&cfg).await.unwrap();
    let relays: Vec<RelayHandle> = app.relays().to_vec();
    let (addr, log, task) = viewer().await;

    let invite = dialog_request("INVITE", "sip:news@127.0.0.1", 1, None, Some(addr.port()));
    let ok = common::call(&app.service, invite).await;
    assert_eq!(ok.status.0, 200, "{ok:?}");
    let to_tag = ok
        .to()
        .unwrap()
        .tag()
        .expect("the 200 has a To tag")
        .to_owned();
    let port = sdp_value(&ok.body, "m=video ").expect("an m=video port");
    let ssrc: u32 = sdp_value(&ok.body, "a=ssrc:").unwrap().parse().unwrap();
    let ack = dialog_request("ACK", "sip:news@127.0.0.1", 1, Some(&to_tag), None);
    app.service
        .handle(as_server::service::TuRequest::new(
            ack,
            common::UE.parse().unwrap(),
            as_server::sip::transaction::Transport::Udp,
            |_| {},
        ))
        .await;
    assert!(
        wait_for(Duration::from_secs(5), || async {
            on_ssrc(&log, 0, ssrc).0 >= 20
        })
        .await,
        "news plays on the announced SSRC"
    );
    // The viewer's relay: the one whose output port the answer names.
    let mut at = None;
    for (i, r) in relays.iter().enumerate() {
        if stats_of(r, "news").await.is_some_and(|c| c.viewers == 1) {
            at = Some(i);
        }
    }
    let at = at.expect("the viewer is on one relay");
    let sport_home = 1;
    assert_ne!(
        at, sport_home,
        "the viewer's relay is not sport's home (else no pull to test)"
    );

    let before = log.lock().unwrap().len();
    let zap = dialog_request(
        "INVITE",
        "sip:sport@127.0.0.1",
        2,
        Some(&to_tag),
        Some(addr.port()),
    );
    let ok2 = common::call(&app.service, zap).await;
    assert_eq!(ok2.status.0, 200, "{ok2:?}");
    assert_eq!(
        sdp_value(&ok2.body, "m=video ").as_deref(),
        Some(port.as_str()),
        "same relay"
    );
    assert_eq!(
        sdp_value(&ok2.body, "a=ssrc:").and_then(|s| s.parse().ok()),
        Some(ssrc),
        "same path, same SSRC"
    );
    assert!(
        wait_for(Duration::from_secs(5), || async {
            stats_of(&relays[at], "sport")
                .await
                .is_some_and(|c| c.viewers == 1)
                && on_ssrc(&log, before, ssrc).0 >= 20
        })
        .await,
        "sport plays at the viewer's relay"
    );
    assert!(on_ssrc(&log, before, ssrc).1, "one SSRC across the zap");
    assert_eq!(
        stats_of(&relays[sport_home], "sport")
            .await
            .unwrap()
            .downstreams,
        1,
        "sport's home feeds the viewer's relay one copy"
    );
    task.abort();
    app.shutdown().await;
}
