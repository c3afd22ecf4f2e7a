//! `as-server`: the IPTV application server binary.
//!
//! `as-server --config as-server/examples/standalone.toml` runs a standalone AS: SIP on
//! 127.0.0.1:5060 (UDP and TCP) and 5061 (TLS), the operator API on 127.0.0.1:8080, the
//! catalogue in a SQLite file, the media relay in-process and the test-pattern channel `news`
//! (`sip:news@127.0.0.1`). Flags and `AS_...` variables override the file (`--help`).
//! It prints one line per listener on start and shuts down cleanly on Ctrl-C or SIGTERM.
//!
//! `as-server aaa --config as-server/examples/aaa.toml` runs the embedded AAA instead
//! (Diameter Sh and Rf on 127.0.0.1:3868, its HTTP API on 127.0.0.1:8081; `as-server aaa
//! --help` lists its flags and `AS_AAA_...` variables).

use anyhow::Context as _;
use clap::Parser as _;

use as_server::config::{Cli, Config};
use as_server::service::app::App;
use as_server::sip::transaction::Transport;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `as-server aaa ...`: the embedded AAA; anything else runs the AS as before.
    if std::env::args_os().nth(1).is_some_and(|a| a == "aaa") {
        let cli = as_server::aaa::AaaCli::parse_from(
            std::iter::once(std::ffi::OsString::from("as-server aaa"))
                .chain(std::env::args_os().skip(2)),
        );
        init_tracing();
        return run_aaa(&cli).await;
    }
    let cli = Cli::parse();
    init_tracing();
    let cfg = Config::load(&cli).context("loading configuration")?;
    let app = App::start(&cfg).await.context("starting the AS")?;

    for (t, addr) in &app.sip {
        let scheme = if *t == Transport::Tls { "sips" } else { "sip" };
        println!(
            "SIP {t} listening on {addr} ({scheme}:<channel>@{})",
            cfg.sip.domain
        );
    }
    if let Some(addr) = app.http {
        println!("HTTP API listening on http://{addr}/ (/api/channels, /api/sessions, /metrics, /healthz)");
    }
    for ch in &cfg.channels {
        println!(
            "channel {} ready: sip:{}@{}{}",
            ch.id,
            ch.id,
            cfg.sip.domain,
            if ch.test_pattern {
                " (test pattern)"
            } else {
                ""
            }
        );
    }

    wait_for_signal().await;
    println!("shutting down");
    app.shutdown().await;
    Ok(())
}

fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// `as-server aaa --config as-server/examples/aaa.toml`: the embedded AAA (Sh + Rf).
async fn run_aaa(cli: &as_server::aaa::AaaCli) -> anyhow::Result<()> {
    let cfg = as_server::aaa::AaaConfig::load(cli).context("loading the AAA configuration")?;
    let aaa = as_server::aaa::Aaa::start(&cfg)
        .await
        .context("starting the AAA")?;
    println!(
        "Diameter {} listening on {} (Origin-Host {}, Origin-Realm {}; Sh 16777217, Rf 3)",
        if cfg.diameter.tls { "TLS" } else { "TCP" },
        aaa.local_addr(),
        aaa.origin_host(),
        aaa.origin_realm()
    );
    if let Some(addr) = aaa.http_addr() {
        println!("HTTP API listening on http://{addr}/ (/api/subscribers, /api/cdrs, /metrics, /healthz)");
    }
    println!("{} subscribers configured", cfg.subscribers.len());
    wait_for_signal().await;
    println!("shutting down");
    aaa.shutdown().await;
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
