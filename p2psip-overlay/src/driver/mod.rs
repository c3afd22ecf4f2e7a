//! The tokio driver of one RELOAD peer: the sans-IO [`Node`] core plus TLS links
//! ([`crate::link`]) and timers. The only tokio code between the core and the network.
//!
//! Run loop ([`start`] spawns it): one task owns the [`Node`]. It
//! - accepts links on a [`LinkListener`] (peers authenticated by the overlay CA; the
//!   peer's Node-ID comes from its certificate, RFC 6940 section 11.3),
//! - feeds every RELOAD message a link delivers (and every DATA frame that does not
//!   decode, [`LinkEvent::Invalid`]) to its [`Peer`] ([`peer`]), the sans-IO message
//!   layer: lengths, loops, the signature (section 6.3.4) by a certificate of the overlay
//!   CA naming the sender, per-value signatures; a refused request is answered with its
//!   RELOAD error, an accepted message goes to [`Node::handle`] as a DATA frame from the
//!   link's Node-ID,
//! - puts every DATA frame [`Node::poll_transmit`] returns on the link to its Node-ID,
//!   opening that link first ([`Link::connect`] with the expected Node-ID) when the
//!   address is known ([`addr`]: the bootstrap's, a link peer's own, or one from an
//!   Attach); for a Node-ID without one the frame waits while the core Attaches to it
//!   (RFC 6940 section 6.5.1, no ICE: the AttachReq goes over a link this peer has, the
//!   answer's host candidate is where the link is opened, counted by
//!   [`OverlayHandle::attach_links`]); the first link goes to the bootstrap address and
//!   the bootstrap's Node-ID is read from its certificate before [`Node::join`]; a frame
//!   held for a link is reported to the core ([`Node::link_waiting`]: it counts against
//!   the peer only after the setup budget), the link coming up ([`Node::link_up`]) or a
//!   failed connect ([`Node::link_failed`]: the peer fails at once) and a failed Attach
//!   ([`Node::link_down`]: the frames are retransmitted, which Attaches again) too,
//! - sleeps until [`Node::poll_timeout`] and calls [`Node::handle_timeout`],
//! - turns [`Event`]s into answers of the async [`OverlayHandle`] API.
//!
//! Link-level acknowledgements: the link layer acknowledges every DATA frame itself
//! (section 5.6.3.1 over TCP, which does not lose frames), so the core's ACK frames are
//! not sent; the driver acknowledges a DATA frame to the core when the link accepted it.
//! A peer whose link cannot be opened (a killed process: connection refused) is failed
//! at once ([`Node::link_failed`]) and the core reroutes (section 9.6.3).
//!
//! Signatures ([`Peer::encode`]): a message this node originates (requests, answers,
//! errors) is signed with its key, certificate included, and the StoredData of its own
//! stores get per-value signatures (section 7.1), by its own certificate or, for
//! [`OverlayHandle::store_as`], by a user certificate the CA issued to its Node-ID (an
//! AS storing its users' SIP-REGISTRATIONs; the certificate goes into the security
//! block, and the values keep that signature in replicas and fetch answers, [`sigs`]);
//! a message it forwards keeps the
//! originator's contents and security block byte for byte (only the forwarding header is
//! rebuilt, which the signature does not cover).
//!
//! Only the private `clock` function reads the clock.

pub mod addr;
pub mod control;
pub mod peer;
pub mod sigs;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::cert::NodeIdentity;
use crate::link::{Link, LinkConfig, LinkError, LinkEvent, LinkListener};
use crate::node::msg::{Body, Dest, Frame, Message};
#[cfg(doc)]
use crate::node::Node;
use crate::node::{Event, NodeConfig, Outcome, RequestError};
use crate::storage::{
    DataModel, FetchSpec, KindData, KindId, KindRegistry, Select, Signer, StatKind, StoredValue,
    ValueKey, APPEND,
};
use crate::topology::{hash_to_id, Id};
use crate::wire::{self, NodeId, SignError};
use peer::Peer;

