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
    /// A pure RFC 5760 feedback target: takes RR/SDES/APP VOTE from viewers and RSI + APP
    /// tallies from child FTs on one UDP port, answers reporters with their group size, and
    /// sends its summary (RSI + tally) to a parent FT. Prints a JSON line when listening and,
    /// with --status-interval, a JSON status line that often.
    Ft {
        /// UDP address to receive RTCP on (port 0: any).
        #[arg(long, default_value = "127.0.0.1:5005")]
        listen: SocketAddr,
        /// Parent FT (or the channel's source relay) RTCP address. A relay parent takes our
        /// summaries once this FT is registered there (`POST /channels/{id}/feedback/children`
        /// with our listen address).
        #[arg(long)]
        parent: Option<SocketAddr>,
        /// A child FT allowed to send us summaries (repeatable); with none, any sender may be
        /// a child. Summaries from others are dropped and counted (`refused_summaries`).
        #[arg(long = "child")]
        children: Vec<SocketAddr>,
        /// SSRC of the media stream whose reception is summarised (report blocks about other
        /// SSRCs are ignored); decimal or 0x-hex. Without it, the first report block of each
        /// RR counts whatever SSRC it names.
        #[arg(long = "media-ssrc", value_parser = parse_u32)]
        media_ssrc: Option<u32>,
        /// The relay channel this FT serves: its summaries name the channel the way relays
        /// do (`feedback::live::channel_ssrc`), so a relay carrying it can be the parent.
        #[arg(long)]
        channel: Option<String>,
        /// Our SSRC (default: from the listen address).
        #[arg(long, value_parser = parse_u32)]
        ssrc: Option<u32>,
        /// Session bandwidth, kbit/s (RTCP gets 5 %).
        #[arg(long = "bandwidth-kbps", default_value_t = 1000.0)]
        bandwidth_kbps: f64,
        /// Minimum interval of our summaries to the parent, seconds.
        #[arg(long = "min-interval", default_value_t = 1.0)]
        min_interval: f64,
        /// Print a JSON status line every so many seconds (0: never).
        #[arg(long = "status-interval", default_value_t = 0.0)]
        status_interval: f64,
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
        SimCommand::Ft { .. } => anyhow::bail!("ft is not a simulation"),
        SimCommand::GnpSim { seed, viewers } => {
            let mut cfg = gnp::GnpConfig::new(seed);
            cfg.viewers = viewers;
            println!("{}", serde_json::to_string(&gnp::run(&cfg))?);
        }
    }
    Ok(())
}

fn parse_u32(s: &str) -> Result<u32, String> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16).map_err(|e| e.to_string()),
        None => s.parse().map_err(|e| format!("{e}")),
    }
}

/// The `ft` driver's only clock read: monotonic and wall time together.
#[expect(clippy::disallowed_methods)]
fn ft_clock() -> (std::time::Instant, u64) {
    (
        std::time::Instant::now(),
        media_relay::rtcp::ntp_timestamp(std::time::SystemTime::now()),
    )
}

/// `media-relay ft`: the thin tokio driver of [`media_relay::feedback::node::FtNode`].
async fn run_ft(
    listen: SocketAddr,
    (parent, children): (Option<SocketAddr>, Vec<SocketAddr>),
    (media_ssrc, channel): (Option<u32>, Option<String>),
    ssrc: Option<u32>,
    bandwidth_kbps: f64,
    min_interval: f64,
    status_interval: f64,
) -> anyhow::Result<()> {
    use media_relay::feedback::aggregate::{FtConfig, VOTERS_POLL};
    use media_relay::feedback::node::FtNode;
    use std::time::Duration;

    anyhow::ensure!(bandwidth_kbps > 0.0, "--bandwidth-kbps must be positive");
    let sock = tokio::net::UdpSocket::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let local = sock.local_addr()?;
    let ssrc = ssrc.unwrap_or_else(|| {
        let ip = match local.ip() {
            IpAddr::V4(a) => u32::from(a),
            IpAddr::V6(a) => a
                .octets()
                .iter()
                .fold(0u32, |h, b| h.rotate_left(5) ^ u32::from(*b)),
        };
        (ip ^ (u32::from(local.port()) << 16) ^ 0x4654_0000) | 1
    });
    let named = channel.map(|c| media_relay::feedback::live::channel_ssrc(&ChannelId(c)));
    let mut cfg = FtConfig::new(
        ssrc,
        media_ssrc.or(named).unwrap_or(0),
        bandwidth_kbps * 1000.0,
    );
    cfg.any_media = media_ssrc.is_none();
    cfg.ft_min_interval_s = min_interval.clamp(0.01, 3600.0);
    cfg.address = Some(local);
    let (start, _) = ft_clock();
    let mut node = FtNode::new(cfg, parent, start, u64::from(ssrc) << 7 ^ 0x5eed);
    if !children.is_empty() {
        node.set_children(Some(children.into_iter().collect()));
    }
    println!(
        "{}",
        serde_json::json!({ "listening": local.to_string(), "ssrc": ssrc, "parent": parent })
    );
    tracing::info!(%local, ?parent, "feedback target");
    let status_every = (status_interval > 0.0).then(|| Duration::from_secs_f64(status_interval));
    let mut next_status = status_every.map(|d| start + d);
    let mut buf = vec![0u8; 65_536];
    loop {
        let deadline = [node.poll_timeout(), next_status]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(start + Duration::from_secs(86_400 * 365));
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                let (n, from) = match r {
                    Ok(x) => x,
                    // ICMP errors from a reporter that went away: not ours to stop on.
                    Err(_) => continue,
                };
                let (now, ntp) = ft_clock();
                if let Err(e) = node.handle(now, ntp, from, &buf[..n]) {
                    tracing::debug!(%from, error = %e, "refused RTCP");
                }
            }
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                let (now, ntp) = ft_clock();
                if node.poll_timeout().is_some_and(|t| t <= now) {
                    node.handle_timeout(now, ntp)?;
                }
                if let (Some(d), Some(t)) = (status_every, next_status) {
                    if t <= now {
                        next_status = Some(now + d);
                        let s = node.summary();
                        let mut votes = serde_json::Map::new();
                        let mut voters = 0;
                        for ((poll, option), n) in s.votes.iter() {
                            if poll == VOTERS_POLL {
                                voters += n;
                                continue;
                            }
                            let e = votes
                                .entry(poll.to_string())
                                .or_insert_with(|| serde_json::json!({}));
                            e[option.to_string()] = serde_json::json!(n);
                        }
                        println!(
                            "{}",
                            serde_json::json!({
                                "group_size": s.group_size,
                                "reporters": node.reporters(),
                                "child_fts": node.ft().child_count(),
                                "viewers_reporting": s.loss.total(),
                                "votes": votes,
                                "voters": voters,
                                "summaries_sent": node.summaries_sent(),
                                "refused_summaries": node.refused_summaries(),
                                "parent_group_size": node.ft().parent_info().map(|p| p.group_size),
                            })
                        );
                    }
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
        while let Some(t) = node.poll_transmit() {
            // Best effort, never waits: a full buffer drops this summary; the next one follows.
            let _ = sock.try_send_to(&t.payload, t.dest);
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
        if let SimCommand::Ft {
            listen,
            parent,
            children,
            media_ssrc,
            channel,
            ssrc,
            bandwidth_kbps,
            min_interval,
            status_interval,
        } = cmd
        {
            return run_ft(
                listen,
                (parent, children),
                (media_ssrc, channel),
                ssrc,
                bandwidth_kbps,
                min_interval,
                status_interval,
            )
            .await;
        }
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
