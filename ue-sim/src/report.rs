//! The end-of-run report: `report.json` (summary figures, threshold checks and the raw
//! [`RunStats`]) and `report.html` (one self-contained page: a summary table, the pass/fail
//! checks and inline SVG plots drawn with `plotters`).
//!
//! [`Summary::new`] reduces a [`RunStats`] to the figures operators and CI look at
//! (`joins.ok`, `zap_ms.p99`, `first_frame_ms.p50`, `gap_ms.max`, ...) and checks them
//! against [`Thresholds`]; [`write()`] puts both files in a directory. The plots: histogram and
//! CDF of each latency (join, zap, first packet, first frame), joins/zaps/leaves per second
//! and active sessions over time, and loss and longest gap per viewer (viewers ranked, worst
//! first, so ten thousand viewers still make a readable curve).
//!
//! Nothing here reads the clock or the network: it is a pure function of the stats.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::stats::{percentile, RunStats};

/// Errors writing the report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or the directory could not be written.
    #[error("write {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The stats could not be serialised.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A plot could not be drawn.
    #[error("plot {0}: {1}")]
    Plot(&'static str, String),
}

/// Limits that make a run fail (exit code non-zero). `None` means "not checked".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// Most failed joins (default 0).
    pub max_failed_joins: Option<u64>,
    /// Most failed zaps.
    pub max_failed_zaps: Option<u64>,
    /// Most failed registrations.
    pub max_failed_registrations: Option<u64>,
    /// Highest join p99 (INVITE -> 200 OK), ms.
    pub join_ms_p99: Option<f64>,
    /// Highest zap p99 (zap sent -> first decodable frame), ms.
    pub zap_ms_p99: Option<f64>,
    /// Highest first-frame p99 (join INVITE -> first key frame), ms.
    pub first_frame_ms_p99: Option<f64>,
    /// Highest longest gap of any viewer, ms.
    pub gap_ms_max: Option<f64>,
    /// Highest loss over all viewers, fraction of packets (0.01 = 1 %).
    pub loss_ratio_max: Option<f64>,
    /// Fewest successful zaps.
    pub min_zaps_ok: Option<u64>,
    /// Highest p99 of the longest gap of the viewers a relay fault moved, ms.
    pub moved_gap_ms_p99: Option<f64>,
    /// Most failed relay moves.
    pub max_failed_moves: Option<u64>,
    /// Fewest successful relay moves.
    pub min_moves_ok: Option<u64>,
    /// Fewest joins/zaps that reached a personal channel.
    pub min_personal_viewers: Option<u64>,
    /// Fewest joins and zaps the AS authorised by the AAA's profile (`aaa.authorised`).
    pub min_authorised: Option<u64>,
    /// Most accounting sessions at the AAA without both START and STOP
    /// (`aaa.unaccounted_sessions`).
    pub max_unaccounted: Option<u64>,
    /// The AS's poll tallies equal the votes cast (`votes.exact`).
    #[serde(default)]
    pub votes_exact: Option<bool>,
    /// Longest last vote -> exact tally, ms (`votes.time_to_exact_ms`).
    #[serde(default)]
    pub votes_time_to_exact_ms: Option<f64>,
    /// Most failed cross-AS joins/zaps (`overlay.cross_as.failed`, `[overlay]` labs).
    #[serde(default)]
    pub max_failed_cross_as: Option<u64>,
    /// Fewest successful cross-AS joins/zaps (`overlay.cross_as.ok`).
    #[serde(default)]
    pub min_cross_as_ok: Option<u64>,
}

impl From<&crate::scenario::Thresholds> for Thresholds {
    /// The scenario's `[thresholds]` table. Unlike `Scenario::check`, a limit on a figure
    /// that was never measured (no zap at all, say) fails here: the report never passes a
    /// check it could not make.
    fn from(t: &crate::scenario::Thresholds) -> Self {
        Self {
            max_failed_joins: t.max_joins_failed,
            max_failed_zaps: t.max_zaps_failed,
            max_failed_registrations: t.max_registrations_failed,
            join_ms_p99: t.max_join_ms_p99,
            zap_ms_p99: t.max_zap_ms_p99,
            first_frame_ms_p99: t.max_first_frame_ms_p99,
            gap_ms_max: t.max_gap_ms,
            loss_ratio_max: None,
            min_zaps_ok: t.min_zaps_ok,
            moved_gap_ms_p99: t.max_gap_ms_p99,
            max_failed_moves: t.max_moves_failed,
            min_moves_ok: t.min_moves_ok,
            min_personal_viewers: t.min_personal_viewers,
            min_authorised: t.min_authorised,
            max_unaccounted: t.max_unaccounted,
            votes_exact: t.votes_exact,
            votes_time_to_exact_ms: t.max_votes_time_to_exact_ms,
            max_failed_cross_as: t.max_cross_as_joins_failed,
            min_cross_as_ok: t.min_cross_as_joins,
        }
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            max_failed_joins: Some(0),
            max_failed_zaps: None,
            max_failed_registrations: None,
            join_ms_p99: None,
            zap_ms_p99: None,
            first_frame_ms_p99: None,
            gap_ms_max: None,
            loss_ratio_max: None,
            min_zaps_ok: None,
            moved_gap_ms_p99: None,
            max_failed_moves: None,
            min_moves_ok: None,
            min_personal_viewers: None,
            min_authorised: None,
            max_unaccounted: None,
            votes_exact: None,
            votes_time_to_exact_ms: None,
            max_failed_cross_as: None,
            min_cross_as_ok: None,
        }
    }
}

/// Refused (`403`) joins and zaps by reason phrase.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusals {
    /// Joins.
    pub joins: BTreeMap<String, u64>,
    /// Zaps.
    pub zaps: BTreeMap<String, u64>,
}

/// Ok/failed counters of one kind of request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Succeeded.
    pub ok: u64,
    /// Failed.
    pub failed: u64,
    /// Refused by policy (`403`, the AAA): expected, not failed.
    #[serde(default)]
    pub refused: u64,
}

/// Summary of a set of samples (ms). Percentiles are nearest-rank ([`percentile`]); every
/// figure is `null` in JSON when there is no sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Dist {
    /// Number of samples.
    pub count: usize,
    /// Smallest.
    pub min: Option<f64>,
    /// Arithmetic mean.
    pub mean: Option<f64>,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
}

impl Dist {
    /// No sample.
    #[must_use]
    pub fn none() -> Self {
        Self::of(&[])
    }

    /// Summarises `samples` (non-finite samples are ignored).
    #[must_use]
    pub fn of(samples: &[f64]) -> Self {
        let v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        let n = v.len();
        let mean = (n > 0).then(|| v.iter().sum::<f64>() / n as f64);
        Self {
            count: n,
            min: v.iter().copied().reduce(f64::min),
            mean,
            p50: percentile(&v, 50.0),
            p90: percentile(&v, 90.0),
            p99: percentile(&v, 99.0),
            max: v.iter().copied().reduce(f64::max),
        }
    }
}

/// Packet loss over all viewers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Loss {
    /// RTP packets received.
    pub packets: u64,
    /// Packets lost.
    pub lost: u64,
    /// `lost / (packets + lost)`, 0 when nothing was expected.
    pub ratio: f64,
    /// Viewers that lost at least one packet.
    pub viewers_with_loss: usize,
}

/// Producers and their personal channels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Personal {
    /// Producers started.
    pub producers: u64,
    /// Personal channels created.
    pub channels_created: u64,
    /// Creations that failed.
    pub channels_failed: u64,
    /// Joins and zaps that reached a personal channel.
    pub viewers: u64,
    /// Join -> first decodable frame on a personal channel.
    pub first_frame_ms: Dist,
    /// RTP packets the producers sent.
    pub packets_sent: u64,
    /// Ingests the AS moved to another relay (the producer's re-INVITE answered).
    pub ingest_moves: Counts,
}

/// Relay moves (the AS re-INVITEs viewers of a failed relay to another one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Moves {
    /// Moves that brought media back / that did not.
    pub ok: u64,
    /// Moves without media in time, or with an offer the UE could not answer.
    pub failed: u64,
    /// Viewers moved at least once.
    pub viewers: usize,
    /// Per move: last packet before it -> first packet after it.
    pub gap_ms: Dist,
    /// Per moved viewer: its longest gap over the whole run (spans its move).
    pub viewer_gap_ms: Dist,
    /// Per viewer with media that was not moved: its longest gap over the whole run. After a
    /// relay fault with the relay tree these are the viewers whose own relay survived but
    /// pulled a channel from the dead relay (the gap is the tree's re-attach).
    #[serde(default = "Dist::none")]
    pub unmoved_gap_ms: Dist,
}

/// Which side of its limit a checked value must stay on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bound {
    /// `value <= limit`.
    Max,
    /// `value >= limit`.
    Min,
}

impl Bound {
    /// `max` or `min`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Bound::Max => "max",
            Bound::Min => "min",
        }
    }
}

/// One threshold check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// What is checked, e.g. `zap_ms.p99`.
    pub name: String,
    /// Upper or lower limit.
    pub bound: Bound,
    /// The limit (inclusive).
    pub limit: f64,
    /// The measured value; `None` when nothing was measured (counts as a failure).
    pub value: Option<f64>,
    /// The value is on the right side of the limit.
    pub pass: bool,
}

impl Check {
    /// The measured value for people: whole numbers without decimals, `none` if unmeasured.
    #[must_use]
    pub fn value_text(&self) -> String {
        match self.value {
            None => "none".into(),
            Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.0}"),
            Some(v) => format!("{v:.3}"),
        }
    }
}

