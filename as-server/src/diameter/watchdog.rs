//! The transport-failure watchdog of RFC 3539 section 3.4 (used by Diameter, RFC 6733 section
//! 5.5): a sans-IO sub-machine owned by [`crate::diameter::peer::Peer`].
//!
//! ```text
//!   INITIAL --conn up--> OKAY --Tw, DWR outstanding--> SUSPECT --Tw--> DOWN
//!                         ^  \--Tw, none: send DWR        |             |
//!                         |<------- any message ----------+      conn up: send DWR
//!                         |                                             v
//!                         +--------------- 3rd DWA ------------------ REOPEN
//! ```
//!
//! The peer feeds it what happened (`connection_up`, `received`, `timeout`,
//! `connection_down`) and acts on the returned [`WatchdogAction`]: send a DWR, fail over the
//! pending requests (SUSPECT, section 3.4.1 "Failover"), or close the connection (DOWN). The
//! timer is `Tw = Twinit ± jitter` (section 3.4.1: "Tw ... jittered by a random value of
//! ±2 seconds"), drawn from the seeded source the peer passes in, so tests replay exactly.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::Rng;

/// Watchdog states (RFC 3539 section 3.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchdogState {
    /// No connection has been up yet (or the last one ended cleanly).
    Initial,
    /// The connection is in use and answers.
    Okay,
    /// A DWR went unanswered for Tw: pending requests were failed over; traffic from the
    /// peer brings it back to OKAY.
    Suspect,
    /// The connection was declared dead (or dropped while in use).
    Down,
    /// A new connection after DOWN: not used for traffic until three DWAs came back.
    Reopen,
}

/// What the owner of the watchdog must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum WatchdogAction {
    /// Nothing.
    None,
    /// Send a DWR on the connection.
    SendDwr,
    /// The peer became SUSPECT: fail over its pending requests (section 3.4.1 "Failover").
    Failover,
    /// SUSPECT for a further Tw (or REOPEN without answers): close the connection (DOWN).
    CloseConnection,
    /// REOPEN -> OKAY or SUSPECT -> OKAY: the connection may carry traffic again.
    Failback,
}

/// Watchdog timer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchdogConfig {
    /// Twinit (RFC 3539 recommends 30 s; at least 6 s).
    pub tw_init: Duration,
    /// Jitter bound (± this; RFC 3539 says 2 s).
    pub jitter: Duration,
    /// DWAs needed in REOPEN before the connection is used again (RFC 3539: 3).
    pub reopen_dwas: i32,
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        Self {
            tw_init: Duration::from_secs(30),
            jitter: Duration::from_secs(2),
            reopen_dwas: 3,
        }
    }
}

/// The RFC 3539 watchdog for one peer.
#[derive(Debug)]
pub struct Watchdog {
    config: WatchdogConfig,
    state: WatchdogState,
    pending: bool,
    num_dwa: i32,
    deadline: Option<Instant>,
}

impl Watchdog {
    /// A watchdog in INITIAL.
    #[must_use]
    pub fn new(config: WatchdogConfig) -> Self {
        Self {
            config,
            state: WatchdogState::Initial,
            pending: false,
            num_dwa: 0,
            deadline: None,
        }
    }

    /// Current state.
    #[must_use]
    pub fn state(&self) -> WatchdogState {
        self.state
    }

    /// Whether application traffic may use the connection (OKAY only).
    #[must_use]
    pub fn usable(&self) -> bool {
        self.state == WatchdogState::Okay
    }

    /// When [`Watchdog::timeout`] is due.
    #[must_use]
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Settings.
    #[must_use]
    pub fn config(&self) -> &WatchdogConfig {
        &self.config
    }

    fn set_watchdog(&mut self, now: Instant, rng: &mut StdRng) {
        let j = self.config.jitter.as_millis() as i64;
        let off = if j > 0 { rng.gen_range(-j..=j) } else { 0 };
        let base = self.config.tw_init.as_millis() as i64;
        let tw = Duration::from_millis((base + off).max(1000) as u64);
        self.deadline = Some(now + tw);
    }

    /// The Diameter connection completed its capability exchange (RFC 3539 "connection
    /// up"). From INITIAL the connection is usable at once; after DOWN it goes to REOPEN and
    /// a DWR is due.
    pub fn connection_up(&mut self, now: Instant, rng: &mut StdRng) -> WatchdogAction {
        self.set_watchdog(now, rng);
        match self.state {
            WatchdogState::Down => {
                self.state = WatchdogState::Reopen;
                self.pending = true;
                self.num_dwa = 0;
                WatchdogAction::SendDwr
            }
            _ => {
                self.state = WatchdogState::Okay;
                self.pending = false;
                WatchdogAction::None
            }
        }
    }

