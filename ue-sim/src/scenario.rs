//! Scenarios: what a run does, read from TOML.
//!
//! A [`Scenario`] names the population (`ues`), the arrival rate of first joins, the channels
//! and their Zipf popularity, how long a viewer stays on a channel (dwell), what it does next
//! (zap with some probability and method, else leave), the run length, producers of personal
//! channels, faults to inject, and the thresholds that make the run fail
//! ([`Scenario::check`]). Every field has a default, so a scenario file only says what differs. Sampling ([`Scenario::pick_channel`], [`Scenario::dwell`]) takes the
//! caller's RNG so runs are reproducible from a seed.
//!
//! ```toml
//! name = "default"
//! ues = 50
//! duration_s = 40
//! arrival_rate = 10.0
//! [channels]
//! list = ["news", "sport"]
//! zipf_s = 1.0
//! [dwell]
//! distribution = "exponential"
//! mean_s = 5.0
//! [zap]
//! probability = 0.8
//! method = "mixed"
//! [producers]          # UEs creating personal channels (design "Personal channel")
//! count = 1
//! viewer_share = 0.3   # share of joins/zaps that go to personal channels
//! [[faults]]           # `ue-sim lab` only; the lab runs `relays` relays
//! at_s = 20.0
//! kind = "stop_relay"
//! relay = 0
//! [aaa]                # `ue-sim lab` only: the embedded Diameter AAA, a subscriber per UE
//! enabled = true
//! unknown_share = 0.2  # not subscribers: joins get 403 (counted as refused, not failed)
//! restricted_share = 0.2  # subscribers entitled to the first channel only
//! max_streams = 1
//! [rtcp]               # viewers' RTCP (RFC 3550 A.7 interval, RR + SDES, BYE on leave)
//! min_interval_s = 5.0
//! session_kbps = 2000
//! [votes]              # polls over the AS's HTTP API, votes as RTCP APP `VOTE`
//! viewers_voting = 40  # the first N viewers vote once each
//! options = ["red", "blue", "green"]
//! window_start_s = 5.0
//! window_s = 5.0
//! [thresholds]
//! max_joins_failed = 0
//! max_gap_ms_p99 = 500.0   # over the viewers a relay fault moved
//! min_authorised = 20      # joins and zaps the AS authorised ([aaa])
//! max_unaccounted = 0      # sessions without START + STOP at the AAA ([aaa])
//! votes_exact = true       # the AS's tally equals the votes cast ([votes])
//! max_votes_time_to_exact_ms = 10000.0
//! max_cross_as_joins_failed = 0  # [overlay]: joins at one AS of a channel of another
//! min_cross_as_joins = 1
//! [overlay]            # `ue-sim lab` only: a RELOAD overlay with several ASes
//! peers = 5            # plain overlay peers
//! ases = 2             # ASes on the overlay; viewer i at AS i % ases, producers at AS 0
//! ```

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::stats::{percentile, RunStats};
use crate::ue::ZapMethod;

/// Errors loading a scenario.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown fields.
    #[error("bad scenario: {0}")]
    Toml(#[from] toml::de::Error),
    /// Values out of range.
    #[error("bad scenario: {0}")]
    Invalid(String),
}

/// A load scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    /// Name shown in the report.
    pub name: String,
    /// Number of UEs.
    pub ues: usize,
    /// Run length in seconds (then every UE leaves).
    pub duration_s: f64,
    /// First joins per second (UE `i` starts at `i / arrival_rate`).
    pub arrival_rate: f64,
    /// Each UE sends REGISTER before it joins.
    pub register: bool,
    /// Share of UEs (0..=1) that SUBSCRIBE to the channel list.
    pub subscribe_share: f64,
    /// RNG seed (reproducible runs).
    pub seed: u64,
    /// Channels and popularity.
    pub channels: Channels,
    /// Time on a channel before the next action.
    pub dwell: Dwell,
    /// Zap behaviour.
    pub zap: Zap,
    /// Pass/fail limits.
    pub thresholds: Thresholds,
    /// UDP sockets for SIP shared by the UEs.
    pub sip_sockets: usize,
    /// UDP sockets for RTP shared by the UEs (told apart by the relay's per-viewer SSRC).
    pub rtp_sockets: usize,
    /// Relays the lab's AS runs (`relay.count`); only `ue-sim lab` uses it.
    pub relays: usize,
    /// The lab's relays form a relay tree (`[relay] tree`): each channel is ingested at one
    /// relay and pulled by the others while they have viewers of it.
    pub relay_tree: bool,
    /// Producers creating personal channels.
    pub producers: Producers,
    /// Faults injected during the run (`ue-sim lab` only).
    pub faults: Vec<Fault>,
    /// The lab's embedded AAA (Diameter Sh authorisation, Rf accounting); off by default.
    pub aaa: AaaScenario,
    /// Viewers' RTCP.
    pub rtcp: RtcpScenario,
    /// Polls and votes; none by default.
    pub votes: Option<Votes>,
    /// The AS's HTTP API (`host:port`) for polls and channel quality. `ue-sim lab` sets its
    /// own; `ue-sim run` needs it for `[votes]` and the quality summaries.
    pub api: Option<String>,
    /// `[overlay]`: the lab runs a RELOAD overlay with several ASes on it; none by default.
    pub overlay: Option<OverlayScenario>,
}

