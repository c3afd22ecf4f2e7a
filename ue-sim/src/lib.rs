//! `ue-sim`: a UE simulator for load tests of the IPTV application server.
//!
//! # Layout
//!
//! | module | role | I/O |
//! | --- | --- | --- |
//! | [`ue`] | the sans-IO UE: REGISTER, SUBSCRIBE `iptv-channels`, join, zap (re-INVITE naming the channel, or BYE + INVITE), BYE, RTCP ([`rtcp`]: reports at the A.7 interval, BYE on leave, votes repeated until the poll closes); answers the AS's relay-move re-INVITE (new relay, new SSRC); producer mode (creates a personal channel, sends the shipped H.264 clip in real time); media meter (first packet, first key frame, loss, jitter, gaps that span relay moves) | none |
//! | [`rtcp`] | a viewer's RTCP (RFC 3550): A.7 intervals (group from the FT's RSI, else a configured minimum), RR with LSR/DLSR + SDES CNAME, APP `VOTE`, BYE | none |
//! | [`scenario`] | TOML scenarios: population, arrival rate, Zipf channels, dwell, zap behaviour, producers and personal-channel viewers, faults (`stop_relay` at t), relays of the lab, the lab's AAA (`[aaa]`: unknown and restricted shares, stream limit), RTCP (`[rtcp]`), votes (`[votes]`), the overlay lab (`[overlay]`), thresholds | files |
//! | [`stats`] | [`stats::RunStats`], what a run measured; nearest-rank [`stats::percentile`] | none |
//! | [`run`] | the driver: every UE of a run over a few shared UDP sockets in one loop | tokio |
//! | [`report`] | `report.json` (summary keys such as `joins.ok`, `zap_ms.p99`, plus the raw stats) and a self-contained `report.html` with SVG plots; threshold checks | files |
//! | [`progress`] | live progress: a bar on a terminal, a periodic line otherwise | stderr |
//! | [`api`] | a minimal HTTP client of the AS's poll and quality API (`POST /api/polls`, `GET /api/polls/{id}`, `GET /api/channels/{id}/quality`) | tokio |
//! | [`lab`] | `ue-sim lab`: boots the AS and its relays (`relays = N`) in-process on loopback with embedded defaults, and with `[aaa] enabled` the embedded Diameter AAA (a subscriber per UE; the AS fail-closed against it), runs a scenario, injects its faults (`App::stop_relay`), reads the AAA figures (authorised, refused, START+STOP accounted sessions), declares the `[votes]` polls and reads their tallies; with `[overlay]`, N plain RELOAD peers and M ASes on one overlay and cross-AS joins; writes the report, tears down | tokio |
//!
//! # Run loop
//!
//! ```text
//!  reader task per socket (few) ──batches (from, bytes, t)──► run loop (one task)
//!     SIP: Call-ID "ue<i>-..." ─► Ue[i].handle_sip      timers heap ─► Ue[i].handle_timeout
//!     RTP: (socket, SSRC) ─► Ue[i].handle_media          actions heap ─► join / zap / leave
//!     RTCP SR / RSI: (socket, SSRC) ─► Ue[i].handle_media  votes heap ─► Ue[i].vote (APP VOTE)
//!          unknown SSRC ─► kept 2 s, replayed when a UE learns it (a=ssrc)   faults ─► injector
//!  Ue[i].poll_transmit ─► try_send_to    Ue[i].poll_event ─► RunStats    1 s tick ─► progress
//!  (SIP, RTCP, a producer's RTP paced by Ue[i].poll_timeout)
//!  [votes]: POST /api/polls before the first join; after the last vote a task reads
//!  GET /api/polls/{id} every 100 ms until exact, then GET /api/channels/{id}/quality
//! ```
pub mod api;
pub mod lab;
pub mod progress;
pub mod report;
pub mod rtcp;
pub mod run;
pub mod scenario;
pub mod stats;
pub mod ue;
