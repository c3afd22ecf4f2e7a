//! SIP endpoint driver tests with real sockets on 127.0.0.1 (UDP, TCP, TLS).
//!
//! Every wait is bounded (`timeout`); no assertion depends on timing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use as_server::driver::sip::{EndpointConfig, IncomingRequest, SipEndpoint};
use as_server::sip::transaction::{TimerConfig, Transport};
use as_server::sip::{
    Frame, HeaderName, Message, Method, Request, Response, StatusCode, StreamFramer, Uri,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::timeout;

mod common;

const WAIT: Duration = Duration::from_secs(5);

fn loopback_config() -> EndpointConfig {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    EndpointConfig {
        udp: Some(any),
        tcp: Some(any),
        tls: Some(any),
        ..EndpointConfig::default()
    }
}

/// A TU that answers INVITE 200 (with tag and Contact), MESSAGE 486 after a 180, forwards
/// ACK/CANCEL to `seen`, and drops everything else unanswered (the endpoint's fallback).
fn spawn_tu(mut rx: mpsc::Receiver<IncomingRequest>) -> mpsc::UnboundedReceiver<Request> {
    let (seen_tx, seen_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(inc) = rx.recv().await {
            let _ = seen_tx.send(inc.request.clone());
            let m = inc.request.method.clone();
            if m == Method::INVITE {
                let mut ok = Response::for_request(&inc.request, StatusCode(200), "OK")
                    .with_to_tag("tu-tag");
                ok.headers.push(HeaderName::CONTACT, "<sip:news@127.0.0.1>");
                inc.respond(ok);
            } else if m == Method::MESSAGE {
                let ringing = Response::for_request(&inc.request, StatusCode(180), "Ringing")
                    .with_to_tag("tu-tag");
                inc.provisional(ringing);
                let busy = Response::for_request(&inc.request, StatusCode(486), "Busy Here")
                    .with_to_tag("tu-tag");
                inc.respond(busy);
            }
            // Others: dropped -> fallback answer.
        }
    });
    seen_rx
}

fn request_text(
    method: &str,
    transport: &str,
    local: SocketAddr,
    branch: &str,
    call: &str,
) -> String {
    format!(
        "{method} sip:news@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/{transport} {local};branch=z9hG4bK{branch};rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:ue@127.0.0.1>;tag=ue1\r\n\
To: <sip:news@127.0.0.1>\r\n\
Call-ID: {call}\r\n\
CSeq: 1 {method}\r\n\
Contact: <sip:ue@{local}>\r\n\
Content-Length: 0\r\n\r\n"
    )
}

async fn recv_response(sock: &UdpSocket) -> Response {
    let mut buf = vec![0u8; 65_535];
    let (n, _) = timeout(WAIT, sock.recv_from(&mut buf))
        .await
        .expect("response within 5 s")
        .unwrap();
    match Message::parse(&buf[..n]).expect("endpoint sends parsable messages") {
        Message::Response(r) => r,
        Message::Request(r) => panic!("expected a response, got {}", r.method),
    }
}

async fn udp_client() -> (UdpSocket, SocketAddr) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = sock.local_addr().unwrap();
    (sock, local)
}

#[tokio::test]
async fn udp_options_is_answered_200_with_capabilities_and_rport() {
    let (ep, rx) = SipEndpoint::bind(loopback_config()).await.unwrap();
    let _seen = spawn_tu(rx);
    let server = ep.local_addrs().udp.unwrap();
    let (sock, local) = udp_client().await;
    sock.send_to(
        request_text("OPTIONS", "UDP", local, "opt1", "c-opt").as_bytes(),
        server,
    )
    .await
    .unwrap();
    let r = recv_response(&sock).await;
    common::assert_allow_lists(&r, 200, "INVITE");
    assert!(r.headers.contains(&HeaderName::ACCEPT));
    assert!(r.headers.contains(&HeaderName::SUPPORTED));
    let via = r.headers.get(&HeaderName::VIA).unwrap();
    assert!(via.contains(&format!("rport={}", local.port())), "{via}");
    assert_eq!(r.call_id().unwrap(), "c-opt");
}

