//! Service counters, rendered in the Prometheus text exposition format (version 0.0.4) at
//! `GET /metrics` of the operator API. Plain atomics: counting never blocks a request.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use media_relay::control::RelayStats;
use media_relay::prometheus::{escape_label, write_family, write_metric};

use super::relays::RelayGauge;

/// The counters of one AS instance.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Successful joins (200 to an initial INVITE for a channel).
    pub joins: AtomicU64,
    /// Successful zaps (re-INVITE to another channel).
    pub zaps: AtomicU64,
    /// Leaves (BYE from a viewer).
    pub leaves: AtomicU64,
    /// Personal channels created over SIP.
    pub personal_created: AtomicU64,
    /// REGISTER requests answered 200.
    pub registers: AtomicU64,
    /// SUBSCRIBE requests answered 200.
    pub subscribes: AtomicU64,
    /// NOTIFY requests sent.
    pub notifies_sent: AtomicU64,
    /// Relays declared dead (each starts a failover).
    pub relay_failovers: AtomicU64,
    /// Sessions moved to another relay by a failover (re-INVITE answered 2xx).
    pub moved_viewers: AtomicU64,
    /// Sessions a failover could not move (no relay, re-INVITE refused or timed out): ended
    /// with a BYE.
    pub failover_ended: AtomicU64,
    /// Final failure responses sent by the service, by status code.
    failures: Mutex<BTreeMap<u16, u64>>,
}

