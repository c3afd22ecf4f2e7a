//! Throughput of the embedded AAA over one TCP connection (not a CI test: `#[ignore]`).
//!
//! ```text
//! cargo test --release -p as-server --test aaa_load -- --ignored --nocapture
//! TEST_POSTGRES_URL=postgres://... cargo test --release ... (adds a PostgreSQL run)
//! AAA_LOAD_N=50000 (requests per kind, default 20000), AAA_LOAD_WINDOW=128 (in flight)
//! ```
//!
//! Prints UDR/UDA and ACR/ACA per second (each ACR is one `INSERT ... ON CONFLICT` into the
//! CDR table) with the window of requests in flight, and checks every answer is 2001.

use std::sync::Arc;
use std::time::{Duration, Instant};

use as_server::aaa::config::{AaaConfig, SubscriberSeed};
use as_server::aaa::Aaa;
use as_server::diameter::base::{Capabilities, DisconnectCause, VendorSpecificApplicationId};
use as_server::diameter::driver::{self, DiameterClient, NodeConfig, PeerSpec};
use as_server::diameter::peer::PeerConfig;
use as_server::diameter::rf::{Acr, ImsInformation, RecordType};
use as_server::diameter::sh::Udr;
use as_server::diameter::{ApplicationId, Message, ResultCode, VendorId};
use tokio::sync::Semaphore;

#[expect(clippy::disallowed_methods)]
fn now() -> Instant {
    Instant::now()
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn success(m: &Message) -> bool {
    m.result_code() == Some(ResultCode::DIAMETER_SUCCESS)
}

async fn run(
    client: &DiameterClient,
    n: usize,
    window: usize,
    make: impl Fn(usize) -> Message,
) -> f64 {
    let sem = Arc::new(Semaphore::new(window));
    let start = now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let c = client.clone();
        let m = make(i);
        tasks.push(tokio::spawn(async move {
            let r = tokio::time::timeout(Duration::from_secs(30), c.request(m)).await;
            drop(permit);
            matches!(r, Ok(Ok(a)) if success(&a))
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() {
            ok += 1;
        }
    }
    let secs = now().duration_since(start).as_secs_f64();
    assert_eq!(ok, n, "every request answered 2001");
    n as f64 / secs
}

async fn load(url: &str, label: &str) {
    let n = env("AAA_LOAD_N", 20_000);
    let window = env("AAA_LOAD_WINDOW", 128);
    let tag = format!("{}x{:08x}", std::process::id(), rand::random::<u32>());
    let identity = format!("sip:load-{tag}@iptv.example");
    let mut cfg = AaaConfig::default();
    cfg.diameter.listen = "127.0.0.1:0".parse().unwrap();
    cfg.http.listen = None;
    cfg.database.url = url.into();
    cfg.subscribers = vec![SubscriberSeed {
        identity: identity.clone(),
        username: None,
        realm: None,
        password: Some("pw".into()),
        ha1: None,
        packages: vec!["basic".into(), "sports".into()],
        max_streams: 2,
        parental_level: 12,
    }];
    let aaa = Aaa::start(&cfg).await.unwrap();
    let mut pc = PeerConfig::new(Capabilities {
        origin_host: "as-load.iptv.example".into(),
        origin_realm: "iptv.example".into(),
        host_ip_addresses: vec!["127.0.0.1".parse().unwrap()],
        product_name: "load".into(),
        supported_vendor_ids: vec![VendorId::TGPP],
        acct_application_ids: vec![ApplicationId::BASE_ACCOUNTING],
        vendor_specific_application_ids: vec![VendorSpecificApplicationId::SH],
        ..Capabilities::default()
    });
    pc.remote_host = Some(aaa.origin_host().to_owned());
    pc.request_timeout = Duration::from_secs(30);
    let (client, _in) = driver::spawn(NodeConfig {
        peers: vec![PeerSpec {
            config: pc,
            addr: Some(aaa.local_addr()),
            tls: None,
        }],
        ..NodeConfig::default()
    })
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(10), client.wait_open(1))
        .await
        .unwrap()
        .unwrap();
    let udr_rate = run(&client, n, window, |i| {
        Udr::iptv_profile(
            format!("as-load;{tag};{i}"),
            "as-load.iptv.example",
            "iptv.example",
            "iptv.example",
            &*identity,
        )
        .to_message()
    })
    .await;
    let acr_rate = run(&client, n, window, |i| {
        let mut a = Acr::new(
            format!("as-load;{tag};acct{}", i / 2),
            "as-load.iptv.example",
            "iptv.example",
            "iptv.example",
            if i % 2 == 0 {
                RecordType::START
            } else {
                RecordType::STOP
            },
            (i % 2) as u32,
        );
        let mut ims = ImsInformation {
            calling_party_addresses: vec![identity.clone()],
            ..ImsInformation::default()
        };
        ims.set_channel("news");
        a.ims = Some(ims);
        a.to_message()
    })
    .await;
    let st = aaa.stats();
    assert_eq!(st.acr_stored as usize, n);
    println!(
        "aaa load ({label}, one TCP connection, {window} in flight, {n} each): \
         UDR/UDA {udr_rate:.0}/s, ACR/ACA (stored CDR) {acr_rate:.0}/s"
    );
    client.stop(DisconnectCause::REBOOTING).await;
    aaa.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load measurement; run with --release -- --ignored --nocapture"]
async fn aaa_throughput() {
    let path = std::env::temp_dir().join(format!(
        "aaa-load-{}-{:08x}.db",
        std::process::id(),
        rand::random::<u32>()
    ));
    load(
        &format!("sqlite://{}?mode=rwc", path.display()),
        "SQLite file",
    )
    .await;
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
    }
    if let Ok(url) = std::env::var("TEST_POSTGRES_URL") {
        load(&url, "PostgreSQL").await;
    }
}
