//! Configuration of the `as-server` binary: one TOML file with a sane default for every field,
//! overridable by command-line flags and `AS_...` environment variables.
//!
//! Precedence, highest first: flag, environment variable, TOML file, built-in default.
//! `Config::default()` is a working standalone AS on loopback (SIP 127.0.0.1:5060 UDP+TCP,
//! TLS 5061 with a self-signed development certificate, HTTP 127.0.0.1:8080, SQLite file,
//! in-process relay, the test-pattern channel `news`). See `examples/standalone.toml`.
//!
//! Any listen address may use port 0 (the OS picks a free port); the binary prints the bound
//! address of every listener on start, and the tests rely on that to run on ephemeral ports.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors loading the configuration. Split by cause: the file could not be read, or its
/// content is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// Path given with `--config`.
        path: PathBuf,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// Path given with `--config`.
        path: PathBuf,
        /// TOML / serde error (names the offending key).
        source: Box<toml::de::Error>,
    },
    /// The values are individually valid but contradict each other.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole configuration of one AS instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// SIP listeners and the AS's own host name.
    pub sip: SipConfig,
    /// Operator HTTP API (axum): `/api/...`, `/metrics`, `/healthz`.
    pub http: HttpConfig,
    /// Channel catalogue and sessions (sqlx).
    pub database: DatabaseConfig,
    /// Media relay used for ingest and fan-out.
    pub relay: RelaySection,
    /// Channels created (if missing) at start.
    pub channels: Vec<ChannelSeed>,
    /// Admission control.
    pub limits: Limits,
    /// `iptv-channels` subscriptions (SUBSCRIBE/NOTIFY).
    pub subscriptions: ExpiryBounds,
    /// Standalone registrar (REGISTER).
    pub registrar: ExpiryBounds,
    /// Diameter AAA: Sh authorisation, Rf accounting, REGISTER digest (`service::aaa`).
    pub aaa: crate::service::aaa::AaaSection,
    /// Channel categories for personalised channels' category rules: category name ->
    /// channel ids, in the order a rule puts them on air (`[categories]`,
    /// e.g. `sport = ["sport1", "sport2"]`; `service::personalized`).
    pub categories: std::collections::BTreeMap<String, Vec<String>>,
    /// RELOAD overlay peer: channel directory, channel -> relays, SIP-REGISTRATION
    /// (`service::overlay`; off by default).
    pub overlay: crate::service::overlay::OverlaySection,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            sip: SipConfig::default(),
            http: HttpConfig::default(),
            database: DatabaseConfig::default(),
            relay: RelaySection::default(),
            channels: vec![ChannelSeed {
                id: "news".into(),
                name: "News (test pattern)".into(),
                test_pattern: true,
            }],
            limits: Limits::default(),
            subscriptions: ExpiryBounds {
                min: 60,
                max: 3600,
                default: 600,
            },
            registrar: ExpiryBounds {
                min: 60,
                max: 7200,
                default: 3600,
            },
            aaa: crate::service::aaa::AaaSection::default(),
            categories: std::collections::BTreeMap::new(),
            overlay: crate::service::overlay::OverlaySection::default(),
        }
    }
}

/// SIP transport listeners (RFC 3261 section 18) and identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipConfig {
    /// UDP listen address; `None` disables UDP.
    pub udp: Option<SocketAddr>,
    /// TCP listen address; `None` disables TCP.
    pub tcp: Option<SocketAddr>,
    /// TLS listen address (sips:, RFC 3261 section 26.2); `None` disables TLS.
    pub tls: Option<SocketAddr>,
    /// PEM certificate chain for TLS; a self-signed development certificate when absent.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS; required when `tls_cert` is set.
    pub tls_key: Option<PathBuf>,
    /// The AS's domain/host: the host part of channel URIs (`sip:news@<domain>`), the
    /// Warning header agent and the Contact host when `contact_host` is not set.
    pub domain: String,
    /// Host written in Contact headers (defaults to the UDP listener's IP).
    pub contact_host: Option<String>,
}

