//! SIP transaction layer (RFC 3261 section 17), sans-IO.
//!
//! [`TransactionLayer`] owns every client and server transaction of an endpoint. The driver
//! feeds it parsed messages ([`TransactionLayer::handle_message`]) and the time
//! ([`TransactionLayer::handle_timeout`]), and drains datagrams
//! ([`TransactionLayer::poll_transmit`]), the next deadline
//! ([`TransactionLayer::poll_timeout`]) and events for the transaction user
//! ([`TransactionLayer::poll_event`]). The TU answers requests with
//! [`TransactionLayer::respond`] and sends its own with [`TransactionLayer::send_request`].
//! Nothing here reads the clock or touches a socket.
//!
//! ```text
//!  driver (tokio)                 TransactionLayer                      TU
//!  bytes -> Message ----handle_message----> match (17.1.3/17.2.3) --Event::Request--> service
//!                                 server tx <------------respond(id, Response)------
//!  socket <----poll_transmit----- client tx <------------send_request(Request)------
//!  sleep(poll_timeout) --handle_timeout--> timers A-M --Event::Response/Timeout-->
//! ```
//!
//! Choices:
//! - 100 Trying for INVITE: after [`TimerConfig::trying_delay`], zero (at once) by default.
//! - A 2xx to an INVITE moves the server transaction to Accepted (RFC 6026); the layer
//!   retransmits that 2xx until the ACK arrives (the UAS core's job in RFC 3261 13.3.1.4, done
//!   here so every TU gets it right). The ACK for a 2xx is end-to-end: it is never absorbed,
//!   it goes to the TU as an [`Event::Request`] without a transaction.
//! - CANCEL (RFC 3261 9.2) is answered by the layer: 200 to the CANCEL, 487 to the INVITE,
//!   [`Event::Cancelled`] to the TU. Unmatched CANCEL gets 481.
//! - Client timeouts (B, F) and transport errors reach the TU as a synthesized 408/503
//!   (RFC 3261 8.1.3.1).

pub mod client;
pub mod server;
pub mod timer;
pub mod via;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

pub use client::{build_cancel, build_non_2xx_ack, InviteClientState, NonInviteClientState};
pub use server::{InviteServerState, NonInviteServerState};
pub use timer::{Timer, TimerConfig, TimerTable};
pub use via::{reconnect_destination, response_destination, TopVia};

use client::{CancelState, InviteClient, NonInviteClient, Wire};
use server::{InviteServer, NonInviteServer, ReplyPath};

use crate::sip::{Message, Method, Request, Response, StatusCode};

/// The magic cookie that marks an RFC 3261 branch (section 8.1.1.7).
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// A SIP transport (RFC 3261 section 18).
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP: unreliable, retransmission timers run.
    Udp,
    /// TCP: reliable, stream framed.
    Tcp,
    /// TLS over TCP (sips:, port 5061).
    Tls,
}

impl Transport {
    /// Reliable transports do not run timers A, E, G and zero D, I, J, K (RFC 3261 17).
    #[must_use]
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The Via transport token (RFC 3261 section 20.42).
    #[must_use]
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// The transport named by a Via token, case-insensitively.
    #[must_use]
    pub fn from_via_token(token: &str) -> Option<Self> {
        [Transport::Udp, Transport::Tcp, Transport::Tls]
            .into_iter()
            .find(|t| t.via_token().eq_ignore_ascii_case(token))
    }

    /// The default port when a URI or Via names none (5060, 5061 for TLS).
    #[must_use]
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls => 5061,
            _ => 5060,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.via_token())
    }
}

/// Identifies a transaction inside one [`TransactionLayer`].
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionId(pub u64);

/// A datagram (or stream chunk) to send.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a transmit that is dropped is a message never sent"]
pub struct Transmit {
    /// The transport to send on.
    pub transport: Transport,
    /// Where to send: on TCP/TLS the connection to (or from) this address.
    pub destination: SocketAddr,
    /// The encoded message.
    pub contents: Bytes,
    /// The transaction that sent it, to report a transport error back; `None` for stateless.
    pub transaction: Option<TransactionId>,
    /// For a response on TCP/TLS: where to open a new connection when the one to
    /// `destination` has closed (RFC 3261 18.2.2: the `received` address and the sent-by
    /// port). `None` otherwise.
    pub reconnect: Option<SocketAddr>,
}

