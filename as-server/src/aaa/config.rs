//! Configuration of the embedded AAA (`as-server aaa --config as-server/examples/aaa.toml`):
//! TOML with defaults for everything, overridden by flags / `AS_AAA_...` environment
//! variables ([`AaaCli`]).
//!
//! ```toml
//! [diameter]
//! listen = "127.0.0.1:3868"
//! origin_host = "aaa.iptv.example"
//! origin_realm = "iptv.example"
//! tls = false                 # TLS on the listener (tls_cert/tls_key, else a dev cert)
//! watchdog_secs = 30          # Tw towards the AS peers
//! request_timeout_secs = 5    # PNR answer wait
//!
//! [http]
//! listen = "127.0.0.1:8081"   # operator API; omit the key or use --no-http to disable
//!
//! [database]
//! url = "sqlite://aaa.db?mode=rwc"
//!
//! [[subscribers]]
//! identity = "sip:alice@iptv.example"
//! password = "alice"          # hashed to HA1 at seeding; or give ha1 = "<hex>"
//! packages = ["basic", "sports"]
//! max_streams = 2
//! parental_level = 12
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AaaConfigError {
    /// The file cannot be read.
    #[error("reading {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("parsing {path}: {source}")]
    Parse {
        /// File.
        path: PathBuf,
        /// Why.
        source: Box<toml::de::Error>,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole AAA configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AaaConfig {
    /// The Diameter node.
    pub diameter: DiameterSection,
    /// The operator HTTP API.
    pub http: AaaHttp,
    /// The store.
    pub database: AaaDatabase,
    /// The digest realm used for subscribers that name none.
    pub digest: DigestSection,
    /// Subscribers created at start when missing (existing ones are left as they are, so
    /// operator changes survive a restart).
    pub subscribers: Vec<SubscriberSeed>,
}

/// The Diameter node of the AAA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiameterSection {
    /// Listen address (RFC 6733 port 3868).
    pub listen: SocketAddr,
    /// Origin-Host.
    pub origin_host: String,
    /// Origin-Realm.
    pub origin_realm: String,
    /// TLS on the listener (RFC 6733 section 13: TLS before CER).
    pub tls: bool,
    /// PEM certificate chain for TLS (a self-signed development one when absent).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    pub tls_key: Option<PathBuf>,
    /// Watchdog interval Tw (RFC 3539), seconds.
    pub watchdog_secs: u64,
    /// How long a PNR waits for its PNA, seconds.
    pub request_timeout_secs: u64,
    /// Accept CERs from any Origin-Host (the AS instances are not listed one by one).
    pub accept_any_peer: bool,
    /// When `accept_any_peer` is false: the Origin-Hosts allowed to connect.
    pub peers: Vec<String>,
}

impl Default for DiameterSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 3868),
            origin_host: "aaa.iptv.example".into(),
            origin_realm: "iptv.example".into(),
            tls: false,
            tls_cert: None,
            tls_key: None,
            watchdog_secs: 30,
            request_timeout_secs: 5,
            accept_any_peer: true,
            peers: Vec::new(),
        }
    }
}

/// The AAA's operator API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AaaHttp {
    /// Listen address; `None` disables it.
    pub listen: Option<SocketAddr>,
}

/// The AAA's store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AaaDatabase {
    /// sqlx URL (`sqlite://FILE?mode=rwc`, `sqlite::memory:`, `postgres://...`).
    pub url: String,
}

impl Default for AaaDatabase {
    fn default() -> Self {
        Self {
            url: "sqlite://aaa.db?mode=rwc".into(),
        }
    }
}

/// Digest defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DigestSection {
    /// Realm for subscribers that name none (the AS challenges REGISTER with it).
    pub realm: String,
}

impl Default for DigestSection {
    fn default() -> Self {
        Self {
            realm: "iptv.example".into(),
        }
    }
}

/// A subscriber created at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriberSeed {
    /// Public identity (`sip:alice@iptv.example`).
    pub identity: String,
    /// Digest username (default: the identity without its `sip:`/`sips:` scheme).
    #[serde(default)]
    pub username: Option<String>,
    /// Digest realm (default: `[digest] realm`).
    #[serde(default)]
    pub realm: Option<String>,
    /// Password (a test-bed convenience; only its HA1 is stored).
    #[serde(default)]
    pub password: Option<String>,
    /// HA1 in hex, instead of a password.
    #[serde(default)]
    pub ha1: Option<String>,
    /// Channel packages (names or channel ids).
    #[serde(default)]
    pub packages: Vec<String>,
    /// Concurrent viewing sessions.
    #[serde(default = "one")]
    pub max_streams: u32,
    /// Parental level 0..=18.
    #[serde(default)]
    pub parental_level: u8,
}

fn one() -> u32 {
    1
}

impl SubscriberSeed {
    /// The digest username.
    #[must_use]
    pub fn username(&self) -> String {
        self.username.clone().unwrap_or_else(|| {
            let s = self.identity.as_str();
            s.strip_prefix("sips:")
                .or_else(|| s.strip_prefix("sip:"))
                .unwrap_or(s)
                .to_owned()
        })
    }
}