impl Default for SipConfig {
    fn default() -> Self {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Self {
            udp: Some(SocketAddr::new(lo, 5060)),
            tcp: Some(SocketAddr::new(lo, 5060)),
            tls: Some(SocketAddr::new(lo, 5061)),
            tls_cert: None,
            tls_key: None,
            domain: "127.0.0.1".into(),
            contact_host: None,
        }
    }
}

/// Operator HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address; `None` disables the HTTP API.
    pub listen: Option<SocketAddr>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080)),
        }
    }
}

/// Database holding the channel catalogue and the sessions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// sqlx URL: `sqlite://FILE?mode=rwc` (created on first run), `sqlite::memory:`, or
    /// `postgres://...` (several AS instances sharing one catalogue).
    pub url: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://as-server.db?mode=rwc".into(),
        }
    }
}

/// Where the media relay runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RelayMode {
    /// `media_relay::Relay::spawn` on this process's tokio runtime.
    #[default]
    InProcess,
}

/// Media relay settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelaySection {
    /// In-process (the only mode of this version).
    pub mode: RelayMode,
    /// IP the relay binds its RTP/RTCP sockets to (and writes in SDP).
    pub bind_ip: IpAddr,
    /// IP written in SDP and ingest answers when `bind_ip` is a wildcard.
    pub advertise_ip: Option<IpAddr>,
    /// First port of the relay's ingest range (0 and 0: ephemeral ports).
    pub port_min: u16,
    /// Last port of the relay's ingest range (inclusive).
    pub port_max: u16,
    /// The relay's output RTP port, shared by all viewers (0: ephemeral); RTCP is the next.
    pub output_rtp_port: u16,
    /// Most viewers on each relay (more: 503).
    pub max_viewers: usize,
    /// How many in-process relays (`relay-0`, `relay-1`, ...). With a fixed ingest range
    /// each relay gets an equal slice of it; with a fixed output port relay `i` sends from
    /// `output_rtp_port + 2*i` (RTCP the next port). See `service::relays`.
    pub count: usize,
    /// Milliseconds between health probes of each relay (`stats()` under a timeout).
    pub health_interval_ms: u64,
    /// Consecutive failed probes after which a relay is declared dead and its viewers are
    /// moved (a control call answered "stopped" declares it dead at once).
    pub health_failures: u32,
    /// Milliseconds a health probe (or a failover control call) may take.
    pub health_timeout_ms: u64,
    /// Milliseconds a session whose viewer the relay dropped by itself (RTCP BYE, RTCP
    /// silence, unreachable) waits for the UE's own SIP BYE before the AS ends it with a BYE.
    /// A phone sends its SIP BYE and its RTCP BYE together, in either order.
    pub dropped_viewer_grace_ms: u64,
    /// Relay tree (`service::tu::tree`, default off): a channel is ingested at one relay,
    /// its home (a test pattern runs there only), and every other relay pulls one copy from
    /// the home while it has viewers of it; viewers go to the least-loaded relay. When the
    /// home dies the failover re-homes the ingest and points the other relays at the new
    /// home.
    pub tree: bool,
    /// Where the AS serves each in-process relay's HTTP control API (relay `i` on port +
    /// `i`, or any port when 0), so other ASes' relays can pull channels from them
    /// (`service::overlay`). `None` (default): not served.
    pub control_listen: Option<SocketAddr>,
    /// Channels sent to a multicast group instead of per-viewer unicast
    /// (`[[relay.multicast]]` with `channel`, `group = "239.1.1.1:5004"`, `payload_type`;
    /// default none): the relay sends one stream to the group while the channel has
    /// viewers, and their SDP answers carry `c=IN IP4 <group>/<ttl>` (RFC 8866 section 5.7).
    /// Only where the network routes multicast to the viewers.
    pub multicast: Vec<media_relay::control::MulticastChannel>,
    /// IPv4 TTL of the multicast streams, also written in the SDP `c=` line.
    pub multicast_ttl: u8,
}

impl Default for RelaySection {
    fn default() -> Self {
        Self {
            mode: RelayMode::InProcess,
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            advertise_ip: None,
            port_min: 20000,
            port_max: 29999,
            output_rtp_port: 19000,
            max_viewers: 10_000,
            count: 1,
            health_interval_ms: 100,
            health_failures: 2,
            health_timeout_ms: 500,
            dropped_viewer_grace_ms: 2000,
            tree: false,
            control_listen: None,
            multicast: Vec::new(),
            multicast_ttl: 16,
        }
    }
}

