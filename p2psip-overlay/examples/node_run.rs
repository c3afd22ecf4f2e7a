//! The `run` and `ca` subcommands of `p2psip-node` on their own (for trying the TLS
//! driver without the simulator's binary): `cargo run --example node_run -- run ...`.

use clap::{Parser, Subcommand};
use p2psip_overlay::driver::control::{ca_cmd, run_cmd, CaArgs, RunArgs};

#[derive(Parser, Debug)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
#[expect(clippy::large_enum_variant, reason = "parsed once")]
enum Cmd {
    /// Write a dev CA.
    Ca(CaArgs),
    /// Run a peer over TLS.
    Run(RunArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Ca(a) => ca_cmd(&a)?,
        Cmd::Run(a) => run_cmd(a)?,
    }
    Ok(())
}
