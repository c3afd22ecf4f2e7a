//! Several relays per AS and relay failover, end to end: the whole AS (`App::start`) with
//! two in-process relays on 127.0.0.1 (ephemeral ports, in-memory SQLite), driven over real
//! UDP by raw SIP clients written with our codec. A relay is stopped abruptly
//! (`App::stop_relay`); the AS re-INVITEs its viewers to the other relay, and RTP is checked
//! at the viewers' sockets. Waits are bounded; nothing asserts on timing (the many-viewer
//! test prints how long the failover took).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use as_server::config::{ChannelSeed, Config};
use as_server::service::app::App;
use as_server::sip::sdp::{Direction, SdpOffer};
use as_server::sip::transaction::Transport;
use as_server::sip::{HeaderName, Message, Request, Response, StatusCode};
use tokio::net::UdpSocket;
use tokio::time::timeout;

mod common;
use common::offer;

/// The test driver's clock (bounded waits and the printed failover time).
#[expect(clippy::disallowed_methods)]
fn now() -> Instant {
    Instant::now()
}

fn config(relays: usize) -> Config {
    let mut c = Config::default();
    c.sip.udp = Some("127.0.0.1:0".parse().unwrap());
    c.sip.tcp = None;
    c.sip.tls = None;
    c.http.listen = None;
    c.database.url = "sqlite::memory:".into();
    c.relay.port_min = 0;
    c.relay.port_max = 0;
    c.relay.output_rtp_port = 0;
    c.relay.count = relays;
    c.limits.max_sessions = 100_000;
    c.channels = vec![ChannelSeed {
        id: "news".into(),
        name: "News".into(),
        test_pattern: true,
    }];
    c
}

async fn start(relays: usize) -> App {
    App::start(&config(relays)).await.unwrap()
}

/// What a viewer knows after its join.
struct Joined {
    call_id: String,
    /// The AS's To tag.
    to_tag: String,
    /// The relay's RTP address from the 200 OK.
    relay_rtp: SocketAddr,
    ssrc: Option<u32>,
    rtp: UdpSocket,
    /// The AS's Contact (remote target of the UE's in-dialog requests).
    as_contact: String,
}

/// Many UEs sharing one SIP socket (each its own Call-ID and tag).
struct Ues {
    sock: UdpSocket,
    addr: SocketAddr,
    as_addr: SocketAddr,
    branch: u64,
    /// Requests from the AS not yet looked at.
    requests: Vec<(Request, SocketAddr)>,
}

fn via(addr: SocketAddr, n: u64) -> String {
    format!("SIP/2.0/UDP {addr};branch=z9hG4bKue{n};rport")
}

