//! Channel propagation over the RELOAD overlay: N AS instances (default 10) in one process on
//! 127.0.0.1, one overlay (AS 0 starts it, the others join through it). Each run creates a
//! personal channel at one AS (in turn) and measures the time until every other AS lists it
//! (its remote channel table, which is what its channel-list NOTIFY and `/api/channels`
//! show); then deletes it and waits until it is gone everywhere. Prints one JSON object:
//! `{"ases", "runs", "poll_ms", "p50_ms", "p99_ms", "max_ms", "mean_ms"}`.
//!
//! ```text
//! cargo run --release -p as-server --example overlay_propagation -- [ASES] [RUNS] [POLL_MS]
//! ```

use std::time::{Duration, Instant};

use as_server::config::Config;
use as_server::service::app::App;
use as_server::service::NewChannel;

/// The one clock reading of the example.
#[expect(clippy::disallowed_methods)]
fn clock() -> Instant {
    Instant::now()
}

fn config(ca: &std::path::Path, bootstrap: Option<std::net::SocketAddr>, poll_ms: u64) -> Config {
    let mut c = Config::default();
    c.sip.udp = Some("127.0.0.1:0".parse().unwrap());
    c.sip.tcp = None;
    c.sip.tls = None;
    c.sip.domain = "127.0.0.1".into();
    c.http.listen = None;
    c.database.url = "sqlite::memory:".into();
    c.relay.port_min = 0;
    c.relay.port_max = 0;
    c.relay.output_rtp_port = 0;
    c.relay.control_listen = Some("127.0.0.1:0".parse().unwrap());
    c.channels = Vec::new();
    c.overlay.enabled = true;
    c.overlay.ca_dir = Some(ca.to_path_buf());
    c.overlay.bootstrap = bootstrap;
    c.overlay.poll_ms = poll_ms;
    c
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let ases: usize = args.get(1).map_or(Ok(10), |s| s.parse())?;
    let runs: usize = args.get(2).map_or(Ok(20), |s| s.parse())?;
    let poll_ms: u64 = args.get(3).map_or(Ok(20), |s| s.parse())?;
    anyhow::ensure!(ases >= 2, "at least 2 ASes");

    let dir = std::env::temp_dir().join(format!("overlay_propagation_{}", std::process::id()));
    let ca = dir.join("ca");
    p2psip_overlay::driver::control::write_ca(&ca, "iptv.test")?;

    let first = App::start(&config(&ca, None, poll_ms)).await?;
    let boot = first
        .service
        .overlay()
        .map(|o| o.handle().listen_addr())
        .ok_or_else(|| anyhow::anyhow!("overlay off"))?;
    let mut apps = vec![first];
    for _ in 1..ases {
        apps.push(App::start(&config(&ca, Some(boot), poll_ms)).await?);
    }
    // Let the ring settle (stabilisation every 2 s in the driver's defaults).
    tokio::time::sleep(Duration::from_secs(3)).await;

    let listed_everywhere = |apps: &[App], owner: usize, id: &str, want: bool| {
        apps.iter().enumerate().all(|(i, a)| {
            i == owner
                || a.service
                    .overlay()
                    .is_some_and(|o| o.remote(id).is_some() == want)
        })
    };
    let mut times = Vec::with_capacity(runs);
    for run in 0..runs {
        let owner = run % ases;
        let id = format!("run-{run}");
        let t0 = clock();
        apps[owner]
            .service
            .create_channel(NewChannel {
                id: Some(id.clone()),
                name: format!("Run {run}"),
                kind: "personal".into(),
                owner: Some(format!("sip:producer{run}@127.0.0.1")),
                test_pattern: false,
            })
            .await?;
        let deadline = t0 + Duration::from_secs(10);
        while !listed_everywhere(&apps, owner, &id, true) {
            anyhow::ensure!(
                clock() < deadline,
                "run {run}: not listed everywhere in 10 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        times.push((clock() - t0).as_secs_f64() * 1e3);
        apps[owner].service.delete_channel(&id).await?;
        let deadline = clock() + Duration::from_secs(10);
        while !listed_everywhere(&apps, owner, &id, false) {
            anyhow::ensure!(
                clock() < deadline,
                "run {run}: not removed everywhere in 10 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "ases": ases,
            "runs": runs,
            "poll_ms": poll_ms,
            "p50_ms": (quantile(&sorted, 0.5) * 10.0).round() / 10.0,
            "p99_ms": (quantile(&sorted, 0.99) * 10.0).round() / 10.0,
            "max_ms": (sorted.last().copied().unwrap_or(f64::NAN) * 10.0).round() / 10.0,
            "mean_ms": (mean * 10.0).round() / 10.0,
        })
    );
    for a in apps.into_iter().rev() {
        a.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
