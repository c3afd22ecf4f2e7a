//! Interop with freeDiameter (Debian `freediameterd` 1.2.1) as a relay agent between two of
//! our peers: the AS side (client) and a tiny in-test server (answers UDR and ACR). Checks
//! CER/CEA and DWR/DWA with freeDiameter and requests routed through it (Route-Record added
//! by the relay).
//!
//! freeDiameter will not start with only loopback addresses, so the test body runs in its own
//! network namespace (`unshare -n`, needs root) where `lo` also carries 192.0.2.1
//! (TEST-NET-1; nothing can leave the namespace). The outer test re-executes this test binary
//! inside the namespace with `DIAMETER_FD_INNER=1`. When freeDiameter, `unshare` or root is
//! missing the test is skipped with a message, unless `CI` is set (then it fails).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use as_server::diameter::base::{
    Capabilities, DisconnectCause, Outcome, VendorSpecificApplicationId,
};
use as_server::diameter::driver::{self, DiameterClient, NodeConfig, PeerSpec};
use as_server::diameter::peer::PeerConfig;
use as_server::diameter::rf::{Aca, Acr, ImsInformation, RecordType};
use as_server::diameter::sh::{Uda, Udr};
use as_server::diameter::watchdog::WatchdogState;
use as_server::diameter::{
    dict, ApplicationId, AvpList, CommandCode, Message, ResultCode, Time, VendorId,
};
use bytes::Bytes;

const ADDR: &str = "192.0.2.1";
const INNER_ENV: &str = "DIAMETER_FD_INNER";

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(bin))
            .find(|f| f.is_file())
    })
}