/// The figures of `report.json` (the raw stats go beside them under `raw`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Scenario name.
    pub scenario: String,
    /// Simulated UEs.
    pub ues: usize,
    /// Run length, s.
    pub duration_s: f64,
    /// Joins.
    pub joins: Counts,
    /// Zaps.
    pub zaps: Counts,
    /// Registrations.
    pub registrations: Counts,
    /// INVITE -> 200 OK.
    pub join_ms: Dist,
    /// Zap -> first decodable frame of the new channel.
    pub zap_ms: Dist,
    /// Join -> first RTP packet.
    pub first_packet_ms: Dist,
    /// Join -> first decodable frame.
    pub first_frame_ms: Dist,
    /// Longest gap per viewer (so `gap_ms.max` is the worst viewer's).
    pub gap_ms: Dist,
    /// Jitter per viewer.
    pub jitter_ms: Dist,
    /// Loss over all viewers.
    pub loss: Loss,
    /// Viewers with media figures.
    pub viewers: usize,
    /// Peak of active sessions in the timeline.
    pub active_max: u64,
    /// Failures by reason.
    pub failures: BTreeMap<String, u64>,
    /// Sessions ended (BYE either way).
    pub leaves: u64,
    /// Relay moves and the gaps across them.
    pub moves: Moves,
    /// Producers and personal channels.
    pub personal: Personal,
    /// Faults injected.
    pub faults: Vec<crate::stats::FaultRecord>,
    /// Refused joins and zaps by reason phrase.
    #[serde(default)]
    pub refusals: Refusals,
    /// The lab's AAA figures (`[aaa] enabled`), else `null`.
    #[serde(default)]
    pub aaa: Option<crate::stats::AaaFigures>,
    /// The viewers' RTCP, summed.
    #[serde(default)]
    pub rtcp: crate::rtcp::RtcpCounters,
    /// Votes cast against the AS's tallies (`[votes]`), else `null`.
    #[serde(default)]
    pub votes: Option<crate::stats::VoteFigures>,
    /// Each channel's quality summary from the AS.
    #[serde(default)]
    pub quality: Vec<crate::stats::ChannelQualityFigures>,
    /// The lab's overlay (`[overlay]`), else `null`.
    #[serde(default)]
    pub overlay: Option<OverlaySummary>,
    /// Threshold checks.
    pub checks: Vec<Check>,
    /// Every check passed.
    pub pass: bool,
}

impl Summary {
    /// Reduces `stats` and checks it against `thresholds`.
    #[must_use]
    pub fn new(stats: &RunStats, thresholds: &Thresholds) -> Self {
        let gaps: Vec<f64> = stats.viewers.iter().map(|v| v.gap_ms_max).collect();
        let jitter: Vec<f64> = stats.viewers.iter().map(|v| v.jitter_ms).collect();
        let packets: u64 = stats.viewers.iter().map(|v| v.packets).sum();
        let lost: u64 = stats.viewers.iter().map(|v| v.lost).sum();
        let expected = packets + lost;
        let loss = Loss {
            packets,
            lost,
            ratio: if expected == 0 {
                0.0
            } else {
                lost as f64 / expected as f64
            },
            viewers_with_loss: stats.viewers.iter().filter(|v| v.lost > 0).count(),
        };
        let mut s = Self {
            scenario: stats.scenario.clone(),
            ues: stats.ues,
            duration_s: stats.duration_s,
            joins: Counts {
                ok: stats.joins_ok,
                failed: stats.joins_failed,
                refused: stats.joins_refused,
            },
            zaps: Counts {
                ok: stats.zaps_ok,
                failed: stats.zaps_failed,
                refused: stats.zaps_refused,
            },
            registrations: Counts {
                ok: stats.registrations_ok,
                failed: stats.registrations_failed,
                refused: 0,
            },
            refusals: Refusals {
                joins: stats.joins_refused_by.clone(),
                zaps: stats.zaps_refused_by.clone(),
            },
            aaa: stats.aaa.clone(),
            rtcp: stats.rtcp,
            votes: stats.votes.clone(),
            quality: stats.quality.clone(),
            overlay: stats.overlay.as_ref().map(OverlaySummary::of),
            join_ms: Dist::of(&stats.join_ms),
            zap_ms: Dist::of(&stats.zap_ms),
            first_packet_ms: Dist::of(&stats.first_packet_ms),
            first_frame_ms: Dist::of(&stats.first_frame_ms),
            gap_ms: Dist::of(&gaps),
            jitter_ms: Dist::of(&jitter),
            loss,
            viewers: stats.viewers.len(),
            active_max: stats.timeline.iter().map(|p| p.active).max().unwrap_or(0),
            failures: stats.failures.clone(),
            leaves: stats.leaves,
            moves: Moves {
                ok: stats.moves_ok,
                failed: stats.moves_failed,
                viewers: stats.viewers.iter().filter(|v| v.moves > 0).count(),
                gap_ms: Dist::of(&stats.move_gap_ms),
                viewer_gap_ms: Dist::of(&moved_gaps(stats)),
                unmoved_gap_ms: Dist::of(&unmoved_gaps(stats)),
            },
            personal: Personal {
                producers: stats.producers,
                channels_created: stats.personal_created,
                channels_failed: stats.personal_failed,
                viewers: stats.personal_viewers,
                first_frame_ms: Dist::of(&stats.personal_first_frame_ms),
                packets_sent: stats.producer_packets,
                ingest_moves: Counts {
                    ok: stats.ingest_moves_ok,
                    failed: stats.ingest_moves_failed,
                    refused: 0,
                },
            },
            faults: stats.faults.clone(),
            checks: Vec::new(),
            pass: true,
        };
        s.checks = s.check(thresholds);
        s.pass = s.checks.iter().all(|c| c.pass);
        s
    }

    fn check(&self, t: &Thresholds) -> Vec<Check> {
        let mut out = Vec::new();
        let mut add_bound = |name: &str, bound: Bound, limit: Option<f64>, value: Option<f64>| {
            if let Some(limit) = limit {
                out.push(Check {
                    name: name.into(),
                    bound,
                    limit,
                    value,
                    pass: value.is_some_and(|v| match bound {
                        Bound::Max => v <= limit,
                        Bound::Min => v >= limit,
                    }),
                });
            }
        };
        let mut add = |name: &str, limit: Option<f64>, value: Option<f64>| {
            add_bound(name, Bound::Max, limit, value);
        };
        let f = |n: u64| Some(n as f64);
        add(
            "joins.failed",
            t.max_failed_joins.map(|n| n as f64),
            f(self.joins.failed),
        );
        add(
            "zaps.failed",
            t.max_failed_zaps.map(|n| n as f64),
            f(self.zaps.failed),
        );
        add(
            "registrations.failed",
            t.max_failed_registrations.map(|n| n as f64),
            f(self.registrations.failed),
        );
        add("join_ms.p99", t.join_ms_p99, self.join_ms.p99);
        add("zap_ms.p99", t.zap_ms_p99, self.zap_ms.p99);
        add(
            "first_frame_ms.p99",
            t.first_frame_ms_p99,
            self.first_frame_ms.p99,
        );
        add("gap_ms.max", t.gap_ms_max, self.gap_ms.max);
        add_bound(
            "loss.ratio",
            Bound::Max,
            t.loss_ratio_max,
            Some(self.loss.ratio),
        );
        add_bound(
            "zaps.ok",
            Bound::Min,
            t.min_zaps_ok.map(|n| n as f64),
            Some(self.zaps.ok as f64),
        );
        add_bound(
            "moves.viewer_gap_ms.p99",
            Bound::Max,
            t.moved_gap_ms_p99,
            self.moves.viewer_gap_ms.p99,
        );
        add_bound(
            "moves.failed",
            Bound::Max,
            t.max_failed_moves.map(|n| n as f64),
            Some(self.moves.failed as f64),
        );
        add_bound(
            "moves.ok",
            Bound::Min,
            t.min_moves_ok.map(|n| n as f64),
            Some(self.moves.ok as f64),
        );
        // A fault the scenario asked for and the lab could not inject fails the run: the
        // figures would not show what the scenario claims to test.
        if !self.faults.is_empty() {
            let failed = self.faults.iter().filter(|f| f.result != "ok").count();
            add_bound("faults.failed", Bound::Max, Some(0.0), Some(failed as f64));
        }
        add_bound(
            "personal.viewers",
            Bound::Min,
            t.min_personal_viewers.map(|n| n as f64),
            Some(self.personal.viewers as f64),
        );
        // Without AAA figures the value is missing and the check fails.
        add_bound(
            "aaa.authorised",
            Bound::Min,
            t.min_authorised.map(|n| n as f64),
            self.aaa.as_ref().map(|a| a.authorised as f64),
        );
        add_bound(
            "aaa.unaccounted_sessions",
            Bound::Max,
            t.max_unaccounted.map(|n| n as f64),
            self.aaa.as_ref().map(|a| a.unaccounted_sessions as f64),
        );
        // Without vote figures (no [votes], or no API) the values are missing: fail.
        add_bound(
            "votes.exact",
            Bound::Min,
            t.votes_exact.filter(|&b| b).map(|_| 1.0),
            self.votes.as_ref().map(|v| if v.exact { 1.0 } else { 0.0 }),
        );
        add_bound(
            "votes.time_to_exact_ms",
            Bound::Max,
            t.votes_time_to_exact_ms,
            self.votes.as_ref().and_then(|v| v.time_to_exact_ms),
        );
        // Without overlay figures (no [overlay]) the values are missing: fail.
        add_bound(
            "overlay.cross_as.failed",
            Bound::Max,
            t.max_failed_cross_as.map(|n| n as f64),
            self.overlay.as_ref().map(|o| o.cross_as.failed as f64),
        );
        add_bound(
            "overlay.cross_as.ok",
            Bound::Min,
            t.min_cross_as_ok.map(|n| n as f64),
            self.overlay.as_ref().map(|o| o.cross_as.ok as f64),
        );
        out
    }

