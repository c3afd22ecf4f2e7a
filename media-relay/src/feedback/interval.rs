//! The RTCP report interval of RFC 3550 section 6.2/6.3, computed as in appendix A.7, as a pure
//! function of the group state (no clock, no random source: the caller passes the uniform draw).
//!
//! How it fits: a viewer computes its interval from the group size and RTCP bandwidth its feedback
//! target announces in RSI ([`crate::rsi::SubReport::GroupAndAvgPacketSize`],
//! [`crate::rsi::SubReport::RtcpBandwidth`]); each FT computes its own upward interval the same
//! way among its sibling FTs; [`crate::feedback::hasim`] uses [`mean_interval_s`] for the flat
//! RFC 3550 comparison.

/// Fraction of the session bandwidth given to RTCP (RFC 3550 section 6.2).
pub const RTCP_FRACTION: f64 = 0.05;
/// Share of the RTCP bandwidth for senders when they are at most a quarter of the members.
pub const SENDER_BW_FRACTION: f64 = 0.25;
/// Share of the RTCP bandwidth for receivers in that case.
pub const RECEIVER_BW_FRACTION: f64 = 1.0 - SENDER_BW_FRACTION;
/// Minimum interval, seconds (RFC 3550 section 6.2, `RTCP_MIN_TIME`).
pub const RTCP_MIN_TIME_S: f64 = 5.0;
/// Timer reconsideration compensation `e - 3/2` (RFC 3550 section 6.3.1 and A.7).
pub const COMPENSATION: f64 = std::f64::consts::E - 1.5;

/// The inputs of RFC 3550 A.7 `rtcp_interval()`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntervalParams {
    /// Members of the group, this participant included.
    pub members: u64,
    /// Members that sent RTP recently.
    pub senders: u64,
    /// RTCP bandwidth of the whole group in octets per second (5 % of the session bandwidth).
    pub rtcp_bw_bytes_per_s: f64,
    /// This participant sent RTP since the report before last.
    pub we_sent: bool,
    /// Average compound RTCP packet size in octets, lower-layer headers included.
    pub avg_rtcp_size: f64,
    /// No RTCP packet sent yet: the minimum is halved.
    pub initial: bool,
    /// Minimum interval in seconds: [`RTCP_MIN_TIME_S`], or the reduced minimum of
    /// [`reduced_min_interval_s`] for participants RFC 3550 section 6.2 allows it for.
    pub min_interval_s: f64,
}

impl IntervalParams {
    /// A receiver in a group of `members` with one sender, on a session of `session_bps`.
    pub fn receiver(members: u64, session_bps: f64, avg_rtcp_size: f64) -> IntervalParams {
        IntervalParams {
            members,
            senders: 1,
            rtcp_bw_bytes_per_s: rtcp_bandwidth_bytes_per_s(session_bps),
            we_sent: false,
            avg_rtcp_size,
            initial: false,
            min_interval_s: RTCP_MIN_TIME_S,
        }
    }
}

/// RTCP bandwidth in octets per second for a session bandwidth in bit/s (5 %).
pub fn rtcp_bandwidth_bytes_per_s(session_bps: f64) -> f64 {
    session_bps * RTCP_FRACTION / 8.0
}

/// The reduced minimum of RFC 3550 section 6.2: 360 divided by the session bandwidth in kbit/s.
pub fn reduced_min_interval_s(session_kbps: f64) -> f64 {
    if session_kbps > 0.0 {
        360.0 / session_kbps
    } else {
        RTCP_MIN_TIME_S
    }
}

/// The deterministic interval `Td` of RFC 3550 section 6.3.1 (A.7 before randomisation), seconds.
pub fn deterministic_interval_s(p: &IntervalParams) -> f64 {
    let mut min_time = p.min_interval_s;
    if p.initial {
        min_time /= 2.0;
    }
    let mut n = p.members.max(1) as f64;
    let mut bw = p.rtcp_bw_bytes_per_s;
    let senders = p.senders as f64;
    if senders > 0.0 && senders <= p.members as f64 * SENDER_BW_FRACTION {
        if p.we_sent {
            bw *= SENDER_BW_FRACTION;
            n = senders;
        } else {
            bw *= RECEIVER_BW_FRACTION;
            n = (p.members.saturating_sub(p.senders)).max(1) as f64;
        }
    }
    let t = if bw > 0.0 {
        p.avg_rtcp_size * n / bw
    } else {
        f64::INFINITY
    };
    t.max(min_time)
}