impl RelaySection {
    /// The configuration of the first in-process relay (`relay-0`).
    pub fn relay_config(&self) -> media_relay::RelayConfig {
        self.relay_config_for(0)
    }

    /// The name of relay `i` (session rows, metrics labels, its RTCP CNAME).
    pub fn relay_name(i: usize) -> String {
        format!("relay-{i}")
    }

    /// The configuration of in-process relay `i` of [`Self::count`]: its slice of the
    /// ingest range, its output port, its name as RTCP CNAME (RFC 3550 section 6.5.1; the
    /// AS writes the same in `a=ssrc:<ssrc> cname:`, RFC 5576).
    pub fn relay_config_for(&self, i: usize) -> media_relay::RelayConfig {
        let n = self.count.max(1);
        let (min, max) = if self.port_min == 0 {
            (0, 0)
        } else {
            let width = (u32::from(self.port_max) - u32::from(self.port_min) + 1) / n as u32;
            let lo = u32::from(self.port_min) + width * i as u32;
            let hi = if i + 1 == n {
                u32::from(self.port_max)
            } else {
                lo + width - 1
            };
            (
                u16::try_from(lo).unwrap_or(u16::MAX),
                u16::try_from(hi).unwrap_or(u16::MAX),
            )
        };
        let output = if self.output_rtp_port == 0 {
            0
        } else {
            u16::try_from(u32::from(self.output_rtp_port) + 2 * i as u32).unwrap_or(0)
        };
        media_relay::RelayConfig {
            bind_ip: self.bind_ip,
            advertise_ip: self.advertise_ip,
            ingest_port_min: min,
            ingest_port_max: max,
            output_rtp_port: output,
            output_rtcp_port: 0,
            max_viewers: self.max_viewers,
            cname: Self::relay_name(i),
            multicast: self.multicast.clone(),
            multicast_ttl: self.multicast_ttl,
            ..media_relay::RelayConfig::default()
        }
    }

    /// Checks the relay count against the ports (called by [`Config::validate`]).
    fn validate(&self) -> Result<(), String> {
        let n = self.count;
        if n == 0 || n > 64 {
            return Err(format!("relay.count {n}: need 1 to 64"));
        }
        if self.health_interval_ms == 0 || self.health_failures == 0 || self.health_timeout_ms == 0
        {
            return Err(
                "relay.health_interval_ms, health_failures and health_timeout_ms must be > 0"
                    .into(),
            );
        }
        if self.port_min != 0 {
            let size = u32::from(self.port_max) - u32::from(self.port_min) + 1;
            // Each relay needs at least two RTP/RTCP pairs.
            if size / (n as u32) < 4 {
                return Err(format!(
                    "relay ingest range {}-{} is too small for {n} relays (4 ports each at least)",
                    self.port_min, self.port_max
                ));
            }
        }
        if self.output_rtp_port != 0 {
            let first = u32::from(self.output_rtp_port);
            let last = first + 2 * n as u32 - 1;
            if last > 65535 {
                return Err(format!(
                    "relay.output_rtp_port {first}: {n} relays need ports up to {last}"
                ));
            }
            if self.port_min != 0
                && first <= u32::from(self.port_max)
                && last >= u32::from(self.port_min)
            {
                return Err(format!(
                    "relay output ports {first}-{last} overlap the ingest range {}-{}",
                    self.port_min, self.port_max
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for m in &self.multicast {
            if !m.group.ip().is_multicast() || m.group.port() == 0 {
                return Err(format!(
                    "relay.multicast {}: group {} is not a multicast address with a port",
                    m.channel.0, m.group
                ));
            }
            if !seen.insert(&m.channel) {
                return Err(format!("relay.multicast: channel {} twice", m.channel.0));
            }
        }
        if !self.multicast.is_empty() && self.multicast_ttl == 0 {
            return Err("relay.multicast_ttl must be > 0".into());
        }
        Ok(())
    }
}

/// A channel created at start if it does not exist yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSeed {
    /// Channel id: the user part of `sip:<id>@<domain>`.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// The relay feeds the channel itself with its H.264 test pattern.
    #[serde(default = "yes")]
    pub test_pattern: bool,
}

fn yes() -> bool {
    true
}

/// Admission control: above `max_sessions` live viewer sessions a join gets
/// `503 Service Unavailable` with `Retry-After` (RFC 3261 section 21.5.4 / 20.33).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Maximum concurrent sessions (viewers and personal channels).
    pub max_sessions: usize,
    /// Seconds put in `Retry-After` of a 503.
    pub retry_after_secs: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_sessions: 10_000,
            retry_after_secs: 5,
        }
    }
}

