//! The SIP endpoint: sockets + the sans-IO transaction layer + a channel to the TU.
//!
//! [`SipEndpoint::bind`] opens the UDP, TCP and TLS listeners of an [`EndpointConfig`] and
//! spawns one loop task that owns the [`TransactionLayer`]. Requests that need the
//! application arrive on the returned `mpsc::Receiver<IncomingRequest>`; the TU answers with
//! [`IncomingRequest::respond`] (100 Trying, retransmissions, ACK absorption and CANCEL are
//! done by the layer). The TU sends its own requests (NOTIFY, BYE) with
//! [`SipEndpoint::send_request`], which runs a client transaction and resolves to the final
//! response (a synthesized 408 on timeout, 503 on transport failure, RFC 3261 8.1.3.1).
//!
//! Dialog-level duties the endpoint takes on: the INVITE server transaction retransmits a
//! 2xx until its ACK (the layer, RFC 3261 13.3.1.4); a 2xx never ACKed is reported on
//! [`SipEndpoint::events`]; the ACK the TU sends for a 2xx ([`SipEndpoint::send_stateless`])
//! is kept for 64*T1 and resent on every retransmission of that 2xx (13.2.2.4).
//!
//! How the service uses it:
//! ```ignore
//! let (ep, mut requests) = SipEndpoint::bind(EndpointConfig::from_sip_config(&cfg.sip)).await?;
//! while let Some(inc) = requests.recv().await {
//!     let (request, source, transport, responder) = inc.into_parts();
//!     // ... decide, maybe in another task ...
//!     responder.respond(Response::for_request(&request, StatusCode::OK, "OK"));
//! }
//! // NOTIFY / BYE from a dialog (sip::dialog): Via, Max-Forwards and the transaction are ours.
//! let (dest, transport) = dialog.core.next_hop().unwrap();
//! let response = ep.send_request(dialog.notify(event, state, ctype, body), dest, transport).await?;
//! ```
//!
//! Fallbacks so that a peer always gets an answer:
//! - an `IncomingRequest` dropped unanswered is answered by the endpoint: OPTIONS with 200 and
//!   `Allow`/`Accept`/`Supported` (load balancers ping with it), anything else with 500;
//! - when the TU queue is full: 503 with `Retry-After` (OPTIONS still 200);
//! - unparsable requests: stateless 400 from the socket task ([`super::transport`]).
//!
//! Responses follow RFC 3261 18.2.2 / RFC 3581: on TCP/TLS the connection the request came on
//! (connections are kept by peer address and reused), on UDP `received`/`rport`.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::CertificateDer;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::now;
use super::tls::{self, TlsError};
use super::transport::{self, NetEvent, Outgoing, StreamKind, CONN_QUEUE};
use crate::sip::transaction::{
    Event, TimerConfig, TransactionId, TransactionLayer, Transmit, Transport,
};
use crate::sip::{HeaderName, Message, Method, Request, Response, StatusCode};

/// What the endpoint listens on and how it behaves.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// UDP listen address (port 0: any free port).
    pub udp: Option<SocketAddr>,
    /// TCP listen address.
    pub tcp: Option<SocketAddr>,
    /// TLS listen address.
    pub tls: Option<SocketAddr>,
    /// PEM certificate chain; a self-signed development certificate when `None`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates trusted for outbound TLS (our own certificate is always trusted).
    pub tls_ca: Option<PathBuf>,
    /// Host written in the sent-by of our Via when a listener is bound to a wildcard address.
    pub via_host: Option<String>,
    /// Transaction timers (T1, T2, T4, 100 Trying delay).
    pub timers: TimerConfig,
    /// `Allow` of the endpoint's own OPTIONS answer.
    pub allow: String,
    /// `Accept` of the endpoint's own OPTIONS answer.
    pub accept: String,
    /// `Supported` of the endpoint's own OPTIONS answer.
    pub supported: String,
    /// `Server` header of the endpoint's own answers.
    pub server: String,
    /// Depth of the TU queue; beyond it new requests get 503.
    pub tu_queue: usize,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Self {
            udp: Some(SocketAddr::new(lo, 5060)),
            tcp: Some(SocketAddr::new(lo, 5060)),
            tls: Some(SocketAddr::new(lo, 5061)),
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            via_host: None,
            timers: TimerConfig::default(),
            allow: "INVITE, ACK, BYE, CANCEL, OPTIONS, SUBSCRIBE, NOTIFY, MESSAGE, REGISTER, INFO, UPDATE"
                .into(),
            accept: "application/sdp, application/json".into(),
            supported: String::new(),
            server: concat!("iptv-as/", env!("CARGO_PKG_VERSION")).into(),
            tu_queue: 1024,
        }
    }
}

