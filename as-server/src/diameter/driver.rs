//! The tokio driver of the Diameter peer table: TCP and TLS (rustls) connections, the
//! framer ([`frame_len`], bounded message size), the clock, and an async client handle.
//!
//! One task owns the sans-IO [`Router`] and is the only place that reads the clock. Each
//! connection has a reader task (bytes -> the router task) and a writer task (queued
//! messages -> socket). Outgoing connections are made when a peer asks for one
//! ([`Transmit::Connect`]); a listener (optional) accepts incoming ones, whose first message
//! (the CER) goes to [`Router::accept`] to find their peer.
//!
//! ```text
//!  DiameterClient::request ──cmd──▶ router task ──bytes──▶ writer task ──▶ socket
//!  IncomingRequest (stream) ◀─────  (Router, timers) ◀──bytes── reader task ◀── socket
//! ```
//!
//! [`DiameterClient::request`] resolves with the answer, or an error at once when no peer is
//! available ([`RouteError::NoPeer`]), so the AS can apply its fail-open / fail-closed
//! policy. Requests from peers come out of the [`IncomingRequest`] receiver (the base of the
//! embedded AAA server); each is answered with [`IncomingRequest::answer`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;

use super::base::DisconnectCause;
use super::message::{frame_len, Message, DEFAULT_MAX_MESSAGE_SIZE};
use super::peer::{PeerConfig, PeerState, Side, Transmit};
use super::router::{Accept, PeerId, RouteError, RouteId, Router, RouterConfig, RouterEvent};
use super::types::ResultCode;
use super::watchdog::WatchdogState;
use super::{dict, Avp};

/// How long an incoming connection may take to send its CER.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS towards a peer we connect to.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// rustls client configuration (roots to trust).
    pub config: Arc<rustls::ClientConfig>,
    /// The name to check the peer's certificate against.
    pub server_name: ServerName<'static>,
}

/// One configured peer.
#[derive(Debug, Clone)]
pub struct PeerSpec {
    /// The peer's settings (local capabilities, remote host, timers).
    pub config: PeerConfig,
    /// Where to connect (`None`: we only accept its connections).
    pub addr: Option<SocketAddr>,
    /// TLS for our connections to it (`None`: plain TCP).
    pub tls: Option<ClientTls>,
}

/// A listening socket.
#[derive(Debug, Clone)]
pub struct ListenSpec {
    /// Address to bind (port 0 picks one; see [`DiameterClient::local_addr`]).
    pub addr: SocketAddr,
    /// TLS on accepted connections (`None`: plain TCP).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Driver settings.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The router (unknown peers, duplicate window, failovers).
    pub router: RouterConfig,
    /// The peer table (first = primary).
    pub peers: Vec<PeerSpec>,
    /// Accept connections here.
    pub listen: Option<ListenSpec>,
    /// Seed for jitter and identifiers (`None`: from the clock).
    pub seed: Option<u64>,
    /// Largest message read from a connection not yet bound to a peer.
    pub max_message_size: usize,
    /// Incoming requests queued for the application before answering 3004 TOO_BUSY.
    pub incoming_queue: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            router: RouterConfig::default(),
            peers: Vec::new(),
            listen: None,
            seed: None,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            incoming_queue: 1024,
        }
    }
}

/// Driver start-up errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The listening socket could not be bound.
    #[error("bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Why a client request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The router could not deliver it (no peer, time-out, ...).
    #[error(transparent)]
    Route(#[from] RouteError),
    /// The driver has stopped.
    #[error("Diameter driver stopped")]
    Shutdown,
}

/// The stream of requests from peers ([`spawn`]'s second result).
pub type IncomingRequests = mpsc::Receiver<IncomingRequest>;

/// A request from a peer, to be answered once.
#[derive(Debug)]
pub struct IncomingRequest {
    /// The peer it came from.
    pub peer: PeerId,
    /// The request.
    pub request: Message,
    tx: mpsc::UnboundedSender<Cmd>,
}

