//! RELOAD (RFC 6940) overlay for the IPTV network.
//!
//! Every AS instance and every relay is a peer of one RELOAD overlay (CHORD-RELOAD) that
//! holds who is where: channel -> relays, address-of-record -> contact (SIP-REGISTRATION,
//! RFC 7904) and the channel directory.
//!
//! Layout:
//! - [`wire`]: the RELOAD wire format (forwarding header, message contents, security block,
//!   typed bodies, stored data, link framing). Sans-IO, strict, fuzzed (`fuzz/`).
//! - [`topology`]: CHORD-RELOAD (RFC 6940 section 9): 128-bit ring arithmetic, the routing
//!   table (successor/predecessor lists, 128 fingers, next hop with alternates).
//! - [`storage`]: RFC 6940 section 7 storage engine: single/array/dictionary models,
//!   lifetimes, generation counters, access policies, the kind registry (SIP-REGISTRATION
//!   and the project's channel kinds).
//! - [`node`]: the sans-IO peer core: `handle(now, from, frame)` / `handle_timeout(now)` in,
//!   `poll_transmit` / `poll_timeout` / `poll_event` out. Forwarding with via lists and TTL,
//!   per-hop ACKs and alternate next hops, Join / Update / Leave, finger probes, reactive
//!   recovery, 3 replicas on successors (4 copies), handover on join and leave, Attach
//!   without ICE (host candidates routed through the overlay), Stat and Find (RFC 6940
//!   sections 7.4.3, 7.4.4), Probe (section 6.4.2.5), RouteQuery (6.4.2.4),
//!   ConfigUpdate of the configuration sequence (section 6.5.4). Forwarding is type-agnostic (section 6.1): a message of any
//!   code, unknown ones included, is forwarded by its destination list; only the
//!   destination interprets it (Error_Invalid_Message for a request type it lacks).
//! - [`cert`]: certificates carrying Node-IDs as `reload://NODEID@OVERLAY/` URIs (RFC 6940
//!   section 11.3), the testbed's dev CA, and the rustls verifiers of overlay links.
//! - [`link`]: TLS links (tokio + rustls) with the RFC 6940 framing header: data frames with
//!   sequence numbers, acks with the received bitmap, the peer's Node-ID checked against its
//!   certificate.
//! - [`enroll`]: the enrollment service (HTTPS POST of a PKCS#10 CSR, certificate with a
//!   server-chosen Node-ID back) and its client; it also serves the configuration document.
//! - [`config`]: the RFC 6940 section 11.1 overlay configuration document (XML), written and
//!   parsed strictly.
//! - [`driver`]: the tokio driver of a real peer: TLS links ([`link`]), timers and the
//!   async [`driver::OverlayHandle`] (`store` / `fetch` / `stat` / `find`) around [`driver::peer::Peer`], the
//!   sans-IO message layer (the node core behind the RFC 6940 security checks: lengths,
//!   via-list loops, signatures by certificates of the overlay CA naming the sender,
//!   per-value signatures; RELOAD errors for refused requests) with the driver's address
//!   book; a peer without a link or address to a Node-ID Attaches to it and opens a TLS
//!   link to the host candidate of the answer; `p2psip-node run` serves it.
//! - [`sim`]: deterministic simulator (seeded RNG, virtual clock, per-link latency and loss)
//!   running thousands of real node cores; `p2psip-node sim` prints its JSON report.
//!
//! Run loop of a peer: the driver feeds each received frame to [`node::Node::handle`], sends
//! everything [`node::Node::poll_transmit`] returns, sleeps until
//! [`node::Node::poll_timeout`] and then calls [`node::Node::handle_timeout`]; the
//! application reads [`node::Node::poll_event`].

pub mod cert;
pub mod config;
pub mod driver;
pub mod enroll;
pub mod link;
pub mod node;
pub mod sim;
pub mod storage;
pub mod topology;
pub mod wire;
