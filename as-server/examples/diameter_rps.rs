//! Diameter requests/answers per second over one TCP connection on 127.0.0.1: two in-process
//! nodes of the tokio driver (`as_server::diameter::driver`), a client with `--inflight`
//! concurrent requesters and a server answering every request at once.
//!
//! `cargo run --release -p as-server --example diameter_rps -- [requests] [inflight]`

use std::time::Duration;

use as_server::diameter::base::{Capabilities, DisconnectCause};
use as_server::diameter::driver::{self, ListenSpec, NodeConfig, PeerSpec};
use as_server::diameter::peer::PeerConfig;
use as_server::diameter::router::RouterConfig;
use as_server::diameter::{dict, ApplicationId, Avp, CommandCode, Message, VendorId};

fn caps(host: &str) -> Capabilities {
    Capabilities {
        origin_host: host.into(),
        origin_realm: "example.net".into(),
        host_ip_addresses: vec!["127.0.0.1".parse().unwrap()],
        vendor_id: VendorId(0),
        product_name: "diameter_rps".into(),
        auth_application_ids: vec![ApplicationId::TGPP_SH],
        ..Capabilities::default()
    }
}

fn udr(i: u64) -> Message {
    let mut m = Message::request(CommandCode::USER_DATA, ApplicationId::TGPP_SH, true);
    m.avps.push(Avp::utf8(
        &dict::SESSION_ID,
        format!("as.example.net;1;{i}"),
    ));
    m.avps
        .push(Avp::identity(&dict::ORIGIN_HOST, "as.example.net"));
    m.avps
        .push(Avp::identity(&dict::ORIGIN_REALM, "example.net"));
    m.avps
        .push(Avp::identity(&dict::DESTINATION_REALM, "example.net"));
    m.avps.push(Avp::grouped(
        &dict::USER_IDENTITY,
        vec![Avp::utf8(&dict::PUBLIC_IDENTITY, "sip:alice@example.net")],
    ));
    m.avps.push(Avp::enumerated(&dict::DATA_REFERENCE, 0));
    m
}

#[expect(clippy::disallowed_methods)]
fn clock() -> std::time::Instant {
    std::time::Instant::now()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let total: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let inflight: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(64);

    let mut tmpl = PeerConfig::new(caps("hss.example.net"));
    tmpl.connect = false;
    let (server, mut incoming) = driver::spawn(NodeConfig {
        router: RouterConfig {
            accept_unknown_peers: true,
            unknown_peer: Some(tmpl),
            ..RouterConfig::default()
        },
        listen: Some(ListenSpec {
            addr: "127.0.0.1:0".parse()?,
            tls: None,
        }),
        incoming_queue: 65_536,
        ..NodeConfig::default()
    })
    .await?;
    tokio::spawn(async move {
        while let Some(req) = incoming.recv().await {
            let mut a = Message::answer_to(&req.request);
            a.avps.push(Avp::u32(&dict::RESULT_CODE, 2001));
            a.avps
                .push(Avp::identity(&dict::ORIGIN_HOST, "hss.example.net"));
            a.avps
                .push(Avp::identity(&dict::ORIGIN_REALM, "example.net"));
            req.answer(a);
        }
    });
    let mut pc = PeerConfig::new(caps("as.example.net"));
    pc.remote_host = Some("hss.example.net".into());
    let (client, _in) = driver::spawn(NodeConfig {
        peers: vec![PeerSpec {
            config: pc,
            addr: server.local_addr(),
            tls: None,
        }],
        ..NodeConfig::default()
    })
    .await?;
    tokio::time::timeout(Duration::from_secs(10), client.wait_open(1)).await??;

    let start = clock();
    let per = total / inflight;
    let mut tasks = Vec::new();
    for t in 0..inflight {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut ok = 0u64;
            for i in 0..per {
                if c.request(udr(t * per + i)).await.is_ok() {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await?;
    }
    let secs = clock().duration_since(start).as_secs_f64();
    println!(
        "{ok} of {} UDR/UDA over one TCP connection, {inflight} in flight: {:.2} s, {:.0} requests/s",
        per * inflight,
        secs,
        ok as f64 / secs
    );
    client.stop(DisconnectCause::REBOOTING).await;
    server.stop(DisconnectCause::REBOOTING).await;
    Ok(())
}