impl IncomingRequest {
    /// Send `answer` (build it with [`Message::answer_to`]).
    pub fn answer(self, answer: Message) {
        let _ = self.tx.send(Cmd::Answer(self.peer, answer));
    }
}

#[derive(Debug)]
enum Cmd {
    Request(Message, oneshot::Sender<Result<Message, ClientError>>),
    Answer(PeerId, Message),
    Stop(DisconnectCause, oneshot::Sender<()>),
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

enum NetEvent {
    Connected(PeerId, Box<dyn Stream>),
    ConnectFailed(PeerId),
    Incoming(Box<dyn Stream>),
    /// An incoming connection's time to send its CER is up.
    AcceptTimeout(u64),
    Data(u64, Bytes),
    Closed(u64),
}

enum WriteCmd {
    Data(Bytes),
    Close,
}

struct ConnEntry {
    writer: mpsc::UnboundedSender<WriteCmd>,
    reader: AbortHandle,
    bound: Option<(PeerId, Side)>,
    rx: Vec<u8>,
}

/// A snapshot of one peer, for health checks and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its id.
    pub id: PeerId,
    /// The remote Origin-Host (configured, or from its CER/CEA).
    pub remote_host: Option<String>,
    /// Section 5.6 state.
    pub state: PeerState,
    /// RFC 3539 state.
    pub watchdog: WatchdogState,
    /// DWAs received.
    pub dwas_received: u64,
    /// Application requests waiting for an answer.
    pub pending: usize,
}

/// The handle applications use (cheap to clone).
#[derive(Debug, Clone)]
pub struct DiameterClient {
    tx: mpsc::UnboundedSender<Cmd>,
    open: watch::Receiver<usize>,
    peers: watch::Receiver<Vec<PeerInfo>>,
    local_addr: Option<SocketAddr>,
}

impl DiameterClient {
    /// Send a request through the peer table and wait for its answer (bounded by the
    /// peers' request time-out).
    pub async fn request(&self, request: Message) -> Result<Message, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Request(request, tx))
            .map_err(|_| ClientError::Shutdown)?;
        rx.await.map_err(|_| ClientError::Shutdown)?
    }

    /// The peers as of the last event.
    #[must_use]
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.peers.borrow().clone()
    }

    /// How many peers are available now.
    #[must_use]
    pub fn open_peers(&self) -> usize {
        *self.open.borrow()
    }

    /// Wait until at least `n` peers are available.
    pub async fn wait_open(&self, n: usize) -> Result<(), ClientError> {
        let mut rx = self.open.clone();
        rx.wait_for(|v| *v >= n)
            .await
            .map(|_| ())
            .map_err(|_| ClientError::Shutdown)
    }

    /// The listening address, if any.
    #[must_use]
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Disconnect every peer (DPR with `cause`, DPA awaited within the peers' Tc) and stop
    /// the driver.
    pub async fn stop(&self, cause: DisconnectCause) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Cmd::Stop(cause, tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

#[expect(clippy::disallowed_methods)]
fn now() -> Instant {
    // tokio's clock, so tests with paused time drive the timers.
    tokio::time::Instant::now().into_std()
}

#[expect(clippy::disallowed_methods)]
fn unix_now() -> (u64, u64) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs(), d.as_nanos() as u64)
}

