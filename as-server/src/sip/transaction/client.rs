//! Client transactions (RFC 3261 section 17.1): INVITE (17.1.1, with the Accepted state of
//! RFC 6026) and non-INVITE (17.1.2).
//!
//! Each machine is driven by the [`TransactionLayer`](super::TransactionLayer): `start` sends
//! the request, `on_response` feeds a matched response, `on_timer` an expired timer. Outputs
//! (datagrams and TU events) go into the layer's outbox.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::timer::{Timer, TimerConfig, TimerTable};
use super::{Event, Outbox, TransactionId, Transport};
use crate::sip::{HeaderName, Method, Request, Response, StatusCode};

/// States of the INVITE client transaction (RFC 3261 figure 5, RFC 6026 figure 3).
#[derive(Debug, Copy, Clone, PartialEq, Eq)]
pub enum InviteClientState {
    /// INVITE sent, no response yet; timers A and B run.
    Calling,
    /// A provisional response arrived.
    Proceeding,
    /// A 300-699 arrived and was ACKed; timer D absorbs retransmissions.
    Completed,
    /// A 2xx arrived (RFC 6026); timer M passes 2xx retransmissions to the TU.
    Accepted,
    /// Done; the layer removes the transaction.
    Terminated,
}

/// States of the non-INVITE client transaction (RFC 3261 figure 6).
#[derive(Debug, Copy, Clone, PartialEq, Eq)]
pub enum NonInviteClientState {
    /// Request sent, no response yet; timers E and F run.
    Trying,
    /// A provisional response arrived; E keeps retransmitting at T2.
    Proceeding,
    /// A final response arrived; timer K absorbs retransmissions.
    Completed,
    /// Done; the layer removes the transaction.
    Terminated,
}

/// Whether a CANCEL was asked for this INVITE (RFC 3261 section 9.1).
#[derive(Debug, Copy, Clone, PartialEq, Eq)]
pub(crate) enum CancelState {
    /// No CANCEL asked.
    None,
    /// Asked before any provisional response: sent when the first one arrives.
    Pending,
    /// Sent.
    Sent,
}

/// Where a client transaction sends, and the bytes it retransmits.
#[derive(Debug)]
pub(crate) struct Wire {
    pub(crate) destination: SocketAddr,
    pub(crate) transport: Transport,
    pub(crate) request: Request,
    pub(crate) encoded: Bytes,
}

impl Wire {
    fn send(&self, id: TransactionId, bytes: Bytes, out: &mut Outbox) {
        out.transmit(id, self.transport, self.destination, bytes, None);
    }

    /// RFC 3261 8.1.3.1: a timeout (timer B or F) reaches the TU as a 408.
    fn timeout(&self, id: TransactionId) -> Event {
        Event::Timeout {
            id,
            response: synthesize(&self.request, StatusCode(408), "Request Timeout"),
        }
    }

    /// RFC 3261 8.1.3.1: a transport error reaches the TU as a 503.
    fn transport_error(&self, id: TransactionId) -> Event {
        Event::TransportError {
            id,
            response: synthesize(&self.request, StatusCode(503), "Service Unavailable"),
        }
    }
}

/// INVITE client transaction (RFC 3261 section 17.1.1).
#[derive(Debug)]
pub(crate) struct InviteClient {
    pub(crate) id: TransactionId,
    pub(crate) state: InviteClientState,
    pub(crate) wire: Wire,
    pub(crate) timers: TimerTable,
    /// Current timer A interval.
    a_interval: Duration,
    /// The ACK sent for a non-2xx final response, resent on its retransmissions.
    ack: Option<Bytes>,
    pub(crate) cancel: CancelState,
}

impl InviteClient {
    pub(crate) fn start(
        id: TransactionId,
        wire: Wire,
        now: Instant,
        cfg: &TimerConfig,
        out: &mut Outbox,
    ) -> Self {
        let mut tx = Self {
            id,
            state: InviteClientState::Calling,
            wire,
            timers: TimerTable::default(),
            a_interval: cfg.t1,
            ack: None,
            cancel: CancelState::None,
        };
        tx.wire.send(id, tx.wire.encoded.clone(), out);
        //= RFC 3261 17.1.1.2: timer A only for unreliable transports; timer B always.
        if !tx.wire.transport.is_reliable() {
            tx.timers.set(Timer::A, now + tx.a_interval);
        }
        tx.timers.set(Timer::B, now + cfg.t1x64());
        tx
    }