impl Ues {
    async fn new(as_addr: SocketAddr) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        Self {
            sock,
            addr,
            as_addr,
            branch: 0,
            requests: Vec::new(),
        }
    }

    async fn send(&self, m: &Message, to: SocketAddr) {
        self.sock.send_to(&m.to_bytes(), to).await.unwrap();
    }

    fn invite(&mut self, call_id: &str, channel: &str, rtp_port: u16) -> Request {
        self.branch += 1;
        let text = format!(
            "INVITE sip:{channel}@{as_addr} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n\
             From: <sip:{call_id}@127.0.0.1>;tag=tag-{call_id}\r\nTo: <sip:{channel}@{as_addr}>\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:{call_id}@{addr}>\r\n\
             Content-Type: application/sdp\r\nContent-Length: 0\r\n\r\n",
            as_addr = self.as_addr,
            via = via(self.addr, self.branch),
            addr = self.addr,
        );
        let Message::Request(mut r) = Message::parse(text.as_bytes()).unwrap() else {
            unreachable!()
        };
        r.body = offer(rtp_port, "h264", "recvonly")
            .replace('\n', "\r\n")
            .into();
        r
    }

    async fn recv(&mut self, wait: Duration) -> Option<(Message, SocketAddr)> {
        let mut buf = vec![0u8; 65536];
        let (n, from) = timeout(wait, self.sock.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some((
            Message::parse(&buf[..n]).expect("valid SIP from the AS"),
            from,
        ))
    }

    /// Joins `n` viewers of `channel` (INVITEs sent in batches, 200s ACKed).
    async fn join(&mut self, prefix: &str, channel: &str, n: usize) -> Vec<Joined> {
        let mut out = Vec::new();
        for batch in (0..n).collect::<Vec<_>>().chunks(50) {
            let mut pending: HashMap<String, UdpSocket> = HashMap::new();
            for &i in batch {
                let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
                let call_id = format!("{prefix}{i}");
                let inv = self.invite(&call_id, channel, rtp.local_addr().unwrap().port());
                self.send(&Message::Request(inv), self.as_addr).await;
                pending.insert(call_id, rtp);
            }
            let deadline = now() + Duration::from_secs(15);
            while !pending.is_empty() {
                assert!(now() < deadline, "joins timed out");
                let Some((m, from)) = self.recv(Duration::from_secs(5)).await else {
                    continue;
                };
                let r = match m {
                    Message::Response(r) => r,
                    Message::Request(q) => {
                        self.requests.push((q, from));
                        continue;
                    }
                };
                if !r.status.is_final() {
                    continue;
                }
                assert_eq!(r.status.0, 200, "join answered {}", r.status.0);
                let call_id = r.call_id().unwrap().to_owned();
                let Some(rtp) = pending.remove(&call_id) else {
                    continue;
                };
                let to_tag = r.to().unwrap().tag().unwrap().to_owned();
                let as_contact = r.contact().unwrap().unwrap().uri.to_string();
                let sdp = SdpOffer::parse(&r.body).unwrap();
                let m = &sdp.media()[0];
                let ack = self.ack_for(&r);
                self.send(&Message::Request(ack), self.as_addr).await;
                out.push(Joined {
                    call_id,
                    to_tag,
                    relay_rtp: m.rtp_addr().unwrap(),
                    ssrc: m.ssrc,
                    rtp,
                    as_contact,
                });
            }
        }
        out
    }

    /// The ACK of a 2xx to our INVITE (RFC 3261 13.2.2.4), to the AS's Contact.
    fn ack_for(&mut self, ok: &Response) -> Request {
        self.branch += 1;
        let contact = ok.contact().unwrap().unwrap().uri;
        let mut ack = Request::new(as_server::sip::Method::ACK, contact);
        ack.headers
            .push(HeaderName::VIA, via(self.addr, self.branch));
        ack.headers.push(HeaderName::MAX_FORWARDS, "70");
        for h in [HeaderName::FROM, HeaderName::TO, HeaderName::CALL_ID] {
            ack.headers.push(h.clone(), ok.headers.get(&h).unwrap());
        }
        let seq = ok.cseq().unwrap().seq;
        ack.headers.push(HeaderName::CSEQ, format!("{seq} ACK"));
        ack
    }

    /// The next request from the AS with `method` (queued ones first), 10 s at most.
    async fn next_request(&mut self, method: &str) -> Option<(Request, SocketAddr)> {
        if let Some(i) = self
            .requests
            .iter()
            .position(|(r, _)| r.method.as_str() == method)
        {
            return Some(self.requests.remove(i));
        }
        let deadline = now() + Duration::from_secs(10);
        while now() < deadline {
            match self.recv(Duration::from_millis(500)).await {
                Some((Message::Request(q), from)) if q.method.as_str() == method => {
                    return Some((q, from))
                }
                Some((Message::Request(q), from)) => self.requests.push((q, from)),
                _ => {}
            }
        }
        None
    }
}

/// A UE's answer to the AS's re-INVITE offer: `recvonly` at the same RTP port.
fn answer_to(reinvite: &Request, rtp_port: u16) -> Response {
    answer_with(reinvite, rtp_port, "recvonly")
}

