//! End to end: the whole AS (`App::start`, as the binary runs it) on 127.0.0.1 with ephemeral
//! ports and an in-memory SQLite, driven over real UDP by UEs written with our SIP codec.
//! RTP is checked at the UEs' sockets.

use std::net::SocketAddr;
use std::time::Duration;

use as_server::config::{ChannelSeed, Config};
use as_server::service::app::App;
use as_server::service::channel_list::ChannelEntry;
use as_server::sip::transaction::Transport;
use as_server::sip::{HeaderName, Message, Request, Response};
use tokio::net::UdpSocket;
use tokio::time::timeout;

mod common;
use common::udp_ue::UdpUe as Ue;
use common::{assert_allow_lists, offer};

fn config() -> Config {
    let mut c = Config::default();
    c.sip.udp = Some("127.0.0.1:0".parse().unwrap());
    c.sip.tcp = Some("127.0.0.1:0".parse().unwrap());
    c.sip.tls = None;
    c.http.listen = Some("127.0.0.1:0".parse().unwrap());
    c.database.url = "sqlite::memory:".into();
    c.relay.port_min = 0;
    c.relay.port_max = 0;
    c.relay.output_rtp_port = 0;
    c.channels = vec![
        ChannelSeed {
            id: "news".into(),
            name: "News".into(),
            test_pattern: true,
        },
        ChannelSeed {
            id: "sport".into(),
            name: "Sport".into(),
            test_pattern: true,
        },
    ];
    c
}

fn invite_text(
    target: &str,
    call_id: &str,
    cseq: u32,
    to_tag: Option<&str>,
    extra: &str,
) -> String {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "INVITE {target} SIP/2.0\n{{via}}\nMax-Forwards: 70\n{{from}}\nTo: <{target}>{to_tag}\n\
         Call-ID: {call_id}\nCSeq: {cseq} INVITE\n{{contact}}\n{extra}Content-Type: application/sdp\n"
    )
}

fn bye_text(target: &str, call_id: &str, cseq: u32, to_tag: &str) -> String {
    format!(
        "BYE {target} SIP/2.0\n{{via}}\nMax-Forwards: 70\n{{from}}\nTo: <{target}>;tag={to_tag}\n\
         Call-ID: {call_id}\nCSeq: {cseq} BYE\n"
    )
}

fn tag_of(r: &Response) -> String {
    r.to().unwrap().tag().unwrap().to_owned()
}

/// (sequence number, SSRC) of the next RTP packet within `wait`.
async fn rtp(sock: &UdpSocket, wait: Duration) -> Option<(u16, u32)> {
    let mut buf = vec![0u8; 2048];
    let n = timeout(wait, sock.recv(&mut buf)).await.ok()?.ok()?;
    assert!(n >= 12 && buf[0] >> 6 == 2, "RTP version 2");
    Some((
        u16::from_be_bytes([buf[2], buf[3]]),
        u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
    ))
}

