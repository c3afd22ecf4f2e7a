//! `ue-sim lab`: the whole testbed in this process, on loopback, with embedded defaults.
//!
//! [`Testbed::start`] boots an AS exactly as the `as-server` binary does
//! ([`App::start`]) from a [`Config`] built in code ([`lab_config`]): SIP
//! over UDP on `127.0.0.1` with a free port, the HTTP API on a free port, the catalogue in a
//! SQLite file in a fresh temporary directory, the relay in-process on ephemeral ports, and
//! the scenario's channels (`[channels] list`), each fed by the relay's H.264 test pattern
//! ([`DEFAULT_CHANNELS`] when a caller names none).
//! The AS runs on its own multi-thread tokio runtime, owned by the [`Testbed`]; the UEs
//! (`run::run`) drive it over real UDP sockets on loopback exactly as they would drive a
//! remote AS. [`Testbed::shutdown`] stops the AS (BYE to viewers, listeners closed, relay
//! stopped), drops the runtime and removes the temporary directory: nothing is left behind,
//! there is no child process.
//!
//! With a scenario's `[aaa] enabled` ([`Testbed::start_with_aaa`]) the lab first starts the
//! embedded AAA (`as_server::aaa::Aaa`, Diameter Sh + Rf) on `127.0.0.1:0` with its own
//! SQLite file in the same directory, seeded with one subscriber per UE whose identity is the
//! UE's From URI (`sip:ue<i>@<AS address>`, [`aaa_subscribers`]): none for the scenario's
//! unknown share, the first channel only for its restricted share, `*` for the others. The
//! AS then starts with `[aaa] peer` = that address, fail-closed, and the UEs run once its
//! Diameter peer is open. After the run the lab waits (at most [`AAA_SETTLE`]) for the AS's
//! accounting outbox to empty and the AAA to hold a STOP for every START, then reads
//! [`AaaFigures`]: the AS's `as_aaa_*` counters and, from the AAA's CDR store, START/STOP
//! records and the sessions that have both. The AS stops before the AAA, so its last records
//! can still be acknowledged.
//!
//! With `[votes]` the UEs declare their polls and read the tallies and the channels' quality
//! summaries at the lab AS's HTTP API (the scenario's `api` is set to it): every relay is a
//! live RFC 5760 feedback target for its channels, so the viewers' RTCP (RR, APP `VOTE`) is
//! the whole path.
//!
//! With `[overlay]` ([`lab_overlay`], [`OverlayTestbed`]) the lab makes a dev CA in its
//! temporary directory, starts `peers` plain RELOAD peers (`p2psip_overlay::driver`, TLS on
//! loopback, each joined before the next) and `ases` ASes with `[overlay] enabled`
//! bootstrapped to the first peer, each with its own SQLite file, SIP port, HTTP API, relays
//! and relay control API. Viewer `i` runs at AS `i % ases`. AS 0's viewers and the
//! producers run as in the one-AS lab; meanwhile a helper thread polls every AS's
//! `GET /api/channels` every 10 ms, records when each personal channel is first listed at
//! each AS (propagation = listed at the other AS - listed at AS 0), and once the
//! producers' channels are listed everywhere (or `list_timeout_s` after the producers'
//! start) runs each other AS's viewers on the channels listed there (joins by INVITE,
//! zaps by BYE + INVITE: the AS offers no re-INVITE into a remote channel), until 2 s
//! before the end. Their joins and zaps are the cross-AS joins; the runs are merged into
//! one report with an Overlay section and each AS's `as_overlay_*` counters.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use as_server::aaa::config::{AaaConfig, SubscriberSeed};
use as_server::aaa::{Aaa, AaaHandle};
use as_server::config::{ChannelSeed, Config};
use as_server::service::aaa::Policy;
use as_server::service::app::App;
use as_server::sip::transaction::Transport;

use crate::progress::Progress;
use crate::report::{self, Summary, Thresholds};
use crate::run::{FaultInjector, RunError};
use crate::scenario::{AaaRole, Fault, FaultKind, Scenario};
use crate::stats::{AaaFigures, RunStats, TimelinePoint};

/// How long the lab waits after a run for the AS's accounting outbox to empty and the AAA
/// to hold a STOP for every START (past it, the figures show what is missing).
pub const AAA_SETTLE: Duration = Duration::from_secs(5);
/// How long the lab waits for the AS's Diameter peer to open (CER/CEA) before the run.
const AAA_OPEN_WAIT: Duration = Duration::from_secs(10);

/// The scenario `ue-sim lab` runs when given none (`ue-sim/scenarios/default.toml`).
pub const DEFAULT_SCENARIO: &str = include_str!("../scenarios/default.toml");

/// Test-pattern channels of the lab, most popular first (the Zipf rank order).
pub const DEFAULT_CHANNELS: &[&str] = &[
    "news", "sport", "music", "movies", "kids", "docs", "weather", "travel",
];

