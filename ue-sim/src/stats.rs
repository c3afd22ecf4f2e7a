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