    /// A few lines for the terminal: joins, zap and first-frame p50/p99, loss, max gap, checks.
    #[must_use]
    pub fn text(&self) -> String {
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1} ms"));
        let mut s = String::new();
        let _ = writeln!(
            s,
            "scenario {}: {} UEs, {:.1} s",
            self.scenario, self.ues, self.duration_s
        );
        let _ = writeln!(
            s,
            "  joins {} ok / {} failed; zaps {} ok / {} failed; registrations {} ok / {} failed",
            self.joins.ok,
            self.joins.failed,
            self.zaps.ok,
            self.zaps.failed,
            self.registrations.ok,
            self.registrations.failed
        );
        for (name, d) in [
            ("join", &self.join_ms),
            ("zap", &self.zap_ms),
            ("first packet", &self.first_packet_ms),
            ("first frame", &self.first_frame_ms),
        ] {
            let _ = writeln!(
                s,
                "  {name:<12} p50 {:>10}  p99 {:>10}  max {:>10}  (n={})",
                ms(d.p50),
                ms(d.p99),
                ms(d.max),
                d.count
            );
        }
        let _ = writeln!(
            s,
            "  loss {} of {} packets ({:.3} %), {} viewers with loss; max gap {}",
            self.loss.lost,
            self.loss.packets + self.loss.lost,
            self.loss.ratio * 100.0,
            self.loss.viewers_with_loss,
            ms(self.gap_ms.max)
        );
        if self.moves.ok + self.moves.failed > 0 || !self.faults.is_empty() {
            let _ = writeln!(
                s,
                "  relay moves {} ok / {} failed ({} viewers); moved viewers' longest gap p50 {} p99 {} max {}",
                self.moves.ok,
                self.moves.failed,
                self.moves.viewers,
                ms(self.moves.viewer_gap_ms.p50),
                ms(self.moves.viewer_gap_ms.p99),
                ms(self.moves.viewer_gap_ms.max)
            );
            let _ = writeln!(
                s,
                "  viewers not moved ({}): longest gap p50 {} p99 {} max {}",
                self.moves.unmoved_gap_ms.count,
                ms(self.moves.unmoved_gap_ms.p50),
                ms(self.moves.unmoved_gap_ms.p99),
                ms(self.moves.unmoved_gap_ms.max)
            );
        }
        for f in &self.faults {
            let _ = writeln!(
                s,
                "  fault {} {} at {:.1} s ({} sessions active, {} viewers hit): {}",
                f.kind,
                f.target,
                f.t_s,
                f.active,
                f.viewers.map_or_else(|| "?".into(), |n| n.to_string()),
                f.result
            );
        }
        if self.personal.producers > 0 {
            let _ = writeln!(
                s,
                "  producers {}: {} personal channels created ({} failed), {} viewers, first frame p50 {} p99 {}",
                self.personal.producers,
                self.personal.channels_created,
                self.personal.channels_failed,
                self.personal.viewers,
                ms(self.personal.first_frame_ms.p50),
                ms(self.personal.first_frame_ms.p99)
            );
        }
        let reasons = |m: &BTreeMap<String, u64>| {
            m.iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if self.joins.refused + self.zaps.refused > 0 {
            let _ = writeln!(
                s,
                "  refused (403): joins {} ({}); zaps {} ({})",
                self.joins.refused,
                reasons(&self.refusals.joins),
                self.zaps.refused,
                reasons(&self.refusals.zaps)
            );
        }
        if let Some(a) = &self.aaa {
            let _ = writeln!(
                s,
                "  aaa: {} authorised, {} refused; {} sessions accounted (START+STOP), {} unaccounted; ACR START {} STOP {}; {} CDRs; outbox left {}",
                a.authorised,
                a.refused_total,
                a.accounted_sessions,
                a.unaccounted_sessions,
                a.acr_start,
                a.acr_stop,
                a.cdrs,
                a.outbox_left
            );
        }
        if let Some(o) = &self.overlay {
            let _ = writeln!(
                s,
                "  overlay: {} peers, {} ASes (viewers {:?}); {} personal channels listed at another AS {} times ({} never), propagation p50 {} p99 {} max {}; cross-AS joins {} ok / {} failed / {} refused",
                o.peers,
                o.ases,
                o.viewers_per_as,
                o.channels,
                o.listed,
                o.not_listed,
                ms(o.propagation_ms.p50),
                ms(o.propagation_ms.p99),
                ms(o.propagation_ms.max),
                o.cross_as.ok,
                o.cross_as.failed,
                o.cross_as.refused
            );
            if let Some(e) = &o.error {
                let _ = writeln!(s, "  overlay error: {e}");
            }
        }
        if self.rtcp.compounds > 0 {
            let r = &self.rtcp;
            let _ = writeln!(
                s,
                "  rtcp: {} compounds sent ({} octets), {} with BYE, {} APP VOTE; {} SRs and {} RSIs received",
                r.compounds, r.bytes, r.byes, r.vote_packets, r.srs_received, r.rsis_received
            );
        }
        if let Some(v) = &self.votes {
            let _ = writeln!(
                s,
                "  votes: {} voters, {} cast, {} missed; AS tally {} ({}); time to exact {}; {} tally reads{}",
                v.voters,
                v.cast,
                v.missed,
                v.tallied,
                if v.exact { "exact" } else { "NOT exact" },
                ms(v.time_to_exact_ms),
                v.tally_reads,
                v.error.as_ref().map_or_else(String::new, |e| format!("; error: {e}"))
            );
            for p in &v.polls {
                let _ = writeln!(
                    s,
                    "    poll {} on {}: cast {:?}, tally {:?}",
                    p.poll, p.channel, p.cast, p.tally
                );
            }
        }
        for q in &self.quality {
            let bin = |b: Option<[u32; 2]>| {
                b.map_or_else(|| "-".to_string(), |[f, t]| format!("[{f}, {t})"))
            };
            let _ = writeln!(
                s,
                "  quality {}: {} viewers reporting ({} heard, {} voters) on {} relays; loss median in {}/256; jitter median in {} ts; RTT median in {} ms, p95 in {} ms (n={})",
                q.channel,
                q.viewers_reporting,
                q.viewers_heard,
                q.voters,
                q.relays,
                bin(q.loss_median_bin),
                bin(q.jitter_median_bin),
                bin(q.rtt_ms_median_bin),
                bin(q.rtt_ms_p95_bin),
                q.rtt_count
            );
        }
        if !self.failures.is_empty() {
            let f: Vec<String> = self
                .failures
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            let _ = writeln!(s, "  failures: {}", f.join(", "));
        }
        for c in &self.checks {
            let _ = writeln!(
                s,
                "  [{}] {} = {} ({} {})",
                if c.pass { "pass" } else { "FAIL" },
                c.name,
                c.value_text(),
                c.bound.as_str(),
                c.limit
            );
        }
        let _ = write!(s, "  result: {}", if self.pass { "PASS" } else { "FAIL" });
        s
    }
}

/// The longest gap of every viewer that a relay move touched, ms.
/// The longest gap of each viewer that received media and was never moved.
fn unmoved_gaps(stats: &RunStats) -> Vec<f64> {
    stats
        .viewers
        .iter()
        .filter(|v| v.moves == 0 && v.packets > 0)
        .map(|v| v.gap_ms_max)
        .collect()
}

fn moved_gaps(stats: &RunStats) -> Vec<f64> {
    stats
        .viewers
        .iter()
        .filter(|v| v.moves > 0)
        .map(|v| v.gap_ms_max)
        .collect()
}

/// `report.json`: the summary's fields at the top level plus `raw` (the whole [`RunStats`]).
pub fn json(stats: &RunStats, summary: &Summary) -> Result<serde_json::Value, Error> {
    let mut v = serde_json::to_value(summary)?;
    if let serde_json::Value::Object(m) = &mut v {
        m.insert("raw".into(), serde_json::to_value(stats)?);
    }
    Ok(v)
}

/// Where [`write()`] put the files.
#[derive(Debug, Clone)]
pub struct Written {
    /// `DIR/report.json`.
    pub json: PathBuf,
    /// `DIR/report.html`.
    pub html: PathBuf,
}

/// Writes `report.json` and `report.html` into `dir` (created if missing).
pub fn write(dir: &Path, stats: &RunStats, summary: &Summary) -> Result<Written, Error> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let json_path = dir.join("report.json");
    let text = serde_json::to_string_pretty(&json(stats, summary)?)?;
    std::fs::write(&json_path, text).map_err(io(&json_path))?;
    let html_path = dir.join("report.html");
    std::fs::write(&html_path, html(stats, summary)?).map_err(io(&html_path))?;
    Ok(Written {
        json: json_path,
        html: html_path,
    })
}

const W: u32 = 560;
const H: u32 = 320;