/// Why the lab could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The tokio runtime or the temporary directory could not be created.
    #[error("lab setup: {0}")]
    Setup(#[from] std::io::Error),
    /// The AS did not start.
    #[error("AS start: {0}")]
    Start(#[from] as_server::service::app::StartError),
    /// The AS started without a UDP listener.
    #[error("AS has no SIP UDP listener")]
    NoUdp,
    /// The scenario run failed.
    #[error("run: {0}")]
    Run(String),
    /// The report could not be written.
    #[error("report: {0}")]
    Report(#[from] report::Error),
    /// The embedded AAA did not start, or the AS's Diameter peer did not open.
    #[error("AAA: {0}")]
    Aaa(String),
    /// The lab's RELOAD overlay (dev CA, peers) did not start.
    #[error("overlay: {0}")]
    Overlay(String),
}

/// What a lab (or a run against an existing AS) produced.
#[derive(Debug)]
pub struct Outcome {
    /// The raw figures.
    pub stats: RunStats,
    /// The summary and threshold checks.
    pub summary: Summary,
    /// Where the report went.
    pub written: report::Written,
}

/// Runs `runner` against `target` with a progress display, then writes the report to `out`.
/// `runner` is the UE driver (`run::run` with its scenario); taking it as a closure keeps
/// this module independent of how the UEs are driven.
pub fn run_and_report<F, E>(
    target: SocketAddr,
    out: &Path,
    thresholds: &Thresholds,
    progress: &Progress,
    runner: F,
) -> Result<Outcome, Error>
where
    F: FnOnce(SocketAddr, &dyn Fn(&TimelinePoint)) -> Result<RunStats, E>,
    E: std::fmt::Display,
{
    let stats = runner(target, &|p: &TimelinePoint| progress.update(p));
    progress.finish();
    let stats = stats.map_err(|e| Error::Run(e.to_string()))?;
    let summary = Summary::new(&stats, thresholds);
    let written = report::write(out, &stats, &summary)?;
    Ok(Outcome {
        stats,
        summary,
        written,
    })
}

/// The whole lab: boot the [`Testbed`] with `channels`, run `runner` against it, shut it
/// down (also when the run failed), write the report to `out`.
pub fn lab<F, E>(
    channels: &[String],
    out: &Path,
    thresholds: &Thresholds,
    progress: &Progress,
    runner: F,
) -> Result<Outcome, Error>
where
    F: FnOnce(SocketAddr, &dyn Fn(&TimelinePoint)) -> Result<RunStats, E>,
    E: std::fmt::Display,
{
    let tb = Testbed::start(channels)?;
    tracing::info!(sip = %tb.sip, http = ?tb.http, "lab testbed up");
    let r = run_and_report(tb.sip, out, thresholds, progress, runner);
    tb.shutdown();
    r
}

/// The AS configuration of the lab: loopback, free ports, SQLite at `db_url`, test-pattern
/// `channels`, room for ten thousand viewers and more, one relay.
#[must_use]
pub fn lab_config(db_url: &str, channels: &[String]) -> Config {
    lab_config_relays(db_url, channels, 1)
}

/// [`lab_config`] with `relays` in-process relays (`relay.count`) whose health is probed
/// every 100 ms, so a relay that stops is found dead and its viewers moved within a few
/// hundred milliseconds.
#[must_use]
pub fn lab_config_relays(db_url: &str, channels: &[String], relays: usize) -> Config {
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut cfg = Config::default();
    cfg.sip.udp = Some(SocketAddr::new(lo, 0));
    cfg.sip.tcp = None;
    cfg.sip.tls = None;
    cfg.sip.domain = "127.0.0.1".into();
    cfg.http.listen = Some(SocketAddr::new(lo, 0));
    cfg.database.url = db_url.to_owned();
    cfg.relay.bind_ip = lo;
    cfg.relay.port_min = 0;
    cfg.relay.port_max = 0;
    cfg.relay.output_rtp_port = 0;
    cfg.relay.max_viewers = 50_000;
    cfg.relay.count = relays.max(1);
    cfg.relay.health_interval_ms = 100;
    cfg.relay.health_failures = 2;
    cfg.relay.health_timeout_ms = 200;
    cfg.limits.max_sessions = 50_000;
    cfg.channels = channels
        .iter()
        .map(|id| ChannelSeed {
            id: id.clone(),
            name: format!("{id} (test pattern)"),
            test_pattern: true,
        })
        .collect();
    cfg
}

/// The AAA subscribers of a lab run: one per UE of `scenario` (viewers, then producers)
/// by its role ([`crate::scenario::AaaScenario::roles`]), identity `sip:ue<i>@<domain>` (the
/// UE's From URI; `domain` is the AS's IP as the UEs write it), password `ue<i>`.
#[must_use]
pub fn aaa_subscribers(scenario: &Scenario, domain: &str) -> Vec<SubscriberSeed> {
    let first = scenario.channels.list.first().cloned().unwrap_or_default();
    scenario
        .aaa
        .roles(scenario.ues, scenario.producers.count)
        .into_iter()
        .enumerate()
        .filter_map(|(i, role)| {
            let packages = match role {
                AaaRole::Unknown => return None,
                AaaRole::Restricted => vec![first.clone()],
                AaaRole::Full => vec!["*".to_owned()],
            };
            Some(SubscriberSeed {
                identity: format!("sip:ue{i}@{domain}"),
                username: None,
                realm: None,
                password: Some(format!("ue{i}")),
                ha1: None,
                packages,
                max_streams: scenario.aaa.max_streams,
                parental_level: 0,
            })
        })
        .collect()
}

/// The embedded AAA's configuration in the lab: `127.0.0.1:0`, no HTTP API, SQLite at
/// `db_url`, `subscribers` seeded.
#[must_use]
pub fn lab_aaa_config(db_url: &str, subscribers: Vec<SubscriberSeed>) -> AaaConfig {
    let mut c = AaaConfig::default();
    c.diameter.listen = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    c.http.listen = None;
    c.database.url = db_url.to_owned();
    c.subscribers = subscribers;
    c
}

/// A running in-process testbed.
#[derive(Debug)]
pub struct Testbed {
    rt: tokio::runtime::Runtime,
    app: App,
    aaa: Option<AaaHandle>,
    dir: tempfile::TempDir,
    /// The AS's SIP UDP address (the UEs' target).
    pub sip: SocketAddr,
    /// The AS's HTTP API.
    pub http: Option<SocketAddr>,
    /// The channels it serves.
    pub channels: Vec<String>,
}

impl Testbed {
    /// Boots the AS with [`lab_config`] on a fresh SQLite file in a temporary directory.
    /// `channels` empty means [`DEFAULT_CHANNELS`].
    pub fn start(channels: &[String]) -> Result<Self, Error> {
        Self::start_with_relays(channels, 1)
    }

    /// [`Testbed::start`] with `relays` relays ([`lab_config_relays`]).
    pub fn start_with_relays(channels: &[String], relays: usize) -> Result<Self, Error> {
        Self::start_with_aaa(channels, relays, None)
    }

    /// [`Testbed::start_with_relays`], with the embedded AAA when `subscribers` is `Some`
    /// (module docs): the AAA first, then the AS pointed at it (fail-closed); returns once the
    /// AS's Diameter peer is open. Identities in `subscribers` should use the AS's IP,
    /// `127.0.0.1`, as their domain ([`aaa_subscribers`]).
    pub fn start_with_aaa(
        channels: &[String],
        relays: usize,
        subscribers: Option<Vec<SubscriberSeed>>,
    ) -> Result<Self, Error> {
        Self::start_lab(channels, relays, subscribers, false)
    }

    /// [`Testbed::start_with_aaa`], with the relays as a relay tree when `tree` (`[relay]
    /// tree`: each channel ingested at one relay, pulled by the others).
    pub fn start_lab(
        channels: &[String],
        relays: usize,
        subscribers: Option<Vec<SubscriberSeed>>,
        tree: bool,
    ) -> Result<Self, Error> {
        let mut channels = channels.to_vec();
        if channels.is_empty() {
            channels = DEFAULT_CHANNELS.iter().map(|s| (*s).to_owned()).collect();
        }
        let dir = tempfile::Builder::new().prefix("ue-sim-lab-").tempdir()?;
        let db = format!("sqlite://{}?mode=rwc", dir.path().join("lab.db").display());
        let mut cfg = lab_config_relays(&db, &channels, relays);
        cfg.relay.tree = tree;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("lab-as")
            .enable_all()
            .build()?;
        let aaa = match subscribers {
            None => None,
            Some(subs) => {
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("aaa.db").display());
                let acfg = lab_aaa_config(&url, subs);
                acfg.validate().map_err(|e| Error::Aaa(e.to_string()))?;
                let h = rt
                    .block_on(Aaa::start(&acfg))
                    .map_err(|e| Error::Aaa(e.to_string()))?;
                cfg.aaa.peer = Some(h.local_addr());
                cfg.aaa.policy = Policy::FailClosed;
                Some(h)
            }
        };
        let stop_aaa = |rt: &tokio::runtime::Runtime, aaa: Option<AaaHandle>| {
            if let Some(h) = aaa {
                rt.block_on(h.shutdown());
            }
        };
        let app = match rt.block_on(App::start(&cfg)) {
            Ok(a) => a,
            Err(e) => {
                stop_aaa(&rt, aaa);
                return Err(e.into());
            }
        };
        let Some(sip) = app.sip_addr(Transport::Udp) else {
            rt.block_on(app.shutdown());
            stop_aaa(&rt, aaa);
            return Err(Error::NoUdp);
        };
        if aaa.is_some() {
            let open = match app.service.aaa() {
                Some(c) => {
                    let d = c.diameter().clone();
                    rt.block_on(async { tokio::time::timeout(AAA_OPEN_WAIT, d.wait_open(1)).await })
                        .map_err(|_| "no Diameter peer open within 10 s".to_owned())
                        .and_then(|r| r.map_err(|e| e.to_string()))
                }
                None => Err("the AS has no AAA client".to_owned()),
            };
            if let Err(e) = open {
                rt.block_on(app.shutdown());
                stop_aaa(&rt, aaa);
                return Err(Error::Aaa(e));
            }
        }
        let http = app.http;
        Ok(Self {
            rt,
            app,
            aaa,
            dir,
            sip,
            http,
            channels,
        })
    }

    /// The runtime the AS runs on (to run async work beside it).
    #[must_use]
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.rt
    }

    /// The temporary directory holding the SQLite file (removed on shutdown).
    #[must_use]
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Stops relay `index` abruptly (a crashed relay: no BYE, no RTCP BYE), as a scenario's
    /// `stop_relay` fault; the AS finds it dead and moves its viewers. Returns how many
    /// viewers the relay had just before (the moves to expect). Blocks until the stop is
    /// done. Callable from inside another tokio runtime (the UE driver's): the AS's runtime
    /// is entered from a scoped helper thread.
    pub fn stop_relay(&self, index: usize) -> Result<u64, String> {
        let (viewers, stopped) = std::thread::scope(|s| {
            s.spawn(|| {
                self.rt.block_on(async {
                    let viewers = match self.app.relays().get(index) {
                        Some(h) => h.stats().await.map_or(0, |st| st.viewers.len() as u64),
                        None => 0,
                    };
                    (viewers, self.app.stop_relay(index).await)
                })
            })
            .join()
            .map_err(|_| "stop_relay panicked".to_owned())
        })?;
        if stopped {
            Ok(viewers)
        } else {
            Err(format!("relay {index}: no such relay or already stopped"))
        }
    }

    /// Injects one scenario fault; `Ok(n)`: it hit `n` viewers.
    pub fn inject(&self, f: &Fault) -> Result<u64, String> {
        match f.kind {
            FaultKind::StopRelay => self.stop_relay(f.relay),
            FaultKind::StopAs => Err("stop_as: not supported (the lab runs one AS)".into()),
        }
    }

    /// The embedded AAA's Diameter address, when the lab runs one.
    #[must_use]
    pub fn aaa_addr(&self) -> Option<SocketAddr> {
        self.aaa.as_ref().map(AaaHandle::local_addr)
    }

    /// The AAA figures (module docs), `None` without the embedded AAA: waits up to `settle`
    /// for the AS's accounting outbox to empty, then reads the AS's `as_aaa_*` counters and
    /// the AAA's CDRs. `refused` (by reason) is left empty for the caller, who has the UEs'
    /// view. Callable from inside another tokio runtime (a scoped helper thread enters the
    /// testbed's).
    pub fn aaa_figures(&self, settle: Duration) -> Option<Result<AaaFigures, String>> {
        let aaa = self.aaa.as_ref()?;
        let client = self.app.service.aaa()?;
        let work = async {
            // Settled: nothing waits in the outbox and the AAA holds as many STOPs as
            // STARTs (a STOP may be queued just after the UE saw its BYE answered).
            let wait = async {
                loop {
                    if client.outbox_len().await == 0 {
                        let n = aaa.store().cdr_counts().await.unwrap_or_default();
                        let count = |t: &str| n.iter().find(|(k, _)| k == t).map_or(0, |x| x.1);
                        if count("START") == count("STOP") {
                            break;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            };
            let _ = tokio::time::timeout(settle, wait).await;
            let outbox = client.outbox_len().await;
            let mut text = String::new();
            client.render_metrics(&mut text, outbox);
            let cdrs = aaa
                .store()
                .recent_cdrs(u32::MAX)
                .await
                .map_err(|e| format!("CDRs: {e}"))?;
            Ok::<_, String>((outbox, text, cdrs, aaa.stats()))
        };
        let r = std::thread::scope(|s| {
            s.spawn(|| self.rt.block_on(work))
                .join()
                .map_err(|_| "reading the AAA figures panicked".to_owned())
        });
        Some(r.and_then(|r| r).map(|(outbox, text, cdrs, st)| {
            let mut f = figures_from(&text, &cdrs);
            f.outbox_left = outbox;
            f.udr_profiles = st.udr_profiles;
            f.udr_unknown = st.udr_unknown;
            f.acr_duplicates = st.acr_duplicates;
            f
        }))
    }

    /// Stops the AS and its relay, then the AAA (after the AS, so the AS's last accounting
    /// records are still acknowledged), then the runtime; removes the temporary directory.
    pub fn shutdown(self) {
        let Self {
            rt, app, aaa, dir, ..
        } = self;
        rt.block_on(app.shutdown());
        if let Some(h) = aaa {
            rt.block_on(h.shutdown());
        }
        rt.shutdown_timeout(Duration::from_secs(2));
        drop(dir);
    }
}

/// [`AaaFigures`] from the AS's metrics text (its `as_aaa_*` samples) and the AAA's CDRs.
#[must_use]
pub fn figures_from(metrics: &str, cdrs: &[as_server::store::Cdr]) -> AaaFigures {
    let mut f = AaaFigures::default();
    for line in metrics.lines().filter(|l| l.starts_with("as_aaa_")) {
        let mut it = line.split_whitespace();
        if let (Some(name), Some(v)) = (it.next(), it.next()) {
            if let Ok(v) = v.parse::<f64>() {
                f.as_counters.insert(name.to_owned(), v.max(0.0) as u64);
            }
        }
    }
    let c = |n: &str| f.as_counters.get(n).copied().unwrap_or(0);
    f.authorised = c("as_aaa_authorised_total");
    f.refused_total = c("as_aaa_refused_total");
    let mut sessions: std::collections::HashMap<&str, (bool, bool)> =
        std::collections::HashMap::new();
    for r in cdrs {
        f.cdrs += 1;
        match r.record_type.as_str() {
            "START" => {
                f.acr_start += 1;
                sessions.entry(&r.session_id).or_default().0 = true;
            }
            "STOP" => {
                f.acr_stop += 1;
                sessions.entry(&r.session_id).or_default().1 = true;
            }
            _ => {}
        }
    }
    for (start, stop) in sessions.values() {
        if *start && *stop {
            f.accounted_sessions += 1;
        } else {
            f.unaccounted_sessions += 1;
        }
    }
    f
}

/// Drives `scenario`'s UEs against `target` ([`crate::run::run`]) on a current-thread
/// tokio runtime of their own, apart from the AS's runtime in the lab.
pub fn run_scenario(
    scenario: &Scenario,
    target: SocketAddr,
    progress: &dyn Fn(&TimelinePoint),
) -> Result<RunStats, RunError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let r = rt.block_on(crate::run::run(scenario, target, progress));
    rt.shutdown_timeout(Duration::from_secs(1));
    r
}

/// [`run_scenario`] with the scenario's faults injected by `injector`.
pub fn run_scenario_with_faults(
    scenario: &Scenario,
    target: SocketAddr,
    progress: &dyn Fn(&TimelinePoint),
    injector: &FaultInjector<'_>,
) -> Result<RunStats, RunError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let r = rt.block_on(crate::run::run_with_faults(
        scenario, target, progress, injector,
    ));
    rt.shutdown_timeout(Duration::from_secs(1));
    r
}

/// `ue-sim lab`: the testbed with the scenario's channels and `relays`, the scenario with
/// its faults injected into the testbed, the report (its thresholds from the scenario's
/// `[thresholds]`) in `out`.
pub fn lab_scenario(
    scenario: &Scenario,
    out: &Path,
    progress: &Progress,
) -> Result<Outcome, Error> {
    if scenario.overlay.is_some() {
        return lab_overlay(scenario, out, progress);
    }
    if scenario.faults.iter().any(|f| f.kind == FaultKind::StopAs) {
        return Err(Error::Run(
            "stop_as faults are not supported yet (the lab runs one AS)".into(),
        ));
    }
    let thresholds = Thresholds::from(&scenario.thresholds);
    // The UEs write the AS's IP as their domain (`run::run`): the lab's AS is on 127.0.0.1.
    let subscribers = scenario
        .aaa
        .enabled
        .then(|| aaa_subscribers(scenario, &Ipv4Addr::LOCALHOST.to_string()));
    let tb = Testbed::start_lab(
        &scenario.channels.list,
        scenario.relays,
        subscribers,
        scenario.relay_tree,
    )?;
    tracing::info!(sip = %tb.sip, http = ?tb.http, aaa = ?tb.aaa_addr(), relays = scenario.relays, "lab testbed up");
    // Polls and quality summaries go to the lab AS's own HTTP API.
    let mut scenario = scenario.clone();
    scenario.api = tb.http.map(|a| a.to_string());
    let scenario = &scenario;
    let r = run_and_report(tb.sip, out, &thresholds, progress, |target, p| {
        let mut st = run_scenario_with_faults(scenario, target, p, &|f| tb.inject(f))
            .map_err(|e| e.to_string())?;
        if let Some(f) = tb.aaa_figures(AAA_SETTLE) {
            let mut f = f.map_err(|e| format!("AAA figures: {e}"))?;
            for (k, v) in st.joins_refused_by.iter().chain(&st.zaps_refused_by) {
                *f.refused.entry(k.clone()).or_default() += v;
            }
            st.aaa = Some(f);
        }
        Ok::<_, String>(st)
    });
    tb.shutdown();
    r
}

/// The overlay name of the lab's RELOAD overlay (certificates' `@overlay`).
pub const OVERLAY_NAME: &str = "iptv.test";
/// How often the lab polls each AS's `GET /api/channels` for the personal channels.
pub const LIST_POLL: Duration = Duration::from_millis(10);
/// The cross-AS viewers stop this long before the producers (who stop with the run), so
/// no viewer sees its channel torn down under it.
const CROSS_AS_MARGIN_S: f64 = 2.0;
/// The shortest cross-AS run worth starting, seconds.
const CROSS_AS_MIN_S: f64 = 2.0;

/// The lab's clock (the listing times of the overlay lab; drivers may read the clock).
#[expect(clippy::disallowed_methods)]
fn clock() -> std::time::Instant {
    std::time::Instant::now()
}

/// A RELOAD overlay testbed (`[overlay]`): `peers` plain overlay peers (the first starts
/// the overlay) and `ases` ASes with `[overlay] enabled` bootstrapped to the first peer,
/// all with identities from one dev CA in the temporary directory. Each AS is as
/// [`Testbed`]'s (its own SQLite file, SIP port, HTTP API, relays, the test-pattern
/// channels) plus a relay control API (`[relay] control_listen`) so another AS's relay can
/// pull its channels.
#[derive(Debug)]
pub struct OverlayTestbed {
    rt: tokio::runtime::Runtime,
    peers: Vec<(
        p2psip_overlay::driver::OverlayHandle,
        tokio::task::JoinHandle<()>,
    )>,
    ases: Vec<App>,
    dir: tempfile::TempDir,
    /// Each AS's SIP UDP address.
    pub sips: Vec<SocketAddr>,
    /// Each AS's HTTP API.
    pub https: Vec<SocketAddr>,
    /// The test-pattern channels every AS serves.
    pub channels: Vec<String>,
    /// The first peer's RELOAD listen address (every AS's bootstrap).
    pub bootstrap: SocketAddr,
}

impl OverlayTestbed {
    /// Starts the peers one after the other (each joined before the next), then the ASes.
    pub fn start(
        channels: &[String],
        relays: usize,
        peers: usize,
        ases: usize,
    ) -> Result<Self, Error> {
        let mut channels = channels.to_vec();
        if channels.is_empty() {
            channels = DEFAULT_CHANNELS.iter().map(|s| (*s).to_owned()).collect();
        }
        let dir = tempfile::Builder::new()
            .prefix("ue-sim-overlay-lab-")
            .tempdir()?;
        let ca = dir.path().join("ca");
        p2psip_overlay::driver::control::write_ca(&ca, OVERLAY_NAME)
            .map_err(|e| Error::Overlay(format!("dev CA: {e}")))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("lab-overlay")
            .enable_all()
            .build()?;
        let mut tb = Self {
            rt,
            peers: Vec::new(),
            ases: Vec::new(),
            dir,
            sips: Vec::new(),
            https: Vec::new(),
            channels,
            bootstrap: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        };
        match tb.boot(&ca, relays, peers.max(1), ases) {
            Ok(()) => Ok(tb),
            Err(e) => {
                tb.shutdown();
                Err(e)
            }
        }
    }

    fn boot(&mut self, ca: &Path, relays: usize, peers: usize, ases: usize) -> Result<(), Error> {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut boot = None;
        for i in 0..peers {
            let node = p2psip_overlay::driver::control::random_node_id();
            let (id, roots) = p2psip_overlay::driver::identity_from_ca_dir(ca, OVERLAY_NAME, node)
                .map_err(|e| Error::Overlay(format!("peer {i} identity: {e}")))?;
            let link = p2psip_overlay::link::LinkConfig::new(OVERLAY_NAME, id, roots);
            let dc = p2psip_overlay::driver::DriverConfig::new(link, SocketAddr::new(lo, 0), boot);
            let (h, task) = self
                .rt
                .block_on(p2psip_overlay::driver::start(dc))
                .map_err(|e| Error::Overlay(format!("peer {i}: {e}")))?;
            let joined = self
                .rt
                .block_on(async { tokio::time::timeout(OVERLAY_JOIN_WAIT, h.joined()).await });
            let addr = h.listen_addr();
            self.peers.push((h, task));
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(Error::Overlay(format!("peer {i} join: {e}"))),
                Err(_) => return Err(Error::Overlay(format!("peer {i}: no join within 10 s"))),
            }
            boot.get_or_insert(addr);
        }
        self.bootstrap = boot.unwrap_or(self.bootstrap);
        for k in 0..ases {
            let db = format!(
                "sqlite://{}?mode=rwc",
                self.dir.path().join(format!("as{k}.db")).display()
            );
            let mut cfg = lab_config_relays(&db, &self.channels, relays);
            cfg.relay.control_listen = Some(SocketAddr::new(lo, 0));
            cfg.overlay.enabled = true;
            cfg.overlay.ca_dir = Some(ca.to_path_buf());
            cfg.overlay.name = OVERLAY_NAME.into();
            cfg.overlay.bootstrap = boot;
            let app = self.rt.block_on(App::start(&cfg))?;
            let (sip, http) = (app.sip_addr(Transport::Udp), app.http);
            self.ases.push(app);
            let (Some(sip), Some(http)) = (sip, http) else {
                return Err(Error::NoUdp);
            };
            self.sips.push(sip);
            self.https.push(http);
        }
        Ok(())
    }

    /// The runtime the ASes and peers run on.
    #[must_use]
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.rt
    }

    /// The temporary directory (dev CA, SQLite files; removed on shutdown).
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Each AS's `as_overlay_*` counters (what its `/metrics` shows).
    #[must_use]
    pub fn overlay_counters(&self) -> Vec<std::collections::BTreeMap<String, u64>> {
        self.ases
            .iter()
            .map(|app| {
                let mut text = String::new();
                if let Some(ov) = app.service.overlay() {
                    ov.stats.render(&mut text);
                }
                prefixed_samples(&text, "as_overlay_")
            })
            .collect()
    }

    /// Stops the ASes (BYE to viewers, directory entries withdrawn), then the peers, the
    /// runtime; removes the temporary directory.
    pub fn shutdown(self) {
        let Self {
            rt,
            peers,
            ases,
            dir,
            ..
        } = self;
        for app in ases {
            rt.block_on(app.shutdown());
        }
        for (h, task) in peers {
            rt.block_on(h.shutdown());
            task.abort();
        }
        rt.shutdown_timeout(Duration::from_secs(2));
        drop(dir);
    }
}