/// Gauges sampled when rendering.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    /// Live sessions (viewers + personal channels).
    pub sessions_active: usize,
    /// Live `iptv-channels` subscriptions.
    pub subscriptions: usize,
    /// AoRs with a registration.
    pub registrations: usize,
    /// Channels in the catalogue.
    pub channels: usize,
}

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failure response.
    pub fn failure(&self, status: u16) {
        if let Ok(mut m) = self.failures.lock() {
            *m.entry(status).or_default() += 1;
        }
    }

    /// Failures counted for one status code.
    pub fn failures_for(&self, status: u16) -> u64 {
        self.failures
            .lock()
            .map(|m| m.get(&status).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Prometheus text of the relay pool: per relay (label `relay`) its viewers and whether
    /// it is healthy; the failover counters.
    pub fn render_relays(&self, o: &mut String, relays: &[RelayGauge]) {
        write_family(
            o,
            "as_relay_viewers",
            "gauge",
            "Viewers the AS placed on each relay.",
        );
        for r in relays {
            let _ = writeln!(
                o,
                "as_relay_viewers{{relay=\"{}\"}} {}",
                escape_label(&r.name),
                r.viewers
            );
        }
        write_family(
            o,
            "as_relay_healthy",
            "gauge",
            "1 while the relay answers its health probes, 0 once declared dead.",
        );
        for r in relays {
            let _ = writeln!(
                o,
                "as_relay_healthy{{relay=\"{}\"}} {}",
                escape_label(&r.name),
                u8::from(r.healthy)
            );
        }
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        write_metric(
            o,
            "as_relay_failovers_total",
            "counter",
            "Relays declared dead (each starts a failover).",
            get(&self.relay_failovers),
        );
        write_metric(
            o,
            "as_relay_moved_viewers_total",
            "counter",
            "Sessions moved to another relay by a failover.",
            get(&self.moved_viewers),
        );
        write_metric(
            o,
            "as_relay_failover_ended_total",
            "counter",
            "Sessions a failover could not move (ended with a BYE).",
            get(&self.failover_ended),
        );
    }

    /// Prometheus text for these counters, the gauges and (if available) the relay's stats.
    pub fn render(&self, g: Gauges, relay: Option<&RelayStats>) -> String {
        let mut o = String::with_capacity(2048);
        let mut metric = |name: &str, kind: &str, help: &str, v: u64| {
            write_metric(&mut o, name, kind, help, v);
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        metric(
            "as_sessions_active",
            "gauge",
            "Live sessions (viewers and personal channels).",
            g.sessions_active as u64,
        );
        metric(
            "as_subscriptions_active",
            "gauge",
            "Live iptv-channels subscriptions.",
            g.subscriptions as u64,
        );
        metric(
            "as_registrations_active",
            "gauge",
            "Addresses-of-record with a binding.",
            g.registrations as u64,
        );
        metric(
            "as_channels",
            "gauge",
            "Channels in the catalogue.",
            g.channels as u64,
        );
        metric(
            "as_joins_total",
            "counter",
            "Successful joins.",
            get(&self.joins),
        );
        metric(
            "as_zaps_total",
            "counter",
            "Successful in-dialog zaps.",
            get(&self.zaps),
        );
        metric(
            "as_leaves_total",
            "counter",
            "Viewer leaves (BYE).",
            get(&self.leaves),
        );
        metric(
            "as_personal_channels_created_total",
            "counter",
            "Personal channels created over SIP.",
            get(&self.personal_created),
        );
        metric(
            "as_registers_total",
            "counter",
            "REGISTER answered 200.",
            get(&self.registers),
        );
        metric(
            "as_subscribes_total",
            "counter",
            "SUBSCRIBE answered 200.",
            get(&self.subscribes),
        );
        metric(
            "as_notifies_sent_total",
            "counter",
            "NOTIFY sent.",
            get(&self.notifies_sent),
        );
        write_family(
            &mut o,
            "as_failures_total",
            "counter",
            "Failure responses sent, by status code.",
        );
        if let Ok(m) = self.failures.lock() {
            for (code, n) in m.iter() {
                let _ = writeln!(o, "as_failures_total{{code=\"{code}\"}} {n}");
            }
        }
        if let Some(r) = relay {
            let t = &r.totals;
            for (name, help, v) in [
                (
                    "relay_packets_in_total",
                    "RTP packets received.",
                    t.packets_in,
                ),
                (
                    "relay_packets_out_total",
                    "RTP packets sent.",
                    t.packets_out,
                ),
                ("relay_bytes_out_total", "RTP bytes sent.", t.bytes_out),
                (
                    "relay_burst_packets_total",
                    "Packets sent in key-frame bursts.",
                    t.burst_packets,
                ),
                ("relay_rtcp_in_total", "RTCP packets received.", t.rtcp_in),
                ("relay_rtcp_out_total", "RTCP packets sent.", t.rtcp_out),
                (
                    "relay_malformed_rtp_total",
                    "Malformed RTP dropped.",
                    t.malformed_rtp,
                ),
                ("relay_send_errors_total", "Send errors.", t.send_errors),
                (
                    "relay_viewers_dropped_total",
                    "Viewers dropped.",
                    t.viewers_dropped,
                ),
            ] {
                write_metric(&mut o, name, "counter", help, v);
            }
            write_family(&mut o, "relay_viewers", "gauge", "Viewers per channel.");
            for c in &r.channels {
                let _ = writeln!(
                    o,
                    "relay_viewers{{channel=\"{}\"}} {}",
                    escape_label(c.channel.as_str()),
                    c.viewers
                );
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_failures() {
        let m = Metrics::default();
        Metrics::inc(&m.joins);
        Metrics::inc(&m.joins);
        m.failure(404);
        m.failure(404);
        m.failure(488);
        let text = m.render(
            Gauges {
                sessions_active: 3,
                ..Gauges::default()
            },
            None,
        );
        assert!(text.contains("\nas_joins_total 2\n"), "{text}");
        assert!(text.contains("as_sessions_active 3\n"));
        assert!(text.contains("as_failures_total{code=\"404\"} 2\n"));
        assert!(text.contains("as_failures_total{code=\"488\"} 1\n"));
        assert_eq!(m.failures_for(404), 2);
        assert!(text.contains("# TYPE as_zaps_total counter"));
    }

    #[test]
    fn renders_relay_pool() {
        let m = Metrics::default();
        Metrics::inc(&m.relay_failovers);
        Metrics::inc(&m.moved_viewers);
        Metrics::inc(&m.moved_viewers);
        let mut o = String::new();
        m.render_relays(
            &mut o,
            &[
                RelayGauge {
                    name: "relay-0".into(),
                    healthy: false,
                    viewers: 0,
                },
                RelayGauge {
                    name: "relay-1".into(),
                    healthy: true,
                    viewers: 2,
                },
            ],
        );
        assert!(o.contains("as_relay_viewers{relay=\"relay-1\"} 2\n"), "{o}");
        assert!(o.contains("as_relay_healthy{relay=\"relay-0\"} 0\n"), "{o}");
        assert!(o.contains("as_relay_healthy{relay=\"relay-1\"} 1\n"), "{o}");
        assert!(o.contains("\nas_relay_failovers_total 1\n"), "{o}");
        assert!(o.contains("\nas_relay_moved_viewers_total 2\n"), "{o}");
    }

    #[test]
    fn label_escaping() {
        assert_eq!(escape_label("a\"b\\c\n"), "a\\\"b\\\\c\\n");
    }
}