/// What the layer tells the transaction user.
#[derive(Debug, Clone)]
#[must_use]
pub enum Event {
    /// A new request. `id` is the server transaction to answer with
    /// [`TransactionLayer::respond`]; `None` for an ACK (end-to-end, nothing to answer).
    Request {
        /// The server transaction, `None` for ACK.
        id: Option<TransactionId>,
        /// The request, with `received`/`rport` set on its top Via (RFC 3581).
        request: Request,
        /// Where it came from.
        source: SocketAddr,
        /// The transport it came on.
        transport: Transport,
    },
    /// A CANCEL ended an INVITE server transaction: the layer sent 200 to the CANCEL and 487
    /// to the INVITE (RFC 3261 9.2). The TU must not answer `id` any more.
    Cancelled {
        /// The cancelled INVITE's server transaction.
        id: TransactionId,
        /// The CANCEL request.
        cancel: Request,
        /// Where the CANCEL came from.
        source: SocketAddr,
        /// The transport it came on.
        transport: Transport,
    },
    /// A response to a client transaction (provisional or final; 2xx retransmissions of an
    /// INVITE too, RFC 6026).
    Response {
        /// The client transaction.
        id: TransactionId,
        /// The response.
        response: Response,
    },
    /// Timer B or F fired: no final response. `response` is a synthesized 408 (8.1.3.1).
    Timeout {
        /// The client transaction.
        id: TransactionId,
        /// The synthesized 408 Request Timeout.
        response: Response,
    },
    /// The transport failed for a client transaction. `response` is a synthesized 503.
    TransportError {
        /// The client transaction.
        id: TransactionId,
        /// The synthesized 503 Service Unavailable.
        response: Response,
    },
    /// A final response of a server transaction was never ACKed (timer H, or timer L for a
    /// 2xx, RFC 3261 13.3.1.4: the TU should end the dialog).
    AckTimeout {
        /// The server transaction.
        id: TransactionId,
        /// The INVITE (its Call-ID, tags and CSeq name the dialog).
        invite: Request,
        /// The status of the unacknowledged final response.
        status: StatusCode,
    },
    /// The transport failed while a server transaction sent a response.
    ServerTransportError {
        /// The server transaction.
        id: TransactionId,
    },
}

/// Errors from the TU's calls into the layer (caller misuse, split by cause).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TransactionError {
    /// No such (live) transaction.
    #[error("no transaction {0:?}")]
    UnknownTransaction(TransactionId),
    /// The server transaction already sent its final response (or was cancelled).
    #[error("transaction {0:?} already sent a final response")]
    AlreadyAnswered(TransactionId),
    /// The request has no top Via with an RFC 3261 branch (`z9hG4bK...`).
    #[error("request needs a top Via with a z9hG4bK branch")]
    MissingBranch,
    /// A transaction with this branch and method already exists.
    #[error("a transaction with this branch already exists")]
    DuplicateBranch,
    /// ACK is never sent in a transaction of its own; use [`TransactionLayer::send_stateless`].
    #[error("ACK is sent with send_stateless")]
    AckNeedsNoTransaction,
    /// The transaction is not an INVITE client transaction that can be cancelled.
    #[error("transaction {0:?} cannot be cancelled")]
    NotCancellable(TransactionId),
    /// The request lacks a header the transaction needs (CSeq, Call-ID...).
    #[error("request lacks {0}")]
    MalformedRequest(&'static str),
}

/// Datagrams and events produced while handling an input.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl Outbox {
    pub(crate) fn transmit(
        &mut self,
        id: TransactionId,
        transport: Transport,
        destination: SocketAddr,
        contents: Bytes,
        reconnect: Option<SocketAddr>,
    ) {
        self.transmits.push_back(Transmit {
            transport,
            destination,
            contents,
            transaction: Some(id),
            reconnect,
        });
    }

    pub(crate) fn event(&mut self, event: Event) {
        self.events.push_back(event);
    }
}