/// How long the lab waits for each plain overlay peer to join.
const OVERLAY_JOIN_WAIT: Duration = Duration::from_secs(10);

/// The samples of the Prometheus `text` whose names start with `prefix`.
#[must_use]
pub fn prefixed_samples(text: &str, prefix: &str) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with(prefix)) {
        let mut it = line.split_whitespace();
        if let (Some(name), Some(v)) = (it.next(), it.next()) {
            if let Ok(v) = v.parse::<f64>() {
                out.insert(name.to_owned(), v.max(0.0) as u64);
            }
        }
    }
    out
}

/// How many of `ues` viewers run at AS `k` of `ases` (viewer `i` at AS `i % ases`).
#[must_use]
pub fn viewers_at(ues: usize, ases: usize, k: usize) -> usize {
    ues / ases + usize::from(k < ues % ases)
}

/// The scenario AS `k` (>= 1) of an overlay lab runs: its share of the viewers, no
/// producers, no polls, `channels` (the personal channels of AS 0 listed here) joined by
/// INVITE and zapped by BYE + INVITE (the AS offers no re-INVITE into a remote channel),
/// `duration_s` long, its own seed.
#[must_use]
pub fn cross_as_scenario(
    base: &Scenario,
    k: usize,
    ases: usize,
    channels: Vec<String>,
    duration_s: f64,
) -> Scenario {
    let mut s = base.clone();
    s.name = format!("{} (AS {k})", base.name);
    s.ues = viewers_at(base.ues, ases, k);
    s.seed = base.seed.wrapping_add(k as u64);
    s.duration_s = duration_s;
    s.channels.list = channels;
    s.producers.count = 0;
    s.zap.method = crate::scenario::ZapChoice::ByeInvite;
    s.votes = None;
    s.faults.clear();
    s.overlay = None;
    s.api = None;
    s
}

