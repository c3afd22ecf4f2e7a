//! Overlay links: RELOAD over TLS over TCP with the framing header (RFC 6940 section
//! 5.6.3.1), the thin tokio driver between sockets and the sans-IO node.
//!
//! - Both ends authenticate with certificates of the overlay's CA ([`crate::cert`]): the
//!   server asks for a client certificate, and after the handshake each side reads the
//!   peer's Node-ID from its certificate. A link opened towards a known Node-ID
//!   ([`Link::connect`] with `expect`) is refused when the certificate names another one.
//! - Every RELOAD message travels in a `data` frame with the link's next sequence number; the
//!   receiver acknowledges each with an `ack` frame whose bitmap says which of the 32 frames
//!   before it arrived too (TCP does not lose frames, so the bitmap is the plain record; the
//!   acknowledgements are what RFC 6940 asks for and what a peer may use to measure the
//!   link). [`LinkStats`] counts both directions.
//! - A frame the decoder rejects (an unknown frame type) closes the link
//!   ([`LinkEvent::Closed`] says why): garbage framing is never passed up. A well-framed
//!   `data` frame whose payload is not a valid RELOAD message is acknowledged and passed
//!   up as [`LinkEvent::Invalid`] (the node answers Error_Invalid_Message).
//! - A `data` frame over the max-message-size does not close the link: its framing header
//!   gives its length, so the decoder keeps its head (the forwarding header and message
//!   code, bounded), drops the rest as it arrives ([`crate::wire::FrameDecoder::next_item`]),
//!   acknowledges the frame and passes the head up as [`LinkEvent::Oversize`], which the
//!   node answers with Error_Message_Too_Large (RFC 6940 section 6.3.2). The byte stream
//!   stays in step (TLS delivers every byte in order, and the next frame starts right
//!   after the announced length), so the link goes on safely; memory stays bounded by the
//!   limit plus one read.
//!
//! One task per link owns the TLS stream; the application talks to it through a bounded
//! channel of encoded messages (back-pressure instead of unbounded queues) and receives
//! [`LinkEvent`]s.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::cert::{self, CertError, NodeIdentity, PeerIdentity};
use crate::wire::{FrameDecoder, FrameItem, FramedMessage, Message, NodeId, WireError};

/// Why a link could not be opened or went down.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Socket trouble.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Certificates or TLS configuration.
    #[error("certificates: {0}")]
    Cert(#[from] CertError),
    /// TLS configuration refused by rustls.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// The peer's certificate names no Node-ID of this overlay, or another than expected.
    #[error("peer identity: {0}")]
    Identity(String),
    /// The peer sent bytes that are not RELOAD framing or messages.
    #[error("protocol: {0}")]
    Protocol(#[from] WireError),
    /// The link is closed.
    #[error("link closed")]
    Closed,
}

/// What a link needs to know about this node and its overlay.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Overlay name (the `@overlay` part of certificate URIs).
    pub overlay: String,
    /// This node's key and chain.
    pub identity: NodeIdentity,
    /// The overlay's root certificate(s).
    pub roots: Vec<CertificateDer<'static>>,
    /// Largest message accepted (the overlay's max-message-size).
    pub max_message: usize,
    /// Messages queued towards one link before `send` waits.
    pub queue: usize,
}

impl LinkConfig {
    /// A configuration with the defaults: 5 MB messages, 256 queued.
    #[must_use]
    pub fn new(overlay: &str, identity: NodeIdentity, roots: Vec<CertificateDer<'static>>) -> Self {
        Self {
            overlay: overlay.to_owned(),
            identity,
            roots,
            max_message: 5_000_000,
            queue: 256,
        }
    }

    fn client_config(&self) -> Result<Arc<ClientConfig>, LinkError> {
        let verifier = cert::server_verifier(&self.roots, &self.overlay)?;
        let cfg =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_client_auth_cert(self.identity.chain.clone(), self.identity.private_key())?;
        Ok(Arc::new(cfg))
    }

    fn server_config(&self) -> Result<Arc<ServerConfig>, LinkError> {
        let verifier = cert::client_verifier(&self.roots)?;
        let cfg =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_client_cert_verifier(verifier)
                .with_single_cert(self.identity.chain.clone(), self.identity.private_key())?;
        Ok(Arc::new(cfg))
    }
}