/// Driver errors.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// Link or listener trouble.
    #[error("link: {0}")]
    Link(#[from] LinkError),
    /// The node's key or certificate cannot sign.
    #[error("signing: {0}")]
    Sign(#[from] SignError),
    /// The overlay refused or did not answer a request.
    #[error("request failed: {0:?}")]
    Request(RequestError),
    /// A kind the registry does not know.
    #[error("unknown kind {0}")]
    UnknownKind(u32),
    /// Encoding or decoding a RELOAD message.
    #[error("wire: {0}")]
    Wire(#[from] crate::wire::WireError),
    /// Dev CA files or certificate issuance.
    #[error("certificates: {0}")]
    Cert(#[from] crate::cert::CertError),
    /// Reading the dev CA files.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The driver task has stopped.
    #[error("driver stopped")]
    Stopped,
    /// [`OverlayHandle::store_as`] with a certificate issued to another Node-ID.
    #[error("the value signer's certificate names another Node-ID")]
    NotThisNode,
}

/// What the driver needs.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Link settings: overlay name, this node's identity, the CA roots.
    pub link: LinkConfig,
    /// Address to listen on (port 0: any).
    pub listen: SocketAddr,
    /// Address of a peer already in the overlay; `None` starts a new overlay.
    pub bootstrap: Option<SocketAddr>,
    /// Core settings.
    pub node: NodeConfig,
    /// Lifetime of stored values, seconds.
    pub lifetime: u32,
    /// Dev/test option: append every message this node sends (framed PDUs) to a list
    /// written as a pcap by [`crate::wire::pcap::reload_pcap`] at shutdown (and as it
    /// grows: every 64 messages up to 4,096, then every 4,096).
    pub pcap: Option<PathBuf>,
    /// Dev/test option: every encoded message this node sends is also appended here
    /// (for [`crate::wire::pcap::tshark_check`]).
    pub record: Option<Arc<std::sync::Mutex<Vec<Vec<u8>>>>>,
}

impl DriverConfig {
    /// A configuration with real-network defaults for the core (2 s stabilisation,
    /// 3 replicas on successors) and one-hour value lifetimes.
    #[must_use]
    pub fn new(link: LinkConfig, listen: SocketAddr, bootstrap: Option<SocketAddr>) -> Self {
        let node = NodeConfig {
            update_interval: Duration::from_secs(2),
            finger_interval: Duration::from_secs(2),
            request_timeout: Duration::from_secs(3),
            dead_memory: Duration::from_secs(5),
            ..NodeConfig::default()
        };
        Self {
            link,
            listen,
            bootstrap,
            node,
            lifetime: 3600,
            pcap: None,
            record: None,
        }
    }
}

/// The one place the driver reads the clock: monotonic time for the core and the wall
/// clock (ms since the epoch) for StoredData storage times.
#[expect(clippy::disallowed_methods)]
fn clock() -> (Instant, u64) {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    (Instant::now(), ms)
}

/// Wall-clock seconds since the epoch (certificate validity), from [`clock`].
fn unix_s() -> u64 {
    clock().1 / 1000
}

enum Command {
    Store {
        resource: Id,
        kind: KindId,
        value: Vec<u8>,
        /// Sign the value with this identity instead of the peer's own.
        value_signer: Option<Arc<NodeIdentity>>,
        /// StoredData lifetime in seconds; `None`: [`DriverConfig::lifetime`].
        lifetime: Option<u32>,
        reply: oneshot::Sender<Result<(), DriverError>>,
    },
    Fetch {
        resource: Id,
        kind: KindId,
        reply: oneshot::Sender<Result<Vec<StoredValue>, DriverError>>,
    },
    Local {
        resource: Id,
        kind: KindId,
        reply: oneshot::Sender<Result<Vec<StoredValue>, DriverError>>,
    },
    Stat {
        resource: Id,
        kind: KindId,
        reply: oneshot::Sender<Result<StatKind, DriverError>>,
    },
    Find {
        resource: Id,
        kind: KindId,
        reply: oneshot::Sender<Result<Option<Id>, DriverError>>,
    },
    Shutdown(oneshot::Sender<()>),
}

enum Internal {
    Accepted(Link),
    Connected(Id, Result<Link, LinkError>),
    Message(Id, u64, Box<wire::Message>),
    Invalid(Id, u64, Vec<u8>),
    Oversize(Id, u64, usize, Vec<u8>),
    Closed(Id, u64, String),
}

/// The async API of a running peer.
#[derive(Debug, Clone)]
pub struct OverlayHandle {
    cmd: mpsc::Sender<Command>,
    node_id: NodeId,
    listen: SocketAddr,
    joined: watch::Receiver<bool>,
    attach_links: Arc<AtomicU64>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

/// The Resource-ID of a resource name (RFC 6940 section 9.2: SHA-1 truncated to 128 bits).
#[must_use]
pub fn resource_id(name: &[u8]) -> Id {
    hash_to_id(name)
}

impl OverlayHandle {
    /// This peer's Node-ID.
    #[must_use]
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The address the peer listens on.
    #[must_use]
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// Links this peer opened to an address it learnt from an Attach answer (RFC 6940
    /// section 6.5.1).
    #[must_use]
    pub fn attach_links(&self) -> u64 {
        self.attach_links.load(Ordering::Relaxed)
    }

    /// Waits until the peer is part of the ring.
    pub async fn joined(&self) -> Result<(), DriverError> {
        let mut rx = self.joined.clone();
        rx.wait_for(|j| *j)
            .await
            .map(|_| ())
            .map_err(|_| DriverError::Stopped)
    }

    /// Stores `value` for `resource` (a name, hashed to its Resource-ID) under `kind`.
    /// The kind's model decides the place: single value; dictionary key = this peer's
    /// Node-ID (what NODE-KEY-MATCH / USER-NODE-MATCH want); array: appended.
    pub async fn store(
        &self,
        resource: &[u8],
        kind: KindId,
        value: Vec<u8>,
    ) -> Result<(), DriverError> {
        self.store_with(None, resource, kind, value, None).await
    }

    /// [`OverlayHandle::store`] with the value's own lifetime (RFC 6940 section 7:
    /// StoredData.lifetime, seconds) instead of [`DriverConfig::lifetime`]: the
    /// responsible peer and the replicas drop the value `lifetime_s` after they store it
    /// unless it is stored again (a refresh); 0 expires it at once.
    pub async fn store_for(
        &self,
        resource: &[u8],
        kind: KindId,
        value: Vec<u8>,
        lifetime_s: u32,
    ) -> Result<(), DriverError> {
        self.store_with(None, resource, kind, value, Some(lifetime_s))
            .await
    }

    /// [`OverlayHandle::store`] with the value signed (RFC 6940 section 7.1, the
    /// per-StoredData signature) by `identity` instead of this peer's own certificate:
    /// a certificate the overlay's CA issued to this peer's Node-ID for a user (the
    /// rfc822Name), e.g. the AoR whose SIP-REGISTRATION an AS stores on its users'
    /// behalf. The message itself is still signed by this peer. The responsible peer
    /// checks the value's certificate (chain to the CA, signature) and the kind's access
    /// policy against it (USER-NODE-MATCH: the user must hash to `resource`, the
    /// dictionary key is this Node-ID). [`DriverError::NotThisNode`] when `identity`
    /// names another Node-ID.
    pub async fn store_as(
        &self,
        identity: Arc<NodeIdentity>,
        resource: &[u8],
        kind: KindId,
        value: Vec<u8>,
    ) -> Result<(), DriverError> {
        self.store_with(Some(identity), resource, kind, value, None)
            .await
    }

    /// [`OverlayHandle::store_as`] with the value's own lifetime in seconds (as
    /// [`OverlayHandle::store_for`]): e.g. a SIP-REGISTRATION stored for as long as the
    /// registrar granted the registration (RFC 7904), re-stored at each refresh.
    pub async fn store_as_for(
        &self,
        identity: Arc<NodeIdentity>,
        resource: &[u8],
        kind: KindId,
        value: Vec<u8>,
        lifetime_s: u32,
    ) -> Result<(), DriverError> {
        self.store_with(Some(identity), resource, kind, value, Some(lifetime_s))
            .await
    }

    /// The one Store command behind the `store*` methods: signed by `identity` (or the
    /// peer's own certificate), for `lifetime` seconds (or the configured lifetime).
    async fn store_with(
        &self,
        identity: Option<Arc<NodeIdentity>>,
        resource: &[u8],
        kind: KindId,
        value: Vec<u8>,
        lifetime: Option<u32>,
    ) -> Result<(), DriverError> {
        if identity.as_ref().is_some_and(|i| i.node != self.node_id) {
            return Err(DriverError::NotThisNode);
        }
        self.ask(|reply| Command::Store {
            resource: resource_id(resource),
            kind,
            value,
            value_signer: identity,
            lifetime,
            reply,
        })
        .await
    }

    /// Stat (RFC 6940 section 7.4.3): the generation of `kind` at `resource` and the
    /// metadata (length, SHA-256 hash, lifetime, storage time) of every value.
    pub async fn stat(&self, resource: &[u8], kind: KindId) -> Result<StatKind, DriverError> {
        self.ask(|reply| Command::Stat {
            resource: resource_id(resource),
            kind,
            reply,
        })
        .await
    }

    /// Find (RFC 6940 section 7.4.4): the closest Resource-ID at or after `resource`
    /// (an id, not a name) with values of `kind` that the peer responsible for it stores.
    pub async fn find(&self, resource: Id, kind: KindId) -> Result<Option<Id>, DriverError> {
        self.ask(|reply| Command::Find {
            resource,
            kind,
            reply,
        })
        .await
    }

    /// Fetches every value of `kind` at `resource`.
    pub async fn fetch(
        &self,
        resource: &[u8],
        kind: KindId,
    ) -> Result<Vec<StoredValue>, DriverError> {
        self.ask(|reply| Command::Fetch {
            resource: resource_id(resource),
            kind,
            reply,
        })
        .await
    }

    /// The values of `kind` at `resource` this peer holds itself (as the responsible peer
    /// or a replica), without asking the overlay.
    pub async fn local(
        &self,
        resource: &[u8],
        kind: KindId,
    ) -> Result<Vec<StoredValue>, DriverError> {
        self.ask(|reply| Command::Local {
            resource: resource_id(resource),
            kind,
            reply,
        })
        .await
    }

    /// Sends the command `make` builds around a reply channel and waits for the answer.
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, DriverError>>) -> Command,
    ) -> Result<T, DriverError> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(make(reply))
            .await
            .map_err(|_| DriverError::Stopped)?;
        rx.await.map_err(|_| DriverError::Stopped)?
    }

    /// Leaves the overlay (RFC 6940 section 9.7), writes the pcap if asked, and stops.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Command::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// Binds the listener, opens the bootstrap link and starts the peer's task.
pub async fn start(cfg: DriverConfig) -> Result<(OverlayHandle, JoinHandle<()>), DriverError> {
    let link_cfg = Arc::new(cfg.link.clone());
    let listener = LinkListener::bind(Arc::clone(&link_cfg), cfg.listen).await?;
    let listen = listener.local_addr()?;
    let identity = &cfg.link.identity;
    let mut peer = Peer::new(&cfg.link, listen, cfg.node.clone())?;
    peer.node.set_candidates(vec![listen]);
    let attach_links = Arc::new(AtomicU64::new(0));
    // transaction ids from the OS RNG, not from the (public) Node-ID
    peer.node.reseed(rand::random());
    let bootstrap = match cfg.bootstrap {
        Some(a) => Some(Link::connect(&link_cfg, a, None).await?),
        None => None,
    };
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    let (int_tx, int_rx) = mpsc::channel(1024);
    let (joined_tx, joined_rx) = watch::channel(false);
    let accept_tx = int_tx.clone();
    let accept_task = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok(link) => {
                    if accept_tx.send(Internal::Accepted(link)).await.is_err() {
                        return;
                    }
                }
                Err(e) => debug!("link accept failed: {e}"),
            }
        }
    });
    let user = identity
        .chain
        .first()
        .and_then(|c| crate::cert::PeerIdentity::from_der(c).ok())
        .and_then(|p| p.user)
        .unwrap_or_default();
    let mut d = Driver {
        peer,
        user,
        link_cfg,
        connect_timeout: cfg.node.link_setup_timeout,
        kinds: KindRegistry::default(),
        lifetime: cfg.lifetime,
        links: HashMap::new(),
        next_gen: 1,
        connecting: HashMap::new(),
        attaching: HashMap::new(),
        via_attach: HashSet::new(),
        attach_links: Arc::clone(&attach_links),
        int_tx,
        pending: HashMap::new(),
        joined: joined_tx,
        pcap: cfg.pcap.clone(),
        record: cfg.record.clone(),
        sent: Vec::new(),
    };
    let (now, _) = clock();
    match bootstrap {
        Some(link) => {
            let peer = Id(link.peer.to_u128());
            if let Some(a) = cfg.bootstrap {
                d.peer.book.set(peer, a);
            }
            d.register(link);
            d.peer.node.join(now, peer);
        }
        None => d.peer.node.start_alone(now),
    }
    d.after();
    let span = tracing::debug_span!("peer", me = %identity.node);
    let task = tokio::spawn(tracing::Instrument::instrument(
        async move {
            d.run(cmd_rx, int_rx).await;
            accept_task.abort();
        },
        span,
    ));
    Ok((
        OverlayHandle {
            cmd: cmd_tx,
            node_id: identity.node,
            listen,
            joined: joined_rx,
            attach_links,
        },
        task,
    ))
}