fn skip(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("freeDiameter interop test cannot run: {why}");
    }
    eprintln!("SKIPPED freediameter_relay: {why}");
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Wait for `child` at most `limit`; kill it (by PID) when it overstays.
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let step = Duration::from_millis(50);
    let mut waited = Duration::ZERO;
    while waited < limit {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(step);
        waited += step;
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn freediameter_relay() {
    if std::env::var_os(INNER_ENV).is_some() {
        return;
    }
    if which("freeDiameterd").is_none() {
        return skip(
            "freeDiameterd not installed (apt-get install freediameter freediameter-extensions)",
        );
    }
    if which("unshare").is_none() || which("ip").is_none() {
        return skip("unshare/ip not available");
    }
    if !is_root() {
        return skip("needs root for a private network namespace");
    }
    let exe = std::env::current_exe().unwrap();
    let script = format!(
        "ip link set lo up && ip addr add {ADDR}/32 dev lo && \
         exec \"$0\" freediameter_inner --exact --nocapture --test-threads=1"
    );
    let mut child = Command::new("unshare")
        .args(["-n", "sh", "-c", &script])
        .arg(&exe)
        .env(INNER_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read output in threads so a full pipe cannot block the child.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let status = wait_bounded(&mut child, Duration::from_secs(90));
    let out = t_out.join().unwrap_or_default();
    let err = t_err.join().unwrap_or_default();
    eprintln!("--- inner stdout ---\n{out}\n--- inner stderr ---\n{err}");
    let status = status.expect("inner test finished within 90 s");
    if status.code() == Some(1) && err.contains("unshare failed") {
        return skip("unshare -n not permitted here");
    }
    assert!(status.success(), "inner test failed: {status}");
    assert!(
        out.contains("1 passed"),
        "the inner test did not run: {out}"
    );
}

/// Kills freeDiameter (by PID) when dropped and shows its log on failure.
struct FreeDiameter {
    child: Child,
    log: PathBuf,
}

impl Drop for FreeDiameter {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        if wait_bounded(&mut self.child, Duration::from_secs(5)).is_none() {
            eprintln!("freeDiameter killed after 5 s");
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            eprintln!("--- freeDiameter log (tail) ---");
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

fn write_config(dir: &Path) {
    let mut params = rcgen::CertificateParams::new(vec!["relay.example.net".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "relay.example.net");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    let conf = include_str!("freediameter/freeDiameter.conf")
        .replace("@DIR@", &dir.display().to_string())
        .replace("@ADDR@", ADDR);
    std::fs::write(dir.join("freeDiameter.conf"), conf).unwrap();
    std::fs::write(
        dir.join("acl_wl.conf"),
        include_str!("freediameter/acl_wl.conf"),
    )
    .unwrap();
}

fn start_freediameter(dir: &Path) -> FreeDiameter {
    let log = dir.join("freeDiameter.log");
    let f = std::fs::File::create(&log).unwrap();
    let child = Command::new("freeDiameterd")
        .arg("-c")
        .arg(dir.join("freeDiameter.conf"))
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .unwrap();
    FreeDiameter { child, log }
}

fn caps(host: &str) -> Capabilities {
    Capabilities {
        origin_host: host.into(),
        origin_realm: "example.net".into(),
        host_ip_addresses: vec![ADDR.parse().unwrap()],
        vendor_id: VendorId(0),
        product_name: "iptv-as".into(),
        origin_state_id: Some(7),
        supported_vendor_ids: vec![VendorId::TGPP],
        acct_application_ids: vec![ApplicationId::BASE_ACCOUNTING],
        vendor_specific_application_ids: vec![VendorSpecificApplicationId::SH],
        ..Capabilities::default()
    }
}

async fn node(host: &str, relay: SocketAddr) -> (DiameterClient, driver::IncomingRequests) {
    let mut c = PeerConfig::new(caps(host));
    c.remote_host = Some("relay.example.net".into());
    c.watchdog.tw_init = Duration::from_secs(2);
    c.watchdog.jitter = Duration::from_millis(500);
    c.reconnect_min = Duration::from_millis(200);
    c.reconnect_max = Duration::from_secs(2);
    driver::spawn(NodeConfig {
        peers: vec![PeerSpec {
            config: c,
            addr: Some(relay),
            tls: None,
        }],
        ..NodeConfig::default()
    })
    .await
    .unwrap()
}

fn udr() -> Message {
    let mut u = Udr::iptv_profile(
        "as.example.net;1;udr",
        "as.example.net",
        "example.net",
        "example.net",
        "sip:alice@example.net",
    );
    u.destination_host = Some("hss.example.net".into());
    u.to_message()
}

fn acr() -> Message {
    let mut a = Acr::new(
        "as.example.net;1;acr",
        "as.example.net",
        "example.net",
        "example.net",
        RecordType::START,
        0,
    );
    a.event_timestamp = Some(Time::from_unix(1_790_000_000));
    let mut ims = ImsInformation {
        calling_party_addresses: vec!["sip:alice@example.net".into()],
        called_party_address: Some("sip:news@example.net".into()),
        ..ImsInformation::default()
    };
    ims.set_channel("news");
    a.ims = Some(ims);
    a.to_message()
}

/// The in-test server: reads UDR/ACR with the typed parsers, answers UDA/ACA with 2001 and
/// reports what it saw.
fn serve(
    mut incoming: driver::IncomingRequests,
    seen: tokio::sync::mpsc::UnboundedSender<Message>,
) {
    tokio::spawn(async move {
        while let Some(req) = incoming.recv().await {
            let r = req.request.clone();
            let answer = if r.code == CommandCode::ACCOUNTING {
                let acr = Acr::from_message(&r).expect("ACR parses after the relay");
                Aca::success(&acr, "hss.example.net", "example.net").answer(&r)
            } else {
                let udr = Udr::from_message(&r).expect("UDR parses after the relay");
                Uda {
                    session_id: udr.session_id,
                    outcome: Outcome::SUCCESS,
                    origin_host: "hss.example.net".into(),
                    origin_realm: "example.net".into(),
                    user_data: Some(Bytes::from_static(b"<Sh-Data/>")),
                }
                .answer(&r)
            };
            let _ = seen.send(r);
            req.answer(answer);
        }
    });
}

#[test]
fn freediameter_inner() {
    if std::env::var_os(INNER_ENV).is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("fd-interop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    write_config(&dir);
    let fd = start_freediameter(&dir);
    let relay: SocketAddr = format!("{ADDR}:3868").parse().unwrap();
    // Wait (bounded) until freeDiameter listens.
    let mut up = false;
    for _ in 0..150 {
        if std::net::TcpStream::connect_timeout(&relay, Duration::from_millis(100)).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(up, "freeDiameter did not listen on {relay} within 15 s");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let t = |s| Duration::from_secs(s);
        let (hss, hss_in) = node("hss.example.net", relay).await;
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        serve(hss_in, seen_tx);
        let (as_client, _as_in) = node("as.example.net", relay).await;

        // CER/CEA with freeDiameter on both sides.
        tokio::time::timeout(t(20), hss.wait_open(1))
            .await
            .expect("hss: CER/CEA with freeDiameter")
            .unwrap();
        tokio::time::timeout(t(20), as_client.wait_open(1))
            .await
            .expect("as: CER/CEA with freeDiameter")
            .unwrap();
        let info = &as_client.peers()[0];
        assert_eq!(info.remote_host.as_deref(), Some("relay.example.net"));

        // UDR routed through the relay to the hss (Destination-Host).
        let ans = tokio::time::timeout(t(10), as_client.request(udr()))
            .await
            .expect("UDA within 10 s")
            .expect("UDA");
        assert_eq!(ans.result_code(), Some(ResultCode::DIAMETER_SUCCESS));
        assert_eq!(ans.code, CommandCode::USER_DATA);
        let uda = Uda::from_message(&ans).expect("UDA parses after the relay");
        assert_eq!(uda.user_data.as_deref(), Some(&b"<Sh-Data/>"[..]));
        assert_eq!(
            ans.find(&dict::ORIGIN_HOST).and_then(|a| a.as_str().ok()),
            Some("hss.example.net")
        );
        let got = seen.recv().await.unwrap();
        let rr: Vec<&str> = got
            .all(&dict::ROUTE_RECORD)
            .filter_map(|a| a.as_str().ok())
            .collect();
        assert_eq!(rr, vec!["as.example.net"], "relay added Route-Record");

        // ACR (base accounting) routed by realm.
        let ans = tokio::time::timeout(t(10), as_client.request(acr()))
            .await
            .expect("ACA within 10 s")
            .expect("ACA");
        assert_eq!(ans.result_code(), Some(ResultCode::DIAMETER_SUCCESS));
        assert_eq!(ans.code, CommandCode::ACCOUNTING);
        let aca = Aca::from_message(&ans).expect("ACA parses after the relay");
        assert_eq!(aca.record_type, RecordType::START);
        assert_eq!(seen.recv().await.unwrap().code, CommandCode::ACCOUNTING);

        // DWR/DWA: idle for several Tw (2 s ± 0.5 s); the watchdog stays OKAY on DWAs.
        tokio::time::sleep(t(7)).await;
        for (name, c) in [("as", &as_client), ("hss", &hss)] {
            let p = &c.peers()[0];
            assert_eq!(p.watchdog, WatchdogState::Okay, "{name}: {p:?}");
            assert!(p.dwas_received >= 2, "{name}: {p:?}");
        }

        // DPR/DPA with freeDiameter.
        tokio::time::timeout(t(10), as_client.stop(DisconnectCause::REBOOTING))
            .await
            .expect("as: DPA within 10 s");
        tokio::time::timeout(t(10), hss.stop(DisconnectCause::REBOOTING))
            .await
            .expect("hss: DPA within 10 s");
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    drop(fd);
    let log = std::fs::read_to_string(dir.join("freeDiameter.log")).unwrap_or_default();
    let _ = std::io::stderr().write_all(
        log.lines()
            .filter(|l| l.contains("as.example.net") || l.contains("hss.example.net"))
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
            .as_bytes(),
    );
    let _ = std::fs::remove_dir_all(&dir);
}