impl EndpointConfig {
    /// Listeners, certificate and Via host from the AS configuration's `[sip]` section.
    #[must_use]
    pub fn from_sip_config(sip: &crate::config::SipConfig) -> Self {
        Self {
            udp: sip.udp,
            tcp: sip.tcp,
            tls: sip.tls,
            tls_cert: sip.tls_cert.clone(),
            tls_key: sip.tls_key.clone(),
            via_host: sip.contact_host.clone(),
            ..Self::default()
        }
    }
}

/// Errors of the endpoint (split by cause).
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// A listener could not be bound.
    #[error("binding {transport} {addr}: {source}")]
    Bind {
        /// Transport.
        transport: Transport,
        /// Address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// TLS setup failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The endpoint loop has stopped.
    #[error("SIP endpoint stopped")]
    Stopped,
    /// The layer refused the request (caller misuse).
    #[error(transparent)]
    Transaction(#[from] crate::sip::transaction::TransactionError),
}

/// The actual bound addresses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LocalAddrs {
    /// UDP socket.
    pub udp: Option<SocketAddr>,
    /// TCP listener.
    pub tcp: Option<SocketAddr>,
    /// TLS listener.
    pub tls: Option<SocketAddr>,
}

impl LocalAddrs {
    /// The address of `transport`'s listener.
    #[must_use]
    pub fn get(&self, transport: Transport) -> Option<SocketAddr> {
        match transport {
            Transport::Udp => self.udp,
            Transport::Tcp => self.tcp,
            Transport::Tls => self.tls,
        }
    }
}

enum Command {
    Respond {
        id: TransactionId,
        response: Response,
    },
    Send {
        request: Request,
        dest: SocketAddr,
        transport: Transport,
        reply: oneshot::Sender<Result<Response, EndpointError>>,
    },
    SendStateless {
        message: Message,
        dest: SocketAddr,
        transport: Transport,
    },
    Subscribe(mpsc::UnboundedSender<EndpointEvent>),
    Shutdown,
}

/// What the endpoint reports besides requests (see [`SipEndpoint::events`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum EndpointEvent {
    /// A 2xx to this INVITE was retransmitted for 64*T1 and never ACKed (RFC 3261
    /// 13.3.1.4): the TU should end the dialog (send BYE, release its resources).
    AckTimeout {
        /// The INVITE; its Call-ID, From tag and CSeq name the dialog.
        invite: Request,
    },
}

/// Answers one server transaction; answers by itself when dropped unanswered.
#[derive(Debug)]
pub struct Responder {
    id: Option<TransactionId>,
    cmd: mpsc::UnboundedSender<Command>,
    /// Sent on drop if the TU never sent a final response.
    fallback: Option<Response>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Respond { .. } => "Respond",
            Command::Send { .. } => "Send",
            Command::SendStateless { .. } => "SendStateless",
            Command::Subscribe(_) => "Subscribe",
            Command::Shutdown => "Shutdown",
        })
    }
}

impl Responder {
    /// Sends a provisional (1xx) response; the final one still has to come.
    pub fn provisional(&self, response: Response) {
        if let Some(id) = self.id {
            let _ = self.cmd.send(Command::Respond { id, response });
        }
    }