/// `[overlay]`: `ue-sim lab` starts `peers` plain RELOAD overlay peers and `ases` ASes with
/// `[overlay] enabled` bootstrapped to the first peer (one dev CA). Viewer `i` runs at AS
/// `i % ases`; the producers create their personal channels at AS 0 and the viewers at the
/// other ASes join those (cross-AS joins, pulled through the relay tree).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OverlayScenario {
    /// Plain overlay peers (no AS), 1..=64.
    pub peers: usize,
    /// AS instances on the overlay, 2..=16.
    pub ases: usize,
    /// Longest wait, seconds, for a personal channel to be listed at every other AS before
    /// that AS's viewers start anyway (their joins then fail and are counted).
    pub list_timeout_s: f64,
}

impl Default for OverlayScenario {
    fn default() -> Self {
        Self {
            peers: 3,
            ases: 2,
            list_timeout_s: 10.0,
        }
    }
}

/// `[rtcp]`: viewers' RTCP ([`crate::rtcp`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RtcpScenario {
    /// Send RTCP at all.
    pub enabled: bool,
    /// Minimum report interval, s (RFC 3550 `Tmin`; the first report after half of it).
    pub min_interval_s: f64,
    /// Session bandwidth, kbit/s, for the interval until the FT announces its own.
    pub session_kbps: f64,
}

impl Default for RtcpScenario {
    fn default() -> Self {
        let d = crate::rtcp::RtcpConfig::default();
        Self {
            enabled: d.enabled,
            min_interval_s: d.min_interval_s,
            session_kbps: d.session_bps / 1000.0,
        }
    }
}

impl RtcpScenario {
    /// The UEs' RTCP settings.
    #[must_use]
    pub fn config(&self) -> crate::rtcp::RtcpConfig {
        crate::rtcp::RtcpConfig {
            enabled: self.enabled,
            session_bps: self.session_kbps * 1000.0,
            min_interval_s: self.min_interval_s,
        }
    }
}

/// `[votes]`: at the start of the run ue-sim declares one poll per channel of `channels`
/// (`POST /api/polls`, ids `first_poll`, `first_poll + 1`, ...). Each of the first
/// `viewers_voting` viewers votes once, at a uniformly drawn instant of the window, for an
/// option drawn by `weights`, in the poll of the channel it watches then (a vote belongs to
/// the channel the viewer watches when it votes; one that watches no poll's channel then,
/// or is busy zapping, tries again every 200 ms until the window ends, else its vote is
/// counted as missed). The vote is repeated in the viewer's RTCP until `close_after_s`
/// after the window. After the last vote ue-sim polls `GET /api/polls/{id}` until every
/// tally equals the votes cast.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Votes {
    /// How many viewers vote (the first ones by index).
    pub viewers_voting: usize,
    /// Channels with a poll; empty: every channel of `[channels] list`.
    pub channels: Vec<String>,
    /// Id of the first poll.
    pub first_poll: u32,
    /// The question.
    pub question: String,
    /// Option labels (a vote sends the index).
    pub options: Vec<String>,
    /// Relative weight of each option; empty: uniform.
    pub weights: Vec<f64>,
    /// Window start, s since the run start.
    pub window_start_s: f64,
    /// Window length, s.
    pub window_s: f64,
    /// Votes are repeated in RTCP until this long after the window, s.
    pub close_after_s: f64,
}

impl Default for Votes {
    fn default() -> Self {
        Self {
            viewers_voting: 0,
            channels: Vec::new(),
            first_poll: 1,
            question: "Which one?".into(),
            options: vec!["yes".into(), "no".into()],
            weights: Vec::new(),
            window_start_s: 5.0,
            window_s: 10.0,
            close_after_s: 15.0,
        }
    }
}

impl Votes {
    /// The channels with a poll, with their poll ids.
    #[must_use]
    pub fn polls<'a>(&'a self, sc: &'a Scenario) -> Vec<(u32, &'a str)> {
        let list = if self.channels.is_empty() {
            &sc.channels.list
        } else {
            &self.channels
        };
        list.iter()
            .enumerate()
            .map(|(k, c)| (self.first_poll.wrapping_add(k as u32), c.as_str()))
            .collect()
    }

    /// An option index drawn by the weights.
    pub fn pick_option<R: Rng>(&self, rng: &mut R) -> u32 {
        let n = self.options.len().max(1);
        if self.weights.len() != n {
            return rng.gen_range(0..n) as u32;
        }
        let total: f64 = self.weights.iter().sum();
        let mut x = rng.gen::<f64>() * total;
        for (k, w) in self.weights.iter().enumerate() {
            if x < *w {
                return k as u32;
            }
            x -= w;
        }
        (n - 1) as u32
    }
}