/// Server transaction key (RFC 3261 17.2.3): branch + sent-by + method, ACK mapped to
/// INVITE. For RFC 2543 requests (no magic cookie) the branch slot holds a digest of the
/// Request-URI, Call-ID, From tag, CSeq number and top Via.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ServerKey {
    branch: String,
    sent_by: String,
    method: Method,
}

/// Client transaction key (RFC 3261 17.1.3): branch + CSeq method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    branch: String,
    method: Method,
}

/// Finds an INVITE server transaction in Accepted from its end-to-end ACK (RFC 3261 17.2.3
/// does not match it: it has its own branch): Call-ID, CSeq number, From tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DialogAckKey {
    call_id: String,
    seq: u32,
    from_tag: String,
}

#[derive(Debug)]
enum Transaction {
    InviteClient(InviteClient),
    NonInviteClient(NonInviteClient),
    InviteServer {
        tx: InviteServer,
        key: ServerKey,
        ack_key: Option<DialogAckKey>,
    },
    NonInviteServer {
        tx: NonInviteServer,
        key: ServerKey,
    },
}

impl Transaction {
    fn timers(&self) -> &TimerTable {
        match self {
            Transaction::InviteClient(t) => &t.timers,
            Transaction::NonInviteClient(t) => &t.timers,
            Transaction::InviteServer { tx, .. } => &tx.timers,
            Transaction::NonInviteServer { tx, .. } => &tx.timers,
        }
    }

    fn timers_mut(&mut self) -> &mut TimerTable {
        match self {
            Transaction::InviteClient(t) => &mut t.timers,
            Transaction::NonInviteClient(t) => &mut t.timers,
            Transaction::InviteServer { tx, .. } => &mut tx.timers,
            Transaction::NonInviteServer { tx, .. } => &mut tx.timers,
        }
    }

    fn is_terminated(&self) -> bool {
        match self {
            Transaction::InviteClient(t) => t.state == InviteClientState::Terminated,
            Transaction::NonInviteClient(t) => t.state == NonInviteClientState::Terminated,
            Transaction::InviteServer { tx, .. } => tx.state == InviteServerState::Terminated,
            Transaction::NonInviteServer { tx, .. } => tx.state == NonInviteServerState::Terminated,
        }
    }
}

/// The state of one transaction, for tests and diagnostics.
#[derive(Debug, Copy, Clone, PartialEq, Eq)]
pub enum TransactionState {
    /// INVITE client transaction.
    InviteClient(InviteClientState),
    /// Non-INVITE client transaction.
    NonInviteClient(NonInviteClientState),
    /// INVITE server transaction.
    InviteServer(InviteServerState),
    /// Non-INVITE server transaction.
    NonInviteServer(NonInviteServerState),
}

/// Owns every transaction of an endpoint; sans-IO (see the module docs).
#[derive(Debug)]
pub struct TransactionLayer {
    config: TimerConfig,
    next_id: u64,
    transactions: HashMap<TransactionId, Transaction>,
    server_keys: HashMap<ServerKey, TransactionId>,
    client_keys: HashMap<ClientKey, TransactionId>,
    /// The key of each client transaction, to unfile it in O(1).
    client_ids: HashMap<TransactionId, ClientKey>,
    accepted: HashMap<DialogAckKey, TransactionId>,
    /// (deadline, transaction) for every transaction with an armed timer.
    deadlines: BTreeSet<(Instant, TransactionId)>,
    scheduled: HashMap<TransactionId, Instant>,
    out: Outbox,
}

impl Default for TransactionLayer {
    fn default() -> Self {
        Self::new(TimerConfig::default())
    }
}

impl TransactionLayer {
    /// A layer with these timer values (T1 of at least 1 ms, T2 >= T1, T4 >= 0: a zero T1
    /// would re-arm timers at the same instant forever).
    #[must_use]
    pub fn new(config: TimerConfig) -> Self {
        Self {
            config: config.sanitized(),
            next_id: 1,
            transactions: HashMap::new(),
            server_keys: HashMap::new(),
            client_keys: HashMap::new(),
            client_ids: HashMap::new(),
            accepted: HashMap::new(),
            deadlines: BTreeSet::new(),
            scheduled: HashMap::new(),
            out: Outbox::default(),
        }
    }

