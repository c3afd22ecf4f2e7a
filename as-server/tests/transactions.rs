//! Transaction layer tests under a virtual clock (RFC 3261 section 17).
//!
//! Time is plain `Instant` arithmetic: the harness jumps straight to the next deadline, so a
//! 32 s Timer B test takes milliseconds. `Net` moves datagrams between two sans-IO
//! [`TransactionLayer`]s with a fixed latency and an optional drop filter, re-parsing every
//! datagram with the codec as a socket driver would.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use as_server::sip::transaction::{
    Event, InviteClientState, InviteServerState, NonInviteServerState, TimerConfig, TransactionId,
    TransactionLayer, TransactionState, Transmit, Transport,
};
use as_server::sip::{HeaderName, Message, Method, Request, Response, StatusCode, Uri};

/// The virtual clock's origin; afterwards only arithmetic on it.
#[expect(clippy::disallowed_methods)]
fn t0() -> Instant {
    Instant::now()
}

const UAC: &str = "192.0.2.10:5060";
const UAS: &str = "192.0.2.20:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// A request from the UAC at `UAC` to `UAS`, with a fresh branch.
fn request(method: Method, transport: Transport) -> Request {
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut r = Request::new(method.clone(), Uri::parse("sip:news@192.0.2.20").unwrap());
    r.headers.push(
        HeaderName::VIA,
        format!("SIP/2.0/{transport} {UAC};branch=z9hG4bK-test-{n};rport"),
    );
    r.headers.push(HeaderName::MAX_FORWARDS, "70");
    r.headers
        .push(HeaderName::FROM, format!("<sip:alice@192.0.2.10>;tag=a{n}"));
    r.headers.push(HeaderName::TO, "<sip:news@192.0.2.20>");
    r.headers
        .push(HeaderName::CALL_ID, format!("call-{n}@192.0.2.10"));
    r.headers
        .push(HeaderName::CSEQ, format!("1 {}", method.as_str()));
    r.headers
        .push(HeaderName::CONTACT, "<sip:alice@192.0.2.10:5060>");
    r
}

fn response(req: &Request, code: u16, reason: &str) -> Response {
    let r = Response::for_request(req, StatusCode(code), reason);
    if code > 100 {
        r.with_to_tag("uas-tag")
    } else {
        r
    }
}

fn parse(t: &Transmit) -> Message {
    Message::parse(&t.contents).expect("layer emits parsable messages")
}

fn drain_tx(l: &mut TransactionLayer) -> Vec<Transmit> {
    std::iter::from_fn(|| l.poll_transmit()).collect()
}

fn drain_ev(l: &mut TransactionLayer) -> Vec<Event> {
    std::iter::from_fn(|| l.poll_event()).collect()
}

fn status_of(t: &Transmit) -> Option<u16> {
    match parse(t) {
        Message::Response(r) => Some(r.status.0),
        Message::Request(_) => None,
    }
}

fn method_of(t: &Transmit) -> Option<Method> {
    match parse(t) {
        Message::Request(r) => Some(r.method),
        Message::Response(_) => None,
    }
}

/// Runs one layer alone until `until`, jumping from deadline to deadline; returns the
/// offsets (from `start`) at which it transmitted, with the transmits.
fn run_alone(
    l: &mut TransactionLayer,
    start: Instant,
    until: Instant,
) -> Vec<(Duration, Transmit)> {
    let mut sent: Vec<(Duration, Transmit)> = drain_tx(l).into_iter().map(|t| (ms(0), t)).collect();
    for _ in 0..10_000 {
        let Some(next) = l.poll_timeout() else { break };
        if next > until {
            break;
        }
        l.handle_timeout(next);
        for t in drain_tx(l) {
            sent.push((next - start, t));
        }
    }
    sent
}

/// Decides whether to drop a datagram: (to_uas, message) -> drop.
type DropFilter = Box<dyn FnMut(bool, &Message) -> bool>;

/// Two layers joined by an in-memory network with latency and a drop filter.
struct Net {
    now: Instant,
    latency: Duration,
    uac: TransactionLayer,
    uas: TransactionLayer,
    /// (arrival, to_uas, source, transport, bytes)
    queue: VecDeque<(Instant, bool, SocketAddr, Transport, Vec<u8>)>,
    /// Returns true to drop a datagram: (to_uas, message).
    drop: DropFilter,
    uac_events: Vec<Event>,
    uas_events: Vec<Event>,
    /// Every datagram put on the wire: (time offset, to_uas, message).
    log: Vec<(Duration, bool, Message)>,
    start: Instant,
}

impl Net {
    fn new(cfg: TimerConfig) -> Self {
        let now = t0();
        Net {
            now,
            latency: ms(10),
            uac: TransactionLayer::new(cfg),
            uas: TransactionLayer::new(cfg),
            queue: VecDeque::new(),
            drop: Box::new(|_, _| false),
            uac_events: Vec::new(),
            uas_events: Vec::new(),
            log: Vec::new(),
            start: now,
        }
    }

    fn collect(&mut self) {
        while let Some(t) = self.uac.poll_transmit() {
            self.put(true, t);
        }
        while let Some(t) = self.uas.poll_transmit() {
            self.put(false, t);
        }
        self.uac_events.extend(drain_ev(&mut self.uac));
        self.uas_events.extend(drain_ev(&mut self.uas));
    }

    fn put(&mut self, to_uas: bool, t: Transmit) {
        let msg = parse(&t);
        self.log.push((self.now - self.start, to_uas, msg.clone()));
        if (self.drop)(to_uas, &msg) {
            return;
        }
        let src = if to_uas { addr(UAC) } else { addr(UAS) };
        self.queue.push_back((
            self.now + self.latency,
            to_uas,
            src,
            t.transport,
            t.contents.to_vec(),
        ));
    }