    /// Feeds a response matched to this transaction. Returns `true` when the TU asked for a
    /// CANCEL before any provisional response and it can now be sent (RFC 3261 section 9.1).
    pub(crate) fn on_response(
        &mut self,
        now: Instant,
        cfg: &TimerConfig,
        response: Response,
        out: &mut Outbox,
    ) -> bool {
        let status = response.status;
        let mut send_pending_cancel = false;
        match self.state {
            InviteClientState::Calling | InviteClientState::Proceeding => {
                if status.is_provisional() {
                    self.timers.stop(Timer::A);
                    self.timers.stop(Timer::B);
                    self.state = InviteClientState::Proceeding;
                    if self.cancel == CancelState::Pending {
                        self.cancel = CancelState::Sent;
                        send_pending_cancel = true;
                    }
                    out.event(Event::Response {
                        id: self.id,
                        response,
                    });
                } else if status.is_success() {
                    //= RFC 6026 8.4: 2xx moves to Accepted, timer M; the TU sends the ACK.
                    self.timers.stop_all();
                    self.timers.set(Timer::M, now + cfg.t1x64());
                    self.state = InviteClientState::Accepted;
                    out.event(Event::Response {
                        id: self.id,
                        response,
                    });
                } else {
                    //= RFC 3261 17.1.1.2: 300-699 -> send ACK, Completed, timer D.
                    self.timers.stop_all();
                    let ack = build_non_2xx_ack(&self.wire.request, &response);
                    let bytes = Bytes::from(ack.to_bytes());
                    self.wire.send(self.id, bytes.clone(), out);
                    self.ack = Some(bytes);
                    self.state = InviteClientState::Completed;
                    self.timers.set(
                        Timer::D,
                        now + cfg.timer_d(self.wire.transport.is_reliable()),
                    );
                    out.event(Event::Response {
                        id: self.id,
                        response,
                    });
                }
            }
            InviteClientState::Completed => {
                //= RFC 3261 17.1.1.2: retransmitted final response -> resend ACK, not to TU.
                if status.is_final() && !status.is_success() {
                    if let Some(ack) = &self.ack {
                        self.wire.send(self.id, ack.clone(), out);
                    }
                }
            }
            InviteClientState::Accepted => {
                //= RFC 6026 8.4: 2xx retransmissions (or 2xx from other forks) go to the TU.
                if status.is_success() {
                    out.event(Event::Response {
                        id: self.id,
                        response,
                    });
                }
            }
            InviteClientState::Terminated => {}
        }
        send_pending_cancel
    }

    pub(crate) fn on_timer(&mut self, now: Instant, timer: Timer, out: &mut Outbox) {
        match (self.state, timer) {
            (InviteClientState::Calling, Timer::A) => {
                //= RFC 3261 17.1.1.2: retransmit, double A (no T2 cap for INVITE).
                self.wire.send(self.id, self.wire.encoded.clone(), out);
                self.a_interval *= 2;
                self.timers.set(Timer::A, now + self.a_interval);
            }
            (InviteClientState::Calling, Timer::B) => {
                //= RFC 3261 17.1.1.2: timer B -> inform TU of the timeout (8.1.3.1: as 408).
                self.terminate();
                out.event(self.wire.timeout(self.id));
            }
            (InviteClientState::Completed, Timer::D) | (InviteClientState::Accepted, Timer::M) => {
                self.terminate();
            }
            _ => {}
        }
    }

    /// RFC 3261 17.1.1.2 / 8.1.3.1: a transport error ends the transaction, as a 503.
    pub(crate) fn on_transport_error(&mut self, out: &mut Outbox) {
        if matches!(
            self.state,
            InviteClientState::Calling | InviteClientState::Proceeding
        ) {
            out.event(self.wire.transport_error(self.id));
        }
        self.terminate();
    }

    fn terminate(&mut self) {
        self.timers.stop_all();
        self.state = InviteClientState::Terminated;
    }
}

/// Non-INVITE client transaction (RFC 3261 section 17.1.2).
#[derive(Debug)]
pub(crate) struct NonInviteClient {
    pub(crate) id: TransactionId,
    pub(crate) state: NonInviteClientState,
    pub(crate) wire: Wire,
    pub(crate) timers: TimerTable,
    /// Current timer E interval.
    e_interval: Duration,
}

impl NonInviteClient {
    pub(crate) fn start(
        id: TransactionId,
        wire: Wire,
        now: Instant,
        cfg: &TimerConfig,
        out: &mut Outbox,
    ) -> Self {
        let mut tx = Self {
            id,
            state: NonInviteClientState::Trying,
            wire,
            timers: TimerTable::default(),
            e_interval: cfg.t1,
        };
        tx.wire.send(id, tx.wire.encoded.clone(), out);
        //= RFC 3261 17.1.2.2: timer E only for unreliable transports; timer F always.
        if !tx.wire.transport.is_reliable() {
            tx.timers.set(Timer::E, now + tx.e_interval);
        }
        tx.timers.set(Timer::F, now + cfg.t1x64());
        tx
    }

