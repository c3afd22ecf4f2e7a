//! The AS with Diameter AAA end to end on 127.0.0.1: the embedded AAA (`Aaa::start`) and the
//! whole AS (`App::start`) share a temp SQLite file (the AAA's subscribers are the AS's
//! REGISTER credentials); UEs are raw SIP over UDP. Checks Sh authorisation of joins and
//! zaps (packages, stream limit, unknown subscriber), Rf START/STOP with durations, the PNR
//! that revokes a channel (BYE with Reason), accounting through an AAA outage (fail-open,
//! durable outbox, nothing lost, nothing twice), and REGISTER digest. Every wait is bounded;
//! nothing asserts on time.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use as_server::aaa::config::{AaaConfig, SubscriberSeed};
use as_server::aaa::{digest, Aaa, AaaHandle};
use as_server::config::{ChannelSeed, Config};
use as_server::service::aaa::Policy;
use as_server::service::app::App;
use as_server::sip::transaction::Transport;
use as_server::sip::{HeaderName, Message, Request, Response};
use as_server::store::ProfileUpdate;
use tokio::net::UdpSocket;
use tokio::time::timeout;

mod common;
use common::offer;

const AS_HOST: &str = "as1.iptv.example";
const REALM: &str = "iptv.example";
const WAIT: Duration = Duration::from_secs(10);

fn temp_db() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "aaa-as-{}-{}-{:08x}.db",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    ));
    format!("sqlite://{}?mode=rwc", path.display())
}

fn seed(user: &str, packages: &[&str], max: u32) -> SubscriberSeed {
    SubscriberSeed {
        identity: format!("sip:{user}@127.0.0.1"),
        username: None,
        realm: None,
        password: Some(format!("{user}-secret")),
        ha1: None,
        packages: packages.iter().map(|s| (*s).to_owned()).collect(),
        max_streams: max,
        parental_level: 0,
    }
}

fn aaa_config(url: &str, listen: SocketAddr, subs: Vec<SubscriberSeed>) -> AaaConfig {
    let mut c = AaaConfig::default();
    c.diameter.listen = listen;
    c.diameter.origin_host = "aaa.iptv.example".into();
    c.diameter.origin_realm = REALM.into();
    c.http.listen = None;
    c.database.url = url.into();
    c.digest.realm = REALM.into();
    c.subscribers = subs;
    c.validate().unwrap();
    c
}

fn as_config(url: &str, aaa: SocketAddr, policy: Policy) -> Config {
    let mut c = Config::default();
    c.sip.udp = Some("127.0.0.1:0".parse().unwrap());
    c.sip.tcp = None;
    c.sip.tls = None;
    c.http.listen = None;
    c.database.url = url.into();
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
    c.aaa.peer = Some(aaa);
    c.aaa.origin_host = AS_HOST.into();
    c.aaa.origin_realm = REALM.into();
    c.aaa.destination_realm = REALM.into();
    c.aaa.realm = REALM.into();
    c.aaa.policy = policy;
    c.aaa.request_timeout_ms = 1000;
    c
}

/// The embedded AAA on a fresh port, then the AS pointed at it, the Diameter peer open.
async fn boot(
    subs: Vec<SubscriberSeed>,
    policy: Policy,
    register_auth: bool,
) -> (AaaHandle, App, String) {
    let url = temp_db();
    let aaa = Aaa::start(&aaa_config(&url, "127.0.0.1:0".parse().unwrap(), subs))
        .await
        .unwrap();
    let mut cfg = as_config(&url, aaa.local_addr(), policy);
    cfg.aaa.register_auth = register_auth;
    let app = App::start(&cfg).await.expect("AS starts");
    let client = app.service.aaa().expect("AAA enabled").diameter().clone();
    timeout(WAIT, client.wait_open(1))
        .await
        .expect("CER/CEA within 10 s")
        .unwrap();
    (aaa, app, url)
}

/// A UE: one UDP socket for SIP; requests from the AS are queued apart from responses.
struct Ue {
    sock: UdpSocket,
    addr: SocketAddr,
    as_addr: SocketAddr,
    user: String,
    requests: VecDeque<Request>,
    branch: u32,
    /// Where the relay sends this UE's RTP (kept open, never read).
    media: UdpSocket,
}

struct Joined {
    call_id: String,
    tag: String,
    target: String,
}

