//! Helpers shared by the as-server integration tests (`mod common;` in each test file):
//! parsing a request written with `\n` line ends, handing a request to the service as
//! the UE at [`UE`], a status-and-Allow assertion, a SIP client that records what the service sends, an SDP offer and one
//! HTTP/1.1 exchange. Each test binary uses a part of them.
#![allow(dead_code)]

pub mod udp_ue;

use std::net::SocketAddr;
use std::time::Duration;

use as_server::service::{Service, SipClient, TuRequest};
use as_server::sip::transaction::Transport;
use as_server::sip::{HeaderName, Message, Request, Response, StatusCode};
use tokio::sync::mpsc;
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

/// A SIP client for the service that answers every request it sends with 200 OK and
/// hands the request to the returned receiver.
pub fn recording_client() -> (SipClient, mpsc::UnboundedReceiver<Request>) {
    let (tx, sent) = mpsc::unbounded_channel();
    let client = SipClient::new(move |req: Request, _dest, _t| {
        let resp = Response::for_request(&req, StatusCode::OK, "OK");
        let _ = tx.send(req);
        Box::pin(async move { Ok(resp) })
    });
    (client, sent)
}

/// An SDP offer (RFC 3264 section 5) of one video stream at 127.0.0.1:`rtp_port`: H.264
/// (PT 96, packetization-mode 1) when `codec` is `h264`, else VP8 (PT 98), with
/// `a=<direction>`.
pub fn offer(rtp_port: u16, codec: &str, direction: &str) -> String {
    let (pt, map) = match codec {
        "h264" => (
            96,
            "a=rtpmap:96 H264/90000\na=fmtp:96 packetization-mode=1\n",
        ),
        _ => (98, "a=rtpmap:98 VP8/90000\n"),
    };
    format!(
        "v=0\no=ue 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n\
         m=video {rtp_port} RTP/AVP {pt}\n{map}a={direction}\n"
    )
}

/// Asserts that `r` has status `status` and an `Allow` header (RFC 3261 section 20.5) that
/// contains `method`.
pub fn assert_allow_lists(r: &Response, status: u16, method: &str) {
    assert_eq!(r.status.0, status);
    assert!(r.headers.get(&HeaderName::ALLOW).unwrap().contains(method));
}
