//! Run statistics: what one `ue-sim` run measured, in the shape the report writes as JSON.
//!
//! [`RunStats`] is filled by [`crate::run`] from the UEs' events (joins, zaps, media
//! measurements) and read by the report module. Latencies are in milliseconds as `f64` samples;
//! [`percentile`] summarises them (nearest-rank).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Everything one run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunStats {
    /// Scenario name.
    pub scenario: String,
    /// Number of simulated UEs.
    pub ues: usize,
    /// Wall-clock length of the run, seconds.
    pub duration_s: f64,
    /// Joins answered 2xx.
    pub joins_ok: u64,
    /// Joins that failed (error response or timeout).
    pub joins_failed: u64,
    /// Zaps that reached the first decodable frame of the new channel.
    pub zaps_ok: u64,
    /// Zaps that failed (error response, timeout, or no key frame in time).
    pub zaps_failed: u64,
    /// REGISTERs answered 2xx.
    pub registrations_ok: u64,
    /// REGISTERs that failed.
    pub registrations_failed: u64,
    /// INVITE sent -> 200 OK, ms.
    pub join_ms: Vec<f64>,
    /// Zap request sent -> first decodable frame of the new channel, ms.
    pub zap_ms: Vec<f64>,
    /// Join INVITE -> first RTP packet, ms.
    pub first_packet_ms: Vec<f64>,
    /// Join INVITE -> first packet starting a key frame, ms.
    pub first_frame_ms: Vec<f64>,
    /// Per-viewer media figures.
    pub viewers: Vec<ViewerStats>,
    /// One point per second of the run.
    pub timeline: Vec<TimelinePoint>,
    /// Failures by reason, e.g. `"404"`, `"timeout"`.
    pub failures: BTreeMap<String, u64>,
    /// Sessions ended (our BYE answered, or the AS's BYE); the timeline's `leaves` sum to it.
    #[serde(default)]
    pub leaves: u64,
    /// Relay moves (the AS's re-INVITE to another relay) that brought media back.
    #[serde(default)]
    pub moves_ok: u64,
    /// Relay moves without media on the new path in time, or with an unusable offer.
    #[serde(default)]
    pub moves_failed: u64,
    /// Per successful move: last packet before it -> first packet after it, ms.
    #[serde(default)]
    pub move_gap_ms: Vec<f64>,
    /// Producers started (UEs creating a personal channel).
    #[serde(default)]
    pub producers: u64,
    /// Personal channels created (creation INVITE answered 2xx).
    #[serde(default)]
    pub personal_created: u64,
    /// Personal channel creations that failed.
    #[serde(default)]
    pub personal_failed: u64,
    /// Joins and zaps that reached a personal channel.
    #[serde(default)]
    pub personal_viewers: u64,
    /// Join -> first decodable frame, for joins of personal channels, ms.
    #[serde(default)]
    pub personal_first_frame_ms: Vec<f64>,
    /// RTP packets the producers sent.
    #[serde(default)]
    pub producer_packets: u64,
    /// Producers' ingests the AS moved to another relay (re-INVITE), answered.
    #[serde(default)]
    pub ingest_moves_ok: u64,
    /// Producers' ingest moves the UE could not answer.
    #[serde(default)]
    pub ingest_moves_failed: u64,
    /// Faults the run injected.
    #[serde(default)]
    pub faults: Vec<FaultRecord>,
    /// Joins refused with `403` (the AAA's policy: unknown subscriber, channel not in
    /// subscription, stream limit): expected, not counted in `joins_failed`.
    #[serde(default)]
    pub joins_refused: u64,
    /// Zaps refused with `403` (the viewer stays on its channel after a re-INVITE zap).
    #[serde(default)]
    pub zaps_refused: u64,
    /// Refused joins by reason phrase.
    #[serde(default)]
    pub joins_refused_by: BTreeMap<String, u64>,
    /// Refused zaps by reason phrase.
    #[serde(default)]
    pub zaps_refused_by: BTreeMap<String, u64>,
    /// What the lab's embedded AAA and the AS's AAA client counted (`[aaa] enabled`).
    #[serde(default)]
    pub aaa: Option<AaaFigures>,
    /// The viewers' RTCP, summed.
    #[serde(default)]
    pub rtcp: crate::rtcp::RtcpCounters,
    /// Votes cast and the AS's tallies (`[votes]`).
    #[serde(default)]
    pub votes: Option<VoteFigures>,
    /// Each channel's quality summary from the AS (`GET /api/channels/{id}/quality`), read
    /// while the viewers still watch.
    #[serde(default)]
    pub quality: Vec<ChannelQualityFigures>,
    /// The lab's RELOAD overlay and cross-AS joins (`[overlay]`).
    #[serde(default)]
    pub overlay: Option<crate::report::OverlayFigures>,
}

