//! The embedded AAA: the HSS (3GPP Sh) and CDF (Rf) of a standalone test bed, served from
//! the SQL store by our own Diameter stack (`as-server aaa --config
//! as-server/examples/aaa.toml`, or in-process with [`Aaa::start`] for the lab).
//!
//! # Layout
//!
//! | module | what | I/O |
//! | --- | --- | --- |
//! | [`handler`] | classify a request (UDR, ACR, 3001/3007, 5005...) and build the answers (UDA with the IPTV profile, ACA, PNR) | none |
//! | [`digest`] | HA1, RFC 2617/7616 MD5 digest verification, `Authorization` parsing, HMAC nonces (for the AS's REGISTER authentication) | none |
//! | [`config`] | `aaa.toml` schema, flags and `AS_AAA_...` variables | files |
//! | `server` | [`Aaa::start`] / [`AaaHandle`]: the Diameter node (driver with a listener), the request loop, PNR pushes | tokio |
//! | `api` | operator HTTP API: subscribers, `POST /api/subscribers/{id}/profile` (sends PNR), CDRs, `/metrics` | axum |
//!
//! The tables are in [`crate::store`] (`store/aaa.rs`, migration `20250201000001_aaa.sql`):
//! subscribers (HA1 only), profiles (versioned), CDRs keyed by (Session-Id,
//! Accounting-Record-Number) so a retransmitted ACR is stored once.
//!
//! # Peers
//!
//! The AAA only listens (the AS connects, CER/CEA, DWR/DWA per RFC 3539). It advertises
//! Sh (Vendor-Specific-Application-Id 10415 / 16777217) and Rf (Acct-Application-Id 3).
//! Any Origin-Host may connect unless `diameter.accept_any_peer = false`, when only
//! `diameter.peers` may. A profile change goes as a PNR to every open peer
//! (Destination-Host = the peer's Origin-Host, Destination-Realm = the realm it used in its
//! requests); there is no SNR subscription state (TS 29.328 would notify only subscribers).

pub mod config;
pub mod digest;
pub mod handler;

mod api;
mod server;

pub use config::{AaaCli, AaaConfig};
pub use server::{Aaa, AaaError, AaaHandle, AaaStats, ProfileChange, PushResult};
