//! The relay tree over real relays on 127.0.0.1: a channel ingested at A (test pattern), viewers
//! at B and C make them pull one copy each from A (counted at A), the last leave stops the
//! copy, an upstream killed mid-run is replaced by another copy with the viewers' RTP line
//! continuous, and the same over the HTTP control API. Waits are bounded; nothing asserts on
//! timing (the longest gap across a re-attach is printed).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use media_relay::control::{ChannelStats, RelayConfig, RelayEvent};
use media_relay::driver::http;
use media_relay::fcc::{self, MediaKind};
use media_relay::{rtp, AddViewer, ChannelId, ChannelSpec, Relay, RelayHandle, Upstream, ViewerId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::time::{sleep, timeout};

#[expect(clippy::disallowed_methods, reason = "the test measures arrival gaps")]
fn now() -> Instant {
    Instant::now()
}

/// One received RTP packet.
#[derive(Debug, Clone)]
struct Got {
    at: Instant,
    ssrc: u32,
    seq: u16,
    ts: u32,
    key: bool,
}

/// A viewer socket whose packets a task collects.
struct Viewer {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Viewer {
    async fn new() -> Viewer {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, _)) = sock.recv_from(&mut buf).await {
                let Ok(i) = rtp::parse(&buf[..n]) else {
                    continue; // RTCP (sender reports)
                };
                let key = fcc::classify(MediaKind::H264, i.payload(&buf[..n])).key;
                sink.lock().unwrap().push(Got {
                    at: now(),
                    ssrc: i.ssrc,
                    seq: i.sequence,
                    ts: i.timestamp,
                    key,
                });
            }
        });
        Viewer { addr, got, task }
    }

    fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    fn packets(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    fn request(&self, id: u64, channel: &str) -> AddViewer {
        AddViewer {
            viewer: ViewerId(id),
            channel: ChannelId::from(channel),
            rtp_dest: self.addr,
            rtcp_dest: None,
            payload_type: 96,
            downstream: false,
        }
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn channel_stats(h: &RelayHandle, channel: &str) -> ChannelStats {
    h.stats()
        .await
        .unwrap()
        .channels
        .into_iter()
        .find(|c| c.channel.as_str() == channel)
        .unwrap_or_else(|| panic!("channel {channel} at the relay"))
}

/// Poll `cond` every 20 ms for at most `limit`; whether it held.
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

/// A relay with `channel` ingested and fed by the built-in test pattern.
async fn source(channel: &str) -> RelayHandle {
    let h = Relay::spawn(RelayConfig::default()).unwrap();
    h.create_ingest(ChannelSpec::new(channel)).await.unwrap();
    h.start_test_pattern(&ChannelId::from(channel))
        .await
        .unwrap();
    h
}

/// Every packet continues the one before: one SSRC, sequence + 1, timestamps not going back.
fn assert_continuous(name: &str, p: &[Got]) {
    assert!(!p.is_empty(), "{name} got nothing");
    assert!(p[0].key, "{name} starts at a key frame (SPS/PPS/IDR)");
    for w in p.windows(2) {
        assert_eq!(w[1].ssrc, w[0].ssrc, "{name}: one SSRC");
        assert_eq!(
            w[1].seq,
            w[0].seq.wrapping_add(1),
            "{name}: sequence continues"
        );
        assert!(
            w[1].ts.wrapping_sub(w[0].ts) < 0x8000_0000,
            "{name}: timestamp goes back ({} -> {})",
            w[0].ts,
            w[1].ts
        );
    }
}

fn longest_gap(p: &[Got]) -> Duration {
    p.windows(2)
        .map(|w| w[1].at.duration_since(w[0].at))
        .max()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_copy_per_downstream_relay_and_the_last_leave_stops_it() {
    let a = source("news").await;
    let b = Relay::spawn(RelayConfig::default()).unwrap();
    let c = Relay::spawn(RelayConfig::default()).unwrap();
    let news = ChannelId::from("news");
    for r in [&b, &c] {
        r.set_upstream(news.clone(), vec![Upstream::Local(a.clone())])
            .await
            .unwrap();
    }
    // Declared but unwatched: nothing flows yet.
    sleep(Duration::from_millis(200)).await;
    assert_eq!(channel_stats(&a, "news").await.downstreams, 0);
    assert_eq!(channel_stats(&b, "news").await.packets_in, 0);

    let vb: Vec<Viewer> = futures_join(3).await;
    let vc: Vec<Viewer> = futures_join(2).await;
    for (i, v) in vb.iter().enumerate() {
        b.add_viewer(v.request(i as u64 + 1, "news")).await.unwrap();
    }
    for (i, v) in vc.iter().enumerate() {
        c.add_viewer(v.request(i as u64 + 1, "news")).await.unwrap();
    }
    let all_receive = wait_for(Duration::from_secs(5), || async {
        vb.iter().chain(&vc).all(|v| v.count() >= 30)
    })
    .await;
    assert!(all_receive, "every viewer at B and C receives the channel");
    for (i, v) in vb.iter().chain(&vc).enumerate() {
        let p = v.packets();
        assert!(p[0].key, "viewer {i} starts at a key frame");
    }

    // A feeds B and C once each, however many viewers they have: counted in one window.
    let s1 = channel_stats(&a, "news").await;
    assert_eq!(s1.downstreams, 2, "one copy to B, one to C");
    assert_eq!(s1.viewers, 0, "downstream copies are not viewers");
    let metrics = a.stats().await.unwrap().to_prometheus();
    assert!(
        metrics.contains("media_relay_channel_downstreams{channel=\"news\"} 2"),
        "{metrics}"
    );
    sleep(Duration::from_millis(500)).await;
    let s2 = channel_stats(&a, "news").await;
    let ingested = s2.packets_in - s1.packets_in;
    let copied = s2.downstream_packets - s1.downstream_packets;
    println!("window: A ingested {ingested}, sent {copied} to downstream relays");
    assert!(ingested > 0);
    assert_eq!(copied, 2 * ingested, "exactly one copy each to B and C");
    let sb = channel_stats(&b, "news").await;
    assert_eq!((sb.viewers, sb.downstreams), (3, 0));

    // The last viewer at C leaves: A stops sending to C, B goes on.
    c.remove_viewer(ViewerId(1)).await.unwrap();
    sleep(Duration::from_millis(100)).await;
    assert_eq!(
        channel_stats(&a, "news").await.downstreams,
        2,
        "one viewer left at C"
    );
    c.remove_viewer(ViewerId(2)).await.unwrap();
    let one = wait_for(Duration::from_secs(3), || async {
        channel_stats(&a, "news").await.downstreams == 1
    })
    .await;
    assert!(one, "A dropped C's copy after C's last leave");
    sleep(Duration::from_millis(200)).await; // packets in flight
    let c1 = channel_stats(&c, "news").await.packets_in;
    let b1 = channel_stats(&b, "news").await.packets_in;
    let a1 = channel_stats(&a, "news").await;
    sleep(Duration::from_millis(500)).await;
    let c2 = channel_stats(&c, "news").await;
    let b2 = channel_stats(&b, "news").await.packets_in;
    let a2 = channel_stats(&a, "news").await;
    assert_eq!(
        c2.packets_in, c1,
        "C gets nothing after its last viewer left"
    );
    assert_eq!(c2.cached_packets, 0, "C forgot the stale GOP");
    assert!(b2 > b1, "B still receives");
    assert_eq!(
        a2.downstream_packets - a1.downstream_packets,
        a2.packets_in - a1.packets_in,
        "one copy now"
    );

    // A viewer coming back at C pulls again and starts at a key frame.
    let again = Viewer::new().await;
    c.add_viewer(again.request(9, "news")).await.unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || async { again.count() >= 10 }).await,
        "C pulls again"
    );
    assert!(again.packets()[0].key);
    assert_eq!(channel_stats(&a, "news").await.downstreams, 2);
    for r in [&a, &b, &c] {
        r.shutdown().await.unwrap();
    }
}

async fn futures_join(n: usize) -> Vec<Viewer> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(Viewer::new().await);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_upstream_is_replaced_and_viewers_keep_one_rtp_line() {
    let a = source("news").await;
    let a2 = source("news").await;
    let b = Relay::spawn(RelayConfig::default()).unwrap();
    let news = ChannelId::from("news");
    let mut events = b.events();
    b.set_upstream(
        news.clone(),
        vec![Upstream::Local(a.clone()), Upstream::Local(a2.clone())],
    )
    .await
    .unwrap();
    let viewers = futures_join(2).await;
    for (i, v) in viewers.iter().enumerate() {
        b.add_viewer(v.request(i as u64 + 1, "news")).await.unwrap();
    }
    assert!(
        wait_for(Duration::from_secs(5), || async {
            viewers.iter().all(|v| v.count() >= 50)
        })
        .await
    );
    assert_eq!(channel_stats(&a, "news").await.downstreams, 1);
    assert_eq!(channel_stats(&a2, "news").await.downstreams, 0);

    // A dies abruptly.
    let before: Vec<usize> = viewers.iter().map(Viewer::count).collect();
    let killed = now();
    a.shutdown().await.unwrap();
    let healed = wait_for(Duration::from_secs(5), || async {
        viewers
            .iter()
            .zip(&before)
            .all(|(v, &n)| v.count() >= n + 50)
    })
    .await;
    assert!(healed, "the viewers play again after the re-attach");
    assert_eq!(channel_stats(&a2, "news").await.downstreams, 1);

    // The relay said what happened.
    let mut lost = false;
    let mut attached_to_a2 = false;
    while let Ok(Ok(ev)) = timeout(Duration::from_millis(100), events.recv()).await {
        match ev {
            RelayEvent::UpstreamLost { candidate: 0, .. } => lost = true,
            RelayEvent::UpstreamAttached { candidate: 1, .. } => attached_to_a2 = true,
            _ => {}
        }
    }
    assert!(lost && attached_to_a2, "UpstreamLost then UpstreamAttached");

    for (i, v) in viewers.iter().enumerate() {
        let p = v.packets();
        assert_continuous(&format!("viewer {i}"), &p);
        let after: Vec<&Got> = p.iter().filter(|g| g.at > killed).collect();
        let gap = longest_gap(&p);
        println!(
            "viewer {i}: longest gap {} ms across the re-attach ({} packets after the kill)",
            gap.as_millis(),
            after.len()
        );
        assert!(!after.is_empty());
    }
    for r in [&a2, &b] {
        r.shutdown().await.unwrap();
    }
}

async fn http_request(addr: SocketAddr, method: &str, path: &str, body: &str) -> u16 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("answer within 5 s")
        .unwrap();
    String::from_utf8_lossy(&out)[9..12].parse().unwrap()
}

