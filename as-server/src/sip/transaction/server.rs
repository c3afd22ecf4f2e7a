//! Server transactions (RFC 3261 section 17.2): INVITE (17.2.1, with the Accepted state of
//! RFC 6026) and non-INVITE (17.2.2).
//!
//! The [`TransactionLayer`](super::TransactionLayer) creates one per new request, feeds it
//! request retransmissions, ACKs and the TU's responses, and its expired timers. Responses go
//! to the address chosen by RFC 3261 section 18.2.2 / RFC 3581 ([`super::response_destination`]).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::timer::{Timer, TimerConfig, TimerTable};
use super::{Event, Outbox, TransactionError, TransactionId, Transport};
use crate::sip::{Request, Response, StatusCode};

/// States of the INVITE server transaction (RFC 3261 figure 7, RFC 6026 figure 5).
#[derive(Debug, Copy, Clone, PartialEq, Eq)]
pub enum InviteServerState {
    /// INVITE received, no final response yet.
    Proceeding,
    /// A 300-699 was sent; timers G and H run until the ACK arrives.
    Completed,
    /// The ACK for the 300-699 arrived; timer I absorbs ACK retransmissions.
    Confirmed,
    /// A 2xx was sent (RFC 6026); the layer retransmits it until the end-to-end ACK arrives
    /// (RFC 3261 section 13.3.1.4) and timer L absorbs INVITE retransmissions.
    Accepted,
    /// Done; the layer removes the transaction.
    Terminated,
}

/// States of the non-INVITE server transaction (RFC 3261 figure 8).
#[derive(Debug, Copy, Clone, PartialEq, Eq)]
pub enum NonInviteServerState {
    /// Request received, TU not answered yet.
    Trying,
    /// TU sent a provisional response.
    Proceeding,
    /// TU sent a final response; timer J absorbs request retransmissions.
    Completed,
    /// Done; the layer removes the transaction.
    Terminated,
}

/// Where a server transaction sends its responses.
#[derive(Debug, Copy, Clone)]
pub(crate) struct ReplyPath {
    pub(crate) destination: SocketAddr,
    pub(crate) transport: Transport,
    pub(crate) reconnect: Option<SocketAddr>,
}

impl ReplyPath {
    fn send(&self, id: TransactionId, bytes: Bytes, out: &mut Outbox) {
        out.transmit(id, self.transport, self.destination, bytes, self.reconnect);
    }
}

/// INVITE server transaction (RFC 3261 section 17.2.1).
#[derive(Debug)]
pub(crate) struct InviteServer {
    pub(crate) id: TransactionId,
    pub(crate) state: InviteServerState,
    pub(crate) reply: ReplyPath,
    pub(crate) request: Request,
    pub(crate) timers: TimerTable,
    /// The last response sent (provisional in Proceeding, final afterwards).
    last: Option<Bytes>,
    /// Status of the final response sent.
    final_status: Option<StatusCode>,
    /// Current timer G (or 2xx retransmit) interval.
    interval: Duration,
    /// The end-to-end ACK for our 2xx arrived.
    pub(crate) acked: bool,
}

impl InviteServer {
    pub(crate) fn start(
        id: TransactionId,
        request: Request,
        reply: ReplyPath,
        now: Instant,
        cfg: &TimerConfig,
        out: &mut Outbox,
    ) -> Self {
        let mut tx = Self {
            id,
            state: InviteServerState::Proceeding,
            reply,
            request,
            timers: TimerTable::default(),
            last: None,
            final_status: None,
            interval: cfg.t1,
            acked: false,
        };
        //= RFC 3261 17.2.1: 100 Trying unless the TU answers within 200 ms; the delay is
        //= configurable (`TimerConfig::trying_delay`), zero meaning at once.
        if cfg.trying_delay.is_zero() {
            tx.send_trying(out);
        } else {
            tx.timers.set(Timer::Trying, now + cfg.trying_delay);
        }
        tx
    }

    fn send_trying(&mut self, out: &mut Outbox) {
        let trying = Response::for_request(&self.request, StatusCode(100), "Trying");
        let bytes = Bytes::from(trying.to_bytes());
        self.reply.send(self.id, bytes.clone(), out);
        self.last = Some(bytes);
    }