/// What a link delivers.
#[derive(Debug)]
pub enum LinkEvent {
    /// A RELOAD message from the peer.
    Message(Box<Message>),
    /// A DATA frame whose payload is not a valid RELOAD message (bad lengths, truncated
    /// contents): passed up as is, so the peer can answer Error_Invalid_Message
    /// (RFC 6940 section 6.3.3.1); the framing is intact, so the link stays up.
    Invalid(Vec<u8>),
    /// A DATA frame over the max-message-size, read past without being kept (module docs):
    /// the head of its message, so the peer can answer Error_Message_Too_Large (RFC 6940
    /// section 6.3.2); the link stays up.
    Oversize {
        /// The message length the frame announced.
        len: usize,
        /// The message's first bytes (forwarding header and message code, at most).
        head: Vec<u8>,
    },
    /// The link is down; no more events follow.
    Closed(String),
}

/// Frame counters of one link.
#[derive(Debug, Default)]
pub struct LinkStats {
    /// `data` frames sent.
    pub data_sent: AtomicU64,
    /// `ack` frames received that acknowledged one of ours.
    pub acks_received: AtomicU64,
    /// `data` frames received.
    pub data_received: AtomicU64,
    /// `ack` frames sent.
    pub acks_sent: AtomicU64,
    /// Bytes of frames sent and received.
    pub bytes_sent: AtomicU64,
    /// Bytes received.
    pub bytes_received: AtomicU64,
}

/// An open link (module docs).
#[derive(Debug)]
pub struct Link {
    /// The peer's Node-ID (from its certificate).
    pub peer: NodeId,
    /// Everything the peer's certificate says.
    pub peer_identity: PeerIdentity,
    /// The peer's socket address.
    pub remote: SocketAddr,
    tx: mpsc::Sender<Vec<u8>>,
    rx: mpsc::Receiver<LinkEvent>,
    stats: Arc<LinkStats>,
    task: JoinHandle<()>,
}

/// Accepts links.
pub struct LinkListener {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    cfg: Arc<LinkConfig>,
}