    /// The timer values in use.
    #[must_use]
    pub fn config(&self) -> &TimerConfig {
        &self.config
    }

    /// Number of live transactions.
    #[must_use]
    pub fn len(&self) -> usize {
        self.transactions.len()
    }

    /// Whether no transaction is live.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.transactions.is_empty()
    }

    /// The state of a live transaction.
    #[must_use]
    pub fn state(&self, id: TransactionId) -> Option<TransactionState> {
        Some(match self.transactions.get(&id)? {
            Transaction::InviteClient(t) => TransactionState::InviteClient(t.state),
            Transaction::NonInviteClient(t) => TransactionState::NonInviteClient(t.state),
            Transaction::InviteServer { tx, .. } => TransactionState::InviteServer(tx.state),
            Transaction::NonInviteServer { tx, .. } => TransactionState::NonInviteServer(tx.state),
        })
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    /// The next event for the TU.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.events.pop_front()
    }

    /// The earliest timer deadline; call [`Self::handle_timeout`] then.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(d, _)| d)
    }

    fn alloc_id(&mut self) -> TransactionId {
        let id = TransactionId(self.next_id);
        self.next_id += 1;
        id
    }

    /// Re-files `id`'s deadline after its timers changed, and drops it when terminated.
    fn reschedule(&mut self, id: TransactionId) {
        if let Some(old) = self.scheduled.remove(&id) {
            self.deadlines.remove(&(old, id));
        }
        let Some(tx) = self.transactions.get(&id) else {
            return;
        };
        if tx.is_terminated() {
            self.remove(id);
            return;
        }
        if let Some(next) = tx.timers().next_timeout() {
            self.deadlines.insert((next, id));
            self.scheduled.insert(id, next);
        }
    }

    fn remove(&mut self, id: TransactionId) {
        if let Some(old) = self.scheduled.remove(&id) {
            self.deadlines.remove(&(old, id));
        }
        match self.transactions.remove(&id) {
            Some(Transaction::InviteClient(_) | Transaction::NonInviteClient(_)) => {
                if let Some(key) = self.client_ids.remove(&id) {
                    self.client_keys.remove(&key);
                }
            }
            Some(Transaction::InviteServer { key, ack_key, .. }) => {
                self.server_keys.remove(&key);
                if let Some(k) = ack_key {
                    if self.accepted.get(&k) == Some(&id) {
                        self.accepted.remove(&k);
                    }
                }
            }
            Some(Transaction::NonInviteServer { key, .. }) => {
                self.server_keys.remove(&key);
            }
            None => {}
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.remove(&(deadline, id));
            self.scheduled.remove(&id);
            let cfg = self.config;
            if let Some(tx) = self.transactions.get_mut(&id) {
                while let Some(timer) = tx.timers_mut().pop_expired(now) {
                    match tx {
                        Transaction::InviteClient(t) => t.on_timer(now, timer, &mut self.out),
                        Transaction::NonInviteClient(t) => {
                            t.on_timer(now, &cfg, timer, &mut self.out);
                        }
                        Transaction::InviteServer { tx, .. } => {
                            tx.on_timer(now, &cfg, timer, &mut self.out);
                        }
                        Transaction::NonInviteServer { tx, .. } => tx.on_timer(timer),
                    }
                }
            }
            self.reschedule(id);
        }
    }

    /// The driver could not deliver a transmit of transaction `id` (RFC 3261 17.1.1.2,
    /// 17.1.2.2, 17.2.4): the transaction ends and the TU is told.
    pub fn handle_transport_error(&mut self, id: TransactionId) {
        if let Some(tx) = self.transactions.get_mut(&id) {
            match tx {
                Transaction::InviteClient(t) => t.on_transport_error(&mut self.out),
                Transaction::NonInviteClient(t) => t.on_transport_error(&mut self.out),
                Transaction::InviteServer { tx, .. } => tx.on_transport_error(&mut self.out),
                Transaction::NonInviteServer { tx, .. } => tx.on_transport_error(&mut self.out),
            }
            self.reschedule(id);
        }
    }

    /// Queues a message outside any transaction: the ACK for a 2xx (RFC 3261 13.2.2.4), a
    /// stateless response.
    pub fn send_stateless(
        &mut self,
        message: &Message,
        destination: SocketAddr,
        transport: Transport,
    ) {
        self.out.transmits.push_back(Transmit {
            transport,
            destination,
            contents: Bytes::from(message.to_bytes()),
            transaction: None,
            reconnect: None,
        });
    }

    /// Starts a client transaction for `request` (RFC 3261 17.1). The request must carry its
    /// top Via with a `z9hG4bK` branch (the endpoint adds it). Responses come back as
    /// [`Event::Response`], a timeout as [`Event::Timeout`].
    pub fn send_request(
        &mut self,
        now: Instant,
        request: Request,
        destination: SocketAddr,
        transport: Transport,
    ) -> Result<TransactionId, TransactionError> {
        if request.method == Method::ACK {
            return Err(TransactionError::AckNeedsNoTransaction);
        }
        let via = TopVia::of_request(&request).ok_or(TransactionError::MissingBranch)?;
        let branch = via
            .branch
            .filter(|b| b.starts_with(MAGIC_COOKIE))
            .ok_or(TransactionError::MissingBranch)?;
        request
            .cseq()
            .map_err(|_| TransactionError::MalformedRequest("CSeq"))?;
        let key = ClientKey {
            branch,
            method: request.method.clone(),
        };
        if self.client_keys.contains_key(&key) {
            return Err(TransactionError::DuplicateBranch);
        }
        let id = self.alloc_id();
        let wire = Wire {
            destination,
            transport,
            encoded: Bytes::from(request.to_bytes()),
            request,
        };
        let cfg = self.config;
        let tx = if wire.request.method == Method::INVITE {
            Transaction::InviteClient(InviteClient::start(id, wire, now, &cfg, &mut self.out))
        } else {
            Transaction::NonInviteClient(NonInviteClient::start(id, wire, now, &cfg, &mut self.out))
        };
        self.transactions.insert(id, tx);
        self.client_keys.insert(key.clone(), id);
        self.client_ids.insert(id, key);
        self.reschedule(id);
        Ok(id)
    }

    /// Cancels an INVITE client transaction (RFC 3261 9.1): the CANCEL goes out now if a
    /// provisional response arrived, else as soon as one does. Its own final response comes
    /// as an [`Event::Response`] of the returned CANCEL transaction when sent now.
    pub fn cancel(
        &mut self,
        now: Instant,
        id: TransactionId,
    ) -> Result<Option<TransactionId>, TransactionError> {
        let Some(Transaction::InviteClient(invite)) = self.transactions.get_mut(&id) else {
            return Err(TransactionError::NotCancellable(id));
        };
        match (invite.state, invite.cancel) {
            (_, CancelState::Sent | CancelState::Pending) => Ok(None),
            (InviteClientState::Calling, CancelState::None) => {
                invite.cancel = CancelState::Pending;
                Ok(None)
            }
            (InviteClientState::Proceeding, CancelState::None) => {
                invite.cancel = CancelState::Sent;
                let cancel = build_cancel(&invite.wire.request);
                let (dest, transport) = (invite.wire.destination, invite.wire.transport);
                self.send_request(now, cancel, dest, transport).map(Some)
            }
            _ => Err(TransactionError::NotCancellable(id)),
        }
    }

    /// The TU's response on server transaction `id` (provisional or final).
    pub fn respond(
        &mut self,
        now: Instant,
        id: TransactionId,
        response: Response,
    ) -> Result<(), TransactionError> {
        let cfg = self.config;
        let result = match self.transactions.get_mut(&id) {
            Some(Transaction::InviteServer { tx, ack_key, .. }) => {
                let r = tx.respond(now, &cfg, &response, &mut self.out);
                if r.is_ok() && response.status.is_success() {
                    if let Some(k) = ack_key.clone() {
                        self.accepted.insert(k, id);
                    }
                }
                r
            }
            Some(Transaction::NonInviteServer { tx, .. }) => {
                tx.respond(now, &cfg, &response, &mut self.out)
            }
            _ => Err(TransactionError::UnknownTransaction(id)),
        };
        self.reschedule(id);
        result
    }

    /// Feeds a message that arrived from `source` on `transport`.
    pub fn handle_message(
        &mut self,
        now: Instant,
        source: SocketAddr,
        transport: Transport,
        message: Message,
    ) {
        match message {
            Message::Request(request) => self.handle_request(now, source, transport, request),
            Message::Response(response) => self.handle_response(now, response),
        }
    }

    fn handle_response(&mut self, now: Instant, response: Response) {
        //= RFC 3261 17.1.3: branch of the top Via + CSeq method.
        let Some(via) = TopVia::of_response(&response) else {
            tracing::debug!("response without a usable Via dropped");
            return;
        };
        let (Some(branch), Ok(cseq)) = (via.branch, response.cseq()) else {
            tracing::debug!("response without branch or CSeq dropped");
            return;
        };
        let key = ClientKey {
            branch,
            method: cseq.method,
        };
        let Some(&id) = self.client_keys.get(&key) else {
            //= RFC 3261 18.1.2: a response matching no transaction is discarded.
            tracing::debug!(status = response.status.0, "stray response dropped");
            return;
        };
        let cfg = self.config;
        let mut cancel_now = false;
        match self.transactions.get_mut(&id) {
            Some(Transaction::InviteClient(t)) => {
                cancel_now = t.on_response(now, &cfg, response, &mut self.out);
            }
            Some(Transaction::NonInviteClient(t)) => {
                t.on_response(now, &cfg, response, &mut self.out);
            }
            _ => {}
        }
        if cancel_now {
            if let Some(Transaction::InviteClient(t)) = self.transactions.get(&id) {
                let cancel = build_cancel(&t.wire.request);
                let (dest, transport) = (t.wire.destination, t.wire.transport);
                if let Err(e) = self.send_request(now, cancel, dest, transport) {
                    tracing::warn!(error = %e, "pending CANCEL not sent");
                }
            }
        }
        self.reschedule(id);
    }

    fn handle_request(
        &mut self,
        now: Instant,
        source: SocketAddr,
        transport: Transport,
        mut request: Request,
    ) {
        //= RFC 3581 4 / RFC 3261 18.2.1: received and rport on the top Via.
        let Some(via) = via::stamp_received(&mut request, source) else {
            tracing::debug!(%source, "request without a usable Via dropped");
            return;
        };
        let reply = ReplyPath {
            destination: response_destination(&via, source, transport),
            transport,
            reconnect: via::reconnect_destination(&via, source, transport),
        };
        let key = server_key(&request, &via);
        let cfg = self.config;

        if request.method == Method::ACK {
            // ACK for a non-2xx: same branch as the INVITE (17.2.3).
            let invite_key = ServerKey {
                method: Method::INVITE,
                ..key
            };
            if let Some(&id) = self.server_keys.get(&invite_key) {
                if let Some(Transaction::InviteServer { tx, .. }) = self.transactions.get_mut(&id) {
                    let to_tu = tx.on_ack(now, &cfg);
                    self.reschedule(id);
                    if !to_tu {
                        return; // absorbed: the ACK of our 300-699
                    }
                }
            } else if let Some(ack_key) = dialog_ack_key(&request) {
                //= RFC 3261 13.3.1.4: the ACK of our 2xx stops its retransmission.
                if let Some(&id) = self.accepted.get(&ack_key) {
                    if let Some(Transaction::InviteServer { tx, .. }) =
                        self.transactions.get_mut(&id)
                    {
                        tx.on_2xx_ack();
                    }
                    self.reschedule(id);
                }
            }
            //= RFC 3261 17.2.3 / 13.3.2.5: the ACK for a 2xx goes to the TU (end-to-end).
            self.out.event(Event::Request {
                id: None,
                request,
                source,
                transport,
            });
            return;
        }

        // A retransmission of a request we have a transaction for.
        if let Some(&id) = self.server_keys.get(&key) {
            match self.transactions.get_mut(&id) {
                Some(Transaction::InviteServer { tx, .. }) => {
                    tx.on_request_retransmit(&mut self.out);
                }
                Some(Transaction::NonInviteServer { tx, .. }) => {
                    tx.on_request_retransmit(&mut self.out);
                }
                _ => {}
            }
            self.reschedule(id);
            return;
        }

        let id = self.alloc_id();
        if request.method == Method::CANCEL {
            //= RFC 3261 9.2: CANCEL matches the INVITE by 17.2.3 with method INVITE.
            let invite_key = ServerKey {
                method: Method::INVITE,
                ..key.clone()
            };
            let mut tx = NonInviteServer::new(id, reply);
            let invite_id = self.server_keys.get(&invite_key).copied();
            let cancelled = match invite_id {
                Some(inv) => match self.transactions.get_mut(&inv) {
                    Some(Transaction::InviteServer { tx: invite, .. }) => {
                        invite.cancel(now, &cfg, &mut self.out)
                    }
                    _ => false,
                },
                None => false,
            };
            let (status, reason) = if invite_id.is_some() {
                (StatusCode(200), "OK")
            } else {
                (StatusCode(481), "Call/Transaction Does Not Exist")
            };
            let response =
                server::with_to_tag_if_missing(Response::for_request(&request, status, reason), id);
            let _ = tx.respond(now, &cfg, &response, &mut self.out);
            self.transactions.insert(
                id,
                Transaction::NonInviteServer {
                    tx,
                    key: key.clone(),
                },
            );
            self.server_keys.insert(key, id);
            self.reschedule(id);
            if let Some(inv) = invite_id {
                self.reschedule(inv);
                if cancelled {
                    self.out.event(Event::Cancelled {
                        id: inv,
                        cancel: request,
                        source,
                        transport,
                    });
                }
            }
            return;
        }

        let tx = if request.method == Method::INVITE {
            let ack_key = dialog_ack_key(&request);
            let tx = InviteServer::start(id, request.clone(), reply, now, &cfg, &mut self.out);
            Transaction::InviteServer {
                tx,
                key: key.clone(),
                ack_key,
            }
        } else {
            Transaction::NonInviteServer {
                tx: NonInviteServer::new(id, reply),
                key: key.clone(),
            }
        };
        self.transactions.insert(id, tx);
        self.server_keys.insert(key, id);
        self.reschedule(id);
        self.out.event(Event::Request {
            id: Some(id),
            request,
            source,
            transport,
        });
    }
}