/// The self-contained HTML page (inline SVG, no script, no external resource).
pub fn html(stats: &RunStats, summary: &Summary) -> Result<String, Error> {
    let mut p = String::with_capacity(64 * 1024);
    let title = format!("ue-sim report: {}", esc(&summary.scenario));
    let _ = write!(
        p,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;margin:1.5em;color:#222}}\
         table{{border-collapse:collapse;margin:.5em 0}}td,th{{border:1px solid #bbb;padding:3px 8px;text-align:right}}\
         th{{background:#eee}}td:first-child,th:first-child{{text-align:left}}\
         .pass{{color:#070;font-weight:bold}}.fail{{color:#b00;font-weight:bold}}\
         .plots{{display:flex;flex-wrap:wrap;gap:8px}}.plots figure{{margin:0}}\
         figcaption{{font-size:90%;color:#555}}</style></head><body>\n<h1>{title}</h1>\n"
    );
    let verdict = if summary.pass {
        "<span class=\"pass\">PASS</span>"
    } else {
        "<span class=\"fail\">FAIL</span>"
    };
    let _ = writeln!(
        p,
        "<p>{} UEs, {:.1} s, {} viewers with media, peak {} active sessions. Result: {verdict}</p>",
        summary.ues, summary.duration_s, summary.viewers, summary.active_max
    );
    summary_tables(&mut p, summary);

    p.push_str("<h2>Latency</h2>\n<div class=\"plots\">\n");
    for (name, what, samples) in [
        ("join_ms", "INVITE to 200 OK", &stats.join_ms),
        ("zap_ms", "zap to first decodable frame", &stats.zap_ms),
        (
            "first_frame_ms",
            "join to first decodable frame",
            &stats.first_frame_ms,
        ),
        (
            "first_packet_ms",
            "join to first RTP packet",
            &stats.first_packet_ms,
        ),
    ] {
        figure(
            &mut p,
            &format!("{name}: histogram ({what})"),
            histogram_svg(name, samples)?,
        );
        figure(
            &mut p,
            &format!("{name}: CDF ({what})"),
            cdf_svg(name, samples)?,
        );
    }
    p.push_str("</div>\n<h2>Over time</h2>\n<div class=\"plots\">\n");
    figure(
        &mut p,
        "joins, zaps and leaves per second",
        timeline_rates_svg(stats)?,
    );
    figure(&mut p, "active sessions", timeline_active_svg(stats)?);
    p.push_str("</div>\n<h2>Per viewer</h2>\n<div class=\"plots\">\n");
    let mut gaps: Vec<f64> = stats.viewers.iter().map(|v| v.gap_ms_max).collect();
    let mut loss: Vec<f64> = stats
        .viewers
        .iter()
        .map(|v| {
            let e = v.packets + v.lost;
            if e == 0 {
                0.0
            } else {
                100.0 * v.lost as f64 / e as f64
            }
        })
        .collect();
    figure(
        &mut p,
        "longest gap per viewer, ms (viewers ranked, worst first)",
        ranked_svg("gap_ms_max", "ms", &mut gaps)?,
    );
    figure(
        &mut p,
        "loss per viewer, % of packets (viewers ranked, worst first)",
        ranked_svg("loss", "%", &mut loss)?,
    );
    p.push_str("</div>\n");
    if summary.moves.ok + summary.moves.failed > 0 || !summary.faults.is_empty() {
        moves_section(&mut p, stats, summary)?;
    }
    if summary.personal.producers > 0 {
        personal_section(&mut p, summary);
    }
    votes_section(&mut p, summary);
    feedback_section(&mut p, summary);
    worst_viewers(&mut p, stats);
    p.push_str(
        "<p>Raw figures: <code>report.json</code> (key <code>raw</code>).</p>\n</body></html>\n",
    );
    Ok(p)
}

fn summary_tables(p: &mut String, s: &Summary) {
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    p.push_str("<h2>Summary</h2>\n<table><tr><th>requests</th><th>ok</th><th>failed</th><th>refused (403)</th></tr>\n");
    for (n, c) in [
        ("joins", s.joins),
        ("zaps", s.zaps),
        ("registrations", s.registrations),
    ] {
        let _ = writeln!(
            p,
            "<tr><td>{n}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            c.ok, c.failed, c.refused
        );
    }
    p.push_str("</table>\n<table><tr><th>ms</th><th>n</th><th>min</th><th>mean</th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr>\n");
    for (n, d) in [
        ("join", &s.join_ms),
        ("zap (to first frame)", &s.zap_ms),
        ("first packet", &s.first_packet_ms),
        ("first frame", &s.first_frame_ms),
        ("longest gap per viewer", &s.gap_ms),
        ("jitter per viewer", &s.jitter_ms),
    ] {
        let _ = writeln!(
            p,
            "<tr><td>{n}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            d.count,
            ms(d.min),
            ms(d.mean),
            ms(d.p50),
            ms(d.p90),
            ms(d.p99),
            ms(d.max)
        );
    }
    let _ = writeln!(
        p,
        "</table>\n<p>Loss: {} of {} packets ({:.3} %), {} viewers with loss.</p>",
        s.loss.lost,
        s.loss.packets + s.loss.lost,
        s.loss.ratio * 100.0,
        s.loss.viewers_with_loss
    );
    if !s.failures.is_empty() {
        p.push_str("<table><tr><th>failure</th><th>count</th></tr>\n");
        for (k, v) in &s.failures {
            let _ = writeln!(p, "<tr><td>{}</td><td>{v}</td></tr>", esc(k));
        }
        p.push_str("</table>\n");
    }
    aaa_section(p, s);
    overlay_section(p, s);
    p.push_str("<h2>Thresholds</h2>\n");
    if s.checks.is_empty() {
        p.push_str("<p>No threshold set.</p>\n");
    } else {
        p.push_str("<table><tr><th>check</th><th>value</th><th>limit</th><th>result</th></tr>\n");
        for c in &s.checks {
            let _ = writeln!(
                p,
                "<tr><td>{}</td><td>{}</td><td>{} {}</td><td class=\"{}\">{}</td></tr>",
                esc(&c.name),
                c.value_text(),
                c.bound.as_str(),
                c.limit,
                if c.pass { "pass" } else { "fail" },
                if c.pass { "pass" } else { "FAIL" }
            );
        }
        p.push_str("</table>\n");
    }
}

fn aaa_section(p: &mut String, s: &Summary) {
    if s.joins.refused + s.zaps.refused > 0 {
        p.push_str("<table><tr><th>refused (403) reason</th><th>joins</th><th>zaps</th></tr>\n");
        let mut keys: Vec<&String> = s
            .refusals
            .joins
            .keys()
            .chain(s.refusals.zaps.keys())
            .collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            let g = |m: &BTreeMap<String, u64>| m.get(k).copied().unwrap_or(0);
            let _ = writeln!(
                p,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(k),
                g(&s.refusals.joins),
                g(&s.refusals.zaps)
            );
        }
        p.push_str("</table>\n");
    }
    let Some(a) = &s.aaa else { return };
    let _ = writeln!(
        p,
        "<h2>AAA (Diameter Sh / Rf)</h2>\n<table><tr><th>figure</th><th>value</th></tr>\n\
         <tr><td>authorised (AS)</td><td>{}</td></tr>\n<tr><td>refused (AS)</td><td>{}</td></tr>\n\
         <tr><td>sessions accounted (START + STOP at the AAA)</td><td>{}</td></tr>\n\
         <tr><td>sessions unaccounted (START or STOP only)</td><td>{}</td></tr>\n\
         <tr><td>ACR START</td><td>{}</td></tr>\n<tr><td>ACR STOP</td><td>{}</td></tr>\n\
         <tr><td>CDRs</td><td>{}</td></tr>\n<tr><td>UDR profiles / unknown</td><td>{} / {}</td></tr>\n\
         <tr><td>ACR duplicates</td><td>{}</td></tr>\n<tr><td>AS outbox left</td><td>{}</td></tr>\n</table>",
        a.authorised,
        a.refused_total,
        a.accounted_sessions,
        a.unaccounted_sessions,
        a.acr_start,
        a.acr_stop,
        a.cdrs,
        a.udr_profiles,
        a.udr_unknown,
        a.acr_duplicates,
        a.outbox_left
    );
    if !a.as_counters.is_empty() {
        p.push_str("<table><tr><th>AS counter</th><th>value</th></tr>\n");
        for (k, v) in &a.as_counters {
            let _ = writeln!(p, "<tr><td><code>{}</code></td><td>{v}</td></tr>", esc(k));
        }
        p.push_str("</table>\n");
    }
}

/// What the lab measured of its RELOAD overlay (`[overlay]`): filled by `lab`, kept in
/// the raw stats (`raw.overlay`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OverlayFigures {
    /// Plain overlay peers the lab ran.
    pub peers: usize,
    /// ASes on the overlay.
    pub ases: usize,
    /// Viewers that ran at each AS (index = AS).
    pub viewers_per_as: Vec<u64>,
    /// Each personal channel and when the lab saw it listed at each AS.
    pub channels: Vec<OverlayChannel>,
    /// Joins and zaps at one AS of a channel owned by another: ok.
    pub cross_as_ok: u64,
    /// ... failed (no answer, error or no media).
    pub cross_as_failed: u64,
    /// ... refused (403).
    pub cross_as_refused: u64,
    /// Each AS's `as_overlay_*` counters (its `/metrics`), index = AS.
    pub as_counters: Vec<BTreeMap<String, u64>>,
    /// What went wrong setting up the cross-AS part, if anything.
    pub error: Option<String>,
}

/// A personal channel of an overlay lab: `listed_ms[k]` is when it first appeared in AS
/// `k`'s `GET /api/channels` (ms since the lab's first poll; each AS polled every 10 ms).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OverlayChannel {
    /// Channel id.
    pub id: String,
    /// The AS it was created at.
    pub home: usize,
    /// First seen at each AS, ms (`None`: never listed there).
    pub listed_ms: Vec<Option<f64>>,
}

impl OverlayChannel {
    /// Directory propagation times seen by the lab: listed at each other AS minus listed at
    /// the home AS, ms (`None` for an AS it never reached).
    #[must_use]
    pub fn propagation_ms(&self) -> Vec<Option<f64>> {
        let home = self.listed_ms.get(self.home).copied().flatten();
        self.listed_ms
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != self.home)
            .map(|(_, t)| Some((*t)? - home?).map(|d| d.max(0.0)))
            .collect()
    }
}

/// The overlay part of the summary (`overlay` in `report.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverlaySummary {
    /// Plain overlay peers.
    pub peers: usize,
    /// ASes.
    pub ases: usize,
    /// Viewers per AS.
    pub viewers_per_as: Vec<u64>,
    /// Personal channels seen.
    pub channels: usize,
    /// (channel, other AS) pairs where the channel was listed.
    pub listed: u64,
    /// ... where it never was.
    pub not_listed: u64,
    /// Home listing -> listed at another AS, ms (10 ms polling resolution).
    pub propagation_ms: Dist,
    /// Cross-AS joins and zaps.
    pub cross_as: Counts,
    /// Each AS's `as_overlay_*` counters.
    pub as_counters: Vec<BTreeMap<String, u64>>,
    /// Setup error, if any.
    pub error: Option<String>,
}

impl OverlaySummary {
    /// Reduces the lab's figures.
    #[must_use]
    pub fn of(o: &OverlayFigures) -> Self {
        let props: Vec<Option<f64>> = o
            .channels
            .iter()
            .flat_map(OverlayChannel::propagation_ms)
            .collect();
        let samples: Vec<f64> = props.iter().flatten().copied().collect();
        Self {
            peers: o.peers,
            ases: o.ases,
            viewers_per_as: o.viewers_per_as.clone(),
            channels: o.channels.len(),
            listed: samples.len() as u64,
            not_listed: (props.len() - samples.len()) as u64,
            propagation_ms: Dist::of(&samples),
            cross_as: Counts {
                ok: o.cross_as_ok,
                failed: o.cross_as_failed,
                refused: o.cross_as_refused,
            },
            as_counters: o.as_counters.clone(),
            error: o.error.clone(),
        }
    }
}

fn overlay_section(p: &mut String, s: &Summary) {
    let Some(o) = &s.overlay else { return };
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    let d = &o.propagation_ms;
    let _ = writeln!(
        p,
        "<h2>Overlay (RELOAD)</h2>\n<table><tr><th>figure</th><th>value</th></tr>\n\
         <tr><td>overlay peers / ASes</td><td>{} / {}</td></tr>\n\
         <tr><td>viewers per AS</td><td>{:?}</td></tr>\n\
         <tr><td>personal channels</td><td>{}</td></tr>\n\
         <tr><td>listed at another AS / never</td><td>{} / {}</td></tr>\n\
         <tr><td>propagation ms (n, p50, p99, max)</td><td>{}, {}, {}, {}</td></tr>\n\
         <tr><td>cross-AS joins ok / failed / refused</td><td>{} / {} / {}</td></tr>\n</table>",
        o.peers,
        o.ases,
        o.viewers_per_as,
        o.channels,
        o.listed,
        o.not_listed,
        d.count,
        ms(d.p50),
        ms(d.p99),
        ms(d.max),
        o.cross_as.ok,
        o.cross_as.failed,
        o.cross_as.refused
    );
    if let Some(e) = &o.error {
        let _ = writeln!(p, "<p class=\"fail\">{}</p>", esc(e));
    }
    if !o.as_counters.is_empty() {
        p.push_str("<table><tr><th>AS counter</th>");
        for k in 0..o.as_counters.len() {
            let _ = write!(p, "<th>AS {k}</th>");
        }
        p.push_str("</tr>\n");
        let mut names: Vec<&String> = o.as_counters.iter().flat_map(BTreeMap::keys).collect();
        names.sort();
        names.dedup();
        for n in names {
            let _ = write!(p, "<tr><td><code>{}</code></td>", esc(n));
            for c in &o.as_counters {
                let _ = write!(p, "<td>{}</td>", c.get(n).copied().unwrap_or(0));
            }
            p.push_str("</tr>\n");
        }
        p.push_str("</table>\n");
    }
}

fn moves_section(p: &mut String, stats: &RunStats, s: &Summary) -> Result<(), Error> {
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    p.push_str("<h2>Relay faults and moves</h2>\n");
    if !s.faults.is_empty() {
        p.push_str("<table><tr><th>fault</th><th>at s</th><th>target</th><th>active sessions</th><th>viewers hit</th><th>result</th></tr>\n");
        for f in &s.faults {
            let _ = writeln!(
                p,
                "<tr><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&f.kind),
                f.t_s,
                f.target,
                f.active,
                f.viewers.map_or_else(|| "-".into(), |n| n.to_string()),
                esc(&f.result)
            );
        }
        p.push_str("</table>\n");
    }
    let _ = writeln!(
        p,
        "<p>{} moves ok, {} failed; {} viewers moved. Gap across a move (last packet of the old relay to first of the new): p50 {} ms, p99 {} ms, max {} ms. Moved viewers' longest gap: p50 {} ms, p99 {} ms, max {} ms.</p>",
        s.moves.ok,
        s.moves.failed,
        s.moves.viewers,
        ms(s.moves.gap_ms.p50),
        ms(s.moves.gap_ms.p99),
        ms(s.moves.gap_ms.max),
        ms(s.moves.viewer_gap_ms.p50),
        ms(s.moves.viewer_gap_ms.p99),
        ms(s.moves.viewer_gap_ms.max)
    );
    let gaps = moved_gaps(stats);
    p.push_str("<div class=\"plots\">\n");
    figure(
        p,
        "moved viewers' longest gap: histogram (ms)",
        histogram_svg("moved_gap_ms", &gaps)?,
    );
    figure(
        p,
        "moved viewers' longest gap: CDF (ms)",
        cdf_svg("moved_gap_ms", &gaps)?,
    );
    p.push_str("</div>\n");
    Ok(())
}

fn votes_section(p: &mut String, s: &Summary) {
    let Some(v) = &s.votes else { return };
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.0} ms"));
    let _ = writeln!(
        p,
        "<h2>Votes</h2>\n<p>{} viewers meant to vote; {} votes cast (RTCP APP <code>VOTE</code>, repeated in every compound until the poll closed), {} missed (no polled channel watched in the window). The AS's tally: {} votes, <span class=\"{}\">{}</span>; last vote to exact tally: {} ({} reads of <code>GET /api/polls/{{id}}</code>).{}</p>",
        v.voters,
        v.cast,
        v.missed,
        v.tallied,
        if v.exact { "pass" } else { "fail" },
        if v.exact { "exact" } else { "NOT exact" },
        ms(v.time_to_exact_ms),
        v.tally_reads,
        v.error
            .as_ref()
            .map_or_else(String::new, |e| format!(" Error: {}", esc(e)))
    );
    for poll in &v.polls {
        let _ = writeln!(
            p,
            "<h3>Poll {} on {}</h3>\n<table><tr><th>option</th><th>cast</th><th>AS tally</th><th></th></tr>",
            poll.poll,
            esc(&poll.channel)
        );
        for (k, label) in poll.options.iter().enumerate() {
            let c = poll.cast.get(k).copied().unwrap_or(0);
            let t = poll.tally.get(k).copied().unwrap_or(0);
            let _ = writeln!(
                p,
                "<tr><td>{k}: {}</td><td>{c}</td><td>{t}</td><td class=\"{}\">{}</td></tr>",
                esc(label),
                if c == t { "pass" } else { "fail" },
                if c == t { "=" } else { "differs" }
            );
        }
        if poll.undeclared > 0 {
            let _ = writeln!(
                p,
                "<tr><td>undeclared options</td><td>0</td><td>{}</td><td class=\"fail\">differs</td></tr>",
                poll.undeclared
            );
        }
        p.push_str("</table>\n");
        figure(
            p,
            &format!(
                "poll {}: votes cast (grey) and the AS's tally (blue) per option",
                poll.poll
            ),
            vote_bars_svg(poll),
        );
    }
}

/// Grouped bars, cast beside tally per option, as a small hand-written SVG.
fn vote_bars_svg(poll: &crate::stats::PollFigures) -> String {
    let (w, h, top, bottom, left) = (W as f64, 200.0, 10.0, 30.0, 40.0);
    let n = poll.options.len().max(1) as f64;
    let max = poll
        .cast
        .iter()
        .chain(&poll.tally)
        .copied()
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let slot = (w - left - 10.0) / n;
    let bar = slot * 0.35;
    let scale = (h - top - bottom) / max;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
         <line x1=\"{left}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{y0}\" stroke=\"black\"/>\
         <text x=\"2\" y=\"{ty}\" font-size=\"11\" font-family=\"sans-serif\">{max:.0}</text>",
        y0 = h - bottom,
        x1 = w - 10.0,
        ty = top + 10.0
    );
    for (k, label) in poll.options.iter().enumerate() {
        let x = left + slot * k as f64 + slot * 0.1;
        for (j, (v, colour)) in [
            (poll.cast.get(k).copied().unwrap_or(0), "#999"),
            (poll.tally.get(k).copied().unwrap_or(0), "#36c"),
        ]
        .into_iter()
        .enumerate()
        {
            let bh = v as f64 * scale;
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{bh:.1}\" fill=\"{colour}\"><title>{v}</title></rect>",
                x + j as f64 * bar,
                h - bottom - bh
            );
        }
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" font-family=\"sans-serif\">{}</text>",
            x,
            h - bottom + 14.0,
            esc(label)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn feedback_section(p: &mut String, s: &Summary) {
    if s.rtcp.compounds == 0 && s.quality.is_empty() {
        return;
    }
    let r = &s.rtcp;
    let _ = writeln!(
        p,
        "<h2>RTCP feedback</h2>\n<p>Viewers sent {} RTCP compounds ({} octets; RR + SDES CNAME at the RFC 3550 interval, {} with BYE, {} with APP <code>VOTE</code>) and received {} sender reports and {} RSIs.</p>",
        r.compounds, r.bytes, r.byes, r.vote_packets, r.srs_received, r.rsis_received
    );
    if s.quality.is_empty() {
        return;
    }
    p.push_str("<p>Quality per channel as the AS reports it (<code>GET /api/channels/{id}/quality</code>, merged over relays; each figure is the histogram bin holding the quantile, [from, to)):</p>\n<table><tr><th>channel</th><th>read at s</th><th>relays</th><th>viewers reporting</th><th>heard</th><th>voters</th><th>loss median bin /256</th><th>loss p95 bin</th><th>jitter median bin (ts)</th><th>jitter p95 bin</th><th>RTT median bin ms</th><th>RTT p95 bin ms</th><th>with RTT</th></tr>\n");
    let bin =
        |b: Option<[u32; 2]>| b.map_or_else(|| "-".to_string(), |[f, t]| format!("[{f}, {t})"));
    for q in &s.quality {
        let _ = writeln!(
            p,
            "<tr><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&q.channel),
            q.at_s,
            q.relays,
            q.viewers_reporting,
            q.viewers_heard,
            q.voters,
            bin(q.loss_median_bin),
            bin(q.loss_p95_bin),
            bin(q.jitter_median_bin),
            bin(q.jitter_p95_bin),
            bin(q.rtt_ms_median_bin),
            bin(q.rtt_ms_p95_bin),
            q.rtt_count
        );
    }
    p.push_str("</table>\n");
}

fn personal_section(p: &mut String, s: &Summary) {
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    let c = &s.personal;
    let _ = writeln!(
        p,
        "<h2>Personal channels</h2>\n<p>{} producers, {} personal channels created ({} failed), {} RTP packets sent, {} ingest moves ({} failed); {} joins/zaps reached a personal channel; first frame p50 {} ms, p99 {} ms (n={}).</p>",
        c.producers,
        c.channels_created,
        c.channels_failed,
        c.packets_sent,
        c.ingest_moves.ok,
        c.ingest_moves.failed,
        c.viewers,
        ms(c.first_frame_ms.p50),
        ms(c.first_frame_ms.p99),
        c.first_frame_ms.count
    );
}

fn worst_viewers(p: &mut String, stats: &RunStats) {
    if stats.viewers.is_empty() {
        return;
    }
    let mut v: Vec<_> = stats.viewers.iter().collect();
    v.sort_by(|a, b| b.gap_ms_max.total_cmp(&a.gap_ms_max));
    p.push_str("<h3>Worst viewers by longest gap</h3>\n<table><tr><th>UE</th><th>packets</th><th>lost</th><th>jitter ms</th><th>longest gap ms</th></tr>\n");
    for x in v.iter().take(10) {
        let _ = writeln!(
            p,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.1}</td></tr>",
            x.ue, x.packets, x.lost, x.jitter_ms, x.gap_ms_max
        );
    }
    p.push_str("</table>\n");
}

fn figure(p: &mut String, caption: &str, svg: String) {
    let _ = writeln!(
        p,
        "<figure>{svg}<figcaption>{}</figcaption></figure>",
        esc(caption)
    );
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn plot_err<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::Plot(what, e.to_string())
}

/// An SVG saying there is nothing to plot.
fn empty_svg(what: &'static str, title: &str) -> Result<String, Error> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err(what))?;
        root.draw(&Text::new(
            format!("{title}: no samples"),
            (20, (H / 2) as i32),
            ("sans-serif", 16).into_font(),
        ))
        .map_err(plot_err(what))?;
        root.present().map_err(plot_err(what))?;
    }
    Ok(buf)
}

