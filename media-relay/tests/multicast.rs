//! A multicast channel ([`RelayConfig::multicast`]): the relay sends the channel once to its
//! group, whatever the number of viewers, with the configured TTL; members joined to the group
//! each get every packet, nothing goes to their unicast addresses, the viewer's answer names the
//! group and TTL (the AS's `c=IN IP4 <group>/<ttl>`), and the group stream stops with the last
//! member.
//!
//! Multicast on loopback needs a route and `lo` marked multicast, which this test does not
//! change on the host: it re-runs itself in a private network namespace (`unshare -n`, root)
//! where it sets `lo` up with `ip`. Where that is impossible the test says so and passes,
//! except in CI (`CI` set), where it fails. Counts only, bounded waits.

use std::io::IoSliceMut;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

use media_relay::control::{
    AddViewer, ChannelId, ChannelSpec, MulticastChannel, RelayConfig, ViewerId,
};
use media_relay::rtp::{self, HeaderRewrite};
use media_relay::Relay;
use nix::sys::socket::{self, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage};

const GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 42, 1);
const INSIDE: &str = "MEDIA_RELAY_MULTICAST_NETNS";

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
    v.resize(400, 0xab);
    v
}

/// A group member on `port` (several may share it), joined on loopback, with the TTL of each
/// datagram reported (IP_RECVTTL).
fn member(port: u16) -> UdpSocket {
    let s = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .unwrap();
    s.set_reuse_address(true).unwrap();
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())
        .unwrap();
    s.join_multicast_v4(&GROUP, &Ipv4Addr::LOCALHOST).unwrap();
    let s: UdpSocket = s.into();
    socket::setsockopt(&s, sockopt::Ipv4RecvTtl, &true).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s
}

/// Read until `want` datagrams came or a read times out: (SSRC, TTL) of each.
fn read(s: &UdpSocket, want: usize) -> Vec<(u32, Option<u8>)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    let mut cmsg = nix::cmsg_space!(libc_int);
    while got.len() < want {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let Ok(msg) = socket::recvmsg::<SockaddrStorage>(
            s.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        ) else {
            break;
        };
        let ttl = msg.cmsgs().ok().and_then(|mut c| {
            c.find_map(|m| match m {
                ControlMessageOwned::Ipv4Ttl(t) => u8::try_from(t).ok(),
                _ => None,
            })
        });
        let n = msg.bytes;
        let info = rtp::parse(&buf[..n]).expect("RTP");
        got.push((info.ssrc, ttl));
    }
    got
}

#[allow(non_camel_case_types)]
type libc_int = i32;

#[test]
fn multicast_channel_is_sent_once_to_its_group() {
    if std::env::var_os(INSIDE).is_some() {
        return inside();
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args([
            "-n",
            "sh",
            "-c",
            "ip link set lo up && ip link set lo multicast on && \
             ip route add 224.0.0.0/4 dev lo && exec \"$0\" \"$@\"",
        ])
        .arg(exe)
        .args([
            "multicast_channel_is_sent_once_to_its_group",
            "--exact",
            "--nocapture",
        ])
        .env(INSIDE, "1")
        .output();
    let why = match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            assert!(
                text.contains("1 passed"),
                "the test ran in its namespace:\n{text}"
            );
            return;
        }
        Ok(o) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            // The test itself failed inside the namespace: that is a failure anywhere.
            assert!(
                !text.contains("running 1 test"),
                "multicast test failed in its namespace:\n{text}"
            );
            text
        }
        Err(e) => e.to_string(),
    };
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run the multicast test (unshare -n as root): {why}"
    );
    eprintln!("multicast test skipped: no private network namespace here ({why})");
}

fn inside() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The group's port: a free one, found by binding.
        let port = UdpSocket::bind("0.0.0.0:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let group = SocketAddr::from((GROUP, port));
        let config = RelayConfig {
            multicast: vec![MulticastChannel {
                channel: ChannelId::from("mc"),
                group,
                payload_type: 96,
            }],
            multicast_ttl: 7,
            multicast_interface: Some(Ipv4Addr::LOCALHOST),
            ..RelayConfig::default()
        };
        let relay = Relay::spawn(config).unwrap();
        let ingest = relay.create_ingest(ChannelSpec::new("mc")).await.unwrap();
        let producer = UdpSocket::bind("127.0.0.1:0").unwrap();
        producer.send_to(&packet(0), ingest.rtp_addr).unwrap();
        let members = [member(port), member(port)];
        let unicast: Vec<UdpSocket> = (0..2)
            .map(|_| {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                s.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                s
            })
            .collect();
        let mut ssrcs = Vec::new();
        for (i, u) in unicast.iter().enumerate() {
            let info = relay
                .add_viewer(AddViewer {
                    viewer: ViewerId(i as u64),
                    channel: ChannelId::from("mc"),
                    rtp_dest: u.local_addr().unwrap(),
                    rtcp_dest: None,
                    payload_type: 96,
                    downstream: false,
                })
                .await
                .unwrap();
            assert_eq!(info.relay_rtp, group, "the answer names the group");
            assert_eq!(info.multicast_ttl, Some(7));
            ssrcs.push(info.ssrc);
        }
        assert_eq!(ssrcs[0], ssrcs[1], "one stream for every member");
        const N: u16 = 30;
        for seq in 1..N {
            producer.send_to(&packet(seq), ingest.rtp_addr).unwrap();
        }
        let [a, b] = members;
        let got_a = tokio::task::spawn_blocking(move || (read(&a, usize::from(N)), a));
        let got_b = tokio::task::spawn_blocking(move || (read(&b, usize::from(N)), b));
        let (got_a, a) = got_a.await.unwrap();
        let (got_b, b) = got_b.await.unwrap();
        for got in [&got_a, &got_b] {
            // The cached key frame (the group stream's start) and the live packets.
            assert_eq!(got.len(), usize::from(N), "every member gets every packet");
            assert!(got.iter().all(|&(ssrc, _)| ssrc == ssrcs[0]));
            assert!(got.iter().all(|&(_, ttl)| ttl == Some(7)), "{got:?}");
        }
        let mut buf = [0u8; 2048];
        for u in &unicast {
            assert!(u.recv(&mut buf).is_err(), "nothing unicast to a member");
        }
        let st = relay.stats().await.unwrap();
        assert_eq!(
            st.totals.packets_out,
            u64::from(N),
            "sent once, not once per member"
        );
        // The last member leaving stops the group stream.
        relay.remove_viewer(ViewerId(0)).await.unwrap();
        relay.remove_viewer(ViewerId(1)).await.unwrap();
        assert!(relay.stats().await.unwrap().viewers.is_empty());
        for seq in N..N + 10 {
            producer.send_to(&packet(seq), ingest.rtp_addr).unwrap();
        }
        let late = tokio::task::spawn_blocking(move || read(&a, 10).len() + read(&b, 10).len());
        assert_eq!(late.await.unwrap(), 0, "no group stream without members");
        assert_eq!(
            relay.stats().await.unwrap().totals.packets_out,
            u64::from(N)
        );
        relay.shutdown().await.unwrap();
    });
}
