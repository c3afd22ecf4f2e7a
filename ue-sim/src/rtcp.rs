//! A viewer's RTCP (RFC 3550 section 6): when to report, what a report says, and what the
//! relay's RTCP tells the viewer. Sans-IO: [`ViewerRtcp`] is fed the time and the relay's
//! RTCP datagrams and builds compound packets; [`crate::ue::Ue`] owns one and queues what it
//! builds as [`crate::ue::Transmit::Rtcp`].
//!
//! - **Interval**: RFC 3550 appendix A.7 through `media_relay::feedback::interval`: the
//!   first report after a join at the initial (halved-minimum) interval, then one per
//!   randomised interval, with timer reconsideration at expiry (section 6.3.6). The group
//!   size, average packet size and receivers' RTCP bandwidth come from the feedback target's
//!   RSI (RFC 5760 section 7.1, `media_relay::feedback::aggregate::viewer_interval_params`)
//!   once one arrives; until then the viewer sees a group of two (itself and the relay, the
//!   only sender on its unicast path) on [`RtcpConfig::session_bps`], and the configured
//!   minimum interval keeps it from reporting more often than [`RtcpConfig::min_interval_s`].
//! - **Compound** (section 6.1): RR with one report block about the relay's SSRC for this
//!   viewer (fraction lost since the last report, cumulative lost, extended highest
//!   sequence number, interarrival jitter, LSR/DLSR from the relay's last SR, section
//!   6.4.1), SDES CNAME, then optionally APP `VOTE` (poll, option;
//!   `media_relay::feedback::aggregate::write_vote`) and BYE (section 6.6).
//! - **In**: an SR whose SSRC is the viewer's stream gives LSR and its arrival time (for
//!   DLSR); an RSI (PT 209) gives the group the viewer reports in. Every RTCP packet sent or
//!   received updates the average compound size (A.7 `avg_rtcp_size`).

use std::time::{Duration, Instant};

use media_relay::feedback::aggregate::{viewer_interval_params, write_vote, UDP_IPV4_OVERHEAD};
use media_relay::feedback::interval::{self, IntervalParams};
use rtcp_types::{
    Bye, Compound, Packet, ReceiverReport, ReportBlock, RtcpPacketParserExt, RtcpPacketWriter,
    RtcpPacketWriterExt, Sdes, SdesChunk, SdesItem,
};
use serde::{Deserialize, Serialize};

/// SDES item type CNAME (RFC 3550 section 6.5.1).
const SDES_CNAME: u8 = 1;

/// A viewer's RTCP settings (scenario `[rtcp]`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtcpConfig {
    /// Send RTCP at all.
    pub enabled: bool,
    /// Session bandwidth, bit/s, used until the feedback target announces its RTCP bandwidth.
    pub session_bps: f64,
    /// Minimum interval between reports, s (RFC 3550 section 6.2 `Tmin`; halved for the first).
    pub min_interval_s: f64,
}

impl Default for RtcpConfig {
    fn default() -> Self {
        RtcpConfig {
            enabled: true,
            session_bps: 2_000_000.0,
            min_interval_s: interval::RTCP_MIN_TIME_S,
        }
    }
}

impl RtcpConfig {
    /// Range checks.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.session_bps > 0.0 && self.session_bps.is_finite()) {
            return Err("rtcp.session_bps must be > 0".into());
        }
        if !(self.min_interval_s >= 0.1 && self.min_interval_s <= 3600.0) {
            return Err("rtcp.min_interval_s must be in [0.1, 3600]".into());
        }
        Ok(())
    }
}

/// What a viewer's RTCP did (for the report).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtcpCounters {
    /// Compound packets sent (RR + SDES, with or without APP / BYE).
    pub compounds: u64,
    /// Octets of those, UDP/IP headers excluded.
    pub bytes: u64,
    /// Compounds with a BYE.
    pub byes: u64,
    /// APP `VOTE` packets sent (a vote and its repeats).
    pub vote_packets: u64,
    /// Sender reports of the viewer's stream received.
    pub srs_received: u64,
    /// RSI packets (group size from the feedback target) received.
    pub rsis_received: u64,
}

