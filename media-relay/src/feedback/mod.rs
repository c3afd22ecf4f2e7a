//! RTCP feedback at scale: RFC 3550 report intervals, RFC 5760 feedback targets (FTs) that
//! summarise viewers' receiver reports into RSI packets and pass them up a tree to the channel's
//! source, live vote tallies, and the placement of viewers on FTs by network coordinates.
//!
//! # Layout
//!
//! | module | role | I/O |
//! | --- | --- | --- |
//! | [`interval`] | RFC 3550 section 6.2/6.3 and appendix A.7 RTCP interval, a pure function | none |
//! | [`aggregate`] | the sans-IO feedback target: RRs, votes and child RSIs in, RSI summaries out | none |
//! | [`hasim`] | `media-relay ha-sim`: a tree of real FTs under a virtual clock; freshness and RTCP share | none |
//! | [`gnp`] | `media-relay gnp-sim`: GNP coordinates (Ng & Zhang 2002) and FT placement | none |
//! | [`live`] | the relay's per-channel FTs fed by its viewers' RTCP, summaries up the relay tree; summaries for the control API | none |
//! | [`node`] | a pure feedback target (`media-relay ft`): one FT with its timers, reporters and parent | none |
//! | [`manager`] | the FT manager: GNP placement of viewers on FTs by distance and load, moves on FT failure | none |
//!
//! # Data flow
//!
//! ```text
//!  viewer ──RR + SDES (+ APP "VOTE")──► leaf FT ──RSI + APP tally──► FT ──► … ──► source
//!  viewer ◄──RSI (group size, RTCP bandwidth)── leaf FT ◄──RSI── FT ◄── … ◄── source
//! ```
//!
//! Each FT is a [`aggregate::FeedbackTarget`]: it keeps the latest report of each of its viewers
//! and the latest summary of each child FT, and on its own RTCP timer sends one summary up whose
//! size does not depend on how many viewers are below it (fixed-bin histograms, counts per
//! poll option). Downwards, each FT tells its reporters how many they are and which RTCP
//! bandwidth they share, so each group's intervals follow RFC 3550 within its own 5 % share
//! instead of the whole audience's: that is what keeps a million viewers' feedback seconds old.
//! [`live`] wires one FT per channel into the relay core (viewers' RTCP in,
//! [`crate::control::RelayHandle::feedback`] out, a group-size RSI after each SR to a viewer);
//! a relay that pulls a channel from another ([`crate::tree`]) sends that relay its summary,
//! so the channel's source relay holds the whole tree's tally, and the AS reads it there
//! (leaving out the children it already holds). A pure FT process (`media-relay ft`, [`node`])
//! can sit anywhere in the tree, below a relay or above other FTs. [`manager`] places viewers
//! on FTs by GNP coordinates and load and moves them when an FT fails.
//!
//! Who may feed a tally: a parent takes a child's summary only from a known child (at a relay:
//! a relay pulling the channel from it, whose summaries come from its ingest RTCP address, or a
//! child FT registered with `RelayHandle::set_feedback_child`; at a pure FT: its `--child`
//! list, when given); a relay counts a vote only from the address of a viewer of the channel
//! and only in a poll of that channel. Everything else is dropped and counted in the relay's
//! stats ([`live::FeedbackCounters`]).

pub mod aggregate;
pub mod gnp;
pub mod hasim;
pub mod interval;
pub mod live;
pub mod manager;
pub mod node;