    /// Advances the virtual clock to `until`, delivering datagrams and firing timers.
    fn run_until(&mut self, until: Instant) {
        self.collect();
        for _ in 0..100_000 {
            let next_arrival = self.queue.iter().map(|q| q.0).min();
            let next = [
                next_arrival,
                self.uac.poll_timeout(),
                self.uas.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next.filter(|&n| n <= until) else {
                break;
            };
            self.now = next.max(self.now);
            let now = self.now;
            let due: Vec<_> = {
                let (due, rest): (Vec<_>, Vec<_>) = self.queue.drain(..).partition(|q| q.0 <= now);
                self.queue = rest.into();
                due
            };
            for (_, to_uas, src, transport, bytes) in due {
                let msg = Message::parse(&bytes).unwrap();
                if to_uas {
                    self.uas.handle_message(now, src, transport, msg);
                } else {
                    self.uac.handle_message(now, src, transport, msg);
                }
            }
            self.uac.handle_timeout(now);
            self.uas.handle_timeout(now);
            self.collect();
        }
        self.now = self.now.max(until);
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// The UAS's new server transactions (requests with an id) handed to the TU.
    fn take_uas_requests(&mut self) -> Vec<(Option<TransactionId>, Request)> {
        let mut out = Vec::new();
        self.uas_events.retain(|e| match e {
            Event::Request { id, request, .. } => {
                out.push((*id, request.clone()));
                false
            }
            _ => true,
        });
        out
    }

    fn sent_to_uas(&self, method: &Method) -> Vec<Duration> {
        self.log
            .iter()
            .filter(|(_, to_uas, m)| {
                *to_uas && matches!(m, Message::Request(r) if r.method == *method)
            })
            .map(|(t, _, _)| *t)
            .collect()
    }

    fn responses_to_uac(&self, code: u16) -> Vec<Duration> {
        self.log
            .iter()
            .filter(|(_, to_uas, m)| {
                !*to_uas && matches!(m, Message::Response(r) if r.status.0 == code)
            })
            .map(|(t, _, _)| *t)
            .collect()
    }
}

fn secs(v: &[Duration]) -> Vec<f64> {
    v.iter().map(Duration::as_secs_f64).collect()
}

// ---------------------------------------------------------------------------------------
// Client timers, one layer alone against a black hole.

#[test]
fn timer_a_doubles_and_timer_b_times_out_with_408() {
    let start = t0();
    let mut l = TransactionLayer::default();
    let id = l
        .send_request(
            start,
            request(Method::INVITE, Transport::Udp),
            addr(UAS),
            Transport::Udp,
        )
        .unwrap();
    let sent = run_alone(&mut l, start, start + Duration::from_secs(40));
    let times: Vec<f64> = sent.iter().map(|(t, _)| t.as_secs_f64()).collect();
    //= RFC 3261 17.1.1.2: A = T1, 2T1, 4T1... until B = 64*T1 = 32 s.
    assert_eq!(times, vec![0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]);
    assert!(sent
        .iter()
        .all(|(_, t)| method_of(t) == Some(Method::INVITE)));
    let events = drain_ev(&mut l);
    assert_eq!(events.len(), 1);
    match &events[0] {
        Event::Timeout { id: eid, response } => {
            assert_eq!(*eid, id);
            assert_eq!(response.status.0, 408);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(l.is_empty(), "timed-out transaction removed");
}

#[test]
fn timer_b_fires_at_exactly_64_t1() {
    let start = t0();
    let mut l = TransactionLayer::default();
    l.send_request(
        start,
        request(Method::INVITE, Transport::Udp),
        addr(UAS),
        Transport::Udp,
    )
    .unwrap();
    let _ = drain_tx(&mut l);
    l.handle_timeout(start + Duration::from_millis(31_999));
    let _ = drain_tx(&mut l);
    assert!(drain_ev(&mut l).is_empty());
    l.handle_timeout(start + Duration::from_secs(32));
    assert!(matches!(
        drain_ev(&mut l).as_slice(),
        [Event::Timeout { .. }]
    ));
}

#[test]
fn timer_e_doubles_up_to_t2_and_timer_f_times_out() {
    let start = t0();
    let mut l = TransactionLayer::default();
    l.send_request(
        start,
        request(Method::OPTIONS, Transport::Udp),
        addr(UAS),
        Transport::Udp,
    )
    .unwrap();
    let sent = run_alone(&mut l, start, start + Duration::from_secs(40));
    let times: Vec<f64> = sent.iter().map(|(t, _)| t.as_secs_f64()).collect();
    //= RFC 3261 17.1.2.2: E = T1, 2T1, 4T1, then capped at T2 = 4 s.
    assert_eq!(
        times,
        vec![0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    );
    match drain_ev(&mut l).as_slice() {
        [Event::Timeout { response, .. }] => assert_eq!(response.status.0, 408),
        other => panic!("expected one timeout, got {other:?}"),
    }
    assert!(l.is_empty());
}

#[test]
fn configured_timers_are_used() {
    let cfg = TimerConfig {
        t1: ms(100),
        t2: ms(400),
        ..TimerConfig::default()
    };
    let start = t0();
    let mut l = TransactionLayer::new(cfg);
    l.send_request(
        start,
        request(Method::OPTIONS, Transport::Udp),
        addr(UAS),
        Transport::Udp,
    )
    .unwrap();
    let sent = run_alone(&mut l, start, start + Duration::from_secs(10));
    let times: Vec<u128> = sent.iter().map(|(t, _)| t.as_millis()).collect();
    assert_eq!(&times[..6], &[0, 100, 300, 700, 1100, 1500]);
    // F = 64 * 100 ms.
    assert!(matches!(
        drain_ev(&mut l).as_slice(),
        [Event::Timeout { .. }]
    ));
    assert!(times.iter().all(|&t| t < 6400));
}

#[test]
fn reliable_transport_runs_no_retransmit_timers() {
    let start = t0();
    let mut l = TransactionLayer::default();
    l.send_request(
        start,
        request(Method::INVITE, Transport::Tcp),
        addr(UAS),
        Transport::Tcp,
    )
    .unwrap();
    l.send_request(
        start,
        request(Method::BYE, Transport::Tcp),
        addr(UAS),
        Transport::Tcp,
    )
    .unwrap();
    let sent = run_alone(&mut l, start, start + Duration::from_secs(40));
    assert_eq!(sent.len(), 2, "one send each, no timer A/E on TCP");
    let timeouts = drain_ev(&mut l)
        .into_iter()
        .filter(|e| matches!(e, Event::Timeout { .. }))
        .count();
    assert_eq!(timeouts, 2, "timers B and F still run on TCP");
}

// ---------------------------------------------------------------------------------------
// Client transactions against a scripted peer.

#[test]
fn non_invite_provisional_makes_e_fire_every_t2_and_timer_k_absorbs() {
    let start = t0();
    let mut l = TransactionLayer::default();
    let req = request(Method::BYE, Transport::Udp);
    let id = l
        .send_request(start, req.clone(), addr(UAS), Transport::Udp)
        .unwrap();
    let _ = drain_tx(&mut l);
    // 1xx at 0.1 s: Proceeding.
    l.handle_message(
        start + ms(100),
        addr(UAS),
        Transport::Udp,
        Message::Response(response(&req, 180, "Ringing")),
    );
    assert!(
        matches!(drain_ev(&mut l).as_slice(), [Event::Response { response, .. }] if response.status.0 == 180)
    );
    // Timer E was armed for 0.5 s; it fires and is then re-armed at T2.
    let sent = run_alone(&mut l, start, start + ms(9_000));
    let times: Vec<f64> = sent.iter().map(|(t, _)| t.as_secs_f64()).collect();
    assert_eq!(times, vec![0.5, 4.5, 8.5]);
    // Final response: Completed, timer K = T4 = 5 s.
    let now = start + ms(9_000);
    l.handle_message(
        now,
        addr(UAS),
        Transport::Udp,
        Message::Response(response(&req, 200, "OK")),
    );
    assert!(
        matches!(drain_ev(&mut l).as_slice(), [Event::Response { response, .. }] if response.status.0 == 200)
    );
    // A retransmitted 200 is absorbed.
    l.handle_message(
        now + ms(10),
        addr(UAS),
        Transport::Udp,
        Message::Response(response(&req, 200, "OK")),
    );
    assert!(drain_ev(&mut l).is_empty());
    assert_eq!(l.poll_timeout(), Some(now + Duration::from_secs(5)));
    l.handle_timeout(now + ms(4_999));
    assert!(l.state(id).is_some());
    l.handle_timeout(now + Duration::from_secs(5));
    assert!(l.state(id).is_none(), "timer K removed it");
    assert!(
        drain_tx(&mut l).is_empty(),
        "no retransmissions in Completed"
    );
}

#[test]
fn timer_k_is_zero_on_tcp() {
    let start = t0();
    let mut l = TransactionLayer::default();
    let req = request(Method::OPTIONS, Transport::Tcp);
    let id = l
        .send_request(start, req.clone(), addr(UAS), Transport::Tcp)
        .unwrap();
    l.handle_message(
        start,
        addr(UAS),
        Transport::Tcp,
        Message::Response(response(&req, 200, "OK")),
    );
    l.handle_timeout(start);
    assert!(l.state(id).is_none());
}

#[test]
fn invite_non_2xx_is_acked_by_the_transaction_and_timer_d_absorbs_retransmits() {
    let start = t0();
    let mut l = TransactionLayer::default();
    let req = request(Method::INVITE, Transport::Udp);
    let id = l
        .send_request(start, req.clone(), addr(UAS), Transport::Udp)
        .unwrap();
    let _ = drain_tx(&mut l);
    let busy = response(&req, 486, "Busy Here");
    l.handle_message(
        start + ms(50),
        addr(UAS),
        Transport::Udp,
        Message::Response(busy.clone()),
    );
    let tx = drain_tx(&mut l);
    assert_eq!(tx.len(), 1);
    let Message::Request(ack) = parse(&tx[0]) else {
        panic!("expected ACK")
    };
    //= RFC 3261 17.1.1.3: ACK has the INVITE's branch, CSeq number, and the response's To.
    assert_eq!(ack.method, Method::ACK);
    assert_eq!(
        ack.headers.get(&HeaderName::VIA),
        req.headers.get(&HeaderName::VIA)
    );
    assert_eq!(ack.cseq().unwrap().seq, 1);
    assert_eq!(ack.cseq().unwrap().method, Method::ACK);
    assert_eq!(ack.to().unwrap().tag(), Some("uas-tag"));
    assert_eq!(ack.uri, req.uri);
    assert!(
        matches!(drain_ev(&mut l).as_slice(), [Event::Response { response, .. }] if response.status.0 == 486)
    );
    assert_eq!(
        l.state(id),
        Some(TransactionState::InviteClient(InviteClientState::Completed))
    );
    // Retransmitted 486: ACK again, TU not told.
    l.handle_message(
        start + ms(600),
        addr(UAS),
        Transport::Udp,
        Message::Response(busy),
    );
    let again = drain_tx(&mut l);
    assert_eq!(again.len(), 1);
    assert_eq!(method_of(&again[0]), Some(Method::ACK));
    assert!(drain_ev(&mut l).is_empty());
    // Timer D: 32 s after the 486.
    l.handle_timeout(start + ms(50) + Duration::from_millis(31_999));
    assert!(l.state(id).is_some());
    l.handle_timeout(start + ms(50) + Duration::from_secs(32));
    assert!(l.state(id).is_none());
}

#[test]
fn invite_2xx_goes_to_tu_and_is_not_acked_by_the_transaction() {
    let start = t0();
    let mut l = TransactionLayer::default();
    let req = request(Method::INVITE, Transport::Udp);
    let id = l
        .send_request(start, req.clone(), addr(UAS), Transport::Udp)
        .unwrap();
    let _ = drain_tx(&mut l);
    let ok = response(&req, 200, "OK");
    l.handle_message(
        start + ms(50),
        addr(UAS),
        Transport::Udp,
        Message::Response(ok.clone()),
    );
    assert!(
        drain_tx(&mut l).is_empty(),
        "ACK for 2xx is the TU's (13.2.2.4)"
    );
    assert!(
        matches!(drain_ev(&mut l).as_slice(), [Event::Response { response, .. }] if response.status.0 == 200)
    );
    assert_eq!(
        l.state(id),
        Some(TransactionState::InviteClient(InviteClientState::Accepted))
    );
    // RFC 6026: a 2xx retransmission also reaches the TU, which ACKs again.
    l.handle_message(
        start + ms(550),
        addr(UAS),
        Transport::Udp,
        Message::Response(ok),
    );
    assert!(matches!(
        drain_ev(&mut l).as_slice(),
        [Event::Response { .. }]
    ));
    // Timer M.
    l.handle_timeout(start + ms(50) + Duration::from_secs(32));
    assert!(l.state(id).is_none());
}

#[test]
fn stray_and_mismatched_responses_are_dropped() {
    let start = t0();
    let mut l = TransactionLayer::default();
    let req = request(Method::INVITE, Transport::Udp);
    l.send_request(start, req.clone(), addr(UAS), Transport::Udp)
        .unwrap();
    let _ = drain_tx(&mut l);
    // Same branch, other CSeq method: a different transaction (17.1.3).
    let mut other = response(&req, 200, "OK");
    other.headers.set(HeaderName::CSEQ, "1 BYE");
    l.handle_message(start, addr(UAS), Transport::Udp, Message::Response(other));
    // Unknown branch.
    let stray = response(&request(Method::INVITE, Transport::Udp), 200, "OK");
    l.handle_message(start, addr(UAS), Transport::Udp, Message::Response(stray));
    assert!(drain_ev(&mut l).is_empty());
    assert!(drain_tx(&mut l).is_empty());
}

#[test]
fn send_request_refuses_ack_and_missing_branch() {
    let start = t0();
    let mut l = TransactionLayer::default();
    let mut req = request(Method::OPTIONS, Transport::Udp);
    req.headers
        .set(HeaderName::VIA, format!("SIP/2.0/UDP {UAC};branch=1234"));
    assert!(l
        .send_request(start, req, addr(UAS), Transport::Udp)
        .is_err());
    let ack = request(Method::ACK, Transport::Udp);
    assert!(l
        .send_request(start, ack, addr(UAS), Transport::Udp)
        .is_err());
    assert!(l.is_empty());
}

#[test]
fn transport_error_reports_503() {
    let start = t0();
    let mut l = TransactionLayer::default();
    let id = l
        .send_request(
            start,
            request(Method::MESSAGE, Transport::Tcp),
            addr(UAS),
            Transport::Tcp,
        )
        .unwrap();
    let t = l.poll_transmit().unwrap();
    assert_eq!(t.transaction, Some(id));
    l.handle_transport_error(id);
    match drain_ev(&mut l).as_slice() {
        [Event::TransportError { response, .. }] => assert_eq!(response.status.0, 503),
        other => panic!("{other:?}"),
    }
    assert!(l.is_empty());
}

// ---------------------------------------------------------------------------------------
// Server transactions.

fn deliver(l: &mut TransactionLayer, now: Instant, req: &Request, transport: Transport) {
    l.handle_message(now, addr(UAC), transport, Message::Request(req.clone()));
}

fn new_request_id(events: &[Event]) -> TransactionId {
    events
        .iter()
        .find_map(|e| match e {
            Event::Request { id: Some(id), .. } => Some(*id),
            _ => None,
        })
        .expect("a new server transaction")
}

#[test]
fn invite_server_sends_100_at_once_and_on_retransmits() {
    let start = t0();
    let mut l = TransactionLayer::default();
    let req = request(Method::INVITE, Transport::Udp);
    deliver(&mut l, start, &req, Transport::Udp);
    let tx = drain_tx(&mut l);
    assert_eq!(
        tx.iter().map(status_of).collect::<Vec<_>>(),
        vec![Some(100)]
    );
    let ev = drain_ev(&mut l);
    assert_eq!(ev.len(), 1);
    let id = new_request_id(&ev);
    // Retransmission: absorbed (no new TU event), 100 resent.
    deliver(&mut l, start + ms(500), &req, Transport::Udp);
    assert!(drain_ev(&mut l).is_empty());
    let tx = drain_tx(&mut l);
    assert_eq!(
        tx.iter().map(status_of).collect::<Vec<_>>(),
        vec![Some(100)]
    );
    // TU's 180 replaces it as the response to resend.
    l.respond(start + ms(600), id, response(&req, 180, "Ringing"))
        .unwrap();
    let _ = drain_tx(&mut l);
    deliver(&mut l, start + ms(700), &req, Transport::Udp);
    let tx = drain_tx(&mut l);
    assert_eq!(
        tx.iter().map(status_of).collect::<Vec<_>>(),
        vec![Some(180)]
    );
}

#[test]
fn trying_after_200ms_when_configured_and_tu_is_slow() {
    let cfg = TimerConfig {
        trying_delay: ms(200),
        ..TimerConfig::default()
    };
    let start = t0();
    let mut l = TransactionLayer::new(cfg);
    let slow = request(Method::INVITE, Transport::Udp);
    deliver(&mut l, start, &slow, Transport::Udp);
    assert!(drain_tx(&mut l).is_empty(), "no 100 before 200 ms");
    l.handle_timeout(start + ms(199));
    assert!(drain_tx(&mut l).is_empty());
    l.handle_timeout(start + ms(200));
    let tx = drain_tx(&mut l);
    assert_eq!(
        tx.iter().map(status_of).collect::<Vec<_>>(),
        vec![Some(100)]
    );

    // A TU that answers within 200 ms: no 100 at all.
    let fast = request(Method::INVITE, Transport::Udp);
    deliver(&mut l, start + ms(1000), &fast, Transport::Udp);
    let id = drain_ev(&mut l)
        .iter()
        .find_map(|e| match e {
            Event::Request {
                id: Some(id),
                request,
                ..
            } if request.call_id().ok() == fast.call_id().ok() => Some(*id),
            _ => None,
        })
        .unwrap();
    l.respond(start + ms(1100), id, response(&fast, 200, "OK"))
        .unwrap();
    l.handle_timeout(start + ms(1300));
    let codes: Vec<_> = drain_tx(&mut l).iter().map(status_of).collect();
    assert_eq!(codes, vec![Some(200)]);
}

#[test]
fn invite_server_non_2xx_timer_g_until_ack_then_timer_i() {
    let start = t0();
    let mut l = TransactionLayer::default();
    let req = request(Method::INVITE, Transport::Udp);
    deliver(&mut l, start, &req, Transport::Udp);
    let id = new_request_id(&drain_ev(&mut l));
    let _ = drain_tx(&mut l);
    let not_found = response(&req, 404, "Not Found");
    l.respond(start, id, not_found.clone()).unwrap();
    assert_eq!(drain_tx(&mut l).len(), 1);
    // G: 0.5, 1.5, 3.5, 7.5, 11.5 (capped at T2)
    let sent = run_alone(&mut l, start, start + ms(12_000));
    let times: Vec<f64> = sent.iter().map(|(t, _)| t.as_secs_f64()).collect();
    assert_eq!(times, vec![0.0, 0.5, 1.5, 3.5, 7.5, 11.5].split_off(1));
    assert!(sent.iter().all(|(_, t)| status_of(t) == Some(404)));
    // Request retransmission in Completed: 404 again.
    deliver(&mut l, start + ms(12_000), &req, Transport::Udp);
    assert_eq!(
        drain_tx(&mut l).iter().map(status_of).collect::<Vec<_>>(),
        vec![Some(404)]
    );
    // ACK (built like a UAC would, same branch): absorbed, Confirmed.
    let ack = as_server::sip::transaction::build_non_2xx_ack(&req, &not_found);
    deliver(&mut l, start + ms(12_100), &ack, Transport::Udp);
    assert!(drain_ev(&mut l).is_empty(), "ACK for non-2xx is absorbed");
    assert_eq!(
        l.state(id),
        Some(TransactionState::InviteServer(InviteServerState::Confirmed))
    );
    // ACK retransmissions absorbed; no more 404s.
    deliver(&mut l, start + ms(13_000), &ack, Transport::Udp);
    assert!(drain_ev(&mut l).is_empty());
    let sent = run_alone(&mut l, start, start + ms(30_000));
    assert!(sent.is_empty(), "G stopped by the ACK");
    // Timer I = T4 = 5 s after the ACK.
    assert!(l.state(id).is_none());
}

#[test]
fn invite_server_timer_h_without_ack() {
    let start = t0();
    let mut l = TransactionLayer::default();
    let req = request(Method::INVITE, Transport::Udp);
    deliver(&mut l, start, &req, Transport::Udp);
    let id = new_request_id(&drain_ev(&mut l));
    l.respond(start, id, response(&req, 488, "Not Acceptable Here"))
        .unwrap();
    let sent = run_alone(&mut l, start, start + Duration::from_secs(60));
    // 100 + 488 at 0, then G: .5 1.5 3.5 7.5 11.5 ... 31.5, H at 32.
    let last = sent.last().unwrap().0;
    assert!(last < Duration::from_secs(32));
    assert_eq!(
        sent.iter()
            .filter(|(_, t)| status_of(t) == Some(488))
            .count(),
        11
    );
    assert!(
        matches!(drain_ev(&mut l).as_slice(), [Event::AckTimeout { id: x, status, .. }] if *x == id && status.0 == 488)
    );
    assert!(l.state(id).is_none());
}

#[test]
fn invite_server_on_tcp_has_no_timer_g_and_zero_timer_i() {
    let start = t0();
    let mut l = TransactionLayer::default();
    let req = request(Method::INVITE, Transport::Tcp);
    deliver(&mut l, start, &req, Transport::Tcp);
    let id = new_request_id(&drain_ev(&mut l));
    let busy = response(&req, 486, "Busy Here");
    l.respond(start, id, busy.clone()).unwrap();
    let sent = run_alone(&mut l, start, start + ms(5_000));
    assert_eq!(sent.len(), 2, "100 and 486 only");
    let ack = as_server::sip::transaction::build_non_2xx_ack(&req, &busy);
    deliver(&mut l, start + ms(5_000), &ack, Transport::Tcp);
    l.handle_timeout(start + ms(5_000));
    assert!(l.state(id).is_none(), "timer I is zero on TCP");
}

#[test]
fn invite_2xx_is_retransmitted_until_the_end_to_end_ack_which_reaches_the_tu() {
    let start = t0();
    let mut l = TransactionLayer::default();
    let req = request(Method::INVITE, Transport::Udp);
    deliver(&mut l, start, &req, Transport::Udp);
    let id = new_request_id(&drain_ev(&mut l));
    let ok = response(&req, 200, "OK");
    l.respond(start + ms(10), id, ok.clone()).unwrap();
    assert_eq!(
        l.state(id),
        Some(TransactionState::InviteServer(InviteServerState::Accepted))
    );
    let sent = run_alone(&mut l, start, start + ms(4_000));
    let oks: Vec<f64> = sent
        .iter()
        .filter(|(_, t)| status_of(t) == Some(200))
        .map(|(t, _)| t.as_secs_f64())
        .collect();
    // 0.01 then +0.5, +1, +2
    assert_eq!(oks.len(), 4);
    // INVITE retransmission in Accepted: absorbed (RFC 6026), not passed to TU.
    deliver(&mut l, start + ms(4_000), &req, Transport::Udp);
    assert!(drain_ev(&mut l).is_empty());
    // The ACK for the 2xx: new branch (13.2.2.4), matched by dialog, passed to the TU.
    let mut ack = as_server::sip::transaction::build_non_2xx_ack(&req, &ok);
    ack.headers.set(
        HeaderName::VIA,
        format!("SIP/2.0/UDP {UAC};branch=z9hG4bK-ack-2xx"),
    );
    deliver(&mut l, start + ms(4_100), &ack, Transport::Udp);
    match drain_ev(&mut l).as_slice() {
        [Event::Request {
            id: None, request, ..
        }] => assert_eq!(request.method, Method::ACK),
        other => panic!("2xx ACK must reach the TU: {other:?}"),
    }
    // A retransmitted ACK also goes to the TU (end-to-end, never absorbed).
    deliver(&mut l, start + ms(4_200), &ack, Transport::Udp);
    assert!(matches!(
        drain_ev(&mut l).as_slice(),
        [Event::Request { id: None, .. }]
    ));
    let sent = run_alone(&mut l, start, start + ms(40_000));
    assert!(sent.is_empty(), "2xx no longer retransmitted after the ACK");
    assert!(drain_ev(&mut l).is_empty(), "no ACK timeout");
    assert!(l.state(id).is_none(), "timer L ended it");
}

#[test]
fn unacked_2xx_reports_ack_timeout_after_64_t1() {
    let start = t0();
    let mut l = TransactionLayer::default();
    let req = request(Method::INVITE, Transport::Udp);
    deliver(&mut l, start, &req, Transport::Udp);
    let id = new_request_id(&drain_ev(&mut l));
    l.respond(start, id, response(&req, 200, "OK")).unwrap();
    let _ = run_alone(&mut l, start, start + Duration::from_secs(40));
    assert!(matches!(
        drain_ev(&mut l).as_slice(),
        [Event::AckTimeout { invite, status, .. }] if status.0 == 200 && invite.method == Method::INVITE
    ));
}

#[test]
fn non_invite_server_absorbs_in_trying_resends_final_and_timer_j() {
    let start = t0();
    let mut l = TransactionLayer::default();
    let req = request(Method::OPTIONS, Transport::Udp);
    deliver(&mut l, start, &req, Transport::Udp);
    assert!(drain_tx(&mut l).is_empty(), "no 100 for non-INVITE");
    let id = new_request_id(&drain_ev(&mut l));
    // Retransmission in Trying: absorbed silently.
    deliver(&mut l, start + ms(500), &req, Transport::Udp);
    assert!(drain_tx(&mut l).is_empty());
    assert!(drain_ev(&mut l).is_empty());
    l.respond(start + ms(600), id, response(&req, 200, "OK"))
        .unwrap();
    assert_eq!(drain_tx(&mut l).len(), 1);
    assert!(l
        .respond(start + ms(600), id, response(&req, 500, "Oops"))
        .is_err());
    deliver(&mut l, start + ms(1_500), &req, Transport::Udp);
    assert_eq!(
        drain_tx(&mut l).iter().map(status_of).collect::<Vec<_>>(),
        vec![Some(200)]
    );
    assert_eq!(
        l.state(id),
        Some(TransactionState::NonInviteServer(
            NonInviteServerState::Completed
        ))
    );
    // J = 64*T1 after the final response.
    l.handle_timeout(start + ms(600) + Duration::from_millis(31_999));
    assert!(l.state(id).is_some());
    l.handle_timeout(start + ms(600) + Duration::from_secs(32));
    assert!(l.state(id).is_none());
}

#[test]
fn timer_j_is_zero_on_tcp() {
    let start = t0();
    let mut l = TransactionLayer::default();
    let req = request(Method::OPTIONS, Transport::Tcp);
    deliver(&mut l, start, &req, Transport::Tcp);
    let id = new_request_id(&drain_ev(&mut l));
    l.respond(start, id, response(&req, 200, "OK")).unwrap();
    l.handle_timeout(start);
    assert!(l.state(id).is_none());
}

#[test]
fn incoming_request_gets_received_and_rport() {
    let start = t0();
    let mut l = TransactionLayer::default();
    let req = request(Method::OPTIONS, Transport::Udp);
    let natted: SocketAddr = "203.0.113.5:40123".parse().unwrap();
    l.handle_message(start, natted, Transport::Udp, Message::Request(req.clone()));
    let ev = drain_ev(&mut l);
    let (id, received) = match &ev[..] {
        [Event::Request {
            id: Some(id),
            request,
            ..
        }] => (*id, request.clone()),
        other => panic!("{other:?}"),
    };
    let via = received.headers.get(&HeaderName::VIA).unwrap();
    assert!(via.contains("received=203.0.113.5"), "{via}");
    assert!(via.contains("rport=40123"), "{via}");
    l.respond(start, id, response(&received, 200, "OK"))
        .unwrap();
    let t = l.poll_transmit().unwrap();
    //= RFC 3581 5: the response goes to the source address and port.
    assert_eq!(t.destination, natted);
    let Message::Response(r) = parse(&t) else {
        panic!()
    };
    assert!(r
        .headers
        .get(&HeaderName::VIA)
        .unwrap()
        .contains("rport=40123"));
}

#[test]
fn response_without_rport_goes_to_sent_by_port() {
    let start = t0();
    let mut l = TransactionLayer::default();
    let mut req = request(Method::OPTIONS, Transport::Udp);
    req.headers.set(
        HeaderName::VIA,
        "SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-noport",
    );
    l.handle_message(
        start,
        addr("192.0.2.10:40000"),
        Transport::Udp,
        Message::Request(req.clone()),
    );
    let id = new_request_id(&drain_ev(&mut l));
    l.respond(start, id, response(&req, 200, "OK")).unwrap();
    assert_eq!(
        l.poll_transmit().unwrap().destination,
        addr("192.0.2.10:5070")
    );
}

// ---------------------------------------------------------------------------------------
// Two layers over the virtual network.

#[test]
fn lost_invite_is_retransmitted_and_call_completes() {
    let mut net = Net::new(TimerConfig::default());
    let mut dropped = 0;
    net.drop = Box::new(move |to_uas, m| {
        if to_uas && matches!(m, Message::Request(r) if r.method == Method::INVITE) && dropped < 2 {
            dropped += 1;
            return true;
        }
        false
    });
    let req = request(Method::INVITE, Transport::Udp);
    let now = net.now;
    let cid = net
        .uac
        .send_request(now, req.clone(), addr(UAS), Transport::Udp)
        .unwrap();
    net.run_for(ms(2_000));
    // Sent at 0 and 0.5 (lost), 1.5 delivered.
    assert_eq!(secs(&net.sent_to_uas(&Method::INVITE)), vec![0.0, 0.5, 1.5]);
    let reqs = net.take_uas_requests();
    assert_eq!(reqs.len(), 1);
    let sid = reqs[0].0.unwrap();
    let now = net.now;
    net.uas
        .respond(now, sid, response(&reqs[0].1, 486, "Busy Here"))
        .unwrap();
    net.run_for(ms(100));
    // UAC got 100 and 486 and ACKed; UAS absorbed the ACK.
    let codes: Vec<u16> = net
        .uac_events
        .iter()
        .filter_map(|e| match e {
            Event::Response { id, response } if *id == cid => Some(response.status.0),
            _ => None,
        })
        .collect();
    assert_eq!(codes, vec![100, 486]);
    assert_eq!(net.sent_to_uas(&Method::ACK).len(), 1);
    assert!(
        net.take_uas_requests().is_empty(),
        "ACK absorbed by the server transaction"
    );
    assert_eq!(
        net.uas.state(sid),
        Some(TransactionState::InviteServer(InviteServerState::Confirmed))
    );
    net.run_for(Duration::from_secs(40));
    assert!(net.uac.is_empty() && net.uas.is_empty());
    assert_eq!(
        net.responses_to_uac(486).len(),
        1,
        "no G retransmissions after the ACK"
    );
}

#[test]
fn lost_final_response_is_resent_on_request_retransmit() {
    let mut net = Net::new(TimerConfig::default());
    let mut dropped = false;
    net.drop = Box::new(move |to_uas, m| {
        if !to_uas && matches!(m, Message::Response(r) if r.status.0 == 200) && !dropped {
            dropped = true;
            return true;
        }
        false
    });
    let req = request(Method::SUBSCRIBE, Transport::Udp);
    let now = net.now;
    let cid = net
        .uac
        .send_request(now, req, addr(UAS), Transport::Udp)
        .unwrap();
    net.run_for(ms(20));
    let reqs = net.take_uas_requests();
    let now = net.now;
    net.uas
        .respond(now, reqs[0].0.unwrap(), response(&reqs[0].1, 200, "OK"))
        .unwrap();
    net.run_for(ms(2_000));
    assert_eq!(
        net.responses_to_uac(200).len(),
        2,
        "resent on the retransmitted SUBSCRIBE"
    );
    let finals = net
        .uac_events
        .iter()
        .filter(|e| matches!(e, Event::Response { id, response } if *id == cid && response.status.0 == 200))
        .count();
    assert_eq!(finals, 1);
    assert!(
        net.take_uas_requests().is_empty(),
        "retransmission never reached the TU"
    );
}

#[test]
fn cancel_gets_200_the_invite_487_and_the_tu_is_told() {
    let mut net = Net::new(TimerConfig::default());
    let req = request(Method::INVITE, Transport::Udp);
    let now = net.now;
    let cid = net
        .uac
        .send_request(now, req, addr(UAS), Transport::Udp)
        .unwrap();
    // CANCEL asked before any provisional: held until the 100 arrives (RFC 3261 9.1).
    assert_eq!(net.uac.cancel(now, cid).unwrap(), None);
    net.run_for(ms(200));
    let sid = net.take_uas_requests()[0].0.unwrap();
    assert_eq!(net.sent_to_uas(&Method::CANCEL).len(), 1);
    let cancelled: Vec<_> = net
        .uas_events
        .iter()
        .filter_map(|e| match e {
            Event::Cancelled { id, cancel, .. } => Some((*id, cancel.method.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(cancelled, vec![(sid, Method::CANCEL)]);
    assert_eq!(net.responses_to_uac(200).len(), 1, "200 to the CANCEL");
    assert_eq!(net.responses_to_uac(487).len(), 1, "487 to the INVITE");
    // UAC INVITE transaction got 487 and ACKed it; the TU cannot answer any more.
    let now = net.now;
    assert!(net
        .uas
        .respond(
            now,
            sid,
            Response::for_request(
                &request(Method::INVITE, Transport::Udp),
                StatusCode(200),
                "OK"
            )
        )
        .is_err());
    net.run_for(ms(100));
    assert_eq!(net.sent_to_uas(&Method::ACK).len(), 1);
    assert!(net.uac_events.iter().any(
        |e| matches!(e, Event::Response { id, response } if *id == cid && response.status.0 == 487)
    ));
    net.run_for(Duration::from_secs(40));
    assert!(net.uac.is_empty() && net.uas.is_empty());
}

#[test]
fn cancel_after_provisional_is_sent_at_once() {
    let mut net = Net::new(TimerConfig::default());
    let req = request(Method::INVITE, Transport::Udp);
    let now = net.now;
    let cid = net
        .uac
        .send_request(now, req, addr(UAS), Transport::Udp)
        .unwrap();
    net.run_for(ms(100));
    let now = net.now;
    let cancel_id = net.uac.cancel(now, cid).unwrap();
    assert!(cancel_id.is_some());
    net.run_for(ms(100));
    assert!(net.uac_events.iter().any(
        |e| matches!(e, Event::Response { id, response } if Some(*id) == cancel_id && response.status.0 == 200)
    ));
}

#[test]
fn cancel_for_unknown_invite_gets_481() {
    let start = t0();
    let mut l = TransactionLayer::default();
    let invite = request(Method::INVITE, Transport::Udp);
    let cancel = as_server::sip::transaction::build_cancel(&invite);
    deliver(&mut l, start, &cancel, Transport::Udp);
    assert_eq!(
        drain_tx(&mut l).iter().map(status_of).collect::<Vec<_>>(),
        vec![Some(481)]
    );
    assert!(drain_ev(&mut l).is_empty());
}

#[test]
fn cancel_after_final_response_changes_nothing() {
    let start = t0();
    let mut l = TransactionLayer::default();
    let invite = request(Method::INVITE, Transport::Udp);
    deliver(&mut l, start, &invite, Transport::Udp);
    let id = new_request_id(&drain_ev(&mut l));
    l.respond(start, id, response(&invite, 200, "OK")).unwrap();
    let _ = drain_tx(&mut l);
    deliver(
        &mut l,
        start + ms(10),
        &as_server::sip::transaction::build_cancel(&invite),
        Transport::Udp,
    );
    // 200 to the CANCEL (the INVITE exists) but no 487 and no Cancelled event.
    assert_eq!(
        drain_tx(&mut l).iter().map(status_of).collect::<Vec<_>>(),
        vec![Some(200)]
    );
    assert!(drain_ev(&mut l).is_empty());
}

#[test]
fn rfc2543_request_without_magic_cookie_matches_its_retransmission_and_ack() {
    let start = t0();
    let mut l = TransactionLayer::default();
    let mut invite = request(Method::INVITE, Transport::Udp);
    invite
        .headers
        .set(HeaderName::VIA, format!("SIP/2.0/UDP {UAC}"));
    deliver(&mut l, start, &invite, Transport::Udp);
    let id = new_request_id(&drain_ev(&mut l));
    deliver(&mut l, start + ms(500), &invite, Transport::Udp);
    assert!(
        drain_ev(&mut l).is_empty(),
        "retransmission matched without a branch"
    );
    let busy = response(&invite, 486, "Busy Here");
    l.respond(start, id, busy.clone()).unwrap();
    deliver(
        &mut l,
        start + ms(600),
        &as_server::sip::transaction::build_non_2xx_ack(&invite, &busy),
        Transport::Udp,
    );
    assert!(drain_ev(&mut l).is_empty());
    assert_eq!(
        l.state(id),
        Some(TransactionState::InviteServer(InviteServerState::Confirmed))
    );
}

#[test]
fn many_transactions_keep_timeouts_ordered() {
    let start = t0();
    let mut l = TransactionLayer::default();
    for i in 0..200u64 {
        l.send_request(
            start + ms(i),
            request(Method::OPTIONS, Transport::Udp),
            addr(UAS),
            Transport::Udp,
        )
        .unwrap();
    }
    let _ = drain_tx(&mut l);
    assert_eq!(l.poll_timeout(), Some(start + ms(500)));
    let _ = run_alone(&mut l, start, start + Duration::from_secs(60));
    let timeouts = drain_ev(&mut l)
        .into_iter()
        .filter(|e| matches!(e, Event::Timeout { .. }))
        .count();
    assert_eq!(timeouts, 200);
    assert!(l.is_empty());
    assert_eq!(l.poll_timeout(), None);
}

#[test]
fn timer_d_is_zero_on_tcp() {
    let start = t0();
    let mut l = TransactionLayer::default();
    let req = request(Method::INVITE, Transport::Tcp);
    let id = l
        .send_request(start, req.clone(), addr(UAS), Transport::Tcp)
        .unwrap();
    let _ = drain_tx(&mut l);
    l.handle_message(
        start + ms(5),
        addr(UAS),
        Transport::Tcp,
        Message::Response(response(&req, 404, "Not Found")),
    );
    assert_eq!(
        drain_tx(&mut l)
            .iter()
            .filter_map(method_of)
            .collect::<Vec<_>>(),
        vec![Method::ACK]
    );
    assert_eq!(l.poll_timeout(), Some(start + ms(5)));
    l.handle_timeout(start + ms(5));
    assert!(l.state(id).is_none(), "timer D is zero on TCP");
}

#[test]
fn zero_t1_is_clamped_and_cannot_hang() {
    let cfg = TimerConfig {
        t1: Duration::ZERO,
        t2: Duration::ZERO,
        ..TimerConfig::default()
    };
    let start = t0();
    let mut l = TransactionLayer::new(cfg);
    assert_eq!(l.config().t1, ms(1));
    l.send_request(
        start,
        request(Method::OPTIONS, Transport::Udp),
        addr(UAS),
        Transport::Udp,
    )
    .unwrap();
    let sent = run_alone(&mut l, start, start + Duration::from_secs(1));
    // E capped at T2 = T1 = 1 ms until F = 64 ms.
    assert!(sent.len() < 100, "{}", sent.len());
    assert!(matches!(
        drain_ev(&mut l).as_slice(),
        [Event::Timeout { .. }]
    ));
}

/// Throughput of the layer alone (no sockets): `cargo test --release --test transactions --
/// --ignored --nocapture throughput`. Prints numbers, asserts only correctness.
#[test]
#[ignore = "measurement; run by hand in release"]
fn throughput() {
    const N: usize = 100_000;
    let invites: Vec<Request> = (0..N)
        .map(|_| request(Method::INVITE, Transport::Udp))
        .collect();
    let bytes: Vec<Vec<u8>> = invites.iter().map(Request::to_bytes).collect();
    let start = t0();
    let mut l = TransactionLayer::default();
    let mut sent = 0usize;
    for (i, b) in bytes.iter().enumerate() {
        let now = start + Duration::from_micros(i as u64);
        let Message::Request(req) = Message::parse(b).unwrap() else {
            unreachable!()
        };
        l.handle_message(now, addr(UAC), Transport::Udp, Message::Request(req));
        while let Some(ev) = l.poll_event() {
            if let Event::Request {
                id: Some(id),
                request,
                ..
            } = ev
            {
                let ok =
                    Response::for_request(&request, StatusCode(486), "Busy Here").with_to_tag("t");
                l.respond(now, id, ok).unwrap();
            }
        }
        while l.poll_transmit().is_some() {
            sent += 1;
        }
    }
    l.handle_timeout(start + Duration::from_secs(100));
    while l.poll_transmit().is_some() {
        sent += 1;
    }
    let elapsed = wall_elapsed(start);
    assert!(l.is_empty());
    assert!(sent >= 2 * N);
    println!(
        "{N} INVITE server transactions (parse + 100 + 486 + G retransmits + H) in {elapsed:?}: {:.0}/s",
        N as f64 / elapsed.as_secs_f64()
    );
}

#[expect(clippy::disallowed_methods)]
fn wall_elapsed(since: Instant) -> Duration {
    Instant::now() - since
}
