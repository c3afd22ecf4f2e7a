//! Socket tasks of the SIP endpoint (RFC 3261 section 18): UDP receive loops, TCP/TLS accept
//! loops, one task per stream connection (inbound or outbound).
//!
//! Every task turns bytes into parsed [`Message`]s and sends them to the endpoint loop as
//! `NetEvent`s. Bad input never stops a task: an unparsable request that can be answered
//! gets a stateless 400 (the codec's reason phrase) from the task that read it; anything else
//! is dropped with a log line. A stream that cannot be framed any more (garbage where a
//! message should start) is answered if possible and closed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::sip::transaction::{response_destination, via, TransactionId, Transport};
use crate::sip::{Frame, Message, ParseError, StreamFramer};

/// Largest UDP datagram read.
const MAX_DATAGRAM: usize = 65_535;
/// Queue depth of one connection's writer.
pub(crate) const CONN_QUEUE: usize = 256;
/// A stream connection with no traffic either way for this long is closed (keep-alive
/// pings, RFC 5626, count as traffic). Long enough for NATed UEs that only listen.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(900);
/// Time allowed for a TCP connect or a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes queued for a stream connection, with the transaction to blame on failure.
pub(crate) type Outgoing = (Bytes, Option<TransactionId>);

/// What the socket tasks tell the endpoint loop.
#[derive(Debug)]
pub(crate) enum NetEvent {
    /// A parsed message.
    Message {
        transport: Transport,
        source: SocketAddr,
        message: Box<Message>,
    },
    /// A stream connection is up (inbound): responses to `peer` go through `writer`.
    Connected {
        transport: Transport,
        peer: SocketAddr,
        conn: u64,
        writer: mpsc::Sender<Outgoing>,
    },
    /// A stream connection ended.
    Closed {
        transport: Transport,
        peer: SocketAddr,
        conn: u64,
    },
    /// Sending for a transaction failed.
    SendFailed { transaction: TransactionId },
}

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// A fresh connection id.
pub(crate) fn next_conn_id() -> u64 {
    NEXT_CONN.fetch_add(1, Ordering::Relaxed)
}

/// The stateless error response for a refused request and where to send it
/// (RFC 3261 8.2.6, 18.2.2, RFC 3581), or `None` when it cannot be answered.
fn error_reply(
    err: &ParseError,
    source: SocketAddr,
    transport: Transport,
) -> Option<(Bytes, SocketAddr)> {
    let response = err.error_response()?;
    let mut partial = err.partial_request()?.clone();
    let top = via::stamp_received(&mut partial, source)?;
    let dest = response_destination(&top, source, transport);
    // Copy the stamped Via (received/rport) into the response.
    let mut response = response;
    if let Some(v) = partial.headers.get(&crate::sip::HeaderName::VIA) {
        response
            .headers
            .set_first(&crate::sip::HeaderName::VIA, v.to_owned());
    }
    Some((Bytes::from(response.to_bytes()), dest))
}

fn log_refused(err: &ParseError, source: SocketAddr, transport: Transport) {
    tracing::info!(%source, %transport, error = %err, "unparsable message dropped (cannot be answered)");
}

/// Receives datagrams on `socket` until the endpoint goes away.
pub(crate) async fn udp_recv_loop(socket: Arc<UdpSocket>, net: mpsc::Sender<NetEvent>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, source) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP port unreachable and friends surface here; keep serving.
                tracing::debug!(error = %e, "UDP receive error");
                continue;
            }
        };
        let data = &buf[..n];
        // Keep-alives (RFC 5626 4.4.1 uses STUN, many UAs send CRLF): ignore blank datagrams.
        if data
            .iter()
            .all(|b| matches!(b, b'\r' | b'\n' | b' ' | b'\t' | 0))
        {
            continue;
        }
        match Message::parse(data) {
            Ok(message) => {
                let ev = NetEvent::Message {
                    transport: Transport::Udp,
                    source,
                    message: Box::new(message),
                };
                if net.send(ev).await.is_err() {
                    return;
                }
            }
            Err(err) => match error_reply(&err, source, Transport::Udp) {
                Some((bytes, dest)) => {
                    tracing::info!(%source, error = %err, "stateless error response to unparsable request");
                    if let Err(e) = socket.send_to(&bytes, dest).await {
                        tracing::debug!(error = %e, "stateless response not sent");
                    }
                }
                None => log_refused(&err, source, Transport::Udp),
            },
        }
    }
}