/// Start the driver: bind the listener (if any), start the peers we connect to, and return
/// the client handle and the stream of requests from peers.
pub async fn spawn(config: NodeConfig) -> Result<(DiameterClient, IncomingRequests), DriverError> {
    let (unix, nanos) = unix_now();
    let seed = config.seed.unwrap_or(nanos);
    let mut router = Router::new(config.router.clone(), seed, unix);
    let mut specs = HashMap::new();
    for spec in &config.peers {
        let id = router.add_peer(spec.config.clone());
        specs.insert(id, spec.clone());
    }
    let (net_tx, net_rx) = mpsc::unbounded_channel();
    let mut local_addr = None;
    if let Some(l) = &config.listen {
        let listener = TcpListener::bind(l.addr)
            .await
            .map_err(|source| DriverError::Bind {
                addr: l.addr,
                source,
            })?;
        local_addr = listener.local_addr().ok();
        tokio::spawn(accept_loop(listener, l.tls.clone(), net_tx.clone()));
    }
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (in_tx, in_rx) = mpsc::channel(config.incoming_queue.max(1));
    let (open_tx, open_rx) = watch::channel(0);
    let (peers_tx, peers_rx) = watch::channel(Vec::new());
    let node = Node {
        router,
        specs,
        conns: HashMap::new(),
        bound: HashMap::new(),
        next_token: 0,
        net_tx,
        cmd_tx: cmd_tx.clone(),
        incoming: in_tx,
        open: open_tx,
        peers: peers_tx,
        waiters: HashMap::new(),
        stopping: Vec::new(),
        max_message_size: config.max_message_size,
        dirty: true,
        dwas_seen: 0,
        connecting: std::collections::HashSet::new(),
    };
    tokio::spawn(node.run(cmd_rx, net_rx));
    Ok((
        DiameterClient {
            tx: cmd_tx,
            open: open_rx,
            peers: peers_rx,
            local_addr,
        },
        in_rx,
    ))
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    net: mpsc::UnboundedSender<NetEvent>,
) {
    loop {
        let Ok((tcp, from)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        match &tls {
            None => {
                if net.send(NetEvent::Incoming(Box::new(tcp))).is_err() {
                    return;
                }
            }
            Some(cfg) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(cfg.clone());
                let net = net.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                    {
                        Ok(Ok(s)) => {
                            let _ = net.send(NetEvent::Incoming(Box::new(s)));
                        }
                        _ => tracing::debug!(%from, "diameter: TLS handshake failed"),
                    }
                });
            }
        }
        if net.is_closed() {
            return;
        }
    }
}

async fn connect(
    peer: PeerId,
    addr: SocketAddr,
    tls: Option<ClientTls>,
    timeout: Duration,
    net: mpsc::UnboundedSender<NetEvent>,
) {
    let attempt = async {
        let tcp = TcpStream::connect(addr).await.ok()?;
        let _ = tcp.set_nodelay(true);
        let s: Box<dyn Stream> = match tls {
            None => Box::new(tcp),
            Some(t) => {
                let c = tokio_rustls::TlsConnector::from(t.config);
                Box::new(c.connect(t.server_name, tcp).await.ok()?)
            }
        };
        Some(s)
    };
    let ev = match tokio::time::timeout(timeout, attempt).await {
        Ok(Some(s)) => NetEvent::Connected(peer, s),
        _ => NetEvent::ConnectFailed(peer),
    };
    let _ = net.send(ev);
}

struct Node {
    router: Router,
    specs: HashMap<PeerId, PeerSpec>,
    conns: HashMap<u64, ConnEntry>,
    bound: HashMap<(PeerId, Side), u64>,
    next_token: u64,
    net_tx: mpsc::UnboundedSender<NetEvent>,
    cmd_tx: mpsc::UnboundedSender<Cmd>,
    incoming: mpsc::Sender<IncomingRequest>,
    open: watch::Sender<usize>,
    peers: watch::Sender<Vec<PeerInfo>>,
    waiters: HashMap<RouteId, oneshot::Sender<Result<Message, ClientError>>>,
    stopping: Vec<oneshot::Sender<()>>,
    max_message_size: usize,
    /// Peer snapshots need refreshing (a peer event, a timer, a connection change).
    dirty: bool,
    dwas_seen: u64,
    connecting: std::collections::HashSet<PeerId>,
}

