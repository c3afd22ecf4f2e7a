//! Sessions of remote channels (`service::overlay`), two ASes on one RELOAD overlay in one
//! process on 127.0.0.1, real SIP over UDP:
//!
//! * `remote_sessions_are_first_class`: AS1 owns two test-pattern channels; a viewer at AS2
//!   (which has an embedded AAA) joins one of them. The session is listed, has a session
//!   row and an ACR START; re-INVITE zaps go remote -> remote, remote -> local and
//!   local -> remote, each moving the pull (AS1's relay sends a copy of the watched channel
//!   only) and the row; the BYE ends the row, sends the ACR STOP and releases the pull. A
//!   second viewer never ACKs: the session expires (64*T1) and its pull is released too.
//! * `crashed_as_channels_leave_within_the_ttl`: AS1 stops as a crash would (its overlay
//!   tasks aborted: no Leave, no empty directory entry), with a 2 s directory TTL; AS2's
//!   channel list drops AS1's channels within a bounded wait (the time is printed, with the
//!   bytes of AS1's directory refreshes), and AS2's viewer of one of them gets a BYE (row
//!   ended, ACR STOP). Every RELOAD PDU AS1 sent is checked with tshark.
//! * `remote_session_moves_with_a_relay_failover`: AS2 has two relays; the one pulling the
//!   remote channel stops: the channel is pulled again on the other and the viewer is
//!   re-INVITEd there (RTP checked after the move).
//!
//! Every wait is bounded; nothing asserts on time.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use as_server::aaa::config::{AaaConfig, SubscriberSeed};
use as_server::aaa::{Aaa, AaaHandle};
use as_server::config::{ChannelSeed, Config};
use as_server::service::app::App;
use as_server::sip::transaction::{TimerConfig, Transport};
use as_server::sip::Response;
use p2psip_overlay::wire::pcap::{message_codes, tshark_check, TsharkOutcome};
use tokio::net::UdpSocket;
use tokio::time::timeout;

mod common;
use common::offer;
use common::udp_ue::UdpUe as Ue;

const AS2_HOST: &str = "as2.iptv.example";
const REALM: &str = "iptv.example";

/// The test's one clock reading (for printed times only).
#[expect(clippy::disallowed_methods)]
fn clock() -> Instant {
    Instant::now()
}

fn seeds(ids: &[&str]) -> Vec<ChannelSeed> {
    ids.iter()
        .map(|id| ChannelSeed {
            id: (*id).into(),
            name: id.to_uppercase(),
            test_pattern: true,
        })
        .collect()
}

fn config(ca: &Path, bootstrap: Option<SocketAddr>, channels: &[&str]) -> Config {
    let mut c = Config::default();
    c.sip.udp = Some("127.0.0.1:0".parse().unwrap());
    c.sip.tcp = None;
    c.sip.tls = None;
    c.sip.domain = "127.0.0.1".into();
    c.http.listen = None;
    c.database.url = "sqlite::memory:".into();
    c.relay.port_min = 0;
    c.relay.port_max = 0;
    c.relay.output_rtp_port = 0;
    c.relay.control_listen = Some("127.0.0.1:0".parse().unwrap());
    c.channels = seeds(channels);
    c.overlay.enabled = true;
    c.overlay.ca_dir = Some(ca.to_path_buf());
    c.overlay.bootstrap = bootstrap;
    c.overlay.poll_ms = 20;
    c
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "{name}_{}_{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    p2psip_overlay::driver::control::write_ca(&dir.join("ca"), "iptv.test").unwrap();
    dir
}

fn invite_text(target: &str, call_id: &str) -> String {
    format!(
        "INVITE {target} SIP/2.0\n{{via}}\nMax-Forwards: 70\n{{from}}\nTo: <{target}>\n\
         Call-ID: {call_id}\nCSeq: 1 INVITE\n{{contact}}\nContent-Type: application/sdp\n"
    )
}