    /// Sends the final response. Giving it a 1xx is a TU bug: the 1xx is sent, and since
    /// the responder is consumed without a final answer, the fallback (500) follows it.
    pub fn respond(mut self, response: Response) {
        if let Some(id) = self.id {
            if response.status.is_final() {
                self.fallback = None;
            } else {
                tracing::warn!(
                    status = response.status.0,
                    "respond() given a provisional response"
                );
            }
            let _ = self.cmd.send(Command::Respond { id, response });
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let (Some(id), Some(response)) = (self.id, self.fallback.take()) {
            let _ = self.cmd.send(Command::Respond { id, response });
        }
    }
}

/// A request for the TU.
#[derive(Debug)]
pub struct IncomingRequest {
    /// The request, with `received`/`rport` on its top Via (RFC 3581).
    pub request: Request,
    /// Where it came from.
    pub source: SocketAddr,
    /// The transport it came on.
    pub transport: Transport,
    /// For a CANCEL: the INVITE server transaction it ended (already answered 487 by the
    /// layer, RFC 3261 9.2); the CANCEL itself was answered 200.
    pub cancels: Option<TransactionId>,
    responder: Responder,
}

impl IncomingRequest {
    /// The server transaction; `None` for ACK and CANCEL (nothing to answer).
    #[must_use]
    pub fn transaction(&self) -> Option<TransactionId> {
        self.responder.id
    }

    /// Whether an answer is expected (not ACK, not CANCEL).
    #[must_use]
    pub fn needs_response(&self) -> bool {
        self.responder.id.is_some()
    }

    /// Sends a provisional response.
    pub fn provisional(&self, response: Response) {
        self.responder.provisional(response);
    }

    /// Sends the final response.
    pub fn respond(self, response: Response) {
        self.responder.respond(response);
    }

    /// Splits off the responder (to answer from another task).
    #[must_use]
    pub fn into_parts(self) -> (Request, SocketAddr, Transport, Responder) {
        (self.request, self.source, self.transport, self.responder)
    }
}

struct Shared {
    cmd: mpsc::UnboundedSender<Command>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let _ = self.cmd.send(Command::Shutdown);
    }
}

/// Handle on a running SIP endpoint (cheap to clone). The loop stops when the last handle
/// is dropped.
#[derive(Clone)]
pub struct SipEndpoint {
    shared: Arc<Shared>,
    local: LocalAddrs,
    tls_cert: Option<CertificateDer<'static>>,
}