#[tokio::test]
async fn options_answered_even_without_a_tu() {
    let (ep, rx) = SipEndpoint::bind(loopback_config()).await.unwrap();
    drop(rx);
    let server = ep.local_addrs().udp.unwrap();
    let (sock, local) = udp_client().await;
    sock.send_to(
        request_text("OPTIONS", "UDP", local, "opt2", "c-opt2").as_bytes(),
        server,
    )
    .await
    .unwrap();
    assert_eq!(recv_response(&sock).await.status.0, 200);
    // Other requests get 503 when there is no TU.
    sock.send_to(
        request_text("INFO", "UDP", local, "info1", "c-info").as_bytes(),
        server,
    )
    .await
    .unwrap();
    let r = recv_response(&sock).await;
    assert_eq!(r.status.0, 503);
    assert!(r.headers.contains(&HeaderName::RETRY_AFTER));
}

#[tokio::test]
async fn udp_invite_gets_100_then_200_and_the_2xx_ack_reaches_the_tu() {
    let (ep, rx) = SipEndpoint::bind(loopback_config()).await.unwrap();
    let mut seen = spawn_tu(rx);
    let server = ep.local_addrs().udp.unwrap();
    let (sock, local) = udp_client().await;
    sock.send_to(
        request_text("INVITE", "UDP", local, "inv1", "c-inv").as_bytes(),
        server,
    )
    .await
    .unwrap();
    let first = recv_response(&sock).await;
    assert_eq!(first.status.0, 100);
    let fin = recv_response(&sock).await;
    assert_eq!(fin.status.0, 200);
    assert_eq!(fin.to().unwrap().tag(), Some("tu-tag"));
    // ACK for the 2xx: a new branch, end-to-end.
    let ack = format!(
        "ACK sip:news@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP {local};branch=z9hG4bKack1;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:ue@127.0.0.1>;tag=ue1\r\n\
To: <sip:news@127.0.0.1>;tag=tu-tag\r\n\
Call-ID: c-inv\r\n\
CSeq: 1 ACK\r\n\
Content-Length: 0\r\n\r\n"
    );
    sock.send_to(ack.as_bytes(), server).await.unwrap();
    let methods: Vec<Method> = [
        timeout(WAIT, seen.recv()).await.unwrap().unwrap(),
        timeout(WAIT, seen.recv()).await.unwrap().unwrap(),
    ]
    .into_iter()
    .map(|r| r.method)
    .collect();
    assert_eq!(methods, vec![Method::INVITE, Method::ACK]);
}

#[tokio::test]
async fn provisional_then_final_from_the_tu() {
    let (ep, rx) = SipEndpoint::bind(loopback_config()).await.unwrap();
    let _seen = spawn_tu(rx);
    let server = ep.local_addrs().udp.unwrap();
    let (sock, local) = udp_client().await;
    sock.send_to(
        request_text("MESSAGE", "UDP", local, "msg1", "c-msg").as_bytes(),
        server,
    )
    .await
    .unwrap();
    assert_eq!(recv_response(&sock).await.status.0, 180);
    assert_eq!(recv_response(&sock).await.status.0, 486);
}

#[tokio::test]
async fn garbage_datagrams_do_not_stop_the_endpoint() {
    let (ep, rx) = SipEndpoint::bind(loopback_config()).await.unwrap();
    let _seen = spawn_tu(rx);
    let server = ep.local_addrs().udp.unwrap();
    let (sock, local) = udp_client().await;
    // Pure garbage, an empty-ish datagram, binary noise: dropped.
    for junk in [
        &b"\x00\x01\x02garbage\xff\xfe"[..],
        b"\r\n\r\n",
        b"SIP/2.0 200\r\n",
        &[0xffu8; 1500][..],
    ] {
        sock.send_to(junk, server).await.unwrap();
    }
    // A request that can be answered (request line and Via readable) but is invalid:
    // stateless 400 with the codec's reason phrase.
    let bad = format!(
        "INVITE sip:news@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP {local};branch=z9hG4bKbad1;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:ue@127.0.0.1>;tag=ue1\r\n\
To: <sip:news@127.0.0.1>\r\n\
Call-ID: c-bad\r\n\
CSeq: notanumber INVITE\r\n\
Content-Length: 0\r\n\r\n"
    );
    sock.send_to(bad.as_bytes(), server).await.unwrap();
    // The 400 echoes the bad CSeq (RFC 3261 8.2.6.2 copies it), so read it as text.
    let mut buf = vec![0u8; 65_535];
    let (n, _) = timeout(WAIT, sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    let status_line = text.lines().next().unwrap();
    assert!(
        status_line.starts_with("SIP/2.0 400 Bad Request ("),
        "{status_line}"
    );
    assert!(text.contains("Call-ID: c-bad"), "{text}");
    // Body shorter than Content-Length on UDP (RFC 3261 18.3): 400, parsable this time.
    let short = request_text("OPTIONS", "UDP", local, "short1", "c-short")
        .replace("Content-Length: 0", "Content-Length: 99");
    sock.send_to(short.as_bytes(), server).await.unwrap();
    let r = recv_response(&sock).await;
    assert_eq!(r.status.0, 400);
    assert!(r.reason.starts_with("Bad Request"), "{}", r.reason);
    assert!(
        r.reason.len() > "Bad Request".len(),
        "reason names the cause: {}",
        r.reason
    );
    assert_eq!(r.call_id().unwrap(), "c-short");
    // Still serving.
    sock.send_to(
        request_text("OPTIONS", "UDP", local, "opt3", "c-after").as_bytes(),
        server,
    )
    .await
    .unwrap();
    let r = recv_response(&sock).await;
    assert_eq!(r.status.0, 200);
    assert_eq!(r.call_id().unwrap(), "c-after");
}

/// Reads complete SIP messages from a stream until `n` were read.
async fn read_messages<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, n: usize) -> Vec<Message> {
    let mut framer = StreamFramer::new();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 8192];
    while out.len() < n {
        let read = timeout(WAIT, stream.read(&mut buf))
            .await
            .expect("data within 5 s")
            .unwrap();
        assert!(read > 0, "connection closed early");
        framer.push(&buf[..read]);
        while let Some(frame) = framer.next_frame().unwrap() {
            if let Frame::Message(m) = frame {
                out.push(m);
            }
        }
    }
    out
}