impl Ue {
    async fn new(user: &str, app: &App) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        Self {
            addr: sock.local_addr().unwrap(),
            sock,
            as_addr: app.sip_addr(Transport::Udp).unwrap(),
            user: user.into(),
            requests: VecDeque::new(),
            branch: 0,
            media: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        }
    }

    async fn send(&mut self, head: &str, body: &str) {
        self.branch += 1;
        let (u, a, b) = (&self.user, self.addr, self.branch);
        let msg = format!(
            "{head}Via: SIP/2.0/UDP {a};branch=z9hG4bK{u}x{b}\r\nMax-Forwards: 70\r\n\
             From: <sip:{u}@127.0.0.1>;tag={u}-tag\r\nContact: <sip:{u}@{a}>\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.sock
            .send_to(msg.as_bytes(), self.as_addr)
            .await
            .unwrap();
    }

    async fn recv(&mut self) -> Option<Message> {
        let mut buf = vec![0u8; 65536];
        let (n, _) = timeout(WAIT, self.sock.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some(Message::parse(&buf[..n]).expect("the AS sends valid SIP"))
    }

    async fn response(&mut self, call_id: &str, method: &str) -> Response {
        let wait = async {
            loop {
                match self.recv().await? {
                    Message::Response(r) => {
                        if r.call_id().unwrap() == call_id
                            && r.cseq().unwrap().method.as_str() == method
                            && r.status.is_final()
                        {
                            return Some(r);
                        }
                    }
                    Message::Request(q) => self.requests.push_back(q),
                }
            }
        };
        timeout(WAIT, wait)
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no response to {method} {call_id}"))
    }

    /// The next request from the AS with `method`, answered 200.
    async fn request(&mut self, method: &str) -> Request {
        let wait = async {
            loop {
                if let Some(i) = self
                    .requests
                    .iter()
                    .position(|r| r.method.as_str() == method)
                {
                    return self.requests.remove(i);
                }
                if let Message::Request(q) = self.recv().await? {
                    self.requests.push_back(q);
                }
            }
        };
        let r = timeout(WAIT, wait)
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no {method} from the AS"));
        let resp = Response::for_request(&r, as_server::sip::StatusCode::OK, "OK");
        self.sock
            .send_to(&resp.to_bytes(), self.as_addr)
            .await
            .unwrap();
        r
    }

    async fn invite(
        &mut self,
        target: &str,
        call_id: &str,
        cseq: u32,
        to_tag: Option<&str>,
    ) -> Response {
        self.send_invite(target, call_id, cseq, to_tag).await;
        self.response(call_id, "INVITE").await
    }

    async fn send_invite(&mut self, target: &str, call_id: &str, cseq: u32, to_tag: Option<&str>) {
        let port = self.media.local_addr().unwrap().port();
        let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
        self.send(
            &format!(
                "INVITE {target} SIP/2.0\r\nTo: <{target}>{to_tag}\r\nCall-ID: {call_id}\r\n\
                 CSeq: {cseq} INVITE\r\nContent-Type: application/sdp\r\n"
            ),
            &offer(port, "h264", "recvonly").replace('\n', "\r\n"),
        )
        .await;
    }

    /// Joins `channel`: 200 expected, ACKed.
    async fn join(&mut self, channel: &str, call_id: &str) -> Joined {
        let r = self
            .invite(&format!("sip:{channel}@127.0.0.1"), call_id, 1, None)
            .await;
        assert_eq!(
            r.status.0, 200,
            "join {channel}: {} {}",
            r.status.0, r.reason
        );
        self.confirm(&r, call_id).await
    }

    /// ACKs the 200 `r` of `call_id`.
    async fn confirm(&mut self, r: &Response, call_id: &str) -> Joined {
        let tag = r.to().unwrap().tag().unwrap().to_owned();
        let target = r.contact().unwrap().unwrap().uri.to_string();
        self.send(
            &format!(
                "ACK {target} SIP/2.0\r\nTo: <{target}>;tag={tag}\r\nCall-ID: {call_id}\r\n\
                 CSeq: 1 ACK\r\n"
            ),
            "",
        )
        .await;
        Joined {
            call_id: call_id.into(),
            tag,
            target,
        }
    }

    async fn leave(&mut self, j: &Joined, cseq: u32) {
        // A session joined and left within the same millisecond lasts 0 started seconds;
        // the STOP checks below want a positive duration, so every session lasts a little.
        tokio::time::sleep(Duration::from_millis(3)).await;
        let (t, tag, c) = (&j.target, &j.tag, &j.call_id);
        self.send(
            &format!(
                "BYE {t} SIP/2.0\r\nTo: <{t}>;tag={tag}\r\nCall-ID: {c}\r\nCSeq: {cseq} BYE\r\n"
            ),
            "",
        )
        .await;
        let r = self.response(c, "BYE").await;
        assert_eq!(r.status.0, 200);
    }

    async fn register(&mut self, call_id: &str, cseq: u32, auth: Option<&str>) -> Response {
        let u = self.user.clone();
        let auth = auth
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        self.send(
            &format!(
                "REGISTER sip:127.0.0.1 SIP/2.0\r\nTo: <sip:{u}@127.0.0.1>\r\nCall-ID: {call_id}\r\n\
                 CSeq: {cseq} REGISTER\r\nExpires: 600\r\n{auth}"
            ),
            "",
        )
        .await;
        self.response(call_id, "REGISTER").await
    }
}

fn acct_id(j: &Joined) -> String {
    format!("{AS_HOST};{}/{}", j.call_id, j.tag)
}

/// Waits (bounded) until the AAA has the session's START and STOP; returns the STOP's
/// duration.
async fn start_and_stop(aaa: &AaaHandle, j: &Joined) -> i64 {
    let id = acct_id(j);
    for _ in 0..200 {
        let cdrs = aaa.store().cdrs_of_session(&id).await.unwrap();
        if cdrs.len() == 2 {
            assert_eq!(cdrs[0].record_type, "START");
            assert_eq!(cdrs[0].record_number, 0);
            assert_eq!(cdrs[1].record_type, "STOP");
            assert_eq!(cdrs[1].record_number, 1);
            return cdrs[1].duration_secs.expect("STOP has a duration");
        }
        assert!(cdrs.len() < 2, "{cdrs:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no START and STOP for {id}");
}

async fn counts(aaa: &AaaHandle) -> (i64, i64) {
    let c = aaa.store().cdr_counts().await.unwrap();
    let get = |t: &str| c.iter().find(|(k, _)| k == t).map_or(0, |(_, n)| *n);
    (get("START"), get("STOP"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_authorised_accounted_and_revoked() {
    let (aaa, app, _url) = boot(
        vec![
            seed("alice", &["news"], 2),
            seed("bob", &["*"], 1),
            seed("hank", &["*"], 1),
        ],
        Policy::FailClosed,
        false,
    )
    .await;

    // (a) package `news`: news 200, sport 403.
    let mut alice = Ue::new("alice", &app).await;
    let news = alice.join("news", "a1").await;
    let r = alice.invite("sip:sport@127.0.0.1", "a2", 1, None).await;
    assert_eq!(r.status.0, 403, "{}", r.reason);
    assert!(r.reason.contains("not in subscription"), "{}", r.reason);
    // A zap to sport inside the news session: 403, the session stays on news.
    let mut sport_target = news.target.replace("sip:news@", "sip:sport@");
    if !sport_target.starts_with("sip:sport@") {
        sport_target = "sip:sport@127.0.0.1".into();
    }
    let r = alice.invite(&sport_target, "a1", 2, Some(&news.tag)).await;
    assert_eq!(r.status.0, 403, "{}", r.reason);
    let s = app.service.sessions();
    assert!(
        s.iter().any(|v| v.call_id == "a1" && v.channel == "news"),
        "{s:?}"
    );

    // (b) bob, max_streams 1: the second concurrent join gets 403 with the reason.
    let mut bob = Ue::new("bob", &app).await;
    let b1 = bob.join("sport", "b1").await;
    let r = bob.invite("sip:news@127.0.0.1", "b2", 1, None).await;
    assert_eq!(
        (r.status.0, r.reason.as_str()),
        (403, "Stream limit 1 reached")
    );
    // After the leave, a join works again.
    bob.leave(&b1, 2).await;
    let b3 = bob.join("news", "b3").await;
    bob.leave(&b3, 2).await;

    // Two joins of hank (max 1) at once: one 200, one 403, whatever the order.
    let mut hank = Ue::new("hank", &app).await;
    hank.send_invite("sip:news@127.0.0.1", "h1", 1, None).await;
    hank.send_invite("sip:sport@127.0.0.1", "h2", 1, None).await;
    let r1 = hank.response("h1", "INVITE").await;
    let r2 = hank.response("h2", "INVITE").await;
    let mut codes = [r1.status.0, r2.status.0];
    codes.sort_unstable();
    assert_eq!(codes, [200, 403], "{} / {}", r1.reason, r2.reason);
    let (ok, call) = if r1.status.0 == 200 {
        (r1, "h1")
    } else {
        (r2, "h2")
    };
    let h = hank.confirm(&ok, call).await;
    hank.leave(&h, 2).await;

    // (c) unknown subscriber.
    let mut carol = Ue::new("carol", &app).await;
    let r = carol.invite("sip:news@127.0.0.1", "c1", 1, None).await;
    assert_eq!((r.status.0, r.reason.as_str()), (403, "Unknown subscriber"));

    // (d) START and STOP in the AAA's store, with a duration.
    assert!(start_and_stop(&aaa, &b1).await > 0);
    assert!(start_and_stop(&aaa, &b3).await > 0);
    let cdrs = aaa.store().cdrs_of_session(&acct_id(&b1)).await.unwrap();
    assert_eq!(cdrs[0].subscriber.as_deref(), Some("sip:bob@127.0.0.1"));
    assert_eq!(cdrs[0].channel.as_deref(), Some("sport"));

    // (f) a PNR removing `news` ends alice's news session with a BYE (Reason), and its STOP
    // is accounted.
    let change = aaa
        .update_profile(
            "sip:alice@127.0.0.1",
            &ProfileUpdate {
                packages: Some(vec!["sport".into()]),
                max_streams: None,
                parental_level: None,
            },
        )
        .await
        .unwrap();
    assert!(change.pushed.iter().any(|p| p.ok), "{:?}", change.pushed);
    let bye = alice.request("BYE").await;
    assert_eq!(bye.call_id().unwrap(), "a1");
    let reason = bye.headers.get(&HeaderName::new("Reason")).expect("Reason");
    assert!(reason.contains("403"), "{reason}");
    assert!(start_and_stop(&aaa, &news).await > 0);
    // The new profile is used at once (the PNR replaced the cache): sport is allowed now.
    let s2 = alice.join("sport", "a3").await;
    alice.leave(&s2, 2).await;
    start_and_stop(&aaa, &s2).await;

    let metrics = app.service.metrics_text().await;
    for needle in [
        "as_aaa_authorised_total 5",
        "as_aaa_refused_total 5",
        "as_aaa_sessions_accounted_total 5",
        "as_aaa_revoked_total 1",
        "as_aaa_pnr_total 1",
    ] {
        assert!(metrics.contains(needle), "{needle} in\n{metrics}");
    }
    app.shutdown().await;
    aaa.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounting_survives_an_aaa_outage() {
    let subs = vec![seed("dave", &["*"], 4), seed("erin", &["*"], 4)];
    let (aaa, app, url) = boot(subs.clone(), Policy::FailOpen, false).await;
    let aaa_addr = aaa.local_addr();
    let mut dave = Ue::new("dave", &app).await;
    let mut erin = Ue::new("erin", &app).await;
    let mut sessions = Vec::new();

    // Before the outage: one session of dave, still open across it.
    let d1 = dave.join("news", "d1").await;
    // The AAA dies.
    aaa.shutdown().await;
    let client = app.service.aaa().unwrap().diameter().clone();
    for _ in 0..200 {
        if client.open_peers() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(client.open_peers(), 0, "the AS saw the AAA go");
    // Joins and leaves meanwhile: dave's profile is cached, erin's was never read (fail-open).
    dave.leave(&d1, 2).await;
    sessions.push(d1);
    for i in 0..3 {
        let d = dave.join("sport", &format!("d-out-{i}")).await;
        let e = erin.join("news", &format!("e-out-{i}")).await;
        dave.leave(&d, 2).await;
        erin.leave(&e, 2).await;
        sessions.push(d);
        sessions.push(e);
    }
    assert!(
        app.service.aaa().unwrap().outbox_len().await > 0,
        "records wait in the outbox"
    );
    let metrics = app.service.metrics_text().await;
    assert!(metrics.contains("as_aaa_fail_open_total 3"), "{metrics}");

    // The AAA comes back on the same port and database.
    let aaa = restart_aaa(&url, aaa_addr, &subs).await;
    let want = i64::try_from(sessions.len()).unwrap();
    let mut last = (0, 0);
    for _ in 0..400 {
        last = counts(&aaa).await;
        if last == (want, want) && app.service.aaa().unwrap().outbox_len().await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last, (want, want), "START = STOP = sessions");
    assert_eq!(app.service.aaa().unwrap().outbox_len().await, 0);
    for s in &sessions {
        // Exactly one START (0) and one STOP (1) each: nothing lost, nothing twice.
        assert!(start_and_stop(&aaa, s).await >= 0);
    }
    app.shutdown().await;
    aaa.shutdown().await;
}

/// The AAA on `url` at `addr` (a port it had before): bounded retries while the old
/// listener goes.
async fn restart_aaa(url: &str, addr: SocketAddr, subs: &[SubscriberSeed]) -> AaaHandle {
    for _ in 0..100 {
        match Aaa::start(&aaa_config(url, addr, subs.to_vec())).await {
            Ok(a) => return a,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("the AAA does not restart on {addr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_survives_an_as_restart() {
    let subs = vec![seed("gina", &["*"], 2)];
    let url = temp_db();
    let aaa = Aaa::start(&aaa_config(
        &url,
        "127.0.0.1:0".parse().unwrap(),
        subs.clone(),
    ))
    .await
    .unwrap();
    let addr = aaa.local_addr();
    aaa.shutdown().await;
    // The AS runs with the AAA down (fail-open): the records stay in its outbox.
    let cfg = as_config(&url, addr, Policy::FailOpen);
    let app = App::start(&cfg).await.expect("AS starts");
    let mut gina = Ue::new("gina", &app).await;
    let mut sessions = Vec::new();
    for i in 0..2 {
        let j = gina.join("news", &format!("g{i}")).await;
        gina.leave(&j, 2).await;
        sessions.push(j);
    }
    assert_eq!(app.service.aaa().unwrap().outbox_len().await, 4);
    app.shutdown().await;
    // The AAA is back, then the AS restarts over the same database: it sends the rows.
    let aaa = restart_aaa(&url, addr, &subs).await;
    let app = App::start(&cfg).await.expect("AS restarts");
    let mut last = (0, 0);
    for _ in 0..400 {
        last = counts(&aaa).await;
        if last == (2, 2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last, (2, 2));
    for s in &sessions {
        assert!(start_and_stop(&aaa, s).await > 0);
    }
    app.shutdown().await;
    aaa.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_digest() {
    let (aaa, app, _url) = boot(vec![seed("frank", &["news"], 1)], Policy::FailClosed, true).await;
    let mut frank = Ue::new("frank", &app).await;

    let r = frank.register("r1", 1, None).await;
    assert_eq!(r.status.0, 401);
    let ch = r
        .headers
        .get(&HeaderName::new("WWW-Authenticate"))
        .expect("challenge");
    assert!(
        ch.starts_with("Digest ") && ch.contains("realm=\"iptv.example\""),
        "{ch}"
    );
    let nonce = ch
        .split("nonce=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    let answer = |password: &str| {
        let mut c = digest::Credentials {
            username: "frank@127.0.0.1".into(),
            realm: REALM.into(),
            nonce: nonce.clone(),
            uri: "sip:127.0.0.1".into(),
            qop: Some("auth".into()),
            nc: Some("00000001".into()),
            cnonce: Some("0a4f113b".into()),
            ..digest::Credentials::default()
        };
        let ha1 = digest::ha1(&c.username, REALM, password);
        c.response = digest::expected_response(&ha1, &c, "REGISTER", b"").unwrap();
        format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", \
             algorithm=MD5, qop=auth, nc={}, cnonce=\"{}\"",
            c.username,
            c.realm,
            c.nonce,
            c.uri,
            c.response,
            c.nc.as_deref().unwrap(),
            c.cnonce.as_deref().unwrap()
        )
    };
    let r = frank.register("r1", 2, Some(&answer("frank-secret"))).await;
    assert_eq!(r.status.0, 200, "{}", r.reason);
    assert!(r.headers.get(&HeaderName::CONTACT).is_some());
    let r = frank.register("r2", 1, Some(&answer("wrong"))).await;
    assert_eq!(r.status.0, 403, "{}", r.reason);
    // A nonce this AS never issued gets a fresh challenge, not a verdict.
    let forged = answer("frank-secret").replace(&nonce, &"0".repeat(nonce.len()));
    let r = frank.register("r3", 1, Some(&forged)).await;
    assert_eq!(r.status.0, 401);
    app.shutdown().await;
    aaa.shutdown().await;
}