/// A UE's 200 to the AS's re-INVITE with an SDP answer of `direction` at `rtp_port`.
fn answer_with(reinvite: &Request, rtp_port: u16, direction: &str) -> Response {
    let mut r = Response::for_request(reinvite, StatusCode::OK, "OK");
    r.headers.push(HeaderName::CONTACT, "<sip:ue@127.0.0.1>");
    r.headers.push(HeaderName::CONTENT_TYPE, "application/sdp");
    r.body = offer(rtp_port, "h264", direction)
        .replace("o=ue 1 1", "o=ue 1 2")
        .replace('\n', "\r\n")
        .into();
    r
}

/// The first RTP packet from `from` on `sock` within `wait`: its SSRC.
async fn rtp_from(sock: &UdpSocket, from: SocketAddr, wait: Duration) -> Option<u32> {
    let mut buf = vec![0u8; 2048];
    let deadline = now() + wait;
    while now() < deadline {
        let Ok(Ok((n, src))) = timeout(Duration::from_millis(200), sock.recv_from(&mut buf)).await
        else {
            continue;
        };
        if src == from && n >= 12 && buf[0] >> 6 == 2 {
            return Some(u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]));
        }
    }
    None
}

fn relay_of(app: &App, call_id: &str) -> String {
    app.service
        .sessions()
        .into_iter()
        .find(|s| s.call_id == call_id)
        .map(|s| s.relay)
        .unwrap_or_default()
}

