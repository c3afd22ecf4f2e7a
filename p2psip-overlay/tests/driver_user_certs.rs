//! Stores on behalf of users (RFC 6940 section 7.1 per-StoredData signatures, RFC 7904
//! SIP-REGISTRATION under USER-NODE-MATCH): three peers over real TLS links (dev CA).
//! One peer holds user certificates the CA issued to its own Node-ID for two users and
//! stores each user's registration signed with that user's certificate
//! ([`OverlayHandle::store_as`]); both are fetched through another peer and replicated.
//! A user certificate for another AoR than the resource is refused (Error_Forbidden),
//! nothing stored. A peer whose own certificate names a user stores that user's
//! registration while responsible for it itself. Every PDU is tshark-checked.
//!
//! Node-IDs are chosen so the paths are deterministic: peer A's Node-ID is alice's
//! Resource-ID (A is responsible for alice: the local path, then replicas), peer B's is
//! bob's (A's store for bob goes over the overlay to B), peer C's is carol's.

use std::sync::Arc;
use std::time::Duration;

use p2psip_overlay::cert::{DevCa, NodeIdentity};
use p2psip_overlay::driver::{resource_id, DriverError, OverlayHandle};
use p2psip_overlay::node::msg::error_code;
use p2psip_overlay::node::RequestError;
use p2psip_overlay::storage::KindId;
use p2psip_overlay::wire::pcap::{tshark_check, TsharkOutcome};
use p2psip_overlay::wire::NodeId;

mod common;
use common::{tls_peer as peer, Record};

const ALICE: &str = "alice@lab.test";
const BOB: &str = "bob@lab.test";
const CAROL: &str = "carol@lab.test";

fn node_of(name: &str) -> NodeId {
    NodeId::from_u128(resource_id(name.as_bytes()).0)
}

/// Fetches `name` through `p` until it has one value (stabilisation may still be moving
/// responsibility; bounded).
async fn fetch_one(p: &OverlayHandle, name: &str) -> Vec<u8> {
    let mut last = String::new();
    for _ in 0..50 {
        match p.fetch(name.as_bytes(), KindId::SIP_REGISTRATION).await {
            Ok(v) if v.len() == 1 => return v[0].data.clone(),
            Ok(v) => last = format!("{} values", v.len()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fetch {name}: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_certificates_sign_registrations() {
    let ca = DevCa::new("iptv.test").unwrap();
    let record: Record = Arc::default();
    let a = peer(&ca, node_of(ALICE), None, None, &record).await;
    let boot = Some(a.listen_addr());
    let b = peer(&ca, node_of(BOB), None, boot, &record).await;
    let c = peer(&ca, node_of(CAROL), Some(CAROL), boot, &record).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let user_cert =
        |user: &str| -> Arc<NodeIdentity> { Arc::new(ca.issue(a.node_id(), Some(user)).unwrap()) };
    let alice = user_cert(ALICE);
    let bob = user_cert(BOB);
    a.store_as(
        Arc::clone(&alice),
        ALICE.as_bytes(),
        KindId::SIP_REGISTRATION,
        b"sip:alice@127.0.0.1:5061".to_vec(),
    )
    .await
    .expect("alice stored with alice's certificate");
    a.store_as(
        Arc::clone(&bob),
        BOB.as_bytes(),
        KindId::SIP_REGISTRATION,
        b"sip:bob@127.0.0.1:5062".to_vec(),
    )
    .await
    .expect("bob stored with bob's certificate");
    // the my_signer fix: C's own certificate names carol, and C is responsible for her
    c.store(
        CAROL.as_bytes(),
        KindId::SIP_REGISTRATION,
        b"sip:carol@127.0.0.1:5063".to_vec(),
    )
    .await
    .expect("carol stored by her own peer");

    assert_eq!(fetch_one(&c, ALICE).await, b"sip:alice@127.0.0.1:5061");
    assert_eq!(fetch_one(&c, BOB).await, b"sip:bob@127.0.0.1:5062");
    assert_eq!(fetch_one(&b, CAROL).await, b"sip:carol@127.0.0.1:5063");
    let v = c
        .fetch(ALICE.as_bytes(), KindId::SIP_REGISTRATION)
        .await
        .unwrap();
    assert_eq!(v[0].signer.user_name, ALICE, "the value's signer is alice");
    assert_eq!(v[0].signer.node_id.0, a.node_id().to_u128());
    assert_eq!(
        v[0].key,
        p2psip_overlay::storage::ValueKey::Key(a.node_id().to_u128().to_be_bytes().to_vec())
    );

    // A stored alice locally: the replicas it sends carry alice's signature and are
    // accepted by its successors (bounded wait)
    let mut replicated = false;
    for _ in 0..50 {
        let rb = b
            .local(ALICE.as_bytes(), KindId::SIP_REGISTRATION)
            .await
            .unwrap();
        let rc = c
            .local(ALICE.as_bytes(), KindId::SIP_REGISTRATION)
            .await
            .unwrap();
        if !rb.is_empty() && !rc.is_empty() {
            replicated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(replicated, "alice's registration replicated to B and C");

    // a user certificate for another AoR than the resource: Error_Forbidden, nothing stored
    for (cert, resource) in [(&alice, BOB), (&bob, "mallory@lab.test")] {
        let r = a
            .store_as(
                Arc::clone(cert),
                resource.as_bytes(),
                KindId::SIP_REGISTRATION,
                b"sip:mallory@127.0.0.1:6666".to_vec(),
            )
            .await;
        assert!(
            matches!(
                r,
                Err(DriverError::Request(RequestError::Error(code, _))) if code == error_code::FORBIDDEN
            ),
            "{resource}: {r:?}"
        );
    }
    assert_eq!(fetch_one(&c, BOB).await, b"sip:bob@127.0.0.1:5062");
    let m = c
        .fetch(b"mallory@lab.test", KindId::SIP_REGISTRATION)
        .await
        .unwrap();
    assert!(m.is_empty(), "nothing stored for mallory: {m:?}");
    // a certificate issued to another Node-ID is refused before anything is sent
    let foreign = Arc::new(ca.issue(b.node_id(), Some(ALICE)).unwrap());
    assert!(matches!(
        a.store_as(foreign, ALICE.as_bytes(), KindId::SIP_REGISTRATION, vec![1])
            .await,
        Err(DriverError::NotThisNode)
    ));
    assert_eq!(fetch_one(&b, ALICE).await, b"sip:alice@127.0.0.1:5061");

    for p in [&a, &b, &c] {
        p.shutdown().await;
    }
    let pdus: Vec<Vec<u8>> = record.lock().unwrap().clone();
    let dir = std::env::temp_dir().join(format!("driver_user_certs_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
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
