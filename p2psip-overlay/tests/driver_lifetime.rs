//! Per-store lifetimes through the tokio driver (RFC 6940 section 7: StoredData.lifetime):
//! two peers over real TLS links on 127.0.0.1 (dev CA). A value stored with
//! [`OverlayHandle::store_for`] carries its own lifetime (Stat through the other peer
//! says so) and is gone after it, while a value stored with [`OverlayHandle::store`]
//! (the configured one-hour lifetime) is still there; storing the short one again with a
//! long lifetime (a refresh) replaces its lifetime. Waits are bounded loops, no timing
//! asserts.

use std::time::Duration;

use p2psip_overlay::cert::DevCa;
use p2psip_overlay::driver::{start, DriverConfig, OverlayHandle};
use p2psip_overlay::link::LinkConfig;
use p2psip_overlay::storage::KindId;
use p2psip_overlay::wire::NodeId;

async fn peer(ca: &DevCa, n: u128, bootstrap: Option<std::net::SocketAddr>) -> OverlayHandle {
    let id = NodeId::from_u128(n);
    let link = LinkConfig::new(
        "iptv.test",
        ca.issue(id, None).unwrap(),
        vec![ca.root_der()],
    );
    let cfg = DriverConfig::new(link, "127.0.0.1:0".parse().unwrap(), bootstrap);
    assert_eq!(cfg.lifetime, 3600, "the default this test tells apart");
    let (h, _task) = start(cfg).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), h.joined())
        .await
        .expect("joined in time")
        .unwrap();
    h
}

/// The data of every value of `name` fetched through `p` (`Err`: the fetch's error).
async fn fetch(p: &OverlayHandle, name: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    p.fetch(name, KindId::CHANNEL_RELAYS)
        .await
        .map(|v| v.into_iter().map(|v| v.data).collect())
        .map_err(|e| e.to_string())
}

/// The lifetimes Stat reports for `name` through `p`, retried while the ring settles.
async fn lifetimes(p: &OverlayHandle, name: &[u8]) -> Vec<u32> {
    let mut last = String::new();
    for _ in 0..100 {
        match p.stat(name, KindId::CHANNEL_RELAYS).await {
            Ok(st) if !st.values.is_empty() => {
                return st.values.iter().map(|v| v.lifetime).collect()
            }
            Ok(_) => last = "no values".into(),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("stat {}: {last}", String::from_utf8_lossy(name));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_expires_after_its_own_lifetime() {
    let ca = DevCa::new("iptv.test").unwrap();
    let a = peer(&ca, 0x20 << 120, None).await;
    let b = peer(&ca, 0xa0 << 120, Some(a.listen_addr())).await;

    let short = b"lifetime-short";
    let long = b"lifetime-long";
    let refreshed = b"lifetime-refreshed";
    a.store_for(short, KindId::CHANNEL_RELAYS, b"short".to_vec(), 3)
        .await
        .expect("store short");
    a.store(long, KindId::CHANNEL_RELAYS, b"long".to_vec())
        .await
        .expect("store long");
    a.store_for(refreshed, KindId::CHANNEL_RELAYS, b"old".to_vec(), 3)
        .await
        .expect("store refreshed");
    // A refresh: the same value stored again with a long lifetime.
    a.store_for(refreshed, KindId::CHANNEL_RELAYS, b"new".to_vec(), 600)
        .await
        .expect("refresh");

    // Stat through the other peer: each value carries the lifetime it was stored with
    // (a replica holds the remaining one, never more).
    let l = lifetimes(&b, short).await;
    assert!(l.iter().all(|&s| s <= 3), "short lifetimes {l:?}");
    let l = lifetimes(&b, long).await;
    assert!(l.iter().all(|&s| s > 600), "default lifetimes {l:?}");
    let l = lifetimes(&b, refreshed).await;
    assert!(l.iter().all(|&s| s > 3), "refreshed lifetimes {l:?}");

    // The short value goes after its 3 s (bounded: 20 s), not after the default hour.
    let mut last = Ok(Vec::new());
    let mut gone = false;
    for _ in 0..200 {
        last = fetch(&b, short).await;
        if matches!(&last, Ok(v) if v.is_empty()) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "short value still there: {last:?}");
    assert_eq!(fetch(&b, long).await, Ok(vec![b"long".to_vec()]));
    assert_eq!(fetch(&b, refreshed).await, Ok(vec![b"new".to_vec()]));

    b.shutdown().await;
    a.shutdown().await;
}