/// Adds run `b` (started `offset_s` after `a`'s start) into `a`: counts summed, samples
/// and viewers appended, timelines merged by second. Its joins are all of personal
/// channels, so they count as personal viewers too.
pub fn merge_stats(a: &mut RunStats, b: &RunStats, offset_s: f64) {
    a.ues += b.ues;
    a.duration_s = a.duration_s.max(b.duration_s + offset_s);
    a.joins_ok += b.joins_ok;
    a.joins_failed += b.joins_failed;
    a.zaps_ok += b.zaps_ok;
    a.zaps_failed += b.zaps_failed;
    a.registrations_ok += b.registrations_ok;
    a.registrations_failed += b.registrations_failed;
    a.join_ms.extend_from_slice(&b.join_ms);
    a.zap_ms.extend_from_slice(&b.zap_ms);
    a.first_packet_ms.extend_from_slice(&b.first_packet_ms);
    a.first_frame_ms.extend_from_slice(&b.first_frame_ms);
    a.personal_first_frame_ms
        .extend_from_slice(&b.first_frame_ms);
    a.personal_viewers += b.joins_ok + b.zaps_ok;
    a.viewers.extend(b.viewers.iter().cloned());
    for (k, v) in &b.failures {
        *a.failures.entry(k.clone()).or_default() += v;
    }
    a.leaves += b.leaves;
    a.moves_ok += b.moves_ok;
    a.moves_failed += b.moves_failed;
    a.move_gap_ms.extend_from_slice(&b.move_gap_ms);
    a.joins_refused += b.joins_refused;
    a.zaps_refused += b.zaps_refused;
    for (k, v) in &b.joins_refused_by {
        *a.joins_refused_by.entry(k.clone()).or_default() += v;
    }
    for (k, v) in &b.zaps_refused_by {
        *a.zaps_refused_by.entry(k.clone()).or_default() += v;
    }
    a.rtcp.add(&b.rtcp);
    for p in &b.timeline {
        let t = (p.t_s + offset_s).round();
        match a.timeline.iter_mut().find(|q| q.t_s.round() == t) {
            Some(q) => {
                q.joins += p.joins;
                q.zaps += p.zaps;
                q.leaves += p.leaves;
                q.failures += p.failures;
                q.moves += p.moves;
                q.active += p.active;
            }
            None => a.timeline.push(TimelinePoint {
                t_s: t,
                ..p.clone()
            }),
        }
    }
    a.timeline.sort_by(|x, y| x.t_s.total_cmp(&y.t_s));
}

