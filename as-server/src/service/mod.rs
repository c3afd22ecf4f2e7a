//! The IPTV channel service: the SIP transaction user (TU) of the AS.
//!
//! The SIP endpoint (`driver::sip`) hands every request that needs the application to
//! [`Service`]; the service decides (pure rules in [`rules`], [`registrar`], [`channel_list`],
//! [`personal`], [`overload`]), talks to the channel store (sqlx) and to its media relays
//! ([`relays::RelayPool`] of `media_relay::control::RelayHandle`s: placement and health),
//! and answers. It sends NOTIFY, BYE and re-INVITE (with the ACK of its 2xx) itself through
//! the endpoint's client transactions.
//!
//! # Flows
//!
//! * **Join**: `INVITE sip:<channel>@<as-host>` with an SDP offer (RFC 3264). Unknown channel:
//!   `404`; body missing or malformed SDP: `400` with the reason; no common codec: `488` with a
//!   `Warning` (304/305, RFC 3261 section 20.43); too many sessions or relay overloaded: `503`
//!   with `Retry-After`. Otherwise the relay adds a viewer (its RTP/RTCP go to the offer's
//!   address), the answer is `sendonly` with the relay's address and ports, `a=rtcp` and
//!   `a=rtcp-unicast:rsi` naming the relay as feedback target (RFC 5760), the `200 OK` has
//!   `Contact: <sip:<channel>@<as-host:port>>`, and a session row is written. ACK confirms.
//! * **Zap** (channel change inside the dialog, see below).
//! * **Leave**: `BYE` → relay `remove_viewer` at once, session ended in the store, `200`.
//! * **Set-up that does not complete**: a `CANCEL` the endpoint matched (it answered the
//!   INVITE `487`) undoes the join wherever it stands (RFC 3261 section 9.2); a `2xx` never
//!   ACKed (the endpoint's `AckTimeout` event) ends the session with a BYE (section
//!   13.3.1.4). A viewer the relay drops by itself (vanished, RTCP BYE: its
//!   `RelayHandle::events()`) ends the session with a BYE.
//!
//! Sessions and subscriptions are [`crate::sip::dialog`] dialogs ([`sipmsg::PeerDialog`]):
//! in-dialog requests are checked there (CSeq order → `500`, unknown dialog → `481`) and the
//! AS's BYE and NOTIFY are built by them. Every request that needs an answer gets a final
//! response from the service (methods it does not implement: `405`); ACK and CANCEL get none.
//! * **Relays**: `[relay] count` in-process relays. A join goes to the least-loaded live
//!   relay that carries the channel (test-pattern channels are on every relay, a personal or
//!   producer channel's ingest on one); the session row names the relay (`relay-0`, ...) and
//!   the answer carries `a=ssrc:<ssrc> cname:<relay>` (RFC 5576). A relay that stops
//!   answering its health probes is declared dead and its sessions are moved: `add_viewer`
//!   on another relay, then a re-INVITE from the AS whose SDP offer names it (see
//!   `tu/failover.rs`); a UE's re-INVITE meanwhile gets `491`. No relay left, or the
//!   re-INVITE refused: BYE with a `Reason` header.
//! * **Personal channel**: see [`personal`].
//! * **Personalised channel** (a schedule of channels or a category rule, created by
//!   `MESSAGE sip:new-channel@<as-host>` with a JSON body or over HTTP): see [`personalized`].
//! * **Channel list**: `SUBSCRIBE` with `Event: iptv-channels`, see [`channel_list`] for the
//!   event package.
//! * **REGISTER**: standalone registrar, see [`registrar`].
//! * **Overlay** (`[overlay] enabled`): the AS is a RELOAD peer; its channels are listed
//!   and joinable at every other AS of the overlay, REGISTER bindings are stored there;
//!   see [`overlay`].
//! * **AAA** (`[aaa] peer` set): joins and zaps authorised by the subscriber's Sh profile
//!   (403 with a reason, or the fail-open/fail-closed policy), sessions accounted over Rf
//!   through a durable outbox, PNR revoking channels with a BYE, REGISTER digest: see [`aaa`].
//! * **OPTIONS**: `200` with `Allow`, `Accept`, `Supported`.
//!
//! # Zap design: re-INVITE naming the new channel
//!
//! A channel change inside a session never allocates a new relay path. The AS's Contact in
//! the `200 OK` (and in every later 2xx of the dialog) is `sip:<current-channel>@<as-host:port>`,
//! so the UE's remote target always names the channel it watches. To zap, the UE sends a
//! re-INVITE **in the same dialog** (same Call-ID and tags, next CSeq) whose Request-URI user
//! part is the new channel, `sip:<new-channel>@<as-host:port>`; the SDP offer may be the same
//! as before (it is re-negotiated, which also lets the UE change its own ports):
//!
//! * Request-URI user = current channel (a plain re-INVITE to the Contact): session refresh,
//!   `200 OK` with the same answer.
//! * Request-URI user = another existing channel: the AS calls the relay's
//!   `switch_channel(viewer, new_channel)`: the same viewer path (same relay ports, same SSRC,
//!   sequence numbers and timestamps continuing) gets the new source, starting with a burst
//!   from the new channel's last key frame. The AS answers `200 OK` with the same SDP (the
//!   `o=` version is bumped only if the answer's content changed) and
//!   `Contact: <sip:<new-channel>@...>`, so the next zap or refresh is relative to it; the
//!   session row's channel is updated.
//! * Unknown channel: `404 Not Found`; the session stays on the old channel (RFC 3261
//!   section 14.2: a failed re-INVITE leaves the session unchanged).
//! * A channel the viewer's relay does not carry (with several relays, a personal channel
//!   lives on one): with an SDP offer in the re-INVITE, the viewer gets a new path on a
//!   relay that carries it, the old one is removed, and the answer names the new relay
//!   (`o=` version + 1); without an offer, `488` (the AS does not send an offer in a 2xx).
//!
//! The plain way, BYE then a new INVITE to the other channel, keeps working (it allocates a new
//! viewer path). A relay-direct zap within an authorised package (ETSI TS 183 063 style) is
//! not offered by this version.