/// `[aaa]`: `ue-sim lab` starts the embedded AAA, seeds a subscriber per UE and points the
/// AS at it (fail-closed), so joins and zaps are authorised and sessions accounted.
///
/// ```toml
/// [aaa]
/// enabled = true
/// unknown_share = 0.2     # UEs that are not subscribers: joins get 403 Unknown subscriber
/// restricted_share = 0.2  # subscribers whose package is the first channel only
/// max_streams = 1
/// ```
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AaaScenario {
    /// Start the embedded AAA (`ue-sim lab` only).
    pub enabled: bool,
    /// Share (0..=1) of the viewers that are not subscribers.
    pub unknown_share: f64,
    /// Share (0..=1) of the subscribing viewers whose package holds only the first channel
    /// of `[channels] list` (joins and zaps to other channels get 403).
    pub restricted_share: f64,
    /// Concurrent viewing sessions per subscriber.
    pub max_streams: u32,
}

impl Default for AaaScenario {
    fn default() -> Self {
        Self {
            enabled: false,
            unknown_share: 0.0,
            restricted_share: 0.0,
            max_streams: 1,
        }
    }
}

/// What the lab's AAA knows of one UE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AaaRole {
    /// Not a subscriber.
    Unknown,
    /// A subscriber entitled to the first channel only.
    Restricted,
    /// A subscriber entitled to every channel (`*`).
    Full,
}

impl AaaScenario {
    /// The role of each of `viewers` viewers followed by `producers` producers (always
    /// [`AaaRole::Full`]). Shares are spread evenly over the indices (not drawn at random),
    /// so the counts are exact: `floor(n * unknown_share)` unknown viewers, and
    /// `floor(subscribers * restricted_share)` restricted ones.
    #[must_use]
    pub fn roles(&self, viewers: usize, producers: usize) -> Vec<AaaRole> {
        // Index i takes the role when the running count floor((i+1) * share) steps up.
        let steps =
            |i: usize, share: f64| ((i + 1) as f64 * share).floor() > (i as f64 * share).floor();
        let mut out = Vec::with_capacity(viewers + producers);
        let mut sub = 0;
        for i in 0..viewers {
            if steps(i, self.unknown_share) {
                out.push(AaaRole::Unknown);
            } else {
                out.push(if steps(sub, self.restricted_share) {
                    AaaRole::Restricted
                } else {
                    AaaRole::Full
                });
                sub += 1;
            }
        }
        out.extend(std::iter::repeat_n(AaaRole::Full, producers));
        out
    }
}

/// Producers: UEs that create a personal channel and send the shipped H.264 clip into it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Producers {
    /// How many (extra UEs besides `ues`).
    pub count: usize,
    /// When the first one starts, s since the run start (the others 0.2 s apart).
    pub start_s: f64,
    /// How long each one produces, s (`None`: until the end of the run).
    pub duration_s: Option<f64>,
    /// Share (0..=1) of viewers' joins and zaps that go to a personal channel once one exists.
    pub viewer_share: f64,
    /// Subject of producer `k`'s channel: `<name> <k>` (the AS makes the id from it).
    pub name: String,
}

impl Default for Producers {
    fn default() -> Self {
        Producers {
            count: 0,
            start_s: 1.0,
            duration_s: None,
            viewer_share: 0.0,
            name: "ue-sim personal".into(),
        }
    }
}

/// One fault: `[[faults]] at_s = 20.0, kind = "stop_relay", relay = 0`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// When, s since the run start.
    pub at_s: f64,
    /// What.
    pub kind: FaultKind,
    /// Which relay (for `stop_relay`), 0-based.
    #[serde(default)]
    pub relay: usize,
}

/// Fault kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Stop one of the AS's relays (the AS moves its viewers to another relay).
    StopRelay,
    /// Stop the AS (not supported yet: the lab runs one AS).
    StopAs,
}

impl FaultKind {
    /// `stop_relay`, `stop_as`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::StopRelay => "stop_relay",
            FaultKind::StopAs => "stop_as",
        }
    }
}

/// Channel list and Zipf popularity.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Channels {
    /// Channel ids, most popular first.
    pub list: Vec<String>,
    /// Zipf exponent `s`: channel of rank `k` has weight `1 / k^s` (0 = uniform).
    pub zipf_s: f64,
}

/// Dwell time distribution.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dwell {
    /// `fixed` (always `mean_s`) or `exponential` (mean `mean_s`).
    pub distribution: DwellKind,
    /// Mean seconds.
    pub mean_s: f64,
    /// Lower bound, seconds.
    pub min_s: f64,
    /// Upper bound, seconds.
    pub max_s: f64,
}

