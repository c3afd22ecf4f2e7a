//! Personalised channels over the relay's JSON/HTTP control API (real relay on 127.0.0.1, raw
//! HTTP/1.1, bounded waits): `POST /personalized` creates one over existing channels, `GET
//! /personalized` shows its splicer, refusals map to 400/404/409, a viewer of it gets spliced
//! RTP with one SSRC, `DELETE /channels/{id}` removes it.

use std::net::SocketAddr;
use std::time::Duration;

use media_relay::control::RelayConfig;
use media_relay::driver::http;
use media_relay::Relay;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
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
async fn personalised_channel_over_http() {
    let handle = Relay::spawn(RelayConfig::default()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = http::router(handle.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });

    for c in ["a", "b"] {
        let (st, body) = request(
            addr,
            "POST",
            "/channels",
            &format!(r#"{{"channel":"{c}"}}"#),
        )
        .await;
        assert_eq!(st, 201, "{body}");
        let (st, _) = request(addr, "POST", &format!("/channels/{c}/test-pattern"), "").await;
        assert_eq!(st, 204);
    }
    let spec = r#"{"channel":"mix","schedule":[{"channel":"a","seconds":1},{"channel":"b","seconds":1.5}]}"#;
    let (st, body) = request(addr, "POST", "/personalized", spec).await;
    assert_eq!(st, 201, "{body}");
    let info: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["channel"], "mix");
    assert_eq!(info["sources"], serde_json::json!(["a", "b"]));
    assert_eq!(info["period_secs"], 2.5);

    // Refusals.
    let (st, _) = request(addr, "POST", "/personalized", spec).await;
    assert_eq!(st, 409, "exists");
    let unknown = r#"{"channel":"m2","schedule":[{"channel":"zz","seconds":1}]}"#;
    let (st, _) = request(addr, "POST", "/personalized", unknown).await;
    assert_eq!(st, 404, "unknown source");
    for bad in [
        r#"{"channel":"m2","schedule":[]}"#,
        r#"{"channel":"m2","schedule":[{"channel":"a","seconds":0}]}"#,
        r#"{"channel":"m2","schedule":[{"channel":"mix","seconds":1}]}"#,
    ] {
        let (st, body) = request(addr, "POST", "/personalized", bad).await;
        assert_eq!(st, 400, "{bad}: {body}");
    }
    let (st, _) = request(addr, "POST", "/personalized", r#"{"chan"#).await;
    assert!((400..500).contains(&st));

    // A viewer of the mix gets RTP with one SSRC, consecutive sequence numbers.
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let viewer = format!(
        r#"{{"viewer":1,"channel":"mix","rtp_dest":"{}","payload_type":96}}"#,
        sock.local_addr().unwrap()
    );
    let (st, body) = request(addr, "POST", "/viewers", &viewer).await;
    assert_eq!(st, 201, "{body}");
    let mut buf = [0u8; 2048];
    let mut last: Option<(u16, u32)> = None;
    for _ in 0..40 {
        let n = timeout(Duration::from_secs(3), sock.recv(&mut buf))
            .await
            .expect("spliced RTP within 3 s")
            .unwrap();
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        assert!(n > 12);
        if let Some((s, x)) = last {
            assert_eq!((seq, ssrc), (s.wrapping_add(1), x));
        }
        last = Some((seq, ssrc));
    }
    let (st, body) = request(addr, "GET", "/personalized", "").await;
    assert_eq!(st, 200);
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats[0]["channel"], "mix");
    assert!(stats[0]["switches"].as_u64().unwrap() >= 1, "{body}");
    assert!(stats[0]["forwarded"].as_u64().unwrap() >= 40, "{body}");

    let (st, _) = request(addr, "DELETE", "/channels/mix", "").await;
    assert_eq!(st, 204);
    let (st, body) = request(addr, "GET", "/personalized", "").await;
    assert_eq!((st, body.as_str()), (200, "[]"));
    let _ = handle.shutdown().await;
}