/// Upper end of an axis: a little above `max`, never zero-width.
fn upper(max: f64) -> f64 {
    if max.is_finite() && max > 0.0 {
        max * 1.05
    } else {
        1.0
    }
}

fn finite_sorted(samples: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// Histogram with up to 40 equal bins from 0 to the largest sample.
fn histogram_svg(what: &'static str, samples: &[f64]) -> Result<String, Error> {
    let v = finite_sorted(samples);
    let Some(&max) = v.last() else {
        return empty_svg(what, what);
    };
    let axis = MsAxis::new(&v);
    // Linear: outliers (beyond twice the p99) would squash the body into one bar, so they are
    // left out of the bins and counted in the caption; the CDF beside shows them. Log: bins
    // of equal width in log10(ms) hold the whole tail.
    let p99 = percentile(&v, 99.0).unwrap_or(max);
    let hi = if !axis.log && max > 2.0 * p99 && p99 > 0.0 {
        upper(2.0 * p99)
    } else {
        axis.hi
    };
    let lo = axis.lo;
    let bins = 40usize;
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0u64; bins];
    let mut beyond = 0usize;
    for x in &v {
        let t = axis.f(*x);
        if t > hi {
            beyond += 1;
            continue;
        }
        let i = (((t - lo) / width).max(0.0) as usize).min(bins - 1);
        counts[i] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(1).max(1) as f64 * 1.1;
    let mut caption = format!("{what} histogram (n={}", v.len());
    if beyond > 0 {
        let _ = write!(caption, ", {beyond} above {hi:.0} ms not shown");
    }
    if axis.log {
        caption.push_str(", log scale");
    }
    caption.push(')');
    let x_label = |x: &f64| axis.label(*x);
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err(what))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(50)
            .build_cartesian_2d(lo..hi, 0.0..top)
            .map_err(plot_err(what))?;
        chart
            .configure_mesh()
            .x_desc("ms")
            .y_desc("samples")
            .x_label_formatter(&x_label)
            .x_labels(axis.labels())
            .draw()
            .map_err(plot_err(what))?;
        chart
            .draw_series(
                counts
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| **c > 0)
                    .map(|(i, c)| {
                        let x0 = lo + i as f64 * width;
                        Rectangle::new([(x0, 0.0), (x0 + width, *c as f64)], BLUE.mix(0.6).filled())
                    }),
            )
            .map_err(plot_err(what))?;
        root.present().map_err(plot_err(what))?;
    }
    Ok(buf)
}

