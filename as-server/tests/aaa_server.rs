//! The embedded AAA end to end over TCP (and TLS) on 127.0.0.1: an AS-side Diameter client
//! (the driver) connects, reads profiles with UDR, writes CDRs with ACR (duplicates stored
//! once), and receives the PNR a profile change sends. Runs on a temp SQLite file, and on
//! PostgreSQL too when `TEST_POSTGRES_URL` is set (see `tests/pg-setup.sh`). Every wait is
//! bounded; nothing asserts on time.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use as_server::aaa::config::{AaaConfig, SubscriberSeed};
use as_server::aaa::{digest, Aaa, AaaHandle};
use as_server::diameter::base::{
    Capabilities, DisconnectCause, ExperimentalResult, Outcome, VendorSpecificApplicationId,
};
use as_server::diameter::driver::{self, ClientTls, DiameterClient, IncomingRequests};
use as_server::diameter::driver::{NodeConfig, PeerSpec};
use as_server::diameter::peer::PeerConfig;
use as_server::diameter::rf::{Aca, Acr, ImsInformation, RecordType};
use as_server::diameter::sh::{experimental, IptvProfile, Pna, Pnr, Uda, Udr};
use as_server::diameter::{
    dict, ApplicationId, Avp, AvpList as _, CommandCode, CommandFlags, Message, ResultCode, Time,
    VendorId,
};
use as_server::store::{CdrInsert, ProfileUpdate};

const AS_HOST: &str = "as1.iptv.example";
const REALM: &str = "iptv.example";
const AAA_HOST: &str = "aaa.iptv.example";
const WAIT: Duration = Duration::from_secs(10);

fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{tag}{}x{}x{:08x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    )
}

struct Ids {
    alice: String,
    bob: String,
    p: String,
}

fn config(url: &str, ids: &Ids, tls: bool) -> AaaConfig {
    let mut c = AaaConfig::default();
    c.diameter.listen = "127.0.0.1:0".parse().unwrap();
    c.diameter.origin_host = AAA_HOST.into();
    c.diameter.origin_realm = REALM.into();
    c.diameter.tls = tls;
    c.http.listen = Some("127.0.0.1:0".parse().unwrap());
    c.database.url = url.into();
    let seed = |identity: &str, password: &str, packages: &[&str], max, level| SubscriberSeed {
        identity: identity.into(),
        username: None,
        realm: None,
        password: Some(password.into()),
        ha1: None,
        packages: packages.iter().map(|s| (*s).to_owned()).collect(),
        max_streams: max,
        parental_level: level,
    };
    c.subscribers = vec![
        seed(&ids.alice, "alice-secret", &["basic", "sports"], 2, 12),
        seed(&ids.bob, "bob-secret", &["basic"], 1, 0),
    ];
    c.validate().unwrap();
    c
}

fn as_caps() -> Capabilities {
    Capabilities {
        origin_host: AS_HOST.into(),
        origin_realm: REALM.into(),
        host_ip_addresses: vec!["127.0.0.1".parse().unwrap()],
        vendor_id: VendorId(0),
        product_name: "iptv-as-test".into(),
        origin_state_id: Some(1),
        supported_vendor_ids: vec![VendorId::TGPP],
        acct_application_ids: vec![ApplicationId::BASE_ACCOUNTING],
        vendor_specific_application_ids: vec![VendorSpecificApplicationId::SH],
        ..Capabilities::default()
    }
}

/// The AS side: one peer, the AAA.
async fn connect(aaa: &AaaHandle, tls: Option<ClientTls>) -> (DiameterClient, IncomingRequests) {
    let mut pc = PeerConfig::new(as_caps());
    pc.remote_host = Some(AAA_HOST.into());
    pc.watchdog.tw_init = Duration::from_secs(30);
    pc.request_timeout = Duration::from_secs(10);
    let (client, incoming) = driver::spawn(NodeConfig {
        peers: vec![PeerSpec {
            config: pc,
            addr: Some(aaa.local_addr()),
            tls,
        }],
        ..NodeConfig::default()
    })
    .await
    .unwrap();
    tokio::time::timeout(WAIT, client.wait_open(1))
        .await
        .expect("CER/CEA within 10 s")
        .unwrap();
    (client, incoming)
}

