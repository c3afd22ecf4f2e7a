//! Two ASes on one RELOAD overlay (`[overlay]`, `service::overlay`), in one process on
//! 127.0.0.1: AS1 starts the overlay, AS2 joins through it. A personal channel created at
//! AS1 shows up in the channel list a UE subscribed to at AS2 (the propagation time is
//! printed, not asserted), a viewer joins it at AS2 and receives RTP from AS2's relay
//! (which pulls one copy from AS1's relay), its BYE stops and releases the pull (AS2's
//! relay no longer carries the channel), the owner's BYE removes
//! the channel from AS2's list. A REGISTER at AS1 is fetched as SIP-REGISTRATION through
//! AS2's overlay peer; a binding lives there as long as its registration (the
//! registrar's granted expiry, renewed by each refresh), then goes. Every RELOAD PDU the two peers sent is checked with tshark's
//! dissector.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use as_server::config::{ChannelSeed, Config};
use as_server::service::app::App;
use as_server::service::channel_list::ChannelEntry;
use as_server::service::overlay::directory;
use as_server::sip::transaction::Transport;
use as_server::sip::{HeaderName, Request, Response};
use p2psip_overlay::storage::KindId;
use p2psip_overlay::wire::pcap::{message_codes, tshark_check, TsharkOutcome};
use tokio::net::UdpSocket;
use tokio::time::timeout;

mod common;
use common::offer;
use common::udp_ue::UdpUe as Ue;

/// The test's one clock reading (for the printed propagation time only).
#[expect(clippy::disallowed_methods)]
fn clock() -> Instant {
    Instant::now()
}

fn config(
    ca: &Path,
    pcap: &Path,
    bootstrap: Option<SocketAddr>,
    user: Option<&str>,
    node_id: u128,
) -> Config {
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
    // Both ASes have a "news": AS1's is never listed at AS2 (a remote channel does not
    // hide a local one).
    c.channels = vec![ChannelSeed {
        id: "news".into(),
        name: "News".into(),
        test_pattern: true,
    }];
    c.overlay.enabled = true;
    c.overlay.ca_dir = Some(ca.to_path_buf());
    c.overlay.bootstrap = bootstrap;
    c.overlay.user = user.map(str::to_owned);
    c.overlay.node_id = Some(format!("{node_id:032x}"));
    c.overlay.pcap = Some(pcap.to_path_buf());
    c.overlay.poll_ms = 20;
    // short registrations (a binding's overlay lifetime follows its expiry)
    c.registrar.min = 1;
    c
}

fn invite_text(target: &str, call_id: &str, extra: &str) -> String {
    format!(
        "INVITE {target} SIP/2.0\n{{via}}\nMax-Forwards: 70\n{{from}}\nTo: <{target}>\n\
         Call-ID: {call_id}\nCSeq: 1 INVITE\n{{contact}}\n{extra}Content-Type: application/sdp\n"
    )
}

fn bye_text(target: &str, call_id: &str, cseq: u32, to_tag: &str) -> String {
    format!(
        "BYE {target} SIP/2.0\n{{via}}\nMax-Forwards: 70\n{{from}}\nTo: <{target}>;tag={to_tag}\n\
         Call-ID: {call_id}\nCSeq: {cseq} BYE\n"
    )
}

fn register_text(user: &str, call_id: &str) -> String {
    format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\n{{via}}\nMax-Forwards: 70\n{{from}}\n\
         To: <sip:{user}@127.0.0.1>\nCall-ID: {call_id}\nCSeq: 1 REGISTER\n{{contact}}\nExpires: 600\n"
    )
}

fn unregister_text(user: &str, call_id: &str) -> String {
    register_text(user, call_id)
        .replace("CSeq: 1 REGISTER", "CSeq: 2 REGISTER")
        .replace("Expires: 600", "Expires: 0")
}

fn tag_of(r: &Response) -> String {
    r.to().unwrap().tag().unwrap().to_owned()
}