fn notify_list(n: &Request) -> Vec<String> {
    assert_eq!(n.headers.get(&HeaderName::EVENT), Some("iptv-channels"));
    let l: Vec<ChannelEntry> = serde_json::from_slice(&n.body).unwrap();
    l.into_iter().map(|c| c.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_sip() {
    let app = App::start(&config()).await.expect("AS starts");
    let as_addr = app.sip_addr(Transport::Udp).unwrap();
    let dom = "127.0.0.1";

    // OPTIONS -> 200 with Allow.
    let mut alice = Ue::new("alice", as_addr).await;
    alice
        .send(
            &format!("OPTIONS sip:{dom} SIP/2.0\n{{via}}\nMax-Forwards: 70\n{{from}}\nTo: <sip:{dom}>\nCall-ID: o1\nCSeq: 1 OPTIONS\n"),
            "",
        )
        .await;
    let r = alice.response("o1", "OPTIONS").await;
    assert_allow_lists(&r, 200, "INVITE");

    // REGISTER -> 200 listing the contact.
    alice
        .send(
            &format!("REGISTER sip:{dom} SIP/2.0\n{{via}}\nMax-Forwards: 70\n{{from}}\nTo: <sip:alice@{dom}>\nCall-ID: r1\nCSeq: 1 REGISTER\n{{contact}}\nExpires: 600\n"),
            "",
        )
        .await;
    let r = alice.response("r1", "REGISTER").await;
    assert_eq!(r.status.0, 200);
    let c = r.headers.get(&HeaderName::CONTACT).unwrap();
    assert!(
        c.contains(&alice.addr.to_string()) && c.contains("expires=600"),
        "{c}"
    );

    // SUBSCRIBE -> 200 + NOTIFY listing news.
    let mut bob = Ue::new("bob", as_addr).await;
    bob.send(
        &format!("SUBSCRIBE sip:channels@{dom} SIP/2.0\n{{via}}\nMax-Forwards: 70\n{{from}}\nTo: <sip:channels@{dom}>\nCall-ID: s1\nCSeq: 1 SUBSCRIBE\n{{contact}}\nEvent: iptv-channels\nExpires: 600\n"),
        "",
    )
    .await;
    let r = bob.response("s1", "SUBSCRIBE").await;
    assert_eq!(r.status.0, 200);
    let n = bob.request("NOTIFY").await;
    assert!(n
        .headers
        .get(&HeaderName::SUBSCRIPTION_STATE)
        .unwrap()
        .starts_with("active"));
    assert_eq!(notify_list(&n), ["news", "sport"]);

    // INVITE news -> 200 with SDP at the relay; RTP arrives.
    let media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = media.local_addr().unwrap().port();
    let news = format!("sip:news@{dom}");
    alice
        .send(
            &invite_text(&news, "c1", 1, None, ""),
            &offer(port, "h264", "recvonly"),
        )
        .await;
    let ok = alice.response("c1", "INVITE").await;
    assert_eq!(ok.status.0, 200, "{ok:?}");
    let tag = tag_of(&ok);
    let sdp = String::from_utf8(ok.body.to_vec()).unwrap();
    assert!(
        sdp.contains("a=sendonly") && sdp.contains("a=rtcp-unicast:rsi"),
        "{sdp}"
    );
    let contact = ok.contact().unwrap().unwrap().uri;
    assert_eq!(contact.user.as_deref(), Some("news"));
    alice.ack(&contact.to_string(), "c1", 1, &tag).await;
    let (mut seq, ssrc) = rtp(&media, Duration::from_secs(3))
        .await
        .expect("RTP after join");
    for _ in 0..10 {
        seq = rtp(&media, Duration::from_secs(3))
            .await
            .expect("RTP flows")
            .0;
    }

    // Zap: re-INVITE to sip:sport@<AS contact host:port> in the same dialog.
    let mut sport = contact.clone();
    sport.user = Some("sport".into());
    alice
        .send(
            &invite_text(&sport.to_string(), "c1", 2, Some(&tag), ""),
            &offer(port, "h264", "recvonly"),
        )
        .await;
    let z = alice.response("c1", "INVITE").await;
    assert_eq!(z.status.0, 200, "{z:?}");
    assert_eq!(z.body, ok.body, "same SDP after the zap");
    assert_eq!(
        z.contact().unwrap().unwrap().uri.user.as_deref(),
        Some("sport")
    );
    alice.ack(&sport.to_string(), "c1", 2, &tag).await;
    for _ in 0..30 {
        let (s, x) = rtp(&media, Duration::from_secs(3))
            .await
            .expect("RTP after the zap");
        assert_eq!(x, ssrc, "same SSRC across the zap");
        assert_eq!(
            s,
            seq.wrapping_add(1),
            "contiguous sequence numbers across the zap"
        );
        seq = s;
    }

    // BYE -> 200, RTP stops.
    alice
        .send(&bye_text(&sport.to_string(), "c1", 3, &tag), "")
        .await;
    assert_eq!(alice.response("c1", "BYE").await.status.0, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut buf = [0u8; 2048];
    while media.try_recv(&mut buf).is_ok() {}
    assert!(
        rtp(&media, Duration::from_millis(700)).await.is_none(),
        "RTP stopped after BYE"
    );

    // Unknown channel -> 404.
    alice
        .send(
            &invite_text(&format!("sip:nosuch@{dom}"), "c2", 1, None, ""),
            &offer(port, "h264", "recvonly"),
        )
        .await;
    assert_eq!(alice.response("c2", "INVITE").await.status.0, 404);

    // Only an unsupported codec -> 488 with Warning.
    alice
        .send(
            &invite_text(&news, "c3", 1, None, ""),
            &offer(port, "vp8", "recvonly"),
        )
        .await;
    let r = alice.response("c3", "INVITE").await;
    assert_eq!(r.status.0, 488);
    assert!(r
        .headers
        .get(&HeaderName::WARNING)
        .unwrap()
        .starts_with("305 "));

    // Garbage: answered 400 or dropped; the next request is still served.
    alice.send_raw(b"this is not SIP\r\n\r\n").await;
    alice
        .send_raw(b"INVITE sip:news@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKg\r\nCall-ID: g\r\nCSeq: x INVITE\r\nContent-Length: 0\r\n\r\n")
        .await;
    alice
        .send(
            &format!("OPTIONS sip:{dom} SIP/2.0\n{{via}}\nMax-Forwards: 70\n{{from}}\nTo: <sip:{dom}>\nCall-ID: o2\nCSeq: 1 OPTIONS\n"),
            "",
        )
        .await;
    assert_eq!(alice.response("o2", "OPTIONS").await.status.0, 200);

    // Personal channel: carol creates it, bob's subscription lists it, dave joins it, carol's
    // BYE removes it: dave gets a BYE, bob a NOTIFY without it.
    let mut carol = Ue::new("carol", as_addr).await;
    let create = format!("sip:new-channel@{dom}");
    carol
        .send(
            &invite_text(&create, "p1", 1, None, "Subject: Carol Live\n"),
            &offer(7000, "h264", "sendonly"),
        )
        .await;
    let created = carol.response("p1", "INVITE").await;
    assert_eq!(created.status.0, 200, "{created:?}");
    let ctag = tag_of(&created);
    let csdp = String::from_utf8(created.body.to_vec()).unwrap();
    assert!(csdp.contains("a=recvonly"), "{csdp}");
    let ccontact = created.contact().unwrap().unwrap().uri;
    assert_eq!(ccontact.user.as_deref(), Some("carol-live"));
    carol.ack(&ccontact.to_string(), "p1", 1, &ctag).await;
    let n = bob.request("NOTIFY").await;
    assert!(notify_list(&n).contains(&"carol-live".to_owned()));

    let mut dave = Ue::new("dave", as_addr).await;
    let dmedia = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dport = dmedia.local_addr().unwrap().port();
    let live = format!("sip:carol-live@{dom}");
    dave.send(
        &invite_text(&live, "d1", 1, None, ""),
        &offer(dport, "h264", "recvonly"),
    )
    .await;
    let dok = dave.response("d1", "INVITE").await;
    assert_eq!(dok.status.0, 200, "{dok:?}");
    dave.ack(&live, "d1", 1, &tag_of(&dok)).await;

    carol
        .send(&bye_text(&ccontact.to_string(), "p1", 2, &ctag), "")
        .await;
    assert_eq!(carol.response("p1", "BYE").await.status.0, 200);
    let b = dave.request("BYE").await;
    assert_eq!(b.call_id().unwrap(), "d1");
    let n = bob.request("NOTIFY").await;
    assert!(!notify_list(&n).contains(&"carol-live".to_owned()));

    // The same list over HTTP.
    let (status, body) = http_get(app.http.unwrap(), "/api/channels").await;
    assert_eq!(status, 200);
    let start = body.find('[').unwrap();
    let end = body.rfind(']').unwrap();
    let list: Vec<ChannelEntry> = serde_json::from_str(&body[start..=end]).unwrap();
    assert_eq!(
        list.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["news", "sport"]
    );

    // OPTIONS over TCP too.
    let tcp = app.sip_addr(Transport::Tcp).unwrap();
    let mut s = tokio::net::TcpStream::connect(tcp).await.unwrap();
    let local = s.local_addr().unwrap();
    let opt = format!(
        "OPTIONS sip:{dom} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKtcp1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:t@{dom}>;tag=t1\r\nTo: <sip:{dom}>\r\n\
         Call-ID: tcp1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(opt.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        let resp = loop {
            let n = timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "connection closed");
            got.extend_from_slice(&buf[..n]);
            if let Ok(Some(len)) = as_server::sip::frame_len(&got) {
                break Message::parse_stream(&got[..len]).unwrap();
            }
        };
        assert_eq!(resp.as_response().unwrap().status.0, 200);
    }
    assert!(app.service.sessions().is_empty());
    app.shutdown().await;
}

/// `GET path` over HTTP/1.1; (status, raw body).
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    common::http_exchange(addr, &req).await
}