    /// A retransmission of the INVITE (RFC 3261 17.2.1: resend the last response).
    pub(crate) fn on_request_retransmit(&mut self, out: &mut Outbox) {
        match self.state {
            InviteServerState::Proceeding => match &self.last {
                Some(last) => self.reply.send(self.id, last.clone(), out),
                // The Trying timer has not fired yet: the peer is impatient, answer now.
                None => {
                    self.timers.stop(Timer::Trying);
                    self.send_trying(out);
                }
            },
            InviteServerState::Completed => {
                if let Some(last) = &self.last {
                    self.reply.send(self.id, last.clone(), out);
                }
            }
            // RFC 6026 8.7: absorbed in Accepted; absorbed in Confirmed.
            InviteServerState::Accepted
            | InviteServerState::Confirmed
            | InviteServerState::Terminated => {}
        }
    }

    /// An ACK matched by branch: the ACK of our 300-699 (RFC 3261 17.2.1).
    /// Returns `true` when it is in fact a 2xx ACK (same branch, legal per RFC 2543 peers)
    /// that the layer must hand to the TU.
    pub(crate) fn on_ack(&mut self, now: Instant, cfg: &TimerConfig) -> bool {
        match self.state {
            InviteServerState::Completed => {
                self.timers.stop(Timer::G);
                self.timers.stop(Timer::H);
                self.state = InviteServerState::Confirmed;
                self.timers.set(
                    Timer::I,
                    now + cfg.t4_unless_reliable(self.reply.transport.is_reliable()),
                );
                false
            }
            InviteServerState::Accepted => {
                self.on_2xx_ack();
                true
            }
            _ => false,
        }
    }

    /// The end-to-end ACK of our 2xx arrived (matched by dialog): stop retransmitting it.
    pub(crate) fn on_2xx_ack(&mut self) {
        self.acked = true;
        self.timers.stop(Timer::Retransmit2xx);
    }

    /// The TU's response (RFC 3261 17.2.1, RFC 6026 8.5).
    pub(crate) fn respond(
        &mut self,
        now: Instant,
        cfg: &TimerConfig,
        response: &Response,
        out: &mut Outbox,
    ) -> Result<(), TransactionError> {
        if self.state != InviteServerState::Proceeding {
            return Err(TransactionError::AlreadyAnswered(self.id));
        }
        let bytes = Bytes::from(response.to_bytes());
        self.reply.send(self.id, bytes.clone(), out);
        self.last = Some(bytes);
        let unreliable = !self.reply.transport.is_reliable();
        if response.status.is_final() {
            self.final_status = Some(response.status);
        }
        if response.status.is_provisional() {
            self.timers.stop(Timer::Trying);
        } else if response.status.is_success() {
            self.timers.stop_all();
            self.state = InviteServerState::Accepted;
            self.timers.set(Timer::L, now + cfg.t1x64());
            //= RFC 3261 13.3.1.4: retransmit the 2xx (T1 doubling to T2) until the ACK.
            if unreliable {
                self.interval = cfg.t1;
                self.timers.set(Timer::Retransmit2xx, now + self.interval);
            }
        } else {
            self.timers.stop_all();
            self.state = InviteServerState::Completed;
            if unreliable {
                self.interval = cfg.t1;
                self.timers.set(Timer::G, now + self.interval);
            }
            self.timers.set(Timer::H, now + cfg.t1x64());
        }
        Ok(())
    }

    /// A CANCEL for this INVITE (RFC 3261 9.2): 487 if no final response was sent yet.
    /// Returns whether the INVITE was cancelled (the TU must be told).
    pub(crate) fn cancel(&mut self, now: Instant, cfg: &TimerConfig, out: &mut Outbox) -> bool {
        if self.state != InviteServerState::Proceeding {
            return false;
        }
        let terminated =
            Response::for_request(&self.request, StatusCode(487), "Request Terminated");
        // The To tag: RFC 3261 8.2.6.2 asks for one on every non-100 response; the dialog is
        // not created, any tag works.
        let terminated = with_to_tag_if_missing(terminated, self.id);
        self.respond(now, cfg, &terminated, out).is_ok()
    }