async fn serve(h: &RelayHandle) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = http::router(h.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_over_the_http_control_api_and_zaps_count_as_join_and_leave() {
    let a = source("news").await;
    let a_api = serve(&a).await;
    let b = Relay::spawn(RelayConfig::default()).unwrap();
    let b_api = serve(&b).await;
    b.create_ingest(ChannelSpec::new("local")).await.unwrap();
    b.start_test_pattern(&ChannelId::from("local"))
        .await
        .unwrap();

    // B is told over its own HTTP API where the channel is.
    let body = format!(r#"{{"candidates":["{a_api}"]}}"#);
    assert_eq!(
        http_request(b_api, "POST", "/channels/news/upstream", &body).await,
        204
    );
    assert_eq!(
        http_request(
            b_api,
            "POST",
            "/channels/news/upstream",
            r#"{"candidates":[]}"#
        )
        .await,
        400
    );

    let v = Viewer::new().await;
    b.add_viewer(v.request(1, "news")).await.unwrap();
    assert!(wait_for(Duration::from_secs(5), || async { v.count() >= 20 }).await);
    assert!(v.packets()[0].key);
    assert_eq!(channel_stats(&a, "news").await.downstreams, 1);

    // Zap out of the pulled channel: B's last viewer of it left.
    b.switch_channel(ViewerId(1), ChannelId::from("local"))
        .await
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(3), || async {
            channel_stats(&a, "news").await.downstreams == 0
        })
        .await,
        "zapping out detaches"
    );
    // Zap back in: pulled again.
    b.switch_channel(ViewerId(1), ChannelId::from("news"))
        .await
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(3), || async {
            channel_stats(&a, "news").await.downstreams == 1
        })
        .await,
        "zapping in attaches"
    );
    let n = v.count();
    assert!(wait_for(Duration::from_secs(5), || async { v.count() >= n + 20 }).await);
    assert_continuous("zapping viewer", &v.packets());

    // DELETE stops the pull; the channel and its viewer stay at B.
    assert_eq!(
        http_request(b_api, "DELETE", "/channels/news/upstream", "").await,
        204
    );
    assert!(
        wait_for(Duration::from_secs(3), || async {
            channel_stats(&a, "news").await.downstreams == 0
        })
        .await
    );
    assert_eq!(channel_stats(&b, "news").await.viewers, 1);
    assert_eq!(
        http_request(b_api, "DELETE", "/channels/news/upstream", "").await,
        404
    );
    for r in [&a, &b] {
        r.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_downstream_relay_is_dropped_by_its_upstream() {
    // A drops a viewer whose RTCP stopped for 4 s; B reports every 2 s while it pulls.
    let a = Relay::spawn(RelayConfig {
        viewer_timeout: Some(Duration::from_secs(4)),
        ..RelayConfig::default()
    })
    .unwrap();
    a.create_ingest(ChannelSpec::new("news")).await.unwrap();
    a.start_test_pattern(&ChannelId::from("news"))
        .await
        .unwrap();
    let b = Relay::spawn(RelayConfig::default()).unwrap();
    b.set_upstream(ChannelId::from("news"), vec![Upstream::Local(a.clone())])
        .await
        .unwrap();
    let v = Viewer::new().await;
    b.add_viewer(v.request(1, "news")).await.unwrap();
    assert!(wait_for(Duration::from_secs(5), || async { v.count() >= 10 }).await);
    // Past A's timeout, B's copy is still there: B's receiver reports keep it.
    sleep(Duration::from_millis(4500)).await;
    assert_eq!(channel_stats(&a, "news").await.downstreams, 1);
    let st = a.stats().await.unwrap();
    assert_eq!(st.totals.viewers_dropped, 0);
    assert!(st.viewers.is_empty(), "the copy is not listed as a viewer");
    // B dies: A stops feeding it after its timeout.
    b.shutdown().await.unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || async {
            channel_stats(&a, "news").await.downstreams == 0
        })
        .await,
        "A dropped the dead relay's copy"
    );
    a.shutdown().await.unwrap();
}