/// RFC 3261 13.3.1.4 end to end: a UE that never ACKs the 200 OK of its INVITE gets a BYE
/// after 64*T1 (T1 = 20 ms here), and the relay no longer has its viewer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_invite_is_ended_with_bye() {
    let timers = as_server::sip::transaction::TimerConfig {
        t1: Duration::from_millis(20),
        t2: Duration::from_millis(80),
        ..Default::default()
    };
    let app = App::start_with_timers(&config(), timers)
        .await
        .expect("AS starts");
    let as_addr = app.sip_addr(Transport::Udp).unwrap();
    let mut ue = Ue::new("erin", as_addr).await;
    let media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = media.local_addr().unwrap().port();
    ue.send(
        &invite_text("sip:news@127.0.0.1", "na1", 1, None, ""),
        &offer(port, "h264", "recvonly"),
    )
    .await;
    let ok = ue.response("na1", "INVITE").await;
    assert_eq!(ok.status.0, 200, "{ok:?}");
    assert_eq!(app.relay.stats().await.unwrap().viewers.len(), 1);
    // No ACK: the AS retransmits the 200 for 64*T1, then hangs up.
    let bye = ue.request("BYE").await;
    assert_eq!(bye.call_id().unwrap(), "na1");
    assert_eq!(bye.from().unwrap().tag(), Some(tag_of(&ok).as_str()));
    assert!(app.service.sessions().is_empty());
    assert!(app.relay.stats().await.unwrap().viewers.is_empty());
    app.shutdown().await;
}

