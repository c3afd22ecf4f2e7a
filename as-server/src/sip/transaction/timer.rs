//! The named timer table of a SIP transaction (RFC 3261 section 17, table 4 in appendix A).
//!
//! Like quinn's `connection/timer.rs`: an enum names every timer a transaction can run, a
//! fixed array indexed by it holds the deadlines, and [`TimerTable::next_timeout`] is the
//! earliest armed one. The table never reads the clock; callers pass `now`.

use std::time::{Duration, Instant};

/// Every timer a SIP transaction can run.
///
/// RFC 3261 section 17 (A-K), RFC 6026 section 8.11 (L, M), plus the 200 ms "send 100 Trying"
/// timer of RFC 3261 section 17.2.1.
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// INVITE client: request retransmit (unreliable transports), T1 doubling.
    A,
    /// INVITE client: transaction timeout, 64*T1.
    B,
    /// INVITE client: wait time for response retransmits in Completed, >= 32 s (0 reliable).
    D,
    /// Non-INVITE client: request retransmit (unreliable), T1 doubling up to T2.
    E,
    /// Non-INVITE client: transaction timeout, 64*T1.
    F,
    /// INVITE server: final (non-2xx) response retransmit (unreliable), T1 doubling up to T2.
    G,
    /// INVITE server: wait time for the ACK, 64*T1.
    H,
    /// INVITE server: wait time for ACK retransmits in Confirmed, T4 (0 reliable).
    I,
    /// Non-INVITE server: wait time for request retransmits, 64*T1 (0 reliable).
    J,
    /// Non-INVITE client: wait time for response retransmits, T4 (0 reliable).
    K,
    /// INVITE server, RFC 6026: time spent in Accepted absorbing INVITE retransmits, 64*T1.
    L,
    /// INVITE client, RFC 6026: time spent in Accepted passing 2xx retransmits to the TU, 64*T1.
    M,
    /// INVITE server: the TU has not answered, send 100 Trying (RFC 3261 section 17.2.1).
    Trying,
    /// INVITE server in Accepted: retransmit the 2xx until the ACK arrives (RFC 3261
    /// section 13.3.1.4; done by the layer on the UAS core's behalf), T1 doubling up to T2.
    Retransmit2xx,
}

impl Timer {
    /// All timers, in index order.
    pub const ALL: [Timer; 14] = [
        Timer::A,
        Timer::B,
        Timer::D,
        Timer::E,
        Timer::F,
        Timer::G,
        Timer::H,
        Timer::I,
        Timer::J,
        Timer::K,
        Timer::L,
        Timer::M,
        Timer::Trying,
        Timer::Retransmit2xx,
    ];

    const fn index(self) -> usize {
        self as usize
    }
}

/// Deadlines of the armed timers of one transaction.
#[derive(Debug, Clone, Default)]
pub struct TimerTable {
    deadlines: [Option<Instant>; Timer::ALL.len()],
}

impl TimerTable {
    /// Arms (or re-arms) `timer` to fire at `deadline`.
    pub fn set(&mut self, timer: Timer, deadline: Instant) {
        self.deadlines[timer.index()] = Some(deadline);
    }

    /// The deadline of `timer`, if armed.
    #[must_use]
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines[timer.index()]
    }

    /// Disarms `timer`.
    pub fn stop(&mut self, timer: Timer) {
        self.deadlines[timer.index()] = None;
    }

    /// Disarms every timer.
    pub fn stop_all(&mut self) {
        self.deadlines = Default::default();
    }

    /// Whether `timer` is armed and its deadline is at or before `now`.
    #[must_use]
    pub fn is_expired(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|d| d <= now)
    }

    /// The earliest armed deadline.
    #[must_use]
    pub fn next_timeout(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// The earliest timer that has expired at `now`, disarmed before it is returned.
    /// Call in a loop until `None` to handle every expired timer in deadline order.
    pub fn pop_expired(&mut self, now: Instant) -> Option<Timer> {
        let (timer, _) = Timer::ALL
            .iter()
            .filter_map(|&t| self.get(t).map(|d| (t, d)))
            .filter(|&(_, d)| d <= now)
            .min_by_key(|&(t, d)| (d, t))?;
        self.stop(timer);
        Some(timer)
    }
}

/// The base timer values of RFC 3261 section 17 (table 4), configurable.
#[derive(Debug, Copy, Clone, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate, default 500 ms.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses, default 4 s.
    pub t2: Duration,
    /// Maximum time a message stays in the network, default 5 s.
    pub t4: Duration,
    /// How long an INVITE server transaction waits for the TU before it sends 100 Trying
    /// itself (RFC 3261 section 17.2.1 allows 200 ms). Default zero: 100 Trying goes out as
    /// soon as the INVITE arrives, which quenches upstream retransmissions (a load balancer's
    /// or SIPp's) deterministically whatever the TU's latency.
    pub trying_delay: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            trying_delay: Duration::ZERO,
        }
    }
}

impl TimerConfig {
    /// The configuration with T1 of at least 1 ms and T2 at least T1.
    #[must_use]
    pub fn sanitized(self) -> Self {
        let t1 = self.t1.max(Duration::from_millis(1));
        Self {
            t1,
            t2: self.t2.max(t1),
            ..self
        }
    }

    /// 64*T1: timers B, F, H, J, L, M.
    #[must_use]
    pub fn t1x64(&self) -> Duration {
        self.t1 * 64
    }

    /// Timer D: at least 32 s on unreliable transports, zero on reliable ones.
    #[must_use]
    pub fn timer_d(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            Duration::from_secs(32).max(self.t1x64() / 2)
        }
    }

    /// Timers I and K: T4 on unreliable transports, zero on reliable ones.
    #[must_use]
    pub fn t4_unless_reliable(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t4
        }
    }

    /// Timer J: 64*T1 on unreliable transports, zero on reliable ones.
    #[must_use]
    pub fn timer_j(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t1x64()
        }
    }

    /// The next retransmit interval after `current` for timers E and G: doubled, capped at T2.
    #[must_use]
    pub fn backoff_capped(&self, current: Duration) -> Duration {
        (current * 2).min(self.t2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The virtual clock's origin; only its arithmetic is used afterwards.
    #[expect(clippy::disallowed_methods)]
    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn next_timeout_is_earliest_and_pop_in_order() {
        let now = t0();
        let mut t = TimerTable::default();
        assert_eq!(t.next_timeout(), None);
        t.set(Timer::B, now + Duration::from_secs(32));
        t.set(Timer::A, now + Duration::from_millis(500));
        assert_eq!(t.next_timeout(), Some(now + Duration::from_millis(500)));
        assert_eq!(t.pop_expired(now), None);
        assert_eq!(t.pop_expired(now + Duration::from_secs(40)), Some(Timer::A));
        assert_eq!(t.pop_expired(now + Duration::from_secs(40)), Some(Timer::B));
        assert_eq!(t.pop_expired(now + Duration::from_secs(40)), None);
        assert_eq!(t.next_timeout(), None);
    }

    #[test]
    fn timer_values() {
        let c = TimerConfig::default();
        assert_eq!(c.t1x64(), Duration::from_secs(32));
        assert_eq!(c.timer_d(false), Duration::from_secs(32));
        assert_eq!(c.timer_d(true), Duration::ZERO);
        assert_eq!(
            c.backoff_capped(Duration::from_secs(2)),
            Duration::from_secs(4)
        );
        assert_eq!(
            c.backoff_capped(Duration::from_secs(4)),
            Duration::from_secs(4)
        );
    }
}
