//! ue-sim against the whole AS in-process (`App::start` on 127.0.0.1 with ephemeral ports, an
//! in-memory SQLite, test-pattern channels news and sport): a ~10-UE, ~8 s run must join every
//! UE, zap both ways and see key frames. No timing asserts.

use std::sync::atomic::{AtomicUsize, Ordering};

use as_server::config::{ChannelSeed, Config};
use as_server::service::app::App;
use as_server::sip::transaction::Transport;
use ue_sim::scenario::Scenario;

fn config() -> Config {
    let mut c = Config::default();
    c.sip.udp = Some("127.0.0.1:0".parse().unwrap());
    c.sip.tcp = None;
    c.sip.tls = None;
    c.http.listen = None;
    c.database.url = "sqlite::memory:".into();
    c.relay.port_min = 0;
    c.relay.port_max = 0;
    c.relay.output_rtp_port = 0;
    c.channels = ["news", "sport"]
        .iter()
        .map(|id| ChannelSeed {
            id: (*id).into(),
            name: (*id).into(),
            test_pattern: true,
        })
        .collect();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_ues_join_and_zap() {
    let app = App::start(&config()).await.expect("AS starts");
    let target = app.sip_addr(Transport::Udp).unwrap();
    let sc = Scenario::from_toml(
        r#"
name = "it"
ues = 10
duration_s = 8
arrival_rate = 10.0
subscribe_share = 0.3
rtp_sockets = 8
sip_sockets = 2
[dwell]
distribution = "fixed"
mean_s = 1.5
min_s = 1.0
max_s = 2.0
[zap]
probability = 1.0
method = "mixed"
"#,
    )
    .unwrap();
    let ticks = AtomicUsize::new(0);
    let stats = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        ue_sim::run::run(&sc, target, &|_| {
            ticks.fetch_add(1, Ordering::Relaxed);
        }),
    )
    .await
    .expect("run is bounded")
    .expect("run");
    app.shutdown().await;
    eprintln!(
        "joins {}/{} zaps {}/{} regs {} failures {:?} zap_ms {:?} first_frame {:?}",
        stats.joins_ok,
        stats.joins_failed,
        stats.zaps_ok,
        stats.zaps_failed,
        stats.registrations_ok,
        stats.failures,
        stats.zap_ms,
        stats.first_frame_ms
    );
    assert_eq!(stats.joins_ok, 10);
    assert_eq!(stats.joins_failed, 0);
    assert_eq!(stats.registrations_ok, 10);
    assert!(stats.zaps_ok > 0);
    assert!(!stats.first_frame_ms.is_empty());
    assert!(!stats.first_packet_ms.is_empty());
    assert!(stats.viewers.iter().all(|v| v.packets > 0));
    assert!(ticks.load(Ordering::Relaxed) >= 8);
    assert_eq!(stats.timeline.len(), ticks.load(Ordering::Relaxed));
}
