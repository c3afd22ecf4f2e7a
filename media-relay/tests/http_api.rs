//! The JSON/HTTP control API over a real relay on 127.0.0.1 (raw HTTP/1.1, bounded waits).

use std::net::SocketAddr;
use std::time::Duration;

use media_relay::control::RelayConfig;
use media_relay::driver::http;
use media_relay::Relay;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

async fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
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
    let text = String::from_utf8_lossy(&out).into_owned();
    let status: u16 = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn control_api_over_http() {
    let handle = Relay::spawn(RelayConfig::default()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = http::router(handle.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let (st, body) = request(addr, "GET", "/healthz", "").await;
    assert_eq!((st, body.as_str()), (200, "ok"));

    let (st, body) = request(addr, "POST", "/channels", r#"{"channel":"news"}"#).await;
    assert_eq!(st, 201, "{body}");
    let ingest: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ingest["channel"], "news");
    assert!(ingest["rtp_addr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));

    let (st, _) = request(addr, "POST", "/channels", r#"{"channel":"news"}"#).await;
    assert_eq!(st, 409);
    let (st, _) = request(addr, "POST", "/channels", r#"{"chan"#).await;
    assert!((400..500).contains(&st));

    let viewer = r#"{"viewer":7,"channel":"news","rtp_dest":"127.0.0.1:9","payload_type":96}"#;
    let (st, body) = request(addr, "POST", "/viewers", viewer).await;
    assert_eq!(st, 201, "{body}");
    let info: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(info["ssrc"].as_u64().is_some());
    assert!(info["relay_rtcp"].as_str().is_some());

    let (st, _) = request(addr, "POST", "/channels", r#"{"channel":"sport"}"#).await;
    assert_eq!(st, 201);
    let (st, _) = request(addr, "POST", "/viewers/7/switch", r#"{"channel":"sport"}"#).await;
    assert_eq!(st, 204);
    let (st, _) = request(addr, "POST", "/viewers/7/switch", r#"{"channel":"nope"}"#).await;
    assert_eq!(st, 404);

    let (st, body) = request(addr, "GET", "/stats", "").await;
    assert_eq!(st, 200);
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["viewers"][0]["channel"], "sport");
    assert_eq!(stats["viewers"][0]["zaps"], 1);

    let (st, body) = request(addr, "GET", "/metrics", "").await;
    assert_eq!(st, 200);
    assert!(body.contains("# TYPE media_relay_packets_in_total counter"));
    assert!(body.contains("media_relay_viewers 1"));
    assert!(body.contains("media_relay_channel_viewers{channel=\"sport\"} 1"));

    let (st, _) = request(addr, "DELETE", "/viewers/7", "").await;
    assert_eq!(st, 204);
    let (st, _) = request(addr, "DELETE", "/viewers/7", "").await;
    assert_eq!(st, 404);
    let (st, _) = request(addr, "DELETE", "/channels/news", "").await;
    assert_eq!(st, 204);
    let (st, _) = request(addr, "DELETE", "/channels/news", "").await;
    assert_eq!(st, 404);
    handle.shutdown().await.unwrap();
}