/// A re-INVITE in the dialog `call_id`/`to_tag` naming `target` (a zap).
fn reinvite_text(target: &str, call_id: &str, cseq: u32, to_tag: &str) -> String {
    format!(
        "INVITE {target} SIP/2.0\n{{via}}\nMax-Forwards: 70\n{{from}}\nTo: <{target}>;tag={to_tag}\n\
         Call-ID: {call_id}\nCSeq: {cseq} INVITE\n{{contact}}\nContent-Type: application/sdp\n"
    )
}

fn bye_text(target: &str, call_id: &str, cseq: u32, to_tag: &str) -> String {
    format!(
        "BYE {target} SIP/2.0\n{{via}}\nMax-Forwards: 70\n{{from}}\nTo: <{target}>;tag={to_tag}\n\
         Call-ID: {call_id}\nCSeq: {cseq} BYE\n"
    )
}

fn tag_of(r: &Response) -> String {
    r.to().unwrap().tag().unwrap().to_owned()
}

/// (viewers, copies to other relays) of `channel` on a relay ((0, 0) when it does not
/// carry it).
async fn viewers_on(relay: &media_relay::RelayHandle, channel: &str) -> (usize, usize) {
    relay
        .stats()
        .await
        .unwrap()
        .channels
        .iter()
        .find(|c| c.channel.as_str() == channel)
        .map_or((0, 0), |c| (c.viewers, c.downstreams))
}