enum Reply {
    Store(oneshot::Sender<Result<(), DriverError>>),
    Fetch(oneshot::Sender<Result<Vec<StoredValue>, DriverError>>),
    Stat(oneshot::Sender<Result<StatKind, DriverError>>),
    Find(oneshot::Sender<Result<Option<Id>, DriverError>>),
}

struct LinkEntry {
    gen: u64,
    tx: mpsc::Sender<Vec<u8>>,
}

struct Driver {
    /// The core behind the security checks, and the encoder ([`peer`]).
    peer: Peer,
    /// The user name (rfc822Name) of this peer's certificate, empty when none.
    user: String,
    link_cfg: Arc<LinkConfig>,
    /// How long a connect (TCP and TLS handshake) may take: the core's link setup
    /// budget ([`NodeConfig::link_setup_timeout`]), so a slow handshake on a loaded
    /// machine is not mistaken for a refused connect.
    connect_timeout: Duration,
    kinds: KindRegistry,
    lifetime: u32,
    links: HashMap<Id, LinkEntry>,
    next_gen: u64,
    /// Frames waiting for a link being opened (seq, message).
    connecting: HashMap<Id, Vec<(u32, Message)>>,
    /// Frames waiting for the answer of an Attach to their peer.
    attaching: HashMap<Id, Vec<(u32, Message)>>,
    /// Links being opened to an address an Attach answer gave.
    via_attach: HashSet<Id>,
    /// Links opened that way (what [`OverlayHandle::attach_links`] reads).
    attach_links: Arc<AtomicU64>,
    int_tx: mpsc::Sender<Internal>,
    pending: HashMap<u64, Reply>,
    joined: watch::Sender<bool>,
    pcap: Option<PathBuf>,
    record: Option<Arc<std::sync::Mutex<Vec<Vec<u8>>>>>,
    sent: Vec<Vec<u8>>,
}