/// Flags of `as-server aaa`; each has an `AS_AAA_...` environment variable.
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(
    name = "as-server aaa",
    version,
    about = "Embedded AAA: Diameter Sh (UDR/PNR) and Rf (ACR) server over the SQL store"
)]
pub struct AaaCli {
    /// TOML configuration file.
    #[arg(long, short = 'c', env = "AS_AAA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Diameter listen address.
    #[arg(long, env = "AS_AAA_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Origin-Host.
    #[arg(long, env = "AS_AAA_ORIGIN_HOST")]
    pub origin_host: Option<String>,
    /// Origin-Realm.
    #[arg(long, env = "AS_AAA_ORIGIN_REALM")]
    pub origin_realm: Option<String>,
    /// HTTP API listen address.
    #[arg(long, env = "AS_AAA_HTTP")]
    pub http: Option<SocketAddr>,
    /// Disable the HTTP API.
    #[arg(long)]
    pub no_http: bool,
    /// Database URL.
    #[arg(long, env = "AS_AAA_DATABASE_URL")]
    pub database_url: Option<String>,
    /// TLS on the Diameter listener.
    #[arg(long, env = "AS_AAA_TLS")]
    pub tls: bool,
}

impl AaaConfig {
    /// Parse TOML (missing keys take defaults) and validate.
    pub fn from_toml(text: &str) -> Result<Self, AaaConfigError> {
        let c: AaaConfig = toml::from_str(text).map_err(|e| AaaConfigError::Parse {
            path: PathBuf::from("<string>"),
            source: Box::new(e),
        })?;
        c.validate()?;
        Ok(c)
    }

    /// Read a file.
    pub fn from_file(path: &Path) -> Result<Self, AaaConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| AaaConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let c: AaaConfig = toml::from_str(&text).map_err(|e| AaaConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(e),
        })?;
        c.validate()?;
        Ok(c)
    }

    /// Defaults, the `--config` file, then flags/environment; validated.
    pub fn load(cli: &AaaCli) -> Result<Self, AaaConfigError> {
        let mut c = match &cli.config {
            Some(p) => Self::from_file(p)?,
            None => Self::default(),
        };
        if let Some(a) = cli.listen {
            c.diameter.listen = a;
        }
        if let Some(h) = &cli.origin_host {
            c.diameter.origin_host.clone_from(h);
        }
        if let Some(r) = &cli.origin_realm {
            c.diameter.origin_realm.clone_from(r);
        }
        if let Some(a) = cli.http {
            c.http.listen = Some(a);
        }
        if cli.no_http {
            c.http.listen = None;
        }
        if let Some(u) = &cli.database_url {
            c.database.url.clone_from(u);
        }
        if cli.tls {
            c.diameter.tls = true;
        }
        c.validate()?;
        Ok(c)
    }

    /// Check values.
    pub fn validate(&self) -> Result<(), AaaConfigError> {
        let bad = |s: String| Err(AaaConfigError::Invalid(s));
        if self.diameter.origin_host.is_empty() || self.diameter.origin_realm.is_empty() {
            return bad("diameter.origin_host and origin_realm must not be empty".into());
        }
        if self.diameter.watchdog_secs < 6 {
            return bad("diameter.watchdog_secs must be at least 6 (RFC 3539)".into());
        }
        if self.diameter.request_timeout_secs == 0 {
            return bad("diameter.request_timeout_secs must be positive".into());
        }
        if !self.diameter.accept_any_peer && self.diameter.peers.is_empty() {
            return bad("diameter.peers must list hosts when accept_any_peer is false".into());
        }
        let mut seen = std::collections::HashSet::new();
        for s in &self.subscribers {
            if s.identity.is_empty() {
                return bad("a subscriber has an empty identity".into());
            }
            if !seen.insert(s.identity.as_str()) {
                return bad(format!("subscriber {} listed twice", s.identity));
            }
            match (&s.password, &s.ha1) {
                (Some(_), None) => {}
                (None, Some(h)) if h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {}
                (None, Some(_)) => {
                    return bad(format!(
                        "subscriber {}: ha1 must be 32 hex digits",
                        s.identity
                    ))
                }
                _ => {
                    return bad(format!(
                        "subscriber {}: give exactly one of password and ha1",
                        s.identity
                    ))
                }
            }
            if s.parental_level > 18 {
                return bad(format!("subscriber {}: parental_level over 18", s.identity));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/aaa.toml");
        let c = AaaConfig::from_file(&path).unwrap();
        assert_eq!(c.diameter.listen, "127.0.0.1:3868".parse().unwrap());
        assert!(c.subscribers.len() >= 3);
        assert_eq!(c.subscribers[0].username(), "alice@iptv.example");
    }

    #[test]
    fn bad_values_refused() {
        for bad in [
            "[diameter]\nwatchdog_secs = 1",
            "[diameter]\norigin_host = \"\"",
            "[[subscribers]]\nidentity = \"sip:a@x\"",
            "[[subscribers]]\nidentity = \"sip:a@x\"\npassword = \"p\"\nha1 = \"00\"",
            "[[subscribers]]\nidentity = \"sip:a@x\"\nha1 = \"zz\"",
            "[[subscribers]]\nidentity = \"sip:a@x\"\npassword = \"p\"\nparental_level = 19",
            "[[subscribers]]\nidentity = \"sip:a@x\"\npassword = \"p\"\n[[subscribers]]\nidentity = \"sip:a@x\"\npassword = \"p\"",
            "unknown = 1",
        ] {
            assert!(AaaConfig::from_toml(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_override_the_file() {
        let cli = AaaCli {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            no_http: true,
            database_url: Some("sqlite::memory:".into()),
            ..AaaCli::default()
        };
        let c = AaaConfig::load(&cli).unwrap();
        assert_eq!(c.diameter.listen.port(), 0);
        assert_eq!(c.http.listen, None);
        assert_eq!(c.database.url, "sqlite::memory:");
    }
}