/// The personal channels listed in an AS's `GET /api/channels` body: every entry not in
/// `seeded` (the test patterns every AS serves).
fn listed_personal(body: &[u8], seeded: &[String]) -> Vec<String> {
    let Ok(list) = serde_json::from_slice::<Vec<serde_json::Value>>(body) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|e| e.get("id")?.as_str())
        .filter(|id| !seeded.iter().any(|s| s == id))
        .map(str::to_owned)
        .collect()
}

/// Polls every AS's `GET /api/channels` every [`LIST_POLL`] from `t0` until each of the
/// `expected` personal channels is listed at every AS or `until` passes; records when each
/// channel was first seen at each AS (ms since `t0`).
async fn watch_listings(
    https: &[SocketAddr],
    seeded: &[String],
    expected: usize,
    t0: std::time::Instant,
    until: Duration,
) -> Vec<report::OverlayChannel> {
    let mut seen: Vec<report::OverlayChannel> = Vec::new();
    let mut tick = tokio::time::interval(LIST_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for (k, http) in https.iter().enumerate() {
            let Ok((200, body)) = crate::api::request(*http, "GET", "/api/channels", None).await
            else {
                continue;
            };
            let at = (clock() - t0).as_secs_f64() * 1e3;
            for id in listed_personal(&body, seeded) {
                let i = match seen.iter().position(|c| c.id == id) {
                    Some(i) => i,
                    None => {
                        seen.push(report::OverlayChannel {
                            id: id.clone(),
                            home: 0,
                            listed_ms: vec![None; https.len()],
                        });
                        seen.len() - 1
                    }
                };
                seen[i].listed_ms[k].get_or_insert(at);
            }
        }
        let everywhere = seen
            .iter()
            .filter(|c| c.listed_ms.iter().all(Option::is_some))
            .count();
        if everywhere >= expected || clock() - t0 >= until {
            return seen;
        }
    }
}