/// TLS material of a listener or of outbound connections.
#[derive(Clone)]
pub(crate) enum StreamKind {
    Tcp,
    Tls {
        acceptor: Option<TlsAcceptor>,
        connector: Option<TlsConnector>,
    },
}

impl std::fmt::Debug for StreamKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StreamKind::Tcp => "Tcp",
            StreamKind::Tls { .. } => "Tls",
        })
    }
}

impl StreamKind {
    fn transport(&self) -> Transport {
        match self {
            StreamKind::Tcp => Transport::Tcp,
            StreamKind::Tls { .. } => Transport::Tls,
        }
    }
}

/// Accepts connections on `listener` until the endpoint goes away; one task per connection.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    kind: StreamKind,
    net: mpsc::Sender<NetEvent>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let kind = kind.clone();
                let net = net.clone();
                conns.spawn(async move {
                    let conn = next_conn_id();
                    let (tx, rx) = mpsc::channel(CONN_QUEUE);
                    match kind {
                        StreamKind::Tcp => {
                            if register(&net, Transport::Tcp, peer, conn, tx).await {
                                run_stream(stream, Transport::Tcp, peer, conn, net, rx).await;
                            }
                        }
                        StreamKind::Tls { acceptor: Some(acceptor), .. } => {
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => {
                                    if register(&net, Transport::Tls, peer, conn, tx).await {
                                        run_stream(tls, Transport::Tls, peer, conn, net, rx).await;
                                    }
                                }
                                Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake failed"),
                                Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                            }
                        }
                        StreamKind::Tls { acceptor: None, .. } => {}
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            () = net.closed() => return,
        }
    }
}

async fn register(
    net: &mpsc::Sender<NetEvent>,
    transport: Transport,
    peer: SocketAddr,
    conn: u64,
    writer: mpsc::Sender<Outgoing>,
) -> bool {
    net.send(NetEvent::Connected {
        transport,
        peer,
        conn,
        writer,
    })
    .await
    .is_ok()
}

/// Opens an outbound connection to `peer` and runs it; what was queued before it was up is
/// sent first. On failure every queued transaction is reported.
pub(crate) async fn connect_and_run(
    kind: StreamKind,
    peer: SocketAddr,
    conn: u64,
    net: mpsc::Sender<NetEvent>,
    rx: mpsc::Receiver<Outgoing>,
) {
    let transport = kind.transport();
    let tcp = match tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(peer)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::info!(%peer, %transport, error = %e, "connect failed");
            None
        }
        Err(_) => {
            tracing::info!(%peer, %transport, "connect timed out");
            None
        }
    };
    let Some(tcp) = tcp else {
        return close_conn(rx, &net, transport, peer, conn).await;
    };
    let _ = tcp.set_nodelay(true);
    match kind {
        StreamKind::Tcp => run_stream(tcp, transport, peer, conn, net, rx).await,
        StreamKind::Tls {
            connector: Some(connector),
            ..
        } => {
            let name = rustls::pki_types::ServerName::IpAddress(peer.ip().into());
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, tcp)).await {
                Ok(Ok(tls)) => run_stream(tls, transport, peer, conn, net, rx).await,
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "TLS client handshake failed");
                    close_conn(rx, &net, transport, peer, conn).await;
                }
                Err(_) => {
                    tracing::info!(%peer, "TLS client handshake timed out");
                    close_conn(rx, &net, transport, peer, conn).await;
                }
            }
        }
        StreamKind::Tls {
            connector: None, ..
        } => close_conn(rx, &net, transport, peer, conn).await,
    }
}