fn notify_list(n: &Request) -> Vec<String> {
    assert_eq!(n.headers.get(&HeaderName::EVENT), Some("iptv-channels"));
    let l: Vec<ChannelEntry> = serde_json::from_slice(&n.body).unwrap();
    l.into_iter().map(|c| c.id).collect()
}

/// The RTP address of an SDP answer (`c=` and the video `m=` port).
fn sdp_rtp(sdp: &str) -> SocketAddr {
    let ip = sdp
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .unwrap()
        .trim();
    let port = sdp
        .lines()
        .find_map(|l| l.strip_prefix("m=video "))
        .and_then(|r| r.split_whitespace().next())
        .unwrap();
    format!("{ip}:{port}").parse().unwrap()
}

/// (viewers, copies to other relays) of `channel` on a relay ((0, 0) when it does not
/// carry it).
async fn viewers_on(relay: &media_relay::RelayHandle, channel: &str) -> (usize, usize) {
    relay
        .stats()
        .await
        .unwrap()
        .channels
        .iter()
        .find(|c| c.channel.as_str() == channel)
        .map_or((0, 0), |c| (c.viewers, c.downstreams))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_channel_at_as1_listed_and_joinable_at_as2() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = std::env::temp_dir().join(format!("overlay_as_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca");
    p2psip_overlay::driver::control::write_ca(&ca, "iptv.test").unwrap();

    // AS1 starts the overlay. REGISTER bindings are stored under SIP-REGISTRATION
    // (USER-NODE-MATCH, RFC 7904) signed with a certificate AS1 mints per AoR from the
    // overlay CA. The Node-IDs are fixed so the test is deterministic: AS2's is alice's
    // Resource-ID (AS2 is responsible for alice: a store over the overlay), and AS1 (half
    // the ring away) is responsible for some of the others (a local store, replicated to
    // AS2): both paths are asserted below.
    let alice_id = p2psip_overlay::driver::resource_id(b"alice@127.0.0.1").0;
    let as1_id = alice_id.wrapping_add(1 << 127);
    let as1 = App::start(&config(&ca, &dir.join("as1.pcap"), None, None, as1_id))
        .await
        .expect("AS1 starts");
    let boot = as1.service.overlay().unwrap().handle().listen_addr();
    let as2 = App::start(&config(
        &ca,
        &dir.join("as2.pcap"),
        Some(boot),
        None,
        alice_id,
    ))
    .await
    .expect("AS2 starts and joins");
    let as1_sip = as1.sip_addr(Transport::Udp).unwrap();
    let as2_sip = as2.sip_addr(Transport::Udp).unwrap();
    assert!(as2.relay_controls[0].is_some(), "relay control API served");

    // bob subscribes to the channel list at AS2: only AS2's own news.
    let mut bob = Ue::new("bob", as2_sip).await;
    bob.send(
        "SUBSCRIBE sip:channels@127.0.0.1 SIP/2.0\n{via}\nMax-Forwards: 70\n{from}\n\
         To: <sip:channels@127.0.0.1>\nCall-ID: s1\nCSeq: 1 SUBSCRIBE\n{contact}\n\
         Event: iptv-channels\nExpires: 600\n",
        "",
    )
    .await;
    assert_eq!(bob.response("s1", "SUBSCRIBE").await.status.0, 200);
    let n = bob
        .request_within("NOTIFY", Duration::from_secs(5))
        .await
        .expect("first NOTIFY");
    assert_eq!(notify_list(&n), ["news"]);

    // carol creates a personal channel at AS1.
    let mut carol = Ue::new("carol", as1_sip).await;
    let create = "sip:new-channel@127.0.0.1";
    let t0 = clock();
    carol
        .send(
            &invite_text(create, "p1", "Subject: Carol Live\n"),
            &offer(7000, "h264", "sendonly"),
        )
        .await;
    let created = carol.response("p1", "INVITE").await;
    assert_eq!(created.status.0, 200, "{created:?}");
    let t_created = clock();
    let ctag = tag_of(&created);
    let ccontact = created.contact().unwrap().unwrap().uri;
    assert_eq!(ccontact.user.as_deref(), Some("carol-live"));
    carol.ack(&ccontact.to_string(), "p1", 1, &ctag).await;
    let ingest = sdp_rtp(std::str::from_utf8(&created.body).unwrap());

    // ... and bob's subscription at AS2 lists it.
    let listed = loop {
        let n = bob
            .request_within("NOTIFY", Duration::from_secs(5))
            .await
            .expect("a NOTIFY listing carol-live at AS2");
        let l = notify_list(&n);
        if l.contains(&"carol-live".to_owned()) {
            break l;
        }
    };
    let t_listed = clock();
    assert_eq!(
        listed,
        ["carol-live", "news"],
        "AS1's news never hides AS2's"
    );
    println!(
        "propagation: INVITE at AS1 -> NOTIFY at AS2 {:.1} ms (200 OK at AS1 -> NOTIFY {:.1} ms)",
        (t_listed - t0).as_secs_f64() * 1e3,
        (t_listed - t_created).as_secs_f64() * 1e3
    );

    // The producer streams into AS1's ingest.
    let producer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let stream = tokio::spawn(async move {
        for i in 0u16..2000 {
            let mut p = vec![0x80, 0x80 | 96];
            p.extend_from_slice(&i.to_be_bytes());
            p.extend_from_slice(&(u32::from(i) * 3000).to_be_bytes());
            p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
            // IDR slices now and then, the rest non-IDR (H.264 NAL types 5 and 1).
            p.push(if i % 25 == 0 { 0x65 } else { 0x41 });
            p.extend_from_slice(&[0u8; 100]);
            let _ = producer.send_to(&p, ingest).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });

    // dave joins carol-live at AS2 and gets RTP from AS2's relay.
    let mut dave = Ue::new("dave", as2_sip).await;
    let media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = media.local_addr().unwrap().port();
    let live = "sip:carol-live@127.0.0.1";
    dave.send(
        &invite_text(live, "d1", ""),
        &offer(port, "h264", "recvonly"),
    )
    .await;
    let ok = dave.response("d1", "INVITE").await;
    assert_eq!(ok.status.0, 200, "{ok:?}");
    let dtag = tag_of(&ok);
    dave.ack(live, "d1", 1, &dtag).await;
    let served_by = sdp_rtp(std::str::from_utf8(&ok.body).unwrap());
    let mut got = 0;
    let mut buf = vec![0u8; 2048];
    let mut from_relay = None;
    while got < 20 {
        let (n, src) = timeout(Duration::from_secs(5), media.recv_from(&mut buf))
            .await
            .expect("RTP at the viewer of AS2")
            .unwrap();
        assert!(n >= 12 && buf[0] >> 6 == 2, "RTP version 2");
        from_relay = Some(src);
        got += 1;
    }
    println!("viewer at AS2: {got} RTP packets from {from_relay:?} (answer names {served_by})");
    assert_eq!(from_relay, Some(served_by), "media from AS2's relay");
    assert_eq!(viewers_on(&as2.relays()[0], "carol-live").await, (1, 0));
    assert_eq!(
        viewers_on(&as1.relays()[0], "carol-live").await,
        (0, 1),
        "AS1's relay sends one copy, to AS2's relay"
    );
    let ov2 = as2.service.overlay().unwrap();
    assert_eq!(ov2.stats.pulls_started.load(Ordering::Relaxed), 1);

    // dave's BYE: the pull stops (AS1's relay sends no copy any more).
    dave.send(&bye_text(live, "d1", 2, &dtag), "").await;
    assert_eq!(dave.response("d1", "BYE").await.status.0, 200);
    let mut left = false;
    for _ in 0..100 {
        if viewers_on(&as1.relays()[0], "carol-live").await == (0, 0) {
            left = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(left, "the copy to AS2 stopped on the last leave");
    assert_eq!(
        ov2.stats.pulls_released.load(Ordering::Relaxed),
        1,
        "the upstream declaration is withdrawn on the last leave"
    );
    assert_eq!(viewers_on(&as2.relays()[0], "carol-live").await, (0, 0));
    stream.abort();

    // carol's BYE at AS1 removes the channel from AS2's list.
    carol
        .send(&bye_text(&ccontact.to_string(), "p1", 2, &ctag), "")
        .await;
    assert_eq!(carol.response("p1", "BYE").await.status.0, 200);
    loop {
        let n = bob
            .request_within("NOTIFY", Duration::from_secs(5))
            .await
            .expect("a NOTIFY without carol-live at AS2");
        if notify_list(&n) == ["news"] {
            break;
        }
    }
    assert_eq!(
        ov2.stats.pulls_stopped.load(Ordering::Relaxed),
        0,
        "nothing left to withdraw: released at the last leave"
    );

    // REGISTER of several users at AS1: every binding is fetched through AS2's peer
    // (RFC 7904), each value signed by its own user's certificate; none is refused.
    let ov1 = as1.service.overlay().unwrap();
    let users = ["alice", "bob", "carol", "erin"];
    let in_as1 = |u: &str| {
        // AS1 is responsible for (AS2, AS1] on the two-peer ring
        let r = p2psip_overlay::driver::resource_id(format!("{u}@127.0.0.1").as_bytes()).0;
        r.wrapping_sub(alice_id).wrapping_sub(1) < as1_id.wrapping_sub(alice_id)
    };
    assert!(!in_as1("alice"), "AS2 holds alice");
    assert!(
        users.iter().any(|u| in_as1(u)),
        "AS1 holds one of {users:?} (the local path)"
    );
    let mut ues = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let mut ue = Ue::new(u, as1_sip).await;
        let call = format!("r{i}");
        ue.send(&register_text(u, &call), "").await;
        assert_eq!(ue.response(&call, "REGISTER").await.status.0, 200);
        ues.push(ue);
    }
    let fetch_uri = |u: &'static str| {
        let h = ov2.handle().clone();
        async move {
            match h
                .fetch(
                    format!("{u}@127.0.0.1").as_bytes(),
                    KindId::SIP_REGISTRATION,
                )
                .await
            {
                Ok(v) => Ok(v
                    .iter()
                    .filter_map(|v| directory::decode_sip_registration(&v.data))
                    .collect::<Vec<_>>()),
                Err(e) => Err(e.to_string()),
            }
        }
    };
    for (u, ue) in users.iter().zip(&ues) {
        let want = format!("sip:{u}@{}", ue.addr);
        let mut last = String::new();
        let mut found = false;
        for _ in 0..100 {
            match fetch_uri(u).await {
                Ok(v) if v == [want.clone()] => {
                    found = true;
                    break;
                }
                Ok(v) => last = format!("{v:?}"),
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            found,
            "{u}: last fetch: {last}; AS1 stored {} registrations, {} failed",
            ov1.stats.registrations.load(Ordering::Relaxed),
            ov1.stats.registration_failures.load(Ordering::Relaxed)
        );
    }
    assert_eq!(
        ov1.stats.registrations.load(Ordering::Relaxed),
        users.len() as u64
    );
    assert_eq!(ov1.stats.registration_failures.load(Ordering::Relaxed), 0);
    // carol unregisters: her binding becomes the empty URI, signed by her certificate.
    ues[2].send(&unregister_text("carol", "u1"), "").await;
    assert_eq!(ues[2].response("u1", "REGISTER").await.status.0, 200);
    let mut last = Ok(Vec::new());
    for _ in 0..100 {
        last = fetch_uri("carol").await;
        if matches!(&last, Ok(v) if v == &[String::new()]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(last, Ok(vec![String::new()]), "carol's binding removed");
    assert_eq!(ov1.stats.registration_failures.load(Ordering::Relaxed), 0);

    // A binding lives in the overlay as long as its registration (the StoredData
    // lifetime is the granted expiry), not the overlay's `lifetime_s` (600 s here):
    // dave registers for an hour, then refreshes for 5 s and lets it lapse.
    let stat_lifetimes = || {
        let h = ov2.handle().clone();
        async move {
            h.stat(b"dave@127.0.0.1", KindId::SIP_REGISTRATION)
                .await
                .map(|st| st.values.iter().map(|v| v.lifetime).collect::<Vec<_>>())
                .map_err(|e| e.to_string())
        }
    };
    let mut dave = Ue::new("dave", as1_sip).await;
    let dave_uri = format!("sip:dave@{}", dave.addr);
    dave.send(
        &register_text("dave", "d1").replace("Expires: 600", "Expires: 3600"),
        "",
    )
    .await;
    assert_eq!(dave.response("d1", "REGISTER").await.status.0, 200);
    let mut last = Ok(Vec::new());
    for _ in 0..100 {
        last = stat_lifetimes().await;
        if matches!(&last, Ok(l) if !l.is_empty() && l.iter().all(|&s| s > 600)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        matches!(&last, Ok(l) if !l.is_empty() && l.iter().all(|&s| s > 600 && s <= 3600)),
        "dave's hour-long binding: lifetimes {last:?}"
    );
    assert_eq!(fetch_uri("dave").await, Ok(vec![dave_uri.clone()]));
    // The refresh (same Call-ID, next CSeq) stores it again with its new expiry.
    dave.send(
        &register_text("dave", "d1")
            .replace("CSeq: 1 REGISTER", "CSeq: 2 REGISTER")
            .replace("Expires: 600", "Expires: 5"),
        "",
    )
    .await;
    assert_eq!(dave.response("d1", "REGISTER").await.status.0, 200);
    let mut last = Ok(Vec::new());
    for _ in 0..100 {
        last = stat_lifetimes().await;
        if matches!(&last, Ok(l) if !l.is_empty() && l.iter().all(|&s| s <= 5)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        matches!(&last, Ok(l) if !l.is_empty() && l.iter().all(|&s| s <= 5)),
        "dave's refreshed 5 s binding: lifetimes {last:?}"
    );
    // Not refreshed again: it leaves the overlay when the registration expires
    // (bounded wait, 20 s), not 600 s later.
    let mut last = Ok(Vec::new());
    for _ in 0..200 {
        last = fetch_uri("dave").await;
        if matches!(&last, Ok(v) if v.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, Ok(Vec::new()), "dave's lapsed binding still fetched");
    assert_eq!(ov1.stats.registration_failures.load(Ordering::Relaxed), 0);

    let mut pdus = ov1.recorded();
    pdus.extend(ov2.recorded());
    as2.shutdown().await;
    as1.shutdown().await;

    // Every RELOAD PDU decodes in tshark's dissector (all of them, not a sample).
    assert!(pdus.len() > 20, "{} PDUs recorded", pdus.len());
    let mut per_code = std::collections::HashMap::<u16, usize>::new();
    for code in message_codes(&pdus) {
        *per_code.entry(code).or_default() += 1;
    }
    for code in [7u16, 8, 9, 10] {
        assert!(per_code.contains_key(&code), "no message with code {code}");
    }
    eprintln!("{} RELOAD PDUs tshark-checked", pdus.len());
    match tshark_check(&pdus, &dir).expect("tshark runs") {
        TsharkOutcome::Missing if std::env::var_os("CI").is_none() => {
            eprintln!("tshark not installed: check skipped")
        }
        TsharkOutcome::Missing => panic!("tshark missing in CI"),
        TsharkOutcome::Clean(codes) => assert_eq!(codes.len(), pdus.len()),
        TsharkOutcome::Problems(p) => panic!("tshark: {p}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
