//! Helpers shared by the as-server integration tests (`mod common;` in each test file):
//! parsing a request written with `\n` line ends, handing a request to the service as
//! the UE at [`UE`] and one HTTP/1.1 exchange. Each test binary uses a part of them.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use as_server::service::{Service, TuRequest};
use as_server::sip::transaction::Transport;
use as_server::sip::{Message, Request, Response};
use tokio::time::timeout;

/// The UE's source address for requests handed to the service by [`call`].
pub const UE: &str = "127.0.0.1:5099";

/// Parses `text` (lines ended by `\n`, turned into CRLF) as a request; panics on a response.
pub fn parse(text: &str) -> Request {
    match Message::parse(text.replace('\n', "\r\n").as_bytes()).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => panic!("not a request"),
    }
}

/// Hands `req` to the service as if it came from [`UE`] over UDP; its final response
/// (5 s at most).
pub async fn call(svc: &Service, req: Request) -> Response {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let src: SocketAddr = UE.parse().unwrap();
    svc.handle(TuRequest::new(req, src, Transport::Udp, move |r| {
        let _ = tx.send(r);
    }))
    .await;
    timeout(Duration::from_secs(5), rx).await.unwrap().unwrap()
}

/// Sends the raw HTTP/1.1 request `req` over a fresh connection to `addr` and reads until
/// the server closes (5 s at most); returns (status, body).
pub async fn http_exchange(addr: SocketAddr, req: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