/// Reads, frames and forwards messages from one stream connection; writes what the endpoint
/// queued for it. Ends when the peer closes, the stream turns to garbage, or the endpoint
/// goes away.
pub(crate) async fn run_stream<S>(
    stream: S,
    transport: Transport,
    peer: SocketAddr,
    conn: u64,
    net: mpsc::Sender<NetEvent>,
    mut rx: mpsc::Receiver<Outgoing>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut framer = StreamFramer::new();
    let mut buf = vec![0u8; 16 * 1024];
    let idle = tokio::time::sleep(IDLE_TIMEOUT);
    tokio::pin!(idle);
    'conn: loop {
        tokio::select! {
            () = &mut idle => {
                tracing::debug!(%peer, %transport, "idle connection closed");
                break 'conn;
            }
            read = rd.read(&mut buf) => {
                idle.as_mut().reset(tokio::time::Instant::from_std(super::now() + IDLE_TIMEOUT));
                let n = match read {
                    Ok(0) => break 'conn,
                    Ok(n) => n,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "stream read error");
                        break 'conn;
                    }
                };
                framer.push(&buf[..n]);
                loop {
                    match framer.next_frame() {
                        Ok(None) => break,
                        Ok(Some(Frame::Message(message))) => {
                            let ev = NetEvent::Message { transport, source: peer, message: Box::new(message) };
                            if net.send(ev).await.is_err() {
                                break 'conn;
                            }
                        }
                        Ok(Some(Frame::Invalid(err))) => match error_reply(&err, peer, transport) {
                            Some((bytes, _)) => {
                                tracing::info!(%peer, error = %err, "stateless error response to unparsable request");
                                if wr.write_all(&bytes).await.is_err() {
                                    break 'conn;
                                }
                            }
                            None => log_refused(&err, peer, transport),
                        },
                        Ok(Some(Frame::Ping)) => {
                            //= RFC 5626 3.5.1: answer a CRLFCRLF ping with a CRLF pong.
                            if wr.write_all(b"\r\n").await.is_err() {
                                break 'conn;
                            }
                        }
                        Ok(Some(Frame::Pong)) => {}
                        Err(err) => {
                            // The stream cannot be framed any more: answer if we can, close.
                            if let Some((bytes, _)) = error_reply(&err, peer, transport) {
                                let _ = wr.write_all(&bytes).await;
                            }
                            tracing::info!(%peer, %transport, error = %err, "unframable stream closed");
                            break 'conn;
                        }
                    }
                }
            }
            out = rx.recv() => match out {
                Some((bytes, id)) => {
                    idle.as_mut().reset(tokio::time::Instant::from_std(super::now() + IDLE_TIMEOUT));
                    if let Err(e) = wr.write_all(&bytes).await {
                        tracing::debug!(%peer, error = %e, "stream write error");
                        if let Some(transaction) = id {
                            let _ = net.send(NetEvent::SendFailed { transaction }).await;
                        }
                        break 'conn;
                    }
                }
                None => break 'conn,
            },
        }
    }
    let _ = wr.shutdown().await;
    close_conn(rx, &net, transport, peer, conn).await;
}

/// A connection ends: whatever was still queued on it cannot go out (each queued request's
/// transaction gets a transport error), then the loop learns it is closed.
async fn close_conn(
    mut rx: mpsc::Receiver<Outgoing>,
    net: &mpsc::Sender<NetEvent>,
    transport: Transport,
    peer: SocketAddr,
    conn: u64,
) {
    rx.close();
    while let Some((_, id)) = rx.recv().await {
        if let Some(transaction) = id {
            let _ = net.send(NetEvent::SendFailed { transaction }).await;
        }
    }
    let _ = net
        .send(NetEvent::Closed {
            transport,
            peer,
            conn,
        })
        .await;
}