fn statuses(msgs: &[Message]) -> Vec<u16> {
    msgs.iter()
        .map(|m| match m {
            Message::Response(r) => r.status.0,
            Message::Request(_) => 0,
        })
        .collect()
}

#[tokio::test]
async fn tcp_two_messages_in_one_segment_and_one_split_across_segments() {
    let (ep, rx) = SipEndpoint::bind(loopback_config()).await.unwrap();
    let _seen = spawn_tu(rx);
    let server = ep.local_addrs().tcp.unwrap();
    let mut s = TcpStream::connect(server).await.unwrap();
    s.set_nodelay(true).unwrap();
    let local = s.local_addr().unwrap();
    let two = format!(
        "{}{}",
        request_text("OPTIONS", "TCP", local, "t1", "c-t1"),
        request_text("OPTIONS", "TCP", local, "t2", "c-t2")
    );
    s.write_all(two.as_bytes()).await.unwrap();
    let got = read_messages(&mut s, 2).await;
    assert_eq!(statuses(&got), vec![200, 200]);
    let ids: Vec<String> = got
        .iter()
        .map(|m| match m {
            Message::Response(r) => r.call_id().unwrap().to_owned(),
            Message::Request(_) => String::new(),
        })
        .collect();
    assert_eq!(ids, vec!["c-t1", "c-t2"]);

    // One message in three pieces, the cut inside a header and inside the blank line.
    let one = request_text("INVITE", "TCP", local, "t3", "c-t3");
    let (a, rest) = one.split_at(40);
    let (b, c) = rest.split_at(rest.len() - 3);
    for piece in [a, b, c] {
        s.write_all(piece.as_bytes()).await.unwrap();
        s.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = read_messages(&mut s, 2).await;
    assert_eq!(statuses(&got), vec![100, 200]);

    // Keep-alive ping (RFC 5626): CRLFCRLF -> CRLF.
    s.write_all(b"\r\n\r\n").await.unwrap();
    let mut pong = [0u8; 2];
    timeout(WAIT, s.read_exact(&mut pong))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&pong, b"\r\n");
}

#[tokio::test]
async fn tcp_garbage_gets_closed_and_the_listener_keeps_serving() {
    let (ep, rx) = SipEndpoint::bind(loopback_config()).await.unwrap();
    let _seen = spawn_tu(rx);
    let server = ep.local_addrs().tcp.unwrap();
    let mut bad = TcpStream::connect(server).await.unwrap();
    // No Content-Length on a stream: cannot be framed.
    bad.write_all(
        b"OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bKq\r\n\r\n",
    )
    .await
    .unwrap();
    let mut sink = Vec::new();
    let _ = timeout(WAIT, bad.read_to_end(&mut sink))
        .await
        .expect("closed within 5 s");
    let mut good = TcpStream::connect(server).await.unwrap();
    let local = good.local_addr().unwrap();
    good.write_all(request_text("OPTIONS", "TCP", local, "g1", "c-g1").as_bytes())
        .await
        .unwrap();
    assert_eq!(statuses(&read_messages(&mut good, 1).await), vec![200]);
}