impl Driver {
    async fn run(
        &mut self,
        mut cmd_rx: mpsc::Receiver<Command>,
        mut int_rx: mpsc::Receiver<Internal>,
    ) {
        loop {
            let deadline = self.peer.node.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                c = cmd_rx.recv() => match c {
                    Some(Command::Shutdown(done)) => {
                        let (now, _) = clock();
                        self.peer.node.leave(now);
                        self.after();
                        // let the links flush the Leaves
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        self.write_pcap();
                        let _ = done.send(());
                        return;
                    }
                    Some(c) => self.command(c),
                    None => {
                        self.write_pcap();
                        return;
                    }
                },
                Some(i) = int_rx.recv() => self.internal(i),
                () = sleep => {
                    let (now, _) = clock();
                    self.peer.node.handle_timeout(now);
                }
            }
            self.after();
        }
    }

    fn write_pcap(&self) {
        if let Some(p) = &self.pcap {
            if let Err(e) = std::fs::write(p, crate::wire::pcap::reload_pcap(&self.sent)) {
                warn!("pcap {}: {e}", p.display());
            }
        }
    }

    fn command(&mut self, c: Command) {
        let (now, ms) = clock();
        match c {
            Command::Store {
                resource,
                kind,
                value,
                value_signer,
                lifetime,
                reply,
            } => {
                let Some(def) = self.kinds.get(kind) else {
                    let _ = reply.send(Err(DriverError::UnknownKind(kind.0)));
                    return;
                };
                let key = match def.model {
                    DataModel::Single => ValueKey::Single,
                    DataModel::Array => ValueKey::Index(APPEND),
                    DataModel::Dictionary => ValueKey::Key(self.peer.me.to_be_bytes().to_vec()),
                };
                let value_signer = match value_signer.as_deref().map(user_signer).transpose() {
                    Ok(v) => v,
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return;
                    }
                };
                let me = value_signer
                    .as_ref()
                    .map_or_else(|| self.my_signer(), |(_, s)| s.clone());
                let kd = KindData {
                    kind,
                    generation: 0,
                    values: vec![StoredValue {
                        key,
                        storage_time: ms,
                        lifetime: lifetime.unwrap_or(self.lifetime),
                        exists: true,
                        data: value,
                        signer: me.clone(),
                    }],
                };
                if let Some((w, _)) = &value_signer {
                    for v in &kd.values {
                        if let Err(e) = self.peer.sigs.presign(resource, kind, v, w) {
                            let _ = reply.send(Err(e.into()));
                            return;
                        }
                    }
                }
                let h = self.peer.node.store(now, resource, vec![kd], me);
                self.pending.insert(h, Reply::Store(reply));
            }
            Command::Fetch {
                resource,
                kind,
                reply,
            } => {
                let Some(def) = self.kinds.get(kind) else {
                    let _ = reply.send(Err(DriverError::UnknownKind(kind.0)));
                    return;
                };
                let select = select_all(def.model);
                let h = self.peer.node.fetch(
                    now,
                    resource,
                    vec![FetchSpec {
                        kind,
                        generation: 0,
                        select,
                    }],
                );
                self.pending.insert(h, Reply::Fetch(reply));
            }
            Command::Stat {
                resource,
                kind,
                reply,
            } => {
                let Some(def) = self.kinds.get(kind) else {
                    let _ = reply.send(Err(DriverError::UnknownKind(kind.0)));
                    return;
                };
                let select = select_all(def.model);
                let spec = FetchSpec {
                    kind,
                    generation: 0,
                    select,
                };
                let h = self.peer.node.stat(now, resource, vec![spec]);
                self.pending.insert(h, Reply::Stat(reply));
            }
            Command::Find {
                resource,
                kind,
                reply,
            } => {
                let h = self.peer.node.find(now, resource, vec![kind]);
                self.pending.insert(h, Reply::Find(reply));
            }
            Command::Local {
                resource,
                kind,
                reply,
            } => {
                let Some(def) = self.kinds.get(kind) else {
                    let _ = reply.send(Err(DriverError::UnknownKind(kind.0)));
                    return;
                };
                let spec = FetchSpec {
                    kind,
                    generation: 0,
                    select: select_all(def.model),
                };
                let values = self
                    .peer
                    .node
                    .storage()
                    .fetch(now, resource, &[spec])
                    .map(|kd| {
                        kd.into_iter()
                            .flat_map(|k| k.values)
                            .filter(|v| v.exists)
                            .collect()
                    })
                    .unwrap_or_default();
                let _ = reply.send(Ok(values));
            }
            Command::Shutdown(_) => {}
        }
    }

    /// This peer as a signer: its Node-ID and its certificate's user name (the
    /// storage's USER-MATCH / USER-NODE-MATCH checks of its own stores need it).
    fn my_signer(&self) -> Signer {
        Signer {
            node_id: self.peer.me,
            user_name: self.user.clone(),
        }
    }

    fn register(&mut self, mut link: Link) -> u64 {
        let peer = Id(link.peer.to_u128());
        let gen = self.next_gen;
        self.next_gen += 1;
        self.links.insert(
            peer,
            LinkEntry {
                gen,
                tx: link.sender(),
            },
        );
        debug!(peer = %link.peer, remote = %link.remote, "link up");
        let tx = self.int_tx.clone();
        tokio::spawn(async move {
            while let Some(ev) = link.recv().await {
                let msg = match ev {
                    LinkEvent::Message(m) => Internal::Message(peer, gen, m),
                    LinkEvent::Invalid(b) => Internal::Invalid(peer, gen, b),
                    LinkEvent::Oversize { len, head } => Internal::Oversize(peer, gen, len, head),
                    LinkEvent::Closed(why) => Internal::Closed(peer, gen, why),
                };
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
            let _ = tx.send(Internal::Closed(peer, gen, "ended".into())).await;
        });
        gen
    }

    fn internal(&mut self, i: Internal) {
        let (now, _) = clock();
        match i {
            Internal::Accepted(link) => {
                self.register(link);
            }
            Internal::Connected(peer, Ok(link)) => {
                if self.via_attach.remove(&peer) {
                    self.attach_links.fetch_add(1, Ordering::Relaxed);
                }
                self.register(link);
                self.peer.node.link_up(now, peer);
                for (seq, msg) in self.connecting.remove(&peer).unwrap_or_default() {
                    self.send_data(now, peer, seq, &msg);
                }
            }
            Internal::Connected(peer, Err(e)) => {
                debug!(peer = %NodeId::from_u128(peer.0), "connect failed: {e}");
                self.via_attach.remove(&peer);
                let queued = self.connecting.remove(&peer).unwrap_or_default();
                if self.links.contains_key(&peer) {
                    // the peer opened a link to us meanwhile: use that one
                    self.peer.node.link_up(now, peer);
                    for (seq, msg) in queued {
                        self.send_data(now, peer, seq, &msg);
                    }
                } else {
                    self.peer.book.forget(peer);
                    // a refused connect (a killed peer) fails it at once; the setup
                    // budget only covers a slow but live one
                    self.peer.node.link_failed(now, peer);
                }
            }
            Internal::Closed(peer, gen, why) => {
                if self.links.get(&peer).is_some_and(|l| l.gen == gen) {
                    debug!(peer = %NodeId::from_u128(peer.0), "link closed: {why}");
                    self.links.remove(&peer);
                }
            }
            Internal::Message(peer, _gen, m) => {
                let _ = self.peer.receive(now, unix_s(), peer, &m);
            }
            Internal::Invalid(peer, _gen, bytes) => {
                let _ = self.peer.receive_bytes(now, unix_s(), peer, &bytes);
            }
            Internal::Oversize(peer, _gen, len, head) => {
                let _ = self.peer.receive_oversize(now, peer, len, &head);
            }
        }
    }

    /// Drains the core's transmits and events, and runs its timers when they are due
    /// (bounded: a few rounds; the run loop's timer covers the rest).
    fn after(&mut self) {
        for _ in 0..8 {
            let (now, _) = clock();
            self.drain(now);
            if self.peer.node.poll_timeout().is_none_or(|t| t > now) {
                return;
            }
            self.peer.node.handle_timeout(now);
        }
        let (now, _) = clock();
        self.drain(now);
    }

    /// Drains the core's transmits and events until both are empty (an event can make
    /// the core send more: [`Node::link_failed`] reroutes), bounded.
    fn drain(&mut self, now: Instant) {
        for _ in 0..64 {
            if !self.drain_once(now) {
                return;
            }
        }
    }

    /// One pass over the core's transmits and events; true when there was any.
    fn drain_once(&mut self, now: Instant) -> bool {
        let mut any = false;
        while let Some(t) = self.peer.node.poll_transmit() {
            any = true;
            match t.frame {
                // the link acknowledges on its own (module docs)
                Frame::Ack { .. } => {}
                Frame::Data { seq, msg } => self.transmit(now, t.to, seq, *msg),
            }
        }
        while let Some(e) = self.peer.node.poll_event() {
            any = true;
            match e {
                Event::Joined => {
                    info!(node = %NodeId::from_u128(self.peer.me.0), "joined");
                    let _ = self.joined.send(true);
                }
                Event::PeerFailed(p) => {
                    info!(peer = %NodeId::from_u128(p.0), "peer failed");
                    self.links.remove(&p);
                }
                Event::Attached { peer, addrs } => {
                    let queued = self.attaching.remove(&peer).unwrap_or_default();
                    let Some(&addr) = addrs.first() else { continue };
                    self.peer.book.set(peer, addr);
                    if self.links.contains_key(&peer) {
                        self.peer.node.link_up(now, peer);
                        for (seq, msg) in queued {
                            self.send_data(now, peer, seq, &msg);
                        }
                    } else if let Some(q) = self.connecting.get_mut(&peer) {
                        q.extend(queued);
                    } else {
                        self.via_attach.insert(peer);
                        self.open(peer, addr, queued);
                    }
                }
                Event::AttachFailed(peer) => {
                    debug!(peer = %NodeId::from_u128(peer.0), "attach failed");
                    // not proof that the peer is dead (the route may have run
                    // through peers still joining): the held frames are
                    // retransmitted, which tries the Attach again
                    self.attaching.remove(&peer);
                    self.peer.node.link_down(now, peer);
                }
                Event::AttachRequested { peer, addrs } => {
                    if let Some(&addr) = addrs.first() {
                        self.peer.book.set(peer, addr);
                    }
                }
                Event::Done { handle, result, .. } => match self.pending.remove(&handle) {
                    Some(Reply::Store(r)) => {
                        let _ = r.send(match result {
                            Ok(Outcome::Stored(_)) => Ok(()),
                            Ok(_) => Err(DriverError::Request(RequestError::Unexpected)),
                            Err(e) => Err(DriverError::Request(e)),
                        });
                    }
                    Some(Reply::Fetch(r)) => {
                        let _ = r.send(match result {
                            Ok(Outcome::Fetched(kd)) => Ok(kd
                                .into_iter()
                                .flat_map(|k| k.values)
                                .filter(|v| v.exists)
                                .collect()),
                            Ok(_) => Err(DriverError::Request(RequestError::Unexpected)),
                            Err(e) => Err(DriverError::Request(e)),
                        });
                    }
                    Some(Reply::Stat(r)) => {
                        let _ = r.send(match result {
                            Ok(Outcome::Stat(k)) if k.len() == 1 => {
                                Ok(k.into_iter().next().expect("one kind"))
                            }
                            Ok(_) => Err(DriverError::Request(RequestError::Unexpected)),
                            Err(e) => Err(DriverError::Request(e)),
                        });
                    }
                    Some(Reply::Find(r)) => {
                        let _ = r.send(match result {
                            Ok(Outcome::Found(f)) if f.len() == 1 => Ok(f[0].1),
                            Ok(_) => Err(DriverError::Request(RequestError::Unexpected)),
                            Err(e) => Err(DriverError::Request(e)),
                        });
                    }
                    None => {}
                },
            }
        }
        any
    }

    fn transmit(&mut self, now: Instant, to: Id, seq: u32, msg: Message) {
        if self.links.contains_key(&to) {
            self.send_data(now, to, seq, &msg);
            return;
        }
        if let Some(q) = self.connecting.get_mut(&to) {
            if !q.iter().any(|(s, _)| *s == seq) {
                q.push((seq, msg));
            }
            self.peer.node.link_waiting(now, to, seq);
            return;
        }
        let addr = self.peer.book.get(to);
        if addr.is_none() && matches!(msg.body, Body::AttachReq { .. }) {
            // An Attach is never the reason for another Attach, nor does it wait for
            // one (the Attach to this hop may itself be waiting for this one): it goes
            // over a link this peer has.
            self.relay_attach(now, to, seq, &msg);
            return;
        }
        if let Some(q) = self.attaching.get_mut(&to) {
            if !q.iter().any(|(s, _)| *s == seq) {
                q.push((seq, msg));
            }
            self.peer.node.link_waiting(now, to, seq);
            return;
        }
        let Some(addr) = addr else {
            // RFC 6940 section 6.5.1: ask the peer for its host candidates through
            // the overlay; the frame waits for the answer within the core's link
            // setup budget (Node::link_waiting), then the core fails the peer and
            // reroutes.
            self.attaching.insert(to, vec![(seq, msg)]);
            self.peer.node.link_waiting(now, to, seq);
            self.peer.node.attach(now, to);
            return;
        };
        self.peer.node.link_waiting(now, to, seq);
        self.open(to, addr, vec![(seq, msg)]);
    }

    /// Sends an AttachReq whose hop `to` has no link and no known address over a link
    /// this peer has: the one nearest the target the routing table names first, else
    /// the linked peer nearest the target on the ring (the likeliest to know it; any
    /// peer routes it on), not back to a peer it came through when another link exists
    /// (that would only loop, RFC 6940 section 6.2.2).
    fn relay_attach(&mut self, now: Instant, to: Id, seq: u32, msg: &Message) {
        let target = match msg.dest.first() {
            Some(Dest::Node(x) | Dest::Resource(x)) => *x,
            None => to,
        };
        let fresh = |h: &Id| *h != target && !msg.via.contains(h);
        let via = self
            .peer
            .node
            .table()
            .next_hops(target)
            .into_iter()
            .find(|h| self.links.contains_key(h) && fresh(h))
            .or_else(|| {
                self.links
                    .keys()
                    .copied()
                    .filter(fresh)
                    .min_by_key(|&h| h.distance_to(target).min(target.distance_to(h)))
            })
            .or_else(|| self.links.keys().copied().find(|h| *h != target));
        match via {
            Some(h) => self.send_data_over(now, h, to, seq, msg),
            None => debug!("no link for an Attach; dropped"),
        }
    }

    /// Opens a link to `to` at `addr`; `queued` go out once it is up.
    fn open(&mut self, to: Id, addr: SocketAddr, queued: Vec<(u32, Message)>) {
        self.connecting.insert(to, queued);
        let cfg = Arc::clone(&self.link_cfg);
        let tx = self.int_tx.clone();
        let limit = self.connect_timeout;
        tokio::spawn(async move {
            let r = tokio::time::timeout(
                limit,
                Link::connect(&cfg, addr, Some(NodeId::from_u128(to.0))),
            )
            .await
            .unwrap_or(Err(LinkError::Closed));
            let _ = tx.send(Internal::Connected(to, r)).await;
        });
    }

    /// Encodes, signs (or keeps the originator's signature) and queues one message.
    fn send_data(&mut self, now: Instant, to: Id, seq: u32, msg: &Message) {
        self.send_data_over(now, to, to, seq, msg);
    }

    /// [`Driver::send_data`] on the link to `link`, acknowledged to the core as the hop
    /// to `to`.
    fn send_data_over(&mut self, now: Instant, link: Id, to: Id, seq: u32, msg: &Message) {
        let bytes = match self.peer.encode(msg) {
            Ok(b) => b,
            Err(e) => {
                warn!("cannot encode {}: {e}", msg.body.name());
                return;
            }
        };
        let Some(entry) = self.links.get(&link) else {
            return;
        };
        if self.pcap.is_some() && self.sent.len() < 100_000 {
            self.sent.push(bytes.clone());
            // written as it grows too, so a killed process leaves most of its PDUs
            let n = self.sent.len();
            if (n <= 4096 && n % 64 == 0) || n % 4096 == 0 {
                self.write_pcap();
            }
        }
        if let Some(r) = &self.record {
            if let Ok(mut r) = r.lock() {
                r.push(bytes.clone());
            }
        }
        match entry.tx.try_send(bytes) {
            Ok(()) => self.peer.node.handle(now, to, Frame::Ack { seq }),
            Err(mpsc::error::TrySendError::Full(_)) => {
                debug!("link queue full; the core will retransmit");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.links.remove(&link);
            }
        }
    }
}