/// CANCEL through the real endpoint: the CANCEL gets 200, the INVITE 487 (RFC 3261 9.2),
/// and no viewer or session is left behind. (Should the join win the race, the INVITE gets
/// its 200 and the CANCEL changes nothing; the UE then hangs up.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_during_join() {
    let app = App::start(&config()).await.expect("AS starts");
    let as_addr = app.sip_addr(Transport::Udp).unwrap();
    let mut ue = Ue::new("fred", as_addr).await;
    let media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = media.local_addr().unwrap().port();
    let target = "sip:news@127.0.0.1";
    ue.send(
        &invite_text(target, "cx1", 1, None, ""),
        &offer(port, "h264", "recvonly"),
    )
    .await;
    // Same branch as the INVITE (RFC 3261 9.1): `send` numbers branches, so reuse it.
    let branch = ue.branch;
    ue.branch = branch - 1;
    ue.send(
        &format!(
            "CANCEL {target} SIP/2.0\n{{via}}\nMax-Forwards: 70\n{{from}}\nTo: <{target}>\n\
             Call-ID: cx1\nCSeq: 1 CANCEL\n"
        ),
        "",
    )
    .await;
    assert_eq!(ue.response("cx1", "CANCEL").await.status.0, 200);
    let r = ue.response("cx1", "INVITE").await;
    match r.status.0 {
        487 => {}
        200 => {
            let tag = tag_of(&r);
            ue.ack(target, "cx1", 1, &tag).await;
            ue.send(&bye_text(target, "cx1", 2, &tag), "").await;
            assert_eq!(ue.response("cx1", "BYE").await.status.0, 200);
        }
        s => panic!("unexpected {s}"),
    }
    // The service handles the CANCEL in its own task: give it a bounded moment.
    for _ in 0..50 {
        if app.relay.stats().await.unwrap().viewers.is_empty() && app.service.sessions().is_empty()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(app.service.sessions().is_empty(), "no session left");
    assert!(
        app.relay.stats().await.unwrap().viewers.is_empty(),
        "no viewer left on the relay"
    );
    app.shutdown().await;
}
