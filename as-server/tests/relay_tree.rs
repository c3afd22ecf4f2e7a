//! The relay tree in the AS (`[relay] tree = true`), end to end: the whole AS (`App::start`)
//! with three in-process relays on 127.0.0.1. The test-pattern channel runs at one relay (its
//! home); the others carry it as a pulled channel and receive nothing until they have a
//! viewer; viewers at two of them make the home send one copy to each. The home is stopped
//! abruptly: the AS re-homes the channel on a surviving relay and points the other at it, and
//! the viewers keep receiving on one SSRC with their sequence numbers continuous. Waits are
//! bounded; nothing asserts on timing (the longest gap is printed).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use as_server::config::{ChannelSeed, Config};
use as_server::service::app::App;
use media_relay::control::ChannelStats;
use media_relay::{rtp, AddViewer, ChannelId, RelayHandle, ViewerId};
use tokio::net::UdpSocket;
use tokio::time::sleep;

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
