//! IMS application server for IPTV: SIP stack, channel service, catalogue store, operator API.
//!
//! # Layout
//!
//! | module | role | I/O |
//! | --- | --- | --- |
//! | [`sip`] | message codec (strict RFC 3261 grammar, RFC 4475), stream framing, request validation, [`sip::transaction`] (RFC 3261 section 17, timers A-M), [`sip::dialog`], [`sip::sdp`] (RFC 3264 offer/answer, RFC 5760 attributes) | none (sans-IO) |
//! | [`driver`] | [`driver::sip::SipEndpoint`]: UDP/TCP/TLS sockets around the transaction layer, a queue of requests for the TU, client transactions for the TU's own requests | tokio |
//! | [`service`] | the TU: join, zap, leave, personal channels, the `iptv-channels` event package, registrar, admission; pure rules in submodules, the async [`service::Service`] ties them to the store, the relay and the endpoint; [`service::overlay`] makes the AS a RELOAD peer (shared channel directory, joins of other ASes' channels, SIP-REGISTRATION); [`service::app::App`] boots everything | tokio (in `Service`/`app`/`overlay` only) |
//! | [`store`] | channel catalogue and sessions over sqlx (SQLite by default, PostgreSQL by URL), embedded migrations | sqlx |
//! | [`diameter`] | RFC 6733 codec (header, AVPs, dictionary, framing, errors with Result-Code/Failed-AVP), typed CER/CEA/DWR/DWA/DPR/DPA, Sh UDR/UDA/PNR/PNA with the IPTV profile, Rf ACR/ACA; the sans-IO peer state machine (RFC 6733 5.6) with the RFC 3539 watchdog, the router (failover with the T flag, duplicate detection); `diameter::driver` runs them over TCP/TLS | none, tokio in `driver` |
//! | [`aaa`] | the embedded AAA (HSS/CDF): Diameter Sh UDR/PNR and Rf ACR served from the store, digest helpers for REGISTER | tokio, sqlx, axum |
//! | [`api`] | operator HTTP API (axum): `/api/channels`, `/api/sessions`, `/api/channels/{id}/quality`, `/api/polls`, `/metrics`, `/healthz` | axum |
//! | [`config`] | TOML configuration with defaults, flags and `AS_...` environment overrides | files |
//! | [`error`] | the service/API error enum | none |
//!
//! # Run loop
//!
//! ```text
//!  UE ──SIP──► driver::transport ──Message──► driver::sip loop ──► TransactionLayer
//!                                                   │  (100 Trying, retransmits, ACK/CANCEL)
//!                      IncomingRequest (mpsc) ◄─────┘
//!                              │
//!                              ▼
//!   service::app TU loop ── one task per request ──► Service::handle
//!        rules::precheck (483/405/420) → validate_request (415/416/406)
//!        INVITE  → join (store lookup, SDP negotiate, RelayHandle::add_viewer, 200 + SDP)
//!                  or personal channel (create_ingest, recvonly answer)
//!        re-INVITE → refresh or zap (RelayHandle::switch_channel, same SDP, new Contact)
//!        BYE     → remove_viewer / channel teardown; SUBSCRIBE → NOTIFY (via SipClient)
//!        REGISTER → registrar core; OPTIONS → 200
//!   housekeeping tick (1 s) → registrar/subscription expiry
//!   overlay ([overlay] on): list change → store own directory entry; every poll_ms
//!     fetch "iptv:directory" → merge → NOTIFY; remote join → RelayHandle::set_upstream
//!   api (axum) ──────────────► Service::{create_channel, list_channels, delete_channel, ...}
//! ```
//!
//! The sans-IO cores (`sip::*`, `service::{rules, registrar, channel_list, personal,
//! overload}`) take `now` as an argument; the drivers (`driver`, `service::Service`) are the
//! only code that reads the clock. The zap design (re-INVITE naming the new channel) is
//! documented in [`service`].
pub mod aaa;
pub mod api;
pub mod config;
pub mod diameter;
pub mod driver;
pub mod error;
pub mod service;
pub mod sip;
pub mod store;