/// RFC 3261 17.2.3 key, with the RFC 2543 fallback when the branch lacks the magic cookie.
fn server_key(request: &Request, via: &TopVia) -> ServerKey {
    let method = if request.method == Method::ACK {
        Method::INVITE
    } else {
        request.method.clone()
    };
    let sent_by = via.sent_by().to_ascii_lowercase();
    let branch = match &via.branch {
        Some(b) if b.starts_with(MAGIC_COOKIE) => b.clone(),
        _ => {
            //= RFC 3261 17.2.3: RFC 2543 matching by Request-URI, To tag, From tag, Call-ID,
            //= CSeq and top Via (the To tag is left out so the ACK matches its INVITE).
            let from_tag = request
                .from()
                .ok()
                .and_then(|f| f.tag().map(str::to_owned))
                .unwrap_or_default();
            let seq = request.cseq().map(|c| c.seq).unwrap_or(0);
            format!(
                "2543|{}|{}|{}|{}|{}",
                request.uri,
                request.call_id().unwrap_or_default(),
                from_tag,
                seq,
                via.raw_without_received()
            )
        }
    };
    ServerKey {
        branch,
        sent_by,
        method,
    }
}

fn dialog_ack_key(request: &Request) -> Option<DialogAckKey> {
    Some(DialogAckKey {
        call_id: request.call_id().ok()?.to_owned(),
        seq: request.cseq().ok()?.seq,
        from_tag: request.from().ok()?.tag()?.to_owned(),
    })
}