#[tokio::test]
async fn tls_options_and_invite() {
    let (ep, rx) = SipEndpoint::bind(loopback_config()).await.unwrap();
    let _seen = spawn_tu(rx);
    let server = ep.local_addrs().tls.unwrap();
    let cert = ep.tls_certificate().unwrap().clone();
    let config = as_server::driver::tls::client_config([cert]).unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);
    let tcp = TcpStream::connect(server).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = timeout(WAIT, connector.connect(name, tcp))
        .await
        .unwrap()
        .unwrap();
    tls.write_all(request_text("OPTIONS", "TLS", local, "s1", "c-s1").as_bytes())
        .await
        .unwrap();
    assert_eq!(statuses(&read_messages(&mut tls, 1).await), vec![200]);
    tls.write_all(request_text("INVITE", "TLS", local, "s2", "c-s2").as_bytes())
        .await
        .unwrap();
    assert_eq!(statuses(&read_messages(&mut tls, 2).await), vec![100, 200]);
}

fn notify_to(target: SocketAddr) -> Request {
    let mut r = Request::new(
        Method::NOTIFY,
        Uri::parse(&format!("sip:ue@{target}")).unwrap(),
    );
    r.headers
        .push(HeaderName::FROM, "<sip:channels@127.0.0.1>;tag=as1");
    r.headers.push(HeaderName::TO, "<sip:ue@127.0.0.1>;tag=ue1");
    r.headers.push(HeaderName::CALL_ID, "c-notify");
    r.headers.push(HeaderName::CSEQ, "1 NOTIFY");
    r.headers.push(HeaderName::EVENT, "iptv-channels");
    r.headers.push(HeaderName::SUBSCRIPTION_STATE, "active");
    r
}

/// A scripted UE answering every request on `sock` with `code` (after `drop_first` drops).
fn spawn_udp_ue(sock: UdpSocket, code: u16, drop_first: usize) -> mpsc::UnboundedReceiver<Request> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        let mut seen = 0;
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let Ok(Message::Request(req)) = Message::parse(&buf[..n]) else {
                continue;
            };
            seen += 1;
            let _ = tx.send(req.clone());
            if seen <= drop_first {
                continue;
            }
            let resp = Response::for_request(&req, StatusCode(code), "Scripted");
            let _ = sock.send_to(&resp.to_bytes(), from).await;
        }
    });
    rx
}

