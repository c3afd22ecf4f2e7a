//! RTP media relay: channel ingest, unicast fan-out with per-viewer rewrite, fast channel change,
//! RTCP, and the control API the application server drives it with.
//!
//! # Layout
//!
//! | module | role | I/O |
//! | --- | --- | --- |
//! | [`rtp`] | RTP header parse (over `rtp-types`), in-place header rewrite, RTP/RTCP demux | none |
//! | [`rtcp`] | SR + SDES writing, compound RR/SR parsing (over `rtcp-types`), NTP time | none |
//! | [`fcc`] | key-frame detection (H.264 RFC 6184, MPEG-TS RAI) and the bounded GOP cache | none |
//! | [`relay`] | the sans-IO core: channels, viewers, fan-out, bursts, reports, liveness | none |
//! | [`control`] | ids, requests, stats, errors, [`RelayConfig`], [`RelayHandle`], [`RelayEvent`] | mpsc/oneshot/broadcast |
//! | [`driver`] | tokio UDP sockets and the one task loop; [`Relay::spawn`] | tokio |
//! | [`h264`], [`testpattern`] | H.264 packetiser and the built-in test-pattern source | none |
//! | [`rsi`] | RFC 5760 RSI codec (PT 209), every sub-report block, open block types | none |
//! | [`feedback`] | RFC 3550 A.7 interval, the sans-IO feedback target (RR/votes/child RSI in, RSI + tally out), the live per-channel FTs of the relay and summaries up the relay tree, the pure FT node (`media-relay ft`), the FT manager (GNP placement, failover), `ha-sim`, `gnp-sim` | none |
//! | [`prometheus`] | one Prometheus text writer for the relay and the AS | none |
//! | [`tree`] | the relay tree: pull one copy of a channel from an upstream relay while it has viewers here, re-attach to another candidate when it goes silent | none (its control calls run in [`driver`] tasks) |
//! | [`splice`] | personalised channels: several sources in turn, switched at key frames, one continuous SSRC/sequence/timestamp line | none |
//! | [`personalized`] | personalised channels in the core: schedules of source channels, one [`splice::Splicer`] each, fed by the sources' packets, output ingested as a channel | none |
//!
//! # Run loop
//!
//! ```text
//!  producer ──RTP──► ingest socket ─┐                       ┌─► output RTP socket ──► viewers
//!  test pattern / feed (mpsc) ──────┼─► Relay::ingest ──► GOP cache + fan-out ─► poll_transmit
//!  AS ── RelayHandle (mpsc) ────────┤   Relay::add_viewer / switch_channel (burst from cache)
//!  viewers ──RTCP RR──► RTCP socket ┼─► Relay::handle_viewer_rtcp       ┌─► output RTCP (SR)
//!  timer (poll_timeout) ────────────┴─► Relay::handle_timeout(now, wall)┘
//!  Relay::poll_event (viewer dropped) ──► broadcast ──► RelayHandle::events() ──► AS
//! ```
//!
//! The driver task owns every socket and is the only place that reads the clock. After each
//! turn (an input plus whatever else was already waiting) it sends the core's whole queue in
//! place ([`relay::Relay::transmits`]): `sendmmsg` with each viewer's 12-byte header and the
//! shared packet body gathered, UDP GSO for runs to one viewer ([`driver::batch`]), nothing
//! copied or allocated per packet. Sends never wait: a full socket buffer drops those datagrams
//! and thins the viewers concerned to the next key frame, and a send error only concerns the
//! viewer it was for.

pub mod control;
pub mod driver;
pub mod fcc;
pub mod feedback;
pub mod h264;
pub mod personalized;
pub mod prometheus;
pub mod relay;
pub mod rsi;
pub mod rtcp;
pub mod rtp;
pub mod splice;
pub mod testpattern;
pub mod tree;

pub use control::{
    AddViewer, ChannelId, ChannelSpec, Error, IngestInfo, RelayConfig, RelayEvent, RelayHandle,
    RelayStats, ViewerId, ViewerInfo,
};
pub use relay::Relay;
pub use tree::Upstream;