impl RtcpCounters {
    /// Adds another viewer's counters.
    pub fn add(&mut self, o: &RtcpCounters) {
        self.compounds += o.compounds;
        self.bytes += o.bytes;
        self.byes += o.byes;
        self.vote_packets += o.vote_packets;
        self.srs_received += o.srs_received;
        self.rsis_received += o.rsis_received;
    }
}

/// The reception figures of the stream a report block is about (RFC 3550 A.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reception {
    /// The relay's SSRC for this viewer.
    pub ssrc: u32,
    /// Extended highest sequence number received (cycles << 16 | highest).
    pub ext_max_seq: u32,
    /// Packets received.
    pub received: u64,
    /// Packets expected (received + lost).
    pub expected: u64,
    /// Interarrival jitter, timestamp units.
    pub jitter: u32,
}

/// One viewer's RTCP state.
#[derive(Debug, Clone)]
pub struct ViewerRtcp {
    cfg: RtcpConfig,
    ssrc: u32,
    cname: String,
    rng: u64,
    /// Group parameters from the feedback target's RSI.
    announced: Option<IntervalParams>,
    avg_rtcp_size: f64,
    /// No report sent yet in this session.
    initial: bool,
    /// Last report sent (RFC 3550 `tp`).
    tp: Option<Instant>,
    /// Next report due (`tn`); `None` when not reporting.
    next: Option<Instant>,
    /// The relay's last SR: its SSRC, the middle 32 bits of its NTP time, when it arrived.
    last_sr: Option<(u32, u32, Instant)>,
    /// `(expected, received)` at the last report, for the fraction lost (A.3).
    prior: Option<(u32, u64, u64)>,
    counters: RtcpCounters,
}

