//! Personalised channels survive an AS restart (issue 7): the whole AS (`App::start`) on a
//! SQLite file creates personalised channels (by SIP MESSAGE and by HTTP), is stopped, and a
//! new AS on the same file lists them and splices them again (a viewer's INVITE gets one
//! continuous RTP stream); a source deleted while the AS was down takes its slots with it,
//! and a channel left without a slot is removed. Also the store's definition functions, on
//! SQLite and, when `TEST_POSTGRES_URL` is set (`tests/pg-setup.sh`), on PostgreSQL.

use std::net::SocketAddr;
use std::time::Duration;

use as_server::config::{ChannelSeed, Config};
use as_server::service::app::App;
use as_server::service::channel_list::ChannelEntry;
use as_server::service::personalized::Stored;
use as_server::sip::{HeaderName, Request};
use as_server::store::{Channel, ChannelKind, Store};
use tokio::net::UdpSocket;
use tokio::time::timeout;

mod common;
use common::{call, parse};

fn config(url: &str) -> Config {
    let mut c = Config::default();
    c.sip.udp = Some("127.0.0.1:0".parse().unwrap());
    c.sip.tcp = None;
    c.sip.tls = None;
    c.http.listen = Some("127.0.0.1:0".parse().unwrap());
    c.database.url = url.to_owned();
    c.relay.port_min = 0;
    c.relay.port_max = 0;
    c.relay.output_rtp_port = 0;
    c.channels = ["news", "sport1"]
        .into_iter()
        .map(|id| ChannelSeed {
            id: id.into(),
            name: id.to_uppercase(),
            test_pattern: true,
        })
        .collect();
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

fn message(call_id: &str, body: &str) -> Request {
    parse(&format!(
        "MESSAGE sip:new-channel@127.0.0.1 SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKmsg{call_id}\n\
         Max-Forwards: 70\n\
         From: <sip:alice@127.0.0.1>;tag=m{call_id}\n\
         To: <sip:new-channel@127.0.0.1>\n\
         Call-ID: {call_id}\n\
         CSeq: 1 MESSAGE\n\
         Content-Type: application/json\n\
         Content-Length: {}\n\n{body}",
        body.len()
    ))
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

async fn sources(store: &Store, id: &str) -> Vec<String> {
    let text = store.channel_definition(id).await.unwrap().unwrap();
    Stored::from_json(&text)
        .unwrap()
        .schedule
        .into_iter()
        .map(|s| s.channel)
        .collect()
}

#[tokio::test]
async fn personalised_channels_survive_a_restart_without_their_lost_sources() {
    let dir = std::env::temp_dir().join(format!("as-pz-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}/as.db?mode=rwc", dir.display());

    // First run: a producer channel "cam", "mix" by MESSAGE, "camonly" by HTTP.
    let app = App::start(&config(&url)).await.unwrap();
    let api = app.http.unwrap();
    let (st, body) = http(
        api,
        "POST",
        "/api/channels",
        Some(r#"{"id":"cam","name":"Cam"}"#),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    let ok = call(
        &app.service,
        message(
            "m1",
            r#"{"id":"mix","name":"My mix","schedule":[{"channel":"news","seconds":2.5},{"channel":"cam","seconds":2.5},{"channel":"sport1","seconds":2.5}]}"#,
        ),
    )
    .await;
    assert_eq!(ok.status.0, 200, "{ok:?}");
    assert!(ok
        .headers
        .get(&HeaderName::CONTACT)
        .unwrap()
        .contains("sip:mix@"));
    let (st, body) = http(
        api,
        "POST",
        "/api/channels",
        Some(r#"{"id":"camonly","name":"Cam only","schedule":[{"channel":"cam","seconds":2}]}"#),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    app.shutdown().await;

    // While the AS is down, "cam" goes from the catalogue.
    {
        let store = Store::connect(&url).await.unwrap();
        assert_eq!(sources(&store, "mix").await, ["news", "cam", "sport1"]);
        store.delete_channel("cam").await.unwrap();
        store.close().await;
    }

    // Second run on the same file.
    let app = App::start(&config(&url)).await.unwrap();
    let api = app.http.unwrap();
    let (st, body) = http(api, "GET", "/api/channels", None).await;
    assert_eq!(st, 200);
    let listed: Vec<ChannelEntry> = serde_json::from_str(&body).unwrap();
    let mix = listed.iter().find(|c| c.id == "mix").expect("mix listed");
    assert_eq!(mix.kind, "personalized");
    assert_eq!(mix.name, "My mix");
    assert_eq!(mix.owner.as_deref(), Some("sip:alice@127.0.0.1"));
    assert!(
        listed.iter().all(|c| c.id != "camonly"),
        "a channel without any source left is removed: {body}"
    );
    let store = app.service.catalogue().store().clone();
    assert_eq!(sources(&store, "mix").await, ["news", "sport1"]);
    assert_eq!(store.channel_definition("news").await.unwrap(), None);

    // Joined by INVITE: the relay splices it again (slots longer than the test pattern's
    // 2 s GOP: a slot shorter than its source's GOP may never reach a key frame).
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = rtp.local_addr().unwrap().port();
    let joined = call(&app.service, invite("mix", "v1", port)).await;
    assert_eq!(joined.status.0, 200, "{joined:?}");
    let mut buf = vec![0u8; 2048];
    let mut last: Option<(u16, u32)> = None;
    for _ in 0..50 {
        let n = timeout(Duration::from_secs(3), rtp.recv(&mut buf))
            .await
            .expect("RTP of the restored personalised channel")
            .unwrap();
        let p = &buf[..n];
        let seq = u16::from_be_bytes([p[2], p[3]]);
        let ssrc = u32::from_be_bytes([p[8], p[9], p[10], p[11]]);
        if let Some((s, x)) = last {
            assert_eq!(ssrc, x, "one SSRC");
            assert_eq!(seq, s.wrapping_add(1), "consecutive sequence numbers");
        }
        last = Some((seq, ssrc));
    }
    let (st, body) = http(api, "GET", "/api/channels/mix/personalized", None).await;
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("\"relay-0\""), "{body}");
    app.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The definition column through the store API, on one backend; ids carry `p`.
async fn definitions(store: &Store, p: &str) {
    let id = format!("{p}-mix");
    let plain = format!("{p}-plain");
    let ch = |id: &str, kind| Channel {
        id: id.to_owned(),
        name: "x".into(),
        kind,
        owner: None,
        created_ms: 1_700_000_000_000,
        ingest_addr: None,
        relay: Some("relay-0".into()),
    };
    store
        .create_channel_with_definition(&ch(&id, ChannelKind::Personalized), "{\"v\":1}")
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_channel_with_definition(&ch(&id, ChannelKind::Personalized), "{}")
            .await,
        Err(as_server::store::Error::Duplicate(_))
    ));
    store
        .create_channel(&ch(&plain, ChannelKind::Producer))
        .await
        .unwrap();
    assert_eq!(
        store.channel_definition(&id).await.unwrap().as_deref(),
        Some("{\"v\":1}")
    );
    assert_eq!(store.channel_definition(&plain).await.unwrap(), None);
    assert!(store
        .channel_definition(&format!("{p}-none"))
        .await
        .is_err());
    // The row reads as any channel.
    assert_eq!(
        store.get_channel(&id).await.unwrap(),
        ch(&id, ChannelKind::Personalized)
    );
    store
        .set_channel_definition(&id, Some("{\"v\":2}"))
        .await
        .unwrap();
    assert!(store
        .set_channel_definition(&format!("{p}-none"), Some("{}"))
        .await
        .is_err());
    // Other tests share the database: look at our rows only.
    let mine: Vec<(String, String)> = store
        .channel_definitions()
        .await
        .unwrap()
        .into_iter()
        .filter(|(i, _)| i.starts_with(p))
        .collect();
    assert_eq!(mine, vec![(id.clone(), "{\"v\":2}".to_owned())]);
    store.delete_channel(&id).await.unwrap();
    store.delete_channel(&plain).await.unwrap();
    assert!(store
        .channel_definitions()
        .await
        .unwrap()
        .iter()
        .all(|(i, _)| !i.starts_with(p)));
}

#[tokio::test]
async fn definitions_on_sqlite() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    definitions(&store, "sq").await;
}

#[tokio::test]
async fn definitions_on_postgres() {
    let Ok(url) = std::env::var("TEST_POSTGRES_URL") else {
        eprintln!("TEST_POSTGRES_URL not set: PostgreSQL part skipped");
        return;
    };
    let store = Store::connect(&url).await.unwrap();
    let p = format!("pz{}-{:08x}", std::process::id(), rand::random::<u32>());
    definitions(&store, &p).await;
}