/// Dwell distribution kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DwellKind {
    /// Always the mean.
    Fixed,
    /// Exponential with the mean.
    Exponential,
}

/// What a viewer does after a dwell.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Zap {
    /// Probability of zapping (else the viewer leaves).
    pub probability: f64,
    /// `reinvite`, `bye_invite` or `mixed` (alternating per zap).
    pub method: ZapChoice,
    /// Seconds a zap may take to reach a key frame before it counts as failed.
    pub timeout_s: f64,
}

/// Zap method choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZapChoice {
    /// re-INVITE naming the channel.
    Reinvite,
    /// BYE + INVITE.
    ByeInvite,
    /// Both, alternating.
    Mixed,
}

/// Limits that make the run fail. `None` = no limit.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Most failed joins allowed.
    pub max_joins_failed: Option<u64>,
    /// Most failed zaps allowed.
    pub max_zaps_failed: Option<u64>,
    /// Most failed registrations allowed.
    pub max_registrations_failed: Option<u64>,
    /// Highest zap p99, ms.
    pub max_zap_ms_p99: Option<f64>,
    /// Highest join p99, ms.
    pub max_join_ms_p99: Option<f64>,
    /// Highest first-frame p99, ms.
    pub max_first_frame_ms_p99: Option<f64>,
    /// Highest per-viewer gap, ms.
    pub max_gap_ms: Option<f64>,
    /// Fewest successful zaps.
    pub min_zaps_ok: Option<u64>,
    /// Highest p99, over the viewers a relay fault moved, of their longest gap, ms.
    pub max_gap_ms_p99: Option<f64>,
    /// Most failed relay moves.
    pub max_moves_failed: Option<u64>,
    /// Fewest successful relay moves.
    pub min_moves_ok: Option<u64>,
    /// Fewest joins/zaps that reached a personal channel.
    pub min_personal_viewers: Option<u64>,
    /// Fewest joins and zaps the AS authorised by the AAA's profile (`[aaa]` labs).
    pub min_authorised: Option<u64>,
    /// Most accounting sessions without both a START and a STOP at the AAA (`[aaa]` labs).
    pub max_unaccounted: Option<u64>,
    /// The AS's poll tallies must equal the votes cast (`[votes]`).
    pub votes_exact: Option<bool>,
    /// Longest time from the last vote to an exact tally at the AS, ms (`[votes]`).
    pub max_votes_time_to_exact_ms: Option<f64>,
    /// Most failed joins/zaps at one AS of a channel owned by another (`[overlay]` labs).
    pub max_cross_as_joins_failed: Option<u64>,
    /// Fewest successful cross-AS joins/zaps (`[overlay]` labs).
    pub min_cross_as_joins: Option<u64>,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            name: "unnamed".into(),
            ues: 10,
            duration_s: 10.0,
            arrival_rate: 10.0,
            register: true,
            subscribe_share: 0.2,
            seed: 1,
            channels: Channels::default(),
            dwell: Dwell::default(),
            zap: Zap::default(),
            thresholds: Thresholds::default(),
            sip_sockets: 4,
            rtp_sockets: 64,
            relays: 1,
            relay_tree: false,
            producers: Producers::default(),
            faults: Vec::new(),
            aaa: AaaScenario::default(),
            rtcp: RtcpScenario::default(),
            votes: None,
            api: None,
            overlay: None,
        }
    }
}

impl Default for Channels {
    fn default() -> Self {
        Channels {
            list: vec!["news".into(), "sport".into()],
            zipf_s: 1.0,
        }
    }
}

impl Default for Dwell {
    fn default() -> Self {
        Dwell {
            distribution: DwellKind::Exponential,
            mean_s: 4.0,
            min_s: 0.5,
            max_s: 60.0,
        }
    }
}

impl Default for Zap {
    fn default() -> Self {
        Zap {
            probability: 0.8,
            method: ZapChoice::Mixed,
            timeout_s: 3.0,
        }
    }
}

impl Scenario {
    /// Parses and validates TOML.
    pub fn from_toml(text: &str) -> Result<Self, ScenarioError> {
        let s: Scenario = toml::from_str(text)?;
        s.validate()?;
        Ok(s)
    }

