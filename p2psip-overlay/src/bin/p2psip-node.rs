//! `p2psip-node`: the RELOAD overlay peer.
//!
//! Subcommands:
//! - `sim`: run the deterministic in-memory simulator ([`p2psip_overlay::sim`])
//!   and print one JSON object.
//! - `run`: a real peer over TLS ([`p2psip_overlay::driver`]).
//! - `ca`: writes a dev CA for the testbed.

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "p2psip-node",
    about = "RELOAD (RFC 6940) overlay peer and simulator"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Simulate a CHORD-RELOAD ring in memory and print one JSON report.
    Sim {
        /// Ring size.
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        /// Random lookups per phase.
        #[arg(long, default_value_t = 10_000)]
        lookups: usize,
        /// Fraction of nodes killed at once (no Leave).
        #[arg(long, default_value_t = 0.2)]
        kill: f64,
        /// RNG seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Churn: departures (and as many joins) per second, network-wide.
        #[arg(long, default_value_t = 0.0)]
        churn: f64,
        /// Churn phase length in seconds.
        #[arg(long, default_value_t = 300.0)]
        duration: f64,
        /// Replicas on successors (copies of each record = 1 + replicas).
        #[arg(long, default_value_t = 3)]
        replicas: usize,
        /// Per-frame link loss probability.
        #[arg(long, default_value_t = 0.0)]
        loss: f64,
        /// Successor/predecessor list length.
        #[arg(long, default_value_t = 5)]
        neighbors: usize,
    },
    /// Run a real peer over TLS: certificate from the dev CA (or `--enroll`), join through
    /// `--bootstrap`, serve; prints `{"event":"joined",..}` once joined; local HTTP control
    /// API with `--control` (GET /status, /fetch, /local; POST /store).
    Run(p2psip_overlay::driver::control::RunArgs),
    /// Write a dev CA for the testbed (`ca.pem`, `ca.key`) into `--out` (kept if present).
    Ca(p2psip_overlay::driver::control::CaArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Sim {
            nodes,
            lookups,
            kill,
            seed,
            churn,
            duration,
            replicas,
            loss,
            neighbors,
        } => {
            let mut cfg = p2psip_overlay::sim::SimConfig {
                nodes,
                lookups,
                kill,
                seed,
                churn,
                churn_duration: if churn > 0.0 { duration } else { 0.0 },
                loss,
                ..Default::default()
            };
            cfg.node.replicas = replicas;
            cfg.node.chord.successors = neighbors.max(3);
            cfg.node.chord.predecessors = neighbors.max(3);
            let report = p2psip_overlay::sim::run(&cfg);
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Cmd::Run(a) => Ok(p2psip_overlay::driver::control::run_cmd(a)?),
        Cmd::Ca(a) => Ok(p2psip_overlay::driver::control::ca_cmd(&a)?),
    }
}
