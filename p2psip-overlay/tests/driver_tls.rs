//! The tokio driver in one process: five peers over real TLS links on 127.0.0.1 (dev CA),
//! store through one, fetch through every other, one peer leaves, fetch again. Peers learn
//! each other's addresses by Attach (counted); every PDU sent is tshark-checked.

use std::sync::Arc;
use std::time::Duration;

use p2psip_overlay::cert::DevCa;
use p2psip_overlay::driver::OverlayHandle;
use p2psip_overlay::storage::KindId;
use p2psip_overlay::wire::pcap::{message_codes, tshark_check, TsharkOutcome};
use p2psip_overlay::wire::NodeId;

mod common;
use common::Record;

/// The peer with Node-ID `n`.
async fn peer(
    ca: &DevCa,
    n: u128,
    bootstrap: Option<std::net::SocketAddr>,
    record: &Record,
) -> OverlayHandle {
    common::tls_peer(ca, NodeId::from_u128(n), None, bootstrap, record).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_peers_store_fetch_leave() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let ca = DevCa::new("iptv.test").unwrap();
    let record: Record = Arc::default();
    let first = peer(&ca, 1 << 120 | 0x5555_1234, None, &record).await;
    let boot = Some(first.listen_addr());
    let mut peers = vec![first];
    for i in 1..5u128 {
        peers.push(
            peer(
                &ca,
                (i * 3 + 1) << 124 | (i * 0x9e37_79b9_7f4a_7c15),
                boot,
                &record,
            )
            .await,
        );
    }
    // let stabilisation spread the tables
    tokio::time::sleep(Duration::from_secs(3)).await;
    for r in 0..10 {
        let name = format!("channel-{r}");
        peers[1]
            .store(
                name.as_bytes(),
                KindId::CHANNEL_RELAYS,
                format!("relay {r}").into_bytes(),
            )
            .await
            .unwrap_or_else(|e| panic!("store {name}: {e}"));
    }
    // Readiness, bounded: each record is held by its responsible peer and its 3
    // replicas on successors (4 of the 5 peers), so the ring has settled on who is
    // responsible for it before every peer fetches it.
    let mut copies = Vec::new();
    for _ in 0..150 {
        copies.clear();
        for r in 0..10 {
            let name = format!("channel-{r}");
            let mut n = 0;
            for p in &peers {
                let v = p.local(name.as_bytes(), KindId::CHANNEL_RELAYS).await;
                n += usize::from(v.is_ok_and(|v| v.len() == 1));
            }
            copies.push(n);
        }
        if copies.iter().all(|&n| n >= 4) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        copies.iter().all(|&n| n >= 4),
        "copies per record (responsible peer + 3 replicas): {copies:?}"
    );
    for (i, p) in peers.iter().enumerate() {
        for r in 0..10 {
            let name = format!("channel-{r}");
            let v = p
                .fetch(name.as_bytes(), KindId::CHANNEL_RELAYS)
                .await
                .unwrap_or_else(|e| panic!("fetch {name} via {i}: {e}"));
            assert_eq!(v.len(), 1, "{name} via {i}");
            assert_eq!(v[0].data, format!("relay {r}").into_bytes());
        }
    }
    // Peers 1..4 only know the bootstrap's address: the links between them were
    // opened to host candidates from Attach answers (RFC 6940 section 6.5.1, no ICE).
    let attached: Vec<u64> = peers.iter().map(|p| p.attach_links()).collect();
    eprintln!("links opened via Attach, per peer: {attached:?}");
    assert!(
        attached.iter().sum::<u64>() >= 3,
        "links opened via Attach: {attached:?}"
    );
    peers[3].shutdown().await;
    for r in 0..10 {
        let name = format!("channel-{r}");
        let v = peers[2]
            .fetch(name.as_bytes(), KindId::CHANNEL_RELAYS)
            .await
            .unwrap_or_else(|e| panic!("fetch {name} after leave: {e}"));
        assert_eq!(v.len(), 1, "{name} after leave");
    }
    for p in &peers {
        p.shutdown().await;
    }
    // Every RELOAD PDU the peers sent decodes in tshark's dissector with no expert
    // error or warning (signed messages, certificates, per-value signatures, the
    // address forwarding option, Attach requests and answers).
    let pdus: Vec<Vec<u8>> = record.lock().unwrap().clone();
    assert!(pdus.len() > 50, "{} PDUs recorded", pdus.len());
    let dir = std::env::temp_dir().join(format!("driver_tls_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut per_code = std::collections::HashMap::<u16, usize>::new();
    for code in message_codes(&pdus) {
        *per_code.entry(code).or_default() += 1;
    }
    for code in [3u16, 4, 7, 8, 9, 10, 15, 16, 19, 20] {
        assert!(
            per_code.contains_key(&code),
            "no message with code {code} sent"
        );
    }
    // all of them, not a sample
    match tshark_check(&pdus, &dir).expect("tshark runs") {
        TsharkOutcome::Missing => {
            assert!(std::env::var_os("CI").is_none(), "tshark missing under CI");
            eprintln!("tshark not installed: check skipped");
        }
        TsharkOutcome::Clean(codes) => assert_eq!(codes.len(), pdus.len()),
        TsharkOutcome::Problems(p) => panic!("tshark: {}", &p[..p.len().min(4000)]),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