    /// Reads, parses and validates a file.
    pub fn load(path: &std::path::Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Range checks.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |m: &str| Err(ScenarioError::Invalid(m.into()));
        if self.ues == 0 || self.ues > 200_000 {
            return bad("ues must be 1..=200000");
        }
        if !(self.duration_s > 0.0 && self.duration_s <= 86_400.0) {
            return bad("duration_s must be in (0, 86400]");
        }
        if !(self.arrival_rate > 0.0 && self.arrival_rate.is_finite()) {
            return bad("arrival_rate must be > 0");
        }
        if self.channels.list.is_empty() {
            return bad("channels.list is empty");
        }
        if !(self.channels.zipf_s >= 0.0 && self.channels.zipf_s.is_finite()) {
            return bad("channels.zipf_s must be >= 0");
        }
        if !(0.0..=1.0).contains(&self.zap.probability)
            || !(0.0..=1.0).contains(&self.subscribe_share)
        {
            return bad("probabilities must be in [0, 1]");
        }
        if !(self.dwell.mean_s > 0.0
            && self.dwell.min_s >= 0.0
            && self.dwell.max_s >= self.dwell.min_s)
        {
            return bad("dwell: need mean_s > 0 and 0 <= min_s <= max_s");
        }
        if !(self.zap.timeout_s > 0.0 && self.zap.timeout_s <= 60.0) {
            return bad("zap.timeout_s must be in (0, 60]");
        }
        if self.sip_sockets == 0 || self.rtp_sockets == 0 || self.rtp_sockets > 4096 {
            return bad("sip_sockets and rtp_sockets must be >= 1 (rtp_sockets <= 4096)");
        }
        if self.relays == 0 || self.relays > 64 {
            return bad("relays must be 1..=64");
        }
        let p = &self.producers;
        if p.count > 1000
            || !(0.0..=1.0).contains(&p.viewer_share)
            || !(p.start_s >= 0.0 && p.start_s.is_finite())
            || p.duration_s.is_some_and(|d| !(d > 0.0 && d.is_finite()))
            || p.name.trim().is_empty()
        {
            return bad("producers: count <= 1000, viewer_share in [0, 1], start_s >= 0, duration_s > 0, a name");
        }
        let a = &self.aaa;
        if !(0.0..=1.0).contains(&a.unknown_share)
            || !(0.0..=1.0).contains(&a.restricted_share)
            || a.max_streams == 0
            || a.max_streams > 1000
        {
            return bad("aaa: unknown_share and restricted_share in [0, 1], max_streams 1..=1000");
        }
        self.rtcp
            .config()
            .validate()
            .map_err(ScenarioError::Invalid)?;
        if let Some(v) = &self.votes {
            if v.viewers_voting > self.ues {
                return bad("votes.viewers_voting must be <= ues");
            }
            if v.options.is_empty() || v.options.len() > 64 {
                return bad("votes.options: 1 to 64 options");
            }
            if !v.weights.is_empty()
                && (v.weights.len() != v.options.len()
                    || v.weights.iter().any(|w| !(*w >= 0.0 && w.is_finite()))
                    || v.weights.iter().sum::<f64>() <= 0.0)
            {
                return bad("votes.weights: one weight >= 0 per option, not all 0");
            }
            if !(v.window_start_s >= 0.0
                && v.window_s > 0.0
                && v.window_start_s + v.window_s <= self.duration_s
                && v.close_after_s >= 0.0
                && v.close_after_s.is_finite())
            {
                return bad("votes: window_start_s >= 0, window_s > 0, the window inside duration_s, close_after_s >= 0");
            }
            if v.channels.iter().any(|c| !self.channels.list.contains(c)) {
                return bad("votes.channels must be channels of [channels] list");
            }
            if v.polls(self).is_empty() {
                return bad("votes: no channel to poll");
            }
        }
        if let Some(o) = &self.overlay {
            let ok = (1..=64).contains(&o.peers)
                && (2..=16).contains(&o.ases)
                && o.list_timeout_s > 0.0
                && o.list_timeout_s <= 600.0;
            if !ok {
                return bad("overlay: peers 1..=64, ases 2..=16, list_timeout_s in (0, 600]");
            }
            if self.producers.count == 0 {
                return bad(
                    "overlay: needs [producers] count >= 1 (their channels are joined across ASes)",
                );
            }
            if self.ues < o.ases {
                return bad("overlay: ues must be >= ases (every AS gets viewers)");
            }
        }
        if let Some(a) = &self.api {
            if a.parse::<std::net::SocketAddr>().is_err() {
                return bad("api must be host:port with an IP address");
            }
        }
        for f in &self.faults {
            if !(f.at_s >= 0.0 && f.at_s < self.duration_s) {
                return bad("faults: at_s must be in [0, duration_s)");
            }
            if f.kind == FaultKind::StopRelay && f.relay >= self.relays {
                return bad("faults: stop_relay names a relay >= relays");
            }
        }
        Ok(())
    }

    /// A channel by Zipf popularity, different from `avoid` when there is another one.
    pub fn pick_channel<R: Rng>(&self, rng: &mut R, avoid: Option<&str>) -> &str {
        let list = &self.channels.list;
        let weights: Vec<f64> = (1..=list.len())
            .map(|k| 1.0 / (k as f64).powf(self.channels.zipf_s))
            .collect();
        let total: f64 = weights
            .iter()
            .zip(list)
            .filter(|(_, c)| Some(c.as_str()) != avoid || list.len() == 1)
            .map(|(w, _)| w)
            .sum();
        let mut x = rng.gen::<f64>() * total;
        for (w, c) in weights.iter().zip(list) {
            if Some(c.as_str()) == avoid && list.len() > 1 {
                continue;
            }
            if x < *w {
                return c;
            }
            x -= w;
        }
        list.iter()
            .rfind(|c| Some(c.as_str()) != avoid)
            .unwrap_or(&list[0])
    }

