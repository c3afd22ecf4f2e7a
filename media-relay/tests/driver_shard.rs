//! Per-core sharding ([`media_relay::driver::shard`]) over real UDP on 127.0.0.1: a relay with
//! two shards forwards two channels that hash to different shards, each from its own output
//! socket (so from its own thread), every viewer gets every packet, the stats are summed over
//! the shards, and a zap to a channel on the other shard moves the viewer there. Counts only, no
//! timing asserts; every wait is bounded.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use media_relay::control::{AddViewer, ChannelId, ChannelSpec, RelayConfig, ViewerId};
use media_relay::driver::shard::shard_of;
use media_relay::driver::DriverOptions;
use media_relay::rtp::{self, HeaderRewrite};
use media_relay::Relay;

fn packet(seq: u16) -> Vec<u8> {
    let mut v = Vec::new();
    rtp::write_header(
        &mut v,
        false,
        &HeaderRewrite {
            ssrc: 0x5eed,
            sequence: seq,
            timestamp: u32::from(seq) * 3000,
            payload_type: 96,
        },
    );
    // An IDR every 10 packets (H.264 single NAL unit, RFC 6184 section 5.6).
    v.push(if seq % 10 == 0 { 0x65 } else { 0x41 });
    v.resize(600, 0xab);
    v
}

fn sink() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

/// Read until `want` datagrams came or a read times out: the senders' addresses.
fn read(s: &UdpSocket, want: usize) -> Vec<SocketAddr> {
    let mut from = Vec::new();
    let mut buf = [0u8; 2048];
    while from.len() < want {
        let Ok((_, a)) = s.recv_from(&mut buf) else {
            break;
        };
        from.push(a);
    }
    from
}

/// The first channel names `ch-0`, `ch-1`, ... that land on shards 0 and 1 of 2.
fn one_per_shard() -> (String, String) {
    let names: Vec<String> = (0..64).map(|i| format!("ch-{i}")).collect();
    let on = |k: usize| {
        names
            .iter()
            .find(|n| shard_of(&ChannelId::from(n.as_str()), 2) == k)
            .cloned()
            .expect("64 names cover both shards")
    };
    (on(0), on(1))
}

#[tokio::test]
async fn two_shards_both_forward_their_own_channels() {
    const VIEWERS: usize = 3;
    const N: u16 = 40;
    let relay = Relay::spawn_with(
        RelayConfig::default(),
        DriverOptions {
            shards: 2,
            ..DriverOptions::default()
        },
    )
    .unwrap();
    let (a, b) = one_per_shard();
    let producer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut sinks = Vec::new();
    let mut relay_addrs = Vec::new();
    for (c, name) in [&a, &b].into_iter().enumerate() {
        let ingest = relay
            .create_ingest(ChannelSpec::new(name.as_str()))
            .await
            .unwrap();
        // A key frame first, so viewers start at once.
        producer.send_to(&packet(0), ingest.rtp_addr).unwrap();
        let mut addrs = Vec::new();
        for v in 0..VIEWERS {
            let s = sink();
            let info = relay
                .add_viewer(AddViewer {
                    viewer: ViewerId((c * VIEWERS + v) as u64),
                    channel: ChannelId::from(name.as_str()),
                    rtp_dest: s.local_addr().unwrap(),
                    rtcp_dest: None,
                    payload_type: 96,
                    downstream: false,
                })
                .await
                .unwrap();
            addrs.push(info.relay_rtp);
            sinks.push((c, s));
        }
        addrs.dedup();
        assert_eq!(addrs.len(), 1, "one output socket per shard");
        relay_addrs.push(addrs[0]);
        for seq in 1..N {
            producer.send_to(&packet(seq), ingest.rtp_addr).unwrap();
            if seq % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }
    assert_ne!(
        relay_addrs[0], relay_addrs[1],
        "two shards, two sets of sockets"
    );
    for (c, s) in sinks {
        let from = tokio::task::spawn_blocking(move || read(&s, usize::from(N)))
            .await
            .unwrap();
        // The burst (the cached key frame) plus the live packets: N in all.
        assert_eq!(from.len(), usize::from(N), "channel {c}: every packet");
        assert!(
            from.iter().all(|f| *f == relay_addrs[c]),
            "channel {c}: all from its shard's socket"
        );
    }
    let st = relay.stats().await.unwrap();
    assert_eq!(st.channels.len(), 2);
    assert_eq!(st.viewers.len(), 2 * VIEWERS);
    assert_eq!(
        st.totals.packets_in,
        2 * u64::from(N),
        "summed over the shards"
    );
    assert_eq!(st.totals.packets_out, (2 * VIEWERS) as u64 * u64::from(N));
    for ch in &st.channels {
        assert_eq!(ch.packets_in, u64::from(N), "{}", ch.channel);
    }

    // A zap from a channel on shard 0 to one on shard 1: the viewer is served from there.
    relay
        .switch_channel(ViewerId(0), ChannelId::from(b.as_str()))
        .await
        .unwrap();
    let st = relay.stats().await.unwrap();
    let v0 = st.viewers.iter().find(|v| v.viewer == ViewerId(0)).unwrap();
    assert_eq!(v0.channel, ChannelId::from(b.as_str()));
    assert_eq!(st.viewers.len(), 2 * VIEWERS, "moved, not duplicated");
    relay.remove_viewer(ViewerId(0)).await.unwrap();
    assert!(relay.remove_viewer(ViewerId(0)).await.is_err());
    relay.shutdown().await.unwrap();
}