/// Votes cast by the UEs against the AS's live tallies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VoteFigures {
    /// Viewers meant to vote (`viewers_voting`).
    pub voters: u64,
    /// Votes cast (one per viewer at most).
    pub cast: u64,
    /// Voters that never watched a poll's channel during the window.
    pub missed: u64,
    /// Votes in the AS's last tallies, over every poll.
    pub tallied: u64,
    /// Every poll's tally equals its votes cast, option by option.
    pub exact: bool,
    /// Last vote cast -> first exact tally, ms (`None`: never exact within the wait).
    pub time_to_exact_ms: Option<f64>,
    /// When the last vote was cast, s since the run start.
    pub last_vote_s: Option<f64>,
    /// `GET /api/polls/{id}` requests made while waiting.
    pub tally_reads: u64,
    /// Per poll.
    pub polls: Vec<PollFigures>,
    /// Why votes could not be run or read (no API address, a refused poll, ...).
    pub error: Option<String>,
}

/// One poll: votes cast per option and the AS's tally.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PollFigures {
    /// Poll id.
    pub poll: u32,
    /// Its channel.
    pub channel: String,
    /// Option labels.
    pub options: Vec<String>,
    /// Votes cast per option.
    pub cast: Vec<u64>,
    /// The AS's last tally per option.
    pub tally: Vec<u64>,
    /// Votes the AS counted for options the poll does not declare.
    pub undeclared: u64,
    /// Relays that answered the AS for the last tally.
    pub relays: u64,
}

/// A channel's merged feedback at the AS.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelQualityFigures {
    /// Channel.
    pub channel: String,
    /// When it was read, s since the run start.
    pub at_s: f64,
    /// Relays that answered.
    pub relays: u64,
    /// Viewers whose receiver report the relays hold.
    pub viewers_reporting: u64,
    /// Viewers heard (reports or votes).
    pub viewers_heard: u64,
    /// Viewers that voted.
    pub voters: u64,
    /// Fraction lost, 1/256: median and p95 bin centres (the API's figures; a centre of the
    /// lowest bin is not zero even when nothing was lost, so read the ranges below).
    pub loss_median: Option<u32>,
    /// See `loss_median`.
    pub loss_p95: Option<u32>,
    /// The bin holding the median fraction lost, `[from, to)` in 1/256.
    pub loss_median_bin: Option<[u32; 2]>,
    /// The bin holding the 95th percentile fraction lost, `[from, to)` in 1/256.
    pub loss_p95_bin: Option<[u32; 2]>,
    /// The bin holding the median jitter, `[from, to)` in RTP timestamp units.
    pub jitter_median_bin: Option<[u32; 2]>,
    /// The bin holding the 95th percentile jitter, `[from, to)` in RTP timestamp units.
    pub jitter_p95_bin: Option<[u32; 2]>,
    /// The bin holding the median RTT, `[from, to)` in ms.
    pub rtt_ms_median_bin: Option<[u32; 2]>,
    /// The bin holding the 95th percentile RTT, `[from, to)` in ms.
    pub rtt_ms_p95_bin: Option<[u32; 2]>,
    /// Jitter, RTP timestamp units: median and p95.
    pub jitter_median: Option<u32>,
    /// See `jitter_median`.
    pub jitter_p95: Option<u32>,
    /// RTT from LSR/DLSR, ms: median and p95.
    pub rtt_ms_median: Option<u32>,
    /// See `rtt_ms_median`.
    pub rtt_ms_p95: Option<u32>,
    /// Viewers with an RTT.
    pub rtt_count: u64,
}