impl OverlayTestbed {
    /// Runs an overlay lab scenario (module docs): AS 0's share of the viewers and the
    /// producers on this thread (with `progress`); meanwhile a helper thread watches the
    /// ASes' channel lists and, once the producers' channels are listed at every AS (or
    /// `list_timeout_s` past the producers' start), runs each other AS's viewers on the
    /// channels listed there. Returns the merged figures with [`report::OverlayFigures`].
    pub fn run(
        &self,
        scenario: &Scenario,
        progress: &dyn Fn(&TimelinePoint),
    ) -> Result<RunStats, String> {
        let o = scenario.overlay.clone().unwrap_or_default();
        let ases = self.sips.len();
        let mut sc0 = scenario.clone();
        sc0.ues = viewers_at(scenario.ues, ases, 0);
        sc0.overlay = None;
        sc0.api = Some(self.https[0].to_string());
        let t0 = clock();
        let until = Duration::from_secs_f64(
            (scenario.producers.start_s + o.list_timeout_s).min(scenario.duration_s),
        );
        let (stats0, (channels, others, error)) = std::thread::scope(|s| {
            let helper = s.spawn(|| self.cross_as_runs(scenario, t0, until));
            let st0 = run_scenario(&sc0, self.sips[0], progress);
            let others = helper.join().unwrap_or_else(|_| {
                (
                    Vec::new(),
                    Vec::new(),
                    Some("cross-AS runs panicked".into()),
                )
            });
            (st0, others)
        });
        let mut st = stats0.map_err(|e| format!("AS 0: {e}"))?;
        st.scenario.clone_from(&scenario.name);
        let mut f = report::OverlayFigures {
            peers: self.peers.len(),
            ases,
            viewers_per_as: vec![sc0.ues as u64],
            channels,
            error,
            ..report::OverlayFigures::default()
        };
        for (k, offset, r) in others {
            match r {
                Ok(b) => {
                    f.viewers_per_as.push(b.ues as u64);
                    f.cross_as_ok += b.joins_ok + b.zaps_ok;
                    f.cross_as_failed += b.joins_failed + b.zaps_failed;
                    f.cross_as_refused += b.joins_refused + b.zaps_refused;
                    merge_stats(&mut st, &b, offset);
                }
                Err(e) => {
                    // Its viewers never joined: each counts as a failed cross-AS join.
                    let n = viewers_at(scenario.ues, ases, k) as u64;
                    f.viewers_per_as.push(n);
                    f.cross_as_failed += n;
                    st.joins_failed += n;
                    let msg = format!("AS {k}: {e}");
                    f.error = Some(f.error.map_or(msg.clone(), |x| format!("{x}; {msg}")));
                }
            }
        }
        f.as_counters = self.overlay_counters();
        st.overlay = Some(f);
        Ok(st)
    }

    /// The helper thread of [`OverlayTestbed::run`]: (channels seen, per other AS (index,
    /// start offset s, its run), setup error).
    #[allow(clippy::type_complexity)]
    fn cross_as_runs(
        &self,
        scenario: &Scenario,
        t0: std::time::Instant,
        until: Duration,
    ) -> (
        Vec<report::OverlayChannel>,
        Vec<(usize, f64, Result<RunStats, String>)>,
        Option<String>,
    ) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => return (Vec::new(), Vec::new(), Some(format!("runtime: {e}"))),
        };
        let seen = rt.block_on(watch_listings(
            &self.https,
            &self.channels,
            scenario.producers.count,
            t0,
            until,
        ));
        drop(rt);
        let offset = (clock() - t0).as_secs_f64();
        let left = scenario.duration_s - offset - CROSS_AS_MARGIN_S;
        let ases = self.sips.len();
        let mut error = None;
        if seen.len() < scenario.producers.count {
            error = Some(format!(
                "{} of {} personal channels seen",
                seen.len(),
                scenario.producers.count
            ));
        }
        let runs = std::thread::scope(|s| {
            let handles: Vec<_> = (1..ases)
                .map(|k| {
                    let listed: Vec<String> = seen
                        .iter()
                        .filter(|c| c.listed_ms[k].is_some())
                        .map(|c| c.id.clone())
                        .collect();
                    let sip = self.sips[k];
                    let http = self.https[k];
                    s.spawn(move || {
                        if listed.is_empty() {
                            return Err("no personal channel listed here".to_owned());
                        }
                        if left < CROSS_AS_MIN_S {
                            return Err(format!("only {left:.1} s left for the cross-AS viewers"));
                        }
                        let mut sc = cross_as_scenario(scenario, k, ases, listed, left);
                        sc.api = Some(http.to_string());
                        run_scenario(&sc, sip, &|_| {}).map_err(|e| e.to_string())
                    })
                })
                .collect();
            handles
                .into_iter()
                .enumerate()
                .map(|(i, h)| {
                    let r = h
                        .join()
                        .unwrap_or_else(|_| Err("cross-AS run panicked".to_owned()));
                    (i + 1, offset, r)
                })
                .collect()
        });
        (seen, runs, error)
    }
}