#[tokio::test]
async fn send_request_over_udp_returns_the_final_response() {
    let cfg = EndpointConfig {
        timers: TimerConfig {
            t1: Duration::from_millis(20),
            ..TimerConfig::default()
        },
        ..loopback_config()
    };
    let (ep, _rx) = SipEndpoint::bind(cfg).await.unwrap();
    let (ue, ue_addr) = udp_client().await;
    // The UE ignores the first NOTIFY: the retransmission (timer E) gets the answer.
    let mut seen = spawn_udp_ue(ue, 200, 1);
    let resp = timeout(
        WAIT,
        ep.send_request(notify_to(ue_addr), ue_addr, Transport::Udp),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(resp.status.0, 200);
    let first = seen.recv().await.unwrap();
    let second = seen.recv().await.unwrap();
    let via = first.headers.get(&HeaderName::VIA).unwrap();
    assert!(via.starts_with("SIP/2.0/UDP 127.0.0.1:"), "{via}");
    assert!(via.contains("branch=z9hG4bK"), "{via}");
    assert_eq!(
        via,
        second.headers.get(&HeaderName::VIA).unwrap(),
        "retransmission"
    );
    assert_eq!(first.headers.get(&HeaderName::MAX_FORWARDS), Some("70"));
}

#[tokio::test]
async fn send_request_times_out_with_408() {
    let cfg = EndpointConfig {
        timers: TimerConfig {
            t1: Duration::from_millis(5),
            t2: Duration::from_millis(20),
            ..TimerConfig::default()
        },
        ..loopback_config()
    };
    let (ep, _rx) = SipEndpoint::bind(cfg).await.unwrap();
    let (silent, silent_addr) = udp_client().await;
    let resp = timeout(
        WAIT,
        ep.send_request(notify_to(silent_addr), silent_addr, Transport::Udp),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(resp.status.0, 408);
    drop(silent);
}

#[tokio::test]
async fn send_request_over_tcp_opens_a_connection_and_gets_the_answer_on_it() {
    let (ep, _rx) = SipEndpoint::bind(loopback_config()).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ue_addr = listener.local_addr().unwrap();
    let ue = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut reqs = Vec::new();
        for _ in 0..2 {
            let m = read_messages(&mut s, 1).await.remove(0);
            let Message::Request(req) = m else { panic!() };
            let resp = Response::for_request(&req, StatusCode(200), "OK");
            s.write_all(&resp.to_bytes()).await.unwrap();
            reqs.push(req);
        }
        reqs
    });
    for _ in 0..2 {
        let resp = timeout(
            WAIT,
            ep.send_request(notify_to(ue_addr), ue_addr, Transport::Tcp),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(resp.status.0, 200);
    }
    // Both requests came over the one accepted connection (reuse).
    let reqs = timeout(WAIT, ue).await.unwrap().unwrap();
    assert!(reqs[0]
        .headers
        .get(&HeaderName::VIA)
        .unwrap()
        .starts_with("SIP/2.0/TCP"));
}

#[tokio::test]
async fn send_request_to_a_closed_tcp_port_is_a_503() {
    let (ep, _rx) = SipEndpoint::bind(loopback_config()).await.unwrap();
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let resp = timeout(
        WAIT,
        ep.send_request(notify_to(closed), closed, Transport::Tcp),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(resp.status.0, 503);
}

#[tokio::test]
async fn many_concurrent_udp_clients_are_served() {
    let (ep, rx) = SipEndpoint::bind(loopback_config()).await.unwrap();
    let _seen = spawn_tu(rx);
    let server = ep.local_addrs().udp.unwrap();
    let ok = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..50 {
        let ok = ok.clone();
        tasks.push(tokio::spawn(async move {
            let (sock, local) = udp_client().await;
            let text = request_text(
                "OPTIONS",
                "UDP",
                local,
                &format!("m{i}"),
                &format!("c-m{i}"),
            );
            sock.send_to(text.as_bytes(), server).await.unwrap();
            if recv_response(&sock).await.status.0 == 200 {
                ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(ok.load(std::sync::atomic::Ordering::Relaxed), 50);
}

#[tokio::test]
async fn cancel_over_udp_gets_200_and_487_and_the_tu_sees_it() {
    let (ep, mut rx) = SipEndpoint::bind(loopback_config()).await.unwrap();
    let server = ep.local_addrs().udp.unwrap();
    // A TU that never answers the INVITE by itself but reports what it gets.
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(inc) = rx.recv().await {
            let _ = seen_tx.send((
                inc.request.method.clone(),
                inc.cancels.is_some(),
                inc.transaction(),
            ));
            held.push(inc);
        }
    });
    let (sock, local) = udp_client().await;
    let invite = request_text("INVITE", "UDP", local, "can1", "c-can");
    sock.send_to(invite.as_bytes(), server).await.unwrap();
    assert_eq!(recv_response(&sock).await.status.0, 100);
    let cancel = invite
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    sock.send_to(cancel.as_bytes(), server).await.unwrap();
    let mut got = [recv_response(&sock).await, recv_response(&sock).await];
    got.sort_by_key(|r| r.status.0);
    assert_eq!(got[0].status.0, 200);
    assert_eq!(got[0].cseq().unwrap().method, Method::CANCEL);
    assert_eq!(got[1].status.0, 487);
    assert_eq!(got[1].cseq().unwrap().method, Method::INVITE);
    let (m1, c1, t1) = timeout(WAIT, seen.recv()).await.unwrap().unwrap();
    let (m2, c2, t2) = timeout(WAIT, seen.recv()).await.unwrap().unwrap();
    assert_eq!((m1, c1), (Method::INVITE, false));
    assert!(t1.is_some());
    assert_eq!((m2, c2, t2), (Method::CANCEL, true, None));
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let (ep, rx) = SipEndpoint::bind(loopback_config()).await.unwrap();
    let _seen = spawn_tu(rx);
    ep.shutdown();
    let (silent, silent_addr) = udp_client().await;
    let r = timeout(
        WAIT,
        ep.send_request(notify_to(silent_addr), silent_addr, Transport::Udp),
    )
    .await
    .unwrap();
    assert!(r.is_err(), "stopped endpoint refuses to send");
    drop(silent);
}

/// Timer E/F through the real driver in paused tokio time: 32 s of retransmissions take no
/// wall-clock time.
#[tokio::test(start_paused = true)]
async fn paused_time_timer_f_with_default_timers() {
    let (ep, _rx) = SipEndpoint::bind(loopback_config()).await.unwrap();
    let (silent, silent_addr) = udp_client().await;
    let start = as_server::driver::now();
    let resp = ep
        .send_request(notify_to(silent_addr), silent_addr, Transport::Udp)
        .await
        .unwrap();
    assert_eq!(resp.status.0, 408);
    assert_eq!(as_server::driver::now() - start, Duration::from_secs(32));
    // E fired at 0.5, 1.5, 3.5, 7.5, 11.5 ... 31.5: 11 copies reached the silent peer.
    let mut buf = vec![0u8; 65_535];
    let mut copies = 0;
    while silent.try_recv_from(&mut buf).is_ok() {
        copies += 1;
    }
    assert_eq!(copies, 11);
}

#[tokio::test]
async fn tcp_response_after_the_connection_closed_goes_to_received_and_sent_by_port() {
    let (ep, mut rx) = SipEndpoint::bind(loopback_config()).await.unwrap();
    let server = ep.local_addrs().tcp.unwrap();
    let (held_tx, mut held) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(inc) = rx.recv().await {
            let _ = held_tx.send(inc);
        }
    });
    // The UE's own listener: its Via sent-by port (RFC 3261 18.2.2).
    let ue_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sent_by = ue_listener.local_addr().unwrap();
    let mut conn = TcpStream::connect(server).await.unwrap();
    conn.write_all(request_text("MESSAGE", "TCP", sent_by, "rc1", "c-rc").as_bytes())
        .await
        .unwrap();
    let inc = timeout(WAIT, held.recv()).await.unwrap().unwrap();
    drop(conn);
    // Let the endpoint see the close (not a timing assertion: only a head start).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let busy = Response::for_request(&inc.request, StatusCode(486), "Busy Here").with_to_tag("x");
    inc.respond(busy);
    let (mut back, _) = timeout(WAIT, ue_listener.accept()).await.unwrap().unwrap();
    let got = read_messages(&mut back, 1).await;
    assert_eq!(statuses(&got), vec![486]);
}

/// Two endpoints over UDP: B (a UE built on the same stack) INVITEs A (the AS); A makes a UAS
/// dialog and answers 200; B ACKs end to end; A later sends BYE from its dialog, B answers.
#[tokio::test]
async fn endpoint_to_endpoint_dialog_invite_ack_and_uas_bye() {
    use as_server::sip::dialog::{self, Dialog};

    let (as_ep, mut as_rx) = SipEndpoint::bind(loopback_config()).await.unwrap();
    let (ue_ep, mut ue_rx) = SipEndpoint::bind(loopback_config()).await.unwrap();
    let as_addr = as_ep.local_addrs().udp.unwrap();
    let ue_addr = ue_ep.local_addrs().udp.unwrap();

    // AS: answers the INVITE with a dialog, reports the dialog and the ACK.
    let (dlg_tx, mut dlg_rx) = mpsc::unbounded_channel();
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(inc) = as_rx.recv().await {
            if inc.request.method == Method::INVITE {
                let ok = dialog::uas_response(
                    &inc.request,
                    StatusCode(200),
                    "OK",
                    &dialog::new_tag(),
                    &format!("<sip:news@{as_addr}>"),
                );
                let d = Dialog::uas(&inc.request, &ok, false).unwrap();
                inc.respond(ok);
                let _ = dlg_tx.send(d);
            } else if inc.request.method == Method::ACK {
                let _ = ack_tx.send(inc.request.clone());
            }
        }
    });
    // UE: answers BYE 200.
    let (bye_tx, mut bye_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(inc) = ue_rx.recv().await {
            if inc.request.method == Method::BYE {
                let _ = bye_tx.send(inc.request.clone());
                let ok = Response::for_request(&inc.request, StatusCode(200), "OK");
                inc.respond(ok);
            }
        }
    });

    let mut invite = Request::new(
        Method::INVITE,
        Uri::parse(&format!("sip:news@{as_addr}")).unwrap(),
    );
    invite
        .headers
        .push(HeaderName::FROM, "<sip:ue@127.0.0.1>;tag=ue-tag");
    invite.headers.push(HeaderName::TO, "<sip:news@127.0.0.1>");
    invite.headers.push(HeaderName::CALL_ID, "e2e-dialog-1");
    invite.headers.push(HeaderName::CSEQ, "7 INVITE");
    invite
        .headers
        .push(HeaderName::CONTACT, format!("<sip:ue@{ue_addr}>"));
    let ok = timeout(
        WAIT,
        ue_ep.send_request(invite.clone(), as_addr, Transport::Udp),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(ok.status.0, 200);

    // UE side: UAC dialog, ACK to the remote target (the AS's Contact).
    let Dialog::Confirmed(ue_dialog) = Dialog::uac(&invite, &ok, false).unwrap() else {
        panic!("2xx confirms")
    };
    let (ack_dest, ack_transport) = ue_dialog.core.next_hop().unwrap();
    assert_eq!(ack_dest, as_addr);
    ue_ep
        .send_stateless(Message::Request(ue_dialog.ack(7)), ack_dest, ack_transport)
        .unwrap();
    let ack = timeout(WAIT, ack_rx.recv()).await.unwrap().unwrap();
    assert_eq!(ack.cseq().unwrap().seq, 7);

    // AS side: BYE from the UAS dialog to the UE's Contact.
    let Dialog::Confirmed(as_dialog) = timeout(WAIT, dlg_rx.recv()).await.unwrap().unwrap() else {
        panic!("2xx confirms")
    };
    assert_eq!(as_dialog.core.id.remote_tag, "ue-tag");
    let (dest, transport) = as_dialog.core.next_hop().unwrap();
    assert_eq!(dest, ue_addr);
    let (bye, ended) = as_dialog.bye();
    let resp = timeout(WAIT, as_ep.send_request(bye, dest, transport))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status.0, 200);
    assert_eq!(ended.id.call_id, "e2e-dialog-1");
    let got = timeout(WAIT, bye_rx.recv()).await.unwrap().unwrap();
    assert_eq!(got.to().unwrap().tag(), Some("ue-tag"));
    assert_eq!(got.call_id().unwrap(), "e2e-dialog-1");
}