impl std::fmt::Debug for SipEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipEndpoint")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl SipEndpoint {
    /// Binds the listeners and starts the endpoint loop on the current tokio runtime.
    pub async fn bind(
        config: EndpointConfig,
    ) -> Result<(SipEndpoint, mpsc::Receiver<IncomingRequest>), EndpointError> {
        let (net_tx, net_rx) = mpsc::channel::<NetEvent>(4096);
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (tu_tx, tu_rx) = mpsc::channel(config.tu_queue.max(1));
        let mut tasks = JoinSet::new();
        let mut local = LocalAddrs::default();
        let mut udp = Vec::new();

        if let Some(addr) = config.udp {
            let sock = UdpSocket::bind(addr)
                .await
                .map_err(|source| EndpointError::Bind {
                    transport: Transport::Udp,
                    addr,
                    source,
                })?;
            let sock = Arc::new(sock);
            local.udp = sock.local_addr().ok();
            tasks.spawn(transport::udp_recv_loop(sock.clone(), net_tx.clone()));
            udp.push((addr.is_ipv4(), sock));
        }
        if let Some(addr) = config.tcp {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| EndpointError::Bind {
                    transport: Transport::Tcp,
                    addr,
                    source,
                })?;
            local.tcp = l.local_addr().ok();
            tasks.spawn(transport::accept_loop(l, StreamKind::Tcp, net_tx.clone()));
        }
        let mut tls_cert = None;
        let mut connector = None;
        if let Some(addr) = config.tls {
            let (server, leaf) =
                tls::server_config(config.tls_cert.as_deref(), config.tls_key.as_deref())?;
            let mut roots = vec![leaf.clone()];
            if let Some(ca) = &config.tls_ca {
                roots.extend(tls::load_certs(ca)?);
            }
            connector = Some(TlsConnector::from(tls::client_config(roots)?));
            tls_cert = Some(leaf);
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| EndpointError::Bind {
                    transport: Transport::Tls,
                    addr,
                    source,
                })?;
            local.tls = l.local_addr().ok();
            let kind = StreamKind::Tls {
                acceptor: Some(TlsAcceptor::from(server)),
                connector: None,
            };
            tasks.spawn(transport::accept_loop(l, kind, net_tx.clone()));
        }
        for (t, a) in [
            (Transport::Udp, local.udp),
            (Transport::Tcp, local.tcp),
            (Transport::Tls, local.tls),
        ] {
            if let Some(a) = a {
                tracing::info!(transport = %t, addr = %a, "SIP listening");
            }
        }

        let state = Loop {
            layer: TransactionLayer::new(config.timers),
            net_tx,
            net_rx,
            cmd_tx: cmd_tx.clone(),
            cmd_rx,
            tu: tu_tx,
            udp,
            conns: HashMap::new(),
            pending: HashMap::new(),
            tasks,
            connector,
            local,
            config,
            events: None,
            acks: HashMap::new(),
            acks_order: VecDeque::new(),
        };
        tokio::spawn(state.run());
        Ok((
            SipEndpoint {
                shared: Arc::new(Shared { cmd: cmd_tx }),
                local,
                tls_cert,
            },
            tu_rx,
        ))
    }

    /// The bound addresses (useful with port 0).
    #[must_use]
    pub fn local_addrs(&self) -> LocalAddrs {
        self.local
    }

    /// The TLS certificate the endpoint presents (the development one when none was
    /// configured), e.g. for a test client to trust.
    #[must_use]
    pub fn tls_certificate(&self) -> Option<&CertificateDer<'static>> {
        self.tls_cert.as_ref()
    }

    /// Sends `request` in a client transaction (RFC 3261 17.1) and waits for the final
    /// response: a synthesized 408 on timeout (timer B/F), 503 on transport failure. The
    /// endpoint adds the top Via (with a fresh branch and `rport`) unless the request has
    /// one, and Max-Forwards 70 unless set. For an INVITE the TU sends the ACK of a 2xx
    /// itself ([`Self::send_stateless`], e.g. with `ConfirmedDialog::ack`).
    pub async fn send_request(
        &self,
        request: Request,
        dest: SocketAddr,
        transport: Transport,
    ) -> Result<Response, EndpointError> {
        let (reply, rx) = oneshot::channel();
        self.shared
            .cmd
            .send(Command::Send {
                request,
                dest,
                transport,
                reply,
            })
            .map_err(|_| EndpointError::Stopped)?;
        rx.await.map_err(|_| EndpointError::Stopped)?
    }

    /// Events besides requests (unacknowledged 2xx, ...). A new call replaces the previous
    /// subscriber.
    pub fn events(&self) -> mpsc::UnboundedReceiver<EndpointEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = self.shared.cmd.send(Command::Subscribe(tx));
        rx
    }

    /// Stops the endpoint loop and its listeners now (otherwise it stops when the last
    /// handle is dropped). Pending `send_request` calls fail with [`EndpointError::Stopped`].
    pub fn shutdown(&self) {
        let _ = self.shared.cmd.send(Command::Shutdown);
    }

    /// Sends a message outside any transaction (the ACK of a 2xx, RFC 3261 13.2.2.4). A
    /// request without Via gets one.
    pub fn send_stateless(
        &self,
        message: Message,
        dest: SocketAddr,
        transport: Transport,
    ) -> Result<(), EndpointError> {
        self.shared
            .cmd
            .send(Command::SendStateless {
                message,
                dest,
                transport,
            })
            .map_err(|_| EndpointError::Stopped)
    }
}

type ConnKey = (Transport, SocketAddr);

struct ConnHandle {
    id: u64,
    writer: mpsc::Sender<Outgoing>,
}

/// The endpoint loop's state (owned by one task).
struct Loop {
    layer: TransactionLayer,
    net_tx: mpsc::Sender<NetEvent>,
    net_rx: mpsc::Receiver<NetEvent>,
    cmd_tx: mpsc::UnboundedSender<Command>,
    cmd_rx: mpsc::UnboundedReceiver<Command>,
    tu: mpsc::Sender<IncomingRequest>,
    /// UDP sockets with their address family (IPv4: `true`), known at bind time so that a
    /// send does not ask the kernel (getsockname) each time.
    udp: Vec<(bool, Arc<UdpSocket>)>,
    conns: HashMap<ConnKey, ConnHandle>,
    pending: HashMap<TransactionId, oneshot::Sender<Result<Response, EndpointError>>>,
    /// Listener and outbound connection tasks; dropping the set stops them.
    tasks: JoinSet<()>,
    connector: Option<TlsConnector>,
    local: LocalAddrs,
    config: EndpointConfig,
    events: Option<mpsc::UnboundedSender<EndpointEvent>>,
    /// ACKs of 2xx responses sent by the TU, by (Call-ID, CSeq), to resend on 2xx
    /// retransmissions; with their send times for expiry.
    acks: HashMap<(String, u32), (Message, SocketAddr, Transport)>,
    acks_order: VecDeque<(Instant, (String, u32))>,
}