/// `ue-sim lab` with `[overlay]`: the [`OverlayTestbed`] (the scenario's channels and
/// `relays` per AS), [`OverlayTestbed::run`], the report, teardown.
pub fn lab_overlay(scenario: &Scenario, out: &Path, progress: &Progress) -> Result<Outcome, Error> {
    let Some(o) = &scenario.overlay else {
        return Err(Error::Run("no [overlay] section".into()));
    };
    if !scenario.faults.is_empty() || scenario.aaa.enabled {
        return Err(Error::Run(
            "[overlay] labs support no [[faults]] and no [aaa] yet".into(),
        ));
    }
    let thresholds = Thresholds::from(&scenario.thresholds);
    let tb = OverlayTestbed::start(&scenario.channels.list, scenario.relays, o.peers, o.ases)?;
    tracing::info!(sips = ?tb.sips, https = ?tb.https, bootstrap = %tb.bootstrap, peers = o.peers, "overlay lab up");
    let r = run_and_report(tb.sips[0], out, &thresholds, progress, |_, p| {
        tb.run(scenario, p)
    });
    tb.shutdown();
    r
}

/// `ue-sim run`: the scenario against an AS that is already running at `target`.
pub fn run_against(
    scenario: &Scenario,
    target: SocketAddr,
    out: &Path,
    progress: &Progress,
) -> Result<Outcome, Error> {
    if scenario.aaa.enabled {
        return Err(Error::Run(
            "[aaa] enabled is only supported by `ue-sim lab` (it starts the embedded AAA)".into(),
        ));
    }
    if !scenario.faults.is_empty() {
        return Err(Error::Run(
            "[[faults]] are only supported by `ue-sim lab` (ue-sim cannot stop a remote relay or AS)"
                .into(),
        ));
    }
    let thresholds = Thresholds::from(&scenario.thresholds);
    run_and_report(target, out, &thresholds, progress, |target, p| {
        run_scenario(scenario, target, p)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_default_scenario_parses() {
        let s = Scenario::from_toml(DEFAULT_SCENARIO).unwrap();
        assert!(!s.channels.list.is_empty());
        assert!(s.aaa.enabled, "the default lab runs the embedded AAA");
    }

    #[test]
    fn config_is_valid_loopback_with_free_ports() {
        let chans: Vec<String> = DEFAULT_CHANNELS.iter().map(|s| (*s).to_owned()).collect();
        let c = lab_config("sqlite::memory:", &chans);
        c.validate().unwrap();
        assert_eq!(c.sip.udp, Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(c.http.listen, Some("127.0.0.1:0".parse().unwrap()));
        assert!(c.sip.tls.is_none());
        assert_eq!(c.channels.len(), DEFAULT_CHANNELS.len());
        assert!(c.channels.iter().all(|s| s.test_pattern));
        assert_eq!(c.channels[1].id, "sport");
    }

    /// A stand-in for the UE driver: one OPTIONS over UDP, answered 200, counted as a join.
    fn options_runner(
        target: SocketAddr,
        progress: &dyn Fn(&TimelinePoint),
    ) -> Result<RunStats, std::io::Error> {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
        sock.set_read_timeout(Some(Duration::from_secs(5)))?;
        let local = sock.local_addr()?;
        let req = format!(
            "OPTIONS sip:news@127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-lab-1;rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:lab@127.0.0.1>;tag=1\r\n\
             To: <sip:news@127.0.0.1>\r\nCall-ID: lab-options-1\r\nCSeq: 1 OPTIONS\r\n\
             Content-Length: 0\r\n\r\n"
        );
        sock.send_to(req.as_bytes(), target)?;
        let mut buf = [0u8; 4096];
        let (n, _) = sock.recv_from(&mut buf)?;
        let ok = buf[..n].starts_with(b"SIP/2.0 200");
        let point = TimelinePoint {
            t_s: 1.0,
            joins: u64::from(ok),
            ..TimelinePoint::default()
        };
        progress(&point);
        Ok(RunStats {
            scenario: "options".into(),
            ues: 1,
            duration_s: 1.0,
            joins_ok: u64::from(ok),
            joins_failed: u64::from(!ok),
            join_ms: vec![1.0],
            timeline: vec![point],
            ..RunStats::default()
        })
    }

    #[test]
    fn lab_boots_runs_reports_and_tears_down() {
        let out = tempfile::tempdir().unwrap();
        let progress = Progress::quiet();
        let o = lab(
            &["news".into()],
            out.path(),
            &Thresholds::default(),
            &progress,
            options_runner,
        )
        .unwrap();
        assert_eq!(o.summary.joins.ok, 1, "the AS answered OPTIONS 200");
        assert!(o.summary.pass);
        assert_eq!(progress.totals().joins, 1);
        assert!(o.written.json.exists() && o.written.html.exists());
    }

    #[test]
    fn a_failed_run_is_an_error_and_still_tears_down() {
        let out = tempfile::tempdir().unwrap();
        let r = lab(
            &["news".into()],
            out.path(),
            &Thresholds::default(),
            &Progress::quiet(),
            |_, _| Err::<RunStats, _>("boom"),
        );
        assert!(matches!(r, Err(Error::Run(m)) if m == "boom"));
        assert!(!out.path().join("report.json").exists());
    }

    #[test]
    fn faults_against_a_remote_target_are_refused_up_front() {
        let s = Scenario::from_toml(
            "duration_s = 5\nrelays = 2\n[[faults]]\nat_s = 1.0\nkind = \"stop_relay\"\n",
        )
        .unwrap();
        let out = tempfile::tempdir().unwrap();
        let r = run_against(
            &s,
            "127.0.0.1:9".parse().unwrap(),
            out.path(),
            &Progress::quiet(),
        );
        assert!(matches!(r, Err(Error::Run(m)) if m.contains("ue-sim lab")));
        assert!(!out.path().join("report.json").exists());
        let s = Scenario::from_toml("duration_s = 5\n[aaa]\nenabled = true\n").unwrap();
        let r = run_against(
            &s,
            "127.0.0.1:9".parse().unwrap(),
            out.path(),
            &Progress::quiet(),
        );
        assert!(matches!(r, Err(Error::Run(m)) if m.contains("[aaa]")));
        let s = Scenario::from_toml("duration_s = 5\n[[faults]]\nat_s = 1.0\nkind = \"stop_as\"\n")
            .unwrap();
        let r = lab_scenario(&s, out.path(), &Progress::quiet());
        assert!(matches!(r, Err(Error::Run(m)) if m.contains("stop_as")));
        let c = lab_config_relays("sqlite::memory:", &["news".into()], 2);
        assert_eq!(c.relay.count, 2);
        c.validate().unwrap();
    }

    fn cdr(session: &str, kind: &str) -> as_server::store::Cdr {
        as_server::store::Cdr {
            session_id: session.into(),
            record_number: u32::from(kind == "STOP"),
            record_type: kind.into(),
            origin_host: "as".into(),
            origin_realm: "r".into(),
            subscriber: None,
            channel: None,
            called_party: None,
            user_session_id: None,
            charging_id: None,
            event_ms: None,
            received_ms: 0,
            duration_secs: None,
            cause_code: None,
            retransmitted: false,
        }
    }

    #[test]
    fn aaa_figures_pair_start_and_stop_and_read_the_as_counters() {
        let metrics = "# HELP as_aaa_authorised_total x\n# TYPE as_aaa_authorised_total counter\n\
                       as_aaa_authorised_total 7\nas_aaa_refused_total 2\n\
                       as_aaa_outbox_records 0\nas_sessions 3\n";
        let cdrs = [
            cdr("a", "START"),
            cdr("a", "STOP"),
            cdr("b", "START"),
            cdr("c", "STOP"),
            cdr("d", "EVENT"),
        ];
        let f = figures_from(metrics, &cdrs);
        assert_eq!((f.authorised, f.refused_total), (7, 2));
        assert_eq!(f.as_counters.len(), 3, "as_aaa_* only: {:?}", f.as_counters);
        assert_eq!((f.acr_start, f.acr_stop, f.cdrs), (2, 2, 5));
        assert_eq!((f.accounted_sessions, f.unaccounted_sessions), (1, 2));
    }

    #[test]
    fn aaa_subscribers_follow_the_roles() {
        let s = Scenario::from_toml(
            "ues = 10\n[channels]\nlist = [\"news\", \"sport\"]\n[producers]\ncount = 1\n\
             [aaa]\nenabled = true\nunknown_share = 0.2\nrestricted_share = 0.25\nmax_streams = 2\n",
        )
        .unwrap();
        let subs = aaa_subscribers(&s, "127.0.0.1");
        assert_eq!(subs.len(), 9, "8 viewers subscribe, and the producer");
        assert!(subs.iter().all(|x| x.max_streams == 2));
        assert_eq!(
            subs.iter().filter(|x| x.packages == ["news"]).count(),
            2,
            "a quarter of 8"
        );
        assert!(subs.iter().any(|x| x.identity == "sip:ue10@127.0.0.1"));
        lab_aaa_config("sqlite::memory:", subs).validate().unwrap();
    }

    #[test]
    fn overlay_lab_splits_viewers_and_merges_runs() {
        assert_eq!(
            (0..3).map(|k| viewers_at(10, 3, k)).collect::<Vec<_>>(),
            [4, 3, 3]
        );
        let base = Scenario::from_toml(
            "ues = 9\nduration_s = 30\n[producers]\ncount = 2\n[overlay]\npeers = 4\nases = 2\n\
             [votes]\nviewers_voting = 2\noptions = [\"a\", \"b\"]\n",
        )
        .unwrap();
        let s = cross_as_scenario(&base, 1, 2, vec!["p-0".into()], 5.0);
        assert_eq!(s.ues, 4);
        assert_eq!(s.producers.count, 0);
        assert_eq!(s.channels.list, ["p-0"]);
        assert_eq!(s.zap.method, crate::scenario::ZapChoice::ByeInvite);
        assert!(s.votes.is_none() && s.overlay.is_none());
        assert_ne!(s.seed, base.seed);
        s.validate().unwrap();

        let point = |t_s: f64, joins: u64| TimelinePoint {
            t_s,
            joins,
            active: joins,
            ..TimelinePoint::default()
        };
        let mut a = RunStats {
            ues: 5,
            duration_s: 10.0,
            joins_ok: 5,
            join_ms: vec![1.0; 5],
            timeline: vec![point(1.0, 3), point(2.0, 2)],
            ..RunStats::default()
        };
        let mut b = RunStats {
            ues: 4,
            duration_s: 7.0,
            joins_ok: 3,
            joins_failed: 1,
            zaps_ok: 2,
            first_frame_ms: vec![2.0; 3],
            timeline: vec![point(1.0, 4)],
            ..RunStats::default()
        };
        b.failures.insert("timeout".into(), 1);
        merge_stats(&mut a, &b, 1.2);
        assert_eq!((a.ues, a.joins_ok, a.joins_failed, a.zaps_ok), (9, 8, 1, 2));
        assert_eq!(
            a.personal_viewers, 5,
            "cross-AS joins and zaps are of personal channels"
        );
        assert_eq!(a.personal_first_frame_ms.len(), 3);
        assert_eq!(a.join_ms.len(), 5);
        assert!((a.duration_s - 10.0).abs() < 1e-9);
        assert_eq!(a.failures["timeout"], 1);
        let joins: Vec<u64> = a.timeline.iter().map(|p| p.joins).collect();
        assert_eq!(joins, [3, 6], "b's second 1 is a's second 2 (offset 1.2 s)");
    }

    #[test]
    fn overlay_lab_reads_listings_and_counters() {
        let body = br#"[{"id":"news","name":"n","kind":"producer","owner":null,"created_ms":1},
                        {"id":"ue-sim-personal-0","name":"p","kind":"personal","owner":"sip:ue5@x","created_ms":2}]"#;
        assert_eq!(
            listed_personal(body, &["news".into()]),
            ["ue-sim-personal-0"]
        );
        assert!(listed_personal(b"not json", &[]).is_empty());
        let m = prefixed_samples(
            "# TYPE as_overlay_pulls_started_total counter\nas_overlay_pulls_started_total 3\n\
             as_sessions 2\nas_overlay_fetch_failures_total 0\n",
            "as_overlay_",
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m["as_overlay_pulls_started_total"], 3);
    }

    #[test]
    fn overlay_labs_refuse_faults_and_aaa() {
        let out = tempfile::tempdir().unwrap();
        let s = Scenario::from_toml(
            "duration_s = 5\n[producers]\ncount = 1\n[overlay]\n[aaa]\nenabled = true\n",
        )
        .unwrap();
        let r = lab_scenario(&s, out.path(), &Progress::quiet());
        assert!(matches!(r, Err(Error::Run(m)) if m.contains("[overlay]")));
    }

    #[test]
    fn testbed_boots_and_cleans_up() {
        let tb = Testbed::start(&["news".into(), "sport".into()]).unwrap();
        assert!(tb.sip.ip().is_loopback());
        assert_ne!(tb.sip.port(), 0);
        let db = tb.dir().join("lab.db");
        assert!(db.exists(), "SQLite file created");
        let dir = tb.dir().to_owned();
        tb.shutdown();
        assert!(!dir.exists(), "temporary directory removed");
    }
}
