//! Enrollment over HTTPS on 127.0.0.1 (RFC 6940 section 11.3): a CSR in, a certificate with a
//! server-chosen Node-ID out, which overlay links then accept; the configuration document
//! served beside it; refusals with their HTTP status. No timing asserts.

use std::collections::HashMap;
use std::sync::Arc;

use p2psip_overlay::cert::{self, DevCa, PeerIdentity};
use p2psip_overlay::config::OverlayConfig;
use p2psip_overlay::enroll::{enroll, fetch_config, EnrollConfig, EnrollError, EnrollServer};
use p2psip_overlay::link::{Link, LinkConfig, LinkEvent, LinkListener};

const OVERLAY: &str = "iptv.test";

async fn server() -> (EnrollServer, rustls::pki_types::CertificateDer<'static>) {
    let ca = DevCa::new(OVERLAY).unwrap();
    let root = ca.root_der();
    let xml =
        OverlayConfig::testbed(OVERLAY, root.to_vec(), "https://127.0.0.1/enroll", vec![]).to_xml();
    let users = HashMap::from([
        ("alice".to_owned(), "secret".to_owned()),
        ("bob".to_owned(), "hunter2".to_owned()),
    ]);
    let s = EnrollServer::start(
        EnrollConfig {
            ca,
            users,
            overlay_xml: xml,
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    (s, root)
}

#[tokio::test]
async fn enrolled_nodes_get_distinct_ids_and_can_link() {
    let (srv, root) = server().await;
    let a = enroll(&srv.url, &root, "alice", "secret").await.unwrap();
    let b = enroll(&srv.url, &root, "bob", "hunter2").await.unwrap();
    assert_ne!(a.node, b.node, "the server picks distinct Node-IDs");
    let pa = PeerIdentity::from_der(&a.chain[0]).unwrap();
    assert!(pa.has_node(&a.node, OVERLAY));
    assert_eq!(pa.user.as_deref(), Some("alice"));

    // The configuration document comes from the same server and names the same root.
    let cfg_url = srv.url.replace("/enroll", "/.well-known/reload-config");
    let doc = fetch_config(&cfg_url, &root).await.unwrap();
    assert_eq!(doc.instance_name, OVERLAY);
    assert_eq!(doc.root_certs, vec![root.to_vec()]);

    // Two enrolled nodes open a link to each other.
    let ca_roots = vec![root.clone()];
    let la = Arc::new(LinkConfig::new(OVERLAY, a.clone(), ca_roots.clone()));
    let lb = Arc::new(LinkConfig::new(OVERLAY, b.clone(), ca_roots));
    let listener = LinkListener::bind(lb, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let accept = tokio::spawn(async move { listener.accept().await });
    let link = Link::connect(&la, addr, Some(b.node)).await.unwrap();
    let mut other = accept.await.unwrap().unwrap();
    assert_eq!(other.peer, a.node);
    link.close().await;
    assert!(matches!(other.recv().await, Some(LinkEvent::Closed(_))));
    srv.shutdown().await;
}

#[tokio::test]
async fn refusals_carry_their_status() {
    let (srv, root) = server().await;
    match enroll(&srv.url, &root, "alice", "wrong").await {
        Err(EnrollError::Refused { status: 401, .. }) => {}
        other => panic!("expected 401, got {other:?}"),
    }
    match enroll(&srv.url, &root, "mallory", "x").await {
        Err(EnrollError::Refused { status: 401, .. }) => {}
        other => panic!("expected 401, got {other:?}"),
    }
    // A client that trusts another root refuses the server.
    let other = DevCa::new(OVERLAY).unwrap();
    assert!(enroll(&srv.url, &other.root_der(), "alice", "secret")
        .await
        .is_err());
    // Certificates from this server verify only against its root.
    let a = enroll(&srv.url, &root, "alice", "secret").await.unwrap();
    let v = cert::server_verifier(&[other.root_der()], OVERLAY).unwrap();
    use rustls::client::danger::ServerCertVerifier as _;
    let name = rustls::pki_types::ServerName::try_from("x.invalid").unwrap();
    assert!(v
        .verify_server_cert(
            &a.chain[0],
            &[],
            &name,
            &[],
            rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                1_800_000_000
            )),
        )
        .is_err());
    srv.shutdown().await;
}