/// The randomised interval `T` of A.7: `Td * (u + 0.5) / (e - 3/2)`, where `u` is a uniform draw
/// in `[0, 1)` supplied by the caller (clamped into that range).
pub fn randomized_interval_s(p: &IntervalParams, u: f64) -> f64 {
    let u = if u.is_finite() {
        u.clamp(0.0, 1.0)
    } else {
        0.5
    };
    deterministic_interval_s(p) * (u + 0.5) / COMPENSATION
}

/// The expected randomised interval: `Td / (e - 3/2)`.
pub fn mean_interval_s(p: &IntervalParams) -> f64 {
    deterministic_interval_s(p) / COMPENSATION
}

/// Timer reconsideration (RFC 3550 section 6.3.6, A.7 `OnExpire`): when the timer set at `tp`
/// (time of the last transmission) fires at `now` and a freshly computed interval is
/// `new_interval_s`, send only if `tp + new_interval_s <= now`; otherwise re-arm the timer at
/// `tp + new_interval_s`. Returns the time to re-arm at, or `None` to send now.
pub fn reconsider(tp_s: f64, now_s: f64, new_interval_s: f64) -> Option<f64> {
    let due = tp_s + new_interval_s;
    (due > now_s).then_some(due)
}

/// The running average of compound RTCP packet sizes (RFC 3550 section 6.3.3:
/// `avg = 1/16 * size + 15/16 * avg`).
pub fn update_avg_rtcp_size(avg: f64, packet_size: f64) -> f64 {
    packet_size / 16.0 + avg * 15.0 / 16.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn small_group_hits_the_minimum() {
        // 2 members, 1 sender: 1 > 2 * 0.25, so no split; 100 * 2 / 500 = 0.4 s < 5 s.
        let p = IntervalParams {
            members: 2,
            senders: 1,
            rtcp_bw_bytes_per_s: 500.0,
            we_sent: false,
            avg_rtcp_size: 100.0,
            initial: false,
            min_interval_s: 5.0,
        };
        assert!(close(deterministic_interval_s(&p), 5.0));
        assert!(close(mean_interval_s(&p), 5.0 / 1.218_281_828_459_045));
        let first = IntervalParams { initial: true, ..p };
        assert!(close(deterministic_interval_s(&first), 2.5));
    }

    #[test]
    fn receivers_share_three_quarters() {
        // 1 Mbit/s session: RTCP 6250 B/s, receivers 4687.5 B/s; 999 receivers of 100 octets:
        // 100 * 999 / 4687.5 = 21.312 s.
        let p = IntervalParams::receiver(1000, 1_000_000.0, 100.0);
        assert!(close(p.rtcp_bw_bytes_per_s, 6250.0));
        assert!(close(deterministic_interval_s(&p), 21.312));
        // u = 0: 21.312 * 0.5 / 1.2182818 = 8.74677...; u = 1: three times that.
        let lo = randomized_interval_s(&p, 0.0);
        let hi = randomized_interval_s(&p, 1.0);
        assert!(close(lo, 10.656 / 1.218_281_828_459_045));
        assert!(close(hi, 3.0 * lo));
    }

    #[test]
    fn senders_share_a_quarter() {
        // 1000 members, 10 senders, we sent: 100 * 10 / 1562.5 = 0.64 s -> minimum 5 s.
        let p = IntervalParams {
            senders: 10,
            we_sent: true,
            ..IntervalParams::receiver(1000, 1_000_000.0, 100.0)
        };
        assert!(close(deterministic_interval_s(&p), 5.0));
        // 40 senders at 1000-octet reports: 1000 * 40 / 1562.5 = 25.6 s.
        let p = IntervalParams {
            senders: 40,
            avg_rtcp_size: 1000.0,
            ..p
        };
        assert!(close(deterministic_interval_s(&p), 25.6));
    }

    #[test]
    fn a_million_viewers_wait_hours() {
        // 10^6 receivers, 96-octet reports, 1 Mbit/s: 96 * 10^6 / 4687.5 = 20480 s deterministic,
        // 16810 s (4.7 h) on average: the order of magnitude the issue quotes.
        let p = IntervalParams::receiver(1_000_001, 1_000_000.0, 96.0);
        assert!(close(deterministic_interval_s(&p), 20480.0));
        let mean_h = mean_interval_s(&p) / 3600.0;
        assert!((4.0..5.5).contains(&mean_h), "{mean_h}");
    }

    #[test]
    fn reduced_minimum_and_average() {
        assert!(close(reduced_min_interval_s(1000.0), 0.36));
        assert!(close(update_avg_rtcp_size(100.0, 260.0), 110.0));
        assert_eq!(reconsider(10.0, 14.0, 5.0), Some(15.0));
        assert_eq!(reconsider(10.0, 15.5, 5.0), None);
    }
}
