//! `media-relay`: runs the relay and serves its control API as JSON over HTTP.
//!
//! Configuration: an optional TOML file (`--config`), then flags / environment variables on
//! top. Example:
//!
//! ```toml
//! http = "127.0.0.1:8090"
//! test_pattern_channels = ["news"]   # created at start, fed by the built-in test pattern
//!
//! [relay]
//! bind_ip = "127.0.0.1"
//! ingest_port_min = 20000
//! ingest_port_max = 20999
//! output_rtp_port = 30000
//! max_viewers = 10000
//! rtcp_interval = 5.0
//! viewer_timeout = 30.0
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use media_relay::control::{ChannelId, ChannelSpec, RelayConfig};
use media_relay::driver::http;
use media_relay::Relay;
use serde::Deserialize;

/// RTP media relay with an HTTP control API.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// TOML configuration file.
    #[arg(long, env = "MEDIA_RELAY_CONFIG")]
    config: Option<PathBuf>,
    /// HTTP listen address of the control API.
    #[arg(long, env = "MEDIA_RELAY_HTTP")]
    http: Option<SocketAddr>,
    /// IP the media sockets bind to.
    #[arg(long, env = "MEDIA_RELAY_BIND_IP")]
    bind_ip: Option<IpAddr>,
    /// IP announced in ingest and viewer answers.
    #[arg(long, env = "MEDIA_RELAY_ADVERTISE_IP")]
    advertise_ip: Option<IpAddr>,
    /// Output RTP port (RTCP is the next one unless configured).
    #[arg(long, env = "MEDIA_RELAY_OUTPUT_RTP_PORT")]
    output_rtp_port: Option<u16>,
    /// Ingest port range, `MIN-MAX`.
    #[arg(long, env = "MEDIA_RELAY_INGEST_PORTS", value_parser = parse_range)]
    ingest_ports: Option<(u16, u16)>,
    /// Most viewers.
    #[arg(long, env = "MEDIA_RELAY_MAX_VIEWERS")]
    max_viewers: Option<usize>,
    /// Create this channel at start and feed it with the test pattern (repeatable).
    #[arg(long = "test-pattern")]
    test_pattern: Vec<String>,
    /// Run a simulation instead of the relay.
    #[command(subcommand)]
    command: Option<SimCommand>,
}

