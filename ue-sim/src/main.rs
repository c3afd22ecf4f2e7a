//! `ue-sim`: the UE simulator's command line.
//!
//! - `ue-sim lab [SCENARIO.toml] [--out DIR]`: boots the whole testbed in this process on
//!   loopback ([`ue_sim::lab`]), runs the scenario (the embedded default when none is given),
//!   writes `report.json` and `report.html` to DIR (default `lab-report/`), prints a summary,
//!   tears everything down.
//! - `ue-sim run SCENARIO.toml --target sip:HOST:PORT [--out DIR]`: the same scenario and
//!   report against an AS that is already running (ours or anyone's).
//! - `ue-sim report report.json [--scenario S.toml] [--out DIR]`: the report again from the
//!   raw figures of an earlier run (thresholds from the scenario).
//!
//! Exit code: 0 when every threshold holds, 1 when one fails, 2 when the run could not be
//! made (bad scenario, AS did not start, ...).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use ue_sim::lab::{self, Outcome};
use ue_sim::progress::Progress;
use ue_sim::report::{self, Summary, Thresholds};
use ue_sim::scenario::Scenario;
use ue_sim::stats::RunStats;

#[derive(Debug, Parser)]
#[command(
    name = "ue-sim",
    version,
    about = "UE simulator and lab for the IPTV application server"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// No progress display.
    #[arg(long, short, global = true)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Boot the testbed in-process on loopback, run a scenario against it, write the report.
    Lab {
        /// Scenario TOML (default: the embedded `scenarios/default.toml`).
        scenario: Option<PathBuf>,
        /// Report directory.
        #[arg(long, default_value = "lab-report")]
        out: PathBuf,
    },
    /// Run a scenario against an AS that is already running.
    Run {
        /// Scenario TOML.
        scenario: PathBuf,
        /// The AS: `sip:HOST[:PORT]` or `HOST[:PORT]` (UDP, port 5060 by default).
        #[arg(long)]
        target: String,
        /// Report directory.
        #[arg(long, default_value = "ue-sim-report")]
        out: PathBuf,
    },
    /// Render the report again from a `report.json` (its `raw` stats), e.g. after an upgrade
    /// or with other thresholds.
    Report {
        /// A `report.json` written by `lab`/`run` (or bare `RunStats` JSON).
        json: PathBuf,
        /// Take the thresholds from this scenario (default: no failed join).
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Report directory.
        #[arg(long, default_value = "ue-sim-report")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(&cli) {
        Ok(o) if o.summary.pass => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("ue-sim: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<Outcome> {
    let outcome = match &cli.cmd {
        Cmd::Lab { scenario, out } => {
            let scenario = load(scenario.as_deref())?;
            let progress = progress(cli.quiet, &scenario);
            eprintln!(
                "ue-sim lab: scenario {:?} ({} UEs, {} s), report to {}",
                scenario.name,
                scenario.ues,
                scenario.duration_s,
                out.display()
            );
            lab::lab_scenario(&scenario, out, &progress)?
        }
        Cmd::Run {
            scenario,
            target,
            out,
        } => {
            let scenario = load(Some(scenario))?;
            let target = parse_target(target)?;
            let progress = progress(cli.quiet, &scenario);
            eprintln!(
                "ue-sim run: scenario {:?} ({} UEs, {} s) against {target}, report to {}",
                scenario.name,
                scenario.ues,
                scenario.duration_s,
                out.display()
            );
            lab::run_against(&scenario, target, out, &progress)?
        }
        Cmd::Report {
            json,
            scenario,
            out,
        } => rerender(json, scenario.as_deref(), out)?,
    };
    println!("{}", outcome.summary.text());
    println!(
        "  report: {} and {}",
        outcome.written.html.display(),
        outcome.written.json.display()
    );
    Ok(outcome)
}

fn rerender(json: &Path, scenario: Option<&Path>, out: &Path) -> anyhow::Result<Outcome> {
    let text = std::fs::read_to_string(json).with_context(|| format!("read {}", json.display()))?;
    let mut v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parse {}", json.display()))?;
    if let Some(raw) = v.get_mut("raw") {
        v = raw.take();
    }
    let stats: RunStats =
        serde_json::from_value(v).with_context(|| format!("{}: no run stats", json.display()))?;
    let thresholds = match scenario {
        Some(p) => Thresholds::from(&load(Some(p))?.thresholds),
        None => Thresholds::default(),
    };
    let summary = Summary::new(&stats, &thresholds);
    let written = report::write(out, &stats, &summary)?;
    Ok(Outcome {
        stats,
        summary,
        written,
    })
}

fn progress(quiet: bool, scenario: &Scenario) -> Progress {
    if quiet {
        Progress::quiet()
    } else {
        Progress::stderr(Some(scenario.duration_s))
    }
}

fn load(path: Option<&Path>) -> anyhow::Result<Scenario> {
    match path {
        Some(p) => Scenario::load(p).with_context(|| format!("scenario {}", p.display())),
        None => Scenario::from_toml(lab::DEFAULT_SCENARIO).context("embedded default scenario"),
    }
}

/// `sip:HOST[:PORT]`, `HOST[:PORT]` or `[V6]:PORT` to a UDP address (5060 by default).
fn parse_target(t: &str) -> anyhow::Result<SocketAddr> {
    let rest = t
        .strip_prefix("sip:")
        .or_else(|| t.strip_prefix("SIP:"))
        .unwrap_or(t);
    let rest = rest.split(';').next().unwrap_or(rest);
    if let Ok(a) = rest.parse::<SocketAddr>() {
        return Ok(a);
    }
    let with_port = if rest.starts_with('[') && rest.ends_with(']') {
        format!("{rest}:5060")
    } else if rest.contains(':') && !rest.contains('[') && rest.matches(':').count() > 1 {
        format!("[{rest}]:5060")
    } else if rest.contains(':') {
        rest.to_owned()
    } else {
        format!("{rest}:5060")
    };
    match with_port.to_socket_addrs()?.next() {
        Some(a) => Ok(a),
        None => bail!("target {t:?}: no address"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let p = |s| parse_target(s).unwrap().to_string();
        assert_eq!(p("sip:127.0.0.1:5070"), "127.0.0.1:5070");
        assert_eq!(p("127.0.0.1"), "127.0.0.1:5060");
        assert_eq!(p("sip:127.0.0.1;transport=udp"), "127.0.0.1:5060");
        assert_eq!(p("sip:[::1]:5080"), "[::1]:5080");
        assert_eq!(p("[::1]"), "[::1]:5060");
        assert_eq!(p("::1"), "[::1]:5060");
        assert_eq!(p("localhost:5062").rsplit(':').next(), Some("5062"));
    }

    #[test]
    fn cli_parses() {
        let c = Cli::try_parse_from(["ue-sim", "lab"]).unwrap();
        assert!(
            matches!(c.cmd, Cmd::Lab { scenario: None, ref out } if out == Path::new("lab-report"))
        );
        let c = Cli::try_parse_from(["ue-sim", "run", "s.toml", "--target", "sip:h:1"]).unwrap();
        assert!(matches!(c.cmd, Cmd::Run { .. }));
        assert!(
            Cli::try_parse_from(["ue-sim", "run", "s.toml"]).is_err(),
            "--target is required"
        );
    }
}