    pub(crate) fn on_timer(
        &mut self,
        now: Instant,
        cfg: &TimerConfig,
        timer: Timer,
        out: &mut Outbox,
    ) {
        match (self.state, timer) {
            (InviteServerState::Proceeding, Timer::Trying) if self.last.is_none() => {
                self.send_trying(out);
            }
            (InviteServerState::Completed, Timer::G) => {
                //= RFC 3261 17.2.1: retransmit, G = min(2G, T2).
                if let Some(last) = &self.last {
                    self.reply.send(self.id, last.clone(), out);
                }
                self.interval = cfg.backoff_capped(self.interval);
                self.timers.set(Timer::G, now + self.interval);
            }
            (InviteServerState::Completed, Timer::H) => {
                //= RFC 3261 17.2.1: no ACK -> Terminated, inform the TU.
                self.terminate();
                out.event(self.ack_timeout());
            }
            (InviteServerState::Confirmed, Timer::I) => self.terminate(),
            (InviteServerState::Accepted, Timer::Retransmit2xx) if !self.acked => {
                if let Some(last) = &self.last {
                    self.reply.send(self.id, last.clone(), out);
                }
                self.interval = cfg.backoff_capped(self.interval);
                self.timers.set(Timer::Retransmit2xx, now + self.interval);
            }
            (InviteServerState::Accepted, Timer::L) => {
                self.terminate();
                //= RFC 3261 13.3.1.4: no ACK within 64*T1 -> the TU should end the dialog.
                if !self.acked {
                    out.event(self.ack_timeout());
                }
            }
            _ => {}
        }
    }

    fn ack_timeout(&self) -> Event {
        Event::AckTimeout {
            id: self.id,
            invite: self.request.clone(),
            status: self.final_status.unwrap_or(StatusCode(200)),
        }
    }

    pub(crate) fn on_transport_error(&mut self, out: &mut Outbox) {
        if self.state != InviteServerState::Terminated {
            self.terminate();
            out.event(Event::ServerTransportError { id: self.id });
        }
    }

    fn terminate(&mut self) {
        self.timers.stop_all();
        self.state = InviteServerState::Terminated;
    }
}

/// Non-INVITE server transaction (RFC 3261 section 17.2.2).
#[derive(Debug)]
pub(crate) struct NonInviteServer {
    pub(crate) id: TransactionId,
    pub(crate) state: NonInviteServerState,
    pub(crate) reply: ReplyPath,
    pub(crate) timers: TimerTable,
    last: Option<Bytes>,
}

impl NonInviteServer {
    pub(crate) fn new(id: TransactionId, reply: ReplyPath) -> Self {
        Self {
            id,
            state: NonInviteServerState::Trying,
            reply,
            timers: TimerTable::default(),
            last: None,
        }
    }

    /// RFC 3261 17.2.2: absorbed in Trying, last response resent in Proceeding/Completed.
    pub(crate) fn on_request_retransmit(&mut self, out: &mut Outbox) {
        if matches!(
            self.state,
            NonInviteServerState::Proceeding | NonInviteServerState::Completed
        ) {
            if let Some(last) = &self.last {
                self.reply.send(self.id, last.clone(), out);
            }
        }
    }

    pub(crate) fn respond(
        &mut self,
        now: Instant,
        cfg: &TimerConfig,
        response: &Response,
        out: &mut Outbox,
    ) -> Result<(), TransactionError> {
        if !matches!(
            self.state,
            NonInviteServerState::Trying | NonInviteServerState::Proceeding
        ) {
            return Err(TransactionError::AlreadyAnswered(self.id));
        }
        let bytes = Bytes::from(response.to_bytes());
        self.reply.send(self.id, bytes.clone(), out);
        self.last = Some(bytes);
        if response.status.is_provisional() {
            self.state = NonInviteServerState::Proceeding;
        } else {
            //= RFC 3261 17.2.2: final -> Completed, timer J (64*T1, 0 reliable).
            self.state = NonInviteServerState::Completed;
            self.timers.set(
                Timer::J,
                now + cfg.timer_j(self.reply.transport.is_reliable()),
            );
        }
        Ok(())
    }

    pub(crate) fn on_timer(&mut self, timer: Timer) {
        if (self.state, timer) == (NonInviteServerState::Completed, Timer::J) {
            self.terminate();
        }
    }

    pub(crate) fn on_transport_error(&mut self, out: &mut Outbox) {
        if self.state != NonInviteServerState::Terminated {
            self.terminate();
            out.event(Event::ServerTransportError { id: self.id });
        }
    }

    fn terminate(&mut self) {
        self.timers.stop_all();
        self.state = NonInviteServerState::Terminated;
    }
}

/// Adds a To tag derived from the transaction id when the response has none.
pub(crate) fn with_to_tag_if_missing(response: Response, id: TransactionId) -> Response {
    let has_tag = response.to().ok().is_some_and(|to| to.tag().is_some());
    if has_tag {
        response
    } else {
        response.with_to_tag(&format!("t{:x}", id.0))
    }
}