pub mod aaa;
pub mod app;
pub mod catalogue;
pub mod channel_list;
pub mod endpoint;
pub mod feedback;
pub mod metrics;
pub mod overlay;
pub mod overload;
pub mod personal;
pub mod personalized;
pub mod registrar;
pub mod relays;
pub mod rules;
pub mod sipmsg;
mod tu;

pub use tu::{NewChannel, Service, ServiceConfig, SessionView};

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use crate::sip::transaction::Transport;
use crate::sip::{Request, Response};

/// A request handed to the service by the SIP endpoint, with the way to answer it.
/// The endpoint adapter (in `app`) fills it from the endpoint's incoming request.
pub struct TuRequest {
    request: Request,
    source: SocketAddr,
    transport: Transport,
    respond: Box<dyn FnOnce(Response) + Send + Sync>,
}

impl fmt::Debug for TuRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TuRequest")
            .field("method", &self.request.method)
            .field("source", &self.source)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl TuRequest {
    /// A request from `source` over `transport`; `respond` sends the final response.
    pub fn new(
        request: Request,
        source: SocketAddr,
        transport: Transport,
        respond: impl FnOnce(Response) + Send + Sync + 'static,
    ) -> Self {
        Self {
            request,
            source,
            transport,
            respond: Box::new(respond),
        }
    }

    /// The request.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// Where it came from.
    pub fn source(&self) -> SocketAddr {
        self.source
    }

    /// The transport it came on.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Sends the response (consumes the request).
    pub fn respond(self, response: Response) {
        (self.respond)(response);
    }
}

/// Future returned by a [`SipClient`] send.
pub type SendFuture = Pin<Box<dyn Future<Output = Result<Response, String>> + Send>>;

/// A transaction-less send (the ACK of a 2xx, RFC 3261 13.2.2.4).
type StatelessSend = Arc<dyn Fn(Request, SocketAddr, Transport) + Send + Sync>;

/// How the service sends its own requests (NOTIFY, BYE, re-INVITE): a client transaction
/// of the endpoint, resolving to the final response (or a transport/timeout error); and the
/// ACK of a 2xx to its re-INVITE, sent outside any transaction.
#[derive(Clone)]
pub struct SipClient {
    send: Arc<dyn Fn(Request, SocketAddr, Transport) -> SendFuture + Send + Sync>,
    stateless: Option<StatelessSend>,
}

impl fmt::Debug for SipClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SipClient")
    }
}

impl SipClient {
    /// A client from a send function.
    pub fn new(
        send: impl Fn(Request, SocketAddr, Transport) -> SendFuture + Send + Sync + 'static,
    ) -> Self {
        Self {
            send: Arc::new(send),
            stateless: None,
        }
    }

    /// The same client with a way to send the ACK of a 2xx (without it, ACKs are only
    /// logged: enough for tests that answer with a recording client).
    #[must_use]
    pub fn with_stateless(
        mut self,
        send: impl Fn(Request, SocketAddr, Transport) + Send + Sync + 'static,
    ) -> Self {
        self.stateless = Some(Arc::new(send));
        self
    }

    /// Sends `request` outside any transaction (the ACK of a 2xx).
    pub fn send_stateless(&self, request: Request, dest: SocketAddr, transport: Transport) {
        match &self.stateless {
            Some(f) => f(request, dest, transport),
            None => {
                tracing::debug!(method = %request.method.as_str(), "no stateless sender: not sent")
            }
        }
    }

    /// Sends `request` to `dest` over `transport`; resolves to the final response.
    pub async fn send_request(
        &self,
        request: Request,
        dest: SocketAddr,
        transport: Transport,
    ) -> Result<Response, String> {
        (self.send)(request, dest, transport).await
    }
}