/// The x axis of a latency plot. A long tail (max far beyond the median) squeezes the body of
/// a linear plot against the axis: then x is log10(ms), labelled in ms, one label a decade.
#[derive(Debug, Clone, Copy)]
struct MsAxis {
    log: bool,
    /// Smallest positive sample: where log10 starts (zero samples are drawn there).
    floor: f64,
    lo: f64,
    hi: f64,
}

impl MsAxis {
    /// For sorted, finite, non-empty samples.
    fn new(v: &[f64]) -> Self {
        let max = v.last().copied().unwrap_or(1.0);
        let median = percentile(v, 50.0).unwrap_or(max);
        let log = median > 0.0 && max / median > 20.0;
        let floor = v
            .iter()
            .copied()
            .find(|x| *x > 0.0)
            .unwrap_or(1.0)
            .max(1e-3);
        if log {
            Self {
                log,
                floor,
                lo: floor.log10(),
                hi: upper(max).log10(),
            }
        } else {
            Self {
                log,
                floor,
                lo: v.first().copied().unwrap_or(0.0).min(0.0),
                hi: upper(max),
            }
        }
    }

    /// Plot coordinate of `ms`.
    fn f(&self, ms: f64) -> f64 {
        if self.log {
            ms.max(self.floor).log10()
        } else {
            ms
        }
    }

    /// Label (in ms) at plot coordinate `x`.
    fn label(&self, x: f64) -> String {
        let ms = if self.log { 10f64.powf(x) } else { x };
        if ms >= 100.0 || ms == 0.0 {
            format!("{ms:.0}")
        } else if ms >= 1.0 {
            format!("{ms:.1}")
        } else {
            format!("{ms:.2}")
        }
    }

    /// How many labels to ask plotters for.
    fn labels(&self) -> usize {
        if self.log {
            ((self.hi - self.lo).ceil() as usize + 1).max(2)
        } else {
            10
        }
    }
}

/// Empirical CDF (at most ~1000 points), with the p50 and p99 marked.
fn cdf_svg(what: &'static str, samples: &[f64]) -> Result<String, Error> {
    let v = finite_sorted(samples);
    if v.is_empty() {
        return empty_svg(what, what);
    }
    let n = v.len();
    let axis = MsAxis::new(&v);
    let (lo, hi) = (axis.lo, axis.hi);
    let step = n.div_ceil(1000).max(1);
    let mut pts: Vec<(f64, f64)> = vec![(lo, 0.0)];
    for i in (0..n).step_by(step).chain(std::iter::once(n - 1)) {
        pts.push((axis.f(v[i]), (i + 1) as f64 / n as f64));
    }
    let caption = if axis.log {
        format!("{what} CDF (n={n}, log scale)")
    } else {
        format!("{what} CDF (n={n})")
    };
    let x_label = |x: &f64| axis.label(*x);
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err(what))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(50)
            .build_cartesian_2d(lo..hi, 0.0..1.0)
            .map_err(plot_err(what))?;
        chart
            .configure_mesh()
            .x_desc("ms")
            .y_desc("fraction")
            .x_label_formatter(&x_label)
            .x_labels(axis.labels())
            .draw()
            .map_err(plot_err(what))?;
        chart
            .draw_series(LineSeries::new(pts, RED.stroke_width(2)))
            .map_err(plot_err(what))?;
        for (p, color) in [(50.0, GREEN), (99.0, MAGENTA)] {
            if let Some(x) = percentile(&v, p) {
                chart
                    .draw_series(LineSeries::new(
                        [(axis.f(x), 0.0), (axis.f(x), 1.0)],
                        color.mix(0.7).stroke_width(1),
                    ))
                    .map_err(plot_err(what))?
                    .label(format!("p{p} = {x:.1} ms"))
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                    });
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err(what))?;
        root.present().map_err(plot_err(what))?;
    }
    Ok(buf)
}

fn timeline_rates_svg(stats: &RunStats) -> Result<String, Error> {
    const WHAT: &str = "timeline";
    let t = &stats.timeline;
    if t.is_empty() {
        return empty_svg(WHAT, "timeline");
    }
    let t_max = upper(t.iter().map(|p| p.t_s).fold(0.0, f64::max));
    let y_max = upper(
        t.iter()
            .map(|p| p.joins.max(p.zaps).max(p.leaves).max(p.failures) as f64)
            .fold(0.0, f64::max),
    ) * 1.25; // room for the legend
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err(WHAT))?;
        let mut chart = ChartBuilder::on(&root)
            .caption("joins, zaps, leaves per second", ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..t_max, 0.0..y_max)
            .map_err(plot_err(WHAT))?;
        chart
            .configure_mesh()
            .x_desc("s")
            .y_desc("per second")
            .draw()
            .map_err(plot_err(WHAT))?;
        type Get = fn(&crate::stats::TimelinePoint) -> u64;
        let series: [(&str, RGBColor, Get); 4] = [
            ("joins", BLUE, |p| p.joins),
            ("zaps", RED, |p| p.zaps),
            ("leaves", GREEN, |p| p.leaves),
            ("failures", BLACK, |p| p.failures),
        ];
        for (name, color, get) in series {
            chart
                .draw_series(LineSeries::new(
                    t.iter().map(|p| (p.t_s, get(p) as f64)),
                    color.stroke_width(2),
                ))
                .map_err(plot_err(WHAT))?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err(WHAT))?;
        root.present().map_err(plot_err(WHAT))?;
    }
    Ok(buf)
}

fn timeline_active_svg(stats: &RunStats) -> Result<String, Error> {
    const WHAT: &str = "active";
    let t = &stats.timeline;
    if t.is_empty() {
        return empty_svg(WHAT, "active sessions");
    }
    let t_max = upper(t.iter().map(|p| p.t_s).fold(0.0, f64::max));
    let y_max = upper(t.iter().map(|p| p.active as f64).fold(0.0, f64::max));
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err(WHAT))?;
        let mut chart = ChartBuilder::on(&root)
            .caption("active sessions", ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..t_max, 0.0..y_max)
            .map_err(plot_err(WHAT))?;
        chart
            .configure_mesh()
            .x_desc("s")
            .y_desc("sessions")
            .draw()
            .map_err(plot_err(WHAT))?;
        chart
            .draw_series(AreaSeries::new(
                t.iter().map(|p| (p.t_s, p.active as f64)),
                0.0,
                BLUE.mix(0.25),
            ))
            .map_err(plot_err(WHAT))?;
        chart
            .draw_series(LineSeries::new(
                t.iter().map(|p| (p.t_s, p.active as f64)),
                BLUE.stroke_width(2),
            ))
            .map_err(plot_err(WHAT))?;
        root.present().map_err(plot_err(WHAT))?;
    }
    Ok(buf)
}