/// Bounds for a requested `Expires` (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpiryBounds {
    /// Smallest accepted non-zero value; below it the request gets 423 Interval Too Brief.
    pub min: u32,
    /// Largest granted value (larger requests are cut down to it).
    pub max: u32,
    /// Used when the request names none.
    pub default: u32,
}

/// Command line of `as-server`. Every flag has an `AS_...` environment variable.
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(name = "as-server", version, about = "IMS application server for IPTV")]
pub struct Cli {
    /// TOML configuration file (defaults apply to everything it leaves out).
    #[arg(long, short = 'c', env = "AS_CONFIG")]
    pub config: Option<PathBuf>,
    /// SIP UDP listen address.
    #[arg(long, env = "AS_SIP_UDP")]
    pub sip_udp: Option<SocketAddr>,
    /// SIP TCP listen address.
    #[arg(long, env = "AS_SIP_TCP")]
    pub sip_tcp: Option<SocketAddr>,
    /// SIP TLS listen address.
    #[arg(long, env = "AS_SIP_TLS")]
    pub sip_tls: Option<SocketAddr>,
    /// The AS's SIP domain/host.
    #[arg(long, env = "AS_DOMAIN")]
    pub domain: Option<String>,
    /// HTTP API listen address.
    #[arg(long, env = "AS_HTTP")]
    pub http: Option<SocketAddr>,
    /// Database URL (sqlite://... or postgres://...).
    #[arg(long, env = "AS_DATABASE_URL")]
    pub database_url: Option<String>,
    /// IP the in-process relay binds to.
    #[arg(long, env = "AS_RELAY_BIND_IP")]
    pub relay_bind_ip: Option<IpAddr>,
    /// Maximum concurrent sessions before 503.
    #[arg(long, env = "AS_MAX_SESSIONS")]
    pub max_sessions: Option<usize>,
    /// How many in-process relays.
    #[arg(long, env = "AS_RELAY_COUNT")]
    pub relay_count: Option<usize>,
}

impl Config {
    /// Parses a TOML document (missing keys take their defaults).
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// Reads and parses a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let cfg = Self::from_toml(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Defaults, then the `--config` file, then flags/environment; validated.
    pub fn load(cli: &Cli) -> Result<Self, ConfigError> {
        let mut cfg = match &cli.config {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        cfg.apply(cli);
        cfg.validate()?;
        Ok(cfg)
    }

    /// Applies the flags/environment values that were given.
    pub fn apply(&mut self, cli: &Cli) {
        if let Some(a) = cli.sip_udp {
            self.sip.udp = Some(a);
        }
        if let Some(a) = cli.sip_tcp {
            self.sip.tcp = Some(a);
        }
        if let Some(a) = cli.sip_tls {
            self.sip.tls = Some(a);
        }
        if let Some(d) = &cli.domain {
            self.sip.domain.clone_from(d);
        }
        if let Some(a) = cli.http {
            self.http.listen = Some(a);
        }
        if let Some(u) = &cli.database_url {
            self.database.url.clone_from(u);
        }
        if let Some(ip) = cli.relay_bind_ip {
            self.relay.bind_ip = ip;
        }
        if let Some(n) = cli.max_sessions {
            self.limits.max_sessions = n;
        }
        if let Some(n) = cli.relay_count {
            self.relay.count = n;
        }
    }

    /// Checks the cross-field rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.sip.udp.is_none() && self.sip.tcp.is_none() && self.sip.tls.is_none() {
            return bad("no SIP listener (sip.udp, sip.tcp and sip.tls are all unset)".into());
        }
        if self.sip.tls_cert.is_some() != self.sip.tls_key.is_some() {
            return bad("sip.tls_cert and sip.tls_key go together".into());
        }
        if self.sip.domain.trim().is_empty() {
            return bad("sip.domain is empty".into());
        }
        if (self.relay.port_min == 0) != (self.relay.port_max == 0) {
            return bad("relay.port_min and relay.port_max: both 0 (ephemeral) or a range".into());
        }
        if self.relay.port_min > self.relay.port_max {
            return bad(format!(
                "relay.port_min {} > relay.port_max {}",
                self.relay.port_min, self.relay.port_max
            ));
        }
        if let Err(m) = self.relay.validate() {
            return bad(m);
        }
        for (what, b) in [
            ("subscriptions", self.subscriptions),
            ("registrar", self.registrar),
        ] {
            if b.min > b.max || b.default < b.min || b.default > b.max {
                return bad(format!("{what}: need min <= default <= max, got {b:?}"));
            }
        }
        let mut ids = std::collections::HashSet::new();
        for c in &self.channels {
            if !crate::service::personal::is_valid_channel_id(&c.id) {
                return bad(format!(
                    "channel id {:?} is not a valid SIP user part",
                    c.id
                ));
            }
            if !ids.insert(c.id.as_str()) {
                return bad(format!("channel id {:?} listed twice", c.id));
            }
        }
        Ok(())
    }
}