impl Node {
    async fn run(
        mut self,
        mut cmds: mpsc::UnboundedReceiver<Cmd>,
        mut net: mpsc::UnboundedReceiver<NetEvent>,
    ) {
        self.router.start(now());
        self.flush();
        loop {
            let deadline = self.router.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                c = cmds.recv() => match c {
                    Some(c) => self.command(c),
                    None => break,
                },
                Some(ev) = net.recv() => self.net_event(ev),
                () = sleep => {
                    self.router.handle_timeout(now());
                    self.dirty = true;
                }
            }
            self.flush();
            if !self.stopping.is_empty()
                && self
                    .router
                    .peer_ids()
                    .all(|p| self.router.peer(p).map(|x| x.state()) == Some(PeerState::Closed))
            {
                for s in self.stopping.drain(..) {
                    let _ = s.send(());
                }
                break;
            }
        }
        for (_, c) in self.conns.drain() {
            c.reader.abort();
            let _ = c.writer.send(WriteCmd::Close);
        }
    }

    fn command(&mut self, c: Cmd) {
        let t = now();
        match c {
            Cmd::Request(m, tx) => match self.router.request(t, m) {
                Ok(id) => {
                    self.waiters.insert(id, tx);
                }
                Err(e) => {
                    let _ = tx.send(Err(e.into()));
                }
            },
            Cmd::Answer(peer, m) => {
                if let Err(e) = self.router.answer(t, peer, &m) {
                    tracing::debug!(error = %e, "diameter: answer not sent");
                }
            }
            Cmd::Stop(cause, tx) => {
                self.dirty = true;
                self.router.stop(t, cause);
                self.stopping.push(tx);
            }
        }
    }

    fn add_conn(&mut self, s: Box<dyn Stream>, bound: Option<(PeerId, Side)>) -> u64 {
        self.next_token += 1;
        let token = self.next_token;
        let (mut rd, mut wr) = tokio::io::split(s);
        let (wtx, mut wrx) = mpsc::unbounded_channel::<WriteCmd>();
        tokio::spawn(async move {
            // Coalesce what is queued into one write (many small answers per syscall).
            let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
            'outer: while let Some(cmd) = wrx.recv().await {
                let mut close = false;
                match cmd {
                    WriteCmd::Data(b) => buf.extend_from_slice(&b),
                    WriteCmd::Close => close = true,
                }
                while !close && buf.len() < 64 * 1024 {
                    match wrx.try_recv() {
                        Ok(WriteCmd::Data(b)) => buf.extend_from_slice(&b),
                        Ok(WriteCmd::Close) => close = true,
                        Err(_) => break,
                    }
                }
                if !buf.is_empty() {
                    if wr.write_all(&buf).await.is_err() {
                        break 'outer;
                    }
                    buf.clear();
                }
                if close {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        });
        let net = self.net_tx.clone();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if net
                            .send(NetEvent::Data(token, Bytes::copy_from_slice(&buf[..n])))
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
            let _ = net.send(NetEvent::Closed(token));
        })
        .abort_handle();
        self.conns.insert(
            token,
            ConnEntry {
                writer: wtx,
                reader,
                bound,
                rx: Vec::new(),
            },
        );
        if let Some(b) = bound {
            self.bound.insert(b, token);
        }
        token
    }

    fn drop_conn(&mut self, token: u64) {
        if let Some(c) = self.conns.remove(&token) {
            c.reader.abort();
            let _ = c.writer.send(WriteCmd::Close);
            if let Some(b) = c.bound {
                if self.bound.get(&b) == Some(&token) {
                    self.bound.remove(&b);
                }
            }
        }
    }

    fn net_event(&mut self, ev: NetEvent) {
        let t = now();
        if !matches!(ev, NetEvent::Data(..)) {
            self.dirty = true;
        }
        match ev {
            NetEvent::Connected(peer, s) => {
                self.connecting.remove(&peer);
                let waiting = self.router.peer(peer).is_some_and(|p| {
                    matches!(
                        p.state(),
                        PeerState::WaitConnAck | PeerState::WaitConnAckElect
                    )
                });
                if !waiting {
                    // Not wanted any more: dropping the stream closes it.
                    return;
                }
                if let Some(old) = self.bound.get(&(peer, Side::Initiator)).copied() {
                    self.drop_conn(old);
                }
                let token = self.add_conn(s, Some((peer, Side::Initiator)));
                if !self.router.connected(t, peer) {
                    self.drop_conn(token);
                }
            }
            NetEvent::ConnectFailed(peer) => {
                self.connecting.remove(&peer);
                self.router.connection_failed(t, peer);
            }
            NetEvent::Incoming(s) => {
                let token = self.add_conn(s, None);
                let net = self.net_tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(ACCEPT_TIMEOUT).await;
                    let _ = net.send(NetEvent::AcceptTimeout(token));
                });
            }
            NetEvent::AcceptTimeout(token) => {
                if self.conns.get(&token).is_some_and(|c| c.bound.is_none()) {
                    tracing::debug!("diameter: no CER on an incoming connection, closing");
                    self.drop_conn(token);
                }
            }
            NetEvent::Data(token, bytes) => {
                let Some(c) = self.conns.get_mut(&token) else {
                    return;
                };
                match c.bound {
                    Some((peer, side)) => self.router.handle_bytes(t, peer, side, &bytes),
                    None => {
                        c.rx.extend_from_slice(&bytes);
                        match frame_len(&c.rx, self.max_message_size) {
                            Ok(None) => {}
                            Err(_) => self.drop_conn(token),
                            Ok(Some(n)) => {
                                let first: Vec<u8> = c.rx.drain(..n).collect();
                                let rest = std::mem::take(&mut c.rx);
                                match self.router.accept(t, &first) {
                                    Accept::Peer(peer) => {
                                        let b = (peer, Side::Responder);
                                        if let Some(old) = self.bound.insert(b, token) {
                                            if old != token {
                                                self.drop_conn(old);
                                                self.bound.insert(b, token);
                                            }
                                        }
                                        if let Some(c) = self.conns.get_mut(&token) {
                                            c.bound = Some(b);
                                        }
                                        if !rest.is_empty() {
                                            self.router.handle_bytes(
                                                t,
                                                peer,
                                                Side::Responder,
                                                &rest,
                                            );
                                        }
                                    }
                                    Accept::Reject(b) => {
                                        if let Some(c) = self.conns.get(&token) {
                                            if !b.is_empty() {
                                                let _ = c.writer.send(WriteCmd::Data(b));
                                            }
                                        }
                                        self.drop_conn(token);
                                    }
                                }
                            }
                        }
                    }
                }
            }
            NetEvent::Closed(token) => {
                if let Some(c) = self.conns.remove(&token) {
                    if let Some(b) = c.bound {
                        if self.bound.get(&b) == Some(&token) {
                            self.bound.remove(&b);
                            self.router.connection_closed(t, b.0, b.1);
                        }
                    }
                }
            }
        }
    }

    /// Apply the router's transport actions and hand out its events.
    fn flush(&mut self) {
        for _ in 0..1_000_000 {
            let mut busy = false;
            while let Some((peer, tr)) = self.router.poll_transmit() {
                busy = true;
                match tr {
                    // One attempt at a time: a Connect while one is in flight is answered
                    // by that attempt.
                    Transmit::Connect if self.connecting.contains(&peer) => {}
                    Transmit::Connect => match self.specs.get(&peer) {
                        Some(PeerSpec {
                            addr: Some(addr),
                            tls,
                            config,
                        }) => {
                            self.connecting.insert(peer);
                            tokio::spawn(connect(
                                peer,
                                *addr,
                                tls.clone(),
                                config.connect_timeout,
                                self.net_tx.clone(),
                            ));
                        }
                        _ => self.router.connection_failed(now(), peer),
                    },
                    Transmit::Send { side, data } => {
                        if let Some(c) = self
                            .bound
                            .get(&(peer, side))
                            .and_then(|t| self.conns.get(t))
                        {
                            let _ = c.writer.send(WriteCmd::Data(data));
                        }
                    }
                    Transmit::Close { side } => {
                        if let Some(t) = self.bound.remove(&(peer, side)) {
                            self.drop_conn(t);
                        }
                    }
                }
            }
            while let Some(ev) = self.router.poll_event() {
                busy = true;
                self.event(ev);
            }
            if !busy {
                break;
            }
        }
        // DWAs arrive as plain data: notice them by their count.
        let dwas: u64 = self
            .router
            .peer_ids()
            .filter_map(|p| self.router.peer(p).map(|x| x.dwas_received()))
            .sum();
        if dwas != self.dwas_seen {
            self.dwas_seen = dwas;
            self.dirty = true;
        }
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        let open = self
            .router
            .peer_ids()
            .filter(|p| self.router.peer(*p).is_some_and(|x| x.is_available()))
            .count();
        self.open.send_if_modified(|v| {
            let changed = *v != open;
            *v = open;
            changed
        });
        let infos: Vec<PeerInfo> = self
            .router
            .peer_ids()
            .filter_map(|id| {
                let p = self.router.peer(id)?;
                Some(PeerInfo {
                    id,
                    remote_host: p
                        .remote()
                        .map(|r| r.origin_host.clone())
                        .or_else(|| p.config().remote_host.clone()),
                    state: p.state(),
                    watchdog: p.watchdog_state(),
                    dwas_received: p.dwas_received(),
                    pending: p.pending_requests(),
                })
            })
            .collect();
        self.peers.send_if_modified(|v| {
            let changed = *v != infos;
            *v = infos;
            changed
        });
    }

    fn event(&mut self, ev: RouterEvent) {
        match ev {
            RouterEvent::Answer { id, answer, .. } => {
                if let Some(w) = self.waiters.remove(&id) {
                    let _ = w.send(Ok(answer));
                }
            }
            RouterEvent::Failed { id, error } => {
                if let Some(w) = self.waiters.remove(&id) {
                    let _ = w.send(Err(error.into()));
                }
            }
            RouterEvent::Request { peer, request } => {
                let busy = |req: &Message| {
                    let mut a = Message::answer_to(req);
                    a.flags = a.flags | super::CommandFlags::ERROR;
                    a.avps.push(Avp::u32(
                        &dict::RESULT_CODE,
                        ResultCode::DIAMETER_TOO_BUSY.0,
                    ));
                    a
                };
                let item = IncomingRequest {
                    peer,
                    request,
                    tx: self.cmd_tx.clone(),
                };
                if let Err(e) = self.incoming.try_send(item) {
                    let item = match e {
                        mpsc::error::TrySendError::Full(i)
                        | mpsc::error::TrySendError::Closed(i) => i,
                    };
                    let mut a = busy(&item.request);
                    if let Some(local) = self.router.peer(peer).map(|p| p.config().local.clone()) {
                        a.avps
                            .push(Avp::identity(&dict::ORIGIN_HOST, local.origin_host));
                        a.avps
                            .push(Avp::identity(&dict::ORIGIN_REALM, local.origin_realm));
                    }
                    let _ = self.router.answer(now(), peer, &a);
                }
            }
            RouterEvent::PeerOpen(p) => {
                self.dirty = true;
                tracing::info!(peer = p.0, "diameter: peer open");
            }
            RouterEvent::PeerSuspect(p) => {
                self.dirty = true;
                tracing::warn!(peer = p.0, "diameter: peer suspect");
            }
            RouterEvent::PeerClosed { peer, reason } => {
                self.dirty = true;
                tracing::info!(peer = peer.0, %reason, "diameter: peer closed");
            }
        }
    }
}