/// Offline simulations of the feedback machinery (virtual clock, print JSON).
#[derive(Debug, clap::Subcommand)]
enum SimCommand {
    /// Hierarchical RTCP aggregation (RFC 5760 FT tree) vs flat RFC 3550.
    HaSim {
        /// Audience size.
        #[arg(long, default_value_t = 1_000_000)]
        viewers: u64,
        /// Children per feedback target.
        #[arg(long, default_value_t = 16)]
        fanout: usize,
        /// Session bandwidth, kbit/s.
        #[arg(long = "bandwidth-kbps", default_value_t = 1000.0)]
        bandwidth_kbps: f64,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Viewers per leaf FT (default: as many as fit the 5 % share at the 5 s minimum).
        #[arg(long = "viewers-per-ft")]
        viewers_per_ft: Option<u64>,
        /// Sweep 10^2..10^6 viewers and print the points as JSON.
        #[arg(long)]
        sweep: bool,
        /// Write an SVG plot of the sweep here (implies --sweep): freshness against viewers,
        /// log-log, hierarchy and flat RFC 3550, with the 20 s target line.
        #[arg(long, visible_alias = "svg")]
        plot: Option<PathBuf>,
        /// Write the sweep's JSON points here too (implies --sweep).
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// GNP coordinates and FT placement on a synthetic geography.
    GnpSim {
        /// Seed.
        #[arg(long, default_value_t = 2)]
        seed: u64,
        /// Viewers.
        #[arg(long, default_value_t = 2000)]
        viewers: usize,
    },
}

/// The simulations' only clock read: the origin of their virtual time.
#[expect(clippy::disallowed_methods)]
fn virtual_origin() -> std::time::Instant {
    std::time::Instant::now()
}

fn run_sim(cmd: SimCommand) -> anyhow::Result<()> {
    use media_relay::feedback::{gnp, hasim};
    match cmd {
        SimCommand::HaSim {
            viewers,
            fanout,
            bandwidth_kbps,
            seed,
            viewers_per_ft,
            sweep,
            plot,
            json,
        } => {
            let mut cfg = hasim::HaSimConfig::new(viewers, fanout, bandwidth_kbps, seed);
            cfg.viewers_per_leaf = viewers_per_ft;
            if sweep || plot.is_some() || json.is_some() {
                let points = hasim::sweep(&cfg, virtual_origin())?;
                if let Some(path) = plot {
                    let svg = hasim::plot_svg(&points, bandwidth_kbps)?;
                    std::fs::write(&path, svg)
                        .with_context(|| format!("writing {}", path.display()))?;
                }
                let text = serde_json::to_string(&points)?;
                if let Some(path) = json {
                    std::fs::write(&path, format!("{text}\n"))
                        .with_context(|| format!("writing {}", path.display()))?;
                }
                println!("{text}");
            } else {
                let report = hasim::run(&cfg, virtual_origin())?;
                println!("{}", serde_json::to_string(&report)?);
            }
        }
        SimCommand::GnpSim { seed, viewers } => {
            let mut cfg = gnp::GnpConfig::new(seed);
            cfg.viewers = viewers;
            println!("{}", serde_json::to_string(&gnp::run(&cfg))?);
        }
    }
    Ok(())
}

fn parse_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s.split_once('-').ok_or("expected MIN-MAX")?;
    let a: u16 = a.trim().parse().map_err(|e| format!("{e}"))?;
    let b: u16 = b.trim().parse().map_err(|e| format!("{e}"))?;
    if a > b {
        return Err("MIN above MAX".into());
    }
    Ok((a, b))
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    http: SocketAddr,
    test_pattern_channels: Vec<String>,
    relay: RelayConfig,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            http: SocketAddr::from(([127, 0, 0, 1], 8090)),
            test_pattern_channels: Vec::new(),
            relay: RelayConfig::default(),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut args = Args::parse();
    if let Some(cmd) = args.command.take() {
        return run_sim(cmd);
    }
    let mut cfg = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str::<FileConfig>(&text)
                .with_context(|| format!("parsing {}", path.display()))?
        }
        None => FileConfig::default(),
    };
    if let Some(h) = args.http {
        cfg.http = h;
    }
    if let Some(ip) = args.bind_ip {
        cfg.relay.bind_ip = ip;
    }
    if let Some(ip) = args.advertise_ip {
        cfg.relay.advertise_ip = Some(ip);
    }
    if let Some(p) = args.output_rtp_port {
        cfg.relay.output_rtp_port = p;
    }
    if let Some((a, b)) = args.ingest_ports {
        cfg.relay.ingest_port_min = a;
        cfg.relay.ingest_port_max = b;
    }
    if let Some(n) = args.max_viewers {
        cfg.relay.max_viewers = n;
    }
    cfg.test_pattern_channels.extend(args.test_pattern);

    let handle = Relay::spawn(cfg.relay.clone()).context("starting the relay")?;
    for ch in &cfg.test_pattern_channels {
        let info = handle
            .create_ingest(ChannelSpec::new(ch.as_str()))
            .await
            .with_context(|| format!("creating channel {ch}"))?;
        handle
            .start_test_pattern(&ChannelId::from(ch.as_str()))
            .await
            .with_context(|| format!("starting the test pattern on {ch}"))?;
        tracing::info!(channel = %ch, ingest = %info.rtp_addr, "test pattern channel");
    }
    let listener = tokio::net::TcpListener::bind(cfg.http)
        .await
        .with_context(|| format!("binding HTTP {}", cfg.http))?;
    tracing::info!(http = %listener.local_addr()?, "media-relay control API");
    axum::serve(listener, http::router(handle.clone()))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    let _ = handle.shutdown().await;
    Ok(())
}