impl ExpiryBounds {
    /// Grants an expiry for a requested value (RFC 3261 section 10.3 step 7 / RFC 6665
    /// section 4.2.1.1): `None` takes the default; 0 stays 0 (removal / unsubscribe);
    /// below `min` is refused with `Err(min)` (423 Interval Too Brief with `Min-Expires`);
    /// above `max` is cut to `max`.
    pub fn grant(&self, requested: Option<u32>) -> Result<u32, u32> {
        match requested {
            None => Ok(self.default),
            Some(0) => Ok(0),
            Some(v) if v < self.min => Err(self.min),
            Some(v) => Ok(v.min(self.max)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_standalone_testbed() {
        let c = Config::default();
        assert_eq!(c.sip.udp, Some("127.0.0.1:5060".parse().unwrap()));
        assert_eq!(c.sip.tcp, Some("127.0.0.1:5060".parse().unwrap()));
        assert_eq!(c.sip.tls, Some("127.0.0.1:5061".parse().unwrap()));
        assert_eq!(c.http.listen, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(c.database.url, "sqlite://as-server.db?mode=rwc");
        assert_eq!(c.channels[0].id, "news");
        assert!(c.channels[0].test_pattern);
        c.validate().unwrap();
    }

    #[test]
    fn empty_toml_is_default() {
        assert_eq!(Config::from_toml("").unwrap(), Config::default());
    }

    #[test]
    fn partial_toml_keeps_other_defaults() {
        let c = Config::from_toml(
            "[sip]\nudp = \"127.0.0.1:0\"\n[[channels]]\nid = \"sport\"\nname = \"Sport\"\n",
        )
        .unwrap();
        assert_eq!(c.sip.udp, Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(c.sip.tls, SipConfig::default().tls);
        assert_eq!(c.channels.len(), 1);
        assert!(c.channels[0].test_pattern, "test_pattern defaults to true");
    }

    #[test]
    fn multicast_channels_reach_every_relay_and_are_checked() {
        let c = Config::from_toml(
            "[relay]\ncount = 2\nmulticast_ttl = 4\n\
             [[relay.multicast]]\nchannel = \"news\"\ngroup = \"239.1.1.1:5004\"\n",
        )
        .unwrap();
        c.validate().unwrap();
        for i in 0..2 {
            let r = c.relay.relay_config_for(i);
            assert_eq!(r.multicast.len(), 1);
            assert_eq!(r.multicast[0].group, "239.1.1.1:5004".parse().unwrap());
            assert_eq!(r.multicast_ttl, 4);
        }
        let bad = Config::from_toml(
            "[[relay.multicast]]\nchannel = \"news\"\ngroup = \"10.0.0.1:5004\"\n",
        )
        .unwrap();
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("not a multicast address"), "{e}");
        let twice = Config::from_toml(
            "[[relay.multicast]]\nchannel = \"news\"\ngroup = \"239.1.1.1:5004\"\n\
             [[relay.multicast]]\nchannel = \"news\"\ngroup = \"239.1.1.2:5004\"\n",
        )
        .unwrap();
        assert!(twice.validate().is_err());
    }

    #[test]
    fn unknown_key_is_an_error() {
        let e = Config::from_toml("[sip]\nudpp = \"127.0.0.1:0\"\n").unwrap_err();
        assert!(e.to_string().contains("udpp"), "{e}");
    }

    #[test]
    fn the_shipped_example_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/standalone.toml");
        let c = Config::from_file(&path).unwrap();
        assert_eq!(c.sip.udp, Some("127.0.0.1:5060".parse().unwrap()));
        assert_eq!(c.sip.tls, Some("127.0.0.1:5061".parse().unwrap()));
        assert!(c
            .channels
            .iter()
            .any(|ch| ch.id == "news" && ch.test_pattern));
        assert!(
            c.channels
                .iter()
                .any(|ch| ch.id == "sport" && ch.test_pattern),
            "a second channel to zap to"
        );
    }

    #[test]
    fn flags_override_file_values() {
        let mut c = Config::default();
        let cli = Cli {
            sip_udp: Some("127.0.0.1:0".parse().unwrap()),
            database_url: Some("sqlite::memory:".into()),
            max_sessions: Some(2),
            ..Cli::default()
        };
        c.apply(&cli);
        assert_eq!(c.sip.udp, Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(c.sip.tcp, SipConfig::default().tcp);
        assert_eq!(c.database.url, "sqlite::memory:");
        assert_eq!(c.limits.max_sessions, 2);
    }

    #[test]
    fn validation_catches_contradictions() {
        let mut c = Config::default();
        c.relay.port_min = 3000;
        c.relay.port_max = 2000;
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.channels.push(c.channels[0].clone());
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.sip.tls_cert = Some("cert.pem".into());
        assert!(c.validate().is_err());
    }

    #[test]
    fn relays_split_the_ports() {
        let mut c = Config::default();
        c.relay.count = 3;
        c.validate().unwrap();
        let r: Vec<_> = (0..3).map(|i| c.relay.relay_config_for(i)).collect();
        assert_eq!((r[0].ingest_port_min, r[0].ingest_port_max), (20000, 23332));
        assert_eq!((r[1].ingest_port_min, r[1].ingest_port_max), (23333, 26665));
        assert_eq!((r[2].ingest_port_min, r[2].ingest_port_max), (26666, 29999));
        assert_eq!(
            r.iter().map(|x| x.output_rtp_port).collect::<Vec<_>>(),
            [19000, 19002, 19004]
        );
        assert_eq!(r[2].cname, "relay-2");
        c.relay.port_min = 0;
        c.relay.port_max = 0;
        c.relay.output_rtp_port = 0;
        c.validate().unwrap();
        assert_eq!(c.relay.relay_config_for(1).ingest_port_min, 0);
        assert_eq!(c.relay.relay_config_for(1).output_rtp_port, 0);
    }

    #[test]
    fn relay_count_is_validated() {
        let mut c = Config::default();
        c.relay.count = 0;
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.relay.count = 2;
        c.relay.port_min = 20000;
        c.relay.port_max = 20006;
        assert!(c.validate().is_err(), "7 ports for 2 relays");
        let mut c = Config::default();
        c.relay.count = 600;
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.relay.count = 4;
        c.relay.output_rtp_port = 19996;
        assert!(
            c.validate().is_err(),
            "output ports run into the ingest range"
        );
        let cli = Cli {
            relay_count: Some(2),
            ..Cli::default()
        };
        let mut c = Config::default();
        c.apply(&cli);
        assert_eq!(c.relay.count, 2);
    }

    #[test]
    fn expiry_grant_follows_bounds() {
        let b = ExpiryBounds {
            min: 60,
            max: 3600,
            default: 600,
        };
        assert_eq!(b.grant(None), Ok(600));
        assert_eq!(b.grant(Some(0)), Ok(0));
        assert_eq!(b.grant(Some(30)), Err(60));
        assert_eq!(b.grant(Some(100)), Ok(100));
        assert_eq!(b.grant(Some(100_000)), Ok(3600));
    }
}