/// The AAA figures of a lab run: the AS's `as_aaa_*` counters and the embedded AAA's CDR
/// store, read once the AS's accounting outbox is empty (or the wait for it ran out).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AaaFigures {
    /// Joins and zaps the AS authorised by the Sh profile (`as_aaa_authorised_total`).
    pub authorised: u64,
    /// Joins and zaps the AS refused (`as_aaa_refused_total`).
    pub refused_total: u64,
    /// Refusals the UEs saw, by reason phrase (joins and zaps together).
    pub refused: BTreeMap<String, u64>,
    /// Accounting sessions with both a START and a STOP record at the AAA.
    pub accounted_sessions: u64,
    /// Accounting sessions with a START or a STOP but not both.
    pub unaccounted_sessions: u64,
    /// START records at the AAA.
    pub acr_start: u64,
    /// STOP records at the AAA.
    pub acr_stop: u64,
    /// All CDRs at the AAA (START, STOP, EVENT, ...).
    pub cdrs: u64,
    /// UDRs the AAA answered with a profile.
    pub udr_profiles: u64,
    /// UDRs for unknown users (5001).
    pub udr_unknown: u64,
    /// ACRs the AAA saw again (T flag) and did not store twice.
    pub acr_duplicates: u64,
    /// Accounting records still in the AS's outbox when the figures were read.
    pub outbox_left: i64,
    /// The AS's `as_aaa_*` counters by metric name.
    pub as_counters: BTreeMap<String, u64>,
}

/// One injected fault.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultRecord {
    /// Seconds since the run started.
    pub t_s: f64,
    /// `stop_relay`, `stop_as`.
    pub kind: String,
    /// Target index (relay number).
    pub target: usize,
    /// `ok`, or why it could not be injected.
    pub result: String,
    /// Sessions active when it was injected.
    pub active: u64,
    /// Viewers the fault hit (a stopped relay's viewers), when the injector knows.
    #[serde(default)]
    pub viewers: Option<u64>,
}

/// Media figures of one viewer over the whole run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ViewerStats {
    /// UE index.
    pub ue: usize,
    /// RTP packets received.
    pub packets: u64,
    /// Packets lost (sequence gaps, RFC 3550 A.3 style, per stream segment).
    pub lost: u64,
    /// Interarrival jitter (RFC 3550 A.8), ms.
    pub jitter_ms: f64,
    /// Longest time without media while in a session, ms (spans relay moves).
    pub gap_ms_max: f64,
    /// Relay moves this viewer went through.
    #[serde(default)]
    pub moves: u32,
    /// Longest gap across one of its relay moves, ms (`None`: never moved or no media after).
    #[serde(default)]
    pub move_gap_ms: Option<f64>,
}

/// Counters for one second of the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// Seconds since the run started (end of the interval).
    pub t_s: f64,
    /// Joins completed in this interval.
    pub joins: u64,
    /// Zaps completed in this interval.
    pub zaps: u64,
    /// Leaves (BYE) in this interval.
    pub leaves: u64,
    /// Failed joins, zaps, registrations and moves in this interval.
    #[serde(default)]
    pub failures: u64,
    /// Relay moves completed in this interval.
    #[serde(default)]
    pub moves: u64,
    /// Sessions active at the end of the interval.
    pub active: u64,
}

/// Nearest-rank percentile (`p` in 0..=100) of `samples`, on a sorted copy.
///
/// `None` for no samples or a non-finite `p`. NaN samples sort last.
#[must_use]
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() || !p.is_finite() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let p = p.clamp(0.0, 100.0);
    // Nearest rank: ceil(p/100 * n), at least 1.
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    let idx = rank.clamp(1, v.len()) - 1;
    v.get(idx).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_nearest_rank() {
        let s = [15.0, 20.0, 35.0, 40.0, 50.0];
        assert_eq!(percentile(&s, 5.0), Some(15.0));
        assert_eq!(percentile(&s, 30.0), Some(20.0));
        assert_eq!(percentile(&s, 40.0), Some(20.0));
        assert_eq!(percentile(&s, 50.0), Some(35.0));
        assert_eq!(percentile(&s, 100.0), Some(50.0));
        assert_eq!(percentile(&s, 0.0), Some(15.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 99.0), Some(3.0));
    }

    #[test]
    fn stats_round_trip_json() {
        let mut s = RunStats {
            scenario: "x".into(),
            ues: 2,
            join_ms: vec![1.5],
            ..RunStats::default()
        };
        s.failures.insert("404".into(), 1);
        let j = serde_json::to_string(&s).unwrap();
        let back: RunStats = serde_json::from_str(&j).unwrap();
        assert_eq!(back.ues, 2);
        assert_eq!(back.failures.get("404"), Some(&1));
    }
}