/// The wire signer of a value-signing identity and the storage's view of it (its
/// Node-ID and user name).
fn user_signer(id: &NodeIdentity) -> Result<(wire::Signer, Signer), DriverError> {
    let cert = id.chain.first().map_or(&[][..], |c| c.as_ref());
    let w = wire::Signer::ecdsa_p256(&id.key_pkcs8, cert)?;
    let user = crate::cert::PeerIdentity::from_der(cert)?
        .user
        .unwrap_or_default();
    Ok((
        w,
        Signer {
            node_id: Id(id.node.to_u128()),
            user_name: user,
        },
    ))
}

/// A fetch selection of every value of a model.
fn select_all(model: DataModel) -> Select {
    match model {
        DataModel::Single => Select::Single,
        DataModel::Array => Select::Indices(vec![(0, u32::MAX - 1)]),
        DataModel::Dictionary => Select::Keys(Vec::new()),
    }
}

/// Issues this node's identity from the dev CA files (`ca.pem`, `ca.key`) in `dir`.
pub fn identity_from_ca_dir(
    dir: &std::path::Path,
    overlay: &str,
    node: NodeId,
) -> Result<
    (
        NodeIdentity,
        Vec<rustls::pki_types::CertificateDer<'static>>,
    ),
    DriverError,
> {
    let cert = std::fs::read_to_string(dir.join("ca.pem"))?;
    let key = std::fs::read_to_string(dir.join("ca.key"))?;
    let ca = crate::cert::DevCa::from_pem(overlay, &cert, &key)?;
    let id = ca.issue(node, None)?;
    Ok((id, vec![ca.root_der()]))
}