    /// The connection went away. `failure` is false for a clean shutdown (DPR/DPA), which
    /// returns to INITIAL; otherwise DOWN (so the next connection is probed in REOPEN).
    pub fn connection_down(&mut self, failure: bool) {
        self.deadline = None;
        self.pending = false;
        self.state = if failure {
            WatchdogState::Down
        } else {
            WatchdogState::Initial
        };
    }

    /// A message arrived from the peer (`dwa`: it was a DWA).
    pub fn received(&mut self, now: Instant, dwa: bool, rng: &mut StdRng) -> WatchdogAction {
        match self.state {
            WatchdogState::Okay => {
                if dwa {
                    self.pending = false;
                }
                self.set_watchdog(now, rng);
                WatchdogAction::None
            }
            WatchdogState::Suspect => {
                if dwa {
                    self.pending = false;
                }
                self.state = WatchdogState::Okay;
                self.set_watchdog(now, rng);
                WatchdogAction::Failback
            }
            WatchdogState::Reopen if dwa => {
                self.pending = false;
                self.num_dwa += 1;
                if self.num_dwa >= self.config.reopen_dwas {
                    self.state = WatchdogState::Okay;
                    self.set_watchdog(now, rng);
                    WatchdogAction::Failback
                } else {
                    WatchdogAction::None
                }
            }
            _ => WatchdogAction::None,
        }
    }

    /// The deadline passed (call when `now >= deadline`).
    pub fn timeout(&mut self, now: Instant, rng: &mut StdRng) -> WatchdogAction {
        match self.deadline {
            Some(d) if now >= d => {}
            _ => return WatchdogAction::None,
        }
        match self.state {
            WatchdogState::Okay => {
                self.set_watchdog(now, rng);
                if self.pending {
                    self.state = WatchdogState::Suspect;
                    WatchdogAction::Failover
                } else {
                    self.pending = true;
                    WatchdogAction::SendDwr
                }
            }
            WatchdogState::Suspect => {
                self.state = WatchdogState::Down;
                self.deadline = None;
                WatchdogAction::CloseConnection
            }
            WatchdogState::Reopen => {
                self.set_watchdog(now, rng);
                if self.pending {
                    if self.num_dwa < 0 {
                        self.state = WatchdogState::Down;
                        self.deadline = None;
                        WatchdogAction::CloseConnection
                    } else {
                        self.num_dwa = -1;
                        WatchdogAction::None
                    }
                } else {
                    self.pending = true;
                    WatchdogAction::SendDwr
                }
            }
            WatchdogState::Initial | WatchdogState::Down => {
                self.deadline = None;
                WatchdogAction::None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn okay_suspect_down() {
        let mut rng = StdRng::seed_from_u64(1);
        let base = Instant::now_for_tests();
        let mut w = Watchdog::new(WatchdogConfig::default());
        assert_eq!(w.connection_up(base, &mut rng), WatchdogAction::None);
        assert_eq!(w.state(), WatchdogState::Okay);
        let d = w.deadline().unwrap();
        assert!(d >= base + Duration::from_secs(28) && d <= base + Duration::from_secs(32));
        assert_eq!(w.timeout(d, &mut rng), WatchdogAction::SendDwr);
        let d = w.deadline().unwrap();
        assert_eq!(w.timeout(d, &mut rng), WatchdogAction::Failover);
        assert_eq!(w.state(), WatchdogState::Suspect);
        let d = w.deadline().unwrap();
        assert_eq!(w.timeout(d, &mut rng), WatchdogAction::CloseConnection);
        assert_eq!(w.state(), WatchdogState::Down);
        // Reopen needs three DWAs.
        assert_eq!(w.connection_up(d, &mut rng), WatchdogAction::SendDwr);
        assert_eq!(w.state(), WatchdogState::Reopen);
        assert_eq!(w.received(d, true, &mut rng), WatchdogAction::None);
        assert_eq!(w.received(d, false, &mut rng), WatchdogAction::None);
        assert_eq!(w.received(d, true, &mut rng), WatchdogAction::None);
        assert!(!w.usable());
        assert_eq!(w.received(d, true, &mut rng), WatchdogAction::Failback);
        assert!(w.usable());
    }

    trait NowForTests {
        fn now_for_tests() -> Instant;
    }
    impl NowForTests for Instant {
        #[expect(clippy::disallowed_methods)]
        fn now_for_tests() -> Instant {
            Instant::now()
        }
    }
}