    /// A dwell time.
    pub fn dwell<R: Rng>(&self, rng: &mut R) -> Duration {
        let s = match self.dwell.distribution {
            DwellKind::Fixed => self.dwell.mean_s,
            DwellKind::Exponential => {
                let u: f64 = rng.gen_range(f64::EPSILON..1.0);
                -self.dwell.mean_s * u.ln()
            }
        };
        Duration::from_secs_f64(s.clamp(self.dwell.min_s, self.dwell.max_s))
    }

    /// The method of a UE's `n`-th zap.
    #[must_use]
    pub fn zap_method(&self, n: u64) -> ZapMethod {
        match self.zap.method {
            ZapChoice::Reinvite => ZapMethod::Reinvite,
            ZapChoice::ByeInvite => ZapMethod::ByeInvite,
            ZapChoice::Mixed if n % 2 == 0 => ZapMethod::Reinvite,
            ZapChoice::Mixed => ZapMethod::ByeInvite,
        }
    }

    /// The thresholds `stats` breaks, one line each (empty: the run passes).
    #[must_use]
    pub fn check(&self, stats: &RunStats) -> Vec<String> {
        let t = &self.thresholds;
        let mut v = Vec::new();
        let mut max_u = |name: &str, got: u64, lim: Option<u64>| {
            if let Some(l) = lim {
                if got > l {
                    v.push(format!("{name} = {got} > {l}"));
                }
            }
        };
        max_u("joins_failed", stats.joins_failed, t.max_joins_failed);
        max_u("zaps_failed", stats.zaps_failed, t.max_zaps_failed);
        max_u(
            "registrations_failed",
            stats.registrations_failed,
            t.max_registrations_failed,
        );
        let mut max_p = |name: &str, s: &[f64], lim: Option<f64>| {
            if let (Some(l), Some(p)) = (lim, percentile(s, 99.0)) {
                if p > l {
                    v.push(format!("{name} p99 = {p:.1} ms > {l} ms"));
                }
            }
        };
        max_p("zap_ms", &stats.zap_ms, t.max_zap_ms_p99);
        max_p("join_ms", &stats.join_ms, t.max_join_ms_p99);
        max_p(
            "first_frame_ms",
            &stats.first_frame_ms,
            t.max_first_frame_ms_p99,
        );
        if let Some(l) = t.max_gap_ms {
            let g = stats
                .viewers
                .iter()
                .map(|x| x.gap_ms_max)
                .fold(0.0, f64::max);
            if g > l {
                v.push(format!("gap_ms max = {g:.1} ms > {l} ms"));
            }
        }
        if let Some(l) = t.min_zaps_ok {
            if stats.zaps_ok < l {
                v.push(format!("zaps_ok = {} < {l}", stats.zaps_ok));
            }
        }
        if let Some(l) = t.max_gap_ms_p99 {
            let moved: Vec<f64> = stats
                .viewers
                .iter()
                .filter(|x| x.moves > 0)
                .map(|x| x.gap_ms_max)
                .collect();
            match percentile(&moved, 99.0) {
                Some(p) if p <= l => {}
                Some(p) => v.push(format!("moved viewers' gap_ms p99 = {p:.1} ms > {l} ms")),
                None => v.push("moved viewers' gap_ms p99: no viewer was moved".into()),
            }
        }
        if let Some(l) = t.max_moves_failed {
            if stats.moves_failed > l {
                v.push(format!("moves_failed = {} > {l}", stats.moves_failed));
            }
        }
        if let Some(l) = t.min_moves_ok {
            if stats.moves_ok < l {
                v.push(format!("moves_ok = {} < {l}", stats.moves_ok));
            }
        }
        let aaa = stats.aaa.as_ref();
        if let Some(l) = t.min_authorised {
            match aaa {
                Some(a) if a.authorised >= l => {}
                Some(a) => v.push(format!("aaa authorised = {} < {l}", a.authorised)),
                None => v.push("aaa authorised: no AAA figures".into()),
            }
        }
        if let Some(l) = t.max_unaccounted {
            match aaa {
                Some(a) if a.unaccounted_sessions <= l => {}
                Some(a) => v.push(format!(
                    "aaa unaccounted sessions = {} > {l}",
                    a.unaccounted_sessions
                )),
                None => v.push("aaa unaccounted sessions: no AAA figures".into()),
            }
        }
        if t.votes_exact == Some(true) {
            match &stats.votes {
                Some(vf) if vf.exact => {}
                Some(vf) => v.push(format!(
                    "votes: the AS's tally ({}) differs from the votes cast ({})",
                    vf.tallied, vf.cast
                )),
                None => v.push("votes: no vote figures".into()),
            }
        }
        if let Some(l) = t.max_votes_time_to_exact_ms {
            match stats.votes.as_ref().and_then(|vf| vf.time_to_exact_ms) {
                Some(ms) if ms <= l => {}
                Some(ms) => v.push(format!("votes time_to_exact_ms = {ms:.0} > {l}")),
                None => v.push("votes time_to_exact_ms: never exact".into()),
            }
        }
        if let Some(l) = t.min_personal_viewers {
            if stats.personal_viewers < l {
                v.push(format!(
                    "personal_viewers = {} < {l}",
                    stats.personal_viewers
                ));
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn parses_and_defaults() {
        let s =
            Scenario::from_toml("name = \"x\"\nues = 5\n[zap]\nmethod = \"reinvite\"\n").unwrap();
        assert_eq!(s.ues, 5);
        assert_eq!(s.zap.method, ZapChoice::Reinvite);
        assert_eq!(s.channels.list, ["news", "sport"]);
        assert!(Scenario::from_toml("bogus = 1").is_err());
        assert!(Scenario::from_toml("ues = 0").is_err());
    }

    #[test]
    fn zipf_prefers_first_and_avoids() {
        let s = Scenario {
            channels: Channels {
                list: vec!["a".into(), "b".into(), "c".into()],
                zipf_s: 1.5,
            },
            ..Scenario::default()
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut n = [0u32; 3];
        for _ in 0..3000 {
            let c = s.pick_channel(&mut rng, None);
            n[(c.as_bytes()[0] - b'a') as usize] += 1;
        }
        assert!(n[0] > n[1] && n[1] > n[2], "{n:?}");
        for _ in 0..200 {
            assert_ne!(s.pick_channel(&mut rng, Some("a")), "a");
        }
    }

    #[test]
    fn overlay_section_parses_and_is_checked() {
        let s = Scenario::from_toml(
            "ues = 10\n[producers]\ncount = 1\n[overlay]\npeers = 5\nases = 2\n\
             [thresholds]\nmax_cross_as_joins_failed = 0\nmin_cross_as_joins = 3\n",
        )
        .unwrap();
        let o = s.overlay.as_ref().unwrap();
        assert_eq!((o.peers, o.ases), (5, 2));
        assert!((o.list_timeout_s - 10.0).abs() < 1e-9, "default");
        assert_eq!(s.thresholds.max_cross_as_joins_failed, Some(0));
        assert_eq!(s.thresholds.min_cross_as_joins, Some(3));
        assert!(Scenario::from_toml("").unwrap().overlay.is_none());
        for bad in [
            "[producers]\ncount = 1\n[overlay]\nases = 1\n",
            "[producers]\ncount = 1\n[overlay]\npeers = 0\n",
            "[overlay]\nases = 2\n",
            "ues = 2\n[producers]\ncount = 1\n[overlay]\nases = 3\n",
            "[producers]\ncount = 1\n[overlay]\nbogus = 1\n",
        ] {
            assert!(Scenario::from_toml(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn faults_and_producers_parse_and_are_checked() {
        let s = Scenario::from_toml(
            "duration_s = 30\nrelays = 2\n[producers]\ncount = 2\nviewer_share = 0.5\n\
             [[faults]]\nat_s = 10.0\nkind = \"stop_relay\"\nrelay = 1\n",
        )
        .unwrap();
        assert_eq!(
            s.faults,
            [Fault {
                at_s: 10.0,
                kind: FaultKind::StopRelay,
                relay: 1
            }]
        );
        assert_eq!(s.producers.count, 2);
        // A relay the lab does not have, a fault after the end, a bad share.
        for bad in [
            "relays = 1\n[[faults]]\nat_s = 1.0\nkind = \"stop_relay\"\nrelay = 1\n",
            "duration_s = 5\n[[faults]]\nat_s = 6.0\nkind = \"stop_as\"\n",
            "[producers]\nviewer_share = 2.0\n",
            "[[faults]]\nat_s = 1.0\nkind = \"explode\"\n",
        ] {
            assert!(Scenario::from_toml(bad).is_err(), "{bad}");
        }
        let t = Scenario::from_toml("[thresholds]\nmax_gap_ms_p99 = 500.0\nmax_moves_failed = 0\n")
            .unwrap();
        let mut st = RunStats::default();
        assert_eq!(
            t.check(&st).len(),
            1,
            "no moved viewer: the check cannot pass"
        );
        st.viewers = (0..100)
            .map(|i| crate::stats::ViewerStats {
                ue: i,
                gap_ms_max: if i < 50 { 300.0 } else { 9000.0 },
                moves: u32::from(i < 50),
                ..Default::default()
            })
            .collect();
        assert!(t.check(&st).is_empty(), "only moved viewers count");
        st.viewers[0].gap_ms_max = 800.0;
        st.moves_failed = 1;
        assert_eq!(t.check(&st).len(), 2);
    }

    #[test]
    fn aaa_roles_are_spread_with_exact_counts() {
        let a = AaaScenario {
            enabled: true,
            unknown_share: 0.2,
            restricted_share: 0.25,
            max_streams: 1,
        };
        let r = a.roles(100, 2);
        assert_eq!(r.len(), 102);
        let n = |x: AaaRole| r[..100].iter().filter(|&&y| y == x).count();
        assert_eq!(n(AaaRole::Unknown), 20);
        assert_eq!(
            n(AaaRole::Restricted),
            20,
            "a quarter of the 80 subscribers"
        );
        assert_eq!(n(AaaRole::Full), 60);
        assert_eq!(
            r[100..],
            [AaaRole::Full, AaaRole::Full],
            "producers subscribe"
        );
        assert!(
            r[..10].contains(&AaaRole::Unknown),
            "spread, not bunched at the end"
        );
        assert!(AaaScenario::default()
            .roles(5, 0)
            .iter()
            .all(|&x| x == AaaRole::Full));
        assert!(Scenario::from_toml("[aaa]\nunknown_share = 1.5\n").is_err());
        assert!(Scenario::from_toml("[aaa]\nmax_streams = 0\n").is_err());
        let s = Scenario::from_toml(
            "[aaa]\nenabled = true\n[thresholds]\nmin_authorised = 1\nmax_unaccounted = 0\n",
        )
        .unwrap();
        let mut st = RunStats::default();
        assert_eq!(s.check(&st).len(), 2, "no AAA figures: both checks fail");
        st.aaa = Some(crate::stats::AaaFigures {
            authorised: 3,
            ..Default::default()
        });
        assert!(s.check(&st).is_empty());
        st.aaa.as_mut().unwrap().unaccounted_sessions = 1;
        assert_eq!(s.check(&st).len(), 1);
    }

    #[test]
    fn votes_and_rtcp_parse_validate_and_draw() {
        let s = Scenario::from_toml(
            "ues = 10\nduration_s = 20\n[channels]\nlist = [\"a\", \"b\"]\n[rtcp]\nmin_interval_s = 1.0\n\
             [votes]\nviewers_voting = 10\noptions = [\"x\", \"y\"]\nweights = [3.0, 1.0]\n\
             first_poll = 7\nwindow_start_s = 2.0\nwindow_s = 10.0\n",
        )
        .unwrap();
        let v = s.votes.as_ref().unwrap();
        assert_eq!(
            v.polls(&s),
            [(7, "a"), (8, "b")],
            "one poll per channel by default"
        );
        assert_eq!(s.rtcp.config().min_interval_s, 1.0);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut n = [0u32; 2];
        for _ in 0..4000 {
            n[v.pick_option(&mut rng) as usize] += 1;
        }
        assert!((2700..3300).contains(&n[0]), "weights 3:1: {n:?}");
        for bad in [
            "ues = 5\n[votes]\nviewers_voting = 6\n",
            "duration_s = 10\n[votes]\nwindow_start_s = 5.0\nwindow_s = 6.0\n",
            "[votes]\noptions = [\"x\"]\nweights = [1.0, 2.0]\n",
            "[votes]\noptions = []\n",
            "[votes]\nchannels = [\"nope\"]\n",
            "[rtcp]\nmin_interval_s = 0.0\n",
            "api = \"not an address\"\n",
        ] {
            assert!(Scenario::from_toml(bad).is_err(), "{bad}");
        }
        let mut st = RunStats::default();
        let t = Scenario::from_toml(
            "[thresholds]\nvotes_exact = true\nmax_votes_time_to_exact_ms = 10000.0\n",
        )
        .unwrap();
        assert_eq!(t.check(&st).len(), 2, "no vote figures: both checks fail");
        st.votes = Some(crate::stats::VoteFigures {
            exact: true,
            time_to_exact_ms: Some(120.0),
            ..Default::default()
        });
        assert!(t.check(&st).is_empty());
    }

    #[test]
    fn thresholds_fail() {
        let s = Scenario::from_toml(
            "[thresholds]\nmax_joins_failed = 0\nmax_zap_ms_p99 = 100.0\nmin_zaps_ok = 1\n",
        )
        .unwrap();
        let mut st = RunStats {
            zaps_ok: 1,
            ..RunStats::default()
        };
        assert!(s.check(&st).is_empty());
        st.joins_failed = 1;
        st.zap_ms = vec![50.0, 150.0];
        assert_eq!(s.check(&st).len(), 2);
    }

    #[test]
    fn shipped_scenarios_parse() {
        for f in [
            "default.toml",
            "smoke.toml",
            "smoke-fault.toml",
            "relay-fault.toml",
            "10k.toml",
            "aaa.toml",
            "votes.toml",
        ] {
            let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("scenarios")
                .join(f);
            Scenario::load(&p).unwrap();
        }
    }
}