    pub(crate) fn on_response(
        &mut self,
        now: Instant,
        cfg: &TimerConfig,
        response: Response,
        out: &mut Outbox,
    ) {
        match self.state {
            NonInviteClientState::Trying | NonInviteClientState::Proceeding => {
                if response.status.is_provisional() {
                    self.state = NonInviteClientState::Proceeding;
                    out.event(Event::Response {
                        id: self.id,
                        response,
                    });
                } else {
                    //= RFC 3261 17.1.2.2: final -> Completed, timer K (T4, 0 reliable).
                    self.timers.stop_all();
                    self.state = NonInviteClientState::Completed;
                    self.timers.set(
                        Timer::K,
                        now + cfg.t4_unless_reliable(self.wire.transport.is_reliable()),
                    );
                    out.event(Event::Response {
                        id: self.id,
                        response,
                    });
                }
            }
            // Retransmissions absorbed.
            NonInviteClientState::Completed | NonInviteClientState::Terminated => {}
        }
    }

    pub(crate) fn on_timer(
        &mut self,
        now: Instant,
        cfg: &TimerConfig,
        timer: Timer,
        out: &mut Outbox,
    ) {
        match (self.state, timer) {
            (NonInviteClientState::Trying, Timer::E) => {
                //= RFC 3261 17.1.2.2: retransmit, E = min(2E, T2).
                self.wire.send(self.id, self.wire.encoded.clone(), out);
                self.e_interval = cfg.backoff_capped(self.e_interval);
                self.timers.set(Timer::E, now + self.e_interval);
            }
            (NonInviteClientState::Proceeding, Timer::E) => {
                //= RFC 3261 17.1.2.2: in Proceeding, retransmit every T2.
                self.wire.send(self.id, self.wire.encoded.clone(), out);
                self.e_interval = cfg.t2;
                self.timers.set(Timer::E, now + cfg.t2);
            }
            (NonInviteClientState::Trying | NonInviteClientState::Proceeding, Timer::F) => {
                self.terminate();
                out.event(self.wire.timeout(self.id));
            }
            (NonInviteClientState::Completed, Timer::K) => self.terminate(),
            _ => {}
        }
    }

    pub(crate) fn on_transport_error(&mut self, out: &mut Outbox) {
        if matches!(
            self.state,
            NonInviteClientState::Trying | NonInviteClientState::Proceeding
        ) {
            out.event(self.wire.transport_error(self.id));
        }
        self.terminate();
    }

    fn terminate(&mut self) {
        self.timers.stop_all();
        self.state = NonInviteClientState::Terminated;
    }
}

/// A response made locally for the TU when no real one came (RFC 3261 section 8.1.3.1).
pub(crate) fn synthesize(request: &Request, status: StatusCode, reason: &str) -> Response {
    Response::for_request(request, status, reason)
}

/// The ACK for a non-2xx final response (RFC 3261 section 17.1.1.3): same Request-URI,
/// Call-ID, From, CSeq number and top Via as the INVITE, To from the response, the INVITE's
/// Route headers.
#[must_use]
pub fn build_non_2xx_ack(invite: &Request, response: &Response) -> Request {
    let mut ack = Request::new(Method::ACK, invite.uri.clone());
    if let Some(via) = invite.headers.get(&HeaderName::VIA) {
        ack.headers.push(HeaderName::VIA, via);
    }
    ack.headers.push(HeaderName::MAX_FORWARDS, "70");
    for name in [HeaderName::FROM] {
        if let Some(v) = invite.headers.get(&name) {
            ack.headers.push(name, v);
        }
    }
    if let Some(to) = response.headers.get(&HeaderName::TO) {
        ack.headers.push(HeaderName::TO, to);
    }
    if let Some(v) = invite.headers.get(&HeaderName::CALL_ID) {
        ack.headers.push(HeaderName::CALL_ID, v);
    }
    let seq = invite.cseq().map(|c| c.seq).unwrap_or(1);
    ack.headers.push(HeaderName::CSEQ, format!("{seq} ACK"));
    for route in invite.headers.get_all(&HeaderName::ROUTE) {
        ack.headers.push(HeaderName::ROUTE, route);
    }
    ack
}

/// The CANCEL for an INVITE (RFC 3261 section 9.1): Request-URI, Call-ID, To, From, top Via
/// and CSeq number of the INVITE, method CANCEL, the INVITE's Route headers.
#[must_use]
pub fn build_cancel(invite: &Request) -> Request {
    let mut cancel = Request::new(Method::CANCEL, invite.uri.clone());
    if let Some(via) = invite.headers.get(&HeaderName::VIA) {
        cancel.headers.push(HeaderName::VIA, via);
    }
    cancel.headers.push(HeaderName::MAX_FORWARDS, "70");
    for name in [HeaderName::FROM, HeaderName::TO, HeaderName::CALL_ID] {
        if let Some(v) = invite.headers.get(&name) {
            cancel.headers.push(name, v);
        }
    }
    let seq = invite.cseq().map(|c| c.seq).unwrap_or(1);
    cancel
        .headers
        .push(HeaderName::CSEQ, format!("{seq} CANCEL"));
    for route in invite.headers.get_all(&HeaderName::ROUTE) {
        cancel.headers.push(HeaderName::ROUTE, route);
    }
    cancel
}