async fn ask(client: &DiameterClient, m: Message) -> Message {
    tokio::time::timeout(WAIT, client.request(m))
        .await
        .expect("answer within 10 s")
        .expect("answered")
}

fn udr(identity: &str) -> Message {
    Udr::iptv_profile(unique("udr;"), AS_HOST, REALM, REALM, identity).to_message()
}

fn acr(session: &str, identity: &str, kind: RecordType, n: u32) -> Acr {
    let mut acr = Acr::new(session, AS_HOST, REALM, REALM, kind, n);
    acr.event_timestamp = Some(Time::from_unix(1_790_000_000 + u64::from(n) * 60));
    let mut ims = ImsInformation {
        user_session_id: Some(format!("call-{session}")),
        calling_party_addresses: vec![identity.into()],
        called_party_address: Some("sip:news@iptv.example".into()),
        ..ImsInformation::default()
    };
    ims.set_channel("news");
    if kind == RecordType::STOP {
        ims.set_duration_secs(120);
        ims.cause_code = Some(0);
    }
    acr.ims = Some(ims);
    acr
}

/// A bare HTTP/1.1 request (no client crate in the workspace), `Connection: close`.
async fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: aaa\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("HTTP answer within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

async fn suite(url: &str) {
    let p = unique("s");
    let ids = Ids {
        alice: format!("sip:alice-{p}@iptv.example"),
        bob: format!("sip:bob-{p}@iptv.example"),
        p,
    };
    let aaa = Aaa::start(&config(url, &ids, false)).await.unwrap();
    let (client, mut incoming) = connect(&aaa, None).await;

    // ---- Sh UDR: a known user gets the profile.
    let ans = ask(&client, udr(&ids.alice)).await;
    let uda = Uda::from_message(&ans).unwrap();
    assert_eq!(uda.outcome, Outcome::SUCCESS);
    assert_eq!(uda.origin_host, AAA_HOST);
    let profile = IptvProfile::from_user_data(&uda.user_data.expect("User-Data")).unwrap();
    assert_eq!(profile.packages, ["basic", "sports"]);
    assert_eq!(profile.max_streams, 2);
    assert_eq!(profile.parental_level, 12);
    assert_eq!(profile.sequence_number, 0);

    // ---- unknown user: Experimental-Result 5001 (vendor 10415), no User-Data.
    let ans = ask(&client, udr(&format!("sip:nobody-{}@iptv.example", ids.p))).await;
    let uda = Uda::from_message(&ans).unwrap();
    assert_eq!(
        uda.outcome,
        Outcome::Experimental(ExperimentalResult {
            vendor_id: VendorId::TGPP,
            code: experimental::DIAMETER_ERROR_USER_UNKNOWN,
        })
    );
    assert!(uda.user_data.is_none());

    // ---- a UDR without User-Identity: 5005 with Failed-AVP.
    let mut bad = udr(&ids.alice);
    bad.avps.retain(|a| a.code != dict::USER_IDENTITY.code);
    let ans = ask(&client, bad).await;
    assert_eq!(ans.result_code(), Some(ResultCode::DIAMETER_MISSING_AVP));
    let failed = ans.find(&dict::FAILED_AVP).expect("Failed-AVP");
    assert_eq!(
        failed.as_grouped().unwrap()[0].code,
        dict::USER_IDENTITY.code
    );

    // ---- unsupported command (Sh SNR) and application (credit control).
    let mut snr = Message::request(
        CommandCode::SUBSCRIBE_NOTIFICATIONS,
        ApplicationId::TGPP_SH,
        true,
    );
    snr.avps.push(Avp::utf8(&dict::SESSION_ID, unique("snr;")));
    snr.avps.push(Avp::identity(&dict::ORIGIN_HOST, AS_HOST));
    snr.avps.push(Avp::identity(&dict::ORIGIN_REALM, REALM));
    let ans = ask(&client, snr).await;
    assert_eq!(
        ans.result_code(),
        Some(ResultCode::DIAMETER_COMMAND_UNSUPPORTED)
    );
    assert!(ans.flags.contains(CommandFlags::ERROR));
    let mut ccr = Message::request(CommandCode(272), ApplicationId::CREDIT_CONTROL, true);
    ccr.avps.push(Avp::utf8(&dict::SESSION_ID, unique("ccr;")));
    ccr.avps.push(Avp::identity(&dict::ORIGIN_HOST, AS_HOST));
    ccr.avps.push(Avp::identity(&dict::ORIGIN_REALM, REALM));
    let ans = ask(&client, ccr).await;
    assert_eq!(
        ans.result_code(),
        Some(ResultCode::DIAMETER_APPLICATION_UNSUPPORTED)
    );

    // ---- Rf: START, INTERIM, STOP stored as three CDRs.
    let session = format!("{AS_HOST};{};1", ids.p);
    for (kind, n) in [
        (RecordType::START, 0),
        (RecordType::INTERIM, 1),
        (RecordType::STOP, 2),
    ] {
        let ans = ask(&client, acr(&session, &ids.alice, kind, n).to_message()).await;
        let aca = Aca::from_message(&ans).unwrap();
        assert_eq!(aca.result_code, ResultCode::DIAMETER_SUCCESS);
        assert_eq!((aca.record_type, aca.record_number), (kind, n));
        assert_eq!(aca.session_id, session);
    }
    let cdrs = aaa.store().cdrs_of_session(&session).await.unwrap();
    let kinds: Vec<(&str, u32)> = cdrs
        .iter()
        .map(|c| (c.record_type.as_str(), c.record_number))
        .collect();
    assert_eq!(kinds, [("START", 0), ("INTERIM", 1), ("STOP", 2)]);
    assert!(cdrs
        .iter()
        .all(|c| c.subscriber.as_deref() == Some(ids.alice.as_str())
            && c.channel.as_deref() == Some("news")));
    assert_eq!(cdrs[2].duration_secs, Some(120));
    assert_eq!(cdrs[2].cause_code, Some(0));
    assert_eq!(cdrs[0].event_ms, Some(1_790_000_000_000));
    assert_eq!(cdrs[0].duration_secs, None);

    // ---- the STOP again with the T flag (a retransmission after failover, a new
    // End-to-End id so the router's duplicate cache does not answer it): 2001, stored once.
    let mut again = acr(&session, &ids.alice, RecordType::STOP, 2).to_message();
    again.flags = again.flags | CommandFlags::RETRANSMIT;
    let ans = ask(&client, again).await;
    let aca = Aca::from_message(&ans).unwrap();
    assert_eq!(aca.result_code, ResultCode::DIAMETER_SUCCESS);
    assert_eq!((aca.record_type, aca.record_number), (RecordType::STOP, 2));
    assert_eq!(
        aca_count(&aaa, &session).await,
        3,
        "a duplicate ACR must not add a CDR"
    );
    let st = aaa.stats();
    assert_eq!(st.acr_stored, 3);
    assert_eq!(st.acr_duplicates, 1);
    assert_eq!(st.udr_profiles, 1);
    assert_eq!(st.udr_unknown, 1);
    // The store says the same directly.
    assert_eq!(
        aaa.store().insert_cdr(&cdrs[1]).await.unwrap(),
        CdrInsert::Duplicate
    );

    // ---- profile change through the store API of the handle: the AS receives a PNR
    // with the new profile and answers PNA 2001.
    let as_side = tokio::spawn(async move {
        let req = tokio::time::timeout(WAIT, incoming.recv())
            .await
            .expect("PNR within 10 s")
            .expect("driver running");
        let pnr = Pnr::from_message(&req.request).expect("a PNR");
        let profile = IptvProfile::from_user_data(&pnr.user_data).unwrap();
        let pna = Pna {
            session_id: pnr.session_id.clone(),
            outcome: Outcome::SUCCESS,
            origin_host: AS_HOST.into(),
            origin_realm: REALM.into(),
        }
        .answer(&req.request);
        req.answer(pna);
        (pnr, profile, incoming)
    });
    let change = aaa
        .update_profile(
            &ids.alice,
            &ProfileUpdate {
                packages: Some(vec!["basic".into()]),
                max_streams: Some(1),
                parental_level: None,
            },
        )
        .await
        .unwrap();
    let (pnr, pushed_profile, mut incoming) =
        tokio::time::timeout(WAIT, as_side).await.unwrap().unwrap();
    assert_eq!(change.profile.version, 1);
    assert_eq!(change.pushed.len(), 1);
    assert!(change.pushed[0].ok, "{:?}", change.pushed);
    assert_eq!(change.pushed[0].peer, AS_HOST);
    assert_eq!(pnr.destination_host, AS_HOST);
    assert_eq!(pnr.destination_realm, REALM);
    assert_eq!(pnr.origin_host, AAA_HOST);
    assert_eq!(
        pnr.user_identity.public_identity.as_deref(),
        Some(ids.alice.as_str())
    );
    assert_eq!(pushed_profile.packages, ["basic"]);
    assert_eq!(pushed_profile.max_streams, 1);
    assert_eq!(pushed_profile.parental_level, 12);
    assert_eq!(pushed_profile.sequence_number, 1);
    assert_eq!(aaa.stats().pna_success, 1);
    // A UDR now reads the new profile.
    let uda = Uda::from_message(&ask(&client, udr(&ids.alice)).await).unwrap();
    assert_eq!(
        IptvProfile::from_user_data(&uda.user_data.unwrap()).unwrap(),
        pushed_profile
    );

    // ---- the same through the operator HTTP API (bob), the AS again answering PNA.
    let as_side = tokio::spawn(async move {
        let req = tokio::time::timeout(WAIT, incoming.recv())
            .await
            .expect("PNR within 10 s")
            .expect("driver running");
        let pnr = Pnr::from_message(&req.request).expect("a PNR");
        let pna = Pna {
            session_id: pnr.session_id.clone(),
            outcome: Outcome::SUCCESS,
            origin_host: AS_HOST.into(),
            origin_realm: REALM.into(),
        }
        .answer(&req.request);
        req.answer(pna);
        IptvProfile::from_user_data(&pnr.user_data).unwrap()
    });
    let http_addr = aaa.http_addr().unwrap();
    let path = format!(
        "/api/subscribers/{}/profile",
        ids.bob.replace(':', "%3A").replace('@', "%40")
    );
    let (status, body) = http(http_addr, "POST", &path, r#"{"parental_level": 16}"#).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["profile"]["parental_level"], 16);
    assert_eq!(v["profile"]["version"], 1);
    assert_eq!(v["pushed"][0]["ok"], true, "{body}");
    let bob_profile = tokio::time::timeout(WAIT, as_side).await.unwrap().unwrap();
    assert_eq!(bob_profile.parental_level, 16);
    assert_eq!(bob_profile.packages, ["basic"]);
    assert_eq!(aaa.stats().pna_success, 2);
    // Unknown subscriber and bad values.
    let (status, _) = http(
        http_addr,
        "POST",
        "/api/subscribers/sip%3Anobody%40x/profile",
        "{}",
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = http(http_addr, "POST", &path, r#"{"parental_level": 30}"#).await;
    assert_eq!(status, 400);
    let (status, body) = http(http_addr, "GET", "/metrics", "").await;
    assert_eq!(status, 200);
    assert!(body.contains("aaa_acr_duplicates_total 1"), "{body}");
    assert!(body.contains("aaa_pna_success_total 2"), "{body}");

    // ---- credentials for REGISTER digest: HA1 stored, never the password.
    let sub = aaa
        .store()
        .get_subscriber_by_username(&format!("alice-{}@iptv.example", ids.p), REALM)
        .await
        .unwrap();
    assert_eq!(sub.identity, ids.alice);
    assert_eq!(sub.ha1, digest::ha1(&sub.username, REALM, "alice-secret"));
    assert!(!sub.ha1.contains("alice-secret"));

    tokio::time::timeout(WAIT, client.stop(DisconnectCause::REBOOTING))
        .await
        .expect("DPA within 10 s");
    aaa.shutdown().await;

    // ---- a restart over the same database keeps operator changes (seeding only adds).
    if !url.contains(":memory:") {
        let aaa = Aaa::start(&config(url, &ids, false)).await.unwrap();
        let p = aaa.store().get_profile(&ids.alice).await.unwrap();
        assert_eq!((p.version, p.max_streams), (1, 1));
        aaa.shutdown().await;
    }
}

async fn aca_count(aaa: &AaaHandle, session: &str) -> usize {
    aaa.store().cdrs_of_session(session).await.unwrap().len()
}

#[tokio::test]
async fn sqlite_suite() {
    let path = std::env::temp_dir().join(format!("{}.db", unique("aaa-test-")));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    suite(&url).await;
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
    }
}

#[tokio::test]
async fn postgres_suite() {
    let Ok(url) = std::env::var("TEST_POSTGRES_URL") else {
        eprintln!("TEST_POSTGRES_URL not set; skipping the PostgreSQL run");
        return;
    };
    suite(&url).await;
}

/// Diameter over TLS (RFC 6733 section 13, TLS before CER): the AS trusts the AAA's
/// certificate and reads a profile.
#[tokio::test]
async fn tls_udr() {
    let p = unique("t");
    let ids = Ids {
        alice: format!("sip:alice-{p}@iptv.example"),
        bob: format!("sip:bob-{p}@iptv.example"),
        p,
    };
    let mut cfg = config("sqlite::memory:", &ids, true);
    cfg.http.listen = None;
    let aaa = Aaa::start(&cfg).await.unwrap();
    assert_eq!(aaa.http_addr(), None);
    let cert = aaa.tls_certificate().expect("TLS on").clone();
    let tls = ClientTls {
        config: as_server::driver::tls::client_config([cert]).unwrap(),
        server_name: "localhost".try_into().unwrap(),
    };
    let (client, _incoming) = connect(&aaa, Some(tls)).await;
    let uda = Uda::from_message(&ask(&client, udr(&ids.bob)).await).unwrap();
    assert_eq!(uda.outcome, Outcome::SUCCESS);
    let profile = IptvProfile::from_user_data(&uda.user_data.unwrap()).unwrap();
    assert_eq!((profile.max_streams, profile.parental_level), (1, 0));
    assert_eq!(aaa.open_peers(), 1);
    tokio::time::timeout(WAIT, client.stop(DisconnectCause::REBOOTING))
        .await
        .expect("DPA within 10 s");
    aaa.shutdown().await;
}

/// The binary: `as-server aaa --config examples/aaa.toml` (ports and store overridden by
/// flags) serves the example's subscribers; SIGTERM stops it cleanly. The child is killed
/// by PID on any failure (kill_on_drop).
#[tokio::test]
async fn binary_subcommand() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/aaa.toml");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_as-server"))
        .args([
            "aaa",
            "--config",
            example,
            "--listen",
            "127.0.0.1:0",
            "--no-http",
            "--database-url",
            "sqlite::memory:",
        ])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr: std::net::SocketAddr = tokio::time::timeout(WAIT, async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if let Some(rest) = l.strip_prefix("Diameter TCP listening on ") {
                return rest.split(' ').next().unwrap().parse().unwrap();
            }
        }
        panic!("no listening line");
    })
    .await
    .expect("the AAA starts within 10 s");

    let mut pc = PeerConfig::new(as_caps());
    pc.remote_host = Some(AAA_HOST.into());
    let (client, _in) = driver::spawn(NodeConfig {
        peers: vec![PeerSpec {
            config: pc,
            addr: Some(addr),
            tls: None,
        }],
        ..NodeConfig::default()
    })
    .await
    .unwrap();
    tokio::time::timeout(WAIT, client.wait_open(1))
        .await
        .expect("CER/CEA within 10 s")
        .unwrap();
    let uda = Uda::from_message(&ask(&client, udr("sip:carol@iptv.example")).await).unwrap();
    let p = IptvProfile::from_user_data(&uda.user_data.expect("profile")).unwrap();
    assert_eq!(p.packages, ["basic", "sports", "movies", "news"]);
    assert_eq!((p.max_streams, p.parental_level), (4, 18));
    client.stop(DisconnectCause::REBOOTING).await;

    // SIGTERM (by PID): a clean exit.
    let pid = child.id().expect("running");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("exits within 10 s after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
}