/// Polls `f` every 20 ms until it returns true, at most `secs` seconds.
async fn eventually<F, Fut>(secs: u64, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..secs * 50 {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// At least `n` RTP packets at `media` within 5 s.
async fn rtp(media: &UdpSocket, n: usize) {
    let mut buf = vec![0u8; 2048];
    for _ in 0..n {
        let (len, _) = timeout(Duration::from_secs(5), media.recv_from(&mut buf))
            .await
            .expect("RTP at the viewer")
            .unwrap();
        assert!(len >= 12 && buf[0] >> 6 == 2, "RTP version 2");
    }
}

fn aaa_config(url: &str) -> AaaConfig {
    let mut c = AaaConfig::default();
    c.diameter.listen = "127.0.0.1:0".parse().unwrap();
    c.diameter.origin_host = "aaa.iptv.example".into();
    c.diameter.origin_realm = REALM.into();
    c.http.listen = None;
    c.database.url = url.into();
    c.digest.realm = REALM.into();
    c.subscribers = ["dave", "erin"]
        .iter()
        .map(|u| SubscriberSeed {
            identity: format!("sip:{u}@127.0.0.1"),
            username: None,
            realm: None,
            password: Some(format!("{u}-secret")),
            ha1: None,
            packages: vec!["*".into()],
            max_streams: 4,
            parental_level: 0,
        })
        .collect();
    c.validate().unwrap();
    c
}

/// START and STOP the AAA holds for the session `call_id`/`tag` of AS2 (bounded wait for
/// `want` records).
async fn cdrs(aaa: &AaaHandle, call_id: &str, tag: &str, want: usize) -> Vec<(String, String)> {
    let id = format!("{AS2_HOST};{call_id}/{tag}");
    let mut got = Vec::new();
    for _ in 0..250 {
        got = aaa
            .store()
            .cdrs_of_session(&id)
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.record_type, c.channel.unwrap_or_default()))
            .collect();
        if got.len() >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    got
}

/// The embedded AAA on a temp SQLite file, then AS2 (`cfg` with that database and the
/// AAA as its Diameter peer), the peer open.
async fn as2_with_aaa(dir: &Path, mut cfg: Config, timers: TimerConfig) -> (AaaHandle, App) {
    let url = format!("sqlite://{}?mode=rwc", dir.join("as2.db").to_string_lossy());
    let aaa = Aaa::start(&aaa_config(&url)).await.unwrap();
    cfg.database.url.clone_from(&url);
    cfg.aaa.peer = Some(aaa.local_addr());
    cfg.aaa.origin_host = AS2_HOST.into();
    cfg.aaa.origin_realm = REALM.into();
    cfg.aaa.destination_realm = REALM.into();
    cfg.aaa.realm = REALM.into();
    cfg.aaa.request_timeout_ms = 1000;
    let as2 = App::start_with_timers(&cfg, timers)
        .await
        .expect("AS2 starts and joins");
    timeout(
        Duration::from_secs(10),
        as2.service.aaa().unwrap().diameter().wait_open(1),
    )
    .await
    .expect("CER/CEA")
    .unwrap();
    (aaa, as2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_sessions_are_first_class() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = temp_dir("overlay_sessions");
    let ca = dir.join("ca");
    let as1 = App::start(&config(&ca, None, &["cam-a", "cam-b"]))
        .await
        .expect("AS1 starts");
    let boot = as1.service.overlay().unwrap().handle().listen_addr();
    // AS2: its own "news", an embedded AAA (Sh + Rf), a short T1 so that a 2xx never
    // ACKed ends its session after 64*T1 = 3.2 s.
    let timers = TimerConfig {
        t1: Duration::from_millis(50),
        ..TimerConfig::default()
    };
    let (aaa, as2) = as2_with_aaa(&dir, config(&ca, Some(boot), &["news"]), timers).await;
    let as2_sip = as2.sip_addr(Transport::Udp).unwrap();
    let svc2 = &as2.service;
    let ov2 = svc2.overlay().unwrap();
    let store2 = svc2.catalogue().store().clone();
    let (r1, r2) = (&as1.relays()[0], &as2.relays()[0]);
    assert!(
        eventually(10, || async {
            let l = svc2.list_channels().await.unwrap();
            l.iter().filter(|c| c.id.starts_with("cam-")).count() == 2
        })
        .await,
        "AS1's channels listed at AS2"
    );

    // dave joins cam-a (AS1's) at AS2.
    let mut dave = Ue::new("dave", as2_sip).await;
    let media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = media.local_addr().unwrap().port();
    let cam_a = "sip:cam-a@127.0.0.1";
    dave.send(&invite_text(cam_a, "d1"), &offer(port, "h264", "recvonly"))
        .await;
    let ok = dave.response_to("d1", 1, "INVITE").await;
    assert_eq!(ok.status.0, 200, "{ok:?}");
    let tag = tag_of(&ok);
    dave.ack(cam_a, "d1", 1, &tag).await;
    rtp(&media, 10).await;
    // Listed, with a row, accounted.
    let listed = svc2.sessions();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].call_id.as_str(), listed[0].channel.as_str()),
        ("d1", "cam-a")
    );
    let row = |store: as_server::store::Store| async move {
        let rows = store.list_sessions(false).await.unwrap();
        rows.into_iter().find(|r| r.call_id == "d1")
    };
    let r = row(store2.clone()).await.expect("a session row for d1");
    assert_eq!((r.channel_id.as_str(), r.ended_ms), ("cam-a", None));
    assert_eq!(
        cdrs(&aaa, "d1", &tag, 1).await,
        [("START".to_owned(), "cam-a".to_owned())]
    );
    assert_eq!(viewers_on(r1, "cam-a").await, (0, 1), "one copy to AS2");
    assert_eq!(viewers_on(r2, "cam-a").await, (1, 0));

    // Zaps: remote -> remote, remote -> local, local -> remote.
    let steps = [("cam-b", "cam-a"), ("news", "cam-b"), ("cam-a", "news")];
    for (seq, (to, from)) in (2u32..).zip(steps) {
        let target = format!("sip:{to}@127.0.0.1");
        dave.send(
            &reinvite_text(&target, "d1", seq, &tag),
            &offer(port, "h264", "recvonly"),
        )
        .await;
        let z = dave.response_to("d1", seq, "INVITE").await;
        assert_eq!(z.status.0, 200, "zap {from} -> {to}: {z:?}");
        dave.ack(&target, "d1", seq, &tag).await;
        assert_eq!(svc2.sessions()[0].channel, to);
        let r = row(store2.clone()).await.unwrap();
        assert_eq!(r.channel_id, to, "the row follows the zap");
        assert_eq!(r.zaps, i64::from(seq - 1));
        // AS1's relay sends a copy of the watched channel only; the channel zapped away
        // from is no longer pulled by AS2's relay.
        let moved = eventually(5, || async {
            let want_a = if to == "cam-a" { (0, 1) } else { (0, 0) };
            let want_b = if to == "cam-b" { (0, 1) } else { (0, 0) };
            viewers_on(r1, "cam-a").await == want_a
                && viewers_on(r1, "cam-b").await == want_b
                && (from == "news" || viewers_on(r2, from).await == (0, 0))
        })
        .await;
        assert!(
            moved,
            "zap {from} -> {to}: AS1 cam-a {:?} cam-b {:?}, AS2 {from} {:?}",
            viewers_on(r1, "cam-a").await,
            viewers_on(r1, "cam-b").await,
            viewers_on(r2, from).await
        );
        assert_eq!(viewers_on(r2, to).await.0, 1, "the viewer watches {to}");
        rtp(&media, 5).await;
    }
    assert_eq!(ov2.stats.pulls_started.load(Ordering::Relaxed), 3);
    assert!(
        eventually(5, || async {
            ov2.stats.pulls_released.load(Ordering::Relaxed) == 2
        })
        .await,
        "the two channels zapped away from are released"
    );

    // BYE: row ended, STOP, pull released.
    dave.send(&bye_text(cam_a, "d1", 5, &tag), "").await;
    assert_eq!(dave.response_to("d1", 5, "BYE").await.status.0, 200);
    assert!(svc2.sessions().is_empty());
    let r = row(store2.clone()).await.unwrap();
    assert!(r.ended_ms.is_some(), "row ended: {r:?}");
    let records = cdrs(&aaa, "d1", &tag, 2).await;
    assert_eq!(
        records,
        [
            ("START".to_owned(), "cam-a".to_owned()),
            ("STOP".to_owned(), "cam-a".to_owned())
        ]
    );
    assert!(
        eventually(5, || async {
            viewers_on(r1, "cam-a").await == (0, 0) && viewers_on(r2, "cam-a").await == (0, 0)
        })
        .await,
        "the pull is released on the BYE"
    );
    assert_eq!(ov2.stats.pulls_released.load(Ordering::Relaxed), 3);

    // erin joins cam-b and never ACKs: the session expires (64*T1), BYE from the AS, the
    // pull is released.
    let mut erin = Ue::new("erin", as2_sip).await;
    let emedia = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let eport = emedia.local_addr().unwrap().port();
    let cam_b = "sip:cam-b@127.0.0.1";
    erin.send(&invite_text(cam_b, "e1"), &offer(eport, "h264", "recvonly"))
        .await;
    let ok = erin.response_to("e1", 1, "INVITE").await;
    assert_eq!(ok.status.0, 200, "{ok:?}");
    let etag = tag_of(&ok);
    assert_eq!(svc2.sessions().len(), 1);
    let bye = erin
        .request_within("BYE", Duration::from_secs(10))
        .await
        .expect("a BYE from the AS");
    assert_eq!(bye.call_id().unwrap(), "e1");
    assert!(svc2.sessions().is_empty());
    assert!(
        eventually(5, || async {
            viewers_on(r1, "cam-b").await == (0, 0) && viewers_on(r2, "cam-b").await == (0, 0)
        })
        .await,
        "the pull is released when the session expires"
    );
    assert_eq!(ov2.stats.pulls_released.load(Ordering::Relaxed), 4);
    let er = store2.list_sessions(false).await.unwrap();
    let er = er.iter().find(|r| r.call_id == "e1").expect("erin's row");
    assert!(er.ended_ms.is_some());
    let records = cdrs(&aaa, "e1", &etag, 2).await;
    assert_eq!(records.len(), 2, "{records:?}");

    as2.shutdown().await;
    as1.shutdown().await;
    aaa.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_session_moves_with_a_relay_failover() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = temp_dir("overlay_failover");
    let ca = dir.join("ca");
    let as1 = App::start(&config(&ca, None, &["cam-a"]))
        .await
        .expect("AS1 starts");
    let boot = as1.service.overlay().unwrap().handle().listen_addr();
    let mut c2 = config(&ca, Some(boot), &["news"]);
    c2.relay.count = 2;
    let as2 = App::start(&c2).await.expect("AS2 starts and joins");
    let svc2 = &as2.service;
    assert!(
        eventually(10, || async {
            svc2.list_channels()
                .await
                .unwrap()
                .iter()
                .any(|c| c.id == "cam-a")
        })
        .await,
        "cam-a listed at AS2"
    );
    let mut dave = Ue::new("dave", as2.sip_addr(Transport::Udp).unwrap()).await;
    let media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = media.local_addr().unwrap().port();
    let cam_a = "sip:cam-a@127.0.0.1";
    dave.send(&invite_text(cam_a, "f1"), &offer(port, "h264", "recvonly"))
        .await;
    let ok = dave.response_to("f1", 1, "INVITE").await;
    assert_eq!(ok.status.0, 200, "{ok:?}");
    dave.ack(cam_a, "f1", 1, &tag_of(&ok)).await;
    rtp(&media, 5).await;
    let first = svc2.sessions()[0].relay.clone();
    let (dead, live) = if first == "relay-0" { (0, 1) } else { (1, 0) };
    assert_eq!(viewers_on(&as2.relays()[dead], "cam-a").await, (1, 0));

    // The pulling relay stops: cam-a is pulled again on the other one, and dave is
    // re-INVITEd there.
    assert!(as2.stop_relay(dead).await);
    let re = dave
        .next_request("INVITE", Duration::from_secs(10))
        .await
        .expect("a re-INVITE after the relay failure");
    let mut answer = Response::for_request(&re, as_server::sip::StatusCode::OK, "OK");
    answer
        .headers
        .push(as_server::sip::HeaderName::CONTACT, "<sip:dave@127.0.0.1>");
    answer
        .headers
        .push(as_server::sip::HeaderName::CONTENT_TYPE, "application/sdp");
    answer.body = offer(port, "h264", "recvonly")
        .replace("o=ue 1 1", "o=ue 1 2")
        .replace('\n', "\r\n")
        .into();
    dave.sock
        .send_to(&answer.to_bytes(), dave.as_addr)
        .await
        .unwrap();
    assert!(
        eventually(5, || async {
            svc2.sessions().first().map(|s| s.relay.clone()) == Some(format!("relay-{live}"))
        })
        .await,
        "the session moved to relay-{live}"
    );
    assert!(
        eventually(5, || async {
            viewers_on(&as2.relays()[live], "cam-a").await == (1, 0)
        })
        .await,
        "relay-{live} pulls cam-a and serves dave"
    );
    let ov2 = svc2.overlay().unwrap();
    assert_eq!(
        ov2.stats.pulls_started.load(Ordering::Relaxed),
        2,
        "pulled again (not re-homed as an empty local ingest)"
    );
    // RTP sent from now on (what the dead relay sent before is drained first) comes
    // through the new pull.
    let mut buf = vec![0u8; 2048];
    while media.try_recv_from(&mut buf).is_ok() {}
    rtp(&media, 10).await;
    as2.shutdown().await;
    as1.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_as_channels_leave_within_the_ttl() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = temp_dir("overlay_crash");
    let ca = dir.join("ca");
    let ttl_s = 2;
    let mut c1 = config(&ca, None, &["cam-a", "cam-b"]);
    c1.overlay.directory_ttl_s = ttl_s;
    c1.overlay.pcap = Some(dir.join("as1.pcap"));
    let as1 = App::start(&c1).await.expect("AS1 starts");
    let boot = as1.service.overlay().unwrap().handle().listen_addr();
    let mut c2 = config(&ca, Some(boot), &["news"]);
    c2.overlay.directory_ttl_s = ttl_s;
    let (aaa, as2) = as2_with_aaa(&dir, c2, TimerConfig::default()).await;
    let svc2 = &as2.service;
    let remote = || async {
        svc2.list_channels()
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.id.starts_with("cam-"))
            .count()
    };
    assert!(
        eventually(10, || async { remote().await == 2 }).await,
        "AS1's channels listed at AS2"
    );
    // Two directory refreshes of AS1 (every ttl/2 = 1 s) while it lives: still listed.
    let ov1 = as1.service.overlay().unwrap();
    assert!(
        eventually(10, || async {
            ov1.stats.directory_stores.load(Ordering::Relaxed) >= 3
        })
        .await,
        "AS1 refreshes its directory entry"
    );
    assert_eq!(remote().await, 2, "a refreshed entry stays listed");
    // dave watches cam-a at AS2.
    let mut dave = Ue::new("dave", as2.sip_addr(Transport::Udp).unwrap()).await;
    let media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = media.local_addr().unwrap().port();
    let cam_a = "sip:cam-a@127.0.0.1";
    dave.send(&invite_text(cam_a, "c1"), &offer(port, "h264", "recvonly"))
        .await;
    let ok = dave.response_to("c1", 1, "INVITE").await;
    assert_eq!(ok.status.0, 200, "{ok:?}");
    let tag = tag_of(&ok);
    dave.ack(cam_a, "c1", 1, &tag).await;
    rtp(&media, 5).await;

    // AS1 crashes: its overlay tasks stop, no Leave, no empty entry.
    let pdus = ov1.recorded();
    ov1.abort();
    let t0 = clock();
    let gone = eventually(15, || async { remote().await == 0 }).await;
    let took = t0.elapsed();
    assert!(gone, "AS1's channels still listed at AS2");
    assert!(
        svc2.list_channels()
            .await
            .unwrap()
            .iter()
            .any(|c| c.id == "news"),
        "AS2's own channel stays"
    );
    assert!(
        svc2.overlay()
            .unwrap()
            .stats
            .entries_stale
            .load(Ordering::Relaxed)
            >= 1
    );
    // dave's channel went with its AS: BYE, row ended, ACR STOP.
    let bye = dave
        .request_within("BYE", Duration::from_secs(5))
        .await
        .expect("a BYE for the crashed AS's channel");
    assert_eq!(bye.call_id().unwrap(), "c1");
    assert!(svc2.sessions().is_empty());
    let rows = svc2.catalogue().store().list_sessions(false).await.unwrap();
    assert!(rows
        .iter()
        .any(|r| r.call_id == "c1" && r.ended_ms.is_some()));
    let records: Vec<String> = cdrs(&aaa, "c1", &tag, 2)
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(records, ["START", "STOP"]);
    println!(
        "crashed AS: its channels left AS2's list {:.2} s after the crash (directory TTL {ttl_s} s)",
        took.as_secs_f64()
    );

    // What AS1's refreshes cost: its StoreReq PDUs (code 7), the directory's among them.
    let stores: Vec<usize> = pdus
        .iter()
        .filter(|p| message_codes(std::slice::from_ref(*p)) == [7])
        .map(Vec::len)
        .collect();
    println!(
        "AS1 sent {} PDUs, {} StoreReq ({} bytes, largest {} bytes), {} directory stores",
        pdus.len(),
        stores.len(),
        stores.iter().sum::<usize>(),
        stores.iter().max().copied().unwrap_or(0),
        ov1.stats.directory_stores.load(Ordering::Relaxed)
    );
    let mut by_code = std::collections::BTreeMap::<u16, (usize, usize)>::new();
    for p in &pdus {
        if let Some(&c) = message_codes(std::slice::from_ref(p)).first() {
            let e = by_code.entry(c).or_default();
            e.0 += 1;
            e.1 += p.len();
        }
    }
    println!("AS1 PDUs by message code (count, bytes): {by_code:?}");
    match tshark_check(&pdus, &dir).expect("tshark runs") {
        TsharkOutcome::Missing if std::env::var_os("CI").is_none() => {
            eprintln!("tshark not installed: check skipped")
        }
        TsharkOutcome::Missing => panic!("tshark missing in CI"),
        TsharkOutcome::Clean(c) => assert_eq!(c.len(), pdus.len()),
        TsharkOutcome::Problems(p) => panic!("tshark: {p}"),
    }
    as2.shutdown().await;
    as1.shutdown().await;
    aaa.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