#[tokio::test]
async fn send_request_reconnects_after_the_peer_closed_the_connection() {
    let (ep, _rx) = SipEndpoint::bind(loopback_config()).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ue_addr = listener.local_addr().unwrap();
    let ue = tokio::spawn(async move {
        // One request per connection, then close.
        for _ in 0..2 {
            let (mut s, _) = listener.accept().await.unwrap();
            let Message::Request(req) = read_messages(&mut s, 1).await.remove(0) else {
                panic!()
            };
            let resp = Response::for_request(&req, StatusCode(200), "OK");
            s.write_all(&resp.to_bytes()).await.unwrap();
            s.shutdown().await.unwrap();
        }
    });
    for _ in 0..2 {
        let resp = timeout(
            WAIT,
            ep.send_request(notify_to(ue_addr), ue_addr, Transport::Tcp),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(resp.status.0, 200);
    }
    timeout(WAIT, ue).await.unwrap().unwrap();
}

#[tokio::test]
async fn ipv6_udp_options_and_notify() {
    let any6: SocketAddr = "[::1]:0".parse().unwrap();
    let cfg = EndpointConfig {
        udp: Some(any6),
        tcp: None,
        tls: None,
        ..EndpointConfig::default()
    };
    let Ok((ep, rx)) = SipEndpoint::bind(cfg).await else {
        eprintln!("no IPv6 loopback here: skipped");
        return;
    };
    let _seen = spawn_tu(rx);
    let server = ep.local_addrs().udp.unwrap();
    let sock = UdpSocket::bind(any6).await.unwrap();
    let local = sock.local_addr().unwrap();
    sock.send_to(
        request_text("OPTIONS", "UDP", local, "v6", "c-v6").as_bytes(),
        server,
    )
    .await
    .unwrap();
    let r = recv_response(&sock).await;
    assert_eq!(r.status.0, 200);
    // And a request from the endpoint to an IPv6 peer: its Via names [::1].
    let mut seen = spawn_udp_ue(sock, 200, 0);
    let resp = timeout(
        WAIT,
        ep.send_request(notify_to(local), local, Transport::Udp),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(resp.status.0, 200);
    let notify = seen.recv().await.unwrap();
    assert!(notify
        .headers
        .get(&HeaderName::VIA)
        .unwrap()
        .contains("[::1]:"));
}

/// An INVITE answered 200 whose ACK never comes: after 64*T1 (paused time) the endpoint
/// reports it so the TU can end the dialog (RFC 3261 13.3.1.4).
#[tokio::test(start_paused = true)]
async fn unacknowledged_2xx_is_reported() {
    let (ep, rx) = SipEndpoint::bind(loopback_config()).await.unwrap();
    let mut events = ep.events();
    let _seen = spawn_tu(rx);
    let server = ep.local_addrs().udp.unwrap();
    let (sock, local) = udp_client().await;
    sock.send_to(
        request_text("INVITE", "UDP", local, "noack", "c-noack").as_bytes(),
        server,
    )
    .await
    .unwrap();
    let ev = timeout(Duration::from_secs(60), events.recv())
        .await
        .expect("reported within 64*T1")
        .unwrap();
    match ev {
        as_server::driver::sip::EndpointEvent::AckTimeout { invite } => {
            assert_eq!(invite.call_id().unwrap(), "c-noack");
        }
        other => panic!("{other:?}"),
    }
    // 100, the 200, and its retransmissions (T1 doubling to T2) reached the UE.
    let mut buf = vec![0u8; 65_535];
    let mut oks = 0;
    while let Ok((n, _)) = sock.try_recv_from(&mut buf) {
        if let Ok(Message::Response(r)) = Message::parse(&buf[..n]) {
            if r.status.0 == 200 {
                oks += 1;
            }
        }
    }
    assert!(oks >= 5, "2xx retransmitted: {oks}");
}

/// RFC 3261 13.2.2.4: every 2xx retransmission gets the ACK again (the endpoint resends the
/// TU's ACK; the TU never sees the retransmission).
#[tokio::test]
async fn retransmitted_2xx_is_acked_again() {
    use as_server::sip::dialog::Dialog;

    let (ep, _rx) = SipEndpoint::bind(loopback_config()).await.unwrap();
    let (uas, uas_addr) = udp_client().await;
    let peer = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        let (n, from) = uas.recv_from(&mut buf).await.unwrap();
        let Ok(Message::Request(invite)) = Message::parse(&buf[..n]) else {
            panic!("INVITE expected")
        };
        let mut ok = Response::for_request(&invite, StatusCode(200), "OK").with_to_tag("uas");
        ok.headers
            .push(HeaderName::CONTACT, format!("<sip:uas@{uas_addr}>"));
        let mut acks = 0;
        for _ in 0..2 {
            uas.send_to(&ok.to_bytes(), from).await.unwrap();
            loop {
                let (n, _) = uas.recv_from(&mut buf).await.unwrap();
                if let Ok(Message::Request(r)) = Message::parse(&buf[..n]) {
                    if r.method == Method::ACK {
                        acks += 1;
                        break;
                    }
                }
            }
        }
        acks
    });
    let mut invite = Request::new(
        Method::INVITE,
        Uri::parse(&format!("sip:uas@{uas_addr}")).unwrap(),
    );
    invite
        .headers
        .push(HeaderName::FROM, "<sip:as@127.0.0.1>;tag=as-tag");
    invite
        .headers
        .push(HeaderName::TO, format!("<sip:uas@{uas_addr}>"));
    invite.headers.push(HeaderName::CALL_ID, "reack-1");
    invite.headers.push(HeaderName::CSEQ, "1 INVITE");
    invite
        .headers
        .push(HeaderName::CONTACT, "<sip:as@127.0.0.1>");
    let ok = timeout(
        WAIT,
        ep.send_request(invite.clone(), uas_addr, Transport::Udp),
    )
    .await
    .unwrap()
    .unwrap();
    let Dialog::Confirmed(d) = Dialog::uac(&invite, &ok, false).unwrap() else {
        panic!()
    };
    let (dest, transport) = d.core.next_hop().unwrap();
    ep.send_stateless(Message::Request(d.ack(1)), dest, transport)
        .unwrap();
    let acks = timeout(WAIT, peer).await.unwrap().unwrap();
    assert_eq!(acks, 2);
}

/// Idle stream connections are closed after 15 minutes without traffic (paused time).
#[tokio::test(start_paused = true)]
async fn idle_tcp_connection_is_closed() {
    let (ep, rx) = SipEndpoint::bind(loopback_config()).await.unwrap();
    let _seen = spawn_tu(rx);
    let server = ep.local_addrs().tcp.unwrap();
    let mut s = TcpStream::connect(server).await.unwrap();
    let local = s.local_addr().unwrap();
    s.write_all(request_text("OPTIONS", "TCP", local, "idle1", "c-idle").as_bytes())
        .await
        .unwrap();
    assert_eq!(statuses(&read_messages(&mut s, 1).await), vec![200]);
    let mut rest = Vec::new();
    let n = timeout(Duration::from_secs(1000), s.read_to_end(&mut rest))
        .await
        .expect("closed by the endpoint within 1000 s of virtual time")
        .unwrap();
    assert_eq!(n, 0);
}