#[tokio::test]
async fn joins_spread_over_the_relays() {
    let app = start(2).await;
    let mut ues = Ues::new(app.sip_addr(Transport::Udp).unwrap()).await;
    let joined = ues.join("spread", "news", 4).await;
    let mut per_relay: HashMap<String, usize> = HashMap::new();
    for j in &joined {
        *per_relay.entry(relay_of(&app, &j.call_id)).or_default() += 1;
        assert!(j.ssrc.is_some(), "the 200 OK names the SSRC (a=ssrc)");
    }
    assert_eq!(per_relay.get("relay-0"), Some(&2), "{per_relay:?}");
    assert_eq!(per_relay.get("relay-1"), Some(&2), "{per_relay:?}");
    let text = app.service.metrics_text().await;
    assert!(
        text.contains("as_relay_viewers{relay=\"relay-0\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("as_relay_healthy{relay=\"relay-1\"} 1\n"),
        "{text}"
    );
    // Each relay runs its own test pattern: both send.
    for j in &joined {
        let ssrc = rtp_from(&j.rtp, j.relay_rtp, Duration::from_secs(5)).await;
        assert_eq!(
            ssrc, j.ssrc,
            "RTP from the relay of the answer, with its SSRC"
        );
    }
    app.shutdown().await;
}

#[tokio::test]
async fn a_viewer_moves_to_the_other_relay_when_its_relay_stops() {
    let app = start(2).await;
    let mut ues = Ues::new(app.sip_addr(Transport::Udp).unwrap()).await;
    // Two viewers: one per relay; the first is on relay-0.
    let joined = ues.join("move", "news", 2).await;
    let (a, b) = (&joined[0], &joined[1]);
    assert_eq!(relay_of(&app, &a.call_id), "relay-0");
    assert_eq!(relay_of(&app, &b.call_id), "relay-1");
    assert_ne!(a.relay_rtp, b.relay_rtp);
    assert_eq!(
        rtp_from(&a.rtp, a.relay_rtp, Duration::from_secs(5)).await,
        a.ssrc
    );
    assert_eq!(app.service.sessions().len(), 2);

    assert!(app.stop_relay(0).await);
    assert!(!app.stop_relay(0).await, "stopped once");

    let (reinvite, from) = ues.next_request("INVITE").await.expect("a re-INVITE");
    assert_eq!(reinvite.call_id().unwrap(), a.call_id);
    // In the dialog: our tags, the AS's own CSeq, to the UE's Contact.
    assert_eq!(reinvite.from().unwrap().tag(), Some(a.to_tag.as_str()));
    assert_eq!(
        reinvite.to().unwrap().tag(),
        Some(format!("tag-{}", a.call_id).as_str())
    );
    assert_eq!(reinvite.uri.user.as_deref(), Some(a.call_id.as_str()));
    let cseq = reinvite.cseq().unwrap();
    assert_eq!(cseq.method.as_str(), "INVITE");
    // The offer names relay B, sendonly, with the new path's SSRC.
    let sdp = SdpOffer::parse(&reinvite.body).unwrap();
    let m = &sdp.media()[0];
    assert_eq!(m.rtp_addr(), Some(b.relay_rtp), "relay B's address");
    assert_eq!(m.direction, Direction::SendOnly);
    assert!(m.rtcp_unicast.is_some(), "a=rtcp-unicast:rsi");
    assert_eq!(m.rtcp_addr().map(|a| a.ip()), Some(b.relay_rtp.ip()));
    assert_eq!(
        sdp.session_version(),
        2,
        "o= version + 1 (RFC 3264 section 8)"
    );
    let new_ssrc = m.ssrc.expect("a=ssrc in the offer");
    let text = String::from_utf8_lossy(&reinvite.body).into_owned();
    assert!(text.contains("cname:relay-1"), "{text}");

    let ok = answer_to(&reinvite, a.rtp.local_addr().unwrap().port());
    ues.send(&Message::Response(ok), from).await;
    let (ack, _) = ues.next_request("ACK").await.expect("the AS ACKs the 2xx");
    assert_eq!(ack.cseq().unwrap().seq, cseq.seq);
    assert_eq!(ack.call_id().unwrap(), a.call_id);

    assert_eq!(
        rtp_from(&a.rtp, b.relay_rtp, Duration::from_secs(5)).await,
        Some(new_ssrc),
        "RTP from relay B with the SSRC of the new SDP"
    );
    // State, store and metrics.
    let deadline = now() + Duration::from_secs(5);
    while app
        .service
        .metrics()
        .moved_viewers
        .load(std::sync::atomic::Ordering::Relaxed)
        < 1
    {
        assert!(now() < deadline, "move not recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(relay_of(&app, &a.call_id), "relay-1");
    let row = app
        .service
        .catalogue()
        .store()
        .active_session_by_call_id(&a.call_id)
        .await
        .unwrap();
    assert_eq!(row.relay.as_deref(), Some("relay-1"));
    let text = app.service.metrics_text().await;
    assert!(text.contains("\nas_relay_failovers_total 1\n"), "{text}");
    assert!(
        text.contains("\nas_relay_moved_viewers_total 1\n"),
        "{text}"
    );
    assert!(
        text.contains("as_relay_healthy{relay=\"relay-0\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains("as_relay_viewers{relay=\"relay-1\"} 2\n"),
        "{text}"
    );
    // The viewer on relay B was left alone.
    assert!(ues
        .requests
        .iter()
        .all(|(r, _)| r.call_id().unwrap() != b.call_id));
    app.shutdown().await;
}

#[tokio::test]
async fn a_refused_reinvite_ends_the_session_with_a_bye() {
    let app = start(2).await;
    let mut ues = Ues::new(app.sip_addr(Transport::Udp).unwrap()).await;
    let joined = ues.join("refuse", "news", 1).await;
    let a = &joined[0];
    assert_eq!(relay_of(&app, &a.call_id), "relay-0");
    assert!(app.stop_relay(0).await);
    let (reinvite, from) = ues.next_request("INVITE").await.expect("a re-INVITE");
    let no = Response::for_request(&reinvite, StatusCode(488), "Not Acceptable Here");
    ues.send(&Message::Response(no), from).await;
    let (bye, from) = ues.next_request("BYE").await.expect("a BYE");
    assert_eq!(bye.call_id().unwrap(), a.call_id);
    let reason = bye.headers.get(&HeaderName::new("Reason")).unwrap();
    assert!(reason.contains("cause=488"), "{reason}");
    let ok = Response::for_request(&bye, StatusCode::OK, "OK");
    ues.send(&Message::Response(ok), from).await;
    assert!(app.service.sessions().is_empty());
    // The path on relay B was removed.
    let deadline = now() + Duration::from_secs(5);
    while !app.relays()[1].stats().await.unwrap().viewers.is_empty() {
        assert!(now() < deadline, "viewer left on relay B");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = app.service.metrics_text().await;
    assert!(
        text.contains("\nas_relay_failover_ended_total 1\n"),
        "{text}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn no_relay_left_ends_the_session_with_a_reason() {
    let app = start(2).await;
    let mut ues = Ues::new(app.sip_addr(Transport::Udp).unwrap()).await;
    let joined = ues.join("none", "news", 1).await;
    assert!(app.stop_relay(1).await);
    assert!(app.stop_relay(0).await);
    let (bye, from) = ues.next_request("BYE").await.expect("a BYE");
    assert_eq!(bye.call_id().unwrap(), joined[0].call_id);
    let reason = bye.headers.get(&HeaderName::new("Reason")).unwrap();
    assert!(reason.contains("cause=503"), "{reason}");
    let ok = Response::for_request(&bye, StatusCode::OK, "OK");
    ues.send(&Message::Response(ok), from).await;
    assert!(app.service.sessions().is_empty());
    app.shutdown().await;
}

/// Many viewers on the relay that stops: prints the time from `stop_relay` to the last
/// re-INVITE answered, and each moved viewer's longest gap in RTP around the failover
/// (`FAILOVER_VIEWERS`, default 200, viewers on the stopped relay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_viewers_move_and_the_time_is_printed() {
    let n: usize = std::env::var("FAILOVER_VIEWERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let app = start(2).await;
    let mut ues = Ues::new(app.sip_addr(Transport::Udp).unwrap()).await;
    let joined = ues.join("many", "news", 2 * n).await;
    let mut on_a: HashMap<String, u16> = HashMap::new();
    // Each viewer on relay-0 records its longest time without RTP until told to stop.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut gaps = tokio::task::JoinSet::new();
    for j in joined {
        if relay_of(&app, &j.call_id) != "relay-0" {
            continue;
        }
        on_a.insert(j.call_id.clone(), j.rtp.local_addr().unwrap().port());
        let mut stop = stop_rx.clone();
        gaps.spawn(async move {
            let mut buf = vec![0u8; 2048];
            let (mut last, mut longest) = (None::<Instant>, Duration::ZERO);
            loop {
                tokio::select! {
                    r = j.rtp.recv_from(&mut buf) => if r.is_ok() {
                        let t = now();
                        if let Some(l) = last {
                            longest = longest.max(t.duration_since(l));
                        }
                        last = Some(t);
                    },
                    _ = stop.changed() => break,
                }
            }
            longest
        });
    }
    assert_eq!(on_a.len(), n);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = now();
    assert!(app.stop_relay(0).await);
    let mut answered = std::collections::HashSet::new();
    let mut last = t0;
    let deadline = now() + Duration::from_secs(30);
    while answered.len() < n {
        assert!(now() < deadline, "{} of {n} re-INVITEs", answered.len());
        let Some((m, from)) = ues.recv(Duration::from_secs(2)).await else {
            continue;
        };
        let Message::Request(q) = m else { continue };
        if q.method.as_str() != "INVITE" {
            continue;
        }
        let call_id = q.call_id().unwrap().to_owned();
        let port = on_a[&call_id];
        // Retransmissions (our 200 lost under load) are answered again, counted once.
        ues.send(&Message::Response(answer_to(&q, port)), from)
            .await;
        if answered.insert(call_id) {
            last = now();
        }
    }
    println!(
        "failover: {n} viewers re-INVITEd to relay-1, last 200 sent {:.1} ms after stop_relay",
        last.duration_since(t0).as_secs_f64() * 1000.0
    );
    let deadline = now() + Duration::from_secs(10);
    while app
        .service
        .metrics()
        .moved_viewers
        .load(std::sync::atomic::Ordering::Relaxed)
        < n as u64
    {
        assert!(now() < deadline, "moves not all recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "failover: all {n} moves confirmed {:.1} ms after stop_relay",
        t0.elapsed().as_secs_f64() * 1000.0
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_tx.send(true).unwrap();
    let mut longest: Vec<Duration> = Vec::new();
    while let Some(g) = gaps.join_next().await {
        longest.push(g.unwrap());
    }
    longest.sort();
    let pct = |p: f64| {
        let i = ((longest.len() as f64 * p).ceil() as usize).clamp(1, longest.len()) - 1;
        longest[i].as_secs_f64() * 1000.0
    };
    println!(
        "failover: longest RTP gap per moved viewer: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    assert_eq!(longest.len(), n);
    app.shutdown().await;
}

#[tokio::test]
async fn glare_both_ways_then_the_move_completes() {
    let app = start(2).await;
    let as_addr = app.sip_addr(Transport::Udp).unwrap();
    let mut ues = Ues::new(as_addr).await;
    let joined = ues.join("glare", "news", 1).await;
    let a = &joined[0];
    assert!(app.stop_relay(0).await);
    let (first, from) = ues.next_request("INVITE").await.expect("a re-INVITE");
    // The UE's own re-INVITE while the AS's is pending: 491 (RFC 3261 14.2).
    ues.branch += 1;
    let mine = format!(
        "INVITE {contact} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n\
         From: <sip:{c}@127.0.0.1>;tag=tag-{c}\r\nTo: <sip:news@{as_addr}>;tag={tag}\r\n\
         Call-ID: {c}\r\nCSeq: 2 INVITE\r\nContact: <sip:{c}@{addr}>\r\nContent-Length: 0\r\n\r\n",
        contact = a.as_contact,
        via = via(ues.addr, ues.branch),
        c = a.call_id,
        tag = a.to_tag,
        addr = ues.addr,
    );
    ues.sock.send_to(mine.as_bytes(), as_addr).await.unwrap();
    let deadline = now() + Duration::from_secs(5);
    let status = loop {
        assert!(now() < deadline, "no answer to the UE's re-INVITE");
        match ues.recv(Duration::from_millis(500)).await {
            Some((Message::Response(r), _))
                if r.cseq().unwrap().seq == 2 && r.status.is_final() =>
            {
                break r.status.0
            }
            Some((Message::Request(q), f)) => ues.requests.push((q, f)),
            _ => {}
        }
    };
    assert_eq!(status, 491);
    // The AS's re-INVITE crossed the UE's: the UE answers it 491; the AS tries again later
    // with a new CSeq.
    let pending = Response::for_request(&first, StatusCode(491), "Request Pending");
    ues.send(&Message::Response(pending), from).await;
    let (second, from) = ues
        .next_request("INVITE")
        .await
        .expect("a second re-INVITE");
    assert!(second.cseq().unwrap().seq > first.cseq().unwrap().seq);
    assert_eq!(second.body, first.body, "the same offer");
    let ok = answer_to(&second, a.rtp.local_addr().unwrap().port());
    ues.send(&Message::Response(ok), from).await;
    // The 491 was ACKed by the AS's transaction layer (RFC 3261 17.1.1.3); then the 2xx by
    // the AS's core.
    let (ack, _) = ues.next_request("ACK").await.expect("ACK of the 491");
    assert_eq!(ack.cseq().unwrap().seq, first.cseq().unwrap().seq);
    let (ack, _) = ues.next_request("ACK").await.expect("ACK of the 200");
    assert_eq!(ack.cseq().unwrap().seq, second.cseq().unwrap().seq);
    let deadline = now() + Duration::from_secs(5);
    while relay_of(&app, &a.call_id) != "relay-1"
        || app
            .service
            .metrics()
            .moved_viewers
            .load(std::sync::atomic::Ordering::Relaxed)
            < 1
    {
        assert!(now() < deadline, "not moved");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.shutdown().await;
}

/// A producer creates a personal channel (sendonly offer, Subject = name): the 200 (ACKed)
/// and its RTP socket.
async fn create_personal(ues: &mut Ues, call_id: &str, name: &str) -> (Response, UdpSocket) {
    let as_addr = ues.as_addr;
    let producer_rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = producer_rtp.local_addr().unwrap().port();
    let mut create = ues.invite(call_id, "new-channel", port);
    create.body = offer(port, "h264", "sendonly").replace('\n', "\r\n").into();
    create.headers.push(HeaderName::SUBJECT, name);
    ues.send(&Message::Request(create), as_addr).await;
    let ok = loop {
        match ues.recv(Duration::from_secs(5)).await {
            Some((Message::Response(r), _)) if r.status.is_final() => break r,
            Some((Message::Request(q), f)) => ues.requests.push((q, f)),
            Some(_) => {}
            None => panic!("no answer to the creation"),
        }
    };
    assert_eq!(ok.status.0, 200);
    let ack = ues.ack_for(&ok);
    ues.send(&Message::Request(ack), as_addr).await;
    (ok, producer_rtp)
}

#[tokio::test]
async fn a_zap_to_a_channel_on_another_relay_moves_the_viewer() {
    let app = start(2).await;
    let as_addr = app.sip_addr(Transport::Udp).unwrap();
    let mut ues = Ues::new(as_addr).await;
    let (ok, _producer) = create_personal(&mut ues, "owner2", "Elsewhere").await;
    let channel = ok.contact().unwrap().unwrap().uri.user.unwrap();
    let owner_relay = relay_of(&app, "owner2");
    let viewers = ues.join("zv", "news", 2).await;
    let v = viewers
        .iter()
        .find(|j| relay_of(&app, &j.call_id) != owner_relay)
        .expect("a viewer on the other relay");
    let zap = |ues: &mut Ues, seq: u32, body: &str| {
        ues.branch += 1;
        format!(
            "INVITE sip:{channel}@{as_addr} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n\
             From: <sip:{c}@127.0.0.1>;tag=tag-{c}\r\nTo: <sip:news@{as_addr}>;tag={tag}\r\n\
             Call-ID: {c}\r\nCSeq: {seq} INVITE\r\nContact: <sip:{c}@{addr}>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{body}",
            via = via(ues.addr, ues.branch),
            c = v.call_id,
            tag = v.to_tag,
            addr = ues.addr,
            len = body.len(),
        )
    };
    let final_for = |seq: u32| {
        move |m: &Message| match m {
            Message::Response(r) => r.cseq().unwrap().seq == seq && r.status.is_final(),
            Message::Request(_) => false,
        }
    };
    // Without an offer the AS cannot name the new relay: 488.
    let text = zap(&mut ues, 2, "");
    ues.sock.send_to(text.as_bytes(), as_addr).await.unwrap();
    let r = loop {
        let (m, _) = ues.recv(Duration::from_secs(5)).await.expect("an answer");
        if final_for(2)(&m) {
            break m;
        }
    };
    let Message::Response(r) = r else {
        unreachable!()
    };
    assert_eq!(r.status.0, 488);
    // With the same offer: 200 naming the relay of the personal channel.
    let port = v.rtp.local_addr().unwrap().port();
    let body = offer(port, "h264", "recvonly").replace('\n', "\r\n");
    let text = zap(&mut ues, 3, &body);
    ues.sock.send_to(text.as_bytes(), as_addr).await.unwrap();
    let r = loop {
        let (m, _) = ues.recv(Duration::from_secs(5)).await.expect("an answer");
        if final_for(3)(&m) {
            break m;
        }
    };
    let Message::Response(r) = r else {
        unreachable!()
    };
    assert_eq!(r.status.0, 200);
    let sdp = SdpOffer::parse(&r.body).unwrap();
    assert_ne!(
        sdp.media()[0].rtp_addr(),
        Some(v.relay_rtp),
        "another relay"
    );
    assert_eq!(sdp.session_version(), 2);
    assert_eq!(relay_of(&app, &v.call_id), owner_relay);
    let row = app
        .service
        .catalogue()
        .store()
        .active_session_by_call_id(&v.call_id)
        .await
        .unwrap();
    assert_eq!(row.channel_id, channel);
    assert_eq!(row.relay.as_deref(), Some(owner_relay.as_str()));
    app.shutdown().await;
}

#[tokio::test]
async fn a_personal_channel_moves_with_its_producer_and_viewers() {
    let app = start(2).await;
    let as_addr = app.sip_addr(Transport::Udp).unwrap();
    let mut ues = Ues::new(as_addr).await;
    let (ok, producer_rtp) = create_personal(&mut ues, "owner1", "Mine").await;
    let channel = ok.contact().unwrap().unwrap().uri.user.unwrap();
    let old_ingest = SdpOffer::parse(&ok.body).unwrap().media()[0]
        .rtp_addr()
        .unwrap();
    let owner_relay = relay_of(&app, "owner1");
    let owner_index: usize = owner_relay.trim_start_matches("relay-").parse().unwrap();
    // A viewer: placed on the relay with the ingest.
    let viewers = ues.join("pv", &channel, 1).await;
    let v = &viewers[0];
    assert_eq!(relay_of(&app, &v.call_id), owner_relay);

    assert!(app.stop_relay(owner_index).await);
    // Two re-INVITEs: the producer's names the new ingest (the AS recvonly), the viewer's
    // the new relay (sendonly).
    let mut new_ingest = None;
    for _ in 0..2 {
        let (q, from) = ues.next_request("INVITE").await.expect("re-INVITEs");
        let sdp = SdpOffer::parse(&q.body).unwrap();
        let m = &sdp.media()[0];
        if q.call_id().unwrap() == "owner1" {
            assert_eq!(m.direction, Direction::RecvOnly);
            assert_ne!(m.rtp_addr(), Some(old_ingest));
            new_ingest = m.rtp_addr();
            let port = producer_rtp.local_addr().unwrap().port();
            ues.send(&Message::Response(answer_with(&q, port, "sendonly")), from)
                .await;
        } else {
            assert_eq!(q.call_id().unwrap(), v.call_id);
            assert_eq!(m.direction, Direction::SendOnly);
            assert_ne!(m.rtp_addr(), Some(v.relay_rtp));
            let port = v.rtp.local_addr().unwrap().port();
            ues.send(&Message::Response(answer_to(&q, port)), from)
                .await;
        }
    }
    let new_ingest = new_ingest.expect("the producer was re-INVITEd");
    let row = app
        .service
        .catalogue()
        .store()
        .get_channel(&channel)
        .await
        .unwrap();
    assert_eq!(
        row.ingest_addr,
        Some(new_ingest),
        "catalogue has the new ingest"
    );
    assert_eq!(
        row.relay.as_deref(),
        Some(if owner_index == 0 {
            "relay-1"
        } else {
            "relay-0"
        })
    );
    // The producer's RTP to the new ingest reaches the viewer from the new relay.
    let deadline = now() + Duration::from_secs(5);
    let mut seq = 0u16;
    let mut got = false;
    let mut buf = vec![0u8; 2048];
    while !got && now() < deadline {
        seq += 1;
        let mut pkt = vec![0x80, 96];
        pkt.extend_from_slice(&seq.to_be_bytes());
        pkt.extend_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
        pkt.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        pkt.extend_from_slice(&[0x65, 0x88, 0x84, 0x00]); // an IDR slice NAL
        producer_rtp.send_to(&pkt, new_ingest).await.unwrap();
        if let Ok(Ok((n, _))) = timeout(Duration::from_millis(50), v.rtp.recv_from(&mut buf)).await
        {
            got = n >= 12;
        }
    }
    assert!(got, "media flows through the new relay");
    app.shutdown().await;
}
