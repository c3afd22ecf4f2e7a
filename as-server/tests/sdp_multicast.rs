//! A viewer's join answered for a multicast channel ([`Negotiation::answer_multicast`]): the
//! relay sends the channel to a group (media-relay's `RelayConfig::multicast`), so the answer
//! says `c=IN IP4 <group>/<ttl>` (RFC 8866 section 5.7) with the group's port, and RTCP still
//! goes to the relay's unicast feedback target (RFC 5760).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use as_server::sip::sdp::{
    AnswerTransport, Capabilities, CodecSpec, Direction, MediaTransport, SdpOffer,
};

const RELAY: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));

fn crlf(s: &str) -> Vec<u8> {
    s.trim_start()
        .lines()
        .map(|l| format!("{}\r\n", l.trim()))
        .collect::<String>()
        .into_bytes()
}

fn transport() -> AnswerTransport {
    AnswerTransport {
        addresses: vec![RELAY],
        video: Some(MediaTransport {
            rtp_port: 40000,
            rtcp: None,
            ssrc: Some(0x1234_5678),
        }),
        audio: None,
        feedback_target: Some(SocketAddr::new(RELAY, 40001)),
        session_id: 7,
        session_version: 1,
        session_name: "iptv".into(),
        cname: Some("relay-0".into()),
    }
}

fn viewer_offer() -> SdpOffer {
    SdpOffer::parse(&crlf(
        "
        v=0
        o=viewer 1 1 IN IP4 198.51.100.7
        s=-
        c=IN IP4 198.51.100.7
        t=0 0
        m=video 5004 RTP/AVP 96
        a=rtpmap:96 H264/90000
        a=fmtp:96 packetization-mode=1
        a=recvonly
        ",
    ))
    .unwrap()
}

fn caps() -> Capabilities {
    Capabilities {
        direction: Direction::SendOnly,
        codecs: vec![CodecSpec::h264_mode1()],
        single_codec: true,
    }
}

#[test]
fn multicast_answer_names_the_group_with_its_ttl() {
    let group: SocketAddr = "239.255.42.1:6000".parse().unwrap();
    let answer = viewer_offer()
        .negotiate(&caps())
        .unwrap()
        .answer_multicast(&transport(), group, 16)
        .unwrap();
    let text = String::from_utf8(answer.to_bytes()).unwrap();
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert!(lines.contains(&"c=IN IP4 239.255.42.1/16"), "{text}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("m=video 6000 RTP/AVP 96")),
        "{text}"
    );
    assert!(lines.contains(&"a=sendonly"), "{text}");
    // RTCP goes to the relay's unicast feedback target, not to the group.
    assert!(lines.contains(&"a=rtcp-unicast:rsi"), "{text}");
    assert!(lines.contains(&"a=rtcp:40001 IN IP4 192.0.2.10"), "{text}");
    // The typed view agrees, and the answer parses back.
    let c = answer.description().session_connection.unwrap();
    assert_eq!((c.ip, c.ttl), (group.ip(), Some(16)));
    assert!(as_server::sip::sdp::SessionDescription::parse(&answer.to_bytes()).is_ok());
}

#[test]
fn multicast_answer_refuses_a_unicast_group() {
    let r = viewer_offer().negotiate(&caps()).unwrap().answer_multicast(
        &transport(),
        "192.0.2.1:6000".parse().unwrap(),
        16,
    );
    assert!(r.is_err());
}