/// Per-viewer values ranked worst first (x: rank, y: value), at most ~1000 points.
fn ranked_svg(what: &'static str, unit: &str, values: &mut [f64]) -> Result<String, Error> {
    values.sort_by(|a, b| b.total_cmp(a));
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return empty_svg(what, what);
    }
    let n = v.len();
    let step = n.div_ceil(1000).max(1);
    let pts: Vec<(f64, f64)> = (0..n)
        .step_by(step)
        .chain(std::iter::once(n - 1))
        .map(|i| (i as f64 + 1.0, v[i]))
        .collect();
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err(what))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{what} per viewer ({n} viewers)"),
                ("sans-serif", 16),
            )
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..(n as f64 + 1.0), 0.0..upper(v[0]))
            .map_err(plot_err(what))?;
        chart
            .configure_mesh()
            .x_desc("viewer rank")
            .y_desc(unit)
            .draw()
            .map_err(plot_err(what))?;
        if n <= 200 {
            chart
                .draw_series(pts.iter().map(|&(x, y)| {
                    Rectangle::new([(x - 0.4, 0.0), (x + 0.4, y)], BLUE.mix(0.6).filled())
                }))
                .map_err(plot_err(what))?;
        } else {
            chart
                .draw_series(AreaSeries::new(pts, 0.0, BLUE.mix(0.3)).border_style(BLUE))
                .map_err(plot_err(what))?;
        }
        root.present().map_err(plot_err(what))?;
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{TimelinePoint, ViewerStats};

    fn synthetic() -> RunStats {
        let mut s = RunStats {
            scenario: "synthetic".into(),
            ues: 100,
            duration_s: 30.0,
            joins_ok: 100,
            joins_failed: 2,
            zaps_ok: 50,
            zaps_failed: 1,
            registrations_ok: 100,
            registrations_failed: 0,
            // 1..=100 ms: nearest-rank p50 = 50, p90 = 90, p99 = 99.
            join_ms: (1..=100).map(f64::from).collect(),
            zap_ms: (1..=100).rev().map(|x| f64::from(x) * 2.0).collect(),
            first_packet_ms: vec![3.0, 1.0, 2.0],
            first_frame_ms: (1..=200).map(|x| f64::from(x) / 2.0).collect(),
            viewers: (0..100)
                .map(|i| ViewerStats {
                    ue: i,
                    packets: 1000,
                    lost: u64::from(i == 7) * 10,
                    jitter_ms: 0.5,
                    gap_ms_max: if i == 42 { 1234.5 } else { 40.0 },
                    ..ViewerStats::default()
                })
                .collect(),
            timeline: (1u32..=30)
                .map(|t| TimelinePoint {
                    t_s: f64::from(t),
                    joins: if t <= 10 { 10 } else { 0 },
                    zaps: if t > 10 { 2 } else { 0 },
                    leaves: if t > 25 { 20 } else { 0 },
                    active: (u64::from(t.min(10)) * 10).saturating_sub(if t > 25 {
                        u64::from(t - 25) * 20
                    } else {
                        0
                    }),
                    ..TimelinePoint::default()
                })
                .collect(),
            ..RunStats::default()
        };
        s.failures.insert("503".into(), 2);
        s.failures.insert("timeout".into(), 1);
        s
    }

    #[test]
    fn json_has_the_issue_keys_and_right_percentiles() {
        let stats = synthetic();
        let sum = Summary::new(&stats, &Thresholds::default());
        let j = json(&stats, &sum).unwrap();
        assert_eq!(j["joins"]["ok"], 100);
        assert_eq!(j["joins"]["failed"], 2);
        assert_eq!(j["ues"], 100);
        assert_eq!(j["duration_s"], 30.0);
        assert_eq!(j["join_ms"]["p50"], 50.0);
        assert_eq!(j["join_ms"]["p90"], 90.0);
        assert_eq!(j["join_ms"]["p99"], 99.0);
        assert_eq!(j["join_ms"]["count"], 100);
        assert_eq!(j["zap_ms"]["p50"], 100.0);
        assert_eq!(j["zap_ms"]["p99"], 198.0);
        assert_eq!(j["zap_ms"]["max"], 200.0);
        assert_eq!(j["first_frame_ms"]["p50"], 50.0);
        assert_eq!(j["first_frame_ms"]["p99"], 99.0);
        assert_eq!(j["first_packet_ms"]["p50"], 2.0);
        assert_eq!(j["gap_ms"]["max"], 1234.5);
        assert_eq!(j["loss"]["lost"], 10);
        assert_eq!(j["loss"]["viewers_with_loss"], 1);
        assert_eq!(j["active_max"], 100);
        assert_eq!(j["failures"]["503"], 2);
        // The raw stats ride along.
        assert_eq!(j["raw"]["join_ms"].as_array().unwrap().len(), 100);
        assert_eq!(j["raw"]["viewers"][42]["gap_ms_max"], 1234.5);
        // Default thresholds: no failed join; two failed, so the run fails.
        assert_eq!(j["pass"], false);
        assert_eq!(j["checks"][0]["name"], "joins.failed");
        assert_eq!(j["checks"][0]["pass"], false);
    }

    #[test]
    fn empty_samples_are_null_not_zero() {
        let stats = RunStats::default();
        let sum = Summary::new(&stats, &Thresholds::default());
        let j = json(&stats, &sum).unwrap();
        assert!(j["zap_ms"]["p50"].is_null());
        assert_eq!(j["zap_ms"]["count"], 0);
        assert_eq!(j["pass"], true);
        // Pages for an empty run still render.
        let page = html(&stats, &sum).unwrap();
        assert!(page.contains("no samples"));
    }

    #[test]
    fn thresholds_pass_and_fail() {
        let mut stats = synthetic();
        stats.joins_failed = 0;
        let t = Thresholds {
            zap_ms_p99: Some(198.0),
            first_frame_ms_p99: Some(50.0),
            gap_ms_max: Some(2000.0),
            loss_ratio_max: Some(0.001),
            ..Thresholds::default()
        };
        let sum = Summary::new(&stats, &t);
        let by = |n: &str| sum.checks.iter().find(|c| c.name == n).unwrap().pass;
        assert!(by("joins.failed"));
        assert!(by("zap_ms.p99"), "limit is inclusive");
        assert!(!by("first_frame_ms.p99"));
        assert!(by("gap_ms.max"));
        assert!(by("loss.ratio"), "10 of 100010 is under 0.1 %");
        assert!(!sum.pass);
        assert!(sum.text().contains("[FAIL] first_frame_ms.p99"));
        let at_least = Thresholds {
            min_zaps_ok: Some(51),
            ..Thresholds::default()
        };
        let sum = Summary::new(&stats, &at_least);
        let c = sum.checks.iter().find(|c| c.name == "zaps.ok").unwrap();
        assert_eq!((c.bound, c.value, c.pass), (Bound::Min, Some(50.0), false));
        // A limit on something never measured fails.
        let sum = Summary::new(&RunStats::default(), &t);
        assert!(
            !sum.checks
                .iter()
                .find(|c| c.name == "zap_ms.p99")
                .unwrap()
                .pass
        );
    }

    #[test]
    fn moves_faults_and_personal_channels_are_summed_checked_and_shown() {
        let mut stats = synthetic();
        stats.joins_failed = 0;
        for v in stats.viewers.iter_mut().take(30) {
            v.moves = 1;
            v.gap_ms_max = 120.0;
        }
        stats.moves_ok = 30;
        stats.move_gap_ms = vec![20.0; 30];
        stats.faults.push(crate::stats::FaultRecord {
            t_s: 20.0,
            kind: "stop_relay".into(),
            target: 0,
            result: "ok".into(),
            active: 100,
            viewers: Some(30),
        });
        stats.producers = 2;
        stats.personal_created = 2;
        stats.personal_viewers = 7;
        stats.personal_first_frame_ms = vec![3.0, 5.0];
        let t = Thresholds {
            moved_gap_ms_p99: Some(500.0),
            max_failed_moves: Some(0),
            min_moves_ok: Some(30),
            min_personal_viewers: Some(8),
            ..Thresholds::default()
        };
        let sum = Summary::new(&stats, &t);
        assert_eq!((sum.moves.ok, sum.moves.viewers), (30, 30));
        assert_eq!(
            sum.moves.viewer_gap_ms.max,
            Some(120.0),
            "only moved viewers"
        );
        assert_eq!(sum.moves.gap_ms.p99, Some(20.0));
        assert_eq!(sum.personal.viewers, 7);
        assert_eq!(sum.personal.first_frame_ms.count, 2);
        let by = |n: &str| sum.checks.iter().find(|c| c.name == n).unwrap().pass;
        assert!(by("moves.viewer_gap_ms.p99"));
        assert!(by("moves.failed"));
        assert!(by("moves.ok"));
        assert!(by("faults.failed"));
        assert!(!by("personal.viewers"), "7 < 8");
        let html = html(&stats, &sum).unwrap();
        assert!(html.contains("Relay faults and moves") && html.contains("Personal channels"));
        assert_eq!(
            html.matches("<svg").count(),
            14,
            "12 plots + the moved viewers' two"
        );
        let j = json(&stats, &sum).unwrap();
        assert_eq!(j["moves"]["ok"], 30);
        assert_eq!(j["personal"]["channels_created"], 2);
        // A fault that could not be injected fails the run.
        stats.faults[0].result = "relay 0: no such relay".into();
        let sum = Summary::new(&stats, &Thresholds::default());
        assert!(!sum.pass);
        assert!(sum.text().contains("[FAIL] faults.failed"));
    }

    #[test]
    fn html_is_self_contained_with_the_plots() {
        let stats = synthetic();
        let sum = Summary::new(&stats, &Thresholds::default());
        let page = html(&stats, &sum).unwrap();
        assert!(page.starts_with("<!DOCTYPE html>"));
        // 4 latencies x (histogram + CDF) + 2 timeline + 2 per-viewer.
        assert_eq!(page.matches("<svg").count(), 12);
        assert_eq!(page.matches("</svg>").count(), 12);
        for needle in [
            "join_ms histogram (n=100)",
            "first_packet_ms histogram (n=3)",
            "zap_ms CDF (n=100)",
            "first_frame_ms CDF (n=200)",
            "joins, zaps, leaves per second",
            "active sessions",
            "gap_ms_max per viewer (100 viewers)",
            "<td>joins</td><td>100</td><td>2</td>",
            "class=\"fail\">FAIL",
            "1234.5",
        ] {
            assert!(page.contains(needle), "missing {needle:?}");
        }
        assert!(!page.contains("<script"), "no script");
        // plotters writes the SVG namespaces; nothing else points outside the page.
        let stripped = page
            .replace("http://www.w3.org/2000/svg", "")
            .replace("http://www.w3.org/1999/xlink", "");
        assert!(!stripped.contains("http"), "no external resource");
    }

    #[test]
    fn histogram_leaves_outliers_to_the_cdf() {
        let mut samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let svg = histogram_svg("join_ms", &samples).unwrap();
        assert!(svg.contains("join_ms histogram (n=100)"), "{svg}");
        // 1..=100 and 500: linear, the outlier left out.
        samples.push(500.0);
        let svg = histogram_svg("join_ms", &samples).unwrap();
        assert!(svg.contains("(n=101, 1 above 210 ms not shown)"), "{svg}");
        // A tail far beyond the median: log scale, nothing left out.
        samples.push(10_000.0);
        let svg = histogram_svg("join_ms", &samples).unwrap();
        assert!(
            svg.contains("join_ms histogram (n=102, log scale)"),
            "{svg}"
        );
    }

    #[test]
    fn cdf_of_a_long_tail_is_log_scale() {
        let mut samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let svg = cdf_svg("zap_ms", &samples).unwrap();
        assert!(svg.contains("zap_ms CDF (n=100)"), "{svg}");
        samples.push(5000.0);
        let svg = cdf_svg("zap_ms", &samples).unwrap();
        assert!(svg.contains("zap_ms CDF (n=101, log scale)"));
        // Axis labels are in ms, not in log10(ms).
        assert!(svg.contains("\n100\n") && svg.contains("\n1000\n"), "{svg}");
    }

    #[test]
    fn write_puts_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let stats = synthetic();
        let sum = Summary::new(&stats, &Thresholds::default());
        let w = write(&dir.path().join("out"), &stats, &sum).unwrap();
        let j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&w.json).unwrap()).unwrap();
        assert_eq!(j["zap_ms"]["p99"], 198.0);
        assert!(std::fs::read_to_string(&w.html).unwrap().contains("<svg"));
    }

    #[test]
    fn overlay_figures_are_summarised_checked_and_shown() {
        let mut stats = synthetic();
        let t = Thresholds {
            max_failed_cross_as: Some(0),
            min_cross_as_ok: Some(1),
            max_failed_joins: None,
            ..Thresholds::default()
        };
        // No overlay figures: both checks fail (never measured).
        let s = Summary::new(&stats, &t);
        assert!(!s.pass);
        assert!(s.overlay.is_none());
        stats.overlay = Some(OverlayFigures {
            peers: 5,
            ases: 3,
            viewers_per_as: vec![4, 3, 3],
            channels: vec![
                OverlayChannel {
                    id: "a".into(),
                    home: 0,
                    listed_ms: vec![Some(100.0), Some(130.0), None],
                },
                OverlayChannel {
                    id: "b".into(),
                    home: 0,
                    listed_ms: vec![Some(200.0), Some(210.0), Some(250.0)],
                },
            ],
            cross_as_ok: 7,
            cross_as_failed: 0,
            cross_as_refused: 1,
            as_counters: vec![BTreeMap::from([(
                "as_overlay_pulls_started_total".to_owned(),
                2,
            )])],
            error: None,
        });
        let s = Summary::new(&stats, &t);
        assert!(s.pass, "{:?}", s.checks);
        let o = s.overlay.as_ref().unwrap();
        assert_eq!((o.listed, o.not_listed, o.channels), (3, 1, 2));
        assert_eq!(o.propagation_ms.count, 3);
        assert_eq!(o.propagation_ms.max, Some(50.0));
        assert_eq!(o.propagation_ms.min, Some(10.0));
        assert_eq!(
            (o.cross_as.ok, o.cross_as.failed, o.cross_as.refused),
            (7, 0, 1)
        );
        let j = json(&stats, &s).unwrap();
        assert_eq!(j["overlay"]["cross_as"]["ok"], 7);
        assert_eq!(j["raw"]["overlay"]["channels"][1]["listed_ms"][2], 250.0);
        let h = html(&stats, &s).unwrap();
        assert!(h.contains("Overlay (RELOAD)") && h.contains("as_overlay_pulls_started_total"));
        assert!(s.text().contains("cross-AS joins 7 ok / 0 failed"));
        stats.overlay.as_mut().unwrap().cross_as_failed = 2;
        let s = Summary::new(&stats, &t);
        assert!(!s.pass);
        assert!(s
            .checks
            .iter()
            .any(|c| c.name == "overlay.cross_as.failed" && !c.pass));
    }

    #[test]
    fn refusals_and_aaa_figures_are_reported_and_checked() {
        let mut stats = synthetic();
        stats.joins_refused = 3;
        stats
            .joins_refused_by
            .insert("Unknown subscriber".into(), 3);
        stats.zaps_refused = 1;
        stats
            .zaps_refused_by
            .insert("Channel sport not in subscription".into(), 1);
        let t = Thresholds {
            min_authorised: Some(10),
            max_unaccounted: Some(0),
            ..Thresholds::default()
        };
        let sum = Summary::new(&stats, &t);
        let failed: Vec<&str> = sum
            .checks
            .iter()
            .filter(|c| !c.pass)
            .map(|c| c.name.as_str())
            .collect();
        assert!(
            failed.contains(&"aaa.authorised") && failed.contains(&"aaa.unaccounted_sessions"),
            "no AAA figures: the AAA checks cannot pass: {failed:?}"
        );
        stats.aaa = Some(crate::stats::AaaFigures {
            authorised: 12,
            refused_total: 4,
            accounted_sessions: 5,
            acr_start: 5,
            acr_stop: 5,
            cdrs: 10,
            ..Default::default()
        });
        let sum = Summary::new(&stats, &t);
        assert!(sum
            .checks
            .iter()
            .filter(|c| c.name.starts_with("aaa."))
            .all(|c| c.pass));
        assert_eq!((sum.joins.refused, sum.zaps.refused), (3, 1));
        assert!(sum
            .text()
            .contains("refused (403): joins 3 (Unknown subscriber: 3)"));
        let j = json(&stats, &sum).unwrap();
        assert_eq!(j["aaa"]["accounted_sessions"], 5);
        assert_eq!(j["refusals"]["joins"]["Unknown subscriber"], 3);
        let h = html(&stats, &sum).unwrap();
        assert!(h.contains("sessions accounted (START + STOP at the AAA)</td><td>5<"));
        assert!(h.contains("Channel sport not in subscription"));
    }

    #[test]
    fn votes_quality_and_rtcp_are_reported_and_checked() {
        let mut stats = synthetic();
        let t = Thresholds {
            max_failed_joins: None,
            votes_exact: Some(true),
            votes_time_to_exact_ms: Some(10_000.0),
            ..Thresholds::default()
        };
        let failed = |sum: &Summary| -> Vec<String> {
            sum.checks
                .iter()
                .filter(|c| !c.pass)
                .map(|c| c.name.clone())
                .collect()
        };
        assert_eq!(
            failed(&Summary::new(&stats, &t)),
            ["votes.exact", "votes.time_to_exact_ms"],
            "no vote figures: the vote checks cannot pass"
        );
        let poll = crate::stats::PollFigures {
            poll: 1,
            channel: "news".into(),
            options: vec!["a".into(), "b<".into()],
            cast: vec![5, 3],
            tally: vec![5, 2],
            undeclared: 0,
            relays: 1,
        };
        stats.votes = Some(crate::stats::VoteFigures {
            voters: 9,
            cast: 8,
            missed: 1,
            tallied: 7,
            exact: false,
            time_to_exact_ms: None,
            last_vote_s: Some(12.0),
            tally_reads: 300,
            polls: vec![poll],
            error: None,
        });
        stats.rtcp.compounds = 40;
        stats.quality.push(crate::stats::ChannelQualityFigures {
            channel: "news".into(),
            viewers_reporting: 9,
            rtt_ms_median: Some(25),
            ..Default::default()
        });
        let sum = Summary::new(&stats, &t);
        assert_eq!(failed(&sum), ["votes.exact", "votes.time_to_exact_ms"]);
        let h = html(&stats, &sum).unwrap();
        assert!(h.contains("<h2>Votes</h2>") && h.contains("NOT exact"));
        assert!(h.contains("<td>1: b&lt;</td><td>3</td><td>2</td><td class=\"fail\">differs"));
        assert!(h.contains("<h2>RTCP feedback</h2>") && h.contains("<td>news</td>"));
        assert!(sum
            .text()
            .contains("votes: 9 voters, 8 cast, 1 missed; AS tally 7 (NOT exact)"));
        let v = stats.votes.as_mut().unwrap();
        v.polls[0].tally = vec![5, 3];
        v.tallied = 8;
        v.exact = true;
        v.time_to_exact_ms = Some(150.0);
        let sum = Summary::new(&stats, &t);
        assert!(sum.pass, "{:?}", sum.checks);
        let j = json(&stats, &sum).unwrap();
        assert_eq!(j["votes"]["exact"], true);
        assert_eq!(j["votes"]["time_to_exact_ms"], 150.0);
        assert_eq!(j["quality"][0]["rtt_ms_median"], 25);
        assert_eq!(j["rtcp"]["compounds"], 40);
        // Slower than the limit fails.
        stats.votes.as_mut().unwrap().time_to_exact_ms = Some(12_000.0);
        assert_eq!(
            failed(&Summary::new(&stats, &t)),
            ["votes.time_to_exact_ms"]
        );
    }
}