impl Loop {
    async fn run(mut self) {
        loop {
            let deadline = self.layer.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(ev) = self.net_rx.recv() => self.on_net(ev),
                cmd = self.cmd_rx.recv() => match cmd {
                    Some(Command::Shutdown) | None => break,
                    Some(cmd) => self.on_command(cmd),
                },
                () = sleep => self.layer.handle_timeout(now()),
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
            }
            self.flush().await;
        }
        tracing::debug!("SIP endpoint stopped");
    }

    fn on_net(&mut self, ev: NetEvent) {
        match ev {
            NetEvent::Message {
                transport,
                source,
                message,
            } => self
                .layer
                .handle_message(now(), source, transport, *message),
            NetEvent::Connected {
                transport,
                peer,
                conn,
                writer,
            } => {
                self.conns
                    .insert((transport, peer), ConnHandle { id: conn, writer });
            }
            NetEvent::Closed {
                transport,
                peer,
                conn,
            } => {
                if self
                    .conns
                    .get(&(transport, peer))
                    .is_some_and(|c| c.id == conn)
                {
                    self.conns.remove(&(transport, peer));
                }
            }
            NetEvent::SendFailed { transaction } => self.layer.handle_transport_error(transaction),
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Respond { id, response } => {
                let response = self.stamp_server(response);
                if let Err(e) = self.layer.respond(now(), id, response) {
                    tracing::debug!(error = %e, "response not sent");
                }
            }
            Command::Send {
                mut request,
                dest,
                transport,
                reply,
            } => {
                self.prepare_request(&mut request, transport);
                match self.layer.send_request(now(), request, dest, transport) {
                    Ok(id) => {
                        self.pending.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            Command::SendStateless {
                mut message,
                dest,
                transport,
            } => {
                if let Message::Request(r) = &mut message {
                    if !r.headers.contains(&HeaderName::VIA) {
                        self.prepare_request(r, transport);
                    }
                    if r.method == Method::ACK {
                        self.remember_ack(r, dest, transport);
                    }
                }
                self.layer.send_stateless(&message, dest, transport);
            }
            Command::Subscribe(tx) => self.events = Some(tx),
            Command::Shutdown => {}
        }
    }

    /// Keeps the ACK of a 2xx (by Call-ID and CSeq number) for 64*T1, to answer the
    /// 2xx's retransmissions (which the TU never sees) with it again.
    fn remember_ack(&mut self, ack: &Request, dest: SocketAddr, transport: Transport) {
        let (Ok(call_id), Ok(cseq)) = (ack.call_id(), ack.cseq()) else {
            return;
        };
        let now = now();
        let keep = self.layer.config().t1x64();
        while let Some((t, _)) = self.acks_order.front() {
            if now.duration_since(*t) < keep {
                break;
            }
            if let Some((_, key)) = self.acks_order.pop_front() {
                self.acks.remove(&key);
            }
        }
        let key = (call_id.to_owned(), cseq.seq);
        let message = Message::Request(ack.clone());
        if self
            .acks
            .insert(key.clone(), (message, dest, transport))
            .is_none()
        {
            self.acks_order.push_back((now, key));
        }
    }

    fn resend_ack(&mut self, response: &Response) {
        let (Ok(call_id), Ok(cseq)) = (response.call_id(), response.cseq()) else {
            return;
        };
        if let Some((ack, dest, transport)) = self.acks.get(&(call_id.to_owned(), cseq.seq)) {
            self.layer.send_stateless(ack, *dest, *transport);
        }
    }

    fn stamp_server(&self, mut response: Response) -> Response {
        if !response.headers.contains(&HeaderName::SERVER) && !self.config.server.is_empty() {
            response
                .headers
                .push(HeaderName::SERVER, self.config.server.clone());
        }
        response
    }

    /// Adds our Via (fresh branch, rport) and Max-Forwards (RFC 3261 8.1.1).
    fn prepare_request(&self, request: &mut Request, transport: Transport) {
        if !request.headers.contains(&HeaderName::VIA) {
            let sent_by = self.sent_by(transport);
            let branch = format!("z9hG4bK{:016x}", rand::random::<u64>());
            request.headers.push_front(
                HeaderName::VIA,
                format!("SIP/2.0/{transport} {sent_by};branch={branch};rport"),
            );
        }
        if !request.headers.contains(&HeaderName::MAX_FORWARDS) {
            request.headers.push(HeaderName::MAX_FORWARDS, "70");
        }
    }

    fn sent_by(&self, transport: Transport) -> String {
        let addr = self
            .local
            .get(transport)
            .or(self.local.udp)
            .or(self.local.tcp)
            .unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5060));
        let host = match (&self.config.via_host, addr.ip()) {
            (Some(h), _) => h.clone(),
            (None, ip) if ip.is_unspecified() => "127.0.0.1".to_owned(),
            (None, IpAddr::V6(ip)) => format!("[{ip}]"),
            (None, IpAddr::V4(ip)) => ip.to_string(),
        };
        format!("{host}:{}", addr.port())
    }

    /// Writes the layer's transmits and hands its events to the TU / waiting senders.
    async fn flush(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.layer.poll_transmit() {
                progressed = true;
                self.transmit(t).await;
            }
            while let Some(ev) = self.layer.poll_event() {
                progressed = true;
                self.on_event(ev);
            }
            // Fallback responses queued by dropped responders are handled by the next loop
            // turn (commands); nothing else to do here.
            if !progressed {
                break;
            }
        }
    }

    async fn transmit(&mut self, t: Transmit) {
        match t.transport {
            Transport::Udp => {
                let sock = self
                    .udp
                    .iter()
                    .find(|(v4, _)| *v4 == t.destination.is_ipv4())
                    .or_else(|| self.udp.first())
                    .map(|(_, s)| s);
                let ok = match sock {
                    Some(s) => match s.send_to(&t.contents, t.destination).await {
                        Ok(_) => true,
                        Err(e) => {
                            tracing::debug!(dest = %t.destination, error = %e, "UDP send failed");
                            false
                        }
                    },
                    None => false,
                };
                if !ok {
                    if let Some(id) = t.transaction {
                        self.layer.handle_transport_error(id);
                    }
                }
            }
            Transport::Tcp | Transport::Tls => {
                let mut item = (t.contents, t.transaction);
                // Two tries: a connection whose task just ended (its Closed event not yet
                // seen) is replaced by a new one.
                for _ in 0..2 {
                    let Some(key) = self.stream_for(t.transport, t.destination, t.reconnect) else {
                        break;
                    };
                    let Some(conn) = self.conns.get(&key) else {
                        break;
                    };
                    match conn.writer.try_send(item) {
                        Ok(()) => return,
                        Err(mpsc::error::TrySendError::Closed(back)) => {
                            self.conns.remove(&key);
                            item = back;
                        }
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            // A stalled peer: never block the loop on one connection.
                            tracing::debug!(dest = %t.destination, "connection queue full");
                            break;
                        }
                    }
                }
                if let Some(id) = t.transaction {
                    self.layer.handle_transport_error(id);
                }
            }
        }
    }

    /// The connection to use for `destination`, opened if needed. For a response whose
    /// request connection is gone, RFC 3261 18.2.2: connect to the received address and
    /// sent-by port (`reconnect`) instead.
    fn stream_for(
        &mut self,
        transport: Transport,
        destination: SocketAddr,
        reconnect: Option<SocketAddr>,
    ) -> Option<ConnKey> {
        let key = (transport, destination);
        if self.conns.contains_key(&key) {
            return Some(key);
        }
        let key = (transport, reconnect.unwrap_or(destination));
        if !self.conns.contains_key(&key) {
            self.open_connection(key.0, key.1);
        }
        self.conns.contains_key(&key).then_some(key)
    }

    fn open_connection(&mut self, transport: Transport, peer: SocketAddr) {
        let kind = match transport {
            Transport::Tcp => StreamKind::Tcp,
            Transport::Tls => {
                if self.connector.is_none() {
                    return;
                }
                StreamKind::Tls {
                    acceptor: None,
                    connector: self.connector.clone(),
                }
            }
            Transport::Udp => return,
        };
        let conn = transport::next_conn_id();
        let (tx, rx) = mpsc::channel(CONN_QUEUE);
        self.conns.insert(
            (transport, peer),
            ConnHandle {
                id: conn,
                writer: tx,
            },
        );
        self.tasks.spawn(transport::connect_and_run(
            kind,
            peer,
            conn,
            self.net_tx.clone(),
            rx,
        ));
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Request {
                id,
                request,
                source,
                transport,
            } => self.deliver_to_tu(id, request, source, transport, None),
            Event::Cancelled {
                id,
                cancel,
                source,
                transport,
            } => {
                self.deliver_to_tu(None, cancel, source, transport, Some(id));
            }
            Event::Response { id, response } => {
                if response.status.is_final() {
                    if let Some(reply) = self.pending.remove(&id) {
                        let _ = reply.send(Ok(response));
                    } else if response.status.is_success() {
                        //= RFC 3261 13.2.2.4: an ACK for every 2xx, retransmissions included.
                        self.resend_ack(&response);
                    }
                }
            }
            Event::Timeout { id, response } | Event::TransportError { id, response } => {
                if let Some(reply) = self.pending.remove(&id) {
                    let _ = reply.send(Ok(response));
                }
            }
            Event::AckTimeout { id, invite, status } => {
                tracing::info!(?id, status = status.0, "final response never acknowledged");
                if status.is_success() {
                    if let Some(events) = &self.events {
                        let _ = events.send(EndpointEvent::AckTimeout { invite });
                    }
                }
            }
            Event::ServerTransportError { id } => {
                tracing::debug!(?id, "response could not be sent");
            }
        }
    }

    fn deliver_to_tu(
        &mut self,
        id: Option<TransactionId>,
        request: Request,
        source: SocketAddr,
        transport: Transport,
        cancels: Option<TransactionId>,
    ) {
        let fallback = id.map(|_| self.fallback_response(&request, false));
        let incoming = IncomingRequest {
            request,
            source,
            transport,
            cancels,
            responder: Responder {
                id,
                cmd: self.cmd_tx.clone(),
                fallback,
            },
        };
        if let Err(e) = self.tu.try_send(incoming) {
            let (mut incoming, full) = match e {
                mpsc::error::TrySendError::Full(i) => (i, true),
                mpsc::error::TrySendError::Closed(i) => (i, false),
            };
            if incoming.responder.id.is_some() {
                // Dropping it sends the fallback: 200 for OPTIONS, 503 otherwise.
                incoming.responder.fallback = Some(self.fallback_response(&incoming.request, true));
                if full {
                    tracing::warn!("TU queue full: request refused with 503");
                }
            }
        }
    }

    /// What the endpoint answers when the TU does not: OPTIONS 200 with the capabilities,
    /// else 503 (overload / no TU) or 500 (the TU dropped it).
    fn fallback_response(&self, request: &Request, unavailable: bool) -> Response {
        let tag = crate::sip::dialog::new_tag();
        let response = if request.method == Method::OPTIONS {
            let mut r = Response::for_request(request, StatusCode(200), "OK");
            r.headers.push(HeaderName::ALLOW, self.config.allow.clone());
            r.headers
                .push(HeaderName::ACCEPT, self.config.accept.clone());
            r.headers
                .push(HeaderName::SUPPORTED, self.config.supported.clone());
            r
        } else if unavailable {
            let mut r = Response::for_request(request, StatusCode(503), "Service Unavailable");
            r.headers.push(HeaderName::RETRY_AFTER, "1");
            r
        } else {
            Response::for_request(request, StatusCode(500), "Server Internal Error")
        };
        let has_tag = response.to().ok().is_some_and(|t| t.tag().is_some());
        if has_tag {
            response
        } else {
            response.with_to_tag(&tag)
        }
    }
}