impl std::fmt::Debug for LinkListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkListener")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl LinkListener {
    /// Binds `addr` (port 0: any free port).
    pub async fn bind(cfg: Arc<LinkConfig>, addr: SocketAddr) -> Result<Self, LinkError> {
        let acceptor = TlsAcceptor::from(cfg.server_config()?);
        let listener = TcpListener::bind(addr).await?;
        Ok(Self {
            listener,
            acceptor,
            cfg,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, LinkError> {
        Ok(self.listener.local_addr()?)
    }

    /// The next link; a failed handshake is an error for that connection only (call again).
    pub async fn accept(&self) -> Result<Link, LinkError> {
        let (tcp, remote) = self.listener.accept().await?;
        tcp.set_nodelay(true)?;
        let tls = self.acceptor.accept(tcp).await?;
        let certs = tls.get_ref().1.peer_certificates().unwrap_or(&[]);
        let identity = peer_identity(certs, &self.cfg.overlay, None)?;
        Ok(Link::start(tls, remote, identity, &self.cfg))
    }
}

/// The Node-ID of the leaf in `certs`, checked against `expect`.
fn peer_identity(
    certs: &[CertificateDer<'_>],
    overlay: &str,
    expect: Option<NodeId>,
) -> Result<(NodeId, PeerIdentity), LinkError> {
    let leaf = certs
        .first()
        .ok_or_else(|| LinkError::Identity("no certificate".into()))?;
    let id = PeerIdentity::from_der(leaf)?;
    let node = id
        .node_in(overlay)
        .ok_or_else(|| LinkError::Identity(format!("no Node-ID for overlay {overlay}")))?;
    if let Some(want) = expect {
        if !id.has_node(&want, overlay) {
            return Err(LinkError::Identity(format!(
                "expected Node-ID {want}, certificate names {node}"
            )));
        }
        return Ok((want, id));
    }
    Ok((node, id))
}

impl Link {
    /// Opens a link to `addr`; with `expect`, the peer must prove that Node-ID.
    pub async fn connect(
        cfg: &Arc<LinkConfig>,
        addr: SocketAddr,
        expect: Option<NodeId>,
    ) -> Result<Link, LinkError> {
        let connector = TlsConnector::from(cfg.client_config()?);
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        // Peers are named by Node-ID; the TLS server name is a placeholder the verifier
        // does not use.
        let name = ServerName::try_from("reload.invalid")
            .map_err(|e| LinkError::Identity(e.to_string()))?;
        let tls = connector.connect(name, tcp).await?;
        let certs = tls.get_ref().1.peer_certificates().unwrap_or(&[]);
        let identity = peer_identity(certs, &cfg.overlay, expect)?;
        Ok(Link::start(tls, addr, identity, cfg))
    }

    fn start<S>(
        stream: S,
        remote: SocketAddr,
        (peer, peer_identity): (NodeId, PeerIdentity),
        cfg: &LinkConfig,
    ) -> Link
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, out_rx) = mpsc::channel(cfg.queue.max(1));
        let (ev_tx, rx) = mpsc::channel(cfg.queue.max(1));
        let stats = Arc::new(LinkStats::default());
        let task = tokio::spawn(run(
            stream,
            out_rx,
            ev_tx,
            Arc::clone(&stats),
            cfg.max_message,
        ));
        Link {
            peer,
            peer_identity,
            remote,
            tx,
            rx,
            stats,
            task,
        }
    }

    /// Queues a message (waits while the link's queue is full).
    pub async fn send(&self, msg: &Message) -> Result<(), LinkError> {
        let bytes = msg.to_bytes()?;
        self.send_bytes(bytes).await
    }

    /// Queues an encoded message.
    pub async fn send_bytes(&self, bytes: Vec<u8>) -> Result<(), LinkError> {
        self.tx.send(bytes).await.map_err(|_| LinkError::Closed)
    }

    /// A sender for this link's queue (for a node driver that shares it).
    #[must_use]
    pub fn sender(&self) -> mpsc::Sender<Vec<u8>> {
        self.tx.clone()
    }

    /// The next event; `None` once the link is gone and its events were read.
    pub async fn recv(&mut self) -> Option<LinkEvent> {
        self.rx.recv().await
    }

    /// Frame counters.
    #[must_use]
    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    /// Closes the link (TLS close_notify, then TCP close).
    pub async fn close(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}

/// Tracks received `data` sequence numbers for the `ack` bitmap.
#[derive(Debug, Default)]
struct AckWindow {
    highest: Option<u32>,
    /// Bit n: `highest - 1 - n` received.
    bits: u32,
}

impl AckWindow {
    /// Records `seq`; returns the ack to send for it.
    fn receive(&mut self, seq: u32) -> FramedMessage {
        match self.highest {
            None => {
                self.highest = Some(seq);
                self.bits = 0;
            }
            Some(h) if seq > h => {
                let shift = seq - h;
                self.bits = if shift >= 32 {
                    0
                } else {
                    (self.bits << shift) | (1 << (shift - 1))
                };
                self.highest = Some(seq);
            }
            Some(h) if seq < h => {
                let back = h - seq;
                if back <= 32 {
                    self.bits |= 1 << (back - 1);
                }
            }
            Some(_) => {}
        }
        // The bitmap is relative to the frame acknowledged.
        let h = self.highest.unwrap_or(seq);
        let received = if seq == h {
            self.bits
        } else {
            // Acknowledging an older frame: shift the window to it.
            let back = h - seq;
            if back >= 32 {
                0
            } else {
                self.bits >> back
            }
        };
        FramedMessage::Ack {
            ack_sequence: seq,
            received,
        }
    }
}

async fn write_frame<S: AsyncWrite + Unpin>(
    stream: &mut S,
    frame: &FramedMessage,
    stats: &LinkStats,
) -> Result<(), LinkError> {
    let bytes = frame.to_bytes()?;
    stream.write_all(&bytes).await?;
    stats
        .bytes_sent
        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
    Ok(())
}

/// The link task: one TLS stream, frames both ways.
async fn run<S>(
    stream: S,
    mut outgoing: mpsc::Receiver<Vec<u8>>,
    events: mpsc::Sender<LinkEvent>,
    stats: Arc<LinkStats>,
    max_message: usize,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut decoder = FrameDecoder::new(max_message);
    let mut window = AckWindow::default();
    let mut next_seq: u32 = 1;
    let mut buf = vec![0u8; 16 * 1024];
    let reason = loop {
        tokio::select! {
            out = outgoing.recv() => match out {
                Some(message) => {
                    let frame = FramedMessage::Data { sequence: next_seq, message };
                    next_seq = next_seq.wrapping_add(1);
                    if let Err(e) = write_frame(&mut wr, &frame, &stats).await {
                        break e.to_string();
                    }
                    stats.data_sent.fetch_add(1, Ordering::Relaxed);
                }
                None => break "closed by this side".to_owned(),
            },
            n = rd.read(&mut buf) => {
                let n = match n {
                    Ok(0) => break "closed by the peer".to_owned(),
                    Ok(n) => n,
                    Err(e) => break e.to_string(),
                };
                stats.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
                decoder.push(&buf[..n]);
                match drain(&mut decoder, &mut window, &mut wr, &events, &stats).await {
                    Ok(()) => {}
                    Err(e) => break e.to_string(),
                }
            }
        }
    };
    let _ = wr.shutdown().await;
    let _ = events.send(LinkEvent::Closed(reason)).await;
}

/// Handles every complete frame in `decoder`.
async fn drain<W: AsyncWrite + Unpin>(
    decoder: &mut FrameDecoder,
    window: &mut AckWindow,
    wr: &mut W,
    events: &mpsc::Sender<LinkEvent>,
    stats: &LinkStats,
) -> Result<(), LinkError> {
    while let Some(item) = decoder.next_item()? {
        let frame = match item {
            FrameItem::Frame(f) => f,
            FrameItem::Oversize(o) => {
                stats.data_received.fetch_add(1, Ordering::Relaxed);
                let ack = window.receive(o.sequence);
                write_frame(wr, &ack, stats).await?;
                stats.acks_sent.fetch_add(1, Ordering::Relaxed);
                let ev = LinkEvent::Oversize {
                    len: o.len,
                    head: o.head,
                };
                if events.send(ev).await.is_err() {
                    return Err(LinkError::Closed);
                }
                continue;
            }
        };
        match frame {
            FramedMessage::Data { sequence, message } => {
                stats.data_received.fetch_add(1, Ordering::Relaxed);
                let ev = match Message::decode(&message) {
                    Ok(msg) => LinkEvent::Message(Box::new(msg)),
                    Err(_) => LinkEvent::Invalid(message),
                };
                let ack = window.receive(sequence);
                write_frame(wr, &ack, stats).await?;
                stats.acks_sent.fetch_add(1, Ordering::Relaxed);
                if events.send(ev).await.is_err() {
                    return Err(LinkError::Closed);
                }
            }
            FramedMessage::Ack { .. } => {
                stats.acks_received.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(f: FramedMessage) -> (u32, u32) {
        match f {
            FramedMessage::Ack {
                ack_sequence,
                received,
            } => (ack_sequence, received),
            FramedMessage::Data { .. } => panic!("not an ack"),
        }
    }

    #[test]
    fn ack_bitmap_records_the_frames_before() {
        let mut w = AckWindow::default();
        assert_eq!(ack(w.receive(1)), (1, 0));
        assert_eq!(ack(w.receive(2)), (2, 0b1));
        assert_eq!(ack(w.receive(3)), (3, 0b11));
        // 4 lost (still in flight), 5 arrives: 3 and 2 and 1 seen, 4 not.
        assert_eq!(ack(w.receive(5)), (5, 0b1110));
        // 4 arrives late: acknowledged with the window as seen from 4.
        assert_eq!(ack(w.receive(4)), (4, 0b111));
        assert_eq!(ack(w.receive(6)), (6, 0b11111));
        // A jump of more than 32 clears the window.
        assert_eq!(ack(w.receive(100)), (100, 0));
    }
}