impl ViewerRtcp {
    /// A viewer reporting as `ssrc` with CNAME `cname`; `seed` seeds the interval draws.
    #[must_use]
    pub fn new(cfg: RtcpConfig, ssrc: u32, cname: String, seed: u64) -> Self {
        ViewerRtcp {
            cfg,
            ssrc,
            cname,
            rng: seed | 1,
            announced: None,
            avg_rtcp_size: 100.0,
            initial: true,
            tp: None,
            next: None,
            last_sr: None,
            prior: None,
            counters: RtcpCounters::default(),
        }
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &RtcpConfig {
        &self.cfg
    }

    /// Replaces the settings (takes effect at the next interval).
    pub fn set_config(&mut self, cfg: RtcpConfig) {
        self.cfg = cfg;
    }

    /// What was sent and received so far.
    #[must_use]
    pub fn counters(&self) -> RtcpCounters {
        self.counters
    }

    /// When the next report is due.
    #[must_use]
    pub fn next_timeout(&self) -> Option<Instant> {
        self.next
    }

    fn uniform(&mut self) -> f64 {
        // xorshift64*: deterministic per viewer, enough for interval randomisation.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn params(&self) -> IntervalParams {
        let mut p = self.announced.unwrap_or_else(|| {
            IntervalParams::receiver(2, self.cfg.session_bps, self.avg_rtcp_size)
        });
        if self.announced.is_none() {
            p.avg_rtcp_size = self.avg_rtcp_size;
        }
        p.min_interval_s = self.cfg.min_interval_s;
        p.initial = self.initial;
        p
    }

    /// A randomised interval `T` (A.7 `rtcp_interval`, compensation included).
    fn draw_interval(&mut self) -> Duration {
        let p = self.params();
        let u = self.uniform();
        Duration::from_secs_f64(interval::randomized_interval_s(&p, u).clamp(0.01, 86_400.0))
    }

    /// A session started at `now` (a join's 2xx): the first report after the initial interval.
    pub fn start(&mut self, now: Instant) {
        if !self.cfg.enabled {
            return;
        }
        self.initial = true;
        self.tp = None;
        self.prior = None;
        let t = self.draw_interval();
        self.next = Some(now + t);
    }

    /// The session ended: no more reports.
    pub fn stop(&mut self) {
        self.next = None;
        self.tp = None;
        self.prior = None;
        self.last_sr = None;
    }

    /// The stream changed (new relay SSRC): the fraction lost starts over.
    pub fn new_path(&mut self) {
        self.prior = None;
    }

    /// The timer fired at `now`: whether a report goes now (RFC 3550 section 6.3.6 with
    /// reconsideration: if `tp + T` is still ahead, the report is rescheduled there instead).
    pub fn due(&mut self, now: Instant) -> bool {
        let Some(tn) = self.next else { return false };
        if now < tn {
            return false;
        }
        let t = self.draw_interval();
        match self.tp {
            Some(tp) if tp + t > now => {
                self.next = Some(tp + t);
                false
            }
            _ => true,
        }
    }

    /// A compound of `bytes` octets went out at `now`: `tp = now`, next report one interval
    /// later (unless a BYE ended reporting).
    fn sent(&mut self, now: Instant, bytes: usize, bye: bool, vote: bool) {
        self.counters.compounds += 1;
        self.counters.bytes += bytes as u64;
        self.counters.byes += u64::from(bye);
        self.counters.vote_packets += u64::from(vote);
        self.avg_rtcp_size =
            interval::update_avg_rtcp_size(self.avg_rtcp_size, (bytes + UDP_IPV4_OVERHEAD) as f64);
        self.initial = false;
        self.tp = Some(now);
        if bye {
            self.stop();
        } else if self.cfg.enabled && self.next.is_some() {
            let t = self.draw_interval();
            self.next = Some(now + t);
        }
    }

    /// An RTCP datagram from the relay arrived at `now`; `stream` is the SSRC of the stream
    /// the viewer receives (SRs about other streams are ignored).
    pub fn on_rtcp(&mut self, now: Instant, stream: Option<u32>, datagram: &[u8]) {
        let Ok(compound) = Compound::parse(datagram) else {
            return;
        };
        self.avg_rtcp_size = interval::update_avg_rtcp_size(
            self.avg_rtcp_size,
            (datagram.len() + UDP_IPV4_OVERHEAD) as f64,
        );
        for p in compound {
            match p {
                Ok(Packet::Sr(sr)) if Some(sr.ssrc()) == stream => {
                    //= RFC 3550 6.4.1: LSR is the middle 32 bits of the SR's NTP timestamp.
                    let lsr = (sr.ntp_timestamp() >> 16) as u32;
                    self.last_sr = Some((sr.ssrc(), lsr, now));
                    self.counters.srs_received += 1;
                }
                Ok(Packet::Unknown(u)) if u.type_() == media_relay::rsi::RSI.0 => {
                    if let Ok(rsi) = media_relay::rsi::Rsi::from_unknown(&u) {
                        self.announced = Some(viewer_interval_params(
                            &rsi,
                            self.cfg.session_bps,
                            self.cfg.min_interval_s,
                        ));
                        self.counters.rsis_received += 1;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }

    /// Builds (and accounts as sent at `now`) a compound: RR about `rx` + SDES CNAME, then
    /// APP `VOTE` `(poll, option)` if `vote`, then BYE if `bye`. `None` if it cannot be
    /// written (never for valid input).
    pub fn compound(
        &mut self,
        now: Instant,
        rx: &Reception,
        vote: Option<(u32, u32)>,
        bye: bool,
    ) -> Option<Vec<u8>> {
        let (fraction, cumulative) = self.loss(rx);
        let (lsr, dlsr) = match self.last_sr {
            Some((ssrc, lsr, at)) if ssrc == rx.ssrc => {
                // DLSR in units of 1/65536 s (RFC 3550 6.4.1).
                let d = now.saturating_duration_since(at).as_secs_f64() * 65_536.0;
                (lsr, d.min(f64::from(u32::MAX)) as u32)
            }
            _ => (0, 0),
        };
        let rr = ReceiverReport::builder(self.ssrc).add_report_block(
            ReportBlock::builder(rx.ssrc)
                .fraction_lost(fraction)
                .cumulative_lost(cumulative)
                .extended_sequence_number(rx.ext_max_seq)
                .interarrival_jitter(rx.jitter)
                .last_sender_report_timestamp(lsr)
                .delay_since_last_sender_report_timestamp(dlsr),
        );
        let sdes = Sdes::builder().add_chunk(
            SdesChunk::builder(self.ssrc).add_item(SdesItem::builder(SDES_CNAME, &self.cname)),
        );
        let mut out = Vec::with_capacity(128);
        append(&mut out, &rr)?;
        append(&mut out, &sdes)?;
        if let Some((poll, option)) = vote {
            write_vote(&mut out, self.ssrc, poll, option).ok()?;
        }
        if bye {
            append(&mut out, &Bye::builder().add_source(self.ssrc))?;
        }
        self.prior = Some((rx.ssrc, rx.expected, rx.received));
        self.sent(now, out.len(), bye, vote.is_some());
        Some(out)
    }

    /// Fraction lost since the last report and cumulative lost (A.3), clamped to their
    /// fields (8 bits; 24 bits signed, never negative here).
    fn loss(&self, rx: &Reception) -> (u8, u32) {
        let cumulative = rx.expected.saturating_sub(rx.received).min(0x7f_ffff) as u32;
        let (e0, r0) = match self.prior {
            Some((ssrc, e, r)) if ssrc == rx.ssrc => (e, r),
            _ => (0, 0),
        };
        let expected = rx.expected.saturating_sub(e0);
        let received = rx.received.saturating_sub(r0);
        let lost = expected.saturating_sub(received);
        let fraction = (lost << 8)
            .checked_div(expected)
            .map_or(0, |f| f.min(255) as u8);
        (fraction, cumulative)
    }
}

fn append(out: &mut Vec<u8>, p: &impl RtcpPacketWriter) -> Option<()> {
    let start = out.len();
    let size = p.calculate_size().ok()?;
    out.resize(start + size, 0);
    if p.write_into(&mut out[start..]).is_err() {
        out.truncate(start);
        return None;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[expect(
        clippy::disallowed_methods,
        reason = "a fixed origin for the virtual clock"
    )]
    fn t0() -> Instant {
        Instant::now()
    }

    fn rx(expected: u64, received: u64) -> Reception {
        Reception {
            ssrc: 0xAB,
            ext_max_seq: 70_000,
            received,
            expected,
            jitter: 45,
        }
    }

    #[test]
    fn intervals_follow_a7_with_the_configured_minimum() {
        let t0 = t0();
        let mut r = ViewerRtcp::new(RtcpConfig::default(), 7, "ue1@x".into(), 42);
        r.start(t0);
        let first = r.next_timeout().unwrap() - t0;
        // Initial: Tmin/2 = 2.5 s, randomised over [0.5, 1.5] and divided by e - 3/2.
        let (lo, hi) = (2.5 * 0.5 / 1.21828, 2.5 * 1.5 / 1.21828);
        assert!(
            (lo..=hi).contains(&first.as_secs_f64()),
            "{first:?} outside [{lo}, {hi}]"
        );
        let mut t = t0;
        let mut sent = 0;
        // 10 minutes at 5 s mean: about 120 reports.
        for _ in 0..20_000 {
            t += Duration::from_millis(30);
            if r.due(t) {
                let _ = r.compound(t, &rx(10, 10), None, false).unwrap();
                sent += 1;
            }
        }
        let span = (t - t0).as_secs_f64();
        let mean = span / f64::from(sent);
        assert!((4.0..6.0).contains(&mean), "mean interval {mean} s");
        assert_eq!(r.counters().compounds, sent as u64);
    }

    #[test]
    fn compound_has_rr_sdes_vote_bye_and_lsr_dlsr() {
        let t0 = t0();
        let mut r = ViewerRtcp::new(RtcpConfig::default(), 7, "ue1@x".into(), 1);
        r.start(t0);
        // An SR of our stream at NTP 1000.5 s.
        let sr = rtcp_types::SenderReport::builder(0xAB).ntp_timestamp((1000u64 << 32) | (1 << 31));
        let mut d = vec![0u8; sr.calculate_size().unwrap()];
        sr.write_into(&mut d).unwrap();
        r.on_rtcp(t0, Some(0xAB), &d);
        r.on_rtcp(t0, Some(0xCD), &d); // not our stream: ignored
        assert_eq!(r.counters().srs_received, 1);
        let b = r
            .compound(
                t0 + Duration::from_millis(250),
                &rx(100, 90),
                Some((3, 2)),
                false,
            )
            .unwrap();
        let mut kinds = Vec::new();
        for p in Compound::parse(&b).unwrap() {
            match p.unwrap() {
                Packet::Rr(rr) => {
                    assert_eq!(rr.ssrc(), 7);
                    let rb = rr.report_blocks().next().unwrap();
                    assert_eq!(rb.ssrc(), 0xAB);
                    assert_eq!(rb.fraction_lost(), 25); // 10 of 100 = 25.6/256
                    assert_eq!(rb.cumulative_lost(), 10);
                    assert_eq!(rb.extended_sequence_number(), 70_000);
                    assert_eq!(rb.interarrival_jitter(), 45);
                    assert_eq!(rb.last_sender_report_timestamp(), (1000 << 16) | 0x8000);
                    assert_eq!(rb.delay_since_last_sender_report_timestamp(), 65_536 / 4);
                    kinds.push("rr");
                }
                Packet::Sdes(_) => kinds.push("sdes"),
                Packet::App(a) => {
                    assert_eq!(&a.name(), b"VOTE");
                    assert_eq!(a.data(), [0, 0, 0, 3, 0, 0, 0, 2]);
                    kinds.push("app");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(kinds, ["rr", "sdes", "app"]);
        // The next report's fraction covers only the new interval: 5 lost of 50.
        let b = r.compound(t0, &rx(150, 135), None, true).unwrap();
        let c: Vec<_> = Compound::parse(&b).unwrap().map(Result::unwrap).collect();
        match &c[0] {
            Packet::Rr(rr) => assert_eq!(rr.report_blocks().next().unwrap().fraction_lost(), 25),
            other => panic!("{other:?}"),
        }
        assert!(matches!(c.last(), Some(Packet::Bye(_))));
        assert_eq!(r.counters().byes, 1);
        assert_eq!(r.counters().vote_packets, 1);
        assert_eq!(r.next_timeout(), None, "a BYE ends reporting");
    }

    #[test]
    fn an_rsi_sets_the_group_and_lengthens_the_interval() {
        use media_relay::rsi::{Rsi, SubReport};
        let t0 = t0();
        let cfg = RtcpConfig {
            min_interval_s: 1.0,
            ..RtcpConfig::default()
        };
        let mut r = ViewerRtcp::new(cfg, 7, "c".into(), 9);
        // 100,000 viewers sharing 75 % of 5 % of 1 Mbit/s: far above the minimum.
        let rsi = Rsi {
            ssrc: 1,
            summarized_ssrc: 2,
            ntp: 0,
            sub_reports: vec![
                SubReport::RtcpBandwidth {
                    sender: false,
                    receivers: true,
                    bandwidth_kbps_16_16: (37.5 * 65536.0) as u32,
                },
                SubReport::GroupAndAvgPacketSize {
                    avg_packet_size: 100,
                    group_size: 100_000,
                },
            ],
        };
        r.on_rtcp(t0, None, &rsi.to_vec().unwrap());
        assert_eq!(r.counters().rsis_received, 1);
        r.start(t0);
        r.initial = false;
        let t = r.draw_interval().as_secs_f64();
        // Td = 100000 * 100 B / 4687.5 B/s = 2133 s, randomised.
        assert!(t > 800.0, "{t}");
    }
}
